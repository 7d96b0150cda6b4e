//! UTF-8 Encoded Strings (MQTT 5 §1.5.4) and string pairs (§1.5.7).

use bytes::Bytes;

use crate::Error;
use crate::wire::{Reader, Sink};

/// A validated MQTT UTF-8 string: well-formed UTF-8, no U+0000, at most 65,535 bytes.
///
/// Decoded will topics are zero-copy views of their frame; other decoded strings own a copy
/// (see the crate docs). Surrogate code points cannot
/// occur in well-formed UTF-8, so `[MQTT-1.5.4-1]` holds by construction; U+FEFF is kept
/// as it is `[MQTT-1.5.4-3]`. The "Disallowed Unicode code points" of §1.5.4 (controls and
/// non-characters) are a SHOULD NOT that a receiver MAY treat as malformed: an `MqttString`
/// may hold them, and a [`Decoder`](crate::Decoder) accepts them unless it is told to reject
/// them ([`Decoder::reject_disallowed_code_points`](crate::Decoder::reject_disallowed_code_points)).
///
/// Equality, ordering and hashing are those of the bytes, which for UTF-8 agree with those of
/// the text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MqttString(
    /// Well-formed UTF-8: every constructor proves it, and `Bytes` never changes.
    Bytes,
);

impl MqttString {
    /// The largest string MQTT can carry, in bytes.
    pub const MAX_LEN: usize = 65_535;

    /// An empty string.
    pub const fn empty() -> Self {
        Self(Bytes::new())
    }

    /// Validates `bytes` as an MQTT string without copying.
    ///
    /// # Errors
    /// [`Error::InvalidUtf8`], [`Error::NullCharacter`], or [`Error::StringTooLong`] when
    /// longer than 65,535 bytes (no length prefix could describe it).
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        Self::from_bytes_scanned(bytes, false).map(|(s, _)| s)
    }

    /// As [`MqttString::from_bytes`], and also reports whether the string holds a `+` or `#`,
    /// found in the same pass that looks for U+0000, so a topic name costs one scan. With
    /// `reject_disallowed`, a Disallowed Unicode code point is [`Error::DisallowedCodePoint`].
    pub(crate) fn from_bytes_scanned(
        bytes: Bytes,
        reject_disallowed: bool,
    ) -> Result<(Self, bool), Error> {
        if bytes.len() > Self::MAX_LEN {
            return Err(Error::StringTooLong(bytes.len()));
        }
        let wildcard = check_text(&bytes, reject_disallowed)?;
        Ok((Self(bytes), wildcard))
    }

    /// The string as `&str`.
    #[allow(
        unsafe_code,
        reason = "audited: every constructor proves the bytes UTF-8"
    )]
    pub fn as_str(&self) -> &str {
        // SAFETY: the bytes are well-formed UTF-8. `from_bytes_scanned` checks them (an ASCII
        // scan, or `str::from_utf8`), `copy_of` and `detach` copy a `&str`, `empty` is empty,
        // and no method changes them (`Bytes` is immutable; the field is private).
        unsafe { core::str::from_utf8_unchecked(&self.0) }
    }

    /// The string's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes (a slice of the decoded frame, or its own allocation).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Copies the string into its own allocation, so it no longer pins the frame it came from.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// Reads a string into its own allocation: strings other than topic names are short and
    /// usually kept, so a copy beats a slice that pins the frame (see the crate docs).
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Error> {
        let (s, _) = check_str(r.binary_borrow()?, false)?;
        Ok(Self::copy_of(s))
    }

    /// Reads a client identifier or a user name: as [`MqttString::read`], and with
    /// `reject_disallowed` a Disallowed Unicode code point is
    /// [`Error::DisallowedCodePoint`].
    pub(crate) fn read_name(r: &mut Reader, reject_disallowed: bool) -> Result<Self, Error> {
        let (s, _) = check_str(r.binary_borrow()?, reject_disallowed)?;
        Ok(Self::copy_of(s))
    }

    /// A copy of `s`, which the caller has checked with [`check_str`].
    #[inline]
    pub(crate) fn copy_of(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        s.put_binary(self.as_bytes());
    }
}

