//! Behaviour of the broker core, driven through the deterministic simulation in `harness.rs`.
//! Each test is named after the behaviour it checks and cites the spec statement.

mod auth;
mod backpressure;
mod barrier;
mod harness;
mod properties;
mod security;

use std::num::NonZeroU32;
use std::time::Duration;

use harness::*;
use mqtt5_broker::{Config, QueuePolicy};
use mqtt5_codec::{
    ConnAckReason, Disconnect, DisconnectReason, Packet, PacketId, PingReq, ProtocolVersion,
    PubAck, PubAckReason, PubComp, PubRec, PubRel, QoS, RetainHandling, SubAckReason,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAckReason, Unsubscribe, Will,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V31: ProtocolVersion = ProtocolVersion::V3_1;

fn connack(p: Packet) -> Box<mqtt5_codec::ConnAck> {
    match p {
        Packet::ConnAck(a) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn disconnect_reason(p: Packet) -> DisconnectReason {
    match p {
        Packet::Disconnect(d) => d.reason,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

// ---- CONNECT ----

#[test]
fn client_records_are_persisted_unless_turned_off() {
    for records in [true, false] {
        let mut sim = Sim::new(Config {
            client_records: records,
            ..quiet_config()
        });
        let conn = sim.connect(ProtocolVersion::V5, "c1", true);
        sim.lose(conn);
        let ops = sim
            .persisted
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    mqtt5_store::StoreOp::ClientConnected(_)
                        | mqtt5_store::StoreOp::ClientDisconnected { .. }
                )
            })
            .count();
        assert_eq!(
            ops,
            if records { 2 } else { 0 },
            "client_records = {records}"
        );
        assert_eq!(
            sim.store.state().clients.contains_key("c1"),
            records,
            "client_records = {records}"
        );
    }
}

#[test]
fn connack_carries_every_server_property_mqtt_3_2_2() {
    let mut sim = Sim::new(Config {
        max_keep_alive: Some(30),
        max_session_expiry: 3600,
        ..quiet_config()
    });
    let mut c = persistent_connect("c1", true, 7200);
    c.keep_alive = 0;
    let conn = sim.connect_with(c);
    let ack = connack(sim.expect(conn));
    assert_eq!(ack.reason, ConnAckReason::Success);
    assert!(!ack.session_present);
    let p = &ack.properties;
    assert_eq!(
        p.session_expiry_interval,
        Some(3600),
        "capped expiry is sent back"
    );
    assert_eq!(p.receive_maximum.map(|r| r.get()), Some(1024));
    assert_eq!(p.maximum_packet_size.map(|m| m.get()), Some(1 << 20));
    assert_eq!(p.topic_alias_maximum, Some(64));
    assert_eq!(p.wildcard_subscription_available, Some(true));
    assert_eq!(p.subscription_identifiers_available, Some(true));
    assert_eq!(p.shared_subscription_available, Some(true));
    assert_eq!(
        p.server_keep_alive,
        Some(30),
        "[MQTT-3.2.2-21] server keep alive"
    );
}

#[test]
fn clients_of_every_version_connect() {
    let mut sim = Sim::new(quiet_config());
    for (v, id) in [(V5, "five"), (V311, "four"), (V31, "three")] {
        sim.connect(v, id, true);
    }
    assert_eq!(sim.broker.connected_clients(), 3);
}

#[test]
fn mqtt31_client_id_over_23_characters_is_rejected_with_return_code_2() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.connect_with(connect_packet(V31, "abcdefghijklmnopqrstuvwxyz", true));
    let ack = connack(sim.expect(conn));
    assert_eq!(ack.reason, ConnAckReason::ClientIdentifierNotValid);
    assert!(sim.is_closed(conn));
}

#[test]
fn empty_client_id_gets_an_assigned_identifier_mqtt_3_1_3_6() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.connect_with(connect_packet(V5, "", true));
    let ack = connack(sim.expect(conn));
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("[MQTT-3.1.3-7]");
    assert!(id.starts_with("mqtt5-") && id.len() == 6 + 16, "{id}");
}

#[test]
fn v311_empty_client_id_without_clean_session_is_rejected_mqtt_3_1_3_8() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.connect_with(connect_packet(V311, "", false));
    assert_eq!(
        connack(sim.expect(conn)).reason,
        ConnAckReason::ClientIdentifierNotValid
    );
    assert!(sim.is_closed(conn));
    // With Clean Session it is accepted.
    let conn = sim.connect_with(connect_packet(V311, "", true));
    assert_eq!(connack(sim.expect(conn)).reason, ConnAckReason::Success);
}

#[test]
fn anonymous_client_is_refused_when_anonymous_access_is_off() {
    let mut sim = Sim::new(Config {
        allow_anonymous: false,
        ..quiet_config()
    });
    let conn = sim.connect_with(connect_packet(V5, "anon", true));
    assert_eq!(
        connack(sim.expect(conn)).reason,
        ConnAckReason::NotAuthorized
    );
    assert!(sim.is_closed(conn));
    let conn = sim.connect_with(connect_packet(V311, "anon", true));
    assert_eq!(connack(sim.expect(conn)).reason.v3_return_code(), 5);
}

#[test]
fn first_packet_other_than_connect_closes_the_connection_mqtt_3_1_0_1() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.open(V5);
    sim.send(conn, Packet::PingReq(PingReq));
    assert!(sim.recv(conn).is_none(), "no answer before CONNECT");
    assert!(sim.is_closed(conn));
}

#[test]
fn second_connect_is_a_protocol_error_mqtt_3_1_0_2() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.connect(V5, "twice", true);
    sim.send(
        conn,
        Packet::Connect(Box::new(connect_packet(V5, "twice", true))),
    );
    assert_eq!(
        disconnect_reason(sim.expect(conn)),
        DisconnectReason::ProtocolError
    );
    assert!(sim.is_closed(conn));
}

#[test]
fn connection_without_connect_is_closed_at_the_connect_timeout() {
    let mut sim = Sim::new(Config {
        connect_timeout: Duration::from_secs(5),
        ..quiet_config()
    });
    let conn = sim.open(V5);
    sim.advance(Duration::from_secs(4));
    assert!(!sim.is_closed(conn));
    sim.advance(Duration::from_secs(2));
    assert!(sim.is_closed(conn));
    assert!(sim.recv(conn).is_none());
}

#[test]
fn same_client_id_takes_over_and_old_connection_gets_0x8e_mqtt_3_1_4_3() {
    let mut sim = Sim::new(quiet_config());
    let old = sim.connect(V5, "dup", true);
    let new = sim.connect(V5, "dup", false);
    assert_eq!(
        disconnect_reason(sim.expect(old)),
        DisconnectReason::SessionTakenOver
    );
    assert!(sim.is_closed(old));
    assert!(!sim.is_closed(new));
    assert_eq!(sim.broker.connected_clients(), 1);
}

#[test]
fn connect_and_disconnect_are_recorded_in_the_store() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.connect(V311, "recorded", true);
    sim.advance(Duration::from_secs(3));
    sim.send(
        conn,
        Packet::Disconnect(Box::new(Disconnect::new(
            DisconnectReason::NormalDisconnection,
        ))),
    );
    let rec = sim.store.state().clients["recorded"].clone();
    assert_eq!(rec.protocol, V311);
    assert_eq!(rec.connect_count, 1);
    assert_eq!(rec.peer, "127.0.0.1:40001");
    assert_eq!(rec.last_connect_ms, 1_700_000_000_000);
    assert_eq!(rec.last_disconnect_ms, Some(1_700_000_003_000));
    assert_eq!(
        rec.last_disconnect_reason.as_deref(),
        Some("client disconnected")
    );
}

// ---- keep alive ----

