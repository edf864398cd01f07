//! Live version states and the `target` flag (reference §4.2–4.3).

mod common;

use common::{
    HostSpec, MetaSpec, REFERENCE_CATALOG, catalog, meta, obs, pod_mut, upgrade_record, v,
};
use kup_core::Catalog;
use kup_types::{KubeUpgradeRecord, KubeUpgradeState, Observation, VersionState};

struct Case {
    name: &'static str,
    catalog: &'static [MetaSpec<'static>],
    hosts: &'static [HostSpec<'static>],
    /// Adjusts the observation built from `hosts`.
    tweak: fn(&mut Observation),
    /// `(from, to)` of an upgrade in progress.
    upgrade: Option<(&'static str, &'static str)>,
    /// One line per known version, ascending: `<version> <state>`, then ` target` if flagged.
    expect: &'static [&'static str],
}

fn no_tweak(_: &mut Observation) {}

/// Renders `summaries` as the case's lines, and cross-checks `states`, `active` and `detail`
/// against the expected lines.
fn check(case: &Case) {
    let cat = catalog(case.catalog);
    let mut o = obs(case.hosts);
    (case.tweak)(&mut o);
    let upgrade: Option<KubeUpgradeRecord> = case
        .upgrade
        .map(|(from, to)| upgrade_record(from, to, KubeUpgradeState::UpgradeStarted));
    let name = case.name;

    let got: Vec<String> = cat
        .summaries(&o, upgrade.as_ref())
        .iter()
        .map(|s| {
            let flag = if s.target { " target" } else { "" };
            format!("{} {}{flag}", s.version, s.state)
        })
        .collect();
    assert_eq!(got, case.expect, "{name}: summaries");

    let expected_states: Vec<(String, VersionState)> = case
        .expect
        .iter()
        .map(|line| {
            let mut words = line.split(' ');
            let version = words.next().expect("version").to_string();
            let state = words.next().expect("state").parse().expect("a state");
            (version, state)
        })
        .collect();
    let states: Vec<(String, VersionState)> = cat
        .states(&o)
        .into_iter()
        .map(|(version, state)| (version.to_string(), state))
        .collect();
    assert_eq!(states, expected_states, "{name}: states");

    let expected_active = expected_states
        .iter()
        .find(|(_, s)| *s == VersionState::Active)
        .map(|(version, _)| v(version));
    assert_eq!(cat.active(&o), expected_active, "{name}: active");

    for (line, summary) in case.expect.iter().zip(cat.summaries(&o, upgrade.as_ref())) {
        let detail = cat
            .detail(summary.version, &o, upgrade.as_ref())
            .unwrap_or_else(|| panic!("{name}: no detail for {}", summary.version));
        assert_eq!(
            (detail.state, detail.target),
            (summary.state, summary.target),
            "{name}: detail of {line}"
        );
    }
}

