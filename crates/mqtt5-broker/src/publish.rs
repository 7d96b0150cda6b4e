//! PUBLISH from clients, the QoS flows in both directions, and wills.
//!
//! Inbound QoS 2 (MQTT 5 §4.3.3), as the broker sees it:
//!
//! ```text
//!  PUBLISH(id) --> route once, remember id --> PUBREC(id)
//!  PUBLISH(id, DUP) while id remembered ----> PUBREC(id), not routed again
//!  PUBREL(id) --> forget id -----------------> PUBCOMP(id)
//! ```
//!
//! Outbound, the client's PUBACK, PUBREC and PUBCOMP move a delivery through its window
//! (`session.rs`); each frees room that [`crate::deliver::pump`] fills from the queue. An
//! acknowledgement of another type than the flow waits for (PUBREC for QoS 1, PUBACK for
//! QoS 2, PUBREC after PUBREL, ...) is a protocol error; one for an unknown packet identifier
//! is not (PUBREC gets PUBREL 0x92, the others are ignored).

use std::time::Instant;

use mqtt5_codec::properties::PublishProperties;
use mqtt5_codec::{
    Delivery as Wire, Packet, PacketId, PayloadFormat, PubAck, PubAckReason, PubComp,
    PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason, Publish, QoS, Will,
};
use mqtt5_store::{DeliveryState, StoreOp};

use crate::auth::ClientInfo;
use crate::deliver::{ingest, pump, retained_refused};
use crate::durable::{forget_delivery, resave_session, update_delivery};
use crate::router::is_broker_topic;
use crate::session::{SessionId, Stage, message_size};
use crate::state::Core;
use crate::types::ConnId;
use crate::violation::{Ack, Violation};

/// The PUBLISH a will becomes, and its QoS (MQTT 5 §3.1.3.2: its properties are passed on).
/// Each delivery gets its own packet identifier: the message has none.
pub(crate) fn will_to_publish(will: &Will) -> (Publish, QoS) {
    let mut p = Publish::new(will.topic.clone(), will.payload.clone());
    p.retain = will.retain;
    let w = &will.properties;
    if !w.is_empty() {
        p.properties = PublishProperties {
            payload_format_indicator: w.payload_format_indicator,
            message_expiry_interval: w.message_expiry_interval,
            content_type: w.content_type.clone(),
            response_topic: w.response_topic.clone(),
            correlation_data: w.correlation_data.clone(),
            user_properties: w.user_properties.clone(),
            ..PublishProperties::default()
        }
        .into();
    }
    (p, will.qos)
}

/// How many levels a topic name or filter has.
pub(crate) fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// An inbound PUBLISH on a connected connection.
///
/// # Errors
/// A [`Violation`] that ends the connection.
pub(crate) fn on_publish(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    mut publish: Publish,
) -> Result<(), Violation> {
    let Some(c) = core.conns.get(conn) else {
        return Ok(());
    };
    let Some(sid) = c.session else {
        return Ok(());
    };
    let v5 = c.protocol.is_v5();
    core.stats.messages_received += 1;
    if !publish.properties.subscription_identifiers.is_empty() {
        return Err(Violation::SubscriptionIdentifier);
    }
    resolve_alias(core, conn, &mut publish)?;
    let qos = publish.qos();
    if v5 && qos > core.config.maximum_qos {
        return Err(Violation::QosNotSupported);
    }
    if publish.retain && !core.config.retain_available {
        return Err(Violation::RetainNotAvailable);
    }
    match publish.delivery {
        Wire::AtMostOnce => {
            route_inbound(core, now, sid, publish, v5);
        }
        Wire::AtLeastOnce(id) => {
            let mut ack = PubAck::new(id);
            ack.reason = route_inbound(core, now, sid, publish, v5);
            core.send(conn, Packet::PubAck(ack));
        }
        Wire::ExactlyOnce(id) => on_qos2_publish(core, now, conn, sid, id, publish, v5)?,
    }
    Ok(())
}

/// Resolves a Topic Alias (MQTT 5 §3.3.2.3.4): an empty topic takes the one the alias names,
/// a topic with an alias sets it.
fn resolve_alias(core: &mut Core, conn: ConnId, publish: &mut Publish) -> Result<(), Violation> {
    let Some(alias) = publish.properties.topic_alias else {
        return Ok(());
    };
    if alias.get() > core.config.topic_alias_maximum {
        return Err(Violation::TopicAliasTooLarge);
    }
    let Some(c) = core.conns.get_mut(conn) else {
        return Ok(());
    };
    if publish.topic().is_empty() {
        let known = c.aliases.as_ref();
        let topic = known
            .and_then(|a| a.inbound.get(&alias.get()).cloned())
            .ok_or(Violation::TopicAliasUnknown)?;
        publish.set_topic(topic);
    } else {
        c.aliases
            .get_or_insert_with(Box::default)
            .inbound
            .insert(alias.get(), publish.topic_name().detach());
    }
    publish.properties.topic_alias = None;
    Ok(())
}

