//! `mqtt5d user …` and `mqtt5d acl …`: users and access rules in the broker's database.
//!
//! The functions here are generic over [`Store`]: the commands run them on the SQLite database
//! of the configured data directory ([`open_database`]), whatever the durability mode, the
//! tests on a `MemoryStore` and on a SQLite file in a temporary directory. Users are written
//! with [`StoreOp::UserSet`] and [`StoreOp::UserRemoved`] and listed from
//! [`Store::auth_state`], names only: a password hash never leaves the database through this
//! module, and a password is never printed or logged.
//!
//! After a change, [`running_broker`] tells whether the broker running on the same database
//! (its process id is in the database's `meta` table) applied it: the broker watches its
//! users and access rules and reloads them within about a second.
//!
//! Access rules are stored as [`AclRecord`]s (`scope` = `"anonymous"`, `"user NAME"` or
//! `"pattern"`) and listed in Mosquitto's `acl_file` syntax, which [`AclRules::parse`] reads
//! back to the same rules.

use std::fmt::{self, Write as _};
use std::io::BufRead;
use std::time::{Duration, Instant};

use mqtt5_broker::{
    AclAccess, AclError, AclRule, AclRules, AclScope, CredentialError, InvalidAclRecord,
};
use mqtt5_broker::{PasswordParams, ScramCredentials, hash_password_with};
use mqtt5_store::{AclRecord, SqliteOptions, SqliteStore, Store, StoreOp};

use crate::settings::Settings;

/// The `meta` key of the running broker's process id.
pub(crate) const BROKER_PID: &str = "broker_pid";

/// The `meta` key of the version of the users and rules the running broker applies.
pub(crate) const AUTH_APPLIED: &str = "auth_applied";

/// The salt length of new password hashes, in bytes.
pub(crate) const SALT_LEN: usize = 16;

/// The longest user name: an MQTT UTF-8 string (MQTT 5 §1.5.4).
const MAX_USERNAME_LEN: usize = 65_535;

