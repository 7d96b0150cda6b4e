//! Identities and sessions, access rules on every delivery path, fail-closed authentication,
//! login delays and memory bounded in bytes.

use std::time::Duration;

use mqtt5_broker::{
    AclRules, AuthVerdict, Config, Credentials, Identity, Notice, PasswordParams, Passwords,
    Services, hash_password_with,
};
use mqtt5_codec::{
    ConnAckReason, Connect, Packet, ProtocolVersion, PubAck, PubAckReason, QoS, SubAckReason,
};
use mqtt5_store::{SessionRecord, Store, StoreOp};

use crate::harness::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// alice, bob and carol, each with the password "pw".
fn users() -> Credentials {
    let params = PasswordParams::new(64, 1, 1).unwrap();
    let mut users = Credentials::new();
    for name in ["alice", "bob", "carol"] {
        let phc = hash_password_with(b"pw", b"0123456789abcdef", params).unwrap();
        users.insert(name, phc).unwrap();
    }
    users
}

/// alice may read everything but `secret/#`; bob everything; carol only `public/#`.
const ACL: &str = "\
user alice
topic deny secret/#
topic readwrite #

user bob
topic readwrite #

user carol
topic readwrite public/#
";

fn services() -> Services {
    Services {
        passwords: Passwords::Inline(Box::new(users())),
        authorizer: Box::new(AclRules::parse(ACL).unwrap()),
        ..open_services()
    }
}

fn sim_with(config: Config) -> Sim {
    Sim::with_services(config, services())
}

fn sim() -> Sim {
    sim_with(quiet_config())
}

/// A CONNECT as `user` (password "pw").
fn as_user(version: ProtocolVersion, id: &str, user: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = connect_packet(version, id, clean);
    c.username = Some(user.try_into().unwrap());
    c.password = Some(bytes::Bytes::from_static(b"pw"));
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Connects and expects CONNACK `reason`; returns the connection and Session Present.
fn connect_expect(
    sim: &mut Sim,
    c: Connect,
    reason: ConnAckReason,
) -> (mqtt5_broker::ConnId, bool) {
    let conn = sim.connect_with(c);
    if sim.recv_pending(conn) == 0 {
        // A refused login is answered after its delay.
        sim.advance(Duration::from_secs(5));
    }
    match sim.expect(conn) {
        Packet::ConnAck(a) => {
            assert_eq!(a.reason, reason, "{a:?}");
            (conn, a.session_present)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn puback(sim: &mut Sim, conn: mqtt5_broker::ConnId, id: u16) {
    sim.send(
        conn,
        Packet::PubAck(PubAck::new(mqtt5_codec::PacketId::new(id).unwrap())),
    );
}

fn topics(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic().to_owned()),
            _ => None,
        })
        .collect()
}

// ---- Sessions belong to their identity --------------------------------------------------

#[test]
fn another_users_connect_neither_takes_over_nor_discards_the_session() {
    let mut sim = sim();
    let (alice, _) = connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "alice", true, 3600),
        ConnAckReason::Success,
    );
    sim.subscribe(alice, "#", QoS::AtLeastOnce);
    sim.lose(alice);
    let (bob, _) = connect_expect(
        &mut sim,
        as_user(V5, "bob-1", "bob", true, 0),
        ConnAckReason::Success,
    );
    sim.publish(bob, "alice/private/1", b"for alice", QoS::AtLeastOnce, 1);
    sim.drain(bob);

    // carol, a valid user, asks for alice's client identifier: resume, clean start, 3.1.1.
    for c in [
        as_user(V5, "alice-phone", "carol", false, 3600),
        as_user(V5, "alice-phone", "carol", true, 0),
        as_user(V311, "alice-phone", "carol", false, 0),
    ] {
        let version = c.protocol;
        let (conn, present) = connect_expect(&mut sim, c, ConnAckReason::NotAuthorized);
        assert!(!present);
        assert!(sim.is_closed(conn), "{version:?}");
    }
    assert_eq!(sim.broker.stats().ownership_refusals, 3);
    assert!(sim.notices.iter().any(|n| matches!(
        n,
        Notice::SessionOwnedByOther { owner: Identity::User(o), identity: Identity::User(i), .. }
            if &**o == "alice" && &**i == "carol"
    )));

    // alice comes back to her session and its queued message.
    let (alice, present) = connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "alice", false, 3600),
        ConnAckReason::Success,
    );
    assert!(present);
    assert_eq!(sim.expect_publish(alice).topic(), "alice/private/1");

    // While alice is online, carol's attempt does not disconnect her.
    connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "carol", false, 0),
        ConnAckReason::NotAuthorized,
    );
    assert!(!sim.is_closed(alice));
    assert!(sim.drain(alice).is_empty());
}

