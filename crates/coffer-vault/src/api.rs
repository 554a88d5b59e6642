//! The vault's HTTP API for clients.

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
use coffer_vault_proto::{decode_request, encode_response, Response, WireError, MAX_MESSAGE_LEN};
use tokio::sync::RwLock;

use crate::relay::BundleSource;
use crate::ServerError;

/// Path of the client endpoint.
pub const VAULT_PATH: &str = "/v1/vault";
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
}

/// The client API over an HSM slot: `POST /v1/vault`, `GET /v1/health`.
pub fn router(hsm: HsmSlot) -> Router {
    router_with(hsm, None)
}

/// [`router`] that relays validation blobs from `source` in `status` answers.
pub fn router_with(hsm: HsmSlot, source: Option<Arc<dyn BundleSource>>) -> Router {
    Router::new()
        .route(VAULT_PATH, post(vault))
        .route("/v1/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_LEN))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT + Duration::from_secs(2),
        ))
        .with_state(ApiState { hsm, source })
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

async fn vault(
    State(st): State<ApiState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> HttpResponse {
    let started = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(e) => {
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
            return answer(&resp);
        }
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
            let name = req.name();
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
