//! The upgrade that runs itself: `kube-upgrade-strategy create|show|apply|abort|delete`
//! (StarlingX VIM's strategy) and `upgrade online|offline` (Kismatic's commands), which build
//! and apply a strategy and follow it on the terminal. The daemon runs the strategy; these
//! commands only ask for it and watch, so Ctrl-C detaches without stopping anything.

use std::time::{Duration, Instant};

use kup_types::{
    AlarmRestrictions, ApplyType, StepResult, StrategyCreate, StrategyRecord, StrategyState,
    StrategyView, UpgradeMode,
    strategy::{DEFAULT_MAX_PARALLEL_WORKER_HOSTS, MAX_PARALLEL_WORKER_HOSTS},
};

use super::{CliError, EVENT_WAIT, Outcome, Runner, name_arg};

/// How often `follow` reads the strategy again when none of its events came.
const REREAD: Duration = Duration::from_secs(3);
use crate::output::{self, Format};

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum StrategyCommand {
    /// Build a strategy: its checks and the stages the plan predicts (ready-to-apply, or
    /// build-failed with the reasons).
    Create(StrategyCreateArgs),
    /// Show the strategy; with --details its phases, stages and steps.
    Show {
        #[arg(long)]
        details: bool,
    },
    /// Apply the strategy (or resume one that failed or was aborted); with --wait, follow it
    /// to its end.
    Apply,
    /// Abort the strategy: the steps in flight finish, no new one starts; the upgrade stays
    /// resumable (apply again).
    Abort {
        /// Then take the upgrade back to its from-version (kube-upgrade-abort), with the same
        /// safety as the way up.
        #[arg(long)]
        rollback: bool,
    },
    /// Delete the strategy (not while it applies or aborts).
    Delete,
}

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct StrategyCreateArgs {
    /// The target version.
    #[arg(long, value_name = "V", value_parser = name_arg)]
    pub to_version: String,
    /// Workers one at a time, in batches, or not at all (the upgrade then stays open).
    #[arg(long, value_enum, default_value_t = WorkerApply::Parallel)]
    pub worker_apply_type: WorkerApply,
    /// The largest worker batch.
    #[arg(long, default_value_t = DEFAULT_MAX_PARALLEL_WORKER_HOSTS, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_PARALLEL_WORKER_HOSTS as i64))]
    pub max_parallel_worker_hosts: u32,
    /// Which alarms stop the strategy: every one not ignored, only management-affecting ones,
    /// or none.
    #[arg(long, value_enum, default_value_t = Alarms::Strict)]
    pub alarm_restrictions: Alarms,
    /// Online judges the workloads before each batch; offline locks with force.
    #[arg(long, value_enum, default_value_t = Mode::Online)]
    pub mode: Mode,
    /// Leave out the workers that are unsafe or not ready, and report them.
    #[arg(long)]
    pub partial_ok: bool,
}

