//! The embedded default: a whole fleet in this process, on one data
//! directory, for the app's local demo fleet ("clearly labelled": its status
//! says `simulated_hsm` and its fleet id starts with `local-`).
//!
//! It runs its own witness too (the witness's HTTP API on a loopback port,
//! its own key and SQLite log under `witness/`), with **demo** operator and
//! HSM-vendor root keys generated on first start (`demo-operator-root.key`,
//! `demo-vendor-root.key`, mode 0600). On first start the deployment
//! ceremony runs (see [`crate::ceremony`]), `deployment-evidence.json` is
//! written and the fleet keys are published as epoch 1. Status answers carry
//! the witness's validation blob, so clients can validate over the air
//! ([`EmbeddedVault::ota_client`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use coffer_fleet::inprocess::FLEET_FILE;
use coffer_fleet::{BoxFuture, InProcessFleet, NodeConfig, ReplicationError, Replicator};
use coffer_hsm::{Hsm, HsmConfig, HsmSecrets, HsmState, Sealer, DEFAULT_GUESS_LIMIT};
use coffer_transparency::evidence::SimulatedVendor;
use coffer_transparency::{
    DeploymentEvidence, FleetKeys, NoteSigner, NoteVerifier, VerificationReport, Verifier,
};
use coffer_vault_client::{
    OtaFleetKeyValidator, PinnedFleetKey, Transport, TransportError, VaultClient, VaultError,
};

use crate::relay::{BundleSource, RelayTransport, WitnessSource};
use crate::{ceremony, ServerError};

/// The witness's directory under the data dir.
pub const WITNESS_DIR: &str = "witness";
/// The demo operator root key (0600), generated on first start.
pub const DEMO_OPERATOR_KEY: &str = "demo-operator-root.key";
/// The demo (simulated) HSM-vendor root key (0600), generated on first start.
pub const DEMO_VENDOR_KEY: &str = "demo-vendor-root.key";
/// Where the deployment evidence is served on the witness's port.
pub const EVIDENCE_PATH: &str = "/deployment-evidence.json";

/// Nodes in the embedded fleet.
pub const EMBEDDED_NODES: usize = 5;
const SECRETS_FILE: &str = "hsm-secrets.json";

/// Proposes through any running node of an in-process fleet.
struct AnyNode {
    fleet: Arc<InProcessFleet>,
    next: AtomicUsize,
}

impl Replicator for AnyNode {
    fn propose(&self, command: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, ReplicationError>> {
        Box::pin(async move {
            let n = self.fleet.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let mut last = ReplicationError::NoQuorum;
            for k in 0..n {
                let node = self.fleet.node((start + k) % n);
                if node.is_stopped() {
                    continue;
                }
                match node.propose_command(command.clone()).await {
                    Err(ReplicationError::ShuttingDown) => last = ReplicationError::NoQuorum,
                    other => return other,
                }
            }
            Err(last)
        })
    }
}

/// An in-process transport straight into an HSM.
pub struct LocalTransport(pub Arc<Hsm>);

impl Transport for LocalTransport {
    fn call(
        &self,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.handle_bytes(&request).await) })
    }
}

/// A running embedded fleet.
pub struct EmbeddedVault {
    fleet: Arc<InProcessFleet>,
    hsm: Arc<Hsm>,
    witness: EmbeddedWitness,
    source: Arc<dyn BundleSource>,
}

/// The embedded demo witness and the demo root keys.
struct EmbeddedWitness {
    url: String,
    key: NoteVerifier,
    operator: NoteSigner,
    vendor_root: NoteVerifier,
    evidence: DeploymentEvidence,
    task: tokio::task::JoinHandle<()>,
    /// The demo cosigners, their policy and the log's cosigning rounds.
    cosigners: crate::cosigners::DemoCosigners,
}

/// A ready over-the-air client of the embedded fleet and what the
/// verification panel shows beside its report.
pub struct OtaClient {
    pub client: VaultClient,
    pub validator: Arc<OtaFleetKeyValidator>,
    /// Audit link of the deployment evidence document.
    pub evidence_url: String,
    /// The witness's base URL (log entries are at `/log/v1/entries/N`).
    pub witness_url: String,
}

