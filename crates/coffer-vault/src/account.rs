//! The host's account service: it proves that a client reads the mail of an
//! address, and issues that address's account ticket (vault protocol v2,
//! `docs/protocol.md`, "Accounts").
//!
//! * `POST /v2/account/challenge` `{"v":2,"account":…}`: a fresh 8-digit
//!   code is mailed to the address (10 minutes, 5 tries; a newer code
//!   replaces it). The answer is the same bytes for every address.
//! * `POST /v2/account/verify` `{"v":2,"account":…,"code":…,"holder":…}`:
//!   the right code is traded for a ticket signed with the service's ticket
//!   key, for the holder commitment the client chose (30 minutes).
//!
//! The HSMs hold the public half of the ticket key (sealed at the fleet
//! ceremony) and refuse every account request without a ticket for exactly
//! its account. **What the host can do with this**: the host runs the
//! service and holds the ticket key, so it can issue a ticket for any
//! address, and it reads the mail it sends. It can therefore spend guesses
//! on an account, as the stranger could before, but it cannot raise the
//! limit, reset the counter, or escape the time throttle, and every counted
//! guess is reported to the owner at the next successful login (the count
//! comes from the HSMs, through the channel). A stranger who cannot read
//! the address's mail gets no ticket.
//!
//! Mail goes out by SMTP ([`crate::mail`]: STARTTLS by default, or implicit
//! TLS, with a login; plain SMTP only to a relay on loopback), or, for the
//! local demo fleet and tests, to an outbox file (JSON lines, 0600).
//!
//! **What the service keeps, in memory only**: the pending code of each
//! address (a salted SHA-256 of it, its expiry and tries left) and the
//! times of the codes sent in the last hour per address and per client
//! network address (the rate limits). Nothing of it is on disk: a restart
//! of the node forgets every pending code (they no longer verify) and
//! resets the rate limits; each node's service keeps its own.
//!
//! The service also mails the owner of an account when the HSMs report a
//! wrong guess or a destroyed record ([`coffer_hsm::NoticeSink`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coffer_error::{ErrorKind, UserFacing};
use coffer_hsm::{AccountNotice, NoticeKind, NoticeSink};
use coffer_vault_proto::account::{
    challenge_sent, normalize_account, normalize_email, parse_mail_code, AccountResponse,
    AccountTicket, TicketSigner, MAIL_CODE_DIGITS, MAIL_CODE_LIFETIME_SECS, MAIL_CODE_TRIES,
    TICKET_LIFETIME_SECS,
};
use coffer_vault_proto::{ProtoError, WireError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::mail::{MailError, SmtpMailer, SmtpTls};

/// How many addresses (and client addresses) the service remembers at most;
/// the oldest entries go first when full.
const MAX_ENTRIES: usize = 100_000;

/// Why the account service refused a request. Carries no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Wrong, expired, replaced or used-up code: one answer for all.
    #[error("the code is not the one mailed to this address (wrong, expired, replaced by a newer one, or used up)")]
    BadCode,
    /// No mail can be sent: no account service on this vault.
    #[error("this vault sends no mail, so no e-mail address can be verified")]
    NoMail,
    /// Not an e-mail address (or malformed).
    #[error(transparent)]
    Input(#[from] ProtoError),
    /// Too many codes asked for this address or from this client.
    #[error(
        "too many codes were asked for this address or from this network address; no mail was sent. A new code can be asked for at {} (in {} s)", format_time(*retry_at), retry_at.saturating_sub(now()).max(1)
    )]
    TooMany { retry_at: u64 },
}

