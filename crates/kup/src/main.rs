//! `kup`: the binary is glue. The daemon, the API, the engine and the client live in the
//! library crates; this file only parses the command line and dispatches.

mod cli;
mod demo;
mod output;
mod real;
mod rehearse;
mod serve;
mod table;
mod term;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// kup upgrades the Kubernetes of a self-managed cluster, one safe step at a time.
#[derive(Parser, Debug)]
#[command(name = "kup", version)]
pub struct Cli {
    #[command(flatten)]
    opts: cli::ClientOpts,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Run the daemon: the REST API over the engine, the store and the cluster (simulated, or
    /// a real one with --kubeconfig and --hosts).
    Serve(Box<serve::ServeArgs>),
    /// Walk the seed's whole upgrade procedure on the built-in cluster, in a temporary
    /// directory, and print a summary.
    Demo {
        /// Multiplies every simulated duration (1.0 = realistic minutes).
        #[arg(long, default_value_t = 0.002, value_name = "X",
              value_parser = serve::parse_scale, allow_negative_numbers = true)]
        time_scale: f64,
    },
    /// Print a generated cluster file: a standard system (or with --control-planes a kubeadm
    /// cluster) with WORKERS workers and realistic workloads (about 30 pods per worker, a
    /// PodDisruptionBudget per 15 pods, 65% of the CPU requested), for `kup serve --cluster
    /// FILE`.
    GenCluster {
        /// How many workers (besides two controllers and two storage hosts, or the control
        /// planes).
        #[arg(long, value_name = "N")]
        workers: u32,
        /// A kubeadm cluster with N control-plane nodes (1 to 9) and no storage hosts, on
        /// v1.29.2 with v1.29.10 to upgrade to.
        #[arg(long, value_name = "N")]
        control_planes: Option<u32>,
        /// Seed of every random choice: the same seed gives the same file.
        #[arg(long, default_value_t = 1, value_name = "S")]
        seed: u64,
        /// Pods per worker, a DaemonSet's included.
        #[arg(long, default_value_t = 30, value_name = "N")]
        pods_per_node: u32,
    },
    /// Write a cluster's twin: a cluster file for the simulator holding what kup reads of
    /// the cluster (hosts, versions, pods where they run, budgets, alarms, applications, APIs
    /// in use, the catalog and step durations), to rehearse an upgrade on it. A real cluster
    /// (--kubeconfig --hosts) is only read.
    ExportCluster {
        /// The simulated cluster to export (default: the built-in one).
        #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
        cluster: Option<std::path::PathBuf>,
        #[command(flatten)]
        real: real::RealClusterArgs,
        /// Where to write it (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Rehearse the whole automated upgrade on a cluster's twin (in this process, on the
    /// simulation's clock; nothing real is touched): its duration, batches, the hosts that
    /// hold it back and why, and any budget or control plane put at risk. Exits 1 unless the
    /// upgrade went through with no violation.
    Rehearse {
        /// The cluster file of the twin (e.g. written by `kup export-cluster`; default: the
        /// built-in cluster).
        #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
        cluster: Option<std::path::PathBuf>,
        /// Rehearse on the twin of this real cluster, read once (nothing real is changed).
        #[command(flatten)]
        real: real::RealClusterArgs,
        /// Also write the real cluster's twin rehearsed on to FILE (a cluster file).
        #[arg(long, value_name = "FILE", requires = "kubeconfig")]
        save_twin: Option<std::path::PathBuf>,
        /// The target version (default: the newest the cluster can go to).
        #[arg(long, value_name = "V")]
        to: Option<String>,
        /// The largest number of workers upgraded at once.
        #[arg(long, default_value_t = 10, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_parallel_worker_hosts: u32,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            term::err_line(&format!("Error: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Top::Serve(args) => {
            init_logging();
            rt.block_on(serve::serve(&args))
                .map_or_else(fail, |()| ExitCode::SUCCESS)
        }
        Top::Demo { time_scale } => rt
            .block_on(demo::run(time_scale))
            .map_or_else(fail, |()| ExitCode::SUCCESS),
        Top::GenCluster {
            workers,
            control_planes,
            seed,
            pods_per_node,
        } => {
            let spec = kup_sim::generate::GenSpec {
                workers,
                seed,
                pods_per_node,
                control_planes,
                ..Default::default()
            };
            match kup_sim::generate::generate(&spec) {
                Ok(text) => {
                    term::out(&text);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.to_string()),
            }
        }
        Top::ExportCluster {
            cluster,
            real,
            output,
        } => match rt.block_on(export_cluster(cluster.as_deref(), &real, output.as_deref())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Top::Rehearse {
            cluster,
            real,
            save_twin,
            to,
            max_parallel_worker_hosts,
        } => {
            let inv = match rt.block_on(twin_or_file(
                cluster.as_deref(),
                &real,
                save_twin.as_deref(),
            )) {
                Ok(inv) => inv,
                Err(e) => return fail(e),
            };
            let r = rehearse::Rehearsal {
                to,
                max_parallel_worker_hosts,
                settle: std::time::Duration::from_millis(25),
            };
            match rt.block_on(rehearse::run(&inv, &r)) {
                Ok(outcome) => {
                    term::out(&outcome.report);
                    if outcome.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(e),
            }
        }
        Top::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kup", &mut script);
            term::out_bytes(&script);
            ExitCode::SUCCESS
        }
        Top::Man => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => {
                    term::out_bytes(&page);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.to_string()),
            }
        }
        Top::Client(cmd) => rt.block_on(cli::run(cmd, cli.opts)),
    }
}

