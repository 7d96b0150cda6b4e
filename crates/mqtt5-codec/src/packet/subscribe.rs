//! SUBSCRIBE and SUBACK (MQTT 5 §3.8–3.9, MQTT 3.1.1 §3.8–3.9).

use crate::TopicFilter;
use crate::properties::{SubAckProperties, SubscribeProperties};
use crate::wire::{Reader, Sink};
use crate::{Error, PacketId, ProtocolVersion, QoS, RetainHandling, SubAckReason};

/// Subscription Options (MQTT 5 §3.8.3.1). 3.1.1 has only the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client accepts for this subscription.
    pub qos: QoS,
    /// No Local: do not send the client its own messages (`[MQTT-3.8.3-3]`).
    pub no_local: bool,
    /// Retain As Published (`[MQTT-3.3.1-12]`, `[MQTT-3.3.1-13]`).
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with `qos` and everything else at its default.
    pub fn new(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    fn read(byte: u8, version: ProtocolVersion) -> Result<Self, Error> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(Error::SubscriptionOptionsReserved);
        }
        let qos = QoS::from_u8(byte & 0x03).ok_or(Error::InvalidSubscriptionQoS)?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendOnSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(Error::InvalidRetainHandling),
        };
        Ok(Self {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut b = self.qos.as_u8();
        if version.is_v5() {
            if self.no_local {
                b |= 0x04;
            }
            if self.retain_as_published {
                b |= 0x08;
            }
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The Topic Filter.
    pub filter: TopicFilter,
    /// The Subscription Options.
    pub options: SubscriptionOptions,
}

/// A SUBSCRIBE packet. Its fixed header flags are 0b0010 (`[MQTT-3.8.1-1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5 only).
    pub properties: SubscribeProperties,
    /// At least one subscription (`[MQTT-3.8.3-2]`).
    pub subscriptions: Vec<Subscription>,
}

impl Subscribe {
    /// Reads a SUBSCRIBE; with `strict`, a Disallowed Unicode code point in a filter is
    /// [`Error::DisallowedCodePoint`].
    pub(crate) fn read(
        mut r: Reader,
        version: ProtocolVersion,
        strict: bool,
    ) -> Result<Self, Error> {
        let packet_id = PacketId::read(&mut r)?;
        let properties = if version.is_v5() {
            SubscribeProperties::read(&mut r)?
        } else {
            SubscribeProperties::default()
        };
        let mut subscriptions = Vec::with_capacity(count_entries(&r, 1));
        while !r.is_empty() {
            // Filters are copied: the broker keeps them in its subscription tree.
            let filter = TopicFilter::read(&mut r, strict)?;
            let options = SubscriptionOptions::read(r.u8()?, version)?;
            if options.no_local && filter.is_shared() {
                return Err(Error::NoLocalOnSharedSubscription);
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(Error::NoTopicFilters);
        }
        Ok(Self {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(s);
        }
        for sub in &self.subscriptions {
            sub.filter.as_mqtt_str().write(s);
            s.put_u8(sub.options.to_byte(version));
        }
    }
}

/// A SUBACK packet: one reason code per requested filter, in order (`[MQTT-3.9.3-1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The Packet Identifier of the SUBSCRIBE (`[MQTT-3.8.4-2]`).
    pub packet_id: PacketId,
    /// Properties (MQTT 5 only).
    pub properties: SubAckProperties,
    /// The reason codes; 3.1.1 carries only granted QoS or 0x80.
    pub reasons: Vec<SubAckReason>,
}

impl SubAck {
    pub(crate) fn read(mut r: Reader, version: ProtocolVersion) -> Result<Self, Error> {
        let packet_id = PacketId::read(&mut r)?;
        let properties = if version.is_v5() {
            SubAckProperties::read(&mut r)?
        } else {
            SubAckProperties::default()
        };
        let reasons = read_reasons(&mut r, |code| {
            let reason = SubAckReason::decode(code)?;
            if !version.is_v5() && reason.v3_return_code() != code {
                return Err(Error::InvalidReasonCode {
                    code,
                    packet: "SUBACK",
                });
            }
            Ok(reason)
        })?;
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
        } else {
            for r in &self.reasons {
                s.put_u8(r.v3_return_code());
            }
        }
    }
}

/// Counts the length-prefixed entries left in `r`, each followed by `trailer` bytes, so that
/// their `Vec` is allocated once at its exact size. It only walks the length prefixes; the
/// count is bounded by the bytes actually received, never by a claimed length.
pub(crate) fn count_entries(r: &Reader, trailer: usize) -> usize {
    let mut rest = r.remaining_slice();
    let mut n = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let skip = usize::from(u16::from_be_bytes(*len)) + trailer;
        n += 1;
        rest = tail.get(skip..).unwrap_or_default();
    }
    n
}

/// Reads the reason-code payload of SUBACK or UNSUBACK: at least one byte.
pub(crate) fn read_reasons<T>(
    r: &mut Reader,
    decode: impl Fn(u8) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    if r.is_empty() {
        return Err(Error::Truncated);
    }
    let mut reasons = Vec::with_capacity(r.remaining().min(64));
    while !r.is_empty() {
        reasons.push(decode(r.u8()?)?);
    }
    Ok(reasons)
}
