//! The client subcommands (`kup kube-version-list`, `kup host-lock HOST`, ...): parse, call the
//! daemon's REST API, print what StarlingX's `system` CLI prints.
//!
//! Exit status: 0 done; 1 refused or failed, with one `Error: <reason>` line on stderr;
//! 2 usage errors (clap's own).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kup_client::{Client, ClientError};
use kup_types::{AdminState, IHost, KubeUpgradeCreate};

use crate::output::{self, Format, HostUpgradeRow, OutputError};

pub const DEFAULT_URL: &str = "http://127.0.0.1:6385";
/// Where `kup serve` writes its admin token with the default `--data-dir`.
pub const DEFAULT_TOKEN_FILE: &str = "kup-data/admin-token";
/// How often `--wait` polls a daemon that has no event long poll.
const POLL: Duration = Duration::from_millis(200);
/// How long one long poll of the event log waits (well within the client's request timeout).
const EVENT_WAIT: u32 = 20;
/// How long `--wait` rides out an unreachable daemon (e.g. one being restarted).
const OUTAGE: Duration = Duration::from_secs(60);

// Options every client subcommand takes (before or after the subcommand). A plain comment:
// a doc comment here would become the `about` of whichever command flattens this.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Client options")]
pub struct ClientOpts {
    /// The kup daemon to talk to.
    #[arg(
        long,
        global = true,
        env = "KUP_URL",
        hide_env_values = true,
        default_value = DEFAULT_URL,
        value_name = "URL"
    )]
    pub url: String,

    /// API token [default: the contents of ./kup-data/admin-token]
    #[arg(
        long,
        global = true,
        env = "KUP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// A CA certificate (PEM; a bundle may hold several) to trust besides the system's when
    /// the URL is https://.
    #[arg(long, global = true, env = "KUP_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub format: Format,

    /// For asynchronous commands: block until the step settles; exit 1 if it failed.
    #[arg(long, global = true)]
    pub wait: bool,
}

impl ClientOpts {
    /// `--token`/`KUP_TOKEN`, else the default data directory's admin token file.
    pub fn resolve_token(&self) -> Result<String, CliError> {
        if let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(t.to_string());
        }
        std::fs::read_to_string(DEFAULT_TOKEN_FILE)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(CliError::NoToken)
    }
}

/// Which part of a host `kube-host-upgrade` upgrades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HostComponent {
    /// kube-apiserver, kube-controller-manager and kube-scheduler (controllers only).
    ControlPlane,
    /// The kubelet (the host is locked first, except on all-in-one simplex).
    Kubelet,
}

