//! One suite, generic over [`Store`], run against every backend: each behaviour below becomes
//! `conformance::memory::NAME` and `conformance::sqlite::NAME`.
//!
//! Every test ends by closing and reopening the store ([`reopened`]): what `apply` reports as
//! done must be what `recover` returns after a restart.

use bytes::Bytes;
use mqtt5_codec::{Delivery, PacketId, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use mqtt5_store::{
    ClientRecord, DeliveryRecord, DeliveryState, Error, Recovered, SessionRecord, Store, StoreOp,
    StoredSubscription,
};

use crate::fixture::{
    Fixture, connected, delivery, full_publish, full_will, pid, publish, qos2, reopened, rule,
    save, stored, subscribed,
};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $name() {
                    super::$name(&mut crate::fixture::Memory);
                }
            )*
        }

        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&mut crate::fixture::Sqlite::new());
                }
            )*
        }
    };
}

conformance!(
    empty_store_recovers_nothing,
    empty_batch_changes_nothing,
    client_connected_creates_a_record_then_counts_connections,
    client_disconnected_keeps_the_last_time_and_reason,
    client_disconnected_of_an_unknown_client_is_a_no_op,
    session_saved_replaces_the_record_and_keeps_what_hangs_off_it,
    session_deleted_removes_subscriptions_deliveries_and_incoming_qos2,
    session_deleted_of_an_unknown_session_is_a_no_op,
    subscribed_creates_then_replaces_a_subscription,
    every_subscription_option_round_trips,
    unsubscribed_removes_only_its_filter,
    session_ops_without_a_session_fail_with_no_session,
    retain_set_replaces_by_topic_and_retain_cleared_removes,
    messages_round_trip_exactly,
    wills_round_trip_exactly,
    message_deleted_keeps_the_deliveries_that_refer_to_it,
    delivery_of_an_unknown_message_fails_with_no_message,
    delivery_checks_the_message_before_the_session,
    delivery_is_updated_by_seq_and_deleted,
    users_are_set_replaced_and_removed,
    scram_credentials_follow_their_user,
    acl_keeps_insertion_order_and_ignores_duplicates,
    auth_state_is_the_users_and_rules_and_its_version_follows_their_changes,
    incoming_qos2_ids_are_set_and_released,
    a_failing_batch_changes_nothing,
    ops_in_a_batch_apply_in_order,
    extreme_values_round_trip,
    messages_without_packet_identifier_keep_their_qos,
);

fn assert_no_session(result: Result<(), Error>, client_id: &str) {
    assert!(
        matches!(&result, Err(Error::NoSession(c)) if c == client_id),
        "expected NoSession({client_id:?}), got {result:?}"
    );
}

fn empty_store_recovers_nothing<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    assert_eq!(store.recover().unwrap(), Recovered::default());
    let (_, state) = reopened(f, store);
    assert_eq!(state, Recovered::default());
}

fn empty_batch_changes_nothing<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store.apply(&[save("a")]).unwrap();
    let before = store.recover().unwrap();
    store.apply(&[]).unwrap();
    assert_eq!(store.recover().unwrap(), before);
    reopened(f, store);
}

fn client_connected_creates_a_record_then_counts_connections<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store.apply(&[connected("c", Some("alice"), 10)]).unwrap();
    store
        .apply(&[StoreOp::ClientConnected(ClientRecord {
            client_id: "c".into(),
            username: None,
            protocol: ProtocolVersion::V3_1_1,
            peer: "[::1]:4000".into(),
            at_ms: 30,
        })])
        .unwrap();
    store.apply(&[connected("other", None, 5)]).unwrap();
    let (_, state) = reopened(f, store);
    let c = &state.clients["c"];
    assert_eq!(c.username, None);
    assert_eq!(c.protocol, ProtocolVersion::V3_1_1);
    assert_eq!(c.peer, "[::1]:4000");
    assert_eq!(
        (c.first_seen_ms, c.last_connect_ms, c.connect_count),
        (10, 30, 2)
    );
    assert_eq!(
        (c.last_disconnect_ms, c.last_disconnect_reason.as_deref()),
        (None, None)
    );
    assert_eq!(state.clients["other"].connect_count, 1);
    assert_eq!(state.clients.len(), 2);
}

