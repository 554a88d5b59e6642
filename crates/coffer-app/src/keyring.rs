//! The device copy of the backup key K: in the OS keyring, nowhere else.
//!
//! Scheduled backups need K without asking the user, so the app keeps one copy
//! of it in the operating system's keyring under the service
//! [`SERVICE`] (`app.coffer.desktop`) and the repository id as the account.
//!
//! Backends, in order of preference:
//! 1. the **Secret Service** (GNOME Keyring, KWallet…) over the D-Bus session
//!    bus — persistent, protected by the user's login;
//! 2. the **kernel keyutils** keyring (session + persistent keyring) — works on
//!    headless systems, but is lost at reboot.
//!
//! Every operation first checks that a backend really works (write, read back
//! and delete a throw-away probe entry), so a locked or missing keyring is
//! never mistaken for "no key stored". When no backend works the error is
//! [`KeyringError::Unavailable`] (kind [`ErrorKind::KeyringUnavailable`]):
//! there is **never** a fallback to a file.
//!
//! K is hex-encoded only for the duration of the keyring call, in a
//! [`Zeroizing`] buffer; nothing here logs or formats key bytes.
//!
//! The same keyring keeps one more kind of key: the **root key of the local
//! demo fleet** of a vault folder ([`demo_fleet_root_key`]), under the
//! account `demo-fleet-<folder id>` (the random id in the folder's
//! `demo-fleet.id`, so the entry follows the folder when it is moved). The
//! demo fleet's private keys are sealed under it in the folder. It is kept
//! only in a keyring that outlives a restart of the computer (the Secret
//! Service): losing it would lose the demo fleet and every recovery code
//! registered there.

use std::sync::atomic::{AtomicU64, Ordering};

use ::keyring::keyutils::KeyutilsCredential;
use ::keyring::secret_service::SsCredential;
use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use zeroize::Zeroizing;

/// The keyring service name every entry of Coffer uses.
pub const SERVICE: &str = "app.coffer.desktop";

/// Every code this module can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &[
    "CF-A010", "CF-A011", "CF-A012", "CF-A013", "CF-A014", "CF-A015", "CF-A016", "CF-A017",
];

/// Longest accepted account name (a repository id).
pub const MAX_ACCOUNT_LEN: usize = 128;

/// Where the device copy of K is kept.
pub trait DeviceKeyStore: Send + Sync {
    /// Stores K for `account`, replacing any earlier copy.
    fn store(&self, account: &str, key: &[u8; 32]) -> Result<(), KeyringError>;
    /// Loads K for `account`; `Ok(None)` when no copy is stored (the keyring
    /// itself works).
    fn load(&self, account: &str) -> Result<Option<Zeroizing<[u8; 32]>>, KeyringError>;
    /// Removes every copy of K for `account`; succeeds when there is none.
    fn delete(&self, account: &str) -> Result<(), KeyringError>;
    /// Checks that the keyring can be used right now.
    fn probe(&self) -> Result<(), KeyringError>;
    /// Whether what [`DeviceKeyStore::store`] writes now outlives a restart
    /// of the computer (`Ok(false)`: only a keyring that forgets at reboot
    /// works). Asked before keeping a key that cannot be made again.
    fn store_outlives_restart(&self) -> Result<bool, KeyringError> {
        self.probe().map(|()| true)
    }
    /// Stores a secret text (an off-site destination's credentials) for
    /// `account`, replacing any earlier one. Removed with
    /// [`DeviceKeyStore::delete`].
    fn store_secret(&self, account: &str, secret: &str) -> Result<(), KeyringError>;
    /// Loads what [`DeviceKeyStore::store_secret`] stored; `Ok(None)` when
    /// nothing is stored (the keyring itself works).
    fn load_secret(&self, account: &str) -> Result<Option<Zeroizing<String>>, KeyringError>;
}

