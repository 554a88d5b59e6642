//! The replicated state of the HSM fleet: per-user records and guess
//! counters. Implements [`coffer_fleet::StateMachine`]. Commands and responses
//! cross the replication layer sealed under the fleet's state-sealing key;
//! snapshots are sealed too, so nothing of the state is ever at rest or in
//! transit in the clear.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use coffer_fleet::{ReplicationError, StateMachine};
use coffer_vault_proto::channel::RequestId;
use coffer_vault_proto::Bytes;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::HsmSecrets;

const CMD_LABEL: &str = "coffer-hsm command v1";
const RESP_LABEL: &str = "coffer-hsm response v1";
const SNAP_LABEL: &str = "coffer-hsm snapshot v1";

pub(crate) type RecordId = [u8; 16];

/// A new record, as registration or change makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NewRecord {
    pub id: RecordId,
    pub upload: Bytes,
    pub wrapped: Bytes,
}

/// A state change. Applied deterministically in log order on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Cmd {
    Register {
        user: String,
        record: NewRecord,
    },
    /// Count one attempt (before any evaluation). `request` is the id of
    /// the channel message that asked (its handshake hash): a replayed
    /// message has the same id and is refused without counting. `None` only
    /// in commands logged before protocol v2.
    BeginAttempt {
        user: String,
        #[serde(default)]
        request: Option<RequestId>,
    },
    /// The attempt failed: destroy the record if the limit is reached.
    Fail {
        user: String,
        id: RecordId,
    },
    /// The attempt at `seq` succeeded: reset the counter, once.
    Succeed {
        user: String,
        id: RecordId,
        seq: u64,
    },
    /// Replace the record, authorised by the success at `seq`.
    Replace {
        user: String,
        id: RecordId,
        seq: u64,
        record: NewRecord,
    },
    /// Delete the record, authorised by the success at `seq`.
    Delete {
        user: String,
        id: RecordId,
        seq: u64,
    },
    /// Commits nothing; shows a majority is reachable.
    Probe,
    /// A failed dummy login of an unknown account (see `ghosts`).
    GhostFail {
        user: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Registered,
    AlreadyRegistered,
    IdReused,
    Attempt {
        id: RecordId,
        seq: u64,
        used: u32,
        upload: Bytes,
    },
    /// An unknown account; `used` is its fake counter.
    Ghost {
        used: u32,
    },
    Destroyed,
    Failed {
        remaining: u32,
        destroyed: bool,
    },
    Succeeded {
        wrapped: Bytes,
    },
    Stale,
    Replaced,
    Deleted,
    Probed,
    Rejected,
    /// A `BeginAttempt` whose request id was seen before: nothing counted.
    Replayed,
}

#[derive(Serialize, Deserialize)]
struct Sealed<T> {
    nonce: [u8; 16],
    body: T,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    id: RecordId,
    upload: Bytes,
    wrapped: Bytes,
    used: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct UserEntry {
    live: Option<Record>,
    /// Every record id this user ever had: never reused.
    ids: Vec<RecordId>,
    /// Attempt sequence number, bumped by every `BeginAttempt`.
    seq: u64,
    /// The sequence number whose success was consumed (if any).
    consumed: Option<u64>,
    /// Wrong guesses ever evaluated (counted) against this user's records:
    /// for audits and tests, never reset.
    total_attempts: u64,
    /// The request ids of the last [`REQUESTS_PER_USER`] login attempts, so
    /// that a replayed channel message counts nothing.
    #[serde(default)]
    requests: VecDeque<RequestId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Data {
    users: BTreeMap<String, UserEntry>,
    /// Fake counters of unknown accounts that were tried, so that their
    /// dummy answers count down (and end "destroyed") like a real record's.
    /// At most [`GHOST_CAP`] entries; the smallest id goes first when full.
    #[serde(default)]
    ghosts: BTreeMap<String, u32>,
    /// The outcomes of the last [`RECENT_CAP`] commands, by the nonce sealed
    /// into each, oldest first. The fleet can commit a command twice in one
    /// rare case (a proposal retried after a deposed leader truncated it,
    /// while another leader commits the old entry: `docs/fleet.md`); the
    /// second is then answered like the first instead of being executed
    /// again (no second counted attempt). Part of the replicated state, so
    /// every node, and every snapshot, agrees.
    #[serde(default)]
    recent: VecDeque<([u8; 16], Outcome)>,
}

/// How many login attempts' request ids are remembered per user. A replay
/// of an older message than that is refused by its time instead: evicting
/// an id takes this many newer attempts for the same user within the
/// request window (`coffer_vault_proto::channel::REQUEST_WINDOW_SECS`).
pub(crate) const REQUESTS_PER_USER: usize = 64;

/// How many unknown accounts' fake counters are kept.
pub(crate) const GHOST_CAP: usize = 100_000;

/// How many commands' outcomes are remembered against a second commit. The
/// retry follows the first commit by a leader change and a few tens of
/// milliseconds: about a hundred commands at this fleet's peak rate.
pub(crate) const RECENT_CAP: usize = 1024;

/// The HSM's replicated state machine.
pub struct HsmState {
    secrets: Arc<HsmSecrets>,
    data: Data,
}

impl std::fmt::Debug for HsmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HsmState(<{} users>)", self.data.users.len())
    }
}

