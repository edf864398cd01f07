//! A kubeadm cluster for tests: a real kube-apiserver (started by the test) holding the
//! Nodes, the control planes' static pods and `kubeadm-config` as kubeadm makes them, and for
//! each host a real sshd on loopback whose fake `kubeadm`, `apt-get`, `systemctl`, `cp`,
//! `etcdctl` and `kubectl` change the API objects as the real tools would (the static pods'
//! image tags, kubeadm-config's version, the Node's kubeletVersion) and record their
//! arguments. Shared by kup-kube's and the daemon's tests (`#[path]`, beside `sshd`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kup_types::{KubeVersion, Personality};
use serde_json::json;

use crate::sshd::{self, Sshd};

pub const COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The fake tools' shared part: the API server, as `curl` reaches it (with kubeadm's user
/// agent: the Debian-built v1.20.2 server crashes on curl's), and what kubeadm changes.
const COMMON: &str = r#"
curl_() { curl -sSfk -A kubeadm/v1.21.0 -H "Accept: application/json" -H "Authorization: Bearer $KUP_TOKEN" "$@"; }
api() { curl_ -o /dev/null -X PATCH -H "Content-Type: application/$1-patch+json" "$KUP_URL$2" -d "$3"; }
static_pod() {
  api strategic-merge /api/v1/namespaces/kube-system/pods/$1-$NODE "{\"spec\":{\"containers\":[{\"name\":\"$1\",\"image\":\"k8s.gcr.io/$1:$2\"}]}}" || return 1
  echo "$2" > "$STATE/cp-$NODE"
}
static_pods() {
  for c in kube-apiserver kube-controller-manager kube-scheduler; do static_pod $c "$1" || return 1; done
}
installed() { "$ROOT/$NODE/usr/bin/$1" --version | grep -o 'v[0-9][0-9.]*' | head -n 1; }
kubeadm_config() {
  api merge /api/v1/namespaces/kube-system/configmaps/kubeadm-config "{\"data\":{\"ClusterConfiguration\":\"kind: ClusterConfiguration\\nkubernetesVersion: $1\\n\"}}"
}
"#;

/// `apt-get install ... kubeadm='1.21.0-*'`: the package's binary, under the host's own root
/// (the hosts file's `payload_root`, where a patch's binaries go too), says its version. As
/// dpkg, a version it installed already is left as it is, unless `--reinstall`.
const APT_GET: &str = r#"case " $* " in *" --reinstall "*) again=1;; *) again=;; esac
for a in "$@"; do case "$a" in
  kubeadm=*|kubelet=*|kubectl=*) p=${a%%=*}; v=v${a#*=}; v=${v%%-*}
    [ -z "$again" ] && [ "$(cat "$STATE/pkg-$p-$NODE" 2>/dev/null)" = "$v" ] && continue
    /bin/mkdir -p "$ROOT/$NODE/usr/bin" && echo "$v" > "$STATE/pkg-$p-$NODE"
    printf '#!/bin/sh\necho "Kubernetes %s"\n' "$v" > "$ROOT/$NODE/usr/bin/$p"; chmod 0755 "$ROOT/$NODE/usr/bin/$p";;
esac; done"#;

/// `kubeadm config images pull --kubernetes-version V`: the node holds V's images (from
/// k8s.gcr.io, as kubeadm before 1.25 has them); `kubeadm upgrade apply V`: kubeadm-config and
/// this node's static pods to V, with the kubeadm of V only; `kubeadm upgrade node`: a control plane's static pods to the
/// installed kubeadm's version.
const KUBEADM: &str = r#"echo "[upgrade] kubeadm $*"
case "$1 $2" in
  "config images") v=$5
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "k8s.gcr.io/$c:$v" >> "$STATE/images-$NODE"; done
    list=$(sort -u "$STATE/images-$NODE" | sed 's/.*/{"names":["&"],"sizeBytes":1}/' | paste -sd, -)
    api merge /api/v1/nodes/$NODE/status "{\"status\":{\"images\":[$list]}}";;
  "version -o") installed kubeadm;;
  "upgrade apply") [ "$(installed kubeadm)" = "$3" ] || { echo "kubeadm $(installed kubeadm) cannot upgrade to $3" >&2; exit 1; }
    kubeadm_config "$3" && static_pods "$3";;
  "upgrade node") v=$(installed kubeadm) && [ -n "$v" ] || exit 1
    if [ -f "$STATE/cp-$NODE" ]; then static_pods "$v"; fi;;
