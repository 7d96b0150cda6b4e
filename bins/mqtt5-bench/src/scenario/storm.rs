//! **storm**: what a storm of durable fan-out does to an unrelated client, and how the storm
//! itself fares.
//!
//! 1. `sessions` (5,000 by default) offline persistent sessions (MQTT 5, Session Expiry
//!    Interval 3600) subscribe to `storm/#` at QoS 1 and disconnect: every storm message is
//!    queued, and with a durable broker stored, once per session.
//! 2. An unrelated pair, a publisher and a subscriber of `bench/out` with clean sessions,
//!    exchanges QoS 0 messages paced at `rate` (500/s) ([`crate::scenario::flows`]'s latency
//!    flow) without the storm: its p50 and p99.
//! 3. The storm: `publishers` (4) QoS 1 publishers on `storm/N` run flat out, each with
//!    `window` messages unacknowledged. After a ramp, the pair measures again, during the
//!    storm. The storm's throughput and PUBACK latencies are those of the same window.
//! 4. The storm stops: its publishers wait for the PUBACK of everything they sent (up to
//!    `drain`), then `verify` sessions (the first and the last) are drained: each must hold
//!    every acknowledged message. A missing one is QoS 1 loss and fails the run.
//!
//! The target: the pair's p99 during the storm within 2× of its p99 without it. A broker
//! whose event loop waits for the store serves the pair only as fast as the store commits
//! the storm; one that holds the storm's publishers back keeps serving everyone else.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mqtt5_codec::{
    Delivery, Packet, PacketId, PubAck, PubAckReason, Publish, QoS, SubAckReason, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};

use crate::broker::RunningBroker;
use crate::client::{Client, ConnectOptions};
use crate::error::{Context, Error, Result};
use crate::report::{Latencies, ResultLine, Table, human, rate};
use crate::scenario::flows::{self, Case, FlowOptions, Kind};

/// The sessions' filter; storm publisher N publishes to `storm/N`.
const FILTER: &str = "storm/#";

/// The sessions' client identifiers start with this.
const SESSION_PREFIX: &str = "mqtt5-bench-storm-session-";

/// The sessions' Session Expiry Interval, seconds.
const SESSION_EXPIRY: u32 = 3600;

/// Threads that create the sessions.
const SETUP_THREADS: usize = 16;

/// The longest wait for one packet while the sessions are set up or drained.
const STEP: Duration = Duration::from_secs(60);

/// How often a storm publisher looks at its stop flag while it waits for PUBACKs.
const TICK: Duration = Duration::from_millis(20);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct StormOptions {
    /// Offline persistent sessions subscribed to the storm.
    pub(crate) sessions: usize,
    /// Storm publishers.
    pub(crate) publishers: usize,
    /// Messages each storm publisher keeps unacknowledged.
    pub(crate) window: usize,
    /// Payload bytes of a storm message (at least 12).
    pub(crate) payload: usize,
    /// From the start of the storm to the pair's second measurement.
    pub(crate) ramp: Duration,
    /// The pair's measurement (its rate, warm-up and window).
    pub(crate) flow: FlowOptions,
    /// The longest the storm's publishers wait for their last PUBACKs.
    pub(crate) drain: Duration,
    /// Sessions drained to check that every acknowledged message is in them.
    pub(crate) verify: usize,
}

