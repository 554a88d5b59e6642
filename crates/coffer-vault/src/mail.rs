//! The account service's mail over SMTP (`[account.mail]` of a node file),
//! through `lettre` with rustls:
//!
//! * `smtp_tls = "starttls"` (the default): plain SMTP upgraded with
//!   STARTTLS before anything else is said; a server that offers no
//!   STARTTLS gets no login and no mail (`CF-V081`);
//! * `smtp_tls = "tls"`: implicit TLS from the first byte (SMTPS, port 465);
//! * `smtp_tls = "none"`: plain SMTP, only to a loopback address (a local
//!   MTA that does TLS onwards, and the tests) and without a login; refused
//!   for any other host when the node starts.
//!
//! The server's certificate is checked against the system's roots, or only
//! against the CA(s) in `smtp_ca_file` (a private CA). `smtp_user` logs in
//! (AUTH PLAIN or LOGIN, inside TLS); its password comes from the file
//! `smtp_password_file` or the environment variable named by
//! `smtp_password_env`, never from the node file, and is never logged.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use coffer_error::{ErrorKind, UserFacing};
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::account::{MailConfig, OutboxMail};
use crate::ServerError;

/// How long one SMTP delivery may take (connect, TLS, login, mail).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// How the connection to the SMTP server is protected (`smtp_tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP upgraded by STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS: loopback relays only, no login.
    None,
}

impl SmtpTls {
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }

    pub(crate) fn is_default(&self) -> bool {
        *self == SmtpTls::Starttls
    }
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "starttls" => Ok(SmtpTls::Starttls),
            "tls" => Ok(SmtpTls::Tls),
            "none" => Ok(SmtpTls::None),
            other => Err(format!(
                "{other:?}: expected `starttls` (the default), `tls` (SMTPS) or `none` (loopback only)"
            )),
        }
    }
}

/// Why a mail (or the start-up check of the SMTP server) failed. Carries
/// no secret: no password, no code, no mail text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// The server refused the login (wrong user or password), or wants one
    /// that is not configured, or offers no login method the client has.
    #[error("the SMTP server {server} refused the login{}: {detail}", user.as_ref().map(|u| format!(" of {u}")).unwrap_or_default())]
    LoginRefused {
        server: String,
        user: Option<String>,
        detail: String,
    },
    /// No TLS could be set up: the server offers no STARTTLS, the TLS
    /// handshake failed, or its certificate did not verify. Nothing (no
    /// login, no mail) was sent.
    #[error("no TLS with the SMTP server {server}, so nothing was sent to it: {detail}")]
    NoTls { server: String, detail: String },
    /// Any other failure: unreachable, timed out, or the mail refused.
    #[error("the SMTP server {server} did not take the mail: {detail}")]
    NotDelivered { server: String, detail: String },
}

impl UserFacing for MailError {
    fn kind(&self) -> ErrorKind {
        match self {
            MailError::LoginRefused { .. } | MailError::NoTls { .. } => ErrorKind::InvalidInput,
            MailError::NotDelivered { .. } => ErrorKind::VaultUnavailable,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            MailError::LoginRefused { .. } => "CF-V080",
            MailError::NoTls { .. } => "CF-V081",
            MailError::NotDelivered { .. } => "CF-V082",
        }
    }
    fn next_step(&self) -> String {
        match self {
            MailError::LoginRefused { .. } => "Operators: check smtp_user and the password in smtp_password_file or smtp_password_env (docs/fleet.md, \"Mail\"), then restart the node.".into(),
            MailError::NoTls { .. } => "Operators: use the SMTP server's submission port with STARTTLS (587) or smtp_tls = \"tls\" (465); for a private CA set smtp_ca_file. Never turn TLS off for a server that is not on this computer.".into(),
            MailError::NotDelivered { .. } => "Operators: check that the SMTP server is reachable from the node and accepts mail from the `from` address; the user can ask for a new code.".into(),
        }
    }
}

/// A configured SMTP mailer (built once when the node starts).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for messages.
    server: String,
    user: Option<String>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// `host:port`, `host`, `[v6]:port` or `[v6]`.
