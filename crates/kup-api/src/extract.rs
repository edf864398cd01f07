//! A JSON body extractor whose every rejection is a sysinv-style 400 with a clear reason.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError::bad_request(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    "The request body must be JSON (Content-Type: application/json)".to_string()
                }
                JsonRejection::JsonSyntaxError(e) => format!("Malformed JSON: {}", e.body_text()),
                JsonRejection::JsonDataError(e) => format!("Invalid request: {}", e.body_text()),
                other => format!("Invalid request body: {}", other.body_text()),
            })),
        }
    }
}

/// A body that may be absent (then the default) but, when present, must be valid JSON.
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(if e.is_syntax() || e.is_eof() {
            format!("Malformed JSON: {e}")
        } else {
            format!("Invalid request: {e}")
        })
    })
}
