//! PUBLISH (§3.3) and its acknowledgements: PUBACK (§3.4), PUBREC (§3.5), PUBREL (§3.6) and
//! PUBCOMP (§3.7).

use std::num::{NonZeroU16, NonZeroU32};

use mqtt5_codec::{
    DisconnectReason, PayloadFormat, PingReq, PingResp, PubAck, PubComp, PubRec, PubRecReason,
    PubRel, PublishProperties, QoS, RetainHandling, UnsubAck, UnsubAckReason, Unsubscribe,
    UserProperty,
};

use super::*;

// ---- Helpers --------------------------------------------------------------------------------

/// A CONNECT with a Receive Maximum.
fn with_receive_maximum(client_id: &str, max: u16) -> Connect {
    let mut c = connect(client_id);
    c.properties.receive_maximum = NonZeroU16::new(max);
    c
}

/// A CONNECT with a Maximum Packet Size.
fn with_max_packet(client_id: &str, max: u32) -> Connect {
    let mut c = connect(client_id);
    c.properties.maximum_packet_size = NonZeroU32::new(max);
    c
}

/// A SUBSCRIBE to one filter with these options and an optional Subscription Identifier.
fn subscribe_opts(id: u16, filter: &str, options: SubscriptionOptions, sub_id: u32) -> Subscribe {
    let mut s = subscribe(id, filter, options.qos);
    s.subscriptions[0].options = options;
    s.properties.subscription_identifier = NonZeroU32::new(sub_id);
    s
}

/// Subscription options: `qos`, Retain As Published and Retain Handling.
fn opts(
    qos: QoS,
    retain_as_published: bool,
    retain_handling: RetainHandling,
) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published,
        retain_handling,
    }
}

/// The same PUBLISH with RETAIN set.
fn retained(mut p: Publish) -> Publish {
    p.retain = true;
    p
}

/// The same PUBLISH with DUP set.
fn dup(mut p: Publish) -> Publish {
    p.dup = true;
    p
}

/// The same PUBLISH with a Topic Alias.
fn aliased(mut p: Publish, alias: u16) -> Publish {
    p.properties.topic_alias = NonZeroU16::new(alias);
    p
}

/// A PUBLISH with an empty Topic Name that uses Topic Alias `alias`.
fn by_alias(alias: u16, payload: &'static [u8]) -> Publish {
    let mut p = Publish::new(TopicName::empty(), Bytes::from_static(payload));
    p.properties.topic_alias = NonZeroU16::new(alias);
    p
}

/// The same PUBLISH with a Message Expiry Interval.
fn expiring(mut p: Publish, secs: u32) -> Publish {
    p.properties.message_expiry_interval = Some(secs);
    p
}

/// When a PUBLISH was sent, noted by [`Script::send_noting_time`].
type SentAt = std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>;

/// Checks a forwarded PUBLISH on `topic_name`: its Message Expiry Interval is the `sent` one
/// minus the time the message waited in the Server. It waited at least `waited` seconds (the
/// case let them pass), so the interval is at most `sent - waited`; and no longer than the
/// time since it was published (measured here, rounded up), so it is at least `sent` minus
/// that. Nothing bounds how long the wait may take.
fn counted_down(
    p: &Packet,
    topic_name: &str,
    sent: u32,
    waited: u32,
    sent_at: &SentAt,
) -> Result<(), String> {
    let Packet::Publish(p) = p else {
        return Err("not a PUBLISH".to_owned());
    };
    if p.topic() != topic_name {
        return Err(format!("a PUBLISH to {}", p.topic()));
    }
    let since = sent_at
        .lock()
        .expect("lock")
        .expect("the PUBLISH was sent")
        .elapsed();
    let lowest = sent.saturating_sub(u32::try_from(since.as_secs() + 1).unwrap_or(u32::MAX));
    match p.properties.message_expiry_interval {
        Some(left) if (lowest..=sent - waited).contains(&left) => Ok(()),
        other => Err(format!(
            "Message Expiry Interval {other:?}, not {lowest}..={} ({since:?} after it was \
             published)",
            sent - waited
        )),
    }
}

impl Script {
    /// Sends `publish` on `conn` (MQTT 5) and notes the time into `sent_at`.
    fn send_noting_time(self, conn: usize, publish: Publish, sent_at: &SentAt) -> Self {
        let sent_at = std::sync::Arc::clone(sent_at);
        let what = format!("{publish:?}, noting the time");
        self.send_later(conn, &what, move || {
            let mut buf = BytesMut::new();
            Packet::from(publish.clone()).encode(ProtocolVersion::V5, &mut buf);
            *sent_at.lock().expect("lock") = Some(std::time::Instant::now());
            Ok(buf.to_vec())
        })
    }
}

/// A PUBACK with `reason`.
fn puback(id: u16, reason: u8) -> PubAck {
    let mut a = PubAck::new(pid(id));
    a.reason = mqtt5_codec::PubAckReason::from_u8(reason).expect("a PUBACK reason code");
    a
}

/// A PUBREC with `reason`.
fn pubrec(id: u16, reason: u8) -> PubRec {
    let mut a = PubRec::new(pid(id));
    a.reason = PubRecReason::from_u8(reason).expect("a PUBREC reason code");
    a
}

/// A PUBLISH check: the Subscription Identifiers it carries, sorted.
fn sub_ids(p: &Packet) -> Result<(QoS, Vec<u32>), String> {
    match p {
        Packet::Publish(p) => {
            let mut ids: Vec<u32> = p
                .properties
                .subscription_identifiers
                .iter()
                .map(|i| i.get())
                .collect();
            ids.sort_unstable();
            Ok((p.qos(), ids))
        }
        other => Err(format!("not a PUBLISH: {:?}", other.packet_type())),
    }
}

