//! The local demo fleet's root key in the OS keyring.
//!
//! The demo fleet seals its private keys in its folder under a root key
//! kept in the keyring (account `demo-fleet-<folder id>`), only in a
//! keyring that outlives a restart, never in a file. These tests run the
//! real keyrings: the Secret Service ones in a child process on a private
//! session bus with its own unlocked gnome-keyring (as `tests/keyring.rs`
//! does), the kernel keyring inside `keyctl session -` (as
//! `scripts/test-all.sh` runs the tests).

use std::path::Path;
use std::sync::Arc;

use coffer_app::jobs::NoEvents;
use coffer_app::keyring::{
    demo_fleet_account, demo_fleet_root_key, require_lasting_keyring, DeviceKeyStore,
    KeyringBackend, OsKeyring,
};
use coffer_app::schedule::Schedule;
use coffer_app::settings::{BackupSetInput, Retention};
use coffer_app::App;
use coffer_error::{ErrorKind, UserFacing};
use coffer_testenv::{start_keyring, CHILD_PASSED};
use coffer_vault::demo_keys;
use coffer_vault_client::ExposeSecret;

const CHILD_ENV: &str = "COFFER_DEMO_FLEET_TEST_CHILD";

/// True in the child; in the parent, runs `test` there against a private
/// unlocked gnome-keyring and checks that it passed.
fn in_private_keyring(test: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    start_keyring().run_test_in_child(test, &[(CHILD_ENV, "1")]);
    false
}

fn secret_service() -> OsKeyring {
    OsKeyring::with_backends(vec![KeyringBackend::SecretService])
}

#[test]
fn the_root_key_is_made_once_kept_in_the_keyring_and_never_made_over_a_fleet() {
    if !in_private_keyring(
        "the_root_key_is_made_once_kept_in_the_keyring_and_never_made_over_a_fleet",
    ) {
        return;
    }
    let ks = secret_service();
    let t = tempfile::tempdir().unwrap();
    let id = demo_keys::ensure_folder_id(t.path()).unwrap();
    let account = demo_fleet_account(&id);
    assert!(ks.load(&account).unwrap().is_none());
    let k1 = demo_fleet_root_key(&ks, t.path(), &id, false).unwrap();
    let stored = ks.load(&account).unwrap().expect("stored");
    assert_eq!(&*stored, k1.expose_secret());
    // The next call finds it, whatever the folder says.
    for sealed in [false, true] {
        let k = demo_fleet_root_key(&ks, t.path(), &id, sealed).unwrap();
        assert_eq!(k.expose_secret(), k1.expose_secret());
    }
    // A sealed fleet whose key is not in this keyring: never a new key.
    let other = "0123456789abcdef0123456789abcdef";
    let e = demo_fleet_root_key(&ks, t.path(), other, true).unwrap_err();
    assert_eq!(e.code(), "CF-A015");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(ks.load(&demo_fleet_account(other)).unwrap().is_none());
    ks.delete(&account).unwrap();
    println!("{CHILD_PASSED}");
}

#[test]
fn a_keyring_that_forgets_at_restart_or_none_is_keyring_unavailable() {
    // The kernel keyring works here (inside `keyctl session -`) but is lost
    // at reboot: the demo fleet would be lost with it.
    if let Err(f) = OsKeyring::probe_backend(KeyringBackend::Keyutils) {
        panic!(
            "the kernel keyring is not usable here ({}); run the tests inside \
             `keyctl session -` (see scripts/test-all.sh)",
            f.detail
        );
    }
    let t = tempfile::tempdir().unwrap();
    for (store, why) in [
        (
            OsKeyring::with_backends(vec![KeyringBackend::Keyutils]),
            "forgets",
        ),
        (OsKeyring::with_backends(vec![]), "no keyring backend"),
    ] {
        assert!(store.probe().is_ok() == (why == "forgets"));
        let e = require_lasting_keyring(&store).unwrap_err();
        for e in [
            e,
            demo_fleet_root_key(&store, t.path(), "0".repeat(32).as_str(), false).unwrap_err(),
        ] {
            let r = e.report();
            assert_eq!(
                (r.kind, r.code.as_str()),
                (ErrorKind::KeyringUnavailable, "CF-A014")
            );
            assert!(r.message.contains(why), "{r:?}");
            assert!(r.next_step.contains("not wrong"), "{r:?}");
        }
    }
    assert!(OsKeyring::with_backends(vec![KeyringBackend::Keyutils])
        .load(&demo_fleet_account(&"0".repeat(32)))
        .unwrap()
        .is_none());
}

fn keyring_app(dir: &Path) -> App {
    App::with_parts(
        dir.to_path_buf(),
        Arc::new(secret_service()),
        Arc::new(NoEvents),
    )
    .unwrap()
}

#[test]
fn the_demo_fleet_follows_its_folder_when_the_data_folder_moves() {
    if !in_private_keyring("the_demo_fleet_follows_its_folder_when_the_data_folder_moves") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (old, new) = (t.path().join("old-data"), t.path().join("new-data"));
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let repo = t.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let (acct, code) = ("ann@example.org", "correct horse battery staple");

    // Vault mode with the demo fleet in DATA_DIR/vault.
    let a = keyring_app(&old);
    a.create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap();
    a.complete_onboarding(BackupSetInput {
        name: "Docs".into(),
        sources: vec![src.clone()],
        excludes: vec![],
        repository: repo.clone(),
        schedule: Schedule::Manual.into(),
        retention: Retention::default(),
        remote: None,
        upload_limit: None,
    })
    .unwrap();
    let vault = old.join("vault");
    let id = demo_keys::folder_id(&vault).unwrap().unwrap();
    assert!(secret_service()
        .load(&demo_fleet_account(&id))
        .unwrap()
        .is_some());
    for f in ["fleet.json", "hsm-secrets.json", "demo-operator-root.key"] {
        assert!(!vault.join(f).exists(), "{f}");
    }

    // Settings → Move the data folder, then a restart on the new folder.
    a.set_data_dir_origin(Some(t.path().join("config/coffer/data-dir")), false);
    a.move_data_dir(new.to_str().unwrap()).unwrap();
    drop(a);
    assert_eq!(
        demo_keys::folder_id(&new.join("vault")).unwrap().as_deref(),
        Some(id.as_str()),
        "the id, and so the keyring account, moved with the folder"
    );
    let b = keyring_app(&new);
    b.lock();
    let e = b
        .unlock_with_recovery_code(r, acct, "not the code at all".into())
        .unwrap_err();
    assert_eq!(e.code, "CF-V010", "{e:?}");
    assert_eq!(
        b.unlock_with_recovery_code(r, acct, code.into())
            .unwrap()
            .snapshots,
        0
    );
    b.shutdown_vault();
    drop(b);

    // The folder elsewhere without this keyring's entry (another account or
    // computer): its own error, not a wrong code, and nothing new is made.
    secret_service().delete(&demo_fleet_account(&id)).unwrap();
    let c = keyring_app(&new);
    let e = c.vault_info().unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.kind),
        ("CF-A015", ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(secret_service()
        .load(&demo_fleet_account(&id))
        .unwrap()
        .is_none());
    println!("{CHILD_PASSED}");
}
