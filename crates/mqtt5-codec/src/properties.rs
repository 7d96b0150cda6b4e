//! Typed properties (MQTT 5 §2.2.2): one struct per packet, each holding only the properties
//! that packet may carry.
//!
//! Decoding rejects an unknown identifier or one not allowed in the packet
//! ([`Error::UnknownProperty`], [`Error::PropertyNotAllowed`], Malformed Packet), a second copy
//! of a single-valued property ([`Error::DuplicateProperty`], Protocol Error) and a value out of
//! range ([`Error::InvalidPropertyValue`]). User Properties keep their order
//! (`[MQTT-3.3.2-18]`).

use core::fmt;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use crate::wire::{Reader, Sink, VARINT_MAX, measure, varint_len};
use crate::{Error, MqttString, PayloadFormat, QoS, TopicName, UserProperty};

/// Property identifiers (MQTT 5 §2.2.2.2, Table 2-4).
pub mod id {
    /// Payload Format Indicator.
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Message Expiry Interval.
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// Content Type.
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response Topic.
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation Data.
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription Identifier.
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// Session Expiry Interval.
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// Assigned Client Identifier.
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// Server Keep Alive.
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Authentication Method.
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Authentication Data.
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Request Problem Information.
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Will Delay Interval.
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Request Response Information.
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// Response Information.
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// Server Reference.
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Reason String.
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive Maximum.
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic Alias Maximum.
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic Alias.
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Maximum QoS.
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Retain Available.
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// User Property.
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum Packet Size.
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Wildcard Subscription Available.
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Subscription Identifier Available.
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Shared Subscription Available.
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

    /// Every defined identifier.
    pub const ALL: [u8; 27] = [
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        SUBSCRIPTION_IDENTIFIER,
        SESSION_EXPIRY_INTERVAL,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        WILL_DELAY_INTERVAL,
        REQUEST_RESPONSE_INFORMATION,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        REASON_STRING,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        TOPIC_ALIAS,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    ];
}

/// How one property's value is read, written, shown and detached.
trait Kind {
    const ID: u8;
    type Value: Clone + PartialEq + Eq;
    fn read(r: &mut Reader) -> Result<Self::Value, Error>;
    fn write<S: Sink>(v: &Self::Value, s: &mut S);
    fn show(v: &Self::Value, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn detach(v: &Self::Value) -> Self::Value {
        v.clone()
    }
}

fn read_bool(r: &mut Reader, id: u8) -> Result<bool, Error> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::InvalidPropertyValue(id)),
    }
}

macro_rules! kind {
    ($name:ident, $id:expr, $ty:ty, |$r:ident| $read:expr, |$v:ident, $s:ident| $write:expr) => {
        kind!(
            $name,
            $id,
            $ty,
            |$r| $read,
            |$v, $s| $write,
            |v, f| fmt::Debug::fmt(v, f),
            |v| v.clone()
        );
    };
    ($name:ident, $id:expr, $ty:ty, |$r:ident| $read:expr, |$v:ident, $s:ident| $write:expr,
     |$sv:ident, $f:ident| $show:expr, |$dv:ident| $detach:expr) => {
        struct $name;
        impl Kind for $name {
            const ID: u8 = $id;
            type Value = $ty;
            fn read($r: &mut Reader) -> Result<$ty, Error> {
                $read
            }
            fn write<S: Sink>($v: &$ty, $s: &mut S) {
                $write
            }
            fn show($sv: &$ty, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $show
            }
            fn detach($dv: &$ty) -> $ty {
                $detach
            }
        }
    };
}

macro_rules! string_kind {
    ($name:ident, $id:expr) => {
        kind!(
            $name,
            $id,
            MqttString,
            |r| MqttString::read(r),
            |v, s| v.write(s),
            |v, f| fmt::Debug::fmt(v, f),
            |v| v.detach()
        );
    };
}

macro_rules! binary_kind {
    ($name:ident, $id:expr) => {
        kind!(
            $name,
            $id,
            Bytes,
            |r| r.binary(),
            |v, s| s.put_binary(v),
            |v, f| write!(f, "<{} bytes>", v.len()),
            |v| Bytes::copy_from_slice(v)
        );
    };
}

