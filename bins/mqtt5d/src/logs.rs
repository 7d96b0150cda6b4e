//! What keeps the log readable and bounded when clients misbehave: client-supplied strings
//! are clipped, and repeated refusals from one source are counted rather than written line by
//! line.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The most bytes of a client-supplied string (client identifier, user name, topic) a log
/// line shows.
pub(crate) const CLIP: usize = 128;

/// A client-supplied string as a log line shows it: whole up to [`CLIP`] bytes, otherwise
/// its first bytes (cut at a character boundary) and its length.
pub(crate) struct Clipped<'a>(pub(crate) &'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= CLIP {
            return f.write_str(self.0);
        }
        let mut end = CLIP;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        let head = self.0.get(..end).unwrap_or_default();
        write!(f, "{head}… ({} bytes)", self.0.len())
    }
}

/// What a rate-limited line should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it; `suppressed` similar lines were left out since the last one written.
    Write {
        /// Lines left out before this one.
        suppressed: u64,
    },
    /// Leave it out (it is counted).
    Suppress,
}

/// Per-source rate limiting of repeated log lines: at most `burst` lines per source in each
/// `window`; the rest are counted and the count is reported with the next line written.
#[derive(Debug)]
pub(crate) struct RateLimit {
    window: Duration,
    burst: u32,
    sources: HashMap<IpAddr, Source>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    since: Instant,
    written: u32,
    suppressed: u64,
}

/// The most sources tracked; past it, sources whose window has ended are forgotten (and, if
/// that is not enough, all of them).
const MAX_SOURCES: usize = 4096;

impl RateLimit {
    /// `burst` lines per source per `window`.
    pub(crate) fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            sources: HashMap::new(),
        }
    }

    /// Whether a line about `source` may be written at `now`.
    pub(crate) fn check(&mut self, now: Instant, source: IpAddr) -> Verdict {
        let source = mqtt5_broker::address_key(source);
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            let window = self.window;
            self.sources
                .retain(|_, s| now.saturating_duration_since(s.since) < window);
            if self.sources.len() >= MAX_SOURCES {
                self.sources.clear();
            }
        }
        let entry = self.sources.entry(source).or_insert(Source {
            since: now,
            written: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(entry.since) >= self.window {
            entry.since = now;
            entry.written = 0;
        }
        if entry.written >= self.burst {
            entry.suppressed += 1;
            return Verdict::Suppress;
        }
        entry.written += 1;
        let suppressed = core::mem::take(&mut entry.suppressed);
        Verdict::Write { suppressed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_shown_whole_and_long_ones_clipped_with_their_length() {
        assert_eq!(Clipped("sensor-1").to_string(), "sensor-1");
        let long = "x".repeat(70_000);
        let shown = Clipped(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(CLIP)));
        assert!(shown.ends_with("(70000 bytes)"), "{shown}");
        assert!(shown.len() < CLIP + 32);
        // Never cut inside a character.
        let wide = "é".repeat(100);
        let shown = Clipped(&wide).to_string();
        assert!(shown.starts_with(&"é".repeat(CLIP / 2)), "{shown}");
    }

    #[test]
    fn a_source_gets_its_burst_then_a_count() {
        let now = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(60), 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limit.check(now, a), Verdict::Write { suppressed: 0 });
        }
        for _ in 0..10 {
            assert_eq!(limit.check(now, a), Verdict::Suppress);
        }
        // Another source is not affected.
        assert_eq!(limit.check(now, b), Verdict::Write { suppressed: 0 });
        // The next window reports what was left out.
        let later = now + Duration::from_secs(61);
        assert_eq!(limit.check(later, a), Verdict::Write { suppressed: 10 });
        assert_eq!(limit.check(later, a), Verdict::Write { suppressed: 0 });
    }

    #[test]
    fn sources_stay_bounded() {
        let now = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(60), 1);
        for i in 0..(MAX_SOURCES as u32 * 2) {
            limit.check(now, IpAddr::from(i.to_be_bytes()));
        }
        assert!(limit.sources.len() <= MAX_SOURCES);
    }
}
