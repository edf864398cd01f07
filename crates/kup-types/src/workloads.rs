//! The workload side of a cluster, indexed: pods, the controllers that own them and the
//! PodDisruptionBudgets that select them, with the counts the safety analysis reads (pods and
//! requested capacity per host, ready pods per owner, healthy pods per budget).
//!
//! A driver keeps one current as the cluster changes (a pod placed, moved, deleted, ready or
//! not), each change costing what it touches, so judging a batch of hosts costs what those
//! hosts hold, not what the cluster holds. The rules that read it live in `kup-core`; this is
//! only the data and its bookkeeping.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{PdbInfo, PodInfo, PodPhase, WorkloadInfo};

/// A pod's place in the index; stable while the pod exists.
pub type PodId = u32;
/// An owner (namespace, kind, name) by number.
pub type OwnerId = u32;
/// A PodDisruptionBudget by number, in the order it was given.
pub type PdbId = u32;

type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
struct Entry {
    pod: PodInfo,
    owner: OwnerId,
    set: u32,
}

/// Pods and requested capacity on one host.
#[derive(Clone, Debug, Default)]
pub struct HostLoad {
    pub pods: Vec<PodId>,
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

/// An owner and its ready pods (on a node) over the whole cluster.
#[derive(Clone, Debug)]
pub struct Owner {
    pub namespace: String,
    /// `Deployment`, `DaemonSet`, ...; `Pod` for an unmanaged pod, `Node` for a mirror pod.
    pub kind: String,
    pub name: String,
    pub ready: u32,
}

/// A PodDisruptionBudget and the pods it selects now.
#[derive(Clone, Debug)]
pub struct Budget {
    pub pdb: PdbInfo,
    /// Pods selected.
    pub total: u32,
    /// Of those, ready.
    pub healthy: u32,
}

impl Budget {
    /// The ready pods the budget must keep, as the disruption controller computes it:
    /// `maxUnavailable` wins if (invalidly) both are set.
    pub fn desired_healthy(&self) -> u32 {
        match (self.pdb.max_unavailable, self.pdb.min_available) {
            (Some(m), _) => self.total.saturating_sub(m),
            (None, Some(m)) => m,
            (None, None) => 0,
        }
    }

    /// How many pods the budget lets go now: its ready pods beyond those it must keep.
    pub fn allowed_disruptions(&self) -> u32 {
        self.healthy.saturating_sub(self.desired_healthy())
    }
}

/// Pods of one namespace with one label set, and the budgets selecting them (computed once per
/// set: the pods of a workload share theirs).
#[derive(Clone, Debug)]
struct LabelSet {
    pdbs: Vec<PdbId>,
}

#[derive(Clone, Debug, Default)]
pub struct Workloads {
    pods: Vec<Option<Entry>>,
    free: Vec<PodId>,
    len: usize,
    hosts: FxHashMap<String, HostLoad>,
    owners: Vec<Owner>,
    owner_ids: FxHashMap<(String, String, String), OwnerId>,
    sets: Vec<LabelSet>,
    /// The labels are the ones every pod of the set shares.
    set_ids: FxHashMap<(String, Arc<Labels>), u32>,
    budgets: Vec<Budget>,
    /// `(namespace, key, value)` → budgets whose selector has that pair.
    postings: FxHashMap<(String, String, String), Vec<PdbId>>,
    /// Budgets with an empty selector, by namespace (they select every pod there).
    select_all: FxHashMap<String, Vec<PdbId>>,
    workloads: Vec<WorkloadInfo>,
    workload_ids: FxHashMap<(String, String, String), usize>,
}

const NO_PODS: &[PodId] = &[];

impl Workloads {
    /// An index of `pods`, owned by `workloads`, under `pdbs`.
    pub fn new(
        pods: impl IntoIterator<Item = PodInfo>,
        workloads: Vec<WorkloadInfo>,
        pdbs: Vec<PdbInfo>,
    ) -> Self {
        let mut w = Workloads::default();
        for (b, pdb) in pdbs.into_iter().enumerate() {
            let b = PdbId::try_from(b).expect("fewer than 2^32 budgets");
            if pdb.selector.is_empty() {
                w.select_all
                    .entry(pdb.namespace.clone())
                    .or_default()
                    .push(b);
            }
            for (k, v) in &pdb.selector {
                w.postings
                    .entry((pdb.namespace.clone(), k.clone(), v.clone()))
                    .or_default()
                    .push(b);
            }
            w.budgets.push(Budget {
                pdb,
                total: 0,
                healthy: 0,
            });
        }
        w.set_workloads(workloads);
        for p in pods {
            w.insert(p);
        }
        w.shrink_to_fit();
        w
    }