#[test]
fn the_3_1_1_refusal_is_return_code_5() {
    let mut sim = sim();
    connect_expect(
        &mut sim,
        as_user(V311, "shared-id", "alice", false, 0),
        ConnAckReason::Success,
    );
    let conn = sim.connect_with(as_user(V311, "shared-id", "bob", true, 0));
    match sim.expect(conn) {
        Packet::ConnAck(a) => assert_eq!(a.reason.v3_return_code(), 5),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_owner_survives_a_restart() {
    let mut sim = sim();
    let (alice, _) = connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "alice", true, 3600),
        ConnAckReason::Success,
    );
    sim.subscribe(alice, "a/#", QoS::AtLeastOnce);
    sim.lose(alice);
    sim.restart_with(services());
    connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "carol", false, 0),
        ConnAckReason::NotAuthorized,
    );
    let (_, present) = connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "alice", false, 3600),
        ConnAckReason::Success,
    );
    assert!(present);
}

#[test]
fn a_stored_session_without_owner_is_claimed_by_the_next_client() {
    let mut sim = sim();
    sim.store
        .apply(&[StoreOp::SessionSaved(SessionRecord {
            client_id: "legacy".into(),
            protocol: V5,
            owner: None,
            expiry_interval: 3600,
            expires_at_ms: Some(1_700_000_000_000 + 3_600_000),
            will: None,
        })])
        .unwrap();
    sim.restart_with(services());
    let (bob, present) = connect_expect(
        &mut sim,
        as_user(V5, "legacy", "bob", false, 3600),
        ConnAckReason::Success,
    );
    assert!(present);
    sim.lose(bob);
    connect_expect(
        &mut sim,
        as_user(V5, "legacy", "alice", false, 3600),
        ConnAckReason::NotAuthorized,
    );
}

#[test]
fn cross_user_takeover_when_allowed_drops_what_the_new_identity_may_not_read() {
    let mut sim = sim_with(Config {
        allow_cross_user_takeover: true,
        ..quiet_config()
    });
    let (alice, _) = connect_expect(
        &mut sim,
        as_user(V5, "phone", "alice", true, 3600),
        ConnAckReason::Success,
    );
    sim.subscribe(alice, "#", QoS::AtLeastOnce);
    let (bob, _) = connect_expect(
        &mut sim,
        as_user(V5, "bob-1", "bob", true, 0),
        ConnAckReason::Success,
    );
    // In flight to alice, never acknowledged...
    sim.publish(bob, "alice/inflight", b"1", QoS::AtLeastOnce, 1);
    assert_eq!(sim.expect_publish(alice).topic(), "alice/inflight");
    sim.lose(alice);
    // ...and queued while she is away.
    sim.publish(bob, "alice/queued", b"2", QoS::AtLeastOnce, 2);
    sim.publish(bob, "public/news", b"3", QoS::AtLeastOnce, 3);
    sim.drain(bob);
    let (carol, present) = connect_expect(
        &mut sim,
        as_user(V5, "phone", "carol", false, 3600),
        ConnAckReason::Success,
    );
    assert!(present);
    assert_eq!(topics(&sim.drain(carol)), ["public/news"]);
    assert_eq!(sim.broker.stats().denied_deliveries, 2);
}

