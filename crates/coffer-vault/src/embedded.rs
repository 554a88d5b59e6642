//! The embedded default: a whole fleet in this process, on one data
//! directory, for the app's local demo fleet ("clearly labelled": its status
//! says `simulated_hsm` and its fleet id starts with `local-`).
//!
//! It runs its own witness too (the witness's HTTP API on a loopback port,
//! its SQLite log under `witness/`), with **demo** operator and HSM-vendor
//! root keys generated on first start. On first start the deployment
//! ceremony runs (see [`crate::ceremony`]), `deployment-evidence.json` is
//! written and the fleet keys are published as epoch 1. A demo fleet made
//! before vault protocol v2 is upgraded at start: its sealed secrets get a
//! channel key, and its HSMs sign new fleet keys with it (published as the
//! next epoch); its records stay as they are. Status answers carry
//! the witness's validation blob, so clients can validate over the air
//! ([`EmbeddedVault::ota_client`]).
//!
//! Every private key of this deployment (the simulated HSMs' sealing and
//! link keys, the fleet secrets, the witness, operator and vendor keys, the
//! HSM identity keys) is sealed at rest under a root key the caller passes
//! to [`start`] and keeps elsewhere (the app: the OS keyring); see
//! [`crate::demo_keys`]. The folder holds nothing that opens without it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use coffer_fleet::{BoxFuture, InProcessFleet, ReplicationError, Replicator};
use coffer_hsm::{Hsm, HsmConfig, HsmState, DEFAULT_GUESS_LIMIT};
use coffer_transparency::evidence::SimulatedVendor;
use coffer_transparency::{
    DeploymentEvidence, FleetKeys, NoteSigner, NoteVerifier, VerificationReport, Verifier,
};
use coffer_vault_client::{
    OtaFleetKeyValidator, PinnedFleetKey, Route, Transport, TransportError, VaultClient, VaultError,
};

use crate::account::{AccountService, MailConfig, OutboxTickets};
use crate::demo_keys::{self, DemoKeys, FolderState};
use crate::relay::{BundleSource, RelayTransport, WitnessSource};
use crate::{ceremony, ServerError};
use coffer_vault_proto::account::TicketSigner;

pub use crate::demo_keys::{generate_root_key, RootKey};

/// The witness's directory under the data dir.
pub const WITNESS_DIR: &str = "witness";
/// Where the deployment evidence is served on the witness's port.
pub const EVIDENCE_PATH: &str = "/deployment-evidence.json";
/// The demo deployment's public keys (what a client of it pins), written at
/// every start, for readers that do not start the fleet (the diagnostics
/// report). Public: the private halves are sealed ([`crate::demo_keys`]).
pub const DEMO_PUBLIC_KEYS: &str = "demo-public-keys.json";

/// The public keys of a demo deployment, as [`DEMO_PUBLIC_KEYS`] holds them
/// (C2SP verifier key strings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemoPublicKeys {
    pub witness_key: String,
    pub operator_key: String,
    pub vendor_root: String,
}

impl DemoPublicKeys {
    /// Reads `data_dir`'s file; `None` if the demo fleet never started there.
    pub fn read(data_dir: &Path) -> Option<Self> {
        let b = std::fs::read(data_dir.join(DEMO_PUBLIC_KEYS)).ok()?;
        serde_json::from_slice(&b).ok()
    }
}

/// Nodes in the embedded fleet.
pub const EMBEDDED_NODES: usize = 5;

/// The embedded vault's outbox, in its data folder: the mail its account
/// service "sends" (codes valid 10 minutes, notices), JSON lines, 0600.
/// Whoever reads it can get account tickets, as the host can: spend
/// guesses (throttled, and reported to the owner), not read the key.
pub const OUTBOX_FILE: &str = "outbox.jsonl";

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

/// An in-process transport straight into an HSM (no relayed bundle): the
/// HSM's plain boundary for `status`, its channel for everything else, and
/// the host's account service (if any) for the account routes.
pub struct LocalTransport(pub Arc<Hsm>, pub Option<Arc<AccountService>>);

