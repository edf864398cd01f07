//! `kup upgrade online|offline` and `kup kube-upgrade-strategy` through the binary against
//! `kup serve`, as an operator runs them.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The patches as the README delivers them before `upgrade online`: all three uploaded, the
/// platform patch (which brings v1.16.2) applied and installed; the runner does the rest.
fn deliver_patches(d: &Daemon) {
    let files: Vec<String> = ["PLATFORM", "KUBEADM", "KUBELET"]
        .iter()
        .map(|k| patch_file(&format!("K8S-1.16.2-{k}")))
        .collect();
    ok(d, &format!("sw-patch upload {}", files.join(" ")));
    ok(d, "sw-patch apply K8S-1.16.2-PLATFORM");
    for h in HOSTS {
        ok(d, &format!("sw-patch host-install {h}"));
    }
}

/// PDB violations and unplaced pods; and no two control-plane hosts down at once, ever.
fn audit(d: &Daemon) -> (u64, u64) {
    let info: serde_json::Value = serde_json::from_str(&ok(d, "info --format json")).unwrap();
    let a = &info["safety_audit"];
    assert_eq!(a["control_plane_violations"], 0, "{a}");
    assert_eq!(a["skew_violations"], 0, "{a}");
    assert_eq!(a["repeated_steps"], 0, "{a}");
    (
        a["pdb_violations"].as_u64().unwrap(),
        a["unplaced_pods"].as_u64().unwrap(),
    )
}

/// The largest worker batch the run printed.
fn widest_batch(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| l.split("worker batch of ").nth(1))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn upgrade_online_takes_every_example_to_complete_without_a_violation() {
    for example in [
        None,
        Some("aio-simplex.yaml"),
        Some("aio-duplex.yaml"),
        Some("standard-50-workers.yaml"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = example.map(|e| examples().join(e).display().to_string());
        let extra: Vec<&str> = match &cluster {
            Some(c) => vec!["--cluster", c.as_str()],
            None => vec![],
        };
        let d = serve_with(dir.path(), "0", &extra);
        if example.is_none() {
            deliver_patches(&d);
        }
        let out = ok(&d, "upgrade online --to v1.16.2");
        assert!(
            out.contains("Upgrade to v1.16.2: applied\n"),
            "{example:?}: {out}"
        );
        assert_eq!(state_of(&d), "upgrade-complete", "{example:?}");
        assert_eq!(audit(&d), (0, 0), "{example:?}");
        if example == Some("standard-50-workers.yaml") {
            assert!(widest_batch(&out) > 1, "{out}");
        }
        let info = ok(&d, "info");
        assert!(info.starts_with("Cluster version: v1.16.2"), "{info}");
    }
}

/// A cluster file: the built-in one with v1.16.2 in its catalog and a bare pod on worker-1.
fn cluster_with_a_bare_pod(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(examples().join("standard.yaml"))
        .unwrap()
        .replacen(
            "  - version: v1.16.1\n",
            "  - version: v1.16.1\n  - version: v1.16.2\n    upgrade_from: [v1.16.1]\n",
            1,
        )
        .replacen(
            "workloads:\n",
            "workloads:\n  - name: debug\n    kind: Pod\n    nodes: [worker-1]\n",
            1,
        );
    let path = dir.join("bare-pod.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn online_refuses_an_unsafe_host_and_partial_ok_upgrades_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster_with_a_bare_pod(dir.path());
    let d = serve_with(dir.path(), "0", &["--cluster", &cluster]);
    let before = events(&d).len();

    let r = kup(&d, "upgrade online");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.starts_with("Cannot upgrade online to v1.16.2; nothing was changed:\n  - worker-1: unsafe: pod default/debug-0: unmanaged pod"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stderr.trim_end(),
        "Error: the upgrade to v1.16.2 was refused (--partial-ok upgrades the other hosts; \
         offline skips the workload checks)"
    );
    assert_eq!(state_of(&d), "none");
    // Nothing but the strategy's own bookkeeping was written.
    assert!(
        events(&d)[before..].iter().all(
            |e| e["kind"] == "command" && e["subject"] == "strategy" || e["kind"] == "strategy"
        ),
        "{:?}",
        &events(&d)[before..]
    );

    let dry = ok(&d, "upgrade online --dry-run");
    assert!(dry.ends_with("Dry run: nothing was changed.\n"), "{dry}");
    assert_eq!(state_of(&d), "none");

    let out = ok(&d, "upgrade online --partial-ok");
    assert!(out.contains("Upgrade to v1.16.2: applied ("), "{out}");
    assert!(
        out.contains("Hosts left out: 1\n  - worker-1: unsafe: pod default/debug-0: unmanaged pod"),
        "{out}"
    );
    assert_eq!(state_of(&d), "upgrading-kubelets");
    assert_eq!(audit(&d), (0, 0));

    // Offline finishes it: the operator accepts losing the bare pod.
    let out = ok(&d, "upgrade offline");
    assert!(out.contains("Upgrade to v1.16.2: applied\n"), "{out}");
    assert_eq!(state_of(&d), "upgrade-complete");
}

/// The strategy as an operator runs it by hand: create, show, apply --wait.
#[test]
fn the_strategy_commands_create_show_apply_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    deliver_patches(&d);
    let out = ok(
        &d,
        "kube-upgrade-strategy create --to-version v1.16.2 --worker-apply-type serial",
    );
    assert!(
        out.contains("  state:                      ready-to-apply\n"),
        "{out}"
    );
    assert!(
        out.contains("  worker-apply-type:          serial\n"),
        "{out}"
    );
    let details = ok(&d, "kube-upgrade-strategy show --details");
    assert!(details.contains("  apply-phase:\n"), "{details}");
    assert!(
        details.contains("stage-name: kube-upgrade-kubelets-workers\n        hosts: worker-0\n"),
        "{details}"
    );
    let r = kup(&d, "kube-upgrade-strategy create --to-version v1.16.2");
    assert_eq!(
        r.stderr.trim_end(),
        "Error: A kube-upgrade strategy already exists; delete it first"
    );
    let out = ok(&d, "kube-upgrade-strategy apply --wait");
    assert!(out.contains("Upgrade to v1.16.2: applied\n"), "{out}");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&d, "kube-upgrade-strategy show --format json")).unwrap();
    assert_eq!(show["strategy"]["state"], "applied");
    assert_eq!(show["current"]["phase_completion_percentage"], 100);
    ok(&d, "kube-upgrade-strategy delete");
    let r = kup(&d, "kube-upgrade-strategy show");
    assert_eq!(
        r.stderr.trim_end(),
        "Error: No kube-upgrade strategy exists"
    );
}