#[test]
fn use_username_as_client_id_gives_each_user_one_session() {
    let mut sim = sim_with(Config {
        use_username_as_client_id: true,
        ..quiet_config()
    });
    let first = sim.connect_with(as_user(V5, "whatever", "alice", true, 0));
    match sim.expect(first) {
        Packet::ConnAck(a) => {
            assert_eq!(a.reason, ConnAckReason::Success);
            assert_eq!(
                a.properties
                    .assigned_client_identifier
                    .as_ref()
                    .map(|s| s.as_str()),
                Some("alice")
            );
        }
        other => panic!("{other:?}"),
    }
    // Another client id of alice's is the same session: the first connection is taken over.
    connect_expect(
        &mut sim,
        as_user(V5, "other", "alice", true, 0),
        ConnAckReason::Success,
    );
    match sim.expect(first) {
        Packet::Disconnect(d) => assert_eq!(d.reason.as_u8(), 0x8E),
        other => panic!("{other:?}"),
    }
    // Without a user name there is no client identifier to use.
    let anonymous = sim.connect_with(connect_packet(V5, "anon", true));
    match sim.expect(anonymous) {
        Packet::ConnAck(a) => assert_eq!(a.reason, ConnAckReason::NotAuthorized),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_certificate_is_the_identity_of_a_client_without_user_name() {
    let mut sim = Sim::new(quiet_config());
    let first = sim.open(V5);
    sim.broker
        .handle_client_certificate(first, "CN=sensor-1,O=Example".into());
    sim.send(
        first,
        Packet::Connect(Box::new(persistent_connect("sensor-1", true, 3600))),
    );
    assert!(matches!(sim.expect(first), Packet::ConnAck(a) if a.reason == ConnAckReason::Success));
    assert!(sim.notices.iter().any(|n| matches!(
        n,
        Notice::Accepted { identity: Identity::Certificate(s), .. } if &**s == "CN=sensor-1,O=Example"
    )));
    sim.lose(first);
    // Another certificate may not resume it; an anonymous client may not either.
    let other = sim.open(V5);
    sim.broker
        .handle_client_certificate(other, "CN=sensor-2,O=Example".into());
    sim.send(
        other,
        Packet::Connect(Box::new(persistent_connect("sensor-1", false, 3600))),
    );
    assert!(
        matches!(sim.expect(other), Packet::ConnAck(a) if a.reason == ConnAckReason::NotAuthorized)
    );
    let anonymous = sim.connect_with(persistent_connect("sensor-1", false, 3600));
    assert!(
        matches!(sim.expect(anonymous), Packet::ConnAck(a) if a.reason == ConnAckReason::NotAuthorized)
    );
}

// ---- Access rules on every path -----------------------------------------------------------

#[test]
fn queued_messages_are_checked_again_when_the_rules_changed_while_offline() {
    let mut sim = sim();
    let (alice, _) = connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "alice", true, 3600),
        ConnAckReason::Success,
    );
    sim.subscribe(alice, "#", QoS::AtLeastOnce);
    sim.lose(alice);
    let (bob, _) = connect_expect(
        &mut sim,
        as_user(V5, "bob-1", "bob", true, 0),
        ConnAckReason::Success,
    );
    sim.publish(bob, "news/1", b"1", QoS::AtLeastOnce, 1);
    sim.publish(bob, "public/2", b"2", QoS::AtLeastOnce, 2);
    sim.drain(bob);
    // The rules are reloaded: alice may now read only public/#.
    let stricter = "user alice\ntopic readwrite public/#\nuser bob\ntopic readwrite #\n";
    sim.broker
        .set_authorizer(Box::new(AclRules::parse(stricter).unwrap()));
    let (alice, _) = connect_expect(
        &mut sim,
        as_user(V5, "alice-phone", "alice", false, 3600),
        ConnAckReason::Success,
    );
    assert_eq!(topics(&sim.drain(alice)), ["public/2"]);
    assert_eq!(sim.broker.stats().denied_deliveries, 1);
}