#[test]
fn silent_client_is_disconnected_after_one_and_a_half_keep_alives_mqtt_3_1_2_22() {
    let mut sim = Sim::new(quiet_config());
    let mut c = connect_packet(V5, "ka", true);
    c.keep_alive = 10;
    let conn = sim.connect_with(c);
    sim.expect(conn);
    sim.advance(Duration::from_secs(14));
    sim.send(conn, Packet::PingReq(PingReq));
    assert!(matches!(sim.expect(conn), Packet::PingResp(_)));
    sim.advance(Duration::from_secs(14));
    assert!(!sim.is_closed(conn), "the ping reset the timer");
    sim.advance(Duration::from_secs(2));
    assert_eq!(
        disconnect_reason(sim.expect(conn)),
        DisconnectReason::KeepAliveTimeout
    );
    assert!(sim.is_closed(conn));
}

#[test]
fn server_keep_alive_overrides_the_clients_value_mqtt_3_1_2_21() {
    let mut sim = Sim::new(Config {
        max_keep_alive: Some(5),
        ..quiet_config()
    });
    let mut c = connect_packet(V5, "ska", true);
    c.keep_alive = 600;
    let conn = sim.connect_with(c);
    assert_eq!(
        connack(sim.expect(conn)).properties.server_keep_alive,
        Some(5)
    );
    sim.advance(Duration::from_millis(7_600));
    assert!(sim.is_closed(conn));
}

// ---- PUBLISH ----

#[test]
fn qos1_publish_is_acknowledged_and_delivered() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "a/b", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "a/b", b"hello", QoS::AtLeastOnce, 7);
    match sim.expect(publisher) {
        Packet::PubAck(a) => {
            assert_eq!(a.packet_id.get(), 7);
            assert_eq!(a.reason, PubAckReason::Success);
        }
        other => panic!("{other:?}"),
    }
    let p = sim.expect_publish(sub);
    assert_eq!(
        (p.topic(), p.payload(), p.qos()),
        ("a/b", &b"hello"[..], QoS::AtLeastOnce)
    );
}

#[test]
fn qos1_publish_without_subscribers_gets_0x10() {
    let mut sim = Sim::new(quiet_config());
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "nobody", b"x", QoS::AtLeastOnce, 1);
    match sim.expect(publisher) {
        Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::NoMatchingSubscribers),
        other => panic!("{other:?}"),
    }
}

#[test]
fn delivered_qos_is_the_minimum_of_publish_and_subscription_mqtt_3_8_4_8() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "t/0", QoS::AtMostOnce);
    sim.subscribe(sub, "t/2", QoS::ExactlyOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t/0", b"x", QoS::ExactlyOnce, 1);
    sim.publish(publisher, "t/2", b"x", QoS::AtLeastOnce, 2);
    assert_eq!(sim.expect_publish(sub).qos(), QoS::AtMostOnce);
    assert_eq!(sim.expect_publish(sub).qos(), QoS::AtLeastOnce);
}

#[test]
fn qos2_duplicate_before_pubrel_is_not_routed_again_mqtt_4_3_3_10() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "q2", QoS::ExactlyOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "q2", b"once", QoS::ExactlyOnce, 9);
    assert!(matches!(sim.expect(publisher), Packet::PubRec(r) if r.packet_id.get() == 9));
    // The client did not see PUBREC and resends with DUP.
    let mut again = mqtt5_codec::Publish::new(TopicName::try_from("q2").unwrap(), &b"once"[..]);
    again.delivery = mqtt5_codec::Delivery::ExactlyOnce(PacketId::new(9).unwrap());
    again.dup = true;
    sim.send(publisher, Packet::Publish(again));
    assert!(matches!(sim.expect(publisher), Packet::PubRec(_)));
    sim.send(
        publisher,
        Packet::PubRel(PubRel::new(PacketId::new(9).unwrap())),
    );
    match sim.expect(publisher) {
        Packet::PubComp(c) => assert_eq!(c.reason.as_u8(), 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sim.drain(sub)
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count(),
        1
    );
    // A PUBREL for an unknown id gets 0x92.
    sim.send(
        publisher,
        Packet::PubRel(PubRel::new(PacketId::new(9).unwrap())),
    );
    match sim.expect(publisher) {
        Packet::PubComp(c) => assert_eq!(c.reason.as_u8(), 0x92),
        other => panic!("{other:?}"),
    }
}

#[test]
fn qos2_outbound_flow_completes_with_pubrec_pubrel_pubcomp() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "q2", QoS::ExactlyOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "q2", b"x", QoS::ExactlyOnce, 1);
    let p = sim.expect_publish(sub);
    let id = p.delivery.packet_id().unwrap();
    sim.send(sub, Packet::PubRec(PubRec::new(id)));
    assert!(matches!(sim.expect(sub), Packet::PubRel(r) if r.packet_id == id));
    sim.send(sub, Packet::PubComp(PubComp::new(id)));
    assert!(sim.recv(sub).is_none());
}

#[test]
fn v311_publisher_reaches_v5_subscriber_and_back() {
    let mut sim = Sim::new(quiet_config());
    let five = sim.connect(V5, "five", true);
    let four = sim.connect(V311, "four", true);
    let three = sim.connect(V31, "three", true);
    sim.subscribe(five, "x/#", QoS::AtLeastOnce);
    sim.subscribe(four, "x/#", QoS::AtLeastOnce);
    sim.subscribe(three, "x/#", QoS::AtLeastOnce);
    sim.publish(four, "x/from4", b"4", QoS::AtLeastOnce, 1);
    sim.publish(five, "x/from5", b"5", QoS::AtMostOnce, 0);
    for conn in [five, three] {
        let got: Vec<String> = sim
            .drain(conn)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.topic().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(got, ["x/from4", "x/from5"]);
    }
}

#[test]
fn receive_maximum_exceeded_disconnects_with_0x93_mqtt_3_3_4_9() {
    let mut sim = Sim::new(Config {
        receive_maximum: 2,
        ..quiet_config()
    });
    let publisher = sim.connect(V5, "pub", true);
    for id in 1..=2 {
        sim.publish(publisher, "t", b"x", QoS::ExactlyOnce, id);
        sim.expect(publisher);
    }
    sim.publish(publisher, "t", b"x", QoS::ExactlyOnce, 3);
    assert_eq!(
        disconnect_reason(sim.expect(publisher)),
        DisconnectReason::ReceiveMaximumExceeded
    );
}

#[test]
fn topic_alias_above_the_maximum_disconnects_with_0x94_mqtt_3_3_2_9() {
    let mut sim = Sim::new(Config {
        topic_alias_maximum: 2,
        ..quiet_config()
    });
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("t").unwrap(), &b"x"[..]);
    p.properties.topic_alias = core::num::NonZeroU16::new(3);
    sim.send(publisher, Packet::Publish(p));
    assert_eq!(
        disconnect_reason(sim.expect(publisher)),
        DisconnectReason::TopicAliasInvalid
    );
}

#[test]
fn subscription_identifier_from_a_client_is_a_protocol_error_mqtt_3_3_4_6() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "t", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("t").unwrap(), &b"x"[..]);
    p.properties.subscription_identifiers = vec![NonZeroU32::new(5).unwrap()];
    sim.send(publisher, Packet::Publish(p));
    assert_eq!(
        disconnect_reason(sim.expect(publisher)),
        DisconnectReason::ProtocolError
    );
    assert!(sim.is_closed(publisher));
    assert!(sim.recv(sub).is_none(), "the message is not delivered");
}

#[test]
fn inbound_topic_alias_is_resolved() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "long/topic", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    let alias = core::num::NonZeroU16::new(1);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("long/topic").unwrap(), &b"1"[..]);
    p.properties.topic_alias = alias;
    sim.send(publisher, Packet::Publish(p));
    let mut p = mqtt5_codec::Publish::new(TopicName::empty(), &b"2"[..]);
    p.properties.topic_alias = alias;
    sim.send(publisher, Packet::Publish(p));
    for payload in [b"1", b"2"] {
        let got = sim.expect_publish(sub);
        assert_eq!((got.topic(), got.payload()), ("long/topic", &payload[..]));
    }
}

