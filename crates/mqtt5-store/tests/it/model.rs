//! `SqliteStore` against its model, `MemoryStore`: random sequences of batches of random ops
//! over a small universe of ids (so that they collide, and some ops fail), with
//! close-and-reopen steps. After every step both stores must report the same outcome and
//! recover the same state.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use mqtt5_codec::{
    Delivery, MqttString, PacketId, PayloadFormat, ProtocolVersion, Publish, PublishProperties,
    QoS, RetainHandling, SubscriptionOptions, UserProperty, Will, WillProperties,
};
use mqtt5_store::{
    AclRecord, ClientRecord, DeliveryRecord, DeliveryState, Error, MemoryStore, SessionRecord,
    SqliteOptions, SqliteStore, Store, StoreOp, Synchronous,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::fixture::topic;

const CLIENTS: &[&str] = &["a", "b", "c"];
const FILTERS: &[&str] = &["t/#", "t/+", "$share/g/t/1"];
const TOPICS: &[&str] = &["t/1", "t/2", "x"];
const USERS: &[&str] = &["alice", "bob"];
const MESSAGE_IDS: &[u64] = &[1, 2, 3, u64::MAX];

fn client_id() -> impl Strategy<Value = String> {
    select(CLIENTS).prop_map(String::from)
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..1_000u64, 1 => Just(u64::MAX)]
}

fn protocol() -> impl Strategy<Value = ProtocolVersion> {
    select(
        &[
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ][..],
    )
}

fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

fn short_string() -> impl Strategy<Value = MqttString> {
    "[a-z/]{0,6}".prop_map(|s| MqttString::try_from(s.as_str()).unwrap())
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(("[a-z]{0,3}", "[a-zé]{0,3}"), 0..3).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| UserProperty::new(k, v).unwrap())
            .collect()
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn publish() -> impl Strategy<Value = Publish> {
    let properties = (
        proptest::option::of(select(
            &[PayloadFormat::Unspecified, PayloadFormat::Utf8][..],
        )),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1..=4u16),
        proptest::option::of(select(TOPICS)),
        proptest::option::of(payload()),
        proptest::option::of(short_string()),
        vec(1..=268_435_455u32, 0..3),
        user_properties(),
    )
        .prop_map(
            |(format, expiry, alias, response, correlation, content_type, ids, user)| {
                PublishProperties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    topic_alias: alias.and_then(NonZeroU16::new),
                    response_topic: response.map(topic),
                    correlation_data: correlation,
                    content_type,
                    subscription_identifiers: ids.into_iter().filter_map(NonZeroU32::new).collect(),
                    user_properties: user,
                }
            },
        );
    (
        select(TOPICS),
        payload(),
        qos(),
        1..=u16::MAX,
        any::<bool>(),
        any::<bool>(),
        properties,
    )
        .prop_map(|(t, payload, qos, id, retain, dup, properties)| {
            let mut p = Publish::new(topic(t), payload);
            p.delivery = match qos {
                QoS::AtMostOnce => Delivery::AtMostOnce,
                other => Delivery::new(other, PacketId::new(id).unwrap()),
            };
            p.retain = retain;
            p.dup = dup;
            p.properties = properties.into();
            p
        })
}

fn will() -> impl Strategy<Value = Will> {
    let properties = (
        proptest::option::of(any::<u32>()),
        proptest::option::of(select(
            &[PayloadFormat::Unspecified, PayloadFormat::Utf8][..],
        )),
        proptest::option::of(any::<u32>()),
        proptest::option::of(short_string()),
        proptest::option::of(select(TOPICS)),
        proptest::option::of(payload()),
        user_properties(),
    )
        .prop_map(
            |(delay, format, expiry, content_type, response, correlation, user)| WillProperties {
                will_delay_interval: delay,
                payload_format_indicator: format,
                message_expiry_interval: expiry,
                content_type,
                response_topic: response.map(topic),
                correlation_data: correlation,
                user_properties: user,
            },
        );
    (qos(), any::<bool>(), properties, select(TOPICS), payload()).prop_map(
        |(qos, retain, properties, t, payload)| Will {
            qos,
            retain,
            properties,
            topic: topic(t),
            payload,
        },
    )
}

fn options() -> impl Strategy<Value = SubscriptionOptions> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(
            &[
                RetainHandling::SendOnSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ][..],
        ),
    )
        .prop_map(|(qos, no_local, retain_as_published, retain_handling)| {
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            }
        })
}

fn acl_rule() -> impl Strategy<Value = AclRecord> {
    (
        select(&["anonymous", "user alice", "pattern"][..]),
        select(&["read", "deny"][..]),
        select(&["#", "t/%c"][..]),
    )
        .prop_map(|(scope, access, topic)| AclRecord {
            scope: scope.into(),
            access: access.into(),
            topic: topic.into(),
        })
}

fn delivery_state() -> impl Strategy<Value = DeliveryState> {
    prop_oneof![
        Just(DeliveryState::Queued),
        (1..4u16).prop_map(|id| DeliveryState::Sent(crate::fixture::pid(id))),
        (1..4u16).prop_map(|id| DeliveryState::Released(crate::fixture::pid(id))),
    ]
}