#[test]
fn retained_messages_obey_the_access_rules_mqtt_3_3_1_9() {
    for version in [V5, V311] {
        let mut sim = sim();
        let (bob, _) = connect_expect(
            &mut sim,
            as_user(V5, "bob-1", "bob", true, 0),
            ConnAckReason::Success,
        );
        for (id, topic) in [(1, "secret/r1"), (2, "public/r1"), (3, "news/r2")] {
            let mut p = mqtt5_codec::Publish::new(topic.try_into().unwrap(), b"r".to_vec());
            p.retain = true;
            p.delivery = mqtt5_codec::Delivery::new(
                QoS::AtLeastOnce,
                mqtt5_codec::PacketId::new(id).unwrap(),
            );
            sim.send(bob, Packet::Publish(p));
        }
        sim.drain(bob);
        let (alice, _) = connect_expect(
            &mut sim,
            as_user(version, "alice-1", "alice", true, 0),
            ConnAckReason::Success,
        );
        for filter in ["#", "+/+", "+/r1"] {
            sim.subscribe_with(
                alice,
                filter,
                mqtt5_codec::SubscriptionOptions::new(QoS::AtMostOnce),
                None,
            );
            let got = topics(&sim.drain(alice));
            assert!(
                !got.iter().any(|t| t.starts_with("secret/")),
                "{version:?} {filter}: {got:?}"
            );
            assert!(
                got.iter().any(|t| t == "public/r1"),
                "{version:?} {filter}: {got:?}"
            );
        }
        assert_eq!(sim.broker.stats().denied_deliveries, 3, "{version:?}");
    }
}

#[test]
fn shared_subscription_messages_go_to_members_that_may_read_them_mqtt_4_8_2() {
    let mut sim = sim();
    let (alice, _) = connect_expect(
        &mut sim,
        as_user(V5, "alice-1", "alice", true, 0),
        ConnAckReason::Success,
    );
    let (bob, _) = connect_expect(
        &mut sim,
        as_user(V5, "bob-1", "bob", true, 0),
        ConnAckReason::Success,
    );
    sim.subscribe(alice, "$share/grp/#", QoS::AtLeastOnce);
    sim.subscribe(bob, "$share/grp/#", QoS::AtLeastOnce);
    let (publisher, _) = connect_expect(
        &mut sim,
        as_user(V5, "pub", "bob", true, 0),
        ConnAckReason::Success,
    );
    for id in 1..=10 {
        sim.publish(publisher, "secret/s", b"x", QoS::AtLeastOnce, id);
        match sim.expect(publisher) {
            Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::Success),
            other => panic!("{other:?}"),
        }
        let p = sim.expect_publish(bob);
        puback(&mut sim, bob, p.delivery.packet_id().unwrap().get());
    }
    assert!(sim.drain(alice).is_empty());

    // A group no member of which may read the topic gets nothing, and it is counted.
    sim.lose(bob);
    let before = sim.broker.stats().denied_deliveries;
    sim.publish(publisher, "secret/s", b"x", QoS::AtLeastOnce, 11);
    match sim.expect(publisher) {
        Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::NoMatchingSubscribers),
        other => panic!("{other:?}"),
    }
    assert!(sim.drain(alice).is_empty());
    assert_eq!(sim.broker.stats().denied_deliveries, before + 1);
}

// ---- Authentication fails closed ------------------------------------------------------------

#[test]
fn a_user_name_with_no_users_configured_is_refused() {
    let mut sim = Sim::new(quiet_config());
    connect_expect(
        &mut sim,
        as_user(V5, "c1", "anyone", true, 0),
        ConnAckReason::BadUserNameOrPassword,
    );
    let conn = sim.connect_with(as_user(V311, "c2", "anyone", true, 0));
    sim.advance(Duration::from_secs(5));
    assert!(matches!(sim.expect(conn), Packet::ConnAck(a) if a.reason.v3_return_code() == 4));
    // Without a user name, anonymous access decides.
    connect_expect(
        &mut sim,
        connect_packet(V5, "c3", true),
        ConnAckReason::Success,
    );
}

