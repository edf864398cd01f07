//! kup at Kubernetes' limits, measured side by side in one run (BENCHMARKS.md has the figures
//! and the machine):
//!
//! - `scale`: generated standard clusters of 50 to 5,000 workers (about 30 pods per worker, a
//!   PodDisruptionBudget per 15 pods, 65% of the CPU requested), each served by a real
//!   `kup serve` process: its start, `upgrade plan`, `info`, one `GET /v1/kube_host_upgrades`
//!   and `GET /v1/ihosts`, its memory; next to the floors: one read of the input (indexing
//!   the listed pods, as a driver reads a cluster) and one serialisation of each response.
//! - `engine`: a whole upgrade at time scale 0 (every step instant), driven through the engine
//!   with the plan's worker batches, with the durable SQLite store and with an in-memory one;
//!   its commits next to one fsync'd SQLite commit measured in the same run.
//! - `load`: one request alone, an open-loop load of 200 requests per second for 20 seconds,
//!   and saturation (16 clients back to back), on `GET /v1/kube_host_upgrades` and
//!   `GET /v1/ihosts` at 5,000 hosts, from this process to the daemon's: latency percentiles,
//!   answers per second, and the daemon's memory.
//!
//! `cargo bench -p kup --bench scale -- [scale] [engine] [load] [--workers 50,500,...]`; with
//! no mode, all three. Without `--bench` (as `cargo test` runs it) only a small smoke run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kup_core::strategy::StrategyCommand;
use kup_engine::{Engine, EngineConfig};
use kup_sim::generate::{GenSpec, generate};
use kup_sim::{Inventory, SimCluster, SimModel};
use kup_store::{SqliteStore, Store, StoreError};
use kup_types::{
    ApplyType, Event, IHostList, KubeHostUpgradeList, Listing, Snapshot, StrategyCreate,
    StrategyState, WriteBatch,
};

const KUP: &str = env!("CARGO_BIN_EXE_kup");
/// The largest worker batch the plan and the engine run use.
const CAP: u32 = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let mut modes: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "scale" | "engine" | "load"))
        .collect();
    if modes.is_empty() {
        modes = vec!["scale", "engine", "load"];
    }
    let workers: Option<Vec<u32>> = args
        .iter()
        .position(|a| a == "--workers")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!(
                "load average {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ))
            .unwrap_or_default()
    );
    for mode in modes {
        match mode {
            "scale" => {
                let sizes = workers.clone().unwrap_or(if full {
                    vec![50, 500, 1000, 2000, 5000]
                } else {
                    vec![20]
                });
                rt.block_on(scale(&sizes));
            }
            "engine" => {
                let sizes =
                    workers
                        .clone()
                        .unwrap_or(if full { vec![200, 5000] } else { vec![20] });
                // `--store durable|memory` runs one of the two (for profiling).
                let stores: Vec<bool> = match args
                    .iter()
                    .position(|a| a == "--store")
                    .and_then(|i| args.get(i + 1))
                    .map(String::as_str)
                {
                    Some("durable") => vec![true],
                    Some("memory") => vec![false],
                    _ => vec![true, false],
                };
                rt.block_on(engine(&sizes, &stores));
            }
            "load" => {
                let (w, secs) = if full { (5000, 20) } else { (20, 1) };
                rt.block_on(load(
                    workers
                        .as_ref()
                        .and_then(|w| w.last().copied())
                        .unwrap_or(w),
                    secs,
                ));
            }
            _ => unreachable!("filtered above"),
        }
    }
}

fn spec(workers: u32) -> GenSpec {
    GenSpec {
        workers,
        ..GenSpec::default()
    }
}

/// The median of `runs` timings of `f`.
fn median<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        out = Some(std::hint::black_box(f()));
        times.push(start.elapsed());
    }
    times.sort();
    (times[runs / 2], out.expect("runs > 0"))
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

// ---- a real daemon --------------------------------------------------------------------------

