//! [`SqliteStore`]: the persistent state in one SQLite file (`docs/architecture.md`, "The store").
//!
//! Each [`Store::apply`] is one `BEGIN IMMEDIATE … COMMIT` transaction on a dedicated writer
//! connection, with prepared statements from the connection's cache; when an op fails (an op
//! the [`MemoryStore`](crate::MemoryStore) model refuses, or SQLite itself) the transaction is
//! rolled back and the error returned, so a batch is applied whole or not at all.
//! [`Store::recover`] reads everything in one read transaction, a consistent snapshot.
//! [`SqliteReader`] reads the same snapshot through a small r2d2 pool, for admin tools on other
//! threads, and the users and access rules alone ([`SqliteReader::auth_state`]) for a broker
//! that reloads them while it runs.
//!
//! # Users and access rules, seen from other processes
//!
//! Triggers on `users` and `acl` add one to `auth_version.version` for every row inserted,
//! updated or deleted, whichever connection or process does it: a broker polls
//! [`SqliteReader::auth_version`] and reloads [`SqliteReader::auth_state`] when it changed.
//! The `meta` table holds small values that processes sharing the file tell each other (the
//! running broker's process id, the version of the users and rules it applies), and
//! `secrets` holds secrets the broker keeps across restarts ([`SqliteStore::secret_or_insert`]).
//!
//! # Files
//!
//! On Unix a new database file is created with mode 0600, whatever the umask: it holds
//! password hashes. SQLite creates the `-wal` and `-shm` files beside it with the same mode.
//! An existing file keeps its mode.
//!
//! # Connections
//!
//! Every connection, the writer's and the pool's, is opened by the same
//! `r2d2_sqlite::SqliteConnectionManager` whose `with_init` hook sets `journal_mode=WAL`, the
//! `synchronous` level of [`SqliteOptions`], `foreign_keys=ON`, a busy timeout and, when
//! [`SqliteOptions::max_size`] is set, `max_page_count`. A `:memory:` database would be
//! separate for every connection, so there is no in-memory mode: tests use a temporary file.
//!
//! # Opening
//!
//! [`SqliteStore::open`] never recreates, repairs or wipes an existing file. Before anything
//! writes to it, it reads the file with a plain connection:
//!
//! - a file that is not a SQLite database, or whose `PRAGMA quick_check` finds damage, is
//!   [`Error::Corrupt`];
//! - a SQLite database of another application (another `application_id`, or tables without
//!   one) is [`Error::Corrupt`] too: "not an mqtt5 database";
//! - a `user_version` above [`SqliteStore::SCHEMA_VERSION`] is [`Error::NewerSchema`];
//! - a path that cannot be opened (missing directory, permissions) is [`Error::Storage`].
//!
//! Only then is the file switched to WAL and migrated: the migration steps from the file's
//! `user_version` up to [`SqliteStore::SCHEMA_VERSION`] run in one transaction, which also sets
//! `user_version` and `application_id`.
//!
//! # Schema (version 4)
//!
//! Integers are SQLite's 64-bit signed integers. `u64` values (message ids, sequence numbers,
//! times in milliseconds, counts) are stored bit for bit: values above `i64::MAX` read as
//! negative numbers in SQL but come back exactly.
//!
//! | table | columns | notes |
//! |---|---|---|
//! | `clients` | `client_id` PK, `username`, `protocol` (level 3, 4, 5), `peer`, `first_seen_ms`, `last_connect_ms`, `last_disconnect_ms`, `last_disconnect_reason`, `connect_count` | one row per client ever seen |
//! | `users` | `username` PK, `password_hash`, `scram` | a PHC string, never a password; `scram`: SCRAM-SHA-256 credentials or NULL (added in version 2; version 4 cleared those of older versions, derived with 4,096 iterations under the password hash's salt) |
//! | `acl` | `id` INTEGER PK AUTOINCREMENT, `scope`, `access`, `topic`, UNIQUE(`scope`, `access`, `topic`) | `id` keeps insertion order, and is never reused |
//! | `sessions` | `client_id` PK, `protocol`, `expiry_interval`, `expires_at_ms`, `will` BLOB, `owner` | the will is a CONNECT blob, below; `owner`: the identity that owns the session, NULL when unknown (added in version 3) |
//! | `subscriptions` | `client_id` FK→`sessions` ON DELETE CASCADE, `filter`, `options`, `identifier`, PK(`client_id`, `filter`) | `options` is the Subscription Options byte of MQTT 5 §3.8.3.1 |
//! | `retained` | `topic` PK, `message` BLOB, `dup`, `expires_at_ms` | a PUBLISH blob, below |
//! | `messages` | `id` PK, `message` BLOB, `dup`, `expires_at_ms` | each message stored once; queues refer to it |
//! | `deliveries` | `client_id` FK→`sessions` ON DELETE CASCADE, `seq`, `message_id`, `qos`, `retain`, `subscription_ids` BLOB, `state`, `packet_id`, PK(`client_id`, `seq`) | `state`: 0 queued (`packet_id` NULL), 1 sent, 2 released; `subscription_ids`: 4 bytes big-endian each |
//! | `incoming_qos2` | `client_id` FK→`sessions` ON DELETE CASCADE, `packet_id`, PK(`client_id`, `packet_id`) | inbound QoS 2 ids awaiting PUBREL |
//! | `auth_version` | `id` PK (always 1), `version` | one row; triggers on `users` and `acl` add 1 to `version` for each row inserted, updated or deleted (added in version 4) |
//! | `meta` | `key` PK, `value` | small values shared by the processes that open the file, e.g. the running broker's process id (added in version 4) |
//! | `secrets` | `name` PK, `value` BLOB | 32-byte secrets kept across restarts, e.g. the key of SCRAM's fake salts (added in version 4) |
//!
//! `deliveries.message_id` has no foreign key on purpose. The broker deletes a session and
//! then emits [`StoreOp::MessageDeleted`] for the messages nobody holds; the model checks that
//! a message exists when a delivery is written, and a later `MessageDeleted` leaves the
//! deliveries as they are. A foreign key (or a cascade) would behave differently.
//!
//! Messages are kept as codec-encoded blobs: a `message` is a whole MQTT 5 PUBLISH packet
//! (so its properties, QoS, packet identifier and Retain flag are in it) and decodes with
//! `mqtt5_codec::Decoder`. The DUP flag has a column of its own because the codec never
//! encodes it on QoS 0 (`[MQTT-3.3.1-2]`), yet a stored message must come back exactly. A will
//! is stored as a minimal MQTT 5 CONNECT (empty client id) that carries it. `apply` decodes
//! each blob it writes and compares it with the original, so what it accepts is what `recover`
//! returns: a message the codec cannot encode exactly (say an empty topic without a topic
//! alias, which [`MemoryStore`](crate::MemoryStore) would keep) fails the batch with
//! [`Error::Storage`] instead of making the database unreadable at the next start.
//!
//! # Example
//!
//! ```
//! use mqtt5_store::{SqliteOptions, SqliteStore, Store, StoreOp};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("mqtt5.db");
//! let mut store = SqliteStore::open(&path, SqliteOptions::default())?;
//! store.apply(&[StoreOp::UserSet {
//!     username: "alice".into(),
//!     password_hash: "$argon2id$v=19$...".into(),
//! }])?;
//! drop(store);
//!
//! // Everything survives a restart.
//! let mut store = SqliteStore::open(&path, SqliteOptions::default())?;
//! assert!(store.recover()?.users.contains_key("alice"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mqtt5_codec::{
    Connect, Decoder, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, Publish, QoS,
    RetainHandling, SubscriptionOptions, Will,
};
use r2d2::{ManageConnection, Pool};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior, params};

