// Generated from the Rust IPC types by crates/coffer-app/src/bindings.rs.
// Do not edit: run `UPDATE_BINDINGS=1 cargo test -p coffer-app bindings` instead.

export type ErrorKind = "invalid_input" | "wrong_recovery_code" | "wrong_recovery_key" | "record_destroyed" | "vault_unavailable" | "vault_unreachable" | "fleet_not_verified" | "keyring_unavailable" | "not_a_repository" | "repository_damaged" | "repository_busy" | "already_exists" | "not_found" | "permission_denied" | "io" | "cancelled" | "destination_unreachable" | "destination_refused" | "destination_not_trusted" | "internal" | "throttled" | "account_not_verified";

export type ErrorReport = { kind: ErrorKind, 
/**
 * Stable code, documented in docs/errors.md (e.g. `CF-R003`).
 */
code: string, 
/**
 * One plain sentence saying what went wrong.
 */
message: string, 
/**
 * What to do next.
 */
next_step: string, };

export type AppStatus = { version: string, data_dir: string, vault: VaultSummary, };

export type VaultMode = "embedded_demo" | "remote" | "key_only";

export type VaultSummary = { mode: VaultMode, label: string, 
/**
 * Always true in this build: the HSMs are a software simulation.
 */
simulated_hsm: boolean, };

export type KeyringStatus = { 
/**
 * False also while the first probe is still running (`error` is then null).
 */
available: boolean, 
/**
 * "Secret Service" or "kernel keyutils" when available.
 */
backend: string | null, 
/**
 * Why not, when unavailable (kind `keyring_unavailable`).
 */
error: ErrorReport | null, };

export type AppOverview = { status: AppStatus, onboarded: boolean, key_mode: KeyMode | null, 
/**
 * The repository the Snapshots screen works on.
 */
repository: string | null, 
/**
 * Whether K for that repository is available (memory or keyring).
 */
unlocked: boolean, keyring: KeyringStatus, 
/**
 * A problem loading settings.json (it was kept aside), if any.
 */
settings_error: ErrorReport | null, running_jobs: Array<JobEvent>, stale_sets: number, 
/**
 * Sets whose last run failed.
 */
failed_sets: number, };

export type KeyMode = "recovery_code" | "recovery_key";

export type NewRecoveryKey = { repository: string, 
/**
 * 17 groups of 4 hex digits (the last is the checksum).
 */
groups: Array<string>, 
/**
 * Which group (1-based) the user must type back to confirm.
 */
confirm_group: number, };

export type KeyInstalled = { repository: string, 
/**
 * K is in the OS keyring now.
 */
keyring_saved: boolean, 
/**
 * Why not (the app still works; it asks for the key after a restart).
 */
keyring_error: ErrorReport | null, snapshots: number, 
/**
 * A recovery from the vault: the wrong codes tried since the previous
 * successful recovery (0 otherwise). The UI warns the owner when
 * nonzero: someone else may have been guessing.
 */
wrong_guesses: number, 
/**
 * When the last of those began (Unix seconds, at most 16).
 */
wrong_guess_times: number[], 
/**
 * After a recovery: the backup sets that travelled in the file and are
 * not set up here yet (what "Keep backing up to this file" adopts).
 */
sets_found: Array<FoundSet>, };

export type Rehearsed = { 
/**
 * Snapshots in the backup file the recovered key opened.
 */
snapshots: number, 
/**
 * Wrong codes tried since the previous successful recovery.
 */
wrong_guesses: number, 
/**
 * When the last of those began (Unix seconds, at most 16).
 */
wrong_guess_times: number[], };

export type SetView = { set: BackupSet, freshness: Freshness, stale: boolean, 
/**
 * "Last good backup 2 hours ago (scheduled daily at 12:00)."
 */
sentence: string, schedule_text: string, last: RunRecord | null, next_due: number | null, running_job: number | null, 
/**
 * Why the last run failed (absent when it did not).
 */
failure: RunFailure | null, 
/**
 * The backup file is on the same disk (file system) as a folder it
 * backs up, and there is no off-site copy: one failed disk loses both.
 */
same_disk: boolean, };

export type RunFailure = { code: string, message: string, next_step: string, };

export type FoundSet = { name: string, sources: Array<string>, 
/**
 * Its folders that are not on this computer (it is adopted only
 * when there are none).
 */
missing: Array<string>, 
/**
 * "daily at 12:00", "manual only".
 */
schedule_text: string, };

