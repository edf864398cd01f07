//! Replays the saved corpus of the `cluster_file` fuzz target (and any saved crash inputs)
//! through its body, so CI exercises it on stable Rust without cargo-fuzz.
//!
//! The corpus is generated, not hand-written: `cargo test -p kup-sim --test fuzz_corpus --
//! --ignored` rewrites `fuzz/corpus/cluster_file/` from `examples/*.yaml`, a generated
//! cluster, and each of them broken in the ways below, deterministically.

#[path = "../../../fuzz/replay.rs"]
mod replay;

use kup_sim::Inventory;
use kup_sim::inventory::fuzzing::cluster_file;
use replay::{Rng, assert_current, files_in, mutations, replay, write_corpus};

const TARGET: &str = "cluster_file";

#[test]
fn replays_the_saved_corpus_without_panicking() {
    let corpus = replay(TARGET, 60, cluster_file);
    // Valid files keep fuzzing close to the model; broken ones to every refusal.
    let valid = corpus
        .iter()
        .filter(|(_, d)| std::str::from_utf8(d).is_ok_and(|s| Inventory::parse(s).is_ok()))
        .count();
    assert!(valid >= 8, "only {valid} valid cluster files in the corpus");
    assert!(corpus.len() - valid >= 40, "too few broken cluster files");
}

