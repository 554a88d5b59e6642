//! The trust policy of a remote vault (issue 13): chosen in Settings → Vault,
//! its max age changed there, saved; the verification panel then shows the
//! checkpoint's freshness against that max age, the quorum, and each
//! cosigner with its key id and cosigning time.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coffer_vault::relay::BundleSource;

use crate::harness::{run_prepared, run_with, TestResult};
use crate::NO_KEYRING;

/// The key id of a note verifier key `name+keyid+base64`.
fn key_id(key: &str) -> String {
    key.split('+').nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_policy_chosen_in_settings_then_panel_shows_freshness_and_cosigners() {
    let shared = tempfile::tempdir().unwrap();
    let root = coffer_vault::embedded::generate_root_key();
    let vault =
        coffer_vault::embedded::start_with(&shared.path().join("remote-fleet"), &root, 3, 10)
            .await
            .unwrap();
    let (addr, server) = vault.serve("127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}");
    let wk = vault.witness_key().to_string();
    let ok = vault.operator_key().to_string();
    let wurl = vault.witness_url().to_string();
    let policy = vault.policy().clone();
    let quorum = policy.describe_quorum();
    let cosigners: Vec<(String, String)> = policy
        .witnesses
        .iter()
        .map(|w| (w.name.clone(), key_id(&w.key.to_string())))
        .collect();
    assert!(cosigners.len() >= 2, "the fleet has cosigners");
    // The operator's published policy, and one for another log.
    let policy_file = shared.path().join("published/trust.policy");
    std::fs::create_dir_all(policy_file.parent().unwrap()).unwrap();
    std::fs::write(&policy_file, policy.text()).unwrap();
    let other_file = shared.path().join("published/other-log.policy");
    std::fs::write(
        &other_file,
        policy
            .text()
            .replace(&format!("log {wk}"), &format!("log {ok}")),
    )
    .unwrap();
    let missing: PathBuf = shared.path().join("published/missing.policy");
    run_with("trust_policy_panel", NO_KEYRING, |s| async move {
        s.testid("onboarding-screen").await?;
        s.go("settings").await?;
        s.wait_text("settings-vault", "Local demo fleet").await?;
        s.click("vault-choice-remote").await?;
        s.type_in("vault-url", &url).await?;
        s.type_in("vault-witness-key", &wk).await?;
        s.type_in("vault-operator-key", &ok).await?;
        s.type_in("vault-witness-url", &wurl).await?;

        // A file that is not there: its own code, the form unchanged.
        s.type_in("vault-policy-file", missing.to_str().unwrap())
            .await?;
        s.click("vault-policy-load").await?;
        s.wait_text("vault-policy-summary", "CF-A037").await?;
        assert_eq!(
            s.testid("vault-trust-policy")
                .await?
                .prop("value")
                .await?
                .as_deref(),
            Some("")
        );
        // This release ships no policy for this (test) witness key.
        s.click("vault-policy-shipped").await?;
        s.wait_text("vault-policy-summary", "CF-A038").await?;
        // The policy of another log reads, but is refused for this vault.
        s.type_in("vault-policy-file", other_file.to_str().unwrap())
            .await?;
        s.click("vault-policy-load").await?;
        s.wait_text("vault-policy-loaded", &quorum).await?;
        s.click("vault-test").await?;
        s.wait_text("vault-choice-result", "CF-A034").await?;

        // The published policy: its quorum, max age and cosigners are shown.
        s.click("vault-policy-clear").await?;
        assert!(!s.exists("vault-policy-loaded").await?);
        s.type_in("vault-policy-file", policy_file.to_str().unwrap())
            .await?;
        s.click("vault-policy-load").await?;
        let loaded = s.wait_text("vault-policy-loaded", &quorum).await?;
        for (name, _) in &cosigners {
            assert!(loaded.contains(name.as_str()), "{loaded}");
        }
        let text = s.testid("vault-trust-policy").await?.prop("value").await?;
        assert!(text.unwrap_or_default().contains(&format!("log {wk}")));
        let hours = (policy.max_age_secs as f64 / 3600.0 * 100.0).round() / 100.0;
        assert_eq!(
            s.testid("vault-max-age-hours")
                .await?
                .prop("value")
                .await?
                .and_then(|v| v.parse::<f64>().ok()),
            Some(hours)
        );
        // A max age of one second (0.0003 h), two seconds later: stale,
        // and the fleet does not verify.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        s.type_in("vault-max-age-hours", "0.0003").await?;
        s.click("vault-test").await?;
        s.wait_attr("vault-choice-result", "data-validated", "false", 30)
            .await?;
        s.wait_attr("vault-choice-freshness", "data-state", "stale", 5)
            .await?;
        // Two hours: fresh, verified, saved with the vault.
        s.type_in("vault-max-age-hours", "2").await?;
        s.click("vault-test").await?;
        s.wait_attr("vault-choice-result", "data-validated", "true", 30)
            .await?;
        s.wait_attr("vault-choice-freshness", "data-state", "fresh", 5)
            .await?;
        s.wait_attr(
            "vault-choice-check-cosignatures",
            "data-status",
            "passed",
            5,
        )
        .await?;
        s.click("vault-save").await?;
        s.wait_text("vault-choice-verdict", "saved: Coffer now uses this vault")
            .await?;
        s.wait_text("settings-vault", "trust policy set").await?;
        let saved = std::fs::read_to_string(s.data_dir.join("settings.json"))?;
        assert!(saved.contains("max-age 7200"), "{saved}");

        // The verification panel: fresh under the 2 h max age, the quorum,
        // each cosigner with its key id and time, no fork.
        s.go("verification").await?;
        s.wait_attr("verification-freshness", "data-state", "fresh", 30)
            .await?;
        s.wait_text("verification-freshness", "at most 2 h").await?;
        assert_eq!(s.text("verification-max-age").await?, "2 h");
        assert_eq!(s.text("verification-quorum").await?, quorum);
        for (name, id) in &cosigners {
            s.wait_attr(
                &format!("verification-cosigner-{name}"),
                "data-status",
                "fresh",
                5,
            )
            .await?;
            assert_eq!(
                s.text(&format!("verification-cosigner-{name}-name"))
                    .await?,
                *name
            );
            assert_eq!(
                s.text(&format!("verification-cosigner-{name}-key-id"))
                    .await?,
                *id
            );
            let at = s.text(&format!("verification-cosigner-{name}-at")).await?;
            assert!(at.starts_with("cosigned 20"), "{at}");
        }
        assert!(!s.testid("verification-fork").await?.is_displayed().await?);
        s.shot("verification-trust").await?;
        TestResult::Ok(())
    })
    .await;
    server.abort();
    vault.shutdown().await;
}

/// Relays blobs from the live witness until `rolled` is set, then from the
/// rolled-back copy: a host whose witness was restored from a backup.
struct Switch {
    live: Arc<dyn BundleSource>,
    old: Arc<dyn BundleSource>,
    rolled: AtomicBool,
}

impl BundleSource for Switch {
    fn blob(
        &self,
        known_size: Option<u64>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>> {
        if self.rolled.load(Ordering::SeqCst) {
            self.old.blob(known_size)
        } else {
            self.live.blob(known_size)
        }
    }
}

/// The vault the app uses starts relaying a witness restored from an older
/// copy of its log: the verification panel shows ROLLED BACK with both
/// signed checkpoints as evidence (the one verified before and the one
/// presented now), and the fleet as not verified.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_witness_log_is_shown_with_both_checkpoints() {
    use coffer_app::settings::{SettingsStore, VaultChoice};
    use coffer_vault::relay::WitnessSource;
    let shared = tempfile::tempdir().unwrap();
    let fleet = shared.path().join("remote-fleet");
    let root = coffer_vault::embedded::generate_root_key();
    let vault = coffer_vault::embedded::start_with(&fleet, &root, 3, 10)
        .await
        .unwrap();
    // The witness's log at epoch 1, copied; then epoch 2 is published.
    let backup = shared.path().join("backup.db");
    rusqlite::Connection::open(fleet.join("witness/log.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    let mut keys2 = vault.evidence().fleet_keys().unwrap();
    for k in &mut keys2.keys {
        k.not_after += 86_400;
    }
    vault.publish_epoch(2, &keys2).await.unwrap();
    // The copy served by a witness with the same key.
    let folder = coffer_vault::demo_keys::folder_id(&fleet).unwrap().unwrap();
    let wkey = coffer_vault::demo_keys::DemoKeys::open(&fleet, &folder, &root)
        .unwrap()
        .witness;
    let store = coffer_witness::store::Store::open(
        &backup,
        wkey,
        vault.operator_key(),
        "http://rolled-back.invalid",
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_url = format!("http://{}", l.local_addr().unwrap());
    let old_witness = coffer_vault::limits::serve(
        l,
        coffer_witness::server::router(store),
        coffer_vault::limits::Limits::default(),
    );
    let switch = Arc::new(Switch {
        live: vault.bundle_source(),
        old: Arc::new(WitnessSource::new(&old_url).unwrap()),
        rolled: AtomicBool::new(false),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let host = coffer_vault::limits::serve(
        l,
        coffer_vault::api::router_with(
            Arc::new(tokio::sync::RwLock::new(Some(vault.hsm()))),
            Some(switch.clone() as Arc<dyn BundleSource>),
        ),
        coffer_vault::limits::Limits::default(),
    );
    let choice = VaultChoice::Remote {
        url,
        witness_key: vault.witness_key().to_string(),
        operator_key: vault.operator_key().to_string(),
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: None,
    };
    let prepare = move |dir: &Path| {
        let store = SettingsStore::new(dir);
        let mut st = store.load().unwrap();
        st.vault = choice;
        store.save(&st).unwrap();
    };
    let rolled = switch.clone();
    run_prepared("rolled_back_panel", NO_KEYRING, prepare, |s| async move {
        s.testid("onboarding-screen").await?;
        s.go("verification").await?;
        s.click("verification-run").await?;
        // Verified at epoch 2; no policy, so freshness is not checked.
        s.wait_attr("verification-freshness", "data-state", "unchecked", 30)
            .await?;
        s.wait_attr("verification-check-pinned-key", "data-status", "passed", 5)
            .await?;
        assert!(!s.testid("verification-fork").await?.is_displayed().await?);
        s.testid("verification-cosigners-none").await?;
        rolled.rolled.store(true, Ordering::SeqCst);
        // The relay reads the witness's checkpoint at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        s.click("verification-run").await?;
        s.wait_attr("verification-freshness", "data-state", "forked", 30)
            .await?;
        s.wait_text("verification-freshness", "ROLLED BACK").await?;
        s.wait_attr("verification-fork", "data-kind", "rolled_back", 5)
            .await?;
        assert!(s.testid("verification-fork").await?.is_displayed().await?);
        let remembered = s.text("verification-fork-remembered").await?;
        let presented = s.text("verification-fork-presented").await?;
        assert_ne!(remembered, presented);
        for note in [&remembered, &presented] {
            assert!(note.contains('\u{2014}'), "a signed note: {note}");
        }
        s.shot("verification-rolled-back").await?;
        TestResult::Ok(())
    })
    .await;
    host.abort();
    old_witness.abort();
    vault.shutdown().await;
}
