//! Decoding errors and their one mapping to MQTT 5 reason codes.

use crate::reason::ReasonCode;

/// Where a topic name or topic filter broke the rules of [MQTT 4.7].
///
/// [MQTT 4.7]: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901241
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// `[MQTT-4.7.3-1]` the topic is zero bytes long.
    Empty,
    /// `[MQTT-4.7.0-1]` a topic name holds `+` or `#`.
    Wildcard,
    /// `[MQTT-4.7.1-1]` `#` is not the last character, or does not fill its level.
    MultiLevelWildcard,
    /// `[MQTT-4.7.1-2]` `+` does not fill its level.
    SingleLevelWildcard,
    /// `[MQTT-4.8.2-1]` `$share/` is not followed by a non-empty share name.
    EmptyShareName,
    /// `[MQTT-4.8.2-2]` the share name holds `/`, `+` or `#`, or is not followed by `/` and a filter.
    InvalidShareName,
}

impl TopicError {
    /// A short description, used in error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Empty => "[MQTT-4.7.3-1] topic is empty",
            Self::Wildcard => "[MQTT-4.7.0-1] topic name contains a wildcard",
            Self::MultiLevelWildcard => "[MQTT-4.7.1-1] '#' must be last and fill a whole level",
            Self::SingleLevelWildcard => "[MQTT-4.7.1-2] '+' must fill a whole level",
            Self::EmptyShareName => "[MQTT-4.8.2-1] shared subscription has an empty share name",
            Self::InvalidShareName => {
                "[MQTT-4.8.2-2] share name contains '/', '+' or '#', or has no topic filter"
            }
        }
    }
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.describe())
    }
}

/// A reason a byte stream is not a valid MQTT packet.
///
/// Decoding stops at the first error; the stream is then corrupt. A server answers with
/// [`Error::reason_code`] (in CONNACK or DISCONNECT for MQTT 5, by closing for 3.1.1) and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The packet type nibble is reserved (0, or 15 before MQTT 5).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// `[MQTT-2.1.3-1]` reserved flag bits of the fixed header are not as specified.
    #[error("[MQTT-2.1.3-1] invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidHeaderFlags {
        /// The packet type nibble.
        packet_type: u8,
        /// The low nibble that was received.
        flags: u8,
    },
    /// `[MQTT-3.3.1-4]` a PUBLISH with both QoS bits set.
    #[error("[MQTT-3.3.1-4] QoS 3 is not a valid QoS")]
    InvalidQoS,
    /// `[MQTT-3.3.1-2]` the DUP flag is set on a QoS 0 PUBLISH.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// A Variable Byte Integer that runs past four bytes.
    #[error("variable byte integer longer than 4 bytes")]
    VarIntTooLong,
    /// `[MQTT-1.5.5-1]` a Variable Byte Integer not in its shortest form.
    #[error("[MQTT-1.5.5-1] variable byte integer not minimally encoded")]
    VarIntNotMinimal,
    /// The whole packet (fixed header included) is larger than the Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max}")]
    PacketTooLarge {
        /// The size the fixed header announces.
        size: u64,
        /// The limit in force.
        max: u32,
    },
    /// The Remaining Length ended in the middle of a field.
    #[error("remaining length ends inside the packet content")]
    Truncated,
    /// Bytes were left over after the last field of the packet.
    #[error("{0} trailing bytes after the packet content")]
    TrailingBytes(usize),
    /// `[MQTT-1.5.4-1]` a string is not well-formed UTF-8 (surrogates included).
    #[error("[MQTT-1.5.4-1] string is not well-formed UTF-8")]
    InvalidUtf8,
    /// `[MQTT-1.5.4-2]` a string holds U+0000.
    #[error("[MQTT-1.5.4-2] string contains U+0000")]
    NullCharacter,
    /// MQTT 5 §1.5.4: a topic name, topic filter, client identifier, user name or will topic
    /// holds a Disallowed Unicode code point (U+0001..U+001F, U+007F..U+009F, or a
    /// non-character), and the decoder rejects them
    /// ([`Decoder::reject_disallowed_code_points`](crate::Decoder::reject_disallowed_code_points)).
    #[error("MQTT 5 §1.5.4: string contains a Disallowed Unicode code point")]
    DisallowedCodePoint,
    /// A PUBLISH or will topic name that breaks the topic rules.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE topic filter that breaks the topic rules.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A zero-length PUBLISH topic with no Topic Alias (MQTT 5 §3.3.2.1).
    #[error("[MQTT-4.7.3-1] empty topic name without a topic alias")]
    EmptyTopicWithoutAlias,
    /// `[MQTT-3.3.2-14]` a Response Topic with a wildcard, or an empty one.
    #[error("[MQTT-3.3.2-14] invalid response topic: {0}")]
    InvalidResponseTopic(TopicError),
    /// `[MQTT-2.2.1-3]` a Packet Identifier of 0.
    #[error("[MQTT-2.2.1-3] packet identifier is 0")]
    ZeroPacketId,
    /// A property identifier that does not exist (MQTT 5 §2.2.2.2).
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property that is not allowed on this packet type (MQTT 5 §2.2.2.2).
    #[error("property {property:#04x} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property identifier.
        property: u8,
        /// The packet (or will) it appeared in.
        packet: &'static str,
    },
    /// A property that may appear once appeared twice.
    #[error("property {0:#04x} appears more than once")]
    DuplicateProperty(u8),
    /// A property value outside its range (Receive Maximum 0, Maximum QoS 2, …).
    #[error("property {0:#04x} has a value outside its range")]
    InvalidPropertyValue(u8),
    /// `[MQTT-3.3.2-8]` a Topic Alias of 0.
    #[error("[MQTT-3.3.2-8] topic alias is 0")]
    ZeroTopicAlias,
    /// Authentication Data without an Authentication Method (MQTT 5 §3.1.2.11.10).
    #[error("authentication data without an authentication method")]
    AuthDataWithoutMethod,
    /// A reason code byte that is not defined for this packet.
    #[error("reason code {code:#04x} is not valid in {packet}")]
    InvalidReasonCode {
        /// The byte received.
        code: u8,
        /// The packet it appeared in.
        packet: &'static str,
    },
    /// `[MQTT-3.1.2-1]` the protocol name is neither `MQTT` nor, for level 3, `MQIsdp`.
    #[error("[MQTT-3.1.2-1] unsupported protocol name")]
    UnsupportedProtocolName,
    /// `[MQTT-3.1.2-2]` a protocol level other than 3, 4 or 5.
    #[error("[MQTT-3.1.2-2] unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// `[MQTT-3.1.2-3]` the reserved bit of the CONNECT flags is set.
    #[error("[MQTT-3.1.2-3] reserved CONNECT flag is set")]
    ConnectReservedFlag,
    /// `[MQTT-3.1.2-11]`, `[MQTT-3.1.2-13]` will QoS or will retain set without the will flag.
    #[error("[MQTT-3.1.2-11] will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    /// `[MQTT-3.1.2-12]` a will QoS of 3.
    #[error("[MQTT-3.1.2-12] will QoS 3")]
    InvalidWillQoS,
    /// MQTT 3.1.1 `[MQTT-3.1.2-22]`: the password flag is set without the user name flag.
    #[error("[MQTT-3.1.2-22] password flag set without user name flag (MQTT 3.1.1)")]
    PasswordWithoutUsername,
    /// `[MQTT-3.2.2-1]` reserved CONNACK acknowledge flags are set.
    #[error("[MQTT-3.2.2-1] reserved CONNACK flags are set")]
    ConnAckReservedFlags,
    /// `[MQTT-3.2.2-6]` Session Present set on a failed CONNACK.
    #[error("[MQTT-3.2.2-6] session present set with a failure reason code")]
    SessionPresentOnFailure,
    /// `[MQTT-3.8.3-2]`, `[MQTT-3.10.3-2]` a SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("[MQTT-3.8.3-2] SUBSCRIBE or UNSUBSCRIBE without a topic filter")]
    NoTopicFilters,
    /// `[MQTT-3.8.3-5]` reserved bits of the subscription options are set.
    #[error("[MQTT-3.8.3-5] reserved subscription option bits are set")]
    SubscriptionOptionsReserved,
    /// A requested QoS of 3 in SUBSCRIBE (MQTT 5 §3.8.3.1).
    #[error("subscription requests QoS 3")]
    InvalidSubscriptionQoS,
    /// A Retain Handling value of 3 (MQTT 5 §3.8.3.1).
    #[error("retain handling 3 is reserved")]
    InvalidRetainHandling,
    /// `[MQTT-3.8.3-4]` No Local set on a shared subscription.
    #[error("[MQTT-3.8.3-4] no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A string or binary field longer than its two-byte length prefix can describe. Only
    /// constructors give this; a decoded field can never be too long.
    #[error("{0} bytes do not fit a two-byte length prefix")]
    StringTooLong(usize),
    /// A packet that MQTT 3.1.1 and 3.1 do not have (AUTH).
    #[error("packet type {0} does not exist before MQTT 5")]
    PacketNotInVersion(u8),
}

