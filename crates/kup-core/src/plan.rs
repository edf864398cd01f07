//! The upgrade plan: what a whole Kubernetes upgrade will do, in which order, in which batches
//! and for how long, computed before anything is touched (`kup upgrade plan`).
//!
//! The stages follow the seed's order: download images, the first control plane (the standby
//! controller), networking, the second control plane (the active controller; none on
//! aio-simplex), the controllers' kubelets one at a time (the standby first, then the active
//! one after a swact; on aio-simplex in place, without a lock), the workers' kubelets in
//! batches, and complete. Storage hosts run no Kubernetes and take no part.
//!
//! Worker batches are built greedily, in host-id order: each batch starts from the first worker
//! not yet planned and takes every further worker (again in id order) for which
//! the analysis of the grown batch is not `UNSAFE` — every PodDisruptionBudget stays
//! within its budget, every evicted pod still fits somewhere, nothing loses its last ready
//! replica — until `--max-parallel-worker-hosts` is reached. A worker that is unsafe even alone
//! gets a batch of its own, marked `UNSAFE` and placed after the safe batches: the plan shows
//! it, and the online upgrade will refuse to lock it without `--force`.
//!
//! Pure, like the rest of the core: the plan is immutable data computed from the observation,
//! the store's snapshot, the catalog and the step durations.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use kup_types::{
    HostInfo, KubeUpgradeState, KubeVersion, Observation, Personality, Snapshot, StepKind,
    SystemType, Workloads,
};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, running_versions};
use crate::safety::{Analyzer, Finding, HostSafety, Verdict, grow_batch};

/// Stage names, in order.
pub const DOWNLOAD_IMAGES: &str = "download-images";
pub const FIRST_CONTROL_PLANE: &str = "first-control-plane";
pub const NETWORKING: &str = "networking";
pub const SECOND_CONTROL_PLANE: &str = "second-control-plane";
pub const CONTROLLER_KUBELETS: &str = "controller-kubelets";
pub const WORKER_KUBELETS: &str = "worker-kubelets";
pub const COMPLETE: &str = "complete";

/// While growing one worker batch, the planner stops trying further workers after this many
/// candidates that the full analysis found unsafe (a cheap screen, [`BatchEval::surely_unsafe`], rejects most
/// candidates without it). This bounds the work per batch at `cap + MAX_UNSAFE_PROBES` full
/// analyses, whatever the cluster, at the price of sometimes a smaller batch than possible.
pub const MAX_UNSAFE_PROBES: usize = 8;

/// A worker batch is grown from the next this-many workers per host of the cap (a window, so
/// that growing a batch costs the same whatever the cluster's size).
pub const WINDOW_PER_HOST: usize = 16;

/// A batch's reason names at most this many causes of its size.
const MAX_CAUSES: usize = 3;

