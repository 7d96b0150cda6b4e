//! [`MemoryStore`]: the persistent state in `BTreeMap`s.

use std::collections::BTreeMap;

use crate::{
    AuthState, ClientSummary, Error, Recovered, Store, StoreOp, StoredMessage, StoredSession,
    StoredSubscription,
};

/// A store in memory: the test double and the model for other backends.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    state: Recovered,
    /// [`AuthState::version`]: counts the ops that changed a user or an access rule.
    auth_version: u64,
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
        // Atomic: every op records how to undo what it changed (the entry it replaced, moved
        // out rather than copied), and a failing op rolls the batch back in reverse. A commit
        // costs what its ops touch, not the size of the state.
        let mut journal = Vec::with_capacity(ops.len());
        let auth_version = self.auth_version;
        for op in ops {
            match apply_one(&mut self.state, op) {
                Ok(undo) => {
                    if matches!(undo, Undo::User(..) | Undo::Acl(..)) {
                        self.auth_version += 1;
                    }
                    journal.push(undo);
                }
                Err(e) => {
                    for undo in journal.into_iter().rev() {
                        undo.revert(&mut self.state);
                    }
                    self.auth_version = auth_version;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn auth_state(&mut self) -> Result<AuthState, Error> {
        Ok(AuthState {
            version: self.auth_version,
            users: self.state.users.clone(),
            scram: self.state.scram.clone(),
            acl: self.state.acl.clone(),
        })
    }

    fn user_exists(&mut self, username: &str) -> Result<bool, Error> {
        Ok(self.state.users.contains_key(username))
    }
}

/// How to put back what one op changed.
enum Undo {
    /// Nothing changed.
    Nothing,
    /// A client record, as it was (`None`: absent).
    Client(String, Option<ClientSummary>),
    /// A whole session, as it was.
    Session(String, Option<StoredSession>),
    /// A session's own record (the session existed).
    SessionRecord(String, crate::SessionRecord),
    /// A subscription of a session.
    Subscription(String, String, Option<StoredSubscription>),
    /// A delivery of a session.
    Delivery(String, u64, Option<crate::DeliveryRecord>),
    /// An inbound QoS 2 id of a session, and whether it was pending.
    Qos2(String, mqtt5_codec::PacketId, bool),
    /// A retained message.
    Retained(String, Option<StoredMessage>),
    /// A stored message.
    Message(u64, Option<StoredMessage>),
    /// A user's password hash and SCRAM credentials.
    User(String, Option<String>, Option<String>),
    /// The access rules, as they were.
    Acl(Vec<crate::AclRecord>),
}

/// Puts `old` back at `key` in `map` (or removes the key).
fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl Undo {
    fn revert(self, state: &mut Recovered) {
        match self {
            Self::Nothing => {}
            Self::Client(k, old) => restore(&mut state.clients, k, old),
            Self::Session(k, old) => restore(&mut state.sessions, k, old),
            Self::SessionRecord(k, old) => {
                if let Some(s) = state.sessions.get_mut(&k) {
                    s.record = old;
                }
            }
            Self::Subscription(k, filter, old) => {
                if let Some(s) = state.sessions.get_mut(&k) {
                    restore(&mut s.subscriptions, filter, old);
                }
            }
            Self::Delivery(k, seq, old) => {
                if let Some(s) = state.sessions.get_mut(&k) {
                    restore(&mut s.deliveries, seq, old);
                }
            }
            Self::Qos2(k, id, was) => {
                if let Some(s) = state.sessions.get_mut(&k) {
                    if was {
                        s.incoming_qos2.insert(id);
                    } else {
                        s.incoming_qos2.remove(&id);
                    }
                }
            }
            Self::Retained(k, old) => restore(&mut state.retained, k, old),
            Self::Message(k, old) => restore(&mut state.messages, k, old),
            Self::User(k, old, old_scram) => {
                restore(&mut state.scram, k.clone(), old_scram);
                restore(&mut state.users, k, old);
            }
            Self::Acl(old) => state.acl = old,
        }
    }
}

fn session<'a>(state: &'a mut Recovered, client_id: &str) -> Result<&'a mut StoredSession, Error> {
    state
        .sessions
        .get_mut(client_id)
        .ok_or_else(|| Error::NoSession(client_id.to_owned()))
}

