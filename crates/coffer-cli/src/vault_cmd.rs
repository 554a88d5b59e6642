//! `coffer vault`: the vault without the GUI, for support staff and scripts.
//!
//! * `coffer vault register --vault URL --fleet-key PIN --user ID --key-file KIT`
//!   registers the backup key K (read from a recovery-key file, the
//!   64-digit form) under a recovery code;
//! * `coffer vault recover … --out FILE` writes K back as a recovery-key file
//!   (usable with `coffer --key-file FILE restore …`);
//! * `coffer vault change …`, `coffer vault delete … --yes`, `coffer vault status …`.
//!
//! The recovery code is read from `--code-file FILE`, from the first line of
//! standard input with `--code-stdin` (for `change`: old code on the first
//! line, new code on the second), or from a prompt without echo. It is never
//! an argument (it would show in `ps` and shell history). `--vault` takes
//! one URL or several (comma-separated, one per fleet node: the client fails
//! over). `--fleet-key` pins the fleet's keys (its OPAQUE key and its channel
//! key, one string `coffer-fleet-v2:<hex>:<hex>` as `coffer-vault fleet
//! create` writes it, or a file holding it): no session starts with a vault
//! that presents other keys, and every request goes through the channel to
//! the pinned channel key. An old pin (64 hex digits, protocol v1) is refused
//! with what to pin now.
//! `--witness-key KEY --operator-key KEY [--trust-state FILE]` selects
//! over-the-air validation instead: the vault must relay a witness-signed,
//! operator-countersigned bundle with log proofs, checked against those
//! pinned keys (and the remembered checkpoint in `--trust-state`) before any
//! account id is sent. With both, both must pass.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use coffer_error::{ErrorKind, UserFacing};
use coffer_repo::{MasterKey, RecoveryKey};
use coffer_transparency::{CheckStatus, NoteVerifier, Verifier};
use coffer_vault_client::{
    ExposeSecret, FleetInfo, FleetKeyValidator, OtaFleetKeyValidator, PinnedFleetKey, SecretBox,
    SecretString, ValidatedFleet, VaultClient,
};
use zeroize::Zeroizing;

use crate::{Cli, Failure};

/// Codes of this module (documented in docs/errors.md, vault section).
#[cfg(test)]
const VAULT_CMD_ERROR_CODES: &[&str] = &[
    "CF-V060", "CF-V061", "CF-V062", "CF-V063", "CF-V064", "CF-V065",
];

#[derive(Debug, thiserror::Error)]
pub enum VaultCmdError {
    #[error("the recovery code could not be read: {0}")]
    NoCode(String),
    #[error("the backup key could not be read: {0}")]
    BadKey(String),
    #[error("refusing to delete the vault record without --yes")]
    NotConfirmed,
    #[error("{0}")]
    NoVault(String),
    #[error("the recovered key could not be written: {0}")]
    Output(String),
    #[error("the code from the mail could not be read: {0}")]
    NoMailCode(String),
}

impl UserFacing for VaultCmdError {
    fn kind(&self) -> ErrorKind {
        match self {
            VaultCmdError::Output(_) => ErrorKind::Io,
            _ => ErrorKind::InvalidInput,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            VaultCmdError::NoCode(_) => "CF-V060",
            VaultCmdError::BadKey(_) => "CF-V061",
            VaultCmdError::NotConfirmed => "CF-V062",
            VaultCmdError::NoVault(_) => "CF-V063",
            VaultCmdError::Output(_) => "CF-V064",
            VaultCmdError::NoMailCode(_) => "CF-V065",
        }
    }
    fn next_step(&self) -> String {
        match self {
            VaultCmdError::NoCode(_) => "Pass --code-file FILE, pipe the code with --code-stdin, or run in a terminal.".into(),
            VaultCmdError::BadKey(_) => "Give --key-file with the 64-digit recovery key of the repository.".into(),
            VaultCmdError::NotConfirmed => "Deleting destroys the only vault copy of the key: add --yes if you mean it.".into(),
            VaultCmdError::NoVault(_) => "Pass --vault URL and --fleet-key coffer-fleet-v2:<OPAQUE key>:<channel key> (the `fleet_key` of fleet-public.json; or set COFFER_VAULT_URL and COFFER_FLEET_KEY).".into(),
            VaultCmdError::Output(_) => "Choose an --out path in a folder you may write to (the file must not exist yet).".into(),
            VaultCmdError::NoMailCode(_) => "Pass --mail-code 12345678 (from the newest mail; `coffer vault send-code` sends one), or run in a terminal and type it at the prompt.".into(),
        }
    }
}

