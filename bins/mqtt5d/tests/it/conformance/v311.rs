//! MQTT 3.1.1 (and 3.1) clients: the behaviours that differ from MQTT 5.0. CONNACK return
//! codes, Clean Session, and what a 3.1.1 client gets for fields that exist only in 5.0: a
//! close, since a 3.1.1 server never sends DISCONNECT. Tags are the 3.1.1 standard's own
//! statement ids (`3.1.1/MQTT-x.x.x-y`).

use mqtt5_codec::{PubAck, PubRec, PubRel, QoS, Will};

use super::*;

/// A 3.1.1 CONNECT for `client_id` with this CleanSession flag and keep-alive 60.
fn connect311(client_id: &str, clean_session: bool) -> Connect {
    Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: clean_session,
        client_id: MqttString::try_from(client_id).expect("a client identifier"),
        keep_alive: 60,
        ..Connect::default()
    }
}

/// A 3.1.1 CONNECT with a user name and password.
fn login311(client_id: &str, user: &str, password: &'static [u8]) -> Connect {
    let mut c = connect311(client_id, true);
    c.username = Some(MqttString::try_from(user).expect("a user name"));
    c.password = Some(Bytes::from_static(password));
    c
}

impl Script {
    /// Opens `conn` as MQTT 3.1.1 and sends `connect`; the CONNACK must be exactly `connack`
    /// (hex).
    fn connect_v311(self, conn: usize, connect: Connect, connack: &str) -> Self {
        self.open_with(conn, ProtocolVersion::V3_1_1, Transport::Tcp)
            .send(conn, connect)
            .expect_hex(conn, connack)
    }

    /// A 3.1.1 DISCONNECT on `conn`; the broker closes the connection.
    fn disconnect_v311(self, conn: usize) -> Self {
        self.send_hex(conn, "e0 00").expect_closed(conn)
    }
}

/// CONNACK, accepted, Session Present 0.
const ACCEPTED: &str = "20 02 00 00";
/// CONNACK, accepted, Session Present 1.
const RESUMED: &str = "20 02 01 00";

