// Shared building blocks of the views: labelled fields, buttons, cards, the
// job progress panel and the job event bus. Every control has a label and a
// data-testid; nothing here sets HTML from data.
import { listen } from "@tauri-apps/api/event";
import { call } from "./api";
import { JOB_EVENT } from "./bindings";
import type { ErrorReport, JobEvent } from "./bindings";
import { h } from "./dom";
import { formatBytes, formatDuration } from "./format";
import { errorPanel } from "./views/error";

/** Dispatched on `window` when the installation's overview changed
 * (the navigation then hides "Set up" once it is done). */
export const OVERVIEW_CHANGED = "coffer-overview-changed";

let uid = 0;
/** A labelled input (or textarea / select) with its own id. */
export function field(
  label: string,
  testid: string,
  opts: { value?: string; placeholder?: string; multiline?: boolean; type?: string; help?: string; autocomplete?: string } = {},
): { row: HTMLElement; input: HTMLInputElement | HTMLTextAreaElement } {
  const id = `f${++uid}`;
  const input = opts.multiline
    ? h("textarea", { id, testid, rows: 3, placeholder: opts.placeholder, spellcheck: "false" })
    : h("input", {
        id,
        testid,
        type: opts.type ?? "text",
        placeholder: opts.placeholder,
        spellcheck: "false",
        autocomplete: opts.autocomplete ?? "off",
      });
  input.value = opts.value ?? "";
  const helpId = opts.help ? `${id}-help` : undefined;
  if (helpId) input.setAttribute("aria-describedby", helpId);
  const row = h("div", { class: "field" },
    h("label", { for: id }, label),
    input,
    opts.help ? h("p", { class: "help muted", id: helpId }, opts.help) : null,
  );
  return { row, input };
}

/** A labelled select. */
export function select(label: string, testid: string, options: [string, string][], value: string): { row: HTMLElement; input: HTMLSelectElement } {
  const id = `f${++uid}`;
  const input = h("select", { id, testid }, ...options.map(([v, t]) => h("option", { value: v }, t)));
  input.value = value;
  return { row: h("div", { class: "field" }, h("label", { for: id }, label), input), input };
}

/** A labelled checkbox. */
export function checkbox(label: string, testid: string, attrs: Record<string, string> = {}): { row: HTMLElement; input: HTMLInputElement } {
  const id = `f${++uid}`;
  const input = h("input", { id, testid, type: "checkbox", ...attrs });
  return { row: h("span", { class: "check" }, input, h("label", { for: id }, label)), input };
}

export function button(text: string, testid: string, onClick: (ev: Event) => void, cls = ""): HTMLButtonElement {
  return h("button", { type: "button", testid, class: cls || undefined, onclick: onClick }, text);
}