/// `upgrade online|offline`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// The target version (default: the upgrade in progress, else the highest available).
    #[arg(long, value_name = "V", value_parser = name_arg)]
    pub to: Option<String>,
    /// Upgrade the hosts that pass the checks; report the others with why (the upgrade then
    /// stays open, to be finished later).
    #[arg(long)]
    pub partial_ok: bool,
    /// The largest number of workers upgraded at once.
    #[arg(long, default_value_t = DEFAULT_MAX_PARALLEL_WORKER_HOSTS, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_PARALLEL_WORKER_HOSTS as i64))]
    pub max_parallel_worker_hosts: u32,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerApply {
    Serial,
    Parallel,
    Ignore,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarms {
    Strict,
    Relaxed,
    Permissive,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Online,
    Offline,
}

impl StrategyCreateArgs {
    fn request(&self) -> StrategyCreate {
        StrategyCreate {
            to_version: self.to_version.clone(),
            worker_apply_type: Some(match self.worker_apply_type {
                WorkerApply::Serial => ApplyType::Serial,
                WorkerApply::Parallel => ApplyType::Parallel,
                WorkerApply::Ignore => ApplyType::Ignore,
            }),
            max_parallel_worker_hosts: Some(self.max_parallel_worker_hosts),
            alarm_restrictions: Some(match self.alarm_restrictions {
                Alarms::Strict => AlarmRestrictions::Strict,
                Alarms::Relaxed => AlarmRestrictions::Relaxed,
                Alarms::Permissive => AlarmRestrictions::Permissive,
            }),
            mode: Some(match self.mode {
                Mode::Online => UpgradeMode::Online,
                Mode::Offline => UpgradeMode::Offline,
            }),
            partial_ok: self.partial_ok,
            ..Default::default()
        }
    }
}

impl Runner {
    pub(super) async fn strategy(&self, cmd: &StrategyCommand) -> Result<Outcome, CliError> {
        let (c, f) = (&self.client, self.format);
        let view = match cmd {
            StrategyCommand::Create(args) => c.strategy_create(&args.request()).await?,
            StrategyCommand::Show { details } => {
                let view = c
                    .strategy()
                    .await?
                    .ok_or_else(|| CliError::Refused(kup_core::Refusal::NoStrategy.to_string()))?;
                return Ok(Outcome::done(strategy_show(&view, *details, f)?));
            }
            StrategyCommand::Apply => {
                let after = self.last_seq().await;
                let view = c.strategy_action("apply-all").await?;
                if self.wait {
                    return self.follow_from(view.strategy.uuid.clone(), after).await;
                }
                view
            }
            StrategyCommand::Abort { rollback } => c.strategy_abort(*rollback).await?,
            StrategyCommand::Delete => {
                c.strategy_delete().await?;
                let text = "Strategy deleted";
                return Ok(Outcome::done(output::confirmation(
                    text,
                    &serde_json::json!({ "message": text }),
                    f,
                )?));
            }
        };
        Ok(Outcome::done(strategy_show(&view, false, f)?))
    }

    /// `upgrade online|offline`: the plan, then a strategy built and applied, followed to its
    /// end. An unsafe or unready host stops it before anything changes (unless
    /// `--partial-ok`); a strategy already applying to the same version is followed; one that
    /// failed or was aborted is resumed.
    pub(super) async fn upgrade(
        &self,
        mode: UpgradeMode,
        args: &RunArgs,
    ) -> Result<Outcome, CliError> {
        let c = &self.client;
        let plan = c
            .upgrade_plan(
                args.to.as_deref(),
                args.max_parallel_worker_hosts,
                kup_core::safety::DEFAULT_MIN_FREE_DISK_GIB,
            )
            .await?;
        let parsed: kup_core::plan::Plan = serde_json::from_value(plan.clone())
            .map_err(|e| CliError::Refused(format!("the daemon's plan does not parse: {e}")))?;
        let to = parsed.to;
        if args.dry_run {
            let mut text = output::plan(plan, self.format)?;
            if self.format == Format::Table {
                text.push_str("Dry run: nothing was changed.\n");
            }
            return Ok(Outcome::done(text));
        }
        if !parsed.blocked.is_empty() && c.kube_upgrade().await?.is_none() {
            return Err(CliError::Refused(format!(
                "cannot upgrade to {to}: {}",
                parsed.blocked.join("; ")
            )));
        }
        let req = StrategyCreate {
            to_version: to.to_string(),
            worker_apply_type: Some(ApplyType::Parallel),
            max_parallel_worker_hosts: Some(args.max_parallel_worker_hosts),
            alarm_restrictions: Some(AlarmRestrictions::Strict),
            mode: Some(mode),
            partial_ok: args.partial_ok,
            ..Default::default()
        };
        if let Some(existing) = c.strategy().await? {
            let s = &existing.strategy;
            let same = s.to_version == to && s.mode == mode && s.partial_ok == args.partial_ok;
            // A failed or aborted strategy with other batch limits is built afresh (it resumes
            // from the upgrade's state all the same); a running one keeps its own.
            let same_cap = s.max_parallel_worker_hosts == args.max_parallel_worker_hosts;
            match s.state {
                StrategyState::Applying | StrategyState::Aborting if same => {
                    let cap = if same_cap {
                        String::new()
                    } else {
                        format!(
                            " (it keeps its own limit of {} worker hosts at a time)",
                            s.max_parallel_worker_hosts
                        )
                    };
                    self.say(&format!(
                        "A strategy to {to} is already {}: following it{cap}.",
                        s.state
                    ));
                    return self.follow(s.uuid.clone()).await;
                }
                StrategyState::Applying | StrategyState::Aborting => {
                    return Err(CliError::Refused(format!(
                        "a strategy to {} ({}) is {}: wait for it or abort it \
                         (kup kube-upgrade-strategy abort)",
                        s.to_version, s.mode, s.state
                    )));
                }
                StrategyState::ApplyFailed
                | StrategyState::ApplyTimeout
                | StrategyState::Aborted
                    if same && same_cap =>
                {
                    self.say(&format!(
                        "Resuming the strategy to {to} ({}: {}).",
                        s.state, s.apply_phase.reason
                    ));
                    let after = self.last_seq().await;
                    let view = c.strategy_action("apply-all").await?;
                    return self.follow_from(view.strategy.uuid.clone(), after).await;
                }
                _ => c.strategy_delete().await?,
            }
        }
        let built = c.strategy_create(&req).await?;
        if built.strategy.state != StrategyState::ReadyToApply {
            // Nothing of the cluster changed; the failed strategy goes too.
            let reasons = built.strategy.build_phase.reason.clone();
            c.strategy_delete().await?;
            let mut text = format!("Cannot upgrade {mode} to {to}; nothing was changed:\n");
            for r in reasons.lines() {
                text.push_str(&format!("  - {r}\n"));
            }
            let hint = if mode == UpgradeMode::Online && !args.partial_ok {
                " (--partial-ok upgrades the other hosts; offline skips the workload checks)"
            } else {
                ""
            };
            return Ok(Outcome {
                stdout: text,
                error: Some(CliError::Refused(format!(
                    "the upgrade to {to} was refused{hint}"
                ))),
                code: None,
            });
        }
        self.say(&format!(
            "Upgrading {mode} to {to}: {} stages, predicted {} (lower bound {}).",
            built.strategy.apply_phase.stages.len(),
            kup_core::plan::human(built.strategy.predicted_seconds),
            kup_core::plan::human(built.strategy.lower_bound_seconds),
        ));
        // Followed from before the apply, so no line of it is missed.
        let after = self.last_seq().await;
        let view = c.strategy_action("apply-all").await?;
        self.follow_from(view.strategy.uuid.clone(), after).await
    }

    /// The newest event's sequence number now.
    async fn last_seq(&self) -> i64 {
        self.client
            .events_wait(i64::MAX, 1, 0)
            .await
            .map(|l| l.last_seq)
            .unwrap_or(0)
    }

    /// A line of progress on stdout, as it happens.
    fn say(&self, line: &str) {
        if self.format == Format::Table {
            crate::term::out(&format!("{line}\n"));
        }
    }

    /// Follows the strategy until it stops applying: its events as lines, and on a terminal a
    /// bar for the whole apply and one for the stage in progress; then the summary. Ctrl-C
    /// detaches.
    async fn follow(&self, uuid: String) -> Result<Outcome, CliError> {
        let after = self.last_seq().await;
        self.follow_from(uuid, after).await
    }

    /// [`Self::follow`], printing the events after `after`.
    async fn follow_from(&self, uuid: String, mut after: i64) -> Result<Outcome, CliError> {
        let c = &self.client;
        let started = Instant::now();
        let mut bars = Bars::new(self.progress);
        let mut seen = Instant::now();
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        // The strategy (which grows with the cluster) is read again when one of its own events
        // says it moved, and at least every few seconds; not at every event of the cluster.
        let mut read_at = Instant::now();
        let mut view: Option<StrategyView> = None;
        let view = loop {
            if let Some(v) = view.as_ref().filter(|_| read_at.elapsed() < REREAD) {
                if !v.strategy.state.running() {
                    break view.take().expect("just seen");
                }
            } else {
                read_at = Instant::now();
                let polled = c.strategy().await;
                let Some(polled) = self.tolerate(polled, &mut seen)? else {
                    tokio::time::sleep(self.poll).await;
                    continue;
                };
                let polled = polled.ok_or_else(|| {
                    CliError::Refused("the strategy was deleted while it was followed".into())
                })?;
                if polled.strategy.uuid != uuid {
                    return Err(CliError::Refused(
                        "the strategy was replaced while it was followed".into(),
                    ));
                }
                bars.show(&polled, started.elapsed());
                if !polled.strategy.state.running() {
                    break polled;
                }
                view = Some(polled);
            }
            tokio::select! {
                _ = &mut interrupted => {
                    bars.clear();
                    crate::term::err_line(
                        "Detached: the upgrade goes on in the daemon. Follow it with \
                         `kup kube-upgrade-strategy show --details`, or run the same command \
                         again.",
                    );
                    return Ok(Outcome { stdout: String::new(), error: None, code: Some(130) });
                }
                list = c.events_wait(after, 1000, EVENT_WAIT) => {
                    match list {
                        Ok(list) => {
                            if list.events.iter().any(|e| e.kind == "strategy") {
                                view = None;
                            }
                            for ev in list.events.iter().filter(|e| e.kind == "strategy") {
                                bars.println(self.format, &format!(
                                    "{} {}",
                                    kup_types::time::format(&ev.at).get(11..19).unwrap_or(""),
                                    ev.message
                                ));
                            }
                            after = list.events.last().map_or(list.last_seq.max(after), |e| e.seq);
                        }
                        Err(_) => tokio::time::sleep(self.poll).await,
                    }
                }
            }
        };
        bars.clear();
        let s = &view.strategy;
        let text = match self.format {
            Format::Table => summary(s, started.elapsed()),
            f => output::structured_value(&view, f)?,
        };
        let error = match s.state {
            StrategyState::Applied => None,
            state => Some(CliError::Refused(format!(
                "the upgrade to {} is {state}: {}",
                s.to_version,
                if s.apply_phase.reason.is_empty() {
                    &s.abort_phase.reason
                } else {
                    &s.apply_phase.reason
                }
            ))),
        };
        Ok(Outcome {
            stdout: text,
            error,
            code: None,
        })
    }
}

/// The bars on a terminal: the whole apply (steps done of all), and the stage in progress.
struct Bars {
    multi: Option<indicatif::MultiProgress>,
    total: Option<indicatif::ProgressBar>,
    stage: Option<indicatif::ProgressBar>,
    shown_stage: Option<(u32, String)>,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        if !enabled {
            return Bars {
                multi: None,
                total: None,
                stage: None,
                shown_stage: None,
            };
        }
        let multi = indicatif::MultiProgress::new();
        let style = |t: &str| {
            indicatif::ProgressStyle::with_template(t)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        };
        let total = multi.add(indicatif::ProgressBar::new(1));
        total.set_style(style(
            "[{elapsed_precise}] {bar:30} {pos}/{len} steps {msg}",
        ));
        let stage = multi.add(indicatif::ProgressBar::new(1));
        stage.set_style(style("  {spinner} {bar:20} {msg}"));
        stage.enable_steady_tick(Duration::from_millis(120));
        Bars {
            multi: Some(multi),
            total: Some(total),
            stage: Some(stage),
            shown_stage: None,
        }
    }

    fn show(&mut self, view: &StrategyView, elapsed: Duration) {
        let (Some(total), Some(stage_bar)) = (&self.total, &self.stage) else {
            return;
        };
        let phase = &view.strategy.apply_phase;
        let steps: Vec<_> = phase.stages.iter().flat_map(|s| &s.steps).collect();
        total.set_length(steps.len().max(1) as u64);
        total.set_position(
            steps
                .iter()
                .filter(|s| s.result == StepResult::Success)
                .count() as u64,
        );
        total.set_message(format!("~{} left", remaining(&view.strategy, elapsed)));
        let cur = &view.current;
        if let (Some(i), Some(name)) = (cur.stage, &cur.stage_name) {
            let st = &phase.stages[i as usize];
            if self.shown_stage.as_ref() != Some(&(i, name.clone())) {
                self.shown_stage = Some((i, name.clone()));
                stage_bar.set_length(st.steps.len().max(1) as u64);
            }
            stage_bar.set_position(
                st.steps
                    .iter()
                    .filter(|s| s.result == StepResult::Success)
                    .count() as u64,
            );
            let hosts = if cur.entity_names.is_empty() {
                String::new()
            } else {
                format!(" on {}", cur.entity_names.join(", "))
            };
            stage_bar.set_message(format!(
                "stage {}/{} {name}: {}{hosts}",
                i + 1,
                phase.stages.len(),
                cur.step_name.as_deref().unwrap_or("-")
            ));
        }
    }

    fn println(&self, format: Format, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(crate::term::safe(line));
            }
            None if format == Format::Table => crate::term::out(&format!("{line}\n")),
            None => {}
        }
    }

    fn clear(&mut self) {
        for b in [self.total.take(), self.stage.take()].into_iter().flatten() {
            b.finish_and_clear();
        }
    }
}

