//! The HSM's request handling: OPAQUE registration and login with the guess
//! counter committed through the fleet before any evaluation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_error::UserFacing;
use coffer_fleet::Replicator;
use coffer_vault_proto::account::TicketProof;
use coffer_vault_proto::channel::{self, RequestId, REQUEST_WINDOW_SECS};
use coffer_vault_proto::{
    crypto, decode_request, encode_response, Bytes, FleetInfo, ProtoError, Request, Response,
    StatusInfo, Suite, WireError, KSF_DESCRIPTION,
};
use opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
    ServerLogin, ServerLoginParameters, ServerRegistration,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::notice::{AccountNotice, NoticeKind, NoticeSink};
use crate::state::{Cmd, NewRecord, Outcome, RecordId, SettledReport};
use crate::{HsmError, HsmSecrets, HsmState};

const REG_TOKEN: &str = "coffer-hsm registration token v1";
const LOGIN_TOKEN: &str = "coffer-hsm login token v1";
const AUTH_TOKEN: &str = "coffer-hsm authorisation v1";
/// How long a registration, login or authorisation token stays valid.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// Public facts about the deployment the HSM reports in `status`.
#[derive(Debug, Clone, Default)]
pub struct HsmConfig {
    /// Nodes in the fleet.
    pub nodes: u32,
    /// An over-the-air validation bundle to attach to responses (public).
    pub validation_bundle: Option<Vec<u8>>,
}

/// How long after a counted login attempt the HSM settles it (reports it
/// as a wrong guess if it neither succeeded nor was reported failed): just
/// after its login token expired, when it can no longer succeed.
pub const SETTLE_AFTER: Duration = Duration::from_secs(TOKEN_LIFETIME_SECS + 5);

/// One HSM of the fleet. Cheap to share (`Arc`).
pub struct Hsm {
    core: Core,
    config: HsmConfig,
    /// The current over-the-air validation bundle (public; set by the host).
    bundle: RwLock<Option<Vec<u8>>>,
    /// Where notices for account owners go, and when an attempt is settled.
    notices: RwLock<Option<(Arc<dyn NoticeSink>, Duration)>>,
    /// Attempts this HSM saw end (success or reported failure): their
    /// settle commits are skipped.
    ended: Arc<Mutex<HashSet<(String, u64)>>>,
}

/// What committing needs; cloned into the settle tasks.
#[derive(Clone)]
struct Core {
    secrets: Arc<HsmSecrets>,
    replicator: Arc<dyn Replicator>,
    /// `status`'s quorum answer, shared by all callers for a second.
    probe: Arc<crate::probe::QuorumProbe>,
}

impl Core {
    async fn commit(&self, cmd: Cmd) -> Result<Outcome, HsmError> {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = HsmState::seal_command(&self.secrets, nonce, &cmd);
        let out = self.replicator.propose(sealed).await.map_err(|e| {
            self.probe.forget();
            HsmError::from_replication(e)
        })?;
        let outcome = HsmState::open_response(&self.secrets, nonce, &out);
        tracing::debug!(
            command = cmd_name(&cmd),
            outcome = outcome.as_ref().map_or("unopenable", outcome_name),
            "committed"
        );
        match outcome {
            Some(Outcome::Rejected) | None => Err(HsmError::Internal(
                "a committed command had no valid response".into(),
            )),
            Some(o) => Ok(o),
        }
    }
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("fleet_id", &self.core.secrets.fleet_id())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct RegToken {
    user: String,
    id: RecordId,
    expires: u64,
}

#[derive(Serialize, Deserialize)]
struct LoginToken {
    user: String,
    /// `flag (1) || record id (16) || seq (8, big-endian)`; flag 0 (random
    /// filler instead of the id, the fake counter's seq) for the dummy
    /// login of an unknown account, so that both kinds of token have the
    /// same length.
    attempt: Bytes,
    state: Bytes,
    expires: u64,
}

/// Whose attempt a login token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Record(RecordId, u64),
    Ghost(u64),
}

