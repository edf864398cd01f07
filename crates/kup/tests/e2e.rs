//! `kup serve` as a real process on a free port with a fresh data directory, driven by the
//! real `kup` binary as an operator would, with TZ=UTC.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_seed_procedure_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    // Steps take a fraction of a second (not zero), so the replies show them in progress, as
    // the seed does, before `--wait` sees them settle.
    let d = serve(dir.path(), "0.001");
    let data = dir.path().join("kup-data");
    let mode = std::fs::metadata(data.join("admin-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // Before the patches, the platform knows only v1.16.1.
    assert!(refused(&d, "kube-upgrade-start v1.16.2").contains("v1.16.2 is not available"));
    // 1. The platform patch.
    assert_eq!(
        ok(
            &d,
            &format!("sw-patch upload {}", patch_file("K8S-1.16.2-PLATFORM"))
        ),
        "K8S-1.16.2-PLATFORM is now uploaded\n"
    );
    let err = refused(
        &d,
        &format!("sw-patch upload {}", patch_file("K8S-1.16.2-PLATFORM")),
    );
    assert!(err.contains("already uploaded"), "{err}");
    assert_eq!(
        ok(&d, "sw-patch apply K8S-1.16.2-PLATFORM"),
        "K8S-1.16.2-PLATFORM is now partial-apply\n"
    );
    for h in HOSTS {
        ok(&d, &format!("sw-patch host-install {h}"));
    }
    assert!(
        ok(&d, "sw-patch query")
            .contains("| K8S-1.16.2-PLATFORM | platform | v1.16.2 | applied     |")
    );
    // 2.
    assert_eq!(
        ok(&d, "kube-version-list"),
        "+---------+--------+-----------+\n\
         | Version | Target | State     |\n\
         +---------+--------+-----------+\n\
         | v1.16.1 | True   | active    |\n\
         | v1.16.2 | False  | available |\n\
         +---------+--------+-----------+\n"
    );
    refused(&d, "kube-upgrade-download-images");
    let err = refused(&d, "kube-upgrade-start v1.16.2");
    assert!(
        err.contains("must be applied before doing the kubernetes upgrade: K8S-1.16.2-KUBEADM"),
        "{err}"
    );
    let plan = ok(&d, "upgrade plan");
    assert!(
        plan.contains("controller-0: NOT READY\n  - needs patch K8S-1.16.2-KUBEADM (not uploaded)"),
        "{plan}"
    );
    // 3. kubeadm; 4. the kubelet patch is only uploaded: it can not be applied yet.
    ok(
        &d,
        &format!("sw-patch upload {}", patch_file("K8S-1.16.2-KUBEADM")),
    );
    ok(&d, "sw-patch apply K8S-1.16.2-KUBEADM");
    for h in HOSTS {
        ok(&d, &format!("sw-patch host-install {h}"));
    }
    let err = refused(&d, "kube-upgrade-start v1.16.2");
    assert!(
        err.contains("must be available before doing the kubernetes upgrade: K8S-1.16.2-KUBELET"),
        "{err}"
    );
    ok(
        &d,
        &format!("sw-patch upload {}", patch_file("K8S-1.16.2-KUBELET")),
    );
    let err = refused(&d, "sw-patch apply K8S-1.16.2-KUBELET");
    assert!(
        err.contains("before the kubelet phase of an upgrade to v1.16.2"),
        "{err}"
    );
    // The plan before starting: stages, batches, findings, readiness.
    let plan = ok(&d, "upgrade plan --max-parallel-worker-hosts 2");
    assert!(
        plan.starts_with("Plan: v1.16.1 -> v1.16.2 (7 stages"),
        "{plan}"
    );
    assert!(
        plan.contains("Readiness: every host is ready"),
        "the kubelet patch only needs to be available: {plan}"
    );
    assert!(plan.contains(" 6. worker-kubelets"), "{plan}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, "upgrade plan --format json")).unwrap();
    assert_eq!(json["to"], "v1.16.2");
    assert_eq!(json["stages"].as_array().unwrap().len(), 7);
    // 5.
    let started = ok(&d, "kube-upgrade-start v1.16.2");
    assert!(
        started.contains("| state        | upgrade-started                      |"),
        "{started}"
    );
    assert!(started.contains("| from_version | v1.16.1                              |"));
    assert!(started.contains("| updated_at   | None                                 |"));
    let err = refused(&d, "kube-upgrade-start v1.16.2");
    assert_eq!(err, "Error: A kubernetes upgrade is already in progress\n");
    // 6.
    let out = ok(&d, "kube-upgrade-download-images");
    assert!(
        out.contains("| state        | downloading-images                   |"),
        "{out}"
    );
    assert_eq!(settled_state(&d), "downloaded-images");
    // 7. The seed's table, byte for byte.
    let out = ok(&d, "kube-host-upgrade controller-1 control-plane");
    assert_eq!(
        out,
        "+-----------------------+-------------------------+\n\
         | Property              | Value                   |\n\
         +-----------------------+-------------------------+\n\
         | control_plane_version | v1.16.1                 |\n\
         | hostname              | controller-1            |\n\
         | id                    | 2                       |\n\
         | kubelet_version       | v1.16.1                 |\n\
         | personality           | controller              |\n\
         | status                | upgrading-control-plane |\n\
         | target_version        | v1.16.2                 |\n\
         +-----------------------+-------------------------+\n"
    );
    assert_eq!(settled_state(&d), "upgraded-first-master");
    let err = refused(&d, "kube-host-upgrade controller-0 control-plane --wait");
    assert!(
        err.contains("upgraded-networking or upgrading-second-master-failed"),
        "{err}"
    );
    ok(&d, "kube-upgrade-networking --wait");
    assert_eq!(state_of(&d), "upgraded-networking");
    ok(&d, "kube-host-upgrade controller-0 control-plane --wait");
    assert_eq!(state_of(&d), "upgraded-second-master");
    let info = ok(&d, "info");
    assert!(
        info.starts_with("Transitioning from v1.16.1 to v1.16.2\n"),
        "{info}"
    );
    assert!(
        info.contains("| controller-1 | controller  |         | v1.16.2       | v1.16.1 |"),
        "{info}"
    );
    // 10.
    assert_eq!(
        ok(&d, "kube-host-upgrade-list"),
        "+----+--------------+-------------+----------------+-----------------------+-----------------+--------+\n\
         | id | hostname     | personality | target_version | control_plane_version | kubelet_version | status |\n\
         +----+--------------+-------------+----------------+-----------------------+-----------------+--------+\n\
         | 1  | controller-0 | controller  | v1.16.2        | v1.16.2               | v1.16.1         | None   |\n\
         | 2  | controller-1 | controller  | v1.16.2        | v1.16.2               | v1.16.1         | None   |\n\
         | 3  | storage-0    | storage     | v1.16.1        | N/A                   | N/A             | None   |\n\
         | 4  | storage-1    | storage     | v1.16.1        | N/A                   | N/A             | None   |\n\
         | 5  | worker-0     | worker      | v1.16.1        | N/A                   | v1.16.1         | None   |\n\
         | 6  | worker-1     | worker      | v1.16.1        | N/A                   | v1.16.1         | None   |\n\
         +----+--------------+-------------+----------------+-----------------------+-----------------+--------+\n"
    );
    // 11. The kubelet patch: applied now, installed (kubelet not restarted).
    let err = refused(&d, "kube-host-upgrade controller-1 kubelet");
    assert!(err.contains("must be locked and online"), "{err}");
    seed_kubelet_patch(&d);
    let hosts = ok(&d, "sw-patch query-hosts");
    assert!(
        !hosts.contains("False"),
        "every host is patch current:\n{hosts}"
    );
    assert!(ok(&d, "kube-host-upgrade-list").contains("| 5  | worker-0     | worker      | v1.16.1        | N/A                   | v1.16.1         | None   |"));
    // 12.
    let err = refused(&d, "host-lock controller-0");
    assert!(
        err.contains("active controller; swact to controller-1 first"),
        "{err}"
    );
    ok(&d, "host-lock controller-1 --wait");
    let out = ok(&d, "kube-host-upgrade controller-1 kubelet");
    assert!(
        out.contains("| status                | upgrading-kubelet |"),
        "{out}"
    );
    assert_eq!(settled_host_status(&d, "controller-1"), "upgraded-kubelet");
    ok(&d, "host-unlock controller-1 --wait");
    ok(&d, "host-swact controller-0 --wait");
    for args in [
        "host-lock controller-0",
        "kube-host-upgrade controller-0 kubelet",
        "host-unlock controller-0",
    ] {
        ok(&d, &format!("{args} --wait"));
    }
    // 13.
    assert_eq!(state_of(&d), "upgrading-kubelets");
    let err = refused(&d, "kube-upgrade-complete");
    assert!(err.contains("worker-0, worker-1"), "{err}");
    // 14.
    for w in ["worker-1", "worker-0"] {
        for args in [
            format!("host-lock {w}"),
            format!("kube-host-upgrade {w} kubelet"),
            format!("host-unlock {w}"),
        ] {
            ok(&d, &format!("{args} --wait"));
        }
    }
    // 15.
    let out = redact(&ok(&d, "kube-upgrade-complete"));
    assert!(
        out.contains("| state        | upgrade-complete                     |"),
        "{out}"
    );
    assert_eq!(
        ok(&d, "kube-upgrade-delete"),
        "Kubernetes upgrade deleted\n"
    );
    assert_eq!(
        ok(&d, "kube-upgrade-show"),
        "A kubernetes upgrade is not in progress\n"
    );
    assert!(ok(&d, "kube-version-list").contains("| v1.16.2 | True   | active      |"));
    assert!(ok(&d, "info").starts_with("Cluster version: v1.16.2\n"));
    assert!(!ok(&d, "alarm-list").contains("900.007"));
    let health = ok(&d, "health-query-kube-upgrade");
    assert!(
        health.starts_with("System Health:\nAll hosts are unlocked/enabled/available: [OK]"),
        "{health}"
    );
}

#[test]
fn usage_errors_exit_two_and_bad_tokens_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    for args in [
        "bogus-command",
        "kube-upgrade-start",
        "kube-host-upgrade controller-0 kernel",
        "host-list --format xml",
    ] {
        let r = kup(&d, args);
        assert_eq!(r.code, 2, "kup {args}: {}", r.stderr);
    }
    let out = Command::new(KUP)
        .args(["host-list", "--url", &d.url, "--token", "not-the-token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));
    let r = kup(&d, "host-show worker-9");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "Error: Host worker-9 not found\n")
    );
    let json = ok(&d, "host-list --format json");
    let hosts: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(hosts.as_array().unwrap().len(), 6);
    assert!(ok(&d, "kube-version-list --format yaml").contains("version: v1.16.1"));
}

/// `kup serve` killed with SIGKILL while a step is in flight, restarted on the same data
/// directory: the step is failed, re-doing it continues, and the upgrade completes; the event
/// log shows every step's end once, with no gap.
#[test]
fn a_daemon_killed_mid_step_resumes_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    seed_patches_before_start(&d);
    ok(&d, "kube-upgrade-start v1.16.2");
    ok(&d, "kube-upgrade-download-images --wait");
    drop(d);

    // Realistic durations: the control-plane step takes minutes, so it is surely in flight.
    let mut d = serve(dir.path(), "1");
    let out = ok(&d, "kube-host-upgrade controller-1 control-plane");
    assert!(out.contains("upgrading-control-plane"));
    assert_eq!(state_of(&d), "upgrading-first-master");
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    drop(d);

    let d = serve(dir.path(), "0");
    assert_eq!(state_of(&d), "upgrading-first-master-failed");
    assert!(ok(&d, "kube-host-upgrade-list").contains("| upgrading-control-plane-failed |"));
    ok(&d, "kube-host-upgrade controller-1 control-plane --wait");
    assert_eq!(state_of(&d), "upgraded-first-master");
    ok(&d, "kube-upgrade-networking --wait");
    ok(&d, "kube-host-upgrade controller-0 control-plane --wait");
    seed_kubelet_patch(&d);
    for args in [
        "host-lock controller-1",
        "kube-host-upgrade controller-1 kubelet",
        "host-unlock controller-1",
        "host-swact controller-0",
        "host-lock controller-0",
        "kube-host-upgrade controller-0 kubelet",
        "host-unlock controller-0",
        "host-lock worker-0",
        "kube-host-upgrade worker-0 kubelet",
        "host-unlock worker-0",
        "host-lock worker-1",
        "kube-host-upgrade worker-1 kubelet",
        "host-unlock worker-1",
    ] {
        ok(&d, &format!("{args} --wait"));
    }
    ok(&d, "kube-upgrade-complete");
    let events: serde_json::Value =
        serde_json::from_str(&ok(&d, "event-list --format json --limit 10000")).unwrap();
    let events = events.as_array().unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "gap at {e}");
    }
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "state")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    for done in [
        "upgrade-started",
        "downloaded-images",
        "upgraded-first-master",
        "upgraded-networking",
        "upgraded-second-master",
        "upgrading-kubelets",
        "upgrade-complete",
    ] {
        let n = states
            .iter()
            .filter(|m| m.ends_with(&format!(" {done}")))
            .count();
        assert_eq!(n, 1, "{done} appears {n} times in {states:?}");
    }
    assert!(events.iter().any(
        |e| e["kind"] == "recovery" && e["message"].as_str().unwrap().contains("marked failed")
    ));
}