export function card(title: string, ...children: (Node | null | false | undefined)[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", {}, title), ...children.filter((c): c is Node => !!c));
}

/**
 * Asks before something that cannot be undone, in the app's own style (a
 * modal `<dialog>`, not `window.confirm`): the question, what happens, and
 * verb buttons. Resolves true only for `verb`; Cancel, Escape and closing
 * resolve false. Cancel has the focus, so Enter alone never destroys.
 */
export function confirmAction(opts: { title: string; body: string; verb: string; testid: string }): Promise<boolean> {
  return new Promise((resolve) => {
    let answered = false;
    const finish = (yes: boolean) => {
      if (answered) return;
      answered = true;
      dlg.close();
      dlg.remove();
      resolve(yes);
    };
    const no = button("Cancel", "confirm-cancel", () => finish(false), "secondary");
    const yes = button(opts.verb, "confirm-ok", () => finish(true), "danger");
    const dlg = h("dialog", { class: "confirm", testid: "confirm-dialog", "data-for": opts.testid, "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, opts.title),
      h("p", {}, opts.body),
      h("div", { class: "actions" }, yes, no)) as HTMLDialogElement;
    dlg.addEventListener("cancel", () => finish(false));
    dlg.addEventListener("close", () => finish(false));
    document.body.append(dlg);
    dlg.showModal();
    no.focus();
  });
}

export function viewHead(id: string, title: string, lede: string): HTMLElement {
  return h("header", { class: "view-head" }, h("h1", { id }, title), h("p", { class: "lede" }, lede));
}

/** Shows an error (code, sentence, next step) in `slot`; a missing key adds a link to the recovery wizard. */
export function showError(slot: HTMLElement, e: unknown): void {
  const r = e as ErrorReport;
  const panel = errorPanel(r);
  if (r.kind === "keyring_unavailable" || r.code === "CF-A051") {
    panel.append(h("p", {}, h("a", { href: "#recovery", testid: "error-unlock-link" }, "Unlock your backups in the Recovery wizard")));
  }
  slot.replaceChildren(panel);
}

/** Runs `work` with `btn` disabled and errors shown in `slot`. */
export async function guarded<T>(btn: HTMLButtonElement | null, slot: HTMLElement, work: () => Promise<T>): Promise<T | undefined> {
  if (btn) btn.disabled = true;
  slot.replaceChildren();
  try {
    return await work();
  } catch (e) {
    showError(slot, e);
    // The answer to what the user just did: focus moves to it, so it is
    // seen (scrolled to) and read out at once.
    slot.querySelector<HTMLElement>('[data-testid="error-panel"]')?.focus();
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

// ------------------------------------------------------------------ job bus

const subscribers = new Set<(e: JobEvent) => void>();
let listening: Promise<unknown> | null = null;

export function startJobEvents(): void {
  listening ??= listen<JobEvent>(JOB_EVENT, (ev) => {
    for (const f of subscribers) f(ev.payload);
  }).catch(() => undefined);
}

/** Follows one job until it ends: events, with polling as a fallback. */
export function followJob(jobId: number, onUpdate: (e: JobEvent) => void): Promise<JobEvent> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (e: JobEvent) => {
      if (done) return;
      onUpdate(e);
      if (e.state !== "running") {
        done = true;
        subscribers.delete(handler);
        clearInterval(timer);
        resolve(e);
      }
    };
    const handler = (e: JobEvent) => {
      if (e.job_id === jobId) finish(e);
    };
    subscribers.add(handler);
    const timer = setInterval(() => {
      call("job_status", { job_id: jobId }).then(finish).catch(() => undefined);
    }, 500);
  });
}

/** The progress panel of a job: files, bytes, throughput, ETA and Cancel. */
export function jobPanel(prefix: string): { el: HTMLElement; track: (jobId: number) => Promise<JobEvent> } {
  const bar = h("progress", { testid: `${prefix}-bar`, max: 1, value: 0, "aria-label": "Progress" });
  const state = h("span", { testid: `${prefix}-state`, class: "badge" }, "");
  const phase = h("span", { testid: `${prefix}-phase`, class: "muted" }, "");
  const files = h("dd", { testid: `${prefix}-files` }, "—");
  const bytes = h("dd", { testid: `${prefix}-bytes` }, "—");
  const speed = h("dd", { testid: `${prefix}-throughput` }, "—");
  const eta = h("dd", { testid: `${prefix}-eta` }, "—");
  // Off-site transfer (upload after a backup, download before a restore).
  const transfer = h("dd", { testid: `${prefix}-transfer`, "data-done": "0", "data-total": "0" }, "—");
  const transferLabel = h("dt", { hidden: true }, "Off-site");
  const result = h("div", { testid: `${prefix}-result`, "aria-live": "polite" });
  let current = 0;
  const cancel = button("Cancel", `${prefix}-cancel`, () => {
    if (current) void call("cancel_job", { job_id: current }).catch((e) => showError(result, e));
  }, "secondary");
  const el = h("div", { class: "job", testid: `${prefix}-progress`, hidden: true },
    h("div", { class: "job-head" }, state, phase),
    bar,
    h("dl", { class: "facts compact" },
      h("dt", {}, "Files"), files,
      h("dt", {}, "Data"), bytes,
      h("dt", {}, "Speed"), speed,
      h("dt", {}, "Time left"), eta,
      transferLabel, transfer),
    h("div", { class: "actions" }, cancel),
    result,
  );
  const update = (e: JobEvent) => {
    state.textContent = e.state;
    state.dataset.state = e.state;
    el.dataset.state = e.state;
    const running = e.state === "running";
    // A finished job names no phase ("· finishing") and offers no Cancel.
    phase.textContent = running && e.phase ? `· ${e.phase}` : "";
    files.textContent = e.files_total ? `${e.files_done} of ${e.files_total}` : `${e.files_done}`;
    bytes.textContent = e.bytes_total ? `${formatBytes(e.bytes_done)} of ${formatBytes(e.bytes_total)}` : formatBytes(e.bytes_done);
    // While running: the current rate; once ended: the average over the job.
    const rate = running ? e.throughput_bps : e.elapsed_ms > 0 ? Math.round((e.bytes_done * 1000) / e.elapsed_ms) : 0;
    speed.textContent = running || e.bytes_done > 0 ? `${formatBytes(rate)}/s${running ? "" : " on average"}` : "—";
    eta.textContent = running && e.eta_secs !== null ? formatDuration(e.eta_secs) : "—";
    transfer.hidden = transferLabel.hidden = e.transfer_total === 0 && e.transfer_done === 0;
    transfer.dataset.done = String(e.transfer_done);
    transfer.dataset.total = String(e.transfer_total);
    transfer.textContent = `${formatBytes(e.transfer_done)} of ${formatBytes(e.transfer_total)} ${e.phase === "downloading" ? "downloaded" : "uploaded"}`;
    bar.max = Math.max(1, e.bytes_total);
    bar.value = e.state === "done" ? bar.max : e.bytes_done;
    cancel.disabled = !running;
    cancel.hidden = !running;
    if (e.error) showError(result, e.error);
  };
  const track = (jobId: number) => {
    current = jobId;
    el.hidden = false;
    transfer.hidden = transferLabel.hidden = true;
    result.replaceChildren();
    cancel.disabled = false;
    cancel.hidden = false;
    return followJob(jobId, update);
  };
  return { el, track };
}
