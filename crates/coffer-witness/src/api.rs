//! The witness's HTTP API types (JSON). Routes:
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/submit` | operator-signed submission → witness-signed proof (appended to the log) |
//! | POST | `/v1/countersign` | the operator's countersignature for a signed epoch → complete bundle |
//! | GET | `/v1/namespaces/{ns}/epochs` | the namespace's signed epochs |
//! | GET | `/v1/namespaces/{ns}/epochs/{epoch}/validation?known_size=M` | the validation blob a vault serves |
//! | GET | `/v1/keys` | the witness and operator verifier keys |
//! | GET | `/log/v1/checkpoint` | the latest signed checkpoint (text) |
//! | GET | `/log/v1/entries/{index}` | one entry: the audit link |
//! | GET | `/log/v1/inclusion?index=I&size=N` or `?digest=HEX&size=N` | inclusion proof |
//! | GET | `/log/v1/consistency?first=M&second=N` | consistency proof |

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What the operator sends to have an artifact signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub namespace: String,
    pub epoch: u64,
    /// The canonical fleet-key JSON.
    pub artifact: String,
    /// Base64 operator signature over `submission_message(namespace, epoch, SHA-256(artifact))`.
    pub operator_signature: String,
}

/// The witness's answer: its signature and where the entry sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub leaf_index: u64,
    pub namespace: String,
    pub epoch: u64,
    pub timestamp: u64,
    pub digest: String,
    pub witness_signature: String,
    /// The stable audit link of the entry.
    pub entry_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountersignRequest {
    pub namespace: String,
    pub epoch: u64,
    pub operator_countersignature: String,
}

/// One log entry, as served at its stable URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Entry {
    pub index: u64,
    pub namespace: String,
    pub epoch: u64,
    pub timestamp: u64,
    pub digest: String,
    pub witness_signature: String,
    /// Present once the operator has countersigned.
    pub operator_countersignature: Option<String>,
    pub artifact: String,
    /// Base64 of the leaf hash (SHA-256(0x00 || leaf)).
    pub leaf_hash: String,
}

/// One epoch in a namespace listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct EpochInfo {
    pub epoch: u64,
    pub leaf_index: u64,
    pub digest: String,
    pub timestamp: u64,
    pub countersigned: bool,
    pub entry_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionResponse {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub proof: Vec<String>,
}

/// The witness's and operator's *verifier* (public) keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysResponse {
    pub witness_key: String,
    pub operator_key: String,
    pub origin: String,
}

/// Written by hand like every key-holding type: only the key names (the
/// part before the key id), never key bytes.
impl std::fmt::Debug for KeysResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |k: &str| k.split('+').next().unwrap_or("").to_string();
        f.debug_struct("KeysResponse")
            .field("witness_key", &name(&self.witness_key))
            .field("operator_key", &name(&self.operator_key))
            .field("origin", &self.origin)
            .finish()
    }
}
