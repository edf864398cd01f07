//! Safety, availability and readiness of taking hosts down (drain + lock), computed before
//! anything is touched.
//!
//! The rules follow Kismatic's table (seed 004, reference §1.3) and go beyond it: every owner
//! kind and namespace, ready (not desired) replicas, DaemonSet and mirror pods as `kubectl
//! drain` treats them (never evicted), PodDisruptionBudgets with the eviction API's arithmetic,
//! and whether every evicted pod fits on the hosts that remain.
//!
//! Verdicts: `UNSAFE` when data or a service (a workload, the control plane, ingress, etcd) is
//! lost or the drain would block; `WARNING` when availability is only reduced.
//!
//! Everything is indexed once per observation (pods by host, pods by PDB through their
//! distinct label sets, hosts by free CPU), so [`analyze_all`] costs O(p log p) in pods rather
//! than O(hosts × pods). One caveat: the placement scans hosts by free CPU and skips those a
//! pod may not use, so a pod that fits almost nowhere costs up to O(hosts).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use kup_types::{
    AdminState, HostInfo, NodeInfo, Observation, PdbInfo, Personality, PodInfo, VolumeKind,
    WorkloadInfo,
};
use serde::{Deserialize, Serialize};

/// Kismatic's free-disk threshold (1,000,000,000 bytes, rounded to the unit kup measures).
pub const DEFAULT_MIN_FREE_DISK_GIB: u32 = 1;

/// Ordered: `Ok < Warning < Unsafe`, so the worst of several is their maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warning,
    Unsafe,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Unsafe => "UNSAFE",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `Warning` or `Unsafe`.
    pub verdict: Verdict,
    /// What the finding is about: `pod ns/name`, `deployment ns/name`, `pdb ns/name`,
    /// `host name`.
    pub subject: String,
    /// One line, for a human.
    pub reason: String,
}

