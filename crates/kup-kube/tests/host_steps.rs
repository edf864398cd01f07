//! The host steps of a kubeadm cluster end to end, up and back: a real kube-apiserver
//! (v1.20.2) and, for each host, a real sshd on loopback whose fake tools change the API
//! objects as the real ones would (`support/kubeadm.rs`). kup runs kubeadm's procedure with
//! the hosts file's default commands and confirms each step by reading the cluster back.

mod common;
#[path = "support/kubeadm.rs"]
mod kubeadm;
#[path = "../../kup-ssh/tests/support/sshd.rs"]
mod sshd;

use std::time::Duration;

use common::ApiServer;
use kup_driver::Driver;
use kup_kube::{HostsFile, KubeDriver, Settings};
use kup_types::{KubeVersion, OpStatus, Operation, PatchFile, PatchKind, Payload, Personality};

const FROM: KubeVersion = KubeVersion::new(1, 20, 2);
const TO: KubeVersion = KubeVersion::new(1, 21, 0);

async fn run(driver: &KubeDriver, steps: &[Operation], tag: &str) {
    for (i, op) in steps.iter().enumerate() {
        let id = format!("{tag}-{i}");
        driver.start(&id, op).await.unwrap();
        let status = driver.wait(&id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(status, OpStatus::Succeeded, "{op}");
    }
}

/// A control plane and a worker at `FROM` on a fresh API server; `None` where the server or
/// sshd is not installed (the test skips).
async fn two_hosts() -> Option<(ApiServer, kube::Client, kubeadm::Cluster)> {
    let server = ApiServer::start()?;
    let token = std::fs::read_to_string(server.dir.path().join("token")).unwrap();
    let c = kup_kube::client_from_kubeconfig(&server.kubeconfig(), None)
        .await
        .unwrap();
    let hosts = [
        ("cp-0", Personality::Controller),
        ("w-0", Personality::Worker),
    ];
    let cluster = kubeadm::Cluster::start(&c, &server.url, &token, &hosts, FROM).await?;
    Some((server, c, cluster))
}

#[tokio::test]
async fn kubeadms_procedure_runs_over_ssh_and_is_read_back_from_the_api() {
    let Some((_server, c, cluster)) = two_hosts().await else {
        return;
    };
    let path = cluster.hosts_file.clone();
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

    let up = [
        Operation::DownloadImages {
            version: TO,
            images: vec![],
            payloads: vec![],
        },
        Operation::UpgradeControlPlane {
            host: "cp-0".into(),
            version: TO,
            first: true,
            payloads: vec![],
        },
        Operation::UpgradeNetworking {
            version: TO,
            manifests: vec![],
        },
        Operation::UpgradeKubelet {
            host: "cp-0".into(),
            version: TO,
            payloads: vec![],
        },
        Operation::UpgradeKubelet {
            host: "w-0".into(),
            version: TO,
            payloads: vec![],
        },
    ];
    run(&driver, &up, "up").await;
    let obs = driver.observe().await.unwrap();
    assert_eq!(obs.control_plane_version("cp-0"), Some(TO));
    assert_eq!(obs.kubelet_version("cp-0"), Some(TO));
    assert_eq!(obs.kubelet_version("w-0"), Some(TO));
    assert_eq!(driver.kubeadm_version(), Some(TO));
    let backup = cluster.backup_dir().join("v1.20.2");
    let b = backup.display();
    assert_eq!(
        cluster.calls("cp-0"),
        format!(
            "apt-get update -q\n\
             apt-mark unhold kubeadm\n\
             apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades kubeadm=1.21.0-*\n\
             apt-mark hold kubeadm\n\
             kubeadm version -o short\n\
             kubeadm config images pull --kubernetes-version v1.21.0 --image-repository registry.k8s.io\n\
             apt-get update -q\n\
             apt-mark unhold kubeadm\n\
             apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades kubeadm=1.21.0-*\n\
             apt-mark hold kubeadm\n\
             kubeadm version -o short\n\
             cp -a /etc/kubernetes/manifests {b}/manifests.part\n\
             etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key snapshot save {b}/etcd.db.part\n\
             kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get --ignore-not-found configmap/kubeadm-config configmap/kube-proxy daemonset/kube-proxy configmap/coredns deployment/coredns -o yaml\n\
             kubeadm upgrade apply v1.21.0 --yes\n\
             apt-get update -q\n\
             apt-mark unhold kubelet kubectl\n\
             apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades kubelet=1.21.0-* kubectl=1.21.0-*\n\
             apt-mark hold kubelet kubectl\n\
             kubelet --version\n\
             systemctl daemon-reload\n\
             systemctl restart kubelet\n"
        )
    );
    // The backup, whole: the manifests of the version before, etcd, kubeadm's configuration.
    assert_eq!(
        std::fs::read_to_string(backup.join("manifests/kube-apiserver.yaml")).unwrap(),
        "v1.20.2\n"
    );
    assert!(backup.join("etcd.db").is_file());
    assert_eq!(
        std::fs::read_to_string(backup.join("addons.yaml")).unwrap(),
        "kubernetesVersion: v1.20.2\n"
    );
    // The worker: kubeadm's node configuration, then the kubelet.
    assert!(
        cluster
            .calls("w-0")
            .contains("kubeadm upgrade node\napt-get update -q\napt-mark unhold kubelet kubectl\n"),
        "{}",
        cluster.calls("w-0")
    );
    // The step run again as if it had been cut off before kubeadm moved the control plane
    // (its static pods back at v1.20.2): the backup that exists is kept, not taken again of
    // what the host has now.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(c.clone(), "kube-system");
    for comp in kubeadm::COMPONENTS {
        let patch = serde_json::json!({"spec": {"containers": [{"name": comp, "image": format!("k8s.gcr.io/{comp}:{FROM}")}]}});
        pods.patch(
            &format!("{comp}-cp-0"),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    }
    assert!(
        driver
            .wait_for(Duration::from_secs(20), |o, _| o
                .control_plane_version("cp-0")
                == Some(FROM))
            .await
    );
    let before = cluster.calls("cp-0");
    run(&driver, &up[1..2], "again").await;
    let again = &cluster.calls("cp-0")[before.len()..];
    assert!(again.contains("kubeadm upgrade apply v1.21.0"), "{again}");
    assert!(
        !again.contains("cp -a /etc/kubernetes/manifests"),
        "{again}"
    );
    assert_eq!(
        std::fs::read_to_string(backup.join("manifests/kube-apiserver.yaml")).unwrap(),
        "v1.20.2\n"
    );

    // The way back: kubelets, the control plane from its manifests, the add-ons from the
    // cluster backup on the host that holds it.
    let back = [
        Operation::UpgradeKubelet {
            host: "w-0".into(),
            version: FROM,
            payloads: vec![],
        },
        Operation::UpgradeKubelet {
            host: "cp-0".into(),
            version: FROM,
            payloads: vec![],
        },
        Operation::RestoreControlPlane {
            host: "cp-0".into(),
            version: FROM,
        },
        Operation::UpgradeNetworking {
            version: FROM,
            manifests: vec![],
        },
    ];
    run(&driver, &back, "back").await;
    let obs = driver.observe().await.unwrap();
    assert_eq!(obs.control_plane_version("cp-0"), Some(FROM));
    assert_eq!(obs.kubelet_version("cp-0"), Some(FROM));
    assert_eq!(obs.kubelet_version("w-0"), Some(FROM));
    assert_eq!(driver.kubeadm_version(), Some(FROM));
    let calls = cluster.calls("cp-0");
    assert!(
        calls.ends_with(&format!(
            "cp -a {b}/manifests/kube-apiserver.yaml /etc/kubernetes/manifests/\n\
             cp -a {b}/manifests/kube-controller-manager.yaml /etc/kubernetes/manifests/\n\
             cp -a {b}/manifests/kube-scheduler.yaml /etc/kubernetes/manifests/\n\
             kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -\n"
        )),
        "{calls}"
    );

    // A host whose key is not known: the step fails, saying so, and nothing runs there.
    let mut bad = HostsFile::load(&path).unwrap();
    bad.hosts[1].ssh.known_hosts = "/dev/null".into();
    let strict = KubeDriver::connect(c.clone(), bad, Settings::default())
        .await
        .unwrap();
    let before = cluster.calls("w-0");
    let op = Operation::UpgradeKubelet {
        host: "w-0".into(),
        version: TO,
        payloads: vec![],
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
    assert_eq!(cluster.calls("w-0"), before);
}

/// A kubeadm and a kubelet patch's binaries of the target: put on each host in place of the
/// packages (whole, executable, under the hosts file's `payload_root`), so no package tool
/// runs; the steps are read back from the API as before, and what each command said is kept
/// for the event log.
#[tokio::test]
async fn a_patchs_binaries_replace_the_packages() {
    let Some((_server, c, cluster)) = two_hosts().await else {
        return;
    };
    let binary = |name: &str| format!("#!/bin/sh\n# {name}\necho \"Kubernetes {TO}\"\n");
    let served = std::sync::Arc::new(std::sync::Mutex::new(0));
    let count = served.clone();
    let settings = Settings {
        poll_interval: Duration::from_millis(200),
        command_timeout: Duration::from_secs(30),
        patch_files: Some(kup_kube::PatchFiles::new(move |f: &PatchFile| {
            *count.lock().unwrap() += 1;
            let name = f.path.rsplit('/').next().unwrap_or_default();
            Ok(format!("#!/bin/sh\n# {name}\necho \"Kubernetes v1.21.0\"\n").into_bytes())
        })),
        ..Settings::default()
    };
    let driver = KubeDriver::connect(
        c.clone(),
        HostsFile::load(&cluster.hosts_file).unwrap(),
        settings,
    )
    .await
    .unwrap();
    let payload = |kind: PatchKind, id: &str, paths: &[&str]| Payload {
        kind,
        version: TO,
        files: paths
            .iter()
            .map(|p| PatchFile {
                patch: id.into(),
                path: (*p).into(),
            })
            .collect(),
    };
    let payloads = vec![
        payload(
            PatchKind::Kubeadm,
            "K8S-1.21.0-KUBEADM",
            &["usr/bin/kubeadm"],
        ),
        payload(
            PatchKind::Kubelet,
            "K8S-1.21.0-KUBELET",
            &["usr/bin/kubelet", "usr/bin/kubectl"],
        ),
    ];
    let up = [
        Operation::UpgradeControlPlane {
            host: "cp-0".into(),
            version: TO,
            first: true,
            payloads: payloads[..1].to_vec(),
        },
        Operation::UpgradeKubelet {
            host: "cp-0".into(),
            version: TO,
            payloads: payloads.clone(),
        },
        Operation::UpgradeKubelet {
            host: "w-0".into(),
            version: TO,
            payloads: payloads.clone(),
        },
    ];
    run(&driver, &up, "up").await;
    let obs = driver.observe().await.unwrap();
    assert_eq!(obs.control_plane_version("cp-0"), Some(TO));
    assert_eq!(obs.kubelet_version("cp-0"), Some(TO));
    assert_eq!(obs.kubelet_version("w-0"), Some(TO));
    for host in ["cp-0", "w-0"] {
        let calls = cluster.calls(host);
        assert!(!calls.contains("apt-get"), "{host}: {calls}");
        for name in ["kubeadm", "kubelet", "kubectl"] {
            use std::os::unix::fs::PermissionsExt;
            let file = cluster.root(host).join("usr/bin").join(name);
            assert_eq!(std::fs::read_to_string(&file).unwrap(), binary(name));
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{}", file.display());
            assert!(!file.with_extension("kup-part").exists());
        }
    }
    // The worker's node configuration ran with the patch's kubeadm.
    assert!(
        cluster
            .calls("w-0")
            .starts_with("kubeadm version -o short\nkubeadm upgrade node\n"),
        "{}",
        cluster.calls("w-0")
    );
    // Each file read from the repository once, not once per host.
    assert_eq!(*served.lock().unwrap(), 3);
    // What the commands said, each given once.
    let said: Vec<String> = driver
        .transcript("up-0")
        .into_iter()
        .map(|o| format!("{}: {}", o.host, o.message))
        .collect();
    assert_eq!(
        said.first().map(String::as_str),
        Some("cp-0: usr/bin/kubeadm of K8S-1.21.0-KUBEADM installed (46 bytes)"),
        "{said:?}"
    );
    assert_eq!(
        said.last().map(String::as_str),
        Some("cp-0: upgrade_apply: done: [upgrade] kubeadm upgrade apply v1.21.0 --yes"),
        "{said:?}"
    );
    assert!(driver.transcript("up-0").is_empty());
}