use crate::{
    AclRecord, AuthState, ClientSummary, DeliveryRecord, DeliveryState, Error, Recovered,
    SessionRecord, Store, StoreOp, StoredMessage, StoredSession, StoredSubscription,
};

/// How hard each commit tries to reach the disk: SQLite's `PRAGMA synchronous`, in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Synchronous {
    /// Every commit is fsynced before [`Store::apply`] returns: an acknowledged message
    /// survives a power loss. The `sync` durability mode, and the default.
    #[default]
    Full,
    /// Commits are written to the WAL but fsynced only at checkpoints: a power loss (not a
    /// crash of the process) can lose the last commits, never the database's consistency.
    Normal,
    /// No fsync at all: the operating system decides when data reaches the disk. A power loss
    /// can lose commits and, in rare cases, damage the database. For tests and benchmarks.
    Off,
}

impl Synchronous {
    const fn pragma_value(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
            Self::Off => "OFF",
        }
    }
}

/// How [`SqliteStore::open`] sets up the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SqliteOptions {
    /// The durability of each commit. The default is [`Synchronous::Full`].
    pub synchronous: Synchronous,
    /// An upper bound on the size of the database, in bytes (rounded up to whole pages). A
    /// batch that would grow the database past it fails with [`Error::StorageFull`], exactly
    /// as if the disk were full. `None` (the default) leaves only the disk as the limit.
    pub max_size: Option<u64>,
}

/// How long a connection waits for a lock held by another connection before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `application_id` of an mqtt5 database: "MQ5S".
const APPLICATION_ID: i64 = 0x4D51_3553;

/// Connections in the readers' pool.
const READER_POOL_SIZE: u32 = 2;

/// How long [`SqliteReader::snapshot`] waits for a pooled connection.
const READER_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements each connection keeps: every statement `apply` uses, with room.
const STATEMENT_CACHE: usize = 64;

/// The largest `max_page_count` SQLite accepts: no limit.
const UNLIMITED_PAGES: u64 = 0xFFFF_FFFE;

/// Opens files as they are named: no `file:` URIs.
const OPEN_FLAGS: OpenFlags = OpenFlags::SQLITE_OPEN_READ_WRITE
    .union(OpenFlags::SQLITE_OPEN_CREATE)
    .union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

