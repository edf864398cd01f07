//! `/metrics`: the daemon in Prometheus' text format (version 0.0.4).

use std::fmt::Write;

/// Prometheus text, one metric family at a time.
#[derive(Default)]
pub struct Text(String);

impl Text {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One unlabelled sample.
    pub fn one(&mut self, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
        self.head(name, help, kind);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One gauge sample per value of `label`.
    pub fn by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, usize)>,
    ) {
        self.labelled(name, help, "gauge", label, values);
    }

    /// One sample of `kind` per value of `label`.
    pub fn labelled<'a, N: std::fmt::Display>(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, N)>,
    ) {
        self.head(name, help, kind);
        for (v, n) in values {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(self.0, "{name}{{{label}=\"{v}\"}} {n}");
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The engine's part: the upgrade's and the strategy's state, operations in flight, hosts by
/// status, events.
pub fn engine(out: &mut Text, m: &kup_engine::EngineMetrics) {
    out.by(
        "kup_upgrade_state",
        "The Kubernetes upgrade's state (1 for the current one).",
        "state",
        m.upgrade_state.as_deref().map(|s| (s, 1)),
    );
    out.by(
        "kup_strategy_state",
        "The upgrade strategy's state (1 for the current one).",
        "state",
        m.strategy_state.as_deref().map(|s| (s, 1)),
    );
    out.by(
        "kup_operations_running",
        "Operations on the cluster in flight, by kind of step.",
        "kind",
        m.operations_running.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    out.by(
        "kup_hosts",
        "Hosts by upgrade status.",
        "status",
        m.hosts_by_status.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    out.one(
        "kup_events_total",
        "Events in the log (commands, state changes, operations).",
        "counter",
        m.events,
    );
    let st = &m.stats;
    out.labelled(
        "kup_commands_total",
        "Commands decided since the engine opened: accepted, or refused by a check.",
        "counter",
        "result",
        [
            ("accepted", st.commands_accepted),
            ("refused", st.commands_refused),
        ],
    );
    let steps = || st.steps.iter();
    out.labelled(
        "kup_steps_succeeded_total",
        "Steps that succeeded since the engine opened, by kind.",
        "counter",
        "kind",
        steps().map(|(k, s)| (k.as_str(), s.succeeded)),
    );
    out.labelled(
        "kup_steps_failed_total",
        "Steps that failed (or timed out) since the engine opened, by kind.",
        "counter",
        "kind",
        steps().map(|(k, s)| (k.as_str(), s.failed)),
    );
    out.labelled(
        "kup_step_seconds_sum",
        "Seconds the steps that ended took, by kind (divided by those that ended: the mean).",
        "counter",
        "kind",
        steps().map(|(k, s)| (k.as_str(), s.seconds)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_reads_as_prometheus_text() {
        let m = kup_engine::EngineMetrics {
            upgrade_state: Some("upgrading-kubelets".into()),
            strategy_state: None,
            operations_running: [("kubelet".to_string(), 2)].into(),
            hosts_by_status: [("none".to_string(), 3)].into(),
            events: 41,
            stats: kup_engine::Stats {
                commands_accepted: 7,
                commands_refused: 1,
                steps: [(
                    "kubelet".to_string(),
                    kup_engine::StepStats {
                        succeeded: 2,
                        failed: 1,
                        seconds: 12.5,
                    },
                )]
                .into(),
            },
        };
        let mut t = Text::default();
        engine(&mut t, &m);
        let text = t.into_string();
        assert!(
            text.contains("kup_upgrade_state{state=\"upgrading-kubelets\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kup_strategy_state gauge\n# HELP"),
            "{text}"
        );
        assert!(
            text.contains("kup_operations_running{kind=\"kubelet\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("kup_hosts{status=\"none\"} 3\n"), "{text}");
        assert!(text.contains("kup_events_total 41\n"), "{text}");
        assert!(
            text.contains("kup_commands_total{result=\"refused\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kup_steps_failed_total{kind=\"kubelet\"} 1\n"),
            "{text}"
        );
        assert!(
            text.ends_with("kup_step_seconds_sum{kind=\"kubelet\"} 12.5\n"),
            "{text}"
        );
    }
}
