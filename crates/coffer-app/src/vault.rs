//! Vault mode: the recovery code protects K through the HSM vault.
//!
//! Two backends ([`VaultTarget`], from the settings' vault choice):
//! * the embedded demo fleet (`coffer_vault::embedded`), started on first use
//!   in the vault directory (`DATA_DIR/vault`, or `--vault-dir`), with its
//!   demo witness; its trust state is `VAULT_DIR/trust-state.json`; its
//!   private keys are sealed in that folder under a root key kept in the OS
//!   keyring (`keyring::demo_fleet_root_key`), so it runs only where a
//!   lasting keyring can be used ("keyring unavailable" otherwise);
//! * a remote fleet by URL (`VaultClient::http`) with the witness and
//!   operator keys the user pinned, and the trust policy (cosigners, quorum,
//!   maximum age) when one is set; its trust state is
//!   `DATA_DIR/vault-trust/<hash of the keys>.json`.
//!
//! Either way the client validates the fleet over the air (witness-signed,
//! operator-countersigned bundle, the whole log, the first-contact rule,
//! consistency with the remembered checkpoint, the checkpoint's cosigners
//! and freshness under the trust policy; deployment evidence for the
//! embedded fleet) before any session; the verification panel shows that
//! report. Vault calls
//! run on this module's own Tokio runtime, so the (synchronous) app methods
//! can wait for them from any thread.
//!
//! The recovery code lives only in [`SecretString`]s for the duration of a
//! call; K leaves the client only wrapped under the OPAQUE export key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use coffer_error::{ErrorReport, UserFacing};
use coffer_repo::MasterKey;
use coffer_vault::embedded::EmbeddedVault;
use coffer_vault_client::coffer_transparency::{NoteVerifier, Policy, Verifier};
use coffer_vault_client::{
    ExposeSecret, OtaFleetKeyValidator, SecretBox, SecretString, VaultClient, VaultError,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use ts_rs::TS;

use crate::error::AppError;
use crate::keyring::DeviceKeyStore;
use crate::settings::{SettingsError, VaultChoice};
use crate::trust_store::{trust_account, AppTrustStore};

/// How long fetching a remote fleet's deployment evidence may take.
const EVIDENCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The shortest recovery code accepted.
pub const MIN_CODE_CHARS: usize = 10;
/// The estimated strength a recovery code needs.
pub const MIN_CODE_BITS: u32 = 45;

/// An estimate of a recovery code's strength (shown while typing).
#[derive(Clone, PartialEq, Eq, Serialize, TS)]
pub struct CodeStrength {
    /// Estimated bits of entropy (an estimate: length × log2 of the
    /// character classes used, reduced for repeated characters).
    pub bits: u32,
    /// "too weak", "fair" or "strong".
    pub label: String,
    pub acceptable: bool,
}

/// By hand, like every type named after a code or key: it holds only the
/// estimate, never the code, and a field added later must not print one.
impl std::fmt::Debug for CodeStrength {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeStrength")
            .field("bits", &self.bits)
            .field("label", &self.label)
            .field("acceptable", &self.acceptable)
            .finish()
    }
}

/// Estimates a recovery code's strength with zxcvbn (Dropbox's estimator:
/// dictionaries, names, keyboard patterns, repeats, sequences, l33t and
/// dates), as bits = log2 of the guesses it expects an attacker to need.
/// The UI asks for it as the user types (`code_strength`); this decides.
/// The vault's 10-guess limit is the real protection; this keeps a code
/// strong enough for the day a vault record is stolen with its HSM's keys.
pub fn code_strength(code: &str) -> CodeStrength {
    let chars = code.chars().count();
    let guesses_log10 = zxcvbn::zxcvbn(code, &[]).guesses_log10();
    let bits = if guesses_log10.is_finite() && guesses_log10 > 0.0 {
        (guesses_log10 * std::f64::consts::LOG2_10).floor() as u32
    } else {
        0
    };
    let acceptable = chars >= MIN_CODE_CHARS && bits >= MIN_CODE_BITS;
    let label = if !acceptable {
        "too weak"
    } else if bits < 60 {
        "fair"
    } else {
        "strong"
    };
    CodeStrength {
        bits,
        label: label.into(),
        acceptable,
    }
}