impl UserFacing for AccountError {
    fn kind(&self) -> ErrorKind {
        match self {
            AccountError::BadCode => ErrorKind::AccountNotVerified,
            AccountError::NoMail => ErrorKind::VaultUnavailable,
            AccountError::Input(e) => e.kind(),
            AccountError::TooMany { .. } => ErrorKind::Throttled,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AccountError::BadCode => "CF-V026",
            AccountError::NoMail => "CF-V027",
            AccountError::Input(e) => e.code(),
            AccountError::TooMany { .. } => "CF-V029",
        }
    }
    fn next_step(&self) -> String {
        match self {
            AccountError::BadCode => {
                "Ask for a new code and type the newest mail's code within 10 minutes.".into()
            }
            AccountError::NoMail => {
                "Contact the vault operator: the vault needs a mail server to verify addresses."
                    .into()
            }
            AccountError::Input(e) => e.next_step(),
            AccountError::TooMany { .. } => {
                "Wait until the time shown and use the newest code already received.".into()
            }
        }
    }
}

impl AccountError {
    /// The wire answer.
    pub fn response(&self) -> AccountResponse {
        let mut error = WireError::from_report(self.report(), None);
        if let AccountError::TooMany { retry_at } = self {
            error.retry_at = Some(*retry_at);
        }
        AccountResponse::Error { error }
    }
}

/// Where the service's mail goes (`[account.mail]` of a node file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// `host:port` of the SMTP server (the port defaults to 587 for
    /// STARTTLS, 465 for implicit TLS, 25 for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    /// `starttls` (the default: the server must offer it), `tls` (SMTPS),
    /// or `none` (plain SMTP: loopback relays only, without a login).
    #[serde(default, skip_serializing_if = "SmtpTls::is_default")]
    pub smtp_tls: SmtpTls,
    /// The SMTP login (AUTH) user; needs one password source below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_user: Option<String>,
    /// A file holding the SMTP password (its first line; relative to the
    /// node file). The password is never in the node file itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password_file: Option<String>,
    /// The name of an environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password_env: Option<String>,
    /// A PEM file of the CA(s) that sign the SMTP server's certificate (a
    /// private CA); set, it replaces the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_ca_file: Option<String>,
    /// The sender address.
    #[serde(default = "default_from")]
    pub from: String,
    /// Instead of SMTP: append every mail to this file (JSON lines, 0600).
    /// For the local demo fleet and tests only: whoever reads the file
    /// reads every account's codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<String>,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp: None,
            smtp_tls: SmtpTls::default(),
            smtp_user: None,
            smtp_password_file: None,
            smtp_password_env: None,
            smtp_ca_file: None,
            from: default_from(),
            outbox: None,
        }
    }
}

impl MailConfig {
    /// Mail to the outbox file `path` (the demo fleet and tests).
    pub fn outbox(path: &str) -> Self {
        MailConfig {
            outbox: Some(path.into()),
            ..Default::default()
        }
    }

    fn smtp_fields_set(&self) -> bool {
        self.smtp_tls != SmtpTls::default()
            || self.smtp_user.is_some()
            || self.smtp_password_file.is_some()
            || self.smtp_password_env.is_some()
            || self.smtp_ca_file.is_some()
    }
}

fn default_from() -> String {
    "coffer-vault@localhost".into()
}

/// The rate limits on codes (per address and per client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailLimits {
    /// Seconds between two codes for one address.
    pub min_gap_secs: u64,
    /// Codes per address per hour.
    pub per_address_hour: usize,
    /// Codes asked from one client address per hour.
    pub per_client_hour: usize,
}

impl MailLimits {
    /// One code a minute and 10 an hour per address, 30 an hour per client.
    pub const DEFAULT: MailLimits = MailLimits {
        min_gap_secs: 60,
        per_address_hour: 10,
        per_client_hour: 30,
    };
    /// No limits (the outbox of the local demo fleet: no one's mailbox).
    pub const NONE: MailLimits = MailLimits {
        min_gap_secs: 0,
        per_address_hour: usize::MAX,
        per_client_hour: usize::MAX,
    };
}

enum Mailer {
    Smtp(std::sync::Arc<SmtpMailer>),
    Outbox { path: PathBuf },
}

struct PendingCode {
    hash: [u8; 32],
    expires: u64,
    tries: u32,
}

