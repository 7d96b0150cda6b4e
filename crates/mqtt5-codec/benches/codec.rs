//! Codec throughput: decode and encode of PUBLISH (16 B, 1 KiB, 64 KiB payloads, with and
//! without properties), CONNECT and SUBSCRIBE, with rumqttc's MQTT 5 decoder
//! (`rumqttc::v5::mqttbytes`) decoding the same bytes in the same run.
//!
//! Rows marked "strict" decode with a decoder that rejects the Disallowed Unicode code points
//! (`Decoder::reject_disallowed_code_points`), as mqtt5d does by default.
//!
//! Run: `cargo bench -p mqtt5-codec --bench codec`. It prints a Markdown table.
//! Each figure is the median of several timed rounds; every round decodes a buffer of many
//! back-to-back packets, as a socket read would deliver them. Rounds of the two decoders
//! alternate, so that a noisy neighbour on a shared machine slows both alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::properties::{PublishProperties, SubscribeProperties};
use mqtt5_codec::{
    Connect, ConnectProperties, Decoder, Delivery, MqttString, Packet, PacketId, PayloadFormat,
    ProtocolVersion, Publish, QoS, RetainHandling, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter, TopicName, UserProperty, Will, WillProperties,
};
use rumqttc::v5::mqttbytes::v5::Packet as RumqttPacket;

const V5: ProtocolVersion = ProtocolVersion::V5;
const ROUNDS: usize = 15;
const ROUND_TIME: Duration = Duration::from_millis(100);
/// Bytes per decode batch: a few full socket reads' worth, small enough to stay in cache as a
/// freshly read buffer would be.
const BATCH_BYTES: usize = 256 << 10;

fn publish(payload_len: usize, with_props: bool) -> Packet {
    let mut p = Publish::new(
        TopicName::try_from("sensors/building-7/floor-3/temperature").unwrap(),
        Bytes::from(vec![0xA5u8; payload_len]),
    );
    p.delivery = Delivery::AtLeastOnce(PacketId::new(4321).unwrap());
    if with_props {
        p.properties = PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            message_expiry_interval: Some(3600),
            content_type: Some(MqttString::try_from("application/octet-stream").unwrap()),
            response_topic: Some(TopicName::try_from("replies/client-42").unwrap()),
            correlation_data: Some(Bytes::from_static(b"0123456789abcdef")),
            user_properties: vec![
                UserProperty::new("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                UserProperty::new("unit", "celsius").unwrap(),
            ],
            ..PublishProperties::default()
        }
        .into();
    }
    Packet::from(p)
}

fn connect() -> Packet {
    let props = ConnectProperties {
        session_expiry_interval: Some(3600),
        receive_maximum: core::num::NonZeroU16::new(100),
        maximum_packet_size: core::num::NonZeroU32::new(1 << 20),
        topic_alias_maximum: Some(16),
        user_properties: vec![UserProperty::new("app", "bench").unwrap()],
        ..ConnectProperties::default()
    };
    Packet::from(Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 60,
        properties: props,
        client_id: MqttString::try_from("bench-client-0001").unwrap(),
        will: Some(Will {
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
            topic: TopicName::try_from("clients/bench-client-0001/status").unwrap(),
            payload: Bytes::from_static(b"offline"),
        }),
        username: Some(MqttString::try_from("bench-user").unwrap()),
        password: Some(Bytes::from_static(b"s3cret-passw0rd")),
    })
}

fn subscribe() -> Packet {
    let filters = [
        "sensors/+/temperature",
        "alerts/#",
        "devices/d1/cmd",
        "$SYS/broker/load/#",
    ];
    let props = SubscribeProperties {
        subscription_identifier: core::num::NonZeroU32::new(42),
        ..SubscribeProperties::default()
    };
    Packet::from(Subscribe {
        packet_id: PacketId::new(7).unwrap(),
        properties: props,
        subscriptions: filters
            .iter()
            .map(|f| Subscription {
                filter: TopicFilter::try_from(*f).unwrap(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendOnSubscribe,
                },
            })
            .collect(),
    })
}

/// Packets per second of one timed call to `round`, repeated until `ROUND_TIME` has passed.
fn rate(per_round: usize, round: &mut impl FnMut() -> Duration) -> f64 {
    let mut packets = 0usize;
    let mut spent = Duration::ZERO;
    while spent < ROUND_TIME {
        spent += round();
        packets += per_round;
    }
    packets as f64 / spent.as_secs_f64()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Median packets per second of `round`, which processes `per_round` packets.
fn measure(per_round: usize, mut round: impl FnMut() -> Duration) -> f64 {
    rate(per_round, &mut round); // warm-up
    median((0..ROUNDS).map(|_| rate(per_round, &mut round)).collect())
}

/// Like [`measure`] for two contenders, their rounds interleaved.
fn measure_pair(
    per_round: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (f64, f64) {
    rate(per_round, &mut a);
    rate(per_round, &mut b);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ra.push(rate(per_round, &mut a));
        rb.push(rate(per_round, &mut b));
    }
    (median(ra), median(rb))
}

struct Row {
    name: &'static str,
    size: usize,
    ours_decode: f64,
    theirs_decode: f64,
    ours_encode: f64,
}

fn bench(name: &'static str, packet: &Packet, strict: bool) -> Row {
    let mut one = BytesMut::new();
    packet.encode(V5, &mut one);
    let size = one.len();
    let count = (BATCH_BYTES / size).clamp(16, 100_000);
    let mut stream = BytesMut::with_capacity(size * count);
    for _ in 0..count {
        stream.extend_from_slice(&one);
    }
    let stream = stream.freeze();

    let decoder = Decoder::new(V5).reject_disallowed_code_points(strict);
    // Sanity: both decoders read the whole stream.
    {
        let mut buf = BytesMut::from(&stream[..]);
        let mut n = 0;
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            assert_eq!(&p, packet);
            n += 1;
        }
        assert_eq!(n, count);
        let mut buf = BytesMut::from(&stream[..]);
        let mut n = 0;
        while !buf.is_empty() {
            RumqttPacket::read(&mut buf, None).expect("rumqttc decodes the stream");
            n += 1;
        }
        assert_eq!(n, count);
    }

    let (ours_decode, theirs_decode) = measure_pair(
        count,
        || {
            let mut buf = BytesMut::from(&stream[..]);
            let t = Instant::now();
            while let Some(p) = decoder.decode(&mut buf).unwrap() {
                black_box(p);
            }
            t.elapsed()
        },
        || {
            let mut buf = BytesMut::from(&stream[..]);
            let t = Instant::now();
            while !buf.is_empty() {
                black_box(RumqttPacket::read(&mut buf, None).unwrap());
            }
            t.elapsed()
        },
    );
    let mut out = BytesMut::with_capacity(size * count);
    let ours_encode = measure(count, || {
        out.clear();
        let t = Instant::now();
        for _ in 0..count {
            black_box(packet).encode(V5, &mut out);
        }
        black_box(&out);
        t.elapsed()
    });
    Row {
        name,
        size,
        ours_decode,
        theirs_decode,
        ours_encode,
    }
}