impl Attempt {
    fn seq(self) -> u64 {
        match self {
            Attempt::Record(_, s) | Attempt::Ghost(s) => s,
        }
    }
    fn id(self) -> Option<RecordId> {
        match self {
            Attempt::Record(id, _) => Some(id),
            Attempt::Ghost(_) => None,
        }
    }
}

fn encode_attempt(a: Attempt) -> Bytes {
    let mut v = vec![0u8; 25];
    match a {
        Attempt::Record(id, seq) => {
            v[0] = 1;
            v[1..17].copy_from_slice(&id);
            v[17..].copy_from_slice(&seq.to_be_bytes());
        }
        Attempt::Ghost(seq) => {
            rand::rngs::OsRng.fill_bytes(&mut v[1..17]);
            v[17..].copy_from_slice(&seq.to_be_bytes());
        }
    }
    Bytes(v)
}

fn decode_attempt(b: &Bytes) -> Result<Attempt, HsmError> {
    let v = &b.0;
    if v.len() != 25 {
        return Err(HsmError::BadToken);
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&v[17..]);
    let seq = u64::from_be_bytes(seq);
    if v[0] == 0 {
        return Ok(Attempt::Ghost(seq));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&v[1..17]);
    Ok(Attempt::Record(id, seq))
}

#[derive(Serialize, Deserialize)]
struct AuthToken {
    user: String,
    id: RecordId,
    seq: u64,
    session_key: Bytes,
    expires: u64,
}

impl Drop for LoginToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.state.0);
    }
}

impl Drop for AuthToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.session_key.0);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The OPAQUE credential identifier: per user **and** per record, so every
/// record has its own OPRF key.
fn credential_id(user: &str, id: &RecordId) -> Vec<u8> {
    let mut v = b"coffer-vault-v1\0".to_vec();
    v.extend_from_slice(&(user.len() as u32).to_be_bytes());
    v.extend_from_slice(user.as_bytes());
    v.extend_from_slice(id);
    v
}

