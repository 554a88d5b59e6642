//! The client verifier end to end on real signatures and real Merkle trees:
//! every field mutated is refused with a named error; forked and rolled-back
//! logs, a wrong witness key, an expired bundle and a replayed epoch are caught.

use base64::Engine;
use coffer_error::UserFacing;
use coffer_transparency::bundle::{make_bundle, FleetKey, FleetKeys, KeyRole};
use coffer_transparency::evidence::{run_ceremony, verify_evidence, CeremonyHsm, SimulatedVendor};
use coffer_transparency::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, proof_to_b64, root_from_leaf_hashes, Hash,
};
use coffer_transparency::tiles::entry_bundles;
use coffer_transparency::{
    Bundle, CheckName, CheckStatus, Checkpoint, ConsistencyProof, NoteSigner, OtaInput, TrustState,
    ValidationBlob, Verifier, VerifyError,
};

const NOW: u64 = 1_800_000_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn fleet(epoch: u64, hsm_pk: [u8; 32]) -> FleetKeys {
    FleetKeys {
        fleet_id: "test-fleet".into(),
        keys: vec![
            FleetKey {
                algorithm: "ristretto255".into(),
                id: format!("opaque-{epoch}"),
                not_after: NOW + 1000,
                not_before: NOW - 1000,
                public_key: b64(&[epoch as u8; 32]),
                role: KeyRole::OpaqueServer,
            },
            FleetKey {
                algorithm: "ed25519".into(),
                id: "hsm-1".into(),
                not_after: NOW + 1000,
                not_before: NOW - 1000,
                public_key: b64(&hsm_pk),
                role: KeyRole::HsmIdentity,
            },
            FleetKey {
                algorithm: "x25519".into(),
                id: "channel-1".into(),
                not_after: NOW + 1000,
                not_before: NOW - 1000,
                public_key: b64(&[0xC0 | epoch as u8; 32]),
                role: KeyRole::Channel,
            },
        ],
    }
}

/// A witness log (in memory) under one key, with one bundle per epoch.
struct Log {
    witness: NoteSigner,
    operator: NoteSigner,
    bundles: Vec<Bundle>,
    leaves: Vec<Hash>,
    raw: Vec<Vec<u8>>,
}

impl Log {
    fn new(witness_seed: u8) -> Self {
        Log {
            witness: NoteSigner::from_seed("witness.test/log", &[witness_seed; 32]).unwrap(),
            operator: NoteSigner::from_seed("operator.test", &[2; 32]).unwrap(),
            bundles: vec![],
            leaves: vec![],
            raw: vec![],
        }
    }
    fn publish(&mut self, keys: &FleetKeys, epoch: u64) {
        let b = make_bundle(keys, epoch, NOW - 10, &self.witness, &self.operator);
        self.leaves.push(leaf_hash(&b.proof.log_leaf().unwrap()));
        self.raw.push(b.proof.log_leaf().unwrap());
        self.bundles.push(b);
    }
    fn checkpoint(&self, size: usize) -> String {
        Checkpoint {
            origin: "witness.test/log".into(),
            size: size as u64,
            root_hash: root_from_leaf_hashes(&self.leaves[..size]),
            extensions: vec![],
        }
        .sign(&self.witness)
        .unwrap()
    }
    /// The blob for entry `index` at tree size `size`, with a consistency proof from `from`.
    fn blob(&self, index: usize, size: usize, from: Option<usize>) -> ValidationBlob {
        ValidationBlob {
            bundle: self.bundles[index].clone(),
            leaf_index: index as u64,
            inclusion_proof: proof_to_b64(
                &inclusion_proof(index as u64, &self.leaves[..size]).unwrap(),
            ),
            checkpoint: self.checkpoint(size),
            consistency: from.map(|m| ConsistencyProof {
                from_size: m as u64,
                to_size: size as u64,
                proof: proof_to_b64(&consistency_proof(m as u64, &self.leaves[..size]).unwrap()),
            }),
            entries: entry_bundles(&self.raw[..size])
                .unwrap()
                .iter()
                .map(|b| b64(b))
                .collect(),
        }
    }
    fn verifier(&self) -> Verifier {
        let mut v = Verifier::new(self.witness.verifier(), self.operator.verifier());
        v.witness_url = Some("http://127.0.0.1:7300".into());
        v
    }
}

fn log_with(n: u64) -> Log {
    let mut log = Log::new(1);
    for e in 1..=n {
        log.publish(&fleet(e, [0xEE; 32]), e);
    }
    log
}

fn run(v: &Verifier, blob: &ValidationBlob, state: &TrustState) -> coffer_transparency::Outcome {
    v.verify_ota(&OtaInput {
        blob,
        state,
        now: NOW,
        session_server_key: None,
        evidence: None,
    })
}

