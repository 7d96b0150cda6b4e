//! The store writer's backlog as the event loop sees it: the batches it submitted that are not
//! committed yet, and whether the store is behind.
//!
//! ```text
//!  Persist(ops) ─► submit ─► Ticket 7 ─┬─ the writer's queue has room: try_submit, BatchId 41
//!                                      └─ it is full: waits here, in order, for room
//!  Completion { upto: 41 } ─► settle ─► Ticket 7 committed        (and pump: waiting → writer)
//!
//!  uncommitted ops ≥ [storage] backlog_high_ops, or a batch waits here ─► behind
//!  behind, until uncommitted ops ≤ [storage] backlog_low_ops and nothing waits here
//!  uncommitted ops ≥ LIMIT_FACTOR × backlog_high_ops ─► full: no new connections accepted
//! ```
//!
//! The event loop never waits for the writer: a batch that finds the writer's queue full
//! waits in [`Backlog`]. Its size is bounded: while the store is behind, the clients whose
//! input would add to it are not read; what still comes (acknowledgements that settle stored
//! deliveries, expiries, the client records of clean sessions connecting and going) is bounded
//! by the state it settles and by the connections, because past the limit ([`Backlog::full`])
//! the event loop accepts no new connections until the store catches up
//! (`docs/architecture.md`, "Backpressure"). Each batch gets a [`Ticket`] at once, in
//! the order of the core's `Persist` actions; the actions held behind a batch wait for its
//! ticket, whether the writer has taken the batch yet or not.

use std::collections::VecDeque;

use mqtt5_store::{BatchId, Completion, StoreOp, TrySubmitError, WriterHandle};

/// A batch of the core, numbered in the order the core emitted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket(u64);

/// The uncommitted ops at which the backlog is full ([`Backlog::full`]), in multiples of the
/// high watermark.
pub(crate) const LIMIT_FACTOR: usize = 4;

/// When the store counts as behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermarks {
    /// Behind from this many uncommitted ops on (`[storage] backlog_high_ops`).
    pub(crate) high_ops: usize,
    /// Caught up again at this many or fewer (`[storage] backlog_low_ops`), below `high_ops`.
    pub(crate) low_ops: usize,
}

/// What a completion settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Every batch up to this one is committed.
    Committed(Ticket),
    /// This batch was not applied.
    Failed(Ticket),
}

/// The writer is gone: the batch was not submitted.
#[derive(Debug)]
pub(crate) struct WriterGone;

/// A batch the writer took.
#[derive(Debug)]
struct Submitted {
    id: BatchId,
    ticket: Ticket,
    ops: usize,
}

/// The batches submitted and not committed, and the watermarks.
pub(crate) struct Backlog {
    handle: WriterHandle,
    marks: Watermarks,
    /// Batches the writer took, oldest first, until a completion covers them.
    submitted: VecDeque<Submitted>,
    /// Batches that found the writer's queue full, oldest first.
    waiting: VecDeque<(Ticket, Vec<StoreOp>)>,
    next: u64,
    /// Ops of the batches in `submitted` and `waiting`.
    ops: usize,
    behind: bool,
    /// Ops submitted since the start, committed or not.
    submitted_ops: u64,
}

impl Backlog {
    /// An empty backlog over the writer of `handle`.
    pub(crate) fn new(handle: WriterHandle, marks: Watermarks) -> Self {
        Self {
            handle,
            marks,
            submitted: VecDeque::new(),
            waiting: VecDeque::new(),
            next: 0,
            ops: 0,
            behind: false,
            submitted_ops: 0,
        }
    }

    /// Hands a batch to the writer, or keeps it in order until the writer's queue has room;
    /// never waits.
    ///
    /// # Errors
    /// [`WriterGone`] when the writer has stopped.
    pub(crate) fn submit(&mut self, ops: Vec<StoreOp>) -> Result<Ticket, WriterGone> {
        let ticket = Ticket(self.next);
        let count = ops.len();
        if self.waiting.is_empty() {
            match self.handle.try_submit(ops) {
                Ok(id) => self.submitted.push_back(Submitted {
                    id,
                    ticket,
                    ops: count,
                }),
                Err(TrySubmitError::Full(ops)) => self.waiting.push_back((ticket, ops)),
                Err(_) => return Err(WriterGone),
            }
        } else {
            self.waiting.push_back((ticket, ops));
        }
        self.next += 1;
        self.ops += count;
        self.submitted_ops += count as u64;
        self.update();
        Ok(ticket)
    }