#[test]
fn qos_above_maximum_qos_disconnects_with_0x9b_mqtt_3_2_2_11() {
    let mut sim = Sim::new(Config {
        maximum_qos: QoS::AtLeastOnce,
        ..quiet_config()
    });
    let publisher = sim.connect_with(connect_packet(V5, "pub", true));
    let ack = connack(sim.expect(publisher));
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    sim.publish(publisher, "t", b"x", QoS::ExactlyOnce, 1);
    assert_eq!(
        disconnect_reason(sim.expect(publisher)),
        DisconnectReason::QoSNotSupported
    );
}

#[test]
fn will_beyond_the_servers_capabilities_is_refused_mqtt_3_2_2_12_13() {
    // Will QoS above Maximum QoS: CONNACK 0x9B, then close.
    let mut sim = Sim::new(Config {
        maximum_qos: QoS::AtMostOnce,
        ..quiet_config()
    });
    let c = sim.connect_with(will_connect("w", None, 0));
    let ack = connack(sim.expect(c));
    assert_eq!(ack.reason, ConnAckReason::QoSNotSupported);
    assert!(!ack.session_present);
    assert!(sim.is_closed(c));
    // Will Retain without retained messages: CONNACK 0x9A, then close.
    let mut sim = Sim::new(Config {
        retain_available: false,
        ..quiet_config()
    });
    let mut connect = will_connect("w", None, 0);
    if let Some(will) = &mut connect.will {
        will.retain = true;
    }
    let c = sim.connect_with(connect);
    assert_eq!(
        connack(sim.expect(c)).reason,
        ConnAckReason::RetainNotSupported
    );
    assert!(sim.is_closed(c));
}

#[test]
fn refusing_connack_fits_the_clients_maximum_packet_size_mqtt_3_2_2_19() {
    let mut sim = Sim::new(quiet_config());
    let mut connect = connect_packet(V5, "c", true);
    connect.properties.maximum_packet_size = NonZeroU32::new(8);
    // A refusal that would carry a Reason String: too big for 8 bytes, so it goes.
    connect.properties.authentication_method = Some("X-UNKNOWN".try_into().unwrap());
    let c = sim.connect_with(connect);
    let packet = sim.expect(c);
    assert!(packet.encoded_len(V5) <= 8, "{packet:?}");
    let ack = connack(packet);
    assert_eq!(ack.reason, ConnAckReason::BadAuthenticationMethod);
    assert_eq!(ack.properties.reason_string, None);
}

#[test]
fn retain_when_unavailable_disconnects_with_0x9a_mqtt_3_2_2_14() {
    let mut sim = Sim::new(Config {
        retain_available: false,
        ..quiet_config()
    });
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("t").unwrap(), &b"x"[..]);
    p.retain = true;
    sim.send(publisher, Packet::Publish(p));
    assert_eq!(
        disconnect_reason(sim.expect(publisher)),
        DisconnectReason::RetainNotSupported
    );
}

#[test]
fn message_expiry_is_decremented_and_expired_messages_are_dropped_mqtt_3_3_2_5() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect_with(persistent_connect("sub", true, 3600));
    sim.expect(sub);
    sim.subscribe(sub, "e/#", QoS::AtLeastOnce);
    sim.lose(sub);
    let publisher = sim.connect(V5, "pub", true);
    for (topic, expiry) in [("e/short", 5), ("e/long", 100)] {
        let mut p = mqtt5_codec::Publish::new(TopicName::try_from(topic).unwrap(), &b"x"[..]);
        p.delivery = mqtt5_codec::Delivery::AtLeastOnce(PacketId::new(1).unwrap());
        p.properties.message_expiry_interval = Some(expiry);
        sim.send(publisher, Packet::Publish(p));
    }
    sim.advance(Duration::from_secs(10));
    let sub = sim.connect_with(persistent_connect("sub", false, 3600));
    assert!(connack(sim.expect(sub)).session_present);
    let p = sim.expect_publish(sub);
    assert_eq!(p.topic(), "e/long");
    // [MQTT-3.3.2-6]: the interval is what is left.
    assert_eq!(p.properties.message_expiry_interval, Some(90));
    assert!(sim.recv(sub).is_none(), "the expired message was dropped");
}

#[test]
fn wildcards_do_not_match_dollar_topics_mqtt_4_7_2_1() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "#", QoS::AtMostOnce);
    sim.subscribe(sub, "+/x", QoS::AtMostOnce);
    let sys = sim.connect(V5, "sys", true);
    sim.subscribe(sys, "$SYS/#", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "$SYS/x", b"1", QoS::AtMostOnce, 0);
    assert!(
        sim.recv(sys).is_none(),
        "clients do not write the broker's $SYS"
    );
    sim.subscribe(sys, "$ops/#", QoS::AtMostOnce);
    sim.publish(publisher, "$ops/x", b"1", QoS::AtMostOnce, 0);
    assert!(sim.recv(sub).is_none());
    assert_eq!(sim.expect_publish(sys).topic(), "$ops/x");
}

#[test]
fn client_publish_to_sys_is_refused_with_0x87() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "c", true);
    sim.publish(c, "$SYS/broker/uptime", b"0", QoS::AtLeastOnce, 1);
    match sim.expect(c) {
        Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::NotAuthorized),
        other => panic!("{other:?}"),
    }
}

#[test]
fn disconnect_drops_its_reason_string_to_fit_the_clients_maximum_packet_size() {
    let mut sim = Sim::new(quiet_config());
    let mut c = connect_packet(V5, "tiny", true);
    c.properties.maximum_packet_size = core::num::NonZeroU32::new(8);
    let conn = sim.connect_with(c);
    sim.expect(conn);
    sim.send(
        conn,
        Packet::Connect(Box::new(connect_packet(V5, "tiny", true))),
    );
    match sim.expect(conn) {
        Packet::Disconnect(d) => {
            assert_eq!(d.reason, DisconnectReason::ProtocolError);
            assert_eq!(d.properties.reason_string, None);
        }
        other => panic!("{other:?}"),
    }
}

// ---- outbound options ----

#[test]
fn no_local_suppresses_own_messages_mqtt_3_8_3_3() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "self", true);
    let mut o = SubscriptionOptions::new(QoS::AtMostOnce);
    o.no_local = true;
    sim.subscribe_with(c, "t", o, None);
    sim.expect(c);
    sim.publish(c, "t", b"x", QoS::AtMostOnce, 0);
    assert!(sim.recv(c).is_none());
}

#[test]
fn retain_as_published_keeps_the_flag_mqtt_3_3_1_12() {
    let mut sim = Sim::new(quiet_config());
    let keep = sim.connect(V5, "keep", true);
    let mut o = SubscriptionOptions::new(QoS::AtMostOnce);
    o.retain_as_published = true;
    o.retain_handling = RetainHandling::DoNotSend;
    sim.subscribe_with(keep, "t", o, None);
    sim.expect(keep);
    let clear = sim.connect(V5, "clear", true);
    sim.subscribe(clear, "t", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("t").unwrap(), &b"x"[..]);
    p.retain = true;
    sim.send(publisher, Packet::Publish(p));
    assert!(sim.expect_publish(keep).retain);
    assert!(!sim.expect_publish(clear).retain, "[MQTT-3.3.1-13]");
}

