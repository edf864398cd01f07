//! The patch repository's state machine: upload, apply, remove, delete, host-install, and
//! what applied patches mean for the upgrade (the catalog, and the binaries a step needs).
//!
//! `available` after upload → `partial-apply` once applied, until every host that needs the
//! patch has installed it → `applied`; remove goes back through `partial-remove` (until every
//! host has uninstalled it) to `available`; delete only from `available`.

use kup_types::{
    HostInfo, InstallWrite, KubeVersion, Observation, PatchFile, PatchInstall, PatchKind,
    PatchRecord, PatchState, PatchWrite, Payload, Personality, Snapshot, VersionMeta,
};

use crate::refusal::Refusal;

/// Whether `host` needs `patch` installed: kubeadm on controllers, kubelet on every host with
/// a kubelet, everything else everywhere.
pub fn needed_on(patch: &PatchRecord, host: &HostInfo) -> bool {
    match patch.kind {
        PatchKind::Kubeadm => host.personality == Personality::Controller,
        PatchKind::Kubelet => host.personality.has_kubelet(),
        PatchKind::Platform | PatchKind::Other => true,
    }
}

/// The version metadata that applied platform patches add to the catalog.
pub fn catalog_additions(snap: &Snapshot) -> Vec<VersionMeta> {
    snap.patches
        .iter()
        .filter(|p| p.kind == PatchKind::Platform && p.state == PatchState::Applied)
        .filter_map(|p| p.version_meta.clone())
        .collect()
}

/// The networking manifests that the applied platform patch of `version` ships.
pub fn networking_manifests(snap: &Snapshot, version: KubeVersion) -> Vec<PatchFile> {
    snap.patches
        .iter()
        .filter(|p| p.kind == PatchKind::Platform && p.state == PatchState::Applied)
        .filter(|p| {
            p.version_meta
                .as_ref()
                .is_some_and(|m| m.version == version)
        })
        .flat_map(|p| {
            p.networking_manifests.iter().map(|path| PatchFile {
                patch: p.id.clone(),
                path: path.clone(),
            })
        })
        .collect()
}

