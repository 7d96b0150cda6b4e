//! Security end to end: the real binary, real clients (mosquitto_pub / mosquitto_sub, paho-mqtt
//! over WebSockets) and bare sockets ([`Raw`]).
//!
//! - Sessions belong to the user who created them; another user's CONNECT for the same
//!   Client Identifier is refused and takes nothing over.
//! - Retained messages and shared-subscription messages obey the access rules, from the ACL
//!   file and from the database.
//! - The broker's memory is bounded in bytes: a subscriber that does not read, retained
//!   messages, long topic filters, many filters, queued messages over all sessions. Each test
//!   measures the broker's resident set (`VmRSS`) before and after.
//! - A flood of refused clients adds a bounded amount of log; refusal lines are clipped and
//!   rate-limited; idle sockets from one address cannot take every connection slot.
//! - Passwords stay out of a trace log, and their checks stay off the event loop.
//!
//! Every wait is for something observable (a client's line, a packet, a closed socket, a log
//! line, a metric) within a generous liveness bound; no test bounds how long anything takes.
//! Every loop has a fixed count.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt5_codec::{
    ConnAckReason, Connect, Delivery, MqttString, Packet, PacketId, PubAck, PubAckReason, Publish,
    SubAckReason, TopicName,
};

use crate::harness::*;
use crate::hostile::{Raw, assert_service, connect_packet, rss_kib, start_with};

/// The longest any one wait for a client, a packet, a log line or a metric may take.
const LIVE: Duration = Duration::from_secs(30);

/// One MiB.
const MIB: usize = 1 << 20;

/// The password of test user `name`.
fn password(name: &str) -> String {
    format!("pw-{name}")
}

/// The words of a command line (none holds white space).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Adds each user with [`password`].
fn add_users(dir: &Path, names: &[&str]) {
    for name in names {
        add_user(dir, name, &password(name));
    }
}

/// The ACL shared by the retained and shared-subscription tests: anonymous clients may
/// publish anything; alice may read everything but `secret/#`; bob may read everything.
const ACL_FILE: &str = "\
topic readwrite #

user alice
topic read #
topic deny secret/#

user bob
topic read #
";

/// The same rules for `mqtt5d acl add`: (scope, access, topic).
const ACL_ROWS: &[(&str, &str, &str)] = &[
    ("anonymous", "readwrite", "#"),
    ("user:alice", "read", "#"),
    ("user:alice", "deny", "secret/#"),
    ("user:bob", "read", "#"),
];

/// Writes [`ACL_FILE`] into `dir`; returns the `[auth]` table that uses it.
fn acl_file_config(dir: &Path) -> String {
    let path = dir.join("acl.txt");
    std::fs::write(&path, ACL_FILE).expect("write the ACL file");
    format!(
        "[auth]\nacl_file = \"{}\"\n",
        path.to_str().expect("a UTF-8 path")
    )
}

// ---- Clients -------------------------------------------------------------------------------

/// A running `mosquitto_sub -d`, with every line it printed (stdout and stderr) so far.
struct Sub {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Sub {
    /// Starts `mosquitto_sub -d` with `args`.
    fn spawn(port: &str, args: &[&str]) -> Self {
        // stdbuf: mosquitto_sub's output is block-buffered on a pipe otherwise.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "-eL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-d",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub runs");
        let (tx, rx) = mpsc::channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for stream in [out, err] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Starts `mosquitto_sub -d` with `args` and waits until its SUBACK arrives.
    fn start(port: &str, args: &[&str]) -> Self {
        let mut sub = Self::spawn(port, args);
        if sub.wait_for("received SUBACK").is_none() {
            panic!(
                "mosquitto_sub {args:?} got no SUBACK:\n{}",
                sub.lines.join("\n")
            );
        }
        sub
    }

    /// The index of the first line containing `needle`, waiting (bounded) for more lines.
    fn wait_for(&mut self, needle: &str) -> Option<usize> {
        if let Some(i) = self.lines.iter().position(|l| l.contains(needle)) {
            return Some(i);
        }
        let end = Instant::now() + LIVE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let line = self.rx.recv_timeout(left).ok()?;
            let found = line.contains(needle);
            self.lines.push(line);
            if found {
                return Some(self.lines.len() - 1);
            }
        }
        None
    }

