//! Data representation (§1.5), the packet format (§2) and CONNECT (§3.1).

use mqtt5_codec::{DisconnectReason, QoS};

use super::*;

pub(super) const CASES: &[Case] = &[Case::new(
    "second_connect_is_a_protocol_error",
    &["MQTT-3.1.0-2"],
    |s| {
        s.connect(0, "c3.1.0-2")
            .send(0, connect("c3.1.0-2"))
            .expect_disconnect(0, DisconnectReason::ProtocolError)
            .expect_log("protocol")
    },
)];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[];

#[allow(dead_code)]
const _: QoS = QoS::AtMostOnce;
