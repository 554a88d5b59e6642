//! The authenticated channel from the client to the HSM (vault protocol v2).
//!
//! One Noise handshake per vault request, `Noise_NK_25519_ChaChaPoly_BLAKE2s`
//! (the Noise Protocol Framework, revision 34, pattern NK), with the
//! prologue `"coffer-vault-channel-v2" || 0x00 || u32be(len(fleet_id)) ||
//! fleet_id`:
//!
//! ```text
//!   <- s                      (the fleet's channel key, validated by the client)
//!   ...
//!   -> e, es   + request      message 1, client → HSM
//!   <- e, ee   + response     message 2, HSM → client
//! ```
//!
//! Only the holder of the channel static key (inside the HSMs) can read a
//! request or make a message 2 the client accepts, and message 2 is bound to
//! its message 1 (its AEAD's associated data is the handshake hash, which
//! covers message 1 whole). The host relays opaque bytes.
//!
//! Payloads are padded to [`PAD_CLASSES`] (`u32be(len) || json || zeros`),
//! so every message of the current protocol is [`MESSAGE_LEN`] bytes on the
//! wire, whatever it says. A request carries the client's clock
//! ([`ChannelRequest::time`]); the HSM refuses one outside
//! [`REQUEST_WINDOW_SECS`] of its own, and remembers the [`request id`]
//! (the handshake hash after message 1) of every counted login attempt, so a
//! replayed message 1 costs nothing.
//!
//! [`request id`]: Accepted::request_id

use serde::{Deserialize, Serialize};
use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::{Builder, HandshakeState};
use zeroize::{Zeroize, Zeroizing};

use crate::account::TicketProof;
use crate::wire::short;
use crate::{
    decode_response, encode_response, ProtoError, Request, Response, MAX_MESSAGE_LEN,
    PROTOCOL_VERSION,
};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
/// Length of a channel (X25519) key and of a request id.
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const PROLOGUE_DOMAIN: &[u8] = b"coffer-vault-channel-v2\0";
/// The padded plaintext sizes, smallest first. Every request and answer of
/// the current protocol fits the first (checked by a test with the longest
/// user id), so they are all [`MESSAGE_LEN`] bytes on the wire; the second
/// is room for later, larger messages.
pub const PAD_CLASSES: [usize; 2] = [4096, 8192];
/// A channel message of the first size class: ephemeral key, padded
/// payload, AEAD tag.
pub const MESSAGE_LEN: usize = KEY_LEN + PAD_CLASSES[0] + TAG_LEN;
/// The largest channel message.
pub const MAX_CHANNEL_MESSAGE_LEN: usize = KEY_LEN + PAD_CLASSES[1] + TAG_LEN;
/// How far a request's time may be from the HSM's clock, either way.
pub const REQUEST_WINDOW_SECS: u64 = 600;

const _: () = assert!(MAX_CHANNEL_MESSAGE_LEN <= MAX_MESSAGE_LEN);

/// A request id: the Noise handshake hash after message 1.
pub type RequestId = [u8; KEY_LEN];

fn params() -> Result<NoiseParams, ProtoError> {
    NOISE_PARAMS
        .parse()
        .map_err(|_| ProtoError::Malformed("unsupported Noise parameters".into()))
}

/// `"coffer-vault-channel-v2" || 0x00 || u32be(len(fleet_id)) || fleet_id`.
pub fn prologue(fleet_id: &str) -> Vec<u8> {
    let mut p = PROLOGUE_DOMAIN.to_vec();
    p.extend_from_slice(&(fleet_id.len() as u32).to_be_bytes());
    p.extend_from_slice(fleet_id.as_bytes());
    p
}

/// The fleet's channel key pair (X25519). Made once at the ceremony with the
/// other fleet secrets; never leaves the HSMs. No `Debug` of the private key.
pub struct ChannelKeypair {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for ChannelKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChannelKeypair(public {}, private <redacted>)",
            hex8(&self.public)
        )
    }
}

fn hex8(b: &[u8]) -> String {
    b.iter()
        .take(4)
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        + "…"
}

impl ChannelKeypair {
    /// A fresh random key pair.
    pub fn generate() -> Result<Self, ProtoError> {
        let mut kp = Builder::new(params()?)
            .generate_keypair()
            .map_err(|e| ProtoError::Malformed(format!("channel key generation failed: {e}")))?;
        let pair = Self::from_private(&kp.private);
        kp.private.zeroize();
        pair
    }

