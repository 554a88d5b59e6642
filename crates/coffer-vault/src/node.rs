//! The fleet ceremony (`fleet create`) and one node process (`node --config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use coffer_fleet::http::{fleet_router, HttpTransport, NodeSlot};
use coffer_fleet::{FleetNode, FleetSetup, NodeConfig, RaftTuning, Replicator, Transport};
use coffer_hsm::{Hsm, HsmConfig, HsmSecrets, HsmState, Sealer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::account::{AccountService, MailConfig};
use crate::api::{self, HsmSlot};
use crate::limits::{self, Limits};
use crate::ServerError;
use coffer_vault_proto::account::TicketSigner;

/// One node's config file (TOML). It holds the simulated HSM's internal keys:
/// written mode 0600, never logged.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// The node's data directory (relative paths are relative to the file).
    pub data_dir: String,
    /// `host:port` the client API listens on. The fleet's envelopes have a
    /// listener of their own, `fleet.addr`, which clients need not reach.
    pub listen: String,
    /// The client API's load and abuse limits (every field optional; see
    /// [`Limits`]). The fleet listener takes its timeouts from here.
    #[serde(default)]
    pub limits: Limits,
    /// The fleet's HSM secrets (OPAQUE setup, state-sealing key, guess limit)
    /// sealed under this node's sealing key, base64.
    pub hsm_secrets: String,
    /// The replication config (ids, link keys, sealing key, peers, timings).
    pub fleet: NodeConfig,
    /// The witness whose validation blob this node relays in `status`
    /// answers (over-the-air fleet-key validation); none: no blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_url: Option<String>,
    /// The host's account service (`[account]`): the ticket key, and where
    /// its mail goes. Without `mail` no address can be verified (`CF-V027`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountFile>,
}

/// `[account]` of a node file: the host's account service.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    /// The ticket key's 32-byte seed, hex (the host's secret: whoever holds
    /// it can issue tickets; the HSMs hold its public half).
    pub ticket_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailConfig>,
}

impl Drop for AccountFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.ticket_key);
    }
}

/// What `fleet create` publishes: no secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FleetPublic {
    pub fleet_id: String,
    /// What clients pin (`coffer vault --fleet-key`): both keys below in
    /// one string, `coffer-fleet-v2:<OPAQUE key hex>:<channel key hex>`.
    pub fleet_key: String,
    /// The OPAQUE server public key, hex.
    pub opaque_key: String,
    /// The channel's static public key (X25519), hex.
    pub channel_key: String,
    pub guess_limit: u32,
    /// The nodes' client URLs, in node-id order.
    pub urls: Vec<String>,
    pub simulated_hsm: bool,
}

/// Options of the ceremony.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub nodes: usize,
    pub fleet_id: String,
    pub guess_limit: u32,
    /// `host:port` per node: its client API.
    pub addrs: Vec<String>,
    /// `host:port` per node: its fleet listener (raft envelopes between the
    /// nodes only).
    pub fleet_addrs: Vec<String>,
    /// The limits written into every node file.
    pub limits: Limits,
    pub tuning: RaftTuning,
    /// The witness the nodes relay validation blobs from (written into each
    /// node file); the caller publishes epoch 1 there ([`publish_first_epoch`]).
    pub witness_url: Option<String>,
    /// The operator root key file; none: `operator-root.key` is made in the
    /// output directory (a test/demo root, not an offline key).
    pub operator_key: Option<PathBuf>,
    /// The simulated HSM-vendor root key file; none: `simulated-vendor-root.key`
    /// is made in the output directory.
    pub vendor_key: Option<PathBuf>,
    /// Where the nodes' account services send mail (written into each node
    /// file; none: the operator adds `[account.mail]` later).
    pub mail: Option<MailConfig>,
    /// The time throttle on wrong guesses, sealed into the fleet secrets
    /// (none: [`coffer_hsm::THROTTLE_SCHEDULE`]; empty: off, for tests).
    pub throttle: Option<Vec<(u32, u64)>>,
}

/// The operator root made by `fleet create` when none is given.
pub const DEFAULT_OPERATOR_KEY: &str = "operator-root.key";
/// The simulated vendor root made by `fleet create` when none is given.
pub const DEFAULT_VENDOR_KEY: &str = "simulated-vendor-root.key";

/// The operator root key of `opts` (made in `out` if none was given).
pub fn operator_signer(
    out: &Path,
    opts: &CreateOptions,
) -> Result<coffer_transparency::NoteSigner, ServerError> {
    match &opts.operator_key {
        Some(p) => {
            coffer_witness::keys::read_signer(p).map_err(|e| ServerError::Config(e.to_string()))
        }
        None => crate::ceremony::load_or_create_key(
            &out.join(DEFAULT_OPERATOR_KEY),
            "coffer-operator-root",
        ),
    }
}

