//! The HTTP API: sysinv-compatible resources under `/v1` plus kup's own (alarms, events),
//! token auth, and the OpenAPI document generated from the handlers.
//!
//! Only this crate knows about HTTP and the sysinv error body.

mod auth;
pub mod dashboard;
mod error;
mod extract;
/// The body of the fuzz target over the request bodies, for `fuzz/` and the test that replays
/// its corpus.
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod plan_schema;
mod routes;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kup_engine::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use auth::SecuritySchemes;
pub use auth::{Role, Tokens, require_token};
pub use error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kup",
        description = "Kubernetes upgrade orchestrator: the sysinv-compatible API and kup's own resources. Every /v1 request needs a token in X-Auth-Token or Authorization: Bearer; changing anything needs an admin token. Every reply is JSON; every error is sysinv's {\"error_message\": ...} body."
    ),
    modifiers(&SecuritySchemes),
    security(("token" = []), ("bearer" = []))
)]
struct ApiDoc;

/// The largest request body of a patch upload: a bundle at kup-patch's limit, plus slack.
pub const MAX_BUNDLE_BODY: usize = 256 * 1024 * 1024 + 4096;

/// The largest JSON request body. sysinv's bodies are a few hundred bytes; a larger limit
/// would only let a client make the daemon hold (and parse) more memory per request.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// What the service allows at once.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Patch uploads in progress at once. Each holds its bundle (up to 256 MiB) in memory
    /// while it is read, verified and stored; 0 refuses every upload.
    pub max_concurrent_uploads: usize,
    /// How long a further upload waits for one of them to finish before it is refused (503).
    pub upload_wait: Duration,
    /// The time an upload's whole body is given to arrive, once it has a slot: this, plus its
    /// announced length at `upload_min_rate`, at most `upload_max_body_time`. A body that takes
    /// longer is refused (408) and its slot freed, so that a client sending a byte now and
    /// then cannot hold a slot for ever.
    pub upload_body_time: Duration,
    /// The slowest rate an upload's body is allowed, in bytes per second (0: only
    /// `upload_max_body_time` bounds it).
    pub upload_min_rate: u64,
    /// The longest any upload's body is given, whatever its length; also the time of a body
    /// whose length is not announced.
    pub upload_max_body_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_uploads: 2,
            upload_wait: Duration::from_secs(5),
            upload_body_time: Duration::from_secs(60),
            upload_min_rate: 64 * 1024,
            upload_max_body_time: Duration::from_secs(30 * 60),
        }
    }
}

/// The `/v1` resources; every one of them is behind the token check.
fn v1() -> OpenApiRouter<routes::Shared> {
    use routes::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(kube_versions_list))
        .routes(routes!(kube_versions_show))
        .routes(routes!(
            kube_upgrade_list,
            kube_upgrade_create,
            kube_upgrade_patch,
            kube_upgrade_delete
        ))
        .routes(routes!(kube_upgrade_show))
        .routes(routes!(kube_host_upgrades_list))
        .routes(routes!(kube_host_upgrades_show, kube_host_upgrades_patch))
        .routes(routes!(ihosts_list))
        .routes(routes!(ihosts_show, ihosts_patch))
        .routes(routes!(ihosts_kube_upgrade_control_plane))
        .routes(routes!(ihosts_kube_upgrade_kubelet))
        .routes(routes!(health_kube_upgrade))
        .routes(routes!(health_kube_upgrade_relaxed))
        .routes(routes!(alarms_list))
        .routes(routes!(events_list))
        .routes(routes!(patches_list))
        // Only the upload takes a bundle-sized body; it counts against the upload slots
        // before it reads a byte (see `uploads`).
        .routes(routes!(patches_upload).layer(DefaultBodyLimit::max(MAX_BUNDLE_BODY)))
        .routes(routes!(patches_show, patches_delete))
        .routes(routes!(patches_apply))
        .routes(routes!(patches_remove))
        .routes(routes!(patch_hosts_list))
        .routes(routes!(ihosts_patch_install))
        .routes(routes!(strategy_show, strategy_create, strategy_delete))
        .routes(routes!(strategy_actions))
        .routes(routes!(info_show))
        .routes(routes!(cluster_status))
        .routes(routes!(upgrade_plan))
        .routes(routes!(crate::dashboard::dashboard))
        .routes(routes!(crate::dashboard::host_findings))
        .routes(routes!(crate::dashboard::token))
        .routes(routes!(openapi_json))
}

/// What answers without a token.
fn open() -> OpenApiRouter<routes::Shared> {
    OpenApiRouter::new()
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::metrics))
}

/// The OpenAPI document (also served at `/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = v1().split_for_parts();
    doc.merge(open().into_openapi());
    widen_unsigned_integers(&mut doc);
    declare_rejections(&mut doc);
    auth::declare(&mut doc);
    doc
}

