//! Safety and availability analysis: one minimal cluster per condition, run through one check
//! function that also cross-checks `analyze_host`, `analyze_batch` and `analyze_all`.

use std::collections::BTreeMap;

use kup_core::safety::{
    DEFAULT_MIN_FREE_DISK_GIB, Verdict, analyze_all, analyze_batch, analyze_host, readiness,
};
use kup_types::{
    AdminState, Availability, Capacity, HostInfo, KubeVersion, Listing, NodeInfo, Observation,
    OperState, PdbInfo, Personality, PodInfo, SystemType, Taint, VolumeKind, WorkloadInfo,
};

const OK: Verdict = Verdict::Ok;
const WARNING: Verdict = Verdict::Warning;
const UNSAFE: Verdict = Verdict::Unsafe;

// ---- builder -------------------------------------------------------------------------------

/// Two controllers (tainted `control-plane:NoSchedule`) and three workers, each 8000m / 16384Mi,
/// all unlocked/enabled/available and ready, with no pods.
fn cluster() -> Listing {
    let mut o = Listing {
        obs: Observation {
            system_type: SystemType::Standard,
            hosts: Vec::new(),
            nodes: Vec::new(),
            control_plane_pods: Vec::new(),
            alarms: Vec::new(),
            applications: Vec::new(),
            images: Vec::new(),
            networking_version: None,
            api_usage: Vec::new(),
            index: Default::default(),
        },
        pods: Vec::new(),
        workloads: Vec::new(),
        pdbs: Vec::new(),
    };
    for name in [
        "controller-0",
        "controller-1",
        "worker-0",
        "worker-1",
        "worker-2",
    ] {
        add_host(&mut o, name);
    }
    o
}

fn add_host(o: &mut Listing, name: &str) {
    let personality = if name.starts_with("controller") {
        Personality::Controller
    } else if name.starts_with("storage") {
        Personality::Storage
    } else {
        Personality::Worker
    };
    let id = u32::try_from(o.hosts.len() + 1).unwrap();
    o.hosts.push(HostInfo {
        id,
        uuid: format!("uuid-{name}"),
        hostname: name.into(),
        personality,
        subfunctions: vec![personality.to_string()],
        roles: Vec::new(),
        administrative: AdminState::Unlocked,
        operational: OperState::Enabled,
        availability: Availability::Available,
        task: None,
        active_controller: name == "controller-0",
        capacity: Capacity {
            cpu_millis: 8000,
            memory_mib: 16384,
        },
        disk_free_gib: 100,
    });
    if personality == Personality::Storage {
        return;
    }
    o.nodes.push(NodeInfo {
        name: name.into(),
        ready: true,
        unschedulable: false,
        kubelet_version: KubeVersion::parse("v1.42.1").unwrap(),
        labels: BTreeMap::from([("kubernetes.io/hostname".into(), name.into())]),
        taints: if personality == Personality::Controller {
            vec![taint("node-role.kubernetes.io/control-plane", "NoSchedule")]
        } else {
            Vec::new()
        },
    });
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
    }
}

fn host<'a>(o: &'a mut Listing, name: &str) -> &'a mut HostInfo {
    o.hosts.iter_mut().find(|h| h.hostname == name).unwrap()
}

fn node<'a>(o: &'a mut Listing, name: &str) -> &'a mut NodeInfo {
    o.nodes.iter_mut().find(|n| n.name == name).unwrap()
}

fn remove_host(o: &mut Listing, name: &str) {
    o.hosts.retain(|h| h.hostname != name);
    o.nodes.retain(|n| n.name != name);
}

fn role(o: &mut Listing, name: &str, r: &str) {
    host(o, name).roles.push(r.into());
}

/// A ready pod `ns/name` on `node`, owned by `kind owner`, labelled `app=<owner>`.
fn pod(o: &mut Listing, ns_name: &str, node: &str, kind: &str, owner: &str) -> usize {
    let (ns, name) = ns_name.split_once('/').unwrap();
    o.pods.push(PodInfo {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        ready: true,
        phase: kup_types::PodPhase::Running,
        owner_kind: kind.into(),
        owner: owner.into(),
        labels: BTreeMap::from([("app".into(), owner.into())]).into(),
        volumes: Vec::new(),
        requests: Capacity::default(),
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
    });
    o.pods.len() - 1
}

/// `n` ready replicas of `kind ns/owner`, replica `i` on `nodes[i % len]`, with a matching
/// workload record.
fn workload(o: &mut Listing, kind: &str, ns_owner: &str, nodes: &[&str]) {
    let (ns, owner) = ns_owner.split_once('/').unwrap();
    for (i, n) in nodes.iter().enumerate() {
        pod(o, &format!("{ns}/{owner}-{i}"), n, kind, owner);
    }
    o.workloads.push(WorkloadInfo {
        namespace: ns.into(),
        name: owner.into(),
        kind: kind.into(),
        replicas: u32::try_from(nodes.len()).unwrap(),
        ready_replicas: u32::try_from(nodes.len()).unwrap(),
    });
}