export type CarryOn = { repository: string, 
/**
 * The sets now set up here, as Backups shows them.
 */
adopted: Array<SetView>, 
/**
 * The sets left out because their folders are not on this computer.
 */
not_adopted: Array<FoundSet>, };

export type BackupSet = { 
/**
 * Stable id (`set-1`, `set-2`, …), never reused while the set exists.
 */
id: string, name: string, sources: Array<string>, excludes: Array<string>, repository: string, schedule: Schedule, retention: Retention, 
/**
 * Unix seconds.
 */
created_at: number, 
/**
 * The off-site copy, if any (no secret; absent from older files).
 */
remote: Destination | null, 
/**
 * The off-site upload's limit in bytes per second (absent from older
 * files: no limit).
 */
upload_limit: number | null, };

export type BackupSetInput = { name: string, 
/**
 * Absolute folders to back up.
 */
sources: Array<string>, 
/**
 * Exclude patterns (glob syntax of the repository crate).
 */
excludes: Array<string>, 
/**
 * Absolute path of the repository file.
 */
repository: string, 
/**
 * As typed; parsed by [`ScheduleInput::parse`] when the set is saved.
 */
schedule: ScheduleInput, retention: Retention, 
/**
 * The off-site copy (S3-compatible store or SFTP), if any. No secret:
 * its credentials are kept in the OS keyring (see [`crate::remote`]).
 */
remote: Destination | null, 
/**
 * The off-site upload's limit in bytes per second, on average (at
 * least [`MIN_UPLOAD_LIMIT`]); `None`: as fast as the line allows.
 */
upload_limit: number | null, };

export type Schedule = { "kind": "manual" } | { "kind": "every_hours", hours: number, } | { "kind": "daily_at", hour: number, minute: number, };

export type ScheduleInput = { "kind": "manual" } | { "kind": "every_hours", hours: string, } | { "kind": "daily_at", time: string, };

export type Retention = { keep_last: number, keep_hourly: number, keep_daily: number, keep_weekly: number, keep_monthly: number, keep_yearly: number, };

export type Freshness = { "state": "manual", age_secs: number | null, } | { "state": "not_yet" } | { "state": "fresh", age_secs: number, } | { "state": "stale", 
/**
 * `None` when there never was a good backup.
 */
age_secs: number | null, allowed_secs: number, };

export type RunRecord = { 
/**
 * Unix seconds.
 */
started_at: number, finished_at: number, outcome: RunOutcome, snapshot_id: string | null, 
/**
 * Bytes read from the source folders.
 */
bytes: number, };

export type RunOutcome = { "status": "ok" } | { "status": "failed", code: string, } | { "status": "cancelled" };

export type JobEvent = { job_id: number, kind: JobKind, 
/**
 * The backup set this job runs for, if any.
 */
set_id: string | null, state: JobState, phase: Phase | null, files_done: number, files_total: number, bytes_done: number, bytes_total: number, 
/**
 * Bytes uploaded to (or downloaded from) an off-site copy so far, and
 * how many the transfer needs; 0 and 0 without one. Counted apart from
 * `bytes_done`, which is the data read or restored.
 */
transfer_done: number, transfer_total: number, elapsed_ms: number, 
/**
 * Bytes per second since the job started.
 */
throughput_bps: number, 
/**
 * Estimated seconds left (when it can be estimated).
 */
eta_secs: number | null, 
/**
 * The file being worked on (display only).
 */
current_path: string | null, outcome: JobOutcome | null, error: ErrorReport | null, };

export type JobKind = "backup" | "restore" | "check";

export type JobState = "running" | "done" | "failed" | "cancelled";

export type JobOutcome = { "type": "backup", summary: SnapshotSummary, 
/**
 * The upload to the set's off-site copy (none without one).
 */
upload: PushSummary | null, } | { "type": "restore", summary: RestoreSummary, } | { "type": "check", report: CheckReport, };

export type Phase = "scanning" | "reading" | "writing" | "restoring" | "checking" | "pruning" | "finishing" | "uploading" | "downloading";

