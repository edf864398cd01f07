//! `kup demo`: starts a daemon on a free loopback port in a temporary directory and walks the
//! seed's procedure through the same command parser and client a user has, printing each
//! command and what it returns. The daemon stops and the directory is removed at the end.

use std::time::Instant;

use clap::Parser;

use crate::cli::{ClientCommand, Runner};
use crate::output::Format;
use crate::serve::{Daemon, ServeArgs};
use crate::{Cli, Top};

const DEMO_KEY: &str = include_str!("../../../examples/patches/demo-key.pub");
const PATCHES: [(&str, &[u8]); 3] = [
    (
        "K8S-1.16.2-PLATFORM",
        include_bytes!("../../../examples/patches/K8S-1.16.2-PLATFORM.patch"),
    ),
    (
        "K8S-1.16.2-KUBEADM",
        include_bytes!("../../../examples/patches/K8S-1.16.2-KUBEADM.patch"),
    ),
    (
        "K8S-1.16.2-KUBELET",
        include_bytes!("../../../examples/patches/K8S-1.16.2-KUBELET.patch"),
    ),
];
const HOSTS: [&str; 6] = [
    "controller-0",
    "controller-1",
    "storage-0",
    "storage-1",
    "worker-0",
    "worker-1",
];

struct Demo {
    patch_dir: std::path::PathBuf,
    runner: Runner,
    client: kup_client::Client,
    daemon_engine: std::sync::Arc<kup_engine::Engine>,
}

impl Demo {
    fn parse(line: &str) -> Result<ClientCommand, String> {
        let args = std::iter::once("kup").chain(line.split_whitespace());
        match Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            Top::Client(cmd) => Ok(cmd),
            _ => Err(format!("not a client command: {line}")),
        }
    }

    /// Runs one command as `kup LINE` would, prints it, and waits for what it started.
    async fn run(&self, line: &str, show_output: bool) -> Result<String, String> {
        crate::term::out(&format!("$ kup {line}\n"));
        let outcome = self.runner.execute(&Self::parse(line)?).await;
        if let Some(err) = outcome.error_line() {
            return Err(format!("`kup {line}` failed: {err}"));
        }
        if show_output {
            crate::term::out(&outcome.stdout);
        }
        self.daemon_engine.wait_idle().await;
        Ok(outcome.stdout)
    }

    async fn step(&self, title: &str, lines: &[&str]) -> Result<(), String> {
        crate::term::out(&format!("\n{title}\n"));
        for line in lines {
            let quiet = line.starts_with("host-") || line.starts_with("sw-patch host-install");
            self.run(line, !quiet).await?;
        }
        Ok(())
    }
}

pub async fn run(time_scale: f64) -> Result<(), String> {
    let began = Instant::now();
    let dir =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let args = ServeArgs {
        data_dir: dir.path().join("kup-data"),
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        cluster: None,
        real: Default::default(),
        db: None,
        lease: 15,
        advertise_url: None,
        cluster_state: None,
        patch_dir: None,
        time_scale,
        token_file: None,
        trusted_keys: vec![dir.path().join("demo-key.pub")],
        init: false,
        step_timeouts: Vec::new(),
        header_read_timeout: 30,
        max_connections: 1024,
        tls_cert: None,
        tls_key: None,
    };
    // The seed's patches, signed with the demo key that only the demo and the tests trust.
    std::fs::write(dir.path().join("demo-key.pub"), DEMO_KEY)
        .map_err(|e| format!("cannot write the demo key: {e}"))?;
    for (id, bytes) in PATCHES {
        std::fs::write(dir.path().join(format!("{id}.patch")), bytes)
            .map_err(|e| format!("cannot write {id}.patch: {e}"))?;
    }
    let daemon = Daemon::open(&args).await?;
    let url = format!("http://{}", daemon.addr);
    let token = daemon.admin_token.clone().unwrap_or_default();
    let engine = daemon.engine.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon.run(async {
        let _ = stopped.await;
    }));
    let client = kup_client::Client::new(&url, &token).map_err(|e| e.to_string())?;
    let demo = Demo {
        patch_dir: dir.path().to_path_buf(),
        runner: Runner::new(client.clone(), Format::Table, false),
        client,
        daemon_engine: engine,
    };

    crate::term::out(
        "kup demo: the StarlingX Kubernetes upgrade on the built-in standard system\n",
    );
    crate::term::out(&format!(
        "(controller-0/1, storage-0/1, worker-0/1), daemon at {url}, time scale {time_scale}.\n"
    ));
    let result = walk(&demo).await;
    let _ = stop.send(());
    let _ = server.await;
    let (before, after, events) = result?;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    if seqs != (1..=seqs.len() as i64).collect::<Vec<_>>() {
        return Err(format!("the event log has a gap: {seqs:?}"));
    }
    crate::term::out("\nSummary\n");
    crate::term::out(&format!(
        "Versions before:\n{before}Versions after:\n{after}\n"
    ));
    let steps = events.iter().filter(|e| e.kind == "state").count();
    crate::term::out(&format!(
        "{} events recorded (sequence 1..{} without a gap, {steps} state changes); the whole procedure took {:.1} s.\n",
        events.len(),
        events.len(),
        began.elapsed().as_secs_f64()
    ));
    Ok(())
}

