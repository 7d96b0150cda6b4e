//! **persist**: QoS 1 messages to an offline persistent session, acknowledged one at a time.
//!
//! 1. A subscriber connects (MQTT 5, Clean Start, Session Expiry Interval 3600), subscribes
//!    to `bench/#` with QoS 1, and disconnects: its session stays, offline.
//! 2. P publishers each send QoS 1 PUBLISH packets to `bench/N` with one message in flight:
//!    the next only after the PUBACK of the previous one ([`crate::driver`]). Every message
//!    must be queued for the offline session, so with a durable broker each PUBACK waits for a
//!    commit, and the rate measures durable acknowledgements. It runs for a warm-up, then the
//!    measured window.
//! 3. The subscriber reconnects (Clean Start 0: its session must be present) and drains its
//!    queue, acknowledging every message. Each acknowledged message must arrive: a missing
//!    one is QoS 1 loss, and fails the run. Duplicates are allowed by QoS 1 and counted.
//!
//! With `--crash-before-drain` the broker is killed (SIGKILL) and restarted on the same data
//! between steps 2 and 3, so the check is that acknowledged messages survive a crash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mqtt5_codec::{
    Delivery, Packet, PubAck, QoS, SubAckReason, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, TopicFilter,
};

use crate::broker::{RunningBroker, cpu_time, thread_cpu_times};
use crate::client::{Client, ConnectOptions};
use crate::driver::{self, PublishLoad, read_stamp};
use crate::error::{Error, Result};
use crate::report::{Latencies, ResultLine, Table, human, rate};

/// The subscriber's client identifier.
const SUBSCRIBER: &str = "mqtt5-bench-persist-sub";

/// The subscriber's filter; publisher N publishes to `bench/N`.
const FILTER: &str = "bench/#";

/// The subscriber's Session Expiry Interval, in seconds.
const SESSION_EXPIRY: u32 = 3600;

/// How long the drain waits for a packet before it gives up on the missing messages.
const DRAIN_IDLE: Duration = Duration::from_secs(5);

/// How long a publisher waits for its last PUBACK after the window.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// How the scenario runs.
#[derive(Debug, Clone)]
pub(crate) struct PersistOptions {
    /// Publishers (connections), each with one message in flight.
    pub(crate) publishers: usize,
    /// Threads driving the publishers.
    pub(crate) threads: usize,
    /// Payload bytes per message.
    pub(crate) payload: usize,
    /// Publishing before the measured window.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
    /// The longest the drain may take.
    pub(crate) drain_timeout: Duration,
    /// Kill the broker with SIGKILL and start it again before the drain: the acknowledged
    /// messages must survive a crash.
    pub(crate) crash_before_drain: bool,
}

/// What one run measured and found.
#[derive(Debug, Clone)]
pub(crate) struct PersistResult {
    /// The broker's name.
    pub(crate) broker: String,
    /// Publishers.
    pub(crate) publishers: usize,
    /// The length of the measured window.
    pub(crate) window: Duration,
    /// Acknowledgements in the window.
    pub(crate) window_acks: u64,
    /// Median acknowledgement latency in the window.
    pub(crate) p50: Duration,
    /// 99th percentile.
    pub(crate) p99: Duration,
    /// Messages acknowledged over the whole run, warm-up included: each must be queued.
    pub(crate) acked: u64,
    /// Acknowledged messages the subscriber received.
    pub(crate) received: u64,
    /// Acknowledged messages the subscriber never received.
    pub(crate) missing: u64,
    /// Messages received more than once.
    pub(crate) duplicates: u64,
    /// Messages received that were sent but never acknowledged (allowed).
    pub(crate) unacked_received: u64,
    /// From the reconnection to the last expected message.
    pub(crate) drain: Duration,
    /// The broker's CPU use in the window, in cores.
    pub(crate) broker_cpu: Option<f64>,
    /// The broker's busiest thread in the window: its name and CPU use, in cores.
    pub(crate) busiest_thread: Option<(String, f64)>,
    /// This tool's CPU use in the window, in cores.
    pub(crate) tool_cpu: Option<f64>,
    /// What went wrong: publisher failures, a missing session, a drain that timed out.
    pub(crate) problems: Vec<String>,
}

