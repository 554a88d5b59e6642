//! Accounts and account tickets (vault protocol v2, issue 12 items 3 and 4).
//!
//! **The account is an e-mail address**, normalised by [`normalize_account`]
//! (the one function every side uses: the app, the CLI, the client library
//! and the account service): surrounding white space trimmed, Unicode NFC,
//! lower-cased. So `" Alice@Example.com"` and `"alice@example.com"` are one
//! account. (An address's local part is case-sensitive in RFC 5321, but no
//! mail provider in use treats it so; one account per spelling would be a
//! trap for the user on a new computer.)
//!
//! **An account ticket** is the vault's account service's word that whoever
//! holds it read the mail of that address just now: an Ed25519 signature by
//! the account service's ticket key over
//!
//! ```text
//! "coffer-account-ticket-v1" || 0x00 || u32be(len(fleet_id)) || fleet_id
//!   || u32be(len(account)) || account || u64be(expires) || id(16) || holder(32)
//! ```
//!
//! where `holder = SHA-256("coffer-account-ticket-holder-v1" || 0x00 ||
//! secret)` for a 32-byte `secret` the client chose and keeps: the client
//! sends the secret only inside the channel (encrypted to the HSMs), so a
//! ticket seen on the wire (an `http://` path) is useless to whoever saw it.
//! The HSMs hold the ticket key's public half, fixed at the fleet ceremony in
//! their sealed secrets, and refuse every account request whose channel
//! message does not carry a valid ticket for exactly its account
//! (`docs/protocol.md`, "Accounts").

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::{check_user_id, Bytes, ProtoError, PROTOCOL_VERSION};

const TICKET_DOMAIN: &[u8] = b"coffer-account-ticket-v1\0";
const HOLDER_DOMAIN: &[u8] = b"coffer-account-ticket-holder-v1\0";
/// How long a ticket from the account service is valid.
pub const TICKET_LIFETIME_SECS: u64 = 30 * 60;
/// Digits of a code sent by mail.
pub const MAIL_CODE_DIGITS: usize = 8;
/// How long a code sent by mail can be used.
pub const MAIL_CODE_LIFETIME_SECS: u64 = 10 * 60;
/// How many wrong tries one mailed code survives.
pub const MAIL_CODE_TRIES: u32 = 5;

/// The account of `raw`: trimmed, Unicode NFC, lower-cased, then checked as
/// a user id (1 to 128 bytes, no control characters). The one
/// normalisation of the protocol.
pub fn normalize_account(raw: &str) -> Result<String, ProtoError> {
    let n: String = raw.trim().nfc().collect::<String>().to_lowercase();
    // Lower-casing can leave a string that is no longer NFC (rare letters).
    let n: String = n.nfc().collect();
    check_user_id(&n)?;
    Ok(n)
}

/// Whether a normalised account looks like an e-mail address a code can be
/// sent to: `local@domain`, both parts non-empty, the domain with a dot and
/// no empty label, no white space. The mail server has the last word
/// (an address that passes here but cannot be delivered is answered like
/// any other).
pub fn is_plausible_email(account: &str) -> bool {
    let Some((local, domain)) = account.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.contains('.')
        && domain.split('.').all(|l| !l.is_empty())
        && !account.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@')
}

/// [`normalize_account`], and the result must be a plausible e-mail address
/// ([`is_plausible_email`]).
pub fn normalize_email(raw: &str) -> Result<String, ProtoError> {
    let n = normalize_account(raw)?;
    if !is_plausible_email(&n) {
        return Err(ProtoError::NotAnEmail);
    }
    Ok(n)
}

/// An account ticket, as the account service issues it and the client
/// forwards it (inside the channel) to the HSMs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTicket {
    /// The normalised account the ticket is for.
    pub account: String,
    /// Unix seconds after which the HSMs refuse it.
    pub expires: u64,
    /// 16 random bytes (distinguishes tickets; for logs and audits).
    pub id: Bytes,
    /// SHA-256 of the holder's secret (see the module documentation).
    pub holder: Bytes,
    /// Ed25519 by the account service's ticket key.
    pub signature: Bytes,
}

impl std::fmt::Debug for AccountTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountTicket")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// What message 1 carries to prove its account: the ticket and the secret
/// its `holder` commits to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketProof {
    pub ticket: AccountTicket,
    pub secret: Bytes,
}

