//! Outbound messages: routing a message to the sessions whose subscriptions match, the
//! retained store, and each session's queue and in-flight window.
//!
//! ```text
//!  ingest --> route --+--> deliver --+--(window has room)--> send_new --> PUBLISH(id)
//!      |              |              +--(congested, window full, offline)--> enqueue (bounded)
//!      +--> retain    +--> one member of each matching shared group
//!  pump: acknowledgements and drained buffers move queued deliveries into the window
//! ```

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt5_codec::{Delivery as Wire, Packet, PacketId, PubRel, Publish, QoS, TopicName};
use mqtt5_store::{DeliveryState, StoreOp};

use crate::config::QueuePolicy;
use crate::durable::{forget_delivery, record_delivery};
use crate::session::{
    DELIVERY_OVERHEAD, Delivery, InFlight, Message, SessionId, Stage, SubEntry, message_size,
};
use crate::state::Core;
use crate::topic_tree::Match;
use crate::types::{ConnId, Notice};

/// The members of a shared group, as the tree lists them.
type Members = Vec<(SessionId, SubEntry)>;

/// The targets of a message: ordinary subscriptions merged per session, and the matching
/// shared groups (their whole filters and members).
type Targets = (Vec<(SessionId, Target)>, Vec<(Arc<str>, Members)>);

/// One target of a routed message, before it becomes a [`Delivery`].
struct Target {
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<NonZeroU32>,
    shared: Option<Arc<str>>,
}

/// Routes a message published at `qos` to every matching subscription, and keeps it if it is
/// retained. Returns how many sessions it went to.
pub(crate) fn ingest(
    core: &mut Core,
    now: Instant,
    origin: Option<SessionId>,
    mut publish: Publish,
    qos: QoS,
) -> usize {
    let expires_at = publish
        .properties
        .message_expiry_interval
        .map(|s| now + Duration::from_secs(u64::from(s)));
    // A message kept beyond this call (in queues, windows or the retained store) is detached
    // from the read buffer it came in, once: the queues and the store share that copy.
    if qos != QoS::AtMostOnce || publish.retain {
        publish = publish.detach();
    }
    if publish.retain && !core.storage_full {
        set_retained(core, &publish, qos, expires_at);
    }
    let id = core.next_message_id();
    let message = Arc::new(Message::new(publish, qos, expires_at, origin, id));
    route(core, now, message)
}

/// `$SYS` messages: retained, routed, never persisted.
pub(crate) fn ingest_sys(core: &mut Core, now: Instant, publish: Publish) {
    let topic = publish.topic().to_owned();
    let id = core.next_message_id();
    let message = Arc::new(Message::new(publish, QoS::AtMostOnce, None, None, id));
    core.router.retain(&topic, message.clone());
    route(core, now, message);
}

/// Counts and reports a retained message that was not kept: the store is at its limits.
pub(crate) fn retained_refused(core: &mut Core, topic: &str, size: usize) {
    core.stats.retained_refused += 1;
    core.notice(Notice::RetainedRefused {
        topic: topic.to_owned(),
        bytes: size,
    });
}

/// Keeps (or clears) the retained message of a PUBLISH with the RETAIN flag, already detached.
fn set_retained(core: &mut Core, publish: &Publish, qos: QoS, expires_at: Option<Instant>) {
    let topic = publish.topic().to_owned();
    if publish.payload().is_empty() {
        // [MQTT-3.3.1-6], [MQTT-3.3.1-7]: an empty retained payload clears; it is not stored.
        if core.router.unretain(&topic).is_some() {
            core.persist(StoreOp::RetainCleared { topic });
        }
        return;
    }
    let size = message_size(publish);
    if !core.router.retained_fits(&core.config, &topic, size) {
        // Delivered, but not kept: the retained store is at its limits.
        retained_refused(core, &topic, size);
        return;
    }
    // [MQTT-3.3.1-5]: replaces any earlier retained message on the topic.
    let expires_at_ms = expires_at.map(|at| core.wall_ms(at));
    core.persist(StoreOp::RetainSet {
        message: publish.clone(),
        qos,
        expires_at_ms,
    });
    let id = core.next_message_id();
    if let Some(at) = expires_at {
        core.timers.note_expiry(at);
    }
    let message = Arc::new(Message::new(publish.clone(), qos, expires_at, None, id));
    core.router.retain(&topic, message);
}

