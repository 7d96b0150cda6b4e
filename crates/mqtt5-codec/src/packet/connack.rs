//! CONNACK (MQTT 5 §3.2, MQTT 3.1.1 §3.2).

use crate::properties::{ConnAckProperties, check_auth_pair};
use crate::wire::{Reader, Sink};
use crate::{ConnAckReason, Error, ProtocolVersion};

/// A CONNACK packet.
///
/// For 3.1.1 the reason travels as a return code ([`ConnAckReason::v3_return_code`]) and the
/// properties are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present (`[MQTT-3.2.2-2]`, `[MQTT-3.2.2-3]`); always false on failure (`[MQTT-3.2.2-6]`).
    pub session_present: bool,
    /// The Connect Reason Code.
    pub reason: ConnAckReason,
    /// Properties (MQTT 5 only).
    pub properties: ConnAckProperties,
}

impl Default for ConnAck {
    /// A successful CONNACK with no session present and no properties.
    fn default() -> Self {
        Self {
            session_present: false,
            reason: ConnAckReason::Success,
            properties: ConnAckProperties::default(),
        }
    }
}

impl ConnAck {
    pub(crate) fn read(mut r: Reader, version: ProtocolVersion) -> Result<Self, Error> {
        let flags = r.u8()?;
        if flags & 0xFE != 0 {
            return Err(Error::ConnAckReservedFlags);
        }
        let code = r.u8()?;
        let reason = if version.is_v5() {
            ConnAckReason::decode(code)?
        } else {
            ConnAckReason::from_v3_return_code(code).ok_or(Error::InvalidReasonCode {
                code,
                packet: "CONNACK",
            })?
        };
        let session_present = flags & 0x01 != 0;
        if session_present && reason != ConnAckReason::Success {
            return Err(Error::SessionPresentOnFailure);
        }
        let properties = if version.is_v5() {
            let p = ConnAckProperties::read(&mut r)?;
            check_auth_pair(
                p.authentication_method.as_ref(),
                p.authentication_data.as_ref(),
            )?;
            p
        } else {
            ConnAckProperties::default()
        };
        r.finish()?;
        Ok(Self {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            s.put_u8(self.reason.as_u8());
            self.properties.write(s);
        } else {
            s.put_u8(self.reason.v3_return_code());
        }
    }
}