#[test]
fn subscription_identifiers_are_sent_with_matching_messages_mqtt_3_3_4_3() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "ids", true);
    sim.subscribe_with(c, "a/+", SubscriptionOptions::new(QoS::AtMostOnce), Some(7));
    sim.expect(c);
    sim.subscribe_with(
        c,
        "a/#",
        SubscriptionOptions::new(QoS::AtLeastOnce),
        Some(9),
    );
    sim.expect(c);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "a/b", b"x", QoS::AtLeastOnce, 1);
    let p = sim.expect_publish(c);
    let mut ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [7, 9], "one delivery, both identifiers [MQTT-3.3.4-2]");
    assert_eq!(p.qos(), QoS::AtLeastOnce, "the highest granted QoS");
    assert!(sim.recv(c).is_none());
}

#[test]
fn message_properties_pass_through_unchanged_mqtt_3_3_2_17() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "rpc", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("rpc").unwrap(), &b"{}"[..]);
    p.properties = mqtt5_codec::PublishProperties {
        payload_format_indicator: Some(mqtt5_codec::PayloadFormat::Utf8),
        content_type: Some("application/json".try_into().unwrap()),
        response_topic: Some(TopicName::try_from("rpc/reply").unwrap()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
        user_properties: vec![mqtt5_codec::UserProperty::new("k", "v").unwrap()],
        ..Default::default()
    }
    .into();
    sim.send(publisher, Packet::Publish(p.clone()));
    let got = sim.expect_publish(sub);
    assert_eq!(*got.properties, *p.properties);
}

#[test]
fn outbound_topic_aliases_stay_within_the_clients_maximum_mqtt_3_3_2_10() {
    let mut sim = Sim::new(quiet_config());
    let mut c = connect_packet(V5, "alias", true);
    c.properties.topic_alias_maximum = Some(1);
    let sub = sim.connect_with(c);
    sim.expect(sub);
    sim.subscribe(sub, "#", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    for topic in ["one", "one", "two"] {
        sim.publish(publisher, topic, b"x", QoS::AtMostOnce, 0);
    }
    let first = sim.expect_publish(sub);
    assert_eq!(
        (first.topic(), first.properties.topic_alias.map(|a| a.get())),
        ("one", Some(1))
    );
    let second = sim.expect_publish(sub);
    assert_eq!(
        (
            second.topic(),
            second.properties.topic_alias.map(|a| a.get())
        ),
        ("", Some(1))
    );
    let third = sim.expect_publish(sub);
    assert_eq!((third.topic(), third.properties.topic_alias), ("two", None));
}

#[test]
fn message_larger_than_client_maximum_packet_size_is_dropped_mqtt_3_1_2_25() {
    let mut sim = Sim::new(quiet_config());
    let mut c = connect_packet(V5, "small", true);
    c.properties.maximum_packet_size = core::num::NonZeroU32::new(64);
    let sub = sim.connect_with(c);
    sim.expect(sub);
    sim.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t", &[0u8; 100], QoS::AtLeastOnce, 1);
    sim.publish(publisher, "t", b"fits", QoS::AtLeastOnce, 2);
    let p = sim.expect_publish(sub);
    assert_eq!(p.payload(), b"fits");
    assert!(sim.recv(sub).is_none());
}

#[test]
fn clients_receive_maximum_is_the_in_flight_window_mqtt_3_3_4_7() {
    let mut sim = Sim::new(quiet_config());
    let mut c = connect_packet(V5, "slow", true);
    c.properties.receive_maximum = core::num::NonZeroU16::new(2);
    let sub = sim.connect_with(c);
    sim.expect(sub);
    sim.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    for id in 1..=5 {
        sim.publish(publisher, "t", &[id as u8], QoS::AtLeastOnce, id);
    }
    let first = sim.drain(sub);
    assert_eq!(first.len(), 2, "only two in flight");
    let mut seen: Vec<u8> = Vec::new();
    for p in first {
        let Packet::Publish(p) = p else { panic!() };
        seen.push(p.payload()[0]);
        sim.send(
            sub,
            Packet::PubAck(PubAck::new(p.delivery.packet_id().unwrap())),
        );
    }
    while let Some(p) = sim.recv(sub) {
        let Packet::Publish(p) = p else { panic!() };
        seen.push(p.payload()[0]);
        sim.send(
            sub,
            Packet::PubAck(PubAck::new(p.delivery.packet_id().unwrap())),
        );
    }
    assert_eq!(seen, [1, 2, 3, 4, 5], "order kept [MQTT-4.6.0-5]");
}

// ---- retained ----

#[test]
fn retained_messages_are_set_replaced_and_cleared_mqtt_3_3_1_5() {
    let mut sim = Sim::new(quiet_config());
    let publisher = sim.connect(V5, "pub", true);
    let retain = |sim: &mut Sim, payload: &[u8]| {
        let mut p = mqtt5_codec::Publish::new(TopicName::try_from("r").unwrap(), payload.to_vec());
        p.retain = true;
        sim.send(publisher, Packet::Publish(p));
    };
    retain(&mut sim, b"first");
    retain(&mut sim, b"second");
    let a = sim.connect(V5, "a", true);
    sim.subscribe(a, "r", QoS::AtMostOnce);
    let p = sim.expect_publish(a);
    assert_eq!(
        (p.payload(), p.retain),
        (&b"second"[..], true),
        "[MQTT-3.3.1-9]"
    );
    retain(&mut sim, b"");
    assert_eq!(sim.broker.retained_count(), 0, "[MQTT-3.3.1-10]");
    let b = sim.connect(V5, "b", true);
    sim.subscribe(b, "r", QoS::AtMostOnce);
    assert!(sim.recv(b).is_none());
    assert!(sim.store.state().retained.is_empty());
}

#[test]
fn retain_handling_0_1_2_mqtt_3_3_1_9_to_11() {
    let mut sim = Sim::new(quiet_config());
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("r").unwrap(), &b"x"[..]);
    p.retain = true;
    sim.send(publisher, Packet::Publish(p));
    let c = sim.connect(V5, "c", true);
    let count = |sim: &mut Sim, handling| {
        let mut o = SubscriptionOptions::new(QoS::AtMostOnce);
        o.retain_handling = handling;
        sim.subscribe_with(c, "r", o, None);
        sim.drain(c)
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count()
    };
    assert_eq!(
        count(&mut sim, RetainHandling::SendIfNew),
        1,
        "new subscription"
    );
    assert_eq!(
        count(&mut sim, RetainHandling::SendIfNew),
        0,
        "existing subscription"
    );
    assert_eq!(count(&mut sim, RetainHandling::SendOnSubscribe), 1);
    assert_eq!(count(&mut sim, RetainHandling::DoNotSend), 0);
}

// ---- SUBSCRIBE / UNSUBSCRIBE ----

