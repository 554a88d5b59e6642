//! What an account ticket costs the HSM per request: one check (Ed25519
//! `verify_strict`, a SHA-256, two constant-time compares), and the size it
//! adds to channel message 1 (which stays at its one fixed size).
//!
//! `cargo run --release -p coffer-vault-proto --example ticket_cost`

use std::time::Instant;

use coffer_vault_proto::account::{TicketHolder, TicketSigner};

fn main() {
    let signer = TicketSigner::generate();
    let holder = TicketHolder::new();
    let ticket = signer
        .issue("fleet", "alice@example.org", &holder.commitment(), u64::MAX)
        .unwrap();
    let proof = holder.prove(&ticket);
    let key = signer.public();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        proof.check(&key, "fleet", "alice@example.org", 1).unwrap();
    }
    let check = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        let _ = signer
            .issue("fleet", "alice@example.org", &holder.commitment(), u64::MAX)
            .unwrap();
    }
    let issue = t.elapsed() / n;
    let json = serde_json::to_vec(&proof).unwrap();
    println!(
        "ticket check {check:?} per request, issue {issue:?}; the proof is {} bytes of JSON inside message 1",
        json.len()
    );
}
