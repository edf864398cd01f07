//! `kup demo` as a user runs it: the real binary, its exit status and what it prints.

use std::process::Command;

#[test]
fn demo_walks_the_seed_procedure_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_kup"))
        .args(["demo", "--time-scale", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "| v1.16.1 | True   | active    |\n| v1.16.2 | False  | available |",
        "$ kup kube-upgrade-start v1.16.2",
        "| state        | upgrade-started                      |",
        "| status                | upgrading-control-plane |",
        "| 1  | controller-0 | controller  | v1.16.2        | v1.16.2               | v1.16.1         | None   |",
        "| state        | upgrading-kubelets                   |",
        "| state        | upgrade-complete                     |",
        "| v1.16.1 | False  | unavailable |\n| v1.16.2 | True   | active      |",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn bad_usage_exits_two_with_one_error_line() {
    for args in [&["demo", "--time-scale", "fast"][..], &["frobnicate"], &[]] {
        let out = Command::new(env!("CARGO_BIN_EXE_kup"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("Error: "), "{stderr}");
    }
}