#[derive(Default)]
struct Book {
    codes: HashMap<String, PendingCode>,
    sent: HashMap<String, VecDeque<u64>>,
    clients: HashMap<IpAddr, VecDeque<u64>>,
}

/// The account service of one host.
pub struct AccountService {
    fleet_id: String,
    signer: TicketSigner,
    mailer: Mailer,
    limits: MailLimits,
    book: Mutex<Book>,
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService")
            .field("fleet_id", &self.fleet_id)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn code_hash(account: &str, code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"coffer-mail-code-v1\0");
    h.update((account.len() as u32).to_be_bytes());
    h.update(account.as_bytes());
    h.update(code.as_bytes());
    h.finalize().into()
}

/// Keeps the times of the last hour; whether `max` are there already.
fn full(times: &mut VecDeque<u64>, now: u64, max: usize) -> Option<u64> {
    while times.front().is_some_and(|t| *t + 3600 <= now) {
        times.pop_front();
    }
    (times.len() >= max).then(|| times.front().map_or(now, |t| t + 3600))
}

fn bound<K: Clone + Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
    if m.len() >= MAX_ENTRIES {
        // Crude but bounded: drop an arbitrary tenth.
        let drop: Vec<K> = m.keys().take(MAX_ENTRIES / 10).cloned().collect();
        for k in drop {
            m.remove(&k);
        }
    }
}

