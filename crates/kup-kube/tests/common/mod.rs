//! A real kube-apiserver (Kubernetes v1.20.2) with etcd, on loopback, for one test: started by
//! `../shared/tools/kube-apiserver/start.sh` in a directory of its own and stopped when
//! dropped. Without the binary a test skips, saying why, unless `KUP_REQUIRE_APISERVER=1`
//! (CI), where it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ApiServer {
    pub dir: tempfile::TempDir,
    pub url: String,
}

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/kube-apiserver")
}

fn required() -> bool {
    std::env::var("KUP_REQUIRE_APISERVER").is_ok_and(|v| v == "1")
}

/// The cached binary, if it is there (building it takes minutes: that is `.ci/run`'s job).
fn binary() -> Option<PathBuf> {
    let cache = std::env::var_os("KUP_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kup-test")))?;
    let bin = cache.join("bin/kube-apiserver");
    bin.is_file().then_some(bin)
}

impl ApiServer {
    /// A fresh API server, or `None` (printed) when there is none to be had locally.
    pub fn start() -> Option<ApiServer> {
        if binary().is_none() {
            let why = "no kube-apiserver built (run ../shared/tools/kube-apiserver/build.sh)";
            assert!(!required(), "KUP_REQUIRE_APISERVER=1 but {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kup-apiserver-")
            .tempdir()
            .expect("a temporary directory");
        let out = Command::new("bash")
            .arg(tools().join("start.sh"))
            .arg(dir.path())
            .output()
            .expect("start.sh runs");
        let server = ApiServer {
            url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            dir,
        };
        assert!(
            out.status.success(),
            "start.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(server)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Only the processes start.sh started for this server, by their ids.
        let Ok(pids) = std::fs::read_to_string(self.dir.path().join("pids")) else {
            return;
        };
        for pid in pids.split_whitespace().rev() {
            let _ = Command::new("kill").arg(pid).status();
        }
        for pid in pids.split_whitespace() {
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}