struct Daemon {
    child: Child,
    url: String,
    token: String,
    started: Duration,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(dir: &Path, cluster: &Path) -> Daemon {
        let data = dir.join("data");
        let begun = Instant::now();
        let child = Command::new(KUP)
            .args(["serve", "--listen", "127.0.0.1:0", "--time-scale", "0"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--cluster")
            .arg(cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kup serve starts");
        let mut d = Daemon {
            child,
            url: String::new(),
            token: String::new(),
            started: Duration::ZERO,
        };
        loop {
            if let Ok(addr) = std::fs::read_to_string(data.join("listen-address")) {
                d.started = begun.elapsed();
                d.url = format!("http://{}", addr.trim());
                d.token = std::fs::read_to_string(data.join("admin-token"))
                    .expect("the admin token")
                    .trim()
                    .to_string();
                return d;
            }
            assert!(
                d.child.try_wait().expect("waitable").is_none(),
                "kup serve exited"
            );
            assert!(
                begun.elapsed() < Duration::from_secs(600),
                "kup serve hangs"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `VmRSS` and `VmHWM`, in MB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (kb("VmRSS:") / 1024, kb("VmHWM:") / 1024)
    }
}

async fn get(client: &reqwest::Client, d: &Daemon, path: &str) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let res = client
        .get(format!("{}{path}", d.url))
        .header("X-Auth-Token", &d.token)
        .send()
        .await
        .expect("the daemon answers");
    assert!(res.status().is_success(), "{path}: {}", res.status());
    let body = res.bytes().await.expect("a body").to_vec();
    (start.elapsed(), body)
}

async fn median_get(
    client: &reqwest::Client,
    d: &Daemon,
    path: &str,
    runs: usize,
) -> (Duration, Vec<u8>) {
    let mut times = Vec::new();
    let mut body = Vec::new();
    for _ in 0..runs {
        let (t, b) = get(client, d, path).await;
        times.push(t);
        body = b;
    }
    times.sort();
    (times[runs / 2], body)
}

// ---- scale ----------------------------------------------------------------------------------

async fn scale(sizes: &[u32]) {
    println!(
        "\n## scale: plan (--max-parallel-worker-hosts {CAP}), info and reads next to their floors\n"
    );
    println!(
        "| workers | pods | PDBs | start | read (floor) | plan | plan/read | info | GET kube_host_upgrades | serialise | GET/ser | GET ihosts | serialise | GET/ser | RSS after plan | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let client = reqwest::Client::new();
    let mut rows: Vec<(u32, f64, f64)> = Vec::new();
    for &workers in sizes {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let text = generate(&spec(workers)).expect("a cluster");
        let file = dir.path().join("cluster.yaml");
        std::fs::write(&file, &text).expect("written");
        // The floor: one read of the cluster, i.e. indexing what a driver lists.
        let inv = Inventory::parse(&text).expect("parses");
        let model = SimModel::from_inventory(&inv, jiff::Timestamp::UNIX_EPOCH);
        let listing = Listing::of(model.observe(), model.pods());
        drop(model);
        let (read, wl) = median(3, || listing.index());
        let (pods, pdbs) = (wl.len(), wl.budgets().len());
        drop((wl, listing));

        let d = Daemon::start(dir.path(), &file);
        let (plan, _) = median_get(
            &client,
            &d,
            &format!("/v1/upgrade/plan?to=v1.16.2&max_parallel_worker_hosts={CAP}"),
            3,
        )
        .await;
        let (rss, peak) = d.memory();
        let (info, _) = median_get(&client, &d, "/v1/info", 5).await;
        let (rows_get, body) = median_get(&client, &d, "/v1/kube_host_upgrades", 5).await;
        let list: KubeHostUpgradeList = serde_json::from_slice(&body).expect("the list");
        let (rows_ser, _) = median(5, || serde_json::to_vec(&list).expect("serialises"));
        let (hosts_get, body) = median_get(&client, &d, "/v1/ihosts", 5).await;
        let hosts: IHostList = serde_json::from_slice(&body).expect("the hosts");
        let (hosts_ser, _) = median(5, || serde_json::to_vec(&hosts).expect("serialises"));
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!(
            "| {workers} | {pods} | {pdbs} | {} | {} | {} | {:.1} | {} | {} | {} | {:.1} | {} | {} | {:.1} | {rss} MB | {peak} MB |",
            ms(d.started),
            ms(read),
            ms(plan),
            ratio(plan, read),
            ms(info),
            ms(rows_get),
            ms(rows_ser),
            ratio(rows_get, rows_ser),
            ms(hosts_get),
            ms(hosts_ser),
            ratio(hosts_get, hosts_ser),
        );
        rows.push((workers, plan.as_secs_f64(), pods as f64));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        let plogp = |p: f64| p * p.log2();
        println!(
            "\ngrowth from {} to {} workers: plan ×{:.1}; pods ×{:.1}; p·log₂p ×{:.1}",
            first.0,
            last.0,
            last.1 / first.1,
            last.2 / first.2,
            plogp(last.2) / plogp(first.2)
        );
    }
}

// ---- engine ---------------------------------------------------------------------------------

/// A store that counts its commits.
struct Counting {
    inner: SqliteStore,
    commits: AtomicU64,
    /// Time spent in commits, in microseconds.
    micros: AtomicU64,
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.inner.snapshot().await
    }
    async fn commit(&self, batch: WriteBatch) -> Result<Vec<Event>, StoreError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let r = self.inner.commit(batch).await;
        self.micros
            .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        r
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.inner.events(after, limit).await
    }
    async fn events_of(
        &self,
        subject: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_of(subject, after, limit).await
    }
    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_event_seq().await
    }
    async fn operation_history(
        &self,
        key: &str,
    ) -> Result<Vec<kup_types::OperationRecord>, StoreError> {
        self.inner.operation_history(key).await
    }
}

/// One fsync'd SQLite commit of one event, the median of many.
async fn fsync_commit(dir: &Path) -> Duration {
    let store = SqliteStore::open(&dir.join("floor.db"))
        .await
        .expect("a store");
    let mut times = Vec::new();
    for i in 0..300 {
        let batch = WriteBatch {
            events: vec![kup_types::NewEvent {
                at: jiff::Timestamp::now(),
                kind: kup_types::EventKind::Command,
                subject: "bench".into(),
                message: format!("commit {i}"),
            }],
            ..Default::default()
        };
        let start = Instant::now();
        store.commit(batch).await.expect("commits");
        times.push(start.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

async fn engine(sizes: &[u32], stores: &[bool]) {
    println!(
        "\n## engine: a whole automated upgrade (`upgrade online`) at time scale 0 (batches of up to {CAP} workers)\n"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fsync = fsync_commit(dir.path()).await;
    println!(
        "one fsync'd SQLite commit (median of 300): {:.3} ms\n",
        fsync.as_secs_f64() * 1e3
    );
    println!(
        "| workers | store | whole upgrade | events | commits | per commit | in commits | commits × fsync | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &workers in sizes {
        for &durable in stores {
            let run = tempfile::tempdir().expect("a temporary directory");
            let inv =
                Inventory::parse(&generate(&spec(workers)).expect("a cluster")).expect("parses");
            let sim = SimCluster::new(&inv, 0.0);
            let inner = if durable {
                SqliteStore::open(&run.path().join("kup.db")).await
            } else {
                SqliteStore::open_in_memory().await
            }
            .expect("a store");
            let store = Arc::new(Counting {
                inner,
                commits: AtomicU64::new(0),
                micros: AtomicU64::new(0),
            });
            let config = EngineConfig {
                catalog: sim.catalog(),
                policy: kup_core::Policy::default(),
                patch_repo: None,
            };
            let engine = Engine::open(Arc::clone(&store) as Arc<dyn Store>, Arc::new(sim), config)
                .await
                .expect("the engine opens");
            store.commits.store(0, Ordering::Relaxed);
            store.micros.store(0, Ordering::Relaxed);
            let start = Instant::now();
            let events = automated_upgrade(&engine, "v1.16.2").await;
            let took = start.elapsed();
            let commits = store.commits.load(Ordering::Relaxed);
            let floor = fsync * u32::try_from(commits).unwrap_or(u32::MAX);
            println!(
                "| {workers} | {} | {:.2} s | {events} | {commits} | {:.3} ms | {:.2} s | {:.2} s | {:.2} |",
                if durable {
                    "SQLite (durable)"
                } else {
                    "SQLite in memory"
                },
                took.as_secs_f64(),
                took.as_secs_f64() * 1e3 / commits.max(1) as f64,
                store.micros.load(Ordering::Relaxed) as f64 / 1e6,
                floor.as_secs_f64(),
                took.as_secs_f64() / floor.as_secs_f64(),
            );
        }
    }
}

/// The automated upgrade `upgrade online` runs: a strategy with worker batches of up to
/// [`CAP`], applied and followed to its end. Returns the events it wrote.
async fn automated_upgrade(engine: &Engine, to: &str) -> i64 {
    let before = engine.last_event_seq();
    let built = engine
        .strategy_create(StrategyCreate {
            to_version: to.into(),
            worker_apply_type: Some(ApplyType::Parallel),
            max_parallel_worker_hosts: Some(CAP),
            ..Default::default()
        })
        .await
        .expect("a strategy");
    assert_eq!(
        built.strategy.state,
        StrategyState::ReadyToApply,
        "{}",
        built.strategy.build_phase.reason
    );
    engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .expect("applied");
    engine.wait_strategy().await;
    let s = engine
        .strategy()
        .expect("read")
        .expect("a strategy")
        .strategy;
    assert_eq!(s.state, StrategyState::Applied, "{}", s.apply_phase.reason);
    engine.last_event_seq() - before
}

// ---- load -----------------------------------------------------------------------------------

async fn load(workers: u32, secs: u64) {
    println!(
        "\n## load: GET /v1/kube_host_upgrades and GET /v1/ihosts, {workers} workers: one request \
         alone (median of 21), 200 requests per second for {secs} s (open loop), and saturation \
         ({SATURATION_CLIENTS} clients back to back for {} s)\n",
        secs / 2
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, generate(&spec(workers)).expect("a cluster")).expect("written");
    let d = Arc::new(Daemon::start(dir.path(), &file));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("a client");
    println!("| path | load | requests | failed | answers/s | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for path in ["/v1/kube_host_upgrades", "/v1/ihosts"] {
        let mut alone = Vec::new();
        for _ in 0..21 {
            alone.push(get(&client, &d, path).await.0);
        }
        row(path, "one alone", alone, 0, None);
        let (times, failed, took) = open_loop(&client, &d, path, secs).await;
        row(path, "200/s", times, failed, Some(took));
        let (times, failed, took) = saturate(&client, &d, path, secs / 2).await;
        row(path, "saturation", times, failed, Some(took));
    }
    let (rss, hwm) = d.memory();
    println!("\nThe daemon's memory after the load: {rss} MB resident, peak {hwm} MB.");
}

/// Clients sending requests back to back, for the saturation figures.
const SATURATION_CLIENTS: usize = 16;

fn row(path: &str, load: &str, mut times: Vec<Duration>, failed: usize, took: Option<Duration>) {
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let rate = took.map_or_else(String::new, |t| {
        format!("{:.0}", times.len() as f64 / t.as_secs_f64())
    });
    println!(
        "| {path} | {load} | {} | {failed} | {rate} | {} | {} | {} | {} |",
        times.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(*times.last().expect("requests")),
    );
}

/// 200 requests per second: each sent on time, whether or not earlier ones have answered,
/// and timed from when it was due.
async fn open_loop(
    client: &reqwest::Client,
    d: &Arc<Daemon>,
    path: &'static str,
    secs: u64,
) -> (Vec<Duration>, usize, Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let due = Instant::now();
        let (client, d) = (client.clone(), Arc::clone(d));
        tasks.push(tokio::spawn(async move {
            let ok = try_get(&client, &d, path).await;
            (due.elapsed(), ok)
        }));
    }
    let mut times = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (took, ok) = t.await.expect("a request task");
        times.push(took);
        failed += usize::from(!ok);
    }
    (times, failed, begun.elapsed())
}

/// [`SATURATION_CLIENTS`] clients, each sending its next request as soon as the last answered.
async fn saturate(
    client: &reqwest::Client,
    d: &Arc<Daemon>,
    path: &'static str,
    secs: u64,
) -> (Vec<Duration>, usize, Duration) {
    let begun = Instant::now();
    let until = begun + Duration::from_secs(secs.max(1));
    let mut tasks = Vec::new();
    for _ in 0..SATURATION_CLIENTS {
        let (client, d) = (client.clone(), Arc::clone(d));
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut failed = 0;
            while Instant::now() < until {
                let start = Instant::now();
                failed += usize::from(!try_get(&client, &d, path).await);
                times.push(start.elapsed());
            }
            (times, failed)
        }));
    }
    let mut times = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (mut t, f) = t.await.expect("a client task");
        times.append(&mut t);
        failed += f;
    }
    (times, failed, begun.elapsed())
}

async fn try_get(client: &reqwest::Client, d: &Daemon, path: &str) -> bool {
    let res = client
        .get(format!("{}{path}", d.url))
        .header("X-Auth-Token", &d.token)
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}
