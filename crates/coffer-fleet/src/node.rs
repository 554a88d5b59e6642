//! A fleet node: an openraft instance on its sealed SQLite store, speaking
//! to its peers only through authenticated envelopes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::Adaptor;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{NodeConfig, NodeId};
use crate::error::FleetError;
use crate::secure::{CallError, SecureChannel, SecurityCounts};
use crate::store::Store;
use crate::transport::{EnvelopeHandler, Transport};
use crate::{BoxFuture, ReplicationError, Replicator, StateMachine, TypeConfig};

/// Messages inside the envelopes.
#[derive(Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower hands a command to the leader; `budget_ms` bounds the wait.
    Forward {
        command: Vec<u8>,
        budget_ms: u64,
    },
}

#[derive(Serialize, Deserialize)]
enum RpcReply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Result<(u64, Vec<u8>), ForwardError>),
    /// The request could not be decoded.
    Invalid(String),
}

#[derive(Debug, Serialize, Deserialize)]
enum ForwardError {
    /// Not the leader (nothing was appended).
    NotLeader,
    /// The leader could not commit in time (outcome unknown).
    NoQuorum,
    ShuttingDown,
    Other(String),
}

/// Builds openraft network clients that go through the secure channel.
struct NetFactory {
    channel: Arc<SecureChannel>,
    rpc_timeout: Duration,
}

struct NetClient {
    channel: Arc<SecureChannel>,
    target: NodeId,
    rpc_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = NetClient;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NetClient {
        NetClient {
            channel: self.channel.clone(),
            target,
            rpc_timeout: self.rpc_timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl NetClient {
    async fn rpc<E: std::error::Error>(
        &self,
        rpc: &Rpc,
    ) -> Result<RpcReply, RPCError<NodeId, BasicNode, E>> {
        let body = serde_json::to_vec(rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))?;
        let r = tokio::time::timeout(self.rpc_timeout, self.channel.call(self.target, body)).await;
        let bytes = match r {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(
                    "rpc timed out".into(),
                ))))
            }
            Ok(Err(CallError::Unreachable(m))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(m))))
            }
            Ok(Err(CallError::Lost(m))) => {
                return Err(RPCError::Network(NetworkError::new(&Msg(m))))
            }
            Ok(Ok(b)) => b,
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&Msg("unexpected reply".into())))
}

impl RaftNetwork<TypeConfig> for NetClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.rpc(&Rpc::Append(rpc)).await? {
            RpcReply::Append(Ok(r)) => Ok(r),
            RpcReply::Append(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.rpc(&Rpc::Snapshot(rpc)).await? {
            RpcReply::Snapshot(Ok(r)) => Ok(r),
            RpcReply::Snapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.rpc(&Rpc::Vote(rpc)).await? {
            RpcReply::Vote(Ok(r)) => Ok(r),
            RpcReply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(unexpected()),
        }
    }
}

/// What a node reports about itself (no secrets; fit for a status endpoint
/// and logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `stopped`.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    /// Milliseconds since a majority last acknowledged this node as leader
    /// (only on the leader).
    pub millis_since_quorum_ack: Option<u64>,
    pub envelopes_accepted: u64,
    pub envelopes_rejected: u64,
}

/// One running node of the fleet.
pub struct FleetNode {
    id: NodeId,
    raft: Raft<TypeConfig>,
    store: Store,
    channel: Arc<SecureChannel>,
    propose_timeout: Duration,
    stopped: AtomicBool,
}

