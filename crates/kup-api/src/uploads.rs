//! At most a few patch uploads at once. An upload holds its whole bundle (up to 256 MiB) in
//! memory while it is read, then verified and stored, so four at once would need a gigabyte;
//! a slot is taken before the body is read, and a further upload waits briefly for one, then
//! is refused with a 503 it can retry. An upload's body has a deadline, whole (not only
//! between its pieces), so that a slot cannot be held for ever by a client that sends a byte
//! now and then.

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
    body_time: Duration,
    min_rate: u64,
    max_body_time: Duration,
}

impl UploadGate {
    pub fn new(limits: &crate::Limits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_uploads)),
            max: limits.max_concurrent_uploads,
            wait: limits.upload_wait,
            body_time: limits.upload_body_time,
            min_rate: limits.upload_min_rate,
            max_body_time: limits.upload_max_body_time,
        }
    }

    /// The time a body of `announced` bytes (`None`: not announced) is given to arrive whole:
    /// the base time plus its length at the slowest rate allowed, at most the cap.
    pub fn body_deadline(&self, announced: Option<u64>) -> Duration {
        let (Some(len), true) = (announced, self.min_rate > 0) else {
            return self.max_body_time;
        };
        let nanos = u128::from(len) * 1_000_000_000 / u128::from(self.min_rate);
        let transfer = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.body_time
            .saturating_add(transfer)
            .min(self.max_body_time)
    }

    /// The refusal of a body that did not arrive within `deadline`.
    pub fn too_slow(&self, deadline: Duration) -> ApiError {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            reason: format!(
                "The upload's body did not arrive in time: a bundle is given {} s plus its size at {} \
                 bytes per second (at most {} s), {:.1} s for this one",
                self.body_time.as_secs_f64(),
                self.min_rate,
                self.max_body_time.as_secs_f64(),
                deadline.as_secs_f64()
            ),
        }
    }

    /// A slot, held until the permit is dropped; waits at most the configured time for one.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out (the semaphore is never closed).
            _ => Err(ApiError::unavailable(format!(
                "Too many uploads in progress (at most {} at a time): try again when one has finished",
                self.max
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::UploadGate;

    #[test]
    fn the_body_deadline_grows_with_the_announced_length_up_to_the_cap() {
        let gate = UploadGate::new(&crate::Limits::default());
        let secs = |len| gate.body_deadline(len).as_secs_f64();
        assert_eq!(secs(Some(0)), 60.0);
        assert_eq!(
            gate.body_deadline(Some(1000)),
            Duration::from_nanos(60_015_258_789)
        );
        // 100 MiB at 64 KiB/s: 1600 s more.
        assert_eq!(secs(Some(100 << 20)), 1660.0);
        // A bundle at the limit, or one whose length is not announced: the cap.
        assert_eq!(secs(Some(crate::MAX_BUNDLE_BODY as u64)), 1800.0);
        assert_eq!(secs(None), 1800.0);
        assert_eq!(secs(Some(u64::MAX)), 1800.0);
        let no_rate = UploadGate::new(&crate::Limits {
            upload_min_rate: 0,
            upload_max_body_time: Duration::from_secs(7),
            ..crate::Limits::default()
        });
        assert_eq!(no_rate.body_deadline(Some(5)), Duration::from_secs(7));
    }
}
