//! Faults through the real daemon and the CLI, as an operator meets them: faults declared in
//! the cluster file (`faults:`), a hang cut short by `--step-timeout`, the cause removed by
//! starting the daemon again on a cluster file without the fault. For every kind of step:
//! by hand (each command with `--wait`) a step failing once, always, and hanging, and with a
//! probability for the kubelet; automated (`upgrade online`) a step failing once and always,
//! and hanging for the kubelet. (`crates/kup-engine/tests/faults.rs` runs every kind in every
//! mode, both ways, in the engine.)
//!
//! By hand, a failed step exits 1 with one `Error:` line and the log says why (the fault, or
//! "timed out after 1 s"); the same command re-does it: at once after a `once` fault, not while
//! an `always` fault lasts, and once the daemon runs without it. `upgrade online` retries a
//! failed step: it completes after a `once` fault; after an `always` fault or a hang it exits 1
//! naming the step, and run again without the fault it completes. Every run ends with the
//! upgrade complete, a gapless log and the simulation's audit at zero.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Cordons exist on aio-simplex only; every other kind runs on the seed's standard system.
fn simplex(kind: &str) -> bool {
    kind == "cordon" || kind == "uncordon"
}

/// The cluster for `kind`, with v1.16.2 in its catalog, and `fault` (YAML of one `faults:`
/// item's fields) if any.
fn cluster_file(dir: &Path, kind: &str, fault: Option<&str>) -> PathBuf {
    let mut text = if simplex(kind) {
        std::fs::read_to_string(examples().join("aio-simplex.yaml")).unwrap()
    } else {
        std::fs::read_to_string(examples().join("standard.yaml"))
            .unwrap()
            .replacen(
                "versions:\n  - version: v1.16.1\n",
                "versions:\n  - version: v1.16.1\n  - version: v1.16.2\n    upgrade_from: [v1.16.1]\n",
                1,
            )
    };
    if let Some(f) = fault {
        text.push_str(&format!("faults:\n  - step: {kind}\n    {f}\n"));
    }
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon on `dir` (time scale 0, `kind` timing out after 1 s) with `fault`, if any.
fn daemon(dir: &Path, kind: &str, fault: Option<&str>) -> Daemon {
    let file = cluster_file(dir, kind, fault);
    let timeout = format!("{kind}=1");
    serve_with(
        dir,
        "0",
        &[
            "--cluster",
            file.to_str().unwrap(),
            "--step-timeout",
            &timeout,
        ],
    )
}

/// The seed's procedure by hand: each command with the kind of step it runs, if any.
fn procedure(kind: &str) -> Vec<(String, Option<&'static str>)> {
    let c = |s: &str, k: Option<&'static str>| (s.to_string(), k);
    if simplex(kind) {
        return vec![
            c("kube-upgrade-start v1.16.2", None),
            c(
                "kube-upgrade-download-images --wait",
                Some("download-images"),
            ),
            c("kube-host-cordon controller-0 --wait", Some("cordon")),
            c(
                "kube-host-upgrade controller-0 control-plane --wait",
                Some("control-plane"),
            ),
            c("kube-upgrade-networking --wait", Some("networking")),
            c(
                "kube-host-upgrade controller-0 kubelet --wait",
                Some("kubelet"),
            ),
            c("kube-host-uncordon controller-0 --wait", Some("uncordon")),
            c("kube-upgrade-complete", None),
        ];
    }
    let mut cmds = vec![
        c("kube-upgrade-start v1.16.2", None),
        c(
            "kube-upgrade-download-images --wait",
            Some("download-images"),
        ),
        c(
            "kube-host-upgrade controller-1 control-plane --wait",
            Some("control-plane"),
        ),
        c("kube-upgrade-networking --wait", Some("networking")),
        c(
            "kube-host-upgrade controller-0 control-plane --wait",
            Some("control-plane"),
        ),
    ];
    for host in ["controller-1", "controller-0", "worker-0", "worker-1"] {
        cmds.push(c(&format!("host-lock {host} --wait"), Some("lock")));
        cmds.push(c(
            &format!("kube-host-upgrade {host} kubelet --wait"),
            Some("kubelet"),
        ));
        cmds.push(c(&format!("host-unlock {host} --wait"), Some("unlock")));
        if host == "controller-1" {
            cmds.push(c("host-swact controller-0 --wait", Some("swact")));
        }
    }
    cmds.push(c("kube-upgrade-complete", None));
    cmds
}

/// The messages of the operations that ended failed.
fn failures(d: &Daemon) -> Vec<String> {
    events(d)
        .iter()
        .filter(|e| e["kind"] == "operation")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains(": failed"))
        .map(str::to_string)
        .collect()
}

/// The end of every run.
fn assert_complete(d: &Daemon, case: &str) {
    assert_eq!(state_of(d), "upgrade-complete", "{case}");
    let log = events(d);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "{case}: gap before {e}");
    }
    let info: serde_json::Value = serde_json::from_str(&ok(d, "info --format json")).unwrap();
    let audit = &info["safety_audit"];
    for count in [
        "pdb_violations",
        "unplaced_pods",
        "control_plane_violations",
        "skew_violations",
        "repeated_steps",
    ] {
        assert_eq!(audit[count], 0, "{case}: {count}: {audit}");
    }
}

