//! CONNACK (§3.2), PINGREQ (§3.12), DISCONNECT (§3.14), AUTH (§3.15), enhanced authentication
//! (§4.12), handling errors (§4.13) and MQTT over WebSocket (§6.0).

use std::num::{NonZeroU16, NonZeroU32};

use mqtt5_codec::{
    Auth, AuthProperties, AuthReason, Disconnect, DisconnectProperties, PingReq, PingResp, Will,
    WillProperties,
};

use super::*;

// ---- Helpers ----------------------------------------------------------------------------------

/// A CONNECT with a will on `will_topic` at `qos`, retained or not.
fn connect_will(client_id: &str, will_topic: &str, qos: QoS, retain: bool) -> Connect {
    let mut c = connect(client_id);
    c.will = Some(Will {
        qos,
        retain,
        properties: WillProperties::default(),
        topic: topic(will_topic),
        payload: Bytes::from_static(b"gone"),
    });
    c
}

/// A CONNECT with an Authentication Method no Server supports: refused with CONNACK 0x8C
/// (cheaper to provoke than a wrong password, which costs an argon2 verification).
fn connect_bad_method(client_id: &str) -> Connect {
    let mut c = connect(client_id);
    c.properties.authentication_method = Some(MqttString::try_from("X-UNKNOWN").expect("m"));
    c
}

/// A CONNECT with this Maximum Packet Size.
fn connect_max_size(client_id: &str, max: u32) -> Connect {
    let mut c = connect(client_id);
    c.properties.maximum_packet_size = NonZeroU32::new(max);
    c
}

/// A CONNECT with this keep-alive, in seconds.
fn connect_keep_alive(client_id: &str, secs: u16) -> Connect {
    let mut c = connect(client_id);
    c.keep_alive = secs;
    c
}

/// A DISCONNECT with `reason` and no properties.
fn disconnect(reason: DisconnectReason) -> Disconnect {
    Disconnect::new(reason)
}

/// An AUTH with `reason`, Authentication Method `method` and optional data.
fn auth(reason: AuthReason, method: Option<&str>, data: Option<&[u8]>) -> Auth {
    Auth {
        reason,
        properties: AuthProperties {
            authentication_method: method.map(|m| MqttString::try_from(m).expect("a method")),
            authentication_data: data.map(Bytes::copy_from_slice),
            ..AuthProperties::default()
        },
    }
}

/// A check on a CONNACK.
fn connack_that(
    s: Script,
    conn: usize,
    what: &str,
    check: impl Fn(&mqtt5_codec::ConnAck) -> Result<(), String> + Send + 'static,
) -> Script {
    s.expect_that(conn, what, move |p| match p {
        Packet::ConnAck(a) => check(a),
        other => Err(format!("not a CONNACK: {:?}", other.packet_type())),
    })
}

/// A successful CONNACK with this Session Present flag.
fn expect_session_present(s: Script, conn: usize, present: bool) -> Script {
    connack_that(
        s,
        conn,
        &format!("CONNACK 0x00, session present {present}"),
        move |a| {
            if a.reason != ConnAckReason::Success {
                return Err(format!("reason {:?}", a.reason));
            }
            if a.session_present != present {
                return Err(format!("session present {}", a.session_present));
            }
            Ok(())
        },
    )
}

/// The next packet is a DISCONNECT with `reason`, without a Session Expiry Interval and no
/// larger than `max` bytes; then the broker closes.
fn expect_server_disconnect(
    s: Script,
    conn: usize,
    reason: DisconnectReason,
    max: usize,
) -> Script {
    s.expect_that(
        conn,
        &format!("DISCONNECT {reason:?}, no Session Expiry, at most {max} bytes"),
        move |p| match p {
            Packet::Disconnect(d) => {
                if d.reason != reason {
                    return Err(format!("reason {:?}", d.reason));
                }
                if d.properties.session_expiry_interval.is_some() {
                    return Err("a Session Expiry Interval from the server".to_owned());
                }
                let len = p.encoded_len(ProtocolVersion::V5);
                if len > max {
                    return Err(format!("{len} bytes"));
                }
                Ok(())
            }
            other => Err(format!("not a DISCONNECT: {:?}", other.packet_type())),
        },
    )
    .expect_closed(conn)
}

// ---- SCRAM-SHA-256, the client side (RFC 5802, RFC 7677) --------------------------------------

const SCRAM: &str = "SCRAM-SHA-256";

/// Enables SCRAM-SHA-256; users come from `Case::users` (`mqtt5d user add`, run with this
/// configuration, derives their SCRAM credentials).
const SCRAM_CONFIG: &str = "[auth]\nscram_sha_256 = true\n";

const ALICE: &[(&str, &str)] = &[("alice", "secret")];

const ALICE_BOB: &[(&str, &str)] = &[("alice", "secret"), ("bob", "hunter2")];

type Key = [u8; 32];

fn hmac(key: &[u8], data: &[u8]) -> Key {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One client side of a SCRAM exchange: what it sent first, and (once the server-first
/// message is in) the expected server signature.
struct ScramClient {
    password: &'static str,
    first_bare: String,
    /// The client-final-message and the server-final-message it expects.
    answer: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl ScramClient {
    fn new(user: &str, password: &'static str, nonce: &str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            password,
            first_bare: format!("n={user},r={nonce}"),
            answer: Mutex::new(None),
        })
    }

    fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// Takes the server-first-message: checks it extends the client nonce, computes the
    /// client-final-message and the server signature.
    fn server_first(&self, data: &[u8]) -> Result<(), String> {
        use sha2::Digest as _;
        let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in text.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v.to_owned()),
                Some(("s=", v)) => {
                    use base64::Engine as _;
                    salt = base64::engine::general_purpose::STANDARD.decode(v).ok();
                }
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!("not a server-first-message: {text:?}"));
        };
        let client_nonce = self.first_bare.rsplit("r=").next().unwrap_or_default();
        if !nonce.starts_with(client_nonce) || nonce.len() <= client_nonce.len() {
            return Err(format!("the nonce {nonce:?} does not extend the client's"));
        }
        let mut salted: Key = [0; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            self.password.as_bytes(),
            &salt,
            iterations,
            &mut salted,
        );
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: Key = sha2::Sha256::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        let client_final = format!("{without_proof},p={}", b64(&proof)).into_bytes();
        let server_final = format!("v={}", b64(&server_signature)).into_bytes();
        *self.answer.lock().expect("lock") = Some((client_final, server_final));
        Ok(())
    }

    fn client_final(&self) -> Result<Vec<u8>, String> {
        self.answer
            .lock()
            .expect("lock")
            .as_ref()
            .map(|(c, _)| c.clone())
            .ok_or_else(|| "no server-first-message yet".to_owned())
    }

    fn expected_server_final(&self) -> Option<Vec<u8>> {
        self.answer
            .lock()
            .expect("lock")
            .as_ref()
            .map(|(_, s)| s.clone())
    }
}

