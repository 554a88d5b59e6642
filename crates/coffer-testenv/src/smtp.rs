//! A real SMTP server for the mail tests: python's aiosmtpd (Debian's
//! `python3-aiosmtpd`, which `scripts/setup.sh` installs) on a loopback
//! port, delivering into a Maildir, with STARTTLS, implicit TLS (SMTPS) or
//! none, and a required login if asked. It logs every command line a client
//! sends (`commands`), so a test can see that nothing (no login, no mail)
//! was said to a server that should get nothing.

use crate::Proc;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the server protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP; no STARTTLS offered.
    Plain,
    /// STARTTLS offered and required before any other command.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// What the server is started with.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub tls: SmtpTls,
    /// PEM files: the server's certificate chain and its key (for TLS).
    pub cert_chain: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A login (user, password) required before mail; on a plain server it
    /// is offered in clear (a server a client must not log in to).
    pub login: Option<(String, String)>,
}

/// A running aiosmtpd.
pub struct SmtpServer {
    _proc: Proc,
    pub port: u16,
    pub maildir: PathBuf,
    /// The server's log: every command line a client sent (`>>`).
    pub log: PathBuf,
}

/// A python with aiosmtpd: `$COFFER_PYTHON`, else `/usr/bin/python3` or
/// `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("COFFER_PYTHON") {
        return p;
    }
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.into();
        }
    }
    panic!("no python3 with aiosmtpd: install python3-aiosmtpd (scripts/setup.sh)")
}

const SERVER: &str = r#"
import json, logging, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

cfg = json.loads(sys.argv[1])
logging.basicConfig(filename=cfg["log"], level=logging.INFO, format="%(message)s")
ctx = None
if cfg["tls"] != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg["cert"], cfg["key"])
kw = {}
if cfg["tls"] == "starttls":
    kw.update(tls_context=ctx, require_starttls=True)
elif cfg["tls"] == "implicit":
    kw.update(ssl_context=ctx)
if cfg.get("user") is not None:
    user, password = cfg["user"].encode(), cfg["password"].encode()
    def check(server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and data.login == user and data.password == password
        logging.info("login %s", "accepted" if ok else "refused")
        return AuthResult(success=ok, handled=False)
    # aiosmtpd offers AUTH only after its own STARTTLS when auth_require_tls
    # is set (it does not see implicit TLS): plain offers the login in clear
    # on purpose, implicit TLS is encrypted from the first byte.
    kw.update(authenticator=check, auth_required=True,
              auth_require_tls=cfg["tls"] == "starttls")
c = Controller(Mailbox(cfg["maildir"]), hostname="127.0.0.1", port=cfg["port"], **kw)
c.start()
open(cfg["ready"], "w").close()
while True:
    time.sleep(3600)
"#;

impl SmtpServer {
    /// Starts aiosmtpd in `dir` (its Maildir, log and script there) on a
    /// free loopback port, and waits until it listens.
    pub fn start(dir: &Path, opts: &SmtpOptions) -> SmtpServer {
        std::fs::create_dir_all(dir).unwrap();
        let port = crate::servers::free_port();
        let maildir = dir.join("maildir");
        let log = dir.join("smtp.log");
        let ready = dir.join("ready");
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let tls = match opts.tls {
            SmtpTls::Plain => "plain",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "implicit",
        };
        let cfg = format!(
            "{{\"port\":{port},\"maildir\":{},\"log\":{},\"ready\":{},\"tls\":\"{tls}\",\"cert\":{},\"key\":{},\"user\":{},\"password\":{}}}",
            json(&maildir.display().to_string()),
            json(&log.display().to_string()),
            json(&ready.display().to_string()),
            path(&opts.cert_chain).map_or("null".into(), |p| json(&p)),
            path(&opts.key).map_or("null".into(), |p| json(&p)),
            opts.login.as_ref().map_or("null".into(), |(u, _)| json(u)),
            opts.login.as_ref().map_or("null".into(), |(_, p)| json(p)),
        );
        let stderr = std::fs::File::create(dir.join("smtp.stderr")).unwrap();
        let child = Command::new(python())
            .args(["-c", SERVER, &cfg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start aiosmtpd");
        let mut proc = Proc(child);
        let end = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            if let Ok(Some(s)) = proc.0.try_wait() {
                panic!(
                    "aiosmtpd exited ({s}): {}",
                    std::fs::read_to_string(dir.join("smtp.stderr")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < end, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        SmtpServer {
            _proc: proc,
            port,
            maildir,
            log,
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every delivered mail's text.
    pub fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in rd.flatten() {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// The command lines clients sent (`>> b'EHLO …'`), in order.
    pub fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" >> "))
            .map(|l| l.split(" >> ").nth(1).unwrap_or_default().to_string())
            .collect()
    }

    /// The server's whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn json(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The 8 digits of the code in a code mail ("… vault is 1234 5678."), or
/// "" when the mail holds none.
pub fn code_in(mail: &str) -> String {
    mail.split("vault is ")
        .nth(1)
        .map(|r| r.chars().take(9).filter(char::is_ascii_digit).collect())
        .unwrap_or_default()
}
