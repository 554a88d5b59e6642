//! Load and abuse limits of the vault's HTTP listeners (the client API and
//! the fleet endpoint), in the serving layer, before any request reaches a
//! route.
//!
//! [`serve`] runs hyper's HTTP/1.1 server over a listener with:
//!
//! * a **header timeout**: a request head (request line and headers) must
//!   arrive within `header_timeout_ms` of the connection being ready for one
//!   (also how long an idle kept-alive connection stays open), and be at most
//!   `max_head_bytes` long (else 431);
//! * a **body timeout**: the whole body must arrive within `body_timeout_ms`
//!   after its head (else 408, `CF-V056`), and be at most `max_body_bytes`
//!   (a larger `Content-Length` is refused before a byte is read, 400,
//!   `CF-V050`); routes then check their own protocol limit;
//! * a **connection lifetime** (`connection_lifetime_ms`, then a graceful
//!   close, and a hard one 5 s later: a client that never reads its answer
//!   cannot hold a connection) and a per-connection request limit;
//! * caps on **connections** and on **requests in flight**, for all clients
//!   and per client address (IPv4 address, or IPv6 /64), and a per-address
//!   **rate limit** (GCRA, `governor`). Over a cap the client gets an answer
//!   at once, never a queue: 429 `CF-V054` (its own address's limit) or 503
//!   `CF-V055` (the server's), with `Retry-After`. A connection over the
//!   connection caps is answered the same way with a 1 s header timeout;
//!   past a further bound of such refusals it is closed at once.
//!
//! What these bound: open connections ≤ `max_connections` (+ the refusals
//! being answered), memory ≤ about `max_connections` × (`max_head_bytes` +
//! `max_body_bytes`) in request buffers, each slow connection's life ≤ the
//! header or body timeout. See `docs/protocol.md` (transport) and
//! `docs/fleet.md` (node config).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use coffer_error::UserFacing;
use coffer_vault_proto::{encode_response, Response as VaultResponse, WireError};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

use crate::ServerError;

/// The limits of one listener. Every field has a default (the client API's,
/// [`Limits::default`]); a node config's `[limits]` table overrides any of
/// them. All must be positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A request head must arrive within this (ms); also the idle time of a
    /// kept-alive connection.
    pub header_timeout_ms: u64,
    /// A request body must arrive within this after its head (ms).
    pub body_timeout_ms: u64,
    /// Largest request head (request line and headers), bytes (≥ 8192).
    pub max_head_bytes: usize,
    /// Largest request body any route of the listener reads, bytes.
    pub max_body_bytes: usize,
    /// Requests served on one connection before it is closed.
    pub requests_per_connection: u32,
    /// How long one connection may stay open (ms).
    pub connection_lifetime_ms: u64,
    /// Open connections, all clients together.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_ip: usize,
    /// Requests being handled, all clients together.
    pub max_in_flight: usize,
    /// Requests being handled for one client address.
    pub max_in_flight_per_ip: usize,
    /// Requests per second one client address may send, sustained.
    pub rate_per_ip: u32,
    /// Requests one client address may send at once after a quiet spell.
    pub burst_per_ip: u32,
}

impl Default for Limits {
    /// The client API's limits: an honest client sends a handful of requests
    /// per operation, one at a time, each well under 16 KiB.
    fn default() -> Self {
        Limits {
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            requests_per_connection: 100,
            connection_lifetime_ms: 60_000,
            max_connections: 1024,
            max_connections_per_ip: 32,
            max_in_flight: 256,
            max_in_flight_per_ip: 8,
            rate_per_ip: 20,
            burst_per_ip: 40,
        }
    }
}