esac"#;

/// `kubelet --version`: the installed kubelet's.
const KUBELET: &str = r#"echo "Kubernetes $(installed kubelet)""#;

/// `systemctl restart kubelet`: the kubelet comes back at the installed version (the
/// package's or a patch's).
const SYSTEMCTL: &str = r#"[ "$1 $2" = "restart kubelet" ] || exit 0
v=$(installed kubelet) && [ -n "$v" ] || exit 1
api merge /api/v1/nodes/$NODE/status "{\"status\":{\"nodeInfo\":{\"kubeletVersion\":\"$v\"}}}""#;

/// The manifests' backup: one file per static pod (etcd's too) holding the version it runs;
/// the restore of one puts that static pod back to it. Every other copy is the real one.
const CP: &str = r#"case "$*" in
  "-a /etc/kubernetes/manifests "*) /bin/mkdir -p "$3" && v=$(cat "$STATE/cp-$NODE") || exit 1
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do echo "$v" > "$3/$c.yaml"; done;;
  *"/manifests/"*".yaml /etc/kubernetes/manifests/") static_pod "$(basename "$2" .yaml)" "$(cat "$2")";;
  *) exec /bin/cp "$@";;
esac"#;

/// `etcdctl snapshot save FILE`: an empty snapshot.
const ETCDCTL: &str = r#"for a in "$@"; do last=$a; done; : > "$last""#;

/// `kubectl get`: kubeadm-config as it is (its version line); `kubectl apply -f -`:
/// kubeadm-config back to the version it is given.
const KUBECTL: &str = r#"case "$*" in
  *" get "*) curl_ "$KUP_URL/api/v1/namespaces/kube-system/configmaps/kubeadm-config" | grep -o 'kubernetesVersion: v[0-9.]*';;
  *" apply "*) v=$(grep -o 'kubernetesVersion: v[0-9.]*' | cut -d' ' -f2) && [ -n "$v" ] && kubeadm_config "$v";;
esac"#;

/// One host of the cluster.
pub struct Host {
    pub name: String,
    pub personality: Personality,
    pub sshd: Sshd,
}