/// The time left: the predicted seconds of the stages not done, scaled by how the time spent
/// so far compares with what the plan predicted for the stages done (so it holds at any time
/// scale of a simulated cluster).
fn remaining(s: &StrategyRecord, elapsed: Duration) -> String {
    let stages = &s.apply_phase.stages;
    let done: u64 = stages
        .iter()
        .filter(|st| st.result == StepResult::Success && st.start.is_some())
        .map(|st| st.predicted_seconds)
        .sum();
    let left: u64 = stages
        .iter()
        .filter(|st| st.result != StepResult::Success)
        .map(|st| st.predicted_seconds)
        .sum();
    let secs = if done > 0 {
        (left as f64 * elapsed.as_secs_f64() / done as f64).round() as u64
    } else {
        left
    };
    kup_core::plan::about(secs)
}

/// The end of `upgrade online|offline`: what was done, what was left out and why, the time.
fn summary(s: &StrategyRecord, elapsed: Duration) -> String {
    let stages = &s.apply_phase.stages;
    let upgraded: Vec<&str> = stages
        .iter()
        .filter(|st| {
            st.result == StepResult::Success
                && st.start.is_some()
                && (st.name == kup_core::strategy::STAGE_CONTROLLER
                    || st.name == kup_core::strategy::STAGE_WORKERS)
        })
        // The last kubelet round counts (an upgrade across several minors has more than one).
        .filter(|st| st.version.is_none_or(|v| v == s.to_version))
        .flat_map(|st| st.hosts.iter().map(String::as_str))
        .collect();
    let mut out = format!("Upgrade to {}: {}", s.to_version, s.state);
    if !s.apply_phase.reason.is_empty() {
        out.push_str(&format!(" ({})", s.apply_phase.reason));
    }
    out.push('\n');
    const NAMED: usize = 10;
    let names = match upgraded.len() {
        0 => String::new(),
        n if n <= NAMED => format!(" ({})", upgraded.join(", ")),
        n => format!(
            " ({}, and {} more)",
            upgraded[..NAMED].join(", "),
            n - NAMED
        ),
    };
    out.push_str(&format!(
        "Hosts whose kubelet was upgraded: {}{names}\n",
        upgraded.len()
    ));
    if !s.skipped.is_empty() {
        out.push_str(&format!("Hosts left out: {}\n", s.skipped.len()));
        for x in &s.skipped {
            out.push_str(&format!("  - {}: {}\n", x.host, x.reason));
        }
    }
    let actual = match (s.apply_phase.start, s.apply_phase.end) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs().max(0) as u64,
        _ => elapsed.as_secs(),
    };
    out.push_str(&format!(
        "Elapsed: {} (predicted {}, lower bound {}, at the cluster's step durations)\n",
        kup_core::plan::human(actual),
        kup_core::plan::human(s.predicted_seconds),
        kup_core::plan::human(s.lower_bound_seconds)
    ));
    out
}