    /// Like [`Sub::wait_for`], panicking with the lines so far when the line does not come.
    fn expect(&mut self, needle: &str) -> usize {
        self.wait_for(needle).unwrap_or_else(|| {
            panic!(
                "mosquitto_sub never printed {needle:?}; it printed:\n{}",
                self.lines.join("\n")
            )
        })
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mosquitto_sub` to completion (bounded); returns its exit status and output.
fn mosquitto_sub_once(port: &str, args: &[&str]) -> (ExitStatus, String) {
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", port])
            .args(args),
        LIVE,
    );
    (status, format!("{out}{err}"))
}

/// Runs `mosquitto_pub -l` with these lines on its standard input; it must succeed.
fn mosquitto_pub_lines(port: &str, args: &[&str], lines: &[String]) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", port, "-l"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");
    let mut input = child.stdin.take().expect("piped");
    input
        .write_all(lines.join("\n").as_bytes())
        .and_then(|()| input.write_all(b"\n"))
        .expect("feed mosquitto_pub");
    drop(input);
    let end = Instant::now() + LIVE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            assert!(
                status.success(),
                "mosquitto_pub -l {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mosquitto_pub -l {args:?} did not finish within {LIVE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A QoS 1 PUBLISH of `payload` on `topic` (retained or not); returns the PUBACK's reason.
fn publish_qos1(
    client: &mut Raw,
    id: u16,
    topic: &str,
    payload: &Bytes,
    retain: bool,
) -> PubAckReason {
    let mut publish = Publish::new(
        TopicName::try_from(topic).expect("a topic"),
        payload.clone(),
    );
    publish.delivery = Delivery::AtLeastOnce(PacketId::new(id).expect("non-zero"));
    publish.retain = retain;
    client.send(&Packet::from(publish));
    match client.recv() {
        Some(Packet::PubAck(ack)) => {
            assert_eq!(ack.packet_id.get(), id);
            ack.reason
        }
        other => panic!("expected a PUBACK, got {other:?}"),
    }
}

/// Sends `connect` on a new connection; returns the CONNACK's reason, once the broker has
/// closed a refused connection.
fn connack_reason(addr: SocketAddr, connect: Connect) -> ConnAckReason {
    let mut client = Raw::open(addr);
    client.send(&Packet::from(connect));
    let reason = match client.recv() {
        Some(Packet::ConnAck(ack)) => ack.reason,
        other => panic!("expected a CONNACK, got {other:?}"),
    };
    if reason != ConnAckReason::Success {
        client.expect_closed();
    }
    reason
}

/// A CONNECT as `user` with `password`.
fn login(client_id: &str, user: &str, password: &str) -> Connect {
    Connect {
        username: Some(MqttString::try_from(user).expect("a user name")),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        ..connect_packet(client_id)
    }
}

/// Asserts that the broker's resident set grew by less than `limit` bytes.
fn assert_rss_within(before_kib: u64, after_kib: u64, limit: usize, what: &str) {
    let grown = after_kib.saturating_sub(before_kib) * 1024;
    assert!(
        grown < limit as u64,
        "{what}: the broker's RSS grew by {} MiB ({before_kib} KiB to {after_kib} KiB), \
         more than {} MiB",
        grown / MIB as u64,
        limit / MIB
    );
    eprintln!(
        "{what}: RSS {before_kib} KiB -> {after_kib} KiB (+{} MiB)",
        grown / MIB as u64
    );
}

// ---- Sessions belong to their user ---------------------------------------------------------

/// [MQTT-3.1.4-2] alice's persistent session is hers: carol's CONNECT with its Client
/// Identifier is refused "not authorised" (MQTT 5 reason 0x87, 3.1.1 return code 5), with
/// Clean Start 1 as with 0, and discards nothing: alice comes back to the message bob sent
/// meanwhile. While alice is connected, carol's attempt does not disconnect her.
#[test]
fn a_session_belongs_to_its_user_and_another_user_cannot_take_it() {
    let dir = temp_dir();
    add_users(dir.path(), &["alice", "bob", "carol"]);
    let mut broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.port();
    let alice = words("-i alice-phone -u alice -P pw-alice -V mqttv5 -c -x 3600 -q 1 -t home/#");
    // alice creates her session with a QoS 1 subscription, and leaves.
    let (status, out) = mosquitto_sub_once(&port, &[&alice[..], &["-E"]].concat());
    assert!(status.success(), "alice's first connection: {out}");
    mosquitto_pub(&port, &words("-u bob -P pw-bob -q 1 -t home/door -m open"));

    // carol, with alice's Client Identifier: refused, whatever her version and Clean Start.
    let carol = words("-i alice-phone -u carol -P pw-carol -t home/# -E");
    for (version, persistent, code, text) in [
        ("mqttv5", false, 0x87, "Not authorized"),
        ("mqttv5", true, 0x87, "Not authorized"),
        ("mqttv311", false, 5, "not authorised"),
        ("mqttv311", true, 5, "not authorised"),
    ] {
        let mut args = carol.to_vec();
        args.extend(["-V", version]);
        if persistent {
            args.push("-c");
        }
        let (status, out) = mosquitto_sub_once(&port, &args);
        assert!(
            status.code() == Some(code) && out.contains(text),
            "carol ({version}, persistent {persistent}) got {status}: {out}"
        );
    }
    broker
        .wait_for_log("belongs to another identity", LIVE)
        .expect("the broker logged the refusal");

    // alice comes back to her session and the message queued for her.
    let mut phone = Sub::spawn(&port, &[&alice[..], &["-v"]].concat());
    phone.expect("home/door open");

    // carol again, while alice is connected: refused, and alice stays connected.
    let (status, out) = mosquitto_sub_once(&port, &[&carol[..], &["-V", "mqttv5"]].concat());
    assert!(status.code() == Some(0x87), "carol got {status}: {out}");
    mosquitto_pub(
        &port,
        &words("-u bob -P pw-bob -q 1 -t home/window -m closed"),
    );
    let at = phone.expect("home/window closed");
    let connects = phone.lines[..at]
        .iter()
        .filter(|l| l.contains("sending CONNECT"))
        .count();
    assert_eq!(
        connects,
        1,
        "alice was disconnected and connected again:\n{}",
        phone.lines.join("\n")
    );
    drop(phone);
    assert!(broker.stop().success());
}

// ---- Access rules on retained and shared deliveries ---------------------------------------

/// alice (denied `secret/#`) subscribes `#`, `+/+` and `+/r1` in MQTT 5 and 3.1.1: the
/// retained `public/r1` arrives, `secret/r1` and `secret/deep/r1` never do ([MQTT-3.3.1-9]
/// sends the retained messages that match, of those the client may receive). Retained
/// messages are sent at subscribe time, before any later live message: a live marker ends
/// what is checked.
fn retained_messages_obey_the_rules(broker: &Mqtt5d) {
    let port = broker.port();
    for (topic, payload) in [
        ("secret/r1", "hidden"),
        ("secret/deep/r1", "hidden"),
        ("public/r1", "shown"),
    ] {
        mosquitto_pub(&port, &["-q", "1", "-r", "-t", topic, "-m", payload]);
    }
    let mut n = 0;
    for version in ["mqttv5", "mqttv311"] {
        for filter in ["#", "+/+", "+/r1"] {
            n += 1;
            let mut args = words("-u alice -P pw-alice -q 1 -v -V");
            args.extend([version, "-t", filter]);
            let mut sub = Sub::start(&port, &args);
            let marker = format!("marker-{n}");
            mosquitto_pub(&port, &["-q", "1", "-t", "mark/r1", "-m", &marker]);
            let at = sub.expect(&format!("mark/r1 {marker}"));
            let before = &sub.lines[..at];
            assert!(
                before.iter().any(|l| l == "public/r1 shown"),
                "{version} {filter}: the allowed retained message did not arrive:\n{}",
                before.join("\n")
            );
            assert!(
                !before.iter().any(|l| l.contains("secret/")),
                "{version} {filter}: a denied retained message arrived:\n{}",
                before.join("\n")
            );
        }
    }
}

#[test]
fn retained_messages_obey_the_acl_file_in_v5_and_v311() {
    let dir = temp_dir();
    add_users(dir.path(), &["alice"]);
    let config = acl_file_config(dir.path());
    let mut broker = start_with(dir.path(), &config);
    retained_messages_obey_the_rules(&broker);
    assert!(broker.stop().success());
}

#[test]
fn retained_messages_obey_the_database_acl_in_v5_and_v311() {
    let dir = temp_dir();
    add_users(dir.path(), &["alice"]);
    for (scope, access, topic) in ACL_ROWS {
        add_acl(dir.path(), scope, access, topic);
    }
    let mut broker = start_with(dir.path(), "[auth]\nuse_database_acl = true\n");
    retained_messages_obey_the_rules(&broker);
    assert!(broker.stop().success());
}

/// [MQTT-4.8.2-2] A shared subscription's message goes to one member: here, one that may
/// read it. alice (denied `secret/#`) and bob share `$share/grp/#`; all 20 QoS 1 messages
/// to `secret/s` reach bob, and so none can reach alice. Both also subscribe `end/#`: the
/// `end/x` sent after the 20 marks the end of what each checks.
#[test]
fn shared_subscription_messages_go_only_to_members_that_may_read_them() {
    const MESSAGES: usize = 20;
    let dir = temp_dir();
    add_users(dir.path(), &["alice", "bob"]);
    let config = acl_file_config(dir.path());
    let mut broker = start_with(dir.path(), &config);
    let port = broker.port();
    let member = |user: &str| {
        let line = format!(
            "-V mqttv5 -i {user} -u {user} -P {} -q 1 -v -t $share/grp/# -t end/#",
            password(user)
        );
        Sub::start(&port, &words(&line))
    };
    let mut alice = member("alice");
    let mut bob = member("bob");
    let payloads: Vec<String> = (1..=MESSAGES).map(|i| format!("s{i}")).collect();
    mosquitto_pub_lines(&port, &["-q", "1", "-t", "secret/s"], &payloads);
    mosquitto_pub(&port, &["-q", "1", "-t", "end/x", "-m", "end"]);

    let at = bob.expect("end/x end");
    let mut got: Vec<&str> = bob.lines[..at]
        .iter()
        .filter_map(|l| l.strip_prefix("secret/s "))
        .collect();
    got.sort_unstable();
    let mut want: Vec<&str> = payloads.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want, "bob gets every message to secret/s");
    let at = alice.expect("end/x end");
    assert!(
        !alice.lines[..at].iter().any(|l| l.contains("secret/")),
        "alice got a message she may not read:\n{}",
        alice.lines.join("\n")
    );
    drop((alice, bob));
    assert!(broker.stop().success());
}

// ---- Memory bounded in bytes ----------------------------------------------------------------

/// A subscriber that never reads, while 300 QoS 1 messages of 1 MiB are published to it:
/// the broker keeps at most `max_queued_bytes` (32 MiB here) for it, dropping the oldest,
/// and its resident set stays far below the 300 MiB it would take to keep them all. The
/// publisher gets every PUBACK. The write buffer may hold 8 MiB, a few messages: what is
/// measured is the session's bound, not the write buffer's closing the connection.
#[test]
fn a_subscriber_that_does_not_read_costs_at_most_max_queued_bytes() {
    const MESSAGES: u16 = 300;
    let dir = temp_dir();
    let broker = start_with(
        dir.path(),
        "write_buffer_limit = 8388608\n\
         [broker]\nmax_packet_size = 2097152\nmax_queued_bytes = 33554432\n",
    );
    let mut stalled = Raw::connect(broker.addr, "stalled");
    assert_eq!(
        stalled.subscribe(1, &["big/#".to_owned()]),
        [SubAckReason::GrantedQoS1]
    );
    let mut publisher = Raw::connect(broker.addr, "big-publisher");
    let before = rss_kib(&broker);
    let payload = Bytes::from(vec![0x5a; MIB]);
    for id in 1..=MESSAGES {
        assert_eq!(
            publish_qos1(&mut publisher, id, "big/t", &payload, false),
            PubAckReason::Success,
            "message {id}"
        );
    }
    let after = rss_kib(&broker);
    assert_rss_within(
        before,
        after,
        128 * MIB,
        "300 MiB for a subscriber that does not read",
    );
    publisher.disconnect();
    assert_service(broker.addr, "after-stalled");
    drop(stalled);
}

/// A message larger than the write buffer limit (1 MiB by default), which a raised
/// `max_packet_size` allows, reaches a subscriber that reads: one packet may take its
/// buffer past the limit; only a client whose buffer is already past it is disconnected.
#[test]
fn a_message_larger_than_the_write_buffer_reaches_a_subscriber_that_reads() {
    const SIZE: usize = 1_500_000;
    let dir = temp_dir();
    let broker = start_with(dir.path(), "[broker]\nmax_packet_size = 4194304\n");
    let port = broker.port();
    let mut sub = Sub::start(&port, &words("-V mqttv5 -q 1 -t large/t"));
    let payload = dir.path().join("payload");
    std::fs::write(&payload, "p".repeat(SIZE)).expect("write the payload");
    mosquitto_pub(
        &port,
        &[
            "-q",
            "1",
            "-t",
            "large/t",
            "-f",
            payload.to_str().expect("UTF-8"),
        ],
    );
    let at = sub.expect("ppppp");
    assert_eq!(sub.lines[at].len(), SIZE, "the message arrives whole");
    let connects = sub
        .lines
        .iter()
        .filter(|l| l.contains("sending CONNECT"))
        .count();
    assert_eq!(connects, 1, "the subscriber was disconnected on the way");
}

/// An anonymous client storing 300 retained messages of 1 MiB: past `max_retained_bytes`
/// (64 MiB here) each is refused with 0x97, and the resident set grows by less than twice
/// the limit, far from the 300 MiB it would take to keep them all.
#[test]
fn retained_messages_past_max_retained_bytes_get_0x97_with_memory_bounded() {
    const MESSAGES: u16 = 300;
    let dir = temp_dir();
    let mut broker = start_with(
        dir.path(),
        "[broker]\nmax_packet_size = 2097152\nmax_retained_bytes = 67108864\n",
    );
    let mut client = Raw::connect(broker.addr, "retainer");
    let before = rss_kib(&broker);
    let payload = Bytes::from(vec![0x72; MIB]);
    let reasons: Vec<PubAckReason> = (1..=MESSAGES)
        .map(|id| publish_qos1(&mut client, id, &format!("r/{id}"), &payload, true))
        .collect();
    let after = rss_kib(&broker);
    let kept = reasons
        .iter()
        .take_while(|r| **r != PubAckReason::QuotaExceeded)
        .count();
    assert!(
        (1..=64).contains(&kept),
        "{kept} retained messages of 1 MiB kept within 64 MiB: {reasons:?}"
    );
    assert!(
        reasons[..kept]
            .iter()
            .all(|r| *r == PubAckReason::NoMatchingSubscribers),
        "{reasons:?}"
    );
    assert!(
        reasons[kept..]
            .iter()
            .all(|r| *r == PubAckReason::QuotaExceeded),
        "every one past the limit is refused: {reasons:?}"
    );
    broker
        .wait_for_log("retained message not kept", LIVE)
        .expect("the broker logged the refusal");
    assert_rss_within(before, after, 128 * MIB, "300 retained messages of 1 MiB");
    client.disconnect();
    assert_service(broker.addr, "after-retained");
    assert!(broker.stop().success());
}

/// One client subscribes 2,000 filters of 60 KB: each is refused with 0x8F (longer than
/// `max_topic_filter_length`, 4,096 bytes). Then 1,000 filters of 4,000 bytes: the first 524
/// fit in `max_subscription_bytes_per_client` (2 MiB) and are granted, the rest get 0x97.
/// The resident set stays bounded throughout.
#[test]
fn long_filters_get_0x8f_and_filters_past_the_budget_0x97_with_memory_bounded() {
    let dir = temp_dir();
    let mut broker = Mqtt5d::start(dir.path(), &[]);
    let mut client = Raw::connect(broker.addr, "filters");
    let before = rss_kib(&broker);
    let long = "x".repeat(60_000);
    for p in 0..200u16 {
        let filters: Vec<String> = (0..10).map(|i| format!("long/{p}-{i}/{long}")).collect();
        assert_eq!(
            client.subscribe(p + 1, &filters),
            [SubAckReason::TopicFilterInvalid; 10],
            "SUBSCRIBE {p}"
        );
    }
    let middle = rss_kib(&broker);
    assert_rss_within(before, middle, 64 * MIB, "2,000 filters of 60 KB");

    let mut reasons = Vec::new();
    for p in 0..10u16 {
        let filters: Vec<String> = (0..100)
            .map(|i| {
                let head = format!("b/{p}-{i:02}/");
                format!("{head}{}", "y".repeat(4_000 - head.len()))
            })
            .collect();
        assert!(filters.iter().all(|f| f.len() == 4_000));
        reasons.extend(client.subscribe(201 + p, &filters));
    }
    let granted = reasons
        .iter()
        .take_while(|r| **r == SubAckReason::GrantedQoS1)
        .count();
    // 524 filters of 4,000 bytes are 2,096,000 bytes; one more would pass 2 MiB.
    assert_eq!(granted, 524, "{reasons:?}");
    assert!(
        reasons[granted..]
            .iter()
            .all(|r| *r == SubAckReason::QuotaExceeded),
        "{reasons:?}"
    );
    client.ping();
    let after = rss_kib(&broker);
    assert_rss_within(before, after, 64 * MIB, "filters past the budget");
    client.disconnect();
    assert_service(broker.addr, "after-filters");
    assert!(broker.stop().success());
}

/// GET /metrics from the endpoint at `addr`: the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(LIVE)).expect("read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

/// The value of metric `name` in a Prometheus text body.
fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Persistent sessions hold queued messages up to `max_queued_bytes_total` over all
/// sessions (16 MiB here): past it, a QoS 1 PUBLISH that would be queued gets PUBACK 0x97
/// and a new persistent session CONNACK 0x97. `mqtt5_queue_memory_full` and
/// `$SYS/broker/queued/bytes` show it, and the resident set stays bounded.
#[test]
fn queued_messages_past_max_queued_bytes_total_get_0x97_and_show_in_metrics_and_sys() {
    const MESSAGES: u16 = 64;
    const LIMIT: u64 = 16 * MIB as u64;
    // The limit is checked before a message is queued: the last one may cross it.
    const ONE: u64 = MIB as u64 + 1024;
    let dir = temp_dir();
    let mut broker = start_with(
        dir.path(),
        "[broker]\nmax_packet_size = 2097152\nmax_queued_bytes_total = 16777216\n\
         sys_interval_secs = 1\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let line = broker
        .wait_for_log("metrics endpoint listening", LIVE)
        .expect("the metrics endpoint started");
    let metrics: SocketAddr = json_field(&line, "addr")
        .expect("its address")
        .parse()
        .expect("a socket address");
    let persistent = |id: &str| {
        let mut c = connect_packet(id);
        c.properties.session_expiry_interval = Some(3600);
        c
    };
    let mut parked = Raw::connect_with(broker.addr, persistent("parked"));
    assert_eq!(
        parked.subscribe(1, &["q/#".to_owned()]),
        [SubAckReason::GrantedQoS1]
    );
    parked.disconnect();
    let mut publisher = Raw::connect(broker.addr, "queue-publisher");
    let before = rss_kib(&broker);
    let payload = Bytes::from(vec![0x71; MIB]);
    let mut reasons = Vec::new();
    for id in 1..=MESSAGES {
        let reason = publish_qos1(&mut publisher, id, "q/x", &payload, false);
        reasons.push(reason);
        if reason == PubAckReason::QuotaExceeded {
            break;
        }
    }
    let after = rss_kib(&broker);
    assert_eq!(
        reasons.last(),
        Some(&PubAckReason::QuotaExceeded),
        "no 0x97 after {MESSAGES} messages of 1 MiB: {reasons:?}"
    );
    assert!(
        reasons.len() <= 17,
        "more than 16 MiB was queued: {reasons:?}"
    );
    assert_eq!(
        connack_reason(broker.addr, persistent("another")),
        ConnAckReason::QuotaExceeded,
        "a new persistent session is refused"
    );
    broker
        .wait_for_log("reached [broker] max_queued_bytes_total", LIVE)
        .expect("the broker logged it");

    // The metrics are rendered at most twice a second: ask until they show it (bounded).
    let mut body = String::new();
    for _ in 0..300 {
        body = scrape(metrics);
        if metric(&body, "mqtt5_queue_memory_full") == Some(1) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&body, "mqtt5_queue_memory_full"), Some(1), "{body}");
    let queued = metric(&body, "mqtt5_queued_bytes").expect("mqtt5_queued_bytes");
    assert!(
        (LIMIT / 2..=LIMIT + ONE).contains(&queued),
        "mqtt5_queued_bytes {queued}"
    );

    // $SYS/broker/queued/bytes, published every second: a value near the limit comes.
    let mut watcher = Raw::connect(broker.addr, "sys-watcher");
    assert_eq!(
        watcher.subscribe(1, &["$SYS/broker/queued/bytes".to_owned()]),
        [SubAckReason::GrantedQoS1]
    );
    let mut seen = Vec::new();
    for _ in 0..30 {
        let p = watcher.expect_publish();
        let value: u64 = std::str::from_utf8(p.payload())
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .expect("a number of bytes");
        if let Some(id) = p.delivery.packet_id() {
            watcher.send(&Packet::from(PubAck::new(id)));
        }
        seen.push(value);
        if (LIMIT / 2..=LIMIT + ONE).contains(&value) {
            break;
        }
    }
    assert!(
        seen.iter().any(|v| (LIMIT / 2..=LIMIT + ONE).contains(v)),
        "$SYS/broker/queued/bytes showed {seen:?}"
    );
    assert_rss_within(before, after, 64 * MIB, "queued messages over all sessions");
    publisher.disconnect();
    watcher.disconnect();
    assert!(broker.stop().success());
}

// ---- Logs and connection slots ---------------------------------------------------------------

/// The `suppressed` count of a JSON log line.
fn suppressed(line: &str) -> Option<u64> {
    let start = line.find("\"suppressed\":")? + "\"suppressed\":".len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// 300 CONNECTs with a 65,000-byte Client Identifier and User Name, refused (no users are
/// configured: any user name is refused), add a bounded amount of log: at most 10 refusal
/// lines from one address (the rest are counted), each showing the strings clipped with
/// their length. Once the minute is over the next refusal line reports how many were left
/// out.
#[test]
fn refused_clients_with_64_kib_strings_add_a_bounded_amount_of_log() {
    const REFUSALS: usize = 300;
    const LONG: usize = 65_000;
    let dir = temp_dir();
    let config = dir.path().join("mqtt5d.toml");
    std::fs::write(&config, "[auth]\nfailed_login_delay_max_ms = 0\n").expect("write the config");
    let mut broker = Mqtt5d::start_logging(
        dir.path(),
        "info",
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("UTF-8"),
        ],
    );
    let addr = broker.addr;
    let start = broker.lines.len();
    let user = "u".repeat(LONG);
    for i in 0..REFUSALS {
        let head = format!("{i:05}");
        let client_id = format!("{head}{}", "c".repeat(LONG - head.len()));
        assert_eq!(
            connack_reason(addr, login(&client_id, &user, "x")),
            ConnAckReason::BadUserNameOrPassword,
            "refusal {i}"
        );
    }
    // Once this client's line is in, every line about the refused ones is.
    let probe = Raw::connect(addr, "after-the-flood");
    broker
        .wait_for_log("after-the-flood", LIVE)
        .expect("the probe's line");
    let lines = &broker.lines[start..];
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    eprintln!("{REFUSALS} refused clients: {bytes} bytes of log");
    assert!(
        bytes < 64 * 1024,
        "{bytes} bytes of log for {REFUSALS} refused clients (they sent {} MB of strings)",
        REFUSALS * 2 * LONG / 1_000_000
    );
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("connection refused"))
        .collect();
    assert!(
        (1..=10).contains(&refused.len()),
        "{} refusal lines from one address",
        refused.len()
    );
    for line in &refused {
        assert_eq!(
            line.matches(&format!("({LONG} bytes)")).count(),
            2,
            "the client identifier and the user name, clipped with their length: {line}"
        );
        assert!(line.len() < 1024, "{line}");
    }
    let written = refused.len();
    probe.disconnect();

