import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, reportLine } from "./format";
import { toErrorReport } from "./api";

describe("formatBytes", () => {
  it("uses decimal units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(999)).toBe("999 B");
    expect(formatBytes(1500)).toBe("1.5 KB");
    expect(formatBytes(667_000_000)).toBe("667 MB");
  });
  it("refuses nonsense", () => {
    expect(formatBytes(-1)).toBe("—");
    expect(formatBytes(Number.NaN)).toBe("—");
  });
});

describe("formatDuration", () => {
  it("reads like a person would say it", () => {
    expect(formatDuration(12)).toBe("12 s");
    expect(formatDuration(185)).toBe("3 min 05 s");
    expect(formatDuration(3720)).toBe("1 h 02 min");
  });
});

describe("toErrorReport", () => {
  it("keeps a structured error as it is", () => {
    const r = { kind: "wrong_recovery_code", code: "CF-V001", message: "m", next_step: "n" } as const;
    expect(toErrorReport(r)).toEqual(r);
  });
  it("wraps anything else with a code and a next step", () => {
    const r = toErrorReport("boom");
    expect(r.code).toBe("CF-A999");
    expect(r.message).toBe("boom");
    expect(r.next_step.length).toBeGreaterThan(10);
  });
});

describe("reportLine", () => {
  it("starts a sentence and keeps the code", () => {
    expect(reportLine({ message: "the vault is gone", next_step: "Try later.", code: "CF-V030" }))
      .toBe("The vault is gone. Try later. (CF-V030)");
  });
});
