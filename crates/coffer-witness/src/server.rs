//! The witness's HTTP API (see [`crate::api`] for the routes).

use crate::api::{
    CountersignRequest, InclusionResponse, KeysResponse, SubmitRequest, SubmitResponse,
};
use crate::cosigning::Cosigning;
use crate::store::Store;
use crate::{unix_now, WitnessError};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use coffer_error::UserFacing;
use coffer_transparency::merkle::proof_to_b64;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests larger than this are refused (an artifact is at most 64 KiB).
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// Every request must finish within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The store, shared by the handlers and the cosigning rounds.
pub type Shared = Arc<Mutex<Store>>;

/// The router's state: the store and, when a trust policy names
/// cosigners, the cosigning client.
#[derive(Clone)]
struct AppState {
    store: Shared,
    cosigning: Option<Arc<Cosigning>>,
}

impl axum::extract::FromRef<AppState> for Shared {
    fn from_ref(s: &AppState) -> Shared {
        s.store.clone()
    }
}

impl IntoResponse for WitnessError {
    fn into_response(self) -> Response {
        let status = match &self {
            WitnessError::Equivocation { .. }
            | WitnessError::EpochNotIncreasing { .. }
            | WitnessError::AlreadyExists(_) => StatusCode::CONFLICT,
            WitnessError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WitnessError::NotFound(_) => StatusCode::NOT_FOUND,
            WitnessError::BadRequest(_) | WitnessError::KeyFile(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code(), "{self}");
        }
        (status, Json(self.report())).into_response()
    }
}

/// Runs `f` on the store on the blocking pool: SQLite never blocks an
/// async worker, so the request timeout can always answer.
pub async fn blocking<T: Send + 'static>(
    s: Shared,
    f: impl FnOnce(&mut Store) -> Result<T, WitnessError> + Send + 'static,
) -> Result<T, WitnessError> {
    tokio::task::spawn_blocking(move || with_store(&s, f))
        .await
        .map_err(|e| WitnessError::Storage(e.to_string()))?
}

pub fn with_store<T>(
    s: &Shared,
    f: impl FnOnce(&mut Store) -> Result<T, WitnessError>,
) -> Result<T, WitnessError> {
    let mut g = s
        .lock()
        .map_err(|_| WitnessError::Storage("a previous request panicked".into()))?;
    f(&mut g)
}

/// The router over a store.
pub fn router(store: Store) -> Router {
    router_parts(store, None).0
}

/// The router over a store that collects cosignatures with `cosigning`
/// (after every append; run [`crate::cosigning::spawn_loop`] for the
/// periodic rounds), and the shared store for that loop.
pub fn router_parts(store: Store, cosigning: Option<Arc<Cosigning>>) -> (Router, Shared) {
    let shared: Shared = Arc::new(Mutex::new(store));
    let state = AppState {
        store: shared.clone(),
        cosigning,
    };
    let r = Router::new()
        .route("/v1/submit", post(submit))
        .route("/v1/countersign", post(countersign))
        .route("/v1/keys", get(keys))
        .route("/v1/namespaces/{ns}/epochs", get(epochs))
        .route(
            "/v1/namespaces/{ns}/epochs/{epoch}/validation",
            get(validation),
        )
        .route("/log/v1/checkpoint", get(checkpoint))
        .route("/log/v1/entries/{index}", get(entry))
        .route("/log/v1/inclusion", get(inclusion))
        .route("/log/v1/consistency", get(consistency))
        .route("/log/v1/tile/{*path}", get(tile))
        .fallback(|| async { WitnessError::NotFound("this path".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state);
    (r, shared)
}

/// Parses a JSON body into `T`, turning every rejection into a JSON error.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = WitnessError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| JsonBody(v))
            .map_err(|e| WitnessError::BadRequest(e.body_text()))
    }
}

/// Query strings, with JSON errors.
struct Q<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = WitnessError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| WitnessError::BadRequest(e.body_text()))
    }
}

/// Path parameters, with JSON errors.
struct P<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for P<T>
{
    type Rejection = WitnessError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| WitnessError::BadRequest(e.body_text()))
    }
}

