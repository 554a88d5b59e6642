// First run: choose key mode or vault mode; in key mode create the
// repository, show the 64-digit recovery key once, confirm one group, keep K
// in the OS keyring, and create the first backup set.
import { call } from "../api";
import type { AppOverview, ErrorReport, KeyInstalled, NewRecoveryKey } from "../bindings";
import { h } from "../dom";
import { button, card, confirmAction, field, guarded, showError, viewHead } from "../ui";
import { pathField } from "../pathfield";
import { errorPanel } from "./error";
import { mailCodeStep, vaultInUseIsRemote } from "../mailcode";
import { setForm } from "./setform";

export function onboardingView(ov: AppOverview | null, done: () => void): HTMLElement {
  const body = h("div", { testid: "onboard-step" });
  const view = h("section", { class: "view", testid: "onboarding-screen", "aria-labelledby": "onboard-title" },
    viewHead("onboard-title", "Set up Coffer",
      "Coffer encrypts your backups on this computer. Choose how you will be able to open them on a new computer if this one is lost."),
    body);
  stepMode(body, ov, done);
  return view;
}

/** Which vault a recovery code would be registered in (read fresh: it may
 * have been changed in Settings since the app started). */
function vaultNote(): HTMLElement {
  const note = h("p", { class: "note", testid: "onboard-vault-demo" },
    "This build uses a local demo fleet: 5 simulated HSMs running inside Coffer on this computer. It shows how the vault works; it is not hardware. A remote fleet can be chosen in Settings → Vault before you continue.");
  void call("vault_settings", {}).then((vs) => {
    if (vs.choice.mode === "remote") note.textContent = `Your recovery code will be registered in the remote vault at ${vs.choice.url}, chosen in Settings (to use another vault, change it there first).`;
  }).catch(() => undefined);
  return note;
}

function stepMode(body: HTMLElement, ov: AppOverview | null, done: () => void): void {
  body.dataset.step = "mode";
  body.replaceChildren(
    h("div", { class: "choices" },
      h("div", { class: "card choice" },
        h("h2", {}, "Recovery key (no vault)"),
        h("p", {}, "Coffer shows you a 64-digit recovery key once. Write it down or print it. Anyone with it and your backup file can open your backups; without it nobody can."),
        button("Use a recovery key", "onboard-mode-key", () => stepRepo(body, ov, done))),
      h("div", { class: "card choice" },
        h("h2", {}, "Recovery code (vault)"),
        h("p", {}, "You choose a recovery code; the HSM vault protects your key and allows only a few wrong guesses."),
        vaultNote(),
        button("Use a recovery code", "onboard-mode-vault", () => stepVault(body, ov, done)))),
  );
  body.append(h("p", { class: "muted" }, "Already have a backup file from another computer? ",
    h("a", { href: "#recovery", testid: "onboard-go-recovery" }, "Open it in the Recovery wizard.")));
}

function stepRepo(body: HTMLElement, ov: AppOverview | null, done: () => void): void {
  body.dataset.step = "repository";
  const home = ov?.status.data_dir ?? "";
  const path = pathField("Where to keep the backup file", "onboard-repo-path", "save_repository", {
    value: home ? `${home}/coffer.db` : "",
    help: "One file holds every backup, encrypted. Put it on another disk or a sync folder; type the full path, or use Browse… to choose it in a file dialog.",
  });
  const slot = h("div", {});
  const create = button("Create the backup file", "onboard-create", () => {
    void guarded(create, slot, async () => {
      const k = await askToCreateFolder(path.input.value, (create_folder) =>
        call("create_key_repository", { path: path.input.value, create_folder }));
      stepShowKey(body, k, done);
    });
  });
  body.replaceChildren(card("1 · The backup file", path.row, h("div", { class: "actions" }, create), slot));
  path.input.focus();
}

/** Vault mode: verify the fleet, choose the recovery code (with a strength
 * estimate and confirmation), create the backup file and register. */
