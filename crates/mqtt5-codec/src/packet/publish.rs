//! PUBLISH (MQTT 5 §3.3, MQTT 3.1.1 §3.3).

use core::fmt;

use bytes::Bytes;

use crate::properties::{PropertiesBox, PublishProperties};
use crate::wire::{Reader, Sink};
use crate::{Delivery, Error, PacketId, ProtocolVersion, QoS, TopicName};

/// A PUBLISH packet.
///
/// A decoded PUBLISH keeps a single zero-copy handle on its frame: the topic and the payload
/// are ranges of it, read through [`Publish::topic`] and [`Publish::payload`]. One handle
/// instead of one per field halves the reference-count traffic of the decoder's most common
/// packet. [`Publish::detach`] copies topic, payload and properties out, so that a message
/// kept for later does not pin a large read buffer. `Debug` shows the payload's length, never
/// its bytes.
#[derive(Clone)]
pub struct Publish {
    /// DUP: this is a redelivery (`[MQTT-3.3.1-1]`). It is never sent for QoS 0
    /// (`[MQTT-3.3.1-2]`): the encoder clears it there.
    pub dup: bool,
    /// RETAIN.
    pub retain: bool,
    /// QoS and packet identifier.
    pub delivery: Delivery,
    /// Properties (MQTT 5 only), kept out of line and allocated only when some are set. Read
    /// them as `publish.properties.topic_alias`; set them with
    /// `publish.properties = PublishProperties { .. }.into()` or through `DerefMut`.
    pub properties: PropertiesBox<PublishProperties>,
    /// Topic Name and payload.
    body: Body,
}

/// Where a PUBLISH keeps its topic and payload.
#[derive(Clone)]
enum Body {
    /// Built by the application, or changed after decoding.
    Parts { topic: TopicName, payload: Bytes },
    /// Decoded: `frame` is the whole packet. The topic is `frame[topic_at..][..topic_len]`,
    /// already validated as a topic name; the payload is `frame[payload_at..]`.
    Frame {
        frame: Bytes,
        topic_at: u8,
        topic_len: u16,
        payload_at: u32,
    },
}