impl Finding {
    fn unsafe_(subject: String, reason: String) -> Self {
        Finding {
            verdict: Verdict::Unsafe,
            subject,
            reason,
        }
    }
    fn warning(subject: String, reason: String) -> Self {
        Finding {
            verdict: Verdict::Warning,
            subject,
            reason,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.reason)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSafety {
    pub host: String,
    /// Personality first, then worker subfunction and extra roles (`etcd`, `ingress`, ...).
    pub roles: Vec<String>,
    /// The worst finding's verdict; `Ok` when there is none.
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSafety {
    pub hosts: Vec<String>,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub host: String,
    pub ready: bool,
    pub problems: Vec<String>,
}

/// Taking this one host down (drain + lock).
pub fn analyze_host(obs: &Observation, host: &str) -> HostSafety {
    let ix = Index::new(obs);
    let mut place = Placement::new(&ix);
    host_safety(&ix, &mut place, host)
}

/// Taking these hosts down together.
pub fn analyze_batch(obs: &Observation, hosts: &[&str]) -> BatchSafety {
    let ix = Index::new(obs);
    let mut place = Placement::new(&ix);
    let mut seen = BTreeSet::new();
    let mut names: Vec<String> = Vec::new();
    let mut batch = Vec::new();
    let mut unknown = Vec::new();
    for &h in hosts {
        if !seen.insert(h) {
            continue;
        }
        names.push(h.to_string());
        match ix.by_name.get(h) {
            Some(&i) => batch.push(i),
            None => unknown.push(h),
        }
    }
    let findings = analyze(&ix, &mut place, &batch, &unknown);
    BatchSafety {
        hosts: names,
        verdict: worst(&findings),
        findings,
    }
}

/// Every host on its own, sorted by host id. The observation is indexed once.
pub fn analyze_all(obs: &Observation) -> Vec<HostSafety> {
    let ix = Index::new(obs);
    let mut place = Placement::new(&ix);
    (0..ix.hosts.len())
        .map(|i| {
            let findings = analyze(&ix, &mut place, &[i], &[]);
            HostSafety {
                host: ix.hosts[i].hostname.clone(),
                roles: roles_of(ix.hosts[i]),
                verdict: worst(&findings),
                findings,
            }
        })
        .collect()
}

/// Whether a host can take the upgrade: enough free disk, unlocked/enabled/available with no
/// action in progress, and no missing patch (the caller computes which are missing).
pub fn readiness(
    obs: &Observation,
    host: &str,
    min_free_disk_gib: u32,
    missing_patches: &[String],
) -> Readiness {
    let mut problems = Vec::new();
    match obs.host(host) {
        None => problems.push("host is not in the observation".to_string()),
        Some(h) => {
            if h.disk_free_gib < min_free_disk_gib {
                problems.push(format!(
                    "free disk {} GiB is below the {} GiB required",
                    h.disk_free_gib, min_free_disk_gib
                ));
            }
            if !h.is_unlocked_enabled_available() {
                problems.push(format!(
                    "host is {}/{}/{}, not unlocked/enabled/available",
                    h.administrative, h.operational, h.availability
                ));
            }
            if let Some(task) = &h.task {
                problems.push(format!("an action is in progress on the host: {task}"));
            }
            for p in missing_patches {
                problems.push(format!("needs patch {p}"));
            }
        }
    }
    Readiness {
        host: host.to_string(),
        ready: problems.is_empty(),
        problems,
    }
}

fn host_safety(ix: &Index<'_>, place: &mut Placement<'_>, host: &str) -> HostSafety {
    let (findings, roles) = match ix.by_name.get(host) {
        Some(&i) => (analyze(ix, place, &[i], &[]), roles_of(ix.hosts[i])),
        None => (analyze(ix, place, &[], &[host]), Vec::new()),
    };
    HostSafety {
        host: host.to_string(),
        roles,
        verdict: worst(&findings),
        findings,
    }
}

fn worst(findings: &[Finding]) -> Verdict {
    findings
        .iter()
        .map(|f| f.verdict)
        .max()
        .unwrap_or(Verdict::Ok)
}

fn roles_of(h: &HostInfo) -> Vec<String> {
    let mut roles = vec![h.personality.to_string()];
    let extra = h.subfunctions.iter().filter(|s| s.as_str() == "worker");
    for r in extra.chain(h.roles.iter()) {
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    roles
}

/// `(namespace, kind, name)` of a pod's owner.
type OwnerKey<'a> = (&'a str, &'a str, &'a str);

/// FxHash, as rustc uses it: the keys are the cluster's own names, and hashing them dominated
/// the indexing with the default SipHash.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut rest = [0u8; 8];
        let tail = chunks.remainder();
        rest[..tail.len()].copy_from_slice(tail);
        self.add(u64::from_le_bytes(rest) ^ tail.len() as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// A PDB with its budget as the disruption controller computes it now.
struct Budget<'a> {
    pdb: &'a PdbInfo,
    total: u32,
    healthy: u32,
    desired: u32,
    allowed: u32,
}

impl Budget<'_> {
    fn rule(&self) -> String {
        match (self.pdb.max_unavailable, self.pdb.min_available) {
            (Some(m), _) => format!("max unavailable {m}"),
            (None, Some(m)) => format!("min available {m}"),
            (None, None) => "no minimum".to_string(),
        }
    }
    fn always_allow(&self) -> bool {
        self.pdb.unhealthy_pod_eviction_policy.as_deref() == Some("AlwaysAllow")
    }
}

/// The hosts' roles, counted once.
#[derive(Default)]
struct RoleCounts {
    controllers: usize,
    workers: usize,
    ingress: usize,
    storage: usize,
    etcd_members: usize,
    etcd_healthy: usize,
}

fn is_controller(h: &HostInfo) -> bool {
    h.personality == Personality::Controller
}
fn is_worker(h: &HostInfo) -> bool {
    h.personality == Personality::Worker || h.subfunctions.iter().any(|s| s == "worker")
}
fn has_role(h: &HostInfo, role: &str) -> bool {
    h.roles.iter().any(|r| r == role)
}
fn is_storage(h: &HostInfo) -> bool {
    h.personality == Personality::Storage || has_role(h, "storage")
}

/// What `kubectl drain` does with a pod.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Mirror (static) pod: skipped.
    Mirror,
    /// DaemonSet pod: not evicted, down while the host is.
    Daemon,
    /// No controller: deleted and never recreated.
    Unmanaged,
    /// Pod of a Job: evicted and restarted.
    Job,
    /// Evicted and recreated by its controller.
    Replicated,
}

const EMPTY_DIR: u8 = 1;
const HOST_PATH: u8 = 2;
const HOST_PATH_PV: u8 = 4;

/// A pod on a host, with what the analysis needs, stored host by host so one host's pods are
/// read sequentially.
#[derive(Clone, Copy)]
struct Slot {
    pod: u32,
    owner: u32,
    class: Class,
    ready: bool,
    /// `EMPTY_DIR | HOST_PATH | HOST_PATH_PV`.
    volumes: u8,
    /// No node selector and no toleration: schedulable on any untainted host.
    plain: bool,
    /// Range of the PDBs selecting the pod in `Index::slot_pdbs`.
    pdbs: (u32, u32),
    cpu: u32,
    mem: u32,
}

/// Everything about an observation the analysis looks up, built once.
struct Index<'a> {
    hosts: Vec<&'a HostInfo>,
    by_name: FxMap<&'a str, usize>,
    nodes: Vec<Option<&'a NodeInfo>>,
    pods: &'a [PodInfo],
    /// The pods on each host: `slots[host_slots[h]..host_slots[h + 1]]`.
    slots: Vec<Slot>,
    host_slots: Vec<usize>,
    slot_pdbs: Vec<u32>,
    owners: Vec<OwnerKey<'a>>,
    /// Ready pods per owner, over every node.
    owner_ready: Vec<u32>,
    workloads: FxMap<OwnerKey<'a>, &'a WorkloadInfo>,
    budgets: Vec<Budget<'a>>,
    roles: RoleCounts,
}