function stepVault(body: HTMLElement, ov: AppOverview | null, done: () => void): void {
  body.dataset.step = "vault";
  const home = ov?.status.data_dir ?? "";
  const fleet = h("div", { testid: "onboard-fleet", "data-verified": "pending" }, h("p", { class: "muted" }, "Verifying the vault fleet…"));
  const path = pathField("Where to keep the backup file", "onboard-repo-path", "save_repository", { value: home ? `${home}/coffer.db` : "" });
  const account = field("Account (your e-mail address)", "onboard-account", { autocomplete: "email",
    help: "The vault account is an e-mail address: a remote vault mails a code to it before it takes any request." });
  // A remote vault: the address is confirmed with a code from its mail
  // first (the demo fleet's mail goes to an outbox Coffer reads itself).
  const mail = mailCodeStep("onboard", account.input);
  void call("vault_settings", {}).then((vs) => {
    if (vs.account && !account.input.value) account.input.value = vs.account;
    mail.refresh();
  }).catch(() => undefined);
  void vaultInUseIsRemote().then(mail.setRemote);
  const code = field("Recovery code", "onboard-code", { type: "password", autocomplete: "new-password",
    help: "Four or five unrelated words are strong and easy to remember. Only a few wrong guesses are allowed." });
  const confirm = field("Type the recovery code again", "onboard-code-confirm", { type: "password", autocomplete: "new-password" });
  const meter = h("meter", { testid: "onboard-code-meter", min: 0, max: 100, low: 45, high: 70, optimum: 90, value: 0, "aria-label": "Estimated strength" });
  const strength = h("p", { testid: "onboard-code-strength", "aria-live": "polite", class: "muted" }, "Strength: type a code");
  code.input.addEventListener("input", () => {
    void call("code_strength", { code: code.input.value }).then((s) => {
      meter.value = Math.min(100, s.bits);
      strength.textContent = `Strength (an estimate): ${s.label}, about ${s.bits} bits`;
      strength.dataset.acceptable = String(s.acceptable);
    });
  });
  const slot = h("div", {});
  const create = button("Create and register", "onboard-create-vault", () => {
    void guarded(create, slot, async () => {
      await mail.verifyTyped();
      const r = await askToCreateFolder(path.input.value, (create_folder) => call("create_vault_repository", {
        path: path.input.value, account: account.input.value, code: code.input.value, confirm: confirm.input.value, create_folder,
      })).catch((e: unknown) => { mail.explain(e); throw e; });
      const acct = account.input.value;
      code.input.value = "";
      confirm.input.value = "";
      stepKit(body, r, acct, done);
    });
  });
  body.replaceChildren(card("1 · The vault", fleet),
    card("2 · Your recovery code", path.row, account.row, mail.el, code.row, h("div", { class: "strength" }, meter, strength), confirm.row,
      h("div", { class: "actions" }, create), slot));
  void call("vault_info", {}).then((v) => {
    fleet.dataset.verified = String(v.validated);
    fleet.replaceChildren(h("dl", { class: "facts" },
      h("dt", {}, "Fleet"), h("dd", { testid: "onboard-fleet-id", class: "mono" }, v.fleet_id),
      h("dt", {}, "Key fingerprint"), h("dd", { class: "mono" }, v.key_fingerprint),
      h("dt", {}, "Verified"), h("dd", {}, v.validated ? `yes (${v.validation_mode})` : "NO — do not continue"),
      h("dt", {}, "Wrong guesses allowed"), h("dd", {}, String(v.guess_limit))));
  }).catch((e) => showError(fleet, e));
}

/**
 * Makes the backup file, never a missing folder unasked: when the folder is
 * not there (CF-A097: often an unplugged disk's mount point) the user is
 * asked, and only "Create folder" makes it; Cancel leaves the error shown.
 */
async function askToCreateFolder<T>(path: string, make: (createFolder: boolean) => Promise<T>): Promise<T> {
  try {
    return await make(false);
  } catch (e) {
    if ((e as ErrorReport).code !== "CF-A097") throw e;
    const folder = path.trim().replace(/\/[^/]*$/, "") || "/";
    const yes = await confirmAction({
      title: `The folder ${folder} does not exist. Create it?`,
      body: "If it is on a disk that is not connected (a USB disk), choose Cancel and connect the disk first: otherwise your backups would be kept on this computer's own disk.",
      verb: "Create folder",
      testid: "onboard-create-folder",
    });
    if (!yes) throw e;
    return make(true);
  }
}

