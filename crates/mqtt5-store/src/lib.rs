//! Persistence for the mqtt5 broker.
//!
//! The broker core never writes anything itself: it emits batches of [`StoreOp`] in
//! `Action::Persist`, and the driver hands each batch to a [`Store`], which applies it
//! atomically and in order. At start-up [`Store::recover`] returns everything a restart must
//! not lose.
//!
//! [`MemoryStore`] keeps it all in `BTreeMap`s: it is what the broker's tests use and the model
//! that other backends are checked against. `SqliteStore` (behind the default `sqlite`
//! feature) keeps it in one SQLite file, and [`Writer`] applies batches on a thread of its own
//! with group commit.
//!
//! Users and access rules also have a smaller view, [`AuthState`] from
//! [`Store::auth_state`], with a version that changes whenever they change: what an
//! administration tool and a broker that reloads them need, without the sessions and
//! messages of [`Store::recover`].
//!
//! ```
//! use mqtt5_store::{ClientRecord, MemoryStore, Store, StoreOp};
//! use mqtt5_codec::ProtocolVersion;
//!
//! let mut store = MemoryStore::new();
//! store
//!     .apply(&[StoreOp::ClientConnected(ClientRecord {
//!         client_id: "sensor-1".into(),
//!         username: None,
//!         protocol: ProtocolVersion::V5,
//!         peer: "127.0.0.1:50000".into(),
//!         at_ms: 1_700_000_000_000,
//!     })])
//!     .unwrap();
//! let recovered = store.recover().unwrap();
//! assert_eq!(recovered.clients["sensor-1"].connect_count, 1);
//! ```

use std::collections::BTreeMap;

use mqtt5_codec::{PacketId, ProtocolVersion, Publish, QoS, SubscriptionOptions, Will};

/// Milliseconds since the Unix epoch: the wall-clock time of a record.
pub type UnixMillis = u64;