/// Publishes the fleet keys `fleet create` wrote in `out` as epoch 1 through
/// `witness_url` (nothing if the witness already has an epoch). Returns the
/// entry's audit link.
pub async fn publish_first_epoch(
    out: &Path,
    opts: &CreateOptions,
    witness_url: &str,
) -> Result<Option<String>, ServerError> {
    let operator = operator_signer(out, opts)?;
    let ev = crate::ceremony::read_evidence(&out.join(crate::ceremony::EVIDENCE_FILE))?;
    let keys = ev
        .fleet_keys()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    crate::ceremony::publish_first(witness_url, &operator, &keys).await
}

fn device_sealer(c: &NodeConfig) -> Sealer {
    let mut k = [0u8; 64];
    k.copy_from_slice(c.sealing_key.expose());
    Sealer::new(k.into())
}

/// Runs the (simulated) ceremony: writes `node-<id>.toml` per node,
/// `fleet-public.json`, `deployment-evidence.json` and `fleet-keys.json`
/// (public), and the HSM identity keys under `hsm-identities/` (0600) into
/// `out`. Fails if `out` already holds a fleet.
pub fn fleet_create(out: &Path, opts: &CreateOptions) -> Result<FleetPublic, ServerError> {
    if opts.addrs.len() != opts.nodes || opts.fleet_addrs.len() != opts.nodes {
        return Err(ServerError::Config(format!(
            "{} client and {} fleet addresses for {} nodes",
            opts.addrs.len(),
            opts.fleet_addrs.len(),
            opts.nodes
        )));
    }
    if let Some(a) = opts.addrs.iter().find(|a| opts.fleet_addrs.contains(a)) {
        return Err(ServerError::Config(format!(
            "{a} is both a client and a fleet address: the fleet listener needs a port of its own"
        )));
    }
    opts.limits.validate()?;
    std::fs::create_dir_all(out).map_err(|e| ServerError::Io(format!("{}: {e}", out.display())))?;
    if out.join("fleet-public.json").exists() {
        return Err(ServerError::Config(format!(
            "{} already holds a fleet",
            out.display()
        )));
    }
    if let Some(mail) = &opts.mail {
        if let Some(smtp) = &mail.smtp {
            crate::mail::check_settings(smtp, mail)?;
        }
    }
    let mut secrets = HsmSecrets::generate(&opts.fleet_id, opts.guess_limit)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    // The account service's ticket key: its public half sealed into the
    // HSMs' secrets, its seed into every node file (the hosts').
    let ticket = TicketSigner::generate();
    secrets
        .set_ticket_key(ticket.public())
        .map_err(|e| ServerError::Config(e.to_string()))?;
    if let Some(t) = &opts.throttle {
        secrets
            .set_throttle_schedule(t.clone())
            .map_err(|e| ServerError::Config(e.to_string()))?;
    }
    let mut configs = FleetSetup::create(opts.nodes, &opts.fleet_id, opts.tuning.clone())
        .map_err(|e| ServerError::Config(e.to_string()))?;
    for c in &mut configs {
        for (i, a) in opts.fleet_addrs.iter().enumerate() {
            c.set_addr(i as u64 + 1, a);
        }
    }
    // The deployment ceremony: HSM identities attested by the vendor root,
    // key-generation proofs over the fleet keys, operator-signed evidence.
    let operator = operator_signer(out, opts)?;
    let vendor = coffer_transparency::evidence::SimulatedVendor::new(match &opts.vendor_key {
        Some(p) => {
            coffer_witness::keys::read_signer(p).map_err(|e| ServerError::Config(e.to_string()))?
        }
        None => crate::ceremony::load_or_create_key(
            &out.join(DEFAULT_VENDOR_KEY),
            "coffer-simulated-hsm-vendor",
        )?,
    });
    let channel_key = secrets
        .channel_public_key()
        .ok_or_else(|| ServerError::Config("new fleet secrets without a channel key".into()))?;
    let ceremony = crate::ceremony::run(
        &opts.fleet_id,
        &secrets.server_public_key(),
        &channel_key,
        opts.nodes,
        &vendor,
        &operator,
        coffer_witness::unix_now(),
        crate::ceremony::DEFAULT_VALID_DAYS,
    )?;
    crate::ceremony::write(&ceremony, out, &out.join("hsm-identities"))?;
    for c in configs {
        let sealed = secrets.seal_under(&device_sealer(&c));
        let file = NodeFile {
            data_dir: format!("node-{}", c.node_id),
            listen: opts.addrs[c.node_id as usize - 1].clone(),
            limits: opts.limits.clone(),
            hsm_secrets: base64::engine::general_purpose::STANDARD.encode(sealed),
            fleet: c,
            witness_url: opts.witness_url.clone(),
            account: Some(AccountFile {
                ticket_key: hex::encode(*ticket.seed()),
                mail: opts.mail.clone(),
            }),
        };
        let text =
            Zeroizing::new(toml::to_string(&file).map_err(|e| ServerError::Config(e.to_string()))?);
        let header = "# coffer-vault node config. It holds this simulated HSM's internal keys: keep it private (0600).\n";
        write_private(
            &out.join(format!("node-{}.toml", file.fleet.node_id)),
            Zeroizing::new(format!("{header}{}", *text)).as_bytes(),
        )?;
    }
    let public = FleetPublic {
        fleet_id: opts.fleet_id.clone(),
        fleet_key: coffer_vault_client::PinnedFleetKey::new(
            secrets.server_public_key(),
            channel_key,
        )
        .pin(),
        opaque_key: hex::encode(secrets.server_public_key()),
        channel_key: hex::encode(channel_key),
        guess_limit: opts.guess_limit,
        urls: opts.addrs.iter().map(|a| format!("http://{a}")).collect(),
        simulated_hsm: true,
    };
    let json =
        serde_json::to_string_pretty(&public).map_err(|e| ServerError::Config(e.to_string()))?;
    std::fs::write(out.join("fleet-public.json"), json)
        .map_err(|e| ServerError::Io(e.to_string()))?;
    Ok(public)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    coffer_fleet::config::write_private(path, bytes)
        .map_err(|e| ServerError::Io(format!("{}: {e}", path.display())))
}