/// One OS keyring backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum KeyringBackend {
    /// The freedesktop Secret Service (GNOME Keyring, KWallet) over D-Bus.
    SecretService,
    /// The Linux kernel key retention service (keyutils).
    Keyutils,
}

impl KeyringBackend {
    /// A short name for messages and the diagnostics report.
    pub fn label(self) -> &'static str {
        match self {
            KeyringBackend::SecretService => "Secret Service",
            KeyringBackend::Keyutils => "kernel keyutils",
        }
    }
}

impl std::fmt::Display for KeyringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why one backend could not be used (no secret in `detail`: it is the
/// keyring library's error text, which never carries the stored value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFailure {
    pub backend: KeyringBackend,
    pub detail: String,
}

fn summarize(attempts: &[BackendFailure]) -> String {
    if attempts.is_empty() {
        return "no keyring backend is enabled".into();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.backend, a.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of the device key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No backend works: keyring locked, not running, or not reachable.
    #[error("the OS keyring cannot be used on this computer ({})", summarize(.attempts))]
    Unavailable { attempts: Vec<BackendFailure> },
    /// The account (repository id) is empty, too long or has odd characters.
    #[error("the keyring account {account:?} is not acceptable: {reason}")]
    InvalidAccount {
        account: String,
        reason: &'static str,
    },
    /// What is stored under the account is not a 256-bit key.
    #[error("the device copy of the backup key in the {backend} keyring is damaged")]
    Damaged { backend: KeyringBackend },
    /// The backend worked for the probe but failed the real operation.
    #[error("the {backend} keyring failed while {op} the backup key: {detail}")]
    Failed {
        backend: KeyringBackend,
        op: &'static str,
        detail: String,
    },
}

impl UserFacing for KeyringError {
    fn kind(&self) -> ErrorKind {
        match self {
            KeyringError::Unavailable { .. } | KeyringError::Failed { .. } => {
                ErrorKind::KeyringUnavailable
            }
            KeyringError::InvalidAccount { .. } => ErrorKind::InvalidInput,
            KeyringError::Damaged { .. } => ErrorKind::Internal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            KeyringError::Unavailable { .. } => "CF-A010",
            KeyringError::InvalidAccount { .. } => "CF-A011",
            KeyringError::Damaged { .. } => "CF-A012",
            KeyringError::Failed { .. } => "CF-A013",
        }
    }
    fn next_step(&self) -> String {
        match self {
            KeyringError::Unavailable { .. } => "Unlock or start your desktop keyring (GNOME Keyring or another Secret Service; log out and in again if it stays locked). Until then Coffer cannot keep the backup key on this device: enter your recovery code or 64-digit recovery key each time, and scheduled backups wait for you. This says nothing about your recovery code or key: neither was wrong.".into(),
            KeyringError::InvalidAccount { .. } => "This is a bug in Coffer: report it with the diagnostics report.".into(),
            KeyringError::Damaged { .. } => "Open the repository with your recovery code or recovery key: Coffer then stores a fresh copy of the key on this device.".into(),
            KeyringError::Failed { .. } => "Make sure your desktop keyring is unlocked and try again; if it keeps failing, use your recovery code or recovery key and report the code.".into(),
        }
    }
}

fn validate_account(account: &str) -> Result<(), KeyringError> {
    let bad = |reason| KeyringError::InvalidAccount {
        account: account.chars().take(MAX_ACCOUNT_LEN).collect(),
        reason,
    };
    if account.is_empty() {
        return Err(bad("it is empty"));
    }
    if account.len() > MAX_ACCOUNT_LEN {
        return Err(bad("it is longer than 128 characters"));
    }
    if !account
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(bad("only letters, digits and - _ . : are allowed"));
    }
    Ok(())
}

/// The OS keyring: Secret Service first, kernel keyutils second (see the
/// module documentation).
pub struct OsKeyring {
    backends: Vec<KeyringBackend>,
}