/// `kup export-cluster`: the twin of a cluster, read through its driver.
/// The cluster a rehearsal runs on: a real cluster's twin (written to `save` too, if asked),
/// a cluster file, or the built-in cluster.
async fn twin_or_file(
    cluster: Option<&std::path::Path>,
    real: &real::RealClusterArgs,
    save: Option<&std::path::Path>,
) -> Result<kup_sim::Inventory, String> {
    let text = match (real.read()?, cluster) {
        (Some(real), _) => real::twin(&real).await?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read cluster file {}: {e}", path.display()))?,
        (None, None) => return Ok(kup_sim::Inventory::default_cluster()),
    };
    if let Some(path) = save {
        write_out(path, &text)?;
    }
    kup_sim::Inventory::parse(&text).map_err(|e| match cluster {
        Some(path) => format!("{}: {e}", path.display()),
        None => format!("the twin kup made does not read back (a defect of kup's): {e}"),
    })
}

fn write_out(path: &std::path::Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn export_cluster(
    cluster: Option<&std::path::Path>,
    real: &real::RealClusterArgs,
    output: Option<&std::path::Path>,
) -> Result<(), String> {
    use kup_driver::Driver;
    let text = match real.read()? {
        Some(real) => real::twin(&real).await?,
        None => {
            let inv = match cluster {
                Some(path) => serve::read_cluster_file(path)?,
                None => kup_sim::Inventory::default_cluster(),
            };
            let sim = kup_sim::SimCluster::new(&inv, 0.0);
            let obs = sim.observe().await.map_err(|e| e.to_string())?;
            let workloads = sim.workloads().await.map_err(|e| e.to_string())?;
            kup_sim::twin::twin_yaml(&kup_sim::twin::TwinSource {
                obs: &obs,
                workloads: &workloads,
                versions: &inv.versions,
                durations: &sim.step_durations(),
            })
            .map_err(|e| e.to_string())?
        }
    };
    match output {
        Some(path) => write_out(path, &text),
        None => {
            term::out(&text);
            Ok(())
        }
    }
}

fn fail(message: String) -> ExitCode {
    term::err_line(&format!("Error: {message}"));
    ExitCode::from(1)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUP_LOG")
        // kube-rs logs every failed request (a budget's 500, a lost watch) as an error of its
        // own; kup reports each with what it was doing, so kube's are left out by default.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,kube_client::client::builder=off")
        });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| term::LogWriter)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
