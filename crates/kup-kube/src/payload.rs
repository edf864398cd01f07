//! The files of kept patches as host steps use them: a platform patch's manifests, and the
//! binaries of a kubeadm or kubelet patch, which a step puts on its host in place of the
//! distribution's packages (each file sent over SSH, installed whole or not at all).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use kup_types::{PatchFile, PatchKind, Payload};

use crate::ops::{Ctx, Note};

/// Reads one file of a kept patch, or says why it cannot.
pub type ReadPatchFile = dyn Fn(&PatchFile) -> Result<Vec<u8>, String> + Send + Sync;

/// How many files read are kept in memory: one version's kubeadm, kubelet and kubectl go to
/// every host in turn, and each read checks the whole bundle again.
const RECENT: usize = 4;

/// Files read lately, oldest first.
type Recent = VecDeque<(PatchFile, Arc<[u8]>)>;

/// Reads a file of a patch kept in the repository (checking the bundle again as it does),
/// keeping the last few.
#[derive(Clone)]
pub struct PatchFiles {
    read: Arc<ReadPatchFile>,
    recent: Arc<Mutex<Recent>>,
}

impl fmt::Debug for PatchFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatchFiles")
    }
}

impl PatchFiles {
    pub fn new(
        read: impl Fn(&PatchFile) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> Self {
        PatchFiles {
            read: Arc::new(read),
            recent: Arc::default(),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bytes of `file`; the read and the bundle's check run off the async threads.
    pub async fn read(&self, file: &PatchFile) -> Result<Arc<[u8]>, String> {
        if let Some((_, bytes)) = self.recent().iter().find(|(f, _)| f == file) {
            return Ok(bytes.clone());
        }
        let (read, f) = (self.read.clone(), file.clone());
        let bytes: Arc<[u8]> = tokio::task::spawn_blocking(move || read(&f))
            .await
            .map_err(|e| format!("cannot read {} of {}: {e}", file.path, file.patch))??
            .into();
        let mut kept = self.recent();
        kept.push_back((file.clone(), bytes.clone()));
        if kept.len() > RECENT {
            kept.pop_front();
        }
        Ok(bytes)
    }
}

/// Puts the binaries of `kind` at `version` on `host`: a patch's payload when one delivers
/// them, else the hosts' packages (the `install_kubeadm` or `install_kubelet` template).
pub(crate) async fn install(
    ctx: &Ctx,
    host: &str,
    kind: PatchKind,
    version: kup_types::KubeVersion,
    payloads: &[Payload],
    note: &Note,
) -> Result<(), String> {
    let Some(payload) = kup_types::payload_of(payloads, kind, version) else {
        let template = match kind {
            PatchKind::Kubeadm => "install_kubeadm",
            _ => "install_kubelet",
        };
        return crate::steps::on_host(ctx, host, template, version, note).await;
    };
    let files = ctx.patch_files.as_ref().ok_or_else(|| {
        format!("a patch delivers the {kind} of {version}, but this daemon keeps no patches")
    })?;
    let entry = ctx
        .hosts
        .host(host)
        .ok_or_else(|| format!("no host {host} in the hosts file"))?;
    for f in &payload.files {
        let bytes = files.read(f).await?;
        let line = ctx
            .hosts
            .commands
            .install_file(host, &f.path, bytes.len())
            .map_err(|e| e.to_string())?;
        note.set(format!("installing {} of {} on {host}", f.path, f.patch));
        let size = bytes.len();
        kup_ssh::run_with_input(&entry.ssh, &line, bytes, ctx.command_timeout)
            .await
            .map_err(|e| e.to_string())?;
        note.said(
            host,
            format!("{} of {} installed ({size} bytes)", f.path, f.patch),
        );
    }
    Ok(())
}
