//! A fleet node: an openraft instance on its sealed SQLite store, speaking
//! to its peers only through authenticated envelopes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::Adaptor;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy, Vote};
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

/// The encoding of [`Rpc`] and [`RpcReply`] inside envelopes: postcard, a
/// compact binary form of the same serde types. (JSON wrote every byte of a
/// log entry as a decimal number; writing and parsing that was a tenth of
/// the fleet's CPU in the vault benchmark.) Only the bodies of envelopes
/// that passed their MAC are ever decoded.
fn encode<T: Serialize>(t: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(t)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Builds openraft network clients that go through the secure channel.
struct NetFactory {
    leadership: Arc<LeadershipCheck>,
    channel: Arc<SecureChannel>,
    rpc_timeout: Duration,
    backoff: Duration,
}

struct NetClient {
    leadership: Arc<LeadershipCheck>,
    channel: Arc<SecureChannel>,
    target: NodeId,
    rpc_timeout: Duration,
    backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = NetClient;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NetClient {
        NetClient {
            leadership: self.leadership.clone(),
            channel: self.channel.clone(),
            target,
            rpc_timeout: self.rpc_timeout,
            backoff: self.backoff,
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
        let body =
            encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))?;
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
        decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&Msg("unexpected reply".into())))
}

impl RaftNetwork<TypeConfig> for NetClient {
    /// How long the leader waits before it tries an unreachable peer again.
    /// openraft's default is 500 ms; one heartbeat interval lets a node that
    /// (re)started after its peers catch up within a heartbeat or two, and
    /// answer its clients, instead of after half a second.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let (vote, sent) = (rpc.vote, Instant::now());
        match self.rpc(&Rpc::Append(rpc)).await? {
            RpcReply::Append(Ok(r)) => {
                if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                    self.leadership.record(self.target, vote, sent);
                }
                Ok(r)
            }
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
    leadership: Arc<LeadershipCheck>,
}

/// What a leadership check found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Leadership {
    Confirmed,
    NotLeader,
    ShuttingDown,
}

/// How long a proposal waits for the replication traffic already under way
/// to show a majority behind the leader before it asks for a round itself.
const LEADERSHIP_GRACE: Duration = Duration::from_millis(2);

/// The leader's check, before it appends a proposal, that a majority still
/// follows it, so a leader cut off from the fleet appends nothing: a guess
/// made during an outage is not counted later, when the fleet comes back.
///
/// The check passes once a majority (this node included) has accepted, as
/// this node's term and vote, an append request this node sent *after* the
/// proposal arrived. Under load the replication traffic already under way
/// shows that within a round trip, at no cost: [`NetClient`] records, per
/// peer, when the newest request it accepted was sent and under which vote.
/// If that takes longer than [`LEADERSHIP_GRACE`], or no other proposal is
/// under way (an idle fleet), the proposal asks for a heartbeat round (`ensure_linearizable`); proposals
/// waiting at the same time share the next round, which starts after all of
/// them arrived. (A round per proposal cost four messages per command on
/// five nodes.)
struct LeadershipCheck {
    /// Voting members, this node included.
    voters: usize,
    /// Per peer: the vote and send time of the newest append request it
    /// accepted (answered other than "higher vote").
    accepted: std::sync::Mutex<BTreeMap<NodeId, (Vote<NodeId>, Instant)>>,
    news: tokio::sync::Notify,
    /// Proposals between their check and the end of their append here.
    pending: AtomicU64,
    /// Rounds started so far (round ids are 1, 2, ...).
    started: AtomicU64,
    /// The id and result of the last round that finished; held while a
    /// round runs, so proposals queue behind it.
    last: tokio::sync::Mutex<(u64, Leadership)>,
}

/// A proposal counted in [`LeadershipCheck::pending`].
struct Pending<'a>(&'a AtomicU64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LeadershipCheck {
    fn new(voters: usize) -> Self {
        LeadershipCheck {
            voters,
            accepted: std::sync::Mutex::new(BTreeMap::new()),
            news: tokio::sync::Notify::new(),
            pending: AtomicU64::new(0),
            started: AtomicU64::new(0),
            last: tokio::sync::Mutex::new((0, Leadership::NotLeader)),
        }
    }

