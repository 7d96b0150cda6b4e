//! CONNECT (MQTT 5 §3.1, MQTT 3.1.1 §3.1).

use core::fmt;

use bytes::Bytes;

use crate::properties::{ConnectProperties, WillProperties, check_auth_pair};
use crate::wire::{Reader, Sink};
use crate::{Error, MqttString, ProtocolVersion, QoS, TopicName};

/// A CONNECT packet: the first packet of every connection.
///
/// It carries its own protocol version, so it decodes before the connection's version is known.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol name and level: `MQIsdp`/3, `MQTT`/4 or `MQTT`/5.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) or Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// Properties (MQTT 5 only; empty for 3.1.1).
    pub properties: ConnectProperties,
    /// The Client Identifier; may be empty (`[MQTT-3.1.3-6]`).
    pub client_id: MqttString,
    /// The Will Message, when the Will Flag is set.
    pub will: Option<Will>,
    /// The User Name, when its flag is set.
    pub username: Option<MqttString>,
    /// The Password, when its flag is set. `Debug` never shows it.
    pub password: Option<Bytes>,
}

/// The Will Message of a CONNECT (MQTT 5 §3.1.2.5, §3.1.3.2–3.1.3.4).
#[derive(Clone, PartialEq, Eq)]
pub struct Will {
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (MQTT 5 only).
    pub properties: WillProperties,
    /// Will Topic: a topic name (`[MQTT-3.1.3-11]`).
    pub topic: TopicName,
    /// Will Payload.
    pub payload: Bytes,
}

impl Will {
    /// Copies topic, payload and properties into their own allocations.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self {
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.detach(),
            topic: self.topic.detach(),
            payload: Bytes::copy_from_slice(&self.payload),
        }
    }
}

impl fmt::Debug for Will {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Will")
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("properties", &self.properties)
            .finish()
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("properties", &self.properties)
            .finish()
    }
}

impl Default for Connect {
    /// An MQTT 5 CONNECT with Clean Start, keep-alive 60 and an empty client identifier.
    fn default() -> Self {
        Self {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            client_id: MqttString::empty(),
            will: None,
            username: None,
            password: None,
        }
    }
}

impl Connect {
    /// Copies every string, the password and the will into their own allocations.
    #[must_use]
    pub fn detach(&self) -> Self {
        Self {
            protocol: self.protocol,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            properties: self.properties.detach(),
            client_id: self.client_id.detach(),
            will: self.will.as_ref().map(Will::detach),
            username: self.username.as_ref().map(MqttString::detach),
            password: self.password.as_deref().map(Bytes::copy_from_slice),
        }
    }
}

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

impl Connect {
    /// Reads a CONNECT; with `strict`, a Disallowed Unicode code point in the client
    /// identifier, the will topic or the user name is [`Error::DisallowedCodePoint`].
    pub(crate) fn read(mut r: Reader, strict: bool) -> Result<Box<Self>, Error> {
        // The name is only compared, so it is borrowed rather than sliced off the frame. Any
        // bytes other than the two known names, valid UTF-8 or not, are an unknown protocol.
        let name_len = r.u16()?;
        let name = r.borrow(usize::from(name_len))?;
        let level = r.u8()?;
        let protocol = match (name, level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", other) => return Err(Error::UnsupportedProtocolLevel(other)),
            _ => return Err(Error::UnsupportedProtocolName),
        };
        let flags = r.u8()?;
        // MQTT 3.1 left the bit unused without requiring it to be 0; 3.1.1 and 5.0 do.
        if flags & FLAG_RESERVED != 0 && protocol != ProtocolVersion::V3_1 {
            return Err(Error::ConnectReservedFlag);
        }
        let has_will = flags & FLAG_WILL != 0;
        let will_qos = (flags >> FLAG_WILL_QOS_SHIFT) & 0x03;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !has_will && (will_qos != 0 || will_retain) {
            return Err(Error::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_u8(will_qos).ok_or(Error::InvalidWillQoS)?;
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        if has_password && !has_username && !protocol.is_v5() {
            return Err(Error::PasswordWithoutUsername);
        }
        // CONNECT is over 400 bytes; it is built inside its box and filled in place rather
        // than assembled on the stack and moved.
        let mut c = Box::new(Self {
            protocol,
            clean_start: flags & FLAG_CLEAN != 0,
            keep_alive: r.u16()?,
            properties: ConnectProperties::default(),
            client_id: MqttString::empty(),
            will: None,
            username: None,
            password: None,
        });
        if protocol.is_v5() {
            c.properties.read_block(&mut r)?;
            check_auth_pair(
                c.properties.authentication_method.as_ref(),
                c.properties.authentication_data.as_ref(),
            )?;
        }
        c.client_id = MqttString::read_name(&mut r, strict)?;
        if has_will {
            let will = c.will.insert(Will {
                qos: will_qos,
                retain: will_retain,
                properties: WillProperties::default(),
                topic: TopicName::empty(),
                payload: Bytes::new(),
            });
            if protocol.is_v5() {
                will.properties.read_block(&mut r)?;
            }
            will.topic = TopicName::read_will_topic(r.binary()?, strict)?;
            will.payload = r.binary()?;
        }
        if has_username {
            c.username = Some(MqttString::read_name(&mut r, strict)?);
        }
        if has_password {
            c.password = Some(r.binary()?);
        }
        r.finish()?;
        Ok(c)
    }

    /// Writes the variable header and payload. The version is the packet's own.
    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        let v5 = self.protocol.is_v5();
        s.put_binary(self.protocol.protocol_name().as_bytes());
        s.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | (will.qos.as_u8() << FLAG_WILL_QOS_SHIFT);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        s.put_u8(flags);
        s.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(s);
        }
        self.client_id.write(s);
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(s);
            }
            will.topic.as_mqtt_str().write(s);
            s.put_binary(&will.payload);
        }
        if let Some(username) = &self.username {
            username.write(s);
        }
        if let Some(password) = &self.password {
            s.put_binary(password);
        }
    }
}
