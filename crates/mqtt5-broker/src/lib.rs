//! The sans-IO core of the mqtt5 broker (in the manner of quinn-proto; see
//! `docs/architecture.md` in the repository).
//!
//! [`Broker`] is a state machine. The driver (the `mqtt5d` binary, or a test) feeds it
//! connection events and decoded packets with the current time, and drains the [`Action`]s it
//! returns, in order: send a packet, persist a batch of store ops, close a connection. The
//! core opens no socket, reads no clock, starts no thread and draws no randomness of its own:
//! time is an argument of every input, and random bytes come from the [`RandomSource`] in
//! [`Services`].
//!
//! It implements MQTT 5.0, 3.1.1 and 3.1 in one topic space: sessions and their expiry,
//! QoS 0, 1 and 2 in both directions, retained messages, wills with their delay, shared
//! subscriptions, topic aliases, flow control by Receive Maximum, keep-alive, `$SYS`
//! statistics, password authentication ([`Credentials`], argon2id), enhanced authentication
//! ([`ScramSha256`]), and Mosquitto-style access control ([`AclRules`]).
//!
//! # Contract with the driver
//! - Call [`Broker::handle_connection`] for each accepted connection, then
//!   [`Broker::handle_packet`] for each packet its decoder yields,
//!   [`Broker::handle_decode_error`] when the decoder fails, and
//!   [`Broker::handle_connection_lost`] when the socket dies.
//! - After each input, run every [`Broker::poll_action`] in order. An
//!   [`Action::Persist`] must be durable before an acknowledgement that follows it among the
//!   actions of the same input goes out: that is how an acknowledgement never runs ahead of
//!   the data it confirms. The actions of one connection keep their order. An
//!   [`Action::Protocol`] sets the version the connection's decoder and encoder use from then
//!   on; an [`Action::CheckPassword`] is answered with [`Broker::handle_password_verdict`].
//! - Call [`Broker::handle_timeout`] when [`Broker::poll_timeout`] says.
//! - While the store falls behind, ask [`Broker::needs_store`] before handing a packet
//!   over, and hold back the connections whose next packet would add to the backlog
//!   ([`Broker::handle_input_paused`]).
//!
//! # Example
//! ```
//! use std::time::{Duration, Instant};
//! use mqtt5_broker::{
//!     Action, AllowAll, Broker, Config, ConnId, Passwords, PeerInfo, RandomSource, Services,
//! };
//! use mqtt5_codec::{Connect, MqttString, Packet};
//!
//! struct Counter(u8);
//! impl RandomSource for Counter {
//!     fn fill_bytes(&mut self, dest: &mut [u8]) {
//!         for b in dest {
//!             self.0 = self.0.wrapping_add(1);
//!             *b = self.0;
//!         }
//!     }
//! }
//!
//! # #[allow(clippy::disallowed_methods)]
//! let start = Instant::now();
//! let services = Services {
//!     passwords: Passwords::NoUsers,
//!     authorizer: Box::new(AllowAll),
//!     enhanced: Vec::new(),
//!     random: Box::new(Counter(0)),
//! };
//! let mut broker = Broker::new(Config::default(), services, start, 0).unwrap();
//! let conn = ConnId(1);
//! broker
//!     .handle_connection(start, conn, PeerInfo::new("127.0.0.1:50000".parse().unwrap()))
//!     .unwrap();
//! let connect = Connect { client_id: MqttString::try_from("sensor-1").unwrap(), ..Connect::default() };
//! broker.handle_packet(start, conn, Packet::Connect(Box::new(connect)));
//!
//! let mut sent = Vec::new();
//! while let Some(action) = broker.poll_action() {
//!     match action {
//!         Action::Send { packet, .. } => sent.push(packet),
//!         Action::Persist(_ops) => { /* hand to the store, wait until durable */ }
//!         Action::Close { .. } | Action::Protocol { .. } | Action::CheckPassword(_) | Action::Notice(_) => {}
//!     }
//! }
//! assert!(matches!(sent[0], Packet::ConnAck(_)));
//! // Keep-alive, will delays, session expiry and $SYS all come back through poll_timeout.
//! assert!(broker.poll_timeout().is_some());
//! # let _ = Duration::ZERO;
//! ```

mod access;
mod acl;
mod auth;
mod backpressure;
#[cfg(feature = "bench")]
pub mod bench;
mod broker;
mod clock;
mod config;
mod connect;
mod connections;
mod credentials;
mod deliver;
mod disconnect;
mod durable;
mod expiry;
mod id_hash;
mod outbox;
mod publish;
mod random;
mod restore;
mod retained;
mod router;
mod scram;
mod session;
mod state;
mod stats;
mod subscribe;
mod sys;
mod throttle;
mod timers;
mod topic_tree;
mod trie;
mod types;
mod violation;

pub use acl::*;
pub use auth::{
    AuthExchange, AuthStep, AuthVerdict, Authenticator, ClientInfo, EnhancedAuthenticator,
    Passwords,
};
pub use broker::{Broker, Services};
pub use config::{Config, QueuePolicy};
pub use credentials::*;
pub use random::RandomSource;
pub use scram::*;
pub use stats::Stats;
pub use throttle::address_key;
pub use types::{Action, Barrier, ConnId, Error, Identity, Notice, PasswordCheck, PeerInfo};