fn pod_mut<'a>(o: &'a mut Listing, ns_name: &str) -> &'a mut PodInfo {
    let (ns, name) = ns_name.split_once('/').unwrap();
    o.pods
        .iter_mut()
        .find(|p| p.namespace == ns && p.name == name)
        .unwrap()
}

fn requests(o: &mut Listing, ns_name: &str, cpu: u32, mem: u32) {
    pod_mut(o, ns_name).requests = Capacity {
        cpu_millis: cpu,
        memory_mib: mem,
    };
}

/// A PDB selecting `app=<app>` in `ns`.
fn pdb(
    o: &mut Listing,
    ns_name: &str,
    app: &str,
    min_available: Option<u32>,
    max_unavailable: Option<u32>,
) -> usize {
    let (ns, name) = ns_name.split_once('/').unwrap();
    o.pdbs.push(PdbInfo {
        namespace: ns.into(),
        name: name.into(),
        selector: BTreeMap::from([("app".into(), app.into())]),
        min_available,
        max_unavailable,
        unhealthy_pod_eviction_policy: None,
    });
    o.pdbs.len() - 1
}

/// Fills a worker with a ready pod (of a replicated deployment spread over every worker)
/// requesting `cpu`/`mem`, so it has less room left.
fn fill(o: &mut Listing, node: &str, cpu: u32, mem: u32) {
    let name = format!("default/filler-{node}");
    pod(o, &name, node, "Deployment", &format!("filler-{node}"));
    requests(o, &name, cpu, mem);
    // A second ready replica on a controller keeps the workload rule quiet.
    let other = if node == "controller-0" {
        "controller-1"
    } else {
        "controller-0"
    };
    pod(
        o,
        &format!("default/filler-{node}-b"),
        other,
        "Deployment",
        &format!("filler-{node}"),
    );
}

// ---- the table -----------------------------------------------------------------------------

struct Case {
    name: &'static str,
    build: fn(&mut Listing),
    /// The hosts taken down together.
    hosts: &'static [&'static str],
    verdict: Verdict,
    /// `(verdict, subject, substring of the reason)`; every finding must be listed.
    findings: &'static [(Verdict, &'static str, &'static str)],
}

fn check(case: &Case) {
    let name = case.name;
    let mut o = cluster();
    (case.build)(&mut o);

    let batch = analyze_batch(&o, &o.index(), case.hosts);
    let got: Vec<String> = batch
        .findings
        .iter()
        .map(|f| format!("{} {}: {}", f.verdict, f.subject, f.reason))
        .collect();
    assert_eq!(
        batch.verdict, case.verdict,
        "{name}: verdict; findings: {got:#?}"
    );
    assert_eq!(
        batch.findings.len(),
        case.findings.len(),
        "{name}: finding count; findings: {got:#?}"
    );
    for (v, subject, reason) in case.findings {
        assert!(
            batch
                .findings
                .iter()
                .any(|f| f.verdict == *v && f.subject == *subject && f.reason.contains(reason)),
            "{name}: no {v} {subject}: ..{reason}..; findings: {got:#?}"
        );
    }
    for f in &batch.findings {
        assert_ne!(f.verdict, OK, "{name}: an OK finding");
    }
    let hosts: Vec<String> = case.hosts.iter().map(|h| h.to_string()).collect();
    assert_eq!(batch.hosts, hosts, "{name}: hosts");

    if let [one] = case.hosts {
        let h = analyze_host(&o, &o.index(), one);
        assert_eq!(h.host, *one, "{name}");
        assert_eq!(h.verdict, batch.verdict, "{name}: analyze_host verdict");
        assert_eq!(h.findings, batch.findings, "{name}: analyze_host findings");
        if let Some(all) = analyze_all(&o, &o.index())
            .into_iter()
            .find(|s| s.host == *one)
        {
            assert_eq!(all, h, "{name}: analyze_all entry");
        }
    }
}