impl<'a> Index<'a> {
    fn new(obs: &'a Observation) -> Self {
        let mut hosts: Vec<&HostInfo> = obs.hosts.iter().collect();
        hosts.sort_by(|a, b| (a.id, &a.hostname).cmp(&(b.id, &b.hostname)));
        let mut by_name = FxMap::default();
        for (i, h) in hosts.iter().enumerate() {
            by_name.entry(h.hostname.as_str()).or_insert(i);
        }
        let node_by_name: FxMap<&str, &NodeInfo> =
            obs.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let nodes = hosts
            .iter()
            .map(|h| node_by_name.get(h.hostname.as_str()).copied())
            .collect();

        // Owners get dense ids; pods on a known host are bucketed by host.
        // Sized for the worst case up front: rehashing large maps showed in profiles.
        let mut owner_ids: FxMap<OwnerKey, u32> =
            FxMap::with_capacity_and_hasher(obs.pods.len(), Default::default());
        let mut owners = Vec::new();
        let mut owner_ready = Vec::new();
        let mut pod_host = Vec::with_capacity(obs.pods.len());
        let mut pod_owner = Vec::with_capacity(obs.pods.len());
        let mut per_host = vec![0usize; hosts.len() + 1];
        for p in &obs.pods {
            let key = (
                p.namespace.as_str(),
                p.owner_kind.as_str(),
                p.owner.as_str(),
            );
            let id = *owner_ids.entry(key).or_insert_with(|| {
                owners.push(key);
                owner_ready.push(0);
                u32::try_from(owners.len() - 1).expect("fewer than 2^32 owners")
            });
            pod_owner.push(id);
            let host = p.node.as_deref().and_then(|n| by_name.get(n).copied());
            if let Some(h) = host {
                per_host[h + 1] += 1;
            }
            if p.ready && p.node.is_some() {
                owner_ready[id as usize] += 1;
            }
            pod_host.push(host);
        }
        for h in 0..hosts.len() {
            per_host[h + 1] += per_host[h];
        }
        let host_slots = per_host.clone();

        let (budgets, member_start, members) = pdb_membership(obs);
        let mut order: Vec<Option<usize>> = vec![None; host_slots[hosts.len()]];
        let mut next = per_host;
        for (i, h) in pod_host.iter().enumerate() {
            if let Some(h) = *h {
                order[next[h]] = Some(i);
                next[h] += 1;
            }
        }
        let mut slots = Vec::with_capacity(order.len());
        let mut slot_pdbs = Vec::new();
        for i in order.into_iter().flatten() {
            let p = &obs.pods[i];
            let class = match p.owner_kind.as_str() {
                "Node" => Class::Mirror,
                "DaemonSet" => Class::Daemon,
                "Pod" | "" => Class::Unmanaged,
                "Job" => Class::Job,
                _ => Class::Replicated,
            };
            let volumes = p.volumes.iter().fold(0, |acc, v| {
                acc | match v {
                    VolumeKind::EmptyDir => EMPTY_DIR,
                    VolumeKind::HostPath => HOST_PATH,
                    VolumeKind::HostPathPv => HOST_PATH_PV,
                    VolumeKind::Pvc => 0,
                }
            });
            let start = u32::try_from(slot_pdbs.len()).expect("fewer than 2^32 memberships");
            slot_pdbs.extend_from_slice(&members[member_start[i]..member_start[i + 1]]);
            let end = u32::try_from(slot_pdbs.len()).expect("fewer than 2^32 memberships");
            slots.push(Slot {
                pod: u32::try_from(i).expect("fewer than 2^32 pods"),
                owner: pod_owner[i],
                class,
                ready: p.ready,
                volumes,
                plain: p.node_selector.is_empty() && p.tolerations.is_empty(),
                pdbs: (start, end),
                cpu: p.requests.cpu_millis,
                mem: p.requests.memory_mib,
            });
        }

        let workloads = obs
            .workloads
            .iter()
            .map(|w| ((w.namespace.as_str(), w.kind.as_str(), w.name.as_str()), w))
            .collect();

        let mut roles = RoleCounts::default();
        for h in &hosts {
            let up = h.is_unlocked_enabled_available();
            roles.controllers += usize::from(up && is_controller(h));
            roles.workers += usize::from(up && is_worker(h));
            roles.ingress += usize::from(up && has_role(h, "ingress"));
            roles.storage += usize::from(up && is_storage(h));
            if has_role(h, "etcd") {
                roles.etcd_members += 1;
                roles.etcd_healthy += usize::from(up);
            }
        }

        Index {
            hosts,
            by_name,
            nodes,
            pods: &obs.pods,
            slots,
            host_slots,
            slot_pdbs,
            owners,
            owner_ready,
            workloads,
            budgets,
            roles,
        }
    }

