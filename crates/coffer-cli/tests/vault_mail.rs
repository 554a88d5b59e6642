//! `coffer vault send-code` against a real vault node whose account service
//! mails through a real SMTP server (aiosmtpd with STARTTLS and a login, a
//! CA made here): the first code arrives; a second one for the same address
//! within the minute is refused with `CF-V029` and the time a new one can be
//! asked for, and no second mail reaches the mailbox. The first code still
//! verifies (the refusal replaced nothing).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::RaftTuning;
use coffer_testenv::smtp::{SmtpOptions, SmtpServer, SmtpTls};
use coffer_vault::account::MailConfig;
use coffer_vault::node::{fleet_create, run_node, CreateOptions};
use coffer_vault_client::{PinnedFleetKey, SecretString, VaultClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

const ALICE: &str = "alice@example.org";

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, as
/// PEM files in `dir`: (ca, chain, key).
fn pki(dir: &Path) -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Coffer mail test CA (throwaway)");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("chain.pem"), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();
    (p("ca.pem"), p("chain.pem"), p("key.pem"))
}

fn free() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The CLI in a blocking thread (the node runs on this test's runtime).
async fn coffer(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        common::coffer(&a)
    })
    .await
    .unwrap()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_code_within_the_minute_is_refused_with_the_time_and_not_mailed() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = pki(dir.path());
    let smtp = SmtpServer::start(
        &dir.path().join("smtp"),
        &SmtpOptions {
            tls: SmtpTls::Starttls,
            cert_chain: Some(chain.into()),
            key: Some(key.into()),
            login: Some(("vault".into(), "mail-pass-1".into())),
        },
    );
    std::fs::write(dir.path().join("smtp-password"), "mail-pass-1\n").unwrap();
    let fleet_dir = dir.path().join("fleet");
    std::fs::create_dir(&fleet_dir).unwrap();
    let opts = CreateOptions {
        nodes: 1,
        fleet_id: "mail-throttle".into(),
        guess_limit: 10,
        addrs: vec![format!("127.0.0.1:{}", free())],
        fleet_addrs: vec![format!("127.0.0.1:{}", free())],
        limits: Default::default(),
        tuning: RaftTuning::local(),
        witness_url: None,
        operator_key: None,
        vendor_key: None,
        mail: Some(MailConfig {
            smtp: Some(smtp.addr()),
            smtp_user: Some("vault".into()),
            smtp_password_file: Some(dir.path().join("smtp-password").display().to_string()),
            smtp_ca_file: Some(ca),
            from: "vault@example.net".into(),
            ..Default::default()
        }),
        throttle: None,
    };
    let public = fleet_create(&fleet_dir, &opts).unwrap();
    let node = run_node(&fleet_dir.join("node-1.toml")).await.unwrap();
    let url = public.urls[0].clone();
    let send = || {
        [
            "vault",
            "send-code",
            "--vault",
            &url,
            "--fleet-key",
            &public.fleet_key,
            "--user",
            ALICE,
        ]
        .map(String::from)
        .to_vec()
    };

    let first = coffer(send()).await;
    assert!(first.status.success(), "{}", common::text(&first));
    until("the first mail", || smtp.mails().len() == 1).await;

    let second = coffer(send()).await;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(err.contains("error CF-V029"), "{err}");
    assert!(err.contains("no mail was sent"), "{err}");
    // The wait: when (UTC) and in how many seconds, within the minute.
    let secs: u64 = err
        .split("(in ")
        .nth(1)
        .and_then(|r| r.split(" s)").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait time in {err}"));
    assert!((1..=60).contains(&secs), "{err}");
    let at = err
        .split("asked for at ")
        .nth(1)
        .map(|r| r.split(" UTC").next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no time in {err}"));
    assert_eq!(at.len(), "2026-12-05 06:30:00".len(), "{err}");
    assert!(
        err.contains("next step: Wait until the time shown"),
        "{err}"
    );

    // JSON for scripts: the same code, the time in the message.
    let mut json = send();
    json.insert(0, "--json".into());
    let third = coffer(json).await;
    let v: serde_json::Value = serde_json::from_slice(&third.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(&third)));
    assert_eq!(v["error"]["code"], "CF-V029", "{v}");
    assert_eq!(v["error"]["kind"], "throttled", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(" s)"), "{v}");

    // No second mail arrives (the first one was there within 20 s; give a
    // refused one as long as a delivery takes here, and then some).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.mails().len(), 1, "a refused request mailed a code");
    let mails_from = smtp
        .commands()
        .iter()
        .filter(|c| c.contains("MAIL FROM"))
        .count();
    assert_eq!(mails_from, 1);

    // The first mail's code still verifies: the refusal replaced nothing.
    let mail = smtp.mails().remove(0);
    let code: String = mail
        .split("vault is ")
        .nth(1)
        .unwrap()
        .chars()
        .take(9)
        .filter(char::is_ascii_digit)
        .collect();
    let client = VaultClient::http(
        &url,
        Arc::new(PinnedFleetKey::parse(&public.fleet_key).unwrap()),
    )
    .unwrap();
    client
        .verify_mail_code(ALICE, &SecretString::from(code))
        .await
        .unwrap();
    node.shutdown().await;
}
