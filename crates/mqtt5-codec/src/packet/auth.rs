//! AUTH (MQTT 5 §3.15): extended authentication. It does not exist before MQTT 5.

use crate::properties::{AuthProperties, check_auth_pair};
use crate::wire::{Reader, Sink};
use crate::{AuthReason, Error};

/// An AUTH packet. Its fixed header flags are 0 (`[MQTT-3.15.1-1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The Authenticate Reason Code.
    pub reason: AuthReason,
    /// Properties: Authentication Method and Data, Reason String, User Properties.
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn read(mut r: Reader) -> Result<Self, Error> {
        let mut a = Self {
            reason: AuthReason::Success,
            properties: AuthProperties::default(),
        };
        // Reason Code and Property Length are omitted together or not at all (§3.15.2.1):
        // unlike DISCONNECT and the acks, a Remaining Length of 1 is not a valid short form.
        if !r.is_empty() {
            a.reason = AuthReason::decode(r.u8()?)?;
            a.properties = AuthProperties::read(&mut r)?;
        }
        r.finish()?;
        check_auth_pair(
            a.properties.authentication_method.as_ref(),
            a.properties.authentication_data.as_ref(),
        )?;
        Ok(a)
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        // The short form, Remaining Length 0, is only for Success with no properties.
        if self.reason == AuthReason::Success && self.properties.is_empty() {
            return;
        }
        s.put_u8(self.reason.as_u8());
        self.properties.write(s);
    }
}
