// The backup set form (first run and the Backups screen).
import type { BackupSet, BackupSetInput, RemoteCredentialsInput, Retention, Schedule, ScheduleInput } from "../bindings";
import { h } from "../dom";
import { pathField } from "../pathfield";
import { remoteFields } from "../remoteform";
import { field, select } from "../ui";

export const RETENTION_FIELDS: [keyof Retention, string][] = [
  ["keep_last", "Keep the last"],
  ["keep_hourly", "Hourly"],
  ["keep_daily", "Daily"],
  ["keep_weekly", "Weekly"],
  ["keep_monthly", "Monthly"],
  ["keep_yearly", "Yearly"],
];

export const DEFAULT_RETENTION: Retention = {
  keep_last: 10, keep_hourly: 24, keep_daily: 7, keep_weekly: 4, keep_monthly: 12, keep_yearly: 3,
};

/** Retention inputs; `prefix` makes their test ids unique per form. */
export function retentionInputs(prefix: string, r: Retention): { el: HTMLElement; read: () => Retention } {
  const inputs = RETENTION_FIELDS.map(([k, label]) => {
    const f = field(label, `${prefix}-${k.replace("_", "-")}`, { type: "number", value: String(r[k]) });
    f.input.setAttribute("min", "0");
    return [k, f] as const;
  });
  return {
    el: h("fieldset", { class: "grid-6" }, h("legend", {}, "Snapshots to keep (0 turns a rule off)"), ...inputs.map(([, f]) => f.row)),
    read: () => {
      const out = { ...r };
      for (const [k, f] of inputs) out[k] = Math.max(0, Math.floor(Number(f.input.value) || 0));
      return out;
    },
  };
}

function lines(s: string): string[] {
  return s.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
}

/** The form; `read()` returns what the user typed as a BackupSetInput,
 * `credentials()` the off-site secret typed (null: none typed). First run
 * (`offsite: false`) leaves the off-site copy for later. */
export function setForm(existing: BackupSet | null, defaults: { repository?: string; name?: string; offsite?: boolean } = {}): { el: HTMLElement; read: () => BackupSetInput; credentials: () => RemoteCredentialsInput | null } {
  const name = field("Name", "set-name", { value: existing?.name ?? defaults.name ?? "Documents" });
  const sources = pathField("Folders to back up (one per line)", "set-sources", "folder", {
    multiline: true,
    value: existing?.sources.join("\n") ?? "",
    placeholder: "/home/me/Documents",
    help: "Type full paths starting with /; Browse… adds a folder.",
  });
  const excludes = field("Exclude patterns (one per line)", "set-excludes", {
    multiline: true,
    value: existing?.excludes.join("\n") ?? "*.tmp\n.cache/",
    help: "gitignore syntax, for example *.tmp or node_modules/.",
  });
  const repository = pathField("Repository file", "set-repository", "open_repository", {
    value: existing?.repository ?? defaults.repository ?? "",
    placeholder: "/media/backup/coffer.db",
  });
  const sched = existing?.schedule ?? ({ kind: "daily_at", hour: 12, minute: 0 } as Schedule);
  const kind = select("Schedule", "set-schedule-kind", [
    ["manual", "Only when I press Back up now"],
    ["every_hours", "Every N hours"],
    ["daily_at", "Daily at a time"],
  ], sched.kind);
  // A number field and a time picker; what they hold goes to Rust as typed
  // (ScheduleInput), which refuses an empty or impossible value.
  const hours = field("Every how many hours (1 to 168)", "set-schedule-hours", {
    type: "number", value: sched.kind === "every_hours" ? String(sched.hours) : "24",
  });
  hours.input.setAttribute("min", "1");
  hours.input.setAttribute("max", "168");
  hours.input.setAttribute("step", "1");
  const time = field("Time of day (24-hour clock)", "set-schedule-time", {
    type: "time",
    value: sched.kind === "daily_at" ? `${String(sched.hour).padStart(2, "0")}:${String(sched.minute).padStart(2, "0")}` : "12:00",
  });
  const syncValue = () => {
    hours.row.hidden = kind.input.value !== "every_hours";
    time.row.hidden = kind.input.value !== "daily_at";
  };
  kind.input.addEventListener("change", syncValue);
  syncValue();
  const retention = retentionInputs("set", existing?.retention ?? DEFAULT_RETENTION);
  const remote = defaults.offsite === false ? null : remoteFields("set-remote", existing?.remote ?? null, existing?.id ?? null, true, existing?.upload_limit ?? null);
  const el = h("div", { class: "form", testid: "set-form" },
    name.row, sources.row, excludes.row, repository.row,
    h("div", { class: "grid-2" }, kind.row, hours.row, time.row),
    retention.el, remote?.el ?? null);
  const read = (): BackupSetInput => {
    const schedule: ScheduleInput = kind.input.value === "every_hours" ? { kind: "every_hours", hours: hours.input.value }
      : kind.input.value === "daily_at" ? { kind: "daily_at", time: time.input.value }
      : { kind: "manual" };
    return {
      name: name.input.value,
      sources: lines(sources.input.value),
      excludes: lines(excludes.input.value),
      repository: repository.input.value.trim(),
      schedule,
      retention: retention.read(),
      remote: remote ? remote.destination() : (existing?.remote ?? null),
      upload_limit: remote ? remote.uploadLimit() : (existing?.upload_limit ?? null),
    };
  };
  return { el, read, credentials: () => remote?.credentials() ?? null };
}
