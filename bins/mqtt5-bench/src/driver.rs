//! Closed-loop publishers: many MQTT 5 connections per thread, driven by `mio` readiness.
//!
//! Each publisher is one connection with one QoS 1 PUBLISH in flight: it sends the next
//! message only when the PUBACK of the previous one has arrived, so the acknowledged rate is
//! what the broker can acknowledge, and with `--durability sync` what it can make durable.
//!
//! ```text
//!  connect ──CONNACK──> ready ──(all ready: the window is set)──> in flight ──PUBACK──┐
//!                                                                     ^               │
//!                                                                     └── before end ─┤
//!                                                         done <── DISCONNECT ── end ─┘
//! ```
//!
//! The tool must never be the bottleneck, so the per-message work is small: every PUBLISH is
//! pre-encoded once per connection and only its packet identifier and the sequence number in
//! its payload are patched before each send; each thread reads into one large buffer; there
//! is one system call to send a message and usually one to read its acknowledgement.
//!
//! Payloads carry the publisher's index and the message's sequence number (see [`stamp`]), so
//! that a subscriber can tell exactly which acknowledged messages reached it.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use mqtt5_codec::{
    ConnAckReason, Decoder, Delivery, Disconnect, DisconnectReason, Packet, PacketId,
    ProtocolVersion, PubAckReason, Publish, TopicName,
};

use crate::client::ConnectOptions;
use crate::error::{Context, Error, Result};

/// Bytes each thread asks of a socket per read.
const READ_CHUNK: usize = 256 * 1024;

/// How long connecting every publisher (TCP and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest a poll sleeps, so that deadlines are noticed.
const POLL_TICK: Duration = Duration::from_millis(50);

/// The smallest payload that carries a [`stamp`].
pub(crate) const MIN_PAYLOAD: usize = 12;

/// Writes the publisher index and sequence number at the start of a payload.
fn stamp(payload: &mut [u8], publisher: u32, seq: u64) {
    if let Some(head) = payload.get_mut(..MIN_PAYLOAD) {
        let (index, sequence) = head.split_at_mut(4);
        index.copy_from_slice(&publisher.to_be_bytes());
        sequence.copy_from_slice(&seq.to_be_bytes());
    }
}