    /// Makes room for `more` pods at once, so a list built pod by pod never holds its old
    /// and its doubled copy together.
    pub fn reserve(&mut self, more: usize) {
        self.pods.reserve(more.saturating_sub(self.free.len()));
    }

    /// Gives back the room the lists grew into beyond what they hold (the pod list doubles
    /// as it grows: at 150,000 pods that is up to 30 MB).
    pub fn shrink_to_fit(&mut self) {
        self.pods.shrink_to_fit();
        self.free.shrink_to_fit();
        self.owners.shrink_to_fit();
        self.sets.shrink_to_fit();
    }

    /// Adds a pod; its node, readiness and requests count at once.
    pub fn insert(&mut self, mut pod: PodInfo) -> PodId {
        let owner = self.owner_id(&pod);
        let set = self.set_id(&mut pod);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                PodId::try_from(self.pods.len() - 1).expect("fewer than 2^32 pods")
            }
        };
        self.count(&pod, owner, set, id, true);
        self.pods[id as usize] = Some(Entry { pod, owner, set });
        self.len += 1;
        id
    }

    /// Puts a pod at a given id (replacing the pod there, if any): for replaying a journal
    /// that recorded ids.
    pub fn insert_at(&mut self, id: PodId, mut pod: PodInfo) {
        self.remove(id);
        let i = id as usize;
        if i >= self.pods.len() {
            let old = self.pods.len();
            self.pods.resize(i + 1, None);
            self.free.extend((old..i).map(|f| f as PodId).rev());
        }
        self.free.retain(|&f| f != id);
        let owner = self.owner_id(&pod);
        let set = self.set_id(&mut pod);
        self.count(&pod, owner, set, id, true);
        self.pods[i] = Some(Entry { pod, owner, set });
        self.len += 1;
    }

    /// Deletes a pod.
    pub fn remove(&mut self, id: PodId) -> Option<PodInfo> {
        let e = self.pods.get_mut(id as usize)?.take()?;
        self.count(&e.pod, e.owner, e.set, id, false);
        self.free.push(id);
        self.len -= 1;
        Some(e.pod)
    }

    /// Places a pod on `node`, or leaves it pending (`None`, not ready). A placed pod is
    /// `Running`.
    pub fn set_node(&mut self, id: PodId, node: Option<String>) {
        self.change(id, |p| {
            p.phase = if node.is_some() {
                PodPhase::Running
            } else {
                PodPhase::Pending
            };
            if node.is_none() {
                p.ready = false;
            }
            p.node = node;
        });
    }

    pub fn set_ready(&mut self, id: PodId, ready: bool) {
        self.change(id, |p| p.ready = ready && p.node.is_some());
    }

    /// Any other change to a pod, its counts kept right (its owner and labels stay).
    fn change(&mut self, id: PodId, f: impl FnOnce(&mut PodInfo)) {
        // Taken out while counted, so the pod is never copied.
        let Some(mut e) = self.pods.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.count(&e.pod, e.owner, e.set, id, false);
        f(&mut e.pod);
        self.count(&e.pod, e.owner, e.set, id, true);
        self.pods[id as usize] = Some(e);
    }

    /// Adds (`add`) or takes away a pod's share of every count.
    fn count(&mut self, p: &PodInfo, owner: OwnerId, set: u32, id: PodId, add: bool) {
        let ready_on_node = p.ready && p.node.is_some();
        if ready_on_node {
            let r = &mut self.owners[owner as usize].ready;
            *r = if add { *r + 1 } else { *r - 1 };
        }
        for &b in &self.sets[set as usize].pdbs {
            let bud = &mut self.budgets[b as usize];
            if add {
                bud.total += 1;
                bud.healthy += u32::from(p.ready);
            } else {
                bud.total -= 1;
                bud.healthy -= u32::from(p.ready);
            }
        }
        if let Some(node) = &p.node {
            let load = self.hosts.entry(node.clone()).or_default();
            let (cpu, mem) = (
                u64::from(p.requests.cpu_millis),
                u64::from(p.requests.memory_mib),
            );
            if add {
                load.pods.push(id);
                load.cpu_millis += cpu;
                load.memory_mib += mem;
            } else {
                if let Some(i) = load.pods.iter().position(|&q| q == id) {
                    load.pods.swap_remove(i);
                }
                load.cpu_millis -= cpu;
                load.memory_mib -= mem;
            }
        }
    }

    fn owner_id(&mut self, p: &PodInfo) -> OwnerId {
        let key = (p.namespace.clone(), p.owner_kind.clone(), p.owner.clone());
        if let Some(&id) = self.owner_ids.get(&key) {
            return id;
        }
        let id = OwnerId::try_from(self.owners.len()).expect("fewer than 2^32 owners");
        self.owners.push(Owner {
            namespace: key.0.clone(),
            kind: key.1.clone(),
            name: key.2.clone(),
            ready: 0,
        });
        self.owner_ids.insert(key, id);
        id
    }

    /// The label set of a pod, matched against every budget the first time it is seen:
    /// through the postings of its label pairs, so only budgets that share a pair are tried.
    /// The pod is given the set's copy of its labels.
    fn set_id(&mut self, p: &mut PodInfo) -> u32 {
        let key = (p.namespace.clone(), p.labels.clone());
        if let Some((shared, &id)) = self.set_ids.get_key_value(&key) {
            p.labels = shared.1.clone();
            return id;
        }
        let mut pdbs: Vec<PdbId> = self
            .select_all
            .get(&p.namespace)
            .cloned()
            .unwrap_or_default();
        for (k, v) in p.labels.iter() {
            let Some(list) = self
                .postings
                .get(&(p.namespace.clone(), k.clone(), v.clone()))
            else {
                continue;
            };
            for &b in list {
                let sel = &self.budgets[b as usize].pdb.selector;
                if sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
                    pdbs.push(b);
                }
            }
        }
        pdbs.sort_unstable();
        pdbs.dedup();
        let id = u32::try_from(self.sets.len()).expect("fewer than 2^32 label sets");
        self.sets.push(LabelSet { pdbs });
        self.set_ids.insert(key, id);
        id
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pod(&self, id: PodId) -> Option<&PodInfo> {
        self.pods.get(id as usize)?.as_ref().map(|e| &e.pod)
    }

    /// Every pod, by id.
    pub fn iter(&self) -> impl Iterator<Item = (PodId, &PodInfo)> {
        self.pods
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as PodId, &e.pod)))
    }

    /// The pods on a host (in no particular order).
    pub fn on_host(&self, host: &str) -> &[PodId] {
        self.hosts.get(host).map_or(NO_PODS, |l| &l.pods)
    }

    /// CPU (millicores) and memory (MiB) the pods on a host request.
    pub fn used(&self, host: &str) -> (u64, u64) {
        self.hosts
            .get(host)
            .map_or((0, 0), |l| (l.cpu_millis, l.memory_mib))
    }

    pub fn owner_of(&self, id: PodId) -> Option<OwnerId> {
        self.pods.get(id as usize)?.as_ref().map(|e| e.owner)
    }

    pub fn owner(&self, o: OwnerId) -> &Owner {
        &self.owners[o as usize]
    }

    /// The budgets selecting a pod, ascending.
    pub fn pdbs_of(&self, id: PodId) -> &[PdbId] {
        match self.pods.get(id as usize) {
            Some(Some(e)) => &self.sets[e.set as usize].pdbs,
            _ => &[],
        }
    }

    pub fn budget(&self, b: PdbId) -> &Budget {
        &self.budgets[b as usize]
    }

    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    /// The controller record of an owner, if it has one.
    pub fn workload(&self, namespace: &str, kind: &str, name: &str) -> Option<&WorkloadInfo> {
        let key = (namespace.to_string(), kind.to_string(), name.to_string());
        self.workload_ids.get(&key).map(|&i| &self.workloads[i])
    }

    pub fn workloads(&self) -> &[WorkloadInfo] {
        &self.workloads
    }

    /// Replaces the controllers' records (their desired replicas).
    pub fn set_workloads(&mut self, workloads: Vec<WorkloadInfo>) {
        self.workload_ids = workloads
            .iter()
            .enumerate()
            .map(|(i, wl)| ((wl.namespace.clone(), wl.kind.clone(), wl.name.clone()), i))
            .collect();
        self.workloads = workloads;
    }
}

