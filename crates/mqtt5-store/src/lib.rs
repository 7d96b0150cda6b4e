//! Persistence for the mqtt5 broker.
//!
//! The broker core never writes anything itself: it emits batches of [`StoreOp`] in
//! `Action::Persist`, and the driver hands each batch to a [`Store`], which applies it
//! atomically and in order. At start-up [`Store::recover`] returns everything a restart must
//! not lose.
//!
//! [`MemoryStore`] keeps it all in `BTreeMap`s: it is what the broker's tests use and the model
//! that other backends are checked against. The SQLite backend (`SqliteStore`, behind the
//! default `sqlite` feature) is issue 4.
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

use mqtt5_codec::{ProtocolVersion, Publish, SubscriptionOptions, Will};

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
    /// Records that an inbound QoS 2 packet id awaits PUBREL ([MQTT-4.3.3-9]): a resent
    /// PUBLISH with that id must not be routed again, even after a restart.
    IncomingQos2 {
        /// The client identifier.
        client_id: String,
        /// The packet identifier.
        packet_id: u16,
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
    /// The Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_interval: u32,
    /// When the session ends if no client takes it over; `None` while a client is connected.
    pub expires_at_ms: Option<UnixMillis>,
    /// The Will Message, if one is pending.
    pub will: Option<Will>,
}

/// Where a delivery stands in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Queued: not yet sent.
    Queued,
    /// Sent with this packet id, waiting for PUBACK or PUBREC.
    Sent(u16),
    /// PUBREC received, PUBREL sent with this packet id, waiting for PUBCOMP.
    Released(u16),
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
    pub qos: u8,
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
    pub incoming_qos2: std::collections::BTreeSet<u16>,
}

/// A stored message with its expiry.
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
}

/// A persistence backend (STYLE.md §6).
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
}

/// A store in memory: the test double and the model for other backends.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    state: Recovered,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state, for inspection.
    pub const fn state(&self) -> &Recovered {
        &self.state
    }
}

impl Store for MemoryStore {
    fn recover(&mut self) -> Result<Recovered, Error> {
        Ok(self.state.clone())
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error> {
        // Atomic: apply to a copy, keep it only if every op succeeds.
        let mut next = self.state.clone();
        for op in ops {
            apply_one(&mut next, op)?;
        }
        self.state = next;
        Ok(())
    }
}

fn session<'a>(state: &'a mut Recovered, client_id: &str) -> Result<&'a mut StoredSession, Error> {
    state
        .sessions
        .get_mut(client_id)
        .ok_or_else(|| Error::NoSession(client_id.to_owned()))
}

fn apply_one(state: &mut Recovered, op: &StoreOp) -> Result<(), Error> {
    match op {
        StoreOp::ClientConnected(c) => {
            let entry = state
                .clients
                .entry(c.client_id.clone())
                .or_insert_with(|| ClientSummary {
                    username: None,
                    protocol: c.protocol,
                    peer: String::new(),
                    first_seen_ms: c.at_ms,
                    last_connect_ms: c.at_ms,
                    last_disconnect_ms: None,
                    last_disconnect_reason: None,
                    connect_count: 0,
                });
            entry.username.clone_from(&c.username);
            entry.protocol = c.protocol;
            entry.peer.clone_from(&c.peer);
            entry.last_connect_ms = c.at_ms;
            entry.connect_count += 1;
        }
        StoreOp::ClientDisconnected {
            client_id,
            at_ms,
            reason,
        } => {
            if let Some(entry) = state.clients.get_mut(client_id) {
                entry.last_disconnect_ms = Some(*at_ms);
                entry.last_disconnect_reason = Some(reason.clone());
            }
        }
        StoreOp::SessionSaved(record) => match state.sessions.get_mut(&record.client_id) {
            Some(s) => s.record = record.clone(),
            None => {
                state.sessions.insert(
                    record.client_id.clone(),
                    StoredSession {
                        record: record.clone(),
                        subscriptions: BTreeMap::new(),
                        deliveries: BTreeMap::new(),
                        incoming_qos2: std::collections::BTreeSet::new(),
                    },
                );
            }
        },
        StoreOp::SessionDeleted { client_id } => {
            state.sessions.remove(client_id);
        }
        StoreOp::Subscribed {
            client_id,
            filter,
            options,
            identifier,
        } => {
            session(state, client_id)?.subscriptions.insert(
                filter.clone(),
                StoredSubscription {
                    options: *options,
                    identifier: *identifier,
                },
            );
        }
        StoreOp::Unsubscribed { client_id, filter } => {
            session(state, client_id)?.subscriptions.remove(filter);
        }
        StoreOp::RetainSet {
            message,
            expires_at_ms,
        } => {
            state.retained.insert(
                message.topic().to_owned(),
                StoredMessage {
                    message: message.clone(),
                    expires_at_ms: *expires_at_ms,
                },
            );
        }
        StoreOp::RetainCleared { topic } => {
            state.retained.remove(topic);
        }
        StoreOp::MessageStored {
            id,
            message,
            expires_at_ms,
        } => {
            state.messages.insert(
                *id,
                StoredMessage {
                    message: message.clone(),
                    expires_at_ms: *expires_at_ms,
                },
            );
        }
        StoreOp::MessageDeleted { id } => {
            state.messages.remove(id);
        }
        StoreOp::Delivery(d) => {
            if !state.messages.contains_key(&d.message_id) {
                return Err(Error::NoMessage(d.message_id));
            }
            session(state, &d.client_id)?
                .deliveries
                .insert(d.seq, d.clone());
        }
        StoreOp::DeliveryDeleted { client_id, seq } => {
            session(state, client_id)?.deliveries.remove(seq);
        }
        StoreOp::IncomingQos2 {
            client_id,
            packet_id,
            pending,
        } => {
            let s = session(state, client_id)?;
            if *pending {
                s.incoming_qos2.insert(*packet_id);
            } else {
                s.incoming_qos2.remove(packet_id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            client_id: id.into(),
            protocol: ProtocolVersion::V5,
            expiry_interval: 60,
            expires_at_ms: None,
            will: None,
        }
    }

    #[test]
    fn a_failing_batch_changes_nothing() {
        let mut store = MemoryStore::new();
        store.apply(&[StoreOp::SessionSaved(record("a"))]).unwrap();
        let before = store.recover().unwrap();
        let err = store.apply(&[
            StoreOp::SessionDeleted {
                client_id: "a".into(),
            },
            StoreOp::Unsubscribed {
                client_id: "missing".into(),
                filter: "x".into(),
            },
        ]);
        assert!(matches!(err, Err(Error::NoSession(_))));
        assert_eq!(store.recover().unwrap(), before);
    }

    #[test]
    fn client_records_count_connections_and_keep_the_last_disconnect() {
        let mut store = MemoryStore::new();
        let connect = |at_ms| {
            StoreOp::ClientConnected(ClientRecord {
                client_id: "c".into(),
                username: Some("u".into()),
                protocol: ProtocolVersion::V3_1_1,
                peer: "[::1]:4000".into(),
                at_ms,
            })
        };
        store
            .apply(&[
                connect(10),
                StoreOp::ClientDisconnected {
                    client_id: "c".into(),
                    at_ms: 20,
                    reason: "normal".into(),
                },
                connect(30),
            ])
            .unwrap();
        let c = &store.recover().unwrap().clients["c"];
        assert_eq!(
            (c.first_seen_ms, c.last_connect_ms, c.connect_count),
            (10, 30, 2)
        );
        assert_eq!(c.last_disconnect_ms, Some(20));
        assert_eq!(c.last_disconnect_reason.as_deref(), Some("normal"));
    }
}