export type SnapshotSummary = { id: string, short_id: string, time: string, parent: string | null, files: number, dirs: number, bytes: number, files_new: number, files_changed: number, files_unchanged: number, 
/**
 * Bytes actually read from disk (unchanged files are not read).
 */
bytes_read: number, 
/**
 * Bytes added to the repository (sealed, compressed).
 */
bytes_added: number, chunks_added: number, duration_ms: number, 
/**
 * Files skipped with the reason (unreadable, special files…).
 */
warnings: Array<string>, };

export type RestoreSummary = { snapshot: string, target: string, files: number, dirs: number, symlinks: number, bytes: number, 
/**
 * Items not restored because something was there ([`OnExisting::Skip`]).
 */
skipped: number, 
/**
 * Files that could not be restored because their data is damaged
 * (snapshot paths); everything else was restored.
 */
damaged: Array<string>, 
/**
 * Metadata that could not be applied, and similar non-fatal problems.
 */
warnings: Array<string>, duration_ms: number, };

export type CheckReport = { 
/**
 * Nothing damaged.
 */
ok: boolean, 
/**
 * Whether all data was read and verified.
 */
read_data: boolean, snapshots: number, trees: number, files: number, packs: number, chunks: number, 
/**
 * Files (and directories) whose data cannot be restored.
 */
damaged_files: Array<DamagedItem>, 
/**
 * Damaged records that belong to no file (snapshot records, the
 * database structure, packs no snapshot uses).
 */
damaged_records: Array<string>, 
/**
 * Packs the index names that this database does not hold because its
 * off-site copy does (a database recovered from the copy and not
 * rebuilt): not damage here. `check --remote` checks them, `remote
 * rebuild` downloads them.
 */
packs_only_remote: number, };

export type DamagedItem = { 
/**
 * The snapshot it belongs to, if it belongs to one.
 */
snapshot: string | null, 
/**
 * The file or directory inside the snapshot.
 */
path: string | null, 
/**
 * What is wrong.
 */
problem: string, };

export type SnapshotInfo = { id: string, short_id: string, 
/**
 * UTC, RFC 3339.
 */
time: string, unix_time: number, hostname: string, set_name: string, paths: Array<string>, parent: string | null, files: number, dirs: number, bytes: number, bytes_added: number, };

export type TreeEntry = { 
/**
 * Absolute path inside the snapshot (non-UTF-8 bytes shown as U+FFFD).
 */
path: string, kind: EntryKind, size: number, mode: number, 
/**
 * UTC, RFC 3339.
 */
mtime: string, 
/**
 * Symlinks: the target.
 */
target: string | null, };

export type EntryKind = "file" | "dir" | "symlink";

export type FileVersion = { 
/**
 * The newest snapshot with this version.
 */
snapshot: string, 
/**
 * Its time (UTC, RFC 3339).
 */
snapshot_time: string, 
/**
 * The oldest snapshot with this version, and its time.
 */
first_snapshot: string, first_snapshot_time: string, 
/**
 * How many snapshots hold this version.
 */
snapshots: number, 
/**
 * Absolute path inside the snapshot (non-UTF-8 bytes shown as U+FFFD).
 */
path: string, kind: EntryKind, size: number, mode: number, 
/**
 * UTC, RFC 3339.
 */
mtime: string, 
/**
 * Symlinks: the target.
 */
target: string | null, };

export type SearchHit = { 
/**
 * The newest snapshot that has it, and its time (UTC, RFC 3339).
 */
snapshot: string, snapshot_time: string, snapshots: number, 
/**
 * Absolute path inside the snapshot (non-UTF-8 bytes shown as U+FFFD).
 */
path: string, kind: EntryKind, size: number, mode: number, 
/**
 * UTC, RFC 3339.
 */
mtime: string, 
/**
 * Symlinks: the target.
 */
target: string | null, };

export type SearchResult = { hits: Array<SearchHit>, total: number, };

export type RestorePlan = { snapshot: string, target: string, files: number, dirs: number, symlinks: number, bytes: number, 
/**
 * How many items already exist at the target.
 */
conflicts: number, 
/**
 * How many items are not restored because something is there
 * ([`OnExisting::Skip`]; what is below a skipped folder included).
 */
skipped: number, items: Array<PlanItem>, };

export type PlanItem = { 
/**
 * The path inside the snapshot.
 */
path: string, 
/**
 * Where it would be written.
 */
target: string, kind: EntryKind, size: number, 
/**
 * Something already exists where the snapshot path goes.
 */
exists: boolean, action: PlanAction, };