fn split_host_port(addr: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("smtp = {addr:?}: expected host:port");
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match addr.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (addr, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => default_port,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn resolve(base: &Path, p: &str) -> std::path::PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The login password, from the file or the environment variable named
/// (errors name the source, never the content).
fn read_password(s: &MailConfig, base: &Path) -> Result<Zeroizing<String>, ServerError> {
    let cfg = |m: String| ServerError::Config(format!("[account.mail] {m}"));
    let pw = match (&s.smtp_password_file, &s.smtp_password_env) {
        (Some(_), Some(_)) => {
            return Err(cfg(
                "has both smtp_password_file and smtp_password_env: name one password source"
                    .into(),
            ))
        }
        (None, None) => {
            return Err(cfg("smtp_user needs smtp_password_file or smtp_password_env (the password is never in the node file)".into()))
        }
        (Some(f), None) => {
            let path = resolve(base, f);
            let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                cfg(format!(
                    "smtp_password_file {}: cannot be read: {}",
                    path.display(),
                    e.kind()
                ))
            })?);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(&path) {
                    if m.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(file = %path.display(), "the SMTP password file can be read by other users: make it 0600");
                    }
                }
            }
            Zeroizing::new(text.lines().next().unwrap_or_default().to_string())
        }
        (None, Some(var)) => Zeroizing::new(
            std::env::var(var)
                .map_err(|_| cfg(format!("smtp_password_env: the environment variable {var} is not set (or not UTF-8)")))?,
        ),
    };
    if pw.is_empty() {
        return Err(cfg("the SMTP password is empty".into()));
    }
    Ok(pw)
}

/// The checks that need no file: the server's `host` and port, and the
/// sender; refuses plain SMTP to another computer, a login without TLS,
/// and a password source without a user (`fleet create` runs these too).
pub fn check_settings(
    smtp: &str,
    settings: &MailConfig,
) -> Result<(String, u16, Mailbox), ServerError> {
    let cfg = |m: String| ServerError::Config(format!("[account.mail] {m}"));
    let (host, port) =
        split_host_port(smtp.trim(), settings.smtp_tls.default_port()).map_err(cfg)?;
    let from = settings.from.as_str();
    let from: Mailbox = Mailbox::new(
        Some("Coffer vault".into()),
        from.parse()
            .map_err(|e| cfg(format!("from = {from:?} is not an address: {e}")))?,
    );
    if settings.smtp_user.is_none()
        && (settings.smtp_password_file.is_some() || settings.smtp_password_env.is_some())
    {
        return Err(cfg("a password source without smtp_user".into()));
    }
    if settings.smtp_tls == SmtpTls::None {
        if !is_loopback(&host) {
            return Err(cfg(format!(
                "smtp_tls = \"none\" is refused for {host}: codes would cross the network in clear; use \"starttls\" or \"tls\" (plain SMTP only to a relay on this computer)"
            )));
        }
        if settings.smtp_user.is_some() {
            return Err(cfg(
                "smtp_tls = \"none\" with smtp_user: the password would be sent in clear; use \"starttls\" or \"tls\"".into(),
            ));
        }
        if settings.smtp_ca_file.is_some() {
            return Err(cfg("smtp_ca_file with smtp_tls = \"none\"".into()));
        }
    }
    Ok((host, port, from))
}

