//! `coffer-vault`: the vault's fleet ceremony and node runner.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_error::UserFacing;
use coffer_fleet::RaftTuning;
use coffer_vault::node::{fleet_create, run_node, CreateOptions};
use coffer_vault::ServerError;

/// The Coffer vault: a fleet of simulated HSMs behind an HTTP API.
#[derive(Parser)]
#[command(name = "coffer-vault", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the ceremony's options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// The fleet ceremony.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Runs one node (one simulated HSM) from its config file.
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs a whole fleet in this process on a data directory and serves its API.
    Embedded {
        #[arg(long)]
        data_dir: PathBuf,
        /// The root key the demo fleet's private keys are sealed under (64
        /// hex digits, mode 0600; made there if the file does not exist).
        /// A test and demo convenience: the app keeps this key in the OS
        /// keyring. It must not be inside --data-dir.
        #[arg(long)]
        root_key_file: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Writes keys and configs for N nodes (node-<id>.toml, fleet-public.json).
    Create {
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Output directory (must not already hold a fleet).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "coffer-fleet")]
        fleet_id: String,
        /// Consecutive wrong guesses that destroy a record.
        #[arg(long, default_value_t = 10)]
        guess_limit: u32,
        /// Host the nodes listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// First client API port: node i listens on base_port + i - 1.
        #[arg(long, default_value_t = 7401)]
        base_port: u16,
        /// Explicit client API ports, comma-separated (overrides --base-port).
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
        /// First fleet port (raft envelopes between the nodes, not for
        /// clients): node i listens on fleet_base_port + i - 1.
        #[arg(long, default_value_t = 7501)]
        fleet_base_port: u16,
        /// Explicit fleet ports, comma-separated (overrides --fleet-base-port).
        #[arg(long, value_delimiter = ',')]
        fleet_ports: Vec<u16>,
        /// Raft timings for nodes on one computer (short timeouts).
        #[arg(long)]
        local_timings: bool,
        /// The witness: epoch 1 is published there and the nodes relay its
        /// validation blobs (over-the-air fleet-key validation).
        #[arg(long)]
        witness: Option<String>,
        /// The operator root key file (default: make `operator-root.key` in --out).
        #[arg(long)]
        operator_key: Option<PathBuf>,
        /// The simulated HSM-vendor root key file (default: make `simulated-vendor-root.key` in --out).
        #[arg(long)]
        vendor_key: Option<PathBuf>,
        /// The SMTP server (`host:port`) the nodes' account services send
        /// codes and notices through (STARTTLS unless --smtp-tls says
        /// otherwise; written into `[account.mail]` of every node file).
        #[arg(long, conflicts_with = "mail_outbox")]
        smtp: Option<String>,
        /// `starttls` (default; the server must offer it), `tls` (SMTPS,
        /// port 465) or `none` (plain SMTP: a relay on loopback only).
        #[arg(long, requires = "smtp", default_value = "starttls")]
        smtp_tls: coffer_vault::mail::SmtpTls,
        /// The SMTP login user (with --smtp-password-file or --smtp-password-env).
        #[arg(long, requires = "smtp")]
        smtp_user: Option<String>,
        /// A file holding the SMTP password (read by each node at start;
        /// the password is never written into the node files).
        #[arg(long, requires = "smtp_user", conflicts_with = "smtp_password_env")]
        smtp_password_file: Option<String>,
        /// The name of an environment variable holding the SMTP password
        /// (read by each node at start).
        #[arg(long, requires = "smtp_user")]
        smtp_password_env: Option<String>,
        /// A PEM file of the CA that signs the SMTP server's certificate
        /// (replaces the system's roots).
        #[arg(long, requires = "smtp")]
        smtp_ca_file: Option<String>,
        /// The sender address of that mail.
        #[arg(long, default_value = "coffer-vault@localhost")]
        mail_from: String,
        /// Instead of SMTP: every node appends its mail to this file (JSON
        /// lines). Local test fleets only: whoever reads it gets tickets.
        #[arg(long)]
        mail_outbox: Option<String>,
        /// The time throttle on wrong guesses, sealed into the fleet:
        /// `default` (3:60,5:900,7:3600,9:86400), `off` (test fleets only),
        /// or `N:SECONDS,...`.
        #[arg(long, default_value = "default")]
        throttle: String,
    },
}

