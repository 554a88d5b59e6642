//! `settings.json` on a real file system: defaults, round trip, atomic
//! replacement, damaged and newer files.

use std::path::Path;

use coffer_app::schedule::Schedule;
use coffer_app::settings::{
    BackupSetInput, KeyMode, Retention, RunOutcome, RunRecord, Settings, SettingsStore,
    VaultChoice, SCHEMA_VERSION, SETTINGS_FILE,
};
use coffer_error::{ErrorKind, UserFacing};

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sample(dir: &Path) -> Settings {
    let mut s = Settings {
        onboarding_completed: true,
        key_mode: Some(KeyMode::RecoveryCode),
        vault: VaultChoice::Remote {
            url: "https://vault.example.org".into(),
            witness_key: "witness.example+1a2b3c4d+AbCd".into(),
            operator_key: "operator.example+5e6f7a8b+EfGh".into(),
            witness_url: Some("https://witness.example.org".into()),
            vendor_key: None,
            evidence_url: None,
            trust_policy: None,
        },
        vault_account: Some("sam@example.org".into()),
        ..Settings::default()
    };
    let id = s
        .add_backup_set(
            BackupSetInput {
                name: "Documents".into(),
                sources: vec![dir.join("docs")],
                excludes: vec!["*.tmp".into(), "node_modules".into()],
                repository: dir.join("elsewhere/coffer.repo"),
                schedule: Schedule::DailyAt {
                    hour: 2,
                    minute: 30,
                }
                .into(),
                retention: Retention::default(),
                remote: None,
                upload_limit: None,
            },
            1_700_000_000,
        )
        .unwrap();
    s.record_run(
        &id,
        RunRecord {
            started_at: 1_700_000_100,
            finished_at: 1_700_000_160,
            outcome: RunOutcome::Ok,
            snapshot_id: Some("0123abcd".into()),
            bytes: 42,
        },
    )
    .unwrap();
    s
}

#[test]
fn a_missing_file_loads_the_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path().join("not-yet"));
    let s = store.load().unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.schema_version, SCHEMA_VERSION);
    assert!(!s.onboarding_completed);
    assert_eq!(s.vault, VaultChoice::EmbeddedDemo);
}

#[test]
fn save_then_load_round_trips_and_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = SettingsStore::new(&data);
    let s = sample(tmp.path());
    store.save(&s).unwrap();
    assert_eq!(store.load().unwrap(), s);
    assert_eq!(files_in(&data), vec![SETTINGS_FILE.to_string()]);

    // Overwrite with a change: still exactly one file, the new content.
    let mut s2 = s.clone();
    s2.remove_backup_set("set-1").unwrap();
    store.save(&s2).unwrap();
    assert_eq!(store.load().unwrap(), s2);
    assert_eq!(files_in(&data), vec![SETTINGS_FILE.to_string()]);

    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"schema_version\": 2"), "{text}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "settings are private to the user: {mode:o}"
        );
    }
}

#[test]
fn invalid_settings_are_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let good = sample(tmp.path());
    store.save(&good).unwrap();
    let mut bad = good.clone();
    bad.backup_sets[0].sources = vec!["relative/dir".into()];
    let e = store.save(&bad).unwrap_err();
    assert_eq!(e.code(), "CF-A024");
    assert_eq!(store.load().unwrap(), good, "the old file is intact");
}

#[test]
fn a_corrupt_file_is_kept_aside_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let garbage = b"{\"schema_version\": 1, \"backup_sets\": [trunc";
    std::fs::write(store.path(), garbage).unwrap();

    let e = store.load().unwrap_err();
    let r = e.report();
    assert_eq!(r.code, "CF-A021");
    assert_eq!(r.kind, ErrorKind::Io);
    assert!(r.next_step.contains("untouched"), "{r:?}");
    let files = files_in(tmp.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("settings.json.corrupt-"), "{files:?}");
    assert_eq!(std::fs::read(tmp.path().join(&files[0])).unwrap(), garbage);
    assert!(r.next_step.contains(&files[0]), "{r:?}");

    // The next load starts from the defaults; a second corrupt file does
    // not overwrite the first one kept aside.
    assert_eq!(store.load().unwrap(), Settings::default());
    std::fs::write(store.path(), b"not json at all").unwrap();
    assert_eq!(store.load().unwrap_err().code(), "CF-A021");
    assert_eq!(files_in(tmp.path()).len(), 2);
}