/// The daemon killed while it applies: started again, it goes on by itself and completes,
/// and every operation ends exactly once in the event log.
#[test]
fn a_daemon_killed_during_an_apply_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = serve(dir.path(), "0.005");
    deliver_patches(&d);
    ok(&d, "kube-upgrade-strategy create --to-version v1.16.2");
    ok(&d, "kube-upgrade-strategy apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !["upgrading-networking", "upgraded-networking"].contains(&state_of(&d).as_str()) {
        assert!(Instant::now() < deadline, "stuck at {}", state_of(&d));
        std::thread::sleep(Duration::from_millis(20));
    }
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    drop(d);

    let d = serve(dir.path(), "0");
    // `upgrade online` finds the strategy applying and follows it to its end.
    let out = ok(&d, "upgrade online --to v1.16.2");
    assert!(out.contains("already applying: following it"), "{out}");
    assert!(out.contains("Upgrade to v1.16.2: applied\n"), "{out}");
    assert_eq!(state_of(&d), "upgrade-complete");
    let log = events(&d);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "gap at {e}");
    }
    let mut done = std::collections::BTreeMap::new();
    for e in &log {
        let m = e["message"].as_str().unwrap();
        if e["kind"] == "operation" && m.ends_with(": done") {
            *done.entry(m.to_string()).or_insert(0) += 1;
        }
    }
    assert!(done.values().all(|&n| n == 1), "{done:?}");
    assert!(done.len() >= 15, "{done:?}");
    // The simulation saw no step run twice, and nothing broken.
    assert_eq!(audit(&d), (0, 0));
}