/// What one run measured and found.
#[derive(Debug, Clone)]
pub(crate) struct StormResult {
    /// The broker's name.
    pub(crate) broker: String,
    /// Sessions subscribed to the storm.
    pub(crate) sessions: usize,
    /// The pair's p50 and p99 without the storm.
    pub(crate) base: (Duration, Duration),
    /// The pair's p50 and p99 during the storm, or why it could not run.
    pub(crate) during: std::result::Result<(Duration, Duration), String>,
    /// QoS 0 messages of the pair lost, alone and during the storm.
    pub(crate) pair_lost: (u64, u64),
    /// The length of the storm's measured window (the pair's measurement during it).
    pub(crate) window: Duration,
    /// Storm messages acknowledged in that window.
    pub(crate) window_acks: u64,
    /// The storm's PUBACK latency in that window, from the send to the PUBACK: p50, p99.
    pub(crate) puback: (Duration, Duration),
    /// Storm messages sent in all.
    pub(crate) sent: u64,
    /// Storm messages acknowledged in all.
    pub(crate) acked: u64,
    /// Acknowledged messages missing from a drained session (QoS 1 loss), over the sessions
    /// drained.
    pub(crate) missing: u64,
    /// Sessions drained for the check.
    pub(crate) verified_sessions: usize,
    /// What went wrong besides loss: a publisher that failed, PUBACKs that never came.
    pub(crate) problems: Vec<String>,
}

impl StormResult {
    /// The pair's p99 during the storm over its p99 without it.
    pub(crate) fn p99_ratio(&self) -> Option<f64> {
        let during = self.during.as_ref().ok()?.1;
        Some(during.as_secs_f64() / self.base.1.as_secs_f64().max(1e-9))
    }

    /// Storm messages acknowledged per second in the measured window.
    pub(crate) fn storm_rate(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.window_acks as f64 / secs
        } else {
            0.0
        }
    }

    /// No acknowledged message is missing, and every message sent was acknowledged.
    pub(crate) fn verified(&self) -> bool {
        self.missing == 0 && self.problems.is_empty()
    }

    /// The machine-readable line.
    pub(crate) fn line(&self) -> ResultLine {
        let during = |f: fn(&(Duration, Duration)) -> Duration| {
            self.during
                .as_ref()
                .map_or_else(|_| "na".to_owned(), |d| f(d).as_micros().to_string())
        };
        ResultLine::new("storm")
            .field("broker", &self.broker)
            .field("sessions", self.sessions)
            .field("base_p50_us", self.base.0.as_micros())
            .field("base_p99_us", self.base.1.as_micros())
            .field("storm_p50_us", during(|d| d.0))
            .field("storm_p99_us", during(|d| d.1))
            .field(
                "p99_ratio",
                self.p99_ratio()
                    .map_or_else(|| "na".to_owned(), |r| format!("{r:.2}")),
            )
            .field(
                "pair_lost",
                format!("{}/{}", self.pair_lost.0, self.pair_lost.1),
            )
            .field("storm_msgs_per_s", format!("{:.1}", self.storm_rate()))
            .field("puback_p50_us", self.puback.0.as_micros())
            .field("puback_p99_us", self.puback.1.as_micros())
            .field("sent", self.sent)
            .field("acked", self.acked)
            .field("verified_sessions", self.verified_sessions)
            .field("missing", self.missing)
            .field("verified", if self.verified() { "ok" } else { "FAILED" })
    }

    /// The summary table.
    pub(crate) fn table() -> Table {
        Table::new(&[
            ("broker", false),
            ("sessions", true),
            ("QoS 0 p50 alone", true),
            ("QoS 0 p99 alone", true),
            ("QoS 0 p50 in storm", true),
            ("QoS 0 p99 in storm", true),
            ("p99 ratio", true),
            ("storm msgs/s", true),
            ("storm PUBACK p50", true),
            ("storm PUBACK p99", true),
            ("verified", false),
        ])
    }

    /// This run's row of [`StormResult::table`].
    pub(crate) fn row(&self) -> Vec<String> {
        let (p50, p99) = match &self.during {
            Ok((p50, p99)) => (human(*p50), human(*p99)),
            Err(_) => ("did not complete".to_owned(), "did not complete".to_owned()),
        };
        vec![
            self.broker.clone(),
            rate(self.sessions as f64),
            human(self.base.0),
            human(self.base.1),
            p50,
            p99,
            self.p99_ratio()
                .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}×")),
            format!("{:.1}", self.storm_rate()),
            human(self.puback.0),
            human(self.puback.1),
            if self.verified() {
                format!(
                    "yes ({} of {} in each of {} sessions)",
                    self.acked, self.sent, self.verified_sessions
                )
            } else if self.missing > 0 {
                format!("**NO**: {} missing", self.missing)
            } else {
                format!("**NO**: {}", self.problems.join("; "))
            },
        ]
    }
}

