//! The device key store against the real OS keyrings.
//!
//! Run these inside a kernel session keyring (`keyctl session -`), as
//! `scripts/test-all.sh` does. The Secret Service tests start their own
//! D-Bus session bus with their own unlocked gnome-keyring (a real daemon,
//! in a temporary folder) and run themselves again in a child process
//! pointed at it: whatever else happens on the session bus of the whole
//! test run cannot take the keyring away from them, which it once did
//! (the daemon lost its bus name and a locked one was activated instead).
//!
//! Tests that need a broken environment (no reachable Secret Service) run
//! themselves again in a child process with `DBUS_SESSION_BUS_ADDRESS`
//! pointing at a socket that does not exist. Either way no global state of
//! this process is changed.

use coffer_testenv::{run_test_in_child, start_keyring};

use coffer_app::keyring::{DeviceKeyStore, KeyringBackend, OsKeyring};
use coffer_error::{ErrorKind, UserFacing};

const CHILD_ENV: &str = "COFFER_KEYRING_TEST_CHILD";
const DEAD_BUS: &str = "unix:path=/nonexistent/coffer-test/bus";

fn unique_account(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{tag}-{}-{nanos}", std::process::id())
}

fn test_key(seed: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8 * 7);
    }
    k
}

fn require(backend: KeyringBackend) {
    if let Err(f) = OsKeyring::probe_backend(backend) {
        panic!(
            "the {backend} keyring is not usable here ({}). Run the tests inside \
             dbus-run-session with an unlocked gnome-keyring and `keyctl session -` \
             (see scripts/test-all.sh)",
            f.detail
        );
    }
}

fn round_trip(backend: KeyringBackend) {
    require(backend);
    let store = OsKeyring::with_backends(vec![backend]);
    let account = unique_account("rt");
    store.probe().unwrap();
    assert!(
        store.load(&account).unwrap().is_none(),
        "fresh account is empty"
    );

    let k1 = test_key(1);
    store.store(&account, &k1).unwrap();
    assert_eq!(*store.load(&account).unwrap().expect("stored"), k1);

    let k2 = test_key(2);
    store.store(&account, &k2).unwrap();
    assert_eq!(*store.load(&account).unwrap().expect("replaced"), k2);

    // Another account is separate.
    let other = unique_account("rt-other");
    assert!(store.load(&other).unwrap().is_none());

    store.delete(&account).unwrap();
    assert!(store.load(&account).unwrap().is_none(), "deleted");
    store.delete(&account).unwrap(); // idempotent
}

/// Runs `test_name` of this binary again in a child process whose session
/// bus is a private one with its own unlocked gnome-keyring.
fn run_in_child_with_private_keyring(test_name: &str) {
    start_keyring().run_test_in_child(test_name, &[(CHILD_ENV, "1")]);
}

#[test]
fn secret_service_round_trip() {
    if !in_child() {
        return run_in_child_with_private_keyring("secret_service_round_trip");
    }
    round_trip(KeyringBackend::SecretService);
    println!("{}", coffer_testenv::CHILD_PASSED);
}

#[test]
fn keyutils_round_trip() {
    round_trip(KeyringBackend::Keyutils);
}

#[test]
fn default_keyring_prefers_secret_service_when_it_works() {
    if !in_child() {
        return run_in_child_with_private_keyring(
            "default_keyring_prefers_secret_service_when_it_works",
        );
    }
    require(KeyringBackend::SecretService);
    let k = OsKeyring::new();
    assert_eq!(
        k.backends(),
        &[KeyringBackend::SecretService, KeyringBackend::Keyutils]
    );
    assert_eq!(k.active_backend().unwrap(), KeyringBackend::SecretService);

    // A key stored through the default keyring is in the Secret Service.
    let account = unique_account("pref");
    k.store(&account, &test_key(3)).unwrap();
    let ss = OsKeyring::with_backends(vec![KeyringBackend::SecretService]);
    assert_eq!(*ss.load(&account).unwrap().unwrap(), test_key(3));
    let ku = OsKeyring::with_backends(vec![KeyringBackend::Keyutils]);
    assert!(ku.load(&account).unwrap().is_none(), "only one copy");
    k.delete(&account).unwrap();
    assert!(ss.load(&account).unwrap().is_none());
    println!("{}", coffer_testenv::CHILD_PASSED);
}

