//! A copy of the embedded demo fleet's folder (a sync folder, a backup of
//! the home directory, a stolen laptop image) must not hand out an offline
//! dictionary attack on the recovery code.
//!
//! The attacker here holds only the copy. They look for the HSM keys in it
//! (any file that parses as the fleet's node configs, any sealed secrets
//! that open under those keys), take the OPAQUE server setup and the
//! state-sealing key out of the fleet secrets, replay the copied nodes'
//! raft logs through a state machine of their own to read every command and
//! snapshot, pull the user's OPAQUE record and wrapped K out of them, and
//! then guess the code offline: one OPAQUE login per guess against their own
//! copy of the server, no HSM and no guess counter involved. Against the
//! earlier layout (node keys in `fleet.json`) this found the code and K in
//! about 1.5 s; now the folder holds no key, and the same attack given the
//! root key (what only the OS keyring holds) still works, which shows that
//! the key is all that stands between the copy and the code.
//!
//! Also here: a folder of the earlier layout is adopted once (sealed,
//! plaintext removed; a crash at either point loses nothing), and
//! `coffer-vault embedded --root-key-file` as a real process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use coffer_error::UserFacing;
use coffer_fleet::{InProcessFleet, NodeConfig, ReplicationError, StateMachine};
use coffer_hsm::{HsmSecrets, Sealer};
use coffer_vault::demo_keys::{self, DemoKeys, FolderState, RootKey};
use coffer_vault::embedded;
use coffer_vault_client::{ExposeSecret, SecretBox, SecretString, VaultError};
use coffer_vault_proto::{crypto, ksf, Suite};
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, Identifiers, ServerLogin, ServerLoginParameters,
    ServerRegistration, ServerSetup,
};
use zeroize::Zeroizing;

const USER: &str = "ann@example.org";
const CODE: &str = "correct horse battery staple";
const K: [u8; 32] = [7; 32];
/// The attacker's dictionary (the right code is in it).
const DICTIONARY: &[&str] = &[
    "password1",
    "letmein please",
    "correct horse battery",
    CODE,
    "violet tangerine orbit 42",
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The fleet secrets' raw parts (OPAQUE server setup, state-sealing key),
/// taken out by sealing them again under a key the attacker chose.
fn raw_secrets(s: &HsmSecrets) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let mine = Sealer::new(Zeroizing::new([9u8; 64]));
    let json = mine
        .open("coffer-hsm fleet secrets v1", &s.seal_under(&mine))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let b64 = |k: &str| {
        use base64::Engine as _;
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(v[k].as_str().unwrap())
                .unwrap(),
        )
    };
    (b64("setup"), b64("seal_key"))
}

fn node_sealer(c: &NodeConfig) -> Sealer {
    Sealer::new(Zeroizing::new(*c.sealing_key.expose()))
}

/// What the attacker finds in the folder without any other help: node
/// configs in the clear, and fleet secrets that open under their keys.
fn keys_in_the_clear(copy: &Path) -> Option<(Vec<NodeConfig>, Arc<HsmSecrets>)> {
    let all = files(copy);
    let configs: Vec<NodeConfig> = all.iter().find_map(|f| {
        let bytes = std::fs::read(f).ok()?;
        serde_json::from_slice::<Vec<NodeConfig>>(&bytes)
            .ok()
            .filter(|c| !c.is_empty())
    })?;
    let secrets = all.iter().find_map(|f| {
        let bytes = std::fs::read(f).ok()?;
        let sealed: Vec<String> = serde_json::from_slice(&bytes).ok()?;
        sealed.iter().find_map(|s| {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
            configs
                .iter()
                .find_map(|c| HsmSecrets::open_under(&node_sealer(c), &b).ok())
        })
    })?;
    Some((configs, Arc::new(secrets)))
}

/// A state machine that keeps every command and snapshot it is given.
struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

impl StateMachine for Capture {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.lock().unwrap().push(command.to_vec());
        Vec::new()
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ReplicationError> {
        self.0.lock().unwrap().push(snapshot.to_vec());
        Ok(())
    }
}