fn client_disconnected_keeps_the_last_time_and_reason<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let disconnected = |at_ms, reason: &str| StoreOp::ClientDisconnected {
        client_id: "c".into(),
        at_ms,
        reason: reason.into(),
    };
    store
        .apply(&[connected("c", None, 10), disconnected(20, "normal")])
        .unwrap();
    store
        .apply(&[
            connected("c", None, 30),
            disconnected(40, "keep-alive timeout"),
        ])
        .unwrap();
    // A new connection leaves the previous disconnection on record.
    store.apply(&[connected("c", None, 50)]).unwrap();
    let (_, state) = reopened(f, store);
    let c = &state.clients["c"];
    assert_eq!(c.last_disconnect_ms, Some(40));
    assert_eq!(
        c.last_disconnect_reason.as_deref(),
        Some("keep-alive timeout")
    );
    assert_eq!((c.last_connect_ms, c.connect_count), (50, 3));
}

fn client_disconnected_of_an_unknown_client_is_a_no_op<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[StoreOp::ClientDisconnected {
            client_id: "nobody".into(),
            at_ms: 1,
            reason: "normal".into(),
        }])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state, Recovered::default());
}

fn session_saved_replaces_the_record_and_keeps_what_hangs_off_it<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            subscribed("a", "t/#"),
            stored(1, "t/1"),
            delivery("a", 0, 1, DeliveryState::Queued),
            qos2("a", 9, true),
        ])
        .unwrap();
    let replaced = SessionRecord {
        client_id: "a".into(),
        protocol: ProtocolVersion::V3_1_1,
        expiry_interval: u32::MAX,
        expires_at_ms: Some(123_456),
        will: Some(full_will()),
        owner: Some("user:alice".into()),
    };
    store
        .apply(&[StoreOp::SessionSaved(replaced.clone())])
        .unwrap();
    let (_, state) = reopened(f, store);
    let a = &state.sessions["a"];
    assert_eq!(a.record, replaced);
    assert!(a.subscriptions.contains_key("t/#"));
    assert!(a.deliveries.contains_key(&0));
    assert!(a.incoming_qos2.contains(&pid(9)));
}

fn session_deleted_removes_subscriptions_deliveries_and_incoming_qos2<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            save("b"),
            stored(1, "t/1"),
            subscribed("a", "t/#"),
            subscribed("b", "t/#"),
            delivery("a", 0, 1, DeliveryState::Sent(pid(4))),
            delivery("b", 0, 1, DeliveryState::Queued),
            qos2("a", 9, true),
            qos2("b", 9, true),
        ])
        .unwrap();
    store
        .apply(&[StoreOp::SessionDeleted {
            client_id: "a".into(),
        }])
        .unwrap();
    let (mut store, state) = reopened(f, store);
    assert!(!state.sessions.contains_key("a"));
    let b = &state.sessions["b"];
    assert_eq!(
        (
            b.subscriptions.len(),
            b.deliveries.len(),
            b.incoming_qos2.len()
        ),
        (1, 1, 1)
    );
    // The message stays until the broker deletes it.
    assert!(state.messages.contains_key(&1));

    // A session saved again under the same id starts empty.
    store.apply(&[save("a")]).unwrap();
    let (_, state) = reopened(f, store);
    let a = &state.sessions["a"];
    assert!(a.subscriptions.is_empty() && a.deliveries.is_empty() && a.incoming_qos2.is_empty());
}

