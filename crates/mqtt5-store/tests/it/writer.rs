//! The store writer thread: group commit, failure isolation, flush, shutdown, backpressure.
//!
//! Timing: tests that need a group to form hold the store's first `apply` behind a gate
//! instead of sleeping, so the grouping is deterministic. Waits are bounded generously, and
//! nothing asserts how fast anything is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mqtt5_store::{
    AclRecord, BatchId, Completion, Durability, Error, MemoryStore, Recovered, Store, StoreOp,
    TrySubmitError, Writer, WriterConfig, WriterHandle,
};

/// Generous bound on any wait for the writer.
const PATIENCE: Duration = Duration::from_secs(5);

/// A batch of one op, told apart by its topic. Topics `fail`, `full` and `panic` (or any
/// topic starting with them and a `/`) make [`TestStore`] fail the batch.
fn batch(topic: &str) -> Vec<StoreOp> {
    vec![StoreOp::AclAdded(AclRecord {
        scope: "pattern".into(),
        access: "read".into(),
        topic: topic.into(),
    })]
}

fn topics(recovered: &Recovered) -> Vec<String> {
    recovered.acl.iter().map(|r| r.topic.clone()).collect()
}

/// What a test sees of the store while the writer owns it.
#[derive(Clone, Default)]
struct Probe {
    /// `apply` calls, successful or not.
    applies: Arc<AtomicUsize>,
    /// Topics committed, in commit order.
    committed: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }

    fn committed(&self) -> Vec<String> {
        self.committed.lock().unwrap().clone()
    }
}

/// A [`MemoryStore`] that counts applies, can hold the first one behind a gate, can sleep in
/// each, and fails batches that hold a marker topic.
struct TestStore {
    inner: MemoryStore,
    probe: Probe,
    /// Each apply sends its number here before anything else.
    entered: Option<Sender<usize>>,
    /// Each apply waits for a message here; once the sender is dropped, none waits.
    gate: Option<Receiver<()>>,
    delay: Duration,
}

impl TestStore {
    fn new() -> (Self, Probe) {
        let probe = Probe::default();
        let store = Self {
            inner: MemoryStore::new(),
            probe: probe.clone(),
            entered: None,
            gate: None,
            delay: Duration::ZERO,
        };
        (store, probe)
    }

    /// A store whose applies wait until the returned gate is dropped, and report entering on
    /// the returned receiver.
    fn gated() -> (Self, Probe, Sender<()>, Receiver<usize>) {
        let (mut store, probe) = Self::new();
        let (gate_tx, gate_rx) = crossbeam_channel::bounded(0);
        let (entered_tx, entered_rx) = crossbeam_channel::unbounded();
        store.gate = Some(gate_rx);
        store.entered = Some(entered_tx);
        (store, probe, gate_tx, entered_rx)
    }
}

fn marker(ops: &[StoreOp], name: &str) -> bool {
    ops.iter().any(|op| {
        matches!(op, StoreOp::AclAdded(r)
            if r.topic == name || r.topic.starts_with(&format!("{name}/")))
    })
}

impl Store for TestStore {
    fn recover(&mut self) -> Result<Recovered, Error> {
        self.inner.recover()
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error> {
        let n = self.probe.applies.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(entered) = &self.entered {
            let _ = entered.send(n);
        }
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        thread::sleep(self.delay);
        assert!(!marker(ops, "panic"), "the test store was told to panic");
        if marker(ops, "fail") {
            return Err(Error::Storage("marker op".into()));
        }
        if marker(ops, "full") {
            return Err(Error::StorageFull("no space left on device".into()));
        }
        self.inner.apply(ops)?;
        let mut committed = self.probe.committed.lock().unwrap();
        for op in ops {
            if let StoreOp::AclAdded(r) = op {
                committed.push(r.topic.clone());
            }
        }
        Ok(())
    }
}

/// A writer over `store` with a counting wake-up; returns the completions and the wake count.
fn spawn<S: Store + 'static>(
    store: S,
    config: WriterConfig,
) -> (
    Writer<S>,
    WriterHandle,
    Receiver<Completion>,
    Arc<AtomicUsize>,
) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    let wake = Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let (writer, handle) = Writer::spawn(store, config, tx, wake).unwrap();
    (writer, handle, rx, wakes)
}

fn sync_config() -> WriterConfig {
    WriterConfig::default()
}