/// utoipa declares a `u32` as `int32` with `minimum: 0`, although its values go to 4294967295;
/// the schemas of `components` (kup-types' views, which only replies carry integers in) are
/// declared as what they can hold: `int64` from 0 to `u32::MAX`. (An `i32` with a minimum of 0
/// gets the same, which is still true of every value a reply can carry.) Query parameters
/// declare their exact bounds where they are defined (`format = Int64`, `maximum`), and the
/// conformance test holds the server to them.
fn widen_unsigned_integers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::Number;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ArrayItems, KnownFormat, Schema, SchemaFormat};
    fn visit(schema: &mut RefOr<Schema>) {
        let RefOr::T(schema) = schema else { return };
        match schema {
            Schema::Object(o) => {
                let int32 = matches!(
                    o.format,
                    Some(SchemaFormat::KnownFormat(KnownFormat::Int32))
                );
                let non_negative = match o.minimum {
                    Some(Number::Int(n)) => n >= 0,
                    Some(Number::UInt(_)) => true,
                    Some(Number::Float(x)) => x >= 0.0,
                    _ => false,
                };
                if int32 && non_negative && o.maximum.is_none() {
                    o.format = Some(SchemaFormat::KnownFormat(KnownFormat::Int64));
                    o.maximum = Some(Number::UInt(u32::MAX as usize));
                }
                o.properties.values_mut().for_each(visit);
            }
            Schema::Array(a) => {
                if let ArrayItems::RefOrSchema(items) = &mut a.items {
                    visit(items);
                }
            }
            Schema::OneOf(x) => x.items.iter_mut().for_each(visit),
            Schema::AllOf(x) => x.items.iter_mut().for_each(visit),
            Schema::AnyOf(x) => x.items.iter_mut().for_each(visit),
            _ => {}
        }
    }
    if let Some(components) = doc.components.as_mut() {
        components.schemas.values_mut().for_each(visit);
    }
}

/// Declares the answers every operation can give because of what reads its request, not
/// because of its handler: a path or query parameter, or a body, that does not parse is a 400
/// (see `json_only`: every rejection becomes the error body), a body over its limit a 413;
/// and any of them can fail inside kup (500).
fn declare_rejections(doc: &mut utoipa::openapi::OpenApi) {
    for_each_operation(doc, |_, _, op| {
        if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some() {
            declare(
                op,
                StatusCode::BAD_REQUEST,
                "The request is malformed: a parameter or the body",
            );
        }
        if op.request_body.is_some() {
            declare(
                op,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is larger than this resource accepts",
            );
        }
        declare(
            op,
            StatusCode::INTERNAL_SERVER_ERROR,
            "kup itself failed (its store, say): the reason is generic and names an error id; the daemon's log has the details",
        );
    });
}

/// Calls `f` with the path, method and operation of every operation of the document.
fn for_each_operation(
    doc: &mut utoipa::openapi::OpenApi,
    mut f: impl FnMut(&str, Method, &mut Operation),
) {
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::OPTIONS, &mut item.options),
            (Method::HEAD, &mut item.head),
            (Method::PATCH, &mut item.patch),
            (Method::TRACE, &mut item.trace),
        ] {
            if let Some(op) = op {
                f(path, method, op);
            }
        }
    }
}

/// Adds an error answer (sysinv's error body) to an operation that does not declare that
/// status yet.
fn declare(op: &mut Operation, status: StatusCode, description: &str) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    op.responses
        .responses
        .entry(status.as_u16().to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
                .into()
        });
}

/// The whole service with the default [`Limits`]: `/v1` behind the token check,
/// `/healthz` open.
pub fn router(engine: Arc<Engine>, tokens: Tokens) -> Router {
    router_with(engine, tokens, Limits::default())
}

/// The whole service with the given limits.
pub fn router_with(engine: Arc<Engine>, tokens: Tokens, limits: Limits) -> Router {
    let doc = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    let state = routes::Shared {
        engine,
        uploads: uploads::UploadGate::new(&limits),
        doc: routes::DocJson(Arc::from(doc)),
    };
    let (v1, _) = v1().split_for_parts();
    let v1 = v1.layer(axum::middleware::from_fn_with_state(
        tokens,
        auth::require_token,
    ));
    let (open, _) = open().split_for_parts();
    Router::new()
        .merge(open)
        .merge(dashboard_page())
        .merge(v1)
        .with_state(state)
        .fallback(|| async { ApiError::not_found("No such resource").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: "Method not allowed on this resource".into(),
            }
            .into_response()
        })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let detail = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                ApiError::internal("a request failed unexpectedly", &detail).into_response()
            },
        ))
        .layer(axum::middleware::map_response(json_only))
}

/// The dashboard's page and assets, without a token (they hold no data: the page asks for a
/// token and sends it with every `/v1` request it makes).
pub fn dashboard_page<S: Clone + Send + Sync + 'static>() -> Router<S> {
    dashboard::asset_paths().fold(Router::new(), |r, path| {
        r.route(path, axum::routing::get(dashboard::serve_asset))
    })
}

/// Every reply is JSON, as StarlingX's client requires, even an empty one. An error that
/// kup's own code did not shape (a rejection of one of axum's extractors or layers: a path
/// that is not UTF-8, say) becomes the sysinv error body with its status and its text, so
/// no client ever has to parse anything else.
async fn json_only(mut res: Response) -> Response {
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    let status = res.status();
    if !is_json && status.is_server_error() {
        // Not kup's own reply: its text is for the log, not for clients.
        let text = axum::body::to_bytes(res.into_body(), 4096)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut reply = ApiError::internal("a layer of the server failed", &text);
        reply.status = status;
        return reply.into_response();
    }
    if !is_json && status.is_client_error() {
        // Rejection texts are one short line; anything longer is not worth quoting.
        let text = axum::body::to_bytes(res.into_body(), 4096)
            .await
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let reason = if text.is_empty() {
            status.canonical_reason().unwrap_or("Error").to_string()
        } else {
            text
        };
        return ApiError { status, reason }.into_response();
    }
    // A 304 has no body to type.
    if content_type.is_none() && status != StatusCode::NOT_MODIFIED {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    res
}