impl PersistResult {
    /// Acknowledged messages per second in the window.
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.window_acks as f64 / secs
        } else {
            0.0
        }
    }

    /// Every acknowledged message was delivered, and nothing else went wrong.
    pub(crate) fn verified(&self) -> bool {
        self.missing == 0 && self.problems.is_empty()
    }

    /// The drain rate, messages per second.
    pub(crate) fn drain_rate(&self) -> f64 {
        let secs = self.drain.as_secs_f64();
        if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        }
    }

    /// The machine-readable line.
    pub(crate) fn line(&self) -> ResultLine {
        let cpu = |c: Option<f64>| c.map_or_else(|| "na".into(), |c| format!("{c:.2}"));
        ResultLine::new("persist")
            .field("broker", &self.broker)
            .field("publishers", self.publishers)
            .field("window_s", format!("{:.2}", self.window.as_secs_f64()))
            .field("msgs_per_s", format!("{:.0}", self.rate()))
            .field("p50_us", self.p50.as_micros())
            .field("p99_us", self.p99.as_micros())
            .field("acked", self.acked)
            .field("received", self.received)
            .field("missing", self.missing)
            .field("duplicates", self.duplicates)
            .field("unacked_received", self.unacked_received)
            .field("drain_msgs_per_s", format!("{:.0}", self.drain_rate()))
            .field("broker_cpu", cpu(self.broker_cpu))
            .field(
                "busiest_thread",
                self.busiest_thread
                    .as_ref()
                    .map_or_else(|| "na".into(), |(name, c)| format!("{name}:{c:.2}")),
            )
            .field("tool_cpu", cpu(self.tool_cpu))
            .field("verified", if self.verified() { "ok" } else { "FAILED" })
    }

    /// The main table: `broker | publishers | msgs/s | p50 | p99 | verified`, a row per
    /// broker and publisher count.
    pub(crate) fn table() -> Table {
        Table::new(&[
            ("broker", false),
            ("publishers", true),
            ("msgs/s", true),
            ("p50", true),
            ("p99", true),
            ("verified", false),
        ])
    }

    /// The row of [`PersistResult::table`] for the runs of one broker and publisher count:
    /// with several runs, the median rate (and the range), and the median latencies.
    pub(crate) fn summary_row(runs: &[&Self]) -> Vec<String> {
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or_default()
        };
        let rates: Vec<f64> = runs.iter().map(|r| r.rate()).collect();
        let msgs = if runs.len() == 1 {
            rate(first.rate())
        } else {
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            format!(
                "{} ({}–{})",
                rate(median(rates.clone())),
                rate(lo),
                rate(hi)
            )
        };
        let p50 = median(runs.iter().map(|r| r.p50.as_secs_f64()).collect());
        let p99 = median(runs.iter().map(|r| r.p99.as_secs_f64()).collect());
        let good = runs.iter().filter(|r| r.verified()).count();
        let verified = match (runs.len(), good == runs.len()) {
            (1, true) => format!("yes ({} of {})", first.received, first.acked),
            (1, false) => format!("**NO**: {} of {} missing", first.missing, first.acked),
            (n, true) => format!("yes ({n} of {n} runs)"),
            (n, false) => format!("**NO**: {} of {n} runs failed", n - good),
        };
        vec![
            first.broker.clone(),
            first.publishers.to_string(),
            msgs,
            human(Duration::from_secs_f64(p50)),
            human(Duration::from_secs_f64(p99)),
            verified,
        ]
    }

    /// The details table, a row per run: totals, drain, CPU.
    pub(crate) fn details_table() -> Table {
        Table::new(&[
            ("run", true),
            ("broker", false),
            ("publishers", true),
            ("msgs/s", true),
            ("p50", true),
            ("p99", true),
            ("acked (whole run)", true),
            ("duplicates", true),
            ("drain msgs/s", true),
            ("broker CPU", true),
            ("busiest broker thread", true),
            ("tool CPU", true),
        ])
    }

    /// This run's row of [`PersistResult::details_table`].
    pub(crate) fn details_row(&self, run: usize) -> Vec<String> {
        let cpu =
            |c: Option<f64>| c.map_or_else(|| "n/a".into(), |c| format!("{:.0} %", c * 100.0));
        vec![
            run.to_string(),
            self.broker.clone(),
            self.publishers.to_string(),
            rate(self.rate()),
            human(self.p50),
            human(self.p99),
            self.acked.to_string(),
            self.duplicates.to_string(),
            rate(self.drain_rate()),
            cpu(self.broker_cpu),
            self.busiest_thread.as_ref().map_or_else(
                || "n/a".into(),
                |(name, c)| format!("{name} {:.0} %", c * 100.0),
            ),
            cpu(self.tool_cpu),
        ]
    }
}

