//! The catalog file (`--catalog FILE`): the Kubernetes versions a real cluster may be upgraded
//! to and from which, as the simulator's cluster file lists them. A real cluster's catalog is
//! the version it runs (read from the cluster), this file's versions, and the versions that
//! applied platform patches add.

use std::collections::BTreeSet;
use std::path::Path;

use kup_types::{KubeVersion, VersionMeta};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::file::FileError;

const FILE: &str = "catalog file";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    versions: Vec<Entry>,
}

/// One version, with the fields of [`VersionMeta`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    version: Spanned<KubeVersion>,
    #[serde(default)]
    upgrade_from: Vec<KubeVersion>,
    #[serde(default)]
    downgrade_to: Vec<KubeVersion>,
    #[serde(default)]
    applied_patches: Vec<String>,
    #[serde(default)]
    available_patches: Vec<String>,
    /// kubeadm's image set of the version when empty (filled in by the caller, who knows
    /// the cluster's image repository).
    #[serde(default)]
    images: Vec<String>,
}

/// Parses a catalog file's text; a version that lists no images keeps its list empty.
pub fn parse_catalog(source: &str) -> Result<Vec<VersionMeta>, FileError> {
    let file: CatalogFile = crate::file::parse(FILE, source)?;
    if file.versions.is_empty() {
        return Err(FileError::whole(FILE, "it lists no versions"));
    }
    let mut seen = BTreeSet::new();
    for e in &file.versions {
        let v = e.version.value;
        if !seen.insert(v) {
            return Err(FileError::at(
                FILE,
                &e.version,
                format!("version {v} is listed twice"),
            ));
        }
        for (field, others) in [
            ("upgrade_from", &e.upgrade_from),
            ("downgrade_to", &e.downgrade_to),
        ] {
            if let Some(o) = others.iter().find(|o| **o >= v) {
                return Err(FileError::at(
                    FILE,
                    &e.version,
                    format!("version {v}: {field} lists {o}, which is not older"),
                ));
            }
        }
        // kubeadm upgrades the control plane one minor at a time.
        if let Some(o) = e
            .upgrade_from
            .iter()
            .find(|o| o.major != v.major || v.minor - o.minor > 1)
        {
            return Err(FileError::at(
                FILE,
                &e.version,
                format!(
                    "version {v}: upgrade_from lists {o}, more than one minor version older (kubeadm upgrades one minor at a time)"
                ),
            ));
        }
    }
    Ok(file
        .versions
        .into_iter()
        .map(|e| VersionMeta {
            version: e.version.value,
            upgrade_from: e.upgrade_from,
            downgrade_to: e.downgrade_to,
            applied_patches: e.applied_patches,
            available_patches: e.available_patches,
            images: e.images,
        })
        .collect())
}

/// Reads and parses the catalog file at `path`.
pub fn load_catalog(path: &Path) -> Result<Vec<VersionMeta>, FileError> {
    parse_catalog(&crate::file::read(FILE, path)?)
}
