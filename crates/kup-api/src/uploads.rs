//! At most a few patch uploads at once. An upload holds its whole bundle (up to 256 MiB) in
//! memory while it is read, then verified and stored, so four at once would need a gigabyte;
//! a slot is taken before the body is read, and a further upload waits briefly for one, then
//! is refused with a 503 it can retry.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

#[derive(Clone, Debug)]
pub struct UploadGate {
    slots: Arc<Semaphore>,
    max: usize,
    wait: Duration,
}

impl UploadGate {
    pub fn new(max: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            wait,
        }
    }

    /// A slot, held until the permit is dropped; waits at most the configured time for one.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out (the semaphore is never closed).
            _ => Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: format!(
                    "Too many uploads in progress (at most {} at a time): try again when one has finished",
                    self.max
                ),
            }),
        }
    }
}
