//! A real kubeadm cluster named on the command line (`--kubeconfig`, `--context`, `--hosts`,
//! `--catalog`): the same flags and the same reading for `kup serve`, `kup export-cluster` and
//! `kup rehearse`, and what the latter two make of it, the twin.

use std::path::PathBuf;

use kup_driver::Driver;
use kup_kube::{HostsFile, KubeDriver};
use kup_types::VersionMeta;

/// The flags that name a real cluster.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RealClusterArgs {
    /// Drive a real kubeadm cluster through its API server instead of the simulation: the
    /// kubeconfig to reach it with. Needs --hosts.
    #[arg(long, value_name = "FILE", requires = "hosts")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (default: its current context).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    pub context: Option<String>,
    /// The real cluster's hosts file: each host's Node name, personality, roles and SSH
    /// target. Needs --kubeconfig.
    #[arg(long, value_name = "FILE", requires = "kubeconfig")]
    pub hosts: Option<PathBuf>,
    /// The versions the real cluster may be upgraded to (YAML: `versions:`, each with
    /// `version` and the `upgrade_from` versions it takes). The running version is read from
    /// the cluster; applied platform patches add theirs. Needs --kubeconfig.
    #[arg(long, value_name = "FILE", requires = "kubeconfig")]
    pub catalog: Option<PathBuf>,
}

/// A real cluster's files, read and checked.
pub struct RealCluster {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
    pub hosts: HostsFile,
    /// The catalog file's versions.
    pub catalog: Vec<VersionMeta>,
}

impl RealClusterArgs {
    /// The files, read and checked; `None` without `--kubeconfig`.
    pub fn read(&self) -> Result<Option<RealCluster>, String> {
        let (kubeconfig, hosts) = match (&self.kubeconfig, &self.hosts) {
            (Some(k), Some(h)) => (k, h),
            (None, None) => return Ok(None),
            // clap requires both; said again for callers that build the arguments themselves.
            _ => return Err("--kubeconfig and --hosts go together".into()),
        };
        Ok(Some(RealCluster {
            kubeconfig: kubeconfig.clone(),
            context: self.context.clone(),
            hosts: HostsFile::load(hosts).map_err(|e| format!("{}: {e}", hosts.display()))?,
            catalog: match &self.catalog {
                Some(file) => {
                    kup_kube::load_catalog(file).map_err(|e| format!("{}: {e}", file.display()))?
                }
                None => Vec::new(),
            },
        }))
    }
}

impl RealCluster {
    /// Reaches the cluster and reads its first lists of every kind.
    pub async fn connect(&self, settings: kup_kube::Settings) -> Result<KubeDriver, String> {
        KubeDriver::from_kubeconfig(
            &self.kubeconfig,
            self.context.as_deref(),
            self.hosts.clone(),
            settings,
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// A real cluster's catalog: the catalog file's versions, and the version the cluster runs
/// (as `kubeadm-config` says, or else its lowest control plane) when the file does not list
/// it; a version that lists no images has kubeadm's, from the cluster's image repository.
/// Versions to upgrade to also come from applied platform patches, as on the simulation.
pub async fn catalog(kube: &KubeDriver, file: &[VersionMeta]) -> Vec<VersionMeta> {
    let running = match kube.kubeadm_version() {
        Some(v) => Some(v),
        None => kube
            .observe()
            .await
            .ok()
            .and_then(|o| o.control_plane_pods.iter().map(|p| p.version).min()),
    };
    let unlisted = running
        .filter(|r| file.iter().all(|m| m.version != *r))
        .map(|version| VersionMeta {
            version,
            upgrade_from: Vec::new(),
            downgrade_to: Vec::new(),
            applied_patches: Vec::new(),
            available_patches: Vec::new(),
            images: Vec::new(),
        });
    file.iter()
        .cloned()
        .chain(unlisted)
        .map(|mut m| {
            if m.images.is_empty() {
                m.images = kube.kubeadm_images(m.version);
            }
            m
        })
        .collect()
}

/// The twin of a real cluster, as a cluster file for the simulator: read once through the
/// API (nothing is changed), with the catalog and kup's planning durations.
pub async fn twin(real: &RealCluster) -> Result<String, String> {
    let kube = real.connect(kup_kube::Settings::default()).await?;
    let obs = kube.observe().await.map_err(|e| e.to_string())?;
    let workloads = kube.workloads().await.map_err(|e| e.to_string())?;
    let versions = catalog(&kube, &real.catalog).await;
    kup_sim::twin::twin_yaml(&kup_sim::twin::TwinSource {
        obs: &obs,
        workloads: &workloads,
        versions: &versions,
        durations: &kube.step_durations(),
    })
    .map_err(|e| e.to_string())
}