/// Ctrl-C detaches: the upgrade goes on, and running the command again follows it.
#[test]
fn ctrl_c_detaches_without_stopping_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0.005");
    deliver_patches(&d);
    let mut child = Command::new(KUP)
        .args(["upgrade", "online"])
        .env("KUP_URL", &d.url)
        .env("KUP_TOKEN", &d.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().unwrap().unwrap();
        if line.contains("stage kube-upgrade-download-images started") {
            break;
        }
    }
    // SIGINT, as Ctrl-C sends.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("Detached: the upgrade goes on"),
        "{stderr}"
    );
    let out = ok(&d, "upgrade online");
    assert!(out.contains("Upgrade to v1.16.2: applied\n"), "{out}");
}

/// The hosts of a cluster, from `kube-host-upgrade-list`: (name, personality).
fn hosts_of(d: &Daemon) -> Vec<(String, String)> {
    host_upgrade_rows(d)
        .iter()
        .map(|r| {
            (
                r["hostname"].as_str().unwrap().to_string(),
                r["personality"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// kubeadm clusters with three and five control planes, by hand: `kubeadm upgrade apply` on
/// the first, `upgrade node` on each other in turn (the state stays upgrading-second-master
/// until the last one is done), then each host's kubelet with a lock; never two control-plane
/// hosts down at once (the simulation's audit), and never a swact.
#[test]
fn kubeadm_clusters_with_three_and_five_control_planes_by_hand() {
    for (example, cps) in [
        ("kubeadm-3-control-planes.yaml", 3),
        ("kubeadm-5-control-planes.yaml", 5),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = examples().join(example).display().to_string();
        let d = serve_with(dir.path(), "0", &["--cluster", &cluster]);
        let hosts = hosts_of(&d);
        let controllers: Vec<&str> = hosts
            .iter()
            .filter(|h| h.1 == "controller")
            .map(|h| h.0.as_str())
            .collect();
        assert_eq!(controllers.len(), cps, "{example}");
        ok(&d, "kube-upgrade-start v1.29.10");
        ok(&d, "kube-upgrade-download-images --wait");
        ok(
            &d,
            &format!("kube-host-upgrade {} control-plane --wait", controllers[0]),
        );
        assert_eq!(state_of(&d), "upgraded-first-master", "{example}");
        ok(&d, "kube-upgrade-networking --wait");
        for (i, c) in controllers[1..].iter().enumerate() {
            ok(&d, &format!("kube-host-upgrade {c} control-plane --wait"));
            let last = i + 2 == cps;
            assert_eq!(
                state_of(&d),
                if last {
                    "upgraded-second-master"
                } else {
                    "upgrading-second-master"
                },
                "{example}: after {c}"
            );
        }
        let swact = refused(&d, &format!("host-swact {}", controllers[0]));
        assert!(
            swact.contains("no active controller to hand over"),
            "{swact}"
        );
        for (h, _) in &hosts {
            let locked = kup(&d, &format!("host-lock {h} --wait"));
            assert_eq!(locked.code, 0, "{example}: {h}: {}", locked.stderr);
            ok(&d, &format!("kube-host-upgrade {h} kubelet --wait"));
            ok(&d, &format!("host-unlock {h} --wait"));
        }
        ok(&d, "kube-upgrade-complete");
        assert_eq!(state_of(&d), "upgrade-complete", "{example}");
        assert_eq!(audit(&d), (0, 0), "{example}");
        let info = ok(&d, "info");
        assert!(info.starts_with("Cluster version: v1.29.10"), "{info}");
    }
}

/// The same clusters by `upgrade online`: the plan and the strategy name every control plane;
/// worker batches are wider than one; no violation of any kind.
#[test]
fn kubeadm_clusters_with_three_and_five_control_planes_online() {
    for (example, cps) in [
        ("kubeadm-3-control-planes.yaml", 3),
        ("kubeadm-5-control-planes.yaml", 5),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = examples().join(example).display().to_string();
        let d = serve_with(dir.path(), "0", &["--cluster", &cluster]);
        let plan = ok(&d, "upgrade plan --to v1.29.10");
        assert_eq!(
            plan.matches("(kubeadm upgrade node)").count(),
            cps - 1,
            "{plan}"
        );
        let out = ok(&d, "upgrade online --to v1.29.10");
        assert!(out.contains("Upgrade to v1.29.10: applied\n"), "{out}");
        for i in 1..cps {
            assert!(
                out.contains(&format!(
                    "stage kube-upgrade-second-control-plane (control-plane-{i}) started"
                )),
                "{out}"
            );
        }
        assert!(!out.contains("swact"), "{out}");
        assert!(widest_batch(&out) > 1, "{out}");
        assert_eq!(state_of(&d), "upgrade-complete", "{example}");
        assert_eq!(audit(&d), (0, 0), "{example}");
        let show = ok(&d, "kube-upgrade-strategy show --details");
        assert_eq!(
            show.matches("kube-upgrade-second-control-plane").count(),
            cps - 1,
            "{show}"
        );
    }
}

/// aio-simplex with StarlingX's cordon: the host's pods are evicted before its control plane
/// (and wait, pending), the kubelet is upgraded in place, complete is refused while the host
/// is cordoned, the uncordon lets the pods back; the same on other systems is refused. A
/// strategy created while the host is cordoned uncordons it before completing.
#[test]
fn cordon_and_uncordon_on_aio_simplex() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = examples().join("aio-simplex.yaml").display().to_string();
    let d = serve_with(dir.path(), "0", &["--cluster", &cluster]);
    ok(&d, "kube-upgrade-start v1.16.2");
    let early = refused(&d, "kube-host-cordon controller-0");
    assert!(
        early.contains(
            "must be in downloaded-images or upgraded-networking or cordon-failed state to cordon"
        ),
        "{early}"
    );
    ok(&d, "kube-upgrade-download-images --wait");
    let out = ok(&d, "kube-host-cordon controller-0 --wait");
    assert!(out.contains("cordon-complete"), "{out}");
    ok(&d, "kube-host-upgrade controller-0 control-plane --wait");
    ok(&d, "kube-upgrade-networking --wait");
    ok(&d, "kube-host-upgrade controller-0 kubelet --wait");
    let complete = refused(&d, "kube-upgrade-complete");
    assert!(
        complete.contains("must be in uncordon-complete state to complete"),
        "{complete}"
    );
    let out = ok(&d, "kube-host-uncordon controller-0 --wait");
    assert!(out.contains("uncordon-complete"), "{out}");
    ok(&d, "kube-upgrade-complete");
    assert_eq!(state_of(&d), "upgrade-complete");
    assert_eq!(audit(&d), (0, 0));

    // Elsewhere it is refused, with the reason.
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    let no = refused(&d, "kube-host-cordon controller-0");
    assert!(
        no.contains("A kubernetes upgrade is not in progress")
            || no.contains("not supported in standard"),
        "{no}"
    );
}

/// A strategy that finds the aio-simplex host cordoned by hand finishes the upgrade and
/// uncordons it before completing (VIM's resume map).
#[test]
fn a_strategy_resumes_a_cordoned_aio_simplex_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = examples().join("aio-simplex.yaml").display().to_string();
    let d = serve_with(dir.path(), "0", &["--cluster", &cluster]);
    ok(&d, "kube-upgrade-start v1.16.2");
    ok(&d, "kube-upgrade-download-images --wait");
    ok(&d, "kube-host-cordon controller-0 --wait");
    let out = ok(&d, "upgrade online --to v1.16.2");
    assert!(out.contains("Upgrade to v1.16.2: applied\n"), "{out}");
    assert_eq!(state_of(&d), "upgrade-complete");
    let events = events(&d);
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "kube-host-uncordon controller-0 accepted"),
        "{events:?}"
    );
    assert_eq!(audit(&d), (0, 0));
}

/// v1.29.2 -> v1.33.0 by `upgrade online` on three control planes: the plan shows every minor
/// with its stages; the control planes step through v1.30.6, v1.31.5 and v1.32.2, the
/// kubelets follow at v1.32.2 (the next minor would leave them four behind) and at v1.33.0;
/// the simulation saw no kubelet outside the skew policy at any step, no budget broken, no
/// two control planes down.
#[test]
fn a_multi_version_upgrade_online() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = examples()
        .join("kubeadm-v1.29-to-v1.33.yaml")
        .display()
        .to_string();
    let d = serve_with(dir.path(), "0", &["--cluster", &cluster]);
    let plan = ok(&d, "upgrade plan --to v1.33.0");
    let stages: Vec<&str> = plan
        .lines()
        .filter(|l| l.len() > 4 && l.as_bytes()[2] == b'.')
        .map(|l| l[4..].split("  ").next().unwrap().trim())
        .collect();
    assert_eq!(
        stages,
        [
            "download-images",
            "first-control-plane v1.30.6",
            "networking",
            "second-control-plane v1.30.6",
            "first-control-plane v1.31.5",
            "second-control-plane v1.31.5",
            "first-control-plane v1.32.2",
            "second-control-plane v1.32.2",
            "controller-kubelets v1.32.2",
            "worker-kubelets v1.32.2",
            "first-control-plane v1.33.0",
            "second-control-plane v1.33.0",
            "controller-kubelets v1.33.0",
            "worker-kubelets v1.33.0",
            "complete",
        ],
        "{plan}"
    );
    let out = ok(&d, "upgrade online --to v1.33.0");
    assert!(out.contains("Upgrade to v1.33.0: applied\n"), "{out}");
    // The order of the control-plane and kubelet stages, as they started.
    let started: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(" stage kube-upgrade-").nth(1))
        .filter(|l| !l.starts_with("kubelets-workers"))
        .map(|l| {
            l.trim_end_matches(" started")
                .split(" (")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let order: Vec<&str> = started.iter().map(String::as_str).collect();
    assert_eq!(
        order,
        [
            "start",
            "download-images",
            "first-control-plane v1.30.6",
            "networking",
            "second-control-plane v1.30.6",
            "second-control-plane v1.30.6",
            "first-control-plane v1.31.5",
            "second-control-plane v1.31.5",
            "second-control-plane v1.31.5",
            "first-control-plane v1.32.2",
            "second-control-plane v1.32.2",
            "second-control-plane v1.32.2",
            "kubelets-controller v1.32.2",
            "kubelets-controller v1.32.2",
            "kubelets-controller v1.32.2",
            "first-control-plane v1.33.0",
            "second-control-plane v1.33.0",
            "second-control-plane v1.33.0",
            "kubelets-controller v1.33.0",
            "kubelets-controller v1.33.0",
            "kubelets-controller v1.33.0",
            "complete",
        ],
        "{out}"
    );
    assert!(
        out.contains("stage kube-upgrade-kubelets-workers v1.32.2 ("),
        "{out}"
    );
    assert!(
        out.contains("stage kube-upgrade-kubelets-workers v1.33.0 ("),
        "{out}"
    );
    assert!(
        out.contains("Hosts whose kubelet was upgraded: 9 "),
        "{out}"
    );
    assert_eq!(state_of(&d), "upgrade-complete");
    assert_eq!(audit(&d), (0, 0));
    let info = ok(&d, "info");
    assert!(info.starts_with("Cluster version: v1.33.0"), "{info}");
}

/// `kup kube-upgrade-abort` after the standard system's control planes and a kubelet moved:
/// the daemon SIGKILLed on the way back, started again, finishes it (`--wait` follows it to
/// `upgrade-aborted`); every host is back at v1.16.1, nothing broke, and a fresh upgrade can
/// start once the aborted one is deleted.
#[test]
fn an_abort_killed_half_way_resumes_and_a_fresh_upgrade_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = serve(dir.path(), "0.005");
    deliver_patches(&d);
    for h in HOSTS {
        ok(&d, &format!("sw-patch host-install {h}"));
    }
    ok(&d, "sw-patch apply K8S-1.16.2-KUBEADM");
    for h in HOSTS {
        ok(&d, &format!("sw-patch host-install {h}"));
    }
    ok(&d, "kube-upgrade-start v1.16.2");
    ok(&d, "kube-upgrade-download-images --wait");
    ok(&d, "kube-host-upgrade controller-1 control-plane --wait");
    ok(&d, "kube-upgrade-networking --wait");
    ok(&d, "kube-host-upgrade controller-0 control-plane --wait");
    ok(&d, "sw-patch apply K8S-1.16.2-KUBELET");
    for h in HOSTS {
        ok(&d, &format!("sw-patch host-install {h}"));
    }
    ok(&d, "host-lock controller-1 --wait");
    ok(&d, "kube-host-upgrade controller-1 kubelet --wait");
    ok(&d, "host-unlock controller-1 --wait");
    let out = ok(&d, "kube-upgrade-abort");
    assert!(out.contains("upgrade-aborting"), "{out}");
    // Killed once the way back has started a step.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events(&d)
        .iter()
        .any(|e| e["message"].as_str().unwrap_or("").starts_with("abort: "))
    {
        assert!(Instant::now() < deadline, "no step of the way back started");
        std::thread::sleep(Duration::from_millis(10));
    }
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    drop(d);

    // Started again, the daemon goes on with the way back by itself.
    let d = serve(dir.path(), "0");
    let deadline = Instant::now() + Duration::from_secs(30);
    while state_of(&d) == "upgrade-aborting" {
        assert!(Instant::now() < deadline, "the abort did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(state_of(&d), "upgrade-aborted");
    let info = ok(&d, "info");
    assert!(info.starts_with("Cluster version: v1.16.1"), "{info}");
    assert_eq!(audit(&d), (0, 0));
    let log = events(&d);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "gap at {e}");
    }
    ok(&d, "kube-upgrade-delete");
    ok(&d, "kube-upgrade-start v1.16.2");
    assert_eq!(state_of(&d), "upgrade-started");
}