impl HsmState {
    pub fn new(secrets: Arc<HsmSecrets>) -> Self {
        HsmState {
            secrets,
            data: Data::default(),
        }
    }

    /// Attempts counted (OPRF evaluations allowed) for `user` over all its
    /// records, ever. For audits and tests.
    pub fn total_attempts(&self, user: &str) -> u64 {
        self.data.users.get(user).map_or(0, |u| u.total_attempts)
    }

    /// Whether `user` has a live record.
    pub fn has_live_record(&self, user: &str) -> bool {
        self.data.users.get(user).is_some_and(|u| u.live.is_some())
    }

    pub(crate) fn seal_command(secrets: &HsmSecrets, nonce: [u8; 16], cmd: &Cmd) -> Vec<u8> {
        let json =
            Zeroizing::new(serde_json::to_vec(&Sealed { nonce, body: cmd }).unwrap_or_default());
        secrets.sealer().seal(CMD_LABEL, &json)
    }

    pub(crate) fn open_response(
        secrets: &HsmSecrets,
        nonce: [u8; 16],
        bytes: &[u8],
    ) -> Option<Outcome> {
        let json = secrets.sealer().open(RESP_LABEL, bytes)?;
        let s: Sealed<Outcome> = serde_json::from_slice(&json).ok()?;
        (s.nonce == nonce).then_some(s.body)
    }

    fn ghost_attempt(&mut self, user: String, limit: u32) -> Outcome {
        if !self.data.ghosts.contains_key(&user) && self.data.ghosts.len() >= GHOST_CAP {
            self.data.ghosts.pop_first();
        }
        let g = self.data.ghosts.entry(user).or_insert(0);
        if *g >= limit {
            return Outcome::Destroyed;
        }
        *g += 1;
        Outcome::Ghost { used: *g }
    }