fn fmt_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} M/s", pps / 1e6)
    } else {
        format!("{:.0} k/s", pps / 1e3)
    }
}

fn fmt_mb(pps: f64, size: usize) -> String {
    format!("{:.0} MB/s", pps * size as f64 / 1e6)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects cases by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<(&'static str, Packet, bool)> = vec![
        ("PUBLISH 16 B", publish(16, false), false),
        ("PUBLISH 16 B, strict", publish(16, false), true),
        ("PUBLISH 16 B + props", publish(16, true), false),
        ("PUBLISH 1 KiB", publish(1024, false), false),
        ("PUBLISH 1 KiB + props", publish(1024, true), false),
        ("PUBLISH 64 KiB", publish(64 * 1024, false), false),
        ("PUBLISH 64 KiB + props", publish(64 * 1024, true), false),
        ("CONNECT", connect(), false),
        ("CONNECT, strict", connect(), true),
        ("SUBSCRIBE (4 filters)", subscribe(), false),
        ("SUBSCRIBE (4 filters), strict", subscribe(), true),
    ];
    println!(
        "| packet (MQTT 5, QoS 1) | bytes | mqtt5-codec decode | rumqttc v5 decode | decode ratio | mqtt5-codec encode |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, packet, strict) in &cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let r = bench(name, packet, *strict);
        println!(
            "| {} | {} | {} ({}) | {} ({}) | {:.2}× | {} ({}) |",
            r.name,
            r.size,
            fmt_rate(r.ours_decode),
            fmt_mb(r.ours_decode, r.size),
            fmt_rate(r.theirs_decode),
            fmt_mb(r.theirs_decode, r.size),
            r.ours_decode / r.theirs_decode,
            fmt_rate(r.ours_encode),
            fmt_mb(r.ours_encode, r.size),
        );
    }
    if filter.as_deref().is_none_or(|f| "floor".contains(f)) {
        floor();
    }
}

/// The cost that a zero-copy decoder pays for a small PUBLISH before it parses a byte: split
/// the frame off the read buffer and freeze it (and drop it), which is all mqtt5-codec pays;
/// a decoder that also gives the topic a `Bytes` handle of its own, as rumqttc does, pays the
/// second row. Each handle costs two atomic reference-count updates on the shared buffer; the
/// last row measures one such update on its own.
fn floor() {
    let Packet::Publish(p) = publish(16, false) else {
        unreachable!("publish() builds a PUBLISH")
    };
    let mut one = BytesMut::new();
    Packet::from(p.clone()).encode(V5, &mut one);
    let size = one.len();
    let topic_start = 4; // first byte, one-byte Remaining Length, two-byte topic length
    let topic_end = topic_start + p.topic().len();
    let count = BATCH_BYTES / size;
    let mut stream = BytesMut::with_capacity(size * count);
    for _ in 0..count {
        stream.extend_from_slice(&one);
    }
    let stream = stream.freeze();
    let ns = |pps: f64| 1e9 / pps;

    let frame_only = measure(count, || {
        let mut buf = BytesMut::from(&stream[..]);
        let t = Instant::now();
        while !buf.is_empty() {
            black_box(buf.split_to(size).freeze());
        }
        t.elapsed()
    });
    let frame_and_topic = measure(count, || {
        let mut buf = BytesMut::from(&stream[..]);
        let t = Instant::now();
        while !buf.is_empty() {
            let frame = buf.split_to(size).freeze();
            let topic = frame.slice(topic_start..topic_end);
            black_box((topic, frame));
        }
        t.elapsed()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let atomic = measure(count, || {
        let t = Instant::now();
        for _ in 0..count {
            black_box(&counter).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        t.elapsed()
    });
    println!();
    println!("Zero-copy floor for PUBLISH 16 B (no parsing at all):");
    println!();
    println!("| step | ns per packet |");
    println!("|---|---:|");
    println!(
        "| split the frame off the buffer, freeze, drop: one handle (mqtt5-codec), 2 atomic updates | {:.1} |",
        ns(frame_only)
    );
    println!(
        "| + a topic handle of its own (rumqttc), 4 atomic updates | {:.1} |",
        ns(frame_and_topic)
    );
    println!(
        "| one uncontended atomic fetch_add, for scale | {:.1} |",
        ns(atomic)
    );
}
