//! The host steps of a kubeadm cluster, over SSH (`kup_ssh`): the images pulled on each
//! control plane, `kubeadm upgrade apply` on the first (after a backup of etcd and the static
//! pod manifests), `kubeadm upgrade node` on the others and on each worker, the kubelet
//! package and its restart. Each command is idempotent and runs under a bound; the step's
//! effect is then read back from the API (the static pods' image tags, the Node's
//! kubeletVersion), not taken from an exit code.

use std::time::Duration;

use kup_ssh::recipe::Vars;
use kup_types::{KubeVersion, Personality};

use crate::ops::{Ctx, Note};

/// Runs the template `name` on `host`; on failure, the command's last words.
async fn on_host(
    ctx: &Ctx,
    host: &str,
    name: &'static str,
    version: KubeVersion,
    note: &Note,
) -> Result<(), String> {
    let entry = ctx
        .hosts
        .host(host)
        .ok_or_else(|| format!("no host {host} in the hosts file"))?;
    let vars = Vars {
        version,
        // Before the first control plane moves, kubeadm-config names the running version.
        from_version: ctx.shared.lock().kubeadm_version().unwrap_or(version),
        host,
    };
    let line = ctx
        .hosts
        .commands
        .render(name, &vars)
        .map_err(|e| e.to_string())?;
    note.set(format!("{name} on {host}: {line}"));
    let out = kup_ssh::run(&entry.ssh, &line, ctx.command_timeout)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(host, step = name, output = %out.stdout.trim_end(), "host step done");
    Ok(())
}

/// Waits until the cached views show `done` (the watchers bring the cluster's changes).
async fn read_back(
    ctx: &Ctx,
    what: &str,
    note: &Note,
    mut done: impl FnMut(&kup_types::Observation) -> bool,
) {
    let mut rx = ctx.shared.changed.subscribe();
    loop {
        if done(ctx.shared.current().observation()) {
            return;
        }
        note.set(format!("waiting for {what}"));
        // A change, or a look again after a while in case one was missed.
        let _ = tokio::time::timeout(ctx.poll_interval * 5, rx.changed()).await;
    }
}

/// The images of `version` on every control-plane host (`kubeadm config images pull`).
pub(crate) async fn download_images(
    ctx: &Ctx,
    version: KubeVersion,
    note: &Note,
) -> Result<(), String> {
    for h in &ctx.hosts.hosts {
        if h.personality == Personality::Controller {
            on_host(ctx, &h.name.value, "install_kubeadm", version, note).await?;
            on_host(ctx, &h.name.value, "pull_images", version, note).await?;
        }
    }
    Ok(())
}

/// The control plane of `host` to `version`: the first with a backup and `kubeadm upgrade
/// apply`, the others with `kubeadm upgrade node`; done when its static pods run `version`.
pub(crate) async fn control_plane(
    ctx: &Ctx,
    host: &str,
    version: KubeVersion,
    first: bool,
    note: &Note,
) -> Result<(), String> {
    on_host(ctx, host, "install_kubeadm", version, note).await?;
    if first {
        on_host(ctx, host, "backup", version, note).await?;
        on_host(ctx, host, "upgrade_apply", version, note).await?;
    } else {
        on_host(ctx, host, "upgrade_node", version, note).await?;
    }
    read_back(
        ctx,
        &format!("the control plane of {host} to run {version}"),
        note,
        |o| o.control_plane_version(host) == Some(version),
    )
    .await;
    Ok(())
}

/// The control plane of `host` put back from the backup taken before the first moved.
pub(crate) async fn restore_control_plane(
    ctx: &Ctx,
    host: &str,
    version: KubeVersion,
    note: &Note,
) -> Result<(), String> {
    on_host(ctx, host, "restore", version, note).await?;
    read_back(
        ctx,
        &format!("the control plane of {host} to run {version} again"),
        note,
        |o| o.control_plane_version(host) == Some(version),
    )
    .await;
    Ok(())
}

/// The kubelet of `host` to `version`: a worker's node configuration first (`kubeadm upgrade
/// node`), then the package and a restart; done when the Node reports `version`.
pub(crate) async fn kubelet(
    ctx: &Ctx,
    host: &str,
    version: KubeVersion,
    note: &Note,
) -> Result<(), String> {
    let worker = ctx
        .hosts
        .host(host)
        .is_some_and(|h| h.personality != Personality::Controller);
    if worker {
        on_host(ctx, host, "install_kubeadm", version, note).await?;
        on_host(ctx, host, "upgrade_node", version, note).await?;
    }
    on_host(ctx, host, "install_kubelet", version, note).await?;
    on_host(ctx, host, "restart_kubelet", version, note).await?;
    read_back(
        ctx,
        &format!("the kubelet of {host} to report {version}"),
        note,
        |o| o.kubelet_version(host) == Some(version),
    )
    .await;
    Ok(())
}

/// The default bound of one command: `kubeadm upgrade apply` on a slow host takes minutes;
/// the engine's deadline of the step stops it sooner when it is shorter.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);
