//! The embedded default: a whole fleet in this process, on one data
//! directory, for the app's local demo fleet ("clearly labelled": its status
//! says `simulated_hsm` and its fleet id starts with `local-`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use coffer_fleet::inprocess::FLEET_FILE;
use coffer_fleet::{BoxFuture, InProcessFleet, NodeConfig, ReplicationError, Replicator};
use coffer_hsm::{Hsm, HsmConfig, HsmSecrets, HsmState, Sealer, DEFAULT_GUESS_LIMIT};
use coffer_vault_client::{PinnedFleetKey, Transport, TransportError, VaultClient};

use crate::ServerError;

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
    tracing::info!(nodes, "embedded vault fleet started (simulated HSMs)");
    Ok(EmbeddedVault { fleet, hsm })
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
        let app = crate::api::router_for(self.hsm.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((local, task))
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        self.fleet.shutdown().await;
    }
}
