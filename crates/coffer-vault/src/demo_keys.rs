//! The embedded demo deployment's private keys, sealed at rest under one
//! root key that the caller keeps outside the folder.
//!
//! Every private key of the demo deployment is in one file,
//! [`KEYS_FILE`] (`demo-keys.sealed`): the simulated HSMs' node configs
//! (sealing keys and pairwise link keys), the fleet secrets (OPAQUE server
//! setup and state-sealing key), the demo witness, operator-root and
//! vendor-root signing keys and the HSM identity keys. It is sealed with
//! AES-256-SIV under `HKDF-SHA-256(ikm = root key, info = LABEL || 0x00 ||
//! folder id)` (64 bytes), so it opens only with the root key and only in
//! the folder whose id ([`ID_FILE`], `demo-fleet.id`, 32 random hex digits,
//! public) it was sealed for. The root key is 32 random bytes the caller
//! keeps: the app keeps it in the OS keyring under an account named after
//! the folder id, `coffer-vault embedded` reads it from `--root-key-file`.
//! coffer-vault itself never stores it.
//!
//! Everything else in the folder is public (the deployment evidence, the
//! fleet-key artifact, the witness's log, the folder id, a client's trust
//! state) or sealed under the HSM nodes' sealing keys (each node's raft
//! storage and rollback counter), which are themselves only in the sealed
//! file. A copy of the folder therefore holds no key that opens anything.
//!
//! Folders written before the keys were sealed (`fleet.json` with the node
//! keys in hex, `hsm-secrets.json`, the `*.key` files) are adopted once by
//! [`adopt_plaintext`]: the sealed file is written beside and renamed into
//! place, then the plaintext files are removed. A crash before the rename
//! leaves the plaintext folder as it was (adopted again at the next start);
//! a crash after it leaves plaintext files that the next start removes once
//! the sealed file has opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use coffer_fleet::inprocess::FLEET_FILE;
use coffer_fleet::{FleetSetup, NodeConfig, RaftTuning};
use coffer_hsm::{HsmSecrets, Sealer};
use coffer_transparency::NoteSigner;
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::ServerError;

/// The folder's id: 32 hex digits, public; what the root key is found by.
pub const ID_FILE: &str = "demo-fleet.id";
/// Every private key of the demo deployment, sealed under the root key.
pub const KEYS_FILE: &str = "demo-keys.sealed";
/// The format name inside [`KEYS_FILE`].
pub const FORMAT: &str = "coffer-demo-keys/v1";
const LABEL: &str = "coffer demo fleet keys v1";

/// The demo witness key's name.
pub const WITNESS_NAME: &str = "coffer-demo-witness";
/// The demo operator root key's name.
pub const OPERATOR_NAME: &str = "coffer-demo-operator";
/// The demo (simulated) HSM-vendor root key's name.
pub const VENDOR_NAME: &str = "coffer-demo-hsm-vendor";

/// Files of the layout before the keys were sealed (all removed on adoption).
const LEGACY_SECRETS_FILE: &str = "hsm-secrets.json";
const LEGACY_OPERATOR_KEY: &str = "demo-operator-root.key";
const LEGACY_VENDOR_KEY: &str = "demo-vendor-root.key";
const LEGACY_WITNESS_KEY: &str = "witness/witness.key";
const LEGACY_IDENTITIES_DIR: &str = "hsm-identities";

/// The root key the demo deployment's keys are sealed under (32 random
/// bytes, zeroized on drop, never printed).
pub type RootKey = SecretBox<[u8; 32]>;

/// A fresh random root key.
pub fn generate_root_key() -> RootKey {
    SecretBox::init_with_mut(|k: &mut [u8; 32]| rand::rngs::OsRng.fill_bytes(k))
}

/// What a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderState {
    /// No demo fleet yet: the first start creates one.
    Empty,
    /// A demo fleet whose keys are sealed ([`KEYS_FILE`]).
    Sealed,
    /// A demo fleet of the earlier layout, keys in plaintext files: the
    /// next start seals them and removes the plaintext.
    Plaintext,
    /// Node state or deployment evidence without any keys: the sealed file
    /// was removed or never completely written by this folder's fleet.
    KeysMissing,
}