const CASES: &[Case] = &[
    Case {
        name: "empty_worker_is_ok",
        build: |_| {},
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "replicated_deployment_is_ok",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            )
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    // -- pods Kismatic reports
    Case {
        name: "unmanaged_pod_is_lost",
        build: |o| {
            pod(o, "default/bare", "worker-0", "Pod", "bare");
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/bare", "unmanaged pod")],
    },
    Case {
        name: "unmanaged_pod_elsewhere_is_ok",
        build: |o| {
            pod(o, "default/bare", "worker-1", "Pod", "bare");
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "unmanaged_pod_in_kube_system_counts_too",
        build: |o| {
            pod(o, "kube-system/debug", "worker-0", "Pod", "debug");
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod kube-system/debug", "unmanaged pod")],
    },
    Case {
        name: "emptydir_on_evicted_pod_loses_data",
        build: |o| {
            workload(o, "Deployment", "default/cache", &["worker-0", "worker-1"]);
            pod_mut(o, "default/cache-0").volumes = vec![VolumeKind::EmptyDir];
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/cache-0", "emptyDir volume")],
    },
    Case {
        name: "emptydir_on_daemonset_pod_stays",
        build: |o| {
            workload(
                o,
                "DaemonSet",
                "kube-system/agent",
                &["worker-0", "worker-1", "worker-2"],
            );
            pod_mut(o, "kube-system/agent-0").volumes =
                vec![VolumeKind::EmptyDir, VolumeKind::HostPath];
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "mirror_pod_is_ignored",
        build: |o| {
            pod(o, "kube-system/static-web", "worker-0", "Node", "worker-0");
            pod_mut(o, "kube-system/static-web").volumes =
                vec![VolumeKind::EmptyDir, VolumeKind::HostPath];
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "hostpath_volume",
        build: |o| {
            workload(o, "Deployment", "default/logs", &["worker-0", "worker-1"]);
            pod_mut(o, "default/logs-0").volumes = vec![VolumeKind::HostPath];
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/logs-0",
            "hostPath volume: its data stays",
        )],
    },
    Case {
        name: "hostpath_persistent_volume_pins_the_pod",
        build: |o| {
            workload(o, "StatefulSet", "default/db", &["worker-0", "worker-1"]);
            pod_mut(o, "default/db-0").volumes = vec![VolumeKind::HostPathPv, VolumeKind::Pvc];
            // Pinned: not offered to the capacity check even though it cannot fit anywhere.
            requests(o, "default/db-0", 100_000, 1);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/db-0",
            "hostPath persistent volume: its data stays on the host, so the pod cannot run elsewhere",
        )],
    },
    Case {
        name: "network_pvc_is_ok",
        build: |o| {
            workload(o, "StatefulSet", "default/db", &["worker-0", "worker-1"]);
            pod_mut(o, "default/db-0").volumes = vec![VolumeKind::Pvc];
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    // -- replicas
    Case {
        name: "single_replica",
        build: |o| workload(o, "Deployment", "default/web", &["worker-0"]),
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "deployment default/web",
            "no ready replica would remain: all 1 ready of 1 desired are on this host",
        )],
    },
    Case {
        name: "all_replicas_on_the_host",
        build: |o| workload(o, "StatefulSet", "default/zk", &["worker-0", "worker-0"]),
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "statefulset default/zk", "all 2 ready of 2 desired")],
    },
    Case {
        name: "ready_not_desired_replicas_count",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pod_mut(o, "default/web-1").ready = false;
            pod_mut(o, "default/web-2").ready = false;
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "deployment default/web",
            "no ready replica would remain",
        )],
    },
    Case {
        name: "replicaset_without_workload_record",
        build: |o| {
            pod(o, "default/rs-x", "worker-0", "ReplicaSet", "rs");
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "replicaset default/rs",
            "all 1 ready are on this host",
        )],
    },
    Case {
        name: "already_unready_single_replica_loses_nothing",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0"]);
            pod_mut(o, "default/web-0").ready = false;
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "daemonset_on_a_single_node",
        build: |o| workload(o, "DaemonSet", "kube-system/gpu", &["worker-0"]),
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "daemonset kube-system/gpu",
            "no ready pod would remain: all 1 ready of 1 desired run on this host",
        )],
    },
    Case {
        name: "daemonset_everywhere_is_ok",
        build: |o| {
            workload(
                o,
                "DaemonSet",
                "kube-system/proxy",
                &["worker-0", "worker-1", "worker-2"],
            )
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "running_job",
        build: |o| {
            pod(o, "default/backup-abcde", "worker-0", "Job", "backup");
            pod(o, "default/backup-fghij", "worker-0", "Job", "backup");
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "job default/backup",
            "running job: 2 pods on this host would be killed",
        )],
    },
    // -- roles
    Case {
        name: "two_controllers_is_ok",
        build: |_| {},
        hosts: &["controller-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "only_controller",
        build: |o| remove_host(o, "controller-1"),
        hosts: &["controller-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host controller-0", "the control plane goes down")],
    },
    Case {
        name: "other_controller_locked",
        build: |o| host(o, "controller-1").administrative = AdminState::Locked,
        hosts: &["controller-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "host controller-0",
            "controller: 1 available now, none would remain",
        )],
    },
    Case {
        name: "only_worker",
        build: |o| {
            remove_host(o, "worker-1");
            remove_host(o, "worker-2");
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host worker-0", "every workload goes down")],
    },
    Case {
        name: "other_workers_unavailable",
        build: |o| {
            host(o, "worker-1").availability = Availability::Offline;
            host(o, "worker-2").operational = OperState::Disabled;
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host worker-0", "worker: 1 available now")],
    },
    Case {
        name: "only_ingress_node",
        build: |o| role(o, "worker-0", "ingress"),
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host worker-0", "ingress traffic stops")],
    },
    Case {
        name: "ingress_node_with_a_peer",
        build: |o| {
            role(o, "worker-0", "ingress");
            role(o, "worker-1", "ingress");
        },
        hosts: &["worker-0"],
        verdict: WARNING,
        findings: &[(
            WARNING,
            "host worker-0",
            "kup does not control the ingress load balancer",
        )],
    },
    Case {
        name: "storage_node_with_a_peer",
        build: |o| {
            role(o, "worker-0", "storage");
            role(o, "worker-1", "storage");
        },
        hosts: &["worker-0"],
        verdict: WARNING,
        findings: &[(WARNING, "host worker-0", "storage node: its bricks")],
    },
    Case {
        name: "storage_personality_host",
        build: |o| {
            add_host(o, "storage-0");
            add_host(o, "storage-1");
        },
        hosts: &["storage-0"],
        verdict: WARNING,
        findings: &[(WARNING, "host storage-0", "storage node")],
    },
    Case {
        name: "last_storage_node",
        build: |o| role(o, "worker-0", "storage"),
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host worker-0", "storage becomes unavailable")],
    },
    Case {
        name: "etcd_three_members_tolerate_one_down",
        build: |o| {
            for h in ["controller-0", "controller-1", "worker-0"] {
                role(o, h, "etcd");
            }
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "etcd_two_members_tolerate_none",
        build: |o| {
            role(o, "controller-0", "etcd");
            role(o, "controller-1", "etcd");
        },
        hosts: &["controller-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "host controller-0",
            "etcd: 1 of 2 members would remain healthy, below the quorum of 2",
        )],
    },
    Case {
        name: "etcd_three_members_one_already_down",
        build: |o| {
            for h in ["controller-0", "controller-1", "worker-0"] {
                role(o, h, "etcd");
            }
            host(o, "worker-0").availability = Availability::Offline;
        },
        hosts: &["controller-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host controller-0", "1 of 3 members")],
    },
    Case {
        name: "etcd_batch_of_two_of_three",
        build: |o| {
            for h in ["worker-0", "worker-1", "worker-2"] {
                role(o, h, "etcd");
            }
        },
        hosts: &["worker-0", "worker-1"],
        verdict: UNSAFE,
        findings: &[
            (UNSAFE, "host worker-0", "1 of 3 members"),
            (UNSAFE, "host worker-1", "1 of 3 members"),
        ],
    },
    Case {
        name: "unknown_host",
        build: |_| {},
        hosts: &["worker-9"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "host worker-9", "not in the observation")],
    },
    // -- PodDisruptionBudgets
    Case {
        name: "pdb_min_available_within_budget",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pdb(o, "default/web-pdb", "web", Some(2), None);
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "pdb_min_available_exceeded",
        build: |o| {
            let hosts = ["worker-0", "worker-0", "worker-1", "worker-2"];
            workload(o, "Deployment", "default/web", &hosts);
            pod_mut(o, "default/web-3").ready = false;
            pdb(o, "default/web-pdb", "web", Some(2), None);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb default/web-pdb",
            "evicting 2 pods exceeds the 1 allowed disruption (3 healthy of 4, min available 2)",
        )],
    },
    Case {
        name: "pdb_max_unavailable_exceeded",
        build: |o| {
            let hosts = ["worker-0", "worker-0", "worker-1", "worker-2"];
            workload(o, "Deployment", "default/web", &hosts);
            pdb(o, "default/web-pdb", "web", None, Some(1));
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb default/web-pdb",
            "evicting 2 pods exceeds the 1 allowed disruption (4 healthy of 4, max unavailable 1)",
        )],
    },
    Case {
        name: "pdb_max_unavailable_within_budget",
        build: |o| {
            let hosts = ["worker-0", "worker-0", "worker-1", "worker-2"];
            workload(o, "Deployment", "default/web", &hosts);
            pdb(o, "default/web-pdb", "web", None, Some(2));
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "pdb_with_no_budget_left",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            pdb(o, "default/web-pdb", "web", Some(2), None);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb default/web-pdb",
            "evicting 1 pod exceeds the 0 allowed disruptions (2 healthy of 2, min available 2)",
        )],
    },
    Case {
        name: "pdb_in_another_namespace_does_not_select",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            pdb(o, "other/web-pdb", "web", Some(2), None);
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "pdb_empty_selector_selects_the_namespace",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            workload(o, "Deployment", "default/api", &["worker-1", "worker-2"]);
            let b = pdb(o, "default/all", "", None, Some(0));
            o.pdbs[b].selector.clear();
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb default/all",
            "(4 healthy of 4, max unavailable 0)",
        )],
    },
    Case {
        name: "pdb_unready_pod_blocks_under_if_healthy_budget",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pod_mut(o, "default/web-0").ready = false;
            pdb(o, "default/web-pdb", "web", Some(3), None);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb default/web-pdb",
            "evicting 1 pod exceeds the 0 allowed disruptions (2 healthy of 3, min available 3); \
             1 unready: under IfHealthyBudget",
        )],
    },
    Case {
        name: "pdb_unready_pod_goes_under_always_allow",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pod_mut(o, "default/web-0").ready = false;
            let b = pdb(o, "default/web-pdb", "web", Some(3), None);
            o.pdbs[b].unhealthy_pod_eviction_policy = Some("AlwaysAllow".into());
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "pdb_unready_pod_goes_from_a_healthy_budget",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pod_mut(o, "default/web-0").ready = false;
            // 2 healthy >= 2 desired: the unready pod is evicted without using the budget.
            pdb(o, "default/web-pdb", "web", Some(2), None);
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "two_pdbs_per_pod_both_hold",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pdb(o, "default/web-pdb", "web", Some(2), None);
            let b = pdb(o, "default/tier-pdb", "web", None, Some(1));
            o.pdbs[b].selector = BTreeMap::from([("tier".into(), "front".into())]);
            for p in &mut o.pods {
                std::sync::Arc::make_mut(&mut p.labels).insert("tier".into(), "front".into());
            }
        },
        hosts: &["worker-0"],
        // Both budgets would allow it, but the eviction API answers 500 for a pod under two
        // PDBs: the drain would hang.
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/web-0",
            "covered by 2 PDBs (web-pdb, tier-pdb): the eviction API refuses",
        )],
    },
    Case {
        name: "two_pdbs_per_pod_one_fails",
        build: |o| {
            workload(
                o,
                "Deployment",
                "default/web",
                &["worker-0", "worker-1", "worker-2"],
            );
            pdb(o, "default/web-pdb", "web", Some(2), None);
            let b = pdb(o, "default/strict", "web", Some(3), None);
            o.pdbs[b].selector = BTreeMap::from([("tier".into(), "front".into())]);
            for p in &mut o.pods {
                std::sync::Arc::make_mut(&mut p.labels).insert("tier".into(), "front".into());
            }
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[
            (
                UNSAFE,
                "pdb default/strict",
                "exceeds the 0 allowed disruptions",
            ),
            (UNSAFE, "pod default/web-0", "covered by 2 PDBs"),
        ],
    },
    Case {
        // A DaemonSet pod is not evicted, but it stops with its host: its budget counts it.
        name: "pdb_counts_daemonset_pods_that_go_down",
        build: |o| {
            workload(
                o,
                "DaemonSet",
                "kube-system/agent",
                &["worker-0", "worker-1", "worker-2"],
            );
            pdb(o, "kube-system/agent-pdb", "agent", Some(3), None);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb kube-system/agent-pdb",
            "exceeds the 0 allowed disruptions",
        )],
    },
    // -- capacity
    Case {
        name: "capacity_fits",
        build: |o| {
            workload(o, "Deployment", "default/db", &["worker-0", "worker-1"]);
            requests(o, "default/db-0", 6000, 12000);
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "capacity_cpu_too_big",
        build: |o| {
            workload(o, "Deployment", "default/db", &["worker-0", "worker-1"]);
            requests(o, "default/db-0", 4000, 8192);
            fill(o, "worker-1", 5000, 0);
            fill(o, "worker-2", 5000, 0);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/db-0",
            "needs cpu 4000m, memory 8192Mi: fits on no remaining host",
        )],
    },
    Case {
        name: "capacity_memory_too_big",
        build: |o| {
            workload(o, "Deployment", "default/db", &["worker-0", "worker-1"]);
            requests(o, "default/db-0", 100, 10_000);
            fill(o, "worker-1", 0, 8000);
            fill(o, "worker-2", 0, 8000);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/db-0", "fits on no remaining host")],
    },
    Case {
        name: "capacity_first_fit_decreasing",
        build: |o| {
            // worker-1 has 3000m free, worker-2 2000m: 3000 must go first to fit both.
            fill(o, "worker-1", 5000, 0);
            fill(o, "worker-2", 6000, 0);
            workload(o, "Deployment", "default/a", &["worker-0", "controller-0"]);
            workload(o, "Deployment", "default/b", &["worker-0", "controller-0"]);
            requests(o, "default/a-0", 2000, 0);
            requests(o, "default/b-0", 3000, 0);
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "capacity_node_selector_matches_nowhere",
        build: |o| {
            workload(o, "Deployment", "default/db", &["worker-0", "worker-1"]);
            node(o, "worker-0")
                .labels
                .insert("disk".into(), "ssd".into());
            pod_mut(o, "default/db-0").node_selector =
                BTreeMap::from([("disk".into(), "ssd".into())]);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/db-0",
            "fits on no remaining host (none matches its node selector and tolerations)",
        )],
    },
    Case {
        name: "capacity_node_selector_matches_a_full_host",
        build: |o| {
            workload(o, "Deployment", "default/db", &["worker-0", "worker-1"]);
            node(o, "worker-0")
                .labels
                .insert("disk".into(), "ssd".into());
            node(o, "worker-2")
                .labels
                .insert("disk".into(), "ssd".into());
            pod_mut(o, "default/db-0").node_selector =
                BTreeMap::from([("disk".into(), "ssd".into())]);
            requests(o, "default/db-0", 4000, 0);
            fill(o, "worker-2", 6000, 0);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/db-0",
            "needs cpu 4000m, memory 0Mi: fits on no",
        )],
    },
    Case {
        name: "capacity_node_selector_matches",
        build: |o| {
            workload(o, "Deployment", "default/db", &["worker-0", "worker-1"]);
            node(o, "worker-0")
                .labels
                .insert("disk".into(), "ssd".into());
            node(o, "worker-2")
                .labels
                .insert("disk".into(), "ssd".into());
            pod_mut(o, "default/db-0").node_selector =
                BTreeMap::from([("disk".into(), "ssd".into())]);
            requests(o, "default/db-0", 4000, 0);
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "capacity_taints_not_tolerated",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            node(o, "worker-1").taints.push(taint("gpu", "NoSchedule"));
            node(o, "worker-2")
                .taints
                .push(taint("maintenance", "NoExecute"));
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pod default/web-0",
            "(none matches its node selector and tolerations)",
        )],
    },
    Case {
        name: "capacity_taint_tolerated_by_key",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            node(o, "worker-1").taints.push(taint("gpu", "NoSchedule"));
            node(o, "worker-2")
                .taints
                .push(taint("maintenance", "NoExecute"));
            pod_mut(o, "default/web-0").tolerations = vec!["gpu".into()];
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "capacity_wildcard_toleration_reaches_controllers",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            for w in ["worker-1", "worker-2"] {
                node(o, w).unschedulable = true;
            }
            pod_mut(o, "default/web-0").tolerations = vec!["*".into()];
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "capacity_prefer_no_schedule_is_ignored",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            node(o, "worker-1")
                .taints
                .push(taint("soft", "PreferNoSchedule"));
            node(o, "worker-2")
                .taints
                .push(taint("soft", "PreferNoSchedule"));
        },
        hosts: &["worker-0"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "capacity_cordoned_locked_and_notready_hosts_take_nothing",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            node(o, "worker-1").unschedulable = true;
            host(o, "worker-2").administrative = AdminState::Locked;
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/web-0", "fits on no remaining host")],
    },
    Case {
        name: "capacity_notready_node_takes_nothing",
        build: |o| {
            workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]);
            node(o, "worker-1").unschedulable = true;
            node(o, "worker-2").ready = false;
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/web-0", "fits on no remaining host")],
    },
    Case {
        name: "capacity_unmanaged_pod_is_not_placed",
        build: |o| {
            pod(o, "default/bare", "worker-0", "Pod", "bare");
            requests(o, "default/bare", 100_000, 0);
        },
        hosts: &["worker-0"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/bare", "unmanaged pod")],
    },
    // -- batches
    Case {
        name: "batch_replicas_ok_alone",
        build: |o| workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]),
        hosts: &["worker-1"],
        verdict: OK,
        findings: &[],
    },
    Case {
        name: "batch_replicas_unsafe_together",
        build: |o| workload(o, "Deployment", "default/web", &["worker-0", "worker-1"]),
        hosts: &["worker-0", "worker-1"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "deployment default/web",
            "all 2 ready of 2 desired are on these hosts",
        )],
    },
    Case {
        name: "batch_pdb_unsafe_together",
        build: |o| {
            let hosts = ["worker-0", "worker-1", "worker-2", "worker-2"];
            workload(o, "Deployment", "default/web", &hosts);
            pdb(o, "default/web-pdb", "web", None, Some(1));
        },
        hosts: &["worker-0", "worker-1"],
        verdict: UNSAFE,
        findings: &[(
            UNSAFE,
            "pdb default/web-pdb",
            "evicting 2 pods exceeds the 1 allowed disruption",
        )],
    },
    Case {
        name: "batch_capacity_unsafe_together",
        build: |o| {
            workload(o, "Deployment", "default/a", &["worker-0", "controller-0"]);
            workload(o, "Deployment", "default/b", &["worker-1", "controller-0"]);
            requests(o, "default/a-0", 5000, 0);
            requests(o, "default/b-0", 5000, 0);
        },
        hosts: &["worker-0", "worker-1"],
        verdict: UNSAFE,
        findings: &[(UNSAFE, "pod default/b-0", "fits on no remaining host")],
    },
];

