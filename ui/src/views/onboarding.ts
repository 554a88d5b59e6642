// First run: choose key mode or vault mode; in key mode create the
// repository, show the 64-digit recovery key once, confirm one group, keep K
// in the OS keyring, and create the first backup set.
import { call } from "../api";
import type { AppOverview, KeyInstalled, NewRecoveryKey } from "../bindings";
import { h } from "../dom";
import { button, card, field, guarded, viewHead } from "../ui";
import { errorPanel } from "./error";
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
        h("p", { class: "note", testid: "onboard-vault-unavailable" },
          "The vault client is not part of this build yet, so vault mode cannot be chosen. Use a recovery key for now."),
        h("button", { type: "button", testid: "onboard-mode-vault", disabled: true }, "Use a recovery code"))),
  );
  body.append(h("p", { class: "muted" }, "Already have a backup file from another computer? ",
    h("a", { href: "#recovery", testid: "onboard-go-recovery" }, "Open it in the Recovery wizard.")));
}

function stepRepo(body: HTMLElement, ov: AppOverview | null, done: () => void): void {
  body.dataset.step = "repository";
  const home = ov?.status.data_dir ?? "";
  const path = field("Where to keep the backup file", "onboard-repo-path", {
    value: home ? `${home}/coffer.db` : "",
    help: "One file holds every backup, encrypted. Put it on another disk or a sync folder; type the full path.",
  });
  const slot = h("div", {});
  const create = button("Create the backup file", "onboard-create", () => {
    void guarded(create, slot, async () => {
      const k = await call("create_key_repository", { path: path.input.value });
      stepShowKey(body, k, done);
    });
  });
  body.replaceChildren(card("1 · The backup file", path.row, h("div", { class: "actions" }, create), slot));
  path.input.focus();
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
    keyring.append(
      h("p", {}, "Your recovery key is confirmed, but the key could not be kept on this computer:"),
      errorPanel(r.keyring_error),
      h("p", { class: "muted" }, "Coffer still works: while it stays open it remembers the key; after a restart it asks for your recovery key."));
  }
  const form = setForm(null, { repository: k.repository });
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