    /// The pair of a private key (32 bytes, as stored).
    pub fn from_private(private: &[u8]) -> Result<Self, ProtoError> {
        let bytes: [u8; KEY_LEN] = private
            .try_into()
            .map_err(|_| ProtoError::Malformed("a channel private key is 32 bytes".into()))?;
        let mut dh = DefaultResolver
            .resolve_dh(&params()?.dh)
            .ok_or_else(|| ProtoError::Malformed("no X25519 implementation".into()))?;
        dh.set(&bytes);
        let mut public = [0u8; KEY_LEN];
        public.copy_from_slice(dh.pubkey());
        Ok(ChannelKeypair {
            private: Zeroizing::new(bytes),
            public,
        })
    }

    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// The private key, for sealing with the other fleet secrets.
    pub fn private_bytes(&self) -> &[u8; KEY_LEN] {
        &self.private
    }
}

/// What message 1 carries: the client's clock, the account ticket (for
/// every account request) and the request. JSON
/// `{"v":2,"time":U64,"ticket":TICKET_PROOF?,"msg":REQUEST}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRequest {
    /// The client's clock, Unix seconds.
    pub time: u64,
    /// The account ticket and its holder's secret
    /// ([`crate::account`]); absent for `status`.
    pub ticket: Option<TicketProof>,
    pub request: Request,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestEnvelope {
    v: u32,
    time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket: Option<TicketProof>,
    msg: Request,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

impl ChannelRequest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&RequestEnvelope {
            v: PROTOCOL_VERSION,
            time: self.time,
            ticket: self.ticket.clone(),
            msg: self.request.clone(),
        })
        .unwrap_or_default()
    }

    /// Decodes untrusted bytes (the plaintext of message 1). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(ProtoError::TooLarge(bytes.len()));
        }
        match serde_json::from_slice::<RequestEnvelope>(bytes) {
            Ok(e) if e.v == PROTOCOL_VERSION => {
                crate::wire::check_request(&e.msg)?;
                Ok(ChannelRequest {
                    time: e.time,
                    ticket: e.ticket,
                    request: e.msg,
                })
            }
            Ok(e) => Err(ProtoError::UnsupportedVersion(e.v)),
            Err(err) => match serde_json::from_slice::<VersionOnly>(bytes) {
                Ok(v) if v.v != PROTOCOL_VERSION => Err(ProtoError::UnsupportedVersion(v.v)),
                _ => Err(ProtoError::Malformed(short(&err.to_string()))),
            },
        }
    }
}

/// `u32be(len) || plaintext || zeros` up to the smallest class that holds it.
pub fn pad(plaintext: &[u8]) -> Result<Zeroizing<Vec<u8>>, ProtoError> {
    let need = plaintext.len() + 4;
    let class = PAD_CLASSES
        .iter()
        .copied()
        .find(|c| *c >= need)
        .ok_or(ProtoError::TooLarge(plaintext.len()))?;
    let mut out = Zeroizing::new(vec![0u8; class]);
    out[..4].copy_from_slice(&(plaintext.len() as u32).to_be_bytes());
    out[4..need].copy_from_slice(plaintext);
    Ok(out)
}

/// The plaintext of a padded payload: a size class, a length that fits,
/// zeros after it.
pub fn unpad(padded: &[u8]) -> Result<&[u8], ProtoError> {
    if !PAD_CLASSES.contains(&padded.len()) {
        return Err(ProtoError::Malformed("not a padded channel payload".into()));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&padded[..4]);
    let len = u32::from_be_bytes(len) as usize;
    if len > padded.len() - 4 || padded[4 + len..].iter().any(|b| *b != 0) {
        return Err(ProtoError::Malformed("bad channel padding".into()));
    }
    Ok(&padded[4..4 + len])
}

fn noise_err(_: snow::Error) -> ProtoError {
    ProtoError::Channel
}

/// The client's side of one request: made by [`ClientHandshake::start`],
/// consumed by [`ClientHandshake::finish`] on the answer.
pub struct ClientHandshake {
    hs: HandshakeState,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientHandshake(<redacted>)")
    }
}