impl AccountService {
    /// A service for `fleet_id` signing with `signer`, mailing per `mail`.
    /// SMTP gets [`MailLimits::DEFAULT`], an outbox none.
    pub fn new(
        fleet_id: &str,
        signer: TicketSigner,
        mail: &MailConfig,
        base: &Path,
    ) -> Result<Self, crate::ServerError> {
        if mail.from.contains(['\r', '\n', '<', '>']) {
            return Err(crate::ServerError::Config(
                "[account.mail] from is not an address".into(),
            ));
        }
        let (mailer, limits) = match (&mail.smtp, &mail.outbox) {
            (Some(addr), None) => (
                Mailer::Smtp(std::sync::Arc::new(SmtpMailer::new(addr, mail, base)?)),
                MailLimits::DEFAULT,
            ),
            (None, Some(_)) if mail.smtp_fields_set() => {
                return Err(crate::ServerError::Config(
                    "[account.mail] smtp_* settings need `smtp`, not `outbox`".into(),
                ))
            }
            (None, Some(p)) => {
                let p = Path::new(p);
                let path = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                };
                (Mailer::Outbox { path }, MailLimits::NONE)
            }
            _ => {
                return Err(crate::ServerError::Config(
                    "[account.mail] needs exactly one of `smtp` and `outbox`".into(),
                ))
            }
        };
        Ok(AccountService {
            fleet_id: fleet_id.into(),
            signer,
            mailer,
            limits,
            book: Mutex::new(Book::default()),
        })
    }

    /// Other rate limits (tests).
    pub fn with_limits(mut self, limits: MailLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The ticket key's public half (what the HSMs hold).
    pub fn ticket_key(&self) -> [u8; 32] {
        self.signer.public()
    }

    /// The outbox file, if mail goes to one.
    pub fn outbox(&self) -> Option<&Path> {
        match &self.mailer {
            Mailer::Outbox { path } => Some(path),
            Mailer::Smtp(_) => None,
        }
    }

    /// The start-up check of the SMTP server (TLS and login, no mail);
    /// `None` for an outbox.
    pub async fn check_mail(&self) -> Option<Result<(), MailError>> {
        match &self.mailer {
            Mailer::Smtp(m) => Some(m.check().await),
            Mailer::Outbox { .. } => None,
        }
    }

    /// [`Self::check_mail`], its outcome logged (`CF-V08x` on failure).
    pub async fn log_mail_check(&self) {
        if let Mailer::Smtp(m) = &self.mailer {
            match m.check().await {
                Ok(()) => tracing::info!(
                    server = m.server(),
                    "the SMTP server accepted TLS and the login"
                ),
                Err(e) => {
                    tracing::warn!(code = e.code(), error = %e, next_step = %e.next_step(), "the SMTP server cannot take the vault's mail: no code can be mailed")
                }
            }
        }
    }

    fn account(&self, raw: &str) -> Result<String, AccountError> {
        Ok(match self.mailer {
            // Real mail: the account must be an address.
            Mailer::Smtp(_) => normalize_email(raw)?,
            // The demo outbox: any account name (no one's mailbox).
            Mailer::Outbox { .. } => normalize_account(raw)?,
        })
    }

    /// `challenge`: mails a fresh code to `account` (delivery runs apart, so
    /// the answer does not depend on the address).
    pub fn challenge(
        &self,
        account: &str,
        client: IpAddr,
    ) -> Result<AccountResponse, AccountError> {
        let account = self.account(account)?;
        let t = now();
        let code = {
            let mut book = self.book.lock().map_err(|_| AccountError::NoMail)?;
            let l = self.limits;
            bound(&mut book.clients);
            let c = book.clients.entry(client).or_default();
            if let Some(retry_at) = full(c, t, l.per_client_hour) {
                return Err(AccountError::TooMany { retry_at });
            }
            bound(&mut book.sent);
            let s = book.sent.entry(account.clone()).or_default();
            if let Some(last) = s.back() {
                if t < last + l.min_gap_secs {
                    return Err(AccountError::TooMany {
                        retry_at: last + l.min_gap_secs,
                    });
                }
            }
            if let Some(retry_at) = full(s, t, l.per_address_hour) {
                return Err(AccountError::TooMany { retry_at });
            }
            s.push_back(t);
            if let Some(c) = book.clients.get_mut(&client) {
                c.push_back(t);
            }
            let code = Zeroizing::new(format!(
                "{:0width$}",
                rand::rngs::OsRng.gen_range(0..10u64.pow(MAIL_CODE_DIGITS as u32)),
                width = MAIL_CODE_DIGITS
            ));
            bound(&mut book.codes);
            book.codes.insert(
                account.clone(),
                PendingCode {
                    hash: code_hash(&account, &code),
                    expires: t + MAIL_CODE_LIFETIME_SECS,
                    tries: MAIL_CODE_TRIES,
                },
            );
            code
        };
        let shown = format!("{} {}", &code[..4], &code[4..]);
        let mail = OutboxMail {
            to: account,
            at: t,
            subject: "Your Coffer vault code".into(),
            body: format!(
                "Your code for the Coffer vault is {shown}.\r\nIt is valid for 10 minutes. If you did not ask for it, someone typed your address: you can ignore this mail; without it no one can reach your vault record.\r\n"
            ),
            code: Some(code.to_string()),
        };
        self.send(mail);
        Ok(challenge_sent())
    }

    /// `verify`: the code from the mail for a ticket held by `holder`.
    pub fn verify(
        &self,
        account: &str,
        typed: &str,
        holder: &[u8],
    ) -> Result<AccountTicket, AccountError> {
        let account = self.account(account)?;
        let holder: [u8; 32] = holder
            .try_into()
            .map_err(|_| ProtoError::Malformed("the holder must be 32 bytes".into()))?;
        let code = parse_mail_code(typed).ok_or(AccountError::BadCode)?;
        let t = now();
        {
            let mut book = self.book.lock().map_err(|_| AccountError::NoMail)?;
            let Some(p) = book.codes.get_mut(&account) else {
                return Err(AccountError::BadCode);
            };
            if p.expires <= t || p.tries == 0 {
                book.codes.remove(&account);
                return Err(AccountError::BadCode);
            }
            if !bool::from(code_hash(&account, &code).ct_eq(&p.hash)) {
                p.tries -= 1;
                if p.tries == 0 {
                    book.codes.remove(&account);
                }
                return Err(AccountError::BadCode);
            }
            book.codes.remove(&account);
        }
        Ok(self
            .signer
            .issue(&self.fleet_id, &account, &holder, t + TICKET_LIFETIME_SECS)?)
    }

    /// Hands a mail to the mailer without waiting for it.
    fn send(&self, mail: OutboxMail) {
        match &self.mailer {
            Mailer::Outbox { path } => {
                if let Err(e) = append_outbox(path, &mail) {
                    tracing::warn!(error = %e, "the outbox could not be written");
                }
            }
            Mailer::Smtp(m) => {
                let m = m.clone();
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                rt.spawn(async move {
                    if let Err(e) = m.send(&mail).await {
                        tracing::warn!(
                            code = e.code(),
                            error = %e,
                            next_step = %e.next_step(),
                            "a mail was not delivered"
                        );
                    }
                });
            }
        }
    }
}