export type PlanAction = "write" | "replace" | "skip" | "keep_both" | "conflict" | "use_folder";

export type OnExisting = "refuse" | "replace" | "skip" | "keep_both";

export type ForgetPlan = { keep: Array<SnapshotInfo>, remove: Array<SnapshotInfo>, 
/**
 * False for a dry run.
 */
applied: boolean, };

export type PruneSummary = { packs_deleted: number, packs_repacked: number, packs_written: number, chunks_deleted: number, trees_deleted: number, bytes_before: number, bytes_after: number, };

export type RetentionResult = { plan: ForgetPlan, prune: PruneSummary | null, };

export type ErrorCatalogEntry = { code: string, kind: string, meaning: string, what_to_do: string, };

export type GuideStep = { id: string, title: string, detail: string, 
/**
 * The app knows this step is done.
 */
done: boolean, };

export type DiagnosticsText = { text: string, 
/**
 * Where it was saved, when saved.
 */
saved_to: string | null, };

export type DataDirMoved = { 
/**
 * The new data folder.
 */
new_dir: string, 
/**
 * The old folder, left in place.
 */
old_dir: string, 
/**
 * The pointer file written.
 */
pointer_file: string, files_copied: number, bytes_copied: number, 
/**
 * Coffer was started with `--data-dir`/`COFFER_DATA_DIR`, which wins
 * over the pointer: start it without them to use the new folder.
 */
overridden_at_start: boolean, };

export type CodeStrength = { 
/**
 * Estimated bits of entropy (an estimate: length × log2 of the
 * character classes used, reduced for repeated characters).
 */
bits: number, 
/**
 * "too weak", "fair" or "strong".
 */
label: string, acceptable: boolean, };

export type VaultInfo = { fleet_id: string, 
/**
 * SHA-256 of the fleet's OPAQUE server key (first 16 bytes, hex).
 */
key_fingerprint: string, validation_mode: string, validated: boolean, nodes: number, guess_limit: number, quorum: boolean, simulated_hsm: boolean, ksf: string, checks: Array<CheckView>, 
/**
 * How fresh the cosigned log checkpoint is (with a trust policy).
 */
freshness: CheckpointFreshness | null, 
/**
 * The trust policy's cosigners and what each said about the checkpoint.
 */
cosigners: Array<CosignerView>, 
/**
 * Two checkpoints of the log that cannot both be true, when the
 * verification found a fork or a rollback (signed notes, to keep and
 * report).
 */
fork_evidence: ForkEvidenceView | null, 
/**
 * The trust policy the checkpoint was checked against; `None`: no
 * policy is set, so the checkpoint's freshness is not checked.
 */
policy: PolicyView | null, };

export type CheckView = { id: string, label: string, 
/**
 * `passed`, `failed`, `not_applicable` or `not_run`.
 */
status: string, detail: string, };

export type CheckpointFreshness = { 
/**
 * When the policy's quorum of cosigners last vouched for it (Unix seconds).
 */
cosigned_at: number, age_secs: number, 
/**
 * The oldest accepted (the policy's max-age).
 */
max_age_secs: number, 
/**
 * The quorum rule, e.g. `2 of [cosigner-1, cosigner-2]`.
 */
quorum: string, };

export type CosignerView = { name: string, 
/**
 * Its key (`name+keyid+base64`): public.
 */
key: string, 
/**
 * The key id part of `key` (8 hex digits), as the panel shows it.
 */
key_id: string, cosigned_at: number | null, 
/**
 * `fresh`, `stale`, `future`, `missing` or `invalid`.
 */
status: string, };

export type ForkEvidenceView = { 
/**
 * `forked` (same size with another root, or no consistency proof) or
 * `rolled_back` (smaller than the checkpoint seen before).
 */
kind: string, 
/**
 * The checkpoint this app verified before (a signed note).
 */
remembered: string, 
/**
 * The checkpoint the vault presents now (a signed note).
 */
presented: string, };

export type PolicyView = { 
/**
 * The quorum rule, e.g. `2 of [cosigner-1, cosigner-2]`.
 */
quorum: string, 
/**
 * The oldest quorum cosigning accepted (seconds).
 */
max_age_secs: number, 
/**
 * The cosigners' names, in the policy's order.
 */
cosigners: Array<string>, };