    // The next minute: a refusal line reports how many were left out. One refused client
    // and one probe a second, for at most two minutes.
    let mut summary = None;
    for k in 0..120 {
        assert_eq!(
            connack_reason(addr, login(&format!("late-{k}"), "late", "x")),
            ConnAckReason::BadUserNameOrPassword
        );
        let probe_id = format!("probe-{k}");
        let probe = Raw::connect(addr, &probe_id);
        broker
            .wait_for_log(&probe_id, LIVE)
            .expect("the probe's line");
        probe.disconnect();
        summary = broker.lines[start..]
            .iter()
            .filter(|l| l.contains("connection refused"))
            .find_map(|l| suppressed(l).filter(|n| *n > 0));
        if summary.is_some() {
            break;
        }
        thread::sleep(Duration::from_secs(1));
    }
    let summary = summary.expect("a refusal line with a suppressed count");
    assert!(
        summary >= (REFUSALS - written) as u64,
        "{summary} lines reported left out"
    );
    assert!(broker.stop().success());
}

/// A TCP connection from `source` (a loopback address) to `addr`.
fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("a socket");
    bind(&fd, &SocketAddr::new(source, 0)).expect("bind to the source address");
    connect(&fd, &addr).expect("TCP connect");
    TcpStream::from(fd)
}

