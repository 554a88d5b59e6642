//! The log's side of cosigning: it sends its latest checkpoint (with a
//! consistency proof from what each cosigner last cosigned) to every
//! cosigner of its trust policy that has a URL, over C2SP tlog-witness
//! `add-checkpoint`, after every append and then every interval, and serves
//! the checkpoint with the cosignature lines it got back. A cosignature is
//! kept only if it verifies with the cosigner's key from the policy.
//!
//! Cosigning an unchanged checkpoint again gives it a new timestamp: that
//! is what lets clients check freshness (`max-age` in the policy).

use crate::server::{blocking, Shared};
use crate::WitnessError;
use coffer_transparency::cosignature::{Cosigned, CosignedCheckpoint};
use coffer_transparency::{Checkpoint, NoteVerifier, Policy};
use std::time::Duration;

/// How long one cosigner may take to answer.
pub const COSIGNER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the last round got from one cosigner (for logs and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Cosigned,
    Refused(u16, String),
    Unreachable(String),
}

pub struct Cosigning {
    policy: Policy,
    log_key: NoteVerifier,
    http: reqwest::Client,
    /// Per policy witness: the size it last cosigned, as far as we know.
    known: tokio::sync::Mutex<Vec<u64>>,
}

impl std::fmt::Debug for Cosigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigning")
            .field("cosigners", &self.policy.witnesses.len())
            .finish_non_exhaustive()
    }
}

impl Cosigning {
    /// `policy` must list `log_key` as a log.
    pub fn new(policy: Policy, log_key: NoteVerifier) -> Result<Self, WitnessError> {
        if policy.log(&log_key).is_none() {
            return Err(WitnessError::BadRequest(format!(
                "the trust policy does not list this log's key {log_key}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(COSIGNER_TIMEOUT)
            .connect_timeout(COSIGNER_TIMEOUT)
            .build()
            .map_err(|e| WitnessError::Unreachable(e.to_string()))?;
        let n = policy.witnesses.len();
        Ok(Cosigning {
            policy,
            log_key,
            http,
            known: tokio::sync::Mutex::new(vec![0; n]),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One round: every cosigner with a URL is asked to cosign the latest
    /// checkpoint; the cosigned note is handed to the store to serve.
    pub async fn round(&self, store: &Shared) -> Result<Vec<(String, Outcome)>, WitnessError> {
        // One round at a time: the cosigners' old sizes move with it.
        let mut known = self.known.lock().await;
        let note = blocking(store.clone(), |st| {
            st.latest_checkpoint_note()?
                .ok_or_else(|| WitnessError::Storage("no checkpoint".into()))
        })
        .await?;
        let cp = Checkpoint::open(&note, &self.log_key)
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        let mut lines = String::new();
        let mut outcomes = Vec::new();
        for (i, w) in self.policy.witnesses.iter().enumerate() {
            let Some(url) = &w.url else { continue };
            let mut outcome = Outcome::Unreachable("not tried".into());
            for _attempt in 0..2 {
                let old = known[i];
                if old > cp.size {
                    outcome = Outcome::Refused(
                        409,
                        format!("it cosigned size {old}, larger than this log's {}", cp.size),
                    );
                    break;
                }
                let proof = if old > 0 && old < cp.size {
                    let size = cp.size;
                    blocking(store.clone(), move |st| st.consistency_hashes(old, size)).await?
                } else {
                    vec![]
                };
                let body = crate::cosigner::add_request_body(old, &proof, &note);
                let resp = self
                    .http
                    .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
                    .body(body)
                    .send()
                    .await;
                let resp = match resp {
                    Ok(r) => r,
                    Err(e) => {
                        outcome = Outcome::Unreachable(e.to_string());
                        break;
                    }
                };
                let status = resp.status().as_u16();
                let is_size = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/x.tlog.size"));
                let text = resp.text().await.unwrap_or_default();
                if status == 200 {
                    let got = CosignedCheckpoint::open(&format!("{note}{text}"), &self.log_key)
                        .map(|c| c.cosignature_by(&w.key));
                    if let Ok(Cosigned::At(_)) = got {
                        // Keep only this cosigner's lines.
                        for l in text.lines().filter(|l| {
                            l.strip_prefix("\u{2014} ")
                                .is_some_and(|r| r.starts_with(&format!("{} ", w.key.name())))
                        }) {
                            lines.push_str(l);
                            lines.push('\n');
                        }
                        known[i] = cp.size;
                        outcome = Outcome::Cosigned;
                    } else {
                        outcome = Outcome::Refused(200, "an invalid cosignature".into());
                    }
                    break;
                }
                if status == 409 && is_size {
                    if let Ok(n) = text.trim().parse::<u64>() {
                        if n != old {
                            known[i] = n;
                            outcome = Outcome::Refused(409, format!("it cosigned size {n}"));
                            continue;
                        }
                    }
                }
                outcome = Outcome::Refused(status, text.trim().to_string());
                break;
            }
            if outcome != Outcome::Cosigned {
                tracing::warn!(cosigner = %w.name, ?outcome, size = cp.size, "no cosignature");
            }
            outcomes.push((w.name.clone(), outcome));
        }
        let cosigned = format!("{note}{lines}");
        blocking(store.clone(), move |st| st.set_cosigned(&cosigned)).await?;
        Ok(outcomes)
    }
}

/// Runs a round every `interval` (the first one at once) until aborted.
pub fn spawn_loop(
    store: Shared,
    cosigning: std::sync::Arc<Cosigning>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = cosigning.round(&store).await {
                tracing::warn!(error = %e, "cosigning round failed");
            }
        }
    })
}
