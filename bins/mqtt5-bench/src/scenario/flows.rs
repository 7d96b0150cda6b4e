//! The throughput and latency scenarios, all run by [`crate::flow`]:
//!
//! - **fan-in**: P publishers (4 by default), each on its own topic `bench/in/N`, to one
//!   subscriber on `bench/in/+`; QoS 0, 1 and 2, 64 B and 1 KiB payloads. Reports messages/s.
//! - **fan-out**: one publisher on `bench/out` to 100 subscribers of `bench/out`. Reports
//!   deliveries/s.
//! - **topics**: 4 publishers cycling over 4,096 topics `bench/t/A/B` (A, B < 64), to 64
//!   subscribers: a third hold 64 exact filters `bench/t/I/B`, a third `bench/t/+/I`, a third
//!   `bench/t/I/#`, and each 24 more filters (exact, `+` and `#`) that match nothing. About one
//!   delivery per message. Reports messages/s in and deliveries/s.
//! - **latency**: one publisher paced at 1,000 messages/s to one subscriber, QoS 0 and 1:
//!   p50, p99 and p99.9 from the send time in the payload to its arrival.
//!
//! Every run is closed-loop (see [`crate::flow`]) and bounded in time, and checks every
//! delivery: QoS 1 and 2 loss fails the run, QoS 0 loss is reported.

use std::fmt;
use std::time::Duration;

use mqtt5_codec::QoS;

use crate::broker::RunningBroker;
use crate::error::Result;
use crate::flow::{self, FlowOutcome, FlowSpec};
use crate::report::{Latencies, ResultLine, Table, human, rate};

/// Which scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// P publishers to one subscriber.
    FanIn,
    /// One publisher to many subscribers.
    FanOut,
    /// Many topics and filters.
    Topics,
    /// A paced publisher, latency percentiles.
    Latency,
}

impl Kind {
    /// The scenario's name in result lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::FanIn => "fan-in",
            Self::FanOut => "fan-out",
            Self::Topics => "topics",
            Self::Latency => "latency",
        }
    }
}

/// One configuration of a scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    /// The scenario.
    pub(crate) kind: Kind,
    /// QoS of messages and subscriptions.
    pub(crate) qos: QoS,
    /// Payload bytes.
    pub(crate) payload: usize,
    /// Publishers.
    pub(crate) publishers: usize,
    /// Subscribers.
    pub(crate) subscribers: usize,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let qos = match self.qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        };
        write!(
            f,
            "qos{qos}-{}B-{}p-{}s",
            self.payload, self.publishers, self.subscribers
        )
    }
}

/// How every case runs.
#[derive(Debug, Clone)]
pub(crate) struct FlowOptions {
    /// Publishing before the window.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
    /// The longest wait for the last messages after the window.
    pub(crate) drain: Duration,
    /// Incomplete messages allowed per publisher.
    pub(crate) window: usize,
    /// The latency scenario's rate, messages/s.
    pub(crate) latency_rate: f64,
}

/// Topics of the topics scenario: `bench/t/A/B`, A and B below this.
const TOPIC_SIDE: usize = 64;

/// The flow of a case.
pub(crate) fn spec(case: &Case, broker: &RunningBroker, options: &FlowOptions) -> FlowSpec {
    let (topics, publishers, subscribers): (Vec<String>, Vec<Vec<usize>>, Vec<Vec<String>>) =
        match case.kind {
            Kind::FanIn => (
                (0..case.publishers)
                    .map(|p| format!("bench/in/{p}"))
                    .collect(),
                (0..case.publishers).map(|p| vec![p]).collect(),
                (0..case.subscribers)
                    .map(|_| vec!["bench/in/+".to_owned()])
                    .collect(),
            ),
            Kind::FanOut | Kind::Latency => (
                vec!["bench/out".to_owned()],
                (0..case.publishers).map(|_| vec![0]).collect(),
                (0..case.subscribers)
                    .map(|_| vec!["bench/out".to_owned()])
                    .collect(),
            ),
            Kind::Topics => {
                let n = TOPIC_SIDE * TOPIC_SIDE;
                let topics = (0..n)
                    .map(|t| format!("bench/t/{}/{}", t / TOPIC_SIDE, t % TOPIC_SIDE))
                    .collect();
                let publishers = (0..case.publishers)
                    .map(|p| {
                        let offset = p * n / case.publishers.max(1);
                        (0..n).map(|k| (offset + k) % n).collect()
                    })
                    .collect();
                (
                    topics,
                    publishers,
                    (0..case.subscribers).map(topic_filters).collect(),
                )
            }
        };
    FlowSpec {
        addr: broker.addr(),
        client_prefix: format!("mqtt5-bench-{}-", case.kind.name()),
        qos: case.qos,
        payload: case.payload,
        topics,
        publishers,
        subscribers,
        window: options.window,
        rate: (case.kind == Kind::Latency).then_some(options.latency_rate),
        warmup: options.warmup,
        duration: options.duration,
        drain: options.drain,
        latencies: case.kind == Kind::Latency,
    }
}

/// The filters of subscriber `i` of the topics scenario: one kind that matches 64 topics, and
/// 24 that match none.
fn topic_filters(i: usize) -> Vec<String> {
    let mut filters: Vec<String> = match i % 3 {
        0 => (0..TOPIC_SIDE)
            .map(|b| format!("bench/t/{i}/{b}"))
            .collect(),
        1 => vec![format!("bench/t/+/{i}")],
        _ => vec![format!("bench/t/{i}/#")],
    };
    for j in 0..8 {
        filters.push(format!("elsewhere/{i}/{j}"));
        filters.push(format!("elsewhere/+/{i}/{j}"));
        filters.push(format!("elsewhere/{i}/{j}/#"));
    }
    filters
}

