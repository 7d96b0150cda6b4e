//! Failed logins slow down: the refusal of a CONNECT whose credentials failed waits a delay
//! that grows with the recent failures of the client's address and of the user name.
//!
//! ```text
//!  failures in the last minute (address or user, whichever has more):  1      2      3   ...
//!  delay before the refusing CONNACK:                                  100ms  200ms  400ms ... ≤ max
//! ```
//!
//! A successful login clears its user's count (not its address's: one valid account must not
//! buy an address more guesses at others). IPv6 addresses count by their /64 prefix, which one
//! host usually holds whole. Both tables are bounded: when one is full, its oldest half goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The first delay.
const BASE_DELAY: Duration = Duration::from_millis(100);

/// How long a failure counts.
const WINDOW: Duration = Duration::from_secs(60);

/// The most addresses and user names each table tracks.
const MAX_ENTRIES: usize = 65_536;

/// Recent failures of one address or user name.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The failure tables.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    by_addr: HashMap<IpAddr, Failures>,
    by_user: HashMap<Box<str>, Failures>,
}

impl LoginThrottle {
    /// Records a failure and returns how long to wait before refusing, at most `max`.
    pub(crate) fn failed(
        &mut self,
        now: Instant,
        addr: Option<IpAddr>,
        user: Option<&str>,
        max: Duration,
    ) -> Duration {
        let mut count = 0;
        if let Some(addr) = addr {
            count = count.max(bump(&mut self.by_addr, address_key(addr), now));
        }
        if let Some(user) = user {
            let user: Box<str> = user.into();
            count = count.max(bump(&mut self.by_user, user, now));
        }
        if count == 0 || max.is_zero() {
            return Duration::ZERO;
        }
        let doublings = (count - 1).min(20);
        BASE_DELAY.saturating_mul(1 << doublings).min(max)
    }

    /// A successful login of `user`: its count starts again.
    pub(crate) fn succeeded(&mut self, user: &str) {
        self.by_user.remove(user);
    }

    /// How many addresses and user names are tracked.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.by_addr.len(), self.by_user.len())
    }
}

/// The key under which the broker counts a client's address: IPv4 addresses whole (IPv4
/// addresses mapped into IPv6 as IPv4), other IPv6 addresses by their /64 prefix, which one
/// host usually holds whole.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Counts one failure of `key` and returns its count in the window.
fn bump<K: std::hash::Hash + Eq>(table: &mut HashMap<K, Failures>, key: K, now: Instant) -> u32 {
    if table.len() >= MAX_ENTRIES && !table.contains_key(&key) {
        evict(table, now);
    }
    let entry = table.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    if now.saturating_duration_since(entry.last) > WINDOW {
        entry.count = 0;
    }
    entry.count = entry.count.saturating_add(1);
    entry.last = now;
    entry.count
}

/// Makes room: entries out of the window go, then the older half of the rest.
fn evict<K: std::hash::Hash + Eq>(table: &mut HashMap<K, Failures>, now: Instant) {
    table.retain(|_, f| now.saturating_duration_since(f.last) <= WINDOW);
    if table.len() < MAX_ENTRIES {
        return;
    }
    let mut times: Vec<Instant> = table.values().map(|f| f.last).collect();
    let middle = times.len() / 2;
    let (_, &mut cut, _) = times.select_nth_unstable(middle);
    table.retain(|_, f| f.last > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(5);

    fn start() -> Instant {
        #[allow(clippy::disallowed_methods, reason = "a start for the virtual clock")]
        Instant::now()
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_maximum() {
        let mut t = LoginThrottle::default();
        let now = start();
        let addr = Some("192.0.2.1".parse().unwrap());
        let delays: Vec<u128> = (0..8)
            .map(|_| t.failed(now, addr, None, MAX).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn the_user_and_the_address_each_count() {
        let mut t = LoginThrottle::default();
        let now = start();
        // Many addresses against one user: the user's count grows.
        for i in 0..4u8 {
            let addr = Some(IpAddr::from([198, 51, 100, i]));
            t.failed(now, addr, Some("alice"), MAX);
        }
        let fifth = t.failed(
            now,
            Some("198.51.100.9".parse().unwrap()),
            Some("alice"),
            MAX,
        );
        assert_eq!(fifth, Duration::from_millis(1600));
        // Another user from a fresh address starts at the bottom.
        let other = t.failed(now, Some("203.0.113.1".parse().unwrap()), Some("bob"), MAX);
        assert_eq!(other, BASE_DELAY);
    }

    #[test]
    fn success_clears_the_user_not_the_address() {
        let mut t = LoginThrottle::default();
        let now = start();
        let addr = Some("192.0.2.7".parse().unwrap());
        for _ in 0..3 {
            t.failed(now, addr, Some("alice"), MAX);
        }
        t.succeeded("alice");
        // The address still has three failures: the fourth waits 800 ms.
        assert_eq!(
            t.failed(now, addr, Some("alice"), MAX),
            Duration::from_millis(800)
        );
        // From another address, alice starts again.
        assert_eq!(
            t.failed(now, Some("192.0.2.8".parse().unwrap()), Some("alice"), MAX),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut t = LoginThrottle::default();
        let now = start();
        let addr = Some("192.0.2.1".parse().unwrap());
        for _ in 0..5 {
            t.failed(now, addr, None, MAX);
        }
        let later = now + WINDOW + Duration::from_secs(1);
        assert_eq!(t.failed(later, addr, None, MAX), BASE_DELAY);
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        let mut t = LoginThrottle::default();
        let now = start();
        t.failed(now, Some("2001:db8::1".parse().unwrap()), None, MAX);
        let same_64 = t.failed(now, Some("2001:db8::ffff:1".parse().unwrap()), None, MAX);
        assert_eq!(same_64, Duration::from_millis(200));
        let other_64 = t.failed(now, Some("2001:db8:0:1::1".parse().unwrap()), None, MAX);
        assert_eq!(other_64, BASE_DELAY);
    }

    #[test]
    fn zero_maximum_turns_the_delay_off() {
        let mut t = LoginThrottle::default();
        let addr = Some("192.0.2.1".parse().unwrap());
        assert_eq!(
            t.failed(start(), addr, None, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn tables_stay_bounded() {
        let mut t = LoginThrottle::default();
        let now = start();
        for i in 0..(MAX_ENTRIES as u32 + 1000) {
            let addr = IpAddr::from(i.to_be_bytes());
            t.failed(
                now + Duration::from_micros(u64::from(i)),
                Some(addr),
                None,
                MAX,
            );
        }
        let (addrs, users) = t.len();
        assert!(addrs <= MAX_ENTRIES, "{addrs}");
        assert_eq!(users, 0);
    }
}