/// The committed bundles are exactly what `examples/patches/build.sh` builds from the sources,
/// and `sw-patch keygen`/`build` work as a patch producer runs them.
#[test]
fn the_example_patches_rebuild_to_the_committed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for id in [
        "K8S-1.16.2-PLATFORM",
        "K8S-1.16.2-KUBEADM",
        "K8S-1.16.2-KUBELET",
    ] {
        let out = dir.path().join(format!("{id}.patch"));
        let st = Command::new(KUP)
            .args(["sw-patch", "build"])
            .arg(patches_dir().join("src").join(id))
            .arg("--key")
            .arg(patches_dir().join("demo-key.secret"))
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(patch_file(id)).unwrap(),
            "{id}: run examples/patches/build.sh"
        );
    }
    let name = dir.path().join("mykey");
    let st = Command::new(KUP)
        .args(["sw-patch", "keygen", "-o"])
        .arg(&name)
        .output()
        .unwrap();
    assert!(st.status.success());
    let secret = std::fs::metadata(dir.path().join("mykey.secret")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secret.permissions()) & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(dir.path().join("mykey.pub"))
            .unwrap()
            .starts_with("kup-public-key ")
    );
    // A bundle signed with the new key is refused by a daemon that does not trust it.
    let out = dir.path().join("mine.patch");
    let st = Command::new(KUP)
        .args(["sw-patch", "build"])
        .arg(patches_dir().join("src/K8S-1.16.2-KUBEADM"))
        .arg("--key")
        .arg(dir.path().join("mykey.secret"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success());
    let d = serve(dir.path(), "0");
    let err = refused(&d, &format!("sw-patch upload {}", out.display()));
    assert!(err.contains("not signed by a trusted key"), "{err}");
    assert!(
        ok(&d, "sw-patch query").lines().count() <= 4,
        "nothing was added"
    );
}