#[test]
fn subscribe_gives_one_reason_code_per_filter_mqtt_3_9_3_1() {
    let mut sim = Sim::new(Config {
        shared_subscriptions: false,
        maximum_qos: QoS::AtLeastOnce,
        ..quiet_config()
    });
    let c = sim.connect(V5, "c", true);
    let sub = mqtt5_codec::Subscribe {
        packet_id: PacketId::new(5).unwrap(),
        properties: Default::default(),
        subscriptions: ["a", "$share/g/b", "c"]
            .iter()
            .zip([QoS::AtMostOnce, QoS::AtMostOnce, QoS::ExactlyOnce])
            .map(|(f, q)| mqtt5_codec::Subscription {
                filter: TopicFilter::try_from(*f).unwrap(),
                options: SubscriptionOptions::new(q),
            })
            .collect(),
    };
    sim.send(c, Packet::Subscribe(sub));
    match sim.expect(c) {
        Packet::SubAck(a) => {
            assert_eq!(a.packet_id.get(), 5);
            assert_eq!(
                a.reasons,
                [
                    SubAckReason::GrantedQoS0,
                    SubAckReason::SharedSubscriptionsNotSupported,
                    SubAckReason::GrantedQoS1,
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscription_quota_is_answered_with_0x97() {
    let mut sim = Sim::new(Config {
        max_subscriptions_per_client: 2,
        ..quiet_config()
    });
    let c = sim.connect(V5, "c", true);
    sim.subscribe(c, "a", QoS::AtMostOnce);
    sim.subscribe(c, "b", QoS::AtMostOnce);
    sim.subscribe(c, "a", QoS::AtLeastOnce); // replacing is not a new one
    sim.subscribe_with(c, "c", SubscriptionOptions::new(QoS::AtMostOnce), None);
    match sim.expect(c) {
        Packet::SubAck(a) => assert_eq!(a.reasons, [SubAckReason::QuotaExceeded]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_filter_replaces_the_subscription_mqtt_3_8_4_3() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "c", true);
    sim.subscribe(c, "t", QoS::AtMostOnce);
    sim.subscribe(c, "t", QoS::ExactlyOnce);
    assert_eq!(sim.broker.subscription_count(), 1);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t", b"x", QoS::ExactlyOnce, 1);
    assert_eq!(sim.expect_publish(c).qos(), QoS::ExactlyOnce);
    assert!(sim.recv(c).is_none());
}

#[test]
fn unsubscribe_answers_each_filter_mqtt_3_11_3_1() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "c", true);
    sim.subscribe(c, "a", QoS::AtMostOnce);
    sim.send(
        c,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: PacketId::new(3).unwrap(),
            properties: Default::default(),
            filters: vec![
                TopicFilter::try_from("a").unwrap(),
                TopicFilter::try_from("b").unwrap(),
            ],
        }),
    );
    match sim.expect(c) {
        Packet::UnsubAck(a) => assert_eq!(
            a.reasons,
            [
                UnsubAckReason::Success,
                UnsubAckReason::NoSubscriptionExisted
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.broker.subscription_count(), 0);
}

#[test]
fn shared_subscription_delivers_each_message_to_one_member_mqtt_4_8_2() {
    let mut sim = Sim::new(quiet_config());
    let a = sim.connect(V5, "a", true);
    let b = sim.connect(V5, "b", true);
    sim.subscribe(a, "$share/g/jobs/#", QoS::AtLeastOnce);
    sim.subscribe(b, "$share/g/jobs/#", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    for id in 1..=10 {
        sim.publish(publisher, "jobs/x", b"j", QoS::AtLeastOnce, id);
    }
    let na = sim.drain(a).len();
    let nb = sim.drain(b).len();
    assert_eq!(na + nb, 10);
    assert!(na > 0 && nb > 0, "both members get work: {na} / {nb}");
}

#[test]
fn shared_subscription_gets_no_retained_messages() {
    let mut sim = Sim::new(quiet_config());
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("jobs/1").unwrap(), &b"x"[..]);
    p.retain = true;
    sim.send(publisher, Packet::Publish(p));
    let a = sim.connect(V5, "a", true);
    sim.subscribe(a, "$share/g/jobs/#", QoS::AtMostOnce);
    assert!(sim.recv(a).is_none());
}

#[test]
fn unacknowledged_shared_messages_go_to_another_member_on_disconnect() {
    let mut sim = Sim::new(quiet_config());
    let a = sim.connect(V5, "a", true);
    let b = sim.connect(V5, "b", true);
    sim.subscribe(a, "$share/g/t", QoS::AtLeastOnce);
    sim.subscribe(b, "$share/g/t", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    for id in 1..=4 {
        sim.publish(publisher, "t", &[id as u8], QoS::AtLeastOnce, id);
    }
    let to_a = sim.drain(a).len();
    let to_b = sim.drain(b).len();
    sim.lose(a);
    let handed = sim.drain(b).len();
    assert_eq!(
        handed, to_a,
        "a's {to_a} unacknowledged messages went to b (which had {to_b})"
    );
}

#[test]
fn inflight_qos2_shared_message_stays_with_its_member_mqtt_4_8_2_4() {
    let mut sim = Sim::new(quiet_config());
    let a = sim.connect_with(persistent_connect("a", true, 600));
    sim.expect(a);
    sim.subscribe(a, "$share/g/t", QoS::ExactlyOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t", b"m", QoS::ExactlyOnce, 1);
    sim.send(
        publisher,
        Packet::PubRel(mqtt5_codec::PubRel::new(
            mqtt5_codec::PacketId::new(1).unwrap(),
        )),
    );
    let first = sim.expect_publish(a);
    let b = sim.connect(V5, "b", true);
    sim.subscribe(b, "$share/g/t", QoS::ExactlyOnce);
    sim.lose(a);
    assert!(sim.recv(b).is_none(), "[MQTT-4.8.2-4] not handed to b");
    let a = sim.connect_with(persistent_connect("a", false, 600));
    sim.expect(a);
    let again = sim.expect_publish(a);
    assert!(again.dup, "[MQTT-4.8.2-4] completed to a on reconnect");
    assert_eq!(again.delivery.packet_id(), first.delivery.packet_id());
}

#[test]
fn inflight_qos2_shared_message_dies_with_its_session_mqtt_4_8_2_5() {
    let mut sim = Sim::new(quiet_config());
    let a = sim.connect(V5, "a", true);
    sim.subscribe(a, "$share/g/t", QoS::ExactlyOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t", b"m", QoS::ExactlyOnce, 1);
    sim.send(
        publisher,
        Packet::PubRel(mqtt5_codec::PubRel::new(
            mqtt5_codec::PacketId::new(1).unwrap(),
        )),
    );
    sim.expect_publish(a);
    let b = sim.connect(V5, "b", true);
    sim.subscribe(b, "$share/g/t", QoS::ExactlyOnce);
    sim.lose(a);
    assert!(sim.recv(b).is_none(), "[MQTT-4.8.2-5]");
}

// ---- sessions ----

#[test]
fn session_resumes_with_dup_resend_and_queued_messages_mqtt_4_4_0_1() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect_with(persistent_connect("s", true, 600));
    sim.expect(sub);
    sim.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t", b"1", QoS::AtLeastOnce, 1);
    let first = sim.expect_publish(sub);
    sim.lose(sub);
    sim.publish(publisher, "t", b"2", QoS::AtLeastOnce, 2);
    sim.publish(publisher, "t", b"3", QoS::AtMostOnce, 0);
    let sub = sim.connect_with(persistent_connect("s", false, 600));
    assert!(connack(sim.expect(sub)).session_present, "[MQTT-3.2.2-3]");
    let again = sim.expect_publish(sub);
    assert!(again.dup, "[MQTT-3.3.1-1]");
    assert_eq!(again.delivery.packet_id(), first.delivery.packet_id());
    assert_eq!(again.payload(), b"1");
    let queued = sim.expect_publish(sub);
    assert_eq!((queued.payload(), queued.dup), (&b"2"[..], false));
    assert!(
        sim.recv(sub).is_none(),
        "QoS 0 is not queued offline by default"
    );
}

#[test]
fn clean_start_discards_the_session_mqtt_3_1_2_4() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect_with(persistent_connect("s", true, 600));
    sim.expect(c);
    sim.subscribe(c, "t", QoS::AtLeastOnce);
    sim.lose(c);
    let c = sim.connect_with(persistent_connect("s", true, 600));
    assert!(!connack(sim.expect(c)).session_present, "[MQTT-3.2.2-2]");
    assert_eq!(sim.broker.subscription_count(), 0);
}

#[test]
fn session_with_expiry_0_ends_with_its_connection_mqtt_3_1_2_11() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "s", false);
    sim.subscribe(c, "t", QoS::AtLeastOnce);
    sim.lose(c);
    assert_eq!(sim.broker.session_count(), 0);
    let c = sim.connect_with(connect_packet(V5, "s", false));
    assert!(!connack(sim.expect(c)).session_present);
}

#[test]
fn session_expires_after_its_interval_and_is_removed() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect_with(persistent_connect("s", true, 60));
    sim.expect(c);
    sim.subscribe(c, "t", QoS::AtLeastOnce);
    sim.lose(c);
    assert!(sim.store.state().sessions.contains_key("s"));
    sim.advance(Duration::from_secs(59));
    assert_eq!(sim.broker.session_count(), 1);
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.broker.session_count(), 0);
    assert!(!sim.store.state().sessions.contains_key("s"));
}

#[test]
fn session_expiry_never_expires_at_0xffffffff() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect_with(persistent_connect("s", true, u32::MAX));
    sim.expect(c);
    sim.lose(c);
    sim.advance(Duration::from_secs(10 * 365 * 86_400));
    assert_eq!(sim.broker.session_count(), 1);
}