impl std::fmt::Debug for TicketProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketProof(<redacted>)")
    }
}

impl Drop for TicketProof {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret.0);
    }
}

/// Why a ticket is refused (the HSM answers all of them alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefusal {
    Malformed,
    BadSignature,
    Expired,
    WrongHolder,
    WrongAccount,
}

/// The message the ticket key signs.
pub fn ticket_message(
    fleet_id: &str,
    account: &str,
    expires: u64,
    id: &[u8],
    holder: &[u8],
) -> Vec<u8> {
    let mut m = TICKET_DOMAIN.to_vec();
    m.extend_from_slice(&(fleet_id.len() as u32).to_be_bytes());
    m.extend_from_slice(fleet_id.as_bytes());
    m.extend_from_slice(&(account.len() as u32).to_be_bytes());
    m.extend_from_slice(account.as_bytes());
    m.extend_from_slice(&expires.to_be_bytes());
    m.extend_from_slice(id);
    m.extend_from_slice(holder);
    m
}

/// `SHA-256("coffer-account-ticket-holder-v1" || 0x00 || secret)`.
pub fn holder_commitment(secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HOLDER_DOMAIN);
    h.update(secret);
    h.finalize().into()
}

impl TicketProof {
    /// Checks the proof for a request of `account` to the fleet `fleet_id`
    /// at `now` (the HSM's clock), with the ticket key `key`.
    pub fn check(
        &self,
        key: &[u8; 32],
        fleet_id: &str,
        account: &str,
        now: u64,
    ) -> Result<(), TicketRefusal> {
        let t = &self.ticket;
        if t.id.0.len() != 16 || t.holder.0.len() != 32 || self.secret.0.len() != 32 {
            return Err(TicketRefusal::Malformed);
        }
        let key = VerifyingKey::from_bytes(key).map_err(|_| TicketRefusal::Malformed)?;
        let sig: [u8; 64] = t
            .signature
            .0
            .as_slice()
            .try_into()
            .map_err(|_| TicketRefusal::Malformed)?;
        let msg = ticket_message(fleet_id, &t.account, t.expires, &t.id.0, &t.holder.0);
        key.verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| TicketRefusal::BadSignature)?;
        if t.expires <= now {
            return Err(TicketRefusal::Expired);
        }
        if !bool::from(holder_commitment(&self.secret.0).ct_eq(&t.holder.0)) {
            return Err(TicketRefusal::WrongHolder);
        }
        if !bool::from(t.account.as_bytes().ct_eq(account.as_bytes())) {
            return Err(TicketRefusal::WrongAccount);
        }
        Ok(())
    }
}

/// A client's secret for one ticket: it asks for a ticket with
/// [`TicketHolder::commitment`] and proves it holds it with
/// [`TicketHolder::prove`].
pub struct TicketHolder {
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for TicketHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketHolder(<redacted>)")
    }
}

impl Default for TicketHolder {
    fn default() -> Self {
        Self::new()
    }
}

impl TicketHolder {
    /// A fresh random secret.
    pub fn new() -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *s);
        TicketHolder { secret: s }
    }

    /// What the ticket commits to.
    pub fn commitment(&self) -> [u8; 32] {
        holder_commitment(&*self.secret)
    }

    /// The proof for `ticket` (issued for [`TicketHolder::commitment`]).
    pub fn prove(&self, ticket: &AccountTicket) -> TicketProof {
        TicketProof {
            ticket: ticket.clone(),
            secret: Bytes(self.secret.to_vec()),
        }
    }
}

/// Whether `key` is an Ed25519 public key tickets can be checked with.
pub fn check_ticket_key(key: &[u8; 32]) -> Result<(), ProtoError> {
    VerifyingKey::from_bytes(key)
        .map(|_| ())
        .map_err(|_| ProtoError::Malformed("not an Ed25519 public key".into()))
}

/// The account service's ticket key (Ed25519). Private: no `Debug` of it.
pub struct TicketSigner {
    key: SigningKey,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TicketSigner(public {:02x?}…)", &self.public()[..4])
    }
}