/// What a plan is computed from. It borrows the caller's values, so it is neither serialized
/// nor compared; the [`Plan`] it yields is.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    pub obs: &'a Observation,
    pub workloads: &'a Workloads,
    pub snap: &'a Snapshot,
    pub catalog: &'a Catalog,
    pub to: KubeVersion,
    /// At least 1; 0 counts as 1.
    pub max_parallel_worker_hosts: u32,
    /// Seconds each kind of step takes; a missing kind takes 0.
    pub durations: &'a BTreeMap<StepKind, u64>,
    /// A host with less free disk is not ready.
    pub min_free_disk_gib: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The version the upgrade starts from: the upgrade in progress's, or the one version the
    /// cluster runs; `None` when that is not a single version.
    pub from: Option<KubeVersion>,
    pub to: KubeVersion,
    /// Empty when the plan is blocked.
    pub stages: Vec<Stage>,
    /// Every host taken down on its own ([`crate::safety::analyze_all`]), sorted by host id.
    pub hosts: Vec<HostSafety>,
    /// The predicted duration of the stages not done yet.
    pub total_seconds: u64,
    /// The duration of the stages not done yet in the fastest schedule the cap and the
    /// budgets could allow: the workers in `ceil(workers / cap)` batches (more if the ingress
    /// hosts need them: [`crate::safety::Analyzer::least_batches`]), each a kubelet and an
    /// unlock, after drains in as many waves as the budgets need at least
    /// ([`crate::safety::Analyzer::least_drain_waves`]; one wave a batch at least);
    /// the other stages are strictly sequential (controllers one at a time) in any schedule.
    /// No safe schedule that respects the stage order and the cap can be shorter (pods that
    /// drains move onto workers not yet drained only add waves), so it is a lower bound;
    /// `total_seconds - lower_bound_seconds` is what safety and kup's choices cost.
    pub lower_bound_seconds: u64,
    /// Why the upgrade cannot proceed at all (target unknown, no upgrade path, ...); empty when
    /// it can.
    pub blocked: Vec<String>,
    /// Each host's readiness: free disk, availability, the target's binaries it still needs.
    #[serde(default)]
    pub readiness: Vec<crate::safety::Readiness>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// One of [`DOWNLOAD_IMAGES`], [`FIRST_CONTROL_PLANE`], [`NETWORKING`],
    /// [`SECOND_CONTROL_PLANE`], [`CONTROLLER_KUBELETS`], [`WORKER_KUBELETS`], [`COMPLETE`].
    pub name: String,
    /// The version a control-plane or kubelet stage moves to, when the upgrade crosses
    /// several minors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<KubeVersion>,
    /// Run one after the other; the hosts of a batch in parallel. Cluster-wide stages have
    /// none.
    pub batches: Vec<Batch>,
    /// Predicted duration (for a cluster-wide stage also when it is done).
    pub seconds: u64,
    /// Already done, by the upgrade's state or, for kubelets, because every host of the stage
    /// runs the target version.
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// In the order their drains start (waves first-fit; see `safety::grow_batch`).
    pub hosts: Vec<String>,
    /// Why the batch has this size (and, when it is unsafe, its worst finding).
    pub reason: String,
    /// Of [`crate::safety::analyze_batch`] for these hosts; `OK` for steps that do not take a host down
    /// (control planes, the kubelet of an aio-simplex host).
    pub verdict: Verdict,
    pub seconds: u64,
}

/// How far the stored upgrade state is: the number of cluster-wide steps done (images, first
/// control plane, networking, second control plane), 5 when complete. A cordon (aio-simplex)
/// comes before the control plane or after networking: `cps_done` says which.
fn progress(state: KubeUpgradeState, cps_done: bool) -> u8 {
    use KubeUpgradeState as S;
    match state {
        S::CordonStarted | S::CordonComplete | S::CordonFailed => {
            if cps_done {
                3
            } else {
                1
            }
        }
        S::UncordonStarted | S::UncordonComplete | S::UncordonFailed => 4,
        // On the way back: the way up is planned afresh.
        S::UpgradeAborting | S::UpgradeAbortingFailed | S::UpgradeAborted => 0,
        S::UpgradeStarted | S::DownloadingImages | S::DownloadingImagesFailed => 0,
        S::DownloadedImages | S::UpgradingFirstMaster | S::UpgradingFirstMasterFailed => 1,
        S::UpgradedFirstMaster | S::UpgradingNetworking | S::UpgradingNetworkingFailed => 2,
        S::UpgradedNetworking | S::UpgradingSecondMaster | S::UpgradingSecondMasterFailed => 3,
        S::UpgradedSecondMaster | S::UpgradingKubelets => 4,
        S::UpgradeComplete => 5,
    }
}

