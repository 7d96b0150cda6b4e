//! The rumqttc crate against the real binary, in MQTT 5 (`rumqttc::v5`) and MQTT 3.1.1 (the
//! crate root): QoS downgrade, retained messages, wills, sessions across a restart, shared
//! subscriptions, topic aliases and request/response.
//!
//! Each rumqttc connection runs on its own thread, which reduces the events to an [`Ev`] and
//! sends them down a channel; the test reads the channel with a deadline on every wait, so
//! nothing here blocks for longer than [`STEP`].
//!
//! Where a test needs to know that something did *not* arrive, it uses a marker: a message
//! published after the point in question. The broker handles packets in order and queues to a
//! session in order, so once the marker is in, anything that was going to arrive before it
//! has.
//!
//! The will client is a bare TCP socket speaking `mqtt5-codec` ([`RawClient`]): it can drop its
//! connection without a DISCONNECT for certain, which a rumqttc client only does by accident.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec as codec;
use rumqttc::Outgoing;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

use crate::harness::*;

/// The longest any one wait may take: a CONNACK, a SUBACK, an acknowledgement, a message.
const STEP: Duration = Duration::from_secs(10);

/// The two protocol versions rumqttc speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V5,
    V311,
}

/// A delivered PUBLISH, the same for both versions.
#[derive(Debug, Clone)]
struct Msg {
    /// The topic as it came on the wire: empty when an MQTT 5 topic alias stands for it.
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    /// The MQTT 5 properties, as rumqttc decoded them.
    properties: Option<PublishProperties>,
}

impl Msg {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A rumqttc event, reduced to what these tests look at.
#[derive(Debug)]
enum Ev {
    ConnAck {
        session_present: bool,
    },
    /// The granted QoS of each filter; `None` for a refusal.
    SubAck(Vec<Option<u8>>),
    /// A publication of this QoS is done on the sending side: a QoS 0 PUBLISH was written, a
    /// PUBACK or PUBCOMP arrived (or a PUBREC with an error code, which ends the flow).
    Acked {
        qos: u8,
        error: Option<String>,
    },
    Publish(Msg),
    /// Our DISCONNECT was written; the connection thread ends.
    DisconnectSent,
    /// The connection failed; the connection thread ends.
    Failed(String),
    Other,
}

fn v5_event(event: Result<v5::Event, v5::ConnectionError>) -> Ev {
    use v5::mqttbytes::v5::SubscribeReasonCode;
    use v5::mqttbytes::v5::{Packet, PubAckReason, PubCompReason, PubRecReason};
    match event {
        Ok(v5::Event::Incoming(Packet::ConnAck(ack))) => Ev::ConnAck {
            session_present: ack.session_present,
        },
        Ok(v5::Event::Incoming(Packet::SubAck(ack))) => Ev::SubAck(
            ack.return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => Some(*q as u8),
                    _ => None,
                })
                .collect(),
        ),
        Ok(v5::Event::Incoming(Packet::PubAck(ack))) => Ev::Acked {
            qos: 1,
            error: (!matches!(
                ack.reason,
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers
            ))
            .then(|| format!("PUBACK {:?}", ack.reason)),
        },
        Ok(v5::Event::Incoming(Packet::PubRec(rec)))
            if !matches!(
                rec.reason,
                PubRecReason::Success | PubRecReason::NoMatchingSubscribers
            ) =>
        {
            Ev::Acked {
                qos: 2,
                error: Some(format!("PUBREC {:?}", rec.reason)),
            }
        }
        Ok(v5::Event::Incoming(Packet::PubComp(comp))) => Ev::Acked {
            qos: 2,
            error: (comp.reason != PubCompReason::Success)
                .then(|| format!("PUBCOMP {:?}", comp.reason)),
        },
        Ok(v5::Event::Incoming(Packet::Publish(p))) => Ev::Publish(Msg {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.to_vec(),
            qos: p.qos as u8,
            retain: p.retain,
            properties: p.properties,
        }),
        Ok(v5::Event::Outgoing(Outgoing::Publish(0))) => Ev::Acked {
            qos: 0,
            error: None,
        },
        Ok(v5::Event::Outgoing(Outgoing::Disconnect)) => Ev::DisconnectSent,
        Ok(_) => Ev::Other,
        Err(e) => Ev::Failed(e.to_string()),
    }
}

