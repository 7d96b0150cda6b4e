//! What the core asks its driver to do, in order, with the persist barrier: store ops are
//! gathered and turned into one `Persist` before the next packet is sent, so that no
//! acknowledgement leaves ahead of the data it confirms.

use std::collections::VecDeque;

use mqtt5_codec::properties::ConnAckProperties;
use mqtt5_codec::{Packet, ProtocolVersion};
use mqtt5_store::StoreOp;

use crate::types::{Action, ConnId, Notice};

/// The actions waiting for the driver, and the store ops of the next `Persist`.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    actions: VecDeque<Action>,
    pending: Vec<StoreOp>,
    /// Connections to disconnect with 0x97 once the current input is handled: slow consumers
    /// whose session queue overflowed under [`crate::Config::disconnect_slow_consumers`].
    kicks: Vec<ConnId>,
    /// What the last [`Notice::QueueMemory`] said.
    queue_memory_full: bool,
}

impl Outbox {
    /// Queues a store op; ops are batched until the next send or the end of the input.
    pub(crate) fn persist(&mut self, op: StoreOp) {
        self.pending.push(op);
    }

    /// Turns pending ops into one `Persist` action.
    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            let ops = core::mem::take(&mut self.pending);
            self.actions.push_back(Action::Persist(ops));
        }
    }

    /// Queues a packet, after any ops it depends on.
    pub(crate) fn send(&mut self, conn: ConnId, packet: Packet) {
        self.flush();
        self.actions.push_back(Action::Send { conn, packet });
    }

    /// Queues the close of a connection, after everything before it.
    pub(crate) fn close(&mut self, conn: ConnId) {
        self.actions.push_back(Action::Close { conn });
    }

    /// Queues another action, after any ops before it.
    pub(crate) fn push(&mut self, action: Action) {
        self.flush();
        self.actions.push_back(action);
    }

    /// Queues a notice for the operator, after everything queued before it.
    pub(crate) fn notice(&mut self, notice: Notice) {
        self.push(Action::Notice(notice));
    }

    /// Reports a change of the queue memory state, if it changed.
    pub(crate) fn queue_memory(&mut self, full: bool, bytes: usize) {
        if full != self.queue_memory_full {
            self.queue_memory_full = full;
            self.notice(Notice::QueueMemory { full, bytes });
        }
    }

    /// Asks for connection `conn` to be disconnected as a slow consumer after this input.
    pub(crate) fn kick(&mut self, conn: ConnId) {
        if !self.kicks.contains(&conn) {
            self.kicks.push(conn);
        }
    }

    /// The slow consumers to disconnect, oldest first.
    pub(crate) fn take_kicks(&mut self) -> Vec<ConnId> {
        core::mem::take(&mut self.kicks)
    }

    /// The next action, in order.
    pub(crate) fn pop(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

/// Makes a packet the broker sends fit the client's Maximum Packet Size (`[MQTT-3.1.2-24]`)
/// by dropping what is optional: first Reason Strings and User Properties
/// (`[MQTT-3.1.2-29]` lets them go), then, for CONNACK, every server property but the
/// Assigned Client Identifier, which the client cannot do without. The fixed parts of these
/// packets are a few bytes, within any Maximum Packet Size a client may send.
pub(crate) fn fit_packet(packet: &mut Packet, version: ProtocolVersion, max: u32) {
    let fits = |p: &Packet| p.encoded_len(version) <= max as usize;
    if fits(packet) {
        return;
    }
    match packet {
        Packet::ConnAck(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
            if !fits(packet)
                && let Packet::ConnAck(a) = packet
            {
                let assigned = a.properties.assigned_client_identifier.take();
                a.properties = ConnAckProperties {
                    assigned_client_identifier: assigned,
                    ..ConnAckProperties::default()
                };
            }
        }
        Packet::Disconnect(d) => {
            d.properties.reason_string = None;
            d.properties.user_properties.clear();
        }
        Packet::SubAck(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
        }
        Packet::UnsubAck(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
        }
        Packet::PubAck(a) => a.properties = Default::default(),
        Packet::PubRec(a) => a.properties = Default::default(),
        Packet::PubRel(a) => a.properties = Default::default(),
        Packet::PubComp(a) => a.properties = Default::default(),
        Packet::Auth(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
        }
        _ => {}
    }
}
