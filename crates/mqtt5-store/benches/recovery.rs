//! Recovery of a large [`SqliteStore`]: how long a broker with a big database takes to start.
//!
//! `cargo bench -p mqtt5-store --bench recovery` builds a database in `MQTT5_BENCH_DIR`
//! (default: the system temporary directory), closes it, then times [`SqliteStore::open`]
//! followed by [`Store::recover`] on the reopened file, three times, and prints a Markdown
//! table. The database holds
//!
//! - 100,000 offline persistent MQTT 5 sessions, each with a client record and one or two
//!   QoS 1 subscriptions (`cmd/dev-NNNNNN/#` for all, a `plant/SSS/+/+/alarm` filter with a
//!   Subscription Identifier for every other one);
//! - 1,000,000 retained messages on device topics such as
//!   `plant/012/line-07/dev-012345/temperature`, with 20–30 byte JSON payloads;
//! - 1,000,000 queued messages: QoS 1 PUBLISH packets stored once (`MessageStored`) and queued
//!   for one session each (`Delivery`, state queued), ten per session.
//!
//! Everything goes through [`Store::apply`] in batches of 10,000 ops, as the broker's writer
//! would hand them over, with `synchronous=OFF` while building (the build is not what is
//! measured). The reopened store uses the default `synchronous=FULL`. The file has just been
//! written, so recovery reads it from a warm page cache: the figures are CPU cost (SQLite,
//! decoding every stored packet, building the maps), not disk reads.
//!
//! Peak memory is the growth of the process's resident set during `recover`, from
//! `/proc/self/status` (the high-water mark is reset through `/proc/self/clear_refs` before
//! each run), Linux only.
//!
//! `MQTT5_RECOVERY_SCALE` (default 1) multiplies the three counts, for a quick check:
//! `MQTT5_RECOVERY_SCALE=0.01 cargo bench -p mqtt5-store --bench recovery`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mqtt5_codec::{
    Delivery, PacketId, ProtocolVersion, Publish, QoS, SubscriptionOptions, TopicName,
};
use mqtt5_store::{
    ClientRecord, DeliveryRecord, DeliveryState, Recovered, SessionRecord, SqliteOptions,
    SqliteStore, Store, StoreOp, Synchronous,
};

/// Sessions at scale 1.
const SESSIONS: usize = 100_000;
/// Retained messages at scale 1.
const RETAINED: usize = 1_000_000;
/// Queued messages (stored once, one delivery each) at scale 1.
const QUEUED: usize = 1_000_000;
/// Ops per `apply`.
const BATCH: usize = 10_000;
/// Timed open + recover runs.
const RUNS: usize = 3;

/// A fixed wall-clock time for every record: 2023-11-14T22:13:20Z.
const NOW_MS: u64 = 1_700_000_000_000;

const METRICS: [&str; 10] = [
    "status",
    "temperature",
    "humidity",
    "battery",
    "firmware",
    "location",
    "rssi",
    "uptime",
    "config",
    "alarm",
];

fn client_id(session: usize) -> String {
    format!("dev-{session:06}")
}

/// The plant (site) of a device: a thousand devices each.
const fn site(device: usize) -> usize {
    device / 1000
}

/// A device topic: `plant/SSS/line-LL/dev-NNNNNN/METRIC`.
fn device_topic(device: usize, metric: &str) -> String {
    let line = (device / 50) % 20;
    format!(
        "plant/{:03}/line-{line:02}/dev-{device:06}/{metric}",
        site(device)
    )
}

/// A QoS 1 PUBLISH as a device or an application would send it.
fn publish(topic: &str, payload: String, packet_id: u16, retain: bool) -> Publish {
    let topic = TopicName::try_from(topic).expect("a valid topic");
    let mut p = Publish::new(topic, payload);
    p.retain = retain;
    p.delivery = Delivery::AtLeastOnce(PacketId::new(packet_id.max(1)).expect("non-zero"));
    p
}

