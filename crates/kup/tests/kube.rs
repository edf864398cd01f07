//! `kup serve --kubeconfig --hosts`: the daemon drives a real cluster (a real kube-apiserver
//! v1.20.2 and etcd; no kubelet: the test registers the nodes and kubeadm's static pods as
//! they would be): the CLI lists its hosts from it, and `kup upgrade online` upgrades a
//! cluster of three control planes and four workers over SSH (a real sshd per host with
//! fake kubeadm tools), and an abort takes it back.

#[path = "../../kup-kube/tests/common/mod.rs"]
mod apiserver;
mod common;
#[path = "../../kup-kube/tests/support/kubeadm.rs"]
mod kubeadm;
#[path = "../../kup-ssh/tests/support/sshd.rs"]
mod sshd;

use std::ffi::OsStr;

use apiserver::ApiServer;
use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

/// Two Ready nodes at v1.20.2, kubeadm's control plane on cp-0, its `kubeadm-config`.
async fn kubeadm_cluster(kubeconfig: &std::path::Path) {
    let c = kup_kube::client_from_kubeconfig(kubeconfig, None)
        .await
        .unwrap();
    let v = kup_types::KubeVersion::new(1, 20, 2);
    kubeadm::wait_for_kube_system(&c).await;
    for name in ["cp-0", "w-0"] {
        kubeadm::ready_node(&c, name, v).await;
    }
    for comp in kubeadm::COMPONENTS {
        kubeadm::static_pod(&c, comp, "cp-0", v).await;
    }
    kubeadm::kubeadm_config(&c, v).await;
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

/// A real kubeadm cluster for a test: a real API server with `controllers` control planes
/// and `workers` workers at v1.20.2, each with its sshd (`kubeadm::Cluster`), a catalog file,
/// and the flags with which `kup serve`, `export-cluster` and `rehearse` reach it.
struct Real {
    server: ApiServer,
    cluster: kubeadm::Cluster,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    hosts: Vec<String>,
    args: Vec<String>,
}

impl Real {
    /// `None` where the API server or sshd is missing (the test skips, as they say).
    fn start(controllers: usize, workers: usize, catalog: &str) -> Option<Real> {
        use kup_types::{KubeVersion, Personality};
        let server = ApiServer::start()?;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let token = std::fs::read_to_string(server.dir.path().join("token")).unwrap();
        let hosts: Vec<(String, Personality)> = (0..controllers)
            .map(|i| (format!("cp-{i}"), Personality::Controller))
            .chain((0..workers).map(|i| (format!("w-{i}"), Personality::Worker)))
            .collect();
        let named: Vec<(&str, Personality)> = hosts.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        let c = rt.block_on(kup_kube::client_from_kubeconfig(&server.kubeconfig(), None));
        let cluster = rt.block_on(kubeadm::Cluster::start(
            &c.unwrap(),
            &server.url,
            &token,
            &named,
            KubeVersion::new(1, 20, 2),
        ))?;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("catalog.yaml");
        std::fs::write(&file, catalog).unwrap();
        let args = [
            "--kubeconfig".into(),
            server.kubeconfig().display().to_string(),
            "--hosts".into(),
            cluster.hosts_file.display().to_string(),
            "--catalog".into(),
            file.display().to_string(),
        ]
        .into();
        Some(Real {
            server,
            cluster,
            rt,
            dir,
            hosts: hosts.into_iter().map(|(n, _)| n).collect(),
            args,
        })
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    fn client(&self) -> kube::Client {
        self.rt
            .block_on(kup_kube::client_from_kubeconfig(
                &self.server.kubeconfig(),
                None,
            ))
            .unwrap()
    }

    /// `kup serve` on this cluster, in the test's directory; a step that hangs fails within
    /// two minutes, not the half hour a real one may take.
    fn serve(&self) -> Daemon {
        let mut args = self.args();
        for kind in [
            "download-images",
            "control-plane",
            "networking",
            "kubelet",
            "lock",
            "unlock",
        ] {
            args.extend(["--step-timeout", leak(format!("{kind}=120"))]);
        }
        serve_with(self.dir.path(), "1", &args)
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A patch signed with the demo key (which the daemon trusts): `manifest` as its
/// `patch.json`, `files` as its payload.
fn build_patch(
    dir: &std::path::Path,
    manifest: serde_json::Value,
    files: &[(&str, &str)],
) -> std::path::PathBuf {
    let id = manifest["id"].as_str().unwrap().to_string();
    let src = dir.join(&id);
    for (path, body) in files {
        let file = src.join("files").join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
    std::fs::write(src.join("patch.json"), manifest.to_string()).unwrap();
    let out = dir.join(format!("{id}.patch"));
    let key = patches_dir().join("demo-key.secret");
    let r = std::process::Command::new(KUP)
        .args(["sw-patch", "build"])
        .arg(&src)
        .arg("--key")
        .arg(&key)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    out
}

/// A platform patch of v1.22.0 whose networking manifests make a namespace and a ConfigMap
/// in it, as a CNI's would.
fn platform_patch(dir: &std::path::Path) -> std::path::PathBuf {
    build_patch(
        dir,
        serde_json::json!({"id": "K8S-1.22.0-PLATFORM", "summary": "Kubernetes v1.22.0 and its CNI",
            "kind": "platform", "kubernetes": {"version": "v1.22.0", "upgrade_from": ["v1.21.0"],
            "networking_manifests": ["manifests/cni.yaml"]}}),
        &[(
            "manifests/cni.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kup-cni\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cni\n  namespace: kup-cni\n\
             data:\n  version: v3.19\n",
        )],
    )
}

/// A stand-in binary of v1.22.0, as a patch ships it.
fn binary_of_v1_22(name: &str) -> String {
    format!("#!/bin/sh\n# {name} from a patch\necho \"Kubernetes v1.22.0\"\n")
}

/// The kubeadm and the kubelet patch of v1.22.0: its binaries, in place of the packages.
fn binary_patches(dir: &std::path::Path) -> [std::path::PathBuf; 2] {
    let (kubeadm, kubelet, kubectl) = (
        binary_of_v1_22("kubeadm"),
        binary_of_v1_22("kubelet"),
        binary_of_v1_22("kubectl"),
    );
    [
        build_patch(
            dir,
            serde_json::json!({"id": "K8S-1.22.0-KUBEADM", "summary": "kubeadm v1.22.0", "kind": "kubeadm",
                "requires": ["K8S-1.22.0-PLATFORM"], "delivers": "v1.22.0"}),
            &[("usr/bin/kubeadm", &kubeadm)],
        ),
        build_patch(
            dir,
            serde_json::json!({"id": "K8S-1.22.0-KUBELET", "summary": "kubelet and kubectl v1.22.0", "kind": "kubelet",
                "requires": ["K8S-1.22.0-PLATFORM"], "delivers": "v1.22.0"}),
            &[("usr/bin/kubelet", &kubelet), ("usr/bin/kubectl", &kubectl)],
        ),
    ]
}

/// The version the test CNI's ConfigMap says, as the API server has it.
fn cni_version(real: &Real) -> Option<String> {
    let c = real.client();
    real.rt.block_on(async {
        let cm = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(c, "kup-cni")
            .get_opt("cni")
            .await
            .unwrap()?;
        cm.data?.get("version").cloned()
    })
}

/// Every host's versions as the API server has them: (node, control plane, kubelet).
fn versions(d: &Daemon) -> Vec<(String, String, String)> {
    host_upgrade_rows(d)
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (
                s("hostname"),
                s("control_plane_version"),
                s("kubelet_version"),
            )
        })
        .collect()
}

/// The whole automated upgrade on a real API server, two minors at once, with every host step
/// over SSH: three control planes one minor at a time (the first by `kubeadm upgrade apply`
/// after its backups, the others by `kubeadm upgrade node`, one at a time), networking with
/// the patch's CNI manifests, each host's kubelet with the host cordoned and drained, then
/// schedulable again; v1.22.0's kubeadm and kubelet from its patches' binaries. Then a
/// second upgrade that an abort takes back after every control plane and a controller's
/// kubelet moved: the kubelet back to v1.22.0's binaries, each control plane from its
/// own manifests (etcd's left), the add-ons and kubeadm's configuration from the cluster
/// backup, the CNI manifests of the version before.
#[test]
fn upgrade_online_runs_a_kubeadm_cluster_over_ssh_and_an_abort_takes_it_back() {
    // v1.21.0 and v1.23.0 come from the catalog file; v1.22.0 from a signed platform patch
    // that also ships a CNI's manifests (the daemon trusts the demo key it is signed with).
    let Some(real) = Real::start(
        3,
        4,
        "versions:\n  - version: v1.21.0\n    upgrade_from: [v1.20.2]\n  - version: v1.23.0\n    upgrade_from: [v1.22.0]\n",
    ) else {
        return;
    };
    let cluster = &real.cluster;
    let patch = platform_patch(real.dir.path());
    let [kubeadm_patch, kubelet_patch] = binary_patches(real.dir.path());
    let d = real.serve();
    ok(&d, &format!("sw-patch upload {}", patch.display()));
    ok(&d, "sw-patch apply K8S-1.22.0-PLATFORM");
    // v1.22.0's kubeadm and kubelet come from patches: kubeadm applied now, the kubelet's
    // applied by the upgrade itself when its phase comes.
    ok(&d, &format!("sw-patch upload {}", kubeadm_patch.display()));
    ok(&d, &format!("sw-patch upload {}", kubelet_patch.display()));
    ok(&d, "sw-patch apply K8S-1.22.0-KUBEADM");
    for host in &real.hosts {
        ok(&d, &format!("sw-patch host-install {host}"));
    }
    let list = ok(&d, "kube-version-list");
    for want in ["v1.20.2", "v1.21.0", "v1.22.0", "v1.23.0"] {
        assert!(list.contains(want), "{want} in\n{list}");
    }

    // Two minors in one upgrade: the control planes one minor at a time.
    ok(&d, "upgrade online --to v1.22.0");
    assert_eq!(state_of(&d), "upgrade-complete");
    let all_at = |d: &Daemon, v: &str| {
        for (host, cp, kubelet) in versions(d) {
            assert_eq!(kubelet, v, "{host}'s kubelet");
            if host.starts_with("cp-") {
                assert_eq!(cp, v, "{host}'s control plane");
            }
        }
    };
    all_at(&d, "v1.22.0");
    let info = ok(&d, "info");
    assert!(info.starts_with("Cluster version: v1.22.0"), "{info}");
    // The patch's networking manifests, applied through the API.
    assert_eq!(cni_version(&real), Some("v3.19".to_string()));
    // kubeadm's procedure, in kubeadm's order on each kind of host.
    let order = |host: &str, steps: &[&str]| {
        let calls = cluster.calls(host);
        let mut at = 0;
        for s in steps {
            let i = calls[at..]
                .find(s)
                .unwrap_or_else(|| panic!("{host}: {s:?} after the earlier steps in\n{calls}"));
            at += i + s.len();
        }
    };
    order(
        "cp-0",
        &[
            "kubeadm config images pull --kubernetes-version v1.21.0",
            "cp -a /etc/kubernetes/manifests",
            "snapshot save",
            "kubeadm upgrade apply v1.21.0 --yes",
            "kubeadm upgrade apply v1.22.0 --yes",
            "systemctl restart kubelet",
        ],
    );
    for cp in ["cp-1", "cp-2"] {
        order(
            cp,
            &[
                "kubeadm config images pull",
                "kubeadm upgrade node",
                "kubeadm upgrade node",
                "systemctl restart kubelet",
            ],
        );
        assert!(!cluster.calls(cp).contains("upgrade apply"), "{cp}");
    }
    for w in ["w-0", "w-1", "w-2", "w-3"] {
        order(w, &["kubeadm upgrade node", "systemctl restart kubelet"]);
    }
    // v1.21.0's binaries were packages; v1.22.0's came from its patches, on every host.
    for host in &real.hosts {
        let calls = cluster.calls(host);
        assert!(!calls.contains("=1.22.0-*"), "{host}: {calls}");
        for name in ["kubeadm", "kubelet", "kubectl"] {
            let file = cluster.root(host).join("usr/bin").join(name);
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                binary_of_v1_22(name),
                "{}",
                file.display()
            );
        }
    }
    assert!(cluster.calls("cp-0").contains("kubeadm=1.21.0-*"));
    // Each round's backup, of the version before it.
    for v in ["v1.20.2", "v1.21.0"] {
        assert!(
            cluster.backup_dir().join(v).join("manifests").is_dir(),
            "{v}"
        );
    }
    // Every host was locked (cordoned and drained) for its kubelet and is schedulable again.
    let log = events(&d);
    // What the host steps' commands said, in the event log under each host.
    let said = |host: &str, words: &str| {
        log.iter().any(|e| {
            e["kind"] == "operation"
                && e["subject"] == host
                && e["message"].as_str().is_some_and(|m| m.contains(words))
        })
    };
    assert!(
        said(
            "cp-0",
            "upgrade the first control plane on cp-0 to v1.22.0: upgrade_apply: done: [upgrade] kubeadm upgrade apply v1.22.0 --yes"
        ),
        "{log:#?}"
    );
    assert!(said(
        "w-3",
        "usr/bin/kubelet of K8S-1.22.0-KUBELET installed"
    ));
    for host in &real.hosts {
        let done = format!("lock {host}: done");
        assert!(
            log.iter()
                .any(|e| e["message"].as_str() == Some(done.as_str())),
            "{host} was never locked"
        );
    }
    assert!(
        ok(&d, "host-list").matches("unlocked").count() == real.hosts.len(),
        "{}",
        ok(&d, "host-list")
    );

    // Up again: every control plane and one kubelet move; then the way back.
    ok(&d, "kube-upgrade-delete");
    ok(&d, "kube-upgrade-start v1.23.0");
    ok(&d, "kube-upgrade-download-images --wait");
    ok(&d, "kube-host-upgrade cp-0 control-plane --wait");
    ok(&d, "kube-upgrade-networking --wait");
    ok(&d, "kube-host-upgrade cp-1 control-plane --wait");
    ok(&d, "kube-host-upgrade cp-2 control-plane --wait");
    ok(&d, "host-lock cp-2 --wait");
    ok(&d, "kube-host-upgrade cp-2 kubelet --wait");
    ok(&d, "host-unlock cp-2 --wait");
    let moved: Vec<_> = versions(&d)
        .into_iter()
        .filter(|(_, cp, kubelet)| cp == "v1.23.0" || kubelet == "v1.23.0")
        .map(|(h, ..)| h)
        .collect();
    assert_eq!(moved, ["cp-0", "cp-1", "cp-2"]);
    assert_eq!(
        versions(&d)
            .into_iter()
            .find(|(h, ..)| h == "cp-2")
            .unwrap()
            .2,
        "v1.23.0",
        "cp-2's kubelet"
    );
    // Changed before the abort: the way back applies v1.22.0's manifests again.
    let c = real.client();
    real.rt.block_on(async {
        let patch = serde_json::json!({"data": {"version": "changed"}});
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(c, "kup-cni")
            .patch(
                "cni",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
    });
    let before = cluster.calls("cp-2");
    let out = ok(&d, "kube-upgrade-abort");
    assert!(out.contains("upgrade-aborting"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while state_of(&d) == "upgrade-aborting" {
        assert!(
            std::time::Instant::now() < deadline,
            "the abort did not finish: {}",
            ok(&d, "kube-upgrade-show")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        state_of(&d),
        "upgrade-aborted",
        "{}",
        ok(&d, "kube-upgrade-show")
    );
    all_at(&d, "v1.22.0");
    // cp-2's kubelet went back to v1.22.0's, from its patch again.
    let back = &cluster.calls("cp-2")[before.len()..];
    assert!(back.contains("systemctl restart kubelet"), "{back}");
    assert!(!back.contains("kubelet="), "{back}");
    assert_eq!(
        std::fs::read_to_string(cluster.root("cp-2").join("usr/bin/kubelet")).unwrap(),
        binary_of_v1_22("kubelet")
    );
    // Each control plane from its own manifests, etcd's left as it is.
    let backup = cluster.backup_dir().join("v1.22.0");
    for cp in ["cp-0", "cp-1", "cp-2"] {
        let calls = cluster.calls(cp);
        let restore = format!(
            "cp -a {}/manifests/kube-apiserver.yaml /etc/kubernetes/manifests/",
            backup.display()
        );
        assert!(calls.contains(&restore), "{cp}: {restore}");
        assert!(
            !calls.contains("etcd.yaml /etc/kubernetes"),
            "{cp}: {calls}"
        );
    }
    order(
        "cp-0",
        &[
            "kubeadm upgrade apply v1.23.0",
            "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -",
        ],
    );
    assert_eq!(cni_version(&real), Some("v3.19".to_string()));
    let info = ok(&d, "info");
    assert!(info.starts_with("Cluster version: v1.22.0"), "{info}");
}

/// A Deployment's pods spread over the workers, as its ReplicaSet placed them (the API
/// server has no controllers: the test writes what they would), and its budget.
async fn web_deployment(c: &kube::Client, workers: &[&str]) {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
    use serde_json::json;
    let ns = "shop";
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::all(c.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let labels = json!({"app": "web"});
    let template = json!({"metadata": {"labels": labels},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}});
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": workers.len(), "selector": {"matchLabels": labels}, "template": template}}))
    .unwrap();
    let deploy = Api::<Deployment>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web-5d8f", "namespace": ns, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": deploy.metadata.uid, "controller": true}]},
        "spec": {"replicas": workers.len(), "selector": {"matchLabels": labels}, "template": template}}))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    for (i, w) in workers.iter().enumerate() {
        let name = format!("web-5d8f-{i}");
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                    "uid": rs.metadata.uid, "controller": true}]},
            "spec": {"nodeName": w, "containers": template["spec"]["containers"]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
        let status = json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    // policy/v1beta1: the only budgets a 1.20 server has.
    let resource = ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    let pdb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(c.clone(), ns, &resource)
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
}

