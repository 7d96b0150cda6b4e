//! Handling errors (§4.13) and how a connection ends: the DISCONNECT a client that is still
//! sending must be able to read, the end of a client's input arriving with its last packet,
//! acknowledgements of the wrong type, a CONNACK the client's Maximum Packet Size cannot
//! take, and the Disallowed Unicode code points of §1.5.4, which the broker treats as
//! malformed (§5.4.9) unless configured otherwise.

use std::num::NonZeroU32;

use mqtt5_codec::{DisconnectReason, PingReq, PubAck, PubComp, PubRec, PubRel, QoS, Will};

use super::s1_connect::{lp, raw_connect, raw_publish};
use super::*;

// ---- Helpers ----------------------------------------------------------------------------------

/// PUBLISH packets, encoded for MQTT 5 back to back, as one write.
fn burst(packets: &[Publish]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        Packet::from(p.clone()).encode(ProtocolVersion::V5, &mut out);
    }
    out.to_vec()
}

/// QoS 2 PUBLISH packets with packet ids `1..=n`.
fn qos2_publishes(topic_name: &str, n: u16) -> Vec<Publish> {
    (1..=n)
        .map(|id| publish(topic_name, b"q2", QoS::ExactlyOnce, id))
        .collect()
}

/// A PUBLISH of `len` payload bytes, encoded for MQTT 5.
fn big_publish(topic_name: &str, len: usize) -> Vec<u8> {
    let p = Publish::new(topic(topic_name), Bytes::from(vec![b'x'; len]));
    let mut out = BytesMut::new();
    Packet::from(p).encode(ProtocolVersion::V5, &mut out);
    out.to_vec()
}

/// A raw MQTT 5 SUBSCRIBE (packet id 1, QoS 0) of the raw filter bytes.
fn raw_subscribe(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend_from_slice(&lp(filter));
    body.push(0x00);
    frame(0x82, &body)
}

/// A raw MQTT 5 UNSUBSCRIBE (packet id 1) of the raw filter bytes.
fn raw_unsubscribe(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend_from_slice(&lp(filter));
    frame(0xa2, &body)
}

/// A persistent session (expiry 300 s) with Clean Start `clean`.
fn session(client_id: &str, clean: bool) -> Connect {
    connect_session(client_id, clean, 300)
}

/// A CONNECT with a QoS 0 Will Message of `payload` to `topic_name`.
fn with_will(client_id: &str, topic_name: &str, payload: &'static [u8]) -> Connect {
    let mut c = connect(client_id);
    c.will = Some(Will {
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
    });
    c
}

/// A CONNECT announcing this Maximum Packet Size.
fn with_max_packet_size(client_id: &str, max: u32) -> Connect {
    let mut c = connect(client_id);
    c.properties.maximum_packet_size = NonZeroU32::new(max);
    c
}

/// A check: a PUBREC for packet id `id` with reason `reason`.
fn pubrec_is(id: u16, reason: u8) -> impl Fn(&Packet) -> Result<(), String> + Send {
    move |p| match p {
        Packet::PubRec(r) if r.packet_id.get() == id && r.reason.as_u8() == reason => Ok(()),
        _ => Err("another packet".to_owned()),
    }
}

/// A check: a PUBLISH with packet id `id`, QoS `qos` and DUP `dup`, whatever else.
fn publish_is(id: u16, qos: QoS, dup: bool) -> impl Fn(&Packet) -> Result<(), String> + Send {
    move |p| match p {
        Packet::Publish(p)
            if p.delivery.packet_id().map(PacketId::get) == Some(id)
                && p.delivery.qos() == qos
                && p.dup == dup =>
        {
            Ok(())
        }
        _ => Err("another packet".to_owned()),
    }
}

/// Script steps of this section.
trait ErrorSteps {
    /// Waits for the broker's FIN on `conn` without reading (see [`Script::await_fin`]), then
    /// makes a PINGREQ round trip on `other`: the broker's event loop has then moved past the
    /// round in which it shut `conn` down, so whatever `conn` sends next reaches a broker that
    /// is done with it (one that closed the socket at once answers with a reset).
    fn closed_by_broker(self, conn: usize, other: usize) -> Self;
    /// Connection `sub` resumes (or starts) the persistent session `client_id` subscribed to
    /// `t` at `qos`, connection `pub_conn` publishes one message to it at `qos`, and `sub`
    /// receives it as PUBLISH id 1.
    fn delivered(self, sub: usize, pub_conn: usize, client_id: &str, t: &str, qos: QoS) -> Self;
}

