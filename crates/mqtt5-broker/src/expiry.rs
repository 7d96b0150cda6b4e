//! What time ends: wills after their delay, offline sessions after their Session Expiry
//! Interval, and messages after their Message Expiry Interval (in offline queues and the
//! retained store).

use std::time::Instant;

use mqtt5_store::StoreOp;

use crate::disconnect::end_session;
use crate::durable::forget_delivery;
use crate::publish::publish_will;
use crate::session::SessionId;
use crate::state::Core;

/// A will's delay ran out: it is published, unless the session was resumed since.
pub(crate) fn will_due(core: &mut Core, now: Instant, sid: SessionId, at: Instant) {
    if core
        .sessions
        .get(sid)
        .is_some_and(|s| s.will_at == Some(at))
    {
        publish_will(core, now, sid);
    }
}

/// An offline session's expiry ran out: it ends, unless it was resumed since.
pub(crate) fn session_expiry_due(core: &mut Core, now: Instant, sid: SessionId, at: Instant) {
    if core
        .sessions
        .get(sid)
        .is_some_and(|s| s.conn.is_none() && s.expires_at == Some(at))
    {
        end_session(core, now, sid);
    }
}

/// Drops expired messages from the queues that hold some, and from the retained store
/// (`[MQTT-3.3.2-5]`); schedules the next sweep for the next expiry.
pub(crate) fn sweep_expired(core: &mut Core, now: Instant) {
    core.timers.sweep_started(now);
    let mut next: Option<Instant> = None;
    let mut earliest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
    for sid in core.sessions.take_expiring() {
        let Some((s, total)) = core.sessions.held(sid) else {
            continue;
        };
        let expired = s.take_queued(|d| d.message.expired(now), total);
        let pending = s.queue().iter().filter_map(|d| d.message.expires_at).min();
        for mut d in expired {
            core.stats.messages_expired += 1;
            forget_delivery(core, sid, &mut d, false);
        }
        if let Some(at) = pending {
            core.sessions.mark_expiring(sid);
            earliest(at);
        }
    }
    if core.router.retained_expiring() {
        let cleared = core.router.drop_expired_retained(
            |m| m.expired(now),
            |m| {
                if let Some(at) = m.expires_at {
                    earliest(at);
                }
            },
        );
        for topic in cleared {
            core.persist(StoreOp::RetainCleared { topic });
        }
    }
    if let Some(at) = next {
        core.timers.note_expiry(at);
    }
}