/// A daemon given bad input refuses to start, says why in one line, and writes nothing: every
/// input, the port included, is checked before anything is created or recovered.
#[test]
fn bad_serve_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "system_type: standard\nkubernetes_version: v1.16.1\nversions:\n  - version: v1.16.1\nhosts:\n  - name: c0\n    personality: controler\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("missing.pub");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let t = "0123456789abcdef";
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    for (args, says) in [
        (
            vec!["--cluster".into(), bad.display().to_string()],
            "line 7: unknown Personality \"controler\"".to_string(),
        ),
        (
            vec!["--db".into(), "postgres://kup@127.0.0.1:1/kup".into()],
            "--db postgres://: every replica must accept the same tokens".into(),
        ),
        (
            vec![
                "--db".into(),
                "postgres://kup@127.0.0.1:1/kup".into(),
                "--token-file".into(),
                file("ha-tokens", &format!("admin {t}\n")),
            ],
            "--db: cannot connect to the database".into(),
        ),
        (
            vec!["--db".into(), "mysql://x".into()],
            "--db mysql://x: expected sqlite://PATH or postgres://USER@HOST:PORT/DB".into(),
        ),
        (
            vec!["--db".into(), "sqlite:///nonexistent/dir/x.db".into()],
            "--db /nonexistent/dir/x.db: directory /nonexistent/dir does not exist".into(),
        ),
        (
            vec!["--trusted-key".into(), key.display().to_string()],
            "cannot read trusted key".into(),
        ),
        (
            vec!["--token-file".into(), "/nonexistent".into()],
            "cannot read token file /nonexistent".into(),
        ),
        (
            vec!["--token-file".into(), file("empty", "")],
            "holds no token".into(),
        ),
        (
            vec!["--token-file".into(), file("role", &format!("root {t}\n"))],
            "line 1: expected `admin TOKEN` or `reader TOKEN`".into(),
        ),
        (
            vec!["--token-file".into(), file("short", "admin abc\n")],
            "line 1: a token needs at least 16 characters".into(),
        ),
        (
            vec![
                "--token-file".into(),
                file("twice", &format!("admin {t}\nreader {t}\n")),
            ],
            "line 2: this token is already listed on line 1; each token has one role".into(),
        ),
        (
            vec!["--listen".into(), busy_addr.clone()],
            format!("cannot listen on {busy_addr}"),
        ),
    ] {
        let out = Command::new(KUP)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with("Error: ") && stderr.contains(&says),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!data.exists(), "{args:?} created the data directory");
    }
}