#[test]
fn conditions() {
    let mut names = std::collections::BTreeSet::new();
    for case in CASES {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
        check(case);
    }
}

/// The capacity pair of `batch_capacity_unsafe_together`, each host alone.
#[test]
fn batch_capacity_hosts_are_ok_alone() {
    let mut o = cluster();
    workload(
        &mut o,
        "Deployment",
        "default/a",
        &["worker-0", "controller-0"],
    );
    workload(
        &mut o,
        "Deployment",
        "default/b",
        &["worker-1", "controller-0"],
    );
    requests(&mut o, "default/a-0", 5000, 0);
    requests(&mut o, "default/b-0", 5000, 0);
    for h in ["worker-0", "worker-1"] {
        assert_eq!(analyze_host(&o, &o.index(), h).verdict, OK, "{h}");
    }
    assert_eq!(
        analyze_batch(&o, &o.index(), &["worker-0", "worker-1"]).verdict,
        UNSAFE
    );
}

#[test]
fn analyze_all_is_sorted_by_id_and_matches_analyze_host() {
    let mut o = cluster();
    workload(&mut o, "Deployment", "default/web", &["worker-0"]);
    role(&mut o, "worker-2", "ingress");
    o.hosts.reverse();
    let all = analyze_all(&o, &o.index());
    let names: Vec<&str> = all.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(
        names,
        [
            "controller-0",
            "controller-1",
            "worker-0",
            "worker-1",
            "worker-2"
        ]
    );
    for h in &all {
        assert_eq!(*h, analyze_host(&o, &o.index(), &h.host));
    }
    assert_eq!(all[2].verdict, UNSAFE);
    assert_eq!(all[4].verdict, UNSAFE);
    assert_eq!(all[0].roles, ["controller"]);
}

