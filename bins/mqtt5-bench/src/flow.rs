//! Closed-loop message flows: publishers and subscribers on one `mio` poll in one thread, for
//! the throughput and latency scenarios (fan-in, fan-out, topics, latency).
//!
//! Every message is tracked from its send to its completion. A message is complete when every
//! subscriber whose filters match its topic has received it and, at QoS 1 and 2, when its
//! publisher has its PUBACK (PUBCOMP). Each publisher keeps at most `window` messages not yet
//! complete, so the broker cannot hide work in socket buffers or queues: the rate is what it
//! delivers end to end.
//!
//! ```text
//!  publisher p: ... done ─────────── next_seq ...     at most `window` apart
//!                    │ ring[seq % window]: what each message still needs
//!                    └ advances when ring[done % window] reaches 0
//!  subscriber s ──PUBLISH(p, seq)──> need − 1     PUBACK/PUBCOMP(seq) ──> need − 1
//! ```
//!
//! The payload carries the publisher's index, the sequence number and the send time in
//! nanoseconds since the flow's epoch (one `Instant` of this process): subscribers mark what
//! they received in a bitmap per publisher, so loss and duplicates are exact, and compute
//! latencies from the send time.
//!
//! QoS 0 messages can be lost: a publisher whose oldest message has made no progress for
//! [`QOS0_STALL`] gives up on what is outstanding and goes on; the loss is reported.
//! At QoS 1 and 2 a message that is acknowledged but not delivered, or never acknowledged, fails
//! the run.
//!
//! The tool is one thread. PUBLISH packets are encoded once per topic and copied into the
//! write buffer, where only the packet identifier and the payload stamp are patched; every
//! publisher sends all the messages its window allows with one write, and reads go through
//! one large buffer.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use mqtt5_codec::{
    ConnAckReason, Connect, Decoder, Delivery, Disconnect, DisconnectReason, MqttString, Packet,
    PacketId, ProtocolVersion, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason,
    PubRel, Publish, QoS, SubAckReason, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};

use crate::broker::cpu_time;
use crate::error::{Context, Error, Result};

/// The keep-alive of every client, seconds (rumqttd refuses 0; runs are far shorter than
/// the 90 s a silent client would be allowed).
const KEEP_ALIVE: u16 = 60;

/// Bytes asked of a socket per read.
const READ_CHUNK: usize = 256 * 1024;

/// How long connecting and subscribing every client may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest a poll sleeps, so that deadlines and stalls are noticed.
const POLL_TICK: Duration = Duration::from_millis(10);

/// How long a QoS 0 publisher waits for its oldest message before it counts what is
/// outstanding as lost.
pub(crate) const QOS0_STALL: Duration = Duration::from_secs(1);

/// The smallest payload that carries a [`stamp`]: publisher, sequence number, send time.
pub(crate) const MIN_PAYLOAD: usize = 20;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct FlowSpec {
    /// The broker.
    pub(crate) addr: SocketAddr,
    /// Client identifiers start with this.
    pub(crate) client_prefix: String,
    /// The QoS of every PUBLISH and subscription.
    pub(crate) qos: QoS,
    /// Payload bytes per message, at least [`MIN_PAYLOAD`].
    pub(crate) payload: usize,
    /// Every topic published to.
    pub(crate) topics: Vec<String>,
    /// Per publisher: the indices (in `topics`) it cycles through, one per message.
    pub(crate) publishers: Vec<Vec<usize>>,
    /// Per subscriber: its filters.
    pub(crate) subscribers: Vec<Vec<String>>,
    /// Messages each publisher may have incomplete at once.
    pub(crate) window: usize,
    /// Messages per second per publisher, or as fast as the window allows.
    pub(crate) rate: Option<f64>,
    /// Publishing before the measured window.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
    /// How long to wait for the last messages after the window.
    pub(crate) drain: Duration,
    /// Keep every delivery latency of the window (for percentiles).
    pub(crate) latencies: bool,
}

