//! What each client command prints, as pure functions (objects + format → the exact text,
//! trailing newline included), so every table can be pinned by a test without a daemon.
//!
//! Tables follow cgts-client: list tables through `print_long_list`, key/value tables through
//! `print_dict` (keys sorted) or `print_tuple_list` (fixed order), values rendered as Python's
//! `str()` would (`True`, `None`, `['v1.16.1']`). JSON and YAML print the objects themselves.

use serde::Serialize;
use serde_json::Value;

use kup_types::{
    AlarmView, EventView, IHost, KubeHostUpgradeView, KubeUpgradeView, KubeVersionDetail,
    KubeVersionSummary, Personality,
};

use crate::table;

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `system`-style ASCII tables.
    #[default]
    Table,
    /// Pretty-printed JSON: an array for lists, the object for shows.
    Json,
    /// YAML, the same documents as JSON.
    Yaml,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Yaml => "yaml",
        })
    }
}

/// Serialization of our own wire types should not fail; if it does, say so instead of panicking.
#[derive(Debug, thiserror::Error)]
#[error("cannot print the reply as {format}: {message}")]
pub struct OutputError {
    format: Format,
    message: String,
}

pub type Rendered = Result<String, OutputError>;

/// The printed answer to `kube-upgrade-show` when there is no upgrade.
pub const NO_UPGRADE: &str = "A kubernetes upgrade is not in progress";
/// The printed answer to `kube-upgrade-delete`.
pub const UPGRADE_DELETED: &str = "Kubernetes upgrade deleted";

/// The columns of `kube-upgrade-show` and every upgrade command, in the seed's order.
const UPGRADE_FIELDS: [&str; 6] = [
    "uuid",
    "from_version",
    "to_version",
    "state",
    "created_at",
    "updated_at",
];

const HOST_UPGRADE_FIELDS: [&str; 7] = [
    "id",
    "hostname",
    "personality",
    "target_version",
    "control_plane_version",
    "kubelet_version",
    "status",
];

/// A host joined with its Kubernetes upgrade row, as `kube-host-upgrade[-list]` shows it.
/// `id` is the host's id (what the seed prints); the upgrade fields are `None` for a host
/// the daemon keeps no upgrade row for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostUpgradeRow {
    pub id: u32,
    pub hostname: String,
    pub personality: Personality,
    pub target_version: Option<String>,
    pub control_plane_version: Option<String>,
    pub kubelet_version: Option<String>,
    pub status: Option<String>,
}

impl HostUpgradeRow {
    pub fn new(host: &IHost, upgrade: Option<&KubeHostUpgradeView>) -> Self {
        Self {
            id: host.id,
            hostname: host.hostname.clone(),
            personality: host.personality,
            target_version: upgrade.and_then(|u| u.target_version.clone()),
            control_plane_version: upgrade.map(|u| u.control_plane_version.clone()),
            kubelet_version: upgrade.map(|u| u.kubelet_version.clone()),
            status: upgrade.and_then(|u| u.status.clone()),
        }
    }
}

/// The upgrade row of `host` (joined on `host_id`), if the daemon has one.
pub fn find_host_upgrade<'a>(
    host: &IHost,
    rows: &'a [KubeHostUpgradeView],
) -> Option<&'a KubeHostUpgradeView> {
    rows.iter().find(|r| r.host_id == i64::from(host.id))
}

/// Every host with its upgrade row, sorted by host id (storage hosts included).
pub fn join_host_upgrades(hosts: &[IHost], rows: &[KubeHostUpgradeView]) -> Vec<HostUpgradeRow> {
    let mut joined: Vec<HostUpgradeRow> = hosts
        .iter()
        .map(|h| HostUpgradeRow::new(h, find_host_upgrade(h, rows)))
        .collect();
    joined.sort_by_key(|r| r.id);
    joined
}

/// `kube-version-list`: in the server's order, as cgts-client prints it.
pub fn kube_version_list(versions: &[KubeVersionSummary], format: Format) -> Rendered {
    list(
        versions,
        format,
        &["Version", "Target", "State"],
        &["version", "target", "state"],
    )
}

