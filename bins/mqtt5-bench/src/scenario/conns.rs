//! **conns**: C idle MQTT 5 connections (19,000 by default) with keep-alive 60.
//!
//! 1. The broker's `VmRSS` is read (`/proc/PID/status`).
//! 2. Generator processes are started (this executable again, `conns-worker`), each with at
//!    most [`PER_WORKER`] connections from its own source address `127.R.0.N` (R new for each
//!    run): this tool may
//!    hold at most 20,000 open files, and one source address has about 28,000 ephemeral ports.
//!    Each connects with at most [`CONNECTING`] connections under way at once, waits for every
//!    CONNACK, and says so on its stdout. The connect rate is C over the time from the start
//!    of the workers to the last CONNACK.
//! 3. After a second of quiet the broker's `VmRSS` is read again: (after − before) / C is its
//!    memory per connection.
//! 4. Each worker checks that every one of its connections is still open, says how many
//!    are, and exits. A refused or lost connection fails the run.
//!
//! A worker sends PINGREQ on every connection every 30 s, so keep-alive holds on long runs.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use mqtt5_codec::{ConnAckReason, Decoder, Packet, PingReq, ProtocolVersion};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::broker::{RunningBroker, rss_kib};
use crate::error::{Context, Error, Result};
use crate::flow::connect_packet;
use crate::report::{ResultLine, Table, rate};

/// The most connections one worker process holds.
pub(crate) const PER_WORKER: usize = 5_000;

/// The most connections a worker has under way (TCP or CONNECT) at once, so that the
/// broker's listen backlog does not overflow into SYN retransmissions.
const CONNECTING: usize = 256;

/// The keep-alive of every connection, seconds.
const KEEP_ALIVE: u16 = 60;

/// Runs so far in this process: each takes its source addresses from its own subnet.
static RUNS: AtomicU8 = AtomicU8::new(0);

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct ConnsResult {
    /// The broker's name.
    pub(crate) broker: String,
    /// CPUs the broker was pinned to, or "none".
    pub(crate) pin: String,
    /// Connections asked for.
    pub(crate) connections: usize,
    /// Connections that got a CONNACK.
    pub(crate) connected: usize,
    /// Connections still open at the end.
    pub(crate) alive: usize,
    /// From the start of the workers to the last CONNACK.
    pub(crate) elapsed: Duration,
    /// The broker's RSS before and after, KiB.
    pub(crate) rss: Option<(u64, u64)>,
    /// What went wrong.
    pub(crate) problems: Vec<String>,
}

impl ConnsResult {
    /// Connections per second.
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.connected as f64 / secs
        } else {
            0.0
        }
    }

    /// The broker's RSS growth per connection, in KiB.
    pub(crate) fn kib_per_conn(&self) -> Option<f64> {
        let (before, after) = self.rss?;
        (self.connections > 0)
            .then(|| after.saturating_sub(before) as f64 / self.connections as f64)
    }

    /// Every connection was accepted and stayed open.
    pub(crate) fn verified(&self) -> bool {
        self.problems.is_empty()
            && self.connected == self.connections
            && self.alive == self.connections
    }

    /// The machine-readable line.
    pub(crate) fn line(&self) -> ResultLine {
        ResultLine::new("conns")
            .field("broker", &self.broker)
            .field("case", format!("{}c", self.connections))
            .field("pin", &self.pin)
            .field("connections", self.connections)
            .field("connected", self.connected)
            .field("alive", self.alive)
            .field("connect_s", format!("{:.2}", self.elapsed.as_secs_f64()))
            .field("connects_per_s", format!("{:.0}", self.rate()))
            .field(
                "rss_before_kib",
                self.rss.map_or_else(|| "na".into(), |r| r.0.to_string()),
            )
            .field(
                "rss_after_kib",
                self.rss.map_or_else(|| "na".into(), |r| r.1.to_string()),
            )
            .field(
                "kib_per_conn",
                self.kib_per_conn()
                    .map_or_else(|| "na".into(), |k| format!("{k:.2}")),
            )
            .field("verified", if self.verified() { "ok" } else { "FAILED" })
    }

    /// The summary table.
    pub(crate) fn table() -> Table {
        Table::new(&[
            ("broker", false),
            ("connections", true),
            ("connects/s", true),
            ("RSS per connection", true),
            ("verified", false),
        ])
    }

    /// The row of [`ConnsResult::table`] for one broker's runs: medians.
    pub(crate) fn summary_row(runs: &[&Self]) -> Vec<String> {
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        let median = super::flows::median;
        let kib: Vec<f64> = runs.iter().filter_map(|r| r.kib_per_conn()).collect();
        let good = runs.iter().filter(|r| r.verified()).count();
        vec![
            first.broker.clone(),
            first.connections.to_string(),
            rate(median(runs.iter().map(|r| r.rate()).collect())),
            if kib.is_empty() {
                "n/a".into()
            } else {
                format!("{:.1} KiB", median(kib))
            },
            if good == runs.len() {
                format!("yes ({good} of {})", runs.len())
            } else {
                format!("**NO** ({} of {} failed)", runs.len() - good, runs.len())
            },
        ]
    }
}

