//! DISCONNECT (MQTT 5 §3.14, MQTT 3.1.1 §3.14).

use crate::properties::DisconnectProperties;
use crate::wire::{Reader, Sink};
use crate::{DisconnectReason, Error, ProtocolVersion};

/// A DISCONNECT packet. 3.1.1 has no variable header: only a client sends it, with no reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// The Disconnect Reason Code (MQTT 5).
    pub reason: DisconnectReason,
    /// Properties (MQTT 5 only).
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason` and no properties.
    pub fn new(reason: DisconnectReason) -> Self {
        Self {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn read(mut r: Reader, version: ProtocolVersion) -> Result<Self, Error> {
        let mut d = Self::new(DisconnectReason::NormalDisconnection);
        if version.is_v5() && !r.is_empty() {
            d.reason = DisconnectReason::decode(r.u8()?)?;
            if !r.is_empty() {
                d.properties = DisconnectProperties::read(&mut r)?;
            }
        }
        r.finish()?;
        Ok(d)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if !version.is_v5() {
            return;
        }
        let no_props = self.properties.is_empty();
        if self.reason == DisconnectReason::NormalDisconnection && no_props {
            return;
        }
        s.put_u8(self.reason.as_u8());
        if !no_props {
            self.properties.write(s);
        }
    }
}
