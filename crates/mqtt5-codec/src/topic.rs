//! Topic names and topic filters (MQTT 5 §4.7), and shared subscriptions (§4.8.2).

use bytes::Bytes;

use crate::error::TopicError;
use crate::{Error, MqttString};

/// A topic name: an [`MqttString`] with no `+` or `#` (`[MQTT-4.7.0-1]`, `[MQTT-3.3.2-2]`).
///
/// It is never empty, except in a PUBLISH whose topic travels as a Topic Alias
/// (MQTT 5 §3.3.2.3.4); [`TopicName::empty`] builds that one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicName(MqttString);

impl TopicName {
    /// The empty topic name of a PUBLISH that uses a Topic Alias.
    pub const fn empty() -> Self {
        Self(MqttString::empty())
    }

    /// Validates a string as a non-empty topic name.
    ///
    /// # Errors
    /// [`Error::InvalidTopicName`] when empty or holding a wildcard.
    pub fn new(s: MqttString) -> Result<Self, Error> {
        check_name(s.as_bytes()).map_err(Error::InvalidTopicName)?;
        Ok(Self(s))
    }

    /// Validates bytes as a UTF-8 string and a non-empty topic name, without copying.
    ///
    /// # Errors
    /// As [`MqttString::from_bytes`] and [`TopicName::new`].
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        let name = Self::from_bytes_allow_empty(bytes)?;
        if name.is_empty() {
            return Err(Error::InvalidTopicName(TopicError::Empty));
        }
        Ok(name)
    }

    /// Like [`TopicName::from_bytes`], but an empty name is allowed (the caller checks it).
    /// UTF-8, U+0000 and wildcards are checked in one pass over the bytes.
    pub(crate) fn from_bytes_allow_empty(bytes: Bytes) -> Result<Self, Error> {
        let (s, wildcard) = MqttString::from_bytes_scanned(bytes, false)?;
        if wildcard {
            return Err(Error::InvalidTopicName(TopicError::Wildcard));
        }
        Ok(Self(s))
    }

    /// Reads a will topic (a non-empty topic name) from the bytes of a CONNECT, without
    /// copying; with `reject_disallowed` a Disallowed Unicode code point is
    /// [`Error::DisallowedCodePoint`].
    pub(crate) fn read_will_topic(bytes: Bytes, reject_disallowed: bool) -> Result<Self, Error> {
        let (s, wildcard) = MqttString::from_bytes_scanned(bytes, reject_disallowed)?;
        if s.is_empty() {
            return Err(Error::InvalidTopicName(TopicError::Empty));
        }
        if wildcard {
            return Err(Error::InvalidTopicName(TopicError::Wildcard));
        }
        Ok(Self(s))
    }

    /// The name as `&str`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The underlying string.
    pub const fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    /// True only for the empty name of an aliased PUBLISH.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Copies the name into its own allocation.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self(self.0.detach())
    }
}

impl TryFrom<&str> for TopicName {
    type Error = Error;

    /// # Errors
    /// As [`TopicName::new`].
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(MqttString::try_from(s)?)
    }
}

impl core::ops::Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl core::fmt::Debug for TopicName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for TopicName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic filter: levels of text, `+` filling a whole level, and `#` alone as the last level
/// (`[MQTT-4.7.1-1]`, `[MQTT-4.7.1-2]`), or a shared subscription
/// `$share/{ShareName}/{filter}` (`[MQTT-4.8.2-1]`, `[MQTT-4.8.2-2]`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter(MqttString);

/// The prefix of a shared subscription.
const SHARE_PREFIX: &[u8] = b"$share/";

impl TopicFilter {
    /// Validates a string as a topic filter.
    ///
    /// # Errors
    /// [`Error::InvalidTopicFilter`] naming the broken rule.
    pub fn new(s: MqttString) -> Result<Self, Error> {
        check_filter(s.as_bytes()).map_err(Error::InvalidTopicFilter)?;
        Ok(Self(s))
    }