/// Receives completions until one covers `last`, and returns them all.
fn completions_upto(rx: &Receiver<Completion>, last: BatchId) -> Vec<Completion> {
    let mut got = Vec::new();
    loop {
        let c = rx
            .recv_timeout(PATIENCE)
            .expect("a completion within the patience bound");
        let done = c.last() >= last;
        got.push(c);
        if done {
            return got;
        }
    }
}

/// Waits until the gated store is inside its first apply.
fn wait_entered(entered: &Receiver<usize>, n: usize) {
    assert_eq!(entered.recv_timeout(PATIENCE), Ok(n));
}

#[test]
fn batches_commit_in_order_and_completions_arrive_in_order_with_a_wake_up() {
    let (store, probe) = TestStore::new();
    let (writer, handle, done, wakes) = spawn(store, sync_config());
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(handle.submit(batch(&format!("t/{i}"))).unwrap());
    }
    assert_eq!(ids, (0..20).map(BatchId).collect::<Vec<_>>());

    let got = completions_upto(&done, BatchId(19));
    let mut previous = None;
    for c in &got {
        let Completion::Committed { upto } = c else {
            panic!("unexpected {c:?}");
        };
        assert!(previous < Some(*upto), "completions out of order: {got:?}");
        previous = Some(*upto);
    }
    writer.flush().unwrap();
    assert!(wakes.load(Ordering::SeqCst) >= 1);
    let expected: Vec<String> = (0..20).map(|i| format!("t/{i}")).collect();
    assert_eq!(probe.committed(), expected);
    let mut store = writer.shutdown().unwrap();
    assert_eq!(topics(&store.recover().unwrap()), expected);
}

#[test]
fn every_group_calls_wake_after_its_completions() {
    let (store, _probe) = TestStore::new();
    let (tx, done) = crossbeam_channel::unbounded();
    // The wake-up sees the completion already sent.
    let (woken_tx, woken) = crossbeam_channel::unbounded();
    let probe_rx = done.clone();
    let wake = Box::new(move || {
        let _ = woken_tx.send(!probe_rx.is_empty());
    });
    let (writer, handle) = Writer::spawn(store, sync_config(), tx, wake).unwrap();
    handle.submit(batch("a")).unwrap();
    assert_eq!(woken.recv_timeout(PATIENCE), Ok(true));
    assert!(matches!(
        done.recv_timeout(PATIENCE),
        Ok(Completion::Committed { upto: BatchId(0) })
    ));
    drop(writer);
}