impl ClientHandshake {
    /// Message 1 for `request` at `time` to the fleet `fleet_id` whose
    /// channel key is `channel_key`.
    pub fn start(
        channel_key: &[u8],
        fleet_id: &str,
        time: u64,
        request: &Request,
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        Self::start_request(
            channel_key,
            fleet_id,
            &ChannelRequest {
                time,
                ticket: None,
                request: request.clone(),
            },
        )
    }

    /// Message 1 carrying `request` (with its ticket, if any).
    pub fn start_request(
        channel_key: &[u8],
        fleet_id: &str,
        request: &ChannelRequest,
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        let plain = Zeroizing::new(request.encode());
        Self::start_plaintext(channel_key, fleet_id, &plain)
    }

    /// Message 1 carrying `plaintext` (padded here) as it is: for tests
    /// that send malformed requests through an authentic channel.
    pub fn start_plaintext(
        channel_key: &[u8],
        fleet_id: &str,
        plaintext: &[u8],
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        if channel_key.len() != KEY_LEN {
            return Err(ProtoError::Malformed("a channel key is 32 bytes".into()));
        }
        let padded = pad(plaintext)?;
        let prologue = prologue(fleet_id);
        let mut hs = Builder::new(params()?)
            .prologue(&prologue)
            .and_then(|b| b.remote_public_key(channel_key))
            .and_then(|b| b.build_initiator())
            .map_err(noise_err)?;
        let mut msg = vec![0u8; KEY_LEN + padded.len() + TAG_LEN];
        let n = hs.write_message(&padded, &mut msg).map_err(noise_err)?;
        msg.truncate(n);
        Ok((ClientHandshake { hs }, msg))
    }

    /// Reads message 2: the HSM's answer to exactly this request.
    /// [`ProtoError::Channel`] if it is not an authentic message 2 for it;
    /// other errors if it is authentic but malformed.
    pub fn finish(mut self, message: &[u8]) -> Result<Response, ProtoError> {
        if message.len() > MAX_CHANNEL_MESSAGE_LEN || message.len() < KEY_LEN + TAG_LEN {
            return Err(ProtoError::Channel);
        }
        let mut padded = Zeroizing::new(vec![0u8; message.len()]);
        let n = self
            .hs
            .read_message(message, &mut padded)
            .map_err(noise_err)?;
        decode_response(unpad(&padded[..n])?)
    }
}

/// The HSM's side of one request, after message 1 was read.
pub struct ServerHandshake {
    hs: HandshakeState,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerHandshake(<redacted>)")
    }
}

/// An opened message 1.
#[derive(Debug)]
pub struct Accepted {
    pub handshake: ServerHandshake,
    /// The handshake hash after message 1: unique to this message (it
    /// covers the client's ephemeral key and the whole ciphertext).
    pub request_id: RequestId,
    /// The request, or why its plaintext is not one (answered in the channel).
    pub request: Result<ChannelRequest, ProtoError>,
}

/// Opens message 1 with the fleet's channel key. An error means no channel
/// exists (not for this key or fleet, damaged, not a channel message): it
/// can only be answered outside the channel.
pub fn accept(
    key: &ChannelKeypair,
    fleet_id: &str,
    message: &[u8],
) -> Result<Accepted, ProtoError> {
    if message.len() > MAX_CHANNEL_MESSAGE_LEN || message.len() < KEY_LEN + TAG_LEN {
        return Err(ProtoError::Channel);
    }
    let prologue = prologue(fleet_id);
    let mut hs = Builder::new(params()?)
        .prologue(&prologue)
        .and_then(|b| b.local_private_key(key.private_bytes()))
        .and_then(|b| b.build_responder())
        .map_err(noise_err)?;
    let mut padded = Zeroizing::new(vec![0u8; message.len()]);
    let n = hs.read_message(message, &mut padded).map_err(noise_err)?;
    let mut request_id = [0u8; KEY_LEN];
    request_id.copy_from_slice(hs.get_handshake_hash());
    let request = unpad(&padded[..n]).and_then(ChannelRequest::decode);
    Ok(Accepted {
        handshake: ServerHandshake { hs },
        request_id,
        request,
    })
}

impl ServerHandshake {
    /// Message 2 carrying `response`, padded.
    pub fn respond(mut self, response: &Response) -> Result<Vec<u8>, ProtoError> {
        let plain = Zeroizing::new(encode_response(response));
        let padded = pad(&plain)?;
        let mut msg = vec![0u8; KEY_LEN + padded.len() + TAG_LEN];
        let n = self
            .hs
            .write_message(&padded, &mut msg)
            .map_err(noise_err)?;
        msg.truncate(n);
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bytes, WireError};
    use coffer_error::UserFacing;

