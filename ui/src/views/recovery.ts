// The recovery wizard on a new device: pick the repository file, (vault mode:
// verify the fleet), enter the recovery key, then browse and restore.
import { call } from "../api";
import type { ErrorReport } from "../bindings";
import { h } from "../dom";
import { button, card, field, guarded, viewHead } from "../ui";
import { pathField } from "../pathfield";
import { errorPanel } from "./error";
import { mailCodeStep, vaultInUseIsRemote } from "../mailcode";
import { remoteFields } from "../remoteform";
import type { KeyInstalled } from "../bindings";
import { OVERVIEW_CHANGED, showError } from "../ui";

/**
 * After a recovery: "Keep backing up to this file". The backup sets that
 * travelled inside the file are listed and, on the button, set up on this
 * computer (those whose folders are here); first-run setup is then over.
 * Shown when sets were found, or this installation was never set up.
 */
function carryOn(r: KeyInstalled): HTMLElement {
  const el = h("div", { testid: "recovery-carry-on" });
  const show = (onboarded: boolean) => {
    if (r.sets_found.length === 0 && onboarded) return;
    const out = h("div", { testid: "recovery-carry-on-result", "aria-live": "polite" });
    const go = button("Keep backing up to this file", "recovery-keep-backing-up", () => {
      void guarded(go, out, async () => {
        const c = await call("keep_backing_up", {});
        window.dispatchEvent(new Event(OVERVIEW_CHANGED));
        go.hidden = true;
        out.replaceChildren(
          h("p", { class: "ok", testid: "recovery-carry-on-done" },
            c.adopted.length > 0
              ? `Backing up to ${c.repository} again: ${c.adopted.map((v) => v.set.name).join(", ")}. `
              : `Backups go to ${c.repository}. `,
            h("a", { href: "#backups" }, c.adopted.length > 0 ? "Open Backups" : "Create a backup set in Backups"), "."),
          ...c.not_adopted.map((f) => h("p", { class: "warning", testid: "recovery-not-adopted" },
            `“${f.name}” was not set up here: ${f.missing.join(", ")} ${f.missing.length === 1 ? "is" : "are"} not on this computer. Create it in Backups with the folders as they are here.`)));
      });
    });
    el.replaceChildren(card("Carry on on this computer",
      r.sets_found.length > 0
        ? h("div", {},
            h("p", {}, "These backup sets were kept in the backup file. Set them up here, to go on backing up to the same file:"),
            h("ul", { testid: "recovery-sets-found" }, ...r.sets_found.map((f) =>
              h("li", { "data-set-name": f.name, "data-missing": String(f.missing.length) },
                h("strong", {}, f.name), ` — ${f.sources.join(", ")} (${f.schedule_text})`,
                f.missing.length > 0 ? h("span", { class: "muted" }, ` — not on this computer: ${f.missing.join(", ")}`) : ""))))
        : h("p", {}, "Go on backing up to this file from this computer; you then create your backup sets in Backups."),
      h("div", { class: "actions" }, go), out));
  };
  void call("app_overview", {}).then((o) => show(o.onboarded)).catch((e) => showError(el, e));
  return el;
}

export function recoveryView(): HTMLElement {
  const repo = pathField("The backup file", "recovery-repo-path", "open_repository", {
    placeholder: "/media/usb/coffer.db",
    help: "Type the full path of the backup file, or choose it with Browse… (copy it from the old disk or sync folder first).",
  });
  const key = field("Your 64-digit recovery key", "recovery-key-input", {
    multiline: true,
    placeholder: "0f3a-91c2-…  (17 groups of 4 characters)",
    help: "Spaces, dashes and upper case do not matter. A typo is caught by the checksum before anything is tried.",
    autocomplete: "off",
  });
  // The file this installation already uses (unlocking after a restart):
  // filled in, so only the key or code is asked for.
  void call("app_overview", {}).then((o) => {
    if (o.repository && !repo.input.value) repo.input.value = o.repository;
  }).catch(() => undefined);
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
        h("p", {}, h("a", { href: "#snapshots", testid: "recovery-go-snapshots", class: "button-link" }, "3 · Browse and restore files")),
        carryOn(r));
    });
  });
  return h("section", { class: "view", testid: "recovery-screen", "aria-labelledby": "recovery-title" },
    viewHead("recovery-title", "Recovery wizard", "Open your backups on a new computer: you need only the backup file and your recovery key, or your recovery code through the vault."),
    card("1 · The backup file", repo.row),
    card("2 · With a recovery key", key.row, h("div", { class: "actions" }, unlock), slot),
    vaultCard(repo.input),
    offsiteCard(),
  );
}

