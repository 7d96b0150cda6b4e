//! What `SqliteStore::open` does with the files it is given: it creates, reopens and migrates
//! databases, and refuses (without touching them) files it must not use.

use std::fs;
use std::path::{Path, PathBuf};

use mqtt5_store::{Error, MemoryStore, SqliteOptions, SqliteStore, Store, StoreOp, Synchronous};
use rusqlite::Connection;

use crate::fixture::{connected, delivery, full_publish, publish, save, stored, subscribed};

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mqtt5.db")
}

fn open(path: &Path) -> Result<SqliteStore, Error> {
    SqliteStore::open(path, SqliteOptions::default())
}

/// A store with something in every table, closed.
fn populated(path: &Path) {
    let mut store = open(path).unwrap();
    store
        .apply(&[
            connected("c", Some("alice"), 1),
            save("a"),
            subscribed("a", "t/#"),
            stored(1, "t/1"),
            delivery("a", 0, 1, mqtt5_store::DeliveryState::Queued),
            StoreOp::RetainSet {
                qos: full_publish().qos(),
                message: full_publish(),
                expires_at_ms: None,
            },
            StoreOp::UserSet {
                username: "alice".into(),
                password_hash: "h".into(),
            },
        ])
        .unwrap();
}

fn wal(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Deterministic bytes that are no SQLite header.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn assert_corrupt(result: Result<SqliteStore, Error>, path: &Path) {
    match result {
        Err(Error::Corrupt { path: p, detail }) => {
            assert_eq!(p, path.display().to_string());
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn garbage_file_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let bytes = garbage(4096);
    fs::write(&path, &bytes).unwrap();
    assert_corrupt(open(&path), &path);
    assert_eq!(fs::read(&path).unwrap(), bytes);
    // Nothing was created beside it either.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    // And a second attempt says the same.
    assert_corrupt(open(&path), &path);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn damaged_database_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path);
    assert!(
        !wal(&path).exists(),
        "closing the store checkpoints the WAL"
    );
    let mut bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 3 * 4096);
    // Keep page 1 (the header and the schema), scramble every other page.
    let scrambled = garbage(bytes.len() - 4096);
    bytes[4096..].copy_from_slice(&scrambled);
    fs::write(&path, &bytes).unwrap();
    assert_corrupt(open(&path), &path);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn sqlite_database_of_another_application_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            .unwrap();
    }
    let bytes = fs::read(&path).unwrap();
    assert_corrupt(open(&path), &path);
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // The same with an application id of its own.
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "application_id", 7).unwrap();
    drop(conn);
    let bytes = fs::read(&path).unwrap();
    assert_corrupt(open(&path), &path);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let bytes = fs::read(&path).unwrap();
    match open(&path) {
        Err(Error::NewerSchema {
            path: p,
            found,
            supported,
        }) => {
            assert_eq!(p, path.display().to_string());
            assert_eq!((found, supported), (99, SqliteStore::SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn missing_directory_is_a_storage_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("mqtt5.db");
    let result = open(&path);
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn directory_in_place_of_the_file_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = open(dir.path());
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
}

#[cfg(unix)]
#[test]
fn unreadable_file_is_a_storage_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&path).is_ok() {
        // Running with privileges that ignore file modes (root): nothing to test.
        return;
    }
    let result = open(&path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
}

#[test]
fn new_database_has_the_schema_version_wal_and_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = open(&path).unwrap();
    assert_eq!(store.path(), path);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    assert_eq!(version, 4);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in [
        "acl",
        "auth_version",
        "clients",
        "deliveries",
        "incoming_qos2",
        "messages",
        "meta",
        "retained",
        "secrets",
        "sessions",
        "subscriptions",
        "users",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
}

#[test]
fn version_1_database_is_migrated_keeping_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path);
    // Take the file back to version 1: no version 4 tables, the users table without its
    // `scram` column, sessions without owners.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER auth_version_users_insert; DROP TRIGGER auth_version_users_update;
             DROP TRIGGER auth_version_users_delete; DROP TRIGGER auth_version_acl_insert;
             DROP TRIGGER auth_version_acl_update; DROP TRIGGER auth_version_acl_delete;
             DROP TABLE auth_version; DROP TABLE meta; DROP TABLE secrets;
             ALTER TABLE users DROP COLUMN scram; ALTER TABLE sessions DROP COLUMN owner;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut store = open(&path).unwrap();
    let state = store.recover().unwrap();
    assert_eq!(state.users["alice"], "h");
    assert!(state.scram.is_empty());
    // A session stored before owners were recorded has none.
    assert_eq!(state.sessions["a"].record.owner, None);
    store
        .apply(&[StoreOp::UserScramSet {
            username: "alice".into(),
            credentials: "SCRAM-SHA-256$x".into(),
        }])
        .unwrap();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    drop(conn);
    assert_eq!(
        open(&path).unwrap().recover().unwrap().scram["alice"],
        "SCRAM-SHA-256$x"
    );
}