const CASES: &[Case] = &[
    Case {
        name: "single host, one version: it is active, every higher version available",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.42.1"),
            Some("v1.42.1"),
        )],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 active target",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "standard system, one version everywhere",
        catalog: REFERENCE_CATALOG,
        hosts: &[
            (
                "controller-0",
                "controller",
                Some("v1.42.0"),
                Some("v1.42.0"),
            ),
            (
                "controller-1",
                "controller",
                Some("v1.42.0"),
                Some("v1.42.0"),
            ),
            ("worker-0", "worker", None, Some("v1.42.0")),
            ("storage-0", "storage", None, None),
        ],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 active target",
            "v1.42.1 available",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "the lowest version active: all others available",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.41.3"),
            Some("v1.41.3"),
        )],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 active target",
            "v1.42.0 available",
            "v1.42.1 available",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "a lower version that lists the active one in upgrade_from is available",
        catalog: &[
            ("v1.41.3", &["v1.42.1"]),
            ("v1.42.0", &[]),
            ("v1.42.1", &["v1.42.0"]),
        ],
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.42.1"),
            Some("v1.42.1"),
        )],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 available",
            "v1.42.0 unavailable",
            "v1.42.1 active target",
        ],
    },
    Case {
        name: "control plane at one version, kubelet at another: both partial",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.43.1"),
            Some("v1.42.1"),
        )],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 partial",
            "v1.43.1 partial",
            "v1.44.0 unavailable",
        ],
    },
    Case {
        name: "one worker kubelet behind: both partial",
        catalog: REFERENCE_CATALOG,
        hosts: &[
            (
                "controller-0",
                "controller",
                Some("v1.43.1"),
                Some("v1.43.1"),
            ),
            (
                "controller-1",
                "controller",
                Some("v1.43.1"),
                Some("v1.43.1"),
            ),
            ("worker-0", "worker", None, Some("v1.43.1")),
            ("worker-1", "worker", None, Some("v1.42.1")),
        ],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 partial",
            "v1.43.1 partial",
            "v1.44.0 unavailable",
        ],
    },
    Case {
        name: "unknown running versions are ignored",
        catalog: REFERENCE_CATALOG,
        hosts: &[
            (
                "controller-0",
                "controller",
                Some("v1.42.1"),
                Some("v1.42.1"),
            ),
            ("worker-0", "worker", None, Some("v1.48.0")),
            ("worker-1", "worker", None, Some("v1.49.1")),
        ],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 active target",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "only unknown versions run: nothing active",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.40.0"),
            Some("v1.40.0"),
        )],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 unavailable",
            "v1.43.1 unavailable",
            "v1.44.0 unavailable",
        ],
    },
    Case {
        name: "nothing observed: everything unavailable",
        catalog: REFERENCE_CATALOG,
        hosts: &[("controller-0", "controller", None, None)],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 unavailable",
            "v1.43.1 unavailable",
            "v1.44.0 unavailable",
        ],
    },
    Case {
        name: "a controller mid control-plane upgrade counts its lowest component",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.42.1"),
            Some("v1.42.1"),
        )],
        tweak: |o| pod_mut(o, "controller-0", "kube-apiserver").version = v("v1.43.1"),
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 active target",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "the lowest component decides even when the kubelet runs the higher version",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.43.1"),
            Some("v1.43.1"),
        )],
        tweak: |o| pod_mut(o, "controller-0", "kube-scheduler").version = v("v1.42.1"),
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 partial",
            "v1.43.1 partial",
            "v1.44.0 unavailable",
        ],
    },
    Case {
        name: "control-plane pods of a host that is not a controller do not count",
        catalog: REFERENCE_CATALOG,
        hosts: &[
            (
                "controller-0",
                "controller",
                Some("v1.42.1"),
                Some("v1.42.1"),
            ),
            ("worker-0", "worker", Some("v1.43.1"), Some("v1.42.1")),
        ],
        tweak: no_tweak,
        upgrade: None,
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 active target",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "upgrade started, nothing moved yet: target is to_version, not the active one",
        catalog: REFERENCE_CATALOG,
        hosts: &[
            (
                "controller-0",
                "controller",
                Some("v1.42.1"),
                Some("v1.42.1"),
            ),
            (
                "controller-1",
                "controller",
                Some("v1.42.1"),
                Some("v1.42.1"),
            ),
        ],
        tweak: no_tweak,
        upgrade: Some(("v1.42.1", "v1.43.1")),
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 active",
            "v1.43.1 available target",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "upgrade half way: target is to_version while both are partial",
        catalog: REFERENCE_CATALOG,
        hosts: &[
            (
                "controller-0",
                "controller",
                Some("v1.43.1"),
                Some("v1.42.1"),
            ),
            (
                "controller-1",
                "controller",
                Some("v1.42.1"),
                Some("v1.42.1"),
            ),
        ],
        tweak: no_tweak,
        upgrade: Some(("v1.42.1", "v1.43.1")),
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 partial",
            "v1.43.1 partial target",
            "v1.44.0 unavailable",
        ],
    },
    Case {
        name: "upgrade finished: to_version active and target",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.43.1"),
            Some("v1.43.1"),
        )],
        tweak: no_tweak,
        upgrade: Some(("v1.42.1", "v1.43.1")),
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 unavailable",
            "v1.43.1 active target",
            "v1.44.0 available",
        ],
    },
    Case {
        name: "an upgrade to a version the catalog lacks flags nothing",
        catalog: REFERENCE_CATALOG,
        hosts: &[(
            "controller-0",
            "controller",
            Some("v1.42.1"),
            Some("v1.42.1"),
        )],
        tweak: no_tweak,
        upgrade: Some(("v1.42.1", "v1.45.0")),
        expect: &[
            "v1.41.3 unavailable",
            "v1.42.0 unavailable",
            "v1.42.1 active",
            "v1.43.1 available",
            "v1.44.0 available",
        ],
    },
];

#[test]
fn version_states_and_target() {
    for case in CASES {
        check(case);
    }
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "duplicate case names");
}

#[test]
fn detail_copies_the_catalog_entry() {
    let mut entry = meta("v1.43.1", &["v1.42.0", "v1.42.1"]);
    entry.downgrade_to = vec![v("v1.42.1")];
    entry.applied_patches = vec!["KUBE.1".into()];
    entry.available_patches = vec!["KUBE.2".into(), "KUBE.3".into()];
    let cat = Catalog::new([meta("v1.42.1", &[]), entry.clone()]);
    let o = obs(&[(
        "controller-0",
        "controller",
        Some("v1.42.1"),
        Some("v1.42.1"),
    )]);

    let d = cat.detail(v("v1.43.1"), &o, None).expect("known version");
    assert_eq!(d.version, v("v1.43.1"));
    assert_eq!(d.upgrade_from, entry.upgrade_from);
    assert_eq!(d.downgrade_to, entry.downgrade_to);
    assert_eq!(d.applied_patches, entry.applied_patches);
    assert_eq!(d.available_patches, entry.available_patches);
    assert_eq!((d.state, d.target), (VersionState::Available, false));
}

