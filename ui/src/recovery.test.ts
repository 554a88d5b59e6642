import { describe, expect, it } from "vitest";
import { attemptsLeft, wrongGuessesText } from "./views/recovery";

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

describe("wrongGuessesText", () => {
  it("says nothing when no wrong code was tried", () => {
    expect(wrongGuessesText(0, [])).toBeNull();
  });
  it("warns the owner with the count and what to do", () => {
    const one = wrongGuessesText(1, [1_700_000_000]);
    expect(one).toContain("1 wrong recovery code was tried");
    expect(one).toContain("secure the mailbox");
    const three = wrongGuessesText(3, []);
    expect(three).toContain("3 wrong recovery codes were tried");
    expect(three).not.toContain("the last at");
  });
});
