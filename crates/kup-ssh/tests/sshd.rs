//! Host steps against a real OpenSSH server (Debian's `openssh-server`) on loopback, started
//! by the test with its own host key, the test's login key, and fake `kubeadm`, `apt-get` and
//! `systemctl` on its PATH that record how they were called.
//!
//! Without `/usr/sbin/sshd` the tests say so and pass, unless `KUP_REQUIRE_SSHD=1` (set by
//! `.ci/run`, which installs it).

#[path = "support/sshd.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Sshd, free_port};

use kup_ssh::recipe::Vars;
use kup_ssh::{Commands, SshError, run};
use kup_types::KubeVersion;

const STEP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_steps_of_an_upgrade_run_over_ssh_with_their_output() {
    let Some(sshd) = Sshd::start() else { return };
    let t = sshd.target();
    t.validate().unwrap();
    let commands = Commands::default();
    let vars = Vars {
        version: KubeVersion::new(1, 30, 6),
        from_version: KubeVersion::new(1, 29, 2),
        host: "cp-0",
        image_repository: "registry.k8s.io",
    };
    for name in [
        "install_kubeadm",
        "pull_images",
        "upgrade_apply",
        "install_kubelet",
        "restart_kubelet",
    ] {
        let line = commands.render(name, &vars).unwrap();
        let out = run(&t, &line, STEP).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.code, 0);
        if name == "upgrade_apply" {
            assert_eq!(
                out.stdout,
                "[upgrade] kubeadm upgrade apply v1.30.6 --yes: done\n"
            );
        }
    }
    assert_eq!(
        sshd.calls(),
        "apt-get update -q\n\
         apt-mark unhold kubeadm\n\
         apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades kubeadm=1.30.6-*\n\
         apt-mark hold kubeadm\n\
         kubeadm config images pull --kubernetes-version v1.30.6 --image-repository registry.k8s.io\n\
         kubeadm upgrade apply v1.30.6 --yes\n\
         apt-get update -q\n\
         apt-mark unhold kubelet kubectl\n\
         apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades kubelet=1.30.6-* kubectl=1.30.6-*\n\
         apt-mark hold kubelet kubectl\n\
         systemctl daemon-reload\n\
         systemctl restart kubelet\n"
    );
}

#[tokio::test]
async fn a_failing_command_says_its_exit_code_and_last_words() {
    let Some(sshd) = Sshd::start() else { return };
    let e = run(
        &sshd.target(),
        "echo working; echo 'FATAL: the cluster is not healthy' >&2; exit 3",
        STEP,
    )
    .await
    .unwrap_err();
    match &e {
        SshError::Failed {
            code: 3, output, ..
        } => assert_eq!(output.stdout, "working\n"),
        e => panic!("{e:?}"),
    }
    assert!(
        e.to_string()
            .ends_with("failed with exit code 3: FATAL: the cluster is not healthy"),
        "{e}"
    );
}

/// No blind trust: a host whose key is not in the known_hosts file, or is another one, is
/// refused before any command runs.
#[tokio::test]
async fn an_unknown_or_changed_host_key_is_refused_before_anything_runs() {
    let Some(sshd) = Sshd::start() else { return };
    let mut t = sshd.target();
    std::fs::write(sshd.path("empty_known_hosts"), "").unwrap();
    t.known_hosts = sshd.path("empty_known_hosts");
    let e = run(&t, "kubeadm upgrade node", STEP).await.unwrap_err();
    assert!(matches!(e, SshError::HostKey { .. }), "{e:?}");
    let other = std::fs::read_to_string(sshd.path("other_key.pub")).unwrap();
    let mut parts = other.split_whitespace();
    std::fs::write(
        sshd.path("changed_known_hosts"),
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    t.known_hosts = sshd.path("changed_known_hosts");
    let e = run(&t, "kubeadm upgrade node", STEP).await.unwrap_err();
    assert!(matches!(e, SshError::HostKey { .. }), "{e:?}");
    assert!(e.to_string().contains("kup never trusts a key"), "{e}");
    // The known_hosts files were not written to, and nothing ran.
    assert_eq!(
        std::fs::read_to_string(sshd.path("empty_known_hosts")).unwrap(),
        ""
    );
    assert_eq!(sshd.calls(), "");
}

#[tokio::test]
async fn a_key_the_host_does_not_accept_and_a_host_that_does_not_answer() {
    let Some(sshd) = Sshd::start() else { return };
    let mut t = sshd.target();
    t.key_file = sshd.path("other_key");
    let e = run(&t, "true", STEP).await.unwrap_err();
    assert!(matches!(e, SshError::Login { .. }), "{e:?}");

    let mut t = sshd.target();
    t.port = free_port();
    let e = run(&t, "true", STEP).await.unwrap_err();
    assert!(matches!(e, SshError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("Connection refused"), "{e}");
}

#[tokio::test]
async fn a_command_past_its_deadline_is_stopped() {
    let Some(sshd) = Sshd::start() else { return };
    let started = Instant::now();
    let e = run(&sshd.target(), "sleep 30", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::TimedOut { seconds: 2, .. }), "{e:?}");
    // Not the command's 30 s.
    assert!(started.elapsed() < Duration::from_secs(15));
}
