//! Protocol violations of a connected client, typed: each carries its normative id, chooses
//! its DISCONNECT reason code in one exhaustive match, and renders its Reason String in one
//! place (its `Display`).

use mqtt5_codec::DisconnectReason;

/// Something a client did that ends its connection with DISCONNECT (MQTT 5 §4.13): the
/// handlers return it, and the entry point ends the connection (the will is published).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// `[MQTT-3.1.0-1]`: a packet other than CONNECT (or AUTH during its exchange) before
    /// the connection is accepted.
    #[error("[MQTT-3.1.0-1] the first packet must be CONNECT")]
    NotConnected,
    /// `[MQTT-3.1.0-2]`: a second CONNECT.
    #[error("[MQTT-3.1.0-2] second CONNECT")]
    SecondConnect,
    /// A packet only a server sends: CONNACK, SUBACK, UNSUBACK, PINGRESP.
    #[error("a client sent a server-only packet")]
    ServerOnlyPacket,
    /// `[MQTT-4.12.0-2]`: an AUTH that no exchange expects.
    #[error("[MQTT-4.12.0-2] unexpected AUTH")]
    UnexpectedAuth,
    /// `[MQTT-4.12.1-1]`: a re-authentication without the method the connection
    /// authenticated with.
    #[error("[MQTT-4.12.1-1] re-authentication without the connection's method")]
    ReauthenticationMethod,
    /// `[MQTT-3.3.4-6]`: a PUBLISH from the client with a Subscription Identifier.
    #[error("[MQTT-3.3.4-6] subscription identifier in a PUBLISH from the client")]
    SubscriptionIdentifier,
    /// `[MQTT-3.3.2-9]`: a Topic Alias above the broker's Topic Alias Maximum.
    #[error("[MQTT-3.3.2-9] topic alias above the maximum")]
    TopicAliasTooLarge,
    /// MQTT 5 §3.3.4: an empty topic with a Topic Alias the connection never set.
    #[error("MQTT 5 §3.3.4: topic alias not set on this connection")]
    TopicAliasUnknown,
    /// `[MQTT-3.2.2-11]`: a PUBLISH above the Maximum QoS.
    #[error("[MQTT-3.2.2-11] QoS above Maximum QoS")]
    QosNotSupported,
    /// `[MQTT-3.2.2-14]`: a retained PUBLISH when retained messages are not available.
    #[error("[MQTT-3.2.2-14] retain is not available")]
    RetainNotAvailable,
    /// `[MQTT-3.3.4-9]`: more QoS 2 PUBLISH packets awaiting PUBREL than Receive Maximum.
    #[error("[MQTT-3.3.4-9] Receive Maximum exceeded")]
    ReceiveMaximumExceeded,
    /// `[MQTT-3.14.2-2]`: a Session Expiry Interval set at DISCONNECT after 0 at CONNECT.
    #[error("[MQTT-3.14.2-2] session expiry set at DISCONNECT after 0 at CONNECT")]
    SessionExpiryAfterZero,
    /// `[MQTT-3.1.2-22]`: no packet within one and a half times the Keep Alive.
    #[error("keep alive timeout")]
    KeepAliveTimeout,
    /// MQTT 5 §4.3: an acknowledgement of the wrong type for a message in flight to the
    /// client: PUBREC or PUBCOMP for a QoS 1 message, PUBACK or PUBCOMP for a QoS 2 message
    /// awaiting PUBREC, PUBACK or PUBREC for one awaiting PUBCOMP. The message stays
    /// unacknowledged (the statement of the acknowledgement it awaits names it). An unknown
    /// packet identifier is no violation.
    #[error("[{}] {got} for a message awaiting {awaiting}", awaiting.normative_id())]
    WrongAcknowledgement {
        /// What the client sent.
        got: Ack,
        /// What the message's flow waits for.
        awaiting: Ack,
    },
    /// Bytes the codec rejected (MQTT 5 §4.13): its error chooses the reason code.
    #[error("malformed packet")]
    Malformed(mqtt5_codec::Error),
}

/// An acknowledgement of a message the broker sent (MQTT 5 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// PUBACK (publish acknowledgement): QoS 1.
    Acknowledged,
    /// PUBREC (publish received): the first answer to QoS 2.
    Received,
    /// PUBCOMP (publish complete): the answer to PUBREL, the last of QoS 2.
    Complete,
}

impl Ack {
    /// The statement that keeps a message unacknowledged until this acknowledgement comes.
    pub(crate) const fn normative_id(self) -> &'static str {
        match self {
            Self::Acknowledged => "MQTT-4.3.2-3",
            Self::Received => "MQTT-4.3.3-3",
            Self::Complete => "MQTT-4.3.3-5",
        }
    }
}

impl core::fmt::Display for Ack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Acknowledged => "PUBACK",
            Self::Received => "PUBREC",
            Self::Complete => "PUBCOMP",
        })
    }
}

impl Violation {
    /// The DISCONNECT reason code an MQTT 5 client gets.
    pub(crate) fn reason(&self) -> DisconnectReason {
        match self {
            Self::NotConnected
            | Self::SecondConnect
            | Self::ServerOnlyPacket
            | Self::UnexpectedAuth
            | Self::ReauthenticationMethod
            | Self::SubscriptionIdentifier
            | Self::TopicAliasUnknown
            | Self::SessionExpiryAfterZero
            | Self::WrongAcknowledgement { .. } => DisconnectReason::ProtocolError,
            Self::TopicAliasTooLarge => DisconnectReason::TopicAliasInvalid,
            Self::QosNotSupported => DisconnectReason::QoSNotSupported,
            Self::RetainNotAvailable => DisconnectReason::RetainNotSupported,
            Self::ReceiveMaximumExceeded => DisconnectReason::ReceiveMaximumExceeded,
            Self::KeepAliveTimeout => DisconnectReason::KeepAliveTimeout,
            // Every code the codec answers a connected client with is a DISCONNECT code; the
            // one that is not (0x84, an unknown protocol level) comes only before CONNECT is
            // accepted, when no DISCONNECT is sent.
            Self::Malformed(e) => DisconnectReason::try_from(e.reason_code())
                .unwrap_or(DisconnectReason::MalformedPacket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_errors_keep_their_reason_code() {
        let too_large =
            Violation::Malformed(mqtt5_codec::Error::PacketTooLarge { size: 10, max: 5 });
        assert_eq!(too_large.reason(), DisconnectReason::PacketTooLarge);
        assert_eq!(
            Violation::Malformed(mqtt5_codec::Error::ZeroPacketId)
                .reason()
                .as_u8(),
            mqtt5_codec::Error::ZeroPacketId.reason_code().as_u8()
        );
        assert_eq!(
            Violation::Malformed(mqtt5_codec::Error::DisallowedCodePoint).reason(),
            DisconnectReason::MalformedPacket
        );
    }

    #[test]
    fn wrong_acknowledgement_is_a_protocol_error_naming_what_the_flow_awaits() {
        let v = Violation::WrongAcknowledgement {
            got: Ack::Received,
            awaiting: Ack::Complete,
        };
        assert_eq!(v.reason(), DisconnectReason::ProtocolError);
        assert_eq!(
            v.to_string(),
            "[MQTT-4.3.3-5] PUBREC for a message awaiting PUBCOMP"
        );
    }
}