/// The client record, session and subscriptions of one offline persistent session.
fn session_ops(session: usize, ops: &mut Vec<StoreOp>) {
    let id = client_id(session);
    ops.push(StoreOp::ClientConnected(ClientRecord {
        client_id: id.clone(),
        username: Some(format!("user-{}", session % 1000)),
        protocol: ProtocolVersion::V5,
        peer: format!(
            "10.{}.{}.{}:{}",
            session >> 16,
            (session >> 8) & 255,
            session & 255,
            40_000 + session % 20_000
        ),
        at_ms: NOW_MS - 3_600_000,
    }));
    ops.push(StoreOp::SessionSaved(SessionRecord {
        client_id: id.clone(),
        protocol: ProtocolVersion::V5,
        expiry_interval: 86_400,
        expires_at_ms: Some(NOW_MS + 86_400_000),
        will: None,
        owner: Some(format!("user:{id}")),
    }));
    ops.push(StoreOp::Subscribed {
        client_id: id.clone(),
        filter: format!("cmd/{id}/#"),
        options: SubscriptionOptions::new(QoS::AtLeastOnce),
        identifier: None,
    });
    if session.is_multiple_of(2) {
        ops.push(StoreOp::Subscribed {
            client_id: id.clone(),
            filter: format!("plant/{:03}/+/+/alarm", site(session)),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
            identifier: Some(1),
        });
    }
    ops.push(StoreOp::ClientDisconnected {
        client_id: id,
        at_ms: NOW_MS - 60_000,
        reason: "connection lost".into(),
    });
}

fn retained_op(i: usize) -> StoreOp {
    let device = i / METRICS.len();
    let metric = METRICS[i % METRICS.len()];
    let payload = format!(
        "{{\"v\":{}.{},\"ts\":{}}}",
        i % 97,
        i % 10,
        NOW_MS / 1000 + (i as u64 % 86_400)
    );
    StoreOp::RetainSet {
        message: publish(
            &device_topic(device, metric),
            payload,
            (i % 65_535) as u16 + 1,
            true,
        ),
        qos: mqtt5_codec::QoS::AtLeastOnce,
        expires_at_ms: None,
    }
}

/// Message `i` is queued for session `i % sessions`, as its `i / sessions`-th delivery.
fn queued_ops(i: usize, sessions: usize, ops: &mut Vec<StoreOp>) {
    let session = i % sessions;
    let id = client_id(session);
    let payload = format!("{{\"set\":\"mode\",\"value\":{},\"n\":{i}}}", i % 7);
    ops.push(StoreOp::MessageStored {
        id: i as u64 + 1,
        message: publish(
            &format!("cmd/{id}/set"),
            payload,
            (i % 65_535) as u16 + 1,
            false,
        ),
        qos: mqtt5_codec::QoS::AtLeastOnce,
        expires_at_ms: None,
    });
    ops.push(StoreOp::Delivery(DeliveryRecord {
        client_id: id,
        seq: (i / sessions) as u64 + 1,
        message_id: i as u64 + 1,
        qos: mqtt5_codec::QoS::AtLeastOnce,
        retain: false,
        subscription_ids: Vec::new(),
        state: DeliveryState::Queued,
    }));
}