#[test]
fn disconnect_can_change_session_expiry_mqtt_3_14_2_2() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect_with(persistent_connect("s", true, 60));
    sim.expect(c);
    let mut d = Disconnect::new(DisconnectReason::NormalDisconnection);
    d.properties.session_expiry_interval = Some(0);
    sim.send(c, Packet::Disconnect(Box::new(d)));
    assert_eq!(
        sim.broker.session_count(),
        0,
        "expiry lowered to 0 ends it now"
    );
    assert!(!sim.store.state().sessions.contains_key("s"));
    // From 0 to non-zero is a protocol error.
    let c = sim.connect(V5, "z", true);
    let mut d = Disconnect::new(DisconnectReason::NormalDisconnection);
    d.properties.session_expiry_interval = Some(30);
    sim.send(c, Packet::Disconnect(Box::new(d)));
    assert_eq!(
        disconnect_reason(sim.expect(c)),
        DisconnectReason::ProtocolError
    );
}

#[test]
fn full_queue_drops_by_policy_and_counts_every_drop() {
    for (policy, kept) in [
        (QueuePolicy::DropOldest, [3u8, 4]),
        (QueuePolicy::DropNewest, [1, 2]),
    ] {
        let mut sim = Sim::new(Config {
            max_queued_messages: 2,
            queue_policy: policy,
            ..quiet_config()
        });
        let sub = sim.connect_with(persistent_connect("s", true, 600));
        sim.expect(sub);
        sim.subscribe(sub, "t", QoS::AtLeastOnce);
        sim.lose(sub);
        let publisher = sim.connect(V5, "pub", true);
        for id in 1..=4u16 {
            sim.publish(publisher, "t", &[id as u8], QoS::AtLeastOnce, id);
        }
        assert_eq!(sim.broker.stats().messages_dropped, 2);
        let sub = sim.connect_with(persistent_connect("s", false, 600));
        sim.expect(sub);
        let got: Vec<u8> = sim
            .drain(sub)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p.payload()[0],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, kept, "{policy:?}");
    }
}

// ---- will ----

fn will_connect(id: &str, delay: Option<u32>, expiry: u32) -> mqtt5_codec::Connect {
    let mut c = persistent_connect(id, true, expiry);
    let mut will = Will {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        topic: TopicName::try_from("wills").unwrap(),
        payload: bytes::Bytes::from_static(b"gone"),
    };
    will.properties.will_delay_interval = delay;
    will.properties.content_type = Some("text/plain".try_into().unwrap());
    c.will = Some(will);
    c
}

fn watcher(sim: &mut Sim) -> mqtt5_broker::ConnId {
    let w = sim.connect(V5, "watcher", true);
    sim.subscribe(w, "wills", QoS::AtLeastOnce);
    w
}

#[test]
fn will_is_published_on_abnormal_loss_with_its_properties_mqtt_3_1_2_8() {
    let mut sim = Sim::new(quiet_config());
    let w = watcher(&mut sim);
    let c = sim.connect_with(will_connect("dying", None, 0));
    sim.expect(c);
    sim.lose(c);
    let p = sim.expect_publish(w);
    assert_eq!((p.topic(), p.payload()), ("wills", &b"gone"[..]));
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
}

#[test]
fn will_is_not_published_on_normal_disconnect_mqtt_3_1_2_10() {
    let mut sim = Sim::new(quiet_config());
    let w = watcher(&mut sim);
    let c = sim.connect_with(will_connect("polite", None, 0));
    sim.expect(c);
    sim.send(
        c,
        Packet::Disconnect(Box::new(Disconnect::new(
            DisconnectReason::NormalDisconnection,
        ))),
    );
    assert!(sim.recv(w).is_none());
}

#[test]
fn will_is_published_on_disconnect_with_0x04() {
    let mut sim = Sim::new(quiet_config());
    let w = watcher(&mut sim);
    let c = sim.connect_with(will_connect("asks", None, 0));
    sim.expect(c);
    sim.send(
        c,
        Packet::Disconnect(Box::new(Disconnect::new(
            DisconnectReason::DisconnectWithWillMessage,
        ))),
    );
    assert_eq!(sim.expect_publish(w).payload(), b"gone");
}

#[test]
fn will_delay_is_cancelled_by_reconnecting_in_time_mqtt_3_1_3_9() {
    let mut sim = Sim::new(quiet_config());
    let w = watcher(&mut sim);
    let c = sim.connect_with(will_connect("flaky", Some(30), 600));
    sim.expect(c);
    sim.lose(c);
    sim.advance(Duration::from_secs(10));
    let mut again = will_connect("flaky", Some(30), 600);
    again.clean_start = false;
    let c = sim.connect_with(again);
    sim.expect(c);
    sim.advance(Duration::from_secs(60));
    assert!(sim.recv(w).is_none());
}

#[test]
fn delayed_will_is_sent_after_its_delay() {
    let mut sim = Sim::new(quiet_config());
    let w = watcher(&mut sim);
    let c = sim.connect_with(will_connect("late", Some(30), 600));
    sim.expect(c);
    sim.lose(c);
    sim.advance(Duration::from_secs(29));
    assert!(sim.recv(w).is_none());
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.expect_publish(w).payload(), b"gone");
}

#[test]
fn will_is_sent_no_later_than_when_the_session_ends() {
    let mut sim = Sim::new(quiet_config());
    let w = watcher(&mut sim);
    let c = sim.connect_with(will_connect("short", Some(300), 10));
    sim.expect(c);
    sim.lose(c);
    sim.advance(Duration::from_secs(11));
    assert_eq!(
        sim.expect_publish(w).payload(),
        b"gone",
        "session ended at 10 s"
    );
}

// ---- protocol errors ----

#[test]
fn malformed_packet_after_connect_gets_disconnect_0x81() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V5, "bad", true);
    // PUBLISH QoS 3 [MQTT-3.3.1-4].
    sim.send_bytes(c, &[0x36, 0x03, 0x00, 0x01, b'a']);
    assert_eq!(
        disconnect_reason(sim.expect(c)),
        DisconnectReason::MalformedPacket
    );
    assert!(sim.is_closed(c));
}

#[test]
fn v311_client_is_closed_without_disconnect_on_a_protocol_error() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect(V311, "old", true);
    sim.send(
        c,
        Packet::Connect(Box::new(connect_packet(V311, "old", true))),
    );
    assert!(sim.recv(c).is_none(), "3.1.1 has no server DISCONNECT");
    assert!(sim.is_closed(c));
}

#[test]
fn sys_statistics_are_published_periodically() {
    let mut sim = Sim::new(Config {
        sys_interval: Some(Duration::from_secs(10)),
        ..Config::default()
    });
    let c = sim.connect(V5, "ops", true);
    sim.subscribe(c, "$SYS/broker/clients/connected", QoS::AtMostOnce);
    sim.advance(Duration::from_secs(10));
    let p = sim.expect_publish(c);
    assert_eq!(p.payload(), b"1");
    let version = sim.connect(V5, "v", true);
    sim.subscribe(version, "$SYS/broker/version", QoS::AtMostOnce);
    let p = sim.expect_publish(version);
    assert!(p.retain, "retained: a new subscriber sees it at once");
    assert!(
        std::str::from_utf8(p.payload())
            .unwrap()
            .starts_with("mqtt5 ")
    );
    let _ = NonZeroU32::new(1);
}

