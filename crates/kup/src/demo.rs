//! `kup demo`: starts a daemon on a free loopback port in a temporary directory and walks the
//! seed's procedure through the same command parser and client a user has, printing each
//! command and what it returns. The daemon stops and the directory is removed at the end.

use std::time::Instant;

use clap::Parser;

use crate::cli::{ClientCommand, Runner};
use crate::output::Format;
use crate::serve::{Daemon, ServeArgs};
use crate::{Cli, Top};

struct Demo {
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
        println!("$ kup {line}");
        let outcome = self.runner.execute(&Self::parse(line)?).await;
        if let Some(err) = outcome.error_line() {
            return Err(format!("`kup {line}` failed: {err}"));
        }
        if show_output {
            print!("{}", outcome.stdout);
        }
        self.daemon_engine.wait_idle().await;
        Ok(outcome.stdout)
    }

    async fn step(&self, title: &str, lines: &[&str]) -> Result<(), String> {
        println!("\n{title}");
        for line in lines {
            let quiet = line.starts_with("host-");
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
        db: None,
        time_scale,
        token_file: None,
    };
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
        runner: Runner::new(client.clone(), Format::Table, false),
        client,
        daemon_engine: engine,
    };

    println!("kup demo: the StarlingX Kubernetes upgrade on the built-in standard system");
    println!(
        "(controller-0/1, storage-0/1, worker-0/1), daemon at {url}, time scale {time_scale}."
    );
    let result = walk(&demo).await;
    let _ = stop.send(());
    let _ = server.await;
    let (before, after, events) = result?;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    if seqs != (1..=seqs.len() as i64).collect::<Vec<_>>() {
        return Err(format!("the event log has a gap: {seqs:?}"));
    }
    println!("\nSummary");
    println!("Versions before:\n{before}Versions after:\n{after}");
    let steps = events.iter().filter(|e| e.kind == "state").count();
    println!(
        "{} events recorded (sequence 1..{} without a gap, {steps} state changes); the whole procedure took {:.1} s.",
        events.len(),
        events.len(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The seed's steps 2 and 5–15, then delete.
async fn walk(d: &Demo) -> Result<(String, String, Vec<kup_types::EventView>), String> {
    println!("\n2. List available kubernetes versions.");
    let before = d.run("kube-version-list", true).await?;
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
