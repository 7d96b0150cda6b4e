//! The broker core's configuration: limits, switches and policies.

use std::time::Duration;

use mqtt5_codec::QoS;

/// What happens to a message for a session whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueuePolicy {
    /// Drop the oldest queued message to make room (the newest data wins).
    #[default]
    DropOldest,
    /// Drop the new message.
    DropNewest,
}

/// Limits and switches of the broker core. [`Config::default`] is what an operator gets with
/// no configuration at all.
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest packet the broker accepts, sent as Maximum Packet Size (MQTT 5 §3.2.2.3.6).
    /// Default 1 MiB.
    pub max_packet_size: u32,
    /// How many QoS 1 and 2 PUBLISH packets a client may have unacknowledged towards the broker,
    /// sent as Receive Maximum (§3.2.2.3.3). Default 1024.
    pub receive_maximum: u16,
    /// The most QoS 1 and 2 messages in flight towards one client; the client's own Receive
    /// Maximum can only lower it. Default 1024.
    pub max_inflight: u16,
    /// The most messages queued for one session (offline, or its window full). Default 10,000.
    pub max_queued_messages: usize,
    /// The most bytes one session may hold in its queue and its in-flight window together:
    /// each message's topic, payload and properties, plus a fixed overhead per delivery
    /// (128 bytes). Past it, the queue policy drops messages (or the client is disconnected
    /// with 0x97 under [`Config::disconnect_slow_consumers`]), and the drops are counted.
    /// Default 64 MiB.
    pub max_queued_bytes: usize,
    /// The most bytes of queued and in-flight messages over all sessions, each message counted
    /// once however many sessions hold it, plus the per-delivery overhead. When it is reached
    /// the broker acts as on a full store: new persistent work is refused with 0x97 and new
    /// queued deliveries are dropped (and counted) until the queues drain below it.
    /// Default 1 GiB.
    pub max_queued_bytes_total: usize,
    /// What to drop when a queue is full.
    pub queue_policy: QueuePolicy,
    /// Whether a connected client whose queue overflows (it reads too slowly) is disconnected
    /// with 0x97 instead of losing messages to the queue policy. Default false.
    pub disconnect_slow_consumers: bool,
    /// Whether QoS 0 messages are queued for offline persistent sessions. Default false, as
    /// Mosquitto.
    pub queue_qos0_offline: bool,
    /// The highest QoS the broker supports (Maximum QoS, §3.2.2.3.4). Default 2.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported (Retain Available). Default true.
    pub retain_available: bool,
    /// The most retained messages kept. A retained PUBLISH for a new topic past it is refused
    /// with 0x97 at QoS 1 and 2 (MQTT 5); otherwise it is delivered but not kept. `$SYS`
    /// topics do not count. Default 1,000,000.
    pub max_retained_messages: usize,
    /// The most bytes of retained messages kept (topic, payload and properties), with the
    /// same answer as [`Config::max_retained_messages`] past it. Default 256 MiB.
    pub max_retained_bytes: usize,
    /// Whether wildcard filters are supported. Default true.
    pub wildcard_subscriptions: bool,
    /// Whether Subscription Identifiers are supported. Default true.
    pub subscription_identifiers: bool,
    /// Whether shared subscriptions are supported. Default true.
    pub shared_subscriptions: bool,
    /// How many topic aliases a client may set towards the broker (Topic Alias Maximum).
    /// Default 64.
    pub topic_alias_maximum: u16,
    /// The keep-alive the broker imposes (Server Keep Alive, §3.2.2.3.14) on MQTT 5 clients
    /// that ask for 0 or for more than this. `None`: the client's value stands.
    pub max_keep_alive: Option<u16>,
    /// The longest Session Expiry Interval granted, in seconds; a longer request is capped and
    /// the cap sent back in CONNACK. Default `u32::MAX` (no cap).
    pub max_session_expiry: u32,
    /// The most persistent sessions (Session Expiry Interval above 0; 3.1.1 Clean Session 0)
    /// the broker keeps, connected or not. Past it a CONNECT that would create a new one is
    /// refused with CONNACK 0x97 (3.1.1 and 3.1: return code 3) and reported with
    /// [`crate::Notice::SessionLimit`]; nothing is evicted. Resuming, taking over or replacing
    /// (Clean Start) an existing persistent session is not a new one. Default 1,000,000.
    pub max_persistent_sessions: usize,
    /// How long a new connection may take to complete CONNECT (and any AUTH exchange).
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// Whether clients without a User Name may connect. Default true (the binary restricts it
    /// to loopback listeners).
    pub allow_anonymous: bool,
    /// Whether User Names and Passwords are ignored: every client connects as anonymous,
    /// whatever it presents (anonymous access must then be allowed). A listener may say
    /// otherwise ([`crate::PeerInfo::ignore_credentials`]). Default false: a client that
    /// presents a User Name is authenticated, and refused when no users are configured.
    pub ignore_credentials: bool,
    /// Whether the client identifier is replaced by the authenticated user name, so that each
    /// user has exactly one session (Mosquitto's `use_username_as_client_id`). A client
    /// without a user name is then refused with 0x87 (3.1.1: 5). A listener may say
    /// otherwise ([`crate::PeerInfo::use_username_as_client_id`]). Default false.
    pub use_username_as_client_id: bool,
    /// Whether a client of another identity may take over a session (Mosquitto's behaviour
    /// before sessions had owners): it then inherits the session, and queued messages its
    /// identity may not read are dropped on resume. Default false: such a CONNECT is refused
    /// with 0x87 (3.1.1: 5), and the owner's session stays as it was.
    pub allow_cross_user_takeover: bool,
    /// The longest delay before refusing a CONNECT whose credentials failed. The delay grows
    /// with the failures of the client's address and of the user name within the last minute
    /// (100 ms, 200 ms, 400 ms, … up to this); a successful login of the user clears the
    /// user's count. Zero turns the delay off. Default 5 s.
    pub failed_login_delay_max: Duration,
    /// The most subscriptions one session may hold; more are refused with 0x97 (MQTT 5) or
    /// 0x80. Default 10,000.
    pub max_subscriptions_per_client: usize,
    /// The most bytes of topic filters one session may hold (the sum of their lengths,
    /// `$share/…` prefixes included); a subscription past it is refused with 0x97 (MQTT 5)
    /// or 0x80. Default 2 MiB.
    pub max_subscription_bytes_per_client: usize,
    /// The longest topic filter accepted, in bytes (`$share/…` prefix included); longer ones
    /// are refused with 0x8F (MQTT 5) or 0x80. Default 4,096.
    pub max_topic_filter_length: usize,
    /// The most levels a topic name or filter may have. Deeper filters are refused with 0x8F,
    /// deeper topic names with 0x90 (or dropped at QoS 0). Default 128.
    pub max_topic_levels: usize,
    /// How often `$SYS/broker/...` statistics are published; `None` turns them off.
    /// Default 10 s.
    pub sys_interval: Option<Duration>,
    /// The prefix of assigned client identifiers, followed by random characters.
    pub assigned_id_prefix: String,
    /// The broker's version, published in `$SYS/broker/version`.
    pub version: String,
    /// Whether each connect and disconnect is persisted as a client record
    /// (`StoreOp::ClientConnected`, `StoreOp::ClientDisconnected`). They are a history for the
    /// database's readers: a broker without a database has no reader for them, and one record
    /// per client that ever connected would only cost memory. Default true.
    pub client_records: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_packet_size: 1 << 20,
            receive_maximum: 1024,
            max_inflight: 1024,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 << 20,
            max_queued_bytes_total: 1 << 30,
            queue_policy: QueuePolicy::DropOldest,
            disconnect_slow_consumers: false,
            queue_qos0_offline: false,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 256 << 20,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
            topic_alias_maximum: 64,
            max_keep_alive: None,
            max_session_expiry: u32::MAX,
            max_persistent_sessions: 1_000_000,
            connect_timeout: Duration::from_secs(10),
            allow_anonymous: true,
            ignore_credentials: false,
            use_username_as_client_id: false,
            allow_cross_user_takeover: false,
            failed_login_delay_max: Duration::from_secs(5),
            max_subscriptions_per_client: 10_000,
            max_subscription_bytes_per_client: 2 << 20,
            max_topic_filter_length: 4096,
            max_topic_levels: 128,
            sys_interval: Some(Duration::from_secs(10)),
            assigned_id_prefix: "mqtt5-".to_owned(),
            version: concat!("mqtt5 ", env!("CARGO_PKG_VERSION")).to_owned(),
            client_records: true,
        }
    }
}
