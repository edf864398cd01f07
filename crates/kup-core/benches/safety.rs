//! `analyze_all` over a synthetic cluster of 5,000 nodes / 150,000 pods / 10,000 PDBs, and
//! over 1/4 and 1/2 of it to show how the cost grows. Plain timing (criterion is not a
//! dependency): `cargo bench -p kup-core --bench safety`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kup_core::safety::{Verdict, analyze_all, analyze_batch, analyze_host};
use kup_types::{
    AdminState, Availability, Capacity, HostInfo, KubeVersion, Listing, NodeInfo, Observation,
    OperState, PdbInfo, Personality, PodInfo, SystemType, Taint, VolumeKind,
};

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const CONTROLLERS: usize = 3;
const NAMESPACES: usize = 200;

fn pod(ns: String, name: String, node: &str, kind: &str, owner: &str) -> PodInfo {
    PodInfo {
        namespace: ns,
        name,
        node: Some(node.to_string()),
        ready: true,
        phase: kup_types::PodPhase::Running,
        owner_kind: kind.into(),
        owner: owner.into(),
        labels: BTreeMap::from([("app".to_string(), owner.to_string())]).into(),
        volumes: Vec::new(),
        requests: Capacity::default(),
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
    }
}

/// `nodes` hosts (3 etcd controllers, the rest workers, 1 in 100 of them ingress), two
/// DaemonSets on every worker, Deployments/StatefulSets of 3–12 replicas filling up to `pods`
/// pods, a PDB on each of the first `pdbs` workloads, plus a few unmanaged pods, Jobs, emptyDir
/// volumes and node selectors so every rule has work to do.
fn synth(nodes: usize, pods: usize, pdbs: usize) -> Listing {
    let mut rng = Rng(42);
    let mut o = Listing {
        obs: Observation {
            system_type: SystemType::Standard,
            hosts: Vec::with_capacity(nodes),
            nodes: Vec::with_capacity(nodes),
            control_plane_pods: Vec::new(),
            alarms: Vec::new(),
            applications: Vec::new(),
            images: Vec::new(),
            networking_version: None,
            api_usage: Vec::new(),
            index: Default::default(),
        },
        pods: Vec::with_capacity(pods),
        workloads: Vec::new(),
        pdbs: Vec::with_capacity(pdbs),
    };
    let version = KubeVersion::parse("v1.42.1").unwrap();
    let mut workers = Vec::new();
    for i in 0..nodes {
        let controller = i < CONTROLLERS;
        let name = if controller {
            format!("controller-{i}")
        } else {
            format!("worker-{}", i - CONTROLLERS)
        };
        let personality = if controller {
            Personality::Controller
        } else {
            Personality::Worker
        };
        let mut roles = Vec::new();
        if controller {
            roles.push("etcd".to_string());
        } else if i % 100 == 7 {
            roles.push("ingress".to_string());
        }
        o.hosts.push(HostInfo {
            id: u32::try_from(i + 1).unwrap(),
            uuid: format!("uuid-{i}"),
            hostname: name.clone(),
            personality,
            subfunctions: vec![personality.to_string()],
            roles,
            administrative: AdminState::Unlocked,
            operational: OperState::Enabled,
            availability: Availability::Available,
            task: None,
            active_controller: i == 0,
            capacity: Capacity {
                cpu_millis: 64_000,
                memory_mib: 262_144,
            },
            disk_free_gib: 100,
        });
        o.nodes.push(NodeInfo {
            name: name.clone(),
            ready: true,
            unschedulable: false,
            kubelet_version: version,
            labels: BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.clone()),
                ("zone".to_string(), format!("z{}", i % 3)),
                ("pool".to_string(), format!("p{}", i % 10)),
            ]),
            taints: if controller {
                vec![Taint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    effect: "NoSchedule".into(),
                }]
            } else {
                Vec::new()
            },
        });
        if !controller {
            workers.push(name);
        }
    }

    for ds in ["kube-proxy", "node-exporter"] {
        for w in &workers {
            let mut p = pod(
                "kube-system".into(),
                format!("{ds}-{w}"),
                w,
                "DaemonSet",
                ds,
            );
            p.volumes = vec![VolumeKind::HostPath, VolumeKind::EmptyDir];
            p.requests = Capacity {
                cpu_millis: 100,
                memory_mib: 128,
            };
            p.tolerations = vec!["*".into()];
            o.pods.push(p);
        }
    }

    let mut w = 0usize;
    while o.pods.len() < pods {
        let ns = format!("ns-{}", w % NAMESPACES);
        let owner = format!("app-{w}");
        let kind = if w % 10 == 3 {
            "StatefulSet"
        } else {
            "Deployment"
        };
        let replicas = 3 + rng.below(10);
        let cpu = u32::try_from(100 + rng.below(10) * 100).unwrap();
        let mem = u32::try_from(128 * (1 + rng.below(16))).unwrap();
        for r in 0..replicas.min(pods - o.pods.len()) {
            let node = &workers[rng.below(workers.len())];
            let (kind, owner) = match rng.below(1000) {
                0 => ("Pod", format!("{owner}-debug-{r}")),
                1 => ("Job", format!("{owner}-job")),
                _ => (kind, owner.clone()),
            };
            let mut p = pod(ns.clone(), format!("{owner}-{r}"), node, kind, &owner);
            std::sync::Arc::make_mut(&mut p.labels)
                .insert("pod-template-hash".into(), format!("h{w}"));
            std::sync::Arc::make_mut(&mut p.labels).insert("tier".into(), format!("t{}", w % 5));
            p.ready = rng.below(40) != 0;
            p.requests = Capacity {
                cpu_millis: cpu,
                memory_mib: mem,
            };
            if w.is_multiple_of(50) {
                p.volumes.push(VolumeKind::EmptyDir);
            }
            if w % 10 == 1 {
                p.node_selector.insert("zone".into(), format!("z{}", w % 3));
            }
            if w % 97 == 5 {
                p.node_selector
                    .insert("kubernetes.io/hostname".into(), node.clone());
            }
            o.pods.push(p);
        }
        if o.pdbs.len() < pdbs {
            o.pdbs.push(PdbInfo {
                namespace: ns,
                name: format!("{owner}-pdb"),
                selector: BTreeMap::from([("app".to_string(), owner)]),
                min_available: w
                    .is_multiple_of(2)
                    .then(|| u32::try_from(replicas - 1).unwrap()),
                max_unavailable: (w % 2 == 1).then_some(1),
                unhealthy_pod_eviction_policy: None,
            });
        }
        w += 1;
    }
    // Namespace-wide PDBs if there were fewer workloads than PDBs wanted.
    let mut t = 0;
    while o.pdbs.len() < pdbs {
        o.pdbs.push(PdbInfo {
            namespace: format!("ns-{}", t % NAMESPACES),
            name: format!("tier-{t}"),
            selector: BTreeMap::from([("tier".to_string(), format!("t{}", t % 5))]),
            min_available: None,
            max_unavailable: Some(u32::try_from(1 + t % 7).unwrap()),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        });
        t += 1;
    }
    o.reindex();
    o
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        let r = black_box(f());
        best = best.min(start.elapsed());
        out = Some(r);
    }
    (best, out.expect("runs > 0"))
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full { 1 } else { 50 };
    // `index` is analyze_host of one worker: building the index dominates it.
    println!(
        "{:>6} {:>8} {:>6} {:>11} {:>9} {:>12} {:>9} {:>10} {:>6} {:>6} {:>6}",
        "nodes",
        "pods",
        "pdbs",
        "analyze_all",
        "ns/pod",
        "ns/(p·lg p)",
        "index",
        "µs/host",
        "ok",
        "warn",
        "unsafe"
    );
    let mut sizes = Vec::new();
    for div in [4, 2, 1] {
        let (n, p, b) = (
            5_000 / div / scale,
            150_000 / div / scale,
            10_000 / div / scale,
        );
        let o = synth(n, p, b);
        // What a driver does once, then keeps current: outside the timings.
        let wl = o.index();
        let (d, all) = time(5, || analyze_all(&o, &wl));
        assert_eq!(all.len(), n);
        let (one, _) = time(5, || analyze_host(&o, &wl, "worker-0"));
        let count = |v| all.iter().filter(|h| h.verdict == v).count();
        let pf = p as f64;
        let ns = d.as_nanos() as f64;
        let per_host = (d.saturating_sub(one)).as_nanos() as f64 / n as f64 / 1e3;
        println!(
            "{:>6} {:>8} {:>6} {:>9.1}ms {:>9.0} {:>12.1} {:>7.1}ms {:>10.1} {:>6} {:>6} {:>6}",
            n,
            p,
            b,
            ns / 1e6,
            ns / pf,
            ns / (pf * pf.log2()),
            one.as_nanos() as f64 / 1e6,
            per_host,
            count(Verdict::Ok),
            count(Verdict::Warning),
            count(Verdict::Unsafe),
        );
        sizes.push((o, wl, n));
    }
    let (o, wl, n) = sizes.last().expect("three sizes");
    let batch: Vec<String> = (0..10.min(*n - CONTROLLERS))
        .map(|i| format!("worker-{}", i * 7))
        .collect();
    let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
    let (d, b) = time(3, || analyze_batch(o, wl, &batch));
    println!(
        "analyze_batch of {} workers on the largest cluster: {:.1}ms ({}, {} findings)",
        batch.len(),
        d.as_nanos() as f64 / 1e6,
        b.verdict,
        b.findings.len()
    );
}
