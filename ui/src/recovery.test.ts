import { describe, expect, it } from "vitest";
import { attemptsLeft } from "./views/recovery";

describe("attemptsLeft", () => {
  it("reads the attempts remaining from a wrong-code message", () => {
    expect(attemptsLeft("the recovery code is wrong; 9 attempts remain")).toBe(9);
    expect(attemptsLeft("the recovery code is wrong; 1 attempts remain")).toBe(1);
    expect(attemptsLeft("the recovery code is wrong; 1 attempt remains")).toBe(1);
  });
  it("is null for other errors", () => {
    expect(attemptsLeft("this recovery key does not open this repository")).toBeNull();
  });
});
