//! The removed-API check: which uses of deprecated APIs an upgrade from one version to another
//! removes, by the source's own removal release or kup's table.

mod common;

use common::{obs, v};
use kup_core::removed_apis::{removal_minor, removed_api_check, removed_by};
use kup_types::ApiUsage;

fn usage(gv: &str, resource: &str, removed_release: Option<&str>) -> ApiUsage {
    let (group, version) = gv.rsplit_once('/').unwrap_or(("", gv));
    ApiUsage {
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        removed_release: removed_release.map(Into::into),
        seen_in: "API server".into(),
    }
}

#[test]
fn the_removal_release_comes_from_the_source_or_the_table() {
    let cases = [
        // (group/version, resource, the source's label, removal minor)
        ("extensions/v1beta1", "ingresses", None, Some(22)),
        (
            "networking.k8s.io/v1beta1",
            "ingresses",
            Some("1.22"),
            Some(22),
        ),
        ("policy/v1beta1", "poddisruptionbudgets", None, Some(25)),
        ("batch/v1beta1", "cronjobs", None, Some(25)),
        (
            "flowcontrol.apiserver.k8s.io/v1beta3",
            "flowschemas",
            None,
            Some(32),
        ),
        ("apps/v1beta2", "deployments", None, Some(16)),
        // The metric's own word wins, even for an API the table does not know.
        ("example.com/v1alpha1", "widgets", Some("1.31"), Some(31)),
        ("example.com/v1alpha1", "widgets", Some("v1.31"), Some(31)),
        // Not removed, as far as anyone says.
        ("apps/v1", "deployments", None, None),
        ("example.com/v1alpha1", "widgets", None, None),
        // A label that is not a release falls back to the table.
        ("batch/v1beta1", "cronjobs", Some("soon"), Some(25)),
        ("v1", "pods", Some(""), None),
    ];
    for (gv, resource, label, want) in cases {
        assert_eq!(
            removal_minor(&usage(gv, resource, label)),
            want,
            "{gv} {resource} {label:?}"
        );
    }
}

#[test]
fn an_upgrade_removes_what_lies_after_its_from_version_up_to_its_target() {
    let mut o = obs(&[(
        "controller-0",
        "controller",
        Some("v1.21.3"),
        Some("v1.21.3"),
    )]);
    o.api_usage = vec![
        usage("extensions/v1beta1", "ingresses", Some("1.22")),
        usage("batch/v1beta1", "cronjobs", None),
        usage("apps/v1beta1", "deployments", None),
        usage("apps/v1", "deployments", None),
        // Seen twice (the metric and an object): listed once per source.
        {
            let mut u = usage("batch/v1beta1", "cronjobs", None);
            u.seen_in = "default/nightly".into();
            u
        },
    ];
    let names = |from: &str, to: &str| -> Vec<String> {
        removed_by(&o, v(from), v(to))
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    // v1.21 -> v1.22: the Ingress only; the Deployment's removal (1.16) is the past.
    assert_eq!(
        names("v1.21.3", "v1.22.0"),
        ["extensions/v1beta1 ingresses (removed in v1.22; used by API server)"]
    );
    // Several minors at once: every removal on the way, in release order.
    assert_eq!(
        names("v1.21.3", "v1.25.0"),
        [
            "extensions/v1beta1 ingresses (removed in v1.22; used by API server)",
            "batch/v1beta1 cronjobs (removed in v1.25; used by API server)",
            "batch/v1beta1 cronjobs (removed in v1.25; used by default/nightly)",
        ]
    );
    // A patch release removes nothing; nor does an upgrade that stops before the release.
    assert!(names("v1.21.3", "v1.21.9").is_empty());
    assert!(names("v1.22.0", "v1.24.2").is_empty());

    let check = removed_api_check(&o, v("v1.21.3"), v("v1.22.0"), false);
    assert_eq!(check.name, "No APIs in use that the target version removes");
    assert_eq!(
        check.failure.as_deref(),
        Some(
            "APIs in use that v1.22.0 removes: extensions/v1beta1 ingresses (removed in v1.22; \
             used by API server)"
        )
    );
    // Forced, it passes; with nothing removed, it passes.
    assert_eq!(
        removed_api_check(&o, v("v1.21.3"), v("v1.22.0"), true).failure,
        None
    );
    assert_eq!(
        removed_api_check(&o, v("v1.22.0"), v("v1.24.0"), false).failure,
        None
    );
}
