//! What kup knows of the cluster, kept current by one kube-rs watcher per kind: each change
//! costs what it touches (a pod is removed from and put back into the `Workloads` index), and
//! the hosts' view, whose size is the number of hosts, is derived again when it is next read
//! after a change. Nothing is listed per decision.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kup_types::{
    AdminState, Availability, ControlPlanePod, HostInfo, KubeVersion, Observation, OperState,
    PdbInfo, PodId, PodInfo, SystemType, VolumeKind, WorkloadInfo, Workloads,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::convert::NodeFacts;
use crate::hosts::HostsFile;

/// A change a watcher saw, its object already turned into what kup keeps.
pub(crate) enum Update<T> {
    Apply(T),
    Delete(T),
    /// The watch started (again): these are all the objects there are.
    Relist(Vec<T>),
}

/// A pod as the watcher hands it over: its `PodInfo` with the owner as written (a
/// ReplicaSet is resolved to its Deployment under the lock), its controller, and its
/// control-plane facts if it is one of kubeadm's static pods.
pub(crate) struct PodEntry {
    pub info: PodInfo,
    pub controller: Option<(String, String)>,
    pub control_plane: Option<ControlPlanePod>,
    /// The claims of its PersistentVolumeClaim volumes, in the order of `info.volumes`'.
    pub claims: Vec<String>,
}

struct PodSlot {
    id: PodId,
    controller: Option<(String, String)>,
    claims: Vec<String>,
}

type Key = (String, String);
/// (kind, namespace, name)
pub(crate) type WorkloadKey = (String, String, String);
/// A ReplicaSet: its key, its record if it is its own controller, the Deployment owning it.
pub(crate) type RsEntry = (WorkloadKey, Option<WorkloadInfo>, Option<String>);

pub(crate) struct State {
    hosts: Arc<HostsFile>,
    nodes: BTreeMap<String, NodeFacts>,
    control_plane: BTreeMap<Key, ControlPlanePod>,
    kubeadm: Option<crate::convert::KubeadmConfig>,
    /// Since when Nodes that the hosts file does not list have been seen.
    unlisted_since: Option<jiff::Timestamp>,
    /// The version kup last brought networking to (`kup-networking`).
    kup_networking: Option<KubeVersion>,
    /// Deprecated APIs clients requested (the API server's metric).
    api_usage: Vec<kup_types::ApiUsage>,
    /// Pre-release API versions objects were last applied with, by (kind, namespace, name).
    applied: BTreeMap<WorkloadKey, kup_types::ApiUsage>,
    pods: HashMap<Key, PodSlot>,
    /// Each claim's bound PersistentVolume, by (namespace, claim).
    claim_volume: HashMap<Key, String>,
    /// The PersistentVolumes whose data stays on one host (local, hostPath, node affinity).
    local_volumes: HashSet<String>,
    /// The pods using each claim, to count them again when what the claim is bound to changes.
    claim_pods: HashMap<Key, BTreeSet<Key>>,
    /// ReplicaSet → the Deployment owning it (`None`: a ReplicaSet of its own).
    rs_owner: HashMap<Key, Option<String>>,
    infos: BTreeMap<WorkloadKey, WorkloadInfo>,
    pdbs: BTreeMap<Key, PdbInfo>,
    wl: Arc<Workloads>,
    obs: Arc<Observation>,
    obs_dirty: bool,
    infos_dirty: bool,
    pdbs_dirty: bool,
    /// Hosts with a lock or unlock of kup's in progress (`Locking`, `Unlocking`).
    tasks: BTreeMap<String, &'static str>,
    /// The kinds whose first list has arrived.
    pub synced: BTreeSet<&'static str>,
    /// The last error of each watcher (cleared by its next event).
    pub errors: BTreeMap<&'static str, String>,
}

/// The state and a counter bumped on every change (for waiting on one).
pub(crate) struct Shared {
    state: Mutex<State>,
    pub changed: watch::Sender<u64>,
}