impl std::fmt::Debug for OtaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaClient")
            .field("witness_url", &self.witness_url)
            .finish_non_exhaustive()
    }
}

impl OtaClient {
    /// Asks the fleet's status (over-the-air validation of the relayed
    /// bundle) and returns the report, whether or not it verified.
    pub async fn verify(&self) -> Result<VerificationReport, VaultError> {
        let st = self.client.status().await?;
        match (self.validator.last_report(), st.fleet) {
            (Some(r), _) => Ok(r),
            (None, Err(e)) => Err(VaultError::FleetNotVerified(e)),
            (None, Ok(_)) => Err(VaultError::FleetNotVerified(
                "no verification report".into(),
            )),
        }
    }

    /// The report of the last validation.
    pub fn last_report(&self) -> Option<VerificationReport> {
        self.validator.last_report()
    }
}

/// One row of a verification panel, in the app's vocabulary: `id` (stable,
/// for `data-testid`s), `label`, `status` (`passed`, `failed`,
/// `not_applicable`), `detail` (the reason, then the audit link if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRow {
    pub id: String,
    pub label: String,
    pub status: String,
    pub detail: String,
    pub audit_link: Option<String>,
}

/// The panel rows of an over-the-air report, the app's seven checks first
/// (`pinned-key` is the session-key check: the vault's OPAQUE key is a key of
/// the verified artifact), then the other checks of the report.
pub fn panel_rows(r: &VerificationReport) -> Vec<PanelRow> {
    use coffer_transparency::{CheckName as N, CheckStatus as S};
    let known: [(N, &str, &str); 15] = [
        (
            N::SessionKey,
            "pinned-key",
            "The vault's key is a key of the verified fleet",
        ),
        (
            N::WitnessSignature,
            "witness-signature",
            "Witness signature over the fleet-key bundle",
        ),
        (
            N::OperatorCountersignature,
            "operator-countersignature",
            "Operator countersignature over the witness signature",
        ),
        (
            N::Inclusion,
            "inclusion",
            "Inclusion of the bundle in the witness's audit log",
        ),
        (
            N::Consistency,
            "consistency",
            "Consistency with the last checkpoint this app saw",
        ),
        (
            N::ValidityWindow,
            "validity",
            "Validity window of the fleet keys",
        ),
        (
            N::DeploymentEvidence,
            "deployment-evidence",
            "Deployment evidence (HSM attestation, program measurement)",
        ),
        (
            N::Namespace,
            "namespace",
            "Namespace of the fleet-key bundle",
        ),
        (N::Digest, "digest", "Digest of the fleet-key artifact"),
        (N::Artifact, "artifact", "Fleet-key artifact well formed"),
        (
            N::EpochMonotonicity,
            "epoch",
            "Epoch not older than the last one seen",
        ),
        (N::Checkpoint, "checkpoint", "Witness checkpoint signature"),
        (
            N::Cosignatures,
            "cosignatures",
            "Checkpoint cosigned recently by the policy's quorum of cosigners",
        ),
        (
            N::LogEntries,
            "log-entries",
            "Every entry of the witness log rebuilt and checked",
        ),
        (
            N::Latest,
            "latest",
            "The bundle is the latest epoch in the log (first contact)",
        ),
    ];
    known
        .iter()
        .filter_map(|(name, id, label)| {
            let c = r.check(*name)?;
            let status = match c.status {
                S::Passed => "passed",
                S::Failed => "failed",
                S::Skipped => "not_applicable",
            };
            let mut detail = c.why.clone();
            if let Some(code) = &c.code {
                detail = format!("{code}: {detail}");
            }
            if let Some(l) = &c.audit_link {
                detail.push_str(&format!(" (audit link: {l})"));
            }
            Some(PanelRow {
                id: (*id).into(),
                label: (*label).into(),
                status: status.into(),
                detail,
                audit_link: c.audit_link.clone(),
            })
        })
        .collect()
}

fn sealer_of(c: &NodeConfig) -> Sealer {
    let mut k = [0u8; 64];
    k.copy_from_slice(c.sealing_key.expose());
    Sealer::new(k.into())
}