/// A `user` or `acl` command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] mqtt5_store::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A user name that cannot be used.
    #[error("invalid user name {name:?}: {reason}")]
    InvalidUsername {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No such user.
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// An empty password.
    #[error("the password is empty")]
    EmptyPassword,
    /// The two passwords typed differ.
    #[error("the passwords do not match")]
    PasswordMismatch,
    /// The password could not be read.
    #[error("cannot read the password: {0}")]
    ReadPassword(std::io::Error),
    /// There is no terminal to prompt on.
    #[error("cannot prompt for the password on the terminal ({0}); use --password-stdin")]
    NoTerminal(std::io::Error),
    /// The operating system gave no random bytes for the salt.
    #[error("cannot get random bytes for the salt: {0}")]
    Random(getrandom::Error),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(#[from] CredentialError),
    /// A scope other than `anonymous`, `user:NAME` or `pattern`.
    #[error("invalid scope {0:?}: expected `anonymous`, `user:NAME` or `pattern`")]
    InvalidScope(String),
    /// An access other than `read`, `write`, `readwrite` or `deny`.
    #[error("invalid access {0:?}: expected `read`, `write`, `readwrite` or `deny`")]
    InvalidAccess(String),
    /// An invalid rule topic.
    #[error(transparent)]
    Acl(#[from] AclError),
    /// No such rule.
    #[error("no such rule: {0}")]
    NoSuchRule(RuleDisplay),
    /// The database holds a rule this version cannot read.
    #[error(transparent)]
    BadRecord(#[from] InvalidAclRecord),
}

/// A rule, shown as `SCOPE ACCESS TOPIC` the way the command line takes it.
#[derive(Debug)]
pub(crate) struct RuleDisplay(pub(crate) AclRule);

impl fmt::Display for RuleDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.0.scope() {
            AclScope::Anonymous => "anonymous".to_owned(),
            AclScope::User(name) => format!("user:{name}"),
            AclScope::Pattern => "pattern".to_owned(),
        };
        write!(
            f,
            "{scope} {} {}",
            self.0.access().keyword(),
            self.0.topic()
        )
    }
}

/// Opens the SQLite database of the configured data directory, creating the directory (mode
/// 0700) when `create` is true. With `durability = "memory"` too: the broker then reads its
/// users and access rules from the database when it exists, and stores nothing else in it.
///
/// # Errors
///
/// [`AdminError::DataDir`] if the directory cannot be created, or the store's error.
pub(crate) fn open_database(settings: &Settings, create: bool) -> Result<SqliteStore, AdminError> {
    let dir = &settings.storage.data_dir;
    if create {
        crate::perms::create_private_dir(dir).map_err(|source| AdminError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(SqliteStore::open(
        settings.storage.database_path(),
        SqliteOptions::default(),
    )?)
}

/// Checks a user name: not empty, at most 65,535 bytes, no control characters (U+0000 is
/// forbidden by [MQTT-1.5.4-2]), and no white space at either end (an ACL file's `user` line
/// could not hold it).
///
/// # Errors
///
/// [`AdminError::InvalidUsername`].
pub(crate) fn check_username(name: &str) -> Result<(), AdminError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_USERNAME_LEN {
        Some("longer than 65535 bytes")
    } else if name.chars().any(char::is_control) {
        Some("holds a control character")
    } else if name.trim() != name {
        Some("begins or ends with white space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AdminError::InvalidUsername {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// 16 random bytes from the operating system.
///
/// # Errors
///
/// [`AdminError::Random`].
pub(crate) fn random_salt() -> Result<[u8; SALT_LEN], AdminError> {
    let mut salt = [0; SALT_LEN];
    getrandom::fill(&mut salt).map_err(AdminError::Random)?;
    Ok(salt)
}

/// Reads a password from the first line of `input`, without its line ending.
///
/// # Errors
///
/// [`AdminError::ReadPassword`] or [`AdminError::EmptyPassword`].
pub(crate) fn read_password_line(mut input: impl BufRead) -> Result<String, AdminError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(AdminError::ReadPassword)?;
    let password = line
        .strip_suffix('\n')
        .map_or(line.as_str(), |l| l.strip_suffix('\r').unwrap_or(l));
    if password.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    Ok(password.to_owned())
}

/// Prompts for a password twice on the terminal, without echo.
///
/// # Errors
///
/// [`AdminError::NoTerminal`], [`AdminError::ReadPassword`], [`AdminError::EmptyPassword`] or
/// [`AdminError::PasswordMismatch`].
pub(crate) fn prompt_password(name: &str) -> Result<String, AdminError> {
    let first = rpassword::prompt_password(format!("Password for {name}: "))
        .map_err(AdminError::NoTerminal)?;
    if first.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    let second = rpassword::prompt_password("Again: ").map_err(AdminError::ReadPassword)?;
    if first != second {
        return Err(AdminError::PasswordMismatch);
    }
    Ok(first)
}

/// Whether [`user_add`] created the user or replaced its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserAdded {
    /// A new user.
    Created,
    /// The user existed; its password is replaced.
    Replaced,
}

/// How [`user_add`] derives SCRAM-SHA-256 credentials: with `[auth] scram_sha_256 = true`
/// only, from a salt of their own (never the password hash's) and `[auth] scram_iterations`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScramParams {
    /// 16 random bytes, drawn apart from the password hash's salt.
    pub(crate) salt: [u8; SALT_LEN],
    /// The PBKDF2 iteration count.
    pub(crate) iterations: u32,
}

/// Sets a user's password (creating the user if needed), hashed as argon2id with `params`
/// ([`PasswordParams::DEFAULT`] outside tests) and `salt`, and with `scram` its SCRAM-SHA-256
/// credentials; without, the user has none (a password set again drops the old ones).
///
/// # Errors
///
/// An invalid name, an empty password, a hashing or store failure.
pub(crate) fn user_add<S: Store>(
    store: &mut S,
    name: &str,
    password: &[u8],
    salt: &[u8],
    params: PasswordParams,
    scram: Option<ScramParams>,
) -> Result<UserAdded, AdminError> {
    check_username(name)?;
    if password.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    let existed = store.user_exists(name)?;
    let password_hash = hash_password_with(password, salt, params)?;
    let mut ops = vec![StoreOp::UserSet {
        username: name.to_owned(),
        password_hash,
    }];
    if let Some(scram) = scram {
        let credentials = ScramCredentials::derive(password, &scram.salt, scram.iterations);
        ops.push(StoreOp::UserScramSet {
            username: name.to_owned(),
            credentials: credentials.to_string(),
        });
    }
    store.apply(&ops)?;
    Ok(if existed {
        UserAdded::Replaced
    } else {
        UserAdded::Created
    })
}

/// Removes a user.
///
/// # Errors
///
/// [`AdminError::NoSuchUser`], or a store failure.
pub(crate) fn user_remove<S: Store>(store: &mut S, name: &str) -> Result<(), AdminError> {
    if !store.user_exists(name)? {
        return Err(AdminError::NoSuchUser(name.to_owned()));
    }
    store.apply(&[StoreOp::UserRemoved {
        username: name.to_owned(),
    }])?;
    Ok(())
}

/// The user names, in byte order; never their hashes.
///
/// # Errors
///
/// A store failure.
pub(crate) fn user_list<S: Store>(store: &mut S) -> Result<Vec<String>, AdminError> {
    Ok(store.auth_state()?.users.into_keys().collect())
}

/// Parses a scope of the command line: `anonymous`, `user:NAME` or `pattern`.
///
/// # Errors
///
/// [`AdminError::InvalidScope`], or [`AdminError::InvalidUsername`] for `user:NAME`.
pub(crate) fn parse_scope(scope: &str) -> Result<AclScope, AdminError> {
    match scope {
        "anonymous" => Ok(AclScope::Anonymous),
        "pattern" => Ok(AclScope::Pattern),
        _ => match scope.strip_prefix("user:") {
            Some(name) => {
                check_username(name)?;
                Ok(AclScope::User(name.to_owned()))
            }
            None => Err(AdminError::InvalidScope(scope.to_owned())),
        },
    }
}

/// Parses a rule of the command line: `SCOPE ACCESS TOPIC`.
///
/// # Errors
///
/// An invalid scope, access or topic.
pub(crate) fn parse_rule(scope: &str, access: &str, topic: &str) -> Result<AclRule, AdminError> {
    let scope = parse_scope(scope)?;
    let access =
        AclAccess::from_keyword(access).ok_or_else(|| AdminError::InvalidAccess(access.into()))?;
    Ok(AclRule::new(scope, access, topic)?)
}

/// Adds a rule; false if it was already there (nothing is written then).
///
/// # Errors
///
/// A store failure.
pub(crate) fn acl_add<S: Store>(store: &mut S, rule: &AclRule) -> Result<bool, AdminError> {
    let record = AclRecord::from(rule);
    if store.auth_state()?.acl.contains(&record) {
        return Ok(false);
    }
    store.apply(&[StoreOp::AclAdded(record)])?;
    Ok(true)
}

/// Removes a rule.
///
/// # Errors
///
/// [`AdminError::NoSuchRule`], or a store failure.
pub(crate) fn acl_remove<S: Store>(store: &mut S, rule: &AclRule) -> Result<(), AdminError> {
    let record = AclRecord::from(rule);
    if !store.auth_state()?.acl.contains(&record) {
        return Err(AdminError::NoSuchRule(RuleDisplay(rule.clone())));
    }
    store.apply(&[StoreOp::AclRemoved(record)])?;
    Ok(())
}

/// The stored rules.
///
/// # Errors
///
/// A store failure, or [`AdminError::BadRecord`].
pub(crate) fn acl_rules<S: Store>(store: &mut S) -> Result<AclRules, AdminError> {
    let mut rules = AclRules::new();
    for record in &store.auth_state()?.acl {
        rules.add(AclRule::try_from(record)?);
    }
    Ok(rules)
}

/// Whether the broker running on the database took a change in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerNotice {
    /// The running broker applies the users and rules at this version or a later one.
    Applied {
        /// Its process id.
        pid: u32,
    },
    /// A broker runs, but had not applied the change when the wait ended.
    NotYet {
        /// Its process id.
        pid: u32,
    },
    /// No broker runs on this database.
    NoBroker,
}

impl fmt::Display for BrokerNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Applied { pid } => write!(f, "applied by the running broker (pid {pid})"),
            Self::NotYet { pid } => write!(
                f,
                "the running broker (pid {pid}) has not applied it yet: it reloads users and \
                 access rules within about a second of a change unless it cannot use them (see \
                 its log)"
            ),
            Self::NoBroker => write!(
                f,
                "no broker is running on this database: the change applies when one starts"
            ),
        }
    }
}

