//! The witness's HTTP client: operator publishing, the vault fetching the
//! validation blob it serves, and auditors walking the log.
//!
//! Nothing here is trusted: every answer is verified by
//! `coffer-transparency` against pinned keys by whoever uses it.

use crate::api::{
    CountersignRequest, Entry, EpochInfo, InclusionResponse, KeysResponse, SubmitRequest,
    SubmitResponse,
};
use crate::WitnessError;
use coffer_error::ErrorReport;
use coffer_transparency::bundle::{
    artifact_digest, b64, operator_countersign, submission_message, Bundle, FleetKeys,
};
use coffer_transparency::{ConsistencyProof, NoteSigner, ValidationBlob};
use std::time::Duration;

/// Answers larger than this are refused.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct WitnessClient {
    base: String,
    http: reqwest::Client,
}

impl WitnessClient {
    pub fn new(base_url: &str) -> Result<Self, WitnessError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| WitnessError::Unreachable(format!("{base_url}: {e}")))?;
        Ok(WitnessClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn read(&self, resp: reqwest::Response) -> Result<Vec<u8>, WitnessError> {
        let status = resp.status();
        if resp
            .content_length()
            .is_some_and(|l| l as usize > MAX_RESPONSE_BYTES)
        {
            return Err(WitnessError::BadResponse("answer too large".into()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(WitnessError::BadResponse("answer too large".into()));
        }
        if status.is_success() {
            return Ok(body.to_vec());
        }
        // The witness answers errors as ErrorReport JSON; map the codes back.
        let report: Option<ErrorReport> = serde_json::from_slice(&body).ok();
        let msg = report
            .as_ref()
            .map(|r| r.message.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(match report.as_ref().map(|r| r.code.as_str()) {
            Some("CF-T060") => WitnessError::Equivocation {
                namespace: String::new(),
                epoch: 0,
            },
            Some("CF-T061") => WitnessError::Unauthenticated,
            Some("CF-T064") => WitnessError::NotFound(msg),
            Some("CF-T065") | Some("CF-T062") => WitnessError::BadRequest(msg),
            _ => WitnessError::BadResponse(msg),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, WitnessError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let body = self.read(resp).await?;
        serde_json::from_slice(&body).map_err(|e| WitnessError::BadResponse(format!("{path}: {e}")))
    }

    async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, WitnessError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let body = self.read(resp).await?;
        serde_json::from_slice(&body).map_err(|e| WitnessError::BadResponse(format!("{path}: {e}")))
    }

    pub async fn keys(&self) -> Result<KeysResponse, WitnessError> {
        self.get_json("/v1/keys").await
    }

    /// The latest signed checkpoint (verify it with `Checkpoint::open`).
    pub async fn checkpoint(&self) -> Result<String, WitnessError> {
        let resp = self
            .http
            .get(format!("{}/log/v1/checkpoint", self.base))
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let body = self.read(resp).await?;
        String::from_utf8(body)
            .map_err(|_| WitnessError::BadResponse("checkpoint is not UTF-8".into()))
    }

    /// A C2SP tlog-tiles resource under `/log/v1/` (`tile/…`).
    pub async fn tile(&self, path: &str) -> Result<Vec<u8>, WitnessError> {
        let resp = self
            .http
            .get(format!("{}/log/v1/{path}", self.base))
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        self.read(resp).await
    }

    /// Every entry of the log of `size` entries, from its entry bundles
    /// (`tile/entries/N[.p/W]`), in order.
    pub async fn entries(&self, size: u64) -> Result<Vec<Vec<u8>>, WitnessError> {
        use coffer_transparency::tiles::{decode_entry_bundle, entries_path, TILE_WIDTH};
        let mut out = Vec::with_capacity(size as usize);
        let mut n = 0;
        while n * TILE_WIDTH < size {
            let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
            let b = self.tile(&entries_path(n, width)).await?;
            out.extend(
                decode_entry_bundle(&b, width)
                    .map_err(|e| WitnessError::BadResponse(e.to_string()))?,
            );
            n += 1;
        }
        Ok(out)
    }

    /// Runs a proof computation over the log's tiles at tree size `size`,
    /// fetching only the tiles it needs (O(log n) of them).
    async fn over_tiles<T>(
        &self,
        size: u64,
        mut f: impl FnMut(&mut coffer_transparency::tiles::TileHashes) -> Option<T>,
    ) -> Result<T, WitnessError> {
        use coffer_transparency::tiles::{tile_path, TileHashes};
        let mut t = TileHashes::new(size);
        for _ in 0..8 {
            if let Some(v) = f(&mut t) {
                return Ok(v);
            }
            let missing = t.missing();
            if missing.is_empty() {
                return Err(WitnessError::BadRequest("a proof outside the tree".into()));
            }
            for r in missing {
                let bytes = self.tile(&tile_path(r.level, r.index, r.width)).await?;
                t.add(r, &bytes)
                    .map_err(|e| WitnessError::BadResponse(e.to_string()))?;
            }
        }
        Err(WitnessError::BadResponse("tiles kept missing".into()))
    }

    /// The inclusion proof of leaf `index` in the tree of `size`, computed
    /// here from the log's tiles (verify it against a checkpoint).
    pub async fn inclusion_from_tiles(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<coffer_transparency::merkle::Hash>, WitnessError> {
        self.over_tiles(size, |t| t.inclusion_proof(index, size))
            .await
    }

    /// The consistency proof from `first` to `second`, computed here from
    /// the tiles of the tree of `second` leaves.
    pub async fn consistency_from_tiles(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<coffer_transparency::merkle::Hash>, WitnessError> {
        self.over_tiles(second, |t| t.consistency_proof(first, second))
            .await
    }

    pub async fn entry(&self, index: u64) -> Result<Entry, WitnessError> {
        self.get_json(&format!("/log/v1/entries/{index}")).await
    }

    pub async fn inclusion(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionResponse, WitnessError> {
        let q = size.map(|s| format!("&size={s}")).unwrap_or_default();
        self.get_json(&format!("/log/v1/inclusion?index={index}{q}"))
            .await
    }

    pub async fn consistency(
        &self,
        first: u64,
        second: Option<u64>,
    ) -> Result<ConsistencyProof, WitnessError> {
        let q = second.map(|s| format!("&second={s}")).unwrap_or_default();
        self.get_json(&format!("/log/v1/consistency?first={first}{q}"))
            .await
    }

    pub async fn epochs(&self, namespace: &str) -> Result<Vec<EpochInfo>, WitnessError> {
        self.get_json(&format!("/v1/namespaces/{namespace}/epochs"))
            .await
    }

    /// What a vault puts in its responses: the validation blob for an epoch,
    /// with a consistency proof from `known_size` (the size of the client's
    /// remembered checkpoint) when given.
    pub async fn validation(
        &self,
        namespace: &str,
        epoch: u64,
        known_size: Option<u64>,
    ) -> Result<ValidationBlob, WitnessError> {
        let q = known_size
            .map(|s| format!("?known_size={s}"))
            .unwrap_or_default();
        self.get_json(&format!(
            "/v1/namespaces/{namespace}/epochs/{epoch}/validation{q}"
        ))
        .await
    }

    /// The validation blob of the namespace's latest countersigned epoch
    /// (what a vault attaches to its responses).
    pub async fn latest_validation(
        &self,
        namespace: &str,
        known_size: Option<u64>,
    ) -> Result<ValidationBlob, WitnessError> {
        let epochs = self.epochs(namespace).await?;
        let latest = epochs
            .iter()
            .rev()
            .find(|e| e.countersigned)
            .ok_or_else(|| {
                WitnessError::NotFound(format!("a countersigned epoch of {namespace}"))
            })?;
        self.validation(namespace, latest.epoch, known_size).await
    }

    pub async fn submit(&self, req: &SubmitRequest) -> Result<SubmitResponse, WitnessError> {
        self.post_json("/v1/submit", req).await
    }

    pub async fn countersign(&self, req: &CountersignRequest) -> Result<Bundle, WitnessError> {
        self.post_json("/v1/countersign", req).await
    }

    /// The operator's whole publishing step: sign the submission, have the
    /// witness sign and log it, countersign the witness signature, and hand
    /// the countersignature back. Returns the complete bundle.
    pub async fn publish(
        &self,
        operator: &NoteSigner,
        namespace: &str,
        epoch: u64,
        keys: &FleetKeys,
    ) -> Result<(SubmitResponse, Bundle), WitnessError> {
        let artifact = keys.to_canonical_json();
        let digest = artifact_digest(&artifact);
        let sig = operator.sign(&submission_message(namespace, epoch, &digest));
        let r = self
            .submit(&SubmitRequest {
                namespace: namespace.into(),
                epoch,
                artifact,
                operator_signature: b64(&sig),
            })
            .await
            .map_err(|e| match e {
                WitnessError::Equivocation { .. } => WitnessError::Equivocation {
                    namespace: namespace.into(),
                    epoch,
                },
                e => e,
            })?;
        if r.digest != hex::encode(digest) || r.epoch != epoch || r.namespace != namespace {
            return Err(WitnessError::BadResponse(
                "the witness signed something else than was submitted".into(),
            ));
        }
        let wsig: [u8; 64] = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(&r.witness_signature)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| {
                    WitnessError::BadResponse("witness signature is not 64 bytes".into())
                })?
        };
        let csig = operator_countersign(operator, &wsig);
        let bundle = self
            .countersign(&CountersignRequest {
                namespace: namespace.into(),
                epoch,
                operator_countersignature: b64(&csig),
            })
            .await?;
        Ok((r, bundle))
    }
}

/// "Unreachable", with the innermost cause (refused, DNS, an untrusted TLS
/// certificate…) so the user can act on it.
fn unreachable(base: &str, e: &reqwest::Error) -> WitnessError {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let hint = if cause.to_string().contains("certificate") {
        "; if the witness uses a private certificate authority, set SSL_CERT_FILE to its certificate"
    } else {
        ""
    };
    WitnessError::Unreachable(format!("{base}: {e} ({cause}){hint}"))
}
