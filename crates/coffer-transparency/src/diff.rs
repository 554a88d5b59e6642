//! Fleet-key differences from one epoch to the next (what `coffer audit`
//! prints, like Meta's `mbt eb-verify-namespace`).

use crate::bundle::{FleetKeys, KeyRole};
use crate::note::fingerprint;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Same id, different public key, role, algorithm or validity window.
    Changed,
}

/// One line of a key diff (fingerprints of public keys only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct KeyChange {
    pub change: ChangeKind,
    pub id: String,
    pub role: KeyRole,
    /// Fingerprint (hex SHA-256 of the public key) before, when there was one.
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
    /// What changed, in words.
    pub detail: String,
}

/// By hand, like every key-related type: ids, roles and fingerprints only.
impl std::fmt::Debug for KeyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyChange")
            .field("change", &self.change)
            .field("id", &self.id)
            .field("role", &self.role)
            .field("old_fingerprint", &self.old_fingerprint)
            .field("new_fingerprint", &self.new_fingerprint)
            .field("detail", &self.detail)
            .finish()
    }
}

fn fp(k: &crate::bundle::FleetKey) -> String {
    fingerprint(&k.public_key_bytes().unwrap_or_default())
}

/// The changes from `old` (None: the first epoch) to `new`, by key id.
pub fn diff_keys(old: Option<&FleetKeys>, new: &FleetKeys) -> Vec<KeyChange> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let old_keys = old.map(|o| &o.keys).unwrap_or(&empty);
    for k in &new.keys {
        match old_keys.iter().find(|o| o.id == k.id) {
            None => out.push(KeyChange {
                change: ChangeKind::Added,
                id: k.id.clone(),
                role: k.role,
                old_fingerprint: None,
                new_fingerprint: Some(fp(k)),
                detail: format!(
                    "{:?} key added, valid {}..{}",
                    k.role, k.not_before, k.not_after
                ),
            }),
            Some(o) if o != k => {
                let mut what = Vec::new();
                if o.public_key != k.public_key {
                    what.push("public key".to_string());
                }
                if o.role != k.role || o.algorithm != k.algorithm {
                    what.push("role/algorithm".to_string());
                }
                if o.not_before != k.not_before || o.not_after != k.not_after {
                    what.push(format!(
                        "validity {}..{} -> {}..{}",
                        o.not_before, o.not_after, k.not_before, k.not_after
                    ));
                }
                out.push(KeyChange {
                    change: ChangeKind::Changed,
                    id: k.id.clone(),
                    role: k.role,
                    old_fingerprint: Some(fp(o)),
                    new_fingerprint: Some(fp(k)),
                    detail: what.join(", "),
                })
            }
            Some(_) => {}
        }
    }
    for o in old_keys {
        if !new.keys.iter().any(|k| k.id == o.id) {
            out.push(KeyChange {
                change: ChangeKind::Removed,
                id: o.id.clone(),
                role: o.role,
                old_fingerprint: Some(fp(o)),
                new_fingerprint: None,
                detail: format!("{:?} key removed", o.role),
            });
        }
    }
    if let Some(o) = old {
        if o.fleet_id != new.fleet_id {
            out.push(KeyChange {
                change: ChangeKind::Changed,
                id: "fleet_id".into(),
                role: KeyRole::OpaqueServer,
                old_fingerprint: None,
                new_fingerprint: None,
                detail: format!("fleet id {} -> {}", o.fleet_id, new.fleet_id),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::tests::sample_keys;

    #[test]
    fn diff_names_added_removed_and_changed_keys() {
        let a = sample_keys();
        assert_eq!(diff_keys(Some(&a), &a), vec![]);
        assert_eq!(diff_keys(None, &a).len(), 2);
        let mut b = a.clone();
        b.keys[0].public_key = crate::bundle::b64(&[0x33; 32]);
        b.keys.remove(1);
        let mut extra = a.keys[1].clone();
        extra.id = "hsm-2".into();
        b.keys.push(extra);
        let d = diff_keys(Some(&a), &b);
        let kinds: Vec<(ChangeKind, &str)> = d.iter().map(|c| (c.change, c.id.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (ChangeKind::Changed, "opaque-1"),
                (ChangeKind::Added, "hsm-2"),
                (ChangeKind::Removed, "hsm-1")
            ]
        );
        assert_eq!(d[0].detail, "public key");
    }
}
