//! The [`Broker`]: the entry points of the core, `handle_*` and `poll_*`. Each input is a
//! short sequence of calls into the handlers (`connect.rs`, `publish.rs`, `subscribe.rs`,
//! `disconnect.rs`, `expiry.rs`, `sys.rs`), then [`finish`], which closes the input: slow
//! consumers are disconnected, pending store ops become one `Persist`, and a change of the
//! queue memory state is reported.

use std::time::Instant;

use mqtt5_codec::{ConnAckReason, DisconnectReason, Packet, PingResp, ProtocolVersion};
use mqtt5_store::Recovered;

use crate::access::Access;
use crate::acl::Authorizer;
use crate::auth::{AuthVerdict, EnhancedAuthenticator, Passwords};
use crate::clock::Clock;
use crate::config::Config;
use crate::connect::{on_auth, on_connect, on_password_verdict, refusal_due, refuse};
use crate::connections::{Conn, ConnState};
use crate::disconnect::{
    Ending, check_connection, close_unconnected, end_connection, kick_slow_consumers,
    on_disconnect, violation,
};
use crate::expiry::{session_expiry_due, sweep_expired, will_due};
use crate::publish::{on_puback, on_pubcomp, on_publish, on_pubrec, on_pubrel};
use crate::random::RandomSource;
use crate::state::Core;
use crate::stats::Stats;
use crate::subscribe::{on_subscribe, on_unsubscribe};
use crate::sys::publish_sys;
use crate::timers::Timer;
use crate::types::{Action, ConnId, Error, PeerInfo};
use crate::violation::Violation;

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

/// The broker core: a sans-IO state machine.
///
/// Feed it with the `handle_*` methods, then drain [`Broker::poll_action`] and call
/// [`Broker::handle_timeout`] at [`Broker::poll_timeout`]. It never reads a clock: every input
/// takes `now`. `docs/architecture.md` walks through its parts.
pub struct Broker {
    core: Core,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.core.conns.len())
            .field("sessions", &self.core.sessions.len())
            .field("subscriptions", &self.core.router.subscription_count())
            .field("retained", &self.core.router.retained_count())
            .finish_non_exhaustive()
    }
}

/// Closes an input: slow consumers found during it are disconnected, pending store ops become
/// one `Persist`, and a change of the queue memory state is reported.
fn finish(core: &mut Core, now: Instant) {
    kick_slow_consumers(core, now);
    core.out.flush();
    let full = core.queue_memory_full();
    core.out.queue_memory(full, core.sessions.queued_bytes());
}

