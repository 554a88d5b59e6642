//! The replicated state of the HSM fleet: per-user records and guess
//! counters. Implements [`coffer_fleet::StateMachine`]. Commands and responses
//! cross the replication layer sealed under the fleet's state-sealing key;
//! snapshots are sealed too, so nothing of the state is ever at rest or in
//! transit in the clear.
//!
//! Time enters only through commands: a `BeginAttempt` carries the proposing
//! HSM's clock (`at`), so every node applies the same throttle decision
//! (see [`throttle_delay`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use coffer_fleet::{ReplicationError, StateMachine};
use coffer_vault_proto::channel::RequestId;
use coffer_vault_proto::{Bytes, MAX_REPORTED_TIMES};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::HsmSecrets;

const CMD_LABEL: &str = "coffer-hsm command v1";
const RESP_LABEL: &str = "coffer-hsm response v1";
const SNAP_LABEL: &str = "coffer-hsm snapshot v1";

pub(crate) type RecordId = [u8; 16];

/// The time throttle on guesses (as Apple's escrow service has): after
/// `n` consecutive wrong guesses (attempts counted since the last success),
/// the next attempt is taken only `delay` seconds after the last one began.
/// One schedule for every fleet, whatever its guess limit.
pub const THROTTLE_SCHEDULE: [(u32, u64); 4] = [(3, 60), (5, 15 * 60), (7, 3600), (9, 86_400)];

/// The wait before the attempt that follows `wrong` consecutive wrong
/// guesses (0: none), under the default [`THROTTLE_SCHEDULE`].
pub fn throttle_delay(wrong: u32) -> u64 {
    throttle_delay_in(&THROTTLE_SCHEDULE, wrong)
}

/// [`throttle_delay`] under the schedule `schedule` (a fleet's, sealed in
/// its secrets: `(wrong guesses, seconds)` pairs, ascending).
pub fn throttle_delay_in(schedule: &[(u32, u64)], wrong: u32) -> u64 {
    schedule
        .iter()
        .rev()
        .find(|(n, _)| wrong >= *n)
        .map_or(0, |(_, d)| *d)
}

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
    /// in commands logged before protocol v2. `at`: the proposing HSM's
    /// clock (Unix seconds), for the time throttle; `None` in commands
    /// logged before it existed (not throttled).
    BeginAttempt {
        user: String,
        #[serde(default)]
        request: Option<RequestId>,
        #[serde(default)]
        at: Option<u64>,
    },
    /// The attempt failed: destroy the record if the limit is reached.
    /// `seq`: the attempt, so that it is reported to the owner once.
    Fail {
        user: String,
        id: RecordId,
        #[serde(default)]
        seq: Option<u64>,
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
        #[serde(default)]
        seq: Option<u64>,
    },
    /// The login token of the attempt at `seq` expired: if the attempt
    /// neither succeeded nor was reported failed, it was a wrong guess
    /// whose client never said so (an attacker does not): report it once.
    /// `id: None` for an unknown account's (ghost) attempt.
    Settle {
        user: String,
        id: Option<RecordId>,
        seq: u64,
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
    /// An unknown account; `used` is its fake counter, `seq` its attempt.
    Ghost {
        used: u32,
        #[serde(default)]
        seq: u64,
    },
    Destroyed,
    /// This very attempt destroyed the record (the last allowed one was
    /// spent and never succeeded): to be reported to the owner.
    DestroyedNow,
    Failed {
        remaining: u32,
        destroyed: bool,
        /// Whether this is the first report of this attempt's failure.
        #[serde(default)]
        first: bool,
    },
    Succeeded {
        wrapped: Bytes,
        /// Attempts since the previous success that did not succeed.
        #[serde(default)]
        wrong: u32,
        /// When the last [`MAX_REPORTED_TIMES`] of them began, oldest first.
        #[serde(default)]
        wrong_times: Vec<u64>,
    },
    Stale,
    Replaced,
    Deleted,
    Probed,
    Rejected,
    /// A `BeginAttempt` whose request id was seen before: nothing counted.
    Replayed,
    /// A `BeginAttempt` before the throttle's delay passed: nothing counted.
    Throttled {
        retry_at: u64,
        remaining: u32,
    },
    /// A `Settle`: `Some` if the attempt is now reported as a wrong guess.
    Settled {
        report: Option<SettledReport>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SettledReport {
    pub at: u64,
    pub remaining: u32,
    pub destroyed: bool,
}

#[derive(Serialize, Deserialize)]
struct Sealed<T> {
    nonce: [u8; 16],
    body: T,
}

/// One attempt counted since the last success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    seq: u64,
    /// When it began (the proposing HSM's clock; 0 if unknown).
    at: u64,
    /// Whether its failure was reported to the owner.
    reported: bool,
}

/// A guess counter: a live record's, or an unknown account's fake one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counter {
    /// Attempts counted since the last success (consecutive wrong guesses,
    /// the one in progress included).
    used: u32,
    /// When the last counted attempt began (for the throttle).
    #[serde(default)]
    last_at: u64,
    /// The attempts counted since the last success, oldest first.
    #[serde(default)]
    pending: VecDeque<Pending>,
}

