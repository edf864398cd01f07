//! `KubeDriver` against a real kube-apiserver (v1.20.2) and etcd. There is no kubelet, no
//! scheduler and no controller manager: each test creates the Nodes, Pods, budgets and
//! controllers itself and writes their status as a kubelet and the disruption controller
//! would.

mod common;

use std::time::Duration;

use common::ApiServer;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use kup_driver::{Driver, DriverError};
use kup_kube::{HostsFile, KubeDriver, PolicyVersion, Settings};
use kup_types::{AdminState, KubeVersion, OpStatus, Operation};
use serde_json::{Value, json};

const V: KubeVersion = KubeVersion::new(1, 20, 2);
const WAIT: Duration = Duration::from_secs(20);

fn hosts(names: &[(&str, &str)]) -> HostsFile {
    let mut s = String::from("hosts:\n");
    for (name, personality) in names {
        s += &format!(
            "  - name: {name}\n    personality: {personality}\n    ssh: {{address: 127.0.0.1, user: kup, key_file: /k, known_hosts: /kh}}\n"
        );
    }
    HostsFile::parse(&s).unwrap()
}

/// A client of the server, once the server's own bootstrap has created the `default` and
/// `kube-system` namespaces (shortly after it reports ready).
async fn client(server: &ApiServer) -> Client {
    let c = kup_kube::client_from_kubeconfig(&server.kubeconfig(), None)
        .await
        .unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    for _ in 0..300 {
        let (a, b) = (
            namespaces.get_opt("default").await.unwrap(),
            namespaces.get_opt("kube-system").await.unwrap(),
        );
        if a.is_some() && b.is_some() {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the API server made no default and kube-system namespaces");
}

fn fast() -> Settings {
    Settings {
        drain_timeout: Duration::from_secs(30),
        eviction_retry: Duration::from_millis(500),
        poll_interval: Duration::from_millis(200),
        sync_timeout: Duration::from_secs(30),
        command_timeout: Duration::from_secs(30),
        metrics_interval: Duration::from_millis(300),
        patch_files: None,
    }
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// A Ready node running kubelet v1.20.2, as its kubelet would register it.
async fn node(c: &Client, name: &str, labels: Value) {
    let nodes: Api<Node> = Api::all(c.clone());
    create(
        &nodes,
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .await;
    let status = json!({"status": {
        "nodeInfo": {"kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "machineID": "m",
            "systemUUID": "s", "bootID": "b", "kernelVersion": "k", "osImage": "o",
            "containerRuntimeVersion": "c", "operatingSystem": "linux", "architecture": "amd64"},
        "conditions": [{"type": "Ready", "status": "True"}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110", "ephemeral-storage": "90Gi"},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

struct PodSpec<'a> {
    ns: &'a str,
    name: &'a str,
    node: &'a str,
    labels: Value,
    owner: Option<(&'a str, &'a str, &'a str)>,
    grace: i64,
    phase: &'a str,
    extra: Value,
}

fn spec<'a>(ns: &'a str, name: &'a str, node: &'a str) -> PodSpec<'a> {
    PodSpec {
        ns,
        name,
        node,
        labels: json!({}),
        owner: None,
        grace: 0,
        phase: "Running",
        extra: json!({}),
    }
}

/// A pod bound to its node and reported running and ready, as a kubelet would.
async fn pod(c: &Client, p: PodSpec<'_>) -> Pod {
    let pods: Api<Pod> = Api::namespaced(c.clone(), p.ns);
    let mut v = json!({
        "metadata": {"name": p.name, "namespace": p.ns, "labels": p.labels},
        "spec": {"nodeName": p.node, "terminationGracePeriodSeconds": p.grace,
            "containers": [{"name": "c", "image": "registry.example/app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    });
    if let Some((kind, name, uid)) = p.owner {
        let api = if kind == "Job" { "batch/v1" } else { "apps/v1" };
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": true}]);
    }
    merge(&mut v, p.extra);
    create(&pods, v).await;
    let ready = if p.phase == "Running" {
        "True"
    } else {
        "False"
    };
    let status = json!({"status": {"phase": p.phase,
        "conditions": [{"type": "Ready", "status": ready}]}});
    pods.patch_status(p.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn pdb_resource() -> ApiResource {
    ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    }
}

/// A policy/v1beta1 budget (the only one a 1.20 server has) with the status the disruption
/// controller would write: `allowed` disruptions now.
async fn pdb(
    c: &Client,
    ns: &str,
    name: &str,
    app: &str,
    min_available: u32,
    healthy: u32,
    allowed: u32,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), ns, &pdb_resource());
    let obj = create(
        &api,
        json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}}}),
    )
    .await;
    let status = json!({"status": {"observedGeneration": obj.metadata.generation,
        "disruptionsAllowed": allowed, "currentHealthy": healthy,
        "desiredHealthy": min_available, "expectedPods": healthy}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn pod_exists(c: &Client, ns: &str, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(c.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

async fn get_node(c: &Client, name: &str) -> Node {
    Api::<Node>::all(c.clone()).get(name).await.unwrap()
}

fn annotations(n: &Node) -> std::collections::BTreeMap<String, String> {
    n.metadata.annotations.clone().unwrap_or_default()
}

fn unschedulable(n: &Node) -> bool {
    n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
}

async fn finish(d: &KubeDriver, id: &str) -> OpStatus {
    let s = d.wait(id, Duration::from_secs(60)).await.unwrap();
    assert!(s.is_terminal(), "{id} still {s:?}");
    s
}

/// The hosts' view and the pods come from the API and follow its changes: nodes, kubeadm's
/// static pods and ConfigMap, pods with their owners resolved, budgets, controllers.
#[tokio::test]
async fn observes_the_cluster_and_follows_its_changes() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    let c = client(&server).await;
    node(&c, "cp-0", json!({"node-role.kubernetes.io/master": ""})).await;
    node(&c, "w-0", json!({"zone": "a"})).await;
    node(&c, "stranger", json!({})).await;
    for comp in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let name = format!("{comp}-cp-0");
        let mut s = spec("kube-system", &name, "cp-0");
        s.labels = json!({"component": comp, "tier": "control-plane"});
        s.owner = Some(("Node", "cp-0", "node-uid"));
        s.extra = json!({
            "metadata": {"annotations": {"kubernetes.io/config.mirror": "x"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "cp-0", "uid": "n", "controller": true}]},
            "spec": {"containers": [{"name": comp, "image": format!("k8s.gcr.io:5000/{comp}:v1.20.2")}]},
        });
        pod(&c, s).await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-system");
    create(&cms, json!({"metadata": {"name": "kubeadm-config"}, "data": {
        "ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n"}})).await;
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let dep = create(
        &deps,
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    )
    .await;
    let dep_uid = dep.metadata.uid.clone().unwrap();
    let mut s = spec("default", "web-1", "w-0");
    s.labels = json!({"app": "web"});
    s.owner = Some(("ReplicaSet", "web-5d4", "rs-uid"));
    s.extra = json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}],
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "nodeSelector": {"zone": "a"}}});
    pod(&c, s).await;
    pdb(&c, "default", "web-pdb", "web", 1, 1, 0).await;
    let driver = KubeDriver::connect(
        c.clone(),
        hosts(&[("cp-0", "controller"), ("w-0", "worker"), ("w-9", "worker")]),
        fast(),
    )
    .await
    .unwrap();
    assert_eq!(
        driver.policy_version(),
        PolicyVersion::V1beta1,
        "1.20 has no policy/v1"
    );
    driver.check().await.unwrap();

    let obs = driver.observe().await.unwrap();
    let names: Vec<&str> = obs.hosts.iter().map(|h| h.hostname.as_str()).collect();
    assert_eq!(
        names,
        ["cp-0", "w-0", "w-9"],
        "the hosts file's hosts, in its order"
    );
    let w0 = obs.host("w-0").unwrap();
    assert!(w0.in_service());
    assert_eq!(
        (w0.capacity.cpu_millis, w0.capacity.memory_mib),
        (3800, 7168)
    );
    assert_eq!(w0.disk_free_gib, 90);
    assert_eq!(w0.uuid, get_node(&c, "w-0").await.metadata.uid.unwrap());
    let w9 = obs.host("w-9").unwrap();
    assert!(!w9.in_service(), "a host without a Node is offline");
    // A Node the hosts file forgot raises an alarm that holds the start back.
    let alarm = obs.alarms.iter().find(|a| a.alarm_id == "900.101").unwrap();
    assert!(alarm.management_affecting);
    assert!(
        alarm
            .reason_text
            .starts_with("Nodes not in kup's hosts file: stranger; "),
        "{}",
        alarm.reason_text
    );
    assert!(
        obs.node("stranger").is_none(),
        "only the hosts file's nodes"
    );
    assert_eq!(obs.kubelet_version("w-0"), Some(V));
    assert_eq!(
        obs.node("cp-0")
            .unwrap()
            .labels
            .get("node-role.kubernetes.io/master")
            .map(String::as_str),
        Some("")
    );
    assert_eq!(obs.control_plane_version("cp-0"), Some(V));
    assert_eq!(obs.control_plane_pods.len(), 3);
    assert_eq!(driver.kubeadm_version(), Some(V));

    // The ReplicaSet arrives after its pod: the pod is counted under the Deployment then.
    let rss: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    create(&rss, json!({"metadata": {"name": "web-5d4", "ownerReferences": [{"apiVersion": "apps/v1",
        "kind": "Deployment", "name": "web", "uid": dep_uid, "controller": true}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}})).await;
    assert!(
        driver
            .wait_for(WAIT, |_, wl| wl.iter().any(|(_, p)| p.name == "web-1"
                && p.owner_kind == "Deployment"
                && p.owner == "web"))
            .await,
        "web-1 counted under its Deployment"
    );
    let wl = driver.workloads().await.unwrap();
    let (id, web1) = wl.iter().find(|(_, p)| p.name == "web-1").unwrap();
    assert_eq!(web1.node.as_deref(), Some("w-0"));
    assert!(web1.ready);
    assert_eq!(
        (web1.requests.cpu_millis, web1.requests.memory_mib),
        (100, 64)
    );
    assert_eq!(web1.volumes, [kup_types::VolumeKind::EmptyDir]);
    // The server's DefaultTolerationSeconds admission adds not-ready and unreachable.
    assert!(
        web1.tolerations.iter().any(|t| t == "dedicated"),
        "{:?}",
        web1.tolerations
    );
    assert_eq!(
        web1.node_selector.get("zone").map(String::as_str),
        Some("a")
    );
    let budgets: Vec<&str> = wl
        .pdbs_of(id)
        .iter()
        .map(|&b| wl.budget(b).pdb.name.as_str())
        .collect();
    assert_eq!(budgets, ["web-pdb"]);
    assert_eq!(wl.budget(wl.pdbs_of(id)[0]).pdb.min_available, Some(1));
    let web = wl.workload("default", "Deployment", "web").unwrap();
    assert_eq!(web.replicas, 2);
    assert!(
        wl.workload("default", "ReplicaSet", "web-5d4").is_none(),
        "counted as its Deployment"
    );
    let mirror = wl
        .iter()
        .find(|(_, p)| p.name == "kube-apiserver-cp-0")
        .unwrap()
        .1;
    assert_eq!(
        (mirror.owner_kind.as_str(), mirror.owner.as_str()),
        ("Node", "cp-0")
    );

    // Changes arrive by watch: a person's cordon, a node going NotReady, a new image tag, a
    // pod deleted, a budget and a DaemonSet added.
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .patch(
            "w-0",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            "cp-0",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        )
        .await
        .unwrap();
    let sys: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
    sys.patch(
        "kube-scheduler-cp-0",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"containers": [{"name": "kube-scheduler", "image": "k8s.gcr.io/kube-scheduler:v1.21.0"}]}})),
    )
    .await
    .unwrap();
    Api::<Pod>::namespaced(c.clone(), "default")
        .delete("web-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let dss: Api<DaemonSet> = Api::namespaced(c.clone(), "default");
    create(&dss, json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})).await;
    assert!(
        driver
            .wait_for(WAIT, |obs, wl| {
                let w0 = obs.node("w-0").unwrap();
                w0.unschedulable
                    && obs.host("w-0").unwrap().administrative == AdminState::Unlocked
                    && !obs.host("cp-0").unwrap().in_service()
                    && obs.control_plane_version("cp-0") == Some(V)
                    && obs
                        .control_plane_pods
                        .iter()
                        .any(|p| p.version == KubeVersion::new(1, 21, 0))
                    && !wl.iter().any(|(_, p)| p.name == "web-1")
                    && wl.workload("default", "DaemonSet", "agent").is_some()
            })
            .await,
        "the watchers saw every change"
    );
}

/// Lock = cordon + drain by evictions through policy/v1beta1; unlock = uncordon of what kup
/// cordoned; a person's cordon stays theirs; starting the same operation twice is one run;
/// aio-simplex's cordon and uncordon.
#[tokio::test]
async fn locks_by_cordon_and_eviction_and_unlocks_only_its_own_cordon() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    let c = client(&server).await;
    for n in ["w-0", "w-1", "w-2"] {
        node(&c, n, json!({})).await;
    }
    let dss: Api<DaemonSet> = Api::namespaced(c.clone(), "default");
    let ds = create(&dss, json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})).await;
    let ds_uid = ds.metadata.uid.unwrap();
    let web = |name: &'static str, node: &'static str| {
        let mut s = spec("default", name, node);
        s.labels = json!({"app": "web"});
        s.owner = Some(("ReplicaSet", "web-5d4", "rs-uid"));
        s
    };
    pod(&c, web("web-1", "w-0")).await;
    pod(&c, web("web-2", "w-1")).await;
    pod(&c, web("web-3", "w-2")).await;
    let mut agent = spec("default", "agent-w0", "w-0");
    agent.owner = Some(("DaemonSet", "agent", &ds_uid));
    pod(&c, agent).await;
    let mut stat = spec("default", "static-w0", "w-0");
    stat.extra = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}});
    pod(&c, stat).await;
    let mut done = spec("default", "done", "w-0");
    done.phase = "Succeeded";
    pod(&c, done).await;
    // Two of three may go at once.
    pdb(&c, "default", "web-pdb", "web", 1, 3, 2).await;

    let driver = KubeDriver::connect(
        c.clone(),
        hosts(&[("w-0", "worker"), ("w-1", "worker"), ("w-2", "worker")]),
        fast(),
    )
    .await
    .unwrap();
    let lock = Operation::Lock {
        host: "w-0".into(),
        force: false,
    };
    driver.start("op-1", &lock).await.unwrap();
    driver.start("op-1", &lock).await.unwrap();
    driver.start("op-1b", &lock).await.unwrap();
    assert_eq!(finish(&driver, "op-1").await, OpStatus::Succeeded);
    assert_eq!(
        driver.status("op-1b").await.unwrap(),
        OpStatus::Succeeded,
        "attached to op-1"
    );
    assert_eq!(driver.status("op-x").await.unwrap(), OpStatus::NotStarted);
    let w0 = get_node(&c, "w-0").await;
    assert!(unschedulable(&w0));
    assert_eq!(
        annotations(&w0)
            .get("kup.io/cordoned-by-kup")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        pod_exists(&c, "default", "web-1").await.is_none(),
        "evicted (grace 0: deleted at once)"
    );
    assert!(
        pod_exists(&c, "default", "done").await.is_none(),
        "a finished pod is evicted too"
    );
    assert!(
        pod_exists(&c, "default", "agent-w0").await.is_some(),
        "DaemonSet pods stay"
    );
    assert!(
        pod_exists(&c, "default", "static-w0").await.is_some(),
        "mirror pods stay"
    );
    assert!(pod_exists(&c, "default", "web-2").await.is_some());
    assert!(
        driver
            .wait_for(WAIT, |obs, _| obs.host("w-0").unwrap().administrative
                == AdminState::Locked
                && obs.host("w-0").unwrap().task.is_none())
            .await,
        "w-0 shows locked"
    );

    // A person cordons w-1; kup's lock and unlock leave their cordon in place.
    Api::<Node>::all(c.clone())
        .patch(
            "w-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    driver
        .start(
            "op-2",
            &Operation::Lock {
                host: "w-1".into(),
                force: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(finish(&driver, "op-2").await, OpStatus::Succeeded);
    let w1 = get_node(&c, "w-1").await;
    assert!(
        !annotations(&w1).contains_key("kup.io/cordoned-by-kup"),
        "not claimed"
    );
    assert!(
        pod_exists(&c, "default", "web-2").await.is_none(),
        "drained all the same"
    );
    driver
        .start("op-3", &Operation::Unlock { host: "w-1".into() })
        .await
        .unwrap();
    assert_eq!(finish(&driver, "op-3").await, OpStatus::Succeeded);
    let w1 = get_node(&c, "w-1").await;
    assert!(unschedulable(&w1), "the person's cordon stays");
    assert!(
        annotations(&w1).is_empty(),
        "kup's marks are gone: {:?}",
        annotations(&w1)
    );

    driver
        .start("op-4", &Operation::Unlock { host: "w-0".into() })
        .await
        .unwrap();
    assert_eq!(finish(&driver, "op-4").await, OpStatus::Succeeded);
    let w0 = get_node(&c, "w-0").await;
    assert!(!unschedulable(&w0), "kup's own cordon is undone");
    assert!(annotations(&w0).is_empty());
    assert!(
        driver
            .wait_for(WAIT, |obs, _| obs.host("w-0").unwrap().in_service()
                && obs.host("w-1").unwrap().administrative == AdminState::Unlocked)
            .await
    );

    // aio-simplex's cordon: drained and unschedulable, but the host is not locked; the
    // uncordon undoes it. The disruption controller gives the budget room again first (each
    // eviction took one of its allowed disruptions).
    let budgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &pdb_resource());
    let generation = budgets.get("web-pdb").await.unwrap().metadata.generation;
    budgets
        .patch_status(
            "web-pdb",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"observedGeneration": generation, "disruptionsAllowed": 1}}),
            ),
        )
        .await
        .unwrap();
    driver
        .start("op-c", &Operation::Cordon { host: "w-2".into() })
        .await
        .unwrap();
    assert_eq!(finish(&driver, "op-c").await, OpStatus::Succeeded);
    assert!(pod_exists(&c, "default", "web-3").await.is_none());
    assert!(unschedulable(&get_node(&c, "w-2").await));
    assert!(
        driver
            .wait_for(WAIT, |obs, _| obs.node("w-2").unwrap().unschedulable
                && obs.host("w-2").unwrap().administrative == AdminState::Unlocked)
            .await
    );
    driver
        .start("op-u", &Operation::Uncordon { host: "w-2".into() })
        .await
        .unwrap();
    assert_eq!(finish(&driver, "op-u").await, OpStatus::Succeeded);
    let w2 = get_node(&c, "w-2").await;
    assert!(!unschedulable(&w2) && annotations(&w2).is_empty());

    // What a kubeadm cluster does not have is refused, saying why (the host steps over SSH:
    // tests/host_steps.rs).
    let refused = |r: Result<(), DriverError>| match r {
        Err(DriverError::Rejected { reason, .. }) => reason,
        other => panic!("not refused: {other:?}"),
    };
    let swact = refused(
        driver
            .start("op-5", &Operation::Swact { host: "w-2".into() })
            .await,
    );
    assert!(swact.contains("no active controller"), "{swact}");
    let unknown = refused(
        driver
            .start(
                "op-7",
                &Operation::Lock {
                    host: "w-9".into(),
                    force: false,
                },
            )
            .await,
    );
    assert!(unknown.contains("no host w-9"), "{unknown}");
}

