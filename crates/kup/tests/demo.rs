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
        "$ kup host-swact controller-0",
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
fn bad_usage_exits_two_and_says_why() {
    for (args, says) in [
        (
            &["demo", "--time-scale", "fast"][..],
            "invalid value 'fast'",
        ),
        (
            &["demo", "--time-scale", "-1"],
            "not a number from 0 to 1000",
        ),
        (
            &["demo", "--time-scale", "1e300"],
            "not a number from 0 to 1000",
        ),
        (
            &["serve", "--time-scale", "inf"],
            "not a number from 0 to 1000",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
        (&[], "Usage"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kup"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_and_the_man_page_are_generated() {
    for (args, expect) in [
        (&["completions", "bash"][..], "kube-host-upgrade-list"),
        (&["completions", "zsh"], "kube-upgrade-start"),
        (&["man"], ".TH kup"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kup"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expect),
            "{args:?}"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_kup"))
        .args(["kube-host-upgrade", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("control-plane") && help.contains("kubelet") && help.contains("--force"),
        "{help}"
    );
}
