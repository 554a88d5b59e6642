//! Signed notes and key strings: parsing never panics, and a note that
//! opens under the key re-signs to the same text.
#![no_main]
use coffer_transparency::note::{open_note, parse_note, NoteSigner, NoteVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = NoteVerifier::parse(s);
    let _ = NoteSigner::parse(s);
    let _ = parse_note(s);
    let key = NoteSigner::from_seed("fuzz.example/log", &[7; 32]).unwrap();
    if let Ok(text) = open_note(s, &key.verifier()) {
        // Only the key's own signature can open it: signing the text
        // again gives a note that opens to the same text.
        let again = key.sign_note(&text).unwrap();
        assert_eq!(open_note(&again, &key.verifier()).unwrap(), text);
    }
    // A valid note with the input as its text (when acceptable).
    if let Ok(note) = key.sign_note(s) {
        assert_eq!(open_note(&note, &key.verifier()).unwrap(), s);
    }
});
