//! Cosignature lines and trust policies: arbitrary signature lines on a
//! real checkpoint never verify for a cosigner that did not make them, and
//! never panic; policies parse or refuse without panicking.
#![no_main]
use coffer_transparency::cosignature::{cosign, Cosigned, CosignedCheckpoint};
use coffer_transparency::note::ALG_COSIGNATURE_V1;
use coffer_transparency::{Checkpoint, NoteSigner, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Policy::parse(s);
    let log = NoteSigner::from_seed("fuzz.example/log", &[7; 32]).unwrap();
    let c = NoteSigner::from_seed_alg("fuzz.example/c", ALG_COSIGNATURE_V1, &[8; 32]).unwrap();
    let cp = Checkpoint {
        origin: "fuzz.example/log".into(),
        size: 3,
        root_hash: [1; 32],
        extensions: vec![],
    };
    let note = cp.sign(&log).unwrap();
    // The fuzz input as extra signature lines.
    let full = format!("{note}{s}");
    if let Ok(o) = CosignedCheckpoint::open(&full, &log.verifier()) {
        // The input cannot forge c's cosignature (it does not hold c's key)
        // unless it copies a real one, which this target never shows it.
        assert!(!matches!(o.cosignature_by(&c.verifier()), Cosigned::At(_)));
    }
    // A real cosignature next to the input still verifies (or the input
    // made the note unparsable, or added an invalid line by c's key id).
    let line = cosign(&c, &cp.to_text(), 1_800_000_000).unwrap();
    if let Ok(o) = CosignedCheckpoint::open(&format!("{note}{line}{s}"), &log.verifier()) {
        let _ = o.cosignature_by(&c.verifier());
    }
});