    fn pair() -> ChannelKeypair {
        ChannelKeypair::generate().unwrap()
    }

    fn login(user: &str) -> Request {
        Request::LoginStart {
            user: user.into(),
            request: Bytes(vec![5; 96]),
        }
    }

    #[test]
    fn a_request_and_its_answer_go_through_and_have_the_fixed_size() {
        let k = pair();
        let (c, m1) = ClientHandshake::start(&k.public(), "f", 77, &login("alice")).unwrap();
        assert_eq!(m1.len(), MESSAGE_LEN);
        let a = accept(&k, "f", &m1).unwrap();
        let req = a.request.unwrap();
        assert_eq!((req.time, req.request), (77, login("alice")));
        let m2 = a.handshake.respond(&Response::Registered {}).unwrap();
        assert_eq!(m2.len(), MESSAGE_LEN);
        assert_eq!(c.finish(&m2).unwrap(), Response::Registered {});
    }

    #[test]
    fn only_the_key_holder_reads_and_answers_and_answers_are_bound_to_their_request() {
        let k = pair();
        let (_, m1) = ClientHandshake::start(&k.public(), "f", 1, &login("alice")).unwrap();
        // Another key, another fleet id: no channel.
        assert_eq!(accept(&pair(), "f", &m1).unwrap_err(), ProtoError::Channel);
        assert_eq!(accept(&k, "g", &m1).unwrap_err(), ProtoError::Channel);
        // Any flipped bit: no channel.
        for i in [0, 31, 32, 100, m1.len() - 1] {
            let mut t = m1.clone();
            t[i] ^= 1;
            assert_eq!(accept(&k, "f", &t).unwrap_err(), ProtoError::Channel, "{i}");
        }
        // An answer made for one request does not open for another.
        let (c1, a1) = ClientHandshake::start(&k.public(), "f", 1, &login("a")).unwrap();
        let (c2, a2) = ClientHandshake::start(&k.public(), "f", 1, &login("a")).unwrap();
        let r1 = accept(&k, "f", &a1)
            .unwrap()
            .handshake
            .respond(&Response::Deleted {})
            .unwrap();
        let _ = accept(&k, "f", &a2).unwrap();
        assert_eq!(c2.finish(&r1).unwrap_err(), ProtoError::Channel);
        // A forger without the key (its own responder key) cannot answer.
        let (c3, a3) = ClientHandshake::start(&k.public(), "f", 1, &login("a")).unwrap();
        let forger = pair();
        assert!(accept(&forger, "f", &a3).is_err());
        assert_eq!(
            c3.finish(&vec![0; MESSAGE_LEN]).unwrap_err(),
            ProtoError::Channel
        );
        // The genuine answer still opens.
        assert_eq!(c1.finish(&r1).unwrap(), Response::Deleted {});
    }

    #[test]
    fn request_ids_differ_per_message_and_repeat_for_a_replay() {
        let k = pair();
        let (_, m1) = ClientHandshake::start(&k.public(), "f", 1, &login("a")).unwrap();
        let (_, m2) = ClientHandshake::start(&k.public(), "f", 1, &login("a")).unwrap();
        let id1 = accept(&k, "f", &m1).unwrap().request_id;
        assert_eq!(accept(&k, "f", &m1).unwrap().request_id, id1, "a replay");
        assert_ne!(accept(&k, "f", &m2).unwrap().request_id, id1);
    }