impl NoticeSink for AccountService {
    fn notice(&self, notice: AccountNotice) {
        let when = format_time(notice.at);
        let (subject, body) = match notice.kind {
            NoticeKind::WrongGuess { attempts_remaining } => (
                "A wrong recovery code was tried on your Coffer vault".to_string(),
                format!(
                    "At {when} someone tried a wrong recovery code for your Coffer vault record (or did not finish a recovery). {attempts_remaining} attempts remain before the record is destroyed; the vault waits longer after each wrong code.\r\nIf this was not you, someone can read this mailbox: secure it, and change your recovery code once you next recover.\r\n"
                ),
            ),
            NoticeKind::Destroyed => (
                "Your Coffer vault record was destroyed".to_string(),
                format!(
                    "At {when} the last allowed attempt at your recovery code was spent: the vault destroyed your record. Use your recovery key if you have one, and register a new code.\r\n"
                ),
            ),
        };
        self.send(OutboxMail {
            to: notice.account,
            at: notice.at,
            subject,
            body,
            code: None,
        });
    }
}

fn format_time(t: u64) -> String {
    // UTC, "2026-12-05 06:30:00 UTC", without a date crate.
    let days = t / 86_400;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn append_outbox(path: &Path, mail: &OutboxMail) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    let mut line = serde_json::to_vec(mail).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)
}

/// Which account request a body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRoute {
    Challenge,
    Verify,
}

/// One account-service request (JSON) from `client`, answered (JSON):
/// what the HTTP API and the in-process transports share. Without a
/// service every request is refused with `CF-V027`.
pub fn handle(
    svc: Option<&AccountService>,
    route: AccountRoute,
    body: &[u8],
    client: IpAddr,
) -> AccountResponse {
    let Some(svc) = svc else {
        return AccountError::NoMail.response();
    };
    let bad = |e: serde_json::Error| {
        AccountError::Input(ProtoError::Malformed(
            e.to_string().chars().take(200).collect(),
        ))
        .response()
    };
    let version = |v: u32| {
        (v != coffer_vault_proto::PROTOCOL_VERSION)
            .then(|| AccountError::Input(ProtoError::UnsupportedVersion(v)).response())
    };
    match route {
        AccountRoute::Challenge => {
            let req: coffer_vault_proto::account::ChallengeRequest =
                match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return bad(e),
                };
            if let Some(r) = version(req.v) {
                return r;
            }
            match svc.challenge(&req.account, client) {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(code = e.code(), "account challenge refused");
                    e.response()
                }
            }
        }
        AccountRoute::Verify => {
            let req: coffer_vault_proto::account::VerifyRequest = match serde_json::from_slice(body)
            {
                Ok(r) => r,
                Err(e) => return bad(e),
            };
            if let Some(r) = version(req.v) {
                return r;
            }
            match svc.verify(&req.account, &req.code, &req.holder.0) {
                Ok(ticket) => AccountResponse::Ticket { ticket },
                Err(e) => {
                    tracing::info!(code = e.code(), "account verification refused");
                    e.response()
                }
            }
        }
    }
}

