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
#[path = "../../kup-store/tests/support/postgres.rs"]
mod postgres;

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

/// Replicas of `kup serve` sharing one PostgreSQL database, the 50-worker simulation's state
/// and one token file.
struct Replicas {
    /// The database they share.
    db: String,
    dir: tempfile::TempDir,
    token: String,
    case: &'static Case,
    /// Seconds of the lease.
    lease: &'static str,
}

impl Replicas {
    fn start(&self, i: usize) -> Daemon {
        let dir = self.dir.path().join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = examples().join(self.case.cluster.unwrap());
        let state = self.dir.path().join("cluster-state.json");
        let tokens = self.dir.path().join("tokens");
        let url = self.db.clone();
        let args = [
            "--cluster",
            cluster.to_str().unwrap(),
            "--db",
            url.as_str(),
            "--token-file",
            tokens.to_str().unwrap(),
            "--cluster-state",
            state.to_str().unwrap(),
            "--lease",
            self.lease,
        ];
        let mut d = serve_with(&dir, self.case.time_scale, &args);
        d.token = self.token.clone();
        d
    }

    fn new(db: String, case: &'static Case, lease: &'static str) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let token = "ha-test-admin-token-0123456789".to_string();
        std::fs::write(dir.path().join("tokens"), format!("admin {token}\n")).unwrap();
        Replicas {
            db,
            dir,
            token,
            case,
            lease,
        }
    }
}

fn get_status(d: &Daemon, path: &str) -> Option<u16> {
    http_get(d, path).map(|(s, _)| s)
}

/// The 50-worker example, which the high-availability tests upgrade.
fn fifty_workers() -> &'static Case {
    CASES
        .iter()
        .find(|c| c.name == "standard-50-workers")
        .unwrap()
}