    #[test]
    fn malformed_plaintext_inside_an_authentic_channel_is_an_error_to_answer() {
        let k = pair();
        for (plain, code) in [
            (&b"not json"[..], "CF-V001"),
            (br#"{"v":1,"time":1,"msg":{"type":"status"}}"#, "CF-V003"),
            (br#"{"v":2,"msg":{"type":"status"}}"#, "CF-V001"),
            (
                br#"{"v":2,"time":1,"msg":{"type":"status"},"x":1}"#,
                "CF-V001",
            ),
            (
                br#"{"v":2,"time":1,"msg":{"type":"login_start","user":"","request":""}}"#,
                "CF-V001",
            ),
        ] {
            let (_, m1) = ClientHandshake::start_plaintext(&k.public(), "f", plain).unwrap();
            let a = accept(&k, "f", &m1).unwrap();
            assert_eq!(a.request.unwrap_err().code(), code);
        }
        let too_big = vec![b' '; PAD_CLASSES[1]];
        assert!(ClientHandshake::start_plaintext(&k.public(), "f", &too_big).is_err());
    }

    #[test]
    fn padding_round_trips_and_is_checked() {
        for len in [0, 1, 4091, 4092, 4093, 8188] {
            let p = vec![7u8; len];
            let padded = pad(&p).unwrap();
            assert!(PAD_CLASSES.contains(&padded.len()));
            assert_eq!(unpad(&padded).unwrap(), &p[..]);
        }
        assert!(pad(&vec![0; 8189]).is_err());
        let mut p = pad(b"abc").unwrap();
        p[10] = 1;
        assert!(unpad(&p).is_err(), "non-zero padding");
        let mut p = pad(b"abc").unwrap();
        p[..4].copy_from_slice(&5000u32.to_be_bytes());
        assert!(unpad(&p).is_err(), "length beyond the payload");
        assert!(unpad(&[0; 100]).is_err(), "not a class");
    }

    #[test]
    fn every_answer_of_the_protocol_fits_the_first_class() {
        // The longest user id, in characters JSON escapes.
        let user = "\"".repeat(crate::MAX_USER_ID_LEN);
        let b = |n: usize| Bytes(vec![0xAB; n]);
        let k = pair();
        let fleet = crate::FleetInfo {
            fleet_id: "x".repeat(64),
            server_public_key: b(32),
            channel_public_key: Some(b(32)),
            validation_bundle: None,
        };
        let answers = [
            Response::LoginStarted {
                response: b(320),
                token: b(1400),
                attempts_remaining: 1000,
                fleet: fleet.clone(),
            },
            Response::RegisterStarted {
                response: b(64),
                token: b(600),
                fleet,
            },
            Response::LoginFinished {
                released: b(64),
                auth: b(1000),
                attempts_remaining: 1000,
                wrong_guesses: 1000,
                wrong_guess_times: vec![u64::MAX; crate::MAX_REPORTED_TIMES],
            },
            Response::Error {
                error: WireError {
                    kind: coffer_error::ErrorKind::InvalidInput,
                    code: "CF-V001".into(),
                    message: format!("the request is malformed: {}", "\\".repeat(200)),
                    next_step: "x".repeat(300),
                    attempts_remaining: Some(1000),
                    retry_at: Some(u64::MAX),
                },
            },
        ];
        for r in answers {
            let (_, m1) = ClientHandshake::start(&k.public(), "f", 1, &login(&user)).unwrap();
            assert_eq!(m1.len(), MESSAGE_LEN);
            let m2 = accept(&k, "f", &m1).unwrap().handshake.respond(&r).unwrap();
            assert_eq!(m2.len(), MESSAGE_LEN, "{r:?}");
        }
        let change = Request::Change {
            auth: b(1000),
            token: b(600),
            upload: b(192),
            wrapped_key: b(48),
            mac: b(32),
        };
        // The longest request with a ticket for the longest account.
        let signer = crate::account::TicketSigner::generate();
        let holder = crate::account::TicketHolder::new();
        let mut ticket = signer
            .issue("f", "a", &holder.commitment(), u64::MAX)
            .unwrap();
        ticket.account = user.clone();
        for r in [change, login(&user)] {
            let req = ChannelRequest {
                time: u64::MAX,
                ticket: Some(holder.prove(&ticket)),
                request: r,
            };
            let (_, m1) = ClientHandshake::start_request(&k.public(), "f", &req).unwrap();
            assert_eq!(m1.len(), MESSAGE_LEN);
            assert_eq!(accept(&k, "f", &m1).unwrap().request.unwrap(), req);
        }
    }

    #[test]
    fn the_public_key_follows_from_the_private_one() {
        let k = pair();
        let again = ChannelKeypair::from_private(k.private_bytes()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_ne!(pair().public(), k.public());
        assert!(ChannelKeypair::from_private(&[1; 31]).is_err());
        let dbg = format!("{k:?}");
        assert!(dbg.contains("redacted"), "{dbg}");
        assert_eq!(
            prologue("fleet"),
            b"coffer-vault-channel-v2\0\0\0\0\x05fleet".to_vec()
        );
    }
}