#[derive(Args, Debug)]
pub struct VaultArgs {
    #[command(subcommand)]
    pub what: VaultCommand,
}

/// Where the vault is and which fleet key it must present.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The vault URL, or several nodes' URLs separated by commas.
    #[arg(long, env = "COFFER_VAULT_URL")]
    pub vault: Option<String>,
    /// The pinned fleet keys: `coffer-fleet-v2:<OPAQUE key hex>:<channel key
    /// hex>` (the `fleet_key` of fleet-public.json), or a file holding it.
    #[arg(long, env = "COFFER_FLEET_KEY")]
    pub fleet_key: Option<String>,
    /// Over-the-air mode: the pinned witness key (verifier key string, or a file holding it).
    #[arg(long, env = "COFFER_WITNESS_KEY", requires = "operator_key")]
    pub witness_key: Option<String>,
    /// Over-the-air mode: the pinned operator root key (verifier key string, or a file).
    #[arg(long, env = "COFFER_OPERATOR_KEY", requires = "witness_key")]
    pub operator_key: Option<String>,
    /// Over-the-air mode: where the last verified epoch and witness checkpoint
    /// are remembered (JSON, 0600, no secrets); without it every run is a first contact.
    #[arg(long, env = "COFFER_TRUST_STATE", requires = "witness_key")]
    pub trust_state: Option<PathBuf>,
    /// Over-the-air mode: the witness's base URL, for audit links in the report.
    #[arg(long, requires = "witness_key")]
    pub witness_url: Option<String>,
    /// Over-the-air mode: the trust policy (C2SP tlog-policy + max-age):
    /// the log's cosigners and their quorum. The checkpoint must be
    /// cosigned by the quorum within the maximum age (freshness).
    #[arg(long, env = "COFFER_TRUST_POLICY", requires = "witness_key")]
    pub policy: Option<PathBuf>,
    /// Override the policy's maximum age of the cosigned checkpoint (seconds).
    #[arg(long, requires = "policy")]
    pub max_age: Option<u64>,
    /// The 8-digit code from the newest mail the vault sent to the account
    /// (`coffer vault send-code`); without it (and without
    /// --mail-outbox) a code is sent and asked for at a prompt.
    #[arg(long, env = "COFFER_MAIL_CODE", conflicts_with = "mail_outbox")]
    pub mail_code: Option<String>,
    /// A local test or demo vault whose mail goes to a file: the code is
    /// asked for and read from this outbox (never for a real vault).
    #[arg(long, env = "COFFER_MAIL_OUTBOX")]
    pub mail_outbox: Option<PathBuf>,
}

/// Both validators must accept (pinned key and over-the-air bundle).
struct Both(PinnedFleetKey, Arc<OtaFleetKeyValidator>);

impl FleetKeyValidator for Both {
    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, String> {
        self.0.validate(fleet)?;
        self.1.validate(fleet)
    }
    fn known_log_size(&self) -> Option<u64> {
        self.1.known_log_size()
    }
}

fn parse_verifier(flag: &str, s: &str) -> Result<NoteVerifier, VaultCmdError> {
    coffer_witness::keys::read_verifier(s)
        .map_err(|e| VaultCmdError::NoVault(format!("bad {flag}: {e}")))
}