    /// Validates bytes as a UTF-8 string and a topic filter, without copying.
    ///
    /// # Errors
    /// As [`MqttString::from_bytes`] and [`TopicFilter::new`].
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        let (s, wildcard) = MqttString::from_bytes_scanned(bytes, false)?;
        // A non-empty filter with no wildcard and no share prefix is one or more plain levels,
        // always valid; only the others need the level-by-level check.
        if wildcard || s.is_empty() || s.as_bytes().starts_with(SHARE_PREFIX) {
            return Self::new(s);
        }
        Ok(Self(s))
    }

    /// Reads a filter from a packet: validated in the frame, then copied (the receiver keeps
    /// it in its subscription tree; see the crate docs). With `reject_disallowed`, a
    /// Disallowed Unicode code point is [`Error::DisallowedCodePoint`].
    pub(crate) fn read(
        r: &mut crate::wire::Reader,
        reject_disallowed: bool,
    ) -> Result<Self, Error> {
        if reject_disallowed {
            Self::read_with::<true>(r)
        } else {
            Self::read_with::<false>(r)
        }
    }

    /// [`TopicFilter::read`], with the Disallowed Unicode code points rejected when `REJECT`
    /// is true: a constant, so that a decoder that accepts them pays nothing for the check.
    #[inline(always)]
    fn read_with<const REJECT: bool>(r: &mut crate::wire::Reader) -> Result<Self, Error> {
        let bytes = r.binary_borrow()?;
        if quick_filter::<REJECT>(bytes) {
            // SAFETY: `quick_filter` accepts only bytes below 0x80, and ASCII is well-formed
            // UTF-8. Validating again would cost more than the rest of the filter's checks.
            #[allow(unsafe_code, reason = "audited: quick_filter proved the bytes ASCII")]
            let s = unsafe { core::str::from_utf8_unchecked(bytes) };
            return Ok(Self(MqttString::copy_of(s)));
        }
        let (s, wildcard) = crate::string::check_str_with::<REJECT>(bytes)?;
        // A non-empty filter with no wildcard and no share prefix is one or more plain levels,
        // always valid; only the others need the level-by-level check.
        if wildcard || s.is_empty() || s.as_bytes().starts_with(SHARE_PREFIX) {
            check_filter(s.as_bytes()).map_err(Error::InvalidTopicFilter)?;
        }
        Ok(Self(MqttString::copy_of(s)))
    }

    /// The whole filter as `&str`, `$share/…` prefix included.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The underlying string.
    pub const fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    /// The share name of a shared subscription, `None` for an ordinary filter.
    pub fn share_name(&self) -> Option<&str> {
        let rest = self.as_str().strip_prefix("$share/")?;
        rest.split_once('/').map(|(name, _)| name)
    }

    /// The filter that messages are matched against: without the `$share/{ShareName}/` prefix.
    pub fn topic_filter(&self) -> &str {
        let s = self.as_str();
        match s
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((_, filter)) => filter,
            None => s,
        }
    }

    /// True for a shared subscription (`$share/…`).
    pub fn is_shared(&self) -> bool {
        self.as_bytes_inner().starts_with(SHARE_PREFIX)
    }

    /// True when the matching filter holds `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.topic_filter().bytes().any(|b| b == b'+' || b == b'#')
    }

    fn as_bytes_inner(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Copies the filter into its own allocation.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self(self.0.detach())
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = Error;

    /// # Errors
    /// As [`TopicFilter::new`].
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(MqttString::try_from(s)?)
    }
}

impl core::ops::Deref for TopicFilter {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl core::fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a non-empty topic name for wildcards.
/// Validates the bytes of a PUBLISH Topic Name in place: an MQTT string with no wildcard,
/// possibly empty (the caller checks an empty name against the Topic Alias).
/// With `reject_disallowed`, a Disallowed Unicode code point is [`Error::DisallowedCodePoint`]:
/// found by the same scan for ASCII names.
#[inline(always)]
pub(crate) fn check_topic_bytes(bytes: &[u8], reject_disallowed: bool) -> Result<(), Error> {
    if crate::string::check_text(bytes, reject_disallowed)? {
        return Err(Error::InvalidTopicName(TopicError::Wildcard));
    }
    Ok(())
}

pub(crate) fn check_name(bytes: &[u8]) -> Result<(), TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// Checks the syntax of a topic filter, shared or not.
pub(crate) fn check_filter(bytes: &[u8]) -> Result<(), TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if let Some(rest) = bytes.strip_prefix(SHARE_PREFIX) {
        let Some(slash) = rest.iter().position(|&b| b == b'/') else {
            // `$share/name` with no filter after it, or `$share/` alone.
            return Err(if rest.is_empty() {
                TopicError::EmptyShareName
            } else {
                TopicError::InvalidShareName
            });
        };
        let (name, filter) = rest.split_at(slash);
        if name.is_empty() {
            return Err(TopicError::EmptyShareName);
        }
        if name.iter().any(|&b| b == b'+' || b == b'#') {
            return Err(TopicError::InvalidShareName);
        }
        // `filter` still starts with the separating '/'.
        let filter = filter.get(1..).unwrap_or_default();
        if filter.is_empty() {
            return Err(TopicError::InvalidShareName);
        }
        return check_plain_filter(filter);
    }
    check_plain_filter(bytes)
}

