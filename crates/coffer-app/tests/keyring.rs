//! The device key store against the real OS keyrings.
//!
//! Run these inside a D-Bus session with an unlocked gnome-keyring and a
//! kernel session keyring, as `scripts/test-all.sh` does:
//!
//! ```text
//! dbus-run-session -- bash -c 'eval "$(printf pw | gnome-keyring-daemon --unlock \
//!   --components=secrets --daemonize)"; export GNOME_KEYRING_CONTROL; \
//!   keyctl session - cargo test -p coffer-app'
//! ```
//!
//! Tests that need a broken environment (no reachable Secret Service) run
//! themselves again in a child process with `DBUS_SESSION_BUS_ADDRESS`
//! pointing at a socket that does not exist, so no global state of this
//! process is changed.

use std::process::Command;

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

#[test]
fn secret_service_round_trip() {
    round_trip(KeyringBackend::SecretService);
}

#[test]
fn keyutils_round_trip() {
    round_trip(KeyringBackend::Keyutils);
}

#[test]
fn default_keyring_prefers_secret_service_when_it_works() {
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
}

#[test]
fn storing_in_the_preferred_backend_removes_an_older_copy_elsewhere() {
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
}

/// Runs `test_name` of this binary again in a child process whose Secret
/// Service address is dead, and checks that it passed.
fn run_in_child_with_dead_bus(test_name: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("DBUS_SESSION_BUS_ADDRESS", DEAD_BUS)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-CHECKS-PASSED"),
        "child failed:\n{stdout}\n{stderr}"
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
    println!("CHILD-CHECKS-PASSED");
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
    println!("CHILD-CHECKS-PASSED");
}