    fn exec(&mut self, cmd: Cmd) -> Outcome {
        let limit = self.secrets.guess_limit();
        match cmd {
            Cmd::Probe => Outcome::Probed,
            Cmd::GhostFail { user } => match self.data.ghosts.get(&user) {
                Some(&g) if g >= limit => Outcome::Failed {
                    remaining: 0,
                    destroyed: true,
                },
                Some(&g) => Outcome::Failed {
                    remaining: limit - g,
                    destroyed: false,
                },
                None => Outcome::Failed {
                    remaining: limit.saturating_sub(1),
                    destroyed: false,
                },
            },
            Cmd::Register { user, record } => {
                self.data.ghosts.remove(&user);
                let e = self.data.users.entry(user).or_default();
                match &e.live {
                    Some(live) if live.id == record.id => Outcome::Registered,
                    Some(_) => Outcome::AlreadyRegistered,
                    None if e.ids.contains(&record.id) => Outcome::IdReused,
                    None => {
                        e.ids.push(record.id);
                        e.live = Some(Record {
                            id: record.id,
                            upload: record.upload,
                            wrapped: record.wrapped,
                            used: 0,
                        });
                        e.consumed = None;
                        Outcome::Registered
                    }
                }
            }
            Cmd::BeginAttempt { user, request } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return self.ghost_attempt(user, limit);
                };
                if let Some(id) = request {
                    if e.requests.contains(&id) {
                        return Outcome::Replayed;
                    }
                    if e.requests.len() >= REQUESTS_PER_USER {
                        e.requests.pop_front();
                    }
                    e.requests.push_back(id);
                }
                let Some(live) = e.live.as_mut() else {
                    return Outcome::Destroyed;
                };
                if live.used >= limit {
                    // The last allowed attempt was spent and never succeeded.
                    e.live = None;
                    return Outcome::Destroyed;
                }
                live.used += 1;
                e.seq += 1;
                e.total_attempts += 1;
                Outcome::Attempt {
                    id: live.id,
                    seq: e.seq,
                    used: live.used,
                    upload: live.upload.clone(),
                }
            }
            Cmd::Fail { user, id } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return Outcome::Stale;
                };
                match &e.live {
                    Some(live) if live.id == id => {
                        if live.used >= limit {
                            e.live = None;
                            Outcome::Failed {
                                remaining: 0,
                                destroyed: true,
                            }
                        } else {
                            Outcome::Failed {
                                remaining: limit - live.used,
                                destroyed: false,
                            }
                        }
                    }
                    Some(_) => Outcome::Stale,
                    None => Outcome::Failed {
                        remaining: 0,
                        destroyed: true,
                    },
                }
            }
            Cmd::Succeed { user, id, seq } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return Outcome::Stale;
                };
                match e.live.as_mut() {
                    Some(live) if live.id == id && e.seq == seq && e.consumed != Some(seq) => {
                        live.used = 0;
                        e.consumed = Some(seq);
                        Outcome::Succeeded {
                            wrapped: live.wrapped.clone(),
                        }
                    }
                    Some(_) => Outcome::Stale,
                    None => Outcome::Destroyed,
                }
            }
            Cmd::Replace {
                user,
                id,
                seq,
                record,
            } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return Outcome::Stale;
                };
                let authorised = matches!(&e.live, Some(l) if l.id == id)
                    && e.seq == seq
                    && e.consumed == Some(seq);
                if e.live.is_none() {
                    Outcome::Destroyed
                } else if !authorised {
                    Outcome::Stale
                } else if e.ids.contains(&record.id) {
                    Outcome::IdReused
                } else {
                    e.ids.push(record.id);
                    e.live = Some(Record {
                        id: record.id,
                        upload: record.upload,
                        wrapped: record.wrapped,
                        used: 0,
                    });
                    // The authorisation is spent.
                    e.consumed = None;
                    Outcome::Replaced
                }
            }
            Cmd::Delete { user, id, seq } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return Outcome::Stale;
                };
                let authorised = matches!(&e.live, Some(l) if l.id == id)
                    && e.seq == seq
                    && e.consumed == Some(seq);
                if e.live.is_none() {
                    Outcome::Destroyed
                } else if !authorised {
                    Outcome::Stale
                } else {
                    e.live = None;
                    e.consumed = None;
                    Outcome::Deleted
                }
            }
        }
    }
}