impl FleetNode {
    /// Starts a node from its config, its own data directory (the host's
    /// disk) and its HSM's rollback counter file `nvram` (which a real HSM
    /// keeps inside the device; see `docs/fleet.md`). On the very
    /// first start the fleet's membership is initialised (every node does it
    /// with the same member list, which openraft allows; on later starts the
    /// stored state is used and this is skipped).
    pub async fn start(
        config: NodeConfig,
        data_dir: &Path,
        nvram: &Path,
        state_machine: Box<dyn StateMachine>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<FleetNode>, FleetError> {
        config.validate()?;
        let t = &config.tuning;
        let raft_config = Config {
            cluster_name: config.fleet_id.clone(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_min_ms,
            election_timeout_max: t.election_max_ms,
            install_snapshot_timeout: t.rpc_timeout_ms.max(200) * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: t.keep_after_snapshot,
            snapshot_max_chunk_size: 1024 * 1024,
            max_payload_entries: 64,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| FleetError::Config(e.to_string()))?,
        );
        let store = Store::open(&config, data_dir, nvram, state_machine)?;
        let channel = Arc::new(SecureChannel::new(&config, transport));
        let factory = NetFactory {
            channel: channel.clone(),
            rpc_timeout: Duration::from_millis(t.rpc_timeout_ms),
        };
        let (log_store, sm) = Adaptor::new(store.clone());
        let raft = Raft::new(config.node_id, raft_config, factory, log_store, sm)
            .await
            .map_err(|e| FleetError::Start(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| FleetError::Start(e.to_string()))?;
        if !initialized {
            let mut members = BTreeMap::new();
            members.insert(
                config.node_id,
                BasicNode {
                    addr: config.addr.clone(),
                },
            );
            for p in &config.peers {
                members.insert(
                    p.node_id,
                    BasicNode {
                        addr: p.addr.clone(),
                    },
                );
            }
            if let Err(e) = raft.initialize(members).await {
                // NotAllowed: another node's initialisation reached us first.
                tracing::debug!(node = config.node_id, "initialize skipped: {e}");
            }
        }
        tracing::info!(node = config.node_id, fleet = %config.fleet_id, "fleet node started");
        Ok(Arc::new(FleetNode {
            id: config.node_id,
            raft,
            store,
            channel,
            propose_timeout: Duration::from_millis(t.propose_timeout_ms),
            stopped: AtomicBool::new(false),
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Stops the node (its disk stays as it is; start it again from the same
    /// directory to recover).
    pub async fn shutdown(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.raft.shutdown().await {
                tracing::warn!(node = self.id, "raft shutdown: {e}");
            }
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The leader this node currently knows of.
    pub async fn current_leader(&self) -> Option<NodeId> {
        if self.is_stopped() {
            return None;
        }
        self.raft.current_leader().await
    }

    /// Index of the last log entry applied to this node's state machine.
    pub fn applied_index(&self) -> u64 {
        self.store.last_applied_index().unwrap_or(0)
    }

    /// `StateMachine::snapshot` of this node's current state (for checks).
    pub fn state_snapshot(&self) -> Vec<u8> {
        self.store.with_machine(|sm| sm.snapshot())
    }

    /// This node's view of the fleet.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let sec = self.channel.stats();
        let role = if self.is_stopped() {
            "stopped".to_string()
        } else {
            format!("{:?}", m.state).to_lowercase()
        };
        NodeStatus {
            node_id: self.id,
            role,
            leader: if self.is_stopped() {
                None
            } else {
                m.current_leader
            },
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: self.applied_index(),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            envelopes_accepted: sec.accepted,
            envelopes_rejected: sec.rejected(),
        }
    }

    /// Counters of envelopes this node refused.
    pub fn security_counts(&self) -> SecurityCounts {
        self.channel.stats()
    }

    /// Answers one envelope from a peer (what the transports call).
    pub async fn handle(&self, envelope: &[u8]) -> Vec<u8> {
        self.channel
            .handle(envelope, |from, body| self.dispatch(from, body))
            .await
    }

    async fn dispatch(&self, from: NodeId, body: Vec<u8>) -> Vec<u8> {
        let reply = match serde_json::from_slice::<Rpc>(&body) {
            Err(e) => RpcReply::Invalid(e.to_string()),
            Ok(Rpc::Append(r)) => RpcReply::Append(self.raft.append_entries(r).await),
            Ok(Rpc::Vote(r)) => RpcReply::Vote(self.raft.vote(r).await),
            Ok(Rpc::Snapshot(r)) => RpcReply::Snapshot(self.raft.install_snapshot(r).await),
            Ok(Rpc::Forward { command, budget_ms }) => {
                tracing::debug!(node = self.id, from, "forwarded proposal");
                let budget = Duration::from_millis(budget_ms).min(self.propose_timeout);
                RpcReply::Forward(self.lead_write(command, Instant::now() + budget).await)
            }
        };
        serde_json::to_vec(&reply).unwrap_or_default()
    }

    /// Writes as the leader: first confirms leadership with a majority (so a
    /// leader cut off from the fleet appends nothing), then commits.
    async fn lead_write(
        &self,
        command: Vec<u8>,
        deadline: Instant,
    ) -> Result<(u64, Vec<u8>), ForwardError> {
        if self.is_stopped() {
            return Err(ForwardError::ShuttingDown);
        }
        match tokio::time::timeout_at(deadline, self.raft.ensure_linearizable()).await {
            Err(_) => return Err(ForwardError::NoQuorum),
            Ok(Err(RaftError::APIError(_))) => return Err(ForwardError::NotLeader),
            Ok(Err(RaftError::Fatal(_))) => return Err(ForwardError::ShuttingDown),
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout_at(deadline, self.raft.client_write(command)).await {
            Err(_) => Err(ForwardError::NoQuorum),
            Ok(Ok(r)) => Ok((r.log_id.index, r.data)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(ForwardError::NotLeader)
            }
            Ok(Err(RaftError::Fatal(_))) => Err(ForwardError::ShuttingDown),
            Ok(Err(e)) => Err(ForwardError::Other(e.to_string())),
        }
    }

    /// Commits `command` through the fleet's majority (see [`Replicator`]).
    pub async fn propose_command(&self, command: Vec<u8>) -> Result<Vec<u8>, ReplicationError> {
        let deadline = Instant::now() + self.propose_timeout;
        loop {
            if self.is_stopped() {
                return Err(ReplicationError::ShuttingDown);
            }
            if Instant::now() >= deadline {
                return Err(ReplicationError::NoQuorum);
            }
            let leader = self.raft.current_leader().await;
            let result = match leader {
                None => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Some(l) if l == self.id => self.lead_write(command.clone(), deadline).await,
                Some(l) => {
                    let budget = deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64;
                    let rpc = Rpc::Forward {
                        command: command.clone(),
                        budget_ms: budget,
                    };
                    let body = serde_json::to_vec(&rpc)
                        .map_err(|e| ReplicationError::Other(e.to_string()))?;
                    match tokio::time::timeout_at(deadline, self.channel.call(l, body)).await {
                        Err(_) => Err(ForwardError::NoQuorum),
                        // Certainly not delivered: safe to retry.
                        Ok(Err(CallError::Unreachable(_))) => {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            continue;
                        }
                        // Maybe delivered: never retry (it could commit twice).
                        Ok(Err(CallError::Lost(_))) => Err(ForwardError::NoQuorum),
                        Ok(Ok(b)) => match serde_json::from_slice::<RpcReply>(&b) {
                            Ok(RpcReply::Forward(r)) => r,
                            _ => Err(ForwardError::Other(
                                "unexpected reply to a forwarded proposal".into(),
                            )),
                        },
                    }
                }
            };
            match result {
                Ok((index, data)) => {
                    self.wait_applied(index, deadline).await;
                    return Ok(data);
                }
                Err(ForwardError::NotLeader) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(ForwardError::NoQuorum) => return Err(ReplicationError::NoQuorum),
                Err(ForwardError::ShuttingDown) => {
                    if self.is_stopped() {
                        return Err(ReplicationError::ShuttingDown);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(ForwardError::Other(m)) => return Err(ReplicationError::Other(m)),
            }
        }
    }

    /// Waits (bounded) until this node has applied `index` itself.
    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let mut m = self.raft.metrics();
        let _ = tokio::time::timeout_at(deadline, async {
            loop {
                if self.applied_index() >= index {
                    return;
                }
                if m.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

impl Replicator for FleetNode {
    fn propose(&self, command: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, ReplicationError>> {
        Box::pin(self.propose_command(command))
    }
}

impl EnvelopeHandler for FleetNode {
    fn handle_envelope(&self, envelope: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.handle(&envelope).await })
    }
}