impl Counter {
    /// The throttle's answer for an attempt at `at`: `Some(retry_at)` if
    /// it must wait.
    fn throttled(&self, at: Option<u64>, schedule: &[(u32, u64)]) -> Option<u64> {
        let at = at?;
        if self.used == 0 {
            return None;
        }
        let retry_at = self
            .last_at
            .saturating_add(throttle_delay_in(schedule, self.used));
        (at < retry_at).then_some(retry_at)
    }

    /// Counts attempt `seq` at `at`.
    fn count(&mut self, seq: u64, at: Option<u64>, limit: u32) {
        self.used += 1;
        if let Some(at) = at {
            self.last_at = at;
        }
        if self.pending.len() >= limit.max(1) as usize {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            seq,
            at: at.unwrap_or(0),
            reported: false,
        });
    }

    /// Marks attempt `seq` reported; whether it was not before (and is
    /// one of the pending attempts).
    fn report(&mut self, seq: u64) -> Option<u64> {
        let p = self.pending.iter_mut().find(|p| p.seq == seq)?;
        if p.reported {
            return None;
        }
        p.reported = true;
        Some(p.at)
    }

    /// A success at `seq`: the attempts before it were wrong guesses.
    fn succeed(&mut self, seq: u64) -> (u32, Vec<u64>) {
        let wrong: Vec<u64> = self
            .pending
            .iter()
            .filter(|p| p.seq != seq)
            .map(|p| p.at)
            .collect();
        let n = self.used.saturating_sub(1).max(wrong.len() as u32);
        self.used = 0;
        self.pending.clear();
        let skip = wrong.len().saturating_sub(MAX_REPORTED_TIMES);
        (n, wrong[skip..].to_vec())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    id: RecordId,
    upload: Bytes,
    wrapped: Bytes,
    used: u32,
    #[serde(default)]
    last_at: u64,
    #[serde(default)]
    pending: VecDeque<Pending>,
}

impl Record {
    fn counter(&mut self) -> CounterRef<'_> {
        CounterRef {
            used: &mut self.used,
            last_at: &mut self.last_at,
            pending: &mut self.pending,
        }
    }
}

/// A record's counter fields, seen as a [`Counter`] (the record keeps them
/// flat, as records stored before the throttle did).
struct CounterRef<'a> {
    used: &'a mut u32,
    last_at: &'a mut u64,
    pending: &'a mut VecDeque<Pending>,
}

impl CounterRef<'_> {
    fn with<T>(&mut self, f: impl FnOnce(&mut Counter) -> T) -> T {
        let mut c = Counter {
            used: *self.used,
            last_at: *self.last_at,
            pending: std::mem::take(self.pending),
        };
        let out = f(&mut c);
        *self.used = c.used;
        *self.last_at = c.last_at;
        *self.pending = c.pending;
        out
    }
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
    /// Whether the last record was destroyed by wrong guesses (it then
    /// answers "destroyed", as an unknown account guessed to the limit
    /// does); after a deletion the name answers as an unknown account.
    #[serde(default)]
    burnt: bool,
}

impl UserEntry {
    /// Whether a change (`Replace` or `Delete`) of live record `id` is
    /// authorised: the login of attempt `seq` succeeded on that record and
    /// its success was not spent yet. Otherwise the answer to give:
    /// `Destroyed` without a live record, `Stale` for anything else.
    fn authorised_change(&self, id: RecordId, seq: u64) -> Result<(), Outcome> {
        match &self.live {
            None => Err(Outcome::Destroyed),
            Some(l) if l.id == id && self.seq == seq && self.consumed == Some(seq) => Ok(()),
            Some(_) => Err(Outcome::Stale),
        }
    }
}

