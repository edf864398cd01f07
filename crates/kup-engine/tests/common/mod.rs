//! A real engine on a real SQLite file in a temporary directory, driving the simulated
//! cluster at time scale 0 (every step instant), as the daemon would.
#![allow(dead_code)]

pub mod refusal_cases;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kup_core::{Command, Policy};
use kup_engine::{Engine, EngineConfig, EngineError, Outcome};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;
use kup_types::{Event, KubeHostUpgradeView, Snapshot};

pub struct Harness {
    pub engine: Arc<Engine>,
    pub sim: SimCluster,
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The seed's standard system with v1.16.2 already in its catalog, as its platform patch would
/// put it there: for the tests that are not about patches.
pub fn seed_cluster() -> Inventory {
    let mut inv = Inventory::default_cluster();
    inv.versions.push(kup_types::VersionMeta {
        version: kup_types::KubeVersion::new(1, 16, 2),
        upgrade_from: vec![kup_types::KubeVersion::new(1, 16, 1)],
        downgrade_to: vec![],
        applied_patches: vec![],
        available_patches: vec![],
        images: vec![],
    });
    inv
}

/// The seed's cluster (with v1.16.2 in its catalog) with more workloads, given as the YAML
/// items of a `workloads:` list.
pub fn seed_with_workloads(items: &str) -> Inventory {
    let path = format!(
        "{}/../../examples/standard.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap().replacen(
        "workloads:\n",
        &format!("workloads:\n{items}"),
        1,
    );
    let mut inv = Inventory::parse(&text).unwrap();
    inv.versions
        .extend(seed_cluster().versions.into_iter().skip(1));
    inv
}

/// An example cluster whose Jobs and bare pods never end: at time scale 0 they would end at
/// once, and the tests of unsafe drains need them running.
pub fn example(name: &str) -> Inventory {
    let mut inv = example_as_written(name);
    for w in &mut inv.workloads {
        w.completes_after = None;
    }
    inv
}

/// An example cluster exactly as its file says.
pub fn example_as_written(name: &str) -> Inventory {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    Inventory::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub async fn open(sim: &SimCluster, db: &Path) -> Arc<Engine> {
    open_with(sim, db, Policy::default()).await
}

/// `open` with other settings (deadlines, say).
pub async fn open_with(sim: &SimCluster, db: &Path, policy: Policy) -> Arc<Engine> {
    let store = Arc::new(SqliteStore::open(db).await.unwrap());
    let config = EngineConfig {
        catalog: sim.catalog(),
        policy,
        // Tests trust the published test key of kup-patch, and nothing else.
        patch_repo: Some(kup_engine::PatchRepo {
            dir: db.parent().unwrap().join("patches"),
            trusted: vec![kup_patch::testkey::insecure_verifying_key()],
            limits: kup_patch::Limits::default(),
        }),
    };
    Arc::new(
        Engine::open(store, Arc::new(sim.clone()), config)
            .await
            .unwrap(),
    )
}

impl Harness {
    pub async fn new(inv: Inventory) -> Harness {
        Self::with_scale(inv, 0.0).await
    }

    /// A cluster at `time_scale` and an engine with `policy`.
    pub async fn with_policy(inv: Inventory, time_scale: f64, policy: Policy) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kup.db");
        let sim = SimCluster::new(&inv, time_scale);
        let engine = open_with(&sim, &db, policy).await;
        Harness {
            engine,
            sim,
            db,
            dir,
        }
    }

    pub async fn with_scale(inv: Inventory, time_scale: f64) -> Harness {
        // Real time only: sqlx pool timeouts misfire on tokio's paused clock.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kup.db");
        let sim = SimCluster::new(&inv, time_scale);
        let engine = open(&sim, &db).await;
        Harness {
            engine,
            sim,
            db,
            dir,
        }
    }

    /// A cluster whose state lives in a file in the temporary directory, so `crash` can
    /// lose the simulation process too.
    pub async fn persistent(inv: Inventory) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kup.db");
        let sim = SimCluster::with_state_file(&inv, 0.0, dir.path().join("cluster.json")).unwrap();
        let engine = open(&sim, &db).await;
        Harness {
            engine,
            sim,
            db,
            dir,
        }
    }

