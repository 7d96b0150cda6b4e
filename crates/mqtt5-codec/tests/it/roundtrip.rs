//! Property tests for every packet type and every protocol version (`CONTRIBUTING.md`, "Tests"):
//! encode then decode gives the packet back, `encoded_len` is exact, every strict prefix is
//! `Ok(None)`, and any split of a stream of packets decodes to the same packets.

// The strategies fill property structs one field per line so each line pairs with one element
// of the strategy tuple above it.
#![allow(clippy::field_reassign_with_default)]

use core::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubAckProperties, SubscribeProperties, UnsubAckProperties,
    UnsubscribeProperties, WillProperties,
};
use mqtt5_codec::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop::sample::select(&VERSIONS[..])
}

fn text() -> impl Strategy<Value = MqttString> {
    "[a-zA-Z0-9 _./é€\u{1F600}\u{FEFF}-]{0,12}".prop_map(|s| MqttString::try_from(s).unwrap())
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn topic() -> impl Strategy<Value = TopicName> {
    "[a-z0-9$/é]{1,16}".prop_map(|s| TopicName::try_from(s.as_str()).unwrap())
}

fn filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![Just("+".to_string()), "[a-z0-9$é]{0,5}"];
    (vec(level, 1..5), any::<bool>(), of("[a-z0-9]{1,6}")).prop_map(|(levels, hash, share)| {
        let mut f = levels.join("/");
        if hash {
            f.push_str(if f.is_empty() { "#" } else { "/#" });
        }
        if f.is_empty() {
            f.push('a');
        }
        if let Some(share) = share {
            f = format!("$share/{share}/{f}");
        }
        TopicFilter::try_from(f.as_str()).unwrap()
    })
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|v| PacketId::new(v).unwrap())
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (text(), text()).prop_map(|(name, value)| UserProperty { name, value }),
        0..3,
    )
}

fn nz16() -> impl Strategy<Value = NonZeroU16> {
    (1u16..).prop_map(|v| NonZeroU16::new(v).unwrap())
}

fn nz32() -> impl Strategy<Value = NonZeroU32> {
    (1u32..).prop_map(|v| NonZeroU32::new(v).unwrap())
}

fn sub_id() -> impl Strategy<Value = NonZeroU32> {
    (1u32..=VARINT_MAX).prop_map(|v| NonZeroU32::new(v).unwrap())
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    prop_oneof![Just(PayloadFormat::Unspecified), Just(PayloadFormat::Utf8)]
}

