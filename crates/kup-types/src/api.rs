//! Objects as the sysinv-compatible API shows them (field names are the contract), and the
//! bodies its clients send.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{KubeVersion, VersionState};

/// An entry of `GET /v1/kube_versions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KubeVersionSummary {
    pub version: KubeVersion,
    pub target: bool,
    pub state: VersionState,
}

/// `GET /v1/kube_versions/{version}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KubeVersionDetail {
    pub version: KubeVersion,
    pub upgrade_from: Vec<KubeVersion>,
    pub downgrade_to: Vec<KubeVersion>,
    pub applied_patches: Vec<String>,
    pub available_patches: Vec<String>,
    pub target: bool,
    pub state: VersionState,
}

/// A row of `GET /v1/kube_host_upgrades`, with the live versions read from the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KubeHostUpgradeView {
    pub id: i64,
    pub uuid: String,
    pub host_id: i64,
    pub hostname: String,
    pub personality: crate::Personality,
    pub target_version: Option<String>,
    pub status: Option<String>,
    /// A version, `N/A` (no control plane on this host) or `unknown` (not observed).
    pub control_plane_version: String,
    /// A version, `N/A` (no kubelet on this host) or `unknown` (node not observed).
    pub kubelet_version: String,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<jiff::Timestamp>,
}

/// `GET /v1/kube_upgrade` entries and the reply of every upgrade command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KubeUpgradeView {
    pub id: i64,
    pub uuid: String,
    pub from_version: KubeVersion,
    pub to_version: KubeVersion,
    pub state: crate::KubeUpgradeState,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<jiff::Timestamp>,
}

impl From<&crate::KubeUpgradeRecord> for KubeUpgradeView {
    fn from(r: &crate::KubeUpgradeRecord) -> Self {
        Self {
            id: r.id,
            uuid: r.uuid.clone(),
            from_version: r.from_version,
            to_version: r.to_version,
            state: r.state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A host as `GET /v1/ihosts` shows it (the fields StarlingX's `system` client reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IHost {
    pub id: u32,
    pub uuid: String,
    pub hostname: String,
    pub personality: crate::Personality,
    /// Comma-separated, as sysinv writes it: `controller,worker` on all-in-one controllers.
    pub subfunctions: String,
    pub administrative: crate::AdminState,
    pub operational: crate::OperState,
    pub availability: crate::Availability,
    /// `Locking`, `Unlocking`, `Swacting` while a host action runs.
    pub task: Option<String>,
    /// Whether this is the active controller (controllers only).
    pub active_controller: bool,
    /// sysinv's capabilities; controllers carry `Personality: Controller-Active|Controller-Standby`.
    #[schema(value_type = Object)]
    pub capabilities: serde_json::Value,
    pub roles: Vec<String>,
    pub peers: Option<String>,
    pub install_state: Option<String>,
    pub install_state_info: Option<String>,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<jiff::Timestamp>,
    /// In replies to `kube_upgrade_control_plane|kube_upgrade_kubelet` only: the host's upgrade
    /// row as the command left it (clients that do not know the key ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_host_upgrade: Option<KubeHostUpgradeView>,
}

/// An alarm, kup's own included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlarmView {
    pub uuid: String,
    pub alarm_id: String,
    pub entity_instance_id: String,
    pub reason_text: String,
    pub severity: crate::Severity,
    pub mgmt_affecting: bool,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: jiff::Timestamp,
}

impl From<&crate::Alarm> for AlarmView {
    fn from(a: &crate::Alarm) -> Self {
        Self {
            uuid: a.uuid.clone(),
            alarm_id: a.alarm_id.clone(),
            entity_instance_id: a.entity_instance_id.clone(),
            reason_text: a.reason_text.clone(),
            severity: a.severity,
            mgmt_affecting: a.management_affecting,
            timestamp: a.timestamp,
        }
    }
}

/// An entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub at: jiff::Timestamp,
    /// `command`, `state`, `host`, `operation` or `recovery`.
    pub kind: String,
    pub subject: String,
    pub message: String,
}

impl From<&crate::Event> for EventView {
    fn from(e: &crate::Event) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            kind: e.kind.as_str().to_string(),
            subject: e.subject.clone(),
            message: e.message.clone(),
        }
    }
}

/// `POST /v1/kube_upgrade`. Unknown keys are ignored, as sysinv does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KubeUpgradeCreate {
    #[schema(example = "v1.16.2")]
    pub to_version: String,
    #[serde(default)]
    pub force: bool,
    /// Alarm ids to ignore: a list, or (as older clients send) one comma-separated string.
    #[serde(default, deserialize_with = "alarm_list")]
    #[schema(value_type = Vec<String>)]
    pub alarm_ignore_list: Vec<String>,
}

fn alarm_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None => Vec::new(),
        Some(Form::List(v)) => v,
        // Accepts `100.101,200.001` and the legacy `['100.101', '200.001']`.
        Some(Form::Text(s)) => s
            .split(',')
            .map(|p| {
                p.trim_matches(|c: char| {
                    c == '[' || c == ']' || c == '\'' || c == '"' || c.is_whitespace()
                })
            })
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// One JSON-patch operation, as sysinv's PATCH bodies carry them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatchOp {
    /// `replace` or `add` (the same here); `remove` is refused, as the one path a resource
    /// lets change is mandatory.
    #[schema(example = "replace")]
    pub op: String,
    /// The one attribute the resource lets change: `/state` or `/action`.
    #[schema(example = "/state")]
    pub path: String,
    /// The new value, a string; `add` and `replace` need one.
    #[schema(value_type = Option<String>, example = "downloading-images")]
    pub value: Option<serde_json::Value>,
}