impl TicketSigner {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *seed);
        Self::from_seed(&seed)
    }

    /// The key of a 32-byte seed (as stored).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        TicketSigner {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The seed, for storing (sealed, or in a 0600 file).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public key the HSMs check tickets with.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A ticket for `account` (normalised here) in the fleet `fleet_id`,
    /// held by whoever knows the secret behind `holder`, valid until
    /// `expires`.
    pub fn issue(
        &self,
        fleet_id: &str,
        account: &str,
        holder: &[u8; 32],
        expires: u64,
    ) -> Result<AccountTicket, ProtoError> {
        let account = normalize_account(account)?;
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let msg = ticket_message(fleet_id, &account, expires, &id, holder);
        let sig = self.key.sign(&msg);
        Ok(AccountTicket {
            account,
            expires,
            id: Bytes(id.to_vec()),
            holder: Bytes(holder.to_vec()),
            signature: Bytes(sig.to_bytes().to_vec()),
        })
    }
}

/// `POST /v2/account/challenge`: send a code to this address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub v: u32,
    pub account: String,
}

/// `POST /v2/account/verify`: the code from the mail, for a ticket held by
/// whoever knows the secret behind `holder`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub v: u32,
    pub account: String,
    pub code: String,
    pub holder: Bytes,
}

impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyRequest(<redacted>)")
    }
}

impl Drop for VerifyRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.code);
    }
}

/// The account service's answers (JSON, HTTP 200 for the first two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountResponse {
    /// The same bytes for every address: a code was sent if the address
    /// can receive mail (the service does not say, and does not know
    /// whether the address has a vault record).
    ChallengeSent {
        code_digits: u32,
        expires_in: u64,
    },
    Ticket {
        ticket: AccountTicket,
    },
    Error {
        error: crate::WireError,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEnvelope<T> {
    v: u32,
    msg: T,
}

/// Encodes an account-service answer, `{"v":2,"msg":{…}}`.
pub fn encode_account_response(r: &AccountResponse) -> Vec<u8> {
    serde_json::to_vec(&AccountEnvelope {
        v: PROTOCOL_VERSION,
        msg: r,
    })
    .unwrap_or_default()
}

/// Decodes an account-service answer. Never panics.
pub fn decode_account_response(bytes: &[u8]) -> Result<AccountResponse, ProtoError> {
    if bytes.len() > crate::MAX_MESSAGE_LEN {
        return Err(ProtoError::TooLarge(bytes.len()));
    }
    let e: AccountEnvelope<AccountResponse> = serde_json::from_slice(bytes)
        .map_err(|e| ProtoError::Malformed(crate::wire::short(&e.to_string())))?;
    if e.v != PROTOCOL_VERSION {
        return Err(ProtoError::UnsupportedVersion(e.v));
    }
    Ok(e.msg)
}

/// The answer to every challenge that was not refused outright.
pub fn challenge_sent() -> AccountResponse {
    AccountResponse::ChallengeSent {
        code_digits: MAIL_CODE_DIGITS as u32,
        expires_in: MAIL_CODE_LIFETIME_SECS,
    }
}

/// Reads a typed mail code: digits, with spaces or dashes between them
/// ignored. `None` unless exactly [`MAIL_CODE_DIGITS`] digits.
pub fn parse_mail_code(typed: &str) -> Option<Zeroizing<String>> {
    let digits: Zeroizing<String> = Zeroizing::new(
        typed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect(),
    );
    (digits.len() == MAIL_CODE_DIGITS && digits.chars().all(|c| c.is_ascii_digit()))
        .then_some(digits)
}

/// One line of the outbox file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMail {
    pub to: String,
    pub at: u64,
    pub subject: String,
    pub body: String,
    /// The code, for a code mail (so that the demo app can read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The newest code mailed to `account` in the outbox file at `path`.
pub fn outbox_code(path: &Path, account: &str) -> Option<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).ok()?);
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<OutboxMail>(l).ok())
        .find(|m| m.to == account && m.code.is_some())
        .and_then(|m| m.code.clone().map(Zeroizing::new))
}

