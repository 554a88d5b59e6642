//! The diagnostics report carries what support needs and no secret.
//!
//! A backup key K goes through the real OS keyring and a recovery code through
//! the error paths a user could hit; settings use distinctive folder and
//! repository names. The report (text and JSON) and every file in the data
//! directory must contain neither K nor the code, in any usual encoding, and
//! no folder or repository path either. K goes through a real Secret Service:
//! the test runs itself again in a child process on a private bus with its
//! own unlocked gnome-keyring (`coffer_testenv::start_keyring`).

use std::path::Path;

use base64::Engine as _;
use coffer_app::diagnostics::{
    DiagnosticsInput, DiagnosticsReport, KeyringStatus, OsInfo, RecentErrors,
};
use coffer_app::keyring::{DeviceKeyStore, KeyringBackend, OsKeyring};
use coffer_app::schedule::Schedule;
use coffer_app::settings::{
    BackupSetInput, KeyMode, Retention, RunOutcome, RunRecord, Settings, SettingsStore, VaultChoice,
};
use coffer_error::{ErrorKind, ErrorReport, UserFacing};

const RECOVERY_CODE: &str = "Quartz-Marmalade-Harpsichord-4417";
const WITNESS_KEY: &str =
    "witness.coffer.example+7f3a9c21+Wl0XcbmNqP2rTq8vYc0sZk1mUj4hB3nA9dE6fG7hI8o=";

fn backup_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(73).wrapping_add(0xA5);
    }
    k
}

/// Every form in which a secret could leak into text.
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64np = base64::engine::general_purpose::STANDARD_NO_PAD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut v = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        b64.encode(secret).into_bytes(),
        b64np.encode(secret).into_bytes(),
        url.encode(secret).into_bytes(),
        format!("{secret:?}").into_bytes(), // [165, 238, …]
    ];
    if let Ok(s) = std::str::from_utf8(secret) {
        v.push(s.to_lowercase().into_bytes());
        v.push(s.to_uppercase().into_bytes());
    }
    v
}

fn assert_absent(haystack: &[u8], secret: &[u8], what: &str) {
    for enc in encodings(secret) {
        assert!(
            !haystack.windows(enc.len()).any(|w| w == enc.as_slice()),
            "{what} contains a secret in the form {:?}",
            String::from_utf8_lossy(&enc)
        );
    }
}

fn unique_account() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("repo-diag-{}-{nanos}", std::process::id())
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

const CHILD_ENV: &str = "COFFER_DIAGNOSTICS_TEST_CHILD";

