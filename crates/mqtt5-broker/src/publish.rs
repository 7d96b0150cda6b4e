//! PUBLISH in both directions, the QoS flows, SUBSCRIBE and UNSUBSCRIBE.
//!
//! Inbound QoS 2 (MQTT 5 §4.3.3), as the broker sees it:
//!
//! ```text
//!  PUBLISH(id) --> route once, remember id --> PUBREC(id)
//!  PUBLISH(id, DUP) while id remembered ----> PUBREC(id), not routed again
//!  PUBREL(id) --> forget id -----------------> PUBCOMP(id)
//! ```

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt5_codec::properties::PublishProperties;
use mqtt5_codec::{
    Delivery as Wire, DisconnectReason, Packet, PacketId, PayloadFormat, PubAck, PubAckReason,
    PubComp, PubCompReason, PubRec, PubRecReason, PubRel, Publish, QoS, RetainHandling, SubAck,
    SubAckReason, Subscribe, TopicName, UnsubAck, UnsubAckReason, Unsubscribe, Will,
};
use mqtt5_store::{DeliveryState, StoreOp};

use crate::auth::ClientInfo;
use crate::broker::Broker;
use crate::config::QueuePolicy;
use crate::session::{DELIVERY_OVERHEAD, Delivery, InFlight, Message, Session, Stage, SubEntry};
use crate::topic_tree::{Match, SessionId};
use crate::types::ConnId;

/// The PUBLISH a will becomes (MQTT 5 §3.1.3.2: its properties are passed on).
pub(crate) fn will_to_publish(will: &Will) -> Publish {
    let mut p = Publish::new(will.topic.clone(), will.payload.clone());
    p.retain = will.retain;
    // The packet id is replaced per recipient; any non-zero one does here.
    if let Some(id) = PacketId::new(1) {
        p.delivery = Wire::new(will.qos, id);
    }
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
    p
}

/// Whether a topic is in the broker's own `$SYS` namespace, which clients may read but not
/// write (MQTT 5 §4.7.2: the Server SHOULD prevent Clients from using `$` topics to exchange
/// messages with other Clients).
pub(crate) fn is_broker_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// How many levels a topic name or filter has.
fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// The members of a shared group, as the tree lists them.
type Members = Vec<(SessionId, SubEntry)>;

/// One target of a routed message, before it becomes a [`Delivery`].
struct Target {
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<NonZeroU32>,
    shared: Option<Arc<str>>,
}