#[test]
fn storing_in_the_preferred_backend_removes_an_older_copy_elsewhere() {
    if !in_child() {
        return run_in_child_with_private_keyring(
            "storing_in_the_preferred_backend_removes_an_older_copy_elsewhere",
        );
    }
    require(KeyringBackend::SecretService);
    require(KeyringBackend::Keyutils);
    let account = unique_account("stale");
    let ku = OsKeyring::with_backends(vec![KeyringBackend::Keyutils]);
    ku.store(&account, &test_key(4)).unwrap();
    let both = OsKeyring::new();
    // Found in keyutils while the Secret Service has none.
    assert_eq!(*both.load(&account).unwrap().unwrap(), test_key(4));
    both.store(&account, &test_key(5)).unwrap();
    assert!(ku.load(&account).unwrap().is_none(), "old copy removed");
    assert_eq!(*both.load(&account).unwrap().unwrap(), test_key(5));
    both.delete(&account).unwrap();
    println!("{}", coffer_testenv::CHILD_PASSED);
}

/// Runs `test_name` of this binary again in a child process whose Secret
/// Service address is dead, and checks that it passed.
fn run_in_child_with_dead_bus(test_name: &str) {
    run_in_child(test_name, DEAD_BUS);
}

/// Runs `test_name` of this binary again in a child process on the session
/// bus at `bus`, and checks that it passed.
fn run_in_child(test_name: &str, bus: &str) {
    run_test_in_child(
        test_name,
        &[(CHILD_ENV, "1"), ("DBUS_SESSION_BUS_ADDRESS", bus)],
    );
}

fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

#[test]
fn unreachable_secret_service_without_keyutils_is_keyring_unavailable() {
    if !in_child() {
        return run_in_child_with_dead_bus(
            "unreachable_secret_service_without_keyutils_is_keyring_unavailable",
        );
    }
    let started = std::time::Instant::now();
    let k = OsKeyring::with_backends(vec![KeyringBackend::SecretService]);
    let account = unique_account("dead");
    let errors = [
        k.probe().unwrap_err(),
        k.store(&account, &test_key(6)).unwrap_err(),
        k.load(&account).unwrap_err(),
        k.delete(&account).unwrap_err(),
    ];
    for err in errors {
        let r = err.report();
        assert_eq!(r.kind, ErrorKind::KeyringUnavailable, "{r:?}");
        assert_ne!(r.kind, ErrorKind::WrongRecoveryCode);
        assert_eq!(r.code, "CF-A010");
        assert!(r.message.contains("Secret Service"), "{r:?}");
        assert!(r.next_step.contains("recovery code"), "{r:?}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a dead bus must fail fast, took {:?}",
        started.elapsed()
    );
    println!("{}", coffer_testenv::CHILD_PASSED);
}

#[test]
fn unreachable_secret_service_falls_back_to_keyutils() {
    if !in_child() {
        return run_in_child_with_dead_bus("unreachable_secret_service_falls_back_to_keyutils");
    }
    require(KeyringBackend::Keyutils);
    let k = OsKeyring::new();
    assert_eq!(k.active_backend().unwrap(), KeyringBackend::Keyutils);
    let account = unique_account("fallback");
    k.store(&account, &test_key(7)).unwrap();
    assert_eq!(*k.load(&account).unwrap().unwrap(), test_key(7));
    k.delete(&account).unwrap();
    assert!(k.load(&account).unwrap().is_none());
    println!("{}", coffer_testenv::CHILD_PASSED);
}
