//! The real `coffer` binary reaches a vault over `https://`: a throwaway CA
//! signs a certificate for `localhost`, a TLS terminator (as a deployment puts
//! in front of its nodes) forwards to the embedded fleet on loopback, and the
//! client trusts the CA through `SSL_CERT_FILE`, as an operator with a private
//! CA would set it. Without that trust the connection is refused with the
//! "vault unreachable" code and a message that names the certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

fn coffer(args: &[&str], ca_file: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.args(args)
        .env_remove("COFFER_VAULT_URL")
        .env_remove("COFFER_FLEET_KEY")
        .env_remove("COFFER_WITNESS_KEY")
        .env_remove("COFFER_OPERATOR_KEY")
        .env_remove("COFFER_TRUST_STATE")
        .env_remove("SSL_CERT_DIR")
        .env("SSL_CERT_FILE", ca_file)
        .stdin(Stdio::null());
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
fn test_pki() -> (String, ServerConfig) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Coffer test CA (throwaway)");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let chain = vec![CertificateDer::from(leaf.der().to_vec()), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    (ca.pem(), cfg)
}

/// Accepts TLS on a loopback port and forwards each connection to `backend`.
async fn tls_terminator(cfg: ServerConfig, backend: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

#[test]
fn vault_commands_work_over_https_and_an_untrusted_certificate_is_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = rt
        .block_on(coffer_vault::embedded::start_with(
            &dir.path().join("vault"),
            &coffer_vault::embedded::generate_root_key(),
            3,
            10,
        ))
        .unwrap();
    let (plain, _server) = rt.block_on(v.serve("127.0.0.1:0")).unwrap();
    let (ca_pem, cfg) = test_pki();
    let tls = rt.block_on(tls_terminator(cfg, plain));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    // Another CA, which did not sign the vault's certificate.
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, test_pki().0).unwrap();
    let url = format!("https://localhost:{}", tls.port());
    let fleet_key = v.pinned().pin();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("code"), "a long recovery code for https\n").unwrap();
    let kit = coffer_repo::MasterKey::generate().unwrap();
    std::fs::write(p("kit"), kit.recovery_key().to_display_string().as_bytes()).unwrap();
    let outbox = v.outbox().display().to_string();
    let t = [
        "--vault",
        url.as_str(),
        "--fleet-key",
        fleet_key.as_str(),
        "--mail-outbox",
        outbox.as_str(),
    ];
    let args = |pre: &[&str], verb: &str, rest: &[&str]| -> Vec<String> {
        pre.iter()
            .chain(["vault", verb].iter())
            .chain(t.iter())
            .chain(rest.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run =
        |a: Vec<String>, ca: &Path| coffer(&a.iter().map(String::as_str).collect::<Vec<_>>(), ca);

    // Trusted CA: status, register and recover over TLS.
    let o = run(args(&["--json"], "status", &[]), &ca);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        args(
            &["--key-file", &p("kit")],
            "register",
            &["--user", "tls", "--code-file", &p("code")],
        ),
        &ca,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        args(
            &[],
            "recover",
            &[
                "--user",
                "tls",
                "--code-file",
                &p("code"),
                "--out",
                &p("out"),
            ],
        ),
        &ca,
    );
    assert!(o.status.success(), "{}", text(&o));
    let back = coffer_repo::RecoveryKey::parse(std::fs::read_to_string(p("out")).unwrap().trim())
        .unwrap()
        .into_master_key();
    assert_eq!(back.expose_bytes(), kit.expose_bytes());

    // The certificate is not signed by a trusted root: refused before any
    // request, "vault unreachable",
    // and the message says it is the certificate and what to set.
    let o = run(args(&["--json"], "status", &[]), &other);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("CF-V030"), "{out}");
    assert!(out.contains("certificate"), "{out}");
    assert!(out.contains("SSL_CERT_FILE"), "{out}");

    // The TLS port does not speak plain HTTP.
    let plain_url = format!("http://127.0.0.1:{}", tls.port());
    let o = coffer(
        &[
            "vault",
            "status",
            "--vault",
            &plain_url,
            "--fleet-key",
            &fleet_key,
        ],
        &ca,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("CF-V030"), "{}", text(&o));
}
