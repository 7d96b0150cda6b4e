//! The fifteen control packets (MQTT 5 §3), the fixed header (§2.1), and the decoder.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod unsubscribe;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use publish::Publish;
pub use subscribe::{SubAck, Subscribe, Subscription, SubscriptionOptions};
pub use unsubscribe::{UnsubAck, Unsubscribe};

use bytes::BytesMut;

use crate::wire::{Counter, Reader, Sink, VARINT_MAX, VarInt, peek_varint, varint_len};
use crate::{Error, ProtocolVersion};

/// The largest packet MQTT can describe: a Remaining Length of 268,435,455 plus a five-byte
/// fixed header.
pub const MAX_PACKET_SIZE: u32 = VARINT_MAX + 5;

/// The control packet type, the high nibble of the first byte (MQTT 5 §2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// CONNECT, client to server.
    Connect = 1,
    /// CONNACK, server to client.
    ConnAck = 2,
    /// PUBLISH, both ways.
    Publish = 3,
    /// PUBACK, both ways.
    PubAck = 4,
    /// PUBREC, both ways.
    PubRec = 5,
    /// PUBREL, both ways.
    PubRel = 6,
    /// PUBCOMP, both ways.
    PubComp = 7,
    /// SUBSCRIBE, client to server.
    Subscribe = 8,
    /// SUBACK, server to client.
    SubAck = 9,
    /// UNSUBSCRIBE, client to server.
    Unsubscribe = 10,
    /// UNSUBACK, server to client.
    UnsubAck = 11,
    /// PINGREQ, client to server.
    PingReq = 12,
    /// PINGRESP, server to client.
    PingResp = 13,
    /// DISCONNECT, both ways (server to client only in MQTT 5).
    Disconnect = 14,
    /// AUTH, both ways, MQTT 5 only.
    Auth = 15,
}

/// A PINGREQ packet (MQTT 5 §3.12): it has no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PingReq;

/// A PINGRESP packet (MQTT 5 §3.13): it has no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PingResp;

/// Any MQTT control packet.
///
/// One type serves every protocol version: fields a version lacks (properties and reason codes
/// before MQTT 5) are left out when encoding for it and take their defaults when decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(Box<ConnAck>),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq(PingReq),
    /// PINGRESP.
    PingResp(PingResp),
    /// DISCONNECT, boxed: it is rare, and inline it would make every `Packet` larger.
    Disconnect(Box<Disconnect>),
    /// AUTH (MQTT 5 only), boxed for the same reason.
    Auth(Box<Auth>),
}

impl Packet {
    /// The packet's type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq(_) => PacketType::PingReq,
            Self::PingResp(_) => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    fn first_byte(&self) -> u8 {
        let flags = match self {
            Self::Publish(p) => return p.first_byte(),
            Self::PubRel(_) | Self::Subscribe(_) | Self::Unsubscribe(_) => 0x02,
            _ => 0x00,
        };
        ((self.packet_type() as u8) << 4) | flags
    }

    /// The version CONNECT dictates; every other packet is encoded as `version`.
    fn version_for(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Self::Connect(c) => c.protocol,
            _ => version,
        }
    }

    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        match self {
            Self::Connect(p) => p.write(s),
            Self::ConnAck(p) => p.write(version, s),
            Self::Publish(p) => p.write(version, s),
            Self::PubAck(p) => p.write(version, s),
            Self::PubRec(p) => p.write(version, s),
            Self::PubRel(p) => p.write(version, s),
            Self::PubComp(p) => p.write(version, s),
            Self::Subscribe(p) => p.write(version, s),
            Self::SubAck(p) => p.write(version, s),
            Self::Unsubscribe(p) => p.write(version, s),
            Self::UnsubAck(p) => p.write(version, s),
            Self::PingReq(_) | Self::PingResp(_) => {}
            Self::Disconnect(p) => p.write(version, s),
            Self::Auth(p) => p.write(s),
        }
    }

    fn remaining_len(&self, version: ProtocolVersion) -> usize {
        let mut c = Counter(0);
        self.write_body(self.version_for(version), &mut c);
        c.0
    }

    /// The exact number of bytes [`Packet::encode`] writes for `version`.
    ///
    /// CONNECT is always encoded in its own `protocol` version.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let remaining = self.remaining_len(version);
        1 + varint_len(remaining_u32(remaining)) + remaining
    }

    /// Appends the packet, encoded for `version`, to `buf`. It never fails.
    ///
    /// Fields the version lacks are left out: properties and reason codes before MQTT 5, where
    /// CONNACK and SUBACK reasons become 3.1.1 return codes. CONNECT is always encoded in its
    /// own `protocol` version. A packet whose Remaining Length would exceed 268,435,455 bytes
    /// cannot be expressed; building one is a logic error that a debug build asserts.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        let version = self.version_for(version);
        let remaining = self.remaining_len(version);
        debug_assert!(
            remaining <= VARINT_MAX as usize,
            "packet too large to encode"
        );
        let total = 1 + varint_len(remaining_u32(remaining)) + remaining;
        buf.reserve(total);
        let start = buf.len();
        buf.put_u8(self.first_byte());
        buf.put_varint(remaining_u32(remaining));
        self.write_body(version, buf);
        debug_assert_eq!(
            buf.len() - start,
            total,
            "encoded_len disagrees with encode"
        );
    }

    /// Copies the borrowed fields of the packets a server keeps (PUBLISH, and CONNECT with its
    /// will) into their own allocations, so that they no longer pin the read buffer they were
    /// decoded from. Other packets are returned as plain clones.
    #[must_use]
    pub fn detach(&self) -> Self {
        match self {
            Self::Publish(p) => Self::Publish(p.detach()),
            Self::Connect(c) => Self::Connect(Box::new(c.detach())),
            other => other.clone(),
        }
    }
}

