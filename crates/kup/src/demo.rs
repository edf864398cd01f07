//! `kup demo`: the seed's procedure, step by step, on the built-in cluster.

use std::sync::Arc;
use std::time::Instant;

use kup_core::{Command, Policy};
use kup_engine::{Engine, EngineConfig, Outcome};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;
use kup_types::{KubeHostUpgradeView, KubeUpgradeView};

use crate::table;

fn upgrade_table(u: &KubeUpgradeView) -> String {
    table::properties(&[
        ("uuid", u.uuid.clone()),
        ("from_version", u.from_version.to_string()),
        ("to_version", u.to_version.to_string()),
        ("state", u.state.to_string()),
        ("created_at", kup_types::time::format(&u.created_at)),
        (
            "updated_at",
            u.updated_at
                .map_or("None".into(), |t| kup_types::time::format(&t)),
        ),
    ])
}

fn host_upgrade_table(r: &KubeHostUpgradeView) -> String {
    table::properties(&[
        ("control_plane_version", r.control_plane_version.clone()),
        ("hostname", r.hostname.clone()),
        ("id", r.id.to_string()),
        ("kubelet_version", r.kubelet_version.clone()),
        ("personality", r.personality.to_string()),
        ("status", r.status.clone().unwrap_or("None".into())),
        (
            "target_version",
            r.target_version.clone().unwrap_or("None".into()),
        ),
    ])
}

fn host_upgrade_list(rows: &[KubeHostUpgradeView]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.hostname.clone(),
                r.personality.to_string(),
                r.target_version.clone().unwrap_or("None".into()),
                r.control_plane_version.clone(),
                r.kubelet_version.clone(),
                r.status.clone().unwrap_or("None".into()),
            ]
        })
        .collect();
    table::render(
        &[
            "id",
            "hostname",
            "personality",
            "target_version",
            "control_plane_version",
            "kubelet_version",
            "status",
        ],
        &rows,
    )
}

struct Demo {
    engine: Engine,
}

impl Demo {
    async fn step(&self, title: &str, cli: &str, cmd: Command) -> Result<Outcome, String> {
        println!("\n{title}\n$ kup {cli}");
        let out = self
            .engine
            .execute(cmd)
            .await
            .map_err(|e| format!("Error: {e}"))?;
        if let Some(r) = out.host_upgrade() {
            if cli.starts_with("kube-host-upgrade") {
                println!("{}", host_upgrade_table(r));
            }
        } else if let Some(u) = &out.upgrade {
            println!("{}", upgrade_table(u));
        }
        self.engine.wait_idle().await;
        Ok(out)
    }

    async fn versions(&self) -> Result<String, String> {
        let vs = self
            .engine
            .kube_versions()
            .await
            .map_err(|e| e.to_string())?;
        let rows: Vec<Vec<String>> = vs
            .iter()
            .map(|v| {
                vec![
                    v.version.to_string(),
                    if v.target { "True" } else { "False" }.into(),
                    v.state.to_string(),
                ]
            })
            .collect();
        Ok(table::render(&["Version", "Target", "State"], &rows))
    }
}

pub async fn run(time_scale: f64) -> Result<(), String> {
    let began = Instant::now();
    let dir =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let inv = Inventory::default_cluster();
    let sim = SimCluster::new(&inv, time_scale);
    let store = SqliteStore::open(&dir.path().join("kup.db"))
        .await
        .map_err(|e| e.to_string())?;
    let config = EngineConfig {
        catalog: sim.catalog(),
        policy: Policy::default(),
    };
    let engine = Engine::open(Arc::new(store), Arc::new(sim), config)
        .await
        .map_err(|e| e.to_string())?;
    let d = Demo { engine };

    println!("kup demo: the StarlingX Kubernetes upgrade on the built-in standard system");
    println!("(controller-0/1, storage-0/1, worker-0/1), simulated at time scale {time_scale}.");
    println!("\n2. List available kubernetes versions.\n$ kup kube-version-list");
    let before = d.versions().await?;
    println!("{before}");

    d.step(
        "5. Start kubernetes upgrade.",
        "kube-upgrade-start v1.16.2",
        Command::Start {
            to_version: "v1.16.2".into(),
            force: false,
            alarm_ignore: vec![],
        },
    )
    .await?;
    d.step(
        "6. Download kubernetes images.",
        "kube-upgrade-download-images",
        Command::DownloadImages,
    )
    .await?;
    let cp = |h: &str| Command::ControlPlane {
        host: h.into(),
        force: false,
    };
    let kubelet = |h: &str| Command::Kubelet {
        host: h.into(),
        force: false,
    };
    let lock = |h: &str| Command::Lock {
        host: h.into(),
        force: false,
    };
    let unlock = |h: &str| Command::Unlock {
        host: h.into(),
        force: false,
    };
    d.step(
        "7. Upgrade control plane on first controller.",
        "kube-host-upgrade controller-1 control-plane",
        cp("controller-1"),
    )
    .await?;
    d.step(
        "8. Upgrade kubernetes networking.",
        "kube-upgrade-networking",
        Command::UpgradeNetworking,
    )
    .await?;
    d.step(
        "9. Upgrade control plane on second controller",
        "kube-host-upgrade controller-0 control-plane",
        cp("controller-0"),
    )
    .await?;
    println!("\n10. Show kubernetes upgrade status for hosts\n$ kup kube-host-upgrade-list");
    let rows = d
        .engine
        .kube_host_upgrades()
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", host_upgrade_list(&rows));

    println!("\n12. Upgrade kubelet on each controller");
    for c in ["controller-1", "controller-0"] {
        if c == "controller-0" {
            // controller-0 is active: hand the role to the upgraded controller-1 first.
            d.step(
                "",
                "host-swact controller-0",
                Command::Swact { host: c.into() },
            )
            .await?;
        }
        d.step("", &format!("host-lock {c}"), lock(c)).await?;
        d.step("", &format!("kube-host-upgrade {c} kubelet"), kubelet(c))
            .await?;
        d.step("", &format!("host-unlock {c}"), unlock(c)).await?;
    }
    println!("\n13. Show the kubernetes upgrade status\n$ kup kube-upgrade-show");
    if let Some(u) = d.engine.kube_upgrade().await.map_err(|e| e.to_string())? {
        println!("{}", upgrade_table(&u));
    }
    println!("\n14. Upgrade kubelet on all worker hosts");
    for w in ["worker-1", "worker-0"] {
        d.step("", &format!("host-lock {w}"), lock(w)).await?;
        d.step("", &format!("kube-host-upgrade {w} kubelet"), kubelet(w))
            .await?;
        d.step("", &format!("host-unlock {w}"), unlock(w)).await?;
    }
    d.step(
        "15. Complete the kubernetes upgrade",
        "kube-upgrade-complete",
        Command::Complete,
    )
    .await?;
    d.step("", "kube-upgrade-delete", Command::Delete).await?;

    let after = d.versions().await?;
    let events = d
        .engine
        .events(0, u32::MAX)
        .await
        .map_err(|e| e.to_string())?;
    println!("\nSummary");
    println!("Versions before:\n{before}\nVersions after:\n{after}");
    println!(
        "{} events recorded (sequence 1..{}), finished in {:.1} s.",
        events.len(),
        events.last().map_or(0, |e| e.seq),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