/// Runs the scenario against a started broker.
///
/// # Errors
/// When the sessions, the pair without the storm or the storm's publishers cannot be set up.
/// Loss and a pair that cannot run during the storm are in the result.
pub(crate) fn run(broker: &RunningBroker, options: &StormOptions) -> Result<StormResult> {
    let addr = broker.addr();
    setup_sessions(addr, options.sessions)?;
    let case = Case {
        kind: Kind::Latency,
        qos: QoS::AtMostOnce,
        payload: 64,
        publishers: 1,
        subscribers: 1,
    };
    let base = flows::run(broker, &case, &options.flow, "none")?;

    let storm = Storm::start(addr, options)?;
    std::thread::sleep(options.ramp);
    storm.measuring.store(true, Ordering::Relaxed);
    let acks_before = storm.acked.load(Ordering::Relaxed);
    let started = Instant::now();
    let during = flows::run(broker, &case, &options.flow, "none");
    let window = started.elapsed();
    let window_acks = storm.acked.load(Ordering::Relaxed) - acks_before;
    storm.measuring.store(false, Ordering::Relaxed);
    let finished = storm.stop();

    let mut problems = finished.problems;
    let acked: BTreeSet<(usize, u64)> = finished.acked;
    let mut missing = 0;
    let mut verified_sessions = 0;
    for index in sessions_to_verify(options.sessions, options.verify) {
        let got = drain_session(addr, index, &acked)?;
        missing += acked.difference(&got).count() as u64;
        verified_sessions += 1;
    }
    if finished.sent > acked.len() as u64 {
        problems.push(format!(
            "{} of {} storm messages never acknowledged within {:?}",
            finished.sent - acked.len() as u64,
            finished.sent,
            options.drain
        ));
    }
    let latencies = Latencies::from_nanos(finished.latencies_ns);
    Ok(StormResult {
        broker: broker.name().to_owned(),
        sessions: options.sessions,
        base: (base.p50, base.p99),
        pair_lost: (
            base.outcome.missing(),
            during.as_ref().map_or(0, |d| d.outcome.missing()),
        ),
        during: during.map(|d| (d.p50, d.p99)).map_err(|e| e.to_string()),
        window,
        window_acks,
        puback: (latencies.quantile(0.50), latencies.quantile(0.99)),
        sent: finished.sent,
        acked: acked.len() as u64,
        missing,
        verified_sessions,
        problems,
    })
}

/// The options of session `index`'s CONNECT.
fn session(index: usize, clean_start: bool) -> ConnectOptions {
    ConnectOptions {
        client_id: format!("{SESSION_PREFIX}{index}"),
        clean_start,
        session_expiry: SESSION_EXPIRY,
    }
}

/// Creates the offline persistent sessions, [`SETUP_THREADS`] at a time.
fn setup_sessions(addr: SocketAddr, count: usize) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..SETUP_THREADS.min(count.max(1)))
        .map(|_| {
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if index >= count {
                        return Ok(());
                    }
                    setup_session(addr, index)?;
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| Error::Protocol("a session setup thread panicked".into()))??;
    }
    Ok(())
}

/// One session: CONNECT, SUBSCRIBE `storm/#` at QoS 1, DISCONNECT.
fn setup_session(addr: SocketAddr, index: usize) -> Result<()> {
    let (mut client, _) = Client::connect(addr, &session(index, true))?;
    client.send(&Packet::from(Subscribe {
        packet_id: std::num::NonZeroU16::MIN.into(),
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::try_from(FILTER)?,
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
    }))?;
    match client.recv(STEP)? {
        Some(Packet::SubAck(ack)) if ack.reasons == [SubAckReason::GrantedQoS1] => {}
        other => {
            return Err(Error::Protocol(format!(
                "SUBSCRIBE {FILTER} of session {index} not granted QoS 1: {other:?}"
            )));
        }
    }
    client.disconnect(STEP)
}

