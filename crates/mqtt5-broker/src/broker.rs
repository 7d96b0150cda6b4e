//! The [`Broker`] state machine: inputs, outputs, connections and timers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt5_codec::properties::ConnAckProperties;
use mqtt5_codec::{
    Auth, AuthReason, ConnAck, ConnAckReason, Connect, Disconnect, DisconnectReason, MqttString,
    Packet, PingResp, ProtocolVersion, QoS,
};
use mqtt5_store::{ClientRecord, SessionRecord, StoreOp};

use crate::acl::Authorizer;
use crate::auth::{
    AuthExchange, AuthStep, AuthVerdict, Authenticator, ClientInfo, EnhancedAuthenticator,
    RandomSource,
};
use crate::config::Config;
use crate::retained::RetainedTree;
use crate::session::{Message, Session, SubEntry};
use crate::stats::Stats;
use crate::topic_tree::{SessionId, TopicTree};
use crate::types::{Action, ConnId, Error, PeerInfo};

/// The services the core calls out to, handed in at construction.
pub struct Services {
    /// Checks User Name and Password. `None`: any User Name is accepted (anonymous access is
    /// still governed by [`Config::allow_anonymous`]).
    pub authenticator: Option<Box<dyn Authenticator>>,
    /// Decides who may publish, subscribe and receive what.
    pub authorizer: Box<dyn Authorizer>,
    /// Enhanced authentication methods, by method name (MQTT 5 §4.12).
    pub enhanced: Vec<Box<dyn EnhancedAuthenticator>>,
    /// Random bytes for assigned client identifiers and authentication nonces.
    pub random: Box<dyn RandomSource>,
}

impl core::fmt::Debug for Services {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Services")
            .field("authenticator", &self.authenticator.is_some())
            .field("enhanced", &self.enhanced.len())
            .finish_non_exhaustive()
    }
}

/// Where a connection stands.
pub(crate) enum ConnState {
    /// Waiting for CONNECT (`[MQTT-3.1.0-1]`).
    AwaitConnect,
    /// In an enhanced authentication exchange started by CONNECT.
    Authenticating {
        /// The CONNECT, completed when the exchange succeeds.
        connect: Box<Connect>,
        /// The exchange.
        exchange: Box<dyn AuthExchange>,
        /// The Authentication Method (boxed: it is rare, and every `Conn` holds a state).
        method: Box<MqttString>,
    },
    /// CONNACK sent; the session is attached.
    Connected,
    /// Connected, and re-authenticating (AUTH 0x19).
    Reauthenticating {
        /// The exchange.
        exchange: Box<dyn AuthExchange>,
        /// The Authentication Method (boxed, as above).
        method: Box<MqttString>,
    },
}

/// One network connection.
pub(crate) struct Conn {
    /// The peer.
    /// (Boxed, and dropped once CONNECT is accepted: only authentication and the client
    /// record use it, and an idle connection should cost little.)
    pub(crate) peer: Option<Box<PeerInfo>>,
    /// Its state.
    pub(crate) state: ConnState,
    /// The protocol its CONNECT announced.
    pub(crate) protocol: ProtocolVersion,
    /// The session, once connected.
    pub(crate) session: Option<SessionId>,
    /// 1.5 × the keep-alive in force, in milliseconds, 0 when keep-alive is off
    /// (`[MQTT-3.1.2-22]`). At most 1.5 × 65,535 s, which fits.
    pub(crate) keep_alive_ms: u32,
    /// When the last packet arrived.
    pub(crate) last_seen: Instant,
    /// The tick this connection's check is armed for in [`Broker::keep_alive_due`] (0: none):
    /// the connect timeout until CONNECT completes, then the keep-alive. Entries for other
    /// ticks are stale and skipped.
    pub(crate) keep_alive_tick: u64,
    /// The client's Receive Maximum, capped by the configuration: the in-flight window.
    pub(crate) window: u16,
    /// The client's Maximum Packet Size (`[MQTT-3.1.2-24]`).
    pub(crate) max_packet_size: u32,
    /// The client's Topic Alias Maximum: how many aliases the broker may set towards it.
    pub(crate) alias_max: u16,
    /// The topic aliases of the connection, allocated with the first one: most connections
    /// never use any, and an idle connection should cost little.
    pub(crate) aliases: Option<Box<Aliases>>,
    /// Whether the client asked for Reason Strings and User Properties on failures.
    pub(crate) problem_information: bool,
    /// The driver's buffer towards this client is full: deliveries wait in the session queue.
    pub(crate) congested: bool,
    /// The Authentication Method the connection authenticated with, if any: a
    /// re-authentication must use the same one (`[MQTT-4.12.1-1]`).
    pub(crate) auth_method: Option<Box<MqttString>>,
}

/// The topic aliases of one connection.
#[derive(Default)]
pub(crate) struct Aliases {
    /// Aliases the client set towards the broker (`[MQTT-3.3.2-7]`: per connection).
    pub(crate) inbound: HashMap<u16, mqtt5_codec::TopicName>,
    /// Aliases the broker set towards the client, by topic.
    pub(crate) outbound: HashMap<Arc<str>, NonZeroU16>,
}

/// The resolution of keep-alive checks, in milliseconds: a connection is closed at most this
/// long after one and a half times its Keep Alive (`[MQTT-3.1.2-22]`) has passed.
pub(crate) const KEEP_ALIVE_TICK_MS: u64 = 100;

/// The timers of the core, in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A will's delay runs out.
    Will(SessionId),
    /// An offline session expires.
    SessionExpiry(SessionId),
    /// `$SYS` statistics are due.
    Sys,
    /// Expired messages are dropped from offline queues and the retained store.
    ExpirySweep,
}

/// How a connection ends, as far as its session and will are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// DISCONNECT 0x00 (or 3.1.1 DISCONNECT): the will is discarded (`[MQTT-3.1.2-10]`).
    Normal,
    /// Any other end: the will is published (`[MQTT-3.1.2-8]`), after its delay.
    Abnormal,
    /// The broker is stopping: the session and its will stay as they are, to be restored
    /// (the will falls due at the next start, as for a client that lost its connection).
    Shutdown,
}

