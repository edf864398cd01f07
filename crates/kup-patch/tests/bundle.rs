//! Bundles built by `build`, read back, and refused once corrupted in each way the product
//! requirement lists. Every rejection asserts both the variant and the operator's message.

mod common;

use common::*;
use kup_patch::{
    BuildError, Bundle, BundleError, Limits, ManifestError, PatchKind, PathProblem, generate_key,
    key_id, read,
};
use tar::EntryType;

fn read_default(bytes: &[u8]) -> Result<Bundle, BundleError> {
    read(bytes, &trusted(), &Limits::default())
}

/// Reads `bytes`, expecting a refusal with exactly `message`, and returns the error.
fn refused(bytes: &[u8], message: &str) -> BundleError {
    let err = read_default(bytes).expect_err("the bundle should be refused");
    assert_eq!(err.to_string(), message);
    err
}

/// The sample's members, edited, reassembled and compressed again.
fn rebuilt(kind: Sample, edit: impl FnOnce(&mut Vec<Member>)) -> Vec<u8> {
    let mut members = members_of(&bundle(kind));
    edit(&mut members);
    gzip(&assemble(&members))
}

// ---------------------------------------------------------------------------------------------
// What is accepted

#[test]
fn round_trip_every_kind() {
    for kind in ALL {
        let bytes = bundle(kind);
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{kind:?}: build emits gzip");
        let got = read_default(&bytes).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let (_, files) = sample(kind);
        assert_eq!(got.files.len(), files.len());
        for (path, data) in files {
            assert_eq!(got.files[path], data, "{kind:?} {path}");
            let entry = got.manifest.file(path).unwrap();
            assert_eq!(entry.size, data.len() as u64);
            assert_eq!(entry.sha256, kup_patch::sha256_hex(&data));
        }
        assert_eq!(got.key_id, key_id(&key().verifying_key()));
        assert_eq!(got.manifest.key_id, got.key_id);
        assert_eq!(got.manifest.format, 1);
        // The file list is sorted, whatever order the directory walk met the files in.
        let paths: Vec<_> = got.manifest.files.iter().map(|f| f.path.clone()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }
}

#[test]
fn round_trip_keeps_the_patch_metadata() {
    let platform = read_default(&bundle(Sample::Platform)).unwrap().manifest;
    assert_eq!(platform.id, "KUBE.1");
    assert_eq!(platform.kind, PatchKind::Platform);
    assert_eq!(platform.delivers, None);
    let meta = platform.kubernetes.unwrap();
    assert_eq!(meta.version.to_string(), "v1.16.2");
    assert_eq!(meta.networking_manifests.len(), 2);
    let catalog = meta.version_meta();
    assert_eq!(catalog.upgrade_from[0].to_string(), "v1.15.3");
    assert_eq!(catalog.applied_patches, ["KUBE.1", "KUBE.2"]);
    assert_eq!(catalog.available_patches, ["KUBE.3"]);

    let kubeadm = read_default(&bundle(Sample::Kubeadm)).unwrap().manifest;
    assert_eq!(kubeadm.kind, PatchKind::Kubeadm);
    assert_eq!(kubeadm.requires, ["KUBE.1"]);
    assert_eq!(kubeadm.delivers.unwrap().to_string(), "v1.16.2");
    assert!(kubeadm.kubernetes.is_none());
}

#[test]
fn building_twice_gives_identical_bytes() {
    for kind in ALL {
        let a = bundle(kind);
        // A second, separately written directory: different inodes, times and creation order.
        let b = bundle(kind);
        assert_eq!(a, b, "{kind:?}");
    }
    // The manifest JSON itself is stable too.
    let members = members_of(&bundle(Sample::Platform));
    let manifest = manifest_of(&members);
    assert_eq!(manifest.to_json(), members[0].data);
}

#[test]
fn archive_layout_is_the_documented_one() {
    let members = members_of(&bundle(Sample::Kubelet));
    let names: Vec<_> = members
        .iter()
        .map(|m| String::from_utf8(m.name.clone()).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            "manifest.sig",
            "files/bin/kubectl",
            "files/bin/kubelet"
        ]
    );
    let sig = &members[1].data;
    assert_eq!(sig.len(), 129);
    assert_eq!(sig.last(), Some(&b'\n'));
    // Headers carry nothing from the build machine.
    let plain = gunzip(&bundle(Sample::Kubelet));
    let mut archive = tar::Archive::new(plain.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!(h.entry_type(), EntryType::Regular);
    }
}

