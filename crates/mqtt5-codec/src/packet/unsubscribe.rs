//! UNSUBSCRIBE and UNSUBACK (MQTT 5 §3.10–3.11, MQTT 3.1.1 §3.10–3.11).

use super::subscribe::read_reasons;
use crate::properties::{UnsubAckProperties, UnsubscribeProperties};
use crate::wire::{Reader, Sink};
use crate::{Error, PacketId, ProtocolVersion, TopicFilter, UnsubAckReason};

/// An UNSUBSCRIBE packet. Its fixed header flags are 0b0010 (`[MQTT-3.10.1-1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5 only).
    pub properties: UnsubscribeProperties,
    /// At least one topic filter (`[MQTT-3.10.3-2]`).
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    /// Reads an UNSUBSCRIBE; with `strict`, a Disallowed Unicode code point in a filter is
    /// [`Error::DisallowedCodePoint`].
    pub(crate) fn read(
        mut r: Reader,
        version: ProtocolVersion,
        strict: bool,
    ) -> Result<Self, Error> {
        let packet_id = PacketId::read(&mut r)?;
        let properties = if version.is_v5() {
            UnsubscribeProperties::read(&mut r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::with_capacity(super::subscribe::count_entries(&r, 0));
        while !r.is_empty() {
            filters.push(TopicFilter::read(&mut r, strict)?);
        }
        if filters.is_empty() {
            return Err(Error::NoTopicFilters);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(s);
        }
        for f in &self.filters {
            f.as_mqtt_str().write(s);
        }
    }
}

/// An UNSUBACK packet. MQTT 5 carries one reason code per filter (`[MQTT-3.11.3-1]`); 3.1.1
/// carries none, and `reasons` is then empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The Packet Identifier of the UNSUBSCRIBE (`[MQTT-3.10.4-5]`).
    pub packet_id: PacketId,
    /// Properties (MQTT 5 only).
    pub properties: UnsubAckProperties,
    /// The reason codes (MQTT 5 only).
    pub reasons: Vec<UnsubAckReason>,
}

impl UnsubAck {
    pub(crate) fn read(mut r: Reader, version: ProtocolVersion) -> Result<Self, Error> {
        let packet_id = PacketId::read(&mut r)?;
        if !version.is_v5() {
            r.finish()?;
            return Ok(Self {
                packet_id,
                properties: UnsubAckProperties::default(),
                reasons: Vec::new(),
            });
        }
        let properties = UnsubAckProperties::read(&mut r)?;
        let reasons = read_reasons(&mut r, UnsubAckReason::decode)?;
        Ok(Self {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(s);
            for r in &self.reasons {
                s.put_u8(r.as_u8());
            }
        }
    }
}
