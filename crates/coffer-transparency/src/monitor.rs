//! Every client a monitor: the whole witness log, leaf by leaf.
//!
//! The log holds about one leaf per epoch, so a client (and `coffer audit
//! log`) takes all of it: each leaf is parsed into its fields and rebuilt
//! from them byte for byte, its witness signature is checked, the root of
//! all leaf hashes must be the checkpoint's, and per namespace the epochs
//! must rise strictly in leaf order (so there is one digest per epoch). The
//! latest epoch of a namespace is then a fact of the checkpoint, which is
//! what lets a client with no remembered state refuse a superseded bundle.

use crate::bundle::{log_leaf, witness_message};
use crate::checkpoint::Checkpoint;
use crate::merkle::{leaf_hash, root_from_leaf_hashes, Hash};
use crate::note::NoteVerifier;
use std::collections::BTreeMap;

const WITNESS_DOMAIN: &[u8] = b"coffer-witness-signature-v1\0";

/// One leaf of the witness log, in fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLeaf {
    pub index: u64,
    pub namespace: String,
    pub epoch: u64,
    pub timestamp: u64,
    pub digest: Hash,
    pub witness_signature: [u8; 64],
}

impl LogLeaf {
    /// The leaf bytes rebuilt from the fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        log_leaf(
            &self.namespace,
            self.epoch,
            self.timestamp,
            &self.digest,
            &self.witness_signature,
        )
    }
}

/// Why a log's leaves do not hold together.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("log entry {0} is not a witness-signed fleet-key statement")]
    MalformedLeaf(u64),
    #[error("log entry {0} does not carry a valid witness signature")]
    BadSignature(u64),
    #[error("the log's entries ({got}) do not hash to its checkpoint (size {size})")]
    RootMismatch { size: u64, got: u64 },
    #[error("log entry {index}: {namespace} epoch {epoch} does not come after epoch {previous} (entry {previous_index})")]
    EpochsNotRising {
        namespace: String,
        index: u64,
        epoch: u64,
        previous: u64,
        previous_index: u64,
    },
}

/// Parses one leaf: `witness_message || witness_signature`.
pub fn parse_leaf(index: u64, bytes: &[u8]) -> Result<LogLeaf, LogError> {
    let bad = || LogError::MalformedLeaf(index);
    let rest = bytes.strip_prefix(WITNESS_DOMAIN).ok_or_else(bad)?;
    if rest.len() < 4 {
        return Err(bad());
    }
    let ns_len = u32::from_be_bytes(rest[..4].try_into().expect("4")) as usize;
    let rest = &rest[4..];
    if rest.len() != ns_len + 8 + 8 + 32 + 64 {
        return Err(bad());
    }
    let namespace = std::str::from_utf8(&rest[..ns_len])
        .map_err(|_| bad())?
        .to_string();
    let r = &rest[ns_len..];
    let leaf = LogLeaf {
        index,
        namespace,
        epoch: u64::from_be_bytes(r[..8].try_into().expect("8")),
        timestamp: u64::from_be_bytes(r[8..16].try_into().expect("8")),
        digest: r[16..48].try_into().expect("32"),
        witness_signature: r[48..112].try_into().expect("64"),
    };
    // Rebuilt from its fields, byte for byte.
    if leaf.to_bytes() != bytes {
        return Err(bad());
    }
    Ok(leaf)
}

/// Checks every leaf of a log against its (verified) checkpoint; returns
/// the parsed leaves in order.
pub fn verify_log(
    leaves: &[Vec<u8>],
    checkpoint: &Checkpoint,
    witness: &NoteVerifier,
) -> Result<Vec<LogLeaf>, LogError> {
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    if leaves.len() as u64 != checkpoint.size
        || !crate::merkle::hashes_equal(&root_from_leaf_hashes(&hashes), &checkpoint.root_hash)
    {
        return Err(LogError::RootMismatch {
            size: checkpoint.size,
            got: leaves.len() as u64,
        });
    }
    let mut out = Vec::with_capacity(leaves.len());
    let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, bytes) in leaves.iter().enumerate() {
        let i = i as u64;
        let leaf = parse_leaf(i, bytes)?;
        let msg = witness_message(&leaf.namespace, leaf.epoch, leaf.timestamp, &leaf.digest);
        if !witness.verify(&msg, &leaf.witness_signature) {
            return Err(LogError::BadSignature(i));
        }
        if let Some((prev, prev_i)) = last.get(&leaf.namespace) {
            if leaf.epoch <= *prev {
                return Err(LogError::EpochsNotRising {
                    namespace: leaf.namespace.clone(),
                    index: i,
                    epoch: leaf.epoch,
                    previous: *prev,
                    previous_index: *prev_i,
                });
            }
        }
        last.insert(leaf.namespace.clone(), (leaf.epoch, i));
        out.push(leaf);
    }
    Ok(out)
}

/// The namespace's leaf with the highest epoch (the last one, since epochs rise).
pub fn latest<'a>(leaves: &'a [LogLeaf], namespace: &str) -> Option<&'a LogLeaf> {
    leaves.iter().rev().find(|l| l.namespace == namespace)
}
