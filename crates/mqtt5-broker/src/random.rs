//! Randomness, handed to the core from outside so that tests are deterministic.

/// A source of random bytes. The binary backs it with the operating system's generator; tests
/// with a seeded one.
pub trait RandomSource: Send {
    /// Fills `dest` with random bytes.
    fn fill_bytes(&mut self, dest: &mut [u8]);
}
