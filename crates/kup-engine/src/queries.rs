//! What the API reads: built from the cached snapshot of the store and the driver's shared
//! views, never copying the cluster, never reading a pod unless the answer needs pods.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use kup_core::{HealthReport, Refusal};
use kup_types::{
    Alarm, Event, HostInfo, IHost, IHostList, KubeHostUpgradeList, KubeHostUpgradeView,
    KubeUpgradeView, KubeVersion, KubeVersionDetail, KubeVersionSummary, Observation, Snapshot,
    Workloads,
};

use crate::commands::find_host;
use crate::{Engine, EngineError};

/// The encoded bodies of the host lists, each kept with the snapshot and the hosts' view it
/// was made from. Both are replaced, never changed in place, while something holds them, so
/// a body is current exactly while both are the ones current: readers polling 5,000 hosts
/// then cost a pointer's copy, not an encoding each.
#[derive(Default)]
pub(crate) struct EncodedReads {
    ihosts: Mutex<Option<Encoded>>,
    host_upgrades: Mutex<Option<Encoded>>,
}

struct Encoded {
    snap: Arc<Snapshot>,
    obs: Arc<Observation>,
    body: Bytes,
}

/// The body in `slot` if it was made from `snap` and `obs`, else `make`'s, kept there.
fn encoded<T: serde::Serialize>(
    slot: &Mutex<Option<Encoded>>,
    snap: Arc<Snapshot>,
    obs: Arc<Observation>,
    make: impl FnOnce(&Snapshot, &Observation) -> T,
) -> Result<Bytes, EngineError> {
    if let Some(e) = &*slot.lock().unwrap_or_else(PoisonError::into_inner)
        && Arc::ptr_eq(&e.snap, &snap)
        && Arc::ptr_eq(&e.obs, &obs)
    {
        return Ok(e.body.clone());
    }
    let body = Bytes::from(
        serde_json::to_vec(&make(&snap, &obs))
            .map_err(|_| Refusal::Internal("a host list could not be encoded"))?,
    );
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Encoded {
        snap,
        obs,
        body: body.clone(),
    });
    Ok(body)
}

impl Engine {
    /// `GET /v1/ihosts`'s body (`IHostList` as JSON), encoded once per state of the cluster.
    pub async fn ihosts_json(&self) -> Result<Bytes, EngineError> {
        let (snap, obs) = self.read().await?;
        encoded(&self.inner.encoded.ihosts, snap, obs, |snap, obs| {
            IHostList {
                ihosts: ihosts_of(snap, obs),
            }
        })
    }

    /// `GET /v1/kube_host_upgrades`'s body (`KubeHostUpgradeList` as JSON), encoded once per
    /// state of the cluster.
    pub async fn kube_host_upgrades_json(&self) -> Result<Bytes, EngineError> {
        let (snap, obs) = self.read().await?;
        encoded(&self.inner.encoded.host_upgrades, snap, obs, |snap, obs| {
            KubeHostUpgradeList {
                kube_host_upgrades: kup_core::views::host_upgrades(snap, obs),
            }
        })
    }

    /// The cluster's hosts' view, as the driver shares it.
    pub async fn observe(&self) -> Result<Arc<Observation>, EngineError> {
        Ok(self.inner.driver.observe().await?)
    }

    /// The cluster's pods, owners and budgets, as the driver shares them.
    pub async fn workloads(&self) -> Result<Arc<Workloads>, EngineError> {
        Ok(self.inner.driver.workloads().await?)
    }

    /// The store as last committed, and the hosts' view: what reads are built from. Neither
    /// copies anything.
    pub(crate) async fn read(&self) -> Result<(Arc<Snapshot>, Arc<Observation>), EngineError> {
        Ok((self.inner.snapshot(), self.inner.driver.observe().await?))
    }