#[test]
fn a_listener_that_ignores_credentials_admits_clients_as_anonymous() {
    let mut sim = Sim::new(Config {
        ignore_credentials: true,
        ..quiet_config()
    });
    connect_expect(
        &mut sim,
        as_user(V5, "c1", "anyone", true, 0),
        ConnAckReason::Success,
    );
    assert!(sim.notices.iter().any(|n| matches!(
        n,
        Notice::Accepted {
            identity: Identity::Anonymous,
            ..
        }
    )));
}

#[test]
fn a_deferred_password_check_holds_the_connack_until_the_verdict() {
    let services = Services {
        passwords: Passwords::Deferred,
        ..open_services()
    };
    let mut sim = Sim::with_services(quiet_config(), services);
    let conn = sim.connect_with(as_user(V5, "c1", "alice", true, 0));
    assert_eq!(sim.recv_pending(conn), 0);
    assert!(!sim.broker.accepts_packets(conn));
    let check = sim.password_checks.pop_front().unwrap();
    assert_eq!((check.conn, check.username.as_str()), (conn, "alice"));
    assert_eq!(check.password.as_deref(), Some(&b"pw"[..]));
    sim.broker
        .handle_password_verdict(sim.now, conn, AuthVerdict::Allow);
    sim.run();
    assert!(matches!(sim.expect(conn), Packet::ConnAck(a) if a.reason == ConnAckReason::Success));
    assert!(sim.broker.accepts_packets(conn));

    // A wrong password is refused (after the delay); an overloaded checker answers busy at once.
    let bad = sim.connect_with(as_user(V5, "c2", "alice", true, 0));
    sim.password_checks.clear();
    sim.broker
        .handle_password_verdict(sim.now, bad, AuthVerdict::BadCredentials);
    sim.run();
    sim.advance(Duration::from_secs(5));
    assert!(
        matches!(sim.expect(bad), Packet::ConnAck(a) if a.reason == ConnAckReason::BadUserNameOrPassword)
    );
    let busy = sim.connect_with(as_user(V5, "c3", "alice", true, 0));
    sim.broker
        .handle_password_verdict(sim.now, busy, AuthVerdict::Busy);
    sim.run();
    assert!(
        matches!(sim.expect(busy), Packet::ConnAck(a) if a.reason == ConnAckReason::ServerBusy)
    );
    // A verdict nobody waits for changes nothing.
    sim.broker
        .handle_password_verdict(sim.now, conn, AuthVerdict::BadCredentials);
    sim.run();
    assert!(!sim.is_closed(conn));
}

#[test]
fn failed_logins_are_refused_after_a_growing_delay() {
    let mut sim = sim();
    let mut wrong = as_user(V5, "c1", "alice", true, 0);
    wrong.password = Some(bytes::Bytes::from_static(b"guess"));
    for expected_ms in [100, 200, 400, 800] {
        let conn = sim.connect_with(wrong.clone());
        sim.advance(Duration::from_millis(expected_ms - 1));
        assert_eq!(
            sim.recv_pending(conn),
            0,
            "refused before its delay of {expected_ms} ms"
        );
        sim.advance(Duration::from_millis(1));
        assert!(
            matches!(sim.expect(conn), Packet::ConnAck(a) if a.reason == ConnAckReason::BadUserNameOrPassword)
        );
        assert!(sim.is_closed(conn));
    }
    // The right password is never delayed.
    let good = sim.connect_with(as_user(V5, "c2", "alice", true, 0));
    assert!(matches!(sim.expect(good), Packet::ConnAck(a) if a.reason == ConnAckReason::Success));
}

#[test]
fn packets_after_a_refused_connect_are_not_processed_mqtt_3_1_4_6() {
    let mut sim = sim();
    let mut wrong = as_user(V5, "c1", "alice", true, 0);
    wrong.password = Some(bytes::Bytes::from_static(b"guess"));
    let conn = sim.connect_with(wrong);
    assert!(!sim.broker.accepts_packets(conn));
    sim.advance(Duration::from_secs(5));
    assert!(
        matches!(sim.expect(conn), Packet::ConnAck(a) if a.reason == ConnAckReason::BadUserNameOrPassword)
    );
}

