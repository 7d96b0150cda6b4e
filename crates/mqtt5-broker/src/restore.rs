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
use std::time::{Duration, Instant};

use mqtt5_codec::QoS;
use mqtt5_store::{DeliveryState, Recovered, StoredMessage};

use crate::broker::{Broker, Timer};
use crate::session::{Delivery, InFlight, Message, Stage, SubEntry};
use crate::topic_tree::SessionId;
use crate::types::Error;

impl Broker {
    /// Rebuilds sessions, subscriptions, queues, in-flight windows and retained messages from
    /// a store's [`Recovered`] state. Call it once, at start-up, before any connection.
    ///
    /// Wall-clock times in the store (expiry instants) are mapped onto `now` with the
    /// `wall_clock_ms` the broker was created with.
    ///
    /// # Errors
    /// [`Error::NotFresh`] when the broker already has sessions or connections.
    pub fn restore(&mut self, now: Instant, recovered: Recovered) -> Result<(), Error> {
        if !self.conns.is_empty() || !self.by_client.is_empty() || !self.retained.is_empty() {
            return Err(Error::NotFresh);
        }
        let wall_now = self.wall_ms(now);
        let instant_of = |ms: u64| now + Duration::from_millis(ms.saturating_sub(wall_now));
        let mut messages: BTreeMap<u64, Arc<Message>> = BTreeMap::new();
        for (
            id,
            StoredMessage {
                message,
                expires_at_ms,
            },
        ) in recovered.messages
        {
            self.last_message_id = self.last_message_id.max(id);
            messages.insert(
                id,
                Arc::new(Message::new(
                    message,
                    expires_at_ms.map(instant_of),
                    None,
                    id,
                )),
            );
        }
        for (topic, stored) in recovered.retained {
            let expires_at = stored.expires_at_ms.map(instant_of);
            if expires_at.is_some() {
                self.retained_expiring = true;
            }
            let id = self.next_message_id();
            // Restored whatever the limits say now: they apply to new retained messages.
            self.retained_insert(
                &topic,
                Arc::new(Message::new(stored.message, expires_at, None, id)),
            );
        }
        let mut due_now = Vec::new();
        for (client_id, stored) in recovered.sessions {
            let client: Arc<str> = Arc::from(client_id.as_str());
            let (sid, _) = self.session_for(&client, stored.record.protocol);
            let Some(s) = self.session_mut(sid) else {
                continue;
            };
            s.expiry_interval = stored.record.expiry_interval;
            s.owner = stored
                .record
                .owner
                .as_deref()
                .and_then(crate::types::Identity::from_stored);
            s.will = stored.record.will.map(Box::new);
            s.stored = true;
            for (filter, sub) in &stored.subscriptions {
                let entry = SubEntry {
                    options: sub.options,
                    identifier: sub.identifier.and_then(NonZeroU32::new),
                };
                s.subscriptions.insert(filter.clone(), entry);
                s.subscription_bytes += filter.len();
            }
            s.incoming_qos2 = stored.incoming_qos2.into_iter().collect();
            let mut max_seq = None;
            for (seq, d) in stored.deliveries {
                max_seq = Some(seq);
                let Some(message) = messages.get(&d.message_id) else {
                    continue;
                };
                message
                    .stored_refs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let delivery = Delivery {
                    message: message.clone(),
                    qos: QoS::from_u8(d.qos).unwrap_or(QoS::AtLeastOnce),
                    retain: d.retain,
                    subscription_ids: d
                        .subscription_ids
                        .iter()
                        .filter_map(|&i| NonZeroU32::new(i))
                        .collect(),
                    shared: None,
                    seq: Some(seq),
                };
                let Some((s, total)) = self.held(sid) else {
                    continue;
                };
                match d.state {
                    DeliveryState::Queued => s.push_queued(delivery, total),
                    DeliveryState::Sent(id) | DeliveryState::Released(id) => {
                        let stage = if matches!(d.state, DeliveryState::Sent(_)) {
                            Stage::Sent
                        } else {
                            Stage::Released
                        };
                        let f = InFlight {
                            order: seq,
                            delivery,
                            stage,
                            resend: false,
                        };
                        s.insert_inflight(id, f, total);
                    }
                }
            }
            let Some(s) = self.session_mut(sid) else {
                continue;
            };
            s.next_seq = max_seq.map_or(0, |m| m + 1);
            let expiring = s.queue().iter().any(|d| d.message.expires_at.is_some());
            let subs: Vec<(String, SubEntry)> = s
                .subscriptions
                .iter()
                .map(|(f, e)| (f.clone(), *e))
                .collect();
            if expiring {
                self.expiring_sessions.insert(sid);
            }
            for (filter, entry) in subs {
                self.tree.insert(&filter, sid, entry);
            }
            self.schedule_restored(
                now,
                sid,
                stored.record.expires_at_ms.map(instant_of),
                &mut due_now,
            );
        }
        for (sid, expired) in due_now {
            if expired {
                self.end_session(now, sid);
            } else {
                self.publish_will(now, sid);
            }
        }
        // Stored messages that no delivery refers to any more are forgotten.
        for message in messages.values() {
            if message
                .stored_refs
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
            {
                self.persist(mqtt5_store::StoreOp::MessageDeleted { id: message.id });
            }
        }
        if !self.expiring_sessions.is_empty() || self.retained_expiring {
            self.note_expiry(now);
        }
        self.flush_ops();
        Ok(())
    }

    /// Timers of one restored, offline session: its expiry and its will.
    fn schedule_restored(
        &mut self,
        now: Instant,
        sid: SessionId,
        expires_at: Option<Instant>,
        due_now: &mut Vec<(SessionId, bool)>,
    ) {
        let Some(s) = self.session_mut(sid) else {
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
            self.timers.insert((at, Timer::SessionExpiry(sid)));
        }
        // A will still stored is due: its connection ended when the broker stopped.
        let Some(s) = self.session_mut(sid) else {
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
                self.timers.insert((at, Timer::Will(sid)));
            }
        }
    }
}
