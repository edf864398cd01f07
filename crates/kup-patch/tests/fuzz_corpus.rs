//! Replays the saved fuzz corpus (and any saved crash inputs) through the fuzz target's body,
//! so CI exercises it on stable Rust without cargo-fuzz.
//!
//! The corpus is generated, not hand-written: `cargo test -p kup-patch --test fuzz_corpus --
//! --ignored` rewrites `fuzz/corpus/bundle_reader/` from the samples, deterministically.

mod common;
#[path = "../../../fuzz/replay.rs"]
mod replay;

use std::path::PathBuf;

use common::*;
use kup_patch::testkey::{FUZZ_LIMITS, fuzz_bundle_reader, insecure_verifying_key};
use kup_patch::{PatchKind, SigningKey, read};
use replay::{files_in, fuzz_dir};
use tar::EntryType;

fn corpus_dir() -> PathBuf {
    replay::corpus_dir("bundle_reader")
}

#[test]
fn replays_the_saved_corpus_without_panicking() {
    let files = files_in(&corpus_dir());
    assert!(
        files.len() >= 20,
        "corpus missing or too small: {}",
        files.len()
    );
    let mut accepted = 0;
    let mut total = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        total += data.len();
        fuzz_bundle_reader(&data);
        if read(&data, &[insecure_verifying_key()], &FUZZ_LIMITS).is_ok() {
            accepted += 1;
        }
    }
    // The corpus keeps valid bundles, so fuzzing starts from inputs that reach the deep checks.
    assert!(accepted >= 5, "only {accepted} valid bundles in the corpus");
    assert!(total < 200 * 1024, "corpus is {total} bytes");
}

#[test]
fn replays_saved_crash_inputs() {
    // Inputs that broke the reader: `cargo fuzz run`'s artifacts/ (until fixed), and those
    // kept in regressions/ once fixed.
    for dir in ["artifacts", "regressions"] {
        for path in files_in(&fuzz_dir().join(dir).join("bundle_reader")) {
            fuzz_bundle_reader(&std::fs::read(path).unwrap());
        }
    }
}

#[test]
#[ignore = "a stable stand-in for `cargo fuzz run` (no coverage feedback); set KUP_FUZZ_ITERATIONS and KUP_FUZZ_SEED"]
fn explore_mutations_of_the_corpus() {
    let (iterations, seed) = replay::explore_settings();
    let tokens: &[&[u8]] = &[b"files/", b"../", b"manifest.json", b"manifest.sig", b"\0"];
    let crashes = replay::explore(
        "bundle_reader",
        fuzz_bundle_reader,
        tokens,
        iterations,
        seed,
    );
    assert_eq!(
        crashes, 0,
        "inputs that panicked are in fuzz/artifacts/bundle_reader/"
    );
}

/// The corpus: valid bundles of every kind, then each of them broken in one way.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let small = members_of(&bundle(Sample::Other));
    let plain = |edit: &dyn Fn(&mut Vec<Member>)| {
        let mut members = small.clone();
        edit(&mut members);
        assemble(&members)
    };
    let extra = |m: Member| plain(&move |ms: &mut Vec<Member>| ms.push(m.clone()));
    let platform = bundle(Sample::Platform);
    let other_plain = gunzip(&bundle(Sample::Other));
    // A second fixed key, so the "untrusted" sample is reproducible.
    let stranger = SigningKey::from_bytes(&[7u8; 32]);

    vec![
        ("valid-platform.tar.gz", platform.clone()),
        ("valid-kubeadm.tar.gz", bundle(Sample::Kubeadm)),
        ("valid-kubelet.tar.gz", bundle(Sample::Kubelet)),
        ("valid-other.tar.gz", bundle(Sample::Other)),
        ("valid-other.tar", other_plain.clone()),
        (
            "valid-with-dirs.tar",
            plain(&|ms| {
                ms.insert(0, Member::special("files/", EntryType::Directory, ""));
                ms.insert(1, Member::special("files/etc/", EntryType::Directory, ""));
            }),
        ),
        ("truncated.tar.gz", platform[..platform.len() / 2].to_vec()),
        (
            "truncated.tar",
            other_plain[..other_plain.len() - 1200].to_vec(),
        ),
        (
            "payload-flipped.tar",
            plain(&|ms| member(ms, "files/etc/motd").data[0] ^= 1),
        ),
        (
            "manifest-flipped.tar",
            plain(&|ms| member(ms, "manifest.json").data[40] ^= 1),
        ),
        (
            "size-more.tar",
            plain(&|ms| member(ms, "files/etc/motd").data.push(b'!')),
        ),
        (
            "unsigned.tar",
            plain(&|ms| ms.retain(|m| m.name != b"manifest.sig")),
        ),
        (
            "no-manifest.tar",
            plain(&|ms| ms.retain(|m| m.name != b"manifest.json")),
        ),
        (
            "bad-signature-hex.tar",
            plain(&|ms| member(ms, "manifest.sig").data = vec![b'z'; 128]),
        ),
        ("untrusted.tar.gz", build_sample(Sample::Other, &stranger)),
        (
            "signed-invalid-manifest.tar",
            plain(&|ms| resign(ms, &key(), |m| m.kind = PatchKind::Platform)),
        ),
        (
            "signed-undeclared-manifest-path.tar",
            plain(&|ms| resign(ms, &key(), |m| m.files[0].path = "etc/other".into())),
        ),
        ("dotdot.tar", extra(Member::file("../etc/passwd", b"x"))),
        ("absolute.tar", extra(Member::file("/etc/passwd", b"x"))),
        (
            "symlink.tar",
            extra(Member::special(
                "files/l",
                EntryType::Symlink,
                "/etc/shadow",
            )),
        ),
        (
            "hardlink.tar",
            extra(Member::special("files/h", EntryType::Link, "manifest.json")),
        ),
        (
            "chardev.tar",
            extra(Member::special("files/dev", EntryType::Char, "")),
        ),
        (
            "duplicate.tar",
            plain(&|ms| {
                let copy = member(ms, "files/etc/motd").clone();
                ms.push(copy);
            }),
        ),
        (
            "undeclared.tar",
            extra(Member::file("files/etc/extra", b"surprise")),
        ),
        (
            "missing-file.tar",
            plain(&|ms| ms.retain(|m| m.name != b"files/etc/motd")),
        ),
        (
            "outside-files.tar",
            extra(Member::file("run.sh", b"#!/bin/sh")),
        ),
        ("garbage.bin", Rng(1).bytes(700)),
        ("gzip-garbage.bin", {
            let mut g = vec![0x1f, 0x8b, 8, 0];
            g.extend(Rng(2).bytes(300));
            g
        }),
        ("gzip-not-tar.bin", gzip(&Rng(3).bytes(1500))),
        ("zeros-bomb.gz", gzip(&vec![0u8; 8 * 1024 * 1024])),
        ("empty", Vec::new()),
    ]
}

#[test]
#[ignore = "rewrites fuzz/corpus/bundle_reader; run with --ignored after changing the format"]
fn regenerate_the_corpus() {
    let dir = corpus_dir();
    for old in files_in(&dir) {
        std::fs::remove_file(old).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in corpus() {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

#[test]
fn the_saved_corpus_is_current() {
    // Every sample is saved, and the uncompressed ones are byte-for-byte what the current
    // format produces. (Compressed bytes may change with a flate2 upgrade; they are left out.)
    for (name, data) in corpus() {
        let saved = std::fs::read(corpus_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; regenerate the corpus"));
        if name.ends_with(".tar") {
            assert!(saved == data, "{name} is stale; regenerate the corpus");
        }
    }
}
