//! The S3 server's clock, learned from the `Date` header of its responses.
//!
//! GC measures object ages against the store's clock, and on S3 `Last-Modified` is the
//! server's time: comparing it with this host's clock would let a host whose clock runs
//! ahead delete objects before their grace period is over. Every response carries the
//! server's `Date` (one-second resolution); an interceptor records the latest one with the
//! local monotonic time it arrived at, and [`ServerClock::now`] extrapolates from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_types::date_time::{DateTime, Format};

use crate::clock::{Clock, Stamp};

/// An observation older than this is refreshed with a request before it is trusted.
pub(super) const MAX_EXTRAPOLATION: Duration = Duration::from_secs(300);

/// The latest server time seen, and when (on the local monotonic clock).
#[derive(Debug)]
pub(super) struct ServerClock {
    clock: Arc<dyn Clock>,
    last: Mutex<Option<(SystemTime, Stamp)>>,
}

impl ServerClock {
    pub(super) fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(ServerClock {
            clock,
            last: Mutex::new(None),
        })
    }

    fn observe(&self, server: SystemTime) {
        let at = Stamp::now(self.clock.as_ref());
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((server, at));
    }

    /// The server's current time, if a response arrived within [`MAX_EXTRAPOLATION`].
    pub(super) fn now(&self) -> Option<SystemTime> {
        let (server, at) = (*self.last.lock().unwrap_or_else(|p| p.into_inner()))?;
        let since = at.elapsed(self.clock.as_ref());
        (since <= MAX_EXTRAPOLATION).then(|| server + since)
    }
}

/// Records the `Date` header of every response into a [`ServerClock`].
#[derive(Debug)]
pub(super) struct DateObserver(pub(super) Arc<ServerClock>);

impl Intercept for DateObserver {
    fn name(&self) -> &'static str {
        "segstore-server-date"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            if let Some(t) = parse_http_date(date) {
                self.0.observe(t);
            }
        }
        Ok(())
    }
}

fn parse_http_date(value: &str) -> Option<SystemTime> {
    let t = DateTime::from_str(value.trim(), Format::HttpDate).ok()?;
    SystemTime::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn parses_the_http_date_format() {
        let t = parse_http_date("Tue, 01 Dec 2026 19:49:34 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_796_154_574));
        assert!(parse_http_date("yesterday").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn extrapolates_from_the_last_observation_for_a_while() {
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::TokioClock::new(UNIX_EPOCH));
        let server = ServerClock::new(clock);
        assert!(server.now().is_none());
        let seen = UNIX_EPOCH + Duration::from_secs(5_000);
        server.observe(seen);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(server.now(), Some(seen + Duration::from_secs(10)));
        tokio::time::sleep(MAX_EXTRAPOLATION).await;
        assert!(server.now().is_none());
    }
}