/// Delivers a message to its subscribers. Overlapping subscriptions of one session give one
/// delivery, at the highest QoS granted, with every Subscription Identifier
/// (`[MQTT-3.3.4-2]`, `[MQTT-3.3.4-3]`); each matching shared group gives one delivery to one
/// of its members that may read the topic (§4.8.2).
pub(crate) fn route(core: &mut Core, now: Instant, message: Arc<Message>) -> usize {
    let (mut targets, shared) = matching_targets(core, &message);
    let topic = message.publish.topic();
    for (filter, members) in shared {
        match pick_member(core, &members, None, topic) {
            Some((sid, entry)) => targets.push((
                sid,
                Target {
                    qos: entry.options.qos,
                    retain_as_published: entry.options.retain_as_published,
                    ids: entry.identifier.into_iter().collect(),
                    shared: Some(filter),
                },
            )),
            // No member may read the topic: the group gets nothing.
            None => core.stats.denied_deliveries += 1,
        }
    }
    let mut delivered = 0;
    for (sid, t) in targets {
        if !core.may_receive(sid, topic) {
            continue;
        }
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(t.qos),
            // [MQTT-3.3.1-12], [MQTT-3.3.1-13]
            retain: t.retain_as_published && message.publish.retain,
            subscription_ids: t.ids,
            shared: t.shared,
            seq: None,
        };
        deliver(core, now, sid, delivery);
        delivered += 1;
    }
    delivered
}