impl Demo {
    /// Upload (from the demo's directory), apply and install a patch on every host.
    fn patch_lines(&self, id: &str, upload: bool, apply: bool) -> Vec<String> {
        let mut lines = Vec::new();
        if upload {
            let file = self.patch_dir.join(format!("{id}.patch"));
            lines.push(format!("sw-patch upload {}", file.display()));
        }
        if apply {
            lines.push(format!("sw-patch apply {id}"));
            lines.extend(HOSTS.iter().map(|h| format!("sw-patch host-install {h}")));
        }
        lines
    }

    async fn lines(&self, title: &str, lines: &[String]) -> Result<(), String> {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.step(title, &refs).await
    }
}

/// The seed's steps 1–15, then delete.
async fn walk(d: &Demo) -> Result<(String, String, Vec<kup_types::EventView>), String> {
    crate::term::out("\nBefore: the platform knows only the running version.\n");
    let before = d.run("kube-version-list", true).await?;
    let mut step1 = d.patch_lines("K8S-1.16.2-PLATFORM", true, true);
    step1.push("sw-patch query".into());
    d.lines("1. Upload/apply/install the platform patch.", &step1)
        .await?;
    crate::term::out("\n2. List available kubernetes versions.\n");
    d.run("kube-version-list", true).await?;
    let step3 = d.patch_lines("K8S-1.16.2-KUBEADM", true, true);
    d.lines("3. Upload/apply/install kubeadm patch.", &step3)
        .await?;
    let mut step4 = d.patch_lines("K8S-1.16.2-KUBELET", true, false);
    step4.push("sw-patch query".into());
    d.lines(
        "4. Upload kubelet patch (it can not be applied yet).",
        &step4,
    )
    .await?;
    d.step(
        "5. Start kubernetes upgrade.",
        &["kube-upgrade-start v1.16.2"],
    )
    .await?;
    d.step(
        "6. Download kubernetes images.",
        &["kube-upgrade-download-images", "kube-upgrade-show"],
    )
    .await?;
    d.step(
        "7. Upgrade control plane on first controller.",
        &["kube-host-upgrade controller-1 control-plane"],
    )
    .await?;
    d.step(
        "8. Upgrade kubernetes networking.",
        &["kube-upgrade-networking"],
    )
    .await?;
    d.step(
        "9. Upgrade control plane on second controller",
        &["kube-host-upgrade controller-0 control-plane"],
    )
    .await?;
    d.step(
        "10. Show kubernetes upgrade status for hosts",
        &["kube-host-upgrade-list"],
    )
    .await?;
    let mut step11 = d.patch_lines("K8S-1.16.2-KUBELET", false, true);
    step11.push("sw-patch query-hosts".into());
    d.lines(
        "11. Apply/Install kubelet/kubectl patch (kubelet not restarted).",
        &step11,
    )
    .await?;
    d.step(
        "12. Upgrade kubelet on each controller",
        &[
            "host-lock controller-1",
            "kube-host-upgrade controller-1 kubelet",
            "host-unlock controller-1",
            "host-swact controller-0",
            "host-lock controller-0",
            "kube-host-upgrade controller-0 kubelet",
            "host-unlock controller-0",
        ],
    )
    .await?;
    d.step(
        "13. Show the kubernetes upgrade status",
        &["kube-upgrade-show"],
    )
    .await?;
    d.step(
        "14. Upgrade kubelet on all worker hosts",
        &[
            "host-lock worker-1",
            "kube-host-upgrade worker-1 kubelet",
            "host-unlock worker-1",
            "host-lock worker-0",
            "kube-host-upgrade worker-0 kubelet",
            "host-unlock worker-0",
        ],
    )
    .await?;
    d.step(
        "15. Complete the kubernetes upgrade",
        &["kube-upgrade-complete", "kube-upgrade-delete"],
    )
    .await?;
    let after = d.run("kube-version-list", false).await?;
    let events = d
        .client
        .events(0, 10_000)
        .await
        .map_err(|e| e.to_string())?;
    Ok((before, after, events))
}
