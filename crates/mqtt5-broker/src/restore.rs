//! Start-up: rebuilding the core from what the store recovered.
//!
//! Every session is offline after a restart. A session that was connected when the broker
//! stopped lost its connection abnormally, so its will falls due after its Will Delay Interval
//! and its expiry starts now. A session that was already offline keeps its expiry instant;
//! if that passed while the broker was down, the session ends at once (will first).
//! Stored deliveries come back where they were: queued, or in flight with their packet
//! identifiers, to be resent with DUP when the client returns (`[MQTT-4.4.0-1]`).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mqtt5_store::{DeliveryState, Recovered, StoreOp, StoredMessage, StoredSession};

use crate::clock::Clock;
use crate::disconnect::end_session;
use crate::publish::publish_will;
use crate::session::{Delivery, InFlight, Message, SessionId, Stage, SubEntry};
use crate::state::Core;
use crate::timers::Timer;
use crate::types::{Error, Identity};

/// Rebuilds sessions, subscriptions, queues, in-flight windows and retained messages from a
/// store's [`Recovered`] state, at `now`.
///
/// # Errors
/// [`Error::NotFresh`] when the core already has sessions, connections or retained messages.
pub(crate) fn restore(core: &mut Core, now: Instant, recovered: Recovered) -> Result<(), Error> {
    if !core.conns.is_empty() || !core.sessions.is_empty() || !core.router.is_empty() {
        return Err(Error::NotFresh);
    }
    let wall_now = core.wall_ms(now);
    let instant_of = |ms: u64| Clock::instant_of(now, wall_now, ms);
    let mut messages: BTreeMap<u64, Arc<Message>> = BTreeMap::new();
    for (
        id,
        StoredMessage {
            message,
            expires_at_ms,
        },
    ) in recovered.messages
    {
        core.seen_message_id(id);
        let qos = message.qos();
        let message = Message::new(message, qos, expires_at_ms.map(instant_of), None, id);
        messages.insert(id, Arc::new(message));
    }
    for (topic, stored) in recovered.retained {
        let expires_at = stored.expires_at_ms.map(instant_of);
        let id = core.next_message_id();
        let qos = stored.message.qos();
        // Restored whatever the limits say now: they apply to new retained messages.
        let message = Message::new(stored.message, qos, expires_at, None, id);
        core.router.retain(&topic, Arc::new(message));
    }
    let mut due_now = Vec::new();
    for (client_id, stored) in recovered.sessions {
        let expires_at = stored.record.expires_at_ms.map(instant_of);
        let sid = restore_session(core, &client_id, stored, &messages);
        schedule_restored(core, now, sid, expires_at, &mut due_now);
    }
    for (sid, expired) in due_now {
        if expired {
            end_session(core, now, sid);
        } else {
            publish_will(core, now, sid);
        }
    }
    // Stored messages that no delivery refers to any more are forgotten.
    for message in messages.values() {
        if message.stored_refs.load(Ordering::Relaxed) == 0 {
            core.persist(StoreOp::MessageDeleted { id: message.id });
        }
    }
    if core.sessions.any_expiring() || core.router.retained_expiring() {
        core.timers.note_expiry(now);
    }
    core.out.flush();
    Ok(())
}

/// One session with its subscriptions, incoming QoS 2 ids and deliveries.
fn restore_session(
    core: &mut Core,
    client_id: &str,
    stored: StoredSession,
    messages: &BTreeMap<u64, Arc<Message>>,
) -> SessionId {
    let client: Arc<str> = Arc::from(client_id);
    let (sid, _) = core.sessions.get_or_create(&client, stored.record.protocol);
    if let Some(s) = core.sessions.get_mut(sid) {
        s.expiry_interval = stored.record.expiry_interval;
        s.owner = stored
            .record
            .owner
            .as_deref()
            .and_then(Identity::from_stored);
        s.will = stored.record.will.map(Box::new);
        s.stored = true;
        for (filter, sub) in &stored.subscriptions {
            let entry = SubEntry {
                options: sub.options,
                identifier: sub.identifier.and_then(NonZeroU32::new),
            };
            s.subscriptions.insert(filter.clone(), entry);
            s.subscription_bytes += filter.len();
            core.router.subscribe(filter, sid, entry);
        }
        s.incoming_qos2 = stored.incoming_qos2;
    }
    let mut max_seq = None;
    let mut expiring = false;
    for (seq, d) in stored.deliveries {
        max_seq = Some(seq);
        let Some(message) = messages.get(&d.message_id) else {
            continue;
        };
        message.stored_refs.fetch_add(1, Ordering::Relaxed);
        expiring |= message.expires_at.is_some();
        let delivery = Delivery {
            message: message.clone(),
            qos: d.qos,
            retain: d.retain,
            subscription_ids: d
                .subscription_ids
                .iter()
                .filter_map(|&i| NonZeroU32::new(i))
                .collect(),
            shared: None,
            seq: Some(seq),
        };
        let Some((s, total)) = core.sessions.held(sid) else {
            continue;
        };
        let (id, stage) = match d.state {
            DeliveryState::Queued => {
                s.push_queued(delivery, total);
                continue;
            }
            DeliveryState::Sent(id) => (id, Stage::Sent),
            DeliveryState::Released(id) => (id, Stage::Released),
        };
        let f = InFlight {
            order: seq,
            delivery,
            stage,
            resend: false,
        };
        s.insert_inflight(id, f, total);
    }
    if let Some(s) = core.sessions.get_mut(sid) {
        s.next_seq = max_seq.map_or(0, |m| m + 1);
    }
    if expiring {
        core.sessions.mark_expiring(sid);
    }
    sid
}

/// Timers of one restored, offline session: its expiry and its will.
fn schedule_restored(
    core: &mut Core,
    now: Instant,
    sid: SessionId,
    expires_at: Option<Instant>,
    due_now: &mut Vec<(SessionId, bool)>,
) {
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    let was_connected = expires_at.is_none();
    let expires_at = match (expires_at, s.expiry_interval) {
        (_, u32::MAX) => None,
        (Some(at), _) => Some(at),
        (None, secs) => Some(now + Duration::from_secs(u64::from(secs))),
    };
    if let Some(at) = expires_at {
        if at <= now {
            due_now.push((sid, true));
            return;
        }
        s.expires_at = Some(at);
        core.timers.insert(at, Timer::SessionExpiry(sid));
    }
    // A will still stored is due: its connection ended when the broker stopped.
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    if let Some(will) = &s.will {
        let delay = if was_connected {
            will.properties.will_delay_interval.unwrap_or(0)
        } else {
            0
        };
        if delay == 0 {
            due_now.push((sid, false));
        } else {
            let at = now + Duration::from_secs(u64::from(delay));
            s.will_at = Some(at);
            core.timers.insert(at, Timer::Will(sid));
        }
    }
}