#[test]
fn verdicts_display_and_serialize_as_kismatic_words() {
    for (v, s) in [(OK, "OK"), (WARNING, "WARNING"), (UNSAFE, "UNSAFE")] {
        assert_eq!(v.to_string(), s);
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
    }
    assert!(OK < WARNING && WARNING < UNSAFE);
    let mut o = cluster();
    role(&mut o, "worker-0", "ingress");
    let json = serde_json::to_value(analyze_host(&o, &o.index(), "worker-0")).unwrap();
    assert_eq!(json["verdict"], "UNSAFE");
    assert_eq!(json["roles"], serde_json::json!(["worker", "ingress"]));
    assert_eq!(json["findings"][0]["subject"], "host worker-0");
}

#[test]
fn finding_order_is_worst_first_then_subject() {
    let mut o = cluster();
    role(&mut o, "worker-0", "ingress");
    role(&mut o, "worker-1", "ingress");
    pod(&mut o, "default/z", "worker-0", "Pod", "z");
    pod(&mut o, "default/a", "worker-0", "Pod", "a");
    let s = analyze_host(&o, &o.index(), "worker-0");
    let subjects: Vec<&str> = s.findings.iter().map(|f| f.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["pod default/a", "pod default/z", "host worker-0"]
    );
    assert_eq!(s.verdict, UNSAFE);
}

