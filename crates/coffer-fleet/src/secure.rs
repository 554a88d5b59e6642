//! Authenticated, replay-protected envelopes between fleet nodes.
//!
//! Every message between two nodes travels in an [`Envelope`] MAC'd with
//! HMAC-SHA256 under the key that exactly those two nodes share (from the
//! fleet setup). The MAC covers the fleet id, the kind, the sender, the
//! receiver, the session and the sequence number, so the relaying host cannot
//! forge, tamper with or redirect a message. Sessions are agreed by a
//! challenge/response handshake with a fresh random nonce from each side, so
//! a message of an earlier session (also one from before a restart) is never
//! accepted again; inside a session the sender's sequence numbers strictly
//! increase and the receiver accepts each number at most once (a 128-wide
//! sliding window, as in IPsec/DTLS, tolerates the reordering of concurrent
//! RPCs). Responses are MAC'd too and bound to the request's session and
//! sequence number, so a stale response cannot be replayed either.
//!
//! Wire format (all integers big-endian):
//! `"CFL1" | kind u8 | from u64 | to u64 | session [32] | seq u64 | len u32 | body | mac [32]`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{NodeConfig, NodeId, SecretKey};
use crate::transport::{Transport, TransportError};

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"CFL1";
const HEADER: usize = 4 + 1 + 8 + 8 + 32 + 8 + 4;
/// Largest snapshot chunk one install-snapshot message carries (openraft's
/// `snapshot_max_chunk_size`): a larger snapshot travels in several.
pub const SNAPSHOT_CHUNK: usize = 256 * 1024;
/// Largest body an envelope may carry: a snapshot chunk with its message
/// (vote, snapshot metadata, membership), or an append of up to 64 log
/// entries (sealed HSM commands, at most about 1 KiB each); measured in
/// `coffer-vault/tests/fleet_envelopes.rs`.
pub const MAX_BODY: usize = SNAPSHOT_CHUNK + 64 * 1024;
/// Largest envelope on the wire (header, body, MAC).
pub const MAX_ENVELOPE: usize = HEADER + MAX_BODY + 32;
/// Sessions a receiver remembers per peer.
const SESSIONS_PER_PEER: usize = 4;
const WINDOW: u64 = 128;

/// What an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Handshake request: `session[..16]` is the initiator's nonce.
    Hello = 1,
    /// Handshake answer: `session` = initiator nonce ‖ responder nonce.
    HelloAck = 2,
    Request = 3,
    Response = 4,
    /// Unauthenticated refusal (the host could forge it, but it can only make
    /// the sender re-handshake, which the host could force by dropping anyway).
    Reject = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::HelloAck,
            3 => Kind::Request,
            4 => Kind::Response,
            5 => Kind::Reject,
            _ => return None,
        })
    }
}

/// A decoded envelope (not yet authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub from: NodeId,
    pub to: NodeId,
    pub session: [u8; 32],
    pub seq: u64,
    pub body: Vec<u8>,
    pub mac: [u8; 32],
}

impl Envelope {
    fn header_bytes(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER + self.body.len());
        h.extend_from_slice(MAGIC);
        h.push(self.kind as u8);
        h.extend_from_slice(&self.from.to_be_bytes());
        h.extend_from_slice(&self.to.to_be_bytes());
        h.extend_from_slice(&self.session);
        h.extend_from_slice(&self.seq.to_be_bytes());
        h.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        h
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header_bytes();
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.mac);
        out
    }

    /// Parses bytes; never panics on any input.
    pub fn decode(b: &[u8]) -> Result<Self, EnvelopeError> {
        if b.len() < HEADER + 32 || &b[..4] != MAGIC {
            return Err(EnvelopeError::Malformed);
        }
        let kind = Kind::from_u8(b[4]).ok_or(EnvelopeError::Malformed)?;
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(x)
        };
        let from = u64_at(5);
        let to = u64_at(13);
        let mut session = [0u8; 32];
        session.copy_from_slice(&b[21..53]);
        let seq = u64_at(53);
        let mut l = [0u8; 4];
        l.copy_from_slice(&b[61..65]);
        let len = u32::from_be_bytes(l) as usize;
        if len > MAX_BODY || b.len() != HEADER + len + 32 {
            return Err(EnvelopeError::Malformed);
        }
        let body = b[HEADER..HEADER + len].to_vec();
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&b[HEADER + len..]);
        Ok(Self {
            kind,
            from,
            to,
            session,
            seq,
            body,
            mac,
        })
    }

    fn compute_mac(&self, fleet_id: &str, key: &SecretKey<32>) -> [u8; 32] {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
        m.update(b"coffer-fleet/envelope/v1");
        m.update(&(fleet_id.len() as u16).to_be_bytes());
        m.update(fleet_id.as_bytes());
        m.update(&self.header_bytes());
        m.update(&self.body);
        m.finalize().into_bytes().into()
    }

    fn verify_mac(&self, fleet_id: &str, key: &SecretKey<32>) -> bool {
        let want = self.compute_mac(fleet_id, key);
        bool::from(want.ct_eq(&self.mac))
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed envelope")]
    Malformed,
    #[error("envelope from an unknown sender or with a bad MAC")]
    Forged,
    #[error("envelope addressed to another node")]
    Misdirected,
    #[error("envelope of an unknown or expired session")]
    UnknownSession,
    #[error("replayed envelope")]
    Replayed,
    #[error("unexpected envelope kind")]
    UnexpectedKind,
}