/// A cluster listed at once: the hosts' view and every pod, owner and budget, as plain lists.
/// Tests and tools build one and index it; drivers keep the pods indexed instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub obs: crate::Observation,
    pub pods: Vec<PodInfo>,
    pub workloads: Vec<WorkloadInfo>,
    pub pdbs: Vec<PdbInfo>,
}

impl Listing {
    /// `obs` with every pod, owner and budget of `wl`.
    pub fn of(obs: crate::Observation, wl: &Workloads) -> Listing {
        Listing {
            obs,
            pods: wl.iter().map(|(_, p)| p.clone()).collect(),
            workloads: wl.workloads().to_vec(),
            pdbs: wl.budgets().iter().map(|b| b.pdb.clone()).collect(),
        }
    }

    /// The pods indexed, as a driver would keep them.
    pub fn index(&self) -> Workloads {
        Workloads::new(
            self.pods.iter().cloned(),
            self.workloads.clone(),
            self.pdbs.clone(),
        )
    }
}

impl std::ops::Deref for Listing {
    type Target = crate::Observation;
    fn deref(&self) -> &crate::Observation {
        &self.obs
    }
}

impl std::ops::DerefMut for Listing {
    fn deref_mut(&mut self) -> &mut crate::Observation {
        &mut self.obs
    }
}