impl SmtpMailer {
    /// The mailer for `smtp` (`host:port`) with the settings of `settings`
    /// (its `smtp_*` fields and `from`); `base` is the node file's folder.
    /// Refuses what would send a code or a password in clear to another
    /// computer.
    pub fn new(smtp: &str, settings: &MailConfig, base: &Path) -> Result<SmtpMailer, ServerError> {
        let cfg = |m: String| ServerError::Config(format!("[account.mail] {m}"));
        let (host, port, from) = check_settings(smtp, settings)?;
        let tls = match settings.smtp_tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut b = TlsParameters::builder(host.clone());
                if let Some(ca) = &settings.smtp_ca_file {
                    let path = resolve(base, ca);
                    let pem = std::fs::read(&path)
                        .map_err(|e| cfg(format!("smtp_ca_file {}: {e}", path.display())))?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        cfg(format!(
                            "smtp_ca_file {}: not a PEM certificate: {e}",
                            path.display()
                        ))
                    })?;
                    b = b
                        .certificate_store(CertificateStore::None)
                        .add_root_certificate(cert);
                }
                let params = b
                    .build_rustls()
                    .map_err(|e| cfg(format!("TLS for {host}: {e}")))?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        // EHLO: the sender's domain, or the address literal [127.0.0.1].
        let domain = from.email.domain();
        let hello = if domain.contains('.') && domain.parse::<IpAddr>().is_err() {
            ClientId::Domain(domain.to_string())
        } else {
            ClientId::default()
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .hello_name(hello)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = &settings.smtp_user {
            let pw = read_password(settings, base)?;
            builder = builder.credentials(Credentials::new(user.clone(), pw.to_string()));
        }
        let server = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(SmtpMailer {
            transport: builder.build(),
            server,
            user: settings.smtp_user.clone(),
            from,
        })
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn classify(&self, e: &lettre::transport::smtp::Error) -> MailError {
        let server = self.server.clone();
        // The whole chain (lettre puts the reason in its sources); no
        // secret is in it: lettre never echoes the login or the mail.
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let t = s.to_string();
            if !detail.contains(&t) {
                detail.push_str(": ");
                detail.push_str(&t);
            }
            src = s.source();
        }
        let detail: String = detail.chars().take(300).collect();
        let lower = detail.to_ascii_lowercase();
        let login = e
            .status()
            .is_some_and(|c| matches!(u16::from(c), 454 | 530 | 534 | 535 | 538))
            || lower.contains("authentication mechanism");
        if login {
            MailError::LoginRefused {
                server,
                user: self.user.clone(),
                detail,
            }
        } else if e.is_tls()
            || lower.contains("starttls")
            || lower.contains("certificate")
            || lower.contains("tls")
        {
            MailError::NoTls { server, detail }
        } else {
            MailError::NotDelivered { server, detail }
        }
    }

    /// Connects, sets up TLS and logs in, without sending mail (the
    /// node's start-up check).
    pub async fn check(&self) -> Result<(), MailError> {
        match tokio::time::timeout(SMTP_TIMEOUT, self.transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(MailError::NotDelivered {
                server: self.server.clone(),
                detail: "the server did not answer NOOP".into(),
            }),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(MailError::NotDelivered {
                server: self.server.clone(),
                detail: "timed out".into(),
            }),
        }
    }

    /// Sends one mail (the code mails hold the code: the formatted text is
    /// wiped after sending).
    pub async fn send(&self, mail: &OutboxMail) -> Result<(), MailError> {
        let not = |detail: String| MailError::NotDelivered {
            server: self.server.clone(),
            detail,
        };
        let to: Mailbox = Mailbox::new(
            None,
            mail.to
                .parse()
                .map_err(|_| not("the recipient is not an address".into()))?,
        );
        // The texts are ASCII with lines under SMTP's 998: sent as they are
        // (7bit), so the code and the sentences stay greppable in the
        // mailbox; anything else is left to lettre (quoted-printable).
        let text = mail.body.replace("\r\n", "\n").replace('\n', "\r\n");
        let body = if text.is_ascii()
            && !text.contains('\0')
            && text
                .split("\r\n")
                .all(|l| l.len() <= 998 && !l.contains('\r'))
        {
            Body::dangerous_pre_encoded(text.into_bytes(), ContentTransferEncoding::SevenBit)
        } else {
            Body::new(text)
        };
        let date = std::time::UNIX_EPOCH + Duration::from_secs(mail.at);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .date(date)
            .header(lettre::message::header::MIME_VERSION_1_0)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| not(format!("the mail could not be built: {e}")))?;
        let envelope = message.envelope().clone();
        let raw = Zeroizing::new(message.formatted());
        drop(message);
        match tokio::time::timeout(SMTP_TIMEOUT, self.transport.send_raw(&envelope, &raw)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(not("timed out".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tls: SmtpTls) -> MailConfig {
        MailConfig {
            smtp_tls: tls,
            from: "vault@example.net".into(),
            ..Default::default()
        }
    }

    fn refused(smtp: &str, s: &MailConfig, base: &Path) -> String {
        match SmtpMailer::new(smtp, s, base) {
            Ok(_) => panic!("{smtp} {s:?} was accepted"),
            Err(e) => {
                assert_eq!(e.code(), "CF-V052");
                e.to_string()
            }
        }
    }

    #[test]
    fn plain_smtp_is_for_loopback_relays_only() {
        let d = tempfile::tempdir().unwrap();
        for ok in [
            "127.0.0.1:25",
            "localhost:2525",
            "[::1]:25",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            SmtpMailer::new(ok, &settings(SmtpTls::None), d.path())
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "mail.example.net:25",
            "10.0.0.5:25",
            "[2001:db8::1]:25",
            "0.0.0.0:25",
        ] {
            let m = refused(bad, &settings(SmtpTls::None), d.path());
            assert!(m.contains("refused"), "{m}");
        }
        // The default is STARTTLS, for any host.
        assert_eq!(MailConfig::default().smtp_tls, SmtpTls::Starttls);
        let m = SmtpMailer::new("mail.example.net", &MailConfig::default(), d.path()).unwrap();
        assert_eq!(m.server(), "mail.example.net:587");
        let m = SmtpMailer::new("mail.example.net", &settings(SmtpTls::Tls), d.path()).unwrap();
        assert_eq!(m.server(), "mail.example.net:465");
    }

    #[test]
    fn the_password_comes_from_a_file_or_the_environment_and_is_never_shown() {
        let d = tempfile::tempdir().unwrap();
        let secret = "s3cret-Pa55word";
        std::fs::write(d.path().join("pw"), format!("{secret}\n")).unwrap();
        let user = |f: Option<&str>, e: Option<&str>, tls: SmtpTls| MailConfig {
            smtp_tls: tls,
            smtp_user: Some("vault".into()),
            smtp_password_file: f.map(Into::into),
            smtp_password_env: e.map(Into::into),
            ..settings(tls)
        };
        let m = SmtpMailer::new(
            "mail.example.net:587",
            &user(Some("pw"), None, SmtpTls::Starttls),
            d.path(),
        )
        .unwrap();
        assert!(!format!("{m:?}").contains(secret));
        // No source, two sources, a missing file, an unset variable, and
        // a login over plain SMTP: refused, and no message shows the secret.
        let cases = [
            ("mail.example.net:587", user(None, None, SmtpTls::Starttls)),
            (
                "mail.example.net:587",
                user(
                    Some("pw"),
                    Some("COFFER_TEST_UNSET_VAR_1"),
                    SmtpTls::Starttls,
                ),
            ),
            (
                "mail.example.net:587",
                user(Some("nope"), None, SmtpTls::Starttls),
            ),
            (
                "mail.example.net:587",
                user(None, Some("COFFER_TEST_UNSET_VAR_1"), SmtpTls::Starttls),
            ),
            ("127.0.0.1:25", user(Some("pw"), None, SmtpTls::None)),
        ];
        for (smtp, s) in cases {
            let m = refused(smtp, &s, d.path());
            assert!(!m.contains(secret), "{m}");
        }
        let m = refused(
            "mail.example.net:587",
            &user(None, Some("COFFER_TEST_UNSET_VAR_1"), SmtpTls::Starttls),
            d.path(),
        );
        assert!(m.contains("COFFER_TEST_UNSET_VAR_1"), "{m}");
        // A password source without a user.
        let mut s = user(Some("pw"), None, SmtpTls::Starttls);
        s.smtp_user = None;
        refused("mail.example.net:587", &s, d.path());
        // PATH is always set: an env source works.
        SmtpMailer::new(
            "mail.example.net:587",
            &user(None, Some("PATH"), SmtpTls::Tls),
            d.path(),
        )
        .unwrap();
    }
}