/// The ordinary subscriptions that match, merged per session in session order (so that tests
/// and replays see the same sequence), and the matching shared groups.
fn matching_targets(core: &Core, message: &Message) -> Targets {
    // One entry per matching subscription, then merged per session: no map per message.
    let mut targets: Vec<(SessionId, Target)> = Vec::new();
    let mut shared: Vec<(Arc<str>, Members)> = Vec::new();
    core.router
        .for_each_match(message.publish.topic(), |m| match m {
            Match::Direct { key, value } => {
                if value.options.no_local && message.origin == Some(key) {
                    return; // [MQTT-3.8.3-3]
                }
                targets.push((
                    key,
                    Target {
                        qos: value.options.qos,
                        retain_as_published: value.options.retain_as_published,
                        ids: value.identifier.into_iter().collect(),
                        shared: None,
                    },
                ));
            }
            Match::Shared {
                filter, members, ..
            } => {
                shared.push((Arc::from(filter), members.to_vec()));
            }
        });
    targets.sort_by_key(|(sid, _)| *sid);
    targets.dedup_by(|(sid, later), (kept_sid, kept)| {
        if sid != kept_sid {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain_as_published |= later.retain_as_published;
        kept.ids.append(&mut later.ids);
        true
    });
    (targets, shared)
}

/// Picks a shared-group member for a message on `topic`: round robin among the members that
/// may read it, preferring connected ones. `None` when no member may read it.
fn pick_member(
    core: &mut Core,
    members: &[(SessionId, SubEntry)],
    except: Option<SessionId>,
    topic: &str,
) -> Option<(SessionId, SubEntry)> {
    if members.is_empty() {
        return None;
    }
    let start = core.router.next_share_start(members.len());
    let rotated = members
        .iter()
        .cycle()
        .skip(start)
        .take(members.len())
        .filter(|(sid, _)| Some(*sid) != except);
    let mut fallback = None;
    for &(sid, entry) in rotated {
        if !core.may_receive(sid, topic) {
            continue;
        }
        let online = core.sessions.get(sid).is_some_and(|s| s.conn.is_some());
        if online {
            return Some((sid, entry));
        }
        fallback.get_or_insert((sid, entry));
    }
    fallback
}

/// Hands a session's shared-subscription deliveries (in flight or queued) to other members of
/// their groups, when it loses its connection.
///
/// A QoS 1 message in flight may go to another member at once (§4.8.2). A QoS 2 message in
/// flight stays: it is completed to this member when it reconnects (`[MQTT-4.8.2-4]`), and
/// goes to no other member if the session ends first (`[MQTT-4.8.2-5]`).
pub(crate) fn hand_over_shared(core: &mut Core, now: Instant, sid: SessionId) {
    let Some((s, total)) = core.sessions.held(sid) else {
        return;
    };
    let ids: Vec<PacketId> = s
        .inflight()
        .iter()
        .filter(|(_, f)| {
            f.delivery.shared.is_some()
                && f.stage == Stage::Sent
                && f.delivery.qos != QoS::ExactlyOnce
        })
        .map(|(&id, _)| id)
        .collect();
    let mut moved: Vec<Delivery> = ids
        .into_iter()
        .filter_map(|id| s.remove_inflight(id, total))
        .map(|f| f.delivery)
        .collect();
    moved.extend(s.take_queued(|d| d.shared.is_some(), total));
    for d in moved {
        hand_over(core, now, sid, d);
    }
}

/// Gives one shared delivery of session `from` to another member of its group.
fn hand_over(core: &mut Core, now: Instant, from: SessionId, mut d: Delivery) {
    let Some(filter) = d.shared.clone() else {
        return;
    };
    let mut members = Vec::new();
    core.router.for_each_match(d.message.publish.topic(), |m| {
        if let Match::Shared {
            filter: f,
            members: list,
            ..
        } = m
            && *f == *filter
        {
            members = list.to_vec();
        }
    });
    // The delivery leaves this session's stored state; the next owner stores it anew.
    forget_delivery(core, from, &mut d, false);
    let topic = d.message.publish.topic().to_owned();
    match pick_member(core, &members, Some(from), &topic) {
        Some((other, entry)) => {
            d.qos = d.message.qos.min(entry.options.qos);
            d.subscription_ids = entry.identifier.into_iter().collect();
            deliver(core, now, other, d);
        }
        None if !members.iter().any(|(m, _)| *m != from) => {}
        None => core.stats.denied_deliveries += 1,
    }
}

/// Sends a delivery now if its session is connected and has room in its window (and its byte
/// allowance), otherwise queues it (bounded), or drops it.
pub(crate) fn deliver(core: &mut Core, now: Instant, sid: SessionId, delivery: Delivery) {
    if delivery.message.expired(now) {
        core.stats.messages_expired += 1;
        return;
    }
    let Some(s) = core.sessions.get(sid) else {
        return;
    };
    let persistent = s.is_persistent();
    let Some(conn) = s.conn else {
        if persistent && (delivery.qos != QoS::AtMostOnce || core.config.queue_qos0_offline) {
            enqueue(core, sid, delivery);
        }
        return;
    };
    if core.conns.is_congested(conn) {
        // The client reads too slowly: the message waits in its (bounded) queue.
        enqueue(core, sid, delivery);
        return;
    }
    if delivery.qos == QoS::AtMostOnce {
        send_publish(core, now, conn, &delivery, None, false);
        return;
    }
    let window = core.conns.get(conn).map_or(0, |c| c.window);
    let need = delivery.message.size + DELIVERY_OVERHEAD;
    let room = s.queue().is_empty()
        && !s.resend_pending
        && s.inflight().len() < usize::from(window)
        && s.held_bytes + need <= core.config.max_queued_bytes
        && !core.queue_memory_full();
    if room {
        send_new(core, now, sid, conn, delivery);
    } else {
        enqueue(core, sid, delivery);
    }
}

/// Puts a delivery in the session's queue. Past the session's limits (messages and bytes) the
/// queue policy drops messages; past the broker-wide byte limit the new one is dropped. Every
/// drop is counted.
fn enqueue(core: &mut Core, sid: SessionId, mut delivery: Delivery) {
    if core.queue_memory_full() {
        core.stats.queue_memory_drops += 1;
        core.stats.messages_dropped += 1;
        forget_delivery(core, sid, &mut delivery, false);
        return;
    }
    if !make_room(core, sid, &mut delivery) {
        return;
    }
    record_delivery(core, sid, &mut delivery, DeliveryState::Queued);
    let expires_at = delivery.message.expires_at;
    if let Some((s, total)) = core.sessions.held(sid) {
        s.push_queued(delivery, total);
    }
    if let Some(at) = expires_at {
        core.sessions.mark_expiring(sid);
        core.timers.note_expiry(at);
    }
}

/// Makes room in session `sid`'s queue for `delivery` by the queue policy; false when the
/// delivery itself is dropped (or its client disconnected as a slow consumer).
fn make_room(core: &mut Core, sid: SessionId, delivery: &mut Delivery) -> bool {
    let need = delivery.message.size + DELIVERY_OVERHEAD;
    loop {
        let Some(s) = core.sessions.get(sid) else {
            return false;
        };
        let full = s.queue().len() >= core.config.max_queued_messages
            || s.held_bytes + need > core.config.max_queued_bytes;
        if !full {
            return true;
        }
        if core.config.disconnect_slow_consumers
            && let Some(conn) = s.conn
        {
            // Configured: a client that cannot keep up is disconnected (once this input is
            // handled) rather than fed with gaps. Its will and session follow the usual rules.
            core.stats.messages_dropped += 1;
            core.out.kick(conn);
            forget_delivery(core, sid, delivery, false);
            return false;
        }
        core.stats.messages_dropped += 1;
        let oldest = match core.config.queue_policy {
            QueuePolicy::DropNewest => None,
            QueuePolicy::DropOldest => core.sessions.held(sid).and_then(|(s, t)| s.pop_queued(t)),
        };
        if let Some(s) = core.sessions.get_mut(sid) {
            s.dropped += 1;
        }
        let Some(mut oldest) = oldest else {
            // Nothing older to drop (or the policy keeps the queue): the new one goes.
            forget_delivery(core, sid, delivery, false);
            return false;
        };
        forget_delivery(core, sid, &mut oldest, false);
    }
}

/// Puts a QoS 1 or 2 delivery in flight and sends it.
fn send_new(core: &mut Core, now: Instant, sid: SessionId, conn: ConnId, mut delivery: Delivery) {
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    let Some(packet_id) = s.allocate_packet_id() else {
        enqueue(core, sid, delivery);
        return;
    };
    // The PUBLISH is queued for the driver before its delivery record: the record joins the
    // pending store ops, which become a Persist ahead of any later packet, and the driver
    // writes nothing of this PUBLISH's acknowledgement path before that Persist commits.
    if !send_publish(core, now, conn, &delivery, Some(packet_id), false) {
        // Too large for the client: discarded as if delivered ([MQTT-3.1.2-25]).
        forget_delivery(core, sid, &mut delivery, false);
        return;
    }
    record_delivery(core, sid, &mut delivery, DeliveryState::Sent(packet_id));
    if let Some((s, total)) = core.sessions.held(sid) {
        let seq = s.take_seq();
        let f = InFlight {
            order: seq,
            delivery,
            stage: Stage::Sent,
            resend: false,
        };
        s.insert_inflight(packet_id, f, total);
    }
}

/// Encodes one delivery for one connection: QoS, DUP, RETAIN, Subscription Identifiers, the
/// remaining Message Expiry Interval (`[MQTT-3.3.2-6]`), and an outbound topic alias. Returns
/// false when the packet is larger than the client accepts (`[MQTT-3.1.2-24]`), in which case
/// nothing is sent.
fn send_publish(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    delivery: &Delivery,
    packet_id: Option<PacketId>,
    dup: bool,
) -> bool {
    let Some(c) = core.conns.get_mut(conn) else {
        return false;
    };
    let original = &delivery.message.publish;
    let mut p = original.clone();
    p.dup = dup;
    p.retain = delivery.retain;
    p.delivery = match (delivery.qos, packet_id) {
        (QoS::AtLeastOnce, Some(id)) => Wire::AtLeastOnce(id),
        (QoS::ExactlyOnce, Some(id)) => Wire::ExactlyOnce(id),
        _ => Wire::AtMostOnce,
    };
    let remaining = delivery
        .message
        .expires_at
        .map(|at| at.saturating_duration_since(now).as_secs());
    if c.protocol.is_v5()
        && (!original.properties.is_empty()
            || !delivery.subscription_ids.is_empty()
            || remaining.is_some())
    {
        let props = &mut *p.properties;
        props.topic_alias = None;
        props
            .subscription_identifiers
            .clone_from(&delivery.subscription_ids);
        if let Some(secs) = remaining {
            props.message_expiry_interval = Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        }
    } else if !original.properties.is_empty() {
        p.properties = Default::default();
    }
    let mut packet = Packet::Publish(p);
    if packet.encoded_len(c.protocol) > c.max_packet_size as usize {
        core.stats.messages_dropped += 1;
        return false;
    }
    // Outbound alias ([MQTT-3.3.2-11]: within the client's Topic Alias Maximum). It only
    // shortens the packet, so the size check above holds.
    if c.alias_max > 0
        && let Packet::Publish(p) = &mut packet
    {
        let topic = original.topic();
        let outbound = &mut c.aliases.get_or_insert_with(Box::default).outbound;
        if let Some(&alias) = outbound.get(topic) {
            p.properties.topic_alias = Some(alias);
            p.set_topic(TopicName::empty());
        } else if outbound.len() < usize::from(c.alias_max) {
            let next = u16::try_from(outbound.len() + 1).unwrap_or(u16::MAX);
            if let Some(alias) = NonZeroU16::new(next) {
                outbound.insert(Arc::from(topic), alias);
                p.properties.topic_alias = Some(alias);
            }
        }
    }
    core.send(conn, packet);
    true
}

/// Fills a connected session's window from its queue: resends first, then queued messages
/// the client may still read.
pub(crate) fn pump(core: &mut Core, now: Instant, sid: SessionId) {
    loop {
        let Some(s) = core.sessions.get(sid) else {
            return;
        };
        let Some(conn) = s.conn else {
            return;
        };
        if core.conns.is_congested(conn) {
            return;
        }
        let window = core.conns.get(conn).map_or(0, |c| usize::from(c.window));
        if s.resend_pending {
            match next_resend(core, sid, window) {
                Resend::Full => return,
                Resend::Id(id) => {
                    resend_publish(core, now, sid, conn, id);
                    continue;
                }
                Resend::None => {}
            }
        }
        let Some(s) = core.sessions.get(sid) else {
            return;
        };
        if s.inflight().len() >= window {
            return;
        }
        let Some(mut d) = core.sessions.held(sid).and_then(|(s, t)| s.pop_queued(t)) else {
            return;
        };
        if d.message.expired(now) {
            core.stats.messages_expired += 1;
            forget_delivery(core, sid, &mut d, false);
            continue;
        }
        if !core.may_receive(sid, d.message.publish.topic()) {
            // The access rules changed while it waited (a reload, or another identity took
            // the session over): it is dropped, and counted.
            core.stats.denied_deliveries += 1;
            forget_delivery(core, sid, &mut d, false);
            continue;
        }
        if d.qos == QoS::AtMostOnce {
            send_publish(core, now, conn, &d, None, false);
        } else {
            send_new(core, now, sid, conn, d);
        }
    }
}

/// What [`pump`] does about resends that did not fit the window on resume.
enum Resend {
    /// The window is full.
    Full,
    /// Resend this one (the oldest).
    Id(PacketId),
    /// None is left.
    None,
}

/// The oldest in-flight PUBLISH still to be resent, if the window has room for it.
fn next_resend(core: &mut Core, sid: SessionId, window: usize) -> Resend {
    let Some(s) = core.sessions.get_mut(sid) else {
        return Resend::Full;
    };
    let on_wire = s.inflight().values().filter(|f| !f.resend).count();
    if on_wire >= window {
        return Resend::Full;
    }
    let next = s
        .inflight()
        .iter()
        .filter(|(_, f)| f.resend)
        .min_by_key(|(_, f)| f.order)
        .map(|(&id, _)| id);
    match next {
        Some(id) => Resend::Id(id),
        None => {
            s.resend_pending = false;
            Resend::None
        }
    }
}

/// After CONNECT resumed a session: resend what was in flight, in order, then the queue
/// (`[MQTT-4.4.0-1]`). Read permission is checked again for every PUBLISH resent.
pub(crate) fn resume(core: &mut Core, now: Instant, sid: SessionId) {
    let Some(conn) = core.sessions.get(sid).and_then(|s| s.conn) else {
        return;
    };
    // The send quota starts again from the client's Receive Maximum ([MQTT-4.9.0-1]):
    // PUBLISH resends beyond it wait for acknowledgements ([MQTT-4.9.0-2]); PUBREL ones are
    // not PUBLISH packets and all go now.
    let window = core.conns.get(conn).map_or(0, |c| usize::from(c.window));
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    s.resend_pending = false;
    let mut on_wire = s
        .inflight()
        .values()
        .filter(|f| f.stage == Stage::Released)
        .count();
    let mut order: Vec<(u64, PacketId)> =
        s.inflight().iter().map(|(&id, f)| (f.order, id)).collect();
    order.sort_unstable();
    for (_, id) in order {
        if drop_denied_inflight(core, sid, id) {
            continue;
        }
        let Some(s) = core.sessions.get_mut(sid) else {
            return;
        };
        let Some(f) = s.inflight_mut(id) else {
            continue;
        };
        match f.stage {
            Stage::Sent if on_wire >= window => {
                f.resend = true;
                s.resend_pending = true;
            }
            Stage::Sent => {
                on_wire += 1;
                resend_publish(core, now, sid, conn, id);
            }
            Stage::Released => core.send(conn, Packet::PubRel(PubRel::new(id))),
        }
    }
    pump(core, now, sid);
}

/// Drops the in-flight PUBLISH `id` of a resuming session when its client may no longer read
/// it (counted); true when it was dropped.
fn drop_denied_inflight(core: &mut Core, sid: SessionId, id: PacketId) -> bool {
    let denied = core
        .sessions
        .get(sid)
        .and_then(|s| s.inflight().get(&id))
        .is_some_and(|f| {
            f.stage == Stage::Sent && !core.may_receive(sid, f.delivery.message.publish.topic())
        });
    if !denied {
        return false;
    }
    core.stats.denied_deliveries += 1;
    if let Some(mut gone) = core
        .sessions
        .held(sid)
        .and_then(|(s, t)| s.remove_inflight(id, t))
    {
        forget_delivery(core, sid, &mut gone.delivery, false);
    }
    true
}

/// Resends the in-flight PUBLISH `id` with DUP and its original packet identifier
/// (`[MQTT-4.4.0-1]`); one now too large for the client is discarded as delivered.
fn resend_publish(core: &mut Core, now: Instant, sid: SessionId, conn: ConnId, id: PacketId) {
    let Some(f) = core.sessions.get_mut(sid).and_then(|s| s.inflight_mut(id)) else {
        return;
    };
    f.resend = false;
    let delivery = f.delivery.clone();
    if !send_publish(core, now, conn, &delivery, Some(id), true)
        && let Some(mut gone) = core
            .sessions
            .held(sid)
            .and_then(|(s, t)| s.remove_inflight(id, t))
    {
        forget_delivery(core, sid, &mut gone.delivery, false);
    }
}
