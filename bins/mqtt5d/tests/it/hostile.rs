//! Hostile and abusive clients against the real binary: idle and slow sockets, huge declared
//! lengths, connection bursts, exhausted flow control, topic alias and topic depth abuse,
//! subscription floods, wills to denied topics and malformed user names.
//!
//! Every test shows three things: the broker stays up (it serves a well-behaved client after
//! the attack, and stops cleanly on SIGTERM), the offender gets the right reason code or a
//! close, and where the attack aims at memory, the broker's resident set stays bounded
//! (`VmRSS` from `/proc/PID/status`, before and after).
//!
//! The clients are bare TCP sockets speaking `mqtt5-codec` ([`Raw`]), so that a test can send
//! exactly the bytes it means to, well-formed or not. Every read has a deadline ([`STEP`]) and
//! every loop a fixed count.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::{
    ConnAckReason, Connect, Decoder, Delivery, Disconnect, DisconnectReason, MqttString, Packet,
    PacketId, PingReq, ProtocolVersion, PubAckReason, Publish, PublishProperties, QoS,
    SubAckReason, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, Will, WillProperties,
};

use crate::harness::*;

/// The longest any one wait may take.
const STEP: Duration = Duration::from_secs(10);

/// How much the broker's resident set may grow across an attack: generous, since allocators
/// keep freed memory, yet far below what the attack would cost if the broker believed it.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

/// A bare MQTT 5 client on a TCP socket.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Raw {
    /// A TCP connection, nothing sent yet.
    pub(crate) fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("TCP connect");
        stream.set_read_timeout(Some(STEP)).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(ProtocolVersion::V5),
        }
    }

    /// Connects with `connect` and checks for a successful CONNACK.
    pub(crate) fn connect_with(addr: SocketAddr, connect: Connect) -> Self {
        let mut client = Self::open(addr);
        client.send(&Packet::from(connect));
        match client.recv() {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ConnAckReason::Success),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
        client
    }

    /// Connects (MQTT 5, Clean Start) as `client_id`.
    pub(crate) fn connect(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect_with(addr, connect_packet(client_id))
    }

    pub(crate) fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut out);
        self.send_bytes(&out);
    }

    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// The next packet, or `None` once the broker has closed the connection.
    pub(crate) fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .expect("the broker sends well-formed packets")
            {
                return Some(packet);
            }
            if !read_more(&mut self.stream, &mut self.buf) {
                assert!(self.buf.is_empty(), "the broker closed mid-packet");
                return None;
            }
        }
    }

    /// The next packet must be a DISCONNECT with `reason`, and then the connection must end.
    pub(crate) fn expect_disconnect(&mut self, reason: DisconnectReason) {
        match self.recv() {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
            other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
        }
        self.expect_closed();
    }

    /// The broker must close the connection with nothing (more) sent.
    pub(crate) fn expect_closed(&mut self) {
        let next = self.recv();
        assert!(
            next.is_none(),
            "expected the connection to end, got {next:?}"
        );
    }

    /// A PINGREQ answered by a PINGRESP: the connection is still served.
    pub(crate) fn ping(&mut self) {
        self.send(&Packet::PingReq(PingReq));
        match self.recv() {
            Some(Packet::PingResp(_)) => {}
            other => panic!("expected a PINGRESP, got {other:?}"),
        }
    }

    /// Subscribes to `filters` at QoS 1; returns the SUBACK's reason codes.
    pub(crate) fn subscribe(&mut self, packet_id: u16, filters: &[String]) -> Vec<SubAckReason> {
        self.send(&subscribe_packet(packet_id, filters));
        match self.recv() {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.packet_id, id(packet_id));
                ack.reasons
            }
            other => panic!("expected a SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason code.
    pub(crate) fn publish_qos1(
        &mut self,
        packet_id: u16,
        topic: &str,
        payload: &'static [u8],
    ) -> PubAckReason {
        let mut publish = Publish::new(TopicName::try_from(topic).expect("a topic"), payload);
        publish.delivery = Delivery::AtLeastOnce(id(packet_id));
        self.send(&Packet::from(publish));
        match self.recv() {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.packet_id, id(packet_id));
                ack.reason
            }
            other => panic!("expected a PUBACK, got {other:?}"),
        }
    }

    /// The next packet must be a PUBLISH; returns it.
    pub(crate) fn expect_publish(&mut self) -> Publish {
        match self.recv() {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    /// Sends DISCONNECT (normal) and closes.
    pub(crate) fn disconnect(mut self) {
        self.send(&Packet::from(Disconnect::new(
            DisconnectReason::NormalDisconnection,
        )));
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Reads what the socket has into `buf`; false at the end of the stream (EOF or reset).
/// Fails the test when nothing arrives within [`STEP`].
pub(crate) fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("nothing from the broker within {STEP:?}")
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
        Err(e) => panic!("read from the broker: {e}"),
    }
}

/// Reads until the broker closes the connection; returns every byte it sent first.
fn read_to_close(stream: &mut TcpStream) -> BytesMut {
    let mut buf = BytesMut::new();
    while read_more(stream, &mut buf) {
        assert!(buf.len() < 1024 * 1024, "the broker keeps sending");
    }
    buf
}

pub(crate) fn connect_packet(client_id: &str) -> Connect {
    Connect {
        clean_start: true,
        client_id: MqttString::try_from(client_id).expect("a client id"),
        keep_alive: 60,
        ..Connect::default()
    }
}

pub(crate) fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

pub(crate) fn subscribe_packet(packet_id: u16, filters: &[String]) -> Packet {
    Packet::from(Subscribe {
        packet_id: id(packet_id),
        properties: SubscribeProperties::default(),
        subscriptions: filters
            .iter()
            .map(|f| Subscription {
                filter: TopicFilter::try_from(f.as_str()).expect("a filter"),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            })
            .collect(),
    })
}

/// Writes `config` (TOML) into `dir` and starts the broker with it.
pub(crate) fn start_with(dir: &Path, config: &str) -> Mqtt5d {
    let path = dir.join("mqtt5d.toml");
    std::fs::write(&path, config).expect("write the config");
    Mqtt5d::start(dir, &["--config", path.to_str().expect("a UTF-8 path")])
}

/// The broker's resident set, in KiB.
pub(crate) fn rss_kib(broker: &Mqtt5d) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid()))
        .expect("/proc/PID/status of the broker");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