/// The sessions drained for the check: the first and the last, then others spread between.
fn sessions_to_verify(sessions: usize, verify: usize) -> Vec<usize> {
    let verify = verify.min(sessions);
    if verify == 0 {
        return Vec::new();
    }
    if verify == 1 {
        return vec![0];
    }
    let mut picked: Vec<usize> = (0..verify)
        .map(|i| i * (sessions - 1) / (verify - 1))
        .collect();
    picked.dedup();
    picked
}

/// Reconnects session `index` and takes its queue, acknowledging every message, until every
/// message of `expected` has come (or nothing comes for [`STEP`]); returns the messages
/// received, as (publisher, sequence number).
fn drain_session(
    addr: SocketAddr,
    index: usize,
    expected: &BTreeSet<(usize, u64)>,
) -> Result<BTreeSet<(usize, u64)>> {
    let (mut client, ack) = Client::connect(addr, &session(index, false))?;
    if !ack.session_present {
        return Err(Error::Protocol(format!(
            "session {index} is gone: CONNACK without Session Present"
        )));
    }
    let mut got = BTreeSet::new();
    let mut batch = Vec::new();
    while !expected.is_subset(&got) {
        batch.clear();
        client.recv_batch(STEP, &mut batch)?;
        if batch.is_empty() {
            break;
        }
        for packet in batch.drain(..) {
            let Packet::Publish(p) = packet else {
                continue;
            };
            if let Some(id) = p.delivery.packet_id() {
                client.queue(&Packet::from(PubAck::new(id)));
            }
            if let Some(stamp) = read_stamp(p.payload()) {
                got.insert(stamp);
            }
        }
        client.flush()?;
    }
    client.disconnect(STEP)?;
    Ok(got)
}

/// A storm message's payload: its publisher and sequence number, padded to `len` bytes.
fn stamp(publisher: usize, seq: u64, len: usize) -> Vec<u8> {
    let mut payload = format!("{publisher}:{seq}:").into_bytes();
    payload.resize(len.max(payload.len()), b'.');
    payload
}

/// The publisher and sequence number of a storm message's payload.
fn read_stamp(payload: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// What the storm's publishers share with the scenario.
struct Storm {
    stop: Arc<AtomicBool>,
    /// Whether PUBACK latencies are recorded now (the measured window).
    measuring: Arc<AtomicBool>,
    /// PUBACKs so far, over all publishers.
    acked: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<PublisherOutcome>>,
}

/// What one storm publisher did.
#[derive(Default)]
struct PublisherOutcome {
    sent: u64,
    acked: Vec<u64>,
    latencies_ns: Vec<u64>,
    failure: Option<String>,
}

/// What the storm did, over its publishers.
struct StormOutcome {
    sent: u64,
    acked: BTreeSet<(usize, u64)>,
    latencies_ns: Vec<u64>,
    problems: Vec<String>,
}

impl Storm {
    /// Connects the publishers, then starts them (all connected before any sends: a broker
    /// that the storm slows down may be slow to accept a late publisher).
    fn start(addr: SocketAddr, options: &StormOptions) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let clients = (0..options.publishers)
            .map(|index| {
                let connect = ConnectOptions {
                    client_id: format!("mqtt5-bench-storm-pub-{index}"),
                    clean_start: true,
                    session_expiry: 0,
                };
                Client::connect(addr, &connect).map(|(client, _)| client)
            })
            .collect::<Result<Vec<Client>>>()?;
        let mut threads = Vec::new();
        for (index, client) in clients.into_iter().enumerate() {
            let shared = Shared {
                stop: Arc::clone(&stop),
                measuring: Arc::clone(&measuring),
                acked: Arc::clone(&acked),
            };
            let (window, payload, drain) = (options.window.max(1), options.payload, options.drain);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("storm-pub-{index}"))
                    .spawn(move || publish(client, index, window, payload, drain, &shared))
                    .context(|| "starting a storm publisher".into())?,
            );
        }
        Ok(Self {
            stop,
            measuring,
            acked,
            threads,
        })
    }

    /// Stops the publishers and collects what they did.
    fn stop(self) -> StormOutcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcome = StormOutcome {
            sent: 0,
            acked: BTreeSet::new(),
            latencies_ns: Vec::new(),
            problems: Vec::new(),
        };
        for (index, thread) in self.threads.into_iter().enumerate() {
            let p = thread.join().unwrap_or_else(|_| PublisherOutcome {
                failure: Some("panicked".into()),
                ..PublisherOutcome::default()
            });
            outcome.sent += p.sent;
            outcome
                .acked
                .extend(p.acked.into_iter().map(|s| (index, s)));
            outcome.latencies_ns.extend(p.latencies_ns);
            if let Some(f) = p.failure {
                outcome
                    .problems
                    .push(format!("storm publisher {index}: {f}"));
            }
        }
        outcome
    }
}