/// Applies the ops `make` produces for `0..count` in batches, printing progress.
fn build_phase(
    store: &mut SqliteStore,
    what: &str,
    count: usize,
    mut make: impl FnMut(usize, &mut Vec<StoreOp>),
) {
    let started = Instant::now();
    let mut ops = Vec::with_capacity(BATCH + 8);
    let mut next_report = count / 4;
    for i in 0..count {
        make(i, &mut ops);
        if ops.len() >= BATCH || i + 1 == count {
            store.apply(&ops).expect("apply a batch");
            ops.clear();
        }
        if i + 1 >= next_report && next_report > 0 {
            println!(
                "  {what}: {}/{count} ({:.1} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
            next_report += count / 4;
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut file = path.as_os_str().to_owned();
    file.push(suffix);
    PathBuf::from(file)
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident set (`VmHWM`) to the current one; false when the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Run {
    open: Duration,
    recover: Duration,
    /// Peak resident-set growth during open + recover, in KiB.
    peak_growth_kib: Option<u64>,
    /// Resident set still held by the recovered state, in KiB.
    held_kib: Option<u64>,
}

fn timed_recovery(path: &Path) -> (Run, Recovered) {
    let peak_reset = reset_peak_rss();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let mut store = SqliteStore::open(path, SqliteOptions::default()).expect("reopen");
    let open = started.elapsed();
    let recovered = store.recover().expect("recover");
    let recover = started.elapsed() - open;
    drop(store);
    let peak = status_kib("VmHWM:");
    let after = status_kib("VmRSS:");
    let peak_growth_kib = match (peak_reset, before, peak) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    let held_kib = before.zip(after).map(|(b, a)| a.saturating_sub(b));
    (
        Run {
            open,
            recover,
            peak_growth_kib,
            held_kib,
        },
        recovered,
    )
}

fn scale() -> f64 {
    std::env::var("MQTT5_RECOVERY_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

fn scaled(n: usize, by: f64) -> usize {
    ((n as f64 * by).round() as usize).max(1)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("recovery: run with `cargo bench` to measure");
        return;
    }
    let by = scale();
    let (sessions, retained, queued) = (
        scaled(SESSIONS, by),
        scaled(RETAINED, by),
        scaled(QUEUED, by),
    );
    let dir = std::env::var_os("MQTT5_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let path = dir.join(format!("mqtt5-recovery-{}.db", std::process::id()));
    remove_db(&path);
    println!(
        "building {} with {sessions} sessions, {retained} retained and {queued} queued messages",
        path.display()
    );

    let build_started = Instant::now();
    let options = SqliteOptions {
        synchronous: Synchronous::Off,
        ..SqliteOptions::default()
    };
    let mut store = SqliteStore::open(&path, options).expect("create the database");
    build_phase(&mut store, "sessions", sessions, |i, ops| {
        session_ops(i, ops)
    });
    build_phase(&mut store, "retained", retained, |i, ops| {
        ops.push(retained_op(i))
    });
    build_phase(&mut store, "queued", queued, |i, ops| {
        queued_ops(i, sessions, ops);
    });
    let wal_open = file_size(&with_suffix(&path, "-wal"));
    let db_open = file_size(&path);
    drop(store);
    let build = build_started.elapsed();
    let db_closed = file_size(&path);
    let wal_closed = file_size(&with_suffix(&path, "-wal"));
    println!("  built in {:.1} s", build.as_secs_f64());

    let mut runs = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let (r, recovered) = timed_recovery(&path);
        assert_eq!(recovered.sessions.len(), sessions, "sessions recovered");
        assert_eq!(recovered.retained.len(), retained, "retained recovered");
        assert_eq!(recovered.messages.len(), queued, "messages recovered");
        let deliveries: usize = recovered
            .sessions
            .values()
            .map(|s| s.deliveries.len())
            .sum();
        assert_eq!(deliveries, queued, "deliveries recovered");
        println!(
            "  run {run}: open {:.0} ms, recover {:.0} ms",
            ms(r.open),
            ms(r.recover)
        );
        let dropping = Instant::now();
        drop(recovered);
        if run == 1 {
            println!(
                "  (dropping the recovered state: {:.0} ms)",
                ms(dropping.elapsed())
            );
        }
        runs.push(r);
    }
    remove_db(&path);

    let total = |r: &Run| r.open + r.recover;
    let min = |f: &dyn Fn(&Run) -> Duration| runs.iter().map(f).min().unwrap_or_default();
    let med = |f: &dyn Fn(&Run) -> Duration| median(runs.iter().map(f).collect());
    let kib = |v: Option<u64>| {
        v.map_or_else(
            || "n/a".to_owned(),
            |k| format!("{:.0} MiB", k as f64 / 1024.0),
        )
    };
    let peak = runs.iter().filter_map(|r| r.peak_growth_kib).max();
    let held = runs.first().and_then(|r| r.held_kib);

    println!();
    println!(
        "SqliteStore recovery: {sessions} sessions ({} subscriptions), {retained} retained, \
         {queued} queued QoS 1 messages; {RUNS} runs, warm page cache\n",
        sessions + sessions.div_ceil(2)
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| build ({} ops in batches of {BATCH}, synchronous=OFF) | {:.1} s |",
        sessions * 4 + sessions.div_ceil(2) + retained + 2 * queued,
        build.as_secs_f64()
    );
    println!(
        "| database file, store open | {:.0} MiB (+ {:.0} MiB WAL) |",
        mib(db_open),
        mib(wal_open)
    );
    println!(
        "| database file, closed | {:.0} MiB (+ {:.0} MiB WAL) |",
        mib(db_closed),
        mib(wal_closed)
    );
    println!(
        "| `SqliteStore::open` (min / median) | {:.0} ms / {:.0} ms |",
        ms(min(&|r| r.open)),
        ms(med(&|r| r.open))
    );
    println!(
        "| `recover()` (min / median) | {:.0} ms / {:.0} ms |",
        ms(min(&|r| r.recover)),
        ms(med(&|r| r.recover))
    );
    println!(
        "| open + recover (min / median) | {:.0} ms / {:.0} ms |",
        ms(min(&total)),
        ms(med(&total))
    );
    println!("| peak RSS growth during open + recover | {} |", kib(peak));
    println!("| RSS held by the recovered state | {} |", kib(held));
}
