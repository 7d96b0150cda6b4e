//! Malformed and forbidden packets, as a table in the style of Mosquitto's broker tests:
//! bytes → expected error → MQTT 5 reason code, with the normative id where the spec has one.

use bytes::BytesMut;
use mqtt5_codec::{Decoder, Error, ProtocolVersion, ReasonCode, TopicError};

use ProtocolVersion::{V3_1_1, V5};

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {s}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// A whole packet: `first` byte, a correct one-byte Remaining Length, then `body`.
fn pkt(first: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    assert!(body.len() < 128);
    let mut v = vec![first, body.len() as u8];
    v.extend(body);
    v
}

/// A SUBSCRIBE (v5, packet id 1, no properties) for one filter with options `opts`.
fn subscribe_v5(filter: &str, opts: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend((filter.len() as u16).to_be_bytes());
    body.extend(filter.as_bytes());
    body.push(opts);
    let mut v = vec![0x82, body.len() as u8];
    v.extend(body);
    v
}

/// A CONNECT with protocol name/level `head` (hex), `flags`, keep-alive 60, and `rest` (hex).
fn connect(head: &str, flags: u8, rest: &str) -> Vec<u8> {
    pkt(0x10, &format!("{head} {flags:02x} 003c {rest}"))
}

struct Row {
    name: &'static str,
    spec: &'static str,
    version: ProtocolVersion,
    max: u32,
    /// Whether the decoder rejects the Disallowed Unicode code points.
    strict: bool,
    bytes: Vec<u8>,
    error: Error,
    reason: u8,
}

fn row(
    name: &'static str,
    spec: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    error: Error,
    reason: u8,
) -> Row {
    Row {
        name,
        spec,
        version,
        max: mqtt5_codec::MAX_PACKET_SIZE,
        strict: false,
        bytes,
        error,
        reason,
    }
}

