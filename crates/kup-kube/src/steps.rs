//! The host steps of a kubeadm cluster, over SSH (`kup_ssh`): the images pulled on each
//! control plane, a backup of each control plane's static pod manifests before it moves,
//! `kubeadm upgrade apply` on the first (after a backup of etcd and of kubeadm's configuration
//! and add-ons), `kubeadm upgrade node` on the others and on each worker, the kubelet and its
//! restart (kubeadm and the kubelet from a patch's payload when one delivers them, else from
//! the hosts' packages); on the way back, the manifests and the add-ons restored. Each command is
//! idempotent and runs under a bound; the step's effect is then read back from the API (the
//! static pods' image tags, the Node's kubeletVersion, kubeadm-config's version), not taken
//! from an exit code.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kup_ssh::recipe::Vars;
use kup_types::{KubeVersion, PatchKind, Payload, Personality};
use serde_json::json;

use crate::cache::State;
use crate::ops::{Ctx, Note};
use crate::payload::install;

/// The annotation, on the Node of the control plane that holds it, of kup's backup of etcd
/// and kubeadm's add-ons taken before the cluster left `version`.
fn cluster_backup_annotation(version: KubeVersion) -> String {
    format!("kup.io/cluster-backup-{version}")
}

/// Runs the template `name` on `host`; on failure, the command's last words. What it said
/// is kept for the event log.
pub(crate) async fn on_host(
    ctx: &Ctx,
    host: &str,
    name: &'static str,
    version: KubeVersion,
    note: &Note,
) -> Result<kup_ssh::Output, String> {
    let entry = ctx
        .hosts
        .host(host)
        .ok_or_else(|| format!("no host {host} in the hosts file"))?;
    let repository = ctx
        .shared
        .lock()
        .kubeadm()
        .and_then(|k| k.image_repository.clone())
        .unwrap_or_else(|| crate::convert::DEFAULT_REPOSITORY.to_string());
    let vars = Vars {
        version,
        from_version: running(ctx, host).unwrap_or(version),
        host,
        image_repository: &repository,
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
    note.said(host, said(name, &out));
    Ok(out)
}

/// A command that succeeded, for the event log: its template's name and its last words.
fn said(name: &str, out: &kup_ssh::Output) -> String {
    let words = out.last_words();
    if words.is_empty() {
        format!("{name}: done")
    } else {
        format!("{name}: done: {words}")
    }
}

/// What `host` runs now: its control plane's version, else its kubelet's, else the
/// cluster's as kubeadm-config says.
fn running(ctx: &Ctx, host: &str) -> Option<KubeVersion> {
    let st = ctx.shared.current();
    let obs = st.observation();
    obs.control_plane_version(host)
        .or_else(|| obs.kubelet_version(host))
        .or_else(|| st.kubeadm_version())
}

/// Waits until the cached views show `done` (the watchers bring the cluster's changes).
async fn read_back(ctx: &Ctx, what: &str, note: &Note, mut done: impl FnMut(&State) -> bool) {
    let mut rx = ctx.shared.changed.subscribe();
    loop {
        if done(&ctx.shared.current()) {
            return;
        }
        note.set(format!("waiting for {what}"));
        // A change, or a look again after a while in case one was missed.
        let _ = tokio::time::timeout(ctx.poll_interval * 5, rx.changed()).await;
    }
}

/// The images of the upgrade on every control-plane host (`kubeadm config images pull`): of
/// `version` and of every version the images the engine asks for are tagged with (each minor
/// a multi-minor upgrade steps through).
pub(crate) async fn download_images(
    ctx: &Ctx,
    version: KubeVersion,
    images: &[String],
    payloads: &[Payload],
    note: &Note,
) -> Result<(), String> {
    let mut versions: Vec<KubeVersion> = images
        .iter()
        .filter_map(|i| i.rsplit_once(':'))
        .filter_map(|(_, tag)| crate::convert::lenient_version(tag))
        .chain([version])
        .collect();
    versions.sort_unstable();
    versions.dedup();
    for h in &ctx.hosts.hosts {
        if h.personality == Personality::Controller {
            for v in &versions {
                install(ctx, &h.name.value, PatchKind::Kubeadm, *v, payloads, note).await?;
                on_host(ctx, &h.name.value, "pull_images", *v, note).await?;
            }
        }
    }
    Ok(())
}

/// The control plane of `host` to `version`: its manifests saved first (while it has not
/// moved), then the first with a backup of etcd and the add-ons and `kubeadm upgrade apply`,
/// the others with `kubeadm upgrade node`; done when its static pods run `version`.
pub(crate) async fn control_plane(
    ctx: &Ctx,
    host: &str,
    version: KubeVersion,
    first: bool,
    payloads: &[Payload],
    note: &Note,
) -> Result<(), String> {
    install(ctx, host, PatchKind::Kubeadm, version, payloads, note).await?;
    let from = running(ctx, host).filter(|v| *v < version);
    if from.is_some() {
        on_host(ctx, host, "backup", version, note).await?;
    }
    if first {
        if let Some(from) = from {
            on_host(ctx, host, "backup_cluster", version, note).await?;
            mark_cluster_backup(ctx, host, from).await?;
        }
        on_host(ctx, host, "upgrade_apply", version, note).await?;
    } else {
        on_host(ctx, host, "upgrade_node", version, note).await?;
    }
    control_plane_at(ctx, host, version, note).await;
    Ok(())
}

/// Waits until the static pods of `host` run `version`.
async fn control_plane_at(ctx: &Ctx, host: &str, version: KubeVersion, note: &Note) {
    read_back(
        ctx,
        &format!("the control plane of {host} to run {version}"),
        note,
        |st| st.observation().control_plane_version(host) == Some(version),
    )
    .await;
}

/// Records on `host`'s Node that it holds the cluster backup of `from`, for the way back.
async fn mark_cluster_backup(ctx: &Ctx, host: &str, from: KubeVersion) -> Result<(), String> {
    let patch = json!({"metadata": {"annotations": {
        cluster_backup_annotation(from): format!("{}/{from}", ctx.hosts.commands.backup_dir),
    }}});
    Api::<Node>::all(ctx.client.clone())
        .patch(host, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| format!("cannot record the backup on {host}: {e}"))
}

/// The control plane of `host` put back from the backup of its manifests taken before it
/// moved.
pub(crate) async fn restore_control_plane(
    ctx: &Ctx,
    host: &str,
    version: KubeVersion,
    note: &Note,
) -> Result<(), String> {
    on_host(ctx, host, "restore", version, note).await?;
    control_plane_at(ctx, host, version, note).await;
    Ok(())
}

/// Networking at `version`. kubeadm's `upgrade apply` on the first control plane upgrades
/// the add-ons (kube-proxy, CoreDNS) and records its version in kubeadm-config: on the way
/// up that is confirmed; on the way back (kubeadm-config newer than `version`) the add-ons
/// and kubeadm's configuration are restored from the cluster backup, on the host that holds
/// it, and confirmed the same way. Then the manifests the version's platform patch ships
/// (a CNI's, which kubeadm does not manage) are applied through the API.
pub(crate) async fn networking(
    ctx: &Ctx,
    version: KubeVersion,
    manifests: &[kup_types::PatchFile],
    note: &Note,
) -> Result<(), String> {
    kubeadm_addons(ctx, version, note).await?;
    if !manifests.is_empty() {
        let files = ctx.patch_files.as_ref().ok_or_else(|| {
            "the platform patch ships networking manifests, but this daemon keeps no patches"
                .to_string()
        })?;
        note.set(format!(
            "applying {} networking manifest file(s)",
            manifests.len()
        ));
        let n = crate::manifests::apply(&ctx.client, files, manifests).await?;
        tracing::info!(%version, objects = n, "networking manifests applied");
    }
    record_networking(ctx, version).await?;
    read_back(ctx, &format!("networking to show {version}"), note, |st| {
        st.observation().networking_version == Some(version)
    })
    .await;
    Ok(())
}

/// kubeadm's add-ons: on the way up, kubeadm moved them with the first control plane's
/// `upgrade apply` (to the version of this round of a multi-minor upgrade), which it records
/// in kubeadm-config; on the way back (kubeadm-config newer than `version`), restored from
/// the cluster backup on the host that holds it.
async fn kubeadm_addons(ctx: &Ctx, version: KubeVersion, note: &Note) -> Result<(), String> {
    let (recorded, top) = {
        let st = ctx.shared.current();
        let top = st
            .observation()
            .control_plane_pods
            .iter()
            .map(|p| p.version)
            .max();
        (st.kubeadm_version(), top)
    };
    match (recorded, top) {
        (Some(v), _) if v > version => {
            let holder = backup_holder(ctx, version).await?;
            on_host(ctx, &holder, "restore_addons", version, note).await?;
            read_back(
                ctx,
                &format!("kubeadm-config to say {version} again"),
                note,
                |st| st.kubeadm_version() == Some(version),
            )
            .await;
            Ok(())
        }
        (Some(_), Some(top)) => {
            // kubeadm records its version after the control plane moved: wait for it.
            read_back(
                ctx,
                &format!("kubeadm-config to record {top}, the highest control plane's version"),
                note,
                |st| st.kubeadm_version() >= Some(top),
            )
            .await;
            Ok(())
        }
        (found, _) => Err(format!(
            "the networking add-ons of a kubeadm cluster move with the first control plane's `kubeadm upgrade apply`, and kubeadm-config says {} (no control plane is seen, or no kubeadm-config)",
            found.map_or("no version".to_string(), |v| v.to_string())
        )),
    }
}

/// Records in the cluster (`kube-system/kup-networking`) the version kup brought
/// networking to.
async fn record_networking(ctx: &Ctx, version: KubeVersion) -> Result<(), String> {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": crate::convert::KUP_NETWORKING, "namespace": "kube-system"},
        "data": {"version": version.to_string()},
    });
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(ctx.client.clone(), "kube-system")
        .patch(
            crate::convert::KUP_NETWORKING,
            &PatchParams::apply("kup").force(),
            &Patch::Apply(&cm),
        )
        .await
        .map(drop)
        .map_err(|e| format!("cannot record networking's version: {e}"))
}