#[test]
fn the_report_contains_what_support_needs_and_no_secret() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return coffer_testenv::start_keyring().run_test_in_child(
            "the_report_contains_what_support_needs_and_no_secret",
            &[(CHILD_ENV, "1")],
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data-Periwinkle");
    let k = backup_key();

    // K goes to the real OS keyring.
    let keyring = OsKeyring::new();
    let account = unique_account();
    keyring.store(&account, &k).unwrap();
    assert_eq!(*keyring.load(&account).unwrap().unwrap(), k);

    // Settings with distinctive names, a remote vault with pinned keys.
    let mut settings = Settings {
        onboarding_completed: true,
        key_mode: Some(KeyMode::RecoveryCode),
        vault: VaultChoice::Remote {
            url: "https://vault.coffer.example:8443".into(),
            witness_key: WITNESS_KEY.into(),
            operator_key: "operator.coffer.example+0b1c2d3e+OPERATORkeyMaterialXyzzy=".into(),
            witness_url: None,
            vendor_key: None,
            evidence_url: None,
            trust_policy: None,
        },
        ..Settings::default()
    };
    let id = settings
        .add_backup_set(
            BackupSetInput {
                name: "Zanzibar Tax Papers".into(),
                sources: vec![
                    "/home/ann/Fjordlander-Documents".into(),
                    "/home/ann/Obsidian-Vault-Notes".into(),
                ],
                excludes: vec!["*.Kumquat-cache".into()],
                repository: "/media/ann/Xylophone-Drive/coffer.repo".into(),
                schedule: Schedule::DailyAt {
                    hour: 2,
                    minute: 30,
                }
                .into(),
                retention: Retention::default(),
                remote: None,
                upload_limit: None,
            },
            1_790_000_000,
        )
        .unwrap();
    settings
        .record_run(
            &id,
            RunRecord {
                started_at: 1_790_000_100,
                finished_at: 1_790_000_200,
                outcome: RunOutcome::Failed {
                    code: "CF-V010".into(),
                },
                snapshot_id: None,
                bytes: 0,
            },
        )
        .unwrap();
    SettingsStore::new(&data).save(&settings).unwrap();

    // The recovery code reaches the error paths: a report whose message
    // quotes it, and an attempt to record it as if it were a code.
    let mut recent = RecentErrors::new();
    let quoting = ErrorReport {
        kind: ErrorKind::WrongRecoveryCode,
        code: "CF-V010".into(),
        message: format!("the recovery code {RECOVERY_CODE} was wrong"),
        next_step: "check the kit".into(),
    };
    recent.record(1_790_000_200, &quoting);
    assert!(!recent.record_code(1_790_000_201, RECOVERY_CODE));
    let unavailable = OsKeyring::with_backends(vec![]).probe().unwrap_err();
    recent.record(1_790_000_202, &unavailable.report());

    let report = DiagnosticsReport::build(DiagnosticsInput {
        data_dir: &data,
        settings: &SettingsStore::new(&data).load().unwrap(),
        keyring: KeyringStatus::of_os_keyring(&keyring),
        recent_errors: &recent,
        os: OsInfo::current(),
        now: 1_790_100_000,
    });
    let text = report.render_text();
    let json = serde_json::to_string_pretty(&report).unwrap();

    // What support needs is there.
    for want in [
        "Zanzibar Tax Papers",
        "data-Periwinkle",
        "https://vault.coffer.example:8443",
        &coffer_app::diagnostics::key_fingerprint(WITNESS_KEY),
        "2 folders, 1 exclude pattern, daily at 02:30",
        "last run: failed (CF-V010)",
        "OS keyring: available (Secret Service)",
        "CF-A010",
        "Key mode: recovery code (vault)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(
        report.keyring,
        KeyringStatus::Available {
            backend: Some(KeyringBackend::SecretService)
        }
    );

    // No secret, no public key material, no path of what is backed up.
    let saved = report.save_text(tmp.path()).unwrap();
    let mut files = vec![saved];
    all_files(&data, &mut files);
    assert!(files.len() >= 2, "{files:?}");
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("text report".into(), text.clone().into_bytes()),
        ("JSON report".into(), json.clone().into_bytes()),
    ];
    for f in &files {
        haystacks.push((f.display().to_string(), std::fs::read(f).unwrap()));
    }
    for (what, bytes) in &haystacks {
        assert_absent(bytes, &k, what);
        assert_absent(bytes, RECOVERY_CODE.as_bytes(), what);
    }
    for (what, bytes) in &haystacks[..2] {
        let s = String::from_utf8_lossy(bytes);
        for private in [
            "Fjordlander",
            "Obsidian-Vault-Notes",
            "Xylophone-Drive",
            "Kumquat",
            "Wl0XcbmNqP2rTq8vYc0sZk1mUj4hB3nA9dE6fG7hI8o",
            "OPERATORkeyMaterialXyzzy",
        ] {
            assert!(!s.contains(private), "{what} contains {private:?}");
        }
    }

    keyring.delete(&account).unwrap();
    assert!(keyring.load(&account).unwrap().is_none());
    println!("{}", coffer_testenv::CHILD_PASSED);
}

#[test]
fn an_unavailable_keyring_shows_as_its_own_status() {
    let status = KeyringStatus::of_store(&OsKeyring::with_backends(vec![]));
    assert_eq!(
        status,
        KeyringStatus::Unavailable {
            kind: ErrorKind::KeyringUnavailable,
            code: "CF-A010".into()
        }
    );
    let json = serde_json::to_string(&status).unwrap();
    assert_eq!(
        json,
        r#"{"status":"unavailable","kind":"keyring_unavailable","code":"CF-A010"}"#
    );
}