impl Shared {
    pub fn new(hosts: Arc<HostsFile>) -> Arc<Shared> {
        let mut st = State {
            hosts,
            nodes: BTreeMap::new(),
            control_plane: BTreeMap::new(),
            kubeadm: None,
            kup_networking: None,
            unlisted_since: None,
            api_usage: Vec::new(),
            applied: BTreeMap::new(),
            pods: HashMap::new(),
            claim_volume: HashMap::new(),
            local_volumes: HashSet::new(),
            claim_pods: HashMap::new(),
            rs_owner: HashMap::new(),
            infos: BTreeMap::new(),
            pdbs: BTreeMap::new(),
            wl: Arc::new(Workloads::default()),
            obs: Arc::new(Observation::default()),
            obs_dirty: true,
            infos_dirty: false,
            pdbs_dirty: false,
            tasks: BTreeMap::new(),
            synced: BTreeSet::new(),
            errors: BTreeMap::new(),
        };
        st.refresh();
        Arc::new(Shared {
            state: Mutex::new(st),
            changed: watch::channel(0).0,
        })
    }

    /// The state as it is (derived views possibly stale: see [`Shared::current`]). Nothing
    /// panics while holding it, and every change leaves it whole, so a poisoned lock is
    /// taken as it is.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state with its views derived from the latest changes.
    pub fn current(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        st.refresh();
        st
    }

    pub fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.send_modify(|n| *n += 1);
    }
}

impl State {
    pub fn observation(&self) -> &Arc<Observation> {
        &self.obs
    }
    pub fn workloads(&self) -> &Arc<Workloads> {
        &self.wl
    }
    pub fn kubeadm_version(&self) -> Option<KubeVersion> {
        self.kubeadm.as_ref().map(|k| k.version)
    }

    pub fn kubeadm(&self) -> Option<&crate::convert::KubeadmConfig> {
        self.kubeadm.as_ref()
    }

    /// The budgets selecting a pod, by name (`namespace/name`).
    pub fn pdbs_of(&self, namespace: &str, name: &str) -> Vec<String> {
        let Some(slot) = self.pods.get(&(namespace.to_string(), name.to_string())) else {
            return Vec::new();
        };
        self.wl
            .pdbs_of(slot.id)
            .iter()
            .map(|&b| {
                let p = &self.wl.budget(b).pdb;
                format!("{}/{}", p.namespace, p.name)
            })
            .collect()
    }

    pub fn set_task(&mut self, host: &str, task: Option<&'static str>) {
        match task {
            Some(t) => self.tasks.insert(host.to_string(), t),
            None => self.tasks.remove(host),
        };
        self.obs_dirty = true;
    }

    /// Derives what changed: the budgets (the index rebuilt, pod ids kept), the
    /// controllers' records, the hosts' view.
    fn refresh(&mut self) {
        if self.pdbs_dirty {
            self.pdbs_dirty = false;
            let mut wl = Workloads::new(
                Vec::new(),
                self.infos.values().cloned().collect(),
                self.pdbs.values().cloned().collect(),
            );
            wl.reserve(self.wl.len());
            for (id, p) in self.wl.iter() {
                wl.insert_at(id, p.clone());
            }
            self.wl = Arc::new(wl);
            self.infos_dirty = false;
        }
        if self.infos_dirty {
            self.infos_dirty = false;
            Arc::make_mut(&mut self.wl).set_workloads(self.infos.values().cloned().collect());
        }
        if self.obs_dirty {
            self.obs_dirty = false;
            self.obs = Arc::new(self.build_observation());
        }
    }

