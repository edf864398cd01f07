//! kubectl drain's classification, case by case (`filters.go`'s rules and their order).

use k8s_openapi::api::core::v1::Pod;
use kup_kube::drain::{
    DaemonSetLookup, DrainOptions, EMPTYDIR_FATAL, EvictReason, SkipReason, UNMANAGED_FATAL,
    classify,
};
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000;

/// A pod named `name`; `tweak` adds to its JSON.
fn pod(name: &str, tweak: impl FnOnce(&mut Value)) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "w-0", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running"},
    });
    tweak(&mut v);
    serde_json::from_value(v).unwrap()
}

fn owned(kind: &str, name: &str) -> impl FnOnce(&mut Value) {
    let (kind, name) = (kind.to_string(), name.to_string());
    move |v| {
        v["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true
        }]);
    }
}

fn both(a: impl FnOnce(&mut Value), b: impl FnOnce(&mut Value)) -> impl FnOnce(&mut Value) {
    move |v| {
        a(v);
        b(v);
    }
}

fn phase(p: &'static str) -> impl FnOnce(&mut Value) {
    move |v| v["status"]["phase"] = json!(p)
}

fn empty_dir(v: &mut Value) {
    v["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
}

fn host_path(v: &mut Value) {
    v["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/var"}}]);
}

fn mirror(v: &mut Value) {
    v["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    v["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": "Node", "name": "w-0", "uid": "n", "controller": true
    }]);
}