/// Says what `dir` holds (without opening anything).
pub fn folder_state(dir: &Path) -> FolderState {
    if dir.join(KEYS_FILE).exists() {
        FolderState::Sealed
    } else if dir.join(FLEET_FILE).exists() {
        FolderState::Plaintext
    } else if dir.join(crate::ceremony::EVIDENCE_FILE).exists() || has_node_dirs(dir) {
        FolderState::KeysMissing
    } else {
        FolderState::Empty
    }
}

fn has_node_dirs(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("node-") && e.path().is_dir()
            })
        })
        .unwrap_or(false)
}

fn valid_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io(p: &Path, e: std::io::Error) -> ServerError {
    ServerError::Io(format!("{}: {e}", p.display()))
}

/// The folder's id, if it has one.
pub fn folder_id(dir: &Path) -> Result<Option<String>, ServerError> {
    let p = dir.join(ID_FILE);
    match std::fs::read_to_string(&p) {
        Ok(s) if valid_id(s.trim()) => Ok(Some(s.trim().to_string())),
        Ok(_) => Err(ServerError::Config(format!(
            "{} is not 32 hex digits",
            p.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&p, e)),
    }
}

/// The folder's id, made (and written atomically) if it has none yet. The
/// folder is created if needed.
pub fn ensure_folder_id(dir: &Path) -> Result<String, ServerError> {
    if let Some(id) = folder_id(dir)? {
        return Ok(id);
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut raw = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let id = hex::encode(raw);
    write_atomic(dir, ID_FILE, format!("{id}\n").as_bytes(), 0o644)?;
    Ok(id)
}

/// Writes `dir/name` whole or not at all: into `name.tmp` (fsynced), renamed
/// over `name`, then the directory fsynced.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(())
}

/// A copy of a signing key (the type is deliberately not `Clone`).
pub(crate) fn copy_signer(s: &NoteSigner) -> NoteSigner {
    // A string this type wrote always parses back.
    NoteSigner::parse(&s.to_private_string()).unwrap_or_else(|_| unreachable_signer())
}

#[cold]
fn unreachable_signer() -> NoteSigner {
    // `to_private_string` output always parses; this is never reached, and
    // a fresh key (never a fixed one) keeps it harmless if it were.
    NoteSigner::generate("unreachable").expect("randomness")
}

/// Every private key of one demo deployment.
pub struct DemoKeys {
    /// The simulated HSMs' node configs: sealing and link keys.
    pub nodes: Vec<NodeConfig>,
    /// The fleet secrets (OPAQUE server setup, state-sealing key).
    pub hsm_secrets: Arc<HsmSecrets>,
    /// The demo witness's signing key.
    pub witness: NoteSigner,
    /// The demo operator root key.
    pub operator: NoteSigner,
    /// The demo (simulated) HSM-vendor root key.
    pub vendor: NoteSigner,
    /// The HSM identity keys made at the ceremony (empty before it ran).
    pub hsm_identities: Vec<NoteSigner>,
    /// The demo cosigning witnesses' keys ([`crate::cosigners`]; made when
    /// first needed).
    pub cosigners: Vec<NoteSigner>,
    /// The demo account service's ticket key ([`crate::account`]; made
    /// when first needed, its public half then fixed in `hsm_secrets`).
    pub ticket_signer: Option<coffer_vault_proto::account::TicketSigner>,
}

impl std::fmt::Debug for DemoKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoKeys")
            .field("fleet_id", &self.fleet_id())
            .field("nodes", &self.nodes.len())
            .field("hsm_identities", &self.hsm_identities.len())
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// The sealed file as it is on disk (public parts only).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    format: String,
    folder_id: String,
    /// base64 of `Sealer::seal(LABEL, payload JSON)`.
    sealed: String,
}

