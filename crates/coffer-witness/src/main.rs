//! `coffer-witness`: the independent witness service and the operator's tools.
//!
//! ```text
//! coffer-witness init --data-dir D --origin witness.example/log --operator-key KEY
//! coffer-witness serve --data-dir D --listen 127.0.0.1:7300 [--public-url URL]
//! coffer-witness keygen --name operator.example --out operator.key
//! coffer-witness ceremony --fleet-id F --opaque-server-key B64 --vendor-key V --operator-key O --out evidence.json ...
//! coffer-witness publish --witness URL --operator-key O --fleet-keys fleet-keys.json --epoch N
//! coffer-witness cosigner init --data-dir C --name cosigner.example/w1 --log-key LOGKEY
//! coffer-witness cosigner serve --data-dir C --listen 127.0.0.1:7310
//! ```
//!
//! `serve --policy FILE` reads a trust policy (C2SP tlog-policy plus
//! `max-age`) listing this log and its cosigners with their URLs; the log
//! then asks them to cosign every new checkpoint and, every
//! `--cosign-interval` seconds, the unchanged one again (freshness).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use coffer_error::UserFacing;
use coffer_transparency::bundle::{b64, FleetKey, FleetKeys, KeyRole, NAMESPACE};
use coffer_transparency::evidence::{run_ceremony, CeremonyHsm, SimulatedVendor};
use coffer_transparency::NoteSigner;
use coffer_witness::keys::{read_signer, read_verifier, write_signer};
use coffer_witness::store::Store;
use coffer_witness::{unix_now, WitnessError};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "coffer-witness",
    version,
    about = "The Coffer witness: signs fleet-key bundles once per epoch and keeps a public append-only log"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the witness key (0600) and its empty log in a data directory.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The log origin, also the witness key's name (e.g. `witness.example/log`).
        #[arg(long)]
        origin: String,
        /// The operator root's verifier key (string or file): only it may submit.
        #[arg(long)]
        operator_key: String,
    },
    /// Serve the HTTP API.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7300")]
        listen: String,
        /// The URL clients reach this witness at (for audit links); default http://LISTEN.
        #[arg(long)]
        public_url: Option<String>,
        /// The trust policy (tlog-policy + max-age) naming the cosigners to
        /// ask, with their URLs; the same file clients pin.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Seconds between cosigning rounds of an unchanged checkpoint.
        #[arg(long, default_value_t = 300)]
        cosign_interval: u64,
    },
    /// A cosigning witness (C2SP tlog-witness) with its own key and state.
    Cosigner {
        #[command(subcommand)]
        cmd: CosignerCmd,
    },
    /// Create a signing key (the operator root or the simulated HSM vendor root).
    Keygen {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// The fleet deployment ceremony with simulated HSMs: identity keys
    /// attested by the vendor root, key-generation proofs, operator-signed evidence.
    Ceremony {
        #[arg(long)]
        fleet_id: String,
        /// Base64 of each OPAQUE server public key generated in the HSMs (repeatable).
        #[arg(long, required = true)]
        opaque_server_key: Vec<String>,
        /// Base64 of the fleet's channel key (X25519, the static key of the
        /// client-to-HSM channel of vault protocol v2). Without it, clients
        /// open no session with the fleet.
        #[arg(long)]
        channel_key: Option<String>,
        /// Number of simulated HSMs.
        #[arg(long, default_value_t = 5)]
        hsms: usize,
        /// Hex SHA-256 of the HSM program.
        #[arg(long)]
        measurement: String,
        #[arg(long)]
        vendor_key: PathBuf,
        #[arg(long)]
        operator_key: PathBuf,
        /// Validity of the fleet keys from now, in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
        /// Where the simulated HSMs' identity keys are written (0600 each).
        #[arg(long)]
        hsm_keys_dir: PathBuf,
        /// The deployment evidence document.
        #[arg(long)]
        out: PathBuf,
        /// The fleet-key artifact (canonical JSON), for `publish`.
        #[arg(long)]
        fleet_keys_out: PathBuf,
        /// Publish the first bundle (epoch 1) through this witness.
        #[arg(long)]
        publish_to: Option<String>,
    },
    /// Publish fleet keys as a new epoch through the witness and countersign it.
    Publish {
        #[arg(long)]
        witness: String,
        #[arg(long)]
        operator_key: PathBuf,
        #[arg(long)]
        fleet_keys: PathBuf,
        #[arg(long)]
        epoch: u64,
    },
}

