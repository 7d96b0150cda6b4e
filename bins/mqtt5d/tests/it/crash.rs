//! Crash recovery: SIGKILL the broker while QoS 1 messages flow to an offline persistent
//! session, restart it on the same data directory, and check what the subscriber gets back.
//!
//! - `--durability sync`: every message whose PUBACK reached its publisher comes back.
//! - `durability = "periodic"`: only the last period (plus commit time) of acknowledged
//!   messages may be lost; everything acknowledged before that comes back.
//!
//! Duplicates are allowed (QoS 1). The kill points are random; each test prints its seed, and
//! `MQTT5D_CRASH_SEED=<seed>` replays the same kill points.
//!
//! ```text
//!   subscriber ── CONNECT (session expiry 1 h), SUBSCRIBE crash/# QoS 1, DISCONNECT
//!   3 publishers ── PUBLISH QoS 1 "p:n" ──► mqtt5d ──► queued for the offline session
//!                 ◄── PUBACK n: recorded with the instant it was read
//!   first PUBACK, then a random delay ── SIGKILL ── restart on the same data dir
//!   subscriber ── CONNECT (clean start off) ◄── queued messages, until 2 s of quiet
//!   check: every acknowledged n (old enough, in periodic mode) was received
//! ```
//!
//! Each test also checks that it checked something: a run in which no acknowledged message
//! was required back fails.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{Client, Connection, Event, MqttOptions};

use crate::harness::*;

/// Publishing clients, each with its own connection and sequence numbers.
const PUBLISHERS: u32 = 3;

/// Messages a publisher may have between the oldest one without a PUBACK and the next one it
/// sends. Keeping the whole span (not just the count) under [`PKID_CYCLE`] means no two
/// messages in flight can share a packet identifier, so a PUBACK names exactly one message.
const WINDOW: u64 = 16;

/// rumqttc hands out packet identifiers 1, 2, …, this, 1, … (its in-flight limit).
const PKID_CYCLE: u16 = 64;

/// The subscriber's client identifier.
const SUBSCRIBER: &str = "crash-sub";

/// Kill points per test.
const ITERATIONS: usize = 5;

/// The subscriber stops once no message came for this long.
const QUIET: Duration = Duration::from_secs(2);

/// The most the subscriber waits for the queued messages, in all.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The periodic test's period, in milliseconds (`[storage] periodic_ms`).
const PERIOD_MS: u64 = 200;

/// How long before the kill a PUBACK must have been read for its message to be required after
/// the restart, in periodic mode.
///
/// The bound documented on `Durability::Periodic` (crates/mqtt5-store/src/writer.rs): while
/// the writer keeps up, a batch is committed at most `period` plus one commit time after it
/// was submitted. The broker submits a message's batch before it sends the PUBACK, and the
/// test reads the PUBACK after that, so a PUBACK read `period + commit time` before the kill
/// belongs to a committed message. One group commit (a few hundred small messages, one fsync)
/// takes milliseconds on an idle disk, but on a loaded 2-core VM shared with other builds an
/// fsync can stall for hundreds of milliseconds, so the test allows a whole second for it.
/// The publishers are paced (see [`PERIODIC`]) so that the writer is not behind, which would
/// add its backlog to the window.
const PERIODIC_LOSS_WINDOW: Duration = Duration::from_millis(PERIOD_MS + 1_000);

/// One crash scenario: a durability mode and how the test drives it.
struct Scenario {
    /// The name printed with the results.
    name: &'static str,
    /// The configuration file the broker runs with (before and after the crash).
    config: &'static str,
    /// The kill comes between these many milliseconds after the first PUBACK (inclusive).
    kill_after_ms: (u64, u64),
    /// Each publisher sends at most this many messages a second; `None`: as fast as its
    /// window lets it.
    rate_per_publisher: Option<u32>,
    /// `None`: every acknowledged message must come back. `Some(w)`: those whose PUBACK was
    /// read less than `w` before the kill may be lost.
    loss_window: Option<Duration>,
}

/// Sync durability: a PUBACK only after the message's batch is committed with fsync.
const SYNC: Scenario = Scenario {
    name: "sync",
    // Room for everything a run can send (the default queue of 10,000 would drop the oldest).
    config: "[storage]\ndurability = \"sync\"\n[broker]\nmax_queued_messages = 100000\n",
    kill_after_ms: (50, 800),
    // Unpaced: the window is the only limit, so the writer is busy and a kill can land at any
    // point of a group commit.
    rate_per_publisher: None,
    loss_window: None,
};

