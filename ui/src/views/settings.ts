// Settings: vault, data directory, the key on this device, and a recovery
// rehearsal that checks a typed recovery key without changing anything.
import { call } from "../api";
import type { VaultChoice, VaultInfo } from "../bindings";
import { h } from "../dom";
import { reportLine } from "../format";
import { pathField } from "../pathfield";
import { formatMaxAge, freshnessState, freshnessText, maxAgeOf, withMaxAge } from "../trust";
import { button, card, confirmAction, field, guarded, showError, viewHead } from "../ui";
import { mailCodeStep, vaultInUseIsRemote } from "../mailcode";
import { wrongGuessesText } from "./recovery";

/** The wrong codes the vault counted since the last successful recovery
 * (a rehearsal and a move are recoveries: they end that count). */
function wrongGuesses(testid: string, n: number, times: number[]): HTMLElement[] {
  const text = wrongGuessesText(n, times);
  return text === null ? [] : [h("p", { class: "warning", role: "alert", testid, "data-count": String(n) }, text)];
}

/** Fired on window when the saved vault choice is (re)read: detail is
 * whether the vault in use is remote. */
const VAULT_CHANGED = "coffer-vault-changed";

/** Runs `f(remote)` now and whenever the vault in use changes, while `el`
 * is in the document. */
function onVaultInUse(el: HTMLElement, f: (remote: boolean) => void): void {
  void vaultInUseIsRemote().then(f);
  const listener = (ev: Event) => {
    if (!el.isConnected) {
      window.removeEventListener(VAULT_CHANGED, listener);
      return;
    }
    f((ev as CustomEvent<boolean>).detail);
  };
  window.addEventListener(VAULT_CHANGED, listener);
}

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
  const forget = button("Remove the key from this computer's keyring", "settings-forget-key", async () => {
    if (!(await confirmAction({ title: "Remove the backup key from this computer?", body: "Scheduled backups stop until you enter your recovery key or code again. Your backups are not touched.", verb: "Remove key", testid: "settings-forget-key" }))) return;
    void guarded(forget, keyOut, async () => {
      await call("forget_device_key", {});
      keyOut.replaceChildren(h("p", { class: "ok" }, "The key was removed from this computer."));
    });
  }, "secondary");
  const view = h("section", { class: "view", testid: "settings-screen", "aria-labelledby": "settings-title" },
    viewHead("settings-title", "Settings", "Where Coffer keeps its data, which vault it uses, and the key on this computer."),
    card("This installation", facts, moveDataDir()),
    vaultChoiceCard(),
    vaultCards(),
    card("Rehearse recovery", rehearse.row, h("div", { class: "actions" }, rehearseBtn), rehearseOut),
    card("The key on this computer", h("div", { class: "actions" }, lock, forget), keyOut),
  );
  void call("app_overview", {}).then((ov) => {
    facts.replaceChildren(
      h("dt", {}, "Data folder"), h("dd", { class: "mono", testid: "settings-data-dir" }, ov.status.data_dir),
      h("dt", {}, "Backup file"), h("dd", { class: "mono" }, ov.repository ?? "none yet"),
      h("dt", {}, "OS keyring"), h("dd", { testid: "settings-keyring" }, ov.keyring.available ? "available" : ov.keyring.error ? `unavailable (${ov.keyring.error.code})` : "still checking…"));
  }).catch((e) => showError(facts, e));
  return view;
}

