//! [`MemoryStore`]: the persistent state in `BTreeMap`s.

use std::collections::BTreeMap;

use crate::{
    ClientSummary, Error, Recovered, Store, StoreOp, StoredMessage, StoredSession,
    StoredSubscription,
};

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
        StoreOp::UserSet {
            username,
            password_hash,
        } => {
            state.users.insert(username.clone(), password_hash.clone());
            state.scram.remove(username);
        }
        StoreOp::UserRemoved { username } => {
            state.users.remove(username);
            state.scram.remove(username);
        }
        StoreOp::UserScramSet {
            username,
            credentials,
        } => {
            if state.users.contains_key(username) {
                state.scram.insert(username.clone(), credentials.clone());
            }
        }
        StoreOp::AclAdded(rule) => {
            if !state.acl.contains(rule) {
                state.acl.push(rule.clone());
            }
        }
        StoreOp::AclRemoved(rule) => {
            state.acl.retain(|r| r != rule);
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
