//! Security (MQTT 5 §5): who may use a session, who may connect at all, and the limits that
//! keep one client from taking the broker's memory. §5 has no normative statements of its
//! own; the cases carry the statements of §3 they rely on: a CONNECT that fails the Server's
//! authentication or authorization checks is refused and closed ([MQTT-3.1.4-2]), Clean Start
//! 0 resumes the session ([MQTT-3.1.2-5]), the reason codes of SUBACK and PUBACK
//! ([MQTT-3.8.4-7], [MQTT-3.4.2-1]), and a refused CONNACK ([MQTT-3.2.2-6], [MQTT-3.2.2-7]).

use super::*;

/// The user of the cases that need one.
const ALICE: &[(&str, &str)] = &[("alice", "pw-alice")];

/// Users of the cases that need two.
const ALICE_BOB: &[(&str, &str)] = &[("alice", "pw-alice"), ("bob", "pw-bob")];

/// The ACL file `s5_security.acl`: anonymous clients may publish and read anything, alice
/// may use everything, bob may read everything but `t/alice/#`.
const ACL: &str = concat!(
    "[auth]\nallow_cross_user_takeover = true\nacl_file = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/conformance/s5_security.acl\"\n"
);

/// An MQTT 5 CONNECT as `user` with `password`, Clean Start `clean` and a Session Expiry
/// Interval of `expiry` seconds.
fn login(
    client_id: &str,
    user: &str,
    password: &'static [u8],
    clean: bool,
    expiry: u32,
) -> Connect {
    let mut c = connect_session(client_id, clean, expiry);
    c.username = Some(MqttString::try_from(user).expect("a user name"));
    c.password = Some(Bytes::from_static(password));
    c
}

/// An MQTT 3.1.1 CONNECT as `user` with `password` and this Clean Session flag.
fn login311(client_id: &str, user: &str, password: &'static [u8], clean: bool) -> Connect {
    Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: clean,
        client_id: MqttString::try_from(client_id).expect("a client identifier"),
        keep_alive: 60,
        username: Some(MqttString::try_from(user).expect("a user name")),
        password: Some(Bytes::from_static(password)),
        ..Connect::default()
    }
}

/// An anonymous CONNECT of `version` (3.1.1 or 3.1) with Clean Session 0: a persistent
/// session.
fn session311(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: false,
        client_id: MqttString::try_from(client_id).expect("a client identifier"),
        keep_alive: 60,
        ..Connect::default()
    }
}

/// A successful CONNACK with Session Present 1.
fn expect_resumed(s: Script, conn: usize) -> Script {
    s.expect_that(conn, "CONNACK 0x00, session present", |p| match p {
        Packet::ConnAck(a) if a.reason == ConnAckReason::Success && a.session_present => Ok(()),
        other => Err(format!("{other:?}")),
    })
}

