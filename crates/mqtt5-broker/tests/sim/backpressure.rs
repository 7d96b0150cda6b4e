//! Backpressure and the session cap: which packets `Broker::needs_store` says would give the
//! store new work (checked against what handling them actually stores), connections whose
//! input the driver holds back, and `Config::max_persistent_sessions`.

use std::time::Duration;

use mqtt5_broker::{
    AuthExchange, AuthStep, Config, ConnId, EnhancedAuthenticator, Notice, RandomSource,
};
use mqtt5_codec::{
    Auth, AuthReason, ConnAckReason, Delivery, Disconnect, DisconnectReason, MqttString, Packet,
    PacketId, PingReq, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};

use crate::harness::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V31: ProtocolVersion = ProtocolVersion::V3_1;

/// No client records: a CONNECT of a clean session then stores nothing, and whether a packet
/// stored something is down to the packet.
fn config() -> Config {
    Config {
        client_records: false,
        ..quiet_config()
    }
}

/// Asks `needs_store` about `packet` on `conn`, checks that asking queued nothing, then
/// hands the packet over. Returns the answer and whether handling it stored anything.
fn ask_then_send(sim: &mut Sim, conn: ConnId, packet: Packet) -> (bool, bool) {
    let asked = sim.broker.needs_store(conn, &packet);
    assert!(
        sim.broker.poll_action().is_none(),
        "needs_store is a query: it queues nothing"
    );
    let before = sim.persisted.len();
    sim.send(conn, packet);
    (asked, sim.persisted.len() > before)
}

fn publish(topic: &str, qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(TopicName::try_from(topic).unwrap(), &b"x"[..]);
    if qos != QoS::AtMostOnce {
        p.delivery = Delivery::new(qos, PacketId::new(id).unwrap());
    }
    p
}

fn subscribe_packet(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(9).unwrap(),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::try_from(filter).unwrap(),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
    })
}

fn unsubscribe_packet(filter: &str) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: PacketId::new(10).unwrap(),
        properties: Default::default(),
        filters: vec![TopicFilter::try_from(filter).unwrap()],
    })
}

fn will(topic: &str, qos: QoS, retain: bool) -> Will {
    Will {
        qos,
        retain,
        properties: Default::default(),
        topic: TopicName::try_from(topic).unwrap(),
        payload: bytes::Bytes::from_static(b"gone"),
    }
}

