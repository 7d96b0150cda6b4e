//! **auth-storm**: what a storm of failed logins does to an unrelated client.
//!
//! mqtt5d runs with one user (`victim`, an argon2id password hash as `mqtt5d user add` makes
//! it). A publisher and a subscriber, unrelated to the storm, exchange QoS 0 messages paced at
//! 1,000 a second (the latency scenario of [`crate::scenario::flows`]), first alone (the
//! baseline), then while `storm` clients each keep one CONNECT as `victim` with a wrong
//! password open at a time (connect, wait for the refusal, reconnect). The result is the
//! pair's p50 and p99 in both phases, in the same run, and their ratio, with the number of
//! refused logins the broker answered during the storm.
//!
//! Each round runs once with the broker's default login delay and once with the delay off
//! (`failed_login_delay_max_ms = 0`), so that every failed login costs an argon2 check at the
//! highest rate the clients can drive: what is measured then is the password checkers' effect
//! on the event loop alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt5_codec::{Connect, Decoder, MqttString, Packet, ProtocolVersion, QoS};

use crate::broker::RunningBroker;
use crate::error::{Context, Result};
use crate::report::{ResultLine, Table, human};
use crate::scenario::flows::{self, Case, FlowOptions, Kind};

/// The user the storm guesses at.
const USER: &str = "victim";

/// Its real password (never sent by the storm).
const PASSWORD: &str = "the right password";

/// How long one storm client waits for a CONNACK before it gives up on that attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct StormOptions {
    /// Concurrent wrong-password clients.
    pub(crate) clients: usize,
    /// The latency measurement of each phase.
    pub(crate) flow: FlowOptions,
    /// `failed_login_delay_max_ms` of the broker; `None` leaves the key out.
    pub(crate) login_delay_ms: Option<u64>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct StormResult {
    /// The broker's login delay, ms (`None`: its default).
    pub(crate) login_delay_ms: Option<u64>,
    /// Storm clients.
    pub(crate) clients: usize,
    /// The pair's p50 and p99 without the storm.
    pub(crate) base: (Duration, Duration),
    /// The pair's p50 and p99 during the storm.
    pub(crate) storm: (Duration, Duration),
    /// Refusals the storm received while the pair was measured.
    pub(crate) refused: u64,
    /// Storm connections that ended without a CONNACK (closed or timed out).
    pub(crate) unanswered: u64,
    /// The pair lost nothing and its connections had no problem, in both phases.
    pub(crate) pair_ok: bool,
}

impl StormResult {
    /// p99 during the storm over p99 without it.
    pub(crate) fn p99_ratio(&self) -> f64 {
        ratio(self.storm.1, self.base.1)
    }

    /// p50 during the storm over p50 without it.
    pub(crate) fn p50_ratio(&self) -> f64 {
        ratio(self.storm.0, self.base.0)
    }

    /// The machine-readable line.
    pub(crate) fn line(&self) -> ResultLine {
        ResultLine::new("auth-storm")
            .field("broker", "mqtt5d")
            .field(
                "login_delay_ms",
                self.login_delay_ms
                    .map_or_else(|| "unset".to_owned(), |ms| ms.to_string()),
            )
            .field("storm_clients", self.clients)
            .field("base_p50_us", self.base.0.as_micros())
            .field("base_p99_us", self.base.1.as_micros())
            .field("storm_p50_us", self.storm.0.as_micros())
            .field("storm_p99_us", self.storm.1.as_micros())
            .field("p50_ratio", format!("{:.2}", self.p50_ratio()))
            .field("p99_ratio", format!("{:.2}", self.p99_ratio()))
            .field("refused", self.refused)
            .field("unanswered", self.unanswered)
            .field("verified", if self.pair_ok { "ok" } else { "FAILED" })
    }

    /// The summary table.
    pub(crate) fn table() -> Table {
        Table::new(&[
            ("login delay", false),
            ("storm clients", true),
            ("p50 alone", true),
            ("p99 alone", true),
            ("p50 in storm", true),
            ("p99 in storm", true),
            ("p99 ratio", true),
            ("refusals/s", true),
        ])
    }