fn op() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        1 => (client_id(), proptest::option::of(select(USERS)), protocol(), time()).prop_map(
            |(client_id, username, protocol, at_ms)| StoreOp::ClientConnected(ClientRecord {
                peer: format!("{client_id}:{at_ms}"),
                client_id,
                username: username.map(String::from),
                protocol,
                at_ms,
            })
        ),
        1 => (client_id(), time(), "[a-z ]{0,8}").prop_map(|(client_id, at_ms, reason)| {
            StoreOp::ClientDisconnected {
                client_id,
                at_ms,
                reason,
            }
        }),
        6 => (
            client_id(),
            protocol(),
            any::<u32>(),
            proptest::option::of(time()),
            proptest::option::of(will()),
            proptest::option::of("(user:[a-c]{1,3})|anonymous"),
        )
            .prop_map(
                |(client_id, protocol, expiry_interval, expires_at_ms, will, owner)| {
                    StoreOp::SessionSaved(SessionRecord {
                        client_id,
                        protocol,
                        expiry_interval,
                        expires_at_ms,
                        will,
                        owner,
                    })
                }
            ),
        1 => client_id().prop_map(|client_id| StoreOp::SessionDeleted { client_id }),
        3 => (
            client_id(),
            select(FILTERS),
            options(),
            proptest::option::of(1..5u32)
        )
            .prop_map(|(client_id, filter, options, identifier)| StoreOp::Subscribed {
                client_id,
                filter: filter.into(),
                options,
                identifier,
            }),
        1 => (client_id(), select(FILTERS)).prop_map(|(client_id, filter)| StoreOp::Unsubscribed {
            client_id,
            filter: filter.into(),
        }),
        1 => (publish(), proptest::option::of(time())).prop_map(|(message, expires_at_ms)| {
            StoreOp::RetainSet {
                qos: message.qos(),
                message,
                expires_at_ms,
            }
        }),
        1 => select(TOPICS).prop_map(|t| StoreOp::RetainCleared { topic: t.into() }),
        4 => (select(MESSAGE_IDS), publish(), proptest::option::of(time())).prop_map(
            |(id, message, expires_at_ms)| StoreOp::MessageStored {
                id,
                qos: message.qos(),
                message,
                expires_at_ms,
            }
        ),
        1 => select(MESSAGE_IDS).prop_map(|id| StoreOp::MessageDeleted { id }),
        4 => (
            client_id(),
            0..4u64,
            select(MESSAGE_IDS),
            prop_oneof![
                Just(mqtt5_codec::QoS::AtMostOnce),
                Just(mqtt5_codec::QoS::AtLeastOnce),
                Just(mqtt5_codec::QoS::ExactlyOnce)
            ],
            any::<bool>(),
            vec(1..5u32, 0..3),
            delivery_state()
        )
            .prop_map(
                |(client_id, seq, message_id, qos, retain, subscription_ids, state)| {
                    StoreOp::Delivery(DeliveryRecord {
                        client_id,
                        seq,
                        message_id,
                        qos,
                        retain,
                        subscription_ids,
                        state,
                    })
                }
            ),
        1 => (client_id(), 0..4u64)
            .prop_map(|(client_id, seq)| StoreOp::DeliveryDeleted { client_id, seq }),
        1 => (select(USERS), "[a-z0-9$]{1,6}").prop_map(|(username, password_hash)| {
            StoreOp::UserSet {
                username: username.into(),
                password_hash,
            }
        }),
        1 => select(USERS).prop_map(|username| StoreOp::UserRemoved {
            username: username.into()
        }),
        1 => (select(USERS), "[a-z0-9$]{1,6}").prop_map(|(username, credentials)| {
            StoreOp::UserScramSet {
                username: username.into(),
                credentials,
            }
        }),
        2 => acl_rule().prop_map(StoreOp::AclAdded),
        1 => acl_rule().prop_map(StoreOp::AclRemoved),
        2 => (client_id(), 1..4u16, any::<bool>()).prop_map(|(client_id, packet_id, pending)| {
            StoreOp::IncomingQos2 {
                client_id,
                packet_id: crate::fixture::pid(packet_id),
                pending,
            }
        }),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Apply(Vec<StoreOp>),
    /// Drop the `SqliteStore` and open the same file again.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => vec(op(), 0..5).prop_map(Step::Apply),
        1 => Just(Step::Reopen),
    ]
}

/// The outcome of `apply` in comparable form: the error's message names its kind and ids.
fn outcome(result: Result<(), Error>) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sqlite_store_behaves_like_memory_store(steps in vec(step(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.db");
        // fsync adds nothing to what is compared here, only time.
        let options = SqliteOptions {
            synchronous: Synchronous::Off,
            ..SqliteOptions::default()
        };
        let mut model = MemoryStore::new();
        let mut store = SqliteStore::open(&path, options).unwrap();
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Apply(ops) => {
                    let expected = outcome(model.apply(&ops));
                    let actual = outcome(store.apply(&ops));
                    prop_assert_eq!(actual, expected, "step {}: {:?}", i, ops);
                }
                Step::Reopen => {
                    drop(store);
                    store = SqliteStore::open(&path, options).unwrap();
                }
            }
            prop_assert_eq!(store.recover().unwrap(), model.recover().unwrap(), "after step {}", i);
        }
    }
}
