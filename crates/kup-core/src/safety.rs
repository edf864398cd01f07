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
//! The pods come indexed ([`Workloads`]: pods and requested capacity by host, ready pods per
//! owner, healthy pods per budget, kept current by the driver), so judging a batch costs what
//! its hosts hold plus one pass over the hosts for the placement, and [`analyze_all`] costs
//! O(p log p) in pods. An [`Analyzer`] reuses that pass for every batch of a plan, and a
//! [`BatchEval`] grows a batch host by host with its budgets and counts as running sums. One
//! caveat: the placement scans hosts by free CPU and skips those a pod may not use, so a pod
//! that fits almost nowhere costs up to O(hosts).

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use kup_types::workloads::OwnerId;
use kup_types::{
    AdminState, HostInfo, NodeInfo, Observation, PdbId, PdbInfo, Personality, PodId, PodInfo,
    VolumeKind, Workloads,
};
use rustc_hash::{FxHashMap, FxHashSet};
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

impl BatchSafety {
    /// The unsafe findings, each as `subject: reason`.
    pub fn unsafe_reasons(&self) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.verdict == Verdict::Unsafe)
            .map(Finding::to_string)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub host: String,
    pub ready: bool,
    pub problems: Vec<String>,
}

/// Taking this one host down (drain + lock).
pub fn analyze_host(obs: &Observation, wl: &Workloads, host: &str) -> HostSafety {
    let mut an = Analyzer::new(obs, wl);
    let findings = an.batch(&[host]).findings;
    let roles = obs.host(host).map(roles_of).unwrap_or_default();
    HostSafety {
        host: host.to_string(),
        roles,
        verdict: worst(&findings),
        findings,
    }
}

/// Taking these hosts down together.
pub fn analyze_batch(obs: &Observation, wl: &Workloads, hosts: &[&str]) -> BatchSafety {
    Analyzer::new(obs, wl).batch(hosts)
}

/// Every host on its own, sorted by host id.
pub fn analyze_all(obs: &Observation, wl: &Workloads) -> Vec<HostSafety> {
    Analyzer::new(obs, wl).all()
}

/// The analysis of one observation: the hosts' roles and the placement's view of free
/// capacity are computed once and serve every host and batch judged with it.
pub struct Analyzer<'a> {
    ix: Index<'a>,
    place: Placement<'a>,
    /// What each host holds that a screen adds up, by host position; each built on first use
    /// (a lock's check reads a few hosts of thousands).
    loads: Vec<Option<Load>>,
}

impl<'a> Analyzer<'a> {
    pub fn new(obs: &'a Observation, wl: &'a Workloads) -> Self {
        let ix = Index::new(obs, wl);
        let place = Placement::new(&ix);
        Self {
            ix,
            place,
            loads: Vec::new(),
        }
    }

    /// What the host at position `h` holds.
    fn load(&mut self, h: usize) -> &Load {
        if self.loads.is_empty() {
            self.loads.resize_with(self.ix.hosts.len(), || None);
        }
        let ix = &self.ix;
        self.loads[h].get_or_insert_with(|| Load::of(ix, &ix.hosts[h]))
    }

    /// Taking these hosts down together (unknown names are findings of their own).
    pub fn batch(&mut self, hosts: &[&str]) -> BatchSafety {
        let mut eval = BatchEval::new();
        let mut seen = BTreeSet::new();
        for &h in hosts {
            if seen.insert(h) {
                eval.add(self, h);
            }
        }
        eval.evaluate(self)
    }

