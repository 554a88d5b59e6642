// Support: look up an error code, the diagnostics report (no secrets) to copy
// or save, and the recovery guide with the steps already done.
import { call } from "../api";
import { h } from "../dom";
import { whileDialogOpen } from "../pathfield";
import { button, card, field, guarded, showError, viewHead } from "../ui";

export function supportView(initialCode: string | null): HTMLElement {
  const code = field("Error code", "support-code-input", { placeholder: "CF-R002", value: initialCode ?? "" });
  const codeOut = h("div", { testid: "support-code-result" });
  const lookup = button("Look up", "support-lookup", () => {
    void guarded(lookup, codeOut, async () => {
      const e = await call("lookup_error", { code: code.input.value });
      codeOut.replaceChildren(h("dl", { class: "facts" },
        h("dt", {}, "Code"), h("dd", { testid: "support-code" }, h("code", {}, e.code)),
        h("dt", {}, "Kind"), h("dd", { testid: "support-kind" }, e.kind),
        h("dt", {}, "What it means"), h("dd", { testid: "support-meaning" }, e.meaning),
        h("dt", {}, "What to do"), h("dd", { testid: "support-what-to-do" }, e.what_to_do)));
    });
  });
  code.input.addEventListener("keydown", (ev) => {
    if ((ev as KeyboardEvent).key === "Enter") lookup.click();
  });

  const diag = h("pre", { class: "diag", testid: "support-diagnostics", tabindex: 0, "aria-label": "Diagnostics report" }, "…");
  const diagOut = h("div", { testid: "support-diagnostics-status", "aria-live": "polite" });
  const loadDiag = async (save: boolean) => {
    const d = await call("diagnostics", { save });
    diag.textContent = d.text;
    if (d.saved_to) diagOut.replaceChildren(h("p", { class: "ok" }, "Saved to ", h("span", { class: "mono", testid: "support-saved-path" }, d.saved_to)));
  };
  const copy = button("Copy", "support-copy", () => {
    void guarded(copy, diagOut, async () => {
      await navigator.clipboard.writeText(diag.textContent ?? "");
      diagOut.replaceChildren(h("p", { class: "ok" }, "Copied."));
    });
  }, "secondary");
  const save = button("Save in the data folder", "support-save", () => void guarded(save, diagOut, () => loadDiag(true)), "secondary");
  // "Save as…": the native save dialog picks the file (it asks before
  // replacing one); data-dialog says where it is: open, picked, cancelled, failed.
  const saveAs = button("Save as…", "support-save-as", () => {
    saveAs.dataset.dialog = "open";
    void guarded(saveAs, diagOut, async () => {
      let path: string | null;
      try {
        path = await whileDialogOpen(() => call("pick_path", { kind: "save_diagnostics", start: null }));
      } catch (e) {
        saveAs.dataset.dialog = "failed";
        throw e;
      }
      saveAs.dataset.dialog = path === null ? "cancelled" : "picked";
      if (path === null) return;
      const d = await call("save_diagnostics_as", { path });
      diag.textContent = d.text;
      diagOut.replaceChildren(h("p", { class: "ok" }, "Saved to ", h("span", { class: "mono", testid: "support-saved-path" }, d.saved_to ?? path)));
    });
  }, "secondary");
  const refresh = button("Refresh", "support-refresh", () => void guarded(refresh, diagOut, () => loadDiag(false)), "secondary");

  const guide = h("ol", { class: "guide", testid: "guide-steps" });
  const loadGuide = async () => {
    try {
      const steps = await call("recovery_guide", {});
      guide.replaceChildren(...steps.map((s) => h("li", { testid: `guide-step-${s.id}`, "data-done": String(s.done), class: s.done ? "done" : undefined },
        h("span", { class: "badge", "aria-label": s.done ? "done" : "to do" }, s.done ? "✓ done" : "to do"), " ",
        h("strong", {}, s.title), h("p", { class: "muted" }, s.detail))));
    } catch (e) {
      showError(guide, e);
    }
  };

  const view = h("section", { class: "view", testid: "support-screen", "aria-labelledby": "support-title" },
    viewHead("support-title", "Support", "Every error has a code, a plain sentence and a next step. Support staff may ask for the code or the diagnostics report, never for your recovery key or code."),
    card("Look up an error code", code.row, h("div", { class: "actions" }, lookup), codeOut),
    card("Diagnostics report", h("p", { class: "muted" }, "It holds versions, settings without paths, and recent error codes. It never holds your recovery key, recovery code or backup key."),
      diag, h("div", { class: "actions" }, copy, saveAs, save, refresh), diagOut),
    card("Recovery guide", h("p", { class: "muted" }, "Steps to get your files back on a new computer; the ones Coffer knows are done are marked."), guide),
  );
  void loadDiag(false).catch((e) => showError(diagOut, e));
  void loadGuide();
  if (initialCode) lookup.click();
  return view;
}