/// One change to the persistent state. Ops are applied in order; a batch is atomic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// A client connected: creates its record or updates it, and counts the connection.
    ClientConnected(ClientRecord),
    /// A client's connection ended.
    ClientDisconnected {
        /// The client identifier.
        client_id: String,
        /// When it ended.
        at_ms: UnixMillis,
        /// Why, in words: the DISCONNECT reason, a protocol error, a lost connection.
        reason: String,
    },
    /// Creates or replaces a session's persistent part.
    SessionSaved(SessionRecord),
    /// Deletes a session with its subscriptions, queue and in-flight messages.
    SessionDeleted {
        /// The client identifier.
        client_id: String,
    },
    /// Creates or replaces one subscription of a session.
    Subscribed {
        /// The client identifier.
        client_id: String,
        /// The whole filter, `$share/…` prefix included.
        filter: String,
        /// Its options.
        options: SubscriptionOptions,
        /// Its Subscription Identifier, if any.
        identifier: Option<u32>,
    },
    /// Removes one subscription of a session.
    Unsubscribed {
        /// The client identifier.
        client_id: String,
        /// The whole filter.
        filter: String,
    },
    /// Sets (or replaces) the retained message of its topic.
    RetainSet {
        /// The message, detached from any read buffer.
        message: Publish,
        /// Its QoS (see [`stored_publish`]).
        qos: QoS,
        /// When it expires, if it has a Message Expiry Interval.
        expires_at_ms: Option<UnixMillis>,
    },
    /// Clears the retained message of a topic.
    RetainCleared {
        /// The topic name.
        topic: String,
    },
    /// Stores a message once, under an id that queue and in-flight entries refer to.
    MessageStored {
        /// The message id, unique for the broker's lifetime.
        id: u64,
        /// The message as published, detached from any read buffer.
        message: Publish,
        /// Its QoS (see [`stored_publish`]).
        qos: QoS,
        /// When it expires, if it has a Message Expiry Interval.
        expires_at_ms: Option<UnixMillis>,
    },
    /// Forgets a stored message; the broker emits it once no queue or in-flight entry holds it.
    MessageDeleted {
        /// The message id.
        id: u64,
    },
    /// Appends a message to a session's queue, or updates it in the session's in-flight
    /// window (by `seq`, the delivery order).
    Delivery(DeliveryRecord),
    /// Removes a delivery from a session (acknowledged, expired, dropped).
    DeliveryDeleted {
        /// The client identifier.
        client_id: String,
        /// The delivery's sequence number in its session.
        seq: u64,
    },
    /// Creates or replaces a user: its name and password hash (a PHC string; never the
    /// password itself). Replacing a user drops its SCRAM credentials: they were derived from
    /// the old password.
    UserSet {
        /// The user name.
        username: String,
        /// The password hash, e.g. an argon2id PHC string.
        password_hash: String,
    },
    /// Removes a user, and its SCRAM credentials.
    UserRemoved {
        /// The user name.
        username: String,
    },
    /// Sets the SCRAM-SHA-256 credentials of an existing user (a no-op for an unknown one):
    /// the salt, iteration count and keys derived from its password, in PostgreSQL's
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` format; never the password.
    UserScramSet {
        /// The user name.
        username: String,
        /// The credentials string.
        credentials: String,
    },
    /// Adds an access rule (kept in insertion order; adding an existing rule is a no-op).
    AclAdded(AclRecord),
    /// Removes an access rule.
    AclRemoved(AclRecord),
    /// Records that an inbound QoS 2 packet id awaits PUBREL ([MQTT-4.3.3-9]): a resent
    /// PUBLISH with that id must not be routed again, even after a restart.
    IncomingQos2 {
        /// The client identifier.
        client_id: String,
        /// The packet identifier.
        packet_id: PacketId,
        /// True when set (PUBREC sent), false when released (PUBCOMP sent).
        pending: bool,
    },
}

/// What a client record says about one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The client identifier.
    pub client_id: String,
    /// The user name it authenticated as.
    pub username: Option<String>,
    /// The protocol version it speaks.
    pub protocol: ProtocolVersion,
    /// The peer address, as the driver reports it.
    pub peer: String,
    /// When it connected.
    pub at_ms: UnixMillis,
}

/// The persistent part of a session (MQTT 5 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier.
    pub client_id: String,
    /// The protocol version of the client that owns it.
    pub protocol: ProtocolVersion,
    /// The identity that owns the session (the broker's rendering of a user name, a
    /// certificate subject, or anonymous). A client of another identity may not take it over.
    /// `None` for sessions stored before owners were recorded: the next client to resume the
    /// session claims it.
    pub owner: Option<String>,
    /// The Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_interval: u32,
    /// When the session ends if no client takes it over; `None` while a client is connected.
    pub expires_at_ms: Option<UnixMillis>,
    /// The Will Message, if one is pending.
    pub will: Option<Will>,
}

/// One access rule as stored: the parts of a Mosquitto ACL line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclRecord {
    /// Whom it applies to: `"anonymous"`, `"user NAME"` or `"pattern"`.
    pub scope: String,
    /// `"read"`, `"write"`, `"readwrite"` or `"deny"`.
    pub access: String,
    /// The topic filter, `%c` / `%u` unsubstituted in patterns.
    pub topic: String,
}

/// Where a delivery stands in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Queued: not yet sent.
    Queued,
    /// Sent with this packet id, waiting for PUBACK or PUBREC.
    Sent(PacketId),
    /// PUBREC received, PUBREL sent with this packet id, waiting for PUBCOMP.
    Released(PacketId),
}

/// One message on its way to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The client identifier.
    pub client_id: String,
    /// The delivery's sequence number in its session: the order of delivery.
    pub seq: u64,
    /// The stored message ([`StoreOp::MessageStored`]).
    pub message_id: u64,
    /// The QoS it is delivered with.
    pub qos: QoS,
    /// The Retain flag it is delivered with.
    pub retain: bool,
    /// The Subscription Identifiers it is delivered with.
    pub subscription_ids: Vec<u32>,
    /// Where it stands.
    pub state: DeliveryState,
}

/// A client record as stored: the last connection, and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    /// The user name of the last connection.
    pub username: Option<String>,
    /// The protocol version of the last connection.
    pub protocol: ProtocolVersion,
    /// The peer address of the last connection.
    pub peer: String,
    /// The first connection.
    pub first_seen_ms: UnixMillis,
    /// The last connection.
    pub last_connect_ms: UnixMillis,
    /// The end of the last connection, if it has ended.
    pub last_disconnect_ms: Option<UnixMillis>,
    /// Why the last connection ended.
    pub last_disconnect_reason: Option<String>,
    /// How many times the client connected.
    pub connect_count: u64,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its Subscription Identifier.
    pub identifier: Option<u32>,
}

/// A session as stored, with everything that hangs off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session's own record.
    pub record: SessionRecord,
    /// Subscriptions by filter.
    pub subscriptions: BTreeMap<String, StoredSubscription>,
    /// Deliveries by sequence number.
    pub deliveries: BTreeMap<u64, DeliveryRecord>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: std::collections::BTreeSet<PacketId>,
}

/// The PUBLISH a store keeps for `message` published at `qos`: the message as it is when its
/// own delivery already says `qos`; otherwise (a will's message, which no client numbered)
/// with `qos` and packet identifier 1. A stored PUBLISH is a message's form on disk, and the
/// identifier of a QoS 1 or 2 PUBLISH is part of that form, not of the message: the broker
/// gives every delivery its own.
pub fn stored_publish(message: &Publish, qos: QoS) -> Publish {
    if message.qos() == qos {
        return message.clone();
    }
    let mut stored = message.clone();
    let id = message.delivery.packet_id().unwrap_or(PacketId::MIN);
    stored.delivery = mqtt5_codec::Delivery::new(qos, id);
    stored
}

/// A stored message with its expiry. Its QoS is the QoS of its PUBLISH ([`stored_publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message.
    pub message: Publish,
    /// When it expires.
    pub expires_at_ms: Option<UnixMillis>,
}