/// What a flow did.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowOutcome {
    /// The measured window's length.
    pub(crate) window: Duration,
    /// Messages sent, over the whole run.
    pub(crate) sent: u64,
    /// Messages completed in the window.
    pub(crate) window_completed: u64,
    /// Deliveries (new messages at a subscriber) in the window.
    pub(crate) window_deliveries: u64,
    /// Deliveries the subscriptions called for, over the whole run.
    pub(crate) expected: u64,
    /// Distinct deliveries received, over the whole run.
    pub(crate) received: u64,
    /// Deliveries received more than once.
    pub(crate) duplicates: u64,
    /// QoS 1/2 messages whose PUBACK or PUBCOMP never came.
    pub(crate) unacked: u64,
    /// Times a QoS 0 publisher gave up waiting (see [`QOS0_STALL`]).
    pub(crate) stalls: u64,
    /// Latencies of the deliveries of messages sent in the window, nanoseconds, unsorted.
    pub(crate) latencies_ns: Vec<u64>,
    /// This tool's CPU use in the window, in cores.
    pub(crate) tool_cpu: Option<f64>,
    /// The broker's CPU use in the window, in cores.
    pub(crate) broker_cpu: Option<f64>,
    /// What went wrong with a connection.
    pub(crate) problems: Vec<String>,
}

impl FlowOutcome {
    /// Deliveries expected but not received.
    pub(crate) fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
}

/// Writes the publisher index, sequence number and send time at the start of a payload.
fn stamp(payload: &mut [u8], publisher: u32, seq: u64, sent_ns: u64) {
    if let Some(head) = payload.get_mut(..MIN_PAYLOAD) {
        let (index, rest) = head.split_at_mut(4);
        let (sequence, time) = rest.split_at_mut(8);
        index.copy_from_slice(&publisher.to_be_bytes());
        sequence.copy_from_slice(&seq.to_be_bytes());
        time.copy_from_slice(&sent_ns.to_be_bytes());
    }
}

/// The publisher index, sequence number and send time of a payload written by [`stamp`].
fn read_stamp(payload: &[u8]) -> Option<(u32, u64, u64)> {
    let index = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?);
    let sent = u64::from_be_bytes(payload.get(12..MIN_PAYLOAD)?.try_into().ok()?);
    Some((index, seq, sent))
}

/// The packet identifier of sequence number `seq`: 1 to 65,535, cycling.
fn packet_id(seq: u64) -> u16 {
    u16::try_from(seq % 65_535).unwrap_or(0) + 1
}

/// Whether topic name `topic` matches filter `filter` (`+` and `#` wildcards; no `$` topics
/// are used here).
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A PUBLISH encoded once: the bytes and where to patch them.
struct Template {
    bytes: Vec<u8>,
    /// The offset of the packet identifier (QoS 1 and 2).
    pid_at: Option<usize>,
    /// The offset of the payload.
    payload_at: usize,
}

impl Template {
    fn new(topic: &str, qos: QoS, payload: usize) -> Result<Self> {
        let mut publish = Publish::new(TopicName::try_from(topic)?, vec![b'x'; payload]);
        let one = PacketId::from(NonZeroU16::MIN);
        publish.delivery = match qos {
            QoS::AtMostOnce => Delivery::AtMostOnce,
            QoS::AtLeastOnce => Delivery::AtLeastOnce(one),
            QoS::ExactlyOnce => Delivery::ExactlyOnce(one),
        };
        let mut buf = BytesMut::new();
        Packet::from(publish).encode(ProtocolVersion::V5, &mut buf);
        let payload_at = buf.len() - payload;
        // Before the payload: the property length (0, one byte), and before it the packet
        // identifier when there is one.
        let pid_at = (qos != QoS::AtMostOnce).then(|| payload_at - 3);
        let template = Self {
            bytes: buf.to_vec(),
            pid_at,
            payload_at,
        };
        // Check the offsets once: a patched copy must decode to the patched values.
        let mut copy = BytesMut::new();
        template.append(&mut copy, 7, 70_000, 123_456_789);
        let decoded = Decoder::new(ProtocolVersion::V5).decode(&mut copy)?;
        let ok = matches!(&decoded, Some(Packet::Publish(p))
            if p.delivery.packet_id().map(PacketId::get)
                == pid_at.map(|_| packet_id(70_000))
                && read_stamp(p.payload()) == Some((7, 70_000, 123_456_789)));
        if !ok {
            return Err(Error::Protocol(
                "the pre-encoded PUBLISH does not have the expected layout".into(),
            ));
        }
        Ok(template)
    }

