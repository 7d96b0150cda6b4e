//! `netfuzz`: mutated valid sessions sent to a live broker over loopback, for a bounded time.
//!
//! ```text
//!  seed ─► batch seed ─► session seed ─► valid session (mqtt5-codec) ─► encoded packets
//!                                                         │ mutate bytes
//!                                                         ▼
//!          N connections at once ◄── split points, pauses ── byte stream
//!                     │ after each batch
//!                     ▼
//!          broker alive? CONNECT → CONNACK 0x00, PUBLISH QoS 1 → PUBACK within 5 s? RSS?
//! ```
//!
//! Everything random comes from one seeded xorshift generator: the seed is printed at the
//! start, and `--seed` generates the same sessions again (the interleaving of connections is
//! the scheduler's). When the broker dies or stops answering, the last batch's byte streams
//! and seeds are saved to a directory, and `--replay DIR` sends them again.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::num::{NonZeroU16, NonZeroU32};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::{AckProperties, PublishProperties};
use mqtt5_codec::{
    Auth, AuthReason, Connect, Delivery, Disconnect, DisconnectReason, MqttString, Packet,
    PacketId, PayloadFormat, PingReq, ProtocolVersion, PubAck, PubAckReason, PubComp,
    PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason, Publish, QoS, RetainHandling,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
    UserProperty, Will,
};
use rustix::process::{Pid, Signal, kill_process};

use crate::client::{Client, ConnectOptions};

/// How long the broker may take to answer the health probe's CONNECT and PINGREQ. The probe
/// is a clean session sending QoS 0 control packets, which the broker serves even while its
/// store is behind and the fuzz sessions that feed the store wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the probe's QoS 1 PUBLISH may take to be acknowledged. In `sync` durability the
/// PUBACK follows the commit of the message and of its delivery to every matching offline
/// persistent session, and the fuzz sessions leave thousands of those behind, subscribed to
/// `#` with a Session Expiry that never ends. A PUBACK later than this is a stall.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the broker may take to come up, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one fuzz connection lives.
const SESSION_DEADLINE: Duration = Duration::from_secs(2);

/// What `netfuzz` is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The mqtt5d executable to start (unless `target`).
    pub(crate) mqtt5d: PathBuf,
    /// A broker already listening: neither started nor stopped.
    pub(crate) target: Option<SocketAddr>,
    /// How long to run.
    pub(crate) duration: Duration,
    /// The seed; a fresh one when `None`.
    pub(crate) seed: Option<u64>,
    /// Connections at once.
    pub(crate) connections: usize,
    /// Sessions between two health checks.
    pub(crate) batch: usize,
    /// Where a failing batch is saved.
    pub(crate) out: PathBuf,
    /// Replay the `*.bin` streams of this directory instead of generating sessions.
    pub(crate) replay: Option<PathBuf>,
    /// The broker's log level.
    pub(crate) log_level: String,
}

// ---------------------------------------------------------------------------------------------
// The generator.

/// xorshift64* with a splitmix64-scrambled seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(z | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }

    /// True with probability `1 / n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    fn u8(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.u8()).collect()
    }
}