#[test]
fn an_uncompressed_tar_is_accepted() {
    let plain = gunzip(&bundle(Sample::Kubeadm));
    let got = read_default(&plain).unwrap();
    assert_eq!(got.manifest.id, "KUBE.2");
}

#[test]
fn directory_members_and_member_order_do_not_matter() {
    let bytes = rebuilt(Sample::Kubelet, |members| {
        members.reverse();
        members.insert(0, Member::special("files/", EntryType::Directory, ""));
        members.insert(1, Member::special("files/bin/", EntryType::Directory, ""));
    });
    let got = read_default(&bytes).unwrap();
    assert_eq!(got.files.len(), 2);
}

#[test]
fn long_paths_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_patch_dir(dir.path(), Sample::Other);
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let full = dir.path().join("files").join(&long);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(&full, b"deep").unwrap();
    let bytes = kup_patch::build(dir.path(), &key()).unwrap();
    let got = read_default(&bytes).unwrap();
    assert_eq!(got.files[&long], b"deep");
}

#[test]
fn any_of_several_trusted_keys_verifies() {
    let other = generate_key().unwrap();
    let bytes = build_sample(Sample::Other, &other);
    let keys = [key().verifying_key(), other.verifying_key()];
    let got = read(&bytes, &keys, &Limits::default()).unwrap();
    assert_eq!(got.key_id, key_id(&other.verifying_key()));
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[test]
fn rejects_a_bundle_signed_by_an_untrusted_key() {
    let bytes = build_sample(Sample::Kubeadm, &generate_key().unwrap());
    let err = refused(&bytes, "bundle rejected: not signed by a trusted key");
    assert_eq!(err, BundleError::Untrusted);
    // Trusting nobody refuses everything.
    let err = read(&bundle(Sample::Kubeadm), &[], &Limits::default()).unwrap_err();
    assert_eq!(err, BundleError::Untrusted);
}

#[test]
fn rejects_a_tampered_manifest() {
    let bytes = rebuilt(Sample::Kubeadm, |members| {
        let json = &mut member(members, "manifest.json").data;
        // "v1.16.2" -> "v1.16.3": still valid JSON, still a valid manifest, no longer signed.
        let text = String::from_utf8(json.clone()).unwrap();
        *json = text.replace("v1.16.2", "v1.16.3").into_bytes();
    });
    let err = refused(&bytes, "bundle rejected: not signed by a trusted key");
    assert_eq!(err, BundleError::Untrusted);

    // Any single flipped byte anywhere in the manifest.
    let original = members_of(&bundle(Sample::Kubeadm));
    let len = original[0].data.len();
    for i in (0..len).step_by(7) {
        let mut members = original.clone();
        members[0].data[i] ^= 0x01;
        let err = read_default(&gzip(&assemble(&members))).unwrap_err();
        assert_eq!(err, BundleError::Untrusted, "byte {i}");
    }
}

#[test]
fn rejects_a_bundle_without_signature() {
    let bytes = rebuilt(Sample::Platform, |members| {
        members.retain(|m| m.name != b"manifest.sig")
    });
    let err = refused(
        &bytes,
        "bundle rejected: manifest.sig is missing (the bundle is unsigned)",
    );
    assert_eq!(err, BundleError::Unsigned);
}

#[test]
fn rejects_a_malformed_signature() {
    let cases: [(&[u8], &str); 4] = [
        (b"", "expected 128 hex characters and an optional newline"),
        (
            &[b'a'; 127],
            "expected 128 hex characters and an optional newline",
        ),
        (&[b'z'; 128], "not hexadecimal"),
        (
            &[b'0'; 130],
            "expected 128 hex characters and an optional newline",
        ),
    ];
    for (sig, reason) in cases {
        let bytes = rebuilt(Sample::Other, |members| {
            member(members, "manifest.sig").data = sig.to_vec()
        });
        let err = refused(
            &bytes,
            &format!("bundle rejected: manifest.sig is malformed ({reason})"),
        );
        assert_eq!(err, BundleError::MalformedSignature { reason });
    }
    // Well-formed hex that is not a signature of this manifest.
    let bytes = rebuilt(Sample::Other, |members| {
        member(members, "manifest.sig").data = [b'0'; 128].to_vec()
    });
    assert_eq!(read_default(&bytes).unwrap_err(), BundleError::Untrusted);
}

#[test]
fn rejects_a_bundle_without_manifest() {
    let bytes = rebuilt(Sample::Platform, |members| {
        members.retain(|m| m.name != b"manifest.json")
    });
    let err = refused(&bytes, "bundle rejected: manifest.json is missing");
    assert_eq!(err, BundleError::MissingManifest);
}

#[test]
fn rejects_a_signed_manifest_that_is_not_json() {
    let bytes = rebuilt(Sample::Other, |members| {
        let json = b"not json".to_vec();
        member(members, "manifest.sig").data = kup_patch::sign_manifest(&json, &key()).into();
        member(members, "manifest.json").data = json;
    });
    let err = read_default(&bytes).unwrap_err();
    assert!(matches!(err, BundleError::ManifestJson { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("bundle rejected: manifest.json is not a valid manifest (expected"),
        "{err}"
    );
}

#[test]
fn rejects_a_signed_manifest_with_unknown_fields() {
    let bytes = rebuilt(Sample::Other, |members| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&member(members, "manifest.json").data).unwrap();
        v["surprise"] = serde_json::json!(true);
        let json = serde_json::to_vec(&v).unwrap();
        member(members, "manifest.sig").data = kup_patch::sign_manifest(&json, &key()).into();
        member(members, "manifest.json").data = json;
    });
    let err = read_default(&bytes).unwrap_err();
    assert!(matches!(err, BundleError::ManifestJson { .. }), "{err:?}");
    assert!(
        err.to_string().contains("unknown field `surprise`"),
        "{err}"
    );
}

#[test]
fn rejects_a_signed_manifest_that_fails_validation() {
    let bytes = rebuilt(Sample::Platform, |members| {
        resign(members, &key(), |m| m.kubernetes = None)
    });
    let err = refused(
        &bytes,
        "bundle rejected: manifest.json is invalid: platform patches must carry \"kubernetes\"",
    );
    assert_eq!(
        err,
        BundleError::InvalidManifest(ManifestError::FieldRequired {
            kind: PatchKind::Platform,
            field: "kubernetes"
        })
    );

    let bytes = rebuilt(Sample::Kubeadm, |members| {
        resign(members, &key(), |m| m.files[0].path = "../kubeadm".into())
    });
    let err = refused(
        &bytes,
        "bundle rejected: manifest.json is invalid: file path \"../kubeadm\" escapes the bundle",
    );
    assert!(matches!(
        err,
        BundleError::InvalidManifest(ManifestError::BadFilePath {
            problem: PathProblem::Escapes,
            ..
        })
    ));
}

#[test]
fn rejects_a_manifest_naming_another_key() {
    let bytes = rebuilt(Sample::Other, |members| {
        resign(members, &key(), |m| m.key_id = "0000000000000000".into())
    });
    let actual = key_id(&key().verifying_key());
    let err = refused(
        &bytes,
        &format!(
            "bundle rejected: manifest names key 0000000000000000 but was signed by key {actual}"
        ),
    );
    assert!(matches!(err, BundleError::KeyIdMismatch { .. }));
}

// ---------------------------------------------------------------------------------------------
// Payload against manifest

#[test]
fn rejects_a_flipped_payload_byte() {
    let original = members_of(&bundle(Sample::Kubeadm));
    let idx = original
        .iter()
        .position(|m| m.name == b"files/bin/kubeadm")
        .unwrap();
    let len = original[idx].data.len();
    for i in [0, 1, len / 2, len - 1] {
        let mut members = original.clone();
        members[idx].data[i] ^= 0x80;
        let err = refused(
            &gzip(&assemble(&members)),
            "bundle rejected: files/bin/kubeadm does not match its sha256 (tampered)",
        );
        assert_eq!(
            err,
            BundleError::HashMismatch {
                path: "bin/kubeadm".into()
            }
        );
    }
}

#[test]
fn rejects_a_flipped_byte_in_the_uncompressed_archive() {
    // Corrupt the real archive bytes, not a reassembly: the payload's last byte.
    let bundle = bundle(Sample::Other);
    let mut plain = gunzip(&bundle);
    let pos = plain
        .windows(6)
        .position(|w| w == b"hello\n")
        .expect("payload in the archive");
    plain[pos] ^= 0x20;
    let err = refused(
        &plain,
        "bundle rejected: files/etc/motd does not match its sha256 (tampered)",
    );
    assert!(matches!(err, BundleError::HashMismatch { .. }));
}

#[test]
fn rejects_more_bytes_than_declared() {
    let bytes = rebuilt(Sample::Kubeadm, |members| {
        member(members, "files/bin/kubeadm").data.push(0)
    });
    let err = refused(
        &bytes,
        "bundle rejected: files/bin/kubeadm is 3001 bytes but the manifest declares 3000",
    );
    assert_eq!(
        err,
        BundleError::SizeMismatch {
            path: "bin/kubeadm".into(),
            declared: 3000,
            actual: 3001
        }
    );
}

#[test]
fn rejects_fewer_bytes_than_declared() {
    let bytes = rebuilt(Sample::Kubeadm, |members| {
        member(members, "files/bin/kubeadm").data.pop();
    });
    let err = refused(
        &bytes,
        "bundle rejected: files/bin/kubeadm is 2999 bytes but the manifest declares 3000",
    );
    assert!(matches!(err, BundleError::SizeMismatch { .. }));
}

#[test]
fn rejects_an_undeclared_file() {
    let bytes = rebuilt(Sample::Kubeadm, |members| {
        members.push(Member::file("files/bin/backdoor", b"#!/bin/sh\n"))
    });
    let err = refused(
        &bytes,
        "bundle rejected: files/bin/backdoor is not declared in the manifest",
    );
    assert_eq!(
        err,
        BundleError::Undeclared {
            member: "files/bin/backdoor".into()
        }
    );
}

#[test]
fn rejects_a_missing_declared_file() {
    let bytes = rebuilt(Sample::Kubelet, |members| {
        members.retain(|m| m.name != b"files/bin/kubelet")
    });
    let err = refused(
        &bytes,
        "bundle rejected: files/bin/kubelet is declared in the manifest but missing",
    );
    assert_eq!(
        err,
        BundleError::MissingFile {
            path: "bin/kubelet".into()
        }
    );
}

#[test]
fn rejects_a_duplicate_member() {
    for name in ["files/bin/kubeadm", "manifest.json", "manifest.sig"] {
        let bytes = rebuilt(Sample::Kubeadm, |members| {
            let copy = member(members, name).clone();
            members.push(copy);
        });
        let err = refused(
            &bytes,
            &format!("bundle rejected: member \"{name}\" appears more than once"),
        );
        assert_eq!(
            err,
            BundleError::DuplicateMember {
                member: name.into()
            }
        );
    }
    // A directory and a file of the same name are a duplicate too.
    let bytes = rebuilt(Sample::Kubeadm, |members| {
        members.push(Member::special(
            "files/bin/kubeadm/",
            EntryType::Directory,
            "",
        ))
    });
    assert!(matches!(
        read_default(&bytes).unwrap_err(),
        BundleError::DuplicateMember { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Member names and types

fn with_extra(extra: Member) -> Vec<u8> {
    rebuilt(Sample::Kubeadm, |members| members.insert(2, extra))
}

#[test]
fn rejects_a_member_escaping_with_dotdot() {
    for name in ["../etc/passwd", "files/../../etc/passwd", "files/bin/.."] {
        let err = refused(
            &with_extra(Member::file(name, b"root::0:0::/:/bin/sh\n")),
            &format!("bundle rejected: member \"{name}\" escapes the bundle"),
        );
        assert_eq!(
            err,
            BundleError::UnsafePath {
                member: name.into(),
                problem: PathProblem::Escapes
            }
        );
    }
}

#[test]
fn rejects_an_absolute_member() {
    let err = refused(
        &with_extra(Member::file("/etc/cron.d/x", b"* * * * * root sh\n")),
        "bundle rejected: member \"/etc/cron.d/x\" is an absolute path",
    );
    assert!(matches!(
        err,
        BundleError::UnsafePath {
            problem: PathProblem::Absolute,
            ..
        }
    ));
}

#[test]
fn rejects_an_empty_or_dot_component() {
    let err = refused(
        &with_extra(Member::file("files//x", b"")),
        "bundle rejected: member \"files//x\" has an empty path component",
    );
    assert!(matches!(
        err,
        BundleError::UnsafePath {
            problem: PathProblem::EmptyComponent,
            ..
        }
    ));
    let err = read_default(&with_extra(Member::file("files/./x", b""))).unwrap_err();
    assert!(matches!(
        err,
        BundleError::UnsafePath {
            problem: PathProblem::DotComponent,
            ..
        }
    ));
}

#[test]
fn rejects_a_member_outside_files() {
    let err = refused(
        &with_extra(Member::file("install.sh", b"rm -rf /\n")),
        "bundle rejected: member \"install.sh\" is outside files/ \
         (only manifest.json and manifest.sig may sit beside it)",
    );
    assert!(matches!(
        err,
        BundleError::UnsafePath {
            problem: PathProblem::OutsideFiles,
            ..
        }
    ));
}

#[test]
fn rejects_a_symlink() {
    let err = refused(
        &with_extra(Member::special(
            "files/bin/kubectl",
            EntryType::Symlink,
            "/etc/shadow",
        )),
        "bundle rejected: member \"files/bin/kubectl\" is a symbolic link; \
         only regular files and directories are allowed",
    );
    assert_eq!(
        err,
        BundleError::NotRegular {
            member: "files/bin/kubectl".into(),
            kind: "symbolic link".into()
        }
    );
}

#[test]
fn rejects_a_hardlink() {
    let err = refused(
        &with_extra(Member::special(
            "files/bin/kubectl",
            EntryType::Link,
            "../../etc/passwd",
        )),
        "bundle rejected: member \"files/bin/kubectl\" is a hard link; \
         only regular files and directories are allowed",
    );
    assert!(matches!(err, BundleError::NotRegular { .. }));
}

#[test]
fn rejects_device_and_fifo_entries() {
    for (kind, name) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "FIFO"),
        (EntryType::Continuous, "contiguous file"),
    ] {
        let err = refused(
            &with_extra(Member::special("files/dev/sda", kind, "")),
            &format!(
                "bundle rejected: member \"files/dev/sda\" is a {name}; \
                 only regular files and directories are allowed"
            ),
        );
        assert!(matches!(err, BundleError::NotRegular { .. }), "{name}");
    }
    // The tar parser already chokes on this sparse header; refused either way.
    let err = read_default(&with_extra(Member::special(
        "files/s",
        EntryType::GNUSparse,
        "",
    )));
    assert!(
        matches!(
            err,
            Err(BundleError::Damaged { .. } | BundleError::NotRegular { .. })
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Not an archive, truncated, damaged

#[test]
fn rejects_garbage() {
    let mut rng = Rng(42);
    for len in [1, 100, 511, 512, 513, 4096, 10_000] {
        let garbage = rng.bytes(len);
        let err = read_default(&garbage).unwrap_err();
        assert!(
            matches!(err, BundleError::NotAnArchive { .. }),
            "{len}: {err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("bundle rejected: not a tar or gzip archive (")
        );
    }
    // Garbage behind the gzip magic.
    let mut fake = vec![0x1f, 0x8b];
    fake.extend(rng.bytes(600));
    let err = read_default(&fake).unwrap_err();
    assert!(matches!(err, BundleError::NotAnArchive { .. }), "{err:?}");
    assert!(err.to_string().contains("not a valid gzip stream"), "{err}");
    // A valid gzip stream around something that is not a tar.
    let err = read_default(&gzip(&rng.bytes(2000))).unwrap_err();
    assert!(matches!(err, BundleError::NotAnArchive { .. }), "{err:?}");
    refused(
        &[],
        "bundle rejected: not a tar or gzip archive (the file is empty)",
    );
}

#[test]
fn rejects_every_truncation_of_a_compressed_bundle() {
    let bytes = bundle(Sample::Platform);
    for cut in 1..bytes.len() {
        let err = read_default(&bytes[..cut]).unwrap_err();
        match err {
            // The first ten bytes are the gzip header itself.
            BundleError::NotAnArchive { .. } if cut < 20 => {}
            BundleError::Truncated { .. } => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let err = refused(
        &bytes[..bytes.len() / 2],
        "bundle rejected: truncated (the gzip stream ends early)",
    );
    assert!(matches!(err, BundleError::Truncated { .. }));
}

#[test]
fn rejects_every_truncation_of_an_uncompressed_bundle() {
    let plain = gunzip(&bundle(Sample::Kubeadm));
    // The archive ends with two zero blocks; one is enough to mark the end, so only cuts
    // before the last block must fail.
    let must_fail = plain.len() - 512;
    for cut in (1..must_fail)
        .step_by(97)
        .chain([512, 1024, 1536, must_fail - 1])
    {
        let err = read_default(&plain[..cut]).unwrap_err();
        match err {
            BundleError::NotAnArchive { .. } if cut < 512 => {}
            BundleError::Truncated { .. } => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Cut between two members: every header parses, but the end-of-archive marker is gone.
    let members = members_of(&bundle(Sample::Kubeadm));
    let two = assemble(&members[..2]);
    let without_marker = &two[..two.len() - 1024];
    let err = refused(
        without_marker,
        "bundle rejected: truncated (the archive has no end-of-archive marker)",
    );
    assert!(matches!(err, BundleError::Truncated { .. }));
    // Cut inside the payload.
    let payload = fake_binary(b"kubeadm", 3000);
    let start = plain
        .windows(64)
        .position(|w| w == &payload[..64])
        .expect("payload in the archive");
    let err = refused(
        &plain[..start + 1000],
        "bundle rejected: truncated (member \"files/bin/kubeadm\" ends early)",
    );
    assert!(matches!(err, BundleError::Truncated { .. }));
}

#[test]
fn rejects_data_after_the_archive() {
    let mut plain = gunzip(&bundle(Sample::Other));
    plain.extend_from_slice(b"smuggled");
    let err = refused(
        &plain,
        "bundle rejected: damaged archive (data after the end-of-archive marker)",
    );
    assert!(matches!(err, BundleError::Damaged { .. }));

    let mut gz = bundle(Sample::Other);
    gz.extend_from_slice(b"smuggled");
    let err = refused(
        &gz,
        "bundle rejected: damaged archive (data after the end of the gzip stream)",
    );
    assert!(matches!(err, BundleError::Damaged { .. }));
}

#[test]
fn rejects_a_corrupted_compressed_stream() {
    let bytes = bundle(Sample::Kubelet);
    // Flip bytes inside the deflate data and in the CRC trailer: never accepted.
    for pos in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 6] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x55;
        let err = read_default(&bad).unwrap_err();
        assert!(
            !matches!(err, BundleError::TooLarge { .. }),
            "byte {pos}: {err:?}"
        );
    }
    let mut bad = bytes.clone();
    let crc = bad.len() - 8;
    bad[crc] ^= 0xff;
    let err = read_default(&bad).unwrap_err();
    assert!(matches!(err, BundleError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt gzip stream"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Limits

#[test]
fn rejects_a_bundle_over_the_size_limit() {
    let bytes = bundle(Sample::Kubelet);
    let limits = Limits {
        max_bundle_bytes: bytes.len() as u64 - 1,
        ..Limits::default()
    };
    let err = read(&bytes, &trusted(), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "bundle rejected: it is {} bytes, over the limit of {} bytes",
            bytes.len(),
            bytes.len() - 1
        )
    );
    assert!(matches!(err, BundleError::TooLarge { .. }));
    let exact = Limits {
        max_bundle_bytes: gunzip(&bytes).len() as u64,
        ..Limits::default()
    };
    read(&bytes, &trusted(), &exact).expect("exactly at the limit is fine");
}

#[test]
fn stops_a_gzip_bomb_at_the_decompressed_limit() {
    let limits = Limits {
        max_bundle_bytes: 1024 * 1024,
        ..Limits::default()
    };
    // A member claiming 16 MiB of zeros compresses to a few KiB.
    let bomb = gzip(&assemble(&[Member::file(
        "files/zeros",
        &vec![0u8; 16 * 1024 * 1024],
    )]));
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let err = read(&bomb, &trusted(), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bundle rejected: its contents expand past the limit of 1048576 bytes"
    );
    assert_eq!(err, BundleError::ExpandsTooLarge { limit: 1024 * 1024 });

    // Zeros alone read as an end-of-archive marker followed by padding: still stopped.
    let padding = gzip(&vec![0u8; 16 * 1024 * 1024]);
    let err = read(&padding, &trusted(), &limits).unwrap_err();
    assert_eq!(err, BundleError::ExpandsTooLarge { limit: 1024 * 1024 });
}

#[test]
fn rejects_too_many_members() {
    let limits = Limits {
        max_files: 3,
        ..Limits::default()
    };
    let bytes = bundle(Sample::Kubelet); // four members
    let err = read(&bytes, &trusted(), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bundle rejected: it has more than 3 members"
    );
    assert_eq!(err, BundleError::TooManyMembers { limit: 3 });
    let four = Limits {
        max_files: 4,
        ..Limits::default()
    };
    read(&bytes, &trusted(), &four).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Building

fn patch_dir(kind: Sample) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_patch_dir(dir.path(), kind);
    dir
}

#[test]
fn build_refuses_symlinks() {
    let dir = patch_dir(Sample::Kubeadm);
    let link = dir.path().join("files/bin/kubectl");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert!(matches!(err, BuildError::Symlink { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is a symbolic link: bundles carry regular files only",
            link.display()
        )
    );
}

#[test]
fn build_refuses_a_symlinked_files_dir() {
    let dir = tempfile::tempdir().unwrap();
    let real = patch_dir(Sample::Other);
    std::fs::copy(
        real.path().join("patch.json"),
        dir.path().join("patch.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(real.path().join("files"), dir.path().join("files")).unwrap();
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert!(matches!(err, BuildError::Symlink { .. }), "{err:?}");
}

#[test]
fn build_refuses_bad_descriptions() {
    let dir = patch_dir(Sample::Platform);
    std::fs::remove_dir_all(dir.path().join("files/networking")).unwrap();
    std::fs::write(dir.path().join("files/readme"), b"x").unwrap();
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "patch.json does not describe a valid patch: networking manifest \
         \"networking/calico.yaml\" is not one of the bundle's files"
    );

    let dir = patch_dir(Sample::Other);
    std::fs::write(
        dir.path().join("patch.json"),
        r#"{"id": "X", "summary": "", "kind": "other", "files": []}"#,
    )
    .unwrap();
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert!(matches!(err, BuildError::BadSpec { .. }), "{err:?}");
    assert!(err.to_string().contains("unknown field `files`"), "{err}");

    let dir = patch_dir(Sample::Other);
    std::fs::remove_dir_all(dir.path().join("files")).unwrap();
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert!(matches!(err, BuildError::NoFilesDir { .. }), "{err:?}");

    let dir = patch_dir(Sample::Kubeadm);
    std::fs::write(
        dir.path().join("patch.json"),
        r#"{"id": "KUBE.2", "summary": "", "kind": "kubeadm"}"#,
    )
    .unwrap();
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "patch.json does not describe a valid patch: kubeadm patches must carry \"delivers\""
    );
}

#[test]
fn build_refuses_special_files() {
    let dir = patch_dir(Sample::Other);
    let fifo = dir.path().join("files/pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let err = kup_patch::build(dir.path(), &key()).unwrap_err();
    assert!(matches!(err, BuildError::NotRegular { .. }), "{err:?}");
}
