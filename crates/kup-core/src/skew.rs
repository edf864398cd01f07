//! The Kubernetes version skew policy (`../shared/reference/peers.md` §2.1), as it bounds each
//! control-plane step: the API server never skips a minor version, the API servers of an HA
//! control plane stay within one minor of each other, and no kubelet falls further behind the
//! new control plane than it supports. Whatever the version metadata says, these hold.

use kup_types::{KubeVersion, Observation};

use crate::refusal::Refusal;

/// How many minor versions a kubelet may be older than the API server: 3 from kubelet 1.25
/// on, 2 before.
pub fn kubelet_max_skew(kubelet: KubeVersion) -> i64 {
    kubelet.kubelet_max_skew()
}

/// A control plane moves from `from` to `to` in one step only within one minor version.
pub fn one_minor_step(from: KubeVersion, to: KubeVersion) -> Result<(), Refusal> {
    if from.major == to.major && to.minor_skew(&from) <= 1 {
        Ok(())
    } else {
        Err(Refusal::SkipsMinor { from, to })
    }
}

/// Whether the control plane on `host` may move to `to` now, given every other control plane
/// and every kubelet the cluster runs.
pub fn control_plane_step(obs: &Observation, host: &str, to: KubeVersion) -> Result<(), Refusal> {
    if let Some(from) = obs.control_plane_version(host) {
        one_minor_step(from, to)?;
    }
    let refuse = |detail: String| {
        Err(Refusal::SkewPolicy {
            host: host.to_string(),
            to,
            detail,
        })
    };
    for c in obs.controllers().filter(|c| c.hostname != host) {
        if let Some(v) = obs.control_plane_version(&c.hostname)
            && to.minor_skew(&v).abs() > 1
        {
            return refuse(format!(
                "the control plane on {} runs {v}, and API servers must stay within one minor version of each other",
                c.hostname
            ));
        }
    }
    // Every kubelet the step would leave too far behind, named at once: they move first.
    let behind: Vec<String> = obs
        .nodes
        .iter()
        .filter(|n| {
            let k = n.kubelet_version;
            k.major != to.major || to.minor_skew(&k) > kubelet_max_skew(k)
        })
        // (newer ones are refused below, one by one)
        .map(|n| format!("{} ({})", n.name, n.kubelet_version))
        .collect();
    if !behind.is_empty() {
        return refuse(format!(
            "the kubelets on {} would be more than {} minor versions behind {to}; upgrade them first",
            behind.join(", "),
            kubelet_max_skew(
                obs.nodes
                    .iter()
                    .map(|n| n.kubelet_version)
                    .min()
                    .unwrap_or(to)
            )
        ));
    }
    for n in &obs.nodes {
        let k = n.kubelet_version;
        if to.minor_skew(&k) < 0 {
            return refuse(format!(
                "the kubelet on {} runs {k}, newer than {to}; a kubelet may never be newer than the API server",
                n.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    #[test]
    fn one_minor_at_a_time() {
        for (from, to, ok) in [
            ("v1.16.1", "v1.16.2", true),
            ("v1.16.1", "v1.17.0", true),
            ("v1.16.1", "v1.18.0", false),
            ("v1.16.1", "v1.19.0", false),
            ("v1.16.1", "v2.0.0", false),
            ("v1.16.2", "v1.16.1", true), // Downgrades are refused elsewhere.
        ] {
            assert_eq!(one_minor_step(v(from), v(to)).is_ok(), ok, "{from} -> {to}");
        }
        assert_eq!(
            one_minor_step(v("v1.16.1"), v("v1.19.0"))
                .unwrap_err()
                .to_string(),
            "Kubernetes v1.16.1 can not be upgraded to v1.19.0 in one step: the control plane moves one minor version at a time (upgrade to a v1.17 release first)"
        );
    }

    #[test]
    fn kubelet_skew_by_kubelet_version() {
        assert_eq!(kubelet_max_skew(v("v1.24.9")), 2);
        assert_eq!(kubelet_max_skew(v("v1.25.0")), 3);
        assert_eq!(kubelet_max_skew(v("v1.30.0")), 3);
    }
}
