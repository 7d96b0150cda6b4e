//! The vocabulary between the core and its driver: connection ids, peers, actions, errors.

use std::net::SocketAddr;

use mqtt5_codec::Packet;
use mqtt5_store::StoreOp;

/// A connection, as the driver names it. The driver picks the numbers; the core only compares
/// them. A number must not be reused while the core still knows the connection (until the
/// driver has executed its `Close` or reported it lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the driver knows about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Whether clients without a User Name may connect through this connection's listener;
    /// `None` takes [`crate::Config::allow_anonymous`].
    pub allow_anonymous: Option<bool>,
}

impl PeerInfo {
    /// A peer at `addr`, under the configuration's anonymous-access policy.
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            allow_anonymous: None,
        }
    }
}

/// What the core asks its driver to do, in order (`docs/architecture.md`, "The sans-IO core").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send a packet on a connection, in the protocol version the connection's
    /// CONNECT announced.
    Send {
        /// The connection.
        conn: ConnId,
        /// The packet.
        packet: Packet,
    },
    /// Apply these ops to the store. They must be durable before any later `Send` runs, so
    /// that an acknowledgement never runs ahead of the data it confirms.
    Persist(Vec<StoreOp>),
    /// Close the connection once everything sent before has been flushed. The core forgets the
    /// connection; the driver must not report it lost afterwards (doing so is harmless).
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Misuse of the core's API (a peer's protocol violation is never an `Err`: it becomes
/// actions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `handle_connection` was called with a connection id the core still knows.
    #[error("connection {0:?} is already open")]
    ConnectionExists(ConnId),
    /// `restore` was called on a broker that already has state.
    #[error("restore needs a fresh broker, with no sessions, connections or retained messages")]
    NotFresh,
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}