fn ota_validator(t: &Target) -> Result<Option<Arc<OtaFleetKeyValidator>>, Failure> {
    let (Some(w), Some(o)) = (&t.witness_key, &t.operator_key) else {
        return Ok(None);
    };
    let mut v = Verifier::new(
        parse_verifier("--witness-key", w)?,
        parse_verifier("--operator-key", o)?,
    );
    v.witness_url = t.witness_url.clone();
    if let Some(p) = &t.policy {
        let text = std::fs::read_to_string(p)
            .map_err(|e| VaultCmdError::NoVault(format!("--policy {}: {e}", p.display())))?;
        let mut policy = coffer_transparency::Policy::parse(&text)?;
        if let Some(a) = t.max_age {
            policy.max_age_secs = a.max(1);
        }
        if policy.log(&v.witness).is_none() {
            return Err(VaultCmdError::NoVault(format!(
                "the policy {} does not list the pinned witness key as its log",
                p.display()
            ))
            .into());
        }
        v.policy = Some(policy);
    }
    Ok(Some(Arc::new(OtaFleetKeyValidator::new(
        v,
        t.trust_state.clone(),
        None,
    )?)))
}

/// Where the recovery code comes from (default: a prompt). It names the
/// source only; the code itself is read later into a `SecretString`.
#[derive(Args, Clone)]
pub struct CodeSource {
    /// Read the recovery code from this file (first line).
    #[arg(long, conflicts_with = "code_stdin")]
    pub code_file: Option<PathBuf>,
    /// Read the recovery code from the first line of standard input.
    #[arg(long)]
    pub code_stdin: bool,
}

/// By hand, so a field added later cannot print a code: says which source.
impl std::fmt::Debug for CodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeSource")
            .field("code_file", &self.code_file.as_ref().map(|_| "<file>"))
            .field("code_stdin", &self.code_stdin)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Register the backup key (from --key-file) under a recovery code.
    Register {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        code: CodeSource,
    },
    /// Recover the backup key with the recovery code (one attempt).
    Recover {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        code: CodeSource,
        /// Write the key here as a recovery-key file (must not exist; `-` for stdout).
        #[arg(long)]
        out: PathBuf,
    },
    /// Change the recovery code (needs the current one).
    Change {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        code: CodeSource,
        /// Read the new code from this file (with --code-stdin: the second line).
        #[arg(long)]
        new_code_file: Option<PathBuf>,
    },
    /// Delete the vault record (needs the current code and --yes).
    Delete {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        code: CodeSource,
        #[arg(long)]
        yes: bool,
    },
    /// Ask the vault to mail a code to the account's address (then pass it
    /// as --mail-code within 10 minutes).
    SendCode {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
    },
    /// The fleet's status: id, key, guess limit, nodes, quorum.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

fn parse_fleet_key(s: &str) -> Result<PinnedFleetKey, VaultCmdError> {
    let text = if Path::new(s).is_file() {
        std::fs::read_to_string(s).map_err(|e| {
            VaultCmdError::NoVault(format!("cannot read the fleet key file {s}: {e}"))
        })?
    } else {
        s.to_string()
    };
    PinnedFleetKey::parse(text.trim())
        .map_err(|e| VaultCmdError::NoVault(format!("bad --fleet-key: {e}")))
}

/// The client, whether a fleet key is pinned (either mode), and the
/// over-the-air validator (for its report), if that mode was chosen.
type Client = (VaultClient, bool, Option<Arc<OtaFleetKeyValidator>>);