#[test]
fn concurrent_submitters_share_commits_and_keep_their_order() {
    let (store, probe, gate, entered) = TestStore::gated();
    let (writer, handle, done, _) = spawn(store, sync_config());
    // The first batch holds the store while the others queue up.
    handle.submit(batch("first")).unwrap();
    wait_entered(&entered, 1);

    let submitters: Vec<_> = (0..4)
        .map(|s| {
            let handle = handle.clone();
            thread::spawn(move || {
                (0..25)
                    .map(|i| handle.submit(batch(&format!("s{s}/{i}"))).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<BatchId> = submitters
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    drop(gate);

    ids.sort();
    assert_eq!(ids, (1..=100).map(BatchId).collect::<Vec<_>>());
    completions_upto(&done, BatchId(100));
    // One apply for the first batch, one for the hundred that queued behind it.
    assert_eq!(probe.applies(), 2);

    let committed = probe.committed();
    assert_eq!(committed.len(), 101);
    for s in 0..4 {
        let mine: Vec<&String> = committed
            .iter()
            .filter(|t| t.starts_with(&format!("s{s}/")))
            .collect();
        let expected: Vec<String> = (0..25).map(|i| format!("s{s}/{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    let stats = writer.stats();
    assert_eq!((stats.commits, stats.batches, stats.ops), (2, 101, 101));
}

#[test]
fn a_group_never_exceeds_max_batch_ops() {
    let (store, probe, gate, entered) = TestStore::gated();
    let config = WriterConfig {
        max_batch_ops: 10,
        ..sync_config()
    };
    let (writer, handle, done, _) = spawn(store, config);
    handle.submit(batch("first")).unwrap();
    wait_entered(&entered, 1);
    for i in 0..100 {
        handle.submit(batch(&format!("t/{i}"))).unwrap();
    }
    // A batch larger than the cap is committed alone.
    let big: Vec<StoreOp> = (0..25).flat_map(|i| batch(&format!("big/{i}"))).collect();
    let last = handle.submit(big).unwrap();
    drop(gate);
    completions_upto(&done, last);
    assert_eq!(probe.applies(), 1 + 10 + 1);
    assert_eq!(writer.stats().ops, 126);
}

#[test]
fn a_failing_batch_in_a_group_is_isolated() {
    let (store, probe, gate, entered) = TestStore::gated();
    let (writer, handle, done, _) = spawn(store, sync_config());
    handle.submit(batch("first")).unwrap();
    wait_entered(&entered, 1);
    let good1 = handle.submit(batch("good/1")).unwrap();
    let good2 = handle.submit(batch("good/2")).unwrap();
    let bad = handle.submit(batch("fail/3")).unwrap();
    let good4 = handle.submit(batch("good/4")).unwrap();
    drop(gate);

    let got = completions_upto(&done, good4);
    let summary: Vec<String> = got
        .iter()
        .map(|c| match c {
            Completion::Committed { upto } => format!("ok {upto}"),
            Completion::Failed { batch, error } => format!("failed {batch}: {error}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "ok #0".to_owned(),
            format!("ok {good2}"),
            format!("failed {bad}: storage error: marker op"),
            format!("ok {good4}"),
        ]
    );
    assert_eq!(good1, BatchId(1));
    assert_eq!(
        probe.committed(),
        ["first", "good/1", "good/2", "good/4"].map(String::from)
    );
    // The flush reports the failure; the next one has nothing to report.
    assert!(matches!(writer.flush(), Err(Error::Storage(_))));
    writer.flush().unwrap();
    let stats = writer.stats();
    assert_eq!((stats.batches, stats.failures), (4, 1));
    let mut store = writer.shutdown().unwrap();
    assert_eq!(
        topics(&store.recover().unwrap()),
        ["first", "good/1", "good/2", "good/4"].map(String::from)
    );
}

#[test]
fn storage_full_is_reported_with_its_kind() {
    let (store, _probe) = TestStore::new();
    let (writer, handle, done, _) = spawn(store, sync_config());
    let id = handle.submit(batch("full")).unwrap();
    let got = completions_upto(&done, id);
    let [c] = got.as_slice() else {
        panic!("one completion expected: {got:?}");
    };
    assert!(c.is_storage_full());
    let Completion::Failed {
        batch: failed,
        error,
    } = c
    else {
        panic!("a failure expected: {c:?}");
    };
    assert_eq!(*failed, id);
    assert!(matches!(**error, Error::StorageFull(_)));
    assert!(matches!(writer.flush(), Err(Error::StorageFull(_))));

    // The writer goes on.
    let next = handle.submit(batch("fine")).unwrap();
    assert!(matches!(
        completions_upto(&done, next).as_slice(),
        [Completion::Committed { upto }] if *upto == next
    ));
}

#[test]
fn flush_returns_only_after_everything_submitted_before_it_is_applied() {
    let (mut store, probe) = TestStore::new();
    store.delay = Duration::from_millis(20);
    let (writer, handle, _done, _) = spawn(store, sync_config());
    for i in 0..10 {
        handle.submit(batch(&format!("t/{i}"))).unwrap();
    }
    writer.flush().unwrap();
    assert_eq!(probe.committed().len(), 10);
}

#[test]
fn flush_in_periodic_mode_does_not_wait_for_the_period() {
    let (store, probe) = TestStore::new();
    let config = WriterConfig {
        durability: Durability::Periodic(Duration::from_secs(3600)),
        ..sync_config()
    };
    let (writer, handle, _done, _) = spawn(store, config);
    handle.submit(batch("a")).unwrap();
    handle.submit(batch("b")).unwrap();
    writer.flush().unwrap();
    assert_eq!(probe.committed(), ["a", "b"].map(String::from));
}

#[test]
fn shutdown_commits_pending_work() {
    let (store, _probe) = TestStore::new();
    let config = WriterConfig {
        durability: Durability::Periodic(Duration::from_secs(3600)),
        ..sync_config()
    };
    let (writer, handle, done, _) = spawn(store, config);
    for i in 0..5 {
        handle.submit(batch(&format!("t/{i}"))).unwrap();
    }
    let mut store = writer.shutdown().unwrap();
    assert_eq!(store.recover().unwrap().acl.len(), 5);
    assert!(matches!(
        done.try_recv(),
        Ok(Completion::Committed { upto: BatchId(4) })
    ));
}

#[test]
fn dropping_the_writer_stops_the_thread_without_losing_submitted_batches() {
    let (mut store, probe) = TestStore::new();
    store.delay = Duration::from_millis(5);
    let config = WriterConfig {
        durability: Durability::Periodic(Duration::from_secs(3600)),
        ..sync_config()
    };
    let (writer, handle, done, wakes) = spawn(store, config);
    for i in 0..30 {
        handle.submit(batch(&format!("t/{i}"))).unwrap();
    }
    drop(writer);
    assert_eq!(probe.committed().len(), 30);
    let got: Vec<Completion> = done.try_iter().collect();
    assert!(matches!(
        got.last(),
        Some(Completion::Committed { upto: BatchId(29) })
    ));
    assert!(wakes.load(Ordering::SeqCst) >= 1);
    assert!(matches!(
        handle.submit(batch("late")),
        Err(Error::WriterGone)
    ));
}

#[test]
fn submit_after_shutdown_is_writer_gone() {
    let (writer, handle, _done, _) = spawn(MemoryStore::new(), sync_config());
    let other = writer.handle();
    writer.shutdown().unwrap();
    assert!(matches!(handle.submit(batch("a")), Err(Error::WriterGone)));
    match other.try_submit(batch("b")) {
        Err(TrySubmitError::Gone(ops)) => assert_eq!(ops, batch("b")),
        other => panic!("expected Gone, got {other:?}"),
    }
}

#[test]
fn a_full_queue_pushes_back() {
    let (store, probe, gate, entered) = TestStore::gated();
    let config = WriterConfig {
        queue_capacity: 2,
        ..sync_config()
    };
    let (writer, handle, done, _) = spawn(store, config);
    handle.submit(batch("first")).unwrap();
    wait_entered(&entered, 1);
    // The thread is inside apply: two batches fill the queue.
    handle.try_submit(batch("q/1")).unwrap();
    handle.try_submit(batch("q/2")).unwrap();
    match handle.try_submit(batch("q/3")) {
        Err(TrySubmitError::Full(ops)) => assert_eq!(ops, batch("q/3")),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(writer.stats().queued, 2);

    // A blocking submit waits for room.
    let (returned_tx, returned) = crossbeam_channel::unbounded();
    let blocked = {
        let handle = handle.clone();
        thread::spawn(move || {
            let id = handle.submit(batch("q/3")).unwrap();
            returned_tx.send(id).unwrap();
        })
    };
    assert!(
        returned.recv_timeout(Duration::from_millis(100)).is_err(),
        "submit returned while the queue was full"
    );
    drop(gate);
    assert_eq!(returned.recv_timeout(PATIENCE), Ok(BatchId(3)));
    blocked.join().unwrap();
    completions_upto(&done, BatchId(3));
    assert_eq!(
        probe.committed(),
        ["first", "q/1", "q/2", "q/3"].map(String::from)
    );
}

#[test]
fn shutdown_releases_a_submitter_waiting_for_room() {
    let (store, _probe, gate, entered) = TestStore::gated();
    let config = WriterConfig {
        queue_capacity: 1,
        ..sync_config()
    };
    let (writer, handle, _done, _) = spawn(store, config);
    handle.submit(batch("first")).unwrap();
    wait_entered(&entered, 1);
    handle.submit(batch("queued")).unwrap();
    let waiting = {
        let handle = handle.clone();
        thread::spawn(move || handle.submit(batch("waiting")))
    };
    // Let the submitter block on the full queue (if it has not yet, it finds the writer
    // closed: the same outcome).
    thread::sleep(Duration::from_millis(50));
    let stopping = thread::spawn(move || writer.shutdown());
    // The submitter is either refused or accepted before the close; either way it returns.
    drop(gate);
    let outcome = waiting.join().unwrap();
    let mut store = stopping.join().unwrap().unwrap();
    let committed = topics(&store.recover().unwrap());
    match outcome {
        Ok(_) => assert_eq!(committed, ["first", "queued", "waiting"].map(String::from)),
        Err(Error::WriterGone) => assert_eq!(committed, ["first", "queued"].map(String::from)),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn periodic_mode_commits_without_further_submissions() {
    let (store, probe) = TestStore::new();
    let config = WriterConfig {
        durability: Durability::Periodic(Duration::from_millis(50)),
        ..sync_config()
    };
    let (writer, handle, done, wakes) = spawn(store, config);
    let first = handle.submit(batch("a")).unwrap();
    let second = handle.submit(batch("b")).unwrap();
    // Nothing else is submitted: the group closes at its period on its own (the wait is only
    // a liveness bound, not a timing assertion).
    let got = completions_upto(&done, second);
    // Usually one commit for both; two if this thread was descheduled for a whole period.
    assert!(
        got.iter()
            .all(|c| matches!(c, Completion::Committed { upto } if *upto >= first)),
        "{got:?}"
    );
    assert_eq!(probe.committed(), ["a", "b"].map(String::from));
    // wake() runs after the completions are sent, and before a flush is answered.
    writer.flush().unwrap();
    assert!(wakes.load(Ordering::SeqCst) >= 1);

    // Idle: the writer sleeps until the next batch, then commits it within the period too.
    let third = handle.submit(batch("c")).unwrap();
    completions_upto(&done, third);
    assert_eq!(writer.stats().batches, 3);
}

#[test]
fn periodic_mode_reports_a_batch_only_once_it_is_committed() {
    let (store, probe) = TestStore::new();
    let config = WriterConfig {
        durability: Durability::Periodic(Duration::from_secs(3600)),
        ..sync_config()
    };
    let (writer, handle, done, _) = spawn(store, config);
    handle.submit(batch("a")).unwrap();
    assert!(done.recv_timeout(Duration::from_millis(100)).is_err());
    assert!(probe.committed().is_empty());
    writer.flush().unwrap();
    assert!(matches!(
        done.try_recv(),
        Ok(Completion::Committed { upto: BatchId(0) })
    ));
}

#[test]
fn a_dead_writer_thread_makes_every_call_writer_gone() {
    let (store, _probe) = TestStore::new();
    let (writer, handle, done, _) = spawn(store, sync_config());
    handle.submit(batch("panic")).unwrap();
    // The thread dies without reporting; its completions sender is dropped with it.
    assert!(done.recv_timeout(PATIENCE).is_err());
    assert!(matches!(handle.submit(batch("a")), Err(Error::WriterGone)));
    assert!(matches!(
        handle.try_submit(batch("a")),
        Err(TrySubmitError::Gone(_))
    ));
    assert!(matches!(writer.flush(), Err(Error::WriterGone)));
    assert!(matches!(writer.shutdown(), Err(Error::WriterGone)));
}

#[test]
fn stats_count_commits_batches_ops_and_latency() {
    let (mut store, _probe) = TestStore::new();
    store.delay = Duration::from_millis(2);
    let (writer, handle, _done, _) = spawn(store, sync_config());
    handle.submit(batch("a")).unwrap();
    writer.flush().unwrap();
    handle.submit([batch("b"), batch("c")].concat()).unwrap();
    writer.flush().unwrap();
    let stats = writer.stats();
    assert_eq!((stats.commits, stats.batches, stats.ops), (2, 2, 3));
    assert_eq!((stats.failures, stats.queued), (0, 0));
    assert!(stats.max_commit_latency >= Duration::from_millis(2));
    assert!(stats.mean_commit_latency >= Duration::from_millis(2));
    assert!(stats.last_commit_latency <= stats.max_commit_latency);
}

#[test]
fn a_boxed_store_can_be_written() {
    let store: Box<dyn Store> = Box::new(MemoryStore::new());
    let (writer, handle, done, _) = spawn(store, sync_config());
    let id = handle.submit(batch("boxed")).unwrap();
    completions_upto(&done, id);
    let mut store = writer.shutdown().unwrap();
    assert_eq!(store.recover().unwrap().acl.len(), 1);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_batches_committed_by_the_writer_survive_a_reopen() {
    use mqtt5_store::{SqliteOptions, SqliteStore};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let (writer, handle, done, _) = spawn(store, sync_config());
    let submitters: Vec<_> = (0..4)
        .map(|s| {
            let handle = handle.clone();
            thread::spawn(move || {
                for i in 0..25 {
                    handle.submit(batch(&format!("s{s}/{i}"))).unwrap();
                }
            })
        })
        .collect();
    for t in submitters {
        t.join().unwrap();
    }
    // One bad batch among them fails alone.
    let bad = handle
        .submit(vec![StoreOp::Unsubscribed {
            client_id: "nobody".into(),
            filter: "x".into(),
        }])
        .unwrap();
    let last = handle.submit(batch("last")).unwrap();
    let got = completions_upto(&done, last);
    let failed: Vec<BatchId> = got
        .iter()
        .filter_map(|c| match c {
            Completion::Failed { batch, .. } => Some(*batch),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [bad]);
    drop(writer.shutdown().unwrap());

    let mut reopened = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let recovered = reopened.recover().unwrap();
    assert_eq!(recovered.acl.len(), 101);
    for s in 0..4 {
        let mine: Vec<String> = topics(&recovered)
            .into_iter()
            .filter(|t| t.starts_with(&format!("s{s}/")))
            .collect();
        let expected: Vec<String> = (0..25).map(|i| format!("s{s}/{i}")).collect();
        assert_eq!(mine, expected);
    }
}