impl Error {
    /// The MQTT 5 reason code that answers this error, in CONNACK or DISCONNECT.
    ///
    /// This is the one place where errors are mapped to the wire (MQTT 5 §4.13). Rules that the
    /// specification names a Protocol Error give 0x82; anything that cannot be parsed as the
    /// specification describes gives 0x81; a few rules have a more specific code.
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::ReservedPacketType(_)
            | Self::InvalidHeaderFlags { .. }
            | Self::InvalidQoS
            | Self::DupOnQoS0
            | Self::VarIntTooLong
            | Self::VarIntNotMinimal
            | Self::Truncated
            | Self::TrailingBytes(_)
            | Self::InvalidUtf8
            | Self::NullCharacter
            | Self::DisallowedCodePoint
            | Self::UnknownProperty(_)
            | Self::PropertyNotAllowed { .. }
            | Self::InvalidReasonCode { .. }
            | Self::ConnectReservedFlag
            | Self::WillFlagsWithoutWill
            | Self::InvalidWillQoS
            | Self::PasswordWithoutUsername
            | Self::ConnAckReservedFlags
            | Self::SubscriptionOptionsReserved
            | Self::StringTooLong(_)
            | Self::PacketNotInVersion(_) => ReasonCode::MalformedPacket,
            Self::EmptyTopicWithoutAlias
            | Self::InvalidResponseTopic(_)
            | Self::ZeroPacketId
            | Self::DuplicateProperty(_)
            | Self::InvalidPropertyValue(_)
            | Self::AuthDataWithoutMethod
            | Self::SessionPresentOnFailure
            | Self::NoTopicFilters
            | Self::InvalidSubscriptionQoS
            | Self::InvalidRetainHandling
            | Self::NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocolName | Self::UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            Self::InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            Self::InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            Self::ZeroTopicAlias => ReasonCode::TopicAliasInvalid,
        }
    }
}
