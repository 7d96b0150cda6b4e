//! The `broker` target: random sequences of client operations against the broker core, with
//! every packet going through the real codec, and the store ops applied to a `MemoryStore`.
//!
//! Invariants checked after every step:
//! - nothing panics;
//! - the core never sends on a connection after closing it, nor on one it never opened;
//! - every packet it sends encodes to exactly `encoded_len` bytes and decodes back in the
//!   connection's version;
//! - every `Persist` batch applies to the store (no op refers to a session or message the
//!   store does not hold);
//! - `poll_timeout` never lies in the past once `handle_timeout` has run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use mqtt5_broker::{
    Action, AllowAll, Broker, Config, ConnId, Passwords, PeerInfo, RandomSource, Services,
};
use mqtt5_codec::{
    Connect, Decoder, Delivery, Disconnect, DisconnectReason, MqttString, Packet, PacketId,
    PingReq, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, RetainHandling,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};
use mqtt5_store::{MemoryStore, Store};

/// One client operation. Small integers pick among a few clients, ids and topics, so that
/// sequences collide on sessions and subscriptions often.
#[derive(Debug, Arbitrary)]
#[allow(
    missing_docs,
    reason = "the fields are fuzzer-chosen selectors; each variant says what it does"
)]
pub enum Op {
    /// Opens connection `slot` and sends CONNECT.
    Connect {
        slot: u8,
        version: u8,
        id: u8,
        clean: bool,
        expiry: u8,
        keep_alive: u8,
        will: Option<(u8, u8, bool, u8)>,
        receive_maximum: u8,
        alias_max: u8,
    },
    /// SUBSCRIBE.
    Subscribe {
        slot: u8,
        filter: u8,
        qos: u8,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: u8,
        shared: bool,
        identifier: u8,
    },
    /// UNSUBSCRIBE.
    Unsubscribe { slot: u8, filter: u8 },
    /// PUBLISH.
    Publish {
        slot: u8,
        topic: u8,
        qos: u8,
        retain: bool,
        payload: u8,
        id: u16,
        alias: u8,
        expiry: u8,
    },
    /// Acknowledges everything the client has received, as a well-behaved client would.
    AckAll { slot: u8 },
    /// PUBREL for an id (possibly unknown).
    PubRel { slot: u8, id: u16 },
    /// PINGREQ.
    Ping { slot: u8 },
    /// DISCONNECT with a reason byte and an optional new session expiry.
    Disconnect {
        slot: u8,
        reason: u8,
        expiry: Option<u8>,
    },
    /// The network connection drops.
    Lose { slot: u8 },
    /// Raw bytes on a connection, through the server-side decoder.
    Raw { slot: u8, bytes: Vec<u8> },
    /// The clock moves on.
    Advance { millis: u16, hours: u8 },
    /// The broker restarts from its store: every connection drops, and `restore` rebuilds the
    /// core from `recover`.
    Restart,
    /// The driver's buffer towards a connection fills up or drains.
    Congestion { slot: u8, congested: bool },
    /// The store reports that it is full, or accepts writes again.
    StorageFull { full: bool },
}

const SLOTS: usize = 4;
const TOPICS: [&str; 6] = ["a", "a/b", "a/b/c", "$SYS/x", "b/", "/a"];
const FILTERS: [&str; 8] = ["a", "a/+", "a/#", "#", "+/b/+", "$SYS/#", "b/", "+"];

struct Counter(u64);

impl RandomSource for Counter {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            *b = (self.0 >> 56) as u8;
        }
    }
}

struct Conn {
    id: ConnId,
    version: ProtocolVersion,
    decoder: Decoder,
    closed: bool,
    inbox: Vec<Packet>,
}