fn client(t: &Target, need_key: bool) -> Result<Client, Failure> {
    let url = t
        .vault
        .as_deref()
        .ok_or_else(|| VaultCmdError::NoVault("no vault URL was given".into()))?;
    let ota = ota_validator(t)?;
    let (validator, pinned): (Arc<dyn FleetKeyValidator>, bool) = match (&t.fleet_key, &ota) {
        (Some(k), Some(o)) => (Arc::new(Both(parse_fleet_key(k)?, o.clone())), true),
        (Some(k), None) => (Arc::new(parse_fleet_key(k)?), true),
        (None, Some(o)) => (o.clone(), true),
        (None, None) if need_key => {
            return Err(VaultCmdError::NoVault(
                "no fleet key (or witness and operator keys) was given".into(),
            )
            .into())
        }
        // Status without a pinned key: every key fails validation, which status reports.
        (None, None) => (Arc::new(PinnedFleetKey::new(Vec::new(), [0; 32])), false),
    };
    let mut c =
        VaultClient::http(url, validator).map_err(|e| VaultCmdError::NoVault(e.to_string()))?;
    if let Some(outbox) = &t.mail_outbox {
        let urls: Vec<String> = url.split(',').map(str::to_string).collect();
        let transport = coffer_vault_client::HttpTransport::with_urls(
            &urls,
            std::time::Duration::from_secs(30),
        )
        .map_err(|e| VaultCmdError::NoVault(e.to_string()))?;
        c = c.with_ticket_source(Arc::new(coffer_vault_client::OutboxTickets {
            transport: Arc::new(transport),
            outbox: outbox.clone(),
        }));
    }
    Ok((c, pinned, ota))
}

/// Gets the account's ticket: the code given, or (without one and without
/// an outbox) a code sent now and typed at a prompt.
async fn verify_account(c: &VaultClient, t: &Target, user: &str) -> Result<(), Failure> {
    // The fleet first: the address goes to no vault that does not verify.
    c.verify_fleet().await?;
    if let Some(code) = &t.mail_code {
        c.verify_mail_code(user, &SecretString::from(code.clone()))
            .await?;
        return Ok(());
    }
    if t.mail_outbox.is_some() {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            VaultCmdError::NoMailCode("no --mail-code and no terminal to ask on".into()).into(),
        );
    }
    c.send_mail_code(user).await?;
    eprintln!("A code was sent to {user} (valid 10 minutes).");
    let typed = Zeroizing::new(
        rpassword::prompt_password("code from the mail: ")
            .map_err(|e| VaultCmdError::NoMailCode(e.to_string()))?,
    );
    c.verify_mail_code(user, &SecretString::from(typed.to_string()))
        .await?;
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_end_matches('\r')
}

fn code_from_file(p: &Path) -> Result<SecretString, VaultCmdError> {
    let s = Zeroizing::new(
        std::fs::read_to_string(p)
            .map_err(|e| VaultCmdError::NoCode(format!("{}: {e}", p.display())))?,
    );
    nonempty(first_line(&s))
}

fn nonempty(s: &str) -> Result<SecretString, VaultCmdError> {
    if s.is_empty() {
        return Err(VaultCmdError::NoCode("the code is empty".into()));
    }
    Ok(SecretString::from(s.to_string()))
}

fn stdin_lines(n: usize) -> Result<Vec<SecretString>, VaultCmdError> {
    let mut out = Vec::new();
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    for _ in 0..n {
        let mut line = Zeroizing::new(String::new());
        lock.read_line(&mut line)
            .map_err(|e| VaultCmdError::NoCode(e.to_string()))?;
        out.push(nonempty(line.trim_end_matches(['\n', '\r']))?);
    }
    Ok(out)
}

fn prompt(label: &str) -> Result<SecretString, VaultCmdError> {
    if !std::io::stdin().is_terminal() {
        return Err(VaultCmdError::NoCode("no terminal to ask on".into()));
    }
    let typed = Zeroizing::new(
        rpassword::prompt_password(label).map_err(|e| VaultCmdError::NoCode(e.to_string()))?,
    );
    nonempty(&typed)
}

fn read_code(src: &CodeSource, label: &str) -> Result<SecretString, VaultCmdError> {
    if let Some(p) = &src.code_file {
        return code_from_file(p);
    }
    if src.code_stdin {
        return stdin_lines(1).map(|mut v| v.remove(0));
    }
    prompt(label)
}

fn new_code(src: &CodeSource, confirm: bool) -> Result<SecretString, VaultCmdError> {
    let a = prompt("new recovery code: ")?;
    if confirm {
        let b = prompt("new recovery code again: ")?;
        if a.expose_secret() != b.expose_secret() {
            return Err(VaultCmdError::NoCode("the two entries differ".into()));
        }
    }
    let _ = src;
    Ok(a)
}

