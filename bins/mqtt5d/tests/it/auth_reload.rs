//! Users, access rules and SCRAM credentials in the database while the broker runs: `mqtt5d
//! user` and `mqtt5d acl` change them from another process, say whether the running broker
//! applied the change, and the broker's next CONNECT, PUBLISH and SUBSCRIBE follow it. Also:
//! what `user add` stores for SCRAM, the fake SCRAM salt across restarts, and the modes of the
//! files the broker and the commands create.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::{Decoder, MqttString, Packet, PacketType, ProtocolVersion, QoS};
use mqtt5_store::{SqliteOptions, SqliteStore, Store};

use crate::conformance::{connect, publish, reason_of, subscribe};
use crate::harness::*;

/// The longest any one wait may take: a liveness bound, never an expectation.
const LIVENESS: Duration = Duration::from_secs(60);

/// What `mqtt5d user` and `mqtt5d acl` print when the running broker applied their change.
fn applied_line(broker: &Mqtt5d) -> String {
    format!("applied by the running broker (pid {})", broker.pid())
}

/// Runs `mqtt5d --data-dir DIR [--config CONFIG] ARGS…`, with `stdin` on its standard input;
/// returns whether it succeeded, and its stdout and stderr.
fn cli(data_dir: &Path, config: Option<&Path>, args: &[&str], stdin: &str) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mqtt5d"));
    command.args(["--data-dir", &data_dir.display().to_string()]);
    if let Some(config) = config {
        command.args(["--config", &config.display().to_string()]);
    }
    cli_run(command.args(args), stdin)
}

fn cli_run(command: &mut Command, stdin: &str) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mqtt5d runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let end = Instant::now() + LIVENESS;
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < end, "{command:?} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `mqtt5d user add NAME --password-stdin`; returns its output.
fn add_user(data_dir: &Path, config: Option<&Path>, name: &str, password: &str) -> String {
    let (ok, out) = cli(
        data_dir,
        config,
        &["user", "add", name, "--password-stdin"],
        &format!("{password}\n"),
    );
    assert!(ok, "user add {name}: {out}");
    out
}

/// Runs a `user` or `acl` command that must succeed; returns its output.
fn admin(data_dir: &Path, config: Option<&Path>, args: &[&str]) -> String {
    let (ok, out) = cli(data_dir, config, args, "");
    assert!(ok, "{args:?}: {out}");
    out
}

