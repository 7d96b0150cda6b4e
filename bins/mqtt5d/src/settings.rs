//! The configuration file (TOML) and the [`Settings`] it gives once the command line's
//! overrides are applied.
//!
//! [`Settings::load`] is the one loader: the run command, `check-config` and the `user` and
//! `acl` commands all go through it. It reads the file (or nothing: then every value is its
//! default), applies the [`Overrides`] of the command line, checks every value and collects
//! every problem it finds, each with the line and column of the key that holds it (from
//! toml's spans), so that one run of `mqtt5d check-config` reports them all.
//!
//! `mqtt5d.example.toml`, beside `Cargo.toml`, lists every key with its default value; a test
//! below loads it.
//!
//! Relative paths (data directory, TLS files, ACL file) are taken relative to the working
//! directory mqtt5d runs in, as Mosquitto does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mqtt5_broker::{AclRules, Config, QueuePolicy};
use mqtt5_codec::QoS;
use serde::Deserialize;
use toml::Spanned;

use crate::logging::{LogFormat, LogSettings};

/// The listener with no configuration: plain MQTT on the loopback interface.
pub(crate) const DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883);

/// The data directory with no configuration.
pub(crate) const DEFAULT_DATA_DIR: &str = "./mqtt5-data";

/// The file name of the SQLite database inside the data directory.
pub(crate) const DATABASE_FILE: &str = "mqtt5.db";

/// The default global connection cap.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// The default cap on connections from one address that have not completed CONNECT.
pub(crate) const DEFAULT_MAX_CONNECTING_PER_ADDRESS: usize = 64;

/// The default per-connection write buffer limit: 1 MiB.
pub(crate) const DEFAULT_WRITE_BUFFER_LIMIT: usize = 1 << 20;

/// The default period of [`Durability::Periodic`], in milliseconds.
pub(crate) const DEFAULT_PERIODIC_MS: u64 = 100;

/// The default high watermark of the store's backlog, in uncommitted ops: two of the writer's
/// largest transactions (10,000 ops each).
const DEFAULT_BACKLOG_HIGH_OPS: usize = 20_000;

/// The default low watermark: half a transaction, so that the writer still has work while the
/// paused clients send again.
const DEFAULT_BACKLOG_LOW_OPS: usize = 5_000;

/// The default path of a WebSocket listener.
pub(crate) const DEFAULT_WEBSOCKET_PATH: &str = "/mqtt";

/// The default address of the metrics endpoint, when `[metrics]` is present.
pub(crate) const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// The fewest PBKDF2 iterations `[auth] scram_iterations` accepts, and its default:
/// [`mqtt5_broker::SCRAM_DEFAULT_ITERATIONS`].
pub(crate) const MIN_SCRAM_ITERATIONS: u32 = mqtt5_broker::SCRAM_DEFAULT_ITERATIONS;

/// The default log level (a `tracing` filter directive).
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";

/// The largest packet MQTT can carry: a 1-byte header, a 4-byte Remaining Length and
/// 268,435,455 bytes after it (MQTT 5 §1.5.5, §2.1.4).
const MAX_MQTT_PACKET: u32 = 268_435_460;

/// The longest prefix of assigned client identifiers.
const MAX_ASSIGNED_ID_PREFIX: usize = 32;

/// Everything the broker binary runs with: the configuration file, command-line overrides
/// applied, checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Where to accept connections; never empty, no two on one address.
    pub(crate) listeners: Vec<ListenerSettings>,
    /// The most client connections at once over all listeners. Default 100,000.
    pub(crate) max_connections: usize,
    /// The most connections from one address (an IPv6 /64) that have not completed CONNECT;
    /// past it new ones from that address are closed at once. Default 64.
    pub(crate) max_connecting_per_address: usize,
    /// The broker core's configuration (`[broker]`). Its `allow_anonymous` is true when any
    /// listener lets anonymous clients in ([`Settings::allows_anonymous`]); the driver must
    /// still refuse them on the other listeners.
    pub(crate) broker: Config,
    /// Whether the Disallowed Unicode code points of MQTT 5 §1.5.4 (controls and
    /// non-characters) are accepted in topic names and filters, client identifiers, user
    /// names and will topics (`[broker] allow_disallowed_code_points`). Default false: such a
    /// packet is malformed. The driver's decoders apply it.
    pub(crate) allow_disallowed_code_points: bool,
    /// Where and how the state is persisted (`[storage]`).
    pub(crate) storage: StorageSettings,
    /// Who may connect and what they may do (`[auth]`).
    pub(crate) auth: AuthSettings,
    /// Logging (`[log]`).
    pub(crate) log: LogSettings,
    /// The address of the metrics endpoint (`[metrics] listen`); `None` (the default) when
    /// the file has no `[metrics]` table.
    pub(crate) metrics: Option<SocketAddr>,
    /// The most bytes of outgoing data buffered for one connection, plus one packet: a
    /// client whose buffer is past it when another packet comes does not read, and is
    /// disconnected. Default 1 MiB.
    pub(crate) write_buffer_limit: usize,
}

/// One listening socket (`[[listener]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerSettings {
    /// The address and port to bind.
    pub(crate) bind: SocketAddr,
    /// MQTT over TCP, or over WebSocket.
    pub(crate) protocol: ListenerProtocol,
    /// TLS on this listener; `None` for plain TCP.
    pub(crate) tls: Option<TlsSettings>,
    /// The most connections on this listener; `None`: only the global cap applies.
    pub(crate) max_connections: Option<usize>,
    /// Whether clients without a User Name may connect here; `None`: as `[auth]` says
    /// ([`Settings::allows_anonymous`]).
    pub(crate) allow_anonymous: Option<bool>,
    /// Whether this listener ignores user names and passwords (every client is anonymous);
    /// `None`: as `[auth] ignore_credentials` says.
    pub(crate) ignore_credentials: Option<bool>,
    /// Whether the client identifier is replaced by the user name here; `None`: as
    /// `[auth] use_username_as_client_id` says.
    pub(crate) use_username_as_client_id: Option<bool>,
}

impl ListenerSettings {
    /// A plain MQTT listener on `bind`, with no limit or policy of its own.
    pub(crate) const fn plain(bind: SocketAddr) -> Self {
        Self {
            bind,
            protocol: ListenerProtocol::Mqtt,
            tls: None,
            max_connections: None,
            allow_anonymous: None,
            ignore_credentials: None,
            use_username_as_client_id: None,
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerProtocol {
    /// MQTT directly over TCP (or TLS).
    Mqtt,
    /// MQTT over WebSocket (RFC 6455, subprotocol `mqtt`).
    WebSocket {
        /// The HTTP path of the upgrade request, starting with `/`. Default `/mqtt`.
        path: String,
    },
}

impl fmt::Display for ListenerProtocol {
    /// As the log shows it: `mqtt`, or `websocket` and its path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mqtt => f.write_str("mqtt"),
            Self::WebSocket { path } => write!(f, "websocket {path}"),
        }
    }
}

/// A listener's TLS files (PEM). They existed when the settings were loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// The certificate chain.
    pub(crate) cert: PathBuf,
    /// The private key.
    pub(crate) key: PathBuf,
    /// CA certificates to verify client certificates with; when set, clients must present one.
    pub(crate) client_ca: Option<PathBuf>,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageSettings {
    /// The directory of the database. Default `./mqtt5-data`.
    pub(crate) data_dir: PathBuf,
    /// When a persisted batch counts as durable.
    pub(crate) durability: Durability,
    /// The most bytes the database may grow to; past it, writes fail as on a full disk and
    /// the broker refuses new persistent work. `None`: only the disk limits it.
    pub(crate) max_size: Option<u64>,
    /// The high watermark of the store's backlog: from this many store ops submitted and not
    /// yet committed on, the store is behind, and the connections whose next packet would add
    /// to the backlog are no longer read. At least 1. Default 20,000.
    pub(crate) backlog_high_ops: usize,
    /// The low watermark: at this many uncommitted ops or fewer the store has caught up, and
    /// the paused connections are read again, in the order they were paused. Below
    /// `backlog_high_ops`. Default 5,000.
    pub(crate) backlog_low_ops: usize,
}

impl StorageSettings {
    /// The SQLite database: `mqtt5.db` in the data directory.
    pub(crate) fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

/// When a persisted batch counts as durable (`[storage] durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Committed to disk before any acknowledgement that depends on it (the default).
    Sync,
    /// Committed in groups at most this far apart; acknowledgements do not wait for it, so a
    /// crash can lose that much.
    Periodic(Duration),
    /// Sessions, messages and client records are not written to disk: they live and die with
    /// the process. Users, access rules and SCRAM credentials still come from the database
    /// when its file exists at start.
    Memory,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthSettings {
    /// Whether clients without a User Name may connect; `None` (the default): only through
    /// listeners bound to a loopback address. A listener's own `allow_anonymous` wins.
    pub(crate) allow_anonymous: Option<bool>,
    /// A Mosquitto-format ACL file.
    pub(crate) acl_file: Option<PathBuf>,
    /// The rules of [`acl_file`](Self::acl_file), read and parsed when the settings were
    /// loaded.
    pub(crate) acl_rules: Option<AclRules>,
    /// Whether the ACL rules in the database (`mqtt5d acl add`) apply. Default false.
    pub(crate) use_database_acl: bool,
    /// Whether MQTT 5 clients may authenticate with the enhanced method SCRAM-SHA-256
    /// (§4.12), against the credentials `mqtt5d user add` stores. Default false; `user add`
    /// stores SCRAM credentials only when it is true.
    pub(crate) scram_sha_256: bool,
    /// How many threads check passwords (argon2), off the event loop. Default: one less than
    /// the processors, at least one.
    pub(crate) password_workers: usize,
    /// The PBKDF2 iterations `mqtt5d user add` derives SCRAM credentials with, and the count
    /// unknown users are shown. At least (and by default) [`MIN_SCRAM_ITERATIONS`].
    pub(crate) scram_iterations: u32,
}

/// The durability chosen in the file or on the command line, before the period is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DurabilityKind {
    /// Commit to disk before each acknowledgement that depends on it (the default)
    #[default]
    Sync,
    /// Commit in groups at most `[storage] periodic_ms` apart.
    #[value(
        help = "Commit in groups at most [storage] periodic_ms apart; a crash can lose that much"
    )]
    Periodic,
    /// Keep everything in memory; write nothing to disk
    Memory,
}

