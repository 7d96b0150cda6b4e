//! Sessions (MQTT 5 §4.1): what the broker keeps for a client identifier, connected or not.
//!
//! ```text
//!                CONNECT (new id, or Clean Start)
//!                          |
//!                          v
//!   +---------+  conn lost/DISCONNECT  +---------+  expiry reached   +-------+
//!   | online  | ---------------------> | offline | ----------------> | ended |
//!   +---------+   expiry > 0           +---------+  (will sent now   +-------+
//!        ^    \                             |        if still due)      ^
//!        |     \  expiry == 0               | CONNECT, Clean Start 0    |
//!        |      +---------------------------|---------------------------+
//!        +----------------------------------+  (Session Present = 1)
//! ```
//!
//! Outbound QoS 1 and 2 messages live first in the queue, then in the in-flight window, which
//! the client's Receive Maximum bounds (`[MQTT-3.3.4-7]`):
//!
//! ```text
//!  queue --(window has room)--> Sent --PUBACK--> done                 (QoS 1)
//!                                 \--PUBREC--> Released --PUBCOMP--> done  (QoS 2)
//! ```
//! On reconnect without Clean Start, `Sent` messages are resent with DUP set and `Released`
//! ones as PUBREL, in their original order (`[MQTT-4.4.0-1]`, `[MQTT-4.6.0-1]`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use mqtt5_codec::{PacketId, ProtocolVersion, Publish, QoS, SubscriptionOptions, Will};

use crate::types::{ConnId, Identity};

/// A session's handle in the broker: its index in [`Sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SessionId(pub(crate) u32);

/// What one delivery costs beyond its message, in bytes, as the queue limits count it: the
/// [`Delivery`] itself, its slot in the queue or the window, and a share of their tables.
pub(crate) const DELIVERY_OVERHEAD: usize = 128;

/// The bytes a message takes as the limits count them: its topic, payload and properties.
pub(crate) fn message_size(publish: &Publish) -> usize {
    let properties = if publish.properties.is_empty() {
        0
    } else {
        publish.properties.encoded_len()
    };
    publish.topic().len() + publish.payload().len() + properties
}

/// A message as routed: one allocation shared by every session it goes to.
#[derive(Debug)]
pub(crate) struct Message {
    /// The PUBLISH as received, its topic alias resolved, detached from the read buffer when it
    /// is kept beyond the current call. Its packet identifier (if any) is the publisher's,
    /// never sent on: each delivery gets its own.
    pub(crate) publish: Publish,
    /// The QoS it was published with.
    pub(crate) qos: QoS,
    /// When it expires (Message Expiry Interval, `[MQTT-3.3.2-5]`).
    pub(crate) expires_at: Option<Instant>,
    /// The session that published it, for No Local (`[MQTT-3.8.3-3]`); `None` for retained
    /// copies and `$SYS`.
    pub(crate) origin: Option<SessionId>,
    /// Its id in the store, unique for the broker's lifetime.
    pub(crate) id: u64,
    /// How many stored deliveries refer to it: it is stored with the first and deleted from
    /// the store with the last.
    pub(crate) stored_refs: AtomicU32,
    /// Its size as the limits count it ([`message_size`]).
    pub(crate) size: usize,
    /// How many session queues and windows hold it: the broker-wide queued bytes count it
    /// once, from the first to the last.
    pub(crate) held_refs: AtomicU32,
}

impl Message {
    /// A message published at `qos`, with its size measured.
    pub(crate) fn new(
        publish: Publish,
        qos: QoS,
        expires_at: Option<Instant>,
        origin: Option<SessionId>,
        id: u64,
    ) -> Self {
        Self {
            size: message_size(&publish),
            publish,
            qos,
            expires_at,
            origin,
            id,
            stored_refs: AtomicU32::new(0),
            held_refs: AtomicU32::new(0),
        }
    }

    /// Whether the message has expired at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A message on its way to one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The message.
    pub(crate) message: Arc<Message>,
    /// The QoS it is delivered with: min(published, granted) (`[MQTT-3.8.4-8]`).
    pub(crate) qos: QoS,
    /// The RETAIN flag it is delivered with.
    pub(crate) retain: bool,
    /// The Subscription Identifiers of the subscriptions it matched (`[MQTT-3.3.4-3]`).
    pub(crate) subscription_ids: Vec<NonZeroU32>,
    /// The shared subscription (its whole filter) this delivery came through, if any: it is
    /// handed to another member when this session's connection ends.
    pub(crate) shared: Option<Arc<str>>,
    /// Its sequence number among the session's stored deliveries, once stored (QoS 1 and 2
    /// to a persistent session only).
    pub(crate) seq: Option<u64>,
}

