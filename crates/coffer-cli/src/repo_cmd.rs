//! The repository commands (restic's conventions): `init`, `backup`,
//! `snapshots`, `ls`, `find`, `diff`, `restore`, `check`, `forget`,
//! `prune`, `key show`, `unlock`.

use crate::error::CliError;
use crate::output;
use crate::progress::Bar;
use crate::remote_cmd;
use crate::{Cli, Failure};
use clap::{Args, Subcommand};
use coffer_error::UserFacing;
use coffer_repo::{
    BackupRequest, CancelToken, MasterKey, OnExisting, PlanAction, RecoveryKey, Repository,
    RestoreRequest, RetentionPolicy, Unlocked,
};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a new repository file and show its recovery key once.
    Init,
    /// Back up files and folders as a new snapshot.
    Backup {
        /// Files or folders to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Leave out paths matching this gitignore-style pattern (repeatable).
        #[arg(long = "exclude", short = 'e')]
        excludes: Vec<String>,
        /// The backup set's name (groups snapshots for parents and retention).
        #[arg(long = "set", default_value = "")]
        set_name: String,
        /// Compare with this snapshot instead of the newest of the same set and paths.
        #[arg(long)]
        parent: Option<String>,
    },
    /// List the snapshots.
    Snapshots,
    /// List the files of a snapshot (`latest` is the newest), below PATH.
    Ls {
        snapshot: String,
        path: Option<PathBuf>,
    },
    /// Find files and folders by name (glob; with a `/`, by full path) in all snapshots.
    Find { pattern: String },
    /// Show what changed between two snapshots.
    Diff { a: String, b: String },
    /// Restore a snapshot (or chosen paths of it) into a folder.
    Restore {
        snapshot: String,
        /// The folder to restore into; snapshot paths are recreated below it.
        #[arg(long, short = 't')]
        target: PathBuf,
        /// Restore only this path of the snapshot (repeatable).
        #[arg(long = "include", short = 'i')]
        include: Vec<PathBuf>,
        /// Show what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace files that exist at the target.
        #[arg(long, group = "existing")]
        overwrite: bool,
        /// Leave files that exist at the target and restore the rest.
        #[arg(long, group = "existing")]
        skip_existing: bool,
        /// Keep files that exist at the target and restore the snapshot's
        /// version beside each, as "name (restored).ext".
        #[arg(long, group = "existing")]
        keep_both: bool,
    },
    /// Verify the repository: every record authenticated; with --read-data every chunk too.
    Check {
        #[arg(long)]
        read_data: bool,
    },
    /// Remove snapshots by a retention policy.
    Forget {
        #[command(flatten)]
        keep: KeepArgs,
        /// Also prune afterwards.
        #[arg(long)]
        prune: bool,
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete data no snapshot uses and shrink the file.
    Prune,
    /// Recovery key commands.
    Key {
        #[command(subcommand)]
        cmd: KeyCommand,
    },
    /// Remove a lock left behind by a crashed coffer process.
    Unlock,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Show the recovery key of this repository again (after unlocking it).
    Show,
}

#[derive(Args, Debug, Default)]
pub struct KeepArgs {
    #[arg(long, default_value_t = 0)]
    keep_last: u32,
    #[arg(long, default_value_t = 0)]
    keep_hourly: u32,
    #[arg(long, default_value_t = 0)]
    keep_daily: u32,
    #[arg(long, default_value_t = 0)]
    keep_weekly: u32,
    #[arg(long, default_value_t = 0)]
    keep_monthly: u32,
    #[arg(long, default_value_t = 0)]
    keep_yearly: u32,
}

type Res = Result<(), Failure>;

fn print_json<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
    );
}

fn repo_path(cli: &Cli) -> Result<&Path, CliError> {
    cli.repo.as_deref().ok_or(CliError::NoRepository)
}

fn read_key_file(p: &Path) -> Result<MasterKey, Failure> {
    let s = std::fs::read_to_string(p).map_err(|e| CliError::KeyFileUnreadable {
        path: p.display().to_string(),
        reason: e.to_string(),
    })?;
    let s = zeroize::Zeroizing::new(s);
    Ok(RecoveryKey::parse(s.trim())?.into_master_key())
}