/** Copy the data folder to a new place; Coffer uses it after a restart. */
function moveDataDir(): HTMLElement {
  const target = pathField("New data folder", "data-dir-target", "folder", {
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
  const acct = field("Account (your e-mail address)", "vault-account", { autocomplete: "email" });
  // A remote vault: every request below needs the address confirmed with
  // a code from its mail (one code serves all three for 30 minutes).
  const mail = mailCodeStep("vault", acct.input);
  void call("vault_settings", {}).then((vs) => {
    if (vs.account && !acct.input.value) acct.input.value = vs.account;
    mail.refresh();
  }).catch(() => undefined);
  onVaultInUse(mail.el, mail.setRemote);
  /** An account request: a typed mail code is verified first. */
  const withTicket = async <T>(req: () => Promise<T>): Promise<T> => {
    await mail.verifyTyped();
    return req().catch((e: unknown) => { mail.explain(e); throw e; });
  };
  const old = pw("Current recovery code", "change-old-code");
  const nw = pw("New recovery code", "change-new-code");
  const conf = pw("New recovery code again", "change-confirm-code");
  const out = h("div", { testid: "vault-result", "aria-live": "polite" });
  const clear = () => { for (const f of [old, nw, conf, rc, dc]) f.input.value = ""; };
  const change = button("Change the recovery code", "change-code-run", () => {
    void guarded(change, out, async () => {
      await withTicket(() => call("change_recovery_code", { account: acct.input.value, old: old.input.value, new: nw.input.value, confirm: conf.input.value }));
      clear();
      out.replaceChildren(h("p", { class: "ok", testid: "change-code-ok" }, "The recovery code was changed. The old code no longer works."));
    });
  });
  const rc = pw("Recovery code", "rehearse-code-input");
  const rehearse = button("Rehearse with the code", "rehearse-code-run", () => {
    void guarded(rehearse, out, async () => {
      const r = await withTicket(() => call("rehearse_recovery_code", { account: acct.input.value, code: rc.input.value }));
      clear();
      out.replaceChildren(h("p", { class: "ok", testid: "rehearse-code-ok" }, `Your code recovers the key, and it opens your backup file (${r.snapshots} snapshots).`),
        ...wrongGuesses("rehearse-code-wrong-guesses", r.wrong_guesses, r.wrong_guess_times));
    });
  }, "secondary");
  const dc = pw("Recovery code", "delete-record-code");
  const del = button("Delete the vault record", "delete-record-run", async () => {
    if (!(await confirmAction({ title: "Delete your vault record?", body: "Afterwards your recovery code can no longer recover your backups. Keep this computer's key, or a recovery key, before you go on.", verb: "Delete record", testid: "delete-record-run" }))) return;
    void guarded(del, out, async () => {
      await withTicket(() => call("delete_vault_record", { account: acct.input.value, code: dc.input.value }));
      clear();
      out.replaceChildren(h("p", { class: "ok", testid: "delete-record-ok" }, "The vault record was deleted."));
    });
  }, "secondary");
  return card("Recovery code (vault mode)", acct.row, mail.el,
    h("fieldset", {}, h("legend", {}, "Change the code (the old code stays valid until the new one is stored)"), old.row, nw.row, conf.row, h("div", { class: "actions" }, change)),
    h("fieldset", {}, h("legend", {}, "Rehearse recovery (a wrong code costs one attempt)"), rc.row, h("div", { class: "actions" }, rehearse)),
    h("fieldset", {}, h("legend", {}, "Delete the vault record"), dc.row, h("div", { class: "actions" }, del)),
    out);
}

const CHECK_STATUS: Record<string, string> = { passed: "passed", failed: "FAILED", not_applicable: "not applicable", not_run: "not run" };

/** The vault in use and the form that chooses it: the local demo fleet, or
 * a remote fleet by URL with pinned witness and operator keys. "Test
 * connection" verifies without saving; "Save" verifies, then saves. */
function vaultChoiceCard(): HTMLElement {
  const radio = (value: string, testid: string, label: string) => {
    const input = h("input", { type: "radio", name: "vault-choice", value, id: `vault-choice-${value}`, testid });
    return { input, row: h("span", { class: "check" }, input, h("label", { for: `vault-choice-${value}` }, label)) };
  };
  const embedded = radio("embedded_demo", "vault-choice-embedded", "Local demo fleet (simulated HSMs on this computer)");
  const remote = radio("remote", "vault-choice-remote", "A remote fleet by URL");
  const url = field("Vault URL", "vault-url", { placeholder: "https://vault.example.org", help: "https:// (plain http:// only for a vault on this computer)." });
  const wk = field("Witness key", "vault-witness-key", { placeholder: "witness.example+1a2b3c4d+…", help: "The witness's public key, exactly as the vault operator published it." });
  const ok = field("Operator key", "vault-operator-key", { placeholder: "operator.example+5e6f7a8b+…", help: "The operator's root public key, exactly as published." });
  const wurl = field("Witness URL (optional)", "vault-witness-url", { placeholder: "https://witness.example.org", help: "Only used for the audit links in the report." });
  const vk = field("HSM vendor key (optional)", "vault-vendor-key", { placeholder: "hsm-vendor.example+9c0d1e2f+…", help: "The HSM vendor's root public key. With it, Coffer also checks the fleet's deployment evidence: each HSM attested by the vendor, the fleet keys made inside them." });
  const eurl = field("Deployment evidence URL (optional, with the vendor key)", "vault-evidence-url", { placeholder: "https://witness.example.org/deployment-evidence.json", help: "Where the operator publishes the deployment evidence document." });
  // The trust policy: read from the file the operator publishes (native
  // dialog or a typed path), kept as text in the settings; its max-age can
  // be changed here.
  const policyFile = pathField("Trust policy file", "vault-policy-file", "open_policy", { placeholder: "/path/to/trust.policy",
    help: "The trust policy the vault operator publishes: which cosigners must vouch for the witness log, how many, and how recently. Choose it with Browse…, or type its path and press Load." });
  const policyText = field("Trust policy (optional)", "vault-trust-policy", { multiline: true, placeholder: "log …\nwitness …\nquorum …\nmax-age 86400",
    help: "Without a policy Coffer cannot tell whether the log checkpoint is the latest (the verification panel says so)." });
  const maxAge = field("Maximum age of the cosigned checkpoint (hours)", "vault-max-age-hours", { type: "number",
    help: "The oldest quorum cosigning Coffer accepts; written into the policy's max-age line." });
  const policySummary = h("div", { testid: "vault-policy-summary", "aria-live": "polite" });
  const showMaxAge = () => {
    const secs = maxAgeOf(policyText.input.value);
    maxAge.input.value = secs === null ? "" : String(Math.round((secs / 3600) * 100) / 100);
  };
  policyText.input.addEventListener("input", showMaxAge);
  maxAge.input.addEventListener("input", () => {
    const hours = Number(maxAge.input.value);
    if (!policyText.input.value.trim() || !Number.isFinite(hours) || hours <= 0) return;
    policyText.input.value = withMaxAge(policyText.input.value, hours * 3600);
  });
  const loadPolicy = button("Load", "vault-policy-load", () => {
    void guarded(loadPolicy, policySummary, async () => {
      const p = await call("load_trust_policy", { path: policyFile.input.value.trim() });
      policyText.input.value = p.text;
      showMaxAge();
      policySummary.dataset.loaded = "true";
      policySummary.replaceChildren(h("p", { class: "ok", testid: "vault-policy-loaded" },
        `Policy read: quorum ${p.policy.quorum}; maximum age ${formatMaxAge(p.policy.max_age_secs)}; cosigners: ${p.policy.cosigners.join(", ") || "none"}. Test or save to use it.`));
    });
  }, "secondary");
  const shippedPolicy = button("Use the policy shipped with Coffer", "vault-policy-shipped", () => {
    void guarded(shippedPolicy, policySummary, async () => {
      const p = await call("shipped_trust_policy", { witness_key: wk.input.value.trim() });
      policyText.input.value = p.text;
      showMaxAge();
      policySummary.dataset.loaded = "true";
      policySummary.replaceChildren(h("p", { class: "ok", testid: "vault-policy-loaded" },
        `Shipped policy: quorum ${p.policy.quorum}; maximum age ${formatMaxAge(p.policy.max_age_secs)}; cosigners: ${p.policy.cosigners.join(", ") || "none"}. Test or save to use it.`));
    });
  }, "secondary");
  // A file picked in the dialog is loaded at once.
  policyFile.input.addEventListener("change", () => { if (policyFile.input.value.trim()) loadPolicy.click(); });
  const clearPolicy = button("No policy", "vault-policy-clear", () => {
    policyText.input.value = "";
    maxAge.input.value = "";
    policySummary.replaceChildren();
    delete policySummary.dataset.loaded;
  }, "secondary");
  const policySet = h("fieldset", { testid: "vault-policy" }, h("legend", {}, "Trust policy (freshness and cosigners)"),
    policyFile.row, h("div", { class: "actions" }, loadPolicy, shippedPolicy, clearPolicy), policySummary, policyText.row, maxAge.row);
  const remoteFields = h("fieldset", { testid: "vault-remote-fields" }, h("legend", {}, "Remote fleet"), url.row, wk.row, ok.row, wurl.row, vk.row, eurl.row, policySet);
  const sync = () => {
    remoteFields.disabled = !remote.input.checked;
    moveTo.setRemote(remote.input.checked);
    toLegend.hidden = !remote.input.checked;
  };
  embedded.input.addEventListener("change", sync);
  remote.input.addEventListener("change", sync);
  const current = h("p", { testid: "settings-vault" }, "…");
  const refused = h("div", { testid: "vault-switch-refused" });
  const out = h("div", { testid: "vault-choice-result", "aria-live": "polite" });
  const choice = (): VaultChoice => {
    if (!remote.input.checked) return { mode: "embedded_demo" };
    const w = wurl.input.value.trim();
    const v = vk.input.value.trim();
    const e = eurl.input.value.trim();
    const p = policyText.input.value.trim();
    return {
      mode: "remote", url: url.input.value.trim(), witness_key: wk.input.value.trim(), operator_key: ok.input.value.trim(),
      ...(w ? { witness_url: w } : {}),
      ...(v ? { vendor_key: v } : {}),
      ...(e ? { evidence_url: e } : {}),
      ...(p ? { trust_policy: `${p}\n` } : {}),
    };
  };
  const report = (v: VaultInfo, saved: boolean) => {
    out.dataset.validated = String(v.validated);
    out.replaceChildren(
      h("p", { class: v.validated ? "ok" : "warning", testid: "vault-choice-verdict" },
        v.validated
          ? `Fleet ${v.fleet_id} verified (fleet key ${v.key_fingerprint}); ${saved ? "saved: Coffer now uses this vault." : "not saved yet."}`
          : "The fleet could NOT be verified with these keys: do not use this vault."),
      h("p", { class: "muted small" }, `${v.nodes} nodes, quorum ${v.quorum ? "reached" : "NOT reached"}; validation: ${v.validation_mode}`),
      h("p", { testid: "vault-choice-freshness", "data-state": freshnessState(v) }, freshnessText(v)),
      h("ul", { class: "checks", testid: "vault-choice-checks" }, ...v.checks.map((c) =>
        h("li", { testid: `vault-choice-check-${c.id}`, "data-status": c.status },
          h("span", { class: `badge status-${c.status}` }, CHECK_STATUS[c.status] ?? c.status), " ", c.label,
          c.detail ? h("p", { class: "muted small" }, c.detail) : null))));
  };
  const test = button("Test connection", "vault-test", () => {
    void guarded(test, out, async () => report(await call("test_vault_choice", { choice: choice() }), false));
  }, "secondary");
  const save = button("Save", "vault-save", () => {
    void guarded(save, out, async () => {
      report(await call("save_vault_choice", { choice: choice() }), true);
      load();
    });
  });
  // Vault mode with a registered code: "Save" is refused (CF-A070), and the
  // code is moved instead: recovered from the vault in use, registered in
  // the one chosen above, then deleted in the old one.
  const moveAcct = field("Account (your e-mail address)", "vault-move-account", { autocomplete: "email" });
  // Remote vaults on either side: the address is confirmed in each with a
  // code from that vault's mail (the vault in use recovers and deletes,
  // the chosen one registers).
  const moveFrom = mailCodeStep("vault-move-from", moveAcct.input);
  const moveTo = mailCodeStep("vault-move-to", moveAcct.input, () => (remote.input.checked ? choice() : null));
  const fromLegend = h("p", { class: "muted", testid: "vault-move-from-label" }, "The vault in use (your code is recovered and then deleted there):");
  const toLegend = h("p", { class: "muted", testid: "vault-move-to-label" }, "The vault chosen above (your code is registered there):");
  const moveCode = field("Your recovery code", "vault-move-code", { type: "password", autocomplete: "off",
    help: "Coffer recovers your key with it from the vault in use (a wrong code costs one attempt there), registers the same code in the vault chosen above once that fleet verifies, switches to it, and then deletes the old record." });
  const moveOut = h("div", { testid: "vault-move-result", "aria-live": "polite" });
  const moveBtn = button("Move my recovery code to this vault", "vault-move-run", () => {
    void guarded(moveBtn, moveOut, async () => {
      await moveFrom.verifyTyped();
      await moveTo.verifyTyped();
      const r = await call("move_recovery_code", { choice: choice(), account: moveAcct.input.value, code: moveCode.input.value })
        .catch((e: unknown) => { moveFrom.explain(e); moveTo.explain(e); throw e; });
      moveCode.input.value = "";
      report(r.info, true);
      moveOut.replaceChildren(h("p", { class: "ok", testid: "vault-move-ok" },
        `Your recovery code now lives in fleet ${r.info.fleet_id}, and Coffer uses that vault.`),
        r.old_record_deleted
          ? h("p", { class: "muted", testid: "vault-move-old-deleted" }, "The record in the previous vault was deleted.")
          : h("p", { class: "warning", testid: "vault-move-old-kept" },
            `The record in the previous vault could NOT be deleted, so the code works there too. ${r.old_record_error ? reportLine(r.old_record_error) : ""}`),
        ...wrongGuesses("vault-move-wrong-guesses", r.wrong_guesses, r.wrong_guess_times));
      load();
    });
  });
  const move = h("fieldset", { testid: "vault-move", hidden: true },
    h("legend", {}, "Move my recovery code"), moveAcct.row, fromLegend, moveFrom.el, toLegend, moveTo.el, moveCode.row, h("div", { class: "actions" }, moveBtn), moveOut);
  const load = () => {
    void call("vault_settings", {}).then((vs) => {
      move.hidden = vs.switch_refused?.code !== "CF-A070";
      if (vs.account && !moveAcct.input.value) moveAcct.input.value = vs.account;
      moveFrom.refresh();
      moveTo.refresh();
      const c = vs.choice;
      moveFrom.setRemote(c.mode === "remote");
      fromLegend.hidden = c.mode !== "remote";
      window.dispatchEvent(new CustomEvent(VAULT_CHANGED, { detail: c.mode === "remote" }));
      if (c.mode === "remote") {
        remote.input.checked = true;
        url.input.value = c.url;
        wk.input.value = c.witness_key;
        ok.input.value = c.operator_key;
        wurl.input.value = c.witness_url ?? "";
        vk.input.value = c.vendor_key ?? "";
        eurl.input.value = c.evidence_url ?? "";
        policyText.input.value = c.trust_policy ?? "";
        showMaxAge();
        current.textContent = `Remote vault at ${c.url} (witness and operator keys pinned; ${c.trust_policy ? "trust policy set" : "no trust policy"}).`;
      } else {
        embedded.input.checked = true;
        current.textContent = c.mode === "key_only" ? "No vault: recovery-key mode." : "Local demo fleet (5 simulated HSMs on this computer).";
      }
      sync();
      // The sidebar's "Local demo fleet" badge follows the saved choice.
      const badge = document.getElementById("demo-badge");
      if (badge) badge.hidden = c.mode !== "embedded_demo";
      refused.replaceChildren(...(vs.switch_refused
        ? [h("p", { class: "note" }, reportLine(vs.switch_refused))]
        : []));
    }).catch((e) => showError(current, e));
  };
  load();
  return card("Vault", current,
    h("fieldset", { class: "choices" }, h("legend", {}, "Which vault protects your recovery code"), embedded.row, remote.row),
    remoteFields, refused,
    h("div", { class: "actions" }, test, save), out, move);
}
