//! The fleet's envelopes between processes over HTTP.
//!
//! The node's fleet listener (in `coffer-vault`, a port apart from the
//! client API) serves [`fleet_router`]: `POST /fleet/v1/envelope` (body: one
//! envelope of at most [`MAX_ENVELOPE`] bytes, answer: one envelope).
//! [`HttpTransport`] is the client side, with short timeouts. The host that
//! runs these servers is untrusted: everything it relays is authenticated by
//! [`crate::secure`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

use crate::config::{NodeConfig, NodeId};
use crate::node::FleetNode;
pub use crate::secure::MAX_ENVELOPE;
use crate::transport::{Transport, TransportError};
use crate::BoxFuture;

/// Path of the envelope endpoint.
pub const ENVELOPE_PATH: &str = "/fleet/v1/envelope";

/// Where a node's router finds the node (set once the node has started, so
/// the server can listen before the node exists).
pub type NodeSlot = Arc<tokio::sync::RwLock<Option<Arc<FleetNode>>>>;

/// An axum router serving this node's fleet endpoint.
pub fn fleet_router(node: NodeSlot) -> Router {
    Router::new()
        .route(ENVELOPE_PATH, post(envelope))
        .layer(DefaultBodyLimit::max(MAX_ENVELOPE))
        .with_state(node)
}

async fn envelope(State(slot): State<NodeSlot>, body: Bytes) -> Result<Vec<u8>, StatusCode> {
    let node = slot.read().await.clone();
    match node {
        Some(n) if !n.is_stopped() => Ok(n.handle(&body).await),
        _ => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Sends envelopes to peers' `fleet_router` over plain HTTP.
pub struct HttpTransport {
    client: reqwest::Client,
    addrs: HashMap<NodeId, String>,
}

impl HttpTransport {
    /// A transport to the peers listed in `config` (their `addr` must be set).
    pub fn new(config: &NodeConfig) -> Result<Self, crate::FleetError> {
        let t = &config.tuning;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(t.rpc_timeout_ms.min(500)))
            .timeout(Duration::from_millis(t.rpc_timeout_ms.max(1000) * 2))
            // Below the fleet listener's idle timeout (its header timeout, 5 s
            // by default), so a pooled connection is not reused just as the
            // peer closes it.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| crate::FleetError::Start(format!("http client: {e}")))?;
        let addrs = config
            .peers
            .iter()
            .map(|p| (p.node_id, p.addr.clone()))
            .collect();
        Ok(Self { client, addrs })
    }
}

impl Transport for HttpTransport {
    fn call(
        &self,
        _from: NodeId,
        to: NodeId,
        envelope: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let addr = match self.addrs.get(&to) {
                Some(a) if !a.is_empty() => a,
                _ => {
                    return Err(TransportError::Unreachable(format!(
                        "no address for node {to}"
                    )))
                }
            };
            let url = format!("http://{addr}{ENVELOPE_PATH}");
            let resp = self
                .client
                .post(url)
                .body(envelope)
                .send()
                .await
                .map_err(|e| {
                    if e.is_connect() {
                        TransportError::Unreachable(format!("node {to}: {e}"))
                    } else {
                        TransportError::Lost(format!("node {to}: {e}"))
                    }
                })?;
            if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                return Err(TransportError::Unreachable(format!(
                    "node {to} is not running"
                )));
            }
            if !resp.status().is_success() {
                return Err(TransportError::Lost(format!(
                    "node {to}: HTTP {}",
                    resp.status()
                )));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| TransportError::Lost(format!("node {to}: {e}")))?;
            if bytes.len() > MAX_ENVELOPE {
                return Err(TransportError::Lost(format!("node {to}: answer too large")));
            }
            Ok(bytes.to_vec())
        })
    }
}
