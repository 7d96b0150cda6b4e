//! The backends under test, and builders of ops and records.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use mqtt5_codec::{
    Delivery, MqttString, PacketId, PayloadFormat, ProtocolVersion, Publish, PublishProperties,
    QoS, TopicName, UserProperty, Will, WillProperties,
};
use mqtt5_store::{
    AclRecord, ClientRecord, DeliveryRecord, DeliveryState, MemoryStore, Recovered, SessionRecord,
    Store, StoreOp,
};

/// A way to open a store and to close and reopen it.
pub(crate) trait Fixture {
    /// The backend.
    type Store: Store;
    /// A new, empty store.
    fn open(&mut self) -> Self::Store;
    /// Closes `store` and opens the same storage again.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
}

/// [`MemoryStore`]: "reopening" keeps the same store, the model of a perfect disk.
pub(crate) struct Memory;

impl Fixture for Memory {
    type Store = MemoryStore;

    fn open(&mut self) -> MemoryStore {
        MemoryStore::new()
    }

    fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
        store
    }
}

/// `SqliteStore` in a file of a temporary directory, removed when the fixture is dropped.
#[cfg(feature = "sqlite")]
pub(crate) struct Sqlite {
    dir: tempfile::TempDir,
}

#[cfg(feature = "sqlite")]
impl Sqlite {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("store.db")
    }
}

#[cfg(feature = "sqlite")]
impl Fixture for Sqlite {
    type Store = mqtt5_store::SqliteStore;

    fn open(&mut self) -> Self::Store {
        mqtt5_store::SqliteStore::open(self.path(), mqtt5_store::SqliteOptions::default()).unwrap()
    }

    fn reopen(&mut self, store: Self::Store) -> Self::Store {
        drop(store);
        self.open()
    }
}

/// Closes and reopens `store`, checks that it recovers what it held, and returns it.
pub(crate) fn reopened<F: Fixture>(f: &mut F, mut store: F::Store) -> (F::Store, Recovered) {
    let before = store.recover().unwrap();
    let mut store = f.reopen(store);
    let after = store.recover().unwrap();
    assert_eq!(after, before, "the state changed across a reopen");
    (store, after)
}

pub(crate) fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).unwrap()
}

/// A QoS 0 message without properties.
pub(crate) fn publish(t: &str, payload: &'static [u8]) -> Publish {
    Publish::new(topic(t), Bytes::from_static(payload))
}

/// A message with every PUBLISH property set, QoS 2, DUP and RETAIN.
pub(crate) fn full_publish() -> Publish {
    let mut p = publish("sensors/é/1", b"{\"t\": 21.5}");
    p.delivery = Delivery::ExactlyOnce(PacketId::new(u16::MAX).unwrap());
    p.retain = true;
    p.dup = true;
    p.properties = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(3600),
        topic_alias: NonZeroU16::new(3),
        response_topic: Some(topic("reply/1")),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 255])),
        content_type: Some(MqttString::try_from("application/json").unwrap()),
        subscription_identifiers: vec![
            NonZeroU32::new(1).unwrap(),
            NonZeroU32::new(268_435_455).unwrap(),
        ],
        user_properties: vec![
            UserProperty::new("k", "v").unwrap(),
            UserProperty::new("k", "v2").unwrap(),
        ],
    }
    .into();
    p
}

/// A will with every property set.
pub(crate) fn full_will() -> Will {
    Will {
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(30),
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            message_expiry_interval: Some(u32::MAX),
            content_type: Some(MqttString::try_from("text/plain").unwrap()),
            response_topic: Some(topic("wills/reply")),
            correlation_data: Some(Bytes::from_static(b"id-7")),
            user_properties: vec![UserProperty::new("why", "gone").unwrap()],
        },
        topic: topic("clients/c1/status"),
        payload: Bytes::from_static(b"offline"),
    }
}

pub(crate) fn session(id: &str) -> SessionRecord {
    SessionRecord {
        client_id: id.into(),
        protocol: ProtocolVersion::V5,
        expiry_interval: 60,
        expires_at_ms: None,
        will: None,
        owner: None,
    }
}

pub(crate) fn save(id: &str) -> StoreOp {
    StoreOp::SessionSaved(session(id))
}

pub(crate) fn connected(id: &str, username: Option<&str>, at_ms: u64) -> StoreOp {
    StoreOp::ClientConnected(ClientRecord {
        client_id: id.into(),
        username: username.map(Into::into),
        protocol: ProtocolVersion::V5,
        peer: format!("10.0.0.1:{at_ms}"),
        at_ms,
    })
}

pub(crate) fn subscribed(id: &str, filter: &str) -> StoreOp {
    StoreOp::Subscribed {
        client_id: id.into(),
        filter: filter.into(),
        options: mqtt5_codec::SubscriptionOptions::new(QoS::AtLeastOnce),
        identifier: Some(1),
    }
}

pub(crate) fn stored(id: u64, t: &str) -> StoreOp {
    StoreOp::MessageStored {
        id,
        qos: publish(t, b"m").qos(),
        message: publish(t, b"m"),
        expires_at_ms: None,
    }
}

pub(crate) fn delivery(id: &str, seq: u64, message_id: u64, state: DeliveryState) -> StoreOp {
    StoreOp::Delivery(DeliveryRecord {
        client_id: id.into(),
        seq,
        message_id,
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![1],
        state,
    })
}

pub(crate) fn qos2(id: &str, packet_id: u16, pending: bool) -> StoreOp {
    StoreOp::IncomingQos2 {
        client_id: id.into(),
        packet_id: pid(packet_id),
        pending,
    }
}

/// A packet identifier, which must not be 0.
pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("a packet identifier is never 0")
}

pub(crate) fn rule(scope: &str, access: &str, t: &str) -> AclRecord {
    AclRecord {
        scope: scope.into(),
        access: access.into(),
        topic: t.into(),
    }
}
