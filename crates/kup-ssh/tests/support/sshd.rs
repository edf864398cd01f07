//! A throwaway OpenSSH server on loopback for tests (Debian's `openssh-server`), with its own
//! host key, the test's login key, and fake tools on its PATH that record how they were
//! called (`calls.log`). Shared by kup-ssh's and kup-kube's tests (`#[path]`).
//!
//! Without `/usr/sbin/sshd`, `start` says so and returns `None`, unless `KUP_REQUIRE_SSHD=1`
//! (set by `.ci/run`, which installs it).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kup_ssh::SshTarget;

/// The fake tools: each appends its name and arguments to `calls.log`; `kubeadm` also says
/// it is done. A test that needs more writes its own with `fake` (under `path("bin")`).
pub const FAKES: [(&str, &str); 4] = [
    ("kubeadm", "echo \"[upgrade] kubeadm $*: done\""),
    ("apt-get", ""),
    ("apt-mark", ""),
    ("systemctl", ""),
];

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sh(cmd: &str) {
    let ok = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(ok.success(), "{cmd}");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fake tool: appends its name and arguments to `calls.log`, then prints a line.
pub fn fake(bin: &Path, name: &str, body: &str) {
    let path = bin.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name} $*\" >> \"$KUP_TEST_LOG\"\n{body}\n"),
    )
    .unwrap();
    sh(&format!("chmod 755 {}", path.display()));
}

impl Sshd {
    /// Starts sshd, or `None` (with the reason printed) where it is not installed.
    pub fn start() -> Option<Sshd> {
        Self::start_with(&[])
    }

    /// `start`, with more variables in the sessions' environment.
    pub fn start_with(env: &[(&str, &str)]) -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            assert!(
                std::env::var("KUP_REQUIRE_SSHD").is_err(),
                "{SSHD} is missing and KUP_REQUIRE_SSHD is set"
            );
            eprintln!("skipped: {SSHD} is not installed (Debian: openssh-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {0}/host_key && ssh-keygen -q -t ed25519 -N '' -f {0}/id_ed25519 && ssh-keygen -q -t ed25519 -N '' -f {0}/other_key && cp {0}/id_ed25519.pub {0}/authorized_keys && chmod 600 {0}/authorized_keys",
            d.display()
        ));
        let bin = d.join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (tool, body) in FAKES {
            fake(&bin, tool, body);
        }
        let extra: String = env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        // Privilege separation needs its directory when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host_key\n\
                 AuthorizedKeysFile {0}/authorized_keys\nPidFile {0}/sshd.pid\nStrictModes no\n\
                 UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 SetEnv PATH={0}/bin:/usr/bin:/bin KUP_TEST_LOG={0}/calls.log{extra}\n",
                d.display()
            ),
        )
        .unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let sshd = Sshd { dir, port, child };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "sshd did not listen: {}",
                std::fs::read_to_string(sshd.path("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The host's key as an operator would have recorded it.
        let host_key = std::fs::read_to_string(sshd.path("host_key.pub")).unwrap();
        let mut parts = host_key.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        std::fs::write(
            sshd.path("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .unwrap();
        Some(sshd)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn target(&self) -> SshTarget {
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        SshTarget {
            address: "127.0.0.1".into(),
            port: self.port,
            user,
            key_file: self.path("id_ed25519"),
            known_hosts: self.path("known_hosts"),
        }
    }

    pub fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls.log")).unwrap_or_default()
    }
}
