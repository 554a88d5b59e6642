//! Checkpoints: parsing never panics and a parsed checkpoint writes back
//! byte for byte; cosigned checkpoints open without panicking.
#![no_main]
use coffer_transparency::cosignature::CosignedCheckpoint;
use coffer_transparency::{Checkpoint, NoteSigner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse(s) {
        assert_eq!(cp.to_text(), s);
    }
    let key = NoteSigner::from_seed("fuzz.example/log", &[7; 32]).unwrap();
    let _ = Checkpoint::open(s, &key.verifier());
    let _ = CosignedCheckpoint::open(s, &key.verifier());
});
