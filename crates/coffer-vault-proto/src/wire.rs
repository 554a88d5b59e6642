//! Vault messages and their encoding.
//!
//! Encoding: UTF-8 JSON `{"v":2,"msg":{"type":"…",…}}`, byte strings in
//! standard base64 with padding, unknown fields rejected, at most
//! [`MAX_MESSAGE_LEN`] bytes. Outside the channel only `status` travels
//! this way; every other request and every answer to one travels inside
//! the channel ([`crate::channel`]).

use base64::Engine as _;
use coffer_error::{ErrorKind, ErrorReport};
use serde::{Deserialize, Serialize};

use crate::ProtoError;

/// The protocol version this build speaks: 2, the authenticated channel
/// ([`crate::channel`]). Version 1 (plain JSON account requests) is refused.
pub const PROTOCOL_VERSION: u32 = 2;
/// The largest encoded request accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// The largest encoded response accepted, in bytes (room for a validation
/// bundle of [`MAX_BUNDLE_LEN`] in base64).
pub const MAX_RESPONSE_LEN: usize = 384 * 1024;
/// The longest user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// The largest validation bundle a response may carry, in bytes.
pub const MAX_BUNDLE_LEN: usize = 256 * 1024;
/// How many times of wrong guesses a successful login reports.
pub const MAX_REPORTED_TIMES: usize = 16;

/// A byte string, base64 on the wire.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print contents: some of these are sealed tokens or key material.
        write!(f, "Bytes(<{} bytes>)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("bad base64: {e}")))
    }
}

/// A client's request to the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Fleet status: keys, guess limit, health. Says nothing about any user.
    /// `known_log_size` is the size of the witness checkpoint the client
    /// remembers (over-the-air validation): the host relays a validation
    /// blob with a consistency proof from that size. Absent = none remembered
    /// (older clients never send it).
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known_log_size: Option<u64>,
    },
    /// OPAQUE registration, first message (`RegistrationRequest`).
    RegisterStart { user: String, request: Bytes },
    /// OPAQUE registration upload plus the wrapped backup key, with the
    /// sealed token from `RegisterStarted`. Creates a new record; fails if the
    /// user has a live record (use `Change`).
    RegisterFinish {
        user: String,
        token: Bytes,
        upload: Bytes,
        wrapped_key: Bytes,
    },
    /// OPAQUE login, first message (`CredentialRequest`). Costs one attempt.
    LoginStart { user: String, request: Bytes },
    /// OPAQUE login, last message (`CredentialFinalization`), with the sealed
    /// token from `LoginStarted`.
    LoginFinish { token: Bytes, finalization: Bytes },
    /// The client found the code wrong (the envelope did not open): the
    /// attempt is recorded as failed (it was already counted at `LoginStart`).
    LoginAbort { token: Bytes },
    /// Replace the record with a new registration (started with
    /// `RegisterStart`), authorised by a login in the same session.
    Change {
        auth: Bytes,
        token: Bytes,
        upload: Bytes,
        wrapped_key: Bytes,
        mac: Bytes,
    },
    /// Delete the record, authorised by a login in the same session.
    Delete { auth: Bytes, mac: Bytes },
}

impl Request {
    /// The request's name, for logs (no contents).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::RegisterStart { .. } => "register_start",
            Request::RegisterFinish { .. } => "register_finish",
            Request::LoginStart { .. } => "login_start",
            Request::LoginFinish { .. } => "login_finish",
            Request::LoginAbort { .. } => "login_abort",
            Request::Change { .. } => "change",
            Request::Delete { .. } => "delete",
        }
    }
}

/// What the client needs to check the fleet's identity before finishing a
/// registration or trusting a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetInfo {
    /// The fleet id chosen at `fleet create`.
    pub fleet_id: String,
    /// The OPAQUE server static public key (Ristretto255, 32 bytes).
    pub server_public_key: Bytes,
    /// The channel's static public key (X25519, 32 bytes); absent for a
    /// fleet made before protocol v2 (no session can be opened with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_public_key: Option<Bytes>,
    /// An optional over-the-air validation bundle (opaque to this crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_bundle: Option<Bytes>,
}