/// A raw MQTT 5 client.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Client {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(LIVENESS)).expect("timeout");
        Self {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(ProtocolVersion::V5),
        }
    }

    fn send(&mut self, packet: impl Into<Packet>) {
        let mut out = BytesMut::new();
        packet.into().encode(ProtocolVersion::V5, &mut out);
        self.stream.write_all(&out).expect("write");
    }

    /// The next packet; panics if the broker closes the connection first.
    fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).expect("a valid packet") {
                return p;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The reason code of the next packet of type `kind`, skipping others (messages the
    /// client receives).
    fn reason(&mut self, kind: PacketType) -> u8 {
        loop {
            let p = self.recv();
            if p.packet_type() == kind {
                return reason_of(&p).expect("a reason code");
            }
        }
    }
}

/// Connects as `user` with `password`; returns the client and the CONNACK's reason code.
fn connect_as(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> (Client, u8) {
    let mut c = connect(client_id);
    c.username = Some(MqttString::try_from(user).expect("a user name"));
    c.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    let mut client = Client::open(addr);
    client.send(c);
    let reason = client.reason(PacketType::ConnAck);
    (client, reason)
}

#[test]
fn removed_user_is_refused_at_the_next_connect_without_a_restart() {
    let dir = temp_dir();
    let out = add_user(dir.path(), None, "alice", "alice-pw");
    assert!(
        out.contains("no broker is running on this database"),
        "{out}"
    );
    add_user(dir.path(), None, "bob", "bob-pw");
    let mut broker = Mqtt5d::start(dir.path(), &[]);
    let (_alice, reason) = connect_as(broker.addr, "a1", "alice", "alice-pw");
    assert_eq!(reason, 0x00);

    let out = admin(dir.path(), None, &["user", "remove", "alice"]);
    assert!(out.contains("user alice removed"), "{out}");
    assert!(out.contains(&applied_line(&broker)), "{out}");
    let (_, reason) = connect_as(broker.addr, "a2", "alice", "alice-pw");
    assert_eq!(reason, 0x86, "alice is gone");
    let (_bob, reason) = connect_as(broker.addr, "b1", "bob", "bob-pw");
    assert_eq!(reason, 0x00, "bob stays");

    // The last user removed: user names are still checked, and refused.
    let out = admin(dir.path(), None, &["user", "remove", "bob"]);
    assert!(out.contains(&applied_line(&broker)), "{out}");
    let (_, reason) = connect_as(broker.addr, "b2", "bob", "bob-pw");
    assert_eq!(reason, 0x86, "bob is gone too");

    // A user added while it runs can connect.
    let out = add_user(dir.path(), None, "carol", "carol-pw");
    assert!(out.contains(&applied_line(&broker)), "{out}");
    let (_, reason) = connect_as(broker.addr, "c1", "carol", "carol-pw");
    assert_eq!(reason, 0x00);

    // Stopped, the broker no longer claims the database.
    assert!(broker.stop().success());
    let out = add_user(dir.path(), None, "dave", "dave-pw");
    assert!(
        out.contains("no broker is running on this database"),
        "{out}"
    );
}

#[test]
fn acl_change_applies_to_the_next_publish_and_subscribe_of_a_connected_client() {
    let dir = temp_dir();
    let config = dir.path().join("acl.toml");
    std::fs::write(&config, "[auth]\nuse_database_acl = true\n").expect("write");
    let config = Some(config.as_path());
    add_user(dir.path(), config, "alice", "pw");
    admin(
        dir.path(),
        config,
        &["acl", "add", "user:alice", "readwrite", "a/#"],
    );
    let mut broker = Mqtt5d::start(
        dir.path(),
        &[
            "--config",
            &dir.path().join("acl.toml").display().to_string(),
        ],
    );
    let (mut alice, reason) = connect_as(broker.addr, "alice-1", "alice", "pw");
    assert_eq!(reason, 0x00);
    alice.send(subscribe(1, "b/#", QoS::AtMostOnce));
    assert_eq!(alice.reason(PacketType::SubAck), 0x87);
    alice.send(publish("b/x", b"1", QoS::AtLeastOnce, 2));
    assert_eq!(alice.reason(PacketType::PubAck), 0x87);

    let out = admin(
        dir.path(),
        config,
        &["acl", "add", "user:alice", "readwrite", "b/#"],
    );
    assert!(out.contains("rule added"), "{out}");
    assert!(out.contains(&applied_line(&broker)), "{out}");
    alice.send(subscribe(3, "b/#", QoS::AtMostOnce));
    assert_eq!(alice.reason(PacketType::SubAck), 0x00);
    alice.send(publish("b/x", b"2", QoS::AtLeastOnce, 4));
    assert_eq!(alice.reason(PacketType::PubAck), 0x00);

    let out = admin(
        dir.path(),
        config,
        &["acl", "remove", "user:alice", "readwrite", "b/#"],
    );
    assert!(out.contains("rule removed"), "{out}");
    assert!(out.contains(&applied_line(&broker)), "{out}");
    alice.send(publish("b/x", b"3", QoS::AtLeastOnce, 5));
    assert_eq!(alice.reason(PacketType::PubAck), 0x87);
    alice.send(subscribe(6, "b/y", QoS::AtMostOnce));
    assert_eq!(alice.reason(PacketType::SubAck), 0x87);
    assert!(broker.stop().success());
}

/// The server-first-message of a SCRAM-SHA-256 exchange that `user` starts.
fn scram_server_first(addr: SocketAddr, user: &str) -> String {
    let mut c = connect("scram-probe");
    c.properties.authentication_method = Some(MqttString::try_from("SCRAM-SHA-256").expect("m"));
    c.properties.authentication_data = Some(Bytes::from(format!("n,,n={user},r=probe-nonce")));
    let mut client = Client::open(addr);
    client.send(c);
    match client.recv() {
        Packet::Auth(a) => String::from_utf8(
            a.properties
                .authentication_data
                .expect("authentication data")
                .to_vec(),
        )
        .expect("UTF-8"),
        other => panic!("not an AUTH: {other:?}"),
    }
}

/// The `s=` and `i=` attributes of a server-first-message.
fn salt_and_iterations(server_first: &str) -> (String, String) {
    let attr = |name: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {server_first:?}"))
            .to_owned()
    };
    (attr("s="), attr("i="))
}

#[test]
fn unknown_users_scram_salt_is_the_same_after_a_restart() {
    let dir = temp_dir();
    let config = dir.path().join("scram.toml");
    std::fs::write(&config, "[auth]\nscram_sha_256 = true\n").expect("write");
    let config = config.display().to_string();

    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config]);
    let (salt, iterations) = salt_and_iterations(&scram_server_first(broker.addr, "mallory"));
    let (other, _) = salt_and_iterations(&scram_server_first(broker.addr, "eve"));
    assert_ne!(salt, other, "each unknown user has a salt of its own");
    assert_eq!(iterations, "100000");
    assert!(broker.stop().success());

    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config]);
    let after = salt_and_iterations(&scram_server_first(broker.addr, "mallory"));
    assert_eq!(after, (salt.clone(), iterations.clone()), "after a restart");
    assert!(broker.stop().success());

    // A broker with durability = "memory" reads the secret from the same database.
    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config, "--durability", "memory"]);
    let memory = salt_and_iterations(&scram_server_first(broker.addr, "mallory"));
    assert_eq!(memory, (salt, iterations), "in memory mode");
    assert!(broker.stop().success());
}