fn session_deleted_of_an_unknown_session_is_a_no_op<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store.apply(&[save("a")]).unwrap();
    let before = store.recover().unwrap();
    store
        .apply(&[StoreOp::SessionDeleted {
            client_id: "ghost".into(),
        }])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state, before);
}

fn subscribed_creates_then_replaces_a_subscription<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[save("a"), subscribed("a", "$share/g/t/+")])
        .unwrap();
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    store
        .apply(&[StoreOp::Subscribed {
            client_id: "a".into(),
            filter: "$share/g/t/+".into(),
            options,
            identifier: None,
        }])
        .unwrap();
    let (_, state) = reopened(f, store);
    let subscriptions = &state.sessions["a"].subscriptions;
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(
        subscriptions["$share/g/t/+"],
        StoredSubscription {
            options,
            identifier: None
        }
    );
}

fn every_subscription_option_round_trips<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let mut ops = vec![save("a")];
    let mut expected = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for no_local in [false, true] {
            for retain_as_published in [false, true] {
                for retain_handling in [
                    RetainHandling::SendOnSubscribe,
                    RetainHandling::SendIfNew,
                    RetainHandling::DoNotSend,
                ] {
                    let options = SubscriptionOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                    };
                    let filter = format!("f/{}", expected.len());
                    let identifier = u32::try_from(expected.len()).ok().filter(|&i| i % 2 == 1);
                    ops.push(StoreOp::Subscribed {
                        client_id: "a".into(),
                        filter: filter.clone(),
                        options,
                        identifier,
                    });
                    expected.push((filter, options, identifier));
                }
            }
        }
    }
    store.apply(&ops).unwrap();
    let (_, state) = reopened(f, store);
    let subscriptions = &state.sessions["a"].subscriptions;
    assert_eq!(subscriptions.len(), expected.len());
    for (filter, options, identifier) in expected {
        assert_eq!(
            subscriptions[&filter],
            StoredSubscription {
                options,
                identifier
            }
        );
    }
}

fn unsubscribed_removes_only_its_filter<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            save("b"),
            subscribed("a", "t/#"),
            subscribed("a", "x"),
            subscribed("b", "t/#"),
        ])
        .unwrap();
    let unsubscribe = |filter: &str| StoreOp::Unsubscribed {
        client_id: "a".into(),
        filter: filter.into(),
    };
    store
        .apply(&[unsubscribe("t/#"), unsubscribe("never/subscribed")])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(
        state.sessions["a"].subscriptions.keys().collect::<Vec<_>>(),
        ["x"]
    );
    assert!(state.sessions["b"].subscriptions.contains_key("t/#"));
}

fn session_ops_without_a_session_fail_with_no_session<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store.apply(&[save("a"), stored(1, "t/1")]).unwrap();
    let before = store.recover().unwrap();
    let ops = [
        subscribed("ghost", "t/#"),
        StoreOp::Unsubscribed {
            client_id: "ghost".into(),
            filter: "t/#".into(),
        },
        delivery("ghost", 0, 1, DeliveryState::Queued),
        StoreOp::DeliveryDeleted {
            client_id: "ghost".into(),
            seq: 0,
        },
        qos2("ghost", 1, true),
        qos2("ghost", 1, false),
    ];
    for op in ops {
        assert_no_session(store.apply(&[op]), "ghost");
        assert_eq!(store.recover().unwrap(), before);
    }
    let (_, state) = reopened(f, store);
    assert_eq!(state, before);
}