/// The control-plane host whose Node records the cluster backup of `version`.
async fn backup_holder(ctx: &Ctx, version: KubeVersion) -> Result<String, String> {
    let key = cluster_backup_annotation(version);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    for h in &ctx.hosts.hosts {
        if h.personality != Personality::Controller {
            continue;
        }
        let node = nodes
            .get_opt(&h.name.value)
            .await
            .map_err(|e| format!("cannot read node {}: {e}", h.name.value))?;
        if node
            .and_then(|n| n.metadata.annotations)
            .is_some_and(|a| a.contains_key(&key))
        {
            return Ok(h.name.value.clone());
        }
    }
    Err(format!(
        "no control-plane node records kup's backup of {version} (annotation {key}): the add-ons cannot be put back"
    ))
}

/// The kubelet of `host` to `version`: a worker's node configuration first (`kubeadm upgrade
/// node`), then the kubelet and kubectl (a patch's, or the package) and a restart; done when
/// the Node reports `version`.
pub(crate) async fn kubelet(
    ctx: &Ctx,
    host: &str,
    version: KubeVersion,
    payloads: &[Payload],
    note: &Note,
) -> Result<(), String> {
    let worker = ctx
        .hosts
        .host(host)
        .is_some_and(|h| h.personality != Personality::Controller);
    if worker {
        install(ctx, host, PatchKind::Kubeadm, version, payloads, note).await?;
        on_host(ctx, host, "upgrade_node", version, note).await?;
    }
    install(ctx, host, PatchKind::Kubelet, version, payloads, note).await?;
    on_host(ctx, host, "restart_kubelet", version, note).await?;
    read_back(
        ctx,
        &format!("the kubelet of {host} to report {version}"),
        note,
        |st| st.observation().kubelet_version(host) == Some(version),
    )
    .await;
    Ok(())
}

/// The default bound of one command: `kubeadm upgrade apply` on a slow host takes minutes;
/// the engine's deadline of the step stops it sooner when it is shorter.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);
