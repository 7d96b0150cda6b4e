//! Authentication and authorization through the broker: password checks, ACL decisions, and a
//! SCRAM-SHA-256 exchange driven by a small client written here with the RustCrypto crates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use mqtt5_broker::{
    AclRules, Credentials, PasswordParams, Passwords, ScramCredentials, ScramSha256, Services,
    hash_password_with,
};
use mqtt5_codec::{
    Auth, AuthReason, ConnAckReason, Packet, ProtocolVersion, PubAckReason, QoS, SubAckReason,
    TopicName, Will,
};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

use crate::harness::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn credentials() -> Credentials {
    // Cheap parameters: the tests check the flow, not argon2's cost.
    let params = PasswordParams::new(64, 1, 1).unwrap();
    let mut users = Credentials::new();
    let phc = hash_password_with(b"s3cret", b"0123456789abcdef", params).unwrap();
    users.insert("alice", phc).unwrap();
    users
}

fn password_connect(version: ProtocolVersion, user: &str, password: &[u8]) -> mqtt5_codec::Connect {
    let mut c = connect_packet(version, &format!("{user}-client"), true);
    c.username = Some(user.try_into().unwrap());
    c.password = Some(bytes::Bytes::copy_from_slice(password));
    c
}

fn with_users() -> Sim {
    let services = Services {
        passwords: Passwords::Inline(Box::new(credentials())),
        ..open_services()
    };
    Sim::with_services(quiet_config(), services)
}

