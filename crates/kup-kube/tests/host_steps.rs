//! The host steps of a kubeadm cluster end to end: a real kube-apiserver (v1.20.2) and, for
//! each host, a real sshd on loopback whose fake `kubeadm`, `apt-get` and `systemctl` change
//! the API objects as the real tools would (the static pods' image tags, kubeadm-config's
//! version, the Node's kubeletVersion). kup runs kubeadm's procedure with the hosts file's
//! default commands and confirms each step by reading the cluster back.

mod common;
#[path = "../../kup-ssh/tests/support/sshd.rs"]
mod sshd;

use std::time::Duration;

use common::ApiServer;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kup_driver::Driver;
use kup_kube::{HostsFile, KubeDriver, Settings};
use kup_types::{KubeVersion, OpStatus, Operation};
use serde_json::json;

const FROM: KubeVersion = KubeVersion::new(1, 20, 2);
const TO: KubeVersion = KubeVersion::new(1, 21, 0);
const COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The fake tools' shared part: the API server, as `curl` reaches it.
const API: &str = r#"api() { curl -sSfk -o /dev/null -A kubeadm/v1.21.0 -H "Accept: application/json" -H "Authorization: Bearer $KUP_TOKEN" -X PATCH -H "Content-Type: application/$1-patch+json" "$KUP_URL$2" -d "$3"; }"#;

/// `apt-get install ... kubeadm='1.21.0-*'`: remembers the version each package has now.
fn apt_get() -> String {
    r#"for a in "$@"; do case "$a" in
  kubeadm=*|kubelet=*|kubectl=*) p=${a%%=*}; v=${a#*=}; echo "v${v%%-*}" > "$STATE/$p-$NODE";;
esac; done"#
        .into()
}

/// `kubeadm upgrade apply V` and `kubeadm upgrade node`: the static pods of this node (if it
/// has any) to the installed kubeadm's version; `apply` also records it in kubeadm-config.
fn kubeadm() -> String {
    format!(
        r#"echo "[upgrade] kubeadm $*"
{API}
case "$1 $2" in
  "upgrade apply") v=$3
    api merge /api/v1/namespaces/kube-system/configmaps/kubeadm-config "{{\"data\":{{\"ClusterConfiguration\":\"kind: ClusterConfiguration\\nkubernetesVersion: $v\\n\"}}}}" || exit 1;;
  "upgrade node") v=$(cat "$STATE/kubeadm-$NODE") || exit 1;;
  *) exit 0;;
esac
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  api strategic-merge /api/v1/namespaces/kube-system/pods/$c-$NODE "{{\"spec\":{{\"containers\":[{{\"name\":\"$c\",\"image\":\"k8s.gcr.io/$c:$v\"}}]}}}}" || [ "$2" = node ]
done"#
    )
}

/// `systemctl restart kubelet`: the kubelet comes back at the installed version.
fn systemctl() -> String {
    format!(
        r#"{API}
[ "$1 $2" = "restart kubelet" ] || exit 0
v=$(cat "$STATE/kubelet-$NODE") || exit 1
api merge /api/v1/nodes/$NODE/status "{{\"status\":{{\"nodeInfo\":{{\"kubeletVersion\":\"$v\"}}}}}}""#
    )
}