/// 100 idle TCP connections from 127.0.0.2 against `max_connections = 100`: only 64 (the
/// default `max_connecting_per_address`) are kept while they have not completed CONNECT,
/// the other 36 are closed at once, so a client from 127.0.0.1 still connects. The refusals
/// are logged at most 10 times.
#[test]
fn idle_sockets_from_one_address_do_not_lock_out_another() {
    const IDLE: usize = 100;
    let dir = temp_dir();
    let mut broker = start_with(
        dir.path(),
        "max_connections = 100\n[broker]\nconnect_timeout_secs = 300\n",
    );
    let other: std::net::IpAddr = [127, 0, 0, 2].into();
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| connect_from(other, broker.addr))
        .collect();
    // Accepted after the 100: it gets in.
    let mut outsider = Raw::connect(broker.addr, "outsider");
    outsider.ping();
    broker
        .wait_for_log("outsider", LIVE)
        .expect("the outsider's line");

    // 36 of the idle sockets were closed by the broker (without a byte sent), 64 are open.
    for socket in &idle {
        socket.set_nonblocking(true).expect("non-blocking");
    }
    let mut closed = [false; IDLE];
    let end = Instant::now() + LIVE;
    while closed.iter().filter(|c| **c).count() < IDLE - 64 && Instant::now() < end {
        for (i, mut socket) in idle.iter().enumerate() {
            let mut byte = [0u8; 1];
            match socket.read(&mut byte) {
                Ok(0) => closed[i] = true,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => closed[i] = true,
                Ok(_) => panic!("the broker sent bytes to a socket that sent nothing"),
                Err(_) => {}
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(closed.iter().filter(|c| **c).count(), IDLE - 64);
    let refusals = broker
        .lines
        .iter()
        .filter(|l| l.contains("have not completed CONNECT"))
        .count();
    assert!(
        (1..=10).contains(&refusals),
        "{refusals} refusal lines for {} refused connections",
        IDLE - 64
    );
    drop(idle);
    outsider.disconnect();
    assert!(broker.stop().success());
}

// ---- Passwords -----------------------------------------------------------------------------

/// A paho-mqtt client over a WebSocket that logs in, publishes and receives one message.
const PAHO_WS_LOGIN: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1]); user = sys.argv[2]; password = sys.argv[3]
got = threading.Event(); subscribed = threading.Event(); result = {}
def on_connect(c, u, f, reason, p):
    result["connack"] = reason.value
    c.subscribe("ws/#", qos=1)
