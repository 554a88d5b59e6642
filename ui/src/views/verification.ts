// The verification panel: fleet id, key fingerprint and each check the app
// makes before a recovery code is used, with its status.
import { call } from "../api";
import type { VaultInfo } from "../bindings";
import { h } from "../dom";
import { cosignedAtText, cosignerStatusText, formatMaxAge, freshnessState, freshnessText } from "../trust";
import { button, card, guarded, showError, viewHead } from "../ui";

const CHECKS: [string, string][] = [
  ["pinned-key", "The vault's session key is a key of the verified fleet"],
  ["witness-signature", "Witness signature over the fleet-key bundle"],
  ["operator-countersignature", "Operator countersignature over the witness signature"],
  ["inclusion", "Inclusion of the bundle in the witness's audit log"],
  ["consistency", "Consistency with the last checkpoint this app saw"],
  ["validity", "Validity window of the fleet keys"],
  ["deployment-evidence", "Deployment evidence (HSM attestation, program measurement)"],
];

const STATUS_TEXT: Record<string, string> = { passed: "passed", failed: "FAILED", not_applicable: "not applicable", not_run: "not run" };

export function verificationView(): HTMLElement {
  const mode = h("p", { testid: "verification-mode" }, "…");
  const fleetId = h("dd", { testid: "verification-fleet-id", class: "mono" }, "not checked yet");
  const fp = h("dd", { testid: "verification-fingerprints", class: "mono" }, "not checked yet");
  const list = h("ul", { class: "checks", testid: "verification-checks" });
  const slot = h("div", {});
  const render = (checks: { id: string; label: string; status: string; detail: string }[]) => {
    list.replaceChildren(...checks.map((c) => h("li", { testid: `verification-check-${c.id}`, "data-status": c.status },
      h("span", { class: `badge status-${c.status}` }, STATUS_TEXT[c.status] ?? c.status), " ", c.label,
      c.detail ? h("p", { class: "muted small" }, c.detail) : null)));
  };
  render(CHECKS.map(([id, label]) => ({ id, label, status: "not_run", detail: "" })));
  // The log checkpoint: freshness under the trust policy, the cosigners, a fork.
  const fresh = h("p", { testid: "verification-freshness", "data-state": "not_run" }, "Not checked yet.");
  const quorum = h("dd", { testid: "verification-quorum" }, "—");
  const maxAge = h("dd", { testid: "verification-max-age" }, "—");
  const age = h("dd", { testid: "verification-checkpoint-age" }, "—");
  const cosigners = h("ul", { class: "checks", testid: "verification-cosigners" });
  const remembered = h("pre", { class: "mono small", testid: "verification-fork-remembered" });
  const presented = h("pre", { class: "mono small", testid: "verification-fork-presented" });
  const fork = h("div", { testid: "verification-fork", hidden: true, role: "alert" },
    h("p", { class: "warning" }, "Two checkpoints of the witness log that cannot both be true. Report them to the vault operator and to the cosigners; they are evidence against the log."),
    h("h3", {}, "The checkpoint this app verified before"), remembered,
    h("h3", {}, "The checkpoint the vault presents now"), presented);
  const showTrust = (v: VaultInfo) => {
    const state = freshnessState(v);
    fresh.dataset.state = state;
    fresh.className = state === "fresh" ? "ok" : state === "unchecked" ? "note" : "warning";
    fresh.textContent = freshnessText(v);
    quorum.textContent = v.policy?.quorum ?? v.freshness?.quorum ?? "no trust policy";
    const max = v.policy?.max_age_secs ?? v.freshness?.max_age_secs;
    maxAge.textContent = max === undefined ? "—" : formatMaxAge(max);
    age.textContent = v.freshness ? `${formatMaxAge(v.freshness.age_secs)} (quorum cosigned at ${new Date(v.freshness.cosigned_at * 1000).toISOString()})` : "—";
    cosigners.replaceChildren(...(v.cosigners.length === 0
      ? [h("li", { class: "muted", testid: "verification-cosigners-none" }, v.policy ? "The trust policy names no cosigners." : "No trust policy, no cosigners.")]
      : v.cosigners.map((c) => h("li", { testid: `verification-cosigner-${c.name}`, "data-status": c.status, title: c.key },
        h("span", { class: `badge status-${c.status === "fresh" ? "passed" : "failed"}` }, cosignerStatusText(c.status)), " ",
        h("strong", { testid: `verification-cosigner-${c.name}-name` }, c.name), " key id ",
        h("code", { testid: `verification-cosigner-${c.name}-key-id` }, c.key_id), ": ",
        h("span", { testid: `verification-cosigner-${c.name}-at` }, cosignedAtText(c))))));
    fork.hidden = !v.fork_evidence;
    fork.dataset.kind = v.fork_evidence?.kind ?? "";
    remembered.textContent = v.fork_evidence?.remembered ?? "";
    presented.textContent = v.fork_evidence?.presented ?? "";
  };
  const show = (v: VaultInfo) => {
    fleetId.textContent = v.fleet_id;
    fp.textContent = `fleet key ${v.key_fingerprint}`;
    mode.textContent = `${v.simulated_hsm ? "Local demo fleet: simulated HSMs on this computer. " : ""}${v.nodes} nodes, quorum ${v.quorum ? "reached" : "NOT reached"}; validation: ${v.validation_mode}; key stretching: ${v.ksf}.`;
    render(v.checks);
    showTrust(v);
  };
  const run = button("Check the fleet now", "verification-run", () => void guarded(run, slot, async () => show(await call("vault_info", {}))));
  const view = h("section", { class: "view", testid: "verification-screen", "aria-labelledby": "verification-title" },
    viewHead("verification-title", "Verification", "Before Coffer sends anything derived from your recovery code to a vault, it checks that the vault's keys are the ones it trusts."),
    card("Fleet", mode,
      h("dl", { class: "facts" }, h("dt", {}, "Fleet id"), fleetId, h("dt", {}, "Key fingerprints"), fp),
      h("div", { class: "actions" }, run), slot),
    card("Log checkpoint: freshness and cosigners", fresh,
      h("dl", { class: "facts" }, h("dt", {}, "Quorum"), quorum, h("dt", {}, "Maximum age"), maxAge, h("dt", {}, "Age"), age),
      h("h3", {}, "Cosigners"), cosigners, fork),
    card("Checks", list),
    card("Audit", h("p", { class: "muted" }, "Anyone can audit a fleet with ", h("code", {}, "coffer audit"), "; the steps are in docs/audit.md. A remote fleet's log entries and deployment evidence are linked here and open in your browser.")),
  );
  void call("app_overview", {}).then((ov) => {
    if (ov.status.vault.mode === "key_only") {
      mode.textContent = "This installation uses a recovery key and no vault: no fleet is involved. You can still check the local demo fleet.";
    } else {
      mode.textContent = "Checking the fleet…";
      run.click();
    }
  }).catch((e) => showError(mode, e));
  return view;
}
