//! The embedded demo fleet's cosigning witnesses: two C2SP tlog-witness
//! cosigners on loopback ports, each with its own key (signature type 0x04,
//! sealed with the demo fleet's other keys: [`crate::demo_keys`]) and its own
//! SQLite state
//! (`witness/cosigner-N.db`), and the trust policy clients pin
//! (`witness/trust.policy`: the demo log, both cosigners, a 2-of-2 quorum,
//! the maximum age). The demo log asks them after every append and every
//! [`COSIGN_INTERVAL`], so the app's first run exercises the real protocol.
//! Like the other demo keys, they prove nothing about independence: they
//! run on the user's own computer.

use std::path::Path;

use coffer_transparency::policy::{policy_text, DEFAULT_MAX_AGE_SECS};
use coffer_transparency::{NoteSigner, NoteVerifier, Policy};

use crate::ServerError;

/// How many cosigners the demo fleet runs.
pub const DEMO_COSIGNERS: usize = 2;
/// Seconds between cosigning rounds of an unchanged checkpoint.
pub const COSIGN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
/// The trust policy file under the witness directory.
pub const POLICY_FILE: &str = "trust.policy";

/// Running demo cosigners.
pub struct DemoCosigners {
    /// The policy clients pin (no URLs: keys, quorum, max-age).
    pub policy: Policy,
    /// The same with the cosigners' loopback URLs, for the log.
    pub log_policy: Policy,
    /// The cosigners' servers: stopped with [`DemoCosigners::stop`].
    pub servers: crate::embedded::Servers,
}

/// New keys for the demo cosigners.
pub fn generate_keys() -> Result<Vec<NoteSigner>, ServerError> {
    (1..=DEMO_COSIGNERS)
        .map(|i| {
            NoteSigner::generate_cosigner(&format!("coffer-demo-cosigner-{i}"))
                .map_err(|e| ServerError::Config(e.to_string()))
        })
        .collect()
}

/// Starts the cosigners with `keys` (their state is made on first start)
/// and writes the pinned policy beside them.
pub async fn start(
    wdir: &Path,
    log_key: &NoteVerifier,
    keys: Vec<NoteSigner>,
) -> Result<DemoCosigners, ServerError> {
    let mut listed = Vec::new();
    let mut with_urls = Vec::new();
    let servers = crate::embedded::Servers::default();
    for (n, signer) in keys.into_iter().enumerate() {
        let i = n + 1;
        let key = signer.verifier();
        let c = coffer_witness::cosigner::Cosigner::open(
            &wdir.join(format!("cosigner-{i}.db")),
            signer,
            vec![log_key.clone()],
        )
        .map_err(|e| ServerError::Witness(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ServerError::Io(format!("cosigner: {e}")))?;
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| ServerError::Io(e.to_string()))?
        );
        servers.serve(listener, coffer_witness::cosigner::router(c));
        listed.push((format!("cosigner-{i}"), key.clone(), None));
        with_urls.push((format!("cosigner-{i}"), key, Some(url)));
    }
    let quorum = listed.len();
    let text = policy_text(log_key, None, &listed, quorum, DEFAULT_MAX_AGE_SECS);
    let path = wdir.join(POLICY_FILE);
    std::fs::write(&path, &text)
        .map_err(|e| ServerError::Io(format!("{}: {e}", path.display())))?;
    let policy = Policy::parse(&text).map_err(|e| ServerError::Config(e.to_string()))?;
    let log_policy = Policy::parse(&policy_text(
        log_key,
        None,
        &with_urls,
        quorum,
        DEFAULT_MAX_AGE_SECS,
    ))
    .map_err(|e| ServerError::Config(e.to_string()))?;
    Ok(DemoCosigners {
        policy,
        log_policy,
        servers,
    })
}