    /// Appends the PUBLISH of `seq` to `out`, patched in place.
    fn append(&self, out: &mut BytesMut, publisher: u32, seq: u64, sent_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(at) = self.pid_at
            && let Some(pid) = out.get_mut(start + at..start + at + 2)
        {
            pid.copy_from_slice(&packet_id(seq).to_be_bytes());
        }
        if let Some(payload) = out.get_mut(start + self.payload_at..) {
            stamp(payload, publisher, seq, sent_ns);
        }
    }
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The TCP connection is being established.
    Connecting,
    /// CONNECT sent.
    AwaitConnAck,
    /// SUBSCRIBE sent (subscribers).
    AwaitSubAck,
    /// Set up.
    Ready,
    /// Stopped by an error (recorded).
    Failed,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy)]
enum Role {
    Publisher(usize),
    Subscriber(usize),
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    role: Role,
    phase: Phase,
    read: BytesMut,
    write: BytesMut,
    failure: Option<String>,
}

impl Conn {
    fn fail(&mut self, why: String) {
        self.phase = Phase::Failed;
        self.failure.get_or_insert(why);
    }

    /// Writes what is queued, until done or the socket is full.
    fn flush(&mut self) {
        while !self.write.is_empty() {
            match self.stream.write(&self.write) {
                Ok(0) => return self.fail("the broker closed the connection".into()),
                Ok(n) => self.write.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(format!("write: {e}")),
            }
        }
    }