macro_rules! bool_kind {
    ($name:ident, $id:expr) => {
        kind!($name, $id, bool, |r| read_bool(r, $id), |v, s| s
            .put_u8(u8::from(*v)));
    };
}

macro_rules! u32_kind {
    ($name:ident, $id:expr) => {
        kind!($name, $id, u32, |r| r.u32(), |v, s| s.put_u32(*v));
    };
}

kind!(
    PayloadFormatIndicator,
    id::PAYLOAD_FORMAT_INDICATOR,
    PayloadFormat,
    |r| match r.u8()? {
        0 => Ok(PayloadFormat::Unspecified),
        1 => Ok(PayloadFormat::Utf8),
        _ => Err(Error::InvalidPropertyValue(id::PAYLOAD_FORMAT_INDICATOR)),
    },
    |v, s| s.put_u8(*v as u8)
);
u32_kind!(MessageExpiryInterval, id::MESSAGE_EXPIRY_INTERVAL);
string_kind!(ContentType, id::CONTENT_TYPE);
kind!(
    ResponseTopic,
    id::RESPONSE_TOPIC,
    TopicName,
    |r| TopicName::from_bytes(r.binary_copy()?).map_err(|e| match e {
        Error::InvalidTopicName(t) => Error::InvalidResponseTopic(t),
        other => other,
    }),
    |v, s| v.as_mqtt_str().write(s),
    |v, f| fmt::Debug::fmt(v, f),
    |v| v.detach()
);
binary_kind!(CorrelationData, id::CORRELATION_DATA);
kind!(
    SubscriptionIdentifier,
    id::SUBSCRIPTION_IDENTIFIER,
    NonZeroU32,
    |r| NonZeroU32::new(r.varint()?)
        .ok_or(Error::InvalidPropertyValue(id::SUBSCRIPTION_IDENTIFIER)),
    |v, s| s.put_varint(v.get().min(VARINT_MAX))
);
u32_kind!(SessionExpiryInterval, id::SESSION_EXPIRY_INTERVAL);
string_kind!(AssignedClientIdentifier, id::ASSIGNED_CLIENT_IDENTIFIER);
kind!(
    ServerKeepAlive,
    id::SERVER_KEEP_ALIVE,
    u16,
    |r| r.u16(),
    |v, s| s.put_u16(*v)
);
string_kind!(AuthenticationMethod, id::AUTHENTICATION_METHOD);
binary_kind!(AuthenticationData, id::AUTHENTICATION_DATA);
bool_kind!(RequestProblemInformation, id::REQUEST_PROBLEM_INFORMATION);
u32_kind!(WillDelayInterval, id::WILL_DELAY_INTERVAL);
bool_kind!(RequestResponseInformation, id::REQUEST_RESPONSE_INFORMATION);
string_kind!(ResponseInformation, id::RESPONSE_INFORMATION);
string_kind!(ServerReference, id::SERVER_REFERENCE);
string_kind!(ReasonString, id::REASON_STRING);
kind!(
    ReceiveMaximum,
    id::RECEIVE_MAXIMUM,
    NonZeroU16,
    |r| NonZeroU16::new(r.u16()?).ok_or(Error::InvalidPropertyValue(id::RECEIVE_MAXIMUM)),
    |v, s| s.put_u16(v.get())
);
kind!(
    TopicAliasMaximum,
    id::TOPIC_ALIAS_MAXIMUM,
    u16,
    |r| r.u16(),
    |v, s| s.put_u16(*v)
);
kind!(
    TopicAlias,
    id::TOPIC_ALIAS,
    NonZeroU16,
    |r| NonZeroU16::new(r.u16()?).ok_or(Error::ZeroTopicAlias),
    |v, s| s.put_u16(v.get())
);
kind!(
    MaximumQoS,
    id::MAXIMUM_QOS,
    QoS,
    |r| match r.u8()? {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(Error::InvalidPropertyValue(id::MAXIMUM_QOS)),
    },
    // Maximum QoS 2 is expressed by leaving the property out (MQTT 5 §3.2.2.3.4).
    |v, s| s.put_u8((*v).min(QoS::AtLeastOnce).as_u8())
);
bool_kind!(RetainAvailable, id::RETAIN_AVAILABLE);
kind!(
    MaximumPacketSize,
    id::MAXIMUM_PACKET_SIZE,
    NonZeroU32,
    |r| NonZeroU32::new(r.u32()?).ok_or(Error::InvalidPropertyValue(id::MAXIMUM_PACKET_SIZE)),
    |v, s| s.put_u32(v.get())
);
bool_kind!(
    WildcardSubscriptionAvailable,
    id::WILDCARD_SUBSCRIPTION_AVAILABLE
);
bool_kind!(
    SubscriptionIdentifierAvailable,
    id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
);
bool_kind!(
    SharedSubscriptionAvailable,
    id::SHARED_SUBSCRIPTION_AVAILABLE
);