fn failed_code(o: &coffer_transparency::Outcome) -> &'static str {
    o.error.as_ref().map(|e| e.code()).unwrap_or("none")
}

#[test]
fn first_contact_then_next_epoch_with_consistency_proof() {
    let log = log_with(3);
    let v = log.verifier();
    let o = v.verify_ota(&OtaInput {
        blob: &log.blob(1, 2, None),
        state: &TrustState::default(),
        now: NOW,
        session_server_key: Some(&[2u8; 32]),
        evidence: None,
    });
    assert!(o.report.verified, "{:#?}", o.report);
    assert_eq!(
        o.report.check(CheckName::Consistency).unwrap().status,
        CheckStatus::Skipped
    );
    assert_eq!(
        o.report.check(CheckName::SessionKey).unwrap().status,
        CheckStatus::Passed
    );
    assert_eq!(
        o.report
            .check(CheckName::Inclusion)
            .unwrap()
            .audit_link
            .as_deref(),
        Some("http://127.0.0.1:7300/log/v1/entries/1")
    );
    assert_eq!(o.report.fleet_id.as_deref(), Some("test-fleet"));
    assert_eq!(o.report.keys.len(), 3);
    let state = o.next_state.clone().unwrap();
    assert_eq!(state.last_epoch, Some(2));
    // The state round-trips through JSON as the client persists it.
    let state: TrustState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();

    let o2 = run(&v, &log.blob(2, 3, Some(2)), &state);
    assert!(o2.report.verified, "{:#?}", o2.report);
    assert_eq!(
        o2.report.check(CheckName::Consistency).unwrap().status,
        CheckStatus::Passed
    );
    let (keys, st) = o2.into_result().unwrap();
    assert_eq!(keys.keys[0].id, "opaque-3");
    assert_eq!(st.unwrap().last_epoch, Some(3));
    // The report is what the app shows: JSON with snake_case statuses.
    let json = serde_json::to_value(&o.report).unwrap();
    assert_eq!(json["mode"], "over_the_air");
    assert_eq!(json["checks"][0]["status"], "passed");
}

#[test]
fn every_bundle_field_mutated_is_refused_with_a_named_error() {
    let log = log_with(2);
    let v = log.verifier();
    let good = log.blob(1, 2, None);
    type Mutation = (&'static str, fn(&mut ValidationBlob), &'static str);
    let mutations: Vec<Mutation> = vec![
        (
            "artifact",
            |b| b.bundle.artifact = b.bundle.artifact.replace("test-fleet", "evil-fleet"),
            "CF-T034",
        ),
        (
            "namespace",
            |b| b.bundle.proof.namespace = "coffer.other.v1".into(),
            "CF-T032",
        ),
        ("epoch", |b| b.bundle.proof.epoch += 1, "CF-T035"),
        ("timestamp", |b| b.bundle.proof.timestamp += 1, "CF-T035"),
        (
            "digest",
            |b| b.bundle.proof.digest = hex_flip(&b.bundle.proof.digest),
            "CF-T034",
        ),
        (
            "digest encoding",
            |b| b.bundle.proof.digest = b.bundle.proof.digest.to_uppercase(),
            "CF-T033",
        ),
        (
            "witness signature",
            |b| b.bundle.proof.witness_signature = b64_flip(&b.bundle.proof.witness_signature),
            "CF-T035",
        ),
        (
            "witness signature encoding",
            |b| b.bundle.proof.witness_signature = "AAAA".into(),
            "CF-T033",
        ),
        (
            "countersignature",
            |b| {
                b.bundle.proof.operator_countersignature =
                    b64_flip(&b.bundle.proof.operator_countersignature)
            },
            "CF-T036",
        ),
        ("leaf index", |b| b.leaf_index = 0, "CF-T001"),
        ("leaf index out of range", |b| b.leaf_index = 9, "CF-T003"),
        (
            "inclusion proof",
            |b| b.inclusion_proof[0] = b64_flip(&b.inclusion_proof[0]),
            "CF-T001",
        ),
        (
            "inclusion proof encoding",
            |b| b.inclusion_proof[0] = "AA==".into(),
            "CF-T004",
        ),
        (
            "checkpoint root",
            |b| b.checkpoint = mutate_line(&b.checkpoint, 2, b64_flip),
            "CF-T013",
        ),
        (
            "checkpoint size",
            |b| b.checkpoint = mutate_line(&b.checkpoint, 1, |_| "3".into()),
            "CF-T013",
        ),
        (
            "checkpoint origin",
            |b| b.checkpoint = mutate_line(&b.checkpoint, 0, |_| "evil.test/log".into()),
            "CF-T013",
        ),
        (
            "checkpoint signature key id",
            |b| {
                b.checkpoint = b.checkpoint.replace(
                    "\u{2014} witness.test/log ",
                    "\u{2014} witness.test/log AAAA",
                )
            },
            "CF-T012",
        ),
        (
            "checkpoint signature",
            |b| b.checkpoint = flip_note_signature(&b.checkpoint),
            "CF-T013",
        ),
        (
            "checkpoint format",
            |b| b.checkpoint = b.checkpoint.replace("\n\n", "\n"),
            "CF-T010",
        ),
    ];
    for (what, m, code) in mutations {
        let mut b = good.clone();
        m(&mut b);
        let o = run(&v, &b, &TrustState::default());
        assert!(!o.report.verified, "{what} was accepted");
        assert_eq!(
            failed_code(&o),
            code,
            "{what}: {:#?}",
            o.report.first_failure()
        );
        assert!(o.next_state.is_none() && o.fleet.is_none());
    }
}

