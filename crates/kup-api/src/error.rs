//! The one place that turns errors into HTTP replies: sysinv's `error_message` body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kup_engine::EngineError;
use kup_types::ErrorBody;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
}

impl ApiError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
        }
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            reason: reason.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::Refused(r) if r.is_not_found() => StatusCode::NOT_FOUND,
            EngineError::Refused(_) => StatusCode::BAD_REQUEST,
            EngineError::Driver(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            EngineError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Bundle(_) => StatusCode::BAD_REQUEST,
            EngineError::Repository(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        Self {
            status,
            reason: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let faultcode = if self.status.is_client_error() {
            "Client"
        } else {
            "Server"
        };
        (self.status, Json(ErrorBody::new(faultcode, &self.reason))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
