// Settings: vault, data directory, the key on this device, and a recovery
// rehearsal that checks a typed recovery key without changing anything.
import { call } from "../api";
import { h } from "../dom";
import { button, card, field, guarded, showError, viewHead } from "../ui";

export function settingsView(): HTMLElement {
  const facts = h("dl", { class: "facts", testid: "settings-facts" });
  const rehearse = field("Your recovery key", "rehearse-key-input", { multiline: true, help: "Nothing is changed; Coffer only checks that this key opens your backup file." });
  const rehearseOut = h("div", { testid: "rehearse-result", "aria-live": "polite" });
  const rehearseBtn = button("Rehearse recovery", "rehearse-run", () => {
    void guarded(rehearseBtn, rehearseOut, async () => {
      const n = await call("rehearse_recovery_key", { recovery_key: rehearse.input.value });
      rehearse.input.value = "";
      rehearseOut.replaceChildren(h("p", { class: "ok", testid: "rehearse-ok" }, `This key opens your backup file (${n} snapshots). Keep it safe.`));
    });
  });
  const keyOut = h("div", { testid: "settings-key-result" });
  const lock = button("Forget the key until I enter it again", "settings-lock", () => {
    void guarded(lock, keyOut, async () => {
      await call("lock_app", {});
      keyOut.replaceChildren(h("p", { class: "ok" }, "The key was removed from memory. The keyring copy (if any) stays."));
    });
  }, "secondary");
  const forget = button("Remove the key from this computer's keyring", "settings-forget-key", () => {
    if (!window.confirm("Remove the backup key from this computer? Scheduled backups stop until you enter your recovery key again.")) return;
    void guarded(forget, keyOut, async () => {
      await call("forget_device_key", {});
      keyOut.replaceChildren(h("p", { class: "ok" }, "The key was removed from this computer."));
    });
  }, "secondary");
  const view = h("section", { class: "view", testid: "settings-screen", "aria-labelledby": "settings-title" },
    viewHead("settings-title", "Settings", "Where Coffer keeps its data, which vault it uses, and the key on this computer."),
    card("This installation", facts, moveDataDir()),
    card("Vault",
      h("p", { testid: "settings-vault" }, "…"),
      h("p", { class: "note", testid: "settings-vault-unavailable" },
        "This build uses the local demo fleet (simulated HSMs; its state is in DATA_DIR/vault or --vault-dir). Pointing Coffer at a remote fleet by URL with pinned witness and operator keys is not offered in this build.")),
    vaultCards(),
    card("Rehearse recovery", rehearse.row, h("div", { class: "actions" }, rehearseBtn), rehearseOut),
    card("The key on this computer", h("div", { class: "actions" }, lock, forget), keyOut),
  );
  void call("app_overview", {}).then((ov) => {
    facts.replaceChildren(
      h("dt", {}, "Data folder"), h("dd", { class: "mono", testid: "settings-data-dir" }, ov.status.data_dir),
      h("dt", {}, "Backup file"), h("dd", { class: "mono" }, ov.repository ?? "none yet"),
      h("dt", {}, "OS keyring"), h("dd", { testid: "settings-keyring" }, ov.keyring.available ? "available" : ov.keyring.error ? `unavailable (${ov.keyring.error.code})` : "still checking…"));
    const v = view.querySelector('[data-testid="settings-vault"]');
    if (v) v.textContent = ov.status.vault.label;
  }).catch((e) => showError(facts, e));
  return view;
}

/** Copy the data folder to a new place; Coffer uses it after a restart. */
function moveDataDir(): HTMLElement {
  const target = field("New data folder", "data-dir-target", {
    placeholder: "/home/you/Documents/coffer-data",
    help: "An empty or new folder. Coffer copies its settings and vault state there and checks the copy; the current folder is left as it is. Your backups and the backup key do not move.",
  });
  const out = h("div", { testid: "data-dir-result", "aria-live": "polite" });
  const move = button("Move the data folder", "data-dir-move", () => {
    void guarded(move, out, async () => {
      const r = await call("move_data_dir", { target: target.input.value });
      out.replaceChildren(h("p", { class: "ok", testid: "data-dir-moved" },
        `Copied ${r.files_copied} files to ${r.new_dir}. Quit Coffer and start it again to use the new folder; until then settings are not saved. The old folder ${r.old_dir} can be deleted afterwards.`));
      if (r.overridden_at_start) {
        out.append(h("p", { class: "note" }, "This Coffer was started with --data-dir or COFFER_DATA_DIR, which win over the new setting: start it without them."));
      }
    });
  }, "secondary");
  return h("fieldset", {}, h("legend", {}, "Data folder"), target.row, h("div", { class: "actions" }, move), out,
    h("p", { class: "muted" }, "You can also start Coffer with --data-dir FOLDER (or set COFFER_DATA_DIR) for one run."));
}

/** Vault mode: change the recovery code, rehearse with it, delete the record. */
function vaultCards(): HTMLElement {
  const pw = (label: string, id: string) => field(label, id, { type: "password", autocomplete: "off" });
  const acct = field("Account name", "vault-account", { autocomplete: "username" });
  const old = pw("Current recovery code", "change-old-code");
  const nw = pw("New recovery code", "change-new-code");
  const conf = pw("New recovery code again", "change-confirm-code");
  const out = h("div", { testid: "vault-result", "aria-live": "polite" });
  const clear = () => { for (const f of [old, nw, conf, rc, dc]) f.input.value = ""; };
  const change = button("Change the recovery code", "change-code-run", () => {
    void guarded(change, out, async () => {
      await call("change_recovery_code", { account: acct.input.value, old: old.input.value, new: nw.input.value, confirm: conf.input.value });
      clear();
      out.replaceChildren(h("p", { class: "ok", testid: "change-code-ok" }, "The recovery code was changed. The old code no longer works."));
    });
  });
  const rc = pw("Recovery code", "rehearse-code-input");
  const rehearse = button("Rehearse with the code", "rehearse-code-run", () => {
    void guarded(rehearse, out, async () => {
      const n = await call("rehearse_recovery_code", { account: acct.input.value, code: rc.input.value });
      clear();
      out.replaceChildren(h("p", { class: "ok", testid: "rehearse-code-ok" }, `Your code recovers the key, and it opens your backup file (${n} snapshots).`));
    });
  }, "secondary");
  const dc = pw("Recovery code", "delete-record-code");
  const del = button("Delete the vault record", "delete-record-run", () => {
    if (!window.confirm("Delete your vault record? Afterwards the recovery code cannot recover your backups; keep this computer's key or a recovery key.")) return;
    void guarded(del, out, async () => {
      await call("delete_vault_record", { account: acct.input.value, code: dc.input.value });
      clear();
      out.replaceChildren(h("p", { class: "ok", testid: "delete-record-ok" }, "The vault record was deleted."));
    });
  }, "secondary");
  return card("Recovery code (vault mode)", acct.row,
    h("fieldset", {}, h("legend", {}, "Change the code (the old code stays valid until the new one is stored)"), old.row, nw.row, conf.row, h("div", { class: "actions" }, change)),
    h("fieldset", {}, h("legend", {}, "Rehearse recovery (a wrong code costs one attempt)"), rc.row, h("div", { class: "actions" }, rehearse)),
    h("fieldset", {}, h("legend", {}, "Delete the vault record"), dc.row, h("div", { class: "actions" }, del)),
    out);
}
