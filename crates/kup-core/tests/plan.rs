//! The upgrade plan: golden files of the examples (table and JSON), the duration arithmetic,
//! done flags from a mid-upgrade snapshot, blocked reasons, and a property test of the worker
//! batches against an independent brute-force checker.
//!
//! `KUP_UPDATE_GOLDEN=1 cargo test -p kup-core --test plan` rewrites the golden files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{meta, upgrade_record, v};
use jiff::Timestamp;
use kup_core::Catalog;
use kup_core::plan::{
    COMPLETE, CONTROLLER_KUBELETS, DOWNLOAD_IMAGES, FIRST_CONTROL_PLANE, NETWORKING, Plan,
    PlanInput, SECOND_CONTROL_PLANE, Stage, WORKER_KUBELETS, about, human, plan, render_table,
};
use kup_core::safety::{Verdict, analyze_all};
use kup_sim::inventory::default_duration;
use kup_sim::{Inventory, SimModel};
use kup_types::{
    AdminState, Availability, Capacity, ControlPlanePod, HostInfo, KubeUpgradeState, KubeVersion,
    Listing, NodeInfo, Observation, OperState, PdbInfo, Personality, PodInfo, PodPhase, Snapshot,
    StepKind, SystemType, Taint, VersionMeta, WorkloadInfo,
};

// ---- the examples --------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The version metadata the platform patch of v1.16.2 adds to the catalog.
fn platform_patch_meta() -> VersionMeta {
    let path = repo().join("examples/patches/src/K8S-1.16.2-PLATFORM/patch.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("patch.json is JSON");
    serde_json::from_value(json["kubernetes"].clone()).expect("a version's metadata")
}

struct Example {
    obs: Listing,
    catalog: Catalog,
    durations: BTreeMap<StepKind, u64>,
}

fn example(name: &str) -> Example {
    let path = repo().join(format!("examples/{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let inv = Inventory::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let model = SimModel::from_inventory(&inv, Timestamp::UNIX_EPOCH);
    let obs = Listing::of(model.observe(), &model.workloads());
    let mut catalog = Catalog::new(inv.catalog());
    if catalog.get(v("v1.16.2")).is_none() {
        catalog = catalog.with([platform_patch_meta()]);
    }
    let durations = StepKind::ALL
        .iter()
        .map(|&k| {
            let secs = inv
                .durations
                .get(&k)
                .copied()
                .unwrap_or_else(|| default_duration(k));
            (k, secs.round() as u64)
        })
        .collect();
    Example {
        obs,
        catalog,
        durations,
    }
}

fn plan_for(
    obs: &Listing,
    snap: &Snapshot,
    catalog: &Catalog,
    to: &str,
    cap: u32,
    durations: &BTreeMap<StepKind, u64>,
) -> Plan {
    plan(&PlanInput {
        obs,
        workloads: &obs.index(),
        snap,
        catalog,
        to: v(to),
        max_parallel_worker_hosts: cap,
        durations,
        min_free_disk_gib: kup_core::safety::DEFAULT_MIN_FREE_DISK_GIB,
    })
}

fn example_plan(name: &str, cap: u32) -> Plan {
    let e = example(name);
    plan_for(
        &e.obs,
        &Snapshot::default(),
        &e.catalog,
        "v1.16.2",
        cap,
        &e.durations,
    )
}

/// Compares `actual` with the committed file, or rewrites it under `KUP_UPDATE_GOLDEN`.
fn golden(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("KUP_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}; run with KUP_UPDATE_GOLDEN=1 to write it"));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{file} differs from the committed golden file at line {}:\n  expected: {:?}\n  \
             actual:   {:?}\n(KUP_UPDATE_GOLDEN=1 rewrites it)\n--- actual ---\n{actual}",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
        );
    }
}

fn check_golden(name: &str, cap: u32) {
    let p = example_plan(name, cap);
    golden(&format!("{name}.plan.txt"), &render_table(&p));
    let json = serde_json::to_string_pretty(&p).unwrap() + "\n";
    golden(&format!("{name}.plan.json"), &json);
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p, "{name}: the JSON round-trips");
    assert!(p.blocked.is_empty(), "{name}: {:?}", p.blocked);
    assert!(p.lower_bound_seconds <= p.total_seconds);
}

#[test]
fn golden_standard() {
    check_golden("standard", 2);
}

#[test]
fn golden_aio_simplex() {
    check_golden("aio-simplex", 2);
}

#[test]
fn golden_aio_duplex() {
    check_golden("aio-duplex", 2);
}

#[test]
fn golden_standard_50_workers() {
    check_golden("standard-50-workers", 8);
}

// ---- stage order and durations -------------------------------------------------------------

/// Distinct powers of ten, so every sum says which steps it counted.
fn decimal_durations() -> BTreeMap<StepKind, u64> {
    BTreeMap::from([
        (StepKind::DownloadImages, 1),
        (StepKind::ControlPlane, 10),
        (StepKind::Networking, 100),
        (StepKind::Kubelet, 1_000),
        (StepKind::Lock, 10_000),
        (StepKind::Unlock, 100_000),
        (StepKind::Swact, 1_000_000),
    ])
}