fn v311_event(event: Result<rumqttc::Event, rumqttc::ConnectionError>) -> Ev {
    use rumqttc::{Event, Packet, SubscribeReasonCode};
    match event {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Ev::ConnAck {
            session_present: ack.session_present,
        },
        Ok(Event::Incoming(Packet::SubAck(ack))) => Ev::SubAck(
            ack.return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => Some(*q as u8),
                    SubscribeReasonCode::Failure => None,
                })
                .collect(),
        ),
        Ok(Event::Incoming(Packet::PubAck(_))) => Ev::Acked {
            qos: 1,
            error: None,
        },
        Ok(Event::Incoming(Packet::PubComp(_))) => Ev::Acked {
            qos: 2,
            error: None,
        },
        Ok(Event::Incoming(Packet::Publish(p))) => Ev::Publish(Msg {
            topic: p.topic,
            payload: p.payload.to_vec(),
            qos: p.qos as u8,
            retain: p.retain,
            properties: None,
        }),
        Ok(Event::Outgoing(Outgoing::Publish(0))) => Ev::Acked {
            qos: 0,
            error: None,
        },
        Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::DisconnectSent,
        Ok(_) => Ev::Other,
        Err(e) => Ev::Failed(e.to_string()),
    }
}

fn v5_qos(qos: u8) -> v5::mqttbytes::QoS {
    match qos {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        1 => v5::mqttbytes::QoS::AtLeastOnce,
        _ => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn v311_qos(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

/// The request side of a rumqttc client.
enum Handle {
    V5(v5::Client),
    V311(rumqttc::Client),
}

/// A rumqttc client whose connection runs on its own thread.
struct Peer {
    name: String,
    handle: Handle,
    events: mpsc::Receiver<Ev>,
    /// Messages that arrived while the test waited for something else.
    stash: VecDeque<Msg>,
    reader: Option<JoinHandle<()>>,
    /// The CONNACK's Session Present flag.
    session_present: bool,
}

/// Forwards events until the connection fails or sends its DISCONNECT.
fn forward<E>(tx: &mpsc::Sender<Ev>, events: impl Iterator<Item = E>, reduce: fn(E) -> Ev) {
    for event in events {
        let ev = reduce(event);
        let last = matches!(ev, Ev::Failed(_) | Ev::DisconnectSent);
        if tx.send(ev).is_err() || last {
            return;
        }
    }
}

impl Peer {
    /// Connects an MQTT 5 client with keep-alive 10 s and whatever `configure` adds, and waits
    /// for its CONNACK.
    fn v5(name: &str, port: u16, configure: impl FnOnce(&mut v5::MqttOptions)) -> Self {
        let mut options = v5::MqttOptions::new(name, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        configure(&mut options);
        let (client, mut connection) = v5::Client::new(options, 64);
        let (tx, events) = mpsc::channel();
        let reader = thread::spawn(move || forward(&tx, connection.iter(), v5_event));
        Self::connected(name, Handle::V5(client), events, reader)
    }

    /// Connects an MQTT 3.1.1 client with keep-alive 10 s and whatever `configure` adds, and
    /// waits for its CONNACK.
    fn v311(name: &str, port: u16, configure: impl FnOnce(&mut rumqttc::MqttOptions)) -> Self {
        let mut options = rumqttc::MqttOptions::new(name, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        configure(&mut options);
        let (client, mut connection) = rumqttc::Client::new(options, 64);
        let (tx, events) = mpsc::channel();
        let reader = thread::spawn(move || forward(&tx, connection.iter(), v311_event));
        Self::connected(name, Handle::V311(client), events, reader)
    }

    /// Connects a client of `version` with default options.
    fn new(version: Version, name: &str, port: u16) -> Self {
        match version {
            Version::V5 => Self::v5(name, port, |_| {}),
            Version::V311 => Self::v311(name, port, |_| {}),
        }
    }

    fn connected(
        name: &str,
        handle: Handle,
        events: mpsc::Receiver<Ev>,
        reader: JoinHandle<()>,
    ) -> Self {
        let mut peer = Self {
            name: name.to_owned(),
            handle,
            events,
            stash: VecDeque::new(),
            reader: Some(reader),
            session_present: false,
        };
        peer.session_present = peer.wait("CONNACK", |ev| match ev {
            Ev::ConnAck { session_present } => Some(*session_present),
            _ => None,
        });
        peer
    }

    /// Waits (at most [`STEP`]) for the first event `pick` takes. Messages it passes over are
    /// kept for [`Peer::recv`]; a connection failure fails the test.
    fn wait<T>(&mut self, what: &str, mut pick: impl FnMut(&Ev) -> Option<T>) -> T {
        let end = Instant::now() + STEP;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let ev = match self.events.recv_timeout(left) {
                Ok(ev) => ev,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: no {what} within {STEP:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{}: the connection ended before {what}", self.name)
                }
            };
            if let Some(found) = pick(&ev) {
                return found;
            }
            match ev {
                Ev::Publish(m) => self.stash.push_back(m),
                Ev::Failed(e) => panic!("{}: connection failed awaiting {what}: {e}", self.name),
                _ => {}
            }
        }
    }

    /// Subscribes to one filter; returns the granted QoS (`None`: refused).
    fn subscribe(&mut self, filter: &str, qos: u8) -> Option<u8> {
        match &self.handle {
            Handle::V5(c) => c.subscribe(filter, v5_qos(qos)).map_err(|e| e.to_string()),
            Handle::V311(c) => c
                .subscribe(filter, v311_qos(qos))
                .map_err(|e| e.to_string()),
        }
        .expect("subscribe queued");
        let granted = self.wait("SUBACK", |ev| match ev {
            Ev::SubAck(codes) => Some(codes.clone()),
            _ => None,
        });
        assert_eq!(granted.len(), 1, "{}: one code per filter", self.name);
        granted[0]
    }

    /// Publishes and waits until the flow for `qos` is done on this side.
    fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        let payload = payload.into();
        match &self.handle {
            Handle::V5(c) => c
                .publish(topic, v5_qos(qos), retain, payload)
                .map_err(|e| e.to_string()),
            Handle::V311(c) => c
                .publish(topic, v311_qos(qos), retain, payload)
                .map_err(|e| e.to_string()),
        }
        .expect("publish queued");
        self.await_ack(topic, qos);
    }

    /// Publishes with MQTT 5 properties and waits until the flow for `qos` is done.
    fn publish_with(
        &mut self,
        topic: &str,
        qos: u8,
        payload: impl Into<Vec<u8>>,
        properties: PublishProperties,
    ) {
        let Handle::V5(c) = &self.handle else {
            panic!("{}: publish properties need MQTT 5", self.name);
        };
        c.publish_with_properties(topic, v5_qos(qos), false, payload.into(), properties)
            .expect("publish queued");
        self.await_ack(topic, qos);
    }

    fn await_ack(&mut self, topic: &str, qos: u8) {
        let error = self.wait(
            &format!("QoS {qos} completion for {topic:?}"),
            |ev| match ev {
                Ev::Acked { qos: q, error } if *q == qos => Some(error.clone()),
                _ => None,
            },
        );
        assert_eq!(error, None, "{}: publish to {topic:?} refused", self.name);
    }

    /// The next message.
    fn recv(&mut self) -> Msg {
        if let Some(m) = self.stash.pop_front() {
            return m;
        }
        self.wait("message", |ev| match ev {
            Ev::Publish(m) => Some(m.clone()),
            _ => None,
        })
    }

    /// The messages before the next one on `marker` (which is consumed).
    fn recv_until(&mut self, marker: &str) -> Vec<Msg> {
        let mut before = Vec::new();
        loop {
            let m = self.recv();
            if m.topic == marker {
                return before;
            }
            before.push(m);
        }
    }

    /// Sends DISCONNECT and waits for the connection thread to end.
    fn disconnect(mut self) {
        match &self.handle {
            Handle::V5(c) => c.disconnect().map_err(|e| e.to_string()),
            Handle::V311(c) => c.disconnect().map_err(|e| e.to_string()),
        }
        .expect("disconnect queued");
        self.wait("DISCONNECT sent", |ev| {
            matches!(ev, Ev::DisconnectSent).then_some(())
        });
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the connection thread");
        }
    }
}

/// A bare MQTT client on a TCP socket, encoding and decoding with `mqtt5-codec`.
struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    decoder: codec::Decoder,
    version: codec::ProtocolVersion,
}

impl RawClient {
    /// Sends `connect` and returns the client with the broker's CONNACK.
    fn connect(addr: SocketAddr, connect: codec::Connect) -> (Self, codec::ConnAck) {
        let stream = TcpStream::connect(addr).expect("TCP connect");
        stream.set_read_timeout(Some(STEP)).expect("read timeout");
        let version = connect.protocol;
        let mut client = Self {
            stream,
            buf: BytesMut::new(),
            decoder: codec::Decoder::new(version),
            version,
        };
        client.send(&codec::Packet::from(connect));
        match client.recv() {
            Some(codec::Packet::ConnAck(ack)) => (client, *ack),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: &codec::Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out);
        self.stream.write_all(&out).expect("write to the broker");
    }

    /// The next packet, or `None` once the broker has closed the connection.
    fn recv(&mut self) -> Option<codec::Packet> {
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .expect("the broker sends well-formed packets")
            {
                return Some(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("nothing from the broker within {STEP:?}")
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read from the broker: {e}"),
            }
        }
    }
}

/// A CONNECT with a QoS 1 will.
fn connect_with_will(
    version: codec::ProtocolVersion,
    client_id: &str,
    will_topic: &str,
    will_payload: &'static str,
) -> codec::Connect {
    codec::Connect {
        protocol: version,
        client_id: codec::MqttString::try_from(client_id).expect("a client id"),
        keep_alive: 30,
        will: Some(codec::Will {
            qos: codec::QoS::AtLeastOnce,
            retain: false,
            properties: codec::WillProperties::default(),
            topic: codec::TopicName::try_from(will_topic).expect("a topic"),
            payload: Bytes::from_static(will_payload.as_bytes()),
        }),
        ..codec::Connect::default()
    }
}

// ---------------------------------------------------------------------------------------------
// QoS

/// Three subscribers (QoS 0, 1, 2) each get one message of each QoS (0, 1, 2), at the lower of
/// the two ([MQTT-3.8.4-8]).
fn delivery_qos_is_min_of_publish_and_subscription(publisher: Version, subscribers: Version) {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.addr.port();
    let mut subs: Vec<(u8, Peer)> = (0..=2)
        .map(|sub_qos| {
            let mut s = Peer::new(subscribers, &format!("sub-q{sub_qos}"), port);
            assert_eq!(
                s.subscribe("qos/#", sub_qos),
                Some(sub_qos),
                "granted as asked"
            );
            (sub_qos, s)
        })
        .collect();
    let mut publisher = Peer::new(publisher, "pub", port);
    for pub_qos in 0..=2u8 {
        publisher.publish(
            &format!("qos/{pub_qos}"),
            pub_qos,
            false,
            format!("at qos {pub_qos}"),
        );
    }
    publisher.publish("qos/end", 1, false, "end");
    for (sub_qos, sub) in &mut subs {
        let got: BTreeMap<String, (u8, String)> = sub
            .recv_until("qos/end")
            .into_iter()
            .map(|m| (m.topic.clone(), (m.qos, m.text())))
            .collect();
        let want: BTreeMap<String, (u8, String)> = (0..=2u8)
            .map(|q| (format!("qos/{q}"), (q.min(*sub_qos), format!("at qos {q}"))))
            .collect();
        assert_eq!(got, want, "subscriber at QoS {sub_qos}");
    }
    publisher.disconnect();
    for (_, sub) in subs {
        sub.disconnect();
    }
}

#[test]
fn v5_each_qos_is_delivered_at_the_lower_of_publish_and_subscription_qos() {
    delivery_qos_is_min_of_publish_and_subscription(Version::V5, Version::V5);
}

#[test]
fn v311_each_qos_is_delivered_at_the_lower_of_publish_and_subscription_qos() {
    delivery_qos_is_min_of_publish_and_subscription(Version::V311, Version::V311);
}

#[test]
fn v311_publisher_reaches_v5_subscribers_at_the_lower_qos() {
    delivery_qos_is_min_of_publish_and_subscription(Version::V311, Version::V5);
}

#[test]
fn v5_publisher_reaches_v311_subscribers_at_the_lower_qos() {
    delivery_qos_is_min_of_publish_and_subscription(Version::V5, Version::V311);
}

// ---------------------------------------------------------------------------------------------
// Retained messages

fn retained_message_is_sent_on_subscribe_and_cleared_by_empty_payload(version: Version) {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.addr.port();
    let mut live = Peer::new(version, "live", port);
    live.subscribe("state/#", 1);
    let mut publisher = Peer::new(version, "pub", port);
    publisher.publish("state/lamp", 1, true, "on");

    // An existing subscription gets it with RETAIN 0 ([MQTT-3.3.1-9] in 3.1.1; in MQTT 5
    // [MQTT-3.3.1-12], Retain As Published being off).
    let m = live.recv();
    assert_eq!((m.topic.as_str(), m.text().as_str()), ("state/lamp", "on"));
    assert!(!m.retain, "a live delivery is not flagged retained");

    // A new subscription gets the stored message with RETAIN 1 ([MQTT-3.3.1-6],
    // [MQTT-3.3.1-8] in 3.1.1).
    let mut late = Peer::new(version, "late", port);
    late.subscribe("state/#", 1);
    let m = late.recv();
    assert_eq!((m.topic.as_str(), m.text().as_str()), ("state/lamp", "on"));
    assert!(m.retain, "the stored message is flagged retained");
    assert_eq!(m.qos, 1);

    // A retained PUBLISH with an empty payload clears it ([MQTT-3.3.1-10] / [MQTT-3.3.1-6]),
    // and still reaches current subscribers.
    publisher.publish("state/lamp", 1, true, Vec::new());
    let m = live.recv();
    assert_eq!(m.topic, "state/lamp");
    assert!(m.payload.is_empty());

    // A subscription made now gets nothing stored: the first thing it sees is the marker.
    let mut after = Peer::new(version, "after", port);
    after.subscribe("state/#", 1);
    publisher.publish("state/marker", 1, false, "marker");
    let before = after.recv_until("state/marker");
    assert!(
        before.is_empty(),
        "nothing retained after the clear: {before:?}"
    );

    for p in [publisher, live, late, after] {
        p.disconnect();
    }
}

#[test]
fn v5_retained_message_is_sent_on_subscribe_and_cleared_by_empty_payload() {
    retained_message_is_sent_on_subscribe_and_cleared_by_empty_payload(Version::V5);
}

#[test]
fn v311_retained_message_is_sent_on_subscribe_and_cleared_by_empty_payload() {
    retained_message_is_sent_on_subscribe_and_cleared_by_empty_payload(Version::V311);
}

// ---------------------------------------------------------------------------------------------
// Wills

/// A will client (a raw socket: closing it is certain to skip DISCONNECT) whose connection just
/// closes; a rumqttc subscriber of the same version gets the will ([MQTT-3.1.2-8]).
fn will_is_published_when_the_connection_drops(version: Version) {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let mut watcher = Peer::new(version, "watcher", broker.addr.port());
    watcher.subscribe("wills/#", 1);
    let codec_version = match version {
        Version::V5 => codec::ProtocolVersion::V5,
        Version::V311 => codec::ProtocolVersion::V3_1_1,
    };
    let (raw, ack) = RawClient::connect(
        broker.addr,
        connect_with_will(codec_version, "dev-1", "wills/dev-1", "dev-1 is gone"),
    );
    assert_eq!(ack.reason, codec::ConnAckReason::Success);
    drop(raw);
    let m = watcher.recv();
    assert_eq!(
        (m.topic.as_str(), m.text().as_str(), m.qos),
        ("wills/dev-1", "dev-1 is gone", 1)
    );
    watcher.disconnect();
}

#[test]
fn v5_will_is_published_when_the_connection_drops_without_disconnect() {
    will_is_published_when_the_connection_drops(Version::V5);
}

#[test]
fn v311_will_is_published_when_the_connection_drops_without_disconnect() {
    will_is_published_when_the_connection_drops(Version::V311);
}

#[test]
fn will_is_discarded_after_a_normal_disconnect() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let mut watcher = Peer::new(Version::V5, "watcher", broker.addr.port());
    watcher.subscribe("wills/#", 1);
    let (mut raw, _) = RawClient::connect(
        broker.addr,
        connect_with_will(codec::ProtocolVersion::V5, "dev-2", "wills/dev-2", "gone"),
    );
    raw.send(&codec::Packet::from(codec::Disconnect::new(
        codec::DisconnectReason::NormalDisconnection,
    )));
    // The broker closes the connection once it has handled the DISCONNECT and discarded the
    // will ([MQTT-3.1.2-10], [MQTT-3.14.4-3]): after this, the will would already be out.
    assert_eq!(raw.recv(), None, "the broker closes after DISCONNECT");
    let mut publisher = Peer::new(Version::V5, "pub", broker.addr.port());
    publisher.publish("wills/marker", 1, false, "marker");
    let before = watcher.recv_until("wills/marker");
    assert!(
        before.is_empty(),
        "no will after DISCONNECT 0x00: {before:?}"
    );
    publisher.disconnect();
    watcher.disconnect();
}