fn backup_key(cli: &Cli) -> Result<SecretBox<[u8; 32]>, VaultCmdError> {
    let p = cli
        .key_file
        .as_ref()
        .ok_or_else(|| VaultCmdError::BadKey("no --key-file was given".into()))?;
    let s = Zeroizing::new(
        std::fs::read_to_string(p)
            .map_err(|e| VaultCmdError::BadKey(format!("{}: {e}", p.display())))?,
    );
    let k = RecoveryKey::parse(s.trim())
        .map_err(|e| VaultCmdError::BadKey(e.to_string()))?
        .into_master_key();
    Ok(SecretBox::new(Box::new(*k.expose_bytes())))
}

fn write_key(out: &Path, key: &SecretBox<[u8; 32]>) -> Result<(), VaultCmdError> {
    let text = MasterKey::from_bytes(*key.expose_secret())
        .recovery_key()
        .to_display_string();
    if out == Path::new("-") {
        println!("{}", *text);
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(out)
        .map_err(|e| VaultCmdError::Output(format!("{}: {e}", out.display())))?;
    f.write_all(format!("{}\n", *text).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| VaultCmdError::Output(e.to_string()))
}

fn say(cli: &Cli, json: serde_json::Value, text: String) {
    if cli.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
}

pub fn run(cli: &Cli, args: &VaultArgs) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| VaultCmdError::NoVault(format!("cannot start the runtime: {e}")))?;
    rt.block_on(run_async(cli, args))
}

