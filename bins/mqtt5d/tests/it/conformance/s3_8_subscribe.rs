//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (§3.8–3.11), topic names and filters (§4.7),
//! subscriptions and shared subscriptions (§4.8).

use mqtt5_codec::{
    Disconnect, PubAck, PubAckReason, PubComp, PubRec, PubRecReason, PubRel, SubAck, UnsubAck,
    Unsubscribe,
};

use super::*;

pub(super) const CASES: &[Case] = &[
    // ---- §3.8 SUBSCRIBE ------------------------------------------------------------------------
    // [MQTT-3.8.1-1] SUBSCRIBE fixed header flags must be 0010; anything else is malformed.
    Case::new(
        "subscribe_reserved_header_flags_are_malformed",
        &["MQTT-3.8.1-1"],
        |s| {
            s.connect(0, "sub-flags")
                .send_bytes(
                    0,
                    frame(0x80, &sub_body(1, &[(b"a/b", 0)])),
                    "SUBSCRIBE flags 0000",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.8.1-1] The same, with flags 0011.
    Case::new(
        "subscribe_header_flags_0011_are_malformed",
        &["MQTT-3.8.1-1"],
        |s| {
            s.connect(0, "sub-flags3")
                .send_bytes(
                    0,
                    frame(0x83, &sub_body(1, &[(b"a/b", 0)])),
                    "SUBSCRIBE flags 0011",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.8.3-1] Topic Filters MUST be UTF-8 Encoded Strings: invalid UTF-8 is malformed.
    Case::new(
        "subscribe_filter_not_utf8_is_malformed",
        &["MQTT-3.8.3-1"],
        |s| {
            s.connect(0, "sub-utf8")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"a/\xff", 0)])),
                    "SUBSCRIBE a/\\xff",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.8.3-1] A UTF-16 surrogate encoded in the filter (ED A0 80) is not UTF-8 either.
    Case::new(
        "subscribe_filter_with_surrogate_is_malformed",
        &["MQTT-3.8.3-1"],
        |s| {
            s.connect(0, "sub-surrogate")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"a/\xed\xa0\x80", 0)])),
                    "SUBSCRIBE with U+D800",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.8.3-2] At least one Topic Filter: a SUBSCRIBE with no payload is a Protocol Error.
    Case::new(
        "subscribe_without_filters_is_a_protocol_error",
        &["MQTT-3.8.3-2"],
        |s| {
            s.connect(0, "sub-empty")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[])),
                    "SUBSCRIBE with no payload",
                )
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-3.8.3-3] No Local: the subscriber's own messages are not forwarded back to it,
    // other clients' are, and another subscriber still gets its messages.
    Case::new(
        "subscribe_no_local_skips_own_messages",
        &["MQTT-3.8.3-3"],
        |s| {
            s.connect(0, "nl-self")
                .connect(1, "nl-other")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"nl/t", 0x04)])),
                    "SUBSCRIBE nl/t no local",
                )
                .expect_suback(0, 1, &[0x00])
                .subscribe(1, 1, "nl/t", QoS::AtMostOnce)
                .send(0, publish("nl/t", b"own", QoS::AtMostOnce, 0))
                .expect_pub(1, "nl/t", b"own", QoS::AtMostOnce)
                .send(1, publish("nl/t", b"other", QoS::AtMostOnce, 0))
                // The next packet on 0 is the other client's: its own never came.
                .expect_pub(0, "nl/t", b"other", QoS::AtMostOnce)
                .expect_pub(1, "nl/t", b"other", QoS::AtMostOnce)
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.8.3-3] No Local is per Client ID: a new connection of the same client (resuming
    // the session) does not get its own messages either.
    Case::new(
        "subscribe_no_local_holds_across_reconnect",
        &["MQTT-3.8.3-3"],
        |s| {
            s.connect_with(0, persistent("nl-again", true))
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"nl2/t", 0x04), (b"nl2/m", 0)])),
                    "SUBSCRIBE nl2/t no local",
                )
                .expect_suback(0, 1, &[0x00, 0x00])
                .hangup(0)
                .connect_with(0, persistent("nl-again", false))
                .send(0, publish("nl2/t", b"own", QoS::AtMostOnce, 0))
                .send(0, publish("nl2/m", b"marker", QoS::AtMostOnce, 0))
                .expect_pub(0, "nl2/m", b"marker", QoS::AtMostOnce)
        },
    ),
    // [MQTT-3.8.3-4] No Local on a Shared Subscription is a Protocol Error.
    Case::new(
        "subscribe_no_local_on_shared_is_a_protocol_error",
        &["MQTT-3.8.3-4"],
        |s| {
            s.connect(0, "nl-shared")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/g/t", 0x04)])),
                    "SUBSCRIBE $share/g/t no local",
                )
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-3.8.3-5] Reserved bits 6 and 7 of the Subscription Options must be 0: malformed.
    Case::new(
        "subscribe_reserved_option_bits_are_malformed",
        &["MQTT-3.8.3-5"],
        |s| {
            s.connect(0, "sub-reserved")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"a/b", 0x40)])),
                    "SUBSCRIBE options 0x40",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.8.3-5] Bit 7 alone, on the second of two filters: the whole packet is malformed
    // and nothing is acknowledged.
    Case::new(
        "subscribe_reserved_bit_7_on_second_filter_is_malformed",
        &["MQTT-3.8.3-5"],
        |s| {
            s.connect(0, "sub-reserved7")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"a/b", 0x01), (b"c/d", 0x81)])),
                    "SUBSCRIBE second options 0x81",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.8.4-1] [MQTT-3.8.4-2] A SUBSCRIBE is answered by a SUBACK with its Packet
    // Identifier (not simply 1): exact bytes.
    Case::new(
        "suback_echoes_the_packet_identifier",
        &["MQTT-3.8.4-1", "MQTT-3.8.4-2"],
        |s| {
            s.connect(0, "suback-pid")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(0xBEEF, &[(b"a/b", 0x01)])),
                    "SUBSCRIBE pid 0xBEEF",
                )
                .expect_hex(0, "90 04 be ef 00 01")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(0x0102, &[(b"a/c", 0x02)])),
                    "SUBSCRIBE pid 0x0102",
                )
                .expect_hex(0, "90 04 01 02 00 02")
        },
    ),
    // [MQTT-3.8.4-1] [MQTT-3.8.4-2] A SUBSCRIBE that fails (wildcards off) is still answered
    // by a SUBACK with its Packet Identifier.
    Case::new(
        "suback_answers_a_refused_subscribe",
        &["MQTT-3.8.4-1", "MQTT-3.8.4-2", "MQTT-3.8.4-7"],
        |s| {
            s.connect(0, "suback-refused")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(77, &[(b"w/#", 0x01)])),
                    "SUBSCRIBE w/#",
                )
                .expect_suback(0, 77, &[0xA2])
        },
    )
    .config("[broker]\nwildcard_subscriptions = false\n"),
    // [MQTT-3.8.4-3] The same filter replaces the subscription: one delivery, at the new QoS.
    Case::new(
        "subscribe_same_filter_replaces_subscription",
        &["MQTT-3.8.4-3"],
        |s| {
            s.connect(0, "replace-sub")
                .connect(1, "replace-pub")
                .subscribe(0, 1, "rep/t", QoS::AtLeastOnce)
                .subscribe(0, 2, "rep/t", QoS::AtMostOnce)
                .send(1, publish("rep/t", b"one", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "rep/t", b"one", QoS::AtMostOnce)
                .subscribe(0, 3, "rep/m", QoS::AtMostOnce)
                .send(1, publish("rep/m", b"marker", QoS::AtMostOnce, 0))
                // No second copy of "one" came before the marker.
                .expect_pub(0, "rep/m", b"marker", QoS::AtMostOnce)
        },
    ),
    // [MQTT-3.8.4-3] Replacing also replaces the options: No Local set on the second SUBSCRIBE
    // applies, and unsubscribing once removes the (single) subscription.
    Case::new(
        "subscribe_replacement_takes_new_options",
        &["MQTT-3.8.4-3"],
        |s| {
            s.connect(0, "replace-opts")
                .subscribe(0, 1, "ro/t", QoS::AtMostOnce)
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(2, &[(b"ro/t", 0x04), (b"ro/m", 0)])),
                    "SUBSCRIBE ro/t no local",
                )
                .expect_suback(0, 2, &[0x00, 0x00])
                .send(0, publish("ro/t", b"own", QoS::AtMostOnce, 0))
                .send(0, publish("ro/m", b"marker", QoS::AtMostOnce, 0))
                .expect_pub(0, "ro/m", b"marker", QoS::AtMostOnce)
                .send(0, unsubscribe(3, &["ro/t"]))
                .expect_unsuback(0, 3, &[0x00])
                .send(0, unsubscribe(4, &["ro/t"]))
                .expect_unsuback(0, 4, &[0x11])
        },
    ),
    // [MQTT-3.8.4-4] Retain Handling 0: replacing a subscription re-sends the matching retained
    // messages, and live messages still arrive exactly once afterwards.
    Case::new(
        "subscribe_replacement_resends_retained",
        &["MQTT-3.8.4-4", "MQTT-3.8.4-3"],
        |s| {
            s.connect(0, "rr-sub")
                .connect(1, "rr-pub")
                .send(1, retained("rr/t", b"kept", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x10)
                .subscribe(0, 1, "rr/#", QoS::AtLeastOnce)
                .expect_retained(0, "rr/t", b"kept")
                .subscribe(0, 2, "rr/#", QoS::AtLeastOnce)
                .expect_retained(0, "rr/t", b"kept")
                .send(1, publish("rr/live", b"live", QoS::AtMostOnce, 0))
                .expect_pub(0, "rr/live", b"live", QoS::AtMostOnce)
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.8.4-4] Replacing a subscription loses no message: with Receive Maximum 1, one
    // QoS 1 message in flight and one waiting, both still arrive after the replacement.
    Case::new(
        "subscribe_replacement_loses_no_messages",
        &["MQTT-3.8.4-4"],
        |s| {
            let mut c = connect("keep-sub");
            c.properties.receive_maximum = std::num::NonZeroU16::new(1);
            s.open(0)
                .send(0, c)
                .expect_reason(0, PacketType::ConnAck, 0)
                .connect(1, "keep-pub")
                .subscribe(0, 1, "kp/t", QoS::AtLeastOnce)
                .send(1, publish("kp/t", b"first", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .send(1, publish("kp/t", b"second", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "kp/t", b"first", QoS::AtLeastOnce)
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(2, &[(b"kp/t", 0x21)])),
                    "SUBSCRIBE kp/t again",
                )
                .expect_suback(0, 2, &[0x01])
                .send(0, PubAck::new(pid(1)))
                .expect_pub(0, "kp/t", b"second", QoS::AtLeastOnce)
                .send(0, PubAck::new(pid(2)))
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.8.4-5] Several filters in one SUBSCRIBE are handled as a sequence of SUBSCRIBEs:
    // the same filter twice leaves the second's options, one SUBACK answers both.
    Case::new(
        "subscribe_multiple_filters_as_a_sequence",
        &["MQTT-3.8.4-5", "MQTT-3.8.4-6", "MQTT-3.9.3-1"],
        |s| {
            s.connect(0, "multi-sub")
                .connect(1, "multi-pub")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(9, &[(b"ms/t", 0x00), (b"ms/u", 0x02), (b"ms/t", 0x01)]),
                    ),
                    "SUBSCRIBE ms/t q0, ms/u q2, ms/t q1",
                )
                .expect_suback(0, 9, &[0x00, 0x02, 0x01])
                .expect_quiet(0, 200)
                .send(1, publish("ms/t", b"x", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "ms/t", b"x", QoS::AtLeastOnce)
                .send(1, publish("ms/u", b"y", QoS::AtMostOnce, 0))
                .expect_pub(0, "ms/u", b"y", QoS::AtMostOnce)
        },
    ),
    // [MQTT-3.8.4-6] [MQTT-3.8.4-7] [MQTT-3.9.3-1] [MQTT-3.9.3-2] One reason code per filter,
    // in order: granted QoS or a failure code, never fewer codes than filters.
    Case::new(
        "suback_one_reason_code_per_filter_in_order",
        &[
            "MQTT-3.8.4-6",
            "MQTT-3.8.4-7",
            "MQTT-3.9.3-1",
            "MQTT-3.9.3-2",
        ],
        |s| {
            s.connect(0, "suback-order")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(
                            5,
                            &[
                                (b"o/1", 0x02),
                                (b"o/+", 0x01),
                                (b"o/2", 0x00),
                                (b"$share/g/o/3", 0x01),
                                (b"o/#", 0x00),
                                (b"o/4", 0x01),
                            ],
                        ),
                    ),
                    "SUBSCRIBE six filters",
                )
                .expect_hex(0, "90 09 00 05 00 02 a2 00 01 a2 01")
        },
    )
    .config("[broker]\nwildcard_subscriptions = false\n"),
    // [MQTT-3.8.4-7] The reason code shows the maximum QoS granted: with Maximum QoS 1 a
    // QoS 2 request is granted QoS 1.
    Case::new(
        "suback_shows_downgraded_qos",
        &["MQTT-3.8.4-7", "MQTT-3.9.3-2"],
        |s| {
            s.connect(0, "suback-maxqos")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(3, &[(b"q/2", 0x02), (b"q/1", 0x01), (b"q/0", 0x00)]),
                    ),
                    "SUBSCRIBE q2, q1, q0",
                )
                .expect_hex(0, "90 06 00 03 00 01 01 00")
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // [MQTT-3.8.4-7] Subscription failures: shared subscriptions and subscription identifiers
    // turned off give 0x9E and 0xA1.
    Case::new(
        "suback_failure_codes_for_disabled_features",
        &["MQTT-3.8.4-7", "MQTT-3.9.3-2"],
        |s| {
            s.connect(0, "suback-off")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/g/f", 0x01), (b"f/x", 0x01)])),
                    "SUBSCRIBE shared",
                )
                .expect_suback(0, 1, &[0x9E, 0x01])
                // Subscription Identifier 7 (property 0x0B).
                .send_bytes(
                    0,
                    frame(0x82, &sub_body_props(2, &[0x0B, 0x07], &[(b"f/y", 0x01)])),
                    "SUBSCRIBE with identifier",
                )
                .expect_suback(0, 2, &[0xA1])
        },
    )
    .config("[broker]\nshared_subscriptions = false\nsubscription_identifiers = false\n"),
    // [MQTT-3.8.4-7] Not authorized (0x87), from an ACL that denies the filter.
    Case::new(
        "suback_not_authorized",
        &["MQTT-3.8.4-7", "MQTT-3.9.3-2"],
        |s| {
            s.open(0)
                .send(0, login("alice", "secret"))
                .expect_reason(0, PacketType::ConnAck, 0)
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(4, &[(b"secret/x", 0x01), (b"open/x", 0x01)]),
                    ),
                    "SUBSCRIBE secret/x, open/x",
                )
                .expect_suback(0, 4, &[0x87, 0x01])
        },
    )
    .users(&[("alice", "secret")])
    .config(ACL_CONFIG),
    // [MQTT-3.8.4-8] Delivered QoS = min(published QoS, granted QoS).
    Case::new(
        "subscribe_delivery_qos_is_minimum",
        &["MQTT-3.8.4-8"],
        |s| {
            s.connect(0, "minqos-sub")
                .connect(1, "minqos-pub")
                .subscribe(0, 1, "mq/0", QoS::AtMostOnce)
                .subscribe(0, 2, "mq/1", QoS::AtLeastOnce)
                .subscribe(0, 3, "mq/2", QoS::ExactlyOnce)
                // QoS 2 published to a QoS 0 subscription arrives at QoS 0.
                .send(1, publish("mq/0", b"a", QoS::ExactlyOnce, 1))
                .expect_reason(1, PacketType::PubRec, 0x00)
                .send(1, PubRel::new(pid(1)))
                .expect(1, PubComp::new(pid(1)))
                .expect_pub(0, "mq/0", b"a", QoS::AtMostOnce)
                // QoS 2 to a QoS 1 subscription: QoS 1.
                .send(1, publish("mq/1", b"b", QoS::ExactlyOnce, 2))
                .expect_reason(1, PacketType::PubRec, 0x00)
                .send(1, PubRel::new(pid(2)))
                .expect(1, PubComp::new(pid(2)))
                .expect_pub(0, "mq/1", b"b", QoS::AtLeastOnce)
                .send(0, PubAck::new(pid(1)))
                // QoS 0 to a QoS 2 subscription: QoS 0.
                .send(1, publish("mq/2", b"c", QoS::AtMostOnce, 0))
                .expect_pub(0, "mq/2", b"c", QoS::AtMostOnce)
                // QoS 1 to a QoS 2 subscription: QoS 1.
                .send(1, publish("mq/2", b"d", QoS::AtLeastOnce, 3))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "mq/2", b"d", QoS::AtLeastOnce)
        },
    ),
    // [MQTT-3.8.4-8] ... and the granted QoS is the server's, when lower than requested.
    Case::new(
        "subscribe_delivery_qos_capped_by_granted",
        &["MQTT-3.8.4-8"],
        |s| {
            s.connect(0, "capqos-sub")
                .connect(1, "capqos-pub")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"cq/t", 0x02)])),
                    "SUBSCRIBE cq/t q2",
                )
                .expect_suback(0, 1, &[0x01])
                .send(1, publish("cq/t", b"a", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "cq/t", b"a", QoS::AtLeastOnce)
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // ---- §3.9 SUBACK properties ------------------------------------------------------------
    // [MQTT-3.9.2-1] [MQTT-3.9.2-2] No Reason String or User Property that would make the
    // SUBACK exceed the client's Maximum Packet Size: with a limit of 6 bytes, a refused
    // subscription is answered with the bare 6-byte SUBACK.
    Case::new(
        "suback_respects_client_maximum_packet_size",
        &["MQTT-3.9.2-1", "MQTT-3.9.2-2"],
        |s| {
            let mut c = connect("suback-mps");
            c.properties.maximum_packet_size = std::num::NonZeroU32::new(6);
            s.open(0)
                .send(0, c)
                .expect_reason(0, PacketType::ConnAck, 0)
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"w/+", 0x01)])),
                    "SUBSCRIBE w/+",
                )
                .expect_hex(0, "90 04 00 01 00 a2")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(2, &[(b"secret/x", 0x01)])),
                    "SUBSCRIBE secret/x",
                )
                .expect_hex(0, "90 04 00 02 00 87")
        },
    )
    .config(ACL_WILDCARDS_OFF),
    // ---- §3.10 UNSUBSCRIBE ---------------------------------------------------------------------
    // [MQTT-3.10.1-1] UNSUBSCRIBE fixed header flags must be 0010; anything else is malformed.
    Case::new(
        "unsubscribe_reserved_header_flags_are_malformed",
        &["MQTT-3.10.1-1"],
        |s| {
            s.connect(0, "unsub-flags")
                .subscribe(0, 1, "a/b", QoS::AtMostOnce)
                .send_bytes(
                    0,
                    frame(0xA0, &unsub_body(2, &[b"a/b"])),
                    "UNSUBSCRIBE flags 0000",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.10.1-1] The same, with flags 1010.
    Case::new(
        "unsubscribe_header_flags_1010_are_malformed",
        &["MQTT-3.10.1-1"],
        |s| {
            s.connect(0, "unsub-flags2")
                .send_bytes(
                    0,
                    frame(0xAA, &unsub_body(2, &[b"a/b"])),
                    "UNSUBSCRIBE flags 1010",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.10.3-1] UNSUBSCRIBE Topic Filters must be UTF-8: invalid UTF-8 is malformed.
    Case::new(
        "unsubscribe_filter_not_utf8_is_malformed",
        &["MQTT-3.10.3-1"],
        |s| {
            s.connect(0, "unsub-utf8")
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(2, &[b"a/\xc3"])),
                    "UNSUBSCRIBE a/\\xc3",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.10.3-2] An UNSUBSCRIBE with no Topic Filter is a Protocol Error.
    Case::new(
        "unsubscribe_without_filters_is_a_protocol_error",
        &["MQTT-3.10.3-2"],
        |s| {
            s.connect(0, "unsub-empty")
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(2, &[])),
                    "UNSUBSCRIBE with no payload",
                )
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-3.10.4-1] [MQTT-3.10.4-2] Filters compare character by character, wildcards
    // included: `u/x` does not remove `u/+`; `u/+` does, and no new message is delivered.
    Case::new(
        "unsubscribe_matches_filters_exactly",
        &["MQTT-3.10.4-1", "MQTT-3.10.4-2"],
        |s| {
            s.connect(0, "unsub-exact")
                .connect(1, "unsub-exact-pub")
                .subscribe(0, 1, "u/+", QoS::AtMostOnce)
                .subscribe(0, 2, "u/m", QoS::AtMostOnce)
                .send(0, unsubscribe(3, &["u/x"]))
                .expect_unsuback(0, 3, &[0x11])
                .send(0, unsubscribe(4, &["U/+"]))
                .expect_unsuback(0, 4, &[0x11])
                .send(1, publish("u/x", b"still", QoS::AtMostOnce, 0))
                .expect_pub(0, "u/x", b"still", QoS::AtMostOnce)
                .send(0, unsubscribe(5, &["u/+"]))
                .expect_unsuback(0, 5, &[0x00])
                .send(1, publish("u/x", b"gone", QoS::AtMostOnce, 0))
                .send(1, publish("u/m", b"marker", QoS::AtMostOnce, 0))
                .expect_pub(0, "u/m", b"marker", QoS::AtMostOnce)
        },
    ),
    // [MQTT-3.10.4-1] A shared subscription is deleted only by its whole filter,
    // `$share/{name}/` included.
    Case::new(
        "unsubscribe_shared_needs_the_whole_filter",
        &["MQTT-3.10.4-1"],
        |s| {
            s.connect(0, "unsub-shared")
                .subscribe(0, 1, "$share/g/us/t", QoS::AtMostOnce)
                .send(
                    0,
                    unsubscribe(2, &["us/t", "$share/h/us/t", "$share/g/us/t"]),
                )
                .expect_unsuback(0, 2, &[0x11, 0x11, 0x00])
                .send(0, unsubscribe(3, &["$share/g/us/t"]))
                .expect_unsuback(0, 3, &[0x11])
        },
    ),
    // [MQTT-3.10.4-2] After UNSUBSCRIBE no new matching message is added for the client, not
    // even to its queue while offline (persistent session).
    Case::new(
        "unsubscribe_stops_queueing_for_offline_session",
        &["MQTT-3.10.4-2"],
        |s| {
            s.connect_with(0, persistent("unsub-queue", true))
                .connect(1, "unsub-queue-pub")
                .subscribe(0, 1, "uq/t", QoS::AtLeastOnce)
                .subscribe(0, 2, "uq/m", QoS::AtLeastOnce)
                .send(0, unsubscribe(3, &["uq/t"]))
                .expect_unsuback(0, 3, &[0x00])
                .hangup(0)
                .send(1, publish("uq/t", b"gone", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x10)
                .send(1, publish("uq/m", b"marker", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .connect_with(0, persistent("unsub-queue", false))
                .expect_pub(0, "uq/m", b"marker", QoS::AtLeastOnce)
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.10.4-3] A QoS 1 message already sent to the client is still completed after the
    // UNSUBSCRIBE: it is retransmitted when the session resumes.
    Case::new(
        "unsubscribe_completes_inflight_qos1",
        &["MQTT-3.10.4-3"],
        |s| {
            s.connect_with(0, persistent("unsub-inflight", true))
                .connect(1, "unsub-inflight-pub")
                .subscribe(0, 1, "ui/t", QoS::AtLeastOnce)
                .send(1, publish("ui/t", b"m", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "ui/t", b"m", QoS::AtLeastOnce)
                .send(0, unsubscribe(2, &["ui/t"]))
                .expect_unsuback(0, 2, &[0x00])
                .hangup(0)
                .connect_with(0, persistent("unsub-inflight", false))
                .expect_dup(0, "ui/t", b"m", QoS::AtLeastOnce)
                .send(0, PubAck::new(pid(1)))
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.10.4-3] The same for QoS 2: PUBREC after the UNSUBSCRIBE still gets its PUBREL,
    // and the flow completes.
    Case::new(
        "unsubscribe_completes_inflight_qos2",
        &["MQTT-3.10.4-3"],
        |s| {
            s.connect(0, "unsub-q2")
                .connect(1, "unsub-q2-pub")
                .subscribe(0, 1, "u2/t", QoS::ExactlyOnce)
                .send(1, publish("u2/t", b"m", QoS::ExactlyOnce, 1))
                .expect_reason(1, PacketType::PubRec, 0x00)
                .send(1, PubRel::new(pid(1)))
                .expect(1, PubComp::new(pid(1)))
                .expect_pub(0, "u2/t", b"m", QoS::ExactlyOnce)
                .send(0, unsubscribe(2, &["u2/t"]))
                .expect_unsuback(0, 2, &[0x00])
                .send(0, PubRec::new(pid(1)))
                .expect(0, PubRel::new(pid(1)))
                .send(0, PubComp::new(pid(1)))
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK with the same Packet Identifier, even when
    // nothing was deleted: exact bytes.
    Case::new(
        "unsuback_echoes_packet_identifier_even_without_subscription",
        &["MQTT-3.10.4-4", "MQTT-3.10.4-5", "MQTT-3.11.3-2"],
        |s| {
            s.connect(0, "unsuback-pid")
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(0xCAFE, &[b"never/subscribed"])),
                    "UNSUBSCRIBE pid 0xCAFE",
                )
                .expect_hex(0, "b0 04 ca fe 00 11")
                .subscribe(0, 1, "x/y", QoS::AtMostOnce)
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(0x0203, &[b"x/y"])),
                    "UNSUBSCRIBE pid 0x0203",
                )
                .expect_hex(0, "b0 04 02 03 00 00")
        },
    ),
    // [MQTT-3.10.4-6] [MQTT-3.11.3-1] [MQTT-3.11.3-2] Several filters are handled in order
    // as separate UNSUBSCRIBEs, with one UNSUBACK: the same filter twice is removed once.
    Case::new(
        "unsubscribe_multiple_filters_as_a_sequence",
        &["MQTT-3.10.4-6", "MQTT-3.11.3-1", "MQTT-3.11.3-2"],
        |s| {
            s.connect(0, "unsub-multi")
                .subscribe(0, 1, "um/a", QoS::AtMostOnce)
                .subscribe(0, 2, "um/b", QoS::AtMostOnce)
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(3, &[b"um/x", b"um/a", b"um/a", b"um/b"])),
                    "UNSUBSCRIBE um/x, um/a, um/a, um/b",
                )
                .expect_hex(0, "b0 07 00 03 00 11 00 11 00")
                .expect_quiet(0, 200)
        },
    ),
    // [MQTT-3.10.4-6] ... and every filter takes effect: after one UNSUBSCRIBE of two filters,
    // neither delivers.
    Case::new(
        "unsubscribe_multiple_filters_all_take_effect",
        &["MQTT-3.10.4-6", "MQTT-3.10.4-2"],
        |s| {
            s.connect(0, "unsub-all")
                .connect(1, "unsub-all-pub")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(1, &[(b"ua/+", 0), (b"ua/b", 0), (b"ua/m", 0)]),
                    ),
                    "SUBSCRIBE ua/+, ua/b, ua/m",
                )
                .expect_suback(0, 1, &[0, 0, 0])
                .send(0, unsubscribe(2, &["ua/+", "ua/b"]))
                .expect_unsuback(0, 2, &[0x00, 0x00])
                .send(1, publish("ua/b", b"gone", QoS::AtMostOnce, 0))
                .send(1, publish("ua/m", b"marker", QoS::AtMostOnce, 0))
                // ua/m matched ua/+ too: it must now come exactly once.
                .expect_pub(0, "ua/m", b"marker", QoS::AtMostOnce)
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.11.2-1] [MQTT-3.11.2-2] No Reason String or User Property beyond the client's
    // Maximum Packet Size: the bare 6-byte UNSUBACK.
    Case::new(
        "unsuback_respects_client_maximum_packet_size",
        &["MQTT-3.11.2-1", "MQTT-3.11.2-2"],
        |s| {
            let mut c = connect("unsuback-mps");
            c.properties.maximum_packet_size = std::num::NonZeroU32::new(6);
            s.open(0)
                .send(0, c)
                .expect_reason(0, PacketType::ConnAck, 0)
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(1, &[b"nothing/here"])),
                    "UNSUBSCRIBE nothing/here",
                )
                .expect_hex(0, "b0 04 00 01 00 11")
        },
    ),
    // ---- §4.7 Topic names and topic filters ------------------------------------------------------
    // [MQTT-4.7.0-1] Wildcards are not allowed in a Topic Name: PUBLISH to `a/+` or `a/#` is
    // refused with DISCONNECT Topic Name invalid.
    Case::new("topic_name_with_plus_is_invalid", &["MQTT-4.7.0-1"], |s| {
        s.connect(0, "name-plus")
            .send_bytes(0, frame(0x30, &pub_body(b"a/+", b"x")), "PUBLISH a/+")
            .expect_disconnect(0, DisconnectReason::TopicNameInvalid)
    }),
    // [MQTT-4.7.0-1] The same for `#`, at QoS 1: no PUBACK, DISCONNECT Topic Name invalid.
    Case::new("topic_name_with_hash_is_invalid", &["MQTT-4.7.0-1"], |s| {
        s.connect(0, "name-hash")
            .send_bytes(
                0,
                frame(0x32, &pub_body_qos(b"sport/#", 1, b"x")),
                "PUBLISH sport/# QoS 1",
            )
            .expect_disconnect(0, DisconnectReason::TopicNameInvalid)
    }),
    // [MQTT-4.7.0-1] Wildcards are allowed in Topic Filters, and match.
    Case::new(
        "topic_filter_wildcards_are_allowed",
        &["MQTT-4.7.0-1", "MQTT-4.7.1-1", "MQTT-4.7.1-2"],
        |s| {
            s.connect(0, "wild-ok")
                .connect(1, "wild-ok-pub")
                .subscribe(0, 1, "+/tennis/#", QoS::AtMostOnce)
                .send(1, publish("sport/tennis/player1", b"a", QoS::AtMostOnce, 0))
                .expect_pub(0, "sport/tennis/player1", b"a", QoS::AtMostOnce)
                .send(1, publish("sport/tennis", b"b", QoS::AtMostOnce, 0))
                .expect_pub(0, "sport/tennis", b"b", QoS::AtMostOnce)
        },
    ),
    // [MQTT-4.7.1-1] `#` must be the last character and fill its level: `a/#/b`, `a/b#` and
    // `#/` are refused (DISCONNECT Topic Filter invalid).
    Case::new(
        "topic_filter_hash_not_last_is_invalid",
        &["MQTT-4.7.1-1"],
        |s| {
            s.connect(0, "hash-mid")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"sport/#/ranking", 0)])),
                    "SUBSCRIBE sport/#/ranking",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.7.1-1] `#` after other characters of its level.
    Case::new(
        "topic_filter_hash_inside_level_is_invalid",
        &["MQTT-4.7.1-1"],
        |s| {
            s.connect(0, "hash-inside")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"sport/tennis#", 0)])),
                    "SUBSCRIBE sport/tennis#",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.7.1-1] `#/` : `#` followed by a separator is not last.
    Case::new(
        "topic_filter_hash_then_separator_is_invalid",
        &["MQTT-4.7.1-1"],
        |s| {
            s.connect(0, "hash-slash")
                .send_bytes(0, frame(0xA2, &unsub_body(1, &[b"#/"])), "UNSUBSCRIBE #/")
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.7.1-1] `sport/#` matches the parent `sport` and any number of child levels, but
    // not `sports`.
    Case::new(
        "topic_filter_hash_matches_parent_and_children",
        &["MQTT-4.7.1-1"],
        |s| {
            s.connect(0, "hash-match")
                .connect(1, "hash-match-pub")
                .subscribe(0, 1, "sport/#", QoS::AtMostOnce)
                .send(1, publish("sports", b"no", QoS::AtMostOnce, 0))
                .send(1, publish("sport", b"parent", QoS::AtMostOnce, 0))
                .expect_pub(0, "sport", b"parent", QoS::AtMostOnce)
                .send(
                    1,
                    publish("sport/tennis/player1/score", b"deep", QoS::AtMostOnce, 0),
                )
                .expect_pub(0, "sport/tennis/player1/score", b"deep", QoS::AtMostOnce)
                .subscribe(0, 2, "#", QoS::AtMostOnce)
                .send(1, publish("/", b"root", QoS::AtMostOnce, 0))
                .expect_pub(0, "/", b"root", QoS::AtMostOnce)
        },
    ),
    // [MQTT-4.7.1-2] `+` must fill a whole level: `sport+` and `sport/+tennis` are refused.
    Case::new(
        "topic_filter_plus_inside_level_is_invalid",
        &["MQTT-4.7.1-2"],
        |s| {
            s.connect(0, "plus-inside")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"sport+", 0)])),
                    "SUBSCRIBE sport+",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.7.1-2] The same, with `+` first in the level, in an UNSUBSCRIBE.
    Case::new(
        "topic_filter_plus_prefix_of_level_is_invalid",
        &["MQTT-4.7.1-2"],
        |s| {
            s.connect(0, "plus-prefix")
                .send_bytes(
                    0,
                    frame(0xA2, &unsub_body(1, &[b"sport/+tennis"])),
                    "UNSUBSCRIBE sport/+tennis",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.7.1-2] `+` matches exactly one level, empty ones included, at any position.
    Case::new(
        "topic_filter_plus_matches_one_level",
        &["MQTT-4.7.1-2"],
        |s| {
            s.connect(0, "plus-match")
                .connect(1, "plus-match-pub")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(1, &[(b"+/+", 0), (b"sport/+", 0), (b"+", 0)]),
                    ),
                    "SUBSCRIBE +/+, sport/+, +",
                )
                .expect_suback(0, 1, &[0, 0, 0])
                .send(
                    1,
                    publish("sport/tennis/player1", b"three", QoS::AtMostOnce, 0),
                )
                .send(1, publish("/finance", b"empty-first", QoS::AtMostOnce, 0))
                .expect_pub(0, "/finance", b"empty-first", QoS::AtMostOnce)
                .send(1, publish("sport/", b"empty-last", QoS::AtMostOnce, 0))
                .expect_pub(0, "sport/", b"empty-last", QoS::AtMostOnce)
                .send(1, publish("solo", b"one", QoS::AtMostOnce, 0))
                .expect_pub(0, "solo", b"one", QoS::AtMostOnce)
        },
    ),
    // [MQTT-4.7.2-1] Filters starting with a wildcard do not match topics starting with `$`;
    // `$`-filters do.
    Case::new(
        "topic_dollar_topics_not_matched_by_leading_wildcard",
        &["MQTT-4.7.2-1"],
        |s| {
            s.connect(0, "dollar-wild")
                .connect(1, "dollar-exact")
                .connect(2, "dollar-pub")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(1, &[(b"#", 0), (b"+/monitor/Clients", 0), (b"+/#", 0)]),
                    ),
                    "SUBSCRIBE #, +/monitor/Clients, +/#",
                )
                .expect_suback(0, 1, &[0, 0, 0])
                .subscribe(1, 1, "$app/#", QoS::AtMostOnce)
                // The same holds for the Topic Filter of a shared subscription.
                .connect(3, "dollar-shared")
                .subscribe(3, 1, "$share/g/#", QoS::AtMostOnce)
                .send(2, publish("$app/monitor/Clients", b"d", QoS::AtMostOnce, 0))
                .expect_pub(1, "$app/monitor/Clients", b"d", QoS::AtMostOnce)
                .send(
                    2,
                    publish("app/monitor/Clients", b"plain", QoS::AtMostOnce, 0),
                )
                // The next on 0 and 3 is the plain one: the `$` topic never came.
                .expect_pub(0, "app/monitor/Clients", b"plain", QoS::AtMostOnce)
                .expect_pub(3, "app/monitor/Clients", b"plain", QoS::AtMostOnce)
                .expect_quiet(0, 300)
        },
    )
    .config("[broker]\nsys_interval_secs = 0\n"),
    // [MQTT-4.7.2-1] The broker's own `$SYS` topics reach `$SYS/#` but not `#`.
    Case::new(
        "topic_sys_topics_not_matched_by_hash",
        &["MQTT-4.7.2-1"],
        |s| {
            s.connect(0, "sys-hash")
                .connect(1, "sys-sys")
                .subscribe(0, 1, "#", QoS::AtMostOnce)
                .subscribe(1, 1, "$SYS/broker/version", QoS::AtMostOnce)
                .expect_that(1, "PUBLISH $SYS/broker/version", |p| match p {
                    Packet::Publish(p) if p.topic() == "$SYS/broker/version" => Ok(()),
                    other => Err(format!("{other:?}")),
                })
                .expect_quiet(0, 1500)
        },
    )
    .config("[broker]\nsys_interval_secs = 1\n"),
    // [MQTT-4.7.3-1] Topic Filters are at least one character: an empty filter is refused.
    Case::new("topic_filter_empty_is_invalid", &["MQTT-4.7.3-1"], |s| {
        s.connect(0, "filter-empty")
            .send_bytes(0, frame(0x82, &sub_body(1, &[(b"", 0)])), "SUBSCRIBE \"\"")
            .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
    }),
    // [MQTT-4.7.3-1] An empty filter in UNSUBSCRIBE is refused the same way.
    Case::new(
        "topic_filter_empty_in_unsubscribe_is_invalid",
        &["MQTT-4.7.3-1"],
        |s| {
            s.connect(0, "unfilter-empty")
                .send_bytes(0, frame(0xA2, &unsub_body(1, &[b""])), "UNSUBSCRIBE \"\"")
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.7.3-1] A Topic Name is at least one character: an empty name without a Topic
    // Alias is a Protocol Error (§3.3.2.1).
    Case::new(
        "topic_name_empty_without_alias_is_a_protocol_error",
        &["MQTT-4.7.3-1"],
        |s| {
            s.connect(0, "name-empty")
                .send_bytes(0, frame(0x30, &pub_body(b"", b"x")), "PUBLISH \"\"")
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.7.3-2] No U+0000 in a Topic Filter: malformed (§1.5.4).
    Case::new(
        "topic_filter_with_null_is_malformed",
        &["MQTT-4.7.3-2"],
        |s| {
            s.connect(0, "filter-nul")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"a/\x00/b", 0)])),
                    "SUBSCRIBE a/NUL/b",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-4.7.3-2] No U+0000 in a Topic Name: malformed.
    Case::new(
        "topic_name_with_null_is_malformed",
        &["MQTT-4.7.3-2"],
        |s| {
            s.connect(0, "name-nul")
                .send_bytes(
                    0,
                    frame(0x30, &pub_body(b"a\x00b", b"x")),
                    "PUBLISH a NUL b",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-4.7.3-3] Topic Names and Filters encode to at most 65,535 bytes: one of exactly
    // 65,535 bytes is accepted and matched (filters that long once the broker's own limit,
    // 4,096 bytes by default, is raised to the protocol's).
    Case::new("topic_of_65535_bytes_is_accepted", &["MQTT-4.7.3-3"], |s| {
        let long = "l".repeat(65_535);
        s.connect(0, "topic-long")
            .connect(1, "topic-long-pub")
            .subscribe(0, 1, &long, QoS::AtMostOnce)
            .send(1, publish(&long, b"long", QoS::AtMostOnce, 0))
            .expect_that(0, "PUBLISH to the 65535-byte topic", |p| match p {
                Packet::Publish(p) if p.topic().len() == 65_535 && p.payload() == b"long" => Ok(()),
                other => Err(format!("{other:?}")),
            })
    })
    .config("[broker]\nmax_topic_filter_length = 65535\n"),
    // [MQTT-4.7.3-3] A string length field claiming more bytes than the packet holds (the
    // filter cannot extend past 65,535 nor past the packet) is malformed.
    Case::new(
        "topic_filter_length_past_packet_is_malformed",
        &["MQTT-4.7.3-3"],
        |s| {
            s.connect(0, "topic-overlong")
                // pid 1, no properties, a filter claiming 0xFFFF bytes with 3 present, options.
                .send_hex(0, "82 08 00 01 00 ff ff 61 2f 62 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-4.7.3-4] No normalisation when matching: case, Unicode composition and
    // separators are compared as they are.
    Case::new(
        "topic_matching_does_no_normalisation",
        &["MQTT-4.7.3-4"],
        |s| {
            s.connect(0, "norm-sub")
                .connect(1, "norm-pub")
                .send_bytes(
                    0,
                    frame(
                        0x82,
                        &sub_body(
                            1,
                            &[
                                ("caf\u{e9}".as_bytes(), 0),
                                (b"ACCOUNTS", 0),
                                (b"finance/", 0),
                            ],
                        ),
                    ),
                    "SUBSCRIBE café (NFC), ACCOUNTS, finance/",
                )
                .expect_suback(0, 1, &[0, 0, 0])
                .send(1, publish("cafe\u{301}", b"nfd", QoS::AtMostOnce, 0))
                .send(1, publish("Accounts", b"case", QoS::AtMostOnce, 0))
                .send(1, publish("finance", b"slash", QoS::AtMostOnce, 0))
                .send(1, publish("caf\u{e9}", b"nfc", QoS::AtMostOnce, 0))
                .expect_pub(0, "caf\u{e9}", b"nfc", QoS::AtMostOnce)
                .send(1, publish("finance/", b"exact", QoS::AtMostOnce, 0))
                .expect_pub(0, "finance/", b"exact", QoS::AtMostOnce)
        },
    ),
    // [MQTT-4.7.3-4] Unusual characters in a topic (an unassigned code point, U+0378, and a
    // private-use one, U+E000) are delivered unchanged, with no substitution. (Non-characters
    // such as U+FFFF are Disallowed Unicode code points, refused unless configured otherwise:
    // `utf8_disallowed_code_points_accepted_when_allowed`.)
    Case::new(
        "topic_unusual_characters_delivered_unchanged",
        &["MQTT-4.7.3-4"],
        |s| {
            s.connect(0, "odd-sub")
                .connect(1, "odd-pub")
                .subscribe(0, 1, "odd/+", QoS::AtMostOnce)
                .send_bytes(
                    1,
                    frame(
                        0x30,
                        &pub_body("odd/\u{378}\u{e000}\u{1f600}".as_bytes(), b"x"),
                    ),
                    "PUBLISH odd/U+0378 U+E000 U+1F600",
                )
                .expect_pub(0, "odd/\u{378}\u{e000}\u{1f600}", b"x", QoS::AtMostOnce)
        },
    ),
    // ---- §4.8 Shared subscriptions --------------------------------------------------------------
    // [MQTT-4.8.2-1] `$share/` needs a ShareName of at least one character.
    Case::new(
        "shared_empty_share_name_is_invalid",
        &["MQTT-4.8.2-1"],
        |s| {
            s.connect(0, "share-empty")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share//t", 0)])),
                    "SUBSCRIBE $share//t",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.8.2-1] A valid shared subscription `$share/{name}/{filter}` is granted and
    // receives messages published to the filter (not to `$share/...`).
    Case::new(
        "shared_subscription_is_granted_and_delivers",
        &["MQTT-4.8.2-1", "MQTT-4.8.2-2"],
        |s| {
            s.connect(0, "share-ok")
                .connect(1, "share-ok-pub")
                .subscribe(0, 1, "$share/grp/sh/+", QoS::AtLeastOnce)
                .send(1, publish("sh/x", b"m", QoS::AtMostOnce, 0))
                .expect_pub(0, "sh/x", b"m", QoS::AtMostOnce)
        },
    ),
    // [MQTT-4.8.2-2] The ShareName may not hold `+`.
    Case::new(
        "shared_share_name_with_plus_is_invalid",
        &["MQTT-4.8.2-2"],
        |s| {
            s.connect(0, "share-plus")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/g+/t", 0)])),
                    "SUBSCRIBE $share/g+/t",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.8.2-2] The ShareName may not hold `#`.
    Case::new(
        "shared_share_name_with_hash_is_invalid",
        &["MQTT-4.8.2-2"],
        |s| {
            s.connect(0, "share-hash")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/#/t", 0)])),
                    "SUBSCRIBE $share/#/t",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.8.2-2] The ShareName must be followed by `/` and a Topic Filter.
    Case::new(
        "shared_share_name_without_filter_is_invalid",
        &["MQTT-4.8.2-2"],
        |s| {
            s.connect(0, "share-nofilter")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/grp", 0)])),
                    "SUBSCRIBE $share/grp",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.8.2-2] ... an empty Topic Filter after the `/` is not one.
    Case::new(
        "shared_share_name_with_empty_filter_is_invalid",
        &["MQTT-4.8.2-2"],
        |s| {
            s.connect(0, "share-emptyfilter")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/grp/", 0)])),
                    "SUBSCRIBE $share/grp/",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.8.2-2] The Topic Filter after the ShareName follows §4.7: `$share/g/a#` is
    // invalid.
    Case::new(
        "shared_invalid_inner_filter_is_invalid",
        &["MQTT-4.8.2-2"],
        |s| {
            s.connect(0, "share-badinner")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/g/a#", 0)])),
                    "SUBSCRIBE $share/g/a#",
                )
                .expect_disconnect(0, DisconnectReason::TopicFilterInvalid)
        },
    ),
    // [MQTT-4.8.2-3] The granted QoS of a shared subscription is respected: QoS 1 messages to
    // a QoS 0 member arrive at QoS 0.
    Case::new("shared_respects_granted_qos", &["MQTT-4.8.2-3"], |s| {
        s.connect(0, "share-qos")
            .connect(1, "share-qos-pub")
            .subscribe(0, 1, "$share/q/sq/t", QoS::AtMostOnce)
            .send(1, publish("sq/t", b"a", QoS::AtLeastOnce, 1))
            .expect_reason(1, PacketType::PubAck, 0x00)
            .expect_pub(0, "sq/t", b"a", QoS::AtMostOnce)
    }),
    // [MQTT-4.8.2-3] ... and with Maximum QoS 1, a QoS 2 request is granted 1 and QoS 2
    // messages arrive at QoS 1.
    Case::new(
        "shared_respects_server_granted_qos",
        &["MQTT-4.8.2-3"],
        |s| {
            s.connect(0, "share-qos1")
                .connect(1, "share-qos1-pub")
                .send_bytes(
                    0,
                    frame(0x82, &sub_body(1, &[(b"$share/q/sq1/t", 0x02)])),
                    "SUBSCRIBE $share/q/sq1/t q2",
                )
                .expect_suback(0, 1, &[0x01])
                .send(1, publish("sq1/t", b"a", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "sq1/t", b"a", QoS::AtLeastOnce)
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // [MQTT-4.8.2-3] A second SUBSCRIBE to the same Shared Subscription changes the granted
    // QoS without adding the session twice: one delivery, at the new QoS, and the first
    // UNSUBSCRIBE leaves the group.
    Case::new(
        "shared_resubscribe_replaces_membership",
        &["MQTT-4.8.2-3"],
        |s| {
            s.connect(0, "share-resub")
                .connect(1, "share-resub-pub")
                .subscribe(0, 1, "$share/g/sx/t", QoS::AtMostOnce)
                .subscribe(0, 2, "$share/g/sx/t", QoS::AtLeastOnce)
                .send(1, publish("sx/t", b"a", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0x00)
                .expect_pub(0, "sx/t", b"a", QoS::AtLeastOnce)
                .send(0, PubAck::new(pid(1)))
                .expect_quiet(0, 300)
                .send(0, unsubscribe(3, &["$share/g/sx/t"]))
                .expect_unsuback(0, 3, &[0x00])
                .send(0, unsubscribe(4, &["$share/g/sx/t"]))
                .expect_unsuback(0, 4, &[0x11])
        },
    ),
    // [MQTT-4.8.2-4] A QoS 2 message being sent to a shared-group member whose connection
    // breaks is completed to that member when it reconnects, not given to another member.
    Case::new(
        "shared_qos2_inflight_completes_on_reconnect",
        &["MQTT-4.8.2-4"],
        |s| {
            s.connect_with(0, persistent("share-q2-a", true))
                .connect(2, "share-q2-pub")
                .subscribe(0, 1, "$share/g/s2/t", QoS::ExactlyOnce)
                .send(2, publish("s2/t", b"m", QoS::ExactlyOnce, 1))
                .expect_reason(2, PacketType::PubRec, 0x00)
                .send(2, PubRel::new(pid(1)))
                .expect(2, PubComp::new(pid(1)))
                .expect_pub(0, "s2/t", b"m", QoS::ExactlyOnce)
                .connect(1, "share-q2-b")
                .subscribe(1, 1, "$share/g/s2/t", QoS::ExactlyOnce)
                .hangup(0)
                .expect_quiet(1, 500)
                .connect_with(0, persistent("share-q2-a", false))
                .expect_dup(0, "s2/t", b"m", QoS::ExactlyOnce)
                .send(0, PubRec::new(pid(1)))
                .expect(0, PubRel::new(pid(1)))
                .send(0, PubComp::new(pid(1)))
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-4.8.2-5] If that member's session ends before it reconnects, the QoS 2 message
    // is not sent to any other member.
    Case::new(
        "shared_qos2_inflight_dropped_when_session_ends",
        &["MQTT-4.8.2-5"],
        |s| {
            s.connect(0, "share-end-a")
                .connect(2, "share-end-pub")
                .subscribe(0, 1, "$share/g/se/t", QoS::ExactlyOnce)
                .send(2, publish("se/t", b"m", QoS::ExactlyOnce, 1))
                .expect_reason(2, PacketType::PubRec, 0x00)
                .send(2, PubRel::new(pid(1)))
                .expect(2, PubComp::new(pid(1)))
                .expect_pub(0, "se/t", b"m", QoS::ExactlyOnce)
                .connect(1, "share-end-b")
                .subscribe(1, 1, "$share/g/se/t", QoS::ExactlyOnce)
                // Session Expiry 0: the session ends with the connection.
                .hangup(0)
                .expect_quiet(1, 800)
        },
    ),
    // [MQTT-4.8.2-5] The same when the member ends its connection with a DISCONNECT.
    Case::new(
        "shared_qos2_inflight_dropped_on_clean_disconnect",
        &["MQTT-4.8.2-5"],
        |s| {
            s.connect(0, "share-disc-a")
                .connect(2, "share-disc-pub")
                .subscribe(0, 1, "$share/g/sd/t", QoS::ExactlyOnce)
                .send(2, publish("sd/t", b"m", QoS::ExactlyOnce, 1))
                .expect_reason(2, PacketType::PubRec, 0x00)
                .send(2, PubRel::new(pid(1)))
                .expect(2, PubComp::new(pid(1)))
                .expect_pub(0, "sd/t", b"m", QoS::ExactlyOnce)
                .connect(1, "share-disc-b")
                .subscribe(1, 1, "$share/g/sd/t", QoS::ExactlyOnce)
                .send(0, Disconnect::new(DisconnectReason::NormalDisconnection))
                .expect_closed(0)
                .expect_quiet(1, 800)
        },
    ),
    // [MQTT-4.8.2-6] A PUBACK with a reason code of 0x80 or more from the chosen member: the
    // message is discarded, not sent to another member.
    Case::new(
        "shared_negative_puback_discards_message",
        &["MQTT-4.8.2-6"],
        |s| {
            s.connect_with(1, persistent("share-nack-b", true))
                .subscribe(1, 1, "$share/g/sn/t", QoS::AtLeastOnce)
                .hangup(1)
                .connect(0, "share-nack-a")
                .subscribe(0, 1, "$share/g/sn/t", QoS::AtLeastOnce)
                .connect(2, "share-nack-pub")
                .send(2, publish("sn/t", b"m", QoS::AtLeastOnce, 1))
                .expect_reason(2, PacketType::PubAck, 0x00)
                // The online member is chosen.
                .expect_pub(0, "sn/t", b"m", QoS::AtLeastOnce)
                .send(0, puback(1, PubAckReason::UnspecifiedError))
                .expect_quiet(0, 300)
                .connect_with(1, persistent("share-nack-b", false))
                .expect_quiet(1, 800)
        },
    ),
    // [MQTT-4.8.2-6] The same for a PUBREC with 0x80 or more on a QoS 2 shared delivery,
    // even when the member then goes away.
    Case::new(
        "shared_negative_pubrec_discards_message",
        &["MQTT-4.8.2-6"],
        |s| {
            s.connect(0, "share-nrec-a")
                .connect(2, "share-nrec-pub")
                .subscribe(0, 1, "$share/g/sr/t", QoS::ExactlyOnce)
                .send(2, publish("sr/t", b"m", QoS::ExactlyOnce, 1))
                .expect_reason(2, PacketType::PubRec, 0x00)
                .send(2, PubRel::new(pid(1)))
                .expect(2, PubComp::new(pid(1)))
                .expect_pub(0, "sr/t", b"m", QoS::ExactlyOnce)
                .connect(1, "share-nrec-b")
                .subscribe(1, 1, "$share/g/sr/t", QoS::ExactlyOnce)
                .send(0, pubrec(1, PubRecReason::ImplementationSpecificError))
                .expect_quiet(0, 300)
                .hangup(0)
                .expect_quiet(1, 800)
        },
    ),
];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[];

/// Config with the ACL file `s3_8_subscribe.acl`: alice may use `open/#`, nothing else.
const ACL_CONFIG: &str = concat!(
    "[auth]\nacl_file = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/conformance/s3_8_subscribe.acl\"\n"
);

/// The same ACL, with wildcard subscriptions turned off.
const ACL_WILDCARDS_OFF: &str = concat!(
    "[broker]\nwildcard_subscriptions = false\n[auth]\nacl_file = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/conformance/s3_8_subscribe.acl\"\n"
);

// ---- Helpers ----------------------------------------------------------------------------------

impl Script {
    /// The next packet on `conn` must be a SUBACK for `id` with exactly these reason codes.
    fn expect_suback(self, conn: usize, id: u16, codes: &[u8]) -> Self {
        let codes = codes.to_vec();
        self.expect_that(
            conn,
            &format!("SUBACK {id} {codes:02X?}"),
            move |p| match p {
                Packet::SubAck(SubAck {
                    packet_id, reasons, ..
                }) if packet_id.get() == id
                    && reasons.iter().map(|r| r.as_u8()).collect::<Vec<_>>() == codes =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        )
    }

    /// The next packet on `conn` must be an UNSUBACK for `id` with exactly these reason codes.
    fn expect_unsuback(self, conn: usize, id: u16, codes: &[u8]) -> Self {
        let codes = codes.to_vec();
        self.expect_that(
            conn,
            &format!("UNSUBACK {id} {codes:02X?}"),
            move |p| match p {
                Packet::UnsubAck(UnsubAck {
                    packet_id, reasons, ..
                }) if packet_id.get() == id
                    && reasons.iter().map(|r| r.as_u8()).collect::<Vec<_>>() == codes =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        )
    }

    /// The next packet on `conn` must be a PUBLISH of `payload` to `topic` at `qos`, not a
    /// redelivery and not retained.
    fn expect_pub(self, conn: usize, topic: &str, payload: &'static [u8], qos: QoS) -> Self {
        self.expect_publish(conn, topic, payload, qos, false, false)
    }

    /// The same, but a redelivery (DUP set).
    fn expect_dup(self, conn: usize, topic: &str, payload: &'static [u8], qos: QoS) -> Self {
        self.expect_publish(conn, topic, payload, qos, true, false)
    }

    /// A retained message sent on subscribe, at QoS 1 (RETAIN set).
    fn expect_retained(self, conn: usize, topic: &str, payload: &'static [u8]) -> Self {
        self.expect_publish(conn, topic, payload, QoS::AtLeastOnce, false, true)
    }

    fn expect_publish(
        self,
        conn: usize,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
        dup: bool,
        retain: bool,
    ) -> Self {
        let topic = topic.to_owned();
        let what = format!(
            "PUBLISH {topic:?} {:?} {qos:?} dup={dup} retain={retain}",
            String::from_utf8_lossy(payload)
        );
        self.expect_that(conn, &what, move |p| match p {
            Packet::Publish(p)
                if p.topic() == topic
                    && p.payload() == payload
                    && p.qos() == qos
                    && p.dup == dup
                    && p.retain == retain =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        })
    }
}

/// A CONNECT with a user name and password.
fn login(user: &str, password: &'static str) -> Connect {
    let mut c = connect(user);
    c.username = Some(MqttString::try_from(user).expect("a user name"));
    c.password = Some(Bytes::from_static(password.as_bytes()));
    c
}

/// A retained PUBLISH.
fn retained(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    let mut p = publish(topic_name, payload, qos, id);
    p.retain = true;
    p
}

/// An UNSUBSCRIBE of `filters`.
fn unsubscribe(id: u16, filters: &[&str]) -> Unsubscribe {
    Unsubscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| TopicFilter::try_from(*f).expect("a valid topic filter"))
            .collect(),
    }
}

/// A PUBACK with `reason`.
fn puback(id: u16, reason: PubAckReason) -> PubAck {
    let mut a = PubAck::new(pid(id));
    a.reason = reason;
    a
}

/// A PUBREC with `reason`.
fn pubrec(id: u16, reason: PubRecReason) -> PubRec {
    let mut a = PubRec::new(pid(id));
    a.reason = reason;
    a
}

/// A two-byte length and the bytes.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s);
}

/// A SUBSCRIBE body (MQTT 5): packet id, no properties, (filter, options byte) pairs.
fn sub_body(id: u16, entries: &[(&[u8], u8)]) -> Vec<u8> {
    sub_body_props(id, &[], entries)
}

/// A SUBSCRIBE body with these property bytes (length prefix added; under 128 bytes).
fn sub_body_props(id: u16, props: &[u8], entries: &[(&[u8], u8)]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.push(u8::try_from(props.len()).expect("short properties"));
    out.extend_from_slice(props);
    for (filter, options) in entries {
        string(&mut out, filter);
        out.push(*options);
    }
    out
}

/// An UNSUBSCRIBE body (MQTT 5): packet id, no properties, filters.
fn unsub_body(id: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.push(0);
    for f in filters {
        string(&mut out, f);
    }
    out
}

/// A QoS 0 PUBLISH body (MQTT 5): topic, no properties, payload.
fn pub_body(topic_name: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, topic_name);
    out.push(0);
    out.extend_from_slice(payload);
    out
}

/// A QoS 1 or 2 PUBLISH body: topic, packet id, no properties, payload.
fn pub_body_qos(topic_name: &[u8], id: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, topic_name);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0);
    out.extend_from_slice(payload);
    out
}