/** Recovery from the off-site copy alone (no old disk): the destination and
 * its credentials, where to keep the new local backup file, then the
 * recovery key or the recovery code. Only the copy's index is downloaded
 * now; restoring fetches the files' data. */
function offsiteCard(): HTMLElement {
  const remote = remoteFields("recovery-remote", null, null, false);
  const local = pathField("Where to keep the backup file on this computer", "recovery-remote-repo-path", "save_repository", {
    placeholder: "/home/me/coffer.db",
    help: "A new file: the list of snapshots and files is downloaded into it; file data is fetched when you restore.",
  });
  const slot = h("div", { testid: "recovery-remote-result", "aria-live": "polite" });
  const done = (r: KeyInstalled) => {
    slot.replaceChildren(
      h("p", { class: "ok", testid: "recovery-remote-ok" }, `The off-site copy is open: ${r.snapshots} snapshot${r.snapshots === 1 ? "" : "s"} found.`),
      ...wrongGuessesWarning(r.wrong_guesses, r.wrong_guess_times),
      h("div", { testid: "recovery-remote-keyring" }, r.keyring_saved ? "The backup key is now kept in your OS keyring." : "The key could not be kept on this computer (Coffer asks again after a restart).",
        r.keyring_error ? errorPanel(r.keyring_error) : null),
      h("p", {}, h("a", { href: "#snapshots", testid: "recovery-remote-go-snapshots", class: "button-link" }, "Browse and restore files")),
      carryOn(r));
  };
  const needCreds = () => {
    const d = remote.destination();
    const c = remote.credentials();
    if (!d || !c) throw { kind: "invalid_input", code: "CF-A092", message: "these credentials do not fit the destination: enter the destination's secret, password or key file", next_step: "Fill in the credentials that belong to the chosen destination type (an access key for S3; a password or a private key for SFTP)." };
    return { destination: d, credentials: c };
  };
  const key = field("Your 64-digit recovery key", "recovery-remote-key", { multiline: true, autocomplete: "off",
    help: "Spaces, dashes and upper case do not matter." });
  const withKey = button("Open with my recovery key", "recovery-remote-unlock", () => {
    void guarded(withKey, slot, async () => {
      const r = await call("recover_from_remote_with_key", { ...needCreds(), repository: local.input.value, recovery_key: key.input.value });
      key.input.value = "";
      remote.clearSecrets();
      done(r);
    });
  });
  const account = field("Account (your e-mail address)", "recovery-remote-account", { autocomplete: "email" });
  const mail = mailCodeStep("recovery-remote", account.input);
  void vaultInUseIsRemote().then(mail.setRemote);
  const code = field("Recovery code", "recovery-remote-code", { type: "password", autocomplete: "current-password" });
  const withCode = button("Open with my recovery code", "recovery-remote-code-unlock", () => {
    void guarded(withCode, slot, async () => {
      await mail.verifyTyped();
      try {
        const r = await call("recover_from_remote_with_code", { ...needCreds(), repository: local.input.value, account: account.input.value, code: code.input.value });
        code.input.value = "";
        remote.clearSecrets();
        done(r);
      } catch (e) {
        mail.explain(e);
        throw e;
      }
    });
  });
  return card("3 · Or from the off-site copy (no old disk needed)",
    remote.el, local.row,
    h("div", { class: "grid-2" },
      h("div", {}, key.row, h("div", { class: "actions" }, withKey)),
      h("div", {}, account.row, mail.el, code.row, h("div", { class: "actions" }, withCode))),
    slot);
}

/** "N attempts remain" from a wrong-code error (CF-V010). */
export function attemptsLeft(message: string): number | null {
  const m = /(\d+) attempts? remain/.exec(message);
  return m ? Number(m[1]) : null;
}

/** After a successful recovery: the wrong codes tried since the previous
 * one (the vault counts them; the host cannot hide them). */
export function wrongGuessesText(n: number, times: number[]): string | null {
  if (n <= 0) return null;
  const last = times.length ? Math.max(...times) : null;
  const when = last === null ? "" : ` (the last at ${new Date(last * 1000).toLocaleString()})`;
  return `${n} wrong recovery code${n === 1 ? " was" : "s were"} tried for this account since its last successful recovery${when}. If that was not you, someone who can read this address's mail may be guessing: secure the mailbox, and change your recovery code in Settings.`;
}