export type LoadedPolicy = { 
/**
 * The file's text, for the form's policy field.
 */
text: string, policy: PolicyView, };

export type VaultChoice = { "mode": "embedded_demo" } | { "mode": "remote", url: string, witness_key: string, operator_key: string, 
/**
 * The witness's base URL (optional): only for the audit links of
 * the verification report, never trusted for anything else.
 */
witness_url?: string, 
/**
 * The HSM vendor's root key (optional, with `evidence_url`): when
 * pinned, the fleet's deployment evidence must verify against it
 * (each HSM attested by the vendor, the fleet keys made inside).
 */
vendor_key?: string, 
/**
 * Where the operator publishes the deployment evidence document.
 */
evidence_url?: string, 
/**
 * The trust policy (C2SP tlog-policy plus `max-age`, as published
 * by the vault operator), as text: which cosigners must have
 * cosigned the witness log's checkpoint, how many of them, and how
 * long ago at most. Its `log` line must be the pinned witness key.
 * Without one the checkpoint's freshness is not checked (the
 * verification panel says so). Since schema version 2.
 */
trust_policy?: string, } | { "mode": "key_only" };

export type VaultSettings = { choice: VaultChoice, 
/**
 * The account name last used with the vault (prefill; not a secret).
 */
account: string | null, 
/**
 * Whether `save_vault_choice` may switch to another vault now.
 */
can_switch: boolean, 
/**
 * Why not, when it may not (the same report the save would return).
 */
switch_refused: ErrorReport | null, };

export type VaultMoved = { 
/**
 * What was verified about the new vault, now in use.
 */
info: VaultInfo, 
/**
 * Whether the record in the previous vault was deleted.
 */
old_record_deleted: boolean, 
/**
 * Why not, when it was not (the code is registered in both vaults
 * then; the report's next step says what to do).
 */
old_record_error: ErrorReport | null, 
/**
 * Wrong codes tried in the previous vault since its last successful
 * recovery (step 1 of the move is one).
 */
wrong_guesses: number, 
/**
 * When the last of those began (Unix seconds, at most 16).
 */
wrong_guess_times: number[], };

export type PathKind = "folder" | "open_repository" | "save_repository" | "save_diagnostics" | "open_policy" | "open_key_file";

export type Destination = { "type": "s3", 
/**
 * `https://s3.eu-central-1.amazonaws.com`, `http://127.0.0.1:3900`…
 */
endpoint: string, 
/**
 * The signing region (`us-east-1`, `garage`, `auto` for R2…).
 */
region: string, bucket: string, 
/**
 * A folder inside the bucket ("" for the whole bucket).
 */
prefix: string, } | { "type": "sftp", host: string, port: number, user: string, 
/**
 * The folder holding the copy (created if missing; its parent must exist).
 */
path: string, 
/**
 * The server's confirmed host key, `SHA256:…` as `ssh-keygen -lf`
 * prints it. Without it, every connection stops with `CF-O008`
 * naming the key the server presents, for the user to confirm.
 */
host_key: string | null, };

export type RemoteCredentialsInput = { "type": "s3", access_key_id: string, secret_access_key: string, } | { "type": "sftp_password", password: string, } | { "type": "sftp_key", key_file: string, passphrase: string | null, };

export type ConnectionReport = { destination: string, 
/**
 * A Coffer copy is there already: its repository id (32 hex digits).
 */
repository: string | null, 
/**
 * The SFTP server's host key (confirmed) or `None` for S3.
 */
host_key: string | null, 
/**
 * How long listing, writing, reading and deleting a probe took.
 */
round_trip_ms: number, };

export type PushSummary = { 
/**
 * The copy's version after the upload (the root's generation).
 */
generation: number, 
/**
 * Whether a new root was written (false: the copy was up to date).
 */
changed: boolean, packs_uploaded: number, 
/**
 * Data and index objects written, and their stored bytes (padding
 * included).
 */
objects_uploaded: number, bytes_uploaded: number, 
/**
 * Packs an interrupted upload had sent already (not sent again).
 */
packs_resumed: number, 
/**
 * Objects deleted because no root needs them any more.
 */
objects_deleted: number, 
/**
 * Whether the whole index was written afresh.
 */
compacted: boolean, duration_ms: number, };

/** The event name of job progress events. */
export const JOB_EVENT = "coffer://job";

