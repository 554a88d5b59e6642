use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use coffer_vault_proto::MAX_RESPONSE_LEN;

/// A boxed future, so that [`Transport`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The request could not be delivered or its answer not received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Which of the vault's two doors a request goes to (vault protocol v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The bootstrap `status`, plain JSON (`POST /v2/status`): what the
    /// client validates the fleet from before it can open a channel.
    Status,
    /// A channel message 1 (`POST /v2/vault`, binary); the answer is a
    /// message 2, or a plain error if there was no channel to answer in.
    Channel,
    /// The account service: send a code to an address
    /// (`POST /v2/account/challenge`, JSON).
    AccountChallenge,
    /// The account service: a mailed code for a ticket
    /// (`POST /v2/account/verify`, JSON).
    AccountVerify,
}

impl Route {
    /// The HTTP path of this route.
    pub fn path(self) -> &'static str {
        match self {
            Route::Status => "/v2/status",
            Route::Channel => "/v2/vault",
            Route::AccountChallenge => "/v2/account/challenge",
            Route::AccountVerify => "/v2/account/verify",
        }
    }

    /// The content type of a request body on this route.
    pub fn content_type(self) -> &'static str {
        match self {
            Route::Status | Route::AccountChallenge | Route::AccountVerify => "application/json",
            Route::Channel => "application/octet-stream",
        }
    }
}

/// Carries encoded requests to a vault and brings back encoded responses.
/// The host on the other side relays bytes; what it answers is never
/// trusted beyond what the client can check (see `VaultClient`).
pub trait Transport: Send + Sync {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>>;
}

/// HTTP transport: `POST {base}{route path}` with the encoded request as body.
/// With several base URLs (the nodes of one fleet) a request whose
/// connection fails is sent to the next node; a request that may have been
/// delivered is never re-sent.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    endpoints: Vec<String>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpTransport {
    /// `base` is the vault's URL, e.g. `http://127.0.0.1:7400`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, TransportError> {
        Self::with_urls(&[base.to_string()], timeout)
    }

    /// A transport over several nodes of one fleet (failover on connection errors).
    pub fn with_urls(bases: &[String], timeout: Duration) -> Result<Self, TransportError> {
        if bases.is_empty() {
            return Err(TransportError("no vault URL".into()));
        }
        let mut endpoints = Vec::new();
        for base in bases {
            let base = base.trim().trim_end_matches('/');
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(TransportError(format!("not an http(s) URL: {base}")));
            }
            endpoints.push(base.to_string());
        }
        // No idle connections are kept: a pooled connection to a node that
        // has died since fails only after the request was written, which
        // looks like "may have been delivered" and so is never re-sent to
        // another node. A fresh connection per request fails at connect
        // instead, and fails over (seen once in ~20 runs of the 3-of-5-down
        // process test: "error sending request" instead of "unavailable").
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| {
                TransportError(format!("cannot build the HTTP client: {}", describe(&e)))
            })?;
        Ok(HttpTransport {
            client,
            endpoints,
            next: Default::default(),
        })
    }
}

impl Transport for HttpTransport {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let n = self.endpoints.len();
            let first = self.next.load(std::sync::atomic::Ordering::Relaxed);
            let mut k = 0;
            let resp = loop {
                let i = (first + k) % n;
                let sent = self
                    .client
                    .post(format!("{}{}", self.endpoints[i], route.path()))
                    .header("content-type", route.content_type())
                    .body(request.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        self.next.store(i, std::sync::atomic::Ordering::Relaxed);
                        break r;
                    }
                    // Never delivered: safe to try the next node.
                    Err(e) if e.is_connect() && k + 1 < n => k += 1,
                    Err(e) => return Err(TransportError(describe(&e))),
                }
            };
            if resp
                .content_length()
                .is_some_and(|n| n as usize > MAX_RESPONSE_LEN)
            {
                return Err(TransportError("the vault's answer is too large".into()));
            }
            // Read at most MAX_RESPONSE_LEN (+1 to notice more), whatever the headers say.
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| TransportError(describe(&e)))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_RESPONSE_LEN {
                    return Err(TransportError("the vault's answer is too large".into()));
                }
            }
            Ok(body)
        })
    }
}

/// The largest deployment evidence document accepted (a 5-node fleet's is
/// a few KiB).
pub const MAX_EVIDENCE_LEN: usize = 1 << 20;

/// Fetches a published deployment evidence document (`GET url`). Only
/// fetched: what it says is checked by the validator against the pinned
/// vendor and operator roots.
pub async fn fetch_evidence(
    url: &str,
    timeout: Duration,
) -> Result<coffer_transparency::DeploymentEvidence, crate::VaultError> {
    use crate::VaultError;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .build()
        .map_err(|e| VaultError::Unreachable(describe(&e)))?;
    let resp = client.get(url).send().await.map_err(|e| {
        VaultError::Unreachable(format!("deployment evidence at {url}: {}", describe(&e)))
    })?;
    if !resp.status().is_success() {
        return Err(VaultError::Unreachable(format!(
            "deployment evidence at {url}: HTTP {}",
            resp.status()
        )));
    }
    if resp.content_length().unwrap_or(0) > MAX_EVIDENCE_LEN as u64 {
        return Err(VaultError::Protocol(format!(
            "the deployment evidence at {url} is too large"
        )));
    }
    let body = resp.bytes().await.map_err(|e| {
        VaultError::Unreachable(format!("deployment evidence at {url}: {}", describe(&e)))
    })?;
    if body.len() > MAX_EVIDENCE_LEN {
        return Err(VaultError::Protocol(format!(
            "the deployment evidence at {url} is too large"
        )));
    }
    serde_json::from_slice(&body).map_err(|e| {
        VaultError::Protocol(format!(
            "the deployment evidence at {url} is not an evidence document: {e}"
        ))
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // The innermost cause says why (refused, DNS, an untrusted TLS
    // certificate…). reqwest's errors never contain request bodies.
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let why = cause.to_string();
    let tls = why.contains("certificate") || why.contains("TLS") || why.contains("tls");
    match (e.is_connect(), tls) {
        (_, true) => format!(
            "the TLS connection failed ({why}); if the vault uses a private certificate authority, set SSL_CERT_FILE to its certificate"
        ),
        (true, false) => format!("connection failed ({why})"),
        (false, false) => e.to_string(),
    }
}