impl Hsm {
    pub fn new(
        secrets: Arc<HsmSecrets>,
        replicator: Arc<dyn Replicator>,
        config: HsmConfig,
    ) -> Self {
        Hsm {
            core: Core {
                secrets,
                replicator,
                probe: Arc::new(crate::probe::QuorumProbe::new(crate::probe::PROBE_TTL)),
            },
            bundle: RwLock::new(config.validation_bundle.clone()),
            config,
            notices: RwLock::new(None),
            ended: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Hands notices for account owners (a wrong guess counted, a record
    /// destroyed) to `sink`, the host's account service, which mails them.
    /// A counted attempt whose client never says how it ended is settled
    /// `settle_after` it began ([`SETTLE_AFTER`] in a node; shorter in
    /// tests): if it neither succeeded nor was reported failed, it was a
    /// wrong guess, reported then. Without a sink no notice is made and
    /// nothing is settled.
    pub fn set_notice_sink(&self, sink: Arc<dyn NoticeSink>, settle_after: Duration) {
        if let Ok(mut g) = self.notices.write() {
            *g = Some((sink, settle_after));
        }
    }

    fn sink(&self) -> Option<(Arc<dyn NoticeSink>, Duration)> {
        self.notices.read().ok().and_then(|g| g.clone())
    }

    /// Reports a failed attempt (its first report only: the caller checks).
    fn tell_failed(&self, account: &str, at: u64, remaining: u32, destroyed: bool) {
        if let Some((sink, _)) = self.sink() {
            sink.notice(AccountNotice {
                account: account.to_string(),
                at,
                kind: notice_kind(remaining, destroyed),
            });
        }
    }

    /// This HSM saw the attempt end: its settle commit is not needed.
    fn ended(&self, user: &str, seq: u64) {
        if self.sink().is_some() {
            if let Ok(mut g) = self.ended.lock() {
                // An attempt begun at another node has no settle task here
                // to remove it: bounded (forgetting only costs a commit).
                if g.len() >= 100_000 {
                    g.clear();
                }
                g.insert((user.to_string(), seq));
            }
        }
    }

    /// After a counted attempt: settle it once its token expired.
    fn watch(&self, user: &str, attempt: Attempt) {
        let Some((sink, after)) = self.sink() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let core = self.core.clone();
        let ended = self.ended.clone();
        let user = user.to_string();
        rt.spawn(async move {
            tokio::time::sleep(after).await;
            let seen = ended
                .lock()
                .map(|mut g| g.remove(&(user.clone(), attempt.seq())))
                .unwrap_or(false);
            if seen {
                return;
            }
            let cmd = Cmd::Settle {
                user: user.clone(),
                id: attempt.id(),
                seq: attempt.seq(),
            };
            match core.commit(cmd).await {
                Ok(Outcome::Settled {
                    report:
                        Some(SettledReport {
                            at,
                            remaining,
                            destroyed,
                        }),
                }) => sink.notice(AccountNotice {
                    account: user,
                    at,
                    kind: notice_kind(remaining, destroyed),
                }),
                Ok(_) => {}
                Err(e) => tracing::info!(code = e.code(), "an attempt could not be settled"),
            }
        });
    }

    /// The fleet key (OPAQUE server static public key).
    pub fn server_public_key(&self) -> Vec<u8> {
        self.core.secrets.server_public_key()
    }

    /// Replaces the validation bundle attached to every `fleet` in responses
    /// (public data relayed by the host, e.g. a new epoch's bundle from the
    /// witness; `None` removes it). Bundles over `MAX_BUNDLE_LEN` are refused.
    pub fn set_validation_bundle(&self, bundle: Option<Vec<u8>>) -> Result<(), HsmError> {
        if bundle
            .as_ref()
            .is_some_and(|b| b.len() > coffer_vault_proto::MAX_BUNDLE_LEN)
        {
            return Err(HsmError::Malformed(
                "the validation bundle is too large".into(),
            ));
        }
        if let Ok(mut g) = self.bundle.write() {
            *g = bundle;
        }
        Ok(())
    }

    pub fn guess_limit(&self) -> u32 {
        self.core.secrets.guess_limit()
    }

    /// The fleet id (bound into every channel message).
    pub fn fleet_id(&self) -> &str {
        self.core.secrets.fleet_id()
    }

    /// The channel's static public key (X25519), if the fleet has one.
    pub fn channel_public_key(&self) -> Option<[u8; 32]> {
        self.core.secrets.channel_public_key()
    }

    /// The account service's ticket key fixed in the sealed secrets.
    pub fn ticket_key(&self) -> Option<[u8; 32]> {
        self.core.secrets.ticket_key()
    }

    /// The account a request's ticket proves (signature by the fleet's
    /// ticket key, not expired, presented with its holder's secret); the
    /// caller compares it with the request's account. Every refusal is the
    /// same error, whatever the account and the reason.
    fn ticket_account(&self, proof: Option<&TicketProof>, now: u64) -> Result<String, HsmError> {
        let key = self.ticket_key().ok_or(HsmError::NoTicketKey)?;
        let proof = proof.ok_or(HsmError::NoTicket)?;
        let account = &proof.ticket.account;
        proof
            .check(&key, self.fleet_id(), account, now)
            .map_err(|_| HsmError::NoTicket)?;
        Ok(account.clone())
    }

    /// The fleet's public identity. The validation bundle travels only in the
    /// bootstrap status (outside the channel: the host relays it); answers
    /// inside the channel carry none, so they keep their fixed size.
    fn fleet(&self, with_bundle: bool) -> FleetInfo {
        FleetInfo {
            fleet_id: self.core.secrets.fleet_id().to_string(),
            server_public_key: Bytes(self.server_public_key()),
            channel_public_key: self.channel_public_key().map(|k| Bytes(k.to_vec())),
            validation_bundle: if with_bundle {
                self.bundle.read().ok().and_then(|b| b.clone()).map(Bytes)
            } else {
                None
            },
        }
    }

    /// The bootstrap `status`, outside the channel: what a client needs to
    /// validate the fleet (ids, keys, the relayed bundle) before it can open
    /// a channel. Says nothing about any account.
    pub async fn status(&self) -> Response {
        Response::Status {
            status: self.status_info(true).await,
        }
    }

    async fn status_info(&self, with_bundle: bool) -> StatusInfo {
        // One probe commit a second, shared by every caller (crate::probe).
        let quorum = self
            .core
            .probe
            .quorum(|| async { self.core.commit(Cmd::Probe).await.is_ok() })
            .await;
        StatusInfo {
            fleet: self.fleet(with_bundle),
            guess_limit: self.guess_limit(),
            nodes: self.config.nodes,
            quorum,
            simulated_hsm: true,
            ksf: KSF_DESCRIPTION.into(),
        }
    }

    /// The plain boundary (outside the channel): only `status` is answered;
    /// every account request is refused there (it must come through
    /// [`Hsm::handle_channel`]).
    pub async fn handle_plain(&self, request: Request) -> Response {
        match request {
            Request::Status { .. } => self.status().await,
            other => {
                tracing::info!(
                    request = other.name(),
                    "hsm request outside the channel refused"
                );
                error_response(&HsmError::NeedsChannel)
            }
        }
    }

    /// [`Hsm::handle_plain`] on bytes. Never panics on malformed input.
    pub async fn handle_plain_bytes(&self, request: &[u8]) -> Vec<u8> {
        let response = match decode_request(request) {
            Ok(r) => self.handle_plain(r).await,
            Err(e) => Response::Error {
                error: WireError::from_report(e.report(), None),
            },
        };
        encode_response(&response)
    }

    /// The channel boundary: message 1 in, message 2 out (see
    /// `coffer_vault_proto::channel`). Every answer, errors included, is
    /// inside message 2 (`Ok`). Only a message 1 that does not open (not for
    /// this fleet's channel key, altered, not a channel message) gets a plain
    /// error (`Err`, an encoded response): there is no channel to answer in.
    /// Never panics.
    pub async fn handle_channel(&self, message: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
        let Some(key) = self.core.secrets.channel() else {
            return Err(encode_response(&error_response(&HsmError::NoChannelKey)));
        };
        let accepted = match channel::accept(key, self.core.secrets.fleet_id(), message) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(code = e.code(), "channel message refused");
                return Err(encode_response(&Response::Error {
                    error: WireError::from_report(e.report(), None),
                }));
            }
        };
        let response = match accepted.request {
            Err(e) => {
                tracing::info!(
                    request = "malformed",
                    code = e.code(),
                    "hsm request refused"
                );
                Response::Error {
                    error: WireError::from_report(e.report(), None),
                }
            }
            Ok(req) => {
                let name = req.request.name();
                let at = now();
                let outcome = match check_time(req.time, at) {
                    Ok(()) => match req.request {
                        Request::Status { .. } => {
                            self.dispatch(req.request, accepted.request_id, "").await
                        }
                        // Every account request: a valid ticket first, or
                        // nothing at all happens (no commit, no evaluation).
                        _ => match self.ticket_account(req.ticket.as_ref(), at) {
                            Ok(account) => {
                                self.dispatch(req.request, accepted.request_id, &account)
                                    .await
                            }
                            Err(e) => Err(e),
                        },
                    },
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(r) => {
                        tracing::debug!(request = name, "hsm request served");
                        r
                    }
                    Err(e) => {
                        tracing::info!(request = name, code = e.code(), "hsm request refused");
                        error_response(&e)
                    }
                }
            }
        };
        accepted.handshake.respond(&response).map_err(|e| {
            tracing::warn!(code = e.code(), "hsm answer does not fit the channel");
            encode_response(&Response::Error {
                error: WireError::from_report(
                    HsmError::Internal("the answer does not fit the channel".into()).report(),
                    None,
                ),
            })
        })
    }

    async fn commit(&self, cmd: Cmd) -> Result<Outcome, HsmError> {
        self.core.commit(cmd).await
    }

    fn seal<T: Serialize>(&self, label: &str, t: &T) -> Bytes {
        let json = Zeroizing::new(serde_json::to_vec(t).unwrap_or_default());
        Bytes(self.core.secrets.sealer().seal(label, &json))
    }

    fn open<T: for<'de> Deserialize<'de> + Expiring>(
        &self,
        label: &str,
        b: &Bytes,
        err: HsmError,
    ) -> Result<T, HsmError> {
        let json = self
            .core
            .secrets
            .sealer()
            .open(label, &b.0)
            .ok_or(err.clone())?;
        let t: T = serde_json::from_slice(&json).map_err(|_| err.clone())?;
        if t.expires() < now() {
            return Err(err);
        }
        Ok(t)
    }

    /// One request that came through the channel; `request_id` identifies
    /// its message 1 (a replay has the same); `account` is the account its
    /// ticket proved (empty for `status`, which needs none): every account
    /// request must be for exactly that account, or it is refused like a
    /// request without a ticket.
    async fn dispatch(
        &self,
        request: Request,
        request_id: RequestId,
        account: &str,
    ) -> Result<Response, HsmError> {
        let limit = self.guess_limit();
        match request {
            Request::Status { .. } => Ok(Response::Status {
                status: self.status_info(false).await,
            }),
            Request::RegisterStart { user, request } => {
                same_account(account, &user)?;
                let req = RegistrationRequest::<Suite>::deserialize(&request.0)
                    .map_err(|_| HsmError::BadOpaqueMessage)?;
                let mut id = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut id);
                let start = ServerRegistration::<Suite>::start(
                    self.core.secrets.setup(),
                    req,
                    &credential_id(&user, &id),
                )
                .map_err(|_| HsmError::BadOpaqueMessage)?;
                let token = self.seal(
                    REG_TOKEN,
                    &RegToken {
                        user,
                        id,
                        expires: now() + TOKEN_LIFETIME_SECS,
                    },
                );
                Ok(Response::RegisterStarted {
                    response: Bytes(start.message.serialize().to_vec()),
                    token,
                    fleet: self.fleet(false),
                })
            }
            Request::RegisterFinish {
                user,
                token,
                upload,
                wrapped_key,
            } => {
                same_account(account, &user)?;
                let t: RegToken = self.open(REG_TOKEN, &token, HsmError::BadToken)?;
                if t.user != user {
                    return Err(HsmError::BadToken);
                }
                let record = self.new_record(t.id, upload, wrapped_key)?;
                match self.commit(Cmd::Register { user, record }).await? {
                    Outcome::Registered => Ok(Response::Registered {}),
                    Outcome::AlreadyRegistered => Err(HsmError::AlreadyRegistered),
                    Outcome::IdReused => Err(HsmError::BadToken),
                    o => Err(unexpected(o)),
                }
            }
            Request::LoginStart { user, request } => {
                same_account(account, &user)?;
                let req = CredentialRequest::<Suite>::deserialize(&request.0)
                    .map_err(|_| HsmError::BadOpaqueMessage)?;
                // Count the attempt through a majority BEFORE evaluating anything.
                let at = now();
                let (file, attempt, remaining, cid) = match self
                    .commit(Cmd::BeginAttempt {
                        user: user.clone(),
                        request: Some(request_id),
                        at: Some(at),
                    })
                    .await?
                {
                    Outcome::Attempt {
                        id,
                        seq,
                        used,
                        upload,
                    } => {
                        let file =
                            ServerRegistration::<Suite>::deserialize(&upload.0).map_err(|_| {
                                HsmError::Internal("a stored password file is malformed".into())
                            })?;
                        (
                            Some(file),
                            Attempt::Record(id, seq),
                            limit.saturating_sub(used),
                            credential_id(&user, &id),
                        )
                    }
                    // An unknown account: opaque-ke's dummy response, same shape and flow.
                    Outcome::Ghost { used, seq } => (
                        None,
                        Attempt::Ghost(seq),
                        limit.saturating_sub(used),
                        credential_id(&user, &[0; 16]),
                    ),
                    Outcome::DestroyedNow => {
                        self.tell_failed(&user, at, 0, true);
                        return Err(HsmError::Destroyed);
                    }
                    Outcome::Destroyed => return Err(HsmError::Destroyed),
                    // The same message 1 again (a host or network replay):
                    // nothing was counted, nothing is evaluated.
                    Outcome::Replayed => return Err(HsmError::ReplayedRequest),
                    // Too soon after the last wrong guesses: nothing counted.
                    Outcome::Throttled {
                        retry_at,
                        remaining,
                    } => {
                        return Err(HsmError::Throttled {
                            retry_at,
                            wait_secs: retry_at.saturating_sub(at),
                            attempts_remaining: remaining,
                        })
                    }
                    o => return Err(unexpected(o)),
                };
                let start = ServerLogin::start(
                    &mut rand::rngs::OsRng,
                    self.core.secrets.setup(),
                    file,
                    req,
                    &cid,
                    ServerLoginParameters::default(),
                )
                .map_err(|_| HsmError::BadOpaqueMessage)?;
                self.watch(&user, attempt);
                let token = self.seal(
                    LOGIN_TOKEN,
                    &LoginToken {
                        user,
                        attempt: encode_attempt(attempt),
                        state: Bytes(start.state.serialize().to_vec()),
                        expires: now() + TOKEN_LIFETIME_SECS,
                    },
                );
                Ok(Response::LoginStarted {
                    response: Bytes(start.message.serialize().to_vec()),
                    token,
                    attempts_remaining: remaining,
                    fleet: self.fleet(false),
                })
            }
            Request::LoginFinish {
                token,
                finalization,
            } => {
                let t: LoginToken = self.open(LOGIN_TOKEN, &token, HsmError::BadToken)?;
                same_account(account, &t.user)?;
                let fin = CredentialFinalization::<Suite>::deserialize(&finalization.0)
                    .map_err(|_| HsmError::BadOpaqueMessage)?;
                let attempt = decode_attempt(&t.attempt)?;
                let Attempt::Record(id, seq) = attempt else {
                    // A dummy login cannot succeed: count it as failed, as a real one.
                    return self.failed(&t.user, attempt).await;
                };
                let state = ServerLogin::<Suite>::deserialize(&t.state.0)
                    .map_err(|_| HsmError::BadToken)?;
                let Ok(done) = state.finish(fin, ServerLoginParameters::default()) else {
                    return self.failed(&t.user, attempt).await;
                };
                let session_key = Zeroizing::new(done.session_key.to_vec());
                match self
                    .commit(Cmd::Succeed {
                        user: t.user.clone(),
                        id,
                        seq,
                    })
                    .await?
                {
                    Outcome::Succeeded {
                        wrapped,
                        wrong,
                        wrong_times,
                    } => {
                        self.ended(&t.user, seq);
                        let released = crypto::seal_release(&session_key, &t.user, &wrapped.0);
                        let auth = self.seal(
                            AUTH_TOKEN,
                            &AuthToken {
                                user: t.user.clone(),
                                id,
                                seq,
                                session_key: Bytes(session_key.to_vec()),
                                expires: now() + TOKEN_LIFETIME_SECS,
                            },
                        );
                        Ok(Response::LoginFinished {
                            released: Bytes(released),
                            auth,
                            attempts_remaining: limit,
                            wrong_guesses: wrong,
                            wrong_guess_times: wrong_times,
                        })
                    }
                    Outcome::Stale => Err(HsmError::StaleAttempt),
                    Outcome::Destroyed => Err(HsmError::Destroyed),
                    o => Err(unexpected(o)),
                }
            }
            Request::LoginAbort { token } => {
                let t: LoginToken = self.open(LOGIN_TOKEN, &token, HsmError::BadToken)?;
                same_account(account, &t.user)?;
                let attempt = decode_attempt(&t.attempt)?;
                let (remaining, destroyed) = self.fail(&t.user, attempt).await?;
                Ok(Response::LoginAborted {
                    attempts_remaining: remaining,
                    destroyed,
                })
            }
            Request::Change {
                auth,
                token,
                upload,
                wrapped_key,
                mac,
            } => {
                let a: AuthToken = self.open(AUTH_TOKEN, &auth, HsmError::BadAuthorisation)?;
                same_account(account, &a.user)?;
                if !crypto::check_authz_mac(
                    &a.session_key.0,
                    "change",
                    &[&auth.0, &token.0, &upload.0, &wrapped_key.0],
                    &mac.0,
                ) {
                    return Err(HsmError::BadAuthorisation);
                }
                let t: RegToken = self.open(REG_TOKEN, &token, HsmError::BadToken)?;
                if t.user != a.user {
                    return Err(HsmError::BadToken);
                }
                let record = self.new_record(t.id, upload, wrapped_key)?;
                match self
                    .commit(Cmd::Replace {
                        user: a.user.clone(),
                        id: a.id,
                        seq: a.seq,
                        record,
                    })
                    .await?
                {
                    Outcome::Replaced => Ok(Response::Changed {}),
                    Outcome::Stale => Err(HsmError::BadAuthorisation),
                    Outcome::IdReused => Err(HsmError::BadToken),
                    Outcome::Destroyed => Err(HsmError::Destroyed),
                    o => Err(unexpected(o)),
                }
            }
            Request::Delete { auth, mac } => {
                let a: AuthToken = self.open(AUTH_TOKEN, &auth, HsmError::BadAuthorisation)?;
                same_account(account, &a.user)?;
                if !crypto::check_authz_mac(&a.session_key.0, "delete", &[&auth.0], &mac.0) {
                    return Err(HsmError::BadAuthorisation);
                }
                match self
                    .commit(Cmd::Delete {
                        user: a.user.clone(),
                        id: a.id,
                        seq: a.seq,
                    })
                    .await?
                {
                    Outcome::Deleted => Ok(Response::Deleted {}),
                    Outcome::Stale => Err(HsmError::BadAuthorisation),
                    Outcome::Destroyed => Err(HsmError::Destroyed),
                    o => Err(unexpected(o)),
                }
            }
        }
    }