/// The broker core: a sans-IO state machine (`docs/architecture.md`).
///
/// Feed it with the `handle_*` methods, then drain [`Broker::poll_action`] and call
/// [`Broker::handle_timeout`] at [`Broker::poll_timeout`]. It never reads a clock: every input
/// takes `now`.
pub struct Broker {
    pub(crate) config: Config,
    pub(crate) authenticator: Option<Box<dyn Authenticator>>,
    pub(crate) authorizer: Box<dyn Authorizer>,
    pub(crate) enhanced: Vec<Box<dyn EnhancedAuthenticator>>,
    pub(crate) random: Box<dyn RandomSource>,
    /// The instant and wall-clock time (ms since the epoch) the broker started at.
    pub(crate) epoch: (Instant, u64),
    /// Connections, boxed: the table's empty slots then cost a pointer, not a `Conn`.
    pub(crate) conns: HashMap<ConnId, Box<Conn>, crate::topic_tree::IdHash>,
    pub(crate) sessions: Vec<Option<Session>>,
    pub(crate) free_sessions: Vec<SessionId>,
    pub(crate) by_client: HashMap<Arc<str>, SessionId>,
    pub(crate) tree: TopicTree<SubEntry>,
    pub(crate) retained: RetainedTree<Arc<Message>>,
    pub(crate) timers: BTreeSet<(Instant, Timer)>,
    /// Per-connection checks, by tick ([`KEEP_ALIVE_TICK_MS`] after `epoch`, rounded up): the
    /// connect timeout, then the keep-alive. A connection costs one `ConnId` in a bucket
    /// rather than an entry of `timers`; a check runs at most one tick late.
    pub(crate) keep_alive_due: BTreeMap<u64, Vec<ConnId>>,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) pending_ops: Vec<StoreOp>,
    pub(crate) stats: Stats,
    /// Round-robin counter for shared subscriptions.
    pub(crate) share_counter: usize,
    /// The last message id handed out.
    pub(crate) last_message_id: u64,
    /// When the next expiry sweep runs, if one is scheduled.
    pub(crate) expiry_sweep: Option<Instant>,
    /// When the last expiry sweep ran: sweeps are at least a second apart.
    pub(crate) last_sweep: Instant,
    /// Sessions whose queues hold messages with a Message Expiry Interval.
    pub(crate) expiring_sessions: BTreeSet<SessionId>,
    /// Whether some retained message has a Message Expiry Interval.
    pub(crate) retained_expiring: bool,
    /// The store reported that it is full: new persistent work is refused.
    pub(crate) storage_full: bool,
    /// Connections that completed CONNECT.
    pub(crate) connected: usize,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.conns.len())
            .field("sessions", &self.by_client.len())
            .field("subscriptions", &self.tree.len())
            .field("retained", &self.retained.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with no sessions, started at `now`, which is `wall_clock_ms` milliseconds
    /// after the Unix epoch (used only for the store's connect and disconnect records).
    ///
    /// # Errors
    /// [`Error::Config`] when a limit is zero where MQTT forbids it.
    pub fn new(
        config: Config,
        services: Services,
        now: Instant,
        wall_clock_ms: u64,
    ) -> Result<Self, Error> {
        if config.receive_maximum == 0 || config.max_inflight == 0 {
            return Err(Error::Config(
                "receive_maximum and max_inflight must be at least 1",
            ));
        }
        if config.max_packet_size == 0 {
            return Err(Error::Config("max_packet_size must be at least 1"));
        }
        let mut broker = Self {
            config,
            authenticator: services.authenticator,
            authorizer: services.authorizer,
            enhanced: services.enhanced,
            random: services.random,
            epoch: (now, wall_clock_ms),
            conns: HashMap::default(),
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            by_client: HashMap::new(),
            tree: TopicTree::new(),
            retained: RetainedTree::new(),
            timers: BTreeSet::new(),
            keep_alive_due: BTreeMap::new(),
            actions: VecDeque::new(),
            pending_ops: Vec::new(),
            stats: Stats::default(),
            share_counter: 0,
            last_message_id: 0,
            expiry_sweep: None,
            last_sweep: now,
            expiring_sessions: BTreeSet::new(),
            retained_expiring: false,
            storage_full: false,
            connected: 0,
        };
        if let Some(every) = broker.config.sys_interval {
            broker.timers.insert((now + every, Timer::Sys));
        }
        Ok(broker)
    }

    /// The configuration in force.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the authorizer, for example after the access rules were reloaded. It applies
    /// from the next check on: the next PUBLISH, SUBSCRIBE and delivery, messages already
    /// queued for a session included (they are checked again when they leave the queue).
    pub fn set_authorizer(&mut self, authorizer: Box<dyn Authorizer>) {
        self.authorizer = authorizer;
    }

    /// Replaces the password authenticator, for example after the users were reloaded. It
    /// applies to the next CONNECT; connected clients stay connected.
    pub fn set_authenticator(&mut self, authenticator: Option<Box<dyn Authenticator>>) {
        self.authenticator = authenticator;
    }

    /// Replaces the enhanced authentication methods (MQTT 5 §4.12). Exchanges already under
    /// way finish with the method they started with.
    pub fn set_enhanced(&mut self, enhanced: Vec<Box<dyn EnhancedAuthenticator>>) {
        self.enhanced = enhanced;
    }

    /// Counters since start-up.
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts bytes the driver moved, for `$SYS/broker/bytes/...`.
    pub const fn record_traffic(&mut self, received: u64, sent: u64) {
        self.stats.bytes_received += received;
        self.stats.bytes_sent += sent;
    }

    /// A new network connection. The connect timeout starts now.
    ///
    /// # Errors
    /// [`Error::ConnectionExists`] when `conn` is still open.
    pub fn handle_connection(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: PeerInfo,
    ) -> Result<(), Error> {
        if self.conns.contains_key(&conn) {
            return Err(Error::ConnectionExists(conn));
        }
        self.conns.insert(
            conn,
            Box::new(Conn {
                peer: Some(Box::new(peer)),
                state: ConnState::AwaitConnect,
                protocol: ProtocolVersion::V5,
                session: None,
                keep_alive_ms: 0,
                last_seen: now,
                keep_alive_tick: 0,
                window: self.config.max_inflight,
                max_packet_size: mqtt5_codec::MAX_PACKET_SIZE,
                alias_max: 0,
                aliases: None,
                problem_information: true,
                congested: false,
                auth_method: None,
            }),
        );
        // The connect timeout: CONNECT (and its AUTH exchange) must complete by then.
        self.arm_keep_alive(conn, now + self.config.connect_timeout);
        Ok(())
    }

    /// A packet decoded on `conn`.
    pub fn handle_packet(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        let connected = matches!(
            c.state,
            ConnState::Connected | ConnState::Reauthenticating { .. }
        );
        match packet {
            Packet::Connect(connect) => self.on_connect(now, conn, connect),
            Packet::Auth(auth) => self.on_auth(now, conn, *auth),
            _ if !connected => {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT; during an AUTH exchange
                // only AUTH may follow ([MQTT-4.12.0-4]... the exchange is not complete).
                let rule = "[MQTT-3.1.0-1] the first packet must be CONNECT";
                self.fail_unconnected(now, conn, rule);
            }
            Packet::Publish(p) => self.on_publish(now, conn, p),
            Packet::PubAck(a) => self.on_puback(now, conn, a.packet_id.get()),
            Packet::PubRec(r) => self.on_pubrec(now, conn, r),
            Packet::PubRel(r) => self.on_pubrel(now, conn, r.packet_id),
            Packet::PubComp(c) => self.on_pubcomp(now, conn, c.packet_id.get()),
            Packet::Subscribe(s) => self.on_subscribe(now, conn, s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(now, conn, u),
            Packet::PingReq(_) => self.send(conn, Packet::PingResp(PingResp)),
            Packet::Disconnect(d) => self.on_disconnect(now, conn, *d),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp(_) => {
                self.protocol_violation(
                    now,
                    conn,
                    DisconnectReason::ProtocolError,
                    "a client sent a server-only packet",
                );
            }
        }
        self.flush_ops();
    }

    /// The codec rejected the bytes of `conn`: the stream is unusable. An MQTT 5 client that
    /// has connected gets DISCONNECT with the error's reason code (MQTT 5 §4.13); any other
    /// connection is closed (`[MQTT-4.13.1-1]`).
    ///
    /// A CONNECT with an unknown protocol level is answered with CONNACK "unsupported protocol
    /// version" before the close: the driver encodes that packet in the 3.1.1 form (return
    /// code 1), as its decoder never learnt a version for the connection.
    pub fn handle_decode_error(&mut self, now: Instant, conn: ConnId, err: &mqtt5_codec::Error) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let code = err.reason_code().as_u8();
        let reason = DisconnectReason::from_u8(code).unwrap_or(DisconnectReason::MalformedPacket);
        if matches!(c.state, ConnState::AwaitConnect) {
            if matches!(err, mqtt5_codec::Error::UnsupportedProtocolLevel(_)) {
                // 3.1.1 [MQTT-3.1.2-2] requires CONNACK return code 1 before closing, and
                // MQTT 5 allows 0x84 ([MQTT-3.1.2-2]); the driver encodes it in the 3.1.1
                // form, which clients of every version can read.
                self.refuse(conn, ConnAckReason::UnsupportedProtocolVersion, None);
            } else {
                self.close_unconnected(conn);
            }
        } else {
            self.protocol_violation(now, conn, reason, "malformed packet");
        }
        self.flush_ops();
    }

    /// The network connection is gone (reset, EOF, write error). Its will is published
    /// (`[MQTT-3.1.2-8]`).
    pub fn handle_connection_lost(&mut self, now: Instant, conn: ConnId) {
        self.end_connection(now, conn, Ending::Abnormal, None, "connection lost");
        self.flush_ops();
    }

    /// The broker is shutting down: every connection is closed, MQTT 5 clients first get
    /// DISCONNECT 0x8B (Server shutting down). Sessions stay as they are, in memory and in
    /// the store, for the next start; the driver should commit the store after this.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let connected = self.conns.get(&conn).is_some_and(|c| c.session.is_some());
            if connected {
                self.end_connection(
                    now,
                    conn,
                    Ending::Shutdown,
                    Some(DisconnectReason::ServerShuttingDown),
                    "server shutting down",
                );
            } else {
                self.close_unconnected(conn);
            }
        }
        self.flush_ops();
    }

    /// The driver's output buffer towards `conn` filled up (`true`: the client reads too
    /// slowly) or drained (`false`). While it is congested, messages for the client wait in its
    /// session queue instead of going to the driver (bounded by
    /// [`Config::max_queued_messages`], then dropped and counted per the queue policy, or the
    /// client is disconnected with 0x97 if [`Config::disconnect_slow_consumers`] is set); when
    /// it drains, the queue is sent.
    pub fn handle_congestion(&mut self, now: Instant, conn: ConnId, congested: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.congested = congested;
        if !congested && let Some(sid) = c.session {
            self.pump(now, sid);
        }
        self.flush_ops();
    }

    /// The store is full (`true`), or has accepted writes again (`false`). While it is full
    /// the broker keeps serving what needs no new storage and refuses new persistent work:
    /// - a CONNECT that would create a persistent session: CONNACK 0x97 (3.1.1: return code 3);
    /// - a QoS 1 or 2 PUBLISH from an MQTT 5 client: PUBACK / PUBREC 0x97 (3.1.1 has no way to
    ///   refuse one; it is routed as usual);
    /// - a retained message: not stored (a QoS 1 or 2 one is refused as above);
    /// - a new subscription of a persistent session: SUBACK 0x97.
    pub fn handle_storage_full(&mut self, full: bool) {
        self.storage_full = full;
    }

    /// Whether the broker is refusing new persistent work (see
    /// [`Broker::handle_storage_full`]).
    pub const fn storage_full(&self) -> bool {
        self.storage_full
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let timer_at = self.timers.first().map(|&(at, _)| at);
            let tick = self.keep_alive_due.first_key_value().map(|(&t, _)| t);
            let tick_at = tick.map(|t| self.tick_instant(t));
            // The earlier of the two tables first; a keep-alive bucket on a tie.
            if let (Some(tick), Some(at)) = (tick, tick_at)
                && at <= now
                && timer_at.is_none_or(|t| at <= t)
            {
                let conns = self.keep_alive_due.remove(&tick).unwrap_or_default();
                for conn in conns {
                    self.keep_alive_check(now, conn, tick);
                }
                continue;
            }
            let Some(&(at, timer)) = self.timers.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.timers.remove(&(at, timer));
            match timer {
                Timer::Will(sid) => self.will_due(now, sid, at),
                Timer::SessionExpiry(sid) => self.session_expiry_due(now, sid, at),
                Timer::ExpirySweep => self.sweep_expired(now),
                Timer::Sys => {
                    self.publish_sys(now);
                    if let Some(every) = self.config.sys_interval {
                        self.timers.insert((now + every, Timer::Sys));
                    }
                }
            }
        }
        self.flush_ops();
    }

    /// The next action to run, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Broker::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|&(at, _)| at);
        let tick = self
            .keep_alive_due
            .first_key_value()
            .map(|(&t, _)| self.tick_instant(t));
        match (timer, tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The instant of keep-alive tick `tick`.
    fn tick_instant(&self, tick: u64) -> Instant {
        let millis = tick.saturating_mul(KEEP_ALIVE_TICK_MS);
        self.epoch.0 + Duration::from_millis(millis)
    }

    /// Arms the check of `conn` (connect timeout or keep-alive) for `due`, in the first tick
    /// at or after it; an earlier arming becomes stale.
    fn arm_keep_alive(&mut self, conn: ConnId, due: Instant) {
        let since = due.saturating_duration_since(self.epoch.0);
        let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        let tick = millis.div_ceil(KEEP_ALIVE_TICK_MS).max(1);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.keep_alive_tick = tick;
            self.keep_alive_due.entry(tick).or_default().push(conn);
        }
    }

    /// How many connections have completed CONNECT.
    pub const fn connected_clients(&self) -> usize {
        self.connected
    }

    /// How many sessions exist, connected or not.
    pub fn session_count(&self) -> usize {
        self.by_client.len()
    }

    /// How many messages wait in session queues, and how many are in flight, over all
    /// sessions. It walks every session: call it for metrics, not per packet.
    pub fn queued_and_inflight(&self) -> (usize, usize) {
        self.sessions.iter().flatten().fold((0, 0), |(q, f), s| {
            (q + s.queue.len(), f + s.inflight.len())
        })
    }

    /// How many subscriptions exist.
    pub fn subscription_count(&self) -> usize {
        self.tree.len()
    }

    /// How many retained messages exist.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    // ---- output helpers ----

    /// Queues a packet, after any ops it depends on.
    pub(crate) fn send(&mut self, conn: ConnId, mut packet: Packet) {
        self.flush_ops();
        if matches!(packet, Packet::Publish(_)) {
            self.stats.messages_sent += 1;
        } else if let Some(c) = self.conns.get(&conn) {
            // PUBLISH is sized where it is built; other packets drop optional properties.
            fit_packet(&mut packet, c.protocol, c.max_packet_size);
        }
        self.actions.push_back(Action::Send { conn, packet });
    }

    /// Queues a store op; ops are batched until the next send or the end of the input.
    pub(crate) fn persist(&mut self, op: StoreOp) {
        self.pending_ops.push(op);
    }

    /// Turns pending ops into one `Persist` action.
    pub(crate) fn flush_ops(&mut self) {
        if !self.pending_ops.is_empty() {
            let ops = core::mem::take(&mut self.pending_ops);
            self.actions.push_back(Action::Persist(ops));
        }
    }
    /// A fresh message id.
    pub(crate) const fn next_message_id(&mut self) -> u64 {
        self.last_message_id += 1;
        self.last_message_id
    }

    /// Wall-clock milliseconds at `now`.
    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch.0);
        self.epoch.1 + u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn session(&self, sid: SessionId) -> Option<&Session> {
        self.sessions.get(sid.0 as usize).and_then(Option::as_ref)
    }

    pub(crate) fn session_mut(&mut self, sid: SessionId) -> Option<&mut Session> {
        self.sessions
            .get_mut(sid.0 as usize)
            .and_then(Option::as_mut)
    }

    // ---- connection lifecycle ----

    /// Closes a connection that never completed CONNECT: no CONNACK is owed.
    fn close_unconnected(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.actions.push_back(Action::Close { conn });
    }

    fn fail_unconnected(&mut self, now: Instant, conn: ConnId, rule: &'static str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if matches!(c.state, ConnState::AwaitConnect) {
            self.close_unconnected(conn);
        } else {
            self.protocol_violation(now, conn, DisconnectReason::ProtocolError, rule);
        }
    }

    fn keep_alive_check(&mut self, now: Instant, conn: ConnId, tick: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.keep_alive_tick != tick {
            // A stale entry: the connection was armed again since.
            return;
        }
        c.keep_alive_tick = 0;
        if c.session.is_none() {
            // The connect timeout: CONNECT (and its AUTH exchange) did not complete.
            self.close_unconnected(conn);
            return;
        }
        if c.keep_alive_ms == 0 {
            return;
        }
        let due = c.last_seen + Duration::from_millis(u64::from(c.keep_alive_ms));
        if due > now {
            self.arm_keep_alive(conn, due);
            return;
        }
        // [MQTT-3.1.2-22]: no packet within 1.5 × Keep Alive.
        self.protocol_violation(
            now,
            conn,
            DisconnectReason::KeepAliveTimeout,
            "keep alive timeout",
        );
    }

    /// A violation by a connected client: DISCONNECT with `reason` (MQTT 5 only,
    /// `[MQTT-4.13.2-1]`), then close; the will is published.
    pub(crate) fn protocol_violation(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: DisconnectReason,
        why: &'static str,
    ) {
        self.stats.protocol_errors += 1;
        self.end_connection(now, conn, Ending::Abnormal, Some(reason), why);
    }

    /// Ends a connection: optionally sends DISCONNECT, closes it, detaches its session, and
    /// handles the will and the session's expiry.
    pub(crate) fn end_connection(
        &mut self,
        now: Instant,
        conn: ConnId,
        ending: Ending,
        disconnect: Option<DisconnectReason>,
        why: &str,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if c.session.is_some() {
            self.connected = self.connected.saturating_sub(1);
        }
        if let Some(reason) = disconnect
            && c.protocol.is_v5()
            && c.session.is_some()
        {
            let mut d = Packet::Disconnect(Box::new(Disconnect::new(reason)));
            if c.problem_information
                && let Packet::Disconnect(inner) = &mut d
            {
                inner.properties.reason_string = MqttString::try_from(why).ok();
            }
            fit_packet(&mut d, c.protocol, c.max_packet_size);
            self.send(conn, d);
        }
        self.actions.push_back(Action::Close { conn });
        let Some(sid) = c.session else {
            return;
        };
        let wall = self.config.client_records.then(|| self.wall_ms(now));
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        if s.conn != Some(conn) {
            return;
        }
        s.conn = None;
        if let Some(wall) = wall {
            let client_id = s.client_id.to_string();
            self.persist(StoreOp::ClientDisconnected {
                client_id,
                at_ms: wall,
                reason: why.to_owned(),
            });
        }
        // The will: discarded on a normal disconnect, otherwise due after its delay.
        let mut will_now = false;
        if let Some(s) = self.session_mut(sid) {
            match ending {
                Ending::Shutdown => {}
                Ending::Normal => s.will = None,
                Ending::Abnormal => {
                    if let Some(will) = &s.will {
                        let delay = will.properties.will_delay_interval.unwrap_or(0);
                        if delay == 0 {
                            will_now = true;
                        } else {
                            let at = now + Duration::from_secs(u64::from(delay));
                            s.will_at = Some(at);
                            self.timers.insert((at, Timer::Will(sid)));
                        }
                    }
                }
            }
        }
        if will_now {
            self.publish_will(now, sid);
        }
        if ending == Ending::Shutdown {
            // Kept as connected-at-stop: restore starts its expiry and its will.
            return;
        }
        self.hand_over_shared(now, sid);
        self.start_expiry(now, sid);
    }

    /// Starts the expiry of a session that has just lost its connection.
    fn start_expiry(&mut self, now: Instant, sid: SessionId) {
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        match s.expiry_interval {
            0 => self.end_session(now, sid),
            u32::MAX => self.save_session(sid, None),
            secs => {
                let at = now + Duration::from_secs(u64::from(secs));
                s.expires_at = Some(at);
                self.timers.insert((at, Timer::SessionExpiry(sid)));
                let wall = self.wall_ms(at);
                self.save_session(sid, Some(wall));
            }
        }
    }

    /// Persists a session's own record (persistent sessions only).
    pub(crate) fn save_session(&mut self, sid: SessionId, expires_at_ms: Option<u64>) {
        let Some(s) = self.session_mut(sid) else {
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
            owner: None,
        };
        self.persist(StoreOp::SessionSaved(record));
    }

    fn will_due(&mut self, now: Instant, sid: SessionId, at: Instant) {
        if self.session(sid).is_some_and(|s| s.will_at == Some(at)) {
            self.publish_will(now, sid);
        }
    }

    fn session_expiry_due(&mut self, now: Instant, sid: SessionId, at: Instant) {
        if self
            .session(sid)
            .is_some_and(|s| s.conn.is_none() && s.expires_at == Some(at))
        {
            self.end_session(now, sid);
        }
    }

    /// Publishes the session's will now, if it still has one.
    pub(crate) fn publish_will(&mut self, now: Instant, sid: SessionId) {
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        if let Some(at) = s.will_at.take() {
            self.timers.remove(&(at, Timer::Will(sid)));
        }
        let Some(s) = self.session_mut(sid) else {
            return;
        };
        let Some(will) = s.will.take() else {
            return;
        };
        let client = s.client_id.clone();
        let username = s.username.clone();
        let info = ClientInfo {
            client_id: &client,
            username: username.as_deref(),
        };
        // A will is a publication by its client: the ACL applies.
        if crate::publish::is_broker_topic(will.topic.as_str())
            || !self.authorizer.can_publish(&info, will.topic.as_str())
        {
            self.stats.denied_publishes += 1;
            self.resave_session(sid);
            return;
        }
        let publish = crate::publish::will_to_publish(&will);
        self.stats.messages_received += 1;
        self.ingest(now, Some(sid), publish);
        self.resave_session(sid);
    }

    /// Persists a stored session's record again (its will or expiry changed).
    pub(crate) fn resave_session(&mut self, sid: SessionId) {
        let Some(s) = self.session(sid) else {
            return;
        };
        if !s.stored {
            return;
        }
        let expires_at_ms = s.expires_at.map(|at| self.wall_ms(at));
        self.save_session(sid, expires_at_ms);
    }

    /// Ends a session: its will (if still pending) is sent first ("no later than when the
    /// session ends", `[MQTT-3.1.3-9]`), then its subscriptions and messages are dropped.
    pub(crate) fn end_session(&mut self, now: Instant, sid: SessionId) {
        self.publish_will(now, sid);
        self.hand_over_shared(now, sid);
        let Some(mut s) = self.sessions.get_mut(sid.0 as usize).and_then(Option::take) else {
            return;
        };
        if let Some(at) = s.expires_at {
            self.timers.remove(&(at, Timer::SessionExpiry(sid)));
        }
        for filter in s.subscriptions.keys() {
            self.tree.remove(filter, sid);
        }
        self.by_client.remove(&s.client_id);
        self.free_sessions.push(sid);
        if s.stored {
            // The session's record goes first, taking its deliveries with it; then each
            // message that no other session refers to.
            self.persist(StoreOp::SessionDeleted {
                client_id: s.client_id.to_string(),
            });
        }
        let inflight = core::mem::take(&mut s.inflight)
            .into_values()
            .map(|f| f.delivery);
        let queued: Vec<_> = s.queue.drain(..).collect();
        for mut d in inflight.chain(queued) {
            self.forget_delivery(sid, &mut d, true);
        }
    }

    /// A session for `client_id`: the existing one, or a new empty one.
    pub(crate) fn session_for(
        &mut self,
        client_id: &Arc<str>,
        protocol: ProtocolVersion,
    ) -> (SessionId, bool) {
        if let Some(&sid) = self.by_client.get(client_id) {
            return (sid, true);
        }
        let session = Session::new(client_id.clone(), protocol);
        let sid = if let Some(sid) = self.free_sessions.pop() {
            if let Some(slot) = self.sessions.get_mut(sid.0 as usize) {
                *slot = Some(session);
            }
            sid
        } else {
            let sid = SessionId(u32::try_from(self.sessions.len()).unwrap_or(u32::MAX));
            self.sessions.push(Some(session));
            sid
        };
        self.by_client.insert(client_id.clone(), sid);
        (sid, false)
    }

    // ---- CONNECT and AUTH ----

    fn on_connect(&mut self, now: Instant, conn: ConnId, connect: Box<Connect>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(c.state, ConnState::AwaitConnect) {
            // [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
            self.protocol_violation(
                now,
                conn,
                DisconnectReason::ProtocolError,
                "[MQTT-3.1.0-2] second CONNECT",
            );
            return;
        }
        c.protocol = connect.protocol;
        c.problem_information = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        // The client's Maximum Packet Size binds every packet sent from now on, a refusing
        // CONNACK and the AUTH of an exchange included ([MQTT-3.2.2-19], [MQTT-3.2.2-20]).
        c.max_packet_size = connect
            .properties
            .maximum_packet_size
            .map_or(mqtt5_codec::MAX_PACKET_SIZE, NonZeroU32::get);
        // Client identifier rules of 3.1 and 3.1.1.
        let id_len = connect.client_id.len();
        let bad_id = match connect.protocol {
            // MQTT 3.1 §3.1: 1 to 23 characters.
            ProtocolVersion::V3_1 => id_len == 0 || id_len > 23,
            // [MQTT-3.1.3-8]: an empty id needs Clean Session.
            ProtocolVersion::V3_1_1 => id_len == 0 && !connect.clean_start,
            ProtocolVersion::V5 => false,
        };
        if bad_id {
            self.refuse(
                conn,
                ConnAckReason::ClientIdentifierNotValid,
                Some("client identifier not valid"),
            );
            return;
        }
        if connect.protocol.is_v5()
            && let Some(will) = &connect.will
        {
            if will.qos > self.config.maximum_qos {
                // [MQTT-3.2.2-12]
                self.refuse(
                    conn,
                    ConnAckReason::QoSNotSupported,
                    Some("[MQTT-3.2.2-12] Will QoS above Maximum QoS"),
                );
                return;
            }
            if will.retain && !self.config.retain_available {
                // [MQTT-3.2.2-13]
                self.refuse(
                    conn,
                    ConnAckReason::RetainNotSupported,
                    Some("[MQTT-3.2.2-13] Will Retain without retained messages"),
                );
                return;
            }
        }
        if let Some(method) = connect.properties.authentication_method.clone() {
            let Some(auth) = self.enhanced.iter().find(|a| a.method() == method.as_str()) else {
                self.refuse(
                    conn,
                    ConnAckReason::BadAuthenticationMethod,
                    Some("unsupported authentication method"),
                );
                return;
            };
            let data = connect
                .properties
                .authentication_data
                .clone()
                .unwrap_or_default();
            let (exchange, step) = auth.begin(&connect.client_id, &data, &mut *self.random);
            match step {
                AuthStep::Continue(data) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.state = ConnState::Authenticating {
                            connect,
                            exchange,
                            method: Box::new(method.clone()),
                        };
                    }
                    self.send_auth(conn, AuthReason::ContinueAuthentication, method, data);
                }
                AuthStep::Success { data, username } => {
                    self.accept(now, conn, connect, Some(username), data);
                }
                AuthStep::Failure => {
                    self.refuse(
                        conn,
                        ConnAckReason::BadUserNameOrPassword,
                        Some("authentication failed"),
                    );
                }
            }
            return;
        }
        let username = connect.username.as_ref().map(|u| u.as_str().to_owned());
        let verdict = match &username {
            None if !self
                .conns
                .get(&conn)
                .and_then(|c| c.peer.as_ref().and_then(|p| p.allow_anonymous))
                .unwrap_or(self.config.allow_anonymous) =>
            {
                self.stats.auth_failures += 1;
                self.refuse(
                    conn,
                    ConnAckReason::NotAuthorized,
                    Some("anonymous access is disabled"),
                );
                return;
            }
            None => AuthVerdict::Allow,
            Some(name) => self.authenticator.as_ref().map_or(AuthVerdict::Allow, |a| {
                a.authenticate(
                    &ClientInfo {
                        client_id: &connect.client_id,
                        username: Some(name),
                    },
                    connect.password.as_deref(),
                )
            }),
        };
        match verdict {
            AuthVerdict::Allow => self.accept(now, conn, connect, username, None),
            AuthVerdict::BadCredentials => {
                self.stats.auth_failures += 1;
                self.refuse(
                    conn,
                    ConnAckReason::BadUserNameOrPassword,
                    Some("bad user name or password"),
                );
            }
            AuthVerdict::NotAuthorized => {
                self.stats.auth_failures += 1;
                self.refuse(conn, ConnAckReason::NotAuthorized, Some("not authorized"));
            }
        }
    }

    fn send_auth(&mut self, conn: ConnId, reason: AuthReason, method: MqttString, data: Vec<u8>) {
        let mut auth = Auth {
            reason,
            properties: mqtt5_codec::AuthProperties::default(),
        };
        auth.properties.authentication_method = Some(method);
        auth.properties.authentication_data = Some(data.into());
        self.send(conn, Packet::Auth(Box::new(auth)));
    }

    fn on_auth(&mut self, now: Instant, conn: ConnId, auth: Auth) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let method = auth.properties.authentication_method.clone();
        let data = auth
            .properties
            .authentication_data
            .clone()
            .unwrap_or_default();
        let state = core::mem::replace(&mut c.state, ConnState::AwaitConnect);
        match (state, auth.reason) {
            (
                ConnState::Authenticating {
                    connect,
                    mut exchange,
                    method: expected,
                },
                AuthReason::ContinueAuthentication,
            ) if method.as_ref() == Some(&expected) => match exchange.step(&data) {
                AuthStep::Continue(out) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.state = ConnState::Authenticating {
                            connect,
                            exchange,
                            method: expected.clone(),
                        };
                    }
                    self.send_auth(conn, AuthReason::ContinueAuthentication, *expected, out);
                }
                AuthStep::Success { data, username } => {
                    self.accept(now, conn, connect, Some(username), data);
                }
                AuthStep::Failure => {
                    self.stats.auth_failures += 1;
                    self.refuse(
                        conn,
                        ConnAckReason::BadUserNameOrPassword,
                        Some("authentication failed"),
                    );
                }
            },
            (ConnState::Connected, AuthReason::ReAuthenticate) => {
                // MQTT 5 §4.12.1: the method must be the one of the CONNECT.
                let original = self.conns.get(&conn).and_then(|c| c.auth_method.clone());
                let Some(method) = method.filter(|m| Some(m) == original.as_deref()) else {
                    self.set_state(conn, ConnState::Connected);
                    self.protocol_violation(
                        now,
                        conn,
                        DisconnectReason::ProtocolError,
                        "[MQTT-4.12.1-1] re-authentication without the connection's method",
                    );
                    return;
                };
                let client_id = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.session)
                    .and_then(|sid| self.session(sid))
                    .map(|s| s.client_id.to_string())
                    .unwrap_or_default();
                let Some(authn) = self.enhanced.iter().find(|a| a.method() == method.as_str())
                else {
                    self.set_state(conn, ConnState::Connected);
                    self.protocol_violation(
                        now,
                        conn,
                        DisconnectReason::ProtocolError,
                        "[MQTT-4.12.1-1] re-authentication with another method",
                    );
                    return;
                };
                let (exchange, step) = authn.begin(&client_id, &data, &mut *self.random);
                self.reauth_step(now, conn, exchange, method, step);
            }
            (
                ConnState::Reauthenticating {
                    mut exchange,
                    method: expected,
                },
                AuthReason::ContinueAuthentication,
            ) if method.as_ref() == Some(&expected) => {
                let step = exchange.step(&data);
                self.reauth_step(now, conn, exchange, *expected, step);
            }
            (state, _) => {
                let connected = matches!(
                    state,
                    ConnState::Connected | ConnState::Reauthenticating { .. }
                );
                if connected {
                    self.set_state(conn, ConnState::Connected);
                    self.protocol_violation(
                        now,
                        conn,
                        DisconnectReason::ProtocolError,
                        "[MQTT-4.12.0-2] unexpected AUTH",
                    );
                } else {
                    // Before CONNACK there is no DISCONNECT to send: close.
                    self.close_unconnected(conn);
                }
            }
        }
    }

    fn set_state(&mut self, conn: ConnId, state: ConnState) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = state;
        }
    }

    fn reauth_step(
        &mut self,
        now: Instant,
        conn: ConnId,
        exchange: Box<dyn AuthExchange>,
        method: MqttString,
        step: AuthStep,
    ) {
        match step {
            AuthStep::Continue(out) => {
                self.set_state(
                    conn,
                    ConnState::Reauthenticating {
                        exchange,
                        method: Box::new(method.clone()),
                    },
                );
                self.send_auth(conn, AuthReason::ContinueAuthentication, method, out);
            }
            AuthStep::Success { data, .. } => {
                self.set_state(conn, ConnState::Connected);
                self.send_auth(conn, AuthReason::Success, method, data.unwrap_or_default());
            }
            AuthStep::Failure => {
                self.set_state(conn, ConnState::Connected);
                self.stats.auth_failures += 1;
                self.end_connection(
                    now,
                    conn,
                    Ending::Abnormal,
                    Some(DisconnectReason::NotAuthorized),
                    "re-authentication failed",
                );
            }
        }
    }

    /// Refuses a CONNECT with CONNACK `reason` (the encoder maps it to a 3.1.1 return code),
    /// then closes (`[MQTT-3.2.2-7]`: no Session Present on failure).
    fn refuse(&mut self, conn: ConnId, reason: ConnAckReason, why: Option<&str>) {
        let mut ack = ConnAck {
            session_present: false,
            reason,
            ..ConnAck::default()
        };
        if let (Some(why), Some(c)) = (why, self.conns.get(&conn))
            && c.problem_information
        {
            ack.properties.reason_string = MqttString::try_from(why).ok();
        }
        self.send(conn, Packet::ConnAck(Box::new(ack)));
        self.close_unconnected(conn);
    }

    /// Completes a CONNECT: takes over or creates the session, sends CONNACK, resumes delivery.
    fn accept(
        &mut self,
        now: Instant,
        conn: ConnId,
        connect: Box<Connect>,
        username: Option<String>,
        auth_data: Option<Vec<u8>>,
    ) {
        let v5 = connect.protocol.is_v5();
        let (client_id, assigned): (Arc<str>, bool) = if connect.client_id.is_empty() {
            (self.assign_client_id().into(), true)
        } else {
            (Arc::from(connect.client_id.as_str()), false)
        };
        // Session Expiry Interval: 5.0 says it; 3.1.1 Clean Session 0 means "forever".
        let requested = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry = requested.min(self.config.max_session_expiry);
        let resumes_stored = !connect.clean_start
            && self
                .by_client
                .get(&client_id)
                .and_then(|&sid| self.session(sid))
                .is_some_and(|s| s.stored);
        if self.storage_full && expiry > 0 && !resumes_stored {
            self.refuse(conn, ConnAckReason::QuotaExceeded, Some("storage full"));
            return;
        }

        // Take over: the old connection gets DISCONNECT 0x8E ([MQTT-3.1.4-3]).
        if let Some(&sid) = self.by_client.get(&client_id)
            && let Some(old) = self.session(sid).and_then(|s| s.conn)
        {
            self.end_connection(
                now,
                old,
                Ending::Abnormal,
                Some(DisconnectReason::SessionTakenOver),
                "session taken over",
            );
            self.stats.takeovers += 1;
        }
        // Clean Start discards any existing session ([MQTT-3.1.2-4]).
        if connect.clean_start
            && let Some(&sid) = self.by_client.get(&client_id)
        {
            self.end_session(now, sid);
        }
        let (sid, present) = self.session_for(&client_id, connect.protocol);
        // Resuming cancels a pending will ([MQTT-3.1.3-9]) and the expiry.
        let (old_will_at, old_expires_at) = self
            .session_mut(sid)
            .map(|s| (s.will_at.take(), s.expires_at.take()))
            .unwrap_or_default();
        if let Some(at) = old_will_at {
            self.timers.remove(&(at, Timer::Will(sid)));
        }
        if let Some(at) = old_expires_at {
            self.timers.remove(&(at, Timer::SessionExpiry(sid)));
        }

        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // The connect timeout no longer applies; the keep-alive (if any) is armed below.
        c.keep_alive_tick = 0;
        c.state = ConnState::Connected;
        c.session = Some(sid);
        self.connected += 1;
        c.auth_method = connect
            .properties
            .authentication_method
            .clone()
            .map(Box::new);
        let props = &connect.properties;
        c.window = props
            .receive_maximum
            .map_or(u16::MAX, NonZeroU16::get)
            .min(self.config.max_inflight);
        c.alias_max = props.topic_alias_maximum.unwrap_or(0);
        // Keep alive: MQTT 5 clients get the server's value when it differs.
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        if v5
            && let Some(max) = self.config.max_keep_alive
            && (keep_alive == 0 || keep_alive > max)
        {
            keep_alive = max;
            server_keep_alive = Some(max);
        }
        c.keep_alive_ms = u32::from(keep_alive) * 1500;
        let keep_alive_ms = c.keep_alive_ms;
        // Only the client record needs the peer from here on.
        let peer = c.peer.take();
        if keep_alive_ms > 0 {
            self.arm_keep_alive(conn, now + Duration::from_millis(u64::from(keep_alive_ms)));
        }

        if let Some(s) = self.session_mut(sid) {
            s.conn = Some(conn);
            s.protocol = connect.protocol;
            s.username = username.as_deref().map(Box::from);
            s.expiry_interval = expiry;
            s.will = connect.will.as_ref().map(|w| Box::new(w.detach()));
        }

        let mut ack = ConnAck {
            session_present: present,
            reason: ConnAckReason::Success,
            properties: ConnAckProperties::default(),
        };
        if v5 {
            let p = &mut ack.properties;
            let cfg = &self.config;
            if expiry != requested {
                p.session_expiry_interval = Some(expiry);
            }
            p.receive_maximum = NonZeroU16::new(cfg.receive_maximum);
            if cfg.maximum_qos != QoS::ExactlyOnce {
                p.maximum_qos = Some(cfg.maximum_qos);
            }
            if !cfg.retain_available {
                p.retain_available = Some(false);
            }
            p.maximum_packet_size = core::num::NonZeroU32::new(cfg.max_packet_size);
            if assigned {
                p.assigned_client_identifier = MqttString::try_from(&*client_id).ok();
            }
            p.topic_alias_maximum = Some(cfg.topic_alias_maximum);
            p.wildcard_subscription_available = Some(cfg.wildcard_subscriptions);
            p.subscription_identifiers_available = Some(cfg.subscription_identifiers);
            p.shared_subscription_available = Some(cfg.shared_subscriptions);
            p.server_keep_alive = server_keep_alive;
            if let Some(method) = &connect.properties.authentication_method {
                p.authentication_method = Some(method.clone());
                p.authentication_data = auth_data.map(Into::into);
            }
        }
        if self.config.client_records {
            let wall = self.wall_ms(now);
            self.persist(StoreOp::ClientConnected(ClientRecord {
                client_id: client_id.to_string(),
                username,
                protocol: connect.protocol,
                peer: peer.map(|p| p.addr.to_string()).unwrap_or_default(),
                at_ms: wall,
            }));
        }
        self.save_session(sid, None);
        self.stats.connects += 1;
        self.send(conn, Packet::ConnAck(Box::new(ack)));
        let connected = self.connected_clients();
        self.stats.max_connected = self.stats.max_connected.max(connected as u64);
        if present {
            self.resume(now, sid);
        }
    }

    /// A fresh client identifier: the configured prefix and 16 random alphanumerics.
    fn assign_client_id(&mut self) -> String {
        const ALPHABET: &[u8; 62] =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        loop {
            let mut raw = [0u8; 16];
            self.random.fill_bytes(&mut raw);
            let mut id = self.config.assigned_id_prefix.clone();
            id.extend(
                raw.iter()
                    .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])),
            );
            if !self.by_client.contains_key(id.as_str()) {
                return id;
            }
        }
    }

    fn on_disconnect(&mut self, now: Instant, conn: ConnId, d: Disconnect) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        if let Some(requested) = d.properties.session_expiry_interval {
            let cap = self.config.max_session_expiry;
            let Some(s) = self.session_mut(sid) else {
                return;
            };
            if s.expiry_interval == 0 && requested != 0 {
                // [MQTT-3.14.2-2]: 0 at CONNECT cannot become non-zero at DISCONNECT.
                self.protocol_violation(
                    now,
                    conn,
                    DisconnectReason::ProtocolError,
                    "[MQTT-3.14.2-2] session expiry set at DISCONNECT after 0 at CONNECT",
                );
                return;
            }
            // Lowered to 0, the session ends with this connection (and leaves the store).
            s.expiry_interval = requested.min(cap);
        }
        let ending = if d.reason == DisconnectReason::DisconnectWithWillMessage {
            Ending::Abnormal
        } else {
            Ending::Normal
        };
        let why = match d.reason {
            DisconnectReason::NormalDisconnection => "client disconnected",
            DisconnectReason::DisconnectWithWillMessage => "client disconnected with will",
            _ => "client disconnected with an error",
        };
        self.end_connection(now, conn, ending, None, why);
    }

    /// `$SYS/broker/...` statistics, as retained messages.
    fn publish_sys(&mut self, now: Instant) {
        let uptime = now.saturating_duration_since(self.epoch.0).as_secs();
        let connected = self.connected_clients() as u64;
        let entries: [(&str, String); 12] = [
            ("$SYS/broker/version", self.config.version.clone()),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            ("$SYS/broker/clients/connected", connected.to_string()),
            (
                "$SYS/broker/clients/total",
                self.by_client.len().to_string(),
            ),
            (
                "$SYS/broker/clients/maximum",
                self.stats.max_connected.to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                self.stats.messages_received.to_string(),
            ),
            (
                "$SYS/broker/messages/sent",
                self.stats.messages_sent.to_string(),
            ),
            (
                "$SYS/broker/messages/dropped",
                self.stats.messages_dropped.to_string(),
            ),
            (
                "$SYS/broker/bytes/received",
                self.stats.bytes_received.to_string(),
            ),
            ("$SYS/broker/bytes/sent", self.stats.bytes_sent.to_string()),
            (
                "$SYS/broker/subscriptions/count",
                self.tree.len().to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                self.retained.len().to_string(),
            ),
        ];
        for (topic, value) in entries {
            let Ok(name) = mqtt5_codec::TopicName::try_from(topic) else {
                continue;
            };
            let mut publish = mqtt5_codec::Publish::new(name, value.into_bytes());
            publish.retain = true;
            self.ingest_sys(now, publish);
        }
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