/// As stored: the pods with their ids, the workloads, the budgets; the counts are rebuilt.
#[derive(Deserialize)]
struct Stored {
    pods: Vec<(PodId, PodInfo)>,
    workloads: Vec<WorkloadInfo>,
    pdbs: Vec<PdbInfo>,
}

/// A sequence written straight from an iterator (a copy of 150,000 pods is 100 MB).
struct Seq<I>(std::cell::RefCell<Option<I>>);

impl<I: Iterator<Item = T>, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.0.borrow_mut().take().expect("serialised once");
        s.collect_seq(items)
    }
}

impl Serialize for Workloads {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Workloads", 3)?;
        st.serialize_field("pods", &Seq(std::cell::RefCell::new(Some(self.iter()))))?;
        st.serialize_field("workloads", &self.workloads)?;
        st.serialize_field(
            "pdbs",
            &Seq(std::cell::RefCell::new(Some(
                self.budgets.iter().map(|b| &b.pdb),
            ))),
        )?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Workloads {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(d)?;
        let mut w = Workloads::new(Vec::new(), stored.workloads, stored.pdbs);
        let top = stored.pods.iter().map(|(i, _)| *i + 1).max().unwrap_or(0);
        w.pods = vec![None; top as usize];
        for (id, mut pod) in stored.pods {
            if w.pods[id as usize].is_some() {
                return Err(serde::de::Error::custom(format!(
                    "pod id {id} is used twice"
                )));
            }
            let owner = w.owner_id(&pod);
            let set = w.set_id(&mut pod);
            w.count(&pod, owner, set, id, true);
            w.pods[id as usize] = Some(Entry { pod, owner, set });
            w.len += 1;
        }
        w.free = (0..top)
            .rev()
            .filter(|&i| w.pods[i as usize].is_none())
            .collect();
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Capacity;

    fn pod(name: &str, node: Option<&str>, app: &str, ready: bool) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: name.into(),
            node: node.map(str::to_string),
            ready,
            phase: PodPhase::Running,
            owner_kind: "Deployment".into(),
            owner: app.into(),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]).into(),
            volumes: Vec::new(),
            requests: Capacity {
                cpu_millis: 100,
                memory_mib: 10,
            },
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }

    fn pdb(name: &str, selector: &[(&str, &str)]) -> PdbInfo {
        PdbInfo {
            namespace: "ns".into(),
            name: name.into(),
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            min_available: Some(1),
            max_unavailable: None,
            unhealthy_pod_eviction_policy: None,
        }
    }

    /// Every count equals what a recount from scratch gives, after any changes.
    fn assert_counts(w: &Workloads) {
        let fresh = Workloads::new(
            w.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
            w.workloads.clone(),
            w.budgets.iter().map(|b| b.pdb.clone()).collect(),
        );
        for (b, (x, y)) in w.budgets.iter().zip(&fresh.budgets).enumerate() {
            assert_eq!((x.total, x.healthy), (y.total, y.healthy), "budget {b}");
        }
        for o in &w.owners {
            let ready = fresh
                .owners
                .iter()
                .find(|f| (&f.namespace, &f.kind, &f.name) == (&o.namespace, &o.kind, &o.name))
                .map_or(0, |f| f.ready);
            assert_eq!(o.ready, ready, "owner {}", o.name);
        }
        for (host, load) in &w.hosts {
            let mut a = load.pods.clone();
            let mut b = fresh.on_host(host).to_vec();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a.len(), b.len(), "{host}");
            assert_eq!(w.used(host), fresh.used(host), "{host}");
        }
    }

    #[test]
    fn counts_follow_every_change() {
        let mut w = Workloads::new(
            vec![
                pod("a-0", Some("h1"), "a", true),
                pod("a-1", Some("h2"), "a", true),
                pod("b-0", None, "b", false),
            ],
            Vec::new(),
            vec![
                pdb("all", &[]),
                pdb("a", &[("app", "a")]),
                pdb("none", &[("app", "z")]),
            ],
        );
        assert_eq!(w.pdbs_of(0), &[0, 1]);
        assert_eq!(w.pdbs_of(2), &[0]);
        assert_eq!((w.budget(1).total, w.budget(1).healthy), (2, 2));
        assert_eq!(w.owner(w.owner_of(0).unwrap()).ready, 2);
        assert_eq!(w.used("h1"), (100, 10));
        w.set_ready(0, false);
        assert_eq!(w.owner(w.owner_of(0).unwrap()).ready, 1);
        assert_eq!(w.budget(1).healthy, 1);
        w.set_node(1, None);
        assert_eq!(w.on_host("h2"), NO_PODS);
        assert_eq!(w.pod(1).unwrap().phase, PodPhase::Pending);
        assert!(!w.pod(1).unwrap().ready);
        w.set_node(2, Some("h2".into()));
        w.set_ready(2, true);
        let gone = w.remove(0).unwrap();
        assert_eq!(gone.name, "a-0");
        let again = w.insert(pod("c-0", Some("h1"), "a", true));
        assert_eq!(again, 0, "ids are reused");
        assert_counts(&w);
        let json = serde_json::to_string(&w).unwrap();
        let back: Workloads = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), w.len());
        assert_counts(&back);
        assert_eq!(back.pod(2).unwrap().node.as_deref(), Some("h2"));
    }

    /// The pods of one label set hold one copy of the labels, however they were built, and
    /// a change to a pod keeps it (at 5,000 nodes a copy per pod was half the daemon's memory).
    #[test]
    fn pods_of_a_label_set_share_their_labels() {
        let mut w = Workloads::new(
            (0..3).map(|i| pod(&format!("a-{i}"), Some("n1"), "a", true)),
            Vec::new(),
            vec![pdb("a", &[("app", "a")])],
        );
        let b = w.insert(pod("b-0", Some("n1"), "b", true));
        let ids: Vec<PodId> = w.iter().map(|(id, _)| id).collect();
        w.set_ready(ids[1], false);
        w.set_node(ids[2], Some("n2".into()));
        let first = w.pod(ids[0]).unwrap().labels.clone();
        for &id in &ids[..3] {
            assert!(Arc::ptr_eq(&first, &w.pod(id).unwrap().labels), "pod {id}");
        }
        assert!(!Arc::ptr_eq(&first, &w.pod(b).unwrap().labels));
        assert_eq!(w.budget(0).total, 3);
        assert_eq!(w.budget(0).healthy, 2);
        assert_counts(&w);
    }
}
