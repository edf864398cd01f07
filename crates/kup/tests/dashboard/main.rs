//! The dashboard in a real headless Chromium against a real `kup serve`: signing in, a wrong
//! token, an automated upgrade of the 50-worker example followed to its end through live
//! updates only, a reader token that sees everything and can change nothing, the keyboard,
//! and the first load at 5,000 hosts (its time is printed for BENCHMARKS.md).
//!
//! `KUP_DASHBOARD_SCREENSHOTS=DIR` keeps the screenshots taken mid-upgrade in DIR (the ones in
//! `docs/` come from there).

#[path = "../common/mod.rs"]
mod common;

mod browser;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browser::Browser;
use common::{Daemon, serve_with};
use serde_json::Value;

const ADMIN: &str = "admin-token-for-the-dashboard-test";
const READER: &str = "reader-token-for-the-dashboard-test";

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

/// A daemon with an admin and a reader token, on `cluster` at `time_scale`.
fn daemon(dir: &Path, cluster: &str, time_scale: &str) -> Daemon {
    daemon_with(dir, time_scale, &["--cluster", cluster])
}

/// A daemon with an admin and a reader token and `extra` arguments.
fn daemon_with(dir: &Path, time_scale: &str, extra: &[&str]) -> Daemon {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("admin {ADMIN}\nreader {READER}\n")).unwrap();
    let mut args = vec!["--token-file", tokens.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut d = serve_with(dir, time_scale, &args);
    d.token = ADMIN.into();
    d
}

fn shots_dir(fallback: &Path) -> PathBuf {
    std::env::var_os("KUP_DASHBOARD_SCREENSHOTS")
        .map_or_else(|| fallback.to_path_buf(), PathBuf::from)
}