fn stage<'p>(p: &'p Plan, name: &str) -> &'p Stage {
    p.stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name} in {:?}", names(p)))
}

fn names(p: &Plan) -> Vec<&str> {
    p.stages.iter().map(|s| s.name.as_str()).collect()
}

fn hosts_of(s: &Stage) -> Vec<Vec<&str>> {
    s.batches
        .iter()
        .map(|b| b.hosts.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn standard_stage_order_and_duration_arithmetic() {
    let e = example("standard");
    let d = decimal_durations();
    let p = plan_for(&e.obs, &Snapshot::default(), &e.catalog, "v1.16.2", 2, &d);
    assert_eq!(p.from, Some(v("v1.16.1")));
    assert_eq!(
        names(&p),
        [
            DOWNLOAD_IMAGES,
            FIRST_CONTROL_PLANE,
            NETWORKING,
            SECOND_CONTROL_PLANE,
            CONTROLLER_KUBELETS,
            WORKER_KUBELETS,
            COMPLETE
        ]
    );
    assert_eq!(hosts_of(stage(&p, FIRST_CONTROL_PLANE)), [["controller-1"]]);
    assert_eq!(
        hosts_of(stage(&p, SECOND_CONTROL_PLANE)),
        [["controller-0"]]
    );
    // Standby first; the active controller last, after a swact.
    let ck = stage(&p, CONTROLLER_KUBELETS);
    assert_eq!(hosts_of(ck), [["controller-1"], ["controller-0"]]);
    assert_eq!(ck.batches[0].seconds, 111_000);
    assert_eq!(ck.batches[1].seconds, 1_111_000);
    assert!(ck.batches[1].reason.contains("swact to controller-1"));
    assert_eq!(ck.seconds, 1_222_000);
    // Both workers are the only ingress hosts: never down together.
    let wk = stage(&p, WORKER_KUBELETS);
    assert_eq!(hosts_of(wk), [["worker-0"], ["worker-1"]]);
    assert!(
        wk.batches[0].reason.contains("no other worker can join"),
        "{:?}",
        wk.batches
    );
    assert_eq!(wk.seconds, 222_000);
    assert_eq!(stage(&p, COMPLETE).seconds, 0);
    // Storage hosts take no part.
    assert!(
        p.stages
            .iter()
            .flat_map(|s| &s.batches)
            .all(|b| b.hosts.iter().all(|h| !h.starts_with("storage")))
    );
    assert_eq!(p.total_seconds, 1 + 10 + 100 + 10 + 1_222_000 + 222_000);
    // Both workers are the only ingress hosts: two batches in any safe schedule, whatever the
    // cap of 2 allows.
    assert_eq!(p.lower_bound_seconds, p.total_seconds);
    // Missing durations count as 0.
    let only_kubelet = BTreeMap::from([(StepKind::Kubelet, 7)]);
    let p = plan_for(
        &e.obs,
        &Snapshot::default(),
        &e.catalog,
        "v1.16.2",
        2,
        &only_kubelet,
    );
    assert_eq!(p.total_seconds, 4 * 7);
}

#[test]
fn simplex_has_no_second_control_plane_and_no_lock() {
    let e = example("aio-simplex");
    let d = decimal_durations();
    let p = plan_for(&e.obs, &Snapshot::default(), &e.catalog, "v1.16.2", 3, &d);
    assert_eq!(
        names(&p),
        [
            DOWNLOAD_IMAGES,
            FIRST_CONTROL_PLANE,
            NETWORKING,
            CONTROLLER_KUBELETS,
            COMPLETE
        ]
    );
    let ck = stage(&p, CONTROLLER_KUBELETS);
    assert_eq!(hosts_of(ck), [["controller-0"]]);
    assert_eq!(ck.batches[0].seconds, 1_000, "kubelet only");
    assert!(ck.batches[0].reason.contains("without a lock"));
    assert_eq!(p.total_seconds, 1 + 10 + 100 + 1_000);
    assert_eq!(p.lower_bound_seconds, p.total_seconds);
}

#[test]
fn duplex_controllers_one_at_a_time_and_unsafe_shown() {
    let e = example("aio-duplex");
    let d = decimal_durations();
    let p = plan_for(&e.obs, &Snapshot::default(), &e.catalog, "v1.16.2", 4, &d);
    assert!(!names(&p).contains(&WORKER_KUBELETS), "{:?}", names(&p));
    let ck = stage(&p, CONTROLLER_KUBELETS);
    assert_eq!(hosts_of(ck), [["controller-1"], ["controller-0"]]);
    // controller-1 runs an unmanaged pod: the plan shows it, it does not hide it.
    assert_eq!(ck.batches[0].verdict, Verdict::Unsafe);
    assert!(
        ck.batches[0].reason.contains("unmanaged"),
        "{}",
        ck.batches[0].reason
    );
    assert_eq!(p.total_seconds, 1 + 10 + 100 + 10 + 111_000 + 1_111_000);
}

#[test]
fn worker_batches_respect_the_cap_and_cover_every_worker_once() {
    for cap in 1..=12 {
        let p = example_plan("standard-50-workers", cap);
        let wk = stage(&p, WORKER_KUBELETS);
        let mut seen = BTreeSet::new();
        for b in &wk.batches {
            assert!(b.hosts.len() <= cap as usize, "cap {cap}: {b:?}");
            for h in &b.hosts {
                assert!(seen.insert(h.clone()), "cap {cap}: {h} twice");
            }
            if b.verdict == Verdict::Unsafe {
                assert_eq!(b.hosts.len(), 1, "{b:?}");
                assert!(b.reason.starts_with("unsafe even alone"), "{b:?}");
            }
        }
        assert_eq!(seen.len(), 50, "cap {cap}");
        assert!(p.lower_bound_seconds <= p.total_seconds);
        for b in &wk.batches {
            // Its drains in waves (at least one, at most one per host), then kubelet + unlock.
            let waves = (b.seconds - 300 - 480) / 45;
            assert_eq!(b.seconds, waves * 45 + 300 + 480, "{b:?}");
            assert!((1..=b.hosts.len() as u64).contains(&waves), "{b:?}");
        }
        assert_eq!(
            wk.seconds,
            wk.batches.iter().map(|b| b.seconds).sum::<u64>(),
            "cap {cap}"
        );
        if cap == 1 {
            assert_eq!(p.lower_bound_seconds, p.total_seconds);
        }
    }
}

#[test]
fn human_durations() {
    assert_eq!(human(0), "0s");
    assert_eq!(human(45), "45s");
    assert_eq!(human(240), "4m 0s");
    assert_eq!(human(3_725), "1h 2m 5s");
    assert_eq!(about(45), "45s");
    assert_eq!(about(89), "1m");
    assert_eq!(about(90), "2m");
    assert_eq!(about(3_600), "1h");
    assert_eq!(about(4_320), "1h 12m");
}

// ---- done flags ----------------------------------------------------------------------------

fn set_control_plane(o: &mut Listing, host: &str, to: KubeVersion) {
    for p in o.control_plane_pods.iter_mut().filter(|p| p.host == host) {
        p.version = to;
    }
}

fn set_kubelet(o: &mut Listing, host: &str, to: KubeVersion) {
    o.nodes
        .iter_mut()
        .find(|n| n.name == host)
        .unwrap()
        .kubelet_version = to;
}

#[test]
fn done_flags_from_a_mid_upgrade_snapshot() {
    let e = example("standard");
    let d = decimal_durations();
    let to = v("v1.16.2");
    let mut o = e.obs.clone();
    set_control_plane(&mut o, "controller-1", to);
    let snap = Snapshot {
        upgrade: Some(upgrade_record(
            "v1.16.1",
            "v1.16.2",
            KubeUpgradeState::UpgradedNetworking,
        )),
        ..Snapshot::default()
    };
    let p = plan_for(&o, &snap, &e.catalog, "v1.16.2", 2, &d);
    assert!(p.blocked.is_empty(), "{:?}", p.blocked);
    assert_eq!(p.from, Some(v("v1.16.1")));
    let done: Vec<bool> = p.stages.iter().map(|s| s.done).collect();
    assert_eq!(done, [true, true, true, false, false, false, false]);
    assert_eq!(hosts_of(stage(&p, FIRST_CONTROL_PLANE)), [["controller-1"]]);
    assert_eq!(
        hosts_of(stage(&p, SECOND_CONTROL_PLANE)),
        [["controller-0"]]
    );
    assert_eq!(p.total_seconds, 10 + 1_222_000 + 222_000);
    let table = render_table(&p);
    assert!(table.contains("7 stages, 3 done"), "{table}");

    // Kubelets: controller-1 and worker-0 already run the target and drop out; the swact is
    // still needed, controller-0 being the active controller.
    set_control_plane(&mut o, "controller-0", to);
    set_kubelet(&mut o, "controller-1", to);
    set_kubelet(&mut o, "worker-0", to);
    let snap = Snapshot {
        upgrade: Some(upgrade_record(
            "v1.16.1",
            "v1.16.2",
            KubeUpgradeState::UpgradingKubelets,
        )),
        ..Snapshot::default()
    };
    let p = plan_for(&o, &snap, &e.catalog, "v1.16.2", 2, &d);
    let done: Vec<bool> = p.stages.iter().map(|s| s.done).collect();
    assert_eq!(done, [true, true, true, true, false, false, false]);
    assert_eq!(hosts_of(stage(&p, CONTROLLER_KUBELETS)), [["controller-0"]]);
    assert_eq!(hosts_of(stage(&p, WORKER_KUBELETS)), [["worker-1"]]);
    assert_eq!(p.total_seconds, 1_111_000 + 111_000);
    assert_eq!(p.lower_bound_seconds, p.total_seconds);

    // Every kubelet at the target: only `complete` is left.
    set_kubelet(&mut o, "controller-0", to);
    set_kubelet(&mut o, "worker-1", to);
    let p = plan_for(&o, &snap, &e.catalog, "v1.16.2", 2, &d);
    let left: Vec<&str> = p
        .stages
        .iter()
        .filter(|s| !s.done)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(left, [COMPLETE]);
    assert!(stage(&p, WORKER_KUBELETS).batches.is_empty());
    assert_eq!(p.total_seconds, 0);

    let snap = Snapshot {
        upgrade: Some(upgrade_record(
            "v1.16.1",
            "v1.16.2",
            KubeUpgradeState::UpgradeComplete,
        )),
        ..Snapshot::default()
    };
    let p = plan_for(&o, &snap, &e.catalog, "v1.16.2", 2, &d);
    assert!(p.stages.iter().all(|s| s.done));
}

#[test]
fn failed_states_count_the_step_as_not_done() {
    let e = example("standard");
    let d = decimal_durations();
    let snap = Snapshot {
        upgrade: Some(upgrade_record(
            "v1.16.1",
            "v1.16.2",
            KubeUpgradeState::UpgradingFirstMasterFailed,
        )),
        ..Snapshot::default()
    };
    let p = plan_for(&e.obs, &snap, &e.catalog, "v1.16.2", 2, &d);
    let done: Vec<bool> = p.stages.iter().map(|s| s.done).collect();
    assert_eq!(done, [true, false, false, false, false, false, false]);
}

// ---- blocked -------------------------------------------------------------------------------

fn blocked(o: &Listing, snap: &Snapshot, catalog: &Catalog, to: &str) -> Vec<String> {
    let p = plan_for(o, snap, catalog, to, 2, &decimal_durations());
    assert!(p.stages.is_empty(), "{to}: a blocked plan has no stages");
    assert_eq!((p.total_seconds, p.lower_bound_seconds), (0, 0));
    assert!(!p.hosts.is_empty(), "the findings are still shown");
    assert!(render_table(&p).contains("BLOCKED"));
    p.blocked
}

fn assert_one(reasons: Vec<String>, needle: &str) {
    assert!(
        reasons.iter().any(|r| r.contains(needle)),
        "{needle:?} not in {reasons:?}"
    );
}

#[test]
fn blocked_reasons() {
    let e = example("standard");
    let none = Snapshot::default();
    assert_one(
        blocked(&e.obs, &none, &e.catalog, "v1.17.0"),
        "v1.17.0 is not in the version catalog",
    );
    assert_one(
        blocked(&e.obs, &none, &e.catalog, "v1.16.1"),
        "the cluster already runs v1.16.1",
    );
    let older = e.catalog.with([meta("v1.16.0", &[])]);
    assert_one(
        blocked(&e.obs, &none, &older, "v1.16.0"),
        "older than the running version v1.16.1",
    );
    let skip = e.catalog.with([meta("v1.17.0", &["v1.16.2"])]);
    assert_one(
        blocked(&e.obs, &none, &skip, "v1.17.0"),
        "no upgrade path from v1.16.1 to v1.17.0 (v1.17.0 upgrades from v1.16.2)",
    );
    let mut mixed = e.obs.clone();
    set_kubelet(&mut mixed, "worker-0", v("v1.16.2"));
    assert_one(
        blocked(&mixed, &none, &e.catalog, "v1.16.2"),
        "several versions (v1.16.1, v1.16.2)",
    );
    let other = Snapshot {
        upgrade: Some(upgrade_record(
            "v1.16.1",
            "v1.16.2",
            KubeUpgradeState::DownloadedImages,
        )),
        ..Snapshot::default()
    };
    assert_one(
        blocked(&e.obs, &other, &skip, "v1.17.0"),
        "an upgrade from v1.16.1 to v1.16.2 is in progress",
    );
    // Not blocked: the same upgrade in progress, even though the cluster runs two versions.
    let same = plan_for(
        &mixed,
        &other,
        &e.catalog,
        "v1.16.2",
        2,
        &decimal_durations(),
    );
    assert!(same.blocked.is_empty(), "{:?}", same.blocked);
}

// ---- scale ---------------------------------------------------------------------------------

#[test]
fn plans_a_few_hundred_workers() {
    let e = example("standard-50-workers");
    let mut o = e.obs.clone();
    // 300 workers: the 50 of the example six times over, with their pods.
    let base_hosts: Vec<HostInfo> = o
        .hosts
        .iter()
        .filter(|h| h.personality == Personality::Worker)
        .cloned()
        .collect();
    let base_nodes = o.nodes.clone();
    let base_pods = o.pods.clone();
    for copy in 1..6 {
        let rename = |n: &str| format!("{n}-c{copy}");
        for h in &base_hosts {
            let mut h = h.clone();
            h.id += 1000 * copy;
            h.hostname = rename(&h.hostname);
            h.roles.retain(|r| r != "ingress");
            o.hosts.push(h);
        }
        for n in base_nodes.iter().filter(|n| n.name.starts_with("worker")) {
            let mut n = n.clone();
            n.name = rename(&n.name);
            o.nodes.push(n);
        }
        for p in base_pods.iter() {
            let Some(node) = p.node.as_deref().filter(|n| n.starts_with("worker")) else {
                continue;
            };
            let mut p = p.clone();
            p.name = rename(&p.name);
            p.node = Some(rename(node));
            o.pods.push(p);
        }
    }
    let start = std::time::Instant::now();
    let p = plan_for(
        &o,
        &Snapshot::default(),
        &e.catalog,
        "v1.16.2",
        10,
        &e.durations,
    );
    let took = start.elapsed();
    let wk = stage(&p, WORKER_KUBELETS);
    let n: usize = wk.batches.iter().map(|b| b.hosts.len()).sum();
    assert_eq!(n, 300);
    eprintln!(
        "300 workers: {} batches in {took:?} ({} full analyses at most)",
        wk.batches.len(),
        wk.batches.len() * (10 + kup_core::plan::MAX_UNSAFE_PROBES)
    );
}

// ---- property test -------------------------------------------------------------------------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
    /// True with probability `1/n`.
    fn one_in(&mut self, n: u32) -> bool {
        self.range(1, n) == 1
    }
}

const FROM: &str = "v1.16.1";

fn random_cluster(rng: &mut Rng) -> Listing {
    let mut o = Listing {
        obs: Observation {
            system_type: SystemType::Standard,
            hosts: Vec::new(),
            nodes: Vec::new(),
            control_plane_pods: Vec::new(),
            alarms: Vec::new(),
            applications: Vec::new(),
            images: Vec::new(),
            networking_version: Some(v(FROM)),
            api_usage: Vec::new(),
            index: Default::default(),
        },
        pods: Vec::new(),
        workloads: Vec::new(),
        pdbs: Vec::new(),
    };
    let workers = rng.range(2, 8);
    let names: Vec<String> = (0..2)
        .map(|i| format!("controller-{i}"))
        .chain((0..workers).map(|i| format!("worker-{i}")))
        .collect();
    let tainted_controllers = rng.one_in(2);
    for (i, name) in names.iter().enumerate() {
        let controller = i < 2;
        let capacity = if controller {
            Capacity {
                cpu_millis: 4000,
                memory_mib: 8192,
            }
        } else {
            Capacity {
                cpu_millis: rng.range(2, 16) * 500,
                memory_mib: rng.range(2, 16) * 1024,
            }
        };
        o.hosts.push(HostInfo {
            id: i as u32 + 1,
            uuid: format!("uuid-{name}"),
            hostname: name.clone(),
            personality: if controller {
                Personality::Controller
            } else {
                Personality::Worker
            },
            subfunctions: vec![if controller { "controller" } else { "worker" }.into()],
            roles: if !controller && rng.one_in(4) {
                vec!["ingress".into()]
            } else {
                Vec::new()
            },
            administrative: AdminState::Unlocked,
            operational: OperState::Enabled,
            availability: Availability::Available,
            task: None,
            active_controller: i == 0,
            capacity,
            disk_free_gib: 100,
        });
        let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), name.clone())]);
        let mut taints = Vec::new();
        if controller {
            if tainted_controllers {
                taints.push(Taint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    effect: "NoSchedule".into(),
                });
            }
        } else {
            labels.insert(
                "zone".into(),
                if rng.one_in(2) { "a" } else { "b" }.to_string(),
            );
            if rng.one_in(3) {
                labels.insert("disk".into(), "ssd".into());
            }
            if rng.one_in(5) {
                taints.push(Taint {
                    key: "dedicated".into(),
                    effect: if rng.one_in(2) {
                        "NoSchedule"
                    } else {
                        "NoExecute"
                    }
                    .into(),
                });
            }
            if rng.one_in(6) {
                taints.push(Taint {
                    key: "soft".into(),
                    effect: "PreferNoSchedule".into(),
                });
            }
        }
        o.nodes.push(NodeInfo {
            name: name.clone(),
            ready: true,
            unschedulable: false,
            kubelet_version: v(FROM),
            labels,
            taints,
        });
        if controller {
            for c in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                o.control_plane_pods.push(ControlPlanePod {
                    host: name.clone(),
                    component: c.into(),
                    version: v(FROM),
                    ready: true,
                });
            }
        }
    }

    let mut used: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    // Sometimes a DaemonSet on every host it may run on: it uses room, and is never evicted.
    if rng.one_in(3) {
        let req = Capacity {
            cpu_millis: 100,
            memory_mib: 128,
        };
        let mut n = 0;
        for node in o.nodes.clone() {
            if node
                .taints
                .iter()
                .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            {
                continue;
            }
            o.pods.push(PodInfo {
                namespace: "kube-system".into(),
                name: format!("agent-{}", node.name),
                node: Some(node.name.clone()),
                ready: true,
                phase: kup_types::PodPhase::Running,
                owner_kind: "DaemonSet".into(),
                owner: "agent".into(),
                labels: BTreeMap::from([("app".to_string(), "agent".to_string())]).into(),
                volumes: Vec::new(),
                requests: req,
                node_selector: BTreeMap::new(),
                tolerations: Vec::new(),
            });
            let u = used.entry(node.name.clone()).or_default();
            u.0 += req.cpu_millis;
            u.1 += req.memory_mib;
            n += 1;
        }
        o.workloads.push(WorkloadInfo {
            namespace: "kube-system".into(),
            name: "agent".into(),
            kind: "DaemonSet".into(),
            replicas: n,
            ready_replicas: n,
        });
    }

    let workloads = rng.range(1, 6);
    for w in 0..workloads {
        let name = format!("app{w}");
        let kind = if rng.one_in(2) {
            "Deployment"
        } else {
            "StatefulSet"
        };
        let replicas = rng.range(1, 4);
        let req = Capacity {
            cpu_millis: rng.range(1, 20) * 100,
            memory_mib: rng.range(1, 32) * 128,
        };
        let mut labels = BTreeMap::from([("app".to_string(), name.clone())]);
        if rng.one_in(3) {
            labels.insert("tier".into(), "front".into());
        }
        let node_selector = match rng.range(1, 8) {
            1 => BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            2 => BTreeMap::from([("zone".to_string(), "a".to_string())]),
            _ => BTreeMap::new(),
        };
        let tolerations = match rng.range(1, 8) {
            1 => vec!["dedicated".to_string()],
            2 => vec!["*".to_string()],
            _ => Vec::new(),
        };
        let mut ready = 0;
        for r in 0..replicas {
            let mut pod = PodInfo {
                namespace: "default".into(),
                name: format!("{name}-{r}"),
                node: None,
                ready: false,
                phase: kup_types::PodPhase::Running,
                owner_kind: kind.into(),
                owner: name.clone(),
                labels: labels.clone().into(),
                volumes: Vec::new(),
                requests: req,
                node_selector: node_selector.clone(),
                tolerations: tolerations.clone(),
            };
            let fits: Vec<&NodeInfo> = o
                .nodes
                .iter()
                .filter(|n| eligible(&pod, n))
                .filter(|n| {
                    let cap = o
                        .hosts
                        .iter()
                        .find(|h| h.hostname == n.name)
                        .unwrap()
                        .capacity;
                    let u = used.get(&n.name).copied().unwrap_or_default();
                    u.0 + req.cpu_millis <= cap.cpu_millis && u.1 + req.memory_mib <= cap.memory_mib
                })
                .collect();
            if !fits.is_empty() {
                let n = fits[rng.range(0, fits.len() as u32 - 1) as usize]
                    .name
                    .clone();
                let u = used.entry(n.clone()).or_default();
                u.0 += req.cpu_millis;
                u.1 += req.memory_mib;
                pod.node = Some(n);
                pod.ready = true;
                ready += 1;
            }
            o.pods.push(pod);
        }
        o.workloads.push(WorkloadInfo {
            namespace: "default".into(),
            name: name.clone(),
            kind: kind.into(),
            replicas,
            ready_replicas: ready,
        });
        if rng.one_in(2) {
            let (min_available, max_unavailable) = if rng.one_in(2) {
                (Some(rng.range(0, replicas)), None)
            } else {
                (None, Some(rng.range(0, replicas)))
            };
            o.pdbs.push(PdbInfo {
                namespace: "default".into(),
                name: format!("{name}-pdb"),
                selector: BTreeMap::from([("app".to_string(), name.clone())]),
                min_available,
                max_unavailable,
                unhealthy_pod_eviction_policy: None,
            });
        }
    }
    // A PDB over several workloads, overlapping their own.
    if rng.one_in(3) {
        o.pdbs.push(PdbInfo {
            namespace: "default".into(),
            name: "front-pdb".into(),
            selector: BTreeMap::from([("tier".to_string(), "front".to_string())]),
            min_available: None,
            max_unavailable: Some(rng.range(1, 3)),
            unhealthy_pod_eviction_policy: None,
        });
    }
    o
}