/// The publisher index and sequence number of a payload written by this driver.
pub(crate) fn read_stamp(payload: &[u8]) -> Option<(u32, u64)> {
    let index = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(payload.get(4..MIN_PAYLOAD)?.try_into().ok()?);
    Some((index, seq))
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct PublishLoad {
    /// The broker.
    pub(crate) addr: SocketAddr,
    /// Publishers (connections).
    pub(crate) publishers: usize,
    /// Threads that drive them; publishers are dealt out round-robin.
    pub(crate) threads: usize,
    /// Client identifiers are this prefix and the publisher's index.
    pub(crate) client_prefix: String,
    /// Topics are this prefix and the publisher's index.
    pub(crate) topic_prefix: String,
    /// Payload bytes per message, at least [`MIN_PAYLOAD`].
    pub(crate) payload_len: usize,
    /// Publishing before the measured window.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
    /// How long to wait for the last acknowledgements after the window.
    pub(crate) ack_timeout: Duration,
}

/// The measured window: acknowledgements of messages sent at or after `from` and received by
/// `until` count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// The end of the warm-up.
    pub(crate) from: Instant,
    /// The end of the run: no message is sent after it.
    pub(crate) until: Instant,
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublisherOutcome {
    /// Its index: the number in its client identifier, topic and payload stamps.
    pub(crate) index: u32,
    /// Messages acknowledged with success, warm-up included: sequence numbers `0..acked`.
    pub(crate) acked: u64,
    /// Acknowledgements that count for the window.
    pub(crate) window_acks: u64,
    /// The latency of each of those, from the write of the PUBLISH to the read of its PUBACK,
    /// in nanoseconds.
    pub(crate) latencies_ns: Vec<u64>,
    /// A message was sent but its acknowledgement never came.
    pub(crate) unacked: bool,
    /// Why the publisher stopped early, if it did.
    pub(crate) failure: Option<String>,
}

/// What the whole load did.
#[derive(Debug)]
pub(crate) struct LoadOutcome {
    /// The measured window.
    pub(crate) window: Window,
    /// Every publisher, by index.
    pub(crate) publishers: Vec<PublisherOutcome>,
}

/// Runs the load: connects every publisher, publishes through the warm-up and the window,
/// waits for the last acknowledgements, and disconnects.
///
/// `at_edge` runs on the calling thread at the start and at the end of the window (for
/// example to read CPU counters).
///
/// # Errors
/// When a publisher cannot connect, or a thread fails. A publisher that fails later is
/// reported in its [`PublisherOutcome::failure`].
pub(crate) fn run(load: &PublishLoad, mut at_edge: impl FnMut()) -> Result<LoadOutcome> {
    let threads = load.threads.clamp(1, load.publishers.max(1));
    let load = Arc::new(load.clone());
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let mut go = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    for t in 0..threads {
        let indices: Vec<u32> = (0..load.publishers)
            .filter(|i| i % threads == t)
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        let (go_tx, go_rx) = mpsc::channel::<Window>();
        go.push(go_tx);
        let load = Arc::clone(&load);
        let ready = ready_tx.clone();
        let worker = thread::Builder::new()
            .name(format!("publishers-{t}"))
            .spawn(move || Worker::new(&load, &indices)?.run(&load, &ready, &go_rx))
            .context(|| "spawning a publisher thread".into())?;
        workers.push(worker);
    }
    drop(ready_tx);

    let mut failure = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some(Error::Protocol("a publisher thread stopped".into()));
                break;
            }
        }
    }
    let join = |workers: Vec<thread::JoinHandle<Result<Vec<PublisherOutcome>>>>| {
        let mut all = Vec::new();
        for w in workers {
            match w.join() {
                Ok(Ok(outcomes)) => all.extend(outcomes),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Error::Protocol("a publisher thread panicked".into())),
            }
        }
        all.sort_unstable_by_key(|o| o.index);
        Ok(all)
    };
    if let Some(e) = failure {
        // Dropping the senders releases the threads still waiting for the window.
        drop(go);
        let _ = join(workers);
        return Err(e);
    }

    let start = Instant::now();
    let window = Window {
        from: start + load.warmup,
        until: start + load.warmup + load.duration,
    };
    for tx in &go {
        let _ = tx.send(window);
    }
    drop(go);
    thread::sleep(window.from.saturating_duration_since(Instant::now()));
    at_edge();
    thread::sleep(window.until.saturating_duration_since(Instant::now()));
    at_edge();
    let publishers = join(workers)?;
    Ok(LoadOutcome { window, publishers })
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The TCP connection is being established.
    Connecting,
    /// CONNECT sent.
    AwaitConnAck,
    /// Connected, waiting for the window.
    Ready,
    /// A PUBLISH with sequence number `seq` is in flight since `sent_at`.
    InFlight { seq: u64, sent_at: Instant },
    /// Finished: DISCONNECT sent.
    Done,
    /// Stopped by an error (recorded in the outcome).
    Failed,
}

/// One publisher's connection.
struct Conn {
    stream: TcpStream,
    state: State,
    /// Received bytes not yet decoded.
    read: BytesMut,
    /// Bytes to write.
    write: BytesMut,
    /// The pre-encoded PUBLISH; the packet identifier and the payload stamp are patched per
    /// send.
    publish: Vec<u8>,
    /// Offset of the packet identifier in `publish`.
    pid_at: usize,
    /// Offset of the payload (and its stamp) in `publish`.
    payload_at: usize,
    outcome: PublisherOutcome,
}

impl Conn {
    fn fail(&mut self, why: String) {
        if matches!(self.state, State::InFlight { .. }) {
            self.outcome.unacked = true;
        }
        self.state = State::Failed;
        self.outcome.failure.get_or_insert(why);
    }