/// The same row, decoded by a decoder that rejects the Disallowed Unicode code points.
fn strict(r: Row) -> Row {
    Row { strict: true, ..r }
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Error::*;
    let flags = |packet_type, flags| InvalidHeaderFlags { packet_type, flags };
    let not_allowed = |property, packet| PropertyNotAllowed { property, packet };
    vec![
        // Fixed header.
        row("packet type 0 is reserved", "§2.1.2", V5, hex("00 00"), ReservedPacketType(0), 0x81),
        row("AUTH does not exist in 3.1.1", "§2.1.2", V3_1_1, hex("f0 00"), PacketNotInVersion(15), 0x81),
        row("CONNECT flags must be 0", "MQTT-2.1.3-1", V5, hex("11 00"), flags(1, 1), 0x81),
        row("PUBACK flags must be 0", "MQTT-2.1.3-1", V5, hex("42 02 00 01"), flags(4, 2), 0x81),
        row("PUBREL flags must be 0010", "MQTT-3.6.1-1", V5, hex("60 02 00 01"), flags(6, 0), 0x81),
        row("SUBSCRIBE flags must be 0010", "MQTT-3.8.1-1", V5, hex("80 06 0001 00 0001 61 00"), flags(8, 0), 0x81),
        row("UNSUBSCRIBE flags must be 0010", "MQTT-3.10.1-1", V5, hex("a3 05 0001 00 0001 61"), flags(10, 3), 0x81),
        row("PINGREQ flags must be 0", "MQTT-2.1.3-1", V5, hex("c8 00"), flags(12, 8), 0x81),
        row("DISCONNECT flags must be 0", "MQTT-3.14.1-1", V5, hex("e1 00"), flags(14, 1), 0x81),
        row("AUTH flags must be 0", "MQTT-3.15.1-1", V5, hex("f4 00"), flags(15, 4), 0x81),
        row("PUBLISH QoS 3", "MQTT-3.3.1-4", V5, hex("36"), InvalidQoS, 0x81),
        row("PUBLISH QoS 3 with DUP and RETAIN", "MQTT-3.3.1-4", V3_1_1, hex("3f 00"), InvalidQoS, 0x81),
        row("DUP on a QoS 0 PUBLISH", "MQTT-3.3.1-2", V5, hex("38"), DupOnQoS0, 0x81),
        // Variable Byte Integers and Remaining Length.
        row("remaining length of five bytes", "§1.5.5", V5, hex("30 ff ff ff ff 01"), VarIntTooLong, 0x81),
        row("remaining length not minimal", "MQTT-1.5.5-1", V5, hex("c0 80 00"), VarIntNotMinimal, 0x81),
        row("property length not minimal", "MQTT-1.5.5-1", V5, pkt(0x30, "0001 61 8000"), VarIntNotMinimal, 0x81),
        row("remaining length too short for PUBACK", "§3.4.1", V5, pkt(0x40, "00"), Truncated, 0x81),
        row("string runs past remaining length", "§1.5.4", V5, pkt(0x30, "0005 6162"), Truncated, 0x81),
        row("property length past remaining length", "§2.2.2.1", V5, pkt(0x30, "0001 61 05 01"), Truncated, 0x81),
        row("PINGREQ with a body", "§3.12.1", V5, pkt(0xc0, "00"), TrailingBytes(1), 0x81),
        row("3.1.1 PUBACK longer than 2", "§3.4.2 (3.1.1)", V3_1_1, pkt(0x40, "0001 00"), TrailingBytes(1), 0x81),
        row("PUBACK bytes after properties", "§3.4.2", V5, pkt(0x40, "0001 00 00 ff"), TrailingBytes(1), 0x81),
        row("CONNECT with a trailing byte", "MQTT-3.1.4-1", V5, connect("0004 4d515454 05", 0x02, "00 0000 ff"), TrailingBytes(1), 0x81),
        row("DISCONNECT 3.1.1 with a body", "§3.14 (3.1.1)", V3_1_1, pkt(0xe0, "00"), TrailingBytes(1), 0x81),
        // UTF-8.
        row("topic with invalid UTF-8", "MQTT-1.5.4-1", V5, pkt(0x30, "0001 ff 00"), InvalidUtf8, 0x81),
        row("topic with a UTF-16 surrogate", "MQTT-1.5.4-1", V5, pkt(0x30, "0003 eda080 00"), InvalidUtf8, 0x81),
        row("topic with an overlong encoding", "MQTT-1.5.4-1", V5, pkt(0x30, "0002 c0af 00"), InvalidUtf8, 0x81),
        row("topic with U+0000", "MQTT-1.5.4-2", V5, pkt(0x30, "0002 6100 00"), NullCharacter, 0x81),
        row("client id with U+0000", "MQTT-1.5.4-2", V5, connect("0004 4d515454 05", 0x02, "00 0001 00"), NullCharacter, 0x81),
        row("user property with invalid UTF-8", "MQTT-1.5.7-1", V5, pkt(0x30, "0001 61 07 26 0001 61 0001 fe"), InvalidUtf8, 0x81),
        row("user name with U+0000", "MQTT-3.1.3-12", V5, connect("0004 4d515454 05", 0x82, "00 0000 0001 00"), NullCharacter, 0x81),
        // Disallowed Unicode code points, with a decoder that rejects them (U+0000 stays an
        // error of its own, and comes first).
        strict(row("topic with U+0001", "§1.5.4", V5, pkt(0x30, "0002 6101 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+001F", "§1.5.4", V3_1_1, pkt(0x30, "0002 611f"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+007F", "§1.5.4", V5, pkt(0x30, "0002 7f61 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+0080", "§1.5.4", V5, pkt(0x30, "0003 61c280 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+009F", "§1.5.4", V5, pkt(0x30, "0003 c29f61 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+FDD0", "§1.5.4", V5, pkt(0x30, "0004 61efb790 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+FDEF", "§1.5.4", V5, pkt(0x30, "0004 61efb7af 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+FFFE", "§1.5.4", V5, pkt(0x30, "0003 efbfbe 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+1FFFF", "§1.5.4", V5, pkt(0x30, "0005 61f09fbfbf 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+10FFFE", "§1.5.4", V5, pkt(0x30, "0004 f48fbfbe 00"), DisallowedCodePoint, 0x81)),
        strict(row("topic with U+0000 and U+0001", "MQTT-1.5.4-2", V5, pkt(0x30, "0002 0100 00"), NullCharacter, 0x81)),
        strict(row("filter with U+0001", "§1.5.4", V5, subscribe_v5("a/\u{1}", 0), DisallowedCodePoint, 0x81)),
        strict(row("filter with U+0085", "§1.5.4", V5, subscribe_v5("a/\u{85}/#", 0), DisallowedCodePoint, 0x81)),
        strict(row("long filter with U+007F", "§1.5.4", V5, subscribe_v5(&format!("{}\u{7f}", "a/".repeat(40)), 0), DisallowedCodePoint, 0x81)),
        strict(row("shared filter with U+FFFF", "§1.5.4", V5, subscribe_v5("$share/g/\u{ffff}", 0), DisallowedCodePoint, 0x81)),
        strict(row("UNSUBSCRIBE filter with U+FDD5", "§1.5.4", V5, pkt(0xa2, "0001 00 0003 efb795"), DisallowedCodePoint, 0x81)),
        strict(row("client id with U+001B", "§1.5.4", V5, connect("0004 4d515454 05", 0x02, "00 0002 611b"), DisallowedCodePoint, 0x81)),
        strict(row("3.1 client id with U+0007", "§1.5.4", V3_1_1, connect("0006 4d5149736470 03", 0x02, "0002 6107"), DisallowedCodePoint, 0x81)),
        strict(row("user name with U+009F", "§1.5.4", V5, connect("0004 4d515454 05", 0x82, "00 0001 61 0002 c29f"), DisallowedCodePoint, 0x81)),
        strict(row("will topic with U+1FFFE", "§1.5.4", V5, connect("0004 4d515454 05", 0x06, "00 0001 61 00 0005 77f09fbfbe 0000"), DisallowedCodePoint, 0x81)),
        // Topic names.
        row("topic name with +", "MQTT-3.3.2-2", V5, pkt(0x30, "0003 612f2b 00"), InvalidTopicName(TopicError::Wildcard), 0x90),
        row("topic name with #", "MQTT-4.7.0-1", V3_1_1, pkt(0x30, "0001 23"), InvalidTopicName(TopicError::Wildcard), 0x90),
        row("empty topic without alias", "§3.3.2.1", V5, pkt(0x30, "0000 00"), EmptyTopicWithoutAlias, 0x82),
        row("empty topic in 3.1.1", "MQTT-4.7.3-1", V3_1_1, pkt(0x30, "0000"), InvalidTopicName(TopicError::Empty), 0x90),
        row("will topic with a wildcard", "MQTT-3.1.3-11", V5, connect("0004 4d515454 05", 0x06, "00 0000 00 0001 23 0000"), InvalidTopicName(TopicError::Wildcard), 0x90),
        row("response topic with a wildcard", "MQTT-3.3.2-14", V5, pkt(0x30, "0001 61 05 08 0002 612b"), InvalidResponseTopic(TopicError::Wildcard), 0x82),
        // Topic filters.
        row("filter a/b#", "MQTT-4.7.1-1", V5, subscribe_v5("a/b#", 0), InvalidTopicFilter(TopicError::MultiLevelWildcard), 0x8f),
        row("filter #/a", "MQTT-4.7.1-1", V5, subscribe_v5("#/a", 0), InvalidTopicFilter(TopicError::MultiLevelWildcard), 0x8f),
        row("filter a+", "MQTT-4.7.1-2", V5, subscribe_v5("a+", 0), InvalidTopicFilter(TopicError::SingleLevelWildcard), 0x8f),
        row("empty filter", "MQTT-4.7.3-1", V5, subscribe_v5("", 0), InvalidTopicFilter(TopicError::Empty), 0x8f),
        row("shared filter with empty share name", "MQTT-4.8.2-1", V5, subscribe_v5("$share//a", 0), InvalidTopicFilter(TopicError::EmptyShareName), 0x8f),
        row("shared filter without a filter", "MQTT-4.8.2-2", V5, subscribe_v5("$share/g", 0), InvalidTopicFilter(TopicError::InvalidShareName), 0x8f),
        row("shared filter with + in share name", "MQTT-4.8.2-2", V5, subscribe_v5("$share/g+/a", 0), InvalidTopicFilter(TopicError::InvalidShareName), 0x8f),
        row("UNSUBSCRIBE filter a+", "MQTT-4.7.1-2", V5, pkt(0xa2, "0001 00 0002 612b"), InvalidTopicFilter(TopicError::SingleLevelWildcard), 0x8f),
        // Packet identifiers.
        row("PUBACK packet id 0", "MQTT-2.2.1-3", V5, pkt(0x40, "0000"), ZeroPacketId, 0x82),
        row("QoS 1 PUBLISH packet id 0", "MQTT-2.2.1-3", V5, pkt(0x32, "0001 61 0000 00"), ZeroPacketId, 0x82),
        row("SUBSCRIBE packet id 0", "MQTT-2.2.1-3", V3_1_1, pkt(0x82, "0000 0001 61 00"), ZeroPacketId, 0x82),
        // Properties.
        row("duplicate Message Expiry Interval", "§3.3.2.3.3", V5, pkt(0x30, "0001 61 0a 02 00000001 02 00000002"), DuplicateProperty(0x02), 0x82),
        row("duplicate Receive Maximum", "§3.1.2.11.3", V5, connect("0004 4d515454 05", 0x02, "06 21 0001 21 0001 0000"), DuplicateProperty(0x21), 0x82),
        row("duplicate Topic Alias", "§3.3.2.3.4", V5, pkt(0x30, "0001 61 06 23 0001 23 0002"), DuplicateProperty(0x23), 0x82),
        row("Session Expiry in PUBLISH", "§2.2.2.2", V5, pkt(0x30, "0001 61 05 11 00000001"), not_allowed(0x11, "PUBLISH"), 0x81),
        row("Topic Alias in a will", "§3.1.3.2", V5, connect("0004 4d515454 05", 0x06, "00 0000 03 23 0001 0001 61 0000"), not_allowed(0x23, "will properties"), 0x81),
        row("unknown property 0x7f", "§2.2.2.2", V5, pkt(0x30, "0001 61 02 7f 00"), UnknownProperty(0x7f), 0x81),
        row("Receive Maximum 0", "§3.1.2.11.3", V5, connect("0004 4d515454 05", 0x02, "03 21 0000 0000"), InvalidPropertyValue(0x21), 0x82),
        row("Maximum Packet Size 0", "§3.1.2.11.4", V5, connect("0004 4d515454 05", 0x02, "05 27 00000000 0000"), InvalidPropertyValue(0x27), 0x82),
        row("Request Problem Information 2", "§3.1.2.11.7", V5, connect("0004 4d515454 05", 0x02, "02 17 02 0000"), InvalidPropertyValue(0x17), 0x82),
        row("Maximum QoS 2", "§3.2.2.3.4", V5, pkt(0x20, "00 00 02 24 02"), InvalidPropertyValue(0x24), 0x82),
        row("Retain Available 2", "§3.2.2.3.5", V5, pkt(0x20, "00 00 02 25 02"), InvalidPropertyValue(0x25), 0x82),
        row("Payload Format Indicator 2", "§3.3.2.3.2", V5, pkt(0x30, "0001 61 02 01 02"), InvalidPropertyValue(0x01), 0x82),
        row("Subscription Identifier 0", "§3.8.2.1.2", V5, pkt(0x82, "0001 02 0b 00 0001 61 00"), InvalidPropertyValue(0x0b), 0x82),
        row("Topic Alias 0", "MQTT-3.3.2-8", V5, pkt(0x30, "0001 61 03 23 0000"), ZeroTopicAlias, 0x94),
        row("Authentication Data without Method", "§3.1.2.11.10", V5, connect("0004 4d515454 05", 0x02, "04 16 0001 ff 0000"), AuthDataWithoutMethod, 0x82),
        // SUBSCRIBE and UNSUBSCRIBE payloads.
        row("SUBSCRIBE without filters", "MQTT-3.8.3-2", V5, pkt(0x82, "0001 00"), NoTopicFilters, 0x82),
        row("UNSUBSCRIBE without filters", "MQTT-3.10.3-2", V3_1_1, pkt(0xa2, "0001"), NoTopicFilters, 0x82),
        row("subscription option bits 6-7", "MQTT-3.8.3-5", V5, subscribe_v5("a", 0x40), SubscriptionOptionsReserved, 0x81),
        row("3.1.1 requested QoS bits 2-7", "MQTT-3.8.3-4 (3.1.1)", V3_1_1, pkt(0x82, "0001 0001 61 04"), SubscriptionOptionsReserved, 0x81),
        row("subscription QoS 3", "§3.8.3.1", V5, subscribe_v5("a", 0x03), InvalidSubscriptionQoS, 0x82),
        row("Retain Handling 3", "§3.8.3.1", V5, subscribe_v5("a", 0x30), InvalidRetainHandling, 0x82),
        row("No Local on a shared subscription", "MQTT-3.8.3-4", V5, subscribe_v5("$share/g/a", 0x04), NoLocalOnSharedSubscription, 0x82),
        // CONNECT flags, protocol name and level.
        row("CONNECT reserved flag", "MQTT-3.1.2-3", V5, connect("0004 4d515454 05", 0x03, "00 0000"), ConnectReservedFlag, 0x81),
        row("3.1.1 CONNECT reserved flag", "MQTT-3.1.2-3 (3.1.1)", V3_1_1, connect("0004 4d515454 04", 0x03, "0001 61"), ConnectReservedFlag, 0x81),
        row("will QoS without will flag", "MQTT-3.1.2-11", V5, connect("0004 4d515454 05", 0x0a, "00 0000"), WillFlagsWithoutWill, 0x81),
        row("will retain without will flag", "MQTT-3.1.2-13", V3_1_1, connect("0004 4d515454 04", 0x22, "0000"), WillFlagsWithoutWill, 0x81),
        row("will QoS 3", "MQTT-3.1.2-12", V5, connect("0004 4d515454 05", 0x1e, "00 0000 00 0001 61 0000"), InvalidWillQoS, 0x81),
        row("3.1.1 password without user name", "MQTT-3.1.2-22 (3.1.1)", V3_1_1, connect("0004 4d515454 04", 0x42, "0000 0001 70"), PasswordWithoutUsername, 0x81),
        row("unknown protocol name", "MQTT-3.1.2-1", V5, connect("0004 4d515458 05", 0x02, "00 0000"), UnsupportedProtocolName, 0x84),
        row("unknown protocol level 6", "MQTT-3.1.2-2", V5, connect("0004 4d515454 06", 0x02, "00 0000"), UnsupportedProtocolLevel(6), 0x84),
        row("MQIsdp with level 4", "MQTT-3.1.2-2", V5, connect("0006 4d5149736470 04", 0x02, "0000"), UnsupportedProtocolLevel(4), 0x84),
        // CONNACK.
        row("CONNACK reserved flags", "MQTT-3.2.2-1", V5, pkt(0x20, "02 00 00"), ConnAckReservedFlags, 0x81),
        row("Session Present on a failed CONNACK", "MQTT-3.2.2-6", V5, pkt(0x20, "01 87 00"), SessionPresentOnFailure, 0x82),
        row("3.1.1 CONNACK return code 6", "§3.2.2.3 (3.1.1)", V3_1_1, pkt(0x20, "00 06"), InvalidReasonCode { code: 6, packet: "CONNACK" }, 0x81),
        // Reason codes.
        row("PUBACK reason code 0x05", "MQTT-3.4.2-1", V5, pkt(0x40, "0001 05"), InvalidReasonCode { code: 5, packet: "PUBACK" }, 0x81),
        row("PUBREL reason code 0x10", "MQTT-3.6.2-1", V5, pkt(0x62, "0001 10"), InvalidReasonCode { code: 0x10, packet: "PUBREL" }, 0x81),
        row("DISCONNECT reason code 0x84", "MQTT-3.14.2-1", V5, pkt(0xe0, "84"), InvalidReasonCode { code: 0x84, packet: "DISCONNECT" }, 0x81),
        row("AUTH reason code 0x01", "MQTT-3.15.2-1", V5, pkt(0xf0, "01 00"), InvalidReasonCode { code: 1, packet: "AUTH" }, 0x81),
        row("AUTH with a Reason Code but no Property Length", "§3.15.2.1", V5, hex("f0 01 18"), Truncated, 0x81),
        row("3.1.1 SUBACK return code 0x87", "§3.9.3 (3.1.1)", V3_1_1, pkt(0x90, "0001 87"), InvalidReasonCode { code: 0x87, packet: "SUBACK" }, 0x81),
        // Maximum Packet Size.
        Row {
            max: 1024 * 1024,
            ..row("remaining length of 256 MB", "§3.1.2.11.4", V5, hex("30 ff ff ff 7f"), PacketTooLarge { size: 268_435_460, max: 1024 * 1024 }, 0x95)
        },
        Row {
            max: 10,
            ..row("one byte over the limit", "§3.1.2.11.4", V5, hex("30 09"), PacketTooLarge { size: 11, max: 10 }, 0x95)
        },
    ]
}

#[test]
fn every_malformed_row_gives_its_error_and_reason_code() {
    let mut failures = Vec::new();
    for r in rows() {
        let decoder = Decoder::new(r.version)
            .with_max_packet_size(r.max)
            .reject_disallowed_code_points(r.strict);
        let mut buf = BytesMut::from(&r.bytes[..]);
        let got = decoder.decode(&mut buf);
        if got.as_ref().err() != Some(&r.error) {
            failures.push(format!(
                "{} [{}]: expected {:?}, got {got:?}",
                r.name, r.spec, r.error
            ));
            continue;
        }
        let code = r.error.reason_code();
        if code.as_u8() != r.reason {
            failures.push(format!(
                "{}: reason {code} is not {:#04x}",
                r.name, r.reason
            ));
        }
        // The code is one a server may send: in DISCONNECT, or CONNACK for CONNECT problems.
        let sendable = mqtt5_codec::DisconnectReason::try_from(code).is_ok()
            || mqtt5_codec::ConnAckReason::try_from(code).is_ok();
        assert!(sendable, "{}: {code} fits no server packet", r.name);
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn malformed_rows_are_rejected_from_any_prefix_that_shows_the_fault() {
    // A decoder must never ask for more bytes once the input can no longer become valid:
    // every prefix either waits (Ok(None)) or fails with the row's own error.
    for r in rows() {
        let decoder = Decoder::new(r.version)
            .with_max_packet_size(r.max)
            .reject_disallowed_code_points(r.strict);
        for cut in 0..=r.bytes.len() {
            let mut buf = BytesMut::from(&r.bytes[..cut]);
            match decoder.decode(&mut buf) {
                Ok(None) => assert_eq!(&buf[..], &r.bytes[..cut], "{}: prefix consumed", r.name),
                Err(e) => assert_eq!(e, r.error, "{}: prefix of {cut} bytes", r.name),
                Ok(Some(p)) => panic!("{}: prefix of {cut} bytes decoded to {p:?}", r.name),
            }
        }
    }
}

#[test]
fn disallowed_code_points_decode_when_the_decoder_accepts_them() {
    // The default decoder accepts them: every row refused only for them decodes.
    let mut checked = 0;
    for r in rows()
        .into_iter()
        .filter(|r| r.error == Error::DisallowedCodePoint)
    {
        let decoder = Decoder::new(r.version).with_max_packet_size(r.max);
        assert!(!decoder.rejects_disallowed_code_points());
        let mut buf = BytesMut::from(&r.bytes[..]);
        match decoder.decode(&mut buf) {
            Ok(Some(_)) if buf.is_empty() => checked += 1,
            other => panic!("{}: {other:?}", r.name),
        }
    }
    assert!(checked >= 10, "only {checked} rows");
}

#[test]
fn a_decoder_that_rejects_disallowed_code_points_accepts_every_other_one() {
    let decoder = Decoder::new(V5).reject_disallowed_code_points(true);
    assert!(decoder.rejects_disallowed_code_points());
    for text in [
        "plain/ascii",
        "caf\u{e9}",
        "\u{a0}",
        "\u{7e}\u{a1}",
        "\u{fdcf}\u{fdf0}",
        "\u{feff}t",
        "\u{fffd}",
        "\u{1f600}",
        "\u{1fffd}",
        "\u{10fffd}",
    ] {
        let topic = text.as_bytes();
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic);
        body.push(0x00);
        let mut publish = vec![0x30, body.len() as u8];
        publish.extend(body);
        let mut buf = BytesMut::from(&publish[..]);
        assert!(
            matches!(decoder.decode(&mut buf), Ok(Some(_))),
            "topic {text:?}"
        );
        let mut buf = BytesMut::from(&subscribe_v5(text, 0)[..]);
        assert!(
            matches!(decoder.decode(&mut buf), Ok(Some(_))),
            "filter {text:?}"
        );
    }
}

#[test]
fn every_error_maps_to_exactly_one_reason_code() {
    // The mapping is an exhaustive match in `Error::reason_code`; spot-check the categories.
    assert_eq!(Error::Truncated.reason_code(), ReasonCode::MalformedPacket);
    assert_eq!(Error::ZeroPacketId.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(
        Error::PacketTooLarge { size: 2, max: 1 }.reason_code(),
        ReasonCode::PacketTooLarge
    );
    assert_eq!(
        Error::UnsupportedProtocolLevel(9).reason_code(),
        ReasonCode::UnsupportedProtocolVersion
    );
}

#[test]
fn error_messages_carry_their_normative_id() {
    for (e, id) in [
        (Error::InvalidQoS, "[MQTT-3.3.1-4]"),
        (Error::NullCharacter, "[MQTT-1.5.4-2]"),
        (Error::ConnectReservedFlag, "[MQTT-3.1.2-3]"),
        (Error::SubscriptionOptionsReserved, "[MQTT-3.8.3-5]"),
        (
            Error::InvalidTopicName(TopicError::Wildcard),
            "[MQTT-4.7.0-1]",
        ),
    ] {
        assert!(e.to_string().contains(id), "{e} lacks {id}");
    }
}
