//! PUBLISH (MQTT 5 §3.3, MQTT 3.1.1 §3.3).

use core::fmt;

use bytes::{Buf, Bytes};

use crate::properties::{PropertiesBox, PublishProperties};
use crate::wire::{Reader, Sink};
use crate::{Delivery, Error, PacketId, ProtocolVersion, QoS, TopicName};

/// A PUBLISH packet.
///
/// Topic, payload and correlation data are zero-copy slices of the frame they were decoded
/// from; [`Publish::detach`] copies them out, so that a message kept for later does not pin a
/// large read buffer. `Debug` shows the payload's length, never its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this is a redelivery (`[MQTT-3.3.1-1]`). It is never sent for QoS 0
    /// (`[MQTT-3.3.1-2]`): the encoder clears it there.
    pub dup: bool,
    /// RETAIN.
    pub retain: bool,
    /// QoS and packet identifier.
    pub delivery: Delivery,
    /// Topic Name; empty only when `properties.topic_alias` carries the topic (MQTT 5).
    pub topic: TopicName,
    /// Properties (MQTT 5 only), kept out of line and allocated only when some are set. Read
    /// them as `publish.properties.topic_alias`; set them with
    /// `publish.properties = PublishProperties { .. }.into()` or through `DerefMut`.
    pub properties: PropertiesBox<PublishProperties>,
    /// Application Message payload.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0, non-retained PUBLISH with no properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            retain: false,
            delivery: Delivery::AtMostOnce,
            topic,
            properties: PropertiesBox::new(),
            payload: payload.into(),
        }
    }

    /// The QoS of this PUBLISH.
    pub const fn qos(&self) -> QoS {
        self.delivery.qos()
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
            topic: self.topic.detach(),
            properties: self.properties.detach(),
            payload: Bytes::copy_from_slice(&self.payload),
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
    /// of the first byte, whose QoS has already been checked. The payload is `frame`'s tail.
    #[inline]
    pub(crate) fn read(
        flags: u8,
        frame: Bytes,
        header: usize,
        version: ProtocolVersion,
    ) -> Result<Self, Error> {
        let dup = flags & 0x08 != 0;
        let retain = flags & 0x01 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(Error::InvalidQoS)?;
        if dup && qos == QoS::AtMostOnce {
            return Err(Error::DupOnQoS0);
        }
        let mut r = Reader::new(&frame, header);
        let topic = TopicName::from_bytes_allow_empty(r.binary()?)?;
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
        if topic.is_empty() {
            if !version.is_v5() {
                return Err(Error::InvalidTopicName(crate::TopicError::Empty));
            }
            if properties.topic_alias.is_none() {
                return Err(Error::EmptyTopicWithoutAlias);
            }
        }
        let payload_start = r.position();
        let mut publish = Self {
            dup,
            retain,
            delivery,
            topic,
            properties,
            payload: frame,
        };
        // Trim the frame down to the payload only after moving it into place: advancing it
        // first and then moving it makes the CPU reload half-written words (a store-forwarding
        // stall that measurably slows the decoder).
        publish.payload.advance(payload_start);
        Ok(publish)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        self.topic.as_mqtt_str().write(s);
        if let Some(id) = self.delivery.packet_id() {
            s.put_u16(id.get());
        }
        if version.is_v5() {
            self.properties.write(s);
        }
        s.put_slice(&self.payload);
    }
}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("retain", &self.retain)
            .field("delivery", &self.delivery)
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("properties", &self.properties)
            .finish()
    }
}