fn retain_set_replaces_by_topic_and_retain_cleared_removes<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let mut first = publish("t/1", b"one");
    first.retain = true;
    let second = full_publish();
    let mut third = publish(second.topic(), b"three");
    third.retain = true;
    store
        .apply(&[
            StoreOp::RetainSet {
                qos: first.clone().qos(),
                message: first.clone(),
                expires_at_ms: None,
            },
            StoreOp::RetainSet {
                qos: second.clone().qos(),
                message: second.clone(),
                expires_at_ms: Some(99),
            },
        ])
        .unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(state.retained["t/1"].message, first);
    assert_eq!(state.retained[second.topic()].message, second);
    assert_eq!(state.retained[second.topic()].expires_at_ms, Some(99));

    store
        .apply(&[
            StoreOp::RetainSet {
                qos: third.clone().qos(),
                message: third.clone(),
                expires_at_ms: None,
            },
            StoreOp::RetainCleared {
                topic: "t/1".into(),
            },
            StoreOp::RetainCleared {
                topic: "never/retained".into(),
            },
        ])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.retained.len(), 1);
    assert_eq!(state.retained[second.topic()].message, third);
    assert_eq!(state.retained[second.topic()].expires_at_ms, None);
}

fn messages_round_trip_exactly<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let mut dup_qos0 = publish("t/dup", b"");
    dup_qos0.dup = true;
    let mut qos1 = publish("t/1", b"\x00\xff binary");
    qos1.delivery = Delivery::AtLeastOnce(PacketId::new(1).unwrap());
    qos1.dup = true;
    let mut qos2 = publish("t/2", b"two");
    qos2.delivery = Delivery::ExactlyOnce(PacketId::new(42).unwrap());
    let mut large = publish("t/large", b"");
    large.set_payload(Bytes::from(vec![0xA5; 300_000]));
    let messages = [
        publish("t/0", b"plain"),
        dup_qos0,
        qos1,
        qos2,
        full_publish(),
        large,
    ];
    let ops: Vec<_> = messages
        .iter()
        .zip(0u64..)
        .map(|(message, id)| StoreOp::MessageStored {
            id,
            qos: message.clone().qos(),
            message: message.clone(),
            expires_at_ms: (id % 2 == 0).then_some(1_700_000_000_000 + id),
        })
        .collect();
    store.apply(&ops).unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.messages.len(), messages.len());
    for (message, id) in messages.iter().zip(0u64..) {
        let got = &state.messages[&id];
        assert_eq!(&got.message, message, "message {id}");
        assert_eq!(got.message.delivery, message.delivery, "packet id of {id}");
        assert_eq!(got.message.dup, message.dup, "DUP of {id}");
        assert_eq!(
            got.expires_at_ms,
            (id % 2 == 0).then_some(1_700_000_000_000 + id)
        );
    }
}

fn wills_round_trip_exactly<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let mut v3_will = full_will();
    v3_will.qos = QoS::ExactlyOnce;
    v3_will.retain = false;
    v3_will.properties = mqtt5_codec::WillProperties::default();
    v3_will.payload = Bytes::new();
    let with_will = |id: &str, protocol, will| {
        StoreOp::SessionSaved(SessionRecord {
            client_id: id.into(),
            protocol,
            expiry_interval: 0,
            expires_at_ms: Some(5),
            will: Some(will),
            owner: None,
        })
    };
    store
        .apply(&[
            with_will("v5", ProtocolVersion::V5, full_will()),
            with_will("v3", ProtocolVersion::V3_1, v3_will.clone()),
        ])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.sessions["v5"].record.will, Some(full_will()));
    assert_eq!(state.sessions["v3"].record.will, Some(v3_will));
    assert_eq!(state.sessions["v3"].record.protocol, ProtocolVersion::V3_1);
}

fn message_deleted_keeps_the_deliveries_that_refer_to_it<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            stored(1, "t/1"),
            stored(2, "t/2"),
            delivery("a", 0, 1, DeliveryState::Queued),
        ])
        .unwrap();
    store
        .apply(&[
            StoreOp::MessageDeleted { id: 1 },
            StoreOp::MessageDeleted { id: 77 },
        ])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.messages.keys().collect::<Vec<_>>(), [&2]);
    assert_eq!(state.sessions["a"].deliveries[&0].message_id, 1);
}

