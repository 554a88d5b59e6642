//! WebDriver tests of the desktop app (tauri-driver + WebKitWebDriver, under
//! Xvfb). See docs/ui-testing.md for how to run and write them.
//!
//! Every flow runs for real: a real repository file, real backups and
//! restores on disk. The app is started with `--no-keyring`, so the tests are
//! deterministic whatever keyring the machine has, and they check that
//! "keyring unavailable" is its own error and the app keeps working. The
//! vault-mode flow with the local demo fleet is the exception: that fleet
//! keeps its root key in the OS keyring (it does not run without one), so
//! it runs against a private unlocked gnome-keyring of its own.

mod a11y;
mod dialog;
mod harness;
mod offsite;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{run, run_prepared, run_with, run_with_env, Session, TestResult};

const NO_KEYRING: &[&str] = &["--no-keyring"];

/// A folder to back up: a letter, notes, a file to exclude, and (with
/// `bulk_mib` > 0) that many MiB of incompressible files so a backup takes
/// long enough to be cancelled.
fn make_source(dir: &Path, bulk_mib: usize) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("docs/letter.txt"), b"dear reader").unwrap();
    std::fs::write(src.join("notes.md"), b"# notes").unwrap();
    std::fs::write(src.join("scratch.tmp"), b"junk").unwrap();
    if bulk_mib > 0 {
        std::fs::create_dir_all(src.join("bulk")).unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..bulk_mib {
            for c in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            std::fs::write(src.join(format!("bulk/part-{i:04}.bin")), &buf).unwrap();
        }
    }
    src
}