/// How often [`running_broker`] looks at what the broker applied.
const BROKER_POLL: Duration = Duration::from_millis(50);

/// Waits, at most `timeout`, until the broker whose process id the database records applies
/// the users and access rules at `version` (the version a change produced) or later.
///
/// # Errors
///
/// A store failure.
pub(crate) fn running_broker(
    store: &SqliteStore,
    version: u64,
    timeout: Duration,
) -> Result<BrokerNotice, AdminError> {
    let Some(pid) = store.meta(BROKER_PID)?.and_then(|p| p.parse::<u32>().ok()) else {
        return Ok(BrokerNotice::NoBroker);
    };
    if !process_alive(pid) {
        return Ok(BrokerNotice::NoBroker);
    }
    let end = Instant::now() + timeout;
    loop {
        let applied = store
            .meta(AUTH_APPLIED)?
            .and_then(|v| v.parse::<u64>().ok());
        if applied.is_some_and(|a| a >= version) {
            return Ok(BrokerNotice::Applied { pid });
        }
        // The broker removes its process id when it stops.
        if store.meta(BROKER_PID)?.as_deref() != Some(pid.to_string().as_str())
            || !process_alive(pid)
        {
            return Ok(BrokerNotice::NoBroker);
        }
        if Instant::now() >= end {
            return Ok(BrokerNotice::NotYet { pid });
        }
        std::thread::sleep(BROKER_POLL);
    }
}