/// Applies one op; fails before changing anything, or returns how to undo it.
fn apply_one(state: &mut Recovered, op: &StoreOp) -> Result<Undo, Error> {
    Ok(match op {
        StoreOp::ClientConnected(c) => {
            let old = state.clients.get(&c.client_id).cloned();
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
            Undo::Client(c.client_id.clone(), old)
        }
        StoreOp::ClientDisconnected {
            client_id,
            at_ms,
            reason,
        } => match state.clients.get_mut(client_id) {
            Some(entry) => {
                let old = entry.clone();
                entry.last_disconnect_ms = Some(*at_ms);
                entry.last_disconnect_reason = Some(reason.clone());
                Undo::Client(client_id.clone(), Some(old))
            }
            None => Undo::Nothing,
        },
        StoreOp::SessionSaved(record) => match state.sessions.get_mut(&record.client_id) {
            Some(s) => Undo::SessionRecord(
                record.client_id.clone(),
                core::mem::replace(&mut s.record, record.clone()),
            ),
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
                Undo::Session(record.client_id.clone(), None)
            }
        },
        StoreOp::SessionDeleted { client_id } => {
            let old = state.sessions.remove(client_id);
            Undo::Session(client_id.clone(), old)
        }
        StoreOp::Subscribed {
            client_id,
            filter,
            options,
            identifier,
        } => {
            let old = session(state, client_id)?.subscriptions.insert(
                filter.clone(),
                StoredSubscription {
                    options: *options,
                    identifier: *identifier,
                },
            );
            Undo::Subscription(client_id.clone(), filter.clone(), old)
        }
        StoreOp::Unsubscribed { client_id, filter } => {
            let old = session(state, client_id)?.subscriptions.remove(filter);
            Undo::Subscription(client_id.clone(), filter.clone(), old)
        }
        StoreOp::RetainSet {
            message,
            qos,
            expires_at_ms,
        } => {
            let topic = message.topic().to_owned();
            let old = state.retained.insert(
                topic.clone(),
                StoredMessage {
                    message: crate::stored_publish(message, *qos),
                    expires_at_ms: *expires_at_ms,
                },
            );
            Undo::Retained(topic, old)
        }
        StoreOp::RetainCleared { topic } => {
            let old = state.retained.remove(topic);
            Undo::Retained(topic.clone(), old)
        }
        StoreOp::MessageStored {
            id,
            message,
            qos,
            expires_at_ms,
        } => {
            let old = state.messages.insert(
                *id,
                StoredMessage {
                    message: crate::stored_publish(message, *qos),
                    expires_at_ms: *expires_at_ms,
                },
            );
            Undo::Message(*id, old)
        }
        StoreOp::MessageDeleted { id } => {
            let old = state.messages.remove(id);
            Undo::Message(*id, old)
        }
        StoreOp::Delivery(d) => {
            if !state.messages.contains_key(&d.message_id) {
                return Err(Error::NoMessage(d.message_id));
            }
            let old = session(state, &d.client_id)?
                .deliveries
                .insert(d.seq, d.clone());
            Undo::Delivery(d.client_id.clone(), d.seq, old)
        }
        StoreOp::DeliveryDeleted { client_id, seq } => {
            let old = session(state, client_id)?.deliveries.remove(seq);
            Undo::Delivery(client_id.clone(), *seq, old)
        }
        StoreOp::UserSet {
            username,
            password_hash,
        } => {
            let old = state.users.insert(username.clone(), password_hash.clone());
            // A new password makes the SCRAM credentials of the old one useless.
            let old_scram = state.scram.remove(username);
            Undo::User(username.clone(), old, old_scram)
        }
        StoreOp::UserRemoved { username } => {
            let old = state.users.remove(username);
            let old_scram = state.scram.remove(username);
            Undo::User(username.clone(), old, old_scram)
        }
        StoreOp::UserScramSet {
            username,
            credentials,
        } => {
            if state.users.contains_key(username) {
                let old_scram = state.scram.insert(username.clone(), credentials.clone());
                let old = state.users.get(username).cloned();
                Undo::User(username.clone(), old, old_scram)
            } else {
                Undo::Nothing
            }
        }
        StoreOp::AclAdded(rule) => {
            if state.acl.contains(rule) {
                Undo::Nothing
            } else {
                let old = state.acl.clone();
                state.acl.push(rule.clone());
                Undo::Acl(old)
            }
        }
        StoreOp::AclRemoved(rule) => {
            let old = state.acl.clone();
            state.acl.retain(|r| r != rule);
            Undo::Acl(old)
        }
        StoreOp::IncomingQos2 {
            client_id,
            packet_id,
            pending,
        } => {
            let s = session(state, client_id)?;
            let was = if *pending {
                !s.incoming_qos2.insert(*packet_id)
            } else {
                s.incoming_qos2.remove(packet_id)
            };
            Undo::Qos2(client_id.clone(), *packet_id, was)
        }
    })
}

