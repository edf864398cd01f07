//! The cluster file: every example parses, and bad input is refused with the line it is on.

use kup_sim::{Inventory, SimModel};
use kup_types::{KubeVersion, Personality, SystemType};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn the_default_cluster_is_the_seeds_standard_system() {
    let inv = Inventory::default_cluster();
    assert_eq!(inv.system_type, SystemType::Standard);
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.value.as_str()).collect();
    assert_eq!(
        names,
        [
            "controller-0",
            "controller-1",
            "storage-0",
            "storage-1",
            "worker-0",
            "worker-1"
        ]
    );
    let catalog = inv.catalog();
    let versions: Vec<KubeVersion> = catalog.iter().map(|m| m.version).collect();
    assert_eq!(
        versions,
        [KubeVersion::new(1, 16, 1)],
        "v1.16.2 arrives by patch"
    );
    assert!(
        !catalog[0].images.is_empty(),
        "every version needs images to download"
    );
    let model = SimModel::from_inventory(&inv, jiff::Timestamp::UNIX_EPOCH);
    let obs = model.observe();
    assert_eq!(obs.nodes.len(), 4, "storage hosts are not Kubernetes nodes");
    assert_eq!(obs.control_plane_pods.len(), 6);
    assert!(
        obs.hosts
            .iter()
            .any(|h| h.hostname == "controller-0" && h.active_controller)
    );
    assert!(
        model
            .pods()
            .iter()
            .all(|(_, p)| p.node.is_some() && p.ready),
        "every pod fits"
    );
}

