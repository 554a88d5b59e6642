//! A whole fleet in one process (the embedded default and the tests):
//! N nodes, each with its own directory under one data directory, talking
//! over a [`LocalNetwork`] through the same authenticated envelopes as the
//! HTTP form.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::config::{FleetSetup, NodeConfig, NodeId, RaftTuning};
use crate::error::FleetError;
use crate::node::FleetNode;
use crate::transport::{EnvelopeHandler, LocalNetwork, Transport};
use crate::{ReplicationError, StateMachine};

/// Makes a fresh (empty) state machine for a node.
pub type MakeStateMachine = Arc<dyn Fn() -> Box<dyn StateMachine> + Send + Sync>;

/// Name of the file (in the fleet's data directory) holding the node configs
/// when [`InProcessFleet::start`] keeps them. It contains the simulated HSMs'
/// internal keys in the clear (mode 0600): for tests and benchmarks. A caller
/// that must not leave keys on disk (the embedded demo fleet, which seals
/// them under a root key kept in the OS keyring) keeps the configs itself and
/// uses [`InProcessFleet::start_from`].
pub const FLEET_FILE: &str = "fleet.json";

/// N nodes in one process. Node `i` (0-based) has node id `i + 1`.
pub struct InProcessFleet {
    network: Arc<LocalNetwork>,
    configs: Vec<NodeConfig>,
    data_dir: PathBuf,
    make_sm: MakeStateMachine,
    nodes: Mutex<Vec<Arc<FleetNode>>>,
}

impl InProcessFleet {
    /// Starts an `n`-node fleet on `data_dir` with local timings. The first
    /// time, keys are generated and stored in `data_dir/fleet.json`; later
    /// starts on the same directory reuse them and recover every node's state.
    pub async fn start(
        n: usize,
        data_dir: &Path,
        make_state_machine: impl Fn() -> Box<dyn StateMachine> + Send + Sync + 'static,
    ) -> Result<Self, FleetError> {
        Self::start_with(
            n,
            data_dir,
            RaftTuning::local(),
            Arc::new(make_state_machine),
        )
        .await
    }