/// The fleet's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusInfo {
    pub fleet: FleetInfo,
    /// Consecutive wrong guesses that destroy a record.
    pub guess_limit: u32,
    /// Nodes in the fleet.
    pub nodes: u32,
    /// Whether a majority of the fleet committed a probe just now.
    pub quorum: bool,
    /// Always true in this build: the HSM is a software simulation.
    pub simulated_hsm: bool,
    /// The key-stretching function's parameters.
    pub ksf: String,
}

/// An error as the vault reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    pub next_step: String,
    /// For a failed or refused login: attempts left before the record is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_remaining: Option<u32>,
    /// For an attempt refused by the time throttle (`CF-V023`), or a mail
    /// code refused for now (`CF-V029`): when the next one is taken (Unix
    /// seconds, the vault's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
}

impl WireError {
    pub fn from_report(r: ErrorReport, attempts_remaining: Option<u32>) -> Self {
        WireError {
            kind: r.kind,
            code: r.code,
            message: r.message,
            next_step: r.next_step,
            attempts_remaining,
            retry_at: None,
        }
    }
    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.kind,
            code: self.code.clone(),
            message: self.message.clone(),
            next_step: self.next_step.clone(),
        }
    }
}

/// The vault's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Status {
        status: StatusInfo,
    },
    /// `RegistrationResponse` and a sealed token binding user and new record.
    RegisterStarted {
        response: Bytes,
        token: Bytes,
        fleet: FleetInfo,
    },
    Registered {},
    /// `CredentialResponse`, the sealed login state, and the attempts left
    /// if this attempt fails.
    LoginStarted {
        response: Bytes,
        token: Bytes,
        attempts_remaining: u32,
        fleet: FleetInfo,
    },
    /// The wrapped key sealed under the session key, a sealed authorisation
    /// for `Change`/`Delete` in this session, and the attempts left (the
    /// counter was reset: the full limit). `wrong_guesses`: how many
    /// attempts since the last success did not succeed (wrong codes and
    /// abandoned logins), and when the last [`MAX_REPORTED_TIMES`] of them
    /// began (Unix seconds, oldest first), so the owner learns that
    /// someone was guessing.
    LoginFinished {
        released: Bytes,
        auth: Bytes,
        attempts_remaining: u32,
        #[serde(default)]
        wrong_guesses: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        wrong_guess_times: Vec<u64>,
    },
    /// The failed attempt is recorded.
    LoginAborted {
        attempts_remaining: u32,
        destroyed: bool,
    },
    Changed {},
    Deleted {},
    Error {
        error: WireError,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<T> {
    v: u32,
    msg: T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these types cannot fail (no maps with non-string keys).
    serde_json::to_vec(&Envelope {
        v: PROTOCOL_VERSION,
        msg,
    })
    .unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], max: usize) -> Result<T, ProtoError> {
    if bytes.len() > max {
        return Err(ProtoError::TooLarge(bytes.len()));
    }
    match serde_json::from_slice::<Envelope<T>>(bytes) {
        Ok(env) if env.v == PROTOCOL_VERSION => Ok(env.msg),
        Ok(env) => Err(ProtoError::UnsupportedVersion(env.v)),
        Err(e) => match serde_json::from_slice::<VersionOnly>(bytes) {
            Ok(v) if v.v != PROTOCOL_VERSION => Err(ProtoError::UnsupportedVersion(v.v)),
            _ => Err(ProtoError::Malformed(short(&e.to_string()))),
        },
    }
}