#[test]
fn v5_disconnect_with_will_message_reason_publishes_the_will() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let mut watcher = Peer::new(Version::V5, "watcher", broker.addr.port());
    watcher.subscribe("wills/#", 1);
    let (mut raw, _) = RawClient::connect(
        broker.addr,
        connect_with_will(codec::ProtocolVersion::V5, "dev-3", "wills/dev-3", "bye"),
    );
    raw.send(&codec::Packet::from(codec::Disconnect::new(
        codec::DisconnectReason::DisconnectWithWillMessage,
    )));
    assert_eq!(raw.recv(), None, "the broker closes after DISCONNECT");
    let m = watcher.recv();
    assert_eq!(
        (m.topic.as_str(), m.text().as_str()),
        ("wills/dev-3", "bye")
    );
    watcher.disconnect();
}

// ---------------------------------------------------------------------------------------------
// Sessions across a restart

/// A persistent session subscribes at QoS 1 and leaves; three messages are published; the
/// broker stops (SIGTERM) and starts again on the same data directory; the client comes back
/// with Session Present and gets the three, in order, then a live one on the same
/// subscription (it did not subscribe again).
fn queued_messages_survive_a_restart(version: Version) {
    let dir = temp_dir();
    let mut broker = Mqtt5d::start(dir.path(), &[]);
    let keeper = |port: u16| match version {
        Version::V5 => Peer::v5("keeper", port, |o| {
            o.set_clean_start(false)
                .set_session_expiry_interval(Some(3600));
        }),
        Version::V311 => Peer::v311("keeper", port, |o| {
            o.set_clean_session(false);
        }),
    };
    let mut k = keeper(broker.addr.port());
    assert!(!k.session_present, "a fresh data directory has no session");
    assert_eq!(k.subscribe("durable/#", 1), Some(1));
    k.disconnect();

    let mut publisher = Peer::new(version, "pub", broker.addr.port());
    for i in 1..=3 {
        publisher.publish(&format!("durable/{i}"), 1, false, format!("kept {i}"));
    }
    publisher.disconnect();
    let status = broker.stop();
    assert!(status.success(), "graceful stop: {status:?}");

    let broker = Mqtt5d::start(dir.path(), &[]);
    let mut k = keeper(broker.addr.port());
    assert!(k.session_present, "the session came back from the database");
    let got: Vec<(String, String, u8)> = (0..3)
        .map(|_| {
            let m = k.recv();
            (m.topic.clone(), m.text(), m.qos)
        })
        .collect();
    let want: Vec<(String, String, u8)> = (1..=3)
        .map(|i| (format!("durable/{i}"), format!("kept {i}"), 1))
        .collect();
    assert_eq!(got, want);

    let mut publisher = Peer::new(version, "pub", broker.addr.port());
    publisher.publish("durable/live", 1, false, "live");
    let m = k.recv();
    assert_eq!(
        (m.topic.as_str(), m.text().as_str()),
        ("durable/live", "live")
    );
    publisher.disconnect();
    k.disconnect();
}