impl ErrorSteps for Script {
    fn closed_by_broker(self, conn: usize, other: usize) -> Self {
        self.await_fin(conn).ping(other)
    }

    fn delivered(self, sub: usize, pub_conn: usize, client_id: &str, t: &str, qos: QoS) -> Self {
        let s = self
            .connect_with(sub, session(client_id, true))
            .subscribe(sub, 1, t, qos)
            .connect(pub_conn, &format!("{client_id}-pub"))
            .send(pub_conn, publish(t, b"m", qos, 1));
        let s = match qos {
            QoS::ExactlyOnce => s
                .expect_that(pub_conn, "PUBREC 1", pubrec_is(1, 0x00))
                .send(pub_conn, PubRel::new(pid(1)))
                .expect_reason(pub_conn, PacketType::PubComp, 0x00),
            _ => s.expect_reason(pub_conn, PacketType::PubAck, 0x00),
        };
        s.expect_that(sub, "PUBLISH id 1", publish_is(1, qos, false))
    }
}

// ---- Cases ------------------------------------------------------------------------------------

pub(super) const CASES: &[Case] = &[
    // ---- The DISCONNECT a client that is still sending must see ----
    // [MQTT-4.13.2-1] A client sends Receive Maximum + 1 unacknowledged QoS 2 PUBLISH packets
    // back to back without reading; the broker answers the extra one with DISCONNECT 0x93 and
    // closes. The client only then reads its PUBRECs and sends a PUBREL for each: those
    // sends must not fail (the broker reads and drops them while it closes, rather than
    // resetting the connection), and the DISCONNECT must still reach the client.
    Case::new(
        "error_disconnect_0x93_reaches_a_client_still_sending",
        &["MQTT-4.13.2-1"],
        |s| {
            s.connect(1, "e-rmax-other")
                .connect(0, "e-rmax")
                .send_bytes(
                    0,
                    burst(&qos2_publishes("e/rmax", 4)),
                    "4 QoS 2 PUBLISH, ids 1 to 4",
                )
                .closed_by_broker(0, 1)
                .expect_that(0, "PUBREC 1", pubrec_is(1, 0x10))
                .send(0, PubRel::new(pid(1)))
                .expect_that(0, "PUBREC 2", pubrec_is(2, 0x10))
                .send(0, PubRel::new(pid(2)))
                .expect_that(0, "PUBREC 3", pubrec_is(3, 0x10))
                .send(0, PubRel::new(pid(3)))
                .expect_disconnect(0, DisconnectReason::ReceiveMaximumExceeded)
        },
    )
    .config("[broker]\nreceive_maximum = 3\n"),
    // [MQTT-4.13.2-1] A client writes a PUBLISH larger than the broker's Maximum Packet Size;
    // the broker refuses it from its fixed header (DISCONNECT 0x95) while the client is still
    // writing the rest of it. The rest is read and dropped, and the DISCONNECT reaches the
    // client.
    Case::new(
        "error_disconnect_0x95_reaches_a_client_still_sending",
        &["MQTT-4.13.2-1"],
        |s| {
            let big = big_publish("e/big", 300);
            s.connect(1, "e-big-other")
                .connect(0, "e-big")
                .send_bytes(
                    0,
                    big[..16].to_vec(),
                    "the first 16 bytes of a large PUBLISH",
                )
                .closed_by_broker(0, 1)
                .send_bytes(0, big[16..100].to_vec(), "more of it")
                .send_bytes(0, big[100..200].to_vec(), "more of it")
                .send_bytes(0, big[200..].to_vec(), "the rest of it")
                .expect_disconnect(0, DisconnectReason::PacketTooLarge)
        },
    )
    .config("[broker]\nmax_packet_size = 64\n"),
    // [MQTT-4.13.1-1] A protocol error (a second CONNECT, [MQTT-3.1.0-2]) from a client that
    // goes on publishing: DISCONNECT 0x82 reaches it, its later packets are dropped, and the
    // connection closes.
    Case::new(
        "error_disconnect_0x82_reaches_a_client_still_sending",
        &["MQTT-4.13.1-1", "MQTT-3.1.0-2"],
        |s| {
            s.connect(1, "e-proto-other")
                .connect(0, "e-proto")
                .send(0, connect("e-proto"))
                .closed_by_broker(0, 1)
                .send(0, publish("e/proto", b"1", QoS::AtMostOnce, 0))
                .send(0, publish("e/proto", b"2", QoS::AtMostOnce, 0))
                .send(0, publish("e/proto", b"3", QoS::AtMostOnce, 0))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.13.1-1] The same over WebSocket: the broker's DISCONNECT and its Close frame
    // reach a client that goes on sending binary frames.
    Case::new(
        "error_disconnect_reaches_a_websocket_client_still_sending",
        &["MQTT-4.13.1-1"],
        |s| {
            s.open_with(1, ProtocolVersion::V5, Transport::WebSocket("mqtt"))
                .send(1, connect("e-ws-other"))
                .expect_connack(1, ConnAckReason::Success)
                .open_with(0, ProtocolVersion::V5, Transport::WebSocket("mqtt"))
                .send(0, connect("e-ws"))
                .expect_connack(0, ConnAckReason::Success)
                .send(0, connect("e-ws"))
                .closed_by_broker(0, 1)
                .send(0, publish("e/ws", b"1", QoS::AtMostOnce, 0))
                .send(0, publish("e/ws", b"2", QoS::AtMostOnce, 0))
                .send(0, publish("e/ws", b"3", QoS::AtMostOnce, 0))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    )
    .config("[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\n"),
    // [MQTT-3.1.2-8] A client whose last packet (PINGREQ) and FIN arrive in one TCP segment:
    // the broker answers the packet, sees the end of the input, closes the connection and
    // publishes the will.
    Case::new(
        "error_fin_with_the_last_packet_ends_the_connection",
        &["MQTT-3.1.2-8"],
        |s| {
            s.connect(0, "e-fin-sub")
                .subscribe(0, 1, "e/fin/will", QoS::AtMostOnce)
                .connect_with(1, with_will("e-fin", "e/fin/will", b"gone"))
                .send_with_fin(1, PingReq)
                .expect_hex(1, "d0 00")
                .expect_closed(1)
                .expect(0, publish("e/fin/will", b"gone", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.1.2-8], [MQTT-4.3.2-4] The same with a QoS 1 PUBLISH for a persistent session as
    // the last packet: its PUBACK, which waits for the message to be stored, still reaches the
    // half-closed client before the close, then the will follows the message.
    Case::new(
        "error_fin_with_a_qos_1_publish_gets_its_puback",
        &["MQTT-3.1.2-8", "MQTT-4.3.2-4"],
        |s| {
            s.connect_with(0, session("e-fin1-sub", true))
                .subscribe(0, 1, "e/fin1/#", QoS::AtLeastOnce)
                .connect_with(1, with_will("e-fin1", "e/fin1/will", b"gone"))
                .send_with_fin(1, publish("e/fin1/m", b"last", QoS::AtLeastOnce, 7))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_closed(1)
                .expect_that(0, "PUBLISH id 1", publish_is(1, QoS::AtLeastOnce, false))
                .send(0, PubAck::new(pid(1)))
                .expect(0, publish("e/fin1/will", b"gone", QoS::AtMostOnce, 0))
        },
    ),
    // ---- A CONNACK the client cannot take ----
    // [MQTT-3.1.2-24] The Server MUST NOT send packets exceeding the client's Maximum Packet
    // Size. A CONNACK stripped of its optional properties is 5 bytes: a client with a
    // Maximum Packet Size of 5 gets exactly that; one with 2 cannot be answered and is closed
    // without a CONNACK, and the broker logs why.
    Case::new(
        "connack_over_the_client_maximum_packet_size_is_not_sent",
        &["MQTT-3.1.2-24"],
        |s| {
            s.open(0)
                .send(0, with_max_packet_size("e-mps5", 5))
                .expect_hex(0, "20 03 00 00 00")
                .open(1)
                .send(1, with_max_packet_size("e-mps2", 2))
                .expect_closed(1)
                .expect_log("exceeds the client's Maximum Packet Size")
        },
    ),
    // [MQTT-3.1.2-24] An Assigned Client Identifier cannot be left out of the CONNACK: with a
    // Maximum Packet Size too small for it, the client is closed without a CONNACK.
    Case::new(
        "connack_with_assigned_id_over_the_client_maximum_packet_size_is_not_sent",
        &["MQTT-3.1.2-24"],
        |s| {
            s.open(0)
                .send(0, with_max_packet_size("", 12))
                .expect_closed(0)
                .expect_log("exceeds the client's Maximum Packet Size")
        },
    ),
    // ---- Acknowledgements of the wrong type ----
    // [MQTT-4.13.1-1] A PUBREC for a message in flight at QoS 1 is a Protocol Error
    // (DISCONNECT 0x82), not an unknown packet id (which would get PUBREL 0x92).
    Case::new(
        "qos_1_pubrec_is_a_protocol_error",
        &["MQTT-4.13.1-1"],
        |s| {
            s.delivered(0, 1, "e-q1rec", "e/q1rec", QoS::AtLeastOnce)
                .send(0, PubRec::new(pid(1)))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.13.1-1] ... and so is a PUBCOMP for it.
    Case::new(
        "qos_1_pubcomp_is_a_protocol_error",
        &["MQTT-4.13.1-1"],
        |s| {
            s.delivered(0, 1, "e-q1comp", "e/q1comp", QoS::AtLeastOnce)
                .send(0, PubComp::new(pid(1)))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.13.1-1], [MQTT-4.3.3-3] A PUBACK for a QoS 2 PUBLISH is a Protocol Error, and
    // it acknowledges nothing: the PUBLISH stays unacknowledged until its PUBREC, so the
    // resumed session gets it again (DUP 1).
    Case::new(
        "qos_2_puback_is_a_protocol_error_and_acknowledges_nothing",
        &["MQTT-4.13.1-1", "MQTT-4.3.3-3"],
        |s| {
            s.delivered(0, 1, "e-q2ack", "e/q2ack", QoS::ExactlyOnce)
                .send(0, PubAck::new(pid(1)))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
                .open(2)
                .send(2, session("e-q2ack", false))
                .expect_reason(2, PacketType::ConnAck, 0x00)
                .expect_that(
                    2,
                    "PUBLISH id 1, DUP",
                    publish_is(1, QoS::ExactlyOnce, true),
                )
        },
    ),
    // [MQTT-4.13.1-1] A PUBCOMP for a QoS 2 PUBLISH that has not been released (no PUBREC,
    // no PUBREL yet) is a Protocol Error.
    Case::new(
        "qos_2_pubcomp_before_pubrel_is_a_protocol_error",
        &["MQTT-4.13.1-1"],
        |s| {
            s.delivered(0, 1, "e-q2comp", "e/q2comp", QoS::ExactlyOnce)
                .send(0, PubComp::new(pid(1)))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.13.1-1], [MQTT-4.3.3-5] Once the broker has sent PUBREL, only PUBCOMP answers
    // it: a PUBREC (again) is a Protocol Error, and so is a PUBACK; the PUBREL stays
    // unacknowledged and is sent again on each resume.
    Case::new(
        "qos_2_puback_or_pubrec_awaiting_pubcomp_is_a_protocol_error",
        &["MQTT-4.13.1-1", "MQTT-4.3.3-5"],
        |s| {
            s.delivered(0, 1, "e-q2rel", "e/q2rel", QoS::ExactlyOnce)
                .send(0, PubRec::new(pid(1)))
                .expect(0, PubRel::new(pid(1)))
                .send(0, PubRec::new(pid(1)))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
                .open(2)
                .send(2, session("e-q2rel", false))
                .expect_reason(2, PacketType::ConnAck, 0x00)
                .expect(2, PubRel::new(pid(1)))
                .send(2, PubAck::new(pid(1)))
                .expect_disconnect(2, DisconnectReason::ProtocolError)
                .open(3)
                .send(3, session("e-q2rel", false))
                .expect_reason(3, PacketType::ConnAck, 0x00)
                .expect(3, PubRel::new(pid(1)))
                .send(3, PubComp::new(pid(1)))
                .ping(3)
        },
    ),
    // ---- Disallowed Unicode code points (§1.5.4, §5.4.9) ----
    // §1.5.4 A receiver MAY treat the Disallowed Unicode code points as malformed; the broker
    // does, and closes ([MQTT-4.13.1-1]) with DISCONNECT 0x81: a C0 control character
    // (U+0001) in a topic name...
    Case::new(
        "utf8_control_character_in_topic_is_malformed",
        &["§1.5.4", "MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "e-cp1")
                .send_bytes(0, raw_publish(b"a\x01b", &[], b"x"), "PUBLISH to a\\u{1}b")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §1.5.4 ... DEL (U+007F), an ASCII byte too...
    Case::new(
        "utf8_delete_in_topic_is_malformed",
        &["§1.5.4", "MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "e-cp7f")
                .send_bytes(0, raw_publish(b"a\x7f", &[], b"x"), "PUBLISH to a\\u{7F}")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §1.5.4 ... a C1 control character (U+0085, two bytes)...
    Case::new(
        "utf8_c1_control_in_topic_is_malformed",
        &["§1.5.4", "MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "e-cp85")
                .send_bytes(
                    0,
                    raw_publish(b"a\xc2\x85b", &[], b"x"),
                    "PUBLISH to a\\u{85}b",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §1.5.4 ... a non-character (U+FFFF) in a SUBSCRIBE's topic filter...
    Case::new(
        "utf8_noncharacter_in_topic_filter_is_malformed",
        &["§1.5.4", "MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "e-cpffff")
                .send_bytes(
                    0,
                    raw_subscribe(b"a/\xef\xbf\xbf"),
                    "SUBSCRIBE to a/\\u{FFFF}",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §1.5.4 ... one of U+FDD0..U+FDEF in an UNSUBSCRIBE's topic filter...
    Case::new(
        "utf8_noncharacter_in_unsubscribe_filter_is_malformed",
        &["§1.5.4", "MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "e-cpfdd0")
                .send_bytes(0, raw_unsubscribe(b"\xef\xb7\x90"), "UNSUBSCRIBE \\u{FDD0}")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §1.5.4 ... and in a CONNECT ([MQTT-3.1.4-1]: the Server closes without CONNACK): a
    // control character in the Client Identifier...
    Case::new(
        "utf8_control_character_in_client_id_closes",
        &["§1.5.4", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x02, &[&lp(b"c\x1b")]),
                    "CONNECT id c\\u{1B}",
                )
                .expect_closed(0)
        },
    ),
    // §1.5.4 ... in the User Name...
    Case::new(
        "utf8_control_character_in_user_name_closes",
        &["§1.5.4", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x82, &[&lp(b"c-user"), &lp(b"al\x07ice")]),
                    "CONNECT, user name al\\u{7}ice",
                )
                .expect_closed(0)
        },
    ),
    // §1.5.4 ... and a non-character of a supplementary plane (U+1FFFE) in the Will Topic.
    Case::new(
        "utf8_noncharacter_in_will_topic_closes",
        &["§1.5.4", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(
                        0x06,
                        &[&lp(b"c-will"), &[0], &lp(b"w\xf0\x9f\xbf\xbe"), &lp(b"x")],
                    ),
                    "CONNECT, will topic w\\u{1FFFE}",
                )
                .expect_closed(0)
        },
    ),
    // §1.5.4 With `[broker] allow_disallowed_code_points`, for deployments with devices that
    // send them, they are accepted: a client identifier with U+007F connects, and a message
    // to a topic with U+0001 and U+FFFF reaches the subscriber of that topic.
    Case::new(
        "utf8_disallowed_code_points_accepted_when_allowed",
        &["§1.5.4"],
        |s| {
            s.connect(0, "e-cp-\u{7f}")
                .subscribe(0, 1, "e/\u{1}/\u{ffff}", QoS::AtMostOnce)
                .connect(1, "e-cp-pub")
                .send(
                    1,
                    publish("e/\u{1}/\u{ffff}", b"legacy", QoS::AtMostOnce, 0),
                )
                .expect(
                    0,
                    publish("e/\u{1}/\u{ffff}", b"legacy", QoS::AtMostOnce, 0),
                )
        },
    )
    .config("[broker]\nallow_disallowed_code_points = true\n"),
];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[];
