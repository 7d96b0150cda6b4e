//! The properties the fuzz targets check, one public function per target.
//!
//! Each function takes the raw fuzz input and panics when a property fails. They depend only on
//! `bytes` and `mqtt5_codec`, never on libFuzzer: the fuzz targets call them, and
//! `tests/corpus.rs` replays `corpus/` and `regressions/` through them on the stable
//! toolchain.
//!
//! # Input layout
//!
//! The first byte of every input is the *selector*, read by [`decoder_for`]:
//!
//! - `selector % 3` picks the protocol version: `0` is 3.1, `1` is 3.1.1, `2` is 5.0;
//! - `(selector / 3) % 4` picks the Maximum Packet Size: `0` and `1` mean no limit, `2` is
//!   [`SMALL_MAX_PACKET_SIZE`], `3` is [`TINY_MAX_PACKET_SIZE`];
//! - `(selector / 12) % 2 == 1` makes the decoder reject the Disallowed Unicode code points
//!   (`Decoder::reject_disallowed_code_points`).
//!
//! So the selectors `0x00`, `0x01` and `0x02` are 3.1, 3.1.1 and 5.0 without a limit.
//! [`decode_split`] reads one more byte after the selector, and maybe a few chunk lengths; its
//! documentation says how. The rest of the input is the byte stream.

use bytes::BytesMut;
use mqtt5_codec::{Decoder, Error, MAX_PACKET_SIZE, Packet, ProtocolVersion};

/// The Maximum Packet Size that `(selector / 3) % 4 == 2` selects.
pub const SMALL_MAX_PACKET_SIZE: u32 = 256;

/// The Maximum Packet Size that `(selector / 3) % 4 == 3` selects.
pub const TINY_MAX_PACKET_SIZE: u32 = 16;

/// The decoder a selector byte picks: its version, Maximum Packet Size and whether it rejects
/// the Disallowed Unicode code points (see the module documentation).
pub fn decoder_for(selector: u8) -> Decoder {
    let version = match selector % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let max = match (selector / 3) % 4 {
        2 => SMALL_MAX_PACKET_SIZE,
        3 => TINY_MAX_PACKET_SIZE,
        _ => MAX_PACKET_SIZE,
    };
    Decoder::new(version)
        .with_max_packet_size(max)
        .reject_disallowed_code_points((selector / 12) % 2 == 1)
}

/// `bytes` as lowercase hex digits, for failure messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// After a CONNECT, the rest of the stream is read in the version it announced.
fn follow_connect(decoder: &mut Decoder, packet: &Packet) {
    if let Packet::Connect(connect) = packet {
        decoder.set_version(connect.protocol);
    }
}

/// Encodes `packet` for `version`, checks that `encoded_len` is exact and that decoding the
/// encoding gives back an equal packet and consumes all of it. Returns the encoding and the
/// packet decoded from it.
fn reencode(version: ProtocolVersion, packet: &Packet) -> (BytesMut, Packet) {
    let mut encoded = BytesMut::new();
    packet.encode(version, &mut encoded);
    assert_eq!(
        encoded.len(),
        packet.encoded_len(version),
        "encoded_len disagrees with encode for {version:?} {packet:?}"
    );
    let mut input = encoded.clone();
    let decoded = Decoder::new(version).decode(&mut input);
    let Ok(Some(decoded)) = decoded else {
        panic!(
            "the encoding of a decoded packet does not decode: {decoded:?}\n\
             version: {version:?}\npacket: {packet:?}\nencoding: {}",
            hex(&encoded)
        );
    };
    assert!(
        input.is_empty(),
        "decoding an encoding left {} bytes behind: {}",
        input.len(),
        hex(&encoded)
    );
    assert_eq!(
        &decoded,
        packet,
        "decode(encode(p)) != p for {version:?}, encoding {}",
        hex(&encoded)
    );
    (encoded, decoded)
}

/// Target `decode`: decodes `data[1..]` as a stream, selected by `data[0]`, until an error or
/// `Ok(None)`.
///
/// # Panics
///
/// When decoding panics, when the buffer left at `Ok(None)` is not exactly the input after the
/// packets decoded so far (so `Ok(None)` consumed nothing and every packet came off the front),
/// when a packet was larger than the Maximum Packet Size, when a
/// decoded packet does not re-encode and decode back to itself in the version it was decoded
/// in, when [`Packet::encoded_len`] is not exact, or when [`Packet::detach`] changes a packet.
pub fn decode(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = decoder_for(selector);
    let mut buf = BytesMut::from(stream);
    let mut offset = 0;
    loop {
        let version = decoder.version();
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                let consumed = before - buf.len();
                assert!(consumed >= 2, "a packet of {consumed} bytes: {packet:?}");
                assert!(
                    consumed as u64 <= u64::from(decoder.max_packet_size()),
                    "a packet of {consumed} bytes passed a Maximum Packet Size of {}",
                    decoder.max_packet_size()
                );
                offset += consumed;
                reencode(version, &packet);
                assert_eq!(packet.detach(), packet, "detach changed the packet");
                follow_connect(&mut decoder, &packet);
            }
            Ok(None) => {
                assert_eq!(
                    &buf[..],
                    &stream[offset..],
                    "Ok(None) must leave the buffer as it was"
                );
                return;
            }
            Err(_) => return,
        }
    }
}

