//! A strict, zero-copy codec for MQTT 5.0, 3.1.1 and 3.1.
//!
//! `mqtt5-codec` turns bytes into [`Packet`]s and back. It does no I/O, starts no threads and
//! reads no clock, so it fits any event loop, blocking or async, client or server.
//!
//! # The contract
//!
//! - **Decoding is incremental.** [`Decoder::decode`] looks at the front of a `BytesMut`:
//!   `Ok(Some(packet))` removes one packet, `Ok(None)` means the buffer holds a valid prefix and
//!   nothing was consumed, and `Err` means the stream is corrupt.
//! - **Limits come first.** The first byte and the Remaining Length are checked as soon as they
//!   arrive, and the Maximum Packet Size before the body is awaited: a peer cannot make you
//!   buffer or allocate more than your limit.
//! - **Zero-copy where it pays.** A decoded [`Publish`] keeps one [`bytes::Bytes`] handle on its
//!   frame: [`Publish::topic`] and [`Publish::payload`] read ranges of it, and
//!   [`Publish::topic_name`] and [`Publish::payload_bytes`] hand out zero-copy slices on
//!   demand. Correlation data, will payloads and other binary data are slices of the frame
//!   too. [`Publish::detach`] copies a message out when it must outlive the read buffer. Other
//!   strings (topic filters, client identifiers, user names, user properties, content types)
//!   are copied into small allocations of their own: a receiver usually keeps them (a broker
//!   stores filters and sessions), so they must not pin the read buffer, and for short strings
//!   a copy costs less than the shared reference count that every slice updates twice.
//! - **Strict.** Every rule of the specification that a single packet can break is checked:
//!   reserved bits, QoS 3, over-long or non-minimal Variable Byte Integers, Remaining Length
//!   disagreeing with the content, UTF-8 (`[MQTT-1.5.4-1]`, `[MQTT-1.5.4-2]`), topic name and
//!   filter syntax, shared-subscription syntax, zero packet identifiers, duplicate or misplaced
//!   properties and out-of-range values, CONNECT flag rules, protocol name and level. The
//!   Disallowed Unicode code points of §1.5.4 (control characters, non-characters), which a
//!   receiver MAY treat as malformed, are refused in topic names and filters, client
//!   identifiers and user names on request ([`Decoder::reject_disallowed_code_points`]).
//!   [`Error::reason_code`] gives the MQTT 5 reason code to answer with. Rules that need state
//!   (topic alias maxima, Receive Maximum, Maximum QoS) belong to the broker.
//! - **Encoding is infallible** into a `BytesMut`, and [`Packet::encoded_len`] is exact.
//!
//! - **Small packets stay small.** On 64-bit targets a PUBLISH is 80 bytes: its properties live in a
//!   [`PropertiesBox`], allocated only when some are set, and read as if inline
//!   (`publish.properties.topic_alias`). CONNECT, CONNACK, DISCONNECT and AUTH are boxed in
//!   [`Packet`], so moving a `Packet` never copies more than 96 bytes.
//!
//! One packet type serves all versions: properties and reason codes that MQTT 3.1.1 lacks are
//! left out when encoding for it, and take their defaults when decoding it.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt5_codec::{Decoder, Delivery, Packet, PacketId, ProtocolVersion, Publish, TopicName};
//!
//! // Encode a QoS 1 PUBLISH for an MQTT 5 connection.
//! let mut publish = Publish::new(TopicName::try_from("sensors/t1")?, "21.5");
//! publish.delivery = Delivery::AtLeastOnce(PacketId::new(7).unwrap());
//! let packet = Packet::from(publish);
//! let mut buf = BytesMut::new();
//! packet.encode(ProtocolVersion::V5, &mut buf);
//! assert_eq!(buf.len(), packet.encoded_len(ProtocolVersion::V5));
//!
//! // Decode it again, a few bytes at a time, as a socket would deliver it.
//! let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(1024);
//! let bytes = buf.split().freeze();
//! let mut input = BytesMut::new();
//! let mut decoded = None;
//! for chunk in bytes.chunks(3) {
//!     input.extend_from_slice(chunk);
//!     if let Some(p) = decoder.decode(&mut input)? {
//!         decoded = Some(p);
//!     }
//! }
//! assert_eq!(decoded, Some(packet));
//!
//! // A malformed packet: QoS 3 in the fixed header. Answer with its reason code.
//! let err = decoder.decode(&mut BytesMut::from(&[0x36, 0x00][..])).unwrap_err();
//! assert_eq!(err.reason_code().as_u8(), 0x81);
//! # Ok::<(), mqtt5_codec::Error>(())
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod error;
mod packet;
pub mod properties;
mod qos;
mod reason;
mod string;
mod topic;
mod wire;

pub use error::{Error, TopicError};
pub use packet::{
    Auth, ConnAck, Connect, Decoder, Disconnect, MAX_PACKET_SIZE, Packet, PacketType, PingReq,
    PingResp, PubAck, PubComp, PubRec, PubRel, Publish, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PropertiesBox, PubAckProperties, PubCompProperties, PubRecProperties, PubRelProperties,
    PublishProperties, SubAckProperties, SubscribeProperties, UnsubAckProperties,
    UnsubscribeProperties, WillProperties,
};
pub use qos::{Delivery, PacketId, PayloadFormat, ProtocolVersion, QoS, RetainHandling};
pub use reason::{
    AuthReason, ConnAckReason, DisconnectReason, PubAckReason, PubCompReason, PubRecReason,
    PubRelReason, ReasonCode, SubAckReason, UnsubAckReason,
};
pub use string::{MqttString, UserProperty};
pub use topic::{TopicFilter, TopicName};
pub use wire::{VARINT_MAX, varint_len};

// The README's example runs as a doc test too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
