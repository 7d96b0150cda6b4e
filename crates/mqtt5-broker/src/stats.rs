//! Counters the core keeps, published under `$SYS` and read by the driver's metrics.

/// Counters since start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Completed CONNECTs.
    pub connects: u64,
    /// The most connections completed at once.
    pub max_connected: u64,
    /// Sessions taken over by a new connection with the same client id.
    pub takeovers: u64,
    /// CONNECTs and re-authentications refused for their credentials.
    pub auth_failures: u64,
    /// Connections ended for a protocol violation (keep-alive timeouts included).
    pub protocol_errors: u64,
    /// PUBLISH packets received (wills included).
    pub messages_received: u64,
    /// PUBLISH packets sent.
    pub messages_sent: u64,
    /// Messages dropped: session queue full, expired, or too large for the client.
    pub messages_dropped: u64,
    /// Messages dropped because they expired before delivery.
    pub messages_expired: u64,
    /// PUBLISH packets (and wills) refused by the authorizer.
    pub denied_publishes: u64,
    /// Deliveries the authorizer refused at delivery time: retained messages on SUBSCRIBE,
    /// messages queued or in flight when a session resumed or left its queue, and shared
    /// subscription messages no member of the group may read.
    pub denied_deliveries: u64,
    /// CONNECTs refused because the session of their client identifier belongs to another
    /// identity.
    pub ownership_refusals: u64,
    /// CONNECTs refused because a new persistent session would pass
    /// [`crate::Config::max_persistent_sessions`].
    pub session_limit_refusals: u64,
    /// Times the driver stopped reading a connection whose next packet would give a store that
    /// is behind more work ([`crate::Broker::handle_input_paused`]).
    pub input_pauses: u64,
    /// Messages dropped because the queues held [`crate::Config::max_queued_bytes_total`].
    pub queue_memory_drops: u64,
    /// Retained messages not kept because the retained store was at its limits.
    pub retained_refused: u64,
    /// Bytes the driver reported received.
    pub bytes_received: u64,
    /// Bytes the driver reported sent.
    pub bytes_sent: u64,
}
