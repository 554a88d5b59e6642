//! Off-site copies from the command line: `coffer remote test|init|push|
//! recover|rebuild`, and the `--remote URL` the repository commands take
//! (`init`, `backup`, `snapshots`, `restore`, `check`).
//!
//! Credentials never come from arguments: S3 keys from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (as restic and the AWS
//! tools read them), an SFTP private key from the file `--ssh-key`
//! (passphrase in `COFFER_SSH_KEY_PASSPHRASE`) or a password from
//! `COFFER_SFTP_PASSWORD`.

use crate::error::CliError;
use crate::output;
use crate::progress::Bar;
use crate::{Cli, Failure};
use clap::Subcommand;
use coffer_repo::remote::{Credentials, Destination, Remote, RemoteOptions};
use coffer_repo::{Repository, Unlocked};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Test the destination: list, write, read back and delete a probe.
    Test,
    /// Set up an off-site copy of the repository (-r) at the destination.
    Init,
    /// Upload what the off-site copy lacks (resumes an interrupted upload).
    Push,
    /// Create (or update) the database -r from the off-site copy: snapshots
    /// and folder listings, no file data (restore fetches what it needs).
    Recover,
    /// Create (or complete) the database -r from the off-site copy with all
    /// data: the local database rebuilt.
    Rebuild,
}

/// Parses `2MiB`, `500k`, `1000000` (bytes per second).
pub fn parse_rate(s: &str) -> Result<u64, CliError> {
    let t = s.trim().trim_end_matches("/s");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| CliError::Usage(format!("--limit-upload {s:?}: not a rate like 2MiB")))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(CliError::Usage(format!(
                "--limit-upload {s:?}: unknown unit (use k, M, KiB, MiB…)"
            )))
        }
    };
    Ok((n * mult) as u64)
}

fn env_secret(name: &str) -> Option<SecretString> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

/// The destination named by `--remote` (required here).
pub fn destination(cli: &Cli) -> Result<Destination, Failure> {
    let url = cli.remote.as_deref().ok_or(CliError::NoRemote)?;
    Ok(Destination::parse(url)?)
}