impl Broker {
    /// A broker with no sessions, started at `now`, which is `wall_clock_ms` milliseconds
    /// after the Unix epoch (used only for the store's records and expiry instants).
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
        let access = Access::new(services.passwords, services.authorizer, services.enhanced);
        let sys_interval = config.sys_interval;
        let clock = Clock::new(now, wall_clock_ms);
        let mut core = Core::new(config, access, services.random, clock, now);
        if let Some(every) = sys_interval {
            core.timers.insert(now + every, Timer::Sys);
        }
        Ok(Self { core })
    }

    /// Rebuilds sessions, subscriptions, queues, in-flight windows and retained messages from
    /// a store's [`Recovered`] state. Call it once, at start-up, before any connection.
    ///
    /// Wall-clock times in the store (expiry instants) are mapped onto `now` with the
    /// `wall_clock_ms` the broker was created with.
    ///
    /// # Errors
    /// [`Error::NotFresh`] when the broker already has sessions or connections.
    pub fn restore(&mut self, now: Instant, recovered: Recovered) -> Result<(), Error> {
        let restored = crate::restore::restore(&mut self.core, now, recovered);
        self.core.sessions.recount_persistent();
        restored
    }

    /// The configuration in force.
    pub const fn config(&self) -> &Config {
        &self.core.config
    }

    /// Replaces the authorizer, for example after the access rules were reloaded. It applies
    /// from the next check on: the next PUBLISH, SUBSCRIBE and delivery, messages already
    /// queued for a session included (they are checked again when they leave the queue).
    pub fn set_authorizer(&mut self, authorizer: Box<dyn Authorizer>) {
        self.core.access.set_authorizer(authorizer);
    }

    /// Replaces how passwords are checked, for example after the users were reloaded. It
    /// applies to the next CONNECT; connected clients stay connected.
    pub fn set_passwords(&mut self, passwords: Passwords) {
        self.core.access.passwords = passwords;
    }

    /// Replaces the enhanced authentication methods (MQTT 5 §4.12). Exchanges already under
    /// way finish with the method they started with.
    pub fn set_enhanced(&mut self, enhanced: Vec<Box<dyn EnhancedAuthenticator>>) {
        self.core.access.set_enhanced(enhanced);
    }

    /// Counters since start-up.
    pub const fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Counts bytes the driver moved, for `$SYS/broker/bytes/...`.
    pub const fn record_traffic(&mut self, received: u64, sent: u64) {
        self.core.stats.bytes_received += received;
        self.core.stats.bytes_sent += sent;
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
        let core = &mut self.core;
        if !core
            .conns
            .insert(conn, Conn::new(peer, now, core.config.max_inflight))
        {
            return Err(Error::ConnectionExists(conn));
        }
        // The connect timeout: CONNECT (and its AUTH exchange) must complete by then.
        let tick = core.timers.arm(conn, now + core.config.connect_timeout);
        if let Some(c) = core.conns.get_mut(conn) {
            c.tick = tick;
        }
        Ok(())
    }

    /// The client of `conn` presented a verified certificate with this subject (a TLS
    /// listener that asks for client certificates). A client without a User Name then has
    /// the certificate as its identity. Call it before the connection's first packet.
    pub fn handle_client_certificate(&mut self, conn: ConnId, subject: String) {
        if let Some(peer) = self.core.conns.get_mut(conn).and_then(|c| c.peer.as_mut()) {
            peer.certificate = Some(subject);
        }
    }

    /// The driver's verdict on an [`Action::CheckPassword`]: the CONNECT completes, or is
    /// refused. A verdict for a connection that is gone, or that is not waiting for one, is
    /// ignored.
    pub fn handle_password_verdict(&mut self, now: Instant, conn: ConnId, verdict: AuthVerdict) {
        on_password_verdict(&mut self.core, now, conn, verdict);
        finish(&mut self.core, now);
    }

    /// Whether the core takes packets from `conn` now. While a CONNECT waits for its password
    /// verdict or for the delay of its refusal, it does not: the driver should leave the
    /// connection's input unread until this is true again (or the connection is closed), so
    /// that no packet after a refused CONNECT is processed (`[MQTT-3.1.4-6]`).
    pub fn accepts_packets(&self, conn: ConnId) -> bool {
        self.core.conns.get(conn).is_some_and(|c| {
            !matches!(
                c.state,
                ConnState::AwaitingVerdict { .. } | ConnState::Refusing { .. }
            )
        })
    }

    /// Whether handling `packet`, decoded on `conn`, would give the store new work that grows
    /// with the client's input: a persistent session created, changed or subscribed, a
    /// retained message, a QoS 2 packet identifier of a persistent session, or a QoS 1 or 2
    /// message with a persistent subscriber at QoS 1 or 2. Acknowledgements, PINGREQ,
    /// DISCONNECT and QoS 0 messages never do. It changes nothing.
    ///
    /// While the store is behind, the driver asks before it hands a packet over; for a yes it
    /// keeps the packet, stops reading the connection and says so with
    /// [`Broker::handle_input_paused`], then hands the packet over once the store has caught
    /// up (`docs/architecture.md`, "Backpressure"). When the store keeps up there is no need
    /// to ask.
    #[must_use]
    pub fn needs_store(&self, conn: ConnId, packet: &Packet) -> bool {
        crate::backpressure::needs_store(&self.core, conn, packet)
    }

    /// The driver stopped reading `conn` (`paused` = true), keeping the packet for which
    /// [`Broker::needs_store`] said yes, or is about to hand that packet over and read the
    /// connection again (false). While its input waits, the connection is not held to its
    /// connect timeout or keep-alive (`[MQTT-3.1.2-22]`: its packets were sent, the broker has
    /// not read them); both start again when it resumes. The count of paused connections is
    /// published as `$SYS/broker/clients/paused` ([`Broker::paused_connections`]).
    pub fn handle_input_paused(&mut self, now: Instant, conn: ConnId, paused: bool) {
        let core = &mut self.core;
        if !core.conns.set_input_paused(conn, paused) {
            return;
        }
        if paused {
            core.stats.input_pauses += 1;
            return;
        }
        let connect_timeout = core.config.connect_timeout;
        let Some(c) = core.conns.get_mut(conn) else {
            return;
        };
        c.last_seen = now;
        if c.session.is_none() {
            c.tick = core.timers.arm(conn, now + connect_timeout);
        }
    }

    /// How many connections' input the driver holds back while the store is behind
    /// ([`Broker::handle_input_paused`]).
    pub const fn paused_connections(&self) -> usize {
        self.core.conns.input_paused()
    }

    /// A packet decoded on `conn`.
    pub fn handle_packet(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(conn) else {
            return;
        };
        c.last_seen = now;
        let connected = c.state.is_connected();
        let outcome = match packet {
            Packet::Connect(connect) => on_connect(core, now, conn, connect),
            Packet::Auth(auth) => on_auth(core, now, conn, &auth),
            // During an AUTH exchange only AUTH may follow the CONNECT.
            _ if !connected => Err(Violation::NotConnected),
            Packet::Publish(p) => on_publish(core, now, conn, p),
            Packet::PubAck(a) => on_puback(core, now, conn, a.packet_id),
            Packet::PubRec(r) => on_pubrec(core, now, conn, &r),
            Packet::PubRel(r) => {
                on_pubrel(core, conn, r.packet_id);
                Ok(())
            }
            Packet::PubComp(c) => on_pubcomp(core, now, conn, c.packet_id),
            Packet::Subscribe(s) => {
                on_subscribe(core, now, conn, &s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                on_unsubscribe(core, conn, &u);
                Ok(())
            }
            Packet::PingReq(_) => {
                core.send(conn, Packet::PingResp(PingResp));
                Ok(())
            }
            Packet::Disconnect(d) => on_disconnect(core, now, conn, &d),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp(_) => {
                Err(Violation::ServerOnlyPacket)
            }
        };
        if let Err(v) = outcome {
            violation(core, now, conn, &v);
        }
        finish(core, now);
    }

    /// The codec rejected the bytes of `conn`: the stream is unusable. An MQTT 5 client that
    /// has connected gets DISCONNECT with the error's reason code (MQTT 5 §4.13); any other
    /// connection is closed (`[MQTT-4.13.1-1]`).
    ///
    /// A CONNECT with an unknown protocol level is answered with CONNACK "unsupported protocol
    /// version" before the close, in the 3.1.1 form (return code 1), which clients of every
    /// version can read (`[MQTT-3.1.2-2]`): an [`Action::Protocol`] says so first.
    pub fn handle_decode_error(&mut self, now: Instant, conn: ConnId, err: &mqtt5_codec::Error) {
        let core = &mut self.core;
        let Some(c) = core.conns.get(conn) else {
            return;
        };
        let awaiting = matches!(c.state, ConnState::AwaitConnect);
        if awaiting && matches!(err, mqtt5_codec::Error::UnsupportedProtocolLevel(_)) {
            core.out.push(Action::Protocol {
                conn,
                version: ProtocolVersion::V3_1_1,
            });
            refuse(core, conn, ConnAckReason::UnsupportedProtocolVersion, None);
        } else {
            violation(core, now, conn, &Violation::Malformed(err.clone()));
        }
        finish(core, now);
    }

    /// The network connection is gone (reset, EOF, write error). Its will is published
    /// (`[MQTT-3.1.2-8]`).
    pub fn handle_connection_lost(&mut self, now: Instant, conn: ConnId) {
        end_connection(
            &mut self.core,
            now,
            conn,
            Ending::Abnormal,
            None,
            "connection lost",
        );
        finish(&mut self.core, now);
    }

    /// The broker is shutting down: every connection is closed, MQTT 5 clients first get
    /// DISCONNECT 0x8B (Server shutting down). Sessions stay as they are, in memory and in
    /// the store, for the next start; the driver should commit the store after this.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let core = &mut self.core;
        for conn in core.conns.ids() {
            if core.conns.session_of(conn).is_some() {
                end_connection(
                    core,
                    now,
                    conn,
                    Ending::Shutdown,
                    Some(DisconnectReason::ServerShuttingDown),
                    "server shutting down",
                );
            } else {
                close_unconnected(core, conn, "server shutting down");
            }
        }
        finish(core, now);
    }

    /// The driver's output buffer towards `conn` filled up (`true`: the client reads too
    /// slowly) or drained (`false`). While it is congested, messages for the client wait in its
    /// session queue instead of going to the driver (bounded by
    /// [`Config::max_queued_messages`] and [`Config::max_queued_bytes`], then dropped and
    /// counted per the queue policy, or the client is disconnected with 0x97 if
    /// [`Config::disconnect_slow_consumers`] is set); when it drains, the queue is sent.
    pub fn handle_congestion(&mut self, now: Instant, conn: ConnId, congested: bool) {
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(conn) else {
            return;
        };
        c.congested = congested;
        if !congested && let Some(sid) = c.session {
            crate::deliver::pump(core, now, sid);
        }
        finish(core, now);
    }

    /// The store is full (`true`), or has accepted writes again (`false`). While it is full
    /// the broker keeps serving what needs no new storage and refuses new persistent work:
    /// - a CONNECT that would create a persistent session: CONNACK 0x97 (3.1.1: return code 3);
    /// - a QoS 1 or 2 PUBLISH from an MQTT 5 client: PUBACK / PUBREC 0x97 (3.1.1 has no way to
    ///   refuse one; it is routed as usual);
    /// - a retained message: not stored (a QoS 1 or 2 one is refused as above);
    /// - a new subscription of a persistent session: SUBACK 0x97.
    pub const fn handle_storage_full(&mut self, full: bool) {
        self.core.storage_full = full;
    }

    /// Whether the store reported that it is full (see [`Broker::handle_storage_full`]).
    pub const fn storage_full(&self) -> bool {
        self.core.storage_full
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let core = &mut self.core;
        while let Some((at, timer)) = core.timers.pop_due(now) {
            match timer {
                Timer::Tick(tick) => {
                    for conn in core.timers.take_tick(tick) {
                        check_connection(core, now, conn, tick);
                    }
                }
                Timer::Will(sid) => will_due(core, now, sid, at),
                Timer::SessionExpiry(sid) => session_expiry_due(core, now, sid, at),
                Timer::ExpirySweep => sweep_expired(core, now),
                Timer::Refusal(conn) => refusal_due(core, conn),
                Timer::Sys => {
                    publish_sys(core, now);
                    if let Some(every) = core.config.sys_interval {
                        core.timers.insert(now + every, Timer::Sys);
                    }
                }
            }
        }
        finish(core, now);
    }

    /// The next action to run, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.core.out.pop()
    }

    /// When [`Broker::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.timers.next()
    }

    /// How many connections have completed CONNECT.
    pub const fn connected_clients(&self) -> usize {
        self.core.conns.connected()
    }

    /// How many sessions exist, connected or not.
    pub fn session_count(&self) -> usize {
        self.core.sessions.len()
    }

    /// How many sessions are persistent, connected or not
    /// ([`Config::max_persistent_sessions`]).
    pub const fn persistent_session_count(&self) -> usize {
        self.core.sessions.persistent()
    }

    /// How many messages wait in session queues, and how many are in flight, over all
    /// sessions. It walks every session: call it for metrics, not per packet.
    pub fn queued_and_inflight(&self) -> (usize, usize) {
        self.core.sessions.iter().fold((0, 0), |(q, f), s| {
            (q + s.queue().len(), f + s.inflight().len())
        })
    }

    /// The bytes of messages held in session queues and windows, each message counted once,
    /// plus the per-delivery overhead ([`Config::max_queued_bytes_total`]).
    pub const fn queued_bytes(&self) -> usize {
        self.core.sessions.queued_bytes()
    }

    /// The bytes of the retained messages, `$SYS` ones excluded
    /// ([`Config::max_retained_bytes`]).
    pub const fn retained_bytes(&self) -> usize {
        self.core.router.retained_bytes()
    }

    /// Whether the queued messages reached [`Config::max_queued_bytes_total`].
    pub const fn queue_memory_full(&self) -> bool {
        self.core.queue_memory_full()
    }

    /// How many subscriptions exist.
    pub fn subscription_count(&self) -> usize {
        self.core.router.subscription_count()
    }

    /// How many retained messages exist.
    pub fn retained_count(&self) -> usize {
        self.core.router.retained_count()
    }
}