impl HostComponent {
    fn as_str(self) -> &'static str {
        match self {
            HostComponent::ControlPlane => "control-plane",
            HostComponent::Kubelet => "kubelet",
        }
    }
}

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    /// List the Kubernetes versions, with their target flag and state.
    KubeVersionList,
    /// Show a Kubernetes version: upgrade paths and required patches.
    KubeVersionShow {
        /// The version, e.g. v1.16.2.
        #[arg(value_parser = name_arg)]
        version: String,
    },
    /// Start a Kubernetes upgrade to VERSION, after the health checks.
    KubeUpgradeStart {
        /// The version to upgrade to, e.g. v1.16.2.
        #[arg(value_parser = name_arg)]
        version: String,
        /// Ignore alarms that are not management-affecting.
        #[arg(short, long)]
        force: bool,
        /// Alarm ids to ignore in the health checks.
        #[arg(long, value_delimiter = ',', value_name = "ID[,ID...]")]
        alarm_ignore: Vec<String>,
    },
    /// Show the Kubernetes upgrade in progress.
    KubeUpgradeShow,
    /// Download the new version's container images (asynchronous).
    KubeUpgradeDownloadImages,
    /// Upgrade the Kubernetes networking (asynchronous).
    KubeUpgradeNetworking,
    /// Abort the Kubernetes upgrade: every host that moved goes back to the from-version, in
    /// the reverse order and with the same safety as the way up (asynchronous; --wait follows
    /// it to upgrade-aborted). Before anything moved it ends at once.
    KubeUpgradeAbort,
    /// aio-simplex: evict the host's pods before its upgrade (kubectl drain; the host stays
    /// unlocked; asynchronous).
    KubeHostCordon {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
    },
    /// aio-simplex: let the evicted pods back once the kubelet is upgraded (asynchronous).
    KubeHostUncordon {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
    },
    /// Upgrade a host's control plane or kubelet (asynchronous).
    KubeHostUpgrade {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
        /// What to upgrade.
        #[arg(value_enum)]
        component: HostComponent,
        /// Upgrade even if some checks fail (e.g. the host is not locked).
        #[arg(short, long)]
        force: bool,
    },
    /// List every host's Kubernetes versions and upgrade status.
    KubeHostUpgradeList,
    /// Complete the Kubernetes upgrade once every kubelet is upgraded.
    KubeUpgradeComplete,
    /// Delete the Kubernetes upgrade record.
    KubeUpgradeDelete,
    /// Mark the step in progress as failed, so that it can be re-done.
    KubeUpgradeFailed,
    /// Mark the step or action in progress on a host (control plane, kubelet, lock, unlock,
    /// swact) as failed, e.g. one that hangs, so that it can be re-done.
    KubeHostUpgradeFailed {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
    },
    /// Check whether the system is ready for a Kubernetes upgrade.
    HealthQueryKubeUpgrade {
        /// Ignore alarms that are not management-affecting, as `kube-upgrade-start --force` does.
        #[arg(long)]
        relaxed: bool,
    },
    /// List the hosts.
    HostList,
    /// Show a host.
    HostShow {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
    },
    /// Lock a host (asynchronous).
    HostLock {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
        /// Lock even if it is unsafe.
        #[arg(short, long)]
        force: bool,
    },
    /// Unlock a host (asynchronous).
    HostUnlock {
        /// Hostname, numeric id or uuid.
        #[arg(value_parser = name_arg)]
        host: String,
        /// Unlock even if some checks fail.
        #[arg(short, long)]
        force: bool,
    },
    /// Swact: move the active controller role away from this controller (asynchronous).
    HostSwact {
        /// Hostname, numeric id or uuid of the active controller.
        #[arg(value_parser = name_arg)]
        host: String,
        /// Hand over even to a degraded standby (never to one that is locked or disabled).
        #[arg(short, long)]
        force: bool,
    },
    /// List the active alarms.
    AlarmList,
    /// List the event log.
    EventList {
        /// Only events with a sequence number greater than this.
        #[arg(long, default_value_t = 0, value_name = "SEQ",
              value_parser = clap::value_parser!(i64).range(0..))]
        after: i64,
        /// At most this many events.
        #[arg(long, default_value_t = 1000, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// If no event follows --after yet, wait up to this many seconds for one (the long
        /// poll), then print what came, possibly nothing.
        #[arg(long, default_value_t = 0, value_name = "SECONDS",
              value_parser = clap::value_parser!(u32).range(0..=300))]
        long_poll: u32,
        /// Keep printing events as they are committed (one line each; JSON Lines with
        /// --format json), until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Software patches: upload, apply, install on hosts, remove, delete; keygen and build.
    #[command(subcommand)]
    SwPatch(SwPatchCommand),
    /// The cluster's version (or the transition in progress) and every host's versions.
    Info,
    /// The daemons that share the store, which one leads, its fencing token and lease.
    HaStatus,
    /// The upgrade strategy that runs the whole upgrade (StarlingX VIM's): create, show,
    /// apply, abort, delete.
    #[command(subcommand)]
    KubeUpgradeStrategy(orchestration::StrategyCommand),
    /// The whole upgrade: `upgrade plan` shows what it would do and how long it would take;
    /// `upgrade online|offline` does it.
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
}

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum UpgradeCommand {
    /// The stages of the upgrade, the worker batches the safety analysis allows, the findings
    /// per host, and the predicted duration.
    Plan {
        /// The target version (default: the upgrade in progress, else the highest available).
        #[arg(long, value_name = "V", value_parser = name_arg)]
        to: Option<String>,
        /// The largest number of workers upgraded at once.
        #[arg(long, default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..))]
        max_parallel_worker_hosts: u32,
        /// A host with less free disk (GiB) is not ready.
        #[arg(long, default_value_t = 1, value_name = "GIB")]
        min_free_disk_gib: u32,
    },
    /// Upgrade the whole cluster, judging the workloads before each batch: refuses (changing
    /// nothing) while a host is unsafe or not ready, unless --partial-ok. Follows the upgrade
    /// to its end; Ctrl-C detaches without stopping it.
    Online(orchestration::RunArgs),
    /// Upgrade the whole cluster without the workload checks (hosts are locked with force);
    /// the order, readiness and control-plane availability still hold.
    Offline(orchestration::RunArgs),
}

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum SwPatchCommand {
    /// Upload signed patch bundles to the repository (each is verified first).
    Upload {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
    },
    /// Apply a patch: hosts that need it can then install it.
    Apply {
        #[arg(value_parser = name_arg)]
        id: String,
    },
    /// Remove an applied patch: hosts then uninstall it.
    Remove {
        #[arg(value_parser = name_arg)]
        id: String,
    },
    /// Delete an available (not applied) patch from the repository.
    Delete {
        #[arg(value_parser = name_arg)]
        id: String,
    },
    /// Install the applied patches a host needs, and uninstall those being removed.
    HostInstall {
        #[arg(value_parser = name_arg)]
        host: String,
    },
    /// List the patches and their states.
    Query,
    /// Show one patch.
    Show {
        #[arg(value_parser = name_arg)]
        id: String,
    },
    /// List the hosts: installed patches and whether each is patch current.
    QueryHosts,
    /// Create a signing key pair: NAME.secret (mode 0600) and NAME.pub (give this one to the
    /// daemon with --trusted-key).
    Keygen {
        #[arg(short, long, default_value = "kup-patch-key", value_name = "NAME")]
        out: String,
    },
    /// Build a signed bundle from DIR (patch.json and files/).
    Build {
        dir: std::path::PathBuf,
        /// The secret key file from `sw-patch keygen`.
        #[arg(long, value_name = "KEY")]
        key: std::path::PathBuf,
        #[arg(short, long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
}

/// A host, version or patch named on the command line. The daemon looks it up by exactly this
/// text (the client percent-encodes it whole), so only what no URL path can carry as itself
/// is refused here, as a usage error: an empty name, `.` and `..`.
fn name_arg(s: &str) -> Result<String, String> {
    match s {
        "" => Err("a name cannot be empty".into()),
        "." | ".." => Err(format!("{s:?} cannot be a name")),
        _ => Ok(s.to_string()),
    }
}

impl ClientCommand {
    /// The subcommand as typed, for `Error: <step> failed` lines.
    fn name(&self) -> &'static str {
        use ClientCommand::*;
        match self {
            KubeVersionList => "kube-version-list",
            KubeVersionShow { .. } => "kube-version-show",
            KubeUpgradeStart { .. } => "kube-upgrade-start",
            KubeUpgradeShow => "kube-upgrade-show",
            KubeUpgradeDownloadImages => "kube-upgrade-download-images",
            KubeUpgradeNetworking => "kube-upgrade-networking",
            KubeUpgradeAbort => "kube-upgrade-abort",
            KubeHostCordon { .. } => "kube-host-cordon",
            KubeHostUncordon { .. } => "kube-host-uncordon",
            KubeHostUpgrade { .. } => "kube-host-upgrade",
            KubeHostUpgradeList => "kube-host-upgrade-list",
            KubeUpgradeComplete => "kube-upgrade-complete",
            KubeUpgradeDelete => "kube-upgrade-delete",
            KubeUpgradeFailed => "kube-upgrade-failed",
            KubeHostUpgradeFailed { .. } => "kube-host-upgrade-failed",
            HealthQueryKubeUpgrade { .. } => "health-query-kube-upgrade",
            HostList => "host-list",
            HostShow { .. } => "host-show",
            HostLock { .. } => "host-lock",
            HostUnlock { .. } => "host-unlock",
            HostSwact { .. } => "host-swact",
            AlarmList => "alarm-list",
            EventList { .. } => "event-list",
            SwPatch(_) => "sw-patch",
            Info => "info",
            HaStatus => "ha-status",
            KubeUpgradeStrategy(_) => "kube-upgrade-strategy",
            Upgrade(_) => "upgrade",
        }
    }
}