#[test]
fn correct_password_is_accepted() {
    let mut sim = with_users();
    let c = sim.connect_with(password_connect(V5, "alice", b"s3cret"));
    match sim.expect(c) {
        Packet::ConnAck(a) => assert_eq!(a.reason, ConnAckReason::Success),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_password_gets_0x86_or_return_code_4() {
    let mut sim = with_users();
    for (version, user) in [
        (V5, "alice"),
        (ProtocolVersion::V3_1_1, "alice"),
        (V5, "mallory"),
    ] {
        let c = sim.connect_with(password_connect(version, user, b"guess"));
        // A failed login is answered after the login delay.
        sim.advance(Duration::from_secs(5));
        match sim.expect(c) {
            Packet::ConnAck(a) => {
                assert_eq!(a.reason, ConnAckReason::BadUserNameOrPassword);
                assert_eq!(a.reason.v3_return_code(), 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(sim.is_closed(c));
    }
    assert_eq!(sim.broker.stats().auth_failures, 3);
}

fn with_acl(text: &str) -> Sim {
    let services = Services {
        authorizer: Box::new(AclRules::parse(text).unwrap()),
        ..open_services()
    };
    Sim::with_services(quiet_config(), services)
}

#[test]
fn denied_publish_gets_0x87_at_qos1_and_is_dropped_silently_at_qos0() {
    let mut sim = with_acl("pattern readwrite open/#\n");
    let watcher = sim.connect(V5, "w", true);
    sim.subscribe(watcher, "open/#", QoS::AtLeastOnce);
    let c = sim.connect(V5, "c", true);
    sim.publish(c, "secret/x", b"x", QoS::AtLeastOnce, 1);
    match sim.expect(c) {
        Packet::PubAck(a) => assert_eq!(a.reason, PubAckReason::NotAuthorized),
        other => panic!("{other:?}"),
    }
    sim.publish(c, "secret/x", b"x", QoS::AtMostOnce, 0);
    assert!(sim.recv(c).is_none(), "QoS 0: no answer");
    assert!(!sim.is_closed(c));
    sim.publish(c, "open/x", b"ok", QoS::AtLeastOnce, 2);
    assert!(matches!(sim.expect(c), Packet::PubAck(a) if a.reason == PubAckReason::Success));
    assert_eq!(sim.expect_publish(watcher).payload(), b"ok");
}

#[test]
fn denied_subscribe_gets_0x87_for_that_filter() {
    let mut sim = with_acl("pattern read open/#\npattern read clients/%c/#\n");
    let c = sim.connect(V5, "me", true);
    let sub = mqtt5_codec::Subscribe {
        packet_id: mqtt5_codec::PacketId::new(1).unwrap(),
        properties: Default::default(),
        subscriptions: [
            "open/a",
            "secret/#",
            "clients/me/inbox",
            "clients/you/inbox",
        ]
        .iter()
        .map(|f| mqtt5_codec::Subscription {
            filter: (*f).try_into().unwrap(),
            options: mqtt5_codec::SubscriptionOptions::new(QoS::AtMostOnce),
        })
        .collect(),
    };
    sim.send(c, Packet::Subscribe(sub));
    match sim.expect(c) {
        Packet::SubAck(a) => assert_eq!(
            a.reasons,
            [
                SubAckReason::GrantedQoS0,
                SubAckReason::NotAuthorized,
                SubAckReason::GrantedQoS0,
                SubAckReason::NotAuthorized,
            ]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn will_to_a_denied_topic_is_not_published() {
    let mut sim = with_acl("pattern readwrite open/#\npattern read #\n");
    let watcher = sim.connect(V5, "w", true);
    sim.subscribe(watcher, "#", QoS::AtMostOnce);
    let mut c = connect_packet(V5, "sneaky", true);
    c.will = Some(Will {
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        topic: TopicName::try_from("secret/will").unwrap(),
        payload: bytes::Bytes::from_static(b"x"),
    });
    let conn = sim.connect_with(c);
    sim.expect(conn);
    sim.lose(conn);
    assert!(sim.recv(watcher).is_none());
    assert_eq!(sim.broker.stats().denied_publishes, 1);
}

// ---- SCRAM-SHA-256 (MQTT 5 §4.12) ----

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn scram_sim() -> Sim {
    let mut scram = ScramSha256::new();
    scram.insert(
        "bob",
        ScramCredentials::derive(b"hunter2", b"salt-for-bob-123", 4096),
    );
    scram.insert(
        "carol",
        ScramCredentials::derive(b"carols-pw", b"salt-for-carol-1", 4096),
    );
    let services = Services {
        enhanced: vec![Box::new(scram)],
        ..open_services()
    };
    Sim::with_services(quiet_config(), services)
}

fn auth_packet(data: Vec<u8>) -> Packet {
    let mut a = Auth {
        reason: AuthReason::ContinueAuthentication,
        properties: Default::default(),
    };
    a.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    a.properties.authentication_data = Some(data.into());
    Packet::Auth(Box::new(a))
}

/// The client's final SCRAM message for `server_first`, with the salted password and the
/// AuthMessage (to check the server's signature).
fn scram_final(
    first_bare: &str,
    server_first: &str,
    client_nonce: &str,
    password: &[u8],
) -> (String, [u8; 32], String) {
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for part in server_first.split(',') {
        match part.split_at(2) {
            ("r=", v) => nonce = v,
            ("s=", v) => salt = BASE64.decode(v).unwrap(),
            ("i=", v) => iterations = v.parse().unwrap(),
            _ => {}
        }
    }
    assert!(nonce.starts_with(client_nonce));
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let final_msg = format!("{without_proof},p={}", BASE64.encode(proof));
    (final_msg, salted, auth_message)
}

/// The Authentication Data of an AUTH packet, as text.
fn auth_text(packet: &Packet) -> Option<String> {
    match packet {
        Packet::Auth(a) => {
            let data = a.properties.authentication_data.clone()?;
            Some(String::from_utf8(data.to_vec()).unwrap())
        }
        _ => None,
    }
}

/// Runs the client side of SCRAM as bob against the broker; returns the final packet.
fn scram_login(sim: &mut Sim, password: &[u8]) -> (mqtt5_broker::ConnId, Packet) {
    scram_login_as(sim, "bob", password)
}

/// Runs the client side of SCRAM as `user`; returns the final packet.
fn scram_login_as(sim: &mut Sim, user: &str, password: &[u8]) -> (mqtt5_broker::ConnId, Packet) {
    let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
    let first_bare = format!("n={user},r={client_nonce}");
    let mut c = connect_packet(V5, "scram-client", true);
    c.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    c.properties.authentication_data = Some(format!("n,,{first_bare}").into_bytes().into());
    let conn = sim.connect_with(c);
    let first = sim.expect(conn);
    let Some(server_first) = auth_text(&first) else {
        return (conn, first);
    };
    let (final_msg, salted, auth_message) =
        scram_final(&first_bare, &server_first, client_nonce, password);
    sim.send(conn, auth_packet(final_msg.into_bytes()));
    if sim.recv_pending(conn) == 0 {
        // A failed login is answered after the login delay.
        sim.advance(Duration::from_secs(5));
    }
    let answer = sim.expect(conn);
    if let Packet::ConnAck(a) = &answer
        && a.reason == ConnAckReason::Success
    {
        let server_key = hmac(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            BASE64.encode(hmac(&server_key, auth_message.as_bytes()))
        );
        assert_eq!(
            a.properties.authentication_data.as_deref(),
            Some(expected.as_bytes()),
            "the server proves it knows the password too"
        );
    }
    (conn, answer)
}

/// Re-authenticates `conn` (AUTH 0x19) as `user`; returns the broker's last answer.
fn scram_reauth(sim: &mut Sim, conn: mqtt5_broker::ConnId, user: &str, password: &[u8]) -> Packet {
    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let first_bare = format!("n={user},r={client_nonce}");
    let mut start = Auth {
        reason: AuthReason::ReAuthenticate,
        properties: Default::default(),
    };
    start.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    start.properties.authentication_data = Some(format!("n,,{first_bare}").into_bytes().into());
    sim.send(conn, Packet::Auth(Box::new(start)));
    let first = sim.expect(conn);
    let Some(server_first) = auth_text(&first) else {
        return first;
    };
    let (final_msg, _, _) = scram_final(&first_bare, &server_first, client_nonce, password);
    sim.send(conn, auth_packet(final_msg.into_bytes()));
    sim.expect(conn)
}

#[test]
fn re_authentication_as_the_same_user_succeeds_and_as_another_gets_0x87() {
    let mut sim = scram_sim();
    let (conn, answer) = scram_login(&mut sim, b"hunter2");
    assert!(matches!(answer, Packet::ConnAck(a) if a.reason == ConnAckReason::Success));
    match scram_reauth(&mut sim, conn, "bob", b"hunter2") {
        Packet::Auth(a) => assert_eq!(a.reason, AuthReason::Success),
        other => panic!("{other:?}"),
    }
    // carol's valid credentials on bob's connection: the connection is not carol's.
    match scram_reauth(&mut sim, conn, "carol", b"carols-pw") {
        Packet::Disconnect(d) => assert_eq!(d.reason.as_u8(), 0x87),
        other => panic!("{other:?}"),
    }
    assert!(sim.is_closed(conn));
    assert!(sim.notices.iter().any(|n| matches!(
        n,
        mqtt5_broker::Notice::ReauthenticatedAsOther { proved, .. } if proved == "carol"
    )));
}

#[test]
fn scram_identity_is_the_user_the_exchange_proved_not_the_connect_user_name() {
    let mut sim = scram_sim();
    let client_nonce = "abcdefghijklmnop";
    let first_bare = format!("n=bob,r={client_nonce}");
    let mut c = connect_packet(V5, "scram-client", true);
    c.username = Some("mallory".try_into().unwrap());
    c.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    c.properties.authentication_data = Some(format!("n,,{first_bare}").into_bytes().into());
    let conn = sim.connect_with(c);
    let server_first = auth_text(&sim.expect(conn)).unwrap();
    let (final_msg, _, _) = scram_final(&first_bare, &server_first, client_nonce, b"hunter2");
    sim.send(conn, auth_packet(final_msg.into_bytes()));
    assert!(matches!(sim.expect(conn), Packet::ConnAck(a) if a.reason == ConnAckReason::Success));
    assert!(sim.notices.iter().any(|n| matches!(
        n,
        mqtt5_broker::Notice::Accepted { identity: mqtt5_broker::Identity::User(u), .. } if &**u == "bob"
    )));
}

#[test]
fn scram_sha_256_exchange_authenticates_through_auth_packets_mqtt_4_12() {
    let mut sim = scram_sim();
    let (conn, answer) = scram_login(&mut sim, b"hunter2");
    match answer {
        Packet::ConnAck(a) => {
            assert_eq!(a.reason, ConnAckReason::Success);
            assert_eq!(
                a.properties.authentication_method.as_deref(),
                Some("SCRAM-SHA-256")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!sim.is_closed(conn));
}

#[test]
fn scram_with_a_wrong_password_gets_0x86() {
    let mut sim = scram_sim();
    let (conn, answer) = scram_login(&mut sim, b"wrong");
    match answer {
        Packet::ConnAck(a) => assert_eq!(a.reason, ConnAckReason::BadUserNameOrPassword),
        other => panic!("{other:?}"),
    }
    assert!(sim.is_closed(conn));
}

#[test]
fn unknown_authentication_method_gets_0x8c() {
    let mut sim = scram_sim();
    let mut c = connect_packet(V5, "x", true);
    c.properties.authentication_method = Some("KERBEROS".try_into().unwrap());
    let conn = sim.connect_with(c);
    match sim.expect(conn) {
        Packet::ConnAck(a) => assert_eq!(a.reason, ConnAckReason::BadAuthenticationMethod),
        other => panic!("{other:?}"),
    }
}

#[test]
fn packet_other_than_auth_during_the_exchange_closes_the_connection() {
    let mut sim = scram_sim();
    let mut c = connect_packet(V5, "x", true);
    c.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    c.properties.authentication_data = Some(b"n,,n=bob,r=abc".to_vec().into());
    let conn = sim.connect_with(c);
    assert!(matches!(sim.expect(conn), Packet::Auth(_)));
    sim.send(conn, Packet::PingReq(mqtt5_codec::PingReq));
    assert!(sim.is_closed(conn));
}

#[test]
fn re_authentication_with_auth_0x19_succeeds_and_a_failed_one_disconnects_mqtt_4_12_1() {
    let mut sim = scram_sim();
    let (conn, answer) = scram_login(&mut sim, b"hunter2");
    assert!(matches!(answer, Packet::ConnAck(a) if a.reason == ConnAckReason::Success));
    // Re-authenticate: AUTH 0x19 with a new client-first message.
    let mut start = Auth {
        reason: AuthReason::ReAuthenticate,
        properties: Default::default(),
    };
    start.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    start.properties.authentication_data = Some(b"n,,n=bob,r=again".to_vec().into());
    sim.send(conn, Packet::Auth(Box::new(start)));
    match sim.expect(conn) {
        Packet::Auth(a) => assert_eq!(a.reason, AuthReason::ContinueAuthentication),
        other => panic!("{other:?}"),
    }
    // A bad proof ends the connection with DISCONNECT 0x87.
    sim.send(conn, auth_packet(b"c=biws,r=again-wrong,p=AAAA".to_vec()));
    match sim.expect(conn) {
        Packet::Disconnect(d) => assert_eq!(d.reason.as_u8(), 0x87),
        other => panic!("{other:?}"),
    }
    assert!(sim.is_closed(conn));
}

#[test]
fn re_authentication_with_another_method_is_a_protocol_error() {
    let mut sim = scram_sim();
    let (conn, _) = scram_login(&mut sim, b"hunter2");
    let mut start = Auth {
        reason: AuthReason::ReAuthenticate,
        properties: Default::default(),
    };
    start.properties.authentication_method = Some("OTHER".try_into().unwrap());
    sim.send(conn, Packet::Auth(Box::new(start)));
    match sim.expect(conn) {
        Packet::Disconnect(d) => assert_eq!(d.reason.as_u8(), 0x82),
        other => panic!("{other:?}"),
    }
}

#[test]
fn auth_from_a_client_that_did_not_use_enhanced_authentication_is_a_protocol_error() {
    let mut sim = scram_sim();
    let conn = sim.connect(V5, "plain", true);
    let mut start = Auth {
        reason: AuthReason::ReAuthenticate,
        properties: Default::default(),
    };
    start.properties.authentication_method = Some("SCRAM-SHA-256".try_into().unwrap());
    sim.send(conn, Packet::Auth(Box::new(start)));
    match sim.expect(conn) {
        Packet::Disconnect(d) => assert_eq!(d.reason.as_u8(), 0x82),
        other => panic!("{other:?}"),
    }
}