/// One check of the verification panel.
#[derive(Debug, Clone, Serialize, TS)]
pub struct CheckView {
    pub id: String,
    pub label: String,
    /// `passed`, `failed`, `not_applicable` or `not_run`.
    pub status: String,
    pub detail: String,
}

/// What the verification panel shows about the vault fleet.
#[derive(Debug, Clone, Serialize, TS)]
pub struct VaultInfo {
    pub fleet_id: String,
    /// SHA-256 of the fleet's OPAQUE server key (first 16 bytes, hex).
    pub key_fingerprint: String,
    pub validation_mode: String,
    pub validated: bool,
    pub nodes: u32,
    pub guess_limit: u32,
    pub quorum: bool,
    pub simulated_hsm: bool,
    pub ksf: String,
    pub checks: Vec<CheckView>,
    /// How fresh the cosigned log checkpoint is (with a trust policy).
    pub freshness: Option<CheckpointFreshness>,
    /// The trust policy's cosigners and what each said about the checkpoint.
    pub cosigners: Vec<CosignerView>,
    /// Two checkpoints of the log that cannot both be true, when the
    /// verification found a fork or a rollback (signed notes, to keep and
    /// report).
    pub fork_evidence: Option<ForkEvidenceView>,
    /// The trust policy the checkpoint was checked against; `None`: no
    /// policy is set, so the checkpoint's freshness is not checked.
    pub policy: Option<PolicyView>,
}

/// A fork or rollback of the witness log, with both checkpoints.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ForkEvidenceView {
    /// `forked` (same size with another root, or no consistency proof) or
    /// `rolled_back` (smaller than the checkpoint seen before).
    pub kind: String,
    /// The checkpoint this app verified before (a signed note).
    pub remembered: String,
    /// The checkpoint the vault presents now (a signed note).
    pub presented: String,
}

/// A trust policy as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct PolicyView {
    /// The quorum rule, e.g. `2 of [cosigner-1, cosigner-2]`.
    pub quorum: String,
    /// The oldest quorum cosigning accepted (seconds).
    pub max_age_secs: u64,
    /// The cosigners' names, in the policy's order.
    pub cosigners: Vec<String>,
}

impl PolicyView {
    pub fn of(p: &Policy) -> Self {
        PolicyView {
            quorum: p.describe_quorum(),
            max_age_secs: p.max_age_secs,
            cosigners: p.witnesses.iter().map(|w| w.name.clone()).collect(),
        }
    }
}

/// A trust policy file read for the vault form.
#[derive(Debug, Clone, Serialize, TS)]
pub struct LoadedPolicy {
    /// The file's text, for the form's policy field.
    pub text: String,
    pub policy: PolicyView,
}

/// The freshness of the log checkpoint the fleet's keys were verified in.
#[derive(Debug, Clone, Serialize, TS)]
pub struct CheckpointFreshness {
    /// When the policy's quorum of cosigners last vouched for it (Unix seconds).
    pub cosigned_at: u64,
    pub age_secs: u64,
    /// The oldest accepted (the policy's max-age).
    pub max_age_secs: u64,
    /// The quorum rule, e.g. `2 of [cosigner-1, cosigner-2]`.
    pub quorum: String,
}

/// One cosigner of the trust policy, as the panel shows it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct CosignerView {
    pub name: String,
    /// Its key (`name+keyid+base64`): public.
    pub key: String,
    /// The key id part of `key` (8 hex digits), as the panel shows it.
    pub key_id: String,
    pub cosigned_at: Option<u64>,
    /// `fresh`, `stale`, `future`, `missing` or `invalid`.
    pub status: String,
}

