//! Account authentication from outside (issue 12, items 3 and 4): real
//! `coffer-vault node` processes mailing codes over real SMTP (python
//! aiosmtpd on loopback), and the embedded vault over HTTP.
//!
//! * a stranger who knows an address cannot spend a guess of its record,
//!   destroy it or take the name: the HSMs refuse every request without
//!   a ticket for exactly that address, and tickets need the mailed code;
//! * the owner on a new computer needs only the address (its mail) and the
//!   recovery code, and learns of every wrong guess;
//! * registered, unknown, deleted and destroyed accounts answer alike.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_error::UserFacing;
use coffer_testenv::smtp::{code_in, SmtpOptions, SmtpServer, SmtpTls};
use coffer_vault::embedded;
use coffer_vault_client::{PinnedFleetKey, SecretBox, SecretString, VaultClient, VaultError};
use coffer_vault_proto::account::{
    decode_account_response, AccountResponse, ChallengeRequest, TicketHolder, TicketProof,
    VerifyRequest,
};
use coffer_vault_proto::channel::{ChannelRequest, ClientHandshake, MESSAGE_LEN};
use coffer_vault_proto::{Bytes, Request, Response, Suite};
use opaque_ke::{ClientLogin, ClientRegistration};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn key(b: u8) -> SecretBox<[u8; 32]> {
    SecretBox::new(Box::new([b; 32]))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits for the `n`-th mail to `to` whose text contains `what`; with
/// several, the one with the lowest code.
async fn wait_for_mail(smtp: &SmtpServer, to: &str, what: &str, n: usize) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let mut m: Vec<String> = smtp
            .mails()
            .into_iter()
            .filter(|m| m.contains(&format!("To: {to}")) && m.contains(what))
            .collect();
        if m.len() >= n {
            m.sort_by_key(|t| code_in(t));
            return m.swap_remove(0);
        }
        assert!(Instant::now() < end, "no mail {n} to {to} with {what:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client of one node only (its account service keeps its own codes).
fn client_of(url: &str, pin: &str) -> VaultClient {
    VaultClient::http(url, Arc::new(PinnedFleetKey::parse(pin).unwrap())).unwrap()
}

#[tokio::test]
async fn codes_over_real_smtp_give_the_owner_tickets_and_a_stranger_none() {
    let dir = common::test_dir();
    let smtp = SmtpServer::start(
        &dir.path().join("smtp"),
        &SmtpOptions {
            tls: SmtpTls::Plain,
            cert_chain: None,
            key: None,
            login: None,
        },
    );
    let port = smtp.port.to_string();
    let smtp_addr = format!("127.0.0.1:{port}");
    // The default throttle: the test spends one wrong guess only.
    let public = common::create_with(
        dir.path(),
        3,
        10,
        &[
            "--smtp",
            &smtp_addr,
            // A relay on loopback: plain SMTP is allowed there only (the
            // TLS settings are tested in mail_tls.rs).
            "--smtp-tls",
            "none",
            "--mail-from",
            "vault@example.net",
        ],
    );
    let fleet = common::Fleet::at(dir, public.clone());
    fleet.start_all();
    fleet.wait_ready().await;
    let alice = "alice@example.org";
    let pin = public.fleet_key.clone();

    // The owner's first computer (node 1): a code by mail, a ticket, a
    // registration. The address is typed as people type it.
    let first = client_of(&public.urls[0], &pin);
    assert_eq!(
        first.register(alice, &code("correct horse"), &key(5)).await,
        Err(VaultError::NotVerified),
        "no ticket, nothing sent"
    );
    first.send_mail_code(" Alice@Example.org").await.unwrap();
    let mail = wait_for_mail(&smtp, alice, "vault is", 1).await;
    assert!(
        mail.contains("From: \"Coffer vault\" <vault@example.net>"),
        "{mail}"
    );
    first
        .verify_mail_code("alice@example.org", &code(&code_in(&mail)))
        .await
        .unwrap();
    first
        .register(alice, &code("correct horse"), &key(5))
        .await
        .unwrap();
    // A second code for the address within a minute: refused, no mail.
    let e = first.send_mail_code(alice).await.unwrap_err();
    assert_eq!(e.report().code, "CF-V029", "{e:?}");
    let VaultError::Vault(w) = &e else { panic!() };
    assert!(w.retry_at.is_some_and(|t| t > now()));

    // A stranger (node 2) knows the address: the code goes to alice's
    // mailbox, not to the stranger; guessed codes get no ticket.
    let stranger = client_of(&public.urls[1], &pin);
    stranger.send_mail_code(alice).await.unwrap();
    let _ = wait_for_mail(&smtp, alice, "vault is", 2).await;
    for guess in ["00000000", "12345678", "87654321", "11111111", "99999999"] {
        let e = stranger
            .verify_mail_code(alice, &code(guess))
            .await
            .unwrap_err();
        assert_eq!(e.report().code, "CF-V026", "{e:?}");
    }
    for _ in 0..11 {
        assert_eq!(
            stranger.recover(alice, &code("guess")).await.unwrap_err(),
            VaultError::NotVerified
        );
    }
    // A non-address cannot even ask.
    assert_eq!(
        stranger
            .send_mail_code("alice")
            .await
            .unwrap_err()
            .report()
            .code,
        "CF-V028"
    );

    // The owner on a new computer (node 3): the address and the recovery
    // code are all it needs. One wrong code first: the mailbox hears of it.
    let new_computer = client_of(&public.urls[2], &pin);
    new_computer.send_mail_code(alice).await.unwrap();
    let mail = wait_for_mail(&smtp, alice, "vault is", 3).await;
    let codes: Vec<String> = smtp
        .mails()
        .iter()
        .filter(|m| m.contains(&format!("To: {alice}")) && m.contains("vault is"))
        .map(|m| code_in(m))
        .collect();
    assert_eq!(codes.len(), 3);
    // Try each code mailed (the test cannot tell which node sent which);
    // only node 3's latest gives a ticket there.
    let mut verified = false;
    for c in codes.iter().rev().chain(std::iter::once(&code_in(&mail))) {
        if new_computer.verify_mail_code(alice, &code(c)).await.is_ok() {
            verified = true;
            break;
        }
    }
    assert!(verified, "the owner's code from the mail gives a ticket");
    assert_eq!(
        new_computer
            .recover(alice, &code("correct hose"))
            .await
            .unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    let notice = wait_for_mail(&smtp, alice, "A wrong recovery code was tried", 1).await;
    assert!(notice.contains("9 attempts remain"), "{notice}");
    let rec = new_computer
        .recover(alice, &code("correct horse"))
        .await
        .unwrap();
    use coffer_vault_client::ExposeSecret;
    assert_eq!(rec.key.expose_secret(), &[5; 32]);
    assert_eq!(rec.wrong_guesses, 1, "the owner's app hears of the guess");
    fleet.kill_all();
}

/// One channel request of the test's own over HTTP: (HTTP status, body
/// length, the HSMs' answer).
async fn raw(
    url: &str,
    v: &embedded::EmbeddedVault,
    req: Request,
    ticket: Option<TicketProof>,
) -> (u16, usize, Response) {
    let (hs, m1) = ClientHandshake::start_request(
        &v.channel_key(),
        v.hsm().fleet_id(),
        &ChannelRequest {
            time: now(),
            ticket,
            request: req,
        },
    )
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{url}/v2/vault"))
        .body(m1)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    (status, body.len(), hs.finish(&body).unwrap())
}

fn login_start(user: &str) -> Request {
    let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"a guess").unwrap();
    Request::LoginStart {
        user: user.into(),
        request: Bytes(c.message.serialize().to_vec()),
    }
}

fn register_start(user: &str) -> Request {
    let c = ClientRegistration::<Suite>::start(&mut rand::rngs::OsRng, b"mine now").unwrap();
    Request::RegisterStart {
        user: user.into(),
        request: Bytes(c.message.serialize().to_vec()),
    }
}

/// What the account service answers a challenge, raw.
async fn challenge(url: &str, account: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v2/account/challenge"))
        .body(
            serde_json::to_vec(&ChallengeRequest {
                v: 2,
                account: account.into(),
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// A ticket for the stranger's own account, through the account service
/// and the outbox (the stranger reads its own mail).
async fn own_ticket(url: &str, v: &embedded::EmbeddedVault, account: &str) -> TicketProof {
    challenge(url, account).await;
    let c = coffer_vault::account::outbox_code(&v.outbox(), account).unwrap();
    let h = TicketHolder::new();
    let r = reqwest::Client::new()
        .post(format!("{url}/v2/account/verify"))
        .body(
            serde_json::to_vec(&VerifyRequest {
                v: 2,
                account: account.into(),
                code: c.to_string(),
                holder: Bytes(h.commitment().to_vec()),
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let AccountResponse::Ticket { ticket } =
        decode_account_response(&r.bytes().await.unwrap()).unwrap()
    else {
        panic!("no ticket")
    };
    h.prove(&ticket)
}

fn code_of(r: &Response) -> String {
    match r {
        Response::Error { error } => error.code.clone(),
        Response::LoginStarted {
            attempts_remaining, ..
        } => format!("login_started {attempts_remaining}"),
        r => format!("{r:?}"),
    }
}

#[tokio::test]
async fn registered_unknown_deleted_and_destroyed_accounts_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let root = embedded::generate_root_key();
    // Three nodes, a guess limit of 2 (the throttle starts after 3).
    let v = embedded::start_with(dir.path(), &root, 3, 2).await.unwrap();
    // This test sends some 60 requests within a second from one address
    // with a release build, more than a client's rate (20/s, bursts of 40:
    // abuse.rs tests that limit); here every answer must be the HSMs'.
    let limits = coffer_vault::limits::Limits {
        rate_per_ip: 10_000,
        burst_per_ip: 10_000,
        ..Default::default()
    };
    let (addr, _task) = v.serve_with("127.0.0.1:0", limits).await.unwrap();
    let url = format!("http://{addr}");
    let owner = VaultClient::http(&url, Arc::new(v.pinned()))
        .unwrap()
        .with_ticket_source(v.outbox_tickets());
    let (live, unknown, deleted, destroyed) = (
        "live@example.org",
        "unknown@example.org",
        "deleted@example.org",
        "destroyed@example.org",
    );
    for u in [live, deleted, destroyed] {
        owner.register(u, &code("right"), &key(1)).await.unwrap();
    }
    owner.delete(deleted, &code("right")).await.unwrap();
    for _ in 0..2 {
        owner.recover(destroyed, &code("wrong")).await.unwrap_err();
    }
    assert_eq!(
        owner.recover(destroyed, &code("right")).await.unwrap_err(),
        VaultError::Destroyed
    );
    let all = [live, unknown, deleted, destroyed];

    // A stranger, without a ticket or with a ticket for its own address:
    // the same status, size and answer for every account and request.
    let mallory = own_ticket(&url, &v, "mallory@example.net").await;
    let mut seen = std::collections::BTreeSet::new();
    for u in all {
        for req in [login_start(u), register_start(u)] {
            for t in [None, Some(mallory.clone())] {
                let (status, len, r) = raw(&url, &v, req.clone(), t).await;
                let body = coffer_vault_proto::encode_response(&r).len();
                seen.insert((status, len, code_of(&r), body));
            }
        }
    }
    assert_eq!(
        seen.len(),
        1,
        "one answer for every account, request and ticket: {seen:?}"
    );
    let (status, len, what, _) = seen.into_iter().next().unwrap();
    assert_eq!((status, len, what.as_str()), (200, MESSAGE_LEN, "CF-V024"));
    // The account service answers the same bytes for every address.
    let mut answers = std::collections::BTreeSet::new();
    for u in all {
        answers.insert(challenge(&url, u).await);
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let (status, body) = answers.into_iter().next().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        decode_account_response(&body).unwrap(),
        coffer_vault_proto::account::challenge_sent()
    );

    // The address's owner (a ticket), before any login succeeds: live,
    // unknown and deleted accounts take a guess alike …
    let fresh = VaultClient::http(&url, Arc::new(v.pinned()))
        .unwrap()
        .with_ticket_source(v.outbox_tickets());
    for u in [live, unknown, deleted] {
        let (status, len, r) = raw(
            &url,
            &v,
            login_start(u),
            Some(own_ticket(&url, &v, u).await),
        )
        .await;
        assert_eq!(
            (status, len, code_of(&r)),
            (200, MESSAGE_LEN, "login_started 1".to_string()),
            "{u}"
        );
    }
    // … and a destroyed one answers as an unknown one guessed to the limit.
    for _ in 0..2 {
        let e = fresh.recover(unknown, &code("x")).await.unwrap_err();
        assert!(
            matches!(e, VaultError::WrongCode { .. } | VaultError::Destroyed),
            "{e:?}"
        );
    }
    let a = raw(
        &url,
        &v,
        login_start(unknown),
        Some(own_ticket(&url, &v, unknown).await),
    )
    .await;
    let b = raw(
        &url,
        &v,
        login_start(destroyed),
        Some(own_ticket(&url, &v, destroyed).await),
    )
    .await;
    assert_eq!((a.0, a.1, code_of(&a.2)), (b.0, b.1, code_of(&b.2)));
    assert_eq!(code_of(&b.2), "CF-V011");
    // The owner of the live account still recovers.
    assert!(fresh.recover(live, &code("right")).await.is_ok());
    v.shutdown().await;
}

/// One channel request of the test's own to a node (HTTP status, body
/// length, the HSMs' answer).
async fn raw_to_node(
    url: &str,
    public: &coffer_vault::node::FleetPublic,
    req: Request,
    ticket: Option<TicketProof>,
) -> (u16, usize, Response) {
    let channel_key = hex::decode(&public.channel_key).unwrap();
    let (hs, m1) = ClientHandshake::start_request(
        &channel_key,
        &public.fleet_id,
        &ChannelRequest {
            time: now(),
            ticket,
            request: req,
        },
    )
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{url}/v2/vault"))
        .body(m1)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    (status, body.len(), hs.finish(&body).unwrap())
}

#[tokio::test]
async fn a_strangers_eleven_login_starts_to_real_nodes_spend_no_guess() {
    let fleet = common::start_fleet(3, 10).await;
    let public = fleet.public.clone();
    let alice = "alice@example.org";
    let owner = fleet.client();
    owner
        .register(alice, &code("correct horse"), &key(3))
        .await
        .unwrap();
    // The stranger reads its own mail only: a ticket for its own address
    // (node 2's account service, the shared test outbox).
    let url = &public.urls[1];
    challenge(url, "mallory@example.net").await;
    let outbox = fleet.dir().join(common::OUTBOX);
    let c = coffer_vault::account::outbox_code(&outbox, "mallory@example.net").unwrap();
    let h = TicketHolder::new();
    let r = reqwest::Client::new()
        .post(format!("{url}/v2/account/verify"))
        .body(
            serde_json::to_vec(&VerifyRequest {
                v: 2,
                account: "mallory@example.net".into(),
                code: c.to_string(),
                holder: Bytes(h.commitment().to_vec()),
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let AccountResponse::Ticket { ticket } =
        decode_account_response(&r.bytes().await.unwrap()).unwrap()
    else {
        panic!("no ticket for the stranger's own address")
    };
    let own = h.prove(&ticket);
    // Eleven login_starts for alice, to every node, with no ticket or the
    // stranger's own; and a registration of alice's name.
    for i in 0..11 {
        let t = (i % 2 == 1).then(|| own.clone());
        let node = &public.urls[i % public.urls.len()];
        let (status, len, r) = raw_to_node(node, &public, login_start(alice), t).await;
        assert_eq!(
            (status, len, code_of(&r)),
            (200, MESSAGE_LEN, "CF-V024".to_string()),
            "attempt {i}"
        );
    }
    let (_, _, r) = raw_to_node(url, &public, register_start(alice), Some(own)).await;
    assert_eq!(code_of(&r), "CF-V024");
    // The owner on a new computer: the full limit, nothing was counted.
    let new_computer = fleet.client();
    assert_eq!(
        new_computer
            .recover(alice, &code("not it"))
            .await
            .unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    let rec = new_computer
        .recover(alice, &code("correct horse"))
        .await
        .unwrap();
    use coffer_vault_client::ExposeSecret;
    assert_eq!(rec.key.expose_secret(), &[3; 32]);
    assert_eq!(rec.wrong_guesses, 1, "only the owner's own wrong code");
    fleet.kill_all();
}