/// Every `{id, upload, wrapped}` object anywhere in `v`.
fn records(v: &serde_json::Value, out: &mut Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>) {
    use base64::Engine as _;
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(id), Some(up), Some(wr)) = (m.get("id"), m.get("upload"), m.get("wrapped"))
            {
                let id: Vec<u8> = serde_json::from_value(id.clone()).unwrap_or_default();
                let b = |x: &serde_json::Value| {
                    base64::engine::general_purpose::STANDARD
                        .decode(x.as_str().unwrap_or_default())
                        .unwrap_or_default()
                };
                out.push((id, b(up), b(wr)));
            }
            m.values().for_each(|x| records(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| records(x, out)),
        _ => {}
    }
}

/// Replays the copied nodes' logs and snapshots into [`Capture`] and opens
/// them with the stolen state-sealing key.
async fn stolen_records(
    copy: &Path,
    configs: Vec<NodeConfig>,
    seal_key: &[u8],
) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let fleet = start_fleet_on(copy, configs, move || {
        Box::new(Capture(s2.clone())) as Box<dyn StateMachine>
    })
    .await;
    fleet
        .wait_for_leader(std::time::Duration::from_secs(10))
        .await
        .expect("the copied fleet elects a leader");
    // One more entry: once it is committed, everything before it is applied.
    let mut committed = false;
    for i in 0..fleet.len() {
        if fleet.propose(i, b"attacker".to_vec()).await.is_ok() {
            committed = true;
            break;
        }
    }
    assert!(committed, "the copied fleet commits");
    fleet.shutdown().await;
    let key: [u8; 64] = seal_key.try_into().unwrap();
    let state = Sealer::new(Zeroizing::new(key));
    let mut out = Vec::new();
    for blob in seen.lock().unwrap().iter() {
        for label in ["coffer-hsm command v1", "coffer-hsm snapshot v1"] {
            if let Some(json) = state.open(label, blob) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) {
                    records(&v, &mut out);
                }
            }
        }
    }
    out
}

async fn start_fleet_on(
    dir: &Path,
    configs: Vec<NodeConfig>,
    make: impl Fn() -> Box<dyn StateMachine> + Send + Sync + 'static,
) -> InProcessFleet {
    InProcessFleet::start_from(configs, dir, Arc::new(make))
        .await
        .unwrap()
}

/// The offline dictionary attack: each guess is one OPAQUE login against
/// the attacker's own copy of the server. Returns the code and K.
fn guess_offline(
    setup: &[u8],
    user: &str,
    recs: &[(Vec<u8>, Vec<u8>, Vec<u8>)],
) -> Option<(String, [u8; 32])> {
    let setup = ServerSetup::<Suite>::deserialize(setup).ok()?;
    let ksf = ksf();
    let mut rng = rand::rngs::OsRng;
    for (id, upload, wrapped) in recs {
        let Ok(file) = ServerRegistration::<Suite>::deserialize(upload) else {
            continue;
        };
        let mut cid = b"coffer-vault-v1\0".to_vec();
        cid.extend_from_slice(&(user.len() as u32).to_be_bytes());
        cid.extend_from_slice(user.as_bytes());
        cid.extend_from_slice(id);
        for guess in DICTIONARY {
            let c = ClientLogin::<Suite>::start(&mut rng, guess.as_bytes()).unwrap();
            let s = ServerLogin::start(
                &mut rng,
                &setup,
                Some(file.clone()),
                c.message,
                &cid,
                ServerLoginParameters::default(),
            )
            .unwrap();
            if let Ok(f) = c.state.finish(
                &mut rng,
                guess.as_bytes(),
                s.message,
                ClientLoginFinishParameters::new(None, Identifiers::default(), Some(&ksf)),
            ) {
                if let Ok(k) = crypto::unwrap_key(&f.export_key, user, wrapped) {
                    return Some((guess.to_string(), *k));
                }
            }
        }
    }
    None
}

