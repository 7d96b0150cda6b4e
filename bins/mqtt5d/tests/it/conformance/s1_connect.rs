//! Data representation (§1.5), the packet format (§2) and CONNECT (§3.1).

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::{Arc, Mutex};

use mqtt5_codec::{
    DisconnectReason, PubAck, PubAckReason, PubComp, PubRec, PubRecReason, PubRel, QoS,
    Unsubscribe, UserProperty, Will, WillProperties,
};

use super::*;

// ---- Raw packets ------------------------------------------------------------------------------

/// A length-prefixed string (or binary data) of raw bytes.
pub(super) fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len())
        .expect("a short field")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A raw MQTT 5 CONNECT: protocol name `name`, level `level`, connect flags `flags`,
/// keep-alive 60, no properties, then the payload fields as given (already encoded).
fn raw_connect_with(name: &[u8], level: u8, flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = lp(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x3c, 0x00]);
    for field in payload {
        body.extend_from_slice(field);
    }
    frame(0x10, &body)
}

/// A raw MQTT 5 CONNECT with connect flags `flags` and these payload fields.
pub(super) fn raw_connect(flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    raw_connect_with(b"MQTT", 5, flags, payload)
}

/// A raw QoS 0 PUBLISH (MQTT 5) of `payload` to the raw topic bytes, with raw properties.
pub(super) fn raw_publish(topic_name: &[u8], props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = lp(topic_name);
    body.push(u8::try_from(props.len()).expect("short properties"));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

// ---- Packet builders ----------------------------------------------------------------------------

/// A Will Message of `payload` to `topic_name`.
fn will(topic_name: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Will {
    Will {
        qos,
        retain,
        properties: WillProperties::default(),
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
    }
}

/// A CONNECT carrying `w` as its Will Message.
fn connect_will(client_id: &str, w: Will) -> Connect {
    let mut c = connect(client_id);
    c.will = Some(w);
    c
}

/// Script steps of this section.
trait ConnectSteps {
    /// The next packet on `conn` must be a PUBLISH of `payload` to `topic_name` at `qos`
    /// with RETAIN `retain` (any packet id and properties).
    fn got_publish(
        self,
        conn: usize,
        topic_name: &'static str,
        payload: &'static [u8],
        qos: QoS,
        retain: bool,
    ) -> Self;
    /// The next packet on `conn` must be a CONNACK 0x00 with this Session Present flag.
    fn got_connack(self, conn: usize, session_present: bool) -> Self;
}

impl ConnectSteps for Script {
    fn got_publish(
        self,
        conn: usize,
        topic_name: &'static str,
        payload: &'static [u8],
        qos: QoS,
        retain: bool,
    ) -> Self {
        self.expect_that(
            conn,
            &format!("PUBLISH {topic_name:?} {payload:?} {qos:?} retain={retain}"),
            move |p| match p {
                Packet::Publish(p)
                    if p.topic() == topic_name
                        && p.payload() == payload
                        && p.delivery.qos() == qos
                        && p.retain == retain =>
                {
                    Ok(())
                }
                _ => Err("another packet".to_owned()),
            },
        )
    }

    fn got_connack(self, conn: usize, session_present: bool) -> Self {
        self.expect_that(
            conn,
            &format!("CONNACK 0x00 session present {session_present}"),
            move |p| match p {
                Packet::ConnAck(a)
                    if a.reason.as_u8() == 0 && a.session_present == session_present =>
                {
                    Ok(())
                }
                _ => Err("another packet".to_owned()),
            },
        )
    }
}

/// A check that a PUBLISH carries no Topic Alias, and its full topic.
fn no_alias(topic_name: &'static str) -> impl Fn(&Packet) -> Result<(), String> + Send {
    move |p| match p {
        Packet::Publish(p) if p.topic() == topic_name && p.properties.topic_alias.is_none() => {
            Ok(())
        }
        _ => Err("another packet".to_owned()),
    }
}

/// A check that a packet is a PUBLISH with this topic (as sent) and Topic Alias.
fn with_alias(
    topic_name: &'static str,
    alias: Option<u16>,
) -> impl Fn(&Packet) -> Result<(), String> + Send {
    move |p| match p {
        Packet::Publish(p)
            if p.topic() == topic_name
                && p.properties.topic_alias.map(NonZeroU16::get) == alias =>
        {
            Ok(())
        }
        _ => Err("another packet".to_owned()),
    }
}

// ---- The cases --------------------------------------------------------------------------------

pub(super) const CASES: &[Case] = &[
    // ---- §1.5 Data representation ----
    // [MQTT-1.5.4-1] A UTF-8 string MUST NOT encode a surrogate (U+D800..U+DFFF): Malformed.
    Case::new(
        "utf8_surrogate_in_topic_is_malformed",
        &["MQTT-1.5.4-1"],
        |s| {
            s.connect(0, "u1")
                .send_bytes(
                    0,
                    raw_publish(b"a\xed\xa0\x80", &[], b"x"),
                    "PUBLISH to a\\u{D800}",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-1.5.4-1] ... in the CONNECT's Client Identifier too: the Server closes.
    Case::new(
        "utf8_surrogate_in_client_id_closes",
        &["MQTT-1.5.4-1", "MQTT-3.1.3-4", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x02, &[&lp(b"c\xed\xb0\x80")]), "CONNECT")
                .expect_closed(0)
        },
    ),
    // [MQTT-1.5.4-1] Well-formed UTF-8 (RFC 3629) has no overlong encodings: "/" as C0 AF in
    // a topic is Malformed.
    Case::new(
        "utf8_overlong_encoding_is_malformed",
        &["MQTT-1.5.4-1"],
        |s| {
            s.connect(0, "u8")
                .send_bytes(
                    0,
                    raw_publish(b"a\xc0\xafb", &[], b"x"),
                    "PUBLISH to a C0 AF b",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-1.5.4-2] A UTF-8 string MUST NOT include U+0000: Malformed.
    Case::new("utf8_null_in_topic_is_malformed", &["MQTT-1.5.4-2"], |s| {
        s.connect(0, "u2")
            .send_bytes(0, raw_publish(b"a\x00b", &[], b"x"), "PUBLISH to a\\0b")
            .expect_disconnect(0, DisconnectReason::MalformedPacket)
    }),
    // [MQTT-1.5.4-3] EF BB BF is U+FEFF and MUST NOT be skipped or stripped by the receiver:
    // "\u{FEFF}t" is another topic than "t", and is forwarded with the BOM.
    Case::new("utf8_bom_is_not_stripped", &["MQTT-1.5.4-3"], |s| {
        s.connect(0, "u3")
            .subscribe(0, 1, "\u{FEFF}t", QoS::AtMostOnce)
            .send(0, publish("t", b"plain", QoS::AtMostOnce, 0))
            .send(0, publish("\u{FEFF}t", b"bom", QoS::AtMostOnce, 0))
            .got_publish(0, "\u{FEFF}t", b"bom", QoS::AtMostOnce, false)
            .expect_quiet(0, 300)
    }),
    // [MQTT-1.5.5-1] A Variable Byte Integer MUST use the fewest bytes: PINGREQ with Remaining
    // Length 0 written as 80 00 is Malformed.
    Case::new(
        "format_varint_not_minimal_is_malformed",
        &["MQTT-1.5.5-1"],
        |s| {
            s.connect(0, "u4")
                .send_hex(0, "c0 80 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-1.5.5-1] ... in a property length as well: PUBLISH properties length 0 as 80 00.
    Case::new(
        "format_varint_property_length_not_minimal_is_malformed",
        &["MQTT-1.5.5-1"],
        |s| {
            s.connect(0, "u5")
                .send_hex(0, "30 06 00 01 74 80 00 78")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-1.5.7-1] Both strings of a UTF-8 String Pair MUST be valid UTF-8 strings: a User
    // Property whose value holds U+0000 is Malformed.
    Case::new(
        "utf8_string_pair_with_null_is_malformed",
        &["MQTT-1.5.7-1", "MQTT-1.5.4-2"],
        |s| {
            s.connect(0, "u6")
                .send_hex(0, "30 0c 00 01 74 07 26 00 01 6b 00 01 00 78")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-1.5.7-1] ... and a User Property name that is not UTF-8 (a lone surrogate).
    Case::new(
        "utf8_string_pair_name_with_surrogate_is_malformed",
        &["MQTT-1.5.7-1", "MQTT-1.5.4-1"],
        |s| {
            s.connect(0, "u7")
                .send_hex(0, "30 0e 00 01 74 09 26 00 03 ed bf bf 00 01 76 78")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // ---- §2 Packet format ----
    // [MQTT-2.1.3-1] Reserved flag bits MUST be as listed: PINGREQ with flags 0001 is Malformed.
    Case::new(
        "format_pingreq_reserved_flags_are_malformed",
        &["MQTT-2.1.3-1"],
        |s| {
            s.connect(0, "f1")
                .send_hex(0, "c1 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-2.1.3-1] SUBSCRIBE must have flags 0010: 0000 is Malformed.
    Case::new(
        "format_subscribe_reserved_flags_are_malformed",
        &["MQTT-2.1.3-1"],
        |s| {
            s.connect(0, "f2")
                .send_hex(0, "80 07 00 01 00 00 01 74 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-2.1.3-1] A CONNECT with flags 0001 is Malformed: the Server closes without CONNACK.
    Case::new(
        "format_connect_reserved_flags_close",
        &["MQTT-2.1.3-1", "MQTT-3.1.4-1"],
        |s| {
            let mut bytes = raw_connect(0x02, &[&lp(b"f3")]);
            bytes[0] = 0x11;
            s.open(0)
                .send_bytes(0, bytes, "CONNECT with flags 0001")
                .expect_closed(0)
        },
    ),
    // [MQTT-2.2.1-2] A QoS 0 PUBLISH has no Packet Identifier; [MQTT-2.2.2-1] no properties
    // are a Property Length of 0: the exact bytes of the SUBACK and of the QoS 0 delivery.
    Case::new(
        "format_qos0_publish_has_no_packet_id",
        &["MQTT-2.2.1-2", "MQTT-2.2.2-1"],
        |s| {
            s.connect(0, "f4")
                .send(0, subscribe(1, "t", QoS::AtMostOnce))
                .expect_hex(0, "90 04 00 01 00 00")
                .send(0, publish("t", b"hi", QoS::AtMostOnce, 0))
                .expect_hex(0, "30 06 00 01 74 00 68 69")
        },
    ),
    // [MQTT-4.13.1-1] A client's QoS > 0 PUBLISH needs a non-zero Packet Identifier
    // ([MQTT-2.2.1-3] binds the Client): 0 is a Protocol Error, and the Server closes the
    // connection after DISCONNECT 0x82.
    Case::new(
        "format_publish_packet_id_zero_is_an_error",
        &["MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "f5")
                .send_hex(0, "32 06 00 01 74 00 00 00")
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.13.1-1] ... and so does a SUBSCRIBE.
    Case::new(
        "format_subscribe_packet_id_zero_is_an_error",
        &["MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "f6")
                .send_hex(0, "82 07 00 00 00 00 01 74 00")
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-2.2.1-4] Each new QoS > 0 PUBLISH from the Server has a non-zero Packet Identifier
    // that is not in use: two unacknowledged deliveries have different ones.
    Case::new(
        "format_server_packet_ids_are_unused",
        &["MQTT-2.2.1-4"],
        |s| {
            let first = Arc::new(Mutex::new(None::<u16>));
            let seen = Arc::clone(&first);
            s.connect(0, "f7sub")
                .subscribe(0, 1, "t", QoS::AtLeastOnce)
                .connect(1, "f7pub")
                .send(1, publish("t", b"1", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .send(1, publish("t", b"2", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0)
                .expect_that(0, "QoS 1 PUBLISH with a packet id", move |p| match p {
                    Packet::Publish(p) => {
                        let id = p.delivery.packet_id().ok_or("no packet id")?.get();
                        *first.lock().expect("lock") = Some(id);
                        Ok(())
                    }
                    _ => Err("not a PUBLISH".to_owned()),
                })
                .expect_that(
                    0,
                    "QoS 1 PUBLISH with another packet id",
                    move |p| match p {
                        Packet::Publish(p) => {
                            let id = p.delivery.packet_id().ok_or("no packet id")?.get();
                            if Some(id) == *seen.lock().expect("lock") {
                                return Err(format!("packet id {id} is still in use"));
                            }
                            Ok(())
                        }
                        _ => Err("not a PUBLISH".to_owned()),
                    },
                )
        },
    ),
    // [MQTT-2.2.1-5] PUBACK, PUBREC, PUBREL and PUBCOMP carry the Packet Identifier of the
    // PUBLISH (here with reason 0x10, No matching subscribers).
    Case::new("format_acks_echo_packet_id", &["MQTT-2.2.1-5"], |s| {
        s.connect(0, "f8")
            .send(0, publish("t", b"1", QoS::AtLeastOnce, 7))
            .expect(
                0,
                PubAck {
                    reason: PubAckReason::NoMatchingSubscribers,
                    ..PubAck::new(pid(7))
                },
            )
            .send(0, publish("t", b"2", QoS::ExactlyOnce, 0x1234))
            .expect(
                0,
                PubRec {
                    reason: PubRecReason::NoMatchingSubscribers,
                    ..PubRec::new(pid(0x1234))
                },
            )
            .send(0, PubRel::new(pid(0x1234)))
            .expect(0, PubComp::new(pid(0x1234)))
    }),
    // [MQTT-2.2.1-6] SUBACK and UNSUBACK carry the Packet Identifier of the SUBSCRIBE and
    // UNSUBSCRIBE; [MQTT-2.2.2-1] with a Property Length of 0.
    Case::new(
        "format_suback_unsuback_echo_packet_id",
        &["MQTT-2.2.1-6", "MQTT-2.2.2-1"],
        |s| {
            s.connect(0, "f9")
                .send(0, subscribe(0xbeef, "t", QoS::AtLeastOnce))
                .expect_hex(0, "90 04 be ef 00 01")
                .send(
                    0,
                    Unsubscribe {
                        packet_id: pid(0x4321),
                        properties: Default::default(),
                        filters: vec![TopicFilter::try_from("t").expect("a filter")],
                    },
                )
                .expect_hex(0, "b0 04 43 21 00 00")
        },
    ),
    // ---- §3.1 CONNECT ----
    // [MQTT-4.13.1-1] The first packet MUST be CONNECT ([MQTT-3.1.0-1] binds the Client): a
    // PINGREQ first is a Protocol Error, and the Server closes the connection.
    Case::new(
        "connect_pingreq_before_connect_closes",
        &["MQTT-4.13.1-1"],
        |s| s.open(0).send_hex(0, "c0 00").expect_closed(0),
    ),
    // [MQTT-4.13.1-1] ... and a PUBLISH first is closed on and not processed.
    Case::new(
        "connect_publish_before_connect_closes",
        &["MQTT-4.13.1-1"],
        |s| {
            s.open(0)
                .send(0, publish("t", b"x", QoS::AtMostOnce, 0).with_retain())
                .expect_closed(0)
                .connect(1, "c0-1")
                .subscribe(1, 1, "t", QoS::AtMostOnce)
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.1.0-2] A second CONNECT is a Protocol Error: DISCONNECT 0x82 and close.
    Case::new(
        "connect_second_connect_is_a_protocol_error",
        &["MQTT-3.1.0-2"],
        |s| {
            s.connect(0, "c3.1.0-2")
                .send(0, connect("c3.1.0-2"))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
                .expect_log("protocol")
        },
    ),
    // [MQTT-3.1.2-1] The protocol name MUST be "MQTT": "MQTX" is closed on.
    Case::new(
        "connect_wrong_protocol_name_closes",
        &["MQTT-3.1.2-1", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect_with(b"MQTX", 5, 0x02, &[&lp(b"c1")]),
                    "CONNECT MQTX",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-2] An unsupported Protocol Version MAY get CONNACK 0x84 and MUST be closed:
    // level 6 gets the CONNACK in the 3.1.1 form (return code 1), readable by every version.
    Case::new(
        "connect_unsupported_protocol_version",
        &["MQTT-3.1.2-2"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect_with(b"MQTT", 6, 0x02, &[&lp(b"c2")]),
                    "CONNECT level 6",
                )
                .expect_hex(0, "20 02 00 01")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-3] The reserved Connect Flag MUST be 0: set, the CONNECT is Malformed.
    Case::new(
        "connect_reserved_connect_flag_closes",
        &["MQTT-3.1.2-3", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x03, &[&lp(b"c3")]), "CONNECT flags 03")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-4] Clean Start 1 discards the existing Session: no Session Present, and its
    // subscription is gone ([MQTT-3.1.4-4]: the Server performs Clean Start).
    Case::new(
        "connect_clean_start_discards_session",
        &["MQTT-3.1.2-4", "MQTT-3.1.4-4"],
        |s| {
            s.open(0)
                .send(0, connect_session("c4", false, 300))
                .got_connack(0, false)
                .subscribe(0, 1, "t", QoS::AtLeastOnce)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .open(1)
                .send(1, connect_session("c4", true, 300))
                .got_connack(1, false)
                .send(1, publish("t", b"x", QoS::AtLeastOnce, 1))
                // 0x10: No matching subscribers.
                .expect_reason(1, PacketType::PubAck, 0x10)
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.1.2-5] Clean Start 0 with a Session resumes it: Session Present, and what was
    // queued while away is delivered ([MQTT-3.1.2-23]: the Session State outlived the
    // connection; [MQTT-3.1.3-2]: the Client Identifier names it).
    Case::new(
        "connect_clean_start_0_resumes_session",
        &[
            "MQTT-3.1.2-5",
            "MQTT-3.1.2-23",
            "MQTT-3.1.3-2",
            "MQTT-3.1.4-4",
        ],
        |s| {
            s.open(0)
                .send(0, connect_session("c5", false, 300))
                .got_connack(0, false)
                .subscribe(0, 1, "t", QoS::AtLeastOnce)
                .hangup(0)
                .connect(1, "c5pub")
                .send(1, publish("t", b"queued", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .open(2)
                .send(2, connect_session("c5other", false, 300))
                .got_connack(2, false)
                .expect_quiet(2, 200)
                .open(3)
                .send(3, connect_session("c5", false, 300))
                .got_connack(3, true)
                .got_publish(3, "t", b"queued", QoS::AtLeastOnce, false)
        },
    ),
    // [MQTT-3.1.2-6] Clean Start 0 without a Session creates one: no Session Present the first
    // time, Session Present on the next connection.
    Case::new(
        "connect_clean_start_0_creates_session",
        &["MQTT-3.1.2-6", "MQTT-3.1.2-23"],
        |s| {
            s.open(0)
                .send(0, connect_session("c6", false, 300))
                .got_connack(0, false)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .open(1)
                .send(1, connect_session("c6", false, 300))
                .got_connack(1, true)
        },
    ),
    // [MQTT-3.1.2-7] A Will is stored with the Session; [MQTT-3.1.2-8] published when the
    // connection closes without DISCONNECT; [MQTT-3.1.2-14] Will Retain 0: not retained.
    Case::new(
        "connect_will_published_on_abnormal_close",
        &[
            "MQTT-3.1.2-7",
            "MQTT-3.1.2-8",
            "MQTT-3.1.2-14",
            "MQTT-3.1.4-5",
        ],
        |s| {
            s.connect(0, "c7sub")
                .subscribe(0, 1, "will/c7", QoS::AtMostOnce)
                .connect_with(
                    1,
                    connect_will("c7", will("will/c7", b"bye", QoS::AtMostOnce, false)),
                )
                .hangup(1)
                .got_publish(0, "will/c7", b"bye", QoS::AtMostOnce, false)
                .connect(2, "c7late")
                .subscribe(2, 1, "will/c7", QoS::AtMostOnce)
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-3.1.2-8], [MQTT-3.1.2-10] DISCONNECT 0x00 deletes the Will: nothing is published.
    Case::new(
        "connect_will_not_published_after_normal_disconnect",
        &["MQTT-3.1.2-8", "MQTT-3.1.2-10"],
        |s| {
            s.connect(0, "c8sub")
                .subscribe(0, 1, "will/c8", QoS::AtMostOnce)
                .connect_with(
                    1,
                    connect_will("c8", will("will/c8", b"bye", QoS::AtMostOnce, false)),
                )
                .send(1, normal_disconnect())
                .expect_closed(1)
                .expect_quiet(0, 500)
        },
    ),
    // [MQTT-3.1.2-10] Once published, the Will is removed from the Session State: it is not
    // published again when the broker restarts with the session still stored.
    Case::new(
        "connect_will_published_only_once",
        &["MQTT-3.1.2-10"],
        |s| {
            let mut c = connect_will("c9", will("will/c9", b"bye", QoS::AtMostOnce, false));
            c.properties.session_expiry_interval = Some(300);
            s.open(0)
                .send(0, connect_session("c9sub", false, 300))
                .got_connack(0, false)
                .subscribe(0, 1, "will/c9", QoS::AtMostOnce)
                .connect_with(1, c)
                .hangup(1)
                .got_publish(0, "will/c9", b"bye", QoS::AtMostOnce, false)
                .restart()
                .open(2)
                .send(2, connect_session("c9sub", false, 300))
                .got_connack(2, true)
                .expect_quiet(2, 500)
        },
    ),
    // [MQTT-3.1.2-9] With the Will Flag, Will Properties, Topic and Payload MUST be present:
    // a CONNECT without them is Malformed.
    Case::new(
        "connect_will_flag_without_will_closes",
        &["MQTT-3.1.2-9", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x06, &[&lp(b"c10")]),
                    "CONNECT will, no will",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-11] Without the Will Flag, Will QoS MUST be 0: Will QoS 1 is Malformed.
    Case::new(
        "connect_will_qos_without_will_flag_closes",
        &["MQTT-3.1.2-11"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x0a, &[&lp(b"c11")]), "CONNECT flags 0a")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-12] Will QoS can be 0, 1 or 2: 3 is Malformed.
    Case::new("connect_will_qos_3_closes", &["MQTT-3.1.2-12"], |s| {
        s.open(0)
            .send_bytes(
                0,
                raw_connect(0x1e, &[&lp(b"c12"), &[0], &lp(b"w"), &lp(b"x")]),
                "CONNECT will QoS 3",
            )
            .expect_closed(0)
    }),
    // [MQTT-3.1.2-12] ... and 2 is accepted: the Will goes out at QoS 2.
    Case::new("connect_will_qos_2_is_accepted", &["MQTT-3.1.2-12"], |s| {
        s.connect(0, "c13sub")
            .subscribe(0, 1, "will/c13", QoS::ExactlyOnce)
            .connect_with(
                1,
                connect_will("c13", will("will/c13", b"bye", QoS::ExactlyOnce, false)),
            )
            .hangup(1)
            .got_publish(0, "will/c13", b"bye", QoS::ExactlyOnce, false)
    }),
    // [MQTT-3.1.2-13] Without the Will Flag, Will Retain MUST be 0: set, Malformed.
    Case::new(
        "connect_will_retain_without_will_flag_closes",
        &["MQTT-3.1.2-13"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x22, &[&lp(b"c14")]), "CONNECT flags 22")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-15] Will Retain 1: the Will is published retained; a later subscriber gets it.
    Case::new("connect_will_retain_is_retained", &["MQTT-3.1.2-15"], |s| {
        s.connect(0, "c15sub")
            .subscribe(0, 1, "will/c15", QoS::AtMostOnce)
            .connect_with(
                1,
                connect_will("c15", will("will/c15", b"bye", QoS::AtMostOnce, true)),
            )
            .hangup(1)
            // Retain As Published is 0: the live copy goes out with RETAIN 0.
            .got_publish(0, "will/c15", b"bye", QoS::AtMostOnce, false)
            .connect(2, "c15late")
            .subscribe(2, 1, "will/c15", QoS::AtMostOnce)
            .got_publish(2, "will/c15", b"bye", QoS::AtMostOnce, true)
    }),
    // [MQTT-3.1.2-16] User Name Flag 0: no User Name in the payload. One there is trailing
    // garbage: Malformed.
    Case::new(
        "connect_user_name_without_flag_closes",
        &["MQTT-3.1.2-16", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x02, &[&lp(b"c16"), &lp(b"alice")]),
                    "CONNECT, user name without its flag",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-17] User Name Flag 1: a User Name MUST be present; missing, Malformed.
    Case::new(
        "connect_user_name_flag_without_user_name_closes",
        &["MQTT-3.1.2-17"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x82, &[&lp(b"c17")]), "CONNECT flags 82")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-18] Password Flag 0: no Password in the payload; one there is Malformed.
    Case::new(
        "connect_password_without_flag_closes",
        &["MQTT-3.1.2-18"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x82, &[&lp(b"c18"), &lp(b"alice"), &lp(b"secret")]),
                    "CONNECT, password without its flag",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-19] Password Flag 1: a Password MUST be present; missing, Malformed.
    Case::new(
        "connect_password_flag_without_password_closes",
        &["MQTT-3.1.2-19"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0xc2, &[&lp(b"c19"), &lp(b"alice")]),
                    "CONNECT flags c2, no password",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-18], [MQTT-3.1.2-19] In MQTT 5 a Password without a User Name is allowed.
    Case::new(
        "connect_password_without_user_name_is_allowed",
        &["MQTT-3.1.2-19", "MQTT-3.1.4-5"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x42, &[&lp(b"c20"), &lp(b"token")]),
                    "CONNECT, password only",
                )
                .expect_reason(0, PacketType::ConnAck, 0)
        },
    ),
    // [MQTT-3.12.4-1] Each PINGREQ gets its PINGRESP, and they keep an otherwise idle
    // connection open ([MQTT-3.1.2-20] binds the Client): with keep-alive 3 s, a PINGREQ
    // after each 1.5 s of quiet keeps it open past the 4.5 s after which silence would close
    // it. Each gap leaves 3 s of room for a slow test thread.
    Case::new(
        "connect_pingreq_keeps_connection_alive",
        &["MQTT-3.12.4-1"],
        |s| {
            let mut c = connect("c21");
            c.keep_alive = 3;
            s.connect_with(0, c)
                .expect_quiet(0, 1500)
                .ping(0)
                .expect_quiet(0, 1500)
                .ping(0)
                .expect_quiet(0, 1500)
                .ping(0)
                .expect_quiet(0, 1500)
                .ping(0)
        },
    ),
    // [MQTT-3.1.2-22] with a Server Keep Alive in CONNACK ([MQTT-3.1.2-21] binds the Client
    // to use it): the Server enforces the 3 s it returned, not the 60 s asked for. Not at
    // once (1.5 s of quiet, with 3 s of room before the 4.5 s timeout).
    Case::new(
        "connect_server_keep_alive_applies",
        &["MQTT-3.1.2-22"],
        |s| {
            s.open(0)
                .send(0, connect("c22"))
                .expect_that(0, "CONNACK 0x00 with Server Keep Alive 3", |p| match p {
                    Packet::ConnAck(a)
                        if a.reason.as_u8() == 0 && a.properties.server_keep_alive == Some(3) =>
                    {
                        Ok(())
                    }
                    _ => Err("another packet".to_owned()),
                })
                .expect_quiet(0, 1500)
                .expect_disconnect(0, DisconnectReason::KeepAliveTimeout)
        },
    )
    .config("[broker]\nmax_keep_alive_secs = 3\n"),
    // [MQTT-3.1.2-22] Nothing within 1.5 x Keep Alive: the Server closes the connection
    // (DISCONNECT 0x8D Keep Alive timeout first). Not at once: nothing for the first 1.5 s of
    // the 4.5 s (keep-alive 3 s), which leaves 3 s of room for a slow test thread; how soon
    // after 4.5 s it closes is not asserted (the wait is bounded by the step limit only).
    Case::new(
        "connect_keep_alive_timeout_closes",
        &["MQTT-3.1.2-22"],
        |s| {
            let mut c = connect("c23");
            c.keep_alive = 3;
            s.connect_with(0, c)
                .expect_quiet(0, 1500)
                .expect_disconnect(0, DisconnectReason::KeepAliveTimeout)
        },
    ),
    // [MQTT-3.1.2-24] The Server MUST NOT send a packet above the client's Maximum Packet Size;
    // [MQTT-3.1.2-25] it discards it and behaves as if sent: with Receive Maximum 1, the next
    // QoS 1 message still goes out.
    Case::new(
        "connect_maximum_packet_size_is_respected",
        &["MQTT-3.1.2-24", "MQTT-3.1.2-25"],
        |s| {
            let mut c = connect("c24");
            c.properties.maximum_packet_size = NonZeroU32::new(64);
            c.properties.receive_maximum = NonZeroU16::new(1);
            s.connect_with(0, c)
                .subscribe(0, 1, "t", QoS::AtLeastOnce)
                .connect(1, "c24pub")
                .send(1, publish("t", &[b'x'; 100], QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .send(1, publish("t", b"small", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0)
                .got_publish(0, "t", b"small", QoS::AtLeastOnce, false)
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.1.2-26] No Topic Alias above the client's Topic Alias Maximum (here 1): the
    // second topic goes out in full. [MQTT-3.3.2-8] The alias the Server sends is 1, never 0.
    Case::new(
        "connect_topic_alias_within_maximum",
        &["MQTT-3.1.2-26", "MQTT-3.3.2-8"],
        |s| {
            let mut c = connect("c25");
            c.properties.topic_alias_maximum = Some(1);
            s.connect_with(0, c)
                .subscribe(0, 1, "a/#", QoS::AtMostOnce)
                .send(0, publish("a/1", b"1", QoS::AtMostOnce, 0))
                .send(0, publish("a/2", b"2", QoS::AtMostOnce, 0))
                .send(0, publish("a/1", b"3", QoS::AtMostOnce, 0))
                .expect_that(0, "a/1 with alias 1", with_alias("a/1", Some(1)))
                .expect_that(0, "a/2 without alias", with_alias("a/2", None))
                .expect_that(0, "alias 1 alone", with_alias("", Some(1)))
        },
    ),
    // [MQTT-3.1.2-27] No Topic Alias Maximum: the Server sends no Topic Alias.
    Case::new(
        "connect_no_topic_alias_without_maximum",
        &["MQTT-3.1.2-27"],
        |s| {
            s.connect(0, "c26")
                .subscribe(0, 1, "a", QoS::AtMostOnce)
                .send(0, publish("a", b"1", QoS::AtMostOnce, 0))
                .send(0, publish("a", b"2", QoS::AtMostOnce, 0))
                .expect_that(0, "a without alias", no_alias("a"))
                .expect_that(0, "a without alias", no_alias("a"))
        },
    ),
    // [MQTT-3.1.2-28] Request Response Information 0: no Response Information in CONNACK.
    Case::new(
        "connect_no_response_information_unless_requested",
        &["MQTT-3.1.2-28"],
        |s| {
            let mut c = connect("c27");
            c.properties.request_response_information = Some(false);
            s.open(0)
                .send(0, c)
                .expect_that(
                    0,
                    "CONNACK 0x00 without Response Information",
                    |p| match p {
                        Packet::ConnAck(a)
                            if a.reason.as_u8() == 0
                                && a.properties.response_information.is_none() =>
                        {
                            Ok(())
                        }
                        _ => Err("another packet".to_owned()),
                    },
                )
        },
    ),
    // [MQTT-3.1.2-29] Request Problem Information 0: no Reason String or User Property on a
    // SUBACK (a refused shared subscription) or PUBACK (no matching subscribers).
    Case::new(
        "connect_no_problem_information_unless_requested",
        &["MQTT-3.1.2-29"],
        |s| {
            let mut c = connect("c28");
            c.properties.request_problem_information = Some(false);
            s.connect_with(0, c)
                .send(0, subscribe(1, "$share/g/t", QoS::AtMostOnce))
                .expect_that(0, "SUBACK 0x9E, no problem information", |p| match p {
                    Packet::SubAck(a)
                        if a.reasons.len() == 1
                            && a.reasons[0].as_u8() == 0x9e
                            && a.properties.reason_string.is_none()
                            && a.properties.user_properties.is_empty() =>
                    {
                        Ok(())
                    }
                    _ => Err("another packet".to_owned()),
                })
                .send(0, publish("nobody", b"x", QoS::AtLeastOnce, 2))
                .expect_that(0, "PUBACK 0x10, no problem information", |p| match p {
                    Packet::PubAck(a)
                        if a.reason.as_u8() == 0x10
                            && a.properties.reason_string.is_none()
                            && a.properties.user_properties.is_empty() =>
                    {
                        Ok(())
                    }
                    _ => Err("another packet".to_owned()),
                })
        },
    )
    .config("[broker]\nshared_subscriptions = false\n"),
    // [MQTT-3.1.4-6] A refused CONNECT (0x8C, the method is unknown) and the PUBLISH that
    // followed it unprocessed: its retained message is not stored. (A Client that sets an
    // Authentication Method sends nothing but AUTH or DISCONNECT before CONNACK,
    // [MQTT-3.1.2-30]; this one breaks that rule.)
    Case::new(
        "connect_auth_method_refused_and_following_publish_ignored",
        &["MQTT-3.1.4-6"],
        |s| {
            let mut c = connect("c29");
            c.properties.authentication_method = Some(MqttString::try_from("NOPE").expect("a"));
            let mut bytes = BytesMut::new();
            Packet::from(c).encode(ProtocolVersion::V5, &mut bytes);
            Packet::from(publish("t29", b"x", QoS::AtMostOnce, 0).with_retain())
                .encode(ProtocolVersion::V5, &mut bytes);
            s.open(0)
                .send_bytes(
                    0,
                    bytes.to_vec(),
                    "CONNECT (method NOPE) + retained PUBLISH",
                )
                .expect_connack(0, ConnAckReason::BadAuthenticationMethod)
                .expect_closed(0)
                .connect(1, "c29sub")
                .subscribe(1, 1, "t29", QoS::AtMostOnce)
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.1.3-1] Payload fields in order Client Identifier, Will Properties, Will Topic,
    // Will Payload, User Name, Password, in bytes written by hand (not by the codec under
    // test), each field distinct: the CONNECT is accepted only with User Name and Password
    // read from their places ([MQTT-3.1.2-17], [MQTT-3.1.2-19], [MQTT-3.1.3-12]), and the Will
    // published is the one from the Will Topic and Will Payload fields.
    Case::new(
        "connect_every_payload_field",
        &[
            "MQTT-3.1.3-1",
            "MQTT-3.1.2-9",
            "MQTT-3.1.2-17",
            "MQTT-3.1.2-19",
            "MQTT-3.1.3-12",
            "MQTT-3.1.4-5",
        ],
        |s| {
            let payload: [&[u8]; 6] = [
                &lp(b"c30"),
                // Will Properties: none.
                &[0x00],
                &lp(b"will/c30"),
                &lp(b"bye"),
                &lp(b"alice"),
                &lp(b"secret"),
            ];
            s.connect(0, "c30sub")
                .subscribe(0, 1, "will/c30", QoS::AtMostOnce)
                .open(1)
                .send_bytes(
                    1,
                    // Flags: User Name, Password, Will QoS 0, Will Flag, Clean Start.
                    raw_connect(0xC6, &payload),
                    "CONNECT with every payload field, by hand",
                )
                .expect_reason(1, PacketType::ConnAck, 0)
                .hangup(1)
                .got_publish(0, "will/c30", b"bye", QoS::AtMostOnce, false)
        },
    )
    .users(&[("alice", "secret")]),
    // [MQTT-3.1.3-3] The Client Identifier MUST be present: a CONNECT with no payload is
    // Malformed.
    Case::new(
        "connect_without_client_id_closes",
        &["MQTT-3.1.3-3", "MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x02, &[]), "CONNECT, no payload")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.4-1] A CONNECT whose Client Identifier runs past the end of the packet does
    // not match the format: closed.
    Case::new(
        "connect_truncated_client_id_closes",
        &["MQTT-3.1.4-1"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x02, &[&[0x00, 0x10, b'c']]),
                    "CONNECT, id cut short",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-4] The Client Identifier MUST be UTF-8: byte FF is not.
    Case::new(
        "connect_client_id_not_utf8_closes",
        &["MQTT-3.1.3-4"],
        |s| {
            s.open(0)
                .send_bytes(0, raw_connect(0x02, &[&lp(b"c\xff")]), "CONNECT id c\\xff")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-5] Client Identifiers of 1 to 23 of [0-9a-zA-Z] MUST be allowed.
    Case::new(
        "connect_client_id_1_to_23_alphanumerics_allowed",
        &["MQTT-3.1.3-5", "MQTT-3.1.4-5"],
        |s| {
            s.connect(0, "0123456789abcdefghijklm")
                .connect(1, "nopqrstuvwxyzABCDEFGHIJ")
                .connect(2, "KLMNOPQRSTUVWXYZ")
                .connect(3, "Z")
        },
    ),
    // [MQTT-3.1.3-6] A zero-length Client Identifier gets a unique one; [MQTT-3.1.3-7] it is
    // returned as Assigned Client Identifier and the CONNECT is processed as if it had been
    // sent: connecting with it takes that session over.
    Case::new(
        "connect_empty_client_id_is_assigned",
        &["MQTT-3.1.3-6", "MQTT-3.1.3-7"],
        |s| {
            let first = Arc::new(Mutex::new(String::new()));
            let seen = Arc::clone(&first);
            s.open(0)
                .send(0, connect(""))
                .expect_that(
                    0,
                    "CONNACK 0x00 with an Assigned Client Identifier",
                    move |p| match p {
                        Packet::ConnAck(a) if a.reason.as_u8() == 0 => {
                            let id = a
                                .properties
                                .assigned_client_identifier
                                .as_ref()
                                .ok_or("no Assigned Client Identifier")?;
                            if id.is_empty() {
                                return Err("an empty Assigned Client Identifier".to_owned());
                            }
                            *first.lock().expect("lock") = id.as_str().to_owned();
                            Ok(())
                        }
                        _ => Err("another packet".to_owned()),
                    },
                )
                .open(1)
                .send(1, connect(""))
                .expect_that(
                    1,
                    "CONNACK 0x00 with another identifier",
                    move |p| match p {
                        Packet::ConnAck(a) if a.reason.as_u8() == 0 => {
                            let id = a
                                .properties
                                .assigned_client_identifier
                                .as_ref()
                                .ok_or("no Assigned Client Identifier")?;
                            if id.is_empty() || id.as_str() == *seen.lock().expect("lock") {
                                return Err(format!("identifier {id:?} is not unique"));
                            }
                            Ok(())
                        }
                        _ => Err("another packet".to_owned()),
                    },
                )
                // Both are live connections, each with its own session.
                .subscribe(0, 1, "t31", QoS::AtMostOnce)
                .send(1, publish("t31", b"x", QoS::AtMostOnce, 0))
                .got_publish(0, "t31", b"x", QoS::AtMostOnce, false)
        },
    ),
    // [MQTT-3.1.3-8] A rejected Client Identifier MAY get CONNACK 0x85 and MUST be closed.
    // MQTT 5 accepts every identifier here; 3.1.1 rejects an empty one without Clean Session
    // (return code 2, Identifier rejected).
    Case::new(
        "connect_rejected_client_id_closes",
        &["MQTT-3.1.3-8"],
        |s| {
            let c = Connect {
                protocol: ProtocolVersion::V3_1_1,
                clean_start: false,
                keep_alive: 60,
                ..Connect::default()
            };
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, c)
                // Return code 2 reads as 0x85 (Client Identifier not valid).
                .expect_reason(0, PacketType::ConnAck, 0x85)
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-9] A new connection to the Session within the Will Delay Interval: the Will
    // is not sent.
    Case::new(
        "connect_will_delay_reconnect_suppresses_will",
        &["MQTT-3.1.3-9"],
        |s| {
            let mut c = connect_will("c32", will("will/c32", b"bye", QoS::AtMostOnce, false));
            c.properties.session_expiry_interval = Some(300);
            c.will
                .as_mut()
                .expect("a will")
                .properties
                .will_delay_interval = Some(3);
            s.connect(0, "c32sub")
                .subscribe(0, 1, "will/c32", QoS::AtMostOnce)
                .connect_with(1, c)
                .hangup(1)
                .open(2)
                .send(2, connect_session("c32", false, 300))
                .got_connack(2, true)
                .expect_quiet(0, 3500)
        },
    ),
    // [MQTT-3.1.2-8] With a Will Delay Interval, the Will goes out once it has elapsed, not
    // at once.
    Case::new("connect_will_delay_elapses", &["MQTT-3.1.2-8"], |s| {
        let mut c = connect_will("c33", will("will/c33", b"late", QoS::AtMostOnce, false));
        c.properties.session_expiry_interval = Some(300);
        c.will
            .as_mut()
            .expect("a will")
            .properties
            .will_delay_interval = Some(3);
        s.connect(0, "c33sub")
            .subscribe(0, 1, "will/c33", QoS::AtMostOnce)
            .connect_with(1, c)
            .hangup(1)
            .expect_quiet(0, 1000)
            .got_publish(0, "will/c33", b"late", QoS::AtMostOnce, false)
    }),
    // [MQTT-3.1.3-10] The Server MUST keep the order of User Properties when forwarding: the
    // Will's come out as they went in.
    Case::new(
        "connect_will_user_properties_keep_order",
        &["MQTT-3.1.3-10"],
        |s| {
            let mut w = will("will/c34", b"bye", QoS::AtMostOnce, false);
            w.properties.user_properties = vec![
                UserProperty::new("k", "2").expect("a"),
                UserProperty::new("a", "1").expect("a"),
                UserProperty::new("k", "1").expect("a"),
            ];
            s.connect(0, "c34sub")
                .subscribe(0, 1, "will/c34", QoS::AtMostOnce)
                .connect_with(1, connect_will("c34", w))
                .hangup(1)
                .expect_that(0, "the Will with k=2, a=1, k=1 in order", |p| match p {
                    Packet::Publish(p) if p.topic() == "will/c34" => {
                        let got: Vec<(&str, &str)> = p
                            .properties
                            .user_properties
                            .iter()
                            .map(|u| (u.name.as_str(), u.value.as_str()))
                            .collect();
                        if got == [("k", "2"), ("a", "1"), ("k", "1")] {
                            Ok(())
                        } else {
                            Err(format!("user properties {got:?}"))
                        }
                    }
                    _ => Err("another packet".to_owned()),
                })
        },
    ),
    // [MQTT-3.1.3-11] The Will Topic MUST be UTF-8: a surrogate in it is Malformed.
    Case::new(
        "connect_will_topic_not_utf8_closes",
        &["MQTT-3.1.3-11"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x06, &[&lp(b"c35"), &[0], &lp(b"w\xed\xa0\x80"), &lp(b"x")]),
                    "CONNECT, will topic w\\u{D800}",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-12] The User Name MUST be UTF-8: a null character in it is Malformed.
    Case::new(
        "connect_user_name_not_utf8_closes",
        &["MQTT-3.1.3-12"],
        |s| {
            s.open(0)
                .send_bytes(
                    0,
                    raw_connect(0x82, &[&lp(b"c36"), &lp(b"al\x00ice")]),
                    "CONNECT, user name al\\0ice",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.4-2] Failed authentication: the Server closes (after CONNACK 0x86 Bad User
    // Name or Password); [MQTT-3.1.4-6] the PUBLISH sent after the CONNECT is not processed.
    Case::new(
        "connect_bad_password_refused",
        &["MQTT-3.1.4-2", "MQTT-3.1.4-6"],
        |s| {
            let mut c = connect("c37");
            c.username = Some(MqttString::try_from("alice").expect("a"));
            c.password = Some(Bytes::from_static(b"wrong"));
            let mut bytes = BytesMut::new();
            Packet::from(c).encode(ProtocolVersion::V5, &mut bytes);
            Packet::from(publish("t37", b"x", QoS::AtMostOnce, 0).with_retain())
                .encode(ProtocolVersion::V5, &mut bytes);
            s.open(0)
                .send_bytes(
                    0,
                    bytes.to_vec(),
                    "CONNECT (bad password) + retained PUBLISH",
                )
                .expect_connack(0, ConnAckReason::BadUserNameOrPassword)
                .expect_closed(0)
                .connect(1, "c37sub")
                .subscribe(1, 1, "t37", QoS::AtMostOnce)
                .expect_quiet(1, 300)
        },
    )
    .users(&[("alice", "secret")]),
    // [MQTT-3.1.4-3] A CONNECT with the Client Identifier of a connected client: that client
    // gets DISCONNECT 0x8E (Session taken over) and is closed.
    Case::new(
        "connect_takeover_disconnects_existing",
        &["MQTT-3.1.4-3"],
        |s| {
            s.connect(0, "c38")
                .connect(1, "c38")
                .expect_disconnect(0, DisconnectReason::SessionTakenOver)
        },
    ),
    // [MQTT-3.1.2-8] A connection the Server closes for a protocol error ends without
    // DISCONNECT 0x00: the Will is published.
    Case::new(
        "connect_will_published_on_protocol_error",
        &["MQTT-3.1.2-8"],
        |s| {
            s.connect(0, "c39sub")
                .subscribe(0, 1, "will/c39", QoS::AtMostOnce)
                .connect_with(
                    1,
                    connect_will("c39", will("will/c39", b"bye", QoS::AtMostOnce, false)),
                )
                .send_hex(1, "c1 00")
                .expect_disconnect(1, DisconnectReason::MalformedPacket)
                .got_publish(0, "will/c39", b"bye", QoS::AtMostOnce, false)
        },
    ),
    // [MQTT-3.1.2-8] ... and so is one closed for a Keep Alive timeout ([MQTT-3.1.2-22]).
    Case::new(
        "connect_will_published_on_keep_alive_timeout",
        &["MQTT-3.1.2-8", "MQTT-3.1.2-22"],
        |s| {
            let mut c = connect_will("c40", will("will/c40", b"bye", QoS::AtMostOnce, false));
            c.keep_alive = 1;
            s.connect(0, "c40sub")
                .subscribe(0, 1, "will/c40", QoS::AtMostOnce)
                .connect_with(1, c)
                .expect_disconnect(1, DisconnectReason::KeepAliveTimeout)
                .got_publish(0, "will/c40", b"bye", QoS::AtMostOnce, false)
        },
    ),
    // [MQTT-3.1.2-8] The Will goes out when the Session ends, if that comes before the Will
    // Delay Interval: delay 60 s, Session Expiry 1 s.
    Case::new(
        "connect_will_published_when_session_ends_first",
        &["MQTT-3.1.2-8"],
        |s| {
            let mut c = connect_will("c41", will("will/c41", b"bye", QoS::AtMostOnce, false));
            c.properties.session_expiry_interval = Some(3);
            c.will
                .as_mut()
                .expect("a will")
                .properties
                .will_delay_interval = Some(60);
            s.connect(0, "c41sub")
                .subscribe(0, 1, "will/c41", QoS::AtMostOnce)
                .connect_with(1, c)
                .hangup(1)
                .expect_quiet(0, 1000)
                .got_publish(0, "will/c41", b"bye", QoS::AtMostOnce, false)
        },
    ),
    // [MQTT-3.1.2-7] The Will is stored on the Server with the Session: a broker restart
    // within the Will Delay Interval does not lose it.
    Case::new("connect_will_survives_restart", &["MQTT-3.1.2-7"], |s| {
        let mut c = connect_will("c42", will("will/c42", b"bye", QoS::AtLeastOnce, false));
        c.properties.session_expiry_interval = Some(300);
        c.will
            .as_mut()
            .expect("a will")
            .properties
            .will_delay_interval = Some(4);
        s.open(0)
            .send(0, connect_session("c42sub", false, 300))
            .got_connack(0, false)
            .subscribe(0, 1, "will/c42", QoS::AtLeastOnce)
            .connect_with(1, c)
            .hangup(1)
            .restart()
            .open(2)
            .send(2, connect_session("c42sub", false, 300))
            .got_connack(2, true)
            .got_publish(2, "will/c42", b"bye", QoS::AtLeastOnce, false)
    }),
    // [MQTT-3.1.2-23] Session Expiry > 0: the Session State is stored, even across a broker
    // restart; a QoS 1 message published meanwhile is delivered on resumption.
    Case::new(
        "connect_session_survives_restart",
        &["MQTT-3.1.2-23"],
        |s| {
            s.open(0)
                .send(0, connect_session("c43", false, 300))
                .got_connack(0, false)
                .subscribe(0, 1, "t43", QoS::AtLeastOnce)
                .hangup(0)
                .restart()
                .connect(1, "c43pub")
                .send(1, publish("t43", b"kept", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .open(2)
                .send(2, connect_session("c43", false, 300))
                .got_connack(2, true)
                .got_publish(2, "t43", b"kept", QoS::AtLeastOnce, false)
        },
    ),
    // [MQTT-4.1.0-2] With Session Expiry 0 (absent) the Session ends with the connection:
    // Clean Start 0 then finds none. (MQTT-3.1.2-23 asks the opposite case: keep it when the
    // interval is above 0.)
    Case::new(
        "connect_session_not_kept_without_expiry",
        &["MQTT-4.1.0-2"],
        |s| {
            let mut c = connect("c44");
            c.clean_start = false;
            s.open(0)
                .send(0, c.clone())
                .got_connack(0, false)
                .subscribe(0, 1, "t44", QoS::AtLeastOnce)
                .hangup(0)
                .open(1)
                .send(1, c)
                .got_connack(1, false)
        },
    ),
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25] A retained message above the client's Maximum Packet
    // Size is not sent on subscribe; a smaller one matching the same filter is.
    Case::new(
        "connect_maximum_packet_size_applies_to_retained",
        &["MQTT-3.1.2-24", "MQTT-3.1.2-25"],
        |s| {
            let mut c = connect("c45");
            c.properties.maximum_packet_size = NonZeroU32::new(64);
            s.connect(0, "c45pub")
                .send(
                    0,
                    publish("r/big", &[b'x'; 100], QoS::AtLeastOnce, 1).with_retain(),
                )
                .expect_reason(0, PacketType::PubAck, 0x10)
                .send(
                    0,
                    publish("r/small", b"s", QoS::AtLeastOnce, 2).with_retain(),
                )
                .expect_reason(0, PacketType::PubAck, 0x10)
                .connect_with(1, c)
                .subscribe(1, 1, "r/#", QoS::AtLeastOnce)
                .got_publish(1, "r/small", b"s", QoS::AtLeastOnce, true)
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.1.2-24] A queued message is checked against the Maximum Packet Size of the
    // connection it goes out on: after resuming with a smaller one, the big message is
    // dropped ([MQTT-3.1.2-25]) and the small one behind it still delivered.
    Case::new(
        "connect_maximum_packet_size_applies_to_queued",
        &["MQTT-3.1.2-24", "MQTT-3.1.2-25"],
        |s| {
            let mut again = connect_session("c47", false, 300);
            again.properties.maximum_packet_size = NonZeroU32::new(64);
            again.properties.receive_maximum = NonZeroU16::new(1);
            s.open(0)
                .send(0, connect_session("c47", false, 300))
                .got_connack(0, false)
                .subscribe(0, 1, "t47", QoS::AtLeastOnce)
                .hangup(0)
                .connect(1, "c47pub")
                .send(1, publish("t47", &[b'x'; 100], QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .send(1, publish("t47", b"small", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0)
                .open(2)
                .send(2, again)
                .got_connack(2, true)
                .got_publish(2, "t47", b"small", QoS::AtLeastOnce, false)
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-3.1.2-24] ... and so are CONNACK and DISCONNECT: with a Maximum Packet Size of 16
    // both fit (optional properties and Reason Strings are left out).
    Case::new(
        "connect_maximum_packet_size_applies_to_connack_and_disconnect",
        &["MQTT-3.1.2-24"],
        |s| {
            let mut c = connect("c48");
            c.properties.maximum_packet_size = NonZeroU32::new(16);
            let fits = |what: PacketType, code: u8| {
                move |p: &Packet| {
                    let len = p.encoded_len(ProtocolVersion::V5);
                    if p.packet_type() != what || reason_of(p) != Some(code) {
                        Err("another packet".to_owned())
                    } else if len > 16 {
                        Err(format!("{len} bytes"))
                    } else {
                        Ok(())
                    }
                }
            };
            s.open(0)
                .send(0, c)
                .expect_that(
                    0,
                    "CONNACK 0x00 of at most 16 bytes",
                    fits(PacketType::ConnAck, 0),
                )
                .send(0, connect("c48"))
                .expect_that(
                    0,
                    "DISCONNECT 0x82 of at most 16 bytes",
                    fits(PacketType::Disconnect, 0x82),
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-4.13.1-1] An AUTH as the first packet is closed on too.
    Case::new(
        "connect_auth_before_connect_closes",
        &["MQTT-4.13.1-1"],
        |s| s.open(0).send_hex(0, "f0 00").expect_closed(0),
    ),
    // [MQTT-3.1.2-4] Clean Start 1 from a new connection while the old one is still up: the
    // old one is taken over ([MQTT-3.1.4-3]) and the Session is new (no Session Present).
    Case::new(
        "connect_clean_start_takeover_discards_session",
        &["MQTT-3.1.2-4", "MQTT-3.1.4-3"],
        |s| {
            s.open(0)
                .send(0, connect_session("c46", false, 300))
                .got_connack(0, false)
                .subscribe(0, 1, "t46", QoS::AtLeastOnce)
                .open(1)
                .send(1, connect_session("c46", true, 300))
                .got_connack(1, false)
                .expect_disconnect(0, DisconnectReason::SessionTakenOver)
                .send(1, publish("t46", b"x", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x10)
        },
    ),
    // [MQTT-2.1.3-1] PUBREL must have flags 0010: 0000 is Malformed.
    Case::new(
        "format_pubrel_reserved_flags_are_malformed",
        &["MQTT-2.1.3-1"],
        |s| {
            s.connect(0, "f10")
                .send(0, publish("t", b"x", QoS::ExactlyOnce, 1))
                .expect_reason(0, PacketType::PubRec, 0x10)
                .send_hex(0, "60 02 00 01")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-2.1.3-1] UNSUBSCRIBE must have flags 0010: 0000 is Malformed.
    Case::new(
        "format_unsubscribe_reserved_flags_are_malformed",
        &["MQTT-2.1.3-1"],
        |s| {
            s.connect(0, "f11")
                .send_hex(0, "a0 06 00 01 00 00 01 74")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-1.5.5-1] A Variable Byte Integer has at most 4 bytes: a 5-byte Remaining Length
    // is Malformed.
    Case::new(
        "format_varint_five_bytes_is_malformed",
        &["MQTT-1.5.5-1"],
        |s| {
            s.connect(0, "f12")
                .send_hex(0, "30 80 80 80 80 01")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
];

/// A PUBLISH with RETAIN set.
trait WithRetain {
    fn with_retain(self) -> Self;
}

impl WithRetain for Publish {
    fn with_retain(mut self) -> Self {
        self.retain = true;
        self
    }
}

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[
    na(
        "MQTT-3.1.0-1",
        "binds the Client only: its first packet is CONNECT. The Server's reaction to another \
         first packet (close, nothing processed) is under MQTT-4.13.1-1: \
         `connect_pingreq_before_connect_closes`, `connect_publish_before_connect_closes`, \
         `connect_auth_before_connect_closes`",
    ),
    na(
        "MQTT-2.2.1-3",
        "binds the Client only: it assigns non-zero, unused Packet Identifiers. The Server's \
         reaction to a zero one (DISCONNECT 0x82, then close) is under MQTT-4.13.1-1: \
         `format_publish_packet_id_zero_is_an_error`, \
         `format_subscribe_packet_id_zero_is_an_error`",
    ),
    na(
        "MQTT-3.1.2-20",
        "binds the Client only: it sends PINGREQ when otherwise idle. The Server's side: it \
         answers each PINGREQ (MQTT-3.12.4-1, `connect_pingreq_keeps_connection_alive`) and \
         closes a connection silent for 1.5 times the Keep Alive (MQTT-3.1.2-22)",
    ),
    na(
        "MQTT-3.1.2-21",
        "binds the Client only: it uses the Server Keep Alive from CONNACK. The Server enforces \
         the value it returned under MQTT-3.1.2-22: `connect_server_keep_alive_applies`",
    ),
    na(
        "MQTT-3.1.2-30",
        "binds the Client only: with an Authentication Method it sends only AUTH or DISCONNECT \
         before CONNACK. A refused CONNECT leaves what follows it unprocessed (MQTT-3.1.4-6): \
         `connect_auth_method_refused_and_following_publish_ignored`",
    ),
];