fn delivery_of_an_unknown_message_fails_with_no_message<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store.apply(&[save("a")]).unwrap();
    let before = store.recover().unwrap();
    let result = store.apply(&[delivery("a", 0, 9, DeliveryState::Queued)]);
    assert!(matches!(result, Err(Error::NoMessage(9))), "{result:?}");
    let (_, state) = reopened(f, store);
    assert_eq!(state, before);
}

fn delivery_checks_the_message_before_the_session<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let result = store.apply(&[delivery("ghost", 0, 9, DeliveryState::Queued)]);
    assert!(matches!(result, Err(Error::NoMessage(9))), "{result:?}");
    store.apply(&[stored(9, "t")]).unwrap();
    let result = store.apply(&[delivery("ghost", 0, 9, DeliveryState::Queued)]);
    assert_no_session(result, "ghost");
    reopened(f, store);
}

fn delivery_is_updated_by_seq_and_deleted<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            stored(1, "t/1"),
            stored(2, "t/2"),
            delivery("a", 5, 1, DeliveryState::Queued),
            delivery("a", 6, 2, DeliveryState::Queued),
        ])
        .unwrap();
    let sent = DeliveryRecord {
        client_id: "a".into(),
        seq: 5,
        message_id: 1,
        qos: QoS::ExactlyOnce,
        retain: true,
        subscription_ids: vec![268_435_455, 1, 1],
        state: DeliveryState::Sent(pid(7)),
    };
    store.apply(&[StoreOp::Delivery(sent.clone())]).unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(state.sessions["a"].deliveries[&5], sent);

    let released = DeliveryRecord {
        state: DeliveryState::Released(pid(7)),
        subscription_ids: Vec::new(),
        ..sent
    };
    store.apply(&[StoreOp::Delivery(released.clone())]).unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(state.sessions["a"].deliveries[&5], released);

    let deleted = |seq| StoreOp::DeliveryDeleted {
        client_id: "a".into(),
        seq,
    };
    store.apply(&[deleted(5), deleted(1000)]).unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(
        state.sessions["a"].deliveries.keys().collect::<Vec<_>>(),
        [&6]
    );
}

fn users_are_set_replaced_and_removed<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let set = |username: &str, password_hash: &str| StoreOp::UserSet {
        username: username.into(),
        password_hash: password_hash.into(),
    };
    store
        .apply(&[set("alice", "$argon2id$1"), set("bob", "$argon2id$2")])
        .unwrap();
    store
        .apply(&[
            set("alice", "$argon2id$3"),
            StoreOp::UserRemoved {
                username: "bob".into(),
            },
            StoreOp::UserRemoved {
                username: "nobody".into(),
            },
        ])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.users.len(), 1);
    assert_eq!(state.users["alice"], "$argon2id$3");
}

fn scram_credentials_follow_their_user<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let set = |username: &str, password_hash: &str| StoreOp::UserSet {
        username: username.into(),
        password_hash: password_hash.into(),
    };
    let scram = |username: &str, credentials: &str| StoreOp::UserScramSet {
        username: username.into(),
        credentials: credentials.into(),
    };
    store
        .apply(&[
            set("alice", "$argon2id$1"),
            scram("alice", "SCRAM-SHA-256$1"),
            set("bob", "$argon2id$2"),
            scram("bob", "SCRAM-SHA-256$2"),
            set("carol", "$argon2id$3"),
            scram("carol", "SCRAM-SHA-256$3"),
            // An unknown user gets none.
            scram("nobody", "SCRAM-SHA-256$4"),
        ])
        .unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(state.scram.len(), 3);
    assert_eq!(state.scram["bob"], "SCRAM-SHA-256$2");
    store
        .apply(&[
            // A new password drops the old credentials; removing the user drops them too.
            set("alice", "$argon2id$5"),
            StoreOp::UserRemoved {
                username: "bob".into(),
            },
            scram("carol", "SCRAM-SHA-256$6"),
        ])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.users.len(), 2);
    assert_eq!(state.scram.len(), 1);
    assert_eq!(state.scram["carol"], "SCRAM-SHA-256$6");
    assert!(!state.scram.contains_key("nobody"));
}

