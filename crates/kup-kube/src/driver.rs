//! `KubeDriver`: the `Driver` of a real kubeadm cluster, through its API server.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::DynamicObject;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ApiResource;
use kube::runtime::watcher;
use kube::{Api, Client, Config, ResourceExt};
use kup_driver::{Driver, DriverError};
use kup_types::{Observation, OpStatus, Operation, Workloads};
use tokio::task::JoinHandle;

use crate::cache::{PodEntry, Shared, WorkloadKey, follow};
use crate::convert;
use crate::drain::DrainOptions;
use crate::hosts::HostsFile;
use crate::ops::{self, Ctx, Note, PolicyVersion};
use crate::steps;

/// Why a driver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("the API server cannot be reached: {0}")]
    Unreachable(String),
    #[error("the API server did not list {0} within {1} s")]
    NotSynced(String, u64),
}

/// How the driver behaves; the defaults are kubectl's and kup's deadlines'.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a drain may take before it fails naming what blocks it: below the engine's
    /// lock deadline (30 min), so the failure is the drain's and says why.
    pub drain_timeout: Duration,
    pub eviction_retry: Duration,
    pub poll_interval: Duration,
    /// How long `connect` waits for the first list of every kind.
    pub sync_timeout: Duration,
    /// The bound of one command of a host step over SSH.
    pub command_timeout: Duration,
    /// How often the API server's deprecated-API metric is read.
    pub metrics_interval: Duration,
    /// Where a platform patch's networking manifests are read from (none: a patch that ships
    /// some cannot be applied, and says so).
    pub patch_files: Option<crate::PatchFiles>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            drain_timeout: Duration::from_secs(25 * 60),
            eviction_retry: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            sync_timeout: Duration::from_secs(60),
            command_timeout: crate::steps::COMMAND_TIMEOUT,
            metrics_interval: Duration::from_secs(60),
            patch_files: None,
        }
    }
}

struct Run {
    op: Operation,
    status: OpStatus,
    note: Note,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Runs {
    runs: Vec<Run>,
    by_id: HashMap<String, usize>,
    running: HashMap<Operation, usize>,
}

struct Inner {
    ctx: Ctx,
    runs: Mutex<Runs>,
    watchers: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
        let runs = self.runs.get_mut().unwrap_or_else(PoisonError::into_inner);
        for r in &runs.runs {
            if let Some(t) = &r.task {
                t.abort();
            }
        }
    }
}

/// A real cluster's driver; clones share it. Dropping the last clone stops its watchers and
/// operations.
#[derive(Clone)]
pub struct KubeDriver {
    inner: Arc<Inner>,
}

/// The kinds followed, for the sync wait and `check`.
const KINDS: [&str; 12] = [
    "nodes",
    "pods",
    "persistentvolumeclaims",
    "persistentvolumes",
    "kubeadm-config",
    "kup-networking",
    "poddisruptionbudgets",
    "deployments",
    "statefulsets",
    "replicasets",
    "daemonsets",
    "jobs",
];

/// A client of the cluster `kubeconfig` (and `context`) names. kube's own retry of 429s is
/// off: a 429 from the Eviction API is a budget's answer, which the drain retries itself,
/// every few seconds as kubectl does, and names when it gives up.
pub async fn client_from_kubeconfig(
    kubeconfig: &Path,
    context: Option<&str>,
) -> Result<Client, ConnectError> {
    let bad = |message: String| ConnectError::Kubeconfig {
        path: kubeconfig.display().to_string(),
        message,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| bad(e.to_string()))?;
    config.default_retry = false;
    Client::try_from(config).map_err(|e| bad(e.to_string()))
}

/// Whether the server serves `policy/v1` (Kubernetes 1.21+ for budgets, 1.22+ for evictions:
/// v1 is used only when both are there, that is when the Eviction kind is served in v1).
async fn policy_version(client: &Client) -> Result<PolicyVersion, ConnectError> {
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let v1 = groups
        .groups
        .iter()
        .find(|g| g.name == "policy")
        .is_some_and(|g| g.versions.iter().any(|v| v.version == "v1"));
    if !v1 {
        return Ok(PolicyVersion::V1beta1);
    }
    // 1.21 serves policy/v1 budgets but evictions only in v1beta1.
    let resources = client
        .list_core_api_resources("v1")
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let eviction_v1 = resources.resources.iter().any(|r| {
        r.name == "pods/eviction"
            && r.group.as_deref() == Some("policy")
            && r.version.as_deref() == Some("v1")
    });
    Ok(if eviction_v1 {
        PolicyVersion::V1
    } else {
        PolicyVersion::V1beta1
    })
}

