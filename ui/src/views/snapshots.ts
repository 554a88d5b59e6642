// Snapshots: list, browse a tree, search, restore chosen files to a chosen
// folder after a preview, check the repository, retention and prune.
import { call } from "../api";
import type { FileVersion, OnExisting, PlanAction, RestorePlan, SearchHit, SnapshotInfo, TreeEntry } from "../bindings";
import { h } from "../dom";
import { count, formatBytes } from "../format";
import { button, card, checkbox, confirmAction, field, guarded, jobPanel, select, showError, viewHead } from "../ui";
import { pathField } from "../pathfield";
import { DEFAULT_RETENTION, retentionInputs } from "./setform";

const PLAN_WORDS: Record<PlanAction, string> = {
  write: "new",
  replace: "replace",
  skip: "skip (already there)",
  keep_both: "keep both",
  conflict: "already there",
  use_folder: "folder already there",
};

export function snapshotsView(): HTMLElement {
  let snapshot: string | null = null;
  const selected = new Set<string>();

  const list = h("div", { testid: "snapshots-list", "aria-busy": "true" });
  // Breadcrumbs: the snapshot, then each folder down to the one shown.
  const treeHead = h("nav", { class: "crumbs", testid: "tree-path", "aria-label": "Folder" });
  const tree = h("ul", { class: "tree", testid: "tree" });
  const treeSlot = h("div", {});
  const selection = h("p", { testid: "restore-selection", class: "muted" }, "Nothing chosen: the whole snapshot is restored.");
  // Where: back where the files were backed up ("/" below which the
  // snapshot's full paths are recreated), or into a chosen folder.
  const where = select("Restore to", "restore-where", [
    ["original", "Where they were backed up (the original location)"],
    ["folder", "Another folder"],
  ], "folder");
  const target = pathField("Restore into this folder", "restore-target", "folder", { placeholder: "/home/me/Restored", help: "Paths from the snapshot are recreated inside it." });
  const existing = select("If a file is already there", "restore-existing", [
    ["keep_both", "Keep both (the restored copy is renamed)"],
    ["skip", "Skip it: keep the file that is there"],
    ["replace", "Replace it with the snapshot's version"],
  ], "keep_both");
  const syncWhere = () => {
    target.row.hidden = where.input.value === "original";
    planEl.replaceChildren();
  };
  where.input.addEventListener("change", syncWhere);
  existing.input.addEventListener("change", () => planEl.replaceChildren());
  const restoreTo = () => (where.input.value === "original" ? "/" : target.input.value);
  const onExisting = () => existing.input.value as OnExisting;
  const planEl = h("div", { testid: "restore-plan" });
  const restoreSlot = h("div", {});
  const restoreJob = jobPanel("restore-job");
  const checkJob = jobPanel("check-job");
  const checkSlot = h("div", { testid: "check-result" });
  const search = field("Find files by name (glob, e.g. *.pdf)", "search-input", {});
  const results = h("ul", { class: "tree", testid: "search-results" });
  const searchNote = h("p", { class: "muted", testid: "search-count" });
  // The versions of one file, when asked for.
  const versions = h("div", { testid: "versions", "aria-live": "polite" });
  const retention = retentionInputs("retention", DEFAULT_RETENTION);
  const retentionOut = h("div", { testid: "retention-result" });

  const updateSelection = () => {
    selection.textContent = selected.size === 0
      ? "Nothing chosen: the whole snapshot is restored."
      : `${selected.size} chosen: ${[...selected].join(", ")}`;
    planEl.replaceChildren();
  };

  const toggle = (path: string, on: boolean) => {
    if (on) selected.add(path);
    else selected.delete(path);
    updateSelection();
  };

  const entryRow = (e: TreeEntry, snap: string, testPrefix: string): HTMLElement => {
    // A folder shows short names (its path is in the breadcrumbs); search
    // results show where each hit is.
    const label = testPrefix === "tree" ? baseName(e.path) : e.path;
    const cb = checkbox(label, `${testPrefix}-select`, { "data-path": e.path });
    cb.input.checked = selected.has(e.path) && snap === snapshot;
    cb.input.addEventListener("change", () => {
      if (snap !== snapshot) {
        snapshot = snap;
        selected.clear();
      }
      toggle(e.path, cb.input.checked);
    });
    const hit = testPrefix === "search" ? (e as SearchHit) : null;
    return h("li", { testid: `${testPrefix}-entry`, "data-path": e.path, "data-kind": e.kind, "data-snapshots": hit ? String(hit.snapshots) : undefined },
      cb.row,
      h("span", { class: "muted" }, e.kind === "dir" ? " folder" : e.kind === "symlink" ? ` → ${e.target ?? ""}` : ` ${formatBytes(e.size)}`),
      h("span", { class: "muted", testid: `${testPrefix}-mtime` }, ` · ${utc(e.mtime)}`),
      hit ? h("span", { class: "muted", testid: "search-snapshots" }, ` · in ${count(hit.snapshots, "snapshot")}, newest ${utc(hit.snapshot_time)}`) : null,
      e.kind === "dir" && testPrefix === "tree" ? button("Open", "tree-open", () => void openDir(e.path), "secondary small") : null,
      e.kind !== "dir" ? button("Versions", `${testPrefix}-versions`, () => void showVersions(e.path), "secondary small") : null);
  };

  // A file's versions across the snapshots; each can be chosen for restore.
  const showVersions = async (path: string) => {
    await guarded(null, versions, async () => {
      const vs = await call("file_versions", { path });
      const row = (v: FileVersion) => h("li", { testid: "version-row", "data-snapshot": v.snapshot },
        h("strong", {}, utc(v.snapshot_time)),
        ` · ${v.kind === "symlink" ? `→ ${v.target ?? ""}` : formatBytes(v.size)} · modified ${utc(v.mtime)}`,
        v.snapshots > 1 ? h("span", { class: "muted" }, ` · the same in ${v.snapshots} snapshots since ${utc(v.first_snapshot_time)}`) : null,
        " ", button("Restore this version", "version-restore", () => {
          snapshot = v.snapshot;
          selected.clear();
          selected.add(path);
          updateSelection();
          selection.textContent += ` (the version of ${utc(v.snapshot_time)})`;
          for (const r of list.querySelectorAll("tr[data-snapshot]")) r.classList.toggle("current", r.getAttribute("data-snapshot") === v.snapshot);
          restoreCard.scrollIntoView({ block: "start" });
        }, "secondary small"));
      versions.replaceChildren(card(`Versions of ${path}`,
        h("p", { class: "muted" }, `${count(vs.length, "version")}, newest first.`),
        h("ul", { class: "versions", testid: "versions-list" }, ...vs.map(row))));
    });
  };

  const openDir = async (path: string | null) => {
    if (!snapshot) return;
    const parts = (path ?? "").split("/").filter((x) => x.length > 0);
    treeHead.replaceChildren(
      button(`${snapshot.slice(0, 8)}:/`, "tree-crumb", () => void openDir(null), "secondary small"),
      ...parts.map((name, i) => {
        const at = "/" + parts.slice(0, i + 1).join("/");
        const b = button(name, "tree-crumb", () => void openDir(at), "secondary small");
        b.dataset.path = at;
        if (i === parts.length - 1) b.setAttribute("aria-current", CURRENT_FOLDER);
        return b;
      }));
    try {
      const entries = await call("list_tree", { snapshot, path });
      const snap = snapshot;
      tree.replaceChildren(
        ...(path ? [h("li", {}, button("Up", "tree-up", () => void openDir(parentOf(path)), "secondary small"))] : []),
        ...entries.map((e) => entryRow(e, snap, "tree")));
      treeSlot.replaceChildren();
    } catch (e) {
      showError(treeSlot, e);
    }
  };

  const open = (s: SnapshotInfo) => {
    if (snapshot !== s.id) selected.clear();
    snapshot = s.id;
    updateSelection();
    for (const r of list.querySelectorAll("tr[data-snapshot]")) r.classList.toggle("current", r.getAttribute("data-snapshot") === s.id);
    void openDir(null);
  };

  const refresh = async () => {
    try {
      const snaps = await call("list_snapshots", {});
      if (snaps.length === 0) {
        list.replaceChildren(h("p", { class: "muted", testid: "snapshots-empty" }, "No snapshot yet. Run a backup first."));
        return;
      }
      list.replaceChildren(h("table", { class: "table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Set"), h("th", {}, "Files"), h("th", {}, "Size"), h("th", {}, "Id"), h("th", {}, ""))),
        h("tbody", {}, ...snaps.map((s) => h("tr", { testid: "snapshot-row", "data-snapshot": s.id },
          h("td", {}, new Date(s.unix_time * 1000).toLocaleString()),
          h("td", {}, s.set_name || "—"),
          h("td", { testid: "snapshot-files" }, String(s.files)),
          h("td", {}, formatBytes(s.bytes)),
          h("td", { class: "mono" }, s.short_id),
          h("td", {}, button("Browse", "snapshot-open", () => open(s), "secondary small")))))));
      if (!snapshot) open(snaps[0]);
    } catch (e) {
      showError(list, e);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  };

  const runSearch = (btn: HTMLButtonElement) => {
    void guarded(btn, results, async () => {
      const r = await call("find_files", { pattern: search.input.value });
      searchNote.textContent = r.total > r.hits.length
        ? `Showing the first ${r.hits.length} of ${r.total} matches: type more of the name to narrow it.`
        : r.total > 0 ? `${count(r.total, "match", "matches")}, each with its newest version.` : "";
      results.replaceChildren(...(r.hits.length === 0
        ? [h("li", { class: "muted", testid: "search-none" }, "No file matches.")]
        : r.hits.map((m) => entryRow(m, m.snapshot, "search"))));
    });
  };
  const searchBtn = button("Search", "search-run", () => runSearch(searchBtn));
  search.input.addEventListener("keydown", (ev) => {
    if ((ev as KeyboardEvent).key === "Enter") runSearch(searchBtn);
  });

  const renderPlan = (p: RestorePlan) => {
    const n = (a: PlanAction) => p.items.filter((i) => i.action === a).length;
    const there = p.conflicts === 0 ? "Nothing is there yet."
      : `${count(p.conflicts, "item")} already there: ${[
          n("keep_both") ? `${n("keep_both")} kept, the restored copy beside it` : "",
          n("skip") ? `${n("skip")} skipped` : "",
          n("replace") ? `${n("replace")} replaced` : "",
          n("conflict") ? `${n("conflict")} in the way` : "",
        ].filter(Boolean).join(", ")}.`;
    planEl.replaceChildren(
      h("p", { testid: "restore-plan-summary", "data-conflicts": String(p.conflicts) },
        `${count(p.files, "file")}, ${count(p.dirs, "folder")}, ${formatBytes(p.bytes)} into ${p.target === "/" ? "their original location" : p.target}. ${there}`),
      h("ul", { class: "plan mono" }, ...p.items.slice(0, 200).map((i) =>
        h("li", { testid: "restore-plan-item", "data-action": i.action, "data-path": i.path, class: i.exists ? "exists" : undefined },
          `${PLAN_WORDS[i.action]}: ${i.path}${i.action === "skip" || i.path === i.target ? "" : ` → ${i.target}`}`))),
      p.items.length > 200 ? h("p", { class: "muted" }, `and ${p.items.length - 200} more.`) : "");
  };
  const plan = async () => {
    if (!snapshot) throw { kind: "invalid_input", code: "CF-A050", message: "Choose a snapshot first.", next_step: "Press Browse next to a snapshot." };
    const p = await call("plan_restore", { snapshot, include: [...selected], target: restoreTo(), on_existing: onExisting() });
    renderPlan(p);
    return p;
  };
  const previewBtn = button("Preview", "restore-preview", () => {
    void guarded(previewBtn, restoreSlot, async () => { await plan(); });
  });
  const restoreBtn = button("Restore", "restore-run", () => {
    void guarded(restoreBtn, restoreSlot, async () => {
      if (!snapshot) return;
      // Replacing files is asked first, with the count from a fresh plan.
      const p = await plan();
      const replaced = p.items.filter((i) => i.action === "replace").length;
      if (replaced > 0 && !(await confirmAction({
        title: `Replace ${count(replaced, "item")} that ${replaced === 1 ? "is" : "are"} already there?`,
        body: "The files there now are replaced by the snapshot's versions and cannot be brought back, unless another snapshot has them. The preview lists each one.",
        verb: "Replace", testid: "restore-replace",
      }))) return;
      const id = await call("run_restore", { snapshot, include: [...selected], target: restoreTo(), on_existing: onExisting() });
      const end = await restoreJob.track(id);
      if (end.state === "done" && end.outcome?.type === "restore") {
        const s = end.outcome.summary;
        restoreSlot.replaceChildren(h("p", { class: "ok", testid: "restore-done" },
          `Restored ${count(s.files, "file")} (${formatBytes(s.bytes)}) into ${s.target === "/" ? "their original location" : s.target}.`,
          s.skipped > 0 ? ` ${count(s.skipped, "item")} already there ${s.skipped === 1 ? "was" : "were"} left as ${s.skipped === 1 ? "it was" : "they were"}.` : ""));
      }
    });
  });
  const checkBtn = button("Check the backup file", "check-run", () => {
    void guarded(checkBtn, checkSlot, async () => {
      const end = await checkJob.track(await call("run_check", {}));
      if (end.state === "done" && end.outcome?.type === "check") {
        const r = end.outcome.report;
        checkSlot.replaceChildren(h("p", { class: r.ok ? "ok" : "warning", testid: "check-summary", "data-ok": String(r.ok) },
          r.ok ? `All ${r.snapshots} snapshots, ${r.files} files and ${r.chunks} chunks are intact.`
            : `Damage found: ${r.damaged_files.length} files and ${r.damaged_records.length} records.`,
          r.packs_only_remote > 0 ? ` The data of ${r.packs_only_remote} packs is kept only in the off-site copy (this backup file was recovered from it); restores fetch what they need.` : ""));
      }
    });
  });
  const retentionRun = async (dry: boolean, btn: HTMLButtonElement) => {
    if (!dry && !(await confirmAction({ title: "Remove old snapshots?", body: "The snapshots the rules do not keep are removed and their space is freed. This cannot be undone; Preview shows which ones first.", verb: "Remove snapshots", testid: "retention-apply" }))) return;
    void guarded(btn, retentionOut, async () => {
      const r = await call("apply_retention", { retention: retention.read(), dry_run: dry });
      retentionOut.replaceChildren(h("p", { testid: "retention-summary" },
        `${dry ? "Would keep" : "Kept"} ${r.plan.keep.length} and ${dry ? "would remove" : "removed"} ${r.plan.remove.length} snapshots.`,
        r.prune ? ` Freed ${formatBytes(Math.max(0, r.prune.bytes_before - r.prune.bytes_after))}.` : ""));
      if (!dry) await refresh();
    });
  };
  const retPreview = button("Preview", "retention-preview", () => void retentionRun(true, retPreview), "secondary");
  const retApply = button("Apply and prune", "retention-apply", () => void retentionRun(false, retApply));

  const restoreCard = card("Restore", selection, h("div", { class: "grid-2" }, where.row, existing.row), target.row, h("div", { class: "actions" }, previewBtn, restoreBtn), planEl, restoreJob.el, restoreSlot);
  const view = h("section", { class: "view wide", testid: "snapshots-screen", "aria-labelledby": "snapshots-title" },
    viewHead("snapshots-title", "Snapshots", "Every backup is a snapshot. Browse or search, choose files, preview where they will go, then restore."),
    card("Snapshots", list),
    h("div", { class: "grid-2 top" },
      card("Browse", treeHead, tree, treeSlot),
      card("Search", search.row, h("div", { class: "actions" }, searchBtn), searchNote, results)),
    versions,
    restoreCard,
    card("Check", h("p", { class: "muted" }, "Reads and authenticates every piece of every snapshot; names anything damaged."),
      h("div", { class: "actions" }, checkBtn), checkJob.el, checkSlot),
    card("Retention", retention.el, h("div", { class: "actions" }, retPreview, retApply), retentionOut),
  );
  void refresh();
  return view;
}

/** An RFC 3339 UTC time as "2026-12-06 07:10:51 UTC". */
function utc(t: string): string {
  return t.replace("T", " ").replace(/(:\d\d)(\.\d+)?Z$/, "$1 UTC");
}

/** `aria-current` of the breadcrumb of the folder shown. */
const CURRENT_FOLDER = "location";

function baseName(p: string): string {
  const t = p.replace(/\/+$/, "");
  return t.slice(t.lastIndexOf("/") + 1) || "/";
}

function parentOf(p: string): string | null {
  const i = p.replace(/\/+$/, "").lastIndexOf("/");
  return i <= 0 ? null : p.slice(0, i);
}