/// A QoS 2 PUBLISH: routed once per packet identifier until its PUBREL.
fn on_qos2_publish(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    sid: SessionId,
    id: PacketId,
    publish: Publish,
    v5: bool,
) -> Result<(), Violation> {
    let Some(session) = core.sessions.get(sid) else {
        return Ok(());
    };
    if session.incoming_qos2.contains(&id) {
        // [MQTT-4.3.3-10]: already routed; acknowledge again, do not route twice.
        core.send(conn, Packet::PubRec(PubRec::new(id)));
        return Ok(());
    }
    if session.incoming_qos2.len() >= usize::from(core.config.receive_maximum) {
        return Err(Violation::ReceiveMaximumExceeded);
    }
    let reason = PubRecReason::from(route_inbound(core, now, sid, publish, v5));
    if !reason.is_error()
        && let Some(s) = core.sessions.get_mut(sid)
    {
        s.incoming_qos2.insert(id);
        if s.is_persistent() {
            let client_id = s.client_id.to_string();
            core.persist(StoreOp::IncomingQos2 {
                client_id,
                packet_id: id,
                pending: true,
            });
        }
    }
    let mut rec = PubRec::new(id);
    rec.reason = reason;
    core.send(conn, Packet::PubRec(rec));
    Ok(())
}

/// Routes a client's PUBLISH unless something refuses it; returns the acknowledgement's
/// reason. 3.1.1 has no negative acknowledgement: a refused message is dropped quietly and
/// acknowledged as a success.
fn route_inbound(
    core: &mut Core,
    now: Instant,
    sid: SessionId,
    publish: Publish,
    v5: bool,
) -> PubAckReason {
    let qos = publish.qos();
    let outcome = match refusal(core, sid, &publish, v5) {
        Some(reason) => Err(reason),
        None => Ok(ingest(core, now, Some(sid), publish, qos)),
    };
    match outcome {
        Ok(0) if v5 => PubAckReason::NoMatchingSubscribers,
        Ok(_) => PubAckReason::Success,
        Err(_) if !v5 => PubAckReason::Success,
        Err(reason) => reason,
    }
}

/// Why a client's PUBLISH is not routed, if it is not.
fn refusal(core: &mut Core, sid: SessionId, publish: &Publish, v5: bool) -> Option<PubAckReason> {
    let refusable = v5 && publish.qos() != QoS::AtMostOnce;
    if refusable && core.refusing_persistent() {
        // New persistent work is refused while the store is full, or while the queues hold
        // as many bytes as they may.
        return Some(PubAckReason::QuotaExceeded);
    }
    let topic = publish.topic();
    if level_count(topic) > core.config.max_topic_levels {
        // Valid syntax, but deeper than the broker accepts: 0x90 Topic Name invalid.
        return Some(PubAckReason::TopicNameInvalid);
    }
    let session = core.sessions.get(sid)?;
    let info = ClientInfo {
        client_id: &session.client_id,
        username: session.username.as_deref(),
    };
    if is_broker_topic(topic) || !core.access.can_publish(&info, topic) {
        core.stats.denied_publishes += 1;
        return Some(PubAckReason::NotAuthorized);
    }
    let utf8 = publish.properties.payload_format_indicator == Some(PayloadFormat::Utf8);
    if v5 && utf8 && core::str::from_utf8(publish.payload()).is_err() {
        // [MQTT-3.3.2-4] allows the check; 0x99 Payload format invalid.
        return Some(PubAckReason::PayloadFormatInvalid);
    }
    if refusable && publish.retain && !publish.payload().is_empty() {
        let size = message_size(publish);
        if !core.router.retained_fits(&core.config, topic, size) {
            // The retained store is at its limits: refused, not delivered.
            retained_refused(core, topic, size);
            return Some(PubAckReason::QuotaExceeded);
        }
    }
    None
}

/// PUBREL from the client: the QoS 2 flow of `packet_id` completes.
pub(crate) fn on_pubrel(core: &mut Core, conn: ConnId, packet_id: PacketId) {
    let Some(sid) = core.conns.session_of(conn) else {
        return;
    };
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    let known = s.incoming_qos2.remove(&packet_id);
    if known && s.is_persistent() {
        let client_id = s.client_id.to_string();
        core.persist(StoreOp::IncomingQos2 {
            client_id,
            packet_id,
            pending: false,
        });
    }
    let mut comp = PubComp::new(packet_id);
    if !known {
        comp.reason = PubCompReason::PacketIdentifierNotFound;
    }
    core.send(conn, Packet::PubComp(comp));
}

