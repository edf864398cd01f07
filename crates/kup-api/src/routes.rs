//! The handlers of `/v1`, each documented for the OpenAPI document. They translate between
//! HTTP and the engine; every rule lives in the core.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use kup_core::Command;
use kup_engine::Engine;
use kup_types::{
    AlarmList, AlarmView, ErrorBody, EventList, EventView, HostPatchList, HostPatchView,
    HostUpgradeRequest, IHost, IHostList, KubeHostUpgradeList, KubeHostUpgradeView,
    KubeUpgradeCreate, KubeUpgradeList, KubeUpgradeView, KubeVersionDetail, KubeVersionList,
    PatchList, PatchOp, PatchView, StrategyActionRequest, StrategyCreate, StrategyView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::uploads::UploadGate;

/// What the handlers share; each takes the part it needs.
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Engine>,
    pub uploads: UploadGate,
    pub doc: DocJson,
}

pub type AppState = Arc<Engine>;

pub(crate) const UNAVAILABLE: &str = "The cluster cannot be reached, or the daemon is stopping";
const REFUSED: &str = "Refused: the reason says why";
const NO_HOST: &str = "No such host";
const NO_PATCH: &str = "No such patch";
const HOST_UPGRADE_REPLY: &str = "The host, with its upgrade row as the command left it";

impl FromRef<Shared> for AppState {
    fn from_ref(s: &Shared) -> Self {
        Arc::clone(&s.engine)
    }
}

impl FromRef<Shared> for UploadGate {
    fn from_ref(s: &Shared) -> Self {
        s.uploads.clone()
    }
}

/// The OpenAPI document, serialized once.
#[derive(Clone)]
pub struct DocJson(pub Arc<str>);

impl FromRef<Shared> for DocJson {
    fn from_ref(s: &Shared) -> Self {
        s.doc.clone()
    }
}

#[utoipa::path(get, path = "/v1/kube_versions", tag = "kube_versions",
    responses((status = 200, description = "Every version the platform knows", body = KubeVersionList),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_versions_list(State(e): State<AppState>) -> ApiResult<Json<KubeVersionList>> {
    Ok(Json(KubeVersionList {
        kube_versions: e.kube_versions().await?,
    }))
}

#[utoipa::path(get, path = "/v1/kube_versions/{version}", tag = "kube_versions",
    params(("version" = String, Path, description = "e.g. v1.16.2")),
    responses((status = 200, description = "The version", body = KubeVersionDetail),
              (status = 400, description = "Not a version", body = ErrorBody),
              (status = 404, description = "No such version", body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_versions_show(
    State(e): State<AppState>,
    Path(version): Path<String>,
) -> ApiResult<Json<KubeVersionDetail>> {
    Ok(Json(e.kube_version(&version).await?))
}

#[utoipa::path(get, path = "/v1/kube_upgrade", tag = "kube_upgrade",
    responses((status = 200, description = "The upgrade in progress, if there is one", body = KubeUpgradeList)))]
pub async fn kube_upgrade_list(State(e): State<AppState>) -> ApiResult<Json<KubeUpgradeList>> {
    Ok(Json(KubeUpgradeList {
        kube_upgrades: e.kube_upgrade().await?.into_iter().collect(),
    }))
}

#[utoipa::path(get, path = "/v1/kube_upgrade/{uuid}", tag = "kube_upgrade",
    params(("uuid" = String, Path)),
    responses((status = 200, description = "The upgrade", body = KubeUpgradeView),
              (status = 404, description = "No upgrade with this uuid", body = ErrorBody)))]