/// What is sealed. Key strings are wiped when it is dropped.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    nodes: Vec<NodeConfig>,
    /// base64 of `HsmSecrets::seal_under` (the HSM crate's one export form)
    /// under the same root-derived sealer.
    hsm_secrets: String,
    witness: String,
    operator: String,
    vendor: String,
    hsm_identities: Vec<String>,
    /// Absent in files sealed before the demo cosigners existed.
    #[serde(default)]
    cosigners: Vec<String>,
    /// The account service's ticket key seed, hex (absent in files sealed
    /// before accounts were authenticated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket_key: Option<String>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.hsm_secrets.zeroize();
        self.witness.zeroize();
        self.operator.zeroize();
        self.vendor.zeroize();
        for s in self.hsm_identities.iter_mut().chain(&mut self.cosigners) {
            s.zeroize();
        }
        if let Some(k) = self.ticket_key.as_mut() {
            k.zeroize();
        }
    }
}

/// The sealer of a folder's keys: the root key stretched to AES-SIV's 64
/// bytes and bound to the folder id.
fn sealer(root: &RootKey, folder_id: &str) -> Sealer {
    let mut info = LABEL.as_bytes().to_vec();
    info.push(0);
    info.extend_from_slice(folder_id.as_bytes());
    let mut k = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA-256's limit of 255 * 32: cannot fail.
    let _ = Hkdf::<Sha256>::new(None, root.expose_secret()).expand(&info, k.as_mut());
    Sealer::new(k)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn parse_signer(s: &str, what: &str) -> Result<NoteSigner, ServerError> {
    NoteSigner::parse(s).map_err(|e| ServerError::Config(format!("the sealed {what} key: {e}")))
}

impl DemoKeys {
    /// New keys for an `nodes`-node demo fleet (fleet id `local-<16 hex>`).
    pub fn generate(nodes: usize, guess_limit: u32) -> Result<Self, ServerError> {
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let fleet_id = format!("local-{}", hex::encode(id));
        let configs = FleetSetup::create(nodes, &fleet_id, RaftTuning::local())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let secrets = HsmSecrets::generate(&fleet_id, guess_limit)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let gen = |name: &str| {
            NoteSigner::generate(name).map_err(|e| ServerError::Config(format!("{name}: {e}")))
        };
        Ok(DemoKeys {
            nodes: configs,
            hsm_secrets: Arc::new(secrets),
            witness: gen(WITNESS_NAME)?,
            operator: gen(OPERATOR_NAME)?,
            vendor: gen(VENDOR_NAME)?,
            hsm_identities: Vec::new(),
            cosigners: Vec::new(),
            ticket_signer: None,
        })
    }

    /// The fleet id (of the node configs).
    pub fn fleet_id(&self) -> &str {
        self.nodes.first().map_or("", |c| c.fleet_id.as_str())
    }

    /// Seals the keys into `dir/demo-keys.sealed` (atomically, mode 0600).
    pub fn seal(&self, dir: &Path, folder_id: &str, root: &RootKey) -> Result<(), ServerError> {
        let s = sealer(root, folder_id);
        let payload = Payload {
            nodes: self.nodes.clone(),
            hsm_secrets: b64().encode(self.hsm_secrets.seal_under(&s)),
            witness: self.witness.to_private_string().to_string(),
            operator: self.operator.to_private_string().to_string(),
            vendor: self.vendor.to_private_string().to_string(),
            hsm_identities: self
                .hsm_identities
                .iter()
                .map(|k| k.to_private_string().to_string())
                .collect(),
            cosigners: self
                .cosigners
                .iter()
                .map(|k| k.to_private_string().to_string())
                .collect(),
            ticket_key: self.ticket_signer.as_ref().map(|t| hex::encode(*t.seed())),
        };
        // Sized up front so that the buffer holding the keys is never
        // reallocated (and so never leaves an unwiped copy behind).
        let mut json = Zeroizing::new(Vec::with_capacity(64 * 1024));
        serde_json::to_writer(&mut *json, &payload)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let file = SealedFile {
            format: FORMAT.into(),
            folder_id: folder_id.into(),
            sealed: b64().encode(s.seal(LABEL, &json)),
        };
        let text =
            serde_json::to_vec_pretty(&file).map_err(|e| ServerError::Config(e.to_string()))?;
        write_atomic(dir, KEYS_FILE, &text, 0o600)
    }

    /// Opens `dir/demo-keys.sealed` with `root`.
    pub fn open(dir: &Path, folder_id: &str, root: &RootKey) -> Result<Self, ServerError> {
        let p = dir.join(KEYS_FILE);
        let text = std::fs::read(&p).map_err(|e| io(&p, e))?;
        let file: SealedFile = serde_json::from_slice(&text)
            .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
        if file.format != FORMAT {
            return Err(ServerError::Config(format!(
                "{}: unknown format {:?}",
                p.display(),
                file.format
            )));
        }
        if file.folder_id != folder_id {
            return Err(ServerError::DemoKeysLocked(format!(
                "{} was sealed for the folder {}, this folder is {folder_id}",
                p.display(),
                file.folder_id
            )));
        }
        let sealed = b64()
            .decode(&file.sealed)
            .map_err(|_| ServerError::Config(format!("{}: bad base64", p.display())))?;
        let s = sealer(root, folder_id);
        let json = s.open(LABEL, &sealed).ok_or_else(|| {
            ServerError::DemoKeysLocked(format!(
                "{} does not open with this root key (another key, or the file was altered)",
                p.display()
            ))
        })?;
        let payload: Payload = serde_json::from_slice(&json)
            .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
        let secrets_bytes = Zeroizing::new(
            b64()
                .decode(&payload.hsm_secrets)
                .map_err(|_| ServerError::Config(format!("{}: bad fleet secrets", p.display())))?,
        );
        let secrets = HsmSecrets::open_under(&s, &secrets_bytes)
            .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
        for c in &payload.nodes {
            c.validate()
                .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
        }
        Ok(DemoKeys {
            nodes: payload.nodes.clone(),
            hsm_secrets: Arc::new(secrets),
            witness: parse_signer(&payload.witness, "witness")?,
            operator: parse_signer(&payload.operator, "operator")?,
            vendor: parse_signer(&payload.vendor, "vendor")?,
            hsm_identities: payload
                .hsm_identities
                .iter()
                .map(|k| parse_signer(k, "HSM identity"))
                .collect::<Result<_, _>>()?,
            cosigners: payload
                .cosigners
                .iter()
                .map(|k| parse_signer(k, "cosigner"))
                .collect::<Result<_, _>>()?,
            ticket_signer: match &payload.ticket_key {
                Some(h) => {
                    let seed = Zeroizing::new(hex::decode(h).map_err(|_| {
                        ServerError::Config(format!("{}: bad ticket key", p.display()))
                    })?);
                    let seed: Zeroizing<[u8; 32]> =
                        Zeroizing::new(seed.as_slice().try_into().map_err(|_| {
                            ServerError::Config(format!("{}: bad ticket key", p.display()))
                        })?);
                    Some(coffer_vault_proto::account::TicketSigner::from_seed(&seed))
                }
                None => None,
            },
        })
    }
}

fn legacy_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        FLEET_FILE,
        LEGACY_SECRETS_FILE,
        "hsm-secrets.json.tmp",
        LEGACY_OPERATOR_KEY,
        LEGACY_VENDOR_KEY,
        LEGACY_WITNESS_KEY,
    ]
    .iter()
    .flat_map(|f| {
        let p = dir.join(f);
        let public = coffer_witness::keys::pub_path(&p);
        [p, public]
    })
    .collect();
    v.dedup();
    v
}