#[test]
fn detail_of_an_unknown_version_is_none() {
    let cat = catalog(REFERENCE_CATALOG);
    let o = obs(&[(
        "controller-0",
        "controller",
        Some("v1.42.1"),
        Some("v1.42.1"),
    )]);
    let upgrade = upgrade_record("v1.42.1", "v1.45.0", KubeUpgradeState::UpgradeStarted);
    for unknown in ["v1.42.2", "v1.45.0", "v2.42.1", "v0.0.0"] {
        assert_eq!(cat.detail(v(unknown), &o, None), None, "{unknown}");
        assert_eq!(
            cat.detail(v(unknown), &o, Some(&upgrade)),
            None,
            "{unknown}"
        );
    }
    assert!(cat.detail(v("v1.42.1"), &o, None).is_some());
}

#[test]
fn an_empty_catalog_has_no_states() {
    let cat = Catalog::default();
    let o = obs(&[(
        "controller-0",
        "controller",
        Some("v1.42.1"),
        Some("v1.42.1"),
    )]);
    assert!(cat.states(&o).is_empty());
    assert!(cat.summaries(&o, None).is_empty());
    assert_eq!(cat.active(&o), None);
}

/// StarlingX's `kube_get_higher_patch_version` table (reference §4.4).
#[test]
fn higher_patch_versions_as_starlingx_computes_them() {
    let known: Vec<_> = [
        "v1.41.3", "v1.42.0", "v1.42.1", "v1.42.3", "v1.42.4", "v1.42.11", "v1.43.1", "v1.44.0",
        "v1.45.1", "v1.45.3",
    ]
    .iter()
    .map(|s| v(s))
    .collect();
    let table: &[(&str, &str, &[&str])] = &[
        ("v1.41.3", "v1.43.1", &["v1.42.11", "v1.43.1"]),
        (
            "v1.41.3",
            "v1.45.1",
            &["v1.42.11", "v1.43.1", "v1.44.0", "v1.45.1"],
        ),
        ("v1.42.0", "v1.42.3", &["v1.42.3"]),
        ("v1.42.1", "v1.44.0", &["v1.43.1", "v1.44.0"]),
        ("v1.42.1", "v1.42.11", &["v1.42.11"]),
        ("v1.43.1", "v1.45.3", &["v1.44.0", "v1.45.3"]),
        ("v1.43.1", "v1.42.4", &[]),
        ("v1.42.3", "v1.42.11", &["v1.42.11"]),
    ];
    for (current, target, expect) in table {
        let got: Vec<String> =
            kup_core::catalog::higher_patch_versions(known.iter().copied(), v(current), v(target))
                .iter()
                .map(|x| x.to_string())
                .collect();
        assert_eq!(&got, expect, "{current} -> {target}");
    }
}

/// The steps of a multi-version upgrade follow the catalog's edges, one minor each; a missing
/// edge or a skipped minor is no path.
#[test]
fn steps_follow_the_catalogs_edges() {
    let cat = Catalog::new(
        [
            ("v1.29.2", vec![]),
            ("v1.29.6", vec!["v1.29.2"]),
            ("v1.30.1", vec!["v1.29.2", "v1.29.6"]),
            ("v1.30.6", vec!["v1.29.2", "v1.29.6", "v1.30.1"]),
            ("v1.31.5", vec!["v1.30.1", "v1.30.6"]),
            ("v1.32.2", vec!["v1.31.5"]),
            ("v1.33.0", vec!["v1.32.2"]),
            ("v1.35.0", vec!["v1.33.0"]),
        ]
        .into_iter()
        .map(|(ver, from)| kup_types::VersionMeta {
            version: v(ver),
            upgrade_from: from.into_iter().map(v).collect(),
            downgrade_to: vec![],
            applied_patches: vec![],
            available_patches: vec![],
            images: vec![],
        }),
    );
    let steps = |a: &str, b: &str| {
        cat.steps(v(a), v(b))
            .map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        steps("v1.29.2", "v1.33.0").unwrap(),
        ["v1.30.6", "v1.31.5", "v1.32.2", "v1.33.0"]
    );
    assert_eq!(steps("v1.29.2", "v1.29.6").unwrap(), ["v1.29.6"]);
    assert_eq!(steps("v1.30.1", "v1.31.5").unwrap(), ["v1.31.5"]);
    // v1.34 is not in the catalog: v1.35.0 would skip a minor.
    assert!(steps("v1.29.2", "v1.35.0").is_err());
    assert!(steps("v1.33.0", "v1.29.2").is_err());
    assert!(steps("v1.29.2", "v1.36.0").is_err());
}