#[test]
fn empty_file_becomes_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    fs::write(&path, b"").unwrap();
    let mut store = open(&path).unwrap();
    store.apply(&[save("a")]).unwrap();
    drop(store);
    assert!(
        open(&path)
            .unwrap()
            .recover()
            .unwrap()
            .sessions
            .contains_key("a")
    );
}

#[test]
fn reopening_keeps_the_data_in_every_synchronous_mode() {
    for synchronous in [Synchronous::Full, Synchronous::Normal, Synchronous::Off] {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let options = SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        };
        let mut store = SqliteStore::open(&path, options).unwrap();
        store.apply(&[save("a"), subscribed("a", "t/#")]).unwrap();
        let before = store.recover().unwrap();
        drop(store);
        // Opened again with other options: they belong to the connection, not the file.
        let mut store = open(&path).unwrap();
        assert_eq!(store.recover().unwrap(), before, "{synchronous:?}");
    }
    assert_eq!(SqliteOptions::default().synchronous, Synchronous::Full);
}

#[test]
fn reader_sees_committed_batches_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut store = open(&path).unwrap();
    let reader = store.reader();
    store.apply(&[save("a"), subscribed("a", "t/#")]).unwrap();
    let expected = store.recover().unwrap();
    let seen = std::thread::spawn(move || reader.snapshot().unwrap())
        .join()
        .unwrap();
    assert_eq!(seen, expected);
}

#[test]
fn checkpoint_empties_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut store = open(&path).unwrap();
    store.apply(&[save("a")]).unwrap();
    assert!(fs::metadata(wal(&path)).unwrap().len() > 0);
    store.checkpoint().unwrap();
    assert_eq!(fs::metadata(wal(&path)).unwrap().len(), 0);
    assert!(store.recover().unwrap().sessions.contains_key("a"));
}

#[test]
fn full_database_refuses_the_batch_then_recovers_and_accepts_more_when_raised() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let options = SqliteOptions {
        max_size: Some(256 * 1024),
        ..SqliteOptions::default()
    };
    let mut store = SqliteStore::open(&path, options).unwrap();
    let mut model = MemoryStore::new();
    let batch = |n: u64| {
        let mut message = publish("big", b"");
        message.set_payload(vec![0x5A; 16 * 1024]);
        StoreOp::MessageStored {
            id: n,
            qos: message.qos(),
            message,
            expires_at_ms: None,
        }
    };
    let mut refused = None;
    for n in 0..64 {
        let ops = [batch(n), save(&format!("s{n}"))];
        match store.apply(&ops) {
            Ok(()) => model.apply(&ops).unwrap(),
            Err(Error::StorageFull(_)) => {
                refused = Some(ops);
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let refused = refused.expect("256 KiB should fill up within 1 MiB of messages");
    // Nothing of the refused batch, everything before it.
    assert_eq!(store.recover().unwrap(), model.recover().unwrap());
    // Small ops still fit or are refused cleanly: never half-applied.
    let small = [StoreOp::MessageDeleted { id: 0 }];
    match store.apply(&small) {
        Ok(()) => model.apply(&small).unwrap(),
        Err(Error::StorageFull(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    assert_eq!(store.recover().unwrap(), model.recover().unwrap());

    store.set_max_size(None).unwrap();
    store.apply(&refused).unwrap();
    model.apply(&refused).unwrap();
    let expected = model.recover().unwrap();
    assert_eq!(store.recover().unwrap(), expected);
    drop(store);
    assert_eq!(open(&path).unwrap().recover().unwrap(), expected);
}

#[test]
fn message_the_codec_cannot_carry_is_refused_by_apply_not_found_by_recover() {
    use mqtt5_codec::{PublishProperties, TopicName};

    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut store = open(&path).unwrap();
    store.apply(&[save("a")]).unwrap();
    let before = store.recover().unwrap();

    // Subscription Identifiers are Variable Byte Integers: at most 268,435,455.
    let mut huge_identifier = publish("t", b"x");
    huge_identifier.properties = PublishProperties {
        subscription_identifiers: vec![std::num::NonZeroU32::MAX],
        ..PublishProperties::default()
    }
    .into();
    // An empty topic needs a topic alias.
    let no_topic = mqtt5_codec::Publish::new(TopicName::empty(), "x");
    let mut no_will_topic = crate::fixture::full_will();
    no_will_topic.topic = TopicName::empty();
    let refused = [
        StoreOp::MessageStored {
            id: 1,
            qos: huge_identifier.qos(),
            message: huge_identifier,
            expires_at_ms: None,
        },
        StoreOp::RetainSet {
            qos: no_topic.qos(),
            message: no_topic,
            expires_at_ms: None,
        },
        StoreOp::SessionSaved(mqtt5_store::SessionRecord {
            will: Some(no_will_topic),
            ..crate::fixture::session("a")
        }),
    ];
    for op in refused {
        let result = store.apply(&[save("b"), op]);
        assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    }
    drop(store);
    assert_eq!(open(&path).unwrap().recover().unwrap(), before);
}