/// The flags and counters a publisher thread shares.
struct Shared {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
}

/// One storm publisher: QoS 1 to `storm/{index}` with `window` messages unacknowledged, as
/// fast as the PUBACKs come, until told to stop; then it waits (up to `drain`) for the PUBACKs
/// of what it sent.
fn publish(
    mut client: Client,
    index: usize,
    window: usize,
    payload: usize,
    drain: Duration,
    shared: &Shared,
) -> PublisherOutcome {
    let mut out = PublisherOutcome::default();
    let Ok(topic) = TopicName::try_from(format!("storm/{index}").as_str()) else {
        out.failure = Some("bad topic".into());
        return out;
    };
    // In flight: packet identifier -> (sequence number, send time). PUBACKs come in the order
    // of the PUBLISH packets ([MQTT-4.6.0-2]), but the map does not rely on it.
    let mut in_flight: HashMap<u16, (u64, Instant)> = HashMap::new();
    let mut next_id: u16 = 0;
    let mut seq: u64 = 0;
    let mut batch = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        if stopping {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if in_flight.is_empty() || since.elapsed() > drain {
                return out;
            }
        } else {
            while in_flight.len() < window {
                next_id = next_id.checked_add(1).unwrap_or(1);
                let Some(id) = PacketId::new(next_id) else {
                    continue;
                };
                if in_flight.contains_key(&next_id) {
                    continue;
                }
                let mut p = Publish::new(topic.clone(), stamp(index, seq, payload));
                p.delivery = Delivery::AtLeastOnce(id);
                client.queue(&Packet::from(p));
                in_flight.insert(next_id, (seq, Instant::now()));
                seq += 1;
                out.sent += 1;
            }
            if let Err(e) = client.flush() {
                out.failure = Some(e.to_string());
                return out;
            }
        }
        batch.clear();
        if let Err(e) = client.recv_batch(TICK, &mut batch) {
            out.failure = Some(e.to_string());
            return out;
        }
        let measuring = shared.measuring.load(Ordering::Relaxed);
        for packet in batch.drain(..) {
            let Packet::PubAck(ack) = packet else {
                continue;
            };
            let Some((s, sent)) = in_flight.remove(&ack.packet_id.get()) else {
                continue;
            };
            if ack.reason != PubAckReason::Success {
                out.failure = Some(format!("PUBACK {:?} for message {s}", ack.reason));
                continue;
            }
            out.acked.push(s);
            shared.acked.fetch_add(1, Ordering::Relaxed);
            if measuring {
                let ns = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                out.latencies_ns.push(ns);
            }
        }
    }
}