impl Default for OsKeyring {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for OsKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsKeyring")
            .field("backends", &self.backends)
            .finish()
    }
}

static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn entry(backend: KeyringBackend, account: &str) -> ::keyring::Result<::keyring::Entry> {
    Ok(match backend {
        KeyringBackend::SecretService => ::keyring::Entry::new_with_credential(Box::new(
            SsCredential::new_with_target(None, SERVICE, account)?,
        )),
        KeyringBackend::Keyutils => ::keyring::Entry::new_with_credential(Box::new(
            KeyutilsCredential::new_with_target(None, SERVICE, account)?,
        )),
    })
}

fn decode_key(
    backend: KeyringBackend,
    stored: &Zeroizing<String>,
) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(stored.trim().as_bytes(), &mut key[..])
        .map_err(|_| KeyringError::Damaged { backend })?;
    Ok(key)
}

impl OsKeyring {
    /// Secret Service, then kernel keyutils.
    pub fn new() -> Self {
        Self::with_backends(vec![
            KeyringBackend::SecretService,
            KeyringBackend::Keyutils,
        ])
    }

    /// Uses exactly these backends, in this order (tests, and a setting for
    /// users who want one backend only). An empty list is always unavailable.
    pub fn with_backends(backends: Vec<KeyringBackend>) -> Self {
        Self { backends }
    }

    pub fn backends(&self) -> &[KeyringBackend] {
        &self.backends
    }

