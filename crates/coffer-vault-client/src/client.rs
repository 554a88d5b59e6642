use std::sync::Arc;
use std::time::Duration;

use coffer_error::ErrorKind;
use coffer_vault_proto::account::{
    decode_account_response, normalize_account, parse_mail_code, AccountResponse, AccountTicket,
    ChallengeRequest, TicketHolder, TicketProof, VerifyRequest,
};
use coffer_vault_proto::channel::{ChannelRequest, ClientHandshake};
use coffer_vault_proto::{
    check_user_id, crypto, decode_response, encode_request, ksf, Bytes, FleetInfo, ProtoError,
    Request, Response, StatusInfo, Suite,
};
use opaque_ke::errors::ProtocolError;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use std::path::PathBuf;

use crate::{
    BoxFuture, FleetKeyValidator, HttpTransport, Route, Transport, ValidatedFleet, VaultError,
};

/// What a successful recovery gives back.
pub struct Recovered {
    /// The backup key K.
    pub key: SecretBox<[u8; 32]>,
    /// How many login attempts since the previous successful one did not
    /// succeed (wrong codes, and logins abandoned after the code was sent):
    /// the HSMs' authenticated count. Not zero: someone (perhaps the owner)
    /// was guessing, and the app must say so.
    pub wrong_guesses: u32,
    /// When the last of them began (Unix seconds, the vault's clock,
    /// oldest first; at most 16).
    pub wrong_guess_times: Vec<u64>,
    auth: Bytes,
    session_key: Zeroizing<Vec<u8>>,
}

/// Where a client gets an account ticket when it holds none for an
/// account: e.g. the embedded demo vault's outbox, or a test's own ticket
/// key. (A person's client gets its tickets with
/// [`VaultClient::send_mail_code`] and [`VaultClient::verify_mail_code`].)
pub trait TicketSource: Send + Sync {
    /// A ticket for `account` (normalised) in the fleet `fleet_id`, held by
    /// whoever knows the secret behind `holder`.
    fn ticket<'a>(
        &'a self,
        fleet_id: &'a str,
        account: &'a str,
        holder: [u8; 32],
    ) -> BoxFuture<'a, Result<AccountTicket, VaultError>>;
}

/// A [`crate::TicketSource`] that reads its codes from an
/// outbox file: it asks for a code through `transport` (in-process or
/// HTTP), reads it from the outbox and trades it for a ticket. For the
/// local demo fleet (the app) and tests, whose mail goes to a file.
pub struct OutboxTickets {
    pub transport: Arc<dyn crate::Transport>,
    pub outbox: PathBuf,
}

impl crate::TicketSource for OutboxTickets {
    fn ticket<'a>(
        &'a self,
        _fleet_id: &'a str,
        account: &'a str,
        holder: [u8; 32],
    ) -> crate::BoxFuture<'a, Result<AccountTicket, crate::VaultError>> {
        use coffer_vault_proto::account::outbox_code;
        Box::pin(async move {
            let call = |route: Route, body: Vec<u8>| async move {
                let bytes = self
                    .transport
                    .call(route, body)
                    .await
                    .map_err(|e| VaultError::Unreachable(e.0))?;
                match decode_account_response(&bytes) {
                    Ok(AccountResponse::Error { error }) => Err(VaultError::Vault(error)),
                    Ok(r) => Ok(r),
                    Err(e) => Err(VaultError::Protocol(e.to_string())),
                }
            };
            let v = coffer_vault_proto::PROTOCOL_VERSION;
            let body = serde_json::to_vec(&ChallengeRequest {
                v,
                account: account.to_string(),
            })
            .map_err(|e| VaultError::InvalidInput(e.to_string()))?;
            call(Route::AccountChallenge, body).await?;
            let code = outbox_code(&self.outbox, account).ok_or_else(|| {
                VaultError::Unreachable(format!(
                    "no code for {account} in the outbox {}",
                    self.outbox.display()
                ))
            })?;
            let req = VerifyRequest {
                v,
                account: account.to_string(),
                code: code.to_string(),
                holder: coffer_vault_proto::Bytes(holder.to_vec()),
            };
            let body = Zeroizing::new(
                serde_json::to_vec(&req).map_err(|e| VaultError::InvalidInput(e.to_string()))?,
            );
            match call(Route::AccountVerify, body.to_vec()).await? {
                AccountResponse::Ticket { ticket } => Ok(ticket),
                _ => Err(VaultError::Protocol("expected a ticket".into())),
            }
        })
    }
}

