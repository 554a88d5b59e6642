//! Replication of the HSM state inside the HSM boundary.
//!
//! The contract between the HSM logic (`coffer-hsm`) and the replication
//! engine (this crate, built on `openraft`) is two traits:
//!
//! * [`StateMachine`]: implemented by the HSM. Commands are opaque bytes,
//!   applied deterministically in log order on every node once a majority has
//!   committed them. Whatever the HSM needs after a commit (for example the
//!   record and counter a login will use) is returned from `apply`.
//! * [`Replicator`]: implemented by a fleet node. `propose` returns only after
//!   the command is committed by a majority and applied locally; without a
//!   majority it fails closed with [`ReplicationError::NoQuorum`].
//!
//! [`LocalReplicator`] is the single-node, in-memory form used by unit tests
//! of the HSM logic; the fleet implementation lives beside it:
//!
//! * [`FleetSetup::create`] makes the node configs (ids, pairwise link keys,
//!   sealing keys) of an N-node fleet; [`NodeConfig`] round-trips TOML/JSON.
//! * [`FleetNode::start`] runs one node (openraft on a sealed SQLite store)
//!   over a [`Transport`]; `FleetNode` implements [`Replicator`]: `propose`
//!   works on any running node (followers forward to the leader) and fails
//!   closed with [`ReplicationError::NoQuorum`] within the propose timeout.
//! * [`InProcessFleet`] runs N nodes in one process over a [`LocalNetwork`]
//!   (embedded default, tests: `kill`, `restart`, `isolate`).
//! * [`http::fleet_router`] / [`http::HttpTransport`]: the same envelopes
//!   between processes, at `POST /fleet/v1/envelope`.
//!
//! Contract additions since the first version (compatible): the modules and
//! types above, `FleetError`, `ERROR_CODES`, and a `UserFacing` impl for
//! [`ReplicationError`] (`NoQuorum` is `CF-V901`, kind `vault_unavailable`).
//! One semantic note: a `NoQuorum` after the leader accepted the command
//! means "not committed in time"; such a command may still be committed later
//! if the majority comes back (never twice). For a guess counter that errs on
//! the safe side (an attempt counted, never evaluated).
#![forbid(unsafe_code)]

use std::io::Cursor;

pub mod config;
pub mod error;
pub mod http;
pub mod inprocess;
pub mod node;
mod nvram;
pub mod secure;
mod store;
pub mod transport;

pub use config::{FleetSetup, NodeConfig, NodeId, PeerConfig, RaftTuning, SecretKey};
pub use error::{FleetError, ERROR_CODES};
pub use inprocess::InProcessFleet;
pub use node::{FleetNode, NodeStatus};
pub use secure::SecurityCounts;
pub use transport::{EnvelopeHandler, LocalNetwork, Transport, TransportError};

openraft::declare_raft_types!(
    /// The openraft type configuration of the fleet: commands and responses are bytes.
    pub TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
);

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The replicated, deterministic state of an HSM.
pub trait StateMachine: Send + 'static {
    /// Apply one committed command and return its response bytes.
    /// Must be deterministic: every node applies the same commands in the
    /// same order and must reach the same state.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;
    /// Serialise the whole state (for openraft snapshots).
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the whole state with a snapshot made by [`StateMachine::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ReplicationError>;
}

/// Why a command could not be committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// No majority of the fleet could be reached in time: nothing was applied.
    #[error("no majority of the fleet is reachable; nothing was applied")]
    NoQuorum,
    /// This node is shutting down.
    #[error("this node is shutting down")]
    ShuttingDown,
    /// A snapshot or stored entry could not be decoded or authenticated.
    #[error("replicated state is damaged: {0}")]
    Corrupt(String),
    /// Any other failure of the engine.
    #[error("replication failed: {0}")]
    Other(String),
}

/// A boxed future, so that [`Replicator`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Commits commands through a majority of the fleet.
pub trait Replicator: Send + Sync {
    /// Propose `command`; resolves with the state machine's response once the
    /// command is committed by a majority and applied by the leader (the
    /// response is the leader's `apply`; this node applies the same command
    /// when the leader next tells it the commit index).
    fn propose(&self, command: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, ReplicationError>>;
}

/// A single node without replication: applies commands at once. For tests of
/// the HSM logic and nothing else (it offers no fault tolerance).
#[derive(Clone)]
pub struct LocalReplicator<S: StateMachine> {
    state: Arc<Mutex<S>>,
}

impl<S: StateMachine> LocalReplicator<S> {
    pub fn new(state: S) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }
}

impl<S: StateMachine> Replicator for LocalReplicator<S> {
    fn propose(&self, command: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, ReplicationError>> {
        let out = self
            .state
            .lock()
            .map_err(|_| ReplicationError::Other("state lock poisoned".into()))
            .map(|mut s| s.apply(&command));
        Box::pin(async move { out })
    }
}
