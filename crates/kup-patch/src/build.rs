//! Building a bundle from a patch source directory (`patch.json` + `files/`).
//!
//! The output is byte-for-byte reproducible: members in a fixed order, tar headers with no
//! time, owner or permission information from the build machine, and a gzip header without a
//! timestamp or file name. Ed25519 signatures are deterministic too, so building the same
//! directory with the same key twice gives identical bundles.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use flate2::{Compression, GzBuilder};

use crate::keys::key_id;
use crate::manifest::{FileEntry, ManifestError, PatchSpec, sha256_hex};
use crate::path::{PathProblem, check_relative};
use crate::{FILES_DIR, MANIFEST_MEMBER, SIGNATURE_MEMBER};

/// The patch description inside a patch source directory.
pub const PATCH_SPEC_FILE: &str = "patch.json";

/// Why a patch directory could not be turned into a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a valid patch description: {reason}", path.display())]
    BadSpec { path: PathBuf, reason: String },
    #[error("{} is missing or not a directory: a patch directory holds patch.json and files/", path.display())]
    NoFilesDir { path: PathBuf },
    #[error("{} is a symbolic link: bundles carry regular files only", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file or a directory: bundles carry regular files only", path.display())]
    NotRegular { path: PathBuf },
    #[error("{}: its path under files/ {problem}", path.display())]
    BadPath { path: PathBuf, problem: PathProblem },
    #[error("patch.json does not describe a valid patch: {0}")]
    Invalid(#[from] ManifestError),
    #[error("cannot assemble the bundle: {0}")]
    Write(io::Error),
}

/// The `manifest.sig` content for `manifest_json`: the hex ed25519 signature and a newline.
pub fn sign_manifest(manifest_json: &[u8], key: &SigningKey) -> String {
    let signature = key.sign(manifest_json);
    format!("{}\n", hex::encode(signature.to_bytes()))
}

/// Builds the signed, gzip-compressed bundle for the patch directory `dir`.
///
/// `dir` holds `patch.json` (a [`PatchSpec`]) and a `files/` tree whose regular files become
/// the payload; symbolic links and special files are refused rather than followed or skipped.
pub fn build(dir: &Path, key: &SigningKey) -> Result<Vec<u8>, BuildError> {
    let spec_path = dir.join(PATCH_SPEC_FILE);
    let spec_text = fs::read(&spec_path).map_err(|source| BuildError::Io {
        path: spec_path.clone(),
        source,
    })?;
    let spec: PatchSpec = serde_json::from_slice(&spec_text).map_err(|e| BuildError::BadSpec {
        path: spec_path,
        reason: e.to_string(),
    })?;

    let files_dir = dir.join(FILES_DIR);
    match fs::symlink_metadata(&files_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) if meta.is_symlink() => return Err(BuildError::Symlink { path: files_dir }),
        _ => return Err(BuildError::NoFilesDir { path: files_dir }),
    }
    let mut found = BTreeMap::new();
    walk(&files_dir, "", &mut found)?;

    // BTreeMap order is byte order of the paths: the manifest and the archive share it.
    let mut entries = Vec::with_capacity(found.len());
    let mut payload = Vec::with_capacity(found.len());
    for (rel, path) in found {
        let data = fs::read(&path).map_err(|source| BuildError::Io { path, source })?;
        entries.push(FileEntry {
            path: rel.clone(),
            sha256: sha256_hex(&data),
            size: data.len() as u64,
        });
        payload.push((format!("{FILES_DIR}/{rel}"), data));
    }

    let manifest = spec.into_manifest(entries, key_id(&key.verifying_key()));
    manifest.validate()?;
    let manifest_json = manifest.to_json();
    let signature = sign_manifest(&manifest_json, key);

    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    append(&mut tar, MANIFEST_MEMBER, &manifest_json)?;
    append(&mut tar, SIGNATURE_MEMBER, signature.as_bytes())?;
    for (name, data) in &payload {
        append(&mut tar, name, data)?;
    }
    let gz = tar.into_inner().map_err(BuildError::Write)?;
    gz.finish().map_err(BuildError::Write)
}

/// Collects the regular files under `dir` into `out`, keyed by their path relative to `files/`.
fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) -> Result<(), BuildError> {
    let io_err = |source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(BuildError::BadPath {
                path,
                problem: PathProblem::NotUtf8,
            });
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        check_relative(&rel).map_err(|problem| BuildError::BadPath {
            path: path.clone(),
            problem,
        })?;
        // symlink_metadata, not metadata: a link is refused, never followed.
        let meta = fs::symlink_metadata(&path).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_symlink() {
            return Err(BuildError::Symlink { path });
        } else if meta.is_dir() {
            walk(&path, &rel, out)?;
        } else if meta.is_file() {
            out.insert(rel, path);
        } else {
            return Err(BuildError::NotRegular { path });
        }
    }
    Ok(())
}

/// Appends one regular file with a header that carries nothing from the build machine.
fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> Result<(), BuildError> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    tar.append_data(&mut header, name, data)
        .map_err(BuildError::Write)
}