// ---- readiness -----------------------------------------------------------------------------

struct ReadyCase {
    name: &'static str,
    build: fn(&mut Listing),
    host: &'static str,
    min_disk: u32,
    missing: &'static [&'static str],
    problems: &'static [&'static str],
}

const READY: &[ReadyCase] = &[
    ReadyCase {
        name: "ready",
        build: |_| {},
        host: "worker-0",
        min_disk: DEFAULT_MIN_FREE_DISK_GIB,
        missing: &[],
        problems: &[],
    },
    ReadyCase {
        name: "disk_at_threshold_is_enough",
        build: |o| host(o, "worker-0").disk_free_gib = 1,
        host: "worker-0",
        min_disk: 1,
        missing: &[],
        problems: &[],
    },
    ReadyCase {
        name: "disk_below_threshold",
        build: |o| host(o, "worker-0").disk_free_gib = 0,
        host: "worker-0",
        min_disk: DEFAULT_MIN_FREE_DISK_GIB,
        missing: &[],
        problems: &["free disk 0 GiB is below the 1 GiB required"],
    },
    ReadyCase {
        name: "configurable_threshold",
        build: |_| {},
        host: "worker-0",
        min_disk: 200,
        missing: &[],
        problems: &["free disk 100 GiB is below the 200 GiB required"],
    },
    ReadyCase {
        name: "host_locked",
        build: |o| host(o, "worker-0").administrative = AdminState::Locked,
        host: "worker-0",
        min_disk: 1,
        missing: &[],
        problems: &["host is locked/enabled/available, not unlocked/enabled/available"],
    },
    ReadyCase {
        name: "host_busy",
        build: |o| host(o, "worker-0").task = Some("Locking".into()),
        host: "worker-0",
        min_disk: 1,
        missing: &[],
        problems: &["an action is in progress on the host: Locking"],
    },
    ReadyCase {
        name: "missing_patches",
        build: |_| {},
        host: "worker-0",
        min_disk: 1,
        missing: &["KUBE.43.1-kubelet", "KUBE.43.1-kubeadm"],
        problems: &[
            "needs patch KUBE.43.1-kubelet",
            "needs patch KUBE.43.1-kubeadm",
        ],
    },
    ReadyCase {
        name: "unknown_host",
        build: |_| {},
        host: "worker-9",
        min_disk: 1,
        missing: &[],
        problems: &["host is not in the observation"],
    },
];