/// Where an in-flight delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// One in-flight delivery.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    /// Its order among the session's in-flight deliveries.
    pub(crate) order: u64,
    /// The delivery.
    pub(crate) delivery: Delivery,
    /// Where it stands.
    pub(crate) stage: Stage,
    /// A PUBLISH still to be resent on this connection: it did not fit the client's Receive
    /// Maximum when the session resumed (`[MQTT-4.9.0-2]`), so it waits for an
    /// acknowledgement to free a slot before it goes out again.
    pub(crate) resend: bool,
}

/// A subscription as the session holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubEntry {
    /// The subscription options.
    pub(crate) options: SubscriptionOptions,
    /// The Subscription Identifier.
    pub(crate) identifier: Option<NonZeroU32>,
}

/// A session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The client identifier.
    pub(crate) client_id: Arc<str>,
    /// The protocol of the client that last owned it.
    pub(crate) protocol: ProtocolVersion,
    /// The identity that owns it; `None` for a session restored from a store that did not
    /// record owners (the next client to resume it claims it).
    pub(crate) owner: Option<Identity>,
    /// The user of the client that last owned it, for the authorizer.
    pub(crate) username: Option<Box<str>>,
    /// The connection, while one is attached.
    pub(crate) conn: Option<ConnId>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub(crate) expiry_interval: u32,
    /// When the session ends, while offline.
    pub(crate) expires_at: Option<Instant>,
    /// Subscriptions by whole filter.
    pub(crate) subscriptions: BTreeMap<String, SubEntry>,
    /// Deliveries waiting for room in the window (or for the client to come back). Changed
    /// only through the methods below, which keep [`Session::held_bytes`].
    queue: VecDeque<Delivery>,
    /// Deliveries in flight, by packet identifier; changed only through the methods below.
    inflight: BTreeMap<PacketId, InFlight>,
    /// The bytes of the queue and the window, as the limits count them (each message's size
    /// plus [`DELIVERY_OVERHEAD`] per delivery).
    pub(crate) held_bytes: usize,
    /// The bytes of its subscriptions' filters, against
    /// [`crate::Config::max_subscription_bytes_per_client`].
    pub(crate) subscription_bytes: usize,
    /// Whether some in-flight PUBLISH may still be marked [`InFlight::resend`].
    pub(crate) resend_pending: bool,
    /// The next outbound packet identifier to try.
    next_packet_id: PacketId,
    /// The next delivery sequence number.
    pub(crate) next_seq: u64,
    /// Inbound QoS 2 packet identifiers awaiting PUBREL (`[MQTT-4.3.3-9]`).
    pub(crate) incoming_qos2: BTreeSet<PacketId>,
    /// The Will Message, while it may still be sent.
    pub(crate) will: Option<Box<Will>>,
    /// When the will is due, once its connection is gone (Will Delay Interval).
    pub(crate) will_at: Option<Instant>,
    /// Messages dropped because the queue was full.
    pub(crate) dropped: u64,
    /// Whether the store holds a record of this session.
    pub(crate) stored: bool,
}

impl Session {
    /// A new, empty session.
    pub(crate) fn new(client_id: Arc<str>, protocol: ProtocolVersion) -> Self {
        Self {
            client_id,
            protocol,
            owner: None,
            username: None,
            conn: None,
            expiry_interval: 0,
            expires_at: None,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            inflight: BTreeMap::new(),
            held_bytes: 0,
            subscription_bytes: 0,
            resend_pending: false,
            next_packet_id: PacketId::MIN,
            next_seq: 0,
            incoming_qos2: BTreeSet::new(),
            will: None,
            will_at: None,
            dropped: 0,
            stored: false,
        }
    }

