//! Primitive data types of MQTT 5 §1.5: a bounds-checked reader over a frozen frame, and a
//! [`Sink`] that either writes bytes or only counts them, so that encoding and
//! `encoded_len` share one description of every packet.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Error;

/// The largest value a Variable Byte Integer can hold (MQTT 5 §1.5.5).
pub const VARINT_MAX: u32 = 268_435_455;

/// Outcome of reading a Variable Byte Integer from the start of a slice.
pub(crate) enum VarInt {
    /// The value and how many bytes it took.
    Done(u32, usize),
    /// The slice ends before the last byte of the integer.
    Incomplete,
}

/// Reads a Variable Byte Integer from the front of `bytes` without consuming anything.
///
/// # Errors
/// [`Error::VarIntTooLong`] past four bytes, [`Error::VarIntNotMinimal`] for a non-minimal form.
pub(crate) fn peek_varint(bytes: &[u8]) -> Result<VarInt, Error> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // [MQTT-1.5.5-1]: a final byte of zero after the first byte means a shorter form existed.
            if i > 0 && b == 0 {
                return Err(Error::VarIntNotMinimal);
            }
            return Ok(VarInt::Done(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Err(Error::VarIntTooLong)
    } else {
        Ok(VarInt::Incomplete)
    }
}

/// The number of bytes `value` takes as a Variable Byte Integer.
pub const fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A bounds-checked cursor over one frozen packet frame (or a sub-slice of it).
///
/// Every read checks its length first, so a short frame gives [`Error::Truncated`], never a panic.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) const fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        if self.buf.is_empty() {
            return Err(Error::Truncated);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        if self.buf.len() < 2 {
            return Err(Error::Truncated);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        if self.buf.len() < 4 {
            return Err(Error::Truncated);
        }
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, Error> {
        match peek_varint(&self.buf)? {
            VarInt::Done(value, len) => {
                self.buf.advance(len);
                Ok(value)
            }
            VarInt::Incomplete => Err(Error::Truncated),
        }
    }

    /// Takes the next `len` bytes as a zero-copy slice of the frame.
    pub(crate) fn take(&mut self, len: usize) -> Result<Bytes, Error> {
        if self.buf.len() < len {
            return Err(Error::Truncated);
        }
        Ok(self.buf.split_to(len))
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> Bytes {
        core::mem::take(&mut self.buf)
    }

    /// Binary Data (MQTT 5 §1.5.6): a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, Error> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A sub-reader over the next `len` bytes, for a bounded property block.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Self, Error> {
        Ok(Self::new(self.take(len)?))
    }

    /// Fails with [`Error::TrailingBytes`] if anything is left.
    pub(crate) fn finish(self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.buf.len()))
        }
    }
}

/// Where encoded bytes go: a real buffer, or a [`Counter`] that only measures them.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, v: &[u8]);

    fn put_varint(&mut self, mut value: u32) {
        debug_assert!(value <= VARINT_MAX, "variable byte integer out of range");
        loop {
            let mut byte = (value & 0x7F) as u8;
            value >>= 7;
            if value > 0 {
                byte |= 0x80;
            }
            self.put_u8(byte);
            if value == 0 {
                break;
            }
        }
    }

    /// Binary Data or a UTF-8 string: a two-byte length, then the bytes.
    fn put_binary(&mut self, v: &[u8]) {
        debug_assert!(
            v.len() <= usize::from(u16::MAX),
            "binary data over 65,535 bytes"
        );
        self.put_u16(v.len() as u16);
        self.put_slice(v);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        BufMut::put_slice(self, v);
    }
}

/// A [`Sink`] that counts bytes instead of writing them.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    #[inline]
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    #[inline]
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    #[inline]
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }
    #[inline]
    fn put_varint(&mut self, value: u32) {
        self.0 += varint_len(value);
    }
}

/// Measures what `f` writes.
pub(crate) fn measure(f: impl FnOnce(&mut Counter)) -> usize {
    let mut c = Counter(0);
    f(&mut c);
    c.0
}