fn acl_keeps_insertion_order_and_ignores_duplicates<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let r1 = rule("user alice", "readwrite", "a/#");
    let r2 = rule("pattern", "read", "clients/%c/#");
    let r3 = rule("anonymous", "deny", "#");
    // Sorted, the rules would read r3, r2, r1: the order must come from insertion.
    store
        .apply(&[
            StoreOp::AclAdded(r1.clone()),
            StoreOp::AclAdded(r2.clone()),
            StoreOp::AclAdded(r3.clone()),
            StoreOp::AclAdded(r2.clone()),
        ])
        .unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(state.acl, [r1.clone(), r2.clone(), r3.clone()]);

    // Removed and added again, a rule goes to the end.
    store
        .apply(&[
            StoreOp::AclRemoved(r1.clone()),
            StoreOp::AclRemoved(rule("user x", "read", "never")),
        ])
        .unwrap();
    store.apply(&[StoreOp::AclAdded(r1.clone())]).unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(state.acl, [r2.clone(), r3.clone(), r1.clone()]);

    store.apply(&[StoreOp::AclRemoved(r1)]).unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(state.acl, [r2, r3]);
}

fn auth_state_is_the_users_and_rules_and_its_version_follows_their_changes<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let empty = store.auth_state().unwrap();
    assert!(empty.users.is_empty() && empty.scram.is_empty() && empty.acl.is_empty());
    assert!(!store.user_exists("alice").unwrap());

    let mut last = empty.version;
    let mut changed = |store: &mut F::Store, ops: &[StoreOp]| {
        store.apply(ops).unwrap();
        let state = store.auth_state().unwrap();
        assert!(
            state.version > last,
            "{ops:?}: {} then {}",
            last,
            state.version
        );
        last = state.version;
        state
    };
    changed(
        &mut store,
        &[StoreOp::UserSet {
            username: "alice".into(),
            password_hash: "$argon2id$1".into(),
        }],
    );
    changed(
        &mut store,
        &[StoreOp::UserScramSet {
            username: "alice".into(),
            credentials: "SCRAM-SHA-256$1".into(),
        }],
    );
    changed(
        &mut store,
        &[StoreOp::UserSet {
            username: "bob".into(),
            password_hash: "$argon2id$2".into(),
        }],
    );
    changed(
        &mut store,
        &[StoreOp::AclAdded(rule("user alice", "read", "a/#"))],
    );
    changed(
        &mut store,
        &[StoreOp::AclAdded(rule("pattern", "write", "c/%c"))],
    );
    changed(
        &mut store,
        &[StoreOp::AclRemoved(rule("pattern", "write", "c/%c"))],
    );
    let state = changed(
        &mut store,
        &[StoreOp::UserRemoved {
            username: "bob".into(),
        }],
    );
    assert!(store.user_exists("alice").unwrap());
    assert!(!store.user_exists("bob").unwrap());

    // Sessions and messages leave the version alone.
    store
        .apply(&[save("a"), subscribed("a", "t/#"), stored(1, "t/1")])
        .unwrap();
    assert_eq!(store.auth_state().unwrap(), state);

    // What it holds is what recover holds, and it survives a restart.
    let (mut store, recovered) = reopened(f, store);
    let after = store.auth_state().unwrap();
    assert_eq!(after.users, recovered.users);
    assert_eq!(after.scram, recovered.scram);
    assert_eq!(after.acl, recovered.acl);
    assert_eq!(after.version, state.version);
    assert_eq!(after.users.keys().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(after.scram["alice"], "SCRAM-SHA-256$1");
    assert_eq!(after.acl, [rule("user alice", "read", "a/#")]);
}