fn deleted_secs_ago(secs: i64) -> impl FnOnce(&mut Value) {
    move |v| {
        let ts = jiff::Timestamp::from_second(NOW - secs).unwrap();
        v["metadata"]["deletionTimestamp"] = json!(ts.to_string());
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Evict(EvictReason),
    Skip(SkipReason),
    Refuse(&'static str),
}

const PLAIN: DrainOptions = DrainOptions {
    force: false,
    delete_emptydir_data: false,
    skip_wait_for_delete_timeout_secs: 0,
};
const FORCE: DrainOptions = DrainOptions {
    force: true,
    ..PLAIN
};
const EMPTYDIR: DrainOptions = DrainOptions {
    delete_emptydir_data: true,
    ..PLAIN
};
const SKIP_DELETED: DrainOptions = DrainOptions {
    skip_wait_for_delete_timeout_secs: 60,
    ..PLAIN
};

/// DaemonSets: `ds` exists, `gone` does not, `broken` cannot be read.
fn daemon_sets(_ns: &str, name: &str) -> DaemonSetLookup {
    match name {
        "gone" => DaemonSetLookup::NotFound,
        "broken" => DaemonSetLookup::Failed("the server is on fire".into()),
        _ => DaemonSetLookup::Exists,
    }
}

#[test]
fn each_pod_is_classified_as_kubectl_does() {
    use EvictReason as E;
    use SkipReason as S;
    use Want::*;
    let cases: Vec<(&str, Pod, DrainOptions, Want)> = vec![
        (
            "replicated",
            pod("a", owned("ReplicaSet", "rs")),
            PLAIN,
            Evict(E::Managed),
        ),
        (
            "stateful",
            pod("a", owned("StatefulSet", "db")),
            PLAIN,
            Evict(E::Managed),
        ),
        ("job", pod("a", owned("Job", "j")), PLAIN, Evict(E::Managed)),
        (
            "hostPath is not local storage",
            pod("a", both(owned("ReplicaSet", "rs"), host_path)),
            PLAIN,
            Evict(E::Managed),
        ),
        (
            "daemonset",
            pod("a", owned("DaemonSet", "ds")),
            PLAIN,
            Skip(S::DaemonSet),
        ),
        (
            "daemonset with emptyDir is still skipped",
            pod("a", both(owned("DaemonSet", "ds"), empty_dir)),
            PLAIN,
            Skip(S::DaemonSet),
        ),
        (
            "orphaned daemonset pod",
            pod("a", owned("DaemonSet", "gone")),
            PLAIN,
            Refuse("daemonsets.apps \"gone\" not found"),
        ),
        (
            "orphaned daemonset pod, forced",
            pod("a", owned("DaemonSet", "gone")),
            FORCE,
            Evict(E::OrphanedDaemonSet),
        ),
        (
            "daemonset lookup fails",
            pod("a", owned("DaemonSet", "broken")),
            FORCE,
            Refuse("the server is on fire"),
        ),
        (
            "finished daemonset pod",
            pod("a", both(owned("DaemonSet", "ds"), phase("Succeeded"))),
            PLAIN,
            Evict(E::Finished),
        ),
        ("mirror pod", pod("a", mirror), PLAIN, Skip(S::Mirror)),
        (
            "mirror pod with emptyDir",
            pod("a", both(mirror, empty_dir)),
            PLAIN,
            Skip(S::Mirror),
        ),
        (
            "emptyDir",
            pod("a", both(owned("ReplicaSet", "rs"), empty_dir)),
            PLAIN,
            Refuse(EMPTYDIR_FATAL),
        ),
        (
            "emptyDir, forced is not enough",
            pod("a", both(owned("ReplicaSet", "rs"), empty_dir)),
            FORCE,
            Refuse(EMPTYDIR_FATAL),
        ),
        (
            "emptyDir with the option",
            pod("a", both(owned("ReplicaSet", "rs"), empty_dir)),
            EMPTYDIR,
            Evict(E::EmptyDir),
        ),
        (
            "finished pod with emptyDir",
            pod(
                "a",
                both(both(owned("ReplicaSet", "rs"), empty_dir), phase("Failed")),
            ),
            PLAIN,
            Evict(E::Finished),
        ),
        (
            "unmanaged",
            pod("a", |_| {}),
            PLAIN,
            Refuse(UNMANAGED_FATAL),
        ),
        (
            "unmanaged, forced",
            pod("a", |_| {}),
            FORCE,
            Evict(E::Unmanaged),
        ),
        (
            "unmanaged with emptyDir, option only",
            pod("a", empty_dir),
            EMPTYDIR,
            Refuse(UNMANAGED_FATAL),
        ),
        (
            "unmanaged with emptyDir, forced and option",
            pod("a", empty_dir),
            DrainOptions {
                force: true,
                ..EMPTYDIR
            },
            Evict(E::Unmanaged),
        ),
        (
            "finished unmanaged pod",
            pod("a", phase("Succeeded")),
            PLAIN,
            Evict(E::Finished),
        ),
        (
            "owner that is not the controller",
            pod("a", |v| {
                v["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "ReplicaSet", "name": "x", "uid": "u"}]);
            }),
            PLAIN,
            Refuse(UNMANAGED_FATAL),
        ),
        (
            "terminating, no skip timeout",
            pod("a", both(owned("ReplicaSet", "rs"), deleted_secs_ago(600))),
            PLAIN,
            Evict(E::Managed),
        ),
        (
            "terminating past the skip timeout",
            pod("a", deleted_secs_ago(600)),
            SKIP_DELETED,
            Skip(S::Deleted),
        ),
        (
            "terminating within the skip timeout",
            pod("a", both(owned("ReplicaSet", "rs"), deleted_secs_ago(10))),
            SKIP_DELETED,
            Evict(E::Managed),
        ),
    ];
    for (what, p, options, want) in cases {
        let plan = classify(std::slice::from_ref(&p), &options, NOW, &daemon_sets);
        let got = match (
            plan.evict.as_slice(),
            plan.skip.as_slice(),
            plan.refuse.as_slice(),
        ) {
            ([(r, why)], [], []) => {
                assert_eq!(r.uid, "uid-a", "{what}");
                Evict(*why)
            }
            ([], [(_, why)], []) => Skip(*why),
            ([], [], [(_, why)]) => {
                let Refuse(want_text) = want else {
                    panic!("{what}: refused ({why}), wanted {want:?}");
                };
                assert!(why.contains(want_text), "{what}: {why}");
                continue;
            }
            other => panic!("{what}: one outcome expected, got {other:?}"),
        };
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn one_refusal_names_every_refused_pod_by_reason() {
    let pods = vec![
        pod("web", owned("ReplicaSet", "rs")),
        pod("bare-1", |_| {}),
        pod("cache", both(owned("ReplicaSet", "rs"), empty_dir)),
        pod("bare-2", |_| {}),
        pod("agent", owned("DaemonSet", "ds")),
    ];
    let plan = classify(&pods, &PLAIN, NOW, &daemon_sets);
    assert_eq!(plan.evict.len(), 1);
    assert_eq!(plan.skip.len(), 1);
    assert_eq!(
        plan.refusal().unwrap(),
        format!("{UNMANAGED_FATAL}: ns/bare-1, ns/bare-2; {EMPTYDIR_FATAL}: ns/cache")
    );
    let fine = classify(&pods[..1], &PLAIN, NOW, &daemon_sets);
    assert_eq!(fine.refusal(), None);
}