/// Validates `bytes` as the content of an MQTT string without building one: well-formed
/// UTF-8, then no U+0000, then (with `reject_disallowed`) no Disallowed Unicode code point,
/// in that order of precedence (as [`MqttString::from_bytes`]). Returns whether the string
/// holds a `+` or `#`.
#[inline(always)]
pub(crate) fn check_text(bytes: &[u8], reject_disallowed: bool) -> Result<bool, Error> {
    check_str(bytes, reject_disallowed).map(|(_, wildcard)| wildcard)
}

/// As [`check_text`], and also views the validated bytes as `&str`.
#[inline(always)]
pub(crate) fn check_str(bytes: &[u8], reject_disallowed: bool) -> Result<(&str, bool), Error> {
    if reject_disallowed {
        check_str_with::<true>(bytes)
    } else {
        check_str_with::<false>(bytes)
    }
}

/// [`check_str`], with the Disallowed Unicode code points rejected when `REJECT` is true: a
/// constant, so that a decoder that accepts them pays nothing for the check.
///
/// ASCII, the common case on the decoder's hottest path (every topic, every property string),
/// is settled by one scan: ASCII is well-formed UTF-8, and the scan flags U+0000 (and with
/// `REJECT` the other ASCII control characters). Anything else takes the slow path, where
/// each check is exact.
#[inline(always)]
pub(crate) fn check_str_with<const REJECT: bool>(bytes: &[u8]) -> Result<(&str, bool), Error> {
    let scan = Scan::of::<REJECT>(bytes);
    if scan.ascii && !scan.flagged {
        // SAFETY: every byte is below 0x80 (checked by `Scan::of` just above), and ASCII is
        // well-formed UTF-8; validating again would repeat the scan.
        #[allow(unsafe_code, reason = "audited: the bytes were just proven ASCII")]
        let s = unsafe { core::str::from_utf8_unchecked(bytes) };
        return Ok((s, scan.wildcard));
    }
    let s = core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)?;
    // Without `REJECT`, the flag is exactly "some byte is 0"; with it, it may be set for
    // other bytes too, so look.
    if scan.flagged && (!REJECT || bytes.contains(&0)) {
        return Err(Error::NullCharacter);
    }
    if REJECT && disallowed(bytes) {
        return Err(Error::DisallowedCodePoint);
    }
    Ok((s, scan.wildcard))
}

/// Whether well-formed UTF-8 `bytes` with no U+0000 encode a Disallowed Unicode code point
/// (MQTT 5 §1.5.4): an ASCII control character (U+0001..U+001F, U+007F), a C1 control
/// (U+0080..U+009F, `C2 80`..`C2 9F`), one of the non-characters U+FDD0..U+FDEF
/// (`EF B7 90`..`EF B7 AF`), or a code point ending in FFFE or FFFF (`EF BF BE`, `EF BF BF`,
/// and `F0`..`F4` `xF BF BE|BF` in the other planes). Only lead bytes can match: a
/// continuation byte is never below 0x80, nor `C2`, `EF` or `F0`..`F4`.
fn disallowed(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some((&lead, tail)) = rest.split_first() {
        let hit = match lead {
            0x01..=0x1F | 0x7F => true,
            0xC2 => matches!(tail.first(), Some(0x80..=0x9F)),
            0xEF => matches!(
                tail.first_chunk::<2>(),
                Some([0xB7, 0x90..=0xAF] | [0xBF, 0xBE | 0xBF])
            ),
            0xF0..=0xF4 => matches!(
                tail.first_chunk::<3>(),
                Some([second, 0xBF, 0xBE | 0xBF]) if second & 0x0F == 0x0F
            ),
            _ => false,
        };
        if hit {
            return true;
        }
        rest = tail;
    }
    false
}

/// What one pass over a string's bytes found.
struct Scan {
    /// Every byte is below 0x80.
    ascii: bool,
    /// Some byte is 0 (U+0000). When the scan also looks for control characters, some byte
    /// `b` has `(b + 1) & 0x7F` below 0x21 instead: 0x00..=0x1F and 0x7F (exactly those, in
    /// ASCII), and a few bytes above 0x7F, which only a string that is not ASCII holds.
    flagged: bool,
    /// Some byte is `+` or `#`.
    wildcard: bool,
}

