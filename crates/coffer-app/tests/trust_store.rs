//! The fleet trust state survives a deleted data folder: it is kept in the
//! real OS keyring (a private gnome-keyring on its own D-Bus, as in
//! tests/keyring.rs) as well as in a file, and read back from whichever has
//! seen more of the log. Without a keyring it is kept in the file and the
//! diagnostics say why.

use coffer_app::keyring::KeyringBackend;
use coffer_app::trust_store::{diagnostics, trust_account, AppTrustStore};
use coffer_testenv::start_keyring;
use coffer_vault_client::coffer_transparency::TrustState;
use coffer_vault_client::TrustStateStore;

const CHILD_ENV: &str = "COFFER_TRUST_STORE_TEST_CHILD";

fn state(epoch: u64, size: u64) -> TrustState {
    TrustState {
        last_epoch: Some(epoch),
        last_digest: Some("ab".repeat(32)),
        last_checkpoint: Some(format!("log.test\n{size}\nroot\n\n\u{2014} log.test sig\n")),
        fleet_id: Some("fleet-x".into()),
    }
}

fn account(tag: &str) -> String {
    trust_account(
        &format!("witness+{tag}+{}", std::process::id()),
        &format!("operator+{:?}", std::time::SystemTime::now()),
    )
}

#[test]
fn the_trust_state_survives_a_deleted_data_folder_through_the_keyring() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return start_keyring().run_test_in_child(
            "the_trust_state_survives_a_deleted_data_folder_through_the_keyring",
            &[(CHILD_ENV, "1")],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data/vault-trust/x.json");
    let acct = account("ss");
    assert!(acct.starts_with("fleet-trust:"));
    let store = AppTrustStore::with_backends(
        file.clone(),
        acct.clone(),
        vec![KeyringBackend::SecretService],
    );
    assert_eq!(
        store.load().unwrap(),
        TrustState::default(),
        "first contact"
    );
    store.save(&state(2, 5)).unwrap();
    assert!(store.keyring_problem().is_none());
    let d = diagnostics(&file, &acct);
    assert!(d.in_keyring && d.in_file, "{d:?}");
    assert_eq!((d.last_epoch, d.log_size), (Some(2), Some(5)));
    assert_eq!(d.fleet_id.as_deref(), Some("fleet-x"));
    // The data folder is deleted: the keyring still knows.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let again = AppTrustStore::with_backends(
        file.clone(),
        acct.clone(),
        vec![KeyringBackend::SecretService],
    );
    assert_eq!(again.load().unwrap(), state(2, 5));
    // A file that saw more of the log than the keyring wins, and the
    // other way round.
    again.save(&state(2, 5)).unwrap();
    coffer_vault_client::FileTrustState(file.clone())
        .save(&state(3, 6))
        .unwrap();
    assert_eq!(again.load().unwrap(), state(3, 6));
    println!("{}", coffer_testenv::CHILD_PASSED);
}

#[test]
fn without_a_keyring_the_file_keeps_it_and_diagnostics_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    let acct = account("none");
    let store = AppTrustStore::with_backends(file.clone(), acct.clone(), vec![]);
    store.save(&state(1, 1)).unwrap();
    assert!(store.keyring_problem().is_some());
    assert_eq!(store.load().unwrap(), state(1, 1));
    let d = diagnostics(&file, &acct);
    assert!(d.in_file, "{d:?}");
}