/// Why a client command did not succeed; `Display` is the text after `Error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(
        "no API token: pass --token or set KUP_TOKEN (./{DEFAULT_TOKEN_FILE}, which `kup serve` writes, was not found)"
    )]
    NoToken,
    /// Refused on the client side, before any change was requested.
    #[error("{0}")]
    Refused(String),
    /// `--wait` saw the step end in a failed state.
    #[error("{step} failed: state {state}")]
    StepFailed { step: &'static str, state: String },
    /// `--wait` saw a host action end without its effect (e.g. a lock that was undone).
    #[error("{step} failed: {detail}")]
    ActionFailed { step: &'static str, detail: String },
    #[error("host {0} has no Kubernetes upgrade record")]
    NoHostUpgrade(String),
    #[error("the Kubernetes upgrade was deleted while waiting for {0}")]
    UpgradeVanished(&'static str),
}

/// What a command printed, and how it failed (after printing, for a `--wait` that settled in a
/// failed state: the settled object is still shown).
#[derive(Debug)]
pub struct Outcome {
    pub stdout: String,
    pub error: Option<CliError>,
    /// An exit status other than 0 or 1 (130: detached by Ctrl-C).
    pub code: Option<u8>,
}

impl Outcome {
    fn done(stdout: String) -> Self {
        Self {
            stdout,
            error: None,
            code: None,
        }
    }

    fn failed(error: CliError) -> Self {
        Self {
            stdout: String::new(),
            error: Some(error),
            code: None,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        if let Some(code) = self.code {
            ExitCode::from(code)
        } else if self.error.is_some() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }

    /// The stderr line, if any: exactly one line, even if the server's reason had several
    /// (each run of spaces and line breaks becomes one space). Any other control character
    /// (a tab in a name the server quotes back) is kept, for `term` to show escaped: a name
    /// with a tab must not read as the name without it.
    pub fn error_line(&self) -> Option<String> {
        self.error.as_ref().map(|e| {
            let text = e.to_string();
            let one: Vec<&str> = text
                .split(|c: char| c == '\n' || (c.is_whitespace() && !c.is_control()))
                .map(|part| part.strip_suffix('\r').unwrap_or(part))
                .filter(|part| !part.is_empty())
                .collect();
            format!("Error: {}", one.join(" "))
        })
    }
}

/// Runs `cmd` against the daemon `opts` names, prints its output on stdout and any error as
/// one `Error: ` line on stderr.
pub async fn run(cmd: ClientCommand, opts: ClientOpts) -> ExitCode {
    let outcome = match &cmd {
        // The producer's tools need no daemon.
        ClientCommand::SwPatch(
            p @ (SwPatchCommand::Keygen { .. } | SwPatchCommand::Build { .. }),
        ) => match local_sw_patch(p, opts.format) {
            Ok(text) => Outcome::done(text),
            Err(e) => Outcome::failed(e),
        },
        _ => match Runner::from_opts(&opts) {
            Ok(runner) => runner.execute(&cmd).await,
            Err(e) => Outcome::failed(e),
        },
    };
    crate::term::out(&outcome.stdout);
    if let Some(line) = outcome.error_line() {
        crate::term::err_line(&line);
    }
    outcome.exit_code()
}

/// A client plus the output options: runs one command and returns what to print.
pub struct Runner {
    client: Client,
    format: Format,
    wait: bool,
    poll: Duration,
    /// Spinners only for a person watching a terminal.
    progress: bool,
}

impl Runner {
    pub fn new(client: Client, format: Format, wait: bool) -> Self {
        Self {
            client,
            format,
            wait,
            poll: POLL,
            progress: std::io::stderr().is_terminal(),
        }
    }

    fn from_opts(opts: &ClientOpts) -> Result<Self, CliError> {
        // Read even for an http:// URL: a CA file that is wrong is said so, never skipped.
        let cas = match &opts.ca_file {
            Some(file) => kup_client::TrustedCas::from_pem_file(file)?,
            None => kup_client::TrustedCas::default(),
        };
        let client = Client::with_trusted_cas(&opts.url, &opts.resolve_token()?, &cas)?;
        Ok(Self::new(client, opts.format, opts.wait))
    }

    pub async fn execute(&self, cmd: &ClientCommand) -> Outcome {
        match self.dispatch(cmd).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::failed(e),
        }
    }

    async fn dispatch(&self, cmd: &ClientCommand) -> Result<Outcome, CliError> {
        use ClientCommand::*;
        let f = self.format;
        let c = &self.client;
        let text = match cmd {
            KubeVersionList => output::kube_version_list(&c.kube_versions().await?, f)?,
            KubeVersionShow { version } => {
                output::kube_version_show(&c.kube_version(version).await?, f)?
            }
            KubeUpgradeStart {
                version,
                force,
                alarm_ignore,
            } => {
                let req = KubeUpgradeCreate {
                    to_version: version.clone(),
                    force: *force,
                    alarm_ignore_list: alarm_ignore.clone(),
                };
                output::kube_upgrade_show(Some(&c.kube_upgrade_start(&req).await?), f)?
            }
            KubeUpgradeShow => output::kube_upgrade_show(c.kube_upgrade().await?.as_ref(), f)?,
            KubeUpgradeDownloadImages => return self.cluster_step(cmd, "downloading-images").await,
            KubeUpgradeNetworking => return self.cluster_step(cmd, "upgrading-networking").await,
            KubeUpgradeAbort => return self.cluster_step(cmd, "upgrade-aborting").await,
            KubeHostCordon { host } => {
                let host = c.host(host).await?.hostname;
                return self
                    .cluster_step_on(cmd, "cordon-started", Some(&host))
                    .await;
            }
            KubeHostUncordon { host } => {
                let host = c.host(host).await?.hostname;
                return self
                    .cluster_step_on(cmd, "uncordon-started", Some(&host))
                    .await;
            }
            KubeUpgradeComplete => output::kube_upgrade_show(
                Some(&c.kube_upgrade_set_state("upgrade-complete").await?),
                f,
            )?,
            KubeUpgradeDelete => {
                c.kube_upgrade_delete().await?;
                let text = output::UPGRADE_DELETED;
                output::confirmation(text, &serde_json::json!({ "message": text }), f)?
            }
            KubeUpgradeFailed => {
                let current = c
                    .kube_upgrade()
                    .await?
                    .ok_or_else(|| CliError::Refused(output::NO_UPGRADE.into()))?;
                let failed = current.state.failed().ok_or_else(|| {
                    CliError::Refused(format!(
                        "Kubernetes upgrade is in {} state, cannot be set to failed",
                        current.state
                    ))
                })?;
                output::kube_upgrade_show(
                    Some(&c.kube_upgrade_set_state(failed.as_str()).await?),
                    f,
                )?
            }
            KubeHostUpgradeFailed { host } => {
                // The host's name, whatever key was given: the row is found by it.
                let host = c.host(host).await?;
                let row = c.kube_host_upgrade_failed(&host.hostname, "failed").await?;
                output::kube_host_upgrade_show(&HostUpgradeRow::new(&host, Some(&row)), f)?
            }
            KubeHostUpgrade {
                host,
                component,
                force,
            } => return self.host_upgrade(host, *component, *force).await,
            KubeHostUpgradeList => {
                let hosts = c.hosts().await?;
                let rows = c.kube_host_upgrades().await?;
                output::kube_host_upgrade_list(&output::join_host_upgrades(&hosts, &rows), f)?
            }
            HealthQueryKubeUpgrade { relaxed } => {
                output::health(&c.health_kube_upgrade(*relaxed).await?, f)?
            }
            HostList => output::host_list(&c.hosts().await?, f)?,
            HostShow { host } => output::host_show(&c.host(host).await?, f)?,
            HostLock { host, force } => {
                let action = if *force { "force-lock" } else { "lock" };
                return self.host_action(cmd, host, action).await;
            }
            HostUnlock { host, force } => {
                let action = if *force { "force-unlock" } else { "unlock" };
                return self.host_action(cmd, host, action).await;
            }
            HostSwact { host, force } => {
                let action = if *force { "force-swact" } else { "swact" };
                return self.host_action(cmd, host, action).await;
            }
            AlarmList => output::alarm_list(&c.alarms().await?, f)?,
            EventList { after, follow, .. } if *follow => return self.follow_events(*after).await,
            EventList {
                after,
                limit,
                long_poll,
                ..
            } => output::event_list(&c.events_wait(*after, *limit, *long_poll).await?.events, f)?,
            SwPatch(p) => self.sw_patch(p).await?,
            Info => output::info(&c.info().await?, f)?,
            HaStatus => output::cluster_status(&c.cluster_status().await?, f)?,
            Upgrade(UpgradeCommand::Plan {
                to,
                max_parallel_worker_hosts,
                min_free_disk_gib,
            }) => {
                let plan = c
                    .upgrade_plan(
                        to.as_deref(),
                        *max_parallel_worker_hosts,
                        *min_free_disk_gib,
                    )
                    .await?;
                output::plan(plan, f)?
            }
            Upgrade(UpgradeCommand::Online(args)) => {
                return self.upgrade(kup_types::UpgradeMode::Online, args).await;
            }
            Upgrade(UpgradeCommand::Offline(args)) => {
                return self.upgrade(kup_types::UpgradeMode::Offline, args).await;
            }
            KubeUpgradeStrategy(s) => return self.strategy(s).await,
        };
        Ok(Outcome::done(text))
    }

    async fn sw_patch(&self, cmd: &SwPatchCommand) -> Result<String, CliError> {
        let (c, f) = (&self.client, self.format);
        Ok(match cmd {
            SwPatchCommand::Upload { files } => {
                let mut out = String::new();
                let mut done: Vec<String> = Vec::new();
                let mut views = Vec::new();
                for file in files {
                    // Name the file, and what got in before it, so a partial run is clear.
                    let fail = |why: String| {
                        let before = if done.is_empty() {
                            String::new()
                        } else {
                            format!(" (already uploaded: {})", done.join(", "))
                        };
                        CliError::Refused(format!("{}: {why}{before}", file.display()))
                    };
                    let bytes =
                        std::fs::read(file).map_err(|e| fail(format!("cannot read it: {e}")))?;
                    let p = c
                        .patch_upload(bytes)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    out.push_str(&format!("{} is now uploaded\n", p.patch_id));
                    done.push(p.patch_id.clone());
                    views.push(p);
                }
                output::confirmation(out.trim_end(), &views, f)?
            }
            SwPatchCommand::Apply { id } => {
                let p = c.patch_apply(id).await?;
                output::confirmation(&format!("{} is now {}", p.patch_id, p.state), &p, f)?
            }
            SwPatchCommand::Remove { id } => {
                let p = c.patch_remove(id).await?;
                output::confirmation(&format!("{} is now {}", p.patch_id, p.state), &p, f)?
            }
            SwPatchCommand::Delete { id } => {
                c.patch_delete(id).await?;
                let gone = serde_json::json!({ "patch_id": id, "deleted": true });
                output::confirmation(&format!("{id} has been deleted"), &gone, f)?
            }
            SwPatchCommand::HostInstall { host } => {
                output::host_patches_show(&c.patch_host_install(host).await?, f)?
            }
            SwPatchCommand::Query => output::patch_list(&c.patches().await?, f)?,
            SwPatchCommand::Show { id } => output::patch_show(&c.patch(id).await?, f)?,
            SwPatchCommand::QueryHosts => output::host_patch_list(&c.patch_hosts().await?, f)?,
            SwPatchCommand::Keygen { .. } | SwPatchCommand::Build { .. } => local_sw_patch(cmd, f)?,
        })
    }

    /// `download-images`, `networking`: PATCH the state; with `--wait`, poll until the upgrade
    /// leaves the in-flight state.
    async fn cluster_step(&self, cmd: &ClientCommand, state: &str) -> Result<Outcome, CliError> {
        self.cluster_step_on(cmd, state, None).await
    }

    /// A cluster step, naming the host it acts on (cordon, uncordon) as StarlingX's client does.
    async fn cluster_step_on(
        &self,
        cmd: &ClientCommand,
        state: &str,
        hostname: Option<&str>,
    ) -> Result<Outcome, CliError> {
        let mut cursor = self.event_cursor().await;
        let accepted = self
            .client
            .kube_upgrade_set_state_on(state, hostname)
            .await?;
        if !self.wait {
            return Ok(Outcome::done(output::kube_upgrade_show(
                Some(&accepted),
                self.format,
            )?));
        }
        let step = cmd.name();
        let spinner = Spinner::start(self.progress, step);
        let mut current = accepted;
        let mut seen = Instant::now();
        while current.state.in_flight() {
            spinner.say(format!("{step}: {}", current.state));
            self.next_change(&mut cursor).await;
            if let Some(polled) = self.tolerate(self.client.kube_upgrade().await, &mut seen)? {
                current = polled.ok_or(CliError::UpgradeVanished(step))?;
            }
        }
        drop(spinner);
        settled(
            output::kube_upgrade_show(Some(&current), self.format)?,
            current.state.is_failed().then(|| CliError::StepFailed {
                step,
                state: current.state.to_string(),
            }),
        )
    }

    /// `kube-host-upgrade HOST control-plane|kubelet`: POST, then show the host's upgrade row
    /// (StarlingX's client reads `/v1/kube_host_upgrades` for it too).
    async fn host_upgrade(
        &self,
        key: &str,
        component: HostComponent,
        force: bool,
    ) -> Result<Outcome, CliError> {
        let c = &self.client;
        let mut cursor = self.event_cursor().await;
        let host = match component {
            HostComponent::ControlPlane => c.kube_upgrade_control_plane(key, force).await?,
            HostComponent::Kubelet => c.kube_upgrade_kubelet(key, force).await?,
        };
        // The reply carries the row as the command left it; older daemons need the GET.
        let mut row = match &host.kube_host_upgrade {
            Some(r) => HostUpgradeRow::new(&host, Some(r)),
            None => self.host_upgrade_row(&host).await?,
        };
        let mut failure = None;
        if self.wait {
            let step = "kube-host-upgrade";
            let spinner = Spinner::start(self.progress, step);
            let mut cluster = c.kube_upgrade().await?;
            let mut seen = Instant::now();
            // The host's row says when its step ends: on a cluster with three or more control
            // planes the upgrade stays `upgrading-second-master` between two of them.
            while host_step_running(&row) {
                let state = row.status.as_deref().unwrap_or("None");
                spinner.say(format!(
                    "{step} {} {}: {state}",
                    host.hostname,
                    component.as_str()
                ));
                self.next_change(&mut cursor).await;
                let polled = async { Ok((c.kube_host_upgrades().await?, c.kube_upgrade().await?)) };
                if let Some((rows, up)) = self.tolerate(polled.await, &mut seen)? {
                    row = HostUpgradeRow::new(&host, output::find_host_upgrade(&host, &rows));
                    cluster = up;
                }
            }
            drop(spinner);
            let failed_status = row.status.clone().filter(|s| s.ends_with("-failed"));
            let failed_state = cluster
                .as_ref()
                .filter(|u| u.state.is_failed())
                .map(|u| u.state.to_string());
            failure = failed_status
                .or(failed_state)
                .map(|state| CliError::StepFailed { step, state });
        }
        settled(output::kube_host_upgrade_show(&row, self.format)?, failure)
    }

    async fn host_upgrade_row(&self, host: &IHost) -> Result<HostUpgradeRow, CliError> {
        let rows = self.client.kube_host_upgrades().await?;
        let row = output::find_host_upgrade(host, &rows)
            .ok_or_else(|| CliError::NoHostUpgrade(host.hostname.clone()))?;
        Ok(HostUpgradeRow::new(host, Some(row)))
    }

    /// `host-lock|unlock|swact`: PATCH the action; with `--wait`, poll until the host's task
    /// clears, then check the action took effect.
    async fn host_action(
        &self,
        cmd: &ClientCommand,
        key: &str,
        action: &str,
    ) -> Result<Outcome, CliError> {
        let mut cursor = self.event_cursor().await;
        let mut host = self.client.host_action(key, action).await?;
        if !self.wait {
            return Ok(Outcome::done(output::host_show(&host, self.format)?));
        }
        let step = cmd.name();
        let spinner = Spinner::start(self.progress, step);
        // The id is what cannot change under us.
        let id = host.id.to_string();
        let mut seen = Instant::now();
        while let Some(task) = host.task.as_deref() {
            spinner.say(format!("{step} {}: {task}", host.hostname));
            self.next_change(&mut cursor).await;
            if let Some(polled) = self.tolerate(self.client.host(&id).await, &mut seen)? {
                host = polled;
            }
        }
        drop(spinner);
        let failure =
            action_failure(action, &host).map(|detail| CliError::ActionFailed { step, detail });
        settled(output::host_show(&host, self.format)?, failure)
    }

    /// `event-list --follow`: prints each event as it is committed, for as long as it runs; a
    /// daemon that restarts is waited for as `--wait` does.
    async fn follow_events(&self, mut after: i64) -> Result<Outcome, CliError> {
        let mut seen = Instant::now();
        loop {
            let polled = self.client.events_wait(after, 1000, EVENT_WAIT).await;
            let Some(list) = self.tolerate(polled, &mut seen)? else {
                tokio::time::sleep(self.poll).await;
                continue;
            };
            for ev in &list.events {
                crate::term::out(&output::event_line(ev, self.format)?);
            }
            after = list.events.last().map_or(after, |ev| ev.seq);
        }
    }

    /// Where the event log ends before a `--wait` command is sent, so that `next_change` misses
    /// nothing the command causes; `None` without `--wait` or from a daemon with no long poll.
    async fn event_cursor(&self) -> Option<i64> {
        if !self.wait {
            return None;
        }
        let list = self.client.events_wait(i64::MAX, 1, 0).await.ok()?;
        Some(list.last_seq)
    }

    /// Returns when something may have changed: the next event of the log (the long poll), or
    /// a poll interval when the daemon has no long poll or cannot be reached.
    async fn next_change(&self, cursor: &mut Option<i64>) {
        if let Some(after) = cursor
            && let Ok(list) = self.client.events_wait(*after, 1000, EVENT_WAIT).await
        {
            if let Some(last) = list.events.last() {
                *after = last.seq;
                return;
            }
            *after = list.last_seq.max(*after);
        }
        tokio::time::sleep(self.poll).await;
    }

    /// While waiting, a daemon that cannot be reached (restarting, say) is retried for a while;
    /// `None` means "no news this round".
    fn tolerate<T>(
        &self,
        polled: Result<T, ClientError>,
        seen: &mut Instant,
    ) -> Result<Option<T>, CliError> {
        match polled {
            Ok(v) => {
                *seen = Instant::now();
                Ok(Some(v))
            }
            Err(ClientError::Connect { .. } | ClientError::Request { .. })
                if seen.elapsed() < OUTAGE =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn settled(stdout: String, error: Option<CliError>) -> Result<Outcome, CliError> {
    Ok(Outcome {
        stdout,
        error,
        code: None,
    })
}

fn host_step_running(row: &HostUpgradeRow) -> bool {
    matches!(
        row.status.as_deref(),
        Some("upgrading-control-plane" | "upgrading-kubelet")
    )
}

/// Why a settled host action did not do what it was asked, if it did not.
fn action_failure(action: &str, host: &IHost) -> Option<String> {
    let want = match action {
        "lock" | "force-lock" => AdminState::Locked,
        "unlock" | "force-unlock" => AdminState::Unlocked,
        _ => {
            // swact: this controller must have handed the active role over.
            return host
                .active_controller
                .then(|| format!("{} is still the active controller", host.hostname));
        }
    };
    (host.administrative != want).then(|| format!("{} is {}", host.hostname, host.administrative))
}

/// A spinner on stderr while `--wait` polls; nothing at all when stderr is not a terminal.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn start(enabled: bool, step: &str) -> Self {
        if !enabled {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.set_message(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }

    fn say(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }
}

/// Cleared however the wait ends, so an `Error:` line never follows a stale spinner.
impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

mod orchestration;
#[cfg(test)]
mod tests;

/// `sw-patch keygen` and `sw-patch build`: local files only. The confirmation is a sentence
/// in a table's stead, the files written (and the key id, the patch id) in JSON or YAML.
fn local_sw_patch(cmd: &SwPatchCommand, format: Format) -> Result<String, CliError> {
    let fail = |what: String| CliError::Refused(what);
    match cmd {
        SwPatchCommand::Keygen { out } => {
            use std::os::unix::fs::OpenOptionsExt;
            let key = kup_patch::generate_key().map_err(|e| fail(e.to_string()))?;
            let secret = format!("{out}.secret");
            let public = format!("{out}.pub");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&secret)
                .map_err(|e| fail(format!("cannot create {secret}: {e}")))?;
            f.write_all(kup_patch::format_secret_key(&key).as_bytes())
                .map_err(|e| fail(format!("cannot write {secret}: {e}")))?;
            std::fs::write(&public, kup_patch::format_public_key(&key.verifying_key()))
                .map_err(|e| fail(format!("cannot write {public}: {e}")))?;
            let key_id = kup_patch::key_id(&key.verifying_key());
            let written = serde_json::json!({
                "secret_key_file": secret,
                "public_key_file": public,
                "key_id": key_id,
            });
            Ok(output::confirmation(
                &format!("wrote {secret} (keep it secret) and {public} (key id {key_id})"),
                &written,
                format,
            )?)
        }
        SwPatchCommand::Build { dir, key, out } => {
            let text = std::fs::read_to_string(key)
                .map_err(|e| fail(format!("cannot read key {}: {e}", key.display())))?;
            let key = kup_patch::parse_secret_key(&text)
                .map_err(|e| fail(format!("key {}: {e}", key.display())))?;
            let bytes = kup_patch::build(dir, &key).map_err(|e| fail(e.to_string()))?;
            std::fs::write(out, &bytes)
                .map_err(|e| fail(format!("cannot write {}: {e}", out.display())))?;
            // The id the bundle was built with (the build read and checked the same file).
            let patch_id = std::fs::read(dir.join(kup_patch::PATCH_SPEC_FILE))
                .ok()
                .and_then(|spec| serde_json::from_slice::<kup_patch::PatchSpec>(&spec).ok())
                .map(|spec| spec.id);
            let written = serde_json::json!({
                "bundle_file": out.display().to_string(),
                "bytes": bytes.len(),
                "patch_id": patch_id,
                "key_id": kup_patch::key_id(&key.verifying_key()),
            });
            Ok(output::confirmation(
                &format!("wrote {} ({} bytes)", out.display(), bytes.len()),
                &written,
                format,
            )?)
        }
        _ => Err(fail("not a local command".into())),
    }
}