async fn submit(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<SubmitRequest>,
) -> Result<Json<SubmitResponse>, WitnessError> {
    let s = app.store.clone();
    let r = blocking(s.clone(), move |st| {
        let r = st.submit(
            &req.namespace,
            req.epoch,
            &req.artifact,
            &req.operator_signature,
            unix_now(),
        )?;
        Ok(Json(SubmitResponse {
            leaf_index: r.leaf_index,
            namespace: r.proof.namespace,
            epoch: r.proof.epoch,
            timestamp: r.proof.timestamp,
            digest: r.proof.digest,
            witness_signature: r.proof.witness_signature,
            entry_url: st.entry_url(r.leaf_index),
        }))
    })
    .await?;
    // The new checkpoint goes to the cosigners before the answer, so the
    // blobs served from now on carry a cosigned checkpoint of it.
    if let Some(c) = &app.cosigning {
        if let Err(e) = c.round(&s).await {
            tracing::warn!(error = %e, "cosigning after an append failed");
        }
    }
    Ok(r)
}

async fn countersign(
    State(s): State<Shared>,
    JsonBody(req): JsonBody<CountersignRequest>,
) -> Result<impl IntoResponse, WitnessError> {
    blocking(s.clone(), move |st| {
        Ok(Json(st.countersign(
            &req.namespace,
            req.epoch,
            &req.operator_countersignature,
        )?))
    })
    .await
}

async fn keys(State(s): State<Shared>) -> Result<Json<KeysResponse>, WitnessError> {
    blocking(s.clone(), move |st| {
        let w = st.witness_key();
        Ok(Json(KeysResponse {
            origin: w.name().to_string(),
            witness_key: w.to_string(),
            operator_key: st.operator_key().to_string(),
        }))
    })
    .await
}

async fn epochs(
    State(s): State<Shared>,
    P(ns): P<String>,
) -> Result<impl IntoResponse, WitnessError> {
    blocking(s, move |st| Ok(Json(st.epochs(&ns)?))).await
}

#[derive(Deserialize)]
struct ValidationQuery {
    known_size: Option<u64>,
}

async fn validation(
    State(s): State<Shared>,
    P((ns, epoch)): P<(String, u64)>,
    Q(q): Q<ValidationQuery>,
) -> Result<impl IntoResponse, WitnessError> {
    blocking(s.clone(), move |st| {
        Ok(Json(st.validation(&ns, epoch, q.known_size)?))
    })
    .await
}

async fn checkpoint(State(s): State<Shared>) -> Result<impl IntoResponse, WitnessError> {
    blocking(s.clone(), move |st| {
        let note = st
            .served_checkpoint_note()?
            .ok_or_else(|| WitnessError::NotFound("a checkpoint".into()))?;
        Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            note,
        ))
    })
    .await
}

async fn entry(
    State(s): State<Shared>,
    P(index): P<u64>,
) -> Result<impl IntoResponse, WitnessError> {
    blocking(s, move |st| Ok(Json(st.entry(index)?))).await
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: Option<u64>,
    digest: Option<String>,
    size: Option<u64>,
}

async fn inclusion(
    State(s): State<Shared>,
    Q(q): Q<InclusionQuery>,
) -> Result<Json<InclusionResponse>, WitnessError> {
    blocking(s.clone(), move |st| {
        let index = match (q.index, &q.digest) {
            (Some(i), None) => i,
            (None, Some(d)) => st.index_of_digest(d)?,
            _ => {
                return Err(WitnessError::BadRequest(
                    "give exactly one of index or digest".into(),
                ))
            }
        };
        let (size, proof) = st.inclusion(index, q.size)?;
        Ok(Json(InclusionResponse {
            leaf_index: index,
            tree_size: size,
            proof: proof_to_b64(&proof),
        }))
    })
    .await
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    first: u64,
    second: Option<u64>,
}

async fn consistency(
    State(s): State<Shared>,
    Q(q): Q<ConsistencyQuery>,
) -> Result<impl IntoResponse, WitnessError> {
    blocking(s, move |st| Ok(Json(st.consistency(q.first, q.second)?))).await
}

/// C2SP tlog-tiles: `/log/v1/tile/L/N[.p/W]` and `/log/v1/tile/entries/N[.p/W]`
/// (immutable, cacheable).
async fn tile(
    State(s): State<Shared>,
    P(path): P<String>,
) -> Result<impl IntoResponse, WitnessError> {
    let bytes = tokio::task::spawn_blocking(move || with_store(&s, |st| st.tile(&path)))
        .await
        .map_err(|e| WitnessError::Storage(e.to_string()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    ))
}