fn incoming_qos2_ids_are_set_and_released<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            qos2("a", 1, true),
            qos2("a", 2, true),
            qos2("a", 2, true),
            qos2("a", u16::MAX, true),
        ])
        .unwrap();
    store
        .apply(&[qos2("a", 1, false), qos2("a", 3, false)])
        .unwrap();
    let (_, state) = reopened(f, store);
    assert_eq!(
        state.sessions["a"]
            .incoming_qos2
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [pid(2), pid(u16::MAX)]
    );
}

fn a_failing_batch_changes_nothing<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            connected("c", None, 1),
            save("a"),
            stored(1, "t/1"),
            subscribed("a", "t/#"),
            delivery("a", 0, 1, DeliveryState::Queued),
            qos2("a", 1, true),
            StoreOp::AclAdded(rule("pattern", "read", "#")),
        ])
        .unwrap();
    let before = store.recover().unwrap();
    // Every table is touched before the last op fails.
    let result = store.apply(&[
        connected("c", None, 2),
        connected("d", None, 2),
        StoreOp::ClientDisconnected {
            client_id: "c".into(),
            at_ms: 3,
            reason: "normal".into(),
        },
        save("b"),
        subscribed("a", "x"),
        StoreOp::Unsubscribed {
            client_id: "a".into(),
            filter: "t/#".into(),
        },
        stored(2, "t/2"),
        StoreOp::MessageDeleted { id: 1 },
        delivery("a", 0, 2, DeliveryState::Sent(pid(1))),
        qos2("a", 1, false),
        StoreOp::RetainSet {
            qos: full_publish().qos(),
            message: full_publish(),
            expires_at_ms: None,
        },
        StoreOp::UserSet {
            username: "u".into(),
            password_hash: "h".into(),
        },
        StoreOp::AclRemoved(rule("pattern", "read", "#")),
        StoreOp::AclAdded(rule("anonymous", "read", "#")),
        StoreOp::SessionDeleted {
            client_id: "a".into(),
        },
        subscribed("a", "t/#"),
    ]);
    assert_no_session(result, "a");
    assert_eq!(store.recover().unwrap(), before);
    let (mut store, state) = reopened(f, store);
    assert_eq!(state, before);

    // The store goes on working after a failed batch.
    store.apply(&[save("b")]).unwrap();
    let (_, state) = reopened(f, store);
    assert!(state.sessions.contains_key("b"));
}

fn ops_in_a_batch_apply_in_order<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    store
        .apply(&[
            save("a"),
            subscribed("a", "t/#"),
            StoreOp::SessionDeleted {
                client_id: "a".into(),
            },
            save("a"),
            subscribed("a", "x"),
            StoreOp::UserSet {
                username: "u".into(),
                password_hash: "1".into(),
            },
            StoreOp::UserRemoved {
                username: "u".into(),
            },
            StoreOp::UserSet {
                username: "u".into(),
                password_hash: "2".into(),
            },
            stored(1, "t/1"),
            delivery("a", 0, 1, DeliveryState::Queued),
            StoreOp::MessageDeleted { id: 1 },
            StoreOp::RetainSet {
                qos: publish("r", b"1").qos(),
                message: publish("r", b"1"),
                expires_at_ms: None,
            },
            StoreOp::RetainCleared { topic: "r".into() },
            StoreOp::RetainSet {
                qos: publish("r", b"2").qos(),
                message: publish("r", b"2"),
                expires_at_ms: None,
            },
        ])
        .unwrap();
    let (mut store, state) = reopened(f, store);
    assert_eq!(
        state.sessions["a"].subscriptions.keys().collect::<Vec<_>>(),
        ["x"]
    );
    assert_eq!(state.users["u"], "2");
    assert!(state.messages.is_empty());
    assert_eq!(state.sessions["a"].deliveries[&0].message_id, 1);
    assert_eq!(state.retained["r"].message.payload(), b"2");

    // Deleting a session, then subscribing it, fails at the second op.
    let result = store.apply(&[
        StoreOp::SessionDeleted {
            client_id: "a".into(),
        },
        subscribed("a", "y"),
    ]);
    assert_no_session(result, "a");
    let (_, after) = reopened(f, store);
    assert_eq!(after, state);
}