#[test]
fn every_example_parses_and_has_workloads_alarms_and_applications() {
    for (file, system_type, hosts) in [
        ("standard.yaml", SystemType::Standard, 6),
        ("aio-simplex.yaml", SystemType::AioSimplex, 1),
        ("aio-duplex.yaml", SystemType::AioDuplex, 2),
        ("standard-50-workers.yaml", SystemType::Standard, 54),
    ] {
        let inv = Inventory::parse(&example(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(inv.system_type, system_type, "{file}");
        assert_eq!(inv.hosts.len(), hosts, "{file}");
        assert!(!inv.workloads.is_empty(), "{file}");
        assert!(!inv.applications.is_empty(), "{file}");
        if file != "standard.yaml" {
            assert!(!inv.alarms.is_empty(), "{file}");
        }
    }
    let inv = Inventory::parse(&example("standard-50-workers.yaml")).unwrap();
    assert_eq!(
        inv.hosts
            .iter()
            .filter(|h| h.personality == Personality::Worker)
            .count(),
        50
    );
}

const GOOD: &str = "\
system_type: standard
kubernetes_version: v1.16.1
versions:
  - version: v1.16.1
hosts:
  - name: controller-0
    personality: controller
  - name: worker-0
    personality: worker
";

/// (what is wrong, the file, the line the error must name, words the message must contain)
#[test]
fn bad_input_is_refused_with_its_line() {
    let cases: &[(&str, String, Option<u64>, &str)] = &[
        (
            "unknown personality",
            GOOD.replace("personality: worker", "personality: wrker"),
            Some(9),
            "wrker",
        ),
        (
            "unknown field",
            GOOD.replace(
                "    personality: worker",
                "    personality: worker\n    colour: red",
            ),
            Some(10),
            "colour",
        ),
        (
            "bad version",
            GOOD.replace("kubernetes_version: v1.16.1", "kubernetes_version: v1.16"),
            Some(2),
            "v1.16",
        ),
        ("not yaml", "hosts: [\n".to_string(), Some(1), "bracket"),
        (
            "duplicate host",
            GOOD.replace("name: worker-0", "name: controller-0"),
            Some(8),
            "listed twice",
        ),
        (
            "storage with kubelet",
            GOOD.replace(
                "personality: worker",
                "personality: storage\n    kubelet_version: v1.16.1",
            ),
            Some(8),
            "storage host",
        ),
        (
            "version not in catalog",
            GOOD.replace("kubernetes_version: v1.16.1", "kubernetes_version: v1.16.9"),
            None,
            "not in the versions list",
        ),
        (
            "simplex with a worker",
            GOOD.replace("system_type: standard", "system_type: aio-simplex"),
            None,
            "exactly one controller",
        ),
        (
            "workload on unknown node",
            format!(
                "{GOOD}workloads:\n  - name: web\n    kind: Deployment\n    nodes: [worker-9]\n"
            ),
            Some(13),
            "worker-9",
        ),
        (
            "placement on an unknown node",
            format!(
                "{GOOD}workloads:\n  - name: web\n    kind: Deployment\n    replicas: 2\n    placement: [{{ node: worker-9, pods: 1 }}]\n"
            ),
            Some(14),
            "places pods on worker-9, which is not a host with a kubelet",
        ),
        (
            "more pods placed than replicas",
            format!(
                "{GOOD}workloads:\n  - name: web\n    kind: Deployment\n    replicas: 2\n    placement: [{{ node: worker-0, pods: 3 }}]\n"
            ),
            Some(11),
            "places 3 pods but has 2 replicas",
        ),
        (
            "a DaemonSet placed",
            format!(
                "{GOOD}workloads:\n  - name: agent\n    kind: DaemonSet\n    placement: [{{ node: worker-0, pods: 1 }}]\n"
            ),
            Some(13),
            "takes no placement",
        ),
        (
            "fault on unknown host",
            format!("{GOOD}faults:\n  - step: kubelet\n    host: worker-7\n    mode: once\n"),
            Some(12),
            "worker-7",
        ),
        (
            "probability out of range",
            format!(
                "{GOOD}faults:\n  - step: kubelet\n    mode: probability\n    probability: 1.5\n"
            ),
            Some(13),
            "between 0 and 1",
        ),
        (
            "probability missing",
            format!("{GOOD}faults:\n  - step: kubelet\n    mode: probability\n"),
            Some(12),
            "needs a probability",
        ),
        (
            "unknown step",
            format!("{GOOD}faults:\n  - step: reboot\n    mode: once\n"),
            Some(11),
            "reboot",
        ),
        (
            "two active controllers",
            GOOD.replace(
                "  - name: worker-0\n    personality: worker",
                "  - name: controller-1\n    personality: controller\n    active: true",
            )
            .replace(
                "personality: controller\n  - name",
                "personality: controller\n    active: true\n  - name",
            ),
            Some(9),
            "more than one",
        ),
        (
            "pdb with both bounds",
            format!(
                "{GOOD}workloads:\n  - name: web\n    kind: Deployment\n    pdb: {{ min_available: 1, max_unavailable: 1 }}\n"
            ),
            Some(11),
            "exactly one",
        ),
        (
            "empty host name",
            GOOD.replace("name: worker-0", "name: \"\""),
            Some(8),
            "host name \"\" is not valid: it is empty",
        ),
        (
            "numeric host name",
            GOOD.replace("name: worker-0", "name: \"1\""),
            Some(8),
            "would be taken for a host id",
        ),
        (
            "control characters in a host name",
            GOOD.replace("name: worker-0", "name: \"tab\\there\\u001b[31mRED\""),
            Some(8),
            "host name \"tab\\there\\u{1b}[31mRED\" is not valid: it may hold only lowercase letters",
        ),
        (
            "upper case in a workload name",
            format!("{GOOD}workloads:\n  - name: Web\n    kind: Deployment\n"),
            Some(11),
            "workload name \"Web\" is not valid",
        ),
        (
            "bad namespace",
            format!(
                "{GOOD}workloads:\n  - name: web\n    namespace: my_ns\n    kind: Deployment\n"
            ),
            Some(11),
            "namespace \"my_ns\" of workload web is not valid",
        ),
        (
            "a newline in an alarm's reason",
            format!(
                "{GOOD}alarms:\n  - id: \"100.101\"\n    entity: host=worker-0\n    reason: \"fine\\nSystem Health: [OK]\"\n    severity: minor\n"
            ),
            None,
            "alarm reason \"fine\\nSystem Health: [OK]\" is not valid: it holds a control or invisible formatting character",
        ),
        (
            "a bidirectional override in a role",
            GOOD.replace(
                "personality: worker",
                "personality: worker\n    roles: [\"ingress\\u202e\"]",
            ),
            Some(8),
            "role \"ingress\\u{202e}\" is not valid",
        ),
        (
            "billions of replicas",
            format!(
                "{GOOD}workloads:\n  - name: web\n    kind: Deployment\n    replicas: 4294967295\n"
            ),
            Some(11),
            "the workloads ask for more than 1000000 pods (workload web has 4294967295 replicas)",
        ),
        (
            "a host named like a uuid",
            GOOD.replace(
                "name: worker-0",
                "name: fe0afd76-1c2b-4d3e-8f90-a1b2c3d4e5f6",
            ),
            Some(8),
            "shaped like a uuid",
        ),
        (
            "a step that would take forever",
            format!("{GOOD}durations:\n  download-images: 1e300\n"),
            None,
            "duration of download-images must be from 0 to 31536000 seconds (a year), not 1e300",
        ),
    ];
    for (what, src, line, words) in cases {
        let err = Inventory::parse(src)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.line, *line, "{what}: {err}");
        let text = err.to_string();
        assert!(text.contains(words), "{what}: {text}");
        assert!(!text.contains('\n'), "{what}: one line please: {text}");
        if let Some(l) = line {
            assert!(
                text.starts_with(&format!("cluster file, line {l}: ")),
                "{what}: {text}"
            );
        }
    }
    Inventory::parse(GOOD).unwrap();
}

/// An "alias bomb" (a small file whose aliases expand to millions of nodes) is refused with
/// the limit it broke, sized from the file; a genuine file of thousands of hosts is not.
#[test]
fn the_parser_budget_is_sized_from_the_file() {
    let labels: Vec<String> = (0..1000).map(|i| format!("k{i}: v")).collect();
    let mut bomb = format!(
        "system_type: standard\nkubernetes_version: v1.16.1\nversions:\n  - version: v1.16.1\nhosts:\n  - &h\n    name: w\n    personality: worker\n    labels: {{{}}}\n",
        labels.join(", ")
    );
    for _ in 0..300 {
        bomb.push_str("  - *h\n");
    }
    let err = Inventory::parse(&bomb).unwrap_err();
    assert!(
        err.message
            .starts_with("the file expands beyond 250000 YAML nodes, the limit for a file of")
            && err
                .message
                .ends_with("bytes (an alias counts each time it is used)"),
        "{err}"
    );
    let big = kup_sim::generate::generate(&kup_sim::generate::GenSpec {
        workers: 5000,
        ..Default::default()
    })
    .unwrap();
    let inv = Inventory::parse(&big).unwrap();
    assert_eq!(inv.hosts.len(), 5004);
}

/// `gen-cluster --control-planes N`: a kubeadm cluster with N control planes and no storage
/// hosts, parsed by the same reader; out-of-range counts are refused with the range.
#[test]
fn generated_kubeadm_clusters_have_their_control_planes() {
    let text = kup_sim::generate::generate(&kup_sim::generate::GenSpec {
        workers: 1000,
        control_planes: Some(3),
        ..Default::default()
    })
    .unwrap();
    let inv = Inventory::parse(&text).unwrap();
    assert_eq!(inv.system_type, SystemType::Kubeadm);
    assert_eq!(inv.hosts.len(), 1003);
    let cps = inv
        .hosts
        .iter()
        .filter(|h| h.personality == kup_types::Personality::Controller)
        .count();
    assert_eq!(cps, 3);
    assert!(inv.hosts.iter().all(|h| !h.active));
    for bad in [0, 10] {
        let e = kup_sim::generate::generate(&kup_sim::generate::GenSpec {
            workers: 10,
            control_planes: Some(bad),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("--control-planes must be from 1 to 9, not {bad}")
        );
    }
}
