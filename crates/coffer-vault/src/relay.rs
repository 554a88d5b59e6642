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
//!
//! Everything else is a channel message (vault protocol v2): the host
//! passes it to the HSM and the answer back, as opaque bytes it can neither
//! read nor forge ([`handle_channel`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_hsm::Hsm;
use coffer_transparency::NAMESPACE;
use coffer_vault_client::{BoxFuture, Route, Transport, TransportError};
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

/// Fetches blobs from a witness over HTTP, for all callers at once: one
/// fetch runs at a time and concurrent callers wait for it and take its
/// result. The witness's checkpoint size is read at most once per
/// [`CHECKPOINT_TTL`] (a failed read is remembered as long, so an
/// unreachable witness costs one timeout per second, not one per caller),
/// and each `known_size`'s blob is kept while the checkpoint keeps its size,
/// so a new epoch is relayed within a second.
pub struct WitnessSource {
    client: WitnessClient,
    state: tokio::sync::Mutex<SourceState>,
}

/// How long a read of the witness's checkpoint size is reused.
pub const CHECKPOINT_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct SourceState {
    /// When the checkpoint was last read, and its size (none: the read failed).
    checkpoint: Option<(Instant, Option<u64>)>,
    /// known_size → (the blob's log size, the blob).
    blobs: HashMap<Option<u64>, (u64, Vec<u8>)>,
    /// The newest blob fetched (by log size), relayed while the witness
    /// cannot be reached: the vault keeps relaying a blob clients verify in
    /// full, instead of stopping every over-the-air client.
    last: Option<(u64, Vec<u8>)>,
}

impl SourceState {
    /// Keeps `blob` (of log `size`) for outages, unless a newer one is kept:
    /// the host never falls back to an older view than it relayed.
    fn remember(&mut self, known_size: Option<u64>, size: u64, blob: &[u8]) {
        if self.blobs.len() >= MAX_CACHED {
            self.blobs.clear();
        }
        self.blobs.insert(known_size, (size, blob.to_vec()));
        if self.last.as_ref().is_none_or(|(s, _)| *s <= size) {
            self.last = Some((size, blob.to_vec()));
        }
    }

    /// During an outage: the last blob, or why there is none.
    fn outage(&self, why: String) -> Result<Vec<u8>, String> {
        match &self.last {
            Some((_, b)) => {
                tracing::warn!(error = %why, "witness unreachable: relaying the last blob");
                Ok(b.clone())
            }
            None => Err(why),
        }
    }
}

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
            state: tokio::sync::Mutex::new(SourceState::default()),
        })
    }

    /// The witness's base URL.
    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    async fn read_checkpoint(&self, st: &mut SourceState) -> Option<u64> {
        let size = self
            .client
            .checkpoint()
            .await
            .ok()
            .as_deref()
            .and_then(checkpoint_size);
        st.checkpoint = Some((Instant::now(), size));
        size
    }
}

impl BundleSource for WitnessSource {
    /// One caller at a time asks the witness (the others wait for it and use
    /// its answer); the checkpoint's size is read at most once a second.
    fn blob(&self, known_size: Option<u64>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let mut st = self.state.lock().await;
            let mut size = match st.checkpoint {
                Some((at, size)) if at.elapsed() < CHECKPOINT_TTL => size,
                _ => self.read_checkpoint(&mut st).await,
            };
            // A client may have seen a newer checkpoint elsewhere: look again
            // (once).
            if let (Some(s), Some(k)) = (size, known_size) {
                if k > s {
                    size = self.read_checkpoint(&mut st).await;
                }
            }
            let Some(size) = size else {
                return st.outage("the witness's checkpoint could not be read".into());
            };
            // The client remembers a bigger log than the witness has now: the
            // witness was rolled back (or forked). Its own current blob is
            // relayed, without a consistency proof it cannot give, so the
            // client reports CF-T042 with both checkpoints as evidence.
            let ask = match known_size {
                Some(k) if k > size => {
                    tracing::warn!(
                        known_size = k,
                        witness_size = size,
                        "the client's checkpoint is beyond the witness's (rolled back?)"
                    );
                    None
                }
                k => k,
            };
            if let Some((s, b)) = st.blobs.get(&ask) {
                if *s == size {
                    return Ok(b.clone());
                }
            }
            let fetched = match self.client.latest_validation(NAMESPACE, ask).await {
                // The witness itself refuses the client's size: the same
                // rolled-back case, seen by the witness.
                Err(coffer_witness::WitnessError::BadRequest(m)) if ask.is_some() => {
                    tracing::warn!(error = %m, "the witness refused the client's log size (rolled back?)");
                    self.client.latest_validation(NAMESPACE, None).await
                }
                r => r,
            };
            let blob = match fetched {
                Ok(b) => b,
                Err(e) => {
                    // Remembered as a failed read: the next second's callers
                    // do not wait on the witness again.
                    st.checkpoint = Some((Instant::now(), None));
                    return st.outage(e.to_string());
                }
            };
            let bytes = blob.to_bytes();
            if let Some(s) = checkpoint_size(&blob.checkpoint) {
                st.remember(ask, s, &bytes);
            }
            Ok(bytes)
        })
    }
}

/// Handles one plain request at the host (the bootstrap `status`; the HSM
/// refuses any other outside the channel): the HSM answers, and a `status`
/// answer gets the relayed blob for the client's `known_log_size`.
pub async fn handle(hsm: &Hsm, source: Option<&dyn BundleSource>, request: Request) -> Response {
    let known = match &request {
        Request::Status { known_log_size } => Some(*known_log_size),
        _ => None,
    };
    let mut resp = hsm.handle_plain(request).await;
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

/// A channel message 1: relayed to the HSM unread, its message 2 back
/// (`Ok`), or the HSM's plain error if the message did not open (`Err`).
pub async fn handle_channel(hsm: &Hsm, message: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    hsm.handle_channel(message).await
}

/// An in-process transport into an HSM through the host's relay: the same
/// two routes as the HTTP API, so the embedded fleet's clients (the app)
/// go through exactly the same channel code as remote ones.
pub struct RelayTransport {
    pub hsm: Arc<Hsm>,
    pub source: Option<Arc<dyn BundleSource>>,
    /// The host's account service (none: account routes answer `CF-V027`).
    pub accounts: Option<Arc<crate::account::AccountService>>,
}

impl Transport for RelayTransport {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            Ok(match route {
                Route::Status => handle_bytes(&self.hsm, self.source.as_deref(), &request).await,
                Route::Channel => handle_channel(&self.hsm, &request)
                    .await
                    .unwrap_or_else(|plain| plain),
                Route::AccountChallenge | Route::AccountVerify => {
                    account_bytes(self.accounts.as_deref(), route, &request)
                }
            })
        })
    }
}

/// An account-service request in process (the client is this machine).
pub(crate) fn account_bytes(
    accounts: Option<&crate::account::AccountService>,
    route: Route,
    request: &[u8],
) -> Vec<u8> {
    let r = match route {
        Route::AccountVerify => crate::account::AccountRoute::Verify,
        _ => crate::account::AccountRoute::Challenge,
    };
    coffer_vault_proto::account::encode_account_response(&crate::account::handle(
        accounts,
        r,
        request,
        std::net::IpAddr::from([127, 0, 0, 1]),
    ))
}
