//! [`Writer`]: one thread that applies the broker's batches to a [`Store`], with group commit.
//!
//! The broker core emits `Action::Persist(Vec<StoreOp>)`, and an acknowledgement for a message
//! that must be durable may be sent only after its batch is committed. The driver therefore
//! [submits](WriterHandle::submit) each batch, gets a [`BatchId`] back at once and, in sync
//! durability, holds back every later action, whatever client it is for, until a
//! [`Completion`] covers that id. The writer thread reports completions on a channel and then
//! calls a wake-up callback (in the driver, a `mio::Waker`), so the event loop never blocks on
//! the disk.
//!
//! ```text
//!  event loop (driver)                            writer thread
//!  ───────────────────                            ─────────────
//!  Action::Persist(ops)
//!    └─ submit(ops) ─► BatchId 7
//!         │                ┌───────────────────┐
//!         └───────────────►│ bounded queue     │─► recv the first batch (blocking)
//!    hold every later      │ (full: submit     │   drain what is already queued,
//!    action (sync mode)    │  waits)           │   up to max_batch_ops ops
//!    behind #7             └───────────────────┘   store.apply(#5 ++ #6 ++ #7)
//!                                                    one transaction, one fsync
//!    completions ◄───────────────────────────────── Committed { upto: #7 }
//!    wake() woke us ◄────────────────────────────── wake()
//!    release the actions held behind ids ≤ #7
//! ```
//!
//! # Group commit
//!
//! The thread blocks for the first batch, then takes whatever else is already queued, up to
//! [`WriterConfig::max_batch_ops`] ops, concatenates the ops in submission order and applies
//! them with one [`Store::apply`]: one transaction and one fsync for the whole group. Batches
//! that arrive during a commit wait for the next one, so the more load, the larger the groups.
//!
//! If the combined apply fails, nothing of it was applied (a batch is all-or-nothing), and the
//! writer isolates the failure: it applies the group's batches again one by one, so the good
//! ones commit and only the bad one is reported [`Completion::Failed`]. Later batches are then
//! applied to a state without the failed one.
//!
//! # Completions
//!
//! Completions come in submission order, on the `completions` channel given to
//! [`Writer::spawn`], and `wake()` is called after each group's completions are sent.
//! [`Completion::Committed { upto }`](Completion::Committed) covers every batch up to `upto`
//! since the previous completion. A failure carries the store's [`Error`] in an [`Arc`]
//! (`Error` is not `Clone`), so the caller can match on [`Error::StorageFull`] and refuse new
//! persistent work ([`Completion::is_storage_full`]).
//!
//! Give the writer an unbounded completions channel, or drain it: the thread blocks while
//! the channel is full. If its receiver is gone, completions are dropped and work goes on.
//!
//! # Durability
//!
//! [`Durability::Sync`] reports a batch committed only after the store has committed it (and,
//! for `SqliteStore` with `synchronous=FULL`, fsync'd it). [`Durability::Periodic`] collects
//! batches for up to a period before committing them; the writer still reports a batch only
//! once it is committed, and it is the *driver* that chooses not to hold acknowledgements
//! back in that mode. See [`Durability`] for the bound on what a crash can lose.
//!
//! # Shutting down
//!
//! [`Writer::flush`] returns once everything submitted before it is committed.
//! [`Writer::shutdown`] (and dropping the [`Writer`]) refuses new batches
//! ([`Error::WriterGone`]), commits everything already submitted, stops the thread and joins
//! it. Call [`Store::recover`] before spawning the writer: the writer only writes.
//!
//! ```
//! use mqtt5_store::{AclRecord, Completion, MemoryStore, Store, StoreOp, Writer, WriterConfig};
//!
//! let (completions, done) = crossbeam_channel::unbounded();
//! let (writer, handle) =
//!     Writer::spawn(MemoryStore::new(), WriterConfig::default(), completions, Box::new(|| {}))
//!         .unwrap();
//! let rule = AclRecord {
//!     scope: "pattern".into(),
//!     access: "read".into(),
//!     topic: "sensors/%c/#".into(),
//! };
//! let id = handle.submit(vec![StoreOp::AclAdded(rule)]).unwrap();
//! match done.recv().unwrap() {
//!     Completion::Committed { upto } => assert!(upto >= id),
//!     Completion::Failed { error, .. } => panic!("{error}"),
//!     _ => unreachable!(),
//! }
//! let mut store = writer.shutdown().unwrap();
//! assert_eq!(store.recover().unwrap().acl.len(), 1);
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::{Error, Recovered, Store, StoreOp};

