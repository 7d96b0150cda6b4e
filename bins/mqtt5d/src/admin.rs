//! `mqtt5d user …` and `mqtt5d acl …`: users and access rules in the broker's database.
//!
//! The functions here are generic over [`Store`]: the commands run them on the SQLite database
//! of the configured data directory ([`open_database`]), the tests on a `MemoryStore` and on a
//! SQLite file in a temporary directory. Users are written with [`StoreOp::UserSet`] and
//! [`StoreOp::UserRemoved`] and listed from [`Store::recover`], names only: a password hash
//! never leaves the database through this module, and a password is never printed or logged.
//!
//! Access rules are stored as [`AclRecord`]s (`scope` = `"anonymous"`, `"user NAME"` or
//! `"pattern"`) and listed in Mosquitto's `acl_file` syntax, which [`AclRules::parse`] reads
//! back to the same rules.

use std::fmt::{self, Write as _};
use std::io::BufRead;

use mqtt5_broker::{AclAccess, AclError, AclRule, AclRules, AclScope, CredentialError};
use mqtt5_broker::{
    PasswordParams, SCRAM_DEFAULT_ITERATIONS, ScramCredentials, hash_password_with,
};
use mqtt5_store::{AclRecord, SqliteOptions, SqliteStore, Store, StoreOp};

use crate::settings::{Durability, Settings};

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
    /// The configuration keeps no database.
    #[error(
        "[storage] durability = \"memory\": the broker keeps no database, so it has no users or \
         access rules to manage (use \"sync\" or \"periodic\")"
    )]
    NoDatabase,
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
    #[error("the database holds an invalid ACL rule {0:?}")]
    BadRecord(AclRecord),
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

