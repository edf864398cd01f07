//! Races: 16 clients send conflicting commands to the real daemon at the same moment (every
//! connection is made first, then every thread writes its request at once), each race repeated
//! `KUP_RACE_ROUNDS` times (default 2; `scripts/reliability.sh` runs 100) on a fresh daemon.
//! Odd rounds make the raced step take 0.3 s, so the losers meet it in flight; even rounds make
//! it instant, so they meet its end.
//!
//! Every round must end with exactly the winners the API allows, every loser refused with one
//! of the reasons the race allows (HTTP 400), and a consistent state: what the store records
//! agrees with what the cluster shows, the event log is gapless, the simulation's audit is at
//! zero, and a daemon started again on the same directory shows exactly the same.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 16;

fn rounds() -> usize {
    std::env::var("KUP_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The seed's standard system with v1.16.2 in its catalog, every step instant but `slow`
/// (seconds; the daemon runs at time scale 1).
fn cluster_file(dir: &Path, slow: Option<(&str, f64)>) -> PathBuf {
    let standard = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/standard.yaml");
    let mut text = std::fs::read_to_string(standard).unwrap().replacen(
        "versions:\n  - version: v1.16.1\n",
        "versions:\n  - version: v1.16.1\n  - version: v1.16.2\n    upgrade_from: [v1.16.1]\n",
        1,
    );
    text.push_str("durations:\n");
    for kind in [
        "download-images",
        "control-plane",
        "networking",
        "kubelet",
        "lock",
        "unlock",
        "swact",
        "cordon",
        "uncordon",
    ] {
        let secs = slow.filter(|(k, _)| *k == kind).map_or(0.0, |(_, s)| s);
        text.push_str(&format!("  {kind}: {secs}\n"));
    }
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon on `dir` with the race's cluster; round `round` decides whether `kind` is slow.
fn start(dir: &Path, kind: &str, round: usize) -> Daemon {
    let slow = (round % 2 == 1).then_some((kind, 0.3));
    let file = cluster_file(dir, slow);
    serve_with(dir, "1", &["--cluster", file.to_str().unwrap()])
}

/// One request of a race.
struct Req {
    method: &'static str,
    path: String,
    body: Option<String>,
}

fn req(method: &'static str, path: &str, body: Option<serde_json::Value>) -> Req {
    Req {
        method,
        path: path.into(),
        body: body.map(|b| b.to_string()),
    }
}

/// The answer: HTTP status and, for a refusal, its `error_message`.
#[derive(Debug)]
struct Reply {
    status: u16,
    message: String,
}

impl Reply {
    /// 200, or 202 for what goes on after the reply (a strategy's apply).
    fn accepted(&self) -> bool {
        matches!(self.status, 200 | 202)
    }
}

/// Sends every request at the same moment and returns the replies in the same order.
fn race(d: &Daemon, reqs: &[Req]) -> Vec<Reply> {
    let addr = d.url.trim_start_matches("http://").to_string();
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let threads: Vec<_> = reqs
        .iter()
        .map(|r| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let body = r.body.clone().unwrap_or_default();
            let text = format!(
                "{} {} HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                r.method,
                r.path,
                d.token,
                body.len()
            );
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                stream.write_all(text.as_bytes()).unwrap();
                let mut out = Vec::new();
                stream.read_to_end(&mut out).unwrap();
                parse_reply(&out)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    // sysinv's shape: `error_message` holds JSON whose `faultstring` is the reason.
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error_message"].as_str().map(str::to_string))
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(&m)
                .ok()
                .and_then(|v| v["faultstring"].as_str().map(str::to_string))
                .unwrap_or(m)
        })
        .unwrap_or_default();
    Reply { status, message }
}

/// What the rounds of one race added up to.
#[derive(Default)]
struct Tally {
    rounds: usize,
    accepted: usize,
    refused: BTreeMap<String, usize>,
    /// How rounds ended, where that may differ.
    ends: BTreeMap<String, usize>,
}

impl Tally {
    /// Counts one round: exactly `winners` accepted (200), every other reply a 400 whose
    /// message `allowed` names (returning the kind counted).
    fn round(
        &mut self,
        replies: &[Reply],
        winners: usize,
        allowed: impl Fn(usize, &str) -> Option<&'static str>,
    ) {
        self.rounds += 1;
        let accepted = replies.iter().filter(|r| r.accepted()).count();
        assert_eq!(accepted, winners, "round {}: {replies:?}", self.rounds);
        self.accepted += accepted;
        for (i, r) in replies.iter().enumerate().filter(|(_, r)| !r.accepted()) {
            assert_eq!(r.status, 400, "round {}: {r:?}", self.rounds);
            let kind = allowed(i, &r.message)
                .unwrap_or_else(|| panic!("round {}: unexpected refusal {r:?}", self.rounds));
            *self.refused.entry(kind.to_string()).or_default() += 1;
        }
    }

    fn report(&self, name: &str, started: Instant) {
        let refused: Vec<String> = self
            .refused
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|(k, n)| format!("{n} ending {k}"))
            .collect();
        println!(
            "race {name}: {} rounds of {CLIENTS} clients, {} accepted, refused: {}{}{} ({:.1} s)",
            self.rounds,
            self.accepted,
            refused.join(", "),
            if ends.is_empty() { "" } else { "; rounds: " },
            ends.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
}

fn json(d: &Daemon, args: &str) -> serde_json::Value {
    serde_json::from_str(&ok(d, &format!("{args} --format json"))).unwrap()
}

/// How many events carry exactly `message`.
fn count(log: &[serde_json::Value], message: &str) -> usize {
    log.iter().filter(|e| e["message"] == message).count()
}

/// Waits until nothing runs: no host has a task, no step is in flight, no strategy applies.
fn settle(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hosts = json(d, "host-list");
        let busy = hosts
            .as_array()
            .unwrap()
            .iter()
            .any(|h| !h["task"].is_null());
        let state = settled_state(d);
        let strategy = kup(d, "kube-upgrade-strategy show --format json");
        let applying =
            strategy.code == 0
                && serde_json::from_str::<serde_json::Value>(&strategy.stdout).unwrap()["strategy"]
                    ["state"]
                    .as_str()
                    .is_some_and(|s| s == "applying" || s == "aborting");
        let hosts_rows = json(d, "kube-host-upgrade-list");
        let stepping = hosts_rows.as_array().unwrap().iter().any(|r| {
            r["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("upgrading-") && !s.ends_with("-failed"))
        });
        if !busy && !applying && !stepping && !state.starts_with("downloading") {
            return;
        }
        assert!(Instant::now() < deadline, "never settled: {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a client can read about the store and the cluster.
fn view(d: &Daemon) -> Vec<String> {
    let strategy = kup(d, "kube-upgrade-strategy show --format json");
    vec![
        ok(d, "kube-upgrade-show --format json"),
        ok(d, "kube-host-upgrade-list --format json"),
        ok(d, "host-list --format json"),
        ok(d, "sw-patch query --format json"),
        ok(d, "kube-version-list --format json"),
        format!("{} {}", strategy.code, strategy.stdout),
        ok(d, "event-list --format json --limit 10000"),
    ]
}

/// What every round ends with, once nothing runs: a gapless log, each operation's end
/// recorded once, the audit at zero, and the same view from a daemon started again on the
/// same directory (the store holds what was shown; nothing was left in flight).
fn check_consistent(d: Daemon, dir: &Path) {
    settle(&d);
    let log = events(&d);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "gap before {e}");
    }
    let mut ends = BTreeMap::new();
    for e in log.iter().filter(|e| e["kind"] == "operation") {
        *ends.entry(e["message"].as_str().unwrap()).or_insert(0) += 1;
    }
    assert!(
        ends.values().all(|n| *n == 1),
        "an end recorded twice: {ends:?}"
    );
    let audit = &json(&d, "info")["safety_audit"];
    for count in [
        "pdb_violations",
        "unplaced_pods",
        "control_plane_violations",
        "skew_violations",
        "repeated_steps",
    ] {
        assert_eq!(audit[count], 0, "{count}: {audit}");
    }
    let before = view(&d);
    let args: Vec<String> = d_args(dir);
    drop(d);
    let d = serve_with(
        dir,
        "1",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(view(&d), before, "the view after a restart");
}

/// The arguments the race's daemons run with.
fn d_args(dir: &Path) -> Vec<String> {
    let file = dir.join("cluster.yaml");
    if file.exists() {
        vec!["--cluster".into(), file.display().to_string()]
    } else {
        vec![]
    }
}

/// 16 `kube-upgrade-start`: exactly one starts the upgrade.
#[test]
fn concurrent_starts_admit_exactly_one() {
    let started = Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = start(dir.path(), "download-images", round);
        let body = serde_json::json!({"to_version": "v1.16.2"});
        let reqs: Vec<Req> = (0..CLIENTS)
            .map(|_| req("POST", "/v1/kube_upgrade", Some(body.clone())))
            .collect();
        let replies = race(&d, &reqs);
        tally.round(&replies, 1, |_, m| {
            (m == "A kubernetes upgrade is already in progress").then_some("already in progress")
        });
        assert_eq!(state_of(&d), "upgrade-started");
        assert_eq!(count(&events(&d), "kube-upgrade-start v1.16.2 accepted"), 1);
        check_consistent(d, dir.path());
    }
    tally.report("kube-upgrade-start", started);
}

/// 16 `host-lock worker-0`: exactly one locks it.
#[test]
fn concurrent_locks_of_one_host_admit_exactly_one() {
    let started = Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = start(dir.path(), "lock", round);
        let body = serde_json::json!([{"op": "replace", "path": "/action", "value": "lock"}]);
        let reqs: Vec<Req> = (0..CLIENTS)
            .map(|_| req("PATCH", "/v1/ihosts/worker-0", Some(body.clone())))
            .collect();
        let replies = race(&d, &reqs);
        tally.round(&replies, 1, |_, m| {
            // The task is the cluster's word (Locking) or, before the cluster shows it, the
            // store's record of the lock.
            if m.starts_with("Host worker-0 has an action in progress (") {
                Some("in progress")
            } else if m == "Host worker-0 is already locked" {
                Some("already locked")
            } else {
                None
            }
        });
        settle(&d);
        let host = json(&d, "host-show worker-0");
        assert_eq!(host["administrative"], "locked");
        assert_eq!(count(&events(&d), "lock worker-0: done"), 1);
        check_consistent(d, dir.path());
    }
    tally.report("host-lock, one host", started);
}

/// 8 `host-lock worker-0` and 8 `host-lock worker-1`, interleaved. The two workers hold the
/// only replicas of ingress-nginx (at least 1 of 2 available) and postgres (at most 1 of 2
/// unavailable): draining both at once is unsafe, so exactly one lock goes through and every
/// lock of the other is refused as unsafe, whether it meets the first lock in flight or done.
#[test]
fn concurrent_locks_of_two_workers_whose_joint_drain_is_unsafe_admit_one() {
    let started = Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = start(dir.path(), "lock", round);
        let body = serde_json::json!([{"op": "replace", "path": "/action", "value": "lock"}]);
        let host = |i: usize| format!("worker-{}", i % 2);
        let reqs: Vec<Req> = (0..CLIENTS)
            .map(|i| {
                req(
                    "PATCH",
                    &format!("/v1/ihosts/{}", host(i)),
                    Some(body.clone()),
                )
            })
            .collect();
        let replies = race(&d, &reqs);
        let winner = host(replies.iter().position(|r| r.accepted()).unwrap_or(0));
        tally.round(&replies, 1, |i, m| {
            let h = host(i);
            if h != winner {
                let unsafe_lock = m.starts_with(&format!("Can not lock {h}"))
                    && m.contains("draining it is unsafe");
                unsafe_lock.then_some("unsafe (LockUnsafe)")
            } else if m.starts_with(&format!("Host {h} has an action in progress (")) {
                Some("in progress")
            } else if m == format!("Host {h} is already locked") {
                Some("already locked")
            } else {
                None
            }
        });
        settle(&d);
        let loser = if winner == "worker-0" {
            "worker-1"
        } else {
            "worker-0"
        };
        assert_eq!(
            json(&d, &format!("host-show {winner}"))["administrative"],
            "locked"
        );
        assert_eq!(
            json(&d, &format!("host-show {loser}"))["administrative"],
            "unlocked"
        );
        let log = events(&d);
        assert_eq!(count(&log, &format!("lock {winner}: done")), 1);
        assert_eq!(count(&log, &format!("lock {loser}: done")), 0);
        check_consistent(d, dir.path());
    }
    tally.report("host-lock, two workers unsafe together", started);
}

/// 16 `kube-host-upgrade controller-1 kubelet` (the controller locked, the control planes and
/// networking done): exactly one upgrades it, once.
#[test]
fn concurrent_kubelet_upgrades_of_one_host_admit_exactly_one() {
    let started = Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = start(dir.path(), "kubelet", round);
        for c in [
            "kube-upgrade-start v1.16.2",
            "kube-upgrade-download-images --wait",
            "kube-host-upgrade controller-1 control-plane --wait",
            "kube-upgrade-networking --wait",
            "kube-host-upgrade controller-0 control-plane --wait",
            "host-lock controller-1 --wait",
        ] {
            ok(&d, c);
        }
        let reqs: Vec<Req> = (0..CLIENTS)
            .map(|_| {
                req(
                    "POST",
                    "/v1/ihosts/controller-1/kube_upgrade_kubelet",
                    Some(serde_json::json!({})),
                )
            })
            .collect();
        let replies = race(&d, &reqs);
        // On rounds where the step is instant, a request decided after the first one's step
        // ended finds the kubelet at the target: StarlingX answers 200 and runs nothing (its
        // short-circuit, which kup keeps), so several 200s may come; one run, never two.
        let accepted = replies.iter().filter(|r| r.accepted()).count();
        let winners = if round % 2 == 1 { 1 } else { accepted.max(1) };
        tally.round(&replies, winners, |_, m| {
            if m == "The kubelet on controller-1 is already being upgraded" {
                Some("already being upgraded")
            } else if m.contains("controller-1") && m.contains("already") {
                Some("already upgraded")
            } else {
                None
            }
        });
        settle(&d);
        let rows = json(&d, "kube-host-upgrade-list");
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["hostname"] == "controller-1")
            .unwrap()
            .clone();
        // The store's status and the cluster's version agree.
        assert_eq!(row["status"], "upgraded-kubelet", "{row}");
        assert_eq!(row["kubelet_version"], "v1.16.2", "{row}");
        let log = events(&d);
        assert_eq!(
            count(&log, "kube-host-upgrade controller-1 kubelet accepted"),
            winners
        );
        assert_eq!(
            count(&log, "upgrade the kubelet on controller-1 to v1.16.2: done"),
            1,
            "the kubelet step ran once"
        );
        check_consistent(d, dir.path());
    }
    tally.report("kube-host-upgrade kubelet, one host", started);
}