    /// The waves the drains of `hosts` take when each drain starts once the budgets allow it
    /// beside the drains still running, hosts taken in order (a forecast: drains of equal
    /// length, the first wave that admits a host takes it). Each wave as positions in `hosts`.
    pub fn drain_waves(&mut self, hosts: &[&str]) -> Vec<Vec<usize>> {
        let mut waves = Waves::default();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, &h) in hosts.iter().enumerate() {
            let k = waves.add(self, h);
            match members.get_mut(k) {
                Some(m) => m.push(i),
                None => members.push(vec![i]),
            }
        }
        members
    }

    /// The fewest batches of at most `cap` any safe schedule of `hosts` needs: also, since a
    /// batch never takes every ingress host in service, at most all but one of those a batch.
    pub fn least_batches(&mut self, hosts: &[&str], cap: usize) -> usize {
        let by_cap = hosts.len().div_ceil(cap.max(1));
        let ingress_up = self.ix.roles.ingress;
        let ingress = hosts
            .iter()
            .filter_map(|h| self.ix.obs.host_position(h))
            .filter(|&h| is_ingress_up(&self.ix.hosts[h]))
            .count();
        if ingress_up >= 2 {
            by_cap.max(ingress.div_ceil(ingress_up - 1))
        } else {
            by_cap
        }
    }

    /// The fewest drain waves any schedule of `hosts` needs for the budgets, counted two ways
    /// on the placement observed now (pods that drains move onto hosts not yet drained only
    /// add waves, so both are lower bounds):
    /// - every ready pod of a budget on them is disrupted at least once, by its host's drain,
    ///   and a wave disrupts at most the budget's allowed disruptions;
    /// - hosts whose drains conflict pairwise (together they would take more of some budget
    ///   than it allows) need a wave each: the largest such set found greedily.
    ///
    /// A budget that allows none makes its hosts unsafe alone: not counted here.
    pub fn least_drain_waves(&mut self, hosts: &[&str]) -> usize {
        let positions: Vec<usize> = hosts
            .iter()
            .filter_map(|h| self.ix.obs.host_position(h))
            .collect();
        let wl = self.ix.wl;
        let mut holders: FxHashMap<PdbId, Vec<(usize, u32)>> = FxHashMap::default();
        for (k, &h) in positions.iter().enumerate() {
            for &(b, n) in &self.load(h).pdbs {
                holders.entry(b).or_default().push((k, n));
            }
        }
        let mut by_budget = 0;
        let mut conflicts: Vec<FxHashSet<usize>> = vec![FxHashSet::default(); positions.len()];
        for (&b, held) in &holders {
            let allowed = allowed_disruptions(wl.budget(b));
            if allowed == 0 {
                continue;
            }
            let pods: u32 = held.iter().map(|&(_, n)| n).sum();
            by_budget = by_budget.max(pods.div_ceil(allowed) as usize);
            // Pairs only for budgets of a few hosts each: the bound stays valid without the
            // others, and the cost stays linear in the pods.
            if held.len() > MAX_PAIRS_PER_BUDGET {
                continue;
            }
            for (i, &(a, na)) in held.iter().enumerate() {
                for &(c, nc) in &held[i + 1..] {
                    if na + nc > allowed {
                        conflicts[a].insert(c);
                        conflicts[c].insert(a);
                    }
                }
            }
        }
        by_budget.max(greedy_clique(&conflicts))
    }

    /// Every host on its own, sorted by host id.
    pub fn all(&mut self) -> Vec<HostSafety> {
        let mut order: Vec<usize> = (0..self.ix.hosts.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.ix.hosts[a], &self.ix.hosts[b]);
            (a.id, &a.hostname).cmp(&(b.id, &b.hostname))
        });
        order
            .into_iter()
            .map(|i| {
                let host = &self.ix.hosts[i];
                let findings = self.batch(&[host.hostname.as_str()]).findings;
                HostSafety {
                    host: host.hostname.clone(),
                    roles: roles_of(host),
                    verdict: worst(&findings),
                    findings,
                }
            })
            .collect()
    }
}

/// A batch grown (and shrunk) host by host: what its hosts hold is added to running sums (ready
/// pods per owner, pods per budget, hosts per role, the pods to move), so judging it costs the
/// placement of its pods, not a pass over the cluster. [`Analyzer::batch`] is the same thing
/// for a batch given at once.
#[derive(Default)]
pub struct BatchEval {
    /// Host positions, and names not in the observation, in the order added.
    hosts: Vec<Result<usize, String>>,
    /// Per added host, how to take it out again.
    undo: Vec<Added>,
    owners: FxHashMap<OwnerId, u32>,
    jobs: FxHashMap<OwnerId, u32>,
    pdb_hits: FxHashMap<PdbId, Pair>,
    movers: Vec<Slot>,
    /// Findings of single pods (unmanaged, volumes, several budgets), by host.
    pod_findings: Vec<Finding>,
    /// Ingress hosts in service among the batch.
    ingress: usize,
    /// Drained in waves ([`BatchEval::drained_in_waves`]), not all at once.
    waves: bool,
}