#[test]
fn well_formed_json_with_wrong_content_is_also_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    // Right shape, invalid value (a relative source folder).
    let mut v = serde_json::to_value(sample(tmp.path())).unwrap();
    v["backup_sets"][0]["sources"][0] = "relative".into();
    std::fs::write(store.path(), serde_json::to_vec(&v).unwrap()).unwrap();
    let e = store.load().unwrap_err();
    assert_eq!(e.code(), "CF-A021");
    assert!(e.to_string().contains("invalid settings"), "{e}");

    // Wrong shape.
    std::fs::write(store.path(), br#"{"schema_version": 1, "vault": 7}"#).unwrap();
    assert_eq!(store.load().unwrap_err().code(), "CF-A021");
    // No version at all.
    std::fs::write(store.path(), br#"{"vault": {"mode": "key_only"}}"#).unwrap();
    assert_eq!(store.load().unwrap_err().code(), "CF-A021");
    assert_eq!(files_in(tmp.path()).len(), 3);
}

#[test]
fn a_file_from_a_newer_coffer_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let newer = br#"{"schema_version": 99, "something_new": true}"#;
    std::fs::write(store.path(), newer).unwrap();
    let e = store.load().unwrap_err();
    assert_eq!(e.code(), "CF-A022");
    assert!(e.next_step().contains("Update Coffer"));
    assert_eq!(std::fs::read(store.path()).unwrap(), newer);
    assert_eq!(files_in(tmp.path()), vec![SETTINGS_FILE.to_string()]);
}

#[test]
fn an_unwritable_data_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let store = SettingsStore::new(file.join("data"));
    let e = store.save(&Settings::default()).unwrap_err();
    assert_eq!(e.code(), "CF-A020");
    assert!(e.next_step().contains("--data-dir"));
}

#[cfg(unix)]
#[test]
fn a_repository_reached_through_a_symlink_into_a_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(docs.join("inner")).unwrap();
    let link = tmp.path().join("backups-link");
    std::os::unix::fs::symlink(docs.join("inner"), &link).unwrap();
    let mut s = Settings::default();
    let e = s
        .add_backup_set(
            BackupSetInput {
                name: "Docs".into(),
                sources: vec![docs.clone()],
                excludes: vec![],
                repository: link.join("coffer.repo"),
                schedule: Schedule::Manual.into(),
                retention: Retention::default(),
                remote: None,
                upload_limit: None,
            },
            0,
        )
        .unwrap_err();
    assert_eq!(e.code(), "CF-A025");
}

#[test]
fn settings_json_has_no_field_for_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let v = serde_json::to_value(sample(tmp.path())).unwrap();
    fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    out.push(k.clone());
                    keys(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    keys(&v, &mut all);
    for k in &all {
        let k = k.to_lowercase();
        let public_pin = k == "witness_key" || k == "operator_key";
        assert!(
            public_pin
                || !(k.contains("key") && k != "key_mode"
                    || k.contains("secret")
                    || k.contains("code") && k != "code"
                    || k.contains("password")),
            "suspicious field {k}"
        );
    }
    // The only "code" field is an error code.
    assert!(all.iter().filter(|k| *k == "code").count() <= 1);
}

#[cfg(unix)]
#[test]
fn a_file_system_change_after_saving_does_not_make_settings_look_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(docs.join("inner")).unwrap();
    let link = tmp.path().join("later-link");
    let input = BackupSetInput {
        name: "Docs".into(),
        sources: vec![docs.clone()],
        excludes: vec![],
        repository: link.join("coffer.repo"),
        schedule: Schedule::Manual.into(),
        retention: Retention::default(),
        remote: None,
        upload_limit: None,
    };
    let mut s = Settings::default();
    let id = s.add_backup_set(input.clone(), 0).unwrap();
    let store = SettingsStore::new(tmp.path().join("data"));
    store.save(&s).unwrap();

    // Now the repository's folder becomes a symlink into the source.
    std::os::unix::fs::symlink(docs.join("inner"), &link).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded, s);
    // Editing the set checks the real file system again.
    let mut edited = loaded.clone();
    assert_eq!(
        edited.update_backup_set(&id, input).unwrap_err().code(),
        "CF-A025"
    );
}

