//! Spec byte vectors (`CONTRIBUTING.md`, "Tests"): every packet type of MQTT 5.0, 3.1.1 and 3.1, written in
//! hex and checked by hand against the byte layouts of the specifications. Where MQTT 5.0
//! prints example bytes (§1.5.5 Table 1-1, Figures 3-6, 3-9, 3-19, 3-21, 3.30, 3-24), the
//! vector uses them and cites the section.
//!
//! Each [`Vector`] is checked three ways: decoding its bytes with its version gives exactly
//! its packet and consumes every byte; encoding the packet gives exactly the same bytes; and
//! `encoded_len` is the byte count. Each [`Lenient`] vector is a non-canonical form that the
//! specification lets a receiver accept: it decodes to the packet, which then re-encodes in
//! the shorter canonical form.
//!
//! Properties are written in the order this encoder emits them; the specification leaves the
//! order free, and `properties_in_any_order_decode_and_reencode_canonically` covers that.

use core::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubAckProperties, SubscribeProperties, UnsubAckProperties,
    UnsubscribeProperties, WillProperties,
};
use mqtt5_codec::*;

use ProtocolVersion::{V3_1, V3_1_1, V5};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Hex to bytes. Whitespace is ignored, and `#` starts a comment that runs to the end of the
/// line. Any other character is a typo in the vector, and panics.
fn hex(s: &str) -> Vec<u8> {
    let mut digits = Vec::new();
    for line in s.lines() {
        let data = line.split_once('#').map_or(line, |(data, _comment)| data);
        for c in data.chars().filter(|c| !c.is_whitespace()) {
            let digit = c
                .to_digit(16)
                .unwrap_or_else(|| panic!("not hex: {c:?} in {line:?}"));
            digits.push(u8::try_from(digit).unwrap());
        }
    }
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits: {s}"
    );
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

/// A canonical encoding: bytes and packet map onto each other exactly, both ways.
struct Vector {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    packet: Packet,
}

fn vector(
    name: &'static str,
    version: ProtocolVersion,
    bytes: &str,
    packet: impl Into<Packet>,
) -> Vector {
    Vector {
        name,
        version,
        bytes: hex(bytes),
        packet: packet.into(),
    }
}

/// A non-canonical encoding the decoder accepts: `bytes` decode to `packet`, which encodes as
/// the shorter `canonical`.
struct Lenient {
    name: &'static str,
    version: ProtocolVersion,
    bytes: &'static str,
    packet: Packet,
    canonical: &'static str,
}

fn lenient(
    name: &'static str,
    version: ProtocolVersion,
    bytes: &'static str,
    packet: impl Into<Packet>,
    canonical: &'static str,
) -> Lenient {
    Lenient {
        name,
        version,
        bytes,
        packet: packet.into(),
        canonical,
    }
}

/// Decodes `bytes` with a decoder for `version`: exactly one packet, every byte consumed.
fn decode_all(name: &str, version: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = Decoder::new(version)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{name}: decode failed: {e:?}"))
        .unwrap_or_else(|| panic!("{name}: decode wants more bytes"));
    assert!(
        buf.is_empty(),
        "{name}: {} byte(s) left undecoded",
        buf.len()
    );
    packet
}

fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf);
    buf.to_vec()
}

fn check(vectors: &[Vector]) {
    for v in vectors {
        let decoded = decode_all(v.name, v.version, &v.bytes);
        // `Debug` hides payloads, so show what the decoded packet would encode to as well.
        assert_eq!(
            decoded,
            v.packet,
            "{}: decoded packet, which re-encodes as {:02x?}",
            v.name,
            encode(&decoded, v.version)
        );
        assert_eq!(
            encode(&v.packet, v.version),
            v.bytes,
            "{}: encoded bytes",
            v.name
        );
        assert_eq!(
            v.packet.encoded_len(v.version),
            v.bytes.len(),
            "{}: encoded_len",
            v.name
        );
    }
}

fn check_lenient(vectors: &[Lenient]) {
    for v in vectors {
        let bytes = hex(v.bytes);
        let canonical = hex(v.canonical);
        assert!(canonical.len() < bytes.len(), "{}: not shorter", v.name);
        let decoded = decode_all(v.name, v.version, &bytes);
        assert_eq!(decoded, v.packet, "{}: decoded packet", v.name);
        assert_eq!(
            encode(&v.packet, v.version),
            canonical,
            "{}: canonical re-encoding",
            v.name
        );
        assert_eq!(
            v.packet.encoded_len(v.version),
            canonical.len(),
            "{}: encoded_len",
            v.name
        );
        // The canonical form is itself a vector.
        assert_eq!(decode_all(v.name, v.version, &canonical), v.packet);
    }
}

// Small constructors, so that each expected packet reads like its bytes.

fn s(v: &str) -> MqttString {
    MqttString::try_from(v).unwrap()
}

fn topic(v: &str) -> TopicName {
    TopicName::try_from(v).unwrap()
}

