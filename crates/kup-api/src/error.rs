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
    /// Not now: the daemon cannot serve this just yet (try again).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: reason.into(),
        }
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            reason: reason.into(),
        }
    }

    /// A failure of kup itself (`what`: "the store failed"). The detail may quote SQL, the
    /// database's own words or file paths: it goes to the log only, under an id that the
    /// reply names so that an operator can find it.
    pub fn internal(what: &str, detail: &dyn std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::error!(error_id = id, error = %detail, "{what}");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: format!(
                "Internal error: {what} (error id {id}; the daemon's log has the details)"
            ),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::Refused(r) if r.is_not_found() => StatusCode::NOT_FOUND,
            EngineError::Refused(_) => StatusCode::BAD_REQUEST,
            EngineError::Driver(_) => StatusCode::SERVICE_UNAVAILABLE,
            // A deposed leader: another replica leads now; the client tries again there.
            EngineError::Store(s) if s.is_not_leader() => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Store(s) => return Self::internal(s.summary(), &e),
            EngineError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Bundle(_) => StatusCode::BAD_REQUEST,
            EngineError::Repository(_) => {
                return Self::internal("the patch repository failed", &e);
            }
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