/// The whole attack on a copy, with whatever keys the attacker can find:
/// in the clear, or (`keyring`) by opening the sealed keys with the root key.
async fn attack(copy: &Path, keyring: Option<&RootKey>) -> Result<(String, [u8; 32]), String> {
    let (configs, secrets) = match keyring {
        None => keys_in_the_clear(copy).ok_or("no usable key material in the folder")?,
        Some(root) => {
            let id = demo_keys::folder_id(copy)
                .map_err(|e| e.to_string())?
                .ok_or("no folder id")?;
            let k = DemoKeys::open(copy, &id, root).map_err(|e| e.to_string())?;
            (k.nodes.clone(), k.hsm_secrets.clone())
        }
    };
    let (setup, seal_key) = raw_secrets(&secrets);
    let replay = copy.with_extension("replay");
    let _ = std::fs::remove_dir_all(&replay);
    copy_dir(copy, &replay);
    let recs = stolen_records(&replay, configs, &seal_key).await;
    std::fs::remove_dir_all(&replay).unwrap();
    if recs.is_empty() {
        return Err("no record found".into());
    }
    guess_offline(&setup, USER, &recs).ok_or_else(|| "the dictionary did not hit".into())
}

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// A folder in which `USER` registered `CODE` with the demo fleet, checked
/// the fleet over the air (its trust state is in the folder, as the app's
/// is) and spent one wrong guess; the fleet is stopped.
async fn registered_folder(dir: &Path, root: &RootKey) {
    let v = embedded::start_with(dir, root, 3, 10).await.unwrap();
    let ota = v.ota_client(Some(dir.join("trust-state.json"))).unwrap();
    assert!(ota.verify().await.unwrap().verified);
    let c = ota.client;
    c.register(USER, &code(CODE), &SecretBox::new(Box::new(K)))
        .await
        .unwrap();
    assert_eq!(
        c.recover(USER, &code("not it at all")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    v.shutdown().await;
}

/// Starts the folder's fleet with `root`: one more wrong guess answers
/// `remaining`, then the right code gives K back.
async fn still_recovers(dir: &Path, root: &RootKey, remaining: u32) {
    let v = embedded::start_with(dir, root, 3, 10).await.unwrap();
    let c = v.client();
    assert_eq!(
        c.recover(USER, &code("still not it")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: remaining
        }
    );
    let r = c.recover(USER, &code(CODE)).await.unwrap();
    assert_eq!(r.key.expose_secret(), &K);
    v.shutdown().await;
    // Once stopped, the witness and its cosigners close their logs (SQLite
    // removes a WAL file with its last connection). Before, they were only
    // aborted and closed their logs a moment later: a listing of the folder
    // raced with that (a file vanished between the listing and its
    // reading, seen once in a full run). One moment remains: axum's server
    // ends when its last connection says it is done, and that connection's
    // task drops its copy of the router (which holds the cosigner's
    // database) just after (seen once in a full run: cosigner-2's WAL still
    // there). So the test waits, at most 5 s, for the files to go.
    // (The nodes' raft.sqlite stays open while the vault value lives, and
    // today even after it is dropped: a known leak, see docs/fleet.md.)
    let still_open = || -> Vec<PathBuf> {
        files(&dir.join(embedded::WITNESS_DIR))
            .into_iter()
            .filter(|f| {
                let n = f.to_string_lossy();
                n.ends_with("-wal") || n.ends_with("-shm") || n.ends_with("-journal")
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut open = still_open();
    while !open.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        open = still_open();
    }
    assert!(open.is_empty(), "still open 5 s after shutdown: {open:?}");
}

/// Every private key of the deployment in `dir`, in the encodings a file
/// could hold it in (raw, hex, base64, key strings).
fn secret_needles(dir: &Path, root: &RootKey) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let id = demo_keys::folder_id(dir).unwrap().unwrap();
    let k = DemoKeys::open(dir, &id, root).unwrap();
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for c in &k.nodes {
        raw.push(c.sealing_key.expose().to_vec());
        raw.extend(c.peers.iter().map(|p| p.link_key.expose().to_vec()));
    }
    let (setup, seal_key) = raw_secrets(&k.hsm_secrets);
    raw.push(setup.to_vec());
    raw.push(seal_key.to_vec());
    let mut strings: Vec<String> = Vec::new();
    for s in [&k.witness, &k.operator, &k.vendor]
        .into_iter()
        .chain(k.hsm_identities.iter())
    {
        let private = s.to_private_string().to_string();
        // PRIVATE+KEY+name+keyid+base64 (the base64 may hold '+' itself).
        let b64 = private.splitn(5, '+').nth(4).unwrap().to_string();
        let seed = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .unwrap();
        raw.push(seed[1..].to_vec());
        strings.push(private);
        strings.push(b64);
    }
    assert!(
        k.hsm_identities.len() == 3,
        "the ceremony's keys are sealed too"
    );
    let mut out = Vec::new();
    for r in raw {
        out.push(hex::encode(&r).into_bytes());
        out.push(
            base64::engine::general_purpose::STANDARD
                .encode(&r)
                .into_bytes(),
        );
        out.push(r);
    }
    out.extend(strings.into_iter().map(String::into_bytes));
    out
}

/// Every file of `dir` is public or sealed, by name and by what it holds,
/// and none holds any of the deployment's private keys in any encoding.
fn assert_public_or_sealed(dir: &Path, root: &RootKey) {
    let needles = secret_needles(dir, root);
    let id = demo_keys::folder_id(dir).unwrap().unwrap();
    let mut kinds = std::collections::BTreeMap::new();
    for f in files(dir) {
        let rel = f.strip_prefix(dir).unwrap().to_string_lossy().to_string();
        let data = std::fs::read(&f).unwrap();
        let kind = match rel.as_str() {
            demo_keys::ID_FILE => {
                assert_eq!(String::from_utf8_lossy(&data).trim(), id);
                "public: the folder id"
            }
            demo_keys::KEYS_FILE => {
                let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(v["format"], demo_keys::FORMAT);
                assert_eq!(v["folder_id"], id.as_str());
                let e = DemoKeys::open(dir, &id, &embedded::generate_root_key()).unwrap_err();
                assert_eq!(e.code(), "CF-V057");
                "sealed under the root key"
            }
            "deployment-evidence.json" => {
                serde_json::from_slice::<coffer_transparency::DeploymentEvidence>(&data).unwrap();
                "public: the deployment evidence"
            }
            "fleet-keys.json" => {
                coffer_transparency::FleetKeys::parse_canonical(
                    std::str::from_utf8(&data).unwrap(),
                )
                .unwrap();
                "public: the fleet-key artifact"
            }
            "trust-state.json" => {
                serde_json::from_slice::<serde_json::Value>(&data).unwrap();
                "public: a client's trust state"
            }
            "demo-public-keys.json" => {
                serde_json::from_slice::<coffer_vault::embedded::DemoPublicKeys>(&data).unwrap();
                "public: the demo deployment's public keys"
            }
            r if r.starts_with("witness/log.db") => "public: the witness's log",
            r if r.starts_with("witness/cosigner-") && r.contains(".db") => {
                "public: a cosigner's view of the log"
            }
            "witness/trust.policy" => "public: the trust policy",
            "outbox.jsonl" => {
                // Codes of the demo mail (10 minutes, one ticket each):
                // online guesses at most, as the host has; no key.
                "the demo outbox: mail codes, no key"
            }
            r if r.starts_with("node-") && (r.ends_with(".nvram") || r.contains('/')) => {
                "sealed under a node's sealing key"
            }
            _ => panic!("{rel}: neither public nor sealed"),
        };
        for n in &needles {
            assert!(
                !data.windows(n.len()).any(|w| w == &n[..]),
                "{rel} ({kind}) holds a private key"
            );
        }
        *kinds.entry(kind).or_insert(0) += 1;
    }
    for k in [
        "public: the folder id",
        "sealed under the root key",
        "public: the deployment evidence",
        "public: the witness's log",
        "sealed under a node's sealing key",
    ] {
        assert!(kinds.contains_key(k), "no file is {k}: {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_data_folder_gives_no_offline_guess_of_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("vault");
    let root = embedded::generate_root_key();
    registered_folder(&folder, &root).await;
    let copy = tmp.path().join("sync-folder-copy");
    copy_dir(&folder, &copy);

    let t = std::time::Instant::now();
    let outcome = attack(&copy, None).await;
    assert_eq!(
        outcome.map(|(c, k)| (c, k == K)),
        Err("no usable key material in the folder".to_string()),
        "from the copy alone, after {:?}",
        t.elapsed()
    );
    assert_public_or_sealed(&copy, &root);
    // The copy does not start without the key either.
    match embedded::start_with(&copy, &embedded::generate_root_key(), 3, 10).await {
        Err(e) => assert_eq!(e.code(), "CF-V057"),
        Ok(_) => panic!("the copy started under another root key"),
    }

    // With the root key (what the OS keyring holds) the same attack works:
    // the key is what protects the copy.
    let (found, k) = attack(&copy, Some(&root)).await.unwrap();
    assert_eq!((found.as_str(), k), (CODE, K));

    // Without its sealed keys a folder refuses to start (it never makes new
    // keys over a fleet's state).
    std::fs::remove_file(copy.join(demo_keys::KEYS_FILE)).unwrap();
    assert_eq!(demo_keys::folder_state(&copy), FolderState::KeysMissing);
    match embedded::start_with(&copy, &root, 3, 10).await {
        Err(e) => assert_eq!(e.code(), "CF-V058"),
        Ok(_) => panic!("started without its keys"),
    }
    // The original is untouched by all this.
    still_recovers(&folder, &root, 8).await;
}

/// Writes the keys of `dir` the way the earlier embedded fleet kept them:
/// `fleet.json` (node configs, keys in hex), `hsm-secrets.json` (the fleet
/// secrets sealed under each node's sealing key), the demo witness,
/// operator and vendor keys and the HSM identities as `*.key` files (0600)
/// with their `.pub` halves; no sealed file and no folder id.
fn to_plaintext_layout(dir: &Path, root: &RootKey) {
    use base64::Engine as _;
    let id = demo_keys::folder_id(dir).unwrap().unwrap();
    let k = DemoKeys::open(dir, &id, root).unwrap();
    let private = |p: &Path, bytes: &[u8]| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
            .unwrap();
        f.write_all(bytes).unwrap();
    };
    private(
        &dir.join("fleet.json"),
        serde_json::to_string_pretty(&k.nodes).unwrap().as_bytes(),
    );
    let sealed: Vec<String> = k
        .nodes
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .encode(k.hsm_secrets.seal_under(&node_sealer(c)))
        })
        .collect();
    private(
        &dir.join("hsm-secrets.json"),
        &serde_json::to_vec(&sealed).unwrap(),
    );
    let w = coffer_witness::keys::write_signer;
    w(&dir.join("witness/witness.key"), &k.witness).unwrap();
    w(&dir.join("demo-operator-root.key"), &k.operator).unwrap();
    w(&dir.join("demo-vendor-root.key"), &k.vendor).unwrap();
    std::fs::create_dir_all(dir.join("hsm-identities")).unwrap();
    for s in &k.hsm_identities {
        w(&dir.join(format!("hsm-identities/{}.key", s.name())), s).unwrap();
    }
    std::fs::remove_file(dir.join(demo_keys::KEYS_FILE)).unwrap();
    std::fs::remove_file(dir.join(demo_keys::ID_FILE)).unwrap();
}

fn plaintext_files(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .map(|f| f.strip_prefix(dir).unwrap().to_string_lossy().to_string())
        .filter(|r| {
            r == "fleet.json"
                || r.starts_with("hsm-secrets.json")
                || r.ends_with(".key")
                || r.ends_with(".key.pub")
                || r.starts_with("hsm-identities")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_folder_is_sealed_once_and_a_crash_in_the_middle_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("vault");
    let old_root = embedded::generate_root_key();
    registered_folder(&folder, &old_root).await;
    to_plaintext_layout(&folder, &old_root);
    assert_eq!(demo_keys::folder_state(&folder), FolderState::Plaintext);
    assert_eq!(
        plaintext_files(&folder).len(),
        14,
        "{:?}",
        plaintext_files(&folder)
    );
    // That layout is the one the attack above was written against.
    let legacy_copy = tmp.path().join("legacy-copy");
    copy_dir(&folder, &legacy_copy);
    let (found, k) = attack(&legacy_copy, None).await.unwrap();
    assert_eq!((found.as_str(), k), (CODE, K));

    // A crash before the rename: a half-written sealed file beside the
    // plaintext (and the folder id already made). The next start adopts.
    let root = embedded::generate_root_key();
    let id = demo_keys::ensure_folder_id(&folder).unwrap();
    std::fs::write(
        folder.join(format!("{}.tmp", demo_keys::KEYS_FILE)),
        b"{\"format\": \"coffer-demo-k",
    )
    .unwrap();
    assert_eq!(demo_keys::folder_state(&folder), FolderState::Plaintext);
    still_recovers(&folder, &root, 8).await;
    assert_eq!(
        demo_keys::folder_id(&folder).unwrap().unwrap(),
        id,
        "same id"
    );
    assert_eq!(plaintext_files(&folder), Vec::<String>::new());
    assert_public_or_sealed(&folder, &root);

    // A crash after the rename: the sealed file is in place, the plaintext
    // not yet removed. The next start opens the sealed file and cleans up.
    for f in plaintext_files(&legacy_copy) {
        let to = folder.join(&f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(legacy_copy.join(&f), to).unwrap();
    }
    assert_eq!(demo_keys::folder_state(&folder), FolderState::Sealed);
    // (The success above reset the counter: one wrong guess leaves 9.)
    still_recovers(&folder, &root, 9).await;
    assert_eq!(plaintext_files(&folder), Vec::<String>::new());
    assert_public_or_sealed(&folder, &root);

    // Adopted for good: a copy gives nothing, the old root key opens nothing.
    let copy = tmp.path().join("copy-after");
    copy_dir(&folder, &copy);
    assert!(attack(&copy, None).await.is_err());
    match embedded::start_with(&folder, &old_root, 3, 10).await {
        Err(e) => assert_eq!(e.code(), "CF-V057"),
        Ok(_) => panic!("started under the old root key"),
    }
}

fn first_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

fn embedded_cmd(data: &Path, key: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-vault"));
    c.args(["embedded", "--listen", "127.0.0.1:0", "--nodes", "3"])
        .arg("--data-dir")
        .arg(data)
        .arg("--root-key-file")
        .arg(key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Starts `coffer-vault embedded`, reads what it prints, stops it with
/// SIGTERM; returns the printed fleet key.
fn run_embedded_once(data: &Path, key: &Path) -> String {
    let mut child = embedded_cmd(data, key).spawn().unwrap();
    let line = first_line(&mut child);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(child.wait().unwrap().success());
    v["fleet_key"].as_str().unwrap().to_string()
}

#[test]
fn coffer_vault_embedded_takes_its_root_key_from_a_file_outside_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = tmp.path().join("root.key");
    let fleet_key = run_embedded_once(&data, &key);
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o600, "made 0600");
    }
    assert_eq!(demo_keys::folder_state(&data), FolderState::Sealed);
    assert!(!data.join("fleet.json").exists());
    // Again with the same key file: the same fleet.
    assert_eq!(run_embedded_once(&data, &key), fleet_key);

    let refused = |key: &Path, want: &str| {
        let out = embedded_cmd(&data, key).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    };
    // Another key opens nothing; a key file inside the folder is refused
    // before anything is written.
    refused(&tmp.path().join("other.key"), "CF-V057");
    refused(&data.join("root.key"), "CF-V052");
    assert!(!data.join("root.key").exists());
}