pub async fn kube_upgrade_show(
    State(e): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<KubeUpgradeView>> {
    match e.kube_upgrade().await? {
        Some(u) if u.uuid == uuid => Ok(Json(u)),
        _ => Err(ApiError::not_found(format!(
            "Kubernetes upgrade {uuid} not found"
        ))),
    }
}

/// kube-upgrade-start: checks, then creates the upgrade in `upgrade-started`.
#[utoipa::path(post, path = "/v1/kube_upgrade", tag = "kube_upgrade",
    request_body = KubeUpgradeCreate,
    responses((status = 200, description = "The upgrade, started", body = KubeUpgradeView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_upgrade_create(
    State(e): State<AppState>,
    ApiJson(body): ApiJson<KubeUpgradeCreate>,
) -> ApiResult<Json<KubeUpgradeView>> {
    let out = e
        .execute(Command::Start {
            to_version: body.to_version,
            force: body.force,
            alarm_ignore: body.alarm_ignore_list,
        })
        .await?;
    upgrade_reply(out.upgrade)
}

fn upgrade_reply(u: Option<KubeUpgradeView>) -> ApiResult<Json<KubeUpgradeView>> {
    u.map(Json)
        .ok_or_else(|| ApiError::bad_request("A kubernetes upgrade is not in progress"))
}

const INTERNAL: &[&str] = &["/id", "/uuid", "/links", "/created_at", "/updated_at"];

/// Validates a JSON-patch list and returns the string value of the one path it must set.
pub(crate) fn patch_value(ops: &[PatchOp], wanted: &str) -> Result<String, ApiError> {
    patch_values(ops, wanted, None).map(|(v, _)| v)
}

/// The same, with one more path it may set too (e.g. `/hostname` beside `/state`).
pub(crate) fn patch_values(
    ops: &[PatchOp],
    wanted: &str,
    optional: Option<&str>,
) -> Result<(String, Option<String>), ApiError> {
    let mut value = None;
    let mut extra = None;
    for op in ops {
        let valid_path = op.path.len() > 1
            && op.path.split('/').skip(1).all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            })
            && op.path.starts_with('/');
        if !valid_path {
            return Err(ApiError::bad_request(format!(
                "Invalid patch path {:?}",
                op.path
            )));
        }
        if !matches!(op.op.as_str(), "add" | "replace" | "remove") {
            return Err(ApiError::bad_request(format!(
                "Invalid patch operation {:?}",
                op.op
            )));
        }
        if INTERNAL.contains(&op.path.as_str()) {
            return Err(ApiError::bad_request(format!(
                "'{}' is an internal attribute and can not be updated",
                op.path
            )));
        }
        let slot = if op.path == wanted {
            &mut value
        } else if Some(op.path.as_str()) == optional {
            &mut extra
        } else {
            return Err(ApiError::bad_request(format!(
                "'{}' can not be changed here; only '{wanted}' can",
                op.path
            )));
        };
        if op.op == "remove" {
            return Err(ApiError::bad_request(format!("'{}' is mandatory", op.path)));
        }
        match &op.value {
            Some(serde_json::Value::String(s)) => *slot = Some(s.clone()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "'{}' must be a string",
                    op.path
                )));
            }
        }
    }
    let value = value.ok_or_else(|| ApiError::bad_request(format!("'{wanted}' is mandatory")))?;
    Ok((value, extra))
}