    /// Reads everything available into `read`; false when the connection ended.
    fn fill(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.fail("the broker closed the connection".into());
                    return false;
                }
                Ok(n) => {
                    self.read
                        .extend_from_slice(scratch.get(..n).unwrap_or_default());
                    if n < scratch.len() {
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

/// A publisher's progress.
struct Publisher {
    /// Its connection's token.
    conn: usize,
    /// Topic indices it cycles through.
    topics: Vec<usize>,
    /// The next sequence number to send.
    next: u64,
    /// Every message before this one is complete.
    done: u64,
    /// What each incomplete message still needs, at `seq % window`.
    ring: Vec<u32>,
    /// Its window: the configured one, or the broker's Receive Maximum if lower.
    window: usize,
    /// PUBACKs or PUBCOMPs received.
    acks: u64,
    /// When `done` last moved (or the first message was sent).
    progress: Instant,
    /// Messages completed in the measured window.
    window_completed: u64,
}

impl Publisher {
    /// The sequence number of an incomplete message with packet identifier `pid`.
    fn seq_of(&self, pid: u16) -> Option<u64> {
        let pid = u64::from(pid.checked_sub(1)?);
        let base = self.done % 65_535;
        let seq = self.done + (pid + 65_535 - base) % 65_535;
        (seq < self.next).then_some(seq)
    }

    /// One need of message `seq` met; completes what it can.
    fn meet(&mut self, seq: u64, now: Instant, window: (Instant, Instant)) {
        if seq < self.done || seq >= self.next {
            return;
        }
        let len = self.ring.len() as u64;
        if let Some(slot) = self.ring.get_mut(usize::try_from(seq % len).unwrap_or(0)) {
            *slot = slot.saturating_sub(1);
        }
        self.advance(now, window);
    }

    fn advance(&mut self, now: Instant, window: (Instant, Instant)) {
        let len = self.ring.len() as u64;
        let before = self.done;
        while self.done < self.next
            && self
                .ring
                .get(usize::try_from(self.done % len).unwrap_or(0))
                .is_some_and(|&n| n == 0)
        {
            self.done += 1;
        }
        if self.done > before {
            self.progress = now;
            if now >= window.0 && now <= window.1 {
                self.window_completed += self.done - before;
            }
        }
    }
}

/// A subscriber's record.
#[derive(Default)]
struct Subscriber {
    /// Per publisher, one bit per sequence number received.
    seen: Vec<Vec<u64>>,
    received: u64,
    duplicates: u64,
    window_deliveries: u64,
}

impl Subscriber {
    /// Marks a delivery; true when new.
    fn mark(&mut self, publisher: usize, seq: u64) -> bool {
        if self.seen.len() <= publisher {
            self.seen.resize_with(publisher + 1, Vec::new);
        }
        let Some(bits) = self.seen.get_mut(publisher) else {
            return false;
        };
        let word = usize::try_from(seq / 64).unwrap_or(usize::MAX);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let Some(w) = bits.get_mut(word) else {
            return false;
        };
        let bit = 1 << (seq % 64);
        let new = *w & bit == 0;
        *w |= bit;
        new
    }

    fn has(&self, publisher: usize, seq: u64) -> bool {
        self.seen
            .get(publisher)
            .and_then(|b| b.get(usize::try_from(seq / 64).ok()?))
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// The whole flow: connections, publishers, subscribers.
struct Flow<'a> {
    spec: &'a FlowSpec,
    poll: Poll,
    conns: Vec<Conn>,
    pubs: Vec<Publisher>,
    subs: Vec<Subscriber>,
    templates: Vec<Template>,
    /// Per topic: the subscribers that must receive it.
    topic_subs: Vec<Vec<usize>>,
    decoder: Decoder,
    scratch: Vec<u8>,
    epoch: Instant,
    latencies: Vec<u64>,
}

/// Runs a flow: connects and subscribes every client, publishes through the warm-up and the
/// window, waits for the last messages, checks every delivery, disconnects.
///
/// `broker_pid` is read for CPU time at the edges of the window.
///
/// # Errors
/// When a client cannot connect or subscribe. Failures later are in the outcome.
pub(crate) fn run(spec: &FlowSpec, broker_pid: Option<u32>) -> Result<FlowOutcome> {
    if spec.payload < MIN_PAYLOAD {
        return Err(Error::Protocol(format!(
            "payloads need at least {MIN_PAYLOAD} bytes"
        )));
    }
    let templates = spec
        .topics
        .iter()
        .map(|t| Template::new(t, spec.qos, spec.payload))
        .collect::<Result<Vec<_>>>()?;
    let topic_subs = spec
        .topics
        .iter()
        .map(|t| {
            spec.subscribers
                .iter()
                .enumerate()
                .filter(|(_, filters)| filters.iter().any(|f| matches(f, t)))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let poll = Poll::new().context(|| "creating a poll".into())?;
    let mut flow = Flow {
        spec,
        poll,
        conns: Vec::new(),
        pubs: Vec::new(),
        subs: Vec::new(),
        templates,
        topic_subs,
        decoder: Decoder::new(ProtocolVersion::V5),
        scratch: vec![0; READ_CHUNK],
        epoch: Instant::now(),
        latencies: Vec::new(),
    };
    // Subscribers first: they must be subscribed before anything is published.
    for i in 0..spec.subscribers.len() {
        flow.open(Role::Subscriber(i))?;
        flow.subs.push(Subscriber::default());
    }
    flow.setup()?;
    for (i, topics) in spec.publishers.iter().enumerate() {
        let conn = flow.open(Role::Publisher(i))?;
        flow.pubs.push(Publisher {
            conn,
            topics: topics.clone(),
            next: 0,
            done: 0,
            ring: vec![0; spec.window.max(1)],
            window: spec.window.max(1),
            acks: 0,
            progress: Instant::now(),
            window_completed: 0,
        });
    }
    flow.setup()?;
    flow.publish(broker_pid)
}

impl Flow<'_> {
    /// Opens a connection; its token is its index.
    fn open(&mut self, role: Role) -> Result<usize> {
        let addr = self.spec.addr;
        let mut stream = TcpStream::connect(addr).context(|| format!("connecting to {addr}"))?;
        let token = self.conns.len();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .context(|| "registering a socket".into())?;
        self.conns.push(Conn {
            stream,
            role,
            phase: Phase::Connecting,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(64 * 1024),
            failure: None,
        });
        Ok(token)
    }

    fn client_id(&self, role: Role) -> String {
        match role {
            Role::Publisher(i) => format!("{}pub-{i}", self.spec.client_prefix),
            Role::Subscriber(i) => format!("{}sub-{i}", self.spec.client_prefix),
        }
    }

    /// Drives every connection not yet ready through CONNECT (and SUBSCRIBE).
    fn setup(&mut self) -> Result<()> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(c) = self.conns.iter().find(|c| c.phase == Phase::Failed) {
                return Err(Error::Protocol(format!(
                    "{} could not be set up: {}",
                    self.client_id(c.role),
                    c.failure.as_deref().unwrap_or("unknown")
                )));
            }
            if self.conns.iter().all(|c| c.phase == Phase::Ready) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Protocol(format!(
                    "clients not connected and subscribed after {SETUP_TIMEOUT:?}"
                )));
            }
            self.poll
                .poll(&mut events, Some(POLL_TICK))
                .context(|| "polling".into())?;
            for event in &events {
                let token = event.token().0;
                self.setup_event(token, event.is_writable(), event.is_readable())?;
            }
        }
    }

    fn setup_event(&mut self, token: usize, writable: bool, readable: bool) -> Result<()> {
        let qos = self.spec.qos;
        let Some(role) = self.conns.get(token).map(|c| c.role) else {
            return Ok(());
        };
        let client_id = self.client_id(role);
        let filters = match role {
            Role::Subscriber(i) => self.spec.subscribers.get(i).cloned().unwrap_or_default(),
            Role::Publisher(_) => Vec::new(),
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return Ok(());
        };
        if conn.phase == Phase::Connecting && writable {
            match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    conn.fail(format!("connect: {e}"));
                    return Ok(());
                }
                Ok(None) => {}
            }
            match conn.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                Err(e) => {
                    conn.fail(format!("connect: {e}"));
                    return Ok(());
                }
            }
            let _ = conn.stream.set_nodelay(true);
            connect_packet(&client_id, KEEP_ALIVE)?.encode(ProtocolVersion::V5, &mut conn.write);
            conn.phase = Phase::AwaitConnAck;
        }
        if writable {
            conn.flush();
        }
        if !readable || !matches!(conn.phase, Phase::AwaitConnAck | Phase::AwaitSubAck) {
            return Ok(());
        }
        if !conn.fill(&mut self.scratch) {
            return Ok(());
        }
        while let Some(packet) = match self.decoder.decode(&mut conn.read) {
            Ok(p) => p,
            Err(e) => {
                conn.fail(format!("malformed packet: {e}"));
                return Ok(());
            }
        } {
            match (conn.phase, packet) {
                (Phase::AwaitConnAck, Packet::ConnAck(ack)) => {
                    if ack.reason != ConnAckReason::Success {
                        conn.fail(format!("CONNECT refused: {:?}", ack.reason));
                        return Ok(());
                    }
                    if let Role::Publisher(i) = role
                        && let Some(max) = ack.properties.receive_maximum
                        && qos != QoS::AtMostOnce
                        && let Some(p) = self.pubs.get_mut(i)
                    {
                        p.window = p.window.min(usize::from(max.get()));
                    }
                    if filters.is_empty() {
                        conn.phase = Phase::Ready;
                    } else {
                        let subscriptions = filters
                            .iter()
                            .map(|f| {
                                Ok(Subscription {
                                    filter: TopicFilter::try_from(f.as_str())?,
                                    options: SubscriptionOptions::new(qos),
                                })
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Packet::from(Subscribe {
                            packet_id: NonZeroU16::MIN.into(),
                            properties: SubscribeProperties::default(),
                            subscriptions,
                        })
                        .encode(ProtocolVersion::V5, &mut conn.write);
                        conn.phase = Phase::AwaitSubAck;
                        conn.flush();
                    }
                }
                (Phase::AwaitSubAck, Packet::SubAck(ack)) => {
                    let granted = match qos {
                        QoS::AtMostOnce => SubAckReason::GrantedQoS0,
                        QoS::AtLeastOnce => SubAckReason::GrantedQoS1,
                        QoS::ExactlyOnce => SubAckReason::GrantedQoS2,
                    };
                    if ack.reasons.len() != filters.len()
                        || ack.reasons.iter().any(|r| *r != granted)
                    {
                        conn.fail(format!(
                            "SUBSCRIBE not granted at {qos:?}: {:?}",
                            ack.reasons
                        ));
                        return Ok(());
                    }
                    conn.phase = Phase::Ready;
                }
                (phase, other) => {
                    conn.fail(format!("{:?} while in {phase:?}", other.packet_type()));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Nanoseconds since the epoch.
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sends what publisher `i`'s window (and pacing) allows.
    fn refill(&mut self, i: usize, now: Instant, window: (Instant, Instant), start: Instant) {
        let until = window.1;
        let now_ns = self.nanos(now);
        let spec = self.spec;
        let Some(p) = self.pubs.get_mut(i) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(p.conn) else {
            return;
        };
        if conn.phase != Phase::Ready || now >= until {
            return;
        }
        let allowed = match spec.rate {
            // Paced: message k is due at start + k / rate.
            Some(rate) => {
                let due = (now.duration_since(start).as_secs_f64() * rate).floor() as u64 + 1;
                due.saturating_sub(p.next)
            }
            None => u64::MAX,
        };
        let room = (p.window as u64)
            .saturating_sub(p.next - p.done)
            .min(allowed);
        if room == 0 {
            return;
        }
        let len = p.ring.len() as u64;
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let ack = u32::from(spec.qos != QoS::AtMostOnce);
        for _ in 0..room {
            let seq = p.next;
            let topic = p
                .topics
                .get(usize::try_from(seq % p.topics.len().max(1) as u64).unwrap_or(0))
                .copied()
                .unwrap_or(0);
            let need = self.topic_subs.get(topic).map_or(0, Vec::len);
            if let Some(slot) = p.ring.get_mut(usize::try_from(seq % len).unwrap_or(0)) {
                *slot = u32::try_from(need).unwrap_or(u32::MAX) + ack;
            }
            if let Some(t) = self.templates.get(topic) {
                t.append(&mut conn.write, index, seq, now_ns);
            }
            if p.next == p.done {
                p.progress = now;
            }
            p.next += 1;
        }
        conn.flush();
        // Messages nobody needs (QoS 0, no subscriber) are complete at once.
        p.advance(now, window);
    }

    /// Publishes through the warm-up and window, then drains.
    fn publish(mut self, broker_pid: Option<u32>) -> Result<FlowOutcome> {
        let start = Instant::now();
        let from = start + self.spec.warmup;
        let until = from + self.spec.duration;
        let window = (from, until);
        let deadline = until + self.spec.drain;
        let mut events = Events::with_capacity(1024);
        let mut cpu_from = None;
        let mut cpu_until = None;
        let mut stalls = 0;
        for i in 0..self.pubs.len() {
            self.refill(i, start, window, start);
        }
        loop {
            let now = Instant::now();
            if cpu_from.is_none() && now >= from {
                cpu_from = Some((
                    now,
                    cpu_time(None),
                    broker_pid.and_then(|p| cpu_time(Some(p))),
                ));
            }
            if cpu_until.is_none() && now >= until {
                cpu_until = Some((
                    now,
                    cpu_time(None),
                    broker_pid.and_then(|p| cpu_time(Some(p))),
                ));
            }
            if now > deadline {
                break;
            }
            // After the window: done when every publisher is complete (or has failed).
            if now >= until
                && self.pubs.iter().all(|p| {
                    p.done == p.next
                        || self
                            .conns
                            .get(p.conn)
                            .is_none_or(|c| c.phase == Phase::Failed)
                })
            {
                break;
            }
            // QoS 0: give up on messages that made no progress for too long.
            if self.spec.qos == QoS::AtMostOnce {
                for p in &mut self.pubs {
                    if p.done < p.next && now.duration_since(p.progress) > QOS0_STALL {
                        p.ring.iter_mut().for_each(|n| *n = 0);
                        p.done = p.next;
                        p.progress = now;
                        stalls += 1;
                    }
                }
            }
            let tick = if self.spec.rate.is_some() {
                Duration::from_millis(1)
            } else {
                POLL_TICK
            };
            self.poll
                .poll(&mut events, Some(tick))
                .context(|| "polling".into())?;
            let now = Instant::now();
            for event in &events {
                let token = event.token().0;
                if let Some(conn) = self.conns.get_mut(token) {
                    if conn.phase == Phase::Failed {
                        continue;
                    }
                    if event.is_writable() {
                        conn.flush();
                    }
                }
                if event.is_readable() || event.is_read_closed() {
                    self.receive(token, now, window);
                }
            }
            for i in 0..self.pubs.len() {
                self.refill(i, now, window, start);
            }
        }
        self.finish(window, stalls, cpu_from, cpu_until)
    }

    /// Reads and handles what connection `token` received.
    fn receive(&mut self, token: usize, now: Instant, window: (Instant, Instant)) {
        let now_ns = self.nanos(now);
        let from_ns = self.nanos(window.0);
        let in_window = now >= window.0 && now <= window.1;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.fill(&mut self.scratch) {
            return;
        }
        let role = conn.role;
        loop {
            let packet = match self.decoder.decode(&mut conn.read) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    conn.fail(format!("malformed packet: {e}"));
                    return;
                }
            };
            match (role, packet) {
                (Role::Subscriber(s), Packet::Publish(publish)) => {
                    match publish.delivery {
                        Delivery::AtMostOnce => {}
                        Delivery::AtLeastOnce(id) => {
                            Packet::from(PubAck::new(id))
                                .encode(ProtocolVersion::V5, &mut conn.write);
                        }
                        Delivery::ExactlyOnce(id) => {
                            Packet::from(PubRec::new(id))
                                .encode(ProtocolVersion::V5, &mut conn.write);
                        }
                    }
                    let Some((p, seq, sent_ns)) = read_stamp(publish.payload()) else {
                        continue;
                    };
                    let p = usize::try_from(p).unwrap_or(usize::MAX);
                    let Some(sub) = self.subs.get_mut(s) else {
                        continue;
                    };
                    if !sub.mark(p, seq) {
                        sub.duplicates += 1;
                        continue;
                    }
                    sub.received += 1;
                    if in_window {
                        sub.window_deliveries += 1;
                    }
                    if self.spec.latencies && sent_ns >= from_ns && in_window {
                        self.latencies.push(now_ns.saturating_sub(sent_ns));
                    }
                    if let Some(publisher) = self.pubs.get_mut(p) {
                        publisher.meet(seq, now, window);
                    }
                }
                (Role::Subscriber(_), Packet::PubRel(rel)) => {
                    Packet::from(PubComp::new(rel.packet_id))
                        .encode(ProtocolVersion::V5, &mut conn.write);
                }
                (Role::Publisher(i), Packet::PubAck(ack)) => {
                    if !matches!(
                        ack.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    ) {
                        conn.fail(format!("PUBACK {:?}", ack.reason));
                        return;
                    }
                    Self::acked(self.pubs.get_mut(i), ack.packet_id.get(), now, window, conn);
                }
                (Role::Publisher(_), Packet::PubRec(rec)) => {
                    if !matches!(
                        rec.reason,
                        PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                    ) {
                        conn.fail(format!("PUBREC {:?}", rec.reason));
                        return;
                    }
                    Packet::from(PubRel::new(rec.packet_id))
                        .encode(ProtocolVersion::V5, &mut conn.write);
                }
                (Role::Publisher(i), Packet::PubComp(comp)) => {
                    if comp.reason != PubCompReason::Success {
                        conn.fail(format!("PUBCOMP {:?}", comp.reason));
                        return;
                    }
                    Self::acked(
                        self.pubs.get_mut(i),
                        comp.packet_id.get(),
                        now,
                        window,
                        conn,
                    );
                }
                (_, Packet::Disconnect(d)) => {
                    conn.fail(format!("DISCONNECT from the broker: {:?}", d.reason));
                    return;
                }
                (_, Packet::PingResp(_)) => {}
                (_, other) => {
                    conn.fail(format!("unexpected {:?}", other.packet_type()));
                    return;
                }
            }
        }
        conn.flush();
    }

    /// A PUBACK or PUBCOMP for `pid` arrived.
    fn acked(
        publisher: Option<&mut Publisher>,
        pid: u16,
        now: Instant,
        window: (Instant, Instant),
        conn: &mut Conn,
    ) {
        let Some(p) = publisher else {
            return;
        };
        match p.seq_of(pid) {
            Some(seq) => {
                p.acks += 1;
                p.meet(seq, now, window);
            }
            None => conn.fail(format!("acknowledgement of packet {pid}, not in flight")),
        }
    }

    /// Counts what arrived against what was due, and disconnects.
    fn finish(
        mut self,
        window: (Instant, Instant),
        stalls: u64,
        cpu_from: Option<(Instant, Option<Duration>, Option<Duration>)>,
        cpu_until: Option<(Instant, Option<Duration>, Option<Duration>)>,
    ) -> Result<FlowOutcome> {
        let mut out = FlowOutcome {
            window: window.1.duration_since(window.0),
            stalls,
            ..FlowOutcome::default()
        };
        if let (Some((a, ta, ba)), Some((b, tb, bb))) = (cpu_from, cpu_until) {
            let wall = b.duration_since(a).as_secs_f64();
            let cores = |x: Option<Duration>, y: Option<Duration>| {
                Some(y?.checked_sub(x?)?.as_secs_f64() / wall)
            };
            if wall > 0.0 {
                out.tool_cpu = cores(ta, tb);
                out.broker_cpu = cores(ba, bb);
            }
        }
        for (i, p) in self.pubs.iter().enumerate() {
            out.sent += p.next;
            out.window_completed += p.window_completed;
            if self.spec.qos != QoS::AtMostOnce {
                out.unacked += p.next.saturating_sub(p.acks);
            }
            let n = p.topics.len().max(1) as u64;
            for seq in 0..p.next {
                let topic = p
                    .topics
                    .get(usize::try_from(seq % n).unwrap_or(0))
                    .copied()
                    .unwrap_or(0);
                for &s in self.topic_subs.get(topic).map_or(&[][..], Vec::as_slice) {
                    out.expected += 1;
                    if self.subs.get(s).is_some_and(|sub| sub.has(i, seq)) {
                        out.received += 1;
                    }
                }
            }
        }
        for sub in &self.subs {
            out.duplicates += sub.duplicates;
            out.window_deliveries += sub.window_deliveries;
        }
        for conn in &self.conns {
            if let Some(f) = &conn.failure {
                out.problems
                    .push(format!("{}: {f}", self.client_id(conn.role)));
            }
        }
        out.latencies_ns = std::mem::take(&mut self.latencies);
        for conn in &mut self.conns {
            if conn.phase != Phase::Failed {
                Packet::from(Disconnect::new(DisconnectReason::NormalDisconnection))
                    .encode(ProtocolVersion::V5, &mut conn.write);
                conn.flush();
            }
        }
        Ok(out)
    }
}

/// An MQTT 5 CONNECT: Clean Start, no session expiry, this keep-alive.
pub(crate) fn connect_packet(client_id: &str, keep_alive: u16) -> Result<Packet> {
    Ok(Packet::from(Connect {
        clean_start: true,
        keep_alive,
        client_id: MqttString::try_from(client_id)?,
        ..Connect::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn templates_patch_where_they_should() -> Result<()> {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let t = Template::new("bench/x", qos, 64)?;
            let mut buf = BytesMut::new();
            t.append(&mut buf, 3, 99_999, 42);
            let Some(Packet::Publish(p)) = Decoder::new(ProtocolVersion::V5).decode(&mut buf)?
            else {
                return Err(Error::Protocol("no PUBLISH".into()));
            };
            assert_eq!(read_stamp(p.payload()), Some((3, 99_999, 42)));
        }
        Ok(())
    }

    #[test]
    fn packet_ids_map_back_to_sequence_numbers() {
        let mut p = Publisher {
            conn: 0,
            topics: vec![0],
            next: 70_010,
            done: 65_530,
            ring: vec![0; 8],
            window: 8,
            acks: 0,
            progress: Instant::now(),
            window_completed: 0,
        };
        for seq in p.done..p.next.min(p.done + 100) {
            assert_eq!(p.seq_of(packet_id(seq)), Some(seq));
        }
        p.next = p.done + 1;
        assert_eq!(p.seq_of(packet_id(p.done + 1)), None);
    }
}
