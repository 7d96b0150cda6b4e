//! Primitive data types of MQTT 5 §1.5: a bounds-checked reader over a frozen frame, and a
//! [`Sink`] that either writes bytes or only counts them, so that encoding and
//! `encoded_len` share one description of every packet.

use bytes::{BufMut, Bytes, BytesMut};

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

/// A bounds-checked cursor over one frozen packet frame, or a bounded window of it.
///
/// Fixed-width reads index the frame directly and touch no reference count; only
/// [`Reader::take`], which hands out zero-copy slices, clones the frame's handle. Every read checks its length first, so a short frame gives [`Error::Truncated`],
/// never a panic.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `frame[start..]`. A `start` past the end gives an empty reader.
    pub(crate) fn new(frame: &'a Bytes, start: usize) -> Self {
        let end = frame.len();
        Self {
            frame,
            pos: start.min(end),
            end,
        }
    }

    /// The unread bytes.
    #[inline]
    fn window(&self) -> &'a [u8] {
        self.frame.get(self.pos..self.end).unwrap_or_default()
    }

    /// The unread bytes, for a look-ahead that does not consume them.
    pub(crate) fn remaining_slice(&self) -> &'a [u8] {
        self.window()
    }

    /// Offset of the next unread byte in the frame.
    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    pub(crate) const fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self
            .window()
            .first_chunk::<N>()
            .copied()
            .ok_or(Error::Truncated)?;
        self.pos += N;
        Ok(bytes)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        self.array().map(u16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, Error> {
        match peek_varint(self.window())? {
            VarInt::Done(value, len) => {
                self.pos += len;
                Ok(value)
            }
            VarInt::Incomplete => Err(Error::Truncated),
        }
    }

    /// Consumes the next byte if it is 0 and says whether it did: the fast path for an empty
    /// property block.
    #[inline]
    pub(crate) fn skip_zero_byte(&mut self) -> bool {
        if self.window().first() == Some(&0) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// Skips `len` bytes and returns where they start.
    #[inline]
    fn skip(&mut self, len: usize) -> Result<usize, Error> {
        if self.remaining() < len {
            return Err(Error::Truncated);
        }
        let start = self.pos;
        self.pos += len;
        Ok(start)
    }

    /// Borrows the next `len` bytes, for a field that is only compared, never kept; unlike
    /// [`Reader::take`] it does not touch the frame's reference count.
    pub(crate) fn borrow(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let start = self.skip(len)?;
        self.frame.get(start..start + len).ok_or(Error::Truncated)
    }

    /// Takes the next `len` bytes as a zero-copy slice of the frame.
    pub(crate) fn take(&mut self, len: usize) -> Result<Bytes, Error> {
        let start = self.skip(len)?;
        Ok(self.frame.slice(start..start + len))
    }

    /// Binary Data (MQTT 5 §1.5.6): a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, Error> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Binary Data (MQTT 5 §1.5.6) borrowed from the frame: a string that is validated before
    /// it is copied, so that a bad one costs no allocation.
    #[inline]
    pub(crate) fn binary_borrow(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u16()?;
        self.borrow(usize::from(len))
    }

    /// Binary Data (MQTT 5 §1.5.6) copied into its own allocation, for a field a receiver keeps
    /// on its own: it does not pin the frame, and dropping it touches no shared count.
    pub(crate) fn binary_copy(&mut self) -> Result<Bytes, Error> {
        let len = self.u16()?;
        Ok(Bytes::copy_from_slice(self.borrow(usize::from(len))?))
    }

    /// A reader over the next `len` bytes, for a bounded property block. No copy and no
    /// reference count: it is a narrower window on the same frame.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Self, Error> {
        let start = self.skip(len)?;
        Ok(Self {
            frame: self.frame,
            pos: start,
            end: start + len,
        })
    }

    /// Fails with [`Error::TrailingBytes`] if anything is left.
    pub(crate) const fn finish(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.remaining()))
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