/// A worker process and what it said.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

/// Runs the scenario against a started broker.
///
/// # Errors
/// When a worker cannot be started.
pub(crate) fn run(
    broker: &RunningBroker,
    connections: usize,
    connect_timeout: Duration,
    pin: &str,
) -> Result<ConnsResult> {
    let pid = broker.pid();
    thread::sleep(Duration::from_millis(300));
    let before = pid.and_then(rss_kib);
    let exe = std::env::current_exe().context(|| "finding this executable".into())?;
    let mut result = ConnsResult {
        broker: broker.name().to_owned(),
        pin: pin.to_owned(),
        connections,
        connected: 0,
        alive: 0,
        elapsed: Duration::ZERO,
        rss: None,
        problems: Vec::new(),
    };
    // A fresh 127.N.0.0/24 for every run: the ports of the previous run's connections are
    // still in TIME_WAIT on their source addresses for a minute, and binding around them
    // slows the next run's connects several-fold.
    let subnet = 1 + RUNS.fetch_add(1, Ordering::Relaxed) % 250;
    let started = Instant::now();
    let mut workers = Vec::new();
    let mut left = connections;
    let mut k = 0_u8;
    while left > 0 {
        let count = left.min(PER_WORKER);
        left -= count;
        let source = Ipv4Addr::new(127, subnet, 0, 2 + k);
        k += 1;
        let mut child = Command::new(&exe)
            .args([
                "conns-worker",
                "--addr",
                &broker.addr().to_string(),
                "--count",
                &count.to_string(),
                "--source",
                &source.to_string(),
                "--timeout",
                &connect_timeout.as_secs_f64().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context(|| format!("starting {}", exe.display()))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(out)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        workers.push(Worker {
            child,
            stdin,
            lines,
        });
    }
    // Every worker says `connected N` (or `failed WHY`).
    for w in &workers {
        match w
            .lines
            .recv_timeout(connect_timeout + Duration::from_secs(5))
        {
            Ok(line) => match line.strip_prefix("connected ") {
                Some(n) => result.connected += n.trim().parse::<usize>().unwrap_or(0),
                None => {
                    // `failed N of M connected after ...`: count what did connect.
                    result.connected += line
                        .strip_prefix("failed ")
                        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
                        .unwrap_or(0);
                    result.problems.push(format!("worker: {line}"));
                }
            },
            Err(_) => result.problems.push("a worker said nothing".into()),
        }
    }
    result.elapsed = started.elapsed();
    thread::sleep(Duration::from_secs(1));
    let after = pid.and_then(rss_kib);
    result.rss = before.zip(after);
    // Then each checks its connections and exits.
    for w in &mut workers {
        if let Some(stdin) = &mut w.stdin {
            let _ = stdin.write_all(b"check\n");
        }
    }
    for mut w in workers {
        match w.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => match line.strip_prefix("alive ") {
                Some(n) => result.alive += n.trim().parse::<usize>().unwrap_or(0),
                None => result.problems.push(format!("worker: {line}")),
            },
            Err(_) => result.problems.push("a worker did not report".into()),
        }
        drop(w.stdin.take());
        let _ = w.child.wait();
    }
    Ok(result)
}

/// One connection of a worker.
struct Conn {
    stream: TcpStream,
    connected: bool,
    acked: bool,
    read: BytesMut,
    write: BytesMut,
}

/// The worker: opens `count` connections from `source` to `addr` within `timeout`, prints
/// `connected N`, then on a line on stdin prints `alive N` and exits (closing them).
///
/// # Errors
/// When the poll cannot be created; connection failures are printed as `failed ...`.
pub(crate) fn worker(
    addr: SocketAddr,
    count: usize,
    source: Ipv4Addr,
    timeout: Duration,
) -> Result<()> {
    let mut out = std::io::stdout();
    match connect_all(addr, count, source, timeout) {
        Ok((mut conns, poll)) => {
            let _ = writeln!(out, "connected {}", conns.len());
            let _ = out.flush();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                let _ = tx.send(());
            });
            // Keep-alive: a PINGREQ every half keep-alive until told to check.
            let mut ping = BytesMut::new();
            Packet::from(PingReq).encode(ProtocolVersion::V5, &mut ping);
            while rx
                .recv_timeout(Duration::from_secs(u64::from(KEEP_ALIVE) / 2))
                .is_err()
            {
                for c in &mut conns {
                    let _ = c.stream.write(&ping);
                    let mut scratch = [0; 256];
                    while matches!(c.stream.read(&mut scratch), Ok(n) if n > 0) {}
                }
            }
            drop(poll);
            let mut scratch = [0; 256];
            let mut alive = 0;
            for c in &mut conns {
                let open = match c.stream.read(&mut scratch) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(e) => e.kind() == ErrorKind::WouldBlock,
                };
                alive += usize::from(open);
            }
            let _ = writeln!(out, "alive {alive}");
        }
        Err(e) => {
            let _ = writeln!(out, "failed {e}");
        }
    }
    let _ = out.flush();
    Ok(())
}

