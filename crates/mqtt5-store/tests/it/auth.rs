//! What the SQLite database tells other connections and processes about its users and access
//! rules (the `auth_version` triggers, `auth_state`), the `meta` and `secrets` tables, the
//! schema step that clears old SCRAM credentials, and the modes of the files it creates.

use std::path::{Path, PathBuf};

use mqtt5_store::{AuthState, SqliteOptions, SqliteStore, Store, StoreOp};
use rusqlite::Connection;

use crate::fixture::rule;

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mqtt5.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).unwrap()
}

fn user(name: &str, hash: &str) -> StoreOp {
    StoreOp::UserSet {
        username: name.into(),
        password_hash: hash.into(),
    }
}

fn scram(name: &str, credentials: &str) -> StoreOp {
    StoreOp::UserScramSet {
        username: name.into(),
        credentials: credentials.into(),
    }
}

fn version_of(conn: &Connection) -> i64 {
    conn.query_row("SELECT version FROM auth_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_row_change_of_users_and_acl_moves_the_version_whoever_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut store = open(&path);
    let reader = store.reader();
    let v0 = reader.auth_version().unwrap();
    assert_eq!(store.auth_version().unwrap(), v0);

    // Through the store's ops.
    store.apply(&[user("alice", "h1")]).unwrap();
    let v1 = reader.auth_version().unwrap();
    assert!(v1 > v0);
    store
        .apply(&[StoreOp::AclAdded(rule("user alice", "read", "a/#"))])
        .unwrap();
    let v2 = reader.auth_version().unwrap();
    assert!(v2 > v1);

    // A no-op changes nothing: a duplicate rule, an unknown user removed.
    store
        .apply(&[
            StoreOp::AclAdded(rule("user alice", "read", "a/#")),
            StoreOp::UserRemoved {
                username: "nobody".into(),
            },
        ])
        .unwrap();
    assert_eq!(reader.auth_version().unwrap(), v2);

    // Plain SQL on another connection, as another process would: INSERT, UPDATE and DELETE of
    // both tables each move it.
    let other = Connection::open(&path).unwrap();
    let mut last = v2;
    for sql in [
        "INSERT INTO users (username, password_hash) VALUES ('bob', 'h2')",
        "UPDATE users SET password_hash = 'h3' WHERE username = 'bob'",
        "DELETE FROM users WHERE username = 'bob'",
        "INSERT INTO acl (scope, access, topic) VALUES ('pattern', 'read', 'p/%c')",
        "UPDATE acl SET access = 'write' WHERE scope = 'pattern'",
        "DELETE FROM acl WHERE scope = 'pattern'",
    ] {
        other.execute(sql, []).unwrap();
        let now = reader.auth_version().unwrap();
        assert!(now > last, "{sql}: {last} then {now}");
        assert_eq!(u64::try_from(version_of(&other)).unwrap(), now);
        last = now;
    }
    // The writer's own connection sees it too.
    assert_eq!(store.auth_version().unwrap(), last);

    // Other tables leave it alone.
    other
        .execute(
            "INSERT INTO retained (topic, message, dup) VALUES ('t', x'00', 0)",
            [],
        )
        .unwrap();
    assert_eq!(reader.auth_version().unwrap(), last);
}

#[test]
fn auth_state_is_read_in_one_snapshot_from_any_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut store = open(&path);
    store
        .apply(&[
            user("alice", "h1"),
            scram("alice", "SCRAM-SHA-256$a"),
            user("bob", "h2"),
            StoreOp::AclAdded(rule("user bob", "readwrite", "b/#")),
            StoreOp::AclAdded(rule("anonymous", "read", "$SYS/#")),
        ])
        .unwrap();
    let reader = store.reader();
    let seen: AuthState = std::thread::spawn(move || reader.auth_state().unwrap())
        .join()
        .unwrap();
    let recovered = store.recover().unwrap();
    assert_eq!(seen.users, recovered.users);
    assert_eq!(seen.scram, recovered.scram);
    assert_eq!(seen.acl, recovered.acl);
    assert_eq!(seen.version, store.auth_version().unwrap());
    assert_eq!(seen, store.auth_state().unwrap());
    assert!(store.reader().user_exists("bob").unwrap());
    assert!(!store.reader().user_exists("carol").unwrap());
}

#[test]
fn a_secret_is_stored_once_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut store = open(&path);
    assert_eq!(store.secret_or_insert("fake", [1; 32]).unwrap(), [1; 32]);
    assert_eq!(store.secret_or_insert("fake", [2; 32]).unwrap(), [1; 32]);
    // Each name has its own.
    assert_eq!(store.secret_or_insert("other", [3; 32]).unwrap(), [3; 32]);
    drop(store);
    let mut store = open(&path);
    assert_eq!(store.secret_or_insert("fake", [4; 32]).unwrap(), [1; 32]);
    assert_eq!(store.secret_or_insert("other", [5; 32]).unwrap(), [3; 32]);

    // A damaged secret is reported, not replaced.
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE secrets SET value = x'0102' WHERE name = 'fake'", [])
        .unwrap();
    let result = store.secret_or_insert("fake", [6; 32]);
    assert!(
        matches!(result, Err(mqtt5_store::Error::Corrupt { .. })),
        "{result:?}"
    );
}