/// K from the key file, or typed on the terminal (no echo).
pub(crate) fn obtain_key(cli: &Cli) -> Result<MasterKey, Failure> {
    if let Some(p) = &cli.key_file {
        return read_key_file(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::NoKeySource.into());
    }
    let typed = rpassword::prompt_password("recovery key: ").map_err(|_| CliError::NoKeySource)?;
    let typed = zeroize::Zeroizing::new(typed);
    Ok(RecoveryKey::parse(&typed)?.into_master_key())
}

pub(crate) fn open(cli: &Cli) -> Result<Repository<Unlocked>, Failure> {
    let path = repo_path(cli)?;
    // Open first: "not a repository" is said before any key is asked for.
    let locked = Repository::open(path)?;
    let key = obtain_key(cli)?;
    Ok(locked.unlock_with_key(key)?)
}

pub(crate) fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    // A second handler cannot be installed; then Ctrl-C simply ends the
    // process, which is safe too (every step is transactional).
    let _ = ctrlc::set_handler(move || t.cancel());
    token
}

fn show_recovery_key(key: &MasterKey) -> String {
    let s = key.recovery_key().to_display_string();
    let groups: Vec<&str> = s.split('-').collect();
    let mut out = String::new();
    for line in groups.chunks(4) {
        out.push_str("    ");
        out.push_str(&line.join("-"));
        out.push('\n');
    }
    out
}