    /// Counts a proposal as pending until the guard drops.
    fn pending(&self) -> Pending<'_> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        Pending(&self.pending)
    }

    /// `target` accepted an append request sent at `sent` under `vote`.
    fn record(&self, target: NodeId, vote: Vote<NodeId>, sent: Instant) {
        let mut acc = self.accepted.lock().expect("accepted lock");
        let newer = acc
            .get(&target)
            .is_none_or(|(v, t)| *v != vote || *t < sent);
        if newer {
            acc.insert(target, (vote, sent));
            drop(acc);
            self.news.notify_waiters();
        }
    }

    /// Whether a majority accepted `vote` in a request sent at or after `t`.
    fn majority_since(&self, vote: &Vote<NodeId>, t: Instant) -> bool {
        let acc = self.accepted.lock().expect("accepted lock");
        let peers = acc
            .values()
            .filter(|(v, sent)| v == vote && *sent >= t)
            .count();
        (peers + 1) * 2 > self.voters
    }

    /// Whether a majority followed this node at some point after this call.
    async fn confirm(&self, raft: &Raft<TypeConfig>) -> Leadership {
        let arrived = Instant::now();
        let rounds_before = self.started.load(Ordering::SeqCst);
        let vote = raft.metrics().borrow().vote;
        // Waiting makes sense only while other proposals are on their way
        // (their appends will carry the answers); alone, ask for a round at
        // once.
        let give_up = if self.pending.load(Ordering::SeqCst) > 1 {
            arrived + LEADERSHIP_GRACE
        } else {
            arrived
        };
        loop {
            let news = self.news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            if self.majority_since(&vote, arrived) {
                return Leadership::Confirmed;
            }
            // (Checked first: tokio's timer would round even a past
            // deadline up to its next millisecond tick.)
            if Instant::now() >= give_up || tokio::time::timeout_at(give_up, news).await.is_err() {
                break;
            }
        }
        let mut last = self.last.lock().await;
        if last.0 > rounds_before {
            return last.1;
        }
        let id = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let result = match raft.ensure_linearizable().await {
            Ok(_) => Leadership::Confirmed,
            Err(RaftError::APIError(_)) => Leadership::NotLeader,
            Err(RaftError::Fatal(_)) => Leadership::ShuttingDown,
        };
        *last = (id, result);
        result
    }
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
            snapshot_max_chunk_size: crate::secure::SNAPSHOT_CHUNK as u64,
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
        let leadership = Arc::new(LeadershipCheck::new(config.members().len()));
        let factory = NetFactory {
            leadership: leadership.clone(),
            channel: channel.clone(),
            rpc_timeout: Duration::from_millis(t.rpc_timeout_ms),
            backoff: Duration::from_millis(t.heartbeat_ms.max(10)),
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
            leadership,
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
        let reply = match decode::<Rpc>(&body) {
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
        encode(&reply).unwrap_or_default()
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
        let _pending = self.leadership.pending();
        match tokio::time::timeout_at(deadline, self.leadership.confirm(&self.raft)).await {
            Err(_) => return Err(ForwardError::NoQuorum),
            Ok(Leadership::NotLeader) => return Err(ForwardError::NotLeader),
            Ok(Leadership::ShuttingDown) => return Err(ForwardError::ShuttingDown),
            Ok(Leadership::Confirmed) => {}
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
                    let body = encode(&rpc).map_err(|e| ReplicationError::Other(e.to_string()))?;
                    match tokio::time::timeout_at(deadline, self.channel.call(l, body)).await {
                        Err(_) => Err(ForwardError::NoQuorum),
                        // Certainly not delivered: safe to retry.
                        Ok(Err(CallError::Unreachable(_))) => {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            continue;
                        }
                        // Maybe delivered: never retry (it could commit twice).
                        Ok(Err(CallError::Lost(_))) => Err(ForwardError::NoQuorum),
                        Ok(Ok(b)) => match decode::<RpcReply>(&b) {
                            Ok(RpcReply::Forward(r)) => r,
                            _ => Err(ForwardError::Other(
                                "unexpected reply to a forwarded proposal".into(),
                            )),
                        },
                    }
                }
            };
            match result {
                // The answer is the leader's `apply`, after the majority
                // commit; this node applies the same command when the leader
                // next tells it the commit index, but nothing here needs to
                // wait for that (the HSM acts only on answers, never on its
                // local state), and waiting cost a half round trip.
                Ok((_index, data)) => return Ok(data),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_must_accept_this_vote_in_requests_sent_after_arrival() {
        let ms = Duration::from_millis;
        let c = LeadershipCheck::new(5);
        let vote = Vote::new_committed(3, 1);
        let t0 = Instant::now();
        let before = t0 - ms(5);
        c.record(2, vote, before);
        c.record(3, vote, t0);
        // This node and node 3: two of five.
        assert!(!c.majority_since(&vote, t0));
        // An answer under another vote (an older term) does not count.
        c.record(4, Vote::new_committed(2, 1), t0 + ms(1));
        assert!(!c.majority_since(&vote, t0));
        c.record(5, vote, t0 + ms(1));
        assert!(c.majority_since(&vote, t0), "1, 3 and 5");
        // Not for a proposal that arrived after those requests left.
        assert!(!c.majority_since(&vote, t0 + ms(2)));
        // An answer to an older request does not move a peer back.
        c.record(3, vote, before);
        assert!(c.majority_since(&vote, t0));
        // A fleet of one is its own majority.
        assert!(LeadershipCheck::new(1).majority_since(&vote, t0 + ms(9)));
    }
}
