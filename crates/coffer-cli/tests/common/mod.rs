//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

pub fn coffer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env_remove("COFFER_VAULT_URL")
        .env_remove("COFFER_FLEET_KEY")
        .env_remove("COFFER_WITNESS_KEY")
        .env_remove("COFFER_OPERATOR_KEY")
        .env_remove("COFFER_TRUST_STATE")
        .env_remove("COFFER_TRUST_POLICY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A pass-through proxy in front of the witness that removes the epochs
/// `hide` picks from the namespace's epoch list (and changes nothing else).
pub async fn hiding_proxy(witness: String, hide: fn(u64) -> bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, _h: HeaderMap, body: Bytes| {
            let http = http.clone();
            let witness = witness.clone();
            async move {
                let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let r = http
                    .request(method, format!("{witness}{pq}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let mut bytes = r.bytes().await.unwrap().to_vec();
                if uri.path().ends_with("/epochs") && status.is_success() {
                    let mut v: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
                    v.retain(|e| !hide(e["epoch"].as_u64().unwrap()));
                    bytes = serde_json::to_vec(&v).unwrap();
                }
                (status, [("content-type", ct)], bytes)
            }
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