/// A drain a budget blocks times out naming the pod and the budget, and kup's cordon is
/// undone; a pod under two budgets fails at once (500); an unmanaged pod is refused before
/// anything is evicted; a pod that terminates slowly (no kubelet here: the test plays it)
/// is waited for; a drain cancelled at the engine's deadline names what it was blocked on.
#[tokio::test]
async fn drains_that_cannot_finish_say_why() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    let c = client(&server).await;
    for n in ["w-0", "w-1", "w-2", "w-3"] {
        node(&c, n, json!({})).await;
    }
    let mut db = spec("default", "db-0", "w-0");
    db.labels = json!({"app": "db"});
    db.owner = Some(("StatefulSet", "db", "ss-uid"));
    pod(&c, db).await;
    pdb(&c, "default", "db-pdb", "db", 1, 1, 0).await;
    let mut both = spec("default", "shared-0", "w-1");
    both.labels = json!({"app": "shared", "tier": "x"});
    both.owner = Some(("StatefulSet", "shared", "ss2-uid"));
    pod(&c, both).await;
    pdb(&c, "default", "shared-a", "shared", 0, 1, 1).await;
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &pdb_resource());
    create(&api, json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "shared-b"}, "spec": {"minAvailable": 0, "selector": {"matchLabels": {"tier": "x"}}}})).await;
    pod(&c, spec("default", "bare", "w-2")).await;
    let mut slow = spec("default", "slow", "w-3");
    slow.owner = Some(("ReplicaSet", "slow-1", "rs-uid"));
    slow.grace = 30;
    pod(&c, slow).await;

    let settings = Settings {
        drain_timeout: Duration::from_secs(4),
        ..fast()
    };
    let driver = KubeDriver::connect(
        c.clone(),
        hosts(&[
            ("w-0", "worker"),
            ("w-1", "worker"),
            ("w-2", "worker"),
            ("w-3", "worker"),
        ]),
        settings,
    )
    .await
    .unwrap();

    driver
        .start(
            "db",
            &Operation::Lock {
                host: "w-0".into(),
                force: false,
            },
        )
        .await
        .unwrap();
    let OpStatus::Failed(why) = finish(&driver, "db").await else {
        panic!("the drain passed")
    };
    assert!(why.contains("timed out after"), "{why}");
    assert!(why.contains("pod default/db-0"), "{why}");
    assert!(why.contains("PodDisruptionBudget default/db-pdb"), "{why}");
    assert!(
        why.contains("would violate the pod's disruption budget"),
        "the server's words: {why}"
    );
    eprintln!("blocked drain: {why}");
    assert!(pod_exists(&c, "default", "db-0").await.is_some());
    let w0 = get_node(&c, "w-0").await;
    assert!(
        !unschedulable(&w0) && annotations(&w0).is_empty(),
        "the failed lock's cordon is undone"
    );

    let started = std::time::Instant::now();
    driver
        .start(
            "shared",
            &Operation::Lock {
                host: "w-1".into(),
                force: false,
            },
        )
        .await
        .unwrap();
    let OpStatus::Failed(why) = finish(&driver, "shared").await else {
        panic!("the drain passed")
    };
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a 500 is not retried: {why}"
    );
    assert!(
        why.contains("several PodDisruptionBudgets (default/shared-a, default/shared-b)"),
        "{why}"
    );
    assert!(
        why.contains("more than one PodDisruptionBudget"),
        "the server's words: {why}"
    );
    eprintln!("several budgets: {why}");

    driver
        .start(
            "bare",
            &Operation::Lock {
                host: "w-2".into(),
                force: false,
            },
        )
        .await
        .unwrap();
    let OpStatus::Failed(why) = finish(&driver, "bare").await else {
        panic!("the drain passed")
    };
    assert!(
        why.contains("not managed by") && why.contains("default/bare"),
        "{why}"
    );
    assert!(
        pod_exists(&c, "default", "bare").await.is_some(),
        "nothing evicted"
    );
    driver
        .start(
            "bare-forced",
            &Operation::Lock {
                host: "w-2".into(),
                force: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(finish(&driver, "bare-forced").await, OpStatus::Succeeded);
    assert!(pod_exists(&c, "default", "bare").await.is_none());

    // Without a kubelet an evicted pod with a grace period stays Terminating: the test is the
    // kubelet and deletes it with grace 0 once it sees the deletion.
    let settings = Settings {
        drain_timeout: Duration::from_secs(30),
        ..fast()
    };
    drop(driver);
    let driver = KubeDriver::connect(
        c.clone(),
        hosts(&[("w-0", "worker"), ("w-3", "worker")]),
        settings,
    )
    .await
    .unwrap();
    driver
        .start(
            "slow",
            &Operation::Lock {
                host: "w-3".into(),
                force: false,
            },
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut terminating = false;
    for _ in 0..100 {
        let p = pods.get("slow").await.unwrap();
        if p.metadata.deletion_timestamp.is_some() {
            terminating = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(terminating, "eviction marked the pod for deletion");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        driver.status("slow").await.unwrap(),
        OpStatus::Running,
        "waiting for the pod to go"
    );
    pods.delete("slow", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(finish(&driver, "slow").await, OpStatus::Succeeded);

    // A drain given up at its deadline: the engine cancels it; the failure says what it was
    // blocked on, and kup's cordon is undone.
    driver
        .start(
            "db-2",
            &Operation::Lock {
                host: "w-0".into(),
                force: false,
            },
        )
        .await
        .unwrap();
    let mut blocked = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if unschedulable(&get_node(&c, "w-0").await) {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the lock cordoned w-0");
    tokio::time::sleep(Duration::from_secs(1)).await;
    driver.cancel("db-2").await.unwrap();
    let OpStatus::Failed(why) = driver.status("db-2").await.unwrap() else {
        panic!("not failed")
    };
    assert!(
        why.starts_with("cancelled while pod default/db-0 cannot be evicted"),
        "{why}"
    );
    let w0 = get_node(&c, "w-0").await;
    assert!(
        !unschedulable(&w0) && annotations(&w0).is_empty(),
        "cordon undone"
    );
    assert!(pod_exists(&c, "default", "db-0").await.is_some());
}

/// The removed-API check's source: a client that requests a deprecated API (here
/// `extensions/v1beta1` Ingresses, which 1.22 removes) shows in the API server's own metric,
/// and so in the driver's `api_usage`, with the release that removes it.
#[tokio::test]
async fn deprecated_apis_that_clients_request_are_seen() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    let c = client(&server).await;
    node(&c, "w-0", json!({})).await;
    let driver = KubeDriver::connect(c.clone(), hosts(&[("w-0", "worker")]), fast())
        .await
        .unwrap();
    assert!(
        driver
            .observe()
            .await
            .unwrap()
            .api_usage
            .iter()
            .all(|u| u.resource != "ingresses")
    );
    let req = http::Request::get("/apis/extensions/v1beta1/ingresses")
        .body(Vec::new())
        .unwrap();
    c.request_text(req).await.unwrap();
    assert!(
        driver
            .wait_for(WAIT, |obs, _| obs.api_usage.iter().any(|u| u.group
                == "extensions"
                && u.version == "v1beta1"
                && u.resource == "ingresses"
                && u.removed_release.as_deref() == Some("1.22")))
            .await,
        "{:?}",
        driver.observe().await.unwrap().api_usage
    );
}

/// The removed-API check's other source: objects last applied (`kubectl apply`) with a
/// pre-release API version, as their `last-applied-configuration` annotation records it:
/// a Deployment and an Ingress applied as `extensions/v1beta1` and a budget as `policy/v1beta1` show in
/// `api_usage` with the object; one applied as `apps/v1` does not; the start check to 1.25
/// names the budget; a re-apply with the stable version takes the Deployment's away.
#[tokio::test]
async fn apis_that_objects_were_applied_with_are_seen() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    let c = client(&server).await;
    node(&c, "w-0", json!({})).await;
    let driver = KubeDriver::connect(c.clone(), hosts(&[("w-0", "worker")]), fast())
        .await
        .unwrap();
    let applied =
        |v: Value| json!({ "kubectl.kubernetes.io/last-applied-configuration": v.to_string() });
    let deployment = |name: &str, api_version: &str| {
        json!({"metadata": {"name": name, "namespace": "default",
                "annotations": applied(json!({"apiVersion": api_version, "kind": "Deployment",
                    "metadata": {"name": name}}))},
            "spec": {"selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    };
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    create(&deployments, deployment("old", "extensions/v1beta1")).await;
    create(&deployments, deployment("new", "apps/v1")).await;
    let budgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &pdb_resource());
    create(
        &budgets,
        json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "old", "namespace": "default",
                "annotations": applied(json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget"}))},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "old"}}}}),
    )
    .await;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(c.clone(), "default");
    create(
        &ingresses,
        json!({"metadata": {"name": "shop", "namespace": "default",
                "annotations": applied(json!({"apiVersion": "extensions/v1beta1", "kind": "Ingress"}))},
            "spec": {"defaultBackend": {"service": {"name": "shop", "port": {"number": 80}}}}}),
    )
    .await;
    let seen = |obs: &kup_types::Observation| {
        let mut s: Vec<String> = obs
            .api_usage
            .iter()
            .filter(|u| u.seen_in != "API server")
            .map(|u| format!("{} {} {}", u.group_version(), u.resource, u.seen_in))
            .collect();
        s.sort();
        s
    };
    let want = [
        "extensions/v1beta1 deployments default/old",
        "extensions/v1beta1 ingresses default/shop",
        "policy/v1beta1 poddisruptionbudgets default/old",
    ];
    assert!(
        driver.wait_for(WAIT, |obs, _| seen(obs) == want).await,
        "{:?}",
        seen(&driver.observe().await.unwrap())
    );
    // What the start check makes of them, on the way to 1.25 (which removes both).
    let check = kup_core::removed_apis::removed_api_check(
        &driver.observe().await.unwrap(),
        KubeVersion::new(1, 20, 2),
        KubeVersion::new(1, 25, 0),
        false,
    );
    // (extensions/v1beta1 went in 1.16, before this cluster's version: not this upgrade's.)
    assert_eq!(
        check.failure.as_deref(),
        Some(
            "APIs in use that v1.25.0 removes: extensions/v1beta1 ingresses (removed in v1.22; used by default/shop), policy/v1beta1 poddisruptionbudgets (removed in v1.25; used by default/old)"
        )
    );
    // Applied again as apps/v1: no longer a use of the removed version.
    let patch = json!({"metadata": {"annotations": applied(json!({"apiVersion": "apps/v1", "kind": "Deployment"}))}});
    deployments
        .patch("old", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(
        driver.wait_for(WAIT, |obs, _| seen(obs) == want[1..]).await,
        "{:?}",
        seen(&driver.observe().await.unwrap())
    );
}

/// A pod's claims, read through the PersistentVolumes they are bound to: a local volume (or
/// one node affinity ties to a node) keeps the data on its host, so the pod cannot move
/// (HostPathPv); network storage follows the pod (Pvc). A volume bound after the pod was
/// seen, or a claim bound again elsewhere, changes what the pod counts as.
#[tokio::test]
async fn a_pods_claims_are_local_or_network_as_their_volumes_are() {
    use kup_types::VolumeKind;
    let Some(server) = ApiServer::start() else {
        return;
    };
    let c = client(&server).await;
    node(&c, "w-0", json!({})).await;
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(c.clone());
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(c.clone(), "default");
    let local_pv = |name: &str| {
        json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "local": {"path": "/mnt/disks/a"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["w-0"]}]}]}}}})
    };
    let nfs_pv = |name: &str| {
        json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                "nfs": {"server": "nfs.example", "path": "/export"}}})
    };
    let claim = |name: &str, volume: &str| {
        json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}}}})
    };
    create(&pvs, local_pv("local-a")).await;
    create(&pvs, nfs_pv("nfs-a")).await;
    create(&claims, claim("data-db-0", "local-a")).await;
    create(&claims, claim("shared", "nfs-a")).await;
    let mut s = spec("default", "db-0", "w-0");
    s.extra = json!({"spec": {"volumes": [
        {"name": "tmp", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}},
        {"name": "late", "persistentVolumeClaim": {"claimName": "late"}}]}});
    pod(&c, s).await;
    let driver = KubeDriver::connect(c.clone(), hosts(&[("w-0", "worker")]), fast())
        .await
        .unwrap();
    let volumes = |wl: &kup_types::Workloads| {
        wl.iter()
            .find(|(_, p)| p.name == "db-0")
            .map(|(_, p)| p.volumes.clone())
            .unwrap_or_default()
    };
    use VolumeKind::{EmptyDir, HostPathPv, Pvc};
    let want = [EmptyDir, HostPathPv, Pvc, Pvc];
    assert!(
        driver.wait_for(WAIT, |_, wl| volumes(wl) == want).await,
        "{:?}",
        volumes(&driver.workloads().await.unwrap())
    );
    // The claim `late` is made and bound to a local volume after the pod was seen.
    create(&pvs, local_pv("local-b")).await;
    create(&claims, claim("late", "local-b")).await;
    let want = [EmptyDir, HostPathPv, Pvc, HostPathPv];
    assert!(
        driver.wait_for(WAIT, |_, wl| volumes(wl) == want).await,
        "{:?}",
        volumes(&driver.workloads().await.unwrap())
    );
}