    /// Whether the session outlives its connection. (Its interval changes through
    /// [`Sessions::set_expiry`], which counts persistent sessions; a restore sets it directly
    /// and counts them all afterwards.)
    pub(crate) const fn is_persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// A free outbound packet identifier, or `None` when all 65,535 are in flight.
    pub(crate) fn allocate_packet_id(&mut self) -> Option<PacketId> {
        if self.inflight.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = id.next();
            if !self.inflight.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// Takes a sequence number.
    pub(crate) const fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    // ---- The queue and the window. Every change goes through these, so that the session's
    // held bytes and the broker-wide total (`total`, counting each message once) stay true.

    /// Counts a delivery that joins the queue or the window.
    fn hold(&mut self, d: &Delivery, total: &mut usize) {
        self.held_bytes += d.message.size + DELIVERY_OVERHEAD;
        *total += DELIVERY_OVERHEAD;
        if d.message.held_refs.fetch_add(1, Ordering::Relaxed) == 0 {
            *total += d.message.size;
        }
    }

    /// Counts a delivery that leaves the queue or the window.
    fn release(&mut self, d: &Delivery, total: &mut usize) {
        self.held_bytes = self
            .held_bytes
            .saturating_sub(d.message.size + DELIVERY_OVERHEAD);
        *total = total.saturating_sub(DELIVERY_OVERHEAD);
        if d.message.held_refs.fetch_sub(1, Ordering::Relaxed) == 1 {
            *total = total.saturating_sub(d.message.size);
        }
    }

    /// The queue, oldest first.
    pub(crate) const fn queue(&self) -> &VecDeque<Delivery> {
        &self.queue
    }

    /// The window, by packet identifier.
    pub(crate) const fn inflight(&self) -> &BTreeMap<PacketId, InFlight> {
        &self.inflight
    }

    /// An in-flight delivery, to change its stage (its bytes stay as they are).
    pub(crate) fn inflight_mut(&mut self, id: PacketId) -> Option<&mut InFlight> {
        self.inflight.get_mut(&id)
    }

    /// Appends a delivery to the queue.
    pub(crate) fn push_queued(&mut self, d: Delivery, total: &mut usize) {
        self.hold(&d, total);
        self.queue.push_back(d);
    }

    /// Takes the oldest queued delivery.
    pub(crate) fn pop_queued(&mut self, total: &mut usize) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.release(&d, total);
        Some(d)
    }

    /// Takes every queued delivery `take` says yes to, keeping the order of the rest.
    pub(crate) fn take_queued(
        &mut self,
        mut take: impl FnMut(&Delivery) -> bool,
        total: &mut usize,
    ) -> Vec<Delivery> {
        let (taken, kept): (Vec<Delivery>, Vec<Delivery>) =
            self.queue.drain(..).partition(|d| take(d));
        self.queue.extend(kept);
        for d in &taken {
            self.release(d, total);
        }
        taken
    }

    /// Puts a delivery in the window under packet identifier `id`.
    pub(crate) fn insert_inflight(&mut self, id: PacketId, f: InFlight, total: &mut usize) {
        self.hold(&f.delivery, total);
        if let Some(old) = self.inflight.insert(id, f) {
            self.release(&old.delivery, total);
        }
    }

    /// Takes the in-flight delivery of packet identifier `id`.
    pub(crate) fn remove_inflight(&mut self, id: PacketId, total: &mut usize) -> Option<InFlight> {
        let f = self.inflight.remove(&id)?;
        self.release(&f.delivery, total);
        Some(f)
    }

    /// Empties the window and the queue: in-flight deliveries first, by packet identifier,
    /// then the queue in order.
    pub(crate) fn take_all(&mut self, total: &mut usize) -> Vec<Delivery> {
        let inflight = core::mem::take(&mut self.inflight);
        let mut all: Vec<Delivery> = inflight.into_values().map(|f| f.delivery).collect();
        all.extend(self.queue.drain(..));
        for d in &all {
            self.release(d, total);
        }
        all
    }
}

/// Every session: a slab indexed by [`SessionId`], its free slots, the index by client
/// identifier, and the broker-wide bytes their queues and windows hold.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    slab: Vec<Option<Session>>,
    free: Vec<SessionId>,
    by_client: HashMap<Arc<str>, SessionId>,
    /// Sessions whose queues hold messages with a Message Expiry Interval.
    expiring: BTreeSet<SessionId>,
    /// The bytes of messages held in queues and windows, each message counted once, plus
    /// [`DELIVERY_OVERHEAD`] per delivery: against
    /// [`crate::Config::max_queued_bytes_total`].
    queued_bytes: usize,
    /// How many sessions are persistent, against [`crate::Config::max_persistent_sessions`].
    persistent: usize,
}