    /// Records that `attempt` failed (the client said so, or its
    /// finalization did not verify); tells the owner the first time.
    /// Returns (attempts remaining, destroyed).
    async fn fail(&self, user: &str, attempt: Attempt) -> Result<(u32, bool), HsmError> {
        let cmd = match attempt {
            Attempt::Record(id, seq) => Cmd::Fail {
                user: user.to_string(),
                id,
                seq: Some(seq),
            },
            Attempt::Ghost(seq) => Cmd::GhostFail {
                user: user.to_string(),
                seq: Some(seq),
            },
        };
        match self.commit(cmd).await? {
            Outcome::Failed {
                remaining,
                destroyed,
                first,
            } => {
                self.ended(user, attempt.seq());
                if first {
                    self.tell_failed(user, now(), remaining, destroyed);
                }
                Ok((remaining, destroyed))
            }
            Outcome::Stale => Err(HsmError::StaleAttempt),
            o => Err(unexpected(o)),
        }
    }

    /// [`Hsm::fail`] as the error a failed `login_finish` answers.
    async fn failed(&self, user: &str, attempt: Attempt) -> Result<Response, HsmError> {
        match self.fail(user, attempt).await? {
            (_, true) => Err(HsmError::Destroyed),
            (remaining, false) => Err(HsmError::WrongCode {
                attempts_remaining: remaining,
            }),
        }
    }

