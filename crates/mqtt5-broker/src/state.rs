//! The state of the broker core: a few owned parts, each with its own methods and private
//! fields. The handlers (`connect.rs`, `publish.rs`, `deliver.rs`, `subscribe.rs`,
//! `disconnect.rs`, `expiry.rs`, `sys.rs`, `restore.rs`) are functions over it; the entry
//! points of [`crate::Broker`] call them.
//!
//! ```text
//!  Core ─┬─ config   Config                 limits and switches
//!        ├─ access   Access                 passwords, access rules, SCRAM, login throttle
//!        ├─ conns    Connections            connections and their protocol state
//!        ├─ sessions Sessions               sessions, their queues and windows
//!        ├─ router   Router                 subscriptions, retained messages, shared groups
//!        ├─ timers   Timers                 one timer table, one next instant
//!        ├─ out      Outbox                 actions in order, the persist barrier
//!        ├─ stats    Stats                  counters for $SYS and metrics
//!        └─ clock    Clock                  the start instant and its wall-clock time
//! ```

use std::time::Instant;

use mqtt5_codec::Packet;
use mqtt5_store::StoreOp;

use crate::access::Access;
use crate::auth::ClientInfo;
use crate::clock::Clock;
use crate::config::Config;
use crate::connections::Connections;
use crate::outbox::{Outbox, fit_packet};
use crate::random::RandomSource;
use crate::router::Router;
use crate::session::{SessionId, Sessions};
use crate::stats::Stats;
use crate::timers::Timers;
use crate::types::{ConnId, Notice};

/// Everything the core holds.
pub(crate) struct Core {
    /// Limits and switches.
    pub(crate) config: Config,
    /// Authentication and authorization.
    pub(crate) access: Access,
    /// Random bytes for assigned client identifiers and authentication nonces.
    pub(crate) random: Box<dyn RandomSource>,
    /// The start instant and its wall-clock time.
    pub(crate) clock: Clock,
    /// The connections.
    pub(crate) conns: Connections,
    /// The sessions.
    pub(crate) sessions: Sessions,
    /// Subscriptions and retained messages.
    pub(crate) router: Router,
    /// The timer table.
    pub(crate) timers: Timers,
    /// The actions for the driver.
    pub(crate) out: Outbox,
    /// Counters.
    pub(crate) stats: Stats,
    /// The store reported that it is full: new persistent work is refused.
    pub(crate) storage_full: bool,
    /// The last message id handed out.
    last_message_id: u64,
}

impl Core {
    /// A core with nothing in it, started at `now`.
    pub(crate) fn new(
        config: Config,
        access: Access,
        random: Box<dyn RandomSource>,
        clock: Clock,
        now: Instant,
    ) -> Self {
        Self {
            config,
            access,
            random,
            clock,
            conns: Connections::default(),
            sessions: Sessions::default(),
            router: Router::default(),
            timers: Timers::new(now),
            out: Outbox::default(),
            stats: Stats::default(),
            storage_full: false,
            last_message_id: 0,
        }
    }

    /// Queues a packet for `conn`, after any ops it depends on. A PUBLISH is counted (it was
    /// sized where it was built); other packets drop what is optional to fit the client's
    /// Maximum Packet Size.
    pub(crate) fn send(&mut self, conn: ConnId, mut packet: Packet) {
        if matches!(packet, Packet::Publish(_)) {
            self.stats.messages_sent += 1;
        } else if let Some(c) = self.conns.get(conn) {
            fit_packet(&mut packet, c.protocol, c.max_packet_size);
        }
        self.out.send(conn, packet);
    }

    /// Queues a store op.
    pub(crate) fn persist(&mut self, op: StoreOp) {
        self.out.persist(op);
    }

    /// Queues a notice for the operator.
    pub(crate) fn notice(&mut self, notice: Notice) {
        self.out.notice(notice);
    }

    /// A fresh message id.
    pub(crate) const fn next_message_id(&mut self) -> u64 {
        self.last_message_id += 1;
        self.last_message_id
    }

    /// Makes sure later message ids are above `id` (one restored from the store).
    pub(crate) fn seen_message_id(&mut self, id: u64) {
        self.last_message_id = self.last_message_id.max(id);
    }

    /// Wall-clock milliseconds at `now`.
    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        self.clock.wall_ms(now)
    }

    /// Whether the queued messages reached [`Config::max_queued_bytes_total`].
    pub(crate) const fn queue_memory_full(&self) -> bool {
        self.sessions.queued_bytes() >= self.config.max_queued_bytes_total
    }

    /// Whether new persistent work is refused: the store is full, or the queues hold as many
    /// bytes as they may.
    pub(crate) const fn refusing_persistent(&self) -> bool {
        self.storage_full || self.queue_memory_full()
    }

    /// Whether the client of session `sid` may receive a message on `topic`.
    pub(crate) fn may_receive(&self, sid: SessionId, topic: &str) -> bool {
        self.sessions.get(sid).is_some_and(|s| {
            let info = ClientInfo {
                client_id: &s.client_id,
                username: s.username.as_deref(),
            };
            self.access.can_receive(&info, topic)
        })
    }
}
