//! Reason codes: the full MQTT 5 table ([`ReasonCode`]) and one enum per packet.
//!
//! See [MQTT 5 §2.4](https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901031).
//! Each per-packet enum holds exactly the codes the specification allows in that packet, so a
//! value that is not allowed cannot be built. 3.1.1 return codes map onto these enums.

use crate::Error;

macro_rules! reason_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $packet:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value of this enum, in ascending order of its byte.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The byte on the wire.
            pub const fn as_u8(self) -> u8 {
                self as u8
            }

            /// The value for a byte, or `None` when the byte is not a code of this kind.
            pub const fn from_u8(byte: u8) -> Option<Self> {
                match byte {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// True for codes of 0x80 and above, which signal failure.
            pub const fn is_error(self) -> bool {
                self.as_u8() >= 0x80
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{:?} ({:#04x})", self, self.as_u8())
            }
        }
    };
}

macro_rules! packet_reason {
    (
        $(#[$meta:meta])*
        $name:ident, $packet:literal { $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+ }
    ) => {
        reason_enum! {
            $(#[$meta])*
            $name, $packet { $( $(#[$vmeta])* $variant = $value, )+ }
        }

        impl $name {
            /// Reads the code from its byte in a packet being decoded.
            pub(crate) fn decode(byte: u8) -> Result<Self, Error> {
                Self::from_u8(byte).ok_or(Error::InvalidReasonCode { code: byte, packet: $packet })
            }
        }

        impl From<$name> for ReasonCode {
            fn from(reason: $name) -> Self {
                // Every packet code is in the full table, so the fallback is never taken.
                Self::from_u8(reason.as_u8()).unwrap_or(Self::UnspecifiedError)
            }
        }

        impl TryFrom<ReasonCode> for $name {
            type Error = ReasonCode;

            /// Fails, giving the code back, when it is not allowed in this packet.
            fn try_from(code: ReasonCode) -> Result<Self, ReasonCode> {
                Self::from_u8(code.as_u8()).ok_or(code)
            }
        }
    };
}

reason_enum! {
    /// Every MQTT 5 reason code (MQTT 5 §2.4, Table 2-6).
    ///
    /// 0x00 has several names (Success, Normal disconnection, Granted QoS 0); here it is `Success`.
    ReasonCode, "a reason code" {
        /// 0x00 Success, Normal disconnection, Granted QoS 0.
        Success = 0x00,
        /// 0x01 Granted QoS 1.
        GrantedQoS1 = 0x01,
        /// 0x02 Granted QoS 2.
        GrantedQoS2 = 0x02,
        /// 0x04 Disconnect with Will Message.
        DisconnectWithWillMessage = 0x04,
        /// 0x10 No matching subscribers.
        NoMatchingSubscribers = 0x10,
        /// 0x11 No subscription existed.
        NoSubscriptionExisted = 0x11,
        /// 0x18 Continue authentication.
        ContinueAuthentication = 0x18,
        /// 0x19 Re-authenticate.
        ReAuthenticate = 0x19,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x81 Malformed Packet.
        MalformedPacket = 0x81,
        /// 0x82 Protocol Error.
        ProtocolError = 0x82,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x84 Unsupported Protocol Version.
        UnsupportedProtocolVersion = 0x84,
        /// 0x85 Client Identifier not valid.
        ClientIdentifierNotValid = 0x85,
        /// 0x86 Bad User Name or Password.
        BadUserNameOrPassword = 0x86,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x88 Server unavailable.
        ServerUnavailable = 0x88,
        /// 0x89 Server busy.
        ServerBusy = 0x89,
        /// 0x8A Banned.
        Banned = 0x8A,
        /// 0x8B Server shutting down.
        ServerShuttingDown = 0x8B,
        /// 0x8C Bad authentication method.
        BadAuthenticationMethod = 0x8C,
        /// 0x8D Keep Alive timeout.
        KeepAliveTimeout = 0x8D,
        /// 0x8E Session taken over.
        SessionTakenOver = 0x8E,
        /// 0x8F Topic Filter invalid.
        TopicFilterInvalid = 0x8F,
        /// 0x90 Topic Name invalid.
        TopicNameInvalid = 0x90,
        /// 0x91 Packet Identifier in use.
        PacketIdentifierInUse = 0x91,
        /// 0x92 Packet Identifier not found.
        PacketIdentifierNotFound = 0x92,
        /// 0x93 Receive Maximum exceeded.
        ReceiveMaximumExceeded = 0x93,
        /// 0x94 Topic Alias invalid.
        TopicAliasInvalid = 0x94,
        /// 0x95 Packet too large.
        PacketTooLarge = 0x95,
        /// 0x96 Message rate too high.
        MessageRateTooHigh = 0x96,
        /// 0x97 Quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x98 Administrative action.
        AdministrativeAction = 0x98,
        /// 0x99 Payload format invalid.
        PayloadFormatInvalid = 0x99,
        /// 0x9A Retain not supported.
        RetainNotSupported = 0x9A,
        /// 0x9B QoS not supported.
        QoSNotSupported = 0x9B,
        /// 0x9C Use another server.
        UseAnotherServer = 0x9C,
        /// 0x9D Server moved.
        ServerMoved = 0x9D,
        /// 0x9E Shared Subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// 0x9F Connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
        /// 0xA0 Maximum connect time.
        MaximumConnectTime = 0xA0,
        /// 0xA1 Subscription Identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// 0xA2 Wildcard Subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

packet_reason! {
    /// CONNACK reason codes (MQTT 5 §3.2.2.2).
    ConnAckReason, "CONNACK" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x81 Malformed Packet.
        MalformedPacket = 0x81,
        /// 0x82 Protocol Error.
        ProtocolError = 0x82,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x84 Unsupported Protocol Version.
        UnsupportedProtocolVersion = 0x84,
        /// 0x85 Client Identifier not valid.
        ClientIdentifierNotValid = 0x85,
        /// 0x86 Bad User Name or Password.
        BadUserNameOrPassword = 0x86,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x88 Server unavailable.
        ServerUnavailable = 0x88,
        /// 0x89 Server busy.
        ServerBusy = 0x89,
        /// 0x8A Banned.
        Banned = 0x8A,
        /// 0x8C Bad authentication method.
        BadAuthenticationMethod = 0x8C,
        /// 0x90 Topic Name invalid.
        TopicNameInvalid = 0x90,
        /// 0x95 Packet too large.
        PacketTooLarge = 0x95,
        /// 0x97 Quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x99 Payload format invalid.
        PayloadFormatInvalid = 0x99,
        /// 0x9A Retain not supported.
        RetainNotSupported = 0x9A,
        /// 0x9B QoS not supported.
        QoSNotSupported = 0x9B,
        /// 0x9C Use another server.
        UseAnotherServer = 0x9C,
        /// 0x9D Server moved.
        ServerMoved = 0x9D,
        /// 0x9F Connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
    }
}

impl ConnAckReason {
    /// The MQTT 3.1.1 / 3.1 CONNACK return code for this reason (3.1.1 §3.2.2.3).
    ///
    /// Codes 3.1.1 lacks map to the nearest of its six: authentication failures to 4 or 5,
    /// everything else to 3 (Server unavailable).
    pub const fn v3_return_code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::BadUserNameOrPassword | Self::BadAuthenticationMethod => 4,
            Self::NotAuthorized | Self::Banned => 5,
            Self::UnspecifiedError
            | Self::MalformedPacket
            | Self::ProtocolError
            | Self::ImplementationSpecificError
            | Self::ServerUnavailable
            | Self::ServerBusy
            | Self::TopicNameInvalid
            | Self::PacketTooLarge
            | Self::QuotaExceeded
            | Self::PayloadFormatInvalid
            | Self::RetainNotSupported
            | Self::QoSNotSupported
            | Self::UseAnotherServer
            | Self::ServerMoved
            | Self::ConnectionRateExceeded => 3,
        }
    }

    /// The reason for an MQTT 3.1.1 / 3.1 CONNACK return code; `None` for 6 and above.
    pub const fn from_v3_return_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Success),
            1 => Some(Self::UnsupportedProtocolVersion),
            2 => Some(Self::ClientIdentifierNotValid),
            3 => Some(Self::ServerUnavailable),
            4 => Some(Self::BadUserNameOrPassword),
            5 => Some(Self::NotAuthorized),
            _ => None,
        }
    }
}

packet_reason! {
    /// PUBACK reason codes (MQTT 5 §3.4.2.1).
    PubAckReason, "PUBACK" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x10 No matching subscribers.
        NoMatchingSubscribers = 0x10,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x90 Topic Name invalid.
        TopicNameInvalid = 0x90,
        /// 0x91 Packet Identifier in use.
        PacketIdentifierInUse = 0x91,
        /// 0x97 Quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x99 Payload format invalid.
        PayloadFormatInvalid = 0x99,
    }
}

packet_reason! {
    /// PUBREC reason codes (MQTT 5 §3.5.2.1).
    PubRecReason, "PUBREC" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x10 No matching subscribers.
        NoMatchingSubscribers = 0x10,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x90 Topic Name invalid.
        TopicNameInvalid = 0x90,
        /// 0x91 Packet Identifier in use.
        PacketIdentifierInUse = 0x91,
        /// 0x97 Quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x99 Payload format invalid.
        PayloadFormatInvalid = 0x99,
    }
}