#[test]
fn the_artifact_fields_each_matter() {
    // Changing any artifact field and re-hashing it (an attacker who can also
    // fix the digest) breaks the witness signature.
    let log = log_with(1);
    let v = log.verifier();
    let good = log.blob(0, 1, None);
    let keys: FleetKeys = good.bundle.fleet_keys().unwrap();
    type Variant = Box<dyn Fn(&mut FleetKeys)>;
    let variants: Vec<Variant> = vec![
        Box::new(|k| k.fleet_id.push('x')),
        Box::new(|k| k.keys[0].public_key = b64(&[9; 32])),
        Box::new(|k| k.keys[0].id.push('x')),
        Box::new(|k| k.keys[0].not_after += 1),
        Box::new(|k| k.keys[0].not_before -= 1),
        Box::new(|k| k.keys[1].role = KeyRole::OpaqueServer),
        Box::new(|k| {
            k.keys[1].algorithm = "ristretto255".into();
            k.keys[1].role = KeyRole::OpaqueServer
        }),
    ];
    for (i, f) in variants.iter().enumerate() {
        let mut k = keys.clone();
        f(&mut k);
        let mut b = good.clone();
        b.bundle.artifact = k.to_canonical_json();
        b.bundle.proof.digest = hex::encode(k.digest());
        let o = run(&v, &b, &TrustState::default());
        assert!(!o.report.verified, "variant {i}");
        let code = failed_code(&o);
        assert!(
            code == "CF-T035" || code == "CF-T030",
            "variant {i}: {code}"
        );
    }
}

