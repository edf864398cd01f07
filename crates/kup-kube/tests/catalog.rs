//! The catalog file: the versions a real cluster may be upgraded to.

use kup_kube::parse_catalog;
use kup_types::KubeVersion;

#[test]
fn a_good_file_reads_as_written() {
    let c = parse_catalog(
        "versions:\n  - version: v1.21.0\n    upgrade_from: [v1.20.2, v1.20.15]\n  - version: v1.21.1\n    upgrade_from: [v1.21.0]\n    images: [r/kube-apiserver:v1.21.1]\n",
    )
    .unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].version, KubeVersion::new(1, 21, 0));
    assert_eq!(
        c[0].upgrade_from,
        [KubeVersion::new(1, 20, 2), KubeVersion::new(1, 20, 15)]
    );
    assert_eq!(c[0].images, Vec::<String>::new());
    assert_eq!(c[1].images, ["r/kube-apiserver:v1.21.1"]);
}

#[test]
fn bad_files_are_refused_with_one_line() {
    let cases = [
        (
            "empty list",
            "versions: []\n",
            "catalog file: it lists no versions",
        ),
        ("no list", "{}\n", "missing field `versions`"),
        (
            "unknown field",
            "versions:\n  - version: v1.21.0\n    from: [v1.20.2]\n",
            "unknown field `from`",
        ),
        (
            "not a version",
            "versions:\n  - version: 1.x\n",
            "invalid Kubernetes version \"1.x\"",
        ),
        (
            "twice",
            "versions:\n  - version: v1.21.0\n  - version: 1.21.0\n",
            "line 3: version v1.21.0 is listed twice",
        ),
        (
            "from a newer",
            "versions:\n  - version: v1.21.0\n    upgrade_from: [v1.22.0]\n",
            "upgrade_from lists v1.22.0, which is not older",
        ),
        (
            "from itself",
            "versions:\n  - version: v1.21.0\n    upgrade_from: [v1.21.0]\n",
            "which is not older",
        ),
        (
            "down to a newer",
            "versions:\n  - version: v1.21.0\n    downgrade_to: [v1.21.1]\n",
            "downgrade_to lists v1.21.1, which is not older",
        ),
        (
            "skips a minor",
            "versions:\n  - version: v1.22.0\n    upgrade_from: [v1.20.2]\n",
            "line 2: version v1.22.0: upgrade_from lists v1.20.2, more than one minor version older",
        ),
        ("not yaml", "versions: [\n", "catalog file"),
    ];
    for (what, text, want) in cases {
        let e = parse_catalog(text).expect_err(what).to_string();
        assert!(e.contains(want), "{what}: {e:?} should say {want:?}");
        assert!(e.starts_with("catalog file"), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: one line: {e:?}");
    }
}

#[test]
fn a_missing_file_says_which() {
    let e = kup_kube::load_catalog(std::path::Path::new("/nonexistent/catalog.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("catalog file: cannot read /nonexistent/catalog.yaml"),
        "{e}"
    );
}