impl Scan {
    /// Scans sixteen bytes at a time. The lane-wise loop body has no branches, so the compiler
    /// turns it into vector compares; the tail is one more block: the string's last sixteen
    /// bytes when it has that many (re-reading some is harmless, results are ORed), else the
    /// tail padded with a byte that matches nothing. With `CONTROL`, the lane that looks for
    /// U+0000 flags the ASCII control characters as well, at the cost of two more operations
    /// per vector (see [`Scan::flagged`]).
    #[inline]
    fn of<const CONTROL: bool>(bytes: &[u8]) -> Self {
        const N: usize = 16;
        let mut high = [0u8; N];
        let mut flag = [0u8; N];
        let mut wild = [0u8; N];
        #[allow(clippy::indexing_slicing, reason = "i < N indexes arrays of length N")]
        let mut block = |b: &[u8; N]| {
            for i in 0..N {
                let c = b[i];
                high[i] |= c;
                flag[i] |= if CONTROL {
                    u8::from((c.wrapping_add(1) & 0x7F) < 0x21)
                } else {
                    u8::from(c == 0)
                };
                wild[i] |= u8::from(c == b'+') | u8::from(c == b'#');
            }
        };
        let mut chunks = bytes.chunks_exact(N);
        for chunk in &mut chunks {
            if let Ok(b) = <&[u8; N]>::try_from(chunk) {
                block(b);
            }
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut padded = [b'a'; N];
            if let Some(last) = bytes.last_chunk::<N>() {
                padded = *last;
            } else if let Some(dst) = padded.get_mut(..tail.len()) {
                dst.copy_from_slice(tail);
            }
            block(&padded);
        }
        Self {
            ascii: u128::from_ne_bytes(high) & u128::from_ne_bytes([0x80; N]) == 0,
            flagged: u128::from_ne_bytes(flag) != 0,
            wildcard: u128::from_ne_bytes(wild) != 0,
        }
    }
}

impl TryFrom<&str> for MqttString {
    type Error = Error;

