//! What a persistent session's QoS 1 and 2 deliveries leave in the store: the message once,
//! and one delivery record per session that references it (Mosquitto 2.1's model), kept in
//! step with the delivery's state.
//!
//! ```text
//!  routed --> Delivery(Queued) --sent--> Delivery(Sent(id)) --PUBREC--> Delivery(Released(id))
//!                   |                          |                               |
//!                   +--------- dropped --------+----- PUBACK / PUBCOMP --------+--> DeliveryDeleted
//! ```
//! The first delivery of a message stores it (`MessageStored`), the last one gone deletes it
//! (`MessageDeleted`). These ops reach the driver before any later packet, so the publisher's
//! PUBACK or PUBREC follows the commit of what it acknowledges.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mqtt5_codec::QoS;
use mqtt5_store::{DeliveryRecord, DeliveryState, StoreOp};

use crate::broker::{Broker, Timer};
use crate::session::Delivery;
use crate::topic_tree::SessionId;

impl Broker {
    /// Stores a new delivery of a persistent session (QoS 1 and 2 only), and its message if
    /// this is the message's first stored delivery.
    pub(crate) fn record_delivery(
        &mut self,
        sid: SessionId,
        d: &mut Delivery,
        state: DeliveryState,
    ) {
        if d.seq.is_some() {
            self.update_delivery(sid, d, state);
            return;
        }
        if d.qos == QoS::AtMostOnce {
            return;
        }
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        if !s.is_persistent() {
            return;
        }
        let seq = s.take_seq();
        d.seq = Some(seq);
        let client_id = s.client_id.to_string();
        if d.message.stored_refs.fetch_add(1, Ordering::Relaxed) == 0 {
            let expires_at_ms = d.message.expires_at.map(|at| self.wall_ms(at));
            self.persist(StoreOp::MessageStored {
                id: d.message.id,
                message: d.message.publish.detach(),
                expires_at_ms,
            });
        }
        self.persist(StoreOp::Delivery(record(client_id, seq, d, state)));
    }

    /// Records a stored delivery's new state.
    pub(crate) fn update_delivery(&mut self, sid: SessionId, d: &Delivery, state: DeliveryState) {
        let Some(seq) = d.seq else {
            return;
        };
        let Some(s) = self.session(sid) else {
            return;
        };
        let client_id = s.client_id.to_string();
        self.persist(StoreOp::Delivery(record(client_id, seq, d, state)));
    }

    /// Forgets a stored delivery (acknowledged, dropped, or moved to another session), and its
    /// message with the last one. `session_gone` skips the delivery's own record when the whole
    /// session has just been deleted.
    pub(crate) fn forget_delivery(&mut self, sid: SessionId, d: &mut Delivery, session_gone: bool) {
        let Some(seq) = d.seq.take() else {
            return;
        };
        if !session_gone && let Some(s) = self.session(sid) {
            let client_id = s.client_id.to_string();
            self.persist(StoreOp::DeliveryDeleted { client_id, seq });
        }
        if d.message.stored_refs.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.persist(StoreOp::MessageDeleted { id: d.message.id });
        }
    }
}

/// The shortest gap between two expiry sweeps.
const SWEEP_SPACING: Duration = Duration::from_secs(1);

impl Broker {
    /// Makes sure an expiry sweep runs by `at` (or a second after the last one, whichever is
    /// later), so that expired messages do not sit in offline queues or the retained store
    /// (`[MQTT-3.3.2-5]`). Message expiry lives in the one timer table.
    pub(crate) fn note_expiry(&mut self, at: Instant) {
        let at = at.max(self.last_sweep + SWEEP_SPACING);
        if self.expiry_sweep.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        if let Some(old) = self.expiry_sweep.replace(at) {
            self.timers.remove(&(old, Timer::ExpirySweep));
        }
        self.timers.insert((at, Timer::ExpirySweep));
    }

    /// Drops expired messages from the queues that hold some, and from the retained store.
    pub(crate) fn sweep_expired(&mut self, now: Instant) {
        self.expiry_sweep = None;
        self.last_sweep = now;
        let mut next: Option<Instant> = None;
        let mut earliest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for sid in core::mem::take(&mut self.expiring_sessions) {
            let Some((s, total)) = self.held(sid) else {
                continue;
            };
            let expired = s.take_queued(|d| d.message.expired(now), total);
            let pending = s.queue().iter().filter_map(|d| d.message.expires_at).min();
            for mut d in expired {
                self.stats.messages_expired += 1;
                self.forget_delivery(sid, &mut d, false);
            }
            if let Some(at) = pending {
                self.expiring_sessions.insert(sid);
                earliest(at);
            }
        }
        if self.retained_expiring {
            let mut cleared = Vec::new();
            let mut still_expiring = false;
            let mut freed = 0;
            self.retained.retain(|m| {
                if m.expired(now) {
                    cleared.push(m.publish.topic().to_owned());
                    freed += m.size;
                    return false;
                }
                if let Some(at) = m.expires_at {
                    still_expiring = true;
                    earliest(at);
                }
                true
            });
            // `$SYS` messages never expire: every one cleared here was counted.
            self.retained_bytes = self.retained_bytes.saturating_sub(freed);
            self.retained_expiring = still_expiring;
            for topic in cleared {
                self.persist(StoreOp::RetainCleared { topic });
            }
        }
        if let Some(at) = next {
            self.note_expiry(at);
        }
    }
}

fn record(client_id: String, seq: u64, d: &Delivery, state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord {
        client_id,
        seq,
        message_id: d.message.id,
        qos: d.qos.as_u8(),
        retain: d.retain,
        subscription_ids: d.subscription_ids.iter().map(|i| i.get()).collect(),
        state,
    }
}