/// Periodic durability: commits at most 200 ms apart, PUBACKs not held back. The kill comes
/// late enough that some messages are older than the loss window.
const PERIODIC: Scenario = Scenario {
    name: "periodic",
    // periodic_ms is PERIOD_MS.
    config: "[storage]\ndurability = \"periodic\"\nperiodic_ms = 200\n\
             [broker]\nmax_queued_messages = 100000\n",
    kill_after_ms: (1_500, 2_700),
    // ~1,800 messages a second in all: well within what one group commit a period absorbs.
    rate_per_publisher: Some(600),
    loss_window: Some(PERIODIC_LOSS_WINDOW),
};

#[test]
fn sigkill_under_sync_durability_loses_no_acknowledged_message() {
    let required = run(&SYNC);
    assert!(required > 0, "no message was acknowledged before a kill");
}

#[test]
fn sigkill_under_periodic_durability_loses_only_the_last_period() {
    let required = run(&PERIODIC);
    assert!(required > 0, "no message was old enough to be required");
}

/// Runs [`ITERATIONS`] crashes of `scenario`; returns how many messages were required in all.
fn run(scenario: &Scenario) -> usize {
    let seed = seed();
    println!(
        "crash test ({}): seed {seed} (replay: MQTT5D_CRASH_SEED={seed})",
        scenario.name
    );
    let mut rng = SplitMix64(seed);
    let mut required = 0;
    for iteration in 0..ITERATIONS {
        let (lo, hi) = scenario.kill_after_ms;
        let kill_after = Duration::from_millis(rng.between(lo, hi));
        required += crash_once(scenario, seed, iteration, kill_after);
    }
    required
}

/// A message: its publisher and its sequence number there.
type Key = (u32, u64);

/// One crash and recovery; returns how many messages were required to come back.
fn crash_once(scenario: &Scenario, seed: u64, iteration: usize, kill_after: Duration) -> usize {
    let dir = temp_dir();
    let config = dir.path().join("crash.toml");
    std::fs::write(&config, scenario.config).expect("write the configuration");
    let config = config.display().to_string();
    let args = ["--config", config.as_str()];

    let mut broker = Mqtt5d::start(dir.path(), &args);
    let port = broker.addr.port();
    subscribe_then_leave(port);
    broker
        .wait_for_log("client disconnected", Duration::from_secs(10))
        .expect("the subscriber's session went offline");

    let publishers: Vec<Publisher> = (0..PUBLISHERS)
        .map(|index| Publisher::start(index, port, scenario.rate_per_publisher))
        .collect();
    for p in &publishers {
        p.wait_connected();
    }
    for p in &publishers {
        p.go();
    }
    // The kill point is random, but never before the broker has acknowledged something.
    publishers[0].wait_acknowledged();
    thread::sleep(kill_after);
    // Taken before the signal: a PUBACK read before this instant certainly preceded the kill.
    let killed_at = Instant::now();
    let status = broker.kill9();
    assert_eq!(status.signal(), Some(9), "mqtt5d died of the SIGKILL");
    let flows: Vec<Flow> = publishers.into_iter().map(Publisher::finish).collect();

    let mut acked: Vec<(Key, Instant)> = Vec::new();
    for (index, flow) in (0..PUBLISHERS).zip(&flows) {
        assert_eq!(flow.fault, None, "publisher {index}");
        assert!(
            flow.refused.is_empty(),
            "publisher {index}: PUBACKs with an error reason: {:?}",
            flow.refused
        );
        let (ended_at, error) = flow.ended.as_ref().expect("finish waits for the end");
        assert!(
            *ended_at >= killed_at,
            "publisher {index}'s connection ended before the kill: {error}"
        );
        acked.extend(flow.acked.iter().map(|&(seq, at)| ((index, seq), at)));
    }
    let all_acked: HashSet<Key> = acked.iter().map(|&(key, _)| key).collect();
    let required: HashMap<Key, Duration> = acked
        .iter()
        .map(|&(key, at)| (key, killed_at.duration_since(at)))
        .filter(|&(_, age)| scenario.loss_window.is_none_or(|window| age >= window))
        .collect();

    let mut restarted = Mqtt5d::start(dir.path(), &args);
    let drained = drain(restarted.addr.port(), &all_acked);
    let mut missing: Vec<(Key, Duration)> = required
        .iter()
        .filter(|(key, _)| !drained.received.contains(key))
        .map(|(&key, &age)| (key, age))
        .collect();
    missing.sort_unstable();
    let lost_in_window = all_acked
        .iter()
        .filter(|key| !required.contains_key(key) && !drained.received.contains(key))
        .count();
    println!(
        "{} #{iteration}: kill after {kill_after:?}; {} acknowledged, {} required, {} received \
         ({} deliveries, {} never acknowledged), {lost_in_window} acknowledged lost within the \
         window, session present: {}",
        scenario.name,
        all_acked.len(),
        required.len(),
        drained.received.len(),
        drained.deliveries,
        drained.received.difference(&all_acked).count(),
        drained.session_present,
    );
    if !missing.is_empty() || !drained.session_present {
        restarted.wait_for_log("state restored", Duration::from_secs(1));
        let tail = broker.lines.len().saturating_sub(40);
        panic!(
            "{} crash test: seed {seed}, iteration {iteration}, kill after {kill_after:?}\n\
             session present after the restart: {}\n\
             {} of {} required messages missing (publisher: sequence numbers, PUBACK ages at \
             the kill):\n{}\n\
             subscriber: {:?}\n\
             last log lines before the kill:\n{}\n\
             log after the restart:\n{}",
            scenario.name,
            drained.session_present,
            missing.len(),
            required.len(),
            runs(&missing).join("\n"),
            drained.error,
            broker.lines[tail..].join("\n"),
            restarted.lines.join("\n"),
        );
    }
    required.len()
}