fn check_plain_filter(bytes: &[u8]) -> Result<(), TopicError> {
    // Only wildcard bytes need a look at their neighbours: `+` must fill its level
    // (`[MQTT-4.7.1-2]`), `#` must fill the last level (`[MQTT-4.7.1-1]`). The first bad
    // wildcard lies in the first bad level, which is reported as a `#` error if it holds a `#`
    // anywhere, as a `+` error otherwise.
    let check = |i: usize, b: u8| -> Result<(), TopicError> {
        let prev = i.checked_sub(1).and_then(|p| bytes.get(p).copied());
        let next = bytes.get(i + 1).copied();
        let fills_level = prev.is_none_or(|p| p == b'/') && next.is_none_or(|n| n == b'/');
        if b == b'#' && !(fills_level && next.is_none()) {
            return Err(TopicError::MultiLevelWildcard);
        }
        if b == b'+' && !fills_level {
            // Earlier bytes of this level hold no `#`: it would have been reported first.
            let rest = bytes.get(i..).unwrap_or_default();
            let level = rest.split(|&c| c == b'/').next().unwrap_or_default();
            return Err(if level.contains(&b'#') {
                TopicError::MultiLevelWildcard
            } else {
                TopicError::SingleLevelWildcard
            });
        }
        Ok(())
    };
    let mut from = 0;
    while let Some(rest) = bytes.get(from..) {
        let Some(offset) = rest.iter().position(|&b| b == b'+' || b == b'#') else {
            break;
        };
        let i = from + offset;
        check(i, rest.get(offset).copied().unwrap_or_default())?;
        from = i + 1;
    }
    Ok(())
}

/// One pass that accepts most valid filters: non-empty, not shared, at most 62 bytes, ASCII
/// with no U+0000 (and with `CONTROLS`, no other control character: the ASCII Disallowed
/// Unicode code points), and each `+` with a `/` or the start before it and a `/`
/// or the end after it, each `#` with a `/` or the start before it and the end after it
/// (`[MQTT-4.7.1-1]`, `[MQTT-4.7.1-2]`). `false` means "invalid, or not the common case": the
/// full check then runs and names the broken rule.
fn quick_filter<const CONTROLS: bool>(bytes: &[u8]) -> bool {
    if bytes.is_empty() || bytes.starts_with(SHARE_PREFIX) {
        return false;
    }
    match bytes.len() {
        0..=14 => lanes_fit::<16, 18, CONTROLS>(bytes),
        15..=30 => lanes_fit::<32, 34, CONTROLS>(bytes),
        31..=62 => lanes_fit::<64, 66, CONTROLS>(bytes),
        _ => false,
    }
}