/// The Authentication Method of an AUTH or CONNACK, as a string.
fn method_is(method: Option<&MqttString>, want: &str) -> Result<(), String> {
    match method {
        Some(m) if m.as_str() == want => Ok(()),
        other => Err(format!("Authentication Method {other:?}, want {want:?}")),
    }
}

/// A CONNECT starting SCRAM-SHA-256 with `client`'s first message.
fn connect_scram(client_id: &str, client: &ScramClient) -> Connect {
    let mut c = connect(client_id);
    c.properties.authentication_method = Some(MqttString::try_from(SCRAM).expect("a method"));
    c.properties.authentication_data = Some(Bytes::from(client.client_first()));
    c
}

/// The server's AUTH 0x18 with Authentication Method SCRAM-SHA-256 carrying the
/// server-first-message (at most `max` bytes), which `client` takes.
fn expect_server_first(
    s: Script,
    conn: usize,
    client: &std::sync::Arc<ScramClient>,
    max: usize,
) -> Script {
    let client = client.clone();
    s.expect_that(
        conn,
        "AUTH 0x18 SCRAM-SHA-256 server-first-message",
        move |p| {
            let Packet::Auth(a) = p else {
                return Err(format!("not an AUTH: {:?}", p.packet_type()));
            };
            if a.reason != AuthReason::ContinueAuthentication {
                return Err(format!("reason {:?}", a.reason));
            }
            method_is(a.properties.authentication_method.as_ref(), SCRAM)?;
            let len = p.encoded_len(ProtocolVersion::V5);
            if len > max {
                return Err(format!("{len} bytes, over {max}"));
            }
            client.server_first(
                a.properties
                    .authentication_data
                    .as_deref()
                    .unwrap_or_default(),
            )
        },
    )
}

/// Sends the client's AUTH 0x18 with the client-final-message.
fn send_client_final(s: Script, conn: usize, client: &std::sync::Arc<ScramClient>) -> Script {
    let client = client.clone();
    s.send_later(conn, "AUTH 0x18 client-final-message", move || {
        let mut buf = BytesMut::new();
        Packet::from(auth(
            AuthReason::ContinueAuthentication,
            Some(SCRAM),
            Some(&client.client_final()?),
        ))
        .encode(ProtocolVersion::V5, &mut buf);
        Ok(buf.to_vec())
    })
}

/// Checks the Authentication Data against the server signature `client` expects.
fn server_final_is(client: &ScramClient, data: Option<&Bytes>) -> Result<(), String> {
    let want = client.expected_server_final();
    if want.is_some() && data.map(|d| d.to_vec()) == want {
        Ok(())
    } else {
        Err(format!(
            "Authentication Data {:?}, want {:?}",
            data.map(|d| String::from_utf8_lossy(d).into_owned()),
            want.map(|w| String::from_utf8_lossy(&w).into_owned())
        ))
    }
}

/// A whole SCRAM-SHA-256 CONNECT as `alice` on `conn`, ending with the CONNACK 0x00.
fn scram_connect(s: Script, conn: usize, client_id: &str, nonce: &str) -> Script {
    let client = ScramClient::new("alice", "secret", nonce);
    let s = s.open(conn).send(conn, connect_scram(client_id, &client));
    let s = expect_server_first(s, conn, &client, usize::MAX);
    let s = send_client_final(s, conn, &client);
    connack_that(
        s,
        conn,
        "CONNACK 0x00 with the server signature",
        move |a| {
            if a.reason != ConnAckReason::Success {
                return Err(format!("reason {:?}", a.reason));
            }
            method_is(a.properties.authentication_method.as_ref(), SCRAM)?;
            server_final_is(&client, a.properties.authentication_data.as_ref())
        },
    )
}

const PINGREQ: &str = "c0 00";
const PINGRESP: &str = "d0 00";

/// A listener for MQTT over WebSocket.
const WS: &str = "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\n";

// ---- Cases ------------------------------------------------------------------------------------

