//! The host relays the witness's validation blob (over-the-air fleet-key
//! validation).
//!
//! A `status` request carries the size of the witness checkpoint the client
//! remembers (`known_log_size`); the host asks the witness for the latest
//! countersigned epoch's blob *with a consistency proof from that size* and
//! puts it, unchanged, into the answer's `fleet.validation_bundle`. The blob
//! is public data the host cannot forge (witness- and operator-signed, with
//! log proofs); the HSM never produces it. If the witness cannot be reached
//! the answer carries no blob, and an over-the-air client refuses the fleet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_hsm::Hsm;
use coffer_transparency::NAMESPACE;
use coffer_vault_client::{BoxFuture, Transport, TransportError};
use coffer_vault_proto::{
    decode_request, encode_response, Bytes, Request, Response, WireError, MAX_BUNDLE_LEN,
};
use coffer_witness::client::WitnessClient;

/// Where the host gets the blob it relays.
pub trait BundleSource: Send + Sync {
    /// The validation blob (JSON bytes) of the latest epoch, with a
    /// consistency proof from `known_size` when given.
    fn blob(&self, known_size: Option<u64>) -> BoxFuture<'_, Result<Vec<u8>, String>>;
}

/// Fetches blobs from a witness over HTTP, caching each `known_size`'s answer
/// for a short time (so a burst of clients costs one witness request).
pub struct WitnessSource {
    client: WitnessClient,
    ttl: Duration,
    cache: Mutex<HashMap<Option<u64>, (Instant, Vec<u8>)>>,
}

impl std::fmt::Debug for WitnessSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessSource({})", self.client.base_url())
    }
}

/// Cached answers are reused for this long by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);
const MAX_CACHED: usize = 256;

impl WitnessSource {
    pub fn new(witness_url: &str) -> Result<Self, crate::ServerError> {
        Ok(WitnessSource {
            client: WitnessClient::new(witness_url)
                .map_err(|e| crate::ServerError::Config(e.to_string()))?,
            ttl: DEFAULT_CACHE_TTL,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The same with another cache lifetime (zero: never cache).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl BundleSource for WitnessSource {
    fn blob(&self, known_size: Option<u64>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            if let Ok(c) = self.cache.lock() {
                if let Some((at, b)) = c.get(&known_size) {
                    if at.elapsed() < self.ttl {
                        return Ok(b.clone());
                    }
                }
            }
            let blob = self
                .client
                .latest_validation(NAMESPACE, known_size)
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if let Ok(mut c) = self.cache.lock() {
                if c.len() >= MAX_CACHED {
                    c.clear();
                }
                c.insert(known_size, (Instant::now(), blob.clone()));
            }
            Ok(blob)
        })
    }
}

/// Handles one request at the host: the HSM answers, and a `status` answer
/// gets the relayed blob for the client's `known_log_size`.
pub async fn handle(hsm: &Hsm, source: Option<&dyn BundleSource>, request: Request) -> Response {
    let known = match &request {
        Request::Status { known_log_size } => Some(*known_log_size),
        _ => None,
    };
    let mut resp = hsm.handle(request).await;
    if let (Some(known), Some(src), Response::Status { status }) = (known, source, &mut resp) {
        match src.blob(known).await {
            Ok(b) if b.len() <= MAX_BUNDLE_LEN => status.fleet.validation_bundle = Some(Bytes(b)),
            Ok(b) => tracing::warn!(bytes = b.len(), "validation blob too large to relay"),
            Err(e) => tracing::warn!(error = %e, "no validation blob to relay"),
        }
    }
    resp
}

/// [`handle`] on encoded bytes (never panics on malformed input).
pub async fn handle_bytes(hsm: &Hsm, source: Option<&dyn BundleSource>, request: &[u8]) -> Vec<u8> {
    let resp = match decode_request(request) {
        Ok(r) => handle(hsm, source, r).await,
        Err(e) => Response::Error {
            error: WireError::from_report(coffer_error::UserFacing::report(&e), None),
        },
    };
    encode_response(&resp)
}

/// An in-process transport into an HSM through the host's relay (what the
/// embedded fleet's clients use for over-the-air validation).
pub struct RelayTransport {
    pub hsm: Arc<Hsm>,
    pub source: Option<Arc<dyn BundleSource>>,
}

impl Transport for RelayTransport {
    fn call(&self, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move { Ok(handle_bytes(&self.hsm, self.source.as_deref(), &request).await) })
    }
}