#[test]
fn wrong_witness_key_expired_bundle_and_replayed_epoch_are_refused() {
    let log = log_with(3);
    // Wrong pinned witness key.
    let other = NoteSigner::from_seed("witness.test/log", &[99; 32]).unwrap();
    let v = Verifier::new(other.verifier(), log.operator.verifier());
    let o = run(&v, &log.blob(0, 1, None), &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T035");
    assert_eq!(
        o.report
            .check(CheckName::Checkpoint)
            .unwrap()
            .code
            .as_deref(),
        Some("CF-T012")
    );

    // Expired and not-yet-valid bundles.
    let v = log.verifier();
    for now in [NOW + 1000, NOW + 5000, NOW - 2000] {
        let o = v.verify_ota(&OtaInput {
            blob: &log.blob(0, 1, None),
            state: &TrustState::default(),
            now,
            session_server_key: None,
            evidence: None,
        });
        assert_eq!(failed_code(&o), "CF-T037", "now={now}");
    }

    // A replayed older epoch after a newer one was verified.
    let st = run(&v, &log.blob(2, 3, None), &TrustState::default())
        .next_state
        .unwrap();
    let o = run(&v, &log.blob(1, 3, None), &st);
    assert!(
        matches!(
            o.error,
            Some(VerifyError::EpochRolledBack { seen: 3, got: 2 })
        ),
        "{:?}",
        o.error
    );
    assert_eq!(failed_code(&o), "CF-T040");
    // The same epoch again is fine; the same epoch with other keys is equivocation.
    assert!(run(&v, &log.blob(2, 3, None), &st).report.verified);
    let mut st2 = st.clone();
    st2.last_digest = Some("00".repeat(32));
    assert_eq!(
        failed_code(&run(&v, &log.blob(2, 3, None), &st2)),
        "CF-T041"
    );
}

#[test]
fn forked_and_rolled_back_logs_are_detected() {
    let honest = log_with(4);
    let v = honest.verifier();
    let st = run(&v, &honest.blob(2, 3, None), &TrustState::default())
        .next_state
        .unwrap();

    // A fork: another tree under the same witness key, with different epoch-2 keys.
    let mut fork = Log::new(1);
    fork.publish(&fleet(1, [0xEE; 32]), 1);
    fork.publish(&fleet(42, [0xEE; 32]), 2);
    fork.publish(&fleet(3, [0xEE; 32]), 3);
    fork.publish(&fleet(4, [0xEE; 32]), 4);
    // Same size, different root.
    let o = run(&v, &fork.blob(2, 3, None), &st);
    assert_eq!(
        failed_code(&o),
        "CF-T043",
        "{:#?}",
        o.report.first_failure()
    );
    // Larger, with the fork's own (valid for the fork) consistency proof.
    let o = run(&v, &fork.blob(3, 4, Some(3)), &st);
    assert!(
        matches!(o.error, Some(VerifyError::LogForked)),
        "{:?}",
        o.error
    );
    // The honest continuation passes.
    assert!(run(&v, &honest.blob(3, 4, Some(3)), &st).report.verified);
    // Without the consistency proof the client refuses.
    assert_eq!(
        failed_code(&run(&v, &honest.blob(3, 4, None), &st)),
        "CF-T044"
    );
    // A consistency proof from the wrong size is refused too.
    assert_eq!(
        failed_code(&run(&v, &honest.blob(3, 4, Some(2)), &st)),
        "CF-T044"
    );

    // A rolled-back log: a checkpoint smaller than the one remembered.
    let o = run(
        &v,
        &honest.blob(2, 3, None),
        &run(&v, &honest.blob(3, 4, None), &TrustState::default())
            .next_state
            .unwrap(),
    );
    assert!(matches!(
        o.error,
        Some(VerifyError::EpochRolledBack { .. }) | Some(VerifyError::LogRolledBack { .. })
    ));
    let mut st4 = st.clone();
    st4.last_checkpoint = Some(honest.checkpoint(4));
    let o = run(&v, &honest.blob(2, 3, None), &st4);
    assert!(
        matches!(
            o.error,
            Some(VerifyError::LogRolledBack { seen: 4, got: 3 })
        ),
        "{:?}",
        o.error
    );
    assert_eq!(failed_code(&o), "CF-T042");
}

#[test]
fn a_fleet_without_a_channel_key_verifies_as_a_log_entry_but_opens_no_session() {
    let mut log = Log::new(1);
    let mut old = fleet(1, [0xEE; 32]);
    old.keys.retain(|k| k.role != KeyRole::Channel);
    log.publish(&old, 1);
    let v = log.verifier();
    // Audited without a session key: every check passes.
    let o = run(&v, &log.blob(0, 1, None), &TrustState::default());
    assert!(o.report.verified, "{:#?}", o.report);
    // With a session: the session-key row fails and says why.
    let o = v.verify_ota(&OtaInput {
        blob: &log.blob(0, 1, None),
        state: &TrustState::default(),
        now: NOW,
        session_server_key: Some(&[1u8; 32]),
        evidence: None,
    });
    assert_eq!(failed_code(&o), "CF-T039");
    let row = o.report.check(CheckName::SessionKey).unwrap();
    assert_eq!(row.status, CheckStatus::Failed);
    assert!(row.why.contains("no channel key"), "{row:?}");
    let o = v.verify_pinned(&old, NOW, Some(&[1u8; 32]), None);
    assert_eq!(failed_code(&o), "CF-T039");
}

#[test]
fn session_key_must_be_in_the_verified_fleet() {
    let log = log_with(1);
    let v = log.verifier();
    let o = v.verify_ota(&OtaInput {
        blob: &log.blob(0, 1, None),
        state: &TrustState::default(),
        now: NOW,
        session_server_key: Some(&[7u8; 32]),
        evidence: None,
    });
    assert_eq!(failed_code(&o), "CF-T038");
    let o = v.verify_pinned(&fleet(1, [0xEE; 32]), NOW, Some(&[1u8; 32]), None);
    assert!(o.report.verified);
    assert_eq!(
        o.report.check(CheckName::Inclusion).unwrap().status,
        CheckStatus::Skipped
    );
    let o = v.verify_pinned(&fleet(1, [0xEE; 32]), NOW, Some(&[7u8; 32]), None);
    assert_eq!(failed_code(&o), "CF-T038");
    let o = v.verify_pinned(&fleet(1, [0xEE; 32]), NOW + 1000, None, None);
    assert_eq!(failed_code(&o), "CF-T037");
}

#[test]
fn deployment_evidence_ceremony_verifies_and_each_part_is_checked() {
    let vendor = SimulatedVendor::new(NoteSigner::from_seed("vendor.test", &[3; 32]).unwrap());
    let hsm1 = NoteSigner::from_seed("hsm-1", &[4; 32]).unwrap();
    let operator = NoteSigner::from_seed("operator.test", &[2; 32]).unwrap();
    let measurement: Hash = [0xAB; 32];
    let keys = fleet(1, hsm1.verifier().public_key());
    let att = vendor.attest("hsm-1", &hsm1.verifier().public_key(), &measurement);
    let doc = run_ceremony(
        &keys,
        &measurement,
        &[CeremonyHsm {
            hsm_id: "hsm-1",
            identity: &hsm1,
            vendor_attestation: att,
        }],
        &vendor.root(),
        &operator,
        NOW,
    );
    let (rep, err) = verify_evidence(
        &doc,
        &vendor.root(),
        &operator.verifier(),
        Some(&measurement),
        Some("https://ops.test/evidence.json"),
    );
    assert!(rep.verified && err.is_none(), "{rep:#?}");
    assert_eq!(rep.hsm_ids, vec!["hsm-1"]);
    // The document round-trips through JSON.
    let doc2: coffer_transparency::DeploymentEvidence =
        serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
    assert_eq!(doc2, doc);

    let code = |d: &coffer_transparency::DeploymentEvidence,
                vendor_root: &coffer_transparency::NoteVerifier,
                m: Option<&Hash>| {
        verify_evidence(d, vendor_root, &operator.verifier(), m, None)
            .1
            .map(|e| e.code())
            .unwrap_or("none")
    };
    let other_vendor = NoteSigner::from_seed("vendor.test", &[33; 32])
        .unwrap()
        .verifier();
    assert_eq!(code(&doc, &other_vendor, None), "CF-T052");
    assert_eq!(code(&doc, &vendor.root(), Some(&[0; 32])), "CF-T054");
    let mut d = doc.clone();
    d.body.created_at += 1;
    assert_eq!(code(&d, &vendor.root(), None), "CF-T051");
    // Re-signed by the operator (an operator mistake), each inner part is still checked.
    let resign = |d: &mut coffer_transparency::DeploymentEvidence| {
        d.operator_signature =
            b64(&operator.sign(&coffer_transparency::evidence::evidence_message(&d.body)));
    };
    let mut d = doc.clone();
    d.body.hsms[0].keygen_signature = b64(&[0; 64]);
    resign(&mut d);
    assert_eq!(code(&d, &vendor.root(), None), "CF-T053");
    let mut d = doc.clone();
    d.body.program_measurement = hex::encode([0xAC; 32]);
    resign(&mut d);
    assert_eq!(code(&d, &vendor.root(), None), "CF-T052");
    let mut d = doc.clone();
    let mut k2 = keys.clone();
    k2.keys[1].public_key = b64(&[5; 32]);
    d.body.fleet_keys = k2.to_canonical_json();
    resign(&mut d);
    let c = code(&d, &vendor.root(), None);
    assert!(c == "CF-T053" || c == "CF-T055", "{c}");

    // The over-the-air report includes the evidence check.
    let mut log = Log::new(1);
    log.operator = NoteSigner::from_seed("operator.test", &[2; 32]).unwrap();
    log.publish(&keys, 1);
    let mut v = log.verifier();
    v.vendor_root = Some(vendor.root());
    v.evidence_url = Some("https://ops.test/evidence.json".into());
    let blob = log.blob(0, 1, None);
    let o = v.verify_ota(&OtaInput {
        blob: &blob,
        state: &TrustState::default(),
        now: NOW,
        session_server_key: None,
        evidence: Some(&doc),
    });
    let c = o.report.check(CheckName::DeploymentEvidence).unwrap();
    assert_eq!(c.status, CheckStatus::Passed, "{c:?}");
    assert_eq!(
        c.audit_link.as_deref(),
        Some("https://ops.test/evidence.json")
    );
    // A bundle with keys the evidence does not cover fails that check.
    let mut log2 = Log::new(1);
    log2.publish(&fleet(5, hsm1.verifier().public_key()), 1);
    let o = v.verify_ota(&OtaInput {
        blob: &log2.blob(0, 1, None),
        state: &TrustState::default(),
        now: NOW,
        session_server_key: None,
        evidence: Some(&doc),
    });
    assert_eq!(failed_code(&o), "CF-T055");
    // The same keys published valid for longer than the ceremony attested:
    // not covered (a bundle may narrow a key's window, never widen it).
    let mut wider = keys.clone();
    wider.keys[0].not_after += 1;
    let mut log3 = Log::new(1);
    log3.publish(&wider, 1);
    let run_ev = |v: &Verifier, b: &ValidationBlob| {
        v.verify_ota(&OtaInput {
            blob: b,
            state: &TrustState::default(),
            now: NOW,
            session_server_key: None,
            evidence: Some(&doc),
        })
    };
    let o = run_ev(&v, &log3.blob(0, 1, None));
    assert_eq!(failed_code(&o), "CF-T055");
    assert!(o.error.unwrap().to_string().contains("attests it for"));
    let mut narrower = keys.clone();
    narrower.keys[0].not_after -= 1;
    let mut log4 = Log::new(1);
    log4.publish(&narrower, 1);
    assert!(run_ev(&v, &log4.blob(0, 1, None)).report.verified);
    // A pinned measurement: the evidence must attest exactly it.
    let mut pinned = v.clone();
    pinned.measurement = Some(measurement);
    let o = run_ev(&pinned, &blob);
    assert!(o.report.verified, "{:#?}", o.report);
    assert!(o
        .report
        .check(CheckName::DeploymentEvidence)
        .unwrap()
        .why
        .contains("measurement is the pinned one"));
    pinned.measurement = Some([0xCD; 32]);
    assert_eq!(failed_code(&run_ev(&pinned, &blob)), "CF-T054");
}

#[test]
fn canonical_json_is_rfc_8785() {
    // Escapes and non-ASCII as JCS writes them (RFC 8785 §3.2.2.2), and
    // integers beyond 2^53 - 1 refused.
    let mut k = fleet(1, [0xEE; 32]);
    k.fleet_id = "caf\u{e9} \u{1}\u{1f}\"q\\/\u{7f}".into();
    let j = k.to_canonical_json();
    assert!(
        j.starts_with(
            "{\"fleet_id\":\"caf\u{e9} \\u0001\\u001f\\\"q\\\\/\u{7f}\",\"keys\":[{\"algorithm\""
        ),
        "{j}"
    );
    assert_eq!(FleetKeys::parse_canonical(&j).unwrap(), k);
    let mut big = fleet(1, [0xEE; 32]);
    big.keys[0].not_after = 1 << 53;
    assert!(FleetKeys::parse_canonical(&big.to_canonical_json()).is_err());
}

#[test]
fn blob_round_trips_and_size_is_limited() {
    let log = log_with(2);
    let blob = log.blob(1, 2, Some(1));
    assert_eq!(ValidationBlob::from_bytes(&blob.to_bytes()).unwrap(), blob);
    assert!(matches!(
        ValidationBlob::from_bytes(b"{}"),
        Err(VerifyError::MalformedBlob(_))
    ));
    assert!(matches!(
        ValidationBlob::from_bytes(&vec![b' '; 300 * 1024]),
        Err(VerifyError::MalformedBlob(_))
    ));
}

fn hex_flip(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    b[0] = if b[0] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

fn b64_flip(s: &str) -> String {
    let mut raw = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    raw[0] ^= 1;
    b64(&raw)
}

fn mutate_line(note: &str, line: usize, f: impl Fn(&str) -> String) -> String {
    let mut lines: Vec<String> = note.split('\n').map(str::to_string).collect();
    lines[line] = f(&lines[line]);
    lines.join("\n")
}

fn flip_note_signature(note: &str) -> String {
    let (text, sig_line) = note.trim_end_matches('\n').rsplit_once('\n').unwrap();
    let (prefix, sig) = sig_line.rsplit_once(' ').unwrap();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    raw[10] ^= 1;
    format!("{text}\n{prefix} {}\n", b64(&raw))
}

#[test]
fn ota_validator_moves_its_state_forward_only_on_success() {
    let log = log_with(3);
    let ota = coffer_transparency::OtaValidator::new(log.verifier(), TrustState::default(), None);
    assert_eq!(ota.known_size(), None);
    let keys = ota
        .validate(&log.blob(0, 1, None).to_bytes(), &[1u8; 32], NOW)
        .unwrap();
    assert_eq!(keys.keys[0].id, "opaque-1");
    assert_eq!(ota.known_size(), Some(1));
    // The wrong session key: refused, state unchanged, report kept.
    let e = ota
        .validate(&log.blob(1, 2, Some(1)).to_bytes(), &[9u8; 32], NOW)
        .unwrap_err();
    assert_eq!(e.code(), "CF-T038");
    assert_eq!(ota.known_size(), Some(1));
    assert!(!ota.last_report().unwrap().verified);
    // Moving on needs the consistency proof from the remembered size.
    assert_eq!(
        ota.validate(&log.blob(2, 3, None).to_bytes(), &[3u8; 32], NOW)
            .unwrap_err()
            .code(),
        "CF-T044"
    );
    ota.validate(&log.blob(2, 3, Some(1)).to_bytes(), &[3u8; 32], NOW)
        .unwrap();
    assert_eq!(ota.state().last_epoch, Some(3));
    // Replaying epoch 1 afterwards is refused.
    assert_eq!(
        ota.validate(&log.blob(0, 3, Some(3)).to_bytes(), &[1u8; 32], NOW)
            .unwrap_err()
            .code(),
        "CF-T040"
    );
    assert!(ota.validate(b"not json", &[1u8; 32], NOW).is_err());
}

#[test]
fn a_realistic_blob_fits_the_vault_response_limit() {
    // One OPAQUE key and five HSM identity keys, the latest entry of a
    // 500-entry log (a rotation a week for nine years), with the whole log.
    let mut keys = fleet(1, [0xEE; 32]);
    for i in 2..=5 {
        let mut k = keys.keys[1].clone();
        k.id = format!("hsm-{i}");
        keys.keys.push(k);
    }
    let mut log = Log::new(1);
    for e in 1..=500u64 {
        log.publish(&keys, e);
    }
    let blob = log.blob(499, 500, Some(400));
    let len = blob.to_bytes().len();
    let b64_len = len.div_ceil(3) * 4;
    eprintln!("validation blob: {len} bytes of JSON, {b64_len} as base64");
    // coffer-vault-proto's MAX_BUNDLE_LEN is 256 KiB (counted on the raw
    // bytes); each epoch adds ~245 bytes of entry (base64), so about 1000
    // epochs fit.
    assert!(len < 128 * 1024, "{len}");
}

fn cosigner(seed: u8, name: &str) -> NoteSigner {
    NoteSigner::from_seed_alg(
        name,
        coffer_transparency::note::ALG_COSIGNATURE_V1,
        &[seed; 32],
    )
    .unwrap()
}

/// `blob` with its checkpoint cosigned by each `(cosigner, time)`.
fn cosigned(mut blob: ValidationBlob, by: &[(&NoteSigner, u64)]) -> ValidationBlob {
    let text = blob.checkpoint.rsplit_once("\n\n").unwrap().0.to_string() + "\n";
    for (c, t) in by {
        blob.checkpoint
            .push_str(&coffer_transparency::cosignature::cosign(c, &text, *t).unwrap());
    }
    blob
}

fn policy_for(
    log: &Log,
    cosigners: &[&NoteSigner],
    k: usize,
    max_age: u64,
) -> coffer_transparency::Policy {
    let cs: Vec<_> = cosigners
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("c{i}"), c.verifier(), None))
        .collect();
    coffer_transparency::Policy::parse(&coffer_transparency::policy::policy_text(
        &log.witness.verifier(),
        None,
        &cs,
        k,
        max_age,
    ))
    .unwrap()
}