/// Whether a process of this id exists (a signal could be sent to it; one of another user
/// counts too).
fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Rules in Mosquitto's `acl_file` syntax: anonymous rules first (`topic` lines before any
/// `user` line), then one `user` block per user, then the `pattern` lines. Every line names
/// its access, so topics with spaces read back unchanged.
pub(crate) fn format_acl(rules: &AclRules) -> String {
    let mut out = String::new();
    let mut current_user: Option<&str> = None;
    let rules: Vec<AclRule> = rules.rules().collect();
    let mut previous_was_pattern = false;
    for rule in &rules {
        match rule.scope() {
            AclScope::Anonymous => {
                let _ = writeln!(out, "topic {} {}", rule.access().keyword(), rule.topic());
            }
            AclScope::User(name) => {
                if current_user != Some(name.as_str()) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "user {name}");
                    current_user = Some(name.as_str());
                }
                let _ = writeln!(out, "topic {} {}", rule.access().keyword(), rule.topic());
            }
            AclScope::Pattern => {
                if !previous_was_pattern && !out.is_empty() {
                    out.push('\n');
                }
                previous_was_pattern = true;
                let _ = writeln!(out, "pattern {} {}", rule.access().keyword(), rule.topic());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use mqtt5_broker::{Authorizer, ClientInfo, verify_password};
    use mqtt5_store::MemoryStore;

    use super::*;

    /// Cheap argon2 parameters: the tests check the plumbing, not the cost.
    fn params() -> PasswordParams {
        PasswordParams::new(64, 1, 1).unwrap()
    }

    const SALT: [u8; SALT_LEN] = *b"0123456789abcdef";

    /// SCRAM credentials with few iterations: the settings refuse fewer than 100,000, the
    /// tests check the plumbing.
    const SCRAM: ScramParams = ScramParams {
        salt: *b"scram-salt-16-by",
        iterations: 16,
    };

    fn user_round_trip<S: Store>(store: &mut S) {
        assert_eq!(user_list(store).unwrap(), Vec::<String>::new());
        assert_eq!(
            user_add(store, "bob", b"hunter2", &SALT, params(), None).unwrap(),
            UserAdded::Created
        );
        assert_eq!(
            user_add(store, "alice", b"s3cret", &SALT, params(), Some(SCRAM)).unwrap(),
            UserAdded::Created
        );
        // Without SCRAM parameters ([auth] scram_sha_256 = false) a user has no SCRAM
        // credentials.
        assert!(!store.auth_state().unwrap().scram.contains_key("bob"));
        assert_eq!(user_list(store).unwrap(), ["alice", "bob"]);
        let hash = store.recover().unwrap().users["alice"].clone();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(b"s3cret", &hash));
        assert!(!verify_password(b"hunter2", &hash));

        // A second add replaces the password.
        assert_eq!(
            user_add(store, "alice", b"changed", &SALT, params(), Some(SCRAM)).unwrap(),
            UserAdded::Replaced
        );
        let hash = store.recover().unwrap().users["alice"].clone();
        assert!(verify_password(b"changed", &hash));
        // With SCRAM parameters, SCRAM-SHA-256 credentials derived from the password with
        // their own salt, not the password hash's.
        let scram: ScramCredentials = store.recover().unwrap().scram["alice"].parse().unwrap();
        assert_eq!(
            scram,
            ScramCredentials::derive(b"changed", &SCRAM.salt, SCRAM.iterations)
        );
        assert_ne!(scram.salt(), SALT);
        // Set again without SCRAM, the password loses the credentials of the old one.
        user_add(store, "alice", b"changed", &SALT, params(), None).unwrap();
        assert!(store.auth_state().unwrap().scram.is_empty());

        user_remove(store, "bob").unwrap();
        assert_eq!(user_list(store).unwrap(), ["alice"]);
        assert!(matches!(
            user_remove(store, "bob"),
            Err(AdminError::NoSuchUser(name)) if name == "bob"
        ));
    }

    #[test]
    fn user_add_list_remove_round_trip_in_memory() {
        user_round_trip(&mut MemoryStore::new());
    }

    #[test]
    fn user_add_list_remove_round_trip_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt5.db");
        {
            let mut store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            user_round_trip(&mut store);
        }
        // And the users are still there when the database is opened again.
        let mut store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(user_list(&mut store).unwrap(), ["alice"]);
    }

    #[test]
    fn open_database_creates_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.storage.data_dir = dir.path().join("nested").join("data");
        let mut store = open_database(&settings, true).unwrap();
        user_add(&mut store, "carol", b"pw", &SALT, params(), None).unwrap();
        drop(store);
        assert!(settings.storage.database_path().is_file());
        let mut store = open_database(&settings, false).unwrap();
        assert_eq!(user_list(&mut store).unwrap(), ["carol"]);
        drop(store);

        // With durability = "memory" the database holds the users all the same.
        settings.storage.durability = crate::settings::Durability::Memory;
        let mut store = open_database(&settings, true).unwrap();
        assert_eq!(user_list(&mut store).unwrap(), ["carol"]);
        settings.storage.data_dir = dir.path().join("memory");
        let mut store = open_database(&settings, true).unwrap();
        user_add(&mut store, "dave", b"pw", &SALT, params(), None).unwrap();
        assert_eq!(user_list(&mut store).unwrap(), ["dave"]);
    }

    #[test]
    fn running_broker_reports_what_the_broker_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt5.db");
        let mut store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        user_add(&mut store, "erin", b"pw", &SALT, params(), None).unwrap();
        let version = store.auth_version().unwrap();
        let wait = Duration::from_secs(30);
        assert_eq!(
            running_broker(&store, version, wait).unwrap(),
            BrokerNotice::NoBroker
        );

        // A process id that is no longer running: no broker either.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        store
            .set_meta(BROKER_PID, Some(&child.id().to_string()))
            .unwrap();
        assert_eq!(
            running_broker(&store, version, wait).unwrap(),
            BrokerNotice::NoBroker
        );

        // A live process that has applied an older version, and never gets further.
        let pid = std::process::id();
        store.set_meta(BROKER_PID, Some(&pid.to_string())).unwrap();
        store
            .set_meta(AUTH_APPLIED, Some(&(version - 1).to_string()))
            .unwrap();
        let notice = running_broker(&store, version, Duration::ZERO).unwrap();
        assert_eq!(notice, BrokerNotice::NotYet { pid });
        assert!(
            notice.to_string().starts_with(&format!(
                "the running broker (pid {pid}) has not applied it yet"
            )),
            "{notice}"
        );

        // ... until it records the version from another connection.
        let reader = store.reader();
        let broker = std::thread::spawn(move || {
            reader
                .set_meta(AUTH_APPLIED, Some(&version.to_string()))
                .unwrap();
        });
        let notice = running_broker(&store, version, wait).unwrap();
        broker.join().unwrap();
        assert_eq!(notice, BrokerNotice::Applied { pid });
        assert_eq!(
            notice.to_string(),
            format!("applied by the running broker (pid {pid})")
        );
    }

    #[test]
    fn bad_user_names_and_passwords_are_refused() {
        let mut store = MemoryStore::new();
        for name in ["", " bob", "bob ", "a\0b", "tab\there"] {
            assert!(
                matches!(
                    user_add(&mut store, name, b"pw", &SALT, params(), None),
                    Err(AdminError::InvalidUsername { .. })
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            user_add(&mut store, "bob", b"", &SALT, params(), None),
            Err(AdminError::EmptyPassword)
        ));
        assert!(matches!(
            user_add(&mut store, "bob", b"pw", &SALT[..8], params(), None),
            Err(AdminError::Hash(_))
        ));
        assert!(user_list(&mut store).unwrap().is_empty());
    }

    #[test]
    fn password_line_loses_its_line_ending() {
        assert_eq!(read_password_line(&b"pw\n"[..]).unwrap(), "pw");
        assert_eq!(read_password_line(&b"pw\r\nrest\n"[..]).unwrap(), "pw");
        assert_eq!(
            read_password_line(&b"no newline"[..]).unwrap(),
            "no newline"
        );
        assert_eq!(read_password_line(&b" spaced \n"[..]).unwrap(), " spaced ");
        assert!(matches!(
            read_password_line(&b"\n"[..]),
            Err(AdminError::EmptyPassword)
        ));
        assert!(matches!(
            read_password_line(&b""[..]),
            Err(AdminError::EmptyPassword)
        ));
    }

    #[test]
    fn random_salts_differ() {
        assert_ne!(random_salt().unwrap(), random_salt().unwrap());
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(parse_scope("anonymous").unwrap(), AclScope::Anonymous);
        assert_eq!(parse_scope("pattern").unwrap(), AclScope::Pattern);
        assert_eq!(
            parse_scope("user:alice").unwrap(),
            AclScope::User("alice".into())
        );
        assert_eq!(
            parse_scope("user:with space").unwrap(),
            AclScope::User("with space".into())
        );
        for bad in ["user", "user:", "users:alice", "Anonymous", "", "user: x"] {
            assert!(parse_scope(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_scope("everyone"),
            Err(AdminError::InvalidScope(_))
        ));
    }

    #[test]
    fn rules_parse_and_check_their_topic() {
        let rule = parse_rule("user:alice", "readwrite", "alice/#").unwrap();
        assert_eq!(rule.access(), AclAccess::ReadWrite);
        assert!(matches!(
            parse_rule("pattern", "all", "a/b"),
            Err(AdminError::InvalidAccess(_))
        ));
        assert!(matches!(
            parse_rule("pattern", "read", "a/#/b"),
            Err(AdminError::Acl(_))
        ));
        assert!(matches!(
            parse_rule("pattern", "read", ""),
            Err(AdminError::Acl(_))
        ));
    }

    #[test]
    fn records_round_trip() {
        for (scope, access, topic, stored_scope) in [
            ("anonymous", "read", "$SYS/#", "anonymous"),
            ("user:alice", "deny", "a/secret", "user alice"),
            ("pattern", "write", "devices/%c/#", "pattern"),
        ] {
            let rule = parse_rule(scope, access, topic).unwrap();
            let record = AclRecord::from(&rule);
            assert_eq!(record.scope, stored_scope);
            assert_eq!(record.access, access);
            assert_eq!(record.topic, topic);
            assert_eq!(AclRule::try_from(&record).unwrap(), rule);
        }
        let bad = AclRecord {
            scope: "group admins".into(),
            access: "read".into(),
            topic: "a".into(),
        };
        assert!(AclRule::try_from(&bad).is_err());
    }

    fn acl_round_trip<S: Store>(store: &mut S) {
        let rules = [
            parse_rule("pattern", "read", "devices/%c/cmd").unwrap(),
            parse_rule("user:bob", "readwrite", "bob/#").unwrap(),
            parse_rule("anonymous", "read", "$SYS/#").unwrap(),
            parse_rule("user:alice", "readwrite", "alice/#").unwrap(),
            parse_rule("user:alice", "deny", "alice/secret topic").unwrap(),
            parse_rule("anonymous", "write", "public/#").unwrap(),
        ];
        for rule in &rules {
            assert!(acl_add(store, rule).unwrap());
        }
        assert!(
            !acl_add(store, &rules[0]).unwrap(),
            "a duplicate is a no-op"
        );
        assert_eq!(store.recover().unwrap().acl.len(), rules.len());

        let listed = format_acl(&acl_rules(store).unwrap());
        assert_eq!(
            listed,
            "topic read $SYS/#\n\
             topic write public/#\n\
             \n\
             user alice\n\
             topic readwrite alice/#\n\
             topic deny alice/secret topic\n\
             \n\
             user bob\n\
             topic readwrite bob/#\n\
             \n\
             pattern read devices/%c/cmd\n"
        );
        // The listing is a valid ACL file holding the same rules.
        let parsed = AclRules::parse(&listed).unwrap();
        assert_eq!(parsed, acl_rules(store).unwrap());
        let alice = ClientInfo {
            client_id: "d1",
            username: Some("alice"),
        };
        assert!(parsed.can_publish(&alice, "alice/x"));
        assert!(!parsed.can_publish(&alice, "alice/secret topic"));

        acl_remove(store, &rules[1]).unwrap();
        assert!(!format_acl(&acl_rules(store).unwrap()).contains("bob"));
        assert!(matches!(
            acl_remove(store, &rules[1]),
            Err(AdminError::NoSuchRule(_))
        ));
        let message = acl_remove(store, &rules[1]).unwrap_err().to_string();
        assert_eq!(message, "no such rule: user:bob readwrite bob/#");
    }

    #[test]
    fn acl_add_list_remove_round_trip_in_memory() {
        acl_round_trip(&mut MemoryStore::new());
    }

    #[test]
    fn acl_add_list_remove_round_trip_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            SqliteStore::open(dir.path().join("mqtt5.db"), SqliteOptions::default()).unwrap();
        acl_round_trip(&mut store);
    }

    #[test]
    fn empty_acl_lists_as_nothing() {
        assert_eq!(format_acl(&AclRules::new()), "");
        let only_patterns = AclRules::parse("pattern read a/%u\n").unwrap();
        assert_eq!(format_acl(&only_patterns), "pattern read a/%u\n");
    }
}