fn read_configs(dir: &Path) -> Result<Option<Vec<NodeConfig>>, ServerError> {
    let f = dir.join(FLEET_FILE);
    if !f.exists() {
        return Ok(None);
    }
    let s = std::fs::read_to_string(&f)
        .map_err(|e| ServerError::Io(format!("{}: {e}", f.display())))?;
    serde_json::from_str(&s)
        .map(Some)
        .map_err(|e| ServerError::Config(format!("{}: {e}", f.display())))
}

fn write_secrets(
    dir: &Path,
    configs: &[NodeConfig],
    secrets: &HsmSecrets,
) -> Result<(), ServerError> {
    // One copy per node, each sealed under that node's own key.
    let sealed: Vec<String> = configs
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD.encode(secrets.seal_under(&sealer_of(c)))
        })
        .collect();
    let json = serde_json::to_vec(&sealed).map_err(|e| ServerError::Config(e.to_string()))?;
    let tmp = dir.join(format!("{SECRETS_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(SECRETS_FILE))
    };
    write().map_err(|e| ServerError::Io(e.to_string()))
}

fn read_secrets(dir: &Path, configs: &[NodeConfig]) -> Result<Option<HsmSecrets>, ServerError> {
    let f = dir.join(SECRETS_FILE);
    if !f.exists() {
        return Ok(None);
    }
    let s = std::fs::read(&f).map_err(|e| ServerError::Io(e.to_string()))?;
    let sealed: Vec<String> =
        serde_json::from_slice(&s).map_err(|e| ServerError::Config(e.to_string()))?;
    let first = sealed
        .first()
        .ok_or_else(|| ServerError::Config("empty HSM secrets file".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first)
        .map_err(|_| ServerError::Config("bad HSM secrets file".into()))?;
    let c = configs
        .first()
        .ok_or_else(|| ServerError::Config("empty fleet file".into()))?;
    HsmSecrets::open_under(&sealer_of(c), &bytes)
        .map(Some)
        .map_err(|e| ServerError::Hsm(e.to_string()))
}

/// Starts the embedded 5-node fleet on `data_dir` (created if needed; keys
/// and state are reused on later starts).
pub async fn start(data_dir: &Path) -> Result<EmbeddedVault, ServerError> {
    start_with(data_dir, EMBEDDED_NODES, DEFAULT_GUESS_LIMIT).await
}

/// [`start`] with another fleet size or guess limit (the limit only counts
/// the first time; afterwards the stored fleet's is used).
pub async fn start_with(
    data_dir: &Path,
    nodes: usize,
    guess_limit: u32,
) -> Result<EmbeddedVault, ServerError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| ServerError::Io(format!("{}: {e}", data_dir.display())))?;
    let existing = read_configs(data_dir)?;
    let stored = match &existing {
        Some(cs) => read_secrets(data_dir, cs)?,
        None => None,
    };
    let fleet_id = match &existing {
        Some(cs) => cs.first().map(|c| c.fleet_id.clone()).unwrap_or_default(),
        None => String::new(),
    };
    let fresh = stored.is_none();
    let secrets = Arc::new(match stored {
        Some(s) => s,
        // The fleet id is settled by the fleet file; until it exists, a placeholder.
        None => HsmSecrets::generate(
            if fleet_id.is_empty() {
                "local"
            } else {
                &fleet_id
            },
            guess_limit,
        )
        .map_err(|e| ServerError::Config(e.to_string()))?,
    });
    let sm_secrets = secrets.clone();
    let fleet = Arc::new(
        InProcessFleet::start(nodes, data_dir, move || {
            Box::new(HsmState::new(sm_secrets.clone())) as Box<dyn coffer_fleet::StateMachine>
        })
        .await
        .map_err(|e| ServerError::Hsm(e.to_string()))?,
    );
    if fresh {
        let cs = read_configs(data_dir)?
            .ok_or_else(|| ServerError::Hsm("the fleet file was not written".into()))?;
        write_secrets(data_dir, &cs, &secrets)?;
    }
    let replicator = Arc::new(AnyNode {
        fleet: fleet.clone(),
        next: AtomicUsize::new(0),
    });
    let hsm = Arc::new(Hsm::new(
        secrets,
        replicator,
        HsmConfig {
            nodes: nodes as u32,
            validation_bundle: None,
        },
    ));
    let _ = fleet
        .wait_for_leader(std::time::Duration::from_secs(5))
        .await;
    let fleet_id = read_configs(data_dir)?
        .and_then(|cs| cs.first().map(|c| c.fleet_id.clone()))
        .unwrap_or_else(|| "local".into());
    let witness = start_witness(data_dir, &fleet_id, &hsm, nodes).await?;
    let source: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&witness.url)?);
    tracing::info!(nodes, witness = %witness.url, "embedded vault fleet started (simulated HSMs, demo witness)");
    Ok(EmbeddedVault {
        fleet,
        hsm,
        witness,
        source,
    })
}