pub(super) const CASES: &[Case] = &[
    // §3.2.0: the CONNACK 0x00 comes before any other packet (here a queued message waiting
    // in the session), and reserved acknowledge flags are 0 (the decoder rejects any other).
    Case::new(
        "connack_comes_before_queued_messages",
        &["MQTT-3.2.0-1", "MQTT-3.2.2-1", "MQTT-3.2.2-3"],
        |s| {
            let s = s
                .open(0)
                .send(0, connect_session("c320-1", true, 300))
                .expect_connack(0, ConnAckReason::Success)
                .subscribe(0, 1, "t/3.2.0-1", QoS::AtLeastOnce)
                .send(0, disconnect(DisconnectReason::NormalDisconnection))
                .expect_closed(0)
                .connect(1, "c320-1-pub")
                .send(1, publish("t/3.2.0-1", b"queued", QoS::AtLeastOnce, 7))
                .expect_reason(1, PacketType::PubAck, 0)
                .open(2)
                .send(2, connect_session("c320-1", false, 300));
            expect_session_present(s, 2, true).expect_that(2, "the queued PUBLISH", |p| match p {
                Packet::Publish(p) if p.payload() == b"queued" => Ok(()),
                other => Err(format!("{:?}", other.packet_type())),
            })
        },
    ),
    // §3.2.0: the Server MUST NOT send more than one CONNACK on a Network Connection: a
    // second CONNECT gets DISCONNECT 0x82, never another CONNACK.
    Case::new(
        "connack_never_sent_twice",
        &["MQTT-3.2.0-2", "MQTT-4.13.1-1", "MQTT-4.13.2-1"],
        |s| {
            s.connect(0, "c320-2")
                .send(0, connect("c320-2"))
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // §3.2.2.1.1: Clean Start 1 is answered with Session Present 0, even though the Server
    // held a session for the Client Identifier.
    Case::new(
        "connack_clean_start_has_no_session_present",
        &["MQTT-3.2.2-2"],
        |s| {
            let s = s
                .open(0)
                .send(0, connect_session("c322-2", true, 300))
                .expect_connack(0, ConnAckReason::Success)
                .subscribe(0, 1, "t/3.2.2-2", QoS::AtLeastOnce)
                .send(0, disconnect(DisconnectReason::NormalDisconnection))
                .expect_closed(0)
                .open(1)
                .send(1, connect_session("c322-2", true, 300));
            expect_session_present(s, 1, false)
        },
    ),
    // §3.2.2.1.1: Clean Start 0 without session state: Session Present 0, reason 0x00.
    Case::new(
        "connack_resume_without_session_has_no_session_present",
        &["MQTT-3.2.2-3"],
        |s| {
            let s = s.open(0).send(0, connect_session("c322-3", false, 300));
            expect_session_present(s, 0, false)
        },
    ),
    // §3.2.2.1.1: a CONNACK with a non-zero reason has Session Present 0 (even though a
    // session exists for the Client Identifier), and one of 0x80 or above closes the
    // connection; the reason is one of the CONNACK reason codes.
    Case::new(
        "connack_failure_has_no_session_present_and_closes",
        &[
            "MQTT-3.2.2-6",
            "MQTT-3.2.2-7",
            "MQTT-3.2.2-8",
            "MQTT-4.13.2-1",
        ],
        |s| {
            let mut resume = connect_bad_method("c322-6");
            resume.clean_start = false;
            let s = s
                .open(0)
                .send(0, connect_session("c322-6", true, 300))
                .expect_connack(0, ConnAckReason::Success)
                .send(0, disconnect(DisconnectReason::NormalDisconnection))
                .expect_closed(0)
                .open(1)
                .send(1, resume);
            connack_that(s, 1, "CONNACK 0x8C, session present 0", |a| {
                if a.reason != ConnAckReason::BadAuthenticationMethod || a.session_present {
                    return Err(format!("{a:?}"));
                }
                Ok(())
            })
            .expect_closed(1)
        },
    ),
    // §3.2.2.3.4: a Server that does not support QoS 1 or 2 sends Maximum QoS in CONNACK.
    Case::new(
        "connack_maximum_qos_1_is_announced",
        &["MQTT-3.2.2-9"],
        |s| {
            let s = s.open(0).send(0, connect("c322-9"));
            connack_that(s, 0, "CONNACK with Maximum QoS 1", |a| {
                match a.properties.maximum_qos {
                    Some(QoS::AtLeastOnce) => Ok(()),
                    other => Err(format!("Maximum QoS {other:?}")),
                }
            })
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // §3.2.2.3.4: the same with Maximum QoS 0.
    Case::new(
        "connack_maximum_qos_0_is_announced",
        &["MQTT-3.2.2-9"],
        |s| {
            let s = s.open(0).send(0, connect("c322-9b"));
            connack_that(s, 0, "CONNACK with Maximum QoS 0", |a| {
                match a.properties.maximum_qos {
                    Some(QoS::AtMostOnce) => Ok(()),
                    other => Err(format!("Maximum QoS {other:?}")),
                }
            })
        },
    )
    .config("[broker]\nmaximum_qos = 0\n"),
    // §3.2.2.3.4: a Server without QoS 1 or 2 still accepts SUBSCRIBE asking for QoS 0, 1
    // or 2 (granting at most what it supports).
    Case::new(
        "connack_maximum_qos_0_still_accepts_qos_2_subscribe",
        &["MQTT-3.2.2-10"],
        |s| {
            s.connect(0, "c322-10")
                .send(0, subscribe(1, "t/a", QoS::AtMostOnce))
                .expect_reason(0, PacketType::SubAck, 0)
                .send(0, subscribe(2, "t/b", QoS::AtLeastOnce))
                .expect_reason(0, PacketType::SubAck, 0)
                .send(0, subscribe(3, "t/c", QoS::ExactlyOnce))
                .expect_reason(0, PacketType::SubAck, 0)
        },
    )
    .config("[broker]\nmaximum_qos = 0\n"),
    // §3.2.2.3.4: a Client MUST NOT publish above the Maximum QoS ([MQTT-3.2.2-11] binds the
    // Client); the Server answers a QoS 2 PUBLISH past Maximum QoS 1 with DISCONNECT 0x9B (QoS
    // not supported) and closes the connection ([MQTT-4.13.2-1]).
    Case::new(
        "connack_publish_above_maximum_qos_is_refused",
        &[
            "MQTT-4.13.2-1",
            "MQTT-3.14.2-1",
            "MQTT-3.14.4-1",
            "MQTT-3.14.4-2",
        ],
        |s| {
            s.connect(0, "c322-11")
                .send(0, publish("t/q", b"x", QoS::ExactlyOnce, 1))
                .expect_disconnect(0, DisconnectReason::QoSNotSupported)
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // §3.2.2.3.4: a CONNECT whose Will QoS exceeds the Server's capabilities is refused
    // (CONNACK 0x9B) and the connection closed.
    Case::new(
        "connack_will_qos_above_maximum_is_refused",
        &["MQTT-3.2.2-12", "MQTT-3.2.2-7"],
        |s| {
            s.open(0)
                .send(0, connect_will("c322-12", "w/12", QoS::ExactlyOnce, false))
                .expect_connack(0, ConnAckReason::QoSNotSupported)
                .expect_closed(0)
        },
    )
    .config("[broker]\nmaximum_qos = 1\n"),
    // §3.2.2.3.5: a will with Will Retain 1 on a Server without retained messages is refused
    // (CONNACK 0x9A) and the connection closed.
    Case::new(
        "connack_will_retain_without_retain_support_is_refused",
        &["MQTT-3.2.2-13"],
        |s| {
            s.open(0)
                .send(0, connect_will("c322-13", "w/13", QoS::AtMostOnce, true))
                .expect_connack(0, ConnAckReason::RetainNotSupported)
                .expect_closed(0)
        },
    )
    .config("[broker]\nretain_available = false\n"),
    // §3.2.2.3.5: Retain Available is 0 in CONNACK, and a retained PUBLISH ([MQTT-3.2.2-14]
    // binds the Client not to send one) is then refused with DISCONNECT 0x9A and the
    // connection closed ([MQTT-4.13.2-1]).
    Case::new(
        "connack_retained_publish_without_retain_support_is_refused",
        &["MQTT-4.13.2-1"],
        |s| {
            let s = s.open(0).send(0, connect("c322-14"));
            connack_that(s, 0, "CONNACK with Retain Available 0", |a| {
                match a.properties.retain_available {
                    Some(false) => Ok(()),
                    other => Err(format!("Retain Available {other:?}")),
                }
            })
            .send(0, {
                let mut p = publish("t/r", b"x", QoS::AtMostOnce, 0);
                p.retain = true;
                p
            })
            .expect_disconnect(0, DisconnectReason::RetainNotSupported)
        },
    )
    .config("[broker]\nretain_available = false\n"),
    // §3.2.2.3.6: the Server announces its Maximum Packet Size, and a Client packet over it
    // ([MQTT-3.2.2-15] binds the Client) is answered with DISCONNECT 0x95 (Packet too large)
    // and the connection closed ([MQTT-4.13.2-1]).
    Case::new(
        "connack_packet_over_maximum_packet_size_is_refused",
        &["MQTT-4.13.2-1"],
        |s| {
            let s = s.open(0).send(0, connect("c322-15"));
            connack_that(s, 0, "CONNACK with Maximum Packet Size 64", |a| {
                match a.properties.maximum_packet_size.map(NonZeroU32::get) {
                    Some(64) => Ok(()),
                    other => Err(format!("Maximum Packet Size {other:?}")),
                }
            })
            .send(0, publish("t/big", &[b'x'; 100], QoS::AtMostOnce, 0))
            .expect_disconnect(0, DisconnectReason::PacketTooLarge)
        },
    )
    .config("[broker]\nmax_packet_size = 64\n"),
    // §3.2.2.3.7: an empty Client Identifier gets an Assigned Client Identifier, one no other
    // session uses.
    Case::new(
        "connack_assigns_unique_client_identifiers",
        &["MQTT-3.2.2-16"],
        |s| {
            let check = |a: &mqtt5_codec::ConnAck| match &a.properties.assigned_client_identifier {
                Some(id) if !id.as_str().is_empty() && a.reason == ConnAckReason::Success => Ok(()),
                other => Err(format!("Assigned Client Identifier {other:?}")),
            };
            let s = s.open(0).send(0, connect(""));
            let s = connack_that(s, 0, "CONNACK with an Assigned Client Identifier", check);
            let s = s.open(1).send(1, connect(""));
            let s = connack_that(s, 1, "CONNACK with an Assigned Client Identifier", check);
            // Both stay connected: the second did not take over the first's session.
            s.send_hex(0, PINGREQ)
                .expect_hex(0, PINGRESP)
                .send_hex(1, PINGREQ)
                .expect_hex(1, PINGRESP)
        },
    ),
    // §3.2.2.3.8: a Topic Alias above the Topic Alias Maximum the Server sent
    // ([MQTT-3.2.2-17] binds the Client) is answered with DISCONNECT 0x94 and the connection
    // closed ([MQTT-4.13.2-1]).
    Case::new(
        "connack_topic_alias_above_maximum_is_refused",
        &["MQTT-4.13.2-1"],
        |s| {
            let s = s.open(0).send(0, connect("c322-17"));
            connack_that(s, 0, "CONNACK with Topic Alias Maximum 2", |a| {
                match a.properties.topic_alias_maximum {
                    Some(2) => Ok(()),
                    other => Err(format!("Topic Alias Maximum {other:?}")),
                }
            })
            .send(0, {
                let mut p = publish("t/alias", b"x", QoS::AtMostOnce, 0);
                p.properties.topic_alias = NonZeroU16::new(3);
                p
            })
            .expect_disconnect(0, DisconnectReason::TopicAliasInvalid)
        },
    )
    .config("[broker]\ntopic_alias_maximum = 2\n"),
    // §3.2.2.3.8: with no Topic Alias Maximum (or 0) the Client may send no Topic Alias
    // ([MQTT-3.2.2-18] binds the Client); one is answered with DISCONNECT 0x94 and the
    // connection closed ([MQTT-4.13.2-1]).
    Case::new(
        "connack_topic_alias_without_maximum_is_refused",
        &["MQTT-4.13.2-1"],
        |s| {
            let s = s.open(0).send(0, connect("c322-18"));
            connack_that(s, 0, "CONNACK without a Topic Alias Maximum", |a| {
                match a.properties.topic_alias_maximum {
                    None | Some(0) => Ok(()),
                    other => Err(format!("Topic Alias Maximum {other:?}")),
                }
            })
            .send(0, {
                let mut p = publish("t/alias", b"x", QoS::AtMostOnce, 0);
                p.properties.topic_alias = NonZeroU16::new(1);
                p
            })
            .expect_disconnect(0, DisconnectReason::TopicAliasInvalid)
        },
    )
    .config("[broker]\ntopic_alias_maximum = 0\n"),
    // §3.2.2.3.9, §3.2.2.3.10: no Reason String or User Property that would take a refusing
    // CONNACK over the Client's Maximum Packet Size (here 8 bytes: room for the bare CONNACK).
    Case::new(
        "connack_reason_string_respects_client_maximum_packet_size",
        &["MQTT-3.2.2-19", "MQTT-3.2.2-20"],
        |s| {
            let mut c = connect_bad_method("c322-19");
            c.properties.maximum_packet_size = NonZeroU32::new(8);
            let s = s.open(0).send(0, c);
            s.expect_that(0, "CONNACK 0x8C of at most 8 bytes", |p| match p {
                Packet::ConnAck(a) if a.reason == ConnAckReason::BadAuthenticationMethod => {
                    let len = p.encoded_len(ProtocolVersion::V5);
                    if len > 8 {
                        Err(format!("{len} bytes"))
                    } else {
                        Ok(())
                    }
                }
                other => Err(format!("{other:?}")),
            })
            .expect_closed(0)
        },
    ),
    // §3.2.2.3.9: the same for a successful CONNACK, whose server properties must then be
    // dropped to fit (18 bytes: too little for all of them).
    Case::new(
        "connack_success_respects_client_maximum_packet_size",
        &["MQTT-3.2.2-19", "MQTT-3.2.2-20"],
        |s| {
            let s = s.open(0).send(0, connect_max_size("c322-19b", 18));
            s.expect_that(0, "CONNACK 0x00 of at most 18 bytes", |p| match p {
                Packet::ConnAck(a) if a.reason == ConnAckReason::Success => {
                    let len = p.encoded_len(ProtocolVersion::V5);
                    if len > 18 {
                        Err(format!("{len} bytes"))
                    } else {
                        Ok(())
                    }
                }
                other => Err(format!("{other:?}")),
            })
        },
    ),
    // §3.2.2.3.14: with a Server Keep Alive in CONNACK the Client must use it instead of its
    // own ([MQTT-3.2.2-21] binds the Client); the Server enforces the value it sent (3 s,
    // against the Client's 60 s) under [MQTT-3.1.2-22], with DISCONNECT 0x8D, which carries
    // no Session Expiry Interval. 1.5 s of quiet first leaves 3 s of room before the timeout.
    Case::new(
        "connack_server_keep_alive_is_enforced",
        &["MQTT-3.1.2-22", "MQTT-3.14.2-1", "MQTT-3.14.2-2"],
        |s| {
            let s = s.open(0).send(0, connect_keep_alive("c322-21", 60));
            connack_that(s, 0, "CONNACK with Server Keep Alive 3", |a| {
                match a.properties.server_keep_alive {
                    Some(3) => Ok(()),
                    other => Err(format!("Server Keep Alive {other:?}")),
                }
            })
            .expect_quiet(0, 1500)
            .expect_disconnect(0, DisconnectReason::KeepAliveTimeout)
        },
    )
    .config("[broker]\nmax_keep_alive_secs = 3\n"),
    // §3.2.2.3.14: without a Server Keep Alive the Server uses the Client's Keep Alive (3 s):
    // a PINGREQ after each 1.5 s of quiet keeps the connection past 4.5 s, silence for 1.5
    // times it ends it. Each gap leaves 3 s of room for a slow test thread.
    Case::new(
        "connack_client_keep_alive_is_used",
        &["MQTT-3.2.2-22"],
        |s| {
            let s = s.open(0).send(0, connect_keep_alive("c322-22", 3));
            connack_that(s, 0, "CONNACK without Server Keep Alive", |a| {
                match a.properties.server_keep_alive {
                    None => Ok(()),
                    other => Err(format!("Server Keep Alive {other:?}")),
                }
            })
            .expect_quiet(0, 1500)
            .send_hex(0, PINGREQ)
            .expect_hex(0, PINGRESP)
            .expect_quiet(0, 1500)
            .send_hex(0, PINGREQ)
            .expect_hex(0, PINGRESP)
            .expect_quiet(0, 1500)
            .send_hex(0, PINGREQ)
            .expect_hex(0, PINGRESP)
            .expect_quiet(0, 1500)
            .expect_disconnect(0, DisconnectReason::KeepAliveTimeout)
        },
    ),
    // §3.12.4: the Server MUST send a PINGRESP in response to a PINGREQ.
    Case::new("ping_gets_pingresp", &["MQTT-3.12.4-1"], |s| {
        s.connect(0, "c3124-1")
            .send_hex(0, PINGREQ)
            .expect_hex(0, PINGRESP)
            .send(0, PingReq)
            .expect(0, PingResp)
    }),
    // §3.14.0: no DISCONNECT before a CONNACK under 0x80: a first packet other than CONNECT
    // closes the connection with nothing sent.
    Case::new("disconnect_never_before_connack", &["MQTT-3.14.0-1"], |s| {
        s.open(0).send_hex(0, PINGREQ).expect_closed(0)
    }),
    // §3.14.0: the same when the CONNECT is refused: CONNACK 0x80+ and close, no DISCONNECT.
    Case::new(
        "disconnect_never_after_refused_connack",
        &["MQTT-3.14.0-1"],
        |s| {
            s.open(0)
                .send(0, connect_bad_method("c3140-1"))
                .expect_connack(0, ConnAckReason::BadAuthenticationMethod)
                .expect_closed(0)
        },
    ),
    // §3.14.1: DISCONNECT reserved fixed-header bits set: Malformed Packet, DISCONNECT 0x81.
    Case::new(
        "disconnect_reserved_bits_are_malformed",
        &["MQTT-3.14.1-1", "MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "c3141-1")
                .send_hex(0, "e1 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §3.14.2.1: a DISCONNECT with a reason code that is not a DISCONNECT reason code (0x01)
    // is malformed.
    Case::new(
        "disconnect_unknown_reason_code_is_malformed",
        &["MQTT-3.14.2-1"],
        |s| {
            s.connect(0, "c3142-1")
                .send_hex(0, "e0 01 01")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §3.14.2.2.2: the Server never sends a Session Expiry Interval on DISCONNECT; and a
    // Client that had 0 at CONNECT may not set one at DISCONNECT (0x82).
    Case::new(
        "disconnect_session_expiry_after_zero_is_a_protocol_error",
        &["MQTT-3.14.2-2"],
        |s| {
            let s = s.connect(0, "c3142-2").send(0, {
                let mut d = disconnect(DisconnectReason::NormalDisconnection);
                d.properties = DisconnectProperties {
                    session_expiry_interval: Some(60),
                    ..DisconnectProperties::default()
                };
                d
            });
            expect_server_disconnect(s, 0, DisconnectReason::ProtocolError, 1 << 20)
        },
    ),
    // §3.14.2.2.3, §3.14.2.2.4: the Server's DISCONNECT leaves out the Reason String and
    // User Properties that would take it over the Client's Maximum Packet Size (here 5, the
    // least that admits a CONNACK without properties).
    Case::new(
        "disconnect_reason_string_respects_client_maximum_packet_size",
        &["MQTT-3.14.2-3", "MQTT-3.14.2-4"],
        |s| {
            let s = s
                .connect_with(0, connect_max_size("c3142-3", 5))
                .send_hex(0, "e1 00");
            expect_server_disconnect(s, 0, DisconnectReason::MalformedPacket, 5)
        },
    ),
    // §3.14.2.2.3: with room for it, the same DISCONNECT may carry a Reason String (the
    // reference for the case above: the limit is what drops it).
    Case::new(
        "disconnect_reason_string_sent_when_it_fits",
        &["MQTT-3.14.2-3"],
        |s| {
            s.connect_with(0, connect_max_size("c3142-3b", 1024))
                .send_hex(0, "e1 00")
                .expect_that(0, "DISCONNECT 0x81 with a Reason String", |p| match p {
                    Packet::Disconnect(d)
                        if d.reason == DisconnectReason::MalformedPacket
                            && d.properties.reason_string.is_some() =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                })
                .expect_closed(0)
        },
    ),
    // §3.14.4: on DISCONNECT 0x00 the Server discards the will without publishing it.
    Case::new(
        "disconnect_normal_discards_the_will",
        &["MQTT-3.14.4-3"],
        |s| {
            s.connect(1, "c3144-3-sub")
                .subscribe(1, 1, "w/3.14.4-3", QoS::AtMostOnce)
                .connect_with(
                    0,
                    connect_will("c3144-3", "w/3.14.4-3", QoS::AtMostOnce, false),
                )
                .send(0, disconnect(DisconnectReason::NormalDisconnection))
                .expect_closed(0)
                .expect_quiet(1, 500)
        },
    ),
    // §3.14.4: the reference: DISCONNECT 0x04 (with will) publishes it.
    Case::new(
        "disconnect_with_will_publishes_the_will",
        &["MQTT-3.14.4-3"],
        |s| {
            s.connect(1, "c3144-3b-sub")
                .subscribe(1, 1, "w/3.14.4-3b", QoS::AtMostOnce)
                .connect_with(
                    0,
                    connect_will("c3144-3b", "w/3.14.4-3b", QoS::AtMostOnce, false),
                )
                .send(0, disconnect(DisconnectReason::DisconnectWithWillMessage))
                .expect_closed(0)
                .expect_that(1, "the will", |p| match p {
                    Packet::Publish(p) if p.payload() == b"gone" => Ok(()),
                    other => Err(format!("{other:?}")),
                })
        },
    ),
    // §3.15.1: AUTH fixed-header bits 3-0 are reserved: any other value is malformed and the
    // connection is closed.
    Case::new(
        "auth_reserved_bits_are_malformed",
        &["MQTT-3.15.1-1"],
        |s| {
            s.connect(0, "c3151-1")
                .send_hex(0, "f1 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §4.12: a CONNECT with an Authentication Method the Server does not support: CONNACK
    // 0x8C (Bad authentication method) and close.
    Case::new(
        "auth_unknown_method_is_refused",
        &["MQTT-4.12.0-1", "MQTT-4.13.2-1"],
        |s| {
            let mut c = connect("c4120-1");
            c.properties.authentication_method =
                Some(MqttString::try_from("X-UNKNOWN").expect("m"));
            s.open(0)
                .send(0, c)
                .expect_connack(0, ConnAckReason::BadAuthenticationMethod)
                .expect_closed(0)
        },
    ),
    // §4.12: the same with SCRAM-SHA-256 enabled, for a method it does not serve.
    Case::new(
        "auth_other_method_than_scram_is_refused",
        &["MQTT-4.12.0-1"],
        |s| {
            let mut c = connect("c4120-1b");
            c.properties.authentication_method =
                Some(MqttString::try_from("SCRAM-SHA-1").expect("m"));
            c.properties.authentication_data = Some(Bytes::from_static(b"n,,n=alice,r=abc"));
            s.open(0)
                .send(0, c)
                .expect_connack(0, ConnAckReason::BadAuthenticationMethod)
                .expect_closed(0)
        },
    )
    .config(SCRAM_CONFIG),
    // §4.12: without an Authentication Method in CONNECT the Server sends no AUTH and no
    // Authentication Method in CONNACK.
    Case::new(
        "auth_no_method_means_no_auth_in_connack",
        &["MQTT-4.12.0-6"],
        |s| {
            let s = s.open(0).send(0, connect("c4120-6"));
            connack_that(
                s,
                0,
                "CONNACK 0x00 without Authentication Method or Data",
                |a| {
                    if a.reason == ConnAckReason::Success
                        && a.properties.authentication_method.is_none()
                        && a.properties.authentication_data.is_none()
                    {
                        Ok(())
                    } else {
                        Err(format!("{a:?}"))
                    }
                },
            )
            .send_hex(0, PINGREQ)
            .expect_hex(0, PINGRESP)
        },
    ),
    // §4.12: a Client that sent no Authentication Method in CONNECT MUST NOT send AUTH
    // ([MQTT-4.12.0-7] binds the Client): the Server answers one with DISCONNECT 0x82
    // (Protocol Error) and closes the connection ([MQTT-4.13.1-1]).
    Case::new(
        "auth_without_method_in_connect_is_a_protocol_error",
        &["MQTT-4.13.1-1"],
        |s| {
            s.connect(0, "c4120-7")
                .send(
                    0,
                    auth(
                        AuthReason::ReAuthenticate,
                        Some("SCRAM-SHA-256"),
                        Some(b"n,,n=a,r=x"),
                    ),
                )
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    ),
    // §4.12: a whole SCRAM-SHA-256 exchange: the Server's AUTH carries 0x18 (Continue
    // authentication) and the CONNECT's Authentication Method, as does the CONNACK, whose
    // data is the server signature the client checks.
    Case::new(
        "auth_scram_exchange_succeeds",
        &["MQTT-4.12.0-2", "MQTT-4.12.0-5", "MQTT-3.15.2-1"],
        |s| {
            scram_connect(s, 0, "c4120-2", "rOprNGfwEbeRWgbNEkqO")
                .send_hex(0, PINGREQ)
                .expect_hex(0, PINGRESP)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12: the Server may reject the authentication at any point: a wrong proof (the
    // client knows another password) gets CONNACK 0x86 and the connection is closed.
    Case::new(
        "auth_scram_wrong_password_is_refused",
        &["MQTT-4.12.0-4", "MQTT-4.13.2-1"],
        |s| {
            let client = ScramClient::new("alice", "not-the-password", "fyko+d2lbbFgONRv9qkxdawL");
            let s = s.open(0).send(0, connect_scram("c4120-4", &client));
            let s = expect_server_first(s, 0, &client, usize::MAX);
            send_client_final(s, 0, &client)
                .expect_connack(0, ConnAckReason::BadUserNameOrPassword)
                .expect_closed(0)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12: an unknown user is rejected as well, only once the exchange is complete.
    Case::new(
        "auth_scram_unknown_user_is_refused",
        &["MQTT-4.12.0-4"],
        |s| {
            let client = ScramClient::new("mallory", "secret", "3rfcNHYJY1ZVvWVs7j");
            let s = s.open(0).send(0, connect_scram("c4120-4b", &client));
            let s = expect_server_first(s, 0, &client, usize::MAX);
            send_client_final(s, 0, &client)
                .expect_connack(0, ConnAckReason::BadUserNameOrPassword)
                .expect_closed(0)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12: the Client answers the Server's AUTH with AUTH 0x18 ([MQTT-4.12.0-3] binds the
    // Client); one with another reason (0x00) is a Protocol Error: the Server rejects the
    // authentication and, before CONNACK, just closes ([MQTT-4.12.0-4], [MQTT-4.13.1-1]).
    Case::new(
        "auth_scram_answer_without_continue_closes",
        &["MQTT-4.12.0-4", "MQTT-4.13.1-1"],
        |s| {
            let client = ScramClient::new("alice", "secret", "a1b2c3d4e5f6");
            let s = s.open(0).send(0, connect_scram("c4120-3", &client));
            expect_server_first(s, 0, &client, usize::MAX)
                .send(0, auth(AuthReason::Success, Some(SCRAM), Some(b"c=biws")))
                .expect_closed(0)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §3.15.2.2.2, §3.15.2.2.3, §4.12: the Server's AUTH and CONNACK stay within the Client's
    // Maximum Packet Size (here 128 bytes) and still carry the Authentication Method.
    Case::new(
        "auth_scram_packets_respect_client_maximum_packet_size",
        &["MQTT-3.15.2-2", "MQTT-3.15.2-3", "MQTT-4.12.0-5"],
        |s| {
            let client = ScramClient::new("alice", "secret", "q8w7e6r5t4y3");
            let mut c = connect_scram("c3152-2", &client);
            c.properties.maximum_packet_size = NonZeroU32::new(128);
            let s = s.open(0).send(0, c);
            let s = expect_server_first(s, 0, &client, 128);
            let s = send_client_final(s, 0, &client);
            s.expect_that(0, "CONNACK 0x00 of at most 128 bytes", move |p| match p {
                Packet::ConnAck(a) if a.reason == ConnAckReason::Success => {
                    method_is(a.properties.authentication_method.as_ref(), SCRAM)?;
                    let len = p.encoded_len(ProtocolVersion::V5);
                    if len > 128 {
                        Err(format!("{len} bytes"))
                    } else {
                        Ok(())
                    }
                }
                other => Err(format!("{other:?}")),
            })
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12.1: re-authentication with AUTH 0x19 and the connection's Authentication Method
    // runs the exchange again and ends with AUTH 0x00 carrying the server signature.
    Case::new(
        "auth_scram_reauthentication_succeeds",
        &["MQTT-4.12.0-2", "MQTT-4.12.0-5", "MQTT-3.15.2-1"],
        |s| {
            let s = scram_connect(s, 0, "c4121-1", "zz11yy22xx33");
            let again = ScramClient::new("alice", "secret", "second-nonce-4121");
            let s = s.send(
                0,
                auth(
                    AuthReason::ReAuthenticate,
                    Some(SCRAM),
                    Some(&again.client_first()),
                ),
            );
            let s = expect_server_first(s, 0, &again, usize::MAX);
            let s = send_client_final(s, 0, &again);
            s.expect_that(0, "AUTH 0x00 with the server signature", move |p| match p {
                Packet::Auth(a) if a.reason == AuthReason::Success => {
                    method_is(a.properties.authentication_method.as_ref(), SCRAM)?;
                    server_final_is(&again, a.properties.authentication_data.as_ref())
                }
                other => Err(format!("{other:?}")),
            })
            .send_hex(0, PINGREQ)
            .expect_hex(0, PINGRESP)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12.1: re-authentication with another Authentication Method than the connection's
    // ([MQTT-4.12.1-1] binds the Client to the same one) is a Protocol Error: DISCONNECT 0x82,
    // then close ([MQTT-4.13.1-1]).
    Case::new(
        "auth_reauthentication_with_another_method_is_a_protocol_error",
        &["MQTT-4.13.1-1"],
        |s| {
            scram_connect(s, 0, "c4121-1b", "mm99nn88")
                .send(
                    0,
                    auth(AuthReason::ReAuthenticate, Some("PLAIN"), Some(b"x")),
                )
                .expect_disconnect(0, DisconnectReason::ProtocolError)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12.1: a failed re-authentication ends the connection: DISCONNECT 0x87 (Not
    // authorized), then close.
    Case::new(
        "auth_scram_failed_reauthentication_disconnects",
        &["MQTT-4.12.1-2", "MQTT-4.13.2-1"],
        |s| {
            let s = scram_connect(s, 0, "c4121-2", "pp77qq66");
            let wrong = ScramClient::new("alice", "wrong", "third-nonce-4121");
            let s = s.send(
                0,
                auth(
                    AuthReason::ReAuthenticate,
                    Some(SCRAM),
                    Some(&wrong.client_first()),
                ),
            );
            let s = expect_server_first(s, 0, &wrong, usize::MAX);
            send_client_final(s, 0, &wrong).expect_disconnect(0, DisconnectReason::NotAuthorized)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.12.1: a re-authentication must prove the identity the connection has: one that
    // proves another user (bob, on alice's connection) fails, DISCONNECT 0x87 (Not
    // authorized) and close, though bob's proof is valid.
    Case::new(
        "auth_scram_reauthentication_as_another_user_disconnects",
        &["MQTT-4.12.1-2"],
        |s| {
            let s = scram_connect(s, 0, "c4121-3", "ss33tt22");
            let bob = ScramClient::new("bob", "hunter2", "fourth-nonce-4121");
            let s = s.send(
                0,
                auth(
                    AuthReason::ReAuthenticate,
                    Some(SCRAM),
                    Some(&bob.client_first()),
                ),
            );
            let s = expect_server_first(s, 0, &bob, usize::MAX);
            send_client_final(s, 0, &bob).expect_disconnect(0, DisconnectReason::NotAuthorized)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE_BOB),
    // §4.12: the identity a client has is the one its exchange proved. A CONNECT naming the
    // User Name "mallory" that proves alice by SCRAM-SHA-256 connects as alice, and the
    // broker's "client connected" line names alice, not the User Name it was sent
    // ([MQTT-4.12.0-5]: the CONNACK carries the method and the server signature).
    Case::new(
        "auth_scram_connected_line_names_the_proved_user",
        &["MQTT-4.12.0-5"],
        |s| {
            let client = ScramClient::new("alice", "secret", "uu44vv55ww66");
            let mut c = connect_scram("c4120-5", &client);
            c.username = Some(MqttString::try_from("mallory").expect("a user name"));
            let s = s.open(0).send(0, c);
            let s = expect_server_first(s, 0, &client, usize::MAX);
            let s = send_client_final(s, 0, &client);
            connack_that(s, 0, "CONNACK 0x00 with the server signature", move |a| {
                if a.reason != ConnAckReason::Success {
                    return Err(format!("reason {:?}", a.reason));
                }
                method_is(a.properties.authentication_method.as_ref(), SCRAM)?;
                server_final_is(&client, a.properties.authentication_data.as_ref())
            })
            .expect_log("\"identity\":\"user alice\"")
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE_BOB),
    // §3.15.2.1: an AUTH whose reason code is not an Authenticate Reason Code (0x01) is a
    // Malformed Packet: DISCONNECT 0x81.
    Case::new(
        "auth_unknown_reason_code_is_malformed",
        &["MQTT-3.15.2-1"],
        |s| {
            scram_connect(s, 0, "c3152-1", "rr55ss44")
                // AUTH, reason 0x01, Authentication Method "SCRAM-SHA-256".
                .send_hex(
                    0,
                    "f0 12 01 10 15 00 0d 53 43 52 41 4d 2d 53 48 41 2d 32 35 36",
                )
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    )
    .config(SCRAM_CONFIG)
    .users(ALICE),
    // §4.13.1: a Malformed Packet (PUBLISH with QoS 3) is answered with DISCONNECT 0x81 and
    // the connection is closed.
    Case::new(
        "error_malformed_publish_closes",
        &["MQTT-4.13.1-1", "MQTT-4.13.2-1"],
        |s| {
            s.connect(0, "c4131-1")
                .send_hex(0, "36 05 00 01 74 00 00")
                .expect_disconnect(0, DisconnectReason::MalformedPacket)
        },
    ),
    // §4.13.1: a Malformed Packet before CONNACK (a CONNECT with reserved flag bit 0 set)
    // closes the connection; the Server may send CONNACK 0x81 first, and mqtt5d sends
    // nothing. Never a DISCONNECT before CONNACK.
    Case::new(
        "error_malformed_connect_closes",
        &["MQTT-4.13.1-1", "MQTT-3.14.0-1"],
        |s| {
            s.open(0)
                .send_hex(0, "10 0d 00 04 4d 51 54 54 05 03 00 3c 00 00 00")
                .expect_closed(0)
        },
    ),
    // §6.0: MQTT travels in binary frames; a text frame closes the connection.
    Case::new("ws_text_frame_closes", &["MQTT-6.0.0-1"], |s| {
        s.open_with(0, ProtocolVersion::V5, Transport::WebSocket("mqtt"))
            .send(0, connect("c600-1"))
            .expect_connack(0, ConnAckReason::Success)
            .send_text(0, "c0 00")
            .expect_closed(0)
    })
    .config(WS),
    // §6.0: a frame may hold part of a packet or several packets: the CONNECT split over
    // three frames, then two PINGREQs and half of a third in one frame.
    Case::new("ws_packets_span_frames", &["MQTT-6.0.0-2"], |s| {
        let mut bytes = BytesMut::new();
        Packet::from(connect("c600-2")).encode(ProtocolVersion::V5, &mut bytes);
        let bytes = bytes.to_vec();
        let (a, rest) = bytes.split_at(1);
        let (b, c) = rest.split_at(rest.len() / 2);
        s.open_with(0, ProtocolVersion::V5, Transport::WebSocket("mqtt"))
            .send_bytes(0, a.to_vec(), "CONNECT, first byte")
            .send_bytes(0, b.to_vec(), "CONNECT, middle")
            .send_bytes(0, c.to_vec(), "CONNECT, end")
            .expect_connack(0, ConnAckReason::Success)
            .send_hex(0, "c0 00 c0 00 c0")
            .expect_hex(0, PINGRESP)
            .expect_hex(0, PINGRESP)
            .expect_quiet(0, 200)
            .send_hex(0, "00")
            .expect_hex(0, PINGRESP)
    })
    .config(WS),
    // §6.0: the subprotocol the Server selects is "mqtt", whatever else the Client offers.
    Case::new("ws_selects_mqtt_subprotocol", &["MQTT-6.0.0-4"], |s| {
        s.open_with(
            0,
            ProtocolVersion::V5,
            Transport::WebSocket("mqttv3.1, mqtt, x-other"),
        )
        .expect_subprotocol(0, Some("mqtt"))
        .send(0, connect("c600-4"))
        .expect_connack(0, ConnAckReason::Success)
    })
    .config(WS),
];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[
    na(
        "MQTT-3.2.2-4",
        "binds the Client only: what a Client without session state does on Session Present 1",
    ),
    na(
        "MQTT-3.2.2-5",
        "binds the Client only: a Client discarding its session state on Session Present 0",
    ),
    na(
        "MQTT-6.0.0-3",
        "binds the Client only: the Client offers \"mqtt\" among its WebSocket subprotocols",
    ),
    na(
        "MQTT-3.2.2-11",
        "binds the Client only: it publishes at no QoS above the Maximum QoS. The Server's \
         reaction (DISCONNECT 0x9B, then close) is under MQTT-4.13.2-1: \
         `connack_publish_above_maximum_qos_is_refused`",
    ),
    na(
        "MQTT-3.2.2-14",
        "binds the Client only: with Retain Available 0 it sends no retained PUBLISH. The \
         Server's reaction (DISCONNECT 0x9A, then close) is under MQTT-4.13.2-1: \
         `connack_retained_publish_without_retain_support_is_refused`",
    ),
    na(
        "MQTT-3.2.2-15",
        "binds the Client only: it sends no packet above the Server's Maximum Packet Size. The \
         Server's reaction (DISCONNECT 0x95, then close) is under MQTT-4.13.2-1: \
         `connack_packet_over_maximum_packet_size_is_refused`",
    ),
    na(
        "MQTT-3.2.2-17",
        "binds the Client only: it sends no Topic Alias above the Server's Topic Alias Maximum. \
         The Server's reaction (DISCONNECT 0x94, then close) is under MQTT-4.13.2-1: \
         `connack_topic_alias_above_maximum_is_refused`",
    ),
    na(
        "MQTT-3.2.2-18",
        "binds the Client only: without a Topic Alias Maximum it sends no Topic Alias. The \
         Server's reaction (DISCONNECT 0x94, then close) is under MQTT-4.13.2-1: \
         `connack_topic_alias_without_maximum_is_refused`",
    ),
    na(
        "MQTT-3.2.2-21",
        "binds the Client only: it uses the Server Keep Alive from CONNACK. The Server enforces \
         the value it sent under MQTT-3.1.2-22: `connack_server_keep_alive_is_enforced`",
    ),
    na(
        "MQTT-4.12.0-3",
        "binds the Client only: it answers the Server's AUTH with AUTH 0x18. The Server's \
         reaction to another answer (it rejects the authentication and closes) is under \
         MQTT-4.12.0-4 and MQTT-4.13.1-1: `auth_scram_answer_without_continue_closes`",
    ),
    na(
        "MQTT-4.12.0-7",
        "binds the Client only: without an Authentication Method in CONNECT it sends no AUTH. \
         The Server's reaction (DISCONNECT 0x82, then close) is under MQTT-4.13.1-1: \
         `auth_without_method_in_connect_is_a_protocol_error`",
    ),
    na(
        "MQTT-4.12.1-1",
        "binds the Client only: it re-authenticates with the connection's Authentication \
         Method. The Server's reaction to another method (DISCONNECT 0x82, then close) is \
         under MQTT-4.13.1-1: `auth_reauthentication_with_another_method_is_a_protocol_error`; \
         a re-authentication that follows the rule: `auth_scram_reauthentication_succeeds`",
    ),
];