/// `kube-upgrade-strategy show [--details]`, as sw-manager prints it.
pub fn strategy_show(view: &StrategyView, details: bool, format: Format) -> output::Rendered {
    if format != Format::Table {
        return output::structured_value(view, format);
    }
    let s = &view.strategy;
    let cur = &view.current;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
    row("strategy-uuid", s.uuid.clone());
    row("to-version", s.to_version.to_string());
    row("controller-apply-type", s.controller_apply_type.to_string());
    row("storage-apply-type", s.storage_apply_type.to_string());
    row("worker-apply-type", s.worker_apply_type.to_string());
    if s.worker_apply_type == ApplyType::Parallel {
        row(
            "max-parallel-worker-hosts",
            s.max_parallel_worker_hosts.to_string(),
        );
    }
    row("alarm-restrictions", s.alarm_restrictions.to_string());
    row("mode", s.mode.to_string());
    row("partial-ok", s.partial_ok.to_string());
    row("current-phase", cur.phase.clone());
    row(
        "current-stage",
        cur.stage.map(|i| i.to_string()).unwrap_or_default(),
    );
    row(
        "current-stage-name",
        cur.stage_name.clone().unwrap_or_default(),
    );
    row(
        "current-step",
        cur.step.map(|i| i.to_string()).unwrap_or_default(),
    );
    row(
        "current-step-name",
        cur.step_name.clone().unwrap_or_default(),
    );
    row("entity-names", cur.entity_names.join(", "));
    row(
        "current-phase-completion",
        format!("{}%", cur.phase_completion_percentage),
    );
    row("state", s.state.to_string());
    row(
        "predicted",
        format!(
            "{} (lower bound {})",
            kup_core::plan::human(s.predicted_seconds),
            kup_core::plan::human(s.lower_bound_seconds)
        ),
    );
    for (name, phase) in [
        ("build", &s.build_phase),
        ("apply", &s.apply_phase),
        ("abort", &s.abort_phase),
    ] {
        if phase.result != StepResult::Initial {
            row(&format!("{name}-result"), phase.result.to_string());
            row(&format!("{name}-reason"), phase.reason.clone());
        }
    }
    if !s.skipped.is_empty() {
        let list: Vec<String> = s
            .skipped
            .iter()
            .map(|x| format!("{}: {}", x.host, x.reason))
            .collect();
        row("left-out-hosts", list.join("; "));
    }
    let mut out = String::from("Strategy Kubernetes Upgrade Strategy:\n");
    for (k, v) in &rows {
        // A reason of several lines keeps its column.
        let v = v.replace('\n', &format!("\n{:30}", ""));
        out.push_str(&format!("  {:<28}{v}\n", format!("{k}:")));
    }
    if details {
        for phase in [&s.build_phase, &s.apply_phase, &s.abort_phase] {
            phase_details(&mut out, phase);
        }
    }
    Ok(out)
}

