//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5 §3.4–3.7): a packet identifier, a reason code
//! and properties, with the short forms of §3.4.2.1.

use crate::properties::AckProperties;
use crate::wire::{Reader, Sink};
use crate::{Error, PacketId, ProtocolVersion};
use crate::{PubAckReason, PubCompReason, PubRecReason, PubRelReason};

macro_rules! ack_packet {
    ($(#[$meta:meta])* $name:ident, $reason:ident, $success:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// The Packet Identifier of the PUBLISH or PUBREL it answers (`[MQTT-2.2.1-5]`).
            pub packet_id: PacketId,
            /// The Reason Code (MQTT 5; 3.1.1 has only success).
            pub reason: $reason,
            /// Properties (MQTT 5 only).
            pub properties: AckProperties,
        }

        impl $name {
            /// A successful acknowledgement with no properties.
            pub fn new(packet_id: PacketId) -> Self {
                Self { packet_id, reason: $reason::$success, properties: AckProperties::default() }
            }

            pub(crate) fn read(mut r: Reader, version: ProtocolVersion) -> Result<Self, Error> {
                let packet_id = PacketId::read(&mut r)?;
                let mut ack = Self::new(packet_id);
                if version.is_v5() && !r.is_empty() {
                    ack.reason = $reason::decode(r.u8()?)?;
                    if !r.is_empty() {
                        ack.properties = AckProperties::read(&mut r)?;
                    }
                }
                r.finish()?;
                Ok(ack)
            }

            pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
                s.put_u16(self.packet_id.get());
                if !version.is_v5() {
                    return;
                }
                let no_props = self.properties.is_empty();
                if self.reason == $reason::$success && no_props {
                    return;
                }
                s.put_u8(self.reason.as_u8());
                if !no_props {
                    self.properties.write(s);
                }
            }
        }
    };
}

ack_packet! {
    /// A PUBACK: the answer to a QoS 1 PUBLISH (MQTT 5 §3.4).
    PubAck, PubAckReason, Success
}
ack_packet! {
    /// A PUBREC: the first answer to a QoS 2 PUBLISH (MQTT 5 §3.5).
    PubRec, PubRecReason, Success
}
ack_packet! {
    /// A PUBREL: the answer to a PUBREC (MQTT 5 §3.6). Its fixed header flags are 0b0010
    /// (`[MQTT-3.6.1-1]`).
    PubRel, PubRelReason, Success
}
ack_packet! {
    /// A PUBCOMP: the answer to a PUBREL (MQTT 5 §3.7).
    PubComp, PubCompReason, Success
}