impl Sessions {
    /// Session `sid`.
    pub(crate) fn get(&self, sid: SessionId) -> Option<&Session> {
        self.slab.get(sid.0 as usize).and_then(Option::as_ref)
    }

    /// Session `sid`, to change (its queue and window only through [`Sessions::held`]).
    pub(crate) fn get_mut(&mut self, sid: SessionId) -> Option<&mut Session> {
        self.slab.get_mut(sid.0 as usize).and_then(Option::as_mut)
    }

    /// Session `sid` with the broker-wide queued bytes, for a change of its queue or window.
    pub(crate) fn held(&mut self, sid: SessionId) -> Option<(&mut Session, &mut usize)> {
        let s = self.slab.get_mut(sid.0 as usize)?.as_mut()?;
        Some((s, &mut self.queued_bytes))
    }

    /// The session of `client_id`.
    pub(crate) fn find(&self, client_id: &str) -> Option<SessionId> {
        self.by_client.get(client_id).copied()
    }

    /// Whether a session has `client_id`.
    pub(crate) fn contains(&self, client_id: &str) -> bool {
        self.by_client.contains_key(client_id)
    }

    /// The session of `client_id`, created empty if there is none; and whether it existed.
    pub(crate) fn get_or_create(
        &mut self,
        client_id: &Arc<str>,
        protocol: ProtocolVersion,
    ) -> (SessionId, bool) {
        if let Some(&sid) = self.by_client.get(client_id) {
            return (sid, true);
        }
        let session = Session::new(client_id.clone(), protocol);
        let sid = if let Some(sid) = self.free.pop() {
            if let Some(slot) = self.slab.get_mut(sid.0 as usize) {
                *slot = Some(session);
            }
            sid
        } else {
            let sid = SessionId(u32::try_from(self.slab.len()).unwrap_or(u32::MAX));
            self.slab.push(Some(session));
            sid
        };
        self.by_client.insert(client_id.clone(), sid);
        (sid, false)
    }

    /// Takes session `sid` out: its slot and client identifier are free again. Its queue and
    /// window still count in the queued bytes until the caller empties them
    /// ([`Session::take_all`]).
    pub(crate) fn remove(&mut self, sid: SessionId) -> Option<Session> {
        let s = self.slab.get_mut(sid.0 as usize).and_then(Option::take)?;
        self.by_client.remove(&s.client_id);
        self.free.push(sid);
        if s.is_persistent() {
            self.persistent = self.persistent.saturating_sub(1);
        }
        Some(s)
    }

    /// Sets session `sid`'s Session Expiry Interval (0: it ends with its connection), keeping
    /// the count of persistent sessions.
    pub(crate) fn set_expiry(&mut self, sid: SessionId, secs: u32) {
        let Some(s) = self.slab.get_mut(sid.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        let was = s.is_persistent();
        s.expiry_interval = secs;
        match (was, s.is_persistent()) {
            (false, true) => self.persistent += 1,
            (true, false) => self.persistent = self.persistent.saturating_sub(1),
            _ => {}
        }
    }

    /// How many sessions are persistent.
    pub(crate) const fn persistent(&self) -> usize {
        self.persistent
    }

    /// Counts the persistent sessions again, after a restore set their intervals directly.
    pub(crate) fn recount_persistent(&mut self) {
        self.persistent = self.iter().filter(|s| s.is_persistent()).count();
    }

    /// The broker-wide queued bytes, to count a removed session's deliveries out.
    pub(crate) const fn queued_bytes_mut(&mut self) -> &mut usize {
        &mut self.queued_bytes
    }

    /// How many sessions exist.
    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Every session.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slab.iter().flatten()
    }

    /// The broker-wide queued bytes.
    pub(crate) const fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Notes that session `sid`'s queue holds a message that may expire.
    pub(crate) fn mark_expiring(&mut self, sid: SessionId) {
        self.expiring.insert(sid);
    }

    /// The sessions whose queues may hold expiring messages; the set starts empty again.
    pub(crate) fn take_expiring(&mut self) -> BTreeSet<SessionId> {
        core::mem::take(&mut self.expiring)
    }

    /// Whether some session's queue may hold expiring messages.
    pub(crate) fn any_expiring(&self) -> bool {
        !self.expiring.is_empty()
    }
}