/// Sorted missing messages as runs of consecutive sequence numbers, one a line:
/// `publisher 0: 239..=420, PUBACKs read 181ms..2ms before the kill`.
fn runs(missing: &[(Key, Duration)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = missing;
    while let Some(&((publisher, first), oldest)) = rest.first() {
        let len = (1..rest.len())
            .find(|&i| rest[i].0 != (publisher, first + i as u64))
            .unwrap_or(rest.len());
        let ((_, last), newest) = rest[len - 1];
        lines.push(format!(
            "publisher {publisher}: {first}..={last}, PUBACKs read {oldest:?}..{newest:?} before \
             the kill"
        ));
        rest = &rest[len..];
    }
    lines
}

/// The subscriber's options: a session that outlives its connection by an hour.
fn subscriber_options(port: u16, clean_start: bool) -> MqttOptions {
    let mut options = MqttOptions::new(SUBSCRIBER, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_clean_start(clean_start)
        .set_session_expiry_interval(Some(3600));
    options
}

/// Creates the persistent session, subscribes to `crash/#` with QoS 1 and disconnects.
fn subscribe_then_leave(port: u16) {
    let (client, mut connection) = Client::new(subscriber_options(port, true), 8);
    client
        .subscribe("crash/#", QoS::AtLeastOnce)
        .expect("subscribe queued");
    let end = Instant::now() + Duration::from_secs(20);
    for event in connection.iter() {
        assert!(Instant::now() < end, "no SUBACK within 20 s");
        match event {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                assert_eq!(
                    ack.return_codes,
                    [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
                );
                client.disconnect().expect("disconnect queued");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => panic!("subscriber: {e}"),
        }
    }
}

/// What the subscriber got back after the restart.
struct Drained {
    /// Whether the broker resumed the session (CONNACK Session Present).
    session_present: bool,
    /// The distinct messages received.
    received: HashSet<Key>,
    /// Every PUBLISH received, duplicates included.
    deliveries: usize,
    /// The connection error that ended it early, if one did.
    error: Option<String>,
}

/// What the subscriber's connection thread reports.
enum Received {
    Connected { session_present: bool },
    Message(Key),
    Failed(String),
}

/// Resumes the subscriber's session and takes messages until [`QUIET`] passes without one
/// (or every key in `expected` is in, or [`DRAIN_LIMIT`] is up).
fn drain(port: u16, expected: &HashSet<Key>) -> Drained {
    let (client, mut connection) = Client::new(subscriber_options(port, false), 8);
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for event in connection.iter() {
            let report = match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => Received::Connected {
                    session_present: ack.session_present,
                },
                Ok(Event::Incoming(Packet::Publish(p))) => match parse_payload(&p.payload) {
                    Some(key) => Received::Message(key),
                    None => Received::Failed(format!("unexpected payload {:?}", p.payload)),
                },
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => continue,
                Err(e) => Received::Failed(e.to_string()),
            };
            let last = matches!(report, Received::Failed(_));
            if tx.send(report).is_err() || last {
                return;
            }
        }
    });
    let mut drained = Drained {
        session_present: false,
        received: HashSet::new(),
        deliveries: 0,
        error: None,
    };
    let end = Instant::now() + DRAIN_LIMIT;
    let mut connected = false;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        // The quiet period counts from the CONNACK on: a slow start is not the end.
        let wait = if connected { left.min(QUIET) } else { left };
        match rx.recv_timeout(wait) {
            Ok(Received::Connected { session_present }) => {
                connected = true;
                drained.session_present = session_present;
            }
            Ok(Received::Message(key)) => {
                drained.deliveries += 1;
                drained.received.insert(key);
                if drained.received.len() >= expected.len() && expected.is_subset(&drained.received)
                {
                    break;
                }
            }
            Ok(Received::Failed(e)) => {
                drained.error = Some(e);
                break;
            }
            Err(_) => break,
        }
    }
    // Ends the reader (its connection sends DISCONNECT), unless it already ended on an error.
    let _ = client.disconnect();
    drop(client);
    reader.join().expect("the subscriber's thread");
    drained
}