#[test]
fn user_add_stores_scram_credentials_only_with_scram_on_and_with_their_own_salt() {
    let dir = temp_dir();
    add_user(dir.path(), None, "plain", "pw1");
    let config = dir.path().join("scram.toml");
    std::fs::write(&config, "[auth]\nscram_sha_256 = true\n").expect("write");
    add_user(dir.path(), Some(&config), "salted", "pw2");

    let mut store = SqliteStore::open(db_path(dir.path()), SqliteOptions::default()).expect("open");
    let state = store.auth_state().expect("read");
    assert_eq!(state.users.len(), 2);
    assert!(
        !state.scram.contains_key("plain"),
        "no SCRAM credentials with scram_sha_256 = false"
    );
    let scram: mqtt5_broker::ScramCredentials =
        state.scram["salted"].parse().expect("SCRAM credentials");
    assert!(scram.iterations() >= 100_000, "{scram:?}");
    assert_eq!(scram.salt().len(), 16);
    // The argon2id hash's salt is the fourth `$` field of its PHC string, base64 unpadded.
    let hash = &state.users["salted"];
    let argon2_salt = hash.split('$').nth(4).expect("a PHC salt");
    let argon2_salt = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(argon2_salt)
            .expect("base64")
    };
    assert_ne!(scram.salt(), argon2_salt.as_slice(), "a salt of its own");

    // And SCRAM-SHA-256 logs the user in with it: the server-first-message carries its salt
    // and iteration count.
    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config.display().to_string()]);
    let (salt, iterations) = salt_and_iterations(&scram_server_first(broker.addr, "salted"));
    let stored_salt = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(scram.salt())
    };
    assert_eq!(
        (salt, iterations),
        (stored_salt, scram.iterations().to_string())
    );
    assert!(broker.stop().success());
}

#[test]
fn user_and_acl_commands_work_with_durability_memory() {
    let dir = temp_dir();
    let config = dir.path().join("memory.toml");
    std::fs::write(
        &config,
        "[storage]\ndurability = \"memory\"\n[auth]\nuse_database_acl = true\n",
    )
    .expect("write");
    let config_arg = config.display().to_string();
    let config = Some(config.as_path());
    add_user(dir.path(), config, "alice", "pw");
    admin(
        dir.path(),
        config,
        &["acl", "add", "user:alice", "readwrite", "a/#"],
    );
    assert_eq!(admin(dir.path(), config, &["user", "list"]).trim(), "alice");

    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config_arg]);
    let (mut alice, reason) = connect_as(broker.addr, "alice-1", "alice", "pw");
    assert_eq!(reason, 0x00);
    alice.send(publish("a/x", b"1", QoS::AtLeastOnce, 1));
    assert_ne!(alice.reason(PacketType::PubAck), 0x87);
    let out = admin(
        dir.path(),
        config,
        &["acl", "remove", "user:alice", "readwrite", "a/#"],
    );
    assert!(out.contains(&applied_line(&broker)), "{out}");
    alice.send(publish("a/x", b"2", QoS::AtLeastOnce, 2));
    assert_eq!(alice.reason(PacketType::PubAck), 0x87);
    let out = admin(dir.path(), config, &["user", "remove", "alice"]);
    assert!(out.contains(&applied_line(&broker)), "{out}");
    let (_, reason) = connect_as(broker.addr, "alice-2", "alice", "pw");
    assert_eq!(reason, 0x86);
    assert!(broker.stop().success());
}

#[cfg(unix)]
mod modes {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    }

    fn beside(path: &Path, suffix: &str) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    #[test]
    fn data_dir_and_database_are_private_under_umask_022() {
        // `user add` creates them.
        let root = temp_dir();
        let data = root.path().join("new").join("data");
        let (ok, out) = cli_run(
            Command::new("sh")
                .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
                .arg(env!("CARGO_BIN_EXE_mqtt5d"))
                .args(["--data-dir", &data.display().to_string()])
                .args(["user", "add", "alice", "--password-stdin"]),
            "pw\n",
        );
        assert!(ok, "{out}");
        assert_eq!(mode(&root.path().join("new")), 0o700);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&db_path(&data)), 0o600);

        // The broker creates them too, and SQLite's -wal and -shm files beside the database
        // take its mode.
        let data = root.path().join("broker");
        let mut broker = Mqtt5d::start_under_umask(&data, &["--listen", "127.0.0.1:0"], "022");
        assert_eq!(mode(&data), 0o700);
        let db = db_path(&data);
        assert_eq!(mode(&db), 0o600);
        for file in [beside(&db, "-wal"), beside(&db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        assert!(
            !broker.lines.iter().any(|l| l.contains("other users")),
            "no warning about private files:\n{}",
            broker.lines.join("\n")
        );
        serving(&broker);
        assert!(broker.stop().success());
    }

    #[test]
    fn data_dir_others_can_read_is_warned_about_and_left_as_it_is() {
        let root = temp_dir();
        let data = root.path().join("shared");
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut broker = Mqtt5d::start(&data, &[]);
        let warning = broker
            .wait_for_log("can be read or written by other users", LIVENESS)
            .expect("a warning");
        assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
        assert!(warning.contains(&data.display().to_string()), "{warning}");
        assert!(warning.contains("data directory"), "{warning}");
        serving(&broker);
        assert!(broker.stop().success());
        assert_eq!(mode(&data), 0o755);
    }
}