    /// Kills engine and simulation together (what `kill -9` of the daemon does): operations
    /// running in the simulation die unfinished; the cluster and database files remain.
    pub async fn crash(self, inv: &Inventory) -> Harness {
        let Harness {
            engine,
            sim,
            db,
            dir,
        } = self;
        drop(engine);
        sim.halt();
        drop(sim);
        let sim = SimCluster::with_state_file(inv, 0.0, dir.path().join("cluster.json")).unwrap();
        let engine = open(&sim, &db).await;
        Harness {
            engine,
            sim,
            db,
            dir,
        }
    }

    /// Drops the engine as a crash would (its tasks stop mid-flight) and opens a new one on
    /// the same database file and the same cluster.
    pub async fn restart(self) -> Harness {
        let Harness {
            engine,
            sim,
            db,
            dir,
        } = self;
        drop(engine);
        let engine = open(&sim, &db).await;
        Harness {
            engine,
            sim,
            db,
            dir,
        }
    }

    pub async fn run(&self, cmd: Command) -> Result<Outcome, EngineError> {
        self.engine.execute(cmd).await
    }

    /// Runs a command that must be accepted, then waits for what it started to settle.
    pub async fn ok(&self, cmd: Command) -> Outcome {
        let what = format!("{cmd:?}");
        let out = self
            .run(cmd)
            .await
            .unwrap_or_else(|e| panic!("{what} refused: {e}"));
        self.engine.wait_idle().await;
        out
    }

    pub async fn state(&self) -> String {
        self.engine
            .kube_upgrade()
            .await
            .unwrap()
            .map_or("none".into(), |u| u.state.to_string())
    }

    pub async fn table(&self) -> String {
        table(&self.engine.kube_host_upgrades().await.unwrap())
    }

    /// What the store holds, read through a second connection to the file.
    pub async fn stored(&self) -> Snapshot {
        use kup_store::Store;
        SqliteStore::open(&self.db)
            .await
            .unwrap()
            .snapshot()
            .await
            .unwrap()
    }

    pub async fn events(&self) -> Vec<Event> {
        self.engine.events(0, 100_000).await.unwrap()
    }
}

/// `kube-host-upgrade-list` as compact text: id hostname personality target cp kubelet status.
pub fn table(rows: &[KubeHostUpgradeView]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {}",
                r.id,
                r.hostname,
                r.personality,
                r.target_version.as_deref().unwrap_or("None"),
                r.control_plane_version,
                r.kubelet_version,
                r.status.as_deref().unwrap_or("None")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn start(v: &str) -> Command {
    Command::Start {
        to_version: v.into(),
        force: false,
        alarm_ignore: vec![],
    }
}
pub fn cp(h: &str) -> Command {
    Command::ControlPlane {
        host: h.into(),
        force: false,
    }
}
pub fn kubelet(h: &str) -> Command {
    Command::Kubelet {
        host: h.into(),
        force: false,
    }
}
pub fn lock(h: &str) -> Command {
    Command::Lock {
        host: h.into(),
        force: false,
    }
}
pub fn unlock(h: &str) -> Command {
    Command::Unlock {
        host: h.into(),
        force: false,
    }
}
pub fn swact(h: &str) -> Command {
    Command::Swact {
        host: h.into(),
        force: false,
    }
}

/// Every gapless event log starts at 1 and counts up by one.
pub fn assert_gapless(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "gap before {e:?}");
    }
}

/// The simulation saw nothing broken: no budget beyond its disruptions, no evicted pod without
/// a place, no two control planes down, no kubelet outside the skew policy, no step run twice.
pub fn assert_audit_clean(sim: &SimCluster, case: &str) {
    let audit = kup_driver::Driver::safety_audit(sim).unwrap();
    assert_eq!(
        (
            audit.pdb_violations,
            audit.unplaced_pods,
            audit.control_plane_violations,
            audit.skew_violations,
            audit.repeated_steps
        ),
        (0, 0, 0, 0, 0),
        "{case}: {audit:?}"
    );
}