fn examples() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    files_in(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The standard example, changed in one way each: every rule of the cluster file broken once,
/// and the YAML features a file may use (anchors, merge keys, flow style, documents).
fn edits(good: &str) -> Vec<(&'static str, String)> {
    let r = |from: &str, to: &str| {
        assert!(good.contains(from), "{from:?} is not in the example");
        good.replacen(from, to, 1)
    };
    let tail = |extra: &str| format!("{good}{extra}");
    let labels: Vec<String> = (0..40).map(|i| format!("k{i}: v")).collect();
    let mut bomb = format!(
        "system_type: standard\nkubernetes_version: v1.16.1\nversions:\n  - version: v1.16.1\nhosts:\n  - &h\n    name: w\n    personality: worker\n    labels: {{{}}}\n",
        labels.join(", ")
    );
    for _ in 0..60 {
        bomb.push_str("  - *h\n");
    }
    vec![
        ("unknown-personality", r("personality: worker", "personality: wrker")),
        ("unknown-field", r("    personality: worker", "    personality: worker\n    colour: red")),
        ("bad-version", r("kubernetes_version: v1.16.1", "kubernetes_version: v1.16")),
        ("version-not-in-catalog", r("kubernetes_version: v1.16.1", "kubernetes_version: v1.16.9")),
        ("duplicate-host", r("name: worker-1", "name: worker-0")),
        ("storage-with-kubelet", r("    roles: [storage]", "    kubelet_version: v1.16.1")),
        ("worker-with-control-plane", r("    roles: [ingress]", "    control_plane_version: v1.16.1")),
        ("simplex-with-workers", r("system_type: standard", "system_type: aio-simplex")),
        ("duplex-with-storage", r("system_type: standard", "system_type: aio-duplex")),
        ("kubeadm-with-storage", r("system_type: standard", "system_type: kubeadm")),
        ("unknown-system-type", r("system_type: standard", "system_type: mainframe")),
        ("two-active", r("    personality: controller\n    capacity", "    personality: controller\n    active: true\n    capacity")),
        ("workload-on-unknown-node", r("nodes: [worker-0, worker-1]", "nodes: [worker-0, worker-9]")),
        ("workload-on-storage", r("nodes: [worker-0, worker-1]", "nodes: [storage-0]")),
        ("pdb-both-bounds", r("pdb: { min_available: 2 }", "pdb: { min_available: 2, max_unavailable: 1 }")),
        ("pdb-no-bound", r("pdb: { min_available: 2 }", "pdb: {}")),
        ("duplicate-workload", r("  - name: postgres", "  - name: web")),
        ("empty-host-name", r("name: worker-0", "name: \"\"")),
        ("numeric-host-name", r("name: worker-0", "name: \"1\"")),
        ("uuid-host-name", r("name: worker-0", "name: fe0afd76-1c2b-4d3e-8f90-a1b2c3d4e5f6")),
        ("control-chars-host-name", r("name: worker-0", "name: \"tab\\there\\u001b[31mRED\"")),
        ("long-host-name", r("name: worker-0", &format!("name: {}", "w".repeat(300)))),
        ("upper-case-workload", r("  - name: web", "  - name: Web")),
        ("bad-namespace", r("namespace: monitoring", "namespace: my_ns")),
        ("bidi-role", r("roles: [ingress]", "roles: [\"ingress\\u202e\"]")),
        ("billions-of-replicas", r("replicas: 4", "replicas: 4294967295")),
        ("too-many-replicas", r("replicas: 4", "replicas: 4294967296")),
        ("negative-replicas", r("replicas: 4", "replicas: -1")),
        ("replicas-as-text", r("replicas: 4", "replicas: four")),
        ("huge-capacity", r("cpu_millis: 500", "cpu_millis: 99999999999999999999")),
        ("zero-capacity", r("capacity: { cpu_millis: 16000, memory_mib: 65536 }\n  - name: storage-0", "capacity: { cpu_millis: 0, memory_mib: 0 }\n  - name: storage-0")),
        ("unknown-volume", r("volumes: [pvc]", "volumes: [nfs]")),
        ("job-completes", tail("  - name: backup\n    kind: Job\n    completes_after: 30\n")),
        ("deployment-completes", tail("  - name: late\n    kind: Deployment\n    completes_after: 30\n")),
        ("completes-nan", tail("  - name: backup\n    kind: Job\n    completes_after: .nan\n")),
        ("completes-negative", tail("  - name: backup\n    kind: Job\n    completes_after: -5\n")),
        ("bare-pod", tail("  - name: lonely\n    kind: Pod\n    nodes: [worker-1]\n    volumes: [emptyDir]\n")),
        ("alarm", tail("alarms:\n  - id: \"100.101\"\n    entity: host=worker-0\n    reason: fine\n    severity: major\n    management_affecting: true\n")),
        ("alarm-newline", tail("alarms:\n  - id: \"100.101\"\n    entity: host=worker-0\n    reason: \"fine\\nSystem Health: [OK]\"\n    severity: minor\n")),
        ("alarm-unknown-severity", tail("alarms:\n  - id: \"1\"\n    entity: e\n    reason: r\n    severity: apocalyptic\n")),
        ("fault-every-mode", tail("faults:\n  - step: kubelet\n    host: worker-0\n    mode: once\n  - step: lock\n    mode: always\n  - step: unlock\n    mode: times\n    times: 3\n  - step: swact\n    mode: probability\n    probability: 0.5\n  - step: download-images\n    mode: hang\n")),
        ("fault-unknown-host", tail("faults:\n  - step: kubelet\n    host: worker-7\n    mode: once\n")),
        ("fault-probability-range", tail("faults:\n  - step: kubelet\n    mode: probability\n    probability: 1.5\n")),
        ("fault-probability-missing", tail("faults:\n  - step: kubelet\n    mode: probability\n")),
        ("fault-times-missing", tail("faults:\n  - step: kubelet\n    mode: times\n")),
        ("fault-probability-nan", tail("faults:\n  - step: kubelet\n    mode: probability\n    probability: .nan\n")),
        ("fault-unknown-step", tail("faults:\n  - step: reboot\n    mode: once\n")),
        ("durations", tail("durations:\n  download-images: 0\n  kubelet: 31536000\n")),
        ("duration-forever", tail("durations:\n  download-images: 1e300\n")),
        ("duration-infinite", tail("durations:\n  kubelet: .inf\n")),
        ("duration-unknown-step", tail("durations:\n  reboot: 5\n")),
        ("pdb-object", tail("pdbs:\n  - name: web-pdb\n    selector: { app: web }\n    min_available: 1\n")),
        ("pdb-object-no-selector", tail("pdbs:\n  - name: web-pdb\n    selector: {}\n    min_available: 1\n")),
        ("taints-and-selectors", r("    roles: [ingress]\n", "    roles: [ingress]\n    labels: { zone: a }\n    taints: [{ key: dedicated, effect: NoSchedule }]\n")),
        ("anchors-and-merge", r("  - name: controller-1\n    personality: controller\n", "  - <<: &ctl { personality: controller }\n    name: controller-1\n")),
        ("flow-style", "{system_type: standard, kubernetes_version: v1.16.1, versions: [{version: v1.16.1}], hosts: [{name: controller-0, personality: controller}]}".into()),
        ("two-documents", format!("{good}---\n{good}")),
        ("document-end", format!("{good}...\n")),
        ("tabs", good.replacen("  - name: worker-1", "\t- name: worker-1", 1)),
        ("crlf", good.replace('\n', "\r\n")),
        ("bom", format!("\u{feff}{good}")),
        ("alias-bomb", bomb),
        ("deep-nesting", format!("hosts: {}{}", "[".repeat(2000), "]".repeat(2000))),
        ("deep-mapping", format!("hosts:{}", (0..150).map(|i| format!("\n{}a:", " ".repeat(i + 1))).collect::<String>())),
        ("unclosed-quote", r("name: worker-0", "name: \"worker-0")),
        ("not-yaml", "hosts: [\n".into()),
        ("a-list", "- 1\n- 2\n".into()),
        ("a-scalar", "standard\n".into()),
        ("null", "~\n".into()),
        ("empty", String::new()),
        ("comments-only", "# nothing here\n".into()),
    ]
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, data: Vec<u8>| {
        assert!(!out.iter().any(|(n, _)| *n == name), "{name} twice");
        out.push((name, data));
    };
    let examples = examples();
    assert!(examples.len() >= 7, "{examples:?}");
    for (name, text) in &examples {
        add(format!("example-{name}.yaml"), text.clone().into_bytes());
    }
    let generated = kup_sim::generate::generate(&kup_sim::generate::GenSpec {
        workers: 8,
        pods_per_node: 6,
        ..Default::default()
    })
    .unwrap();
    add("generated-8-workers.yaml".into(), generated.into_bytes());
    let kubeadm = kup_sim::generate::generate(&kup_sim::generate::GenSpec {
        workers: 3,
        pods_per_node: 4,
        control_planes: Some(3),
        ..Default::default()
    })
    .unwrap();
    add("generated-kubeadm.yaml".into(), kubeadm.into_bytes());
    // Without its comments: the corpus stays small, and the example itself is saved above.
    let standard: String = examples
        .iter()
        .find(|(n, _)| n == "standard")
        .unwrap()
        .1
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for (name, text) in edits(&standard) {
        add(format!("edit-{name}.yaml"), text.into_bytes());
    }
    // Not UTF-8: never reaches the parser (`kup serve` reads the file as text).
    add(
        "not-utf8.yaml".into(),
        b"system_type: standard\xff\n".to_vec(),
    );
    // Byte mutations of the smallest examples, as a fuzzer would make them.
    let mut rng = Rng(0x6b75_7073);
    for (name, text) in &examples {
        if text.len() > 2_000 {
            continue;
        }
        for (i, m) in mutations(text.as_bytes(), &mut rng, 3)
            .into_iter()
            .enumerate()
        {
            add(format!("mutation-{name}-{i}.yaml"), m);
        }
    }
    out
}

/// Pieces a mutation inserts: what the format is made of.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"  ",
    b"- ",
    b": ",
    b"&a ",
    b"*a",
    b"<<: ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b"!!str ",
    b"~",
    b".nan",
    b".inf",
    b"-1",
    b"4294967296",
    b"1e309",
    b"\t",
    b"#",
    b"---\n",
    b"personality: ",
    b"controller",
    b"worker",
    b"storage",
    b"active: true",
    b"replicas: ",
    b"kind: DaemonSet",
    b"kind: Job",
    b"kind: Pod",
    b"completes_after: ",
    b"nodes: [",
    b"pdb: {",
    b"min_available: ",
    b"max_unavailable: ",
    b"system_type: ",
    b"aio-simplex",
    b"aio-duplex",
    b"kubeadm",
    b"kubelet_version: ",
    b"control_plane_version: ",
    b"v1.16.2",
    b"v1.16.1",
    b"faults:\n  - step: kubelet\n    mode: ",
    b"probability: ",
    b"times: ",
    b"durations:\n  kubelet: ",
    b"selector: {a: b}",
    b"taints: [{key: k, effect: NoSchedule}]",
    b"node_selector: {",
    b"tolerations: [",
    b"labels: {",
    b"administrative: locked",
    b"availability: failed",
    b"disk_free_gib: 0",
    b"capacity: {cpu_millis: 0, memory_mib: 0}",
];

#[test]
#[ignore = "a stable stand-in for `cargo fuzz run` (no coverage feedback); set KUP_FUZZ_ITERATIONS and KUP_FUZZ_SEED"]
fn explore_mutations_of_the_corpus() {
    let (iterations, seed) = replay::explore_settings();
    let crashes = replay::explore(TARGET, cluster_file, TOKENS, iterations, seed);
    assert_eq!(
        crashes, 0,
        "inputs that panicked are in fuzz/artifacts/{TARGET}/"
    );
}

#[test]
#[ignore = "rewrites fuzz/corpus/cluster_file; run with --ignored after changing the generator"]
fn regenerate_the_corpus() {
    write_corpus(TARGET, &corpus());
}

#[test]
fn the_saved_corpus_is_current() {
    assert_current(TARGET, &corpus());
}