    /// A row of [`StormResult::table`].
    pub(crate) fn row(&self, window: Duration) -> Vec<String> {
        vec![
            match self.login_delay_ms {
                None => "(broker default)".into(),
                Some(0) => "off".into(),
                Some(ms) => format!("up to {ms} ms"),
            },
            self.clients.to_string(),
            human(self.base.0),
            human(self.base.1),
            human(self.storm.0),
            human(self.storm.1),
            format!("{:.2}×", self.p99_ratio()),
            format!(
                "{:.0}",
                self.refused as f64 / window.as_secs_f64().max(f64::EPSILON)
            ),
        ]
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// One run: a broker with the user, the baseline, then the storm.
///
/// # Errors
/// When the broker or the pair cannot be set up.
pub(crate) fn run(mqtt5d: &Path, data_root: &Path, options: &StormOptions) -> Result<StormResult> {
    let extra = options.login_delay_ms.map_or_else(String::new, |ms| {
        format!("[auth]\nfailed_login_delay_max_ms = {ms}\n")
    });
    let broker = RunningBroker::start_mqtt5d_with_users(
        mqtt5d,
        data_root,
        "periodic",
        &extra,
        &[(USER, PASSWORD)],
    )?;
    let case = Case {
        kind: Kind::Latency,
        qos: QoS::AtMostOnce,
        payload: 64,
        publishers: 1,
        subscribers: 1,
    };
    let base = flows::run(&broker, &case, &options.flow, "none")?;
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..options.clients {
        let (stop, refused, unanswered) = (
            Arc::clone(&stop),
            Arc::clone(&refused),
            Arc::clone(&unanswered),
        );
        let addr = broker.addr();
        threads.push(
            std::thread::Builder::new()
                .name(format!("storm-{i}"))
                .spawn(move || storm_client(addr, i, &stop, &refused, &unanswered))
                .context(|| "starting a storm thread".into())?,
        );
    }
    // Let the storm reach its pace before the measurement.
    let ramp = Instant::now() + Duration::from_secs(2);
    while Instant::now() < ramp && refused.load(Ordering::Relaxed) < options.clients as u64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = refused.load(Ordering::Relaxed);
    let during = flows::run(&broker, &case, &options.flow, "none");
    let after = refused.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    broker.stop()?;
    let during = during?;
    Ok(StormResult {
        login_delay_ms: options.login_delay_ms,
        clients: options.clients,
        base: (base.p50, base.p99),
        storm: (during.p50, during.p99),
        refused: after - before,
        unanswered: unanswered.load(Ordering::Relaxed),
        pair_ok: base.outcome.problems.is_empty() && during.outcome.problems.is_empty(),
    })
}

/// One storm client: wrong-password CONNECTs, one at a time, until told to stop.
fn storm_client(
    addr: SocketAddr,
    index: usize,
    stop: &AtomicBool,
    refused: &AtomicU64,
    unanswered: &AtomicU64,
) {
    let connect = Connect {
        client_id: MqttString::try_from(format!("storm-{index}").as_str()).unwrap_or_default(),
        username: MqttString::try_from(USER).ok(),
        password: Some(bytes::Bytes::from_static(b"a wrong guess")),
        ..Connect::default()
    };
    let mut wire = BytesMut::new();
    Packet::from(connect).encode(ProtocolVersion::V5, &mut wire);
    while !stop.load(Ordering::Relaxed) {
        match attempt(addr, &wire) {
            Some(true) => refused.fetch_add(1, Ordering::Relaxed),
            _ => unanswered.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// One login: `Some(true)` when the broker refused it with a CONNACK.
fn attempt(addr: SocketAddr, connect: &[u8]) -> Option<bool> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(ATTEMPT_TIMEOUT)).ok()?;
    stream.write_all(connect).ok()?;
    let decoder = Decoder::new(ProtocolVersion::V5);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 256];
    loop {
        if let Ok(Some(packet)) = decoder.decode(&mut buf) {
            return Some(matches!(packet, Packet::ConnAck(a) if a.reason.is_error()));
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return Some(false);
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
}