/// Every mail in the outbox file at `path` (oldest first).
pub fn outbox_mails(path: &Path) -> Vec<OutboxMail> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_per_address_however_it_is_typed() {
        for raw in [
            "alice@example.com",
            "  Alice@Example.COM ",
            "ALICE@EXAMPLE.COM\t",
        ] {
            assert_eq!(normalize_account(raw).unwrap(), "alice@example.com");
        }
        // NFC: "é" typed as e + combining acute is the same account.
        assert_eq!(
            normalize_account("Ren\u{65}\u{301}@example.com").unwrap(),
            normalize_account("ren\u{e9}@example.com").unwrap()
        );
        assert_eq!(normalize_account(" x ").unwrap(), "x");
        assert!(normalize_account("   ").is_err());
        assert!(normalize_account(&"a".repeat(129)).is_err());
        assert!(normalize_account("a\u{7}b").is_err());
    }

    #[test]
    fn plausible_addresses() {
        for ok in [
            "a@b.c",
            "first.last+tag@mail.example.org",
            "ren\u{e9}@exämple.de",
        ] {
            assert!(is_plausible_email(ok), "{ok}");
        }
        for bad in [
            "alice",
            "@example.com",
            "a@",
            "a@b",
            "a@b..c",
            "a b@c.d",
            "a@b.c@d.e",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
        assert_eq!(
            normalize_email("Bob@Example.org").unwrap(),
            "bob@example.org"
        );
        assert!(matches!(
            normalize_email("bob"),
            Err(ProtoError::NotAnEmail)
        ));
    }

    #[test]
    fn a_ticket_holds_only_for_its_account_fleet_holder_key_and_time() {
        let s = TicketSigner::generate();
        let h = TicketHolder::new();
        let t = s
            .issue("fleet", "Alice@Example.com", &h.commitment(), 1000)
            .unwrap();
        assert_eq!(t.account, "alice@example.com");
        let p = h.prove(&t);
        let k = s.public();
        assert_eq!(p.check(&k, "fleet", "alice@example.com", 999), Ok(()));
        assert_eq!(
            p.check(&k, "fleet", "alice@example.com", 1000),
            Err(TicketRefusal::Expired)
        );
        assert_eq!(
            p.check(&k, "fleet", "bob@example.com", 999),
            Err(TicketRefusal::WrongAccount)
        );
        assert_eq!(
            p.check(&k, "other", "alice@example.com", 999),
            Err(TicketRefusal::BadSignature)
        );
        assert_eq!(
            p.check(
                &TicketSigner::generate().public(),
                "fleet",
                "alice@example.com",
                999
            ),
            Err(TicketRefusal::BadSignature)
        );
        // Someone who saw the ticket but not the secret.
        let stolen = TicketHolder::new().prove(&t);
        assert_eq!(
            stolen.check(&k, "fleet", "alice@example.com", 999),
            Err(TicketRefusal::WrongHolder)
        );
        // Any altered field breaks the signature.
        let mut t2 = t.clone();
        t2.expires += 1;
        assert_eq!(
            h.prove(&t2).check(&k, "fleet", "alice@example.com", 999),
            Err(TicketRefusal::BadSignature)
        );
        let mut t3 = t.clone();
        t3.account = "bob@example.com".into();
        assert_eq!(
            h.prove(&t3).check(&k, "fleet", "bob@example.com", 999),
            Err(TicketRefusal::BadSignature)
        );
        let mut t4 = t;
        t4.signature.0.truncate(10);
        assert_eq!(
            h.prove(&t4).check(&k, "fleet", "alice@example.com", 999),
            Err(TicketRefusal::Malformed)
        );
        let dbg = format!("{p:?} {s:?} {h:?}");
        assert!(!dbg.contains("alice"), "{dbg}");
    }

    #[test]
    fn the_signer_round_trips_through_its_seed() {
        let s = TicketSigner::generate();
        assert_eq!(TicketSigner::from_seed(&s.seed()).public(), s.public());
    }

    #[test]
    fn mail_codes_are_read_leniently_but_must_be_eight_digits() {
        assert_eq!(parse_mail_code("1234 5678").unwrap().as_str(), "12345678");
        assert_eq!(
            parse_mail_code(" 1234-5678\n").unwrap().as_str(),
            "12345678"
        );
        assert!(parse_mail_code("1234567").is_none());
        assert!(parse_mail_code("123456789").is_none());
        assert!(parse_mail_code("1234567a").is_none());
    }

    #[test]
    fn account_answers_round_trip_and_the_challenge_answer_is_fixed() {
        let b = encode_account_response(&challenge_sent());
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"v":2,"msg":{"type":"challenge_sent","code_digits":8,"expires_in":600}}"#
        );
        assert_eq!(decode_account_response(&b).unwrap(), challenge_sent());
        assert!(decode_account_response(b"{}").is_err());
    }
}