/// `kube-version-show`: every field, sorted by key.
pub fn kube_version_show(version: &KubeVersionDetail, format: Format) -> Rendered {
    dict(version, format)
}

/// `kube-upgrade-show` and the reply of every upgrade command.
pub fn kube_upgrade_show(upgrade: Option<&KubeUpgradeView>, format: Format) -> Rendered {
    match (upgrade, format) {
        (None, Format::Table) => Ok(format!("{NO_UPGRADE}\n")),
        // Scripts get a parseable "nothing" rather than prose.
        (None, _) => structured(&Value::Null, format),
        (Some(u), _) => tuples(u, format, &UPGRADE_FIELDS),
    }
}

/// `kube-host-upgrade HOST control-plane|kubelet`: the host's row, sorted by key.
pub fn kube_host_upgrade_show(row: &HostUpgradeRow, format: Format) -> Rendered {
    dict(row, format)
}

/// `kube-host-upgrade-list`.
pub fn kube_host_upgrade_list(rows: &[HostUpgradeRow], format: Format) -> Rendered {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.id);
    list(&rows, format, &HOST_UPGRADE_FIELDS, &HOST_UPGRADE_FIELDS)
}

/// `host-list`, sorted by id.
pub fn host_list(hosts: &[IHost], format: Format) -> Rendered {
    let mut hosts = hosts.to_vec();
    hosts.sort_by_key(|h| h.id);
    let fields = [
        "id",
        "hostname",
        "personality",
        "administrative",
        "operational",
        "availability",
    ];
    list(&hosts, format, &fields, &fields)
}

/// `host-show` and the reply of host actions: every field, sorted by key.
pub fn host_show(host: &IHost, format: Format) -> Rendered {
    dict(host, format)
}

/// `alarm-list`, newest first, as `fm alarm-list` sorts.
pub fn alarm_list(alarms: &[AlarmView], format: Format) -> Rendered {
    let mut alarms = alarms.to_vec();
    alarms.sort_by_key(|a| std::cmp::Reverse(a.timestamp));
    list(
        &alarms,
        format,
        &[
            "UUID",
            "Alarm ID",
            "Reason Text",
            "Entity ID",
            "Severity",
            "Time Stamp",
        ],
        &[
            "uuid",
            "alarm_id",
            "reason_text",
            "entity_instance_id",
            "severity",
            "timestamp",
        ],
    )
}

/// `event-list`, in log order.
pub fn event_list(events: &[EventView], format: Format) -> Rendered {
    list(
        events,
        format,
        &["Seq", "Time Stamp", "Kind", "Subject", "Message"],
        &["seq", "at", "kind", "subject", "message"],
    )
}

/// One event of `event-list --follow`: a line of text, a JSON line, or a YAML document.
pub fn event_line(ev: &EventView, format: Format) -> Rendered {
    match format {
        Format::Table => Ok(format!(
            "{} {} {} {}: {}\n",
            ev.seq,
            kup_types::time::format(&ev.at),
            ev.kind,
            ev.subject,
            ev.message
        )),
        Format::Json => serde_json::to_string(ev)
            .map(|line| format!("{line}\n"))
            .map_err(|e| OutputError {
                format,
                message: e.to_string(),
            }),
        Format::Yaml => structured(ev, format).map(|doc| format!("---\n{doc}")),
    }
}

/// `health-query-kube-upgrade`: the report text as the server wrote it.
pub fn health(text: &str, format: Format) -> Rendered {
    match format {
        Format::Table => Ok(format!("{text}\n")),
        _ => structured(&text, format),
    }
}

/// A command's confirmation: the sentence in a table's stead, the object it is about in JSON
/// or YAML (so a script that asked for JSON always gets JSON).
pub fn confirmation<T: Serialize>(text: &str, item: &T, format: Format) -> Rendered {
    match format {
        Format::Table => Ok(format!("{text}\n")),
        _ => structured(item, format),
    }
}

/// `kup upgrade plan`: the core renders the plan's text, so the CLI and tests agree.
pub fn plan(plan: serde_json::Value, format: Format) -> Rendered {
    if format != Format::Table {
        return structured(&plan, format);
    }
    let plan: kup_core::plan::Plan = serde_json::from_value(plan).map_err(|e| OutputError {
        format,
        message: format!("the plan does not parse: {e}"),
    })?;
    Ok(kup_core::plan::render_table(&plan))
}

