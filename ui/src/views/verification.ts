// The verification panel: fleet id, key fingerprint and each check the app
// makes before a recovery code is used, with its status.
import { call } from "../api";
import type { VaultInfo } from "../bindings";
import { h } from "../dom";
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
  const show = (v: VaultInfo) => {
    fleetId.textContent = v.fleet_id;
    fp.textContent = `fleet key ${v.key_fingerprint}`;
    mode.textContent = `${v.simulated_hsm ? "Local demo fleet: simulated HSMs on this computer. " : ""}${v.nodes} nodes, quorum ${v.quorum ? "reached" : "NOT reached"}; validation: ${v.validation_mode}; key stretching: ${v.ksf}.`;
    render(v.checks);
  };
  const run = button("Check the fleet now", "verification-run", () => void guarded(run, slot, async () => show(await call("vault_info", {}))));
  const view = h("section", { class: "view", testid: "verification-screen", "aria-labelledby": "verification-title" },
    viewHead("verification-title", "Verification", "Before Coffer sends anything derived from your recovery code to a vault, it checks that the vault's keys are the ones it trusts."),
    card("Fleet", mode,
      h("dl", { class: "facts" }, h("dt", {}, "Fleet id"), fleetId, h("dt", {}, "Key fingerprints"), fp),
      h("div", { class: "actions" }, run), slot),
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
