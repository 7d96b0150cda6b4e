//! SUBSCRIBE and UNSUBSCRIBE: one reason code per filter, then the retained messages a new
//! subscription asks for.

use std::num::NonZeroU32;
use std::time::Instant;

use mqtt5_codec::{
    Packet, QoS, RetainHandling, SubAck, SubAckReason, Subscribe, Subscription, UnsubAck,
    UnsubAckReason, Unsubscribe,
};
use mqtt5_store::StoreOp;

use crate::auth::ClientInfo;
use crate::deliver::deliver;
use crate::publish::level_count;
use crate::session::{Delivery, SessionId, SubEntry};
use crate::state::Core;
use crate::types::ConnId;

/// SUBSCRIBE: one reason code per filter, then the retained messages it asks for.
pub(crate) fn on_subscribe(core: &mut Core, now: Instant, conn: ConnId, sub: &Subscribe) {
    let Some(sid) = core.conns.session_of(conn) else {
        return;
    };
    let identifier = sub.properties.subscription_identifier;
    let mut reasons = Vec::with_capacity(sub.subscriptions.len());
    let mut retained: Vec<Delivery> = Vec::new();
    for s in &sub.subscriptions {
        let reason = subscribe_one(core, now, sid, s, identifier, &mut retained);
        reasons.push(reason);
    }
    let ack = SubAck {
        packet_id: sub.packet_id,
        properties: Default::default(),
        reasons,
    };
    core.send(conn, Packet::SubAck(ack));
    for d in retained {
        deliver(core, now, sid, d);
    }
}

/// Why the broker refuses a filter before looking at the session, if it does.
fn unsupported(
    core: &Core,
    s: &Subscription,
    identifier: Option<NonZeroU32>,
) -> Option<SubAckReason> {
    let cfg = &core.config;
    if s.filter.is_shared() && !cfg.shared_subscriptions {
        return Some(SubAckReason::SharedSubscriptionsNotSupported);
    }
    if !cfg.wildcard_subscriptions && s.filter.has_wildcards() {
        return Some(SubAckReason::WildcardSubscriptionsNotSupported);
    }
    if identifier.is_some() && !cfg.subscription_identifiers {
        return Some(SubAckReason::SubscriptionIdentifiersNotSupported);
    }
    if level_count(s.filter.topic_filter()) > cfg.max_topic_levels
        || s.filter.as_str().len() > cfg.max_topic_filter_length
    {
        // Valid syntax, but deeper or longer than the broker accepts: Topic Filter invalid.
        return Some(SubAckReason::TopicFilterInvalid);
    }
    None
}

/// Why session `sid` may not hold this new or replaced subscription, if it may not.
fn refused(core: &Core, sid: SessionId, s: &Subscription) -> Option<SubAckReason> {
    let Some(session) = core.sessions.get(sid) else {
        return Some(SubAckReason::UnspecifiedError);
    };
    let info = ClientInfo {
        client_id: &session.client_id,
        username: session.username.as_deref(),
    };
    if !core.access.can_subscribe(&info, s.filter.topic_filter()) {
        return Some(SubAckReason::NotAuthorized);
    }
    let filter = s.filter.as_str();
    let cfg = &core.config;
    if !session.subscriptions.contains_key(filter)
        && (session.subscriptions.len() >= cfg.max_subscriptions_per_client
            || session.subscription_bytes + filter.len() > cfg.max_subscription_bytes_per_client)
    {
        return Some(SubAckReason::QuotaExceeded);
    }
    if core.refusing_persistent() && session.is_persistent() {
        // A persistent session's subscription must be stored, and the store is full.
        return Some(SubAckReason::QuotaExceeded);
    }
    None
}

