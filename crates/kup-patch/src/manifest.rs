//! The signed manifest (`manifest.json`) and the patch source description (`patch.json`) it is
//! built from, with the validation every bundle must pass.

use std::collections::BTreeSet;
use std::fmt;

use kup_types::{KubeVersion, VersionMeta};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::path::{PathProblem, check_relative};

/// The only manifest format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Longest summary accepted, in characters; it is shown on one line of `sw-patch query`.
const MAX_SUMMARY_CHARS: usize = 512;

/// What a patch delivers, which decides the fields its manifest must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    /// Version metadata and networking manifests of a new Kubernetes version.
    Platform,
    /// The kubeadm binary of a version.
    Kubeadm,
    /// The kubelet and kubectl binaries of a version.
    Kubelet,
    /// Anything else; carries neither `kubernetes` nor `delivers`.
    Other,
}

impl PatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchKind::Platform => "platform",
            PatchKind::Kubeadm => "kubeadm",
            PatchKind::Kubelet => "kubelet",
            PatchKind::Other => "other",
        }
    }
}

impl fmt::Display for PatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payload file: its path under `files/`, its sha256 (64 lowercase hex) and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What a platform patch tells the platform about the Kubernetes version it introduces: the
/// catalog entry ([`VersionMeta`]) plus the networking manifests shipped in the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesMeta {
    pub version: KubeVersion,
    /// Versions that may upgrade directly to this one.
    #[serde(default)]
    pub upgrade_from: Vec<KubeVersion>,
    #[serde(default)]
    pub downgrade_to: Vec<KubeVersion>,
    /// Patches that must be applied before upgrading to this version.
    #[serde(default)]
    pub applied_patches: Vec<String>,
    /// Patches that must be uploaded (available) before upgrading to this version.
    #[serde(default)]
    pub available_patches: Vec<String>,
    /// Container images this version needs.
    #[serde(default)]
    pub images: Vec<String>,
    /// Paths (as in `files`) of the networking manifests applied during the upgrade.
    #[serde(default)]
    pub networking_manifests: Vec<String>,
}

impl KubernetesMeta {
    /// The catalog entry this metadata adds once the patch is applied.
    pub fn version_meta(&self) -> VersionMeta {
        VersionMeta {
            version: self.version,
            upgrade_from: self.upgrade_from.clone(),
            downgrade_to: self.downgrade_to.clone(),
            applied_patches: self.applied_patches.clone(),
            available_patches: self.available_patches.clone(),
            images: self.images.clone(),
        }
    }
}

/// `patch.json` in a patch source directory: the manifest without what [`crate::build`]
/// computes (`format`, `files`, `key_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSpec {
    pub id: String,
    pub summary: String,
    pub kind: PatchKind,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivers: Option<KubeVersion>,
}

/// `manifest.json`: everything a bundle claims, covered by the signature in `manifest.sig`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format: u32,
    /// `[A-Za-z0-9._-]{1,64}`, e.g. `KUBE.1`.
    pub id: String,
    pub summary: String,
    pub kind: PatchKind,
    /// Ids of patches that must be applied before this one.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Every payload file, sorted by path.
    pub files: Vec<FileEntry>,
    /// Platform patches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesMeta>,
    /// The Kubernetes version whose binaries a kubeadm or kubelet patch carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivers: Option<KubeVersion>,
    /// [`crate::key_id`] of the key that signed the manifest.
    pub key_id: String,
}

/// Why a manifest (or a `patch.json`) is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("format {found} is not supported (this kup reads format {FORMAT_VERSION})")]
    UnsupportedFormat { found: u32 },
    #[error("patch id {id:?} is invalid: use 1 to 64 of the characters A-Z a-z 0-9 . _ -")]
    BadId { id: String },
    #[error("summary must be one line of at most {MAX_SUMMARY_CHARS} characters")]
    BadSummary,
    #[error("{field} names an invalid patch id {id:?}")]
    BadReference { field: &'static str, id: String },
    #[error("{field} names {id:?} more than once")]
    DuplicateReference { field: &'static str, id: String },
    #[error("patch {id:?} requires itself")]
    RequiresItself { id: String },
    #[error("{kind} patches must carry \"{field}\"")]
    FieldRequired {
        kind: PatchKind,
        field: &'static str,
    },
    #[error("{kind} patches must not carry \"{field}\"")]
    FieldForbidden {
        kind: PatchKind,
        field: &'static str,
    },
    #[error("file path {path:?} {problem}")]
    BadFilePath { path: String, problem: PathProblem },
    #[error("file {path:?} is listed more than once")]
    DuplicateFile { path: String },
    #[error("file {file:?} is also a directory of {other:?}")]
    FileIsDirectory { file: String, other: String },
    #[error("sha256 of {path:?} is not 64 lowercase hex characters")]
    BadSha256 { path: String },
    #[error("networking manifest {path:?} is not one of the bundle's files")]
    UndeclaredNetworkingManifest { path: String },
    #[error("networking manifest {path:?} is listed more than once")]
    DuplicateNetworkingManifest { path: String },
    #[error("key_id {key_id:?} is not 16 lowercase hex characters")]
    BadKeyId { key_id: String },
}

/// Hex sha256 of `data`, as manifests record it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `[A-Za-z0-9._-]{1,64}`: safe in URLs, file names and table cells.
pub(crate) fn valid_id(id: &str) -> bool {
    // It names a file and a URL segment: no leading dot (`.`, `..`, hidden files).
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_references(field: &'static str, ids: &[String]) -> Result<(), ManifestError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !valid_id(id) {
            return Err(ManifestError::BadReference {
                field,
                id: id.clone(),
            });
        }
        if !seen.insert(id.as_str()) {
            return Err(ManifestError::DuplicateReference {
                field,
                id: id.clone(),
            });
        }
    }
    Ok(())
}

