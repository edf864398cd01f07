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

fn rehearse(cluster: &std::path::Path) -> (i32, String) {
    let r = Command::new(KUP)
        .args(["rehearse", "--cluster"])
        .arg(cluster)
        .output()
        .unwrap();
    assert!(
        r.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    (
        r.status.code().unwrap_or(-1),
        String::from_utf8(r.stdout).unwrap(),
    )
}

/// `kup rehearse` on the 50-worker example's twin: the whole automated upgrade, applied, its
/// five worker batches and the safety audit at zero; exit 0.
#[test]
fn a_rehearsal_runs_the_whole_upgrade_on_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let twin = dir.path().join("twin.yaml");
    export(&examples().join("standard-50-workers.yaml"), &twin);
    let (code, report) = rehearse(&twin);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.starts_with(
            "Rehearsal on a twin of 54 hosts (161 pods, 3 PodDisruptionBudgets): v1.16.1 -> v1.16.2\nResult: applied\nDuration: "
        ),
        "{report}"
    );
    assert_eq!(
        report
            .matches("kube-upgrade-kubelets-workers batch ")
            .count(),
        5,
        "{report}"
    );
    assert!(report.contains(" batch 5 of 5 (10 hosts) (at "), "{report}");
    // Each step's stage, on the rehearsal's clock.
    assert!(
        report.contains("\n  kube-upgrade-download-images (at "),
        "{report}"
    );
    assert!(report.contains("Hosts that hold the upgrade back: none\n"));
    assert!(report.ends_with(
        "Safety: 0 PodDisruptionBudget violations, 0 unplaced pods, 0 control-plane violations, 0 version skew violations, 0 steps run twice\n"
    ), "{report}");
}

/// A host that cannot be taken down safely (the only replica of a Deployment whose budget
/// allows none down): the rehearsal says the upgrade would be refused, names the host and why,
/// and exits 1.
#[test]
fn a_rehearsal_names_the_hosts_that_would_hold_the_upgrade_back() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("standard-50-workers.yaml")).unwrap();
    let text = text.replacen(
        "workloads:\n",
        "workloads:\n  - name: singleton\n    kind: Deployment\n    replicas: 1\n    placement: [{ node: worker-7, pods: 1 }]\n    pdb: { min_available: 1 }\n",
        1,
    );
    let cluster = dir.path().join("blocked.yaml");
    std::fs::write(&cluster, text).unwrap();
    let (code, report) = rehearse(&cluster);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("\nResult: refused before it began: worker-7: unsafe: deployment default/singleton: no ready replica would remain"), "{report}");
    assert!(report.contains(
        "Hosts that hold the upgrade back (each alone unsafe to take down):\n  worker-7: no ready replica would remain"
    ), "{report}");
}