fn assert_rss_bounded(before: u64, after: u64, what: &str) {
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_KIB,
        "{what}: the broker's RSS grew from {before} KiB to {after} KiB"
    );
}

/// A well-behaved subscriber and publisher get a QoS 1 round trip through the broker.
pub(crate) fn assert_service(addr: SocketAddr, tag: &str) {
    // Under `open/`, which the ACL of the will test allows.
    let topic = format!("open/service/{tag}");
    let mut sub = Raw::connect(addr, &format!("svc-sub-{tag}"));
    assert_eq!(
        sub.subscribe(1, std::slice::from_ref(&topic)),
        [SubAckReason::GrantedQoS1]
    );
    let mut publisher = Raw::connect(addr, &format!("svc-pub-{tag}"));
    assert_eq!(
        publisher.publish_qos1(1, &topic, b"still served"),
        PubAckReason::Success
    );
    let got = sub.expect_publish();
    assert_eq!(
        (got.topic(), got.payload()),
        (topic.as_str(), &b"still served"[..])
    );
    publisher.disconnect();
    sub.disconnect();
}

/// The broker is still up: it serves a client, then stops cleanly on SIGTERM.
fn assert_up_then_stop(mut broker: Mqtt5d, tag: &str) {
    assert_service(broker.addr, tag);
    let status = broker.stop();
    assert!(status.success(), "mqtt5d exited with {status}");
}

#[test]
fn silent_socket_is_closed_at_the_connect_timeout() {
    let dir = temp_dir();
    let broker = start_with(dir.path(), "[broker]\nconnect_timeout_secs = 1\n");
    let opened = Instant::now();
    let mut idle = TcpStream::connect(broker.addr).expect("TCP connect");
    idle.set_read_timeout(Some(STEP)).expect("read timeout");
    // Others are served while the idle socket waits.
    assert_service(broker.addr, "idle");
    let sent = read_to_close(&mut idle);
    let took = opened.elapsed();
    assert!(
        sent.is_empty(),
        "the broker sent {sent:?} to a silent socket"
    );
    // Not before the 1 s connect timeout. How late is not asserted (no timed assertions):
    // the read above is bounded by STEP.
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the 1 s connect timeout"
    );
    assert_up_then_stop(broker, "after-idle");
}

