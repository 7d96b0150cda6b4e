//! The core's timers, in one table, and the one instant the driver must wake the core at.
//!
//! Per-connection checks (the connect timeout, then the keep-alive) fall into ticks of
//! [`TICK_MS`]: a connection costs one id in its tick's bucket, and the table holds one entry
//! per tick in use, not one per connection. Everything else (wills, session expiry, `$SYS`,
//! message expiry sweeps, delayed refusals) has its own entry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::session::SessionId;
use crate::types::ConnId;

/// The resolution of the per-connection checks, in milliseconds: a connection is closed at
/// most this long after its connect timeout, or one and a half times its Keep Alive
/// (`[MQTT-3.1.2-22]`), has passed.
pub(crate) const TICK_MS: u64 = 100;

/// The shortest gap between two expiry sweeps.
const SWEEP_SPACING: Duration = Duration::from_secs(1);

/// What a timer is for. On a tie, entries run in this order: a tick's connection checks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The connections whose checks fall in this tick ([`Timers::take_tick`]).
    Tick(u64),
    /// A will's delay runs out.
    Will(SessionId),
    /// An offline session expires.
    SessionExpiry(SessionId),
    /// `$SYS` statistics are due.
    Sys,
    /// Expired messages are dropped from offline queues and the retained store.
    ExpirySweep,
    /// A connection's refused CONNECT gets its CONNACK, after the login delay.
    Refusal(ConnId),
}

/// The timer table.
#[derive(Debug)]
pub(crate) struct Timers {
    /// Every timer, by instant.
    table: BTreeSet<(Instant, Timer)>,
    /// The connections of each tick in use.
    ticks: BTreeMap<u64, Vec<ConnId>>,
    /// The instant tick 0 stands for.
    epoch: Instant,
    /// When the next expiry sweep runs, if one is scheduled.
    sweep_at: Option<Instant>,
    /// When the last expiry sweep ran: sweeps are at least a second apart.
    last_sweep: Instant,
}

impl Timers {
    /// An empty table whose ticks count from `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            table: BTreeSet::new(),
            ticks: BTreeMap::new(),
            epoch: now,
            sweep_at: None,
            last_sweep: now,
        }
    }

    /// Sets `timer` for `at`.
    pub(crate) fn insert(&mut self, at: Instant, timer: Timer) {
        self.table.insert((at, timer));
    }

    /// Cancels `timer` set for `at`.
    pub(crate) fn remove(&mut self, at: Instant, timer: Timer) {
        self.table.remove(&(at, timer));
    }

    /// When the first timer is due: what `poll_timeout` reports.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.table.first().map(|&(at, _)| at)
    }

    /// Takes the first timer due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        let &(at, timer) = self.table.first()?;
        if at > now {
            return None;
        }
        self.table.remove(&(at, timer));
        Some((at, timer))
    }

    /// Arms connection `conn`'s check for `due`, in the first tick at or after it; returns
    /// the tick, which the connection keeps (an earlier arming becomes stale).
    pub(crate) fn arm(&mut self, conn: ConnId, due: Instant) -> u64 {
        let since = due.saturating_duration_since(self.epoch);
        let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        let tick = millis.div_ceil(TICK_MS).max(1);
        let bucket = self.ticks.entry(tick).or_default();
        if bucket.is_empty() {
            let at = self.epoch + Duration::from_millis(tick.saturating_mul(TICK_MS));
            self.table.insert((at, Timer::Tick(tick)));
        }
        bucket.push(conn);
        tick
    }

    /// The connections whose checks fall in `tick` (some may be stale).
    pub(crate) fn take_tick(&mut self, tick: u64) -> Vec<ConnId> {
        self.ticks.remove(&tick).unwrap_or_default()
    }

    /// Makes sure an expiry sweep runs by `at` (or a second after the last one, whichever is
    /// later), so that expired messages do not sit in offline queues or the retained store
    /// (`[MQTT-3.3.2-5]`).
    pub(crate) fn note_expiry(&mut self, at: Instant) {
        let at = at.max(self.last_sweep + SWEEP_SPACING);
        if self.sweep_at.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        if let Some(old) = self.sweep_at.replace(at) {
            self.table.remove(&(old, Timer::ExpirySweep));
        }
        self.table.insert((at, Timer::ExpirySweep));
    }

    /// A sweep starts at `now`: the next one is scheduled anew.
    pub(crate) const fn sweep_started(&mut self, now: Instant) {
        self.sweep_at = None;
        self.last_sweep = now;
    }
}
