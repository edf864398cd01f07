//! `kup serve` as a real process on a free port with a fresh data directory, driven by the
//! real `kup` binary as an operator would, with TZ=UTC.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KUP: &str = env!("CARGO_BIN_EXE_kup");
pub const HOSTS: [&str; 6] = [
    "controller-0",
    "controller-1",
    "storage-0",
    "storage-1",
    "worker-0",
    "worker-1",
];

pub fn patches_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/patches")
}

pub fn patch_file(id: &str) -> String {
    patches_dir()
        .join(format!("{id}.patch"))
        .display()
        .to_string()
}

pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub token: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kup serve` on a free port and waits until it listens.
pub fn serve(dir: &Path, time_scale: &str) -> Daemon {
    serve_with(dir, time_scale, &[])
}

/// `serve` with more arguments for `kup serve`.
pub fn serve_with(dir: &Path, time_scale: &str, extra: &[&str]) -> Daemon {
    serve_as(&[], dir, time_scale, extra)
}

/// `serve_with`, run through `wrapper` (e.g. `setpriv` to run as another user).
pub fn serve_as(wrapper: &[&str], dir: &Path, time_scale: &str, extra: &[&str]) -> Daemon {
    let data = dir.join("kup-data");
    let _ = std::fs::remove_file(data.join("listen-address"));
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(KUP);
            c
        }
        None => Command::new(KUP),
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    // A real cluster takes no time scale.
    if !extra.contains(&"--kubeconfig") {
        cmd.args(["--time-scale", time_scale]);
    }
    let child = cmd
        .arg("--data-dir")
        .arg(&data)
        .arg("--trusted-key")
        .arg(patches_dir().join("demo-key.pub"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Owned by a `Daemon` at once, so it is killed and reaped whatever happens next.
    let mut daemon = Daemon {
        child,
        url: String::new(),
        token: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Whole once it ends with a newline: the daemon may be writing it.
        if let Ok(addr) = std::fs::read_to_string(data.join("listen-address"))
            && addr.ends_with('\n')
        {
            // Absent when the daemon was given a token file.
            let token = std::fs::read_to_string(data.join("admin-token")).unwrap_or_default();
            daemon.url = format!("http://{}", addr.trim());
            daemon.token = token.trim().into();
            return daemon;
        }
        let exited = daemon.child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "kup serve did not start: {}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `kup serve ARGS` that must refuse to start: exit 1 and one `Error:` line, returned.
/// A daemon that starts instead is stopped after 30 s and fails the test (rather than hang it).
pub fn serve_refused(args: &[&std::ffi::OsStr]) -> String {
    let mut child = Command::new(KUP)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read on a thread: a daemon that logs more than a pipe holds must not stall.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: kup serve started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap().unwrap();
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.starts_with("Error: ") && stderr.lines().count() == 1,
        "{args:?}: {stderr}"
    );
    stderr
}

/// The event log as JSON values.
pub fn events(d: &Daemon) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, "event-list --format json --limit 10000")).unwrap();
    v.as_array().unwrap().clone()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn kup(d: &Daemon, args: &str) -> Run {
    let args: Vec<&std::ffi::OsStr> = args.split_whitespace().map(std::ffi::OsStr::new).collect();
    kup_at(&d.url, &d.token, &[], &args)
}

/// `kup ARGS` against `url` with `token` and the given environment (and no CA from the
/// environment of the test run itself).
pub fn kup_at(
    url: &str,
    token: &str,
    env: &[(&str, &std::ffi::OsStr)],
    args: &[&std::ffi::OsStr],
) -> Run {
    let out = Command::new(KUP)
        .args(args)
        .env("KUP_URL", url)
        .env("KUP_TOKEN", token)
        .env_remove("KUP_CA_FILE")
        .envs(env.iter().copied())
        .env("TZ", "UTC")
        .env_remove("KUP_LOG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `GET path` on a daemon in plain HTTP/1.0 without a token (the open routes: `/healthz`,
/// `/readyz`, `/metrics`): the status and the body, or `None` when it does not answer.
pub fn http_get(d: &Daemon, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = d.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// A command that must succeed; returns its stdout.
pub fn ok(d: &Daemon, args: &str) -> String {
    let r = kup(d, args);
    assert_eq!(r.code, 0, "kup {args}: {}", r.stderr);
    assert!(r.stderr.is_empty(), "kup {args}: {}", r.stderr);
    r.stdout
}

/// A command that must be refused: exit 1, one `Error:` line.
pub fn refused(d: &Daemon, args: &str) -> String {
    let r = kup(d, args);
    assert_eq!(r.code, 1, "kup {args} should be refused: {}", r.stdout);
    assert!(
        r.stderr.starts_with("Error: ") && r.stderr.lines().count() == 1,
        "{:?}",
        r.stderr
    );
    r.stderr
}

/// Masks the values that change from run to run (uuids, timestamps).
pub fn redact(table: &str) -> String {
    table
        .lines()
        .map(|l| {
            match ["| uuid ", "| created_at ", "| updated_at "]
                .iter()
                .find(|k| l.starts_with(**k))
            {
                Some(key) if !l.contains("| None") => format!("{key}| <redacted>"),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A host's upgrade status once its step has ended.
pub fn settled_host_status(d: &Daemon, host: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: serde_json::Value =
            serde_json::from_str(&ok(d, "kube-host-upgrade-list --format json")).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["hostname"] == host)
            .unwrap()
            .clone();
        let status = row["status"].as_str().unwrap_or("None").to_string();
        if !status.starts_with("upgrading-")
            || status.ends_with("-failed")
            || Instant::now() > deadline
        {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The upgrade state once no step is in flight.
pub fn settled_state(d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state_of(d);
        let in_flight = [
            "downloading-images",
            "upgrading-first-master",
            "upgrading-networking",
            "upgrading-second-master",
        ];
        if !in_flight.contains(&s.as_str()) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seed steps 1, 3 and 4: the platform and kubeadm patches applied and installed everywhere,
/// the kubelet patch uploaded.
pub fn seed_patches_before_start(d: &Daemon) {
    for id in ["K8S-1.16.2-PLATFORM", "K8S-1.16.2-KUBEADM"] {
        ok(d, &format!("sw-patch upload {}", patch_file(id)));
        ok(d, &format!("sw-patch apply {id}"));
        for h in HOSTS {
            ok(d, &format!("sw-patch host-install {h}"));
        }
    }
    ok(
        d,
        &format!("sw-patch upload {}", patch_file("K8S-1.16.2-KUBELET")),
    );
}

/// Seed step 11: the kubelet patch applied and installed everywhere.
pub fn seed_kubelet_patch(d: &Daemon) {
    ok(d, "sw-patch apply K8S-1.16.2-KUBELET");
    for h in HOSTS {
        ok(d, &format!("sw-patch host-install {h}"));
    }
}

pub fn state_of(d: &Daemon) -> String {
    let out = ok(d, "kube-upgrade-show --format json");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["state"].as_str().unwrap_or("none").to_string()
}

/// The rows of `kube-host-upgrade-list`, as JSON.
pub fn host_upgrade_rows(d: &Daemon) -> Vec<serde_json::Value> {
    let rows: serde_json::Value =
        serde_json::from_str(&ok(d, "kube-host-upgrade-list --format json")).unwrap();
    rows.as_array().unwrap().clone()
}

/// A CA and the daemon's certificate it signed, for 127.0.0.1 and localhost, as PEM files in
/// `dir`: `ca.pem`, `cert.pem`, `key.pem`; the CA is named after `dir`. Minted per run: no
/// private key is committed.
pub struct Pki {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

pub fn mint_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("kup test CA {}", dir.display()),
    );
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}
