//! Tokens: every `/v1` request carries one (`X-Auth-Token` or `Authorization: Bearer`).
//! Admin tokens may change things; reader tokens may only read. Tokens are compared in
//! constant time and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Reader,
}

#[derive(Clone, Default)]
pub struct Tokens {
    entries: Arc<Vec<(Role, Vec<u8>)>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

impl Tokens {
    pub fn new(entries: impl IntoIterator<Item = (Role, String)>) -> Self {
        Self {
            entries: Arc::new(
                entries
                    .into_iter()
                    .map(|(r, t)| (r, t.into_bytes()))
                    .collect(),
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role of a presented token. Every configured token is compared, so the time taken
    /// does not reveal which one (or how much of one) matched.
    pub fn role(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (role, token) in self.entries.iter() {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = Some(*role);
            }
        }
        found
    }
}

fn presented(req: &Request) -> Option<&[u8]> {
    let h = req.headers();
    if let Some(t) = h.get("x-auth-token") {
        return Some(t.as_bytes());
    }
    let auth = h.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    auth.strip_prefix(b"Bearer ")
        .or_else(|| auth.strip_prefix(b"bearer "))
}

/// What a reader token may do: read.
fn reads_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn require_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    let role = presented(&req).and_then(|t| tokens.role(t));
    let read_only = reads_only(req.method());
    match role {
        None => ApiError {
            status: StatusCode::UNAUTHORIZED,
            reason: "Authentication required: send a valid token in X-Auth-Token or Authorization: Bearer".into(),
        }
        .into_response(),
        Some(Role::Reader) if !read_only => ApiError {
            status: StatusCode::FORBIDDEN,
            reason: "This token may only read; changing anything needs an admin token".into(),
        }
        .into_response(),
        Some(role) => {
            // The handlers that say what a token may do (`/v1/token`) read it from here.
            let mut req = req;
            req.extensions_mut().insert(role);
            next.run(req).await
        }
    }
}

/// The two ways to present a token, as the document's security schemes.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "An admin or reader token",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin or reader token"))
                    .build(),
            ),
        );
    }
}

/// Declares in the document what [`require_token`] does to every `/v1` operation: 401
/// without a valid token, 403 for a reader token on anything that is not a read.
pub fn declare(doc: &mut OpenApi) {
    crate::for_each_operation(doc, |path, method, op| {
        if !path.starts_with("/v1/") {
            return;
        }
        crate::declare(
            op,
            StatusCode::UNAUTHORIZED,
            "No valid token in X-Auth-Token or Authorization: Bearer",
        );
        if !reads_only(&method) {
            crate::declare(
                op,
                StatusCode::FORBIDDEN,
                "The token may only read; this needs an admin token",
            );
        }
    });
}