// The independent checker: written from the Kubernetes rules, sharing no code with the
// planner or the safety analysis.

fn eligible(p: &PodInfo, n: &NodeInfo) -> bool {
    let selected = p
        .node_selector
        .iter()
        .all(|(k, val)| n.labels.get(k) == Some(val));
    let tolerated = n.taints.iter().all(|t| {
        t.effect == "PreferNoSchedule" || p.tolerations.iter().any(|k| k == "*" || *k == t.key)
    });
    selected && tolerated
}

fn pdb_violations(o: &Listing, batch: &BTreeSet<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for pdb in &o.pdbs {
        let matching: Vec<&PodInfo> = o
            .pods
            .iter()
            .filter(|p| {
                p.namespace == pdb.namespace
                    && pdb
                        .selector
                        .iter()
                        .all(|(k, val)| p.labels.get(k) == Some(val))
            })
            .collect();
        let healthy = matching.iter().filter(|p| p.ready).count() as i64;
        let required = match (pdb.min_available, pdb.max_unavailable) {
            (Some(m), _) => i64::from(m),
            (None, Some(m)) => matching.len() as i64 - i64::from(m),
            (None, None) => 0,
        };
        let down = matching
            .iter()
            .filter(|p| p.node.as_deref().is_some_and(|n| batch.contains(n)))
            .count() as i64;
        // A budget already below its minimum allows no disruption, but is not broken by none.
        if down > (healthy - required).max(0) {
            out.push(format!(
                "pdb {}: {down} down, {healthy} healthy, {required} required",
                pdb.name
            ));
        }
    }
    out
}

