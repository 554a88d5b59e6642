//! `coffer`: the command line of Coffer.
//!
//! Subcommand groups live in their own modules; each adds one variant to
//! [`Commands`]: the repository commands (`repo_cmd`) are flattened into
//! the top level (restic style: `coffer -r REPO backup …`); `vault`
//! (`vault_cmd`) and `audit` (`audit_cmd`) are added the same way.
#![forbid(unsafe_code)]

mod audit_cmd;
mod error;
mod output;
mod progress;
mod remote_cmd;
mod repo_cmd;
mod vault_cmd;

use clap::{Parser, Subcommand};
use coffer_error::{ErrorReport, UserFacing};
use std::path::PathBuf;

pub use error::{CliError, ERROR_CODES};

/// Exit status for errors.
const EXIT_ERROR: i32 = 1;
/// Exit status for wrong usage (clap's convention).
const EXIT_USAGE: i32 = 2;
/// Exit status when `check` found damage or a restore skipped damaged files.
const EXIT_DAMAGE: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: end-to-end encrypted backups in one repository file",
    propagate_version = true
)]
pub struct Cli {
    /// The repository file.
    #[arg(short = 'r', long = "repo", env = "COFFER_REPOSITORY", global = true)]
    pub repo: Option<PathBuf>,
    /// A file holding the 64-digit recovery key (never pass the key itself
    /// as an argument). Without it, the key is asked for on the terminal.
    #[arg(long = "key-file", env = "COFFER_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Machine-readable output (one JSON document on stdout; errors as JSON on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// An off-site copy: `s3:https://ENDPOINT/BUCKET[/PREFIX][?region=R]`
    /// or `sftp://USER@HOST[:PORT]/PATH[?host_key=SHA256:…]` (`//PATH`:
    /// absolute). Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
    /// or --ssh-key / COFFER_SFTP_PASSWORD; never as arguments.
    #[arg(long = "remote", env = "COFFER_REMOTE", global = true)]
    pub remote: Option<String>,
    /// SFTP: the private key file (its passphrase, if any, in COFFER_SSH_KEY_PASSPHRASE).
    #[arg(long = "ssh-key", env = "COFFER_SSH_KEY", global = true)]
    pub ssh_key: Option<PathBuf>,
    /// Upload at most this much per second on average (`2MiB`, `500k`).
    #[arg(long = "limit-upload", env = "COFFER_LIMIT_UPLOAD", global = true)]
    pub limit_upload: Option<String>,
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    #[command(flatten)]
    Repo(repo_cmd::RepoCommand),
    /// Check a fleet yourself: deployment evidence, and every epoch the witness logged.
    Audit(audit_cmd::AuditArgs),
    /// Register, recover, change or delete the vault record of a backup key; fleet status.
    Vault(vault_cmd::VaultArgs),
    /// Off-site copies (--remote): test, init, push, recover, rebuild.
    Remote {
        #[command(subcommand)]
        cmd: remote_cmd::RemoteCommand,
    },
}

/// How a command ended when it did not simply succeed.
pub enum Failure {
    Error(ErrorReport),
    /// The output was printed; damage was found.
    Damage(ErrorReport),
}

impl<E: UserFacing> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.report())
    }
}

fn print_error(json: bool, r: &ErrorReport) {
    if json {
        let v = serde_json::json!({ "error": r });
        eprintln!("{v}");
    } else {
        eprintln!("error {}: {}", r.code, r.message);
        eprintln!("next step: {}", r.next_step);
    }
}

fn main() {
    let json_requested = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                    EXIT_USAGE
                } else {
                    0
                });
            }
            if json_requested {
                let msg = e.to_string();
                let text: Vec<&str> = msg
                    .lines()
                    .map(|l| l.trim().trim_start_matches("error: "))
                    .filter(|l| {
                        !l.is_empty()
                            && !l.starts_with("Usage:")
                            && !l.starts_with("For more information")
                    })
                    .collect();
                print_error(true, &CliError::Usage(text.join(" ")).report());
            } else {
                let _ = e.print();
            }
            std::process::exit(EXIT_USAGE);
        }
    };
    let json = cli.json;
    let result = match &cli.command {
        Commands::Repo(cmd) => repo_cmd::run(&cli, cmd),
        Commands::Audit(args) => audit_cmd::run(&cli, args),
        Commands::Vault(args) => vault_cmd::run(&cli, args),
        Commands::Remote { cmd } => remote_cmd::run(&cli, cmd),
    };
    match result {
        Ok(()) => {}
        Err(Failure::Error(r)) => {
            print_error(json, &r);
            std::process::exit(EXIT_ERROR);
        }
        Err(Failure::Damage(r)) => {
            print_error(json, &r);
            std::process::exit(EXIT_DAMAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_error_code_is_documented() {
        let md = include_str!("../../../docs/errors.md");
        let missing = coffer_error::undocumented_codes(ERROR_CODES, md);
        assert!(missing.is_empty(), "undocumented codes: {missing:?}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn latest_and_globals_parse_anywhere() {
        let c = Cli::try_parse_from([
            "coffer", "restore", "latest", "--target", "/tmp/x", "-r", "/r", "--json",
        ])
        .unwrap();
        assert!(c.json);
        assert_eq!(c.repo.as_deref(), Some(std::path::Path::new("/r")));
        // the key is never an argument
        assert!(Cli::try_parse_from(["coffer", "-r", "/r", "--key", "abcd", "snapshots"]).is_err());
    }
}
