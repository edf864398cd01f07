//! `kup serve --kubeconfig --hosts`: the daemon drives a real cluster (a real kube-apiserver
//! v1.20.2 and etcd; no kubelet: the test registers the nodes and kubeadm's static pods as
//! they would be), and the CLI lists its hosts from it.

#[path = "../../kup-kube/tests/common/mod.rs"]
mod apiserver;
mod common;

use std::ffi::OsStr;

use apiserver::ApiServer;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

async fn create<K>(api: &Api<K>, v: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// Two Ready nodes at v1.20.2, kubeadm's control plane on cp-0, its `kubeadm-config`.
async fn kubeadm_cluster(kubeconfig: &std::path::Path) {
    let c = kup_kube::client_from_kubeconfig(kubeconfig, None)
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(c.clone());
    for name in ["cp-0", "w-0"] {
        create(&nodes, json!({"metadata": {"name": name}})).await;
        let status = json!({"status": {
            "nodeInfo": {"kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "machineID": "m",
                "systemUUID": "s", "bootID": "b", "kernelVersion": "k", "osImage": "o",
                "containerRuntimeVersion": "c", "operatingSystem": "linux", "architecture": "amd64"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "4", "memory": "8Gi"}}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    // The server makes kube-system shortly after it reports ready.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
    for _ in 0..300 {
        if Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
            .get_opt("kube-system")
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for comp in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let name = format!("{comp}-cp-0");
        create(&pods, json!({
            "metadata": {"name": name, "labels": {"component": comp, "tier": "control-plane"},
                "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"nodeName": "cp-0", "containers": [{"name": comp, "image": format!("k8s.gcr.io/{comp}:v1.20.2")}]}})).await;
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(c, "kube-system");
    create(
        &cms,
        json!({"metadata": {"name": "kubeadm-config"}, "data": {
        "ClusterConfiguration": "kind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n"}}),
    )
    .await;
}

const HOSTS: &str = "\
hosts:
  - name: cp-0
    personality: controller
    ssh: {address: 127.0.0.1, user: kup, key_file: id_ed25519, known_hosts: known_hosts}
  - name: w-0
    personality: worker
    ssh: {address: 127.0.0.1, user: kup, key_file: id_ed25519, known_hosts: known_hosts}
";

#[test]
fn serves_a_real_clusters_hosts() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(kubeadm_cluster(&server.kubeconfig()));
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.yaml");
    std::fs::write(&hosts, HOSTS).unwrap();
    // The key and known_hosts files must be readable (nothing here connects over SSH).
    for f in ["id_ed25519", "known_hosts"] {
        std::fs::write(hosts.with_file_name(f), "").unwrap();
    }
    let kubeconfig = server.kubeconfig().display().to_string();
    let hosts = hosts.display().to_string();
    let d = serve_with(
        dir.path(),
        "1",
        &["--kubeconfig", &kubeconfig, "--hosts", &hosts],
    );
    let list = ok(&d, "kube-host-upgrade-list");
    for want in ["cp-0", "w-0", "controller", "worker", "v1.20.2"] {
        assert!(list.contains(want), "{want} in\n{list}");
    }
    let ihosts: serde_json::Value =
        serde_json::from_str(&ok(&d, "host-list --format json")).unwrap();
    let names: Vec<&str> = ihosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cp-0", "w-0"], "{ihosts}");
    let versions = ok(&d, "kube-version-list");
    assert!(
        versions.contains("v1.20.2") && versions.contains("active"),
        "{versions}"
    );
    // Swact has no meaning on a kubeadm cluster.
    let swact = refused(&d, "host-swact cp-0");
    assert!(swact.contains("no active controller"), "{swact}");
    // A lock and an unlock reach the cluster: w-0 is cordoned and drained (it holds no
    // pod), then made schedulable again.
    let admin = |d: &Daemon| -> String {
        let h: serde_json::Value =
            serde_json::from_str(&ok(d, "host-show w-0 --format json")).unwrap();
        h["administrative"].as_str().unwrap_or_default().to_string()
    };
    // The only worker: unsafe to drain by kup's own rules, so forced.
    ok(&d, "host-lock w-0 --force --wait");
    assert_eq!(admin(&d), "locked");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let unschedulable = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let c = kup_kube::client_from_kubeconfig(&server.kubeconfig(), None)
                .await
                .unwrap();
            let n = Api::<Node>::all(c).get("w-0").await.unwrap();
            n.spec.and_then(|s| s.unschedulable) == Some(true)
        })
    };
    assert!(unschedulable(&rt), "w-0 cordoned on the API server");
    ok(&d, "host-unlock w-0 --wait");
    assert_eq!(admin(&d), "unlocked");
    assert!(!unschedulable(&rt), "w-0 schedulable again");
}

#[test]
fn a_real_cluster_needs_a_good_hosts_file_and_a_reachable_server() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .unwrap();
    let hosts = dir.path().join("hosts.yaml");
    std::fs::write(&hosts, HOSTS).unwrap();
    // The key and known_hosts files must be readable (nothing here connects over SSH).
    for f in ["id_ed25519", "known_hosts"] {
        std::fs::write(hosts.with_file_name(f), "").unwrap();
    }
    let bad_hosts = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_hosts,
        "hosts:\n  - name: w-0\n    personality: worker\n",
    )
    .unwrap();
    let data = dir.path().join("kup-data");
    let args = |extra: &[&OsStr]| {
        let mut a: Vec<&OsStr> = vec![OsStr::new("--data-dir"), data.as_os_str()];
        a.extend_from_slice(extra);
        serve_refused(&a)
    };
    let k = OsStr::new("--kubeconfig");
    let h = OsStr::new("--hosts");
    let e = args(&[k, kubeconfig.as_os_str(), h, bad_hosts.as_os_str()]);
    assert!(e.contains("missing field `ssh`"), "{e}");
    let e = args(&[k, kubeconfig.as_os_str(), h, hosts.as_os_str()]);
    assert!(e.contains("cannot be reached"), "{e}");
    assert!(!data.exists(), "nothing created for a refused start");
}