fn auth_pair() -> impl Strategy<Value = (Option<MqttString>, Option<Bytes>)> {
    // Authentication Data needs an Authentication Method.
    of((text(), of(binary()))).prop_map(|p| match p {
        Some((m, d)) => (Some(m), d),
        None => (None, None),
    })
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        (of(any::<u32>()), of(nz16()), of(nz32()), of(any::<u16>())),
        (of(any::<bool>()), of(any::<bool>()), auth_pair()),
        user_properties(),
    )
        .prop_map(|((sei, rm, mps, tam), (rri, rpi, (am, ad)), up)| {
            let mut p = ConnectProperties::default();
            p.session_expiry_interval = sei;
            p.receive_maximum = rm;
            p.maximum_packet_size = mps;
            p.topic_alias_maximum = tam;
            p.request_response_information = rri;
            p.request_problem_information = rpi;
            p.authentication_method = am;
            p.authentication_data = ad;
            p.user_properties = up;
            p
        })
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        (of(any::<u32>()), of(payload_format()), of(any::<u32>())),
        (of(text()), of(topic()), of(binary())),
        user_properties(),
    )
        .prop_map(|((wdi, pfi, mei), (ct, rt, cd), up)| {
            let mut p = WillProperties::default();
            p.will_delay_interval = wdi;
            p.payload_format_indicator = pfi;
            p.message_expiry_interval = mei;
            p.content_type = ct;
            p.response_topic = rt;
            p.correlation_data = cd;
            p.user_properties = up;
            p
        })
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    (
        (any::<bool>(), any::<u16>(), text()),
        of((qos(), any::<bool>(), will_properties(), topic(), binary())),
        (of(text()), of(binary())),
        connect_properties(),
    )
        .prop_map(
            move |((clean_start, keep_alive, client_id), will, (username, password), props)| {
                // Before MQTT 5 a password needs a user name ([MQTT-3.1.2-22] of 3.1.1).
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::from(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties: if v5 {
                        props
                    } else {
                        ConnectProperties::default()
                    },
                    client_id,
                    will: will.map(|(qos, retain, properties, topic, payload)| Will {
                        qos,
                        retain,
                        properties: if v5 {
                            properties
                        } else {
                            WillProperties::default()
                        },
                        topic,
                        payload,
                    }),
                    username,
                    password,
                })
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            of(any::<u32>()),
            of(nz16()),
            of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
            of(any::<bool>()),
        ),
        (of(nz32()), of(text()), of(any::<u16>()), of(text())),
        (
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
        ),
        (of(text()), of(text()), auth_pair(), user_properties()),
    )
        .prop_map(
            |(
                (sei, rm, mq, ra),
                (mps, aci, tam, rs),
                (wsa, sia, ssa, ska),
                (ri, sr, (am, ad), up),
            )| {
                let mut p = ConnAckProperties::default();
                p.session_expiry_interval = sei;
                p.receive_maximum = rm;
                p.maximum_qos = mq;
                p.retain_available = ra;
                p.maximum_packet_size = mps;
                p.assigned_client_identifier = aci;
                p.topic_alias_maximum = tam;
                p.reason_string = rs;
                p.wildcard_subscription_available = wsa;
                p.subscription_identifiers_available = sia;
                p.shared_subscription_available = ssa;
                p.server_keep_alive = ska;
                p.response_information = ri;
                p.server_reference = sr;
                p.authentication_method = am;
                p.authentication_data = ad;
                p.user_properties = up;
                p
            },
        )
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons: Vec<ConnAckReason> = if v.is_v5() {
        ConnAckReason::ALL.to_vec()
    } else {
        (0..=5)
            .filter_map(ConnAckReason::from_v3_return_code)
            .collect()
    };
    (
        any::<bool>(),
        prop::sample::select(reasons),
        connack_properties(),
    )
        .prop_map(move |(sp, reason, props)| {
            Packet::from(ConnAck {
                session_present: sp && reason == ConnAckReason::Success,
                reason,
                properties: if v.is_v5() {
                    props
                } else {
                    ConnAckProperties::default()
                },
            })
        })
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        (of(payload_format()), of(any::<u32>()), of(nz16())),
        (of(topic()), of(binary()), of(text())),
        vec(sub_id(), 0..3),
        user_properties(),
    )
        .prop_map(|((pfi, mei, ta), (rt, cd, ct), sids, up)| {
            let mut p = PublishProperties::default();
            p.payload_format_indicator = pfi;
            p.message_expiry_interval = mei;
            p.topic_alias = ta;
            p.response_topic = rt;
            p.correlation_data = cd;
            p.content_type = ct;
            p.subscription_identifiers = sids;
            p.user_properties = up;
            p
        })
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        (any::<bool>(), any::<bool>(), qos(), packet_id()),
        topic(),
        any::<bool>(),
        publish_properties(),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(
            move |((dup, retain, qos, id), topic, drop_topic, props, payload)| {
                let props = if v.is_v5() {
                    props
                } else {
                    PublishProperties::default()
                };
                // An empty topic is allowed only with a Topic Alias (MQTT 5 §3.3.2.1).
                let topic = if drop_topic && props.topic_alias.is_some() {
                    TopicName::empty()
                } else {
                    topic
                };
                let delivery = Delivery::new(qos, id);
                let mut p = Publish::new(topic, Bytes::from(payload));
                p.dup = dup && qos != QoS::AtMostOnce;
                p.retain = retain;
                p.delivery = delivery;
                p.properties = props.into();
                Packet::from(p)
            },
        )
}

fn ack_properties(v: ProtocolVersion) -> impl Strategy<Value = AckProperties> {
    (of(text()), user_properties()).prop_map(move |(rs, up)| {
        let mut p = AckProperties::default();
        if v.is_v5() {
            p.reason_string = rs;
            p.user_properties = up;
        }
        p
    })
}