/// Removes the plaintext key files of the earlier layout (and their public
/// halves, which the new layout does not keep either).
pub fn remove_plaintext(dir: &Path) -> Result<(), ServerError> {
    let mut removed = false;
    for p in legacy_paths(dir) {
        match std::fs::remove_file(&p) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p, e)),
        }
    }
    let ids = dir.join(LEGACY_IDENTITIES_DIR);
    match std::fs::remove_dir_all(&ids) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&ids, e)),
    }
    if removed {
        sync_dir(dir)?;
        sync_dir(&dir.join(crate::embedded::WITNESS_DIR)).or_else(|e| {
            if dir.join(crate::embedded::WITNESS_DIR).exists() {
                Err(e)
            } else {
                Ok(())
            }
        })?;
        tracing::info!(dir = %dir.display(), "the demo fleet's plaintext key files were removed");
    }
    Ok(())
}

fn read_legacy_signer(dir: &Path, file: &str, name: &str) -> Result<NoteSigner, ServerError> {
    let p = dir.join(file);
    if p.exists() {
        coffer_witness::keys::read_signer(&p).map_err(|e| ServerError::Config(e.to_string()))
    } else {
        NoteSigner::generate(name).map_err(|e| ServerError::Config(e.to_string()))
    }
}

/// Adopts a folder of the earlier layout: its plaintext keys are read,
/// sealed under `root` (written beside, renamed into place) and then
/// removed. Keys it never got to write (a first start that stopped half
/// way) are made now, as that start would have.
pub fn adopt_plaintext(
    dir: &Path,
    folder_id: &str,
    root: &RootKey,
    guess_limit: u32,
) -> Result<DemoKeys, ServerError> {
    let f = dir.join(FLEET_FILE);
    let text = Zeroizing::new(std::fs::read_to_string(&f).map_err(|e| io(&f, e))?);
    let nodes: Vec<NodeConfig> = serde_json::from_str(&text)
        .map_err(|e| ServerError::Config(format!("{}: {e}", f.display())))?;
    let first = nodes
        .first()
        .ok_or_else(|| ServerError::Config(format!("{}: no node", f.display())))?;
    let fleet_id = first.fleet_id.clone();
    let node_sealer = Sealer::new(Zeroizing::new(*first.sealing_key.expose()));
    let sp = dir.join(LEGACY_SECRETS_FILE);
    let secrets = if sp.exists() {
        let s = std::fs::read(&sp).map_err(|e| io(&sp, e))?;
        let sealed: Vec<String> = serde_json::from_slice(&s)
            .map_err(|e| ServerError::Config(format!("{}: {e}", sp.display())))?;
        let bytes = sealed
            .first()
            .and_then(|b| b64().decode(b).ok())
            .ok_or_else(|| ServerError::Config(format!("{}: bad contents", sp.display())))?;
        HsmSecrets::open_under(&node_sealer, &bytes)
            .map_err(|e| ServerError::Config(format!("{}: {e}", sp.display())))?
    } else {
        // The earlier first start wrote this file after the fleet file and
        // made new secrets when it was missing, as this does.
        HsmSecrets::generate(&fleet_id, guess_limit)
            .map_err(|e| ServerError::Config(e.to_string()))?
    };
    let mut hsm_identities = Vec::new();
    for i in 1..=nodes.len() {
        let p = dir.join(LEGACY_IDENTITIES_DIR).join(format!("hsm-{i}.key"));
        if p.exists() {
            hsm_identities.push(
                coffer_witness::keys::read_signer(&p)
                    .map_err(|e| ServerError::Config(e.to_string()))?,
            );
        }
    }
    let keys = DemoKeys {
        hsm_secrets: Arc::new(secrets),
        witness: read_legacy_signer(dir, LEGACY_WITNESS_KEY, WITNESS_NAME)?,
        operator: read_legacy_signer(dir, LEGACY_OPERATOR_KEY, OPERATOR_NAME)?,
        vendor: read_legacy_signer(dir, LEGACY_VENDOR_KEY, VENDOR_NAME)?,
        hsm_identities,
        cosigners: Vec::new(),
        ticket_signer: None,
        nodes,
    };
    keys.seal(dir, folder_id, root)?;
    // The sealed file is in place: from here on a crash leaves a folder the
    // next start opens (and cleans).
    remove_plaintext(dir)?;
    tracing::info!(fleet = %fleet_id, "the demo fleet's keys are now sealed under the root key");
    Ok(keys)
}