/// How durable an acknowledged message is (set in the broker's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every batch is committed (fsync'd by the backend) before its completion is reported, and
    /// the driver sends an acknowledgement only after that. Group commit: all batches waiting
    /// when a commit starts share one transaction and one fsync, so throughput scales with
    /// load.
    #[default]
    Sync,
    /// Batches are collected for up to `period` (counted from the submission of the first batch
    /// of a group) and committed together; the driver sends acknowledgements without waiting
    /// for the commit.
    ///
    /// The writer still reports a batch only once it is committed. The bound on loss: while
    /// the writer keeps up, a batch is committed at most `period` plus one commit time after
    /// it was submitted, so a crash loses at most the acknowledged work of the last `period`
    /// plus one commit time. When the store is slower than the load, the queue (at most
    /// [`WriterConfig::queue_capacity`] batches) adds its backlog to that window, and
    /// submissions wait for room. A flush or a shutdown commits at once.
    Periodic(Duration),
}

/// The configuration of a [`Writer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// When batches are committed, and whether acknowledgements wait for it.
    pub durability: Durability,
    /// The most ops in one transaction: a group stops growing before it would exceed this.
    /// A single batch larger than this is committed alone. At least 1 (0 counts as 1).
    pub max_batch_ops: usize,
    /// The most batches (and flush requests) queued for the thread; when the queue is full,
    /// [`WriterHandle::submit`] waits and [`WriterHandle::try_submit`] refuses: backpressure.
    /// At least 1 (0 counts as 1).
    pub queue_capacity: usize,
}

impl Default for WriterConfig {
    /// [`Durability::Sync`], 10 000 ops per transaction, 1024 queued batches.
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            max_batch_ops: 10_000,
            queue_capacity: 1024,
        }
    }
}

/// A ticket for one submitted batch. Ids grow by one with every accepted batch, in submission
/// order, across all handles of a writer; the first is 0.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What became of submitted batches. Completions come in submission order; every accepted
/// batch is covered by exactly one of them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Completion {
    /// Every batch after the one the previous completion covered, up to and including `upto`,
    /// is committed.
    Committed {
        /// The last batch committed.
        upto: BatchId,
    },
    /// This batch was not applied (nothing of it: a batch is all-or-nothing).
    Failed {
        /// The batch.
        batch: BatchId,
        /// Why, as the store said it. [`Error::StorageFull`] means new persistent work should
        /// be refused.
        error: Arc<Error>,
    },
}

impl Completion {
    /// True for a failure because the storage is full: the broker should refuse new
    /// persistent work.
    #[must_use]
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Self::Failed { error, .. } if matches!(**error, Error::StorageFull(_)))
    }

    /// The last batch this completion covers.
    #[must_use]
    pub const fn last(&self) -> BatchId {
        match self {
            Self::Committed { upto } => *upto,
            Self::Failed { batch, .. } => *batch,
        }
    }
}

/// Why [`WriterHandle::try_submit`] did not take a batch. Either way the ops come back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrySubmitError {
    /// The queue is full: the writer is behind. Retry later, or [`WriterHandle::submit`] to
    /// wait for room.
    #[error("the store writer queue is full")]
    Full(Vec<StoreOp>),
    /// The writer has stopped ([`Error::WriterGone`]).
    #[error("the store writer thread has stopped")]
    Gone(Vec<StoreOp>),
}

impl TrySubmitError {
    /// The ops that were not submitted.
    #[must_use]
    pub fn into_ops(self) -> Vec<StoreOp> {
        match self {
            Self::Full(ops) | Self::Gone(ops) => ops,
        }
    }
}

/// Counters of a [`Writer`], since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Successful [`Store::apply`] calls: transactions committed.
    pub commits: u64,
    /// Batches committed.
    pub batches: u64,
    /// Ops committed.
    pub ops: u64,
    /// Batches reported [`Completion::Failed`].
    pub failures: u64,
    /// How long the last successful `apply` took.
    pub last_commit_latency: Duration,
    /// The mean time of a successful `apply`.
    pub mean_commit_latency: Duration,
    /// The longest time of a successful `apply`.
    pub max_commit_latency: Duration,
    /// Batches and flush requests waiting in the queue now.
    pub queued: usize,
}