impl PatchSpec {
    /// The manifest this spec becomes once `files` and the signing key are known.
    pub fn into_manifest(self, files: Vec<FileEntry>, key_id: String) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            id: self.id,
            summary: self.summary,
            kind: self.kind,
            requires: self.requires,
            files,
            kubernetes: self.kubernetes,
            delivers: self.delivers,
            key_id,
        }
    }
}

impl Manifest {
    /// The declared file at `path` (relative to `files/`), if any.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The exact bytes [`crate::build`] writes as `manifest.json`: pretty JSON in field
    /// order plus a newline, so the same manifest always serialises, and so signs, the same.
    pub fn to_json(&self) -> Vec<u8> {
        // Only strings, integers and sequences: serialisation cannot fail.
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        out.push(b'\n');
        out
    }

    /// Checks every rule of the format that the types alone do not enforce.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedFormat { found: self.format });
        }
        if !valid_id(&self.id) {
            return Err(ManifestError::BadId {
                id: self.id.clone(),
            });
        }
        if self.summary.chars().count() > MAX_SUMMARY_CHARS
            || self.summary.chars().any(char::is_control)
        {
            return Err(ManifestError::BadSummary);
        }
        check_references("requires", &self.requires)?;
        if self.requires.contains(&self.id) {
            return Err(ManifestError::RequiresItself {
                id: self.id.clone(),
            });
        }
        self.check_kind_fields()?;
        let paths = self.check_files()?;
        if let Some(k) = &self.kubernetes {
            check_references("kubernetes.applied_patches", &k.applied_patches)?;
            check_references("kubernetes.available_patches", &k.available_patches)?;
            let mut seen = BTreeSet::new();
            for m in &k.networking_manifests {
                if !paths.contains(m.as_str()) {
                    return Err(ManifestError::UndeclaredNetworkingManifest { path: m.clone() });
                }
                if !seen.insert(m.as_str()) {
                    return Err(ManifestError::DuplicateNetworkingManifest { path: m.clone() });
                }
            }
        }
        if !is_lower_hex(&self.key_id, 16) {
            return Err(ManifestError::BadKeyId {
                key_id: self.key_id.clone(),
            });
        }
        Ok(())
    }

    fn check_kind_fields(&self) -> Result<(), ManifestError> {
        let kind = self.kind;
        let (wants_kubernetes, wants_delivers) = match kind {
            PatchKind::Platform => (true, false),
            PatchKind::Kubeadm | PatchKind::Kubelet => (false, true),
            PatchKind::Other => (false, false),
        };
        for (field, wanted, present) in [
            ("kubernetes", wants_kubernetes, self.kubernetes.is_some()),
            ("delivers", wants_delivers, self.delivers.is_some()),
        ] {
            if wanted && !present {
                return Err(ManifestError::FieldRequired { kind, field });
            }
            if !wanted && present {
                return Err(ManifestError::FieldForbidden { kind, field });
            }
        }
        Ok(())
    }

    /// Checks the file list and returns its set of paths.
    fn check_files(&self) -> Result<BTreeSet<&str>, ManifestError> {
        let mut paths = BTreeSet::new();
        for f in &self.files {
            check_relative(&f.path).map_err(|problem| ManifestError::BadFilePath {
                path: f.path.clone(),
                problem,
            })?;
            if !is_lower_hex(&f.sha256, 64) {
                return Err(ManifestError::BadSha256 {
                    path: f.path.clone(),
                });
            }
            if !paths.insert(f.path.as_str()) {
                return Err(ManifestError::DuplicateFile {
                    path: f.path.clone(),
                });
            }
        }
        // "bin" and "bin/kubeadm" cannot both be files once the payload is laid out on disk.
        for p in &paths {
            let dir = format!("{p}/");
            if let Some(other) = paths.range(dir.as_str()..).next()
                && other.starts_with(&dir)
            {
                return Err(ManifestError::FileIsDirectory {
                    file: (*p).to_string(),
                    other: (*other).to_string(),
                });
            }
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_files_and_url_segments() {
        for good in ["KUBE.1", "K8S-1.16.2-KUBELET", "a_b"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    fn platform() -> Manifest {
        serde_json::from_str(
            r#"{
                "format": 1, "id": "KUBE.1", "summary": "Kubernetes v1.16.2 metadata",
                "kind": "platform", "requires": [],
                "files": [{"path": "net/calico.yaml", "sha256": "00000000000000000000000000000000000000000000000000000000000000ab", "size": 3}],
                "kubernetes": {"version": "v1.16.2", "upgrade_from": ["v1.15.3"],
                               "networking_manifests": ["net/calico.yaml"]},
                "key_id": "0123456789abcdef"
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn a_good_manifest_validates_and_round_trips() {
        let m = platform();
        m.validate().unwrap();
        let back: Manifest = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let meta = m.kubernetes.unwrap().version_meta();
        assert_eq!(meta.version, KubeVersion::new(1, 16, 2));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&platform().to_json()).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }

    #[test]
    fn every_rule_is_enforced() {
        type Edit = fn(&mut Manifest);
        let cases: Vec<(Edit, &str)> = vec![
            (|m| m.format = 2, "format 2 is not supported"),
            (|m| m.id = String::new(), "patch id \"\" is invalid"),
            (|m| m.id = "a/b".into(), "patch id \"a/b\" is invalid"),
            (|m| m.id = "x".repeat(65), "is invalid"),
            (
                |m| m.summary = "two\nlines".into(),
                "summary must be one line",
            ),
            (
                |m| m.requires = vec!["a b".into()],
                "requires names an invalid",
            ),
            (
                |m| m.requires = vec!["A".into(), "A".into()],
                "requires names \"A\" more than once",
            ),
            (|m| m.requires = vec!["KUBE.1".into()], "requires itself"),
            (
                |m| m.kubernetes = None,
                "platform patches must carry \"kubernetes\"",
            ),
            (
                |m| m.delivers = Some(KubeVersion::new(1, 16, 2)),
                "platform patches must not carry \"delivers\"",
            ),
            (
                |m| {
                    m.kind = PatchKind::Kubeadm;
                    m.kubernetes = None;
                },
                "kubeadm patches must carry \"delivers\"",
            ),
            (
                |m| {
                    m.kind = PatchKind::Kubelet;
                    m.delivers = Some(KubeVersion::new(1, 16, 2));
                },
                "kubelet patches must not carry \"kubernetes\"",
            ),
            (
                |m| m.kind = PatchKind::Other,
                "other patches must not carry \"kubernetes\"",
            ),
            (
                |m| m.files[0].path = "../x".into(),
                "file path \"../x\" escapes the bundle",
            ),
            (
                |m| m.files[0].path = "/x".into(),
                "file path \"/x\" is an absolute path",
            ),
            (
                |m| m.files[0].path = "a//x".into(),
                "has an empty path component",
            ),
            (
                |m| m.files.push(m.files[0].clone()),
                "file \"net/calico.yaml\" is listed more than once",
            ),
            (
                |m| {
                    let mut f = m.files[0].clone();
                    f.path = "net".into();
                    m.files.push(f);
                },
                "file \"net\" is also a directory of \"net/calico.yaml\"",
            ),
            (|m| m.files[0].sha256 = "AB".into(), "sha256 of"),
            (
                |m| {
                    m.kubernetes
                        .as_mut()
                        .unwrap()
                        .networking_manifests
                        .push("nope".into())
                },
                "networking manifest \"nope\" is not one of the bundle's files",
            ),
            (
                |m| {
                    let k = m.kubernetes.as_mut().unwrap();
                    k.networking_manifests
                        .push(k.networking_manifests[0].clone())
                },
                "is listed more than once",
            ),
            (
                |m| m.kubernetes.as_mut().unwrap().applied_patches = vec!["".into()],
                "kubernetes.applied_patches names an invalid patch id",
            ),
            (|m| m.key_id = "xyz".into(), "key_id \"xyz\" is not 16"),
        ];
        for (edit, expected) in cases {
            let mut m = platform();
            edit(&mut m);
            let err = m.validate().unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }
}
