//! Tiles and entry bundles: decoding never panics, bundles round-trip, and
//! proofs computed from arbitrary tile bytes never panic.
#![no_main]
use coffer_transparency::tiles::{
    decode_entry_bundle, encode_entry_bundle, parse_index_path, TileHashes, TileRef,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let width = u64::from(data[0]) + 1;
    if let Ok(entries) = decode_entry_bundle(&data[1..], width) {
        assert_eq!(encode_entry_bundle(&entries).unwrap(), &data[1..]);
    }
    if let Ok(s) = std::str::from_utf8(&data[1..]) {
        let _ = parse_index_path(s);
    }
    // A tree whose tiles are the fuzz bytes.
    let size = u64::from(u16::from_be_bytes([data[0], data[1]])) + 1;
    let mut t = TileHashes::new(size);
    for _ in 0..4 {
        let _ = t.inclusion_proof(size / 2, size);
        let _ = t.consistency_proof(size / 3, size);
        for r in t.missing() {
            let want = (r.width * 32) as usize;
            let mut bytes = data.to_vec();
            bytes.resize(want, 0xAB);
            t.add(r, &bytes).unwrap();
            let _ = t.add(
                TileRef {
                    width: r.width + 1,
                    ..r
                },
                &bytes,
            );
        }
    }
    let _ = t.mth(0, size);
});
