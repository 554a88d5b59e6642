import { describe, expect, it } from "vitest";
import { needsMailCode } from "./mailcode";

describe("needsMailCode", () => {
  it("is true for the account_not_verified errors (no ticket, wrong or expired mail code)", () => {
    for (const code of ["CF-V024", "CF-V026", "CF-V036"]) {
      expect(needsMailCode({ kind: "account_not_verified", code, message: "", next_step: "" })).toBe(true);
    }
  });
  it("is false for other errors, throttling included", () => {
    expect(needsMailCode({ kind: "throttled", code: "CF-V029", message: "", next_step: "" })).toBe(false);
    expect(needsMailCode({ kind: "wrong_recovery_code", code: "CF-V010", message: "", next_step: "" })).toBe(false);
    expect(needsMailCode(null)).toBe(false);
  });
});