/// Reads a `publisher:sequence` payload.
fn parse_payload(payload: &[u8]) -> Option<Key> {
    let (publisher, seq) = std::str::from_utf8(payload).ok()?.split_once(':')?;
    Some((publisher.parse().ok()?, seq.parse().ok()?))
}

/// One publisher's progress, shared by its two threads and the test.
#[derive(Debug, Default)]
struct Flow {
    /// The CONNACK came.
    connected: bool,
    /// The test let it start publishing.
    go: bool,
    /// Sequence numbers handed to the client and not yet written, oldest first.
    requested: VecDeque<u64>,
    /// Packet identifier → sequence number of the messages written and not yet answered.
    in_flight: HashMap<u16, u64>,
    /// Every sequence number below this one was answered.
    low: u64,
    /// Answered sequence numbers at or above `low`.
    answered: HashSet<u64>,
    /// Sequence numbers with a successful PUBACK, and when the test read it.
    acked: Vec<(u64, Instant)>,
    /// Sequence numbers with an error PUBACK, and its reason.
    refused: Vec<(u64, String)>,
    /// When the connection ended, and its error.
    ended: Option<(Instant, String)>,
    /// Something the test did not expect of the client.
    fault: Option<String>,
}

/// A publisher: a rumqttc v5 client, one thread sending paced messages in a window, one
/// thread reading the connection's events.
struct Publisher {
    flow: Arc<(Mutex<Flow>, Condvar)>,
    sender: JoinHandle<()>,
    events: JoinHandle<()>,
}

