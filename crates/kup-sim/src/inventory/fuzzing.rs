//! The body of the `cluster_file` fuzz target (`fuzz/fuzz_targets/cluster_file.rs`). It lives
//! here, not in the fuzz crate, so that an ordinary test replays the saved corpus through the
//! very same code on stable Rust (`crates/kup-sim/tests/fuzz_corpus.rs`).

use jiff::Timestamp;
use kup_driver::Driver;

use super::{Inventory, WorkloadKind};
use crate::SimCluster;
use crate::model::SimModel;

/// The most pods a fuzz input is simulated with. The file may ask for a million
/// (`MAX_PODS`); building those for every input would leave the fuzzer no time for anything
/// else, and the model's code paths are the same at ten thousand.
const MODEL_PODS: u64 = 10_000;
/// The most hosts a fuzz input is simulated with, for the same reason.
const MODEL_HOSTS: usize = 1_000;
/// The hosts locked and unlocked in turn (each drains, reschedules and rebalances).
const CYCLED_HOSTS: usize = 16;

/// The `cluster_file` target: the input as a cluster file (`kup serve --cluster`), then, if
/// it is accepted, the simulated cluster built from it, read as a driver reads it, and some of
/// its hosts locked and unlocked. Panics only if a promise breaks: a refusal is one line that
/// names the cluster file (and a line of it, when it names one); an accepted file gives a
/// cluster with exactly its hosts and its version in the catalog.
pub fn cluster_file(data: &[u8]) {
    // `kup serve` reads the file as UTF-8 text (`read_to_string`): other bytes never reach the
    // parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inv = match Inventory::parse(text) {
        Ok(inv) => inv,
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("cluster file"), "{shown}");
            assert!(!shown.contains('\n'), "one line please: {shown:?}");
            if let Some(line) = e.line {
                // Lines as YAML counts them (a CR alone ends one too); the parser may point
                // just past the last one (an unexpected end).
                let breaks = text.replace("\r\n", "\n").matches(['\n', '\r']).count();
                let lines = breaks as u64 + 1;
                assert!(
                    (1..=lines).contains(&line),
                    "line {line} of {lines}: {shown}"
                );
            }
            return;
        }
    };
    assert!(
        inv.catalog()
            .iter()
            .any(|m| m.version == inv.kubernetes_version)
    );
    let pods: u64 = inv
        .workloads
        .iter()
        .map(|w| match w.kind {
            WorkloadKind::DaemonSet => inv.hosts.len() as u64,
            _ => u64::from(w.replicas),
        })
        .sum();
    if pods > MODEL_PODS || inv.hosts.len() > MODEL_HOSTS {
        return;
    }

    let sim = SimCluster::new(&inv, 0.0);
    let mut seen = 0;
    sim.with_views(&mut |obs, _pods| {
        seen = obs.hosts.len();
        for h in &inv.hosts {
            assert!(
                obs.host(&h.name.value).is_some(),
                "host {} is missing from the cluster",
                h.name.value
            );
        }
    })
    .expect("the simulation can always be read");
    assert_eq!(seen, inv.hosts.len());

    let mut model = SimModel::from_inventory(&inv, Timestamp::UNIX_EPOCH);
    for h in inv.hosts.iter().take(CYCLED_HOSTS) {
        model.lock(&h.name.value, Timestamp::UNIX_EPOCH);
        model.unlock(&h.name.value);
    }
    assert_eq!(model.observe().hosts.len(), inv.hosts.len());
    let _ = model.safety_audit();
}
