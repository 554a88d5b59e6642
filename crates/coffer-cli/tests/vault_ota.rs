//! The real `coffer` binary against the embedded fleet and its demo witness
//! over loopback HTTP: `coffer vault … --witness-key --operator-key
//! --trust-state` (over-the-air validation), and `coffer audit evidence` on
//! the deployment evidence the ceremony wrote.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn coffer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env_remove("COFFER_VAULT_URL")
        .env_remove("COFFER_FLEET_KEY")
        .env_remove("COFFER_WITNESS_KEY")
        .env_remove("COFFER_OPERATOR_KEY")
        .env_remove("COFFER_TRUST_STATE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn error_code(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with("CF-"))
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_string()
}

#[test]
fn vault_commands_validate_over_the_air_and_the_evidence_audits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault");
    let v = rt
        .block_on(coffer_vault::embedded::start_with(
            &data,
            &coffer_vault::embedded::generate_root_key(),
            3,
            10,
        ))
        .unwrap();
    let (addr, _server) = rt.block_on(v.serve("127.0.0.1:0")).unwrap();
    let url = format!("http://{addr}");
    let wk = v.witness_key().to_string();
    let ok = v.operator_key().to_string();
    let trust = dir.path().join("trust.json");
    let p = |n: &str| dir.path().join(n).display().to_string();
    let t = trust.display().to_string();
    let outbox = v.outbox().display().to_string();
    let ota: Vec<&str> = vec![
        "--mail-outbox",
        &outbox,
        "--vault",
        &url,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
        "--trust-state",
        &t,
    ];

    // status: verified over the air, the report has every check.
    let mut a = vec!["--json", "vault", "status"];
    a.extend(&ota);
    let o = coffer(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&o);
    assert_eq!(j["fleet_key_verified"], true, "{j}");
    assert_eq!(j["verification"]["verified"], true);
    assert_eq!(j["verification"]["epoch"], 1);
    assert!(trust.exists());

    // register and recover in over-the-air mode.
    let master = coffer_repo::MasterKey::generate().unwrap();
    std::fs::write(
        p("kit"),
        master.recovery_key().to_display_string().as_bytes(),
    )
    .unwrap();
    std::fs::write(p("code"), "ota code\n").unwrap();
    let kit = p("kit");
    let code = p("code");
    let mut a = vec!["--key-file", &kit, "vault", "register"];
    a.extend(&ota);
    a.extend(["--user", "olga", "--code-file", &code]);
    let o = coffer(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = p("out");
    let mut a = vec!["vault", "recover"];
    a.extend(&ota);
    a.extend(["--user", "olga", "--code-file", &code, "--out", &out]);
    let o = coffer(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        master.recovery_key().to_display_string().trim()
    );

    // A wrong pinned witness key: refused (CF-V031) before any session.
    let other = coffer_transparency::NoteSigner::generate("coffer-demo-witness")
        .unwrap()
        .verifier()
        .to_string();
    let o = coffer(&[
        "vault",
        "recover",
        "--vault",
        &url,
        "--witness-key",
        &other,
        "--operator-key",
        &ok,
        "--user",
        "olga",
        "--code-file",
        &code,
        "--out",
        &p("out2"),
    ]);
    assert!(!o.status.success());
    assert_eq!(error_code(&o), "CF-V031");
    assert!(!Path::new(&p("out2")).exists());

    // The deployment evidence from the ceremony verifies with `coffer audit evidence`.
    let ev = data.join("deployment-evidence.json").display().to_string();
    let vendor = v.vendor_root().to_string();
    let o = coffer(&[
        "--json",
        "audit",
        "evidence",
        &ev,
        "--vendor-root",
        &vendor,
        "--operator-root",
        &ok,
        "--measurement",
        &hex::encode(coffer_vault::ceremony::program_measurement()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(json(&o)["verified"], true);
    // …and not with another operator root.
    let o = coffer(&[
        "audit",
        "evidence",
        &ev,
        "--vendor-root",
        &vendor,
        "--operator-root",
        &other,
    ]);
    assert!(!o.status.success());
    rt.block_on(v.shutdown());
}
