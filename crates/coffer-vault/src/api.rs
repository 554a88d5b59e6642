//! The vault's HTTP API for clients (vault protocol v2).
//!
//! * `POST /v2/status`: the bootstrap status, plain JSON, with the relayed
//!   validation blob;
//! * `POST /v2/vault`: a channel message 1 (`application/octet-stream`),
//!   relayed to the HSM unread; the HSM's answer (its message 2) comes back
//!   with HTTP 200 whatever it says, since errors are inside it;
//! * `POST /v1/vault`: refused with a v1 error telling old clients to update;
//! * `GET /v1/health`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use coffer_error::{ErrorKind, UserFacing};
use coffer_hsm::Hsm;
use coffer_vault_proto::{
    decode_request, encode_response, refuse_version_1, Request, Response, WireError,
    MAX_MESSAGE_LEN,
};
use tokio::sync::RwLock;

use crate::account::{AccountRoute, AccountService};
use crate::relay::BundleSource;
use crate::ServerError;

/// Path of the channel endpoint (binary Noise messages).
pub const VAULT_PATH: &str = "/v2/vault";
/// Path of the bootstrap status (plain JSON).
pub const STATUS_PATH: &str = "/v2/status";
/// The endpoint of vault protocol v1, now refused.
pub const V1_VAULT_PATH: &str = "/v1/vault";
/// The account service: mail a code.
pub const CHALLENGE_PATH: &str = "/v2/account/challenge";
/// The account service: a mailed code for a ticket.
pub const VERIFY_PATH: &str = "/v2/account/verify";
/// How long one client request may take, end to end.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the API finds the HSM (empty while the node is still starting).
pub type HsmSlot = Arc<RwLock<Option<Arc<Hsm>>>>;

/// The handlers' state: the HSM and, optionally, where the host gets the
/// validation blob it relays (see [`crate::relay`]).
#[derive(Clone)]
pub struct ApiState {
    pub hsm: HsmSlot,
    pub source: Option<Arc<dyn BundleSource>>,
    /// The host's account service (none: account routes answer `CF-V027`).
    pub accounts: Option<Arc<AccountService>>,
}

/// The client's address, as the limits layer puts it on each request.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The client API over an HSM slot: `POST /v2/status`, `POST /v2/vault`,
/// `POST /v1/vault` (refused), `GET /v1/health`.
pub fn router(hsm: HsmSlot) -> Router {
    router_with(hsm, None)
}

/// [`router`] that relays validation blobs from `source` in `status` answers.
pub fn router_with(hsm: HsmSlot, source: Option<Arc<dyn BundleSource>>) -> Router {
    router_full(hsm, source, None)
}

/// [`router_with`] with the host's account service on
/// `POST /v2/account/challenge` and `POST /v2/account/verify`.
pub fn router_full(
    hsm: HsmSlot,
    source: Option<Arc<dyn BundleSource>>,
    accounts: Option<Arc<AccountService>>,
) -> Router {
    Router::new()
        .route(VAULT_PATH, post(channel))
        .route(CHALLENGE_PATH, post(challenge))
        .route(VERIFY_PATH, post(verify))
        .route(STATUS_PATH, post(status))
        .route(V1_VAULT_PATH, post(version_1))
        .route("/v1/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_LEN))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT + Duration::from_secs(2),
        ))
        .with_state(ApiState {
            hsm,
            source,
            accounts,
        })
}

/// A router over a ready HSM.
pub fn router_for(hsm: Arc<Hsm>) -> Router {
    router(Arc::new(RwLock::new(Some(hsm))))
}