async fn ready_node(c: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(c.clone());
    let n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let status = json!({"status": {
        "nodeInfo": {"kubeletVersion": FROM.to_string(), "kubeProxyVersion": "v1.20.2", "machineID": "m",
            "systemUUID": "s", "bootID": "b", "kernelVersion": "k", "osImage": "o",
            "containerRuntimeVersion": "c", "operatingSystem": "linux", "architecture": "amd64"},
        "conditions": [{"type": "Ready", "status": "True"}],
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn static_pod(c: &Client, comp: &str, node: &str) {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{comp}-{node}"),
            "labels": {"component": comp, "tier": "control-plane"},
            "annotations": {"kubernetes.io/config.mirror": "x"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "n", "controller": true}]},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": comp, "image": format!("k8s.gcr.io/{comp}:{FROM}")}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(
        &format!("{comp}-{node}"),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn kubeadms_procedure_runs_over_ssh_and_is_read_back_from_the_api() {
    let Some(server) = ApiServer::start() else {
        return;
    };
    let token = std::fs::read_to_string(server.dir.path().join("token")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    // One sshd per host: each knows the Node it is.
    let mut sshds = Vec::new();
    for node in ["cp-0", "w-0"] {
        let env = [
            ("NODE", node),
            ("KUP_URL", server.url.as_str()),
            ("KUP_TOKEN", token.trim()),
            ("STATE", state_dir.as_str()),
        ];
        let Some(s) = sshd::Sshd::start_with(&env) else {
            return;
        };
        let bin = s.path("bin");
        sshd::fake(&bin, "kubeadm", &kubeadm());
        sshd::fake(&bin, "apt-get", &apt_get());
        sshd::fake(&bin, "systemctl", &systemctl());
        // The backup's tools, recording rather than writing to this machine's
        // /var/lib/kup; the login shell's own uses of them go to the real ones.
        sshd::fake(&bin, "etcdctl", "");
        for tool in ["mkdir", "cp"] {
            let script = format!(
                "#!/bin/sh\ncase \"$*\" in *kup/backup*) echo \"{tool} $*\" >> \"$KUP_TEST_LOG\";; *) exec /bin/{tool} \"$@\";; esac\n"
            );
            let path = bin.join(tool);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        sshds.push(s);
    }

    let c = kup_kube::client_from_kubeconfig(&server.kubeconfig(), None)
        .await
        .unwrap();
    // The API server makes kube-system shortly after it is ready.
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    for _ in 0..300 {
        if ns.get_opt("kube-system").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ready_node(&c, "cp-0").await;
    ready_node(&c, "w-0").await;
    for comp in COMPONENTS {
        static_pod(&c, comp, "cp-0").await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-system");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "kubeadm-config"},
        "data": {"ClusterConfiguration": format!("kind: ClusterConfiguration\nkubernetesVersion: {FROM}\n")}}))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut hosts = String::from("hosts:\n");
    for (s, (name, personality)) in sshds
        .iter()
        .zip([("cp-0", "controller"), ("w-0", "worker")])
    {
        let t = s.target();
        hosts += &format!(
            "  - name: {name}\n    personality: {personality}\n    ssh: {{address: 127.0.0.1, port: {}, user: {}, key_file: {}, known_hosts: {}}}\n",
            t.port,
            t.user,
            t.key_file.display(),
            t.known_hosts.display()
        );
    }
    let path = dir.path().join("hosts.yaml");
    std::fs::write(&path, hosts).unwrap();
    let settings = Settings {
        poll_interval: Duration::from_millis(200),
        command_timeout: Duration::from_secs(30),
        ..Settings::default()
    };
    let driver = KubeDriver::connect(c.clone(), HostsFile::load(&path).unwrap(), settings)
        .await
        .unwrap();
    assert_eq!(
        driver
            .observe()
            .await
            .unwrap()
            .control_plane_version("cp-0"),
        Some(FROM)
    );

    let steps = [
        Operation::DownloadImages {
            version: TO,
            images: vec![],
        },
        Operation::UpgradeControlPlane {
            host: "cp-0".into(),
            version: TO,
            first: true,
        },
        Operation::UpgradeNetworking { version: TO },
        Operation::UpgradeKubelet {
            host: "cp-0".into(),
            version: TO,
        },
        Operation::UpgradeKubelet {
            host: "w-0".into(),
            version: TO,
        },
    ];
    for (i, op) in steps.iter().enumerate() {
        let id = format!("op-{i}");
        driver.start(&id, op).await.unwrap();
        let status = driver.wait(&id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(status, OpStatus::Succeeded, "{op}");
    }
    let obs = driver.observe().await.unwrap();
    assert_eq!(obs.control_plane_version("cp-0"), Some(TO));
    assert_eq!(obs.kubelet_version("cp-0"), Some(TO));
    assert_eq!(obs.kubelet_version("w-0"), Some(TO));
    assert_eq!(driver.kubeadm_version(), Some(TO));
    assert_eq!(
        sshds[0].calls(),
        "apt-mark unhold kubeadm\n\
         apt-get install -y -q --allow-change-held-packages kubeadm=1.21.0-*\n\
         apt-mark hold kubeadm\n\
         kubeadm config images pull --kubernetes-version v1.21.0\n\
         apt-mark unhold kubeadm\n\
         apt-get install -y -q --allow-change-held-packages kubeadm=1.21.0-*\n\
         apt-mark hold kubeadm\n\
         mkdir -p /var/lib/kup/backup/v1.20.2\n\
         cp -a /etc/kubernetes/manifests /var/lib/kup/backup/v1.20.2/\n\
         etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key snapshot save /var/lib/kup/backup/v1.20.2/etcd.db\n\
         kubeadm upgrade apply v1.21.0 --yes\n\
         apt-mark unhold kubelet kubectl\n\
         apt-get install -y -q --allow-change-held-packages kubelet=1.21.0-* kubectl=1.21.0-*\n\
         apt-mark hold kubelet kubectl\n\
         systemctl daemon-reload\n\
         systemctl restart kubelet\n"
    );
    // The worker: kubeadm's node configuration, then the kubelet.
    assert!(
        sshds[1]
            .calls()
            .contains("kubeadm upgrade node\napt-mark unhold kubelet kubectl\n"),
        "{}",
        sshds[1].calls()
    );

    // A host whose key is not known: the step fails, saying so, and nothing runs there.
    let mut bad = HostsFile::load(&path).unwrap();
    bad.hosts[1].ssh.known_hosts = "/dev/null".into();
    let strict = KubeDriver::connect(c.clone(), bad, Settings::default())
        .await
        .unwrap();
    let before = sshds[1].calls();
    let op = Operation::UpgradeKubelet {
        host: "w-0".into(),
        version: TO,
    };
    strict.start("strict", &op).await.unwrap();
    match strict
        .wait("strict", Duration::from_secs(60))
        .await
        .unwrap()
    {
        OpStatus::Failed(why) => assert!(why.contains("host key"), "{why}"),
        s => panic!("{s:?}"),
    }
    assert_eq!(sshds[1].calls(), before);
}
