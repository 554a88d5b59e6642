//! The account service's mail over a protected SMTP connection, against a
//! real SMTP server (python aiosmtpd on loopback, `coffer_testenv::smtp`)
//! and real `coffer-vault node` processes:
//!
//! * STARTTLS with a login (a private CA made here with rcgen): the code
//!   arrives and verifies; the password and the code stay out of the log;
//!   a restart of the node forgets the pending code (in memory only);
//! * implicit TLS (SMTPS) delivers too;
//! * a wrong password: a named error (`CF-V080`) in the node's log, no mail,
//!   and no code or password in the log;
//! * a server that offers no STARTTLS, or whose certificate does not verify:
//!   refused (`CF-V081`), and the server hears no login and no mail.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_testenv::smtp::{code_in, SmtpOptions, SmtpServer, SmtpTls};
use coffer_vault_client::{PinnedFleetKey, VaultClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

const USER: &str = "vault-mailer";
const PASSWORD: &str = "Corr3ct-h0rse-battery";
const ALICE: &str = "alice@example.org";

/// A throwaway CA in `dir` and a server certificate for 127.0.0.1 and
/// localhost signed by it: (ca.pem, chain.pem, key.pem).
fn pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("Coffer mail test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_pem, chain, key_pem) = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-chain.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    (ca_pem, chain, key_pem)
}

fn server(
    dir: &Path,
    tls: SmtpTls,
    pki: &(PathBuf, PathBuf, PathBuf),
    password: &str,
) -> SmtpServer {
    SmtpServer::start(
        dir,
        &SmtpOptions {
            tls,
            cert_chain: Some(pki.1.clone()),
            key: Some(pki.2.clone()),
            login: Some((USER.into(), password.into())),
        },
    )
}

/// The password file, private (0600) as docs/fleet.md asks.
fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A one-node fleet mailing through `smtp` with `extra` flags, started.
async fn fleet(dir: tempfile::TempDir, smtp: &str, extra: &[&str]) -> common::Fleet {
    let mut args = vec!["--smtp", smtp, "--mail-from", "vault@example.net"];
    args.extend_from_slice(extra);
    let public = common::create_with(dir.path(), 1, 10, &args);
    let f = common::Fleet::at(dir, public);
    f.start_all();
    f.wait_ready().await;
    f
}

fn client(f: &common::Fleet) -> VaultClient {
    VaultClient::http(
        &f.public.urls[0],
        Arc::new(PinnedFleetKey::parse(&f.public.fleet_key).unwrap()),
    )
    .unwrap()
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs of exactly 8 digits (or "dddd dddd", as a mail shows a code) that
/// stand alone in `text`: what a leaked code would look like.
fn code_like(text: &str) -> Vec<String> {
    let b: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let alone = |i: usize| i >= b.len() || !(b[i].is_ascii_alphanumeric() || b[i] == '.');
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || alone(i - 1)) {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let run: String = b[i..j].iter().collect();
            if run.len() == 8 && alone(j) {
                out.push(run.clone());
            }
            if run.len() == 4
                && j + 5 <= b.len()
                && b[j] == ' '
                && b[j + 1..j + 5].iter().all(char::is_ascii_digit)
                && alone(j + 5)
            {
                out.push(b[i..j + 5].iter().collect());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

#[tokio::test]
async fn a_code_goes_by_starttls_with_a_login_arrives_and_verifies() {
    let dir = common::test_dir();
    let ca = pki(dir.path(), "private");
    let smtp = server(&dir.path().join("smtp"), SmtpTls::Starttls, &ca, PASSWORD);
    let pw = dir.path().join("smtp-password");
    private_file(&pw, &format!("{PASSWORD}\n"));
    let f = fleet(
        dir,
        &smtp.addr(),
        &[
            "--smtp-user",
            USER,
            "--smtp-password-file",
            pw.to_str().unwrap(),
            "--smtp-ca-file",
            ca.0.to_str().unwrap(),
        ],
    )
    .await;
    // The node file names where the password is, never the password.
    let node_file = std::fs::read_to_string(f.dir().join("node-1.toml")).unwrap();
    assert!(!node_file.contains(PASSWORD));
    assert!(node_file.contains("smtp_password_file"), "{node_file}");
    // The start-up check logged in over TLS.
    until("the start-up check", 20, || {
        f.all_logs().contains("accepted TLS and the login")
    })
    .await;

    let c = client(&f);
    c.send_mail_code(" Alice@Example.org").await.unwrap();
    until("the code mail", 20, || smtp.mails().len() == 1).await;
    let mail = smtp.mails().remove(0);
    assert!(mail.contains(&format!("To: {ALICE}")), "{mail}");
    assert!(
        mail.contains("From: \"Coffer vault\" <vault@example.net>"),
        "{mail}"
    );
    assert!(mail.contains("MIME-Version: 1.0"), "{mail}");
    let code = code_in(&mail);
    assert_eq!(code.len(), 8, "{mail}");
    c.verify_mail_code(ALICE, &common::code(&code))
        .await
        .unwrap();

    // What the server heard: STARTTLS first, then the login inside TLS.
    let cmds = smtp.commands();
    let first = |w: &str| {
        cmds.iter()
            .position(|c| c.to_ascii_uppercase().contains(w))
            .unwrap_or_else(|| panic!("no {w} in {cmds:?}"))
    };
    assert!(first("STARTTLS") < first("AUTH"), "{cmds:?}");
    assert!(first("AUTH") < first("MAIL FROM"), "{cmds:?}");
    assert!(smtp.log_text().contains("login accepted"));

    // Neither the password nor the code is in the node's log, and the
    // private password file raised no warning.
    let log = f.all_logs();
    assert!(!log.contains("can be read by other users"), "{log}");
    assert!(!log.contains(PASSWORD));
    assert!(code_like(&log).is_empty(), "{:?}", code_like(&log));

    // Pending codes live in the node's memory only: a restart forgets
    // them, and the per-address limit starts over.
    c.send_mail_code("bob@example.org").await.unwrap();
    until("bob's mail", 20, || smtp.mails().len() == 2).await;
    let bob = smtp
        .mails()
        .into_iter()
        .find(|m| m.contains("To: bob@example.org"))
        .unwrap();
    f.kill(0);
    f.start(0);
    f.wait_ready().await;
    let e = c
        .verify_mail_code("bob@example.org", &common::code(&code_in(&bob)))
        .await
        .unwrap_err();
    assert_eq!(
        coffer_error::UserFacing::report(&e).code,
        "CF-V026",
        "{e:?}"
    );
    c.send_mail_code("bob@example.org").await.unwrap();
    until("bob's second mail", 20, || smtp.mails().len() == 3).await;
}

#[tokio::test]
async fn implicit_tls_smtps_delivers_a_code() {
    let dir = common::test_dir();
    let ca = pki(dir.path(), "private");
    let smtp = server(&dir.path().join("smtp"), SmtpTls::Implicit, &ca, PASSWORD);
    let pw = dir.path().join("smtp-password");
    private_file(&pw, PASSWORD);
    let f = fleet(
        dir,
        &smtp.addr(),
        &[
            "--smtp-tls",
            "tls",
            "--smtp-user",
            USER,
            "--smtp-password-file",
            pw.to_str().unwrap(),
            "--smtp-ca-file",
            ca.0.to_str().unwrap(),
        ],
    )
    .await;
    let c = client(&f);
    c.send_mail_code(ALICE).await.unwrap();
    until("the code mail", 20, || smtp.mails().len() == 1).await;
    let code = code_in(&smtp.mails()[0]);
    c.verify_mail_code(ALICE, &common::code(&code))
        .await
        .unwrap();
    assert!(!smtp.commands().iter().any(|c| c.contains("STARTTLS")));
}

#[tokio::test]
async fn a_wrong_smtp_password_is_named_in_the_log_and_nothing_leaks() {
    let dir = common::test_dir();
    let ca = pki(dir.path(), "private");
    let smtp = server(&dir.path().join("smtp"), SmtpTls::Starttls, &ca, PASSWORD);
    let wrong = "Wr0ng-pa55word-typed";
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, wrong).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let f = fleet(
        dir,
        &smtp.addr(),
        &[
            "--smtp-user",
            USER,
            "--smtp-password-file",
            pw.to_str().unwrap(),
            "--smtp-ca-file",
            ca.0.to_str().unwrap(),
        ],
    )
    .await;
    let count = |s: &str, w: &str| s.matches(w).count();
    // At start: the check fails with the login's code.
    until("CF-V080 at start", 20, || {
        count(&f.all_logs(), "CF-V080") >= 1
    })
    .await;
    // A code asked for: the same answer as always (nothing about the
    // address or the mail server), the mail is refused at the login.
    let c = client(&f);
    c.send_mail_code(ALICE).await.unwrap();
    until("CF-V080 for the mail", 20, || {
        count(&f.all_logs(), "CF-V080") >= 2
    })
    .await;
    let log = f.all_logs();
    let line = log.lines().rfind(|l| l.contains("CF-V080")).unwrap();
    assert!(line.contains("a mail was not delivered"), "{line}");
    assert!(line.contains("refused the login of vault-mailer"), "{line}");
    assert!(line.contains("535"), "{line}");
    assert!(smtp.mails().is_empty());
    assert!(smtp.log_text().contains("login refused"));
    assert!(!smtp.commands().iter().any(|c| c.contains("MAIL FROM")));
    assert!(!log.contains(wrong) && !log.contains(PASSWORD));
    // This test's password file is world-readable (0644): the node says so.
    assert!(log.contains("the SMTP password file can be read by other users"));
    assert!(code_like(&log).is_empty(), "{:?}", code_like(&log));
}

#[tokio::test]
async fn a_server_without_starttls_or_with_a_strange_certificate_gets_nothing() {
    let dir = common::test_dir();
    let ca = pki(dir.path(), "private");
    // A plain server offering the login in clear: what a downgrade looks
    // like (STARTTLS stripped).
    let plain = SmtpServer::start(
        &dir.path().join("plain"),
        &SmtpOptions {
            tls: SmtpTls::Plain,
            cert_chain: None,
            key: None,
            login: Some((USER.into(), PASSWORD.into())),
        },
    );
    let pw = dir.path().join("smtp-password");
    private_file(&pw, PASSWORD);
    let f = fleet(
        dir,
        &plain.addr(),
        &[
            "--smtp-user",
            USER,
            "--smtp-password-file",
            pw.to_str().unwrap(),
            "--smtp-ca-file",
            ca.0.to_str().unwrap(),
        ],
    )
    .await;
    let count = |w: &str| f.all_logs().matches(w).count();
    until("CF-V081 at start", 20, || count("CF-V081") >= 1).await;
    let c = client(&f);
    c.send_mail_code(ALICE).await.unwrap();
    until("CF-V081 for the mail", 20, || count("CF-V081") >= 2).await;
    assert!(f.all_logs().contains("STARTTLS"), "{}", f.all_logs());
    assert!(plain.mails().is_empty());
    let cmds = plain.commands();
    assert!(cmds.iter().any(|c| c.contains("EHLO")), "{cmds:?}");
    assert!(
        !cmds
            .iter()
            .any(|c| c.to_ascii_uppercase().contains("AUTH") || c.contains("MAIL")),
        "the login or the mail went to a server without TLS: {cmds:?}"
    );

    // A STARTTLS server whose certificate another CA signed: refused at
    // the handshake, nothing said inside.
    let other = pki(f.dir(), "other");
    let strange = server(
        &f.dir().join("strange"),
        SmtpTls::Starttls,
        &other,
        PASSWORD,
    );
    f.kill(0);
    let node = f.dir().join("node-1.toml");
    let text = std::fs::read_to_string(&node).unwrap();
    std::fs::write(&node, text.replace(&plain.addr(), &strange.addr())).unwrap();
    let before = count("CF-V081");
    f.start(0);
    f.wait_ready().await;
    until("CF-V081 at restart", 20, || count("CF-V081") > before).await;
    c.send_mail_code(ALICE).await.unwrap();
    until("CF-V081 for the mail", 20, || count("CF-V081") > before + 1).await;
    assert!(strange.mails().is_empty());
    let cmds = strange.commands();
    assert!(cmds.iter().any(|c| c.contains("STARTTLS")), "{cmds:?}");
    assert!(
        !cmds
            .iter()
            .any(|c| c.to_ascii_uppercase().contains("AUTH") || c.contains("MAIL")),
        "{cmds:?}"
    );
    assert!(!f.all_logs().contains(PASSWORD));
}

#[test]
fn plain_smtp_to_another_computer_is_refused_at_the_ceremony() {
    let dir = common::test_dir();
    let out = std::process::Command::new(common::BIN)
        .args([
            "fleet",
            "create",
            "--nodes",
            "1",
            "--smtp",
            "mail.example.net:25",
            "--smtp-tls",
            "none",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CF-V052") && err.contains("refused for mail.example.net"),
        "{err}"
    );
    assert!(!dir.path().join("node-1.toml").exists());
}
