//! The [`Broker`] state machine: inputs, outputs, connections and timers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt5_codec::properties::ConnAckProperties;
use mqtt5_codec::{
    ConnAckReason, Connect, Disconnect, DisconnectReason, MqttString, Packet, PingResp,
    ProtocolVersion,
};
use mqtt5_store::{SessionRecord, StoreOp};

use crate::acl::Authorizer;
use crate::auth::{
    AuthExchange, AuthVerdict, ClientInfo, EnhancedAuthenticator, Passwords, RandomSource,
};
use crate::config::Config;
use crate::retained::RetainedTree;
use crate::session::{Message, Session, SubEntry};
use crate::stats::Stats;
use crate::throttle::LoginThrottle;
use crate::topic_tree::{SessionId, TopicTree};
use crate::types::{Action, ConnId, Error, Notice, PeerInfo};

/// The services the core calls out to, handed in at construction.
pub struct Services {
    /// How User Names and Passwords are checked. [`Passwords::NoUsers`] refuses every client
    /// that presents a User Name (anonymous access is governed by
    /// [`Config::allow_anonymous`]).
    pub passwords: Passwords,
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
            .field("passwords", &self.passwords)
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
    /// The driver is checking the CONNECT's password ([`Passwords::Deferred`]).
    AwaitingVerdict {
        /// The CONNECT, completed when the password is good.
        connect: Box<Connect>,
    },
    /// The credentials failed: the refusal waits for the login delay
    /// ([`Timer::Refusal`]).
    Refusing {
        /// The CONNACK reason.
        reason: ConnAckReason,
        /// The Reason String.
        why: &'static str,
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
    /// A connection's refused CONNECT gets its CONNACK, after the login delay.
    Refusal(ConnId),
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
    pub(crate) passwords: Passwords,
    pub(crate) throttle: LoginThrottle,
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
    /// The bytes of messages held in session queues and windows, each message once, plus the
    /// per-delivery overhead: against [`Config::max_queued_bytes_total`].
    pub(crate) queued_bytes: usize,
    /// Whether the last [`Notice::QueueMemory`] said the limit was reached.
    pub(crate) queue_memory_full: bool,
    /// The bytes of the retained messages (`$SYS` excluded), against
    /// [`Config::max_retained_bytes`].
    pub(crate) retained_bytes: usize,
    /// How many retained messages are `$SYS` ones (not counted against the limits).
    pub(crate) retained_sys: usize,
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
            passwords: services.passwords,
            throttle: LoginThrottle::default(),
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
            queued_bytes: 0,
            queue_memory_full: false,
            retained_bytes: 0,
            retained_sys: 0,
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

    /// Replaces how passwords are checked, for example after the users were reloaded. It
    /// applies to the next CONNECT; connected clients stay connected.
    pub fn set_passwords(&mut self, passwords: Passwords) {
        self.passwords = passwords;
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

    /// The client of `conn` presented a verified certificate with this subject (a TLS
    /// listener that asks for client certificates). A client without a User Name then has
    /// the certificate as its identity. Call it before the connection's first packet.
    pub fn handle_client_certificate(&mut self, conn: ConnId, subject: String) {
        if let Some(peer) = self.conns.get_mut(&conn).and_then(|c| c.peer.as_mut()) {
            peer.certificate = Some(subject);
        }
    }

    /// The driver's verdict on an [`Action::CheckPassword`]: the CONNECT completes, or is
    /// refused. A verdict for a connection that is gone, or that is not waiting for one, is
    /// ignored.
    pub fn handle_password_verdict(&mut self, now: Instant, conn: ConnId, verdict: AuthVerdict) {
        self.on_password_verdict(now, conn, verdict);
        self.flush_ops();
    }

    /// Whether the core takes packets from `conn` now. While a CONNECT waits for its password
    /// verdict or for the delay of its refusal, it does not: the driver should leave the
    /// connection's input unread until this is true again (or the connection is closed), so
    /// that no packet after a refused CONNECT is processed (`[MQTT-3.1.4-6]`).
    pub fn accepts_packets(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            !matches!(
                c.state,
                ConnState::AwaitingVerdict { .. } | ConnState::Refusing { .. }
            )
        })
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
                Timer::Refusal(conn) => self.refusal_due(conn),
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
    pub(crate) fn arm_keep_alive(&mut self, conn: ConnId, due: Instant) {
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
            (q + s.queue().len(), f + s.inflight().len())
        })
    }

    /// The bytes of messages held in session queues and windows, each message counted once,
    /// plus the per-delivery overhead ([`Config::max_queued_bytes_total`]).
    pub const fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The bytes of the retained messages, `$SYS` ones excluded
    /// ([`Config::max_retained_bytes`]).
    pub const fn retained_bytes(&self) -> usize {
        self.retained_bytes
    }

    /// Whether the queued messages reached [`Config::max_queued_bytes_total`].
    pub const fn queue_memory_full(&self) -> bool {
        self.queued_bytes >= self.config.max_queued_bytes_total
    }

    /// Whether new persistent work is refused: the store is full, or the queues hold as many
    /// bytes as they may.
    pub(crate) const fn refusing_persistent(&self) -> bool {
        self.storage_full || self.queue_memory_full()
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

    /// Turns pending ops into one `Persist` action. Also called at the end of every input:
    /// a change of the queue memory state is reported then.
    pub(crate) fn flush_ops(&mut self) {
        if !self.pending_ops.is_empty() {
            let ops = core::mem::take(&mut self.pending_ops);
            self.actions.push_back(Action::Persist(ops));
        }
        let full = self.queue_memory_full();
        if full != self.queue_memory_full {
            self.queue_memory_full = full;
            self.actions.push_back(Action::Notice(Notice::QueueMemory {
                full,
                bytes: self.queued_bytes,
            }));
        }
    }

    /// Queues a notice for the operator, after everything queued before it.
    pub(crate) fn notice(&mut self, notice: Notice) {
        self.flush_ops();
        self.actions.push_back(Action::Notice(notice));
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
    pub(crate) fn close_unconnected(&mut self, conn: ConnId) {
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
            owner: s.owner.as_ref().map(crate::types::Identity::to_stored),
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
        for mut d in s.take_all(&mut self.queued_bytes) {
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
        let entries: [(&str, String); 19] = [
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
            (
                "$SYS/broker/retained messages/bytes",
                self.retained_bytes.to_string(),
            ),
            (
                "$SYS/broker/retained messages/refused",
                self.stats.retained_refused.to_string(),
            ),
            (
                "$SYS/broker/messages/denied",
                self.stats.denied_deliveries.to_string(),
            ),
            ("$SYS/broker/queued/bytes", self.queued_bytes.to_string()),
            (
                "$SYS/broker/queued/memory drops",
                self.stats.queue_memory_drops.to_string(),
            ),
            (
                "$SYS/broker/clients/auth failures",
                self.stats.auth_failures.to_string(),
            ),
            (
                "$SYS/broker/clients/ownership refusals",
                self.stats.ownership_refusals.to_string(),
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