// ---- Memory bounded in bytes ----------------------------------------------------------------

#[test]
fn a_session_queue_is_bounded_in_bytes() {
    let mut sim = Sim::new(Config {
        max_queued_bytes: 10_000,
        ..quiet_config()
    });
    let sub = sim.connect_with(persistent_connect("sub", true, 3600));
    sim.expect(sub);
    sim.subscribe(sub, "big/#", QoS::AtLeastOnce);
    sim.lose(sub);
    let publisher = sim.connect(V5, "pub", true);
    for id in 1..=20 {
        sim.publish(
            publisher,
            &format!("big/{id}"),
            &[0; 1000],
            QoS::AtLeastOnce,
            id,
        );
    }
    // About 1 KiB each with the delivery overhead: eight fit in 10,000 bytes.
    assert_eq!(sim.broker.stats().messages_dropped, 12);
    assert!(sim.broker.queued_bytes() <= 10_000);
    let sub = sim.connect_with(persistent_connect("sub", false, 3600));
    let got = topics(&sim.drain(sub));
    // The oldest were dropped (drop-oldest).
    assert_eq!(got.first().map(String::as_str), Some("big/13"));
    assert_eq!(got.len(), 8);
}

#[test]
fn the_queue_memory_limit_refuses_new_persistent_work_with_0x97() {
    let mut sim = Sim::new(Config {
        max_queued_bytes_total: 5_000,
        ..quiet_config()
    });
    let sub = sim.connect_with(persistent_connect("sub", true, 3600));
    sim.expect(sub);
    sim.subscribe(sub, "t/#", QoS::AtLeastOnce);
    sim.lose(sub);
    let publisher = sim.connect(V5, "pub", true);
    let mut reasons = Vec::new();
    for id in 1..=8 {
        sim.publish(publisher, "t/x", &[0; 1000], QoS::AtLeastOnce, id);
        if let Packet::PubAck(a) = sim.expect(publisher) {
            reasons.push(a.reason);
        }
    }
    assert!(
        reasons.contains(&PubAckReason::QuotaExceeded),
        "{reasons:?}"
    );
    assert!(sim.broker.queue_memory_full());
    assert!(
        sim.notices.contains(&Notice::QueueMemory {
            full: true,
            bytes: sim.broker.queued_bytes()
        }) || sim
            .notices
            .iter()
            .any(|n| matches!(n, Notice::QueueMemory { full: true, .. }))
    );
    // A new persistent session is refused too; a clean one is not.
    let refused = sim.connect_with(persistent_connect("other", true, 3600));
    assert!(
        matches!(sim.expect(refused), Packet::ConnAck(a) if a.reason == ConnAckReason::QuotaExceeded)
    );
    sim.connect(V5, "clean", true);
    // The subscriber drains its queue: new work is accepted again.
    let sub = sim.connect_with(persistent_connect("sub", false, 3600));
    for p in sim.drain(sub) {
        if let Packet::Publish(p) = p {
            puback(&mut sim, sub, p.delivery.packet_id().unwrap().get());
        }
    }
    assert!(!sim.broker.queue_memory_full());
    assert!(
        sim.notices
            .iter()
            .any(|n| matches!(n, Notice::QueueMemory { full: false, .. }))
    );
    sim.publish(publisher, "t/x", &[0; 1000], QoS::AtLeastOnce, 9);
    assert!(
        matches!(sim.expect(publisher), Packet::PubAck(a) if a.reason == PubAckReason::Success)
    );
}