#[test]
fn v5_session_with_expiry_gets_queued_messages_after_a_broker_restart() {
    queued_messages_survive_a_restart(Version::V5);
}

#[test]
fn v311_persistent_session_gets_queued_messages_after_a_broker_restart() {
    queued_messages_survive_a_restart(Version::V311);
}

// ---------------------------------------------------------------------------------------------
// Shared subscriptions

#[test]
fn shared_subscription_splits_messages_between_group_members() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.addr.port();
    let mut workers: Vec<Peer> = ["worker-a", "worker-b"]
        .iter()
        .map(|name| {
            let mut w = Peer::new(Version::V5, name, port);
            assert_eq!(w.subscribe("$share/g/jobs/#", 1), Some(1));
            // A plain subscription for the end marker, which both get.
            w.subscribe("ctl/done", 1);
            w
        })
        .collect();
    let mut publisher = Peer::new(Version::V5, "pub", port);
    for i in 0..20 {
        publisher.publish(&format!("jobs/{i}"), 1, false, format!("job {i}"));
    }
    publisher.publish("ctl/done", 1, false, "done");

    let mut all = Vec::new();
    for w in &mut workers {
        let got: Vec<String> = w.recv_until("ctl/done").iter().map(Msg::text).collect();
        assert!(!got.is_empty(), "{} got none of the 20", w.name);
        all.extend(got);
    }
    assert_eq!(all.len(), 20, "exactly one delivery per message: {all:?}");
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 20, "no message twice: {all:?}");
    publisher.disconnect();
    for w in workers {
        w.disconnect();
    }
}