    /// What `completion` settled, in tickets.
    pub(crate) fn settle(&mut self, completion: &Completion) -> Option<Settled> {
        let (last, failed) = match completion {
            Completion::Failed { batch, .. } => (*batch, true),
            other => (other.last(), false),
        };
        let mut settled = None;
        while let Some(front) = self.submitted.front()
            && front.id <= last
        {
            self.ops = self.ops.saturating_sub(front.ops);
            settled = Some(front.ticket);
            self.submitted.pop_front();
        }
        self.pump();
        self.update();
        settled.map(|t| {
            if failed {
                Settled::Failed(t)
            } else {
                Settled::Committed(t)
            }
        })
    }

    /// Hands waiting batches to the writer while its queue has room.
    fn pump(&mut self) {
        while let Some((ticket, ops)) = self.waiting.pop_front() {
            let count = ops.len();
            match self.handle.try_submit(ops) {
                Ok(id) => self.submitted.push_back(Submitted {
                    id,
                    ticket,
                    ops: count,
                }),
                Err(TrySubmitError::Full(ops)) => {
                    self.waiting.push_front((ticket, ops));
                    return;
                }
                // Gone: the completions channel closes too, and the event loop stops
                // holding anything back.
                Err(_) => {
                    self.waiting.clear();
                    return;
                }
            }
        }
    }

    /// Hands every waiting batch to the writer, waiting for room: at shutdown only.
    pub(crate) fn submit_waiting(&mut self) {
        while let Some((ticket, ops)) = self.waiting.pop_front() {
            let count = ops.len();
            match self.handle.submit(ops) {
                Ok(id) => self.submitted.push_back(Submitted {
                    id,
                    ticket,
                    ops: count,
                }),
                Err(_) => {
                    self.waiting.clear();
                    return;
                }
            }
        }
    }

    /// Forgets every batch: the writer has stopped, and nothing it had will be committed.
    pub(crate) fn abandon(&mut self) {
        self.submitted.clear();
        self.waiting.clear();
        self.ops = 0;
        self.behind = false;
    }

    fn update(&mut self) {
        if self.ops >= self.marks.high_ops || !self.waiting.is_empty() {
            self.behind = true;
        } else if self.ops <= self.marks.low_ops {
            self.behind = false;
        }
    }

    /// Whether the backlog is full: [`LIMIT_FACTOR`] times the high watermark of uncommitted
    /// ops. Clients that feed the store are paused from the high watermark on, so what
    /// reaches this is work they cannot be paused from (the client records of clean sessions
    /// connecting and going, a single message fanned out to more sessions than the watermark):
    /// the event loop then accepts no new connections until it is under it again.
    pub(crate) const fn full(&self) -> bool {
        self.ops >= self.marks.high_ops.saturating_mul(LIMIT_FACTOR)
    }

    /// Whether the store is behind: from the high watermark (or a full writer queue) until
    /// the low one.
    pub(crate) const fn behind(&self) -> bool {
        self.behind
    }

    /// Batches submitted and not committed (the writer's and those waiting for its queue).
    pub(crate) fn batches(&self) -> usize {
        self.submitted.len() + self.waiting.len()
    }

    /// Their ops.
    pub(crate) const fn ops(&self) -> usize {
        self.ops
    }