/// Whether every evicted pod can be placed on the remaining schedulable hosts, by
/// backtracking over every assignment.
fn placeable(o: &Listing, batch: &BTreeSet<&str>) -> bool {
    let mut free: Vec<(&NodeInfo, i64, i64)> = o
        .nodes
        .iter()
        .filter(|n| !batch.contains(n.name.as_str()) && n.ready && !n.unschedulable)
        .map(|n| {
            let cap = o
                .hosts
                .iter()
                .find(|h| h.hostname == n.name)
                .unwrap()
                .capacity;
            let (cpu, mem) = o
                .pods
                .iter()
                .filter(|p| p.node.as_deref() == Some(n.name.as_str()))
                .fold((0, 0), |(c, m), p| {
                    (
                        c + i64::from(p.requests.cpu_millis),
                        m + i64::from(p.requests.memory_mib),
                    )
                });
            (
                n,
                i64::from(cap.cpu_millis) - cpu,
                i64::from(cap.memory_mib) - mem,
            )
        })
        .collect();
    let mut evicted: Vec<&PodInfo> = o
        .pods
        .iter()
        .filter(|p| p.node.as_deref().is_some_and(|n| batch.contains(n)))
        .filter(|p| !matches!(p.owner_kind.as_str(), "DaemonSet" | "Node"))
        .collect();
    // Identical pods next to each other, so each takes a host no earlier than the previous.
    evicted.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.requests.cpu_millis + p.requests.memory_mib),
            p.owner.clone(),
        )
    });
    fn same(a: &PodInfo, b: &PodInfo) -> bool {
        a.requests == b.requests
            && a.node_selector == b.node_selector
            && a.tolerations == b.tolerations
    }
    fn go(
        pods: &[&PodInfo],
        prev: Option<(&PodInfo, usize)>,
        free: &mut [(&NodeInfo, i64, i64)],
    ) -> bool {
        let Some((p, rest)) = pods.split_first() else {
            return true;
        };
        let start = match prev {
            Some((q, h)) if same(p, q) => h,
            _ => 0,
        };
        for h in start..free.len() {
            let (n, cpu, mem) = free[h];
            let (c, m) = (
                i64::from(p.requests.cpu_millis),
                i64::from(p.requests.memory_mib),
            );
            if cpu >= c && mem >= m && eligible(p, n) {
                free[h] = (n, cpu - c, mem - m);
                if go(rest, Some((p, h)), free) {
                    return true;
                }
                free[h] = (n, cpu, mem);
            }
        }
        false
    }
    go(&evicted, None, &mut free)
}

