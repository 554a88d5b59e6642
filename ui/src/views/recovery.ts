// The recovery wizard on a new device: pick the repository file, (vault mode:
// verify the fleet), enter the recovery key, then browse and restore.
import { call } from "../api";
import { h } from "../dom";
import { button, card, field, guarded, viewHead } from "../ui";
import { errorPanel } from "./error";

export function recoveryView(): HTMLElement {
  const repo = field("1 · The backup file", "recovery-repo-path", {
    placeholder: "/media/usb/coffer.db",
    help: "Type the full path of the backup file (copy it from the old disk or sync folder first).",
  });
  const key = field("2 · Your 64-digit recovery key", "recovery-key-input", {
    multiline: true,
    placeholder: "0f3a-91c2-…  (17 groups of 4 characters)",
    help: "Spaces, dashes and upper case do not matter. A typo is caught by the checksum before anything is tried.",
    autocomplete: "off",
  });
  const slot = h("div", { testid: "recovery-result", "aria-live": "polite" });
  const unlock = button("Open my backups", "recovery-unlock", () => {
    void guarded(unlock, slot, async () => {
      const r = await call("unlock_with_recovery_key", { repository: repo.input.value, recovery_key: key.input.value });
      key.input.value = "";
      slot.replaceChildren(
        h("p", { class: "ok", testid: "recovery-ok" }, `The backup file is open: ${r.snapshots} snapshot${r.snapshots === 1 ? "" : "s"} found.`),
        r.keyring_saved
          ? h("p", { testid: "recovery-keyring" }, "The backup key is now kept in your OS keyring on this computer.")
          : h("div", { testid: "recovery-keyring" }, h("p", {}, "The key could not be kept on this computer (Coffer asks again after a restart):"),
              r.keyring_error ? errorPanel(r.keyring_error) : null),
        h("p", {}, h("a", { href: "#snapshots", testid: "recovery-go-snapshots", class: "button-link" }, "3 · Browse and restore files")));
    });
  });
  return h("section", { class: "view", testid: "recovery-screen", "aria-labelledby": "recovery-title" },
    viewHead("recovery-title", "Recovery wizard", "Open your backups on a new computer: you need only the backup file and your recovery key."),
    card("Key mode: recovery key", repo.row, key.row, h("div", { class: "actions" }, unlock), slot),
    card("Vault mode: recovery code",
      h("p", { class: "note", testid: "recovery-vault-unavailable" },
        "Recovery with a recovery code through the vault (verify the fleet, enter the code, see the attempts remaining) needs the vault client, which is not part of this build yet.")),
  );
}
