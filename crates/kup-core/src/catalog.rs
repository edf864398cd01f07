//! The version catalog and the live version states computed from what runs
//! (StarlingX `kube_get_version_states`, reference §4.2–4.3).

use std::collections::{BTreeMap, BTreeSet};

use kup_types::{
    KubeUpgradeRecord, KubeVersion, KubeVersionDetail, KubeVersionSummary, Observation,
    VersionMeta, VersionState,
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    versions: BTreeMap<KubeVersion, VersionMeta>,
}

impl Catalog {
    pub fn new(metas: impl IntoIterator<Item = VersionMeta>) -> Self {
        Self {
            versions: metas.into_iter().map(|m| (m.version, m)).collect(),
        }
    }

    /// This catalog with more entries (an entry for a known version replaces it).
    pub fn with(&self, extra: impl IntoIterator<Item = VersionMeta>) -> Catalog {
        let mut versions = self.versions.clone();
        versions.extend(extra.into_iter().map(|m| (m.version, m)));
        Catalog { versions }
    }

    pub fn get(&self, v: KubeVersion) -> Option<&VersionMeta> {
        self.versions.get(&v)
    }

    /// Ascending.
    pub fn iter(&self) -> impl Iterator<Item = &VersionMeta> {
        self.versions.values()
    }

    /// The one rule of what can be upgraded to from what: a newer version whose metadata lists
    /// `from`, at most one minor version ahead (the control plane never skips a minor).
    pub fn upgrade_path(
        &self,
        from: KubeVersion,
        to: KubeVersion,
    ) -> Result<&VersionMeta, crate::Refusal> {
        let meta = self.get(to).ok_or(crate::Refusal::UnknownVersion(to))?;
        if to <= from || !meta.upgrade_from.contains(&from) {
            return Err(crate::Refusal::NoUpgradePath { from, to });
        }
        crate::skew::one_minor_step(from, to)?;
        Ok(meta)
    }

    /// The versions an upgrade from `from` to `to` steps through, `to` last: the highest
    /// patch of each minor between them, each step a catalog edge (`upgrade_from`) of one
    /// minor at most. One step for an upgrade within a minor or to the next one.
    pub fn steps(
        &self,
        from: KubeVersion,
        to: KubeVersion,
    ) -> Result<Vec<KubeVersion>, crate::Refusal> {
        self.get(to).ok_or(crate::Refusal::UnknownVersion(to))?;
        let steps = higher_patch_versions(self.versions.keys().copied(), from, to);
        if steps.last() != Some(&to) {
            return Err(crate::Refusal::NoUpgradePath { from, to });
        }
        let mut prev = from;
        for &step in &steps {
            self.upgrade_path(prev, step).map_err(|e| match e {
                crate::Refusal::NoUpgradePath { .. } => crate::Refusal::NoUpgradePath { from, to },
                // An edge that skips minors says so.
                other => other,
            })?;
            prev = step;
        }
        Ok(steps)
    }

    /// Live state of every known version.
    pub fn states(&self, obs: &Observation) -> BTreeMap<KubeVersion, VersionState> {
        let running: BTreeSet<KubeVersion> = running_versions(obs)
            .into_iter()
            .filter(|v| self.versions.contains_key(v))
            .collect();
        let active = (running.len() == 1).then(|| *running.first().expect("one element"));
        self.versions
            .values()
            .map(|m| {
                let state = if Some(m.version) == active {
                    VersionState::Active
                } else if running.contains(&m.version) {
                    VersionState::Partial
                } else if active.is_some_and(|a| m.upgrade_from.contains(&a) || m.version > a) {
                    VersionState::Available
                } else {
                    VersionState::Unavailable
                };
                (m.version, state)
            })
            .collect()
    }

    /// The version every control plane and kubelet runs, if there is exactly one and it is known.
    pub fn active(&self, obs: &Observation) -> Option<KubeVersion> {
        self.states(obs)
            .into_iter()
            .find(|(_, s)| *s == VersionState::Active)
            .map(|(v, _)| v)
    }

    /// `target`: the upgrade's `to_version` while one exists, otherwise the active version.
    fn is_target(v: KubeVersion, state: VersionState, upgrade: Option<&KubeUpgradeRecord>) -> bool {
        match upgrade {
            Some(u) => u.to_version == v,
            None => state == VersionState::Active,
        }
    }

    pub fn summaries(
        &self,
        obs: &Observation,
        upgrade: Option<&KubeUpgradeRecord>,
    ) -> Vec<KubeVersionSummary> {
        self.states(obs)
            .into_iter()
            .map(|(version, state)| KubeVersionSummary {
                version,
                target: Self::is_target(version, state, upgrade),
                state,
            })
            .collect()
    }

    pub fn detail(
        &self,
        v: KubeVersion,
        obs: &Observation,
        upgrade: Option<&KubeUpgradeRecord>,
    ) -> Option<KubeVersionDetail> {
        let meta = self.get(v)?;
        let state = self.states(obs)[&v];
        Some(KubeVersionDetail {
            version: v,
            upgrade_from: meta.upgrade_from.clone(),
            downgrade_to: meta.downgrade_to.clone(),
            applied_patches: meta.applied_patches.clone(),
            available_patches: meta.available_patches.clone(),
            target: Self::is_target(v, state, upgrade),
            state,
        })
    }
}

/// Every version a control plane (one per controller: its lowest component) or a kubelet runs,
/// known to the catalog or not.
/// StarlingX's `kube_get_higher_patch_version` (reference §4.4): of `known`, the versions
/// above `current` up to `target`, only the highest patch of each minor, and none of
/// `current`'s own minor when `target` is in a higher one; ascending.
pub fn higher_patch_versions(
    known: impl IntoIterator<Item = KubeVersion>,
    current: KubeVersion,
    target: KubeVersion,
) -> Vec<KubeVersion> {
    let mut highest: BTreeMap<(u32, u32), KubeVersion> = BTreeMap::new();
    let skip_own_minor = (target.major, target.minor) > (current.major, current.minor);
    for v in known {
        if v <= current || v > target {
            continue;
        }
        if skip_own_minor && (v.major, v.minor) == (current.major, current.minor) {
            continue;
        }
        let e = highest.entry((v.major, v.minor)).or_insert(v);
        if v > *e {
            *e = v;
        }
    }
    highest.into_values().collect()
}

pub fn running_versions(obs: &Observation) -> BTreeSet<KubeVersion> {
    let cps = obs
        .controllers()
        .filter_map(|h| obs.control_plane_version(&h.hostname));
    let kubelets = obs.nodes.iter().map(|n| n.kubelet_version);
    cps.chain(kubelets).collect()
}