fn connack_reason(p: Packet) -> ConnAckReason {
    match p {
        Packet::ConnAck(a) => a.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

// ---- needs_store ----

#[test]
fn connect_needs_the_store_for_a_persistent_session_of_any_version() {
    let mut sim = Sim::new(config());
    let cases = [
        (connect_packet(V5, "clean5", true), false),
        (persistent_connect("kept5", true, 60), true),
        (connect_packet(V311, "kept311", false), true),
        (connect_packet(V311, "clean311", true), false),
        (connect_packet(V31, "kept31", false), true),
        (connect_packet(V31, "clean31", true), false),
        // Clean Start with Session Expiry 0 discards the stored session: a change in the store.
        (connect_packet(V5, "kept5", true), true),
    ];
    for (connect, want) in cases {
        let what = format!(
            "{:?} {} clean={}",
            connect.protocol, connect.client_id, connect.clean_start
        );
        let conn = sim.open(connect.protocol);
        let (asked, stored) = ask_then_send(&mut sim, conn, Packet::Connect(Box::new(connect)));
        assert_eq!(asked, want, "{what}");
        assert_eq!(
            stored, want,
            "{what}: needs_store agrees with what was stored"
        );
        assert_eq!(
            connack_reason(sim.expect(conn)),
            ConnAckReason::Success,
            "{what}"
        );
    }
}

#[test]
fn connect_asking_for_a_session_the_broker_grants_no_expiry_needs_no_store() {
    let mut sim = Sim::new(Config {
        max_session_expiry: 0,
        ..config()
    });
    let conn = sim.open(V5);
    let connect = persistent_connect("capped", true, 3600);
    let (asked, stored) = ask_then_send(&mut sim, conn, Packet::Connect(Box::new(connect)));
    assert!(!asked && !stored, "granted 0: a clean session");
}

#[test]
fn connect_with_a_will_that_would_be_stored_needs_the_store() {
    let mut sim = Sim::new(config());
    let durable = sim.connect_with(persistent_connect("durable", true, 600));
    sim.expect(durable);
    sim.subscribe(durable, "w/#", QoS::AtLeastOnce);
    let cases = [
        // (will topic, will QoS, will retain, needs the store)
        ("w/1", QoS::AtLeastOnce, false, true),
        ("w/2", QoS::ExactlyOnce, false, true),
        ("w/3", QoS::AtMostOnce, false, false),
        ("elsewhere", QoS::AtLeastOnce, false, false),
        ("elsewhere", QoS::AtMostOnce, true, true),
    ];
    for (i, (topic, qos, retain, want)) in cases.into_iter().enumerate() {
        let mut connect = connect_packet(V5, &format!("willer{i}"), true);
        connect.will = Some(will(topic, qos, retain));
        let conn = sim.open(V5);
        let (asked, stored) = ask_then_send(&mut sim, conn, Packet::Connect(Box::new(connect)));
        assert_eq!(asked, want, "will on {topic} at {qos:?}, retain {retain}");
        assert!(!stored, "a clean session stores nothing at CONNECT");
        sim.expect(conn);
        // The will is stored when it is published, as the answer said.
        let before = sim.persisted.len();
        sim.lose(conn);
        assert_eq!(
            sim.persisted.len() > before,
            want,
            "will on {topic} at {qos:?}, retain {retain}"
        );
    }
}

#[test]
fn publish_needs_the_store_for_durable_fan_out_retained_messages_and_qos2_ids() {
    let mut sim = Sim::new(config());
    let durable = sim.connect_with(persistent_connect("durable", true, 600));
    sim.expect(durable);
    sim.subscribe(durable, "d/#", QoS::AtLeastOnce);
    let cheap = sim.connect_with(persistent_connect("cheap", true, 600));
    sim.expect(cheap);
    sim.subscribe(cheap, "q0/#", QoS::AtMostOnce);
    let clean = sim.connect(V5, "clean-sub", true);
    sim.subscribe(clean, "c/#", QoS::AtLeastOnce);
    let member = sim.connect_with(persistent_connect("member", true, 600));
    sim.expect(member);
    sim.subscribe(member, "$share/g/s/#", QoS::AtLeastOnce);
    // The durable subscribers are offline: their messages wait in their sessions.
    sim.lose(durable);
    sim.lose(member);
    let p = sim.connect(V5, "publisher", true);
    let pp = sim.connect_with(persistent_connect("kept-publisher", true, 600));
    sim.expect(pp);
    let retained = {
        let mut r = publish("r/1", QoS::AtMostOnce, 0);
        r.retain = true;
        r
    };
    let cases: Vec<(ConnId, Publish, bool, &str)> = vec![
        (
            p,
            publish("d/1", QoS::AtMostOnce, 0),
            false,
            "QoS 0, durable subscriber",
        ),
        (
            p,
            publish("d/1", QoS::AtLeastOnce, 1),
            true,
            "QoS 1, durable subscriber",
        ),
        (
            p,
            publish("d/1", QoS::ExactlyOnce, 2),
            true,
            "QoS 2, durable subscriber",
        ),
        (
            p,
            publish("q0/1", QoS::AtLeastOnce, 3),
            false,
            "persistent subscriber at QoS 0",
        ),
        (
            p,
            publish("c/1", QoS::AtLeastOnce, 4),
            false,
            "clean subscriber",
        ),
        (
            p,
            publish("nobody", QoS::AtLeastOnce, 5),
            false,
            "no subscriber",
        ),
        (
            p,
            publish("s/1", QoS::AtLeastOnce, 6),
            true,
            "shared group, persistent member",
        ),
        (
            p,
            publish("nobody", QoS::ExactlyOnce, 7),
            false,
            "QoS 2 of a clean session",
        ),
        (
            pp,
            publish("nobody", QoS::ExactlyOnce, 8),
            true,
            "QoS 2 of a persistent session",
        ),
        (
            pp,
            publish("nobody", QoS::ExactlyOnce, 8),
            false,
            "its duplicate before PUBREL",
        ),
        (p, retained, true, "retained at QoS 0"),
    ];
    for (conn, packet, want, what) in cases {
        let (asked, stored) = ask_then_send(&mut sim, conn, Packet::Publish(packet));
        assert_eq!(asked, want, "{what}");
        assert_eq!(
            stored, want,
            "{what}: needs_store agrees with what was stored"
        );
        sim.drain(conn);
    }
}

#[test]
fn publish_by_topic_alias_is_judged_by_the_topic_the_alias_names() {
    let mut sim = Sim::new(config());
    let durable = sim.connect_with(persistent_connect("durable", true, 600));
    sim.expect(durable);
    sim.subscribe(durable, "d/#", QoS::AtLeastOnce);
    let p = sim.connect(V5, "publisher", true);
    for (alias, topic, want) in [(1, "d/1", true), (2, "other", false)] {
        let mut first = publish(topic, QoS::AtLeastOnce, alias);
        first.properties.topic_alias = core::num::NonZeroU16::new(alias);
        assert_eq!(ask_then_send(&mut sim, p, Packet::Publish(first)).0, want);
        let mut by_alias = publish(topic, QoS::AtLeastOnce, alias + 10);
        by_alias.set_topic(TopicName::empty());
        by_alias.properties.topic_alias = core::num::NonZeroU16::new(alias);
        let (asked, stored) = ask_then_send(&mut sim, p, Packet::Publish(by_alias));
        assert_eq!((asked, stored), (want, want), "alias of {topic}");
    }
    // An alias the connection never set is a violation, which stores nothing.
    let mut unknown = publish("d/1", QoS::AtLeastOnce, 30);
    unknown.set_topic(TopicName::empty());
    unknown.properties.topic_alias = core::num::NonZeroU16::new(7);
    assert!(!sim.broker.needs_store(p, &Packet::Publish(unknown)));
}

#[test]
fn subscriptions_need_the_store_for_persistent_sessions_only() {
    let mut sim = Sim::new(config());
    let kept = sim.connect_with(persistent_connect("kept", true, 600));
    sim.expect(kept);
    let clean = sim.connect(V5, "clean", true);
    for (conn, want) in [(kept, true), (clean, false)] {
        let (asked, stored) = ask_then_send(&mut sim, conn, subscribe_packet("a/#"));
        assert_eq!((asked, stored), (want, want), "SUBSCRIBE");
        let (asked, stored) = ask_then_send(&mut sim, conn, unsubscribe_packet("a/#"));
        assert_eq!((asked, stored), (want, want), "UNSUBSCRIBE");
        sim.drain(conn);
    }
}

#[test]
fn acknowledgements_pings_and_disconnects_never_wait_for_the_store() {
    let mut sim = Sim::new(config());
    let kept = sim.connect_with(persistent_connect("kept", true, 600));
    sim.expect(kept);
    sim.subscribe(kept, "t/#", QoS::ExactlyOnce);
    let p = sim.connect_with(persistent_connect("publisher", true, 600));
    sim.expect(p);
    sim.publish(p, "t/1", b"one", QoS::AtLeastOnce, 1);
    sim.publish(p, "t/2", b"two", QoS::ExactlyOnce, 2);
    sim.drain(p);
    let first = sim.expect_publish(kept);
    let second = sim.expect_publish(kept);
    let id = |p: &Publish| p.delivery.packet_id().unwrap();
    // The client's acknowledgements settle what the store holds already.
    let (asked, stored) = ask_then_send(&mut sim, kept, Packet::PubAck(PubAck::new(id(&first))));
    assert!(
        !asked && stored,
        "PUBACK deletes its delivery, and does not wait"
    );
    let (asked, _) = ask_then_send(&mut sim, kept, Packet::PubRec(PubRec::new(id(&second))));
    assert!(!asked, "PUBREC");
    let (asked, _) = ask_then_send(&mut sim, kept, Packet::PubComp(PubComp::new(id(&second))));
    assert!(!asked, "PUBCOMP");
    let (asked, _) = ask_then_send(&mut sim, p, Packet::PubRel(PubRel::new(id(&second))));
    assert!(!asked, "PUBREL");
    let (asked, stored) = ask_then_send(&mut sim, kept, Packet::PingReq(PingReq));
    assert!(!asked && !stored, "PINGREQ");
    let bye = Packet::Disconnect(Box::new(Disconnect::new(
        DisconnectReason::NormalDisconnection,
    )));
    assert!(
        !sim.broker.needs_store(kept, &bye),
        "DISCONNECT ends the connection once"
    );
    // Nothing needs the store on a connection that has not completed CONNECT, or is gone.
    let fresh = sim.open(V5);
    let early = Packet::Publish(publish("t/1", QoS::AtLeastOnce, 3));
    assert!(!sim.broker.needs_store(fresh, &early));
    assert!(!sim.broker.needs_store(fresh, &subscribe_packet("t/#")));
    assert!(!sim.broker.needs_store(ConnId(9999), &early));
}

/// An enhanced authentication method of two steps: CONNECT, then one AUTH that succeeds (the
/// barrier tests use it too).
pub(crate) struct TwoStep;

struct TwoStepExchange;

impl AuthExchange for TwoStepExchange {
    fn step(&mut self, _data: &[u8]) -> AuthStep {
        AuthStep::Success {
            data: None,
            username: "two".to_owned(),
        }
    }
}

impl EnhancedAuthenticator for TwoStep {
    fn method(&self) -> &str {
        "TWO-STEP"
    }

    fn begin(
        &self,
        _client_id: &str,
        _data: &[u8],
        _random: &mut dyn RandomSource,
    ) -> (Box<dyn AuthExchange>, AuthStep) {
        (Box::new(TwoStepExchange), AuthStep::Continue(Vec::new()))
    }
}

#[test]
fn auth_that_completes_a_persistent_connect_needs_the_store() {
    let mut services = open_services();
    services.enhanced = vec![Box::new(TwoStep)];
    let mut sim = Sim::with_services(config(), services);
    for (connect, want) in [
        (persistent_connect("kept", true, 600), true),
        (connect_packet(V5, "clean", true), false),
    ] {
        let mut connect = connect;
        connect.properties.authentication_method = Some("TWO-STEP".try_into().unwrap());
        let conn = sim.open(V5);
        let (asked, _) = ask_then_send(&mut sim, conn, Packet::Connect(Box::new(connect)));
        assert_eq!(asked, want, "CONNECT");
        assert!(matches!(sim.expect(conn), Packet::Auth(_)));
        let mut auth = Auth {
            reason: AuthReason::ContinueAuthentication,
            properties: Default::default(),
        };
        auth.properties.authentication_method = Some(MqttString::try_from("TWO-STEP").unwrap());
        let (asked, stored) = ask_then_send(&mut sim, conn, Packet::Auth(Box::new(auth)));
        assert_eq!((asked, stored), (want, want), "the AUTH that completes it");
        assert_eq!(connack_reason(sim.expect(conn)), ConnAckReason::Success);
    }
}

// ---- connections whose input waits ----

#[test]
fn paused_connection_is_not_held_to_its_keep_alive_until_it_resumes_mqtt_3_1_2_22() {
    let mut sim = Sim::new(config());
    let mut connect = connect_packet(V5, "slowed", true);
    connect.keep_alive = 10;
    let conn = sim.connect_with(connect);
    sim.expect(conn);
    sim.broker.handle_input_paused(sim.now, conn, true);
    assert_eq!(sim.broker.paused_connections(), 1);
    // Far past 1.5 × Keep Alive: its packets wait unread, the client is not silent.
    sim.advance(Duration::from_secs(60));
    assert!(!sim.is_closed(conn), "no keep-alive timeout while paused");
    sim.broker.handle_input_paused(sim.now, conn, false);
    assert_eq!(sim.broker.paused_connections(), 0);
    sim.advance(Duration::from_secs(14));
    assert!(
        !sim.is_closed(conn),
        "the keep-alive starts again at the resume"
    );
    sim.advance(Duration::from_secs(2));
    match sim.expect(conn) {
        Packet::Disconnect(d) => assert_eq!(d.reason, DisconnectReason::KeepAliveTimeout),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    assert!(sim.is_closed(conn));
}

#[test]
fn paused_connect_is_not_held_to_the_connect_timeout_until_it_resumes() {
    let mut sim = Sim::new(config());
    let conn = sim.open(V5);
    sim.broker.handle_input_paused(sim.now, conn, true);
    sim.advance(Duration::from_secs(60));
    assert!(!sim.is_closed(conn), "its CONNECT waits with the driver");
    sim.broker.handle_input_paused(sim.now, conn, false);
    sim.advance(Duration::from_secs(9));
    assert!(
        !sim.is_closed(conn),
        "the connect timeout starts again at the resume"
    );
    sim.advance(Duration::from_secs(2));
    assert!(sim.is_closed(conn), "and runs out like any other");
}

#[test]
fn paused_connections_are_counted_in_sys_and_stats() {
    let mut sim = Sim::new(Config {
        sys_interval: Some(Duration::from_secs(1)),
        ..config()
    });
    let ops = sim.connect(V5, "ops", true);
    sim.subscribe(ops, "$SYS/broker/clients/paused", QoS::AtMostOnce);
    sim.drain(ops);
    let a = sim.connect(V5, "a", true);
    let b = sim.connect(V5, "b", true);
    let seen = |sim: &mut Sim| {
        sim.advance(Duration::from_secs(1));
        let last = sim.drain(ops).into_iter().last().expect("a $SYS message");
        match last {
            Packet::Publish(p) => String::from_utf8(p.payload().to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seen(&mut sim), "0");
    sim.broker.handle_input_paused(sim.now, a, true);
    sim.broker.handle_input_paused(sim.now, b, true);
    // Saying it twice counts once.
    sim.broker.handle_input_paused(sim.now, b, true);
    assert_eq!(seen(&mut sim), "2");
    // A paused connection that is lost is no longer counted.
    sim.lose(a);
    assert_eq!(seen(&mut sim), "1");
    sim.broker.handle_input_paused(sim.now, b, false);
    assert_eq!(seen(&mut sim), "0");
    assert_eq!(sim.broker.stats().input_pauses, 2);
    // A connection the core does not know is ignored.
    sim.broker.handle_input_paused(sim.now, ConnId(9999), true);
    assert_eq!(sim.broker.paused_connections(), 0);
}

// ---- the session cap ----

fn capped(limit: usize) -> Sim {
    Sim::new(Config {
        max_persistent_sessions: limit,
        ..config()
    })
}

/// Connects `connect`; returns the connection and its CONNACK's reason.
fn try_connect(sim: &mut Sim, connect: mqtt5_codec::Connect) -> (ConnId, ConnAckReason) {
    let conn = sim.connect_with(connect);
    let reason = connack_reason(sim.expect(conn));
    (conn, reason)
}

#[test]
fn new_persistent_session_past_the_cap_is_refused_with_0x97_and_noticed() {
    let mut sim = capped(2);
    for id in ["a", "b"] {
        let (_, reason) = try_connect(&mut sim, persistent_connect(id, true, 600));
        assert_eq!(reason, ConnAckReason::Success);
    }
    assert_eq!(sim.broker.persistent_session_count(), 2);
    let before = sim.persisted.len();
    let (conn, reason) = try_connect(&mut sim, persistent_connect("c", true, 600));
    assert_eq!(reason, ConnAckReason::QuotaExceeded);
    assert!(sim.is_closed(conn));
    assert_eq!(
        sim.persisted.len(),
        before,
        "nothing stored for a refused session"
    );
    assert!(sim.notices.iter().any(|n| matches!(
        n,
        Notice::SessionLimit { client_id, limit: 2, .. } if client_id == "c"
    )));
    assert_eq!(sim.broker.stats().session_limit_refusals, 1);
    // 3.1.1 and 3.1 have no 0x97: return code 3, Server unavailable.
    for version in [V311, V31] {
        let (conn, reason) = try_connect(&mut sim, connect_packet(version, "d", false));
        assert_eq!(reason, ConnAckReason::ServerUnavailable, "{version:?}");
        assert!(sim.is_closed(conn));
    }
    // Clean sessions are not capped.
    let (_, reason) = try_connect(&mut sim, connect_packet(V5, "e", true));
    assert_eq!(reason, ConnAckReason::Success);
    assert_eq!(sim.broker.persistent_session_count(), 2);
    // Nothing was evicted to make room.
    assert_eq!(sim.store.state().sessions.len(), 2);
}

#[test]
fn resuming_taking_over_or_replacing_a_persistent_session_is_not_a_new_one() {
    let mut sim = capped(2);
    let (a, _) = try_connect(&mut sim, persistent_connect("a", true, 600));
    try_connect(&mut sim, persistent_connect("b", true, 600));
    // Takeover of a's connected session, resumed.
    let (a2, reason) = try_connect(&mut sim, persistent_connect("a", false, 600));
    assert_eq!(reason, ConnAckReason::Success);
    assert!(sim.is_closed(a));
    // Resume after the connection is gone.
    sim.lose(a2);
    let (_, reason) = try_connect(&mut sim, persistent_connect("a", false, 600));
    assert_eq!(reason, ConnAckReason::Success);
    // Clean Start replaces b's session with a new persistent one: still two.
    let (_, reason) = try_connect(&mut sim, persistent_connect("b", true, 600));
    assert_eq!(reason, ConnAckReason::Success);
    assert_eq!(sim.broker.persistent_session_count(), 2);
    // A connected clean session made persistent is one more persistent session.
    let (_, reason) = try_connect(&mut sim, connect_packet(V5, "e", true));
    assert_eq!(reason, ConnAckReason::Success);
    let (_, reason) = try_connect(&mut sim, persistent_connect("e", false, 600));
    assert_eq!(reason, ConnAckReason::QuotaExceeded);
}

#[test]
fn a_session_that_ends_makes_room_under_the_cap() {
    let mut sim = capped(2);
    let (a, _) = try_connect(&mut sim, persistent_connect("a", true, 600));
    let (b, _) = try_connect(&mut sim, persistent_connect("b", true, 5));
    // DISCONNECT lowering the expiry to 0 ends a's session with its connection.
    let mut bye = Disconnect::new(DisconnectReason::NormalDisconnection);
    bye.properties.session_expiry_interval = Some(0);
    sim.send(a, Packet::Disconnect(Box::new(bye)));
    assert_eq!(sim.broker.persistent_session_count(), 1);
    let (_, reason) = try_connect(&mut sim, persistent_connect("c", true, 600));
    assert_eq!(reason, ConnAckReason::Success);
    let (_, reason) = try_connect(&mut sim, persistent_connect("d", true, 600));
    assert_eq!(reason, ConnAckReason::QuotaExceeded);
    // b's session expires 5 s after its connection is gone.
    sim.lose(b);
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.broker.persistent_session_count(), 1, "b expired");
    let (_, reason) = try_connect(&mut sim, persistent_connect("d", true, 600));
    assert_eq!(reason, ConnAckReason::Success);
}

#[test]
fn a_restart_counts_the_stored_persistent_sessions_against_the_cap() {
    let mut sim = capped(2);
    for id in ["a", "b"] {
        let (conn, _) = try_connect(&mut sim, persistent_connect(id, true, 600));
        sim.lose(conn);
    }
    sim.restart();
    assert_eq!(
        sim.broker.persistent_session_count(),
        2,
        "a and b, from the store"
    );
    let (_, reason) = try_connect(&mut sim, persistent_connect("c", true, 600));
    assert_eq!(
        reason,
        ConnAckReason::QuotaExceeded,
        "the cap holds after a restart"
    );
    let (_, reason) = try_connect(&mut sim, persistent_connect("a", false, 600));
    assert_eq!(reason, ConnAckReason::Success, "a restored session resumes");
}
