//! Arbitrary bytes as the body (or query string) of a REST request, the first byte
//! choosing which, read and checked as its handler does before the engine sees it.
//! The body lives in `kup_api::fuzzing::request_bodies`, which the stable test
//! `crates/kup-api/tests/fuzz_corpus.rs` also runs over the saved corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kup_api::fuzzing::request_bodies(data);
});