/// The key id of a note verifier key `name+keyid+base64` (empty when the
/// text is not of that form).
pub fn key_id_of(key: &str) -> String {
    let mut parts = key.split('+');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(id), Some(_))
            if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            id.to_string()
        }
        _ => String::new(),
    }
}

/// Which fleet the app talks to: the settings' [`VaultChoice`], where key
/// mode (no vault) is answered by the embedded demo fleet, as before, for
/// the verification panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultTarget(VaultChoice);

impl VaultTarget {
    /// The embedded demo fleet (also used while no vault is chosen).
    pub const EMBEDDED: VaultTarget = VaultTarget(VaultChoice::EmbeddedDemo);

    /// The target of a settings choice.
    pub fn of(choice: &VaultChoice) -> Self {
        match choice {
            VaultChoice::KeyOnly => Self::EMBEDDED,
            c => Self(c.clone()),
        }
    }
}

enum Backend {
    Embedded(Box<EmbeddedVault>),
    Remote { url: String },
}

struct Running {
    backend: Backend,
    client: VaultClient,
    validator: Arc<OtaFleetKeyValidator>,
    /// Audit link of the deployment evidence (embedded fleet only).
    evidence_url: Option<String>,
    /// The trust policy the validator checks the checkpoint against.
    policy: Option<PolicyView>,
}

/// The vault connection of the app (started on first use).
pub struct Vault {
    dir: Mutex<PathBuf>,
    /// Where the trust state of each remote fleet is remembered.
    trust_dir: PathBuf,
    /// Where the embedded fleet's root key is kept (the OS keyring).
    keystore: Arc<dyn DeviceKeyStore>,
    target: Mutex<VaultTarget>,
    rt: Mutex<Option<Arc<tokio::runtime::Runtime>>>,
    running: Mutex<Option<Arc<Running>>>,
    /// The account tickets held for each remote vault (by URL), shared by
    /// every connection to it: a code verified for a vault the user is
    /// moving to serves the move's connection.
    tickets: Mutex<std::collections::HashMap<String, coffer_vault_client::Tickets>>,
    /// The (account, code) the vault last refused as a wrong code, as a
    /// digest keyed with this process's random key (never the code): the
    /// same code again is refused here without costing an attempt.
    refused: Mutex<Option<[u8; 32]>>,
    refusal_key: zeroize::Zeroizing<[u8; 32]>,
}

/// A digest of an attempt, to compare with the last refused one.
fn attempt_digest(key: &[u8; 32], account: &str, code: &SecretString) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update((account.len() as u64).to_be_bytes());
    h.update(account.as_bytes());
    h.update(code.expose_secret().as_bytes());
    h.finalize().into()
}

fn rep<E: UserFacing>(e: E) -> ErrorReport {
    e.report()
}

fn fingerprint(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..16])
}

fn pinned(what: &str, key: &str) -> Result<NoteVerifier, ErrorReport> {
    NoteVerifier::parse(key.trim()).map_err(|e| {
        SettingsError::InvalidVault {
            reason: format!("the {what} key is not a note verifier key: {e}"),
        }
        .report()
    })
}

/// The trust-state file of a remote fleet: one per pinned witness and
/// operator keys (its trust anchors), whatever URL reaches it; the same
/// state is kept in the OS keyring ([`crate::trust_store`]).
pub fn trust_file(trust_dir: &Path, witness_key: &str, operator_key: &str) -> PathBuf {
    let account = trust_account(witness_key, operator_key);
    let name = account.trim_start_matches("fleet-trust:");
    trust_dir.join(format!("{name}.json"))
}