/// The fake counter of an unknown account that was tried (with a valid
/// ticket: only its address's owner, or the host, can make one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Ghost {
    counter: Counter,
    seq: u64,
    /// Whether its last allowed attempt was spent ("destroyed").
    destroyed: bool,
    /// Request ids, as a record's (a replay counts nothing here either).
    requests: VecDeque<RequestId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Data {
    users: BTreeMap<String, UserEntry>,
    /// The fake counters of states written before the throttle (read once,
    /// moved into `ghost_counters`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    ghosts: BTreeMap<String, u32>,
    /// Fake counters of unknown accounts that were tried, so that their
    /// dummy answers count down, throttle and end "destroyed" exactly like
    /// a real record's. At most [`GHOST_CAP`]; when full, the one made
    /// first goes (`ghost_order`), so a counter is reset only after
    /// [`GHOST_CAP`] other unknown accounts were tried after it, each
    /// needing a ticket for its own address.
    #[serde(default)]
    ghost_counters: BTreeMap<String, Ghost>,
    #[serde(default)]
    ghost_order: VecDeque<String>,
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

impl Data {
    /// Moves the fake counters of an older state into their new form.
    fn migrate(&mut self) {
        for (user, used) in std::mem::take(&mut self.ghosts) {
            self.ghost_order.push_back(user.clone());
            self.ghost_counters.insert(
                user,
                Ghost {
                    counter: Counter {
                        used,
                        ..Counter::default()
                    },
                    ..Ghost::default()
                },
            );
        }
    }
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

/// Remembers `id` in `requests` (bounded); whether it was there already.
fn seen_before(requests: &mut VecDeque<RequestId>, id: Option<RequestId>) -> bool {
    let Some(id) = id else { return false };
    if requests.contains(&id) {
        return true;
    }
    if requests.len() >= REQUESTS_PER_USER {
        requests.pop_front();
    }
    requests.push_back(id);
    false
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

    fn ghost_attempt(
        &mut self,
        user: String,
        request: Option<RequestId>,
        at: Option<u64>,
        limit: u32,
    ) -> Outcome {
        if !self.data.ghost_counters.contains_key(&user) {
            while self.data.ghost_counters.len() >= GHOST_CAP {
                match self.data.ghost_order.pop_front() {
                    Some(old) => {
                        self.data.ghost_counters.remove(&old);
                    }
                    None => break,
                }
            }
            self.data.ghost_order.push_back(user.clone());
        }
        let g = self.data.ghost_counters.entry(user).or_default();
        if seen_before(&mut g.requests, request) {
            return Outcome::Replayed;
        }
        if g.destroyed {
            return Outcome::Destroyed;
        }
        if g.counter.used >= limit {
            g.destroyed = true;
            return Outcome::DestroyedNow;
        }
        if let Some(retry_at) = g.counter.throttled(at, self.secrets.throttle_schedule()) {
            return Outcome::Throttled {
                retry_at,
                remaining: limit - g.counter.used,
            };
        }
        g.seq += 1;
        g.counter.count(g.seq, at, limit);
        Outcome::Ghost {
            used: g.counter.used,
            seq: g.seq,
        }
    }

    /// The failure of a ghost's attempt `seq` (a dummy login never succeeds).
    fn ghost_fail(&mut self, user: &str, seq: Option<u64>, limit: u32) -> Outcome {
        let Some(g) = self.data.ghost_counters.get_mut(user) else {
            return Outcome::Failed {
                remaining: limit.saturating_sub(1),
                destroyed: false,
                first: false,
            };
        };
        let first = seq.and_then(|s| g.counter.report(s)).is_some();
        if g.counter.used >= limit {
            g.destroyed = true;
        }
        Outcome::Failed {
            remaining: limit.saturating_sub(g.counter.used),
            destroyed: g.destroyed,
            first,
        }
    }

    fn exec(&mut self, cmd: Cmd) -> Outcome {
        let limit = self.secrets.guess_limit();
        let secrets = Arc::clone(&self.secrets);
        let schedule = secrets.throttle_schedule();
        match cmd {
            Cmd::Probe => Outcome::Probed,
            Cmd::GhostFail { user, seq } => self.ghost_fail(&user, seq, limit),
            Cmd::Register { user, record } => {
                self.data.ghost_counters.remove(&user);
                let e = self.data.users.entry(user).or_default();
                match &e.live {
                    Some(live) if live.id == record.id => Outcome::Registered,
                    Some(_) => Outcome::AlreadyRegistered,
                    None if e.ids.contains(&record.id) => Outcome::IdReused,
                    None => {
                        e.ids.push(record.id);
                        e.burnt = false;
                        e.live = Some(Record {
                            id: record.id,
                            upload: record.upload,
                            wrapped: record.wrapped,
                            ..Record::default()
                        });
                        e.consumed = None;
                        Outcome::Registered
                    }
                }
            }
            Cmd::BeginAttempt { user, request, at } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return self.ghost_attempt(user, request, at, limit);
                };
                if seen_before(&mut e.requests, request) {
                    return Outcome::Replayed;
                }
                let Some(live) = e.live.as_mut() else {
                    if e.burnt {
                        return Outcome::Destroyed;
                    }
                    // Deleted: the name answers as an unknown account does.
                    return self.ghost_attempt(user, request, at, limit);
                };
                if live.used >= limit {
                    // The last allowed attempt was spent and never succeeded.
                    e.live = None;
                    e.burnt = true;
                    return Outcome::DestroyedNow;
                }
                if let Some(retry_at) = live.counter().with(|c| c.throttled(at, schedule)) {
                    return Outcome::Throttled {
                        retry_at,
                        remaining: limit - live.used,
                    };
                }
                e.seq += 1;
                let seq = e.seq;
                live.counter().with(|c| c.count(seq, at, limit));
                e.total_attempts += 1;
                Outcome::Attempt {
                    id: live.id,
                    seq,
                    used: live.used,
                    upload: live.upload.clone(),
                }
            }
            Cmd::Fail { user, id, seq } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return Outcome::Stale;
                };
                match e.live.as_mut() {
                    Some(live) if live.id == id => {
                        let first = seq
                            .and_then(|s| live.counter().with(|c| c.report(s)))
                            .is_some();
                        if live.used >= limit {
                            e.live = None;
                            e.burnt = true;
                            Outcome::Failed {
                                remaining: 0,
                                destroyed: true,
                                first,
                            }
                        } else {
                            Outcome::Failed {
                                remaining: limit - live.used,
                                destroyed: false,
                                first,
                            }
                        }
                    }
                    Some(_) => Outcome::Stale,
                    None => Outcome::Failed {
                        remaining: 0,
                        destroyed: true,
                        first: false,
                    },
                }
            }
            Cmd::Settle { user, id, seq } => {
                let report = match id {
                    None => {
                        let Some(g) = self.data.ghost_counters.get_mut(&user) else {
                            return Outcome::Settled { report: None };
                        };
                        g.counter.report(seq).map(|at| {
                            if g.counter.used >= limit {
                                g.destroyed = true;
                            }
                            SettledReport {
                                at,
                                remaining: limit.saturating_sub(g.counter.used),
                                destroyed: g.destroyed,
                            }
                        })
                    }
                    Some(id) => {
                        let Some(e) = self.data.users.get_mut(&user) else {
                            return Outcome::Settled { report: None };
                        };
                        match e.live.as_mut() {
                            Some(live) if live.id == id => {
                                let at = live.counter().with(|c| c.report(seq));
                                let remaining = limit.saturating_sub(live.used);
                                let destroyed = at.is_some() && remaining == 0;
                                if destroyed {
                                    e.live = None;
                                    e.burnt = true;
                                }
                                at.map(|at| SettledReport {
                                    at,
                                    remaining,
                                    destroyed,
                                })
                            }
                            _ => None,
                        }
                    }
                };
                Outcome::Settled { report }
            }
            Cmd::Succeed { user, id, seq } => {
                let Some(e) = self.data.users.get_mut(&user) else {
                    return Outcome::Stale;
                };
                match e.live.as_mut() {
                    Some(live) if live.id == id && e.seq == seq && e.consumed != Some(seq) => {
                        let (wrong, wrong_times) = live.counter().with(|c| c.succeed(seq));
                        e.consumed = Some(seq);
                        Outcome::Succeeded {
                            wrapped: live.wrapped.clone(),
                            wrong,
                            wrong_times,
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
                if let Err(refused) = e.authorised_change(id, seq) {
                    refused
                } else if e.ids.contains(&record.id) {
                    Outcome::IdReused
                } else {
                    e.ids.push(record.id);
                    e.live = Some(Record {
                        id: record.id,
                        upload: record.upload,
                        wrapped: record.wrapped,
                        ..Record::default()
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
                if let Err(refused) = e.authorised_change(id, seq) {
                    refused
                } else {
                    e.live = None;
                    e.burnt = false;
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
        self.data.migrate();
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
            at: None,
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
            at: None,
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
                request: None,
                at: None,
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
        // The attempt after the last allowed one destroys the record (and
        // says so once, for the owner's notice); every later one finds none.
        assert_eq!(run(&mut s, begin(u())), Outcome::DestroyedNow);
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
        // A deleted name answers as an unknown account (no enumeration).
        assert!(matches!(
            run(&mut s, begin(u())),
            Outcome::Ghost { used: 1, .. }
        ));
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

    /// A `BeginAttempt` at `at` (a fresh request id).
    fn begin_at(user: &str, at: u64) -> Cmd {
        let Cmd::BeginAttempt { request, .. } = begin(user.into()) else {
            unreachable!()
        };
        Cmd::BeginAttempt {
            user: user.into(),
            request,
            at: Some(at),
        }
    }

    fn fail(user: &str, seq: u64) -> Cmd {
        Cmd::Fail {
            user: user.into(),
            id: [1; 16],
            seq: Some(seq),
        }
    }

    #[test]
    fn the_throttle_follows_the_schedule_and_a_refused_attempt_counts_nothing() {
        assert_eq!(
            (0..=10).map(throttle_delay).collect::<Vec<_>>(),
            vec![0, 0, 0, 60, 60, 900, 900, 3600, 3600, 86_400, 86_400]
        );
        let mut s = with_user_u();
        let mut t = 1_000_000u64;
        for wrong in 0..9u32 {
            // The attempt after `wrong` wrong guesses waits throttle_delay(wrong).
            let d = throttle_delay(wrong);
            if d > 0 {
                let early = run(&mut s, begin_at("u", t + d - 1));
                assert_eq!(
                    early,
                    Outcome::Throttled {
                        retry_at: t + d,
                        remaining: 10 - wrong
                    },
                    "after {wrong} wrong"
                );
                assert_eq!(s.total_attempts("u"), u64::from(wrong), "nothing counted");
            }
            t += d;
            let seq = match run(&mut s, begin_at("u", t)) {
                Outcome::Attempt { seq: s2, used, .. } => {
                    assert_eq!(used, wrong + 1);
                    s2
                }
                o => panic!("after {wrong} wrong: {o:?}"),
            };
            assert!(matches!(
                run(&mut s, fail("u", seq)),
                Outcome::Failed { first: true, .. }
            ));
            // Reported once only.
            assert!(matches!(
                run(&mut s, fail("u", seq)),
                Outcome::Failed { first: false, .. }
            ));
        }
        // 9 wrong: the last attempt a day after the ninth.
        assert!(matches!(
            run(&mut s, begin_at("u", t + 86_399)),
            Outcome::Throttled { remaining: 1, .. }
        ));
        // A clock set back (another node's) waits too; never earlier.
        assert!(matches!(
            run(&mut s, begin_at("u", t - 5000)),
            Outcome::Throttled { .. }
        ));
        let Outcome::Attempt { seq, .. } = run(&mut s, begin_at("u", t + 86_400)) else {
            panic!()
        };
        // Its success resets the counter and reports the nine wrong ones.
        match run(
            &mut s,
            Cmd::Succeed {
                user: "u".into(),
                id: [1; 16],
                seq,
            },
        ) {
            Outcome::Succeeded {
                wrong, wrong_times, ..
            } => {
                assert_eq!(wrong, 9);
                assert_eq!(wrong_times.len(), 9);
                assert_eq!(wrong_times[0], 1_000_000);
                assert!(wrong_times.windows(2).all(|w| w[0] <= w[1]));
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            run(&mut s, begin_at("u", t + 86_401)),
            Outcome::Attempt { used: 1, .. }
        ));
        // Commands logged before the throttle carry no time: not throttled.
        let mut s = with_user_u();
        for _ in 0..5 {
            assert!(matches!(run(&mut s, begin(u())), Outcome::Attempt { .. }));
        }
    }

    fn u() -> String {
        "u".into()
    }

    #[test]
    fn an_abandoned_attempt_is_reported_once_when_settled_and_never_after_a_success() {
        let mut s = with_user_u();
        let Outcome::Attempt { seq: a, .. } = run(&mut s, begin_at("u", 10)) else {
            panic!()
        };
        let settle = |seq| Cmd::Settle {
            user: "u".into(),
            id: Some([1; 16]),
            seq,
        };
        assert_eq!(
            run(&mut s, settle(a)),
            Outcome::Settled {
                report: Some(SettledReport {
                    at: 10,
                    remaining: 9,
                    destroyed: false
                })
            }
        );
        assert_eq!(run(&mut s, settle(a)), Outcome::Settled { report: None });
        // An attempt that failed and was reported: no second report.
        let Outcome::Attempt { seq: b, .. } = run(&mut s, begin_at("u", 11)) else {
            panic!()
        };
        run(&mut s, fail("u", b));
        assert_eq!(run(&mut s, settle(b)), Outcome::Settled { report: None });
        // A success: nothing to report.
        let Outcome::Attempt { seq: c, .. } = run(&mut s, begin_at("u", 12)) else {
            panic!()
        };
        run(
            &mut s,
            Cmd::Succeed {
                user: u(),
                id: [1; 16],
                seq: c,
            },
        );
        assert_eq!(run(&mut s, settle(c)), Outcome::Settled { report: None });
        // The last allowed attempt abandoned: reported as destroying the record.
        let mut s = state(1);
        run(
            &mut s,
            Cmd::Register {
                user: u(),
                record: rec(1),
            },
        );
        let Outcome::Attempt { seq, .. } = run(&mut s, begin_at("u", 20)) else {
            panic!()
        };
        assert_eq!(
            run(&mut s, settle(seq)),
            Outcome::Settled {
                report: Some(SettledReport {
                    at: 20,
                    remaining: 0,
                    destroyed: true
                })
            }
        );
        assert!(!s.has_live_record("u"));
    }

    #[test]
    fn an_unknown_account_counts_throttles_and_ends_like_a_record() {
        let mut real = with_user_u();
        let mut ghost = state(10);
        let mut t = 5_000u64;
        let mut trace = |s: &mut HsmState, user: &str| {
            let mut out = Vec::new();
            let mut t2 = t;
            for _ in 0..30 {
                let o = run(s, begin_at(user, t2));
                let seq = match &o {
                    Outcome::Attempt { seq, .. } | Outcome::Ghost { seq, .. } => Some(*seq),
                    _ => None,
                };
                out.push(match o {
                    Outcome::Attempt { used, .. } | Outcome::Ghost { used, .. } => {
                        format!("used {used}")
                    }
                    Outcome::Throttled { retry_at, .. } => {
                        t2 = retry_at;
                        continue;
                    }
                    o => format!("{o:?}"),
                });
                if let Some(seq) = seq {
                    let f = if user == "u" {
                        fail(user, seq)
                    } else {
                        Cmd::GhostFail {
                            user: user.into(),
                            seq: Some(seq),
                        }
                    };
                    out.push(format!("{:?}", run(s, f)));
                }
            }
            t = t2;
            out
        };
        let a = trace(&mut real, "u");
        let b = trace(&mut ghost, "nobody");
        assert_eq!(a, b);
        assert!(a.last().unwrap().contains("Destroyed"), "{a:?}");
    }

    #[test]
    fn ghosts_are_evicted_oldest_first_and_old_states_are_read() {
        let mut s = state(10);
        for i in 0..3 {
            run(&mut s, begin_at(&format!("g{i}"), 1));
        }
        assert_eq!(s.data.ghost_order, ["g0", "g1", "g2"]);
        // Registering a name drops its ghost.
        run(
            &mut s,
            Cmd::Register {
                user: "g1".into(),
                record: rec(1),
            },
        );
        assert!(!s.data.ghost_counters.contains_key("g1"));
        // A state written before the throttle (ghosts as plain counts).
        let mut old = Data::default();
        old.ghosts.insert("x".into(), 4);
        let json = serde_json::to_vec(&old).unwrap();
        let snap = s.secrets.sealer().seal(SNAP_LABEL, &json);
        let mut t = HsmState::new(s.secrets.clone());
        t.restore(&snap).unwrap();
        assert_eq!(t.data.ghost_counters["x"].counter.used, 4);
        assert!(t.data.ghosts.is_empty());
        assert!(matches!(
            run(&mut t, begin_at("x", 100)),
            Outcome::Ghost { used: 5, .. }
        ));
    }
}
