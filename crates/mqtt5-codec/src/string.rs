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
/// non-characters) are a SHOULD NOT that a receiver MAY reject; this codec accepts them, as
/// real clients send them, and leaves any policy to the application.
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
        Self::from_bytes_scanned(bytes).map(|(s, _)| s)
    }

    /// As [`MqttString::from_bytes`], and also reports whether the string holds a `+` or `#`,
    /// found in the same pass that looks for U+0000, so a topic name costs one scan.
    pub(crate) fn from_bytes_scanned(bytes: Bytes) -> Result<(Self, bool), Error> {
        if bytes.len() > Self::MAX_LEN {
            return Err(Error::StringTooLong(bytes.len()));
        }
        let scan = Scan::of(&bytes);
        // ASCII is well-formed UTF-8: the scan just made settles the common case, on the
        // decoder's hottest path (every topic and every property string), without a second
        // pass over the bytes.
        if !scan.ascii {
            core::str::from_utf8(&bytes).map_err(|_| Error::InvalidUtf8)?;
        }
        if scan.nul {
            return Err(Error::NullCharacter);
        }
        Ok((Self(bytes), scan.wildcard))
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
        let (s, _) = check_str(r.binary_borrow()?)?;
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
/// UTF-8, then no U+0000, in that order of precedence (as [`MqttString::from_bytes`]). Returns
/// whether the string holds a `+` or `#`.
#[inline(always)]
pub(crate) fn check_text(bytes: &[u8]) -> Result<bool, Error> {
    check_str(bytes).map(|(_, wildcard)| wildcard)
}

/// As [`check_text`], and also views the validated bytes as `&str`.
#[inline(always)]
pub(crate) fn check_str(bytes: &[u8]) -> Result<(&str, bool), Error> {
    let scan = Scan::of(bytes);
    if scan.ascii && !scan.nul {
        // SAFETY: every byte is below 0x80 (checked by `Scan::of` just above), and ASCII is
        // well-formed UTF-8; validating again would repeat the scan.
        #[allow(unsafe_code, reason = "audited: the bytes were just proven ASCII")]
        let s = unsafe { core::str::from_utf8_unchecked(bytes) };
        return Ok((s, scan.wildcard));
    }
    let s = core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)?;
    if scan.nul {
        return Err(Error::NullCharacter);
    }
    Ok((s, scan.wildcard))
}

/// What one pass over a string's bytes found.
struct Scan {
    /// Every byte is below 0x80.
    ascii: bool,
    /// Some byte is 0 (U+0000).
    nul: bool,
    /// Some byte is `+` or `#`.
    wildcard: bool,
}

impl Scan {
    /// Scans sixteen bytes at a time. The lane-wise loop body has no branches, so the compiler
    /// turns it into vector compares; the tail is one more block: the string's last sixteen
    /// bytes when it has that many (re-reading some is harmless, results are ORed), else the
    /// tail padded with a byte that matches nothing.
    #[inline]
    fn of(bytes: &[u8]) -> Self {
        const N: usize = 16;
        let mut high = [0u8; N];
        let mut nul = [0u8; N];
        let mut wild = [0u8; N];
        #[allow(clippy::indexing_slicing, reason = "i < N indexes arrays of length N")]
        let mut block = |b: &[u8; N]| {
            for i in 0..N {
                let c = b[i];
                high[i] |= c;
                nul[i] |= u8::from(c == 0);
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
            nul: u128::from_ne_bytes(nul) != 0,
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

    use super::Scan;

    proptest! {
        /// The word-at-a-time scan agrees with a byte-by-byte one on any input, with the
        /// interesting bytes made common.
        #[test]
        fn scan_matches_naive(bytes in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'+'), Just(b'#'), Just(0x80), Just(0xFF), any::<u8>()],
            0..40,
        )) {
            let scan = Scan::of(&bytes);
            prop_assert_eq!(scan.ascii, bytes.iter().all(|&b| b < 0x80));
            prop_assert_eq!(scan.nul, bytes.contains(&0));
            prop_assert_eq!(scan.wildcard, bytes.iter().any(|&b| b == b'+' || b == b'#'));
        }
    }
}