/// `kup info`, in Kismatic's words: the version, then the hosts.
pub fn info(info: &kup_types::ClusterInfo, format: Format) -> Rendered {
    if format != Format::Table {
        return structured(info, format);
    }
    let head = match (
        info.cluster_version,
        info.transitioning_from,
        info.transitioning_to,
    ) {
        (_, Some(from), Some(to)) => format!("Transitioning from {from} to {to}"),
        (Some(v), _, _) => format!("Cluster version: {v}"),
        _ => "Cluster version: unknown".to_string(),
    };
    let rows: Vec<Vec<String>> = info
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.hostname.clone(),
                h.personality.to_string(),
                h.roles.join(","),
                h.control_plane_version.clone(),
                h.kubelet_version.clone(),
            ]
        })
        .collect();
    let table = crate::table::render(
        &[
            "Hostname",
            "Personality",
            "Roles",
            "Control Plane",
            "Kubelet",
        ],
        &rows,
    );
    Ok(format!("{head}\n{table}\n"))
}

/// `ha-status`: the lease, then the replicas.
pub fn cluster_status(st: &kup_types::ClusterStatus, format: Format) -> Rendered {
    if format != Format::Table {
        return structured(st, format);
    }
    let secs = |s: f64| format!("{s:.1} s");
    let props = crate::table::properties(&[
        ("store", st.store.clone()),
        ("replica", st.replica.clone()),
        ("leader", st.leader.clone().unwrap_or_else(|| "none".into())),
        (
            "leader_address",
            st.leader_address.clone().unwrap_or_default(),
        ),
        ("token", st.token.to_string()),
        ("lease_age", secs(st.lease_age_seconds)),
        ("lease_left", secs(st.lease_left_seconds)),
        ("leader_for", secs(st.leader_for_seconds)),
    ]);
    let rows: Vec<Vec<String>> = st
        .replicas
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.address.clone(),
                if r.leader { "leader" } else { "standby" }.to_string(),
                secs(r.seen_seconds_ago),
                secs(r.started_seconds_ago),
            ]
        })
        .collect();
    let table = crate::table::render(
        &["Replica", "Address", "Role", "Last Seen", "Started"],
        &rows,
    );
    Ok(format!("{props}\n{table}\n"))
}

/// `sw-patch query`.
pub fn patch_list(patches: &[kup_types::PatchView], format: Format) -> Rendered {
    list(
        patches,
        format,
        &["Patch ID", "Kind", "Version", "Patch State", "Summary"],
        &["patch_id", "kind", "version", "state", "summary"],
    )
}

/// `sw-patch show`.
pub fn patch_show(patch: &kup_types::PatchView, format: Format) -> Rendered {
    dict(patch, format)
}

/// `sw-patch query-hosts`.
pub fn host_patch_list(hosts: &[kup_types::HostPatchView], format: Format) -> Rendered {
    list(
        hosts,
        format,
        &["Hostname", "Personality", "Patch Current", "Installed"],
        &["hostname", "personality", "patch_current", "installed"],
    )
}

/// `sw-patch host-install`.
pub fn host_patches_show(host: &kup_types::HostPatchView, format: Format) -> Rendered {
    dict(host, format)
}

fn list<T: Serialize>(items: &[T], format: Format, headers: &[&str], keys: &[&str]) -> Rendered {
    if format != Format::Table {
        return structured(&items, format);
    }
    let rows = items
        .iter()
        .map(|item| {
            let obj = to_value(item, format)?;
            // A missing field prints blank (cgts-client's `getattr(o, field, '')`).
            Ok(keys
                .iter()
                .map(|k| obj.get(*k).map(py_str).unwrap_or_default())
                .collect())
        })
        .collect::<Result<Vec<Vec<String>>, OutputError>>()?;
    Ok(format!("{}\n", table::render(headers, &rows)))
}