    /// Writes, reads back and deletes a throw-away entry in `backend`.
    pub fn probe_backend(backend: KeyringBackend) -> Result<(), BackendFailure> {
        let fail = |detail: String| BackendFailure { backend, detail };
        let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let account = format!("coffer-probe-{}-{n}", std::process::id());
        let value = format!("probe-{nanos}-{n}");
        let e = entry(backend, &account).map_err(|e| fail(e.to_string()))?;
        e.set_password(&value).map_err(|e| fail(e.to_string()))?;
        let read = e.get_password();
        let _ = e.delete_credential();
        match read {
            Ok(v) if v == value => Ok(()),
            Ok(_) => Err(fail("the probe entry read back differently".into())),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// The first backend that works right now (what `store` would use).
    pub fn active_backend(&self) -> Result<KeyringBackend, KeyringError> {
        let mut attempts = Vec::new();
        for &b in &self.backends {
            match Self::probe_backend(b) {
                Ok(()) => return Ok(b),
                Err(f) => attempts.push(f),
            }
        }
        Err(KeyringError::Unavailable { attempts })
    }

    /// Why a backend that failed an operation failed: if it passes the
    /// probe it works, and this operation failed (`Failed`); otherwise it
    /// is not usable now, and the next backend is tried.
    fn failed_or_unusable(
        backend: KeyringBackend,
        op: &'static str,
        e: ::keyring::Error,
    ) -> Result<BackendFailure, KeyringError> {
        match Self::probe_backend(backend) {
            Ok(()) => Err(KeyringError::Failed {
                backend,
                op,
                detail: e.to_string(),
            }),
            Err(f) => Ok(f),
        }
    }

    /// Deletes `account` from every backend of `backends` that can be
    /// reached, and says why the others could not be (all of them: none
    /// was reached). Backends are only probed when an operation fails, so
    /// a working keyring sees one connection per operation, not a probe's
    /// write, read and delete first.
    fn delete_from(
        backends: &[KeyringBackend],
        account: &str,
    ) -> Result<Vec<BackendFailure>, KeyringError> {
        let mut unreachable = Vec::new();
        for &backend in backends {
            let deleted = entry(backend, account).and_then(|e| match e.delete_credential() {
                Ok(()) | Err(::keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(e),
            });
            if let Err(e) = deleted {
                unreachable.push(Self::failed_or_unusable(backend, "deleting", e)?);
            }
        }
        Ok(unreachable)
    }
}

impl OsKeyring {
    /// Writes `value` in the first backend, in preference order, that
    /// takes it, reads it back and compares (constant time), then removes
    /// older copies from the less preferred backends.
    fn store_text(&self, account: &str, value: &str) -> Result<(), KeyringError> {
        validate_account(account)?;
        let mut attempts = Vec::new();
        for (i, &backend) in self.backends.iter().enumerate() {
            let e = match entry(backend, account) {
                Ok(e) => e,
                Err(e) => {
                    attempts.push(Self::failed_or_unusable(backend, "storing", e)?);
                    continue;
                }
            };
            if let Err(e) = e.set_password(value) {
                attempts.push(Self::failed_or_unusable(backend, "storing", e)?);
                continue;
            }
            // Read it back: a keyring that accepts but loses the value must
            // not leave the user believing the copy exists.
            let failed = |op, detail: String| KeyringError::Failed {
                backend,
                op,
                detail,
            };
            let back = Zeroizing::new(
                e.get_password()
                    .map_err(|e| failed("checking", e.to_string()))?,
            );
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                back.as_bytes(),
                value.as_bytes(),
            )) {
                return Err(failed(
                    "checking",
                    "the keyring returned a different value".into(),
                ));
            }
            // An older copy in a less preferred backend would shadow nothing
            // today but could resurface when this backend is unavailable.
            Self::delete_from(&self.backends[i + 1..], account)?;
            return Ok(());
        }
        Err(KeyringError::Unavailable { attempts })
    }

    /// Reads the text stored for `account` in the first backend, in
    /// preference order, that has it; `Ok(None)` when a backend answered
    /// and none has it.
    fn load_text(
        &self,
        account: &str,
    ) -> Result<Option<(KeyringBackend, Zeroizing<String>)>, KeyringError> {
        validate_account(account)?;
        let mut attempts = Vec::new();
        let mut answered = false;
        for &backend in &self.backends {
            match entry(backend, account).and_then(|e| e.get_password()) {
                Ok(v) => return Ok(Some((backend, Zeroizing::new(v)))),
                Err(::keyring::Error::NoEntry) => answered = true,
                Err(::keyring::Error::BadEncoding(mut bytes)) => {
                    zeroize::Zeroize::zeroize(&mut bytes);
                    return Err(KeyringError::Damaged { backend });
                }
                Err(e) => attempts.push(Self::failed_or_unusable(backend, "reading", e)?),
            }
        }
        if answered {
            Ok(None)
        } else {
            Err(KeyringError::Unavailable { attempts })
        }
    }
}

impl DeviceKeyStore for OsKeyring {
    fn store_secret(&self, account: &str, secret: &str) -> Result<(), KeyringError> {
        self.store_text(account, secret)
    }

    fn load_secret(&self, account: &str) -> Result<Option<Zeroizing<String>>, KeyringError> {
        Ok(self.load_text(account)?.map(|(_, v)| v))
    }

    fn store(&self, account: &str, key: &[u8; 32]) -> Result<(), KeyringError> {
        self.store_text(account, &Zeroizing::new(hex::encode(key)))
    }

    fn load(&self, account: &str) -> Result<Option<Zeroizing<[u8; 32]>>, KeyringError> {
        match self.load_text(account)? {
            Some((backend, v)) => decode_key(backend, &v).map(Some),
            None => Ok(None),
        }
    }

    fn delete(&self, account: &str) -> Result<(), KeyringError> {
        validate_account(account)?;
        let unreachable = Self::delete_from(&self.backends, account)?;
        if unreachable.len() == self.backends.len() {
            return Err(KeyringError::Unavailable {
                attempts: unreachable,
            });
        }
        Ok(())
    }

    fn probe(&self) -> Result<(), KeyringError> {
        self.active_backend().map(|_| ())
    }