/// One schema migration step: it takes the schema from the version before it (its index in
/// [`MIGRATIONS`]) to the next. The steps run inside the migration's transaction, so they must
/// not change `foreign_keys` (a no-op inside a transaction); a step that rebuilds a table
/// must copy the children it would otherwise cascade away.
struct Migration {
    /// The step, run inside the migration transaction.
    up: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

/// The schema's history: step `i` takes version `i` to version `i + 1`. Add a version by
/// appending a step; never edit a released one.
const MIGRATIONS: &[Migration] = &[
    Migration { up: schema_v1 },
    Migration { up: schema_v2 },
    Migration { up: schema_v3 },
    Migration { up: schema_v4 },
];

/// Version 4: the `auth_version` counter and its triggers, the `meta` and `secrets` tables;
/// and the SCRAM credentials of older versions are cleared. Those were derived with 4,096
/// PBKDF2 iterations under the argon2 hash's own salt, so a copy of the database gave a
/// password away far faster than its argon2 hash: a user must set the password again to
/// use SCRAM-SHA-256.
fn schema_v4(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "UPDATE users SET scram = NULL WHERE scram IS NOT NULL;
        CREATE TABLE auth_version (
            id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        );
        INSERT INTO auth_version (id, version) VALUES (1, 0);
        CREATE TABLE meta (
            key   TEXT NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE secrets (
            name  TEXT NOT NULL PRIMARY KEY,
            value BLOB NOT NULL
        );
        CREATE TRIGGER auth_version_users_insert AFTER INSERT ON users
            BEGIN UPDATE auth_version SET version = version + 1; END;
        CREATE TRIGGER auth_version_users_update AFTER UPDATE ON users
            BEGIN UPDATE auth_version SET version = version + 1; END;
        CREATE TRIGGER auth_version_users_delete AFTER DELETE ON users
            BEGIN UPDATE auth_version SET version = version + 1; END;
        CREATE TRIGGER auth_version_acl_insert AFTER INSERT ON acl
            BEGIN UPDATE auth_version SET version = version + 1; END;
        CREATE TRIGGER auth_version_acl_update AFTER UPDATE ON acl
            BEGIN UPDATE auth_version SET version = version + 1; END;
        CREATE TRIGGER auth_version_acl_delete AFTER DELETE ON acl
            BEGIN UPDATE auth_version SET version = version + 1; END;",
    )
}

/// Version 3: the identity that owns each session (`sessions.owner`, NULL for sessions
/// stored before it was recorded).
fn schema_v3(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("ALTER TABLE sessions ADD COLUMN owner TEXT;")
}

/// Version 2: SCRAM-SHA-256 credentials for users (`users.scram`, NULL when the user has
/// none).
fn schema_v2(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("ALTER TABLE users ADD COLUMN scram TEXT;")
}

/// Version 1: the tables of the module documentation.
fn schema_v1(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE clients (
            client_id              TEXT    NOT NULL PRIMARY KEY,
            username               TEXT,
            protocol               INTEGER NOT NULL,
            peer                   TEXT    NOT NULL,
            first_seen_ms          INTEGER NOT NULL,
            last_connect_ms        INTEGER NOT NULL,
            last_disconnect_ms     INTEGER,
            last_disconnect_reason TEXT,
            connect_count          INTEGER NOT NULL
        );
        CREATE TABLE users (
            username      TEXT NOT NULL PRIMARY KEY,
            password_hash TEXT NOT NULL
        );
        CREATE TABLE acl (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            scope  TEXT NOT NULL,
            access TEXT NOT NULL,
            topic  TEXT NOT NULL,
            UNIQUE (scope, access, topic)
        );
        CREATE TABLE sessions (
            client_id       TEXT    NOT NULL PRIMARY KEY,
            protocol        INTEGER NOT NULL,
            expiry_interval INTEGER NOT NULL,
            expires_at_ms   INTEGER,
            will            BLOB
        );
        CREATE TABLE subscriptions (
            client_id  TEXT    NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
            filter     TEXT    NOT NULL,
            options    INTEGER NOT NULL,
            identifier INTEGER,
            PRIMARY KEY (client_id, filter)
        ) WITHOUT ROWID;
        CREATE TABLE retained (
            topic         TEXT    NOT NULL PRIMARY KEY,
            message       BLOB    NOT NULL,
            dup           INTEGER NOT NULL,
            expires_at_ms INTEGER
        );
        CREATE TABLE messages (
            id            INTEGER NOT NULL PRIMARY KEY,
            message       BLOB    NOT NULL,
            dup           INTEGER NOT NULL,
            expires_at_ms INTEGER
        );
        CREATE TABLE deliveries (
            client_id        TEXT    NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
            seq              INTEGER NOT NULL,
            message_id       INTEGER NOT NULL,
            qos              INTEGER NOT NULL,
            retain           INTEGER NOT NULL,
            subscription_ids BLOB    NOT NULL,
            state            INTEGER NOT NULL,
            packet_id        INTEGER,
            PRIMARY KEY (client_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE incoming_qos2 (
            client_id TEXT    NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,
            packet_id INTEGER NOT NULL,
            PRIMARY KEY (client_id, packet_id)
        ) WITHOUT ROWID;",
    )
}

/// A [`Store`] in a SQLite file.
///
/// It is meant to be owned by one writer thread (`Send`, not `Sync`); other threads read
/// through a [`SqliteReader`].
pub struct SqliteStore {
    path: PathBuf,
    /// The connection every `apply` and `recover` runs on, so its statement cache stays warm.
    writer: Connection,
    /// Connections for [`SqliteReader`]s, opened on demand.
    readers: Pool<SqliteConnectionManager>,
    /// [`SqliteOptions::max_size`], 0 for none; read by the init hook of new connections.
    max_size: Arc<AtomicU64>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this build writes and the newest it can read.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens the database at `path`, creating the file and its schema if it does not exist,
    /// and migrating an older schema.
    ///
    /// An existing file is checked before anything writes to it (see the module docs), and
    /// is never recreated or wiped.
    ///
    /// # Errors
    /// - [`Error::Corrupt`] when the file is not a SQLite database, is damaged, or belongs to
    ///   another application; the file is left untouched.
    /// - [`Error::NewerSchema`] when a newer mqtt5 wrote it; the file is left untouched.
    /// - [`Error::Storage`] when the path cannot be opened (a missing directory, permissions,
    ///   a lock held too long) or the file system lacks what WAL mode needs.
    /// - [`Error::StorageFull`] when there is no room to create or migrate the schema.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let exists = path
            .try_exists()
            .map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        if exists || !create_private_file(&path)? {
            inspect(&path)?;
        }

        let max_size = Arc::new(AtomicU64::new(limit_bytes(options.max_size)));
        let limit = Arc::clone(&max_size);
        let synchronous = options.synchronous;
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OPEN_FLAGS)
            .with_init(move |c| init_connection(c, synchronous, limit.load(Ordering::Relaxed)));

        // The writer is opened by the manager directly: the same init hook, but an error comes
        // back at once instead of after the pool's timeout.
        let mut writer = manager.connect().map_err(|e| sql_error(&path, e))?;
        check_connection(&writer).map_err(|f| f.into_error(&path))?;
        migrate(&mut writer).map_err(|f| f.into_error(&path))?;

        let readers = Pool::builder()
            .max_size(READER_POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(READER_TIMEOUT)
            .build_unchecked(manager);
        Ok(Self {
            path,
            writer,
            readers,
            max_size,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that reads the database from other threads, through a small pool of
    /// connections of its own.
    pub fn reader(&self) -> SqliteReader {
        SqliteReader {
            path: self.path.clone(),
            pool: self.readers.clone(),
        }
    }

    /// Copies the write-ahead log into the database file and truncates it
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`). SQLite also checkpoints on its own as the log
    /// grows, and when the last connection closes; this is for quiet moments and backups.
    ///
    /// # Errors
    /// [`Error::Storage`] (or [`Error::StorageFull`]) when SQLite fails.
    pub fn checkpoint(&mut self) -> Result<(), Error> {
        self.writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| sql_error(&self.path, e))
    }

    /// The version of the users and access rules: see [`AuthState::version`].
    ///
    /// # Errors
    /// [`Error::Storage`] when SQLite fails.
    pub fn auth_version(&self) -> Result<u64, Error> {
        read_auth_version(&self.writer).map_err(|f| f.into_error(&self.path))
    }

    /// The value of `key` in the `meta` table, if it has one.
    ///
    /// # Errors
    /// [`Error::Storage`] when SQLite fails.
    pub fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        read_meta(&self.writer, key).map_err(|f| f.into_error(&self.path))
    }

    /// Sets `key` in the `meta` table to `value`, or removes it (`None`).
    ///
    /// # Errors
    /// [`Error::Storage`] (or [`Error::StorageFull`]) when SQLite fails.
    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<(), Error> {
        write_meta(&self.writer, key, value).map_err(|f| f.into_error(&self.path))
    }

    /// The secret stored as `name`, storing `candidate` first if there is none yet: the same
    /// 32 bytes every time the database is opened. The caller supplies random bytes; this
    /// crate has no random source.
    ///
    /// # Errors
    /// [`Error::Storage`] (or [`Error::StorageFull`]) when SQLite fails; [`Error::Corrupt`]
    /// when the stored secret is not 32 bytes.
    pub fn secret_or_insert(&mut self, name: &str, candidate: [u8; 32]) -> Result<[u8; 32], Error> {
        secret_or_insert(&mut self.writer, name, candidate).map_err(|f| f.into_error(&self.path))
    }

    /// Changes [`SqliteOptions::max_size`] for this store. The limit cannot go below the
    /// database's current size: SQLite then keeps the current size as the limit.
    ///
    /// # Errors
    /// [`Error::Storage`] when SQLite fails.
    pub fn set_max_size(&mut self, max_size: Option<u64>) -> Result<(), Error> {
        let bytes = limit_bytes(max_size);
        self.max_size.store(bytes, Ordering::Relaxed);
        set_max_page_count(&self.writer, bytes).map_err(|e| sql_error(&self.path, e))
    }
}

impl Store for SqliteStore {
    fn recover(&mut self) -> Result<Recovered, Error> {
        read_all(&mut self.writer).map_err(|f| f.into_error(&self.path))
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        apply_batch(&mut self.writer, ops).map_err(|f| f.into_error(&self.path))
    }

    fn auth_state(&mut self) -> Result<AuthState, Error> {
        read_auth_state(&mut self.writer).map_err(|f| f.into_error(&self.path))
    }

    fn user_exists(&mut self, username: &str) -> Result<bool, Error> {
        read_user_exists(&self.writer, username).map_err(|f| f.into_error(&self.path))
    }
}

/// Reads a [`SqliteStore`]'s database from any thread: `Clone`, `Send` and `Sync`.
///
/// Readers see committed batches only, never part of one (WAL snapshots), and never block
/// the writer. The one thing a reader writes is the `meta` table
/// ([`set_meta`](Self::set_meta)), which no [`StoreOp`] touches: a one-row transaction that
/// waits for the writer's lock like any other.
#[derive(Clone)]
pub struct SqliteReader {
    path: PathBuf,
    pool: Pool<SqliteConnectionManager>,
}

impl fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteReader {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything in the database, as [`Store::recover`] returns it, from one consistent
    /// snapshot.
    ///
    /// # Errors
    /// [`Error::Storage`] when no connection can be had or SQLite fails; [`Error::Corrupt`]
    /// when a stored value cannot be decoded.
    pub fn snapshot(&self) -> Result<Recovered, Error> {
        let mut conn = self.connection()?;
        read_all(&mut conn).map_err(|f| f.into_error(&self.path))
    }

    /// The version of the users and access rules: see [`AuthState::version`]. One indexed
    /// read, cheap enough to poll.
    ///
    /// # Errors
    /// [`Error::Storage`] when no connection can be had or SQLite fails.
    pub fn auth_version(&self) -> Result<u64, Error> {
        let conn = self.connection()?;
        read_auth_version(&conn).map_err(|f| f.into_error(&self.path))
    }

    /// The users, their SCRAM credentials and the access rules with their version, from one
    /// consistent snapshot, as [`Store::auth_state`] returns them.
    ///
    /// # Errors
    /// [`Error::Storage`] when no connection can be had or SQLite fails.
    pub fn auth_state(&self) -> Result<AuthState, Error> {
        let mut conn = self.connection()?;
        read_auth_state(&mut conn).map_err(|f| f.into_error(&self.path))
    }

    /// Whether a user of this name exists.
    ///
    /// # Errors
    /// [`Error::Storage`] when no connection can be had or SQLite fails.
    pub fn user_exists(&self, username: &str) -> Result<bool, Error> {
        let conn = self.connection()?;
        read_user_exists(&conn, username).map_err(|f| f.into_error(&self.path))
    }

    /// The value of `key` in the `meta` table, if it has one.
    ///
    /// # Errors
    /// [`Error::Storage`] when no connection can be had or SQLite fails.
    pub fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        let conn = self.connection()?;
        read_meta(&conn, key).map_err(|f| f.into_error(&self.path))
    }

    /// Sets `key` in the `meta` table to `value`, or removes it (`None`).
    ///
    /// # Errors
    /// [`Error::Storage`] (or [`Error::StorageFull`]) when no connection can be had or SQLite
    /// fails.
    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<(), Error> {
        let conn = self.connection()?;
        write_meta(&conn, key, value).map_err(|f| f.into_error(&self.path))
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, Error> {
        self.pool
            .get()
            .map_err(|e| Error::Storage(format!("{}: {e}", self.path.display())))
    }
}

/// Creates the database file, empty, readable and writable by its owner only (on Unix; SQLite
/// creates it elsewhere). True if it was created; false if it appeared in the meantime (then
/// it must be inspected like any existing file).
fn create_private_file(path: &Path) -> Result<bool, Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let storage = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            // The umask may have taken bits away from the mode asked for: set it again.
            Ok(file) => file
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map(|()| true)
                .map_err(storage),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(storage(e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(true)
    }
}

/// `auth_version.version`.
fn read_auth_version(conn: &Connection) -> Result<u64, Failure> {
    let version: i64 = conn
        .prepare_cached("SELECT version FROM auth_version WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    Ok(from_sql_u64(version))
}

/// The users, SCRAM credentials, access rules and their version, in one read transaction.
fn read_auth_state(conn: &mut Connection) -> Result<AuthState, Failure> {
    let tx = conn.transaction()?;
    let mut state = AuthState {
        version: read_auth_version(&tx)?,
        ..AuthState::default()
    };
    read_auth_tables(&tx, &mut state.users, &mut state.scram, &mut state.acl)?;
    tx.commit()?;
    Ok(state)
}

fn read_user_exists(conn: &Connection, username: &str) -> Result<bool, Failure> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM users WHERE username = ?1")?
        .exists([username])?)
}

fn read_meta(conn: &Connection, key: &str) -> Result<Option<String>, Failure> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn write_meta(conn: &Connection, key: &str, value: Option<&str>) -> Result<(), Failure> {
    match value {
        Some(value) => conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?,
        None => conn
            .prepare_cached("DELETE FROM meta WHERE key = ?1")?
            .execute([key])?,
    };
    Ok(())
}

fn secret_or_insert(
    conn: &mut Connection,
    name: &str,
    candidate: [u8; 32],
) -> Result<[u8; 32], Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, candidate.as_slice()])?;
    let stored: Vec<u8> = tx
        .prepare_cached("SELECT value FROM secrets WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?;
    tx.commit()?;
    <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| {
        Failure::Corrupt(format!(
            "secret {name:?} is {} bytes long, not 32",
            stored.len()
        ))
    })
}

/// Why an internal step failed; [`Failure::into_error`] adds the path.
enum Failure {
    /// SQLite failed.
    Sql(rusqlite::Error),
    /// A stored value cannot be decoded.
    Corrupt(String),
    /// The schema version in the file is newer than this build's.
    NewerSchema(i64),
    /// An op is inconsistent with the state, or the file system lacks a feature.
    Store(Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<rusqlite::types::FromSqlError> for Failure {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Self::Corrupt(e.to_string())
    }
}

impl Failure {
    fn into_error(self, path: &Path) -> Error {
        match self {
            Self::Sql(e) => sql_error(path, e),
            Self::Corrupt(detail) => Error::Corrupt {
                path: path.display().to_string(),
                detail,
            },
            Self::NewerSchema(found) => Error::NewerSchema {
                path: path.display().to_string(),
                found,
                supported: SqliteStore::SCHEMA_VERSION,
            },
            Self::Store(e) => e,
        }
    }
}

/// Maps a SQLite error to the store's: a full disk to [`Error::StorageFull`], damage to
/// [`Error::Corrupt`], a value of the wrong type to [`Error::Corrupt`], the rest to
/// [`Error::Storage`].
fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    let corrupt = |e: &rusqlite::Error| Error::Corrupt {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DiskFull => Error::StorageFull(format!("{}: {e}", path.display())),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => corrupt(&e),
            _ => Error::Storage(format!("{}: {e}", path.display())),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => corrupt(&e),
        _ => Error::Storage(format!("{}: {e}", path.display())),
    }
}

/// Reads an existing file without writing to it: is it an mqtt5 database this build can
/// open, and undamaged?
fn inspect(path: &Path) -> Result<(), Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error(path, e))?;
    inspect_with(&conn).map_err(|f| f.into_error(path))
}

fn inspect_with(conn: &Connection) -> Result<(), Failure> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let application_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if application_id != APPLICATION_ID && application_id != 0 {
        return Err(Failure::Corrupt(format!(
            "not an mqtt5 database (application_id {application_id:#x})"
        )));
    }
    check_version(version)?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if application_id == 0 && (version != 0 || objects != 0) {
        return Err(Failure::Corrupt(
            "not an mqtt5 database (a SQLite database of another application)".into(),
        ));
    }
    let mut check = conn.prepare("PRAGMA quick_check")?;
    let problems = check
        .query_map([], |r| r.get::<_, String>(0))?
        .take(10)
        .collect::<Result<Vec<_>, _>>()?;
    if problems.len() != 1 || problems.first().map(String::as_str) != Some("ok") {
        return Err(Failure::Corrupt(problems.join("; ")));
    }
    Ok(())
}

/// Refuses a schema newer than this build's.
fn check_version(version: i64) -> Result<(), Failure> {
    if version > SqliteStore::SCHEMA_VERSION {
        return Err(Failure::NewerSchema(version));
    }
    if version < 0 {
        return Err(Failure::Corrupt(format!(
            "not an mqtt5 database (user_version {version})"
        )));
    }
    Ok(())
}

/// The page cache of each connection, in KiB.
const PAGE_CACHE_KIB: i64 = 32 * 1024;

/// The `with_init` hook: the pragmas of every connection.
fn init_connection(
    c: &mut Connection,
    synchronous: Synchronous,
    max_size: u64,
) -> rusqlite::Result<()> {
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    c.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    c.pragma_update(None, "foreign_keys", true)?;
    // A page cache of up to PAGE_CACHE_KIB (negative: KiB, not pages), filled only as pages
    // are read. SQLite's 2 MiB default makes every delivery record inserted for one of many
    // offline sessions a random page read once the deliveries table outgrows it.
    c.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    if max_size != 0 {
        set_max_page_count(c, max_size)?;
    }
    Ok(())
}

/// [`SqliteOptions::max_size`] as the init hook reads it: 0 for no limit, and at least one
/// byte (so one page) for a limit.
fn limit_bytes(max_size: Option<u64>) -> u64 {
    max_size.map_or(0, |bytes| bytes.max(1))
}

/// Sets `max_page_count` from a size in bytes; 0 means no limit.
fn set_max_page_count(c: &Connection, max_size: u64) -> rusqlite::Result<()> {
    let pages = if max_size == 0 {
        UNLIMITED_PAGES
    } else {
        let page_size: i64 = c.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let page_size = u64::try_from(page_size).unwrap_or(4096).max(1);
        max_size.div_ceil(page_size).clamp(1, UNLIMITED_PAGES)
    };
    c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
}

/// Checks what the init hook asked for: WAL (not every file system can share memory for it)
/// and foreign keys (the cascades depend on them).
fn check_connection(c: &Connection) -> Result<(), Failure> {
    let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Store(Error::Storage(format!(
            "{}: cannot use WAL mode (journal_mode is {mode})",
            c.path().unwrap_or_default()
        ))));
    }
    let foreign_keys: bool = c.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    if !foreign_keys {
        return Err(Failure::Store(Error::Storage(
            "this SQLite does not enforce foreign keys".into(),
        )));
    }
    Ok(())
}

/// Runs the migration steps from the file's version to [`SqliteStore::SCHEMA_VERSION`], all
/// in one transaction with the new `user_version`.
fn migrate(conn: &mut Connection) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have migrated in between.
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    check_version(version)?;
    if version == SqliteStore::SCHEMA_VERSION {
        return Ok(());
    }
    let done = usize::try_from(version).unwrap_or(usize::MAX);
    for step in MIGRATIONS.iter().skip(done) {
        (step.up)(&tx)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// A `u64` as SQLite stores it: the same 64 bits, as a signed integer.
const fn to_sql_u64(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The inverse of [`to_sql_u64`].
const fn from_sql_u64(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn protocol_from_level(level: u8) -> Result<ProtocolVersion, Failure> {
    match level {
        3 => Ok(ProtocolVersion::V3_1),
        4 => Ok(ProtocolVersion::V3_1_1),
        5 => Ok(ProtocolVersion::V5),
        other => Err(Failure::Corrupt(format!("unknown protocol level {other}"))),
    }
}

/// The Subscription Options byte (MQTT 5 §3.8.3.1).
fn options_to_byte(o: SubscriptionOptions) -> u8 {
    let mut b = o.qos.as_u8() | ((o.retain_handling as u8) << 4);
    if o.no_local {
        b |= 0x04;
    }
    if o.retain_as_published {
        b |= 0x08;
    }
    b
}

fn options_from_byte(b: u8) -> Result<SubscriptionOptions, Failure> {
    let bad = || Failure::Corrupt(format!("invalid subscription options {b:#04x}"));
    let qos = QoS::from_u8(b & 0x03).ok_or_else(bad)?;
    let retain_handling = match (b >> 4) & 0x03 {
        0 => RetainHandling::SendOnSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(bad()),
    };
    if b & 0xC0 != 0 {
        return Err(bad());
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0x04 != 0,
        retain_as_published: b & 0x08 != 0,
        retain_handling,
    })
}

/// A message as a whole MQTT 5 PUBLISH packet, checked to decode back to `message` exactly.
///
/// A message the broker received went through the codec and always passes. One built by hand
/// may hold what the codec cannot carry (an empty topic without a topic alias, a subscription
/// identifier above 268,435,455): it is refused here, as [`Error::Storage`], rather than found
/// at the next start, where it would make the whole database unreadable. (Values the codec
/// treats as logic errors, such as binary data over 65,535 bytes, are its debug assertions'
/// business.)
fn encode_publish(
    message: &Publish,
    what: &dyn Fn() -> String,
) -> Result<impl AsRef<[u8]> + use<>, Failure> {
    let packet = Packet::Publish(message.clone());
    check_encodable(&packet, what)?;
    // The buffer's type (`bytes::BytesMut`) is inferred from `encode`'s signature.
    let mut buf = Default::default();
    packet.encode(ProtocolVersion::V5, &mut buf);
    match decode_publish(&buf, message.dup, "") {
        Ok(back) if back == *message => Ok(buf),
        _ => Err(unstorable(what)),
    }
}

/// A will as a minimal MQTT 5 CONNECT that carries it, checked like [`encode_publish`].
fn encode_will(
    will: &Will,
    what: &dyn Fn() -> String,
) -> Result<impl AsRef<[u8]> + use<>, Failure> {
    let packet = Packet::from(Connect {
        will: Some(will.clone()),
        ..Connect::default()
    });
    check_encodable(&packet, what)?;
    let mut buf = Default::default();
    packet.encode(ProtocolVersion::V5, &mut buf);
    match decode_will(&buf, "") {
        Ok(back) if back == *will => Ok(buf),
        _ => Err(unstorable(what)),
    }
}

/// Refuses a packet too large for MQTT's Remaining Length before `encode` sees it.
fn check_encodable(packet: &Packet, what: &dyn Fn() -> String) -> Result<(), Failure> {
    if packet.encoded_len(ProtocolVersion::V5) > MAX_PACKET_SIZE as usize {
        return Err(unstorable(what));
    }
    Ok(())
}

fn unstorable(what: &dyn Fn() -> String) -> Failure {
    Failure::Store(Error::Storage(format!(
        "{} cannot be stored: the MQTT 5 codec cannot encode it exactly",
        what()
    )))
}

/// Decodes exactly one MQTT 5 packet filling `blob`.
fn decode_packet(blob: &[u8], what: &str) -> Result<Packet, Failure> {
    // `blob.into()` makes the `bytes::BytesMut` that `decode` takes.
    let mut buf = blob.into();
    let decoded = Decoder::new(ProtocolVersion::V5).decode(&mut buf);
    match decoded {
        Ok(Some(packet)) if buf.is_empty() => Ok(packet),
        Ok(Some(_)) => Err(Failure::Corrupt(format!("{what}: trailing bytes"))),
        Ok(None) => Err(Failure::Corrupt(format!("{what}: truncated packet"))),
        Err(e) => Err(Failure::Corrupt(format!("{what}: {e}"))),
    }
}

fn decode_publish(blob: &[u8], dup: bool, what: &str) -> Result<Publish, Failure> {
    match decode_packet(blob, what)? {
        Packet::Publish(mut message) => {
            message.dup = dup;
            Ok(message)
        }
        other => Err(Failure::Corrupt(format!(
            "{what}: a {:?} packet where a PUBLISH belongs",
            other.packet_type()
        ))),
    }
}

fn decode_will(blob: &[u8], what: &str) -> Result<Will, Failure> {
    match decode_packet(blob, what)? {
        Packet::Connect(connect) => connect
            .will
            .ok_or_else(|| Failure::Corrupt(format!("{what}: a CONNECT without a will"))),
        other => Err(Failure::Corrupt(format!(
            "{what}: a {:?} packet where a CONNECT belongs",
            other.packet_type()
        ))),
    }
}

fn encode_subscription_ids(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

fn decode_subscription_ids(blob: &[u8]) -> Result<Vec<u32>, Failure> {
    let chunks = blob.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return Err(Failure::Corrupt(format!(
            "subscription ids of {} bytes, not a multiple of 4",
            blob.len()
        )));
    }
    chunks
        .map(|c| <[u8; 4]>::try_from(c).map(u32::from_be_bytes))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::Corrupt(format!("subscription ids: {e}")))
}

/// `(state, packet_id)` columns of a delivery.
const fn state_columns(state: DeliveryState) -> (u8, Option<u16>) {
    match state {
        DeliveryState::Queued => (0, None),
        DeliveryState::Sent(id) => (1, Some(id.get())),
        DeliveryState::Released(id) => (2, Some(id.get())),
    }
}

fn state_from_columns(state: u8, packet_id: Option<u16>) -> Result<DeliveryState, Failure> {
    match (state, packet_id.and_then(PacketId::new)) {
        (0, None) if packet_id.is_none() => Ok(DeliveryState::Queued),
        (1, Some(id)) => Ok(DeliveryState::Sent(id)),
        (2, Some(id)) => Ok(DeliveryState::Released(id)),
        _ => Err(Failure::Corrupt(format!(
            "invalid delivery state {state} with packet id {packet_id:?}"
        ))),
    }
}

/// A packet identifier read from the database: never 0 ([MQTT-2.2.1-3]).
fn packet_id_column(id: u16, what: &str) -> Result<PacketId, Failure> {
    PacketId::new(id).ok_or_else(|| Failure::Corrupt(format!("packet identifier 0 in {what}")))
}

/// A QoS read from the database.
fn qos_column(qos: u8, what: &str) -> Result<QoS, Failure> {
    QoS::from_u8(qos).ok_or_else(|| Failure::Corrupt(format!("QoS {qos} in {what}")))
}

fn apply_batch(conn: &mut Connection, ops: &[StoreOp]) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in ops {
        // On error `tx` is dropped, which rolls the whole batch back.
        apply_op(&tx, op)?;
    }
    tx.commit()?;
    Ok(())
}

fn session_exists(tx: &Transaction<'_>, client_id: &str) -> Result<(), Failure> {
    let found = tx
        .prepare_cached("SELECT 1 FROM sessions WHERE client_id = ?1")?
        .exists([client_id])?;
    if found {
        Ok(())
    } else {
        Err(Failure::Store(Error::NoSession(client_id.to_owned())))
    }
}

/// One op, with the checks and effects of [`MemoryStore`](crate::MemoryStore)'s.
fn apply_op(tx: &Transaction<'_>, op: &StoreOp) -> Result<(), Failure> {
    match op {
        StoreOp::ClientConnected(c) => {
            tx.prepare_cached(
                "INSERT INTO clients (client_id, username, protocol, peer, first_seen_ms,
                     last_connect_ms, connect_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)
                 ON CONFLICT (client_id) DO UPDATE SET
                     username = excluded.username,
                     protocol = excluded.protocol,
                     peer = excluded.peer,
                     last_connect_ms = excluded.last_connect_ms,
                     connect_count = connect_count + 1",
            )?
            .execute(params![
                c.client_id,
                c.username,
                c.protocol.level(),
                c.peer,
                to_sql_u64(c.at_ms),
            ])?;
        }
        StoreOp::ClientDisconnected {
            client_id,
            at_ms,
            reason,
        } => {
            tx.prepare_cached(
                "UPDATE clients SET last_disconnect_ms = ?2, last_disconnect_reason = ?3
                 WHERE client_id = ?1",
            )?
            .execute(params![client_id, to_sql_u64(*at_ms), reason])?;
        }
        StoreOp::SessionSaved(record) => {
            let will = match &record.will {
                Some(will) => Some(encode_will(will, &|| {
                    format!("the will of session {:?}", record.client_id)
                })?),
                None => None,
            };
            // An upsert, not `INSERT OR REPLACE`: replacing the row would cascade away the
            // session's subscriptions and deliveries.
            tx.prepare_cached(
                "INSERT INTO sessions (client_id, protocol, expiry_interval, expires_at_ms, will, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (client_id) DO UPDATE SET
                     protocol = excluded.protocol,
                     expiry_interval = excluded.expiry_interval,
                     expires_at_ms = excluded.expires_at_ms,
                     will = excluded.will,
                     owner = excluded.owner",
            )?
            .execute(params![
                record.client_id,
                record.protocol.level(),
                record.expiry_interval,
                record.expires_at_ms.map(to_sql_u64),
                will.as_ref().map(AsRef::as_ref),
                record.owner,
            ])?;
        }
        StoreOp::SessionDeleted { client_id } => {
            // Subscriptions, deliveries and incoming QoS 2 ids go by ON DELETE CASCADE.
            tx.prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?
                .execute([client_id])?;
        }
        StoreOp::Subscribed {
            client_id,
            filter,
            options,
            identifier,
        } => {
            session_exists(tx, client_id)?;
            tx.prepare_cached(
                "INSERT INTO subscriptions (client_id, filter, options, identifier)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (client_id, filter) DO UPDATE SET
                     options = excluded.options,
                     identifier = excluded.identifier",
            )?
            .execute(params![
                client_id,
                filter,
                options_to_byte(*options),
                identifier
            ])?;
        }
        StoreOp::Unsubscribed { client_id, filter } => {
            session_exists(tx, client_id)?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2")?
                .execute([client_id, filter])?;
        }
        StoreOp::RetainSet {
            message,
            qos,
            expires_at_ms,
        } => {
            let message = &crate::stored_publish(message, *qos);
            let blob = encode_publish(message, &|| {
                format!("the retained message of {:?}", message.topic())
            })?;
            tx.prepare_cached(
                "INSERT INTO retained (topic, message, dup, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (topic) DO UPDATE SET
                     message = excluded.message,
                     dup = excluded.dup,
                     expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![
                message.topic(),
                blob.as_ref(),
                message.dup,
                expires_at_ms.map(to_sql_u64),
            ])?;
        }
        StoreOp::RetainCleared { topic } => {
            tx.prepare_cached("DELETE FROM retained WHERE topic = ?1")?
                .execute([topic])?;
        }
        StoreOp::MessageStored {
            id,
            message,
            qos,
            expires_at_ms,
        } => {
            let message = &crate::stored_publish(message, *qos);
            let blob = encode_publish(message, &|| format!("message {id}"))?;
            tx.prepare_cached(
                "INSERT INTO messages (id, message, dup, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET
                     message = excluded.message,
                     dup = excluded.dup,
                     expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![
                to_sql_u64(*id),
                blob.as_ref(),
                message.dup,
                expires_at_ms.map(to_sql_u64),
            ])?;
        }
        StoreOp::MessageDeleted { id } => {
            tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                .execute([to_sql_u64(*id)])?;
        }
        StoreOp::Delivery(d) => {
            // The model checks the message first, then the session.
            let message_found = tx
                .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")?
                .exists([to_sql_u64(d.message_id)])?;
            if !message_found {
                return Err(Failure::Store(Error::NoMessage(d.message_id)));
            }
            session_exists(tx, &d.client_id)?;
            let (state, packet_id) = state_columns(d.state);
            tx.prepare_cached(
                "INSERT INTO deliveries (client_id, seq, message_id, qos, retain,
                     subscription_ids, state, packet_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (client_id, seq) DO UPDATE SET
                     message_id = excluded.message_id,
                     qos = excluded.qos,
                     retain = excluded.retain,
                     subscription_ids = excluded.subscription_ids,
                     state = excluded.state,
                     packet_id = excluded.packet_id",
            )?
            .execute(params![
                d.client_id,
                to_sql_u64(d.seq),
                to_sql_u64(d.message_id),
                d.qos.as_u8(),
                d.retain,
                encode_subscription_ids(&d.subscription_ids),
                state,
                packet_id,
            ])?;
        }
        StoreOp::DeliveryDeleted { client_id, seq } => {
            session_exists(tx, client_id)?;
            tx.prepare_cached("DELETE FROM deliveries WHERE client_id = ?1 AND seq = ?2")?
                .execute(params![client_id, to_sql_u64(*seq)])?;
        }
        StoreOp::UserSet {
            username,
            password_hash,
        } => {
            tx.prepare_cached(
                "INSERT INTO users (username, password_hash) VALUES (?1, ?2)
                 ON CONFLICT (username) DO UPDATE
                 SET password_hash = excluded.password_hash, scram = NULL",
            )?
            .execute([username, password_hash])?;
        }
        StoreOp::UserRemoved { username } => {
            tx.prepare_cached("DELETE FROM users WHERE username = ?1")?
                .execute([username])?;
        }
        StoreOp::UserScramSet {
            username,
            credentials,
        } => {
            tx.prepare_cached("UPDATE users SET scram = ?2 WHERE username = ?1")?
                .execute([username, credentials])?;
        }
        StoreOp::AclAdded(rule) => {
            tx.prepare_cached(
                "INSERT INTO acl (scope, access, topic) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope, access, topic) DO NOTHING",
            )?
            .execute([&rule.scope, &rule.access, &rule.topic])?;
        }
        StoreOp::AclRemoved(rule) => {
            tx.prepare_cached("DELETE FROM acl WHERE scope = ?1 AND access = ?2 AND topic = ?3")?
                .execute([&rule.scope, &rule.access, &rule.topic])?;
        }
        StoreOp::IncomingQos2 {
            client_id,
            packet_id,
            pending,
        } => {
            session_exists(tx, client_id)?;
            let sql = if *pending {
                "INSERT INTO incoming_qos2 (client_id, packet_id) VALUES (?1, ?2)
                 ON CONFLICT (client_id, packet_id) DO NOTHING"
            } else {
                "DELETE FROM incoming_qos2 WHERE client_id = ?1 AND packet_id = ?2"
            };
            tx.prepare_cached(sql)?
                .execute(params![client_id, packet_id.get()])?;
        }
    }
    Ok(())
}

/// Finds the session a child row belongs to; the foreign keys make a miss impossible unless
/// the file was edited with them off.
fn owner<'a>(
    sessions: &'a mut BTreeMap<String, StoredSession>,
    client_id: &str,
    table: &str,
) -> Result<&'a mut StoredSession, Failure> {
    sessions
        .get_mut(client_id)
        .ok_or_else(|| Failure::Corrupt(format!("{table} row of missing session {client_id:?}")))
}

/// Everything, from one read transaction.
fn read_all(conn: &mut Connection) -> Result<Recovered, Failure> {
    let tx = conn.transaction()?;
    let mut out = Recovered::default();

    let mut stmt = tx.prepare_cached(
        "SELECT client_id, username, protocol, peer, first_seen_ms, last_connect_ms,
             last_disconnect_ms, last_disconnect_reason, connect_count
         FROM clients",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        out.clients.insert(
            row.get(0)?,
            ClientSummary {
                username: row.get(1)?,
                protocol: protocol_from_level(row.get(2)?)?,
                peer: row.get(3)?,
                first_seen_ms: from_sql_u64(row.get(4)?),
                last_connect_ms: from_sql_u64(row.get(5)?),
                last_disconnect_ms: row.get::<_, Option<i64>>(6)?.map(from_sql_u64),
                last_disconnect_reason: row.get(7)?,
                connect_count: from_sql_u64(row.get(8)?),
            },
        );
    }
    drop(rows);
    drop(stmt);

    let mut stmt = tx.prepare_cached(
        "SELECT client_id, protocol, expiry_interval, expires_at_ms, will, owner FROM sessions",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let client_id: String = row.get(0)?;
        let will = match row.get_ref(4)?.as_blob_or_null()? {
            Some(blob) => Some(decode_will(blob, &format!("will of {client_id:?}"))?),
            None => None,
        };
        let record = SessionRecord {
            client_id: client_id.clone(),
            protocol: protocol_from_level(row.get(1)?)?,
            expiry_interval: row.get(2)?,
            expires_at_ms: row.get::<_, Option<i64>>(3)?.map(from_sql_u64),
            will,
            owner: row.get(5)?,
        };
        out.sessions.insert(
            client_id,
            StoredSession {
                record,
                subscriptions: BTreeMap::new(),
                deliveries: BTreeMap::new(),
                incoming_qos2: BTreeSet::new(),
            },
        );
    }
    drop(rows);
    drop(stmt);

    let mut stmt =
        tx.prepare_cached("SELECT client_id, filter, options, identifier FROM subscriptions")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let client_id: String = row.get(0)?;
        let subscription = StoredSubscription {
            options: options_from_byte(row.get(2)?)?,
            identifier: row.get(3)?,
        };
        owner(&mut out.sessions, &client_id, "subscriptions")?
            .subscriptions
            .insert(row.get(1)?, subscription);
    }
    drop(rows);
    drop(stmt);

    let mut stmt = tx.prepare_cached(
        "SELECT client_id, seq, message_id, qos, retain, subscription_ids, state, packet_id
         FROM deliveries",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let client_id: String = row.get(0)?;
        let seq = from_sql_u64(row.get(1)?);
        let delivery = DeliveryRecord {
            client_id: client_id.clone(),
            seq,
            message_id: from_sql_u64(row.get(2)?),
            qos: qos_column(row.get(3)?, "deliveries")?,
            retain: row.get(4)?,
            subscription_ids: decode_subscription_ids(row.get_ref(5)?.as_blob()?)?,
            state: state_from_columns(row.get(6)?, row.get(7)?)?,
        };
        owner(&mut out.sessions, &client_id, "deliveries")?
            .deliveries
            .insert(seq, delivery);
    }
    drop(rows);
    drop(stmt);

    let mut stmt = tx.prepare_cached("SELECT client_id, packet_id FROM incoming_qos2")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let client_id: String = row.get(0)?;
        let packet_id = packet_id_column(row.get(1)?, "incoming_qos2")?;
        owner(&mut out.sessions, &client_id, "incoming_qos2")?
            .incoming_qos2
            .insert(packet_id);
    }
    drop(rows);
    drop(stmt);

    let mut stmt = tx.prepare_cached("SELECT topic, message, dup, expires_at_ms FROM retained")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let topic: String = row.get(0)?;
        let what = format!("retained message of {topic:?}");
        let message = decode_publish(row.get_ref(1)?.as_blob()?, row.get(2)?, &what)?;
        let expires_at_ms = row.get::<_, Option<i64>>(3)?.map(from_sql_u64);
        out.retained.insert(
            topic,
            StoredMessage {
                message,
                expires_at_ms,
            },
        );
    }
    drop(rows);
    drop(stmt);

    let mut stmt = tx.prepare_cached("SELECT id, message, dup, expires_at_ms FROM messages")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id = from_sql_u64(row.get(0)?);
        let what = format!("message {id}");
        let message = decode_publish(row.get_ref(1)?.as_blob()?, row.get(2)?, &what)?;
        let expires_at_ms = row.get::<_, Option<i64>>(3)?.map(from_sql_u64);
        out.messages.insert(
            id,
            StoredMessage {
                message,
                expires_at_ms,
            },
        );
    }
    drop(rows);
    drop(stmt);

    read_auth_tables(&tx, &mut out.users, &mut out.scram, &mut out.acl)?;

    tx.commit()?;
    Ok(out)
}

/// The `users` and `acl` tables, inside the caller's transaction.
fn read_auth_tables(
    tx: &Transaction<'_>,
    users: &mut BTreeMap<String, String>,
    scram: &mut BTreeMap<String, String>,
    acl: &mut Vec<AclRecord>,
) -> Result<(), Failure> {
    let mut stmt = tx.prepare_cached("SELECT username, password_hash, scram FROM users")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        if let Some(credentials) = row.get::<_, Option<String>>(2)? {
            scram.insert(name.clone(), credentials);
        }
        users.insert(name, row.get(1)?);
    }
    drop(rows);
    drop(stmt);

    let mut stmt = tx.prepare_cached("SELECT scope, access, topic FROM acl ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        acl.push(AclRecord {
            scope: row.get(0)?,
            access: row.get(1)?,
            topic: row.get(2)?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscription_options_byte_round_trips() {
        for b in 0..=u8::MAX {
            match options_from_byte(b) {
                Ok(o) => assert_eq!(options_to_byte(o), b),
                Err(_) => assert!(b & 0x03 == 3 || (b >> 4) & 0x03 == 3 || b & 0xC0 != 0),
            }
        }
    }

    #[test]
    fn u64_values_keep_their_bits() {
        for v in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(from_sql_u64(to_sql_u64(v)), v);
        }
    }

    #[test]
    fn subscription_ids_round_trip_and_reject_ragged_blobs() {
        let ids = vec![1, 268_435_455, 7, 7];
        assert_eq!(
            decode_subscription_ids(&encode_subscription_ids(&ids)).ok(),
            Some(ids)
        );
        assert!(decode_subscription_ids(&[0, 0, 1]).is_err());
    }
}