/// `--throttle`: `default`, `off`, or `N:SECONDS,...`.
fn parse_throttle(s: &str) -> Result<Option<Vec<(u32, u64)>>, ServerError> {
    match s.trim() {
        "default" => Ok(None),
        "off" => Ok(Some(Vec::new())),
        list => list
            .split(',')
            .map(|p| {
                let (n, d) = p.split_once(':').ok_or(())?;
                Ok((
                    n.trim().parse().map_err(|_| ())?,
                    d.trim().parse().map_err(|_| ())?,
                ))
            })
            .collect::<Result<Vec<_>, ()>>()
            .map(Some)
            .map_err(|_| {
                ServerError::Config(format!(
                    "--throttle {list:?}: expected `default`, `off` or `N:SECONDS,...`"
                ))
            }),
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn fail(e: ServerError) -> ExitCode {
    eprintln!("{}", e.report());
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    match cli.command {
        Command::Fleet {
            command:
                FleetCommand::Create {
                    nodes,
                    out,
                    fleet_id,
                    guess_limit,
                    host,
                    base_port,
                    ports,
                    fleet_base_port,
                    fleet_ports,
                    local_timings,
                    witness,
                    operator_key,
                    vendor_key,
                    smtp,
                    smtp_tls,
                    smtp_user,
                    smtp_password_file,
                    smtp_password_env,
                    smtp_ca_file,
                    mail_from,
                    mail_outbox,
                    throttle,
                },
        } => {
            let throttle = match parse_throttle(&throttle) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            // Files named on the command line: absolute in the node files
            // (which resolve relative paths against their own folder).
            let abs = |p: Option<String>| {
                p.map(|p| {
                    std::path::absolute(&p)
                        .map(|a| a.display().to_string())
                        .unwrap_or(p)
                })
            };
            let (smtp_password_file, smtp_ca_file) = (abs(smtp_password_file), abs(smtp_ca_file));
            let mail = match (smtp, mail_outbox) {
                (None, None) => None,
                (smtp, outbox) => Some(coffer_vault::account::MailConfig {
                    smtp,
                    smtp_tls,
                    smtp_user,
                    smtp_password_file,
                    smtp_password_env,
                    smtp_ca_file,
                    from: mail_from,
                    outbox,
                }),
            };
            let pick = |given: Vec<u16>, base: u16| -> Vec<u16> {
                if given.is_empty() {
                    (0..nodes as u16).map(|i| base.saturating_add(i)).collect()
                } else {
                    given
                }
            };
            let ports = pick(ports, base_port);
            let fleet_ports = pick(fleet_ports, fleet_base_port);
            let opts = CreateOptions {
                nodes,
                fleet_id,
                guess_limit,
                addrs: ports.iter().map(|p| format!("{host}:{p}")).collect(),
                fleet_addrs: fleet_ports.iter().map(|p| format!("{host}:{p}")).collect(),
                limits: Default::default(),
                tuning: if local_timings {
                    RaftTuning::local()
                } else {
                    RaftTuning::default()
                },
                witness_url: witness.clone(),
                operator_key,
                vendor_key,
                mail,
                throttle,
            };
            match fleet_create(&out, &opts) {
                Ok(public) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&public).unwrap_or_default()
                    );
                    eprintln!(
                        "deployment evidence: {}",
                        out.join(coffer_vault::ceremony::EVIDENCE_FILE).display()
                    );
                    if let Some(url) = witness {
                        match coffer_vault::node::publish_first_epoch(&out, &opts, &url).await {
                            Ok(Some(link)) => eprintln!("published epoch 1: {link}"),
                            Ok(None) => {
                                eprintln!("the witness already has an epoch; nothing published")
                            }
                            Err(e) => return fail(e),
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Node { config } => match run_node(&config).await {
            Ok(node) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {
                        tracing::info!("stopping");
                        node.shutdown().await;
                    }
                    _ = wait_term() => {
                        tracing::info!("stopping");
                        node.shutdown().await;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Embedded {
            data_dir,
            root_key_file,
            listen,
            nodes,
        } => {
            let root = match coffer_vault::demo_keys::read_or_create_root_key_file(
                &root_key_file,
                &data_dir,
            ) {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            let v = match coffer_vault::embedded::start_with(
                &data_dir,
                &root,
                nodes,
                coffer_hsm::DEFAULT_GUESS_LIMIT,
            )
            .await
            {
                Ok(v) => v,
                Err(e) => return fail(e),
            };
            match v.serve(&listen).await {
                Ok((addr, task)) => {
                    let term = wait_term();
                    println!(
                        "{}",
                        serde_json::json!({
                            "url": format!("http://{addr}"),
                            "fleet_key": v.pinned().pin(),
                            "opaque_key": hex::encode(v.fleet_key()),
                            "channel_key": hex::encode(v.channel_key()),
                            "simulated_hsm": true,
                            "witness_url": v.witness_url(),
                            "witness_key": v.witness_key().to_string(),
                            "operator_key": v.operator_key().to_string(),
                            "vendor_root": v.vendor_root().to_string(),
                            "evidence_url": v.evidence_url(),
                            "demo_keys": true,
                            // Where the demo account service's mail goes
                            // (codes for `coffer vault --mail-outbox`).
                            "outbox": v.outbox(),
                        })
                    );
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term => {}
                        _ = task => {}
                    }
                    v.shutdown().await;
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// Waits for SIGTERM. The handler is installed when this is called (not
/// when the future is first polled), so a SIGTERM sent as soon as the
/// process said it is ready is never taken by the default action.
fn wait_term() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut s) = term {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