/// The starting version and why the upgrade cannot proceed, if it cannot.
fn check_path(input: &PlanInput<'_>) -> (Option<KubeVersion>, Vec<String>) {
    let to = input.to;
    let mut blocked = Vec::new();
    let meta = input.catalog.get(to);
    if meta.is_none() {
        blocked.push(format!("{to} is not in the version catalog"));
    }
    if let Some(u) = &input.snap.upgrade {
        if u.to_version != to {
            blocked.push(format!(
                "an upgrade from {} to {} is in progress ({}): finish it before planning another",
                u.from_version, u.to_version, u.state
            ));
        }
        return (Some(u.from_version), blocked);
    }
    let running = running_versions(input.obs);
    let from = if running.len() == 1 {
        running.first().copied()
    } else {
        None
    };
    match from {
        None if running.is_empty() => {
            blocked.push("no control plane or kubelet version is observed".into());
        }
        None => blocked.push(format!(
            "the cluster runs several versions ({}): an upgrade starts from exactly one",
            join(running.iter())
        )),
        Some(f) if to == f => blocked.push(format!("the cluster already runs {to}")),
        Some(f) if to < f => blocked.push(format!(
            "{to} is older than the running version {f}: kup never downgrades"
        )),
        Some(f) => {
            if input.catalog.get(f).is_none() {
                blocked.push(format!(
                    "the running version {f} is not in the version catalog"
                ));
            }
            match (meta, input.catalog.steps(f, to)) {
                (Some(m), Err(crate::Refusal::NoUpgradePath { .. })) => {
                    blocked.push(format!(
                        "no upgrade path from {f} to {to} ({to} upgrades from {})",
                        if m.upgrade_from.is_empty() {
                            "no version".to_string()
                        } else {
                            join(m.upgrade_from.iter())
                        }
                    ));
                }
                (Some(_), Err(refused)) => blocked.push(refused.to_string()),
                _ => {}
            }
        }
    }
    (from, blocked)
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

pub fn plan(input: &PlanInput<'_>) -> Plan {
    let obs = input.obs;
    let to = input.to;
    // Indexed once: every host alone, then every candidate batch.
    let mut analyzer = Analyzer::new(obs, input.workloads);
    let hosts = analyzer.all();
    let readiness: Vec<crate::safety::Readiness> = obs
        .hosts
        .iter()
        .map(|h| {
            let meta = input.catalog.get(to);
            let missing = crate::patches::missing_on_host(input.snap, h, to, meta);
            crate::safety::readiness(obs, &h.hostname, input.min_free_disk_gib, &missing)
        })
        .collect();
    let (from, blocked) = check_path(input);
    if !blocked.is_empty() {
        return Plan {
            from,
            to,
            stages: Vec::new(),
            hosts,
            total_seconds: 0,
            lower_bound_seconds: 0,
            blocked,
            readiness,
        };
    }

    let cap = input.max_parallel_worker_hosts.max(1) as usize;
    let d = |k: StepKind| input.durations.get(&k).copied().unwrap_or(0);
    let done_steps = input.snap.upgrade.as_ref().map_or(0, |u| {
        progress(u.state, crate::machine::all_control_planes_at(obs, to))
    });
    let complete = done_steps >= 5;
    let safety: HashMap<&str, &HostSafety> = hosts.iter().map(|h| (h.host.as_str(), h)).collect();
    let pending = |h: &HostInfo| !complete && obs.kubelet_version(&h.hostname) != Some(to);

    let mut sorted: Vec<&HostInfo> = obs.hosts.iter().collect();
    sorted.sort_by(|a, b| (a.id, &a.hostname).cmp(&(b.id, &b.hostname)));
    let controllers: Vec<&HostInfo> = sorted
        .iter()
        .copied()
        .filter(|h| h.personality == Personality::Controller)
        .collect();
    let workers: Vec<&HostInfo> = sorted
        .iter()
        .copied()
        .filter(|h| h.personality == Personality::Worker)
        .collect();

    // The versions the control planes step through (one unless the upgrade crosses several
    // minors), and where they stand: the current round is the first step not every control
    // plane has reached.
    let steps: Vec<KubeVersion> = from
        .and_then(|f| input.catalog.steps(f, to).ok())
        .unwrap_or_else(|| vec![to]);
    let multi = steps.len() > 1;
    let cps: Vec<KubeVersion> = controllers
        .iter()
        .filter_map(|c| obs.control_plane_version(&c.hostname))
        .collect();
    let (cp_floor, cp_max) = (cps.iter().min().copied(), cps.iter().max().copied());
    let current_round = steps.iter().position(|s| cp_floor < Some(*s));
    let version = |v: KubeVersion| multi.then_some(v);

    // Controllers' kubelets: one at a time, the standby ones first, the active one last (it
    // hands its role over first). Workers in batches. Judged once; a kubelet round on the way
    // (a minor the skew policy wants the kubelets at before the control planes go on) takes
    // the same batches, less the hosts already there.
    let mut pending_controllers: Vec<&HostInfo> =
        controllers.iter().copied().filter(|h| pending(h)).collect();
    pending_controllers.sort_by_key(|h| (h.active_controller, h.id));
    let controller_batches: Vec<Batch> = pending_controllers
        .iter()
        .map(|h| controller_batch(obs, &controllers, &safety, h, &d))
        .collect();
    let pending_workers: Vec<&HostInfo> = workers.iter().copied().filter(|h| pending(h)).collect();
    let worker_plan = if workers.is_empty() {
        None
    } else {
        Some(worker_batches(
            &mut analyzer,
            &pending_workers,
            &safety,
            cap,
            (
                d(StepKind::Lock),
                d(StepKind::Kubelet) + d(StepKind::Unlock),
            ),
        ))
    };
    // What any safe schedule of these workers needs at least (see `lower_bound_seconds`).
    let mut workers_least = |hosts: &[&str]| {
        let batches = analyzer.least_batches(hosts, cap);
        let waves = analyzer.least_drain_waves(hosts).max(batches);
        batches as u64 * (d(StepKind::Kubelet) + d(StepKind::Unlock))
            + waves as u64 * d(StepKind::Lock)
    };

    // Each stage with what any schedule needs for it at least (the lower bound).
    let mut stages: Vec<Stage> = Vec::new();
    let mut lower: Vec<u64> = Vec::new();
    let mut push = |st: Stage, least: u64| {
        lower.push(least);
        stages.push(st);
    };
    push(
        Stage {
            name: DOWNLOAD_IMAGES.into(),
            version: None,
            batches: Vec::new(),
            seconds: d(StepKind::DownloadImages),
            done: done_steps >= 1,
        },
        d(StepKind::DownloadImages),
    );
    let cp_batch = |h: &HostInfo, reason: &str| Batch {
        hosts: vec![h.hostname.clone()],
        reason: reason.to_string(),
        verdict: Verdict::Ok,
        seconds: d(StepKind::ControlPlane),
    };
    let kubelets_below = |v: KubeVersion| {
        obs.hosts
            .iter()
            .filter(|h| h.personality.has_kubelet())
            .filter_map(|h| obs.kubelet_version(&h.hostname))
            .min()
            .is_some_and(|k| k < v)
    };
    let mut kubelet_floor = obs
        .hosts
        .iter()
        .filter(|h| h.personality.has_kubelet())
        .filter_map(|h| obs.kubelet_version(&h.hostname))
        .min();
    let mut prev: Option<KubeVersion> = None;
    for (i, &step) in steps.iter().enumerate() {
        // The kubelets move first where this step would leave one beyond the skew policy.
        if let (Some(p), Some(k)) = (prev, kubelet_floor)
            && !k.kubelet_runs_under(step)
        {
            let below = |h: &str| obs.kubelet_version(h).is_some_and(|k| k < p);
            for (name, batches) in [
                (CONTROLLER_KUBELETS, &controller_batches),
                (WORKER_KUBELETS, worker_plan.as_ref().unwrap_or(&Vec::new())),
            ] {
                let batches: Vec<Batch> = batches
                    .iter()
                    .filter_map(|b| {
                        let hosts: Vec<String> =
                            b.hosts.iter().filter(|h| below(h)).cloned().collect();
                        (!hosts.is_empty()).then(|| Batch { hosts, ..b.clone() })
                    })
                    .collect();
                let least = if name == WORKER_KUBELETS {
                    let hosts: Vec<&str> = batches
                        .iter()
                        .flat_map(|b| b.hosts.iter().map(String::as_str))
                        .collect();
                    workers_least(&hosts)
                } else {
                    batches.iter().map(|b| b.seconds).sum()
                };
                push(
                    Stage {
                        name: name.into(),
                        version: Some(p),
                        seconds: batches.iter().map(|b| b.seconds).sum(),
                        done: !kubelets_below(p),
                        batches,
                    },
                    least,
                );
            }
            kubelet_floor = Some(p);
        }
        // Done: rounds before the current one; in the first, the upgrade's state says; in a
        // later one, the control planes (networking was done in the first).
        let (first_done, net_done, others_done) = match current_round {
            _ if !multi || (current_round == Some(0) && i == 0) => {
                (done_steps >= 2, done_steps >= 3, done_steps >= 4)
            }
            None => (true, true, true),
            Some(k) if i < k => (true, true, true),
            Some(k) if i == k => (cp_max >= Some(step), true, false),
            Some(_) => (false, false, false),
        };
        let first_cp = first_control_plane(obs, step);
        // Every other control plane, one at a time, in id order; those already at this step
        // (mid-upgrade) are done.
        let other_cps: Vec<&HostInfo> = controllers
            .iter()
            .copied()
            .filter(|c| Some(c.hostname.as_str()) != first_cp.map(|f| f.hostname.as_str()))
            .collect();
        push(
            Stage {
                name: FIRST_CONTROL_PLANE.into(),
                version: version(step),
                batches: first_cp
                    .map(|h| {
                        let reason = if controllers.len() == 1 {
                            "the only controller (kubeadm upgrade apply); its host stays in \
                             service"
                        } else if !obs.system_type.has_active_controller() {
                            "the first control plane (kubeadm upgrade apply); its host stays in \
                             service"
                        } else {
                            "the standby controller first (kubeadm upgrade apply); its host \
                             stays in service"
                        };
                        cp_batch(h, reason)
                    })
                    .into_iter()
                    .collect(),
                seconds: d(StepKind::ControlPlane),
                done: first_done,
            },
            d(StepKind::ControlPlane),
        );
        if i == 0 {
            push(
                Stage {
                    name: NETWORKING.into(),
                    version: None,
                    batches: Vec::new(),
                    seconds: d(StepKind::Networking),
                    done: net_done,
                },
                d(StepKind::Networking),
            );
        }
        if !other_cps.is_empty() {
            let reason = if other_cps.len() == 1 {
                "the other controller, after networking (kubeadm upgrade node); its host stays \
                 in service"
            } else {
                "the next control plane, after networking, one at a time while every other one \
                 serves (kubeadm upgrade node); its host stays in service"
            };
            let batches: Vec<Batch> = other_cps
                .iter()
                .filter(|h| {
                    !net_done
                        || current_round != Some(i)
                        || obs.control_plane_version(&h.hostname) < Some(step)
                })
                .filter(|_| !others_done)
                .map(|h| cp_batch(h, reason))
                .collect();
            let seconds = if others_done {
                d(StepKind::ControlPlane) * other_cps.len() as u64
            } else {
                batches.iter().map(|b| b.seconds).sum()
            };
            push(
                Stage {
                    name: SECOND_CONTROL_PLANE.into(),
                    version: version(step),
                    seconds,
                    done: others_done,
                    batches,
                },
                seconds,
            );
        }
        prev = Some(step);
    }

    let controller_seconds = controller_batches.iter().map(|b| b.seconds).sum();
    push(
        Stage {
            name: CONTROLLER_KUBELETS.into(),
            version: version(to),
            seconds: controller_seconds,
            done: controller_batches.is_empty(),
            batches: controller_batches,
        },
        controller_seconds,
    );
    if let Some(batches) = worker_plan {
        push(
            Stage {
                name: WORKER_KUBELETS.into(),
                version: version(to),
                seconds: batches.iter().map(|b| b.seconds).sum(),
                done: batches.is_empty(),
                batches,
            },
            workers_least(
                &pending_workers
                    .iter()
                    .map(|h| h.hostname.as_str())
                    .collect::<Vec<_>>(),
            ),
        );
    }
    push(
        Stage {
            name: COMPLETE.into(),
            version: None,
            batches: Vec::new(),
            seconds: 0,
            done: complete,
        },
        0,
    );

    let left = || stages.iter().zip(&lower).filter(|(s, _)| !s.done);
    let total_seconds = left().map(|(s, _)| s.seconds).sum();
    let lower_bound_seconds = left().map(|(_, least)| *least).sum();
    Plan {
        from,
        to,
        stages,
        hosts,
        total_seconds,
        lower_bound_seconds,
        blocked,
        readiness,
    }
}

/// A controller's kubelet batch: alone; on aio-simplex in place; the active controller after
/// a swact.
fn controller_batch(
    obs: &Observation,
    controllers: &[&HostInfo],
    safety: &HashMap<&str, &HostSafety>,
    h: &HostInfo,
    d: &impl Fn(StepKind) -> u64,
) -> Batch {
    let host_cycle = d(StepKind::Lock) + d(StepKind::Kubelet) + d(StepKind::Unlock);
    if obs.system_type != SystemType::AioSimplex && crate::machine::kubelet_in_place(obs, h) {
        return Batch {
            hosts: vec![h.hostname.clone()],
            reason: "the only control plane: its kubelet is upgraded in place, without a lock \
                     (no other could serve meanwhile)"
                .into(),
            verdict: Verdict::Ok,
            seconds: d(StepKind::Kubelet),
        };
    }
    if crate::machine::kubelet_in_place(obs, h) {
        return Batch {
            hosts: vec![h.hostname.clone()],
            reason: "aio-simplex: the only host; its kubelet is upgraded in place, without a \
                     lock or a drain"
                .into(),
            verdict: Verdict::Ok,
            seconds: d(StepKind::Kubelet),
        };
    }
    let peer = controllers
        .iter()
        .find(|c| c.hostname != h.hostname)
        .map(|c| c.hostname.as_str());
    let (mut reason, seconds) = match peer {
        Some(peer) if h.active_controller => (
            format!(
                "one controller at a time; the active controller goes last, after a swact to \
                 {peer}"
            ),
            d(StepKind::Swact) + host_cycle,
        ),
        Some(_) if !obs.system_type.has_active_controller() => (
            "one control-plane node at a time, while every other one serves".to_string(),
            host_cycle,
        ),
        Some(_) => (
            "one controller at a time; the standby first".to_string(),
            host_cycle,
        ),
        None => ("the only controller".to_string(), host_cycle),
    };
    let verdict = safety
        .get(h.hostname.as_str())
        .map_or(Verdict::Ok, |s| s.verdict);
    if verdict == Verdict::Unsafe
        && let Some(f) = safety
            .get(h.hostname.as_str())
            .and_then(|s| s.findings.first())
    {
        let _ = write!(reason, "; unsafe: {f}");
    }
    Batch {
        hosts: vec![h.hostname.clone()],
        reason,
        verdict,
        seconds,
    }
}

/// The first control plane of a step to `to`: one already there (mid-upgrade), else the
/// standby (the lowest id of the controllers that are not active).
pub fn first_control_plane(obs: &Observation, to: KubeVersion) -> Option<&HostInfo> {
    obs.controllers().min_by_key(|c| {
        (
            obs.control_plane_version(&c.hostname) < Some(to),
            c.active_controller,
            c.id,
            c.hostname.as_str(),
        )
    })
}

/// The worker batches, safe ones first (by their first host's id), then one batch per worker
/// that is unsafe even alone.
///
/// A batch's hosts stay out of service together (room for all their pods elsewhere) and are
/// drained in waves, each drain once the budgets allow it beside the drains still running
/// ([`BatchEval::drained_in_waves`]): a batch takes its waves of drains (`lock` each), then
/// a kubelet and an unlock (`rest`).
///
/// Every batch is judged against the placement observed now. Draining a batch moves its pods
/// onto hosts of later batches, so the plan is a forecast: whoever executes it must judge each
/// batch again against the live cluster before locking it (the lock check does, counting the
/// hosts still locking).
fn worker_batches(
    analyzer: &mut Analyzer<'_>,
    pending: &[&HostInfo],
    safety: &HashMap<&str, &HostSafety>,
    cap: usize,
    (lock, rest): (u64, u64),
) -> Vec<Batch> {
    let seconds = lock + rest;
    let alone = |h: &HostInfo| safety.get(h.hostname.as_str()).copied();
    let verdict_alone = |h: &HostInfo| alone(h).map_or(Verdict::Unsafe, |s| s.verdict);
    let safe: Vec<&str> = pending
        .iter()
        .filter(|h| verdict_alone(h) != Verdict::Unsafe)
        .map(|h| h.hostname.as_str())
        .collect();
    let mut out = Vec::new();
    let mut taken = vec![false; safe.len()];
    for i in 0..safe.len() {
        if taken[i] {
            continue;
        }
        taken[i] = true;
        // The next untaken workers, as far as the window goes, may join.
        let mut window: Vec<usize> = vec![i];
        window.extend(
            (i + 1..safe.len())
                .filter(|&j| !taken[j])
                .take(WINDOW_PER_HOST * cap),
        );
        let names: Vec<&str> = window.iter().map(|&j| safe[j]).collect();
        let seed_verdict = safety.get(safe[i]).map_or(Verdict::Ok, |s| s.verdict);
        let grown = grow_batch(analyzer, &names, seed_verdict, cap, MAX_UNSAFE_PROBES);
        let batch: Vec<&str> = grown.taken.iter().map(|&k| names[k]).collect();
        for &k in &grown.taken {
            taken[window[k]] = true;
        }
        let (verdict, refused, failed_probes) = (
            grown.verdict,
            grown.refused,
            if grown.probes_exhausted {
                MAX_UNSAFE_PROBES
            } else {
                0
            },
        );
        let reason = if batch.len() >= cap {
            format!("capped by --max-parallel-worker-hosts {cap}")
        } else if !refused.is_empty() {
            let mut causes: Vec<(&String, usize)> =
                refused.iter().map(|(why, &n)| (why, n)).collect();
            causes.sort_by_key(|&(why, n)| (std::cmp::Reverse(n), why));
            let mut text = "no other worker can join: ".to_string();
            for (k, (why, n)) in causes.iter().take(MAX_CAUSES).enumerate() {
                if k > 0 {
                    text.push_str("; ");
                }
                let _ = write!(text, "{why} ({n} worker{})", if *n == 1 { "" } else { "s" });
            }
            let more: usize = causes.iter().skip(MAX_CAUSES).map(|(_, n)| n).sum();
            if more > 0 {
                let _ = write!(text, "; {more} more for other reasons");
            }
            if failed_probes >= MAX_UNSAFE_PROBES {
                let _ = write!(text, "; stopped after {MAX_UNSAFE_PROBES} unsafe trials");
            }
            text
        } else if batch.len() == 1 {
            "the last worker".to_string()
        } else {
            "the last workers".to_string()
        };
        let waves = analyzer.drain_waves(&batch).len();
        let reason = if waves > 1 {
            format!("{reason}; drained in {waves} waves for their budgets")
        } else {
            reason
        };
        out.push(Batch {
            hosts: batch.iter().map(|h| h.to_string()).collect(),
            reason,
            verdict,
            seconds: waves as u64 * lock + rest,
        });
    }
    for h in pending
        .iter()
        .filter(|h| verdict_alone(h) == Verdict::Unsafe)
    {
        let worst = alone(h)
            .and_then(|s| s.findings.first())
            .map_or_else(|| "not analysed".to_string(), Finding::to_string);
        out.push(Batch {
            hosts: vec![h.hostname.clone()],
            reason: format!("unsafe even alone: {worst}"),
            verdict: Verdict::Unsafe,
            seconds,
        });
    }
    out
}

/// `4m 0s`, `1h 2m 3s`, `45s`: exact, for stage and batch durations.
pub fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `1h 12m`, `58m`, `45s`: rounded to the minute once a minute is reached.
pub fn about(secs: u64) -> String {
    if secs < 60 {
        return format!("{secs}s");
    }
    let mins = (secs + 30) / 60;
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// The plan as Kismatic's `upgrade plan` shows it: the summary line, then every host with its
/// roles, verdict and one line per finding, then the stages as a timeline with their batches.
pub fn render_table(plan: &Plan) -> String {
    let mut out = String::new();
    let from = plan.from.map_or("?".to_string(), |v| v.to_string());
    if plan.blocked.is_empty() {
        let done = plan.stages.iter().filter(|s| s.done).count();
        let _ = writeln!(
            out,
            "Plan: {from} -> {} ({} stages{}, about {}{}; no schedule can be shorter than {})",
            plan.to,
            plan.stages.len(),
            if done > 0 {
                format!(", {done} done")
            } else {
                String::new()
            },
            about(plan.total_seconds),
            if done > 0 { " left" } else { "" },
            about(plan.lower_bound_seconds),
        );
    } else {
        let _ = writeln!(out, "Plan: {from} -> {}: BLOCKED", plan.to);
        for b in &plan.blocked {
            let _ = writeln!(out, "- {b}");
        }
    }
    let _ = writeln!(out, "Hosts:");
    for h in &plan.hosts {
        let _ = writeln!(out, "{} [{}]", h.host, h.roles.join(", "));
        let _ = writeln!(out, "  {}", h.verdict);
        for f in &h.findings {
            let _ = writeln!(out, "  - {f}");
        }
    }
    let not_ready: Vec<&crate::safety::Readiness> =
        plan.readiness.iter().filter(|r| !r.ready).collect();
    if not_ready.is_empty() {
        let _ = writeln!(out, "Readiness: every host is ready");
    } else {
        let _ = writeln!(out, "Readiness:");
        for r in not_ready {
            let _ = writeln!(out, "{}: NOT READY", r.host);
            for p in &r.problems {
                let _ = writeln!(out, "  - {p}");
            }
        }
    }
    if plan.stages.is_empty() {
        return out;
    }
    let _ = writeln!(out, "Stages:");
    let mut at = 0;
    // Wider when stages carry the version they move to (an upgrade across several minors).
    let width = if plan.stages.iter().any(|s| s.version.is_some()) {
        32
    } else {
        22
    };
    for (i, s) in plan.stages.iter().enumerate() {
        let name = match s.version {
            Some(v) => format!("{} {v}", s.name),
            None => s.name.clone(),
        };
        if s.done {
            let _ = writeln!(out, "{:>2}. {name:<width$}{:>11}", i + 1, "done");
        } else {
            let _ = writeln!(
                out,
                "{:>2}. {name:<width$}{:>11}  at +{}",
                i + 1,
                human(s.seconds),
                human(at)
            );
            at += s.seconds;
        }
        for (j, b) in s.batches.iter().enumerate() {
            let _ = writeln!(
                out,
                "      batch {} ({}, {}): {} -- {}",
                j + 1,
                b.verdict,
                human(b.seconds),
                b.hosts.join(", "),
                b.reason
            );
        }
    }
    out
}