macro_rules! ack_strategy {
    ($fn:ident, $ty:ident, $reason:ident) => {
        fn $fn(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
            let reasons = if v.is_v5() {
                $reason::ALL.to_vec()
            } else {
                vec![$reason::Success]
            };
            (
                packet_id(),
                prop::sample::select(reasons),
                ack_properties(v),
            )
                .prop_map(|(packet_id, reason, properties)| {
                    Packet::from($ty {
                        packet_id,
                        reason,
                        properties,
                    })
                })
        }
    };
}

ack_strategy!(puback, PubAck, PubAckReason);
ack_strategy!(pubrec, PubRec, PubRecReason);
ack_strategy!(pubrel, PubRel, PubRelReason);
ack_strategy!(pubcomp, PubComp, PubCompReason);

fn retain_handling() -> impl Strategy<Value = RetainHandling> {
    prop_oneof![
        Just(RetainHandling::SendOnSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend)
    ]
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let sub = (
        filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling(),
    )
        .prop_map(move |(filter, qos, nl, rap, rh)| {
            let options = if v.is_v5() {
                SubscriptionOptions {
                    qos,
                    // [MQTT-3.8.3-4]: No Local is a Protocol Error on a shared subscription.
                    no_local: nl && !filter.is_shared(),
                    retain_as_published: rap,
                    retain_handling: rh,
                }
            } else {
                SubscriptionOptions::new(qos)
            };
            Subscription { filter, options }
        });
    (packet_id(), of(sub_id()), user_properties(), vec(sub, 1..5)).prop_map(
        move |(packet_id, sid, up, subscriptions)| {
            let mut properties = SubscribeProperties::default();
            if v.is_v5() {
                properties.subscription_identifier = sid;
                properties.user_properties = up;
            }
            Packet::from(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        },
    )
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons: Vec<SubAckReason> = if v.is_v5() {
        SubAckReason::ALL.to_vec()
    } else {
        vec![
            SubAckReason::GrantedQoS0,
            SubAckReason::GrantedQoS1,
            SubAckReason::GrantedQoS2,
            SubAckReason::UnspecifiedError,
        ]
    };
    (
        packet_id(),
        of(text()),
        user_properties(),
        vec(prop::sample::select(reasons), 1..6),
    )
        .prop_map(move |(packet_id, rs, up, reasons)| {
            let mut properties = SubAckProperties::default();
            if v.is_v5() {
                properties.reason_string = rs;
                properties.user_properties = up;
            }
            Packet::from(SubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (packet_id(), user_properties(), vec(filter(), 1..5)).prop_map(
        move |(packet_id, up, filters)| {
            let mut properties = UnsubscribeProperties::default();
            if v.is_v5() {
                properties.user_properties = up;
            }
            Packet::from(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        of(text()),
        user_properties(),
        vec(prop::sample::select(UnsubAckReason::ALL.to_vec()), 1..6),
    )
        .prop_map(move |(packet_id, rs, up, reasons)| {
            let mut properties = UnsubAckProperties::default();
            let mut reasons = reasons;
            if v.is_v5() {
                properties.reason_string = rs;
                properties.user_properties = up;
            } else {
                // MQTT 3.1.1 UNSUBACK has no payload.
                reasons.clear();
            }
            Packet::from(UnsubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        prop::sample::select(DisconnectReason::ALL.to_vec()),
        (of(any::<u32>()), of(text()), of(text())),
        user_properties(),
    )
        .prop_map(move |(reason, (sei, rs, sr), up)| {
            if !v.is_v5() {
                return Packet::from(Disconnect::new(DisconnectReason::NormalDisconnection));
            }
            let mut properties = DisconnectProperties::default();
            properties.session_expiry_interval = sei;
            properties.reason_string = rs;
            properties.server_reference = sr;
            properties.user_properties = up;
            Packet::from(Disconnect { reason, properties })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        prop::sample::select(AuthReason::ALL.to_vec()),
        auth_pair(),
        of(text()),
        user_properties(),
    )
        .prop_map(|(reason, (am, ad), rs, up)| {
            let mut properties = AuthProperties::default();
            properties.authentication_method = am;
            properties.authentication_data = ad;
            properties.reason_string = rs;
            properties.user_properties = up;
            Packet::from(Auth { reason, properties })
        })
}

/// Any packet that exists in `v`, with only the content `v` can carry.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        puback(v),
        pubrec(v),
        pubrel(v),
        pubcomp(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq(PingReq)),
        Just(Packet::PingResp(PingResp)),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

fn encode(v: ProtocolVersion, p: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    p.encode(v, &mut buf);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_gives_the_packet_back((v, p) in versioned_packet()) {
        let mut buf = encode(v, &p);
        let decoded = Decoder::new(v).decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(p));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encoded_len_is_exact((v, p) in versioned_packet()) {
        prop_assert_eq!(encode(v, &p).len(), p.encoded_len(v));
    }

    #[test]
    fn decoding_is_limited_by_max_packet_size((v, p) in versioned_packet()) {
        let bytes = encode(v, &p);
        let len = u32::try_from(bytes.len()).unwrap();
        let exact = Decoder::new(v).with_max_packet_size(len);
        prop_assert!(exact.decode(&mut bytes.clone()).unwrap().is_some());
        // One byte less than the packet is refused from the fixed header alone.
        let header_len = 1 + varint_len(len - 1 - 1).min(4);
        let mut header = BytesMut::from(&bytes[..header_len.min(bytes.len())]);
        let tight = Decoder::new(v).with_max_packet_size(len - 1);
        let refused = tight.decode(&mut header);
        prop_assert!(
            matches!(refused, Err(Error::PacketTooLarge { .. })),
            "expected PacketTooLarge, got {refused:?}"
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete((v, p) in versioned_packet()) {
        let bytes = encode(v, &p).freeze();
        let decoder = Decoder::new(v);
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            prop_assert_eq!(decoder.decode(&mut buf), Ok(None), "prefix of {} bytes", cut);
            prop_assert_eq!(&buf[..], &bytes[..cut], "a prefix must not be consumed");
        }
    }

    #[test]
    fn any_split_of_a_stream_decodes_the_same(
        (v, packets) in version().prop_flat_map(|v| vec(packet(v), 1..8).prop_map(move |ps| (v, ps))),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(v, &mut stream);
        }
        let stream = stream.freeze();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let decoder = Decoder::new(v);
        let mut input = BytesMut::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for cut in cuts {
            input.extend_from_slice(&stream[start..cut]);
            start = cut;
            while let Some(p) = decoder.decode(&mut input).unwrap() {
                decoded.push(p);
            }
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(input.is_empty());
    }

    #[test]
    fn detached_publish_is_equal_and_owns_its_bytes(p in publish(ProtocolVersion::V5)) {
        let Packet::Publish(publish) = p else { unreachable!() };
        let mut buf = encode(ProtocolVersion::V5, &Packet::Publish(publish));
        let frame_start = buf.as_ptr() as usize;
        let frame_end = frame_start + buf.len();
        let Some(Packet::Publish(decoded)) = Decoder::default().decode(&mut buf).unwrap() else {
            unreachable!()
        };
        let detached = decoded.detach();
        prop_assert_eq!(&detached, &decoded);
        let inside = |b: &[u8]| {
            let p = b.as_ptr() as usize;
            !b.is_empty() && p >= frame_start && p < frame_end
        };
        prop_assert!(!inside(detached.payload()));
        prop_assert!(!inside(detached.topic().as_bytes()));
        if let Some(cd) = &detached.properties.correlation_data {
            prop_assert!(!inside(cd));
        }
        // The decoded original is zero-copy: its payload is a slice of the frame.
        prop_assert!(decoded.payload().is_empty() || inside(decoded.payload()));
        prop_assert!(decoded.topic().is_empty() || inside(decoded.topic().as_bytes()));
        // Its topic and payload share one handle: `payload_bytes` is a slice of the frame.
        let payload = decoded.payload_bytes();
        prop_assert!(payload.is_empty() || inside(&payload));
    }
}

#[test]
fn every_version_and_packet_type_is_generated() {
    // Guards the strategies above: each version must produce every packet type it has.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for v in VERSIONS {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3000 {
            let p = packet(v).new_tree(&mut runner).unwrap().current();
            seen.insert(p.packet_type() as u8);
        }
        let expected = if v.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{v:?} generated {seen:?}");
    }
}