/** Vault mode: the recovery kit (what to keep; the code itself is not shown). */
function stepKit(body: HTMLElement, r: KeyInstalled, account: string, done: () => void): void {
  body.dataset.step = "kit";
  const next = button("Continue", "onboard-kit-continue", () => stepFirstSet(body, { repository: r.repository, groups: [], confirm_group: 0 }, r, done));
  body.replaceChildren(card("3 · Your recovery kit",
    h("div", { class: "kit", testid: "onboard-kit" },
      h("p", {}, "To open your backups on a new computer you need:"),
      h("ol", {},
        h("li", {}, "the backup file: ", h("span", { class: "mono" }, r.repository)),
        h("li", {}, "your account name: ", h("span", { class: "mono", testid: "onboard-kit-account" }, account)),
        h("li", {}, "your recovery code (it is not printed here: write it down separately and keep it safe)."))),
    h("div", { class: "actions" }, button("Print recovery kit", "onboard-print-kit", () => window.print(), "secondary"), next)));
}

function stepShowKey(body: HTMLElement, k: NewRecoveryKey, done: () => void): void {
  body.dataset.step = "recovery-key";
  const groups = h("ol", { class: "key-groups mono", testid: "onboard-recovery-key", "aria-label": "Your recovery key, 17 groups" },
    ...k.groups.map((g, i) => h("li", { testid: `onboard-key-group-${i + 1}`, class: i === 16 ? "checksum" : undefined }, g)));
  const confirm = field(`Type group ${k.confirm_group} of your recovery key`, "onboard-confirm-input", {
    help: "This proves you wrote it down. Groups are numbered from 1; the 17th is a checksum.",
  });
  confirm.input.dataset.group = String(k.confirm_group);
  const slot = h("div", {});
  const ok = button("I have written it down", "onboard-confirm", () => {
    void guarded(ok, slot, async () => {
      const r = await call("confirm_recovery_key", { group: k.confirm_group, typed: confirm.input.value });
      stepFirstSet(body, k, r, done);
    });
  });
  body.replaceChildren(
    card("2 · Your recovery key",
      h("p", {}, "This is the only way to open your backups on another computer. Coffer will not show it again. Write it down or print it and keep it somewhere safe."),
      groups,
      h("p", { class: "muted" }, `Backup file: ${k.repository}`),
      h("div", { class: "actions" }, button("Print recovery kit", "onboard-print-kit", () => window.print(), "secondary")),
      confirm.row,
      h("div", { class: "actions" }, ok),
      slot),
  );
}

function stepFirstSet(body: HTMLElement, k: NewRecoveryKey, r: KeyInstalled, done: () => void): void {
  body.dataset.step = "first-set";
  const keyring = h("div", { testid: "onboard-keyring-result", "data-saved": String(r.keyring_saved) });
  if (r.keyring_saved) {
    keyring.append(h("p", { class: "ok" }, "The backup key is now kept in your OS keyring, so scheduled backups run without asking."));
  } else if (r.keyring_error) {
    // Vault mode comes here from the kit (no key groups were shown).
    const secret = k.groups.length === 0 ? "recovery code" : "recovery key";
    keyring.append(
      h("p", {}, `Your ${secret} is set up, but the backup key could not be kept on this computer:`),
      errorPanel(r.keyring_error),
      h("p", { class: "muted" }, `Coffer still works: while it stays open it remembers the key; after a restart it asks for your ${secret}.`));
  }
  const form = setForm(null, { repository: k.repository, offsite: false });
  const slot = h("div", {});
  const save = button("Save and finish", "onboard-finish", () => {
    void guarded(save, slot, async () => {
      await call("complete_onboarding", { first_set: form.read() });
      body.dataset.step = "done";
      done();
    });
  });
  body.replaceChildren(keyring, card("3 · What to back up", form.el, h("div", { class: "actions" }, save), slot));
}