/// 16 `kube-upgrade-strategy apply` of one strategy: exactly one applies it; the others are
/// refused as the API defines (applying, or applied already); the upgrade completes once.
#[test]
fn concurrent_strategy_applies_admit_exactly_one() {
    let started = Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = start(dir.path(), "download-images", round);
        ok(&d, "kube-upgrade-strategy create --to-version v1.16.2");
        let body = serde_json::json!({"action": "apply-all"});
        let reqs: Vec<Req> = (0..CLIENTS)
            .map(|_| {
                req(
                    "POST",
                    "/v1/kube_upgrade_strategy/actions",
                    Some(body.clone()),
                )
            })
            .collect();
        let replies = race(&d, &reqs);
        tally.round(&replies, 1, |_, m| match m {
            "The strategy is applying: wait for it to finish or abort it first" => Some("applying"),
            "The strategy is applied, not ready to apply" => Some("applied"),
            _ => None,
        });
        settle(&d);
        assert_eq!(
            json(&d, "kube-upgrade-strategy show")["strategy"]["state"],
            "applied"
        );
        assert_eq!(state_of(&d), "upgrade-complete");
        assert_eq!(
            count(&events(&d), "kube-upgrade-strategy apply accepted"),
            1
        );
        check_consistent(d, dir.path());
    }
    tally.report("kube-upgrade-strategy apply", started);
}