pub(crate) fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Checks a user id: 1 to [`MAX_USER_ID_LEN`] bytes, no control characters.
pub fn check_user_id(user: &str) -> Result<(), ProtoError> {
    if user.is_empty() || user.len() > MAX_USER_ID_LEN {
        return Err(ProtoError::Malformed(format!(
            "user id must be 1 to {MAX_USER_ID_LEN} bytes"
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(ProtoError::Malformed(
            "user id contains control characters".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_request(r: &Request) -> Result<(), ProtoError> {
    match r {
        Request::RegisterStart { user, .. }
        | Request::RegisterFinish { user, .. }
        | Request::LoginStart { user, .. } => check_user_id(user),
        _ => Ok(()),
    }
}

fn check_fleet(f: &FleetInfo) -> Result<(), ProtoError> {
    match &f.validation_bundle {
        Some(b) if b.0.len() > MAX_BUNDLE_LEN => Err(ProtoError::TooLarge(b.0.len())),
        _ => Ok(()),
    }
}

fn check_response(r: &Response) -> Result<(), ProtoError> {
    match r {
        Response::Status { status } => check_fleet(&status.fleet),
        Response::RegisterStarted { fleet, .. } | Response::LoginStarted { fleet, .. } => {
            check_fleet(fleet)
        }
        _ => Ok(()),
    }
}

/// The answer to a request of protocol version 1 (any request of an old
/// client): a v1 error telling it to update, which old clients show.
pub fn refuse_version_1() -> Vec<u8> {
    let e = ProtoError::OldClient(1);
    serde_json::to_vec(&Envelope {
        v: 1,
        msg: Response::Error {
            error: WireError::from_report(coffer_error::UserFacing::report(&e), None),
        },
    })
    .unwrap_or_default()
}

/// Encodes a request.
pub fn encode_request(r: &Request) -> Vec<u8> {
    encode(r)
}

/// Decodes untrusted bytes as a request. Never panics.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ProtoError> {
    let r: Request = decode(bytes, MAX_MESSAGE_LEN)?;
    check_request(&r)?;
    Ok(r)
}

/// Encodes a response.
pub fn encode_response(r: &Response) -> Vec<u8> {
    encode(r)
}

/// Decodes untrusted bytes as a response. Never panics.
pub fn decode_response(bytes: &[u8]) -> Result<Response, ProtoError> {
    let r: Response = decode(bytes, MAX_RESPONSE_LEN)?;
    check_response(&r)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_error::UserFacing;

    fn all_requests() -> Vec<Request> {
        let b = || Bytes(vec![1, 2, 3, 255]);
        vec![
            Request::Status {
                known_log_size: None,
            },
            Request::Status {
                known_log_size: Some(7),
            },
            Request::RegisterStart {
                user: "alice".into(),
                request: b(),
            },
            Request::RegisterFinish {
                user: "alice".into(),
                token: b(),
                upload: b(),
                wrapped_key: b(),
            },
            Request::LoginStart {
                user: "alice".into(),
                request: b(),
            },
            Request::LoginFinish {
                token: b(),
                finalization: b(),
            },
            Request::LoginAbort { token: b() },
            Request::Change {
                auth: b(),
                token: b(),
                upload: b(),
                wrapped_key: b(),
                mac: b(),
            },
            Request::Delete {
                auth: b(),
                mac: b(),
            },
        ]
    }

    #[test]
    fn requests_round_trip_and_truncations_are_errors() {
        for r in all_requests() {
            let bytes = encode_request(&r);
            assert_eq!(decode_request(&bytes).unwrap(), r);
            for cut in 0..bytes.len() {
                assert!(
                    decode_request(&bytes[..cut]).is_err(),
                    "{} cut at {cut} decoded",
                    r.name()
                );
            }
        }
    }

    #[test]
    fn responses_round_trip() {
        let fleet = FleetInfo {
            fleet_id: "f".into(),
            server_public_key: Bytes(vec![7; 32]),
            channel_public_key: Some(Bytes(vec![8; 32])),
            validation_bundle: Some(Bytes(vec![1])),
        };
        let rs = vec![
            Response::Registered {},
            Response::LoginStarted {
                response: Bytes(vec![1]),
                token: Bytes(vec![2]),
                attempts_remaining: 9,
                fleet: fleet.clone(),
            },
            Response::Error {
                error: WireError {
                    kind: ErrorKind::WrongRecoveryCode,
                    code: "CF-V010".into(),
                    message: "m".into(),
                    next_step: "n".into(),
                    attempts_remaining: Some(3),
                    retry_at: Some(1_800_000_000),
                },
            },
            Response::Status {
                status: StatusInfo {
                    fleet,
                    guess_limit: 10,
                    nodes: 5,
                    quorum: true,
                    simulated_hsm: true,
                    ksf: crate::KSF_DESCRIPTION.into(),
                },
            },
        ];
        for r in rs {
            assert_eq!(decode_response(&encode_response(&r)).unwrap(), r);
        }
    }

    #[test]
    fn the_wire_format_is_as_documented() {
        let bytes = encode_request(&Request::LoginStart {
            user: "bob".into(),
            request: Bytes(vec![0, 1, 2]),
        });
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":2,"msg":{"type":"login_start","user":"bob","request":"AAEC"}}"#
        );
    }

    #[test]
    fn malformed_inputs_are_errors_with_codes() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "CF-V001"),
            (b"null", "CF-V001"),
            (b"\xff\xfe", "CF-V001"),
            (br#"{"v":2,"msg":{"type":"nope"}}"#, "CF-V001"),
            (br#"{"v":2,"msg":{"type":"status","extra":1}}"#, "CF-V001"),
            (
                br#"{"v":2,"msg":{"type":"login_start","user":"a","request":"!!"}}"#,
                "CF-V001",
            ),
            (
                br#"{"v":2,"msg":{"type":"login_start","user":"","request":""}}"#,
                "CF-V001",
            ),
            (br#"{"v":3,"msg":{"type":"status"}}"#, "CF-V003"),
            (br#"{"v":1,"msg":{"type":"status"}}"#, "CF-V003"),
            (br#"{"v":99,"msg":{"type":"whatever"}}"#, "CF-V003"),
        ];
        for (bytes, code) in cases {
            let e = decode_request(bytes).unwrap_err();
            assert_eq!(e.code(), code, "{:?}", String::from_utf8_lossy(bytes));
        }
        let huge = vec![b' '; MAX_MESSAGE_LEN + 1];
        assert_eq!(decode_request(&huge).unwrap_err().code(), "CF-V002");
        let long_user = "x".repeat(MAX_USER_ID_LEN + 1);
        let r = encode_request(&Request::LoginStart {
            user: long_user,
            request: Bytes(vec![]),
        });
        assert_eq!(decode_request(&r).unwrap_err().code(), "CF-V001");
    }

    #[test]
    fn status_carries_the_known_log_size_compatibly() {
        // An older client's status (no field) still decodes, as "none remembered".
        assert_eq!(
            decode_request(br#"{"v":2,"msg":{"type":"status"}}"#).unwrap(),
            Request::Status {
                known_log_size: None
            }
        );
        // None is not written at all, so older servers accept it.
        assert_eq!(
            encode_request(&Request::Status {
                known_log_size: None
            }),
            br#"{"v":2,"msg":{"type":"status"}}"#.to_vec()
        );
        let b = encode_request(&Request::Status {
            known_log_size: Some(3),
        });
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"v":2,"msg":{"type":"status","known_log_size":3}}"#
        );
        assert_eq!(
            decode_request(&b).unwrap(),
            Request::Status {
                known_log_size: Some(3)
            }
        );
        for bad in [
            &br#"{"v":2,"msg":{"type":"status","known_log_size":-1}}"#[..],
            br#"{"v":2,"msg":{"type":"status","known_log_size":"3"}}"#,
        ] {
            assert_eq!(decode_request(bad).unwrap_err().code(), "CF-V001");
        }
    }

    #[test]
    fn version_1_requests_get_a_version_1_error_saying_to_update() {
        let b = refuse_version_1();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["msg"]["type"], "error");
        assert_eq!(v["msg"]["error"]["code"], "CF-V003");
        let msg = v["msg"]["error"]["message"].as_str().unwrap();
        assert!(msg.contains("protocol v2"), "{msg}");
        assert!(v["msg"]["error"]["next_step"]
            .as_str()
            .unwrap()
            .contains("Update Coffer"));
    }

    #[test]
    fn debug_of_bytes_hides_contents() {
        assert_eq!(format!("{:?}", Bytes(vec![0xAB; 3])), "Bytes(<3 bytes>)");
    }
}