    fn store_outlives_restart(&self) -> Result<bool, KeyringError> {
        // The kernel keyring is lost at reboot; the Secret Service is not.
        Ok(self.active_backend()? == KeyringBackend::SecretService)
    }
}

// ------------------------------------------------ the demo fleet's root key

/// The keyring account of the root key of the demo fleet whose folder has
/// the id `folder_id`.
pub fn demo_fleet_account(folder_id: &str) -> String {
    format!("demo-fleet-{folder_id}")
}

/// Why the local demo fleet's root key cannot be had from the keyring.
#[derive(Debug, thiserror::Error)]
pub enum DemoFleetKeyError {
    /// No keyring works, or only one that forgets its keys at reboot.
    #[error("the local demo fleet keeps its key in the OS keyring, and no keyring that keeps keys across a restart can be used here ({})", summarize(.attempts))]
    Unavailable { attempts: Vec<BackendFailure> },
    /// The folder holds a demo fleet but this keyring has no key for it.
    #[error("this computer's keyring has no key for the local demo fleet in {folder} (account {account})")]
    Missing { folder: String, account: String },
    /// What the keyring holds for the demo fleet is not a 256-bit key.
    #[error("the local demo fleet's key in the {backend} keyring is damaged")]
    Damaged { backend: KeyringBackend },
    /// The keyring answered the availability check but failed the operation.
    #[error("the {backend} keyring failed while {op} the local demo fleet's key: {detail}")]
    Failed {
        backend: KeyringBackend,
        op: &'static str,
        detail: String,
    },
    /// A bug (the account name is made here).
    #[error(transparent)]
    Keyring(KeyringError),
}

impl From<KeyringError> for DemoFleetKeyError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Unavailable { attempts } => DemoFleetKeyError::Unavailable { attempts },
            KeyringError::Damaged { backend } => DemoFleetKeyError::Damaged { backend },
            KeyringError::Failed {
                backend,
                op,
                detail,
            } => DemoFleetKeyError::Failed {
                backend,
                op,
                detail,
            },
            e @ KeyringError::InvalidAccount { .. } => DemoFleetKeyError::Keyring(e),
        }
    }
}