/// How a stream ended: the packets it gave, then either an error or the number of bytes left
/// over as an incomplete packet.
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<Packet>,
    end: Result<usize, Error>,
}

/// Decodes every packet `decoder` can take from the front of `buf` into `packets`. Returns
/// `Ok(())` at `Ok(None)`, checking that it left the buffer's length alone.
fn drain(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    packets: &mut Vec<Packet>,
) -> Result<(), Error> {
    loop {
        let before = buf.len();
        if let Some(packet) = decoder.decode(buf)? {
            follow_connect(decoder, &packet);
            packets.push(packet);
        } else {
            assert_eq!(buf.len(), before, "Ok(None) must consume nothing");
            return Ok(());
        }
    }
}

/// Feeds `stream` to `decoder` in chunks of the lengths `chunk_lens` gives, cycled; a zero
/// length calls the decoder again with nothing new. `chunk_lens` must not sum to zero.
fn decode_chunked(mut decoder: Decoder, stream: &[u8], chunk_lens: &[usize]) -> Outcome {
    let mut packets = Vec::new();
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut lens = chunk_lens.iter().cycle();
    while !rest.is_empty() {
        let len = lens.next().copied().unwrap_or(1).min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        buf.extend_from_slice(chunk);
        if let Err(e) = drain(&mut decoder, &mut buf, &mut packets) {
            return Outcome {
                packets,
                end: Err(e),
            };
        }
    }
    Outcome {
        packets,
        end: Ok(buf.len()),
    }
}

/// Decodes `stream` handed over whole.
fn decode_whole(mut decoder: Decoder, stream: &[u8]) -> Outcome {
    let mut packets = Vec::new();
    let mut buf = BytesMut::from(stream);
    let end = drain(&mut decoder, &mut buf, &mut packets).map(|()| buf.len());
    Outcome { packets, end }
}

/// The chunk lengths `decode_split` feeds the stream in, and the stream itself.
///
/// `data[0]` is the selector; `data[1]` is the *split* byte, `s`. When `s % 8 == 0`, every
/// chunk is `1 + s / 8` bytes long, so `0x00` feeds the stream one byte at a time. Otherwise
/// the next `s % 8` bytes are the chunk lengths, used in a cycle, where `0` is an empty chunk
/// (the decoder is called again with nothing new); if they are all `0`, chunks are one byte.
fn split_plan(data: &[u8]) -> Option<(u8, Vec<usize>, &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let (&split, rest) = rest.split_first()?;
    let count = usize::from(split % 8);
    let (lens, stream) = rest.split_at(count.min(rest.len()));
    let chunk_lens = if count == 0 {
        vec![1 + usize::from(split / 8)]
    } else if lens.iter().all(|&l| l == 0) {
        vec![1]
    } else {
        lens.iter().map(|&l| usize::from(l)).collect()
    };
    Some((selector, chunk_lens, stream))
}

/// Target `decode_split`: decodes the stream whole, and again fed in chunks whose lengths come
/// from the first bytes of the input (see `split_plan` in the source: `[selector, split,
/// lengths.., stream..]`, where `split == 0x00` means one byte at a time).
///
/// # Panics
///
/// When decoding panics, when `Ok(None)` consumed bytes, or when the two ways of feeding the
/// stream give different packets, a different error, or a different number of bytes left over.
pub fn decode_split(data: &[u8]) {
    let Some((selector, chunk_lens, stream)) = split_plan(data) else {
        return;
    };
    let whole = decode_whole(decoder_for(selector), stream);
    let chunked = decode_chunked(decoder_for(selector), stream, &chunk_lens);
    assert_eq!(
        whole, chunked,
        "whole (left) and chunked (right, chunks {chunk_lens:?}) decoding disagree"
    );
}

/// Target `roundtrip`: decodes the first packet of `data[1..]`, selected by `data[0]`; when
/// one decodes, encodes it, decodes that, and encodes the result again.
///
/// # Panics
///
/// When decoding panics, when the re-decoded packet differs from the first one, when
/// [`Packet::encoded_len`] is not exact, or when the second encoding differs from the first:
/// after one pass through the codec, encoding is canonical.
pub fn roundtrip(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let decoder = decoder_for(selector);
    let version = decoder.version();
    let Ok(Some(packet)) = decoder.decode(&mut BytesMut::from(stream)) else {
        return;
    };
    let (first, decoded) = reencode(version, &packet);
    let (second, _) = reencode(version, &decoded);
    assert!(
        first == second,
        "encoding is not canonical for {version:?} {packet:?}\nfirst:  {}\nsecond: {}",
        hex(&first),
        hex(&second)
    );
}