    fn new_record(
        &self,
        id: RecordId,
        upload: Bytes,
        wrapped: Bytes,
    ) -> Result<NewRecord, HsmError> {
        RegistrationUpload::<Suite>::deserialize(&upload.0)
            .map_err(|_| HsmError::BadOpaqueMessage)?;
        if wrapped.0.len() != crypto::WRAPPED_KEY_LEN {
            return Err(HsmError::Malformed(
                "the wrapped key has the wrong length".into(),
            ));
        }
        Ok(NewRecord {
            id,
            upload,
            wrapped,
        })
    }
}

fn error_response(e: &HsmError) -> Response {
    let mut error = WireError::from_report(e.report(), e.attempts_remaining());
    if let HsmError::Throttled { retry_at, .. } = e {
        error.retry_at = Some(*retry_at);
    }
    Response::Error { error }
}

/// A request for `user` with a ticket for `account`: refused, like a
/// request without a ticket, unless they are the same account.
fn same_account(account: &str, user: &str) -> Result<(), HsmError> {
    if bool::from(account.as_bytes().ct_eq(user.as_bytes())) {
        Ok(())
    } else {
        Err(HsmError::NoTicket)
    }
}

fn notice_kind(remaining: u32, destroyed: bool) -> NoticeKind {
    if destroyed {
        NoticeKind::Destroyed
    } else {
        NoticeKind::WrongGuess {
            attempts_remaining: remaining,
        }
    }
}