async fn start_witness(
    data_dir: &Path,
    fleet_id: &str,
    hsm: &Hsm,
    nodes: usize,
) -> Result<EmbeddedWitness, ServerError> {
    let wdir = data_dir.join(WITNESS_DIR);
    std::fs::create_dir_all(&wdir)
        .map_err(|e| ServerError::Io(format!("{}: {e}", wdir.display())))?;
    let witness = ceremony::load_or_create_key(&wdir.join("witness.key"), "coffer-demo-witness")?;
    let operator =
        ceremony::load_or_create_key(&data_dir.join(DEMO_OPERATOR_KEY), "coffer-demo-operator")?;
    let vendor = SimulatedVendor::new(ceremony::load_or_create_key(
        &data_dir.join(DEMO_VENDOR_KEY),
        "coffer-demo-hsm-vendor",
    )?);
    let ev_path = data_dir.join(ceremony::EVIDENCE_FILE);
    let evidence = if ev_path.exists() {
        ceremony::read_evidence(&ev_path)?
    } else {
        let c = ceremony::run(
            fleet_id,
            &hsm.server_public_key(),
            nodes,
            &vendor,
            &operator,
            coffer_witness::unix_now(),
            ceremony::DEFAULT_VALID_DAYS,
        )?;
        ceremony::write(&c, data_dir, &data_dir.join("hsm-identities"))?;
        c.evidence
    };
    let keys = evidence
        .fleet_keys()
        .map_err(|e| ServerError::Config(format!("{}: {e}", ev_path.display())))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ServerError::Io(format!("witness: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    let url = format!("http://{addr}");
    let key = witness.verifier();
    let store = coffer_witness::store::Store::open(
        &wdir.join("log.db"),
        witness,
        operator.verifier(),
        &url,
    )
    .map_err(|e| ServerError::Witness(e.to_string()))?;
    let ev_json = Arc::new(
        serde_json::to_string_pretty(&evidence).map_err(|e| ServerError::Config(e.to_string()))?,
    );
    let evidence_route = axum::Router::new().route(
        EVIDENCE_PATH,
        axum::routing::get(move || {
            let j = ev_json.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    (*j).clone(),
                )
            }
        }),
    );
    let mut cosigners = crate::cosigners::start(&wdir, &key).await?;
    let cosigning = Arc::new(
        coffer_witness::cosigning::Cosigning::new(cosigners.log_policy.clone(), key.clone())
            .map_err(|e| ServerError::Witness(e.to_string()))?,
    );
    let (router, shared) = coffer_witness::server::router_parts(store, Some(cosigning.clone()));
    let app = router.merge(evidence_route);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    cosigners.tasks.push(coffer_witness::cosigning::spawn_loop(
        shared,
        cosigning,
        crate::cosigners::COSIGN_INTERVAL,
    ));
    if let Some(link) = ceremony::publish_first(&url, &operator, &keys).await? {
        tracing::info!(entry = %link, "demo fleet keys published as epoch 1");
    }
    Ok(EmbeddedWitness {
        url,
        key,
        operator,
        vendor_root: vendor.root(),
        evidence,
        task,
        cosigners,
    })
}

impl EmbeddedVault {
    /// The fleet key (OPAQUE server public key) to pin.
    pub fn fleet_key(&self) -> Vec<u8> {
        self.hsm.server_public_key()
    }

    pub fn hsm(&self) -> Arc<Hsm> {
        self.hsm.clone()
    }