/// The seed of session `index` of the batch seeded with `batch_seed`.
fn session_seed(batch_seed: u64, index: usize) -> u64 {
    Rng::new(batch_seed ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
}

const LEVELS: &[&str] = &[
    "a", "b", "c", "netfuzz", "sensors", "t1", "x", "é", "$SYS", "",
];

fn topic_string(rng: &mut Rng, wildcards: bool) -> String {
    let n = 1 + rng.below(4);
    let mut levels = Vec::with_capacity(n);
    for i in 0..n {
        let level = if wildcards && rng.one_in(4) {
            if i + 1 == n && rng.bool() { "#" } else { "+" }
        } else {
            rng.pick(LEVELS)
        };
        levels.push(level);
    }
    let mut s = levels.join("/");
    if wildcards && rng.one_in(8) {
        s = format!("$share/g{}/{s}", rng.below(3));
    }
    s
}

fn topic_name(rng: &mut Rng) -> TopicName {
    TopicName::try_from(topic_string(rng, false).as_str())
        .or_else(|_| TopicName::try_from("netfuzz/t"))
        .unwrap_or_else(|_| TopicName::empty())
}

fn topic_filter(rng: &mut Rng) -> TopicFilter {
    TopicFilter::try_from(topic_string(rng, true).as_str())
        .or_else(|_| TopicFilter::try_from("netfuzz/#"))
        .unwrap_or_else(|_| TopicFilter::try_from("#").unwrap_or_else(|_| unreachable_filter()))
}

/// A filter the codec always accepts; only reached if "#" were refused.
fn unreachable_filter() -> TopicFilter {
    TopicFilter::try_from("a").unwrap_or_else(|e| panic!("the codec refuses the filter a: {e}"))
}

fn string(rng: &mut Rng) -> MqttString {
    let s = match rng.below(4) {
        0 => String::new(),
        1 => format!("v{}", rng.below(100)),
        2 => "text/plain; ünïcode ✓".to_owned(),
        _ => "x".repeat(rng.below(300)),
    };
    MqttString::try_from(s).unwrap_or_else(|_| MqttString::empty())
}

fn user_properties(rng: &mut Rng, v5: bool) -> Vec<UserProperty> {
    if !v5 || !rng.one_in(3) {
        return Vec::new();
    }
    (0..1 + rng.below(3))
        .filter_map(|i| UserProperty::new(&format!("k{i}"), &format!("v{}", rng.below(50))).ok())
        .collect()
}

/// A reason from `from_u8` for a random byte, or `fallback` when 24 draws give none.
fn reason<T>(rng: &mut Rng, from_u8: fn(u8) -> Option<T>, fallback: T) -> T {
    if rng.bool() {
        return fallback;
    }
    (0..24).find_map(|_| from_u8(rng.u8())).unwrap_or(fallback)
}

fn qos(rng: &mut Rng) -> QoS {
    rng.pick(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id(rng: &mut Rng) -> PacketId {
    let id = if rng.one_in(8) {
        u16::MAX
    } else {
        1 + u16::try_from(rng.below(10)).unwrap_or(0)
    };
    PacketId::from(NonZeroU16::new(id).unwrap_or(NonZeroU16::MIN))
}

fn payload(rng: &mut Rng) -> Bytes {
    let len = match rng.below(10) {
        0 => 0,
        1 => rng.below(5000),
        _ => rng.below(64),
    };
    Bytes::from(rng.bytes(len))
}

fn ack_properties(rng: &mut Rng, v5: bool) -> AckProperties {
    let mut props = AckProperties::default();
    if v5 && rng.one_in(4) {
        props.reason_string = Some(string(rng));
    }
    props.user_properties = user_properties(rng, v5);
    props
}

fn nonzero_u32(rng: &mut Rng, choices: &[u32]) -> NonZeroU32 {
    NonZeroU32::new(rng.pick(choices)).unwrap_or(NonZeroU32::MIN)
}

fn connect(rng: &mut Rng) -> Connect {
    let protocol = rng.pick(&[
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ]);
    let v5 = protocol.is_v5();
    let clean_start = rng.bool();
    let client_id = match rng.below(6) {
        0 if clean_start && protocol != ProtocolVersion::V3_1 => MqttString::empty(),
        1 => MqttString::try_from(format!("nf-long-{}", "z".repeat(rng.below(80))))
            .unwrap_or_else(|_| MqttString::empty()),
        _ => MqttString::try_from(format!("nf-{}", rng.below(64)))
            .unwrap_or_else(|_| MqttString::empty()),
    };
    let mut c = Connect {
        protocol,
        clean_start,
        keep_alive: rng.pick(&[0, 1, 5, 60, u16::MAX]),
        client_id,
        ..Connect::default()
    };
    if v5 {
        let p = &mut c.properties;
        if rng.bool() {
            p.session_expiry_interval = Some(rng.pick(&[0, 1, 10, 300, u32::MAX]));
        }
        if rng.one_in(3) {
            p.receive_maximum = NonZeroU16::new(rng.pick(&[1, 2, 10, u16::MAX]));
        }
        if rng.one_in(3) {
            p.maximum_packet_size = Some(nonzero_u32(rng, &[20, 128, 1024, 1 << 20]));
        }
        if rng.one_in(3) {
            p.topic_alias_maximum = Some(rng.pick(&[0, 1, 10, u16::MAX]));
        }
        if rng.one_in(4) {
            p.request_response_information = Some(rng.bool());
        }
        if rng.one_in(4) {
            p.request_problem_information = Some(rng.bool());
        }
        if rng.one_in(12) {
            p.authentication_method = Some(string(rng));
            if rng.bool() {
                p.authentication_data = Some(payload(rng));
            }
        }
        p.user_properties = user_properties(rng, v5);
    }
    if rng.one_in(3) {
        let mut will = Will {
            qos: qos(rng),
            retain: rng.bool(),
            properties: mqtt5_codec::WillProperties::default(),
            topic: topic_name(rng),
            payload: payload(rng),
        };
        if v5 {
            let p = &mut will.properties;
            if rng.bool() {
                p.will_delay_interval = Some(rng.pick(&[0, 1, 3, u32::MAX]));
            }
            if rng.one_in(3) {
                p.payload_format_indicator =
                    Some(rng.pick(&[PayloadFormat::Unspecified, PayloadFormat::Utf8]));
            }
            if rng.one_in(3) {
                p.message_expiry_interval = Some(rng.pick(&[0, 1, 60]));
            }
            if rng.one_in(4) {
                p.content_type = Some(string(rng));
            }
            if rng.one_in(4) {
                p.response_topic = Some(topic_name(rng));
            }
            if rng.one_in(4) {
                p.correlation_data = Some(payload(rng));
            }
            p.user_properties = user_properties(rng, v5);
        }
        c.will = Some(will);
    }
    if rng.one_in(3) {
        c.username = Some(string(rng));
        if rng.bool() {
            c.password = Some(payload(rng));
        }
    } else if v5 && rng.one_in(8) {
        c.password = Some(payload(rng));
    }
    c
}

fn publish(rng: &mut Rng, v5: bool) -> Publish {
    let mut p = Publish::new(topic_name(rng), payload(rng));
    p.delivery = Delivery::new(qos(rng), packet_id(rng));
    p.retain = rng.one_in(4);
    p.dup = p.delivery.qos() != QoS::AtMostOnce && rng.one_in(4);
    if v5 && rng.bool() {
        let mut props = PublishProperties::default();
        if rng.one_in(3) {
            props.payload_format_indicator = Some(PayloadFormat::Unspecified);
        }
        if rng.one_in(3) {
            props.message_expiry_interval = Some(rng.pick(&[0, 1, 60, u32::MAX]));
        }
        if rng.one_in(4) {
            props.topic_alias = NonZeroU16::new(rng.pick(&[1, 2, 10, u16::MAX]));
        }
        if rng.one_in(4) {
            props.response_topic = Some(topic_name(rng));
        }
        if rng.one_in(4) {
            props.correlation_data = Some(payload(rng));
        }
        if rng.one_in(4) {
            props.content_type = Some(string(rng));
        }
        if rng.one_in(16) {
            props.subscription_identifiers = vec![nonzero_u32(rng, &[1, 7, 268_435_455])];
        }
        props.user_properties = user_properties(rng, v5);
        p.properties = props.into();
    }
    p
}

fn subscribe(rng: &mut Rng, v5: bool) -> Subscribe {
    let subscriptions = (0..1 + rng.below(3))
        .map(|_| {
            let filter = topic_filter(rng);
            let mut options = SubscriptionOptions::new(qos(rng));
            if v5 {
                // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
                options.no_local = !filter.is_shared() && rng.one_in(4);
                options.retain_as_published = rng.one_in(4);
                options.retain_handling = rng.pick(&[
                    RetainHandling::SendOnSubscribe,
                    RetainHandling::SendIfNew,
                    RetainHandling::DoNotSend,
                ]);
            }
            Subscription { filter, options }
        })
        .collect();
    let mut s = Subscribe {
        packet_id: packet_id(rng),
        properties: mqtt5_codec::SubscribeProperties::default(),
        subscriptions,
    };
    if v5 && rng.one_in(3) {
        s.properties.subscription_identifier = Some(nonzero_u32(rng, &[1, 2, 268_435_455]));
    }
    s.properties.user_properties = user_properties(rng, v5);
    s
}

/// One valid session: CONNECT, then up to 24 other packets, each encoded for the session's
/// protocol version.
fn session(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = connect(rng);
    let version = c.protocol;
    let v5 = version.is_v5();
    let mut packets = vec![Packet::from(c)];
    for _ in 0..rng.below(25) {
        let packet = match rng.below(13) {
            0 | 1 => Packet::from(subscribe(rng, v5)),
            2 => {
                let mut u = Unsubscribe {
                    packet_id: packet_id(rng),
                    properties: mqtt5_codec::UnsubscribeProperties::default(),
                    filters: (0..1 + rng.below(3)).map(|_| topic_filter(rng)).collect(),
                };
                u.properties.user_properties = user_properties(rng, v5);
                Packet::from(u)
            }
            3..=6 => Packet::from(publish(rng, v5)),
            7 => Packet::from(PubAck {
                packet_id: packet_id(rng),
                reason: reason(rng, PubAckReason::from_u8, PubAckReason::Success),
                properties: ack_properties(rng, v5),
            }),
            8 => Packet::from(PubRec {
                packet_id: packet_id(rng),
                reason: reason(rng, PubRecReason::from_u8, PubRecReason::Success),
                properties: ack_properties(rng, v5),
            }),
            9 => Packet::from(PubRel {
                packet_id: packet_id(rng),
                reason: reason(rng, PubRelReason::from_u8, PubRelReason::Success),
                properties: ack_properties(rng, v5),
            }),
            10 => Packet::from(PubComp {
                packet_id: packet_id(rng),
                reason: reason(rng, PubCompReason::from_u8, PubCompReason::Success),
                properties: ack_properties(rng, v5),
            }),
            11 if v5 && rng.one_in(3) => {
                let mut a = Auth {
                    reason: reason(rng, AuthReason::from_u8, AuthReason::ContinueAuthentication),
                    properties: mqtt5_codec::AuthProperties::default(),
                };
                a.properties.authentication_method = Some(string(rng));
                if rng.bool() {
                    a.properties.authentication_data = Some(payload(rng));
                }
                Packet::from(a)
            }
            _ => Packet::from(PingReq),
        };
        packets.push(packet);
    }
    if rng.below(10) < 6 {
        let mut d = Disconnect::new(reason(
            rng,
            DisconnectReason::from_u8,
            DisconnectReason::NormalDisconnection,
        ));
        if v5 && rng.one_in(4) {
            d.properties.session_expiry_interval = Some(rng.pick(&[0, 10]));
        }
        if v5 && rng.one_in(4) {
            d.properties.reason_string = Some(string(rng));
        }
        packets.push(Packet::from(d));
    }
    packets
        .iter()
        .map(|p| {
            let mut buf = BytesMut::with_capacity(p.encoded_len(version));
            p.encode(version, &mut buf);
            buf.to_vec()
        })
        .collect()
}

/// Mutates a session, packet by packet and then as one byte stream; `other` is a second
/// session to splice from.
fn mutate(rng: &mut Rng, mut packets: Vec<Vec<u8>>, other: &[Vec<u8>]) -> Vec<u8> {
    // One session in eight goes out intact: the broker's protocol paths get exercised too.
    let rounds = if rng.one_in(8) { 0 } else { 1 + rng.below(4) };
    for _ in 0..rounds {
        let n = packets.len();
        let i = rng.below(n);
        match rng.below(6) {
            // Repeat a packet.
            0 => {
                if let Some(p) = packets.get(i).cloned() {
                    let most = if rng.one_in(8) { 200 } else { 3 };
                    for _ in 0..1 + rng.below(most) {
                        packets.insert(i, p.clone());
                    }
                }
            }
            // Drop or swap packets.
            1 => {
                let j = rng.below(n);
                if rng.bool() && n > 1 {
                    packets.remove(i);
                } else {
                    packets.swap(i, j);
                }
            }
            // Corrupt the Remaining Length.
            2 => {
                if let Some(p) = packets.get_mut(i)
                    && p.len() > 1
                {
                    match rng.below(4) {
                        0 => p[1] = rng.u8(),
                        1 => p[1] = p[1].wrapping_add(1),
                        2 => p[1] = p[1].wrapping_sub(1),
                        _ => {
                            p.splice(1..2, [0xFF, 0xFF, 0xFF, rng.pick(&[0x7F, 0xFF, 0x01])]);
                        }
                    }
                }
            }
            // Change the first byte: type and flags.
            3 => {
                if let Some(p) = packets.get_mut(i)
                    && let Some(b) = p.first_mut()
                {
                    *b = if rng.bool() {
                        rng.u8()
                    } else {
                        *b ^ (1 << rng.below(4))
                    };
                }
            }
            // Splice in packets of another session.
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let take = 1 + rng.below(other.len() - from);
                let at = rng.below(n + 1);
                for (k, p) in other.iter().skip(from).take(take).enumerate() {
                    packets.insert(at + k, p.clone());
                }
            }
            _ => {}
        }
    }
    let mut stream: Vec<u8> = packets.concat();
    let byte_rounds = if rounds == 0 { 0 } else { rng.below(5) };
    for _ in 0..byte_rounds {
        let len = stream.len();
        if len == 0 {
            break;
        }
        let at = rng.below(len);
        match rng.below(6) {
            0 => stream[at] ^= 1 << rng.below(8),
            1 => {
                let len = 1 + rng.below(8);
                let insert = rng.bytes(len);
                stream.splice(at..at, insert);
            }
            2 => {
                let end = (at + 1 + rng.below(8)).min(len);
                stream.drain(at..end);
            }
            3 => stream.truncate(at),
            4 => stream[at] = rng.pick(&[0x00, 0x7F, 0x80, 0xFF]),
            // Splice the tail of another session's bytes.
            _ => {
                let tail: Vec<u8> = other.concat();
                let from = rng.below(tail.len());
                stream.truncate(at);
                stream.extend_from_slice(tail.get(from..).unwrap_or_default());
            }
        }
    }
    stream
}

/// One fuzz input: its seed and its bytes.
#[derive(Debug, Clone)]
struct Input {
    seed: u64,
    bytes: Vec<u8>,
}

fn generate(seed: u64) -> Input {
    let mut rng = Rng::new(seed);
    let a = session(&mut rng);
    let b = if rng.one_in(3) {
        session(&mut rng)
    } else {
        Vec::new()
    };
    let bytes = mutate(&mut rng, a, &b);
    Input { seed, bytes }
}

// ---------------------------------------------------------------------------------------------
// Sending.

#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicUsize,
    connect_failures: AtomicUsize,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// Sends one input on a fresh connection, in random pieces with random pauses, reading what
/// comes back, then closes (sometimes with a reset).
fn send_one(addr: SocketAddr, input: &Input, counters: &Counters) {
    let mut rng = Rng::new(input.seed ^ 0x5EED);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        counters.connect_failures.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(10));
        return;
    };
    let _ = stream.set_nodelay(true);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let deadline = Instant::now() + SESSION_DEADLINE;
    let mut scratch = [0u8; 16 * 1024];
    let mut closed = false;
    let mut drain = |stream: &mut TcpStream, closed: &mut bool| {
        loop {
            match stream.read(&mut scratch) {
                Ok(0) => {
                    *closed = true;
                    return;
                }
                Ok(n) => {
                    counters
                        .bytes_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    *closed = true;
                    return;
                }
            }
        }
    };
    // Split points.
    let mut cuts: Vec<usize> = (0..rng.below(8))
        .map(|_| rng.below(input.bytes.len() + 1))
        .collect();
    cuts.push(input.bytes.len());
    cuts.sort_unstable();
    let mut at = 0;
    'chunks: for cut in cuts {
        let mut chunk = input.bytes.get(at..cut).unwrap_or_default();
        at = cut;
        while !chunk.is_empty() {
            match stream.write(chunk) {
                Ok(n) => {
                    counters.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                    chunk = chunk.get(n..).unwrap_or_default();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    drain(&mut stream, &mut closed);
                    if closed || Instant::now() > deadline {
                        break 'chunks;
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => break 'chunks,
            }
        }
        drain(&mut stream, &mut closed);
        if closed {
            break;
        }
        match rng.below(20) {
            0..=13 => {}
            14..=18 => thread::sleep(Duration::from_micros(rng.below(2000) as u64)),
            _ => thread::sleep(Duration::from_millis(5 + rng.below(45) as u64)),
        }
    }
    // Read what the broker answers for a short while, or until it closes.
    let wait = Instant::now() + Duration::from_millis(rng.pick(&[0, 5, 20, 100]));
    while !closed && Instant::now() < wait.min(deadline) {
        drain(&mut stream, &mut closed);
        thread::sleep(Duration::from_millis(1));
    }
    if rng.one_in(4) {
        // An abortive close: RST instead of FIN.
        let _ = rustix::net::sockopt::set_socket_linger(stream.as_fd(), Some(Duration::ZERO));
    } else if rng.bool() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    drop(stream);
    counters.sessions.fetch_add(1, Ordering::Relaxed);
}

/// Sends every input, `connections` at a time.
fn send_batch(addr: SocketAddr, inputs: &[Input], connections: usize, counters: &Counters) {
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..connections.clamp(1, inputs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = inputs.get(i) else {
                        return;
                    };
                    send_one(addr, input, counters);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The broker.

/// The broker under test.
struct Broker {
    addr: SocketAddr,
    child: Option<Child>,
    log: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    fn start(options: &Options) -> Result<Self, String> {
        if let Some(addr) = options.target {
            return Ok(Self {
                addr,
                child: None,
                log: None,
                _dir: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("mqtt5-netfuzz-")
            .tempdir()
            .map_err(|e| format!("creating a data directory: {e}"))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let log = dir.path().join("mqtt5d.log");
        let stderr =
            fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new(&options.mqtt5d)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--log-level")
            .arg(&options.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", options.mqtt5d.display()))?;
        let mut broker = Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            child: Some(child),
            log: Some(log),
            _dir: Some(dir),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = broker.exited() {
                return Err(format!(
                    "mqtt5d exited at start-up ({status}); {}",
                    broker.log_tail()
                ));
            }
            match probe(broker.addr) {
                Ok(_) => return Ok(broker),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("mqtt5d not ready after {START_TIMEOUT:?}: {e}"));
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status, when the broker has exited.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown: {e}")),
        }
    }

    /// VmRSS from `/proc/PID/status`, in KiB.
    fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(8)..)
            .unwrap_or_default();
        if tail.is_empty() {
            "its log is empty".into()
        } else {
            format!("its log ends with:\n  {}", tail.join("\n  "))
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; only the process this tool started.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill_process(Pid::from_child(&child), Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("mqtt5d did not exit within {STOP_TIMEOUT:?} of SIGTERM: killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A clean client: CONNECT → CONNACK 0x00 and PINGREQ → PINGRESP within [`PROBE_TIMEOUT`]
/// (the loop is responsive), then PUBLISH QoS 1 → PUBACK within [`PROGRESS_TIMEOUT`] (the
/// broker makes progress), DISCONNECT; the time the PUBACK took.
fn probe(addr: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let options = ConnectOptions {
        client_id: "netfuzz-probe".into(),
        clean_start: true,
        session_expiry: 0,
    };
    let (mut client, _) = Client::connect(addr, &options).map_err(|e| e.to_string())?;
    client
        .send(&Packet::PingReq(PingReq))
        .map_err(|e| e.to_string())?;
    wait_for(&mut client, start, PROBE_TIMEOUT, "PINGRESP", |p| {
        matches!(p, Packet::PingResp(_))
    })?;
    let mut publish = Publish::new(
        TopicName::try_from("netfuzz/probe").map_err(|e| e.to_string())?,
        "probe",
    );
    let id = PacketId::from(NonZeroU16::MIN);
    publish.delivery = Delivery::AtLeastOnce(id);
    let published = Instant::now();
    client
        .send(&Packet::from(publish))
        .map_err(|e| e.to_string())?;
    wait_for(
        &mut client,
        published,
        PROGRESS_TIMEOUT,
        "PUBACK",
        |p| matches!(p, Packet::PubAck(ack) if ack.packet_id == id),
    )?;
    let took = published.elapsed();
    client
        .disconnect(PROBE_TIMEOUT)
        .map_err(|e| e.to_string())?;
    Ok(took)
}

/// Reads packets until one passes `wanted`, at most `limit` after `since`.
fn wait_for(
    client: &mut Client,
    since: Instant,
    limit: Duration,
    what: &str,
    wanted: impl Fn(&Packet) -> bool,
) -> Result<(), String> {
    loop {
        let left = limit.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Err(format!("no {what} within {limit:?}"));
        }
        match client.recv(left).map_err(|e| e.to_string())? {
            Some(p) if wanted(&p) => return Ok(()),
            Some(_) => {}
            None => return Err(format!("no {what} within {limit:?}")),
        }
    }
}

/// Checks the broker: `Ok` with the time the probe's PUBACK took, or why it failed.
fn check(broker: &mut Broker) -> Result<Duration, String> {
    if let Some(status) = broker.exited() {
        return Err(format!("mqtt5d exited ({status})"));
    }
    probe(broker.addr).map_err(|e| match broker.exited() {
        Some(status) => format!("mqtt5d exited ({status})"),
        None => format!("mqtt5d stopped serving a clean client: {e}"),
    })
}

fn save(dir: &Path, master_seed: u64, batch: u64, inputs: &[Input]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut index = format!("seed {master_seed}\nbatch {batch}\n");
    for (i, input) in inputs.iter().enumerate() {
        fs::write(dir.join(format!("session-{i:05}.bin")), &input.bytes)?;
        index.push_str(&format!("session-{i:05}.bin seed {}\n", input.seed));
    }
    fs::write(dir.join("seeds.txt"), index)
}

fn load(dir: &Path) -> std::io::Result<Vec<Input>> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    names.sort();
    names
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Input {
                seed: i as u64,
                bytes: fs::read(p)?,
            })
        })
        .collect()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Runs `netfuzz`; the exit status is 1 when the broker crashed or hung.
pub(crate) fn run(options: &Options) -> ExitCode {
    let mut broker = match Broker::start(options) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("netfuzz: {e}");
            return ExitCode::FAILURE;
        }
    };
    let counters = Counters::default();
    let rss_start = broker.rss_kib();
    eprintln!(
        "netfuzz: broker at {} (pid {}), RSS {}",
        broker.addr,
        broker
            .pid()
            .map_or_else(|| "external".into(), |p| p.to_string()),
        mib(rss_start)
    );

    if let Some(dir) = &options.replay {
        let inputs = match load(dir) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("netfuzz: reading {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "netfuzz: replaying {} streams from {}",
            inputs.len(),
            dir.display()
        );
        let singly = options.connections == 1;
        let chunks: Vec<&[Input]> = if singly {
            inputs.chunks(1).collect()
        } else {
            vec![&inputs[..]]
        };
        for (i, chunk) in chunks.iter().enumerate() {
            send_batch(broker.addr, chunk, options.connections, &counters);
            if let Err(problem) = check(&mut broker) {
                let which = if singly {
                    format!(" after stream {i}")
                } else {
                    String::new()
                };
                println!(
                    "netfuzz replay: FAILED{which}: {problem}; {}",
                    broker.log_tail()
                );
                return ExitCode::FAILURE;
            }
        }
        println!(
            "netfuzz replay: ok, the broker survived {} streams",
            inputs.len()
        );
        return ExitCode::SUCCESS;
    }

    let master_seed = options.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
    });
    eprintln!("netfuzz: seed {master_seed} (replay with --seed {master_seed})");
    let mut seeds = Rng::new(master_seed);
    let start = Instant::now();
    let mut last = (start, 0usize);
    let mut rss_max = rss_start.unwrap_or(0);
    let mut batch = 0u64;
    let mut probe_max = Duration::ZERO;
    while start.elapsed() < options.duration {
        let batch_seed = seeds.next_u64();
        let inputs: Vec<Input> = (0..options.batch.max(1))
            .map(|i| generate(session_seed(batch_seed, i)))
            .collect();
        send_batch(broker.addr, &inputs, options.connections, &counters);
        batch += 1;
        let took = match check(&mut broker) {
            Ok(took) => took,
            Err(problem) => {
                let dir = options
                    .out
                    .join(format!("seed-{master_seed}-batch-{batch}"));
                let saved = save(&dir, master_seed, batch, &inputs).map_or_else(
                    |e| format!("saving them failed: {e}"),
                    |()| format!("saved to {}", dir.display()),
                );
                println!(
                    "netfuzz: FAILED after {} sessions in {:.0} s (batch {batch}, seed {master_seed}): {problem}\n\
                 the batch's {} inputs are {saved}\n{}",
                    counters.sessions.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64(),
                    inputs.len(),
                    broker.log_tail()
                );
                return ExitCode::FAILURE;
            }
        };
        probe_max = probe_max.max(took);
        let rss = broker.rss_kib();
        rss_max = rss_max.max(rss.unwrap_or(0));
        let sessions = counters.sessions.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (sessions - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, sessions);
        eprintln!(
            "netfuzz: {:>4.0} s  batch {batch}  sessions {sessions}  {rate:.0} conn/s  \
             connect failures {}  sent {:.1} MiB  received {:.1} MiB  RSS {}  probe {} ms",
            start.elapsed().as_secs_f64(),
            counters.connect_failures.load(Ordering::Relaxed),
            counters.bytes_sent.load(Ordering::Relaxed) as f64 / 1048576.0,
            counters.bytes_received.load(Ordering::Relaxed) as f64 / 1048576.0,
            mib(rss),
            took.as_millis()
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sessions = counters.sessions.load(Ordering::Relaxed);
    let rss_end = broker.rss_kib();
    let log = broker.log_text();
    let panics = log.lines().filter(|l| l.contains("panic")).count();
    broker.stop();
    println!(
        "netfuzz: ok seed={master_seed} sessions={sessions} batches={batch} seconds={elapsed:.0} \
         conn_per_s={:.0} connect_failures={} rss_start={} rss_max={} rss_end={} \
         slowest_probe_ms={} log_lines={} panics={panics}",
        sessions as f64 / elapsed,
        counters.connect_failures.load(Ordering::Relaxed),
        mib(rss_start),
        mib(Some(rss_max)),
        mib(rss_end),
        probe_max.as_millis(),
        log.lines().count(),
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_valid_and_replayable() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let packets = session(&mut rng);
            // The CONNECT decodes, and so does every packet after it, in its version.
            let mut buf = BytesMut::from(&packets.concat()[..]);
            let mut decoder = mqtt5_codec::Decoder::new(ProtocolVersion::V5);
            let Ok(Some(Packet::Connect(c))) = decoder.decode(&mut buf) else {
                panic!("seed {seed}: the CONNECT does not decode");
            };
            decoder.set_version(c.protocol);
            for _ in 1..packets.len() {
                let decoded = decoder.decode(&mut buf);
                assert!(matches!(decoded, Ok(Some(_))), "seed {seed}: {decoded:?}");
            }
            assert!(buf.is_empty());
            assert_eq!(generate(seed).bytes, generate(seed).bytes);
        }
    }
}