#[test]
fn concurrent_saves_never_expose_a_half_written_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let versions: Vec<Settings> = (0..4)
        .map(|n| {
            let mut s = sample(tmp.path());
            s.backup_sets[0].name = format!("Documents {n} {}", "x".repeat(n * 20));
            s
        })
        .collect();
    store.save(&versions[0]).unwrap();
    std::thread::scope(|scope| {
        for v in &versions {
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..15 {
                    store.save(v).unwrap();
                }
            });
        }
        let reader = store.clone();
        let versions = &versions;
        scope.spawn(move || {
            for _ in 0..60 {
                let got = reader.load().expect("a reader always sees a whole file");
                assert!(versions.contains(&got));
            }
        });
    });
    assert_eq!(files_in(tmp.path()), vec![SETTINGS_FILE.to_string()]);
}

/// A settings.json written before the vault account name (and the remote
/// vault's witness URL) existed still loads: both fields default to absent,
/// and saving it again writes the account only once one is set.
#[test]
fn a_file_from_before_the_vault_account_field_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let old = br#"{
  "schema_version": 1,
  "onboarding_completed": false,
  "vault": {
    "mode": "remote",
    "url": "https://vault.example.org",
    "witness_key": "witness.example+1a2b3c4d+AbCd",
    "operator_key": "operator.example+5e6f7a8b+EfGh"
  },
  "key_mode": null,
  "backup_sets": [],
  "runs": {}
}
"#;
    std::fs::write(store.path(), old).unwrap();
    let mut s = store.load().unwrap();
    assert_eq!(s.vault_account, None);
    assert!(matches!(
        &s.vault,
        VaultChoice::Remote { url, witness_url: None, .. } if url == "https://vault.example.org"
    ));
    s.vault_account = Some("sam@example.org".into());
    store.save(&s).unwrap();
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(
        text.contains("\"vault_account\": \"sam@example.org\""),
        "{text}"
    );
    assert!(!text.contains("witness_url"), "absent stays absent: {text}");
    assert_eq!(store.load().unwrap(), s);
    // An account name with a control character is refused before writing.
    s.vault_account = Some("sam\u{7}".into());
    assert_eq!(store.save(&s).unwrap_err().code(), "CF-A029");
}

/// A remote vault with real witness and operator keys and, when `k` > 0, a
/// trust policy of two cosigners with a `k`-of-2 quorum for its witness log.
fn remote_with_policy(k: usize, max_age: u64) -> (VaultChoice, String) {
    use coffer_vault_client::coffer_transparency::{policy::policy_text, NoteSigner};
    let witness = NoteSigner::generate("witness.example").unwrap().verifier();
    let operator = NoteSigner::generate("operator.example").unwrap().verifier();
    let cosigners: Vec<_> = ["cosigner-1", "cosigner-2"]
        .iter()
        .map(|n| {
            let v = NoteSigner::generate_cosigner(n).unwrap().verifier();
            (n.to_string(), v, None)
        })
        .collect();
    let text = policy_text(&witness, None, &cosigners, k, max_age);
    let choice = VaultChoice::Remote {
        url: "https://vault.example.org".into(),
        witness_key: witness.to_string(),
        operator_key: operator.to_string(),
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: Some(text.clone()),
    };
    (choice, text)
}

/// A version 1 file (before trust policies) loads as version 2 with no
/// policy, and is written as version 2, so that an older Coffer refuses it
/// (`CF-A022`) rather than drop a policy it does not know when it saves.
#[test]
fn a_version_1_file_loads_and_is_written_as_version_2() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let (choice, _) = remote_with_policy(2, 3600);
    let VaultChoice::Remote {
        witness_key,
        operator_key,
        ..
    } = &choice
    else {
        unreachable!()
    };
    let old = format!(
        r#"{{"schema_version": 1, "onboarding_completed": false, "vault": {{"mode": "remote", "url": "https://vault.example.org", "witness_key": "{witness_key}", "operator_key": "{operator_key}"}}, "key_mode": null, "backup_sets": [], "runs": {{}}}}"#
    );
    std::fs::write(store.path(), old).unwrap();
    let mut s = store.load().unwrap();
    assert_eq!(s.schema_version, 2);
    assert!(matches!(
        &s.vault,
        VaultChoice::Remote {
            trust_policy: None,
            ..
        }
    ));
    store.save(&s).unwrap();
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"schema_version\": 2"), "{text}");
    assert!(
        !text.contains("trust_policy"),
        "absent stays absent: {text}"
    );
    // With the policy: saved and read back as it was.
    s.vault = choice.clone();
    store.save(&s).unwrap();
    assert_eq!(store.load().unwrap().vault, choice);
}