#[test]
fn readiness_checks() {
    for case in READY {
        let mut o = cluster();
        (case.build)(&mut o);
        let missing: Vec<String> = case.missing.iter().map(|s| s.to_string()).collect();
        let r = readiness(&o, case.host, case.min_disk, &missing);
        assert_eq!(r.host, case.host, "{}", case.name);
        assert_eq!(r.problems, case.problems, "{}", case.name);
        assert_eq!(r.ready, case.problems.is_empty(), "{}", case.name);
    }
}

// ---- capacity against a naive placement ----------------------------------------------------

/// 80 workers (more than the analysis resolves through its label index, so both of its search
/// paths run), zone labels, a few tainted hosts, pods of varied size with and without
/// selectors and tolerations.
fn crowded() -> Listing {
    let mut o = cluster();
    remove_host(&mut o, "worker-0");
    remove_host(&mut o, "worker-1");
    remove_host(&mut o, "worker-2");
    for i in 0..80 {
        let name = format!("worker-{i}");
        add_host(&mut o, &name);
        let n = node(&mut o, &name);
        n.labels.insert("zone".into(), format!("z{}", i % 3));
        n.labels.insert("pool".into(), "all".into());
        if i % 11 == 0 {
            n.taints.push(taint("gpu", "NoSchedule"));
        }
        host(&mut o, &name).capacity.cpu_millis = 3000 + (i % 4) * 1000;
    }
    for i in 0..400u32 {
        let name = format!("default/p{i}");
        let app = format!("app{}", i % 60);
        pod(
            &mut o,
            &name,
            &format!("worker-{}", (i * 7) % 80),
            "Deployment",
            &app,
        );
        requests(&mut o, &name, 200 + (i * 37) % 3000, 64 * (1 + i % 9));
        let p = pod_mut(&mut o, &name);
        match i % 5 {
            0 => p.node_selector = BTreeMap::from([("zone".into(), format!("z{}", i % 3))]),
            1 => p.node_selector = BTreeMap::from([("pool".into(), "all".into())]),
            2 => p.tolerations = vec!["gpu".into()],
            _ => {}
        }
    }
    o
}