impl UserFacing for DemoFleetKeyError {
    fn kind(&self) -> ErrorKind {
        match self {
            DemoFleetKeyError::Unavailable { .. } | DemoFleetKeyError::Failed { .. } => {
                ErrorKind::KeyringUnavailable
            }
            DemoFleetKeyError::Missing { .. } => ErrorKind::NotFound,
            DemoFleetKeyError::Damaged { .. } => ErrorKind::Internal,
            DemoFleetKeyError::Keyring(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DemoFleetKeyError::Unavailable { .. } => "CF-A014",
            DemoFleetKeyError::Missing { .. } => "CF-A015",
            DemoFleetKeyError::Damaged { .. } => "CF-A016",
            DemoFleetKeyError::Failed { .. } => "CF-A017",
            DemoFleetKeyError::Keyring(e) => e.code(),
        }
    }
    fn next_step(&self) -> String {
        match self {
            DemoFleetKeyError::Unavailable { .. } => "Unlock or start your desktop keyring (GNOME Keyring or another Secret Service; log out and in again if it stays locked): the local demo fleet's keys are sealed under a key kept there, never in a file, and the kernel keyring alone forgets it at restart. Until then the demo fleet cannot run; your recovery code was not used and is not wrong. Key mode (64-digit recovery key) and a remote vault (Settings → Vault) work without it.".into(),
            DemoFleetKeyError::Missing { .. } => "The demo fleet was made on another computer or user account (its key stayed in that keyring), or this keyring was reset. Open Coffer where the demo fleet was made; otherwise its vault records cannot be used: move the vault folder aside to start a new demo fleet, and open your backups with the 64-digit recovery key if you have one.".into(),
            DemoFleetKeyError::Damaged { .. } => "The demo fleet cannot be opened with what the keyring holds: report it with the diagnostics report. Do not delete the keyring entry or the vault folder.".into(),
            DemoFleetKeyError::Failed { .. } => "Make sure your desktop keyring is unlocked and try again; if it keeps failing, report the code.".into(),
            DemoFleetKeyError::Keyring(e) => e.next_step(),
        }
    }
}

/// Fails unless a keyring that outlives a restart can be used now.
pub fn require_lasting_keyring(store: &dyn DeviceKeyStore) -> Result<(), DemoFleetKeyError> {
    match store.store_outlives_restart()? {
        true => Ok(()),
        false => Err(DemoFleetKeyError::Unavailable {
            attempts: vec![BackendFailure {
                backend: KeyringBackend::Keyutils,
                detail: "works, but forgets its keys when the computer restarts".into(),
            }],
        }),
    }
}

/// The root key of the demo fleet in the folder with id `folder_id`: the
/// one in the keyring, or, for a folder without a sealed fleet yet
/// (`fleet_sealed` false: new, or of the earlier plaintext layout), a new
/// one stored there first. Never a fallback to a file.
pub fn demo_fleet_root_key(
    store: &dyn DeviceKeyStore,
    folder: &std::path::Path,
    folder_id: &str,
    fleet_sealed: bool,
) -> Result<coffer_vault::demo_keys::RootKey, DemoFleetKeyError> {
    let account = demo_fleet_account(folder_id);
    validate_account(&account)?;
    require_lasting_keyring(store)?;
    if let Some(k) = store.load(&account)? {
        return Ok(secrecy_box(&k));
    }
    if fleet_sealed {
        return Err(DemoFleetKeyError::Missing {
            folder: folder.display().to_string(),
            account,
        });
    }
    let key = coffer_vault::demo_keys::generate_root_key();
    {
        use coffer_vault_client::ExposeSecret;
        store.store(&account, key.expose_secret())?;
    }
    Ok(key)
}

fn secrecy_box(k: &Zeroizing<[u8; 32]>) -> coffer_vault::demo_keys::RootKey {
    coffer_vault_client::SecretBox::init_with_mut(|b: &mut [u8; 32]| b.copy_from_slice(&k[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_validated_before_any_keyring_call() {
        let k = OsKeyring::with_backends(vec![]);
        for bad in ["", "has space", "slash/y", &"x".repeat(129)] {
            let err = k.store(bad, &[7; 32]).unwrap_err();
            assert_eq!(err.code(), "CF-A011", "{bad:?}");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
        assert!(validate_account("repo-0123abcd_ef.9:x").is_ok());
    }

    #[test]
    fn no_backend_is_keyring_unavailable_not_a_wrong_code() {
        let k = OsKeyring::with_backends(vec![]);
        for err in [
            k.probe().unwrap_err(),
            k.store("repo1", &[1; 32]).unwrap_err(),
            k.load("repo1").unwrap_err(),
            k.delete("repo1").unwrap_err(),
        ] {
            let r = err.report();
            assert_eq!(r.kind, ErrorKind::KeyringUnavailable);
            assert_eq!(r.code, "CF-A010");
            assert!(r.next_step.contains("Unlock or start your desktop keyring"));
            assert!(r.next_step.contains("recovery code"));
            assert!(r.next_step.contains("neither was wrong"));
        }
    }

    #[test]
    fn damaged_entries_are_reported_not_guessed() {
        let bad = Zeroizing::new("zz".repeat(32));
        let err = decode_key(KeyringBackend::Keyutils, &bad).unwrap_err();
        assert_eq!(err.code(), "CF-A012");
        let short = Zeroizing::new("ab".repeat(31));
        assert!(decode_key(KeyringBackend::SecretService, &short).is_err());
        let good = Zeroizing::new(format!("{}\n", "0f".repeat(32)));
        assert_eq!(
            *decode_key(KeyringBackend::SecretService, &good).unwrap(),
            [0x0f; 32]
        );
    }
}