impl Vault {
    /// `dir`: the embedded fleet's folder; `trust_dir`: where remote fleets'
    /// trust states are kept (`DATA_DIR/vault-trust`); `keystore`: the
    /// keyring that keeps the embedded fleet's root key.
    pub fn new(dir: PathBuf, trust_dir: PathBuf, keystore: Arc<dyn DeviceKeyStore>) -> Self {
        Self {
            dir: Mutex::new(dir),
            trust_dir,
            keystore,
            target: Mutex::new(VaultTarget::EMBEDDED),
            rt: Mutex::new(None),
            running: Mutex::new(None),
            tickets: Mutex::new(Default::default()),
            refused: Mutex::new(None),
            refusal_key: {
                let mut k = zeroize::Zeroizing::new([0u8; 32]);
                getrandom::fill(k.as_mut()).expect("the OS random generator failed");
                k
            },
        }
    }

    fn tickets_for(&self, url: &str) -> coffer_vault_client::Tickets {
        self.tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_string())
            .or_default()
            .clone()
    }

    /// Where the embedded fleet keeps its state (before it is started).
    pub fn set_dir(&self, dir: PathBuf) {
        *self.dir.lock().unwrap_or_else(|p| p.into_inner()) = dir;
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fleet in use.
    pub fn target(&self) -> VaultTarget {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches to another fleet: the current connection is dropped (the
    /// embedded fleet is stopped) and the next call connects to `target`.
    pub fn set_target(&self, target: VaultTarget) {
        {
            let mut g = self.target.lock().unwrap_or_else(|p| p.into_inner());
            if *g == target {
                return;
            }
            *g = target;
        }
        self.shutdown();
    }

    fn runtime(&self) -> Result<Arc<tokio::runtime::Runtime>, ErrorReport> {
        let mut g = self.rt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = &*g {
            return Ok(rt.clone());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-vault")
            .enable_all()
            .build()
            .map_err(|e| AppError::VaultStart(e.to_string()).report_now())?;
        let rt = Arc::new(rt);
        *g = Some(rt.clone());
        Ok(rt)
    }

    /// Runs `fut` on the vault runtime and waits for it (safe from any
    /// thread that is not itself a runtime worker).
    fn wait<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, ErrorReport> {
        let rt = self.runtime()?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| AppError::VaultStart("the vault task stopped".into()).report_now())
    }

    /// A new connection to `target` (the embedded fleet is started).
    fn connect(&self, target: &VaultTarget) -> Result<Running, ErrorReport> {
        match &target.0 {
            VaultChoice::EmbeddedDemo | VaultChoice::KeyOnly => {
                let dir = self.dir();
                let root = self.demo_root_key(&dir)?;
                let vault = self
                    .wait(async move { coffer_vault::embedded::start(&dir, &root).await })?
                    .map_err(rep)?;
                let store = Arc::new(AppTrustStore::new(
                    self.dir().join("trust-state.json"),
                    trust_account(
                        &vault.witness_key().to_string(),
                        &vault.operator_key().to_string(),
                    ),
                ));
                let validator = match OtaFleetKeyValidator::with_store(
                    vault.verifier(),
                    store,
                    Some(vault.evidence().clone()),
                ) {
                    Ok(v) => Arc::new(v),
                    Err(e) => {
                        let _ = self.wait(async move { vault.shutdown().await });
                        return Err(rep(e));
                    }
                };
                // Demo mode: the embedded vault's mail goes to the outbox
                // in its folder, which the app reads for the code.
                let tickets = vault.outbox_tickets();
                Ok(Running {
                    client: VaultClient::new(Arc::new(vault.relay_transport()), validator.clone())
                        .with_ticket_source(tickets),
                    validator,
                    evidence_url: Some(vault.evidence_url()),
                    policy: Some(PolicyView::of(vault.policy())),
                    backend: Backend::Embedded(Box::new(vault)),
                })
            }
            VaultChoice::Remote {
                url,
                witness_key,
                operator_key,
                witness_url,
                vendor_key,
                evidence_url,
                trust_policy,
            } => {
                let mut v = Verifier::new(
                    pinned("witness", witness_key)?,
                    pinned("operator", operator_key)?,
                );
                v.witness_url = witness_url.clone();
                // With a policy, the checkpoint must be cosigned by its
                // quorum within its max-age (freshness on first contact).
                v.policy = trust_policy
                    .as_deref()
                    .map(|t| crate::settings::trust_policy(t, witness_key))
                    .transpose()
                    .map_err(rep)?;
                let policy = v.policy.as_ref().map(PolicyView::of);
                // A pinned vendor root demands the deployment evidence: it
                // is fetched here and checked by the validator (each HSM
                // attested, the keys made inside, all signed by the
                // operator root); one that cannot be fetched is an error.
                let evidence = match (vendor_key, evidence_url) {
                    (Some(k), Some(u)) => {
                        v.vendor_root = Some(pinned("HSM vendor", k)?);
                        v.evidence_url = Some(u.clone());
                        let u = u.clone();
                        let doc = self
                            .wait(async move {
                                coffer_vault_client::fetch_evidence(&u, EVIDENCE_TIMEOUT).await
                            })?
                            .map_err(rep)?;
                        Some(doc)
                    }
                    _ => None,
                };
                std::fs::create_dir_all(&self.trust_dir).map_err(|e| {
                    rep(VaultError::TrustState(format!(
                        "{}: {e}",
                        self.trust_dir.display()
                    )))
                })?;
                let store = Arc::new(AppTrustStore::new(
                    trust_file(&self.trust_dir, witness_key, operator_key),
                    trust_account(witness_key, operator_key),
                ));
                let validator =
                    Arc::new(OtaFleetKeyValidator::with_store(v, store, evidence).map_err(rep)?);
                let client = VaultClient::http(url, validator.clone())
                    .map_err(rep)?
                    .with_tickets(self.tickets_for(url));
                Ok(Running {
                    backend: Backend::Remote { url: url.clone() },
                    client,
                    validator,
                    evidence_url: evidence_url.clone(),
                    policy,
                })
            }
        }
    }

    /// The embedded fleet's root key from the keyring (made and stored there
    /// for a folder without a sealed fleet). The keyring is checked first,
    /// so nothing is written to the folder when it cannot be used.
    fn demo_root_key(&self, dir: &Path) -> Result<coffer_vault::embedded::RootKey, ErrorReport> {
        use coffer_vault::demo_keys::{self, FolderState};
        crate::keyring::require_lasting_keyring(&*self.keystore).map_err(rep)?;
        let id = demo_keys::ensure_folder_id(dir).map_err(rep)?;
        let sealed = matches!(
            demo_keys::folder_state(dir),
            FolderState::Sealed | FolderState::KeysMissing
        );
        crate::keyring::demo_fleet_root_key(&*self.keystore, dir, &id, sealed).map_err(rep)
    }

    fn running(&self) -> Result<Arc<Running>, ErrorReport> {
        let mut g = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*g {
            return Ok(r.clone());
        }
        let r = Arc::new(self.connect(&self.target())?);
        *g = Some(r.clone());
        Ok(r)
    }

    fn stop(&self, r: Arc<Running>) {
        if matches!(r.backend, Backend::Embedded(_)) {
            let _ = self.wait(async move {
                if let Backend::Embedded(v) = &r.backend {
                    v.shutdown().await;
                }
            });
        }
    }

    /// Stops the embedded fleet (its state stays on disk) and forgets the
    /// connection.
    pub fn shutdown(&self) {
        let r = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = r {
            self.stop(r);
        }
    }

    /// What is remembered about the fleet `choice` names (public values),
    /// from the keyring and the file, for the diagnostics report. `None`
    /// without a vault, or when the demo fleet never started.
    pub fn trust_diagnostics(
        &self,
        choice: &VaultChoice,
    ) -> Option<crate::trust_store::TrustDiagnostics> {
        match choice {
            VaultChoice::KeyOnly => None,
            VaultChoice::EmbeddedDemo => {
                let dir = self.dir();
                let k = coffer_vault::embedded::DemoPublicKeys::read(&dir)?;
                Some(crate::trust_store::diagnostics(
                    &dir.join("trust-state.json"),
                    &trust_account(&k.witness_key, &k.operator_key),
                ))
            }
            VaultChoice::Remote {
                witness_key,
                operator_key,
                ..
            } => Some(crate::trust_store::diagnostics(
                &trust_file(&self.trust_dir, witness_key, operator_key),
                &trust_account(witness_key, operator_key),
            )),
        }
    }

    /// The fleet's status and what was verified about it.
    pub fn info(&self) -> Result<VaultInfo, ErrorReport> {
        let r = self.running()?;
        self.info_of(&r)
    }

    /// Connects to `target` and reports what was verified, without changing
    /// the fleet in use (the trust state of a remote fleet is remembered:
    /// a verified contact is a contact).
    pub fn test(&self, target: &VaultTarget) -> Result<VaultInfo, ErrorReport> {
        if *target == self.target() {
            return self.info();
        }
        let r = Arc::new(self.connect(target)?);
        let out = self.info_of(&r);
        self.stop(r);
        out
    }

    fn info_of(&self, r: &Running) -> Result<VaultInfo, ErrorReport> {
        let client = r.client.clone();
        let st = self
            .wait(async move { client.status().await })?
            .map_err(rep)?;
        let validated = st.fleet.is_ok();
        let report = r.validator.last_report();
        let checks: Vec<CheckView> = match &report {
            Some(rep) => coffer_vault::embedded::panel_rows(rep)
                .into_iter()
                .map(|p| CheckView {
                    id: p.id,
                    label: p.label,
                    status: p.status,
                    detail: p.detail,
                })
                .collect(),
            None => vec![CheckView {
                id: "pinned-key".into(),
                label: "The vault's key is a key of the verified fleet".into(),
                status: "failed".into(),
                detail: st.fleet.as_ref().err().cloned().unwrap_or_default(),
            }],
        };
        let epoch = report
            .as_ref()
            .and_then(|r| r.epoch)
            .map(|e| e.to_string())
            .unwrap_or("-".into());
        let validation_mode = match &r.backend {
            Backend::Embedded(_) => format!(
                "over the air: bundle epoch {epoch} signed by the demo witness and countersigned by the demo operator key (local demo fleet; deployment evidence: {})",
                r.evidence_url.as_deref().unwrap_or("-")
            ),
            Backend::Remote { url } => format!(
                "over the air: bundle epoch {epoch} signed by the pinned witness key and countersigned by the pinned operator key (remote fleet at {url}; deployment evidence: {})",
                r.evidence_url
                    .as_deref()
                    .unwrap_or("not checked, no HSM vendor key pinned")
            ),
        };
        Ok(VaultInfo {
            fleet_id: report
                .as_ref()
                .and_then(|r| r.fleet_id.clone())
                .unwrap_or_else(|| st.info.fleet.fleet_id.clone()),
            key_fingerprint: fingerprint(&st.info.fleet.server_public_key.0),
            validation_mode,
            validated,
            nodes: st.info.nodes,
            guess_limit: st.info.guess_limit,
            quorum: st.info.quorum,
            simulated_hsm: st.info.simulated_hsm,
            ksf: st.info.ksf.clone(),
            checks,
            freshness: report.as_ref().and_then(|r| r.freshness.as_ref()).map(|f| {
                CheckpointFreshness {
                    cosigned_at: f.cosigned_at,
                    age_secs: f.age_secs,
                    max_age_secs: f.max_age_secs,
                    quorum: f.quorum.clone(),
                }
            }),
            cosigners: report
                .as_ref()
                .map(|r| {
                    r.cosigners
                        .iter()
                        .map(|c| CosignerView {
                            name: c.name.clone(),
                            key: c.key.clone(),
                            key_id: key_id_of(&c.key),
                            cosigned_at: c.cosigned_at,
                            status: c.status.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            fork_evidence: report.as_ref().and_then(|r| r.fork.as_ref()).map(|f| {
                ForkEvidenceView {
                    kind: f.kind.clone(),
                    remembered: f.remembered.clone(),
                    presented: f.presented.clone(),
                }
            }),
            policy: r.policy.clone(),
        })
    }

    /// The fleet must validate before a recovery code is used.
    pub fn verify(&self) -> Result<VaultInfo, ErrorReport> {
        let info = self.info()?;
        if !info.validated {
            return Err(AppError::FleetNotVerified.report_now());
        }
        Ok(info)
    }

    /// Registers `code` as the recovery code protecting `key` for `account`.
    pub fn register(
        &self,
        account: &str,
        code: SecretString,
        key: &MasterKey,
    ) -> Result<(), ErrorReport> {
        let client = self.running()?.client.clone();
        self.register_with(client, account, code, key)
    }

    fn register_with(
        &self,
        client: VaultClient,
        account: &str,
        code: SecretString,
        key: &MasterKey,
    ) -> Result<(), ErrorReport> {
        let account = account.to_string();
        let k: SecretBox<[u8; 32]> = SecretBox::new(Box::new(*key.expose_bytes()));
        self.wait(async move { client.register(&account, &code, &k).await })?
            .map_err(rep)
    }

    /// Registers `code` for `account` in the fleet `target`, which is not
    /// the one in use (that stays as it is): the fleet must verify first,
    /// as before any use of a code. Returns what was verified.
    pub fn register_at(
        &self,
        target: &VaultTarget,
        account: &str,
        code: SecretString,
        key: &MasterKey,
    ) -> Result<VaultInfo, ErrorReport> {
        let r = Arc::new(self.connect(target)?);
        let out = self.info_of(&r).and_then(|info| {
            if !info.validated {
                return Err(AppError::FleetNotVerified.report_now());
            }
            self.register_with(r.client.clone(), account, code, key)?;
            Ok(info)
        });
        self.stop(r);
        out
    }

    /// Recovers K with `code` (a wrong code costs one attempt).
    pub fn recover(&self, account: &str, code: SecretString) -> Result<MasterKey, ErrorReport> {
        self.recover_reporting(account, code).map(|(k, _)| k)
    }

    /// [`Vault::recover`], with the wrong guesses the HSMs counted since the
    /// last successful recovery (their count, and when the last ones began,
    /// Unix seconds): the UI must show them ("someone tried N wrong codes").
    pub fn recover_reporting(
        &self,
        account: &str,
        code: SecretString,
    ) -> Result<(MasterKey, (u32, Vec<u64>)), ErrorReport> {
        let client = self.running()?.client.clone();
        let attempt = attempt_digest(&self.refusal_key, account, &code);
        {
            use subtle::ConstantTimeEq;
            let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if refused.is_some_and(|r| bool::from(r.ct_eq(&attempt))) {
                return Err(AppError::SameWrongCode.report());
            }
        }
        let account = account.to_string();
        let r = self.wait(async move { client.recover(&account, &code).await })?;
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = match &r {
            Err(e) if e.kind() == coffer_error::ErrorKind::WrongRecoveryCode => Some(attempt),
            _ => None,
        };
        let r = r.map_err(rep)?;
        if r.wrong_guesses > 0 {
            tracing::warn!(
                wrong_guesses = r.wrong_guesses,
                "wrong recovery codes were tried since the last recovery"
            );
        }
        Ok((
            MasterKey::from_bytes(*r.key.expose_secret()),
            (r.wrong_guesses, r.wrong_guess_times.clone()),
        ))
    }

    /// A remote vault: asks its account service to mail a code to
    /// `account` (an e-mail address). The demo vault needs none (its mail
    /// goes to the outbox the app reads).
    pub fn send_mail_code(&self, account: &str) -> Result<(), ErrorReport> {
        let client = self.running()?.client.clone();
        let account = account.to_string();
        self.wait(async move { client.send_mail_code(&account).await })?
            .map_err(rep)
    }

    /// [`Vault::send_mail_code`] for the vault `target`, which is not the
    /// one in use (a vault the code is about to move to).
    pub fn send_mail_code_at(
        &self,
        target: &VaultTarget,
        account: &str,
    ) -> Result<(), ErrorReport> {
        let r = Arc::new(self.connect(target)?);
        let client = r.client.clone();
        let account = account.to_string();
        let out = self
            .wait(async move { client.send_mail_code(&account).await })
            .and_then(|x| x.map_err(rep));
        self.stop(r);
        out
    }

    /// [`Vault::verify_mail_code`] for the vault `target` (kept for the
    /// connections to it that follow, e.g. the move's).
    pub fn verify_mail_code_at(
        &self,
        target: &VaultTarget,
        account: &str,
        code: SecretString,
    ) -> Result<(), ErrorReport> {
        let r = Arc::new(self.connect(target)?);
        let client = r.client.clone();
        let account = account.to_string();
        let out = self
            .wait(async move { client.verify_mail_code(&account, &code).await })
            .and_then(|x| x.map_err(rep));
        self.stop(r);
        out
    }

    /// The code from that mail, for the account ticket every following
    /// request of `account` needs (30 minutes).
    pub fn verify_mail_code(&self, account: &str, code: SecretString) -> Result<(), ErrorReport> {
        let client = self.running()?.client.clone();
        let account = account.to_string();
        self.wait(async move { client.verify_mail_code(&account, &code).await })?
            .map_err(rep)
    }

    /// Changes the recovery code (the old one stays valid until the new one
    /// is committed).
    pub fn change(
        &self,
        account: &str,
        old: SecretString,
        new: SecretString,
    ) -> Result<(), ErrorReport> {
        let client = self.running()?.client.clone();
        let account = account.to_string();
        self.wait(async move { client.change(&account, &old, &new).await })?
            .map_err(rep)
    }

    /// Deletes the vault record (needs the current code).
    pub fn delete(&self, account: &str, code: SecretString) -> Result<(), ErrorReport> {
        let client = self.running()?.client.clone();
        let account = account.to_string();
        self.wait(async move { client.delete(&account, &code).await })?
            .map_err(rep)
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(rt) = self.rt.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if let Ok(rt) = Arc::try_unwrap(rt) {
                rt.shutdown_background();
            }
        }
    }
}

/// Where the vault keeps its state by default.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("vault")
}

/// Where the trust states of remote fleets are kept.
pub fn trust_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("vault-trust")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_is_an_estimate_that_refuses_short_and_repetitive_codes() {
        assert!(!code_strength("").acceptable);
        assert!(!code_strength("password").acceptable, "too short");
        assert!(!code_strength("aaaaaaaaaaaaaaaa").acceptable, "repeats");
        // 24 times the same letter was "fair" with a character count.
        assert!(!code_strength(&"a".repeat(24)).acceptable, "repeats");
        assert!(!code_strength("abcdefghijklmnop").acceptable, "a sequence");
        assert!(
            !code_strength("qwertyuiopasdfgh").acceptable,
            "a keyboard row"
        );
        assert!(
            !code_strength("password12345678").acceptable,
            "a common password"
        );
        for code in ["violet tangerine orbit 42", "correct horse battery staple"] {
            let s = code_strength(code);
            println!("{code:?}: {s:?}");
            assert!(s.acceptable, "{code}: {s:?}");
        }
        let s = code_strength("quartz ember lagoon vintage mosaic");
        assert!(s.acceptable, "{s:?}");
        let s = code_strength("k7#Qv!p2Lz@9xR4mW8%tYc3N");
        assert!(s.acceptable && s.label == "strong", "{s:?}");
    }
}