fn workload_key(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> WorkloadKey {
    (
        kind.to_string(),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Follows one kind of workload controller: what the engine's workload view needs of each,
/// and the API version it was last applied with.
fn follow_workload<K>(
    client: &Client,
    shared: &Arc<Shared>,
    kind: &'static str,
    plural: &'static str,
    info: fn(&K) -> kup_types::WorkloadInfo,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    follow(
        Api::<K>::all(client.clone()),
        watcher::Config::default(),
        shared.clone(),
        plural,
        move |o: K| {
            (
                workload_key(kind, o.meta()),
                Some(info(&o)),
                convert::applied_api(o.meta()),
            )
        },
        move |st, u| st.apply_workload(kind, u),
    )
}

impl KubeDriver {
    /// Starts following the cluster `client` reaches and waits for the first list of every
    /// kind (at most `settings.sync_timeout`).
    pub async fn connect(
        client: Client,
        hosts: HostsFile,
        settings: Settings,
    ) -> Result<KubeDriver, ConnectError> {
        let policy = policy_version(&client).await?;
        let hosts = Arc::new(hosts);
        let shared = Shared::new(hosts.clone());
        let mut watchers = Vec::new();
        let cfg = watcher::Config::default;
        watchers.push(follow(
            Api::<Node>::all(client.clone()),
            cfg(),
            shared.clone(),
            "nodes",
            |n: Node| (n.name_any(), convert::node_facts(&n)),
            |st, u| st.apply_node(u),
        ));
        watchers.push(follow(
            Api::<Pod>::all(client.clone()),
            cfg(),
            shared.clone(),
            "pods",
            |p: Pod| {
                let controller = convert::controller_ref(&p);
                let owner = convert::owner_of(&p, controller.as_ref(), None);
                PodEntry {
                    info: convert::pod_info(&p, owner),
                    control_plane: convert::control_plane_pod(&p),
                    controller,
                    claims: convert::pod_claims(&p),
                }
            },
            |st, u| st.apply_pod(u),
        ));
        watchers.push(follow(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            cfg(),
            shared.clone(),
            "persistentvolumeclaims",
            |c: PersistentVolumeClaim| convert::claim_binding(&c),
            |st, u| st.apply_claim(u),
        ));
        watchers.push(follow(
            Api::<PersistentVolume>::all(client.clone()),
            cfg(),
            shared.clone(),
            "persistentvolumes",
            |v: PersistentVolume| convert::volume_locality(&v),
            |st, u| st.apply_volume(u),
        ));
        watchers.push(follow(
            Api::<ConfigMap>::namespaced(client.clone(), "kube-system"),
            cfg().fields("metadata.name=kubeadm-config"),
            shared.clone(),
            "kubeadm-config",
            |cm: ConfigMap| convert::kubeadm_config(&cm),
            |st, u| st.apply_kubeadm(u),
        ));
        watchers.push(follow(
            Api::<ConfigMap>::namespaced(client.clone(), "kube-system"),
            cfg().fields(&format!("metadata.name={}", convert::KUP_NETWORKING)),
            shared.clone(),
            "kup-networking",
            |cm: ConfigMap| convert::kup_networking(&cm),
            |st, u| st.apply_kup_networking(u),
        ));
        let (version, v1beta1) = match policy {
            PolicyVersion::V1 => ("v1", false),
            PolicyVersion::V1beta1 => ("v1beta1", true),
        };
        let pdb = ApiResource {
            group: "policy".into(),
            version: version.into(),
            api_version: format!("policy/{version}"),
            kind: "PodDisruptionBudget".into(),
            plural: "poddisruptionbudgets".into(),
        };
        watchers.push(follow(
            Api::<DynamicObject>::all_with(client.clone(), &pdb),
            cfg(),
            shared.clone(),
            "poddisruptionbudgets",
            move |o: DynamicObject| {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                let name = o.metadata.name.clone().unwrap_or_default();
                let info = convert::pdb_info(&ns, &name, &o.data, v1beta1);
                let applied = convert::applied_api(&o.metadata);
                ((ns, name), info, applied)
            },
            |st, u| st.apply_pdb(u),
        ));
        watchers.push(follow_workload(
            &client,
            &shared,
            "Deployment",
            "deployments",
            convert::deployment_info,
        ));
        watchers.push(follow_workload(
            &client,
            &shared,
            "StatefulSet",
            "statefulsets",
            convert::stateful_set_info,
        ));
        watchers.push(follow_workload(
            &client,
            &shared,
            "DaemonSet",
            "daemonsets",
            convert::daemon_set_info,
        ));
        watchers.push(follow_workload(
            &client,
            &shared,
            "Job",
            "jobs",
            convert::job_info,
        ));
        // Ingresses for the removed-API check alone (extensions/v1beta1 went in 1.22), and
        // best effort: not waited for at connect, so a server without networking.k8s.io/v1
        // (before 1.19) is still driven.
        watchers.push(follow(
            Api::<Ingress>::all(client.clone()),
            cfg(),
            shared.clone(),
            "ingresses",
            |i: Ingress| {
                (
                    workload_key("Ingress", &i.metadata),
                    convert::applied_api(&i.metadata),
                )
            },
            |st, u| st.apply_applied("Ingress", u),
        ));
        watchers.push(follow(
            Api::<ReplicaSet>::all(client.clone()),
            cfg(),
            shared.clone(),
            "replicasets",
            |r: ReplicaSet| {
                (
                    workload_key("ReplicaSet", &r.metadata),
                    convert::replica_set_info(&r),
                    convert::replica_set_owner(&r),
                )
            },
            |st, u| st.apply_replica_set(u),
        ));
        watchers.push(tokio::spawn(follow_deprecated_apis(
            client.clone(),
            shared.clone(),
            settings.metrics_interval,
        )));
        let settings_timeout = settings.sync_timeout;
        let driver = KubeDriver {
            inner: Arc::new(Inner {
                ctx: Ctx {
                    client,
                    shared: shared.clone(),
                    policy,
                    drain_timeout: settings.drain_timeout,
                    retry_interval: settings.eviction_retry,
                    poll_interval: settings.poll_interval,
                    hosts,
                    command_timeout: settings.command_timeout,
                    patch_files: settings.patch_files.clone(),
                },
                runs: Mutex::new(Runs::default()),
                watchers,
            }),
        };
        let mut rx = shared.changed.subscribe();
        let until = tokio::time::Instant::now() + settings_timeout;
        loop {
            let missing: Vec<&str> = {
                let st = shared.lock();
                KINDS
                    .iter()
                    .copied()
                    .filter(|k| !st.synced.contains(k))
                    .collect()
            };
            if missing.is_empty() {
                return Ok(driver);
            }
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                let st = shared.lock();
                let why: Vec<String> = missing
                    .iter()
                    .map(|k| match st.errors.get(k) {
                        Some(e) => format!("{k} ({e})"),
                        None => k.to_string(),
                    })
                    .collect();
                return Err(ConnectError::NotSynced(
                    why.join(", "),
                    settings_timeout.as_secs(),
                ));
            }
        }
    }

    /// Connects with a kubeconfig file (`--kubeconfig`, `--context`).
    pub async fn from_kubeconfig(
        kubeconfig: &Path,
        context: Option<&str>,
        hosts: HostsFile,
        settings: Settings,
    ) -> Result<KubeDriver, ConnectError> {
        let client = client_from_kubeconfig(kubeconfig, context).await?;
        Self::connect(client, hosts, settings).await
    }

    /// The `policy` API version in use (budgets and evictions).
    pub fn policy_version(&self) -> PolicyVersion {
        self.inner.ctx.policy
    }

    /// `ClusterConfiguration.kubernetesVersion` of the `kubeadm-config` ConfigMap.
    pub fn kubeadm_version(&self) -> Option<kup_types::KubeVersion> {
        self.inner.ctx.shared.lock().kubeadm_version()
    }

    /// The images `kubeadm config images pull` brings for `version` on this cluster (from
    /// the image repository its kubeadm-config names).
    pub fn kubeadm_images(&self, version: kup_types::KubeVersion) -> Vec<String> {
        let st = self.inner.ctx.shared.lock();
        let repo = st.kubeadm().and_then(|k| k.image_repository.clone());
        convert::kubeadm_images(version, repo.as_deref())
    }

    /// Waits until the cached views satisfy `f` (at most `timeout`): for callers and tests
    /// that just changed the cluster and need the watchers to have seen it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Observation, &Workloads) -> bool,
    ) -> bool {
        let shared = &self.inner.ctx.shared;
        let mut rx = shared.changed.subscribe();
        let until = tokio::time::Instant::now() + timeout;
        loop {
            {
                let st = shared.current();
                if f(st.observation(), st.workloads()) {
                    return true;
                }
            }
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                return false;
            }
        }
    }

    fn runs(&self) -> MutexGuard<'_, Runs> {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads the API server's `/metrics` every `every` for the deprecated APIs clients request
/// (the start's removed-API check). A server that does not let kup read its metrics leaves
/// the list as it was, and says so in the log once.
async fn follow_deprecated_apis(client: Client, shared: Arc<Shared>, every: Duration) {
    let mut warned = false;
    loop {
        let req = http::Request::get("/metrics").body(Vec::new());
        match req {
            Ok(req) => match client.request_text(req).await {
                Ok(text) => {
                    let usage = convert::deprecated_api_usage(&text);
                    shared.update(|st| st.set_api_usage(usage));
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(
                        "cannot read the API server's metrics, so not the deprecated APIs its clients use: {e}"
                    );
                }
                Err(_) => {}
            },
            Err(e) => tracing::warn!("{e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Why an operation is not done on a kubeadm cluster.
fn refusal(op: &Operation) -> Option<String> {
    match op {
        Operation::Swact { .. } => Some(
            "a kubeadm cluster has no active controller to hand over: every control-plane node serves at once".into(),
        ),
        _ => None,
    }
}

/// The task shown on a host while an operation runs on it.
fn task_of(op: &Operation) -> Option<&'static str> {
    match op {
        Operation::Lock { .. } => Some("Locking"),
        Operation::Unlock { .. } => Some("Unlocking"),
        _ => None,
    }
}

/// Runs `op` to its end.
async fn run(ctx: &Ctx, op: &Operation, note: &Note) -> Result<(), String> {
    match op {
        Operation::Lock { host, force } => {
            // kup's lock check judged the pods already (refused unless forced); the drain
            // refuses again what it would lose unless forced, in case the cluster changed.
            let options = DrainOptions {
                force: *force,
                delete_emptydir_data: *force,
                ..DrainOptions::default()
            };
            ops::cordon(ctx, host).await?;
            ops::drain(ctx, host, options, note).await?;
            ops::mark_locked(ctx, host).await
        }
        Operation::Cordon { host } => {
            // aio-simplex's cordon: `kubectl drain --force --ignore-daemonsets`.
            let options = DrainOptions {
                force: true,
                delete_emptydir_data: true,
                ..DrainOptions::default()
            };
            ops::cordon(ctx, host).await?;
            ops::drain(ctx, host, options, note).await
        }
        Operation::Unlock { host } => {
            ops::uncordon(ctx, host).await?;
            ops::wait_ready(ctx, host, note).await
        }
        Operation::Uncordon { host } => ops::uncordon(ctx, host).await.map(|_| ()),
        Operation::DownloadImages {
            version,
            images,
            payloads,
        } => steps::download_images(ctx, *version, images, payloads, note).await,
        Operation::UpgradeControlPlane {
            host,
            version,
            first,
            payloads,
        } => steps::control_plane(ctx, host, *version, *first, payloads, note).await,
        Operation::RestoreControlPlane { host, version } => {
            steps::restore_control_plane(ctx, host, *version, note).await
        }
        Operation::UpgradeKubelet {
            host,
            version,
            payloads,
        } => steps::kubelet(ctx, host, *version, payloads, note).await,
        Operation::UpgradeNetworking { version, manifests } => {
            steps::networking(ctx, *version, manifests, note).await
        }
        Operation::Swact { .. } => Err(refusal(op).unwrap_or_default()),
    }
}

/// After a lock or cordon that failed or was given up: the node made schedulable again if
/// kup cordoned it, as a failed lock leaves a host unlocked. Best effort: a failure is
/// logged, and kup's unlock undoes it later all the same.
async fn release(ctx: &Ctx, op: &Operation) {
    if let Operation::Lock { host, .. } | Operation::Cordon { host } = op
        && let Err(e) = ops::uncordon(ctx, host).await
    {
        tracing::warn!(host, "cannot undo kup's cordon: {e}");
    }
}

#[async_trait]
impl Driver for KubeDriver {
    async fn observe(&self) -> Result<Arc<Observation>, DriverError> {
        Ok(self.inner.ctx.shared.current().observation().clone())
    }

    async fn workloads(&self) -> Result<Arc<Workloads>, DriverError> {
        Ok(self.inner.ctx.shared.current().workloads().clone())
    }

    fn with_views(&self, f: &mut dyn FnMut(&Observation, &Workloads)) -> Result<(), DriverError> {
        let st = self.inner.ctx.shared.current();
        f(st.observation(), st.workloads());
        Ok(())
    }

    async fn check(&self) -> Result<(), DriverError> {
        let req = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| DriverError::Unreachable(e.to_string()))?;
        self.inner
            .ctx
            .client
            .request_text(req)
            .await
            .map(|_| ())
            .map_err(|e| DriverError::Unreachable(e.to_string()))
    }

    async fn start(&self, id: &str, op: &Operation) -> Result<(), DriverError> {
        if let Some(reason) = refusal(op) {
            return Err(DriverError::Rejected {
                op: op.to_string(),
                reason,
            });
        }
        if let Some(host) = op.host()
            && self
                .inner
                .ctx
                .shared
                .current()
                .observation()
                .host(host)
                .is_none()
        {
            return Err(DriverError::Rejected {
                op: op.to_string(),
                reason: format!("no host {host} in the hosts file"),
            });
        }
        let mut runs = self.runs();
        if runs.by_id.contains_key(id) {
            return Ok(()); // Started already under this id.
        }
        if let Some(&r) = runs.running.get(op) {
            runs.by_id.insert(id.to_string(), r);
            return Ok(()); // Attach to the run in progress.
        }
        let r = runs.runs.len();
        let note = Note::default();
        let inner = Arc::downgrade(&self.inner);
        let ctx = self.inner.ctx.clone();
        let (op2, note2) = (op.clone(), note.clone());
        if let (Some(host), Some(task)) = (op.host(), task_of(op)) {
            ctx.shared.update(|st| st.set_task(host, Some(task)));
        }
        runs.runs.push(Run {
            op: op.clone(),
            status: OpStatus::Running,
            note,
            task: None,
        });
        runs.by_id.insert(id.to_string(), r);
        runs.running.insert(op.clone(), r);
        let task = tokio::spawn(async move {
            let result = run(&ctx, &op2, &note2).await;
            if result.is_err() {
                release(&ctx, &op2).await;
            }
            if let Some(host) = op2.host() {
                ctx.shared.update(|st| st.set_task(host, None));
            }
            let Some(inner) = inner.upgrade() else { return };
            let mut runs = inner.runs.lock().unwrap_or_else(PoisonError::into_inner);
            if runs.runs[r].status == OpStatus::Running {
                runs.runs[r].status = match result {
                    Ok(()) => OpStatus::Succeeded,
                    Err(e) => OpStatus::Failed(e),
                };
                runs.running.remove(&op2);
            }
            drop(runs);
            ctx.shared.changed.send_modify(|n| *n += 1);
        });
        runs.runs[r].task = Some(task);
        Ok(())
    }

    async fn cancel(&self, id: &str) -> Result<(), DriverError> {
        let (op, ctx) = {
            let mut runs = self.runs();
            let Some(&r) = runs.by_id.get(id) else {
                return Ok(());
            };
            let run = &mut runs.runs[r];
            if run.status != OpStatus::Running {
                return Ok(());
            }
            if let Some(t) = run.task.take() {
                t.abort();
            }
            run.status = OpStatus::Failed(match run.note.get() {
                Some(n) => format!("cancelled while {n}"),
                None => "cancelled".into(),
            });
            let op = run.op.clone();
            runs.running.remove(&op);
            (op, self.inner.ctx.clone())
        };
        if let Some(host) = op.host() {
            ctx.shared.update(|st| st.set_task(host, None));
        }
        release(&ctx, &op).await;
        Ok(())
    }

    fn transcript(&self, id: &str) -> Vec<kup_driver::HostOutput> {
        let runs = self.runs();
        runs.by_id
            .get(id)
            .map_or_else(Vec::new, |&r| runs.runs[r].note.take_said())
    }

    async fn status(&self, id: &str) -> Result<OpStatus, DriverError> {
        let runs = self.runs();
        Ok(runs
            .by_id
            .get(id)
            .map_or(OpStatus::NotStarted, |&r| runs.runs[r].status.clone()))
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<OpStatus, DriverError> {
        let until = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.ctx.shared.changed.subscribe();
        loop {
            let s = self.status(id).await?;
            if s.is_terminal() || s == OpStatus::NotStarted {
                return Ok(s);
            }
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                return Ok(s);
            }
        }
    }
}
