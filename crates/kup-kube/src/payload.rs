//! The files of kept patches as host steps use them: a platform patch's manifests, and the
//! binaries of a kubeadm or kubelet patch, which a step puts on its host in place of the
//! distribution's packages (each file sent over SSH, installed whole or not at all).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use kup_types::{PatchFile, PatchKind, Payload};

use crate::ops::{Ctx, Note};
use crate::steps::on_host;

/// Reads one file of a kept patch, or says why it cannot.
pub type ReadPatchFile = dyn Fn(&PatchFile) -> Result<Vec<u8>, String> + Send + Sync;

/// How many files read are kept in memory: one version's kubeadm, kubelet and kubectl go to
/// every host in turn, and each read checks the whole bundle again.
const RECENT: usize = 4;

/// Files read lately, oldest first.
type Recent = VecDeque<(PatchFile, Bytes)>;

/// Reads a file of a patch kept in the repository (checking the bundle again as it does),
/// keeping the last few.
#[derive(Clone)]
pub struct PatchFiles {
    read: Arc<ReadPatchFile>,
    recent: Arc<Mutex<Recent>>,
    /// One read at a time: the steps of several hosts that want the same file wait for the
    /// first one's read rather than each reading (and holding) the bundle.
    reading: Arc<tokio::sync::Mutex<()>>,
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
            reading: Arc::default(),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bytes of `file`; the read and the bundle's check run off the async threads.
    pub async fn read(&self, file: &PatchFile) -> Result<Bytes, String> {
        let kept = |this: &Self| {
            this.recent()
                .iter()
                .find(|(f, _)| f == file)
                .map(|(_, b)| b.clone())
        };
        if let Some(bytes) = kept(self) {
            return Ok(bytes);
        }
        let _reading = self.reading.lock().await;
        if let Some(bytes) = kept(self) {
            return Ok(bytes);
        }
        let (read, f) = (self.read.clone(), file.clone());
        let bytes = Bytes::from(
            tokio::task::spawn_blocking(move || read(&f))
                .await
                .map_err(|e| format!("cannot read {} of {}: {e}", file.path, file.patch))??,
        );
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
    let (template, check) = match kind {
        PatchKind::Kubeadm => ("install_kubeadm", "kubeadm_version"),
        _ => ("install_kubelet", "kubelet_version"),
    };
    match kup_types::payload_of(payloads, kind, version) {
        Some(payload) => send(ctx, host, kind, version, payload, note).await?,
        None => drop(on_host(ctx, host, template, version, note).await?),
    }
    // Whichever way it came, the step runs only with the binary of its version.
    let out = on_host(ctx, host, check, version, note).await?;
    let said = out
        .stdout
        .split_whitespace()
        .any(|w| w == version.to_string());
    if !said {
        return Err(format!(
            "after installing the {kind} of {version} on {host}, `{check}` says {:?}",
            out.stdout.trim()
        ));
    }
    Ok(())
}

/// Sends the files of `payload` to `host`.
async fn send(
    ctx: &Ctx,
    host: &str,
    kind: PatchKind,
    version: kup_types::KubeVersion,
    payload: &Payload,
    note: &Note,
) -> Result<(), String> {
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