/// `GET path` with the admin token, as JSON.
async fn get(d: &Daemon, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST path` with the admin token and a JSON body, which must succeed.
async fn post(d: &Daemon, path: &str, body: Value) {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        status.is_success(),
        "POST {path}: {status} {}",
        res.text().await.unwrap()
    );
}

/// The grid as the page shows it: each cell's host and state.
async fn cells(b: &Browser) -> Vec<(String, String)> {
    let v = b
        .js("return [...document.querySelectorAll('#grid .cell')].map(c => [c.dataset.host, c.dataset.s]);")
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_watches_an_automated_upgrade_run_to_its_end_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    // The 50-worker example with worker-49 out of disk: --partial-ok leaves it out.
    let cluster = std::fs::read_to_string(example("standard-50-workers.yaml"))
        .unwrap()
        .replace(
            "  - name: worker-49\n    personality: worker\n",
            "  - name: worker-49\n    personality: worker\n    disk_free_gib: 0\n",
        );
    assert!(cluster.contains("disk_free_gib: 0"));
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, cluster).unwrap();
    let d = daemon(dir.path(), file.to_str().unwrap(), "0.003");
    let Some(b) = Browser::start(1400, 1500).await else {
        return;
    };
    b.open(&d.url).await;

    // A wrong token is refused, and nothing of the cluster is shown.
    b.sign_in("not-a-token-of-this-daemon").await;
    b.until(
        10,
        "the refusal",
        "return document.getElementById('login-error').textContent === 'The token was refused.'",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('app').hidden").await,
        Value::Bool(true)
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#grid .cell').length")
            .await,
        0
    );

    b.sign_in(ADMIN).await;
    b.until_grid(10, 54).await;
    assert_eq!(b.text("#role").await, "admin");
    assert_eq!(
        b.js("return sessionStorage.getItem('kup-token')").await,
        Value::String(ADMIN.into())
    );
    assert_eq!(
        b.js("return localStorage.length").await,
        0,
        "the token is kept for the tab only"
    );
    let buttons = b
        .js("return [...document.querySelectorAll('#action-buttons button')].map(b => b.id)")
        .await;
    assert_eq!(
        buttons,
        serde_json::json!([
            "action-start",
            "action-online",
            "action-apply",
            "action-abort"
        ])
    );
    assert!(
        cells(&b).await.iter().all(|(_, s)| s == "idle"),
        "no upgrade yet: every host idle"
    );
    // Anything that reloads the page loses this; every request is counted from here.
    b.js("window.kupSamePage = 'yes'; performance.setResourceTimingBufferSize(1000000); return null;").await;

    // `upgrade online --partial-ok` from the page: the confirmation shows the plan first.
    b.click("#action-online").await;
    b.until(
        20,
        "the plan in the confirmation",
        "return document.getElementById('online-plan').textContent.includes('stages')",
    )
    .await;
    let plan = b.text("#online-plan").await;
    assert!(plan.contains("v1.16.1 → v1.16.2"), "{plan}");
    b.click("#confirm-ok").await;
    b.until(20, "the strategy applying", "return !document.getElementById('confirm').open && document.getElementById('status').textContent.includes('applying')").await;

    // Watch it run: every state the grid passes through, and the timeline growing.
    let mut seen_states = std::collections::BTreeSet::new();
    let mut done_stages_seen = std::collections::BTreeSet::new();
    let mut shot = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let view = b
            .js("const s = document.querySelector('#strategy dd[data-k=\"State\"]'); \
                 return [s ? s.textContent : '', Number(document.getElementById('timeline').dataset.done || 0), \
                 [...new Set([...document.querySelectorAll('#grid .cell')].map(c => c.dataset.s))]];")
            .await;
        let state = view[0].as_str().unwrap().to_string();
        done_stages_seen.insert(view[1].as_u64().unwrap());
        for s in view[2].as_array().unwrap() {
            seen_states.insert(s.as_str().unwrap().to_string());
        }
        let counts = b.legend().await;
        if !shot
            && counts["done"].as_u64().unwrap() >= 12
            && counts["in-flight"].as_u64().unwrap() > 0
        {
            b.screenshot(&shots_dir(dir.path()).join("dashboard-50-hosts.png"))
                .await;
            shot = true;
        }
        if state == "applied" {
            break;
        }
        assert!(
            !state.ends_with("failed"),
            "the strategy failed: {}",
            b.text("#strategy").await
        );
        assert!(
            Instant::now() < deadline,
            "the upgrade did not end in time (state {state:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shot, "no moment mid-upgrade was seen");

    // The end, as the API has it, is what the page shows, and it got there live.
    b.until(10, "the last tiles", "return [...document.querySelectorAll('#grid .cell')].filter(c => c.dataset.s === 'done').length === 51").await;
    let api = get(&d, "/v1/dashboard").await;
    let want: Vec<(String, String)> = api["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["hostname"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(cells(&b).await, want);
    assert_eq!(want.iter().filter(|(_, s)| s == "done").count(), 51);
    assert_eq!(
        want.iter()
            .filter(|(_, s)| s == "skipped")
            .collect::<Vec<_>>(),
        [&("worker-49".to_string(), "skipped".to_string())]
    );
    let label = b
        .js("return document.querySelector('#grid .cell[data-host=\"worker-49\"]').getAttribute('aria-label')")
        .await;
    assert!(
        label.as_str().unwrap().starts_with("worker-49: skipped ("),
        "{label}"
    );
    assert_eq!(
        want.iter().filter(|(_, s)| s == "idle").count(),
        2,
        "the storage hosts"
    );
    let all = api["strategy"]["stages"].as_array().unwrap();
    let stages = all.len();
    // With a host left out the upgrade is not completed: every stage but the last ran.
    let ran = all.iter().filter(|s| s["result"] == "success").count();
    assert_eq!(ran, stages - 1, "{all:?}");
    assert_eq!(
        all.last().unwrap()["reason"],
        "not run: some hosts were left out"
    );
    b.until(10, "the timeline's last stage", &format!("const t = document.getElementById('timeline'); return t.dataset.stages === '{stages}' && t.dataset.done === '{ran}'")).await;
    assert_eq!(
        b.js("return document.querySelectorAll('#timeline rect.tl-actual[data-result=\"success\"]').length").await,
        ran as u64
    );
    assert!(
        b.text("#timeline-summary").await.contains("took"),
        "{}",
        b.text("#timeline-summary").await
    );
    for s in ["waiting", "in-flight", "done"] {
        assert!(
            seen_states.contains(s),
            "the grid never showed {s}: {seen_states:?}"
        );
    }
    assert!(
        done_stages_seen
            .iter()
            .any(|&n| n > 0 && (n as usize) < stages),
        "the timeline was never seen part-way: {done_stages_seen:?}"
    );
    assert_eq!(
        b.js("return window.kupSamePage || null").await,
        Value::String("yes".into()),
        "the page was reloaded"
    );
    let events = b.text("#events").await;
    assert!(events.contains("applied"), "{events}");
    assert_eq!(b.text("#live").await, "live");

    // Nothing is read on a timer: with no event, no request but the pending long poll.
    let reads = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/') && !e.name.includes('/v1/events')).length";
    let before = b.js(reads).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.js(reads).await,
        before,
        "the page read something without an event"
    );
    assert_eq!(
        b.js("return document.documentElement.dataset.cspViolations || '0'")
            .await,
        Value::String("0".into()),
        "the page broke its own Content-Security-Policy"
    );
    b.close().await;
}

/// The admin's actions, each through its confirmation: a lock shows the host's findings
/// first and a refused one stays open with the daemon's reason; the start shows the health
/// check first; the grid follows each change live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_locks_unlocks_and_starts_through_confirmations() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), &example("standard-50-workers.yaml"), "0");
    let Some(b) = Browser::start(1280, 1000).await else {
        return;
    };
    b.open(&d.url).await;
    b.sign_in(ADMIN).await;
    b.until_grid(10, 54).await;

    // The active controller: the lock is refused, and the dialog says why.
    b.click("#grid .cell[data-host=\"controller-0\"]").await;
    b.until(
        10,
        "the lock button",
        "return document.getElementById('host-lock') !== null",
    )
    .await;
    b.click("#host-lock").await;
    b.until(
        10,
        "the findings in the dialog",
        "return document.getElementById('confirm-body').textContent.includes('Verdict')",
    )
    .await;
    b.click("#confirm-ok").await;
    b.until(
        10,
        "the refusal",
        "return document.getElementById('confirm-error').textContent.startsWith('Refused: ')",
    )
    .await;
    let why = b.text("#confirm-error").await;
    assert!(why.contains("controller-0"), "{why}");
    assert_eq!(
        b.js("return document.getElementById('confirm').open").await,
        Value::Bool(true)
    );
    b.click("#confirm-cancel").await;

    // A worker: locked after its findings, then unlocked, each seen live on the grid.
    b.click("#grid .cell[data-host=\"worker-1\"]").await;
    b.until(10, "worker-1's lock button", "return document.getElementById('host-title').textContent === 'worker-1' && document.getElementById('host-lock') !== null").await;
    b.click("#host-lock").await;
    b.until(
        10,
        "the findings in the dialog",
        "return document.getElementById('confirm-body').textContent.includes('Verdict')",
    )
    .await;
    b.click("#confirm-ok").await;
    b.until_tile(10, "worker-1", "locked").await;
    b.until(
        10,
        "the unlock button",
        "return document.getElementById('host-unlock') !== null",
    )
    .await;
    b.click("#host-unlock").await;
    b.until(
        10,
        "the unlock dialog",
        "return !document.getElementById('confirm-ok').disabled",
    )
    .await;
    b.click("#confirm-ok").await;
    b.until_tile(10, "worker-1", "idle").await;

    // The start, after the health check.
    assert_eq!(
        b.js("return document.getElementById('action-apply').disabled")
            .await,
        Value::Bool(true)
    );
    b.click("#action-start").await;
    b.until(20, "the health check", "const p = document.getElementById('start-health'); return p !== null && p.textContent.includes('[OK]');").await;
    b.click("#confirm-ok").await;
    b.until(
        10,
        "the upgrade started",
        "return document.getElementById('cluster').textContent.includes('upgrade-started')",
    )
    .await;
    b.until(10, "every worker waiting", "return [...document.querySelectorAll('#grid .cell')].filter(c => c.dataset.s === 'waiting').length === 52").await;
    let started = get(&d, "/v1/kube_upgrade").await;
    assert_eq!(started["kube_upgrades"][0]["to_version"], "v1.16.2");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_the_cluster_and_no_action_and_cannot_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), &example("standard.yaml"), "0");
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    b.open(&d.url).await;
    b.sign_in(READER).await;
    b.until_grid(10, 6).await;
    assert_eq!(b.text("#role").await, "read-only");
    assert_eq!(
        b.js("return document.getElementById('actions').hidden")
            .await,
        Value::Bool(true)
    );
    assert_eq!(b.js("return document.querySelectorAll('#action-buttons button, #host-actions button').length").await, 0);

    // Without a mouse: the grid takes the focus, arrows move, Enter opens the host.
    b.js("document.querySelector('#grid .cell[tabindex=\"0\"]').focus(); return null;")
        .await;
    let focused = b.c.active_element().await.unwrap();
    focused.send_keys("\u{E014}").await.unwrap(); // ArrowRight
    let focused = b.c.active_element().await.unwrap();
    assert_eq!(
        focused.attr("data-host").await.unwrap().as_deref(),
        Some("controller-1")
    );
    focused.send_keys("\u{E007}").await.unwrap(); // Enter
    b.until(
        10,
        "the host's findings",
        "return document.getElementById('host-findings').textContent.includes('Verdict')",
    )
    .await;
    assert_eq!(b.text("#host-title").await, "controller-1");
    assert_eq!(
        b.js("return document.querySelectorAll('#host-actions button').length")
            .await,
        0,
        "no lock for a reader"
    );
    b.until(
        10,
        "the host's row",
        "return document.getElementById('host-row').textContent.includes('unlocked')",
    )
    .await;

    // The page's own requests with this token cannot change anything.
    let status = b
        .c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/v1/kube_upgrade', {method: 'POST', headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('kup-token'), 'Content-Type': 'application/json'}, body: JSON.stringify({to_version: 'v1.16.2'})}) \
               .then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    let upgrade = get(&d, "/v1/kube_upgrade").await;
    assert_eq!(upgrade["kube_upgrades"], serde_json::json!([]));

    // Signing out forgets the token.
    b.click("#logout").await;
    b.until(
        10,
        "the sign-in form again",
        "return !document.getElementById('login').hidden",
    )
    .await;
    assert_eq!(
        b.js("return sessionStorage.getItem('kup-token')").await,
        Value::Null
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_load_at_5000_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.yaml");
    let out = std::process::Command::new(common::KUP)
        .args(["gen-cluster", "--workers", "5000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&cluster, out.stdout).unwrap();
    let d = daemon(dir.path(), cluster.to_str().unwrap(), "0.0005");
    let Some(b) = Browser::start(1400, 1500).await else {
        return;
    };
    b.open(&d.url).await;
    b.sign_in(ADMIN).await;
    b.until_grid(30, 5004).await;

    // The page's first load with the token it keeps: HTML, script, style, the dashboard's
    // JSON and the grid drawn (the `kup-first-render` mark), from the navigation's start.
    let mut loads = Vec::new();
    for _ in 0..5 {
        b.c.refresh().await.unwrap();
        b.until(30, "the first render", "return performance.getEntriesByName('kup-first-render').length === 1 && document.querySelectorAll('#grid .cell').length === 5004").await;
        let m = b
            .js("const r = performance.getEntriesByType('resource').find(e => e.name.endsWith('/v1/dashboard')); \
                 const n = performance.getEntriesByType('navigation')[0]; \
                 return [performance.getEntriesByName('kup-first-render')[0].startTime, n.domContentLoadedEventEnd, \
                         r.startTime, r.responseEnd, r.encodedBodySize];")
            .await;
        let ms: Vec<f64> = (0..4).map(|i| m[i].as_f64().unwrap()).collect();
        loads.push((ms, m[4].as_u64().unwrap()));
    }
    loads.sort_by(|a, b| a.0[0].total_cmp(&b.0[0]));
    let (ms, bytes) = &loads[loads.len() / 2];
    eprintln!(
        "dashboard first load at 5,004 hosts: median {:.0} ms of 5 (min {:.0}, max {:.0}); in the median load: \
         page and script ready at {:.0} ms, /v1/dashboard ({bytes} bytes) asked at {:.0} ms and in at {:.0} ms, \
         grid laid out at {:.0} ms",
        ms[0],
        loads[0].0[0],
        loads[loads.len() - 1].0[0],
        ms[1],
        ms[2],
        ms[3],
        ms[0]
    );
    let bytes = *bytes;
    assert!(bytes > 100_000, "{bytes} bytes for 5,004 tiles");

    // A change reaches the 5,004th tile live.
    let r = common::kup(&d, "host-lock worker-4999");
    assert_eq!(r.code, 0, "{}", r.stderr);
    b.until_tile(30, "worker-4999", "locked").await;
    let r = common::kup(&d, "host-unlock worker-4999");
    assert_eq!(r.code, 0, "{}", r.stderr);
    b.until_tile(30, "worker-4999", "idle").await;

    // Mid-upgrade at 5,000 hosts, for the README: only when the screenshots are kept (the
    // strategy's plan alone takes most of a minute in a debug build).
    if std::env::var_os("KUP_DASHBOARD_SCREENSHOTS").is_none() {
        b.close().await;
        return;
    }
    let started = Instant::now();
    post(
        &d,
        "/v1/kube_upgrade_strategy",
        serde_json::json!({"to_version": "v1.16.2", "max_parallel_worker_hosts": 100, "partial_ok": true}),
    )
    .await;
    post(
        &d,
        "/v1/kube_upgrade_strategy/actions",
        serde_json::json!({"action": "apply-all"}),
    )
    .await;
    eprintln!("strategy built and applied in {:?}", started.elapsed());
    b.until(
        240,
        "hundreds of hosts done and a batch in flight",
        &format!(
            "const c = {}; return c.done >= 300 && c['in-flight'] >= 20;",
            browser::LEGEND
        ),
    )
    .await;
    eprintln!("mid-upgrade after {:?}", started.elapsed());
    b.js("window.scrollTo(0, 0); return null;").await;
    b.screenshot(&shots_dir(dir.path()).join("dashboard-5000-hosts.png"))
        .await;
    b.close().await;
}

/// Behind TLS (`--tls-cert`/`--tls-key`): the page, its assets, its reads and its long poll
/// all go to the page's own https:// origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::mint_pki(&dir.path().join("pki"));
    let d = daemon_with(
        dir.path(),
        "0",
        &[
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
        ],
    );

    let url = d.url.replace("http://", "https://");
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    b.open(&url).await;
    b.sign_in(ADMIN).await;
    b.until_grid(10, 6).await;
    b.until(
        10,
        "the live event stream",
        "return document.getElementById('live').textContent === 'live'",
    )
    .await;
    assert_eq!(
        b.js("return location.protocol").await,
        Value::String("https:".into())
    );
    // A change made elsewhere reaches the page through the long poll over TLS.
    let ca = [("KUP_CA_FILE", pki.ca.as_os_str())];
    let r = common::kup_at(
        &url,
        ADMIN,
        &ca,
        &["host-lock".as_ref(), "worker-1".as_ref()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    b.until_tile(20, "worker-1", "locked").await;
    b.close().await;
}

/// A strategy built through the API, applied and then aborted from the page, each through its
/// confirmation; the page follows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_applies_and_aborts_a_strategy_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), &example("standard-50-workers.yaml"), "0.01");
    // Partial OK: a worker of the example runs a Job, which makes it unsafe to take down.
    post(
        &d,
        "/v1/kube_upgrade_strategy",
        serde_json::json!({"to_version": "v1.16.2", "max_parallel_worker_hosts": 5, "partial_ok": true}),
    )
    .await;
    let Some(b) = Browser::start(1280, 1000).await else {
        return;
    };
    b.open(&d.url).await;
    b.sign_in(ADMIN).await;
    let state = |s: &str| {
        format!(
            "const d = document.querySelector('#strategy dd[data-k=\"State\"]'); return d !== null && d.textContent === '{s}';"
        )
    };
    b.until(10, "the strategy ready", &state("ready-to-apply"))
        .await;
    assert_eq!(
        b.js("return document.getElementById('action-abort').disabled")
            .await,
        Value::Bool(true)
    );
    b.click("#action-apply").await;
    b.until(
        10,
        "the apply dialog",
        "return !document.getElementById('confirm-ok').disabled",
    )
    .await;
    b.click("#confirm-ok").await;
    b.until(10, "the strategy applying", &state("applying"))
        .await;
    b.until(
        10,
        "the abort offered",
        "return !document.getElementById('action-abort').disabled",
    )
    .await;
    b.click("#action-abort").await;
    b.until(
        10,
        "the abort dialog",
        "return !document.getElementById('confirm-ok').disabled",
    )
    .await;
    b.click("#confirm-ok").await;
    b.until(60, "the strategy aborted", &state("aborted")).await;
    // Stopped: nothing in flight, and it can be applied again.
    b.until(
        10,
        "no host in flight",
        "return document.querySelectorAll('#grid .cell[data-s=\"in-flight\"]').length === 0",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('action-apply').disabled")
            .await,
        Value::Bool(false)
    );
    let api = get(&d, "/v1/kube_upgrade_strategy").await;
    assert_eq!(api["strategy"]["state"], "aborted");
    b.close().await;
}