fn remaining_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX).min(VARINT_MAX)
}

macro_rules! packet_from {
    ($($variant:ident($ty:ty) $(boxed $boxed:tt)?),+ $(,)?) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                packet_from!(@wrap $variant, p $(, $boxed)?)
            }
        }
    )+};
    (@wrap $variant:ident, $p:ident) => { Self::$variant($p) };
    (@wrap $variant:ident, $p:ident, $boxed:tt) => { Self::$variant(Box::new($p)) };
}

packet_from! {
    Connect(Connect) boxed 1,
    ConnAck(ConnAck) boxed 1,
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq(PingReq),
    PingResp(PingResp),
    Disconnect(Disconnect) boxed 1,
    Auth(Auth) boxed 1,
}

/// An incremental decoder for one connection's byte stream.
///
/// It is a small `Copy` value: the protocol version of the connection and the limits this side
/// holds the peer to (the Maximum Packet Size, and whether the Disallowed Unicode code points
/// are refused). It holds no buffer; the caller owns the `BytesMut` it reads into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    version: ProtocolVersion,
    max_packet_size: u32,
    reject_disallowed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(ProtocolVersion::V5)
    }
}

impl Decoder {
    /// A decoder for `version` that accepts packets of any size MQTT allows, and the
    /// Disallowed Unicode code points (see [`Decoder::reject_disallowed_code_points`]).
    ///
    /// A server that has not yet seen CONNECT can use any version: CONNECT decodes as the
    /// version it names, and the server then calls [`Decoder::set_version`].
    pub const fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            max_packet_size: MAX_PACKET_SIZE,
            reject_disallowed: false,
        }
    }

    /// Sets the Maximum Packet Size: the largest whole packet, fixed header included, that
    /// [`Decoder::decode`] accepts (MQTT 5 §3.1.2.11.4). Values above [`MAX_PACKET_SIZE`]
    /// mean no limit.
    #[must_use]
    pub const fn with_max_packet_size(mut self, max: u32) -> Self {
        self.max_packet_size = max;
        self
    }

    /// With `true`, treats the Disallowed Unicode code points of MQTT 5 §1.5.4 as malformed
    /// ([`Error::DisallowedCodePoint`], reason code 0x81) in the strings that name things:
    /// topic names (of PUBLISH and of wills), topic filters (of SUBSCRIBE and UNSUBSCRIBE),
    /// client identifiers and user names. They are U+0001..U+001F, U+007F..U+009F and the
    /// non-characters (U+FDD0..U+FDEF and every code point ending in FFFE or FFFF). The
    /// specification says they SHOULD NOT be sent and that a receiver MAY treat them as
    /// malformed; Mosquitto does. Other strings (properties, reason strings) are not checked.
    ///
    /// With `false`, the default, they are accepted like any other code point. The check costs
    /// nothing more for ASCII strings: the scan that looks for U+0000 and wildcards finds the
    /// control characters too; other strings take one more pass.
    #[must_use]
    pub const fn reject_disallowed_code_points(mut self, reject: bool) -> Self {
        self.reject_disallowed = reject;
        self
    }

    /// Whether the Disallowed Unicode code points are refused (see
    /// [`Decoder::reject_disallowed_code_points`]).
    pub const fn rejects_disallowed_code_points(&self) -> bool {
        self.reject_disallowed
    }

    /// Switches to the version a CONNECT announced.
    pub const fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// The protocol version in use.
    pub const fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The Maximum Packet Size in force.
    pub const fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// - `Ok(Some(packet))`: the packet's bytes were removed from `buf`.
    /// - `Ok(None)`: `buf` holds a valid prefix of a packet; nothing was consumed. Read more
    ///   bytes and call again.
    /// - `Err(e)`: the stream is corrupt. A server sends CONNACK or DISCONNECT with
    ///   [`Error::reason_code`] (MQTT 5) and closes the connection (`[MQTT-4.13.1-1]`).
    ///
    /// The first byte and the Remaining Length are checked as soon as they arrive, and the
    /// Maximum Packet Size before any of the body is awaited, so a peer cannot make the caller
    /// buffer more than the limit. A PUBLISH's topic and payload, and binary fields, are
    /// zero-copy views of one frozen frame split off `buf`; other strings are copied (see the
    /// crate docs).
    ///
    /// # Errors
    /// Any [`Error`] variant describing the first rule the bytes break.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Packet>, Error> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = check_first_byte(first, self.version)?;
        let (remaining, len_bytes) = match buf.get(1) {
            // Packets under 128 bytes: a one-byte Remaining Length, by far the common case.
            Some(&len) if len < 0x80 => (u32::from(len), 1),
            _ => match peek_varint(buf.get(1..).unwrap_or_default())? {
                VarInt::Done(remaining, len_bytes) => (remaining, len_bytes),
                VarInt::Incomplete => return Ok(None),
            },
        };
        let header = 1 + len_bytes;
        let total = header as u64 + u64::from(remaining);
        if total > u64::from(self.max_packet_size) {
            return Err(Error::PacketTooLarge {
                size: total,
                max: self.max_packet_size,
            });
        }
        // `total` fits in usize: it is at most MAX_PACKET_SIZE.
        let total = total as usize;
        if buf.len() < total {
            return Ok(None);
        }
        let frame = buf.split_to(total).freeze();
        let body = Reader::new(&frame, header);
        let version = self.version;
        let strict = self.reject_disallowed;
        let packet = match packet_type {
            // PUBLISH takes the frame itself, so that its payload is the frame's tail with no
            // further reference-count traffic.
            PacketType::Publish => {
                return Publish::read(first & 0x0F, frame, header, version, strict)
                    .map(|p| Some(Packet::Publish(p)));
            }
            PacketType::Connect => Packet::Connect(Connect::read(body, strict)?),
            PacketType::ConnAck => Packet::ConnAck(Box::new(ConnAck::read(body, version)?)),
            PacketType::PubAck => Packet::PubAck(PubAck::read(body, version)?),
            PacketType::PubRec => Packet::PubRec(PubRec::read(body, version)?),
            PacketType::PubRel => Packet::PubRel(PubRel::read(body, version)?),
            PacketType::PubComp => Packet::PubComp(PubComp::read(body, version)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::read(body, version, strict)?),
            PacketType::SubAck => Packet::SubAck(SubAck::read(body, version)?),
            PacketType::Unsubscribe => {
                Packet::Unsubscribe(Unsubscribe::read(body, version, strict)?)
            }
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::read(body, version)?),
            PacketType::PingReq => {
                body.finish()?;
                Packet::PingReq(PingReq)
            }
            PacketType::PingResp => {
                body.finish()?;
                Packet::PingResp(PingResp)
            }
            PacketType::Disconnect => {
                Packet::Disconnect(Box::new(Disconnect::read(body, version)?))
            }
            PacketType::Auth => Packet::Auth(Box::new(Auth::read(body)?)),
        };
        Ok(Some(packet))
    }
}

