//! The trust policy: which log, which cosigners, which quorum of them, and
//! how old a cosigned checkpoint may be.
//!
//! The file is C2SP tlog-policy (https://c2sp.org/tlog-policy) with one
//! Coffer line added:
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]      (a cosigner: vkey of signature type 0x04)
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! max-age <seconds>                  (Coffer: the oldest quorum time accepted)
//! ```
//!
//! `#` starts a comment line; blank lines are ignored; items are separated by
//! spaces or tabs. Removing the `max-age` line leaves a tlog-policy file any
//! other implementation reads.

use crate::note::{NoteVerifier, ALG_COSIGNATURE_V1, ALG_ED25519};
use coffer_error::{ErrorKind, UserFacing};
use std::collections::BTreeMap;

/// The maximum age of the quorum's cosignatures when a policy says nothing.
pub const DEFAULT_MAX_AGE_SECS: u64 = 24 * 3600;
/// Cosignatures this far in the future (clock skew) still count.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;
/// Limits (the spec recommends supporting at least 32 of each).
pub const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the trust policy is malformed at line {line}: {why}")]
    Malformed { line: usize, why: String },
}

impl UserFacing for PolicyError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
    fn code(&self) -> &'static str {
        "CF-T070"
    }
    fn next_step(&self) -> String {
        "Use the policy file published with the deployment (tlog-policy: log, witness, group, quorum, max-age lines).".into()
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &["CF-T070"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLog {
    pub key: NoteVerifier,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    pub name: String,
    pub key: NoteVerifier,
    /// The cosigner's tlog-witness submission prefix (used by the log).
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    k: usize,
    members: Vec<Member>,
}

/// A parsed trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub logs: Vec<PolicyLog>,
    pub witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// `None`: `quorum none`.
    quorum: Option<Member>,
    /// The oldest quorum time accepted, in seconds before now.
    pub max_age_secs: u64,
    text: String,
}

fn bad(line: usize, why: impl Into<String>) -> PolicyError {
    PolicyError::Malformed {
        line,
        why: why.into(),
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > 64 * 1024 {
            return Err(bad(0, "the file is too large"));
        }
        let mut p = Policy {
            logs: vec![],
            witnesses: vec![],
            groups: vec![],
            quorum: None,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            text: text.to_string(),
        };
        let mut names: BTreeMap<String, Member> = BTreeMap::new();
        let mut quorum_seen = false;
        let mut max_age_seen = false;
        for (i, raw) in text.split('\n').enumerate() {
            let n = i + 1;
            if raw
                .bytes()
                .any(|b| b < 0x20 && b != b'\t' || b == 0x7f || b == b'\r')
            {
                return Err(bad(n, "control characters"));
            }
            let items: Vec<&str> = raw.split([' ', '\t']).filter(|s| !s.is_empty()).collect();
            if items.is_empty() || items[0].starts_with('#') {
                continue;
            }
            if p.logs.len() + p.witnesses.len() + p.groups.len() >= MAX_ENTRIES {
                return Err(bad(n, "too many entries"));
            }
            match items[0] {
                "log" => {
                    if !(2..=3).contains(&items.len()) {
                        return Err(bad(n, "expected: log <vkey> [<url>]"));
                    }
                    let key = NoteVerifier::parse(items[1]).map_err(|e| bad(n, e.to_string()))?;
                    if key.alg() != ALG_ED25519 {
                        return Err(bad(n, "a log key has signature type 0x01"));
                    }
                    if p.logs
                        .iter()
                        .any(|l| l.key.public_key() == key.public_key())
                    {
                        return Err(bad(n, "duplicate log"));
                    }
                    p.logs.push(PolicyLog {
                        key,
                        url: items.get(2).map(|s| s.to_string()),
                    });
                }
                "witness" => {
                    if !(3..=4).contains(&items.len()) {
                        return Err(bad(n, "expected: witness <name> <vkey> [<url>]"));
                    }
                    let name = items[1];
                    if name == "none" || names.contains_key(name) {
                        return Err(bad(n, format!("the name {name:?} is taken")));
                    }
                    let key = NoteVerifier::parse(items[2]).map_err(|e| bad(n, e.to_string()))?;
                    if key.alg() != ALG_COSIGNATURE_V1 {
                        return Err(bad(
                            n,
                            "a cosigner key has signature type 0x04 (cosignature/v1)",
                        ));
                    }
                    if p.witnesses
                        .iter()
                        .any(|w| w.key.public_key() == key.public_key())
                    {
                        return Err(bad(n, "duplicate witness"));
                    }
                    names.insert(name.into(), Member::Witness(p.witnesses.len()));
                    p.witnesses.push(PolicyWitness {
                        name: name.into(),
                        key,
                        url: items.get(3).map(|s| s.to_string()),
                    });
                }
                "group" => {
                    if items.len() < 4 {
                        return Err(bad(n, "expected: group <name> all|any|<k> <name>..."));
                    }
                    let name = items[1];
                    if name == "none" || names.contains_key(name) {
                        return Err(bad(n, format!("the name {name:?} is taken")));
                    }
                    let mut members = Vec::new();
                    for m in &items[3..] {
                        let member = names
                            .get(*m)
                            .ok_or_else(|| bad(n, format!("{m:?} is not defined above")))?;
                        if members.contains(member) {
                            return Err(bad(n, format!("{m:?} is listed twice")));
                        }
                        members.push(member.clone());
                    }
                    let k = match items[2] {
                        "all" => members.len(),
                        "any" => 1,
                        k if k.bytes().all(|b| b.is_ascii_digit()) && !k.starts_with('0') => k
                            .parse::<usize>()
                            .ok()
                            .filter(|k| (1..=members.len()).contains(k))
                            .ok_or_else(|| bad(n, "the threshold must be 1..=members"))?,
                        _ => return Err(bad(n, "the threshold is all, any or a number")),
                    };
                    names.insert(name.into(), Member::Group(p.groups.len()));
                    p.groups.push(Group {
                        name: name.into(),
                        k,
                        members,
                    });
                }
                "quorum" => {
                    if items.len() != 2 || quorum_seen {
                        return Err(bad(n, "exactly one line: quorum <name>|none"));
                    }
                    quorum_seen = true;
                    p.quorum = match items[1] {
                        "none" => None,
                        q => Some(
                            names
                                .get(q)
                                .cloned()
                                .ok_or_else(|| bad(n, format!("{q:?} is not defined above")))?,
                        ),
                    };
                }
                "max-age" => {
                    if items.len() != 2 || max_age_seen {
                        return Err(bad(n, "at most one line: max-age <seconds>"));
                    }
                    max_age_seen = true;
                    p.max_age_secs = items[1]
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| bad(n, "max-age is a positive number of seconds"))?;
                }
                other => return Err(bad(n, format!("unknown keyword {other:?}"))),
            }
        }
        if !quorum_seen {
            return Err(bad(0, "no quorum line"));
        }
        Ok(p)
    }

    /// The policy text as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when no cosignature is required (`quorum none`).
    pub fn requires_cosigners(&self) -> bool {
        self.quorum.is_some()
    }

    /// Whether the cosigners whose index (in `witnesses`) is in `cosigned`
    /// satisfy the quorum.
    pub fn satisfied(&self, cosigned: &[bool]) -> bool {
        match &self.quorum {
            None => true,
            Some(m) => self.member_ok(m, cosigned),
        }
    }

    fn member_ok(&self, m: &Member, cosigned: &[bool]) -> bool {
        match m {
            Member::Witness(i) => cosigned.get(*i).copied().unwrap_or(false),
            Member::Group(g) => {
                let g = &self.groups[*g];
                g.members
                    .iter()
                    .filter(|m| self.member_ok(m, cosigned))
                    .count()
                    >= g.k
            }
        }
    }

    /// The quorum rule in words, for reports.
    pub fn describe_quorum(&self) -> String {
        match &self.quorum {
            None => "none (no cosignature required)".into(),
            Some(m) => self.describe(m),
        }
    }

    fn describe(&self, m: &Member) -> String {
        match m {
            Member::Witness(i) => self.witnesses[*i].name.clone(),
            Member::Group(g) => {
                let g = &self.groups[*g];
                let parts: Vec<String> = g.members.iter().map(|m| self.describe(m)).collect();
                format!("{} of [{}]", g.k, parts.join(", "))
            }
        }
    }

    /// The log entry whose key is `key`, if the policy lists it.
    pub fn log(&self, key: &NoteVerifier) -> Option<&PolicyLog> {
        self.logs.iter().find(|l| l.key == *key)
    }
}