pub fn run(cli: &Cli, cmd: &RepoCommand) -> Res {
    let json = cli.json;
    let bar_hidden = json || cli.quiet || !std::io::stderr().is_terminal();
    match cmd {
        RepoCommand::Init => {
            let path = repo_path(cli)?;
            let mut wrote_key_file = false;
            let key = match &cli.key_file {
                Some(kf) if kf.exists() => read_key_file(kf)?,
                Some(kf) => {
                    let key = MasterKey::generate()?;
                    write_key_file(kf, &key)?;
                    wrote_key_file = true;
                    key
                }
                None => MasterKey::generate()?,
            };
            // The destination's settings are checked before anything is made.
            let remote = match &cli.remote {
                Some(_) => Some(remote_cmd::open_remote(cli)?),
                None => None,
            };
            let repo = Repository::init(path, &key).inspect_err(|_| {
                if wrote_key_file {
                    if let Some(kf) = &cli.key_file {
                        let _ = std::fs::remove_file(kf);
                    }
                }
            })?;
            if let Some(remote) = &remote {
                repo.remote_init(remote)?;
            }
            if json {
                print_json(&serde_json::json!({
                    "repository": repo.path().display().to_string(),
                    "recovery_key": key.recovery_key().to_display_string().as_str(),
                    "key_file": cli.key_file.as_ref().map(|p| p.display().to_string()),
                    "remote": remote.as_ref().map(|r| r.destination().to_string()),
                }));
            } else {
                println!("created repository {}", repo.path().display());
                if let Some(r) = &remote {
                    println!("with an off-site copy at {}", r.destination());
                }
                println!();
                println!(
                    "Your recovery key. Write it down and keep it safe: it is shown only now,"
                );
                println!("and without it (or the vault) nobody can restore this backup.");
                println!();
                print!("{}", show_recovery_key(&key));
                println!();
                if wrote_key_file {
                    if let Some(kf) = &cli.key_file {
                        println!(
                            "The key was also written to {} (readable only by you).",
                            kf.display()
                        );
                    }
                }
            }
            Ok(())
        }
        RepoCommand::Backup {
            paths,
            excludes,
            set_name,
            parent,
        } => {
            let remote = match &cli.remote {
                Some(_) => Some(remote_cmd::open_remote(cli)?),
                None => None,
            };
            let repo = open(cli)?;
            let cancel = cancel_on_ctrl_c();
            let bar = Bar::new(bar_hidden);
            let req = BackupRequest {
                paths: paths.clone(),
                excludes: excludes.clone(),
                set_name: set_name.clone(),
                parent: parent.clone(),
                app_data: Vec::new(),
            };
            let (r, upload, upload_error) = match &remote {
                None => (repo.backup(&req, &bar, &cancel), None, None),
                Some(remote) => match repo.backup_offsite(&req, remote, &bar, &cancel) {
                    Ok(o) => (Ok(o.snapshot), o.upload, o.upload_error),
                    Err(coffer_repo::remote::RemoteError::Repo(e)) => (Err(e), None, None),
                    Err(e) => {
                        bar.finish();
                        return Err(e.into());
                    }
                },
            };
            bar.finish();
            let s = r?;
            if json && remote.is_none() {
                print_json(&s);
            } else if json {
                print_json(&serde_json::json!({
                    "snapshot": s,
                    "upload": upload,
                    "upload_error": upload_error,
                }));
            } else {
                if let Some(p) = &s.parent {
                    println!("using parent snapshot {}", &p[..8]);
                }
                for w in &s.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "Files: {} new, {} changed, {} unmodified",
                    s.files_new, s.files_changed, s.files_unchanged
                );
                println!(
                    "Added to the repository: {} ({} chunks); read {}",
                    output::bytes(s.bytes_added),
                    s.chunks_added,
                    output::bytes(s.bytes_read)
                );
                println!(
                    "processed {} files, {} in {}",
                    s.files,
                    output::bytes(s.bytes),
                    output::secs(s.duration_ms)
                );
                println!("snapshot {} saved", s.short_id);
                if let Some(u) = &upload {
                    remote_cmd::print_push(u);
                }
            }
            if let Some(e) = upload_error {
                if !json {
                    eprintln!(
                        "the snapshot is saved here; the upload did not finish and resumes on the next run"
                    );
                }
                return Err(Failure::Error(e));
            }
            Ok(())
        }
        RepoCommand::Snapshots => {
            // With --remote: the off-site copy's snapshots, read into a
            // temporary database.
            let db = match &cli.remote {
                Some(_) => {
                    let remote = remote_cmd::open_remote(cli)?;
                    let bar = Bar::new(bar_hidden);
                    let db = remote_cmd::index_db(cli, &remote, &bar, false);
                    bar.finish();
                    Some(db?)
                }
                None => None,
            };
            let local;
            let repo = match &db {
                Some(d) => &d.repo,
                None => {
                    local = open(cli)?;
                    &local
                }
            };
            let snaps = repo.snapshots()?;
            if json {
                print_json(&snaps);
            } else {
                println!(
                    "{:<8}  {:<20}  {:<12}  {:<10}  {:>8}  {:>10}  paths",
                    "ID", "Time", "Host", "Set", "Files", "Size"
                );
                for s in &snaps {
                    println!(
                        "{:<8}  {:<20}  {:<12}  {:<10}  {:>8}  {:>10}  {}",
                        s.short_id,
                        s.time,
                        s.hostname,
                        s.set_name,
                        s.files,
                        output::bytes(s.bytes),
                        s.paths.join(", ")
                    );
                }
                println!("{} snapshots", snaps.len());
            }
            Ok(())
        }
        RepoCommand::Ls { snapshot, path } => {
            let repo = open(cli)?;
            let entries = repo.list_tree(snapshot, path.as_deref())?;
            if json {
                print_json(&entries);
            } else {
                for e in &entries {
                    match &e.target {
                        Some(t) => println!("{} -> {}", e.path, t),
                        None => println!("{}", e.path),
                    }
                }
            }
            Ok(())
        }
        RepoCommand::Find { pattern } => {
            let repo = open(cli)?;
            let hits = repo.find(pattern)?;
            if json {
                print_json(&hits);
            } else {
                for h in &hits {
                    println!(
                        "{} ({})  {:>10}  {}",
                        &h.snapshot[..8],
                        h.snapshot_time,
                        output::bytes(h.entry.size),
                        h.entry.path
                    );
                }
                println!("{} matches", hits.len());
            }
            Ok(())
        }
        RepoCommand::Diff { a, b } => {
            let repo = open(cli)?;
            let d = repo.diff(a, b)?;
            if json {
                print_json(&d);
            } else {
                for e in &d {
                    let c = match e.change {
                        coffer_repo::DiffChange::Added => "+",
                        coffer_repo::DiffChange::Removed => "-",
                        coffer_repo::DiffChange::Modified => "M",
                        coffer_repo::DiffChange::Metadata => "U",
                        coffer_repo::DiffChange::TypeChanged => "T",
                    };
                    println!("{c}    {}", e.path);
                }
                println!("{} changes", d.len());
            }
            Ok(())
        }
        RepoCommand::Restore {
            snapshot,
            target,
            include,
            dry_run,
            overwrite,
            skip_existing,
            keep_both,
        } => {
            let on_existing = match (*overwrite, *skip_existing, *keep_both) {
                (true, _, _) => OnExisting::Replace,
                (_, true, _) => OnExisting::Skip,
                (_, _, true) => OnExisting::KeepBoth,
                _ => OnExisting::Refuse,
            };
            // With --remote: -r as it is (created from the copy when
            // missing), or a temporary database; the packs the chosen files
            // need are fetched from the copy.
            let remote = match &cli.remote {
                Some(_) => Some(remote_cmd::open_remote(cli)?),
                None => None,
            };
            let db = match &remote {
                Some(r) => {
                    let bar = Bar::new(bar_hidden);
                    let db = remote_cmd::index_db(cli, r, &bar, true);
                    bar.finish();
                    Some(db?)
                }
                None => None,
            };
            let local;
            let repo = match &db {
                Some(d) => &d.repo,
                None => {
                    local = open(cli)?;
                    &local
                }
            };
            let req = RestoreRequest {
                snapshot: snapshot.clone(),
                include: include.clone(),
                target: target.clone(),
                on_existing,
                dry_run: *dry_run,
            };
            if *dry_run {
                let plan = repo.plan_restore(&req)?;
                if json {
                    print_json(&plan);
                } else {
                    for i in &plan.items {
                        let mark = match i.action {
                            PlanAction::Write => "new      ",
                            PlanAction::Replace => "replace  ",
                            PlanAction::Skip => "skip     ",
                            PlanAction::KeepBoth => "keep both",
                            PlanAction::Conflict => "EXISTS   ",
                            PlanAction::UseFolder => "folder   ",
                        };
                        println!("{mark}  {}", i.target);
                    }
                    println!(
                        "would restore {} files, {} folders, {} symlinks ({}) from snapshot {} to {}; {} already exist",
                        plan.files,
                        plan.dirs,
                        plan.symlinks,
                        output::bytes(plan.bytes),
                        &plan.snapshot[..8],
                        plan.target,
                        plan.conflicts
                    );
                }
                return Ok(());
            }
            let cancel = cancel_on_ctrl_c();
            let bar = Bar::new(bar_hidden);
            let r = match &remote {
                Some(remote) => repo.restore_from_remote(remote, &req, &bar, &cancel),
                None => repo.restore(&req, &bar, &cancel).map_err(Into::into),
            };
            bar.finish();
            let s = r?;
            if json {
                print_json(&s);
            } else {
                for w in &s.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "restored {} files, {} folders, {} symlinks ({}) from snapshot {} to {} in {}",
                    s.files,
                    s.dirs,
                    s.symlinks,
                    output::bytes(s.bytes),
                    &s.snapshot[..8],
                    s.target,
                    output::secs(s.duration_ms)
                );
                for d in &s.damaged {
                    println!("DAMAGED, not restored: {d}");
                }
            }
            if !s.damaged.is_empty() {
                return Err(Failure::Damage(
                    CliError::DamageFound(format!(
                        "{} file(s) could not be restored because their data is damaged",
                        s.damaged.len()
                    ))
                    .report(),
                ));
            }
            Ok(())
        }
        RepoCommand::Check { read_data } => {
            let cancel = cancel_on_ctrl_c();
            let remote_report = match &cli.remote {
                None => None,
                Some(_) => {
                    let remote = remote_cmd::open_remote(cli)?;
                    let bar = Bar::new(bar_hidden);
                    // With a local database its record of the copy also
                    // detects a copy rolled back to an older state.
                    let r = match cli.repo.as_deref().filter(|p| p.exists()) {
                        Some(_) => open(cli).and_then(|repo| {
                            repo.check_remote(&remote, *read_data, &bar, &cancel)
                                .map_err(Into::into)
                        }),
                        None => obtain_key(cli).and_then(|key| {
                            remote
                                .check(key, *read_data, &bar, &cancel)
                                .map_err(Into::into)
                        }),
                    };
                    bar.finish();
                    Some(r?)
                }
            };
            let rep = match &remote_report {
                Some(r) => r.report.clone(),
                None => {
                    let repo = open(cli)?;
                    let bar = Bar::new(bar_hidden);
                    let r = repo.check(*read_data, &bar, &cancel);
                    bar.finish();
                    r?
                }
            };
            if json {
                match &remote_report {
                    Some(r) => print_json(r),
                    None => print_json(&rep),
                }
            } else {
                if let Some(r) = &remote_report {
                    println!(
                        "off-site copy version {}: {} objects ({}), {} not needed by any snapshot",
                        r.generation,
                        r.objects,
                        output::bytes(r.bytes),
                        r.unreferenced_objects
                    );
                }
                println!(
                    "checked {} snapshots, {} folders, {} files, {} packs, {} chunks{}",
                    rep.snapshots,
                    rep.trees,
                    rep.files,
                    rep.packs,
                    rep.chunks,
                    if rep.read_data {
                        " (all data read)"
                    } else {
                        ""
                    }
                );
                if rep.packs_only_remote > 0 && remote_report.is_none() {
                    println!(
                        "{} packs are kept only in the off-site copy (this file was recovered from it): `check --remote` checks them, `remote rebuild` downloads them",
                        rep.packs_only_remote
                    );
                }
                for r in &rep.damaged_records {
                    println!("DAMAGED: {r}");
                }
                for d in &rep.damaged_files {
                    println!(
                        "DAMAGED: snapshot {} {}: {}",
                        d.snapshot.as_deref().map(|s| &s[..8]).unwrap_or("-"),
                        d.path.as_deref().unwrap_or("-"),
                        d.problem
                    );
                }
                if rep.ok {
                    println!("no errors were found");
                }
            }
            if !rep.ok {
                return Err(Failure::Damage(
                    CliError::DamageFound(format!(
                        "check found {} damaged file(s) and {} damaged record(s)",
                        rep.damaged_files.len(),
                        rep.damaged_records.len()
                    ))
                    .report(),
                ));
            }
            Ok(())
        }
        RepoCommand::Forget {
            keep,
            prune,
            dry_run,
        } => {
            let repo = open(cli)?;
            let policy = RetentionPolicy {
                keep_last: keep.keep_last,
                keep_hourly: keep.keep_hourly,
                keep_daily: keep.keep_daily,
                keep_weekly: keep.keep_weekly,
                keep_monthly: keep.keep_monthly,
                keep_yearly: keep.keep_yearly,
            };
            let plan = repo.forget(&policy, *dry_run)?;
            let pruned = if *prune && !*dry_run {
                Some(repo.prune()?)
            } else {
                None
            };
            if json {
                print_json(&serde_json::json!({ "forget": plan, "prune": pruned }));
            } else {
                for s in &plan.keep {
                    println!("keep    {}  {}  {}", s.short_id, s.time, s.paths.join(", "));
                }
                for s in &plan.remove {
                    println!(
                        "{}  {}  {}  {}",
                        if *dry_run { "would remove" } else { "remove" },
                        s.short_id,
                        s.time,
                        s.paths.join(", ")
                    );
                }
                println!("{} kept, {} removed", plan.keep.len(), plan.remove.len());
                if let Some(p) = pruned {
                    print_prune(&p);
                }
            }
            Ok(())
        }
        RepoCommand::Prune => {
            let repo = open(cli)?;
            let p = repo.prune()?;
            if json {
                print_json(&p);
            } else {
                print_prune(&p);
            }
            Ok(())
        }
        RepoCommand::Key {
            cmd: KeyCommand::Show,
        } => {
            let repo = open(cli)?;
            if json {
                print_json(&serde_json::json!({
                    "recovery_key": repo.master_key().recovery_key().to_display_string().as_str()
                }));
            } else {
                print!("{}", show_recovery_key(repo.master_key()));
            }
            Ok(())
        }
        RepoCommand::Unlock => {
            let repo = open(cli)?;
            let removed = repo.force_unlock()?;
            if json {
                print_json(&serde_json::json!({ "removed": removed }));
            } else if removed {
                println!("removed the lock");
            } else {
                println!("the repository was not locked");
            }
            Ok(())
        }
    }
}

fn print_prune(p: &coffer_repo::PruneSummary) {
    println!(
        "deleted {} packs, repacked {} (into {}), dropped {} chunks and {} folder listings",
        p.packs_deleted, p.packs_repacked, p.packs_written, p.chunks_deleted, p.trees_deleted
    );
    println!(
        "repository size {} -> {}",
        output::bytes(p.bytes_before),
        output::bytes(p.bytes_after)
    );
}

fn write_key_file(p: &Path, key: &MasterKey) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| CliError::KeyFileWrite {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(err)?;
    let s = key.recovery_key().to_display_string();
    f.write_all(s.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}
