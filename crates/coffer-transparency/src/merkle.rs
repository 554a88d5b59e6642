//! RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.
//!
//! Leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right),
//! the empty tree hashes to SHA-256(""). Proof generation follows RFC 6962
//! §2.1.1 (PATH) and §2.1.2 (PROOF/SUBPROOF); verification follows the
//! RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms step by step.

use coffer_error::{ErrorKind, UserFacing};
use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("the log's inclusion proof does not lead to the signed tree root")]
    InclusionProofInvalid,
    #[error("the log's consistency proof does not join the earlier tree to the later one")]
    ConsistencyProofInvalid,
    #[error("a proof was asked for or given with an index or size out of range ({0})")]
    OutOfRange(String),
    #[error("a hash in a proof is not 32 bytes of valid base64")]
    MalformedHash,
}

impl UserFacing for MerkleError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::FleetNotVerified
    }
    fn code(&self) -> &'static str {
        match self {
            MerkleError::InclusionProofInvalid => "CF-T001",
            MerkleError::ConsistencyProofInvalid => "CF-T002",
            MerkleError::OutOfRange(_) => "CF-T003",
            MerkleError::MalformedHash => "CF-T004",
        }
    }
    fn next_step(&self) -> String {
        "Do not start a vault session. Run `coffer audit namespace` against the witness and report the result to the vault operator.".into()
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &["CF-T001", "CF-T002", "CF-T003", "CF-T004"];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]) over already-hashed leaves.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// RFC 6962 §2.1.1 PATH(m, D[n]): the audit path of leaf `index`.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let n = leaves.len();
    let m = usize::try_from(index).map_err(|_| MerkleError::OutOfRange("leaf index".into()))?;
    if m >= n {
        return Err(MerkleError::OutOfRange(format!(
            "leaf {index} of a tree of size {n}"
        )));
    }
    fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
        if d.len() <= 1 {
            return;
        }
        let k = split_point(d.len());
        if m < k {
            path(m, &d[..k], out);
            out.push(root_from_leaf_hashes(&d[k..]));
        } else {
            path(m - k, &d[k..], out);
            out.push(root_from_leaf_hashes(&d[..k]));
        }
    }
    let mut out = Vec::new();
    path(m, leaves, &mut out);
    Ok(out)
}

/// RFC 6962 §2.1.2 PROOF(m, D[n]): the consistency proof from the tree of
/// size `first` to the tree made of all of `leaves`.
pub fn consistency_proof(first: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let n = leaves.len();
    let m = usize::try_from(first).map_err(|_| MerkleError::OutOfRange("tree size".into()))?;
    if m > n {
        return Err(MerkleError::OutOfRange(format!(
            "size {first} is larger than {n}"
        )));
    }
    if m == 0 || m == n {
        return Ok(Vec::new());
    }
    fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
        let n = d.len();
        if m == n {
            if !b {
                out.push(root_from_leaf_hashes(d));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            subproof(m, &d[..k], b, out);
            out.push(root_from_leaf_hashes(&d[k..]));
        } else {
            subproof(m - k, &d[k..], false, out);
            out.push(root_from_leaf_hashes(&d[..k]));
        }
    }
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out);
    Ok(out)
}

/// RFC 9162 §2.1.3.2: verify that `leaf` is leaf number `index` of the tree
/// of size `size` whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::OutOfRange(format!(
            "leaf {index} of a tree of size {size}"
        )));
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(MerkleError::InclusionProofInvalid);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n == 0 && ct_eq(&r, root) {
        Ok(())
    } else {
        Err(MerkleError::InclusionProofInvalid)
    }
}