async fn health(State(st): State<ApiState>) -> StatusCode {
    if st.hsm.read().await.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::WrongRecoveryCode => StatusCode::FORBIDDEN,
        ErrorKind::RecordDestroyed => StatusCode::GONE,
        ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        ErrorKind::VaultUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::AccountNotVerified => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn answer(resp: &Response) -> HttpResponse {
    let status = match resp {
        Response::Error { error } => status_for(error.kind),
        _ => StatusCode::OK,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        encode_response(resp),
    )
        .into_response()
}

fn server_error(e: ServerError) -> Response {
    Response::Error {
        error: WireError::from_report(e.report(), None),
    }
}

/// The body, or the plain error answering a body that could not be read.
fn read_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, Box<HttpResponse>> {
    body.map_err(|e| {
        let resp = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            server_error(ServerError::TooLarge)
        } else {
            Response::Error {
                error: WireError::from_report(
                    coffer_vault_proto::ProtoError::Malformed(
                        "the request body could not be read".into(),
                    )
                    .report(),
                    None,
                ),
            }
        };
        tracing::info!(
            request = "unreadable",
            code = code_of(&resp),
            "vault request refused"
        );
        Box::new(answer(&resp))
    })
}

/// A channel message: the host cannot read it, only relay it. Every answer
/// in the channel is HTTP 200 (its errors are inside); plain JSON errors
/// are only the HSM's "this message does not open" (400) and the host's
/// own refusals (unreadable or oversized body, no HSM yet, time out).
async fn channel(
    State(st): State<ApiState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> HttpResponse {
    let started = Instant::now();
    let body = match read_body(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(hsm) = st.hsm.read().await.clone() else {
        return answer(&server_error(ServerError::Timeout));
    };
    let handled = crate::relay::handle_channel(&hsm, &body);
    let out = match tokio::time::timeout(REQUEST_TIMEOUT, handled).await {
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Err(plain)) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            plain,
        )
            .into_response(),
        Err(_) => answer(&server_error(ServerError::Timeout)),
    };
    tracing::info!(
        request = "channel",
        status = out.status().as_u16(),
        millis = started.elapsed().as_millis() as u64,
        "vault request"
    );
    out
}

async fn challenge(
    State(st): State<ApiState>,
    ip: Option<axum::Extension<ClientIp>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> HttpResponse {
    account(st, ip, body, AccountRoute::Challenge)
}

async fn verify(
    State(st): State<ApiState>,
    ip: Option<axum::Extension<ClientIp>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> HttpResponse {
    account(st, ip, body, AccountRoute::Verify)
}

/// The account service (plain JSON: it is the host's, not the HSMs').
fn account(
    st: ApiState,
    ip: Option<axum::Extension<ClientIp>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    route: AccountRoute,
) -> HttpResponse {
    let body = match read_body(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let ip = ip.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |e| e.0 .0);
    let resp = crate::account::handle(st.accounts.as_deref(), route, &body, ip);
    let status = match &resp {
        coffer_vault_proto::account::AccountResponse::Error { error } => status_for(error.kind),
        _ => StatusCode::OK,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        coffer_vault_proto::account::encode_account_response(&resp),
    )
        .into_response()
}

/// Any request of vault protocol v1: refused, in v1's own encoding, so an
/// old client shows "update Coffer".
async fn version_1() -> HttpResponse {
    tracing::info!(request = "v1", code = "CF-V003", "vault request refused");
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        refuse_version_1(),
    )
        .into_response()
}

/// The bootstrap status (plain JSON); any other request is refused here by
/// the HSM (it must come through the channel).
async fn status(
    State(st): State<ApiState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> HttpResponse {
    let started = Instant::now();
    let body = match read_body(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(hsm) = st.hsm.read().await.clone() else {
        return answer(&server_error(ServerError::Timeout));
    };
    let (name, resp) = match decode_request(&body) {
        Err(e) => (
            "malformed",
            Response::Error {
                error: WireError::from_report(e.report(), None),
            },
        ),
        Ok(req) => {
            let name = match &req {
                Request::Status { .. } => "status",
                _ => "outside the channel",
            };
            let handled = crate::relay::handle(&hsm, st.source.as_deref(), req);
            match tokio::time::timeout(REQUEST_TIMEOUT, handled).await {
                Ok(r) => (name, r),
                Err(_) => (name, server_error(ServerError::Timeout)),
            }
        }
    };
    tracing::info!(
        request = name,
        outcome = code_of(&resp),
        millis = started.elapsed().as_millis() as u64,
        "vault request"
    );
    answer(&resp)
}

fn code_of(r: &Response) -> &str {
    match r {
        Response::Error { error } => &error.code,
        _ => "ok",
    }
}