/// A client dribbles its CONNECT, one byte every 200 ms (more than a minute for all of it):
/// the broker closes it at the 5 s connect timeout without answering, and serves another
/// client meanwhile. Only lower bounds on time are asserted; the 5 s leave the service check
/// room on a slow machine.
#[test]
fn slowloris_connect_is_closed_at_the_timeout_without_blocking_others() {
    let dir = temp_dir();
    let broker = start_with(dir.path(), "[broker]\nconnect_timeout_secs = 5\n");
    let mut bytes = BytesMut::new();
    Packet::from(connect_packet(&"slowloris".repeat(40))).encode(ProtocolVersion::V5, &mut bytes);
    assert!(bytes.len() >= 300, "a CONNECT of {} bytes", bytes.len());
    let bytes = bytes.freeze();
    let opened = Instant::now();
    let mut slow = TcpStream::connect(broker.addr).expect("TCP connect");
    slow.set_read_timeout(Some(STEP)).expect("read timeout");
    slow.set_nodelay(true).expect("nodelay");
    let done = Arc::new(AtomicBool::new(false));
    let (started, dribbling) = std::sync::mpsc::channel();
    let writer = {
        let mut slow = slow.try_clone().expect("clone the socket");
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut written = 0;
            for byte in bytes.iter() {
                if done.load(Ordering::Relaxed) || slow.write_all(&[*byte]).is_err() {
                    break;
                }
                written += 1;
                if written == 2 {
                    let _ = started.send(());
                }
                // The pace of the attack, not a wait for anything.
                thread::sleep(Duration::from_millis(200));
            }
            (written, bytes.len())
        })
    };
    dribbling
        .recv_timeout(STEP)
        .expect("the slow client started its CONNECT");
    // Others get their service while the slow CONNECT dribbles in.
    assert_service(broker.addr, "slowloris");
    let served = opened.elapsed();
    let sent = read_to_close(&mut slow);
    let closed = opened.elapsed();
    done.store(true, Ordering::Relaxed);
    let (written, total) = writer.join().expect("the writer thread");
    assert!(sent.is_empty(), "the slow client got {sent:?}: no CONNACK");
    assert!(
        written < total,
        "the whole CONNECT ({total} bytes) went out before the close"
    );
    // Not before the 5 s connect timeout. How late is not asserted: the read is bounded by
    // STEP only.
    assert!(
        closed >= Duration::from_millis(4800),
        "closed after {closed:?}, before the 5 s connect timeout"
    );
    assert!(
        served < closed,
        "the well-behaved client was served only after {served:?}"
    );
    assert_up_then_stop(broker, "after-slowloris");
}

#[test]
fn declared_256_mib_remaining_length_gets_packet_too_large_without_growing_memory() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let mut offender = Raw::connect(broker.addr, "huge-length");
    let before = rss_kib(&broker);
    // PUBLISH, QoS 0, Remaining Length 0x1000_0000 (256 MiB): 0x80 0x80 0x80 0x01.
    offender.send_bytes(&[0x30, 0x80, 0x80, 0x80, 0x01]);
    offender.expect_disconnect(DisconnectReason::PacketTooLarge);
    let after = rss_kib(&broker);
    assert_rss_bounded(before, after, "256 MiB Remaining Length");
    assert_up_then_stop(broker, "after-huge-length");
}

#[test]
fn burst_of_10000_connects_is_answered_with_memory_bounded() {
    const THREADS: usize = 10;
    const PER_THREAD: usize = 1000;
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &["--durability", "memory"]);
    let addr = broker.addr;
    let before = rss_kib(&broker);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                let mut accepted = 0;
                for i in 0..PER_THREAD {
                    let mut c = Raw::open(addr);
                    c.send(&Packet::from(connect_packet(&format!("burst-{t}-{i}"))));
                    match c.recv() {
                        Some(Packet::ConnAck(ack)) if ack.reason == ConnAckReason::Success => {
                            accepted += 1;
                        }
                        other => panic!("connect {t}/{i}: expected a CONNACK, got {other:?}"),
                    }
                    // Closed without DISCONNECT: the broker must clean up lost connections.
                }
                accepted
            })
        })
        .collect();
    let accepted: usize = workers
        .into_iter()
        .map(|w| w.join().expect("a connect thread"))
        .sum();
    assert_eq!(accepted, THREADS * PER_THREAD, "every CONNECT is answered");
    // The last connections' close is processed before the service check completes.
    assert_service(addr, "burst");
    let after = rss_kib(&broker);
    assert_rss_bounded(before, after, "10,000 connections");
    assert_up_then_stop(broker, "after-burst");
}

