//! How envelopes travel between nodes: the "host" that relays bytes.
//!
//! A [`Transport`] only moves opaque, already-authenticated envelopes; it is
//! untrusted (it may drop, delay, reorder, replay or alter them, and the
//! [`crate::secure`] layer makes all but dropping and delaying harmless).
//! Two implementations: [`LocalNetwork`] (in-process, with kill/partition
//! switches for tests and the embedded fleet) and [`crate::http::HttpTransport`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::config::NodeId;
use crate::BoxFuture;

/// Why an envelope could not be exchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Not delivered (no route, connection refused, node down).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Possibly delivered, but no answer came back (timeout, reset).
    #[error("lost: {0}")]
    Lost(String),
}

/// Relays one envelope from `from` to `to` and returns the answer envelope.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        from: NodeId,
        to: NodeId,
        envelope: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>>;
}

/// The receiving side of a node: takes an envelope, returns the answer.
pub trait EnvelopeHandler: Send + Sync + 'static {
    fn handle_envelope(&self, envelope: Vec<u8>) -> BoxFuture<'_, Vec<u8>>;
}

/// What a [`LocalNetwork`] tap decides for one envelope.
pub type Tap = Arc<dyn Fn(NodeId, NodeId, &[u8]) + Send + Sync>;

/// In-process transport: a switchboard of registered nodes. A node that is
/// "down" neither sends nor receives; a partition drops traffic between groups.
pub struct LocalNetwork {
    nodes: RwLock<HashMap<NodeId, Weak<dyn EnvelopeHandler>>>,
    down: RwLock<HashSet<NodeId>>,
    tap: Mutex<Option<Tap>>,
}

impl LocalNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            nodes: RwLock::default(),
            down: RwLock::default(),
            tap: Mutex::new(None),
        })
    }

    /// Makes `handler` reachable as node `id` (replacing an earlier one).
    pub fn register(&self, id: NodeId, handler: Weak<dyn EnvelopeHandler>) {
        self.nodes.write().expect("net lock").insert(id, handler);
    }

    pub fn unregister(&self, id: NodeId) {
        self.nodes.write().expect("net lock").remove(&id);
    }

    /// Cuts node `id` off (`down = true`) or reconnects it.
    pub fn set_down(&self, id: NodeId, down: bool) {
        let mut d = self.down.write().expect("net lock");
        if down {
            d.insert(id);
        } else {
            d.remove(&id);
        }
    }

    pub fn is_down(&self, id: NodeId) -> bool {
        self.down.read().expect("net lock").contains(&id)
    }

    /// Observes every envelope sent (for tests that play the malicious host).
    pub fn set_tap(&self, tap: Option<Tap>) {
        *self.tap.lock().expect("tap lock") = tap;
    }

    /// Delivers raw bytes to node `to` as the host could, bypassing up/down.
    pub async fn inject(&self, to: NodeId, envelope: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let h = self
            .nodes
            .read()
            .expect("net lock")
            .get(&to)
            .and_then(|w| w.upgrade());
        match h {
            Some(h) => Ok(h.handle_envelope(envelope).await),
            None => Err(TransportError::Unreachable(format!(
                "node {to} is not running"
            ))),
        }
    }
}

impl Transport for LocalNetwork {
    fn call(
        &self,
        from: NodeId,
        to: NodeId,
        envelope: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            if self.is_down(from) || self.is_down(to) {
                return Err(TransportError::Unreachable(format!(
                    "link {from}->{to} is down"
                )));
            }
            if let Some(tap) = self.tap.lock().expect("tap lock").clone() {
                tap(from, to, &envelope);
            }
            let answer = self.inject(to, envelope).await?;
            // A node killed while handling: its answer is lost.
            if self.is_down(to) || self.is_down(from) {
                return Err(TransportError::Lost(format!("link {from}->{to} went down")));
            }
            Ok(answer)
        })
    }
}