/// First-fit decreasing written plainly: every remaining host checked for every pod.
fn naive_unplaced(o: &Listing, down: &str) -> Vec<String> {
    let mut hosts: Vec<&HostInfo> = o.hosts.iter().collect();
    hosts.sort_by_key(|h| h.id);
    let mut free: Vec<Option<(u32, u32)>> = hosts
        .iter()
        .map(|h| {
            let n = o.nodes.iter().find(|n| n.name == h.hostname)?;
            let usable = h.hostname != down
                && h.administrative == AdminState::Unlocked
                && n.ready
                && !n.unschedulable;
            usable.then(|| {
                let on = o
                    .pods
                    .iter()
                    .filter(|p| p.node.as_deref() == Some(&h.hostname));
                on.fold(
                    (h.capacity.cpu_millis, h.capacity.memory_mib),
                    |(c, m), p| {
                        (
                            c.saturating_sub(p.requests.cpu_millis),
                            m.saturating_sub(p.requests.memory_mib),
                        )
                    },
                )
            })
        })
        .collect();
    let mut movers: Vec<&PodInfo> = o
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(down))
        .filter(|p| !matches!(p.owner_kind.as_str(), "Node" | "DaemonSet" | "Pod"))
        .collect();
    movers.sort_by(|a, b| {
        (b.requests.cpu_millis, b.requests.memory_mib)
            .cmp(&(a.requests.cpu_millis, a.requests.memory_mib))
            .then((&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    let mut unplaced = Vec::new();
    for p in movers {
        let mut best: Option<usize> = None;
        for (i, h) in hosts.iter().enumerate() {
            let Some((c, m)) = free[i] else { continue };
            let n = o.nodes.iter().find(|n| n.name == h.hostname).unwrap();
            let selected = p
                .node_selector
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v));
            let tolerated = n.taints.iter().all(|t| {
                t.effect == "PreferNoSchedule"
                    || p.tolerations.iter().any(|k| k == "*" || *k == t.key)
            });
            let room = c >= p.requests.cpu_millis && m >= p.requests.memory_mib;
            if selected && tolerated && room && best.is_none_or(|b| c > free[b].unwrap().0) {
                best = Some(i);
            }
        }
        match best {
            Some(b) => {
                let (c, m) = free[b].unwrap();
                free[b] = Some((c - p.requests.cpu_millis, m - p.requests.memory_mib));
            }
            None => unplaced.push(format!("pod {}/{}", p.namespace, p.name)),
        }
    }
    unplaced.sort();
    unplaced
}

#[test]
fn capacity_matches_a_naive_placement_on_every_host() {
    let mut o = crowded();
    let all = analyze_all(&o, &o.index());
    let mut some_unplaced = 0;
    for h in &all {
        let mut got: Vec<String> = h
            .findings
            .iter()
            .filter(|f| f.reason.contains("fits on no remaining host"))
            .map(|f| f.subject.clone())
            .collect();
        got.sort();
        assert_eq!(got, naive_unplaced(&o, &h.host), "{}", h.host);
        some_unplaced += usize::from(!got.is_empty());
        // analyze_all reuses one placement state and undoes each host's changes.
        assert_eq!(*h, analyze_host(&o, &o.index(), &h.host), "{}", h.host);
    }

    assert!(some_unplaced > 0, "the cluster should be crowded enough");
    assert!(
        some_unplaced < all.len() / 2,
        "but not everywhere: {some_unplaced}"
    );

    // With ample room everything fits.
    for h in &mut o.hosts {
        h.capacity.cpu_millis = 100_000;
    }
    for h in analyze_all(&o, &o.index()) {
        assert!(
            h.findings.iter().all(|f| !f.reason.contains("fits on no")),
            "{}",
            h.host
        );
    }
}