/// The filter is copied into `B = L + 2` bytes, between a `/` that stands for the start and
/// zeros that stand for the end. Each of the `L` lanes looks at one byte and its two
/// neighbours with no branch, so the loop compiles to vector compares. A U+0000 inside the
/// filter shows as one zero more than the padding holds. With `CONTROLS`, a control character
/// (U+0001..U+001F, U+007F) fails it too.
#[inline(always)]
fn lanes_fit<const L: usize, const B: usize, const CONTROLS: bool>(bytes: &[u8]) -> bool {
    let mut buf = [0u8; B];
    let Some(dst) = buf.get_mut(1..=bytes.len()) else {
        return false;
    };
    dst.copy_from_slice(bytes);
    if let Some(first) = buf.first_mut() {
        *first = b'/';
    }
    let (mut high, mut bad, mut zeros, mut controls) = (0u8, 0u8, 0u8, 0u8);
    #[allow(
        clippy::indexing_slicing,
        reason = "i + 2 < L + 2 = B indexes an array of length B"
    )]
    for i in 0..L {
        let (p, c, n) = (buf[i], buf[i + 1], buf[i + 2]);
        high |= c;
        zeros += u8::from(c == 0);
        if CONTROLS {
            // The padding's zeros wrap to 0xFF: only 0x01..=0x1F fall below 0x1F.
            controls |= u8::from(c.wrapping_sub(1) < 0x1F) | u8::from(c == 0x7F);
        }
        let after_sep = p == b'/';
        let plus_ok = after_sep & ((n == b'/') | (n == 0));
        let hash_ok = after_sep & (n == 0);
        bad |= u8::from(((c == b'+') & !plus_ok) | ((c == b'#') & !hash_ok));
    }
    high < 0x80 && bad == 0 && controls == 0 && usize::from(zeros) == L - bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_rules() {
        for ok in [
            "a",
            "/",
            "a/b",
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/#",
            "$SYS/#",
            "$share/g/a/#",
            "$share/g/#",
            "$share/g//",
            "a//b",
            "$share",
            "$sharex/a",
        ] {
            assert_eq!(check_filter(ok.as_bytes()), Ok(()), "{ok}");
        }
        for (bad, err) in [
            ("", TopicError::Empty),
            ("a/b#", TopicError::MultiLevelWildcard),
            ("#/a", TopicError::MultiLevelWildcard),
            ("a/#/", TopicError::MultiLevelWildcard),
            ("a+", TopicError::SingleLevelWildcard),
            ("a/+b/c", TopicError::SingleLevelWildcard),
            ("$share/", TopicError::EmptyShareName),
            ("$share//a", TopicError::EmptyShareName),
            ("$share/g", TopicError::InvalidShareName),
            ("$share/g/", TopicError::InvalidShareName),
            ("$share/g+/a", TopicError::InvalidShareName),
            ("$share/#/a", TopicError::InvalidShareName),
            ("$share/g/a#", TopicError::MultiLevelWildcard),
        ] {
            assert_eq!(check_filter(bad.as_bytes()), Err(err), "{bad}");
        }
    }

    #[test]
    fn shared_filter_parts() {
        let f = TopicFilter::try_from("$share/group/a/+/c").unwrap();
        assert!(f.is_shared());
        assert_eq!(f.share_name(), Some("group"));
        assert_eq!(f.topic_filter(), "a/+/c");
        assert!(f.has_wildcards());
        let f = TopicFilter::try_from("a/b").unwrap();
        assert!(!f.is_shared());
        assert_eq!(f.share_name(), None);
        assert_eq!(f.topic_filter(), "a/b");
        assert!(!f.has_wildcards());
    }

    #[test]
    fn topic_name_rules() {
        assert_eq!(check_name(b"a/b"), Ok(()));
        assert_eq!(check_name(b""), Err(TopicError::Empty));
        assert_eq!(check_name(b"a/+"), Err(TopicError::Wildcard));
        assert_eq!(check_name(b"a/#"), Err(TopicError::Wildcard));
    }

    /// The rules as the specification words them, level by level, as a reference.
    fn check_plain_filter_by_levels(bytes: &[u8]) -> Result<(), TopicError> {
        let mut levels = bytes.split(|&b| b == b'/').peekable();
        while let Some(level) = levels.next() {
            if level.contains(&b'#') && (level != b"#" || levels.peek().is_some()) {
                return Err(TopicError::MultiLevelWildcard);
            }
            if level.contains(&b'+') && level != b"+" {
                return Err(TopicError::SingleLevelWildcard);
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// The one-pass check gives the same verdict and the same error as the reference on
        /// filters made of the characters that matter.
        #[test]
        fn plain_filter_matches_level_rules(
            filter in proptest::collection::vec(
                proptest::sample::select(vec![b'/', b'+', b'#', b'a', b'b']),
                1..30,
            )
        ) {
            proptest::prop_assert_eq!(
                check_plain_filter(&filter),
                check_plain_filter_by_levels(&filter)
            );
        }

        /// The quick pass never accepts what the full check rejects, and it accepts every
        /// valid, short, unshared ASCII filter, so the full check is only the slow path.
        /// Lengths cover each lane width and the fall-back beyond 62 bytes.
        /// With the Disallowed Unicode code points rejected, likewise.
        #[test]
        fn quick_filter_agrees_with_full_check(
            filter in proptest::collection::vec(
                proptest::prop_oneof![
                    12 => proptest::sample::select(vec![b'/', b'+', b'#', b'a']),
                    1 => proptest::sample::select(vec![0, 0x01, 0x1F, 0x7F, 0x80, 0xC3, 0xA9]),
                ],
                0..70,
            ),
            shared in proptest::bool::ANY,
            strict in proptest::bool::ANY,
        ) {
            let bytes = if shared { [SHARE_PREFIX, &filter[..]].concat() } else { filter };
            let full = crate::string::check_str(&bytes, strict).is_ok()
                && check_filter(&bytes).is_ok();
            let quick = if strict {
                quick_filter::<true>(&bytes)
            } else {
                quick_filter::<false>(&bytes)
            };
            if quick {
                proptest::prop_assert!(full, "quick pass accepted {:?}", bytes);
            }
            let common = !shared && bytes.len() <= 62 && bytes.is_ascii();
            if full && common {
                proptest::prop_assert!(quick, "quick pass missed {:?}", bytes);
            }
        }
    }
}