// ---------------------------------------------------------------------------------------------
// Topic aliases

#[test]
fn v5_broker_topic_aliases_within_the_subscriber_maximum_resolve_to_the_right_topics() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.addr.port();
    let mut sub = Peer::v5("alias-sub", port, |o| {
        o.set_topic_alias_max(Some(2));
    });
    sub.subscribe("alias/#", 1);
    let mut publisher = Peer::new(Version::V5, "pub", port);
    let topics = [
        "alias/a", "alias/b", "alias/c", "alias/a", "alias/b", "alias/c", "alias/a",
    ];
    for (i, topic) in topics.iter().enumerate() {
        publisher.publish(topic, 1, false, format!("{i} {topic}"));
    }
    // rumqttc resolves an incoming alias only in its own copy of the packet: the event it
    // reports carries the topic as sent (empty when the alias stands for it). So the test
    // keeps the alias table itself, as a client must ([MQTT-3.3.2-12]).
    let mut table: HashMap<u16, String> = HashMap::new();
    let mut aliased = 0;
    for (i, topic) in topics.iter().enumerate() {
        let m = sub.recv();
        let alias = m.properties.as_ref().and_then(|p| p.topic_alias);
        if let Some(a) = alias {
            assert!((1..=2).contains(&a), "alias {a} within the maximum 2");
        }
        let resolved = match (m.topic.is_empty(), alias) {
            (false, Some(a)) => {
                table.insert(a, m.topic.clone());
                m.topic.clone()
            }
            (false, None) => m.topic.clone(),
            (true, Some(a)) => {
                aliased += 1;
                table
                    .get(&a)
                    .unwrap_or_else(|| panic!("alias {a} used before it was set"))
                    .clone()
            }
            (true, None) => panic!("an empty topic without an alias"),
        };
        assert_eq!(resolved, *topic, "message {i}");
        assert_eq!(m.text(), format!("{i} {topic}"));
    }
    assert!(aliased > 0, "the broker used its aliases");
    publisher.disconnect();
    sub.disconnect();
}

