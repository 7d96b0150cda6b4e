//! The network connections the core knows, each with its protocol state, its limits and its
//! topic aliases.
//!
//! ```text
//!  handle_connection --> AwaitConnect --CONNECT--+--> Authenticating --AUTH...--+
//!                                                +--> AwaitingVerdict --verdict-+
//!                                                +--> Refusing --delay--> CONNACK refusal, closed
//!                                                +------------------------------+--> Connected
//!                                        Connected --AUTH 0x19--> Reauthenticating --> Connected
//! ```

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Instant;

use mqtt5_codec::{ConnAckReason, Connect, MqttString, ProtocolVersion, TopicName};

use crate::auth::AuthExchange;
use crate::id_hash::IdHash;
use crate::session::SessionId;
use crate::types::{ConnId, PeerInfo};

/// Where a connection stands.
pub(crate) enum ConnState {
    /// Waiting for CONNECT (`[MQTT-3.1.0-1]`).
    AwaitConnect,
    /// In an enhanced authentication exchange started by CONNECT.
    Authenticating {
        /// The CONNECT, completed when the exchange succeeds.
        connect: Box<Connect>,
        /// The exchange.
        exchange: Box<dyn AuthExchange>,
        /// The Authentication Method (boxed: it is rare, and every `Conn` holds a state).
        method: Box<MqttString>,
    },
    /// The driver is checking the CONNECT's password ([`crate::Passwords::Deferred`]).
    AwaitingVerdict {
        /// The CONNECT, completed when the password is good.
        connect: Box<Connect>,
    },
    /// The credentials failed: the refusal waits for the login delay
    /// ([`crate::timers::Timer::Refusal`]).
    Refusing {
        /// The CONNACK reason.
        reason: ConnAckReason,
        /// The Reason String.
        why: &'static str,
    },
    /// CONNACK sent; the session is attached.
    Connected,
    /// Connected, and re-authenticating (AUTH 0x19).
    Reauthenticating {
        /// The exchange.
        exchange: Box<dyn AuthExchange>,
        /// The Authentication Method (boxed, as above).
        method: Box<MqttString>,
    },
}

impl ConnState {
    /// Whether CONNACK accepted the connection.
    pub(crate) const fn is_connected(&self) -> bool {
        matches!(self, Self::Connected | Self::Reauthenticating { .. })
    }
}

/// One network connection.
pub(crate) struct Conn {
    /// The peer and its listener's policies. (Boxed, and dropped once CONNECT is accepted:
    /// only authentication and the client record use it, and an idle connection should cost
    /// little.)
    pub(crate) peer: Option<Box<PeerInfo>>,
    /// Its state.
    pub(crate) state: ConnState,
    /// The protocol its CONNECT announced.
    pub(crate) protocol: ProtocolVersion,
    /// The session, once connected.
    pub(crate) session: Option<SessionId>,
    /// 1.5 × the keep-alive in force, in milliseconds, 0 when keep-alive is off
    /// (`[MQTT-3.1.2-22]`). At most 1.5 × 65,535 s, which fits.
    pub(crate) keep_alive_ms: u32,
    /// When the last packet arrived.
    pub(crate) last_seen: Instant,
    /// The tick this connection's check is armed for ([`crate::timers::Timers::arm`]; 0:
    /// none): the connect timeout until CONNECT completes, then the keep-alive. Other ticks'
    /// entries for it are stale and skipped.
    pub(crate) tick: u64,
    /// The client's Receive Maximum, capped by the configuration: the in-flight window.
    pub(crate) window: u16,
    /// The client's Maximum Packet Size (`[MQTT-3.1.2-24]`).
    pub(crate) max_packet_size: u32,
    /// The client's Topic Alias Maximum: how many aliases the broker may set towards it.
    pub(crate) alias_max: u16,
    /// The topic aliases of the connection, allocated with the first one: most connections
    /// never use any, and an idle connection should cost little.
    pub(crate) aliases: Option<Box<Aliases>>,
    /// Whether the client asked for Reason Strings and User Properties on failures.
    pub(crate) problem_information: bool,
    /// The driver's buffer towards this client is full: deliveries wait in the session queue.
    pub(crate) congested: bool,
    /// The driver holds this connection's next packet, unread by the core, until the store
    /// catches up ([`crate::Broker::handle_input_paused`]). Changed only through
    /// [`Connections::set_input_paused`], which counts them.
    input_paused: bool,
    /// The Authentication Method the connection authenticated with, if any: a
    /// re-authentication must use the same one (`[MQTT-4.12.1-1]`).
    pub(crate) auth_method: Option<Box<MqttString>>,
}