async fn run_async(cli: &Cli, args: &VaultArgs) -> Result<(), Failure> {
    match &args.what {
        VaultCommand::Register { target, user, code } => {
            let (c, _, _) = client(target, true)?;
            let key = backup_key(cli)?;
            verify_account(&c, target, user).await?;
            let code = if code.code_file.is_none() && !code.code_stdin {
                new_code(code, true)?
            } else {
                read_code(code, "recovery code: ")?
            };
            c.register(user, &code, &key).await?;
            say(
                cli,
                serde_json::json!({"registered": user}),
                format!("registered the backup key of {user} in the vault"),
            );
        }
        VaultCommand::Recover {
            target,
            user,
            code,
            out,
        } => {
            let (c, _, _) = client(target, true)?;
            let code = read_code(code, "recovery code: ")?;
            verify_account(&c, target, user).await?;
            let r = c.recover(user, &code).await?;
            write_key(out, &r.key)?;
            if r.wrong_guesses > 0 {
                eprintln!(
                    "warning: {} wrong recovery code(s) were tried on this vault record since its last recovery (last at Unix time {}); if they were not yours, someone can read the account's mail: secure it and change the recovery code",
                    r.wrong_guesses,
                    r.wrong_guess_times.last().copied().unwrap_or(0)
                );
            }
            if out != Path::new("-") {
                say(
                    cli,
                    serde_json::json!({"recovered": user, "key_file": out, "wrong_guesses": r.wrong_guesses, "wrong_guess_times": r.wrong_guess_times}),
                    format!(
                        "recovered the backup key of {user}; recovery-key file written to {}",
                        out.display()
                    ),
                );
            }
        }
        VaultCommand::Change {
            target,
            user,
            code,
            new_code_file,
        } => {
            let (c, _, _) = client(target, true)?;
            let (old, new) = if code.code_stdin && new_code_file.is_none() {
                let mut v = stdin_lines(2)?;
                let new = v.remove(1);
                (v.remove(0), new)
            } else {
                let old = read_code(code, "current recovery code: ")?;
                let new = match new_code_file {
                    Some(p) => code_from_file(p)?,
                    None => new_code(code, true)?,
                };
                (old, new)
            };
            verify_account(&c, target, user).await?;
            c.change(user, &old, &new).await?;
            say(
                cli,
                serde_json::json!({"changed": user}),
                format!("changed the recovery code of {user}"),
            );
        }
        VaultCommand::Delete {
            target,
            user,
            code,
            yes,
        } => {
            if !yes {
                return Err(VaultCmdError::NotConfirmed.into());
            }
            let (c, _, _) = client(target, true)?;
            let code = read_code(code, "recovery code: ")?;
            verify_account(&c, target, user).await?;
            c.delete(user, &code).await?;
            say(
                cli,
                serde_json::json!({"deleted": user}),
                format!("deleted the vault record of {user}"),
            );
        }
        VaultCommand::SendCode { target, user } => {
            let (c, _, _) = client(target, true)?;
            c.verify_fleet().await?;
            c.send_mail_code(user).await?;
            say(
                cli,
                serde_json::json!({"code_sent": user}),
                format!("if {user} takes mail, a code is on its way (valid 10 minutes); pass it as --mail-code"),
            );
        }
        VaultCommand::Status { target } => {
            let (c, pinned, ota) = client(target, false)?;
            let s = c.status().await?;
            let report = ota.as_ref().and_then(|o| o.last_report());
            let i = &s.info;
            let key_hex: String = i
                .fleet
                .server_public_key
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let channel_hex: String = i
                .fleet
                .channel_public_key
                .as_ref()
                .map(|k| k.0.iter().map(|b| format!("{b:02x}")).collect())
                .unwrap_or_default();
            let verified = pinned && s.fleet.is_ok();
            say(
                cli,
                serde_json::json!({
                    "fleet_id": i.fleet.fleet_id,
                    "fleet_key": key_hex,
                    "channel_key": channel_hex,
                    "fleet_key_verified": verified,
                    "authenticated": s.authenticated,
                    "guess_limit": i.guess_limit,
                    "nodes": i.nodes,
                    "quorum": i.quorum,
                    "simulated_hsm": i.simulated_hsm,
                    "ksf": i.ksf,
                    "fleet_key_error": s.fleet.as_ref().err(),
                    "verification": report,
                }),
                format!(
                    "fleet {} ({} nodes{}; simulated HSMs)\nfleet key {}, channel key {} ({})\nguess limit {}\nkey stretching {}{}{}",
                    i.fleet.fleet_id,
                    i.nodes,
                    if i.quorum { ", majority up" } else { ", NO MAJORITY: unavailable" },
                    key_hex,
                    if channel_hex.is_empty() { "none (a vault older than protocol v2)" } else { &channel_hex },
                    if verified {
                        if ota.is_some() { "verified over the air" } else { "matches the pinned key" }
                    } else if pinned {
                        "NOT VERIFIED"
                    } else {
                        "not checked: no --fleet-key or --witness-key"
                    },
                    i.guess_limit,
                    i.ksf,
                    if s.authenticated {
                        "\n(answered by the HSMs through the authenticated channel)"
                    } else {
                        "\n(NOT authenticated: the host's answer, shown for diagnosis)"
                    },
                    report.as_ref().map(report_text).unwrap_or_default(),
                ),
            );
        }
    }
    Ok(())
}