fn subscribe_one(
    core: &mut Core,
    now: Instant,
    sid: SessionId,
    s: &Subscription,
    identifier: Option<NonZeroU32>,
    retained: &mut Vec<Delivery>,
) -> SubAckReason {
    if let Some(reason) = unsupported(core, s, identifier).or_else(|| refused(core, sid, s)) {
        return reason;
    }
    let granted = s.options.qos.min(core.config.maximum_qos);
    let mut options = s.options;
    options.qos = granted;
    let entry = SubEntry {
        options,
        identifier,
    };
    let filter = s.filter.as_str();
    let Some(session) = core.sessions.get_mut(sid) else {
        return SubAckReason::UnspecifiedError;
    };
    // [MQTT-3.8.4-3]: the same filter replaces the subscription.
    let exists = session
        .subscriptions
        .insert(filter.to_owned(), entry)
        .is_some();
    if !exists {
        session.subscription_bytes += filter.len();
    }
    if session.is_persistent() {
        let client_id = session.client_id.to_string();
        core.persist(StoreOp::Subscribed {
            client_id,
            filter: filter.to_owned(),
            options,
            identifier: identifier.map(NonZeroU32::get),
        });
    }
    core.router.subscribe(filter, sid, entry);
    // Retained messages: never for shared subscriptions (MQTT 5 §3.8.4); per Retain Handling
    // otherwise ([MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11]).
    let send_retained = !s.filter.is_shared()
        && match options.retain_handling {
            RetainHandling::SendOnSubscribe => true,
            RetainHandling::SendIfNew => !exists,
            RetainHandling::DoNotSend => false,
        };
    if send_retained {
        retained_for(core, now, sid, s.filter.topic_filter(), entry, retained);
    }
    match granted {
        QoS::AtMostOnce => SubAckReason::GrantedQoS0,
        QoS::AtLeastOnce => SubAckReason::GrantedQoS1,
        QoS::ExactlyOnce => SubAckReason::GrantedQoS2,
    }
}

/// The retained messages matching `matching` that session `sid` may read, as deliveries of
/// subscription `entry`. Expired ones are not delivered ([MQTT-3.3.2-5]) and go now.
fn retained_for(
    core: &mut Core,
    now: Instant,
    sid: SessionId,
    matching: &str,
    entry: SubEntry,
    retained: &mut Vec<Delivery>,
) {
    let mut expired = Vec::new();
    let mut denied = 0;
    core.router.for_each_retained(matching, |m| {
        if m.expired(now) {
            expired.push(m.publish.topic().to_owned());
            return;
        }
        // Retained messages obey the access rules as live ones do.
        if !core.may_receive(sid, m.publish.topic()) {
            denied += 1;
            return;
        }
        retained.push(Delivery {
            message: m.clone(),
            qos: m.qos.min(entry.options.qos),
            // [MQTT-3.3.1-9]: retained on subscribe keep RETAIN set.
            retain: true,
            subscription_ids: entry.identifier.into_iter().collect(),
            shared: None,
            seq: None,
        });
    });
    core.stats.denied_deliveries += denied;
    for topic in expired {
        core.router.unretain(&topic);
        core.persist(StoreOp::RetainCleared { topic });
    }
}

/// UNSUBSCRIBE: one reason code per filter.
pub(crate) fn on_unsubscribe(core: &mut Core, conn: ConnId, unsub: &Unsubscribe) {
    let Some(sid) = core.conns.session_of(conn) else {
        return;
    };
    let mut reasons = Vec::with_capacity(unsub.filters.len());
    for f in &unsub.filters {
        let filter = f.as_str();
        let Some(s) = core.sessions.get_mut(sid) else {
            return;
        };
        if s.subscriptions.remove(filter).is_none() {
            reasons.push(UnsubAckReason::NoSubscriptionExisted);
            continue;
        }
        s.subscription_bytes = s.subscription_bytes.saturating_sub(filter.len());
        if s.is_persistent() {
            let client_id = s.client_id.to_string();
            core.persist(StoreOp::Unsubscribed {
                client_id,
                filter: filter.to_owned(),
            });
        }
        core.router.unsubscribe(filter, sid);
        reasons.push(UnsubAckReason::Success);
    }
    let ack = UnsubAck {
        packet_id: unsub.packet_id,
        properties: Default::default(),
        reasons,
    };
    core.send(conn, Packet::UnsubAck(ack));
}