    fn slots_of(&self, h: usize) -> &[Slot] {
        &self.slots[self.host_slots[h]..self.host_slots[h + 1]]
    }

    fn pdbs_of(&self, s: &Slot) -> &[u32] {
        &self.slot_pdbs[s.pdbs.0 as usize..s.pdbs.1 as usize]
    }
}

/// Matches every PDB against the namespace's distinct label sets (through an inverted index of
/// label pairs), not against every pod: pods of one workload share a label set.
/// Returns the budgets and, for pod `i`, the PDBs selecting it in
/// `members[start[i]..start[i + 1]]`, ascending.
fn pdb_membership(obs: &Observation) -> (Vec<Budget<'_>>, Vec<usize>, Vec<u32>) {
    type Labels = BTreeMap<String, String>;
    let mut set_ids: FxMap<(&str, &Labels), usize> =
        FxMap::with_capacity_and_hasher(obs.pods.len(), Default::default());
    let mut sets: Vec<(&Labels, Vec<usize>)> = Vec::new();
    let mut ns_sets: FxMap<&str, Vec<usize>> = FxMap::default();
    let mut postings: FxMap<(&str, &str, &str), Vec<usize>> = FxMap::default();
    for (i, p) in obs.pods.iter().enumerate() {
        let id = *set_ids
            .entry((p.namespace.as_str(), &p.labels))
            .or_insert_with(|| {
                let id = sets.len();
                sets.push((&p.labels, Vec::new()));
                ns_sets.entry(&p.namespace).or_default().push(id);
                for (k, v) in &p.labels {
                    postings.entry((&p.namespace, k, v)).or_default().push(id);
                }
                id
            });
        sets[id].1.push(i);
    }

    let mut pairs: Vec<(u32, u32)> = Vec::new(); // (pod, pdb), by PDB
    let mut budgets = Vec::with_capacity(obs.pdbs.len());
    let none: Vec<usize> = Vec::new();
    for (b, pdb) in obs.pdbs.iter().enumerate() {
        let ns = pdb.namespace.as_str();
        // policy/v1: an empty selector selects every pod of the namespace.
        let matched: Vec<usize> = if pdb.selector.is_empty() {
            ns_sets.get(ns).unwrap_or(&none).clone()
        } else {
            let lists: Option<Vec<&Vec<usize>>> = pdb
                .selector
                .iter()
                .map(|(k, v)| postings.get(&(ns, k.as_str(), v.as_str())))
                .collect();
            match lists.and_then(|l| l.into_iter().min_by_key(|l| l.len())) {
                None => Vec::new(),
                Some(shortest) => shortest
                    .iter()
                    .copied()
                    .filter(|&s| {
                        let labels = sets[s].0;
                        pdb.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
                    .collect(),
            }
        };
        let (mut total, mut healthy) = (0u32, 0u32);
        let b = u32::try_from(b).expect("fewer than 2^32 PDBs");
        for s in matched {
            for &p in &sets[s].1 {
                total += 1;
                healthy += u32::from(obs.pods[p].ready);
                pairs.push((u32::try_from(p).expect("fewer than 2^32 pods"), b));
            }
        }
        // As the disruption controller does: maxUnavailable wins if (invalidly) both are set.
        let desired = match (pdb.max_unavailable, pdb.min_available) {
            (Some(m), _) => total.saturating_sub(m),
            (None, Some(m)) => m,
            (None, None) => 0,
        };
        budgets.push(Budget {
            pdb,
            total,
            healthy,
            desired,
            allowed: healthy.saturating_sub(desired),
        });
    }
    // A stable counting sort by pod keeps each pod's PDBs ascending, without one allocation
    // per pod.
    let mut start = vec![0usize; obs.pods.len() + 1];
    for &(p, _) in &pairs {
        start[p as usize + 1] += 1;
    }
    for i in 0..obs.pods.len() {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut members = vec![0u32; pairs.len()];
    for (p, b) in pairs {
        members[next[p as usize]] = b;
        next[p as usize] += 1;
    }
    (budgets, start, members)
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn pod_subject(p: &PodInfo) -> String {
    format!("pod {}/{}", p.namespace, p.name)
}

/// Sorts `(key, value)` pairs by key and sums the values of equal keys.
fn merge<V: Copy + std::ops::AddAssign>(mut v: Vec<(u32, V)>) -> Vec<(u32, V)> {
    v.sort_unstable_by_key(|e| e.0);
    let mut out: Vec<(u32, V)> = Vec::with_capacity(v.len());
    for (k, x) in v {
        match out.last_mut() {
            Some((lk, lx)) if *lk == k => *lx += x,
            _ => out.push((k, x)),
        }
    }
    out
}

/// A pair of counters, summable by [`merge`].
#[derive(Clone, Copy, Default)]
struct Pair(u32, u32);

impl std::ops::AddAssign for Pair {
    fn add_assign(&mut self, o: Pair) {
        self.0 += o.0;
        self.1 += o.1;
    }
}

/// The findings of taking `batch` (host indices) down together; `unknown` names hosts that
/// are not in the observation.
fn analyze(
    ix: &Index<'_>,
    place: &mut Placement<'_>,
    batch: &[usize],
    unknown: &[&str],
) -> Vec<Finding> {
    let mut out: Vec<Finding> = unknown
        .iter()
        .map(|h| Finding::unsafe_(format!("host {h}"), "not in the observation".into()))
        .collect();
    let scope = if batch.len() + unknown.len() > 1 {
        "these hosts"
    } else {
        "this host"
    };
    role_findings(ix, batch, &mut out);

    let mut owners: Vec<(u32, u32)> = Vec::new(); // ready pods on the batch, per owner
    let mut jobs: Vec<(u32, u32)> = Vec::new();
    let mut pdb_hits: Vec<(u32, Pair)> = Vec::new(); // (ready, unready) evicted, per PDB
    let mut movers: Vec<Slot> = Vec::new();
    for &h in batch {
        let host = ix.hosts[h].hostname.as_str();
        for s in ix.slots_of(h) {
            let p = || &ix.pods[s.pod as usize];
            match s.class {
                // Skipped by drain; the control plane checks cover static pods.
                Class::Mirror => continue,
                // Never evicted: its volumes stay with it, but it is down while the host is.
                Class::Daemon => {
                    if s.ready {
                        owners.push((s.owner, 1));
                    }
                    // Not evicted, but down with the host: it still spends its budgets.
                    for &b in ix.pdbs_of(s) {
                        pdb_hits.push((b, if s.ready { Pair(1, 0) } else { Pair(0, 1) }));
                    }
                    continue;
                }
                Class::Unmanaged => out.push(Finding::unsafe_(
                    pod_subject(p()),
                    "unmanaged pod: the drain deletes it and nothing recreates it".into(),
                )),
                Class::Job => jobs.push((s.owner, 1)),
                Class::Replicated => {
                    if s.ready {
                        owners.push((s.owner, 1));
                    }
                }
            }
            if s.volumes != 0 {
                volume_findings(p(), s.volumes, host, &mut out);
            }
            let pdbs = ix.pdbs_of(s);
            for &b in pdbs {
                pdb_hits.push((b, if s.ready { Pair(1, 0) } else { Pair(0, 1) }));
            }
            if pdbs.len() > 1 {
                let names: Vec<&str> = pdbs
                    .iter()
                    .map(|&b| ix.budgets[b as usize].pdb.name.as_str())
                    .collect();
                // The eviction API answers 500 for a pod under several budgets, so a drain
                // would retry it for ever.
                out.push(Finding::unsafe_(
                    pod_subject(p()),
                    format!(
                        "covered by {} PDBs ({}): the eviction API refuses to evict such a pod, so the drain would hang",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            if s.class != Class::Unmanaged && s.volumes & HOST_PATH_PV == 0 {
                movers.push(*s);
            }
        }
    }

    for (owner, ready_here) in merge(owners) {
        if ix.owner_ready[owner as usize] > ready_here {
            continue;
        }
        let key = ix.owners[owner as usize];
        let (ns, kind, name) = key;
        let desired = ix
            .workloads
            .get(&key)
            .map(|w| format!(" of {} desired", w.replicas))
            .unwrap_or_default();
        let reason = if kind == "DaemonSet" {
            format!("no ready pod would remain: all {ready_here} ready{desired} run on {scope}")
        } else {
            format!("no ready replica would remain: all {ready_here} ready{desired} are on {scope}")
        };
        out.push(Finding::unsafe_(
            format!("{} {ns}/{name}", kind.to_lowercase()),
            reason,
        ));
    }

    for (owner, n) in merge(jobs) {
        let (ns, _, name) = ix.owners[owner as usize];
        out.push(Finding::unsafe_(
            format!("job {ns}/{name}"),
            format!(
                "running job: {} on {scope} would be killed and started again",
                plural(n, "pod")
            ),
        ));
    }

    for (b, Pair(ready, unready)) in merge(pdb_hits) {
        let bud = &ix.budgets[b as usize];
        // The eviction API lets an unready pod go without budget only under AlwaysAllow, or
        // under IfHealthyBudget while the budget is healthy; otherwise it needs a disruption.
        let free_unready = bud.always_allow() || (bud.desired > 0 && bud.healthy >= bud.desired);
        let charged = if free_unready { 0 } else { unready };
        let needed = ready + charged;
        if needed <= bud.allowed {
            continue;
        }
        let mut reason = format!(
            "evicting {} exceeds the {} allowed disruption{} ({} healthy of {}, {})",
            plural(needed, "pod"),
            bud.allowed,
            if bud.allowed == 1 { "" } else { "s" },
            bud.healthy,
            bud.total,
            bud.rule()
        );
        if charged > 0 {
            reason.push_str(&format!(
                "; {charged} unready: under IfHealthyBudget they are evicted only from a \
                 healthy budget, so the drain would block"
            ));
        }
        out.push(Finding::unsafe_(
            format!("pdb {}/{}", bud.pdb.namespace, bud.pdb.name),
            reason,
        ));
    }

    // Sorted, so that the placement can test membership by binary search.
    let mut sorted = batch.to_vec();
    sorted.sort_unstable();
    let batch = sorted.as_slice();
    for s in place.place(ix, &mut movers, batch) {
        let p = &ix.pods[s.pod as usize];
        let mut reason = format!(
            "needs cpu {}m, memory {}Mi: fits on no remaining host",
            s.cpu, s.mem
        );
        if !place.any_eligible(ix, &s, batch) {
            reason.push_str(" (none matches its node selector and tolerations)");
        }
        out.push(Finding::unsafe_(pod_subject(p), reason));
    }

    out.sort_by(|a, b| {
        (Reverse(a.verdict), &a.subject, &a.reason).cmp(&(
            Reverse(b.verdict),
            &b.subject,
            &b.reason,
        ))
    });
    out.dedup();
    out
}

fn volume_findings(p: &PodInfo, volumes: u8, host: &str, out: &mut Vec<Finding>) {
    let reasons = [
        (
            EMPTY_DIR,
            "emptyDir volume: its data is lost when the pod is evicted",
        ),
        (
            HOST_PATH,
            "hostPath volume: its data stays on the host, a replacement elsewhere will not see it",
        ),
        (
            HOST_PATH_PV,
            "hostPath persistent volume: its data stays on the host, so the pod cannot run \
             elsewhere",
        ),
    ];
    for (bit, reason) in reasons {
        if volumes & bit != 0 {
            out.push(Finding::unsafe_(
                pod_subject(p),
                format!("{reason} ({host})"),
            ));
        }
    }
}
fn role_findings(ix: &Index<'_>, batch: &[usize], out: &mut Vec<Finding>) {
    let down = |pred: &dyn Fn(&HostInfo) -> bool| {
        batch
            .iter()
            .filter(|&&h| ix.hosts[h].is_unlocked_enabled_available() && pred(ix.hosts[h]))
            .count()
    };
    let r = &ix.roles;
    let left_controllers = r.controllers.saturating_sub(down(&is_controller));
    let left_workers = r.workers.saturating_sub(down(&is_worker));
    let left_ingress = r.ingress.saturating_sub(down(&|h| has_role(h, "ingress")));
    let left_storage = r.storage.saturating_sub(down(&is_storage));
    let left_etcd = r
        .etcd_healthy
        .saturating_sub(down(&|h| has_role(h, "etcd")));
    let quorum = r.etcd_members / 2 + 1;

    for &h in batch {
        let host = ix.hosts[h];
        let subject = || format!("host {}", host.hostname);
        if is_controller(host) && left_controllers == 0 {
            out.push(Finding::unsafe_(
                subject(),
                format!(
                    "controller: {} available now, none would remain; the control plane goes down",
                    r.controllers
                ),
            ));
        }
        if is_worker(host) && left_workers == 0 {
            out.push(Finding::unsafe_(
                subject(),
                format!(
                    "worker: {} available now, none would remain; every workload goes down",
                    r.workers
                ),
            ));
        }
        if has_role(host, "ingress") {
            out.push(if left_ingress == 0 {
                Finding::unsafe_(
                    subject(),
                    format!(
                        "ingress: {} available now, none would remain; ingress traffic stops",
                        r.ingress
                    ),
                )
            } else {
                Finding::warning(
                    subject(),
                    "ingress node: clients may reach it directly, and kup does not control the \
                     ingress load balancer"
                        .into(),
                )
            });
        }
        if is_storage(host) {
            out.push(if left_storage == 0 {
                Finding::unsafe_(
                    subject(),
                    format!(
                        "storage: {} available now, none would remain; storage becomes unavailable",
                        r.storage
                    ),
                )
            } else {
                Finding::warning(
                    subject(),
                    "storage node: its bricks are unavailable until it returns".into(),
                )
            });
        }
        if has_role(host, "etcd") && left_etcd < quorum {
            out.push(Finding::unsafe_(
                subject(),
                format!(
                    "etcd: {left_etcd} of {} members would remain healthy, below the quorum of \
                     {quorum}",
                    r.etcd_members
                ),
            ));
        }
    }
}

fn tolerates(p: &PodInfo, n: &NodeInfo) -> bool {
    n.taints.iter().all(|t| {
        !matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
            || p.tolerations.iter().any(|k| k == "*" || *k == t.key)
    })
}

fn selects(p: &PodInfo, n: &NodeInfo) -> bool {
    p.node_selector
        .iter()
        .all(|(k, v)| n.labels.get(k) == Some(v))
}

/// Below this many candidate hosts, a pod's node selector is resolved through the label index
/// instead of scanning hosts by free CPU.
const DIRECT_CANDIDATES: usize = 64;

/// Free capacity of the schedulable hosts, kept sorted by free CPU. `place` changes it while
/// it places a batch's pods and restores it before returning, so one instance serves every
/// host of [`analyze_all`].
struct Placement<'a> {
    free: Vec<(u64, u64)>,
    schedulable: Vec<bool>,
    /// Whether the host has a `NoSchedule`/`NoExecute` taint.
    tainted: Vec<bool>,
    /// Schedulable hosts, most free CPU first, then by host order.
    order: BTreeSet<(Reverse<u64>, usize)>,
    /// `(label, value)` → schedulable hosts carrying it, ascending.
    labels: FxMap<(&'a str, &'a str), Vec<usize>>,
}

impl<'a> Placement<'a> {
    fn new(ix: &Index<'a>) -> Self {
        let n = ix.hosts.len();
        let mut free = Vec::with_capacity(n);
        let mut schedulable = Vec::with_capacity(n);
        let mut tainted = Vec::with_capacity(n);
        let mut order = BTreeSet::new();
        let mut labels: FxMap<(&str, &str), Vec<usize>> = FxMap::default();
        for (h, host) in ix.hosts.iter().enumerate() {
            // Every pod there uses room, DaemonSet and mirror pods included.
            let (cpu, mem) = ix.slots_of(h).iter().fold((0u64, 0u64), |(c, m), s| {
                (c + u64::from(s.cpu), m + u64::from(s.mem))
            });
            let f = (
                u64::from(host.capacity.cpu_millis).saturating_sub(cpu),
                u64::from(host.capacity.memory_mib).saturating_sub(mem),
            );
            free.push(f);
            let node = ix.nodes[h];
            // A NotReady node carries the not-ready taint in practice: nothing lands there.
            let ok = host.administrative == AdminState::Unlocked
                && node.is_some_and(|n| n.ready && !n.unschedulable);
            schedulable.push(ok);
            tainted.push(node.is_some_and(|n| {
                n.taints
                    .iter()
                    .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            }));
            if let (true, Some(node)) = (ok, node) {
                order.insert((Reverse(f.0), h));
                for (k, v) in &node.labels {
                    labels.entry((k, v)).or_default().push(h);
                }
            }
        }
        Placement {
            free,
            schedulable,
            tainted,
            order,
            labels,
        }
    }

    /// Node selector and taints; only for schedulable hosts.
    fn eligible(&self, ix: &Index<'_>, s: &Slot, h: usize) -> bool {
        if s.plain {
            return !self.tainted[h];
        }
        let p = &ix.pods[s.pod as usize];
        let n = ix.nodes[h].expect("schedulable has a node");
        selects(p, n) && tolerates(p, n)
    }

    /// The hosts carrying the rarest pair of the pod's node selector: `Ok(None)` when the
    /// selector is empty (every host), `Err(())` when some pair is on no schedulable host.
    fn candidates<'s>(&'s self, p: &'s PodInfo) -> Result<Option<&'s [usize]>, ()> {
        let mut shortest: Option<&[usize]> = None;
        for (k, v) in &p.node_selector {
            let l = self.labels.get(&(k.as_str(), v.as_str())).ok_or(())?;
            if shortest.is_none_or(|s| l.len() < s.len()) {
                shortest = Some(l);
            }
        }
        Ok(shortest)
    }

    /// Whether any remaining host matches the pod's selector and tolerations, capacity aside.
    fn any_eligible(&self, ix: &Index<'_>, s: &Slot, batch: &[usize]) -> bool {
        let ok = |h: usize| {
            self.schedulable[h] && batch.binary_search(&h).is_err() && self.eligible(ix, s, h)
        };
        match self.candidates(&ix.pods[s.pod as usize]) {
            Err(()) => false,
            Ok(Some(list)) => list.iter().any(|&h| ok(h)),
            Ok(None) => (0..ix.hosts.len()).any(ok),
        }
    }

    /// First-fit decreasing: largest request first, onto the eligible host with the most free
    /// CPU that has room. `batch` is sorted. Returns the pods that fit nowhere; leaves `self`
    /// as it found it.
    fn place(&mut self, ix: &Index<'_>, pods: &mut [Slot], batch: &[usize]) -> Vec<Slot> {
        if pods.is_empty() {
            return Vec::new();
        }
        for &h in batch {
            if self.schedulable[h] {
                self.order.remove(&(Reverse(self.free[h].0), h));
            }
        }
        pods.sort_by(|a, b| {
            let name = |s: &Slot| {
                let p = &ix.pods[s.pod as usize];
                (p.namespace.as_str(), p.name.as_str())
            };
            (Reverse(a.cpu), Reverse(a.mem))
                .cmp(&(Reverse(b.cpu), Reverse(b.mem)))
                .then_with(|| name(a).cmp(&name(b)))
        });
        let mut undo: Vec<(usize, (u64, u64))> = Vec::new();
        let mut unplaced = Vec::new();
        for s in pods.iter() {
            let need = (u64::from(s.cpu), u64::from(s.mem));
            match self.find(ix, s, need, batch) {
                Some(h) => {
                    let old = self.free[h];
                    undo.push((h, old));
                    let new = (old.0 - need.0, old.1 - need.1);
                    self.order.remove(&(Reverse(old.0), h));
                    self.order.insert((Reverse(new.0), h));
                    self.free[h] = new;
                }
                None => unplaced.push(*s),
            }
        }
        for (h, old) in undo.into_iter().rev() {
            self.order.remove(&(Reverse(self.free[h].0), h));
            self.order.insert((Reverse(old.0), h));
            self.free[h] = old;
        }
        for &h in batch {
            if self.schedulable[h] {
                self.order.insert((Reverse(self.free[h].0), h));
            }
        }
        unplaced
    }

    /// The eligible host with the most free CPU (then the lowest host order) that has room.
    fn find(&self, ix: &Index<'_>, s: &Slot, need: (u64, u64), batch: &[usize]) -> Option<usize> {
        let fits = |h: usize| self.free[h].0 >= need.0 && self.free[h].1 >= need.1;
        // `?`: a selector pair no schedulable host carries.
        if !s.plain
            && let Some(list) = self.candidates(&ix.pods[s.pod as usize]).ok()?
            && list.len() <= DIRECT_CANDIDATES
        {
            return list
                .iter()
                .copied()
                .filter(|&h| batch.binary_search(&h).is_err() && fits(h) && self.eligible(ix, s, h))
                .max_by_key(|&h| (self.free[h].0, Reverse(h)));
        }
        // The batch's hosts were taken out of `order`.
        for &(Reverse(cpu), h) in &self.order {
            if cpu < need.0 {
                break;
            }
            if self.free[h].1 >= need.1 && self.eligible(ix, s, h) {
                return Some(h);
            }
        }
        None
    }
}