#[derive(Subcommand)]
enum CosignerCmd {
    /// Create the cosigner key (0600, signature type 0x04) and its state.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The cosigner's name (a schema-less URL, e.g. `cosigner.example/w1`).
        #[arg(long)]
        name: String,
        /// A log's verifier key (string or file) it cosigns for (repeatable).
        #[arg(long, required = true)]
        log_key: Vec<String>,
    },
    /// Serve `POST /add-checkpoint` and `GET /evidence`.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7310")]
        listen: String,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cli)) {
        let r = e.report();
        eprintln!("{r}");
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        std::process::exit(1);
    }
}

fn data_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("witness.key"),
        dir.join("operator.pub"),
        dir.join("witness.db"),
    )
}

async fn run(cli: Cli) -> Result<(), WitnessError> {
    match cli.cmd {
        Cmd::Init {
            data_dir,
            origin,
            operator_key,
        } => {
            let operator = read_verifier(&operator_key)?;
            create_private_dir(&data_dir)?;
            let (key, op, db) = data_paths(&data_dir);
            let signer =
                NoteSigner::generate(&origin).map_err(|e| WitnessError::KeyFile(e.to_string()))?;
            write_signer(&key, &signer)?;
            std::fs::write(&op, format!("{operator}\n"))
                .map_err(|e| WitnessError::KeyFile(e.to_string()))?;
            Store::open(&db, signer, operator, "http://localhost")?;
            println!(
                "{}",
                read_verifier(key.with_extension("key.pub").to_str().unwrap_or_default())?
            );
            Ok(())
        }
        Cmd::Cosigner {
            cmd:
                CosignerCmd::Init {
                    data_dir,
                    name,
                    log_key,
                },
        } => {
            let logs = log_key
                .iter()
                .map(|k| read_verifier(k))
                .collect::<Result<Vec<_>, _>>()?;
            create_private_dir(&data_dir)?;
            let signer = NoteSigner::generate_cosigner(&name)
                .map_err(|e| WitnessError::KeyFile(e.to_string()))?;
            write_signer(&data_dir.join("cosigner.key"), &signer)?;
            let text: String = logs.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(data_dir.join("logs.txt"), text)
                .map_err(|e| WitnessError::KeyFile(e.to_string()))?;
            coffer_witness::cosigner::Cosigner::open(&data_dir.join("cosigner.db"), signer, logs)?;
            println!(
                "{}",
                read_verifier(
                    data_dir
                        .join("cosigner.key.pub")
                        .to_str()
                        .unwrap_or_default()
                )?
            );
            Ok(())
        }
        Cmd::Cosigner {
            cmd: CosignerCmd::Serve { data_dir, listen },
        } => {
            let signer = read_signer(&data_dir.join("cosigner.key"))?;
            let logs_text = std::fs::read_to_string(data_dir.join("logs.txt"))
                .map_err(|e| WitnessError::KeyFile(format!("logs.txt: {e}")))?;
            let logs = logs_text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(read_verifier)
                .collect::<Result<Vec<_>, _>>()?;
            let c = coffer_witness::cosigner::Cosigner::open(
                &data_dir.join("cosigner.db"),
                signer,
                logs,
            )?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| WitnessError::BadRequest(format!("cannot listen on {listen}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| WitnessError::Storage(e.to_string()))?;
            tracing::info!(%addr, cosigner = %c.key(), "cosigner serving");
            println!("listening on http://{addr}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            axum::serve(listener, coffer_witness::cosigner::router(c))
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| WitnessError::Storage(e.to_string()))
        }
        Cmd::Serve {
            data_dir,
            listen,
            public_url,
            policy,
            cosign_interval,
        } => {
            let (key, op, db) = data_paths(&data_dir);
            let signer = read_signer(&key)?;
            let operator = read_verifier(op.to_str().unwrap_or_default())?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| WitnessError::BadRequest(format!("cannot listen on {listen}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| WitnessError::Storage(e.to_string()))?;
            let url = public_url.unwrap_or_else(|| format!("http://{addr}"));
            let store = Store::open(&db, signer, operator, &url)?;
            let size = store.self_check()?;
            let cosigning = match &policy {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", p.display())))?;
                    let policy = coffer_transparency::Policy::parse(&text)
                        .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
                    Some(std::sync::Arc::new(
                        coffer_witness::cosigning::Cosigning::new(policy, store.witness_key())?,
                    ))
                }
                None => None,
            };
            tracing::info!(%addr, size, witness_key = %store.witness_key(), "witness serving");
            let (app, shared) = coffer_witness::server::router_parts(store, cosigning.clone());
            let rounds = cosigning.map(|c| {
                coffer_witness::cosigning::spawn_loop(
                    shared,
                    c,
                    std::time::Duration::from_secs(cosign_interval.max(1)),
                )
            });
            println!("listening on http://{addr}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| WitnessError::Storage(e.to_string()));
            if let Some(t) = rounds {
                t.abort();
            }
            r
        }
        Cmd::Keygen { name, out } => {
            let s =
                NoteSigner::generate(&name).map_err(|e| WitnessError::KeyFile(e.to_string()))?;
            write_signer(&out, &s)?;
            println!("{}", s.verifier());
            Ok(())
        }
        Cmd::Ceremony {
            fleet_id,
            opaque_server_key,
            channel_key,
            hsms,
            measurement,
            vendor_key,
            operator_key,
            valid_days,
            hsm_keys_dir,
            out,
            fleet_keys_out,
            publish_to,
        } => {
            let vendor = SimulatedVendor::new(read_signer(&vendor_key)?);
            let operator = read_signer(&operator_key)?;
            let m: [u8; 32] = hex::decode(&measurement)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| {
                    WitnessError::BadRequest("--measurement must be 64 hex digits".into())
                })?;
            if hsms == 0 || hsms > 64 {
                return Err(WitnessError::BadRequest("--hsms must be 1..=64".into()));
            }
            create_private_dir(&hsm_keys_dir)?;
            let now = unix_now();
            let not_after = now + valid_days * 86_400;
            let mut ids = Vec::new();
            let mut signers = Vec::new();
            for i in 1..=hsms {
                let id = format!("hsm-{i}");
                let s =
                    NoteSigner::generate(&id).map_err(|e| WitnessError::KeyFile(e.to_string()))?;
                write_signer(&hsm_keys_dir.join(format!("{id}.key")), &s)?;
                ids.push(id);
                signers.push(s);
            }
            let mut keys = Vec::new();
            for (i, k) in opaque_server_key.iter().enumerate() {
                keys.push(FleetKey {
                    algorithm: "ristretto255".into(),
                    id: format!("opaque-{}", i + 1),
                    not_after,
                    not_before: now,
                    public_key: k.clone(),
                    role: KeyRole::OpaqueServer,
                });
            }
            if let Some(k) = channel_key {
                keys.push(FleetKey {
                    algorithm: "x25519".into(),
                    id: "channel-1".into(),
                    not_after,
                    not_before: now,
                    public_key: k,
                    role: KeyRole::Channel,
                });
            }
            for (id, s) in ids.iter().zip(&signers) {
                keys.push(FleetKey {
                    algorithm: "ed25519".into(),
                    id: id.clone(),
                    not_after,
                    not_before: now,
                    public_key: b64(&s.verifier().public_key()),
                    role: KeyRole::HsmIdentity,
                });
            }
            let fleet = FleetKeys { fleet_id, keys };
            // Validate (canonical form, key sizes) before signing anything.
            FleetKeys::parse_canonical(&fleet.to_canonical_json())
                .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
            let parts: Vec<CeremonyHsm<'_>> = ids
                .iter()
                .zip(&signers)
                .map(|(id, s)| CeremonyHsm {
                    hsm_id: id,
                    identity: s,
                    vendor_attestation: vendor.attest(id, &s.verifier().public_key(), &m),
                })
                .collect();
            let doc = run_ceremony(&fleet, &m, &parts, &vendor.root(), &operator, now);
            write_new(
                &out,
                &serde_json::to_string_pretty(&doc).unwrap_or_default(),
            )?;
            write_new(&fleet_keys_out, &fleet.to_canonical_json())?;
            println!("deployment evidence: {}", out.display());
            if let Some(url) = publish_to {
                let c = coffer_witness::client::WitnessClient::new(&url)?;
                let (r, _) = c.publish(&operator, NAMESPACE, 1, &fleet).await?;
                println!("published epoch 1: {}", r.entry_url);
            }
            Ok(())
        }
        Cmd::Publish {
            witness,
            operator_key,
            fleet_keys,
            epoch,
        } => {
            let operator = read_signer(&operator_key)?;
            let text = std::fs::read_to_string(&fleet_keys)
                .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", fleet_keys.display())))?;
            let keys = FleetKeys::parse_canonical(text.trim_end())
                .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
            let c = coffer_witness::client::WitnessClient::new(&witness)?;
            let (r, bundle) = c.publish(&operator, NAMESPACE, epoch, &keys).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&bundle).unwrap_or_default()
            );
            eprintln!("published epoch {epoch}: {}", r.entry_url);
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("witness stopping");
}

fn create_private_dir(dir: &Path) -> Result<(), WitnessError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<(), WitnessError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                WitnessError::AlreadyExists(path.display().to_string())
            } else {
                WitnessError::KeyFile(format!("{}: {e}", path.display()))
            }
        })?;
    use std::io::Write;
    f.write_all(text.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", path.display())))
}