/// cgts-client's `print_dict`: keys sorted; a string value holding a literal backslash-n
/// (sysinv escapes multi-line faults that way) is split over several rows.
fn dict<T: Serialize>(item: &T, format: Format) -> Rendered {
    if format != Format::Table {
        return structured(item, format);
    }
    let obj = to_value(item, format)?;
    let mut pairs: Vec<(&String, &Value)> = match &obj {
        Value::Object(map) => map.iter().collect(),
        _ => Vec::new(),
    };
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut rows = Vec::new();
    for (key, value) in pairs {
        match value {
            Value::String(s) if s.contains("\\n") => {
                for (i, line) in s.trim().split("\\n").enumerate() {
                    let k = if i == 0 { key.clone() } else { String::new() };
                    rows.push(vec![k, line.to_string()]);
                }
            }
            _ => rows.push(vec![key.clone(), py_str(value)]),
        }
    }
    Ok(format!(
        "{}\n",
        table::render(&["Property", "Value"], &rows)
    ))
}

/// cgts-client's `print_tuple_list`: the given fields in the given order.
fn tuples<T: Serialize>(item: &T, format: Format, keys: &[&str]) -> Rendered {
    if format != Format::Table {
        return structured(item, format);
    }
    let obj = to_value(item, format)?;
    let pairs: Vec<(&str, String)> = keys
        .iter()
        .map(|k| (*k, obj.get(*k).map(py_str).unwrap_or_default()))
        .collect();
    Ok(format!("{}\n", table::properties(&pairs)))
}

fn to_value<T: Serialize>(item: &T, format: Format) -> Result<Value, OutputError> {
    serde_json::to_value(item).map_err(|e| OutputError {
        format,
        message: e.to_string(),
    })
}

/// An object in JSON or YAML (or JSON, for a table that has no table form).
pub fn structured_value<T: Serialize>(item: &T, format: Format) -> Rendered {
    structured(item, format)
}

fn structured<T: Serialize>(item: &T, format: Format) -> Rendered {
    let text = match format {
        Format::Json | Format::Table => {
            serde_json::to_string_pretty(item).map_err(|e| e.to_string())
        }
        Format::Yaml => serde_saphyr::to_string(item).map_err(|e| e.to_string()),
    }
    .map_err(|message| OutputError { format, message })?;
    Ok(format!("{}\n", text.trim_end_matches('\n')))
}