    /// [`InProcessFleet::start`] with explicit raft tuning.
    pub async fn start_with(
        n: usize,
        data_dir: &Path,
        tuning: RaftTuning,
        make_sm: MakeStateMachine,
    ) -> Result<Self, FleetError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| FleetError::Storage(format!("{}: {e}", data_dir.display())))?;
        let file = data_dir.join(FLEET_FILE);
        let configs: Vec<NodeConfig> = if file.exists() {
            let s =
                std::fs::read_to_string(&file).map_err(|e| FleetError::Storage(e.to_string()))?;
            let cs: Vec<NodeConfig> =
                serde_json::from_str(&s).map_err(|e| FleetError::Config(e.to_string()))?;
            if cs.len() != n {
                return Err(FleetError::Config(format!(
                    "{} holds a {}-node fleet, not {n}",
                    file.display(),
                    cs.len()
                )));
            }
            for c in &cs {
                c.validate()?;
            }
            cs
        } else {
            let mut id = [0u8; 8];
            getrandom::fill(&mut id).map_err(|e| FleetError::Start(e.to_string()))?;
            let cs = FleetSetup::create(n, &format!("local-{}", hex::encode(id)), tuning)?;
            let json =
                serde_json::to_string_pretty(&cs).map_err(|e| FleetError::Config(e.to_string()))?;
            crate::config::write_private(&file, json.as_bytes())
                .map_err(|e| FleetError::Storage(format!("{}: {e}", file.display())))?;
            cs
        };
        Self::start_from(configs, data_dir, make_sm).await
    }

    /// Starts a fleet whose node configs (and so keys) the caller keeps:
    /// nothing but the nodes' sealed state and rollback counters is written
    /// under `data_dir`. Later starts with the same configs on the same
    /// directory recover every node's state.
    pub async fn start_from(
        configs: Vec<NodeConfig>,
        data_dir: &Path,
        make_sm: MakeStateMachine,
    ) -> Result<Self, FleetError> {
        if configs.is_empty() {
            return Err(FleetError::Config("a fleet has 1 to 15 nodes".into()));
        }
        let ids: std::collections::BTreeSet<NodeId> = configs.iter().map(|c| c.node_id).collect();
        for c in &configs {
            c.validate()?;
            if c.members() != ids || c.fleet_id != configs[0].fleet_id {
                return Err(FleetError::Config(
                    "the node configs are not those of one fleet (ids, peers or fleet id differ)"
                        .into(),
                ));
            }
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| FleetError::Storage(format!("{}: {e}", data_dir.display())))?;
        let n = configs.len();
        let network = LocalNetwork::new();
        let fleet = Self {
            network,
            configs,
            data_dir: data_dir.to_path_buf(),
            make_sm,
            nodes: Mutex::new(Vec::new()),
        };
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(fleet.boot(i).await?);
        }
        *fleet.nodes.lock().expect("fleet lock") = nodes;
        Ok(fleet)
    }

    async fn boot(&self, i: usize) -> Result<Arc<FleetNode>, FleetError> {
        let c = self.configs[i].clone();
        let id = c.node_id;
        let dir = self.node_dir(i);
        let transport: Arc<dyn Transport> = self.network.clone();
        let nvram = self.nvram_path(i);
        let node = FleetNode::start(c, &dir, &nvram, (self.make_sm)(), transport).await?;
        let weak: Weak<dyn EnvelopeHandler> =
            Arc::downgrade(&(node.clone() as Arc<dyn EnvelopeHandler>));
        self.network.register(id, weak);
        self.network.set_down(id, false);
        Ok(node)
    }

    /// The directory of node `i`.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.data_dir
            .join(format!("node-{}", self.configs[i].node_id))
    }

    /// The rollback counter of node `i`'s HSM, beside the fleet's keys and
    /// apart from the node's directory (the host's disk).
    pub fn nvram_path(&self, i: usize) -> PathBuf {
        self.data_dir
            .join(format!("node-{}.nvram", self.configs[i].node_id))
    }

    pub fn len(&self) -> usize {
        self.configs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    pub fn node_id(&self, i: usize) -> NodeId {
        self.configs[i].node_id
    }

    /// Node `i` (0-based). A killed node stays reachable as an object, but
    /// its `propose` fails with `ShuttingDown` until it is restarted.
    pub fn node(&self, i: usize) -> Arc<FleetNode> {
        self.nodes.lock().expect("fleet lock")[i].clone()
    }

    /// All nodes that are running.
    pub fn live_nodes(&self) -> Vec<Arc<FleetNode>> {
        self.nodes
            .lock()
            .expect("fleet lock")
            .iter()
            .filter(|n| !n.is_stopped())
            .cloned()
            .collect()
    }

    /// The network (to play the malicious host in tests).
    pub fn network(&self) -> &Arc<LocalNetwork> {
        &self.network
    }

    /// Crashes node `i`: cuts its traffic and stops it; its disk stays.
    pub async fn kill(&self, i: usize) {
        let node = self.node(i);
        self.network.set_down(node.id(), true);
        self.network.unregister(node.id());
        node.shutdown().await;
    }

    /// Restarts node `i` from its disk (after [`InProcessFleet::kill`]).
    pub async fn restart(&self, i: usize) -> Result<(), FleetError> {
        let old = self.node(i);
        if !old.is_stopped() {
            return Ok(());
        }
        drop(old);
        let node = self.boot(i).await?;
        self.nodes.lock().expect("fleet lock")[i] = node;
        Ok(())
    }

    /// Cuts (or heals) node `i`'s traffic without stopping it.
    pub fn isolate(&self, i: usize, isolated: bool) {
        self.network.set_down(self.configs[i].node_id, isolated);
    }

    /// Proposes through node `i` (convenience for the vault and tests).
    pub async fn propose(&self, i: usize, command: Vec<u8>) -> Result<Vec<u8>, ReplicationError> {
        self.node(i).propose_command(command).await
    }

    /// Waits until some running node knows a leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: std::time::Duration) -> Option<NodeId> {
        let end = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < end {
            for n in self.live_nodes() {
                if let Some(l) = n.current_leader().await {
                    return Some(l);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for i in 0..self.len() {
            self.kill(i).await;
        }
    }
}
