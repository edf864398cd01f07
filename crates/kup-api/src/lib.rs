//! The HTTP API: sysinv-compatible resources under `/v1` plus kup's own (alarms, events),
//! token auth, and the OpenAPI document generated from the handlers.
//!
//! Only this crate knows about HTTP and the sysinv error body.

mod auth;
mod error;
mod extract;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use kup_engine::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Role, Tokens};
pub use error::ApiError;

#[derive(OpenApi)]
#[openapi(info(
    title = "kup",
    description = "Kubernetes upgrade orchestrator: the sysinv-compatible API and kup's own resources. Every request needs a token in X-Auth-Token or Authorization: Bearer."
))]
struct ApiDoc;

fn api() -> OpenApiRouter<routes::AppState> {
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
        .routes(routes!(kube_host_upgrades_show))
        .routes(routes!(ihosts_list))
        .routes(routes!(ihosts_show, ihosts_patch))
        .routes(routes!(ihosts_kube_upgrade_control_plane))
        .routes(routes!(ihosts_kube_upgrade_kubelet))
        .routes(routes!(health_kube_upgrade))
        .routes(routes!(health_kube_upgrade_relaxed))
        .routes(routes!(alarms_list))
        .routes(routes!(events_list))
        .routes(routes!(patches_list, patches_upload))
        .routes(routes!(patches_show, patches_delete))
        .routes(routes!(patches_apply))
        .routes(routes!(patches_remove))
        .routes(routes!(patch_hosts_list))
        .routes(routes!(ihosts_patch_install))
        .routes(routes!(info_show))
        .routes(routes!(upgrade_plan))
}

/// The OpenAPI document (also served at `/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api().split_for_parts();
    doc.paths.paths.insert(
        "/v1/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("meta")
                .summary(Some("This document"))
                .response(
                    "200",
                    utoipa::openapi::Response::new("The OpenAPI document"),
                ),
        ),
    );
    doc
}

/// The largest request body: a patch bundle at kup-patch's limit, plus slack.
const MAX_BODY: usize = 256 * 1024 * 1024 + 4096;

/// The whole service: `/v1` behind the token check, `/healthz` open.
pub fn router(engine: Arc<Engine>, tokens: Tokens) -> Router {
    let (v1, _) = api().split_for_parts();
    let doc = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    let v1 = v1
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move {
                ([(header::CONTENT_TYPE, "application/json")], doc.clone())
            }),
        )
        .with_state(engine)
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ));
    Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .merge(v1)
        .fallback(|| async { ApiError::not_found("No such resource").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: "Method not allowed on this resource".into(),
            }
            .into_response()
        })
        // Patch bundles are the largest bodies (kup-patch refuses over 256 MiB itself); axum's
        // own 2 MiB default would refuse every real kubelet bundle first.
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "Internal error".into(),
            }
            .into_response()
        }))
        .layer(axum::middleware::map_response(json_content_type))
}

/// Every reply says `application/json`, as StarlingX's client requires, even an empty one;
/// a body refused for its size gets the usual error body too.
async fn json_content_type(mut res: axum::response::Response) -> axum::response::Response {
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!("The request body is larger than {MAX_BODY} bytes"),
        }
        .into_response();
    }
    res.headers_mut()
        .entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    res
}
