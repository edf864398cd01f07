//! The host operations done through the API: cordon and uncordon (recording on the Node
//! that kup cordoned it), and the drain (`kubectl drain`'s: list the node's pods, classify
//! them with `drain::classify`, evict them through the Eviction subresource, wait until they
//! are gone).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

use crate::cache::Shared;
use crate::convert::{CORDONED_BY_KUP, LOCKED_BY_KUP};
use crate::drain::{self, DaemonSetLookup, DrainOptions, PodRef};

/// Which `policy` API version the server serves: `policy/v1` from Kubernetes 1.21 (PDBs)
/// and 1.22 (evictions); older servers only `policy/v1beta1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyVersion {
    V1,
    V1beta1,
}

impl PolicyVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            PolicyVersion::V1 => "policy/v1",
            PolicyVersion::V1beta1 => "policy/v1beta1",
        }
    }
}

/// What the operation is blocked on now, for a failure or a cancel to name it, and what its
/// commands said on its hosts, for the event log.
#[derive(Clone, Default)]
pub(crate) struct Note(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    now: Option<String>,
    said: std::collections::VecDeque<kup_driver::HostOutput>,
}

/// At most this many commands' words are kept per operation, the last ones (a runaway
/// retry loop cannot fill the event log).
const SAID_KEPT: usize = 64;

impl Note {
    fn lock(&self) -> std::sync::MutexGuard<'_, Noted> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    pub fn set(&self, s: String) {
        self.lock().now = Some(s);
    }
    pub fn get(&self) -> Option<String> {
        self.lock().now.clone()
    }
    /// Keeps what a command said on `host`.
    pub fn said(&self, host: &str, message: String) {
        let mut n = self.lock();
        if n.said.len() == SAID_KEPT {
            n.said.pop_front();
        }
        n.said.push_back(kup_driver::HostOutput {
            host: host.into(),
            message,
        });
    }
    /// Takes what the commands said so far.
    pub fn take_said(&self) -> Vec<kup_driver::HostOutput> {
        std::mem::take(&mut self.lock().said).into()
    }
}

/// What an operation needs of the driver.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub client: Client,
    pub shared: Arc<Shared>,
    pub policy: PolicyVersion,
    pub drain_timeout: Duration,
    /// Between two evictions a budget refused (kubectl's 5 s).
    pub retry_interval: Duration,
    /// Between two looks at whether a pod is gone or a node Ready (kubectl's 1 s).
    pub poll_interval: Duration,
    /// The hosts, how to reach them and the commands of their steps.
    pub hosts: Arc<crate::hosts::HostsFile>,
    /// The bound of one command of a host step.
    pub command_timeout: Duration,
    pub patch_files: Option<crate::PatchFiles>,
}

fn api_error(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    api_error(e).is_some_and(|s| s.code == code)
}

/// An error as one line: the server's message when it gave one.
fn say(e: &kube::Error) -> String {
    match api_error(e) {
        Some(s) if !s.message.is_empty() => s.message.clone(),
        _ => e.to_string(),
    }
}

async fn read_node(nodes: &Api<Node>, host: &str) -> Result<Node, String> {
    nodes
        .get_opt(host)
        .await
        .map_err(|e| format!("cannot read node {host}: {}", say(&e)))?
        .ok_or_else(|| format!("no node {host} in the cluster"))
}

/// Makes `host` unschedulable and records that kup did. A node already unschedulable is
/// left as it is and not claimed: a cordon of a person's stays theirs. The change is
/// conditional on the node's resourceVersion, so a cordon made meanwhile is not taken over.
pub(crate) async fn cordon(ctx: &Ctx, host: &str) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    for _ in 0..10 {
        let node = read_node(&nodes, host).await?;
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            return Ok(());
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": node.metadata.resource_version,
                "annotations": { CORDONED_BY_KUP: "true" },
            },
            "spec": { "unschedulable": true },
        });
        match nodes
            .patch(host, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_code(&e, 409) => continue,
            Err(e) => return Err(format!("cannot cordon {host}: {}", say(&e))),
        }
    }
    Err(format!("cannot cordon {host}: it keeps changing"))
}

