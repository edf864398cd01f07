//! Replays the saved corpus of the `version_parser` fuzz target (and any saved crash inputs)
//! through its body, so CI exercises it on stable Rust without cargo-fuzz.
//!
//! The corpus is generated, not hand-written: `cargo test -p kup-types --test fuzz_corpus --
//! --ignored` rewrites `fuzz/corpus/version_parser/` from the versions below and those in the
//! example cluster files, deterministically.

#[path = "../../../fuzz/replay.rs"]
mod replay;

use kup_types::KubeVersion;
use kup_types::fuzzing::version_parser;
use replay::{Rng, assert_current, mutations, replay, write_corpus};

const TARGET: &str = "version_parser";

#[test]
fn replays_the_saved_corpus_without_panicking() {
    let corpus = replay(TARGET, 100, version_parser);
    // The corpus keeps versions that parse and strings that do not, so fuzzing starts from
    // both sides of every check.
    let parses = |d: &[u8]| std::str::from_utf8(d).is_ok_and(|s| KubeVersion::parse(s).is_ok());
    let good = corpus.iter().filter(|(_, d)| parses(d)).count();
    assert!(good >= 20, "only {good} valid versions in the corpus");
    assert!(corpus.len() - good >= 50, "too few invalid versions");
}

/// Versions in every spelling the parser takes, and the edge cases of each rule it has.
const SPELLINGS: &[&str] = &[
    "v1.16.2",
    "1.16.2",
    "V1.16.2",
    "v0.0.0",
    "v1.0.0",
    "v10.20.30",
    "v4294967295.4294967295.4294967295",
    "4294967295.0.0",
    "v4294967296.0.0",
    "v1.4294967296.0",
    "v1.16.99999999999",
    "v1.16.00",
    "v1.016.2",
    "v01.16.2",
    "v1.16.0",
    "",
    "v",
    "V",
    "vv1.16.2",
    "vV1.16.2",
    "v1",
    "v1.16",
    "v1.16.",
    "v1.16.2.",
    ".1.16.2",
    "v1.16.2.1",
    "1.42.2.unknown",
    "v1..2",
    "v..",
    "...",
    "v1.16.x",
    "v1.16.2-rc.1",
    "v1.16.2+build.5",
    "v1.16.2-alpha",
    " v1.16.2",
    "v1.16.2 ",
    "v1.16.2\n",
    "\tv1.16.2",
    "v 1.16.2",
    "v1. 16.2",
    "-1.2.3",
    "v-1.2.3",
    "v+1.2.3",
    "+1.2.3",
    "v1.2.3\0",
    "\0v1.2.3",
    "v１.２.３",
    "v1.16.٣",
    "\u{feff}v1.16.2",
    "v1.16.2\u{200b}",
    "ｖ1.16.2",
    "v1,16,2",
    "v1_16_2",
    "v1.16.2v",
    "1.16.2.",
    "0x1.0x2.0x3",
    "1e3.0.0",
    "v1.16.2/v1.16.3",
    "latest",
    "stable",
    "v1.16.2\nv1.16.1",
    "v1.25.0\nv1.22.0",
    "v1.24.0\nv1.22.0",
    "v1.22.0\nv1.25.0",
    "v2.0.0\nv1.100.0",
    "v2.0.0\nv1.42.1",
    "v4294967295.4294967295.0\nv0.0.0",
    "v0.0.0\nv4294967295.4294967295.4294967295",
    "v1.16.2\n",
    "\nv1.16.2",
    "v1.16.2\nv1.16.2\nv1.16.2",
];

/// The serde form: versions as JSON values, alone and in a catalog entry.
const JSON: &[&str] = &[
    "\"v1.16.2\"",
    "\"1.16.2\"",
    "\"V1.16.2\"",
    "\"1.16\"",
    "\"v1.16.2 \"",
    "\"\\u00761.16.2\"",
    "\"v1.16.2\\u0000\"",
    "\"\\ud800\"",
    "16",
    "1.16",
    "null",
    "true",
    "[\"v1.16.2\"]",
    "{\"version\": \"v1.16.2\"}",
    "\"v1.16.2\" \"v1.16.3\"",
    "\"v1.16.2",
    "{\"version\": \"v1.16.2\", \"upgrade_from\": [\"v1.16.1\"], \"downgrade_to\": [\"1.16.1\"], \
     \"applied_patches\": [\"K8S-1.16.2-PLATFORM\"], \"available_patches\": [\"K8S-1.16.2-KUBEADM\"], \
     \"images\": [\"registry.k8s.io/kube-apiserver:v1.16.2\"]}",
    "{\"version\": \"1.16.2\"}",
    "{\"version\": \"v1.16\"}",
    "{\"version\": \"v1.16.2\", \"upgrade_from\": [\"v1.16.1\", 5]}",
    "{\"version\": \"v1.16.2\", \"upgrade_from\": \"v1.16.1\"}",
    "{\"version\": \"v1.16.2\", \"colour\": \"red\"}",
    "{\"version\": null}",
    "{}",
];

/// The versions the example cluster files name.
fn example_versions() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut found = std::collections::BTreeSet::new();
    for path in replay::files_in(&dir) {
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')) {
            if word.starts_with('v') && KubeVersion::parse(word).is_ok() {
                found.insert(word.to_string());
            }
        }
    }
    found.into_iter().collect()
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |kind: &str, data: Vec<u8>| {
        if !out.iter().any(|(_, d)| *d == data) {
            let name = format!("{kind}-{:03}", out.len());
            out.push((name, data));
        }
    };
    let examples = example_versions();
    assert!(examples.len() >= 10, "{examples:?}");
    for v in &examples {
        add("example", v.clone().into_bytes());
    }
    for s in SPELLINGS {
        add("spelling", s.as_bytes().to_vec());
    }
    for s in JSON {
        add("json", s.as_bytes().to_vec());
    }
    // Not UTF-8: the parser sees the lossy text, serde refuses the bytes.
    add("bytes", b"v1.16.\xff".to_vec());
    add("bytes", b"\xc3\x28v1.16.2".to_vec());
    // Mutations of the valid spellings, as a fuzzer would make them.
    let mut rng = Rng(0x6b75_7076);
    let seeds: Vec<&str> = SPELLINGS
        .iter()
        .copied()
        .filter(|s| KubeVersion::parse(s).is_ok())
        .collect();
    for seed in seeds {
        for m in mutations(seed.as_bytes(), &mut rng, 4) {
            add("mutation", m);
        }
    }
    out
}

/// Pieces a mutation inserts: what the format is made of.
const TOKENS: &[&[u8]] = &[
    b"v",
    b"V",
    b".",
    b"0",
    b"9",
    b"4294967295",
    b"-",
    b"+",
    b"\n",
    b"\"",
    b"\\u0000",
    b" ",
];

#[test]
#[ignore = "a stable stand-in for `cargo fuzz run` (no coverage feedback); set KUP_FUZZ_ITERATIONS and KUP_FUZZ_SEED"]
fn explore_mutations_of_the_corpus() {
    let (iterations, seed) = replay::explore_settings();
    let crashes = replay::explore(TARGET, version_parser, TOKENS, iterations, seed);
    assert_eq!(
        crashes, 0,
        "inputs that panicked are in fuzz/artifacts/{TARGET}/"
    );
}

#[test]
#[ignore = "rewrites fuzz/corpus/version_parser; run with --ignored after changing the generator"]
fn regenerate_the_corpus() {
    write_corpus(TARGET, &corpus());
}

#[test]
fn the_saved_corpus_is_current() {
    assert_current(TARGET, &corpus());
}