/// Python's `str(value)` of the JSON value, as PrettyTable shows a cell.
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr(value)`: what a cell holding a list or dict shows.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// Python 3 string repr: single quotes unless the text has a `'` and no `"`.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn versions() -> Vec<KubeVersionSummary> {
        from(json!([
            {"version": "v1.16.1", "target": true, "state": "active"},
            {"version": "v1.16.2", "target": false, "state": "available"},
        ]))
    }

    fn upgrade(state: &str, updated: Option<&str>) -> KubeUpgradeView {
        from(json!({
            "id": 1, "uuid": "b5f7dada-2537-4416-9d2c-f9ca9fcd0e22",
            "from_version": "v1.16.1", "to_version": "v1.16.2", "state": state,
            "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": updated,
        }))
    }

    fn host(id: u32, name: &str, personality: &str) -> IHost {
        from(json!({
            "id": id, "uuid": format!("uuid-{id}"), "hostname": name, "personality": personality,
            "subfunctions": personality, "administrative": "unlocked", "operational": "enabled",
            "availability": "available", "task": null,
            "active_controller": name == "controller-0",
            "capabilities": if personality == "controller" {
                json!({"Personality": if name == "controller-0" { "Controller-Active" } else { "Controller-Standby" }})
            } else { json!({}) },
            "roles": [], "peers": null, "install_state": null, "install_state_info": null,
            "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null,
        }))
    }

    fn seed_hosts() -> Vec<IHost> {
        vec![
            host(1, "controller-0", "controller"),
            host(2, "controller-1", "controller"),
            host(3, "storage-0", "storage"),
            host(4, "storage-1", "storage"),
            host(5, "worker-0", "worker"),
            host(6, "worker- 1", "worker"),
        ]
    }

    fn host_upgrade(
        host_id: i64,
        target: &str,
        cp: &str,
        kubelet: &str,
        status: Option<&str>,
    ) -> KubeHostUpgradeView {
        from(json!({
            // Row ids deliberately differ from host ids: the join is on host_id.
            "id": host_id + 100, "uuid": format!("hu-{host_id}"), "host_id": host_id,
            "hostname": "ignored", "personality": "worker",
            "target_version": target, "status": status,
            "control_plane_version": cp, "kubelet_version": kubelet,
            "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null,
        }))
    }

    #[test]
    fn kube_version_list_is_the_seeds_table() {
        assert_eq!(
            kube_version_list(&versions(), Format::Table).unwrap(),
            "+---------+--------+-----------+\n\
             | Version | Target | State     |\n\
             +---------+--------+-----------+\n\
             | v1.16.1 | True   | active    |\n\
             | v1.16.2 | False  | available |\n\
             +---------+--------+-----------+\n"
        );
    }

    #[test]
    fn kube_upgrade_show_is_the_seeds_table() {
        let u = upgrade("downloading-images", None);
        assert_eq!(
            kube_upgrade_show(Some(&u), Format::Table).unwrap(),
            "+--------------+--------------------------------------+\n\
             | Property     | Value                                |\n\
             +--------------+--------------------------------------+\n\
             | uuid         | b5f7dada-2537-4416-9d2c-f9ca9fcd0e22 |\n\
             | from_version | v1.16.1                              |\n\
             | to_version   | v1.16.2                              |\n\
             | state        | downloading-images                   |\n\
             | created_at   | 2020-02-20T16:08:48.854869+00:00     |\n\
             | updated_at   | None                                 |\n\
             +--------------+--------------------------------------+\n"
        );
        let u = upgrade(
            "downloaded-images",
            Some("2020-02-20T16:10:37.858661+00:00"),
        );
        assert!(
            kube_upgrade_show(Some(&u), Format::Table)
                .unwrap()
                .contains("| updated_at   | 2020-02-20T16:10:37.858661+00:00     |\n")
        );
        assert_eq!(
            kube_upgrade_show(None, Format::Table).unwrap(),
            "A kubernetes upgrade is not in progress\n"
        );
        assert_eq!(kube_upgrade_show(None, Format::Json).unwrap(), "null\n");
    }

    #[test]
    fn kube_host_upgrade_is_the_seeds_step_7_table() {
        let hosts = seed_hosts();
        let rows = [host_upgrade(
            2,
            "v1.16.2",
            "v1.16.1",
            "v1.16.1",
            Some("upgrading-control-plane"),
        )];
        let row = HostUpgradeRow::new(&hosts[1], find_host_upgrade(&hosts[1], &rows));
        assert_eq!(
            kube_host_upgrade_show(&row, Format::Table).unwrap(),
            "+-----------------------+-------------------------+\n\
             | Property              | Value                   |\n\
             +-----------------------+-------------------------+\n\
             | control_plane_version | v1.16.1                 |\n\
             | hostname              | controller-1            |\n\
             | id                    | 2                       |\n\
             | kubelet_version       | v1.16.1                 |\n\
             | personality           | controller              |\n\
             | status                | upgrading-control-plane |\n\
             | target_version        | v1.16.2                 |\n\
             +-----------------------+-------------------------+\n"
        );
    }

    #[test]
    fn kube_host_upgrade_list_is_the_seeds_step_10_table() {
        let hosts = seed_hosts();
        // Given out of order, to check the sort by host id.
        let rows = [
            host_upgrade(6, "v1.16.1", "N/A", "v1.16.1", None),
            host_upgrade(1, "v1.16.2", "v1.16.2", "v1.16.1", None),
            host_upgrade(2, "v1.16.2", "v1.16.2", "v1.16.1", None),
            host_upgrade(3, "v1.16.1", "N/A", "N/A", None),
            host_upgrade(4, "v1.16.1", "N/A", "N/A", None),
            host_upgrade(5, "v1.16.1", "N/A", "v1.16.1", None),
        ];
        let mut reversed = hosts.clone();
        reversed.reverse();
        let joined = join_host_upgrades(&reversed, &rows);
        assert_eq!(
            kube_host_upgrade_list(&joined, Format::Table).unwrap(),
            "+----+--------------+-------------+----------------+-----------------------+-----------------+--------+\n\
             | id | hostname     | personality | target_version | control_plane_version | kubelet_version | status |\n\
             +----+--------------+-------------+----------------+-----------------------+-----------------+--------+\n\
             | 1  | controller-0 | controller  | v1.16.2        | v1.16.2               | v1.16.1         | None   |\n\
             | 2  | controller-1 | controller  | v1.16.2        | v1.16.2               | v1.16.1         | None   |\n\
             | 3  | storage-0    | storage     | v1.16.1        | N/A                   | N/A             | None   |\n\
             | 4  | storage-1    | storage     | v1.16.1        | N/A                   | N/A             | None   |\n\
             | 5  | worker-0     | worker      | v1.16.1        | N/A                   | v1.16.1         | None   |\n\
             | 6  | worker- 1    | worker      | v1.16.1        | N/A                   | v1.16.1         | None   |\n\
             +----+--------------+-------------+----------------+-----------------------+-----------------+--------+\n"
        );
    }

    #[test]
    fn a_host_without_an_upgrade_row_shows_none() {
        let hosts = seed_hosts();
        let joined = join_host_upgrades(&hosts[..1], &[]);
        assert_eq!(joined[0].status, None);
        assert!(
            kube_host_upgrade_list(&joined, Format::Table)
                .unwrap()
                .contains("| 1  | controller-0 | controller  | None           | None                  | None            | None   |")
        );
    }

    #[test]
    fn kube_version_show_sorts_every_field() {
        let v: KubeVersionDetail = from(json!({
            "version": "v1.16.2", "upgrade_from": ["v1.16.1"], "downgrade_to": [],
            "applied_patches": ["KUBE.1"], "available_patches": ["KUBE.2", "KUBE.3"],
            "target": false, "state": "available",
        }));
        assert_eq!(
            kube_version_show(&v, Format::Table).unwrap(),
            "+-------------------+----------------------+\n\
             | Property          | Value                |\n\
             +-------------------+----------------------+\n\
             | applied_patches   | ['KUBE.1']           |\n\
             | available_patches | ['KUBE.2', 'KUBE.3'] |\n\
             | downgrade_to      | []                   |\n\
             | state             | available            |\n\
             | target            | False                |\n\
             | upgrade_from      | ['v1.16.1']          |\n\
             | version           | v1.16.2              |\n\
             +-------------------+----------------------+\n"
        );
    }

    #[test]
    fn host_list_and_show() {
        let mut hosts = seed_hosts();
        hosts.swap(0, 5);
        let list = host_list(&hosts[..3], Format::Table).unwrap();
        assert_eq!(
            list,
            "+----+--------------+-------------+----------------+-------------+--------------+\n\
             | id | hostname     | personality | administrative | operational | availability |\n\
             +----+--------------+-------------+----------------+-------------+--------------+\n\
             | 2  | controller-1 | controller  | unlocked       | enabled     | available    |\n\
             | 3  | storage-0    | storage     | unlocked       | enabled     | available    |\n\
             | 6  | worker- 1    | worker      | unlocked       | enabled     | available    |\n\
             +----+--------------+-------------+----------------+-------------+--------------+\n"
        );
        let show = host_show(&seed_hosts()[0], Format::Table).unwrap();
        assert_eq!(
            show,
            "+--------------------+--------------------------------------+\n\
             | Property           | Value                                |\n\
             +--------------------+--------------------------------------+\n\
             | active_controller  | True                                 |\n\
             | administrative     | unlocked                             |\n\
             | availability       | available                            |\n\
             | capabilities       | {'Personality': 'Controller-Active'} |\n\
             | created_at         | 2020-02-20T16:08:48.854869+00:00     |\n\
             | hostname           | controller-0                         |\n\
             | id                 | 1                                    |\n\
             | install_state      | None                                 |\n\
             | install_state_info | None                                 |\n\
             | operational        | enabled                              |\n\
             | peers              | None                                 |\n\
             | personality        | controller                           |\n\
             | roles              | []                                   |\n\
             | subfunctions       | controller                           |\n\
             | task               | None                                 |\n\
             | updated_at         | None                                 |\n\
             | uuid               | uuid-1                               |\n\
             +--------------------+--------------------------------------+\n"
        );
    }

    #[test]
    fn empty_lists_print_the_frame() {
        assert_eq!(
            kube_version_list(&[], Format::Table).unwrap(),
            "+---------+--------+-------+\n\
             | Version | Target | State |\n\
             +---------+--------+-------+\n\
             +---------+--------+-------+\n"
        );
        assert_eq!(host_list(&[], Format::Json).unwrap(), "[]\n");
    }

    #[test]
    fn alarm_list_is_newest_first() {
        let alarms: Vec<AlarmView> = from(json!([
            {"uuid": "a1", "alarm_id": "100.101", "entity_instance_id": "host=worker-0",
             "reason_text": "old", "severity": "minor", "mgmt_affecting": false,
             "timestamp": "2020-02-20T16:00:00.000000+00:00"},
            {"uuid": "a2", "alarm_id": "900.401", "entity_instance_id": "system",
             "reason_text": "new", "severity": "major", "mgmt_affecting": true,
             "timestamp": "2020-02-21T16:00:00.000000+00:00"},
        ]));
        assert_eq!(
            alarm_list(&alarms, Format::Table).unwrap(),
            "+------+----------+-------------+---------------+----------+----------------------------------+\n\
             | UUID | Alarm ID | Reason Text | Entity ID     | Severity | Time Stamp                       |\n\
             +------+----------+-------------+---------------+----------+----------------------------------+\n\
             | a2   | 900.401  | new         | system        | major    | 2020-02-21T16:00:00.000000+00:00 |\n\
             | a1   | 100.101  | old         | host=worker-0 | minor    | 2020-02-20T16:00:00.000000+00:00 |\n\
             +------+----------+-------------+---------------+----------+----------------------------------+\n"
        );
    }

    #[test]
    fn json_and_yaml_print_the_objects() {
        let json = kube_version_list(&versions(), Format::Json).unwrap();
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            json!([
                {"version": "v1.16.1", "target": true, "state": "active"},
                {"version": "v1.16.2", "target": false, "state": "available"},
            ])
        );
        assert!(json.starts_with("[\n  {\n"), "{json}");
        assert!(json.ends_with("]\n"));

        let u = upgrade("upgrade-started", None);
        let yaml = kube_upgrade_show(Some(&u), Format::Yaml).unwrap();
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, serde_json::to_value(&u).unwrap());
        assert!(yaml.contains("state: upgrade-started\n"), "{yaml}");
        assert!(yaml.ends_with('\n') && !yaml.ends_with("\n\n"), "{yaml:?}");

        let yaml = kube_version_list(&versions(), Format::Yaml).unwrap();
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back[1]["state"], "available");
        assert_eq!(
            health("a [OK]\nb [Fail]", Format::Json).unwrap(),
            "\"a [OK]\\nb [Fail]\"\n"
        );
        assert_eq!(health("a [OK]", Format::Table).unwrap(), "a [OK]\n");
    }

    #[test]
    fn python_value_rendering() {
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!("plain")), "plain");
        assert_eq!(py_str(&json!(["v1.16.1"])), "['v1.16.1']");
        assert_eq!(py_str(&json!([])), "[]");
        assert_eq!(py_str(&json!(1.5)), "1.5");
        // As Python 3.12 prints it (checked against the interpreter).
        assert_eq!(
            py_str(&json!([
                "a'b", "c\"d", "x\ny", null, 3, false, "a\\b", "both'\""
            ])),
            r#"["a'b", 'c"d', 'x\ny', None, 3, False, 'a\\b', 'both\'"']"#
        );
        assert_eq!(py_str(&json!({"k": {"n": [1]}})), "{'k': {'n': [1]}}");
    }

    #[test]
    fn print_dict_splits_escaped_newlines() {
        #[derive(Serialize)]
        struct Fault {
            fault: &'static str,
            id: u32,
        }
        let t = dict(
            &Fault {
                fault: " first\\nsecond ",
                id: 7,
            },
            Format::Table,
        )
        .unwrap();
        assert_eq!(
            t,
            "+----------+--------+\n\
             | Property | Value  |\n\
             +----------+--------+\n\
             | fault    | first  |\n\
             |          | second |\n\
             | id       | 7      |\n\
             +----------+--------+\n"
        );
    }
}