pub use coffer_vault_client::OutboxTickets;
pub use coffer_vault_proto::account::{outbox_code, outbox_mails, OutboxMail};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_796_452_200), "2026-12-05 06:30:00 UTC");
    }

    fn outbox_service(dir: &Path) -> AccountService {
        AccountService::new(
            "f",
            TicketSigner::generate(),
            &MailConfig::outbox("outbox.jsonl"),
            dir,
        )
        .unwrap()
    }

    #[test]
    fn a_code_gives_one_ticket_and_wrong_codes_use_it_up() {
        let d = tempfile::tempdir().unwrap();
        let s = outbox_service(d.path());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let h = [7u8; 32];
        assert_eq!(
            s.verify("a@b.c", "12345678", &h),
            Err(AccountError::BadCode)
        );
        s.challenge("A@B.c", ip).unwrap();
        let out = s.outbox().unwrap().to_path_buf();
        let code = outbox_code(&out, "a@b.c").unwrap();
        let t = s.verify("a@b.c", &code, &h).unwrap();
        assert_eq!(t.account, "a@b.c");
        // Used once.
        assert_eq!(s.verify("a@b.c", &code, &h), Err(AccountError::BadCode));
        // Five wrong tries use a code up, even for the right one after.
        s.challenge("a@b.c", ip).unwrap();
        let code = outbox_code(&out, "a@b.c").unwrap();
        let wrong = if code.as_str() == "00000000" {
            "00000001"
        } else {
            "00000000"
        };
        for _ in 0..MAIL_CODE_TRIES {
            assert_eq!(s.verify("a@b.c", wrong, &h), Err(AccountError::BadCode));
        }
        assert_eq!(s.verify("a@b.c", &code, &h), Err(AccountError::BadCode));
        // A newer code replaces the older one.
        s.challenge("a@b.c", ip).unwrap();
        let old = outbox_code(&out, "a@b.c").unwrap();
        s.challenge("a@b.c", ip).unwrap();
        let new = outbox_code(&out, "a@b.c").unwrap();
        if old != new {
            assert_eq!(s.verify("a@b.c", &old, &h), Err(AccountError::BadCode));
        }
        assert!(s.verify("a@b.c", &new, &h).is_ok());
    }

    #[test]
    fn a_password_in_the_node_file_is_refused_without_echoing_it() {
        let text = "smtp = \"mail.example.net:587\"\nsmtp_user = \"v\"\nsmtp_password = \"hunter2-secret\"\n";
        let e = toml::from_str::<MailConfig>(text).unwrap_err();
        // What load_node reports (the message, without the source line).
        assert!(e.message().contains("smtp_password"), "{}", e.message());
        assert!(!e.message().contains("hunter2"), "{}", e.message());
        // The defaults: STARTTLS, and nothing SMTP-only written back.
        let c: MailConfig = toml::from_str("smtp = \"mail.example.net\"\n").unwrap();
        assert_eq!(c.smtp_tls, SmtpTls::Starttls);
        assert_eq!(toml::to_string(&c).unwrap().lines().count(), 2);
    }

    #[test]
    fn codes_are_rate_limited_per_address_and_per_client() {
        let d = tempfile::tempdir().unwrap();
        let s = outbox_service(d.path()).with_limits(MailLimits::DEFAULT);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        s.challenge("a@b.c", ip).unwrap();
        assert!(matches!(
            s.challenge("a@b.c", "10.0.0.2".parse().unwrap()),
            Err(AccountError::TooMany { .. })
        ));
        for i in 1..30 {
            s.challenge(&format!("u{i}@b.c"), ip).unwrap();
        }
        let e = s.challenge("z@b.c", ip).unwrap_err();
        assert!(matches!(e, AccountError::TooMany { .. }));
        assert_eq!(e.code(), "CF-V029");
        // The message says when (the wire answer carries retry_at too).
        let AccountError::TooMany { retry_at } = e else {
            unreachable!()
        };
        assert!(
            e.to_string()
                .contains(&format!("asked for at {} (in ", format_time(retry_at))),
            "{e}"
        );
        // The refused ones mailed nothing.
        assert_eq!(outbox_mails(s.outbox().unwrap()).len(), 30);
    }
}