/// `upgrade online` through `d` (any replica) until it has followed the strategy to its end;
/// a request refused while the lease changes hands is tried again.
fn follow_to_the_end(case: &Case, d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let out = loop {
        let r = kup(d, &format!("upgrade online --to {}", case.to));
        if r.code == 0 {
            break r.stdout;
        }
        assert!(Instant::now() < deadline, "{}{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.contains("applied"), "{out}");
}

/// The status a replica gives, when it answers.
fn ha_status(d: &Daemon) -> Option<serde_json::Value> {
    let r = kup(d, "ha-status --format json");
    (r.code == 0).then(|| serde_json::from_str(&r.stdout).unwrap())
}

/// Waits until a replica leads with its engine open (its `/readyz` says ready), other than
/// `not` (an index, which is not asked: it may be paused, and a leader id) and returns its
/// index, its id and how long that took.
fn wait_for_leader(
    replicas: &[Option<Daemon>],
    not: Option<(usize, &str)>,
) -> (usize, String, Duration) {
    let started = Instant::now();
    loop {
        for (i, d) in replicas.iter().enumerate() {
            let Some(d) = d.as_ref().filter(|_| not.is_none_or(|(n, _)| n != i)) else {
                continue;
            };
            let Some(st) = ha_status(d) else { continue };
            let Some(leader) = st["leader"].as_str() else {
                continue;
            };
            if not.is_some_and(|(_, id)| id == leader) || st["replica"] != leader {
                continue;
            }
            if get_status(d, "/readyz") == Some(200) {
                return (i, leader.to_string(), started.elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no replica took the lease over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three daemons on one PostgreSQL database: the 50-worker example's automated upgrade,
/// started through a standby (which forwards it), survives its leader SIGKILLed at random
/// moments: each time another replica takes the lease over, re-attaches to what was in
/// flight and goes on; the killed one comes back as a standby. The run ends as a run without
/// failures does, with a gapless log and no step executed twice. `KUP_HA_RUNS` runs (1 by
/// default) of `KUP_HA_KILLS` kills (3), each on a fresh database.
#[test]
fn a_standby_takes_over_from_a_killed_leader_and_finishes_the_upgrade() {
    let Some(pg) = postgres::PgServer::start() else {
        return;
    };
    let case = fifty_workers();
    let expected = crash_free(case);
    let (runs, kills) = (env_or("KUP_HA_RUNS", 1), env_or("KUP_HA_KILLS", 3));
    let base = env_or("KUP_CRASH_SEED", 1);
    let mut failovers = Vec::new();
    for run in 0..runs {
        let db = pg.create(&format!("ha_run_{run}"));
        failovers.extend(killed_leaders_run(case, db, base + run, kills, &expected));
    }
    failovers.sort();
    let at = |q: f64| failovers[((failovers.len() - 1) as f64 * q) as usize].as_secs_f64();
    println!(
        "ha: {runs} runs, {kills} leaders SIGKILLed in each (lease 2 s), all ended as the \
         failure-free run; a standby led with its engine open after {:.2} s (median), \
         {:.2} s (worst)",
        at(0.5),
        at(1.0)
    );
}

/// One run of [`a_standby_takes_over_from_a_killed_leader_and_finishes_the_upgrade`]: the
/// failover times.
fn killed_leaders_run(
    case: &'static Case,
    db: String,
    seed: u64,
    kills: u64,
    expected: &(String, Vec<String>),
) -> Vec<Duration> {
    let mut rng = Rng(seed);
    let set = Replicas::new(db, case, "2");
    let mut replicas: Vec<Option<Daemon>> = (0..3).map(|i| Some(set.start(i))).collect();
    let (first, _, _) = wait_for_leader(&replicas, None);
    // Started through a standby: forwarded to the leader.
    let standby = replicas[(first + 1) % 3].as_ref().unwrap();
    apply_strategy(case, standby);
    let metrics = |d: &Daemon| http_get(d, "/metrics").unwrap().1;
    let (leader_says, standby_says) =
        (metrics(replicas[first].as_ref().unwrap()), metrics(standby));
    assert!(leader_says.contains("\nkup_leader 1\n"), "{leader_says}");
    assert!(
        leader_says.contains("kup_strategy_state{state="),
        "{leader_says}"
    );
    assert!(
        leader_says.contains("kup_commands_total{result=\"accepted\"} ")
            && !leader_says.contains("kup_commands_total{result=\"accepted\"} 0\n"),
        "{leader_says}"
    );
    assert!(standby_says.contains("\nkup_leader 0\n"), "{standby_says}");
    assert!(
        !standby_says.contains("kup_forwarded_requests_total 0\n"),
        "{standby_says}"
    );
    let mut failovers = Vec::new();
    let mut killed_in = Vec::new();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.below(2500)));
        let (i, leader, _) = wait_for_leader(&replicas, None);
        killed_in.push(state_of(replicas[i].as_ref().unwrap()));
        let mut d = replicas[i].take().unwrap();
        d.child.kill().unwrap(); // SIGKILL
        d.child.wait().unwrap();
        drop(d);
        let (_, _, took) = wait_for_leader(&replicas, Some((i, &leader)));
        failovers.push(took);
        replicas[i] = Some(set.start(i));
    }
    // The first kill falls while the upgrade runs, not after it.
    assert_ne!(
        killed_in[0], "upgrade-complete",
        "seed {seed}: {killed_in:?}"
    );
    let (i, _, _) = wait_for_leader(&replicas, None);
    let any = replicas[(i + 1) % 3].as_ref().unwrap();
    follow_to_the_end(case, any);
    if let Err(why) = check_run(any, expected, case.rounds) {
        panic!("seed {seed} (killed in {killed_in:?}): {why}");
    }
    failovers
}

/// A leader paused past its lease (SIGSTOP) while the upgrade runs: a standby takes over and
/// goes on; when the paused one wakes (SIGCONT) it finds its lease stale and stops (exit 3);
/// whatever it tries to write first, the store refuses (its token is stale). The upgrade
/// ends as the failure-free run.
#[test]
fn a_paused_leader_stops_when_it_wakes_and_the_upgrade_goes_on() {
    let Some(pg) = postgres::PgServer::start() else {
        return;
    };
    let case = fifty_workers();
    let expected = crash_free(case);
    let set = Replicas::new(pg.url("postgres"), case, "2");
    let mut replicas: Vec<Option<Daemon>> = (0..2).map(|i| Some(set.start(i))).collect();
    let (first, leader, _) = wait_for_leader(&replicas, None);
    apply_strategy(case, replicas[1 - first].as_ref().unwrap());
    std::thread::sleep(Duration::from_millis(700));
    let pid = replicas[first].as_ref().unwrap().child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let (next, _, took) = wait_for_leader(&replicas, Some((first, &leader)));
    assert_eq!(next, 1 - first);
    // Paused a while longer: the new leader goes on meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    signal("-CONT");
    let mut paused = replicas[first].take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = paused.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the woken leader did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(3), "{status:?}");
    let log =
        std::fs::read_to_string(set.dir.path().join(format!("replica-{first}/serve.log"))).unwrap();
    // Its watchdog or its next round, whichever comes first on waking.
    assert!(
        log.contains("this replica could not renew its lease in time")
            || log.contains("this replica lost the lease"),
        "{log}"
    );
    drop(paused);
    let d = replicas[1 - first].as_ref().unwrap();
    follow_to_the_end(case, d);
    check_run(d, &expected, case.rounds).unwrap();
    println!(
        "ha: a leader paused past its 2 s lease was replaced in {:.2} s and stopped when it woke",
        took.as_secs_f64()
    );
}