#[test]
fn a_fresh_client_refuses_a_superseded_epoch_and_accepts_the_latest() {
    let log = log_with(3);
    let v = log.verifier();
    // Epoch 2 with the checkpoint of size 3: logged, valid, superseded.
    let o = run(&v, &log.blob(1, 3, None), &TrustState::default());
    assert!(!o.report.verified);
    assert_eq!(failed_code(&o), "CF-T046");
    assert!(
        matches!(
            o.error,
            Some(VerifyError::Superseded {
                epoch: 2,
                latest: 3,
                latest_index: 2
            })
        ),
        "{:?}",
        o.error
    );
    assert_eq!(
        o.report.check(CheckName::Latest).unwrap().status,
        CheckStatus::Failed
    );
    // The latest one passes, every leaf checked.
    let o = run(&v, &log.blob(2, 3, None), &TrustState::default());
    assert!(o.report.verified, "{:#?}", o.report);
    assert!(o
        .report
        .check(CheckName::LogEntries)
        .unwrap()
        .why
        .contains("all 3 entries"));
    // Without the entries, or with entries that are not the log's.
    let mut b = log.blob(2, 3, None);
    b.entries.clear();
    assert_eq!(failed_code(&run(&v, &b, &TrustState::default())), "CF-T044");
    let mut b = log.blob(2, 3, None);
    b.entries[0] = b64(&entry_bundles(&vec![vec![1u8; 3]; 3]).unwrap()[0]);
    assert_eq!(failed_code(&run(&v, &b, &TrustState::default())), "CF-T049");
}

