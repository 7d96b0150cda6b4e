//! Property tests over random interleavings of publishes, acknowledgements, disconnects and
//! reconnects of a persistent subscriber, and restarts of the broker from its store:
//! - every acknowledged QoS 1 message reaches the subscriber at least once (`[MQTT-4.3.2-?]`);
//! - every acknowledged QoS 2 message reaches its application exactly once (`[MQTT-4.3.3-?]`);
//! - per topic, first deliveries keep publish order (`[MQTT-4.6.0-5]`).

use std::collections::{HashMap, HashSet};

use mqtt5_broker::ConnId;
use mqtt5_codec::{Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, QoS};
use proptest::prelude::*;

use crate::harness::*;

#[derive(Debug, Clone)]
enum Op {
    /// Publish on topic `0..3` at QoS 1 or 2.
    Publish(u8, bool),
    /// The subscriber processes up to `n` packets from its inbox.
    Process(u8),
    /// The subscriber's connection drops.
    Lose,
    /// The subscriber reconnects (no-op when connected).
    Reconnect,
    /// The broker restarts from its store; every connection drops.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..3, any::<bool>()).prop_map(|(t, q2)| Op::Publish(t, q2)),
        4 => (1u8..6).prop_map(Op::Process),
        1 => Just(Op::Lose),
        1 => Just(Op::Reconnect),
        1 => Just(Op::Restart),
    ]
}

/// The subscriber's side: a QoS 2 receiver as the spec describes it (method B of §4.3.3).
#[derive(Default)]
struct Receiver {
    conn: Option<ConnId>,
    /// Packet ids of QoS 2 messages received and not yet released.
    qos2_pending: HashSet<u16>,
    /// What the application saw, in order: (topic, sequence number, qos).
    delivered: Vec<(String, u32, QoS)>,
}

impl Receiver {
    fn process(&mut self, sim: &mut Sim, budget: usize) {
        let Some(conn) = self.conn else { return };
        for _ in 0..budget {
            let Some(packet) = sim.recv(conn) else { return };
            match packet {
                Packet::Publish(p) => {
                    let seq = u32::from_be_bytes(p.payload().try_into().unwrap());
                    let id = p.delivery.packet_id().unwrap();
                    match p.qos() {
                        QoS::AtLeastOnce => {
                            self.delivered
                                .push((p.topic().to_owned(), seq, QoS::AtLeastOnce));
                            sim.send(conn, Packet::PubAck(PubAck::new(id)));
                        }
                        QoS::ExactlyOnce => {
                            if self.qos2_pending.insert(id.get()) {
                                self.delivered
                                    .push((p.topic().to_owned(), seq, QoS::ExactlyOnce));
                            }
                            sim.send(conn, Packet::PubRec(PubRec::new(id)));
                        }
                        QoS::AtMostOnce => panic!("QoS 0 on a QoS 1+ subscription"),
                    }
                }
                Packet::PubRel(r) => {
                    self.qos2_pending.remove(&r.packet_id.get());
                    sim.send(conn, Packet::PubComp(PubComp::new(r.packet_id)));
                }
                other => panic!("unexpected {other:?}"),
            }
            if sim.is_closed(conn) {
                return;
            }
        }
    }

    fn reconnect(&mut self, sim: &mut Sim) {
        if self.conn.is_some() {
            return;
        }
        let conn = sim.connect_with(persistent_connect("sub", false, u32::MAX));
        match sim.expect(conn) {
            Packet::ConnAck(a) => assert!(a.session_present),
            other => panic!("{other:?}"),
        }
        self.conn = Some(conn);
    }
}

fn run(ops: &[Op]) {
    let mut sim = Sim::new(quiet_config());
    let first = sim.connect_with(persistent_connect("sub", true, u32::MAX));
    sim.expect(first);
    sim.subscribe(first, "t/#", QoS::ExactlyOnce);
    let mut rx = Receiver {
        conn: Some(first),
        ..Receiver::default()
    };
    let mut publisher = sim.connect(ProtocolVersion::V5, "pub", true);
    let mut published: Vec<(String, u32, QoS)> = Vec::new();
    let mut next_id = 1u16;
    for op in ops {
        match *op {
            Op::Publish(t, q2) => {
                let topic = format!("t/{t}");
                let seq = published.len() as u32;
                let qos = if q2 {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                sim.publish(publisher, &topic, &seq.to_be_bytes(), qos, next_id);
                // The publisher completes its side of the flow.
                match sim.expect(publisher) {
                    Packet::PubAck(_) => {}
                    Packet::PubRec(r) => {
                        sim.send(
                            publisher,
                            Packet::PubRel(mqtt5_codec::PubRel::new(r.packet_id)),
                        );
                        assert!(matches!(sim.expect(publisher), Packet::PubComp(_)));
                    }
                    other => panic!("{other:?}"),
                }
                next_id = next_id % 60_000 + 1;
                published.push((topic, seq, qos));
            }
            Op::Process(n) => rx.process(&mut sim, usize::from(n)),
            Op::Lose => {
                if let Some(conn) = rx.conn.take() {
                    sim.lose(conn);
                }
            }
            Op::Reconnect => rx.reconnect(&mut sim),
            Op::Restart => {
                sim.restart();
                rx.conn = None;
                publisher = sim.connect(ProtocolVersion::V5, "pub", true);
            }
        }
    }
    // Settle: reconnect and process until nothing is left.
    rx.reconnect(&mut sim);
    for _ in 0..10_000 {
        let conn = rx.conn.unwrap();
        if sim.clients[&conn].inbox.is_empty() {
            break;
        }
        rx.process(&mut sim, 100);
    }
    let _ = PacketId::new(1);
    // At least once for QoS 1, exactly once for QoS 2.
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for (_, seq, _) in &rx.delivered {
        *counts.entry(*seq).or_default() += 1;
    }
    for (_, seq, qos) in &published {
        let n = counts.get(seq).copied().unwrap_or(0);
        match qos {
            QoS::AtLeastOnce => assert!(n >= 1, "QoS 1 message {seq} lost"),
            QoS::ExactlyOnce => assert_eq!(n, 1, "QoS 2 message {seq} delivered {n} times"),
            QoS::AtMostOnce => {}
        }
    }
    // Per-topic order of first deliveries.
    let mut seen = HashSet::new();
    let mut last: HashMap<&str, u32> = HashMap::new();
    for (topic, seq, _) in &rx.delivered {
        if !seen.insert(*seq) {
            continue;
        }
        if let Some(prev) = last.insert(topic, *seq) {
            assert!(prev < *seq, "order broken on {topic}: {prev} then {seq}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn qos1_at_least_once_qos2_exactly_once_and_topic_order_hold(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(&ops);
    }
}