impl Conn {
    /// Whether the driver holds this connection's input back ([`Conn::input_paused`]).
    pub(crate) const fn input_paused(&self) -> bool {
        self.input_paused
    }

    /// A new connection from `peer`, waiting for CONNECT; `window` is the broker's in-flight
    /// limit until the client's Receive Maximum is known.
    pub(crate) fn new(peer: PeerInfo, now: Instant, window: u16) -> Self {
        Self {
            peer: Some(Box::new(peer)),
            state: ConnState::AwaitConnect,
            protocol: ProtocolVersion::V5,
            session: None,
            keep_alive_ms: 0,
            last_seen: now,
            tick: 0,
            window,
            max_packet_size: mqtt5_codec::MAX_PACKET_SIZE,
            alias_max: 0,
            aliases: None,
            problem_information: true,
            congested: false,
            input_paused: false,
            auth_method: None,
        }
    }
}

/// The topic aliases of one connection.
#[derive(Default)]
pub(crate) struct Aliases {
    /// Aliases the client set towards the broker (`[MQTT-3.3.2-7]`: per connection).
    pub(crate) inbound: HashMap<u16, TopicName>,
    /// Aliases the broker set towards the client, by topic.
    pub(crate) outbound: HashMap<Arc<str>, NonZeroU16>,
}

/// Every connection, by the driver's id, and how many completed CONNECT.
#[derive(Default)]
pub(crate) struct Connections {
    /// Boxed: the table's empty slots then cost a pointer, not a `Conn`.
    map: HashMap<ConnId, Box<Conn>, IdHash>,
    /// Connections attached to a session.
    connected: usize,
    /// Connections whose input the driver holds back ([`Conn::input_paused`]).
    input_paused: usize,
}

impl Connections {
    /// Adds a connection; false when the id is taken.
    pub(crate) fn insert(&mut self, id: ConnId, conn: Conn) -> bool {
        if self.map.contains_key(&id) {
            return false;
        }
        self.map.insert(id, Box::new(conn));
        true
    }

    /// Connection `id`.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.map.get(&id).map(|c| &**c)
    }

    /// Connection `id`, to change.
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(&id).map(|c| &mut **c)
    }

    /// The session of connection `id`, once it is connected.
    pub(crate) fn session_of(&self, id: ConnId) -> Option<SessionId> {
        self.get(id).and_then(|c| c.session)
    }

    /// Attaches connection `id` to session `sid`: it is connected from now on.
    pub(crate) fn attach(&mut self, id: ConnId, sid: SessionId) {
        if let Some(c) = self.map.get_mut(&id) {
            if c.session.is_none() {
                self.connected += 1;
            }
            c.session = Some(sid);
            c.state = ConnState::Connected;
        }
    }

    /// Forgets connection `id`; returns it.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Box<Conn>> {
        let conn = self.map.remove(&id)?;
        if conn.session.is_some() {
            self.connected = self.connected.saturating_sub(1);
        }
        if conn.input_paused {
            self.input_paused = self.input_paused.saturating_sub(1);
        }
        Some(conn)
    }

    /// Notes whether the driver holds connection `id`'s input back; returns whether that
    /// changed.
    pub(crate) fn set_input_paused(&mut self, id: ConnId, paused: bool) -> bool {
        let Some(c) = self.map.get_mut(&id) else {
            return false;
        };
        if c.input_paused == paused {
            return false;
        }
        c.input_paused = paused;
        if paused {
            self.input_paused += 1;
        } else {
            self.input_paused = self.input_paused.saturating_sub(1);
        }
        true
    }

    /// How many connections' input the driver holds back.
    pub(crate) const fn input_paused(&self) -> usize {
        self.input_paused
    }

    /// Every connection's id.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.map.keys().copied().collect()
    }

    /// How many connections there are.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many are attached to a session.
    pub(crate) const fn connected(&self) -> usize {
        self.connected
    }

    /// Whether connection `id` cannot take more output now.
    pub(crate) fn is_congested(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(|c| c.congested)
    }
}