    pub async fn kube_versions(&self) -> Result<Vec<KubeVersionSummary>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(self
            .inner
            .catalog_for(&snap)
            .summaries(&obs, snap.upgrade.as_ref()))
    }

    pub async fn kube_version(&self, version: &str) -> Result<KubeVersionDetail, EngineError> {
        let v = KubeVersion::parse(version).map_err(Refusal::from)?;
        let (snap, obs) = self.read().await?;
        Ok(self
            .inner
            .catalog_for(&snap)
            .detail(v, &obs, snap.upgrade.as_ref())
            .ok_or(Refusal::UnknownVersionLookup(v))?)
    }

    pub async fn kube_upgrade(&self) -> Result<Option<KubeUpgradeView>, EngineError> {
        Ok(self
            .inner
            .snapshot()
            .upgrade
            .as_ref()
            .map(KubeUpgradeView::from))
    }

    pub async fn kube_host_upgrades(&self) -> Result<Vec<KubeHostUpgradeView>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(kup_core::views::host_upgrades(&snap, &obs))
    }

    /// A host by name, numeric id or uuid.
    pub async fn host(&self, key: &str) -> Result<HostInfo, EngineError> {
        let obs = self.observe().await?;
        Ok(find_host(&obs, key)?.clone())
    }

    /// Hosts as the sysinv API shows them.
    pub async fn ihosts(&self) -> Result<Vec<IHost>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(ihosts_of(&snap, &obs))
    }

    /// One host by name, numeric id or uuid, as the sysinv API shows it.
    pub async fn ihost(&self, key: &str) -> Result<IHost, EngineError> {
        let (snap, obs) = self.read().await?;
        let h = find_host(&obs, key)?;
        Ok(kup_core::views::ihost(h, &snap))
    }

    /// `kup upgrade plan`: what the whole upgrade to `to` would do, stage by stage, with the
    /// safety findings per host. `to` defaults to the upgrade in progress, else the highest
    /// available version.
    pub async fn plan(
        &self,
        to: Option<&str>,
        max_parallel_worker_hosts: u32,
        min_free_disk_gib: u32,
    ) -> Result<kup_core::plan::Plan, EngineError> {
        let (snap, obs) = self.read().await?;
        let workloads = self.workloads().await?;
        let catalog = self.inner.catalog_for(&snap);
        let to = match to {
            Some(v) => KubeVersion::parse(v).map_err(Refusal::from)?,
            None => match &snap.upgrade {
                Some(u) => u.to_version,
                None => newest_available(&catalog, &obs).ok_or(Refusal::NothingToPlan)?,
            },
        };
        let durations = self.inner.driver.step_durations();
        // Seconds of work at the largest sizes: off the async threads, so the daemon keeps
        // answering meanwhile.
        let plan = tokio::task::spawn_blocking(move || {
            kup_core::plan::plan(&kup_core::plan::PlanInput {
                obs: &obs,
                workloads: &workloads,
                snap: &snap,
                catalog: &catalog,
                to,
                max_parallel_worker_hosts: max_parallel_worker_hosts.max(1),
                durations: &durations,
                min_free_disk_gib,
            })
        })
        .await
        .map_err(|e| EngineError::Stopped(e.to_string()))?;
        Ok(plan)
    }

    /// `kup info`.
    pub async fn info(&self) -> Result<kup_types::ClusterInfo, EngineError> {
        let (snap, obs) = self.read().await?;
        let mut info = kup_core::views::info(&snap, &obs);
        info.safety_audit = self.inner.driver.safety_audit();
        Ok(info)
    }

    pub async fn alarms(&self) -> Result<Vec<Alarm>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(kup_core::views::alarms(&snap, &obs))
    }

    /// `health-query-kube-upgrade`; `relaxed` lets alarms that are not management-affecting pass.
    pub async fn health(&self, relaxed: bool) -> Result<HealthReport, EngineError> {
        let (snap, obs) = self.read().await?;
        let workloads = self.workloads().await?;
        let mut obs = Observation::clone(&obs);
        obs.alarms = kup_core::views::alarms(&snap, &obs);
        let mut report = kup_core::kube_upgrade_health(
            &obs,
            &workloads,
            relaxed,
            &self.inner.policy.alarm_ignore,
        );
        // The APIs that the upgrade would remove: to the upgrade's target while one exists,
        // else to the newest version it could start to.
        let catalog = self.inner.catalog_for(&snap);
        let from = kup_core::running_versions(&obs).first().copied();
        let to = match &snap.upgrade {
            Some(u) => Some(u.to_version),
            None => newest_available(&catalog, &obs),
        };
        if let (Some(from), Some(to)) = (from, to) {
            report
                .checks
                .push(kup_core::removed_apis::removed_api_check(
                    &obs, from, to, false,
                ));
        }
        Ok(report)
    }

    pub async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, EngineError> {
        Ok(self.inner.store.events(after_seq, limit).await?)
    }

    /// The events about one subject (a hostname, `kube_upgrade`), after `after_seq`.
    pub async fn events_of(
        &self,
        subject: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Event>, EngineError> {
        Ok(self
            .inner
            .store
            .events_of(subject, after_seq, limit)
            .await?)
    }

    /// The dashboard's view: the cluster's line, the strategy without its host lists, the
    /// alarms and the tiles of every host, or of `hosts` only (what changed since the last
    /// look). Costs one lookup per tile; reads no pod.
    pub async fn dashboard(
        &self,
        hosts: Option<&[String]>,
    ) -> Result<kup_types::DashboardView, EngineError> {
        // Read before the state, so that a follower of the events from here misses none.
        let last_seq = self.last_event_seq();
        let (snap, obs) = self.read().await?;
        let tiles = kup_core::dashboard::Tiles::new(&snap, &obs);
        Ok(kup_types::DashboardView {
            last_seq,
            now: jiff::Timestamp::now(),
            time_scale: self.inner.driver.time_scale(),
            cluster: kup_core::dashboard::cluster(&snap, &obs),
            strategy: snap.strategy.as_ref().map(kup_core::dashboard::strategy),
            alarms: kup_core::views::alarms(&snap, &obs)
                .iter()
                .map(kup_types::AlarmView::from)
                .collect(),
            hosts: match hosts {
                Some(names) => tiles.some(names),
                None => tiles.all(),
            },
        })
    }

    /// What locking the host alone would do to the workloads, and its readiness for the
    /// upgrade's target (else the newest available version).
    pub async fn host_findings(&self, key: &str) -> Result<kup_types::HostFindings, EngineError> {
        let (snap, obs) = self.read().await?;
        let h = find_host(&obs, key)?.clone();
        let workloads = self.workloads().await?;
        let catalog = self.inner.catalog_for(&snap);
        let to = kup_core::dashboard::target(&snap).or_else(|| newest_available(&catalog, &obs));
        // Indexes every pod once: off the async threads, as the plan is.
        tokio::task::spawn_blocking(move || {
            kup_core::dashboard::host_findings(&obs, &workloads, &snap, &catalog, &h, to)
        })
        .await
        .map_err(|e| EngineError::Stopped(e.to_string()))
    }
}

/// The newest version an upgrade could start to now.
fn newest_available(catalog: &kup_core::Catalog, obs: &Observation) -> Option<KubeVersion> {
    catalog
        .states(obs)
        .into_iter()
        .filter(|(_, s)| *s == kup_types::VersionState::Available)
        .map(|(v, _)| v)
        .next_back()
}

fn ihosts_of(snap: &Snapshot, obs: &Observation) -> Vec<IHost> {
    obs.hosts
        .iter()
        .map(|h| kup_core::views::ihost(h, snap))
        .collect()
}