impl Broker {
    /// An inbound PUBLISH on a connected connection.
    pub(crate) fn on_publish(&mut self, now: Instant, conn: ConnId, mut publish: Publish) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(sid) = c.session else {
            return;
        };
        let v5 = c.protocol.is_v5();
        self.stats.messages_received += 1;
        if !publish.properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-6]
            self.protocol_violation(
                now,
                conn,
                DisconnectReason::ProtocolError,
                "[MQTT-3.3.4-6] subscription identifier in a PUBLISH from the client",
            );
            return;
        }
        // Topic alias (MQTT 5 §3.3.2.3.4).
        if let Some(alias) = publish.properties.topic_alias {
            if alias.get() > self.config.topic_alias_maximum {
                // [MQTT-3.3.2-9]
                self.protocol_violation(
                    now,
                    conn,
                    DisconnectReason::TopicAliasInvalid,
                    "[MQTT-3.3.2-9] topic alias above the maximum",
                );
                return;
            }
            if publish.topic().is_empty() {
                let known = c.aliases.as_ref();
                let Some(topic) = known.and_then(|a| a.inbound.get(&alias.get()).cloned()) else {
                    self.protocol_violation(
                        now,
                        conn,
                        DisconnectReason::ProtocolError,
                        "MQTT 5 §3.3.4: topic alias not set on this connection",
                    );
                    return;
                };
                publish.set_topic(topic);
            } else {
                c.aliases
                    .get_or_insert_with(Box::default)
                    .inbound
                    .insert(alias.get(), publish.topic_name().detach());
            }
            publish.properties.topic_alias = None;
        }
        let qos = publish.qos();
        if v5 && qos > self.config.maximum_qos {
            // [MQTT-3.2.2-11]
            self.protocol_violation(
                now,
                conn,
                DisconnectReason::QoSNotSupported,
                "[MQTT-3.2.2-11] QoS above Maximum QoS",
            );
            return;
        }
        if publish.retain && !self.config.retain_available {
            // [MQTT-3.2.2-14]
            self.protocol_violation(
                now,
                conn,
                DisconnectReason::RetainNotSupported,
                "[MQTT-3.2.2-14] retain is not available",
            );
            return;
        }
        let packet_id = publish.delivery.packet_id().map_or(0, PacketId::get);
        let Some(session) = self.session(sid) else {
            return;
        };
        if qos == QoS::ExactlyOnce && session.incoming_qos2.contains(&packet_id) {
            // [MQTT-4.3.3-10]: already routed; acknowledge again, do not route twice.
            self.send_pubrec(conn, packet_id, PubRecReason::Success);
            return;
        }
        if qos == QoS::ExactlyOnce
            && session.incoming_qos2.len() >= usize::from(self.config.receive_maximum)
        {
            // [MQTT-3.3.4-9]
            self.protocol_violation(
                now,
                conn,
                DisconnectReason::ReceiveMaximumExceeded,
                "[MQTT-3.3.4-9] Receive Maximum exceeded",
            );
            return;
        }
        let client_id = session.client_id.clone();
        let username = session.username.clone();
        let info = ClientInfo {
            client_id: &client_id,
            username: username.as_deref(),
        };
        let too_deep = level_count(publish.topic()) > self.config.max_topic_levels;
        let allowed = too_deep
            || (!is_broker_topic(publish.topic())
                && self.authorizer.can_publish(&info, publish.topic()));
        let format_ok = !(v5
            && publish.properties.payload_format_indicator == Some(PayloadFormat::Utf8)
            && core::str::from_utf8(publish.payload()).is_err());
        let refusable = v5 && qos != QoS::AtMostOnce;
        let retained_size = (publish.retain && !publish.payload().is_empty())
            .then(|| crate::session::message_size(&publish));
        let retained_over =
            retained_size.filter(|&size| refusable && !self.retained_fits(publish.topic(), size));
        let outcome = if refusable && self.refusing_persistent() {
            // New persistent work is refused while the store is full, or while the queues
            // hold as many bytes as they may.
            Err(PubAckReason::QuotaExceeded)
        } else if too_deep {
            // Valid syntax, but deeper than the broker accepts: 0x90 Topic Name invalid.
            Err(PubAckReason::TopicNameInvalid)
        } else if !allowed {
            self.stats.denied_publishes += 1;
            Err(PubAckReason::NotAuthorized)
        } else if !format_ok {
            // [MQTT-3.3.2-4] allows the check; 0x99 Payload format invalid.
            Err(PubAckReason::PayloadFormatInvalid)
        } else if let Some(size) = retained_over {
            // The retained store is at its limits: refused, not delivered.
            self.retained_refused(publish.topic(), size);
            Err(PubAckReason::QuotaExceeded)
        } else {
            Ok(self.ingest(now, Some(sid), publish))
        };
        let reason = match outcome {
            Ok(0) if v5 => PubAckReason::NoMatchingSubscribers,
            Ok(_) => PubAckReason::Success,
            // 3.1.1 has no negative acknowledgement: the message is dropped quietly.
            Err(_) if !v5 => PubAckReason::Success,
            Err(reason) => reason,
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let Some(id) = PacketId::new(packet_id) else {
                    return;
                };
                let mut ack = PubAck::new(id);
                ack.reason = reason;
                self.send(conn, Packet::PubAck(ack));
            }
            QoS::ExactlyOnce => {
                let rec = PubRecReason::from_u8(reason.as_u8()).unwrap_or(PubRecReason::Success);
                if !rec.is_error() {
                    let persistent = self.session(sid).is_some_and(|s| s.is_persistent());
                    if let Some(s) = self.session_mut(sid) {
                        s.incoming_qos2.insert(packet_id);
                    }
                    if persistent {
                        self.persist(StoreOp::IncomingQos2 {
                            client_id: client_id.to_string(),
                            packet_id,
                            pending: true,
                        });
                    }
                }
                self.send_pubrec(conn, packet_id, rec);
            }
        }
    }

    fn send_pubrec(&mut self, conn: ConnId, packet_id: u16, reason: PubRecReason) {
        if let Some(id) = PacketId::new(packet_id) {
            let mut rec = PubRec::new(id);
            rec.reason = reason;
            self.send(conn, Packet::PubRec(rec));
        }
    }

    /// PUBREL from the client: the QoS 2 flow of `packet_id` completes.
    pub(crate) fn on_pubrel(&mut self, _now: Instant, conn: ConnId, packet_id: PacketId) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        let known = s.incoming_qos2.remove(&packet_id.get());
        let persistent = s.is_persistent();
        let client_id = s.client_id.to_string();
        if known && persistent {
            self.persist(StoreOp::IncomingQos2 {
                client_id,
                packet_id: packet_id.get(),
                pending: false,
            });
        }
        let mut comp = PubComp::new(packet_id);
        if !known {
            comp.reason = PubCompReason::PacketIdentifierNotFound;
        }
        self.send(conn, Packet::PubComp(comp));
    }

    /// Routes a message to every matching subscription, and keeps it if it is retained.
    /// Returns how many sessions it went to.
    pub(crate) fn ingest(
        &mut self,
        now: Instant,
        origin: Option<SessionId>,
        mut publish: Publish,
    ) -> usize {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|s| now + Duration::from_secs(u64::from(s)));
        let retain = publish.retain;
        if retain && !self.storage_full {
            self.set_retained(&publish, expires_at);
        }
        // The message outlives this call only in queues and windows; a detached copy does not
        // pin the read buffer it came in.
        if publish.qos() != QoS::AtMostOnce {
            publish = publish.detach();
        }
        let message = Arc::new(Message::new(
            publish,
            expires_at,
            origin,
            self.next_message_id(),
        ));
        self.route(now, message)
    }

    /// `$SYS` messages: retained, routed, never persisted.
    pub(crate) fn ingest_sys(&mut self, now: Instant, publish: Publish) {
        let topic = publish.topic().to_owned();
        let id = self.next_message_id();
        let message = Arc::new(Message::new(publish, None, None, id));
        self.retained_insert(&topic, message.clone());
        self.route(now, message);
    }

    /// Whether a retained message of `size` bytes on `topic` fits
    /// [`crate::Config::max_retained_messages`] and [`crate::Config::max_retained_bytes`],
    /// in place of what the topic holds.
    pub(crate) fn retained_fits(&self, topic: &str, size: usize) -> bool {
        let old = self.retained.get(topic).map(|m| m.size);
        let count = self.retained.len() - self.retained_sys + usize::from(old.is_none());
        let bytes = self.retained_bytes - old.unwrap_or(0) + size;
        count <= self.config.max_retained_messages && bytes <= self.config.max_retained_bytes
    }

    /// Counts and reports a retained message that was not kept.
    pub(crate) fn retained_refused(&mut self, topic: &str, size: usize) {
        self.stats.retained_refused += 1;
        self.notice(crate::types::Notice::RetainedRefused {
            topic: topic.to_owned(),
            bytes: size,
        });
    }

    /// Keeps `message` as the retained message of `topic`, counting its bytes.
    pub(crate) fn retained_insert(&mut self, topic: &str, message: Arc<Message>) {
        let sys = is_broker_topic(topic);
        let size = message.size;
        match self.retained.insert(topic, message) {
            Some(old) if !sys => self.retained_bytes -= old.size,
            Some(_) => {}
            None if sys => self.retained_sys += 1,
            None => {}
        }
        if !sys {
            self.retained_bytes += size;
        }
    }

    /// Forgets the retained message of `topic`, counting its bytes.
    pub(crate) fn retained_remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        let old = self.retained.remove(topic)?;
        if is_broker_topic(topic) {
            self.retained_sys -= 1;
        } else {
            self.retained_bytes -= old.size;
        }
        Some(old)
    }

    fn set_retained(&mut self, publish: &Publish, expires_at: Option<Instant>) {
        let topic = publish.topic().to_owned();
        if publish.payload().is_empty() {
            // [MQTT-3.3.1-6], [MQTT-3.3.1-7]: an empty retained payload clears; it is not stored.
            if self.retained_remove(&topic).is_some() {
                self.persist(StoreOp::RetainCleared { topic });
            }
            return;
        }
        let size = crate::session::message_size(publish);
        if !self.retained_fits(&topic, size) {
            // Delivered, but not kept: the retained store is at its limits.
            self.retained_refused(&topic, size);
            return;
        }
        // [MQTT-3.3.1-5]: replaces any earlier retained message on the topic.
        let stored = publish.detach();
        let expires_at_ms = expires_at.map(|at| self.wall_ms(at));
        self.persist(StoreOp::RetainSet {
            message: stored.clone(),
            expires_at_ms,
        });
        let id = self.next_message_id();
        if let Some(at) = expires_at {
            self.retained_expiring = true;
            self.note_expiry(at);
        }
        self.retained_insert(&topic, Arc::new(Message::new(stored, expires_at, None, id)));
    }

    /// Delivers a message to its subscribers. Overlapping subscriptions of one session give
    /// one delivery, at the highest QoS granted, with every Subscription Identifier
    /// (`[MQTT-3.3.4-2]`, `[MQTT-3.3.4-3]`); each matching shared group gives one delivery
    /// to one of its members (§4.8.2).
    pub(crate) fn route(&mut self, now: Instant, message: Arc<Message>) -> usize {
        let topic = message.publish.topic();
        // One entry per matching subscription, then merged per session: no map per message.
        let mut targets: Vec<(SessionId, Target)> = Vec::new();
        let mut shared: Vec<(Arc<str>, Members)> = Vec::new();
        self.tree.for_each_match(topic, |m| match m {
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
        // Deterministic order: by session, so that tests and replays see the same sequence;
        // overlapping subscriptions of one session become one delivery at the highest QoS
        // with every identifier.
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
        let topic = message.publish.topic();
        for (filter, members) in shared {
            match self.pick_member(&members, None, topic) {
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
                None => self.stats.denied_deliveries += 1,
            }
        }
        let mut delivered = 0;
        for (sid, t) in targets {
            if !self.may_receive(sid, message.publish.topic()) {
                continue;
            }
            let delivery = Delivery {
                message: message.clone(),
                qos: message.publish.qos().min(t.qos),
                // [MQTT-3.3.1-12], [MQTT-3.3.1-13]
                retain: t.retain_as_published && message.publish.retain,
                subscription_ids: t.ids,
                shared: t.shared,
                seq: None,
            };
            self.deliver(now, sid, delivery);
            delivered += 1;
        }
        delivered
    }

    /// Whether the session's client may receive a message on `topic`.
    pub(crate) fn may_receive(&self, sid: SessionId, topic: &str) -> bool {
        self.session(sid).is_some_and(|s| {
            let info = ClientInfo {
                client_id: &s.client_id,
                username: s.username.as_deref(),
            };
            self.authorizer.can_receive(&info, topic)
        })
    }

    /// Picks a shared-group member for a message on `topic`: round robin among the members
    /// that may read it, preferring connected ones. `None` when no member may read it.
    fn pick_member(
        &mut self,
        members: &[(SessionId, SubEntry)],
        except: Option<SessionId>,
        topic: &str,
    ) -> Option<(SessionId, SubEntry)> {
        if members.is_empty() {
            return None;
        }
        self.share_counter = self.share_counter.wrapping_add(1);
        let start = self.share_counter % members.len();
        let rotated = members
            .iter()
            .cycle()
            .skip(start)
            .take(members.len())
            .filter(|(sid, _)| Some(*sid) != except);
        let mut fallback = None;
        for &(sid, entry) in rotated {
            if !self.may_receive(sid, topic) {
                continue;
            }
            let online = self.session(sid).is_some_and(|s| s.conn.is_some());
            if online {
                return Some((sid, entry));
            }
            fallback.get_or_insert((sid, entry));
        }
        fallback
    }

    /// Hands a session's shared-subscription deliveries (in flight or queued) to other members
    /// of their groups, when it loses its connection.
    ///
    /// A QoS 1 message in flight may go to another member at once (§4.8.2). A QoS 2 message in
    /// flight stays: it is completed to this member when it reconnects (`[MQTT-4.8.2-4]`),
    /// and goes to no other member if the session ends first (`[MQTT-4.8.2-5]`).
    pub(crate) fn hand_over_shared(&mut self, now: Instant, sid: SessionId) {
        let Some((s, total)) = self.held(sid) else {
            return;
        };
        let ids: Vec<u16> = s
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
        for mut d in moved {
            let Some(filter) = d.shared.clone() else {
                continue;
            };
            let mut members = Vec::new();
            self.tree.for_each_match(d.message.publish.topic(), |m| {
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
            self.forget_delivery(sid, &mut d, false);
            let topic = d.message.publish.topic().to_owned();
            match self.pick_member(&members, Some(sid), &topic) {
                Some((other, entry)) => {
                    d.qos = d.message.publish.qos().min(entry.options.qos);
                    d.subscription_ids = entry.identifier.into_iter().collect();
                    self.deliver(now, other, d);
                }
                None if !members.iter().any(|(m, _)| *m != sid) => {}
                None => self.stats.denied_deliveries += 1,
            }
        }
    }

    /// The session and the broker-wide queued bytes, for a change of its queue or window.
    pub(crate) fn held(&mut self, sid: SessionId) -> Option<(&mut Session, &mut usize)> {
        let s = self.sessions.get_mut(sid.0 as usize)?.as_mut()?;
        Some((s, &mut self.queued_bytes))
    }

    /// Sends a delivery now if its session is connected and has room in its window (and its
    /// byte allowance), otherwise queues it (bounded), or drops it.
    pub(crate) fn deliver(&mut self, now: Instant, sid: SessionId, delivery: Delivery) {
        if delivery.message.expired(now) {
            self.stats.messages_expired += 1;
            return;
        }
        let queue_qos0 = self.config.queue_qos0_offline;
        let Some(s) = self.session(sid) else {
            return;
        };
        let persistent = s.is_persistent();
        match s.conn {
            Some(conn) if self.conns.get(&conn).is_some_and(|c| c.congested) => {
                // The client reads too slowly: the message waits in its (bounded) queue.
                self.enqueue(now, sid, delivery);
            }
            Some(conn) => {
                if delivery.qos == QoS::AtMostOnce {
                    self.send_publish(now, conn, &delivery, None, false);
                    return;
                }
                let window = self.conns.get(&conn).map_or(0, |c| c.window);
                let need = delivery.message.size + DELIVERY_OVERHEAD;
                let room = s.queue().is_empty()
                    && !s.resend_pending
                    && s.inflight().len() < usize::from(window)
                    && s.held_bytes + need <= self.config.max_queued_bytes
                    && !self.queue_memory_full();
                if room {
                    self.send_new(now, sid, conn, delivery);
                } else {
                    self.enqueue(now, sid, delivery);
                }
            }
            None => {
                if persistent && (delivery.qos != QoS::AtMostOnce || queue_qos0) {
                    self.enqueue(now, sid, delivery);
                }
            }
        }
    }

    /// Puts a delivery in the session's queue. Past the session's limits (messages and
    /// bytes) the queue policy drops messages; past the broker-wide byte limit the new one is
    /// dropped. Every drop is counted.
    fn enqueue(&mut self, now: Instant, sid: SessionId, mut delivery: Delivery) {
        if self.queue_memory_full() {
            self.stats.queue_memory_drops += 1;
            self.stats.messages_dropped += 1;
            self.forget_delivery(sid, &mut delivery, false);
            return;
        }
        let need = delivery.message.size + DELIVERY_OVERHEAD;
        loop {
            let Some(s) = self.session(sid) else {
                return;
            };
            let full = s.queue().len() >= self.config.max_queued_messages
                || s.held_bytes + need > self.config.max_queued_bytes;
            if !full {
                break;
            }
            if self.config.disconnect_slow_consumers
                && let Some(conn) = s.conn
            {
                // Configured: a client that cannot keep up is disconnected rather than fed
                // with gaps. Its will and session follow the usual rules.
                self.stats.messages_dropped += 1;
                self.end_connection(
                    now,
                    conn,
                    crate::broker::Ending::Abnormal,
                    Some(DisconnectReason::QuotaExceeded),
                    "slow consumer: session queue full",
                );
                self.forget_delivery(sid, &mut delivery, false);
                return;
            }
            self.stats.messages_dropped += 1;
            let oldest = match self.config.queue_policy {
                QueuePolicy::DropNewest => None,
                QueuePolicy::DropOldest => self.held(sid).and_then(|(s, t)| s.pop_queued(t)),
            };
            if let Some(s) = self.session_mut(sid) {
                s.dropped += 1;
            }
            let Some(mut oldest) = oldest else {
                // Nothing older to drop (or the policy keeps the queue): the new one goes.
                self.forget_delivery(sid, &mut delivery, false);
                return;
            };
            self.forget_delivery(sid, &mut oldest, false);
        }
        self.record_delivery(sid, &mut delivery, DeliveryState::Queued);
        let expires_at = delivery.message.expires_at;
        if let Some((s, total)) = self.held(sid) {
            s.push_queued(delivery, total);
        }
        if let Some(at) = expires_at {
            self.expiring_sessions.insert(sid);
            self.note_expiry(at);
        }
    }

    /// Puts a QoS 1 or 2 delivery in flight and sends it.
    fn send_new(&mut self, now: Instant, sid: SessionId, conn: ConnId, mut delivery: Delivery) {
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        let Some(packet_id) = s.allocate_packet_id() else {
            self.enqueue(now, sid, delivery);
            return;
        };
        if !self.send_publish(now, conn, &delivery, NonZeroU16::new(packet_id), false) {
            // Too large for the client: discarded as if delivered ([MQTT-3.1.2-25]).
            self.forget_delivery(sid, &mut delivery, false);
            return;
        }
        self.record_delivery(sid, &mut delivery, DeliveryState::Sent(packet_id));
        if let Some((s, total)) = self.held(sid) {
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

    /// Encodes one delivery for one connection: QoS, DUP, RETAIN, Subscription Identifiers,
    /// the remaining Message Expiry Interval (`[MQTT-3.3.2-6]`), and an outbound topic alias.
    /// Returns false when the packet is larger than the client accepts (`[MQTT-3.1.2-24]`),
    /// in which case nothing is sent.
    fn send_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        delivery: &Delivery,
        packet_id: Option<NonZeroU16>,
        dup: bool,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let original = &delivery.message.publish;
        let mut p = original.clone();
        p.dup = dup;
        p.retain = delivery.retain;
        p.delivery = match (
            delivery.qos,
            packet_id.and_then(|id| PacketId::new(id.get())),
        ) {
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
                props.message_expiry_interval =
                    Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
            }
        } else if !original.properties.is_empty() {
            p.properties = Default::default();
        }
        let mut packet = Packet::Publish(p);
        if packet.encoded_len(c.protocol) > c.max_packet_size as usize {
            self.stats.messages_dropped += 1;
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
        self.send(conn, packet);
        true
    }

    /// Fills a connected session's window from its queue.
    pub(crate) fn pump(&mut self, now: Instant, sid: SessionId) {
        loop {
            let Some(s) = self.session_mut(sid) else {
                return;
            };
            let Some(conn) = s.conn else {
                return;
            };
            if self.conns.get(&conn).is_some_and(|c| c.congested) {
                return;
            }
            let window = self.conns.get(&conn).map_or(0, |c| usize::from(c.window));
            let Some(s) = self.session_mut(sid) else {
                return;
            };
            if s.resend_pending {
                // Resends that did not fit the window on resume go first, oldest first.
                let on_wire = s.inflight().values().filter(|f| !f.resend).count();
                if on_wire >= window {
                    return;
                }
                let next = s
                    .inflight()
                    .iter()
                    .filter(|(_, f)| f.resend)
                    .min_by_key(|(_, f)| f.order)
                    .map(|(&id, _)| id);
                match next {
                    Some(id) => {
                        self.resend_publish(now, sid, conn, id);
                        continue;
                    }
                    None => s.resend_pending = false,
                }
            }
            if s.inflight().len() >= window {
                return;
            }
            let Some(mut d) = self.held(sid).and_then(|(s, t)| s.pop_queued(t)) else {
                return;
            };
            if d.message.expired(now) {
                self.stats.messages_expired += 1;
                self.forget_delivery(sid, &mut d, false);
                continue;
            }
            if !self.may_receive(sid, d.message.publish.topic()) {
                // The access rules changed while it waited (a reload, or another identity
                // took the session over): it is dropped, and counted.
                self.stats.denied_deliveries += 1;
                self.forget_delivery(sid, &mut d, false);
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                self.send_publish(now, conn, &d, None, false);
            } else {
                self.send_new(now, sid, conn, d);
            }
        }
    }

    /// After CONNECT resumed a session: resend what was in flight, in order, then the queue
    /// (`[MQTT-4.4.0-1]`).
    pub(crate) fn resume(&mut self, now: Instant, sid: SessionId) {
        let Some(conn) = self.session(sid).and_then(|s| s.conn) else {
            return;
        };
        // The send quota starts again from the client's Receive Maximum ([MQTT-4.9.0-1]):
        // PUBLISH resends beyond it wait for acknowledgements ([MQTT-4.9.0-2]); PUBREL ones
        // are not PUBLISH packets and all go now.
        let window = self.conns.get(&conn).map_or(0, |c| usize::from(c.window));
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        s.resend_pending = false;
        let mut on_wire = s
            .inflight()
            .values()
            .filter(|f| f.stage == Stage::Released)
            .count();
        let mut order: Vec<(u64, u16)> =
            s.inflight().iter().map(|(&id, f)| (f.order, id)).collect();
        order.sort_unstable();
        for (_, id) in order {
            let denied = self
                .session(sid)
                .and_then(|s| s.inflight().get(&id))
                .is_some_and(|f| {
                    f.stage == Stage::Sent
                        && !self.may_receive(sid, f.delivery.message.publish.topic())
                });
            if denied {
                // Read permission is checked again for what a resumed session would resend.
                self.stats.denied_deliveries += 1;
                if let Some(mut gone) = self.held(sid).and_then(|(s, t)| s.remove_inflight(id, t)) {
                    self.forget_delivery(sid, &mut gone.delivery, false);
                }
                continue;
            }
            let Some(s) = self.session_mut(sid) else {
                return;
            };
            let Some(f) = s.inflight_mut(id) else {
                continue;
            };
            let Some(pid) = PacketId::new(id) else {
                continue;
            };
            match f.stage {
                Stage::Sent if on_wire >= window => {
                    f.resend = true;
                    s.resend_pending = true;
                }
                Stage::Sent => {
                    on_wire += 1;
                    self.resend_publish(now, sid, conn, id);
                }
                Stage::Released => self.send(conn, Packet::PubRel(PubRel::new(pid))),
            }
        }
        self.pump(now, sid);
    }

    /// Resends the in-flight PUBLISH `id` with DUP and its original packet identifier
    /// (`[MQTT-4.4.0-1]`); one now too large for the client is discarded as delivered.
    fn resend_publish(&mut self, now: Instant, sid: SessionId, conn: ConnId, id: u16) {
        let Some(f) = self.session_mut(sid).and_then(|s| s.inflight_mut(id)) else {
            return;
        };
        f.resend = false;
        let delivery = f.delivery.clone();
        if !self.send_publish(now, conn, &delivery, NonZeroU16::new(id), true)
            && let Some(mut gone) = self.held(sid).and_then(|(s, t)| s.remove_inflight(id, t))
        {
            self.forget_delivery(sid, &mut gone.delivery, false);
        }
    }

    fn conn_session(&self, conn: ConnId) -> Option<SessionId> {
        self.conns.get(&conn).and_then(|c| c.session)
    }

    /// PUBACK from the client.
    pub(crate) fn on_puback(&mut self, now: Instant, conn: ConnId, packet_id: u16) {
        let Some(sid) = self.conn_session(conn) else {
            return;
        };
        if let Some((s, total)) = self.held(sid)
            && s.inflight()
                .get(&packet_id)
                .is_some_and(|f| f.delivery.qos == QoS::AtLeastOnce)
            && let Some(mut f) = s.remove_inflight(packet_id, total)
        {
            self.forget_delivery(sid, &mut f.delivery, false);
        }
        self.pump(now, sid);
    }

    /// PUBREC from the client: answer PUBREL, or end the flow on an error code.
    pub(crate) fn on_pubrec(&mut self, now: Instant, conn: ConnId, rec: PubRec) {
        let Some(sid) = self.conn_session(conn) else {
            return;
        };
        let id = rec.packet_id.get();
        let Some((s, total)) = self.held(sid) else {
            return;
        };
        let known = s
            .inflight()
            .get(&id)
            .is_some_and(|f| f.delivery.qos == QoS::ExactlyOnce);
        if rec.reason.is_error() {
            if known && let Some(mut f) = s.remove_inflight(id, total) {
                self.forget_delivery(sid, &mut f.delivery, false);
            }
            self.pump(now, sid);
            return;
        }
        let mut released = None;
        if let Some(f) = s.inflight_mut(id)
            && f.delivery.qos == QoS::ExactlyOnce
        {
            f.stage = Stage::Released;
            released = Some(f.delivery.clone());
        }
        if let Some(d) = released {
            self.update_delivery(sid, &d, DeliveryState::Released(id));
        }
        let mut rel = PubRel::new(rec.packet_id);
        if !known {
            rel.reason = mqtt5_codec::PubRelReason::PacketIdentifierNotFound;
        }
        self.send(conn, Packet::PubRel(rel));
    }

    /// PUBCOMP from the client.
    pub(crate) fn on_pubcomp(&mut self, now: Instant, conn: ConnId, packet_id: u16) {
        let Some(sid) = self.conn_session(conn) else {
            return;
        };
        if let Some((s, total)) = self.held(sid)
            && s.inflight()
                .get(&packet_id)
                .is_some_and(|f| f.stage == Stage::Released)
            && let Some(mut f) = s.remove_inflight(packet_id, total)
        {
            self.forget_delivery(sid, &mut f.delivery, false);
        }
        self.pump(now, sid);
    }

    /// SUBSCRIBE: one reason code per filter, then the retained messages it asks for.
    pub(crate) fn on_subscribe(&mut self, now: Instant, conn: ConnId, sub: Subscribe) {
        let Some(sid) = self.conn_session(conn) else {
            return;
        };
        let identifier = sub.properties.subscription_identifier;
        let mut reasons = Vec::with_capacity(sub.subscriptions.len());
        let mut retained: Vec<Delivery> = Vec::new();
        for s in &sub.subscriptions {
            let reason = self.subscribe_one(now, sid, s, identifier, &mut retained);
            reasons.push(reason);
        }
        let ack = SubAck {
            packet_id: sub.packet_id,
            properties: Default::default(),
            reasons,
        };
        self.send(conn, Packet::SubAck(ack));
        for d in retained {
            self.deliver(now, sid, d);
        }
    }

    fn subscribe_one(
        &mut self,
        now: Instant,
        sid: SessionId,
        s: &mqtt5_codec::Subscription,
        identifier: Option<NonZeroU32>,
        retained: &mut Vec<Delivery>,
    ) -> SubAckReason {
        let cfg = &self.config;
        let shared = s.filter.is_shared();
        let matching = s.filter.topic_filter();
        if shared && !cfg.shared_subscriptions {
            return SubAckReason::SharedSubscriptionsNotSupported;
        }
        if !cfg.wildcard_subscriptions && s.filter.has_wildcards() {
            return SubAckReason::WildcardSubscriptionsNotSupported;
        }
        if identifier.is_some() && !cfg.subscription_identifiers {
            return SubAckReason::SubscriptionIdentifiersNotSupported;
        }
        if level_count(matching) > cfg.max_topic_levels
            || s.filter.as_str().len() > cfg.max_topic_filter_length
        {
            // Valid syntax, but deeper or longer than the broker accepts: Topic Filter invalid.
            return SubAckReason::TopicFilterInvalid;
        }
        let Some(session) = self.session(sid) else {
            return SubAckReason::UnspecifiedError;
        };
        let info = ClientInfo {
            client_id: &session.client_id,
            username: session.username.as_deref(),
        };
        if !self.authorizer.can_subscribe(&info, matching) {
            return SubAckReason::NotAuthorized;
        }
        let filter = s.filter.as_str();
        let exists = session.subscriptions.contains_key(filter);
        if !exists
            && (session.subscriptions.len() >= cfg.max_subscriptions_per_client
                || session.subscription_bytes + filter.len()
                    > cfg.max_subscription_bytes_per_client)
        {
            return SubAckReason::QuotaExceeded;
        }
        if self.refusing_persistent() && session.is_persistent() {
            // A persistent session's subscription must be stored, and the store is full.
            return SubAckReason::QuotaExceeded;
        }
        let granted = s.options.qos.min(cfg.maximum_qos);
        let mut options = s.options;
        options.qos = granted;
        let entry = SubEntry {
            options,
            identifier,
        };
        let persistent = session.is_persistent();
        let client_id = session.client_id.to_string();
        let username = session.username.clone();
        if let Some(session) = self.session_mut(sid) {
            // [MQTT-3.8.4-3]: the same filter replaces the subscription.
            if session
                .subscriptions
                .insert(filter.to_owned(), entry)
                .is_none()
            {
                session.subscription_bytes += filter.len();
            }
        }
        self.tree.insert(filter, sid, entry);
        if persistent {
            self.persist(StoreOp::Subscribed {
                client_id: client_id.clone(),
                filter: filter.to_owned(),
                options,
                identifier: identifier.map(NonZeroU32::get),
            });
        }
        // Retained messages: never for shared subscriptions (§3.8.4: "No retained messages
        // are sent", a statement without a normative id); per Retain Handling otherwise
        // ([MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11]).
        let send_retained = !shared
            && match options.retain_handling {
                RetainHandling::SendOnSubscribe => true,
                RetainHandling::SendIfNew => !exists,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            let mut expired = Vec::new();
            let mut denied = 0;
            let (authorizer, info) = (
                &self.authorizer,
                ClientInfo {
                    client_id: &client_id,
                    username: username.as_deref(),
                },
            );
            self.retained.for_each_match(matching, |m| {
                if m.expired(now) {
                    expired.push(m.publish.topic().to_owned());
                    return;
                }
                // Retained messages obey the access rules as live ones do.
                if !authorizer.can_receive(&info, m.publish.topic()) {
                    denied += 1;
                    return;
                }
                retained.push(Delivery {
                    message: m.clone(),
                    qos: m.publish.qos().min(granted),
                    // [MQTT-3.3.1-9]: retained on subscribe keep RETAIN set.
                    retain: true,
                    subscription_ids: identifier.into_iter().collect(),
                    shared: None,
                    seq: None,
                });
            });
            self.stats.denied_deliveries += denied;
            // Expired retained messages are not delivered ([MQTT-3.3.2-5]), and go now.
            for topic in expired {
                self.retained_remove(&topic);
                self.persist(StoreOp::RetainCleared { topic });
            }
        }
        match granted {
            QoS::AtMostOnce => SubAckReason::GrantedQoS0,
            QoS::AtLeastOnce => SubAckReason::GrantedQoS1,
            QoS::ExactlyOnce => SubAckReason::GrantedQoS2,
        }
    }

    /// UNSUBSCRIBE: one reason code per filter.
    pub(crate) fn on_unsubscribe(&mut self, _now: Instant, conn: ConnId, unsub: Unsubscribe) {
        let Some(sid) = self.conn_session(conn) else {
            return;
        };
        let mut reasons = Vec::with_capacity(unsub.filters.len());
        for f in &unsub.filters {
            let filter = f.as_str();
            let Some(s) = self.session_mut(sid) else {
                return;
            };
            let existed = s.subscriptions.remove(filter).is_some();
            if existed {
                s.subscription_bytes = s.subscription_bytes.saturating_sub(filter.len());
            }
            let persistent = s.is_persistent();
            let client_id = s.client_id.to_string();
            if existed {
                self.tree.remove(filter, sid);
                if persistent {
                    self.persist(StoreOp::Unsubscribed {
                        client_id,
                        filter: filter.to_owned(),
                    });
                }
                reasons.push(UnsubAckReason::Success);
            } else {
                reasons.push(UnsubAckReason::NoSubscriptionExisted);
            }
        }
        let ack = UnsubAck {
            packet_id: unsub.packet_id,
            properties: Default::default(),
            reasons,
        };
        self.send(conn, Packet::UnsubAck(ack));
    }
}