/// Runs the scenario against the broker at `addr` (whose PID, if known, is used to read its
/// CPU time).
///
/// # Errors
/// When the scenario cannot run: the subscriber or a publisher cannot connect or subscribe.
/// Losses and late failures are not errors; they are in the result.
pub(crate) fn run(broker: &mut RunningBroker, options: &PersistOptions) -> Result<PersistResult> {
    let addr = broker.addr();
    let pid = broker.pid();
    // 1. The offline persistent session.
    let (mut sub, _) = Client::connect(addr, &subscriber(true))?;
    let filter = TopicFilter::try_from(FILTER)?;
    let one = std::num::NonZeroU16::MIN;
    sub.send(&Packet::from(Subscribe {
        packet_id: one.into(),
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter,
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
    }))?;
    match sub.recv(Duration::from_secs(10))? {
        Some(Packet::SubAck(ack)) if ack.reasons == [SubAckReason::GrantedQoS1] => {}
        other => {
            return Err(Error::Protocol(format!(
                "SUBSCRIBE {FILTER} with QoS 1 not granted: {other:?}"
            )));
        }
    }
    sub.disconnect(Duration::from_secs(10))?;

    // 2. The publishers.
    let load = PublishLoad {
        addr,
        publishers: options.publishers,
        threads: options.threads,
        client_prefix: "mqtt5-bench-pub-".into(),
        topic_prefix: "bench/".into(),
        payload_len: options.payload,
        warmup: options.warmup,
        duration: options.duration,
        ack_timeout: ACK_TIMEOUT,
    };
    let mut samples = Vec::with_capacity(2);
    let outcome = driver::run(&load, || {
        samples.push(CpuSample::take(pid));
    })?;
    let (broker_cpu, tool_cpu, busiest_thread) = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => CpuSample::usage(a, b),
        _ => (None, None, None),
    };

    let mut problems: Vec<String> = outcome
        .publishers
        .iter()
        .filter_map(|p| {
            p.failure
                .as_ref()
                .map(|f| format!("publisher {}: {f}", p.index))
        })
        .collect();
    let acked: Vec<u64> = outcome.publishers.iter().map(|p| p.acked).collect();
    let window_acks = outcome.publishers.iter().map(|p| p.window_acks).sum();
    let latencies = Latencies::from_nanos(
        outcome
            .publishers
            .into_iter()
            .flat_map(|p| p.latencies_ns)
            .collect(),
    );

    // 3. The drain, after a crash if asked.
    if options.crash_before_drain {
        broker.crash_and_restart()?;
    }
    let drained = drain(addr, &acked, options.drain_timeout)?;
    problems.extend(drained.problem);
    Ok(PersistResult {
        broker: broker.name().to_owned(),
        publishers: options.publishers,
        window: outcome.window.until.duration_since(outcome.window.from),
        window_acks,
        p50: latencies.quantile(0.50),
        p99: latencies.quantile(0.99),
        acked: acked.iter().sum(),
        received: drained.received,
        missing: acked.iter().sum::<u64>() - drained.received,
        duplicates: drained.duplicates,
        unacked_received: drained.unacked,
        drain: drained.elapsed,
        broker_cpu,
        busiest_thread,
        tool_cpu,
        problems,
    })
}

/// CPU counters at one instant: the broker's, per thread and in all, and this tool's.
struct CpuSample {
    at: Instant,
    broker: Option<Duration>,
    threads: BTreeMap<u32, (String, Duration)>,
    tool: Option<Duration>,
}

impl CpuSample {
    fn take(pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            broker: pid.and_then(|p| cpu_time(Some(p))),
            threads: pid.map(thread_cpu_times).unwrap_or_default(),
            tool: cpu_time(None),
        }
    }

    /// Between two samples: the broker's and the tool's use in cores, and the broker's
    /// busiest thread.
    fn usage(a: &Self, b: &Self) -> (Option<f64>, Option<f64>, Option<(String, f64)>) {
        let wall = b.at.duration_since(a.at).as_secs_f64();
        if wall <= 0.0 {
            return (None, None, None);
        }
        let cores = |x: Option<Duration>, y: Option<Duration>| {
            Some(y?.checked_sub(x?)?.as_secs_f64() / wall)
        };
        let busiest = b
            .threads
            .iter()
            .filter_map(|(tid, (name, end))| {
                let start = a.threads.get(tid).map_or(Duration::ZERO, |(_, s)| *s);
                Some((name.clone(), end.checked_sub(start)?.as_secs_f64() / wall))
            })
            .max_by(|x, y| x.1.total_cmp(&y.1));
        (cores(a.broker, b.broker), cores(a.tool, b.tool), busiest)
    }
}