/// The command dispatcher: `/state` set to `downloading-images`, `upgrading-networking`,
/// `upgrade-complete` or the `-failed` state of the step in flight; `cordon-started` or
/// `uncordon-started` with the `/hostname` (aio-simplex).
#[utoipa::path(patch, path = "/v1/kube_upgrade", tag = "kube_upgrade",
    request_body(content = Vec<PatchOp>, description = "One operation on `/state`",
        example = json!([{"op": "replace", "path": "/state", "value": "downloading-images"}])),
    responses((status = 200, description = "The upgrade, in its new state", body = KubeUpgradeView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_upgrade_patch(
    State(e): State<AppState>,
    ApiJson(ops): ApiJson<Vec<PatchOp>>,
) -> ApiResult<Json<KubeUpgradeView>> {
    upgrade_reply(e.execute(upgrade_patch_command(&ops)?).await?.upgrade)
}

/// The command of a `PATCH /v1/kube_upgrade` body: its `/state`, with the `/hostname` that
/// a cordon or uncordon names.
pub(crate) fn upgrade_patch_command(ops: &[PatchOp]) -> Result<Command, ApiError> {
    let (state, hostname) = patch_values(ops, "/state", Some("/hostname"))?;
    Command::from_patch(&state, hostname.as_deref())
        .map_err(|r| ApiError::bad_request(r.to_string()))
}

/// kube-upgrade-delete.
#[utoipa::path(delete, path = "/v1/kube_upgrade", tag = "kube_upgrade",
    responses((status = 204, description = "Deleted"),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_upgrade_delete(State(e): State<AppState>) -> ApiResult<StatusCode> {
    e.execute(Command::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON body encoded beforehand (the host lists, encoded once per state of the cluster).
pub struct JsonBytes(Bytes);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> axum::response::Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

#[utoipa::path(get, path = "/v1/kube_host_upgrades", tag = "kube_host_upgrades",
    responses((status = 200, description = "Every host's upgrade row", body = KubeHostUpgradeList),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_host_upgrades_list(State(e): State<AppState>) -> ApiResult<JsonBytes> {
    Ok(JsonBytes(e.kube_host_upgrades_json().await?))
}

#[utoipa::path(get, path = "/v1/kube_host_upgrades/{id}", tag = "kube_host_upgrades",
    params(("id" = String, Path, description = "numeric id or uuid")),
    responses((status = 200, description = "The host's upgrade row", body = KubeHostUpgradeView),
              (status = 404, description = "No such row", body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_host_upgrades_show(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<KubeHostUpgradeView>> {
    host_upgrade_row(&e, &id).await.map(Json)
}

/// A host's upgrade row by numeric id, uuid or hostname.
async fn host_upgrade_row(e: &Engine, id: &str) -> ApiResult<KubeHostUpgradeView> {
    e.kube_host_upgrades()
        .await?
        .into_iter()
        .find(|r| r.uuid == id || id.parse::<i64>() == Ok(r.id) || r.hostname == id)
        .ok_or_else(|| ApiError::not_found(format!("Kubernetes host upgrade {id} not found")))
}

/// kube-host-upgrade-failed: `/status` set to a `-failed` value marks the step or action
/// running on the host as failed (a hung one, by hand), so that it can be re-done.
#[utoipa::path(patch, path = "/v1/kube_host_upgrades/{id}", tag = "kube_host_upgrades",
    params(("id" = String, Path, description = "numeric id, uuid or hostname")),
    request_body(content = Vec<PatchOp>, description = "One operation on `/status`",
        example = json!([{"op": "replace", "path": "/status", "value": "upgrading-kubelet-failed"}])),
    responses((status = 200, description = "The host's upgrade row, the step marked failed", body = KubeHostUpgradeView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = "No such row", body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn kube_host_upgrades_patch(
    State(e): State<AppState>,
    Path(id): Path<String>,
    ApiJson(ops): ApiJson<Vec<PatchOp>>,
) -> ApiResult<Json<KubeHostUpgradeView>> {
    let status = patch_value(&ops, "/status")?;
    let row = host_upgrade_row(&e, &id).await?;
    check_host_status(&status)?;
    e.execute(Command::FailHostStep {
        host: row.hostname.clone(),
    })
    .await?;
    host_upgrade_row(&e, &row.hostname).await.map(Json)
}

/// The one `/status` a host's upgrade row may be set to: a `-failed` one.
pub(crate) fn check_host_status(status: &str) -> Result<(), ApiError> {
    if !status.ends_with("failed") {
        return Err(ApiError::bad_request(format!(
            "Invalid status {status:?}: only a step in progress can be set, and only to failed"
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/ihosts", tag = "ihosts",
    responses((status = 200, description = "Every host", body = IHostList),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn ihosts_list(State(e): State<AppState>) -> ApiResult<JsonBytes> {
    Ok(JsonBytes(e.ihosts_json().await?))
}

#[utoipa::path(get, path = "/v1/ihosts/{host}", tag = "ihosts",
    params(("host" = String, Path, description = "hostname, numeric id or uuid")),
    responses((status = 200, description = "The host", body = IHost),
              (status = 404, description = NO_HOST, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn ihosts_show(
    State(e): State<AppState>,
    Path(host): Path<String>,
) -> ApiResult<Json<IHost>> {
    Ok(Json(e.ihost(&host).await?))
}

/// Host actions: `/action` set to `lock`, `force-lock`, `unlock`, `force-unlock`, `swact` or
/// `force-swact`.
#[utoipa::path(patch, path = "/v1/ihosts/{host}", tag = "ihosts",
    params(("host" = String, Path, description = "hostname, numeric id or uuid")),
    request_body(content = Vec<PatchOp>, description = "One operation on `/action`",
        example = json!([{"op": "replace", "path": "/action", "value": "lock"}])),
    responses((status = 200, description = "The host; its task shows the action", body = IHost),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_HOST, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn ihosts_patch(
    State(e): State<AppState>,
    Path(host): Path<String>,
    ApiJson(ops): ApiJson<Vec<PatchOp>>,
) -> ApiResult<Json<IHost>> {
    let action = patch_value(&ops, "/action")?;
    host_reply(&e, host_action(&action, host)?).await
}

/// The command of a host's `/action`.
pub(crate) fn host_action(action: &str, host: String) -> Result<Command, ApiError> {
    Ok(match action {
        "lock" => Command::Lock { host, force: false },
        "force-lock" => Command::Lock { host, force: true },
        "unlock" => Command::Unlock { host, force: false },
        "force-unlock" => Command::Unlock { host, force: true },
        "swact" => Command::Swact { host, force: false },
        "force-swact" => Command::Swact { host, force: true },
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid action {other:?}: expected lock, force-lock, unlock, force-unlock, swact or force-swact"
            )));
        }
    })
}

/// Runs a host command and replies with the host as it is now (its task shows the action).
async fn host_reply(e: &Engine, cmd: Command) -> ApiResult<Json<IHost>> {
    let out = e.execute(cmd).await?;
    let name = out.host.map(|h| h.hostname).unwrap_or_default();
    Ok(Json(e.ihost(&name).await?))
}

/// A host upgrade command's reply: the host now, with its upgrade row as the command left it.
async fn host_upgrade_reply(e: &Engine, cmd: Command) -> ApiResult<Json<IHost>> {
    let out = e.execute(cmd).await?;
    let name = out
        .host
        .as_ref()
        .map(|h| h.hostname.clone())
        .unwrap_or_default();
    let mut host = e.ihost(&name).await?;
    host.kube_host_upgrade = out.host_upgrade().cloned();
    Ok(Json(host))
}

/// kube-host-upgrade HOST control-plane.
#[utoipa::path(post, path = "/v1/ihosts/{host}/kube_upgrade_control_plane", tag = "ihosts",
    params(("host" = String, Path, description = "hostname, numeric id or uuid")),
    request_body(content = Option<HostUpgradeRequest>, description = "May be empty"),
    responses((status = 200, description = HOST_UPGRADE_REPLY, body = IHost),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_HOST, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn ihosts_kube_upgrade_control_plane(
    State(e): State<AppState>,
    Path(host): Path<String>,
    OptionalJson(body): OptionalJson<HostUpgradeRequest>,
) -> ApiResult<Json<IHost>> {
    let force = body.force;
    host_upgrade_reply(&e, Command::ControlPlane { host, force }).await
}

/// kube-host-upgrade HOST kubelet.
#[utoipa::path(post, path = "/v1/ihosts/{host}/kube_upgrade_kubelet", tag = "ihosts",
    params(("host" = String, Path, description = "hostname, numeric id or uuid")),
    request_body(content = Option<HostUpgradeRequest>, description = "May be empty"),
    responses((status = 200, description = HOST_UPGRADE_REPLY, body = IHost),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_HOST, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn ihosts_kube_upgrade_kubelet(
    State(e): State<AppState>,
    Path(host): Path<String>,
    OptionalJson(body): OptionalJson<HostUpgradeRequest>,
) -> ApiResult<Json<IHost>> {
    let force = body.force;
    host_upgrade_reply(&e, Command::Kubelet { host, force }).await
}

/// health-query-kube-upgrade: the report text, as a JSON string.
#[utoipa::path(get, path = "/v1/health/kube-upgrade", tag = "health",
    responses((status = 200, description = "The report, one JSON string", body = String,
               content_type = "application/json"),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn health_kube_upgrade(State(e): State<AppState>) -> ApiResult<Json<String>> {
    Ok(Json(e.health(false).await?.render()))
}

/// As `/v1/health/kube-upgrade`, letting alarms that are not management-affecting pass.
#[utoipa::path(get, path = "/v1/health/kube-upgrade/relaxed", tag = "health",
    responses((status = 200, description = "The report, one JSON string", body = String,
               content_type = "application/json"),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn health_kube_upgrade_relaxed(State(e): State<AppState>) -> ApiResult<Json<String>> {
    Ok(Json(e.health(true).await?.render()))
}

#[utoipa::path(get, path = "/v1/alarms", tag = "alarms",
    responses((status = 200, description = "The active alarms, kup's own included", body = AlarmList),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn alarms_list(State(e): State<AppState>) -> ApiResult<Json<AlarmList>> {
    Ok(Json(AlarmList {
        alarms: e.alarms().await?.iter().map(AlarmView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events with a larger sequence number (default 0: from the start).
    #[serde(default)]
    #[param(minimum = 0, example = 0)]
    pub after: i64,
    /// At most this many (default 10000; more is taken as 10000).
    #[param(format = Int64, minimum = 1, maximum = 4294967295_u64, example = 100)]
    pub limit: Option<u32>,
    /// The long poll: if no event follows `after` yet, wait up to this many seconds (at most
    /// 300) for one before answering, possibly with none. Default 0: answer at once.
    #[param(format = Int64, minimum = 0, maximum = 300, example = 30)]
    pub wait: Option<u32>,
    /// Only the events about this subject: a hostname, `kube_upgrade`, `strategy`, ... (the
    /// long poll still wakes on any event, and may then answer with none).
    #[param(example = "worker-0")]
    pub subject: Option<String>,
}

/// The longest long poll.
const MAX_EVENT_WAIT_SECS: u32 = 300;

impl EventQuery {
    /// The sequence number to follow, the most events and the longest wait, as the query
    /// allows them.
    pub(crate) fn checked(&self) -> Result<(i64, u32, std::time::Duration), ApiError> {
        if self.after < 0 {
            return Err(invalid_query("after", self.after, "0 or more"));
        }
        if self.limit == Some(0) {
            return Err(invalid_query("limit", 0, "at least 1"));
        }
        let wait = self.wait.unwrap_or(0);
        if wait > MAX_EVENT_WAIT_SECS {
            return Err(invalid_query(
                "wait",
                wait,
                &format!("at most {MAX_EVENT_WAIT_SECS} seconds"),
            ));
        }
        let limit = self.limit.unwrap_or(10_000).min(10_000);
        Ok((
            self.after,
            limit,
            std::time::Duration::from_secs(u64::from(wait)),
        ))
    }
}

/// The append-only event log: every accepted command and every state change, in order. With
/// `wait`, a long poll: it answers as soon as an event follows `after`.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, description = "The events, oldest first, and the newest event's sequence number", body = EventList),
              (status = 400, description = "A query parameter is invalid", body = ErrorBody)))]
pub async fn events_list(
    State(e): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventList>> {
    let (after, limit, wait) = q.checked()?;
    // Read before the events, so that a follower resuming from it misses none.
    let last_seq = e.last_event_seq();
    let events = match q.subject.as_deref() {
        Some(subject) => {
            e.wait_for_event(after, wait).await;
            e.events_of(subject, after, limit).await?
        }
        None => e.wait_events(after, limit, wait).await?,
    };
    let last_seq = events.last().map_or(last_seq, |ev| ev.seq.max(last_seq));
    Ok(Json(EventList {
        events: events.iter().map(EventView::from).collect(),
        last_seq,
    }))
}

/// `sw-patch query`.
#[utoipa::path(get, path = "/v1/patches", tag = "patches",
    responses((status = 200, description = "Every patch uploaded", body = PatchList)))]
pub async fn patches_list(State(e): State<AppState>) -> ApiResult<Json<PatchList>> {
    Ok(Json(PatchList {
        patches: e.patches().await?,
    }))
}

/// A patch bundle file, as `sw-patch build` writes it.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Bundle(#[allow(dead_code)] Vec<u8>);

/// `sw-patch upload`: the body is the bundle file itself. It is verified completely (trusted
/// signature, every file's sha256 and size, every path) before anything is written. Only a
/// few uploads run at once; a further one waits briefly, then gets a 503 to retry. Once it
/// has a slot, the body must arrive whole within a deadline (60 s plus its announced size at
/// 64 KiB/s, at most 30 minutes, by default), or it gets a 408 and its slot is freed.
#[utoipa::path(post, path = "/v1/patches", tag = "patches",
    request_body(content = inline(Bundle), content_type = "application/octet-stream",
                 description = "The bundle file, at most 256 MiB"),
    responses((status = 200, description = "The patch, available", body = PatchView),
              (status = 400, description = "The bundle is refused (signature, contents, an existing patch)", body = ErrorBody),
              (status = 408, description = "The body did not arrive whole within its deadline (send it faster)", body = ErrorBody),
              (status = 503, description = "Too many uploads in progress (try again), the cluster cannot be reached, or the daemon is stopping", body = ErrorBody)))]
pub async fn patches_upload(
    State(e): State<AppState>,
    State(uploads): State<UploadGate>,
    req: Request,
) -> ApiResult<Json<PatchView>> {
    // A body announced too large is refused before it waits for a slot or is read.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > crate::MAX_BUNDLE_BODY as u64) {
        return Err(crate::extract::too_large(crate::MAX_BUNDLE_BODY));
    }
    let slot = uploads.enter().await?;
    // The deadline is for the whole body: a client sending a byte now and then would
    // otherwise hold the slot for ever (a timeout between pieces never fires on it).
    let deadline = uploads.body_deadline(announced);
    let body = tokio::time::timeout(deadline, Bytes::from_request(req, &()))
        .await
        .map_err(|_| uploads.too_slow(deadline))?
        .map_err(|r| crate::extract::body_rejection(r, crate::MAX_BUNDLE_BODY))?;
    // The slot goes with the bundle until it is verified and stored, even if the client
    // goes away meanwhile: only then is its memory free again.
    let task = tokio::spawn(async move {
        let _slot = slot;
        e.patch_upload(body.into()).await
    });
    match task.await {
        Ok(result) => Ok(Json(result?)),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(ApiError::unavailable(format!(
            "The upload was stopped: {err}"
        ))),
    }
}

/// `sw-patch show`.
#[utoipa::path(get, path = "/v1/patches/{id}", tag = "patches",
    params(("id" = String, Path)),
    responses((status = 200, description = "The patch", body = PatchView),
              (status = 404, description = NO_PATCH, body = ErrorBody)))]
pub async fn patches_show(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PatchView>> {
    Ok(Json(e.patch(&id).await?))
}

/// `sw-patch delete`: only a patch that is available (not applied).
#[utoipa::path(delete, path = "/v1/patches/{id}", tag = "patches",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_PATCH, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn patches_delete(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    e.patch_delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `sw-patch apply`.
#[utoipa::path(post, path = "/v1/patches/{id}/apply", tag = "patches",
    params(("id" = String, Path)),
    responses((status = 200, description = "The patch, in its new state", body = PatchView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_PATCH, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn patches_apply(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PatchView>> {
    e.execute(Command::PatchApply { id: id.clone() }).await?;
    Ok(Json(e.patch(&id).await?))
}

/// `sw-patch remove`.
#[utoipa::path(post, path = "/v1/patches/{id}/remove", tag = "patches",
    params(("id" = String, Path)),
    responses((status = 200, description = "The patch, in its new state", body = PatchView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_PATCH, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn patches_remove(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PatchView>> {
    e.execute(Command::PatchRemove { id: id.clone() }).await?;
    Ok(Json(e.patch(&id).await?))
}

/// `sw-patch query-hosts`.
#[utoipa::path(get, path = "/v1/patch_hosts", tag = "patches",
    responses((status = 200, description = "Every host's patches", body = HostPatchList),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn patch_hosts_list(State(e): State<AppState>) -> ApiResult<Json<HostPatchList>> {
    Ok(Json(HostPatchList {
        patch_hosts: e.patch_hosts().await?,
    }))
}

/// `sw-patch host-install HOST`: installs the applied patches the host needs (a kubelet patch
/// places the binary without restarting kubelet) and uninstalls those being removed.
#[utoipa::path(post, path = "/v1/ihosts/{host}/patch_install", tag = "patches",
    params(("host" = String, Path, description = "hostname, numeric id or uuid")),
    responses((status = 200, description = "The host's patches now", body = HostPatchView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_HOST, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn ihosts_patch_install(
    State(e): State<AppState>,
    Path(host): Path<String>,
) -> ApiResult<Json<HostPatchView>> {
    let out = e.execute(Command::PatchHostInstall { host }).await?;
    let name = out.host.map(|h| h.hostname).unwrap_or_default();
    e.patch_hosts()
        .await?
        .into_iter()
        .find(|h| h.hostname == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("Host {name} not found")))
}

/// `kup ha-status`: the daemons that share the store and which one leads. A daemon on SQLite
/// is alone and leads; on PostgreSQL every replica answers with the lease as it stands.
#[utoipa::path(get, path = "/v1/cluster_status", tag = "info",
    responses((status = 200, description = "The replicas and the leader", body = kup_types::ClusterStatus)))]
pub async fn cluster_status() -> Json<kup_types::ClusterStatus> {
    let me = "this daemon".to_string();
    Json(kup_types::ClusterStatus {
        store: "sqlite".into(),
        replica: me.clone(),
        leader: Some(me.clone()),
        leader_address: None,
        token: 0,
        lease_age_seconds: 0.0,
        lease_left_seconds: 0.0,
        leader_for_seconds: 0.0,
        replicas: vec![kup_types::ReplicaStatus {
            id: me,
            address: String::new(),
            leader: true,
            seen_seconds_ago: 0.0,
            started_seconds_ago: 0.0,
        }],
    })
}

/// `kup info`: the cluster's version (or the transition in progress) and every host's versions.
#[utoipa::path(get, path = "/v1/info", tag = "info",
    responses((status = 200, description = "The versions the cluster runs", body = kup_types::ClusterInfo),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn info_show(State(e): State<AppState>) -> ApiResult<Json<kup_types::ClusterInfo>> {
    Ok(Json(e.info().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// The target version (default: the upgrade in progress, else the highest available).
    #[param(example = "v1.16.2")]
    pub to: Option<String>,
    /// The largest worker batch (default 1).
    #[param(format = Int64, minimum = 1, maximum = 4294967295_u64, example = 2)]
    pub max_parallel_worker_hosts: Option<u32>,
    /// A host with less free disk (GiB) is not ready (default 1).
    #[param(format = Int64, minimum = 0, maximum = 4294967295_u64, example = 1)]
    pub min_free_disk_gib: Option<u32>,
}

/// `kup upgrade plan`: the stages of the whole upgrade, worker batches sized by the safety
/// analysis (PodDisruptionBudgets, capacity), the findings per host and the predicted durations.
#[utoipa::path(get, path = "/v1/upgrade/plan", tag = "plan", params(PlanQuery),
    responses((status = 200, description = "The plan", body = crate::plan_schema::Plan),
              (status = 400, description = "A query parameter is invalid, or there is nothing to plan", body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn upgrade_plan(
    State(e): State<AppState>,
    ApiQuery(q): ApiQuery<PlanQuery>,
) -> ApiResult<Json<kup_core::plan::Plan>> {
    let (max_parallel, disk) = q.checked()?;
    Ok(Json(e.plan(q.to.as_deref(), max_parallel, disk).await?))
}

impl PlanQuery {
    /// The largest worker batch and the least free disk, as the query allows them.
    pub(crate) fn checked(&self) -> Result<(u32, u32), ApiError> {
        // The engine would take 0 as 1; the CLI refuses it, and so does the API.
        let max_parallel = self.max_parallel_worker_hosts.unwrap_or(1);
        if max_parallel == 0 {
            return Err(invalid_query("max_parallel_worker_hosts", 0, "at least 1"));
        }
        let disk = self
            .min_free_disk_gib
            .unwrap_or(kup_core::safety::DEFAULT_MIN_FREE_DISK_GIB);
        Ok((max_parallel, disk))
    }
}

fn invalid_query(name: &str, got: impl std::fmt::Display, must_be: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid query: {name} must be {must_be}, got {got}"
    ))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object,
               content_type = "application/json")))]
pub async fn openapi_json(State(doc): State<DocJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
}

/// Whether the daemon can do its work.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable`.
    status: &'static str,
    /// Why not, when it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Health: answers without a token; 200 only while the store answers and the cluster can be
/// reached (cheaply: nothing that grows with the cluster is read).
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "The daemon can do its work", body = Health),
              (status = 503, description = "The store or the cluster cannot be reached", body = Health)))]
pub async fn healthz(State(e): State<AppState>) -> (StatusCode, Json<Health>) {
    match e.check().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                reason: None,
            }),
        ),
        Err(err) => {
            // Anyone may ask (no token): the store's own words stay in the log.
            let reason = match &err {
                kup_engine::EngineError::Store(s) => {
                    tracing::error!(error = %err, "health check: the store failed");
                    s.summary().to_string()
                }
                _ => err.to_string(),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    reason: Some(reason),
                }),
            )
        }
    }
}

/// Prometheus metrics, without a token: the upgrade's and the strategy's state, operations
/// in flight by kind, hosts by status, events written.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics(State(e): State<AppState>) -> impl IntoResponse {
    let mut text = crate::metrics::Text::default();
    crate::metrics::engine(&mut text, &e.metrics());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text.into_string(),
    )
}

const NO_STRATEGY: &str = "No strategy exists";

/// The upgrade strategy (`kube-upgrade-strategy show`).
#[utoipa::path(get, path = "/v1/kube_upgrade_strategy", tag = "kube_upgrade_strategy",
    responses((status = 200, description = "The strategy: its phases, stages and steps", body = StrategyView),
              (status = 404, description = NO_STRATEGY, body = ErrorBody)))]
pub async fn strategy_show(State(e): State<AppState>) -> ApiResult<Json<StrategyView>> {
    e.strategy()?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(kup_core::Refusal::NoStrategy.to_string()))
}

/// `kube-upgrade-strategy create`: builds the strategy (its checks and predicted stages). It
/// is stored `ready-to-apply`, or `build-failed` with the reasons in its build phase.
#[utoipa::path(post, path = "/v1/kube_upgrade_strategy", tag = "kube_upgrade_strategy",
    request_body(content = StrategyCreate,
        example = json!({"to_version": "v1.16.2", "worker_apply_type": "parallel", "max_parallel_worker_hosts": 10})),
    responses((status = 200, description = "The strategy as built", body = StrategyView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn strategy_create(
    State(e): State<AppState>,
    ApiJson(req): ApiJson<StrategyCreate>,
) -> ApiResult<Json<StrategyView>> {
    Ok(Json(e.strategy_create(req).await?))
}

/// `kube-upgrade-strategy delete`: refused while it applies or aborts.
#[utoipa::path(delete, path = "/v1/kube_upgrade_strategy", tag = "kube_upgrade_strategy",
    responses((status = 204, description = "Deleted"),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_STRATEGY, body = ErrorBody)))]
pub async fn strategy_delete(State(e): State<AppState>) -> ApiResult<StatusCode> {
    e.strategy_action(kup_core::strategy::StrategyCommand::Delete)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `kube-upgrade-strategy apply|abort`: `apply-all` starts (or resumes) the apply; `abort`
/// lets the steps in flight end and starts no new one.
#[utoipa::path(post, path = "/v1/kube_upgrade_strategy/actions", tag = "kube_upgrade_strategy",
    request_body(content = StrategyActionRequest, example = json!({"action": "apply-all"})),
    responses((status = 202, description = "Accepted: the strategy as it is now", body = StrategyView),
              (status = 400, description = REFUSED, body = ErrorBody),
              (status = 404, description = NO_STRATEGY, body = ErrorBody)))]
pub async fn strategy_actions(
    State(e): State<AppState>,
    ApiJson(req): ApiJson<StrategyActionRequest>,
) -> ApiResult<(StatusCode, Json<StrategyView>)> {
    let view = e
        .strategy_action(strategy_command(&req)?)
        .await?
        .ok_or_else(|| ApiError::not_found(kup_core::Refusal::NoStrategy.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// The command of a strategy action.
pub(crate) fn strategy_command(
    req: &StrategyActionRequest,
) -> Result<kup_core::strategy::StrategyCommand, ApiError> {
    use kup_core::strategy::StrategyCommand as C;
    match req.action.as_str() {
        "apply-all" => Ok(C::Apply),
        "abort" => Ok(C::Abort {
            rollback: req.rollback,
        }),
        "apply-stage" | "abort-stage" => Err(ApiError::bad_request(format!(
            "Action {:?} is not supported: kup applies or aborts the whole strategy \
             (apply-all, abort)",
            req.action
        ))),
        other => Err(ApiError::bad_request(format!(
            "Invalid action {other:?}: expected apply-all or abort"
        ))),
    }
}
