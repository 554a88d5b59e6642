import { describe, expect, it } from "vitest";
import { cosignedAtText, cosignerStatusText, formatMaxAge, freshnessState, freshnessText, maxAgeOf, withMaxAge } from "./trust";

const policy = { quorum: "2 of [c1, c2]", max_age_secs: 86400, cosigners: ["c1", "c2"] };
const fresh = { cosigned_at: 1_700_000_000, age_secs: 125, max_age_secs: 86400, quorum: "2 of [c1, c2]" };

describe("freshnessState", () => {
  it("tells each state apart", () => {
    expect(freshnessState({ freshness: fresh, policy, fork_evidence: null })).toBe("fresh");
    expect(freshnessState({ freshness: { ...fresh, age_secs: 90000 }, policy, fork_evidence: null })).toBe("stale");
    expect(freshnessState({ freshness: null, policy, fork_evidence: null })).toBe("not_cosigned");
    expect(freshnessState({ freshness: null, policy: null, fork_evidence: null })).toBe("unchecked");
  });
  it("a fork wins over a fresh checkpoint", () => {
    const fork = { kind: "forked", remembered: "a", presented: "b" };
    expect(freshnessState({ freshness: fresh, policy, fork_evidence: fork })).toBe("forked");
    expect(freshnessText({ freshness: fresh, policy, fork_evidence: fork })).toMatch(/^FORKED/);
    expect(freshnessText({ freshness: null, policy, fork_evidence: { ...fork, kind: "rolled_back" } })).toMatch(/^ROLLED BACK/);
  });
});

describe("freshnessText", () => {
  it("shows the age against the max age and the quorum", () => {
    expect(freshnessText({ freshness: fresh, policy, fork_evidence: null }))
      .toBe("Fresh: the quorum (2 of [c1, c2]) cosigned the log checkpoint 2 min 05 s ago; at most 1 d is accepted.");
    expect(freshnessText({ freshness: { ...fresh, age_secs: 7200, max_age_secs: 3600 }, policy, fork_evidence: null }))
      .toMatch(/^STALE: .* 2 h 00 min ago, more than the 1 h accepted/);
  });
  it("says when nothing is checked", () => {
    expect(freshnessText({ freshness: null, policy: null, fork_evidence: null })).toMatch(/^Not checked: no trust policy/);
  });
});

describe("cosigners", () => {
  it("words the status and the time", () => {
    expect(cosignerStatusText("fresh")).toBe("ok");
    expect(cosignerStatusText("missing")).toBe("missing");
    expect(cosignedAtText({ cosigned_at: null })).toBe("did not cosign");
    expect(cosignedAtText({ cosigned_at: 1_700_000_000 })).toBe("cosigned 2023-11-14 22:13:20Z");
  });
  it("formats max ages", () => {
    expect(formatMaxAge(86400)).toBe("1 d");
    expect(formatMaxAge(7200)).toBe("2 h");
    expect(formatMaxAge(90)).toBe("1 min 30 s");
  });
});

describe("withMaxAge", () => {
  const text = "log k\nwitness c1 x\nquorum c1\nmax-age 86400\n";
  it("replaces the max-age line", () => {
    expect(withMaxAge(text, 3600)).toBe("log k\nwitness c1 x\nquorum c1\nmax-age 3600\n");
    expect(maxAgeOf(withMaxAge(text, 3600))).toBe(3600);
  });
  it("adds one when there is none", () => {
    expect(withMaxAge("log k\nquorum none", 7200)).toBe("log k\nquorum none\nmax-age 7200\n");
    expect(maxAgeOf("log k\nquorum none")).toBe(null);
  });
  it("does not take a comment for the line", () => {
    expect(withMaxAge("# max-age 5\nlog k\n", 60)).toBe("# max-age 5\nlog k\nmax-age 60\n");
  });
});
