//! Arbitrary bytes as a cluster file (`kup serve --cluster`), then the simulated
//! cluster built from an accepted one, read and its hosts locked and unlocked.
//! The body lives in `kup_sim::inventory::fuzzing::cluster_file`, which the stable test
//! `crates/kup-sim/tests/fuzz_corpus.rs` also runs over the saved corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kup_sim::inventory::fuzzing::cluster_file(data);
});