impl Transport for LocalTransport {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>> {
        Box::pin(async move {
            Ok(match route {
                Route::Status => self.0.handle_plain_bytes(&request).await,
                Route::Channel => self
                    .0
                    .handle_channel(&request)
                    .await
                    .unwrap_or_else(|plain| plain),
                Route::AccountChallenge | Route::AccountVerify => {
                    crate::relay::account_bytes(self.1.as_deref(), route, &request)
                }
            })
        })
    }
}

/// A running embedded fleet.
pub struct EmbeddedVault {
    /// The host's account service: its mail goes to [`OUTBOX_FILE`].
    accounts: Arc<AccountService>,
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
    /// The witness's server and its cosigning loop.
    servers: Servers,
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

/// Starts the embedded 5-node fleet on `data_dir` (created if needed; keys
/// and state are reused on later starts), its keys sealed under `root`.
pub async fn start(data_dir: &Path, root: &RootKey) -> Result<EmbeddedVault, ServerError> {
    start_with(data_dir, root, EMBEDDED_NODES, DEFAULT_GUESS_LIMIT).await
}

/// What [`start_with`] finds in `data_dir` and does about it, before any
/// node runs: the folder's keys, opened (or made, or adopted from the
/// plaintext layout) and sealed under `root`.
fn load_keys(
    data_dir: &Path,
    root: &RootKey,
    nodes: usize,
    guess_limit: u32,
    throttle: Option<Vec<(u32, u64)>>,
) -> Result<(String, DemoKeys), ServerError> {
    let folder_id = demo_keys::ensure_folder_id(data_dir)?;
    let keys = match demo_keys::folder_state(data_dir) {
        FolderState::Sealed => {
            let k = DemoKeys::open(data_dir, &folder_id, root)?;
            // Left over by an adoption that stopped after the rename.
            demo_keys::remove_plaintext(data_dir)?;
            k
        }
        FolderState::Plaintext => {
            demo_keys::adopt_plaintext(data_dir, &folder_id, root, guess_limit)?
        }
        FolderState::Empty => {
            let mut k = DemoKeys::generate(nodes, guess_limit)?;
            if let Some(t) = throttle {
                Arc::get_mut(&mut k.hsm_secrets)
                    .ok_or_else(|| ServerError::Hsm("the fleet secrets are in use".into()))?
                    .set_throttle_schedule(t)
                    .map_err(|e| ServerError::Config(e.to_string()))?;
            }
            // Sealed before any node writes state under these keys.
            k.seal(data_dir, &folder_id, root)?;
            k
        }
        FolderState::KeysMissing => {
            return Err(ServerError::DemoKeysMissing(format!(
                "{} holds a demo fleet's state but no {}",
                data_dir.display(),
                demo_keys::KEYS_FILE
            )))
        }
    };
    if keys.nodes.len() != nodes {
        return Err(ServerError::Config(format!(
            "{} holds a {}-node fleet, not {nodes}",
            data_dir.display(),
            keys.nodes.len()
        )));
    }
    Ok((folder_id, keys))
}

/// [`start`] with another fleet size or guess limit (the limit only counts
/// the first time; afterwards the stored fleet's is used).
pub async fn start_with(
    data_dir: &Path,
    root: &RootKey,
    nodes: usize,
    guess_limit: u32,
) -> Result<EmbeddedVault, ServerError> {
    start_opts(data_dir, root, nodes, guess_limit, None).await
}

/// [`start_with`] whose fleet, if it is made now, has the time throttle
/// `throttle` (`Some(vec![])`: none, for tests that spend guesses quickly;
/// `None`: [`coffer_hsm::THROTTLE_SCHEDULE`]).
pub async fn start_opts(
    data_dir: &Path,
    root: &RootKey,
    nodes: usize,
    guess_limit: u32,
    throttle: Option<Vec<(u32, u64)>>,
) -> Result<EmbeddedVault, ServerError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| ServerError::Io(format!("{}: {e}", data_dir.display())))?;
    let (folder_id, mut keys) = load_keys(data_dir, root, nodes, guess_limit, throttle)?;
    // A demo fleet made before vault protocol v2 has no channel key: it gets
    // one now, sealed with the other keys before anything uses it
    // (start_witness publishes it as the next epoch).
    if keys.hsm_secrets.channel_public_key().is_none() {
        let s = Arc::get_mut(&mut keys.hsm_secrets)
            .ok_or_else(|| ServerError::Hsm("the fleet secrets are in use".into()))?;
        s.add_channel_key()
            .map_err(|e| ServerError::Hsm(e.to_string()))?;
        keys.seal(data_dir, &folder_id, root)?;
        tracing::info!("demo fleet made before vault protocol v2: a channel key was added");
    }
    // A demo fleet made before accounts were authenticated has no ticket
    // key: its account service gets one now, and the HSMs its public half
    // (sealed with the other keys before any request is served).
    let mut changed = false;
    if keys.ticket_signer.is_none() {
        keys.ticket_signer = Some(TicketSigner::generate());
        changed = true;
    }
    let ticket_public = keys.ticket_signer.as_ref().map(|t| t.public());
    if let Some(public) = ticket_public {
        if keys.hsm_secrets.ticket_key() != Some(public) {
            let s = Arc::get_mut(&mut keys.hsm_secrets)
                .ok_or_else(|| ServerError::Hsm("the fleet secrets are in use".into()))?;
            // The demo host is this computer: a folder whose secrets hold
            // a ticket key without its private half gets a new one.
            s.replace_ticket_key_of_demo_fleet(public)
                .map_err(|e| ServerError::Hsm(e.to_string()))?;
            changed = true;
        }
    }
    if changed {
        keys.seal(data_dir, &folder_id, root)?;
        tracing::info!("the demo fleet's account service has its ticket key");
    }
    let signer = keys
        .ticket_signer
        .as_ref()
        .map(|t| TicketSigner::from_seed(&t.seed()))
        .ok_or_else(|| ServerError::Hsm("no ticket key".into()))?;
    let secrets = keys.hsm_secrets.clone();
    let sm_secrets = secrets.clone();
    let make_sm: coffer_fleet::inprocess::MakeStateMachine = Arc::new(move || {
        Box::new(HsmState::new(sm_secrets.clone())) as Box<dyn coffer_fleet::StateMachine>
    });
    let fleet = Arc::new(
        InProcessFleet::start_from(keys.nodes.clone(), data_dir, make_sm)
            .await
            .map_err(|e| ServerError::Hsm(e.to_string()))?,
    );
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
    let accounts = Arc::new(AccountService::new(
        hsm.fleet_id(),
        signer,
        &MailConfig::outbox(OUTBOX_FILE),
        data_dir,
    )?);
    hsm.set_notice_sink(accounts.clone(), coffer_hsm::SETTLE_AFTER);
    let _ = fleet
        .wait_for_leader(std::time::Duration::from_secs(5))
        .await;
    // The published fleet id is the HSMs' own: the one the channel binds
    // (a demo fleet made before protocol v2 named its node configs apart).
    let fleet_id = hsm.fleet_id().to_string();
    let witness = match start_witness(
        data_dir, &folder_id, root, &mut keys, &fleet_id, &hsm, nodes,
    )
    .await
    {
        Ok(w) => w,
        Err(e) => {
            fleet.shutdown().await;
            return Err(e);
        }
    };
    let source: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&witness.url)?);
    tracing::info!(nodes, witness = %witness.url, "embedded vault fleet started (simulated HSMs, demo witness)");
    Ok(EmbeddedVault {
        accounts,
        fleet,
        hsm,
        witness,
        source,
    })
}