    /// Ops submitted since the start, committed or not: a counter that only grows.
    pub(crate) const fn submitted_ops(&self) -> u64 {
        self.submitted_ops
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    use mqtt5_store::{MemoryStore, Recovered, Store, Writer, WriterConfig};

    use super::*;

    /// A store whose `apply` waits until the test lets one batch group through.
    struct Gate {
        inner: MemoryStore,
        go: Arc<Mutex<mpsc::Receiver<()>>>,
    }

    impl Store for Gate {
        fn recover(&mut self) -> Result<Recovered, mqtt5_store::Error> {
            self.inner.recover()
        }

        fn apply(&mut self, ops: &[StoreOp]) -> Result<(), mqtt5_store::Error> {
            let go = self.go.lock().expect("lock");
            go.recv().map_err(|_| mqtt5_store::Error::WriterGone)?;
            self.inner.apply(ops)
        }
    }

    fn op(n: u64) -> StoreOp {
        StoreOp::MessageDeleted { id: n }
    }

    /// A writer with a queue of `capacity` batches over a gated store; the sender opens the
    /// gate once per commit.
    fn gated(
        capacity: usize,
        marks: Watermarks,
    ) -> (
        Writer<Gate>,
        Backlog,
        mpsc::Sender<()>,
        crossbeam_channel::Receiver<Completion>,
    ) {
        let (go, gate) = mpsc::channel();
        let (tx, completions) = crossbeam_channel::unbounded();
        let store = Gate {
            inner: MemoryStore::new(),
            go: Arc::new(Mutex::new(gate)),
        };
        let config = WriterConfig {
            queue_capacity: capacity,
            max_batch_ops: 1,
            ..WriterConfig::default()
        };
        let (writer, handle) = Writer::spawn(store, config, tx, Box::new(|| {})).expect("spawn");
        (writer, Backlog::new(handle, marks), go, completions)
    }

    #[test]
    fn a_full_writer_queue_never_blocks_a_submission_and_order_is_kept() {
        let marks = Watermarks {
            high_ops: 1000,
            low_ops: 0,
        };
        let (writer, mut backlog, go, completions) = gated(1, marks);
        // The writer holds one batch at its gate and one in its queue; the rest wait here.
        let tickets: Vec<Ticket> = (0..10)
            .map(|n| backlog.submit(vec![op(n)]).expect("submitted"))
            .collect();
        assert!(tickets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(backlog.batches(), 10);
        assert_eq!(backlog.ops(), 10);
        assert!(
            backlog.behind(),
            "a batch that waits for the queue means behind"
        );
        let mut committed = Vec::new();
        while committed.last() != tickets.last() {
            go.send(()).expect("gate");
            let completion = completions.recv().expect("a completion");
            if let Some(Settled::Committed(t)) = backlog.settle(&completion) {
                committed.push(t);
            }
        }
        assert!(committed.windows(2).all(|w| w[0] < w[1]), "{committed:?}");
        assert_eq!(backlog.batches(), 0);
        assert_eq!(backlog.ops(), 0);
        assert!(!backlog.behind());
        drop(go);
        drop(writer);
    }

    #[test]
    fn behind_from_the_high_watermark_until_the_low_one() {
        let marks = Watermarks {
            high_ops: 4,
            low_ops: 1,
        };
        let (writer, mut backlog, go, completions) = gated(64, marks);
        backlog.submit(vec![op(1), op(2)]).expect("submitted");
        assert!(!backlog.behind());
        backlog.submit(vec![op(3), op(4)]).expect("submitted");
        assert!(backlog.behind(), "4 ops uncommitted");
        backlog.submit(vec![op(5)]).expect("submitted");
        let settle_one = |backlog: &mut Backlog| {
            go.send(()).expect("gate");
            let completion = completions.recv().expect("a completion");
            backlog.settle(&completion)
        };
        settle_one(&mut backlog);
        assert_eq!(backlog.ops(), 3);
        assert!(backlog.behind(), "above the low watermark: still behind");
        settle_one(&mut backlog);
        assert_eq!(backlog.ops(), 1);
        assert!(!backlog.behind(), "at the low watermark: caught up");
        settle_one(&mut backlog);
        drop(go);
        drop(writer);
    }

    #[test]
    fn full_from_four_times_the_high_watermark() {
        let marks = Watermarks {
            high_ops: 2,
            low_ops: 1,
        };
        let (writer, mut backlog, go, completions) = gated(64, marks);
        backlog.submit((0..7).map(op).collect()).expect("submitted");
        assert!(backlog.behind());
        assert!(!backlog.full(), "7 ops, the limit is 8");
        backlog.submit(vec![op(8)]).expect("submitted");
        assert!(backlog.full());
        go.send(()).expect("gate");
        let completion = completions.recv().expect("a completion");
        backlog.settle(&completion);
        assert_eq!(backlog.ops(), 1);
        assert!(!backlog.full());
        go.send(()).expect("gate");
        drop(go);
        drop(writer);
    }

    #[test]
    fn a_failed_batch_is_reported_by_its_ticket() {
        let marks = Watermarks {
            high_ops: 100,
            low_ops: 0,
        };
        let (writer, mut backlog, go, completions) = gated(4, marks);
        // A subscription of a session that does not exist fails in the memory store.
        let bad = StoreOp::Unsubscribed {
            client_id: "nobody".into(),
            filter: "x".into(),
        };
        let first = backlog.submit(vec![op(1)]).expect("submitted");
        let second = backlog.submit(vec![bad]).expect("submitted");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            go.send(()).expect("gate");
            let completion = completions.recv().expect("a completion");
            seen.extend(backlog.settle(&completion));
        }
        assert_eq!(
            seen,
            vec![Settled::Committed(first), Settled::Failed(second)]
        );
        drop(go);
        drop(writer);
    }
}
