//! Software patches through the engine, with real bundles built and signed by kup-patch:
//! the seed's steps 1–4 and 11, the repository's state machine, `requires`, and rejections.

mod common;

use std::path::Path;

use common::*;
use kup_core::{Command, Refusal};
use kup_engine::EngineError;
use kup_sim::Inventory;
use kup_types::KubeVersion;
use serde_json::json;

/// The seed's default system as it is before any patch: v1.16.1 only.
fn before_patches() -> Inventory {
    let inv = Inventory::default_cluster();
    assert!(
        inv.versions
            .iter()
            .all(|v| v.version == KubeVersion::new(1, 16, 1))
    );
    inv
}

/// Builds a bundle from a spec and payload files, signed with the given key.
fn bundle(
    dir: &Path,
    spec: serde_json::Value,
    files: &[(&str, &str)],
    key: &kup_patch::SigningKey,
) -> Vec<u8> {
    let src = dir.join(format!("src-{}", spec["id"].as_str().unwrap()));
    std::fs::create_dir_all(src.join("files")).unwrap();
    std::fs::write(src.join("patch.json"), spec.to_string()).unwrap();
    for (path, content) in files {
        let p = src.join("files").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    kup_patch::build(&src, key).unwrap()
}

/// The seed's three patches for v1.16.2.
fn seed_patches(dir: &Path) -> [Vec<u8>; 3] {
    let key = kup_patch::testkey::insecure_signing_key();
    let platform = bundle(
        dir,
        json!({"id": "PLATFORM.1", "summary": "Kubernetes v1.16.2 metadata and networking",
               "kind": "platform",
               "kubernetes": {"version": "v1.16.2", "upgrade_from": ["v1.16.1"],
                              "applied_patches": ["KUBEADM.1"], "available_patches": ["KUBELET.1"],
                              "images": ["registry.k8s.io/kube-apiserver:v1.16.2"],
                              "networking_manifests": ["manifests/calico.yaml"]}}),
        &[("manifests/calico.yaml", "kind: DaemonSet\n")],
        &key,
    );
    let kubeadm = bundle(
        dir,
        json!({"id": "KUBEADM.1", "summary": "kubeadm v1.16.2", "kind": "kubeadm",
               "requires": ["PLATFORM.1"], "delivers": "v1.16.2"}),
        &[("bin/kubeadm", "kubeadm v1.16.2")],
        &key,
    );
    let kubelet = bundle(
        dir,
        json!({"id": "KUBELET.1", "summary": "kubelet and kubectl v1.16.2", "kind": "kubelet",
               "requires": ["PLATFORM.1"], "delivers": "v1.16.2"}),
        &[
            ("bin/kubelet", "kubelet v1.16.2"),
            ("bin/kubectl", "kubectl v1.16.2"),
        ],
        &key,
    );
    [platform, kubeadm, kubelet]
}

fn apply(id: &str) -> Command {
    Command::PatchApply { id: id.into() }
}
fn remove(id: &str) -> Command {
    Command::PatchRemove { id: id.into() }
}
fn install(h: &str) -> Command {
    Command::PatchHostInstall { host: h.into() }
}

async fn refusal(h: &Harness, cmd: Command) -> Refusal {
    let before = (h.stored().await, h.events().await.len());
    let err = h
        .run(cmd.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("{cmd:?} accepted"));
    assert_eq!(
        (h.stored().await, h.events().await.len()),
        before,
        "{cmd:?} changed the store"
    );
    err.refusal()
        .unwrap_or_else(|| panic!("{cmd:?}: {err}"))
        .clone()
}

async fn state(h: &Harness, id: &str) -> String {
    h.engine.patch(id).await.unwrap().state.to_string()
}

const HOSTS: [&str; 6] = [
    "controller-0",
    "controller-1",
    "storage-0",
    "storage-1",
    "worker-0",
    "worker-1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_procedure_with_its_patches() {
    let h = Harness::new(before_patches()).await;
    let [platform, kubeadm, kubelet_patch] = seed_patches(h.dir.path());
    let versions = |h: &Harness| {
        let e = h.engine.clone();
        async move {
            e.kube_versions()
                .await
                .unwrap()
                .iter()
                .map(|v| format!("{} {}", v.version, v.state))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(versions(&h).await, ["v1.16.1 active"]);
    let err = h.run(start("v1.16.2")).await.unwrap_err();
    assert!(
        err.to_string().contains("v1.16.2 is not available"),
        "{err}"
    );

    // 1. Upload, apply, install the platform patch: the version arrives.
    let view = h.engine.patch_upload(platform.clone()).await.unwrap();
    assert_eq!(
        (view.state.as_str(), view.version),
        ("available", Some(KubeVersion::new(1, 16, 2)))
    );
    assert_eq!(versions(&h).await, ["v1.16.1 active"]);
    h.ok(apply("PLATFORM.1")).await;
    assert_eq!(state(&h, "PLATFORM.1").await, "partial-apply");
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    assert_eq!(state(&h, "PLATFORM.1").await, "applied");
    // 2.
    assert_eq!(versions(&h).await, ["v1.16.1 active", "v1.16.2 available"]);
    assert!(
        matches!(refusal(&h, start("v1.16.2")).await, Refusal::PatchesNotApplied(p) if p == ["KUBEADM.1"])
    );

    // 3. kubeadm: needed on controllers only.
    h.engine.patch_upload(kubeadm.clone()).await.unwrap();
    h.ok(apply("KUBEADM.1")).await;
    h.ok(install("controller-0")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "partial-apply");
    h.ok(install("controller-1")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "applied");
    let r = refusal(&h, start("v1.16.2")).await;
    assert_eq!(
        r.to_string(),
        "The following patches must be available before doing the kubernetes upgrade: KUBELET.1"
    );

    // 4. Upload the kubelet patch; it can not be applied yet.
    h.engine.patch_upload(kubelet_patch.clone()).await.unwrap();
    assert!(matches!(
        refusal(&h, apply("KUBELET.1")).await,
        Refusal::KubeletPatchTooEarly { .. }
    ));

    // 5–9.
    h.ok(start("v1.16.2")).await;
    assert!(matches!(
        refusal(&h, apply("KUBELET.1")).await,
        Refusal::KubeletPatchTooEarly { .. }
    ));
    assert!(matches!(
        refusal(&h, remove("PLATFORM.1")).await,
        Refusal::PatchRequiredBy { .. }
    ));
    h.ok(Command::DownloadImages).await;
    h.ok(cp("controller-1")).await;
    h.ok(Command::UpgradeNetworking).await;
    h.ok(cp("controller-0")).await;
    assert_eq!(h.state().await, "upgraded-second-master");

    // 11. Apply the kubelet patch now; install it (no kubelet restart), host by host.
    h.ok(apply("KUBELET.1")).await;
    assert_eq!(state(&h, "KUBELET.1").await, "partial-apply");
    h.ok(lock("controller-1")).await;
    let r = refusal(&h, kubelet("controller-1")).await;
    assert!(
        r.to_string()
            .contains("kubelet of v1.16.2 (patch KUBELET.1) is not installed on controller-1"),
        "{r}"
    );
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    assert_eq!(state(&h, "KUBELET.1").await, "applied");
    let obs = h.engine.observe().await.unwrap();
    assert_eq!(
        obs.kubelet_version("worker-0"),
        Some(KubeVersion::new(1, 16, 1)),
        "kubelet not restarted"
    );
    let hosts = h.engine.patch_hosts().await.unwrap();
    assert!(hosts.iter().all(|p| p.patch_current), "{hosts:?}");
    let storage = hosts.iter().find(|p| p.hostname == "storage-0").unwrap();
    assert_eq!(
        storage.installed,
        ["PLATFORM.1"],
        "storage hosts need no kubeadm or kubelet"
    );

    // 12–15.
    h.ok(kubelet("controller-1")).await;
    h.ok(unlock("controller-1")).await;
    h.ok(swact("controller-0")).await;
    for host in ["controller-0", "worker-0", "worker-1"] {
        h.ok(lock(host)).await;
        h.ok(kubelet(host)).await;
        h.ok(unlock(host)).await;
    }
    assert!(matches!(
        refusal(&h, remove("KUBELET.1")).await,
        Refusal::PatchInUse { .. }
    ));
    h.ok(Command::Complete).await;
    h.ok(Command::Delete).await;
    assert_eq!(
        versions(&h).await,
        ["v1.16.1 unavailable", "v1.16.2 active"]
    );
    assert_gapless(&h.events().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_state_machine() {
    let h = Harness::new(before_patches()).await;
    let [platform, kubeadm, _] = seed_patches(h.dir.path());
    h.engine.patch_upload(platform.clone()).await.unwrap();
    h.engine.patch_upload(kubeadm.clone()).await.unwrap();
    let repo = h.dir.path().join("patches");
    let files = || {
        let mut f: Vec<String> = std::fs::read_dir(&repo)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        f.sort();
        f
    };
    assert_eq!(files(), ["KUBEADM.1.patch", "PLATFORM.1.patch"]);

    // requires, both ways.
    assert!(
        matches!(refusal(&h, apply("KUBEADM.1")).await, Refusal::PatchRequires { required, .. } if required == "PLATFORM.1")
    );
    h.ok(apply("PLATFORM.1")).await;
    h.ok(apply("KUBEADM.1")).await;
    assert!(
        matches!(refusal(&h, remove("PLATFORM.1")).await, Refusal::PatchRequiredBy { dependent, .. } if dependent == "KUBEADM.1")
    );
    // Applying twice, deleting what is applied, uploading twice, unknown ids.
    assert!(matches!(
        refusal(&h, apply("PLATFORM.1")).await,
        Refusal::PatchNotAvailable { .. }
    ));
    assert!(matches!(
        refusal(
            &h,
            Command::PatchDelete {
                id: "PLATFORM.1".into()
            }
        )
        .await,
        Refusal::PatchNotRemoved { .. }
    ));
    let dup = h.engine.patch_upload(platform.clone()).await.unwrap_err();
    assert_eq!(
        dup.to_string(),
        "Patch PLATFORM.1 is already uploaded; delete it first to upload it again"
    );
    assert_eq!(
        files(),
        ["KUBEADM.1.patch", "PLATFORM.1.patch"],
        "a refused upload leaves nothing"
    );
    assert!(matches!(refusal(&h, apply("NOPE.9")).await, r if r.is_not_found()));
    assert!(matches!(
        refusal(&h, install("worker-9")).await,
        Refusal::UnknownHost(_)
    ));

    // Install on two controllers: kubeadm is applied, the platform patch is still partial.
    h.ok(install("controller-0")).await;
    h.ok(install("controller-1")).await;
    assert_eq!(
        (state(&h, "KUBEADM.1").await, state(&h, "PLATFORM.1").await),
        ("applied".into(), "partial-apply".into())
    );

    // Remove goes through partial-remove while a host still has it.
    h.ok(remove("KUBEADM.1")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "partial-remove");
    assert!(matches!(
        refusal(&h, remove("KUBEADM.1")).await,
        Refusal::PatchNotApplied { .. }
    ));
    h.ok(install("controller-0")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "partial-remove");
    h.ok(install("controller-1")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "available");
    // A patch applied but installed nowhere goes straight back to available.
    h.ok(remove("PLATFORM.1")).await;
    assert_eq!(state(&h, "PLATFORM.1").await, "partial-remove");
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    assert_eq!(state(&h, "PLATFORM.1").await, "available");
    h.engine.patch_delete("KUBEADM.1").await.unwrap();
    assert_eq!(files(), ["PLATFORM.1.patch"]);
    assert!(
        h.engine
            .patch("KUBEADM.1")
            .await
            .unwrap_err()
            .refusal()
            .is_some_and(|r| r.is_not_found())
    );
    let states: Vec<String> = h
        .events()
        .await
        .into_iter()
        .filter(|e| e.subject == "patch KUBEADM.1" && e.kind == kup_types::EventKind::State)
        .map(|e| e.message)
        .collect();
    assert_eq!(
        states,
        [
            "uploaded: available",
            "available -> partial-apply",
            "partial-apply -> applied",
            "applied -> partial-remove",
            "partial-remove -> available",
            "deleted"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_change_nothing() {
    let h = Harness::new(before_patches()).await;
    let [platform, ..] = seed_patches(h.dir.path());
    let untrusted = bundle(
        h.dir.path(),
        json!({"id": "EVIL.1", "summary": "x", "kind": "other"}),
        &[("x", "y")],
        &kup_patch::SigningKey::from_bytes(&[7; 32]),
    );
    let mut truncated = platform.clone();
    truncated.truncate(platform.len() / 2);
    let mut flipped = platform.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let before = (h.stored().await, h.events().await.len());
    for (what, bytes) in [
        ("untrusted", untrusted),
        ("truncated", truncated),
        ("flipped", flipped),
        ("garbage", b"not a bundle".to_vec()),
    ] {
        let err = h.engine.patch_upload(bytes.clone()).await.unwrap_err();
        assert!(matches!(err, EngineError::Bundle(_)), "{what}: {err}");
        assert!(
            err.to_string().starts_with("bundle rejected: "),
            "{what}: {err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
    assert_eq!((h.stored().await, h.events().await.len()), before);
    let repo = h.dir.path().join("patches");
    assert!(
        !repo.exists() || std::fs::read_dir(&repo).unwrap().next().is_none(),
        "nothing in the repository"
    );
}

/// Every bundle of kup-patch's saved fuzz corpus (valid ones and every kind of corruption:
/// tampered, truncated, not a tar, `..`, absolute paths, links, devices, undeclared or
/// missing files, unsigned, untrusted, a decompression bomb) through the engine's upload: a
/// refused one leaves the repository and the store exactly as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corrupted_bundle_of_the_corpus_changes_nothing() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/bundle_reader");
    let mut entries: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 25, "{} corpus files", entries.len());
    let (mut accepted, mut refused) = (0, 0);
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let h = Harness::new(before_patches()).await;
        let repo = h.dir.path().join("patches");
        let listing = || -> Vec<String> {
            std::fs::read_dir(&repo).map_or(vec![], |d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
        };
        let before = (h.stored().await, h.events().await.len(), listing());
        match h.engine.patch_upload(std::fs::read(&path).unwrap()).await {
            Ok(view) => {
                assert!(name.starts_with("valid"), "{name} was accepted");
                assert_eq!(listing(), [format!("{}.patch", view.patch_id)], "{name}");
                accepted += 1;
            }
            Err(e) => {
                assert!(!name.starts_with("valid"), "{name}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with("bundle rejected: ") && !msg.contains('\n'),
                    "{name}: {msg}"
                );
                assert_eq!(
                    (h.stored().await, h.events().await.len(), listing()),
                    before,
                    "{name} changed something"
                );
                refused += 1;
            }
        }
    }
    assert!(
        accepted >= 5 && refused >= 20,
        "{accepted} accepted, {refused} refused"
    );
}

/// Removing the platform patch takes its version out of the catalog again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_platform_patch_takes_the_version_away() {
    let h = Harness::new(before_patches()).await;
    let [platform, ..] = seed_patches(h.dir.path());
    h.engine.patch_upload(platform.clone()).await.unwrap();
    h.ok(apply("PLATFORM.1")).await;
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    let has_target = |h: &Harness| {
        let e = h.engine.clone();
        async move {
            e.kube_versions()
                .await
                .unwrap()
                .iter()
                .any(|v| v.version == KubeVersion::new(1, 16, 2))
        }
    };
    assert!(has_target(&h).await);
    h.ok(remove("PLATFORM.1")).await;
    assert!(
        !has_target(&h).await,
        "partial-remove already withdraws the metadata"
    );
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    assert!(!has_target(&h).await);
    assert_eq!(state(&h, "PLATFORM.1").await, "available");
}

/// What the upgrade in progress and the running version need can not be taken away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_in_use_stay() {
    let h = Harness::new(before_patches()).await;
    let key = kup_patch::testkey::insecure_signing_key();
    // A platform patch with no kubeadm/kubelet requirements, so nothing else depends on it.
    let solo = bundle(
        h.dir.path(),
        json!({"id": "SOLO.1", "summary": "v1.16.2 metadata only", "kind": "platform",
               "kubernetes": {"version": "v1.16.2", "upgrade_from": ["v1.16.1"]}}),
        &[("x", "y")],
        &key,
    );
    let kubelet_patch = bundle(
        h.dir.path(),
        json!({"id": "KL.1", "summary": "kubelet v1.16.2", "kind": "kubelet", "delivers": "v1.16.2"}),
        &[("bin/kubelet", "k")],
        &key,
    );
    h.engine.patch_upload(solo.clone()).await.unwrap();
    h.engine.patch_upload(kubelet_patch.clone()).await.unwrap();
    h.ok(apply("SOLO.1")).await;
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    h.ok(start("v1.16.2")).await;
    assert!(matches!(
        refusal(&h, remove("SOLO.1")).await,
        Refusal::PatchInUse { .. }
    ));
    // The kubelet patch waits, available, for its phase: it can not be deleted meanwhile.
    assert!(matches!(
        refusal(&h, Command::PatchDelete { id: "KL.1".into() }).await,
        Refusal::PatchInUse { .. }
    ));
    for c in [
        Command::DownloadImages,
        cp("controller-1"),
        Command::UpgradeNetworking,
        cp("controller-0"),
    ] {
        h.ok(c).await;
    }
    h.ok(apply("KL.1")).await;
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    h.ok(lock("controller-1")).await;
    h.ok(kubelet("controller-1")).await;
    h.ok(unlock("controller-1")).await;
    h.ok(swact("controller-0")).await;
    for host in ["controller-0", "worker-0", "worker-1"] {
        h.ok(lock(host)).await;
        h.ok(kubelet(host)).await;
        h.ok(unlock(host)).await;
    }
    h.ok(Command::Complete).await;
    h.ok(Command::Delete).await;
    // v1.16.2 runs now: its metadata and kubelet stay.
    let r = refusal(&h, remove("SOLO.1")).await;
    assert_eq!(
        r.to_string(),
        "Patch SOLO.1 can not be removed: the cluster runs v1.16.2, which it delivers"
    );
    assert!(matches!(
        refusal(&h, remove("KL.1")).await,
        Refusal::PatchRunning { .. }
    ));
}

/// An applied patch that no host installed yet goes straight back to available on removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_patch_installed_nowhere() {
    let h = Harness::new(before_patches()).await;
    let [platform, kubeadm, _] = seed_patches(h.dir.path());
    h.engine.patch_upload(platform.clone()).await.unwrap();
    h.engine.patch_upload(kubeadm.clone()).await.unwrap();
    h.ok(apply("PLATFORM.1")).await;
    h.ok(apply("KUBEADM.1")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "partial-apply");
    h.ok(remove("KUBEADM.1")).await;
    assert_eq!(state(&h, "KUBEADM.1").await, "available");
}

/// A host step whose patch was uploaded but never applied says to apply it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_advice_names_the_missing_apply() {
    let h = Harness::new(seed_cluster()).await;
    let [_, kubeadm, _] = seed_patches(h.dir.path());
    h.engine.patch_upload(kubeadm.clone()).await.unwrap();
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    let r = refusal(&h, cp("controller-1")).await;
    assert_eq!(
        r.to_string(),
        "The kubeadm of v1.16.2 (patch KUBEADM.1) is not installed on controller-1; apply patch KUBEADM.1, then run sw-patch host-install controller-1"
    );
}

/// A version's metadata comes from exactly one place: a second platform patch for the same
/// version, or one for a version the cluster already knows, is refused at apply with who
/// delivers it, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_delivered_by_one_platform_patch() {
    let h = Harness::new(before_patches()).await;
    let [platform, ..] = seed_patches(h.dir.path());
    h.engine.patch_upload(platform).await.unwrap();
    h.ok(apply("PLATFORM.1")).await;
    let key = kup_patch::testkey::insecure_signing_key();
    let rival = |id: &str, version: &str| {
        bundle(
            h.dir.path(),
            json!({"id": id, "summary": "the same version again", "kind": "platform",
                   "kubernetes": {"version": version, "upgrade_from": ["v1.15.0"]}}),
            &[("manifests/x.yaml", "kind: ConfigMap\n")],
            &key,
        )
    };
    h.engine
        .patch_upload(rival("PLATFORM.2", "v1.16.2"))
        .await
        .unwrap();
    // While PLATFORM.1 is still being installed (partial-apply), and once it is applied.
    for phase in ["partial-apply", "applied"] {
        assert_eq!(state(&h, "PLATFORM.1").await, phase);
        let r = refusal(&h, apply("PLATFORM.2")).await;
        assert_eq!(
            r.to_string(),
            "Patch PLATFORM.2 can not be applied: v1.16.2 is already delivered by patch PLATFORM.1; a version comes from one platform patch (remove PLATFORM.1 first)"
        );
        for host in HOSTS {
            h.ok(install(host)).await;
        }
    }
    h.engine
        .patch_upload(rival("PLATFORM.3", "v1.16.1"))
        .await
        .unwrap();
    let r = refusal(&h, apply("PLATFORM.3")).await;
    assert_eq!(
        r.to_string(),
        "Patch PLATFORM.3 can not be applied: v1.16.1 is already in the platform's version catalog, and a platform patch may not change a known version's metadata"
    );
    let meta = h.engine.kube_version("v1.16.2").await.unwrap();
    assert_eq!(meta.upgrade_from, [KubeVersion::new(1, 16, 1)]);
    // Once the first is removed, the second may deliver the version.
    h.ok(remove("PLATFORM.1")).await;
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    h.ok(apply("PLATFORM.2")).await;
}

/// The control plane never skips a minor version, whatever a platform patch's metadata says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_skips_minor_versions_is_refused() {
    let h = Harness::new(before_patches()).await;
    let key = kup_patch::testkey::insecure_signing_key();
    let leap = bundle(
        h.dir.path(),
        json!({"id": "PLATFORM.19", "summary": "v1.19.0, claiming a path from v1.16.1",
               "kind": "platform",
               "kubernetes": {"version": "v1.19.0", "upgrade_from": ["v1.16.1"]}}),
        &[("manifests/calico.yaml", "kind: DaemonSet\n")],
        &key,
    );
    h.engine.patch_upload(leap).await.unwrap();
    h.ok(apply("PLATFORM.19")).await;
    for host in HOSTS {
        h.ok(install(host)).await;
    }
    let r = refusal(&h, start("v1.19.0")).await;
    assert_eq!(
        r,
        Refusal::SkipsMinor {
            from: KubeVersion::new(1, 16, 1),
            to: KubeVersion::new(1, 19, 0)
        }
    );
    assert_eq!(
        r.to_string(),
        "Kubernetes v1.16.1 can not be upgraded to v1.19.0 in one step: the control plane moves one minor version at a time (upgrade to a v1.17 release first)"
    );
}

/// A crash between an upload's commit and the rename of its bundle: at restart the recorded
/// bundle is put in place, and a temporary file of an upload never recorded is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_left_by_a_crash_are_settled_at_restart() {
    let h = Harness::new(before_patches()).await;
    let [platform, kubeadm, _] = seed_patches(h.dir.path());
    h.engine.patch_upload(platform).await.unwrap();
    let repo = h.dir.path().join("patches");
    let recorded = repo.join(".PLATFORM.1.0b1c2d3e.tmp");
    std::fs::rename(repo.join("PLATFORM.1.patch"), &recorded).unwrap();
    let stray = repo.join(".KUBEADM.1.4f5a6b7c.tmp");
    std::fs::write(&stray, &kubeadm).unwrap();
    let h = h.restart().await;
    let mut files: Vec<String> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["PLATFORM.1.patch"]);
    assert_eq!(state(&h, "PLATFORM.1").await, "available");
}

/// The kubeadm (or kubelet) of a version comes from one patch too: a second one delivering
/// the same binaries is refused at apply, naming the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versions_binaries_come_from_one_patch() {
    let h = Harness::new(before_patches()).await;
    let [platform, kubeadm, _] = seed_patches(h.dir.path());
    h.engine.patch_upload(platform).await.unwrap();
    h.ok(apply("PLATFORM.1")).await;
    h.engine.patch_upload(kubeadm).await.unwrap();
    h.ok(apply("KUBEADM.1")).await;
    let key = kup_patch::testkey::insecure_signing_key();
    let again = bundle(
        h.dir.path(),
        json!({"id": "KUBEADM.2", "summary": "kubeadm v1.16.2, again", "kind": "kubeadm",
               "requires": ["PLATFORM.1"], "delivers": "v1.16.2"}),
        &[("bin/kubeadm", "another kubeadm v1.16.2")],
        &key,
    );
    h.engine.patch_upload(again).await.unwrap();
    let r = refusal(&h, apply("KUBEADM.2")).await;
    assert_eq!(
        r.to_string(),
        "Patch KUBEADM.2 can not be applied: the kubeadm of v1.16.2 is already delivered by patch KUBEADM.1 (remove KUBEADM.1 first)"
    );
}