/// The account tickets a client holds (in memory only), shareable between
/// the clients of one vault (`VaultClient::with_tickets`): e.g. the app's
/// connection to a vault it is about to move a code to.
#[derive(Clone, Default)]
pub struct Tickets(Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Held>>>>);

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tickets(<redacted>)")
    }
}

/// A ticket this client holds, with its secret.
struct Held {
    ticket: AccountTicket,
    holder: TicketHolder,
}

/// Tickets are used until this long before they expire.
const TICKET_MARGIN_SECS: u64 = 60;

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recovered(<redacted>)")
    }
}

/// The fleet's status and whether its key validated.
#[derive(Debug, Clone)]
pub struct VaultStatus {
    /// When the fleet validated: the HSMs' own answer through the channel
    /// (guess limit, nodes, quorum, KSF), with the validated fleet identity.
    /// Otherwise the host's plain bootstrap answer, for diagnosis only.
    pub info: StatusInfo,
    /// `Ok` with the validated fleet, or why validation failed.
    pub fleet: Result<ValidatedFleet, String>,
    /// Whether `info` came from the HSMs through the channel.
    pub authenticated: bool,
}

/// A vault client over some transport.
#[derive(Clone)]
pub struct VaultClient {
    transport: Arc<dyn Transport>,
    validator: Arc<dyn FleetKeyValidator>,
    /// The fleet validated by the first preflight (no session before it).
    preflight: Arc<std::sync::Mutex<Option<ValidatedFleet>>>,
    /// Account tickets held, by normalised account.
    tickets: Tickets,
    source: Option<Arc<dyn TicketSource>>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultClient")
    }
}

