//! Simulated time for measuring schedules: operations take their realistic durations on a
//! clock of their own, which jumps to the next operation's end whenever whoever drives the
//! cluster has been quiet for a moment.
//!
//! Wall-clock time scaled down (`--time-scale`) mixes the driver's own reaction time into the
//! measure, amplified by the scale; tokio's paused clock would jump while the store's commits
//! run on their own threads. Here the clock only moves once nothing has been started, cancelled
//! or changed for `settle` of wall time: the orchestrator has reacted to the last step and
//! waits for the cluster. The makespan read off it is the schedule's alone (kup's reaction time
//! counts as zero, as it does against steps of minutes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kup_types::Operation;

use crate::Effect;

/// One operation as it ran on the simulated clock.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpan {
    pub op: Operation,
    pub start: Duration,
    pub end: Duration,
    pub ok: bool,
}

/// What happens at a point of simulated time.
pub(crate) enum Due {
    /// Run `run` (of `op`, started at `start`) ends.
    Run {
        run: usize,
        op: Operation,
        effect: Effect,
        start: Duration,
    },
    /// A Job or bare pod ends by itself.
    Workload { namespace: String, name: String },
}

pub(crate) struct VirtualClock {
    now: Duration,
    /// By end time, then in the order scheduled (ties end in start order).
    due: BTreeMap<(Duration, u64), Due>,
    seq: u64,
    last_activity: Instant,
    settle: Duration,
    spans: Vec<OpSpan>,
}

impl VirtualClock {
    pub(crate) fn new(settle: Duration) -> Self {
        Self {
            now: Duration::ZERO,
            due: BTreeMap::new(),
            seq: 0,
            last_activity: Instant::now(),
            settle,
            spans: Vec::new(),
        }
    }

    pub(crate) fn now(&self) -> Duration {
        self.now
    }

    /// Something was started, cancelled or changed: the clock waits for the driver to settle.
    pub(crate) fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Schedules `due` to happen `after` from now.
    pub(crate) fn schedule(&mut self, after: Duration, due: Due) {
        self.seq += 1;
        self.due
            .insert((self.now.saturating_add(after), self.seq), due);
        self.touch();
    }

    /// Removes the scheduled end of `run` (it was cancelled).
    pub(crate) fn unschedule(&mut self, run: usize) {
        self.due
            .retain(|_, d| !matches!(d, Due::Run { run: r, .. } if *r == run));
        self.touch();
    }

    /// The next thing due, with the clock moved to it, once the driver has been quiet for
    /// `settle`; `None` while it is busy or when nothing is scheduled.
    pub(crate) fn advance(&mut self) -> Option<Due> {
        if self.last_activity.elapsed() < self.settle {
            return None;
        }
        let ((at, _), due) = self.due.pop_first()?;
        self.now = self.now.max(at);
        self.touch();
        Some(due)
    }

    pub(crate) fn record(&mut self, op: Operation, start: Duration, ok: bool) {
        self.spans.push(OpSpan {
            op,
            start,
            end: self.now,
            ok,
        });
    }

    pub(crate) fn spans(&self) -> &[OpSpan] {
        &self.spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize) -> Due {
        Due::Run {
            run: n,
            op: Operation::Unlock {
                host: format!("h{n}"),
            },
            effect: Effect::None,
            start: Duration::ZERO,
        }
    }

    fn run_of(d: Option<Due>) -> Option<usize> {
        match d? {
            Due::Run { run, .. } => Some(run),
            Due::Workload { .. } => None,
        }
    }

    #[test]
    fn jumps_to_the_earliest_end_only_once_quiet() {
        let mut c = VirtualClock::new(Duration::from_secs(3600));
        c.schedule(Duration::from_secs(30), run(1));
        c.schedule(Duration::from_secs(10), run(2));
        assert!(c.advance().is_none(), "busy: the clock must not move");
        c.settle = Duration::ZERO;
        assert_eq!(run_of(c.advance()), Some(2));
        assert_eq!(c.now(), Duration::from_secs(10));
        c.unschedule(1);
        assert!(c.advance().is_none(), "a cancelled run never ends");
        assert_eq!(c.now(), Duration::from_secs(10));
    }

    #[test]
    fn ties_end_in_the_order_started() {
        let mut c = VirtualClock::new(Duration::ZERO);
        c.schedule(Duration::from_secs(5), run(7));
        c.schedule(Duration::from_secs(5), run(3));
        assert_eq!(run_of(c.advance()), Some(7));
        assert_eq!(run_of(c.advance()), Some(3));
        assert_eq!(c.now(), Duration::from_secs(5));
    }
}