#[cfg(test)]
mod tests {
    use mqtt5_codec::ProtocolVersion;

    use super::*;
    use crate::{ClientRecord, SessionRecord};

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            client_id: id.into(),
            protocol: ProtocolVersion::V5,
            expiry_interval: 60,
            expires_at_ms: None,
            will: None,
            owner: None,
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
    fn a_failing_batch_undoes_every_kind_of_change() {
        let mut store = MemoryStore::new();
        let client = |id: &str| {
            StoreOp::ClientConnected(ClientRecord {
                client_id: id.into(),
                username: None,
                protocol: ProtocolVersion::V5,
                peer: "127.0.0.1:1".into(),
                at_ms: 5,
            })
        };
        let subscribed = |id: &str, filter: &str| StoreOp::Subscribed {
            client_id: id.into(),
            filter: filter.into(),
            options: mqtt5_codec::SubscriptionOptions::new(mqtt5_codec::QoS::AtLeastOnce),
            identifier: None,
        };
        store
            .apply(&[
                client("a"),
                StoreOp::SessionSaved(record("a")),
                subscribed("a", "x/#"),
                StoreOp::UserSet {
                    username: "u".into(),
                    password_hash: "h1".into(),
                },
            ])
            .unwrap();
        let before = store.recover().unwrap();
        let mut changed = SessionRecord {
            expiry_interval: 5,
            ..record("a")
        };
        changed.expires_at_ms = Some(9);
        let err = store.apply(&[
            client("a"),
            client("b"),
            StoreOp::ClientDisconnected {
                client_id: "a".into(),
                at_ms: 7,
                reason: "gone".into(),
            },
            StoreOp::SessionSaved(changed),
            StoreOp::SessionSaved(record("b")),
            subscribed("a", "y"),
            StoreOp::Unsubscribed {
                client_id: "a".into(),
                filter: "x/#".into(),
            },
            StoreOp::IncomingQos2 {
                client_id: "a".into(),
                packet_id: mqtt5_codec::PacketId::new(3).unwrap(),
                pending: true,
            },
            StoreOp::UserSet {
                username: "u".into(),
                password_hash: "h2".into(),
            },
            StoreOp::UserRemoved {
                username: "u".into(),
            },
            StoreOp::AclAdded(crate::AclRecord {
                scope: "pattern".into(),
                access: "read".into(),
                topic: "%c/#".into(),
            }),
            StoreOp::SessionDeleted {
                client_id: "a".into(),
            },
            StoreOp::SessionSaved(record("a")),
            // Refers to a message that does not exist: the whole batch fails.
            StoreOp::Delivery(crate::DeliveryRecord {
                client_id: "a".into(),
                seq: 1,
                message_id: 99,
                qos: mqtt5_codec::QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
                state: crate::DeliveryState::Queued,
            }),
        ]);
        assert!(matches!(err, Err(Error::NoMessage(99))));
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
