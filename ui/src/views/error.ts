import type { ErrorReport } from "../bindings";
import { h } from "../dom";

/** Every error shows its code, a plain sentence and the next step. */
export function errorPanel(e: ErrorReport): HTMLElement {
  return h("div", { class: "error-panel", role: "alert", testid: "error-panel", tabindex: "-1", "data-error-kind": e.kind, "data-error-code": e.code },
    h("p", { class: "error-message", testid: "error-message" }, e.message),
    h("p", { class: "error-next" }, h("strong", {}, "What to do: "), h("span", { testid: "error-next-step" }, e.next_step)),
    h("p", { class: "error-code muted" }, "Error code ", h("code", { testid: "error-code" }, e.code),
      " · ", h("a", { href: `#support?code=${encodeURIComponent(e.code)}`, testid: "error-support-link" }, "look it up in Support")),
  );
}