/// What the flow of the message in flight to `sid` under `id` waits for, if one is.
fn awaiting(core: &Core, sid: SessionId, id: PacketId) -> Option<Ack> {
    let f = core.sessions.get(sid)?.inflight().get(&id)?;
    Some(match (f.delivery.qos, f.stage) {
        (QoS::ExactlyOnce, Stage::Sent) => Ack::Received,
        (QoS::ExactlyOnce, Stage::Released) => Ack::Complete,
        _ => Ack::Acknowledged,
    })
}

/// An acknowledgement `got` for the message in flight under `id`: whether its flow waits for
/// one of that type (`false` for an unknown packet identifier, which is no violation).
///
/// # Errors
/// [`Violation::WrongAcknowledgement`] when the flow waits for another type.
fn expected(core: &Core, sid: SessionId, id: PacketId, got: Ack) -> Result<bool, Violation> {
    match awaiting(core, sid, id) {
        None => Ok(false),
        Some(awaiting) if awaiting == got => Ok(true),
        Some(awaiting) => Err(Violation::WrongAcknowledgement { got, awaiting }),
    }
}

/// Ends the flow of the message in flight to `sid` under `id`: it is acknowledged.
fn complete(core: &mut Core, sid: SessionId, id: PacketId) {
    if let Some((s, total)) = core.sessions.held(sid)
        && let Some(mut f) = s.remove_inflight(id, total)
    {
        forget_delivery(core, sid, &mut f.delivery, false);
    }
}

/// PUBACK from the client.
///
/// # Errors
/// [`Violation::WrongAcknowledgement`] for a QoS 2 message.
pub(crate) fn on_puback(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    packet_id: PacketId,
) -> Result<(), Violation> {
    let Some(sid) = core.conns.session_of(conn) else {
        return Ok(());
    };
    if expected(core, sid, packet_id, Ack::Acknowledged)? {
        complete(core, sid, packet_id);
    }
    pump(core, now, sid);
    Ok(())
}

/// PUBREC from the client: answer PUBREL, or end the flow on an error code. An unknown packet
/// identifier gets PUBREL 0x92 (none for an error code).
///
/// # Errors
/// [`Violation::WrongAcknowledgement`] for a QoS 1 message, or a QoS 2 one already released.
pub(crate) fn on_pubrec(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    rec: &PubRec,
) -> Result<(), Violation> {
    let Some(sid) = core.conns.session_of(conn) else {
        return Ok(());
    };
    let id = rec.packet_id;
    let known = expected(core, sid, id, Ack::Received)?;
    if rec.reason.is_error() {
        if known {
            complete(core, sid, id);
        }
        pump(core, now, sid);
        return Ok(());
    }
    let mut released = None;
    if known
        && let Some(s) = core.sessions.get_mut(sid)
        && let Some(f) = s.inflight_mut(id)
    {
        f.stage = Stage::Released;
        released = Some(f.delivery.clone());
    }
    if let Some(d) = released {
        update_delivery(core, sid, &d, DeliveryState::Released(id));
    }
    let mut rel = PubRel::new(id);
    if !known {
        rel.reason = PubRelReason::PacketIdentifierNotFound;
    }
    core.send(conn, Packet::PubRel(rel));
    Ok(())
}

/// PUBCOMP from the client.
///
/// # Errors
/// [`Violation::WrongAcknowledgement`] for a QoS 1 message, or a QoS 2 one not released yet.
pub(crate) fn on_pubcomp(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    packet_id: PacketId,
) -> Result<(), Violation> {
    let Some(sid) = core.conns.session_of(conn) else {
        return Ok(());
    };
    if expected(core, sid, packet_id, Ack::Complete)? {
        complete(core, sid, packet_id);
    }
    pump(core, now, sid);
    Ok(())
}

/// Publishes the session's will now, if it still has one. A will is a publication by its
/// client: the access rules apply.
pub(crate) fn publish_will(core: &mut Core, now: Instant, sid: SessionId) {
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    let will_at = s.will_at.take();
    let Some(will) = s.will.take() else {
        if let Some(at) = will_at {
            core.timers.remove(at, crate::timers::Timer::Will(sid));
        }
        return;
    };
    let client = s.client_id.clone();
    let username = s.username.clone();
    if let Some(at) = will_at {
        core.timers.remove(at, crate::timers::Timer::Will(sid));
    }
    let info = ClientInfo {
        client_id: &client,
        username: username.as_deref(),
    };
    if is_broker_topic(will.topic.as_str()) || !core.access.can_publish(&info, will.topic.as_str())
    {
        core.stats.denied_publishes += 1;
        resave_session(core, sid);
        return;
    }
    let (publish, qos) = will_to_publish(&will);
    core.stats.messages_received += 1;
    ingest(core, now, Some(sid), publish, qos);
    resave_session(core, sid);
}