/// Everything [`Store::recover`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Client records by client id.
    pub clients: BTreeMap<String, ClientSummary>,
    /// Sessions by client id.
    pub sessions: BTreeMap<String, StoredSession>,
    /// Retained messages by topic.
    pub retained: BTreeMap<String, StoredMessage>,
    /// Stored messages by id.
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Users: name to password hash.
    pub users: BTreeMap<String, String>,
    /// SCRAM-SHA-256 credentials of the users that have them: name to credentials string
    /// (see [`StoreOp::UserScramSet`]). Every name is also in `users`.
    pub scram: BTreeMap<String, String>,
    /// Access rules, in the order they were added.
    pub acl: Vec<AclRecord>,
}

/// The users, their SCRAM credentials and the access rules, read together: what
/// [`Store::auth_state`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthState {
    /// A number that changes whenever a user or an access rule is added, changed or removed
    /// (in SQLite, by triggers, so also when another process changes them). It only grows.
    pub version: u64,
    /// Users: name to password hash.
    pub users: BTreeMap<String, String>,
    /// SCRAM-SHA-256 credentials of the users that have them, as in [`Recovered::scram`].
    pub scram: BTreeMap<String, String>,
    /// Access rules, in the order they were added.
    pub acl: Vec<AclRecord>,
}

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An op refers to a session that does not exist.
    #[error("no session for client {0:?}")]
    NoSession(String),
    /// A delivery refers to a message that is not stored.
    #[error("delivery refers to unknown message {0}")]
    NoMessage(u64),
    /// The database file is not a database, or is damaged. It is left untouched.
    #[error("database {path} is corrupt or not an mqtt5 database: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What SQLite said.
        detail: String,
    },
    /// The database was written by a newer mqtt5 with a schema this one does not know.
    #[error("database {path} has schema version {found}; this mqtt5 supports up to {supported}")]
    NewerSchema {
        /// The file.
        path: String,
        /// The schema version in the file.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The disk (or the file system quota) is full: new persistent work must be refused.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// Any other failure of the backing storage (I/O, permissions, locking).
    #[error("storage error: {0}")]
    Storage(String),
    /// The store's writer thread is gone.
    #[error("the store writer thread has stopped")]
    WriterGone,
}

/// A persistence backend (`docs/architecture.md`, "The store").
pub trait Store: Send {
    /// Reads back the whole persistent state.
    ///
    /// # Errors
    /// When the backing storage cannot be read.
    fn recover(&mut self) -> Result<Recovered, Error>;

    /// Applies a batch of ops atomically and in order: all of them, or none.
    ///
    /// # Errors
    /// When an op is inconsistent with the state (the batch is then not applied), or the
    /// backing storage fails.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error>;

    /// Reads the users, their SCRAM credentials and the access rules, consistently, with the
    /// version they are at. The default takes them from [`recover`](Self::recover) with
    /// version 0; backends answer without reading sessions and messages.
    ///
    /// # Errors
    /// When the backing storage cannot be read.
    fn auth_state(&mut self) -> Result<AuthState, Error> {
        let recovered = self.recover()?;
        Ok(AuthState {
            version: 0,
            users: recovered.users,
            scram: recovered.scram,
            acl: recovered.acl,
        })
    }

    /// Whether a user of this name exists.
    ///
    /// # Errors
    /// When the backing storage cannot be read.
    fn user_exists(&mut self, username: &str) -> Result<bool, Error> {
        Ok(self.auth_state()?.users.contains_key(username))
    }
}

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "writer")]
mod writer;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::*;
#[cfg(feature = "writer")]
pub use writer::*;
