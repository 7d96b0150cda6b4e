//! The broker's reference between its monotonic clock and the wall clock.

use std::time::{Duration, Instant};

/// The instant the broker started at and the wall-clock time of that instant. The core reads
/// no clock: it maps the `now` of its inputs onto wall-clock milliseconds through this, for
/// the store's records and expiry instants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The instant the broker was created at.
    start: Instant,
    /// Milliseconds since the Unix epoch at `start`.
    start_wall_ms: u64,
}

impl Clock {
    /// A clock started at `now`, which is `wall_ms` milliseconds after the Unix epoch.
    pub(crate) const fn new(now: Instant, wall_ms: u64) -> Self {
        Self {
            start: now,
            start_wall_ms: wall_ms,
        }
    }

    /// Wall-clock milliseconds at `now`.
    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start);
        self.start_wall_ms + u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant of wall-clock time `ms`, seen from `now` (which is `wall_now` ms).
    pub(crate) fn instant_of(now: Instant, wall_now: u64, ms: u64) -> Instant {
        now + Duration::from_millis(ms.saturating_sub(wall_now))
    }

    /// Time since the start.
    pub(crate) fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }
}