/// What one host added to a [`BatchEval`].
struct Added {
    ingress: bool,
    owners: Vec<OwnerId>,
    jobs: Vec<OwnerId>,
    pdbs: Vec<(PdbId, Pair)>,
    movers: usize,
    pod_findings: usize,
}

impl BatchEval {
    /// A batch whose hosts are drained all at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch whose hosts go out of service together but are drained in waves: each drain
    /// starts once the budgets allow it beside the drains still running (the lock check
    /// judges that, as the Eviction API would), so a budget's allowed disruptions and a
    /// workload's last ready pods are judged host by host here, and what stays out of
    /// service for the whole batch (room for every evicted pod, ingress, roles, Jobs) for
    /// the batch.
    pub fn drained_in_waves() -> Self {
        Self {
            waves: true,
            ..Self::default()
        }
    }

    /// Hosts in the batch, in the order added.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Adds a host (by name) to the batch.
    pub fn add(&mut self, an: &Analyzer<'_>, host: &str) {
        let ix = &an.ix;
        let mut added = Added {
            ingress: false,
            owners: Vec::new(),
            jobs: Vec::new(),
            pdbs: Vec::new(),
            movers: self.movers.len(),
            pod_findings: self.pod_findings.len(),
        };
        let Some(h) = ix.obs.host_position(host) else {
            self.hosts.push(Err(host.to_string()));
            self.undo.push(added);
            return;
        };
        self.hosts.push(Ok(h));
        added.ingress = is_ingress_up(&ix.hosts[h]);
        self.ingress += usize::from(added.ingress);
        let wl = ix.wl;
        let mut hit = |added: &mut Added, b: PdbId, ready: bool| {
            let pair = if ready { Pair(1, 0) } else { Pair(0, 1) };
            *self.pdb_hits.entry(b).or_default() += pair;
            added.pdbs.push((b, pair));
        };
        let mut ids: Vec<PodId> = wl.on_host(host).to_vec();
        ids.sort_unstable();
        for id in ids {
            let Some(s) = Slot::of(wl, id) else { continue };
            let p = || wl.pod(id).expect("an indexed pod");
            match s.class {
                // Skipped by drain; the control plane checks cover static pods.
                Class::Mirror => continue,
                // Never evicted: its volumes stay with it, but it is down while the host is.
                Class::Daemon => {
                    if s.ready {
                        *self.owners.entry(s.owner).or_default() += 1;
                        added.owners.push(s.owner);
                    }
                    // Not evicted, but down with the host: it still spends its budgets.
                    for &b in wl.pdbs_of(id) {
                        hit(&mut added, b, s.ready);
                    }
                    continue;
                }
                Class::Unmanaged => self.pod_findings.push(Finding::unsafe_(
                    pod_subject(p()),
                    "unmanaged pod: the drain deletes it and nothing recreates it".into(),
                )),
                Class::Job => {
                    *self.jobs.entry(s.owner).or_default() += 1;
                    added.jobs.push(s.owner);
                }
                Class::Replicated => {
                    if s.ready {
                        *self.owners.entry(s.owner).or_default() += 1;
                        added.owners.push(s.owner);
                    }
                }
            }
            if s.volumes != 0 {
                volume_findings(p(), s.volumes, host, &mut self.pod_findings);
            }
            let pdbs = wl.pdbs_of(id);
            for &b in pdbs {
                hit(&mut added, b, s.ready);
            }
            if pdbs.len() > 1 {
                let names: Vec<&str> = pdbs
                    .iter()
                    .map(|&b| wl.budget(b).pdb.name.as_str())
                    .collect();
                // The eviction API answers 500 for a pod under several budgets, so a drain
                // would retry it for ever.
                self.pod_findings.push(Finding::unsafe_(
                    pod_subject(p()),
                    format!(
                        "covered by {} PDBs ({}): the eviction API refuses to evict such a pod, so the drain would hang",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            if s.class != Class::Unmanaged && s.volumes & HOST_PATH_PV == 0 {
                self.movers.push(s);
            }
        }
        self.undo.push(added);
    }

    /// Takes the last added host out again.
    pub fn pop(&mut self) {
        let (Some(_), Some(added)) = (self.hosts.pop(), self.undo.pop()) else {
            return;
        };
        fn take<K: std::hash::Hash + Eq, V: std::ops::SubAssign + Default + PartialEq>(
            map: &mut FxHashMap<K, V>,
            k: K,
            v: V,
        ) {
            if let Some(x) = map.get_mut(&k) {
                *x -= v;
                if *x == V::default() {
                    map.remove(&k);
                }
            }
        }
        self.ingress -= usize::from(added.ingress);
        for o in added.owners {
            take(&mut self.owners, o, 1);
        }
        for o in added.jobs {
            take(&mut self.jobs, o, 1);
        }
        for (b, pair) in added.pdbs {
            take(&mut self.pdb_hits, b, pair);
        }
        self.movers.truncate(added.movers);
        self.pod_findings.truncate(added.pod_findings);
    }

    /// Why adding `host` surely makes the batch unsafe, if it does: a cheap test against the
    /// running sums, before the full [`BatchEval::evaluate`]. It rejects only what the full
    /// analysis would (a budget's ready pods beyond its allowed disruptions, a workload's last
    /// ready pods, the last ingress host), so it changes how many analyses a planner makes, never
    /// its batches. The words do not depend on the host, so that causes can be counted; the
    /// first budget, then the first workload, so they do not depend on hashing.
    pub fn surely_unsafe(&self, an: &mut Analyzer<'_>, host: &str) -> Option<String> {
        let h = an.ix.obs.host_position(host)?;
        let ingress_up = an.ix.roles.ingress;
        let wl = an.ix.wl;
        let l = an.load(h);
        let over_budget = l
            .pdbs
            .iter()
            .filter(|&&(b, n)| {
                let hits = if self.waves {
                    0
                } else {
                    self.pdb_hits.get(&b).map_or(0, |p| p.0)
                };
                hits + n > allowed_disruptions(wl.budget(b))
            })
            .min_by_key(|&&(b, _)| b);
        if let Some(&(b, _)) = over_budget {
            let pdb = &wl.budget(b).pdb;
            let allowed = allowed_disruptions(wl.budget(b));
            return Some(format!(
                "pdb {}/{} allows {allowed} disruption{}",
                pdb.namespace,
                pdb.name,
                if allowed == 1 { "" } else { "s" }
            ));
        }
        let last = l
            .owners
            .iter()
            .filter(|&&(o, n)| {
                let here = if self.waves {
                    0
                } else {
                    self.owners.get(&o).copied().unwrap_or(0)
                };
                here + n >= wl.owner(o).ready
            })
            .map(|&(o, _)| {
                let o = wl.owner(o);
                let name = format!("{} {}/{}", o.kind.to_lowercase(), o.namespace, o.name);
                (name, o.ready)
            })
            .min();
        if let Some((name, ready)) = last {
            return Some(format!(
                "{name} would have none of its {ready} ready pods left"
            ));
        }
        if l.ingress && self.ingress + 1 >= ingress_up {
            return Some(format!(
                "no ingress host would remain ({ingress_up} available)"
            ));
        }
        None
    }

    /// The batch's findings and verdict.
    pub fn evaluate(&self, an: &mut Analyzer<'_>) -> BatchSafety {
        let ix = &an.ix;
        let wl = ix.wl;
        let mut out: Vec<Finding> = self
            .hosts
            .iter()
            .filter_map(|h| h.as_ref().err())
            .map(|h| Finding::unsafe_(format!("host {h}"), "not in the observation".into()))
            .collect();
        let batch: Vec<usize> = self
            .hosts
            .iter()
            .filter_map(|h| h.as_ref().ok().copied())
            .collect();
        let scope = if self.hosts.len() > 1 {
            "these hosts"
        } else {
            "this host"
        };
        role_findings(ix, &batch, &mut out);
        out.extend(self.pod_findings.iter().cloned());

        for (&owner, &n) in &self.jobs {
            let o = wl.owner(owner);
            out.push(Finding::unsafe_(
                format!("job {}/{}", o.namespace, o.name),
                format!(
                    "running job: {} on {scope} would be killed and started again",
                    plural(n, "pod")
                ),
            ));
        }

        if self.waves {
            // Each drain on its own: only the host's own pods count.
            for added in &self.undo {
                let mut owners: FxHashMap<OwnerId, u32> = FxHashMap::default();
                for &o in &added.owners {
                    *owners.entry(o).or_default() += 1;
                }
                let mut pdb_hits: FxHashMap<PdbId, Pair> = FxHashMap::default();
                for &(b, pair) in &added.pdbs {
                    *pdb_hits.entry(b).or_default() += pair;
                }
                disruption_findings(wl, &owners, &pdb_hits, "this host", &mut out);
            }
        } else {
            disruption_findings(wl, &self.owners, &self.pdb_hits, scope, &mut out);
        }

        // Sorted, so that the placement can test membership by binary search.
        let mut sorted = batch;
        sorted.sort_unstable();
        let batch = sorted.as_slice();
        let mut movers = self.movers.clone();
        for s in an.place.place(&an.ix, &mut movers, batch) {
            let p = an.ix.wl.pod(s.pod).expect("an indexed pod");
            let mut reason = format!(
                "needs cpu {}m, memory {}Mi: fits on no remaining host",
                s.cpu, s.mem
            );
            if !an.place.any_eligible(&an.ix, &s, batch) {
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
        BatchSafety {
            hosts: self
                .hosts
                .iter()
                .map(|h| match h {
                    Ok(i) => an.ix.hosts[*i].hostname.clone(),
                    Err(name) => name.clone(),
                })
                .collect(),
            verdict: worst(&out),
            findings: out,
        }
    }
}

/// What taking these pods down at once does to their workloads' last ready pods and to their
/// budgets: `owners` counts the ready pods of each owner, `pdb_hits` the ready and unready
/// pods of each budget.
fn disruption_findings(
    wl: &Workloads,
    owners: &FxHashMap<OwnerId, u32>,
    pdb_hits: &FxHashMap<PdbId, Pair>,
    scope: &str,
    out: &mut Vec<Finding>,
) {
    for (&owner, &ready_here) in owners {
        let o = wl.owner(owner);
        if o.ready > ready_here {
            continue;
        }
        let desired = wl
            .workload(&o.namespace, &o.kind, &o.name)
            .map(|w| format!(" of {} desired", w.replicas))
            .unwrap_or_default();
        let reason = if o.kind == "DaemonSet" {
            format!("no ready pod would remain: all {ready_here} ready{desired} run on {scope}")
        } else {
            format!("no ready replica would remain: all {ready_here} ready{desired} are on {scope}")
        };
        out.push(Finding::unsafe_(
            format!("{} {}/{}", o.kind.to_lowercase(), o.namespace, o.name),
            reason,
        ));
    }

    for (&b, &Pair(ready, unready)) in pdb_hits {
        let bud = Budget::of(wl.budget(b));
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
}

/// The waves of a batch's drains, each the hosts whose drains run together, judged all at once.
#[derive(Default)]
struct Waves(Vec<BatchEval>);

impl Waves {
    /// The first wave `host`'s drain fits beside, if any.
    fn fit(&self, an: &mut Analyzer<'_>, host: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|w| w.surely_unsafe(an, host).is_none())
    }

    /// Adds `host` to the first wave it fits, or to a new one; returns the wave.
    fn add(&mut self, an: &mut Analyzer<'_>, host: &str) -> usize {
        let k = self.fit(an, host).unwrap_or(self.0.len());
        if k == self.0.len() {
            self.0.push(BatchEval::new());
        }
        self.0[k].add(an, host);
        k
    }
}

/// A worker batch grown by [`grow_batch`].
#[derive(Clone, Debug)]
pub struct Grown {
    /// Positions in the candidates, in the order taken (the seed first).
    pub taken: Vec<usize>,
    /// The verdict of the batch as taken.
    pub verdict: Verdict,
    /// Why candidates could not join, with how many each.
    pub refused: std::collections::BTreeMap<String, usize>,
    /// The full analysis refused `max_probes` candidates: the others were not tried.
    pub probes_exhausted: bool,
}

/// Grows a batch drained in waves ([`BatchEval::drained_in_waves`]) from `candidates[0]`
/// (judged safe alone by the caller: `seed_verdict`) with the candidates that follow, up to
/// `cap` hosts. In passes: each pass takes the candidates whose drain fits beside one of the
/// batch's waves so far and opens at most one new wave, so that the batch needs as few waves
/// of drains as this greedy choice finds (a wave costs a drain's time; a host more in the
/// batch saves a whole kubelet and unlock later). A candidate the batch refuses (budgets
/// alone, room for the evicted pods, roles) stays refused: the batch only grows. The full
/// analysis stops after `max_probes` refusals.
pub fn grow_batch(
    an: &mut Analyzer<'_>,
    candidates: &[&str],
    seed_verdict: Verdict,
    cap: usize,
    max_probes: usize,
) -> Grown {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Open,
        Taken,
        Refused,
    }
    let mut out = Grown {
        taken: Vec::new(),
        verdict: seed_verdict,
        refused: std::collections::BTreeMap::new(),
        probes_exhausted: false,
    };
    let Some(&seed) = candidates.first() else {
        return out;
    };
    let mut batch = BatchEval::drained_in_waves();
    batch.add(an, seed);
    let mut waves = Waves::default();
    waves.add(an, seed);
    let mut state = vec![State::Open; candidates.len()];
    state[0] = State::Taken;
    out.taken.push(0);
    let mut failed = 0;
    'passes: loop {
        let mut opened = false;
        let mut grew = false;
        for (j, &cand) in candidates.iter().enumerate().skip(1) {
            if out.taken.len() >= cap.max(1) || failed >= max_probes {
                out.probes_exhausted = failed >= max_probes;
                break 'passes;
            }
            if state[j] != State::Open {
                continue;
            }
            let fits = waves.fit(an, cand).is_some();
            if !fits && opened {
                continue; // A wave more only in the next pass.
            }
            if let Some(why) = batch.surely_unsafe(an, cand) {
                *out.refused.entry(why).or_default() += 1;
                state[j] = State::Refused;
                continue;
            }
            batch.add(an, cand);
            let result = batch.evaluate(an);
            if result.verdict == Verdict::Unsafe {
                batch.pop();
                failed += 1;
                let why = result
                    .findings
                    .first()
                    .map_or_else(|| "unsafe".to_string(), Finding::to_string);
                *out.refused.entry(why).or_default() += 1;
                state[j] = State::Refused;
                continue;
            }
            out.verdict = result.verdict;
            state[j] = State::Taken;
            out.taken.push(j);
            grew = true;
            opened |= !fits;
            waves.add(an, cand);
        }
        if !grew {
            break;
        }
    }
    out
}

/// Budgets held by more hosts than this add to [`Analyzer::least_drain_waves`]'s count of
/// pods, not to its pairs.
const MAX_PAIRS_PER_BUDGET: usize = 64;

/// A large set of pairwise adjacent vertices: grown greedily from each of the best connected
/// few, the most connected candidates first.
fn greedy_clique(adj: &[FxHashSet<usize>]) -> usize {
    let mut order: Vec<usize> = (0..adj.len()).collect();
    order.sort_by_key(|&v| (Reverse(adj[v].len()), v));
    let mut best = usize::from(!adj.is_empty());
    for &seed in order.iter().take(8) {
        let mut clique = vec![seed];
        for &v in &order {
            if v != seed && clique.iter().all(|c| adj[v].contains(c)) {
                clique.push(v);
            }
        }
        best = best.max(clique.len());
    }
    best
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

/// A PDB with its budget as the disruption controller computes it now.
struct Budget<'a> {
    pdb: &'a PdbInfo,
    total: u32,
    healthy: u32,
    desired: u32,
    allowed: u32,
}

impl<'a> Budget<'a> {
    fn of(b: &'a kup_types::workloads::Budget) -> Self {
        Budget {
            pdb: &b.pdb,
            total: b.total,
            healthy: b.healthy,
            desired: b.desired_healthy(),
            allowed: b.allowed_disruptions(),
        }
    }
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

/// How many pods a budget lets go now: its healthy pods beyond those it must keep.
pub(crate) fn allowed_disruptions(b: &kup_types::workloads::Budget) -> u32 {
    b.allowed_disruptions()
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
fn is_ingress_up(h: &HostInfo) -> bool {
    h.in_service() && has_role(h, "ingress")
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

/// A pod on a host, with what the analysis needs.
#[derive(Clone, Copy)]
struct Slot {
    pod: PodId,
    owner: OwnerId,
    class: Class,
    ready: bool,
    /// `EMPTY_DIR | HOST_PATH | HOST_PATH_PV`.
    volumes: u8,
    /// No node selector and no toleration: schedulable on any untainted host.
    plain: bool,
    cpu: u32,
    mem: u32,
}

impl Slot {
    fn of(wl: &Workloads, id: PodId) -> Option<Slot> {
        let p = wl.pod(id)?;
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
        Some(Slot {
            pod: id,
            owner: wl.owner_of(id)?,
            class,
            ready: p.ready,
            volumes,
            plain: p.node_selector.is_empty() && p.tolerations.is_empty(),
            cpu: p.requests.cpu_millis,
            mem: p.requests.memory_mib,
        })
    }
}

/// What one host adds to a batch's running sums, for [`BatchEval::surely_unsafe`]: ready pods
/// per budget and per owner (as [`BatchEval::add`] counts them), and whether it is an ingress
/// host in service.
struct Load {
    pdbs: Vec<(PdbId, u32)>,
    owners: Vec<(OwnerId, u32)>,
    ingress: bool,
}

impl Load {
    fn of(ix: &Index<'_>, h: &HostInfo) -> Load {
        let mut pdbs: FxHashMap<PdbId, u32> = FxHashMap::default();
        let mut owners: FxHashMap<OwnerId, u32> = FxHashMap::default();
        for &id in ix.wl.on_host(&h.hostname) {
            let Some(s) = Slot::of(ix.wl, id).filter(|s| s.ready && s.class != Class::Mirror)
            else {
                continue;
            };
            for &b in ix.wl.pdbs_of(id) {
                *pdbs.entry(b).or_default() += 1;
            }
            if matches!(s.class, Class::Daemon | Class::Replicated) {
                *owners.entry(s.owner).or_default() += 1;
            }
        }
        let mut pdbs: Vec<(PdbId, u32)> = pdbs.into_iter().collect();
        let mut owners: Vec<(OwnerId, u32)> = owners.into_iter().collect();
        pdbs.sort_unstable();
        owners.sort_unstable();
        Load {
            pdbs,
            owners,
            ingress: is_ingress_up(h),
        }
    }
}

/// What the analysis looks up about the hosts, built once per [`Analyzer`]: hosts are known by
/// their position in the observation.
struct Index<'a> {
    obs: &'a Observation,
    wl: &'a Workloads,
    hosts: &'a [HostInfo],
    nodes: Vec<Option<&'a NodeInfo>>,
    roles: RoleCounts,
}

impl<'a> Index<'a> {
    fn new(obs: &'a Observation, wl: &'a Workloads) -> Self {
        let hosts = obs.hosts.as_slice();
        let nodes = hosts.iter().map(|h| obs.node(&h.hostname)).collect();
        let mut roles = RoleCounts::default();
        for h in hosts {
            let up = h.in_service();
            roles.controllers += usize::from(up && is_controller(h));
            roles.workers += usize::from(up && is_worker(h));
            roles.ingress += usize::from(is_ingress_up(h));
            roles.storage += usize::from(up && is_storage(h));
            if has_role(h, "etcd") {
                roles.etcd_members += 1;
                roles.etcd_healthy += usize::from(up);
            }
        }
        Index {
            obs,
            wl,
            hosts,
            nodes,
            roles,
        }
    }
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

/// Ready and unready pods, summed per budget.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Pair(u32, u32);

impl std::ops::AddAssign for Pair {
    fn add_assign(&mut self, o: Pair) {
        self.0 += o.0;
        self.1 += o.1;
    }
}

impl std::ops::SubAssign for Pair {
    fn sub_assign(&mut self, o: Pair) {
        self.0 -= o.0;
        self.1 -= o.1;
    }
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
            .filter(|&&h| ix.hosts[h].in_service() && pred(&ix.hosts[h]))
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
        let host = &ix.hosts[h];
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
/// batch an [`Analyzer`] judges.
struct Placement<'a> {
    free: Vec<(u64, u64)>,
    schedulable: Vec<bool>,
    /// Whether the host has a `NoSchedule`/`NoExecute` taint.
    tainted: Vec<bool>,
    /// Schedulable hosts, most free CPU first, then by host order.
    order: BTreeSet<(Reverse<u64>, usize)>,
    /// `(label, value)` → schedulable hosts carrying it, ascending; built the first time a pod
    /// with a node selector needs it.
    labels: OnceLock<FxHashMap<&'a str, FxHashMap<&'a str, Vec<usize>>>>,
}

impl<'a> Placement<'a> {
    fn new(ix: &Index<'a>) -> Self {
        let n = ix.hosts.len();
        let mut free = Vec::with_capacity(n);
        let mut schedulable = Vec::with_capacity(n);
        let mut tainted = Vec::with_capacity(n);
        let mut order = Vec::with_capacity(n);
        for (h, host) in ix.hosts.iter().enumerate() {
            // Every pod there uses room, DaemonSet and mirror pods included.
            let (cpu, mem) = ix.wl.used(&host.hostname);
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
            if ok {
                order.push((Reverse(f.0), h));
            }
        }
        order.sort_unstable();
        Placement {
            free,
            schedulable,
            tainted,
            order: order.into_iter().collect(),
            labels: OnceLock::new(),
        }
    }

    fn labels(&self, ix: &Index<'a>) -> &FxHashMap<&'a str, FxHashMap<&'a str, Vec<usize>>> {
        self.labels.get_or_init(|| {
            let mut labels: FxHashMap<&str, FxHashMap<&str, Vec<usize>>> = FxHashMap::default();
            for (h, node) in ix.nodes.iter().enumerate() {
                if let (true, Some(node)) = (self.schedulable[h], node) {
                    for (k, v) in &node.labels {
                        labels.entry(k).or_default().entry(v).or_default().push(h);
                    }
                }
            }
            labels
        })
    }

    /// Node selector and taints; only for schedulable hosts.
    fn eligible(&self, ix: &Index<'_>, s: &Slot, h: usize) -> bool {
        if s.plain {
            return !self.tainted[h];
        }
        let p = ix.wl.pod(s.pod).expect("an indexed pod");
        let n = ix.nodes[h].expect("schedulable has a node");
        selects(p, n) && tolerates(p, n)
    }

    /// The hosts carrying the rarest pair of the pod's node selector: `Ok(None)` when the
    /// selector is empty (every host), `Err(())` when some pair is on no schedulable host.
    fn candidates<'s>(&'s self, ix: &Index<'a>, p: &PodInfo) -> Result<Option<&'s [usize]>, ()> {
        let mut shortest: Option<&[usize]> = None;
        if p.node_selector.is_empty() {
            return Ok(None);
        }
        let labels = self.labels(ix);
        for (k, v) in &p.node_selector {
            let l = labels
                .get(k.as_str())
                .and_then(|vs| vs.get(v.as_str()))
                .ok_or(())?;
            if shortest.is_none_or(|s| l.len() < s.len()) {
                shortest = Some(l);
            }
        }
        Ok(shortest)
    }

    /// Whether any remaining host matches the pod's selector and tolerations, capacity aside.
    fn any_eligible(&self, ix: &Index<'a>, s: &Slot, batch: &[usize]) -> bool {
        let ok = |h: usize| {
            self.schedulable[h] && batch.binary_search(&h).is_err() && self.eligible(ix, s, h)
        };
        match self.candidates(ix, ix.wl.pod(s.pod).expect("an indexed pod")) {
            Err(()) => false,
            Ok(Some(list)) => list.iter().any(|&h| ok(h)),
            Ok(None) => (0..ix.hosts.len()).any(ok),
        }
    }

    /// First-fit decreasing: largest request first, onto the eligible host with the most free
    /// CPU that has room. `batch` is sorted. Returns the pods that fit nowhere; leaves `self`
    /// as it found it.
    fn place(&mut self, ix: &Index<'a>, pods: &mut [Slot], batch: &[usize]) -> Vec<Slot> {
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
                let p = ix.wl.pod(s.pod).expect("an indexed pod");
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
    fn find(&self, ix: &Index<'a>, s: &Slot, need: (u64, u64), batch: &[usize]) -> Option<usize> {
        let fits = |h: usize| self.free[h].0 >= need.0 && self.free[h].1 >= need.1;
        // `?`: a selector pair no schedulable host carries.
        if !s.plain
            && let Some(list) = self
                .candidates(ix, ix.wl.pod(s.pod).expect("an indexed pod"))
                .ok()?
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
