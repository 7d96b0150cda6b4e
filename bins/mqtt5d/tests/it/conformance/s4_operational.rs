//! Operational behaviour (§4.1–4.6, §4.9): Session State, network connections, the QoS
//! delivery protocols, delivery retry, message receipt, ordering and flow control.
//!
//! The broker numbers the packet identifiers of a session's outgoing PUBLISH packets from 1
//! upwards (skipping those still in flight); the cases rely on that to acknowledge them, and
//! check the properties the specification asks for (unused, distinct, kept on a resend)
//! through those exact values.

use std::num::NonZeroU16;

use mqtt5_codec::{
    Disconnect, DisconnectReason, PubAck, PubAckReason, PubComp, PubCompReason, PubRec,
    PubRecReason, PubRel, QoS, Unsubscribe,
};

use super::*;

// ---- Helpers ----------------------------------------------------------------------------------

/// A CONNECT with Clean Start, session expiry 60 s and this Receive Maximum.
fn receive_max(client_id: &str, max: u16) -> Connect {
    let mut c = connect_session(client_id, true, 60);
    c.properties.receive_maximum = Some(NonZeroU16::new(max).expect("non-zero"));
    c
}

/// The PUBLISH the broker forwards: `publish(..)` with DUP set to `dup`.
fn out(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16, dup: bool) -> Publish {
    let mut p = publish(topic_name, payload, qos, id);
    p.dup = dup;
    p
}

/// A PUBLISH a client sends with DUP set (a client's resend).
fn resent(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    out(topic_name, payload, qos, id, true)
}

/// A QoS > 0 PUBLISH with a Message Expiry Interval.
fn expiring(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16, secs: u32) -> Publish {
    let mut p = publish(topic_name, payload, qos, id);
    p.properties.message_expiry_interval = Some(secs);
    p
}

fn puback(id: u16) -> PubAck {
    PubAck::new(pid(id))
}

fn puback_with(id: u16, reason: PubAckReason) -> PubAck {
    let mut a = PubAck::new(pid(id));
    a.reason = reason;
    a
}

fn pubrec(id: u16) -> PubRec {
    PubRec::new(pid(id))
}

fn pubrec_with(id: u16, reason: PubRecReason) -> PubRec {
    let mut a = PubRec::new(pid(id));
    a.reason = reason;
    a
}

fn pubrel(id: u16) -> PubRel {
    PubRel::new(pid(id))
}

fn pubcomp(id: u16) -> PubComp {
    PubComp::new(pid(id))
}

