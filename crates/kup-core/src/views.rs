//! Read models: the store's rows joined with what the cluster shows.

use kup_types::{
    Alarm, HostInfo, HostUpgradeRecord, IHost, KubeHostUpgradeView, Observation, Operation,
    Personality, Severity, Snapshot,
};

/// Rows of `kube-host-upgrade-list`, sorted by id.
pub fn host_upgrades(snap: &Snapshot, obs: &Observation) -> Vec<KubeHostUpgradeView> {
    snap.hosts
        .iter()
        .filter_map(|r| host_upgrade(r, obs))
        .collect()
}

/// One row of `kube-host-upgrade-list`: the stored row with the versions the host runs;
/// `None` for a host the cluster no longer shows.
pub fn host_upgrade(r: &HostUpgradeRecord, obs: &Observation) -> Option<KubeHostUpgradeView> {
    let h = obs.host(&r.hostname)?;
    let control_plane_version = if h.personality == Personality::Controller {
        obs.control_plane_version(&h.hostname)
            .map_or("unknown".into(), |v| v.to_string())
    } else {
        "N/A".into()
    };
    let kubelet_version = if h.personality.has_kubelet() {
        obs.kubelet_version(&h.hostname)
            .map_or("unknown".into(), |v| v.to_string())
    } else {
        "N/A".into()
    };
    Some(KubeHostUpgradeView {
        id: r.id,
        uuid: r.uuid.clone(),
        host_id: r.host_id,
        hostname: r.hostname.clone(),
        personality: h.personality,
        target_version: r.target_version.map(|v| v.to_string()),
        status: r.status.map(|s| s.to_string()),
        control_plane_version,
        kubelet_version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

pub const UPGRADE_IN_PROGRESS_ALARM: &str = "900.007";

/// The cluster's alarms plus kup's own: "Kubernetes upgrade in progress" exists exactly while
/// an upgrade row does, and the strategy's (900.401 applying, 900.402 aborting, 900.403
/// failed) exactly while it is in that state, so they can never be left behind or go missing.
pub fn alarms(snap: &Snapshot, obs: &Observation) -> Vec<Alarm> {
    let mut out = obs.alarms.clone();
    if let Some(u) = &snap.upgrade {
        out.push(Alarm {
            uuid: format!("{}-900007", u.uuid),
            alarm_id: UPGRADE_IN_PROGRESS_ALARM.into(),
            entity_instance_id: "host=controller".into(),
            reason_text: "Kubernetes upgrade in progress.".into(),
            severity: Severity::Minor,
            management_affecting: false,
            timestamp: u.created_at,
        });
    }
    if let Some(s) = &snap.strategy {
        use kup_types::StrategyState as T;
        let alarm = match s.state {
            T::Applying => Some(("900.401", "in progress", Severity::Major)),
            T::Aborting => Some(("900.402", "aborting", Severity::Major)),
            T::ApplyFailed | T::ApplyTimeout | T::AbortFailed | T::AbortTimeout => {
                Some(("900.403", "failed", Severity::Critical))
            }
            _ => None,
        };
        if let Some((id, what, severity)) = alarm {
            out.push(Alarm {
                uuid: format!("{}-{}", s.uuid, id.replace('.', "")),
                alarm_id: id.into(),
                entity_instance_id: "orchestration=kube-upgrade".into(),
                reason_text: format!("Kubernetes upgrade auto-apply {what}"),
                severity,
                management_affecting: true,
                timestamp: s.updated_at.unwrap_or(s.created_at),
            });
        }
    }
    out
}

/// A host as the sysinv API shows it; its timestamps are those of its upgrade row, the record
/// of when kup first saw the host.
/// One host as sysinv shows it. Its task is the cluster's or, while kup's record says a lock,
/// unlock or swact of it still runs, that action's (a cluster may show an action ended before
/// kup has recorded its end): a client that waits for the task to clear (`--wait`) then finds
/// the host free for its next command.
pub fn ihost(h: &HostInfo, snap: &Snapshot) -> IHost {
    let row = snap.host(&h.hostname);
    let recorded = || {
        snap.operations.iter().find_map(|o| match &o.op {
            Operation::Lock { host, .. } if *host == h.hostname => Some("Locking"),
            Operation::Unlock { host } if *host == h.hostname => Some("Unlocking"),
            Operation::Swact { host } if *host == h.hostname => Some("Swacting"),
            _ => None,
        })
    };
    let task = h.task.clone().or_else(|| recorded().map(str::to_string));
    let capabilities = if h.personality == Personality::Controller {
        let role = if h.active_controller {
            "Controller-Active"
        } else {
            "Controller-Standby"
        };
        serde_json::json!({ "Personality": role })
    } else {
        serde_json::json!({})
    };
    IHost {
        id: h.id,
        uuid: h.uuid.clone(),
        hostname: h.hostname.clone(),
        personality: h.personality,
        subfunctions: h.subfunctions.join(","),
        administrative: h.administrative,
        operational: h.operational,
        availability: h.availability,
        task,
        active_controller: h.active_controller,
        capabilities,
        roles: h.roles.clone(),
        peers: None,
        install_state: Some("completed".into()),
        install_state_info: None,
        created_at: row.map_or(jiff::Timestamp::UNIX_EPOCH, |r| r.created_at),
        updated_at: row.and_then(|r| r.updated_at),
        kube_host_upgrade: None,
    }
}

/// `kup info`: the running version, or the transition in progress, and every host's versions.
pub fn info(snap: &Snapshot, obs: &Observation) -> kup_types::ClusterInfo {
    let (single, from, to) = info_versions(snap, obs);
    let show = |v: Option<kup_types::KubeVersion>| v.map_or("N/A".to_string(), |v| v.to_string());
    kup_types::ClusterInfo {
        safety_audit: None,
        cluster_version: single,
        transitioning_from: from,
        transitioning_to: to,
        hosts: obs
            .hosts
            .iter()
            .map(|h| kup_types::HostVersions {
                hostname: h.hostname.clone(),
                personality: h.personality,
                roles: h.roles.clone(),
                control_plane_version: show(obs.control_plane_version(&h.hostname)),
                kubelet_version: show(obs.kubelet_version(&h.hostname)),
            })
            .collect(),
    }
}

/// The one version everything runs, or the transition in progress (from the lowest running
/// version, or the upgrade's from-version, to the upgrade's target or the highest running
/// version).
pub fn info_versions(
    snap: &Snapshot,
    obs: &Observation,
) -> (
    Option<kup_types::KubeVersion>,
    Option<kup_types::KubeVersion>,
    Option<kup_types::KubeVersion>,
) {
    let running = crate::catalog::running_versions(obs);
    let (lowest, highest) = (running.first().copied(), running.last().copied());
    let transition = match &snap.upgrade {
        // Complete (everything runs the target) or aborted (everything back at the
        // from-version): the row only waits to be deleted.
        Some(u)
            if matches!(
                u.state,
                kup_types::KubeUpgradeState::UpgradeComplete
                    | kup_types::KubeUpgradeState::UpgradeAborted
            ) && running.len() == 1 =>
        {
            None
        }
        Some(u) => Some((
            lowest.unwrap_or(u.from_version).min(u.from_version),
            u.to_version,
        )),
        None if running.len() > 1 => lowest.zip(highest),
        None => None,
    };
    let single = (transition.is_none() && running.len() == 1)
        .then_some(lowest)
        .flatten();
    (single, transition.map(|t| t.0), transition.map(|t| t.1))
}