pub(super) const CASES: &[Case] = &[
    // [MQTT-3.2.2-1]: with CleanSession 1 the CONNACK has Session Present 0, and it is the
    // 2-byte 3.1.1 CONNACK (no properties).
    Case::new(
        "v311_connack_clean_session_1",
        &["3.1.1/MQTT-3.2.2-1"],
        |s| {
            s.connect_v311(0, connect311("v311-a", true), ACCEPTED)
                .send_hex(0, "c0 00")
                .expect_hex(0, "d0 00")
        },
    ),
    // [MQTT-3.2.2-3], [MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-3.2.2-2]: CleanSession 0 with no
    // stored session gets Session Present 0; the session outlives the connection (3.1.1 has
    // no expiry), keeps its subscription, stores the QoS 1 messages published meanwhile, and
    // a resume gets Session Present 1 and those messages, in order.
    Case::new(
        "v311_clean_session_0_resumes_session",
        &[
            "3.1.1/MQTT-3.2.2-3",
            "3.1.1/MQTT-3.1.2-4",
            "3.1.1/MQTT-3.1.2-5",
            "3.1.1/MQTT-3.2.2-2",
        ],
        |s| {
            s.connect_v311(0, connect311("v311-b", false), ACCEPTED)
                .subscribe(0, 1, "v311/b", QoS::AtLeastOnce)
                .disconnect_v311(0)
                .connect(1, "v311-bp")
                .send(1, publish("v311/b", b"1", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .send(1, publish("v311/b", b"2", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0)
                .connect_v311(2, connect311("v311-b", false), RESUMED)
                .expect(2, publish("v311/b", b"1", QoS::AtLeastOnce, 1))
                .expect(2, publish("v311/b", b"2", QoS::AtLeastOnce, 2))
                .send(2, PubAck::new(pid(1)))
                .send(2, PubAck::new(pid(2)))
                .send(1, publish("v311/b", b"3", QoS::AtLeastOnce, 3))
                .expect_reason(1, PacketType::PubAck, 0)
                .expect(2, publish("v311/b", b"3", QoS::AtLeastOnce, 3))
        },
    ),
    // [MQTT-3.1.2-6], [MQTT-3.2.2-1]: CleanSession 1 discards the stored session (its
    // subscription and queued message) and its own state ends with the connection.
    Case::new(
        "v311_clean_session_1_discards_session",
        &["3.1.1/MQTT-3.1.2-6", "3.1.1/MQTT-3.2.2-1"],
        |s| {
            s.connect_v311(0, connect311("v311-c", false), ACCEPTED)
                .subscribe(0, 1, "v311/c", QoS::AtLeastOnce)
                .disconnect_v311(0)
                .connect(1, "v311-cp")
                .send(1, publish("v311/c", b"queued", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .connect_v311(2, connect311("v311-c", true), ACCEPTED)
                .expect_quiet(2, 300)
                .send(1, publish("v311/c", b"after", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0x10)
                .subscribe(2, 1, "v311/c2", QoS::AtLeastOnce)
                .disconnect_v311(2)
                .connect_v311(3, connect311("v311-c", false), ACCEPTED)
                .send(1, publish("v311/c2", b"x", QoS::AtLeastOnce, 3))
                .expect_reason(1, PacketType::PubAck, 0x10)
                .expect_quiet(3, 300)
        },
    ),
    // [MQTT-4.4.0-1]: reconnecting with CleanSession 0, the Server re-sends the
    // unacknowledged PUBLISH (DUP 1) and PUBREL packets with their original packet ids.
    Case::new(
        "v311_unacked_resent_on_reconnect",
        &["3.1.1/MQTT-4.4.0-1"],
        |s| {
            let mut again = publish("v311/d/1", b"one", QoS::AtLeastOnce, 1);
            again.dup = true;
            s.connect_v311(0, connect311("v311-d", false), ACCEPTED)
                .subscribe(0, 1, "v311/d/#", QoS::ExactlyOnce)
                .connect(1, "v311-dp")
                .send(1, publish("v311/d/1", b"one", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .send(1, publish("v311/d/2", b"two", QoS::ExactlyOnce, 2))
                .expect_reason(1, PacketType::PubRec, 0)
                .expect(0, publish("v311/d/1", b"one", QoS::AtLeastOnce, 1))
                .expect(0, publish("v311/d/2", b"two", QoS::ExactlyOnce, 2))
                .send(0, PubRec::new(pid(2)))
                .expect_hex(0, "62 02 00 02")
                .hangup(0)
                .connect_v311(2, connect311("v311-d", false), RESUMED)
                .expect(2, again)
                .expect_hex(2, "62 02 00 02")
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01 (unacceptable protocol
    // level), then the connection is closed ([MQTT-3.2.2-4]: Session Present 0;
    // [MQTT-3.2.2-5]: close).
    Case::new(
        "v311_unacceptable_protocol_level",
        &[
            "3.1.1/MQTT-3.1.2-2",
            "3.1.1/MQTT-3.2.2-4",
            "3.1.1/MQTT-3.2.2-5",
        ],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send_hex(0, "10 0d 00 04 4d 51 54 54 06 02 00 3c 00 01 61")
                .expect_hex(0, "20 02 00 01")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-8]: a zero-byte ClientId with CleanSession 0 gets CONNACK 0x02 (identifier
    // rejected) and a close.
    Case::new(
        "v311_empty_client_id_clean_session_0_rejected",
        &[
            "3.1.1/MQTT-3.1.3-8",
            "3.1.1/MQTT-3.2.2-4",
            "3.1.1/MQTT-3.2.2-5",
        ],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, connect311("", false))
                .expect_hex(0, "20 02 00 02")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-6]: a zero-byte ClientId with CleanSession 1 is accepted with a plain
    // CONNACK (3.1.1 has no Assigned Client Identifier), and each such client gets its own
    // unique id: a second one does not take the first over.
    Case::new(
        "v311_empty_client_id_clean_session_1_accepted",
        &["3.1.1/MQTT-3.1.3-6"],
        |s| {
            s.connect_v311(0, connect311("", true), ACCEPTED)
                .connect_v311(1, connect311("", true), ACCEPTED)
                .send_hex(0, "c0 00")
                .expect_hex(0, "d0 00")
                .send_hex(1, "c0 00")
                .expect_hex(1, "d0 00")
        },
    ),
    // [MQTT-3.2.2-4], [MQTT-3.2.2-5]: a wrong password gets CONNACK 0x04 (bad user name or
    // password), Session Present 0, then a close; the right one is accepted.
    Case::new(
        "v311_bad_password_0x04",
        &["3.1.1/MQTT-3.2.2-4", "3.1.1/MQTT-3.2.2-5"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, login311("v311-e", "alice", b"wrong"))
                .expect_hex(0, "20 02 00 04")
                .expect_closed(0)
                .connect_v311(1, login311("v311-e", "alice", b"secret"), ACCEPTED)
        },
    )
    .config("[auth]\nallow_anonymous = false\n")
    .users(&[("alice", "secret")]),
    // [MQTT-3.2.2-4], [MQTT-3.2.2-5]: no user name where anonymous clients are refused:
    // CONNACK 0x05 (not authorized), then a close.
    Case::new(
        "v311_anonymous_refused_0x05",
        &["3.1.1/MQTT-3.2.2-4", "3.1.1/MQTT-3.2.2-5"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, connect311("v311-f", true))
                .expect_hex(0, "20 02 00 05")
                .expect_closed(0)
        },
    )
    .config("[auth]\nallow_anonymous = false\n")
    .users(&[("alice", "secret")]),
    // [MQTT-3.1.4-1]: a 3.1.1 CONNECT carrying a 5.0 property block does not conform to
    // §3.1: the Server closes the connection without a CONNACK (here the block holds a
    // Receive Maximum, read as a client id length past the end).
    Case::new(
        "v311_connect_with_properties_closed",
        &["3.1.1/MQTT-3.1.4-1"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send_hex(
                    0,
                    "10 11 00 04 4d 51 54 54 04 02 00 3c 03 21 00 0a 00 01 61",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.4-1]: the same with an empty property block (one 0x00 byte): the bytes left
    // over after the payload fields make the CONNECT non-conforming: close, no CONNACK.
    Case::new(
        "v311_connect_with_empty_properties_closed",
        &["3.1.1/MQTT-3.1.4-1"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send_hex(0, "10 0e 00 04 4d 51 54 54 04 02 00 3c 00 00 01 61")
                .expect_closed(0)
        },
    ),
    // [MQTT-4.8.0-1]: AUTH (type 15) is reserved in 3.1.1: a protocol violation, answered by
    // closing the connection (no DISCONNECT in 3.1.1).
    Case::new("v311_auth_packet_closed", &["3.1.1/MQTT-4.8.0-1"], |s| {
        s.connect_v311(0, connect311("v311-g", true), ACCEPTED)
            .send_hex(0, "f0 00")
            .expect_closed(0)
    }),
    // [MQTT-3-8.3-4]: the upper six bits of a 3.1.1 subscription's QoS byte are reserved (5.0
    // puts No Local, Retain As Published and Retain Handling there): non-zero is malformed,
    // and the Server closes the connection without a SUBACK.
    Case::new(
        "v311_subscribe_reserved_option_bits_closed",
        &["3.1.1/MQTT-3-8.3-4"],
        |s| {
            s.connect_v311(0, connect311("v311-h0", true), ACCEPTED)
                .send_hex(0, "82 08 00 01 00 03 61 2f 62 05")
                .expect_closed(0)
                .connect_v311(1, connect311("v311-h1", true), ACCEPTED)
                .send_hex(1, "82 08 00 01 00 03 61 2f 62 08")
                .expect_closed(1)
                .connect_v311(2, connect311("v311-h2", true), ACCEPTED)
                .send_hex(2, "82 08 00 01 00 03 61 2f 62 20")
                .expect_closed(2)
        },
    ),
    // [MQTT-4.8.0-1]: a PUBACK with a 5.0 reason code (remaining length 3) is malformed in
    // 3.1.1: the Server closes the connection.
    Case::new(
        "v311_puback_with_reason_code_closed",
        &["3.1.1/MQTT-4.8.0-1"],
        |s| {
            s.connect_v311(0, connect311("v311-i", true), ACCEPTED)
                .subscribe(0, 1, "v311/i", QoS::AtLeastOnce)
                .connect(1, "v311-ip")
                .send(1, publish("v311/i", b"x", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .expect(0, publish("v311/i", b"x", QoS::AtLeastOnce, 1))
                .send_hex(0, "40 03 00 01 00")
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.2-8], [MQTT-3.14.4-3]: a DISCONNECT with a 5.0 reason code is malformed in
    // 3.1.1, so it is no DISCONNECT: the connection is closed and the Will is published
    // (a well-formed DISCONNECT discards it).
    Case::new(
        "v311_disconnect_with_reason_code_publishes_will",
        &["3.1.1/MQTT-3.1.2-8", "3.1.1/MQTT-3.14.4-3"],
        |s| {
            let mut bad = connect311("v311-j", true);
            bad.will = Some(Will {
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
                topic: topic("v311/j/will"),
                payload: Bytes::from_static(b"gone"),
            });
            let mut good = bad.clone();
            good.client_id = MqttString::try_from("v311-j2").expect("id");
            s.connect(0, "v311-js")
                .subscribe(0, 1, "v311/j/will", QoS::AtMostOnce)
                .connect_v311(1, good, ACCEPTED)
                .disconnect_v311(1)
                .expect_quiet(0, 300)
                .connect_v311(2, bad, ACCEPTED)
                .send_hex(2, "e0 01 00")
                .expect_closed(2)
                .expect(0, publish("v311/j/will", b"gone", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.1.2-24]: past 1.5 times the Keep Alive without a packet, the Server closes
    // the connection "as if the network had failed": no DISCONNECT (5.0 sends 0x8D).
    Case::new(
        "v311_keep_alive_timeout_closes",
        &["3.1.1/MQTT-3.1.2-24"],
        |s| {
            let mut c = connect311("v311-k", true);
            c.keep_alive = 1;
            s.connect_v311(0, c, ACCEPTED).expect_closed(0)
        },
    ),
    // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: the Server closes the
    // connection (5.0 sends DISCONNECT 0x82 first).
    Case::new("v311_second_connect_closed", &["3.1.1/MQTT-3.1.0-2"], |s| {
        s.connect_v311(0, connect311("v311-l", true), ACCEPTED)
            .send(0, connect311("v311-l", true))
            .expect_closed(0)
    }),
    // [MQTT-3.9.3-2]: a refused subscription gets return code 0x80, the only failure code of
    // 3.1.1 (5.0 would say 0xA2 Wildcard Subscriptions not supported).
    Case::new(
        "v311_suback_failure_is_0x80",
        &["3.1.1/MQTT-3.9.3-2", "3.1.1/MQTT-3.8.4-5"],
        |s| {
            s.connect_v311(0, connect311("v311-m", true), ACCEPTED)
                .send_hex(0, "82 08 00 07 00 03 61 2f 23 01")
                .expect_hex(0, "90 03 00 07 80")
        },
    )
    .config("[broker]\nwildcard_subscriptions = false\n"),
    // [MQTT-3.8.4-6]: with Maximum QoS 1 a 3.1.1 subscription at QoS 2 is granted QoS 1 and
    // QoS 2 messages arrive at QoS 1; 3.1.1 has no Maximum QoS, so the 3.1.1 client's own
    // QoS 2 PUBLISH is accepted (PUBREC), not refused as in 5.0 (DISCONNECT 0x9B).
    Case::new(
        "v311_maximum_qos_downgrades",
        &["3.1.1/MQTT-3.8.4-6"],
        |s| {
            s.connect_v311(0, connect311("v311-n", true), ACCEPTED)
                .send_hex(0, "82 08 00 01 00 03 61 2f 6e 02")
                .expect_hex(0, "90 03 00 01 01")
                .connect_v311(1, connect311("v311-np", true), ACCEPTED)
                .send(1, publish("a/n", b"q2", QoS::ExactlyOnce, 9))
                .expect_hex(1, "50 02 00 09")
                .expect(0, publish("a/n", b"q2", QoS::AtLeastOnce, 1))
                .send(1, PubRel::new(pid(9)))
                .expect_hex(1, "70 02 00 09")
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // MQTT 3.1 ("MQIsdp", level 3) is a supported level ([MQTT-3.1.2-2] answers 0x01 only for
    // unsupported ones): accepted, then served like 3.1.1.
    Case::new(
        "v311_mqtt31_mqisdp_accepted",
        &["3.1.1/MQTT-3.1.2-2"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1, Transport::Tcp)
                .send_hex(
                    0,
                    "10 11 00 06 4d 51 49 73 64 70 03 02 00 3c 00 03 76 33 31",
                )
                .expect_hex(0, ACCEPTED)
                .send_hex(0, "82 08 00 01 00 03 61 2f 33 01")
                .expect_hex(0, "90 03 00 01 01")
                .send_hex(0, "c0 00")
                .expect_hex(0, "d0 00")
        },
    ),
    // [MQTT-3.1.2-3] binds 3.1.1 only: MQTT 3.1 left the reserved CONNECT flag unused
    // without requiring it to be 0, so a 3.1 CONNECT with it set is accepted, while the same
    // CONNECT in 3.1.1 is still closed without a CONNACK.
    Case::new(
        "v311_mqtt31_reserved_connect_flag_accepted",
        &["3.1.1/MQTT-3.1.2-3"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1, Transport::Tcp)
                .send_hex(
                    0,
                    "10 11 00 06 4d 51 49 73 64 70 03 03 00 3c 00 03 76 33 31",
                )
                .expect_hex(0, ACCEPTED)
                .send_hex(0, "c0 00")
                .expect_hex(0, "d0 00")
                .open_with(1, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send_hex(1, "10 0f 00 04 4d 51 54 54 04 03 00 3c 00 03 76 33 32")
                .expect_closed(1)
        },
    ),
    // [MQTT-4.8.0-1]: an acknowledgement of the wrong type (PUBREC for a QoS 1 PUBLISH) is a
    // protocol violation, which 3.1.1 answers with a close (5.0: DISCONNECT 0x82).
    Case::new(
        "v311_wrong_acknowledgement_type_closes",
        &["3.1.1/MQTT-4.8.0-1"],
        |s| {
            s.connect_v311(0, connect311("v311-wa", true), ACCEPTED)
                .send_hex(0, "82 09 00 01 00 04 76 2f 77 61 01")
                .expect_hex(0, "90 03 00 01 01")
                .connect_v311(1, connect311("v311-wap", true), ACCEPTED)
                .send(1, publish("v/wa", b"m", QoS::AtLeastOnce, 1))
                .expect_hex(1, "40 02 00 01")
                .expect(0, publish("v/wa", b"m", QoS::AtLeastOnce, 1))
                .send_hex(0, "50 02 00 01")
                .expect_closed(0)
        },
    ),
    // [MQTT-4.8.0-1], §1.5.4: 3.1.1 clients too are closed for a Disallowed Unicode code
    // point (U+0001) in a topic name.
    Case::new(
        "v311_disallowed_code_point_in_topic_closes",
        &["3.1.1/MQTT-4.8.0-1", "§1.5.4"],
        |s| {
            s.connect_v311(0, connect311("v311-cp", true), ACCEPTED)
                .send_hex(0, "32 07 00 02 61 01 00 01 78")
                .expect_closed(0)
        },
    ),
    // [MQTT-4.3.2-2], [MQTT-4.3.3-2]: a 3.1.1 receiver's acknowledgements carry only the
    // packet id: no 0x10 "no matching subscribers", and a denied publish ($SYS) is still
    // acknowledged plainly (5.0 answers 0x87) since 3.1.1 has no negative acknowledgement.
    Case::new(
        "v311_acks_carry_no_reason_code",
        &["3.1.1/MQTT-4.3.2-2", "3.1.1/MQTT-4.3.3-2"],
        |s| {
            s.connect_v311(0, connect311("v311-o", true), ACCEPTED)
                .send(0, publish("v311/o", b"nobody", QoS::AtLeastOnce, 5))
                .expect_hex(0, "40 02 00 05")
                .send(0, publish("$SYS/v311", b"denied", QoS::AtLeastOnce, 6))
                .expect_hex(0, "40 02 00 06")
                .send(0, publish("$SYS/v311", b"denied", QoS::ExactlyOnce, 7))
                .expect_hex(0, "50 02 00 07")
                .send(0, PubRel::new(pid(7)))
                .expect_hex(0, "70 02 00 07")
        },
    ),
    // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: the UNSUBACK carries the packet id and nothing else,
    // even when no filter was removed (5.0 adds a reason code per filter, 0x11 here).
    Case::new(
        "v311_unsuback_has_no_payload",
        &["3.1.1/MQTT-3.10.4-4", "3.1.1/MQTT-3.10.4-5"],
        |s| {
            s.connect_v311(0, connect311("v311-p", true), ACCEPTED)
                .send_hex(0, "a2 07 00 03 00 03 61 2f 70")
                .expect_hex(0, "b0 02 00 03")
        },
    ),
    // [MQTT-3.1.4-2]: a second connection with the same ClientId makes the Server disconnect
    // the existing one: a plain close (5.0 sends DISCONNECT 0x8E Session taken over first).
    Case::new(
        "v311_takeover_closes_old_connection",
        &["3.1.1/MQTT-3.1.4-2"],
        |s| {
            s.connect_v311(0, connect311("v311-q", true), ACCEPTED)
                .connect_v311(1, connect311("v311-q", true), ACCEPTED)
                .expect_closed(0)
                .send_hex(1, "c0 00")
                .expect_hex(1, "d0 00")
        },
    ),
    // [MQTT-3.1.2-22], [MQTT-3.1.4-1]: in 3.1.1 a password without a user name is not allowed
    // (5.0 allows it): the CONNECT does not conform, and the Server closes the connection
    // without a CONNACK.
    Case::new(
        "v311_password_without_user_name_closed",
        &["3.1.1/MQTT-3.1.2-22", "3.1.1/MQTT-3.1.4-1"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send_hex(
                    0,
                    "10 11 00 04 4d 51 54 54 04 42 00 3c 00 01 61 00 02 70 77",
                )
                .expect_closed(0)
        },
    ),
    // [MQTT-3.1.3-9] for MQTT 3.1: its client identifiers are 1 to 23 characters, so an
    // empty one and a 30-character one are rejected with CONNACK 0x02, then a close.
    Case::new(
        "v311_mqtt31_client_id_rejected",
        &["3.1.1/MQTT-3.1.3-9"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1, Transport::Tcp)
                .send_hex(0, "10 0e 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00")
                .expect_hex(0, "20 02 00 02")
                .expect_closed(0)
                .open_with(1, ProtocolVersion::V3_1, Transport::Tcp)
                .send_hex(
                    1,
                    "10 2c 00 06 4d 51 49 73 64 70 03 02 00 3c 00 1e \
                 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 \
                 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61",
                )
                .expect_hex(1, "20 02 00 02")
                .expect_closed(1)
        },
    ),
];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[];
