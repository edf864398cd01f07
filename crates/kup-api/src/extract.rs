//! Extractors whose every rejection is a sysinv-style error with a clear reason: a 400, or a
//! 413 for a body over its limit.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(json_rejection)
    }
}

/// A JSON body `bytes` (already read, of the right content type) as `T`, exactly as
/// [`ApiJson`] takes it.
pub(crate) fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(v)| v)
        .map_err(json_rejection)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::bad_request(match rejection {
        JsonRejection::BytesRejection(r) => return body_rejection(r, crate::MAX_JSON_BODY),
        JsonRejection::MissingJsonContentType(_) => {
            "The request body must be JSON (Content-Type: application/json)".to_string()
        }
        JsonRejection::JsonSyntaxError(e) => format!("Malformed JSON: {}", e.body_text()),
        JsonRejection::JsonDataError(e) => format!("Invalid request: {}", e.body_text()),
        other => format!("Invalid request body: {}", other.body_text()),
    })
}

/// A body that may be absent or `null` (then the default) but otherwise must be valid JSON;
/// its content type is not checked (sysinv's client sends none with an empty body).
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_rejection(r, crate::MAX_JSON_BODY))?;
        optional_json(&body).map(OptionalJson)
    }
}

pub(crate) fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            ApiError::bad_request(if e.is_syntax() || e.is_eof() {
                format!("Malformed JSON: {e}")
            } else {
                format!("Invalid request: {e}")
            })
        })
}

/// A body that could not be read: too large (413, with the limit `limit` of its resource), or
/// cut off.
pub fn body_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            too_large(limit)
        }
        other => ApiError::bad_request(format!(
            "The request body could not be read: {}",
            other.body_text()
        )),
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        reason: format!(
            "The request body is larger than {limit} bytes, the most this resource accepts"
        ),
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(query_rejection)
    }
}

/// The query of `uri` as `T`, exactly as [`ApiQuery`] takes it.
pub(crate) fn query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|axum::extract::Query(v)| v)
        .map_err(query_rejection)
}

fn query_rejection(r: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("Invalid query: {}", r.body_text()))
}
