// The verification panel: what the client checks about the vault fleet
// before any session. In this build there is no vault client yet, so every
// check is shown as not run, honestly.
import { call } from "../api";
import { h } from "../dom";
import { card, showError, viewHead } from "../ui";

const CHECKS: [string, string][] = [
  ["witness-signature", "Witness signature over the fleet-key bundle"],
  ["operator-countersignature", "Operator countersignature over the witness signature"],
  ["inclusion", "Inclusion of the bundle in the witness's audit log"],
  ["consistency", "Consistency with the last checkpoint this app saw"],
  ["validity", "Validity window of the fleet keys"],
  ["deployment-evidence", "Deployment evidence (HSM attestation, program measurement)"],
];

export function verificationView(): HTMLElement {
  const mode = h("p", { testid: "verification-mode" }, "…");
  const view = h("section", { class: "view", testid: "verification-screen", "aria-labelledby": "verification-title" },
    viewHead("verification-title", "Verification", "Before Coffer sends anything derived from your recovery code to a vault, it checks that the vault's keys are the ones the witness logged and the operator signed."),
    card("Fleet", mode,
      h("dl", { class: "facts" },
        h("dt", {}, "Fleet id"), h("dd", { testid: "verification-fleet-id" }, "not available"),
        h("dt", {}, "Key fingerprints"), h("dd", { testid: "verification-fingerprints" }, "not available"))),
    card("Checks", h("ul", { class: "checks", testid: "verification-checks" },
      ...CHECKS.map(([id, label]) => h("li", { testid: `verification-check-${id}`, "data-status": "not_run" },
        h("span", { class: "badge" }, "not run"), " ", label)))),
  );
  void call("app_overview", {}).then((ov) => {
    mode.textContent = ov.status.vault.mode === "key_only"
      ? "This installation uses a recovery key and no vault: there is no fleet to verify."
      : "The vault client is not part of this build yet, so no fleet has been verified and no recovery code is used.";
  }).catch((e) => showError(mode, e));
  return view;
}