/// Values from the command line that replace the file's.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    /// Plain MQTT listeners replacing every `[[listener]]` of the file (when not empty).
    pub(crate) listen: Vec<SocketAddr>,
    /// `[storage] data_dir`.
    pub(crate) data_dir: Option<PathBuf>,
    /// `[storage] durability` (a periodic one keeps the file's `periodic_ms`).
    pub(crate) durability: Option<DurabilityKind>,
    /// `[log] level`.
    pub(crate) log_level: Option<String>,
    /// `[log] format`.
    pub(crate) log_format: Option<LogFormat>,
    /// The top-level `max_connections`.
    pub(crate) max_connections: Option<usize>,
    /// `[auth] allow_anonymous`; it also clears every listener's own `allow_anonymous`, so
    /// that the command line has the last word.
    pub(crate) allow_anonymous: Option<bool>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut settings = Self {
            listeners: vec![ListenerSettings::plain(DEFAULT_BIND)],
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connecting_per_address: DEFAULT_MAX_CONNECTING_PER_ADDRESS,
            broker: Config::default(),
            allow_disallowed_code_points: false,
            storage: StorageSettings {
                data_dir: PathBuf::from(DEFAULT_DATA_DIR),
                durability: Durability::Sync,
                max_size: None,
                backlog_high_ops: DEFAULT_BACKLOG_HIGH_OPS,
                backlog_low_ops: DEFAULT_BACKLOG_LOW_OPS,
            },
            auth: AuthSettings {
                allow_anonymous: None,
                acl_file: None,
                acl_rules: None,
                use_database_acl: false,
                scram_sha_256: false,
                password_workers: default_password_workers(),
                scram_iterations: MIN_SCRAM_ITERATIONS,
            },
            log: LogSettings {
                level: DEFAULT_LOG_LEVEL.to_owned(),
                format: LogFormat::Text,
            },
            metrics: None,
            write_buffer_limit: DEFAULT_WRITE_BUFFER_LIMIT,
        };
        settings.broker.allow_anonymous = settings.any_listener_allows_anonymous();
        settings
    }
}

impl Settings {
    /// Loads the settings: the file at `path` (or the defaults without one), then the
    /// overrides, then the checks.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Invalid`] with every
    /// problem found otherwise.
    pub(crate) fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        match path {
            None => Self::from_toml("", "<defaults>", overrides),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text, &path.display().to_string(), overrides)
            }
        }
    }

    /// Parses and checks the text of a configuration file; `name` is how problems refer to it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem found.
    pub(crate) fn from_toml(
        text: &str,
        name: &str,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut loader = Loader {
            text,
            name,
            problems: Vec::new(),
            listener_ignore: Vec::new(),
        };
        let file: FileSettings = match toml::from_str(text) {
            Ok(file) => file,
            Err(e) => {
                loader.problem(e.span(), e.message().trim_end());
                return Err(ConfigError::Invalid(loader.into_problems()));
            }
        };
        let settings = loader.build(file, overrides);
        if loader.problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(loader.into_problems()))
        }
    }

    /// Whether clients without a User Name may connect through `listener`: its own
    /// `allow_anonymous` if set, else `[auth] allow_anonymous` if set, else only if it is
    /// bound to a loopback address.
    pub(crate) fn allows_anonymous(&self, listener: &ListenerSettings) -> bool {
        listener
            .allow_anonymous
            .or(self.auth.allow_anonymous)
            .unwrap_or_else(|| listener.bind.ip().is_loopback())
    }

    fn any_listener_allows_anonymous(&self) -> bool {
        self.listeners.iter().any(|l| self.allows_anonymous(l))
    }

    /// Whether `listener` ignores user names and passwords: its own `ignore_credentials` if
    /// set, else `[auth] ignore_credentials`.
    pub(crate) fn ignores_credentials(&self, listener: &ListenerSettings) -> bool {
        listener
            .ignore_credentials
            .unwrap_or(self.broker.ignore_credentials)
    }

    /// Whether `listener` replaces client identifiers by user names.
    pub(crate) fn uses_username_as_client_id(&self, listener: &ListenerSettings) -> bool {
        listener
            .use_username_as_client_id
            .unwrap_or(self.broker.use_username_as_client_id)
    }
}