fn phase_details(out: &mut String, phase: &kup_types::strategy::Phase) {
    let ts =
        |t: Option<jiff::Timestamp>| t.map(|t| kup_types::time::format(&t)).unwrap_or_default();
    out.push_str(&format!("\n  {}-phase:\n", phase.name));
    out.push_str(&format!(
        "    total-stages:               {}\n",
        phase.stages.len()
    ));
    out.push_str(&format!(
        "    current-stage:              {}\n",
        phase
            .current_stage()
            .map(|i| i.to_string())
            .unwrap_or_default()
    ));
    out.push_str(&format!(
        "    completion-percentage:      {}%\n",
        phase.completion()
    ));
    out.push_str(&format!(
        "    start-date-time:            {}\n",
        ts(phase.start)
    ));
    out.push_str(&format!(
        "    end-date-time:              {}\n",
        ts(phase.end)
    ));
    out.push_str(&format!(
        "    result:                     {}\n",
        phase.result
    ));
    out.push_str(&format!(
        "    reason:                     {}\n",
        phase.reason
    ));
    if phase.stages.is_empty() {
        return;
    }
    out.push_str("    stages:\n");
    for (i, st) in phase.stages.iter().enumerate() {
        out.push_str(&format!("        stage-id: {i}\n"));
        out.push_str(&format!("        stage-name: {}\n", st.name));
        if let Some(v) = st.version {
            out.push_str(&format!("        version: {v}\n"));
        }
        if !st.hosts.is_empty() {
            out.push_str(&format!("        hosts: {}\n", st.hosts.join(", ")));
        }
        out.push_str(&format!("        total-steps: {}\n", st.steps.len()));
        out.push_str(&format!(
            "        current-step: {}\n",
            st.current_step().map(|i| i.to_string()).unwrap_or_default()
        ));
        out.push_str(&format!("        timeout: {} seconds\n", st.timeout));
        out.push_str(&format!("        start-date-time: {}\n", ts(st.start)));
        out.push_str(&format!("        end-date-time: {}\n", ts(st.end)));
        out.push_str(&format!("        result: {}\n", st.result));
        out.push_str(&format!("        reason: {}\n", st.reason));
        out.push_str("        steps:\n");
        for (k, step) in st.steps.iter().enumerate() {
            out.push_str(&format!("            step-id: {k}\n"));
            out.push_str(&format!("            step-name: {}\n", step.name));
            out.push_str(&format!(
                "            entity-type: {}\n",
                if step.hosts.is_empty() { "" } else { "hosts" }
            ));
            out.push_str(&format!(
                "            entity-names: {}\n",
                step.hosts.join(", ")
            ));
            out.push_str(&format!("            timeout: {} seconds\n", step.timeout));
            out.push_str(&format!(
                "            start-date-time: {}\n",
                ts(step.start)
            ));
            out.push_str(&format!("            end-date-time: {}\n", ts(step.end)));
            out.push_str(&format!("            result: {}\n", step.result));
            out.push_str(&format!("            reason: {}\n", step.reason));
        }
        out.push('\n');
    }
}
