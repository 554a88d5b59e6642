//! `cargo +nightly fuzz run envelope` (from crates/coffer-fleet): any bytes
//! the host could send to a node's `/fleet/v1/envelope` endpoint. Decoding
//! and checking must never panic, and nothing but a genuine envelope with a
//! fresh sequence number may be accepted (the fuzzer knows no link key).
#![no_main]

use std::sync::{Arc, OnceLock};

use coffer_fleet::secure::{Envelope, SecureChannel};
use coffer_fleet::{FleetSetup, LocalNetwork, NodeConfig, RaftTuning, Transport};
use libfuzzer_sys::fuzz_target;

fn config() -> &'static NodeConfig {
    static C: OnceLock<NodeConfig> = OnceLock::new();
    C.get_or_init(|| {
        FleetSetup::create(3, "fuzz", RaftTuning::local())
            .unwrap()
            .remove(1)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Envelope::decode(data) {
        // Decoding is exact: re-encoding gives the same bytes back.
        assert_eq!(e.encode(), data);
    }
    let net: Arc<dyn Transport> = LocalNetwork::new();
    let ch = SecureChannel::new(config(), net);
    assert!(ch.accept(data).is_err(), "a fuzzed envelope was accepted");
});