fn check_code(code: &SecretString) -> Result<(), VaultError> {
    let c = code.expose_secret();
    if c.is_empty() || c.len() > 1024 {
        return Err(VaultError::InvalidInput(
            "the recovery code must be 1 to 1024 bytes".into(),
        ));
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), VaultError> {
    check_user_id(user).map_err(|e| VaultError::InvalidInput(e.to_string()))
}

/// The account as the vault knows it ([`normalize_account`]).
fn account_of(user: &str) -> Result<String, VaultError> {
    check_user(user.trim())?;
    normalize_account(user).map_err(|e| VaultError::InvalidInput(e.to_string()))
}

fn protocol(what: &str) -> VaultError {
    VaultError::Protocol(what.to_string())
}

impl VaultClient {
    pub fn new(transport: Arc<dyn Transport>, validator: Arc<dyn FleetKeyValidator>) -> Self {
        VaultClient {
            transport,
            validator,
            preflight: Default::default(),
            tickets: Default::default(),
            source: None,
        }
    }

    /// This client, holding its tickets in `tickets` (shared with the
    /// clients that got it too). Only for clients of one vault: a ticket
    /// names its fleet, and another fleet's HSMs refuse it.
    pub fn with_tickets(mut self, tickets: Tickets) -> Self {
        self.tickets = tickets;
        self
    }

    /// This client, getting the tickets it does not hold from `source`.
    pub fn with_ticket_source(mut self, source: Arc<dyn TicketSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Asks the vault's account service to mail a code to `account` (an
    /// e-mail address). The answer is the same whether or not the address
    /// has a vault record; a code arrives only if the address takes mail.
    pub async fn send_mail_code(&self, account: &str) -> Result<(), VaultError> {
        let account = account_of(account)?;
        // Nothing about the account goes to a vault whose keys do not validate.
        self.ensure_validated().await?;
        let body = serde_json::to_vec(&ChallengeRequest {
            v: coffer_vault_proto::PROTOCOL_VERSION,
            account,
        })
        .map_err(|e| VaultError::InvalidInput(e.to_string()))?;
        match self.account_call(Route::AccountChallenge, body).await? {
            AccountResponse::ChallengeSent { .. } => Ok(()),
            _ => Err(protocol("expected challenge_sent")),
        }
    }

    /// Trades the code from the newest mail for an account ticket, held by
    /// this client (in memory, for its 30 minutes) for every following
    /// request of `account`. The ticket is bound to a secret of this
    /// client's that goes only inside the channel to the HSMs.
    pub async fn verify_mail_code(
        &self,
        account: &str,
        code: &SecretString,
    ) -> Result<(), VaultError> {
        let account = account_of(account)?;
        self.ensure_validated().await?;
        let code = parse_mail_code(code.expose_secret()).ok_or_else(|| {
            VaultError::InvalidInput("the code from the mail must be 8 digits".into())
        })?;
        let holder = TicketHolder::new();
        let req = VerifyRequest {
            v: coffer_vault_proto::PROTOCOL_VERSION,
            account: account.clone(),
            code: code.to_string(),
            holder: Bytes(holder.commitment().to_vec()),
        };
        let body = Zeroizing::new(
            serde_json::to_vec(&req).map_err(|e| VaultError::InvalidInput(e.to_string()))?,
        );
        match self
            .account_call(Route::AccountVerify, body.to_vec())
            .await?
        {
            AccountResponse::Ticket { ticket } => self.hold(&account, ticket, holder),
            _ => Err(protocol("expected a ticket")),
        }
    }

    /// Validates the fleet (once per client): what every account operation
    /// does first, so that nothing about an account, not even its address,
    /// goes to a vault whose keys do not validate.
    pub async fn verify_fleet(&self) -> Result<ValidatedFleet, VaultError> {
        self.ensure_validated().await
    }

    /// Whether this client holds a usable ticket for `account`.
    pub fn has_ticket(&self, account: &str) -> bool {
        account_of(account)
            .ok()
            .and_then(|a| self.held(&a))
            .is_some()
    }

    fn hold(
        &self,
        account: &str,
        ticket: AccountTicket,
        holder: TicketHolder,
    ) -> Result<(), VaultError> {
        if ticket.account != account
            || !bool::from(ticket.holder.0.ct_eq(&holder.commitment()))
            || ticket.expires <= unix_now() + TICKET_MARGIN_SECS
        {
            return Err(protocol(
                "the account service sent a ticket for another account or holder, or an expired one",
            ));
        }
        if let Ok(mut g) = self.tickets.0.lock() {
            g.insert(account.to_string(), Arc::new(Held { ticket, holder }));
        }
        Ok(())
    }

    fn held(&self, account: &str) -> Option<Arc<Held>> {
        let g = self.tickets.0.lock().ok()?;
        let h = g.get(account)?;
        (h.ticket.expires > unix_now() + TICKET_MARGIN_SECS).then(|| h.clone())
    }

    /// The proof of `account` for a request: a held ticket, or one from the
    /// ticket source.
    async fn proof(
        &self,
        fleet: &ValidatedFleet,
        account: &str,
    ) -> Result<TicketProof, VaultError> {
        if let Some(h) = self.held(account) {
            return Ok(h.holder.prove(&h.ticket));
        }
        let Some(source) = &self.source else {
            return Err(VaultError::NotVerified);
        };
        let holder = TicketHolder::new();
        let ticket = source
            .ticket(&fleet.fleet_id, account, holder.commitment())
            .await?;
        self.hold(account, ticket, holder)?;
        let h = self.held(account).ok_or(VaultError::NotVerified)?;
        Ok(h.holder.prove(&h.ticket))
    }

    /// One request to the account service (plain JSON: the service is the
    /// host's, not the HSMs'; what it says is checked where it matters).
    async fn account_call(
        &self,
        route: Route,
        body: Vec<u8>,
    ) -> Result<AccountResponse, VaultError> {
        let bytes = self
            .transport
            .call(route, body)
            .await
            .map_err(|e| VaultError::Unreachable(e.0))?;
        match decode_account_response(&bytes) {
            Ok(AccountResponse::Error { error }) => Err(VaultError::from_wire(error)),
            Ok(r) => Ok(r),
            Err(_) => Err(outside_the_channel(&bytes)),
        }
    }

    /// Validates the fleet (from the bootstrap `status`) before the first
    /// session of this client, so that nothing about an account, not even
    /// its id, goes to a vault whose keys do not validate; returns the
    /// validated fleet, whose channel key every request is encrypted to.
    async fn ensure_validated(&self) -> Result<ValidatedFleet, VaultError> {
        if let Some(v) = self.preflight.lock().ok().and_then(|g| g.clone()) {
            return Ok(v);
        }
        let fleet = self.bootstrap_status().await?.fleet;
        let v = self.validate(&fleet)?;
        if let Ok(mut g) = self.preflight.lock() {
            *g = Some(v.clone());
        }
        Ok(v)
    }

    /// A client over HTTP to `url`, or to several nodes' URLs separated by
    /// commas (30 s timeout per request).
    pub fn http(url: &str, validator: Arc<dyn FleetKeyValidator>) -> Result<Self, VaultError> {
        let urls: Vec<String> = url.split(',').map(str::to_string).collect();
        let t = HttpTransport::with_urls(&urls, Duration::from_secs(30))
            .map_err(|e| VaultError::InvalidInput(e.to_string()))?;
        Ok(Self::new(Arc::new(t), validator))
    }

    /// The plain `status`, outside the channel: the fleet's identity and
    /// keys as the host presents them, to be validated. Nothing else in it
    /// is believed.
    async fn bootstrap_status(&self) -> Result<StatusInfo, VaultError> {
        let req = Request::Status {
            known_log_size: self.validator.known_log_size(),
        };
        let bytes = self
            .transport
            .call(Route::Status, encode_request(&req))
            .await
            .map_err(|e| VaultError::Unreachable(e.0))?;
        match decode_response(&bytes) {
            Ok(Response::Status { status }) => Ok(status),
            Ok(Response::Error { error }) => Err(VaultError::Unreachable(format!(
                "the vault host answered the status with {} ({})",
                error.code, error.message
            ))),
            Ok(_) => Err(protocol("expected a status")),
            Err(ProtoError::UnsupportedVersion(v)) => Err(VaultError::Protocol(format!(
                "the vault speaks protocol version {v}; this Coffer speaks version 2: update the older side"
            ))),
            Err(e) => Err(VaultError::Protocol(format!(
                "{e} (a vault older than protocol v2 has no /v2/status)"
            ))),
        }
    }

    /// One request through the channel to the validated fleet's HSMs. Only
    /// an authentic message 2 for this very request is believed: errors and
    /// counts included. Anything else is [`VaultError::ChannelFailed`] (or
    /// `Unreachable` when the host says it could not deliver), never acted on.
    async fn call(&self, fleet: &ValidatedFleet, req: Request) -> Result<Response, VaultError> {
        self.call_with(fleet, req, None).await
    }

    /// [`VaultClient::call`] with the account's ticket inside the channel.
    async fn call_as(
        &self,
        fleet: &ValidatedFleet,
        proof: &TicketProof,
        req: Request,
    ) -> Result<Response, VaultError> {
        self.call_with(fleet, req, Some(proof)).await
    }

    async fn call_with(
        &self,
        fleet: &ValidatedFleet,
        req: Request,
        ticket: Option<&TicketProof>,
    ) -> Result<Response, VaultError> {
        let (handshake, message) = ClientHandshake::start_request(
            &fleet.channel_public_key,
            &fleet.fleet_id,
            &ChannelRequest {
                time: unix_now(),
                ticket: ticket.cloned(),
                request: req,
            },
        )
        .map_err(|e| VaultError::InvalidInput(e.to_string()))?;
        let bytes = self
            .transport
            .call(Route::Channel, message)
            .await
            .map_err(|e| VaultError::Unreachable(e.0))?;
        match handshake.finish(&bytes) {
            Ok(Response::Error { error }) => Err(VaultError::from_wire(error)),
            Ok(r) => Ok(r),
            Err(ProtoError::Channel) => Err(outside_the_channel(&bytes)),
            // Authentic, but not a response this build understands.
            Err(e) => Err(VaultError::Protocol(e.to_string())),
        }
    }

    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, VaultError> {
        let v = self
            .validator
            .validate(fleet)
            .map_err(VaultError::FleetNotVerified)?;
        if !bool::from(v.server_public_key.ct_eq(&fleet.server_public_key.0)) {
            return Err(VaultError::FleetNotVerified(
                "the validated key differs from the key presented".into(),
            ));
        }
        Ok(v)
    }

    /// The fleet's status (says nothing about any account). The bootstrap
    /// status is validated; if it validates, the status is asked again
    /// through the channel, so that the guess limit, nodes, quorum and KSF
    /// shown are the HSMs' own, not the host's.
    pub async fn status(&self) -> Result<VaultStatus, VaultError> {
        let plain = self.bootstrap_status().await?;
        let fleet = match self.validate(&plain.fleet) {
            Ok(v) => v,
            Err(e) => {
                return Ok(VaultStatus {
                    info: plain,
                    fleet: Err(e.to_string()),
                    authenticated: false,
                })
            }
        };
        let inside = match self
            .call(
                &fleet,
                Request::Status {
                    known_log_size: None,
                },
            )
            .await?
        {
            Response::Status { status } => status,
            _ => return Err(protocol("expected a status")),
        };
        if !bool::from(
            inside
                .fleet
                .server_public_key
                .0
                .ct_eq(&fleet.server_public_key),
        ) || inside.fleet.fleet_id != fleet.fleet_id
        {
            return Err(VaultError::FleetNotVerified(
                "the HSMs report another fleet than the one validated".into(),
            ));
        }
        Ok(VaultStatus {
            info: StatusInfo {
                // The validated identity, with the bundle it was validated from.
                fleet: plain.fleet,
                ..inside
            },
            fleet: Ok(fleet),
            authenticated: true,
        })
    }

    /// Registers `code` as the recovery code protecting `key` for `user`.
    pub async fn register(
        &self,
        user: &str,
        code: &SecretString,
        key: &SecretBox<[u8; 32]>,
    ) -> Result<(), VaultError> {
        let user = &account_of(user)?;
        check_code(code)?;
        let fleet = self.ensure_validated().await?;
        let proof = self.proof(&fleet, user).await?;
        let (token, upload, wrapped) = self
            .register_upload(&fleet, &proof, user, code, key)
            .await?;
        match self
            .call_as(
                &fleet,
                &proof,
                Request::RegisterFinish {
                    user: user.into(),
                    token,
                    upload,
                    wrapped_key: wrapped,
                },
            )
            .await?
        {
            Response::Registered {} => Ok(()),
            _ => Err(protocol("expected registered")),
        }
    }

    /// OPAQUE registration up to the upload: returns (token, upload, wrapped
    /// K). The registration response comes from the HSMs through the channel
    /// (authenticated): a host cannot answer it with its own OPRF key.
    async fn register_upload(
        &self,
        fleet: &ValidatedFleet,
        proof: &TicketProof,
        user: &str,
        code: &SecretString,
        key: &SecretBox<[u8; 32]>,
    ) -> Result<(Bytes, Bytes, Bytes), VaultError> {
        let mut rng = rand::rngs::OsRng;
        let start =
            ClientRegistration::<Suite>::start(&mut rng, code.expose_secret().as_bytes())
                .map_err(|_| VaultError::InvalidInput("the recovery code cannot be used".into()))?;
        let resp = self
            .call_as(
                fleet,
                proof,
                Request::RegisterStart {
                    user: user.into(),
                    request: Bytes(start.message.serialize().to_vec()),
                },
            )
            .await?;
        let Response::RegisterStarted {
            response, token, ..
        } = resp
        else {
            return Err(protocol("expected registration response"));
        };
        let response = RegistrationResponse::<Suite>::deserialize(&response.0)
            .map_err(|_| protocol("bad registration response"))?;
        let ksf = ksf();
        let finish = start
            .state
            .finish(
                &mut rng,
                code.expose_secret().as_bytes(),
                response,
                ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
            )
            .map_err(|_| protocol("the registration response was rejected"))?;
        // The server key inside the registration must be the validated fleet key.
        require_fleet_key(
            &finish.server_s_pk.serialize(),
            &fleet.server_public_key,
            "registration",
        )?;
        let export_key = Zeroizing::new(finish.export_key.to_vec());
        let wrapped = crypto::wrap_key(&export_key, user, key.expose_secret());
        Ok((
            token,
            Bytes(finish.message.serialize().to_vec()),
            Bytes(wrapped),
        ))
    }

    /// Recovers the backup key with `code`. A wrong code costs one attempt
    /// (the error says how many remain).
    pub async fn recover(&self, user: &str, code: &SecretString) -> Result<Recovered, VaultError> {
        let user = &account_of(user)?;
        check_code(code)?;
        let fleet = &self.ensure_validated().await?;
        let proof = &self.proof(fleet, user).await?;
        let mut rng = rand::rngs::OsRng;
        let start = ClientLogin::<Suite>::start(&mut rng, code.expose_secret().as_bytes())
            .map_err(|_| VaultError::InvalidInput("the recovery code cannot be used".into()))?;
        let resp = self
            .call_as(
                fleet,
                proof,
                Request::LoginStart {
                    user: user.into(),
                    request: Bytes(start.message.serialize().to_vec()),
                },
            )
            .await?;
        let Response::LoginStarted {
            response,
            token,
            attempts_remaining,
            ..
        } = resp
        else {
            return Err(protocol("expected a login response"));
        };
        let response = CredentialResponse::<Suite>::deserialize(&response.0)
            .map_err(|_| protocol("bad credential response"))?;
        let ksf = ksf();
        let finish = start.state.finish(
            &mut rng,
            code.expose_secret().as_bytes(),
            response,
            ClientLoginFinishParameters::new(None, Identifiers::default(), Some(&ksf)),
        );
        let finish = match finish {
            Ok(f) => f,
            Err(ProtocolError::InvalidLoginError) => {
                // Wrong code: report the failure so a last attempt destroys the record now.
                return match self
                    .call_as(fleet, proof, Request::LoginAbort { token })
                    .await
                {
                    Ok(Response::LoginAborted {
                        destroyed: true, ..
                    }) => Err(VaultError::Destroyed),
                    Ok(Response::LoginAborted {
                        attempts_remaining, ..
                    }) => Err(VaultError::WrongCode { attempts_remaining }),
                    Ok(_) => Err(protocol("expected login aborted")),
                    // The attempt was counted at login start whatever happens
                    // here (the count is the HSMs' authenticated one).
                    Err(VaultError::Unavailable | VaultError::Unreachable(_)) => {
                        Err(VaultError::WrongCode { attempts_remaining })
                    }
                    Err(e) => Err(e),
                };
            }
            Err(_) => return Err(protocol("the credential response was rejected")),
        };
        require_fleet_key(
            &finish.server_s_pk.serialize(),
            &fleet.server_public_key,
            "login",
        )?;
        let session_key = Zeroizing::new(finish.session_key.to_vec());
        let export_key = Zeroizing::new(finish.export_key.to_vec());
        let resp = self
            .call_as(
                fleet,
                proof,
                Request::LoginFinish {
                    token,
                    finalization: Bytes(finish.message.serialize().to_vec()),
                },
            )
            .await?;
        let Response::LoginFinished {
            released,
            auth,
            wrong_guesses,
            wrong_guess_times,
            ..
        } = resp
        else {
            return Err(protocol("expected login finished"));
        };
        let wrapped = Zeroizing::new(
            crypto::open_release(&session_key, user, &released.0)
                .map_err(|_| VaultError::ReleaseFailed)?,
        );
        let k = crypto::unwrap_key(&export_key, user, &wrapped)
            .map_err(|_| VaultError::ReleaseFailed)?;
        Ok(Recovered {
            key: SecretBox::new(Box::new(*k)),
            wrong_guesses,
            wrong_guess_times,
            auth,
            session_key,
        })
    }

    /// Changes the recovery code: a login with `old`, then a new registration
    /// of the same key under `new`, committed atomically (the old record
    /// stays valid until the new one is committed).
    pub async fn change(
        &self,
        user: &str,
        old: &SecretString,
        new: &SecretString,
    ) -> Result<(), VaultError> {
        check_code(new)?;
        let user = &account_of(user)?;
        let rec = self.recover(user, old).await?;
        let fleet = self.ensure_validated().await?;
        let proof = self.proof(&fleet, user).await?;
        let (token, upload, wrapped) = self
            .register_upload(&fleet, &proof, user, new, &rec.key)
            .await?;
        let mac = crypto::authz_mac(
            &rec.session_key,
            "change",
            &[&rec.auth.0, &token.0, &upload.0, &wrapped.0],
        );
        match self
            .call_as(
                &fleet,
                &proof,
                Request::Change {
                    auth: rec.auth.clone(),
                    token,
                    upload,
                    wrapped_key: wrapped,
                    mac: Bytes(mac),
                },
            )
            .await?
        {
            Response::Changed {} => Ok(()),
            _ => Err(protocol("expected changed")),
        }
    }

    /// Deletes the record (needs the current code).
    pub async fn delete(&self, user: &str, code: &SecretString) -> Result<(), VaultError> {
        let user = &account_of(user)?;
        let rec = self.recover(user, code).await?;
        let fleet = self.ensure_validated().await?;
        let proof = self.proof(&fleet, user).await?;
        let mac = crypto::authz_mac(&rec.session_key, "delete", &[&rec.auth.0]);
        match self
            .call_as(
                &fleet,
                &proof,
                Request::Delete {
                    auth: rec.auth.clone(),
                    mac: Bytes(mac),
                },
            )
            .await?
        {
            Response::Deleted {} => Ok(()),
            _ => Err(protocol("expected deleted")),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What an answer that is not an authentic message 2 means: nothing the
/// client acts on. The host saying it could not deliver (unavailable,
/// unreachable, timed out, too large) is reported as "unreachable"; any
/// other plain answer, or bytes that are not even that, is a failed
/// channel.
fn outside_the_channel(bytes: &[u8]) -> VaultError {
    match decode_response(bytes) {
        Ok(Response::Error { error })
            if matches!(
                error.kind,
                ErrorKind::VaultUnavailable | ErrorKind::VaultUnreachable
            ) || error.code == "CF-V050" =>
        {
            VaultError::Unreachable(format!(
                "the vault host reported {} ({}); not an answer of the HSMs",
                error.code, error.message
            ))
        }
        Ok(Response::Error { error }) => VaultError::ChannelFailed(format!(
            "an unauthenticated error outside the channel: {} ({})",
            error.code, error.message
        )),
        _ => VaultError::ChannelFailed(
            "the answer is not the fleet HSMs' authenticated answer to this request".into(),
        ),
    }
}

/// The server key inside an OPAQUE exchange must be the validated fleet key
/// (compared in constant time).
fn require_fleet_key(used: &[u8], validated: &[u8], exchange: &str) -> Result<(), VaultError> {
    if bool::from(used.ct_eq(validated)) {
        Ok(())
    } else {
        Err(VaultError::FleetNotVerified(format!(
            "the {exchange} used a key that is not the fleet key"
        )))
    }
}
