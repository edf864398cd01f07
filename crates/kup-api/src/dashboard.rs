//! The dashboard: its page and assets (built into the binary, served without a token: they
//! hold no data), and the reads it is made of (`/v1/dashboard`, a host's findings, the
//! token's role), which are ordinary `/v1` resources behind the token like every other.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::routes::{AppState, UNAVAILABLE};
use kup_types::ErrorBody;

/// The page may load its own script, style and inline images, and talk to this daemon only:
/// no inline script or style, no other origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// An asset of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../dashboard/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        path: "/ui/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../dashboard/app.css"),
    },
];

/// The paths the page is served at, for the routers (the single daemon's and HA's).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// An asset's entity tag: its bytes' hash, so a browser revalidates and an upgraded daemon's
/// page is never mixed with an old one's script.
fn etag(body: &[u8]) -> String {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(body);
    format!("\"{:016x}-{}\"", h.finish(), body.len())
}

/// Serves the asset at `path` (`GET`/`HEAD`), with the page's security headers; `None` for a
/// path that is not one.
pub fn asset(path: &str, headers: &HeaderMap) -> Option<Response> {
    let a = ASSETS.iter().find(|a| a.path == path)?;
    let tag = etag(a.body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
    };
    let h = res.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Some(res)
}

/// The handler of every asset path.
pub async fn serve_asset(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    asset(uri.path(), &headers)
        .unwrap_or_else(|| ApiError::not_found("No such resource").into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// Only these hosts' tiles, comma-separated (at most 1000 names); the other parts of the
    /// answer are whole. Empty: no tile. Absent: every host's.
    #[param(example = "worker-0,worker-1")]
    pub hosts: Option<String>,
}

/// The most tiles asked for by name at once.
pub(crate) const MAX_NAMED_HOSTS: usize = 1000;

impl DashboardQuery {
    /// The hosts named (`None`: every host), as the query allows them.
    pub(crate) fn checked(&self) -> Result<Option<Vec<String>>, ApiError> {
        let Some(list) = self.hosts.as_deref() else {
            return Ok(None);
        };
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if names.len() > MAX_NAMED_HOSTS {
            return Err(ApiError::bad_request(format!(
                "Invalid query: hosts must name at most {MAX_NAMED_HOSTS} hosts, got {}",
                names.len()
            )));
        }
        Ok(Some(names))
    }
}

/// The dashboard's view of the cluster: one answer that grows by one small tile per host.
#[utoipa::path(get, path = "/v1/dashboard", tag = "dashboard", params(DashboardQuery),
    responses((status = 200, description = "The cluster, the strategy, the alarms and the hosts' tiles", body = kup_types::DashboardView),
              (status = 400, description = "A query parameter is invalid", body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn dashboard(
    State(e): State<AppState>,
    ApiQuery(q): ApiQuery<DashboardQuery>,
) -> ApiResult<Json<kup_types::DashboardView>> {
    let names = q.checked()?;
    Ok(Json(e.dashboard(names.as_deref()).await?))
}

/// What locking the host alone would do to its workloads (the analysis a lock runs), and its
/// readiness for the upgrade's target.
#[utoipa::path(get, path = "/v1/ihosts/{host}/findings", tag = "dashboard",
    params(("host" = String, Path, description = "Hostname, uuid or id")),
    responses((status = 200, description = "The host's safety findings and readiness", body = kup_types::HostFindings),
              (status = 404, description = "No such host", body = ErrorBody),
              (status = 503, description = UNAVAILABLE, body = ErrorBody)))]
pub async fn host_findings(
    State(e): State<AppState>,
    Path(host): Path<String>,
) -> ApiResult<Json<kup_types::HostFindings>> {
    Ok(Json(e.host_findings(&host).await?))
}

/// The role of the token presented.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// `admin` (may change things) or `reader` (may only read).
    pub role: String,
}

/// The role of the token this request carries: what the dashboard offers to do.
#[utoipa::path(get, path = "/v1/token", tag = "dashboard",
    responses((status = 200, description = "The token's role", body = TokenView)))]
pub async fn token(role: Option<axum::Extension<Role>>) -> Json<TokenView> {
    let role = match role.map(|r| r.0) {
        Some(Role::Admin) => "admin",
        // Without the token layer (a router built without it) nothing may be assumed.
        Some(Role::Reader) | None => "reader",
    };
    Json(TokenView { role: role.into() })
}
