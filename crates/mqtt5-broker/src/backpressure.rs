//! Which packets give the store new work: the query the driver asks while the store is
//! behind, so that it stops reading the clients whose input would add to the backlog and
//! keeps reading everyone else (`docs/architecture.md`, "Backpressure").
//!
//! ```text
//!  packet                                   needs the store when
//!  CONNECT (or the AUTH that completes it)  it asks for a persistent session, replaces or
//!                                           takes over a stored one, or carries a will that
//!                                           would be stored when published
//!  PUBLISH                                  retained; or QoS 2 from a persistent session (its
//!                                           packet identifier is stored); or QoS 1 or 2 with a
//!                                           persistent subscriber at QoS 1 or 2 (fan-out)
//!  SUBSCRIBE, UNSUBSCRIBE                   the session is persistent
//!  anything else                            never
//! ```
//!
//! Acknowledgements from clients (PUBACK, PUBREC, PUBREL, PUBCOMP) settle deliveries the
//! store holds already, at most a window of them per session, and they drain the backlog:
//! they never wait. DISCONNECT ends its connection once, and PINGREQ stores nothing. QoS 0
//! messages are never stored; when they push stored deliveries out of a full queue, the
//! deletes are bounded by what the queues hold.
//!
//! The answer errs on the side of "yes" where finding out would cost more than the packet
//! (an access rule that would refuse the message, a subscriber's No Local): a packet kept
//! back for nothing only waits for the store.

use mqtt5_codec::{Connect, Delivery, Packet, Publish, QoS};

use crate::connect::granted_expiry;
use crate::connections::{Conn, ConnState};
use crate::session::{SessionId, SubEntry};
use crate::state::Core;
use crate::topic_tree::Match;
use crate::types::ConnId;

/// Whether handling `packet` from `conn` now would give the store new work that grows with
/// the client's input (see the module's table).
pub(crate) fn needs_store(core: &Core, conn: ConnId, packet: &Packet) -> bool {
    let Some(c) = core.conns.get(conn) else {
        return false;
    };
    match packet {
        Packet::Connect(connect) => {
            matches!(c.state, ConnState::AwaitConnect) && connect_needs_store(core, connect)
        }
        // The AUTH of an exchange completes the CONNECT it started.
        Packet::Auth(_) => match &c.state {
            ConnState::Authenticating { connect, .. } => connect_needs_store(core, connect),
            _ => false,
        },
        Packet::Publish(p) => c.state.is_connected() && publish_needs_store(core, c, p),
        Packet::Subscribe(_) | Packet::Unsubscribe(_) => {
            c.state.is_connected() && session_is_persistent(core, c)
        }
        _ => false,
    }
}

/// Whether accepting `connect` would store something: a persistent session, the end of a
/// stored one it replaces or takes over, or (later) its will.
fn connect_needs_store(core: &Core, connect: &Connect) -> bool {
    if granted_expiry(core, connect).granted > 0 {
        return true;
    }
    // The session it would take over or discard (by its client identifier, or by its user
    // name where that replaces the client identifier).
    let stored = |id: &str| {
        core.sessions
            .find(id)
            .and_then(|sid| core.sessions.get(sid))
            .is_some_and(|s| s.stored)
    };
    if stored(connect.client_id.as_str())
        || connect
            .username
            .as_ref()
            .is_some_and(|u| stored(u.as_str()))
    {
        return true;
    }
    // A will is published when the connection ends, which the client decides: its fan-out is
    // counted here, where the client can still be held back.
    connect.will.as_ref().is_some_and(|will| {
        (will.retain && core.config.retain_available)
            || durable_fanout(core, will.topic.as_str(), will.qos)
    })
}

/// Whether routing `publish` from connection `c` would store something.
fn publish_needs_store(core: &Core, c: &Conn, publish: &Publish) -> bool {
    if publish.retain && core.config.retain_available {
        // A retained message is stored (or its topic's cleared), whatever its QoS.
        return true;
    }
    let persistent = session_is_persistent(core, c);
    if let Delivery::ExactlyOnce(id) = publish.delivery
        && persistent
        && c.session
            .and_then(|sid| core.sessions.get(sid))
            .is_some_and(|s| !s.incoming_qos2.contains(&id))
    {
        // Its packet identifier is stored until PUBREL ([MQTT-4.3.3-9]).
        return true;
    }
    let topic = if publish.topic().is_empty() {
        // A Topic Alias names the topic; an unknown one is a violation, which stores nothing.
        let alias = publish.properties.topic_alias.map(|a| a.get());
        let known = alias.and_then(|a| c.aliases.as_ref()?.inbound.get(&a));
        match known {
            Some(topic) => topic.as_str(),
            None => return false,
        }
    } else {
        publish.topic()
    };
    durable_fanout(core, topic, publish.qos())
}

/// Whether a message on `topic` published at `qos` would be stored for some session: QoS 1
/// or 2, and a persistent session subscribes at QoS 1 or 2 (directly, or as a member of a
/// shared group).
pub(crate) fn durable_fanout(core: &Core, topic: &str, qos: QoS) -> bool {
    if qos == QoS::AtMostOnce {
        return false;
    }
    let durable = |sid: SessionId, entry: &SubEntry| {
        entry.options.qos != QoS::AtMostOnce
            && core.sessions.get(sid).is_some_and(|s| s.is_persistent())
    };
    let mut found = false;
    core.router.for_each_match(topic, |m| {
        if found {
            return;
        }
        found = match m {
            Match::Direct { key, value } => durable(key, value),
            Match::Shared { members, .. } => members.iter().any(|(sid, e)| durable(*sid, e)),
        };
    });
    found
}

/// Whether the session of connection `c` is persistent.
fn session_is_persistent(core: &Core, c: &Conn) -> bool {
    c.session
        .and_then(|sid| core.sessions.get(sid))
        .is_some_and(|s| s.is_persistent())
}
