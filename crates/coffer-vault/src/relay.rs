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

/// Fetches blobs from a witness over HTTP. Each `known_size`'s blob is
/// cached and reused while the witness's checkpoint keeps its size (one
/// small request instead of two), so a new epoch is relayed at once.
pub struct WitnessSource {
    client: WitnessClient,
    cache: Mutex<BlobCache>,
    /// The newest blob fetched (by checkpoint size), relayed while the
    /// witness cannot be reached.
    last: Mutex<Option<(u64, Vec<u8>)>>,
}

/// known_size → (the blob's log size, the blob).
type BlobCache = HashMap<Option<u64>, (u64, Vec<u8>)>;

impl std::fmt::Debug for WitnessSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessSource({})", self.client.base_url())
    }
}

const MAX_CACHED: usize = 256;

/// The tree size of a checkpoint note (its second line). Not verified: the
/// host only uses it to decide whether a cached blob is current; clients
/// verify everything.
fn checkpoint_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.trim().parse().ok()
}

impl WitnessSource {
    pub fn new(witness_url: &str) -> Result<Self, crate::ServerError> {
        Ok(WitnessSource {
            client: WitnessClient::new(witness_url)
                .map_err(|e| crate::ServerError::Config(e.to_string()))?,
            cache: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
        })
    }

    /// The witness's base URL.
    pub fn url(&self) -> &str {
        self.client.base_url()
    }
}

impl BundleSource for WitnessSource {
    fn blob(&self, known_size: Option<u64>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            match self.fetch(known_size).await {
                Ok(b) => {
                    self.remember(&b);
                    Ok(b)
                }
                Err(e) => match self.last_blob() {
                    Some(b) => {
                        tracing::warn!(error = %e, "witness unreachable: relaying the last blob");
                        Ok(b)
                    }
                    None => Err(e),
                },
            }
        })
    }
}

impl WitnessSource {
    /// Keeps `blob` as the one to relay during an outage if its checkpoint
    /// is not older than the one kept (the host never falls back to an
    /// older view than it relayed; clients verify everything anyway).
    fn remember(&self, blob: &[u8]) {
        let Ok(b) = coffer_transparency::ValidationBlob::from_bytes(blob) else {
            return;
        };
        let Some(size) = checkpoint_size(&b.checkpoint) else {
            return;
        };
        if let Ok(mut g) = self.last.lock() {
            if g.as_ref().is_none_or(|(s, _)| *s <= size) {
                *g = Some((size, blob.to_vec()));
            }
        }
    }

    /// The blob relayed while the witness is down.
    fn last_blob(&self) -> Option<Vec<u8>> {
        self.last.lock().ok()?.as_ref().map(|(_, b)| b.clone())
    }

    /// The witness's blob for `known_size`. A witness whose log is smaller
    /// than the client's remembered size (rolled back) refuses that size:
    /// its blob without a consistency proof is relayed then, so the client
    /// can say CF-T042 with both checkpoints.
    fn fetch(&self, known_size: Option<u64>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let size = self
                .client
                .checkpoint()
                .await
                .ok()
                .as_deref()
                .and_then(checkpoint_size);
            if let (Some(size), Ok(c)) = (size, self.cache.lock()) {
                if let Some((s, b)) = c.get(&known_size) {
                    if *s == size {
                        return Ok(b.clone());
                    }
                }
            }
            let blob = match self.client.latest_validation(NAMESPACE, known_size).await {
                Err(coffer_witness::WitnessError::BadRequest(m)) if known_size.is_some() => {
                    tracing::warn!(
                        known_size,
                        error = %m,
                        "the witness refused the client's log size (rolled back?)"
                    );
                    self.client
                        .latest_validation(NAMESPACE, None)
                        .await
                        .map_err(|e| e.to_string())?
                }
                r => r.map_err(|e| e.to_string())?,
            };
            let blob_size = checkpoint_size(&blob.checkpoint);
            let bytes = blob.to_bytes();
            if let (Some(s), Ok(mut c)) = (blob_size, self.cache.lock()) {
                if c.len() >= MAX_CACHED {
                    c.clear();
                }
                c.insert(known_size, (s, bytes.clone()));
            }
            Ok(bytes)
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
