//! Off-site copies in the app (issue 14), against a real one-node Garage
//! from coffer-testenv: the backup set form with an S3 destination, Test
//! connection with a wrong secret (`CF-O003`) and the right one, a backup
//! that uploads with its progress in bytes, and the Recovery wizard
//! restoring from the copy alone on a fresh data directory.

use std::path::Path;
use std::time::{Duration, Instant};

use coffer_app::coffer_repo::remote::{Destination, Remote};
use coffer_app::coffer_repo::{CancelToken, NoProgress, RecoveryKey, Repository};
use coffer_app::remote::RemoteCredentialsInput;
use coffer_testenv::servers::Garage;

use crate::harness::{run_with, run_with_env, Session, TestResult};
use crate::{contains, make_source, old_computer, NO_KEYRING};

/// Starts a Garage, one at a time in this binary (parallel starts have
/// failed to connect the node to itself while setting up its layout).
fn garage(dir: &Path) -> Garage {
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    Garage::start(dir)
}

const WRONG_SECRET: &str = "0123456789abcdef0123456789abcdef-wrong";

/// Fills the S3 fields of the destination form with `prefix` ids.
async fn fill_s3(s: &Session, prefix: &str, g: &Garage, secret: &str) -> TestResult {
    s.testid(&format!("{prefix}-type"))
        .await?
        .select_by_value("s3")
        .await?;
    s.type_in(&format!("{prefix}-endpoint"), &g.endpoint)
        .await?;
    s.type_in(&format!("{prefix}-region"), &g.region).await?;
    s.type_in(&format!("{prefix}-bucket"), &g.bucket).await?;
    s.type_in(&format!("{prefix}-prefix"), "laptop").await?;
    s.type_in(&format!("{prefix}-access-key-id"), &g.key_id)
        .await?;
    s.type_in(&format!("{prefix}-secret"), secret).await?;
    Ok(())
}

/// First run in key mode with a working keyring (a private gnome-keyring):
/// the key is kept, then the first set.
async fn onboard_with_keyring(s: &Session, repo: &Path, src: &Path) -> TestResult {
    s.testid("onboarding-screen").await?;
    s.click("onboard-mode-key").await?;
    s.type_in("onboard-repo-path", repo.to_str().unwrap())
        .await?;
    s.click("onboard-create").await?;
    s.testid("onboard-recovery-key").await?;
    let input = s.testid("onboard-confirm-input").await?;
    let n: usize = input.attr("data-group").await?.unwrap().parse()?;
    let group = s.text(&format!("onboard-key-group-{n}")).await?;
    s.type_in("onboard-confirm-input", &group).await?;
    s.click("onboard-confirm").await?;
    s.wait_attr("onboard-keyring-result", "data-saved", "true", 30)
        .await?;
    s.type_in("set-name", "Documents").await?;
    s.type_in("set-sources", src.to_str().unwrap()).await?;
    s.type_in("set-excludes", "*.tmp").await?;
    s.finish_first_set(None).await
}