#[test]
fn property_batches_drain_in_waves_that_keep_budgets_and_place_every_pod() {
    let mut rng = Rng(0x6b75_7020_706c_616e);
    let catalog = Catalog::new([meta(FROM, &[]), meta("v1.16.2", &[FROM])]);
    let durations = decimal_durations();
    let (mut checked, mut multi, mut unsafe_alone, mut waved) = (0, 0, 0, 0);
    for case in 0..300 {
        let o = random_cluster(&mut rng);
        let cap = rng.range(1, 4);
        let p = plan_for(
            &o,
            &Snapshot::default(),
            &catalog,
            "v1.16.2",
            cap,
            &durations,
        );
        assert!(p.blocked.is_empty(), "case {case}: {:?}", p.blocked);
        let again = plan_for(
            &o,
            &Snapshot::default(),
            &catalog,
            "v1.16.2",
            cap,
            &durations,
        );
        assert_eq!(p, again, "case {case}: deterministic");
        let wk = stage(&p, WORKER_KUBELETS);
        let workers: BTreeSet<&str> = o
            .hosts
            .iter()
            .filter(|h| h.personality == Personality::Worker)
            .map(|h| h.hostname.as_str())
            .collect();
        let mut seen: Vec<&str> = wk
            .batches
            .iter()
            .flat_map(|b| b.hosts.iter().map(String::as_str))
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            workers.iter().copied().collect::<Vec<_>>(),
            "case {case}: every worker in exactly one batch"
        );
        let alone = analyze_all(&o, &o.index());
        for b in &wk.batches {
            assert!(
                b.hosts.len() <= cap as usize,
                "case {case}: cap {cap}: {b:?}"
            );
            let batch: BTreeSet<&str> = b.hosts.iter().map(String::as_str).collect();
            if b.verdict == Verdict::Unsafe {
                assert_eq!(b.hosts.len(), 1, "case {case}: {b:?}");
                let h = alone.iter().find(|h| h.host == b.hosts[0]).unwrap();
                assert_eq!(h.verdict, Verdict::Unsafe, "case {case}: {b:?}");
                unsafe_alone += 1;
                continue;
            }
            // Drained in waves: each wave keeps every budget (each host alone, at least).
            let wl = o.index();
            let mut an = kup_core::safety::Analyzer::new(&o, &wl);
            let hosts: Vec<&str> = b.hosts.iter().map(String::as_str).collect();
            let waves = an.drain_waves(&hosts);
            for wave in &waves {
                let together: BTreeSet<&str> = wave.iter().map(|&i| hosts[i]).collect();
                let broken = pdb_violations(&o, &together);
                assert!(
                    broken.is_empty(),
                    "case {case}: wave {together:?} of batch {:?} ({}) breaks {broken:?}\n{o:#?}",
                    b.hosts,
                    b.verdict
                );
            }
            assert_eq!(
                b.seconds,
                waves.len() as u64 * durations[&StepKind::Lock]
                    + durations[&StepKind::Kubelet]
                    + durations[&StepKind::Unlock],
                "case {case}: a batch takes its waves of drains, a kubelet and an unlock"
            );
            waved += usize::from(waves.len() > 1);
            assert!(
                placeable(&o, &batch),
                "case {case}: batch {:?} ({}): an evicted pod fits nowhere\n{o:#?}",
                b.hosts,
                b.verdict
            );
            checked += 1;
            multi += usize::from(b.hosts.len() > 1);
        }
    }
    eprintln!(
        "checked {checked} safe batches ({multi} of several hosts, {waved} drained in several \
         waves), {unsafe_alone} unsafe"
    );
    assert!(waved >= 10, "too few batches drained in waves: {waved}");
    assert!(
        multi >= 100,
        "too few multi-host batches to mean much: {multi}"
    );
    assert!(
        unsafe_alone >= 50,
        "too few unsafe workers to mean much: {unsafe_alone}"
    );
}