struct World {
    broker: Broker,
    now: Instant,
    store: MemoryStore,
    slots: [Option<Conn>; SLOTS],
    known: HashMap<ConnId, bool>,
    next: u64,
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

fn qos(q: u8) -> QoS {
    match q % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl World {
    fn new(now: Instant) -> Self {
        Self {
            broker: Self::broker(now, 0),
            now,
            store: MemoryStore::new(),
            slots: [None, None, None, None],
            known: HashMap::new(),
            next: 1,
        }
    }

    fn broker(now: Instant, wall_ms: u64) -> Broker {
        let config = Config {
            max_queued_messages: 8,
            max_inflight: 4,
            receive_maximum: 4,
            topic_alias_maximum: 2,
            max_subscriptions_per_client: 5,
            // Rare enough that long clock jumps do not spend the run publishing statistics.
            sys_interval: Some(Duration::from_secs(1800)),
            ..Config::default()
        };
        let services = Services {
            passwords: Passwords::NoUsers,
            authorizer: Box::new(AllowAll),
            enhanced: Vec::new(),
            random: Box::new(Counter(1)),
        };
        Broker::new(config, services, now, wall_ms).expect("valid config")
    }

    fn restart(&mut self, start: Instant) {
        for c in self.slots.iter_mut().flatten() {
            c.closed = true;
        }
        for open in self.known.values_mut() {
            *open = false;
        }
        let wall = u64::try_from((self.now - start).as_millis()).unwrap_or(u64::MAX);
        self.broker = Self::broker(self.now, wall);
        let recovered = self.store.recover().expect("memory store recovers");
        self.broker
            .restore(self.now, recovered)
            .expect("a fresh broker restores");
        self.run();
    }

    fn run(&mut self) {
        while let Some(action) = self.broker.poll_action() {
            match action {
                Action::Send { conn, packet } => {
                    assert_eq!(
                        self.known.get(&conn),
                        Some(&true),
                        "send on a closed or unknown connection: {packet:?}"
                    );
                    let slot = self.slots.iter_mut().flatten().find(|c| c.id == conn);
                    let Some(c) = slot else { continue };
                    let mut wire = BytesMut::new();
                    packet.encode(c.version, &mut wire);
                    assert_eq!(wire.len(), packet.encoded_len(c.version));
                    let back = Decoder::new(c.version)
                        .decode(&mut wire)
                        .expect("the broker's packet decodes")
                        .expect("whole");
                    c.inbox.push(back);
                }
                Action::Persist(ops) => {
                    self.store.apply(&ops).expect("store ops are consistent");
                }
                Action::Close { conn } => {
                    self.known.insert(conn, false);
                    for c in self.slots.iter_mut().flatten() {
                        if c.id == conn {
                            c.closed = true;
                        }
                    }
                }
                Action::CheckPassword(check) => {
                    panic!("no password checks without users: {check:?}");
                }
                Action::Notice(_) => {}
                Action::Protocol { conn, version } => {
                    let slot = self.slots.iter_mut().flatten().find(|c| c.id == conn);
                    if let Some(c) = slot {
                        c.decoder.set_version(version);
                    }
                }
            }
        }
    }

    fn feed(&mut self, slot: usize, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        loop {
            let Some(c) = self.slots[slot].as_mut() else {
                return;
            };
            if c.closed {
                return;
            }
            let id = c.id;
            match c.decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    // What a driver asks while the store is behind: a query, whatever the
                    // packet and the connection's state.
                    let _ = self.broker.needs_store(id, &packet);
                    assert!(
                        self.broker.poll_action().is_none(),
                        "needs_store queued an action"
                    );
                    // The core says which version to decode in next (Action::Protocol).
                    self.broker.handle_packet(self.now, id, packet);
                    self.run();
                }
                Ok(None) => return,
                Err(e) => {
                    self.broker.handle_decode_error(self.now, id, &e);
                    self.run();
                    return;
                }
            }
        }
    }

    fn send(&mut self, slot: usize, packet: Packet) {
        let Some(c) = self.slots[slot].as_ref() else {
            return;
        };
        let mut wire = BytesMut::new();
        packet.encode(c.version, &mut wire);
        self.feed(slot, &wire);
    }