/// The default number of password-checking threads: one less than the processors (the event
/// loop keeps a core), at least one.
fn default_password_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// The authorizer the settings call for: the rules of `[auth] acl_file` and, with
/// `use_database_acl = true`, the database's rules (`acl`, from `Store::recover`) together;
/// `None` when neither is configured (everything is allowed). Rules that are configured but
/// empty deny everything, as an empty Mosquitto `acl_file` does.
///
/// # Errors
///
/// [`InvalidAclRecord`](mqtt5_broker::InvalidAclRecord) for a stored rule that is not
/// valid.
pub(crate) fn authorizer(
    settings: &Settings,
    acl: &[mqtt5_store::AclRecord],
) -> Result<Option<Box<dyn mqtt5_broker::Authorizer>>, mqtt5_broker::InvalidAclRecord> {
    if settings.auth.acl_rules.is_none() && !settings.auth.use_database_acl {
        return Ok(None);
    }
    let mut rules = settings.auth.acl_rules.clone().unwrap_or_default();
    if settings.auth.use_database_acl {
        for record in acl {
            rules.add(mqtt5_broker::AclRule::try_from(record)?);
        }
    }
    Ok(Some(Box::new(rules)))
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or the command line holds invalid values: every problem found, in order.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Where: `FILE:LINE:COLUMN` (1-based), `FILE` when no position is known, or the
    /// command-line option.
    pub(crate) location: String,
    /// The 1-based line and column (in characters) in the file, when known.
    pub(crate) position: Option<(usize, usize)>,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Problems, one a line.
struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

// ---- The file as written ----------------------------------------------------------------

/// The top level of the file. Every value that is checked keeps its span.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    max_connections: Option<Spanned<usize>>,
    max_connecting_per_address: Option<Spanned<usize>>,
    write_buffer_limit: Option<Spanned<usize>>,
    listener: Option<Spanned<Vec<FileListener>>>,
    #[serde(default)]
    broker: FileBroker,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    log: FileLog,
    metrics: Option<FileMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    bind: Spanned<SocketAddr>,
    protocol: Option<ProtocolName>,
    path: Option<Spanned<String>>,
    tls_cert: Option<Spanned<PathBuf>>,
    tls_key: Option<Spanned<PathBuf>>,
    tls_client_ca: Option<Spanned<PathBuf>>,
    max_connections: Option<Spanned<usize>>,
    allow_anonymous: Option<bool>,
    ignore_credentials: Option<Spanned<bool>>,
    use_username_as_client_id: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ProtocolName {
    Mqtt,
    Websocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum QueuePolicyName {
    DropOldest,
    DropNewest,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBroker {
    max_packet_size: Option<Spanned<u32>>,
    allow_disallowed_code_points: Option<bool>,
    receive_maximum: Option<Spanned<u16>>,
    max_inflight: Option<Spanned<u16>>,
    max_queued_messages: Option<usize>,
    max_queued_bytes: Option<Spanned<usize>>,
    max_queued_bytes_total: Option<Spanned<usize>>,
    max_retained_messages: Option<usize>,
    max_retained_bytes: Option<usize>,
    max_topic_filter_length: Option<Spanned<usize>>,
    max_subscription_bytes_per_client: Option<Spanned<usize>>,
    queue_policy: Option<QueuePolicyName>,
    disconnect_slow_consumers: Option<bool>,
    queue_qos0_offline: Option<bool>,
    maximum_qos: Option<Spanned<u8>>,
    retain_available: Option<bool>,
    wildcard_subscriptions: Option<bool>,
    subscription_identifiers: Option<bool>,
    shared_subscriptions: Option<bool>,
    topic_alias_maximum: Option<u16>,
    max_keep_alive_secs: Option<u16>,
    max_session_expiry_secs: Option<u32>,
    max_persistent_sessions: Option<Spanned<usize>>,
    connect_timeout_secs: Option<Spanned<u64>>,
    max_subscriptions_per_client: Option<Spanned<usize>>,
    max_topic_levels: Option<Spanned<usize>>,
    sys_interval_secs: Option<u64>,
    assigned_id_prefix: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    data_dir: Option<Spanned<PathBuf>>,
    durability: Option<DurabilityKind>,
    periodic_ms: Option<Spanned<u64>>,
    max_size_kib: Option<Spanned<u64>>,
    backlog_high_ops: Option<Spanned<usize>>,
    backlog_low_ops: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    allow_anonymous: Option<bool>,
    acl_file: Option<Spanned<PathBuf>>,
    use_database_acl: Option<bool>,
    scram_sha_256: Option<bool>,
    ignore_credentials: Option<Spanned<bool>>,
    use_username_as_client_id: Option<bool>,
    allow_cross_user_takeover: Option<bool>,
    failed_login_delay_max_ms: Option<u64>,
    password_workers: Option<Spanned<usize>>,
    scram_iterations: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<Spanned<String>>,
    format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    listen: Option<Spanned<SocketAddr>>,
}

// ---- From the file to the settings ------------------------------------------------------

/// Builds [`Settings`] from a parsed file, collecting problems with their positions.
struct Loader<'a> {
    text: &'a str,
    name: &'a str,
    problems: Vec<Problem>,
    /// Each file listener's `ignore_credentials`, with its position, for the check that
    /// needs every setting.
    listener_ignore: Vec<Option<Spanned<bool>>>,
}

impl Loader<'_> {
    /// The line and column of a byte offset, both 1-based (columns in characters).
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn problem(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let position = span.map(|span| self.position(span.start));
        let location = match position {
            Some((line, column)) => format!("{}:{line}:{column}", self.name),
            None => self.name.to_owned(),
        };
        self.problems.push(Problem {
            location,
            position,
            message: message.into(),
        });
    }

    fn command_line(&mut self, option: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            location: format!("command line ({option})"),
            position: None,
            message: message.into(),
        });
    }

    /// The problems found, those without a position first, then in file order.
    fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| p.position);
        self.problems
    }

    /// A value that must be at least 1: the value, or `default` when absent. A zero is
    /// reported and replaced by the default.
    fn at_least_one<T>(&mut self, key: &str, value: Option<Spanned<T>>, default: T, why: &str) -> T
    where
        T: Copy + PartialEq + From<u8>,
    {
        match value {
            None => default,
            Some(v) if *v.get_ref() == T::from(0) => {
                self.problem(Some(v.span()), format!("`{key}` must be at least 1{why}"));
                default
            }
            Some(v) => v.into_inner(),
        }
    }

    fn build(&mut self, file: FileSettings, overrides: &Overrides) -> Settings {
        let defaults = Settings::default();
        let FileSettings {
            max_connections,
            max_connecting_per_address,
            write_buffer_limit,
            listener,
            broker,
            storage,
            auth,
            log,
            metrics,
        } = file;

        // The file's values are checked even where the command line replaces them: the file
        // must be valid on its own.
        let max_connections = self.at_least_one(
            "max_connections",
            max_connections,
            defaults.max_connections,
            "",
        );
        let max_connections = match overrides.max_connections {
            Some(0) => {
                self.command_line("--max-connections", "must be at least 1");
                max_connections
            }
            Some(n) => n,
            None => max_connections,
        };
        let max_connecting_per_address = self.at_least_one(
            "max_connecting_per_address",
            max_connecting_per_address,
            defaults.max_connecting_per_address,
            "",
        );
        let write_buffer_limit = self.at_least_one(
            "write_buffer_limit",
            write_buffer_limit,
            defaults.write_buffer_limit,
            "",
        );
        let mut listeners = self.listeners(listener, overrides);
        let allow_disallowed_code_points = broker.allow_disallowed_code_points.unwrap_or(false);
        let mut broker = self.broker(broker);
        let storage = self.storage(storage, overrides);
        let auth_ignore = auth.ignore_credentials.clone();
        self.auth_policies(&auth, &mut broker);
        let mut auth = self.auth(auth);
        if let Some(allow) = overrides.allow_anonymous {
            auth.allow_anonymous = Some(allow);
            for listener in &mut listeners {
                listener.allow_anonymous = None;
            }
        }
        let log = self.log(log, overrides);
        let metrics = metrics.map(|m| {
            let listen = m
                .listen
                .as_ref()
                .map_or(DEFAULT_METRICS_LISTEN, |l| *l.get_ref());
            if let Some(clash) = listeners.iter().find(|l| addresses_clash(l.bind, listen)) {
                self.problem(
                    m.listen.as_ref().map(Spanned::span),
                    format!(
                        "the metrics address {listen} is also the address of listener {}",
                        clash.bind
                    ),
                );
            }
            listen
        });

        let mut settings = Settings {
            listeners,
            max_connections,
            max_connecting_per_address,
            broker: Config::default(),
            allow_disallowed_code_points,
            storage,
            auth,
            log,
            metrics,
            write_buffer_limit,
        };
        broker.allow_anonymous = settings.any_listener_allows_anonymous();
        settings.broker = broker;
        self.check_ignore_credentials(&settings, auth_ignore.as_ref());
        settings
    }

    /// The session and credential policies of `[auth]` that the core applies.
    fn auth_policies(&mut self, file: &FileAuth, broker: &mut Config) {
        broker.ignore_credentials = file
            .ignore_credentials
            .as_ref()
            .is_some_and(|v| *v.get_ref());
        broker.use_username_as_client_id = file.use_username_as_client_id.unwrap_or(false);
        broker.allow_cross_user_takeover = file.allow_cross_user_takeover.unwrap_or(false);
        if let Some(ms) = file.failed_login_delay_max_ms {
            broker.failed_login_delay_max = Duration::from_millis(ms);
        }
    }

    /// A listener that ignores credentials admits everyone as anonymous: anonymous access must
    /// be allowed there.
    fn check_ignore_credentials(&mut self, settings: &Settings, auth: Option<&Spanned<bool>>) {
        let positions = core::mem::take(&mut self.listener_ignore);
        for (i, listener) in settings.listeners.iter().enumerate() {
            let file = positions.get(i).and_then(Option::as_ref);
            if settings.ignores_credentials(listener) && !settings.allows_anonymous(listener) {
                let span = file.or(auth).map(Spanned::span);
                self.problem(
                    span,
                    format!(
                        "`ignore_credentials` admits every client of listener {} as \
                         anonymous, but anonymous clients may not connect there (set \
                         `allow_anonymous = true` for it)",
                        listener.bind
                    ),
                );
            }
        }
    }

    fn listeners(
        &mut self,
        file: Option<Spanned<Vec<FileListener>>>,
        overrides: &Overrides,
    ) -> Vec<ListenerSettings> {
        if !overrides.listen.is_empty() {
            let listeners: Vec<_> = overrides
                .listen
                .iter()
                .copied()
                .map(ListenerSettings::plain)
                .collect();
            for (i, a) in listeners.iter().enumerate() {
                if let Some(b) = listeners[..i]
                    .iter()
                    .find(|b| addresses_clash(a.bind, b.bind))
                {
                    self.command_line(
                        "--listen",
                        format!("{} and {} cannot both be bound", b.bind, a.bind),
                    );
                }
            }
            // The file's listeners are still checked: the file must be valid on its own.
            if let Some(file) = file {
                let _ = self.file_listeners(file);
            }
            return listeners;
        }
        match file {
            None => vec![ListenerSettings::plain(DEFAULT_BIND)],
            Some(file) => self.file_listeners(file),
        }
    }

    fn file_listeners(&mut self, file: Spanned<Vec<FileListener>>) -> Vec<ListenerSettings> {
        let span = file.span();
        let file = file.into_inner();
        if file.is_empty() {
            self.problem(
                Some(span),
                "no listener: give at least one [[listener]] table, or leave `listener` out \
                 for the default (127.0.0.1:1883)",
            );
            return vec![ListenerSettings::plain(DEFAULT_BIND)];
        }
        let mut listeners: Vec<ListenerSettings> = Vec::with_capacity(file.len());
        for entry in file {
            let bind = *entry.bind.get_ref();
            if let Some(other) = listeners.iter().find(|l| addresses_clash(l.bind, bind)) {
                let message = if other.bind == bind {
                    format!("two listeners on {bind}")
                } else {
                    format!("listener {bind} clashes with listener {}", other.bind)
                };
                self.problem(Some(entry.bind.span()), message);
            }
            let protocol = match (entry.protocol.unwrap_or(ProtocolName::Mqtt), entry.path) {
                (ProtocolName::Mqtt, None) => ListenerProtocol::Mqtt,
                (ProtocolName::Mqtt, Some(path)) => {
                    self.problem(
                        Some(path.span()),
                        "`path` is only for `protocol = \"websocket\"` listeners",
                    );
                    ListenerProtocol::Mqtt
                }
                (ProtocolName::Websocket, None) => ListenerProtocol::WebSocket {
                    path: DEFAULT_WEBSOCKET_PATH.to_owned(),
                },
                (ProtocolName::Websocket, Some(path)) => {
                    if !path.get_ref().starts_with('/') {
                        self.problem(Some(path.span()), "`path` must start with `/`");
                    }
                    ListenerProtocol::WebSocket {
                        path: path.into_inner(),
                    }
                }
            };
            let tls = self.tls(bind, entry.tls_cert, entry.tls_key, entry.tls_client_ca);
            let max_connections = match entry.max_connections {
                Some(n) if *n.get_ref() == 0 => {
                    self.problem(
                        Some(n.span()),
                        "`max_connections` must be at least 1 (leave it out for no limit of \
                         the listener's own)",
                    );
                    None
                }
                n => n.map(Spanned::into_inner),
            };
            self.listener_ignore.push(entry.ignore_credentials.clone());
            listeners.push(ListenerSettings {
                bind,
                protocol,
                tls,
                max_connections,
                allow_anonymous: entry.allow_anonymous,
                ignore_credentials: entry.ignore_credentials.map(Spanned::into_inner),
                use_username_as_client_id: entry.use_username_as_client_id,
            });
        }
        listeners
    }

    fn tls(
        &mut self,
        bind: SocketAddr,
        cert: Option<Spanned<PathBuf>>,
        key: Option<Spanned<PathBuf>>,
        client_ca: Option<Spanned<PathBuf>>,
    ) -> Option<TlsSettings> {
        for (key_name, path) in [
            ("tls_cert", &cert),
            ("tls_key", &key),
            ("tls_client_ca", &client_ca),
        ] {
            if let Some(path) = path {
                self.check_file(key_name, path);
            }
        }
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: cert.into_inner(),
                key: key.into_inner(),
                client_ca: client_ca.map(Spanned::into_inner),
            }),
            (None, None) => {
                if let Some(ca) = client_ca {
                    self.problem(
                        Some(ca.span()),
                        format!(
                            "`tls_client_ca` needs `tls_cert` and `tls_key` on listener {bind}"
                        ),
                    );
                }
                None
            }
            (Some(given), None) | (None, Some(given)) => {
                self.problem(
                    Some(given.span()),
                    format!("listener {bind} needs both `tls_cert` and `tls_key` for TLS"),
                );
                None
            }
        }
    }

    /// Reports a path that is not a readable regular file.
    fn check_file(&mut self, key: &str, path: &Spanned<PathBuf>) {
        let shown = path.get_ref().display();
        match std::fs::metadata(path.get_ref()) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                let message = format!("`{key}`: {shown} is not a file");
                self.problem(Some(path.span()), message);
            }
            Err(e) => {
                let message = format!("`{key}`: {shown}: {e}");
                self.problem(Some(path.span()), message);
            }
        }
    }

    fn broker(&mut self, file: FileBroker) -> Config {
        let d = Config::default();
        let max_packet_size = match file.max_packet_size {
            Some(v) if *v.get_ref() == 0 => {
                self.problem(
                    Some(v.span()),
                    "`max_packet_size` must be at least 1 (MQTT 5 §3.2.2.3.6: Maximum Packet \
                     Size 0 is a protocol error)",
                );
                d.max_packet_size
            }
            Some(v) if *v.get_ref() > MAX_MQTT_PACKET => {
                self.problem(
                    Some(v.span()),
                    format!(
                        "`max_packet_size` must be at most {MAX_MQTT_PACKET}, the largest \
                         packet MQTT can carry"
                    ),
                );
                d.max_packet_size
            }
            v => v.map_or(d.max_packet_size, Spanned::into_inner),
        };
        let receive_maximum = self.at_least_one(
            "receive_maximum",
            file.receive_maximum,
            d.receive_maximum,
            " (MQTT 5 §3.2.2.3.3: Receive Maximum 0 is a protocol error)",
        );
        let max_inflight = self.at_least_one(
            "max_inflight",
            file.max_inflight,
            d.max_inflight,
            " (no message could ever be sent)",
        );
        let maximum_qos = match file.maximum_qos {
            None => d.maximum_qos,
            Some(v) => QoS::from_u8(*v.get_ref()).unwrap_or_else(|| {
                self.problem(Some(v.span()), "`maximum_qos` must be 0, 1 or 2");
                d.maximum_qos
            }),
        };
        let connect_timeout = match file.connect_timeout_secs {
            Some(v) if *v.get_ref() == 0 => {
                self.problem(Some(v.span()), "`connect_timeout_secs` must be at least 1");
                d.connect_timeout
            }
            v => v.map_or(d.connect_timeout, |v| Duration::from_secs(v.into_inner())),
        };
        let max_subscriptions_per_client = self.at_least_one(
            "max_subscriptions_per_client",
            file.max_subscriptions_per_client,
            d.max_subscriptions_per_client,
            "",
        );
        let max_queued_bytes = self.at_least_one(
            "max_queued_bytes",
            file.max_queued_bytes,
            d.max_queued_bytes,
            "",
        );
        let max_queued_bytes_total = self.at_least_one(
            "max_queued_bytes_total",
            file.max_queued_bytes_total,
            d.max_queued_bytes_total,
            "",
        );
        let max_topic_filter_length = self.at_least_one(
            "max_topic_filter_length",
            file.max_topic_filter_length,
            d.max_topic_filter_length,
            "",
        );
        let max_subscription_bytes_per_client = self.at_least_one(
            "max_subscription_bytes_per_client",
            file.max_subscription_bytes_per_client,
            d.max_subscription_bytes_per_client,
            "",
        );
        let max_persistent_sessions = self.at_least_one(
            "max_persistent_sessions",
            file.max_persistent_sessions,
            d.max_persistent_sessions,
            " (max_session_expiry_secs = 0 grants no persistent session at all)",
        );
        let max_topic_levels = self.at_least_one(
            "max_topic_levels",
            file.max_topic_levels,
            d.max_topic_levels,
            " (every topic has a level)",
        );
        let assigned_id_prefix = match file.assigned_id_prefix {
            None => d.assigned_id_prefix,
            Some(prefix) => {
                let ok = prefix.get_ref().len() <= MAX_ASSIGNED_ID_PREFIX
                    && prefix
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if ok {
                    prefix.into_inner()
                } else {
                    self.problem(
                        Some(prefix.span()),
                        format!(
                            "`assigned_id_prefix` must be at most {MAX_ASSIGNED_ID_PREFIX} \
                             ASCII letters, digits, `-`, `_` or `.`"
                        ),
                    );
                    d.assigned_id_prefix
                }
            }
        };
        let version = match file.version {
            None => d.version,
            Some(version) if version.get_ref().is_empty() || version.get_ref().contains('\0') => {
                self.problem(
                    Some(version.span()),
                    "`version` must be a non-empty string without NUL characters",
                );
                d.version
            }
            Some(version) => version.into_inner(),
        };
        Config {
            max_packet_size,
            receive_maximum,
            max_inflight,
            max_queued_messages: file.max_queued_messages.unwrap_or(d.max_queued_messages),
            max_queued_bytes,
            max_queued_bytes_total,
            queue_policy: match file.queue_policy {
                None => d.queue_policy,
                Some(QueuePolicyName::DropOldest) => QueuePolicy::DropOldest,
                Some(QueuePolicyName::DropNewest) => QueuePolicy::DropNewest,
            },
            queue_qos0_offline: file.queue_qos0_offline.unwrap_or(d.queue_qos0_offline),
            disconnect_slow_consumers: file
                .disconnect_slow_consumers
                .unwrap_or(d.disconnect_slow_consumers),
            maximum_qos,
            retain_available: file.retain_available.unwrap_or(d.retain_available),
            max_retained_messages: file
                .max_retained_messages
                .unwrap_or(d.max_retained_messages),
            max_retained_bytes: file.max_retained_bytes.unwrap_or(d.max_retained_bytes),
            wildcard_subscriptions: file
                .wildcard_subscriptions
                .unwrap_or(d.wildcard_subscriptions),
            subscription_identifiers: file
                .subscription_identifiers
                .unwrap_or(d.subscription_identifiers),
            shared_subscriptions: file.shared_subscriptions.unwrap_or(d.shared_subscriptions),
            topic_alias_maximum: file.topic_alias_maximum.unwrap_or(d.topic_alias_maximum),
            max_keep_alive: match file.max_keep_alive_secs {
                None => d.max_keep_alive,
                Some(0) => None,
                Some(secs) => Some(secs),
            },
            max_session_expiry: file.max_session_expiry_secs.unwrap_or(d.max_session_expiry),
            max_persistent_sessions,
            connect_timeout,
            // Set from the listeners and `[auth]` in `build`.
            allow_anonymous: d.allow_anonymous,
            max_subscriptions_per_client,
            max_subscription_bytes_per_client,
            max_topic_filter_length,
            max_topic_levels,
            // Set from `[auth]` in `build`.
            ignore_credentials: d.ignore_credentials,
            use_username_as_client_id: d.use_username_as_client_id,
            allow_cross_user_takeover: d.allow_cross_user_takeover,
            failed_login_delay_max: d.failed_login_delay_max,
            sys_interval: match file.sys_interval_secs {
                None => d.sys_interval,
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            },
            assigned_id_prefix,
            version,
            // Cleared in `server::run` for `durability = "memory"`, which has no database.
            client_records: d.client_records,
        }
    }

    fn storage(&mut self, file: FileStorage, overrides: &Overrides) -> StorageSettings {
        let file_dir = file.data_dir.map_or_else(
            || PathBuf::from(DEFAULT_DATA_DIR),
            |dir| {
                if dir.get_ref().as_os_str().is_empty() {
                    self.problem(Some(dir.span()), "`data_dir` must not be empty");
                }
                dir.into_inner()
            },
        );
        let data_dir = match &overrides.data_dir {
            Some(dir) => {
                if dir.as_os_str().is_empty() {
                    self.command_line("--data-dir", "must not be empty");
                }
                dir.clone()
            }
            None => file_dir,
        };
        let period = match file.periodic_ms {
            Some(ms) if *ms.get_ref() == 0 => {
                self.problem(
                    Some(ms.span()),
                    "`periodic_ms` must be at least 1 (for a commit before every \
                     acknowledgement, use durability = \"sync\")",
                );
                DEFAULT_PERIODIC_MS
            }
            ms => ms.map_or(DEFAULT_PERIODIC_MS, Spanned::into_inner),
        };
        let durability = match overrides.durability.or(file.durability).unwrap_or_default() {
            DurabilityKind::Sync => Durability::Sync,
            DurabilityKind::Periodic => Durability::Periodic(Duration::from_millis(period)),
            DurabilityKind::Memory => Durability::Memory,
        };
        let max_size = match file.max_size_kib {
            Some(kib) if *kib.get_ref() == 0 => {
                self.problem(
                    Some(kib.span()),
                    "`max_size_kib` must be at least 1 (leave it out for no limit)",
                );
                None
            }
            kib => kib.map(|k| k.into_inner().saturating_mul(1024)),
        };
        let backlog_high_ops = self.at_least_one(
            "backlog_high_ops",
            file.backlog_high_ops,
            DEFAULT_BACKLOG_HIGH_OPS,
            "",
        );
        let backlog_low_ops = match file.backlog_low_ops {
            Some(low) if *low.get_ref() >= backlog_high_ops => {
                self.problem(
                    Some(low.span()),
                    format!(
                        "`backlog_low_ops` must be below `backlog_high_ops` ({backlog_high_ops})"
                    ),
                );
                backlog_high_ops
                    .saturating_sub(1)
                    .min(DEFAULT_BACKLOG_LOW_OPS)
            }
            Some(low) => low.into_inner(),
            None => DEFAULT_BACKLOG_LOW_OPS.min(backlog_high_ops.saturating_sub(1)),
        };
        StorageSettings {
            data_dir,
            durability,
            max_size,
            backlog_high_ops,
            backlog_low_ops,
        }
    }

    fn auth(&mut self, file: FileAuth) -> AuthSettings {
        let acl_rules = file.acl_file.as_ref().and_then(|path| {
            let shown = path.get_ref().display();
            match std::fs::read_to_string(path.get_ref()) {
                Err(e) => {
                    let message = format!("`acl_file`: cannot read {shown}: {e}");
                    self.problem(Some(path.span()), message);
                    None
                }
                Ok(text) => match AclRules::parse(&text) {
                    Ok(rules) => Some(rules),
                    Err(e) => {
                        let message = format!("`acl_file` {shown}: {e}");
                        self.problem(Some(path.span()), message);
                        None
                    }
                },
            }
        });
        let scram_iterations = match file.scram_iterations {
            None => MIN_SCRAM_ITERATIONS,
            Some(v) if *v.get_ref() < MIN_SCRAM_ITERATIONS => {
                self.problem(
                    Some(v.span()),
                    format!(
                        "`scram_iterations` must be at least {MIN_SCRAM_ITERATIONS}: fewer make \
                         SCRAM credentials a cheap way to guess passwords"
                    ),
                );
                MIN_SCRAM_ITERATIONS
            }
            Some(v) => v.into_inner(),
        };
        AuthSettings {
            allow_anonymous: file.allow_anonymous,
            acl_file: file.acl_file.map(Spanned::into_inner),
            acl_rules,
            use_database_acl: file.use_database_acl.unwrap_or(false),
            scram_sha_256: file.scram_sha_256.unwrap_or(false),
            password_workers: self.at_least_one(
                "password_workers",
                file.password_workers,
                default_password_workers(),
                "",
            ),
            scram_iterations,
        }
    }

    fn log(&mut self, file: FileLog, overrides: &Overrides) -> LogSettings {
        let file_level = file.level.map_or_else(
            || DEFAULT_LOG_LEVEL.to_owned(),
            |level| {
                if let Err(e) = crate::logging::check_level(level.get_ref()) {
                    self.problem(Some(level.span()), format!("`level`: {e}"));
                }
                level.into_inner()
            },
        );
        let level = match &overrides.log_level {
            Some(level) => {
                if let Err(e) = crate::logging::check_level(level) {
                    self.command_line("--log-level", e);
                }
                level.clone()
            }
            None => file_level,
        };
        LogSettings {
            level,
            format: overrides.log_format.or(file.format).unwrap_or_default(),
        }
    }
}

