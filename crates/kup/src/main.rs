//! `kup`: the binary is glue. The daemon, the API, the engine and the client live in the
//! library crates; this file only parses the command line and dispatches.

mod cli;
mod demo;
mod output;
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
            rt.block_on(async {
                let daemon = serve::Daemon::open(&args).await?;
                daemon.run(serve::shutdown_signal()).await
            })
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