    /// # Errors
    /// [`Error::NullCharacter`], or [`Error::StringTooLong`] when over 65,535 bytes.
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for MqttString {
    type Error = Error;

    /// # Errors
    /// [`Error::NullCharacter`], or [`Error::StringTooLong`] when over 65,535 bytes.
    fn try_from(s: String) -> Result<Self, Error> {
        Self::from_bytes(Bytes::from(s))
    }
}

impl core::ops::Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl core::fmt::Debug for MqttString {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for MqttString {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A User Property (MQTT 5 §3.1.2.11.8): a name and a value, sent in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The property's name.
    pub name: MqttString,
    /// The property's value.
    pub value: MqttString,
}

impl UserProperty {
    /// A user property from two strings.
    ///
    /// # Errors
    /// As for [`MqttString`]: U+0000 or over 65,535 bytes.
    pub fn new(name: &str, value: &str) -> Result<Self, Error> {
        Ok(Self {
            name: MqttString::try_from(name)?,
            value: MqttString::try_from(value)?,
        })
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self, Error> {
        let name = MqttString::read(r)?;
        let value = MqttString::read(r)?;
        Ok(Self { name, value })
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        self.name.write(s);
        self.value.write(s);
    }

    /// Copies both strings into their own allocations.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self {
            name: self.name.detach(),
            value: self.value.detach(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Scan, check_str};
    use crate::Error;

    /// A Disallowed Unicode code point of MQTT 5 §1.5.4, by its definition.
    fn is_disallowed(c: char) -> bool {
        let c = u32::from(c);
        matches!(c, 0x01..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF) || c & 0xFFFE == 0xFFFE
    }

    /// Characters around every edge of the disallowed ranges, and some ordinary ones.
    fn edge_char() -> impl Strategy<Value = char> {
        let edges = [
            0x00, 0x01, 0x1F, 0x20, 0x7E, 0x7F, 0x80, 0x9F, 0xA0, 0xFDCF, 0xFDD0, 0xFDEF, 0xFDF0,
            0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x1_0000, 0x1_FFFD, 0x1_FFFE, 0x1_FFFF, 0x2_0000,
            0xE_FFFF, 0x10_FFFD, 0x10_FFFE, 0x10_FFFF,
        ];
        prop_oneof![
            proptest::sample::select(edges.to_vec()).prop_filter_map("a char", char::from_u32),
            any::<char>(),
            proptest::char::range('a', 'z'),
        ]
    }

    proptest! {
        /// The word-at-a-time scan agrees with a byte-by-byte one on any input, with the
        /// interesting bytes made common.
        #[test]
        fn scan_matches_naive(bytes in proptest::collection::vec(
            prop_oneof![
                Just(0u8), Just(0x01), Just(0x1F), Just(0x20), Just(0x7F), Just(b'+'), Just(b'#'),
                Just(0x80), Just(0x9F), Just(0xA0), Just(0xFF), any::<u8>(),
            ],
            0..40,
        )) {
            let scan = Scan::of::<false>(&bytes);
            prop_assert_eq!(scan.ascii, bytes.iter().all(|&b| b < 0x80));
            prop_assert_eq!(scan.flagged, bytes.contains(&0));
            prop_assert_eq!(scan.wildcard, bytes.iter().any(|&b| b == b'+' || b == b'#'));
            let strict = Scan::of::<true>(&bytes);
            prop_assert_eq!((strict.ascii, strict.wildcard), (scan.ascii, scan.wildcard));
            // Every ASCII control character and DEL, and among ASCII bytes nothing else.
            let control = |b: u8| b < 0x20 || b == 0x7F;
            prop_assert!(!bytes.iter().any(|&b| control(b)) || strict.flagged);
            if strict.ascii {
                prop_assert_eq!(strict.flagged, bytes.iter().any(|&b| control(b)));
            }
        }

        /// With the check on, a string is refused exactly when it holds a Disallowed Unicode
        /// code point (U+0000 aside, which is an error of its own); with it off, never for
        /// that.
        #[test]
        fn disallowed_code_points_match_their_definition(
            chars in proptest::collection::vec(edge_char(), 0..24),
        ) {
            let s: String = chars.iter().collect();
            let strict = check_str(s.as_bytes(), true);
            let lenient = check_str(s.as_bytes(), false);
            if s.contains('\0') {
                prop_assert_eq!(strict.err(), Some(Error::NullCharacter));
                prop_assert_eq!(lenient.err(), Some(Error::NullCharacter));
            } else if s.chars().any(is_disallowed) {
                prop_assert_eq!(strict.err(), Some(Error::DisallowedCodePoint));
                prop_assert!(lenient.is_ok());
            } else {
                prop_assert_eq!(strict.map(|(t, _)| t), Ok(s.as_str()));
                prop_assert!(lenient.is_ok());
            }
        }
    }

    #[test]
    fn disallowed_code_points_at_the_edges_of_their_ranges() {
        for (c, disallowed) in [
            ('\u{1}', true),
            ('\u{1f}', true),
            (' ', false),
            ('~', false),
            ('\u{7f}', true),
            ('\u{80}', true),
            ('\u{9f}', true),
            ('\u{a0}', false),
            ('\u{fdcf}', false),
            ('\u{fdd0}', true),
            ('\u{fdef}', true),
            ('\u{fdf0}', false),
            ('\u{feff}', false),
            ('\u{fffd}', false),
            ('\u{fffe}', true),
            ('\u{ffff}', true),
            ('\u{10000}', false),
            ('\u{1fffe}', true),
            ('\u{1ffff}', true),
            ('\u{2fffd}', false),
            ('\u{10fffe}', true),
            ('\u{10ffff}', true),
        ] {
            let s = format!("a{c}b");
            assert_eq!(
                check_str(s.as_bytes(), true).is_err(),
                disallowed,
                "U+{:04X}",
                u32::from(c)
            );
            assert!(
                check_str(s.as_bytes(), false).is_ok(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }
}