/// A successful CONNACK whose Assigned Client Identifier is `id`.
fn expect_assigned(s: Script, conn: usize, id: &'static str) -> Script {
    s.expect_that(
        conn,
        &format!("CONNACK 0x00 assigning the client identifier {id:?}"),
        move |p| match p {
            Packet::ConnAck(a)
                if a.reason == ConnAckReason::Success
                    && a.properties
                        .assigned_client_identifier
                        .as_ref()
                        .map(MqttString::as_str)
                        == Some(id) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    )
}

/// The next packet is a PUBLISH on `topic_name`.
fn expect_publish_on(s: Script, conn: usize, topic_name: &'static str) -> Script {
    s.expect_that(
        conn,
        &format!("PUBLISH on {topic_name}"),
        move |p| match p {
            Packet::Publish(p) if p.topic() == topic_name => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
}

/// The SUBACK of packet `pid` carries exactly `code`.
fn expect_suback(s: Script, conn: usize, pid: u16, code: u8) -> Script {
    s.expect_that(
        conn,
        &format!("SUBACK {pid} with reason 0x{code:02X}"),
        move |p| match p {
            Packet::SubAck(a)
                if a.packet_id.get() == pid
                    && a.reasons.len() == 1
                    && a.reasons[0].as_u8() == code =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    )
}

/// A retained PUBLISH.
fn retained(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    let mut p = publish(topic_name, payload, qos, id);
    p.retain = true;
    p
}

pub(super) const CASES: &[Case] = &[
    // [MQTT-3.1.4-2] A session belongs to the user who created it: another user's CONNECT
    // for its Client Identifier fails the authorization check, CONNACK 0x87 and a close
    // ([MQTT-3.2.2-7]), with Clean Start 1 as with 0. Neither discards nor takes over the
    // session: its owner resumes it with the message queued meanwhile.
    Case::new(
        "security_session_of_another_user_is_refused_0x87",
        &["MQTT-3.1.4-2", "MQTT-3.2.2-7"],
        |s| {
            let s = s
                .connect_with(0, login("own-1", "alice", b"pw-alice", true, 300))
                .subscribe(0, 1, "t/#", QoS::AtLeastOnce)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .open(1)
                .send(1, login("own-1", "bob", b"pw-bob", true, 300))
                .expect_connack(1, ConnAckReason::NotAuthorized)
                .expect_closed(1)
                .open(2)
                .send(2, login("own-1", "bob", b"pw-bob", false, 300))
                .expect_connack(2, ConnAckReason::NotAuthorized)
                .expect_closed(2)
                .connect(3, "own-1-pub")
                .send(3, publish("t/x", b"for alice", QoS::AtLeastOnce, 1))
                .expect_reason(3, PacketType::PubAck, 0)
                .open(4)
                .send(4, login("own-1", "alice", b"pw-alice", false, 300));
            let s = expect_resumed(s, 4);
            expect_publish_on(s, 4, "t/x")
        },
    )
    .users(ALICE_BOB),
    // [MQTT-3.2.2-4], [MQTT-3.2.2-5] of 3.1.1: the same refusal to a 3.1.1 client is return
    // code 5 (not authorized) with Session Present 0, then a close; the owner resumes.
    Case::new(
        "security_session_of_another_user_is_refused_v311_rc5",
        &["3.1.1/MQTT-3.2.2-4", "3.1.1/MQTT-3.2.2-5"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, login311("own-2", "alice", b"pw-alice", false))
                .expect_hex(0, "20 02 00 00")
                .send_hex(0, "e0 00")
                .expect_closed(0)
                .open_with(1, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(1, login311("own-2", "bob", b"pw-bob", true))
                .expect_hex(1, "20 02 00 05")
                .expect_closed(1)
                .open_with(2, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(2, login311("own-2", "alice", b"pw-alice", false))
                .expect_hex(2, "20 02 01 00")
        },
    )
    .users(ALICE_BOB),
    // [MQTT-3.1.4-2] Another user's CONNECT for the Client Identifier of a connected client
    // is refused; the connected owner is not disconnected (no 0x8E) and keeps receiving.
    Case::new(
        "security_connected_owner_stays_when_another_user_uses_its_id",
        &["MQTT-3.1.4-2"],
        |s| {
            let s = s
                .connect_with(0, login("own-3", "alice", b"pw-alice", true, 0))
                .subscribe(0, 1, "t/#", QoS::AtMostOnce)
                .open(1)
                .send(1, login("own-3", "bob", b"pw-bob", true, 0))
                .expect_connack(1, ConnAckReason::NotAuthorized)
                .expect_closed(1)
                .connect(2, "own-3-pub")
                .send(2, publish("t/y", b"still here", QoS::AtMostOnce, 0));
            expect_publish_on(s, 0, "t/y")
        },
    )
    .users(ALICE_BOB),
    // [MQTT-3.1.4-3] With `use_username_as_client_id` the Client Identifier is the user
    // name: alice's CONNECT as "phone" is answered with the Assigned Client Identifier
    // "alice", and her CONNECT as "tablet" resumes that same session and takes it over
    // (DISCONNECT 0x8E to the first connection). [MQTT-3.1.4-2] A client without a user name
    // is refused with 0x87.
    Case::new(
        "security_use_username_as_client_id_gives_one_session_per_user",
        &["MQTT-3.1.4-3", "MQTT-3.1.4-2"],
        |s| {
            let s = s
                .open(0)
                .send(0, login("phone", "alice", b"pw-alice", true, 300));
            let s = expect_assigned(s, 0, "alice")
                .open(1)
                .send(1, login("tablet", "alice", b"pw-alice", false, 300));
            expect_resumed(s, 1)
                .expect_disconnect(0, DisconnectReason::SessionTakenOver)
                .open(2)
                .send(2, connect("anonymous-5"))
                .expect_connack(2, ConnAckReason::NotAuthorized)
                .expect_closed(2)
        },
    )
    .config("[auth]\nuse_username_as_client_id = true\n")
    .users(ALICE),
    // [MQTT-3.1.4-2] The same, set on one listener.
    Case::new(
        "security_listener_use_username_as_client_id",
        &["MQTT-3.1.4-2"],
        |s| {
            let s = s
                .open(0)
                .send(0, login("laptop", "alice", b"pw-alice", true, 0));
            expect_assigned(s, 0, "alice")
                .open(1)
                .send(1, connect("anonymous-5b"))
                .expect_connack(1, ConnAckReason::NotAuthorized)
                .expect_closed(1)
        },
    )
    .config(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\
         use_username_as_client_id = true\n",
    )
    .users(ALICE),
    // [MQTT-3.1.2-5] With `allow_cross_user_takeover` bob may resume alice's session, but
    // only with what he may read: of the two messages queued for it, t/alice/x (denied to
    // him) is dropped and t/open delivered, then the live t/marker.
    Case::new(
        "security_cross_user_takeover_drops_what_the_new_user_may_not_read",
        &["MQTT-3.1.2-5"],
        |s| {
            let s = s
                .connect_with(0, login("x-6", "alice", b"pw-alice", true, 300))
                .subscribe(0, 1, "t/#", QoS::AtLeastOnce)
                .send(0, normal_disconnect())
                .expect_closed(0)
                .connect(1, "x-6-pub")
                .send(1, publish("t/alice/x", b"alice only", QoS::AtLeastOnce, 1))
                .expect_reason(1, PacketType::PubAck, 0)
                .send(1, publish("t/open", b"anyone", QoS::AtLeastOnce, 2))
                .expect_reason(1, PacketType::PubAck, 0)
                .open(2)
                .send(2, login("x-6", "bob", b"pw-bob", false, 300));
            let s = expect_publish_on(expect_resumed(s, 2), 2, "t/open")
                .send(1, publish("t/marker", b"live", QoS::AtMostOnce, 0));
            expect_publish_on(s, 2, "t/marker")
        },
    )
    .config(ACL)
    .users(ALICE_BOB),
    // [MQTT-3.1.4-2] Authentication fails closed: without users, a client presenting any
    // user name is refused with 0x86 on a listener that refuses anonymous clients (and the
    // broker says so at start-up); an anonymous client there gets 0x87.
    Case::new(
        "security_no_users_refuses_every_user_name",
        &["MQTT-3.1.4-2", "MQTT-3.2.2-7"],
        |s| {
            s.expect_log("there are no users")
                .open(0)
                .send(0, login("fc-1", "alice", b"anything", true, 0))
                .expect_connack(0, ConnAckReason::BadUserNameOrPassword)
                .expect_closed(0)
                .open(1)
                .send(1, login("fc-2", "root", b"", true, 0))
                .expect_connack(1, ConnAckReason::BadUserNameOrPassword)
                .expect_closed(1)
                .open(2)
                .send(2, connect("fc-3"))
                .expect_connack(2, ConnAckReason::NotAuthorized)
                .expect_closed(2)
        },
    )
    .config("[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\n"),
    // [MQTT-3.2.2-4], [MQTT-3.2.2-5] of 3.1.1: the same to a 3.1.1 client is return code 4,
    // with the in-memory store as with the database.
    Case::new(
        "security_no_users_refuses_every_user_name_v311_in_memory",
        &["3.1.1/MQTT-3.2.2-4", "3.1.1/MQTT-3.2.2-5"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, login311("fc-4", "alice", b"anything", true))
                .expect_hex(0, "20 02 00 04")
                .expect_closed(0)
        },
    )
    .config(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\n\
         [storage]\ndurability = \"memory\"\n",
    ),
    // [MQTT-3.1.4-5] A listener with `ignore_credentials` admits clients as anonymous,
    // whatever user name and password they present: a wrong password and an unknown user.
    Case::new(
        "security_ignore_credentials_admits_clients_as_anonymous",
        &["MQTT-3.1.4-5"],
        |s| {
            s.connect_with(0, login("ic-1", "alice", b"not-her-password", true, 0))
                .expect_log("\"identity\":\"anonymous\"")
                .connect_with(1, login("ic-2", "nobody", b"x", true, 0))
        },
    )
    .config(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\
         ignore_credentials = true\n",
    )
    .users(ALICE),
    // [MQTT-3.8.4-7] A topic filter longer than `max_topic_filter_length` (4,096 bytes by
    // default) is refused with 0x8F; one of exactly 4,096 bytes is granted.
    Case::new(
        "security_topic_filter_past_the_length_limit_gets_0x8f",
        &["MQTT-3.8.4-7"],
        |s| {
            let over = format!("f/{}", "x".repeat(4_095));
            let at = format!("f/{}", "y".repeat(4_094));
            let s = s
                .connect(0, "len-1")
                .send(0, subscribe(1, &over, QoS::AtMostOnce));
            expect_suback(s, 0, 1, 0x8F).subscribe(0, 2, &at, QoS::AtMostOnce)
        },
    ),
    // [MQTT-3.8.4-7] Past `max_subscription_bytes_per_client` (the sum of a session's filter
    // lengths) a new filter is refused with 0x97; the same filter again replaces its
    // subscription and costs nothing more.
    Case::new(
        "security_subscription_bytes_past_the_budget_get_0x97",
        &["MQTT-3.8.4-7"],
        |s| {
            let a = format!("a/{}", "a".repeat(58));
            let b = format!("b/{}", "b".repeat(58));
            let s = s
                .connect(0, "budget-1")
                .subscribe(0, 1, &a, QoS::AtMostOnce)
                .send(0, subscribe(2, &b, QoS::AtMostOnce));
            expect_suback(s, 0, 2, 0x97).subscribe(0, 3, &a, QoS::AtLeastOnce)
        },
    )
    .config("[broker]\nmax_subscription_bytes_per_client = 100\n"),
    // [MQTT-3.4.2-1] Past `max_retained_messages` a retained PUBLISH for a new topic is
    // answered 0x97 at QoS 1 and not kept; a subscriber then gets the one kept, and the live
    // message after it.
    Case::new(
        "security_retained_past_the_limit_gets_0x97",
        &["MQTT-3.4.2-1"],
        |s| {
            let s = s
                .connect(0, "ret-1")
                .send(0, retained("r/1", b"kept", QoS::AtLeastOnce, 1))
                .expect_reason(0, PacketType::PubAck, 0x10)
                .send(0, retained("r/2", b"over", QoS::AtLeastOnce, 2))
                .expect_reason(0, PacketType::PubAck, 0x97)
                .connect(1, "ret-1-sub")
                .subscribe(1, 1, "r/#", QoS::AtMostOnce);
            let s =
                expect_publish_on(s, 1, "r/1").send(0, publish("r/live", b"l", QoS::AtMostOnce, 0));
            expect_publish_on(s, 1, "r/live")
        },
    )
    .config("[broker]\nmax_retained_messages = 1\n"),
    // Past `max_persistent_sessions` a CONNECT that would create one more persistent session
    // is refused with CONNACK 0x97, Session Present 0 ([MQTT-3.2.2-6]), and closed
    // ([MQTT-3.2.2-7]); the refusal is logged. Clean sessions still connect, and resuming an
    // existing persistent session is not a new one. Nothing was evicted to make room.
    Case::new(
        "security_persistent_sessions_past_the_cap_get_0x97",
        &["MQTT-3.2.2-6", "MQTT-3.2.2-7"],
        |s| {
            let s = s
                .connect_with(0, persistent("cap-1", true))
                .connect_with(1, persistent("cap-2", true))
                .open(2)
                .send(2, persistent("cap-3", true))
                .expect_that(2, "CONNACK 0x97, Session Present 0", |p| match p {
                    Packet::ConnAck(a)
                        if a.reason == ConnAckReason::QuotaExceeded && !a.session_present =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                })
                .expect_closed(2)
                .expect_log("max_persistent_sessions")
                .connect(3, "cap-clean")
                .send(0, normal_disconnect())
                .expect_closed(0)
                .open(4)
                .send(4, persistent("cap-1", false));
            expect_resumed(s, 4)
                .expect_metric("mqtt5_persistent_sessions", 2)
                .expect_metric("mqtt5_session_limit_refusals_total", 1)
        },
    )
    .config("[broker]\nmax_persistent_sessions = 2\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    // [MQTT-3.2.2-4], [MQTT-3.2.2-5] of 3.1.1: 3.1.1 and 3.1 have no 0x97; a Clean Session 0
    // CONNECT past `max_persistent_sessions` gets return code 3 (Server unavailable) with
    // Session Present 0, then a close.
    Case::new(
        "security_persistent_sessions_past_the_cap_get_v311_rc3",
        &["3.1.1/MQTT-3.2.2-4", "3.1.1/MQTT-3.2.2-5"],
        |s| {
            s.open_with(0, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(0, session311(ProtocolVersion::V3_1_1, "cap311-1"))
                .expect_hex(0, "20 02 00 00")
                .open_with(1, ProtocolVersion::V3_1_1, Transport::Tcp)
                .send(1, session311(ProtocolVersion::V3_1_1, "cap311-2"))
                .expect_hex(1, "20 02 00 03")
                .expect_closed(1)
                .open_with(2, ProtocolVersion::V3_1, Transport::Tcp)
                .send(2, session311(ProtocolVersion::V3_1, "cap31-3"))
                .expect_hex(2, "20 02 00 03")
                .expect_closed(2)
        },
    )
    .config("[broker]\nmax_persistent_sessions = 1\n"),
];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[];
