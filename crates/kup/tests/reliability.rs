//! The crash-and-resume harness: automated upgrades with the daemon SIGKILLed at random
//! moments and started again on the same data directory, each run compared with what a
//! crash-free run ends with. `.ci/run` runs a few (`KUP_CRASH_RUNS`, default 2, kills per run
//! `KUP_CRASH_KILLS`, default 3); `scripts/reliability.sh` runs hundreds and writes the counts.
//!
//! Every run must end: upgrade complete, every host at the target and in service, a gapless
//! event log, each operation's end recorded once, and the simulation's audit at zero (no budget
//! broken, no pod left without a place, no two control planes down, no kubelet outside the
//! skew policy, no step executed twice).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: the kill moments of run `seed`, reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// One example's setup: its cluster file (or the built-in one), the target, what to do before
/// the upgrade (the built-in cluster's patches).
struct Case {
    name: &'static str,
    cluster: Option<&'static str>,
    to: &'static str,
    time_scale: &'static str,
    /// Kubelet rounds of the upgrade (2 for v1.29.2 -> v1.33.0: at v1.32.2 and v1.33.0).
    rounds: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "standard",
        cluster: None,
        to: "v1.16.2",
        time_scale: "0.002",
        rounds: 1,
    },
    Case {
        name: "standard-50-workers",
        cluster: Some("standard-50-workers.yaml"),
        to: "v1.16.2",
        time_scale: "0.0005",
        rounds: 1,
    },
    Case {
        name: "kubeadm-v1.29-to-v1.33",
        cluster: Some("kubeadm-v1.29-to-v1.33.yaml"),
        to: "v1.33.0",
        time_scale: "0.001",
        rounds: 2,
    },
];

fn start(case: &Case, dir: &std::path::Path, time_scale: &str) -> Daemon {
    let cluster = case
        .cluster
        .map(|c| examples().join(c).display().to_string());
    let extra: Vec<&str> = match &cluster {
        Some(c) => vec!["--cluster", c.as_str()],
        None => vec![],
    };
    serve_with(dir, time_scale, &extra)
}

/// The patches the built-in cluster needs, as the README delivers them.
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

/// What a finished run leaves: every host's row (name, versions, status) and whether it is in
/// service; the upgrade's state.
fn final_state(d: &Daemon) -> (String, Vec<String>) {
    let rows: serde_json::Value =
        serde_json::from_str(&ok(d, "kube-host-upgrade-list --format json")).unwrap();
    let hosts: serde_json::Value = serde_json::from_str(&ok(d, "host-list --format json")).unwrap();
    let mut out: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["hostname"].as_str().unwrap();
            let admin = hosts
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["hostname"] == name)
                .map(|h| h["administrative"].to_string())
                .unwrap_or_default();
            format!(
                "{name} {} {} {} {admin}",
                r["control_plane_version"], r["kubelet_version"], r["status"]
            )
        })
        .collect();
    out.sort();
    (state_of(d), out)
}