async fn start_witness(
    data_dir: &Path,
    folder_id: &str,
    root: &RootKey,
    keys: &mut DemoKeys,
    fleet_id: &str,
    hsm: &Hsm,
    nodes: usize,
) -> Result<EmbeddedWitness, ServerError> {
    let wdir = data_dir.join(WITNESS_DIR);
    std::fs::create_dir_all(&wdir)
        .map_err(|e| ServerError::Io(format!("{}: {e}", wdir.display())))?;
    let witness = demo_keys::copy_signer(&keys.witness);
    let operator = demo_keys::copy_signer(&keys.operator);
    let vendor = SimulatedVendor::new(demo_keys::copy_signer(&keys.vendor));
    let public = DemoPublicKeys {
        witness_key: witness.verifier().to_string(),
        operator_key: operator.verifier().to_string(),
        vendor_root: keys.vendor.verifier().to_string(),
    };
    let p = data_dir.join(DEMO_PUBLIC_KEYS);
    std::fs::write(
        &p,
        serde_json::to_vec_pretty(&public).map_err(|e| ServerError::Config(e.to_string()))?,
    )
    .map_err(|e| ServerError::Io(format!("{}: {e}", p.display())))?;
    if keys.cosigners.is_empty() {
        // Sealed before the keys are used (a folder sealed before the demo
        // cosigners existed gets them now).
        keys.cosigners = crate::cosigners::generate_keys()?;
        keys.seal(data_dir, folder_id, root)?;
    }
    let cosigner_keys: Vec<_> = keys.cosigners.iter().map(demo_keys::copy_signer).collect();
    let ev_path = data_dir.join(ceremony::EVIDENCE_FILE);
    let channel_key = hsm
        .channel_public_key()
        .ok_or_else(|| ServerError::Config("the fleet has no channel key".into()))?;
    let now = coffer_witness::unix_now();
    let evidence = if ev_path.exists() {
        let ev = ceremony::read_evidence(&ev_path)?;
        let current = ev.fleet_keys().is_ok_and(|k| {
            k.fleet_id == fleet_id && k.check_channel_key(Some(&channel_key), now).is_ok()
        });
        if current {
            ev
        } else {
            // A demo fleet made before vault protocol v2 (or whose fleet
            // id the artifact does not name): the same HSMs sign new
            // fleet keys with the channel key; published as the next epoch.
            if keys.hsm_identities.len() != nodes {
                return Err(ServerError::Config(format!(
                    "the sealed keys hold {} HSM identities for {nodes} HSMs",
                    keys.hsm_identities.len()
                )));
            }
            let ids = keys
                .hsm_identities
                .iter()
                .map(demo_keys::copy_signer)
                .collect();
            let c = ceremony::run_with_identities(
                fleet_id,
                &hsm.server_public_key(),
                &channel_key,
                ids,
                &vendor,
                &operator,
                now,
                ceremony::DEFAULT_VALID_DAYS,
            )?;
            ceremony::write_public(&c, data_dir)?;
            tracing::info!("demo fleet keys renewed with the channel key");
            c.evidence
        }
    } else {
        let mut c = ceremony::run(
            fleet_id,
            &hsm.server_public_key(),
            &channel_key,
            nodes,
            &vendor,
            &operator,
            now,
            ceremony::DEFAULT_VALID_DAYS,
        )?;
        // The identity keys are sealed with the others before the evidence
        // that names them is written: a crash in between runs the ceremony
        // again next time, it never leaves evidence without its keys.
        keys.hsm_identities = std::mem::take(&mut c.hsm_identities);
        keys.seal(data_dir, folder_id, root)?;
        ceremony::write_public(&c, data_dir)?;
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
    let cosigners = crate::cosigners::start(&wdir, &key, cosigner_keys).await?;
    let cosigning = Arc::new(
        coffer_witness::cosigning::Cosigning::new(cosigners.log_policy.clone(), key.clone())
            .map_err(|e| ServerError::Witness(e.to_string()))?,
    );
    let (router, shared) = coffer_witness::server::router_parts(store, Some(cosigning.clone()));
    let app = router.merge(evidence_route);
    let servers = Servers::default();
    servers.serve(listener, app);
    // The loop holds the log's store too: it stops with the servers.
    servers.push(coffer_witness::cosigning::spawn_loop(
        shared,
        cosigning,
        crate::cosigners::COSIGN_INTERVAL,
    ));

    if let Some(link) = ceremony::publish_current(&url, &operator, &keys).await? {
        tracing::info!(entry = %link, "demo fleet keys published");
    }
    Ok(EmbeddedWitness {
        url,
        key,
        operator,
        vendor_root: vendor.root(),
        evidence,
        servers,
        cosigners,
    })
}

impl EmbeddedVault {
    /// The fleet key (OPAQUE server public key).
    pub fn fleet_key(&self) -> Vec<u8> {
        self.hsm.server_public_key()
    }

    /// The channel's static public key (X25519).
    pub fn channel_key(&self) -> [u8; 32] {
        // A running embedded fleet always has one (checked at start).
        self.hsm.channel_public_key().unwrap_or_default()
    }

    /// What a client pins: both keys (`PinnedFleetKey::pin` is its string).
    pub fn pinned(&self) -> PinnedFleetKey {
        PinnedFleetKey::new(self.fleet_key(), self.channel_key())
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
            accounts: Some(self.accounts.clone()),
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
            client: VaultClient::new(Arc::new(self.relay_transport()), validator.clone())
                .with_ticket_source(self.outbox_tickets()),
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

    /// An in-process client pinned to this fleet's key. Its account
    /// tickets come from the outbox ([`EmbeddedVault::outbox_tickets`]).
    pub fn client(&self) -> VaultClient {
        self.bare_client().with_ticket_source(self.outbox_tickets())
    }

    /// [`EmbeddedVault::client`] without a ticket source: it must verify an
    /// address itself ([`VaultClient::send_mail_code`]).
    pub fn bare_client(&self) -> VaultClient {
        VaultClient::new(
            Arc::new(LocalTransport(
                self.hsm.clone(),
                Some(self.accounts.clone()),
            )),
            Arc::new(self.pinned()),
        )
    }

    /// The host's account service.
    pub fn accounts(&self) -> Arc<AccountService> {
        self.accounts.clone()
    }

    /// The demo outbox: every mail of the embedded vault (codes and
    /// notices), JSON lines, in the data folder.
    pub fn outbox(&self) -> PathBuf {
        self.accounts
            .outbox()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// A ticket source that asks this vault's account service for a code
    /// and reads it from the outbox, as the demo app does.
    pub fn outbox_tickets(&self) -> Arc<dyn coffer_vault_client::TicketSource> {
        Arc::new(OutboxTickets {
            transport: Arc::new(LocalTransport(
                self.hsm.clone(),
                Some(self.accounts.clone()),
            )),
            outbox: self.outbox(),
        })
    }

    /// Serves the HTTP API on `addr` (e.g. `127.0.0.1:0`) under the default
    /// [`crate::limits::Limits`] until the task is aborted.
    pub async fn serve(
        &self,
        addr: &str,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
        self.serve_with(addr, crate::limits::Limits::default())
            .await
    }

    /// [`EmbeddedVault::serve`] under other `limits` (for a test that sends
    /// more requests from one address than a client may).
    pub async fn serve_with(
        &self,
        addr: &str,
        mut limits: crate::limits::Limits,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Io(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::Io(e.to_string()))?;
        let app = crate::api::router_full(
            Arc::new(tokio::sync::RwLock::new(Some(self.hsm.clone()))),
            Some(self.source.clone()),
            Some(self.accounts.clone()),
        );
        crate::limits::fit_open_files(crate::limits::raise_open_files_limit(), &mut [&mut limits]);
        Ok((local, crate::limits::serve(listener, app, limits)))
    }

    /// Stops the vault. When this returns, its witness, cosigners and nodes
    /// have stopped serving and writing; the witness's and cosigners'
    /// databases are closed as the last HTTP connection's task ends, a
    /// moment later (axum's server returns when that connection says it is
    /// done, just before the task drops its copy of the router). Every write
    /// is committed before, so the data folder can be copied, moved or
    /// opened again.
    pub async fn shutdown(&self) {
        self.witness.servers.stop().await;
        self.witness.cosigners.servers.stop().await;
        self.fleet.shutdown().await;
    }
}

/// HTTP servers and loops that stop together and are waited for.
#[derive(Default)]
pub struct Servers {
    stop: tokio::sync::watch::Sender<bool>,
    servers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    loops: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Servers {
    /// How long [`Servers::stop`] lets requests under way finish.
    const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

    /// Serves `app` on `listener` until [`Servers::stop`].
    pub fn serve(&self, listener: tokio::net::TcpListener, app: axum::Router) {
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
        self.servers.lock().expect("servers lock").push(task);
    }

    /// A loop that runs until [`Servers::stop`] aborts it.
    pub fn push(&self, task: tokio::task::JoinHandle<()>) {
        self.loops.lock().expect("servers lock").push(task);
    }

    /// Stops accepting, lets requests under way finish (for at most
    /// [`Self::GRACE`]; then they are cut), aborts the loops, and waits
    /// until every one is gone, so nothing holds their databases any more.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let loops = std::mem::take(&mut *self.loops.lock().expect("servers lock"));
        for t in &loops {
            t.abort();
        }
        let servers = std::mem::take(&mut *self.servers.lock().expect("servers lock"));
        for mut t in servers {
            if tokio::time::timeout(Self::GRACE, &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
        for t in loops {
            let _ = t.await;
        }
    }
}