fn subscriber(clean_start: bool) -> ConnectOptions {
    ConnectOptions {
        client_id: SUBSCRIBER.into(),
        clean_start,
        session_expiry: SESSION_EXPIRY,
    }
}

/// What the drain found.
struct Drained {
    /// Distinct acknowledged messages received.
    received: u64,
    duplicates: u64,
    /// Messages received that were never acknowledged to their publisher.
    unacked: u64,
    /// From the CONNACK to the last expected message (or the last message).
    elapsed: Duration,
    problem: Option<String>,
}

/// Which sequence numbers of each publisher arrived: one bit each.
struct Seen {
    bits: Vec<Vec<u64>>,
}

impl Seen {
    fn new(acked: &[u64]) -> Self {
        Self {
            bits: acked
                .iter()
                .map(|&n| vec![0; usize::try_from(n.div_ceil(64)).unwrap_or(0)])
                .collect(),
        }
    }

    /// Marks a message; `Some(true)` when new, `Some(false)` when a duplicate, `None` when it
    /// is not an acknowledged message.
    fn mark(&mut self, publisher: u32, seq: u64) -> Option<bool> {
        let words = self.bits.get_mut(usize::try_from(publisher).ok()?)?;
        let word = words.get_mut(usize::try_from(seq / 64).ok()?)?;
        let bit = 1 << (seq % 64);
        let new = *word & bit == 0;
        *word |= bit;
        Some(new)
    }
}

/// Reconnects the subscriber and receives its queue, acknowledging each message.
fn drain(addr: SocketAddr, acked: &[u64], timeout: Duration) -> Result<Drained> {
    let expected: u64 = acked.iter().sum();
    let (mut sub, connack) = Client::connect(addr, &subscriber(false))?;
    let started = Instant::now();
    let mut drained = Drained {
        received: 0,
        duplicates: 0,
        unacked: 0,
        elapsed: Duration::ZERO,
        problem: None,
    };
    if !connack.session_present {
        drained.problem = Some("the subscriber's session was not present".into());
        return Ok(drained);
    }
    let mut seen = Seen::new(acked);
    // Messages past the acknowledged ones (sent, never acknowledged), by publisher.
    let mut extra = std::collections::HashSet::new();
    let mut last = started;
    let mut packets = Vec::with_capacity(4096);
    while drained.received < expected {
        let now = Instant::now();
        if now.duration_since(started) > timeout {
            drained.problem = Some(format!("drain stopped after {timeout:?}"));
            break;
        }
        if now.duration_since(last) > DRAIN_IDLE {
            drained.problem = Some(format!("no message for {DRAIN_IDLE:?} while draining"));
            break;
        }
        packets.clear();
        sub.recv_batch(Duration::from_millis(200), &mut packets)?;
        if !packets.is_empty() {
            last = Instant::now();
        }
        for packet in packets.drain(..) {
            match packet {
                Packet::Publish(p) => {
                    if let Delivery::AtLeastOnce(id) = p.delivery {
                        sub.queue(&Packet::from(PubAck::new(id)));
                    }
                    let Some((publisher, seq)) = read_stamp(p.payload()) else {
                        continue;
                    };
                    match seen.mark(publisher, seq) {
                        Some(true) => drained.received += 1,
                        Some(false) => drained.duplicates += 1,
                        None => {
                            if !extra.insert((publisher, seq)) {
                                drained.duplicates += 1;
                            }
                        }
                    }
                }
                Packet::Disconnect(d) => {
                    return Err(Error::Protocol(format!(
                        "DISCONNECT while draining: {:?}",
                        d.reason
                    )));
                }
                _ => {}
            }
        }
        sub.flush()?;
    }
    drained.elapsed = last.duration_since(started);
    drained.unacked = u64::try_from(extra.len()).unwrap_or(u64::MAX);
    let _ = sub.disconnect(Duration::from_secs(5));
    Ok(drained)
}