#[test]
fn v5_publisher_topic_alias_is_resolved_for_subscribers() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.addr.port();
    let mut sub5 = Peer::new(Version::V5, "sub-v5", port);
    sub5.subscribe("alias/#", 1);
    let mut sub311 = Peer::new(Version::V311, "sub-v311", port);
    sub311.subscribe("alias/#", 1);
    let mut publisher = Peer::new(Version::V5, "alias-pub", port);
    let with_alias = || PublishProperties {
        topic_alias: Some(1),
        ..PublishProperties::default()
    };
    // First the topic and the alias together (which sets it), then the alias alone.
    publisher.publish_with("alias/in", 1, "first", with_alias());
    publisher.publish_with("", 1, "second", with_alias());
    for sub in [&mut sub5, &mut sub311] {
        for payload in ["first", "second"] {
            let m = sub.recv();
            assert_eq!(
                (m.topic.as_str(), m.text().as_str()),
                ("alias/in", payload),
                "{}",
                sub.name
            );
            // The subscribers set no Topic Alias Maximum: the broker must not alias towards
            // them, nor pass the publisher's alias on.
            assert_eq!(m.properties.and_then(|p| p.topic_alias), None);
        }
    }
    publisher.disconnect();
    sub5.disconnect();
    sub311.disconnect();
}

