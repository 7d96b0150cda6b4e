//! Group commit of the store [`Writer`] over a [`SqliteStore`] with `synchronous=FULL`.
//!
//! `cargo bench -p mqtt5-store --bench group_commit` prints a Markdown table. Each row runs for
//! about two seconds on a fresh database file in `MQTT5_BENCH_DIR` (default: the system
//! temporary directory; it must be on a real disk for the fsyncs to mean anything).
//!
//! - *N clients*: N threads, each submitting a 1-op batch and waiting for its commit before
//!   the next, as a client waits for its PUBACK. Group commit should make the batch size
//!   grow with N while the commit rate stays about one fsync time.
//! - *pipelined*: one thread submitting 1-op batches without waiting (as the event loop does
//!   for many clients); the bounded queue pushes back.
//!
//! Latency is from `submit` to the moment the completion covering the batch is received.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mqtt5_store::{
    AclRecord, Completion, SqliteOptions, SqliteStore, StoreOp, Synchronous, Writer, WriterConfig,
    WriterHandle,
};

const RUN: Duration = Duration::from_secs(2);

/// The highest batch id committed so far, plus one, with a condition variable to wait on.
#[derive(Default)]
struct Watermark {
    committed: Mutex<u64>,
    changed: Condvar,
}

impl Watermark {
    fn wait_past(&self, id: u64) {
        let mut committed = self.committed.lock().expect("lock");
        while *committed <= id {
            committed = self.changed.wait(committed).expect("lock");
        }
    }
}

struct Row {
    label: String,
    elapsed: Duration,
    commits: u64,
    batches: u64,
    p50: Duration,
    p99: Duration,
}

fn op(client: usize, n: u64) -> Vec<StoreOp> {
    vec![StoreOp::AclAdded(AclRecord {
        scope: format!("user c{client}"),
        access: "read".into(),
        topic: format!("bench/{client}/{n}"),
    })]
}

fn run(label: String, clients: usize, pipelined: bool) -> Row {
    let dir = std::env::var_os("MQTT5_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let path = dir.join(format!(
        "mqtt5-group-commit-{}-{clients}-{pipelined}.db",
        std::process::id()
    ));
    remove_db(&path);
    let options = SqliteOptions {
        synchronous: Synchronous::Full,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&path, options).expect("open the database");

    let (tx, completions) = crossbeam_channel::unbounded();
    let (writer, handle) = Writer::spawn(store, WriterConfig::default(), tx, Box::new(|| {}))
        .expect("spawn the writer");

    // The collector: when each completion arrived, and the watermark for waiting clients.
    let watermark = Arc::new(Watermark::default());
    let collector = {
        let watermark = Arc::clone(&watermark);
        thread::spawn(move || {
            let mut seen = Vec::new();
            for c in completions {
                let now = Instant::now();
                let last = match c {
                    Completion::Committed { upto } => upto,
                    Completion::Failed { batch, error } => panic!("batch {batch} failed: {error}"),
                    other => panic!("unexpected {other:?}"),
                };
                seen.push((last.0, now));
                *watermark.committed.lock().expect("lock") = last.0 + 1;
                watermark.changed.notify_all();
            }
            seen
        })
    };

    let started = Instant::now();
    let submitters: Vec<_> = (0..clients)
        .map(|client| {
            let handle: WriterHandle = handle.clone();
            let watermark = Arc::clone(&watermark);
            thread::spawn(move || {
                let mut submitted = Vec::new();
                let mut n = 0;
                while started.elapsed() < RUN {
                    let at = Instant::now();
                    let id = handle.submit(op(client, n)).expect("submit");
                    submitted.push((id.0, at));
                    if !pipelined {
                        watermark.wait_past(id.0);
                    }
                    n += 1;
                }
                submitted
            })
        })
        .collect();
    let mut submitted: Vec<(u64, Instant)> = submitters
        .into_iter()
        .flat_map(|t| t.join().expect("submitter"))
        .collect();
    writer.flush().expect("flush");
    let elapsed = started.elapsed();
    let stats = writer.stats();
    drop(handle);
    writer.shutdown().expect("shut down");
    let seen = collector.join().expect("collector");
    remove_db(&path);

    // Match every batch with the first completion that covers it.
    submitted.sort_unstable_by_key(|&(id, _)| id);
    let mut latencies = Vec::with_capacity(submitted.len());
    let mut covering = seen.iter().peekable();
    for (id, at) in submitted {
        while covering.peek().is_some_and(|&&(upto, _)| upto < id) {
            covering.next();
        }
        if let Some(&&(_, done)) = covering.peek() {
            latencies.push(done.saturating_duration_since(at));
        }
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    Row {
        label,
        elapsed,
        commits: stats.commits,
        batches: stats.batches,
        p50: quantile(0.50),
        p99: quantile(0.99),
    }
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("group_commit: run with `cargo bench` to measure");
        return;
    }
    let mut rows = Vec::new();
    for clients in [1, 8, 64] {
        let label = if clients == 1 {
            "1 client".to_owned()
        } else {
            format!("{clients} clients")
        };
        rows.push(run(label, clients, false));
    }
    rows.push(run("1 thread, pipelined".into(), 1, true));

    println!("Writer group commit, SqliteStore synchronous=FULL, 1-op batches, ~2 s per row\n");
    println!("| submitters | commits/s | batches/s | mean batch | p50 latency | p99 latency |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let secs = r.elapsed.as_secs_f64();
        let mean = if r.commits == 0 {
            0.0
        } else {
            r.batches as f64 / r.commits as f64
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.2} ms | {:.2} ms |",
            r.label,
            r.commits as f64 / secs,
            r.batches as f64 / secs,
            mean,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
        );
    }
}