/// A non-blocking TCP connection from `source` (any port) to `addr`, under way.
fn open(addr: SocketAddr, source: Ipv4Addr) -> Result<TcpStream> {
    let SocketAddr::V4(to) = addr else {
        return Err(Error::Protocol(format!("{addr} is not an IPv4 address")));
    };
    let io = |e: rustix::io::Errno| std::io::Error::from(e);
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io)
    .context(|| "creating a socket".into())?;
    rustix::net::bind(&fd, &SocketAddrV4::new(source, 0))
        .map_err(io)
        .context(|| format!("binding {source}"))?;
    match rustix::net::connect(&fd, &to) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(io(e)).context(|| format!("connecting to {to}")),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

/// Opens every connection, at most [`CONNECTING`] under way at once, and waits for each
/// CONNACK.
fn connect_all(
    addr: SocketAddr,
    count: usize,
    source: Ipv4Addr,
    timeout: Duration,
) -> Result<(Vec<Conn>, Poll)> {
    let mut poll = Poll::new().context(|| "creating a poll".into())?;
    let decoder = Decoder::new(ProtocolVersion::V5);
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    let mut events = Events::with_capacity(1024);
    let mut done = 0;
    let mut scratch = vec![0; 4096];
    let deadline = Instant::now() + timeout;
    let pid = std::process::id();
    while done < count {
        while conns.len() < count && conns.len() - done < CONNECTING {
            let mut stream = open(addr, source)?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(conns.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .context(|| "registering a socket".into())?;
            conns.push(Conn {
                stream,
                connected: false,
                acked: false,
                read: BytesMut::new(),
                write: BytesMut::new(),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Protocol(format!(
                "{done} of {count} connected after {timeout:?}"
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .context(|| "polling".into())?;
        for event in &events {
            let i = event.token().0;
            let Some(c) = conns.get_mut(i) else {
                continue;
            };
            if c.acked {
                continue;
            }
            if !c.connected && event.is_writable() {
                if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                    return Err(Error::Io {
                        context: format!("connection {i}"),
                        source: e,
                    });
                }
                if c.stream.peer_addr().is_err() {
                    continue;
                }
                c.connected = true;
                connect_packet(&format!("mqtt5-bench-conns-{pid}-{i}"), KEEP_ALIVE)?
                    .encode(ProtocolVersion::V5, &mut c.write);
            }
            while !c.write.is_empty() {
                match c.stream.write(&c.write) {
                    Ok(n) if n > 0 => c.write.advance(n),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
            if c.connected && event.is_readable() {
                loop {
                    match c.stream.read(&mut scratch) {
                        Ok(0) => {
                            return Err(Error::Protocol(format!(
                                "connection {i} closed before CONNACK"
                            )));
                        }
                        Ok(n) => c
                            .read
                            .extend_from_slice(scratch.get(..n).unwrap_or_default()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                match decoder.decode(&mut c.read)? {
                    Some(Packet::ConnAck(ack)) if ack.reason == ConnAckReason::Success => {
                        c.acked = true;
                        done += 1;
                    }
                    Some(other) => {
                        return Err(Error::Protocol(format!(
                            "connection {i}: {:?} instead of a successful CONNACK",
                            other.packet_type()
                        )));
                    }
                    None => {}
                }
            }
        }
    }
    Ok((conns, poll))
}