packet_reason! {
    /// PUBREL reason codes (MQTT 5 §3.6.2.1).
    PubRelReason, "PUBREL" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x92 Packet Identifier not found.
        PacketIdentifierNotFound = 0x92,
    }
}

packet_reason! {
    /// PUBCOMP reason codes (MQTT 5 §3.7.2.1).
    PubCompReason, "PUBCOMP" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x92 Packet Identifier not found.
        PacketIdentifierNotFound = 0x92,
    }
}

packet_reason! {
    /// SUBACK reason codes (MQTT 5 §3.9.3); 3.1.1 uses 0x00, 0x01, 0x02 and 0x80.
    SubAckReason, "SUBACK" {
        /// 0x00 Granted QoS 0.
        GrantedQoS0 = 0x00,
        /// 0x01 Granted QoS 1.
        GrantedQoS1 = 0x01,
        /// 0x02 Granted QoS 2.
        GrantedQoS2 = 0x02,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x8F Topic Filter invalid.
        TopicFilterInvalid = 0x8F,
        /// 0x91 Packet Identifier in use.
        PacketIdentifierInUse = 0x91,
        /// 0x97 Quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x9E Shared Subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// 0xA1 Subscription Identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// 0xA2 Wildcard Subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

impl SubAckReason {
    /// The MQTT 3.1.1 return code: the granted QoS, or 0x80 for every failure.
    pub const fn v3_return_code(self) -> u8 {
        match self {
            Self::GrantedQoS0 => 0x00,
            Self::GrantedQoS1 => 0x01,
            Self::GrantedQoS2 => 0x02,
            Self::UnspecifiedError
            | Self::ImplementationSpecificError
            | Self::NotAuthorized
            | Self::TopicFilterInvalid
            | Self::PacketIdentifierInUse
            | Self::QuotaExceeded
            | Self::SharedSubscriptionsNotSupported
            | Self::SubscriptionIdentifiersNotSupported
            | Self::WildcardSubscriptionsNotSupported => 0x80,
        }
    }

    /// The success code granting `qos`.
    pub const fn granted(qos: crate::QoS) -> Self {
        match qos {
            crate::QoS::AtMostOnce => Self::GrantedQoS0,
            crate::QoS::AtLeastOnce => Self::GrantedQoS1,
            crate::QoS::ExactlyOnce => Self::GrantedQoS2,
        }
    }
}

packet_reason! {
    /// UNSUBACK reason codes (MQTT 5 §3.11.3).
    UnsubAckReason, "UNSUBACK" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x11 No subscription existed.
        NoSubscriptionExisted = 0x11,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x8F Topic Filter invalid.
        TopicFilterInvalid = 0x8F,
        /// 0x91 Packet Identifier in use.
        PacketIdentifierInUse = 0x91,
    }
}

packet_reason! {
    /// DISCONNECT reason codes (MQTT 5 §3.14.2.1).
    DisconnectReason, "DISCONNECT" {
        /// 0x00 Normal disconnection.
        NormalDisconnection = 0x00,
        /// 0x04 Disconnect with Will Message.
        DisconnectWithWillMessage = 0x04,
        /// 0x80 Unspecified error.
        UnspecifiedError = 0x80,
        /// 0x81 Malformed Packet.
        MalformedPacket = 0x81,
        /// 0x82 Protocol Error.
        ProtocolError = 0x82,
        /// 0x83 Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87 Not authorized.
        NotAuthorized = 0x87,
        /// 0x89 Server busy.
        ServerBusy = 0x89,
        /// 0x8B Server shutting down.
        ServerShuttingDown = 0x8B,
        /// 0x8D Keep Alive timeout.
        KeepAliveTimeout = 0x8D,
        /// 0x8E Session taken over.
        SessionTakenOver = 0x8E,
        /// 0x8F Topic Filter invalid.
        TopicFilterInvalid = 0x8F,
        /// 0x90 Topic Name invalid.
        TopicNameInvalid = 0x90,
        /// 0x93 Receive Maximum exceeded.
        ReceiveMaximumExceeded = 0x93,
        /// 0x94 Topic Alias invalid.
        TopicAliasInvalid = 0x94,
        /// 0x95 Packet too large.
        PacketTooLarge = 0x95,
        /// 0x96 Message rate too high.
        MessageRateTooHigh = 0x96,
        /// 0x97 Quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x98 Administrative action.
        AdministrativeAction = 0x98,
        /// 0x99 Payload format invalid.
        PayloadFormatInvalid = 0x99,
        /// 0x9A Retain not supported.
        RetainNotSupported = 0x9A,
        /// 0x9B QoS not supported.
        QoSNotSupported = 0x9B,
        /// 0x9C Use another server.
        UseAnotherServer = 0x9C,
        /// 0x9D Server moved.
        ServerMoved = 0x9D,
        /// 0x9E Shared Subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// 0x9F Connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
        /// 0xA0 Maximum connect time.
        MaximumConnectTime = 0xA0,
        /// 0xA1 Subscription Identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// 0xA2 Wildcard Subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

packet_reason! {
    /// AUTH reason codes (MQTT 5 §3.15.2.1).
    AuthReason, "AUTH" {
        /// 0x00 Success.
        Success = 0x00,
        /// 0x18 Continue authentication.
        ContinueAuthentication = 0x18,
        /// 0x19 Re-authenticate.
        ReAuthenticate = 0x19,
    }
}

/// PUBREC allows exactly the codes of PUBACK (MQTT 5 §3.4.2.1, §3.5.2.1): the answer a QoS 2
/// PUBLISH gets is the one a QoS 1 PUBLISH would.
impl From<PubAckReason> for PubRecReason {
    fn from(reason: PubAckReason) -> Self {
        match reason {
            PubAckReason::Success => Self::Success,
            PubAckReason::NoMatchingSubscribers => Self::NoMatchingSubscribers,
            PubAckReason::UnspecifiedError => Self::UnspecifiedError,
            PubAckReason::ImplementationSpecificError => Self::ImplementationSpecificError,
            PubAckReason::NotAuthorized => Self::NotAuthorized,
            PubAckReason::TopicNameInvalid => Self::TopicNameInvalid,
            PubAckReason::PacketIdentifierInUse => Self::PacketIdentifierInUse,
            PubAckReason::QuotaExceeded => Self::QuotaExceeded,
            PubAckReason::PayloadFormatInvalid => Self::PayloadFormatInvalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_puback_code_is_the_pubrec_code_of_the_same_byte() {
        for &ack in PubAckReason::ALL {
            assert_eq!(PubRecReason::from(ack).as_u8(), ack.as_u8());
        }
        assert_eq!(PubAckReason::ALL.len(), PubRecReason::ALL.len());
    }
}
