//! The one place segstore reads time.
//!
//! Every age, timestamp and elapsed-time check in the crate goes through a [`Clock`], so
//! that tests can run the real code on virtual time (a paused tokio runtime advances it
//! only when every task is idle, and a seeded simulation replays exactly). Reading
//! `SystemTime::now` or `Instant::now` anywhere else is refused by clippy
//! (`disallowed-methods` in `clippy.toml`).
//!
//! Two notions of time, kept apart on purpose:
//!
//! - **wall time** ([`Clock::now`]) for timestamps stored in manifests and snapshots;
//! - **monotonic time** ([`Clock::monotonic`]) for "how long since", immune to clock steps.
//!
//! Ages of stored objects are measured on the *store's* clock instead
//! ([`ObjectBackend::now`](crate::backend::ObjectBackend::now): S3's server time, the
//! local file system's mtime clock), so that clock skew between hosts cannot shorten the
//! GC grace period.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Time elapsed since an arbitrary origin fixed for the clock's lifetime. Never goes
    /// backwards.
    fn monotonic(&self) -> Duration;

    /// Milliseconds since the Unix epoch, as stored in manifests (0 before 1970).
    fn now_ms(&self) -> u64 {
        millis_since_epoch(self.now())
    }
}

/// Milliseconds from the Unix epoch to `t`, saturating (0 before 1970).
pub fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

fn process_origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the one real monotonic reading
    *ORIGIN.get_or_init(std::time::Instant::now)
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        #[allow(clippy::disallowed_methods)] // the one real wall-clock reading
        SystemTime::now()
    }

    fn monotonic(&self) -> Duration {
        let origin = process_origin();
        #[allow(clippy::disallowed_methods)]
        std::time::Instant::now().duration_since(origin)
    }
}

/// The shared [`SystemClock`], the default everywhere.
pub fn system() -> Arc<dyn Clock> {
    static SYSTEM: OnceLock<Arc<dyn Clock>> = OnceLock::new();
    SYSTEM.get_or_init(|| Arc::new(SystemClock)).clone()
}

/// Virtual time for tests and simulations: tokio's clock, which stands still in a runtime
/// built with `start_paused(true)` and jumps forward only when every task waits on a timer.
/// Wall time is `start` plus the tokio time elapsed since the clock was made, plus any
/// [`skew`](TokioClock::with_skew) (to model a host whose clock is wrong).
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
    start: SystemTime,
    skew_ms: i64,
}

impl TokioClock {
    /// A clock whose wall time starts at `start`.
    pub fn new(start: SystemTime) -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
            start,
            skew_ms: 0,
        }
    }

    /// The same clock, with its wall time off by `skew_ms` milliseconds (negative: late).
    pub fn with_skew(&self, skew_ms: i64) -> Self {
        TokioClock {
            skew_ms,
            ..self.clone()
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        let t = self.start + self.monotonic();
        let skew = Duration::from_millis(self.skew_ms.unsigned_abs());
        if self.skew_ms >= 0 {
            t + skew
        } else {
            t.checked_sub(skew).unwrap_or(UNIX_EPOCH)
        }
    }

    fn monotonic(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }
}

/// A point on a clock's monotonic scale, for measuring how long something took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(Duration);

/// Where stamps start on the monotonic scale: far enough from zero that a stamp
/// [`earlier_by`](Stamp::earlier_by) an age learned from a stored timestamp (a published
/// head written before this process started) does not saturate and look younger.
const STAMP_ORIGIN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Stamp {
    /// Now, on `clock`.
    pub fn now(clock: &dyn Clock) -> Stamp {
        Stamp(clock.monotonic().saturating_add(STAMP_ORIGIN))
    }

    /// Time from this stamp to now on `clock` (zero if `clock` is another clock behind it).
    pub fn elapsed(&self, clock: &dyn Clock) -> Duration {
        Stamp::now(clock).0.saturating_sub(self.0)
    }

    /// The stamp `d` later.
    pub fn later_by(&self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(d))
    }

    /// The stamp `d` earlier (saturating at the clock's origin).
    pub fn earlier_by(&self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_sub(d))
    }
}

/// Lowers `deadline` to `due` if that is earlier: something due by each of several
/// deadlines is due by the earliest.
pub(crate) fn tighten(deadline: &mut Option<Stamp>, due: Stamp) {
    *deadline = Some(deadline.map_or(due, |d| d.min(due)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_only_with_tokio_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = TokioClock::new(start);
        assert_eq!(clock.now(), start);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.monotonic(), Duration::from_secs(3600));
        assert_eq!(clock.now(), start + Duration::from_secs(3600));
        let late = clock.with_skew(-5_000);
        assert_eq!(late.now(), start + Duration::from_secs(3595));
        let stamp = Stamp::now(&clock);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(stamp.elapsed(&clock), Duration::from_millis(250));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock;
        let a = clock.monotonic();
        let b = clock.monotonic();
        assert!(b >= a);
        assert!(clock.now_ms() > 1_600_000_000_000);
    }
}