    /// Queues the PUBLISH with sequence number `seq` and writes it.
    fn send_publish(&mut self, seq: u64) {
        let packet_id = packet_id(seq);
        if let Some(pid) = self.publish.get_mut(self.pid_at..self.pid_at + 2) {
            pid.copy_from_slice(&packet_id.to_be_bytes());
        }
        let index = self.outcome.index;
        if let Some(payload) = self.publish.get_mut(self.payload_at..) {
            stamp(payload, index, seq);
        }
        self.write.extend_from_slice(&self.publish);
        self.state = State::InFlight {
            seq,
            sent_at: Instant::now(),
        };
        self.flush();
    }

    /// Writes what is queued, until done or the socket is full.
    fn flush(&mut self) {
        while !self.write.is_empty() {
            match self.stream.write(&self.write) {
                Ok(0) => {
                    self.fail("the broker closed the connection".into());
                    return;
                }
                Ok(n) => self.write.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    return;
                }
            }
        }
    }

    /// Reads everything available into `read`, through `scratch`; false when the connection
    /// ended (the reason recorded). `closing`: the event said the peer closed its side, so
    /// read on to the end of the stream.
    fn fill(&mut self, scratch: &mut [u8], closing: bool) -> bool {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.fail("the broker closed the connection".into());
                    return false;
                }
                Ok(n) => {
                    self.read
                        .extend_from_slice(scratch.get(..n).unwrap_or_default());
                    // A short read emptied the socket: anything arriving later raises a new
                    // readiness edge, so the read that would return WouldBlock is saved.
                    if n < scratch.len() && !closing {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("read: {e}"));
                    return false;
                }
            }
        }
    }
}

/// The packet identifier of sequence number `seq`: 1 to 65,535, cycling.
fn packet_id(seq: u64) -> u16 {
    u16::try_from(seq % 65_535).unwrap_or(0) + 1
}

/// The PUBLISH of publisher `index`, encoded once, with the offsets to patch.
fn template(load: &PublishLoad, index: u32) -> Result<(Vec<u8>, usize, usize)> {
    if load.payload_len < MIN_PAYLOAD {
        return Err(Error::Protocol(format!(
            "payloads need at least {MIN_PAYLOAD} bytes"
        )));
    }
    let topic = TopicName::try_from(format!("{}{index}", load.topic_prefix).as_str())?;
    let mut publish = Publish::new(topic, vec![b'x'; load.payload_len]);
    publish.delivery = Delivery::AtLeastOnce(PacketId::from(NonZeroU16::MIN));
    let mut buf = BytesMut::new();
    Packet::from(publish).encode(ProtocolVersion::V5, &mut buf);
    // A QoS 1 PUBLISH without properties ends with: packet id (2), property length 0 (1),
    // payload.
    let payload_at = buf.len() - load.payload_len;
    let pid_at = payload_at - 3;
    let mut bytes = buf.to_vec();

    // Check the offsets once: a patched copy must decode to the patched values.
    if let Some(pid) = bytes.get_mut(pid_at..pid_at + 2) {
        pid.copy_from_slice(&packet_id(70_000).to_be_bytes());
    }
    if let Some(payload) = bytes.get_mut(payload_at..) {
        stamp(payload, index, 70_000);
    }
    let decoded = Decoder::new(ProtocolVersion::V5).decode(&mut BytesMut::from(&bytes[..]))?;
    let ok = matches!(&decoded, Some(Packet::Publish(p))
        if p.delivery.packet_id().map(PacketId::get) == Some(packet_id(70_000))
            && read_stamp(p.payload()) == Some((index, 70_000)));
    if !ok {
        return Err(Error::Protocol(
            "the pre-encoded PUBLISH does not have the expected layout".into(),
        ));
    }
    Ok((bytes, pid_at, payload_at))
}