/// `event-list --follow` prints each event as it is committed (here as JSON Lines), and
/// `kube-host-upgrade-failed` ends a host's hung action by hand.
#[test]
fn events_are_followed_as_they_happen_and_a_hung_action_is_failed_by_hand() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // Realistic durations: the lock takes minutes, so it is surely still running.
    let d = serve(dir.path(), "1");
    let last = events(&d).last().map_or(0, |e| e["seq"].as_i64().unwrap());
    let mut follower = std::process::Command::new(KUP)
        .args(["event-list", "--follow", "--format", "json", "--after"])
        .arg(last.to_string())
        .env("KUP_URL", &d.url)
        .env("KUP_TOKEN", &d.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follower.stdout.take().unwrap()).lines();

    ok(&d, "host-lock worker-0");
    let out = ok(&d, "kube-host-upgrade-failed worker-0");
    assert!(out.contains("| hostname "), "{out}");
    let mut messages = Vec::new();
    while messages.len() < 3 {
        let line = lines.next().unwrap().unwrap();
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(ev["seq"], last + 1 + messages.len() as i64, "{line}");
        messages.push(ev["message"].as_str().unwrap().to_string());
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert_eq!(
        messages,
        [
            "host-lock worker-0 accepted",
            "kube-host-upgrade-failed worker-0 accepted",
            "lock worker-0: marked failed by kube-host-upgrade-failed worker-0",
        ]
    );
    let err = refused(&d, "kube-host-upgrade-failed worker-0");
    assert_eq!(
        err.trim_end(),
        "Error: Host worker-0 has no upgrade step or action in progress to mark failed"
    );
}