/// Counters of refused envelopes on the receiving side.
#[derive(Debug, Default)]
pub struct SecurityStats {
    pub malformed: AtomicU64,
    pub forged: AtomicU64,
    pub misdirected: AtomicU64,
    pub unknown_session: AtomicU64,
    pub replayed: AtomicU64,
    pub accepted: AtomicU64,
}

/// A plain copy of [`SecurityStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityCounts {
    pub malformed: u64,
    pub forged: u64,
    pub misdirected: u64,
    pub unknown_session: u64,
    pub replayed: u64,
    pub accepted: u64,
}

impl SecurityCounts {
    /// All refused envelopes.
    pub fn rejected(&self) -> u64 {
        self.malformed + self.forged + self.misdirected + self.unknown_session + self.replayed
    }
}

impl SecurityStats {
    pub fn counts(&self) -> SecurityCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SecurityCounts {
            malformed: g(&self.malformed),
            forged: g(&self.forged),
            misdirected: g(&self.misdirected),
            unknown_session: g(&self.unknown_session),
            replayed: g(&self.replayed),
            accepted: g(&self.accepted),
        }
    }
    fn count(&self, me: NodeId, claimed_from: NodeId, e: &EnvelopeError) {
        // Only ids and the reason are logged: never keys, MACs or bodies. An
        // unknown session is routine after a restart; the rest is hostile or
        // broken and worth an operator's attention.
        if *e == EnvelopeError::UnknownSession {
            tracing::debug!(node = me, claimed_from, reason = %e, "refused an envelope");
        } else {
            tracing::warn!(node = me, claimed_from, reason = %e, "refused an envelope");
        }
        let c = match e {
            EnvelopeError::Malformed | EnvelopeError::UnexpectedKind => &self.malformed,
            EnvelopeError::Forged => &self.forged,
            EnvelopeError::Misdirected => &self.misdirected,
            EnvelopeError::UnknownSession => &self.unknown_session,
            EnvelopeError::Replayed => &self.replayed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Anti-replay window: accepts each sequence number at most once.
#[derive(Debug, Default, Clone)]
struct ReplayWindow {
    highest: u64,
    bits: u128,
}

impl ReplayWindow {
    fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.bits = if shift >= WINDOW {
                0
            } else {
                self.bits << shift
            };
            self.bits |= 1;
            self.highest = seq;
            return true;
        }
        let age = self.highest - seq;
        if age >= WINDOW {
            return false;
        }
        let bit = 1u128 << age;
        if self.bits & bit != 0 {
            return false;
        }
        self.bits |= bit;
        true
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

/// The sessions a receiver keeps for one peer, newest last.
type Sessions = VecDeque<([u8; 32], ReplayWindow)>;

/// A request that passed every check, ready to dispatch.
#[derive(Debug)]
pub struct Accepted {
    pub from: NodeId,
    pub session: [u8; 32],
    pub seq: u64,
    pub body: Vec<u8>,
}

/// An outbound session with one peer.
#[derive(Clone, Copy)]
struct OutSession {
    id: [u8; 32],
    next_seq: u64,
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The message certainly did not reach the peer's logic.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The message may have been delivered, but no valid answer came back.
    #[error("no valid answer: {0}")]
    Lost(String),
}

/// One node's end of all its authenticated links.
pub struct SecureChannel {
    fleet_id: String,
    me: NodeId,
    keys: HashMap<NodeId, SecretKey<32>>,
    transport: Arc<dyn Transport>,
    out: Mutex<HashMap<NodeId, OutSession>>,
    handshake_locks: HashMap<NodeId, tokio::sync::Mutex<()>>,
    inbound: Mutex<HashMap<NodeId, Sessions>>,
    stats: SecurityStats,
}

impl SecureChannel {
    pub fn new(config: &NodeConfig, transport: Arc<dyn Transport>) -> Self {
        let keys: HashMap<_, _> = config
            .peers
            .iter()
            .map(|p| (p.node_id, p.link_key.clone()))
            .collect();
        let handshake_locks = keys
            .keys()
            .map(|&k| (k, tokio::sync::Mutex::new(())))
            .collect();
        Self {
            fleet_id: config.fleet_id.clone(),
            me: config.node_id,
            keys,
            transport,
            out: Mutex::new(HashMap::new()),
            handshake_locks,
            inbound: Mutex::new(HashMap::new()),
            stats: SecurityStats::default(),
        }
    }

    pub fn stats(&self) -> SecurityCounts {
        self.stats.counts()
    }

    fn seal(
        &self,
        kind: Kind,
        to: NodeId,
        session: [u8; 32],
        seq: u64,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let key = self.keys.get(&to)?;
        let mut e = Envelope {
            kind,
            from: self.me,
            to,
            session,
            seq,
            body,
            mac: [0; 32],
        };
        e.mac = e.compute_mac(&self.fleet_id, key);
        Some(e.encode())
    }

    fn reject(&self, to: NodeId, reason: &EnvelopeError) -> Vec<u8> {
        Envelope {
            kind: Kind::Reject,
            from: self.me,
            to,
            session: [0; 32],
            seq: 0,
            body: reason.to_string().into_bytes(),
            mac: [0; 32],
        }
        .encode()
    }

    /// Opens an envelope addressed to this node from a known peer.
    fn open(&self, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let e = Envelope::decode(bytes)?;
        let key = self.keys.get(&e.from).ok_or(EnvelopeError::Forged)?;
        if !e.verify_mac(&self.fleet_id, key) {
            return Err(EnvelopeError::Forged);
        }
        if e.to != self.me {
            return Err(EnvelopeError::Misdirected);
        }
        Ok(e)
    }

    /// Receiving side: checks an incoming envelope. A handshake is answered
    /// at once (`Err(reply)`); a valid request is returned as
    /// `Ok(Accepted)` for the caller to dispatch and answer
    /// with [`SecureChannel::respond`].
    pub fn accept(&self, bytes: &[u8]) -> Result<Accepted, Vec<u8>> {
        let e = match self.open(bytes) {
            Ok(e) => e,
            Err(err) => {
                let from = Envelope::decode(bytes).map(|e| e.from).unwrap_or(0);
                self.stats.count(self.me, from, &err);
                return Err(self.reject(from, &err));
            }
        };
        match e.kind {
            Kind::Hello => {
                let mut session = [0u8; 32];
                session[..16].copy_from_slice(&e.session[..16]);
                session[16..].copy_from_slice(&random::<16>());
                {
                    let mut inb = self.inbound.lock().expect("inbound lock");
                    let q = inb.entry(e.from).or_default();
                    q.push_back((session, ReplayWindow::default()));
                    while q.len() > SESSIONS_PER_PEER {
                        q.pop_front();
                    }
                }
                Err(self
                    .seal(Kind::HelloAck, e.from, session, 0, Vec::new())
                    .unwrap_or_default())
            }
            Kind::Request => {
                let verdict = {
                    let mut inb = self.inbound.lock().expect("inbound lock");
                    match inb
                        .get_mut(&e.from)
                        .and_then(|q| q.iter_mut().find(|(s, _)| *s == e.session))
                    {
                        None => Err(EnvelopeError::UnknownSession),
                        Some((_, w)) => {
                            if w.accept(e.seq) {
                                Ok(())
                            } else {
                                Err(EnvelopeError::Replayed)
                            }
                        }
                    }
                };
                match verdict {
                    Ok(()) => {
                        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                        Ok(Accepted {
                            from: e.from,
                            session: e.session,
                            seq: e.seq,
                            body: e.body,
                        })
                    }
                    Err(err) => {
                        self.stats.count(self.me, e.from, &err);
                        Err(self.reject(e.from, &err))
                    }
                }
            }
            _ => {
                self.stats
                    .count(self.me, e.from, &EnvelopeError::UnexpectedKind);
                Err(self.reject(e.from, &EnvelopeError::UnexpectedKind))
            }
        }
    }

    /// Seals the answer to a request accepted by [`SecureChannel::accept`].
    pub fn respond(&self, to: NodeId, session: [u8; 32], seq: u64, body: Vec<u8>) -> Vec<u8> {
        self.seal(Kind::Response, to, session, seq, body)
            .unwrap_or_default()
    }

    /// Handles a whole incoming envelope with `dispatch` for the body.
    pub async fn handle<F, Fut>(&self, bytes: &[u8], dispatch: F) -> Vec<u8>
    where
        F: FnOnce(NodeId, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Vec<u8>>,
    {
        match self.accept(bytes) {
            Err(reply) => reply,
            Ok(Accepted {
                from,
                session,
                seq,
                body,
            }) => {
                let out = dispatch(from, body).await;
                self.respond(from, session, seq, out)
            }
        }
    }

    /// Seals `body` for `to` and sends it: the answer's bytes, or why none.
    async fn send(
        &self,
        kind: Kind,
        to: NodeId,
        session: [u8; 32],
        seq: u64,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let msg = self
            .seal(kind, to, session, seq, body)
            .ok_or_else(|| CallError::Unreachable("no key".into()))?;
        self.transport
            .call(self.me, to, msg)
            .await
            .map_err(|e| match e {
                TransportError::Unreachable(m) => CallError::Unreachable(m),
                TransportError::Lost(m) => CallError::Lost(m),
            })
    }

    async fn handshake(&self, to: NodeId) -> Result<OutSession, CallError> {
        let lock = self
            .handshake_locks
            .get(&to)
            .ok_or_else(|| CallError::Unreachable(format!("unknown node {to}")))?;
        let _g = lock.lock().await;
        if let Some(s) = self.out.lock().expect("out lock").get(&to) {
            return Ok(*s);
        }
        let mut hello = [0u8; 32];
        hello[..16].copy_from_slice(&random::<16>());
        // A hello changes nothing at the peer: one that may have arrived
        // is as good as one that never did.
        let reply = self
            .send(Kind::Hello, to, hello, 0, Vec::new())
            .await
            .map_err(|e| match e {
                CallError::Lost(m) => CallError::Unreachable(m),
                e => e,
            })?;
        let e = self
            .open(&reply)
            .map_err(|e| CallError::Unreachable(format!("handshake: {e}")))?;
        if e.kind != Kind::HelloAck || e.from != to || e.session[..16] != hello[..16] {
            return Err(CallError::Unreachable(
                "handshake answer does not match".into(),
            ));
        }
        let s = OutSession {
            id: e.session,
            next_seq: 1,
        };
        self.out.lock().expect("out lock").insert(to, s);
        Ok(s)
    }

    /// Sends `body` to `to` and returns the authenticated answer's body.
    pub async fn call(&self, to: NodeId, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        for _attempt in 0..2 {
            let (session, seq) = {
                let existing = self.out.lock().expect("out lock").get(&to).copied();
                if existing.is_none() {
                    self.handshake(to).await?;
                }
                let mut out = self.out.lock().expect("out lock");
                match out.get_mut(&to) {
                    Some(cur) => {
                        let seq = cur.next_seq;
                        cur.next_seq += 1;
                        (cur.id, seq)
                    }
                    None => continue,
                }
            };
            let reply = self
                .send(Kind::Request, to, session, seq, body.clone())
                .await?;
            let env =
                Envelope::decode(&reply).map_err(|_| CallError::Lost("malformed answer".into()))?;
            if env.kind == Kind::Reject {
                // The request was refused before it reached the node's logic
                // (typically: the peer restarted and forgot our session).
                let mut out = self.out.lock().expect("out lock");
                if out.get(&to).map(|s| s.id) == Some(session) {
                    out.remove(&to);
                }
                continue;
            }
            let e = self
                .open(&reply)
                .map_err(|e| CallError::Lost(format!("answer refused: {e}")))?;
            if e.kind != Kind::Response || e.from != to || e.session != session || e.seq != seq {
                return Err(CallError::Lost("answer does not match the request".into()));
            }
            return Ok(e.body);
        }
        Err(CallError::Unreachable(
            "peer keeps refusing our session".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FleetSetup, RaftTuning};
    use crate::transport::LocalNetwork;

    fn pair() -> (SecureChannel, SecureChannel, Vec<NodeConfig>) {
        let cs = FleetSetup::create(3, "fleet-sec", RaftTuning::local()).unwrap();
        let net: Arc<dyn Transport> = LocalNetwork::new();
        (
            SecureChannel::new(&cs[0], net.clone()),
            SecureChannel::new(&cs[1], net),
            cs,
        )
    }

    /// Runs a handshake from `a` to `b` by hand and returns a valid request.
    fn session(a: &SecureChannel, b: &SecureChannel) -> [u8; 32] {
        let mut hello = [0u8; 32];
        hello[..16].copy_from_slice(&random::<16>());
        let msg = a.seal(Kind::Hello, b.me, hello, 0, vec![]).unwrap();
        let ack = b.accept(&msg).unwrap_err();
        let e = a.open(&ack).unwrap();
        assert_eq!(e.kind, Kind::HelloAck);
        e.session
    }

    #[test]
    fn valid_request_is_accepted_once() {
        let (a, b, _) = pair();
        let s = session(&a, &b);
        let req = a.seal(Kind::Request, 2, s, 1, b"vote".to_vec()).unwrap();
        let Accepted {
            from, seq, body, ..
        } = b.accept(&req).ok().unwrap();
        assert_eq!((from, seq, body.as_slice()), (1, 1, &b"vote"[..]));
        // Replay of the very same bytes.
        assert!(b.accept(&req).is_err());
        assert_eq!(b.stats().replayed, 1);
        // Out of order but fresh numbers are fine; each only once.
        let r3 = a.seal(Kind::Request, 2, s, 3, vec![]).unwrap();
        let r2 = a.seal(Kind::Request, 2, s, 2, vec![]).unwrap();
        assert!(b.accept(&r3).is_ok());
        assert!(b.accept(&r2).is_ok());
        assert!(b.accept(&r2).is_err());
        assert_eq!(b.stats().replayed, 2);
        assert_eq!(b.stats().accepted, 3);
    }

    #[test]
    fn forged_and_tampered_envelopes_are_rejected() {
        let (a, b, cs) = pair();
        let s = session(&a, &b);
        // A MAC made with a wrong key (the host does not know the link key).
        let mut e = Envelope {
            kind: Kind::Request,
            from: 1,
            to: 2,
            session: s,
            seq: 5,
            body: b"x".to_vec(),
            mac: [0; 32],
        };
        e.mac = e.compute_mac("fleet-sec", &SecretKey::from_bytes([7; 32]));
        assert!(b.accept(&e.encode()).is_err());
        // A flipped body bit of a genuine envelope.
        let mut good = a.seal(Kind::Request, 2, s, 6, b"append".to_vec()).unwrap();
        let n = good.len();
        good[n - 33] ^= 1; // last body byte
        assert!(b.accept(&good).is_err());
        // Claiming to be node 3 with node 1's link key.
        let mut e3 = Envelope {
            kind: Kind::Request,
            from: 3,
            to: 2,
            session: s,
            seq: 7,
            body: vec![],
            mac: [0; 32],
        };
        e3.mac = e3.compute_mac("fleet-sec", &cs[0].peer(2).unwrap().link_key);
        assert!(b.accept(&e3.encode()).is_err());
        // An unknown sender id.
        let mut e9 = e3.clone();
        e9.from = 9;
        assert!(b.accept(&e9.encode()).is_err());
        assert_eq!(b.stats().forged, 4);
        assert_eq!(b.stats().accepted, 0);
        // A genuine envelope raised in seq by the host: MAC no longer matches.
        let mut g = Envelope::decode(&a.seal(Kind::Request, 2, s, 8, vec![]).unwrap()).unwrap();
        g.seq = 9;
        assert!(b.accept(&g.encode()).is_err());
        assert_eq!(b.stats().forged, 5);
    }

    #[test]
    fn redirected_envelope_is_rejected() {
        let cs = FleetSetup::create(3, "fleet-sec", RaftTuning::local()).unwrap();
        let net: Arc<dyn Transport> = LocalNetwork::new();
        let a = SecureChannel::new(&cs[0], net.clone());
        let c = SecureChannel::new(&cs[2], net);
        // Envelope from 1 to 2 delivered to 3: 3 verifies with key(1,3) → forged.
        let msg = a.seal(Kind::Request, 2, [1; 32], 1, vec![]).unwrap();
        assert!(c.accept(&msg).is_err());
        assert_eq!(c.stats().forged, 1);
        // An envelope that is genuinely for node 3 but re-addressed to 3 from 2 by the host is forged too;
        // and a correctly MAC'd envelope whose `to` is another node is misdirected.
        let mut e = Envelope {
            kind: Kind::Request,
            from: 1,
            to: 2,
            session: [0; 32],
            seq: 1,
            body: vec![],
            mac: [0; 32],
        };
        e.mac = e.compute_mac("fleet-sec", &cs[0].peer(3).unwrap().link_key);
        assert!(c.accept(&e.encode()).is_err());
        assert_eq!(c.stats().misdirected, 1);
    }

    #[test]
    fn old_sessions_die_with_a_restart_and_a_fresh_handshake_works() {
        let (a, b, cs) = pair();
        let s = session(&a, &b);
        let req = a.seal(Kind::Request, 2, s, 1, vec![]).unwrap();
        // Node 2 "restarts": a fresh channel from the same config.
        let b2 = SecureChannel::new(&cs[1], LocalNetwork::new());
        assert!(b2.accept(&req).is_err());
        assert_eq!(b2.stats().unknown_session, 1);
        // Replaying the old Hello creates a new session whose nonce the host
        // cannot use: the old request still fails.
        let s2 = session(&a, &b2);
        assert_ne!(s, s2);
        assert!(b2.accept(&req).is_err());
        assert!(b2
            .accept(&a.seal(Kind::Request, 2, s2, 1, vec![]).unwrap())
            .is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let (_, b, _) = pair();
        for len in [0usize, 3, 4, 64, 65, 96, 97, 200] {
            let mut v = vec![0xA5u8; len];
            if len >= 4 {
                v[..4].copy_from_slice(MAGIC);
            }
            assert!(b.accept(&v).is_err());
        }
        // A huge declared length with a short buffer.
        let mut e = Envelope {
            kind: Kind::Request,
            from: 1,
            to: 2,
            session: [0; 32],
            seq: 1,
            body: vec![],
            mac: [0; 32],
        }
        .encode();
        e[61..65].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Envelope::decode(&e), Err(EnvelopeError::Malformed));
        assert_eq!(b.stats().malformed, 8);
    }

    #[test]
    fn every_single_byte_mutation_of_a_valid_request_is_refused() {
        let (a, b, _) = pair();
        let s = session(&a, &b);
        let good = a
            .seal(Kind::Request, 2, s, 1, b"{\"Vote\":1}".to_vec())
            .unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for pos in 0..good.len() {
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut m = good.clone();
                let flip = (x as u8) | 1;
                m[pos] ^= flip;
                assert!(b.accept(&m).is_err(), "mutation at byte {pos} accepted");
            }
        }
        // Truncations and extensions too.
        for cut in 0..good.len() {
            assert!(b.accept(&good[..cut]).is_err());
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(b.accept(&longer).is_err());
        assert_eq!(b.stats().accepted, 0);
        // The untouched envelope still goes through once.
        assert!(b.accept(&good).is_ok());
    }

    #[test]
    fn replay_window_edges() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(w.accept(500));
        assert!(!w.accept(1)); // too old
        assert!(w.accept(400));
        assert!(!w.accept(400));
        assert!(!w.accept(500));
        assert!(!w.accept(372)); // exactly WINDOW behind
    }
}