pub(super) const CASES: &[Case] = &[
    // ---- §3.3.1 Fixed header: DUP, QoS, RETAIN ----
    // [MQTT-3.3.1-1] The DUP flag MUST be set to 1 when the Server re-delivers a PUBLISH.
    Case::new(
        "publish_redelivery_on_reconnect_sets_dup",
        &["MQTT-3.3.1-1"],
        |s| {
            s.connect_with(0, persistent("dup-sub", true))
                .subscribe(0, 1, "dup/t", QoS::AtLeastOnce)
                .connect(1, "dup-pub")
                .send(1, publish("dup/t", b"m", QoS::AtLeastOnce, 1))
                .expect(1, puback(1, 0x00))
                .expect(0, publish("dup/t", b"m", QoS::AtLeastOnce, 1))
                .send(0, normal_disconnect())
                .expect_closed(0)
                .connect_with(2, persistent("dup-sub", false))
                .expect(2, dup(publish("dup/t", b"m", QoS::AtLeastOnce, 1)))
                .send(2, PubAck::new(pid(1)))
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-3.3.1-1] The same for QoS 2: the unacknowledged PUBLISH comes again with DUP=1;
    // once PUBREC arrived, the PUBREL (not the PUBLISH) is what is sent again.
    Case::new(
        "publish_qos2_redelivery_sets_dup",
        &["MQTT-3.3.1-1", "MQTT-3.6.2-1"],
        |s| {
            s.connect_with(0, persistent("dup2-sub", true))
                .subscribe(0, 1, "dup2/t", QoS::ExactlyOnce)
                .connect(1, "dup2-pub")
                .send(1, publish("dup2/t", b"m", QoS::ExactlyOnce, 1))
                .expect(1, pubrec(1, 0x00))
                .expect(0, publish("dup2/t", b"m", QoS::ExactlyOnce, 1))
                .send(0, normal_disconnect())
                .expect_closed(0)
                .connect_with(2, persistent("dup2-sub", false))
                .expect(2, dup(publish("dup2/t", b"m", QoS::ExactlyOnce, 1)))
                .send(2, PubRec::new(pid(1)))
                .expect(2, PubRel::new(pid(1)))
                .send(2, normal_disconnect())
                .expect_closed(2)
                .connect_with(3, persistent("dup2-sub", false))
                .expect(3, PubRel::new(pid(1)))
                .send(3, PubComp::new(pid(1)))
                .expect_quiet(3, 300)
        },
    ),
    // [MQTT-3.3.1-2] The DUP flag MUST be 0 for QoS 0: a QoS 0 PUBLISH with DUP is malformed.
    Case::new(
        "publish_qos0_with_dup_is_malformed",
        &["MQTT-3.3.1-2"],
        |s| {
            s.connect(0, "dup0")
                .send_hex(0, "38 04 00 01 74 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.3.1-3] The outgoing DUP is set only by whether the outgoing PUBLISH is a
    // retransmission: a DUP=1 PUBLISH from a client reaches subscribers with DUP=0, and a QoS 0
    // delivery never carries DUP ([MQTT-3.3.1-2]).
    Case::new(
        "publish_incoming_dup_is_not_propagated",
        &["MQTT-3.3.1-3", "MQTT-3.3.1-2"],
        |s| {
            s.connect(0, "dupfw-sub1")
                .subscribe(0, 1, "dupfw/t", QoS::AtLeastOnce)
                .connect(1, "dupfw-sub0")
                .subscribe(1, 1, "dupfw/t", QoS::AtMostOnce)
                .connect(2, "dupfw-pub")
                .send(2, dup(publish("dupfw/t", b"m", QoS::AtLeastOnce, 7)))
                .expect(2, puback(7, 0x00))
                .expect(0, publish("dupfw/t", b"m", QoS::AtLeastOnce, 1))
                .expect(1, publish("dupfw/t", b"m", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.3.1-4] A PUBLISH MUST NOT have both QoS bits set: it is a Malformed Packet.
    Case::new("publish_qos3_is_malformed", &["MQTT-3.3.1-4"], |s| {
        s.connect(0, "qos3")
            .send_hex(0, "36 06 00 01 74 00 01 00")
            .expect_disconnect(0, DisconnectReason::MalformedPacket)
    }),
    // [MQTT-3.3.1-5] RETAIN=1: the Server MUST replace any existing retained message for the
    // topic and store the Application Message.
    Case::new(
        "publish_retain_replaces_the_retained_message",
        &["MQTT-3.3.1-5"],
        |s| {
            s.connect(0, "ret-pub")
                .send(0, retained(publish("ret/t", b"one", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .send(0, retained(publish("ret/t", b"two", QoS::AtLeastOnce, 2)))
                .expect(0, puback(2, 0x10))
                .connect(1, "ret-sub")
                .subscribe(1, 1, "ret/t", QoS::AtLeastOnce)
                .expect(1, retained(publish("ret/t", b"two", QoS::AtLeastOnce, 1)))
                .send(1, PubAck::new(pid(1)))
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.3.1-6] A zero-byte retained PUBLISH is processed normally (current subscribers
    // get it) but removes the retained message: later subscribers receive none.
    Case::new(
        "publish_retain_empty_payload_clears_the_retained_message",
        &["MQTT-3.3.1-6"],
        |s| {
            s.connect(0, "clr-pub")
                .send(0, retained(publish("clr/t", b"keep", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .connect(1, "clr-sub")
                .subscribe(1, 1, "clr/t", QoS::AtMostOnce)
                .expect(1, retained(publish("clr/t", b"keep", QoS::AtMostOnce, 0)))
                .send(0, retained(publish("clr/t", b"", QoS::AtLeastOnce, 2)))
                .expect(0, puback(2, 0x00))
                .expect(1, publish("clr/t", b"", QoS::AtMostOnce, 0))
                .connect(2, "clr-late")
                .subscribe(2, 1, "clr/t", QoS::AtMostOnce)
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-3.3.1-7] A retained message with a zero-byte Payload MUST NOT be stored.
    Case::new(
        "publish_retain_empty_payload_is_not_stored",
        &["MQTT-3.3.1-7"],
        |s| {
            s.connect(0, "empty-pub")
                .send(0, retained(publish("empty/t", b"", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .connect(1, "empty-sub")
                .subscribe(1, 1, "empty/#", QoS::AtLeastOnce)
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.3.1-8] RETAIN=0: the Server MUST NOT store the message as retained, nor remove or
    // replace the existing retained message.
    Case::new(
        "publish_retain_zero_neither_stores_nor_replaces",
        &["MQTT-3.3.1-8"],
        |s| {
            s.connect(0, "r0-pub")
                .send(0, retained(publish("r0/t", b"old", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .send(0, publish("r0/t", b"new", QoS::AtLeastOnce, 2))
                .expect(0, puback(2, 0x10))
                .send(0, publish("r0/u", b"other", QoS::AtLeastOnce, 3))
                .expect(0, puback(3, 0x10))
                .send(0, publish("r0/t", b"", QoS::AtLeastOnce, 4))
                .expect(0, puback(4, 0x10))
                .connect(1, "r0-sub")
                .subscribe(1, 1, "r0/#", QoS::AtMostOnce)
                .expect(1, retained(publish("r0/t", b"old", QoS::AtMostOnce, 0)))
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.3.1-9] Retain Handling 0: the Server MUST send the matching retained messages,
    // on every SUBSCRIBE.
    Case::new(
        "publish_retain_handling_0_sends_retained_each_time",
        &["MQTT-3.3.1-9"],
        |s| {
            let o = opts(QoS::AtMostOnce, false, RetainHandling::SendOnSubscribe);
            s.connect(0, "rh0-pub")
                .send(0, retained(publish("rh0/t", b"r", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .connect(1, "rh0-sub")
                .send(1, subscribe_opts(1, "rh0/+", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .expect(1, retained(publish("rh0/t", b"r", QoS::AtMostOnce, 0)))
                .send(1, subscribe_opts(2, "rh0/+", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .expect(1, retained(publish("rh0/t", b"r", QoS::AtMostOnce, 0)))
        },
    ),
    // [MQTT-3.3.1-10] Retain Handling 1: retained messages are sent if the subscription is
    // new, and MUST NOT be sent if it already existed.
    Case::new(
        "publish_retain_handling_1_sends_retained_only_if_new",
        &["MQTT-3.3.1-10"],
        |s| {
            let o = opts(QoS::AtMostOnce, false, RetainHandling::SendIfNew);
            s.connect(0, "rh1-pub")
                .send(0, retained(publish("rh1/t", b"r", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .connect(1, "rh1-sub")
                .send(1, subscribe_opts(1, "rh1/+", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .expect(1, retained(publish("rh1/t", b"r", QoS::AtMostOnce, 0)))
                .send(1, subscribe_opts(2, "rh1/+", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.3.1-11] Retain Handling 2: the Server MUST NOT send the retained messages.
    Case::new(
        "publish_retain_handling_2_sends_no_retained",
        &["MQTT-3.3.1-11"],
        |s| {
            let o = opts(QoS::AtMostOnce, false, RetainHandling::DoNotSend);
            s.connect(0, "rh2-pub")
                .send(0, retained(publish("rh2/t", b"r", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .connect(1, "rh2-sub")
                .send(1, subscribe_opts(1, "rh2/+", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .expect_quiet(1, 300)
                // Later messages still flow.
                .send(0, publish("rh2/t", b"live", QoS::AtMostOnce, 0))
                .expect(1, publish("rh2/t", b"live", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.3.1-12] Retain As Published 0: the Server MUST forward with RETAIN=0.
    Case::new(
        "publish_retain_as_published_0_clears_retain",
        &["MQTT-3.3.1-12"],
        |s| {
            let o = opts(QoS::AtMostOnce, false, RetainHandling::SendOnSubscribe);
            s.connect(1, "rap0-sub")
                .send(1, subscribe_opts(1, "rap0/t", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .connect(0, "rap0-pub")
                .send(0, retained(publish("rap0/t", b"r", QoS::AtMostOnce, 0)))
                .expect(1, publish("rap0/t", b"r", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.3.1-13] Retain As Published 1: RETAIN MUST equal the received RETAIN flag.
    Case::new(
        "publish_retain_as_published_1_keeps_retain",
        &["MQTT-3.3.1-13"],
        |s| {
            let o = opts(QoS::AtMostOnce, true, RetainHandling::SendOnSubscribe);
            s.connect(1, "rap1-sub")
                .send(1, subscribe_opts(1, "rap1/t", o, 0))
                .expect_reason(1, PacketType::SubAck, 0)
                .connect(0, "rap1-pub")
                .send(0, retained(publish("rap1/t", b"r", QoS::AtMostOnce, 0)))
                .expect(1, retained(publish("rap1/t", b"r", QoS::AtMostOnce, 0)))
                .send(0, publish("rap1/t", b"n", QoS::AtMostOnce, 0))
                .expect(1, publish("rap1/t", b"n", QoS::AtMostOnce, 0))
        },
    ),
    // ---- §3.3.2 Variable header and properties ----
    // [MQTT-3.3.2-1] The Topic Name MUST be a UTF-8 Encoded String: ill-formed UTF-8 is a
    // Malformed Packet.
    Case::new(
        "publish_topic_not_utf8_is_malformed",
        &["MQTT-3.3.2-1"],
        |s| {
            s.connect(0, "t-utf8")
                .send_hex(0, "30 04 00 01 ff 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.3.2-1] (with [MQTT-1.5.4-2]) A Topic Name holding U+0000 is a Malformed Packet.
    Case::new(
        "publish_topic_with_null_is_malformed",
        &["MQTT-3.3.2-1"],
        |s| {
            s.connect(0, "t-null")
                .send_hex(0, "30 06 00 03 61 00 62 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.3.2-2] The Topic Name MUST NOT contain wildcards: DISCONNECT 0x90 (Topic Name
    // invalid), and nothing is delivered.
    Case::new(
        "publish_topic_with_multi_level_wildcard_is_refused",
        &["MQTT-3.3.2-2"],
        |s| {
            s.connect(1, "wild-sub")
                .subscribe(1, 1, "#", QoS::AtMostOnce)
                .connect(0, "wild-pub")
                .send_hex(0, "30 06 00 03 61 2f 23 00")
                .expect_disconnect(0, DisconnectReason::TopicNameInvalid)
                .expect_quiet(1, 200)
        },
    ),
    // [MQTT-3.3.2-2] Same for the single-level wildcard.
    Case::new(
        "publish_topic_with_single_level_wildcard_is_refused",
        &["MQTT-3.3.2-2"],
        |s| {
            s.connect(0, "wild1-pub")
                .send_hex(0, "32 08 00 03 61 2f 2b 00 01 00")
                .expect_disconnect(0, DisconnectReason::TopicNameInvalid)
        },
    ),
    // [MQTT-3.3.2-3] The Topic Name sent to a subscriber MUST match its Topic Filter.
    Case::new(
        "publish_forwarded_topic_matches_the_filter",
        &["MQTT-3.3.2-3"],
        |s| {
            s.connect(1, "match-sub")
                .subscribe(1, 1, "m/+/c/#", QoS::AtMostOnce)
                .connect(0, "match-pub")
                .send(0, publish("m/b/x", b"no", QoS::AtMostOnce, 0))
                .send(0, publish("m/b/c", b"yes", QoS::AtMostOnce, 0))
                .send(0, publish("m/b/c/d", b"yes2", QoS::AtMostOnce, 0))
                .expect(1, publish("m/b/c", b"yes", QoS::AtMostOnce, 0))
                .expect(1, publish("m/b/c/d", b"yes2", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.3.2-4], [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-17], [MQTT-3.3.2-18],
    // [MQTT-3.3.2-20] Payload Format Indicator, Response Topic, Correlation Data, User
    // Properties (all of them, in order) and Content Type reach subscribers unaltered.
    Case::new(
        "publish_properties_forwarded_unaltered",
        &[
            "MQTT-3.3.2-4",
            "MQTT-3.3.2-15",
            "MQTT-3.3.2-16",
            "MQTT-3.3.2-17",
            "MQTT-3.3.2-18",
            "MQTT-3.3.2-20",
        ],
        |s| {
            fn full() -> Publish {
                let mut p = publish("props/t", b"h\xc3\xa9llo", QoS::AtMostOnce, 0);
                p.properties = PublishProperties {
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    content_type: Some(
                        MqttString::try_from("text/plain; charset=utf-8").expect("valid"),
                    ),
                    response_topic: Some(topic("props/reply/1")),
                    correlation_data: Some(Bytes::from_static(b"\x00\x01\xffcorr")),
                    user_properties: vec![
                        UserProperty::new("k", "1").expect("valid"),
                        UserProperty::new("a", "2").expect("valid"),
                        UserProperty::new("k", "3").expect("valid"),
                        UserProperty::new("", "").expect("valid"),
                        UserProperty::new("k", "1").expect("valid"),
                    ],
                    ..PublishProperties::default()
                }
                .into();
                p
            }
            fn unspecified() -> Publish {
                let mut p = publish("props/t", b"\xff\xfe", QoS::AtMostOnce, 0);
                p.properties.payload_format_indicator = Some(PayloadFormat::Unspecified);
                p
            }
            s.connect(1, "props-sub")
                .subscribe(1, 1, "props/#", QoS::AtMostOnce)
                .connect(2, "props-sub2")
                .subscribe(2, 1, "props/t", QoS::AtMostOnce)
                .connect(0, "props-pub")
                .send(0, full())
                .send(0, unspecified())
                .expect(1, full())
                .expect(1, unspecified())
                .expect(2, full())
                .expect(2, unspecified())
        },
    ),
    // [MQTT-3.3.2-5] Once the Message Expiry Interval has passed before onward delivery to a
    // subscriber started, the Server MUST delete that subscriber's copy.
    Case::new(
        "publish_expired_message_is_not_delivered",
        &["MQTT-3.3.2-5"],
        |s| {
            s.connect_with(0, persistent("exp-sub", true))
                .subscribe(0, 1, "exp/t", QoS::AtLeastOnce)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .connect(1, "exp-pub")
                .send(
                    1,
                    expiring(publish("exp/t", b"gone", QoS::AtLeastOnce, 1), 1),
                )
                .expect(1, puback(1, 0x00))
                .send(1, publish("exp/t", b"kept", QoS::AtLeastOnce, 2))
                .expect(1, puback(2, 0x00))
                // Past the first message's 1 s Message Expiry Interval.
                .elapse(2100)
                .connect_with(2, persistent("exp-sub", false))
                .expect(2, publish("exp/t", b"kept", QoS::AtLeastOnce, 1))
                .send(2, PubAck::new(pid(1)))
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-3.3.2-6] The forwarded Message Expiry Interval MUST be the received value minus the
    // time the message waited in the Server.
    Case::new(
        "publish_message_expiry_counts_down_while_queued",
        &["MQTT-3.3.2-6"],
        |s| {
            let sent_at = SentAt::default();
            let published = std::sync::Arc::clone(&sent_at);
            s.connect_with(0, persistent("expd-sub", true))
                .subscribe(0, 1, "expd/t", QoS::AtLeastOnce)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .connect(1, "expd-pub")
                .send_noting_time(
                    1,
                    expiring(publish("expd/t", b"m", QoS::AtLeastOnce, 1), 60),
                    &sent_at,
                )
                .expect(1, puback(1, 0x00))
                // At least 3 s of the 60 s interval spent in the queue.
                .elapse(3000)
                .connect_with(2, persistent("expd-sub", false))
                .expect_that(2, "PUBLISH expd/t, 60 s minus its wait", move |p| {
                    counted_down(p, "expd/t", 60, 3, &published)
                })
        },
    ),
    // [MQTT-3.3.2-5], [MQTT-3.3.2-6] The same for retained messages: an expired one is not
    // sent to a new subscriber, and a live one carries the interval minus its time retained.
    Case::new(
        "publish_retained_message_expiry",
        &["MQTT-3.3.2-5", "MQTT-3.3.2-6"],
        |s| {
            let sent_at = SentAt::default();
            let published = std::sync::Arc::clone(&sent_at);
            s.connect(0, "rexp-pub")
                .send(
                    0,
                    expiring(retained(publish("rexp/a", b"a", QoS::AtLeastOnce, 1)), 1),
                )
                .expect(0, puback(1, 0x10))
                .send_noting_time(
                    0,
                    expiring(retained(publish("rexp/b", b"b", QoS::AtLeastOnce, 2)), 60),
                    &sent_at,
                )
                .expect(0, puback(2, 0x10))
                // Past rexp/a's 1 s Message Expiry Interval, and 2 s of rexp/b's.
                .elapse(2000)
                .connect(1, "rexp-sub")
                .subscribe(1, 1, "rexp/#", QoS::AtMostOnce)
                .expect_that(
                    1,
                    "retained PUBLISH rexp/b, 60 s minus its wait",
                    move |p| match p {
                        Packet::Publish(p) if !p.retain => Err("RETAIN 0".to_owned()),
                        _ => counted_down(p, "rexp/b", 60, 2, &published),
                    },
                )
                .expect_quiet(1, 300)
        },
    ),
    // [MQTT-3.3.2-7] Topic Alias mappings MUST NOT be carried from one Network Connection to
    // the next, even for the same session: an alias with an empty Topic Name that this
    // connection has not set is a Protocol Error.
    Case::new(
        "publish_topic_alias_not_carried_to_next_connection",
        &["MQTT-3.3.2-7"],
        |s| {
            s.connect_with(0, persistent("alias-conn", true))
                .send(0, aliased(publish("alias/t", b"1", QoS::AtLeastOnce, 1), 1))
                .expect(0, puback(1, 0x10))
                .send(0, by_alias(1, b"2"))
                .send(0, PingReq)
                .expect(0, PingResp)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .connect_with(1, persistent("alias-conn", false))
                .send(1, by_alias(1, b"3"))
                .expect_disconnect(1, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-4.13.2-1] A Topic Alias of 0 is not permitted ([MQTT-3.3.2-8], which binds every
    // sender; the Server's own aliases: `connect_topic_alias_within_maximum`): DISCONNECT
    // 0x94 (Topic Alias invalid), then close.
    Case::new(
        "publish_topic_alias_zero_is_invalid",
        &["MQTT-4.13.2-1"],
        |s| {
            s.connect(0, "alias0")
                .send_hex(0, "30 07 00 01 74 03 23 00 00")
                .expect_disconnect(0, DisconnectReason::TopicAliasInvalid)
        },
    ),
    // [MQTT-4.13.2-1] A Topic Alias above the Topic Alias Maximum in CONNACK ([MQTT-3.3.2-9]
    // binds the Client): DISCONNECT 0x94, then close.
    Case::new(
        "publish_topic_alias_above_maximum_is_invalid",
        &["MQTT-4.13.2-1"],
        |s| {
            s.open(0)
                .send(0, connect("alias-max"))
                .expect_that(0, "CONNACK with Topic Alias Maximum 2", |p| match p {
                    Packet::ConnAck(a) if a.properties.topic_alias_maximum == Some(2) => Ok(()),
                    _ => Err("wrong CONNACK".to_owned()),
                })
                .send(0, aliased(publish("am/t", b"x", QoS::AtMostOnce, 0), 3))
                .expect_disconnect(0, DisconnectReason::TopicAliasInvalid)
        },
    )
    .config("[broker]\ntopic_alias_maximum = 2\n"),
    // [MQTT-4.13.2-1] With Topic Alias Maximum 0 (absent from CONNACK) any alias is invalid.
    Case::new(
        "publish_topic_alias_when_aliases_are_off_is_invalid",
        &["MQTT-4.13.2-1"],
        |s| {
            s.open(0)
                .send(0, connect("alias-off"))
                .expect_that(0, "CONNACK without Topic Alias Maximum", |p| match p {
                    Packet::ConnAck(a)
                        if a.reason.as_u8() == 0
                            && a.properties.topic_alias_maximum.unwrap_or(0) == 0 =>
                    {
                        Ok(())
                    }
                    _ => Err("wrong CONNACK".to_owned()),
                })
                .send(0, aliased(publish("ao/t", b"x", QoS::AtMostOnce, 0), 1))
                .expect_disconnect(0, DisconnectReason::TopicAliasInvalid)
        },
    )
    .config("[broker]\ntopic_alias_maximum = 0\n"),
    // [MQTT-3.3.2-12] The Server MUST accept every Topic Alias from 1 to its Topic Alias
    // Maximum; a new Topic Name with a known alias remaps it.
    Case::new(
        "publish_topic_alias_every_value_up_to_maximum_accepted",
        &["MQTT-3.3.2-12"],
        |s| {
            s.connect(1, "alias-sub")
                .subscribe(1, 1, "al/#", QoS::AtMostOnce)
                .connect(0, "alias-pub")
                .send(0, aliased(publish("al/1", b"a", QoS::AtMostOnce, 0), 1))
                .send(0, aliased(publish("al/2", b"b", QoS::AtMostOnce, 0), 2))
                .send(0, aliased(publish("al/3", b"c", QoS::AtMostOnce, 0), 3))
                .send(0, by_alias(3, b"d"))
                .send(0, by_alias(2, b"e"))
                .send(0, by_alias(1, b"f"))
                .send(0, aliased(publish("al/x", b"g", QoS::AtMostOnce, 0), 1))
                .send(0, by_alias(1, b"h"))
                .expect(1, publish("al/1", b"a", QoS::AtMostOnce, 0))
                .expect(1, publish("al/2", b"b", QoS::AtMostOnce, 0))
                .expect(1, publish("al/3", b"c", QoS::AtMostOnce, 0))
                .expect(1, publish("al/3", b"d", QoS::AtMostOnce, 0))
                .expect(1, publish("al/2", b"e", QoS::AtMostOnce, 0))
                .expect(1, publish("al/1", b"f", QoS::AtMostOnce, 0))
                .expect(1, publish("al/x", b"g", QoS::AtMostOnce, 0))
                .expect(1, publish("al/x", b"h", QoS::AtMostOnce, 0))
        },
    )
    .config("[broker]\ntopic_alias_maximum = 3\n"),
    // [MQTT-3.3.2-12], [MQTT-4.13.2-1] With the default configuration the Server announces
    // its Topic Alias Maximum (64) and accepts alias 64; 65 is invalid.
    Case::new(
        "publish_topic_alias_default_maximum",
        &["MQTT-3.3.2-12", "MQTT-4.13.2-1"],
        |s| {
            s.open(0)
                .send(0, connect("alias-64"))
                .expect_that(0, "CONNACK with Topic Alias Maximum 64", |p| match p {
                    Packet::ConnAck(a) if a.properties.topic_alias_maximum == Some(64) => Ok(()),
                    _ => Err("wrong CONNACK".to_owned()),
                })
                .subscribe(0, 1, "a64/#", QoS::AtMostOnce)
                .send(0, aliased(publish("a64/t", b"1", QoS::AtMostOnce, 0), 64))
                .expect(0, publish("a64/t", b"1", QoS::AtMostOnce, 0))
                .send(0, by_alias(64, b"2"))
                .expect(0, publish("a64/t", b"2", QoS::AtMostOnce, 0))
                .send(0, aliased(publish("a64/t", b"3", QoS::AtMostOnce, 0), 65))
                .expect_disconnect(0, DisconnectReason::TopicAliasInvalid)
        },
    ),
    // [MQTT-3.3.2-11] The Server MUST NOT send a Topic Alias above the client's Topic Alias
    // Maximum (none at all when the client sent none).
    Case::new(
        "publish_server_topic_alias_within_client_maximum",
        &["MQTT-3.3.2-11"],
        |s| {
            let mut c = connect("salias-sub");
            c.properties.topic_alias_maximum = Some(1);
            s.connect_with(0, c)
                .subscribe(0, 1, "sa/#", QoS::AtMostOnce)
                .connect(1, "salias-plain")
                .subscribe(1, 1, "sa/#", QoS::AtMostOnce)
                .connect(2, "salias-pub")
                .send(2, publish("sa/a", b"1", QoS::AtMostOnce, 0))
                .send(2, publish("sa/b", b"2", QoS::AtMostOnce, 0))
                .send(2, publish("sa/a", b"3", QoS::AtMostOnce, 0))
                .send(2, publish("sa/b", b"4", QoS::AtMostOnce, 0))
                .expect(0, aliased(publish("sa/a", b"1", QoS::AtMostOnce, 0), 1))
                .expect(0, publish("sa/b", b"2", QoS::AtMostOnce, 0))
                .expect(0, by_alias(1, b"3"))
                .expect(0, publish("sa/b", b"4", QoS::AtMostOnce, 0))
                .expect(1, publish("sa/a", b"1", QoS::AtMostOnce, 0))
                .expect(1, publish("sa/b", b"2", QoS::AtMostOnce, 0))
                .expect(1, publish("sa/a", b"3", QoS::AtMostOnce, 0))
                .expect(1, publish("sa/b", b"4", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-3.3.2-13] The Response Topic MUST be a UTF-8 Encoded String: ill-formed UTF-8 is
    // a Malformed Packet.
    Case::new(
        "publish_response_topic_not_utf8_is_malformed",
        &["MQTT-3.3.2-13"],
        |s| {
            s.connect(0, "rt-utf8")
                .send_hex(0, "30 08 00 01 74 04 08 00 01 ff")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.3.2-14] The Response Topic MUST NOT contain wildcards: a Protocol Error.
    Case::new(
        "publish_response_topic_with_wildcard_is_a_protocol_error",
        &["MQTT-3.3.2-14"],
        |s| {
            s.connect(0, "rt-wild")
                .send_hex(0, "30 0a 00 01 74 06 08 00 03 61 2f 2b")
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // [MQTT-3.3.2-19] The Content Type MUST be a UTF-8 Encoded String: ill-formed UTF-8 is a
    // Malformed Packet.
    Case::new(
        "publish_content_type_not_utf8_is_malformed",
        &["MQTT-3.3.2-19"],
        |s| {
            s.connect(0, "ct-utf8")
                .send_hex(0, "30 09 00 01 74 05 03 00 02 c3 28")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // ---- §3.3.4 Actions ----
    // [MQTT-3.3.4-1] The receiver MUST answer as the QoS says: nothing for QoS 0, PUBACK for
    // QoS 1, PUBREC for QoS 2 (then PUBCOMP for the PUBREL).
    Case::new("publish_answer_follows_the_qos", &["MQTT-3.3.4-1"], |s| {
        s.connect(0, "answer")
            .send(0, publish("ans/t", b"0", QoS::AtMostOnce, 0))
            .expect_quiet(0, 300)
            .send(0, publish("ans/t", b"1", QoS::AtLeastOnce, 10))
            .expect(0, puback(10, 0x10))
            .send(0, publish("ans/t", b"2", QoS::ExactlyOnce, 11))
            .expect(0, pubrec(11, 0x10))
            .send(0, PubRel::new(pid(11)))
            .expect(0, PubComp::new(pid(11)))
    }),
    // [MQTT-3.3.4-2] Overlapping subscriptions: the message is delivered respecting the
    // highest QoS of all matching subscriptions.
    Case::new(
        "publish_overlapping_subscriptions_use_the_highest_qos",
        &["MQTT-3.3.4-2"],
        |s| {
            s.connect(0, "ovl-sub")
                .subscribe(0, 1, "ovl/#", QoS::AtLeastOnce)
                .subscribe(0, 2, "ovl/t", QoS::ExactlyOnce)
                .subscribe(0, 3, "ovl/+", QoS::AtMostOnce)
                .connect(1, "ovl-pub")
                .send(1, publish("ovl/t", b"m", QoS::ExactlyOnce, 1))
                .expect(1, pubrec(1, 0x00))
                .expect(0, publish("ovl/t", b"m", QoS::ExactlyOnce, 1))
        },
    ),
    // [MQTT-3.3.4-3], [MQTT-3.3.4-4] One copy for overlapping subscriptions carries the
    // Subscription Identifiers of every matching subscription that has one.
    Case::new(
        "publish_single_copy_carries_every_subscription_identifier",
        &["MQTT-3.3.4-3", "MQTT-3.3.4-4"],
        |s| {
            let o = SubscriptionOptions::new(QoS::AtMostOnce);
            s.connect(0, "sid-sub")
                .send(0, subscribe_opts(1, "sid/#", o, 1))
                .expect_reason(0, PacketType::SubAck, 0)
                .send(0, subscribe_opts(2, "sid/t", o, 268_435_455))
                .expect_reason(0, PacketType::SubAck, 0)
                .send(0, subscribe_opts(3, "sid/+", o, 0))
                .expect_reason(0, PacketType::SubAck, 0)
                .send(0, subscribe_opts(4, "+/t", o, 1))
                .expect_reason(0, PacketType::SubAck, 0)
                .connect(1, "sid-pub")
                .send(1, publish("sid/t", b"m", QoS::AtMostOnce, 0))
                .expect_that(
                    0,
                    "PUBLISH with identifiers 1, 1, 268435455",
                    |p| match sub_ids(p)? {
                        (QoS::AtMostOnce, ids) if ids == [1, 1, 268_435_455] => Ok(()),
                        other => Err(format!("{other:?}")),
                    },
                )
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-3.3.4-3] A retained message sent because of a SUBSCRIBE carries that
    // subscription's identifier.
    Case::new(
        "publish_retained_on_subscribe_carries_the_subscription_identifier",
        &["MQTT-3.3.4-3"],
        |s| {
            fn with_id() -> Publish {
                let mut p = retained(publish("sidr/t", b"r", QoS::AtMostOnce, 0));
                p.properties.subscription_identifiers = vec![NonZeroU32::new(42).expect("valid")];
                p
            }
            s.connect(0, "sidr-pub")
                .send(0, retained(publish("sidr/t", b"r", QoS::AtLeastOnce, 1)))
                .expect(0, puback(1, 0x10))
                .connect(1, "sidr-sub")
                .send(
                    1,
                    subscribe_opts(1, "sidr/#", SubscriptionOptions::new(QoS::AtMostOnce), 42),
                )
                .expect_reason(1, PacketType::SubAck, 0)
                .expect(1, with_id())
        },
    ),
    // [MQTT-3.3.4-5] With several PUBLISH packets (a shared and a non-shared subscription),
    // each carries the Subscription Identifier of its own subscription.
    Case::new(
        "publish_each_copy_carries_its_subscription_identifier",
        &["MQTT-3.3.4-5"],
        |s| {
            // The non-shared subscription is QoS 0 with identifier 1, the shared one QoS 1 with
            // identifier 2: each copy's QoS tells which subscription it is for.
            fn check(p: &Packet) -> Result<(), String> {
                match sub_ids(p)? {
                    (QoS::AtMostOnce, ids) if ids == [1] => Ok(()),
                    (QoS::AtLeastOnce, ids) if ids == [2] => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
            s.connect(0, "sid5-sub")
                .send(
                    0,
                    subscribe_opts(1, "sid5/t", SubscriptionOptions::new(QoS::AtMostOnce), 1),
                )
                .expect_reason(0, PacketType::SubAck, 0)
                .send(
                    0,
                    subscribe_opts(
                        2,
                        "$share/g/sid5/t",
                        SubscriptionOptions::new(QoS::AtLeastOnce),
                        2,
                    ),
                )
                .expect_reason(0, PacketType::SubAck, 1)
                .connect(1, "sid5-pub")
                .send(1, publish("sid5/t", b"m", QoS::AtLeastOnce, 1))
                .expect(1, puback(1, 0x00))
                .expect_that(0, "a copy with its own identifier", check)
                .expect_that(0, "a copy with its own identifier", check)
        },
    ),
    // [MQTT-4.13.1-1] A PUBLISH from a Client MUST NOT contain a Subscription Identifier
    // ([MQTT-3.3.4-6] binds the Client): a Protocol Error, the connection is closed, and the
    // message is not delivered.
    Case::new(
        "publish_from_client_with_subscription_identifier_is_a_protocol_error",
        &["MQTT-4.13.1-1"],
        |s| {
            fn bad() -> Publish {
                let mut p = publish("sidc/t", b"m", QoS::AtLeastOnce, 1);
                p.properties.subscription_identifiers = vec![NonZeroU32::new(5).expect("valid")];
                p
            }
            s.connect(1, "sidc-sub")
                .subscribe(1, 1, "sidc/t", QoS::AtMostOnce)
                .connect(0, "sidc-pub")
                .send(0, bad())
                .expect_disconnect(0, DisconnectReason::ProtocolError)
                .expect_quiet(1, 200)
        },
    ),
    // [MQTT-4.13.2-1] A Client sending more than Receive Maximum unacknowledged QoS 2
    // PUBLISH packets ([MQTT-3.3.4-7] binds the Client not to): DISCONNECT 0x93 (Receive
    // Maximum exceeded), then close.
    Case::new(
        "publish_beyond_receive_maximum_is_refused",
        &["MQTT-4.13.2-1"],
        |s| {
            s.open(0)
                .send(0, connect("rmax"))
                .expect_that(0, "CONNACK with Receive Maximum 2", |p| match p {
                    Packet::ConnAck(a)
                        if a.properties.receive_maximum.map(NonZeroU16::get) == Some(2) =>
                    {
                        Ok(())
                    }
                    _ => Err("wrong CONNACK".to_owned()),
                })
                .send(0, publish("rm/t", b"1", QoS::ExactlyOnce, 1))
                .expect(0, pubrec(1, 0x10))
                .send(0, publish("rm/t", b"2", QoS::ExactlyOnce, 2))
                .expect(0, pubrec(2, 0x10))
                // A completed flow frees its slot.
                .send(0, PubRel::new(pid(1)))
                .expect(0, PubComp::new(pid(1)))
                .send(0, publish("rm/t", b"3", QoS::ExactlyOnce, 3))
                .expect(0, pubrec(3, 0x10))
                .send(0, publish("rm/t", b"4", QoS::ExactlyOnce, 4))
                .expect_disconnect(0, DisconnectReason::ReceiveMaximumExceeded)
        },
    )
    .config("[broker]\nreceive_maximum = 2\n"),
    // [MQTT-3.3.4-9] The Server MUST NOT have more than the client's Receive Maximum QoS 1 and
    // QoS 2 PUBLISH packets unacknowledged.
    Case::new(
        "publish_server_respects_client_receive_maximum",
        &["MQTT-3.3.4-9"],
        |s| {
            s.connect_with(0, with_receive_maximum("rmc-sub", 2))
                .subscribe(0, 1, "rmc/#", QoS::ExactlyOnce)
                .connect(1, "rmc-pub")
                .send(1, publish("rmc/t", b"1", QoS::AtLeastOnce, 1))
                .expect(1, puback(1, 0x00))
                .send(1, publish("rmc/t", b"2", QoS::ExactlyOnce, 2))
                .expect(1, pubrec(2, 0x00))
                .send(1, publish("rmc/t", b"3", QoS::AtLeastOnce, 3))
                .expect(1, puback(3, 0x00))
                .expect(0, publish("rmc/t", b"1", QoS::AtLeastOnce, 1))
                .expect(0, publish("rmc/t", b"2", QoS::ExactlyOnce, 2))
                .expect_quiet(0, 300)
                .send(0, PubAck::new(pid(1)))
                .expect(0, publish("rmc/t", b"3", QoS::AtLeastOnce, 3))
                .expect_quiet(0, 300)
                // PUBREC success keeps the QoS 2 flow (and its slot) until PUBCOMP.
                .send(0, PubRec::new(pid(2)))
                .expect(0, PubRel::new(pid(2)))
                .send(1, publish("rmc/t", b"4", QoS::AtLeastOnce, 4))
                .expect(1, puback(4, 0x00))
                .expect_quiet(0, 300)
                .send(0, PubComp::new(pid(2)))
                .expect(0, publish("rmc/t", b"4", QoS::AtLeastOnce, 4))
        },
    ),
    // [MQTT-3.3.4-9] A PUBREC with a Reason Code of 0x80 or more ends the flow and frees its
    // slot in the client's Receive Maximum.
    Case::new(
        "pubrec_error_frees_the_receive_maximum_slot",
        &["MQTT-3.3.4-9"],
        |s| {
            s.connect_with(0, with_receive_maximum("rmr-sub", 1))
                .subscribe(0, 1, "rmr/t", QoS::ExactlyOnce)
                .connect(1, "rmr-pub")
                .send(1, publish("rmr/t", b"1", QoS::ExactlyOnce, 1))
                .expect(1, pubrec(1, 0x00))
                .send(1, publish("rmr/t", b"2", QoS::ExactlyOnce, 2))
                .expect(1, pubrec(2, 0x00))
                .expect(0, publish("rmr/t", b"1", QoS::ExactlyOnce, 1))
                .expect_quiet(0, 300)
                .send(0, pubrec(1, 0x80))
                .expect(0, publish("rmr/t", b"2", QoS::ExactlyOnce, 2))
        },
    ),
    // [MQTT-3.3.4-10] A full Receive Maximum window MUST NOT delay packets other than PUBLISH.
    Case::new(
        "publish_full_window_does_not_delay_other_packets",
        &["MQTT-3.3.4-10"],
        |s| {
            s.connect_with(0, with_receive_maximum("win-sub", 1))
                .subscribe(0, 1, "win/t", QoS::AtLeastOnce)
                .connect(1, "win-pub")
                .send(1, publish("win/t", b"1", QoS::AtLeastOnce, 1))
                .expect(1, puback(1, 0x00))
                .send(1, publish("win/t", b"2", QoS::AtLeastOnce, 2))
                .expect(1, puback(2, 0x00))
                .expect(0, publish("win/t", b"1", QoS::AtLeastOnce, 1))
                .send(0, PingReq)
                .expect(0, PingResp)
                .send(0, subscribe(2, "win/other", QoS::AtLeastOnce))
                .expect_reason(0, PacketType::SubAck, 1)
                .send(
                    0,
                    Unsubscribe {
                        packet_id: pid(3),
                        properties: Default::default(),
                        filters: vec![TopicFilter::try_from("win/other").expect("valid")],
                    },
                )
                .expect(
                    0,
                    UnsubAck {
                        packet_id: pid(3),
                        properties: Default::default(),
                        reasons: vec![UnsubAckReason::Success],
                    },
                )
                // The broker still answers the client's own QoS 2 flow.
                .send(0, publish("win/self", b"x", QoS::ExactlyOnce, 9))
                .expect(0, pubrec(9, 0x10))
                .send(0, PubRel::new(pid(9)))
                .expect(0, PubComp::new(pid(9)))
                .send(0, PubAck::new(pid(1)))
                .expect(0, publish("win/t", b"2", QoS::AtLeastOnce, 2))
        },
    ),
    // ---- §3.4 PUBACK ----
    // [MQTT-3.4.2-1] The Server's PUBACK uses PUBACK Reason Codes: 0x00, 0x10, 0x87, 0x90
    // and 0x99 here, each for what it means.
    Case::new("puback_reason_codes", &["MQTT-3.4.2-1"], |s| {
        fn bad_utf8() -> Publish {
            let mut p = publish("pa/t", b"\xc3\x28", QoS::AtLeastOnce, 5);
            p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
            p
        }
        s.connect(1, "pa-sub")
            .subscribe(1, 1, "pa/t", QoS::AtMostOnce)
            .connect(0, "pa-pub")
            .send(0, publish("pa/t", b"m", QoS::AtLeastOnce, 1))
            .expect(0, puback(1, 0x00))
            .expect(1, publish("pa/t", b"m", QoS::AtMostOnce, 0))
            .send(0, publish("pa/nobody", b"m", QoS::AtLeastOnce, 2))
            .expect(0, puback(2, 0x10))
            .send(0, publish("$SYS/pa", b"m", QoS::AtLeastOnce, 3))
            .expect(0, puback(3, 0x87))
            .send(0, publish("pa/a/b/c", b"m", QoS::AtLeastOnce, 4))
            .expect(0, puback(4, 0x90))
            .send(0, bad_utf8())
            .expect(0, puback(5, 0x99))
            // None of the refused messages reached the subscriber.
            .expect_quiet(1, 200)
    })
    .config("[broker]\nmax_topic_levels = 3\n"),
    // [MQTT-3.4.2-2], [MQTT-3.4.2-3] No Reason String or User Property may make the PUBACK
    // exceed the client's Maximum Packet Size: with 5 bytes, a refusal is the bare 5-byte form.
    Case::new(
        "puback_fits_the_client_maximum_packet_size",
        &["MQTT-3.4.2-2", "MQTT-3.4.2-3"],
        |s| {
            s.connect_with(0, with_max_packet("pa-small", 5))
                .send(0, publish("$SYS/small", b"m", QoS::AtLeastOnce, 1))
                .expect_hex(0, "40 03 00 01 87")
                .send(0, publish("pa-small/t", b"m", QoS::AtLeastOnce, 2))
                .expect_hex(0, "40 03 00 02 10")
        },
    ),
    // ---- §3.5 PUBREC ----
    // [MQTT-3.5.2-1] The Server's PUBREC uses PUBREC Reason Codes: 0x00, 0x10, 0x87, 0x90 and
    // 0x99 here; a refused QoS 2 message leaves no flow behind (PUBREL gets 0x92).
    Case::new("pubrec_reason_codes", &["MQTT-3.5.2-1"], |s| {
        fn bad_utf8() -> Publish {
            let mut p = publish("pr/t", b"\xff", QoS::ExactlyOnce, 5);
            p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
            p
        }
        s.connect(1, "pr-sub")
            .subscribe(1, 1, "pr/t", QoS::AtMostOnce)
            .connect(0, "pr-pub")
            .send(0, publish("pr/t", b"m", QoS::ExactlyOnce, 1))
            .expect(0, pubrec(1, 0x00))
            .expect(1, publish("pr/t", b"m", QoS::AtMostOnce, 0))
            .send(0, publish("pr/nobody", b"m", QoS::ExactlyOnce, 2))
            .expect(0, pubrec(2, 0x10))
            .send(0, publish("$SYS/pr", b"m", QoS::ExactlyOnce, 3))
            .expect(0, pubrec(3, 0x87))
            .send(0, publish("pr/a/b/c", b"m", QoS::ExactlyOnce, 4))
            .expect(0, pubrec(4, 0x90))
            .send(0, bad_utf8())
            .expect(0, pubrec(5, 0x99))
            .send(0, PubRel::new(pid(3)))
            .expect(0, pubcomp(3, 0x92))
            .expect_quiet(1, 200)
    })
    .config("[broker]\nmax_topic_levels = 3\n"),
    // [MQTT-3.5.2-2], [MQTT-3.5.2-3] No Reason String or User Property may make the PUBREC
    // exceed the client's Maximum Packet Size.
    Case::new(
        "pubrec_fits_the_client_maximum_packet_size",
        &["MQTT-3.5.2-2", "MQTT-3.5.2-3"],
        |s| {
            s.connect_with(0, with_max_packet("pr-small", 5))
                .send(0, publish("$SYS/small", b"m", QoS::ExactlyOnce, 1))
                .expect_hex(0, "50 03 00 01 87")
                .send(0, publish("pr-small/t", b"m", QoS::ExactlyOnce, 2))
                .expect_hex(0, "50 03 00 02 10")
        },
    ),
    // ---- §3.6 PUBREL ----
    // [MQTT-3.6.1-1] PUBREL flags other than 0010 are malformed: the Server closes the
    // connection.
    Case::new(
        "pubrel_with_wrong_flags_is_malformed",
        &["MQTT-3.6.1-1"],
        |s| {
            s.connect(0, "rel-flags")
                .send(0, publish("rf/t", b"m", QoS::ExactlyOnce, 1))
                .expect(0, pubrec(1, 0x10))
                .send_hex(0, "60 02 00 01")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.6.1-1] Same with all four flag bits set.
    Case::new(
        "pubrel_with_flags_1111_is_malformed",
        &["MQTT-3.6.1-1"],
        |s| {
            s.connect(0, "rel-flags2")
                .send_hex(0, "6f 02 00 01")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // [MQTT-3.6.2-1] The Server's PUBREL uses PUBREL Reason Codes: 0x00 for a known QoS 2
    // delivery, 0x92 (Packet Identifier not found) for a PUBREC it does not know.
    Case::new("pubrel_reason_codes", &["MQTT-3.6.2-1"], |s| {
        s.connect(0, "rel-sub")
            .subscribe(0, 1, "rel/t", QoS::ExactlyOnce)
            .connect(1, "rel-pub")
            .send(1, publish("rel/t", b"m", QoS::ExactlyOnce, 1))
            .expect(1, pubrec(1, 0x00))
            .expect(0, publish("rel/t", b"m", QoS::ExactlyOnce, 1))
            .send(0, PubRec::new(pid(1)))
            .expect(0, PubRel::new(pid(1)))
            .send(0, PubComp::new(pid(1)))
            .send(0, PubRec::new(pid(7)))
            .expect(0, pubrel(7, 0x92))
    }),
    // [MQTT-3.6.2-2], [MQTT-3.6.2-3] No Reason String or User Property may make the PUBREL
    // exceed the client's Maximum Packet Size (8 bytes: just the PUBLISH it receives).
    Case::new(
        "pubrel_fits_the_client_maximum_packet_size",
        &["MQTT-3.6.2-2", "MQTT-3.6.2-3"],
        |s| {
            s.connect_with(0, with_max_packet("rel-small", 8))
                .subscribe(0, 1, "t", QoS::ExactlyOnce)
                .connect(1, "rel-small-pub")
                .send(1, publish("t", b"", QoS::ExactlyOnce, 1))
                .expect(1, pubrec(1, 0x00))
                .expect_hex(0, "34 06 00 01 74 00 01 00")
                .send(0, PubRec::new(pid(1)))
                .expect_hex(0, "62 02 00 01")
                .send(0, PubRec::new(pid(9)))
                .expect_hex(0, "62 03 00 09 92")
        },
    ),
    // ---- §3.7 PUBCOMP ----
    // [MQTT-3.7.2-1] The Server's PUBCOMP uses PUBCOMP Reason Codes: 0x00 for a known flow,
    // 0x92 (Packet Identifier not found) for an unknown one, or one already completed.
    Case::new("pubcomp_reason_codes", &["MQTT-3.7.2-1"], |s| {
        s.connect(0, "comp")
            .send(0, publish("comp/t", b"m", QoS::ExactlyOnce, 1))
            .expect(0, pubrec(1, 0x10))
            .send(0, PubRel::new(pid(1)))
            .expect(0, PubComp::new(pid(1)))
            .send(0, PubRel::new(pid(1)))
            .expect(0, pubcomp(1, 0x92))
            .send(0, PubRel::new(pid(2)))
            .expect(0, pubcomp(2, 0x92))
    }),
    // [MQTT-3.7.2-2], [MQTT-3.7.2-3] No Reason String or User Property may make the PUBCOMP
    // exceed the client's Maximum Packet Size.
    Case::new(
        "pubcomp_fits_the_client_maximum_packet_size",
        &["MQTT-3.7.2-2", "MQTT-3.7.2-3"],
        |s| {
            s.connect_with(0, with_max_packet("comp-small", 5))
                .send(0, publish("cs/t", b"m", QoS::ExactlyOnce, 1))
                .expect_hex(0, "50 03 00 01 10")
                .send(0, PubRel::new(pid(1)))
                .expect_hex(0, "70 02 00 01")
                .send(0, PubRel::new(pid(9)))
                .expect_hex(0, "70 03 00 09 92")
        },
    ),
];

/// A PUBREL with `reason`.
fn pubrel(id: u16, reason: u8) -> PubRel {
    let mut a = PubRel::new(pid(id));
    a.reason = mqtt5_codec::PubRelReason::from_u8(reason).expect("a PUBREL reason code");
    a
}

/// A PUBCOMP with `reason`.
fn pubcomp(id: u16, reason: u8) -> PubComp {
    let mut a = PubComp::new(pid(id));
    a.reason = mqtt5_codec::PubCompReason::from_u8(reason).expect("a PUBCOMP reason code");
    a
}

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[
    na(
        "MQTT-3.3.2-10",
        "binds the Client only: a Client must accept every Topic Alias up to the maximum it sent \
         in CONNECT; the Server's side is MQTT-3.3.2-11/12",
    ),
    na(
        "MQTT-3.3.2-9",
        "binds the Client only: it sends no Topic Alias above the Server's Topic Alias Maximum. \
         The Server's reaction (DISCONNECT 0x94, then close) is under MQTT-4.13.2-1: \
         `publish_topic_alias_above_maximum_is_invalid`, \
         `publish_topic_alias_when_aliases_are_off_is_invalid`, \
         `publish_topic_alias_default_maximum`",
    ),
    na(
        "MQTT-3.3.4-6",
        "binds the Client only: its PUBLISH packets carry no Subscription Identifier. The \
         Server's reaction (DISCONNECT 0x82, then close, nothing delivered) is under \
         MQTT-4.13.1-1: `publish_from_client_with_subscription_identifier_is_a_protocol_error`",
    ),
    na(
        "MQTT-3.3.4-7",
        "binds the Client only: it keeps no more than Receive Maximum QoS 1 and 2 PUBLISH \
         packets unacknowledged. The Server's reaction (DISCONNECT 0x93, then close) is under \
         MQTT-4.13.2-1: `publish_beyond_receive_maximum_is_refused`",
    ),
    na(
        "MQTT-3.3.4-8",
        "binds the Client only: a Client must not hold back non-PUBLISH packets while its \
         Receive Maximum window is full; no Server reaction is defined. The Server's side is \
         MQTT-3.3.4-10",
    ),
];