/// RFC 9162 §2.1.4.2: verify that the tree of size `size1` with root `root1`
/// is a prefix of the tree of size `size2` with root `root2`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), MerkleError> {
    if size1 > size2 {
        return Err(MerkleError::OutOfRange(format!(
            "the earlier tree ({size1}) is larger than the later one ({size2})"
        )));
    }
    if size1 == size2 {
        return if proof.is_empty() && ct_eq(root1, root2) {
            Ok(())
        } else {
            Err(MerkleError::ConsistencyProofInvalid)
        };
    }
    if size1 == 0 {
        // Every tree extends the empty tree; the proof must be empty.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(MerkleError::ConsistencyProofInvalid)
        };
    }
    if proof.is_empty() {
        return Err(MerkleError::ConsistencyProofInvalid);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    let mut f_n = size1 - 1;
    let mut s_n = size2 - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut f_r = path[0];
    let mut s_r = path[0];
    for c in &path[1..] {
        if s_n == 0 {
            return Err(MerkleError::ConsistencyProofInvalid);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if ct_eq(&f_r, root1) && ct_eq(&s_r, root2) && s_n == 0 {
        Ok(())
    } else {
        Err(MerkleError::ConsistencyProofInvalid)
    }
}

/// Constant-time equality of two hashes.
pub fn hashes_equal(a: &Hash, b: &Hash) -> bool {
    ct_eq(a, b)
}

fn ct_eq(a: &Hash, b: &Hash) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Hashes travel as standard base64 (as in checkpoints).
pub fn hash_to_b64(h: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Parses a standard-base64 32-byte hash.
pub fn hash_from_b64(s: &str) -> Result<Hash, MerkleError> {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| MerkleError::MalformedHash)?;
    v.try_into().map_err(|_| MerkleError::MalformedHash)
}

/// Parses a list of base64 hashes (a proof as it travels in JSON).
pub fn proof_from_b64(items: &[String]) -> Result<Vec<Hash>, MerkleError> {
    items.iter().map(|s| hash_from_b64(s)).collect()
}

/// Encodes a proof for JSON.
pub fn proof_to_b64(items: &[Hash]) -> Vec<String> {
    items.iter().map(hash_to_b64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test data of transparency-dev/merkle (testonly/constants.go and
    // proof/verify_test.go), the RFC 6962 reference vectors used by
    // Certificate Transparency.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    // (leaf index 0-based, tree size, proof)
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }
    fn leaf_hashes() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn roots_match_rfc6962_vectors_for_every_size() {
        let lh = leaf_hashes();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(
                hex::encode(root_from_leaf_hashes(&lh[..n])),
                *want,
                "size {n}"
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_vectors_and_verify() {
        let lh = leaf_hashes();
        for (idx, size, proof) in INCLUSION {
            let want: Vec<Hash> = proof.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(idx, &lh[..size as usize]).unwrap();
            assert_eq!(got, want, "leaf {idx} size {size}");
            let root = h(ROOTS[size as usize]);
            verify_inclusion(idx, size, &lh[idx as usize], &want, &root).unwrap();
            // Corruptions of the kind transparency-dev/merkle probes.
            let leaf = &lh[idx as usize];
            assert!(verify_inclusion(idx + 1, size, leaf, &want, &root).is_err());
            assert!(verify_inclusion(idx, size * 2, leaf, &want, &root).is_err());
            assert!(verify_inclusion(idx, size, &h(ROOTS[0]), &want, &root).is_err());
            let mut longer = want.clone();
            longer.push(root);
            assert!(verify_inclusion(idx, size, leaf, &longer, &root).is_err());
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 8;
                assert!(verify_inclusion(idx, size, leaf, &bad, &root).is_err());
                let mut short = want.clone();
                short.remove(i);
                assert!(verify_inclusion(idx, size, leaf, &short, &root).is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_match_vectors_and_verify() {
        let lh = leaf_hashes();
        for (m, n, proof) in CONSISTENCY {
            let want: Vec<Hash> = proof.iter().map(|s| h(s)).collect();
            let got = consistency_proof(m, &lh[..n as usize]).unwrap();
            assert_eq!(got, want, "{m} -> {n}");
            let (r1, r2) = (h(ROOTS[m as usize]), h(ROOTS[n as usize]));
            verify_consistency(m, n, &want, &r1, &r2).unwrap();
            if want.is_empty() {
                continue;
            }
            assert!(
                verify_consistency(m, n, &want, &r2, &r1).is_err(),
                "swapped roots"
            );
            assert!(verify_consistency(m + 1, n, &want, &r1, &r2).is_err());
            assert!(verify_consistency(m, n * 2, &want, &r1, &r2).is_err());
            assert!(verify_consistency(m, n, &[], &r1, &r2).is_err());
            assert!(verify_consistency(m, n, &want[..want.len() - 1], &r1, &r2).is_err());
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 16;
                assert!(verify_consistency(m, n, &bad, &r1, &r2).is_err());
            }
        }
    }

    #[test]
    fn every_pair_of_sizes_up_to_40_round_trips() {
        let lh: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=lh.len() {
            let root = root_from_leaf_hashes(&lh[..n]);
            for i in 0..n {
                let p = inclusion_proof(i as u64, &lh[..n]).unwrap();
                verify_inclusion(i as u64, n as u64, &lh[i], &p, &root).unwrap();
            }
            for m in 0..=n {
                let p = consistency_proof(m as u64, &lh[..n]).unwrap();
                let r1 = root_from_leaf_hashes(&lh[..m]);
                verify_consistency(m as u64, n as u64, &p, &r1, &root).unwrap();
            }
        }
    }

    #[test]
    fn trivial_and_out_of_range_cases() {
        let e = empty_root();
        assert!(verify_inclusion(0, 0, &e, &[], &e).is_err());
        assert!(verify_consistency(2, 1, &[], &e, &e).is_err());
        assert!(verify_consistency(1, 1, &[], &e, &leaf_hash(b"x")).is_err());
        assert!(verify_consistency(1, 1, &[e], &e, &e).is_err());
        assert!(verify_consistency(0, 3, &[], &e, &leaf_hash(b"x")).is_ok());
        assert!(inclusion_proof(3, &[e, e, e]).is_err());
        assert!(consistency_proof(4, &[e, e, e]).is_err());
        assert_eq!(hash_from_b64("AAAA"), Err(MerkleError::MalformedHash));
        assert_eq!(hash_from_b64(&hash_to_b64(&e)).unwrap(), e);
    }
}