/// A property struct kept out of line, allocated only when some property is set.
///
/// Most PUBLISH packets carry no properties, yet [`PublishProperties`] is several times the
/// size of everything else in a [`Publish`](crate::Publish). Keeping it behind this box makes a
/// property-less PUBLISH small and cheap to move and drop. Reading goes through `Deref`, which
/// lends a shared empty value when nothing is set, so `publish.properties.topic_alias` reads as
/// if the struct were inline. The first `DerefMut` allocates; assign a whole struct with
/// `From`/`Into`. Equality, hashing of contents and `Debug` look only at the values, never at
/// whether a box exists.
#[derive(Clone, Default)]
pub struct PropertiesBox<T>(Option<Box<T>>);

/// A property struct with a shared, immutable empty value for [`PropertiesBox`] to lend.
pub trait EmptyProperties: Default + 'static {
    /// The empty value.
    fn empty() -> &'static Self;
    /// True when no property is set.
    fn is_empty_properties(&self) -> bool;
}

impl<T: EmptyProperties> PropertiesBox<T> {
    /// No properties, and no allocation.
    pub const fn new() -> Self {
        Self(None)
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(T::is_empty_properties)
    }

    /// Takes the properties out, leaving none.
    pub fn take(&mut self) -> T {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    /// Mutable access only if a box already exists; unlike `DerefMut` it never allocates.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }
}

impl<T: EmptyProperties> From<T> for PropertiesBox<T> {
    fn from(value: T) -> Self {
        if value.is_empty_properties() {
            Self(None)
        } else {
            Self(Some(Box::new(value)))
        }
    }
}

impl<T: EmptyProperties> core::ops::Deref for PropertiesBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or_else(|| T::empty())
    }
}

impl<T: EmptyProperties> core::ops::DerefMut for PropertiesBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: EmptyProperties + PartialEq> PartialEq for PropertiesBox<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: EmptyProperties + Eq> Eq for PropertiesBox<T> {}

impl<T: EmptyProperties + fmt::Debug> fmt::Debug for PropertiesBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PropertiesBox<PublishProperties> {
    /// Reads a PUBLISH property block, allocating only when it is not empty.
    #[inline(always)]
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Error> {
        // Most PUBLISH packets carry no properties: a single zero byte, checked inline.
        if r.skip_zero_byte() {
            return Ok(Self(None));
        }
        Self::read_block(r)
    }

    /// The rest of [`PropertiesBox::read`]: a non-empty (or malformed) property block.
    #[inline(never)]
    fn read_block(r: &mut Reader) -> Result<Self, Error> {
        let len = r.varint()?;
        let block = r.sub(len as usize)?;
        let mut p = Box::<PublishProperties>::default();
        p.read_body(block)?;
        Ok(Self(Some(p)))
    }

    /// Copies every string and binary value into its own allocation.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self(self.0.as_deref().map(|p| Box::new(p.detach())))
    }
}

/// Shows an optional property value through its [`Kind`].
struct ShowOpt<'a, K: Kind>(&'a Option<K::Value>);

impl<K: Kind> fmt::Debug for ShowOpt<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => {
                f.write_str("Some(")?;
                K::show(v, f)?;
                f.write_str(")")
            }
            None => f.write_str("None"),
        }
    }
}