/// Checks the whole first byte: the type, and the flags that type requires (`[MQTT-2.1.3-1]`).
fn check_first_byte(first: u8, version: ProtocolVersion) -> Result<PacketType, Error> {
    let kind = first >> 4;
    let flags = first & 0x0F;
    let (packet_type, expected) = match kind {
        1 => (PacketType::Connect, 0),
        2 => (PacketType::ConnAck, 0),
        3 => {
            // Both show in the first byte: QoS 3 (`[MQTT-3.3.1-4]`), and DUP on QoS 0
            // (`[MQTT-3.3.1-2]`).
            if flags & 0x06 == 0x06 {
                return Err(Error::InvalidQoS);
            }
            if flags & 0x08 != 0 && flags & 0x06 == 0 {
                return Err(Error::DupOnQoS0);
            }
            return Ok(PacketType::Publish);
        }
        4 => (PacketType::PubAck, 0),
        5 => (PacketType::PubRec, 0),
        6 => (PacketType::PubRel, 0x02),
        7 => (PacketType::PubComp, 0),
        8 => (PacketType::Subscribe, 0x02),
        9 => (PacketType::SubAck, 0),
        10 => (PacketType::Unsubscribe, 0x02),
        11 => (PacketType::UnsubAck, 0),
        12 => (PacketType::PingReq, 0),
        13 => (PacketType::PingResp, 0),
        14 => (PacketType::Disconnect, 0),
        15 if version.is_v5() => (PacketType::Auth, 0),
        15 => return Err(Error::PacketNotInVersion(15)),
        other => return Err(Error::ReservedPacketType(other)),
    };
    if flags != expected {
        return Err(Error::InvalidHeaderFlags {
            packet_type: kind,
            flags,
        });
    }
    Ok(packet_type)
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::{Packet, Publish};

    /// The crate docs promise these sizes: moving a `Packet` is a few vector stores, not a
    /// `memcpy` call, which the decoder's hot path depends on.
    #[test]
    fn packet_stays_small() {
        assert!(
            size_of::<Publish>() <= 80,
            "Publish is {}",
            size_of::<Publish>()
        );
        assert!(
            size_of::<Packet>() <= 96,
            "Packet is {}",
            size_of::<Packet>()
        );
    }
}