// ---- durability ----

#[test]
fn puback_follows_the_persist_of_the_message_it_acknowledges() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect_with(persistent_connect("s", true, 600));
    sim.expect(sub);
    sim.subscribe(sub, "t", QoS::AtLeastOnce);
    sim.lose(sub);
    let publisher = sim.connect(V5, "pub", true);
    sim.trace.clear();
    sim.publish(publisher, "t", b"keep me", QoS::AtLeastOnce, 1);
    assert_eq!(
        sim.trace,
        ["persist 2".to_string(), format!("send {}", publisher.0)],
        "message and delivery are stored before the PUBACK goes out"
    );
    let state = sim.store.state();
    assert_eq!(state.messages.len(), 1);
    let stored = state.messages.values().next().unwrap();
    assert_eq!(stored.message.payload(), b"keep me");
    let deliveries = &state.sessions["s"].deliveries;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        deliveries.values().next().unwrap().state,
        mqtt5_store::DeliveryState::Queued
    );
    // Delivered and acknowledged: nothing is left in the store.
    let sub = sim.connect_with(persistent_connect("s", false, 600));
    sim.expect(sub);
    let p = sim.expect_publish(sub);
    assert!(matches!(
        sim.store.state().sessions["s"]
            .deliveries
            .values()
            .next()
            .unwrap()
            .state,
        mqtt5_store::DeliveryState::Sent(_)
    ));
    sim.send(
        sub,
        Packet::PubAck(PubAck::new(p.delivery.packet_id().unwrap())),
    );
    assert!(sim.store.state().messages.is_empty());
    assert!(sim.store.state().sessions["s"].deliveries.is_empty());
}

#[test]
fn ending_a_session_deletes_its_stored_messages() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect_with(persistent_connect("s", true, 60));
    sim.expect(sub);
    sim.subscribe(sub, "t", QoS::ExactlyOnce);
    sim.lose(sub);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t", b"x", QoS::AtLeastOnce, 1);
    assert_eq!(sim.store.state().messages.len(), 1);
    sim.advance(Duration::from_secs(61));
    assert!(sim.store.state().messages.is_empty());
    assert!(sim.store.state().sessions.is_empty());
}

#[test]
fn too_deep_filter_gets_0x8f_and_too_deep_topic_gets_0x90() {
    let mut sim = Sim::new(Config {
        max_topic_levels: 4,
        ..quiet_config()
    });
    let c = sim.connect(V5, "deep", true);
    sim.subscribe_with(
        c,
        "a/b/c/d/e",
        SubscriptionOptions::new(QoS::AtMostOnce),
        None,
    );
    match sim.expect(c) {
        Packet::SubAck(a) => assert_eq!(a.reasons, [SubAckReason::TopicFilterInvalid]),
        other => panic!("{other:?}"),
    }
    sim.subscribe(c, "a/b/c/#", QoS::AtMostOnce);
    sim.publish(c, "a/b/c/d/e", b"x", QoS::AtLeastOnce, 1);
    match sim.expect(c) {
        Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::TopicNameInvalid),
        other => panic!("{other:?}"),
    }
    assert!(sim.recv(c).is_none(), "not routed");
    assert!(!sim.is_closed(c));
}

#[test]
fn expired_retained_message_is_not_delivered_and_is_removed() {
    let mut sim = Sim::new(quiet_config());
    let publisher = sim.connect(V5, "pub", true);
    let mut p = mqtt5_codec::Publish::new(TopicName::try_from("r").unwrap(), &b"x"[..]);
    p.retain = true;
    p.properties.message_expiry_interval = Some(5);
    sim.send(publisher, Packet::Publish(p));
    assert_eq!(sim.store.state().retained.len(), 1);
    sim.advance(Duration::from_secs(6));
    let c = sim.connect(V5, "late", true);
    sim.subscribe(c, "r", QoS::AtMostOnce);
    assert!(sim.recv(c).is_none());
    assert_eq!(sim.broker.retained_count(), 0);
    assert!(sim.store.state().retained.is_empty());
}

#[test]
fn refusal_carries_a_reason_string_when_problem_information_is_requested() {
    let mut sim = Sim::new(Config {
        allow_anonymous: false,
        ..quiet_config()
    });
    let conn = sim.connect_with(connect_packet(V5, "anon", true));
    let ack = connack(sim.expect(conn));
    assert_eq!(
        ack.properties.reason_string.as_deref(),
        Some("anonymous access is disabled")
    );
    let mut c = connect_packet(V5, "anon2", true);
    c.properties.request_problem_information = Some(false);
    let conn = sim.connect_with(c);
    assert_eq!(
        connack(sim.expect(conn)).properties.reason_string,
        None,
        "[MQTT-3.1.2-29]"
    );
}

#[test]
fn unknown_protocol_level_gets_return_code_1_then_close_mqtt_3_1_2_2() {
    let mut sim = Sim::new(quiet_config());
    let conn = sim.open(V311);
    // CONNECT, protocol name MQTT, level 6.
    sim.send_bytes(
        conn,
        &[
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x01,
            b'x',
        ],
    );
    let ack = connack(sim.expect(conn));
    assert_eq!(ack.reason.v3_return_code(), 1);
    assert!(!ack.session_present);
    assert!(sim.is_closed(conn));
}

#[test]
fn expired_messages_leave_offline_queues_and_the_retained_store_on_their_own() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect_with(persistent_connect("s", true, 3600));
    sim.expect(sub);
    sim.subscribe(sub, "e/#", QoS::AtLeastOnce);
    sim.lose(sub);
    let publisher = sim.connect(V5, "pub", true);
    for (topic, expiry, retain) in [("e/q", 5, false), ("e/r", 7, true), ("e/keep", 100, false)] {
        let mut p = mqtt5_codec::Publish::new(TopicName::try_from(topic).unwrap(), &b"x"[..]);
        p.delivery = mqtt5_codec::Delivery::AtLeastOnce(PacketId::new(1).unwrap());
        p.properties.message_expiry_interval = Some(expiry);
        p.retain = retain;
        sim.send(publisher, Packet::Publish(p));
    }
    assert_eq!(sim.store.state().messages.len(), 3);
    let timer = sim
        .broker
        .poll_timeout()
        .expect("an expiry sweep is scheduled");
    assert_eq!(timer, sim.now + Duration::from_secs(5));
    sim.advance(Duration::from_secs(6));
    assert_eq!(
        sim.store.state().messages.len(),
        2,
        "e/q expired in the queue"
    );
    sim.advance(Duration::from_secs(2));
    assert_eq!(
        sim.broker.retained_count(),
        0,
        "e/r expired in the retained store"
    );
    assert!(sim.store.state().retained.is_empty());
    assert_eq!(sim.store.state().messages.len(), 1, "only e/keep is left");
    assert_eq!(sim.broker.stats().messages_expired, 2);
}

// ---- restart ----