def on_subscribe(c, u, mid, reasons, p):
    subscribed.set()
def on_message(c, u, msg):
    result["msg"] = (msg.topic, msg.payload.decode())
    got.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-ws-login", protocol=mqtt.MQTTv5, transport="websockets")
c.ws_set_options(path="/mqtt")
c.username_pw_set(user, password)
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
assert subscribed.wait(20), "no SUBACK"
c.publish("ws/t", "over websocket", qos=1).wait_for_publish(20)
assert got.wait(20), "no message"
c.disconnect(); c.loop_stop()
assert result["connack"] == 0, result
assert result["msg"] == ("ws/t", "over websocket"), result
print("ok")
"#;

/// A broker at `--log-level trace` serving a WebSocket client that logs in with a password:
/// no line of the WebSocket library's frame tracing is written, and the password appears
/// nowhere in the log, neither as text nor as the hex of a frame's payload.
#[test]
fn websocket_frames_and_passwords_stay_out_of_a_trace_log() {
    const SECRET: &str = "Zq8-ws-only-password";
    let dir = temp_dir();
    add_user(dir.path(), "alice", SECRET);
    let config = dir.path().join("ws.toml");
    std::fs::write(
        &config,
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\npath = \"/mqtt\"\n\
         allow_anonymous = false\n",
    )
    .expect("write the config");
    let mut broker = Mqtt5d::start_logging(
        dir.path(),
        "trace",
        &["--config", config.to_str().expect("UTF-8")],
    );
    let (status, out, err) = run_bounded(
        Command::new("python3").args(["-c", PAHO_WS_LOGIN, &broker.port(), "alice", SECRET]),
        Duration::from_secs(60),
    );
    assert!(status.success(), "paho over WebSocket: {out}{err}");
    assert_eq!(out.trim(), "ok");
    broker
        .wait_for_log("paho-ws-login", LIVE)
        .expect("the client's line");
    assert!(broker.stop().success());
    let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        broker
            .lines
            .iter()
            .any(|l| l.contains("\"level\":\"TRACE\"")),
        "the log is at trace level"
    );
    for line in &broker.lines {
        assert!(
            !(line.contains("\"level\":\"TRACE\"") && line.contains("tungstenite")),
            "a WebSocket frame trace: {line}"
        );
        assert!(
            !line.contains(SECRET) && !line.contains(&hex),
            "the password is in the log: {line}"
        );
    }
}

