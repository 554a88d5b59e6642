// Backup sets: create, edit, delete, run now with live progress and cancel.
import { call } from "../api";
import type { RunFailure, RunOutcome, SetView } from "../bindings";
import { h } from "../dom";
import { formatBytes } from "../format";
import { button, card, confirmAction, guarded, jobPanel, showError, viewHead } from "../ui";
import { setForm } from "./setform";

const RUN_WORDS: Record<RunOutcome["status"], string> = { ok: "finished", failed: "failed", cancelled: "cancelled" };

/** A failed last run in words: what went wrong, what to do, the code for support. */
export function failureNote(testid: string, f: RunFailure): HTMLElement {
  return h("div", { class: "warning", role: "alert", testid },
    h("p", { class: "error-message" }, `The last backup failed. ${f.message}`),
    h("p", { class: "error-next" }, f.next_step),
    h("p", { class: "error-code" }, "Code ", h("code", {}, f.code), " · ", h("a", { href: `#support?code=${encodeURIComponent(f.code)}` }, "Look it up in Support")));
}

export function backupsView(): HTMLElement {
  const list = h("div", { testid: "sets-list", "aria-busy": "true" });
  const editor = h("div", { testid: "set-editor" });
  const slot = h("div", {});
  const job = jobPanel("job");
  const view = h("section", { class: "view", testid: "backups-screen", "aria-labelledby": "backups-title" },
    viewHead("backups-title", "Backups", "Each backup set names the folders to back up, what to leave out, when to run and which backup file to use."),
    h("div", { class: "actions" }, button("New backup set", "sets-new", () => openEditor(null))),
    editor, slot, card("Progress", job.el, h("p", { class: "muted", testid: "job-idle" }, "Nothing is running.")), list);

  const refresh = async () => {
    try {
      render(await call("list_sets", {}));
    } catch (e) {
      showError(list, e);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  };

  const openEditor = (existing: SetView | null) => {
    const form = setForm(existing?.set ?? null, { repository: existing?.set.repository, name: existing ? undefined : "New set" });
    const err = h("div", {});
    const save = button(existing ? "Save changes" : "Create set", "set-save", () => {
      void guarded(save, err, async () => {
        await call("save_set", { id: existing?.set.id ?? null, input: form.read(), credentials: form.credentials() });
        editor.replaceChildren();
        await refresh();
      });
    });
    editor.replaceChildren(card(existing ? `Edit ${existing.set.name}` : "New backup set", form.el,
      h("div", { class: "actions" }, save, button("Cancel", "set-cancel", () => editor.replaceChildren(), "secondary")), err));
  };

  const run = (s: SetView, btn: HTMLButtonElement) => {
    void guarded(btn, slot, async () => {
      const id = await call("run_backup", { set_id: s.set.id });
      document.querySelector('[data-testid="job-idle"]')?.remove();
      const end = await job.track(id);
      if (end.state === "done" && end.outcome?.type === "backup") {
        const o = end.outcome.summary;
        job.el.querySelector('[data-testid="job-result"]')?.replaceChildren(
          h("p", { class: "ok", testid: "job-summary" },
            `Snapshot ${o.short_id}: ${o.files} files (${o.files_new} new, ${o.files_changed} changed), ${formatBytes(o.bytes_added)} added.`),
          end.outcome.upload
            ? h("p", { class: "ok", testid: "job-upload-summary", "data-bytes": String(end.outcome.upload.bytes_uploaded) },
                `Off-site copy updated (version ${end.outcome.upload.generation}): ${formatBytes(end.outcome.upload.bytes_uploaded)} uploaded.`)
            : "");
      }
      await refresh();
    });
  };

  const render = (sets: SetView[]) => {
    if (sets.length === 0) {
      list.replaceChildren(h("p", { class: "muted", testid: "sets-empty" }, "No backup set yet."));
      return;
    }
    list.replaceChildren(...sets.map((s) => {
      const runBtn = button("Back up now", `set-run-${s.set.id}`, () => run(s, runBtn));
      const last = s.last;
      return h("article", { class: `card set${s.stale || s.failure ? " stale" : ""}`, testid: `set-card-${s.set.id}`, "data-set-name": s.set.name, "data-failed": s.failure ? "true" : "false" },
        h("h2", {}, s.set.name),
        s.failure ? failureNote(`set-failure-${s.set.id}`, s.failure) : null,
        s.same_disk ? h("p", { class: "note", testid: `set-same-disk-${s.set.id}` },
          "The backup file is on the same disk as the folders it backs up: if that disk fails, both are lost. Add an off-site copy (Edit), or keep the file on another disk.") : null,
        s.stale ? h("p", { class: "warning", role: "alert", testid: `set-stale-${s.set.id}` }, s.sentence) : h("p", { testid: `set-sentence-${s.set.id}` }, s.sentence),
        h("dl", { class: "facts compact" },
          h("dt", {}, "Folders"), h("dd", { class: "mono" }, s.set.sources.join(", ")),
          h("dt", {}, "Backup file"), h("dd", { class: "mono" }, s.set.repository),
          h("dt", {}, "Schedule"), h("dd", {}, s.schedule_text),
          h("dt", {}, "Off-site copy"), h("dd", { class: "mono", testid: `set-offsite-${s.set.id}` },
            s.set.remote ? (s.set.remote.type === "s3" ? `${s.set.remote.endpoint}/${s.set.remote.bucket}${s.set.remote.prefix ? `/${s.set.remote.prefix}` : ""}` : `sftp://${s.set.remote.user}@${s.set.remote.host}:${s.set.remote.port}/${s.set.remote.path}`) : "none"),
          ...(s.set.remote && s.set.upload_limit ? [h("dt", {}, "Upload limit"), h("dd", { testid: `set-upload-limit-${s.set.id}` }, `${s.set.upload_limit / 1e6} MB/s`)] : []),
          h("dt", {}, "Last run"), h("dd", { testid: `set-last-${s.set.id}` },
            last ? `${new Date(last.finished_at * 1000).toLocaleString()} — ${RUN_WORDS[last.outcome.status]}` : "never")),
        h("div", { class: "actions" },
          runBtn,
          button("Edit", `set-edit-${s.set.id}`, () => openEditor(s), "secondary"),
          button("Delete", `set-delete-${s.set.id}`, async () => {
            const yes = await confirmAction({ title: `Delete the backup set “${s.set.name}”?`, body: "Coffer stops backing up these folders. The snapshots already made stay in the backup file and can still be restored.", verb: "Delete set", testid: `set-delete-${s.set.id}` });
            if (!yes) return;
            void guarded(null, slot, async () => {
              await call("delete_set", { id: s.set.id });
              await refresh();
            });
          }, "secondary")));
    }));
  };
  void refresh();
  return view;
}