/// Reads the root key from `path` (64 hex digits, a file only its owner can
/// read), or makes one there (mode 0600) if there is none. A test and demo
/// convenience for `coffer-vault embedded --root-key-file`; the file must
/// not be inside the data folder `data_dir`, or a copy of the folder would
/// carry the key with it.
pub fn read_or_create_root_key_file(path: &Path, data_dir: &Path) -> Result<RootKey, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    let data = std::fs::canonicalize(data_dir).map_err(|e| io(data_dir, e))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = std::fs::canonicalize(parent).map_err(|e| io(parent, e))?;
    if parent.starts_with(&data) {
        return Err(ServerError::Config(format!(
            "the root key file {} is inside the data folder {}: keep it elsewhere, or a copy of the folder gives the keys away",
            path.display(),
            data_dir.display()
        )));
    }
    if !path.exists() {
        use std::io::Write;
        let key = generate_root_key();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| io(path, e))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.expose_secret())));
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| io(path, e))?;
        return Ok(key);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| io(path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(ServerError::Config(format!(
                "the root key file {} is readable by others; chmod 600 it",
                path.display()
            )));
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| io(path, e))?);
    let mut raw = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), raw.as_mut()).map_err(|_| {
        ServerError::Config(format!(
            "the root key file {} does not hold 64 hex digits",
            path.display()
        ))
    })?;
    Ok(SecretBox::init_with_mut(|k: &mut [u8; 32]| {
        k.copy_from_slice(raw.as_ref())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_seal_and_open_only_with_the_root_key_and_folder_id() {
        let dir = tempfile::tempdir().unwrap();
        let id = ensure_folder_id(dir.path()).unwrap();
        assert_eq!(ensure_folder_id(dir.path()).unwrap(), id, "stable");
        assert!(valid_id(&id));
        assert_eq!(folder_state(dir.path()), FolderState::Empty);
        let root = generate_root_key();
        let mut keys = DemoKeys::generate(3, 10).unwrap();
        keys.hsm_identities
            .push(NoteSigner::generate("hsm-1").unwrap());
        keys.seal(dir.path(), &id, &root).unwrap();
        assert_eq!(folder_state(dir.path()), FolderState::Sealed);
        assert!(!dir.path().join(format!("{KEYS_FILE}.tmp")).exists());
        let back = DemoKeys::open(dir.path(), &id, &root).unwrap();
        assert_eq!(back.fleet_id(), keys.fleet_id());
        assert!(back.fleet_id().starts_with("local-"));
        assert_eq!(
            back.hsm_secrets.server_public_key(),
            keys.hsm_secrets.server_public_key()
        );
        assert_eq!(back.operator.verifier(), keys.operator.verifier());
        assert_eq!(back.witness.verifier(), keys.witness.verifier());
        assert_eq!(back.vendor.verifier(), keys.vendor.verifier());
        assert_eq!(back.hsm_identities.len(), 1);
        assert_eq!(
            back.nodes[2].sealing_key.expose(),
            keys.nodes[2].sealing_key.expose()
        );

        let other = generate_root_key();
        let e = DemoKeys::open(dir.path(), &id, &other).unwrap_err();
        assert!(matches!(e, ServerError::DemoKeysLocked(_)), "{e}");
        let e = DemoKeys::open(dir.path(), &"0".repeat(32), &root).unwrap_err();
        assert!(matches!(e, ServerError::DemoKeysLocked(_)), "{e}");
        // One flipped bit anywhere in the sealed part.
        let p = dir.path().join(KEYS_FILE);
        let mut f: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let mut raw = b64().decode(f["sealed"].as_str().unwrap()).unwrap();
        let n = raw.len();
        raw[n / 2] ^= 1;
        f["sealed"] = b64().encode(&raw).into();
        std::fs::write(&p, serde_json::to_vec(&f).unwrap()).unwrap();
        let e = DemoKeys::open(dir.path(), &id, &root).unwrap_err();
        assert!(matches!(e, ServerError::DemoKeysLocked(_)), "{e}");

        let dbg = format!("{back:?}");
        assert!(
            dbg.contains("redacted") && !dbg.contains("PRIVATE"),
            "{dbg}"
        );
    }

    #[test]
    fn a_root_key_file_is_private_outside_the_folder_and_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let inside = data.join("root.key");
        let e = read_or_create_root_key_file(&inside, &data).unwrap_err();
        assert!(e.to_string().contains("inside the data folder"), "{e}");
        assert!(!inside.exists());
        let key_path = t.path().join("root.key");
        let k1 = read_or_create_root_key_file(&key_path, &data).unwrap();
        let k2 = read_or_create_root_key_file(&key_path, &data).unwrap();
        assert_eq!(k1.expose_secret(), k2.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600);
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_or_create_root_key_file(&key_path, &data).unwrap_err();
            assert!(e.to_string().contains("readable by others"), "{e}");
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&key_path, "not hex\n").unwrap();
        assert!(read_or_create_root_key_file(&key_path, &data).is_err());
    }
}