/// Checks what every run must end with; returns a failure in words, if any. Host actions
/// (lock, unlock, swact) recur once per kubelet round when the upgrade crosses several minors:
/// `rounds` says how many times each may end.
fn check_run(d: &Daemon, expected: &(String, Vec<String>), rounds: usize) -> Result<(), String> {
    let got = final_state(d);
    if &got != expected {
        return Err(format!("final state {got:?}, expected {expected:?}"));
    }
    let log = events(d);
    for (i, e) in log.iter().enumerate() {
        if e["seq"] != i as i64 + 1 {
            return Err(format!("event log gap at {e}"));
        }
    }
    let mut ends = std::collections::BTreeMap::new();
    for e in &log {
        if e["kind"] == "operation" {
            *ends
                .entry(e["message"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    let host_action = |m: &str| {
        ["lock ", "unlock ", "swact "]
            .iter()
            .any(|a| m.starts_with(a))
    };
    if let Some((m, n)) = ends
        .iter()
        .find(|(m, n)| m.ends_with(": done") && **n > if host_action(m) { rounds } else { 1 })
    {
        return Err(format!("{m:?} recorded {n} times"));
    }
    let info: serde_json::Value = serde_json::from_str(&ok(d, "info --format json")).unwrap();
    let a = &info["safety_audit"];
    for count in [
        "pdb_violations",
        "unplaced_pods",
        "control_plane_violations",
        "skew_violations",
        "repeated_steps",
    ] {
        if a[count] != 0 {
            return Err(format!("{count}: {a}"));
        }
    }
    Ok(())
}

/// A failed run's evidence, kept: its data directory (database, cluster state and journal,
/// the daemon's log) with the event log and the host lists beside it, not deleted with the
/// temporary directory. The kill moments fall on wall-clock time, so a failure may not come
/// back with its seed. Returns where it is.
fn keep_failed_run(d: Daemon, dir: tempfile::TempDir) -> std::path::PathBuf {
    let log: Vec<String> = events(&d).iter().map(|e| e.to_string()).collect();
    let _ = std::fs::write(dir.path().join("events.jsonl"), log.join("\n"));
    let hosts = format!(
        "{}\n{}",
        ok(&d, "kube-host-upgrade-list"),
        ok(&d, "host-list")
    );
    let _ = std::fs::write(dir.path().join("hosts.txt"), hosts);
    drop(d);
    dir.keep()
}

/// Runs `upgrade online` to its end on a fresh data directory, without crashes.
fn crash_free(case: &Case) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let d = start(case, dir.path(), "0");
    if case.cluster.is_none() {
        deliver_patches(&d);
    }
    let out = ok(&d, &format!("upgrade online --to {}", case.to));
    assert!(out.contains("applied"), "{}: {out}", case.name);
    final_state(&d)
}

/// SIGKILLs the daemon `kills` times, each within `max_ms` of its start (drawn from `rng`),
/// starting it again on the same data directory each time.
fn kill_and_restart(
    case: &Case,
    dir: &std::path::Path,
    mut d: Daemon,
    rng: &mut Rng,
    kills: u64,
    max_ms: u64,
) -> Daemon {
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.below(max_ms)));
        d.child.kill().unwrap(); // SIGKILL
        d.child.wait().unwrap();
        drop(d);
        d = start(case, dir, case.time_scale);
    }
    d
}

/// The cases a harness test runs: the one `KUP_CRASH_EXAMPLE` names, or every case when
/// more than the CI's 2 runs are asked for (CI runs the standard one only).
fn selected(runs: u64) -> impl Iterator<Item = &'static Case> {
    let only = std::env::var("KUP_CRASH_EXAMPLE").ok();
    CASES.iter().filter(move |c| match &only {
        Some(o) => o == c.name,
        None => c.name == "standard" || runs > 2,
    })
}

/// Creates and applies a strategy to the case's target, once the cluster allows it (the
/// 50-worker example's nightly Job runs a moment after the start).
fn apply_strategy(case: &Case, d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        ok(
            d,
            &format!("kube-upgrade-strategy create --to-version {}", case.to),
        );
        if kup(d, "kube-upgrade-strategy apply").code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: never ready to apply",
            case.name
        );
        ok(d, "kube-upgrade-strategy delete");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One run with `kills` SIGKILLs at moments drawn from `seed`; the daemon is started again
/// after each, and `upgrade online` (which finds the strategy applying and follows it) ends it.
fn crashing_run(case: &Case, seed: u64, kills: u64, expected: &(String, Vec<String>)) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut d = start(case, dir.path(), case.time_scale);
    if case.cluster.is_none() {
        deliver_patches(&d);
    }
    apply_strategy(case, &d);
    d = kill_and_restart(case, dir.path(), d, &mut rng, kills, 1500);
    drop(d);
    let d = start(case, dir.path(), "0");
    let deadline = Instant::now() + Duration::from_secs(120);
    let out = loop {
        let r = kup(&d, &format!("upgrade online --to {}", case.to));
        if r.code == 0 {
            break r.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "{} seed {seed}: {}{}",
            case.name,
            r.stdout,
            r.stderr
        );
    };
    assert!(out.contains("applied"), "{} seed {seed}: {out}", case.name);
    if let Err(why) = check_run(&d, expected, case.rounds) {
        let kept = keep_failed_run(d, dir);
        panic!(
            "{} seed {seed} ({kills} kills): {why} (kept in {})",
            case.name,
            kept.display()
        );
    }
}

