//! `kup export-cluster`: a cluster's twin, read back by the simulator, is the same cluster as
//! far as kup's decisions go: the plan of an upgrade computed on the twin is the plan computed
//! on the cluster, stage for stage and batch for batch, and the twin of the twin is the twin.

mod common;

use std::process::Command;

use common::*;

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn export(cluster: &std::path::Path, out: &std::path::Path) {
    let r = Command::new(KUP)
        .args(["export-cluster", "--cluster"])
        .arg(cluster)
        .arg("--output")
        .arg(out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// The plan as `upgrade plan` prints it, read from a daemon serving `cluster`.
fn plan(cluster: &std::path::Path, to: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let d = serve_with(dir.path(), "0", &["--cluster", cluster.to_str().unwrap()]);
    ok(
        &d,
        &format!("upgrade plan --to {to} --max-parallel-worker-hosts 10"),
    )
}

#[test]
fn a_twin_plans_as_its_cluster_does() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("generated-200.yaml");
    let text = Command::new(KUP)
        .args(["gen-cluster", "--workers", "200"])
        .output()
        .unwrap();
    assert!(text.status.success());
    std::fs::write(&generated, &text.stdout).unwrap();
    let cases = [
        (examples().join("standard-50-workers.yaml"), "v1.16.2"),
        (examples().join("kubeadm-v1.29-to-v1.33.yaml"), "v1.33.0"),
        (examples().join("kubeadm-3-control-planes.yaml"), "v1.29.10"),
        (examples().join("aio-duplex.yaml"), "v1.16.2"),
        (generated, "v1.16.2"),
    ];
    for (cluster, to) in cases {
        let name = cluster.file_stem().unwrap().to_string_lossy().to_string();
        let twin = dir.path().join(format!("{name}.twin.yaml"));
        export(&cluster, &twin);
        let want = plan(&cluster, to);
        assert!(
            want.contains("worker") || name == "aio-duplex",
            "{name}: {want}"
        );
        assert_eq!(plan(&twin, to), want, "{name}: the twin plans otherwise");
        // The twin of the twin is the twin: nothing is lost or made up on the way.
        let again = dir.path().join(format!("{name}.twin2.yaml"));
        export(&twin, &again);
        assert_eq!(
            std::fs::read_to_string(&again).unwrap(),
            std::fs::read_to_string(&twin).unwrap(),
            "{name}"
        );
    }
}