impl StateMachine for HsmState {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let sealer = self.secrets.sealer();
        let Some(json) = sealer.open(CMD_LABEL, command) else {
            // Forged or damaged: applied as a no-op on every node alike.
            return Vec::new();
        };
        let Ok(Sealed { nonce, body }) = serde_json::from_slice::<Sealed<Cmd>>(&json) else {
            return Vec::new();
        };
        let outcome = match self.data.recent.iter().find(|(n, _)| *n == nonce) {
            Some((_, seen)) => seen.clone(),
            None => {
                let o = self.exec(body);
                if self.data.recent.len() >= RECENT_CAP {
                    self.data.recent.pop_front();
                }
                self.data.recent.push_back((nonce, o.clone()));
                o
            }
        };
        let out = Zeroizing::new(
            serde_json::to_vec(&Sealed {
                nonce,
                body: outcome,
            })
            .unwrap_or_default(),
        );
        // Deterministic: the same response on every node.
        self.secrets
            .sealer()
            .seal_with_nonce(RESP_LABEL, nonce, &out)
    }

    fn snapshot(&self) -> Vec<u8> {
        let json = Zeroizing::new(serde_json::to_vec(&self.data).unwrap_or_default());
        self.secrets.sealer().seal(SNAP_LABEL, &json)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ReplicationError> {
        let json = self
            .secrets
            .sealer()
            .open(SNAP_LABEL, snapshot)
            .ok_or_else(|| {
                ReplicationError::Corrupt("HSM snapshot failed authentication".into())
            })?;
        self.data = serde_json::from_slice(&json)
            .map_err(|_| ReplicationError::Corrupt("HSM snapshot is malformed".into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(limit: u32) -> HsmState {
        HsmState::new(Arc::new(HsmSecrets::generate("t", limit).unwrap()))
    }

    /// Applies `cmd` sealed under a fresh nonce, as `Hsm::commit` does.
    fn run(s: &mut HsmState, cmd: Cmd) -> Outcome {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(
            &NEXT
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_be_bytes(),
        );
        run_with(s, nonce, cmd)
    }

    fn run_with(s: &mut HsmState, nonce: [u8; 16], cmd: Cmd) -> Outcome {
        let secrets = s.secrets.clone();
        let out = s.apply(&HsmState::seal_command(&secrets, nonce, &cmd));
        HsmState::open_response(&secrets, nonce, &out).unwrap()
    }

    #[test]
    fn a_command_committed_twice_is_executed_once_and_answered_alike() {
        let mut s = with_user_u();
        let u = || "u".to_string();
        let cmd = begin(u());
        let first = run_with(&mut s, [1; 16], cmd.clone());
        assert!(
            matches!(first, Outcome::Attempt { used: 1, .. }),
            "{first:?}"
        );
        // The same sealed command again (same nonce): the same answer, and
        // the attempt is not counted a second time.
        assert_eq!(run_with(&mut s, [1; 16], cmd.clone()), first);
        assert!(matches!(
            run(&mut s, begin(u())),
            Outcome::Attempt { used: 2, .. }
        ));
        // Remembered for RECENT_CAP commands, then forgotten (bounded state).
        for _ in 0..RECENT_CAP {
            run(&mut s, Cmd::Probe);
        }
        assert_eq!(s.data.recent.len(), RECENT_CAP);
        // The nonce is forgotten (the command is executed again, not
        // answered from memory), but its request id is not: a third commit
        // of it still counts nothing.
        assert_eq!(run_with(&mut s, [1; 16], cmd), Outcome::Replayed);
        assert!(matches!(
            run(&mut s, begin(u())),
            Outcome::Attempt { used: 3, .. }
        ));
        // Snapshots carry it, so a node restored from one agrees.
        let mut t = state(10);
        t.secrets = s.secrets.clone();
        t.restore(&s.snapshot()).unwrap();
        assert_eq!(t.data, s.data);
    }

    /// A `BeginAttempt` as a fresh channel message makes it (a new request id).
    fn begin(user: String) -> Cmd {
        let mut id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        Cmd::BeginAttempt {
            user,
            request: Some(id),
        }
    }

    #[test]
    fn a_replayed_request_id_counts_nothing_and_ids_are_bounded_per_user() {
        let mut s = with_user_u();
        let u = || "u".to_string();
        let first = begin(u());
        assert!(matches!(
            run(&mut s, first.clone()),
            Outcome::Attempt { used: 1, .. }
        ));
        // The same message again, committed as a new command (new nonce).
        for _ in 0..5 {
            assert_eq!(run(&mut s, first.clone()), Outcome::Replayed);
        }
        assert_eq!(s.total_attempts("u"), 1);
        assert!(matches!(
            run(&mut s, begin(u())),
            Outcome::Attempt { used: 2, .. }
        ));
        // Commands logged before protocol v2 carry no id: counted as before.
        let legacy = Cmd::BeginAttempt {
            user: u(),
            request: None,
        };
        assert!(matches!(
            run(&mut s, legacy.clone()),
            Outcome::Attempt { used: 3, .. }
        ));
        assert!(matches!(
            run(&mut s, legacy),
            Outcome::Attempt { used: 4, .. }
        ));
        // Bounded: the oldest id goes after REQUESTS_PER_USER newer ones.
        let mut s = state(1000);
        run(
            &mut s,
            Cmd::Register {
                user: u(),
                record: rec(1),
            },
        );
        let old = begin(u());
        run(&mut s, old.clone());
        for _ in 0..REQUESTS_PER_USER - 1 {
            run(&mut s, begin(u()));
        }
        assert_eq!(run(&mut s, old.clone()), Outcome::Replayed);
        run(&mut s, begin(u()));
        assert_eq!(s.data.users["u"].requests.len(), REQUESTS_PER_USER);
        assert!(matches!(run(&mut s, old), Outcome::Attempt { .. }));
        // An old command's JSON (no request field) still opens and applies.
        let json = br#"{"BeginAttempt":{"user":"u"}}"#;
        let c: Cmd = serde_json::from_slice(json).unwrap();
        assert_eq!(
            c,
            Cmd::BeginAttempt {
                user: u(),
                request: None
            }
        );
    }

    /// A state (guess limit 10) in which user `u` has record 1.
    fn with_user_u() -> HsmState {
        let mut s = state(10);
        run(
            &mut s,
            Cmd::Register {
                user: "u".into(),
                record: rec(1),
            },
        );
        s
    }

    fn rec(id: u8) -> NewRecord {
        NewRecord {
            id: [id; 16],
            upload: Bytes(vec![id]),
            wrapped: Bytes(vec![id; 48]),
        }
    }

    #[test]
    fn counter_destroys_at_the_limit_and_ids_never_come_back() {
        let mut s = state(3);
        let u = || "u".to_string();
        assert_eq!(
            run(
                &mut s,
                Cmd::Register {
                    user: u(),
                    record: rec(1)
                }
            ),
            Outcome::Registered
        );
        for used in 1..=3 {
            match run(&mut s, begin(u())) {
                Outcome::Attempt { used: got, .. } => assert_eq!(got, used),
                o => panic!("{o:?}"),
            }
        }
        assert_eq!(run(&mut s, begin(u())), Outcome::Destroyed);
        assert_eq!(s.total_attempts("u"), 3);
        // The same record id cannot come back (a replayed registration).
        assert_eq!(
            run(
                &mut s,
                Cmd::Register {
                    user: u(),
                    record: rec(1)
                }
            ),
            Outcome::IdReused
        );
        assert_eq!(
            run(
                &mut s,
                Cmd::Register {
                    user: u(),
                    record: rec(2)
                }
            ),
            Outcome::Registered
        );
        assert_eq!(
            run(
                &mut s,
                Cmd::Register {
                    user: u(),
                    record: rec(3)
                }
            ),
            Outcome::AlreadyRegistered
        );
    }

    #[test]
    fn success_resets_once_and_only_for_the_latest_attempt() {
        let mut s = with_user_u();
        let u = || "u".to_string();
        let Outcome::Attempt { seq: s1, .. } = run(&mut s, begin(u())) else {
            panic!()
        };
        let Outcome::Attempt { seq: s2, used, .. } = run(&mut s, begin(u())) else {
            panic!()
        };
        assert_eq!(used, 2);
        assert_eq!(
            run(
                &mut s,
                Cmd::Succeed {
                    user: u(),
                    id: [1; 16],
                    seq: s1
                }
            ),
            Outcome::Stale
        );
        assert!(matches!(
            run(
                &mut s,
                Cmd::Succeed {
                    user: u(),
                    id: [1; 16],
                    seq: s2
                }
            ),
            Outcome::Succeeded { .. }
        ));
        assert_eq!(
            run(
                &mut s,
                Cmd::Succeed {
                    user: u(),
                    id: [1; 16],
                    seq: s2
                }
            ),
            Outcome::Stale,
            "replay"
        );
        // Delete needs the consumed success at the current seq.
        assert_eq!(
            run(
                &mut s,
                Cmd::Delete {
                    user: u(),
                    id: [1; 16],
                    seq: s1
                }
            ),
            Outcome::Stale
        );
        assert_eq!(
            run(
                &mut s,
                Cmd::Delete {
                    user: u(),
                    id: [1; 16],
                    seq: s2
                }
            ),
            Outcome::Deleted
        );
        assert_eq!(run(&mut s, begin(u())), Outcome::Destroyed);
    }

    #[test]
    fn forged_commands_are_no_ops_and_snapshots_are_sealed() {
        let mut s = with_user_u();
        let other = HsmSecrets::generate("t", 10).unwrap();
        let forged = HsmState::seal_command(
            &other,
            [0; 16],
            &Cmd::Delete {
                user: "u".into(),
                id: [1; 16],
                seq: 0,
            },
        );
        assert!(s.apply(&forged).is_empty());
        assert!(s.apply(b"garbage").is_empty());
        assert!(s.has_live_record("u"));
        let snap = s.snapshot();
        assert!(
            !String::from_utf8_lossy(&snap).contains("users"),
            "snapshot in the clear"
        );
        let mut t = HsmState::new(s.secrets.clone());
        t.restore(&snap).unwrap();
        assert!(t.has_live_record("u"));
        let mut bad = snap.clone();
        bad[40] ^= 1;
        assert!(t.restore(&bad).is_err());
        assert!(state(10).restore(&snap).is_err(), "another fleet's key");
    }
}
