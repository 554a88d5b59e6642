// A path field: the labelled text input stays (support staff and the
// WebDriver tests type paths), and a "Browse…" button beside it opens the
// native file dialog (the `pick_path` command) and fills the input. A
// cancelled dialog changes nothing; a failure shows the usual error panel
// under the field.
import { call } from "./api";
import type { PathKind } from "./bindings";
import { h } from "./dom";
import { field, guarded } from "./ui";

export interface PathFieldOptions {
  value?: string;
  placeholder?: string;
  help?: string;
  /** One path per line (folders to back up): a pick adds a line. */
  multiline?: boolean;
}

/**
 * Runs `work` (which shows a native file dialog) with the window inert: the
 * GTK dialog is modal, but where no window manager keeps it on top (or a
 * desktop portal shows it elsewhere) the window could still be clicked, so
 * it refuses input itself meanwhile, and a note outside the inert part says
 * where to look. Restored however `work` ends.
 */
export async function whileDialogOpen<T>(work: () => Promise<T>): Promise<T> {
  const shell = document.getElementById("app");
  const note = h("div", { class: "dialog-backdrop", testid: "dialog-open", role: "status" },
    h("p", {}, "A file dialog is open. Choose there, or press Escape in it to cancel."));
  if (shell) shell.inert = true;
  document.body.append(note);
  try {
    return await work();
  } finally {
    if (shell) shell.inert = false;
    note.remove();
  }
}

/** The path the dialog should start from: the field's (last) path, if any. */
export function startOf(current: string, multiline = false): string | null {
  const lines = current.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  const s = multiline ? lines[lines.length - 1] : current.trim();
  return s ? s : null;
}

/** The field's new text after `picked` was chosen. */
export function withPicked(current: string, picked: string, multiline = false): string {
  if (!multiline) return picked;
  const lines = current.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines.includes(picked)) return current;
  return [...lines, picked].join("\n");
}

/**
 * A labelled path input with a "Browse…" button (test id `<testid>-browse`)
 * opening the dialog of `kind`. Returns the row and the input, like `field`.
 */
export function pathField(
  label: string,
  testid: string,
  kind: PathKind,
  opts: PathFieldOptions = {},
): { row: HTMLElement; input: HTMLInputElement | HTMLTextAreaElement; browse: HTMLButtonElement } {
  const f = field(label, testid, opts);
  const input = f.input;
  const errors = h("div", { "aria-live": "polite", testid: `${testid}-browse-error` });
  const browse = h("button", {
    type: "button",
    class: "secondary browse",
    testid: `${testid}-browse`,
    "aria-label": `Browse… ${label}`,
    title: kind === "folder" ? "Choose a folder in a file dialog" : "Choose a file in a file dialog",
  }, "Browse…");
  // data-dialog says where the last dialog is: open, picked, cancelled, failed.
  browse.addEventListener("click", () => {
    browse.dataset.dialog = "open";
    void guarded(browse, errors, async () => {
      let picked: string | null;
      try {
        picked = await whileDialogOpen(() => call("pick_path", { kind, start: startOf(input.value, opts.multiline) }));
      } catch (e) {
        browse.dataset.dialog = "failed";
        throw e;
      }
      browse.dataset.dialog = picked === null ? "cancelled" : "picked";
      if (picked === null) return;
      input.value = withPicked(input.value, picked, opts.multiline);
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.dispatchEvent(new Event("change", { bubbles: true }));
      input.focus();
    });
  });
  // The input and the button share one line; the help text stays below.
  const line = h("div", { class: "path-input" });
  input.replaceWith(line);
  line.append(input, browse);
  return { row: f.row, input, browse };
}