#[test]
fn qos2_publishes_without_pubrel_past_receive_maximum_get_0x93() {
    let dir = temp_dir();
    let broker = start_with(dir.path(), "[broker]\nreceive_maximum = 16\n");
    let mut offender = Raw::connect(broker.addr, "qos2-hoarder");
    let mut out = BytesMut::new();
    for n in 1..=17u16 {
        let mut publish = Publish::new(TopicName::try_from("hoard/x").expect("a topic"), "x");
        publish.delivery = Delivery::ExactlyOnce(id(n));
        Packet::from(publish).encode(ProtocolVersion::V5, &mut out);
    }
    offender.send_bytes(&out);
    let mut pubrecs = Vec::new();
    loop {
        match offender.recv() {
            Some(Packet::PubRec(rec)) => pubrecs.push(rec.packet_id.get()),
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, DisconnectReason::ReceiveMaximumExceeded);
                break;
            }
            other => panic!("expected PUBREC or DISCONNECT, got {other:?}"),
        }
        assert!(pubrecs.len() <= 16, "more PUBRECs than Receive Maximum");
    }
    assert_eq!(pubrecs, (1..=16).collect::<Vec<u16>>());
    offender.expect_closed();
    assert_up_then_stop(broker, "after-qos2");
}

#[test]
fn topic_alias_above_maximum_gets_0x94_and_unknown_alias_gets_0x82() {
    let dir = temp_dir();
    let broker = start_with(dir.path(), "[broker]\ntopic_alias_maximum = 8\n");
    // Above the maximum: [MQTT-3.3.2-9], 0x94 Topic Alias invalid.
    let mut over = Raw::connect(broker.addr, "alias-over");
    let mut publish = Publish::new(TopicName::try_from("alias/x").expect("a topic"), "x");
    publish.properties = PublishProperties {
        topic_alias: NonZeroU16::new(9),
        ..PublishProperties::default()
    }
    .into();
    over.send(&Packet::from(publish));
    over.expect_disconnect(DisconnectReason::TopicAliasInvalid);

    // An empty topic with an alias never set on this connection: 0x82 Protocol Error (§3.3.4).
    // PUBLISH QoS 0, topic length 0, properties [Topic Alias 5], payload "x".
    let mut unknown = Raw::connect(broker.addr, "alias-unknown");
    unknown.send_bytes(&[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'x']);
    unknown.expect_disconnect(DisconnectReason::ProtocolError);

    // A well-behaved alias user on its own connection is unaffected.
    let mut good = Raw::connect(broker.addr, "alias-good");
    let mut publish = Publish::new(TopicName::try_from("alias/ok").expect("a topic"), "x");
    publish.delivery = Delivery::AtLeastOnce(id(1));
    publish.properties = PublishProperties {
        topic_alias: NonZeroU16::new(8),
        ..PublishProperties::default()
    }
    .into();
    good.send(&Packet::from(publish));
    match good.recv() {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, PubAckReason::NoMatchingSubscribers),
        other => panic!("expected a PUBACK, got {other:?}"),
    }
    good.disconnect();
    assert_up_then_stop(broker, "after-alias");
}

#[test]
fn filter_of_10000_levels_is_refused_and_65535_byte_topic_is_delivered() {
    let dir = temp_dir();
    let broker = start_with(
        dir.path(),
        "[broker]\nmax_packet_size = 262144\nmax_topic_filter_length = 65535\n",
    );
    let mut client = Raw::connect(broker.addr, "deep");
    // 10,000 levels, far above max_topic_levels (128): 0x8F Topic Filter invalid.
    let deep = vec!["d"; 10_000].join("/");
    assert_eq!(
        client.subscribe(1, &[deep]),
        [SubAckReason::TopicFilterInvalid]
    );
    client.ping();

    // The longest topic name MQTT allows, in two levels.
    let long = format!("t/{}", "x".repeat(65_535 - 2));
    assert_eq!(long.len(), 65_535);
    assert_eq!(
        client.subscribe(2, std::slice::from_ref(&long)),
        [SubAckReason::GrantedQoS1]
    );
    let mut publisher = Raw::connect(broker.addr, "long-topic");
    assert_eq!(
        publisher.publish_qos1(1, &long, b"long"),
        PubAckReason::Success
    );
    let got = client.expect_publish();
    assert_eq!(got.topic().len(), 65_535);
    assert!(got.topic() == long, "the topic arrives intact");
    assert_eq!(got.payload(), b"long");
    publisher.disconnect();
    client.disconnect();
    assert_up_then_stop(broker, "after-deep");
}