#[test]
fn the_retained_store_is_bounded_in_count_and_bytes() {
    let mut sim = Sim::new(Config {
        max_retained_messages: 2,
        max_retained_bytes: 3_000,
        ..quiet_config()
    });
    let publisher = sim.connect(V5, "pub", true);
    let retain = |sim: &mut Sim, topic: &str, size: usize, qos: QoS, id: u16| {
        let mut p = mqtt5_codec::Publish::new(topic.try_into().unwrap(), vec![1; size]);
        p.retain = true;
        if qos != QoS::AtMostOnce {
            p.delivery = mqtt5_codec::Delivery::new(qos, mqtt5_codec::PacketId::new(id).unwrap());
        }
        sim.send(publisher, Packet::Publish(p));
        sim.drain(publisher)
    };
    retain(&mut sim, "r/1", 100, QoS::AtLeastOnce, 1);
    retain(&mut sim, "r/2", 100, QoS::AtLeastOnce, 2);
    // A third topic is past the count: refused at QoS 1...
    let acks = retain(&mut sim, "r/3", 100, QoS::AtLeastOnce, 3);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason == PubAckReason::QuotaExceeded),
        "{acks:?}"
    );
    // ...delivered but not kept at QoS 0.
    let live = sim.connect(V5, "live", true);
    sim.subscribe(live, "r/#", QoS::AtMostOnce);
    sim.drain(live);
    retain(&mut sim, "r/3", 100, QoS::AtMostOnce, 0);
    assert_eq!(topics(&sim.drain(live)), ["r/3"]);
    assert_eq!(sim.broker.retained_count(), 2);
    assert_eq!(sim.broker.stats().retained_refused, 2);
    // Replacing a kept topic is fine, within the bytes; past the bytes it is refused.
    let acks = retain(&mut sim, "r/1", 2_000, QoS::AtLeastOnce, 4);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason == PubAckReason::NoMatchingSubscribers || a.reason == PubAckReason::Success),
        "{acks:?}"
    );
    let acks = retain(&mut sim, "r/2", 2_000, QoS::AtLeastOnce, 5);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason == PubAckReason::QuotaExceeded),
        "{acks:?}"
    );
    // Clearing frees room.
    retain(&mut sim, "r/1", 0, QoS::AtLeastOnce, 6);
    let acks = retain(&mut sim, "r/3", 2_000, QoS::AtLeastOnce, 7);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason != PubAckReason::QuotaExceeded),
        "{acks:?}"
    );
    assert!(sim.broker.retained_bytes() <= 3_000);
}

#[test]
fn long_filters_and_the_subscription_budget_are_refused() {
    let mut sim = Sim::new(Config {
        max_topic_filter_length: 16,
        max_subscription_bytes_per_client: 30,
        ..quiet_config()
    });
    let conn = sim.connect(V5, "c", true);
    let reason = |sim: &mut Sim, filter: &str| {
        sim.subscribe_with(
            conn,
            filter,
            mqtt5_codec::SubscriptionOptions::new(QoS::AtMostOnce),
            None,
        );
        match sim.expect(conn) {
            Packet::SubAck(a) => a.reasons[0],
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        reason(&mut sim, "a/very/long/filter/#"),
        SubAckReason::TopicFilterInvalid
    );
    assert_eq!(reason(&mut sim, "aaaaaaaaaa/1"), SubAckReason::GrantedQoS0);
    assert_eq!(reason(&mut sim, "bbbbbbbbbb/2"), SubAckReason::GrantedQoS0);
    // 24 bytes held; 12 more would pass 30.
    assert_eq!(
        reason(&mut sim, "cccccccccc/3"),
        SubAckReason::QuotaExceeded
    );
    // The same filter again replaces, and costs nothing more.
    assert_eq!(reason(&mut sim, "bbbbbbbbbb/2"), SubAckReason::GrantedQoS0);
    let unsub = mqtt5_codec::Unsubscribe {
        packet_id: mqtt5_codec::PacketId::new(2).unwrap(),
        properties: Default::default(),
        filters: vec!["aaaaaaaaaa/1".try_into().unwrap()],
    };
    sim.send(conn, Packet::Unsubscribe(unsub));
    sim.drain(conn);
    assert_eq!(reason(&mut sim, "cccccccccc/3"), SubAckReason::GrantedQoS0);
}