impl Limits {
    /// The fleet listener's limits for a fleet of `nodes`: the timeouts of
    /// `client`, bodies up to one fleet envelope, room for every peer's
    /// connection pool and no rate limit (peers may share an address).
    pub fn fleet(nodes: usize, client: &Limits) -> Limits {
        let peers = nodes.saturating_sub(1).max(1);
        Limits {
            header_timeout_ms: client.header_timeout_ms,
            body_timeout_ms: client.body_timeout_ms,
            max_head_bytes: 16 * 1024,
            max_body_bytes: coffer_fleet::http::MAX_ENVELOPE,
            requests_per_connection: 100_000,
            connection_lifetime_ms: client.connection_lifetime_ms,
            max_connections: 32 * peers,
            max_connections_per_ip: 32 * peers,
            max_in_flight: 64 * peers,
            max_in_flight_per_ip: 64 * peers,
            rate_per_ip: 1_000_000,
            burst_per_ip: 1_000_000,
        }
    }

    /// Checks every field is usable.
    pub fn validate(&self) -> Result<(), ServerError> {
        let positive = [
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("connection_lifetime_ms", self.connection_lifetime_ms),
            ("max_body_bytes", self.max_body_bytes as u64),
            (
                "requests_per_connection",
                self.requests_per_connection as u64,
            ),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("max_in_flight_per_ip", self.max_in_flight_per_ip as u64),
            ("rate_per_ip", self.rate_per_ip as u64),
            ("burst_per_ip", self.burst_per_ip as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ServerError::Config(format!(
                "limits.{name} must be positive"
            )));
        }
        if self.max_head_bytes < 8192 {
            return Err(ServerError::Config(
                "limits.max_head_bytes must be at least 8192".into(),
            ));
        }
        Ok(())
    }

    fn refusals(&self) -> usize {
        (self.max_connections / 4).clamp(16, 256)
    }
}