function wrongGuessesWarning(n: number, times: number[]): HTMLElement[] {
  const text = wrongGuessesText(n, times);
  return text === null ? [] : [h("p", { class: "warning", role: "alert", testid: "recovery-wrong-guesses", "data-count": String(n) }, text)];
}

function vaultCard(repoInput: HTMLInputElement | HTMLTextAreaElement): HTMLElement {
  const slot = h("div", { testid: "recovery-code-result", "aria-live": "polite" });
  const fleet = h("div", { testid: "recovery-fleet", "data-verified": "pending" });
  const verify = button("Verify the vault fleet", "recovery-verify-fleet", () => {
    void guarded(verify, fleet, async () => {
      const v = await call("vault_info", {});
      fleet.dataset.verified = String(v.validated);
      fleet.replaceChildren(h("p", { class: v.validated ? "ok" : "warning" },
        v.validated ? `Fleet ${v.fleet_id} verified (${v.validation_mode}); ${v.guess_limit} wrong guesses destroy a record.` : "The fleet could not be verified: do not enter your code."));
    });
  }, "secondary");
  const account = field("Account (your e-mail address)", "recovery-account", { autocomplete: "email",
    help: "The address in your recovery kit." });
  const mail = mailCodeStep("recovery", account.input);
  void call("vault_settings", {}).then((vs) => {
    if (vs.account && !account.input.value) account.input.value = vs.account;
    mail.refresh();
  }).catch(() => undefined);
  void vaultInUseIsRemote().then(mail.setRemote);
  const code = field("Recovery code", "recovery-code-input", { type: "password", autocomplete: "current-password" });
  const attempts = h("div", { testid: "recovery-attempts", "aria-live": "assertive" });
  const ack = h("input", { type: "checkbox", id: "recovery-last-ack", testid: "recovery-last-attempt-ack" });
  const ackRow = h("p", { class: "warning", testid: "recovery-last-attempt-warning", hidden: true },
    "This is your LAST attempt: one more wrong code destroys the vault record for good, and your backups could then be opened only on a computer that still keeps the backup key (such as your old one). Find your recovery kit first. ",
    ack, h("label", { for: "recovery-last-ack" }, "I have checked my recovery kit"));
  const unlock = button("Open with my recovery code", "recovery-code-unlock", () => {
    if (!ackRow.hidden && !ack.checked) {
      ack.focus();
      return;
    }
    void guarded(unlock, slot, async () => {
      await mail.verifyTyped();
      try {
        const r = await call("unlock_with_recovery_code", { repository: repoInput.value, account: account.input.value, code: code.input.value });
        code.input.value = "";
        attempts.replaceChildren();
        ackRow.hidden = true;
        slot.replaceChildren(
          h("p", { class: "ok", testid: "recovery-ok" }, `The backup file is open: ${r.snapshots} snapshot${r.snapshots === 1 ? "" : "s"} found.`),
          ...wrongGuessesWarning(r.wrong_guesses, r.wrong_guess_times),
          h("div", { testid: "recovery-keyring" }, r.keyring_saved ? "The backup key is now kept in your OS keyring." : "The key could not be kept on this computer.",
            r.keyring_error ? errorPanel(r.keyring_error) : null),
          h("p", {}, h("a", { href: "#snapshots", testid: "recovery-go-snapshots", class: "button-link" }, "Browse and restore files")),
          carryOn(r));
      } catch (e) {
        mail.explain(e);
        if ((e as ErrorReport).kind === "wrong_recovery_code") {
          // Ready for the next try: the refused code is not left to resubmit.
          code.input.value = "";
          code.input.focus();
        }
        const left = attemptsLeft((e as ErrorReport).message ?? "");
        if (left !== null) {
          attempts.dataset.remaining = String(left);
          attempts.replaceChildren(h("p", { class: left <= 1 ? "warning" : "note" }, `${left} attempt${left === 1 ? "" : "s"} remaining.`));
          ackRow.hidden = left !== 1;
          ack.checked = false;
        }
        throw e;
      }
    });
  });
  // Enter in the code field submits, as the button does.
  code.input.addEventListener("keydown", (ev) => {
    if ((ev as KeyboardEvent).key === "Enter") {
      ev.preventDefault();
      unlock.click();
    }
  });
  return card("2 · Or with a recovery code (vault)",
    h("p", { class: "muted" }, "The fleet is verified before your code is used; every wrong code costs one attempt."),
    h("div", { class: "actions" }, verify), fleet, account.row, mail.el, code.row, attempts, ackRow, h("div", { class: "actions" }, unlock), slot);
}