    /// The in-process fleet (to kill and restart nodes in tests and demos).
    pub fn fleet(&self) -> &Arc<InProcessFleet> {
        &self.fleet
    }

    /// The embedded witness's base URL (loopback).
    pub fn witness_url(&self) -> &str {
        &self.witness.url
    }

    /// The demo witness key to pin (a verifier key string).
    pub fn witness_key(&self) -> NoteVerifier {
        self.witness.key.clone()
    }

    /// The demo operator root key to pin.
    pub fn operator_key(&self) -> NoteVerifier {
        self.witness.operator.verifier()
    }

    /// The demo (simulated) HSM-vendor root key.
    pub fn vendor_root(&self) -> NoteVerifier {
        self.witness.vendor_root.clone()
    }

    /// The deployment evidence of this fleet.
    pub fn evidence(&self) -> &DeploymentEvidence {
        &self.witness.evidence
    }

    /// The audit link of the deployment evidence document.
    pub fn evidence_url(&self) -> String {
        format!("{}{EVIDENCE_PATH}", self.witness.url)
    }

    /// The verifier an over-the-air client of this fleet uses: the demo
    /// witness, operator and vendor roots pinned, with audit links.
    pub fn verifier(&self) -> Verifier {
        let mut v = Verifier::new(self.witness_key(), self.operator_key());
        v.vendor_root = Some(self.vendor_root());
        v.witness_url = Some(self.witness.url.clone());
        v.evidence_url = Some(self.evidence_url());
        v.policy = Some(self.policy().clone());
        // The demo fleet runs this build's simulated HSM program: pinned.
        v.measurement = Some(ceremony::program_measurement());
        v
    }

    /// The trust policy of the demo fleet (its log, its two cosigners, a
    /// 2-of-2 quorum, the maximum age), as written to `witness/trust.policy`.
    pub fn policy(&self) -> &coffer_transparency::Policy {
        &self.witness.cosigners.policy
    }

    /// Where the host gets the blobs it relays.
    pub fn bundle_source(&self) -> Arc<dyn BundleSource> {
        self.source.clone()
    }

    /// The in-process transport through the host's relay.
    pub fn relay_transport(&self) -> RelayTransport {
        RelayTransport {
            hsm: self.hsm.clone(),
            source: Some(self.source.clone()),
        }
    }

    /// A ready over-the-air client: it validates the relayed bundle against
    /// the pinned demo witness and operator keys (and the deployment
    /// evidence), remembering its trust state in `trust_state` (JSON, 0600).
    pub fn ota_client(&self, trust_state: Option<PathBuf>) -> Result<OtaClient, VaultError> {
        let validator = Arc::new(OtaFleetKeyValidator::new(
            self.verifier(),
            trust_state,
            Some(self.witness.evidence.clone()),
        )?);
        Ok(OtaClient {
            client: VaultClient::new(Arc::new(self.relay_transport()), validator.clone()),
            validator,
            evidence_url: self.evidence_url(),
            witness_url: self.witness.url.clone(),
        })
    }

    /// Publishes `keys` as `epoch` through the embedded witness with the demo
    /// operator key (a key rotation or renewal). Returns the audit link.
    pub async fn publish_epoch(&self, epoch: u64, keys: &FleetKeys) -> Result<String, ServerError> {
        ceremony::publish(&self.witness.url, &self.witness.operator, epoch, keys).await
    }

    /// An in-process client pinned to this fleet's key.
    pub fn client(&self) -> VaultClient {
        VaultClient::new(
            Arc::new(LocalTransport(self.hsm.clone())),
            Arc::new(PinnedFleetKey::new(self.fleet_key())),
        )
    }

    /// Serves the HTTP API on `addr` (e.g. `127.0.0.1:0`) until the task is aborted.
    pub async fn serve(
        &self,
        addr: &str,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Io(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::Io(e.to_string()))?;
        let app = crate::api::router_with(
            Arc::new(tokio::sync::RwLock::new(Some(self.hsm.clone()))),
            Some(self.source.clone()),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((local, task))
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        self.witness.task.abort();
        for t in &self.witness.cosigners.tasks {
            t.abort();
        }
        self.fleet.shutdown().await;
    }
}