/// Clients that still use APIs the target removes (the cluster file declares them, as the API
/// server's `apiserver_requested_deprecated_apis` metric would show them): the health query
/// names each with its release, the start and `upgrade online` are refused with that reason,
/// and `--force` starts anyway. APIs removed before the running version, or after the target,
/// are not the upgrade's concern.
#[test]
fn apis_the_target_removes_refuse_the_start_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = std::fs::read_to_string(examples().join("kubeadm-v1.29-to-v1.33.yaml")).unwrap();
    yaml.push_str(
        "api_usage:\n\
         - { group: flowcontrol.apiserver.k8s.io, version: v1beta3, resource: flowschemas, removed_release: \"1.32\" }\n\
         - { group: autoscaling, version: v2beta2, resource: horizontalpodautoscalers, seen_in: monitoring/scaler }\n\
         - { group: example.com, version: v1alpha1, resource: widgets, removed_release: \"1.34\" }\n",
    );
    let cluster = dir.path().join("cluster.yaml");
    std::fs::write(&cluster, yaml).unwrap();
    let d = serve_with(dir.path(), "0", &["--cluster", cluster.to_str().unwrap()]);

    let health = ok(&d, "health-query-kube-upgrade");
    assert!(
        health.contains(
            "No APIs in use that the target version removes: [Fail]\nAPIs in use that v1.33.0 \
             removes: flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in v1.32; used \
             by API server)\n"
        ),
        "{health}"
    );
    // The v2beta2 HPA went in v1.26, before the running v1.29; the widgets go after v1.33.
    assert!(!health.contains("horizontalpodautoscalers") && !health.contains("widgets"));

    let why = refused(&d, "kube-upgrade-start v1.33.0");
    assert!(
        why.contains("APIs in use that v1.33.0 removes: flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in v1.32; used by API server)"),
        "{why}"
    );
    // Up to v1.31 nothing in use goes.
    let r = kup(&d, "upgrade plan --to v1.31.5");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = kup(&d, "upgrade online --to v1.33.0");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("flowschemas (removed in v1.32"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    ok(&d, "kube-upgrade-start v1.33.0 --force");
    assert!(ok(&d, "kube-upgrade-show").contains("upgrade-started"));
}