/// What one run measured and found.
#[derive(Debug, Clone)]
pub(crate) struct FlowResult {
    /// The case.
    pub(crate) case: Case,
    /// The broker's name.
    pub(crate) broker: String,
    /// CPUs the broker was pinned to, or "none".
    pub(crate) pin: String,
    /// What the flow did.
    pub(crate) outcome: FlowOutcome,
    /// Latency percentiles (latency scenario).
    pub(crate) p50: Duration,
    /// 99th percentile.
    pub(crate) p99: Duration,
    /// 99.9th percentile.
    pub(crate) p999: Duration,
}

impl FlowResult {
    /// Messages completed per second in the window.
    pub(crate) fn msgs_rate(&self) -> f64 {
        per_second(self.outcome.window_completed, self.outcome.window)
    }

    /// Deliveries per second in the window.
    pub(crate) fn deliveries_rate(&self) -> f64 {
        per_second(self.outcome.window_deliveries, self.outcome.window)
    }

    /// No connection failed, and at QoS 1 and 2 nothing was lost or left unacknowledged.
    pub(crate) fn verified(&self) -> bool {
        self.outcome.problems.is_empty()
            && (self.case.qos == QoS::AtMostOnce
                || (self.outcome.missing() == 0 && self.outcome.unacked == 0))
    }

    /// The machine-readable line.
    pub(crate) fn line(&self) -> ResultLine {
        let cpu = |c: Option<f64>| c.map_or_else(|| "na".into(), |c| format!("{c:.2}"));
        let o = &self.outcome;
        ResultLine::new(self.case.kind.name())
            .field("broker", &self.broker)
            .field("case", self.case)
            .field("pin", &self.pin)
            .field("window_s", format!("{:.2}", o.window.as_secs_f64()))
            .field("msgs_per_s", format!("{:.0}", self.msgs_rate()))
            .field("deliveries_per_s", format!("{:.0}", self.deliveries_rate()))
            .field("p50_us", self.p50.as_micros())
            .field("p99_us", self.p99.as_micros())
            .field("p999_us", self.p999.as_micros())
            .field("sent", o.sent)
            .field("expected", o.expected)
            .field("received", o.received)
            .field("missing", o.missing())
            .field("duplicates", o.duplicates)
            .field("unacked", o.unacked)
            .field("stalls", o.stalls)
            .field("broker_cpu", cpu(o.broker_cpu))
            .field("tool_cpu", cpu(o.tool_cpu))
            .field("verified", if self.verified() { "ok" } else { "FAILED" })
    }

    /// The summary table.
    pub(crate) fn table() -> Table {
        Table::new(&[
            ("scenario", false),
            ("case", false),
            ("broker", false),
            ("msgs/s", true),
            ("deliveries/s", true),
            ("p50", true),
            ("p99", true),
            ("p99.9", true),
            ("lost", true),
            ("broker CPU", true),
            ("tool CPU", true),
            ("verified", false),
        ])
    }

    /// The row of [`FlowResult::table`] for the runs of one case and broker: medians.
    pub(crate) fn summary_row(runs: &[&Self]) -> Vec<String> {
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        let median = |v: Vec<f64>| median(v);
        let secs = |f: fn(&Self) -> Duration| {
            human(Duration::from_secs_f64(median(
                runs.iter().map(|r| f(r).as_secs_f64()).collect(),
            )))
        };
        let cpu = |f: fn(&FlowOutcome) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(&r.outcome)).collect();
            if v.is_empty() {
                "n/a".into()
            } else {
                format!("{:.0} %", median(v) * 100.0)
            }
        };
        let good = runs.iter().filter(|r| r.verified()).count();
        let lost: u64 = runs.iter().map(|r| r.outcome.missing()).sum();
        vec![
            first.case.kind.name().into(),
            first.case.to_string(),
            first.broker.clone(),
            rate(median(runs.iter().map(|r| r.msgs_rate()).collect())),
            rate(median(runs.iter().map(|r| r.deliveries_rate()).collect())),
            secs(|r| r.p50),
            secs(|r| r.p99),
            secs(|r| r.p999),
            lost.to_string(),
            cpu(|o| o.broker_cpu),
            cpu(|o| o.tool_cpu),
            if good == runs.len() {
                format!("yes ({good} of {})", runs.len())
            } else {
                format!("**NO** ({} of {} failed)", runs.len() - good, runs.len())
            },
        ]
    }
}

/// The median of some values (the mean of the middle two for an even count); zero without
/// any.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match (v.len() % 2, v.get(mid.wrapping_sub(1)), v.get(mid)) {
        (0, Some(a), Some(b)) => (a + b) / 2.0,
        (_, _, Some(m)) => *m,
        _ => 0.0,
    }
}

fn per_second(n: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Runs one case against a started broker.
///
/// # Errors
/// When the clients cannot be set up.
pub(crate) fn run(
    broker: &RunningBroker,
    case: &Case,
    options: &FlowOptions,
    pin: &str,
) -> Result<FlowResult> {
    let mut outcome = flow::run(&spec(case, broker, options), broker.pid())?;
    let latencies = Latencies::from_nanos(std::mem::take(&mut outcome.latencies_ns));
    Ok(FlowResult {
        case: *case,
        broker: broker.name().to_owned(),
        pin: pin.to_owned(),
        p50: latencies.quantile(0.50),
        p99: latencies.quantile(0.99),
        p999: latencies.quantile(0.999),
        outcome,
    })
}
