//! Tokens: every `/v1` request carries one (`X-Auth-Token` or `Authorization: Bearer`).
//! Admin tokens may change things; reader tokens may only read. Tokens are compared in
//! constant time and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

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

pub async fn require_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    let role = presented(&req).and_then(|t| tokens.role(t));
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
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
        Some(_) => next.run(req).await,
    }
}