/// A manual run with `fault` on `kind` ("once", "always", "hang", "probability"); returns
/// how many runs of the step failed.
fn manual(kind: &str, mode: &str) -> usize {
    let case = format!("manual {kind} {mode}");
    let fault = match mode {
        "probability" => "mode: probability\n    probability: 0.5".to_string(),
        m => format!("mode: {m}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(dir.path(), kind, Some(&fault));
    let mut failed = 0;
    for (cmd, step) in procedure(kind) {
        let mut tries = 0;
        loop {
            let r = kup(&d, &cmd);
            if r.code == 0 {
                break;
            }
            assert_eq!(step, Some(kind), "{case}: {cmd}: {}", r.stderr);
            assert!(
                r.code == 1 && r.stderr.starts_with("Error: ") && r.stderr.lines().count() == 1,
                "{case}: {cmd}: {} {}",
                r.code,
                r.stderr
            );
            tries += 1;
            failed += 1;
            let why = if mode == "hang" {
                "timed out after 1 s".to_string()
            } else {
                format!("simulated fault injected into {kind}")
            };
            let log = failures(&d);
            assert!(
                log.len() == failed && log.last().unwrap().ends_with(&why),
                "{case}: {cmd}: {}: {log:?}",
                r.stderr
            );
            match mode {
                "once" => assert_eq!(tries, 1, "{case}: {cmd} failed again"),
                "probability" => assert!(tries < 40, "{case}: {cmd} never passed"),
                // The cause removed: the daemon started again without the fault.
                "always" if tries == 1 => {}
                _ => {
                    drop(d);
                    d = daemon(dir.path(), kind, None);
                }
            }
        }
    }
    match mode {
        "once" | "hang" => assert_eq!(failed, 1, "{case}"),
        "always" => assert_eq!(failed, 2, "{case}"),
        _ => {}
    }
    assert_complete(&d, &case);
    failed
}

/// An automated run with `fault` on `kind`; on simplex the uncordon's run is cordoned by hand
/// first (a strategy never cordons, but uncordons what an operator cordoned).
fn automated(kind: &str, mode: &str) {
    let case = format!("automated {kind} {mode}");
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(dir.path(), kind, Some(&format!("mode: {mode}")));
    if kind == "uncordon" {
        for cmd in [
            "kube-upgrade-start v1.16.2",
            "kube-upgrade-download-images --wait",
            "kube-host-cordon controller-0 --wait",
        ] {
            ok(&d, cmd);
        }
    }
    let r = kup(&d, "upgrade online --to v1.16.2");
    if mode == "once" {
        assert_eq!(r.code, 0, "{case}: {}", r.stderr);
        assert_eq!(failures(&d).len(), 1, "{case}: retried once");
    } else {
        assert_eq!(r.code, 1, "{case}: {}", r.stdout);
        let error = r.stderr.lines().last().unwrap_or_default().to_string();
        let (state, why) = if mode == "hang" {
            ("apply-timeout", "timed out after 1 s".to_string())
        } else {
            (
                "apply-failed",
                format!("failed 3 times, the last: simulated fault injected into {kind}"),
            )
        };
        assert!(
            error.starts_with(&format!("Error: the upgrade to v1.16.2 is {state}: "))
                && error.contains(&why),
            "{case}: {}",
            r.stderr
        );
        assert_eq!(failures(&d).len(), 3, "{case}: tried three times");
        drop(d);
        d = daemon(dir.path(), kind, None);
        ok(&d, "kube-upgrade-strategy apply");
        let out = ok(&d, "upgrade online --to v1.16.2");
        assert!(out.contains("applied"), "{case}: {out}");
    }
    assert_complete(&d, &case);
}

/// One kind: by hand once, always and hanging; automated once and always (the cordon by hand
/// only).
fn every_mode(kind: &str) {
    let started = std::time::Instant::now();
    let mut failed = 0;
    for mode in ["once", "always", "hang"] {
        failed += manual(kind, mode);
    }
    let mut automated_runs = 0;
    if kind != "cordon" {
        for mode in ["once", "always"] {
            automated(kind, mode);
            automated_runs += 1;
        }
    }
    println!(
        "faults {kind} (daemon): 3 runs by hand (once, always, hang: {failed} failed steps, each \
         re-done), {automated_runs} automated, all complete ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn download_images_faults() {
    every_mode("download-images");
}

#[test]
fn control_plane_faults() {
    every_mode("control-plane");
}

#[test]
fn networking_faults() {
    every_mode("networking");
}

/// The kubelet also with a probability by hand and hanging automated.
#[test]
fn kubelet_faults() {
    every_mode("kubelet");
    let failed = manual("kubelet", "probability");
    automated("kubelet", "hang");
    println!(
        "faults kubelet (daemon): probability 0.5 by hand ({failed} failed steps, each re-done) \
         and a hang automated, complete"
    );
}

#[test]
fn lock_faults() {
    every_mode("lock");
}

#[test]
fn unlock_faults() {
    every_mode("unlock");
}

#[test]
fn swact_faults() {
    every_mode("swact");
}

#[test]
fn cordon_faults() {
    every_mode("cordon");
}

#[test]
fn uncordon_faults() {
    every_mode("uncordon");
}