/// Undoes kup's cordon and lock of `host`: schedulable again only if kup made it
/// unschedulable. Returns whether the node is now schedulable.
pub(crate) async fn uncordon(ctx: &Ctx, host: &str) -> Result<bool, String> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    for _ in 0..10 {
        let node = read_node(&nodes, host).await?;
        let ann = node.metadata.annotations.clone().unwrap_or_default();
        let ours = ann.get(CORDONED_BY_KUP).is_some_and(|v| v == "true");
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        if !ours && !ann.contains_key(LOCKED_BY_KUP) {
            return Ok(!unschedulable);
        }
        let mut patch = json!({
            "metadata": {
                "resourceVersion": node.metadata.resource_version,
                "annotations": { CORDONED_BY_KUP: null, LOCKED_BY_KUP: null },
            },
        });
        if ours {
            patch["spec"] = json!({ "unschedulable": false });
        }
        match nodes
            .patch(host, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(ours || !unschedulable),
            Err(e) if is_code(&e, 409) => continue,
            Err(e) => return Err(format!("cannot uncordon {host}: {}", say(&e))),
        }
    }
    Err(format!("cannot uncordon {host}: it keeps changing"))
}

/// Records that kup's lock of `host` is complete.
pub(crate) async fn mark_locked(ctx: &Ctx, host: &str) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({ "metadata": { "annotations": { LOCKED_BY_KUP: "true" } } });
    nodes
        .patch(host, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot mark {host} locked: {}", say(&e)))
}

/// Waits until `host` reports Ready (no bound: the engine's deadline cancels it).
pub(crate) async fn wait_ready(ctx: &Ctx, host: &str, note: &Note) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    loop {
        match nodes.get_opt(host).await {
            Ok(Some(n)) => {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return Ok(());
                }
                note.set(format!("waiting for {host} to be Ready"));
            }
            Ok(None) => return Err(format!("no node {host} in the cluster")),
            Err(e) => note.set(format!("cannot read node {host}: {}", say(&e))),
        }
        tokio::time::sleep(ctx.poll_interval).await;
    }
}

/// The pods bound to `host`, listed from the server in chunks of 500 (kubectl's), served from
/// its watch cache (`resourceVersion=0`, indexed by node): not a read of every pod from etcd
/// per drain, on a cluster of 150,000. A pod bound since is evicted when the drain looks again.
async fn pods_on(client: &Client, host: &str) -> Result<Vec<Pod>, String> {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default()
            .fields(&format!("spec.nodeName={host}"))
            .match_any()
            .limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = pods
            .list(&lp)
            .await
            .map_err(|e| format!("cannot list the pods of {host}: {}", say(&e)))?;
        out.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// How one eviction ended.
enum Evicted {
    /// The server accepted it: wait for the pod to go.
    Accepted(PodRef),
    /// The pod was gone already.
    Gone,
}

/// Drains `host` as `kubectl drain --ignore-daemonsets` with `options` and a timeout of
/// `ctx.drain_timeout`. The error names every pod that could not be evicted, and why.
pub(crate) async fn drain(
    ctx: &Ctx,
    host: &str,
    options: DrainOptions,
    note: &Note,
) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + ctx.drain_timeout;
    let pods = pods_on(&ctx.client, host).await?;
    // kubectl asks for each DaemonSet-owned pod's DaemonSet while filtering.
    let mut daemon_sets: BTreeMap<(String, String), DaemonSetLookup> = BTreeMap::new();
    for p in &pods {
        let Some((kind, name)) = crate::convert::controller_ref(p) else {
            continue;
        };
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        if kind != "DaemonSet" || daemon_sets.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        let found = match api.get_opt(&name).await {
            Ok(Some(_)) => DaemonSetLookup::Exists,
            Ok(None) => DaemonSetLookup::NotFound,
            Err(e) => DaemonSetLookup::Failed(say(&e)),
        };
        daemon_sets.insert((ns, name), found);
    }
    let now = jiff::Timestamp::now().as_second();
    let plan = drain::classify(&pods, &options, now, &|ns, name| {
        daemon_sets
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .unwrap_or(DaemonSetLookup::Exists)
    });
    if let Some(refusal) = plan.refusal() {
        return Err(format!("cannot drain {host}: {refusal}"));
    }
    let results: Vec<Result<Evicted, String>> = futures_util::stream::iter(plan.evict)
        .map(|(pod, _)| evict(ctx, pod, deadline, note))
        .buffer_unordered(EVICTIONS_AT_ONCE)
        .collect()
        .await;
    let mut errors = Vec::new();
    let mut waiting = Vec::new();
    for r in results {
        match r {
            Ok(Evicted::Accepted(p)) => waiting.push(p),
            Ok(Evicted::Gone) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(format!("drain of {host} failed: {}", errors.join("; ")));
    }
    wait_deleted(ctx, host, waiting, started, deadline, note).await
}

/// Evictions in flight at once (kubectl starts one per pod; bounded here so a node of a
/// few hundred pods does not open as many requests).
const EVICTIONS_AT_ONCE: usize = 16;

/// Evicts one pod: a refusal by its budget (429) is tried again every `retry_interval`
/// until the drain's deadline; a 500 (the pod is under several budgets) fails at once; 404
/// means it is gone.
async fn evict(ctx: &Ctx, pod: PodRef, deadline: Instant, note: &Note) -> Result<Evicted, String> {
    let body = json!({
        "apiVersion": ctx.policy.api_version(),
        "kind": "Eviction",
        "metadata": { "name": pod.name, "namespace": pod.namespace },
    });
    let url = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        pod.namespace, pod.name
    );
    loop {
        let req = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| format!("cannot build the eviction of {pod}: {e}"))?;
        let err = match ctx.client.request_text(req).await {
            Ok(_) => return Ok(Evicted::Accepted(pod)),
            Err(e) => e,
        };
        let pdbs = || budgets_named(ctx, &pod);
        match api_error(&err).map(|s| s.code) {
            Some(404) => return Ok(Evicted::Gone),
            Some(429) => {
                let why = format!(
                    "pod {pod} cannot be evicted: {} ({})",
                    pdbs(),
                    refusal_detail(&err)
                );
                if Instant::now() + ctx.retry_interval > deadline {
                    return Err(format!(
                        "timed out after {} s: {why}",
                        ctx.drain_timeout.as_secs()
                    ));
                }
                tracing::info!(%pod, "eviction refused, will retry: {why}");
                note.set(why);
                tokio::time::sleep(ctx.retry_interval).await;
            }
            Some(500) => {
                return Err(format!(
                    "pod {pod} cannot be evicted: {} ({})",
                    pdbs(),
                    refusal_detail(&err)
                ));
            }
            _ => return Err(format!("cannot evict {pod}: {}", say(&err))),
        }
    }
}