/// The newest code a remote fleet mailed to `account`, read from its outbox
/// as the user reads their mail (delivery runs apart from the answer, so
/// it is waited for, up to 10 s).
/// `replaced`: a code already read, which a newer mail replaces.
pub(crate) async fn mail_code(outbox: &Path, account: &str, replaced: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = coffer_vault::account::outbox_code(outbox, account) {
            if Some(code.as_str()) != replaced {
                return code.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no code mailed to {account} in {}",
            outbox.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// First run in key mode through the UI; returns the recovery key as shown.
async fn onboard(
    s: &Session,
    repo: &Path,
    src: &Path,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    s.testid("onboarding-screen").await?;
    s.shot("onboarding-choose").await?;
    s.click("onboard-mode-key").await?;
    s.type_in("onboard-repo-path", repo.to_str().unwrap())
        .await?;
    let folder = repo.parent().unwrap();
    let folder_missing = !folder.exists();
    s.click("onboard-create").await?;
    if folder_missing {
        // A folder that is not there (an unplugged disk's mount point) is
        // not made unasked: the app asks; Cancel makes nothing.
        let d = s.testid("confirm-dialog").await?;
        assert_eq!(
            d.attr("data-for").await?.as_deref(),
            Some("onboard-create-folder")
        );
        assert!(s.text("confirm-dialog").await?.contains("does not exist"));
        assert_eq!(s.text("confirm-ok").await?, "Create folder");
        s.shot("onboarding-create-folder").await?;
        s.click("confirm-cancel").await?;
        s.wait_text("error-code", "CF-A097").await?;
        assert!(!folder.exists(), "a folder was made unasked");
        s.click("onboard-create").await?;
        s.click("confirm-ok").await?;
    }
    s.testid("onboard-recovery-key").await?;
    let mut groups = Vec::new();
    for i in 1..=17 {
        groups.push(s.text(&format!("onboard-key-group-{i}")).await?);
    }
    assert!(groups.iter().all(|g| g.len() == 4), "{groups:?}");
    s.shot("onboarding-recovery-key").await?;
    let input = s.testid("onboard-confirm-input").await?;
    let n: usize = input.attr("data-group").await?.unwrap().parse()?;
    // A wrong group is refused with its own code.
    let wrong = if groups[n - 1] == "0000" {
        "1111"
    } else {
        "0000"
    };
    s.type_in("onboard-confirm-input", wrong).await?;
    s.click("onboard-confirm").await?;
    assert_eq!(s.text("error-code").await?, "CF-A052");
    s.type_in("onboard-confirm-input", &groups[n - 1]).await?;
    s.click("onboard-confirm").await?;
    // No keyring: its own error and next step; the app continues.
    s.wait_attr("onboard-keyring-result", "data-saved", "false", 15)
        .await?;
    let panel = s.testid("error-panel").await?;
    assert_eq!(
        panel.attr("data-error-kind").await?.as_deref(),
        Some("keyring_unavailable")
    );
    assert_eq!(s.text("error-code").await?, "CF-A010");
    assert!(s.text("error-next-step").await?.contains("keyring"));
    s.type_in("set-name", "Documents").await?;
    s.type_in("set-sources", src.to_str().unwrap()).await?;
    s.type_in("set-excludes", "*.tmp").await?;
    assert_eq!(
        s.testid("set-repository")
            .await?
            .prop("value")
            .await?
            .as_deref(),
        repo.to_str()
    );
    s.finish_first_set(Some("onboarding-first-set")).await?;
    Ok(groups.join("-"))
}

/// Runs "Back up now" for set-1 and waits for the job to end.
async fn back_up(s: &Session, want: &str) -> TestResult {
    s.go("backups").await?;
    s.click("set-run-set-1").await?;
    s.wait_attr("job-progress", "data-state", want, 60).await
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_home_screen_round_trip() {
    run("smoke_home_screen_round_trip", |s| async move {
        s.go("home").await?;
        let dir = s.text("home-data-dir").await?;
        assert_eq!(
            dir,
            s.data_dir.display().to_string(),
            "the app must use the per-test data directory"
        );
        assert!(
            !s.exists("home-status-loading").await?,
            "the loading text must be gone"
        );
        let vault = s.text("home-vault-label").await?;
        assert!(vault.contains("demo"), "{vault}");
        assert!(s.testid("demo-fleet-badge").await?.is_displayed().await?);
        TestResult::Ok(())
    })
    .await;
}

/// First run in key mode, then a backup with live progress and the
/// snapshot in the list.
#[tokio::test(flavor = "multi_thread")]
async fn first_run_key_mode_then_backup_with_progress() {
    run_with(
        "first_run_key_mode_then_backup_with_progress",
        NO_KEYRING,
        |s| async move {
            let src = make_source(&s.data_dir, 8);
            let repo = s.data_dir.join("backups/coffer.db");
            onboard(&s, &repo, &src).await?;
            assert!(repo.is_file());
            assert!(
                !s.testid("nav-item-onboarding")
                    .await?
                    .is_displayed()
                    .await?,
                "set-up is hidden once done"
            );
            s.wait_text("home-set-sentence-set-1", "No backup yet")
                .await?;
            s.shot("home").await?;
            back_up(&s, "done").await?;
            let summary = s.text("job-summary").await?;
            assert!(
                summary.contains("10 files"),
                "letter, notes and 8 bulk files, not the .tmp: {summary}"
            );
            assert_eq!(s.text("job-files").await?, "10 of 10");
            assert!(s.text("job-bytes").await?.contains("MB"));
            // Ended: the average rate, no phase, no Cancel, no time left.
            let rate = s.text("job-throughput").await?;
            assert!(
                rate.ends_with("/s on average") && !rate.starts_with("0 B"),
                "{rate}"
            );
            assert_eq!(s.text("job-phase").await?, "");
            assert!(!s.testid("job-cancel").await?.is_displayed().await?);
            // The file sits on the disk of the folders, with no off-site
            // copy: the card says what that risks.
            s.wait_text("set-same-disk-set-1", "same disk").await?;
            assert_eq!(s.text("job-eta").await?, "—");
            s.wait_text("set-last-set-1", "finished").await?;
            s.shot("backups").await?;
            s.go("snapshots").await?;
            s.testid("snapshot-row").await?;
            assert_eq!(s.all("snapshot-row").await?.len(), 1);
            assert_eq!(s.text("snapshot-files").await?, "10");
            // The smallest supported window still shows the screen.
            s.client.set_window_size(800, 600).await?;
            s.go("home").await?;
            s.shot("home-800x600").await?;
            s.go("backups").await?;
            s.shot("backups-800x600").await?;
            assert!(s.testid("set-run-set-1").await?.is_displayed().await?);
            TestResult::Ok(())
        },
    )
    .await;
}

/// Browse the tree, search, choose one file, preview, restore, check.
#[tokio::test(flavor = "multi_thread")]
async fn restore_chosen_files_with_preview_and_check() {
    run_with(
        "restore_chosen_files_with_preview_and_check",
        NO_KEYRING,
        |s| async move {
            let src = make_source(&s.data_dir, 0);
            let repo = s.data_dir.join("coffer.db");
            onboard(&s, &repo, &src).await?;
            back_up(&s, "done").await?;
            s.go("snapshots").await?;
            // The newest snapshot opens by itself, one folder level at a
            // time: walk down to the backed-up folder, where only its own
            // entries show (folders first), with short names.
            s.testid("tree-entry").await?;
            let want = src.to_str().unwrap().to_string();
            // The listing read in one go (a folder opening replaces it).
            let listing = || async {
                let v = s
                    .client
                    .execute(
                        "return Array.from(document.querySelectorAll('[data-testid=\"tree-entry\"]'))
                           .map(e => e.getAttribute('data-path'));",
                        vec![],
                    )
                    .await?;
                Ok::<Vec<String>, fantoccini::error::CmdError>(
                    serde_json::from_value(v).unwrap_or_default(),
                )
            };
            for _ in 0..20 {
                let here = listing().await?;
                if here.iter().any(|p| p == &format!("{want}/notes.md")) {
                    assert_eq!(
                        here,
                        [format!("{want}/docs"), format!("{want}/notes.md")],
                        "one level, folders first"
                    );
                    break;
                }
                let next = here
                    .iter()
                    .find(|p| **p == want || want.starts_with(&format!("{p}/")))
                    .unwrap_or_else(|| panic!("no way down to {want} in {here:?}"));
                s.client
                    .find(fantoccini::Locator::Css(&format!(
                        "[data-testid=\"tree-entry\"][data-path=\"{next}\"] [data-testid=\"tree-open\"]"
                    )))
                    .await?
                    .click()
                    .await?;
                let shown = Instant::now() + Duration::from_secs(10);
                while listing().await? == here {
                    assert!(Instant::now() < shown, "the folder did not open");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let label = s.text("tree-entry").await?;
            assert!(label.starts_with("docs"), "a short name: {label}");
            // The breadcrumbs lead back up: the first is the snapshot's top.
            let crumbs = s.all("tree-crumb").await?;
            assert!(crumbs.len() >= 3, "{} crumbs", crumbs.len());
            crumbs[0].click().await?;
            let top = Instant::now() + Duration::from_secs(10);
            while s.all("tree-crumb").await?.len() != 1 {
                assert!(Instant::now() < top, "the top did not open");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s.click("tree-open").await?;
            s.testid("tree-up").await?;
            s.click("tree-up").await?;
            s.type_in("search-input", "letter.txt").await?;
            s.click("search-run").await?;
            let hit = s.testid("search-select").await?;
            let path = hit.attr("data-path").await?.unwrap();
            assert!(path.ends_with("/docs/letter.txt"), "{path}");
            hit.click().await?;
            s.wait_text("restore-selection", "1 chosen").await?;
            let out = s.data_dir.join("restored");
            s.type_in("restore-target", out.to_str().unwrap()).await?;
            s.click("restore-preview").await?;
            let summary = s.wait_text("restore-plan-summary", "1 file,").await?;
            assert!(summary.contains(out.to_str().unwrap()), "{summary}");
            s.wait_text("restore-plan", "letter.txt").await?;
            let restored = out.join(path.trim_start_matches('/'));
            assert!(!restored.exists(), "a preview writes nothing");
            s.shot("snapshots").await?;
            s.click("restore-run").await?;
            s.wait_text("restore-done", "Restored 1 file (").await?;
            assert_eq!(std::fs::read(&restored)?, b"dear reader");
            assert!(
                !out.join(src.strip_prefix("/")?).join("notes.md").exists(),
                "only the chosen file"
            );

            // Back to where it was backed up, where the user changed it
            // since. Keep both (the default) puts the snapshot's copy beside.
            std::fs::write(&path, b"edited since")?;
            let beside = path.replace("letter.txt", "letter (restored).txt");
            s.testid("restore-where").await?.select_by_value("original").await?;
            assert!(!s.testid("restore-target").await?.is_displayed().await?);
            s.click("restore-preview").await?;
            s.wait_attr("restore-plan-summary", "data-conflicts", "1", 10).await?;
            let items = s.all("restore-plan-item").await?;
            let item = items.last().unwrap();
            assert_eq!(item.attr("data-path").await?.as_deref(), Some(path.as_str()));
            assert_eq!(item.attr("data-action").await?.as_deref(), Some("keep_both"));
            // The folders above it are there already: used, not made.
            assert_eq!(items[0].attr("data-action").await?.as_deref(), Some("use_folder"));
            assert!(s.text("restore-plan").await?.contains("folder already there: /tmp"));
            assert!(item.text().await?.ends_with(&beside), "{}", item.text().await?);
            s.shot("restore-choices").await?;
            s.click("restore-run").await?;
            s.wait_text("restore-done", "original location").await?;
            assert_eq!(std::fs::read(&path)?, b"edited since");
            assert_eq!(std::fs::read(&beside)?, b"dear reader");
            // Skip leaves it and says so.
            s.testid("restore-existing").await?.select_by_value("skip").await?;
            s.click("restore-run").await?;
            s.wait_text("restore-done", "1 item already there was left").await?;
            assert_eq!(std::fs::read(&path)?, b"edited since");
            // Replace asks first; Cancel changes nothing, the verb replaces.
            s.testid("restore-existing").await?.select_by_value("replace").await?;
            s.click("restore-run").await?;
            let d = s.testid("confirm-dialog").await?;
            assert_eq!(d.attr("data-for").await?.as_deref(), Some("restore-replace"));
            assert!(s.text("confirm-dialog").await?.contains("Replace 1 item"));
            s.click("confirm-cancel").await?;
            assert_eq!(std::fs::read(&path)?, b"edited since");
            s.click("restore-run").await?;
            s.click("confirm-ok").await?;
            s.wait_text("restore-done", "Restored 1 file (").await?;
            assert_eq!(std::fs::read(&path)?, b"dear reader");
            std::fs::remove_file(&beside)?;
            s.click("check-run").await?;
            s.wait_attr("check-summary", "data-ok", "true", 30).await?;
            // The panel counts what the check did: the files it walked and
            // the data it read, not packs shown as bytes.
            assert_eq!(s.text("check-job-files").await?, "2 of 2");
            let data = s.text("check-job-bytes").await?;
            let (read, of) = data.split_once(" of ").unwrap_or_default();
            // The bytes of the sealed pack read (46 B for two short
            // files), not a count of packs ("1 B of 1 B" before).
            assert!(read == of && read != "1 B" && read != "0 B", "{data}");
            assert_eq!(s.text("check-job-phase").await?, "");
            // Retention preview with "keep last 1" keeps the only snapshot.
            s.click("retention-preview").await?;
            s.wait_text("retention-summary", "Would keep 1").await?;

            // A second snapshot with the letter changed: search shows the
            // file once, with how many snapshots have it; its versions
            // list both, and the older one restores by itself.
            std::fs::write(&path, b"second draft")?;
            back_up(&s, "done").await?;
            s.go("snapshots").await?;
            s.type_in("search-input", "letter.txt").await?;
            s.click("search-run").await?;
            s.wait_attr("search-entry", "data-snapshots", "2", 10).await?;
            assert_eq!(s.all("search-entry").await?.len(), 1, "one row per file");
            assert!(s.text("search-count").await?.contains("1 match"));
            s.click("search-versions").await?;
            s.testid("versions-list").await?;
            let rows = s.all("version-row").await?;
            assert_eq!(rows.len(), 2, "two versions");
            s.shot("versions").await?;
            let older = rows[1].attr("data-snapshot").await?.unwrap();
            rows[1].find(fantoccini::Locator::Css("[data-testid=\"version-restore\"]")).await?.click().await?;
            s.wait_text("restore-selection", "the version of").await?;
            s.testid("restore-where").await?.select_by_value("folder").await?;
            let out2 = s.data_dir.join("older");
            s.type_in("restore-target", out2.to_str().unwrap()).await?;
            s.click("restore-run").await?;
            s.wait_text("restore-done", "Restored 1 file (").await?;
            assert_eq!(std::fs::read(out2.join(path.trim_start_matches('/')))?, b"dear reader");
            assert!(older.len() >= 8);

            // The key forgotten (no keyring here): the error links to the
            // Recovery wizard, which already names the backup file.
            s.go("settings").await?;
            s.click("settings-lock").await?;
            s.go("snapshots").await?;
            s.click("error-unlock-link").await?;
            s.testid("recovery-screen").await?;
            let known = repo.to_str().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let v = s.testid("recovery-repo-path").await?.prop("value").await?;
                if v.as_deref() == Some(known) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the backup file is not filled in: {v:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            TestResult::Ok(())
        },
    )
    .await;
}

/// Cancel a running backup: it ends as cancelled and leaves no snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_a_running_backup() {
    run_with("cancel_a_running_backup", NO_KEYRING, |s| async move {
        let src = make_source(&s.data_dir, 400);
        let repo = s.data_dir.join("coffer.db");
        onboard(&s, &repo, &src).await?;
        s.go("backups").await?;
        s.click("set-run-set-1").await?;
        s.wait_attr("job-progress", "data-state", "running", 20)
            .await?;
        s.click("job-cancel").await?;
        s.wait_attr("job-progress", "data-state", "cancelled", 60)
            .await?;
        assert_eq!(s.text("error-code").await?, "CF-R014");
        s.wait_text("set-last-set-1", "cancelled").await?;
        s.go("snapshots").await?;
        s.testid("snapshots-empty").await?;
        TestResult::Ok(())
    })
    .await;
}

/// Makes a repository with one snapshot outside the UI (the "old computer"),
/// returning its recovery key.
fn old_computer(dir: &Path) -> (PathBuf, String, PathBuf) {
    let src = make_source(dir, 0);
    let repo = dir.join("usb/coffer.db");
    let app = coffer_app::App::with_parts(
        dir.join("old-data"),
        Arc::new(coffer_app::keyring::OsKeyring::with_backends(vec![])),
        Arc::new(coffer_app::jobs::NoEvents),
    )
    .unwrap();
    let k = app
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let g = k.groups[k.confirm_group as usize - 1].clone();
    app.confirm_recovery_key(k.confirm_group, &g).unwrap();
    let mut set = coffer_app::settings::BackupSetInput {
        name: "Documents".into(),
        sources: vec![src.clone()],
        excludes: vec!["*.tmp".into()],
        repository: repo.clone(),
        schedule: coffer_app::schedule::Schedule::Manual.into(),
        retention: coffer_app::settings::Retention::default(),
        remote: None,
        upload_limit: None,
    };
    set.retention.keep_last = 3;
    app.complete_onboarding(set).unwrap();
    let job = app.run_backup("set-1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.job_status(job).unwrap().state == coffer_app::jobs::JobState::Running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    (repo, k.groups.join("-"), src)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `roots` is searched for the recovery key and K (raw, hex,
/// base64); none may hold them.
fn assert_no_secrets(roots: &[&Path], key: &str) {
    let digits: String = key.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let k = hex_decode(&digits[..64]);
    let b64 = |bytes: &[u8], alphabet: &[u8; 64]| -> Vec<u8> {
        let mut out = Vec::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize]);
            }
        }
        out
    };
    let std_alpha = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let url_alpha = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let needles: Vec<Vec<u8>> = vec![
        key.as_bytes().to_vec(),
        digits.as_bytes().to_vec(),
        digits.as_bytes()[..64].to_vec(),
        digits[..64].to_uppercase().into_bytes(),
        k.clone(),
        b64(&k, std_alpha),
        b64(&k, url_alpha),
    ];
    let mut scanned = 0;
    for root in roots {
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            } else if meta.is_file() {
                scanned += 1;
                let data = std::fs::read(&p).unwrap();
                for n in &needles {
                    assert!(
                        !contains(&data, n),
                        "{} holds the recovery key or K",
                        p.display()
                    );
                }
            }
        }
    }
    assert!(scanned >= 3, "only {scanned} files scanned");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Recovery on a fresh data directory: a typo caught by the checksum, a
/// wrong key told apart, then the right key, browse and restore; afterwards
/// no file anyone wrote holds the recovery key or K.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_on_a_fresh_data_dir_with_typo_and_wrong_key() {
    let old = tempfile::tempdir().unwrap();
    let (repo, key, src) = old_computer(old.path());
    let old_root = old.path().to_path_buf();
    run_with(
        "recovery_on_a_fresh_data_dir_with_typo_and_wrong_key",
        NO_KEYRING,
        |s| async move {
            s.testid("onboarding-screen").await?;
            s.click("onboard-go-recovery").await?;
            s.testid("recovery-screen").await?;
            s.type_in("recovery-repo-path", repo.to_str().unwrap())
                .await?;
            // One changed digit in group 3.
            let mut typo = key.clone().into_bytes();
            typo[11] = if typo[11] == b'a' { b'b' } else { b'a' };
            s.type_in("recovery-key-input", std::str::from_utf8(&typo)?)
                .await?;
            s.click("recovery-unlock").await?;
            assert_eq!(s.text("error-code").await?, "CF-R002");
            assert!(s.text("error-message").await?.contains("group 3"));
            s.shot("recovery-typo").await?;
            // A valid key of another repository: a wrong key, not a typo.
            let other = coffer_app::coffer_repo::MasterKey::from_bytes([7; 32])
                .recovery_key()
                .to_display_string()
                .to_string();
            s.type_in("recovery-key-input", &other).await?;
            s.click("recovery-unlock").await?;
            s.wait_attr("error-panel", "data-error-kind", "wrong_recovery_key", 15)
                .await?;
            assert_eq!(s.text("error-code").await?, "CF-R001");
            s.type_in("recovery-key-input", &key.to_uppercase().replace('-', " "))
                .await?;
            s.click("recovery-unlock").await?;
            s.wait_text("recovery-ok", "1 snapshot found").await?;
            assert!(s.text("recovery-keyring").await?.contains("CF-A010"));
            assert_eq!(
                s.testid("recovery-key-input")
                    .await?
                    .prop("value")
                    .await?
                    .as_deref(),
                Some("")
            );
            // The set travelled in the file: the new computer carries on
            // with it instead of starting from nothing.
            let found = s.wait_text("recovery-sets-found", "Documents").await?;
            assert!(
                found.contains(src.to_str().unwrap()) && found.contains("manual only"),
                "{found}"
            );
            assert!(
                s.testid("nav-item-onboarding")
                    .await?
                    .is_displayed()
                    .await?
            );
            s.client
                .execute(
                    "document.querySelector('[data-testid=\"recovery-carry-on\"]').scrollIntoView({block: 'center'})",
                    vec![],
                )
                .await?;
            s.shot("recovery-carry-on").await?;
            s.click("recovery-keep-backing-up").await?;
            s.wait_text("recovery-carry-on-done", "again: Documents")
                .await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while s
                .testid("nav-item-onboarding")
                .await?
                .is_displayed()
                .await?
            {
                assert!(Instant::now() < deadline, "Set up is still offered");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s.go("backups").await?;
            let card = s.testid("set-card-set-1").await?;
            assert_eq!(
                card.attr("data-set-name").await?.as_deref(),
                Some("Documents")
            );
            assert!(card.text().await?.contains(repo.to_str().unwrap()));
            s.go("recovery").await?;
            s.go("snapshots").await?;
            s.testid("snapshot-row").await?;
            let out = s.data_dir.join("restored");
            s.type_in("restore-target", out.to_str().unwrap()).await?;
            s.click("restore-run").await?;
            s.wait_text("restore-done", "Restored 2 files").await?;
            let back = out.join(src.strip_prefix("/")?);
            assert_eq!(std::fs::read(back.join("docs/letter.txt"))?, b"dear reader");
            assert!(!back.join("scratch.tmp").exists());
            s.go("support").await?;
            s.wait_attr("guide-step-restore", "data-done", "true", 15)
                .await?;
            s.shot("support").await?;
            assert_no_secrets(&[&s.data_dir, &old_root], &key);
            TestResult::Ok(())
        },
    )
    .await;
}

/// Support: an error shows code, sentence and next step and links to the
/// catalog; the diagnostics report names recent error codes and holds no
/// secret, also when saved.
#[tokio::test(flavor = "multi_thread")]
async fn support_view_codes_and_diagnostics_without_secrets() {
    run_with(
        "support_view_codes_and_diagnostics_without_secrets",
        NO_KEYRING,
        |s| async move {
            let src = make_source(&s.data_dir, 0);
            let repo = s.data_dir.join("coffer.db");
            let key = onboard(&s, &repo, &src).await?;
            s.go("recovery").await?;
            s.type_in("recovery-repo-path", "not/absolute.db").await?;
            s.type_in("recovery-key-input", &key).await?;
            s.click("recovery-unlock").await?;
            assert_eq!(s.text("error-code").await?, "CF-A056");
            assert!(s.text("error-next-step").await?.contains("full path"));
            s.click("error-support-link").await?;
            s.testid("support-screen").await?;
            s.wait_text("support-kind", "invalid_input").await?;
            assert_eq!(
                s.testid("support-code-input")
                    .await?
                    .prop("value")
                    .await?
                    .as_deref(),
                Some("CF-A056")
            );
            s.type_in("support-code-input", "cf-a010").await?;
            s.click("support-lookup").await?;
            s.wait_text("support-kind", "keyring_unavailable").await?;
            assert!(!s.text("support-what-to-do").await?.is_empty());
            s.type_in("support-code-input", "CF-Q999").await?;
            s.click("support-lookup").await?;
            assert_eq!(s.text("error-code").await?, "CF-A057");
            s.click("support-refresh").await?;
            let report = s.wait_text("support-diagnostics", "CF-A056").await?;
            assert!(
                report.contains("no recovery code, recovery key or backup key"),
                "{report}"
            );
            let digits: String = key.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            assert!(!report.contains(&key) && !report.to_lowercase().contains(&digits[..64]));
            s.click("support-save").await?;
            let saved = s.text("support-saved-path").await?;
            assert!(Path::new(&saved).starts_with(&s.data_dir));
            // The computer that made the backups entered no key (its key
            // came from first run): the guide's key step is not done.
            assert_eq!(
                s.testid("guide-step-key")
                    .await?
                    .attr("data-done")
                    .await?
                    .as_deref(),
                Some("false")
            );
            // Settings: the data folder, and a recovery rehearsal with the key.
            s.go("settings").await?;
            assert_eq!(
                s.text("settings-data-dir").await?,
                s.data_dir.display().to_string()
            );
            s.type_in("rehearse-key-input", &key).await?;
            s.click("rehearse-run").await?;
            s.wait_text("rehearse-ok", "opens your backup file").await?;
            s.shot("settings").await?;
            // Verification: every check listed, none claimed as passed.
            s.go("verification").await?;
            for id in [
                "witness-signature",
                "operator-countersignature",
                "inclusion",
                "consistency",
                "validity",
                "deployment-evidence",
            ] {
                let c = s.testid(&format!("verification-check-{id}")).await?;
                assert_eq!(c.attr("data-status").await?.as_deref(), Some("not_run"));
            }
            s.wait_text("verification-mode", "no vault").await?;
            s.shot("verification").await?;
            assert_no_secrets(&[&s.data_dir], &key);
            // Settings: move the data folder (a copy, checked; the pointer in
            // this run's own XDG_CONFIG_HOME; a restart is needed).
            s.go("settings").await?;
            s.type_in("data-dir-target", "relative/folder").await?;
            s.click("data-dir-move").await?;
            s.wait_text("error-code", "CF-A080").await?;
            let moved = s.config_dir.join("moved-data");
            s.type_in("data-dir-target", &moved.display().to_string())
                .await?;
            s.click("data-dir-move").await?;
            let msg = s.wait_text("data-dir-moved", "start it again").await?;
            assert!(msg.contains(&moved.display().to_string()), "{msg}");
            assert_eq!(
                std::fs::read(moved.join("settings.json"))?,
                std::fs::read(s.data_dir.join("settings.json"))?
            );
            let pointer = std::fs::read_to_string(s.config_dir.join("coffer/data-dir"))?;
            assert_eq!(pointer.trim(), moved.display().to_string());
            TestResult::Ok(())
        },
    )
    .await;
}

const UNTHROTTLED_FLEET_ENV: &str = "COFFER_WD_UNTHROTTLED_FLEET";

/// Run by `vault_mode_first_run_and_recovery_with_attempts_remaining` in a
/// child process on its private keyring's bus: makes the demo fleet in the
/// folder `$COFFER_WD_UNTHROTTLED_FLEET` with its root key in the keyring
/// (as the app does, `coffer_app::keyring::demo_fleet_root_key`) and no
/// time throttle. Outside that child it does nothing.
#[tokio::test(flavor = "multi_thread")]
async fn make_an_unthrottled_demo_fleet_in_a_child() {
    let Some(dir) = std::env::var_os(UNTHROTTLED_FLEET_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let id = coffer_vault::demo_keys::ensure_folder_id(&dir).unwrap();
    let keystore = coffer_app::keyring::OsKeyring::new();
    let root = coffer_app::keyring::demo_fleet_root_key(&keystore, &dir, &id, false).unwrap();
    let vault = coffer_vault::embedded::start_opts(
        &dir,
        &root,
        coffer_vault::embedded::EMBEDDED_NODES,
        10,
        Some(vec![]),
    )
    .await
    .unwrap();
    vault.shutdown().await;
    println!("{}", coffer_testenv::CHILD_PASSED);
}

/// Vault mode for real against the embedded fleet: first run with a code
/// (strength feedback, fleet verified first), a backup; then a second
/// installation on a fresh data directory with the same vault: wrong codes
/// show the attempts remaining and a clear warning before the last one, the
/// right code recovers and restores; the code and K are in no file. Both
/// installations are on one computer: one private keyring, which holds the
/// demo fleet's root key.
#[tokio::test(flavor = "multi_thread")]
async fn vault_mode_first_run_and_recovery_with_attempts_remaining() {
    let shared = tempfile::tempdir().unwrap();
    let fleet = shared.path().join("fleet");
    let repo = shared.path().join("usb/coffer.db");
    // The USB disk is connected: its folder is there.
    std::fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let src = make_source(shared.path(), 0);
    let (acct, code) = ("ann@example.org", "correct horse battery staple");
    let args = ["--vault-dir", fleet.to_str().unwrap()];
    let mut keyring = coffer_testenv::start_keyring();
    // The demo fleet the app will use, made as the app makes it (root key
    // in this keyring) but without the time throttle, so that 9 wrong codes
    // can be tried in a row (the throttle has its own tests in coffer-hsm
    // and coffer-vault).
    keyring.run_test_in_child(
        "make_an_unthrottled_demo_fleet_in_a_child",
        &[(UNTHROTTLED_FLEET_ENV, fleet.to_str().unwrap())],
    );
    let env = [("DBUS_SESSION_BUS_ADDRESS", keyring.address.as_str())];
    {
        let (repo, src) = (repo.clone(), src.clone());
        run_with_env("vault_mode_first_run", &args, &env, |s| async move {
            s.testid("onboarding-screen").await?;
            s.click("onboard-mode-vault").await?;
            s.wait_attr("onboard-fleet", "data-verified", "true", 30)
                .await?;
            assert!(s.text("onboard-fleet-id").await?.starts_with("local"));
            s.type_in("onboard-repo-path", repo.to_str().unwrap())
                .await?;
            s.type_in("onboard-account", acct).await?;
            // 24 times one letter is long, but not strong.
            s.type_in("onboard-code", &"a".repeat(24)).await?;
            s.wait_attr("onboard-code-strength", "data-acceptable", "false", 10)
                .await?;
            s.type_in("onboard-code", "password1").await?;
            s.wait_attr("onboard-code-strength", "data-acceptable", "false", 10)
                .await?;
            s.type_in("onboard-code-confirm", "password1").await?;
            s.click("onboard-create-vault").await?;
            assert_eq!(s.text("error-code").await?, "CF-A065");
            s.type_in("onboard-code", code).await?;
            s.wait_attr("onboard-code-strength", "data-acceptable", "true", 10)
                .await?;
            s.shot("onboarding-vault").await?;
            s.type_in("onboard-code-confirm", code).await?;
            s.click("onboard-create-vault").await?;
            assert_eq!(s.text("onboard-kit-account").await?, acct);
            s.click("onboard-kit-continue").await?;
            s.type_in("set-sources", src.to_str().unwrap()).await?;
            s.finish_first_set(None).await?;
            back_up(&s, "done").await?;
            TestResult::Ok(())
        })
        .await;
    }
    // The first app has exited; give the fleet's files a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (shared_root, fleet2) = (shared.path().to_path_buf(), fleet.clone());
    run_with_env("vault_mode_recovery", &args, &env, |s| async move {
        s.testid("onboarding-screen").await?;
        s.click("onboard-go-recovery").await?;
        s.type_in("recovery-repo-path", repo.to_str().unwrap())
            .await?;
        s.click("recovery-verify-fleet").await?;
        s.wait_attr("recovery-fleet", "data-verified", "true", 30)
            .await?;
        s.type_in("recovery-account", acct).await?;
        for left in (1..=9).rev() {
            s.type_in("recovery-code-input", &format!("wrong guess {left}"))
                .await?;
            s.click("recovery-code-unlock").await?;
            s.wait_attr("recovery-attempts", "data-remaining", &left.to_string(), 30)
                .await?;
            assert_eq!(s.text("error-code").await?, "CF-V010");
            // The refused code is cleared from the field.
            assert_eq!(
                s.testid("recovery-code-input")
                    .await?
                    .prop("value")
                    .await?
                    .unwrap_or_default(),
                ""
            );
            if left == 8 {
                // The same wrong code again, submitted with Enter: refused
                // by the app, no attempt used (still 8 left).
                let enter = fantoccini::key::Key::Enter;
                s.type_in("recovery-code-input", &format!("wrong guess 8{enter}"))
                    .await?;
                s.wait_text("error-code", "CF-A095").await?;
                assert_eq!(
                    s.testid("recovery-attempts")
                        .await?
                        .attr("data-remaining")
                        .await?
                        .as_deref(),
                    Some("8")
                );
            }
        }
        // Before the last attempt: a clear warning, and no attempt without ticking it.
        assert!(
            s.testid("recovery-last-attempt-warning")
                .await?
                .is_displayed()
                .await?
        );
        // Written for a vault user, who has no recovery key to fall back on.
        let warning = s.text("recovery-last-attempt-warning").await?;
        assert!(!warning.contains("recovery key"), "{warning}");
        s.shot("recovery-last-attempt").await?;
        s.type_in("recovery-code-input", code).await?;
        s.click("recovery-code-unlock").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !s.exists("recovery-ok").await?,
            "the last attempt needs the acknowledgement"
        );
        s.click("recovery-last-attempt-ack").await?;
        s.click("recovery-code-unlock").await?;
        s.wait_text("recovery-ok", "1 snapshot found").await?;
        // The owner hears of the 9 wrong codes (counted by the HSMs).
        s.wait_attr("recovery-wrong-guesses", "data-count", "9", 5)
            .await?;
        s.wait_text(
            "recovery-wrong-guesses",
            "9 wrong recovery codes were tried",
        )
        .await?;
        // The demo fleet's mail goes to its outbox, read by the app: no step.
        assert!(!s.testid("recovery-mail").await?.is_displayed().await?);
        s.click("recovery-go-snapshots").await?;
        s.testid("snapshot-row").await?;
        let out = s.data_dir.join("restored");
        s.type_in("restore-target", out.to_str().unwrap()).await?;
        s.click("restore-run").await?;
        s.wait_text("restore-done", "Restored 2 files").await?;
        assert_eq!(
            std::fs::read(out.join(src.strip_prefix("/")?).join("notes.md"))?,
            b"# notes"
        );
        s.go("verification").await?;
        s.wait_attr("verification-check-pinned-key", "data-status", "passed", 30)
            .await?;
        s.wait_attr(
            "verification-check-witness-signature",
            "data-status",
            "passed",
            15,
        )
        .await?;
        s.shot("verification-vault").await?;
        // Change the code; the new one rehearses.
        s.go("settings").await?;
        s.type_in("vault-account", acct).await?;
        s.type_in("change-old-code", code).await?;
        s.type_in("change-new-code", "violet tangerine orbit 42")
            .await?;
        s.type_in("change-confirm-code", "violet tangerine orbit 42")
            .await?;
        s.click("change-code-run").await?;
        s.testid("change-code-ok").await?;
        s.type_in("rehearse-code-input", "violet tangerine orbit 42")
            .await?;
        s.click("rehearse-code-run").await?;
        s.wait_text("rehearse-code-ok", "1 snapshots").await?;
        // Nothing anyone wrote holds a code (or K: checked through its
        // recovery-key form by the key-mode test; here the codes).
        let mut scanned = 0;
        for root in [&s.data_dir, &shared_root, &fleet2] {
            let mut stack = vec![root.to_path_buf()];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    stack.extend(std::fs::read_dir(&p)?.map(|e| e.unwrap().path()));
                } else if p.is_file() {
                    scanned += 1;
                    let data = std::fs::read(&p)?;
                    for needle in [code.as_bytes(), b"violet tangerine orbit 42".as_slice()] {
                        assert!(
                            !contains(&data, needle),
                            "{} holds a recovery code",
                            p.display()
                        );
                    }
                }
            }
        }
        assert!(scanned > 5);
        TestResult::Ok(())
    })
    .await;
}

/// A set whose last good backup is older than its schedule allows shows a
/// visible warning on Home and Backups.
#[tokio::test(flavor = "multi_thread")]
async fn stale_backup_warning() {
    use coffer_app::settings::{BackupSetInput, Retention, SettingsStore};
    let prepare = |dir: &Path| {
        let store = SettingsStore::new(dir);
        let mut st = store.load().unwrap();
        let three_days_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 3 * 86_400;
        st.add_backup_set(
            BackupSetInput {
                name: "Photos".into(),
                sources: vec![dir.join("photos")],
                excludes: vec![],
                repository: dir.join("repo/coffer.db"),
                schedule: coffer_app::schedule::Schedule::EveryHours { hours: 6 }.into(),
                retention: Retention::default(),
                remote: None,
                upload_limit: None,
            },
            three_days_ago,
        )
        .unwrap();
        // A manual set (never stale) with the longest name allowed, in one
        // word: it must wrap inside its card.
        st.add_backup_set(
            BackupSetInput {
                name: "W".repeat(100),
                sources: vec![dir.join("photos")],
                excludes: vec![],
                repository: dir.join("repo/coffer.db"),
                schedule: coffer_app::schedule::Schedule::Manual.into(),
                retention: Retention::default(),
                remote: None,
                upload_limit: None,
            },
            three_days_ago,
        )
        .unwrap();
        // Its last scheduled run failed: the photos' disk was not there.
        st.record_run(
            "set-1",
            coffer_app::settings::RunRecord {
                started_at: three_days_ago + 3600,
                finished_at: three_days_ago + 3601,
                outcome: coffer_app::settings::RunOutcome::Failed {
                    code: "CF-R016".into(),
                },
                snapshot_id: None,
                bytes: 0,
            },
        )
        .unwrap();
        st.onboarding_completed = true;
        st.key_mode = Some(coffer_app::settings::KeyMode::RecoveryKey);
        st.vault = coffer_app::settings::VaultChoice::KeyOnly;
        store.save(&st).unwrap();
    };
    harness::run_prepared(
        "stale_backup_warning",
        NO_KEYRING,
        prepare,
        |s| async move {
            s.go("home").await?;
            s.wait_text("home-stale-warning", "1 backup set is older")
                .await?;
            assert!(s
                .text("home-set-sentence-set-1")
                .await?
                .starts_with("Warning"));
            // The failed run is red on Home, in words, with the step to
            // take in the app (no code, no command).
            s.wait_text("home-failed-warning", "The last backup of 1 backup set failed")
                .await?;
            let f = s.text("home-set-failure-set-1").await?;
            assert!(f.contains("does not exist") && f.contains("Connect the disk"), "{f}");
            assert!(!f.contains("CF-") && !f.contains("`coffer"), "{f}");
            assert!(!s.exists("home-set-failure-set-2").await?);
            s.shot("home-stale").await?;
            s.go("backups").await?;
            let w = s.text("set-stale-set-1").await?;
            assert!(
                w.contains("never been backed up successfully") && w.contains("every 6 hours"),
                "{w}"
            );
            // And on its card: red, why, what to do, the code for support.
            let card = s.testid("set-card-set-1").await?;
            assert_eq!(card.attr("data-failed").await?.as_deref(), Some("true"));
            let f = s.text("set-failure-set-1").await?;
            assert!(f.contains("The last backup failed.") && f.contains("Connect the disk"), "{f}");
            assert!(f.contains("CF-R016"), "{f}");
            assert!(s.text("set-last-set-1").await?.contains("failed"));
            let ok = s.testid("set-card-set-2").await?;
            assert_eq!(ok.attr("data-failed").await?.as_deref(), Some("false"));

            // A schedule is typed in a number field or a time picker and
            // checked before it is saved: an empty time or "0" hours is
            // refused with the reason, never saved as daily at 00:00.
            let folder = s.data_dir.join("pictures");
            std::fs::create_dir_all(&folder)?;
            s.click("sets-new").await?;
            s.type_in("set-name", "Pictures").await?;
            s.type_in("set-sources", folder.to_str().unwrap()).await?;
            let repo = s.data_dir.join("repo/coffer.db");
            s.type_in("set-repository", repo.to_str().unwrap()).await?;
            assert_eq!(
                s.testid("set-schedule-time").await?.attr("type").await?.as_deref(),
                Some("time")
            );
            s.testid("set-schedule-kind").await?.select_by_value("daily_at").await?;
            s.testid("set-schedule-time").await?.clear().await?;
            s.click("set-save").await?;
            s.wait_text("error-code", "CF-A035").await?;
            assert!(s.text("error-message").await?.contains("An empty field"));
            // The error has the focus, so a screen reader says it at once.
            let focused = s
                .client
                .execute(
                    "return document.activeElement?.closest('[data-testid=\"error-panel\"]') !== null;",
                    vec![],
                )
                .await?;
            assert_eq!(focused.as_bool(), Some(true), "focus stayed on the button");
            s.testid("set-schedule-kind").await?.select_by_value("every_hours").await?;
            s.type_in("set-schedule-hours", "0").await?;
            s.click("set-save").await?;
            s.wait_text("error-code", "CF-A036").await?;
            assert!(!s.exists("set-card-set-3").await?, "nothing saved");
            s.testid("set-schedule-kind").await?.select_by_value("daily_at").await?;
            // The picker's value is always HH:MM, whatever the locale shows
            // (12-hour "02:30 PM" without LANG); typing into WebKit's
            // segmented widget depends on that locale, so the value is set
            // as the picker sets it.
            s.client
                .execute(
                    "const t = document.querySelector('[data-testid=\"set-schedule-time\"]');
                     t.value = '14:30'; t.dispatchEvent(new Event('input', {bubbles: true}));
                     t.dispatchEvent(new Event('change', {bubbles: true}));",
                    vec![],
                )
                .await?;
            s.shot("set-form-schedule").await?;
            s.click("set-save").await?;
            s.testid("set-card-set-3").await?;
            let sched = s.text("set-card-set-3").await?;
            assert!(sched.contains("daily at 14:30"), "{sched}");

            // A folder that is not there (an unmounted disk) is refused
            // when the set is saved, with the folder named.
            s.click("sets-new").await?;
            s.type_in("set-name", "USB photos").await?;
            s.type_in("set-sources", "/media/not-mounted/Photos")
                .await?;
            s.click("set-save").await?;
            s.wait_text("error-code", "CF-A096").await?;
            assert!(s
                .text("error-message")
                .await?
                .contains("/media/not-mounted/Photos"));
            assert!(!s.exists("set-card-set-4").await?, "nothing saved");
            s.click("set-cancel").await?;

            // The 100-character name wraps inside its card (at the
            // smallest supported window too).
            s.client.set_window_size(800, 600).await?;
            let overflow = s
                .client
                .execute(
                    "const c = document.querySelector('[data-testid=\"set-card-set-2\"]');
                     return c.scrollWidth - c.clientWidth;",
                    vec![],
                )
                .await?;
            assert_eq!(
                overflow.as_i64(),
                Some(0),
                "the long name overflows its card"
            );
            s.shot("backups-long-name").await?;

            // Deleting the set asks first, in the app's own dialog with
            // verb buttons (not WebKit's "JavaScript - tauri://…" box).
            s.click("set-delete-set-1").await?;
            let dialog = s.testid("confirm-dialog").await?;
            assert_eq!(
                dialog.attr("data-for").await?.as_deref(),
                Some("set-delete-set-1")
            );
            assert!(s
                .text("confirm-dialog")
                .await?
                .contains("Delete the backup set “Photos”?"));
            assert_eq!(s.text("confirm-ok").await?, "Delete set");
            s.shot("confirm-delete-set").await?;
            // Cancel, and Escape, keep the set; the dialog is gone.
            s.click("confirm-cancel").await?;
            assert!(!s.exists("confirm-dialog").await?);
            s.click("set-delete-set-1").await?;
            s.testid("confirm-dialog").await?;
            let esc = fantoccini::key::Key::Escape.to_string();
            s.testid("confirm-cancel").await?.send_keys(&esc).await?;
            let gone = Instant::now() + Duration::from_secs(5);
            while s.exists("confirm-dialog").await? {
                assert!(Instant::now() < gone, "Escape did not close the dialog");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(s.testid("set-card-set-1").await?.is_displayed().await?);
            // The verb deletes it.
            s.click("set-delete-set-1").await?;
            s.click("confirm-ok").await?;
            let gone = Instant::now() + Duration::from_secs(10);
            while s.exists("set-card-set-1").await? {
                assert!(Instant::now() < gone, "the set was not deleted");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(s.exists("set-card-set-2").await?);
            TestResult::Ok(())
        },
    )
    .await;
}

/// A remote vault by URL: a real fleet (coffer_vault::embedded's public API)
/// served over loopback HTTP in this test process, its witness on another
/// loopback port. Settings → Vault: a wrong operator key fails the test
/// connection and cannot be saved (`CF-A063`); the right keys pass every
/// check and are saved. Then first run in vault mode registers through that
/// fleet, the account name is remembered and prefilled, and switching away
/// is refused (`CF-A070`).
#[tokio::test(flavor = "multi_thread")]
async fn settings_remote_vault_by_url_then_first_run_against_it() {
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
    let outbox = vault.outbox();
    let wrong_ok = vault.witness_key().to_string(); // a real key, but not the operator's
    let (vendor, evidence) = (vault.vendor_root().to_string(), vault.evidence_url());
    let repo = shared.path().join("usb/coffer.db");
    // The USB disk is connected: its folder is there.
    std::fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let src = make_source(shared.path(), 0);
    let (acct, code) = ("rita@example.org", "correct horse battery staple");
    // A private keyring: the move at the end goes to the local demo fleet,
    // whose keys are sealed under a root key kept in the OS keyring.
    let keyring = coffer_testenv::start_keyring();
    let env = [("DBUS_SESSION_BUS_ADDRESS", keyring.address.as_str())];
    run_with_env("settings_remote_vault", &[], &env, |s| async move {
        s.testid("onboarding-screen").await?;
        s.go("settings").await?;
        assert!(!s.exists("settings-vault-unavailable").await?);
        s.wait_text("settings-vault", "Local demo fleet").await?;
        // Keyboard: the radio group moves with the arrow keys and enables the remote fields.
        s.wait_attr("vault-remote-fields", "disabled", "true", 10)
            .await?;
        s.testid("vault-choice-embedded")
            .await?
            .send_keys(&fantoccini::key::Key::Down.to_string())
            .await?;
        assert_eq!(
            s.testid("vault-choice-remote").await?.prop("checked").await?.as_deref(),
            Some("true"),
            "arrow down selects the remote fleet"
        );
        assert_eq!(s.testid("vault-remote-fields").await?.attr("disabled").await?, None);
        s.type_in("vault-url", &url).await?;
        s.type_in("vault-witness-key", &wk).await?;
        s.type_in("vault-operator-key", &wrong_ok).await?;
        s.type_in("vault-witness-url", &wurl).await?;
        s.click("vault-test").await?;
        s.wait_attr("vault-choice-result", "data-validated", "false", 30)
            .await?;
        s.click("vault-save").await?;
        assert_eq!(s.text("error-code").await?, "CF-A063");
        s.type_in("vault-operator-key", &ok).await?;
        s.click("vault-test").await?;
        s.wait_attr("vault-choice-result", "data-validated", "true", 30)
            .await?;
        for check in [
            "pinned-key",
            "witness-signature",
            "operator-countersignature",
            "inclusion",
        ] {
            s.wait_attr(
                &format!("vault-choice-check-{check}"),
                "data-status",
                "passed",
                5,
            )
            .await?;
        }
        // No vendor key pinned: the evidence is not checked, and says so.
        s.wait_attr(
            "vault-choice-check-deployment-evidence",
            "data-status",
            "not_applicable",
            5,
        )
        .await?;
        // Pinned: the deployment evidence is fetched and verified.
        s.type_in("vault-vendor-key", &vendor).await?;
        s.type_in("vault-evidence-url", &evidence).await?;
        s.click("vault-test").await?;
        s.wait_attr(
            "vault-choice-check-deployment-evidence",
            "data-status",
            "passed",
            30,
        )
        .await?;
        s.wait_text("vault-choice-verdict", "not saved yet").await?;
        let settings = s.data_dir.join("settings.json");
        assert!(
            !std::fs::read_to_string(&settings)
                .unwrap_or_default()
                .contains(&url),
            "a test connection saves nothing"
        );
        s.client
            .execute(
                "document.querySelector('[data-testid=\"vault-choice-result\"]').scrollIntoView({block: 'end'})",
                vec![],
            )
            .await?;
        s.shot("settings-remote-vault").await?;
        s.click("vault-save").await?;
        s.wait_text("vault-choice-verdict", "saved: Coffer now uses this vault")
            .await?;
        s.wait_text("settings-vault", &url).await?;
        assert!(
            !s.testid("demo-fleet-badge").await?.is_displayed().await?,
            "the demo badge is for the local demo fleet only"
        );
        assert!(std::fs::read_to_string(&settings)?.contains(&url));

        // First run in vault mode, against the remote fleet.
        s.go("onboarding").await?;
        s.wait_text("onboard-vault-demo", &url).await?;
        s.click("onboard-mode-vault").await?;
        s.wait_attr("onboard-fleet", "data-verified", "true", 30)
            .await?;
        s.type_in("onboard-repo-path", repo.to_str().unwrap())
            .await?;
        s.type_in("onboard-account", acct).await?;
        s.type_in("onboard-code", code).await?;
        s.type_in("onboard-code-confirm", code).await?;
        // A remote vault takes no request for an address not confirmed by
        // mail: nothing is registered, and the step says what to do.
        assert!(s.testid("onboard-mail").await?.is_displayed().await?);
        s.wait_text("onboard-mail-send", acct).await?;
        s.click("onboard-create-vault").await?;
        s.wait_text("onboard-mail-needed", "send one").await?;
        assert_eq!(s.text("error-code").await?, "CF-V036");
        assert!(!repo.exists(), "no backup file without a registered code");
        // The code is mailed (to the fleet's outbox here; this test fleet
        // has no rate limit on codes). A newer mail replaces the code: the
        // older one is refused as a wrong code would be.
        s.click("onboard-mail-send").await?;
        s.wait_text("onboard-mail-sent", acct).await?;
        let first = mail_code(&outbox, acct, None).await;
        s.click("onboard-mail-send").await?;
        let mailed = mail_code(&outbox, acct, Some(&first)).await;
        s.wait_text("onboard-mail-sent", acct).await?;
        s.type_in("onboard-mail-code", &first).await?;
        s.click("onboard-mail-verify").await?;
        s.wait_text("onboard-mail-status", "CF-V026").await?;
        s.wait_attr("onboard-mail", "data-verified", "false", 5)
            .await?;
        // The newest code, typed as the user reads it; "Create" verifies it first.
        s.type_in("onboard-mail-code", &mailed).await?;
        s.client
            .execute(
                "document.querySelector('[data-testid=\"onboard-mail\"]').scrollIntoView({block: 'center'})",
                vec![],
            )
            .await?;
        s.shot("onboarding-remote-mail-code").await?;
        s.click("onboard-create-vault").await?;
        assert_eq!(s.text("onboard-kit-account").await?, acct);
        s.click("onboard-kit-continue").await?;
        s.type_in("set-sources", src.to_str().unwrap()).await?;
        s.finish_first_set(None).await?;
        let saved = std::fs::read_to_string(&settings)?;
        assert!(saved.contains(&url) && saved.contains(acct), "{saved}");
        assert!(
            !s.data_dir.join("vault").exists(),
            "the embedded demo fleet was never started"
        );

        // The account is prefilled; switching away would orphan the record.
        s.go("settings").await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while s
            .testid("vault-account")
            .await?
            .prop("value")
            .await?
            .as_deref()
            != Some(acct)
        {
            assert!(
                Instant::now() < deadline,
                "the account name is not prefilled"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.wait_text("vault-switch-refused", "CF-A070").await?;
        s.click("vault-choice-embedded").await?;
        s.click("vault-save").await?;
        assert_eq!(s.text("error-code").await?, "CF-A070");

        // Moved instead: the code goes to the local demo fleet (registered
        // there after it verifies), the remote record is deleted. The
        // remote vault in use asks for the mail code (the ticket verified
        // at first run still serves: 30 minutes); the demo fleet does not.
        assert!(s.testid("vault-move").await?.is_displayed().await?);
        s.wait_attr("vault-move-from-mail", "data-remote", "true", 10)
            .await?;
        s.wait_attr("vault-mail", "data-remote", "true", 10)
            .await?;
        assert!(s.testid("vault-move-from-mail").await?.is_displayed().await?);
        assert!(!s.testid("vault-move-to-mail").await?.is_displayed().await?);
        assert_eq!(
            s.testid("vault-move-account").await?.prop("value").await?.as_deref(),
            Some(acct)
        );
        s.type_in("vault-move-code", "not my code at all").await?;
        s.click("vault-move-run").await?;
        s.wait_text("vault-move-result", "CF-V010").await?;
        s.wait_text("vault-move-result", "9 attempts remain").await?;
        s.type_in("vault-move-code", code).await?;
        s.click("vault-move-run").await?;
        s.wait_text("vault-move-ok", "now lives in fleet local").await?;
        s.testid("vault-move-old-deleted").await?;
        // Step 1 of the move was a recovery: the wrong code before it is reported.
        s.wait_attr("vault-move-wrong-guesses", "data-count", "1", 5)
            .await?;
        s.wait_text("settings-vault", "Local demo fleet").await?;
        assert_eq!(
            s.testid("vault-move-code").await?.prop("value").await?.as_deref(),
            Some(""),
            "the code is cleared"
        );
        s.client
            .execute(
                "document.querySelector('[data-testid=\"vault-move\"]').scrollIntoView({block: 'end'})",
                vec![],
            )
            .await?;
        s.shot("settings-vault-move").await?;
        let saved = std::fs::read_to_string(&settings)?;
        assert!(!saved.contains(&url), "{saved}");
        // The moved code works in the vault now in use (the demo fleet:
        // no mail step).
        s.wait_attr("vault-move-from-mail", "data-remote", "false", 10)
            .await?;
        s.wait_attr("vault-mail", "data-remote", "false", 10)
            .await?;
        s.type_in("rehearse-code-input", code).await?;
        s.click("rehearse-code-run").await?;
        s.wait_text("rehearse-code-ok", "0 snapshots").await?;
        TestResult::Ok(())
    })
    .await;
    server.abort();
    vault.shutdown().await;
}

/// A new computer recovers from a REMOTE vault, as its user does: the
/// Recovery wizard refuses to send anything for an address not confirmed by
/// mail (`CF-V036`); "Send a code", the code read from the mail (the
/// fleet's outbox here) typed in, two wrong recovery codes, then the right
/// one: the backups open and the owner is told that 2 wrong codes were
/// tried. In Settings, the same ticket serves changing the code and
/// rehearsing with the new one; the code is then moved to a second remote
/// vault, confirmed there with a code from ITS mail (the move-to step, the
/// `_at` commands), and the record is deleted there.
#[tokio::test(flavor = "multi_thread")]
async fn remote_vault_recovery_change_move_and_delete_with_the_mail_code() {
    use coffer_app::settings::{SettingsStore, VaultChoice};
    let shared = tempfile::tempdir().unwrap();
    let root = coffer_vault::embedded::generate_root_key();
    let vault =
        coffer_vault::embedded::start_with(&shared.path().join("remote-fleet"), &root, 3, 10)
            .await
            .unwrap();
    let (addr, server) = vault.serve("127.0.0.1:0").await.unwrap();
    let outbox = vault.outbox();
    // The second remote vault the code moves to.
    let root_b = coffer_vault::embedded::generate_root_key();
    let vault_b =
        coffer_vault::embedded::start_with(&shared.path().join("remote-fleet-b"), &root_b, 3, 10)
            .await
            .unwrap();
    let (addr_b, server_b) = vault_b.serve("127.0.0.1:0").await.unwrap();
    let (url_b, wk_b, ok_b, outbox_b) = (
        format!("http://{addr_b}"),
        vault_b.witness_key().to_string(),
        vault_b.operator_key().to_string(),
        vault_b.outbox(),
    );
    let choice = VaultChoice::Remote {
        url: format!("http://{addr}"),
        witness_key: vault.witness_key().to_string(),
        operator_key: vault.operator_key().to_string(),
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: None,
    };
    let repo = shared.path().join("usb/coffer.db");
    let (acct, code, new_code) = (
        "tom@example.org",
        "correct horse battery staple",
        "violet tangerine orbit 42",
    );
    // The old computer: a backup file whose code is registered in the
    // remote vault (through the app's domain crate, as its first run does).
    let first_mail = {
        let (dir, repo, choice, outbox) = (
            shared.path().join("old-computer"),
            repo.clone(),
            choice.clone(),
            outbox.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let a = coffer_app::App::with_parts(
                dir,
                Arc::new(coffer_app::keyring::OsKeyring::with_backends(vec![])),
                Arc::new(coffer_app::jobs::NoEvents),
            )
            .unwrap();
            a.save_vault_choice(choice).unwrap();
            a.send_vault_mail_code(acct).unwrap();
            let mail = coffer_vault::account::outbox_code(&outbox, acct).unwrap();
            a.verify_vault_mail_code(acct, mail.to_string()).unwrap();
            a.create_vault_repository(repo.to_str().unwrap(), acct, code.into(), code.into(), true)
                .unwrap();
            a.shutdown_vault();
            mail.to_string()
        })
        .await
        .unwrap()
    };
    let prepare = move |dir: &Path| {
        let store = SettingsStore::new(dir);
        let mut st = store.load().unwrap();
        st.vault = choice;
        store.save(&st).unwrap();
    };
    run_prepared(
        "remote_vault_recovery",
        NO_KEYRING,
        prepare,
        |s| async move {
            s.testid("onboarding-screen").await?;
            s.click("onboard-go-recovery").await?;
            s.type_in("recovery-repo-path", repo.to_str().unwrap())
                .await?;
            s.wait_attr("recovery-mail", "data-remote", "true", 10)
                .await?;
            s.type_in("recovery-account", acct).await?;
            s.wait_text("recovery-mail-send", acct).await?;
            s.type_in("recovery-code-input", code).await?;
            s.click("recovery-code-unlock").await?;
            s.wait_text("recovery-mail-needed", "send one").await?;
            assert_eq!(s.text("error-code").await?, "CF-V036");
            assert!(
                !s.exists("recovery-attempts").await?
                    || s.text("recovery-attempts").await?.is_empty()
            );
            // The mail: the code typed and verified.
            s.click("recovery-mail-send").await?;
            s.wait_text("recovery-mail-sent", acct).await?;
            let mailed = mail_code(&outbox, acct, Some(&first_mail)).await;
            s.type_in("recovery-mail-code", &mailed).await?;
            s.click("recovery-mail-verify").await?;
            s.wait_text("recovery-mail-verified", acct).await?;
            s.wait_attr("recovery-mail", "data-verified", "true", 5)
                .await?;
            // Two wrong recovery codes, then the right one.
            for left in [9, 8] {
                s.type_in("recovery-code-input", &format!("wrong guess {left}"))
                    .await?;
                s.click("recovery-code-unlock").await?;
                s.wait_attr("recovery-attempts", "data-remaining", &left.to_string(), 30)
                    .await?;
            }
            s.type_in("recovery-code-input", code).await?;
            s.click("recovery-code-unlock").await?;
            s.wait_text("recovery-ok", "0 snapshots found").await?;
            s.wait_attr("recovery-wrong-guesses", "data-count", "2", 5)
                .await?;
            s.wait_text(
                "recovery-wrong-guesses",
                "2 wrong recovery codes were tried",
            )
            .await?;
            s.shot("recovery-remote-wrong-guesses").await?;

            // Settings: the ticket (30 minutes) serves change, rehearse, delete.
            s.go("settings").await?;
            s.wait_attr("vault-mail", "data-remote", "true", 10).await?;
            s.type_in("vault-account", acct).await?;
            s.type_in("change-old-code", code).await?;
            s.type_in("change-new-code", new_code).await?;
            s.type_in("change-confirm-code", new_code).await?;
            s.click("change-code-run").await?;
            s.testid("change-code-ok").await?;
            // A rehearsal is a recovery too: the wrong code just before it
            // is reported (the recovery above ended the earlier count).
            s.type_in("rehearse-code-input", code).await?;
            s.click("rehearse-code-run").await?;
            s.wait_text("vault-result", "CF-V010").await?;
            s.type_in("rehearse-code-input", new_code).await?;
            s.click("rehearse-code-run").await?;
            s.wait_text("rehearse-code-ok", "0 snapshots").await?;
            s.wait_attr("rehearse-code-wrong-guesses", "data-count", "1", 5)
                .await?;

            // Moved to the second remote vault: its step asks for a code
            // from its own mail; the vault in use keeps its ticket.
            s.wait_text("vault-switch-refused", "CF-A070").await?;
            s.wait_attr("vault-move-from-mail", "data-remote", "true", 10)
                .await?;
            s.type_in("vault-url", &url_b).await?;
            s.type_in("vault-witness-key", &wk_b).await?;
            s.type_in("vault-operator-key", &ok_b).await?;
            s.wait_attr("vault-move-to-mail", "data-remote", "true", 5)
                .await?;
            assert!(s.testid("vault-move-to-mail").await?.is_displayed().await?);
            s.type_in("vault-move-account", acct).await?;
            s.type_in("vault-move-code", new_code).await?;
            s.click("vault-move-run").await?;
            s.wait_text("vault-move-to-mail-needed", "send one").await?;
            assert!(
                !std::fs::read_to_string(s.data_dir.join("settings.json"))?.contains(&url_b),
                "nothing moved without the new vault's ticket"
            );
            s.click("vault-move-to-mail-send").await?;
            s.wait_text("vault-move-to-mail-sent", acct).await?;
            let mailed_b = mail_code(&outbox_b, acct, None).await;
            s.type_in("vault-move-to-mail-code", &mailed_b).await?;
            s.click("vault-move-run").await?;
            s.wait_text("vault-move-ok", "now lives in fleet").await?;
            s.testid("vault-move-old-deleted").await?;
            s.wait_text("settings-vault", &url_b).await?;
            // The vault now in use holds the code (its ticket serves).
            s.type_in("rehearse-code-input", new_code).await?;
            s.click("rehearse-code-run").await?;
            s.wait_text("rehearse-code-ok", "0 snapshots").await?;
            s.type_in("delete-record-code", new_code).await?;
            s.click("delete-record-run").await?;
            assert_eq!(s.text("confirm-ok").await?, "Delete record");
            s.click("confirm-ok").await?;
            s.testid("delete-record-ok").await?;
            TestResult::Ok(())
        },
    )
    .await;
    server.abort();
    server_b.abort();
    vault.shutdown().await;
    vault_b.shutdown().await;
}
