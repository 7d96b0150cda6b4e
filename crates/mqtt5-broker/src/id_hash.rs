//! The hasher of the core's own integer keys.

/// A hasher for the core's own integer keys ([`crate::ConnId`], session ids), which the driver assigns and a
/// client cannot choose: one multiplication (Fibonacci hashing) instead of SipHash, whose
/// cost showed in profiles of every packet's connection lookup. Keys a client controls
/// (client identifiers, topics) keep the standard library's keyed hasher.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl core::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The high bits pick hashbrown's control bytes and the low bits its bucket: the
        // multiplication spreads a counter's low bits into both.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 ^= u64::from(n);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// The `BuildHasher` of [`IdHasher`].
pub(crate) type IdHash = core::hash::BuildHasherDefault<IdHasher>;
