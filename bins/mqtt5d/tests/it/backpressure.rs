//! Backpressure end to end: a storm of durable fan-out makes the store fall behind, and the
//! broker stops reading the publishers that feed it while everyone else keeps going.
//!
//! ```text
//!  [storage] backlog_high_ops = 1: any uncommitted op means the store is behind
//!  SESSIONS offline persistent sessions ── SUBSCRIBE storm/# QoS 1
//!  PUBLISHERS ── QoS 1 storm/N, WINDOW in flight ──► paused while the store is behind
//!  QoS 0 pair on other/1, PINGREQ ──► answered all the same
//!  storm stops ── every message sent is acknowledged ── sessions drained: all of them there
//! ```
//!
//! The storm runs until the test has seen what it checks (bounded by [`MAX_PER_PUBLISHER`]
//! and the liveness bound), so it is still on while the pair exchanges its messages, whatever
//! the speed of the machine. No wait stands in for synchronisation: the test waits for
//! metrics values and packets.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt5_codec::{
    Decoder, Delivery, Packet, PacketId, ProtocolVersion, PubAck, PubAckReason, Publish, QoS,
    TopicName,
};

use crate::harness::*;
use crate::hostile::{Raw, connect_packet, start_with};

/// Offline persistent sessions subscribed to the storm's topics.
const SESSIONS: usize = 50;

/// Publishers of the storm.
const PUBLISHERS: usize = 4;

/// Messages a storm publisher keeps unacknowledged: the broker always has some of its packets
/// to read, so it is paused whenever the store is behind.
const WINDOW: u64 = 32;

/// The most messages one storm publisher sends: the sessions' queues (10,000 messages by
/// default) hold every one of them.
const MAX_PER_PUBLISHER: u64 = 2_000;

/// The QoS 0 messages of the unrelated pair.
const PAIR_MESSAGES: usize = 50;

/// The longest any one wait may take: a liveness bound, never a check of speed.
const LIVENESS: Duration = Duration::from_secs(120);