/// Locks a flow, even if a thread panicked holding it (the panic is reported at `join`).
fn lock(flow: &Mutex<Flow>) -> MutexGuard<'_, Flow> {
    flow.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Publisher {
    /// Connects publisher `index`; it publishes once [`Publisher::go`] is called.
    fn start(index: u32, port: u16, rate: Option<u32>) -> Self {
        let mut options = MqttOptions::new(format!("crash-pub-{index}"), "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_outgoing_inflight_upper_limit(PKID_CYCLE);
        // The requests channel never fills: it holds at most WINDOW publishes.
        let (client, connection) = Client::new(options, 2 * WINDOW as usize);
        let flow = Arc::new((Mutex::new(Flow::default()), Condvar::new()));
        let events = {
            let flow = Arc::clone(&flow);
            thread::spawn(move || read_events(connection, &flow))
        };
        let sender = {
            let flow = Arc::clone(&flow);
            thread::spawn(move || send_messages(index, &client, rate, &flow))
        };
        Self {
            flow,
            sender,
            events,
        }
    }

    /// Waits (bounded) for the CONNACK.
    fn wait_connected(&self) {
        let (flow, changed) = &*self.flow;
        let (f, _) = changed
            .wait_timeout_while(lock(flow), Duration::from_secs(10), |f| {
                !f.connected && f.ended.is_none()
            })
            .unwrap_or_else(PoisonError::into_inner);
        assert!(f.connected, "a publisher did not connect: {:?}", f.ended);
    }

    /// Waits (bounded) for its first successful PUBACK.
    fn wait_acknowledged(&self) {
        let (flow, changed) = &*self.flow;
        let (f, _) = changed
            .wait_timeout_while(lock(flow), Duration::from_secs(30), |f| {
                f.acked.is_empty() && f.ended.is_none()
            })
            .unwrap_or_else(PoisonError::into_inner);
        assert!(!f.acked.is_empty(), "no PUBACK within 30 s: {:?}", f.ended);
    }

    /// Lets it publish.
    fn go(&self) {
        let (flow, changed) = &*self.flow;
        lock(flow).go = true;
        changed.notify_all();
    }

    /// Waits (bounded) for its connection to end, as the kill makes it, and returns its flow.
    fn finish(self) -> Flow {
        let (flow, changed) = &*self.flow;
        let ended = changed
            .wait_timeout_while(lock(flow), Duration::from_secs(10), |f| f.ended.is_none())
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .ended
            .is_some();
        assert!(
            ended,
            "a publisher's connection outlived the broker by 10 s"
        );
        self.events.join().expect("the publisher's event thread");
        self.sender.join().expect("the publisher's sending thread");
        std::mem::take(&mut *lock(flow))
    }
}

/// The sending thread: message `n` goes out no sooner than `n / rate` seconds after the start,
/// and only once every message before `n - WINDOW + 1` is answered.
fn send_messages(index: u32, client: &Client, rate: Option<u32>, flow: &(Mutex<Flow>, Condvar)) {
    let (flow, changed) = flow;
    let f = changed
        .wait_timeout_while(lock(flow), Duration::from_secs(30), |f| {
            !f.go && f.ended.is_none()
        })
        .unwrap_or_else(PoisonError::into_inner)
        .0;
    if !f.go || f.ended.is_some() {
        return;
    }
    drop(f);
    let start = Instant::now();
    let interval = rate.map_or(Duration::ZERO, |rate| Duration::from_secs(1) / rate);
    let topic = format!("crash/p{index}");
    for n in 0u32.. {
        if let Some(wait) = (start + interval * n).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let seq = u64::from(n);
        let mut f = changed
            .wait_timeout_while(lock(flow), Duration::from_secs(30), |f| {
                f.ended.is_none() && seq >= f.low + WINDOW
            })
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if f.ended.is_some() || seq >= f.low + WINDOW {
            return;
        }
        // Queued before the request, so the event thread finds it when the PUBLISH is written.
        f.requested.push_back(seq);
        drop(f);
        let payload = format!("{index}:{seq}");
        if client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            return;
        }
    }
}

/// The event thread: maps packet identifiers to sequence numbers as PUBLISHes are written
/// (rumqttc writes requests in order) and records each PUBACK, until the connection fails.
fn read_events(mut connection: Connection, flow: &(Mutex<Flow>, Condvar)) {
    let (flow, changed) = flow;
    for event in connection.iter() {
        let now = Instant::now();
        let mut f = lock(flow);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => f.connected = true,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => match f.requested.pop_front() {
                Some(seq) => {
                    if let Some(old) = f.in_flight.insert(pkid, seq) {
                        f.fault = Some(format!("packet id {pkid} reused: {old} and {seq}"));
                    }
                }
                None => f.fault = Some(format!("a PUBLISH ({pkid}) the test did not ask for")),
            },
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                f.fault = Some(format!("packet id collision on {pkid}"));
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => match f.in_flight.remove(&ack.pkid) {
                Some(seq) => {
                    match ack.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                            f.acked.push((seq, now));
                        }
                        reason => f.refused.push((seq, format!("{reason:?}"))),
                    }
                    f.answered.insert(seq);
                    let mut low = f.low;
                    while f.answered.remove(&low) {
                        low += 1;
                    }
                    f.low = low;
                }
                None => f.fault = Some(format!("a PUBACK for {} not in flight", ack.pkid)),
            },
            Ok(_) => {}
            Err(e) => f.ended = Some((now, e.to_string())),
        }
        if f.fault.is_some() && f.ended.is_none() {
            f.ended = Some((now, "stopped on a fault".to_owned()));
        }
        let done = f.ended.is_some();
        drop(f);
        changed.notify_all();
        if done {
            return;
        }
    }
    lock(flow).ended = Some((Instant::now(), "the requests channel closed".to_owned()));
    changed.notify_all();
}

/// The seed: `MQTT5D_CRASH_SEED`, or a fresh one from the standard library's per-process
/// random hash keys and the clock.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("MQTT5D_CRASH_SEED") {
        return s.trim().parse().expect("MQTT5D_CRASH_SEED is a u64");
    }
    RandomState::new().hash_one(SystemTime::now())
}

/// SplitMix64 (Steele, Lea, Flood 2014): enough randomness to pick kill points, replayable.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (the modulo bias is irrelevant here).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}