/// 8 `sw-patch apply` and 8 `sw-patch remove` of the platform patch, interleaved, on the
/// built-in cluster: the accepted ones alternate in the log (apply, remove, apply, ...: a remove
/// before any host installed the patch makes it available again), and the patch ends as the
/// last accepted one left it.
#[test]
fn concurrent_patch_apply_and_remove_end_consistent() {
    let started = Instant::now();
    let mut tally = Tally::default();
    let id = "K8S-1.16.2-PLATFORM";
    for _ in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = serve(dir.path(), "0");
        ok(&d, &format!("sw-patch upload {}", patch_file(id)));
        let reqs: Vec<Req> = (0..CLIENTS)
            .map(|i| {
                let action = if i % 2 == 0 { "apply" } else { "remove" };
                req("POST", &format!("/v1/patches/{id}/{action}"), None)
            })
            .collect();
        let replies = race(&d, &reqs);
        let accepted = replies.iter().filter(|r| r.accepted()).count();
        assert!(accepted >= 1, "the first apply or remove wins: {replies:?}");
        tally.round(&replies, accepted, |i, m| {
            let refusal = if i % 2 == 0 {
                format!("Patch {id} can not be applied: it is partial-apply, not available")
            } else {
                format!("Patch {id} can not be removed: it is available, not applied")
            };
            (m == refusal).then_some(if i % 2 == 0 {
                "apply of an applied patch"
            } else {
                "remove of an available patch"
            })
        });
        let log = events(&d);
        let order: Vec<&str> = log
            .iter()
            .filter_map(|e| e["message"].as_str())
            .filter_map(|m| {
                if m == format!("sw-patch apply {id} accepted") {
                    Some("apply")
                } else if m == format!("sw-patch remove {id} accepted") {
                    Some("remove")
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(order.len(), accepted, "{order:?}");
        for (i, what) in order.iter().enumerate() {
            assert_eq!(
                *what,
                if i % 2 == 0 { "apply" } else { "remove" },
                "{order:?}"
            );
        }
        let applied = accepted % 2 == 1;
        let patch = json(&d, &format!("sw-patch show {id}"));
        assert_eq!(
            patch["state"],
            if applied {
                "partial-apply"
            } else {
                "available"
            },
            "{patch}"
        );
        // The catalog follows the patch: v1.16.2 is known only once every host installed it.
        let versions = ok(&d, "kube-version-list --format json");
        assert!(!versions.contains("v1.16.2"), "{versions}");
        *tally
            .refused
            .entry(format!(
                "rounds ending {}",
                patch["state"].as_str().unwrap()
            ))
            .or_default() += 1;
        check_consistent(d, dir.path());
    }
    tally.report("sw-patch apply and remove", started);
}