impl Publish {
    /// A QoS 0, non-retained PUBLISH with no properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            retain: false,
            delivery: Delivery::AtMostOnce,
            properties: PropertiesBox::new(),
            body: Body::Parts {
                topic,
                payload: payload.into(),
            },
        }
    }

    /// The QoS of this PUBLISH.
    pub const fn qos(&self) -> QoS {
        self.delivery.qos()
    }

    /// The Topic Name; empty only when `properties.topic_alias` carries the topic (MQTT 5).
    pub fn topic(&self) -> &str {
        match &self.body {
            Body::Parts { topic, .. } => topic.as_str(),
            Body::Frame {
                frame,
                topic_at,
                topic_len,
                ..
            } => {
                let at = usize::from(*topic_at);
                let bytes = frame
                    .get(at..at + usize::from(*topic_len))
                    .unwrap_or_default();
                // SAFETY: `Body::Frame` is built in one place, `Publish::read`, and only after
                // `check_topic_bytes` accepted `frame[topic_at..][..topic_len]`, which proves
                // those bytes well-formed UTF-8 (`topic_at` is at most 7, the fixed header and
                // the length, so it fits its `u8`). `Bytes` is immutable and `body` private;
                // a change to the topic replaces the `Frame` with `Parts`. A range outside the
                // frame, which cannot happen, reads as the empty string.
                #[allow(unsafe_code, reason = "audited: validated at decode, immutable since")]
                unsafe {
                    core::str::from_utf8_unchecked(bytes)
                }
            }
        }
    }

    /// The Topic Name as a [`TopicName`]. For a decoded PUBLISH this is a new zero-copy slice of
    /// the frame (one reference-count update); prefer [`Publish::topic`] to only read it.
    pub fn topic_name(&self) -> TopicName {
        match &self.body {
            Body::Parts { topic, .. } => topic.clone(),
            Body::Frame {
                frame,
                topic_at,
                topic_len,
                ..
            } => {
                let at = usize::from(*topic_at);
                let end = (at + usize::from(*topic_len)).min(frame.len());
                TopicName::from_bytes_allow_empty(frame.slice(at.min(end)..end)).unwrap_or_default()
            }
        }
    }

    /// The Application Message payload.
    pub fn payload(&self) -> &[u8] {
        match &self.body {
            Body::Parts { payload, .. } => payload,
            Body::Frame {
                frame, payload_at, ..
            } => frame.get(*payload_at as usize..).unwrap_or_default(),
        }
    }

    /// The payload as [`Bytes`]: for a decoded PUBLISH, a zero-copy slice of the frame.
    pub fn payload_bytes(&self) -> Bytes {
        match &self.body {
            Body::Parts { payload, .. } => payload.clone(),
            Body::Frame {
                frame, payload_at, ..
            } => frame.slice((*payload_at as usize).min(frame.len())..),
        }
    }

    /// Replaces the Topic Name (for example to resolve or apply a Topic Alias).
    pub fn set_topic(&mut self, topic: TopicName) {
        let payload = self.payload_bytes();
        self.body = Body::Parts { topic, payload };
    }

    /// Replaces the payload.
    pub fn set_payload(&mut self, payload: impl Into<Bytes>) {
        let topic = self.topic_name();
        self.body = Body::Parts {
            topic,
            payload: payload.into(),
        };
    }

    /// Copies topic, payload and property values into their own allocations.
    ///
    /// A decoded PUBLISH points into the read buffer it came from; keep a detached copy when
    /// the message outlives the read (a queue, a retained store).
    #[must_use]
    pub fn detach(&self) -> Self {
        Self {
            dup: self.dup,
            retain: self.retain,
            delivery: self.delivery,
            properties: self.properties.detach(),
            body: Body::Parts {
                topic: self.topic_name().detach(),
                payload: Bytes::copy_from_slice(self.payload()),
            },
        }
    }

    pub(crate) fn first_byte(&self) -> u8 {
        let mut b = 0x30 | (self.delivery.qos().as_u8() << 1);
        if self.dup && self.delivery.qos() != QoS::AtMostOnce {
            b |= 0x08;
        }
        if self.retain {
            b |= 0x01;
        }
        b
    }

    /// Decodes a whole PUBLISH frame whose body starts at `header`. `flags` is the low nibble
    /// of the first byte, whose QoS has already been checked. The frame becomes the packet's
    /// one handle on its topic and payload.
    #[inline(always)]
    pub(crate) fn read(
        flags: u8,
        frame: Bytes,
        header: usize,
        version: ProtocolVersion,
        strict: bool,
    ) -> Result<Self, Error> {
        // `check_first_byte` has rejected QoS 3 and DUP on QoS 0 already.
        let dup = flags & 0x08 != 0;
        let retain = flags & 0x01 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(Error::InvalidQoS)?;
        let mut r = Reader::new(&frame, header);
        let topic_len = r.u16()?;
        let topic_at = r.position();
        let topic = r.borrow(usize::from(topic_len))?;
        crate::topic::check_topic_bytes(topic, strict)?;
        let delivery = match qos {
            QoS::AtMostOnce => Delivery::AtMostOnce,
            QoS::AtLeastOnce => Delivery::AtLeastOnce(PacketId::read(&mut r)?),
            QoS::ExactlyOnce => Delivery::ExactlyOnce(PacketId::read(&mut r)?),
        };
        let properties = if version.is_v5() {
            PropertiesBox::read(&mut r)?
        } else {
            PropertiesBox::new()
        };
        if topic_len == 0 {
            if !version.is_v5() {
                return Err(Error::InvalidTopicName(crate::TopicError::Empty));
            }
            if properties.topic_alias.is_none() {
                return Err(Error::EmptyTopicWithoutAlias);
            }
        }
        // The fixed header is at most 5 bytes and the frame at most MAX_PACKET_SIZE (< 2^28)
        // bytes, so the offsets fit their fields.
        let topic_at = u8::try_from(topic_at).unwrap_or(u8::MAX);
        let payload_at = u32::try_from(r.position()).unwrap_or(u32::MAX);
        Ok(Self {
            dup,
            retain,
            delivery,
            properties,
            body: Body::Frame {
                frame,
                topic_at,
                topic_len,
                payload_at,
            },
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_binary(self.topic().as_bytes());
        if let Some(id) = self.delivery.packet_id() {
            s.put_u16(id.get());
        }
        if version.is_v5() {
            self.properties.write(s);
        }
        s.put_slice(self.payload());
    }
}

impl PartialEq for Publish {
    /// Equal when every field is: a decoded PUBLISH equals one built from the same parts.
    fn eq(&self, other: &Self) -> bool {
        self.dup == other.dup
            && self.retain == other.retain
            && self.delivery == other.delivery
            && self.topic() == other.topic()
            && self.payload() == other.payload()
            && self.properties == other.properties
    }
}

impl Eq for Publish {}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("retain", &self.retain)
            .field("delivery", &self.delivery)
            .field("topic", &self.topic())
            .field("payload_len", &self.payload().len())
            .field("properties", &self.properties)
            .finish()
    }
}