/// Whether two sockets cannot both be bound: the same port (not 0, which lets the system pick
/// one), and the same address or either one the unspecified address (`0.0.0.0`, `[::]`), which
/// takes the port on every address.
fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../mqtt5d.example.toml");

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, "test.toml", &Overrides::default())
    }

    fn problems(text: &str) -> Vec<Problem> {
        match load(text) {
            Ok(settings) => panic!("expected problems, got {settings:?}"),
            Err(ConfigError::Invalid(problems)) => problems,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    /// The one problem of `text`, as `location: message`.
    fn problem(text: &str) -> String {
        let problems = problems(text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems[0].to_string()
    }

    #[test]
    fn no_file_gives_the_defaults() {
        let settings = Settings::load(None, &Overrides::default()).unwrap();
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::default())
        );
        assert_eq!(
            settings.listeners,
            vec![ListenerSettings::plain(DEFAULT_BIND)]
        );
        assert_eq!(settings.listeners[0].bind.to_string(), "127.0.0.1:1883");
        assert_eq!(settings.max_connections, 100_000);
        assert_eq!(settings.write_buffer_limit, 1024 * 1024);
        assert_eq!(settings.storage.data_dir, PathBuf::from("./mqtt5-data"));
        assert_eq!(
            settings.storage.database_path(),
            PathBuf::from("./mqtt5-data/mqtt5.db")
        );
        assert_eq!(settings.storage.durability, Durability::Sync);
        assert_eq!(settings.auth.allow_anonymous, None);
        assert!(settings.allows_anonymous(&settings.listeners[0]));
        assert!(settings.broker.allow_anonymous);
        assert_eq!(settings.log.level, "info");
        assert_eq!(settings.log.format, LogFormat::Text);
        assert_eq!(settings.metrics, None);
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let settings = load("").unwrap();
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::default())
        );
    }

    #[test]
    fn example_file_loads_and_equals_the_defaults() {
        let settings = Settings::from_toml(EXAMPLE, "mqtt5d.example.toml", &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::default())
        );
    }

    /// Uncommenting every `#key = value` line (and `#[table]` line) of the example gives a
    /// valid file too: the optional keys it documents exist and have valid example values.
    #[test]
    fn example_file_with_every_optional_key_loads() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["server.crt", "server.key", "clients-ca.crt"] {
            std::fs::write(dir.path().join(file), "PEM").unwrap();
        }
        std::fs::write(
            dir.path().join("acl.txt"),
            "topic read $SYS/#\nuser alice\ntopic alice/#\n",
        )
        .unwrap();
        let uncommented: String = EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let prefix = format!("{}/", dir.path().display());
        let text = uncommented.replace("/etc/mqtt5d/", &prefix);
        let settings = Settings::from_toml(&text, "uncommented.toml", &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(settings.listeners.len(), 2);
        let wss = &settings.listeners[1];
        assert_eq!(
            wss.protocol,
            ListenerProtocol::WebSocket {
                path: "/mqtt".into()
            }
        );
        let tls = wss.tls.as_ref().unwrap();
        assert!(tls.client_ca.is_some());
        assert!(wss.max_connections.is_some());
        assert_eq!(wss.allow_anonymous, Some(false));
        assert!(settings.metrics.is_some());
        assert!(settings.auth.acl_rules.is_some());
        assert!(settings.auth.allow_anonymous.is_some());
        assert!(settings.broker.version.starts_with("mqtt5 "));
    }

    #[test]
    fn a_full_file_sets_every_value() {
        let text = r#"
max_connections = 500
write_buffer_limit = 4096

[[listener]]
bind = "0.0.0.0:1883"
max_connections = 10
allow_anonymous = true

[[listener]]
bind = "[::1]:8080"
protocol = "websocket"
path = "/ws"

[broker]
max_packet_size = 65536
receive_maximum = 10
max_inflight = 20
max_queued_messages = 30
queue_policy = "drop-newest"
queue_qos0_offline = true
maximum_qos = 1
retain_available = false
wildcard_subscriptions = false
subscription_identifiers = false
shared_subscriptions = false
topic_alias_maximum = 0
max_keep_alive_secs = 60
max_session_expiry_secs = 3600
max_persistent_sessions = 500
connect_timeout_secs = 5
max_subscriptions_per_client = 40
max_topic_levels = 8
sys_interval_secs = 0
assigned_id_prefix = "auto-"
version = "custom 1"

[storage]
data_dir = "/var/lib/mqtt5"
durability = "periodic"
periodic_ms = 250
backlog_high_ops = 1000
backlog_low_ops = 10

[auth]
allow_anonymous = false
use_database_acl = true
scram_sha_256 = true
scram_iterations = 200000

[log]
level = "warn,mqtt5d=debug"
format = "json"

[metrics]
listen = "127.0.0.1:9100"
"#;
        let s = load(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.max_connections, 500);
        assert_eq!(s.write_buffer_limit, 4096);
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[0].bind, "0.0.0.0:1883".parse().unwrap());
        assert_eq!(s.listeners[0].max_connections, Some(10));
        assert_eq!(s.listeners[0].allow_anonymous, Some(true));
        assert_eq!(
            s.listeners[1].protocol,
            ListenerProtocol::WebSocket { path: "/ws".into() }
        );
        // `[auth] allow_anonymous = false`, but the first listener says otherwise.
        assert!(s.allows_anonymous(&s.listeners[0]));
        assert!(!s.allows_anonymous(&s.listeners[1]));
        assert!(s.broker.allow_anonymous);
        let b = &s.broker;
        assert_eq!(b.max_packet_size, 65536);
        assert_eq!(b.receive_maximum, 10);
        assert_eq!(b.max_inflight, 20);
        assert_eq!(b.max_queued_messages, 30);
        assert_eq!(b.queue_policy, QueuePolicy::DropNewest);
        assert!(b.queue_qos0_offline);
        assert_eq!(b.maximum_qos, QoS::AtLeastOnce);
        assert!(!b.retain_available);
        assert!(!b.wildcard_subscriptions);
        assert!(!b.subscription_identifiers);
        assert!(!b.shared_subscriptions);
        assert_eq!(b.topic_alias_maximum, 0);
        assert_eq!(b.max_keep_alive, Some(60));
        assert_eq!(b.max_session_expiry, 3600);
        assert_eq!(b.max_persistent_sessions, 500);
        assert_eq!(b.connect_timeout, Duration::from_secs(5));
        assert_eq!(b.max_subscriptions_per_client, 40);
        assert_eq!(b.max_topic_levels, 8);
        assert_eq!(b.sys_interval, None);
        assert_eq!(b.assigned_id_prefix, "auto-");
        assert_eq!(b.version, "custom 1");
        assert_eq!(s.storage.data_dir, PathBuf::from("/var/lib/mqtt5"));
        assert_eq!(
            s.storage.durability,
            Durability::Periodic(Duration::from_millis(250))
        );
        assert_eq!(s.storage.backlog_high_ops, 1000);
        assert_eq!(s.storage.backlog_low_ops, 10);
        assert_eq!(s.auth.allow_anonymous, Some(false));
        assert!(s.auth.use_database_acl);
        assert!(s.auth.scram_sha_256);
        assert_eq!(s.auth.scram_iterations, 200_000);
        assert_eq!(s.log.level, "warn,mqtt5d=debug");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    }

    #[test]
    fn unknown_key_is_an_error_at_its_line() {
        let text = "max_connections = 5\n\n[broker]\nrecieve_maximum = 10\n";
        let message = problem(text);
        assert!(message.starts_with("test.toml:4:1: "), "{message}");
        assert!(message.contains("recieve_maximum"), "{message}");
    }

    #[test]
    fn unknown_key_in_a_listener_is_an_error_at_its_line() {
        let message = problem("[[listener]]\nbind = \"127.0.0.1:1\"\nbnid = 3\n");
        assert!(message.starts_with("test.toml:3:1: "), "{message}");
        assert!(message.contains("bnid"), "{message}");
    }

    #[test]
    fn unknown_table_is_an_error() {
        let message = problem("[brokr]\n");
        assert!(message.starts_with("test.toml:1:"), "{message}");
        assert!(message.contains("brokr"), "{message}");
    }

    #[test]
    fn disallowed_code_points_are_refused_unless_allowed() {
        assert!(!load("").unwrap().allow_disallowed_code_points);
        let allowed = load("[broker]\nallow_disallowed_code_points = true\n").unwrap();
        assert!(allowed.allow_disallowed_code_points);
        let message = problem("[broker]\nallow_disallowed_code_points = \"yes\"\n");
        assert!(message.starts_with("test.toml:2:"), "{message}");
    }

    #[test]
    fn toml_syntax_error_has_a_position() {
        let message = problem("[broker]\nmax_inflight = = 3\n");
        assert!(message.starts_with("test.toml:2:"), "{message}");
    }

    #[test]
    fn wrong_types_and_ranges_are_errors() {
        for (text, line, needle) in [
            ("max_connections = -1\n", 1, "-1"),
            ("[broker]\nreceive_maximum = 70000\n", 2, ""),
            ("[broker]\nqueue_policy = \"drop-all\"\n", 2, "drop-all"),
            ("[storage]\ndurability = \"eventually\"\n", 2, "eventually"),
            ("[log]\nformat = \"xml\"\n", 2, "xml"),
            ("[[listener]]\nbind = \"localhost\"\n", 2, ""),
            (
                "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\n",
                3,
                "http",
            ),
            ("[auth]\nallow_anonymous = \"yes\"\n", 2, ""),
        ] {
            let message = problem(text);
            assert!(
                message.starts_with(&format!("test.toml:{line}:")),
                "{text:?}: {message}"
            );
            assert!(message.contains(needle), "{text:?}: {message}");
        }
    }

    #[test]
    fn zero_limits_are_errors_at_their_line() {
        for (text, line, key) in [
            ("[broker]\nreceive_maximum = 0\n", 2, "receive_maximum"),
            ("[broker]\nmax_inflight = 0\n", 2, "max_inflight"),
            ("[broker]\nmax_packet_size = 0\n", 2, "max_packet_size"),
            (
                "[broker]\nconnect_timeout_secs = 0\n",
                2,
                "connect_timeout_secs",
            ),
            ("[broker]\nmax_topic_levels = 0\n", 2, "max_topic_levels"),
            ("[broker]\nmax_queued_bytes = 0\n", 2, "max_queued_bytes"),
            (
                "[broker]\nmax_queued_bytes_total = 0\n",
                2,
                "max_queued_bytes_total",
            ),
            (
                "[broker]\nmax_topic_filter_length = 0\n",
                2,
                "max_topic_filter_length",
            ),
            (
                "[broker]\nmax_subscription_bytes_per_client = 0\n",
                2,
                "max_subscription_bytes_per_client",
            ),
            ("[auth]\npassword_workers = 0\n", 2, "password_workers"),
            (
                "max_connecting_per_address = 0\n",
                1,
                "max_connecting_per_address",
            ),
            ("\n\nmax_connections = 0\n", 3, "max_connections"),
            ("write_buffer_limit = 0\n", 1, "write_buffer_limit"),
            ("[storage]\nperiodic_ms = 0\n", 2, "periodic_ms"),
            (
                "[broker]\nmax_persistent_sessions = 0\n",
                2,
                "max_persistent_sessions",
            ),
            ("[storage]\nbacklog_high_ops = 0\n", 2, "backlog_high_ops"),
            (
                "[[listener]]\nbind = \"127.0.0.1:1\"\nmax_connections = 0\n",
                3,
                "max_connections",
            ),
        ] {
            let message = problem(text);
            assert!(
                message.starts_with(&format!("test.toml:{line}:")),
                "{text:?}: {message}"
            );
            assert!(message.contains(key), "{text:?}: {message}");
        }
    }

    #[test]
    fn backlog_watermarks_must_leave_a_gap() {
        let message = problem("[storage]\nbacklog_high_ops = 100\nbacklog_low_ops = 100\n");
        assert!(message.starts_with("test.toml:3:"), "{message}");
        assert!(
            message.contains("`backlog_low_ops` must be below `backlog_high_ops` (100)"),
            "{message}"
        );
        // A high watermark below the default low one takes a low one below it.
        let s = load("[storage]\nbacklog_high_ops = 1\n").unwrap();
        assert_eq!(
            (s.storage.backlog_high_ops, s.storage.backlog_low_ops),
            (1, 0)
        );
        let s = load("[storage]\nbacklog_high_ops = 100\n").unwrap();
        assert_eq!(
            (s.storage.backlog_high_ops, s.storage.backlog_low_ops),
            (100, 99)
        );
    }

    #[test]
    fn scram_iterations_below_the_minimum_are_an_error_at_their_line() {
        for text in [
            "[auth]\nscram_sha_256 = true\nscram_iterations = 4096\n",
            "[auth]\nscram_sha_256 = true\nscram_iterations = 99999\n",
            "[auth]\nscram_sha_256 = true\nscram_iterations = 0\n",
        ] {
            let message = problem(text);
            assert!(
                message.starts_with("test.toml:3:20: "),
                "{text:?}: {message}"
            );
            assert!(
                message.contains("`scram_iterations` must be at least 100000"),
                "{message}"
            );
        }
        let s = load("[auth]\nscram_iterations = 100000\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.scram_iterations, 100_000);
        assert_eq!(Settings::default().auth.scram_iterations, 100_000);
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "[broker]\nreceive_maximum = 0\nmax_inflight = 0\nmaximum_qos = 3\n";
        let problems = problems(text);
        let locations: Vec<_> = problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            locations,
            ["test.toml:2:19", "test.toml:3:16", "test.toml:4:15"]
        );
        assert!(problems[2].message.contains("0, 1 or 2"));
    }

    #[test]
    fn problems_come_in_file_order() {
        let text = "[broker]\nmaximum_qos = 3\n[storage]\nperiodic_ms = 0\n[[listener]]\nbind = \"127.0.0.1:1\"\nmax_connections = 0\n";
        let problems = problems(&format!("max_connections = 0\n{text}"));
        let lines: Vec<_> = problems.iter().map(|p| p.position.unwrap().0).collect();
        assert_eq!(lines, [1, 3, 5, 8]);
    }

    #[test]
    fn packet_size_above_what_mqtt_can_carry_is_an_error() {
        let message = problem("[broker]\nmax_packet_size = 268435461\n");
        assert!(message.contains("268435460"), "{message}");
    }

    #[test]
    fn zero_keep_alive_cap_and_sys_interval_mean_off() {
        let s = load("[broker]\nmax_keep_alive_secs = 0\nsys_interval_secs = 0\n").unwrap();
        assert_eq!(s.broker.max_keep_alive, None);
        assert_eq!(s.broker.sys_interval, None);
    }

    #[test]
    fn bad_assigned_id_prefix_is_an_error() {
        let message = problem("[broker]\nassigned_id_prefix = \"a/b\"\n");
        assert!(message.starts_with("test.toml:2:"), "{message}");
    }

    #[test]
    fn duplicate_listener_addresses_are_errors() {
        let text = "[[listener]]\nbind = \"127.0.0.1:1883\"\n\n[[listener]]\nbind = \"127.0.0.1:1883\"\nprotocol = \"websocket\"\n";
        let message = problem(text);
        assert!(message.starts_with("test.toml:5:8: "), "{message}");
        assert!(
            message.contains("two listeners on 127.0.0.1:1883"),
            "{message}"
        );

        let text =
            "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"127.0.0.1:1883\"\n";
        let message = problem(text);
        assert!(message.contains("clashes"), "{message}");

        // Different ports are fine, and so is port 0 twice (the system picks each).
        let text =
            "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"127.0.0.1:1884\"\n";
        assert_eq!(load(text).unwrap().listeners.len(), 2);
        let text = "[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n";
        assert_eq!(load(text).unwrap().listeners.len(), 2);
    }

    #[test]
    fn metrics_on_a_listener_address_is_an_error() {
        let text = "[[listener]]\nbind = \"127.0.0.1:9090\"\n[metrics]\n";
        let message = problem(text);
        assert!(message.contains("metrics"), "{message}");
        // Without `listen`, [metrics] means the default address.
        let s = load("[metrics]\n").unwrap();
        assert_eq!(s.metrics, Some(DEFAULT_METRICS_LISTEN));
    }

    #[test]
    fn empty_listener_list_is_an_error() {
        let message = problem("listener = []\n");
        assert!(message.contains("no listener"), "{message}");
    }

    #[test]
    fn path_needs_a_websocket_listener_and_a_slash() {
        let message = problem("[[listener]]\nbind = \"127.0.0.1:1\"\npath = \"/x\"\n");
        assert!(message.starts_with("test.toml:3:"), "{message}");
        let message = problem(
            "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"websocket\"\npath = \"x\"\n",
        );
        assert!(message.contains("start with `/`"), "{message}");
    }

    #[test]
    fn missing_tls_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "PEM").unwrap();
        let missing = dir.path().join("missing.pem");
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:8883\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            missing.display().to_string()
        );
        let message = problem(&text);
        assert!(message.starts_with("test.toml:4:"), "{message}");
        assert!(message.contains("tls_key"), "{message}");

        // A certificate without a key.
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:8883\"\ntls_cert = {:?}\n",
            cert.display().to_string()
        );
        let message = problem(&text);
        assert!(
            message.contains("both `tls_cert` and `tls_key`"),
            "{message}"
        );

        // Both present.
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:8883\"\ntls_cert = {0:?}\ntls_key = {0:?}\n",
            cert.display().to_string()
        );
        let s = load(&text).unwrap();
        let tls = s.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.cert, cert);
        assert_eq!(tls.client_ca, None);
    }

    #[test]
    fn acl_file_errors_name_the_acl_line() {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl.txt");
        std::fs::write(&acl, "topic read a/#\n\nuser alice\ntopik alice/#\n").unwrap();
        let text = format!("[auth]\nacl_file = {:?}\n", acl.display().to_string());
        let message = problem(&text);
        assert!(message.starts_with("test.toml:2:"), "{message}");
        assert!(message.contains("ACL line 4"), "{message}");

        std::fs::write(&acl, "topic read a/#\n").unwrap();
        let s = load(&text).unwrap();
        assert_eq!(s.auth.acl_rules.unwrap().len(), 1);

        let text = "[auth]\nacl_file = \"/nonexistent/acl.txt\"\n";
        assert!(problem(text).contains("cannot read"));
    }

    #[test]
    fn bad_log_level_is_an_error() {
        let message = problem("[log]\nlevel = \"verbose\"\n");
        assert!(message.starts_with("test.toml:2:"), "{message}");
        assert!(load("[log]\nlevel = \"debug,mqtt5_broker=trace\"\n").is_ok());
    }

    #[test]
    fn command_line_overrides_the_file() {
        let text = r#"
max_connections = 10
[[listener]]
bind = "0.0.0.0:1883"
allow_anonymous = true
[storage]
data_dir = "/from/file"
durability = "sync"
periodic_ms = 40
[log]
level = "warn"
format = "text"
[auth]
allow_anonymous = true
"#;
        let overrides = Overrides {
            listen: vec![
                "127.0.0.1:2000".parse().unwrap(),
                "[::1]:2001".parse().unwrap(),
            ],
            data_dir: Some(PathBuf::from("/from/cli")),
            durability: Some(DurabilityKind::Periodic),
            log_level: Some("debug".into()),
            log_format: Some(LogFormat::Json),
            max_connections: Some(7),
            allow_anonymous: Some(false),
        };
        let s = Settings::from_toml(text, "t.toml", &overrides).unwrap();
        assert_eq!(
            s.listeners,
            vec![
                ListenerSettings::plain("127.0.0.1:2000".parse().unwrap()),
                ListenerSettings::plain("[::1]:2001".parse().unwrap()),
            ]
        );
        assert_eq!(s.max_connections, 7);
        assert_eq!(s.storage.data_dir, PathBuf::from("/from/cli"));
        assert_eq!(
            s.storage.durability,
            Durability::Periodic(Duration::from_millis(40))
        );
        assert_eq!(s.log.level, "debug");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.auth.allow_anonymous, Some(false));
        assert!(!s.allows_anonymous(&s.listeners[0]));
        assert!(!s.broker.allow_anonymous);

        // Without overrides the file's values stand.
        let s = Settings::from_toml(text, "t.toml", &Overrides::default()).unwrap();
        assert_eq!(s.max_connections, 10);
        assert_eq!(s.storage.durability, Durability::Sync);
        assert!(s.allows_anonymous(&s.listeners[0]));
    }

    #[test]
    fn the_file_must_be_valid_even_where_overridden() {
        let overrides = Overrides {
            max_connections: Some(5),
            log_level: Some("debug".into()),
            data_dir: Some("d".into()),
            ..Overrides::default()
        };
        let text = "max_connections = 0\n[storage]\ndata_dir = \"\"\n[log]\nlevel = \"loud\"\n";
        let Err(ConfigError::Invalid(problems)) = Settings::from_toml(text, "t", &overrides) else {
            panic!("expected problems");
        };
        let lines: Vec<_> = problems.iter().map(|p| p.position.unwrap().0).collect();
        assert_eq!(lines, [1, 3, 5]);
    }

    #[test]
    fn bad_overrides_are_errors() {
        let overrides = Overrides {
            listen: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:1".parse().unwrap(),
            ],
            max_connections: Some(0),
            log_level: Some("loud".into()),
            ..Overrides::default()
        };
        let Err(ConfigError::Invalid(problems)) = Settings::load(None, &overrides) else {
            panic!("expected problems");
        };
        let locations: Vec<_> = problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "command line (--max-connections)",
                "command line (--listen)",
                "command line (--log-level)",
            ]
        );
    }

    #[test]
    fn anonymous_clients_default_to_loopback_listeners_only() {
        let text =
            "[[listener]]\nbind = \"127.0.0.1:1883\"\n[[listener]]\nbind = \"0.0.0.0:8883\"\n";
        let s = load(text).unwrap();
        assert!(s.allows_anonymous(&s.listeners[0]));
        assert!(!s.allows_anonymous(&s.listeners[1]));
        assert!(s.broker.allow_anonymous);

        let s = load("[[listener]]\nbind = \"0.0.0.0:1883\"\n").unwrap();
        assert!(!s.broker.allow_anonymous);
        let s = load("[[listener]]\nbind = \"0.0.0.0:1883\"\n[auth]\nallow_anonymous = true\n")
            .unwrap();
        assert!(s.broker.allow_anonymous);
    }

    #[test]
    fn ignoring_credentials_needs_anonymous_access() {
        // On a listener that refuses anonymous clients: an error at the listener's key...
        let text = "[[listener]]\nbind = \"0.0.0.0:1883\"\nignore_credentials = true\n";
        let message = problem(text);
        assert!(message.starts_with("test.toml:3:"), "{message}");
        assert!(message.contains("allow_anonymous"), "{message}");
        // ...or at [auth]'s, when the listener takes it from there.
        let text = "[[listener]]\nbind = \"0.0.0.0:1883\"\n[auth]\nignore_credentials = true\n";
        assert!(problem(text).starts_with("test.toml:4:"));
        // Where anonymous clients may connect, it stands.
        let text = "[[listener]]\nbind = \"127.0.0.1:1883\"\nignore_credentials = true\n";
        let s = load(text).unwrap();
        assert!(s.ignores_credentials(&s.listeners[0]));
        assert!(!s.broker.ignore_credentials);
    }

    #[test]
    fn session_and_login_policies_reach_the_core() {
        let text = "[auth]\nuse_username_as_client_id = true\nallow_cross_user_takeover = true\nfailed_login_delay_max_ms = 250\n[broker]\nmax_queued_bytes = 1000\nmax_retained_bytes = 5\n";
        let s = load(text).unwrap();
        assert!(s.broker.use_username_as_client_id);
        assert!(s.broker.allow_cross_user_takeover);
        assert_eq!(s.broker.failed_login_delay_max, Duration::from_millis(250));
        assert_eq!(s.broker.max_queued_bytes, 1000);
        assert_eq!(s.broker.max_retained_bytes, 5);
        assert!(s.uses_username_as_client_id(&s.listeners[0]));
    }

    #[test]
    fn durability_memory_and_periodic() {
        let s = load("[storage]\ndurability = \"memory\"\n").unwrap();
        assert_eq!(s.storage.durability, Durability::Memory);
        let s = load("[storage]\ndurability = \"periodic\"\n").unwrap();
        assert_eq!(
            s.storage.durability,
            Durability::Periodic(Duration::from_millis(100))
        );
    }

    #[test]
    fn authorizer_combines_the_acl_file_and_the_database() {
        use mqtt5_broker::ClientInfo;
        use mqtt5_store::AclRecord;

        let record = |scope: &str, access: &str, topic: &str| AclRecord {
            scope: scope.into(),
            access: access.into(),
            topic: topic.into(),
        };
        let stored = [record("user alice", "readwrite", "alice/#")];
        let alice = ClientInfo {
            client_id: "c1",
            username: Some("alice"),
        };
        let anonymous = ClientInfo {
            client_id: "c2",
            username: None,
        };

        // Nothing configured: no authorizer (everything allowed), whatever the database holds.
        let mut settings = Settings::default();
        assert!(authorizer(&settings, &stored).unwrap().is_none());

        // The database's rules.
        settings.auth.use_database_acl = true;
        let from_db = authorizer(&settings, &stored).unwrap().unwrap();
        assert!(from_db.can_publish(&alice, "alice/x"));
        assert!(!from_db.can_publish(&anonymous, "public/x"));
        // Configured but empty: everything is denied.
        assert!(
            !authorizer(&settings, &[])
                .unwrap()
                .unwrap()
                .can_publish(&alice, "a")
        );

        // The file's rules and the database's together.
        settings.auth.acl_rules = Some(AclRules::parse("topic write public/#\n").unwrap());
        let both = authorizer(&settings, &stored).unwrap().unwrap();
        assert!(both.can_publish(&alice, "alice/x"));
        assert!(both.can_publish(&anonymous, "public/x"));

        // The file's only, when the database's are not used.
        settings.auth.use_database_acl = false;
        let from_file = authorizer(&settings, &stored).unwrap().unwrap();
        assert!(!from_file.can_publish(&alice, "alice/x"));
        assert!(from_file.can_publish(&anonymous, "public/x"));

        // A stored rule that is not valid is an error.
        settings.auth.use_database_acl = true;
        assert!(authorizer(&settings, &[record("group x", "read", "a")]).is_err());
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Settings::load(
            Some(Path::new("/nonexistent/mqtt5d.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/mqtt5d.toml"));
    }

    #[test]
    fn columns_count_characters() {
        let loader = Loader {
            text: "a = \"é\"\nbé = 1\n",
            name: "f",
            problems: Vec::new(),
            listener_ignore: Vec::new(),
        };
        assert_eq!(loader.position(0), (1, 1));
        assert_eq!(loader.position(12), (2, 3));
    }
}