#[test]
fn upgrades_survive_sigkills_at_random_moments() {
    let runs = env_or("KUP_CRASH_RUNS", 2);
    let kills = env_or("KUP_CRASH_KILLS", 3);
    let base = env_or("KUP_CRASH_SEED", 1);
    for case in selected(runs) {
        let expected = crash_free(case);
        assert_eq!(expected.0, "upgrade-complete", "{}", case.name);
        let started = Instant::now();
        for run in 0..runs {
            crashing_run(case, base + run, kills, &expected);
        }
        println!(
            "crash-resume {}: {runs} runs, {kills} SIGKILLs each, all ended as the crash-free \
             run ({:.0} s)",
            case.name,
            started.elapsed().as_secs_f64()
        );
    }
}

/// One run that aborts with `--rollback` at a moment drawn from `seed` and is SIGKILLed
/// `kills` times on the way back: it must end `upgrade-aborted` with every host as before the
/// upgrade (or, when the abort came too late, complete as a crash-free run), with the same log
/// and audit checks.
fn crashing_abort_run(
    case: &Case,
    seed: u64,
    kills: u64,
    before: &(String, Vec<String>),
    complete: &(String, Vec<String>),
) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ 0xab07);
    let mut d = start(case, dir.path(), case.time_scale);
    if case.cluster.is_none() {
        deliver_patches(&d);
    }
    apply_strategy(case, &d);
    std::thread::sleep(Duration::from_millis(rng.below(3000)));
    let aborted = kup(&d, "kube-upgrade-strategy abort --rollback").code == 0;
    d = kill_and_restart(case, dir.path(), d, &mut rng, kills, 800);
    drop(d);
    let d = start(case, dir.path(), "0");
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected = if aborted {
        // The strategy stops, then the way back runs by itself.
        while state_of(&d) != "upgrade-aborted" {
            assert!(
                Instant::now() < deadline,
                "{} seed {seed}: stuck at {}",
                case.name,
                state_of(&d)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (String::from("upgrade-aborted"), before.1.clone())
    } else {
        let out = ok(&d, &format!("upgrade online --to {}", case.to));
        assert!(out.contains("applied"), "{} seed {seed}: {out}", case.name);
        complete.clone()
    };
    if let Err(why) = check_run(&d, &expected, case.rounds + 1) {
        let kept = keep_failed_run(d, dir);
        panic!(
            "{} seed {seed} (abort, {kills} kills, aborted: {aborted}): {why} (kept in {})",
            case.name,
            kept.display()
        );
    }
    aborted
}

#[test]
fn aborts_survive_sigkills_on_the_way_back() {
    let runs = env_or("KUP_ABORT_RUNS", 2);
    let kills = env_or("KUP_CRASH_KILLS", 3);
    let base = env_or("KUP_CRASH_SEED", 1);
    for case in selected(runs) {
        let complete = crash_free(case);
        let before = {
            let dir = tempfile::tempdir().unwrap();
            let d = start(case, dir.path(), "0");
            final_state(&d)
        };
        let started = Instant::now();
        let mut aborted = 0;
        for run in 0..runs {
            aborted += usize::from(crashing_abort_run(
                case,
                base + run,
                kills,
                &before,
                &complete,
            ));
        }
        println!(
            "abort-resume {}: {runs} runs ({aborted} aborted, the others complete before the \
             abort), {kills} SIGKILLs each, all ended as expected ({:.0} s)",
            case.name,
            started.elapsed().as_secs_f64()
        );
    }
}