/// The set form with an S3 destination: Test connection tells a wrong
/// secret apart (`CF-O003`, its message and next step), passes with the
/// right one; saved, the secret is in neither settings.json nor the log;
/// then "Back up now" uploads with its bytes shown while it runs.
#[tokio::test(flavor = "multi_thread")]
async fn offsite_set_form_test_connection_and_backup_with_upload_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let g = garage(&tmp.path().join("garage"));
    let keyring = coffer_testenv::start_keyring();
    let env = [("DBUS_SESSION_BUS_ADDRESS", keyring.address.as_str())];
    let name = "offsite_set_form_test_connection_and_backup_with_upload_progress";
    run_with_env(name, &[], &env, |s| async move {
        let src = make_source(&s.data_dir, 40);
        let repo = s.data_dir.join("coffer.db");
        onboard_with_keyring(&s, &repo, &src).await?;
        s.go("backups").await?;
        s.click("set-edit-set-1").await?;
        assert_eq!(s.text("set-offsite-set-1").await?, "none");
        fill_s3(&s, "set-remote", &g, WRONG_SECRET).await?;
        s.click("set-remote-test").await?;
        s.wait_attr("set-remote-test-result", "data-state", "error", 60)
            .await?;
        assert_eq!(s.text("error-code").await?, "CF-O003");
        assert!(s.text("error-message").await?.contains("credentials"));
        assert!(s.text("error-next-step").await?.contains("secret"));
        s.shot("offsite-test-wrong-secret").await?;
        s.type_in("set-remote-secret", &g.secret).await?;
        s.click("set-remote-test").await?;
        s.wait_attr("set-remote-test-result", "data-state", "ok", 60)
            .await?;
        assert!(s
            .text("set-remote-test-ok")
            .await?
            .contains("No Coffer copy is there yet"));
        // An upload limit that is not a number is refused, not saved as
        // "no limit"; 20 MB/s is kept and shown on the card.
        s.type_in("set-remote-upload-limit", "fast").await?;
        s.click("set-save").await?;
        s.wait_text("error-code", "CF-A094").await?;
        assert!(!contains(
            &std::fs::read(s.data_dir.join("settings.json"))?,
            g.bucket.as_bytes()
        ));
        s.type_in("set-remote-upload-limit", "20").await?;
        s.shot("offsite-set-form").await?;
        s.click("set-save").await?;
        s.wait_text("set-offsite-set-1", &g.bucket).await?;
        assert_eq!(s.text("set-upload-limit-set-1").await?, "20 MB/s");

        // Saved: settings.json holds the destination, not the secret.
        let settings = std::fs::read(s.data_dir.join("settings.json"))?;
        assert!(contains(&settings, g.bucket.as_bytes()));
        assert!(!contains(&settings, g.secret.as_bytes()));
        assert!(!contains(&settings, WRONG_SECRET.as_bytes()));
        assert!(contains(&settings, b"\"upload_limit\": 20000000"));

        // Back up: the upload's bytes are shown while it runs.
        s.click("set-run-set-1").await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen_uploading = Vec::new();
        loop {
            let state = s
                .testid("job-progress")
                .await?
                .attr("data-state")
                .await?
                .unwrap_or_default();
            let t = s.testid("job-transfer").await?;
            let done: u64 = t.attr("data-done").await?.unwrap_or_default().parse()?;
            let total: u64 = t.attr("data-total").await?.unwrap_or_default().parse()?;
            if state == "running" && total > 0 {
                seen_uploading.push((done, total));
            }
            // Empty: the click's first event has not reached the panel yet.
            if !state.is_empty() && state != "running" {
                assert_eq!(state, "done");
                break;
            }
            assert!(Instant::now() < deadline, "the backup did not end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = s.testid("job-transfer").await?;
        let done: u64 = t.attr("data-done").await?.unwrap_or_default().parse()?;
        let total: u64 = t.attr("data-total").await?.unwrap_or_default().parse()?;
        assert!(done >= 40 << 20 && done == total, "{done} of {total}");
        assert!(s.text("job-transfer").await?.contains("uploaded"));
        let summary = s.text("job-upload-summary").await?;
        assert!(summary.contains("Off-site copy updated"), "{summary}");
        println!(
            "upload: {done} bytes; {} progress readings while uploading",
            seen_uploading.len()
        );
        assert!(
            !seen_uploading.is_empty(),
            "no upload progress was shown while the backup ran"
        );
        s.shot("offsite-backup-uploaded").await?;

        // The log (the app's stderr in the driver's log) has no secret.
        let log = std::fs::read(&s.log)?;
        assert!(
            contains(&log, b"off-site credentials kept"),
            "the app's log is not in {}",
            s.log.display()
        );
        assert!(!contains(&log, g.secret.as_bytes()));
        assert!(!contains(&log, WRONG_SECRET.as_bytes()));
        TestResult::Ok(())
    })
    .await;
    drop(keyring);
}

/// The Recovery wizard on a fresh data directory, from the off-site copy
/// alone: a wrong secret is refused with its code before anything is
/// written, then the recovery key opens the copy, its snapshot is listed
/// and the files are restored bit-exact (their data downloaded then).
#[tokio::test(flavor = "multi_thread")]
async fn recovery_wizard_restores_from_the_offsite_copy_on_a_fresh_data_dir() {
    let old = tempfile::tempdir().unwrap();
    let g = garage(&old.path().join("garage"));
    let (repo, key, src) = old_computer(old.path());
    // The old computer uploaded its repository to the copy (on a thread of
    // its own: the blocking API runs its own runtime, not inside this one).
    let (key2, repo2) = (key.clone(), repo.clone());
    let (endpoint, region, bucket) = (g.endpoint.clone(), g.region.clone(), g.bucket.clone());
    let (key_id, secret) = (g.key_id.clone(), g.secret.clone());
    std::thread::spawn(move || {
        let (key, repo) = (key2, repo2);
        let r = Repository::open(&repo)
            .unwrap()
            .unlock_with_key(RecoveryKey::parse(&key).unwrap().into_master_key())
            .unwrap();
        let dest = Destination::S3 {
            endpoint,
            region,
            bucket,
            prefix: "laptop".into(),
        };
        let creds = RemoteCredentialsInput::S3 {
            access_key_id: key_id,
            secret_access_key: secret,
        }
        .to_credentials()
        .unwrap();
        let remote = Remote::open(dest, creds, Default::default()).unwrap();
        r.remote_init(&remote).unwrap();
        r.push(&remote, &NoProgress, &CancelToken::new()).unwrap();
    })
    .join()
    .unwrap();
    // The old disk is gone.
    std::fs::remove_file(&repo).unwrap();
    let name = "recovery_wizard_restores_from_the_offsite_copy_on_a_fresh_data_dir";
    run_with(name, NO_KEYRING, |s| async move {
        s.testid("onboarding-screen").await?;
        s.click("onboard-go-recovery").await?;
        s.testid("recovery-screen").await?;
        fill_s3(&s, "recovery-remote", &g, WRONG_SECRET).await?;
        let local = s.data_dir.join("recovered/coffer.db");
        s.type_in("recovery-remote-repo-path", local.to_str().unwrap())
            .await?;
        s.type_in("recovery-remote-key", &key).await?;
        s.click("recovery-remote-unlock").await?;
        assert_eq!(s.text("error-code").await?, "CF-O003");
        assert!(
            !local.exists(),
            "nothing is written before the copy is reached"
        );
        s.type_in("recovery-remote-secret", &g.secret).await?;
        s.click("recovery-remote-test").await?;
        s.wait_attr("recovery-remote-test-result", "data-state", "ok", 60)
            .await?;
        assert!(s
            .text("recovery-remote-test-ok")
            .await?
            .contains("A Coffer copy is there"));
        s.click("recovery-remote-unlock").await?;
        s.wait_text("recovery-remote-ok", "1 snapshot found")
            .await?;
        assert_eq!(
            s.testid("recovery-remote-key")
                .await?
                .prop("value")
                .await?
                .as_deref(),
            Some("")
        );
        s.shot("recovery-offsite").await?;
        s.click("recovery-remote-go-snapshots").await?;
        s.testid("snapshot-row").await?;
        let out = s.data_dir.join("restored");
        s.type_in("restore-target", out.to_str().unwrap()).await?;
        s.click("restore-run").await?;
        s.wait_text("restore-done", "Restored 2 files").await?;
        let back = out.join(src.strip_prefix("/")?);
        assert_eq!(std::fs::read(back.join("docs/letter.txt"))?, b"dear reader");
        assert_eq!(std::fs::read(back.join("notes.md"))?, b"# notes");
        assert!(!back.join("scratch.tmp").exists());
        let settings = std::fs::read(s.data_dir.join("settings.json")).unwrap_or_default();
        assert!(!contains(&settings, g.secret.as_bytes()));
        TestResult::Ok(())
    })
    .await;
}

/// The set form with an SFTP destination against a real OpenSSH sshd: the
/// first Test connection names the server's host key (`CF-O008`), *Trust*
/// fills it in, the second test passes with the private key file, and a
/// backup uploads over SFTP.
#[tokio::test(flavor = "multi_thread")]
async fn offsite_sftp_set_confirms_the_host_key_then_backs_up() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = coffer_testenv::servers::Sshd::start(&tmp.path().join("sshd"));
    let key_file = tmp.path().join("id_ed25519");
    std::fs::write(&key_file, &sshd.client_key).unwrap();
    let keyring = coffer_testenv::start_keyring();
    let env = [("DBUS_SESSION_BUS_ADDRESS", keyring.address.as_str())];
    let name = "offsite_sftp_set_confirms_the_host_key_then_backs_up";
    run_with_env(name, &[], &env, |s| async move {
        let src = make_source(&s.data_dir, 0);
        let repo = s.data_dir.join("coffer.db");
        onboard_with_keyring(&s, &repo, &src).await?;
        s.go("backups").await?;
        s.click("set-edit-set-1").await?;
        s.testid("set-remote-type")
            .await?
            .select_by_value("sftp")
            .await?;
        s.type_in("set-remote-host", "127.0.0.1").await?;
        s.type_in("set-remote-port", &sshd.port.to_string()).await?;
        s.type_in("set-remote-user", &sshd.user).await?;
        let folder = sshd.root.join("copy");
        s.type_in("set-remote-path", folder.to_str().unwrap())
            .await?;
        s.type_in("set-remote-key-file", key_file.to_str().unwrap())
            .await?;
        s.click("set-remote-test").await?;
        s.wait_attr("set-remote-test-result", "data-state", "error", 60)
            .await?;
        assert_eq!(s.text("error-code").await?, "CF-O008");
        assert!(s
            .text("error-message")
            .await?
            .contains(&sshd.host_fingerprint));
        s.click("set-remote-trust-host-key").await?;
        assert_eq!(
            s.testid("set-remote-host-key")
                .await?
                .prop("value")
                .await?
                .as_deref(),
            Some(sshd.host_fingerprint.as_str())
        );
        s.click("set-remote-test").await?;
        s.wait_attr("set-remote-test-result", "data-state", "ok", 60)
            .await?;
        s.click("set-save").await?;
        s.wait_text("set-offsite-set-1", "sftp://").await?;
        let settings = std::fs::read_to_string(s.data_dir.join("settings.json"))?;
        assert!(settings.contains(&sshd.host_fingerprint));
        assert!(!settings.contains(key_file.to_str().unwrap()));
        s.click("set-run-set-1").await?;
        s.wait_attr("job-progress", "data-state", "done", 120)
            .await?;
        let bytes: u64 = s
            .testid("job-upload-summary")
            .await?
            .attr("data-bytes")
            .await?
            .unwrap_or_default()
            .parse()?;
        assert!(bytes > 0);
        assert!(folder.join("config").exists(), "the copy is on the server");
        TestResult::Ok(())
    })
    .await;
    drop(keyring);
}
