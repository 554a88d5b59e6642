// The mail-code step of a remote vault: every request of an account needs an
// account ticket, which the vault's account service gives for the code it
// mails to the account's address ("Send a code to …", then type it). The
// local demo fleet needs no step: its mail goes to an outbox the app reads,
// so the step stays hidden there.
import { call } from "./api";
import type { ErrorReport, VaultChoice } from "./bindings";
import { h } from "./dom";
import { button, field, showError } from "./ui";

export interface MailStep {
  /** The fieldset (hidden unless the vault is remote). */
  el: HTMLElement;
  /** Shows the step for a remote vault, hides it for the demo fleet. */
  setRemote: (remote: boolean) => void;
  /** Re-reads the address into the button's label (after a prefill). */
  refresh: () => void;
  /** Before an account request: a code typed in the field is verified
   * first (once: the field is cleared, the ticket lasts 30 minutes). */
  verifyTyped: () => Promise<void>;
  /** After a failed account request: points at the step when the error says
   * the address was not verified (no ticket, or it expired). */
  explain: (e: unknown) => void;
}

/** Whether the vault in use is a remote one (from the saved settings). */
export async function vaultInUseIsRemote(): Promise<boolean> {
  try {
    return (await call("vault_settings", {})).choice.mode === "remote";
  } catch {
    return false;
  }
}

/** True when `e` says the address was not verified (CF-V024, CF-V026, CF-V036). */
export function needsMailCode(e: unknown): boolean {
  return (e as ErrorReport | null)?.kind === "account_not_verified";
}

/**
 * The step. `prefix` names its test ids (`${prefix}-mail`, `-mail-send`,
 * `-mail-address`, `-mail-code`, `-mail-verify`, `-mail-status`);
 * `account` is the address field it sends to; `target` is the vault a code
 * is about to move to, or null for the vault in use.
 */
export function mailCodeStep(
  prefix: string,
  account: HTMLInputElement | HTMLTextAreaElement,
  target: () => VaultChoice | null = () => null,
): MailStep {
  const address = h("span", { class: "mono", testid: `${prefix}-mail-address` }, "");
  const send = h("button", { type: "button", testid: `${prefix}-mail-send`, class: "secondary" }, "Send a code to ", address);
  const code = field("Code from the mail (8 digits)", `${prefix}-mail-code`, {
    autocomplete: "one-time-code",
    placeholder: "12345678",
    help: "The newest mail's code, within 10 minutes. Spaces and dashes do not matter.",
  });
  const status = h("div", { testid: `${prefix}-mail-status`, "aria-live": "polite" });
  const verify = button("Verify the code", `${prefix}-mail-verify`, () => {
    void (async () => {
      verify.disabled = true;
      try {
        await doVerify();
      } catch (e) {
        showError(status, e);
      } finally {
        verify.disabled = false;
      }
    })();
  }, "secondary");
  const el = h("fieldset", { testid: `${prefix}-mail`, class: "mail-step", hidden: true, "data-verified": "false" },
    h("legend", {}, "Confirm your e-mail address"),
    h("p", { class: "muted" },
      "This vault takes requests for an account only from someone who can read its mail: it sends an 8-digit code to the address. Once the code is verified, Coffer may use the vault for this address for 30 minutes."),
    h("div", { class: "actions" }, send),
    code.row,
    h("div", { class: "actions" }, verify),
    status);
  const refresh = () => {
    address.textContent = account.value.trim() || "your address";
  };
  account.addEventListener("input", () => {
    refresh();
    el.dataset.verified = "false";
  });
  account.addEventListener("change", refresh);
  refresh();
  const args = () => ({ account: account.value, target: target() });
  send.addEventListener("click", () => {
    refresh();
    void (async () => {
      send.disabled = true;
      status.replaceChildren();
      try {
        await call("send_vault_mail_code", args());
        status.replaceChildren(h("p", { class: "note", testid: `${prefix}-mail-sent` },
          `A code was sent to ${account.value.trim()}. Type it below within 10 minutes (a newer code replaces it; at most one code a minute).`));
        code.input.focus();
      } catch (e) {
        showError(status, e);
      } finally {
        send.disabled = false;
      }
    })();
  });
  const doVerify = async () => {
    const typed = code.input.value;
    await call("verify_vault_mail_code", { ...args(), code: typed });
    code.input.value = "";
    el.dataset.verified = "true";
    status.replaceChildren(h("p", { class: "ok", testid: `${prefix}-mail-verified` },
      `Address ${account.value.trim()} verified: Coffer may use the vault for it for 30 minutes.`));
  };
  return {
    el,
    setRemote: (remote) => {
      el.hidden = !remote;
      el.dataset.remote = String(remote);
    },
    refresh,
    verifyTyped: async () => {
      if (el.hidden || !code.input.value.trim()) return;
      try {
        await doVerify();
      } catch (e) {
        showError(status, e);
        throw e;
      }
    },
    explain: (e) => {
      if (el.hidden || !needsMailCode(e)) return;
      el.dataset.verified = "false";
      status.replaceChildren(h("p", { class: "warning", testid: `${prefix}-mail-needed` },
        "The vault needs a fresh code from your mail for this address: send one, type it, and try again."));
    },
  };
}