/// Body of `POST /v1/ihosts/{host}/kube_upgrade_control_plane|kube_upgrade_kubelet`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostUpgradeRequest {
    #[serde(default)]
    pub force: bool,
}

/// The error body of every refusal: sysinv's `error_message` holding a JSON string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A JSON document `{"faultcode": ..., "faultstring": <the reason>, "debuginfo": null}`.
    pub error_message: String,
}

impl ErrorBody {
    pub fn new(faultcode: &str, reason: &str) -> Self {
        let inner = serde_json::json!({
            "faultcode": faultcode,
            "faultstring": reason,
            "debuginfo": null,
        });
        Self {
            error_message: inner.to_string(),
        }
    }

    /// The reason inside, or the raw text if it is not the sysinv form.
    pub fn reason(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.error_message)
            .ok()
            .and_then(|v| {
                v.get("faultstring")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.error_message.clone())
    }
}

/// Collection wrappers, with sysinv's key names.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KubeVersionList {
    pub kube_versions: Vec<KubeVersionSummary>,
}
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KubeUpgradeList {
    pub kube_upgrades: Vec<KubeUpgradeView>,
}
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KubeHostUpgradeList {
    pub kube_host_upgrades: Vec<KubeHostUpgradeView>,
}
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IHostList {
    pub ihosts: Vec<IHost>,
}
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AlarmList {
    pub alarms: Vec<AlarmView>,
}
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    /// The newest event's sequence number when the reply was made: `after` for a follower
    /// that starts from now.
    #[serde(default)]
    pub last_seq: i64,
}

/// A patch as `sw-patch query`/`show` and `GET /v1/patches` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatchView {
    pub patch_id: String,
    pub kind: crate::PatchKind,
    pub summary: String,
    pub state: crate::PatchState,
    pub requires: Vec<String>,
    /// The Kubernetes version the patch brings (metadata or binaries).
    pub version: Option<KubeVersion>,
    pub key_id: String,
    pub files: Vec<String>,
    /// Hosts it is installed on.
    pub installed_on: Vec<String>,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub uploaded_at: jiff::Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PatchList {
    pub patches: Vec<PatchView>,
}

/// A host's patches, as `sw-patch query-hosts` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostPatchView {
    pub hostname: String,
    pub personality: crate::Personality,
    /// Every applied patch the host needs is installed, and nothing being removed is.
    pub patch_current: bool,
    pub installed: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HostPatchList {
    pub patch_hosts: Vec<HostPatchView>,
}

/// `kup ha-status`: the daemons that share the store, and which one leads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// `sqlite` (one daemon) or `postgresql` (several daemons, one leading).
    pub store: String,
    /// The replica that answered.
    pub replica: String,
    /// The replica that leads and executes (holds the lease), if any does.
    pub leader: Option<String>,
    /// Where the leader serves (standbys forward commands there).
    pub leader_address: Option<String>,
    /// The lease's fencing token: one more at every takeover.
    pub token: i64,
    /// Seconds since the leader last renewed the lease.
    pub lease_age_seconds: f64,
    /// Seconds until the lease expires unless renewed (0: expired).
    pub lease_left_seconds: f64,
    /// Seconds the leader has led.
    pub leader_for_seconds: f64,
    /// Every replica, most recently seen first.
    pub replicas: Vec<ReplicaStatus>,
}

/// A daemon sharing the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaStatus {
    pub id: String,
    pub address: String,
    pub leader: bool,
    /// Seconds since it last took part in the election (renewed or stood by).
    pub seen_seconds_ago: f64,
    pub started_seconds_ago: f64,
}

/// `kup info`: what the cluster runs (Kismatic's `info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    /// What the simulated cluster saw of the upgrade's safety (a real cluster has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_audit: Option<SafetyAudit>,
    /// The one version everything runs, when it is one.
    pub cluster_version: Option<KubeVersion>,
    /// While versions are mixed or an upgrade is in progress: from the lowest running version
    /// to the upgrade's target (or the highest running version).
    pub transitioning_from: Option<KubeVersion>,
    pub transitioning_to: Option<KubeVersion>,
    pub hosts: Vec<HostVersions>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostVersions {
    pub hostname: String,
    pub personality: crate::Personality,
    pub roles: Vec<String>,
    /// A version or `N/A`.
    pub control_plane_version: String,
    /// A version or `N/A`.
    pub kubelet_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ControlPlaneBackup {
    pub host: String,
    /// The version the control plane ran when it was taken.
    #[schema(value_type = String)]
    pub version: crate::KubeVersion,
}

/// What a simulated cluster checked at every instant of the upgrade: no PodDisruptionBudget
/// with more pods disrupted at once than it allows, no evicted pod left without a place, and
/// never two control-plane hosts down at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SafetyAudit {
    /// Drains that took a budget's pods beyond its allowed disruptions.
    pub pdb_violations: u64,
    /// Evicted pods that no remaining host had room for.
    pub unplaced_pods: u64,
    /// Times a control-plane host went down (locked, or its control plane upgrading) while
    /// another control-plane host was down or unavailable: etcd quorum and the API at risk.
    #[serde(default)]
    pub control_plane_violations: u64,
    /// Moments a kubelet ran outside the version skew policy (newer than an API server, or
    /// more minors behind one than it supports), or API servers more than a minor apart.
    #[serde(default)]
    pub skew_violations: u64,
    /// Steps that changed a version and ran to success a second time (executed twice).
    #[serde(default)]
    pub repeated_steps: u64,
    /// The control-plane backups taken before a first control plane moved (etcd snapshot and
    /// static pod manifests), which an abort restores.
    #[serde(default)]
    pub control_plane_backups: Vec<ControlPlaneBackup>,
    /// The first few of them, in words.
    pub examples: Vec<String>,
}