    fn open(&mut self, slot: usize, version: ProtocolVersion) {
        if let Some(old) = self.slots[slot].take()
            && !old.closed
        {
            self.broker.handle_connection_lost(self.now, old.id);
            self.run();
        }
        let id = ConnId(self.next);
        self.next += 1;
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        self.broker
            .handle_connection(self.now, id, PeerInfo::new(addr))
            .expect("fresh id");
        self.known.insert(id, true);
        self.slots[slot] = Some(Conn {
            id,
            version,
            decoder: Decoder::new(ProtocolVersion::V5),
            closed: false,
            inbox: Vec::new(),
        });
        self.run();
    }

    fn step(&mut self, op: Op, start: Instant) {
        match op {
            Op::Restart => self.restart(start),
            Op::Congestion { slot, congested } => {
                if let Some(c) = self.slots[usize::from(slot) % SLOTS].as_ref()
                    && !c.closed
                {
                    let id = c.id;
                    self.broker.handle_congestion(self.now, id, congested);
                    self.run();
                }
            }
            Op::StorageFull { full } => {
                self.broker.handle_storage_full(full);
            }
            Op::Connect {
                slot,
                version,
                id,
                clean,
                expiry,
                keep_alive,
                will,
                receive_maximum,
                alias_max,
            } => {
                let slot = usize::from(slot) % SLOTS;
                let version = pick(
                    &[
                        ProtocolVersion::V5,
                        ProtocolVersion::V3_1_1,
                        ProtocolVersion::V3_1,
                    ],
                    version,
                );
                self.open(slot, version);
                let mut c = Connect {
                    protocol: version,
                    clean_start: clean,
                    keep_alive: u16::from(keep_alive % 8),
                    client_id: MqttString::try_from(pick(&["c0", "c1", "c2", ""], id)).expect("id"),
                    ..Connect::default()
                };
                if version.is_v5() {
                    c.properties.session_expiry_interval =
                        Some(pick(&[0, 10, 3600, u32::MAX], expiry));
                    c.properties.receive_maximum =
                        core::num::NonZeroU16::new(u16::from(receive_maximum % 4));
                    c.properties.topic_alias_maximum = Some(u16::from(alias_max % 3));
                }
                if let Some((topic, q, retain, delay)) = will {
                    let mut w = Will {
                        qos: qos(q),
                        retain,
                        properties: Default::default(),
                        topic: TopicName::try_from(pick(&TOPICS, topic)).expect("topic"),
                        payload: bytes::Bytes::from_static(b"will"),
                    };
                    if version.is_v5() {
                        w.properties.will_delay_interval = Some(u32::from(delay % 20));
                    }
                    c.will = Some(w);
                }
                self.send(slot, Packet::Connect(Box::new(c)));
            }
            Op::Subscribe {
                slot,
                filter,
                qos: q,
                no_local,
                retain_as_published,
                retain_handling,
                shared,
                identifier,
            } => {
                let slot = usize::from(slot) % SLOTS;
                let base = pick(&FILTERS, filter);
                let text = if shared {
                    format!("$share/g/{base}")
                } else {
                    base.to_owned()
                };
                let Ok(filter) = TopicFilter::try_from(text.as_str()) else {
                    return;
                };
                let mut options = SubscriptionOptions::new(qos(q));
                options.no_local = no_local && !shared;
                options.retain_as_published = retain_as_published;
                options.retain_handling = pick(
                    &[
                        RetainHandling::SendOnSubscribe,
                        RetainHandling::SendIfNew,
                        RetainHandling::DoNotSend,
                    ],
                    retain_handling,
                );
                let mut sub = Subscribe {
                    packet_id: PacketId::new(1).expect("non-zero"),
                    properties: Default::default(),
                    subscriptions: vec![Subscription { filter, options }],
                };
                sub.properties.subscription_identifier =
                    core::num::NonZeroU32::new(u32::from(identifier % 4));
                self.send(slot, Packet::Subscribe(sub));
            }
            Op::Unsubscribe { slot, filter } => {
                let Ok(filter) = TopicFilter::try_from(pick(&FILTERS, filter)) else {
                    return;
                };
                self.send(
                    usize::from(slot) % SLOTS,
                    Packet::Unsubscribe(Unsubscribe {
                        packet_id: PacketId::new(2).expect("non-zero"),
                        properties: Default::default(),
                        filters: vec![filter],
                    }),
                );
            }
            Op::Publish {
                slot,
                topic,
                qos: q,
                retain,
                payload,
                id,
                alias,
                expiry,
            } => {
                let topic = TopicName::try_from(pick(&TOPICS, topic)).expect("topic");
                let mut p = Publish::new(topic, vec![payload; usize::from(payload % 4)]);
                p.retain = retain;
                if let Some(id) = PacketId::new(id % 8 + 1) {
                    p.delivery = Delivery::new(qos(q), id);
                }
                p.properties.topic_alias = core::num::NonZeroU16::new(u16::from(alias % 4));
                if expiry % 4 == 1 {
                    p.properties.message_expiry_interval = Some(u32::from(expiry));
                }
                self.send(usize::from(slot) % SLOTS, Packet::Publish(p));
            }
            Op::AckAll { slot } => {
                let slot = usize::from(slot) % SLOTS;
                let Some(c) = self.slots[slot].as_mut() else {
                    return;
                };
                let inbox = core::mem::take(&mut c.inbox);
                for packet in inbox {
                    let answer = match packet {
                        Packet::Publish(p) => match p.delivery {
                            Delivery::AtMostOnce => None,
                            Delivery::AtLeastOnce(id) => Some(Packet::PubAck(PubAck::new(id))),
                            Delivery::ExactlyOnce(id) => Some(Packet::PubRec(PubRec::new(id))),
                        },
                        Packet::PubRel(r) => Some(Packet::PubComp(PubComp::new(r.packet_id))),
                        Packet::PubRec(r) => Some(Packet::PubRel(PubRel::new(r.packet_id))),
                        _ => None,
                    };
                    if let Some(answer) = answer {
                        self.send(slot, answer);
                    }
                }
            }
            Op::PubRel { slot, id } => {
                if let Some(id) = PacketId::new(id % 8 + 1) {
                    self.send(usize::from(slot) % SLOTS, Packet::PubRel(PubRel::new(id)));
                }
            }
            Op::Ping { slot } => self.send(usize::from(slot) % SLOTS, Packet::PingReq(PingReq)),
            Op::Disconnect {
                slot,
                reason,
                expiry,
            } => {
                let reason = DisconnectReason::from_u8(reason)
                    .unwrap_or(DisconnectReason::NormalDisconnection);
                let mut d = Disconnect::new(reason);
                d.properties.session_expiry_interval = expiry.map(|e| u32::from(e % 3) * 10);
                self.send(usize::from(slot) % SLOTS, Packet::Disconnect(Box::new(d)));
            }
            Op::Lose { slot } => {
                let slot = usize::from(slot) % SLOTS;
                if let Some(c) = self.slots[slot].as_mut()
                    && !c.closed
                {
                    c.closed = true;
                    let id = c.id;
                    self.broker.handle_connection_lost(self.now, id);
                    self.known.insert(id, false);
                    self.run();
                }
            }
            Op::Raw { slot, bytes } => self.feed(usize::from(slot) % SLOTS, &bytes),
            Op::Advance { millis, hours } => {
                let end = self.now
                    + Duration::from_millis(u64::from(millis))
                    + Duration::from_secs(u64::from(hours % 4) * 3600);
                while let Some(at) = self.broker.poll_timeout() {
                    if at > end {
                        break;
                    }
                    self.now = self.now.max(at);
                    self.broker.handle_timeout(self.now);
                    self.run();
                    if let Some(next) = self.broker.poll_timeout() {
                        assert!(next > self.now, "a timer due now survived handle_timeout");
                    }
                }
                self.now = end;
            }
        }
    }
}

/// Runs one op sequence.
pub fn run(ops: Vec<Op>, now: Instant) {
    let mut world = World::new(now);
    for op in ops.into_iter().take(256) {
        world.step(op, now);
    }
}
