//! Arbitrary bytes into the bundle reader, trusting the fixed test key (so that mutations of
//! the valid bundles in the corpus get past the signature check and reach the payload checks).
//! The body lives in `kup_patch::testkey::fuzz_bundle_reader`, which the stable test
//! `crates/kup-patch/tests/fuzz_corpus.rs` also runs over the saved corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kup_patch::testkey::fuzz_bundle_reader(data);
});