/// The budgets kup sees selecting a pod, as a phrase.
fn budgets_named(ctx: &Ctx, pod: &PodRef) -> String {
    let names = ctx.shared.lock().pdbs_of(&pod.namespace, &pod.name);
    match names.as_slice() {
        [] => "refused by the API server".into(),
        [one] => format!("PodDisruptionBudget {one} allows no disruption now"),
        many => format!(
            "it is covered by several PodDisruptionBudgets ({})",
            many.join(", ")
        ),
    }
}

/// The server's message and the causes it gives (the budget's name and counts).
fn refusal_detail(e: &kube::Error) -> String {
    let Some(s) = api_error(e) else {
        return e.to_string();
    };
    let mut parts = vec![s.message.clone()];
    if let Some(d) = &s.details {
        parts.extend(d.causes.iter().map(|c| c.message.clone()));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// Waits until every evicted pod is gone (or replaced: another uid under its name), as
/// kubectl does, polling each until the drain's deadline.
async fn wait_deleted(
    ctx: &Ctx,
    host: &str,
    mut pods: Vec<PodRef>,
    started: Instant,
    deadline: Instant,
    note: &Note,
) -> Result<(), String> {
    loop {
        let mut left = Vec::new();
        for p in pods {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace);
            match api.get_opt(&p.name).await {
                Ok(Some(x)) if x.metadata.uid.as_deref() == Some(p.uid.as_str()) => left.push(p),
                Ok(_) => {}
                // Not known to be gone: looked at again.
                Err(_) => left.push(p),
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = left.iter().map(ToString::to_string).collect();
        if Instant::now() + ctx.poll_interval > deadline {
            return Err(format!(
                "drain of {host} timed out after {} s: evicted pods still terminating: {}",
                started.elapsed().as_secs(),
                names.join(", ")
            ));
        }
        note.set(format!(
            "waiting for evicted pods to terminate: {}",
            names.join(", ")
        ));
        pods = left;
        tokio::time::sleep(ctx.poll_interval).await;
    }
}