/// The policy is checked before anything is written: it must parse, and its
/// `log` line must name the pinned witness key (`CF-A034` otherwise).
#[test]
fn a_trust_policy_for_another_log_or_malformed_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(tmp.path());
    let (choice, text) = remote_with_policy(2, 3600);
    let (other_log, _) = remote_with_policy(2, 3600);
    let mut s = Settings {
        vault: choice.clone(),
        ..Settings::default()
    };
    store.save(&s).unwrap();
    // The policy of another log, with this vault's keys.
    let VaultChoice::Remote {
        trust_policy: other_text,
        ..
    } = other_log
    else {
        unreachable!()
    };
    for bad in [
        other_text.unwrap(),
        text.replace("max-age 3600", "max-age 0"),
        text.replace("quorum cosigners", "quorum nobody"),
        "log\n".to_string(),
    ] {
        let mut v = choice.clone();
        if let VaultChoice::Remote { trust_policy, .. } = &mut v {
            *trust_policy = Some(bad.clone());
        }
        s.vault = v;
        let e = store.save(&s).unwrap_err();
        assert_eq!(e.code(), "CF-A034", "{bad}: {e}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
    assert_eq!(store.load().unwrap().vault, choice, "nothing was written");
}

/// Reading a policy file chosen in the form: its text and what it requires;
/// a missing file is `CF-A037` (not found), a file too large or not text is
/// `CF-A034`.
#[test]
fn a_trust_policy_file_is_read_with_clear_errors() {
    use coffer_app::settings::{read_trust_policy, MAX_POLICY_BYTES};
    let tmp = tempfile::tempdir().unwrap();
    let (_, text) = remote_with_policy(1, 7200);
    let file = tmp.path().join("trust.policy");
    std::fs::write(&file, &text).unwrap();
    let (read, policy) = read_trust_policy(&file).unwrap();
    assert_eq!(read, text);
    assert_eq!(policy.max_age_secs, 7200);
    assert_eq!(policy.describe_quorum(), "1 of [cosigner-1, cosigner-2]");
    let e = read_trust_policy(&tmp.path().join("missing.policy")).unwrap_err();
    assert_eq!((e.code(), e.kind()), ("CF-A037", ErrorKind::NotFound));
    let big = tmp.path().join("big.policy");
    std::fs::write(&big, vec![b'#'; MAX_POLICY_BYTES as usize + 1]).unwrap();
    assert_eq!(read_trust_policy(&big).unwrap_err().code(), "CF-A034");
    let binary = tmp.path().join("binary.policy");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(read_trust_policy(&binary).unwrap_err().code(), "CF-A034");
}

/// The shipped policies: the one whose `log` line names the witness key is
/// found among several; none for another key is `CF-A038`; the file this
/// release ships parses (it names no deployment yet).
#[test]
fn the_shipped_policy_for_a_witness_key_is_found_or_named_missing() {
    use coffer_app::settings::{shipped_policy_in, SHIPPED_POLICIES};
    let (a, a_text) = remote_with_policy(2, 3600);
    let (b, b_text) = remote_with_policy(1, 7200);
    let shipped = format!("# known deployments\n\n---\n{a_text}---\n{b_text}");
    let key = |c: &VaultChoice| match c {
        VaultChoice::Remote { witness_key, .. } => witness_key.clone(),
        _ => unreachable!(),
    };
    let (text, p) = shipped_policy_in(&shipped, &key(&b)).unwrap();
    assert_eq!(text, b_text);
    assert_eq!(p.max_age_secs, 7200);
    let (text, _) = shipped_policy_in(&shipped, &key(&a)).unwrap();
    assert_eq!(text, a_text);
    let (other, _) = remote_with_policy(2, 60);
    let e = shipped_policy_in(&shipped, &key(&other)).unwrap_err();
    assert_eq!((e.code(), e.kind()), ("CF-A038", ErrorKind::NotFound));
    let e = shipped_policy_in(SHIPPED_POLICIES, &key(&a)).unwrap_err();
    assert_eq!(e.code(), "CF-A038", "{e}");
}