impl Script {
    /// Opens `conn`, sends `connect`, and expects a successful CONNACK whose Session Present
    /// flag is `present`.
    fn resume(self, conn: usize, connect: Connect, present: bool) -> Self {
        self.open(conn).send(conn, connect).expect_that(
            conn,
            &format!("CONNACK 0x00, session present {present}"),
            move |p| match p {
                Packet::ConnAck(a) if a.reason.as_u8() == 0 && a.session_present == present => {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        )
    }

    /// A normal DISCONNECT from the client on `conn`; the broker then closes it.
    fn bye(self, conn: usize) -> Self {
        self.send(conn, Disconnect::new(DisconnectReason::NormalDisconnection))
            .expect_closed(conn)
    }

    /// `conn` publishes at QoS 1 with packet id `id` and gets PUBACK `reason`.
    fn pub1(
        self,
        conn: usize,
        t: &str,
        payload: &'static [u8],
        id: u16,
        reason: PubAckReason,
    ) -> Self {
        self.send(conn, publish(t, payload, QoS::AtLeastOnce, id))
            .expect(conn, puback_with(id, reason))
    }

    /// `conn` completes a QoS 2 publication with packet id `id` (PUBREC success).
    fn pub2(self, conn: usize, t: &str, payload: &'static [u8], id: u16) -> Self {
        self.send(conn, publish(t, payload, QoS::ExactlyOnce, id))
            .expect(conn, pubrec(id))
            .send(conn, pubrel(id))
            .expect(conn, pubcomp(id))
    }

    /// The next packet on `conn` is a PUBLISH of `payload` on `t` at `qos` with packet id
    /// `id` and DUP `dup`, whatever its properties.
    fn expect_pub_any_props(
        self,
        conn: usize,
        t: &'static str,
        payload: &'static [u8],
        qos: QoS,
        id: u16,
        dup: bool,
    ) -> Self {
        self.expect_that(
            conn,
            &format!("PUBLISH {t} {qos:?} id {id} dup {dup}"),
            move |p| match p {
                Packet::Publish(p)
                    if p.topic() == t
                        && p.payload() == payload
                        && p.qos() == qos
                        && p.delivery.packet_id().map_or(0, PacketId::get) == id
                        && p.dup == dup =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        )
    }
}

// ---- Cases ------------------------------------------------------------------------------------

pub(super) const CASES: &[Case] = &[
    // §4.1 [MQTT-4.1.0-1]: the Server MUST NOT discard the Session State while the Network
    // Connection is open (the expiry interval only runs once it is closed).
    Case::new(
        "session_kept_while_connected_past_expiry",
        &["MQTT-4.1.0-1"],
        |s| {
            s.resume(0, connect_session("s410-1", true, 1), false)
                .subscribe(0, 1, "s410/1", QoS::AtLeastOnce)
                // Twice the 1 s expiry interval, connected: nothing arrives, it stays open.
                .expect_quiet(0, 2200)
                .connect(1, "s410-1p")
                .pub1(1, "s410/1", b"still", 1, PubAckReason::Success)
                .expect(0, publish("s410/1", b"still", QoS::AtLeastOnce, 1))
                .send(0, puback(1))
                .bye(0)
                .resume(2, connect_session("s410-1", false, 1), true)
        },
    ),
    // [MQTT-4.1.0-2]: the Server MUST discard the Session State when the Network Connection
    // is closed and the Session Expiry Interval has passed: once the broker counts no
    // session, no subscriber matches any more, nothing was queued, and a resume finds none.
    Case::new("session_discarded_after_expiry", &["MQTT-4.1.0-2"], |s| {
        s.resume(0, connect_session("s410-2", true, 1), false)
            .subscribe(0, 1, "s410/2", QoS::AtLeastOnce)
            .bye(0)
            .expect_metric("mqtt5_sessions", 0)
            .connect(1, "s410-2p")
            .pub1(1, "s410/2", b"late", 1, PubAckReason::NoMatchingSubscribers)
            .resume(2, connect_session("s410-2", false, 60), false)
            .expect_quiet(2, 500)
    })
    .config(METRICS),
    // [MQTT-4.1.0-2] (before expiry) and [MQTT-4.5.0-1]: within the expiry interval the
    // closed session keeps its subscriptions, and a message published meanwhile is added to
    // its Session State and delivered on resume (a first send: DUP 0).
    Case::new(
        "session_kept_until_expiry_and_queues",
        &["MQTT-4.1.0-2", "MQTT-4.5.0-1"],
        |s| {
            s.resume(0, connect_session("s410-3", true, 10), false)
                .subscribe(0, 1, "s410/3", QoS::AtLeastOnce)
                .bye(0)
                .connect(1, "s410-3p")
                .pub1(1, "s410/3", b"queued", 1, PubAckReason::Success)
                .resume(2, connect_session("s410-3", false, 10), true)
                .expect(2, publish("s410/3", b"queued", QoS::AtLeastOnce, 1))
                .send(2, puback(1))
                .expect_quiet(2, 300)
        },
    ),
    // §4.2 [MQTT-4.2-1] (listed again as [MQTT-4.2.0-1] in the conformance table): the Server supports an ordered, lossless byte stream transport:
    // MQTT over TCP, in both directions.
    Case::new(
        "session_transport_tcp",
        &["MQTT-4.2-1", "MQTT-4.2.0-1"],
        |s| {
            s.connect(0, "s42-tcp")
                .subscribe(0, 1, "s42/t", QoS::AtMostOnce)
                .connect(1, "s42-tcpp")
                .send(1, publish("s42/t", b"a", QoS::AtMostOnce, 0))
                .send(1, publish("s42/t", b"b", QoS::AtMostOnce, 0))
                .expect(0, publish("s42/t", b"a", QoS::AtMostOnce, 0))
                .expect(0, publish("s42/t", b"b", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-4.2-1]: ... and MQTT over WebSocket, another such transport.
    Case::new(
        "session_transport_websocket",
        &["MQTT-4.2-1", "MQTT-4.2.0-1"],
        |s| {
            s.open_with(0, ProtocolVersion::V5, Transport::WebSocket("mqtt"))
                .send(0, connect("s42-ws"))
                .expect_connack(0, ConnAckReason::Success)
                .subscribe(0, 1, "s42/ws", QoS::AtMostOnce)
                .open_with(1, ProtocolVersion::V5, Transport::WebSocket("mqtt"))
                .send(1, connect("s42-wsp"))
                .expect_connack(1, ConnAckReason::Success)
                .send(1, publish("s42/ws", b"over ws", QoS::AtMostOnce, 0))
                .expect(0, publish("s42/ws", b"over ws", QoS::AtMostOnce, 0))
        },
    )
    .config("[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\n"),
    // §4.3.1 [MQTT-4.3.1-1]: the sender MUST send a QoS 0 PUBLISH with DUP 0, even when
    // the message came in as a resend (DUP 1) at QoS 1.
    Case::new("qos_0_forwarded_with_dup_0", &["MQTT-4.3.1-1"], |s| {
        s.connect(0, "q431-s")
            .subscribe(0, 1, "q431/t", QoS::AtMostOnce)
            .connect(1, "q431-p")
            .send(1, resent("q431/t", b"m", QoS::AtLeastOnce, 5))
            .expect(1, puback(5))
            .expect(0, publish("q431/t", b"m", QoS::AtMostOnce, 0))
    }),
    // §4.3.2 [MQTT-4.3.2-1], [MQTT-4.3.2-2]: for each new message the sender assigns an
    // unused packet id and sends QoS 1 with DUP 0 (here though the publisher's copies had
    // DUP 1, and the first is still unacknowledged when the second goes out).
    Case::new(
        "qos_1_new_message_unused_id_dup_0",
        &["MQTT-4.3.2-1", "MQTT-4.3.2-2"],
        |s| {
            s.connect(0, "q432-s")
                .subscribe(0, 1, "q432/t", QoS::AtLeastOnce)
                .connect(1, "q432-p")
                .send(1, resent("q432/t", b"one", QoS::AtLeastOnce, 9))
                .expect(1, puback(9))
                .send(1, resent("q432/t", b"two", QoS::AtLeastOnce, 10))
                .expect(1, puback(10))
                .expect(0, publish("q432/t", b"one", QoS::AtLeastOnce, 1))
                .expect(0, publish("q432/t", b"two", QoS::AtLeastOnce, 2))
                .send(0, puback(1))
                .send(0, puback(2))
                .pub1(1, "q432/t", b"three", 11, PubAckReason::Success)
                .expect(0, publish("q432/t", b"three", QoS::AtLeastOnce, 3))
        },
    ),
    // [MQTT-4.3.2-3], [MQTT-4.4.0-1]: an unacknowledged QoS 1 PUBLISH is not resent while
    // the connection stays up, and is resent with its original packet id (DUP 1) when the
    // client resumes the session; once PUBACKed it is never resent.
    Case::new(
        "qos_1_unacked_resent_only_on_resume",
        &["MQTT-4.3.2-3", "MQTT-4.4.0-1"],
        |s| {
            s.resume(0, connect_session("q432-3", true, 60), false)
                .subscribe(0, 1, "q432/3", QoS::AtLeastOnce)
                .connect(1, "q432-3p")
                .pub1(1, "q432/3", b"one", 1, PubAckReason::Success)
                .expect(0, publish("q432/3", b"one", QoS::AtLeastOnce, 1))
                .expect_quiet(0, 1500)
                .hangup(0)
                .resume(2, connect_session("q432-3", false, 60), true)
                .expect(2, out("q432/3", b"one", QoS::AtLeastOnce, 1, true))
                .expect_quiet(2, 500)
                .send(2, puback(1))
                .hangup(2)
                .resume(3, connect_session("q432-3", false, 60), true)
                .expect_quiet(3, 700)
        },
    ),
    // [MQTT-4.3.2-4]: the receiver MUST respond with a PUBACK carrying the PUBLISH's packet
    // id (0x00 with a subscriber, 0x10 No matching subscribers without).
    Case::new("qos_1_puback_carries_packet_id", &["MQTT-4.3.2-4"], |s| {
        s.connect(0, "q432-4")
            .pub1(
                0,
                "q432/4",
                b"nobody",
                0x1234,
                PubAckReason::NoMatchingSubscribers,
            )
            .connect(1, "q432-4s")
            .subscribe(1, 1, "q432/4", QoS::AtLeastOnce)
            .pub1(0, "q432/4", b"x", 0xfffe, PubAckReason::Success)
            .expect(1, publish("q432/4", b"x", QoS::AtLeastOnce, 1))
    }),
    // [MQTT-4.3.2-5]: after sending PUBACK the receiver MUST treat a PUBLISH with the same
    // packet id as a new message, whatever its DUP flag: it is delivered again.
    Case::new(
        "qos_1_same_id_after_puback_is_new",
        &["MQTT-4.3.2-5"],
        |s| {
            s.connect(0, "q432-5s")
                .subscribe(0, 1, "q432/5", QoS::AtLeastOnce)
                .connect(1, "q432-5p")
                .pub1(1, "q432/5", b"a", 7, PubAckReason::Success)
                .send(1, resent("q432/5", b"a", QoS::AtLeastOnce, 7))
                .expect(1, puback(7))
                .expect(0, publish("q432/5", b"a", QoS::AtLeastOnce, 1))
                .expect(0, publish("q432/5", b"a", QoS::AtLeastOnce, 2))
        },
    ),
    // §4.3.3 [MQTT-4.3.3-1], [MQTT-4.3.3-2], [MQTT-4.3.3-4]: the sender assigns an unused
    // packet id and sends QoS 2 with DUP 0; on a PUBREC below 0x80 it MUST send a PUBREL with
    // the same packet id.
    Case::new(
        "qos_2_sender_flow",
        &["MQTT-4.3.3-1", "MQTT-4.3.3-2", "MQTT-4.3.3-4"],
        |s| {
            s.connect(0, "q433-s")
                .subscribe(0, 1, "q433/t", QoS::ExactlyOnce)
                .connect(1, "q433-p")
                .send(1, resent("q433/t", b"a", QoS::ExactlyOnce, 3))
                .expect(1, pubrec(3))
                .send(1, pubrel(3))
                .expect(1, pubcomp(3))
                .pub2(1, "q433/t", b"b", 4)
                .expect(0, publish("q433/t", b"a", QoS::ExactlyOnce, 1))
                .expect(0, publish("q433/t", b"b", QoS::ExactlyOnce, 2))
                .send(0, pubrec(1))
                .expect(0, pubrel(1))
                .send(0, pubrec(2))
                .expect(0, pubrel(2))
                .send(0, pubcomp(1))
                .send(0, pubcomp(2))
                .expect_quiet(0, 300)
        },
    ),
    // [MQTT-4.3.3-3], [MQTT-4.4.0-1]: a QoS 2 PUBLISH is unacknowledged until PUBREC: not
    // resent while connected, resent with its packet id and DUP 1 on resume.
    Case::new(
        "qos_2_unreceived_publish_resent_on_resume",
        &["MQTT-4.3.3-3", "MQTT-4.4.0-1"],
        |s| {
            s.resume(0, connect_session("q433-3", true, 60), false)
                .subscribe(0, 1, "q433/3", QoS::ExactlyOnce)
                .connect(1, "q433-3p")
                .pub2(1, "q433/3", b"x", 1)
                .expect(0, publish("q433/3", b"x", QoS::ExactlyOnce, 1))
                .expect_quiet(0, 1200)
                .hangup(0)
                .resume(2, connect_session("q433-3", false, 60), true)
                .expect(2, out("q433/3", b"x", QoS::ExactlyOnce, 1, true))
                .send(2, pubrec(1))
                .expect(2, pubrel(1))
                .send(2, pubcomp(1))
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-4.3.3-5], [MQTT-4.3.3-6], [MQTT-4.4.0-1]: the PUBREL stays unacknowledged until
    // PUBCOMP, and is what gets resent on resume; the PUBLISH is never sent again.
    Case::new(
        "qos_2_pubrel_resent_not_publish",
        &["MQTT-4.3.3-5", "MQTT-4.3.3-6", "MQTT-4.4.0-1"],
        |s| {
            s.resume(0, connect_session("q433-5", true, 60), false)
                .subscribe(0, 1, "q433/5", QoS::ExactlyOnce)
                .connect(1, "q433-5p")
                .pub2(1, "q433/5", b"x", 1)
                .expect(0, publish("q433/5", b"x", QoS::ExactlyOnce, 1))
                .send(0, pubrec(1))
                .expect(0, pubrel(1))
                .expect_quiet(0, 1200)
                .hangup(0)
                .resume(2, connect_session("q433-5", false, 60), true)
                .expect(2, pubrel(1))
                .expect_quiet(2, 500)
                .send(2, pubcomp(1))
                .hangup(2)
                .resume(3, connect_session("q433-5", false, 60), true)
                .expect_quiet(3, 500)
        },
    ),
    // [MQTT-4.3.3-7]: the sender MUST NOT apply message expiry once the PUBLISH has been
    // sent: a 1 s message, sent but not PUBRECed, is still resent after 2 s.
    Case::new(
        "qos_2_sent_message_does_not_expire",
        &["MQTT-4.3.3-7"],
        |s| {
            s.resume(0, connect_session("q433-7", true, 60), false)
                .subscribe(0, 1, "q433/7", QoS::ExactlyOnce)
                .connect(1, "q433-7p")
                .send(1, expiring("q433/7", b"brief", QoS::ExactlyOnce, 1, 1))
                .expect(1, pubrec(1))
                .send(1, pubrel(1))
                .expect(1, pubcomp(1))
                .expect_pub_any_props(0, "q433/7", b"brief", QoS::ExactlyOnce, 1, false)
                .hangup(0)
                // Past the message's 1 s expiry.
                .elapse(2200)
                .resume(2, connect_session("q433-7", false, 60), true)
                .expect_pub_any_props(2, "q433/7", b"brief", QoS::ExactlyOnce, 1, true)
                .send(2, pubrec(1))
                .expect(2, pubrel(1))
                .send(2, pubcomp(1))
        },
    ),
    // [MQTT-4.3.3-8]: the receiver MUST respond with a PUBREC carrying the PUBLISH's packet
    // id (0x10 without a subscriber, 0x00 with one).
    Case::new("qos_2_pubrec_carries_packet_id", &["MQTT-4.3.3-8"], |s| {
        s.connect(0, "q433-8")
            .send(0, publish("q433/8", b"nobody", QoS::ExactlyOnce, 0xabcd))
            .expect(0, pubrec_with(0xabcd, PubRecReason::NoMatchingSubscribers))
            .send(0, pubrel(0xabcd))
            .expect(0, pubcomp(0xabcd))
            .connect(1, "q433-8s")
            .subscribe(1, 1, "q433/8", QoS::ExactlyOnce)
            .send(0, publish("q433/8", b"x", QoS::ExactlyOnce, 0xfffe))
            .expect(0, pubrec(0xfffe))
            .expect(1, publish("q433/8", b"x", QoS::ExactlyOnce, 1))
    }),
    // [MQTT-4.3.3-9]: after a PUBREC of 0x80 or more, a PUBLISH with the same packet id is a
    // new message: here 0x87 (a client may not publish to $SYS), then the same id is routed.
    Case::new(
        "qos_2_same_id_after_failed_pubrec_is_new",
        &["MQTT-4.3.3-9"],
        |s| {
            s.connect(0, "q433-9s")
                .subscribe(0, 1, "q433/9", QoS::AtMostOnce)
                .connect(1, "q433-9p")
                .send(1, publish("$SYS/q433", b"denied", QoS::ExactlyOnce, 9))
                .expect(1, pubrec_with(9, PubRecReason::NotAuthorized))
                .send(1, publish("q433/9", b"new", QoS::ExactlyOnce, 9))
                .expect(1, pubrec(9))
                .expect(0, publish("q433/9", b"new", QoS::AtMostOnce, 0))
                .send(1, pubrel(9))
                .expect(1, pubcomp(9))
        },
    ),
    // [MQTT-4.3.3-10]: until PUBREL, a PUBLISH with the same packet id is acknowledged with
    // PUBREC again and MUST NOT be delivered twice.
    Case::new(
        "qos_2_resent_publish_not_duplicated",
        &["MQTT-4.3.3-10"],
        |s| {
            s.connect(0, "q433-10s")
                .subscribe(0, 1, "q433/10", QoS::AtMostOnce)
                .connect(1, "q433-10p")
                .send(1, publish("q433/10", b"once", QoS::ExactlyOnce, 10))
                .expect(1, pubrec(10))
                .send(1, resent("q433/10", b"once", QoS::ExactlyOnce, 10))
                .expect(1, pubrec(10))
                .send(1, resent("q433/10", b"once", QoS::ExactlyOnce, 10))
                .expect(1, pubrec(10))
                .expect(0, publish("q433/10", b"once", QoS::AtMostOnce, 0))
                .expect_quiet(0, 500)
                .send(1, pubrel(10))
                .expect(1, pubcomp(10))
                .expect_quiet(0, 200)
        },
    ),
    // [MQTT-4.3.3-10], [MQTT-4.4.0-1]: the same across a reconnection: the client resumes
    // and resends the PUBLISH (DUP 1, original id); PUBREC again, no second delivery.
    Case::new(
        "qos_2_resent_publish_after_resume_not_duplicated",
        &["MQTT-4.3.3-10", "MQTT-4.4.0-1"],
        |s| {
            s.connect(0, "q433-10rs")
                .subscribe(0, 1, "q433/10r", QoS::AtMostOnce)
                .resume(1, connect_session("q433-10rp", true, 60), false)
                .send(1, publish("q433/10r", b"once", QoS::ExactlyOnce, 42))
                .expect(1, pubrec(42))
                .expect(0, publish("q433/10r", b"once", QoS::AtMostOnce, 0))
                .hangup(1)
                .resume(2, connect_session("q433-10rp", false, 60), true)
                .send(2, resent("q433/10r", b"once", QoS::ExactlyOnce, 42))
                .expect(2, pubrec(42))
                .send(2, pubrel(42))
                .expect(2, pubcomp(42))
                .expect_quiet(0, 500)
        },
    ),
    // [MQTT-4.3.3-11]: the receiver MUST answer a PUBREL with a PUBCOMP of the same packet
    // id (0x92 Packet Identifier not found for an id it does not know).
    Case::new("qos_2_pubcomp_carries_packet_id", &["MQTT-4.3.3-11"], |s| {
        let mut unknown = pubcomp(12);
        unknown.reason = PubCompReason::PacketIdentifierNotFound;
        s.connect(0, "q433-11")
            .send(0, publish("q433/11", b"x", QoS::ExactlyOnce, 11))
            .expect(0, pubrec_with(11, PubRecReason::NoMatchingSubscribers))
            .send(0, pubrel(11))
            .expect(0, pubcomp(11))
            .send(0, pubrel(12))
            .expect(0, unknown)
    }),
    // [MQTT-4.3.3-12]: after sending PUBCOMP, a PUBLISH with the same packet id is a new
    // message.
    Case::new(
        "qos_2_same_id_after_pubcomp_is_new",
        &["MQTT-4.3.3-12"],
        |s| {
            s.connect(0, "q433-12s")
                .subscribe(0, 1, "q433/12", QoS::AtMostOnce)
                .connect(1, "q433-12p")
                .pub2(1, "q433/12", b"first", 12)
                .expect(0, publish("q433/12", b"first", QoS::AtMostOnce, 0))
                .pub2(1, "q433/12", b"second", 12)
                .expect(0, publish("q433/12", b"second", QoS::AtMostOnce, 0))
        },
    ),
    // [MQTT-4.3.3-13]: the receiver MUST continue the QoS 2 acknowledgement sequence even if
    // it has applied message expiry: the message expires in the offline subscriber's queue
    // before the publisher's PUBREL, which still gets PUBCOMP 0x00.
    Case::new(
        "qos_2_ack_sequence_survives_expiry",
        &["MQTT-4.3.3-13"],
        |s| {
            s.resume(0, connect_session("q433-13s", true, 60), false)
                .subscribe(0, 1, "q433/13", QoS::ExactlyOnce)
                .bye(0)
                .connect(1, "q433-13p")
                .send(1, expiring("q433/13", b"brief", QoS::ExactlyOnce, 13, 1))
                .expect(1, pubrec(13))
                // Past the message's 1 s expiry.
                .elapse(2200)
                .send(1, pubrel(13))
                .expect(1, pubcomp(13))
                .resume(2, connect_session("q433-13s", false, 60), true)
                .expect_quiet(2, 500)
        },
    ),
    // §4.4 [MQTT-4.4.0-2]: a PUBACK with a Reason Code of 0x80 or more acknowledges the
    // PUBLISH: it MUST NOT be retransmitted, even on resume.
    Case::new(
        "qos_1_failed_puback_not_retransmitted",
        &["MQTT-4.4.0-2"],
        |s| {
            s.resume(0, connect_session("q440-2a", true, 60), false)
                .subscribe(0, 1, "q440/2a", QoS::AtLeastOnce)
                .connect(1, "q440-2ap")
                .pub1(1, "q440/2a", b"x", 1, PubAckReason::Success)
                .expect(0, publish("q440/2a", b"x", QoS::AtLeastOnce, 1))
                .send(0, puback_with(1, PubAckReason::UnspecifiedError))
                .expect_quiet(0, 500)
                .hangup(0)
                .resume(2, connect_session("q440-2a", false, 60), true)
                .expect_quiet(2, 700)
        },
    ),
    // [MQTT-4.4.0-2]: likewise a PUBREC of 0x80 or more: no PUBREL, no resend on resume.
    Case::new(
        "qos_2_failed_pubrec_not_retransmitted",
        &["MQTT-4.4.0-2"],
        |s| {
            s.resume(0, connect_session("q440-2b", true, 60), false)
                .subscribe(0, 1, "q440/2b", QoS::ExactlyOnce)
                .connect(1, "q440-2bp")
                .pub2(1, "q440/2b", b"x", 1)
                .expect(0, publish("q440/2b", b"x", QoS::ExactlyOnce, 1))
                .send(0, pubrec_with(1, PubRecReason::QuotaExceeded))
                .expect_quiet(0, 500)
                .hangup(0)
                .resume(2, connect_session("q440-2b", false, 60), true)
                .expect_quiet(2, 700)
        },
    ),
    // §4.5 [MQTT-4.5.0-1]: the Server MUST add a message it takes ownership of to the Session
    // State of every client with a matching subscription, connected or not, and of no other.
    Case::new(
        "qos_message_added_to_matching_sessions",
        &["MQTT-4.5.0-1"],
        |s| {
            s.resume(0, connect_session("q450-off", true, 60), false)
                .subscribe(0, 1, "q450/+", QoS::AtLeastOnce)
                .bye(0)
                .connect(1, "q450-on")
                .subscribe(1, 1, "q450/a", QoS::AtLeastOnce)
                .connect(2, "q450-other")
                .subscribe(2, 1, "q450/b", QoS::AtLeastOnce)
                .connect(3, "q450-p")
                .pub1(3, "q450/a", b"m", 1, PubAckReason::Success)
                .expect(1, publish("q450/a", b"m", QoS::AtLeastOnce, 1))
                .resume(4, connect_session("q450-off", false, 60), true)
                .expect(4, publish("q450/a", b"m", QoS::AtLeastOnce, 1))
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-4.4.0-1]: on resume, unacknowledged PUBLISH packets go out again with their
    // original Packet Identifiers, in their original order (the Client's rule for its
    // resends, [MQTT-4.6.0-1], holds for the Server's too).
    Case::new("order_resend_in_original_order", &["MQTT-4.4.0-1"], |s| {
        s.resume(0, connect_session("o460-1", true, 60), false)
            .subscribe(0, 1, "o460/1", QoS::AtLeastOnce)
            .connect(1, "o460-1p")
            .pub1(1, "o460/1", b"1", 1, PubAckReason::Success)
            .pub1(1, "o460/1", b"2", 2, PubAckReason::Success)
            .pub1(1, "o460/1", b"3", 3, PubAckReason::Success)
            .expect(0, publish("o460/1", b"1", QoS::AtLeastOnce, 1))
            .expect(0, publish("o460/1", b"2", QoS::AtLeastOnce, 2))
            .expect(0, publish("o460/1", b"3", QoS::AtLeastOnce, 3))
            .send(0, puback(2))
            .hangup(0)
            .resume(2, connect_session("o460-1", false, 60), true)
            .expect(2, out("o460/1", b"1", QoS::AtLeastOnce, 1, true))
            .expect(2, out("o460/1", b"3", QoS::AtLeastOnce, 3, true))
            .expect_quiet(2, 300)
    }),
    // [MQTT-4.3.2-4]: each QoS 1 PUBLISH gets a PUBACK with its Packet Identifier, in the
    // order the PUBLISH packets arrived (ids not in ascending order), as [MQTT-4.6.0-2] asks
    // of a Client.
    Case::new("order_puback_in_publish_order", &["MQTT-4.3.2-4"], |s| {
        s.connect(0, "o460-2")
            .send(0, publish("o460/2", b"a", QoS::AtLeastOnce, 30))
            .send(0, publish("o460/2", b"b", QoS::AtLeastOnce, 10))
            .send(0, publish("o460/2", b"c", QoS::AtLeastOnce, 20))
            .expect(0, puback_with(30, PubAckReason::NoMatchingSubscribers))
            .expect(0, puback_with(10, PubAckReason::NoMatchingSubscribers))
            .expect(0, puback_with(20, PubAckReason::NoMatchingSubscribers))
    }),
    // [MQTT-4.3.3-8]: each QoS 2 PUBLISH gets a PUBREC with its Packet Identifier, in the
    // order the PUBLISH packets arrived, as [MQTT-4.6.0-3] asks of a Client.
    Case::new("order_pubrec_in_publish_order", &["MQTT-4.3.3-8"], |s| {
        s.connect(0, "o460-3s")
            .subscribe(0, 1, "o460/3", QoS::AtMostOnce)
            .connect(1, "o460-3")
            .send(1, publish("o460/3", b"a", QoS::ExactlyOnce, 30))
            .send(1, publish("o460/3", b"b", QoS::ExactlyOnce, 10))
            .send(1, publish("o460/3", b"c", QoS::ExactlyOnce, 20))
            .expect(1, pubrec(30))
            .expect(1, pubrec(10))
            .expect(1, pubrec(20))
    }),
    // [MQTT-4.3.3-4]: each PUBREC gets a PUBREL with the PUBLISH's Packet Identifier, in the
    // order the PUBRECs arrived, as [MQTT-4.6.0-4] asks of a Client.
    Case::new("order_pubrel_in_pubrec_order", &["MQTT-4.3.3-4"], |s| {
        s.connect(0, "o460-4s")
            .subscribe(0, 1, "o460/4", QoS::ExactlyOnce)
            .connect(1, "o460-4p")
            .pub2(1, "o460/4", b"1", 1)
            .pub2(1, "o460/4", b"2", 2)
            .pub2(1, "o460/4", b"3", 3)
            .expect(0, publish("o460/4", b"1", QoS::ExactlyOnce, 1))
            .expect(0, publish("o460/4", b"2", QoS::ExactlyOnce, 2))
            .expect(0, publish("o460/4", b"3", QoS::ExactlyOnce, 3))
            .send(0, pubrec(3))
            .send(0, pubrec(1))
            .send(0, pubrec(2))
            .expect(0, pubrel(3))
            .expect(0, pubrel(1))
            .expect(0, pubrel(2))
    }),
    // [MQTT-4.6.0-5], [MQTT-4.6.0-6]: every topic is an Ordered Topic by default on
    // non-shared subscriptions: messages of one publisher at one QoS reach a subscriber in
    // the order they were received, at QoS 0, 1 and 2 (interleaved on two topics).
    Case::new(
        "order_topic_in_publish_order",
        &["MQTT-4.6.0-5", "MQTT-4.6.0-6"],
        |s| {
            s.connect(0, "o460-5s")
                .subscribe(0, 1, "o460/5/#", QoS::ExactlyOnce)
                .connect(1, "o460-5p")
                .send(1, publish("o460/5/a", b"a0", QoS::AtMostOnce, 0))
                .pub1(1, "o460/5/b", b"b1", 1, PubAckReason::Success)
                .send(1, publish("o460/5/a", b"a1", QoS::AtMostOnce, 0))
                .pub1(1, "o460/5/b", b"b2", 2, PubAckReason::Success)
                .send(1, publish("o460/5/a", b"a2", QoS::AtMostOnce, 0))
                .pub2(1, "o460/5/a", b"q2a", 3)
                .pub2(1, "o460/5/a", b"q2b", 4)
                .expect(0, publish("o460/5/a", b"a0", QoS::AtMostOnce, 0))
                .expect(0, publish("o460/5/b", b"b1", QoS::AtLeastOnce, 1))
                .expect(0, publish("o460/5/a", b"a1", QoS::AtMostOnce, 0))
                .expect(0, publish("o460/5/b", b"b2", QoS::AtLeastOnce, 2))
                .expect(0, publish("o460/5/a", b"a2", QoS::AtMostOnce, 0))
                .expect(0, publish("o460/5/a", b"q2a", QoS::ExactlyOnce, 3))
                .expect(0, publish("o460/5/a", b"q2b", QoS::ExactlyOnce, 4))
        },
    ),
    // [MQTT-4.6.0-5]: also when the messages wait in an offline session's queue.
    Case::new("order_queued_in_publish_order", &["MQTT-4.6.0-5"], |s| {
        s.resume(0, connect_session("o460-5q", true, 60), false)
            .subscribe(0, 1, "o460/5q", QoS::AtLeastOnce)
            .bye(0)
            .connect(1, "o460-5qp")
            .pub1(1, "o460/5q", b"1", 1, PubAckReason::Success)
            .pub1(1, "o460/5q", b"2", 2, PubAckReason::Success)
            .pub1(1, "o460/5q", b"3", 3, PubAckReason::Success)
            .pub1(1, "o460/5q", b"4", 4, PubAckReason::Success)
            .resume(2, connect_session("o460-5q", false, 60), true)
            .expect(2, publish("o460/5q", b"1", QoS::AtLeastOnce, 1))
            .expect(2, publish("o460/5q", b"2", QoS::AtLeastOnce, 2))
            .expect(2, publish("o460/5q", b"3", QoS::AtLeastOnce, 3))
            .expect(2, publish("o460/5q", b"4", QoS::AtLeastOnce, 4))
    }),
    // §4.9 [MQTT-4.9.0-1], [MQTT-4.9.0-2]: the Server's send quota starts at the client's
    // Receive Maximum (2): two QoS 1 PUBLISH packets, then none until a PUBACK.
    Case::new(
        "flow_receive_maximum_bounds_inflight",
        &["MQTT-4.9.0-1", "MQTT-4.9.0-2"],
        |s| {
            s.resume(0, receive_max("f490-1", 2), false)
                .subscribe(0, 1, "f490/1", QoS::AtLeastOnce)
                .connect(1, "f490-1p")
                .pub1(1, "f490/1", b"1", 1, PubAckReason::Success)
                .pub1(1, "f490/1", b"2", 2, PubAckReason::Success)
                .pub1(1, "f490/1", b"3", 3, PubAckReason::Success)
                .pub1(1, "f490/1", b"4", 4, PubAckReason::Success)
                .expect(0, publish("f490/1", b"1", QoS::AtLeastOnce, 1))
                .expect(0, publish("f490/1", b"2", QoS::AtLeastOnce, 2))
                .expect_quiet(0, 700)
                .send(0, puback(1))
                .expect(0, publish("f490/1", b"3", QoS::AtLeastOnce, 3))
                .expect_quiet(0, 400)
                .send(0, puback(2))
                .expect(0, publish("f490/1", b"4", QoS::AtLeastOnce, 4))
        },
    ),
    // [MQTT-4.9.0-2]: at QoS 2 the quota comes back with PUBCOMP, not PUBREC (Receive
    // Maximum 1): nothing after the PUBREL until the PUBCOMP.
    Case::new(
        "flow_qos_2_quota_returns_on_pubcomp",
        &["MQTT-4.9.0-2"],
        |s| {
            s.resume(0, receive_max("f490-2", 1), false)
                .subscribe(0, 1, "f490/2", QoS::ExactlyOnce)
                .connect(1, "f490-2p")
                .pub2(1, "f490/2", b"1", 1)
                .pub2(1, "f490/2", b"2", 2)
                .expect(0, publish("f490/2", b"1", QoS::ExactlyOnce, 1))
                .expect_quiet(0, 500)
                .send(0, pubrec(1))
                .expect(0, pubrel(1))
                .expect_quiet(0, 700)
                .send(0, pubcomp(1))
                .expect(0, publish("f490/2", b"2", QoS::ExactlyOnce, 2))
        },
    ),
    // [MQTT-4.9.0-2]: a PUBREC of 0x80 or more also returns the quota (§4.9).
    Case::new("flow_failed_pubrec_returns_quota", &["MQTT-4.9.0-2"], |s| {
        s.resume(0, receive_max("f490-2b", 1), false)
            .subscribe(0, 1, "f490/2b", QoS::ExactlyOnce)
            .connect(1, "f490-2bp")
            .pub2(1, "f490/2b", b"1", 1)
            .pub2(1, "f490/2b", b"2", 2)
            .expect(0, publish("f490/2b", b"1", QoS::ExactlyOnce, 1))
            .expect_quiet(0, 500)
            .send(0, pubrec_with(1, PubRecReason::UnspecifiedError))
            .expect(0, publish("f490/2b", b"2", QoS::ExactlyOnce, 2))
    }),
    // [MQTT-4.9.0-3]: with the send quota at zero the Server MUST go on processing and
    // answering every other packet: PINGREQ, SUBSCRIBE, UNSUBSCRIBE, the client's own
    // PUBLISH at QoS 1 and 2.
    Case::new(
        "flow_other_packets_served_at_zero_quota",
        &["MQTT-4.9.0-3"],
        |s| {
            s.resume(0, receive_max("f490-3", 1), false)
                .subscribe(0, 1, "f490/3", QoS::AtLeastOnce)
                .connect(1, "f490-3p")
                .pub1(1, "f490/3", b"1", 1, PubAckReason::Success)
                .pub1(1, "f490/3", b"2", 2, PubAckReason::Success)
                .expect(0, publish("f490/3", b"1", QoS::AtLeastOnce, 1))
                .send_hex(0, "c0 00")
                .expect_hex(0, "d0 00")
                .subscribe(0, 2, "f490/other", QoS::AtLeastOnce)
                .send(
                    0,
                    Unsubscribe {
                        packet_id: pid(3),
                        properties: Default::default(),
                        filters: vec![TopicFilter::try_from("f490/other").expect("filter")],
                    },
                )
                .expect_reason(0, PacketType::UnsubAck, 0)
                .pub1(
                    0,
                    "f490/none",
                    b"mine",
                    4,
                    PubAckReason::NoMatchingSubscribers,
                )
                .send(0, publish("f490/none", b"mine2", QoS::ExactlyOnce, 5))
                .expect(0, pubrec_with(5, PubRecReason::NoMatchingSubscribers))
                .send(0, pubrel(5))
                .expect(0, pubcomp(5))
                .send(0, puback(1))
                .expect(0, publish("f490/3", b"2", QoS::AtLeastOnce, 2))
        },
    ),
    // [MQTT-4.1.0-2] with the default Session Expiry Interval (0): the session ends when the
    // Network Connection closes; a resume finds none.
    Case::new(
        "session_expiry_0_discarded_at_close",
        &["MQTT-4.1.0-2"],
        |s| {
            s.connect(0, "s410-0")
                .subscribe(0, 1, "s410/0", QoS::AtLeastOnce)
                .hangup(0)
                .connect(1, "s410-0p")
                .pub1(1, "s410/0", b"x", 1, PubAckReason::NoMatchingSubscribers)
                .resume(2, connect_session("s410-0", false, 0), false)
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-4.4.0-1]: resends happen only on a resume with Clean Start 0: a reconnection with
    // Clean Start 1 discards the session and nothing is resent.
    Case::new("qos_no_resend_on_clean_start", &["MQTT-4.4.0-1"], |s| {
        s.resume(0, connect_session("q440-1c", true, 60), false)
            .subscribe(0, 1, "q440/1c", QoS::AtLeastOnce)
            .connect(1, "q440-1cp")
            .pub1(1, "q440/1c", b"x", 1, PubAckReason::Success)
            .expect(0, publish("q440/1c", b"x", QoS::AtLeastOnce, 1))
            .hangup(0)
            .resume(2, connect_session("q440-1c", true, 60), false)
            .expect_quiet(2, 700)
    }),
    // [MQTT-4.4.0-1], [MQTT-4.1.0-2]: the Session State (an unacknowledged QoS 1 PUBLISH
    // and a PUBREL awaiting PUBCOMP) survives a broker restart within the expiry interval,
    // and is resent with the original packet ids on resume.
    Case::new(
        "qos_unacked_resent_after_broker_restart",
        &["MQTT-4.4.0-1", "MQTT-4.1.0-2"],
        |s| {
            s.resume(0, connect_session("q440-1r", true, 60), false)
                .subscribe(0, 1, "q440/1r/#", QoS::ExactlyOnce)
                .connect(1, "q440-1rp")
                .pub2(1, "q440/1r/a", b"two", 1)
                .pub1(1, "q440/1r/b", b"one", 2, PubAckReason::Success)
                .expect(0, publish("q440/1r/a", b"two", QoS::ExactlyOnce, 1))
                .expect(0, publish("q440/1r/b", b"one", QoS::AtLeastOnce, 2))
                .send(0, pubrec(1))
                .expect(0, pubrel(1))
                .restart()
                .resume(2, connect_session("q440-1r", false, 60), true)
                .expect(2, pubrel(1))
                .expect(2, out("q440/1r/b", b"one", QoS::AtLeastOnce, 2, true))
                .send(2, pubcomp(1))
                .send(2, puback(2))
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-4.3.3-10]: the inbound QoS 2 state survives a broker restart too: the
    // publisher's resent PUBLISH (DUP 1) after the restart gets PUBREC and is not delivered
    // a second time; its PUBREL then completes normally.
    Case::new(
        "qos_2_inbound_state_survives_restart",
        &["MQTT-4.3.3-10"],
        |s| {
            s.resume(0, connect_session("q433-10x", true, 60), false)
                .subscribe(0, 1, "q433/10x", QoS::AtLeastOnce)
                .resume(1, connect_session("q433-10xp", true, 60), false)
                .send(1, publish("q433/10x", b"once", QoS::ExactlyOnce, 5))
                .expect(1, pubrec(5))
                .expect(0, publish("q433/10x", b"once", QoS::AtLeastOnce, 1))
                .send(0, puback(1))
                .ping(0)
                .restart()
                .resume(2, connect_session("q433-10x", false, 60), true)
                .resume(3, connect_session("q433-10xp", false, 60), true)
                .send(3, resent("q433/10x", b"once", QoS::ExactlyOnce, 5))
                .expect(3, pubrec(5))
                .send(3, pubrel(5))
                .expect(3, pubcomp(5))
                .expect_quiet(2, 500)
        },
    ),
    // [MQTT-4.4.0-1]: on resume, PUBREL and PUBLISH resends go out with their original
    // Packet Identifiers, in the order of the original PUBLISH packets (as [MQTT-4.6.0-1]
    // asks of a Client).
    Case::new(
        "order_resend_publish_and_pubrel_in_original_order",
        &["MQTT-4.4.0-1"],
        |s| {
            s.resume(0, connect_session("o460-1m", true, 60), false)
                .subscribe(0, 1, "o460/1m", QoS::ExactlyOnce)
                .connect(1, "o460-1mp")
                .pub2(1, "o460/1m", b"a", 1)
                .pub1(1, "o460/1m", b"b", 2, PubAckReason::Success)
                .pub2(1, "o460/1m", b"c", 3)
                .expect(0, publish("o460/1m", b"a", QoS::ExactlyOnce, 1))
                .expect(0, publish("o460/1m", b"b", QoS::AtLeastOnce, 2))
                .expect(0, publish("o460/1m", b"c", QoS::ExactlyOnce, 3))
                .send(0, pubrec(1))
                .expect(0, pubrel(1))
                .hangup(0)
                .resume(2, connect_session("o460-1m", false, 60), true)
                .expect(2, pubrel(1))
                .expect(2, out("o460/1m", b"b", QoS::AtLeastOnce, 2, true))
                .expect(2, out("o460/1m", b"c", QoS::ExactlyOnce, 3, true))
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-4.9.0-1], [MQTT-4.4.0-1], [MQTT-4.6.0-5]: on resume the quota starts again from
    // the Receive Maximum (1): the unacknowledged message is resent first, the queued ones
    // follow one at a time, in publish order.
    Case::new(
        "flow_resume_resends_then_queue_within_quota",
        &["MQTT-4.9.0-1", "MQTT-4.4.0-1", "MQTT-4.6.0-5"],
        |s| {
            s.resume(0, receive_max("f490-r", 1), false)
                .subscribe(0, 1, "f490/r", QoS::AtLeastOnce)
                .connect(1, "f490-rp")
                .pub1(1, "f490/r", b"1", 1, PubAckReason::Success)
                .pub1(1, "f490/r", b"2", 2, PubAckReason::Success)
                .pub1(1, "f490/r", b"3", 3, PubAckReason::Success)
                .expect(0, publish("f490/r", b"1", QoS::AtLeastOnce, 1))
                .hangup(0)
                .resume(
                    2,
                    {
                        let mut c = receive_max("f490-r", 1);
                        c.clean_start = false;
                        c
                    },
                    true,
                )
                .expect(2, out("f490/r", b"1", QoS::AtLeastOnce, 1, true))
                .expect_quiet(2, 500)
                .send(2, puback(1))
                .expect(2, publish("f490/r", b"2", QoS::AtLeastOnce, 2))
                .send(2, puback(2))
                .expect(2, publish("f490/r", b"3", QoS::AtLeastOnce, 3))
        },
    ),
    // [MQTT-4.9.0-2]: the Server's own cap on messages in flight (max_inflight = 1) bounds
    // its send quota when the client sets no Receive Maximum (65,535).
    Case::new(
        "flow_server_inflight_cap_bounds_quota",
        &["MQTT-4.9.0-2"],
        |s| {
            s.connect(0, "f490-c")
                .subscribe(0, 1, "f490/c", QoS::AtLeastOnce)
                .connect(1, "f490-cp")
                .pub1(1, "f490/c", b"1", 1, PubAckReason::Success)
                .pub1(1, "f490/c", b"2", 2, PubAckReason::Success)
                .expect(0, publish("f490/c", b"1", QoS::AtLeastOnce, 1))
                .expect_quiet(0, 500)
                .send(0, puback(1))
                .expect(0, publish("f490/c", b"2", QoS::AtLeastOnce, 2))
        },
    )
    .config("[broker]\nmax_inflight = 1\n"),
    // [MQTT-4.9.0-1], [MQTT-4.9.0-2] from the client's side: the Server announces its Receive
    // Maximum (1) in CONNACK; a client that sends a second QoS 2 PUBLISH before completing
    // the first exceeds it, and the Server disconnects with 0x93 Receive Maximum exceeded.
    Case::new(
        "flow_client_exceeding_receive_maximum_disconnected",
        &["MQTT-4.9.0-1", "MQTT-4.9.0-2"],
        |s| {
            s.open(0)
                .send(0, connect("f490-x"))
                .expect_that(0, "CONNACK 0x00 with Receive Maximum 1", |p| match p {
                    Packet::ConnAck(a)
                        if a.reason.as_u8() == 0
                            && a.properties.receive_maximum.map(NonZeroU16::get) == Some(1) =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                })
                .send(0, publish("f490/x", b"1", QoS::ExactlyOnce, 1))
                .expect(0, pubrec_with(1, PubRecReason::NoMatchingSubscribers))
                .send(0, publish("f490/x", b"2", QoS::ExactlyOnce, 2))
                .expect_disconnect(0, DisconnectReason::ReceiveMaximumExceeded)
        },
    )
    .config("[broker]\nreceive_maximum = 1\n"),
    // [MQTT-4.1.0-2]: the Session Expiry Interval keeps running across a broker restart: a
    // 2 s session closed before the broker stops is gone when it starts again 2.5 s later
    // (an interval restarted at start-up would still hold it).
    Case::new(
        "session_expiry_counts_across_restart",
        &["MQTT-4.1.0-2"],
        |s| {
            s.resume(0, connect_session("s410-r", true, 2), false)
                .subscribe(0, 1, "s410/r", QoS::AtLeastOnce)
                .bye(0)
                .restart_after(2500)
                .connect(1, "s410-rp")
                .pub1(1, "s410/r", b"late", 1, PubAckReason::NoMatchingSubscribers)
                .resume(2, connect_session("s410-r", false, 60), false)
                .expect_quiet(2, 300)
        },
    ),
    // [MQTT-4.3.3-12]: a completed QoS 2 packet id stays free after a broker restart: the
    // publisher's next PUBLISH with it is a new message and is delivered.
    Case::new(
        "qos_2_completed_id_is_new_after_restart",
        &["MQTT-4.3.3-12"],
        |s| {
            s.resume(0, connect_session("q433-12r", true, 60), false)
                .subscribe(0, 1, "q433/12r", QoS::AtMostOnce)
                .resume(1, connect_session("q433-12rp", true, 60), false)
                .pub2(1, "q433/12r", b"first", 5)
                .expect(0, publish("q433/12r", b"first", QoS::AtMostOnce, 0))
                .restart()
                .resume(2, connect_session("q433-12r", false, 60), true)
                .resume(3, connect_session("q433-12rp", false, 60), true)
                .send(3, publish("q433/12r", b"second", QoS::ExactlyOnce, 5))
                .expect(3, pubrec(5))
                .expect(2, publish("q433/12r", b"second", QoS::AtMostOnce, 0))
                .send(3, pubrel(5))
                .expect(3, pubcomp(5))
        },
    ),
    // [MQTT-4.4.0-2]: a PUBACK of 0x80 or more acknowledged the message for good: not
    // resent after a broker restart either.
    Case::new(
        "qos_failed_puback_not_resent_after_restart",
        &["MQTT-4.4.0-2"],
        |s| {
            s.resume(0, connect_session("q440-2r", true, 60), false)
                .subscribe(0, 1, "q440/2r", QoS::AtLeastOnce)
                .connect(1, "q440-2rp")
                .pub1(1, "q440/2r", b"x", 1, PubAckReason::Success)
                .expect(0, publish("q440/2r", b"x", QoS::AtLeastOnce, 1))
                .send(0, puback_with(1, PubAckReason::ImplementationSpecificError))
                .ping(0)
                .restart()
                .resume(2, connect_session("q440-2r", false, 60), true)
                .expect_quiet(2, 700)
        },
    ),
    // [MQTT-4.6.0-5]: a message published just after a resume does not overtake the
    // messages queued while the subscriber was away (Receive Maximum 1 keeps them waiting).
    Case::new(
        "order_new_message_does_not_overtake_queue",
        &["MQTT-4.6.0-5"],
        |s| {
            s.resume(0, receive_max("o460-5n", 1), false)
                .subscribe(0, 1, "o460/5n", QoS::AtLeastOnce)
                .bye(0)
                .connect(1, "o460-5np")
                .pub1(1, "o460/5n", b"1", 1, PubAckReason::Success)
                .pub1(1, "o460/5n", b"2", 2, PubAckReason::Success)
                .pub1(1, "o460/5n", b"3", 3, PubAckReason::Success)
                .resume(
                    2,
                    {
                        let mut c = receive_max("o460-5n", 1);
                        c.clean_start = false;
                        c
                    },
                    true,
                )
                .pub1(1, "o460/5n", b"4", 4, PubAckReason::Success)
                .expect(2, publish("o460/5n", b"1", QoS::AtLeastOnce, 1))
                .send(2, puback(1))
                .expect(2, publish("o460/5n", b"2", QoS::AtLeastOnce, 2))
                .send(2, puback(2))
                .expect(2, publish("o460/5n", b"3", QoS::AtLeastOnce, 3))
                .send(2, puback(3))
                .expect(2, publish("o460/5n", b"4", QoS::AtLeastOnce, 4))
                .send(2, puback(4))
                .expect_quiet(2, 200)
        },
    ),
    // [MQTT-4.9.0-1], [MQTT-4.9.0-2], [MQTT-4.4.0-1]: the send quota is set afresh from the
    // Receive Maximum of the new connection: three unacknowledged messages, resumed with
    // Receive Maximum 1, are resent one at a time (original ids, DUP 1), each after the
    // previous one's PUBACK.
    Case::new(
        "flow_resume_resends_within_new_receive_maximum",
        &["MQTT-4.9.0-1", "MQTT-4.9.0-2", "MQTT-4.4.0-1"],
        |s| {
            s.resume(0, receive_max("f490-l", 3), false)
                .subscribe(0, 1, "f490/l", QoS::AtLeastOnce)
                .connect(1, "f490-lp")
                .pub1(1, "f490/l", b"1", 1, PubAckReason::Success)
                .pub1(1, "f490/l", b"2", 2, PubAckReason::Success)
                .pub1(1, "f490/l", b"3", 3, PubAckReason::Success)
                .pub1(1, "f490/l", b"4", 4, PubAckReason::Success)
                .expect(0, publish("f490/l", b"1", QoS::AtLeastOnce, 1))
                .expect(0, publish("f490/l", b"2", QoS::AtLeastOnce, 2))
                .expect(0, publish("f490/l", b"3", QoS::AtLeastOnce, 3))
                .hangup(0)
                .resume(
                    2,
                    {
                        let mut c = receive_max("f490-l", 1);
                        c.clean_start = false;
                        c
                    },
                    true,
                )
                .expect(2, out("f490/l", b"1", QoS::AtLeastOnce, 1, true))
                .expect_quiet(2, 500)
                .send(2, puback(1))
                .expect(2, out("f490/l", b"2", QoS::AtLeastOnce, 2, true))
                .expect_quiet(2, 300)
                .send(2, puback(2))
                .expect(2, out("f490/l", b"3", QoS::AtLeastOnce, 3, true))
                .send(2, puback(3))
                .expect(2, publish("f490/l", b"4", QoS::AtLeastOnce, 4))
                .send(2, puback(4))
                .expect_quiet(2, 200)
        },
    ),
    // [MQTT-4.9.0-2], [MQTT-4.4.0-1]: the PUBREL resends are not PUBLISH packets: on a
    // resume with Receive Maximum 1 both go out at once, in order, and the PUBLISH resend
    // follows within the quota.
    Case::new(
        "flow_resume_pubrel_resends_not_held_back",
        &["MQTT-4.9.0-2", "MQTT-4.4.0-1"],
        |s| {
            s.resume(0, receive_max("f490-m", 3), false)
                .subscribe(0, 1, "f490/m", QoS::ExactlyOnce)
                .connect(1, "f490-mp")
                .pub2(1, "f490/m", b"1", 1)
                .pub2(1, "f490/m", b"2", 2)
                .pub2(1, "f490/m", b"3", 3)
                .expect(0, publish("f490/m", b"1", QoS::ExactlyOnce, 1))
                .expect(0, publish("f490/m", b"2", QoS::ExactlyOnce, 2))
                .expect(0, publish("f490/m", b"3", QoS::ExactlyOnce, 3))
                .send(0, pubrec(1))
                .expect(0, pubrel(1))
                .send(0, pubrec(2))
                .expect(0, pubrel(2))
                .hangup(0)
                .resume(
                    2,
                    {
                        let mut c = receive_max("f490-m", 1);
                        c.clean_start = false;
                        c
                    },
                    true,
                )
                .expect(2, pubrel(1))
                .expect(2, pubrel(2))
                .send(2, pubcomp(1))
                .send(2, pubcomp(2))
                .expect(2, out("f490/m", b"3", QoS::ExactlyOnce, 3, true))
                .send(2, pubrec(3))
                .expect(2, pubrel(3))
                .send(2, pubcomp(3))
                .expect_quiet(2, 200)
        },
    ),
    // [MQTT-4.4.0-1]: a resume that takes over a still-open connection gets the resends too.
    Case::new("qos_unacked_resent_on_takeover", &["MQTT-4.4.0-1"], |s| {
        s.resume(0, connect_session("q440-1t", true, 60), false)
            .subscribe(0, 1, "q440/1t", QoS::AtLeastOnce)
            .connect(1, "q440-1tp")
            .pub1(1, "q440/1t", b"x", 1, PubAckReason::Success)
            .expect(0, publish("q440/1t", b"x", QoS::AtLeastOnce, 1))
            .resume(2, connect_session("q440-1t", false, 60), true)
            .expect(2, out("q440/1t", b"x", QoS::AtLeastOnce, 1, true))
            .expect_disconnect(0, DisconnectReason::SessionTakenOver)
    }),
    // [MQTT-4.4.0-1]: topic aliases belong to a Network Connection: the resend on a new
    // connection carries the full topic name, not the alias the first connection set up.
    Case::new(
        "qos_resend_does_not_reuse_old_topic_alias",
        &["MQTT-4.4.0-1"],
        |s| {
            let mut first = connect_session("q440-1a", true, 60);
            first.properties.topic_alias_maximum = Some(5);
            let mut again = first.clone();
            again.clean_start = false;
            s.resume(0, first, false)
                .subscribe(0, 1, "q440/1a", QoS::AtLeastOnce)
                .connect(1, "q440-1ap")
                .pub1(1, "q440/1a", b"x", 1, PubAckReason::Success)
                .expect_that(0, "PUBLISH id 1", |p| match p {
                    Packet::Publish(p) if p.delivery.packet_id().map(PacketId::get) == Some(1) => {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                })
                .hangup(0)
                .resume(2, again, true)
                .expect_that(2, "PUBLISH id 1, DUP, with its topic name", |p| match p {
                    Packet::Publish(p)
                        if p.delivery.packet_id().map(PacketId::get) == Some(1)
                            && p.dup
                            && p.topic() == "q440/1a"
                            && p.payload() == b"x" =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                })
        },
    ),
];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[
    na(
        "MQTT-4.5.0-2",
        "binds the Client only: it must acknowledge every PUBLISH it receives whether or not it \
         processes the message; whether it processed it cannot be seen from the Server, and no \
         Server reaction is specified",
    ),
    na(
        "MQTT-4.6.0-1",
        "binds the Client only (§4.6 lists rules for the Client): it resends PUBLISH packets in \
         their original order. The Server's resends are under MQTT-4.4.0-1: \
         `order_resend_in_original_order`, `order_resend_publish_and_pubrel_in_original_order`",
    ),
    na(
        "MQTT-4.6.0-2",
        "binds the Client only: it sends PUBACKs in the order of the PUBLISH packets. The \
         Server's PUBACKs are under MQTT-4.3.2-4: `order_puback_in_publish_order`",
    ),
    na(
        "MQTT-4.6.0-3",
        "binds the Client only: it sends PUBRECs in the order of the PUBLISH packets. The \
         Server's PUBRECs are under MQTT-4.3.3-8: `order_pubrec_in_publish_order`",
    ),
    na(
        "MQTT-4.6.0-4",
        "binds the Client only: it sends PUBRELs in the order of the PUBRECs. The Server's \
         PUBRELs are under MQTT-4.3.3-4: `order_pubrel_in_pubrec_order`",
    ),
];
