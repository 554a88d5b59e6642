// What the verification panel says about the log checkpoint: its freshness
// under the trust policy, each cosigner, and a fork with its evidence. Pure
// functions, so the wording is unit-tested (trust.test.ts).
import type { CheckpointFreshness, CosignerView, ForkEvidenceView, PolicyView } from "./bindings";
import { formatDuration } from "./format";

/**
 * `fresh`: the policy's quorum cosigned the checkpoint within its max age;
 * `stale`: it did, but longer ago; `not_cosigned`: a policy is set and its
 * quorum did not cosign; `unchecked`: no trust policy, so freshness is not
 * checked; `forked`: the log showed two checkpoints that cannot both be true.
 */
export type FreshnessState = "fresh" | "stale" | "not_cosigned" | "unchecked" | "forked";

export interface TrustFacts {
  freshness: CheckpointFreshness | null;
  policy: PolicyView | null;
  fork_evidence: ForkEvidenceView | null;
}

export function freshnessState(v: TrustFacts): FreshnessState {
  if (v.fork_evidence) return "forked";
  if (v.freshness) return v.freshness.age_secs <= v.freshness.max_age_secs ? "fresh" : "stale";
  if (!v.policy) return "unchecked";
  return "not_cosigned";
}

/** "24 h" for a max age (whole hours and days read better than seconds). */
export function formatMaxAge(secs: number): string {
  if (secs > 0 && secs % 86400 === 0) return `${secs / 86400} d`;
  if (secs > 0 && secs % 3600 === 0) return `${secs / 3600} h`;
  return formatDuration(secs);
}

/** The panel's freshness sentence. */
export function freshnessText(v: TrustFacts): string {
  const f = v.freshness;
  switch (freshnessState(v)) {
    case "forked":
      return v.fork_evidence?.kind === "rolled_back"
        ? "ROLLED BACK: the log is smaller than the checkpoint this app verified before. Do not use this vault; keep the two checkpoints below as evidence."
        : "FORKED: the log shows a checkpoint that contradicts the one this app verified before. Do not use this vault; keep the two checkpoints below as evidence.";
    case "fresh":
      return `Fresh: the quorum (${f!.quorum}) cosigned the log checkpoint ${formatDuration(f!.age_secs)} ago; at most ${formatMaxAge(f!.max_age_secs)} is accepted.`;
    case "stale":
      return `STALE: the quorum (${f!.quorum}) last cosigned the log checkpoint ${formatDuration(f!.age_secs)} ago, more than the ${formatMaxAge(f!.max_age_secs)} accepted. The vault may be showing an old fleet.`;
    case "not_cosigned":
      return `NOT COSIGNED: the trust policy's quorum (${v.policy!.quorum}) has not cosigned the log checkpoint, so its freshness cannot be shown.`;
    case "unchecked":
      return "Not checked: no trust policy is set for this vault, so Coffer cannot tell whether the log checkpoint is the latest. Choose the policy the vault operator publishes in Settings → Vault.";
  }
}

const COSIGNER_STATUS: Record<string, string> = {
  fresh: "ok",
  stale: "too old",
  future: "dated in the future",
  missing: "missing",
  invalid: "INVALID signature",
};

/** A cosigner's status in words (`ok`, `missing`, …). */
export function cosignerStatusText(status: string): string {
  return COSIGNER_STATUS[status] ?? status;
}

/** When a cosigner cosigned, as a UTC time, or "did not cosign". */
export function cosignedAtText(c: Pick<CosignerView, "cosigned_at">): string {
  if (c.cosigned_at === null) return "did not cosign";
  return `cosigned ${new Date(c.cosigned_at * 1000).toISOString().replace(".000Z", "Z").replace("T", " ")}`;
}

/**
 * The policy text with its `max-age` line set to `secs` (replaced where it
 * is, or added at the end): how the form's "maximum age" field configures
 * the policy that is saved.
 */
export function withMaxAge(text: string, secs: number): string {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => /^\s*max-age(\s|$)/.test(l));
  const line = `max-age ${Math.round(secs)}`;
  if (i >= 0) {
    lines[i] = line;
    return lines.join("\n");
  }
  const body = text.replace(/\n+$/, "");
  return body ? `${body}\n${line}\n` : `${line}\n`;
}

/** The `max-age` of a policy text in seconds, if it has one. */
export function maxAgeOf(text: string): number | null {
  const m = /^\s*max-age\s+(\d+)\s*$/m.exec(text);
  return m ? Number(m[1]) : null;
}