/// Opens the SQLite database of the configured data directory, creating the directory when
/// `create` is true.
///
/// # Errors
///
/// [`AdminError::NoDatabase`] with `durability = "memory"`, [`AdminError::DataDir`] if the
/// directory cannot be created, or the store's error.
pub(crate) fn open_database(settings: &Settings, create: bool) -> Result<SqliteStore, AdminError> {
    if settings.storage.durability == Durability::Memory {
        return Err(AdminError::NoDatabase);
    }
    let dir = &settings.storage.data_dir;
    if create {
        std::fs::create_dir_all(dir).map_err(|source| AdminError::DataDir {
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

/// Sets a user's password (creating the user if needed), hashed as argon2id with `params`
/// ([`PasswordParams::DEFAULT`] outside tests) and `salt`.
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
) -> Result<UserAdded, AdminError> {
    check_username(name)?;
    if password.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    let existed = store.recover()?.users.contains_key(name);
    let password_hash = hash_password_with(password, salt, params)?;
    // The SCRAM-SHA-256 credentials for enhanced authentication ([auth] scram_sha_256),
    // derived from the same password with the same (random) salt.
    let scram = ScramCredentials::derive(password, salt, SCRAM_DEFAULT_ITERATIONS);
    store.apply(&[
        StoreOp::UserSet {
            username: name.to_owned(),
            password_hash,
        },
        StoreOp::UserScramSet {
            username: name.to_owned(),
            credentials: scram.to_string(),
        },
    ])?;
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
    if !store.recover()?.users.contains_key(name) {
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
    Ok(store.recover()?.users.into_keys().collect())
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

/// The stored form of a rule.
pub(crate) fn to_record(rule: &AclRule) -> AclRecord {
    let scope = match rule.scope() {
        AclScope::Anonymous => "anonymous".to_owned(),
        AclScope::User(name) => format!("user {name}"),
        AclScope::Pattern => "pattern".to_owned(),
    };
    AclRecord {
        scope,
        access: rule.access().keyword().to_owned(),
        topic: rule.topic().to_owned(),
    }
}

/// The rule a stored record holds.
///
/// # Errors
///
/// [`AdminError::BadRecord`] if it holds no valid rule.
pub(crate) fn from_record(record: &AclRecord) -> Result<AclRule, AdminError> {
    let bad = || AdminError::BadRecord(record.clone());
    let scope = match record.scope.as_str() {
        "anonymous" => AclScope::Anonymous,
        "pattern" => AclScope::Pattern,
        other => match other.strip_prefix("user ") {
            Some(name) if check_username(name).is_ok() => AclScope::User(name.to_owned()),
            _ => return Err(bad()),
        },
    };
    let access = AclAccess::from_keyword(&record.access).ok_or_else(bad)?;
    AclRule::new(scope, access, record.topic.clone()).map_err(|_| bad())
}

/// Adds a rule; false if it was already there (nothing is written then).
///
/// # Errors
///
/// A store failure.
pub(crate) fn acl_add<S: Store>(store: &mut S, rule: &AclRule) -> Result<bool, AdminError> {
    let record = to_record(rule);
    if store.recover()?.acl.contains(&record) {
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
    let record = to_record(rule);
    if !store.recover()?.acl.contains(&record) {
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
    for record in &store.recover()?.acl {
        rules.add(from_record(record)?);
    }
    Ok(rules)
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

    fn user_round_trip<S: Store>(store: &mut S) {
        assert_eq!(user_list(store).unwrap(), Vec::<String>::new());
        assert_eq!(
            user_add(store, "bob", b"hunter2", &SALT, params()).unwrap(),
            UserAdded::Created
        );
        assert_eq!(
            user_add(store, "alice", b"s3cret", &SALT, params()).unwrap(),
            UserAdded::Created
        );
        assert_eq!(user_list(store).unwrap(), ["alice", "bob"]);
        let hash = store.recover().unwrap().users["alice"].clone();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(b"s3cret", &hash));
        assert!(!verify_password(b"hunter2", &hash));

        // A second add replaces the password.
        assert_eq!(
            user_add(store, "alice", b"changed", &SALT, params()).unwrap(),
            UserAdded::Replaced
        );
        let hash = store.recover().unwrap().users["alice"].clone();
        assert!(verify_password(b"changed", &hash));
        // Every password comes with SCRAM-SHA-256 credentials derived from it.
        let scram: ScramCredentials = store.recover().unwrap().scram["alice"].parse().unwrap();
        assert_eq!(
            scram,
            ScramCredentials::derive(b"changed", &SALT, SCRAM_DEFAULT_ITERATIONS)
        );

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
        user_add(&mut store, "carol", b"pw", &SALT, params()).unwrap();
        drop(store);
        assert!(settings.storage.database_path().is_file());
        let mut store = open_database(&settings, false).unwrap();
        assert_eq!(user_list(&mut store).unwrap(), ["carol"]);

        settings.storage.durability = Durability::Memory;
        assert!(matches!(
            open_database(&settings, true),
            Err(AdminError::NoDatabase)
        ));
    }

    #[test]
    fn bad_user_names_and_passwords_are_refused() {
        let mut store = MemoryStore::new();
        for name in ["", " bob", "bob ", "a\0b", "tab\there"] {
            assert!(
                matches!(
                    user_add(&mut store, name, b"pw", &SALT, params()),
                    Err(AdminError::InvalidUsername { .. })
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            user_add(&mut store, "bob", b"", &SALT, params()),
            Err(AdminError::EmptyPassword)
        ));
        assert!(matches!(
            user_add(&mut store, "bob", b"pw", &SALT[..8], params()),
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
            let record = to_record(&rule);
            assert_eq!(record.scope, stored_scope);
            assert_eq!(record.access, access);
            assert_eq!(record.topic, topic);
            assert_eq!(from_record(&record).unwrap(), rule);
        }
        let bad = AclRecord {
            scope: "group admins".into(),
            access: "read".into(),
            topic: "a".into(),
        };
        assert!(matches!(from_record(&bad), Err(AdminError::BadRecord(_))));
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
