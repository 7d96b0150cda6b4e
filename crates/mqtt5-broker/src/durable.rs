//! What a persistent session leaves in the store: its own record, and for its QoS 1 and 2
//! deliveries the message once plus one delivery record per session that references it
//! (Mosquitto 2.1's model), kept in step with the delivery's state.
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

use mqtt5_codec::QoS;
use mqtt5_store::{DeliveryRecord, DeliveryState, SessionRecord, StoreOp};

use crate::session::{Delivery, SessionId};
use crate::state::Core;
use crate::types::Identity;

/// Stores a new delivery of a persistent session (QoS 1 and 2 only), and its message if this
/// is the message's first stored delivery.
pub(crate) fn record_delivery(
    core: &mut Core,
    sid: SessionId,
    d: &mut Delivery,
    state: DeliveryState,
) {
    if d.seq.is_some() {
        update_delivery(core, sid, d, state);
        return;
    }
    if d.qos == QoS::AtMostOnce {
        return;
    }
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    if !s.is_persistent() {
        return;
    }
    let seq = s.take_seq();
    d.seq = Some(seq);
    let client_id = s.client_id.to_string();
    if d.message.stored_refs.fetch_add(1, Ordering::Relaxed) == 0 {
        let expires_at_ms = d.message.expires_at.map(|at| core.wall_ms(at));
        // The message was detached from its read buffer when it was routed: this is a
        // reference, not a copy.
        core.persist(StoreOp::MessageStored {
            id: d.message.id,
            message: d.message.publish.clone(),
            qos: d.message.qos,
            expires_at_ms,
        });
    }
    core.persist(StoreOp::Delivery(record(client_id, seq, d, state)));
}

/// Records a stored delivery's new state.
pub(crate) fn update_delivery(core: &mut Core, sid: SessionId, d: &Delivery, state: DeliveryState) {
    let Some(seq) = d.seq else {
        return;
    };
    let Some(s) = core.sessions.get(sid) else {
        return;
    };
    let client_id = s.client_id.to_string();
    core.persist(StoreOp::Delivery(record(client_id, seq, d, state)));
}

/// Forgets a stored delivery (acknowledged, dropped, or moved to another session), and its
/// message with the last one. `session_gone` skips the delivery's own record when the whole
/// session has just been deleted.
pub(crate) fn forget_delivery(
    core: &mut Core,
    sid: SessionId,
    d: &mut Delivery,
    session_gone: bool,
) {
    let Some(seq) = d.seq.take() else {
        return;
    };
    if !session_gone && let Some(s) = core.sessions.get(sid) {
        let client_id = s.client_id.to_string();
        core.persist(StoreOp::DeliveryDeleted { client_id, seq });
    }
    if d.message.stored_refs.fetch_sub(1, Ordering::Relaxed) == 1 {
        core.persist(StoreOp::MessageDeleted { id: d.message.id });
    }
}

/// Persists a session's own record (persistent sessions only).
pub(crate) fn save_session(core: &mut Core, sid: SessionId, expires_at_ms: Option<u64>) {
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    if !s.is_persistent() {
        return;
    }
    s.stored = true;
    let record = SessionRecord {
        client_id: s.client_id.to_string(),
        protocol: s.protocol,
        expiry_interval: s.expiry_interval,
        expires_at_ms,
        will: s.will.as_deref().cloned(),
        owner: s.owner.as_ref().map(Identity::to_stored),
    };
    core.persist(StoreOp::SessionSaved(record));
}

/// Persists a stored session's record again (its will or expiry changed).
pub(crate) fn resave_session(core: &mut Core, sid: SessionId) {
    let Some(s) = core.sessions.get(sid) else {
        return;
    };
    if !s.stored {
        return;
    }
    let expires_at_ms = s.expires_at.map(|at| core.wall_ms(at));
    save_session(core, sid, expires_at_ms);
}

fn record(client_id: String, seq: u64, d: &Delivery, state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord {
        client_id,
        seq,
        message_id: d.message.id,
        qos: d.qos,
        retain: d.retain,
        subscription_ids: d.subscription_ids.iter().map(|i| i.get()).collect(),
        state,
    }
}