/// One thread's publishers.
struct Worker {
    poll: Poll,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    decoder: Decoder,
}

impl Worker {
    fn new(load: &PublishLoad, indices: &[u32]) -> Result<Self> {
        let poll = Poll::new().context(|| "creating a poll".into())?;
        let mut conns = Vec::with_capacity(indices.len());
        for (token, &index) in indices.iter().enumerate() {
            let (publish, pid_at, payload_at) = template(load, index)?;
            let mut stream =
                TcpStream::connect(load.addr).context(|| format!("connecting to {}", load.addr))?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .context(|| "registering a socket".into())?;
            conns.push(Conn {
                stream,
                state: State::Connecting,
                read: BytesMut::with_capacity(4096),
                write: BytesMut::with_capacity(publish.len() * 2),
                publish,
                pid_at,
                payload_at,
                outcome: PublisherOutcome {
                    index,
                    ..PublisherOutcome::default()
                },
            });
        }
        Ok(Self {
            poll,
            conns,
            scratch: vec![0; READ_CHUNK],
            decoder: Decoder::new(ProtocolVersion::V5),
        })
    }

    fn run(
        mut self,
        load: &PublishLoad,
        ready: &mpsc::Sender<Result<()>>,
        go: &mpsc::Receiver<Window>,
    ) -> Result<Vec<PublisherOutcome>> {
        if let Err(e) = self.connect_all(load) {
            let _ = ready.send(Err(Error::Protocol(e.to_string())));
            return Err(e);
        }
        let _ = ready.send(Ok(()));
        let Ok(window) = go.recv() else {
            return Ok(Vec::new());
        };
        self.publish_all(window, load.ack_timeout)?;
        Ok(self.conns.into_iter().map(|c| c.outcome).collect())
    }

    /// Connects every publisher and waits for its CONNACK.
    fn connect_all(&mut self, load: &PublishLoad) -> Result<()> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut events = Events::with_capacity(1024);
        while self.conns.iter().any(|c| c.state != State::Ready) {
            if let Some(c) = self.conns.iter().find(|c| c.state == State::Failed) {
                return Err(Error::Protocol(format!(
                    "publisher {} could not connect: {}",
                    c.outcome.index,
                    c.outcome.failure.as_deref().unwrap_or("unknown")
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Protocol(format!(
                    "publishers not connected after {CONNECT_TIMEOUT:?}"
                )));
            }
            self.poll
                .poll(&mut events, Some(POLL_TICK))
                .context(|| "polling".into())?;
            for event in &events {
                let Some(conn) = self.conns.get_mut(event.token().0) else {
                    continue;
                };
                if conn.state == State::Connecting && event.is_writable() {
                    match conn.stream.take_error() {
                        Ok(Some(e)) | Err(e) => {
                            conn.fail(format!("connect: {e}"));
                            continue;
                        }
                        Ok(None) => {}
                    }
                    match conn.stream.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                        Err(e) => {
                            conn.fail(format!("connect: {e}"));
                            continue;
                        }
                    }
                    let _ = conn.stream.set_nodelay(true);
                    let options = ConnectOptions {
                        client_id: format!("{}{}", load.client_prefix, conn.outcome.index),
                        clean_start: true,
                        session_expiry: 0,
                    };
                    options
                        .packet()?
                        .encode(ProtocolVersion::V5, &mut conn.write);
                    conn.state = State::AwaitConnAck;
                    conn.flush();
                }
                if event.is_writable() && conn.state == State::AwaitConnAck {
                    conn.flush();
                }
                if event.is_readable() && conn.state == State::AwaitConnAck {
                    if !conn.fill(&mut self.scratch, event.is_read_closed()) {
                        continue;
                    }
                    match self.decoder.decode(&mut conn.read) {
                        Ok(Some(Packet::ConnAck(ack))) if ack.reason == ConnAckReason::Success => {
                            conn.state = State::Ready;
                        }
                        Ok(Some(Packet::ConnAck(ack))) => {
                            conn.fail(format!("CONNECT refused: {:?}", ack.reason));
                        }
                        Ok(Some(other)) => {
                            conn.fail(format!("{:?} before CONNACK", other.packet_type()));
                        }
                        Ok(None) => {}
                        Err(e) => conn.fail(format!("malformed packet: {e}")),
                    }
                }
            }
        }
        Ok(())
    }

