//! Builders shared by the kup-core integration tests: compact descriptions in, the kup-types
//! values the core functions take out.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use jiff::Timestamp;
use kup_core::Catalog;
use kup_types::{
    AdminState, Alarm, Application, Availability, Capacity, ControlPlanePod, HostInfo,
    HostUpgradeRecord, KubeUpgradeRecord, KubeUpgradeState, KubeVersion, NodeInfo, Observation,
    OperState, Personality, Severity, Snapshot, SystemType, VersionMeta,
};

/// `(hostname, personality, control-plane version, kubelet version)`.
pub type HostSpec<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// `(version, upgrade_from)`.
pub type MetaSpec<'a> = (&'a str, &'a [&'a str]);

pub const CP_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

pub fn v(s: &str) -> KubeVersion {
    KubeVersion::parse(s).unwrap_or_else(|e| panic!("bad test version {s:?}: {e}"))
}

/// An observation in which every host is unlocked/enabled/available. A host with a
/// control-plane version gets the three control-plane pods at that version; a host with a
/// kubelet version gets a ready node. The first controller is the active one.
pub fn obs(hosts: &[HostSpec<'_>]) -> Observation {
    let mut o = Observation {
        system_type: if hosts.len() == 1 {
            SystemType::AioSimplex
        } else {
            SystemType::Standard
        },
        hosts: Vec::new(),
        nodes: Vec::new(),
        control_plane_pods: Vec::new(),
        alarms: Vec::new(),
        applications: Vec::new(),
        images: Vec::new(),
        networking_version: None,
        api_usage: Vec::new(),
        index: Default::default(),
    };
    for (i, (name, personality, cp, kubelet)) in hosts.iter().enumerate() {
        let personality: Personality = personality
            .parse()
            .unwrap_or_else(|e| panic!("bad test personality: {e}"));
        let first_controller =
            personality == Personality::Controller && o.controllers().next().is_none();
        o.hosts.push(HostInfo {
            id: u32::try_from(i + 1).expect("few hosts"),
            uuid: format!("uuid-{name}"),
            hostname: name.to_string(),
            personality,
            subfunctions: vec![personality.to_string()],
            roles: Vec::new(),
            administrative: AdminState::Unlocked,
            operational: OperState::Enabled,
            availability: Availability::Available,
            task: None,
            active_controller: first_controller,
            capacity: Capacity::default(),
            disk_free_gib: 100,
        });
        if let Some(cp) = cp {
            for component in CP_COMPONENTS {
                o.control_plane_pods.push(ControlPlanePod {
                    host: name.to_string(),
                    component: component.to_string(),
                    version: v(cp),
                    ready: true,
                });
            }
        }
        if let Some(kubelet) = kubelet {
            o.nodes.push(NodeInfo {
                name: name.to_string(),
                ready: true,
                unschedulable: false,
                kubelet_version: v(kubelet),
                labels: Default::default(),
                taints: Vec::new(),
            });
        }
    }
    o
}

/// Two controllers, two workers and a storage host, everything at `version`.
pub fn standard(version: &str) -> Observation {
    let at = Some(version);
    obs(&[
        ("controller-0", "controller", at, at),
        ("controller-1", "controller", at, at),
        ("worker-0", "worker", None, at),
        ("worker-1", "worker", None, at),
        ("storage-0", "storage", None, None),
    ])
}

pub fn host_mut<'a>(o: &'a mut Observation, name: &str) -> &'a mut HostInfo {
    o.hosts
        .iter_mut()
        .find(|h| h.hostname == name)
        .unwrap_or_else(|| panic!("no host {name}"))
}

pub fn node_mut<'a>(o: &'a mut Observation, name: &str) -> &'a mut NodeInfo {
    o.nodes
        .iter_mut()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

pub fn pod_mut<'a>(o: &'a mut Observation, host: &str, component: &str) -> &'a mut ControlPlanePod {
    o.control_plane_pods
        .iter_mut()
        .find(|p| p.host == host && p.component == component)
        .unwrap_or_else(|| panic!("no {component} on {host}"))
}

pub fn alarm(id: &str, entity: &str, management_affecting: bool) -> Alarm {
    Alarm {
        uuid: format!("alarm-{id}-{entity}"),
        alarm_id: id.to_string(),
        entity_instance_id: entity.to_string(),
        reason_text: format!("test alarm {id}"),
        severity: if management_affecting {
            Severity::Major
        } else {
            Severity::Minor
        },
        management_affecting,
        timestamp: Timestamp::UNIX_EPOCH,
    }
}

pub fn app(name: &str, status: &str, min: Option<&str>, max: Option<&str>) -> Application {
    Application {
        name: name.to_string(),
        version: "1.0-1".to_string(),
        status: status.to_string(),
        k8s_min: min.map(v),
        k8s_max: max.map(v),
    }
}

pub fn meta(version: &str, upgrade_from: &[&str]) -> VersionMeta {
    VersionMeta {
        version: v(version),
        upgrade_from: upgrade_from.iter().copied().map(v).collect(),
        downgrade_to: Vec::new(),
        applied_patches: Vec::new(),
        available_patches: Vec::new(),
        images: VersionMeta::default_images(v(version)),
    }
}

pub fn catalog(metas: &[MetaSpec<'_>]) -> Catalog {
    Catalog::new(metas.iter().map(|(version, from)| meta(version, from)))
}

/// The installed set of reference §4.1 (`upgrade_from` = previous minor + lower patches of the
/// same minor), plus v1.44.0 which can only be reached from v1.43.1.
pub const REFERENCE_CATALOG: &[MetaSpec<'static>] = &[
    ("v1.41.3", &[]),
    ("v1.42.0", &["v1.41.3"]),
    ("v1.42.1", &["v1.41.3", "v1.42.0"]),
    ("v1.43.1", &["v1.42.0", "v1.42.1"]),
    ("v1.44.0", &["v1.43.1"]),
];

pub fn reference_catalog() -> Catalog {
    catalog(REFERENCE_CATALOG)
}

pub fn upgrade_record(from: &str, to: &str, state: KubeUpgradeState) -> KubeUpgradeRecord {
    KubeUpgradeRecord {
        id: 1,
        uuid: "upgrade-0".to_string(),
        from_version: v(from),
        to_version: v(to),
        state,
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: None,
    }
}

/// One idle host-upgrade row per observed host, as kup creates them.
pub fn snapshot(o: &Observation) -> Snapshot {
    Snapshot {
        upgrade: None,
        hosts: o
            .hosts
            .iter()
            .map(|h| HostUpgradeRecord {
                id: i64::from(h.id),
                uuid: format!("row-{}", h.hostname),
                host_id: i64::from(h.id),
                hostname: h.hostname.clone(),
                target_version: None,
                status: None,
                created_at: Timestamp::UNIX_EPOCH,
                updated_at: None,
            })
            .collect(),
        ..Default::default()
    }
}