fn filter(v: &str) -> TopicFilter {
    TopicFilter::try_from(v).unwrap()
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn user(name: &str, value: &str) -> UserProperty {
    UserProperty::new(name, value).unwrap()
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn nz16(v: u16) -> NonZeroU16 {
    NonZeroU16::new(v).unwrap()
}

fn nz32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

/// A PUBLISH without DUP or RETAIN; set those with struct update syntax.
fn publish(
    delivery: Delivery,
    name: &str,
    properties: PublishProperties,
    payload: &'static [u8],
) -> Publish {
    let topic = if name.is_empty() {
        TopicName::empty()
    } else {
        topic(name)
    };
    let mut p = Publish::new(topic, b(payload));
    p.delivery = delivery;
    p.properties = properties.into();
    p
}

fn with_flags(dup: bool, retain: bool, mut p: Publish) -> Publish {
    p.dup = dup;
    p.retain = retain;
    p
}

fn ack_props(reason: Option<&str>, users: Vec<UserProperty>) -> AckProperties {
    AckProperties {
        reason_string: reason.map(s),
        user_properties: users,
    }
}

fn sub(f: &str, options: SubscriptionOptions) -> Subscription {
    Subscription {
        filter: filter(f),
        options,
    }
}

fn opts(
    qos: QoS,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: RetainHandling,
) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT 5.0
// ---------------------------------------------------------------------------------------------

#[test]
fn v5_connect_vectors_match_spec_bytes() {
    check(&[
        vector(
            "CONNECT minimal: clean start, keep alive 60, empty client id [MQTT-3.1.3-6]",
            V5,
            "
                10 0d          # CONNECT, Remaining Length 13
                0004 4d515454  # Protocol Name 'MQTT'
                05             # Protocol Version 5
                02             # Connect Flags: Clean Start
                003c           # Keep Alive 60
                00             # Property Length 0
                0000           # Client Identifier ''
            ",
            Connect::default(),
        ),
        vector(
            // §3.1.2.12 Figure 3-6: the variable header is byte for byte the spec's example
            // (flags 0xCE: User Name, Password, Will QoS 1, Will Flag, Clean Start; Keep Alive
            // 10; Session Expiry Interval 10).
            "CONNECT with the variable header of spec Figure 3-6",
            V5,
            "
                10 26           # CONNECT, Remaining Length 38
                0004 4d515454   # Protocol Name 'MQTT'           (Figure 3-6 bytes 1-6)
                05              # Protocol Version 5             (byte 7)
                ce              # Connect Flags 1100 1110        (byte 8)
                000a            # Keep Alive 10                  (bytes 9-10)
                05 11 0000000a  # Properties: Session Expiry 10  (bytes 11-16)
                0002 6331       # Client Identifier 'c1'
                00              # Will Property Length 0
                0003 772f74     # Will Topic 'w/t'
                0003 627965     # Will Payload 'bye'
                0001 75         # User Name 'u'
                0002 7077       # Password 'pw'
            ",
            Connect {
                protocol: V5,
                clean_start: true,
                keep_alive: 10,
                properties: ConnectProperties {
                    session_expiry_interval: Some(10),
                    ..ConnectProperties::default()
                },
                client_id: s("c1"),
                will: Some(Will {
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: WillProperties::default(),
                    topic: topic("w/t"),
                    payload: b(b"bye"),
                }),
                username: Some(s("u")),
                password: Some(b(b"pw")),
            },
        ),
        vector(
            "CONNECT with every CONNECT property, a will with every will property, user name \
             and binary password",
            V5,
            "
                10 9601                          # CONNECT, Remaining Length 150 (two-byte VBI)
                0004 4d515454                    # Protocol Name 'MQTT'
                05                               # Protocol Version 5
                f4                               # Connect Flags 1111 0100: User Name, Password,
                                                 #   Will Retain, Will QoS 2, Will Flag
                012c                             # Keep Alive 300
                31                               # Property Length 49
                11 00000e10                      #   Session Expiry Interval 3600
                21 0014                          #   Receive Maximum 20
                27 00000400                      #   Maximum Packet Size 1024
                22 000a                          #   Topic Alias Maximum 10
                19 01                            #   Request Response Information 1
                17 00                            #   Request Problem Information 0
                15 0005 534352414d               #   Authentication Method 'SCRAM'
                16 0003 010203                   #   Authentication Data 01 02 03
                26 0001 6b 0001 76               #   User Property 'k' = 'v'
                26 0001 6b 0002 7632             # User Property 'k' = 'v2' (a name may repeat)
                0006 6465762d3432                # Client Identifier 'dev-42'
                2d                               # Will Property Length 45
                18 00000005                      #   Will Delay Interval 5
                01 01                            #   Payload Format Indicator: UTF-8
                02 00000078                      #   Message Expiry Interval 120
                03 000a 746578742f706c61696e     # Content Type 'text/plain'
                08 0005 7273702f31               #   Response Topic 'rsp/1'
                09 0002 cafe                     #   Correlation Data ca fe
                26 0001 61 0001 62               #   User Property 'a' = 'b'
                000d 7374617475732f6465762d3432  # Will Topic 'status/dev-42'
                0007 6f66666c696e65              # Will Payload 'offline'
                0005 616c696365                  # User Name 'alice'
                0003 00ff10                      # Password 00 ff 10 (Binary Data, not UTF-8)
            ",
            Connect {
                protocol: V5,
                clean_start: false,
                keep_alive: 300,
                properties: ConnectProperties {
                    session_expiry_interval: Some(3600),
                    receive_maximum: Some(nz16(20)),
                    maximum_packet_size: Some(nz32(1024)),
                    topic_alias_maximum: Some(10),
                    request_response_information: Some(true),
                    request_problem_information: Some(false),
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: Some(b(&[1, 2, 3])),
                    user_properties: vec![user("k", "v"), user("k", "v2")],
                },
                client_id: s("dev-42"),
                will: Some(Will {
                    qos: QoS::ExactlyOnce,
                    retain: true,
                    properties: WillProperties {
                        will_delay_interval: Some(5),
                        payload_format_indicator: Some(PayloadFormat::Utf8),
                        message_expiry_interval: Some(120),
                        content_type: Some(s("text/plain")),
                        response_topic: Some(topic("rsp/1")),
                        correlation_data: Some(b(&[0xca, 0xfe])),
                        user_properties: vec![user("a", "b")],
                    },
                    topic: topic("status/dev-42"),
                    payload: b(b"offline"),
                }),
                username: Some(s("alice")),
                password: Some(b(&[0x00, 0xff, 0x10])),
            },
        ),
        vector(
            "CONNECT with a password and no user name (allowed from MQTT 5, §3.1.2.9)",
            V5,
            "
                10 13          # CONNECT, Remaining Length 19
                0004 4d515454  # Protocol Name 'MQTT'
                05             # Protocol Version 5
                40             # Flags: Password only
                0000           # Keep Alive 0 (off)
                00             # Property Length 0
                0002 6331      # Client Identifier 'c1'
                0002 7077      # Password 'pw'
            ",
            Connect {
                clean_start: false,
                keep_alive: 0,
                client_id: s("c1"),
                password: Some(b(b"pw")),
                ..Connect::default()
            },
        ),
    ]);
}

#[test]
fn connect_decodes_by_its_own_protocol_level_whatever_the_decoder_version() {
    let cases = [
        ("10 0d 0004 4d515454 05 02 003c 00 0000", V5),
        ("10 0e 0004 4d515454 04 02 003c 0002 6331", V3_1_1),
        ("10 10 0006 4d5149736470 03 02 003c 0002 6331", V3_1),
    ];
    for (bytes, level) in cases {
        for decoder in [V3_1, V3_1_1, V5] {
            let Packet::Connect(c) = decode_all(bytes, decoder, &hex(bytes)) else {
                panic!("{bytes}: not a CONNECT");
            };
            assert_eq!(c.protocol, level, "{bytes} under a {decoder:?} decoder");
        }
    }
}

#[test]
fn v5_connack_vectors_match_spec_bytes() {
    check(&[
        vector(
            "CONNACK success, no session, no properties",
            V5,
            "20 03 00 00 00",
            ConnAck::default(),
        ),
        vector(
            "CONNACK success with Session Present",
            V5,
            "20 03 01 00 00",
            ConnAck {
                session_present: true,
                ..ConnAck::default()
            },
        ),
        vector(
            "CONNACK refusal 0x87 Not authorized",
            V5,
            "20 03 00 87 00",
            ConnAck {
                reason: ConnAckReason::NotAuthorized,
                ..ConnAck::default()
            },
        ),
        vector(
            "CONNACK 0x9C Use another server with a Server Reference",
            V5,
            "
                20 09           # CONNACK, Remaining Length 9
                00              # Acknowledge Flags
                9c              # Reason Code: Use another server
                06              # Property Length 6
                1c 0003 737276  # Server Reference 'srv'
            ",
            ConnAck {
                reason: ConnAckReason::UseAnotherServer,
                properties: ConnAckProperties {
                    server_reference: Some(s("srv")),
                    ..ConnAckProperties::default()
                },
                ..ConnAck::default()
            },
        ),
        vector(
            "CONNACK with every CONNACK property",
            V5,
            "
                20 4d               # CONNACK, Remaining Length 77
                00                  # Acknowledge Flags
                00                  # Reason Code: Success
                4a                  # Property Length 74
                11 00000078         #   Session Expiry Interval 120
                21 000a             #   Receive Maximum 10
                24 01               #   Maximum QoS 1
                25 00               #   Retain Available 0
                27 00010000         #   Maximum Packet Size 65536
                12 0004 6175746f    #   Assigned Client Identifier 'auto'
                22 0005             #   Topic Alias Maximum 5
                1f 0002 6f6b        #   Reason String 'ok'
                28 00               #   Wildcard Subscription Available 0
                29 00               #   Subscription Identifiers Available 0
                2a 00               #   Shared Subscription Available 0
                13 001e             #   Server Keep Alive 30
                1a 0004 72657370    #   Response Information 'resp'
                1c 0003 737276      #   Server Reference 'srv'
                15 0005 534352414d  #   Authentication Method 'SCRAM'
                16 0002 aabb        #   Authentication Data aa bb
                26 0001 78 0001 79  #   User Property 'x' = 'y'
            ",
            ConnAck {
                session_present: false,
                reason: ConnAckReason::Success,
                properties: ConnAckProperties {
                    session_expiry_interval: Some(120),
                    receive_maximum: Some(nz16(10)),
                    maximum_qos: Some(QoS::AtLeastOnce),
                    retain_available: Some(false),
                    maximum_packet_size: Some(nz32(65536)),
                    assigned_client_identifier: Some(s("auto")),
                    topic_alias_maximum: Some(5),
                    reason_string: Some(s("ok")),
                    wildcard_subscription_available: Some(false),
                    subscription_identifiers_available: Some(false),
                    shared_subscription_available: Some(false),
                    server_keep_alive: Some(30),
                    response_information: Some(s("resp")),
                    server_reference: Some(s("srv")),
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: Some(b(&[0xaa, 0xbb])),
                    user_properties: vec![user("x", "y")],
                },
            },
        ),
    ]);
}

#[test]
fn v5_publish_vectors_match_spec_bytes() {
    check(&[
        vector(
            "PUBLISH QoS 0, no properties",
            V5,
            "
                30 08        # PUBLISH QoS 0, Remaining Length 8
                0003 612f62  # Topic Name 'a/b'
                00           # Property Length 0
                6869         # Payload 'hi'
            ",
            publish(
                Delivery::AtMostOnce,
                "a/b",
                PublishProperties::default(),
                b"hi",
            ),
        ),
        vector(
            "PUBLISH QoS 0 retained, empty payload",
            V5,
            "31 06 0003 612f62 00",
            with_flags(
                false,
                true,
                publish(
                    Delivery::AtMostOnce,
                    "a/b",
                    PublishProperties::default(),
                    b"",
                ),
            ),
        ),
        vector(
            // §3.3.2 Figure 3-9: Topic Name "a/b", Packet Identifier 10, no properties.
            "PUBLISH QoS 1 with the variable header of spec Figure 3-9",
            V5,
            "
                32 0a        # PUBLISH QoS 1, Remaining Length 10
                0003 612f62  # Topic Name 'a/b'        (Figure 3-9 bytes 1-5)
                000a         # Packet Identifier 10    (bytes 6-7)
                00           # Property Length 0       (byte 8)
                6869         # Payload 'hi'
            ",
            publish(
                Delivery::AtLeastOnce(pid(10)),
                "a/b",
                PublishProperties::default(),
                b"hi",
            ),
        ),
        vector(
            "PUBLISH QoS 2 with DUP and RETAIN, packet id 65535, empty payload",
            V5,
            "
                3d 08        # PUBLISH DUP, QoS 2, RETAIN; Remaining Length 8
                0003 612f62  # Topic Name 'a/b'
                ffff         # Packet Identifier 65535
                00           # Property Length 0
            ",
            with_flags(
                true,
                true,
                publish(
                    Delivery::ExactlyOnce(pid(0xffff)),
                    "a/b",
                    PublishProperties::default(),
                    b"",
                ),
            ),
        ),
        vector(
            "PUBLISH QoS 0 with payload format, expiry, content type and a user property",
            V5,
            "
                30 1b               # PUBLISH QoS 0, Remaining Length 27
                0001 74             # Topic Name 't'
                15                  # Property Length 21
                01 01               #   Payload Format Indicator: UTF-8
                02 0000003c         #   Message Expiry Interval 60
                03 0004 6a736f6e    #   Content Type 'json'
                26 0001 6b 0001 76  #   User Property 'k' = 'v'
                7b7d                # Payload '{}'
            ",
            publish(
                Delivery::AtMostOnce,
                "t",
                PublishProperties {
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(60),
                    content_type: Some(s("json")),
                    user_properties: vec![user("k", "v")],
                    ..PublishProperties::default()
                },
                b"{}",
            ),
        ),
        vector(
            "PUBLISH QoS 0 that sets Topic Alias 1 for its topic",
            V5,
            "
                30 0a        # PUBLISH QoS 0, Remaining Length 10
                0003 612f62  # Topic Name 'a/b'
                03 23 0001   # Properties: Topic Alias 1
                78           # Payload 'x'
            ",
            publish(
                Delivery::AtMostOnce,
                "a/b",
                PublishProperties {
                    topic_alias: Some(nz16(1)),
                    ..PublishProperties::default()
                },
                b"x",
            ),
        ),
        vector(
            "PUBLISH QoS 1 with an empty topic carried by Topic Alias 1 (§3.3.2.3.4)",
            V5,
            "
                32 09       # PUBLISH QoS 1, Remaining Length 9
                0000        # Topic Name '' (zero length)
                0007        # Packet Identifier 7
                03 23 0001  # Properties: Topic Alias 1
                78          # Payload 'x'
            ",
            publish(
                Delivery::AtLeastOnce(pid(7)),
                "",
                PublishProperties {
                    topic_alias: Some(nz16(1)),
                    ..PublishProperties::default()
                },
                b"x",
            ),
        ),
        vector(
            "PUBLISH QoS 2 with response topic, correlation data and three subscription \
             identifiers of 1, 2 and 3 bytes (values from Table 1-1)",
            V5,
            "
                34 24               # PUBLISH QoS 2, Remaining Length 36
                0003 726571         # Topic Name 'req'
                1234                # Packet Identifier 0x1234
                18                  # Property Length 24
                08 0005 7273702f31  #   Response Topic 'rsp/1'
                09 0004 deadbeef    #   Correlation Data de ad be ef
                0b 01               #   Subscription Identifier 1
                0b ff7f             #   Subscription Identifier 16,383 (0xFF, 0x7F)
                0b 808001           #   Subscription Identifier 16,384 (0x80, 0x80, 0x01)
                70696e67            # Payload 'ping'
            ",
            publish(
                Delivery::ExactlyOnce(pid(0x1234)),
                "req",
                PublishProperties {
                    response_topic: Some(topic("rsp/1")),
                    correlation_data: Some(b(&[0xde, 0xad, 0xbe, 0xef])),
                    subscription_identifiers: vec![nz32(1), nz32(16_383), nz32(16_384)],
                    ..PublishProperties::default()
                },
                b"ping",
            ),
        ),
    ]);
}

/// A v5 QoS 0 PUBLISH to topic "a" with no properties whose Remaining Length is `remaining`:
/// `first_bytes` is the fixed header written out by hand, the body is 4 bytes of variable
/// header and `remaining - 4` bytes of payload.
fn publish_of_remaining_length(name: &'static str, first_bytes: &str, remaining: usize) -> Vector {
    let payload = vec![0x5a; remaining - 4];
    let mut bytes = hex(first_bytes);
    bytes.extend(hex("0001 61 00")); // Topic Name "a", Property Length 0
    bytes.extend(&payload);
    Vector {
        name,
        version: V5,
        bytes,
        packet: Publish::new(topic("a"), payload).into(),
    }
}

#[test]
fn remaining_length_uses_the_encodings_of_spec_table_1_1() {
    // §2.1.4: the Remaining Length is a Variable Byte Integer; §1.5.5 Table 1-1 gives the edges
    // of each size. 0 is PINGREQ's (see below); 268,435,455 is a Subscription Identifier in
    // `v5_subscribe_vectors_match_spec_bytes`, as a packet that size is 256 MiB.
    check(&[
        publish_of_remaining_length("Remaining Length 127 (0x7F)", "30 7f", 127),
        publish_of_remaining_length("Remaining Length 128 (0x80, 0x01)", "30 8001", 128),
        publish_of_remaining_length("Remaining Length 16,383 (0xFF, 0x7F)", "30 ff7f", 16_383),
        publish_of_remaining_length(
            "Remaining Length 16,384 (0x80, 0x80, 0x01)",
            "30 808001",
            16_384,
        ),
        publish_of_remaining_length(
            "Remaining Length 2,097,151 (0xFF, 0xFF, 0x7F)",
            "30 ffff7f",
            2_097_151,
        ),
        publish_of_remaining_length(
            "Remaining Length 2,097,152 (0x80, 0x80, 0x80, 0x01)",
            "30 80808001",
            2_097_152,
        ),
    ]);
}

#[test]
fn v5_puback_pubrec_pubrel_pubcomp_vectors_match_spec_bytes_in_all_three_forms() {
    // §3.4.2.1, §3.5.2.1, §3.6.2.1, §3.7.2.1: Remaining Length 2 for Success without
    // properties; otherwise the Reason Code, and the Property Length only when there are
    // properties ("If the Remaining Length is less than 4 there is no Property Length").
    check(&[
        vector(
            "PUBACK success, Remaining Length 2",
            V5,
            "40 02 0001",
            PubAck::new(pid(1)),
        ),
        vector(
            "PUBACK 0x10 No matching subscribers, Remaining Length 3",
            V5,
            "40 03 0001 10",
            PubAck {
                reason: PubAckReason::NoMatchingSubscribers,
                ..PubAck::new(pid(1))
            },
        ),
        vector(
            "PUBACK 0x80 with Reason String and User Property",
            V5,
            "
                40 12               # PUBACK, Remaining Length 18
                0001                # Packet Identifier 1
                80                  # Reason Code: Unspecified error
                0e                  # Property Length 14
                1f 0004 6f6f7073    #   Reason String 'oops'
                26 0001 61 0001 62  #   User Property 'a' = 'b'
            ",
            PubAck {
                packet_id: pid(1),
                reason: PubAckReason::UnspecifiedError,
                properties: ack_props(Some("oops"), vec![user("a", "b")]),
            },
        ),
        vector(
            "PUBREC success, Remaining Length 2",
            V5,
            "50 02 0002",
            PubRec::new(pid(2)),
        ),
        vector(
            "PUBREC 0x91 Packet Identifier in use, Remaining Length 3",
            V5,
            "50 03 0002 91",
            PubRec {
                reason: PubRecReason::PacketIdentifierInUse,
                ..PubRec::new(pid(2))
            },
        ),
        vector(
            "PUBREC success with a Reason String",
            V5,
            "
                50 09         # PUBREC, Remaining Length 9
                0002          # Packet Identifier 2
                00            # Reason Code: Success
                05            # Property Length 5
                1f 0002 6f6b  #   Reason String 'ok'
            ",
            PubRec {
                properties: ack_props(Some("ok"), vec![]),
                ..PubRec::new(pid(2))
            },
        ),
        vector(
            "PUBREL success, Remaining Length 2, flags 0010 [MQTT-3.6.1-1]",
            V5,
            "62 02 0003",
            PubRel::new(pid(3)),
        ),
        vector(
            "PUBREL 0x92 Packet Identifier not found, Remaining Length 3",
            V5,
            "62 03 0003 92",
            PubRel {
                reason: PubRelReason::PacketIdentifierNotFound,
                ..PubRel::new(pid(3))
            },
        ),
        vector(
            "PUBREL 0x92 with a Reason String",
            V5,
            "
                62 0e                   # PUBREL, Remaining Length 14
                0003                    # Packet Identifier 3
                92                      # Reason Code: Packet Identifier not found
                0a                      # Property Length 10
                1f 0007 756e6b6e6f776e  #   Reason String 'unknown'
            ",
            PubRel {
                packet_id: pid(3),
                reason: PubRelReason::PacketIdentifierNotFound,
                properties: ack_props(Some("unknown"), vec![]),
            },
        ),
        vector(
            "PUBCOMP success, Remaining Length 2",
            V5,
            "70 02 ffff",
            PubComp::new(pid(0xffff)),
        ),
        vector(
            "PUBCOMP 0x92 Packet Identifier not found, Remaining Length 3",
            V5,
            "70 03 0004 92",
            PubComp {
                reason: PubCompReason::PacketIdentifierNotFound,
                ..PubComp::new(pid(4))
            },
        ),
        vector(
            "PUBCOMP success with a User Property",
            V5,
            "
                70 0b               # PUBCOMP, Remaining Length 11
                0004                # Packet Identifier 4
                00                  # Reason Code: Success
                07                  # Property Length 7
                26 0001 6b 0001 76  #   User Property 'k' = 'v'
            ",
            PubComp {
                properties: ack_props(None, vec![user("k", "v")]),
                ..PubComp::new(pid(4))
            },
        ),
    ]);
}

#[test]
fn v5_subscribe_vectors_match_spec_bytes() {
    check(&[
        vector(
            // §3.8.2 Figure 3-19 (packet id 10, no properties) followed by the payload of
            // §3.8.3.1 Figure 3-21 ("a/b" QoS 1, "c/d" QoS 2).
            "SUBSCRIBE of spec Figures 3-19 and 3-21",
            V5,
            "
                82 0f           # SUBSCRIBE, flags 0010 [MQTT-3.8.1-1], Remaining Length 15
                000a            # Packet Identifier 10     (Figure 3-19 bytes 1-2)
                00              # Property Length 0        (byte 3)
                0003 612f62 01  # 'a/b', options: QoS 1    (Figure 3-21 bytes 1-6)
                0003 632f64 02  # 'c/d', options: QoS 2    (bytes 7-12)
            ",
            Subscribe {
                packet_id: pid(10),
                properties: SubscribeProperties::default(),
                subscriptions: vec![
                    sub("a/b", SubscriptionOptions::new(QoS::AtLeastOnce)),
                    sub("c/d", SubscriptionOptions::new(QoS::ExactlyOnce)),
                ],
            },
        ),
        vector(
            "SUBSCRIBE with the largest Subscription Identifier (0xFF, 0xFF, 0xFF, 0x7F), a user \
             property and every subscription option bit",
            V5,
            "
                82 39                              # SUBSCRIBE, Remaining Length 57
                0001                               # Packet Identifier 1
                0c                                 # Property Length 12
                0b ffffff7f                        #   Subscription Identifier 268,435,455
                26 0001 61 0001 62                 #   User Property 'a' = 'b'
                000e 73706f72742f74656e6e69732f2b  # Topic Filter 'sport/tennis/+'
                04                                 #   Options 0000 0100: QoS 0, No Local
                0003 612f23                        # Topic Filter 'a/#'
                19                                 #   Options 0001 1001: QoS 1, RAP, RH 1
                000c 2473686172652f672f782f2b      # Topic Filter '$share/g/x/+'
                2a                                 #   Options 0010 1010: QoS 2, RAP, RH 2
                0001 23                            # Topic Filter '#'
                2e                                 #   Options 0010 1110: QoS 2, NL, RAP, RH 2
            ",
            Subscribe {
                packet_id: pid(1),
                properties: SubscribeProperties {
                    subscription_identifier: Some(nz32(268_435_455)),
                    user_properties: vec![user("a", "b")],
                },
                subscriptions: vec![
                    sub(
                        "sport/tennis/+",
                        opts(
                            QoS::AtMostOnce,
                            true,
                            false,
                            RetainHandling::SendOnSubscribe,
                        ),
                    ),
                    sub(
                        "a/#",
                        opts(QoS::AtLeastOnce, false, true, RetainHandling::SendIfNew),
                    ),
                    sub(
                        "$share/g/x/+",
                        opts(QoS::ExactlyOnce, false, true, RetainHandling::DoNotSend),
                    ),
                    sub(
                        "#",
                        opts(QoS::ExactlyOnce, true, true, RetainHandling::DoNotSend),
                    ),
                ],
            },
        ),
        vector(
            "SUBSCRIBE with Subscription Identifier 128 (0x80, 0x01)",
            V5,
            "
                82 0a       # SUBSCRIBE, Remaining Length 10
                ffff        # Packet Identifier 65535
                03 0b 8001  # Properties: Subscription Identifier 128
                0001 78 01  # 'x': QoS 1
            ",
            Subscribe {
                packet_id: pid(0xffff),
                properties: SubscribeProperties {
                    subscription_identifier: Some(nz32(128)),
                    ..SubscribeProperties::default()
                },
                subscriptions: vec![sub("x", SubscriptionOptions::new(QoS::AtLeastOnce))],
            },
        ),
    ]);
}

#[test]
fn v5_suback_vectors_match_spec_bytes() {
    check(&[
        vector(
            "SUBACK with every SUBACK reason code (§3.9.3)",
            V5,
            "
                90 0f                                # SUBACK, Remaining Length 15
                000a                                 # Packet Identifier 10
                00                                   # Property Length 0
                00 01 02 80 83 87 8f 91 97 9e a1 a2
            ",
            SubAck {
                packet_id: pid(10),
                properties: SubAckProperties::default(),
                reasons: SubAckReason::ALL.to_vec(),
            },
        ),
        vector(
            "SUBACK with Reason String and User Property",
            V5,
            "
                90 10               # SUBACK, Remaining Length 16
                0001                # Packet Identifier 1
                0c                  # Property Length 12
                1f 0002 6e6f        #   Reason String 'no'
                26 0001 61 0001 62  #   User Property 'a' = 'b'
                87                  # Not authorized
            ",
            SubAck {
                packet_id: pid(1),
                properties: SubAckProperties {
                    reason_string: Some(s("no")),
                    user_properties: vec![user("a", "b")],
                },
                reasons: vec![SubAckReason::NotAuthorized],
            },
        ),
    ]);
}

#[test]
fn v5_unsubscribe_and_unsuback_vectors_match_spec_bytes() {
    check(&[
        vector(
            // §3.10.3 Figure 3.30: the payload "a/b", "c/d".
            "UNSUBSCRIBE with the payload of spec Figure 3.30",
            V5,
            "
                a2 0d        # UNSUBSCRIBE, flags 0010 [MQTT-3.10.1-1], Remaining Length 13
                000b         # Packet Identifier 11
                00           # Property Length 0
                0003 612f62  # 'a/b'  (Figure 3.30 bytes 1-5)
                0003 632f64  # 'c/d'  (bytes 6-10)
            ",
            Unsubscribe {
                packet_id: pid(11),
                properties: UnsubscribeProperties::default(),
                filters: vec![filter("a/b"), filter("c/d")],
            },
        ),
        vector(
            "UNSUBSCRIBE of a shared subscription with a User Property",
            V5,
            "
                a2 16                      # UNSUBSCRIBE, Remaining Length 22
                0002                       # Packet Identifier 2
                07                         # Property Length 7
                26 0001 61 0001 62         #   User Property 'a' = 'b'
                000a 2473686172652f672f23  # '$share/g/#'
            ",
            Unsubscribe {
                packet_id: pid(2),
                properties: UnsubscribeProperties {
                    user_properties: vec![user("a", "b")],
                },
                filters: vec![filter("$share/g/#")],
            },
        ),
        vector(
            "UNSUBACK with every UNSUBACK reason code (§3.11.3)",
            V5,
            "
                b0 0a                 # UNSUBACK, Remaining Length 10
                000b                  # Packet Identifier 11
                00                    # Property Length 0
                00 11 80 83 87 8f 91
            ",
            UnsubAck {
                packet_id: pid(11),
                properties: UnsubAckProperties::default(),
                reasons: UnsubAckReason::ALL.to_vec(),
            },
        ),
        vector(
            "UNSUBACK with a Reason String",
            V5,
            "
                b0 09         # UNSUBACK, Remaining Length 9
                0001          # Packet Identifier 1
                05            # Property Length 5
                1f 0002 6f6b  #   Reason String 'ok'
                00            # Success
            ",
            UnsubAck {
                packet_id: pid(1),
                properties: UnsubAckProperties {
                    reason_string: Some(s("ok")),
                    ..UnsubAckProperties::default()
                },
                reasons: vec![UnsubAckReason::Success],
            },
        ),
    ]);
}

#[test]
fn v5_ping_vectors_have_remaining_length_zero() {
    check(&[
        vector("PINGREQ", V5, "c0 00", PingReq),
        vector("PINGRESP", V5, "d0 00", PingResp),
    ]);
}

#[test]
fn v5_disconnect_vectors_match_spec_bytes_in_all_three_forms() {
    check(&[
        vector(
            "DISCONNECT normal, Remaining Length 0 (§3.14.2.1)",
            V5,
            "e0 00",
            Disconnect::new(DisconnectReason::NormalDisconnection),
        ),
        vector(
            "DISCONNECT 0x04 with Will Message, reason only",
            V5,
            "e0 01 04",
            Disconnect::new(DisconnectReason::DisconnectWithWillMessage),
        ),
        vector(
            "DISCONNECT 0x8E Session taken over, reason only",
            V5,
            "e0 01 8e",
            Disconnect::new(DisconnectReason::SessionTakenOver),
        ),
        vector(
            // §3.14.2 Figure 3-24: Reason Code 0, Session Expiry Interval 0. The figure labels
            // the Property Length "Length (5)" but prints its bits as 0000 0111; the property
            // is 1 identifier byte and a Four Byte Integer, so 5 is right and the bits are a
            // typo.
            "DISCONNECT of spec Figure 3-24",
            V5,
            "
                e0 07        # DISCONNECT, Remaining Length 7
                00           # Reason Code 0                     (Figure 3-24 byte 1)
                05           # Property Length 5                 (byte 2)
                11 00000000  # Session Expiry Interval 0         (bytes 3-7)
            ",
            Disconnect {
                reason: DisconnectReason::NormalDisconnection,
                properties: DisconnectProperties {
                    session_expiry_interval: Some(0),
                    ..DisconnectProperties::default()
                },
            },
        ),
        vector(
            "DISCONNECT 0x9C Use another server with Reason String, Server Reference and User \
             Property",
            V5,
            "
                e0 1b                       # DISCONNECT, Remaining Length 27
                9c                          # Reason Code: Use another server
                19                          # Property Length 25
                1f 0003 6d6f76              #   Reason String 'mov'
                1c 0009 686f73743a31383833  #   Server Reference 'host:1883'
                26 0001 61 0001 62          #   User Property 'a' = 'b'
            ",
            Disconnect {
                reason: DisconnectReason::UseAnotherServer,
                properties: DisconnectProperties {
                    session_expiry_interval: None,
                    reason_string: Some(s("mov")),
                    server_reference: Some(s("host:1883")),
                    user_properties: vec![user("a", "b")],
                },
            },
        ),
    ]);
}

#[test]
fn v5_auth_vectors_match_spec_bytes() {
    check(&[
        vector(
            "AUTH success, Remaining Length 0 (§3.15.2.1)",
            V5,
            "f0 00",
            Auth {
                reason: AuthReason::Success,
                properties: AuthProperties::default(),
            },
        ),
        vector(
            "AUTH 0x18 Continue authentication with method and data",
            V5,
            "
                f0 11               # AUTH, Remaining Length 17
                18                  # Reason Code: Continue authentication
                0f                  # Property Length 15
                15 0005 534352414d  #   Authentication Method 'SCRAM'
                16 0004 01020304    #   Authentication Data 01 02 03 04
            ",
            Auth {
                reason: AuthReason::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: Some(b(&[1, 2, 3, 4])),
                    ..AuthProperties::default()
                },
            },
        ),
        vector(
            "AUTH 0x19 Re-authenticate with method, Reason String and User Property",
            V5,
            "
                f0 16               # AUTH, Remaining Length 22
                19                  # Reason Code: Re-authenticate
                14                  # Property Length 20
                15 0005 534352414d  #   Authentication Method 'SCRAM'
                1f 0002 6f6b        #   Reason String 'ok'
                26 0001 61 0001 62  #   User Property 'a' = 'b'
            ",
            Auth {
                reason: AuthReason::ReAuthenticate,
                properties: AuthProperties {
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: None,
                    reason_string: Some(s("ok")),
                    user_properties: vec![user("a", "b")],
                },
            },
        ),
    ]);
}

#[test]
fn v5_optional_reason_and_property_length_decode_and_reencode_in_short_form() {
    // The spec lets a sender omit the Reason Code and Property Length but does not require
    // it: these longer forms are valid and decode, and this encoder writes the shortest form.
    check_lenient(&[
        lenient(
            "PUBACK success with Reason Code, Remaining Length 3 (§3.4.2.2.1)",
            V5,
            "40 03 0001 00",
            PubAck::new(pid(1)),
            "40 02 0001",
        ),
        lenient(
            "PUBACK success with an empty property block, Remaining Length 4",
            V5,
            "40 04 0001 00 00",
            PubAck::new(pid(1)),
            "40 02 0001",
        ),
        lenient(
            "PUBREC 0x10 with an empty property block, Remaining Length 4",
            V5,
            "50 04 0002 10 00",
            PubRec {
                reason: PubRecReason::NoMatchingSubscribers,
                ..PubRec::new(pid(2))
            },
            "50 03 0002 10",
        ),
        lenient(
            "PUBREL success with an empty property block, Remaining Length 4",
            V5,
            "62 04 0003 00 00",
            PubRel::new(pid(3)),
            "62 02 0003",
        ),
        lenient(
            "PUBCOMP success with Reason Code, Remaining Length 3",
            V5,
            "70 03 0004 00",
            PubComp::new(pid(4)),
            "70 02 0004",
        ),
        lenient(
            "DISCONNECT normal with Reason Code, Remaining Length 1 (§3.14.2.2.1)",
            V5,
            "e0 01 00",
            Disconnect::new(DisconnectReason::NormalDisconnection),
            "e0 00",
        ),
        lenient(
            "DISCONNECT normal with an empty property block, Remaining Length 2",
            V5,
            "e0 02 00 00",
            Disconnect::new(DisconnectReason::NormalDisconnection),
            "e0 00",
        ),
        lenient(
            "DISCONNECT 0x8E with an empty property block, Remaining Length 2",
            V5,
            "e0 02 8e 00",
            Disconnect::new(DisconnectReason::SessionTakenOver),
            "e0 01 8e",
        ),
        lenient(
            "AUTH success with an empty property block, Remaining Length 2 (§3.15.2.1)",
            V5,
            "f0 02 00 00",
            Auth {
                reason: AuthReason::Success,
                properties: AuthProperties::default(),
            },
            "f0 00",
        ),
    ]);
}

#[test]
fn properties_in_any_order_decode_and_reencode_canonically() {
    // §2.2.2: the specification fixes no order for properties; this encoder writes them in
    // the order of its property structs. User Properties keep their relative order
    // [MQTT-3.3.2-18].
    let packet = publish(
        Delivery::AtMostOnce,
        "t",
        PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            topic_alias: Some(nz16(2)),
            user_properties: vec![user("z", "1"), user("a", "2")],
            ..PublishProperties::default()
        },
        b"x",
    );
    let reordered = "
        30 18               # PUBLISH QoS 0, Remaining Length 24
        0001 74             # Topic Name 't'
        13                  # Property Length 19
        26 0001 7a 0001 31  #   User Property 'z' = '1'
        23 0002             #   Topic Alias 2
        26 0001 61 0001 32  #   User Property 'a' = '2'
        01 00               #   Payload Format Indicator: unspecified
        78                  # Payload 'x'
    ";
    let canonical = "
        30 18
        0001 74
        13
        01 00
        23 0002
        26 0001 7a 0001 31
        26 0001 61 0001 32
        78
    ";
    let decoded = decode_all("reordered", V5, &hex(reordered));
    assert_eq!(decoded, Packet::from(packet.clone()));
    check(&[vector("canonical property order", V5, canonical, packet)]);
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1 (protocol level 4). Section numbers below are those of MQTT 3.1.1.
// ---------------------------------------------------------------------------------------------

#[test]
fn v3_1_1_connect_vectors_match_spec_bytes() {
    check(&[
        vector(
            "3.1.1 CONNECT minimal with Clean Session",
            V3_1_1,
            "
                10 0e          # CONNECT, Remaining Length 14
                0004 4d515454  # Protocol Name 'MQTT'
                04             # Protocol Level 4
                02             # Connect Flags: Clean Session
                003c           # Keep Alive 60
                0002 6331      # Client Identifier 'c1'
            ",
            Connect {
                protocol: V3_1_1,
                client_id: s("c1"),
                ..Connect::default()
            },
        ),
        vector(
            "3.1.1 CONNECT with retained QoS 1 will, user name and password",
            V3_1_1,
            "
                10 1a          # CONNECT, Remaining Length 26
                0004 4d515454  # Protocol Name 'MQTT'
                04             # Protocol Level 4
                ee             # Flags: User Name, Password, Will Retain, Will QoS 1,
                               #        Will Flag, Clean Session
                0000           # Keep Alive 0
                0002 6331      # Client Identifier 'c1'
                0001 77        # Will Topic 'w'
                0001 78        # Will Message 'x'
                0001 75        # User Name 'u'
                0001 70        # Password 'p'
            ",
            Connect {
                protocol: V3_1_1,
                clean_start: true,
                keep_alive: 0,
                properties: ConnectProperties::default(),
                client_id: s("c1"),
                will: Some(Will {
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: WillProperties::default(),
                    topic: topic("w"),
                    payload: b(b"x"),
                }),
                username: Some(s("u")),
                password: Some(b(b"p")),
            },
        ),
    ]);
}

#[test]
fn v3_1_1_connack_vectors_carry_each_return_code() {
    // MQTT 3.1.1 §3.2.2.3 Table 3.1: return codes 0 to 5.
    let codes = [
        ("20 02 00 00", ConnAckReason::Success),
        ("20 02 00 01", ConnAckReason::UnsupportedProtocolVersion),
        ("20 02 00 02", ConnAckReason::ClientIdentifierNotValid),
        ("20 02 00 03", ConnAckReason::ServerUnavailable),
        ("20 02 00 04", ConnAckReason::BadUserNameOrPassword),
        ("20 02 00 05", ConnAckReason::NotAuthorized),
    ];
    let mut vectors: Vec<Vector> = codes
        .into_iter()
        .map(|(bytes, reason)| {
            vector(
                "3.1.1 CONNACK return code",
                V3_1_1,
                bytes,
                ConnAck {
                    reason,
                    ..ConnAck::default()
                },
            )
        })
        .collect();
    vectors.push(vector(
        "3.1.1 CONNACK accepted with Session Present",
        V3_1_1,
        "20 02 01 00",
        ConnAck {
            session_present: true,
            ..ConnAck::default()
        },
    ));
    check(&vectors);
}

#[test]
fn v3_1_1_publish_and_acknowledgement_vectors_match_spec_bytes() {
    check(&[
        vector(
            "3.1.1 PUBLISH QoS 0",
            V3_1_1,
            "
                30 07        # PUBLISH QoS 0, Remaining Length 7
                0003 612f62  # Topic Name 'a/b'
                6869         # Payload 'hi'
            ",
            publish(
                Delivery::AtMostOnce,
                "a/b",
                PublishProperties::default(),
                b"hi",
            ),
        ),
        vector(
            "3.1.1 PUBLISH QoS 1",
            V3_1_1,
            "
                32 09        # PUBLISH QoS 1, Remaining Length 9
                0003 612f62  # Topic Name 'a/b'
                000a         # Packet Identifier 10
                6869         # Payload 'hi'
            ",
            publish(
                Delivery::AtLeastOnce(pid(10)),
                "a/b",
                PublishProperties::default(),
                b"hi",
            ),
        ),
        vector(
            "3.1.1 PUBLISH QoS 2 with DUP and RETAIN, empty payload",
            V3_1_1,
            "3d 07 0003 612f62 ffff",
            with_flags(
                true,
                true,
                publish(
                    Delivery::ExactlyOnce(pid(0xffff)),
                    "a/b",
                    PublishProperties::default(),
                    b"",
                ),
            ),
        ),
        vector("3.1.1 PUBACK", V3_1_1, "40 02 0001", PubAck::new(pid(1))),
        vector("3.1.1 PUBREC", V3_1_1, "50 02 0002", PubRec::new(pid(2))),
        vector(
            "3.1.1 PUBREL, flags 0010",
            V3_1_1,
            "62 02 0003",
            PubRel::new(pid(3)),
        ),
        vector("3.1.1 PUBCOMP", V3_1_1, "70 02 0004", PubComp::new(pid(4))),
    ]);
}

#[test]
fn v3_1_1_subscribe_unsubscribe_vectors_match_spec_bytes() {
    check(&[
        vector(
            "3.1.1 SUBSCRIBE with three filters",
            V3_1_1,
            "
                82 12           # SUBSCRIBE, flags 0010, Remaining Length 18
                000a            # Packet Identifier 10
                0003 612f62 01  # 'a/b', Requested QoS 1
                0003 632f64 02  # 'c/d', Requested QoS 2
                0001 23 00      # '#', Requested QoS 0
            ",
            Subscribe {
                packet_id: pid(10),
                properties: SubscribeProperties::default(),
                subscriptions: vec![
                    sub("a/b", SubscriptionOptions::new(QoS::AtLeastOnce)),
                    sub("c/d", SubscriptionOptions::new(QoS::ExactlyOnce)),
                    sub("#", SubscriptionOptions::new(QoS::AtMostOnce)),
                ],
            },
        ),
        vector(
            "3.1.1 SUBACK with granted QoS 0, 1, 2 and Failure 0x80 (§3.9.3)",
            V3_1_1,
            "90 06 000a 00 01 02 80",
            SubAck {
                packet_id: pid(10),
                properties: SubAckProperties::default(),
                reasons: vec![
                    SubAckReason::GrantedQoS0,
                    SubAckReason::GrantedQoS1,
                    SubAckReason::GrantedQoS2,
                    SubAckReason::UnspecifiedError,
                ],
            },
        ),
        vector(
            "3.1.1 UNSUBSCRIBE with two filters",
            V3_1_1,
            "
                a2 0c        # UNSUBSCRIBE, flags 0010, Remaining Length 12
                000b         # Packet Identifier 11
                0003 612f62  # 'a/b'
                0003 632f64  # 'c/d'
            ",
            Unsubscribe {
                packet_id: pid(11),
                properties: UnsubscribeProperties::default(),
                filters: vec![filter("a/b"), filter("c/d")],
            },
        ),
        vector(
            "3.1.1 UNSUBACK has no payload (§3.11.3)",
            V3_1_1,
            "b0 02 000b",
            UnsubAck {
                packet_id: pid(11),
                properties: UnsubAckProperties::default(),
                reasons: vec![],
            },
        ),
    ]);
}

#[test]
fn v3_1_1_ping_and_disconnect_vectors_have_remaining_length_zero() {
    check(&[
        vector("3.1.1 PINGREQ", V3_1_1, "c0 00", PingReq),
        vector("3.1.1 PINGRESP", V3_1_1, "d0 00", PingResp),
        vector(
            "3.1.1 DISCONNECT",
            V3_1_1,
            "e0 00",
            Disconnect::new(DisconnectReason::NormalDisconnection),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1 (protocol name "MQIsdp", level 3)
// ---------------------------------------------------------------------------------------------

/// MQTT 3.1 left the reserved CONNECT flag unused without requiring it to be 0 (3.1.1
/// `[MQTT-3.1.2-3]` made it so): a 3.1 CONNECT with it set decodes, and encodes back with it
/// clear. The same flags in 3.1.1 are refused (the malformed table).
#[test]
fn v3_1_connect_with_the_reserved_flag_decodes() {
    let bytes = hex("10 10 0006 4d5149736470 03 03 003c 0002 6331");
    let decoded = decode_all("3.1 CONNECT, reserved flag set", V3_1, &bytes);
    let expected = Packet::from(Connect {
        protocol: V3_1,
        client_id: s("c1"),
        ..Connect::default()
    });
    assert_eq!(decoded, expected);
    assert_eq!(
        encode(&decoded, V3_1),
        hex("10 10 0006 4d5149736470 03 02 003c 0002 6331")
    );
}

#[test]
fn v3_1_vectors_match_spec_bytes() {
    check(&[
        vector(
            "3.1 CONNECT minimal",
            V3_1,
            "
                10 10              # CONNECT, Remaining Length 16
                0006 4d5149736470  # Protocol Name 'MQIsdp'
                03                 # Protocol Version 3
                02                 # Connect Flags: Clean Session
                003c               # Keep Alive 60
                0002 6331          # Client Identifier 'c1'
            ",
            Connect {
                protocol: V3_1,
                client_id: s("c1"),
                ..Connect::default()
            },
        ),
        vector(
            "3.1 CONNECT with QoS 1 will, user name and password",
            V3_1,
            "
                10 21              # CONNECT, Remaining Length 33
                0006 4d5149736470  # Protocol Name 'MQIsdp'
                03                 # Protocol Version 3
                ce                 # Flags: User Name, Password, Will QoS 1, Will, Clean
                000a               # Keep Alive 10
                0002 6331          # Client Identifier 'c1'
                0003 772f74        # Will Topic 'w/t'
                0003 627965        # Will Message 'bye'
                0001 75            # User Name 'u'
                0002 7077          # Password 'pw'
            ",
            Connect {
                protocol: V3_1,
                clean_start: true,
                keep_alive: 10,
                properties: ConnectProperties::default(),
                client_id: s("c1"),
                will: Some(Will {
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: WillProperties::default(),
                    topic: topic("w/t"),
                    payload: b(b"bye"),
                }),
                username: Some(s("u")),
                password: Some(b(b"pw")),
            },
        ),
        vector(
            "3.1 CONNACK accepted",
            V3_1,
            "20 02 00 00",
            ConnAck::default(),
        ),
        vector(
            "3.1 PUBLISH QoS 1",
            V3_1,
            "32 09 0003 612f62 000a 6869",
            publish(
                Delivery::AtLeastOnce(pid(10)),
                "a/b",
                PublishProperties::default(),
                b"hi",
            ),
        ),
        vector("3.1 PUBACK", V3_1, "40 02 000a", PubAck::new(pid(10))),
        vector(
            "3.1 SUBSCRIBE",
            V3_1,
            "
                82 08           # SUBSCRIBE, flags 0010, Remaining Length 8
                0001            # Message ID 1
                0003 612f62 01  # 'a/b', Requested QoS 1
            ",
            Subscribe {
                packet_id: pid(1),
                properties: SubscribeProperties::default(),
                subscriptions: vec![sub("a/b", SubscriptionOptions::new(QoS::AtLeastOnce))],
            },
        ),
        vector(
            "3.1 SUBACK",
            V3_1,
            "90 03 0001 01",
            SubAck {
                packet_id: pid(1),
                properties: SubAckProperties::default(),
                reasons: vec![SubAckReason::GrantedQoS1],
            },
        ),
        vector(
            "3.1 UNSUBSCRIBE",
            V3_1,
            "a2 07 0002 0003 612f62",
            Unsubscribe {
                packet_id: pid(2),
                properties: UnsubscribeProperties::default(),
                filters: vec![filter("a/b")],
            },
        ),
        vector(
            "3.1 UNSUBACK",
            V3_1,
            "b0 02 0002",
            UnsubAck {
                packet_id: pid(2),
                properties: UnsubAckProperties::default(),
                reasons: vec![],
            },
        ),
        vector("3.1 PINGREQ", V3_1, "c0 00", PingReq),
        vector(
            "3.1 DISCONNECT",
            V3_1,
            "e0 00",
            Disconnect::new(DisconnectReason::NormalDisconnection),
        ),
    ]);
}