#[test]
fn a_log_with_a_leaf_out_of_epoch_order_is_refused() {
    let mut log = log_with(3);
    // The witness key logs epoch 2 again after epoch 3 (another digest).
    log.publish(&fleet(9, [0xEE; 32]), 2);
    let o = run(
        &log.verifier(),
        &log.blob(3, 4, None),
        &TrustState::default(),
    );
    assert_eq!(failed_code(&o), "CF-T049", "{:#?}", o.report);
}

#[test]
fn cosigned_freshness_and_the_quorum() {
    let log = log_with(2);
    let (c1, c2, c3) = (
        cosigner(11, "c1.test"),
        cosigner(12, "c2.test"),
        cosigner(13, "c3.test"),
    );
    let mut v = log.verifier();
    v.policy = Some(policy_for(&log, &[&c1, &c2, &c3], 2, 3600));
    let blob = || log.blob(1, 2, None);
    // Two fresh cosignatures: accepted; the report names every cosigner.
    let o = run(
        &v,
        &cosigned(blob(), &[(&c1, NOW - 60), (&c3, NOW - 30)]),
        &TrustState::default(),
    );
    assert!(o.report.verified, "{:#?}", o.report);
    let f = o.report.freshness.clone().unwrap();
    assert_eq!(
        (f.cosigned_at, f.age_secs, f.max_age_secs),
        (NOW - 60, 60, 3600)
    );
    let st: Vec<&str> = o
        .report
        .cosigners
        .iter()
        .map(|c| c.status.as_str())
        .collect();
    assert_eq!(st, ["fresh", "missing", "fresh"]);
    // One cosignature: below the quorum.
    let o = run(&v, &cosigned(blob(), &[(&c1, NOW)]), &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T047");
    // None at all (the log's signature alone).
    assert_eq!(
        failed_code(&run(&v, &blob(), &TrustState::default())),
        "CF-T047"
    );
    // Two, but one too old: the quorum's time is too old.
    let o = run(
        &v,
        &cosigned(blob(), &[(&c1, NOW), (&c2, NOW - 7200)]),
        &TrustState::default(),
    );
    assert_eq!(failed_code(&o), "CF-T048");
    assert_eq!(o.report.cosigners[1].status, "stale");
    // A cosignature from the future does not count.
    let o = run(
        &v,
        &cosigned(blob(), &[(&c1, NOW), (&c2, NOW + 86_400)]),
        &TrustState::default(),
    );
    assert_eq!(failed_code(&o), "CF-T047");
    assert_eq!(o.report.cosigners[1].status, "future");
    // A cosigner key not in the policy does not count.
    let other = cosigner(14, "c2.test");
    let o = run(
        &v,
        &cosigned(blob(), &[(&c1, NOW), (&other, NOW)]),
        &TrustState::default(),
    );
    assert_eq!(failed_code(&o), "CF-T047");
    // A forged cosignature line is "invalid".
    let mut b = cosigned(blob(), &[(&c1, NOW), (&c2, NOW)]);
    let last = b.checkpoint.rfind(' ').unwrap();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(b.checkpoint[last + 1..].trim_end())
        .unwrap();
    raw[40] ^= 1; // inside the Ed25519 signature
    b.checkpoint
        .replace_range(last + 1.., &format!("{}\n", b64(&raw)));
    let o = run(&v, &b, &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T047");
    assert_eq!(o.report.cosigners[1].status, "invalid");
}

#[test]
fn a_replayed_old_view_is_stale_even_for_a_fresh_client() {
    // The host keeps the blob (checkpoint size 1, cosigned then) and shows
    // it after epoch 2 was published: epoch 1 is the latest *in that
    // checkpoint*, so only the cosignatures' age gives it away.
    let log = log_with(2);
    let c1 = cosigner(11, "c1.test");
    let mut v = log.verifier();
    v.policy = Some(policy_for(&log, &[&c1], 1, 3600));
    let then = cosigned(log.blob(0, 1, None), &[(&c1, NOW - 2 * 86_400)]);
    let o = run(&v, &then, &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T048", "{:#?}", o.report);
    let now = cosigned(log.blob(1, 2, None), &[(&c1, NOW - 5)]);
    assert!(run(&v, &now, &TrustState::default()).report.verified);
}

#[test]
fn a_baseline_stands_in_for_remembered_state() {
    let log = log_with(3);
    let mut v = log.verifier();
    v.baseline = Some(coffer_transparency::Baseline {
        min_epoch: 2,
        checkpoint: Some(log.checkpoint(2)),
    });
    // Below the baseline's epoch, in a log smaller than the baseline's
    // checkpoint: refused as a rollback (the log's, and the epoch's).
    let o = run(&v, &log.blob(0, 1, None), &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T042");
    assert_eq!(
        o.report
            .check(CheckName::EpochMonotonicity)
            .unwrap()
            .code
            .as_deref(),
        Some("CF-T040")
    );
    // Below the baseline's epoch in a larger log: the epoch rollback.
    let o = run(&v, &log.blob(0, 3, Some(2)), &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T040");
    // A log that is not consistent with the baseline checkpoint: a fork.
    let mut other = Log::new(1);
    for e in 1..=3 {
        other.publish(&fleet(e + 10, [0xEE; 32]), e);
    }
    let o = run(&v, &other.blob(2, 3, Some(2)), &TrustState::default());
    assert_eq!(failed_code(&o), "CF-T043");
    let fork = o.report.fork.clone().unwrap();
    assert_eq!(fork.kind, "forked");
    assert_eq!(fork.remembered, log.checkpoint(2));
    assert_eq!(fork.presented, other.checkpoint(3));
    // The honest latest, with a consistency proof from the baseline.
    let o = run(&v, &log.blob(2, 3, Some(2)), &TrustState::default());
    assert!(o.report.verified, "{:#?}", o.report);
    assert_eq!(o.next_state.unwrap().last_epoch, Some(3));
}