/// Writes a policy: one log, these cosigners, a `k`-of-n quorum (`k = 0`:
/// `quorum none`).
pub fn policy_text(
    log: &NoteVerifier,
    log_url: Option<&str>,
    cosigners: &[(String, NoteVerifier, Option<String>)],
    k: usize,
    max_age_secs: u64,
) -> String {
    let mut s = String::from("# Coffer trust policy (C2SP tlog-policy, plus max-age)\n");
    s.push_str(&format!("log {log}"));
    if let Some(u) = log_url {
        s.push_str(&format!(" {u}"));
    }
    s.push('\n');
    for (name, key, url) in cosigners {
        s.push_str(&format!("witness {name} {key}"));
        if let Some(u) = url {
            s.push_str(&format!(" {u}"));
        }
        s.push('\n');
    }
    if k == 0 || cosigners.is_empty() {
        s.push_str("quorum none\n");
    } else {
        let names: Vec<&str> = cosigners.iter().map(|c| c.0.as_str()).collect();
        s.push_str(&format!("group cosigners {k} {}\n", names.join(" ")));
        s.push_str("quorum cosigners\n");
    }
    s.push_str(&format!("max-age {max_age_secs}\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    fn w(seed: u8, name: &str) -> NoteVerifier {
        NoteSigner::from_seed_alg(name, ALG_COSIGNATURE_V1, &[seed; 32])
            .unwrap()
            .verifier()
    }

    #[test]
    fn the_spec_example_with_two_levels_of_groups() {
        let log = NoteSigner::from_seed("log.example", &[9; 32])
            .unwrap()
            .verifier();
        let mut t = format!("# a comment\nlog {log} https://log.example/\n\n");
        for (i, n) in ["X1", "X2", "X3", "Y1", "Y2", "Y3"].iter().enumerate() {
            t.push_str(&format!("witness {n}\t{}\n", w(i as u8 + 1, n)));
        }
        t.push_str("group X-witnesses 2 X1 X2 X3\ngroup Y-witnesses any Y1 Y2 Y3\n");
        t.push_str("group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\nmax-age 600\n");
        let p = Policy::parse(&t).unwrap();
        assert_eq!(p.max_age_secs, 600);
        assert_eq!(p.witnesses.len(), 6);
        assert!(p.log(&log).is_some());
        let set = |v: &[usize]| {
            let mut b = vec![false; 6];
            for i in v {
                b[*i] = true;
            }
            b
        };
        assert!(p.satisfied(&set(&[0, 1, 3])));
        assert!(p.satisfied(&set(&[0, 2, 5])));
        assert!(!p.satisfied(&set(&[0, 3, 4, 5])), "one X only");
        assert!(!p.satisfied(&set(&[0, 1, 2])), "no Y");
        assert_eq!(
            p.describe_quorum(),
            "2 of [2 of [X1, X2, X3], 1 of [Y1, Y2, Y3]]"
        );
    }

    #[test]
    fn malformed_policies_are_refused_with_the_line() {
        let log = NoteSigner::from_seed("log.example", &[9; 32])
            .unwrap()
            .verifier();
        let a = w(1, "a");
        for (t, line) in [
            (format!("log {log}\n"), 0),
            (format!("witness a {a}\nquorum b\n"), 2),
            (
                format!("witness a {a}\nwitness a {}\nquorum a\n", w(2, "a")),
                2,
            ),
            (format!("witness a {a}\nwitness b {a}\nquorum a\n"), 2),
            (format!("witness a {log}\nquorum a\n"), 1),
            (format!("log {a}\nquorum none\n"), 1),
            (format!("witness a {a}\ngroup g 2 a\nquorum g\n"), 2),
            (format!("witness a {a}\ngroup g 1 a a\nquorum g\n"), 2),
            (format!("witness a {a}\nquorum a\nquorum a\n"), 3),
            ("quorum none\nmax-age 0\n".to_string(), 2),
            ("quorum none\nfrobnicate\n".to_string(), 2),
            ("quorum none\r\n".to_string(), 1),
        ] {
            match Policy::parse(&t) {
                Err(PolicyError::Malformed { line: l, .. }) => assert_eq!(l, line, "{t}"),
                Ok(_) => panic!("accepted: {t}"),
            }
        }
        let p = Policy::parse("quorum none\n").unwrap();
        assert!(!p.requires_cosigners() && p.satisfied(&[]));
        assert_eq!(p.max_age_secs, DEFAULT_MAX_AGE_SECS);
    }

    #[test]
    fn written_policies_read_back() {
        let log = NoteSigner::from_seed("log.example", &[9; 32])
            .unwrap()
            .verifier();
        let cs = vec![
            (
                "c1".to_string(),
                w(1, "c1.example"),
                Some("http://x/".into()),
            ),
            ("c2".to_string(), w(2, "c2.example"), None),
        ];
        let p = Policy::parse(&policy_text(&log, None, &cs, 2, 3600)).unwrap();
        assert_eq!(p.describe_quorum(), "2 of [c1, c2]");
        assert_eq!(p.witnesses[0].url.as_deref(), Some("http://x/"));
        assert!(p.satisfied(&[true, true]) && !p.satisfied(&[true, false]));
    }
}