/// The incremental batch evaluation (one index, hosts added and taken out again, budgets and
/// counts as running sums) judges every batch exactly as the straightforward one does (the
/// cluster indexed afresh and the batch analysed at once).
#[test]
fn property_incremental_batch_evaluation_equals_the_straightforward_one() {
    use kup_core::safety::{Analyzer, BatchEval, analyze_batch};
    let mut rng = Rng(0x696e_6372_656d_656e);
    let mut compared = 0;
    for case in 0..200 {
        let o = random_cluster(&mut rng);
        let wl = o.index();
        let mut an = Analyzer::new(&o, &wl);
        let mut eval = BatchEval::new();
        let mut batch: Vec<String> = Vec::new();
        let names: Vec<String> = o.hosts.iter().map(|h| h.hostname.clone()).collect();
        for step in 0..12 {
            if !batch.is_empty() && rng.one_in(3) {
                eval.pop();
                batch.pop();
            } else {
                let h = names[rng.range(0, names.len() as u32 - 1) as usize].clone();
                if batch.contains(&h) {
                    continue;
                }
                eval.add(&an, &h);
                batch.push(h);
            }
            let incremental = eval.evaluate(&mut an);
            let hosts: Vec<&str> = batch.iter().map(String::as_str).collect();
            let straight = analyze_batch(&o, &o.index(), &hosts);
            assert_eq!(incremental, straight, "case {case}, step {step}: {hosts:?}");
            compared += 1;
        }
    }
    assert!(compared > 1500, "{compared} batches compared");
}

