//! Shared by the integration tests: real patch directories, bundles built from them with the
//! fixed test key, and tools to take a bundle apart and put a corrupted one back together.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use kup_patch::{Manifest, SigningKey, VerifyingKey, sign_manifest, testkey};
use tar::EntryType;

pub fn key() -> SigningKey {
    testkey::insecure_signing_key()
}

pub fn trusted() -> Vec<VerifyingKey> {
    vec![testkey::insecure_verifying_key()]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    Platform,
    Kubeadm,
    Kubelet,
    Other,
}

pub const ALL: [Sample; 4] = [
    Sample::Platform,
    Sample::Kubeadm,
    Sample::Kubelet,
    Sample::Other,
];

/// The `patch.json` and payload of each sample, modelled on the seed's three v1.16.2 patches.
pub fn sample(kind: Sample) -> (&'static str, Vec<(&'static str, Vec<u8>)>) {
    match kind {
        Sample::Platform => (
            r#"{
  "id": "KUBE.1",
  "summary": "Kubernetes v1.16.2 version metadata and networking manifests",
  "kind": "platform",
  "requires": [],
  "kubernetes": {
    "version": "v1.16.2",
    "upgrade_from": ["v1.15.3"],
    "downgrade_to": [],
    "applied_patches": ["KUBE.1", "KUBE.2"],
    "available_patches": ["KUBE.3"],
    "images": ["registry.k8s.io/kube-apiserver:v1.16.2"],
    "networking_manifests": ["networking/calico.yaml", "networking/multus.yaml"]
  }
}"#,
            vec![
                (
                    "networking/calico.yaml",
                    b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: calico-config\n".to_vec(),
                ),
                (
                    "networking/multus.yaml",
                    b"apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: kube-multus\n"
                        .to_vec(),
                ),
            ],
        ),
        Sample::Kubeadm => (
            r#"{"id": "KUBE.2", "summary": "kubeadm v1.16.2", "kind": "kubeadm",
                "requires": ["KUBE.1"], "delivers": "v1.16.2"}"#,
            vec![("bin/kubeadm", fake_binary(b"kubeadm", 3000))],
        ),
        Sample::Kubelet => (
            r#"{"id": "KUBE.3", "summary": "kubelet and kubectl v1.16.2", "kind": "kubelet",
                "requires": ["KUBE.1"], "delivers": "v1.16.2"}"#,
            vec![
                ("bin/kubectl", fake_binary(b"kubectl", 2000)),
                ("bin/kubelet", fake_binary(b"kubelet", 2500)),
            ],
        ),
        Sample::Other => (
            r#"{"id": "MISC_1-a", "summary": "an unrelated fix", "kind": "other"}"#,
            vec![("etc/motd", b"hello\n".to_vec())],
        ),
    }
}

/// Deterministic bytes that do not compress to nothing, standing in for a binary.
pub fn fake_binary(tag: &[u8], len: usize) -> Vec<u8> {
    let mut rng = Rng(len as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let mut out = tag.to_vec();
    while out.len() < len {
        out.push(rng.next() as u8);
    }
    out
}

/// xorshift64*: reproducible noise without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub fn write_patch_dir(dir: &Path, kind: Sample) {
    let (spec, files) = sample(kind);
    std::fs::write(dir.join("patch.json"), spec).unwrap();
    std::fs::create_dir_all(dir.join("files")).unwrap();
    for (path, data) in files {
        let full = dir.join("files").join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
}

/// A real bundle, built by `kup_patch::build` in a temporary directory.
pub fn build_sample(kind: Sample, key: &SigningKey) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    write_patch_dir(dir.path(), kind);
    kup_patch::build(dir.path(), key).unwrap()
}

pub fn bundle(kind: Sample) -> Vec<u8> {
    build_sample(kind, &key())
}

/// One tar member, name and link kept as raw bytes so tests can write names the `tar` crate's
/// own setters would refuse.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
}

impl Member {
    pub fn file(name: &str, data: &[u8]) -> Member {
        Member {
            name: name.as_bytes().to_vec(),
            kind: EntryType::Regular,
            data: data.to_vec(),
            link: Vec::new(),
        }
    }

    pub fn special(name: &str, kind: EntryType, link: &str) -> Member {
        Member {
            name: name.as_bytes().to_vec(),
            kind,
            data: Vec::new(),
            link: link.as_bytes().to_vec(),
        }
    }
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The members of a (trusted, test-made) bundle, in archive order.
pub fn members_of(bundle: &[u8]) -> Vec<Member> {
    let plain = gunzip(bundle);
    let mut archive = tar::Archive::new(plain.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Member {
                name: e.path_bytes().into_owned(),
                kind: e.header().entry_type(),
                link: e
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
                data,
            }
        })
        .collect()
}

/// A plain tar of `members`, names written verbatim into the header.
pub fn assemble(members: &[Member]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for m in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(m.kind);
        header.set_size(m.data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        let old = header.as_old_mut();
        old.name[..m.name.len()].copy_from_slice(&m.name);
        old.linkname[..m.link.len()].copy_from_slice(&m.link);
        header.set_cksum();
        builder.append(&header, m.data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn member<'a>(members: &'a mut [Member], name: &str) -> &'a mut Member {
    members
        .iter_mut()
        .find(|m| m.name == name.as_bytes())
        .unwrap_or_else(|| panic!("no member {name}"))
}

pub fn manifest_of(members: &[Member]) -> Manifest {
    let m = members.iter().find(|m| m.name == b"manifest.json").unwrap();
    serde_json::from_slice(&m.data).unwrap()
}

/// Rewrites `manifest.json` through `edit` and signs it again with `key`, as a publisher
/// holding that key could.
pub fn resign(members: &mut [Member], key: &SigningKey, edit: impl FnOnce(&mut Manifest)) {
    let mut manifest = manifest_of(members);
    edit(&mut manifest);
    let json = manifest.to_json();
    let sig = sign_manifest(&json, key);
    member(members, "manifest.json").data = json;
    member(members, "manifest.sig").data = sig.into_bytes();
}