fn extreme_values_round_trip<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let big = [u64::MAX, 1 << 63, (1 << 63) - 1];
    let mut ops = vec![StoreOp::SessionSaved(SessionRecord {
        client_id: String::new(),
        protocol: ProtocolVersion::V5,
        expiry_interval: u32::MAX,
        expires_at_ms: Some(u64::MAX),
        will: None,
        owner: Some("cert:CN=ünïcode, O=x".into()),
    })];
    for (i, &v) in big.iter().enumerate() {
        let at = format!("client-{i}");
        ops.push(connected(&at, Some(""), v));
        ops.push(StoreOp::ClientDisconnected {
            client_id: at,
            at_ms: v,
            reason: String::new(),
        });
        ops.push(StoreOp::MessageStored {
            id: v,
            qos: publish("t", b"").qos(),
            message: publish("t", b""),
            expires_at_ms: Some(v),
        });
        ops.push(StoreOp::Delivery(DeliveryRecord {
            client_id: String::new(),
            seq: v,
            message_id: v,
            qos: QoS::ExactlyOnce,
            retain: true,
            subscription_ids: vec![u32::MAX, 0],
            state: DeliveryState::Sent(pid(u16::MAX)),
        }));
    }
    ops.push(qos2("", u16::MAX, true));
    store.apply(&ops).unwrap();
    let (_, state) = reopened(f, store);
    let s = &state.sessions[""];
    assert_eq!(s.record.expiry_interval, u32::MAX);
    assert_eq!(s.record.expires_at_ms, Some(u64::MAX));
    assert_eq!(
        s.incoming_qos2.iter().copied().collect::<Vec<_>>(),
        [pid(u16::MAX)]
    );
    for (i, &v) in big.iter().enumerate() {
        let c = &state.clients[&format!("client-{i}")];
        assert_eq!((c.first_seen_ms, c.last_disconnect_ms), (v, Some(v)));
        assert_eq!(c.username.as_deref(), Some(""));
        assert_eq!(state.messages[&v].expires_at_ms, Some(v));
        let d = &s.deliveries[&v];
        assert_eq!((d.seq, d.message_id, d.qos), (v, v, QoS::ExactlyOnce));
        assert_eq!(d.subscription_ids, [u32::MAX, 0]);
    }
    let mut model = mqtt5_store::MemoryStore::new();
    model.apply(&ops).unwrap();
    assert_eq!(state, model.recover().unwrap());
}

/// A will's message has no packet identifier; stored at QoS 1 and 2 it comes back at that QoS
/// (with identifier 1, the stored form's), retained or queued.
fn messages_without_packet_identifier_keep_their_qos<F: Fixture>(f: &mut F) {
    let mut store = f.open();
    let will_message = publish("w/t", b"gone");
    assert_eq!(will_message.qos(), QoS::AtMostOnce);
    store
        .apply(&[
            StoreOp::RetainSet {
                message: will_message.clone(),
                qos: QoS::ExactlyOnce,
                expires_at_ms: None,
            },
            StoreOp::MessageStored {
                id: 7,
                message: will_message.clone(),
                qos: QoS::AtLeastOnce,
                expires_at_ms: None,
            },
        ])
        .unwrap();
    let (_, state) = reopened(f, store);
    let retained = &state.retained["w/t"].message;
    assert_eq!(retained.qos(), QoS::ExactlyOnce);
    assert_eq!(retained.delivery.packet_id(), PacketId::new(1));
    assert_eq!(retained.payload(), b"gone");
    assert_eq!(state.messages[&7].message.qos(), QoS::AtLeastOnce);
}