#[test]
fn meta_values_are_set_replaced_and_removed_by_store_and_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = open(&path);
    let reader = store.reader();
    assert_eq!(store.meta("broker_pid").unwrap(), None);
    store.set_meta("broker_pid", Some("42")).unwrap();
    assert_eq!(reader.meta("broker_pid").unwrap().as_deref(), Some("42"));
    reader.set_meta("auth_applied", Some("7")).unwrap();
    reader.set_meta("auth_applied", Some("8")).unwrap();
    assert_eq!(store.meta("auth_applied").unwrap().as_deref(), Some("8"));
    // Meta values are no users or rules: the version stays.
    let version = store.auth_version().unwrap();
    store.set_meta("broker_pid", None).unwrap();
    assert_eq!(reader.meta("broker_pid").unwrap(), None);
    // Removing what is not there is fine.
    reader.set_meta("broker_pid", None).unwrap();
    assert_eq!(store.auth_version().unwrap(), version);
    drop(store);
    assert_eq!(
        open(&path).meta("auth_applied").unwrap().as_deref(),
        Some("8")
    );
}

/// Takes a current database back to schema version 3: no `auth_version`, `meta` or
/// `secrets`, and SCRAM credentials as version 3 wrote them.
fn back_to_version_3(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER auth_version_users_insert;
         DROP TRIGGER auth_version_users_update;
         DROP TRIGGER auth_version_users_delete;
         DROP TRIGGER auth_version_acl_insert;
         DROP TRIGGER auth_version_acl_update;
         DROP TRIGGER auth_version_acl_delete;
         DROP TABLE auth_version;
         DROP TABLE meta;
         DROP TABLE secrets;
         UPDATE users SET scram = 'SCRAM-SHA-256$4096:c2FsdA==$old:old';
         PRAGMA user_version = 3;",
    )
    .unwrap();
}

fn assert_migrated_without_scram(path: &Path) {
    let mut store = open(path);
    let state = store.auth_state().unwrap();
    assert_eq!(
        state.users.keys().collect::<Vec<_>>(),
        ["alice", "bob"],
        "the users stay"
    );
    assert!(state.scram.is_empty(), "{:?}", state.scram);
    assert_eq!(state.acl, [rule("user alice", "read", "a/#")]);
    // The new tables work: the triggers, meta, secrets.
    let before = state.version;
    store.apply(&[user("carol", "h3")]).unwrap();
    assert!(store.auth_version().unwrap() > before);
    store.set_meta("k", Some("v")).unwrap();
    assert_eq!(store.secret_or_insert("s", [9; 32]).unwrap(), [9; 32]);
    // And SCRAM credentials can be set again.
    store.apply(&[scram("alice", "SCRAM-SHA-256$new")]).unwrap();
    drop(store);
    let conn = Connection::open(path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    drop(conn);
    assert_eq!(
        open(path).auth_state().unwrap().scram["alice"],
        "SCRAM-SHA-256$new"
    );
}

fn two_users_and_a_rule(path: &Path) {
    open(path)
        .apply(&[
            user("alice", "h1"),
            scram("alice", "SCRAM-SHA-256$current"),
            user("bob", "h2"),
            StoreOp::AclAdded(rule("user alice", "read", "a/#")),
        ])
        .unwrap();
}

#[test]
fn version_3_database_loses_its_old_scram_credentials_and_keeps_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    two_users_and_a_rule(&path);
    back_to_version_3(&path);
    assert_migrated_without_scram(&path);
}

#[test]
fn version_2_database_loses_its_old_scram_credentials_and_keeps_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    two_users_and_a_rule(&path);
    back_to_version_3(&path);
    Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE sessions DROP COLUMN owner; PRAGMA user_version = 2;")
        .unwrap();
    assert_migrated_without_scram(&path);
}

#[test]
fn version_1_database_gains_the_new_tables_and_keeps_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    two_users_and_a_rule(&path);
    back_to_version_3(&path);
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE sessions DROP COLUMN owner; ALTER TABLE users DROP COLUMN scram;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    assert_migrated_without_scram(&path);
}

#[cfg(unix)]
mod modes {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn beside(path: &Path, suffix: &str) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    #[test]
    fn a_new_database_and_its_wal_and_shm_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let mut store = open(&path);
        store.apply(&[user("alice", "h")]).unwrap();
        let reader = store.reader();
        assert!(reader.user_exists("alice").unwrap());
        for file in [path.clone(), beside(&path, "-wal"), beside(&path, "-shm")] {
            assert!(file.exists(), "{}", file.display());
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn an_existing_database_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        open(&path).apply(&[user("alice", "h")]).unwrap();
        assert_eq!(mode(&path), 0o640);
        drop(open(&path));
        assert_eq!(mode(&path), 0o640);
    }
}