/// The value of `name` in a Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until metric `name` is at least `at_least`; returns its value.
fn wait_for_at_least(addr: SocketAddr, name: &str, at_least: u64) -> u64 {
    let end = Instant::now() + LIVENESS;
    loop {
        let text = metrics_text(addr).expect("a scrape");
        if let Some(value) = metric(&text, name).filter(|v| *v >= at_least) {
            return value;
        }
        assert!(
            Instant::now() < end,
            "{name} never reached {at_least}:\n{text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// One storm publisher: QoS 1 to `storm/{index}`, [`WINDOW`] in flight, until `stop` (or
/// [`MAX_PER_PUBLISHER`]); then it reads the acknowledgements of everything it sent. Returns
/// the payloads it sent, each of which was acknowledged with Success.
fn storm_publisher(
    addr: SocketAddr,
    index: usize,
    stop: &AtomicBool,
    acked: &AtomicU64,
) -> Vec<String> {
    let mut stream = Raw::connect(addr, &format!("storm-pub-{index}")).stream;
    stream
        .set_read_timeout(Some(LIVENESS))
        .expect("read timeout");
    let topic = TopicName::try_from(format!("storm/{index}").as_str()).expect("a topic");
    let decoder = Decoder::new(ProtocolVersion::V5);
    let mut buf = BytesMut::new();
    let mut sent: Vec<String> = Vec::new();
    let mut unacked: BTreeSet<u16> = BTreeSet::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let stopping = stop.load(Ordering::Relaxed) || sent.len() as u64 >= MAX_PER_PUBLISHER;
        if stopping && unacked.is_empty() {
            return sent;
        }
        // Fill the window.
        let mut out = BytesMut::new();
        while !stopping
            && (unacked.len() as u64) < WINDOW
            && (sent.len() as u64) < MAX_PER_PUBLISHER
        {
            let n = sent.len();
            // Packet identifiers 1..=WINDOW*2 in turn: never one still in flight.
            let id = u16::try_from(n as u64 % (WINDOW * 2) + 1).expect("small");
            assert!(
                unacked.insert(id),
                "packet identifier {id} reused in flight"
            );
            let payload = format!("{index}:{n}");
            let mut p = Publish::new(topic.clone(), payload.clone().into_bytes());
            p.delivery = Delivery::AtLeastOnce(PacketId::new(id).expect("non-zero"));
            Packet::from(p).encode(ProtocolVersion::V5, &mut out);
            sent.push(payload);
        }
        if !out.is_empty() {
            stream.write_all(&out).expect("write");
        }
        // Read at least one acknowledgement.
        loop {
            match decoder.decode(&mut buf).expect("well-formed packets") {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!(ack.reason, PubAckReason::Success, "{ack:?}");
                    assert!(unacked.remove(&ack.packet_id.get()), "{ack:?}");
                    acked.fetch_add(1, Ordering::Relaxed);
                    if buf.is_empty() {
                        break;
                    }
                }
                Some(other) => panic!("storm publisher {index} got {other:?}"),
                None => match stream.read(&mut chunk) {
                    Ok(0) => panic!("storm publisher {index}: the broker closed"),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
                    {
                        panic!("storm publisher {index}: no PUBACK within {LIVENESS:?}")
                    }
                    Err(e) => panic!("storm publisher {index}: {e}"),
                },
            }
        }
    }
}

/// Reconnects persistent session `client_id` and takes every message queued for it,
/// acknowledging each; returns the payloads.
fn drain(addr: SocketAddr, client_id: &str, expected: usize) -> BTreeSet<String> {
    let mut connect = connect_packet(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let mut session = Raw::open(addr);
    session
        .stream
        .set_read_timeout(Some(LIVENESS))
        .expect("read timeout");
    session.send(&Packet::from(connect));
    match session.recv() {
        Some(Packet::ConnAck(ack)) => assert!(ack.session_present, "{ack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let mut got = BTreeSet::new();
    while got.len() < expected {
        let p = session.expect_publish();
        if let Some(id) = p.delivery.packet_id() {
            session.send(&Packet::PubAck(PubAck::new(id)));
        }
        got.insert(String::from_utf8(p.payload().to_vec()).expect("UTF-8"));
    }
    session.disconnect();
    got
}

#[test]
fn durable_storm_pauses_its_publishers_while_qos0_and_pings_flow_and_nothing_is_lost() {
    let dir = temp_dir();
    let config = "[storage]\nbacklog_high_ops = 1\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let mut broker = start_with(dir.path(), config);
    let addr = broker.addr;
    let metrics = broker.metrics_addr().expect("metrics");
    for i in 0..SESSIONS {
        let mut connect = connect_packet(&format!("offline-{i}"));
        connect.properties.session_expiry_interval = Some(3600);
        let mut s = Raw::connect_with(addr, connect);
        s.subscribe(1, &["storm/#".to_owned()]);
        s.disconnect();
    }
    let mut pair_sub = Raw::connect(addr, "pair-sub");
    pair_sub.subscribe(1, &["other/#".to_owned()]);
    let mut pair_pub = Raw::connect(addr, "pair-pub");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let publishers: Vec<JoinHandle<Vec<String>>> = (0..PUBLISHERS)
        .map(|i| {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            thread::spawn(move || storm_publisher(addr, i, &stop, &acked))
        })
        .collect();

    // The store is behind and the storm's publishers are not read.
    wait_for_at_least(metrics, "mqtt5_paused_connections", 1);
    wait_for_at_least(metrics, "mqtt5_store_behind", 1);
    // Meanwhile the unrelated pair and PINGREQ are served.
    for n in 0..PAIR_MESSAGES {
        let payload = format!("pair {n}");
        let p = Publish::new(
            TopicName::try_from("other/1").expect("a topic"),
            payload.clone().into_bytes(),
        );
        pair_pub.send(&Packet::from(p));
        let got = pair_sub.expect_publish();
        assert_eq!(got.payload(), payload.as_bytes());
        assert_eq!(got.qos(), QoS::AtMostOnce);
    }
    pair_pub.ping();
    pair_sub.ping();
    // The storm was still on: none of its publishers had sent all it may.
    let so_far = acked.load(Ordering::Relaxed);
    assert!(
        so_far < (PUBLISHERS as u64) * MAX_PER_PUBLISHER,
        "the storm ended before the pair was served ({so_far} acknowledged)"
    );
    stop.store(true, Ordering::Relaxed);
    let mut sent = BTreeSet::new();
    for p in publishers {
        sent.extend(p.join().expect("a storm publisher failed"));
    }
    assert_eq!(acked.load(Ordering::Relaxed), sent.len() as u64);
    assert!(
        wait_for_at_least(metrics, "mqtt5_connection_pauses_total", 1) >= 1,
        "the publishers were paused"
    );
    // Every acknowledged message is in the offline sessions.
    for client_id in ["offline-0", &format!("offline-{}", SESSIONS - 1)] {
        let got = drain(addr, client_id, sent.len());
        assert_eq!(got, sent, "{client_id}");
    }
    pair_pub.disconnect();
    pair_sub.disconnect();
    assert!(broker.stop().success());
}