#[test]
fn restart_keeps_sessions_subscriptions_queues_in_flight_and_retained_messages() {
    let mut sim = Sim::new(quiet_config());
    let sub = sim.connect_with(persistent_connect("s", true, 600));
    sim.expect(sub);
    sim.subscribe(sub, "t/#", QoS::ExactlyOnce);
    let publisher = sim.connect(V5, "pub", true);
    sim.publish(publisher, "t/1", b"in flight", QoS::AtLeastOnce, 1);
    let first = sim.expect_publish(sub);
    let mut r = mqtt5_codec::Publish::new(TopicName::try_from("t/r").unwrap(), &b"kept"[..]);
    r.retain = true;
    sim.send(publisher, Packet::Publish(r));
    sim.drain(sub);
    sim.lose(sub);
    sim.publish(publisher, "t/2", b"queued", QoS::ExactlyOnce, 2);
    sim.restart();
    assert_eq!(sim.broker.session_count(), 1);
    let sub = sim.connect_with(persistent_connect("s", false, 600));
    assert!(connack(sim.expect(sub)).session_present);
    let again = sim.expect_publish(sub);
    assert!(again.dup);
    assert_eq!(again.delivery.packet_id(), first.delivery.packet_id());
    assert_eq!(again.payload(), b"in flight");
    let queued = sim.expect_publish(sub);
    assert_eq!(
        (queued.payload(), queued.qos()),
        (&b"queued"[..], QoS::ExactlyOnce)
    );
    // The subscription survived: a new message reaches it.
    let publisher = sim.connect(V5, "pub2", true);
    sim.publish(publisher, "t/3", b"after", QoS::AtMostOnce, 0);
    assert_eq!(sim.expect_publish(sub).payload(), b"after");
    // And the retained message.
    let other = sim.connect(V5, "o", true);
    sim.subscribe(other, "t/r", QoS::AtMostOnce);
    assert_eq!(sim.expect_publish(other).payload(), b"kept");
}

#[test]
fn restart_publishes_the_will_of_a_client_that_was_connected() {
    let mut sim = Sim::new(quiet_config());
    let w = sim.connect_with(persistent_connect("watcher", true, 600));
    sim.expect(w);
    sim.subscribe(w, "wills", QoS::AtLeastOnce);
    sim.lose(w);
    let c = sim.connect_with(will_connect("crashy", None, 600));
    sim.expect(c);
    sim.restart();
    assert!(sim.store.state().sessions["crashy"].record.will.is_none());
    let w = sim.connect_with(persistent_connect("watcher", false, 600));
    sim.expect(w);
    assert_eq!(sim.expect_publish(w).payload(), b"gone");
}

#[test]
fn session_that_expired_while_the_broker_was_down_is_ended_at_restart() {
    let mut sim = Sim::new(quiet_config());
    let c = sim.connect_with(persistent_connect("gone", true, 60));
    sim.expect(c);
    sim.lose(c);
    sim.now += Duration::from_secs(120);
    sim.restart();
    assert_eq!(sim.broker.session_count(), 0);
    assert!(!sim.store.state().sessions.contains_key("gone"));
}

#[test]
fn shutdown_disconnects_with_0x8b_and_keeps_sessions_and_wills_for_the_next_start() {
    let mut sim = Sim::new(quiet_config());
    let five = sim.connect_with(will_connect("five", None, 600));
    sim.expect(five);
    let four = sim.connect(V311, "four", true);
    let waiting = sim.open(V5);
    let now = sim.now;
    sim.broker.handle_shutdown(now);
    sim.run();
    assert_eq!(
        disconnect_reason(sim.expect(five)),
        DisconnectReason::ServerShuttingDown
    );
    assert!(sim.recv(four).is_none(), "3.1.1 has no server DISCONNECT");
    for c in [five, four, waiting] {
        assert!(sim.is_closed(c));
    }
    let stored = &sim.store.state().sessions["five"];
    assert!(
        stored.record.will.is_some(),
        "the will waits for the next start"
    );
    assert_eq!(stored.record.expires_at_ms, None);
    assert_eq!(
        sim.store.state().clients["five"]
            .last_disconnect_reason
            .as_deref(),
        Some("server shutting down")
    );
}

#[test]
fn full_storage_refuses_new_persistent_work_and_keeps_serving_the_rest() {
    let mut sim = Sim::new(quiet_config());
    let old = sim.connect_with(persistent_connect("old", true, 600));
    sim.expect(old);
    sim.lose(old);
    let live = sim.connect(V5, "live", true);
    sim.subscribe(live, "t", QoS::AtMostOnce);
    sim.broker.handle_storage_full(true);
    // A new persistent session is refused; an existing one may come back; a clean one is fine.
    let new = sim.connect_with(persistent_connect("new", true, 600));
    assert_eq!(
        connack(sim.expect(new)).reason,
        ConnAckReason::QuotaExceeded
    );
    let old = sim.connect_with(persistent_connect("old", false, 600));
    assert_eq!(connack(sim.expect(old)).reason, ConnAckReason::Success);
    let clean = sim.connect(V5, "clean", true);
    // QoS 1 is refused with 0x97, QoS 0 still flows.
    sim.publish(clean, "t", b"q1", QoS::AtLeastOnce, 1);
    match sim.expect(clean) {
        Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::QuotaExceeded),
        other => panic!("{other:?}"),
    }
    sim.publish(clean, "t", b"q0", QoS::AtMostOnce, 0);
    assert_eq!(sim.expect_publish(live).payload(), b"q0");
    assert!(sim.recv(live).is_none());
    // A persistent session's new subscription is refused.
    sim.subscribe_with(old, "x", SubscriptionOptions::new(QoS::AtLeastOnce), None);
    match sim.expect(old) {
        Packet::SubAck(a) => assert_eq!(a.reasons, [SubAckReason::QuotaExceeded]),
        other => panic!("{other:?}"),
    }
    // Room again: back to normal.
    sim.broker.handle_storage_full(false);
    sim.publish(clean, "t", b"q1", QoS::AtLeastOnce, 2);
    assert!(matches!(sim.expect(clean), Packet::PubAck(a) if a.reason == PubAckReason::Success));
}

#[test]
fn congested_client_gets_its_messages_queued_then_in_order_when_it_drains() {
    let mut sim = Sim::new(Config {
        max_queued_messages: 3,
        ..quiet_config()
    });
    let slow = sim.connect(V5, "slow", true);
    sim.subscribe(slow, "t", QoS::AtLeastOnce);
    let publisher = sim.connect(V5, "pub", true);
    let now = sim.now;
    sim.broker.handle_congestion(now, slow, true);
    sim.run();
    for (i, qos) in [
        QoS::AtMostOnce,
        QoS::AtLeastOnce,
        QoS::AtMostOnce,
        QoS::AtLeastOnce,
        QoS::AtMostOnce,
    ]
    .into_iter()
    .enumerate()
    {
        sim.publish(publisher, "t", &[i as u8], qos, i as u16 + 1);
    }
    assert!(
        sim.recv(slow).is_none(),
        "nothing goes to a congested connection"
    );
    assert_eq!(
        sim.broker.stats().messages_dropped,
        2,
        "queue of 3, five messages"
    );
    sim.broker.handle_congestion(now, slow, false);
    sim.run();
    let got: Vec<u8> = sim
        .drain(slow)
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p.payload()[0],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [2, 3, 4], "the oldest two were dropped; order kept");
}

#[test]
fn slow_consumer_is_disconnected_with_0x97_when_configured() {
    let mut sim = Sim::new(Config {
        max_queued_messages: 2,
        disconnect_slow_consumers: true,
        ..quiet_config()
    });
    let slow = sim.connect(V5, "slow", true);
    sim.subscribe(slow, "t", QoS::AtMostOnce);
    let publisher = sim.connect(V5, "pub", true);
    let now = sim.now;
    sim.broker.handle_congestion(now, slow, true);
    for i in 0..3u8 {
        sim.publish(publisher, "t", &[i], QoS::AtMostOnce, 0);
    }
    assert_eq!(
        disconnect_reason(sim.expect(slow)),
        DisconnectReason::QuotaExceeded
    );
    assert!(sim.is_closed(slow));
    assert!(!sim.is_closed(publisher), "the publisher is unaffected");
}