/// Opens the destination with credentials from the environment or files.
pub fn open_remote(cli: &Cli) -> Result<Remote, Failure> {
    let dest = destination(cli)?;
    let creds = match &dest {
        Destination::S3 { .. } => {
            match (
                env_secret("AWS_ACCESS_KEY_ID"),
                env_secret("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Some(access_key_id), Some(secret_access_key)) => Credentials::S3 {
                    access_key_id,
                    secret_access_key,
                },
                _ => {
                    return Err(CliError::NoRemoteCredentials(
                        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                    )
                    .into())
                }
            }
        }
        Destination::Sftp { .. } => {
            if let Some(p) = &cli.ssh_key {
                let text = std::fs::read_to_string(p).map_err(|e| CliError::KeyFileUnreadable {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                Credentials::SftpKey {
                    private_key: SecretString::from(text),
                    passphrase: env_secret("COFFER_SSH_KEY_PASSPHRASE"),
                }
            } else if let Some(pw) = env_secret("COFFER_SFTP_PASSWORD") {
                Credentials::SftpPassword(pw)
            } else {
                return Err(CliError::NoRemoteCredentials(
                    "pass --ssh-key FILE (or COFFER_SSH_KEY), or set COFFER_SFTP_PASSWORD".into(),
                )
                .into());
            }
        }
    };
    let mut opts = RemoteOptions::default();
    if let Some(l) = &cli.limit_upload {
        opts.bandwidth_limit = Some(parse_rate(l)?);
    }
    if let Ok(r) = std::env::var("COFFER_REMOTE_RETRIES") {
        opts.retries = r
            .parse()
            .map_err(|_| CliError::Usage("COFFER_REMOTE_RETRIES is not a number".into()))?;
    }
    Ok(Remote::open(dest, creds, opts)?)
}

/// A database to read the copy's index into: `-r` when given (created when
/// missing, updated from the copy otherwise), else a temporary one that is
/// deleted afterwards.
pub struct IndexDb {
    pub repo: Repository<Unlocked>,
    _tmp: Option<TempDir>,
}

pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database for reading the copy: with `use_repo` and `-r`, that
/// database (opened as it is when it exists, else recovered from the copy:
/// the index only); otherwise the copy's index read into a temporary
/// database.
pub fn index_db(cli: &Cli, remote: &Remote, bar: &Bar, use_repo: bool) -> Result<IndexDb, Failure> {
    if let (true, Some(p)) = (use_repo, &cli.repo) {
        if p.exists() {
            return Ok(IndexDb {
                repo: crate::repo_cmd::open(cli)?,
                _tmp: None,
            });
        }
    }
    let key = crate::repo_cmd::obtain_key(cli)?;
    let cancel = crate::repo_cmd::cancel_on_ctrl_c();
    let (path, tmp) = match (use_repo, &cli.repo) {
        (true, Some(p)) => (p.clone(), None),
        _ => {
            let d = std::env::temp_dir().join(format!(
                "coffer-remote-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
            std::fs::create_dir_all(&d).map_err(|e| {
                CliError::Usage(format!(
                    "cannot create a temporary folder {}: {e}",
                    d.display()
                ))
            })?;
            (d.join("index.coffer"), Some(TempDir(d)))
        }
    };
    let repo = remote.recover(key, &path, bar, &cancel)?;
    Ok(IndexDb { repo, _tmp: tmp })
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
    );
}

pub fn print_push(p: &coffer_repo::remote::PushSummary) {
    if p.changed {
        println!(
            "uploaded {} packs in {} objects ({}){}; off-site copy version {}",
            p.packs_uploaded,
            p.objects_uploaded,
            output::bytes(p.bytes_uploaded),
            if p.packs_resumed > 0 {
                format!(
                    ", {} packs kept from an interrupted upload",
                    p.packs_resumed
                )
            } else {
                String::new()
            },
            p.generation
        );
    } else {
        println!("the off-site copy is up to date (version {})", p.generation);
    }
    if p.objects_deleted > 0 {
        println!("deleted {} objects no snapshot needs", p.objects_deleted);
    }
}

fn repo_path(cli: &Cli) -> Result<&Path, CliError> {
    cli.repo.as_deref().ok_or(CliError::NoRepository)
}

pub fn run(cli: &Cli, cmd: &RemoteCommand) -> Result<(), Failure> {
    let json = cli.json;
    let bar_hidden = json || cli.quiet || {
        use std::io::IsTerminal;
        !std::io::stderr().is_terminal()
    };
    match cmd {
        RemoteCommand::Test => {
            let remote = open_remote(cli)?;
            let r = remote.test()?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "{}: reachable, writable ({} ms)",
                    r.destination, r.round_trip_ms
                );
                if let Some(k) = &r.host_key {
                    println!("host key {k}");
                }
                match &r.repository {
                    Some(id) => println!("holds the off-site copy of repository {id}"),
                    None => println!("holds no Coffer backup yet"),
                }
            }
        }
        RemoteCommand::Init => {
            let remote = open_remote(cli)?;
            let repo = crate::repo_cmd::open(cli)?;
            let new = repo.remote_init(&remote)?;
            if json {
                print_json(
                    &serde_json::json!({ "destination": remote.destination().to_string(), "created": new }),
                );
            } else if new {
                println!("set up the off-site copy at {}", remote.destination());
            } else {
                println!(
                    "{} already holds this repository's copy",
                    remote.destination()
                );
            }
        }
        RemoteCommand::Push => {
            let remote = open_remote(cli)?;
            let repo = crate::repo_cmd::open(cli)?;
            let cancel = crate::repo_cmd::cancel_on_ctrl_c();
            let bar = Bar::new(bar_hidden);
            let r = repo.push(&remote, &bar, &cancel);
            bar.finish();
            let p = r?;
            if json {
                print_json(&p);
            } else {
                print_push(&p);
            }
        }
        RemoteCommand::Recover | RemoteCommand::Rebuild => {
            let path = repo_path(cli)?;
            let remote = open_remote(cli)?;
            let key = crate::repo_cmd::obtain_key(cli)?;
            let cancel = crate::repo_cmd::cancel_on_ctrl_c();
            let bar = Bar::new(bar_hidden);
            // Reads the copy's index again even into an existing database
            // (an interrupted recovery resumes).
            let repo = remote.recover(key, path, &bar, &cancel);
            let db = match repo {
                Ok(repo) => IndexDb { repo, _tmp: None },
                Err(e) => {
                    bar.finish();
                    return Err(e.into());
                }
            };
            let fetched = if matches!(cmd, RemoteCommand::Rebuild) {
                let r = db.repo.fetch_all(&remote, &bar, &cancel);
                bar.finish();
                Some(r?)
            } else {
                bar.finish();
                None
            };
            let snaps = db.repo.snapshots()?;
            if json {
                print_json(&serde_json::json!({
                    "repository": db.repo.path().display().to_string(),
                    "snapshots": snaps.len(),
                    "fetch": fetched,
                }));
            } else {
                println!(
                    "{} now holds the off-site copy's index: {} snapshots",
                    db.repo.path().display(),
                    snaps.len()
                );
                if let Some(f) = &fetched {
                    println!(
                        "downloaded {} packs ({})",
                        f.packs_fetched,
                        output::bytes(f.bytes_downloaded)
                    );
                    for d in &f.damaged {
                        println!("DAMAGED: {d}");
                    }
                }
            }
            if let Some(f) = fetched {
                if !f.damaged.is_empty() {
                    return Err(Failure::Damage(coffer_error::UserFacing::report(
                        &CliError::DamageFound(format!(
                            "{} pack(s) of the off-site copy are damaged or missing",
                            f.damaged.len()
                        )),
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5M/s").unwrap(), 1_500_000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("2 parsecs").is_err());
    }
}