/// Owns the writer thread. Dropping it commits everything submitted, stops the thread and
/// joins it, as [`Writer::shutdown`] does; handles then get [`Error::WriterGone`].
pub struct Writer<S> {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<S>>,
}

/// Submits batches to a [`Writer`]. Cheap to clone, and `Send`: every clone feeds the same
/// queue, and ids follow the order in which submissions are accepted across all clones.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
}

impl<S: Store + 'static> Writer<S> {
    /// Starts the writer thread over `store`. Completions go to `completions`; `wake` is called
    /// after each group's completions are sent (and never while the writer holds a lock that a
    /// submission needs).
    ///
    /// # Errors
    /// [`Error::Storage`] when the thread cannot be started.
    pub fn spawn(
        store: S,
        config: WriterConfig,
        completions: Sender<Completion>,
        wake: Box<dyn Fn() + Send>,
    ) -> Result<(Self, WriterHandle), Error> {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                tx: Some(tx),
                next_id: 0,
                waiting: 0,
            }),
            space: Condvar::new(),
            stats: Mutex::new(Counters::default()),
        });
        let worker = Worker {
            store,
            rx,
            durability: config.durability,
            max_ops: config.max_batch_ops.max(1),
            completions,
            wake,
            shared: Arc::clone(&shared),
            unflushed_failure: None,
            ops: Vec::new(),
            batches: Vec::new(),
            flushes: Vec::new(),
            carry: None,
            first_submitted: None,
        };
        let closer = Closer(Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name("mqtt5-store-writer".into())
            .spawn(move || {
                // Whichever way the thread ends, refuse new work and wake waiting submitters.
                let _closer = closer;
                worker.run()
            })
            .map_err(|e| Error::Storage(format!("cannot start the store writer thread: {e}")))?;
        let handle = WriterHandle {
            shared: Arc::clone(&shared),
        };
        Ok((
            Self {
                shared,
                thread: Some(thread),
            },
            handle,
        ))
    }

    /// Another handle to submit batches with.
    #[must_use]
    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Commits everything submitted before this call and returns once it is committed (waiting,
    /// in [`Durability::Periodic`], for no period). Used at shutdown.
    ///
    /// # Errors
    /// [`Error::WriterGone`] when the thread has stopped. Otherwise, if a batch failed since
    /// the previous flush, a copy of the first such failure (also reported as
    /// [`Completion::Failed`]); the other batches are committed all the same.
    pub fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared
            .enqueue(Msg::Flush(tx), true)
            .map_err(|_| Error::WriterGone)?;
        rx.recv().map_err(|_| Error::WriterGone)?
    }

    /// Refuses new batches, commits everything already submitted, stops the thread, and
    /// returns the store (to [`Store::recover`] from, in tests). Failed batches are reported as
    /// completions as always; [`flush`](Self::flush) first to get the first failure as an
    /// error.
    ///
    /// # Errors
    /// [`Error::WriterGone`] when the thread died (a panic in the store); the store is lost.
    pub fn shutdown(mut self) -> Result<S, Error> {
        self.shared.close();
        let thread = self.thread.take().ok_or(Error::WriterGone)?;
        thread.join().map_err(|_| Error::WriterGone)
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> WriterStats {
        let queued = lock(&self.shared.queue).tx.as_ref().map_or(0, Sender::len);
        let c = *lock(&self.shared.stats);
        let mean = match u32::try_from(c.commits) {
            Ok(0) => Duration::ZERO,
            Ok(n) => c.total / n,
            // More than 4 billion commits: divide in nanoseconds.
            Err(_) => {
                let nanos = c.total.as_nanos() / u128::from(c.commits);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        };
        WriterStats {
            commits: c.commits,
            batches: c.batches,
            ops: c.ops,
            failures: c.failures,
            last_commit_latency: c.last,
            mean_commit_latency: mean,
            max_commit_latency: c.max,
            queued,
        }
    }
}

impl<S> Drop for Writer<S> {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(thread) = self.thread.take() {
            // A panic in the store has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

impl<S> fmt::Debug for Writer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl WriterHandle {
    /// Queues a batch for the writer and returns its id at once; waits only while the queue is
    /// full (backpressure). The batch is applied atomically, after every batch submitted
    /// before it. An empty batch is committed like any other.
    ///
    /// # Errors
    /// [`Error::WriterGone`] when the writer has been shut down or its thread died.
    pub fn submit(&self, ops: Vec<StoreOp>) -> Result<BatchId, Error> {
        match self.shared.enqueue(Msg::batch(ops), true) {
            Ok(Some(id)) => Ok(id),
            Ok(None) | Err(_) => Err(Error::WriterGone),
        }
    }

    /// Like [`submit`](Self::submit), but never waits for room in the queue.
    ///
    /// # Errors
    /// [`TrySubmitError::Full`] when the queue is full, [`TrySubmitError::Gone`] when the writer
    /// has stopped; either way with the ops.
    pub fn try_submit(&self, ops: Vec<StoreOp>) -> Result<BatchId, TrySubmitError> {
        match self.shared.enqueue(Msg::batch(ops), false) {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(TrySubmitError::Gone(Vec::new())),
            Err((refused, msg)) => {
                let ops = msg.into_ops();
                Err(match refused {
                    Refused::Full => TrySubmitError::Full(ops),
                    Refused::Gone => TrySubmitError::Gone(ops),
                })
            }
        }
    }
}

impl fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterHandle").finish_non_exhaustive()
    }
}

/// A boxed store is a store, so a driver can pick the backend at run time
/// (`Writer<Box<dyn Store>>`).
impl<S: Store + ?Sized> Store for Box<S> {
    fn recover(&mut self) -> Result<Recovered, Error> {
        (**self).recover()
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error> {
        (**self).apply(ops)
    }

    fn auth_state(&mut self) -> Result<crate::AuthState, Error> {
        (**self).auth_state()
    }

    fn user_exists(&mut self, username: &str) -> Result<bool, Error> {
        (**self).user_exists(username)
    }
}

/// What the queue carries.
enum Msg {
    /// A batch to apply.
    Batch(Batch),
    /// A flush request: answered once every message before it is done.
    Flush(Sender<Result<(), Error>>),
}

struct Batch {
    /// Stamped when the batch is accepted, under the queue lock.
    id: BatchId,
    ops: Vec<StoreOp>,
    submitted: Instant,
}

impl Msg {
    fn batch(ops: Vec<StoreOp>) -> Self {
        Self::Batch(Batch {
            id: BatchId(0),
            ops,
            submitted: Instant::now(),
        })
    }

    fn into_ops(self) -> Vec<StoreOp> {
        match self {
            Self::Batch(b) => b.ops,
            Self::Flush(_) => Vec::new(),
        }
    }
}

/// Why a message was not queued.
enum Refused {
    Full,
    Gone,
}

/// What the writer and its handles share.
struct Shared {
    /// The sending side. Ids are stamped and messages sent under this lock, so id order is
    /// queue order.
    queue: Mutex<Queue>,
    /// Signalled when the writer takes messages off a queue that submitters wait on, and when
    /// the writer closes.
    space: Condvar,
    stats: Mutex<Counters>,
}

struct Queue {
    /// The only sender: `None` once closed, which disconnects the channel.
    tx: Option<Sender<Msg>>,
    next_id: u64,
    /// Submitters waiting on `space`.
    waiting: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    commits: u64,
    batches: u64,
    ops: u64,
    failures: u64,
    last: Duration,
    total: Duration,
    max: Duration,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (no code panics while
/// holding these locks; this only keeps a poisoned lock from spreading).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Sends `msg`, stamping a batch with the next id. With `wait`, waits for room while the
    /// queue is full. `Ok(Some(id))` for a batch, `Ok(None)` for a flush request.
    fn enqueue(&self, mut msg: Msg, wait: bool) -> Result<Option<BatchId>, (Refused, Msg)> {
        let is_batch = matches!(msg, Msg::Batch(_));
        let Ok(mut queue) = self.queue.lock() else {
            return Err((Refused::Gone, msg));
        };
        loop {
            let id = BatchId(queue.next_id);
            if let Msg::Batch(batch) = &mut msg {
                batch.id = id;
            }
            let Some(tx) = &queue.tx else {
                return Err((Refused::Gone, msg));
            };
            match tx.try_send(msg) {
                Ok(()) if is_batch => {
                    queue.next_id += 1;
                    return Ok(Some(id));
                }
                Ok(()) => return Ok(None),
                Err(TrySendError::Disconnected(m)) => return Err((Refused::Gone, m)),
                Err(TrySendError::Full(m)) if !wait => return Err((Refused::Full, m)),
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    queue.waiting += 1;
                    let woken = self.space.wait(queue);
                    let Ok(q) = woken else {
                        return Err((Refused::Gone, msg));
                    };
                    queue = q;
                    queue.waiting -= 1;
                }
            }
        }
    }

    /// Called by the writer after taking messages off the queue: wakes waiting submitters.
    /// Taking the lock orders this after any submitter's failed `try_send`, so no wake-up is
    /// lost.
    fn space_freed(&self) {
        let waiting = lock(&self.queue).waiting;
        if waiting > 0 {
            self.space.notify_all();
        }
    }

    /// Refuses new messages; the writer drains what is queued, then sees the disconnection.
    fn close(&self) {
        lock(&self.queue).tx = None;
        self.space.notify_all();
    }
}

/// Closes the queue when the writer thread ends, even by a panic.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The writer thread's state.
struct Worker<S> {
    store: S,
    rx: Receiver<Msg>,
    durability: Durability,
    max_ops: usize,
    completions: Sender<Completion>,
    wake: Box<dyn Fn() + Send>,
    shared: Arc<Shared>,
    /// The first failure since the last flush request was answered.
    unflushed_failure: Option<Arc<Error>>,
    /// The group being collected: its ops, concatenated in submission order…
    ops: Vec<StoreOp>,
    /// …each batch's id and range in `ops`…
    batches: Vec<(BatchId, Range<usize>)>,
    /// …and the flush requests to answer once it is done.
    flushes: Vec<Sender<Result<(), Error>>>,
    /// A batch taken off the queue that did not fit in the group: it starts the next one.
    carry: Option<Msg>,
    /// When the group's first batch was submitted.
    first_submitted: Option<Instant>,
}

impl<S: Store> Worker<S> {
    fn run(mut self) -> S {
        loop {
            let first = match self.carry.take() {
                Some(msg) => msg,
                None => match self.rx.recv() {
                    Ok(msg) => msg,
                    // Closed and drained.
                    Err(_) => break,
                },
            };
            self.accept(first);
            self.collect();
            self.shared.space_freed();
            self.commit();
        }
        self.store
    }

    /// Adds a message to the group; returns false (and keeps the message for the next group)
    /// when a batch would push the group over `max_ops`.
    fn accept(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Flush(reply) => self.flushes.push(reply),
            Msg::Batch(batch) => {
                if !self.batches.is_empty() && self.ops.len() + batch.ops.len() > self.max_ops {
                    self.carry = Some(Msg::Batch(batch));
                    return false;
                }
                let Batch {
                    id,
                    mut ops,
                    submitted,
                } = batch;
                self.first_submitted.get_or_insert(submitted);
                let start = self.ops.len();
                self.ops.append(&mut ops);
                self.batches.push((id, start..self.ops.len()));
            }
        }
        true
    }

    /// Grows the group: in `Sync` mode with what is already queued, in `Periodic` mode with
    /// what arrives until the period of its first batch is over.
    fn collect(&mut self) {
        match self.durability {
            Durability::Sync => {
                while self.ops.len() < self.max_ops {
                    let Ok(msg) = self.rx.try_recv() else { break };
                    if !self.accept(msg) {
                        break;
                    }
                }
            }
            Durability::Periodic(period) => {
                while self.ops.len() < self.max_ops && self.flushes.is_empty() {
                    let Some(first) = self.first_submitted else {
                        break;
                    };
                    let next = match first.checked_add(period) {
                        // The period is over. `recv_deadline` would still hand over a batch
                        // that is ready (it looks at the deadline only when the queue is
                        // empty), so under a steady stream the group would stay open until
                        // `max_ops` and the bound on loss would not hold. Take only what is
                        // queued now.
                        Some(deadline) if Instant::now() >= deadline => {
                            self.take_queued();
                            break;
                        }
                        Some(deadline) => self.rx.recv_deadline(deadline),
                        None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    // Timed out, or closed and drained: commit now.
                    let Ok(msg) = next else { break };
                    self.shared.space_freed();
                    if !self.accept(msg) {
                        break;
                    }
                }
            }
        }
    }

    /// Adds the messages queued at this moment (not those that arrive meanwhile) to the
    /// group, up to `max_ops`.
    fn take_queued(&mut self) {
        for _ in 0..self.rx.len() {
            if self.ops.len() >= self.max_ops {
                break;
            }
            let Ok(msg) = self.rx.try_recv() else { break };
            if !self.accept(msg) {
                break;
            }
        }
    }

    /// Applies the group, reports it, answers the flush requests, and clears the group.
    fn commit(&mut self) {
        if !self.batches.is_empty() {
            let started = Instant::now();
            match self.store.apply(&self.ops) {
                Ok(()) => {
                    self.record_commit(started.elapsed(), self.batches.len(), self.ops.len());
                    if let Some((upto, _)) = self.batches.last() {
                        self.report(Completion::Committed { upto: *upto });
                    }
                }
                Err(error) => match self.batches.as_slice() {
                    [(batch, _)] => {
                        let batch = *batch;
                        self.fail(batch, error);
                    }
                    _ => self.isolate(),
                },
            }
            (self.wake)();
        }
        if !self.flushes.is_empty() {
            let failure = self.unflushed_failure.take();
            for reply in self.flushes.drain(..) {
                let answer = failure.as_deref().map_or(Ok(()), |e| Err(copy_error(e)));
                // The flusher may have given up waiting.
                let _ = reply.send(answer);
            }
        }
        self.ops.clear();
        self.batches.clear();
        self.first_submitted = None;
    }

    /// After a combined apply failed (so none of it was applied): applies the batches one by
    /// one, so that only the bad ones fail.
    fn isolate(&mut self) {
        let batches = std::mem::take(&mut self.batches);
        let mut committed: Option<BatchId> = None;
        for (id, range) in &batches {
            let Some(ops) = self.ops.get(range.clone()) else {
                continue;
            };
            let started = Instant::now();
            match self.store.apply(ops) {
                Ok(()) => {
                    self.record_commit(started.elapsed(), 1, ops.len());
                    committed = Some(*id);
                }
                Err(error) => {
                    if let Some(upto) = committed.take() {
                        self.report(Completion::Committed { upto });
                    }
                    self.fail(*id, error);
                }
            }
        }
        if let Some(upto) = committed {
            self.report(Completion::Committed { upto });
        }
        // Keep the allocation.
        self.batches = batches;
    }

    fn fail(&mut self, batch: BatchId, error: Error) {
        let error = Arc::new(error);
        lock(&self.shared.stats).failures += 1;
        self.unflushed_failure
            .get_or_insert_with(|| Arc::clone(&error));
        self.report(Completion::Failed { batch, error });
    }

    fn report(&self, completion: Completion) {
        // Nobody listening: the work is done all the same.
        let _ = self.completions.send(completion);
    }

    fn record_commit(&self, latency: Duration, batches: usize, ops: usize) {
        let mut c = lock(&self.shared.stats);
        c.commits += 1;
        c.batches += batches as u64;
        c.ops += ops as u64;
        c.last = latency;
        c.total = c.total.saturating_add(latency);
        c.max = c.max.max(latency);
    }
}

/// A copy of a store error (`Error` is not `Clone`: it is shared as `Arc<Error>` in completions,
/// and copied for [`Writer::flush`]).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::NoSession(client) => Error::NoSession(client.clone()),
        Error::NoMessage(id) => Error::NoMessage(*id),
        Error::Corrupt { path, detail } => Error::Corrupt {
            path: path.clone(),
            detail: detail.clone(),
        },
        Error::NewerSchema {
            path,
            found,
            supported,
        } => Error::NewerSchema {
            path: path.clone(),
            found: *found,
            supported: *supported,
        },
        Error::StorageFull(detail) => Error::StorageFull(detail.clone()),
        Error::Storage(detail) => Error::Storage(detail.clone()),
        Error::WriterGone => Error::WriterGone,
    }
}
