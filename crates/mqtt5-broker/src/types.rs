//! The vocabulary between the core and its driver: connection ids, peers, actions, errors.

use std::net::SocketAddr;

use mqtt5_codec::{Packet, ProtocolVersion};
use mqtt5_store::StoreOp;

/// A connection, as the driver names it. The driver picks the numbers; the core only compares
/// them. A number must not be reused while the core still knows the connection (until the
/// driver has executed its `Close` or reported it lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the driver knows about a new connection, and the policies of the listener it came
/// through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Whether clients without a User Name may connect through this connection's listener;
    /// `None` takes [`crate::Config::allow_anonymous`].
    pub allow_anonymous: Option<bool>,
    /// Whether this listener ignores User Names and Passwords: every client connects as
    /// anonymous (which [`PeerInfo::allow_anonymous`] must then allow), whatever it presents.
    /// `None` takes [`crate::Config::ignore_credentials`].
    pub ignore_credentials: Option<bool>,
    /// Whether the client identifier is replaced by the authenticated user name (Mosquitto's
    /// `use_username_as_client_id`); `None` takes
    /// [`crate::Config::use_username_as_client_id`].
    pub use_username_as_client_id: Option<bool>,
    /// The subject of the client's verified certificate, once the TLS handshake showed one
    /// ([`crate::Broker::handle_client_certificate`]).
    pub certificate: Option<String>,
}

impl PeerInfo {
    /// A peer at `addr`, under the configuration's policies.
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            allow_anonymous: None,
            ignore_credentials: None,
            use_username_as_client_id: None,
            certificate: None,
        }
    }
}

/// Who a client is, as far as sessions go: a session belongs to the identity that created
/// it, and only that identity may resume or take it over (MQTT 5 §5.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A client that presented no User Name (and no client certificate).
    Anonymous,
    /// A client authenticated as this user, by password or by an enhanced method.
    User(Box<str>),
    /// A client without a User Name that presented this verified client certificate (its
    /// subject, as the driver renders it).
    Certificate(Box<str>),
}

impl Identity {
    /// The identity as the store keeps it: `anonymous`, `user:NAME` or `cert:SUBJECT`.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::User(name) => format!("user:{name}"),
            Self::Certificate(subject) => format!("cert:{subject}"),
        }
    }

    /// Reads an identity the store kept; `None` for a string no identity renders to.
    pub fn from_stored(stored: &str) -> Option<Self> {
        if stored == "anonymous" {
            return Some(Self::Anonymous);
        }
        if let Some(name) = stored.strip_prefix("user:") {
            return Some(Self::User(name.into()));
        }
        stored
            .strip_prefix("cert:")
            .map(|subject| Self::Certificate(subject.into()))
    }

    /// The user name, for a user.
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::User(name) => Some(name),
            _ => None,
        }
    }
}

impl core::fmt::Display for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("anonymous"),
            Self::User(name) => write!(f, "user {name}"),
            Self::Certificate(subject) => write!(f, "certificate {subject}"),
        }
    }
}

/// A password the driver must check, off the core's thread
/// ([`crate::Passwords::Deferred`]). The core waits for
/// [`crate::Broker::handle_password_verdict`] before it answers the CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    /// The connection whose CONNECT it is.
    pub conn: ConnId,
    /// The client identifier of the CONNECT.
    pub client_id: String,
    /// The User Name.
    pub username: String,
    /// The Password field, if any.
    pub password: Option<bytes::Bytes>,
}

impl core::fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the password.
        f.debug_struct("PasswordCheck")
            .field("conn", &self.conn)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Something the operator should hear about: the driver logs it. The core has no logger of
/// its own; these carry what a log line needs, so that the driver never reads packets to
/// find out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A CONNECT arrived: the client identifier and User Name it presents (neither proven
    /// yet).
    Connecting {
        /// The connection.
        conn: ConnId,
        /// The Client Identifier of the CONNECT (empty when the server is to assign one).
        client_id: String,
        /// The User Name of the CONNECT.
        username: Option<String>,
    },
    /// A CONNECT was accepted: the identity it authenticated as and the client identifier it
    /// got (assigned, or replaced by the user name, or its own).
    Accepted {
        /// The connection.
        conn: ConnId,
        /// The client identifier in force.
        client_id: String,
        /// Who the client is.
        identity: Identity,
        /// Whether it resumed a session.
        session_present: bool,
    },
    /// A CONNECT was refused with this CONNACK reason (3.1.1 clients get its return code).
    Refused {
        /// The connection.
        conn: ConnId,
        /// The reason.
        reason: mqtt5_codec::ConnAckReason,
    },
    /// The core ended a connection, and why, in words: the client's DISCONNECT, a protocol
    /// violation, a timeout, a takeover, a lost connection, a refusal.
    Ended {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// A CONNECT could not be answered: its CONNACK, even without the optional properties,
    /// is larger than the Maximum Packet Size the client announced, which the broker must
    /// not exceed (`[MQTT-3.1.2-24]`). The connection was closed without a CONNACK, and
    /// without touching any session.
    ConnAckTooLarge {
        /// The connection.
        conn: ConnId,
        /// The reason the CONNACK would have carried.
        reason: mqtt5_codec::ConnAckReason,
        /// The CONNACK's size in bytes, without its optional properties.
        size: usize,
        /// The client's Maximum Packet Size.
        maximum: u32,
    },
    /// A CONNECT asked for a session that belongs to another identity: refused, and the
    /// session left as it was.
    SessionOwnedByOther {
        /// The connection refused.
        conn: ConnId,
        /// The client identifier asked for.
        client_id: String,
        /// Who asked.
        identity: Identity,
        /// Who owns the session.
        owner: Identity,
    },
    /// A re-authentication (AUTH 0x19) proved another identity than the connection's:
    /// the connection is closed with DISCONNECT 0x87.
    ReauthenticatedAsOther {
        /// The connection.
        conn: ConnId,
        /// The identity of the connection.
        identity: Identity,
        /// The user the exchange proved.
        proved: String,
    },
    /// A retained message was not stored: the retained store is at its limit
    /// ([`crate::Config::max_retained_messages`], [`crate::Config::max_retained_bytes`]).
    RetainedRefused {
        /// The topic.
        topic: String,
        /// The message's size in bytes.
        bytes: usize,
    },
    /// Messages queued for sessions reached [`crate::Config::max_queued_bytes_total`]: new
    /// persistent work is refused until they drain (`full` = true), or they drained below it
    /// (`full` = false).
    QueueMemory {
        /// Whether the limit is reached.
        full: bool,
        /// The bytes held.
        bytes: usize,
    },
    /// A CONNECT for a new persistent session was refused (CONNACK 0x97, 3.1.1: return code
    /// 3): the broker keeps [`crate::Config::max_persistent_sessions`] of them already.
    SessionLimit {
        /// The connection refused.
        conn: ConnId,
        /// The client identifier it asked a session for.
        client_id: String,
        /// The limit.
        limit: usize,
    },
}

