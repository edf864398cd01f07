//! Arbitrary bytes as a Kubernetes version: the parser, its serde form and the skew arithmetic.
//! The body lives in `kup_types::fuzzing::version_parser`, which the stable test
//! `crates/kup-types/tests/fuzz_corpus.rs` also runs over the saved corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kup_types::fuzzing::version_parser(data);
});