// ---------------------------------------------------------------------------------------------
// Request / response

#[test]
fn v5_response_topic_and_correlation_data_make_a_round_trip() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.addr.port();
    let mut responder = Peer::new(Version::V5, "responder", port);
    responder.subscribe("svc/add", 1);
    let mut requester = Peer::new(Version::V5, "requester", port);
    requester.subscribe("replies/requester", 1);
    // Binary correlation data, not valid UTF-8, to show it is passed through as bytes.
    let correlation = Bytes::from_static(b"\x00\xffreq-42\x80");
    requester.publish_with(
        "svc/add",
        1,
        "2 3",
        PublishProperties {
            response_topic: Some("replies/requester".to_owned()),
            correlation_data: Some(correlation.clone()),
            ..PublishProperties::default()
        },
    );

    let request = responder.recv();
    assert_eq!(request.topic, "svc/add");
    let props = request
        .properties
        .clone()
        .expect("the request keeps its properties");
    let reply_to = props.response_topic.expect("a Response Topic");
    assert_eq!(reply_to, "replies/requester");
    assert_eq!(props.correlation_data.as_ref(), Some(&correlation));
    let sum: u32 = request
        .text()
        .split(' ')
        .map(|n| n.parse::<u32>().expect("a number"))
        .sum();
    responder.publish_with(
        &reply_to,
        1,
        sum.to_string(),
        PublishProperties {
            correlation_data: props.correlation_data,
            ..PublishProperties::default()
        },
    );

    let reply = requester.recv();
    assert_eq!(
        (reply.topic.as_str(), reply.text().as_str()),
        ("replies/requester", "5")
    );
    assert_eq!(
        reply.properties.and_then(|p| p.correlation_data),
        Some(correlation)
    );
    responder.disconnect();
    requester.disconnect();
}