/// The index a driver keeps current through small changes (pods placed, moved, deleted,
/// ready or not) gives the same analysis as one built afresh from the changed listing.
#[test]
fn property_a_maintained_index_equals_a_fresh_one() {
    let mut rng = Rng(0x6d61_696e_7461_696e);
    for case in 0..100 {
        let mut o = random_cluster(&mut rng);
        let mut wl = o.index();
        let nodes: Vec<String> = o.nodes.iter().map(|n| n.name.clone()).collect();
        // The listing's pods have the ids the index gave them, in order.
        let mut ids: Vec<Option<kup_types::PodId>> = (0..o.pods.len())
            .map(|i| Some(i as kup_types::PodId))
            .collect();
        for _ in 0..40 {
            let i = rng.range(0, o.pods.len() as u32 - 1) as usize;
            let Some(id) = ids[i] else { continue };
            match rng.range(0, 3) {
                0 => {
                    let node = (!rng.one_in(4))
                        .then(|| nodes[rng.range(0, nodes.len() as u32 - 1) as usize].clone());
                    wl.set_node(id, node.clone());
                    o.pods[i].phase = if node.is_some() {
                        PodPhase::Running
                    } else {
                        o.pods[i].ready = false;
                        PodPhase::Pending
                    };
                    o.pods[i].node = node;
                }
                1 => {
                    let ready = rng.one_in(2);
                    wl.set_ready(id, ready);
                    o.pods[i].ready = ready && o.pods[i].node.is_some();
                }
                2 => {
                    wl.remove(id);
                    ids[i] = None;
                }
                _ => {
                    let mut p = o.pods[i].clone();
                    p.name = format!("{}-copy", p.name);
                    let new = wl.insert(p.clone());
                    o.pods.push(p);
                    ids.push(Some(new));
                }
            }
        }
        let kept: Vec<PodInfo> = o
            .pods
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        o.pods = kept;
        assert_eq!(wl.len(), o.pods.len(), "case {case}");
        assert_eq!(
            analyze_all(&o, &wl),
            analyze_all(&o, &o.index()),
            "case {case}"
        );
    }
}