/** Every Tauri command: its arguments and its result. */
export interface Commands {
  app_status: { args: Record<string, never>; result: AppStatus };
  app_overview: { args: Record<string, never>; result: AppOverview };
  create_key_repository: { args: { path: string; create_folder: boolean }; result: NewRecoveryKey };
  confirm_recovery_key: { args: { group: number; typed: string }; result: KeyInstalled };
  complete_onboarding: { args: { first_set: BackupSetInput }; result: SetView };
  unlock_with_recovery_key: { args: { repository: string; recovery_key: string }; result: KeyInstalled };
  rehearse_recovery_key: { args: { recovery_key: string }; result: number };
  lock_app: { args: Record<string, never>; result: null };
  forget_device_key: { args: Record<string, never>; result: null };
  keep_backing_up: { args: Record<string, never>; result: CarryOn };
  list_sets: { args: Record<string, never>; result: Array<SetView> };
  save_set: { args: { id: string | null; input: BackupSetInput; credentials: RemoteCredentialsInput | null }; result: SetView };
  delete_set: { args: { id: string }; result: null };
  run_backup: { args: { set_id: string }; result: number };
  cancel_job: { args: { job_id: number }; result: null };
  job_status: { args: { job_id: number }; result: JobEvent };
  list_snapshots: { args: Record<string, never>; result: Array<SnapshotInfo> };
  list_tree: { args: { snapshot: string; path: string | null }; result: Array<TreeEntry> };
  find_files: { args: { pattern: string }; result: SearchResult };
  file_versions: { args: { path: string }; result: Array<FileVersion> };
  plan_restore: { args: { snapshot: string; include: string[]; target: string; on_existing: OnExisting }; result: RestorePlan };
  run_restore: { args: { snapshot: string; include: string[]; target: string; on_existing: OnExisting }; result: number };
  run_check: { args: Record<string, never>; result: number };
  apply_retention: { args: { retention: Retention; dry_run: boolean }; result: RetentionResult };
  diagnostics: { args: { save: boolean }; result: DiagnosticsText };
  save_diagnostics_as: { args: { path: string }; result: DiagnosticsText };
  move_data_dir: { args: { target: string }; result: DataDirMoved };
  error_catalog: { args: Record<string, never>; result: Array<ErrorCatalogEntry> };
  lookup_error: { args: { code: string }; result: ErrorCatalogEntry };
  recovery_guide: { args: Record<string, never>; result: Array<GuideStep> };
  open_link: { args: { url: string }; result: null };
  code_strength: { args: { code: string }; result: CodeStrength };
  vault_info: { args: Record<string, never>; result: VaultInfo };
  vault_settings: { args: Record<string, never>; result: VaultSettings };
  test_vault_choice: { args: { choice: VaultChoice }; result: VaultInfo };
  save_vault_choice: { args: { choice: VaultChoice }; result: VaultInfo };
  load_trust_policy: { args: { path: string }; result: LoadedPolicy };
  shipped_trust_policy: { args: { witness_key: string }; result: LoadedPolicy };
  create_vault_repository: { args: { path: string; account: string; code: string; confirm: string; create_folder: boolean }; result: KeyInstalled };
  unlock_with_recovery_code: { args: { repository: string; account: string; code: string }; result: KeyInstalled };
  send_vault_mail_code: { args: { account: string; target: VaultChoice | null }; result: null };
  verify_vault_mail_code: { args: { account: string; code: string; target: VaultChoice | null }; result: null };
  rehearse_recovery_code: { args: { account: string; code: string }; result: Rehearsed };
  change_recovery_code: { args: { account: string; old: string; new: string; confirm: string }; result: null };
  delete_vault_record: { args: { account: string; code: string }; result: null };
  move_recovery_code: { args: { choice: VaultChoice; account: string; code: string }; result: VaultMoved };
  test_remote: { args: { destination: Destination; credentials: RemoteCredentialsInput | null; set_id: string | null }; result: ConnectionReport };
  recover_from_remote_with_key: { args: { destination: Destination; credentials: RemoteCredentialsInput; repository: string; recovery_key: string }; result: KeyInstalled };
  recover_from_remote_with_code: { args: { destination: Destination; credentials: RemoteCredentialsInput; repository: string; account: string; code: string }; result: KeyInstalled };
  pick_path: { args: { kind: PathKind; start: string | null }; result: string | null };
}