/// The error for a property identifier that this packet does not take.
fn unexpected(property: u32, packet: &'static str) -> Error {
    match u8::try_from(property) {
        Ok(p) if id::ALL.contains(&p) => Error::PropertyNotAllowed {
            property: p,
            packet,
        },
        _ => Error::UnknownProperty(property),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

macro_rules! properties {
    (
        $(#[$meta:meta])*
        $name:ident, $packet:literal {
            $( $(#[$fmeta:meta])* $field:ident: $kind:ident => $ty:ty, )*
        }
        $( many { $(#[$mmeta:meta])* $mfield:ident: $mkind:ident => $mty:ty } )?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
            $( $(#[$mmeta])* pub $mfield: Vec<$mty>, )?
            /// User Properties (0x26), in the order they were sent.
            pub user_properties: Vec<UserProperty>,
        }

        impl EmptyProperties for $name {
            fn empty() -> &'static Self {
                static EMPTY: $name = $name {
                    $( $field: None, )*
                    $( $mfield: Vec::new(), )?
                    user_properties: Vec::new(),
                };
                &EMPTY
            }

            fn is_empty_properties(&self) -> bool {
                self.is_empty()
            }
        }

        impl $name {
            /// True when no property is set; the property block then encodes as one zero byte.
            pub fn is_empty(&self) -> bool {
                $( self.$field.is_none() && )*
                $( self.$mfield.is_empty() && )?
                self.user_properties.is_empty()
            }

            /// Copies every string and binary value into its own allocation.
            #[must_use]
            pub fn detach(&self) -> Self {
                Self {
                    $( $field: self.$field.as_ref().map(<$kind as Kind>::detach), )*
                    $( $mfield: self.$mfield.iter().map(<$mkind as Kind>::detach).collect(), )?
                    user_properties: self.user_properties.iter().map(UserProperty::detach).collect(),
                }
            }

            /// Reads a property block: its Variable Byte Integer length, then the properties.
            #[allow(dead_code, reason = "PUBLISH reads its properties through PropertiesBox")]
            pub(crate) fn read(r: &mut Reader) -> Result<Self, Error> {
                let len = r.varint()?;
                let mut p = Self::default();
                if len > 0 {
                    p.read_body(r.sub(len as usize)?)?;
                }
                Ok(p)
            }

            /// Reads a property block (its length, then the properties) into `self`, which
            /// must be empty; for large structs that are filled in place.
            #[allow(dead_code, reason = "only the packets built in place use it")]
            pub(crate) fn read_block(&mut self, r: &mut Reader) -> Result<(), Error> {
                let len = r.varint()?;
                if len > 0 {
                    self.read_body(r.sub(len as usize)?)?;
                }
                Ok(())
            }

            /// Reads the properties of a block whose length has been read; `r` covers exactly
            /// the block. `self` must be empty.
            pub(crate) fn read_body(&mut self, mut r: Reader) -> Result<(), Error> {
                debug_assert!(self.is_empty(), "properties read into a non-empty value");
                let p = self;
                while !r.is_empty() {
                    let property = r.varint()?;
                    match property {
                        $( x if x == u32::from(<$kind as Kind>::ID) => {
                            let v = <$kind as Kind>::read(&mut r)?;
                            set_once(&mut p.$field, v, <$kind as Kind>::ID)?;
                        } )*
                        $( x if x == u32::from(<$mkind as Kind>::ID) => {
                            p.$mfield.push(<$mkind as Kind>::read(&mut r)?);
                        } )?
                        x if x == u32::from(id::USER_PROPERTY) => {
                            p.user_properties.push(UserProperty::read(&mut r)?);
                        }
                        other => return Err(unexpected(other, $packet)),
                    }
                }
                Ok(())
            }

            fn write_body<S: Sink>(&self, s: &mut S) {
                $( if let Some(v) = &self.$field {
                    s.put_varint(u32::from(<$kind as Kind>::ID));
                    <$kind as Kind>::write(v, s);
                } )*
                $( for v in &self.$mfield {
                    s.put_varint(u32::from(<$mkind as Kind>::ID));
                    <$mkind as Kind>::write(v, s);
                } )?
                for up in &self.user_properties {
                    s.put_varint(u32::from(id::USER_PROPERTY));
                    up.write(s);
                }
            }

            /// The length of the properties, without their length prefix.
            fn body_len(&self) -> usize {
                if self.is_empty() {
                    return 0;
                }
                measure(|c| self.write_body(c))
            }

            /// Writes the property block: length prefix, then the properties.
            pub(crate) fn write<S: Sink>(&self, s: &mut S) {
                let len = self.body_len();
                s.put_varint(u32::try_from(len).unwrap_or(VARINT_MAX));
                self.write_body(s);
            }

            /// The encoded size of the property block, its length prefix included.
            pub fn encoded_len(&self) -> usize {
                let len = self.body_len();
                varint_len(u32::try_from(len).unwrap_or(VARINT_MAX)) + len
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut d = f.debug_struct(stringify!($name));
                $( if self.$field.is_some() {
                    d.field(stringify!($field), &ShowOpt::<$kind>(&self.$field));
                } )*
                $( if !self.$mfield.is_empty() {
                    d.field(stringify!($mfield), &self.$mfield);
                } )?
                if !self.user_properties.is_empty() {
                    d.field("user_properties", &self.user_properties);
                }
                d.finish()
            }
        }
    };
}

properties! {
    /// CONNECT properties (MQTT 5 §3.1.2.11).
    ConnectProperties, "CONNECT" {
        /// Session Expiry Interval in seconds (0x11); absent means 0.
        session_expiry_interval: SessionExpiryInterval => u32,
        /// Receive Maximum (0x21): QoS 1 and 2 publications the client accepts at once.
        receive_maximum: ReceiveMaximum => NonZeroU16,
        /// Maximum Packet Size (0x27) the client accepts.
        maximum_packet_size: MaximumPacketSize => NonZeroU32,
        /// Topic Alias Maximum (0x22) the client accepts; absent means 0.
        topic_alias_maximum: TopicAliasMaximum => u16,
        /// Request Response Information (0x19).
        request_response_information: RequestResponseInformation => bool,
        /// Request Problem Information (0x17); absent means true.
        request_problem_information: RequestProblemInformation => bool,
        /// Authentication Method (0x15) for extended authentication.
        authentication_method: AuthenticationMethod => MqttString,
        /// Authentication Data (0x16); never shown by `Debug`.
        authentication_data: AuthenticationData => Bytes,
    }
}

properties! {
    /// Will properties, in the CONNECT payload (MQTT 5 §3.1.3.2).
    WillProperties, "will properties" {
        /// Will Delay Interval in seconds (0x18).
        will_delay_interval: WillDelayInterval => u32,
        /// Payload Format Indicator (0x01).
        payload_format_indicator: PayloadFormatIndicator => PayloadFormat,
        /// Message Expiry Interval in seconds (0x02).
        message_expiry_interval: MessageExpiryInterval => u32,
        /// Content Type (0x03).
        content_type: ContentType => MqttString,
        /// Response Topic (0x08).
        response_topic: ResponseTopic => TopicName,
        /// Correlation Data (0x09).
        correlation_data: CorrelationData => Bytes,
    }
}

properties! {
    /// CONNACK properties (MQTT 5 §3.2.2.3).
    ConnAckProperties, "CONNACK" {
        /// Session Expiry Interval in seconds (0x11), when the server changes it.
        session_expiry_interval: SessionExpiryInterval => u32,
        /// Receive Maximum (0x21) of the server.
        receive_maximum: ReceiveMaximum => NonZeroU16,
        /// Maximum QoS (0x24): 0 or 1; absent means 2.
        maximum_qos: MaximumQoS => QoS,
        /// Retain Available (0x25); absent means true.
        retain_available: RetainAvailable => bool,
        /// Maximum Packet Size (0x27) the server accepts.
        maximum_packet_size: MaximumPacketSize => NonZeroU32,
        /// Assigned Client Identifier (0x12).
        assigned_client_identifier: AssignedClientIdentifier => MqttString,
        /// Topic Alias Maximum (0x22) the server accepts.
        topic_alias_maximum: TopicAliasMaximum => u16,
        /// Reason String (0x1F).
        reason_string: ReasonString => MqttString,
        /// Wildcard Subscription Available (0x28); absent means true.
        wildcard_subscription_available: WildcardSubscriptionAvailable => bool,
        /// Subscription Identifiers Available (0x29); absent means true.
        subscription_identifiers_available: SubscriptionIdentifierAvailable => bool,
        /// Shared Subscription Available (0x2A); absent means true.
        shared_subscription_available: SharedSubscriptionAvailable => bool,
        /// Server Keep Alive (0x13) in seconds.
        server_keep_alive: ServerKeepAlive => u16,
        /// Response Information (0x1A).
        response_information: ResponseInformation => MqttString,
        /// Server Reference (0x1C).
        server_reference: ServerReference => MqttString,
        /// Authentication Method (0x15).
        authentication_method: AuthenticationMethod => MqttString,
        /// Authentication Data (0x16); never shown by `Debug`.
        authentication_data: AuthenticationData => Bytes,
    }
}

properties! {
    /// PUBLISH properties (MQTT 5 §3.3.2.3).
    PublishProperties, "PUBLISH" {
        /// Payload Format Indicator (0x01).
        payload_format_indicator: PayloadFormatIndicator => PayloadFormat,
        /// Message Expiry Interval in seconds (0x02).
        message_expiry_interval: MessageExpiryInterval => u32,
        /// Topic Alias (0x23), never 0 (`[MQTT-3.3.2-8]`).
        topic_alias: TopicAlias => NonZeroU16,
        /// Response Topic (0x08), with no wildcards (`[MQTT-3.3.2-14]`).
        response_topic: ResponseTopic => TopicName,
        /// Correlation Data (0x09); `Debug` shows only its length.
        correlation_data: CorrelationData => Bytes,
        /// Content Type (0x03).
        content_type: ContentType => MqttString,
    }
    many {
        /// Subscription Identifiers (0x0B), one per matching subscription (server to client).
        subscription_identifiers: SubscriptionIdentifier => NonZeroU32
    }
}

properties! {
    /// Properties of PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5 §3.4.2.2).
    AckProperties, "an acknowledgement" {
        /// Reason String (0x1F).
        reason_string: ReasonString => MqttString,
    }
}

/// PUBACK properties (MQTT 5 §3.4.2.2).
pub type PubAckProperties = AckProperties;
/// PUBREC properties (MQTT 5 §3.5.2.2).
pub type PubRecProperties = AckProperties;
/// PUBREL properties (MQTT 5 §3.6.2.2).
pub type PubRelProperties = AckProperties;
/// PUBCOMP properties (MQTT 5 §3.7.2.2).
pub type PubCompProperties = AckProperties;

properties! {
    /// SUBSCRIBE properties (MQTT 5 §3.8.2.1).
    SubscribeProperties, "SUBSCRIBE" {
        /// Subscription Identifier (0x0B), 1 to 268,435,455.
        subscription_identifier: SubscriptionIdentifier => NonZeroU32,
    }
}

properties! {
    /// SUBACK properties (MQTT 5 §3.9.2.1).
    SubAckProperties, "SUBACK" {
        /// Reason String (0x1F).
        reason_string: ReasonString => MqttString,
    }
}

properties! {
    /// UNSUBSCRIBE properties (MQTT 5 §3.10.2.1): User Properties only.
    UnsubscribeProperties, "UNSUBSCRIBE" {}
}

properties! {
    /// UNSUBACK properties (MQTT 5 §3.11.2.1).
    UnsubAckProperties, "UNSUBACK" {
        /// Reason String (0x1F).
        reason_string: ReasonString => MqttString,
    }
}

properties! {
    /// DISCONNECT properties (MQTT 5 §3.14.2.2).
    DisconnectProperties, "DISCONNECT" {
        /// Session Expiry Interval (0x11): client to server only (`[MQTT-3.14.2-2]`).
        session_expiry_interval: SessionExpiryInterval => u32,
        /// Reason String (0x1F).
        reason_string: ReasonString => MqttString,
        /// Server Reference (0x1C).
        server_reference: ServerReference => MqttString,
    }
}

properties! {
    /// AUTH properties (MQTT 5 §3.15.2.2).
    AuthProperties, "AUTH" {
        /// Authentication Method (0x15).
        authentication_method: AuthenticationMethod => MqttString,
        /// Authentication Data (0x16); never shown by `Debug`.
        authentication_data: AuthenticationData => Bytes,
        /// Reason String (0x1F).
        reason_string: ReasonString => MqttString,
    }
}

/// Authentication Data is a Protocol Error without an Authentication Method
/// (MQTT 5 §3.1.2.11.10, §3.2.2.3.18, §3.15.2.2.3).
pub(crate) fn check_auth_pair(
    method: Option<&MqttString>,
    data: Option<&Bytes>,
) -> Result<(), Error> {
    if data.is_some() && method.is_none() {
        return Err(Error::AuthDataWithoutMethod);
    }
    Ok(())
}