#[test]
fn subscription_flood_past_the_cap_gets_0x97_with_memory_bounded() {
    const PACKETS: u16 = 100;
    const PER_PACKET: usize = 1000;
    const CAP: usize = 1000;
    let dir = temp_dir();
    let broker = start_with(
        dir.path(),
        "[broker]\nmax_subscriptions_per_client = 1000\n",
    );
    let mut flooder = Raw::connect(broker.addr, "flooder");
    let before = rss_kib(&broker);
    let mut granted = 0;
    let mut refused = 0;
    for p in 0..PACKETS {
        let filters: Vec<String> = (0..PER_PACKET).map(|i| format!("flood/{p}/{i}")).collect();
        let reasons = flooder.subscribe(p + 1, &filters);
        assert_eq!(reasons.len(), PER_PACKET);
        for reason in reasons {
            if granted < CAP {
                assert_eq!(reason, SubAckReason::GrantedQoS1, "within the cap");
                granted += 1;
            } else {
                assert_eq!(reason, SubAckReason::QuotaExceeded, "past the cap");
                refused += 1;
            }
        }
    }
    assert_eq!((granted, refused), (CAP, 100_000 - CAP));
    // The flooder itself is still connected and served.
    flooder.ping();
    let after = rss_kib(&broker);
    assert_rss_bounded(before, after, "100,000 SUBSCRIBE filters");
    flooder.disconnect();
    assert_up_then_stop(broker, "after-flood");
}

#[test]
fn will_to_a_denied_topic_is_not_delivered() {
    let dir = temp_dir();
    let acl = dir.path().join("acl.txt");
    std::fs::write(&acl, "pattern readwrite open/#\npattern read #\n").expect("write the ACL");
    let config = format!(
        "[auth]\nacl_file = \"{}\"\n",
        acl.to_str().expect("a UTF-8 path")
    );
    let broker = start_with(dir.path(), &config);
    let addr = broker.addr;
    let mut watcher = Raw::connect(addr, "watcher");
    assert_eq!(
        watcher.subscribe(1, &["#".to_owned()]),
        [SubAckReason::GrantedQoS1]
    );

    // Each will client drops its connection without DISCONNECT; reconnecting with its client
    // identifier then makes sure its will has been dealt with (lost or taken over) before the
    // marker is published.
    for (n, (client_id, will_topic)) in [("will-denied", "secret/will"), ("will-open", "open/will")]
        .into_iter()
        .enumerate()
    {
        let will_client = Raw::connect_with(
            addr,
            Connect {
                will: Some(Will {
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: WillProperties::default(),
                    topic: TopicName::try_from(will_topic).expect("a topic"),
                    payload: Bytes::from_static(b"will"),
                }),
                ..connect_packet(client_id)
            },
        );
        will_client
            .stream
            .shutdown(Shutdown::Both)
            .expect("drop the connection");
        drop(will_client);
        let mut again = Raw::connect(addr, client_id);
        let marker = format!("open/marker/{n}");
        assert_eq!(again.publish_qos1(1, &marker, b"m"), PubAckReason::Success);
        again.disconnect();
    }
    let topics: Vec<String> = (0..3)
        .map(|_| watcher.expect_publish().topic().to_owned())
        .collect();
    assert_eq!(topics, ["open/marker/0", "open/will", "open/marker/1"]);
    watcher.disconnect();
    assert_up_then_stop(broker, "after-will");
}

#[test]
fn user_name_with_invalid_utf8_or_nul_is_closed_without_connack() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    for name in [[0xC3, 0x28], [b'a', 0x00]] {
        // CONNECT v5: Clean Start and User Name flags, keep-alive 60, no properties, client
        // id "u", the 2-byte user name.
        let mut connect = vec![0x10, 18, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x82];
        connect.extend_from_slice(&[0x00, 0x3C, 0x00, 0x00, 0x01, b'u', 0x00, 0x02]);
        connect.extend_from_slice(&name);
        assert_eq!(connect.len(), 20);
        let mut offender = Raw::open(broker.addr);
        offender.send_bytes(&connect);
        let sent = read_to_close(&mut offender.stream);
        assert!(
            sent.is_empty(),
            "user name {name:02x?}: expected a close and no CONNACK, got {sent:?}"
        );
    }
    assert_up_then_stop(broker, "after-bad-username");
}