/// `kup export-cluster` and `kup rehearse` on a real cluster: read once, nothing changed; the
/// twin plans the upgrade exactly as the daemon plans it against the real cluster, and the
/// rehearsal on it names the hosts that would hold it back.
#[test]
fn a_real_clusters_twin_plans_as_the_real_driver_does() {
    let Some(real) = Real::start(
        3,
        5,
        "versions:\n  - version: v1.21.0\n    upgrade_from: [v1.20.2]\n",
    ) else {
        return;
    };
    real.rt.block_on(web_deployment(
        &real.client(),
        &["w-0", "w-1", "w-1", "w-2", "w-3", "w-3"],
    ));
    let dir = real.dir.path();
    let args = real.args();
    let plan_args = "upgrade plan --to v1.21.0 --max-parallel-worker-hosts 10";
    let want = {
        let d = serve_with(dir, "1", &args);
        ok(&d, plan_args)
    };
    assert!(want.contains("w-4"), "{want}");
    let run = |command: &[&str]| {
        let r = std::process::Command::new(KUP)
            .args(command)
            .args(&args)
            .output()
            .unwrap();
        (
            r.status.code().unwrap_or(-1),
            String::from_utf8(r.stdout).unwrap(),
            String::from_utf8(r.stderr).unwrap(),
        )
    };
    let twin = dir.join("twin.yaml");
    let (code, _, err) = run(&["export-cluster", "-o", twin.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&twin).unwrap();
    for want in [
        "system_type: kubeadm",
        "kind: Deployment",
        "- node: w-3\n    pods: 2",
        "max_unavailable: 1",
        "- version: v1.21.0",
    ] {
        assert!(text.contains(want), "{want} in the twin:\n{text}");
    }
    let sim_dir = tempfile::tempdir().unwrap();
    let got = {
        let d = serve_with(sim_dir.path(), "0", &["--cluster", twin.to_str().unwrap()]);
        ok(&d, plan_args)
    };
    assert_eq!(got, want, "the twin plans otherwise");

    let saved = dir.join("rehearsed.yaml");
    let (code, report, err) = run(&[
        "rehearse",
        "--to",
        "v1.21.0",
        "--save-twin",
        saved.to_str().unwrap(),
    ]);
    // Two of web's pods on w-1 and on w-3, and a budget of one: neither host can be drained,
    // so the rehearsal refuses, naming them and why (exit 1).
    assert_eq!(code, 1, "{report}{err}");
    for host in ["w-1", "w-3"] {
        assert!(
            report.contains(&format!(
                "  {host}: evicting 2 pods exceeds the 1 allowed disruption (6 healthy of 6, max unavailable 1)"
            )),
            "{report}"
        );
    }
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
    // Read only: nothing was cordoned or moved on the real cluster.
    let d = serve_with(dir, "1", &args);
    for (host, cp, kubelet) in versions(&d) {
        assert_eq!(kubelet, "v1.20.2", "{host}");
        assert!(cp == "N/A" || cp == "v1.20.2", "{host}: {cp}");
    }
    assert_eq!(
        ok(&d, "host-list").matches("unlocked").count(),
        real.hosts.len()
    );
}

/// The daemon SIGKILLed in the middle of `upgrade online` on a real cluster, while a host step
/// runs over SSH: started again, it settles what was in flight from what the cluster shows
/// (the steps are idempotent, so one cut off is run again) and finishes the upgrade by itself;
/// every host ends at the target, schedulable, and the log says what the restart found.
#[test]
fn a_daemon_killed_mid_upgrade_finishes_a_real_clusters_upgrade_after_a_restart() {
    let Some(real) = Real::start(
        3,
        2,
        "versions:\n  - version: v1.21.0\n    upgrade_from: [v1.20.2]\n",
    ) else {
        return;
    };
    let cluster = &real.cluster;
    let mut d = real.serve();
    let mut online = std::process::Command::new(KUP)
        .args(["upgrade", "online", "--to", "v1.21.0"])
        .env("KUP_URL", &d.url)
        .env("KUP_TOKEN", &d.token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the second control plane's kubeadm has run: a host step is in flight or
    // just done, and the upgrade half way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cluster.calls("cp-1").contains("kubeadm upgrade node") {
        assert!(std::time::Instant::now() < deadline, "cp-1 never moved");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    // The client would wait for the daemon to come back; the test follows the state instead.
    let _ = online.kill();
    let _ = online.wait();
    drop(d);

    let d = real.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while state_of(&d) != "upgrade-complete" {
        assert!(
            std::time::Instant::now() < deadline,
            "not finished after the restart: {}",
            ok(&d, "kube-upgrade-strategy show")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for (host, cp, kubelet) in versions(&d) {
        assert_eq!(kubelet, "v1.21.0", "{host}'s kubelet");
        if host.starts_with("cp-") {
            assert_eq!(cp, "v1.21.0", "{host}'s control plane");
        }
    }
    assert_eq!(
        ok(&d, "host-list").matches("unlocked").count(),
        real.hosts.len()
    );
    let log = events(&d);
    assert!(
        log.iter().any(|e| e["kind"] == "recovery"),
        "no recovery event: {log:#?}"
    );
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "gap at {e}");
    }
}