/// 32 clients with wrong passwords connect at once; while their argon2 checks (and the
/// delays of failed logins) run, an unrelated client's QoS 1 round trips keep completing:
/// all 50 complete while at least one of the 32 still waits for its answer. Then every one
/// of the 32 is refused with 0x86.
#[test]
fn wrong_passwords_are_checked_off_the_event_loop() {
    const WRONG: usize = 32;
    const ROUND_TRIPS: u16 = 50;
    let dir = temp_dir();
    add_users(dir.path(), &["alice"]);
    // Every one of the 32 gets its answer, however long the checks take on this machine.
    let broker = start_with(dir.path(), "[broker]\nconnect_timeout_secs = 300\n");
    let addr = broker.addr;
    let mut sub = Raw::connect(addr, "rt-sub");
    assert_eq!(
        sub.subscribe(1, &["rt/#".to_owned()]),
        [SubAckReason::GrantedQoS1]
    );
    let mut publisher = Raw::connect(addr, "rt-pub");
    let answered = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Barrier::new(WRONG + 1));
    let clients: Vec<_> = (0..WRONG)
        .map(|i| {
            let answered = Arc::clone(&answered);
            let sent = Arc::clone(&sent);
            thread::spawn(move || {
                let mut client = Raw::open(addr);
                client
                    .stream
                    .set_read_timeout(Some(Duration::from_secs(300)))
                    .expect("timeout");
                client.send(&Packet::from(login(
                    &format!("wrong-{i}"),
                    "alice",
                    "wrong",
                )));
                sent.wait();
                let reason = match client.recv() {
                    Some(Packet::ConnAck(ack)) => ack.reason,
                    other => panic!("wrong password {i}: expected a CONNACK, got {other:?}"),
                };
                answered.fetch_add(1, Ordering::SeqCst);
                client.expect_closed();
                reason
            })
        })
        .collect();
    sent.wait();
    let payload = Bytes::from_static(b"round trip");
    for id in 1..=ROUND_TRIPS {
        assert_eq!(
            publish_qos1(&mut publisher, id, "rt/x", &payload, false),
            PubAckReason::Success
        );
        let got = sub.expect_publish();
        assert_eq!(got.payload(), b"round trip");
        let pid = got.delivery.packet_id().expect("QoS 1");
        sub.send(&Packet::from(PubAck::new(pid)));
    }
    let answered_then = answered.load(Ordering::SeqCst);
    let reasons: Vec<ConnAckReason> = clients
        .into_iter()
        .map(|c| c.join().expect("a wrong-password client"))
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| *r == ConnAckReason::BadUserNameOrPassword),
        "{reasons:?}"
    );
    assert!(
        answered_then < WRONG,
        "the {ROUND_TRIPS} round trips completed only after all {WRONG} logins were answered"
    );
    publisher.disconnect();
    sub.disconnect();
}