/// What the core asks its driver to do, in order (`docs/architecture.md`, "The sans-IO core").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send a packet on a connection, in the protocol version the connection's
    /// CONNECT announced.
    Send {
        /// The connection.
        conn: ConnId,
        /// The packet.
        packet: Packet,
    },
    /// Apply these ops to the store, after those of every earlier `Persist`, all or none. In
    /// sync durability they are a barrier only for the actions [`Action::barrier`] says wait:
    /// an acknowledgement that comes after them among the actions of the same input waits
    /// until they are committed ([`Barrier::OwnInput`]), a CONNACK with Session Present 1
    /// waits for every `Persist` before it whatever its input stored ([`Barrier::Earlier`]),
    /// and the actions of one connection keep their order (a `Send` or `Close` waits behind
    /// an earlier one of its connection that waits). Everything else may run at once
    /// (`docs/architecture.md`, "The persist barrier").
    Persist(Vec<StoreOp>),
    /// Close the connection once everything sent before has been flushed. The core forgets the
    /// connection; the driver must not report it lost afterwards (doing so is harmless).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Encode and decode this connection's packets in `version` from now on: the version its
    /// CONNECT announced (or 3.1.1, to refuse a CONNECT of an unknown version in a form every
    /// client reads). It comes before any packet of that version is sent.
    Protocol {
        /// The connection.
        conn: ConnId,
        /// The protocol version.
        version: ProtocolVersion,
    },
    /// Check a password off the core's thread and answer with
    /// [`crate::Broker::handle_password_verdict`]. Until then the connection's CONNECT is
    /// pending: the driver should not hand the core further packets of that connection.
    CheckPassword(PasswordCheck),
    /// Tell the operator (the driver logs it).
    Notice(Notice),
}

/// What an action waits for when acknowledgements must not run ahead of the store (sync
/// durability): see [`Action::barrier`]. Batches are committed in the order of their
/// `Persist` actions, so waiting for one batch is waiting for every batch before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// Waits for no batch. It keeps its connection's order: it runs after the earlier actions
    /// of its connection, so it waits while one of them does.
    Order,
    /// An acknowledgement of what its own input stored (PUBACK, PUBREC, PUBREL, PUBCOMP,
    /// SUBACK, UNSUBACK, a CONNACK without a session present): if a `Persist` came before it
    /// among the actions of its input, it waits until that batch is committed; otherwise as
    /// [`Barrier::Order`]. State that an earlier input of the same connection stored is ahead
    /// of it in its connection's order.
    OwnInput,
    /// A CONNACK with Session Present 1: it vouches for a session that earlier inputs, of
    /// other connections too (the connection it took the session over from, or the last one
    /// before it resumed), may have stored, and the client answers it by relying on that
    /// state (it resends its unacknowledged PUBLISH and PUBREL, which the broker may then
    /// acknowledge without storing anything new). It waits until every batch before it is
    /// committed, whether its input stored anything or not.
    Earlier,
}

impl Action {
    /// What this action waits for in sync durability ([`Barrier`]). Only a `Send` of an
    /// acknowledgement ever waits for a batch; a `Close` keeps its connection's order; the
    /// other actions are the driver's to run at once.
    #[must_use]
    pub fn barrier(&self) -> Barrier {
        let Self::Send { packet, .. } = self else {
            return Barrier::Order;
        };
        match packet {
            Packet::ConnAck(ack) if ack.session_present => Barrier::Earlier,
            Packet::ConnAck(_)
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_) => Barrier::OwnInput,
            _ => Barrier::Order,
        }
    }

    /// Whether this action acknowledges a packet the client sent, promising that what it
    /// carried is stored (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK). When the batch it waits
    /// for fails, the driver withholds it: the client keeps its packet and sends it again.
    #[must_use]
    pub fn is_acknowledgement(&self) -> bool {
        matches!(
            self,
            Self::Send {
                packet: Packet::PubAck(_)
                    | Packet::PubRec(_)
                    | Packet::PubComp(_)
                    | Packet::SubAck(_)
                    | Packet::UnsubAck(_),
                ..
            }
        )
    }
}

/// Misuse of the core's API (a peer's protocol violation is never an `Err`: it becomes
/// actions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `handle_connection` was called with a connection id the core still knows.
    #[error("connection {0:?} is already open")]
    ConnectionExists(ConnId),
    /// `restore` was called on a broker that already has state.
    #[error("restore needs a fresh broker, with no sessions, connections or retained messages")]
    NotFresh,
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}