/// The cluster: its hosts (each with its sshd) and the hosts file that names them.
pub struct Cluster {
    pub hosts: Vec<Host>,
    /// The hosts file (with the backups under this directory, not the machine's).
    pub hosts_file: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Registers `hosts` (Ready, at `from`; kubeadm's static pods on each controller;
    /// kubeadm-config) on the API server at `url`, and starts their sshds. `None` where sshd
    /// is not installed (the test skips, as `Sshd::start` says).
    pub async fn start(
        c: &Client,
        url: &str,
        token: &str,
        hosts: &[(&str, Personality)],
        from: KubeVersion,
    ) -> Option<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let state = state.to_str().unwrap().to_string();
        let root = dir.path().join("root");
        let root = root.to_str().unwrap().to_string();
        let mut started = Vec::new();
        for (name, personality) in hosts {
            let env = [
                ("NODE", *name),
                ("KUP_URL", url),
                ("KUP_TOKEN", token.trim()),
                ("STATE", state.as_str()),
                ("ROOT", root.as_str()),
            ];
            let s = Sshd::start_with(&env)?;
            let bin = s.path("bin");
            for (tool, body) in [
                ("kubeadm", KUBEADM),
                ("kubelet", KUBELET),
                ("apt-get", APT_GET),
                ("systemctl", SYSTEMCTL),
                ("cp", CP),
                ("etcdctl", ETCDCTL),
                ("kubectl", KUBECTL),
            ] {
                sshd::fake(&bin, tool, &format!("{COMMON}{body}"));
            }
            if *personality == Personality::Controller {
                std::fs::write(format!("{state}/cp-{name}"), format!("{from}\n")).unwrap();
            }
            started.push(Host {
                name: (*name).to_string(),
                personality: *personality,
                sshd: s,
            });
        }
        wait_for_kube_system(c).await;
        for h in &started {
            ready_node(c, &h.name, from).await;
            if h.personality == Personality::Controller {
                for comp in COMPONENTS {
                    static_pod(c, comp, &h.name, from).await;
                }
            }
        }
        kubeadm_config(c, from).await;

        let mut file = format!(
            "commands:\n  backup_dir: {}\n  payload_root: \"{root}/{{host}}\"\nhosts:\n",
            dir.path().join("backup").display()
        );
        for h in &started {
            let t = h.sshd.target();
            let personality = match h.personality {
                Personality::Controller => "controller",
                Personality::Worker => "worker",
                Personality::Storage => "storage",
            };
            file += &format!(
                "  - name: {}\n    personality: {personality}\n    ssh: {{address: 127.0.0.1, port: {}, user: {}, key_file: {}, known_hosts: {}}}\n",
                h.name,
                t.port,
                t.user,
                t.key_file.display(),
                t.known_hosts.display()
            );
        }
        let hosts_file = dir.path().join("hosts.yaml");
        std::fs::write(&hosts_file, file).unwrap();
        Some(Cluster {
            hosts: started,
            hosts_file,
            dir,
        })
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap()
    }

    /// What the fake tools on `name` were called with, one line each.
    pub fn calls(&self, name: &str) -> String {
        self.host(name).sshd.calls()
    }

    /// Where `host`'s binaries are (its `/`, for the packages and the patches' payloads).
    pub fn root(&self, host: &str) -> PathBuf {
        self.dir.path().join("root").join(host)
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("backup")
    }
}

/// kubeadm's `kubeadm-config` ConfigMap, at `version`.
pub async fn kubeadm_config(c: &Client, version: KubeVersion) {
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-system");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "kubeadm-config"},
        "data": {"ClusterConfiguration": format!("kind: ClusterConfiguration\nkubernetesVersion: {version}\n")}}))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
}

/// The API server makes kube-system shortly after it reports ready.
pub async fn wait_for_kube_system(c: &Client) {
    let ns: Api<Namespace> = Api::all(c.clone());
    for _ in 0..300 {
        if ns.get_opt("kube-system").await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no kube-system namespace after 30 s");
}

/// A Node as a kubelet of `version` registers it, Ready.
pub async fn ready_node(c: &Client, name: &str, version: KubeVersion) {
    let nodes: Api<Node> = Api::all(c.clone());
    let n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let status = json!({"status": {
        "nodeInfo": {"kubeletVersion": version.to_string(), "kubeProxyVersion": version.to_string(), "machineID": "m",
            "systemUUID": "s", "bootID": "b", "kernelVersion": "k", "osImage": "o",
            "containerRuntimeVersion": "c", "operatingSystem": "linux", "architecture": "amd64"},
        "conditions": [{"type": "Ready", "status": "True"}],
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// A control-plane component's mirror pod on `node`, as kubelet reports kubeadm's static pod.
pub async fn static_pod(c: &Client, comp: &str, node: &str, version: KubeVersion) {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{comp}-{node}"),
            "labels": {"component": comp, "tier": "control-plane"},
            "annotations": {"kubernetes.io/config.mirror": "x"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "n", "controller": true}]},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": comp, "image": format!("k8s.gcr.io/{comp}:{version}")}]},
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