fn report_text(r: &coffer_transparency::VerificationReport) -> String {
    let mut out = format!(
        "\nover-the-air verification: {} (epoch {}, log size {})",
        if r.verified {
            "VERIFIED"
        } else {
            "NOT VERIFIED"
        },
        r.epoch.map(|e| e.to_string()).unwrap_or("-".into()),
        r.log_size.map(|e| e.to_string()).unwrap_or("-".into()),
    );
    for c in &r.checks {
        let mark = match c.status {
            CheckStatus::Passed => "ok  ",
            CheckStatus::Failed => "FAIL",
            CheckStatus::Skipped => "skip",
        };
        out.push_str(&format!("\n  {mark} {:?}: {}", c.name, c.why));
        if let Some(l) = &c.audit_link {
            out.push_str(&format!(" <{l}>"));
        }
    }
    if let Some(f) = &r.freshness {
        out.push_str(&format!(
            "\n  freshness: cosigned by the quorum ({}) {} s ago, at most {} s allowed",
            f.quorum, f.age_secs, f.max_age_secs
        ));
    }
    for c in &r.cosigners {
        out.push_str(&format!(
            "\n  cosigner {}: {}{}",
            c.name,
            c.status,
            c.cosigned_at
                .map(|t| format!(" (cosigned at {t})"))
                .unwrap_or_default()
        ));
    }
    if let Some(f) = &r.fork {
        out.push_str(&format!(
            "\n  EVIDENCE ({}): the checkpoint remembered:\n{}  and the one presented now:\n{}",
            f.kind, f.remembered, f.presented
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Commands;
    use clap::Parser;

    #[test]
    fn vault_command_codes_are_documented() {
        let md = include_str!("../../../docs/errors.md");
        let missing = coffer_error::undocumented_codes(super::VAULT_CMD_ERROR_CODES, md);
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }

    /// Runs `coffer ARGS…` in-process; returns the error code, if any.
    fn coffer(args: &[&str]) -> Option<String> {
        let cli = Cli::try_parse_from(std::iter::once("coffer").chain(args.iter().copied()))
            .expect("parses");
        let Commands::Vault(a) = &cli.command else {
            panic!("not a vault command")
        };
        match run(&cli, a) {
            Ok(()) => None,
            Err(Failure::Error(r)) | Err(Failure::Damage(r)) => Some(r.code),
        }
    }

    #[test]
    fn register_recover_change_delete_and_status_against_a_loopback_vault() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let v = rt
            .block_on(coffer_vault::embedded::start_with(
                &dir.path().join("vault"),
                &coffer_vault::embedded::generate_root_key(),
                3,
                10,
            ))
            .unwrap();
        let (addr, _server) = rt.block_on(v.serve("127.0.0.1:0")).unwrap();
        let url = format!("http://{addr}");
        let fleet_key = v.pinned().pin();
        let p = |name: &str| dir.path().join(name).display().to_string();
        let master = MasterKey::generate().unwrap();
        std::fs::write(
            p("kit"),
            master.recovery_key().to_display_string().as_bytes(),
        )
        .unwrap();
        std::fs::write(p("code1"), "first code\n").unwrap();
        std::fs::write(p("code2"), "second code\n").unwrap();
        std::fs::write(p("wrong"), "not the code\n").unwrap();
        let outbox = v.outbox().display().to_string();
        let bare = ["--vault", url.as_str(), "--fleet-key", fleet_key.as_str()];
        // The demo vault's mail goes to its outbox: the CLI reads the codes.
        let t = [
            bare[0],
            bare[1],
            bare[2],
            bare[3],
            "--mail-outbox",
            outbox.as_str(),
        ];
        let cmd = |verb: &str, rest: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = vec!["vault".into(), verb.into()];
            v.extend(t.iter().map(|s| s.to_string()));
            v.extend(rest.iter().map(|s| s.to_string()));
            v
        };
        let run_cmd = |a: Vec<String>| coffer(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let with_key = |mut a: Vec<String>| {
            a.splice(0..0, ["--key-file".to_string(), p("kit")]);
            a
        };

        assert_eq!(run_cmd(cmd("status", &[])), None);
        assert_eq!(
            run_cmd(with_key(cmd(
                "register",
                &["--user", "sam", "--code-file", &p("code1")]
            ))),
            None
        );
        assert_eq!(
            run_cmd(cmd(
                "recover",
                &[
                    "--user",
                    "sam",
                    "--code-file",
                    &p("code1"),
                    "--out",
                    &p("out1")
                ]
            )),
            None
        );
        // Without a code from the mail and no terminal to ask on: refused
        // before anything about the account is sent.
        let mut a: Vec<String> = ["vault", "recover"].map(String::from).to_vec();
        a.extend(bare.iter().map(|s| s.to_string()));
        a.extend(
            [
                "--user",
                "sam",
                "--code-file",
                &p("code1"),
                "--out",
                &p("outx"),
            ]
            .map(String::from),
        );
        assert_eq!(run_cmd(a.clone()), Some("CF-V065".into()));
        // `send-code`, then the code typed as --mail-code (here read from
        // the outbox, as a person reads the mail).
        let mut send: Vec<String> = ["vault", "send-code"].map(String::from).to_vec();
        send.extend(bare.iter().map(|s| s.to_string()));
        send.extend(["--user", "Sam"].map(String::from));
        assert_eq!(run_cmd(send), None);
        let mail = coffer_vault::account::outbox_code(&v.outbox(), "sam").unwrap();
        a.extend(["--mail-code".to_string(), mail.to_string()]);
        assert_eq!(run_cmd(a.clone()), None);
        // A code is good for one ticket only.
        std::fs::remove_file(p("outx")).unwrap();
        assert_eq!(run_cmd(a), Some("CF-V026".into()));
        let back = RecoveryKey::parse(std::fs::read_to_string(p("out1")).unwrap().trim())
            .unwrap()
            .into_master_key();
        assert_eq!(
            back.expose_bytes(),
            master.expose_bytes(),
            "the recovered file is the repository's recovery key"
        );
        assert_eq!(
            run_cmd(cmd(
                "recover",
                &[
                    "--user",
                    "sam",
                    "--code-file",
                    &p("wrong"),
                    "--out",
                    &p("out2")
                ]
            ))
            .as_deref(),
            Some("CF-V010")
        );
        assert!(
            !Path::new(&p("out2")).exists(),
            "nothing written on a wrong code"
        );
        assert_eq!(
            run_cmd(cmd(
                "change",
                &[
                    "--user",
                    "sam",
                    "--code-file",
                    &p("code1"),
                    "--new-code-file",
                    &p("code2")
                ]
            )),
            None
        );
        assert_eq!(
            run_cmd(cmd(
                "recover",
                &[
                    "--user",
                    "sam",
                    "--code-file",
                    &p("code2"),
                    "--out",
                    &p("out3")
                ]
            )),
            None
        );
        assert_eq!(
            run_cmd(cmd(
                "delete",
                &["--user", "sam", "--code-file", &p("code2")]
            ))
            .as_deref(),
            Some("CF-V062")
        );
        assert_eq!(
            run_cmd(cmd(
                "delete",
                &["--user", "sam", "--code-file", &p("code2"), "--yes"]
            )),
            None
        );
        assert_eq!(
            run_cmd(cmd(
                "recover",
                &[
                    "--user",
                    "sam",
                    "--code-file",
                    &p("code2"),
                    "--out",
                    &p("out4")
                ]
            ))
            .as_deref(),
            // A deleted account answers as an unknown one (no enumeration):
            // a wrong code, never the key.
            Some("CF-V010")
        );
        // No fleet key, or another fleet's key: refused before any session.
        assert_eq!(
            coffer(&[
                "vault",
                "recover",
                "--vault",
                &url,
                "--user",
                "sam",
                "--code-file",
                &p("code2"),
                "--out",
                &p("o5")
            ])
            .as_deref(),
            Some("CF-V063")
        );
        // An old pin (the OPAQUE key alone): refused, saying what to pin now.
        let old = hex::encode(v.fleet_key());
        assert_eq!(
            coffer(&[
                "vault",
                "recover",
                "--vault",
                &url,
                "--fleet-key",
                &old,
                "--user",
                "sam",
                "--code-file",
                &p("code2"),
                "--out",
                &p("o7")
            ])
            .as_deref(),
            Some("CF-V063")
        );
        let other = format!("coffer-fleet-v2:{}:{}", "ab".repeat(32), "cd".repeat(32));
        assert_eq!(
            coffer(&[
                "vault",
                "recover",
                "--vault",
                &url,
                "--fleet-key",
                &other,
                "--user",
                "sam",
                "--code-file",
                &p("code2"),
                "--out",
                &p("o6")
            ])
            .as_deref(),
            Some("CF-V031")
        );
        // An unreachable vault is its own kind.
        let dead = format!(
            "http://127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        );
        assert_eq!(
            coffer(&["vault", "status", "--vault", &dead]).as_deref(),
            Some("CF-V030")
        );
        rt.block_on(v.shutdown());
    }
}