/// A request's time must be within [`REQUEST_WINDOW_SECS`] of the HSM's
/// clock: a message 1 captured earlier is refused whatever it asks.
fn check_time(request_time: u64, hsm_time: u64) -> Result<(), HsmError> {
    let skew = request_time.abs_diff(hsm_time);
    if skew > REQUEST_WINDOW_SECS {
        return Err(HsmError::StaleRequest { skew_secs: skew });
    }
    Ok(())
}

impl From<ProtoError> for HsmError {
    fn from(e: ProtoError) -> Self {
        HsmError::Malformed(e.to_string())
    }
}

trait Expiring {
    fn expires(&self) -> u64;
}
impl Expiring for RegToken {
    fn expires(&self) -> u64 {
        self.expires
    }
}
impl Expiring for LoginToken {
    fn expires(&self) -> u64 {
        self.expires
    }
}
impl Expiring for AuthToken {
    fn expires(&self) -> u64 {
        self.expires
    }
}

fn unexpected(o: Outcome) -> HsmError {
    HsmError::Internal(format!(
        "unexpected state-machine outcome {}",
        outcome_name(&o)
    ))
}

fn cmd_name(c: &Cmd) -> &'static str {
    match c {
        Cmd::Register { .. } => "register",
        Cmd::BeginAttempt { .. } => "begin_attempt",
        Cmd::Fail { .. } => "fail",
        Cmd::Succeed { .. } => "succeed",
        Cmd::Replace { .. } => "replace",
        Cmd::Delete { .. } => "delete",
        Cmd::Probe => "probe",
        Cmd::GhostFail { .. } => "ghost_fail",
        Cmd::Settle { .. } => "settle",
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Registered => "registered",
        Outcome::AlreadyRegistered => "already_registered",
        Outcome::IdReused => "id_reused",
        Outcome::Attempt { .. } => "attempt",
        Outcome::Ghost { .. } => "ghost",
        Outcome::Destroyed => "destroyed",
        Outcome::Failed { .. } => "failed",
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Stale => "stale",
        Outcome::Replaced => "replaced",
        Outcome::Deleted => "deleted",
        Outcome::Probed => "probed",
        Outcome::Replayed => "replayed",
        Outcome::Rejected => "rejected",
        Outcome::DestroyedNow => "destroyed_now",
        Outcome::Throttled { .. } => "throttled",
        Outcome::Settled { .. } => "settled",
    }
}