    /// Publishes until the window ends, then waits up to `ack_timeout` for the messages still
    /// in flight and disconnects.
    fn publish_all(&mut self, window: Window, ack_timeout: Duration) -> Result<()> {
        for conn in &mut self.conns {
            conn.send_publish(0);
        }
        let deadline = window.until + ack_timeout;
        let mut events = Events::with_capacity(1024);
        let mut active = self
            .conns
            .iter()
            .filter(|c| !matches!(c.state, State::Done | State::Failed))
            .count();
        while active > 0 {
            let now = Instant::now();
            if now > deadline {
                break;
            }
            self.poll
                .poll(&mut events, Some(POLL_TICK.min(deadline - now)))
                .context(|| "polling".into())?;
            for event in &events {
                let Some(conn) = self.conns.get_mut(event.token().0) else {
                    continue;
                };
                if matches!(conn.state, State::Done | State::Failed) {
                    continue;
                }
                if event.is_writable() {
                    conn.flush();
                }
                if (event.is_readable() || event.is_read_closed())
                    && conn.fill(&mut self.scratch, event.is_read_closed())
                {
                    let now = Instant::now();
                    Self::handle_acks(conn, &self.decoder, window, now);
                }
                if matches!(conn.state, State::Done | State::Failed) {
                    active -= 1;
                }
            }
        }
        for conn in &mut self.conns {
            if matches!(conn.state, State::InFlight { .. }) {
                conn.outcome.unacked = true;
                conn.outcome.failure.get_or_insert_with(|| {
                    format!("no PUBACK within {ack_timeout:?} of the end of the run")
                });
            }
        }
        Ok(())
    }

    /// Handles every packet in `conn.read`: a PUBACK completes the message in flight and,
    /// before the end of the window, sends the next one.
    fn handle_acks(conn: &mut Conn, decoder: &Decoder, window: Window, now: Instant) {
        loop {
            let packet = match decoder.decode(&mut conn.read) {
                Ok(Some(packet)) => packet,
                Ok(None) => return,
                Err(e) => {
                    conn.fail(format!("malformed packet: {e}"));
                    return;
                }
            };
            match packet {
                Packet::PubAck(ack) => {
                    let State::InFlight { seq, sent_at } = conn.state else {
                        conn.fail("PUBACK with nothing in flight".into());
                        return;
                    };
                    if ack.packet_id.get() != packet_id(seq) {
                        conn.fail(format!(
                            "PUBACK for packet {} while {} is in flight",
                            ack.packet_id.get(),
                            packet_id(seq)
                        ));
                        return;
                    }
                    if !matches!(
                        ack.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    ) {
                        conn.fail(format!("PUBACK {:?}", ack.reason));
                        return;
                    }
                    conn.outcome.acked = seq + 1;
                    if sent_at >= window.from && now <= window.until {
                        conn.outcome.window_acks += 1;
                        let ns = now.duration_since(sent_at).as_nanos();
                        conn.outcome
                            .latencies_ns
                            .push(u64::try_from(ns).unwrap_or(u64::MAX));
                    }
                    if now < window.until {
                        conn.send_publish(seq + 1);
                    } else {
                        conn.state = State::Done;
                        Packet::from(Disconnect::new(DisconnectReason::NormalDisconnection))
                            .encode(ProtocolVersion::V5, &mut conn.write);
                        conn.flush();
                        return;
                    }
                }
                Packet::Disconnect(d) => {
                    conn.fail(format!("DISCONNECT from the broker: {:?}", d.reason));
                    return;
                }
                _ => {}
            }
        }
    }
}
