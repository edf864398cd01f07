//! The patch repository: verified bundles kept beside the store, their records in it.

use std::sync::Arc;

use jiff::Timestamp;
use kup_core::{Command, Refusal};
use kup_types::{HostPatchView, PatchKind, PatchRecord, PatchState, PatchView, Snapshot};

use crate::{Engine, EngineError, Inner, PatchRepo};

impl Engine {
    /// `sw-patch upload`: verifies the bundle (signature, every file, every path) before
    /// anything is written; the bundle is then kept in the repository and the patch recorded
    /// as `available`. A refused bundle leaves the repository and the store as they were.
    pub async fn patch_upload(&self, bytes: Vec<u8>) -> Result<PatchView, EngineError> {
        let inner = Arc::clone(&self.inner);
        // In a task of its own, like every command, so a caller that goes away cannot leave a
        // recorded patch without its bundle; verification and file I/O off the async threads.
        let id = match tokio::spawn(async move { Inner::patch_upload(&inner, bytes).await }).await {
            Ok(result) => result?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(EngineError::Stopped(e.to_string())),
        };
        self.patch(&id).await
    }

    /// `sw-patch delete`: the record and the kept bundle.
    pub async fn patch_delete(&self, id: &str) -> Result<(), EngineError> {
        self.execute(Command::PatchDelete { id: id.to_string() })
            .await?;
        if let Some(repo) = &self.inner.patch_repo {
            let _ = std::fs::remove_file(repo.bundle_path(id));
        }
        Ok(())
    }

    pub async fn patches(&self) -> Result<Vec<PatchView>, EngineError> {
        let snap = self.inner.snapshot();
        Ok(snap
            .patches
            .iter()
            .map(|p| kup_core::patches::view(&snap, p))
            .collect())
    }

    pub async fn patch(&self, id: &str) -> Result<PatchView, EngineError> {
        let snap = self.inner.snapshot();
        let p = snap
            .patch(id)
            .ok_or_else(|| Refusal::UnknownPatch(id.to_string()))?;
        Ok(kup_core::patches::view(&snap, p))
    }

    /// `sw-patch query-hosts`.
    pub async fn patch_hosts(&self) -> Result<Vec<HostPatchView>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(obs
            .hosts
            .iter()
            .map(|h| kup_core::patches::host_view(&snap, h))
            .collect())
    }
}

impl Inner {
    pub(crate) async fn patch_upload(
        self: &Arc<Self>,
        bytes: Vec<u8>,
    ) -> Result<String, EngineError> {
        let repo = self.patch_repo.as_ref().ok_or_else(|| {
            EngineError::Bundle("patch uploads are disabled: the daemon trusts no key".into())
        })?;
        let (trusted, limits, dir) = (repo.trusted.clone(), repo.limits, repo.dir.clone());
        let (record, tmp) = tokio::task::spawn_blocking(move || {
            let bundle = kup_patch::read(&bytes, &trusted, &limits)
                .map_err(|e| EngineError::Bundle(e.to_string()))?;
            let record = patch_record(&bundle.manifest, &bundle.key_id, Timestamp::now());
            // Written and synced under a unique name first: a refused upload (a duplicate id)
            // leaves nothing behind, and an accepted one replaces nothing until committed.
            let tmp = dir.join(format!(".{}.{}.tmp", record.id, uuid::Uuid::new_v4()));
            write_synced(&dir, &tmp, &bytes).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                EngineError::Repository(format!("{}: {e}", tmp.display()))
            })?;
            Ok::<_, EngineError>((record, tmp))
        })
        .await
        .map_err(|e| EngineError::Stopped(e.to_string()))??;
        let id = record.id.clone();
        let final_path = repo.bundle_path(&id);
        match self.execute(Command::PatchUpload(Box::new(record))).await {
            Ok(_) => std::fs::rename(&tmp, &final_path)
                .and_then(|()| sync_dir(&repo.dir))
                .map_err(|e| EngineError::Repository(format!("{}: {e}", final_path.display())))?,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        Ok(id)
    }
}

impl PatchRepo {
    pub(crate) fn bundle_path(&self, id: &str) -> std::path::PathBuf {
        self.dir.join(format!("{id}.patch"))
    }

    /// One payload file of a kept patch, its bundle verified again (a bundle changed on disk
    /// since its upload is refused, not used).
    pub fn read_file(&self, patch: &str, path: &str) -> Result<Vec<u8>, String> {
        let file = self.bundle_path(patch);
        let bytes =
            std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut bundle = kup_patch::read(&bytes, &self.trusted, &self.limits)
            .map_err(|e| format!("patch {patch}: {e}"))?;
        bundle
            .files
            .remove(path)
            .ok_or_else(|| format!("patch {patch} has no file {path}"))
    }
}

pub(crate) fn write_synced(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Settles the bundles a crash left as temporary files (`.ID.UUID.tmp`, written and synced
/// before the upload was committed): one whose patch the store recorded is moved into place
/// (the crash fell between the commit and the rename); any other was never accepted and goes.
pub(crate) fn clean_repository(repo: &PatchRepo, snap: &Snapshot) {
    let Ok(entries) = std::fs::read_dir(&repo.dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let id = stem.rsplit_once('.').map(|(id, _uuid)| id);
        match id {
            Some(id) if snap.patch(id).is_some() && !repo.bundle_path(id).exists() => {
                if let Err(err) = std::fs::rename(e.path(), repo.bundle_path(id))
                    .and_then(|()| sync_dir(&repo.dir))
                {
                    tracing::warn!(error = %err, patch = id, "cannot put a recorded bundle in place");
                }
            }
            _ => {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// What the store keeps of a verified bundle's manifest.
pub(crate) fn patch_record(m: &kup_patch::Manifest, key_id: &str, now: Timestamp) -> PatchRecord {
    let kind = match m.kind {
        kup_patch::PatchKind::Platform => PatchKind::Platform,
        kup_patch::PatchKind::Kubeadm => PatchKind::Kubeadm,
        kup_patch::PatchKind::Kubelet => PatchKind::Kubelet,
        kup_patch::PatchKind::Other => PatchKind::Other,
    };
    PatchRecord {
        id: m.id.clone(),
        kind,
        summary: m.summary.clone(),
        requires: m.requires.clone(),
        delivers: m.delivers,
        version_meta: m.kubernetes.as_ref().map(|k| k.version_meta()),
        networking_manifests: m
            .kubernetes
            .as_ref()
            .map(|k| k.networking_manifests.clone())
            .unwrap_or_default(),
        state: PatchState::Available,
        key_id: key_id.to_string(),
        files: m.files.iter().map(|f| f.path.clone()).collect(),
        uploaded_at: now,
        updated_at: None,
    }
}