/// Raises this process's soft limit of open files to its hard limit (so the
/// listeners' connection caps, not the file limit, decide). Returns the
/// soft limit in force afterwards (`None`: unlimited).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let was = l.current;
        l.current = l.maximum;
        match setrlimit(Resource::Nofile, l) {
            Ok(()) => tracing::info!(from = ?was, to = ?l.maximum, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// File descriptors kept free for everything but connections (databases,
/// outgoing connections to peers and the witness, logs).
const FD_RESERVE: usize = 256;

/// Lowers the listeners' connection caps so that, with the connections
/// being refused and [`FD_RESERVE`], they fit in `open_files` (`None`:
/// unlimited). Says so in the log when it has to.
pub fn fit_open_files(open_files: Option<u64>, listeners: &mut [&mut Limits]) {
    let Some(open_files) = open_files else { return };
    let budget = (open_files as usize).saturating_sub(FD_RESERVE);
    let want: usize = listeners
        .iter()
        .map(|l| l.max_connections + l.refusals())
        .sum();
    if want <= budget {
        return;
    }
    for l in listeners.iter_mut() {
        let share = (l.max_connections + l.refusals()) * budget / want.max(1);
        let cap = (share * 4 / 5).max(16);
        tracing::warn!(
            open_files,
            configured = l.max_connections,
            cap,
            "the open-files limit is below the connection cap: lowering the cap (raise `ulimit -n`)"
        );
        l.max_connections = cap;
        l.max_connections_per_ip = l.max_connections_per_ip.min(cap);
    }
}

/// The key a client's limits are counted under: its IPv4 address, or its
/// IPv6 /64 (one subscriber's usual allocation).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Counters per client address with a cap; an entry lives while it is
/// non-zero, so the map holds at most one entry per live connection.
struct PerIp {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

struct PerIpGuard {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(PerIp {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpGuard> {
        let mut m = self.counts.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.owner.counts.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// Why a request or connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// This client address's rate, connection or concurrency limit.
    Client,
    /// The server's connection or concurrency limit.
    Server,
    /// The body announced or sent is larger than the listener reads.
    TooLarge,
    /// The body did not arrive within the body timeout.
    Slow,
    /// The body could not be read (malformed chunking, reset).
    Unreadable,
}

fn refusal(why: Refusal) -> Response<Body> {
    let (status, err) = match why {
        Refusal::Client => (StatusCode::TOO_MANY_REQUESTS, ServerError::RateLimited),
        Refusal::Server => (StatusCode::SERVICE_UNAVAILABLE, ServerError::Busy),
        // 400 as every invalid_input answer of the API (docs/protocol.md).
        Refusal::TooLarge => (StatusCode::BAD_REQUEST, ServerError::TooLarge),
        Refusal::Slow => (StatusCode::REQUEST_TIMEOUT, ServerError::SlowRequest),
        Refusal::Unreadable => {
            return answer(
                StatusCode::BAD_REQUEST,
                coffer_vault_proto::ProtoError::Malformed(
                    "the request body could not be read".into(),
                )
                .report(),
                false,
            )
        }
    };
    answer(
        status,
        err.report(),
        matches!(why, Refusal::Client | Refusal::Server),
    )
}

fn answer(status: StatusCode, report: coffer_error::ErrorReport, retry: bool) -> Response<Body> {
    let body = encode_response(&VaultResponse::Error {
        error: WireError::from_report(report, None),
    });
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if retry {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

struct Shared {
    limits: Limits,
    app: Router,
    conns: Arc<Semaphore>,
    conns_ip: Arc<PerIp>,
    refusing: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    in_flight_ip: Arc<PerIp>,
    rate: DefaultKeyedRateLimiter<IpAddr>,
}

/// Serves `app` on `listener` under `limits` until the task is aborted.
pub fn serve(listener: TcpListener, app: Router, limits: Limits) -> tokio::task::JoinHandle<()> {
    let per_sec = NonZeroU32::new(limits.rate_per_ip).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limits.burst_per_ip).unwrap_or(NonZeroU32::MIN);
    let shared = Arc::new(Shared {
        conns: Arc::new(Semaphore::new(limits.max_connections)),
        conns_ip: PerIp::new(limits.max_connections_per_ip),
        refusing: Arc::new(Semaphore::new(limits.refusals())),
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        in_flight_ip: PerIp::new(limits.max_in_flight_per_ip),
        rate: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
        limits,
        app,
    });
    tokio::spawn(accept_loop(listener, shared))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut housekeeping = tokio::time::interval(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or memory: let some connections end.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = housekeeping.tick() => {
                // Forget addresses whose rate state is back to fresh.
                shared.rate.retain_recent();
                shared.rate.shrink_to_fit();
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ip = client_key(peer.ip());
        let admitted = match shared.conns_ip.try_acquire(ip) {
            None => Err(Refusal::Client),
            Some(per_ip) => match shared.conns.clone().try_acquire_owned() {
                Ok(all) => Ok((all, per_ip)),
                Err(_) => Err(Refusal::Server),
            },
        };
        match admitted {
            Ok(guards) => {
                tokio::spawn(connection(stream, ip, shared.clone(), guards));
            }
            Err(why) => match shared.refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(refuse(stream, why, permit));
                }
                // Past every bound: closed at once, unanswered.
                Err(_) => drop(stream),
            },
        }
    }
}

/// Answers whatever request comes on a connection over the caps with the
/// refusal, then closes it.
async fn refuse(stream: TcpStream, why: Refusal, _permit: OwnedSemaphorePermit) {
    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        Ok::<_, Infallible>(refusal(why))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(1))
        .max_buf_size(8192)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
}

async fn connection(
    stream: TcpStream,
    ip: IpAddr,
    shared: Arc<Shared>,
    _guards: (OwnedSemaphorePermit, PerIpGuard),
) {
    let l = &shared.limits;
    let served = Arc::new(AtomicU32::new(0));
    let svc = {
        let shared = shared.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (shared, served) = (shared.clone(), served.clone());
            async move {
                let nth = served.fetch_add(1, Ordering::Relaxed) + 1;
                let (mut resp, close) = request(&shared, ip, req).await;
                if close || nth >= shared.limits.requests_per_connection {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(l.header_timeout_ms))
        .max_buf_size(l.max_head_bytes.max(8192))
        .max_header_size(l.max_head_bytes)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(Duration::from_millis(l.connection_lifetime_ms)) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

fn announced_len(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Admits, reads and hands one request to the router. The flag: close the
/// connection after this answer (its body was not read to the end).
async fn request(shared: &Shared, ip: IpAddr, req: Request<Incoming>) -> (Response<Body>, bool) {
    let l = &shared.limits;
    if shared.rate.check_key(&ip).is_err() {
        return (refusal(Refusal::Client), true);
    }
    if announced_len(&req).is_some_and(|n| n > l.max_body_bytes as u64) {
        return (refusal(Refusal::TooLarge), true);
    }
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, l.max_body_bytes).collect();
    let bytes: Bytes =
        match tokio::time::timeout(Duration::from_millis(l.body_timeout_ms), read).await {
            Err(_) => return (refusal(Refusal::Slow), true),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return (refusal(Refusal::TooLarge), true)
            }
            Ok(Err(_)) => return (refusal(Refusal::Unreadable), true),
            Ok(Ok(c)) => c.to_bytes(),
        };
    let Some(_per_ip) = shared.in_flight_ip.try_acquire(ip) else {
        return (refusal(Refusal::Client), false);
    };
    let Ok(_all) = shared.in_flight.clone().try_acquire_owned() else {
        return (refusal(Refusal::Server), false);
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(crate::api::ClientIp(ip));
    match shared.app.clone().call(req).await {
        Ok(r) => (r, false),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn per_ip_counts_are_capped_and_forgotten_at_zero() {
        let p = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let g1 = p.try_acquire(ip).unwrap();
        let g2 = p.try_acquire(ip).unwrap();
        assert!(p.try_acquire(ip).is_none());
        assert!(p.try_acquire("192.0.2.2".parse().unwrap()).is_some());
        drop(g1);
        let g3 = p.try_acquire(ip).unwrap();
        drop((g2, g3));
        assert!(p.counts.lock().unwrap().is_empty());
    }

    #[test]
    fn caps_are_lowered_to_fit_the_open_files_limit() {
        let mut client = Limits::default();
        let mut fleet = Limits::fleet(5, &client);
        fit_open_files(Some(1024), &mut [&mut client, &mut fleet]);
        let used = client.max_connections
            + client.refusals()
            + fleet.max_connections
            + fleet.refusals()
            + FD_RESERVE;
        assert!(used <= 1024, "{used}");
        assert!(client.max_connections_per_ip <= client.max_connections);
        let mut roomy = Limits::default();
        fit_open_files(Some(20_000), &mut [&mut roomy]);
        assert_eq!(roomy, Limits::default());
    }

    #[tokio::test]
    async fn the_fleet_listener_takes_one_whole_envelope_and_no_more() {
        use axum::routing::post;
        let app = Router::new().route("/e", post(|b: Bytes| async move { b.len().to_string() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/e", listener.local_addr().unwrap());
        let task = serve(listener, app, Limits::fleet(3, &Limits::default()));
        let c = reqwest::Client::new();
        let max = coffer_fleet::http::MAX_ENVELOPE;
        let r = c.post(&url).body(vec![1u8; max]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), max.to_string());
        let r = c.post(&url).body(vec![1u8; max + 1]).send().await.unwrap();
        assert_eq!(r.status(), 400);
        task.abort();
    }

    #[test]
    fn zero_limits_and_tiny_heads_are_refused() {
        assert!(Limits::default().validate().is_ok());
        assert!(Limits::fleet(3, &Limits::default()).validate().is_ok());
        let l = Limits {
            rate_per_ip: 0,
            ..Limits::default()
        };
        assert!(l.validate().is_err());
        let l = Limits {
            max_head_bytes: 1000,
            ..Limits::default()
        };
        assert!(l.validate().is_err());
    }
}