/// A node config file, parsed and opened.
pub struct LoadedNode {
    pub config: NodeConfig,
    /// The client API's address.
    pub listen: String,
    pub limits: Limits,
    pub witness_url: Option<String>,
    pub data_dir: PathBuf,
    /// The HSM's rollback counter: beside the node file (the HSM's side),
    /// not in the data directory (the host's disk).
    pub nvram: PathBuf,
    pub secrets: Arc<HsmSecrets>,
    /// The host's account service, if the file configures its mail.
    pub accounts: Option<Arc<AccountService>>,
}

/// Reads and opens a node config file.
pub fn load_node(path: &Path) -> Result<LoadedNode, ServerError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?,
    );
    let file: NodeFile = toml::from_str(&text)
        .map_err(|e| ServerError::Config(format!("{}: {}", path.display(), e.message())))?;
    file.fleet
        .validate()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    file.limits
        .validate()
        .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
    if file.listen == file.fleet.addr {
        return Err(ServerError::Config(format!(
            "{}: `listen` and `fleet.addr` must differ: the fleet listener needs a port of its own",
            path.display()
        )));
    }
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(file.hsm_secrets.trim())
        .map_err(|_| ServerError::Config("hsm_secrets is not base64".into()))?;
    let secrets = HsmSecrets::open_under(&device_sealer(&file.fleet), &sealed)
        .map_err(|e| ServerError::Hsm(e.to_string()))?;
    if secrets.fleet_id() != file.fleet.fleet_id {
        return Err(ServerError::Config(
            "the HSM secrets belong to another fleet".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let accounts = match &file.account {
        Some(AccountFile {
            ticket_key,
            mail: Some(mail),
        }) => {
            let seed = Zeroizing::new(
                hex::decode(ticket_key.trim())
                    .map_err(|_| ServerError::Config("account.ticket_key is not hex".into()))?,
            );
            let seed: Zeroizing<[u8; 32]> =
                Zeroizing::new(seed.as_slice().try_into().map_err(|_| {
                    ServerError::Config("account.ticket_key is not 32 bytes".into())
                })?);
            let signer = TicketSigner::from_seed(&seed);
            if secrets.ticket_key() != Some(signer.public()) {
                return Err(ServerError::Config(
                    "account.ticket_key is not the key the fleet's HSMs hold".into(),
                ));
            }
            Some(Arc::new(AccountService::new(
                &file.fleet.fleet_id,
                signer,
                mail,
                base,
            )?))
        }
        _ => None,
    };
    let dd = Path::new(&file.data_dir);
    let data_dir = if dd.is_absolute() {
        dd.to_path_buf()
    } else {
        base.join(dd)
    };
    Ok(LoadedNode {
        listen: file.listen.clone(),
        limits: file.limits.clone(),
        witness_url: file.witness_url.clone(),
        config: file.fleet.clone(),
        data_dir,
        nvram: path.with_extension("nvram"),
        secrets: Arc::new(secrets),
        accounts,
    })
}

/// A running node: the client API's and the fleet's HTTP listeners and the
/// fleet replica.
pub struct RunningNode {
    /// The client API's address.
    pub addr: SocketAddr,
    /// The fleet listener's address.
    pub fleet_addr: SocketAddr,
    pub node: Arc<FleetNode>,
    pub hsm: Arc<Hsm>,
    server: tokio::task::JoinHandle<()>,
    fleet_server: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    /// Waits until the HTTP server stops (it normally runs until killed).
    pub async fn wait(self) {
        let _ = self.server.await;
    }

    pub async fn shutdown(self) {
        self.server.abort();
        self.fleet_server.abort();
        self.node.shutdown().await;
    }
}

/// Starts the node described by `path`.
pub async fn run_node(path: &Path) -> Result<RunningNode, ServerError> {
    let loaded = load_node(path)?;
    let nodes = loaded.config.members().len() as u32;
    let bind = |a: String| async move {
        let l = tokio::net::TcpListener::bind(&a)
            .await
            .map_err(|e| ServerError::Io(format!("cannot listen on {a}: {e}")))?;
        let at = l.local_addr().map_err(|e| ServerError::Io(e.to_string()))?;
        Ok::<_, ServerError>((l, at))
    };
    let (listener, addr) = bind(loaded.listen.clone()).await?;
    let (fleet_listener, fleet_addr) = bind(loaded.config.addr.clone()).await?;
    let mut client_limits = loaded.limits.clone();
    let mut fleet_limits = Limits::fleet(nodes as usize, &client_limits);
    limits::fit_open_files(
        limits::raise_open_files_limit(),
        &mut [&mut client_limits, &mut fleet_limits],
    );
    let fleet_slot = NodeSlot::default();
    let hsm_slot: HsmSlot = Default::default();
    let source: Option<Arc<dyn crate::relay::BundleSource>> = match &loaded.witness_url {
        Some(u) => Some(Arc::new(crate::relay::WitnessSource::new(u)?)),
        None => None,
    };
    let server = limits::serve(
        listener,
        api::router_full(hsm_slot.clone(), source, loaded.accounts.clone()),
        client_limits,
    );
    let fleet_server = limits::serve(
        fleet_listener,
        fleet_router(fleet_slot.clone()),
        fleet_limits,
    );
    std::fs::create_dir_all(&loaded.data_dir)
        .map_err(|e| ServerError::Io(format!("{}: {e}", loaded.data_dir.display())))?;
    let transport: Arc<dyn Transport> =
        Arc::new(HttpTransport::new(&loaded.config).map_err(|e| ServerError::Hsm(e.to_string()))?);
    let node = FleetNode::start(
        loaded.config.clone(),
        &loaded.data_dir,
        &loaded.nvram,
        Box::new(HsmState::new(loaded.secrets.clone())),
        transport,
    )
    .await?;
    *fleet_slot.write().await = Some(node.clone());
    let replicator: Arc<dyn Replicator> = node.clone();
    let hsm = Arc::new(Hsm::new(
        loaded.secrets.clone(),
        replicator,
        HsmConfig {
            nodes,
            validation_bundle: None,
        },
    ));
    match &loaded.accounts {
        Some(a) => {
            hsm.set_notice_sink(a.clone(), coffer_hsm::SETTLE_AFTER);
            // The SMTP server is checked (TLS, login) at start, so a wrong
            // password or a server without TLS is in the log before the
            // first code is asked for; the node serves either way.
            let a = a.clone();
            tokio::spawn(async move { a.log_mail_check().await });
        }
        None => tracing::warn!(
            node = loaded.config.node_id,
            "no [account.mail] in the node file: no address can be verified, so every account request is refused"
        ),
    }
    *hsm_slot.write().await = Some(hsm.clone());
    if hsm.channel_public_key().is_none() {
        tracing::warn!(
            node = loaded.config.node_id,
            "this fleet has no channel key (made before vault protocol v2): every account request is refused; make a new fleet"
        );
    }
    tracing::info!(node = loaded.config.node_id, fleet = %loaded.config.fleet_id, %addr, %fleet_addr, "vault node serving");
    Ok(RunningNode {
        addr,
        fleet_addr,
        node,
        hsm,
        server,
        fleet_server,
    })
}