/// The binaries that applied kubeadm or kubelet patches deliver, of each of `kinds` and
/// `versions` (a version no patch delivers comes from the hosts' own packages).
pub fn payloads(snap: &Snapshot, kinds: &[PatchKind], versions: &[KubeVersion]) -> Vec<Payload> {
    let mut out = Vec::new();
    for &version in versions {
        for &kind in kinds {
            let applied = snap.patches.iter().find(|p| {
                p.kind == kind
                    && p.delivers == Some(version)
                    && matches!(p.state, PatchState::Applied | PatchState::PartialApply)
            });
            if let Some(p) = applied {
                out.push(Payload {
                    kind,
                    version,
                    files: p
                        .files
                        .iter()
                        .map(|path| PatchFile {
                            patch: p.id.clone(),
                            path: path.clone(),
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

/// The version a patch brings: what a platform patch describes, or what a kubeadm/kubelet
/// patch delivers.
pub fn version_of(p: &PatchRecord) -> Option<KubeVersion> {
    p.delivers.or(p.version_meta.as_ref().map(|m| m.version))
}

fn find<'a>(snap: &'a Snapshot, id: &str) -> Result<&'a PatchRecord, Refusal> {
    snap.patch(id)
        .ok_or_else(|| Refusal::UnknownPatch(id.to_string()))
}

/// The state a patch settles in from what hosts have installed: applying until every host
/// that needs it has it, removing until none has it.
pub fn settled_state(
    p: &PatchRecord,
    snap_installs: &[PatchInstall],
    obs: &Observation,
) -> PatchState {
    let has = |h: &HostInfo| {
        snap_installs
            .iter()
            .any(|i| i.patch_id == p.id && i.hostname == h.hostname)
    };
    match p.state {
        PatchState::PartialApply | PatchState::Applied => {
            if obs.hosts.iter().filter(|h| needed_on(p, h)).all(has) {
                PatchState::Applied
            } else {
                PatchState::PartialApply
            }
        }
        PatchState::PartialRemove | PatchState::Available => {
            if obs.hosts.iter().any(has) {
                PatchState::PartialRemove
            } else {
                PatchState::Available
            }
        }
    }
}

/// `sw-patch upload`: the bundle was verified by the caller; the id must be new.
pub fn upload(snap: &Snapshot, record: &PatchRecord) -> Result<Vec<PatchWrite>, Refusal> {
    if snap.patch(&record.id).is_some() {
        return Err(Refusal::PatchExists(record.id.clone()));
    }
    let mut r = record.clone();
    r.state = PatchState::Available;
    Ok(vec![PatchWrite::Put(r)])
}

/// `catalog` is the version catalog as it is now (the cluster's own plus applied platform
/// patches).
pub fn apply(
    snap: &Snapshot,
    obs: &Observation,
    catalog: &crate::Catalog,
    id: &str,
    now: jiff::Timestamp,
) -> Result<Vec<PatchWrite>, Refusal> {
    let p = find(snap, id)?;
    if p.state != PatchState::Available {
        return Err(Refusal::PatchNotAvailable {
            id: id.into(),
            state: p.state,
        });
    }
    if let Some(meta) = &p.version_meta {
        one_delivery(snap, catalog, p, meta.version)?;
    }
    // Likewise the kubeadm or the kubelet of a version: one patch, or a host step could
    // install one and run the other's.
    if let (PatchKind::Kubeadm | PatchKind::Kubelet, Some(v)) = (p.kind, p.delivers)
        && let Some(q) = snap.patches.iter().find(|q| {
            q.id != p.id
                && q.kind == p.kind
                && q.delivers == Some(v)
                && q.state != PatchState::Available
        })
    {
        return Err(Refusal::BinariesDeliveredByPatch {
            id: id.into(),
            kind: p.kind,
            version: v,
            by: q.id.clone(),
        });
    }
    for req in &p.requires {
        let ok = snap
            .patch(req)
            .is_some_and(|r| matches!(r.state, PatchState::Applied | PatchState::PartialApply));
        if !ok {
            return Err(Refusal::PatchRequires {
                id: id.into(),
                required: req.clone(),
            });
        }
    }
    if p.kind == PatchKind::Kubelet {
        let version = p.delivers.expect("a kubelet patch delivers a version");
        let ready = snap
            .upgrade
            .as_ref()
            .is_some_and(|u| u.to_version == version && crate::machine::kubelets_open(obs, u));
        if !ready {
            return Err(Refusal::KubeletPatchTooEarly {
                id: id.into(),
                version,
            });
        }
    }
    let mut r = p.clone();
    r.state = PatchState::PartialApply;
    r.state = settled_state(&r, &snap.installs, obs);
    r.updated_at = Some(now);
    Ok(vec![PatchWrite::Put(r)])
}

/// A version's metadata comes from exactly one place: the cluster's catalog or one platform
/// patch. A second one would silently rewrite its upgrade paths and required patches, and
/// could then never be removed.
fn one_delivery(
    snap: &Snapshot,
    catalog: &crate::Catalog,
    p: &PatchRecord,
    version: KubeVersion,
) -> Result<(), Refusal> {
    let other = snap.patches.iter().find(|q| {
        q.id != p.id
            && q.kind == PatchKind::Platform
            && q.state != PatchState::Available
            && q.version_meta
                .as_ref()
                .is_some_and(|m| m.version == version)
    });
    if let Some(q) = other {
        return Err(Refusal::VersionDeliveredByPatch {
            id: p.id.clone(),
            version,
            by: q.id.clone(),
        });
    }
    if catalog.get(version).is_some() {
        return Err(Refusal::VersionAlreadyKnown {
            id: p.id.clone(),
            version,
        });
    }
    Ok(())
}

pub fn remove(
    snap: &Snapshot,
    obs: &Observation,
    id: &str,
    now: jiff::Timestamp,
) -> Result<Vec<PatchWrite>, Refusal> {
    let p = find(snap, id)?;
    if !matches!(p.state, PatchState::Applied | PatchState::PartialApply) {
        return Err(Refusal::PatchNotApplied {
            id: id.into(),
            state: p.state,
        });
    }
    if let Some(dependent) = snap
        .patches
        .iter()
        .find(|q| q.requires.contains(&p.id) && !matches!(q.state, PatchState::Available))
    {
        return Err(Refusal::PatchRequiredBy {
            id: id.into(),
            dependent: dependent.id.clone(),
        });
    }
    if let (Some(u), Some(v)) = (&snap.upgrade, version_of(p))
        && u.to_version == v
    {
        return Err(Refusal::PatchInUse {
            id: id.into(),
            version: v,
        });
    }
    // Taking away the metadata or binaries of what runs would leave the cluster on a version
    // the platform no longer knows.
    if let Some(v) = version_of(p)
        && (crate::catalog::running_versions(obs).contains(&v)
            || snap.upgrade.as_ref().is_some_and(|u| u.from_version == v))
    {
        return Err(Refusal::PatchRunning {
            id: id.into(),
            version: v,
        });
    }
    let mut r = p.clone();
    r.state = PatchState::PartialRemove;
    r.state = settled_state(&r, &snap.installs, obs);
    r.updated_at = Some(now);
    Ok(vec![PatchWrite::Put(r)])
}

pub fn delete(snap: &Snapshot, id: &str) -> Result<Vec<PatchWrite>, Refusal> {
    let p = find(snap, id)?;
    if p.state != PatchState::Available {
        return Err(Refusal::PatchNotRemoved {
            id: id.into(),
            state: p.state,
        });
    }
    // An upgrade in progress still needs its patches (the kubelet patch waits, available,
    // until the kubelet phase).
    if let (Some(u), Some(v)) = (&snap.upgrade, version_of(p))
        && u.to_version == v
    {
        return Err(Refusal::PatchInUse {
            id: id.into(),
            version: v,
        });
    }
    Ok(vec![PatchWrite::Delete(id.into())])
}

/// `sw-patch host-install HOST`: installs what the host needs of the applied patches and
/// uninstalls what is being removed; the patches' states follow.
pub fn host_install(
    snap: &Snapshot,
    obs: &Observation,
    host: &HostInfo,
    now: jiff::Timestamp,
) -> (Vec<InstallWrite>, Vec<PatchWrite>) {
    let mut installs = Vec::new();
    for p in &snap.patches {
        let on = PatchInstall {
            patch_id: p.id.clone(),
            hostname: host.hostname.clone(),
        };
        let has = snap.installs.contains(&on);
        match p.state {
            PatchState::PartialApply | PatchState::Applied if needed_on(p, host) && !has => {
                installs.push(InstallWrite::Add(on))
            }
            PatchState::PartialRemove | PatchState::Available if has => {
                installs.push(InstallWrite::Remove(on))
            }
            _ => {}
        }
    }
    let mut after = snap.clone();
    after.apply(&kup_types::WriteBatch {
        installs: installs.clone(),
        ..Default::default()
    });
    let patches = snap
        .patches
        .iter()
        .filter_map(|p| {
            let state = settled_state(p, &after.installs, obs);
            (state != p.state).then(|| {
                let mut r = p.clone();
                r.state = state;
                r.updated_at = Some(now);
                PatchWrite::Put(r)
            })
        })
        .collect();
    (installs, patches)
}

/// Whether a host has every applied patch it needs and nothing that is being removed.
pub fn patch_current(snap: &Snapshot, host: &HostInfo) -> bool {
    snap.patches.iter().all(|p| {
        let has = snap.installed(&p.id, &host.hostname);
        match p.state {
            PatchState::PartialApply | PatchState::Applied => has || !needed_on(p, host),
            PatchState::PartialRemove | PatchState::Available => !has,
        }
    })
}

/// Patches the start of an upgrade to `meta` is waiting for: not applied, not uploaded.
pub fn missing_for_start(snap: &Snapshot, meta: &VersionMeta) -> Option<Refusal> {
    let not_applied: Vec<String> = meta
        .applied_patches
        .iter()
        .filter(|id| {
            snap.patch(id)
                .is_none_or(|p| p.state != PatchState::Applied)
        })
        .cloned()
        .collect();
    if !not_applied.is_empty() {
        return Some(Refusal::PatchesNotApplied(not_applied));
    }
    let not_uploaded: Vec<String> = meta
        .available_patches
        .iter()
        .filter(|id| snap.patch(id).is_none())
        .cloned()
        .collect();
    (!not_uploaded.is_empty()).then_some(Refusal::PatchesNotAvailable(not_uploaded))
}

/// A host step needs the binaries of the target version on that host: if a patch of `kind`
/// delivers `version`, it must be installed there.
pub fn binaries_missing(
    snap: &Snapshot,
    kind: PatchKind,
    version: KubeVersion,
    host: &str,
) -> Option<Refusal> {
    let p = snap
        .patches
        .iter()
        .find(|p| p.kind == kind && p.delivers == Some(version))?;
    (!snap.installed(&p.id, host)).then(|| Refusal::BinariesNotInstalled {
        host: host.into(),
        kind,
        patch: p.id.clone(),
        version,
        applied: matches!(p.state, PatchState::Applied | PatchState::PartialApply),
    })
}

pub fn view(snap: &Snapshot, p: &PatchRecord) -> kup_types::PatchView {
    kup_types::PatchView {
        patch_id: p.id.clone(),
        kind: p.kind,
        summary: p.summary.clone(),
        state: p.state,
        requires: p.requires.clone(),
        version: version_of(p),
        key_id: p.key_id.clone(),
        files: p.files.clone(),
        installed_on: snap
            .installs
            .iter()
            .filter(|i| i.patch_id == p.id)
            .map(|i| i.hostname.clone())
            .collect(),
        uploaded_at: p.uploaded_at,
        updated_at: p.updated_at,
    }
}

pub fn host_view(snap: &Snapshot, h: &HostInfo) -> kup_types::HostPatchView {
    kup_types::HostPatchView {
        hostname: h.hostname.clone(),
        personality: h.personality,
        patch_current: patch_current(snap, h),
        installed: snap
            .installs
            .iter()
            .filter(|i| i.hostname == h.hostname)
            .map(|i| i.patch_id.clone())
            .collect(),
    }
}

/// What a host still lacks for an upgrade to `version`: the patches the version's metadata
/// names that are not uploaded ([`not_uploaded_for`]), and the kubeadm patch (controllers) not
/// installed ([`not_installed_on`]). A kubelet patch only needs to be available until its
/// phase, so an uploaded one is enough.
pub fn missing_on_host(
    snap: &Snapshot,
    host: &HostInfo,
    version: KubeVersion,
    meta: Option<&VersionMeta>,
) -> Vec<String> {
    let mut missing = not_uploaded_for(snap, host, meta);
    missing.extend(not_installed_on(snap, host, version));
    missing
}

/// The patches the version's metadata names that are not uploaded: nothing kup can do about
/// them. Hosts without a kubelet run no Kubernetes binaries and need none.
pub fn not_uploaded_for(
    snap: &Snapshot,
    host: &HostInfo,
    meta: Option<&VersionMeta>,
) -> Vec<String> {
    let named = meta
        .filter(|_| host.personality.has_kubelet())
        .map(|m| m.applied_patches.iter().chain(&m.available_patches));
    named
        .into_iter()
        .flatten()
        .filter(|id| snap.patch(id).is_none())
        .map(|id| format!("{id} (not uploaded)"))
        .collect()
}

/// The kubeadm patch of `version` not installed on a host that needs it (an upgrade strategy
/// installs it itself).
pub fn not_installed_on(snap: &Snapshot, host: &HostInfo, version: KubeVersion) -> Vec<String> {
    snap.patches
        .iter()
        .filter(|p| p.kind == PatchKind::Kubeadm && p.delivers == Some(version))
        .filter(|p| needed_on(p, host) && !snap.installed(&p.id, &host.hostname))
        .map(|p| format!("{} ({} of {version}, not installed here)", p.id, p.kind))
        .collect()
}
