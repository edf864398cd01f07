//! Signed software-patch bundles, the way new Kubernetes versions, kubeadm and kubelet reach a
//! StarlingX-like platform.
//!
//! A bundle is one tar file (optionally gzip-compressed) holding `manifest.json`,
//! `manifest.sig` (a hex ed25519 signature over the exact manifest bytes) and the payload under
//! `files/`. The format is specified in `docs/patch-bundle.md`.
//!
//! * [`build`] turns a patch source directory into bundle bytes, deterministically.
//! * [`read`] checks bundle bytes completely in memory and returns a [`Bundle`] only if every
//!   check passes: it never writes to disk and never panics, whatever the input.
//! * [`keys`] generates signing keys and reads and writes their one-line text formats.

mod build;
pub mod keys;
mod manifest;
mod path;
mod read;
#[doc(hidden)]
pub mod testkey;

pub use build::{BuildError, PATCH_SPEC_FILE, build, sign_manifest};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use keys::{
    KeyError, format_public_key, format_secret_key, generate_key, key_id, parse_public_key,
    parse_secret_key,
};
pub use manifest::{
    FORMAT_VERSION, FileEntry, KubernetesMeta, Manifest, ManifestError, PatchKind, PatchSpec,
    sha256_hex,
};
pub use path::PathProblem;
pub use read::{Bundle, BundleError, Limits, read};

/// Name of the manifest member at the root of a bundle.
pub const MANIFEST_MEMBER: &str = "manifest.json";
/// Name of the signature member at the root of a bundle.
pub const SIGNATURE_MEMBER: &str = "manifest.sig";
/// Directory of a bundle that holds the payload; manifest paths are relative to it.
pub const FILES_DIR: &str = "files";