    fn build_observation(&self) -> Observation {
        let mut hosts = Vec::with_capacity(self.hosts.hosts.len());
        let mut nodes = Vec::new();
        for (i, h) in self.hosts.hosts.iter().enumerate() {
            let name = h.name.value.as_str();
            let node = self.nodes.get(name);
            let locked = node.is_some_and(|n| n.locked_by_kup && n.info.unschedulable);
            let ready = node.is_some_and(|n| n.info.ready);
            // A locked host is out of service, as StarlingX shows one: disabled, online while
            // its kubelet reports.
            let (operational, availability) = match (locked, ready) {
                (false, true) => (OperState::Enabled, Availability::Available),
                (true, true) => (OperState::Disabled, Availability::Online),
                (_, false) => (OperState::Disabled, Availability::Offline),
            };
            hosts.push(HostInfo {
                id: u32::try_from(i + 1).unwrap_or(u32::MAX),
                uuid: node
                    .map(|n| n.uid.clone())
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| name_uuid(name)),
                hostname: name.to_string(),
                personality: h.personality,
                subfunctions: vec![h.personality.as_str().to_string()],
                roles: h.roles.clone(),
                administrative: if locked {
                    AdminState::Locked
                } else {
                    AdminState::Unlocked
                },
                operational,
                availability,
                task: self.tasks.get(name).map(|t| t.to_string()),
                active_controller: false,
                capacity: node.map(|n| n.capacity).unwrap_or_default(),
                disk_free_gib: node.map_or(0, |n| n.disk_free_gib),
            });
            if let Some(n) = node {
                nodes.push(n.info.clone());
            }
        }
        let mut obs = Observation {
            system_type: SystemType::Kubeadm,
            hosts,
            nodes,
            control_plane_pods: self.control_plane.values().cloned().collect(),
            api_usage: self
                .api_usage
                .iter()
                .chain(self.applied.values())
                .cloned()
                .collect(),
            images: self.control_plane_images(),

            ..Observation::default()
        };
        obs.networking_version = self.networking_version(&obs);
        obs.alarms.extend(self.unlisted_alarm());
        obs.reindex();
        obs
    }

    /// The images every control-plane host holds: an image is downloaded when each control
    /// plane can start from it.
    fn control_plane_images(&self) -> Vec<String> {
        let mut held: Option<Vec<String>> = None;
        for h in &self.hosts.hosts {
            if h.personality != kup_types::Personality::Controller {
                continue;
            }
            let have = self
                .nodes
                .get(h.name.value.as_str())
                .map_or(&[][..], |n| &n.images[..]);
            held = Some(match held {
                None => have.to_vec(),
                Some(mut so_far) => {
                    so_far.retain(|i| have.binary_search(i).is_ok());
                    so_far
                }
            });
        }
        held.unwrap_or_default()
    }

    pub fn apply_node(&mut self, u: Update<(String, Option<NodeFacts>)>) {
        match u {
            Update::Apply((name, facts)) => match facts {
                Some(f) => {
                    self.nodes.insert(name, f);
                }
                None => {
                    self.nodes.remove(&name);
                }
            },
            Update::Delete((name, _)) => {
                self.nodes.remove(&name);
            }
            Update::Relist(all) => {
                self.nodes = all.into_iter().filter_map(|(n, f)| Some((n, f?))).collect();
            }
        }
        let any_unlisted = self.nodes.keys().any(|n| self.hosts.host(n).is_none());
        self.unlisted_since = match (any_unlisted, self.unlisted_since) {
            (true, None) => Some(jiff::Timestamp::now()),
            (true, since) => since,
            (false, _) => None,
        };
        self.obs_dirty = true;
    }

    /// The deprecated APIs in use, as last read; the hosts' view changes only if they did.
    pub fn set_api_usage(&mut self, usage: Vec<kup_types::ApiUsage>) {
        if usage != self.api_usage {
            self.api_usage = usage;
            self.obs_dirty = true;
        }
    }

    /// Nodes of the cluster the hosts file does not name: kup would neither drain nor upgrade
    /// them, so a forgotten one would be left behind while the upgrade says complete. An
    /// alarm that affects management, so the start refuses until the hosts file names them
    /// (or the alarm is ignored by `--alarm-ignore`).
    fn unlisted_alarm(&self) -> Option<kup_types::Alarm> {
        let unlisted: Vec<&str> = self
            .nodes
            .keys()
            .filter(|n| self.hosts.host(n).is_none())
            .map(String::as_str)
            .collect();
        let (first, rest) = unlisted.split_first()?;
        let shown: Vec<&str> = std::iter::once(*first)
            .chain(rest.iter().copied().take(9))
            .collect();
        let more = if unlisted.len() > shown.len() {
            format!(" and {} more", unlisted.len() - shown.len())
        } else {
            String::new()
        };
        Some(kup_types::Alarm {
            uuid: name_uuid("unlisted-nodes"),
            alarm_id: UNLISTED_NODES_ALARM.into(),
            entity_instance_id: "hosts-file".into(),
            reason_text: format!(
                "Nodes not in kup's hosts file: {}{more}; kup will neither drain nor upgrade them (add them to the hosts file)",
                shown.join(", ")
            ),
            severity: kup_types::Severity::Major,
            management_affecting: true,
            timestamp: self.unlisted_since.unwrap_or_default(),
        })
    }

    pub fn apply_kup_networking(&mut self, u: Update<Option<KubeVersion>>) {
        self.kup_networking = match u {
            Update::Apply(v) => v,
            Update::Delete(_) => None,
            Update::Relist(all) => all.into_iter().flatten().next(),
        };
        self.obs_dirty = true;
    }

    /// The networking version: what kup recorded of its own networking step, unless the
    /// control planes have all gone past it without kup (an upgrade by hand). Else what
    /// kubeadm recorded with its add-ons, but no further than the lowest control plane: the
    /// first control plane's `upgrade apply` records the target before kup's networking
    /// step (a patch's CNI manifests) has run, and until it has, networking is not there.
    fn networking_version(&self, obs: &Observation) -> Option<KubeVersion> {
        let lowest = obs.control_plane_pods.iter().map(|p| p.version).min();
        match (self.kup_networking, self.kubeadm_version(), lowest) {
            (Some(v), ..) if lowest.is_none_or(|l| v >= l) => Some(v),
            (_, Some(k), Some(l)) => Some(k.min(l)),
            (_, k, l) => k.or(l),
        }
    }

    pub fn apply_kubeadm(&mut self, u: Update<Option<crate::convert::KubeadmConfig>>) {
        self.kubeadm = match u {
            Update::Apply(v) => v,
            Update::Delete(_) => None,
            Update::Relist(all) => all.into_iter().flatten().next(),
        };
        self.obs_dirty = true;
    }

    fn pod_owner(&self, e: &PodEntry) -> Option<(String, String)> {
        let (kind, name) = e.controller.as_ref()?;
        if kind != "ReplicaSet" || e.info.owner_kind != "ReplicaSet" {
            return None;
        }
        let d = self
            .rs_owner
            .get(&(e.info.namespace.clone(), name.clone()))?
            .as_ref()?;
        Some(("Deployment".into(), d.clone()))
    }

    fn insert_pod(&mut self, mut e: PodEntry) {
        if let Some((kind, name)) = self.pod_owner(&e) {
            e.info.owner_kind = kind;
            e.info.owner = name;
        }
        self.mark_local_claims(&mut e.info, &e.claims);
        let key = (e.info.namespace.clone(), e.info.name.clone());
        if let Some(old) = self.pods.remove(&key) {
            Arc::make_mut(&mut self.wl).remove(old.id);
            self.forget_claims(&key, &old.claims);
        }
        for c in &e.claims {
            self.claim_pods
                .entry((key.0.clone(), c.clone()))
                .or_default()
                .insert(key.clone());
        }
        let wl = Arc::make_mut(&mut self.wl);
        if self.control_plane.remove(&key).is_some() {
            self.obs_dirty = true;
        }
        if let Some(cp) = e.control_plane {
            self.control_plane.insert(key.clone(), cp);
            self.obs_dirty = true;
        }
        let id = wl.insert(e.info);
        self.pods.insert(
            key,
            PodSlot {
                id,
                controller: e.controller,
                claims: e.claims,
            },
        );
    }

    /// A claim's volume is the host's own when the PersistentVolume it is bound to keeps its
    /// data on one host: the pod cannot move without it (VolumeKind::HostPathPv).
    fn mark_local_claims(&self, info: &mut PodInfo, claims: &[String]) {
        let mut claims = claims.iter();
        for v in info.volumes.iter_mut() {
            if matches!(v, VolumeKind::Pvc | VolumeKind::HostPathPv) {
                let local = claims.next().is_some_and(|c| {
                    self.claim_volume
                        .get(&(info.namespace.clone(), c.clone()))
                        .is_some_and(|pv| self.local_volumes.contains(pv))
                });
                *v = if local {
                    VolumeKind::HostPathPv
                } else {
                    VolumeKind::Pvc
                };
            }
        }
    }

    fn forget_claims(&mut self, pod: &Key, claims: &[String]) {
        for c in claims {
            let claim = (pod.0.clone(), c.clone());
            if let Some(pods) = self.claim_pods.get_mut(&claim) {
                pods.remove(pod);
                if pods.is_empty() {
                    self.claim_pods.remove(&claim);
                }
            }
        }
    }

    /// The pods using `claims` counted again (what a claim is bound to changed).
    fn reclaim(&mut self, claims: &BTreeSet<Key>) {
        let pods: BTreeSet<Key> = claims
            .iter()
            .filter_map(|c| self.claim_pods.get(c))
            .flatten()
            .cloned()
            .collect();
        for key in pods {
            let Some(slot) = self.pods.get(&key) else {
                continue;
            };
            let Some(info) = self.wl.pod(slot.id).cloned() else {
                continue;
            };
            let entry = PodEntry {
                info,
                controller: slot.controller.clone(),
                control_plane: self.control_plane.get(&key).cloned(),
                claims: slot.claims.clone(),
            };
            self.insert_pod(entry);
        }
    }

    /// Records what `claim` is bound to; whether that changed.
    fn bind_claim(&mut self, claim: Key, pv: Option<String>) -> bool {
        match pv {
            Some(pv) => self.claim_volume.insert(claim, pv.clone()) != Some(pv),
            None => self.claim_volume.remove(&claim).is_some(),
        }
    }

    pub fn apply_claim(&mut self, u: Update<(Key, Option<String>)>) {
        let mut changed = BTreeSet::new();
        match u {
            Update::Apply((k, pv)) => {
                if self.bind_claim(k.clone(), pv) {
                    changed.insert(k);
                }
            }
            Update::Delete((k, _)) => {
                if self.bind_claim(k.clone(), None) {
                    changed.insert(k);
                }
            }
            Update::Relist(all) => {
                changed.extend(self.claim_volume.keys().cloned());
                self.claim_volume.clear();
                for (k, pv) in all {
                    changed.insert(k.clone());
                    self.bind_claim(k, pv);
                }
            }
        }
        self.reclaim(&changed);
    }

    pub fn apply_volume(&mut self, u: Update<(String, bool)>) {
        let mut changed_pvs = BTreeSet::new();
        let updates = match u {
            Update::Apply(x) => vec![x],
            Update::Delete((pv, _)) => vec![(pv, false)],
            Update::Relist(all) => {
                changed_pvs.extend(self.local_volumes.drain());
                all
            }
        };
        for (pv, local) in updates {
            let was = self.local_volumes.contains(&pv);
            if local {
                self.local_volumes.insert(pv.clone());
            } else {
                self.local_volumes.remove(&pv);
            }
            if was != local {
                changed_pvs.insert(pv);
            }
        }
        if changed_pvs.is_empty() {
            return;
        }
        let claims: BTreeSet<Key> = self
            .claim_volume
            .iter()
            .filter(|(_, pv)| changed_pvs.contains(*pv))
            .map(|(c, _)| c.clone())
            .collect();
        self.reclaim(&claims);
    }

    fn remove_pod(&mut self, key: &Key) {
        if let Some(old) = self.pods.remove(key) {
            Arc::make_mut(&mut self.wl).remove(old.id);
            self.forget_claims(key, &old.claims);
        }
        if self.control_plane.remove(key).is_some() {
            self.obs_dirty = true;
        }
    }

    pub fn apply_pod(&mut self, u: Update<PodEntry>) {
        match u {
            Update::Apply(e) => self.insert_pod(e),
            Update::Delete(e) => self.remove_pod(&(e.info.namespace, e.info.name)),
            Update::Relist(all) => {
                self.pods.clear();
                self.claim_pods.clear();
                self.control_plane.clear();
                self.obs_dirty = true;
                let mut wl = Workloads::new(
                    Vec::new(),
                    self.infos.values().cloned().collect(),
                    self.pdbs.values().cloned().collect(),
                );
                wl.reserve(all.len());
                self.wl = Arc::new(wl);
                self.infos_dirty = false;
                self.pdbs_dirty = false;
                for e in all {
                    self.insert_pod(e);
                }
                Arc::make_mut(&mut self.wl).shrink_to_fit();
            }
        }
    }

    /// The pods owned by ReplicaSet `rs` in `ns` counted again under its new owner.
    fn reresolve(&mut self, changed: &BTreeSet<Key>) {
        if changed.is_empty() {
            return;
        }
        let keys: Vec<Key> = self
            .pods
            .iter()
            .filter(|(k, s)| {
                s.controller.as_ref().is_some_and(|(kind, name)| {
                    kind == "ReplicaSet" && changed.contains(&(k.0.clone(), name.clone()))
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(slot) = self.pods.get(&key) else {
                continue;
            };
            let Some(mut info) = self.wl.pod(slot.id).cloned() else {
                continue;
            };
            let controller = slot.controller.clone();
            if let Some((kind, name)) = &controller {
                info.owner_kind = kind.clone();
                info.owner = name.clone();
            }
            let claims = slot.claims.clone();
            self.insert_pod(PodEntry {
                info,
                controller,
                control_plane: self.control_plane.get(&key).cloned(),
                claims,
            });
        }
    }

    pub fn apply_replica_set(&mut self, u: Update<RsEntry>) {
        let mut changed = BTreeSet::new();
        match u {
            Update::Apply(x) => self.put_rs(x, &mut changed),
            Update::Delete((key, _, _)) => {
                let rs = (key.1.clone(), key.2.clone());
                if self.rs_owner.remove(&rs).flatten().is_some() {
                    changed.insert(rs);
                }
                self.put_info(key, None);
            }
            Update::Relist(all) => {
                let old = std::mem::take(&mut self.rs_owner);
                changed.extend(old.into_iter().filter(|(_, o)| o.is_some()).map(|(k, _)| k));
                self.infos.retain(|k, _| k.0 != "ReplicaSet");
                self.infos_dirty = true;
                for x in all {
                    self.put_rs(x, &mut changed);
                }
            }
        }
        self.reresolve(&changed);
    }

    fn put_rs(&mut self, (key, info, owner): RsEntry, changed: &mut BTreeSet<Key>) {
        let rs = (key.1.clone(), key.2.clone());
        if self.rs_owner.get(&rs) != Some(&owner) {
            changed.insert(rs.clone());
        }
        self.rs_owner.insert(rs, owner);
        self.put_info(key, info);
    }

    fn put_info(&mut self, key: WorkloadKey, info: Option<WorkloadInfo>) {
        let old = match info {
            Some(i) => self.infos.insert(key, i.clone()).filter(|o| *o == i),
            None => self.infos.remove(&key).filter(|_| false),
        };
        if old.is_none() {
            self.infos_dirty = true;
        }
    }

    pub fn apply_workload(
        &mut self,
        kind: &str,
        u: Update<(
            WorkloadKey,
            Option<WorkloadInfo>,
            Option<kup_types::ApiUsage>,
        )>,
    ) {
        match u {
            Update::Apply((k, i, a)) => {
                self.put_applied(k.clone(), a);
                self.put_info(k, i);
            }
            Update::Delete((k, ..)) => {
                self.put_applied(k.clone(), None);
                self.put_info(k, None);
            }
            Update::Relist(all) => {
                self.infos.retain(|k, _| k.0 != kind);
                self.infos_dirty = true;
                self.forget_applied(kind);
                for (k, i, a) in all {
                    self.put_applied(k.clone(), a);
                    self.put_info(k, i);
                }
            }
        }
    }

    /// Records the pre-release API version an object was last applied with (or that it has
    /// none now).
    pub fn put_applied(&mut self, key: WorkloadKey, usage: Option<kup_types::ApiUsage>) {
        let changed = match usage {
            Some(u) => self.applied.insert(key, u.clone()).as_ref() != Some(&u),
            None => self.applied.remove(&key).is_some(),
        };
        self.obs_dirty |= changed;
    }

    /// Objects followed only for the API version they were last applied with (Ingresses).
    pub fn apply_applied(
        &mut self,
        kind: &str,
        u: Update<(WorkloadKey, Option<kup_types::ApiUsage>)>,
    ) {
        match u {
            Update::Apply((k, a)) => self.put_applied(k, a),
            Update::Delete((k, _)) => self.put_applied(k, None),
            Update::Relist(all) => {
                self.forget_applied(kind);
                for (k, a) in all {
                    self.put_applied(k, a);
                }
            }
        }
    }

    pub fn forget_applied(&mut self, kind: &str) {
        let before = self.applied.len();
        self.applied.retain(|k, _| k.0 != kind);
        self.obs_dirty |= self.applied.len() != before;
    }

    pub fn apply_pdb(&mut self, u: Update<(Key, Option<PdbInfo>, Option<kup_types::ApiUsage>)>) {
        let key = |(ns, name): &Key| ("PodDisruptionBudget".to_string(), ns.clone(), name.clone());
        let u = match u {
            Update::Apply((k, p, a)) => {
                self.put_applied(key(&k), a);
                Update::Apply((k, p))
            }
            Update::Delete((k, p, _)) => {
                self.put_applied(key(&k), None);
                Update::Delete((k, p))
            }
            Update::Relist(all) => {
                self.forget_applied("PodDisruptionBudget");
                let mut budgets = Vec::with_capacity(all.len());
                for (k, p, a) in all {
                    self.put_applied(key(&k), a);
                    budgets.push((k, p));
                }
                Update::Relist(budgets)
            }
        };
        self.apply_budgets(u);
    }

    fn apply_budgets(&mut self, u: Update<(Key, Option<PdbInfo>)>) {
        let put = |st: &mut State, (k, p): (Key, Option<PdbInfo>)| {
            let same = st.pdbs.get(&k) == p.as_ref();
            if !same {
                match p {
                    Some(p) => st.pdbs.insert(k, p),
                    None => st.pdbs.remove(&k),
                };
                // Only a change of what a budget selects or keeps rebuilds the index, not its
                // status moving with every disruption.
                st.pdbs_dirty = true;
            }
        };
        match u {
            Update::Apply(x) => put(self, x),
            Update::Delete((k, _)) => put(self, (k, None)),
            Update::Relist(all) => {
                let fresh: BTreeMap<Key, PdbInfo> =
                    all.into_iter().filter_map(|(k, p)| Some((k, p?))).collect();
                if fresh != self.pdbs {
                    self.pdbs = fresh;
                    self.pdbs_dirty = true;
                }
            }
        }
    }
}

/// A stable uuid-shaped id for a host that has no Node (yet).
/// kup's alarm for Nodes the hosts file does not name.
pub const UNLISTED_NODES_ALARM: &str = "900.101";

fn name_uuid(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("00000000-0000-4000-8000-{:012x}", h & 0xffff_ffff_ffff)
}

/// Follows one kind: its first list, then every change, restarting (with kube-rs's
/// backoff) when the watch breaks. `convert` runs outside the lock.
pub(crate) fn follow<K, T>(
    api: kube::Api<K>,
    config: watcher::Config,
    shared: Arc<Shared>,
    kind: &'static str,
    convert: impl Fn(K) -> T + Send + 'static,
    apply: impl Fn(&mut State, Update<T>) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        let mut buffer: Vec<T> = Vec::new();
        while let Some(event) = stream.next().await {
            let update = match event {
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying");
                    shared.lock().errors.insert(kind, e.to_string());
                    continue;
                }
                Ok(Event::Init) => {
                    buffer.clear();
                    continue;
                }
                Ok(Event::InitApply(k)) => {
                    buffer.push(convert(k));
                    continue;
                }
                Ok(Event::InitDone) => Update::Relist(std::mem::take(&mut buffer)),
                Ok(Event::Apply(k)) => Update::Apply(convert(k)),
                Ok(Event::Delete(k)) => Update::Delete(convert(k)),
            };
            shared.update(|st| {
                st.errors.remove(kind);
                if matches!(update, Update::Relist(_)) {
                    st.synced.insert(kind);
                }
                apply(st, update);
            });
        }
    })
}

use watcher::watcher;
