//! The event loop: readiness-based I/O with mio on one thread that also owns the broker core,
//! and the store's writer thread beside it.
//!
//! ```text
//!            +-------------------- event-loop thread --------------------+
//!  sockets --| mio Poll -> read -> Decoder -> Broker::handle_* ---------+ |
//!            |                                                         v |
//!            |   write <- encode <- [held until committed] <- poll_action |
//!            +-------------------------------|---------------^-----------+
//!                               Persist ops  v               | Completion + Waker
//!                                  +---- store writer thread ----+
//!                                  | group commit into SQLite    |
//!                                  +-----------------------------+
//! ```
//!
//! - **No thread per connection.** One thread serves every connection; the store writes on
//!   its own thread.
//! - **Durability.** In `sync` mode an `Action::Persist` is a barrier for the actions the
//!   core says wait (`Action::barrier`: an acknowledgement after a batch of its input, a
//!   CONNACK with Session Present 1 always): each waits until the writer reports the batches
//!   before it committed, so an acknowledgement never leaves before the data it confirms, and
//!   the other actions of its connection wait behind it (`docs/architecture.md`, "The persist
//!   barrier"). In `periodic` and `memory` modes nothing waits.
//! - **Backpressure.** When the writer falls behind (`backlog.rs`), the loop stops reading
//!   the connections whose next packet would add to its work, and keeps reading the others; it
//!   never waits for the writer (`docs/architecture.md`, "Backpressure").
//! - **Bounded memory per connection.** Reads stop at the Maximum Packet Size (the decoder
//!   refuses larger packets from their header); writes go to a per-connection buffer with a
//!   hard limit, and a client whose buffer overflows is disconnected and logged.
//! - **A lingering close.** A connection the core closes is not closed at once: its output is
//!   flushed, the transport's close queued, its write side shut down, and its input read and
//!   dropped until the client closes its side, [`LINGER_BYTES`] or [`LINGER`] (see
//!   [`Linger`]), so that a client still sending reads its DISCONNECT instead of a reset. The
//!   deadlines are the driver's: the poll timeout accounts for them, and shutdown waits for
//!   them.
//! - **The end of a client's input.** Reads go on past a short read once mio reports the
//!   client's FIN, which may come with its last bytes (edge-triggered readiness sends no
//!   further event); the connection is then reported lost, and what is left to send to it
//!   goes out before it closes.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use mqtt5_broker::{Action, AuthVerdict, Barrier, Broker, ConnId, Notice, PeerInfo, Services};
use mqtt5_codec::Packet;
use mqtt5_codec::{Decoder, ProtocolVersion};
use mqtt5_store::{Completion, Durability, MemoryStore, Store, Writer, WriterConfig};
use slab::Slab;
use tracing::{debug, error, info, warn};

use crate::auth_watch::{AuthSource, AuthWatch, POLL_INTERVAL};
use crate::backlog::{Backlog, Settled, Ticket, Watermarks};
use crate::logs::{Clipped, RateLimit, Verdict};
use crate::passwords::PasswordCheckers;
use crate::settings::{self, Settings};

/// Errors that end the server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ServerError(pub(crate) String);

impl ServerError {
    fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
/// Listener tokens are 0..CONN_BASE (one per listener, by index); connection tokens start
/// here (`CONN_BASE + slab key`).
const CONN_BASE: usize = 1 << 16;
/// The most bytes read from one connection per readiness event, so that one busy client
/// cannot starve the others; the rest is read on the next round.
const READ_BUDGET: usize = 256 * 1024;
/// The store ops one round of the event loop (one poll and what follows it) hands to the
/// writer before the clients that feed the store wait for the next round. A message with a
/// durable fan-out to thousands of sessions costs the event loop milliseconds: clients that
/// send many of them take turns, one round at a time, and the others' events come between.
const STORE_OPS_PER_ROUND: u64 = 1000;
/// How long a connection the broker closes goes on reading (and dropping) its client's
/// input, at most, counted from the core's close: the lingering close (see [`Linger`]).
const LINGER: Duration = Duration::from_millis(500);
/// The most bytes read and dropped from a closing connection; past it the socket is closed at
/// once (the kernel then resets the connection).
const LINGER_BYTES: usize = 256 * 1024;

/// Runs the broker until SIGINT or SIGTERM.
///
/// # Errors
/// When the store cannot be opened or recovered, or a listener cannot bind.
pub(crate) fn run(mut settings: Settings) -> Result<(), ServerError> {
    raise_fd_limit();
    match settings.storage.durability {
        settings::Durability::Memory => {
            info!("storage: memory only, nothing is written to disk (and no client records)");
            // Client records are a history for the database's readers; there is none.
            settings.broker.client_records = false;
            let auth = AuthSource::memory(&settings)
                .map_err(|e| ServerError::new(format!("cannot open the database: {e}")))?;
            serve(settings, MemoryStore::new(), None, auth)
        }
        settings::Durability::Sync | settings::Durability::Periodic(_) => {
            crate::perms::create_private_dir(&settings.storage.data_dir).map_err(|e| {
                ServerError::new(format!(
                    "cannot create data directory {}: {e}",
                    settings.storage.data_dir.display()
                ))
            })?;
            let path = settings.storage.database_path();
            let synchronous = match settings.storage.durability {
                settings::Durability::Sync => mqtt5_store::Synchronous::Full,
                _ => mqtt5_store::Synchronous::Normal,
            };
            let mut store = mqtt5_store::SqliteStore::open(
                &path,
                mqtt5_store::SqliteOptions {
                    synchronous,
                    max_size: settings.storage.max_size,
                },
            )
            .map_err(|e| ServerError::new(format!("cannot open the database: {e}")))?;
            info!(path = %path.display(), "storage: SQLite");
            let auth = AuthSource::from_store(&mut store)
                .map_err(|e| ServerError::new(format!("cannot read the database: {e}")))?;
            serve(settings, store, Some(path), auth)
        }
    }
}

/// Raises the soft open-file limit to the hard one, and logs the ceiling: each connection
/// is a file descriptor.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    info!(
        soft = %now.current.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        hard = %now.maximum.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        "open-file limit: at most about this many connections"
    );
}

/// One listening socket and its limits.
struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
    max_connections: usize,
    open: usize,
    allow_anonymous: Option<bool>,
    /// Whether it ignores user names and passwords.
    ignore_credentials: bool,
    /// Whether it replaces client identifiers by user names.
    use_username_as_client_id: bool,
    /// Whether its TLS clients present certificates (`tls_client_ca`).
    client_certificates: bool,
    /// The TLS configuration of a TLS listener.
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The HTTP path of a WebSocket listener.
    websocket: Option<String>,
}

/// One client connection.
struct Connection {
    id: ConnId,
    stream: TcpStream,
    listener: usize,
    /// The decoder, whose version (set by the core's `Action::Protocol`) is also the one the
    /// broker's packets are encoded in.
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The close has begun: the core asked for it, or the client ended its input. What is
    /// left to send is flushed, and input is read and dropped ([`Linger`]).
    closing: bool,
    /// How far the close has gone.
    linger: Linger,
    /// The client has closed its side (mio said so): a short read is no sign that the socket
    /// is drained, since the FIN may have come with the last bytes and no readiness follows.
    read_closed: bool,
    /// WRITABLE interest is registered.
    want_write: bool,
    /// Readable data may be left in the socket (the read budget ran out).
    more_to_read: bool,
    /// The peer's address, for the log.
    peer: SocketAddr,
    /// The client identifier and user name of its CONNECT, for the log (never a password).
    client: Option<ClientName>,
    /// Whether CONNACK accepted it.
    connected: bool,
    /// Why the broker is closing it, for the log: the reason of the DISCONNECT it sent.
    close_reason: Option<Box<str>>,
    /// The TLS session of a connection on a TLS listener.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The WebSocket layer of a connection on a WebSocket listener.
    ws: Option<Box<WsConn>>,
    /// The core was told that this connection's buffer is congested.
    congested: bool,
    /// The core takes no packets from it for now (its CONNECT waits for a password check
    /// or for its refusal): its input stays unread.
    paused: bool,
    /// Its next packet would add to the work of a store that is behind: the packet waits in
    /// [`Server::store_paused`] and its input stays unread until the store catches up.
    store_paused: bool,
    /// Its last turn gave the store work: once a round has handed the writer its share
    /// ([`STORE_OPS_PER_ROUND`]), its input waits for the next round.
    feeds_store: bool,
    /// Its last turn stopped before decoding all of `rbuf` (the round had handed the writer
    /// its share): what is left is decoded before more is read.
    deferred_input: bool,
    /// It counts against its address's connections that have not completed CONNECT.
    connecting: bool,
    /// Its client certificate was reported to the core (or it has none to report).
    certificate_done: bool,
}

/// The lingering close of a connection ([`Connection::closing`]), in the manner of HTTP
/// servers: a client still sending when the broker decides to close must be able to read the
/// DISCONNECT (or refusing CONNACK) it was sent. Closing a socket with unread input makes the
/// kernel reset the connection, and a reset makes the client's next write fail, and can
/// destroy what it has not read yet. So the broker flushes what is left to send, queues the
/// transport's own close (a WebSocket Close frame, a TLS close_notify), shuts down its write
/// side (FIN), and reads and drops input until the client closes its side, until
/// [`LINGER_BYTES`] were dropped, or until [`LINGER`] after the close began: then it closes.
/// A lingering connection counts against the connection limits until then.
#[derive(Debug, Default)]
struct Linger {
    /// The transport's close (WebSocket Close frame, TLS close_notify) is queued.
    transport_closed: bool,
    /// The write side is shut down: the FIN is sent.
    shut: bool,
    /// The client's input has ended (EOF).
    input_ended: bool,
    /// Bytes read and dropped since the close began.
    dropped: usize,
}

/// The WebSocket side of a connection, boxed: most connections have none, and an idle
/// connection should cost little.
struct WsConn {
    /// The WebSocket layer.
    state: crate::websocket::WsState,
    /// WebSocket frames (and the upgrade response) waiting for the socket.
    frames: BytesMut,
}

impl core::ops::Deref for WsConn {
    type Target = crate::websocket::WsState;

    fn deref(&self) -> &Self::Target {
        &self.state
    }
}

impl core::ops::DerefMut for WsConn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.state
    }
}

/// Who a connection's client is, for the log.
enum ClientName {
    /// CONNECT arrived: the client identifier and user name it presented (clipped), until the
    /// core accepts or refuses it.
    Connecting(Box<(String, Option<String>)>),
    /// CONNACK was logged: the (possibly assigned) client identifier alone, in one small
    /// allocation, since every idle connection holds it.
    Known(Box<str>),
}

/// What one round of reading found.
struct ReadOutcome {
    bytes: usize,
    eof: bool,
    more: bool,
    error: Option<io::Error>,
}

impl Connection {
    /// Reads plaintext into `rbuf`, through TLS when the connection has it, up to the read
    /// budget.
    fn read_input(&mut self, scratch: &mut [u8]) -> ReadOutcome {
        let mut out = ReadOutcome {
            bytes: 0,
            eof: false,
            more: false,
            error: None,
        };
        loop {
            if out.bytes >= READ_BUDGET {
                out.more = true;
                return out;
            }
            if let Some(tls) = self.tls.as_mut() {
                // Ciphertext from the socket into rustls...
                let mut blocked = false;
                match tls.read_tls(&mut self.stream) {
                    Ok(0) => out.eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        out.error = Some(e);
                        return out;
                    }
                }
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert, then give up on the connection.
                    let _ = tls.write_tls(&mut self.stream);
                    out.error = Some(io::Error::other(format!("TLS: {e}")));
                    return out;
                }
                // ...and the plaintext it holds into rbuf.
                loop {
                    match tls.reader().read(scratch) {
                        Ok(0) => {
                            // close_notify: the peer ended the session.
                            out.eof = true;
                            break;
                        }
                        Ok(n) => {
                            self.rbuf
                                .extend_from_slice(scratch.get(..n).unwrap_or_default());
                            out.bytes += n;
                        }
                        Err(e) => {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                out.error = Some(e);
                                return out;
                            }
                            break;
                        }
                    }
                }
                if out.eof || blocked {
                    return out;
                }
                continue;
            }
            // Into the event loop's scratch buffer (zeroed once, at start-up), then only the
            // bytes read are copied: no per-read zeroing of a large window.
            match self.stream.read(scratch) {
                Ok(0) => {
                    out.eof = true;
                    return out;
                }
                Ok(n) => {
                    self.rbuf
                        .extend_from_slice(scratch.get(..n).unwrap_or_default());
                    out.bytes += n;
                    if n < scratch.len() && !self.read_closed {
                        // A short read drained the socket: a new edge comes with new data.
                        // Not after the client's FIN, which may have come with these bytes:
                        // read on to the end of the input.
                        return out;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return out,
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        out.error = Some(e);
                        return out;
                    }
                },
            }
        }
    }

    /// Writes as much of `wbuf` as the socket takes (through TLS when the connection has
    /// it); returns the bytes that reached the socket.
    fn write_output(&mut self) -> io::Result<usize> {
        let result = self.write_frames_or_bytes();
        // What is flushed gives its buffer back: an idle connection holds no write buffer
        // (the next burst allocates one, once per wake-up rather than per packet).
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
        if let Some(ws) = self.ws.as_mut()
            && ws.frames.is_empty()
            && ws.frames.capacity() > 0
        {
            ws.frames = BytesMut::new();
        }
        result
    }

    /// [`write_output`](Self::write_output) without the release of empty buffers.
    fn write_frames_or_bytes(&mut self) -> io::Result<usize> {
        if let Some(ws) = self.ws.as_mut() {
            // MQTT bytes become one binary frame; what goes to the socket is the frames.
            if !self.wbuf.is_empty() && ws.is_open() {
                ws.send(self.wbuf.split());
            }
            if let Some(out) = ws.take_output() {
                ws.frames.extend_from_slice(&out);
            }
            // The frames go out through wbuf's path; the (now empty) MQTT buffer waits.
            let mut mqtt = core::mem::replace(&mut self.wbuf, core::mem::take(&mut ws.frames));
            let result = self.write_transport();
            core::mem::swap(&mut self.wbuf, &mut mqtt);
            if let Some(ws) = self.ws.as_mut() {
                ws.frames = mqtt;
            }
            return result;
        }
        self.write_transport()
    }

    /// Writes `wbuf` to the socket, through TLS when the connection has it.
    fn write_transport(&mut self) -> io::Result<usize> {
        let mut sent = 0;
        loop {
            let Some(tls) = self.tls.as_mut() else {
                while !self.wbuf.is_empty() {
                    match self.stream.write(&self.wbuf) {
                        Ok(0) => return Ok(sent),
                        Ok(n) => {
                            let _ = self.wbuf.split_to(n);
                            sent += n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(sent);
            };
            if !self.wbuf.is_empty() {
                let taken = tls.writer().write(&self.wbuf)?;
                let _ = self.wbuf.split_to(taken);
            }
            let mut blocked = false;
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if blocked || self.wbuf.is_empty() {
                return Ok(sent);
            }
        }
    }

    /// Bytes waiting for the socket: MQTT bytes and WebSocket frames.
    fn buffered(&self) -> usize {
        self.wbuf.len() + self.ws.as_ref().map_or(0, |ws| ws.frames.len())
    }

    /// Whether output is still waiting for the socket.
    fn has_output(&self) -> bool {
        !self.wbuf.is_empty()
            || self.ws.as_ref().is_some_and(|ws| !ws.frames.is_empty())
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }
}

/// The event loop's state.
struct Server<S: Store + Send + 'static> {
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab<Connection>,
    next_generation: u64,
    broker: Broker,
    writer: Option<Writer<S>>,
    /// What the writer has not committed yet, and whether it is behind.
    backlog: Backlog,
    completions: Receiver<Completion>,
    /// In sync mode: actions held until the batch they wait for is committed, in order (their
    /// tickets never decrease).
    held: VecDeque<(Ticket, Action)>,
    /// How many actions of each connection are held: its later actions wait behind them.
    held_per_conn: std::collections::HashMap<ConnId, usize>,
    /// The last batch submitted, in sync mode.
    barrier: Option<Ticket>,
    committed: Option<Ticket>,
    /// Batches that failed, while actions held behind them remain.
    failed: Vec<Ticket>,
    /// Connections whose input waits for the store to catch up, in the order they were
    /// paused, each with the packet the core was not handed and whether its input ended
    /// after that packet (to be reported lost once the packet is handled).
    store_paused: VecDeque<(ConnId, Packet, bool)>,
    /// Lines about the store falling behind: one per interval.
    behind_log: RateLimit,
    /// The writer's count of submitted ops when this round of the event loop began.
    round_started: u64,
    wait_for_commits: bool,
    max_connections: usize,
    open_connections: usize,
    write_buffer_limit: usize,
    max_packet_size: u32,
    /// Connections with work left: unread input or a pending close.
    pending: Vec<usize>,
    /// Connections whose `wbuf` needs flushing.
    dirty: Vec<usize>,
    /// When each lingering close ends at the latest, in order (every close lingers for
    /// [`LINGER`], so the earliest is first). A connection closed sooner leaves its entry
    /// behind, to be skipped: the id no longer names a connection.
    lingering: VecDeque<(Instant, ConnId)>,
    /// Whether the decoders reject the Disallowed Unicode code points
    /// (`[broker] allow_disallowed_code_points` is false).
    reject_disallowed: bool,
    shutting_down: bool,
    /// The metrics endpoint's text, when `[metrics]` is configured, and when it was rendered.
    metrics: Option<(crate::metrics::Shared, Instant)>,
    /// The buffer sockets are read into (64 KiB, zeroed once).
    scratch: Box<[u8]>,
    /// The threads that check passwords.
    passwords: PasswordCheckers,
    /// Connections per address (its [`mqtt5_broker::address_key`]) that have not completed
    /// CONNECT.
    connecting: std::collections::HashMap<std::net::IpAddr, usize>,
    /// The most of those per address.
    max_connecting_per_address: usize,
    /// Refusal lines per source.
    refusal_log: RateLimit,
    /// Lines about connections closed at accept (limits), per source: one per interval.
    accept_log: RateLimit,
    /// Listeners with connections waiting to be accepted while the store's backlog is full
    /// ([`Backlog::full`]): they are accepted once it is not (readiness is edge-triggered).
    accepts_waiting: Vec<usize>,
    /// Lines about the store's backlog being full: one per interval.
    full_log: RateLimit,
    /// Lines about the retained store's limits, and about the queue memory.
    limit_log: RateLimit,
    /// The instant the loop took at its last wake-up: every input to the core in this round
    /// carries it.
    now: Instant,
    /// Connections that became congested while actions were executed, for the core once the
    /// drain is over.
    congested: Vec<ConnId>,
    /// Connections lost to a full write buffer while actions were executed, likewise.
    lost: Vec<ConnId>,
    /// Users and access rules changed in the database, to apply (auth_watch.rs).
    auth_watch: Option<AuthWatch>,
}

fn serve<S: Store + Send + 'static>(
    settings: Settings,
    mut store: S,
    db_path: Option<std::path::PathBuf>,
    auth: AuthSource,
) -> Result<(), ServerError> {
    let recovered = store.recover().map_err(|e| {
        ServerError::new(format!(
            "cannot read the database{}: {e}",
            db_path
                .as_ref()
                .map(|p| format!(" {}", p.display()))
                .unwrap_or_default()
        ))
    })?;
    crate::perms::warn_exposed_files(&settings);
    // Users, access rules (with the ACL file's) and SCRAM credentials: auth_watch.rs.
    let auth_services = auth
        .services(&settings)
        .map_err(|e| ServerError::new(format!("access rules: {e}")))?;
    auth_services.log_at_start(&settings);
    warn_without_users(&settings, auth_services.user_count());
    let poll = Poll::new().map_err(|e| ServerError::new(format!("cannot create poll: {e}")))?;
    let waker = std::sync::Arc::new(
        Waker::new(poll.registry(), WAKER)
            .map_err(|e| ServerError::new(format!("cannot create waker: {e}")))?,
    );
    // Passwords are checked off the event loop (argon2 takes milliseconds per check). The
    // checkers run even without users: users can be added while the broker runs.
    let passwords = auth_services.passwords();
    let wake = {
        let waker = std::sync::Arc::clone(&waker);
        std::sync::Arc::new(move || {
            if let Err(e) = waker.wake() {
                error!(error = %e, "cannot wake the event loop");
            }
        })
    };
    let checkers = PasswordCheckers::spawn(
        settings.auth.password_workers,
        auth_services.credentials,
        wake,
    )
    .map_err(|e| ServerError::new(format!("cannot start the password checkers: {e}")))?;
    let services = Services {
        passwords,
        authorizer: auth_services.authorizer,
        enhanced: auth_services.enhanced,
        random: Box::new(OsRandom),
    };
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut broker = Broker::new(settings.broker.clone(), services, now, wall)
        .map_err(|e| ServerError::new(e.to_string()))?;
    let sessions = recovered.sessions.len();
    let retained = recovered.retained.len();
    broker
        .restore(now, recovered)
        .map_err(|e| ServerError::new(e.to_string()))?;
    info!(sessions, retained, "state restored");

    let auth_watch = {
        let waker = std::sync::Arc::clone(&waker);
        let wake = Box::new(move || {
            if let Err(e) = waker.wake() {
                error!(error = %e, "cannot wake the event loop");
            }
        });
        auth.watch(&settings, POLL_INTERVAL, wake).map_err(|e| {
            ServerError::new(format!("cannot watch the users and access rules: {e}"))
        })?
    };
    let (tx, completions) = crossbeam_channel::unbounded();
    let durability = match settings.storage.durability {
        settings::Durability::Periodic(period) => Durability::Periodic(period),
        _ => Durability::Sync,
    };
    let wake = {
        let waker = std::sync::Arc::clone(&waker);
        Box::new(move || {
            if let Err(e) = waker.wake() {
                error!(error = %e, "cannot wake the event loop");
            }
        })
    };
    let (writer, writer_handle) = Writer::spawn(
        store,
        WriterConfig {
            durability,
            ..WriterConfig::default()
        },
        tx,
        wake,
    )
    .map_err(|e| ServerError::new(e.to_string()))?;

    let mut listeners = Vec::new();
    for (i, l) in settings.listeners.iter().enumerate() {
        let websocket = match &l.protocol {
            settings::ListenerProtocol::Mqtt => None,
            settings::ListenerProtocol::WebSocket { path } => Some(path.clone()),
        };
        let tls = match &l.tls {
            Some(t) => Some(
                crate::tls::server_config(t)
                    .map_err(|e| ServerError::new(format!("listener {}: {e}", l.bind)))?,
            ),
            None => None,
        };
        let mut socket = TcpListener::bind(l.bind)
            .map_err(|e| ServerError::new(format!("cannot listen on {}: {e}", l.bind)))?;
        let addr = socket.local_addr().unwrap_or(l.bind);
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)
            .map_err(|e| ServerError::new(format!("cannot register listener: {e}")))?;
        let allow_anonymous = Some(settings.allows_anonymous(l));
        let ignore_credentials = settings.ignores_credentials(l);
        let use_username_as_client_id = settings.uses_username_as_client_id(l);
        let kind = match (tls.is_some(), websocket.is_some()) {
            (false, false) => "MQTT over TCP",
            (true, false) => "MQTT over TLS",
            (false, true) => "MQTT over WebSocket",
            (true, true) => "MQTT over secure WebSocket",
        };
        info!(
            %addr,
            anonymous = settings.allows_anonymous(l),
            ignore_credentials,
            use_username_as_client_id,
            "listening ({kind})"
        );
        listeners.push(Listener {
            socket,
            addr,
            max_connections: l.max_connections.unwrap_or(usize::MAX),
            open: 0,
            allow_anonymous,
            ignore_credentials,
            use_username_as_client_id,
            client_certificates: l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            tls,
            websocket,
        });
    }
    let metrics = match settings.metrics {
        Some(addr) => {
            let shared = crate::metrics::Shared::default();
            crate::metrics::spawn(addr, std::sync::Arc::clone(&shared)).map_err(|e| {
                ServerError::new(format!("cannot listen for metrics on {addr}: {e}"))
            })?;
            Some((shared, Instant::now() - Duration::from_secs(1)))
        }
        None => None,
    };
    let mut signals = signal_hook_mio::v1_0::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| ServerError::new(format!("cannot handle signals: {e}")))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(|e| ServerError::new(format!("cannot register signals: {e}")))?;

    let mut server = Server {
        poll,
        listeners,
        conns: Slab::new(),
        next_generation: 1,
        max_packet_size: settings.broker.max_packet_size,
        broker,
        writer: Some(writer),
        backlog: Backlog::new(
            writer_handle,
            Watermarks {
                high_ops: settings.storage.backlog_high_ops,
                low_ops: settings.storage.backlog_low_ops,
            },
        ),
        completions,
        held: VecDeque::new(),
        held_per_conn: std::collections::HashMap::new(),
        store_paused: VecDeque::new(),
        behind_log: RateLimit::new(Duration::from_secs(60), 1),
        round_started: 0,
        barrier: None,
        committed: None,
        failed: Vec::new(),
        wait_for_commits: matches!(settings.storage.durability, settings::Durability::Sync),
        max_connections: settings.max_connections,
        open_connections: 0,
        write_buffer_limit: settings.write_buffer_limit,
        pending: Vec::new(),
        dirty: Vec::new(),
        lingering: VecDeque::new(),
        reject_disallowed: !settings.allow_disallowed_code_points,
        shutting_down: false,
        metrics,
        scratch: vec![0; 64 * 1024].into_boxed_slice(),
        passwords: checkers,
        connecting: std::collections::HashMap::new(),
        max_connecting_per_address: settings.max_connecting_per_address,
        refusal_log: RateLimit::new(Duration::from_secs(60), 10),
        accept_log: RateLimit::new(Duration::from_secs(10), 1),
        accepts_waiting: Vec::new(),
        full_log: RateLimit::new(Duration::from_secs(60), 1),
        limit_log: RateLimit::new(Duration::from_secs(60), 10),
        now: Instant::now(),
        congested: Vec::new(),
        lost: Vec::new(),
        auth_watch,
    };
    server.event_loop(&mut signals)?;
    server.finish()
}

/// Says, at start-up, what a broker without users does with clients that present a user
/// name: it refuses them (authentication fails closed).
fn warn_without_users(settings: &Settings, users: usize) {
    if users > 0 {
        info!(users, "password authentication");
        return;
    }
    let checked: Vec<String> = settings
        .listeners
        .iter()
        .filter(|l| !settings.ignores_credentials(l))
        .map(|l| l.bind.to_string())
        .collect();
    if checked.is_empty() {
        return;
    }
    let anonymous_everywhere = settings
        .listeners
        .iter()
        .all(|l| settings.allows_anonymous(l));
    if anonymous_everywhere {
        info!(
            listeners = %checked.join(", "),
            "no users: clients that present a user name are refused (mqtt5d user add)"
        );
    } else {
        warn!(
            listeners = %checked.join(", "),
            "password authentication is configured but there are no users: every client that \
             presents a user name is refused (mqtt5d user add)"
        );
    }
}

/// Random bytes from the operating system.
struct OsRandom;

impl mqtt5_broker::RandomSource for OsRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = getrandom::fill(dest) {
            // Never expected on Linux; fall back to the clock rather than stop the broker.
            error!(error = %e, "the OS random source failed");
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            for (i, b) in dest.iter_mut().enumerate() {
                *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
            }
        }
    }
}

impl<S: Store + Send + 'static> Server<S> {
    fn event_loop(
        &mut self,
        signals: &mut signal_hook_mio::v1_0::Signals,
    ) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let resumable = !self.store_paused.is_empty() && !self.backlog.behind();
            let mut timeout = if self.pending.is_empty() && !resumable {
                self.broker
                    .poll_timeout()
                    .map(|at| at.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Some(&(at, _)) = self.lingering.front() {
                // The end of the next lingering close.
                let until = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
            if self.metrics.is_some() {
                // Keep the metrics text fresh while idle.
                let cap = Duration::from_millis(500);
                timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::new(format!("poll failed: {e}")));
            }
            let now = Instant::now();
            self.now = now;
            self.round_started = self.backlog.submitted_ops();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => {
                        for signal in signals.pending() {
                            info!(signal, "shutting down");
                            self.shutting_down = true;
                        }
                    }
                    Token(i) if i < CONN_BASE => self.accept(now, i),
                    Token(t) => self.connection_event(now, t - CONN_BASE, event),
                }
            }
            // Connections that still have input to read get another turn.
            for key in core::mem::take(&mut self.pending) {
                self.read(now, key);
            }
            self.expire_lingering(now);
            self.take_completions();
            self.resume_paused(now);
            self.accept_waiting(now);
            self.take_verdicts(now);
            if let Some(watch) = &self.auth_watch {
                watch.apply_pending(&mut self.broker, &self.passwords);
            }
            if self.broker.poll_timeout().is_some_and(|at| at <= now) {
                self.broker.handle_timeout(now);
            }
            self.run_actions();
            self.flush_dirty();
            self.render_metrics(now);
            if self.shutting_down {
                return Ok(());
            }
        }
    }

    /// A readiness event of connection `key`.
    fn connection_event(&mut self, now: Instant, key: usize, event: &mio::event::Event) {
        if event.is_read_closed()
            && let Some(c) = self.conns.get_mut(key)
        {
            c.read_closed = true;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(now, key);
        }
        if event.is_writable() {
            self.flush(key);
        }
    }

    /// Renders the metrics text, at most twice a second.
    fn render_metrics(&mut self, now: Instant) {
        let Some((shared, last)) = self.metrics.as_mut() else {
            return;
        };
        if now.saturating_duration_since(*last) < Duration::from_millis(500) {
            return;
        }
        *last = now;
        let (queued, inflight) = self.broker.queued_and_inflight();
        let store = self.writer.as_ref().map(Writer::stats).unwrap_or_default();
        let snapshot = crate::metrics::Snapshot {
            connections: self.open_connections,
            clients: self.broker.connected_clients(),
            sessions: self.broker.session_count(),
            persistent_sessions: self.broker.persistent_session_count(),
            subscriptions: self.broker.subscription_count(),
            retained: self.broker.retained_count(),
            queued,
            inflight,
            queued_bytes: self.broker.queued_bytes(),
            queue_memory_full: self.broker.queue_memory_full(),
            retained_bytes: self.broker.retained_bytes(),
            stats: self.broker.stats().clone(),
            store_commits: store.commits,
            store_failures: store.failures,
            commit_mean: store.mean_commit_latency,
            commit_max: store.max_commit_latency,
            storage_full: self.broker.storage_full(),
            store_behind: self.backlog.behind(),
            backlog_full: self.backlog.full(),
            backlog_ops: self.backlog.ops(),
            backlog_batches: self.backlog.batches(),
            paused: self.broker.paused_connections(),
        };
        let text = crate::metrics::render(&snapshot);
        if let Ok(mut slot) = shared.lock() {
            *slot = text;
        }
    }

    /// Accepts every pending connection on listener `i`.
    fn accept(&mut self, now: Instant, i: usize) {
        if self.backlog.full() {
            // Each connection brings the store a client record or more that cannot be held
            // back: none are accepted until the store catches up; the kernel's backlog holds
            // them meanwhile.
            if !self.accepts_waiting.contains(&i) {
                self.accepts_waiting.push(i);
            }
            if let Verdict::Write { suppressed } = self
                .full_log
                .check(now, std::net::IpAddr::from([0, 0, 0, 0]))
            {
                warn!(
                    uncommitted_ops = self.backlog.ops(),
                    suppressed,
                    "the store's backlog is full: new connections wait until it catches up"
                );
            }
            return;
        }
        loop {
            let Some(listener) = self.listeners.get_mut(i) else {
                return;
            };
            let (mut stream, peer) = match listener.socket.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and the like: log, and try again on the next readiness.
                    warn!(listener = %listener.addr, error = %e, "accept failed");
                    return;
                }
            };
            let source = mqtt5_broker::address_key(peer.ip());
            let connecting = self.connecting.get(&source).copied().unwrap_or(0);
            let refusal = if self.open_connections >= self.max_connections
                || listener.open >= listener.max_connections
            {
                Some("connection limit reached; refusing")
            } else if connecting >= self.max_connecting_per_address {
                Some("too many connections from this address have not completed CONNECT; refusing")
            } else {
                None
            };
            if let Some(why) = refusal {
                let listener_addr = listener.addr;
                if let Verdict::Write { suppressed } = self.accept_log.check(now, peer.ip()) {
                    warn!(%peer, listener = %listener_addr, suppressed, "{why}");
                }
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let id = ConnId((self.next_generation << 32) | key as u64);
            self.next_generation += 1;
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(CONN_BASE + key),
                Interest::READABLE,
            ) {
                warn!(%peer, error = %e, "cannot register connection");
                continue;
            }
            let tls = match &listener.tls {
                Some(config) => {
                    match rustls::ServerConnection::new(std::sync::Arc::clone(config)) {
                        Ok(mut session) => {
                            // rustls's own plaintext buffer is bounded too; the rest waits in wbuf.
                            session.set_buffer_limit(Some(64 * 1024));
                            Some(Box::new(session))
                        }
                        Err(e) => {
                            warn!(%peer, error = %e, "cannot start a TLS session");
                            let _ = self.poll.registry().deregister(&mut stream);
                            continue;
                        }
                    }
                }
                None => None,
            };
            let ws = listener.websocket.as_deref().map(|upgrade| {
                Box::new(WsConn {
                    state: crate::websocket::WsState::new(upgrade),
                    frames: BytesMut::new(),
                })
            });
            listener.open += 1;
            let info = PeerInfo {
                addr: peer,
                allow_anonymous: listener.allow_anonymous,
                ignore_credentials: Some(listener.ignore_credentials),
                use_username_as_client_id: Some(listener.use_username_as_client_id),
                certificate: None,
            };
            let certificate_done = !listener.client_certificates;
            entry.insert(Connection {
                id,
                stream,
                listener: i,
                decoder: Decoder::new(ProtocolVersion::V5)
                    .with_max_packet_size(self.max_packet_size)
                    .reject_disallowed_code_points(self.reject_disallowed),
                // Allocated when bytes arrive, returned when they are consumed: an idle
                // connection holds no read buffer.
                rbuf: BytesMut::new(),
                wbuf: BytesMut::new(),
                closing: false,
                linger: Linger::default(),
                read_closed: false,
                want_write: false,
                more_to_read: false,
                peer,
                client: None,
                connected: false,
                close_reason: None,
                tls,
                ws,
                congested: false,
                paused: false,
                store_paused: false,
                feeds_store: false,
                deferred_input: false,
                connecting: true,
                certificate_done,
            });
            self.open_connections += 1;
            *self.connecting.entry(source).or_insert(0) += 1;
            debug!(%peer, conn = id.0, "accepted");
            if let Err(e) = self.broker.handle_connection(now, id, info) {
                error!(error = %e, "the core refused a new connection id");
            }
            // The socket may already hold the CONNECT.
            self.read(now, key);
        }
    }

    /// Accepts the connections that waited for the store's backlog to be under its limit.
    fn accept_waiting(&mut self, now: Instant) {
        if self.backlog.full() {
            return;
        }
        for i in core::mem::take(&mut self.accepts_waiting) {
            self.accept(now, i);
        }
    }

    /// Reads what the socket has (up to the budget) and feeds whole packets to the core.
    fn read(&mut self, now: Instant, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing {
            self.drop_input(key);
            return;
        }
        if c.paused || c.store_paused {
            return;
        }
        c.more_to_read = false;
        let raw_start = c.rbuf.len();
        let outcome = if c.deferred_input && c.rbuf.len() >= READ_BUDGET {
            // What an earlier turn read is not all handled yet: that first, and no more bytes
            // until it is, so that the buffer stays within about twice the budget. (A buffer
            // that holds only the start of a large packet is read on: `deferred_input` is
            // false once a turn has decoded all it could.)
            ReadOutcome {
                bytes: 0,
                eof: false,
                more: true,
                error: None,
            }
        } else {
            c.read_input(&mut self.scratch)
        };
        let mut ws_closed = false;
        if let Some(ws) = c.ws.as_mut() {
            // What was read is WebSocket traffic: only the MQTT bytes it carries stay in rbuf.
            let raw = c.rbuf.split_off(raw_start);
            let fed = ws.feed(&raw, &mut c.rbuf);
            if let Some(e) = fed.error {
                c.close_reason = Some(e.into());
            }
            ws_closed = fed.closed;
            if let Some(out) = ws.take_output() {
                ws.frames.extend_from_slice(&out);
                self.dirty.push(key);
            }
        }
        let read_total = outcome.bytes;
        let eof = outcome.eof || ws_closed;
        let failed = outcome.error;
        c.more_to_read = outcome.more;
        if c.tls.as_ref().is_some_and(|t| t.wants_write()) {
            // Handshake messages or alerts to send.
            self.dirty.push(key);
        }
        if !c.certificate_done
            && let Some(tls) = c.tls.as_ref()
            && !tls.is_handshaking()
        {
            // The handshake is over: the client's verified certificate, if any, is its
            // identity when it presents no user name.
            c.certificate_done = true;
            let subject = tls
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| crate::tls::certificate_subject(cert));
            if let Some(subject) = subject {
                let id = c.id;
                self.broker.handle_client_certificate(id, subject);
            }
        }
        self.broker.record_traffic(read_total as u64, 0);
        self.consume(now, key, eof, failed);
    }

    /// Hands every whole packet of connection `key`'s buffer to the core (unless one has to
    /// wait for the store), then reports the connection lost if its input ended.
    fn consume(&mut self, now: Instant, key: usize, eof: bool, failed: Option<io::Error>) {
        let round_spent = self.round_spent();
        let turn_started = self.backlog.submitted_ops();
        let mut deferred = false;
        let mut handled = false;
        loop {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            if c.closing || c.paused || c.store_paused {
                break;
            }
            if round_spent && c.feeds_store && !c.rbuf.is_empty() && !eof && failed.is_none() {
                // The store has had its share of this round: a client that feeds it waits
                // for the next (an input that ended is handled to its end now).
                c.more_to_read = true;
                deferred = true;
                break;
            }
            let id = c.id;
            match c.decoder.decode(&mut c.rbuf) {
                // Asked only while the store is behind: otherwise nothing waits.
                Ok(Some(packet))
                    if self.backlog.behind() && self.broker.needs_store(id, &packet) =>
                {
                    self.pause_for_store(now, key, id, packet);
                }
                Ok(Some(packet)) => {
                    handled = true;
                    let before = self.backlog.submitted_ops();
                    self.feed(now, key, id, packet);
                    let spent = self.round_spent() && !eof && failed.is_none();
                    if self.backlog.submitted_ops() > before
                        && let Some(c) = self.conns.get_mut(key)
                    {
                        c.feeds_store = true;
                        if spent {
                            c.more_to_read |= !c.rbuf.is_empty();
                            deferred = true;
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    info!(conn = id.0, error = %e, "malformed packet; closing");
                    self.broker.handle_decode_error(now, id, &e);
                    self.run_actions();
                    return;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(key) {
            c.deferred_input = deferred;
        }
        if handled
            && !deferred
            && self.backlog.submitted_ops() == turn_started
            && let Some(c) = self.conns.get_mut(key)
            && !c.store_paused
        {
            // A turn whose packets gave the store nothing (and kept nothing back for it): not
            // a client that feeds it, for now.
            c.feeds_store = false;
        }
        if let Some(c) = self.conns.get_mut(key)
            && c.rbuf.is_empty()
            && c.rbuf.capacity() > 0
        {
            // Everything read was decoded: give the buffer back, so an idle connection costs
            // no read buffer (decoded PUBLISH frames keep their own handle on it).
            c.rbuf = BytesMut::new();
        }
        if eof || failed.is_some() {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            let id = c.id;
            let closing = c.closing;
            // A reason recorded earlier (a WebSocket or DISCONNECT detail) says more.
            if c.close_reason.is_none() {
                c.close_reason = Some(String::into_boxed_str(match &failed {
                    Some(e) => format!("connection lost: {e}"),
                    None => "connection closed by the client".to_owned(),
                }));
            }
            if c.store_paused {
                // What it sent before it went is handled when the store catches up; then it
                // is reported lost.
                if let Some(last) = self.store_paused.back_mut()
                    && last.0 == id
                {
                    last.2 = true;
                }
                return;
            }
            if !closing {
                self.broker.handle_connection_lost(now, id);
                self.run_actions();
            }
            if failed.is_some() {
                self.remove(key);
                return;
            }
            // The client ended its input, but may still read (a half-close): what is left to
            // send goes out before the close, the answers to its last packets too. The core's
            // close comes after them, or, held behind a store batch, when they go.
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            c.linger.input_ended = true;
            if !c.closing && !self.held_per_conn.contains_key(&id) {
                self.begin_close(key);
            }
            return;
        }
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.more_to_read && !c.store_paused)
        {
            self.pending.push(key);
        }
    }

    /// Whether this round of the event loop has handed the writer its share of store ops
    /// ([`STORE_OPS_PER_ROUND`]).
    fn round_spent(&self) -> bool {
        self.backlog.submitted_ops() - self.round_started >= STORE_OPS_PER_ROUND
    }

    /// Hands one packet of connection `key` to the core and runs what it asks for.
    fn feed(&mut self, now: Instant, key: usize, id: ConnId, packet: Packet) {
        self.broker.handle_packet(now, id, packet);
        self.run_actions();
        if !self.broker.accepts_packets(id)
            && let Some(c) = self.conns.get_mut(key)
        {
            // Its CONNECT waits (a password check, or a delayed refusal): the rest of its
            // input waits too ([MQTT-3.1.4-6]).
            c.paused = true;
        }
    }

    /// Keeps `packet` of connection `key`, which would add to the work of a store that is
    /// behind, and reads no more of its input until the store catches up
    /// ([`Server::resume_paused`]).
    fn pause_for_store(&mut self, now: Instant, key: usize, id: ConnId, packet: Packet) {
        if let Some(c) = self.conns.get_mut(key) {
            c.store_paused = true;
        }
        self.store_paused.push_back((id, packet, false));
        self.broker.handle_input_paused(now, id, true);
        let any = std::net::IpAddr::from([0, 0, 0, 0]);
        if let Verdict::Write { suppressed } = self.behind_log.check(now, any) {
            warn!(
                uncommitted_ops = self.backlog.ops(),
                uncommitted_batches = self.backlog.batches(),
                paused = self.broker.paused_connections(),
                suppressed,
                "the store is behind: clients whose next packet would add to its work are not \
                 read until it catches up ([storage] backlog_high_ops, backlog_low_ops)"
            );
        }
    }

    /// Reads the paused connections again, in the order they were paused, for as long as the
    /// store keeps up and this round has store ops to spare (the others wait for the next
    /// rounds): each first has its kept packet handed to the core, then its input is read
    /// (readiness is edge-triggered: no new event would say that it is readable).
    fn resume_paused(&mut self, now: Instant) {
        while !self.backlog.behind() && !self.round_spent() {
            let Some((id, packet, ended)) = self.store_paused.pop_front() else {
                return;
            };
            // Gone, or closed by the core meanwhile (a takeover): the packet goes with it.
            let Some(key) = self.key_of(id) else {
                continue;
            };
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.store_paused = false;
            c.feeds_store = true;
            if c.closing {
                continue;
            }
            self.broker.handle_input_paused(now, id, false);
            self.feed(now, key, id, packet);
            if ended {
                self.consume(now, key, true, None);
            } else {
                self.read(now, key);
            }
        }
    }

    /// Drains the core's actions. In sync mode an action waits for the batches before it
    /// where [`Action::barrier`] says so, and any action waits behind an earlier held one of
    /// its connection.
    fn run_actions(&mut self) {
        let mut busy = Vec::new();
        // Whether this drain submitted a batch: the acknowledgements after it confirm what
        // it holds. (A drain covers one input or more; waiting for more is only slower.)
        let mut persisted = false;
        while let Some(action) = self.broker.poll_action() {
            let action = match action {
                Action::Persist(ops) => {
                    // Never waits: a batch the writer has no room for waits in the backlog.
                    match self.backlog.submit(ops) {
                        Ok(ticket) => {
                            persisted = true;
                            if self.wait_for_commits {
                                self.barrier = Some(ticket);
                            }
                        }
                        Err(_) => {
                            error!("the store writer is gone; data is not persisted");
                        }
                    }
                    continue;
                }
                // Neither waits for a commit: a check promises nothing to the client, and a
                // notice only logs.
                Action::CheckPassword(check) => {
                    if let Err(check) = self.passwords.submit(check) {
                        busy.push(check.conn);
                    }
                    continue;
                }
                Action::Notice(notice) => {
                    self.log_notice(notice);
                    continue;
                }
                // The decoder reads the connection's next packets in this version, and the
                // broker's packets are encoded in it: before anything after it is decoded or
                // sent.
                Action::Protocol { conn, version } => {
                    if let Some(key) = self.key_of(conn)
                        && let Some(c) = self.conns.get_mut(key)
                    {
                        c.decoder.set_version(version);
                    }
                    continue;
                }
                action => action,
            };
            self.execute_or_hold(action, persisted);
        }
        // What executing the actions found out goes to the core now that the drain is over,
        // with the loop's one `now`: logins the checkers had no room for (answered "server
        // busy" at once), connections that became congested, and ones lost to a full buffer.
        let now = self.now;
        let congested = core::mem::take(&mut self.congested);
        let lost = core::mem::take(&mut self.lost);
        if busy.is_empty() && congested.is_empty() && lost.is_empty() {
            return;
        }
        for conn in busy {
            self.broker
                .handle_password_verdict(now, conn, AuthVerdict::Busy);
        }
        for conn in congested {
            self.broker.handle_congestion(now, conn, true);
        }
        for conn in lost {
            self.broker.handle_connection_lost(now, conn);
        }
        self.run_actions();
    }

    /// Runs `action` now, or holds it until the last batch submitted is committed, as
    /// [`Action::barrier`] says: an acknowledgement of its own input's state
    /// ([`Barrier::OwnInput`]) when a batch came earlier in its drain (`persisted`), a CONNACK
    /// that vouches for an earlier input's state ([`Barrier::Earlier`]) always, and any action
    /// behind a held one of its connection.
    fn execute_or_hold(&mut self, action: Action, persisted: bool) {
        let uncommitted = self
            .barrier
            .filter(|&b| self.committed.is_none_or(|c| c < b));
        let Some(barrier) = uncommitted else {
            self.execute(action);
            return;
        };
        let conn = match &action {
            Action::Send { conn, .. } | Action::Close { conn } => Some(*conn),
            _ => None,
        };
        let behind_its_connection = conn.is_some_and(|c| self.held_per_conn.contains_key(&c));
        // The core says what the action vouches for; the driver only keeps the batches.
        let waits_for_a_batch = match action.barrier() {
            Barrier::Order => false,
            Barrier::OwnInput => persisted,
            Barrier::Earlier => true,
        };
        if !(behind_its_connection || waits_for_a_batch) {
            self.execute(action);
            return;
        }
        if let Some(conn) = conn {
            *self.held_per_conn.entry(conn).or_insert(0) += 1;
        }
        self.held.push_back((barrier, action));
    }

    /// Hands the password checkers' verdicts to the core, and lets the connections they
    /// accepted read again.
    fn take_verdicts(&mut self, now: Instant) {
        let mut any = false;
        while let Some((conn, verdict)) = self.passwords.try_verdict() {
            any = true;
            self.broker.handle_password_verdict(now, conn, verdict);
            if self.broker.accepts_packets(conn)
                && let Some(key) = self.key_of(conn)
                && let Some(c) = self.conns.get_mut(key)
            {
                c.paused = false;
                // What it sent after its CONNECT waits in its buffer and its socket.
                self.pending.push(key);
            }
        }
        if any {
            self.run_actions();
        }
    }

    /// Logs a notice of the core: client-supplied strings clipped, repeated lines about one
    /// source rate-limited.
    fn log_notice(&mut self, notice: Notice) {
        let now = self.now;
        match notice {
            Notice::Connecting {
                conn,
                client_id,
                username,
            } => {
                if let Some(c) = self.key_of(conn).and_then(|k| self.conns.get_mut(k)) {
                    // Clipped now: a refused CONNECT's strings go to the log as such.
                    c.client = Some(ClientName::Connecting(Box::new((
                        Clipped(&client_id).to_string(),
                        username.map(|u| Clipped(&u).to_string()),
                    ))));
                }
            }
            Notice::Accepted {
                conn,
                client_id,
                identity,
                session_present,
            } => {
                let Some(key) = self.key_of(conn) else {
                    return;
                };
                if let Some(c) = self.conns.get_mut(key) {
                    c.connected = true;
                    info!(
                        peer = %c.peer,
                        client_id = %Clipped(&client_id),
                        identity = %Clipped(&identity.to_string()),
                        protocol = c.decoder.version().level(),
                        session_present,
                        "client connected"
                    );
                    c.client = Some(ClientName::Known(Clipped(&client_id).to_string().into()));
                }
                self.done_connecting(key);
            }
            Notice::Refused { conn, reason } => {
                let Some(c) = self.key_of(conn).and_then(|k| self.conns.get_mut(k)) else {
                    return;
                };
                let (client_id, username) = match c.client.take() {
                    Some(ClientName::Connecting(b)) => (b.0, b.1),
                    Some(ClientName::Known(id)) => (id.into_string(), None),
                    None => (String::new(), None),
                };
                let peer = c.peer;
                if let Verdict::Write { suppressed } = self.refusal_log.check(now, peer.ip()) {
                    info!(
                        %peer,
                        client_id,
                        username = username.unwrap_or_default(),
                        reason = format!("0x{:02X}", reason.as_u8()),
                        suppressed,
                        "connection refused"
                    );
                }
            }
            Notice::Ended { conn, reason } => {
                if let Some(c) = self.key_of(conn).and_then(|k| self.conns.get_mut(k))
                    && c.close_reason.is_none()
                {
                    c.close_reason = Some(reason.into());
                }
            }
            Notice::ConnAckTooLarge {
                conn,
                reason,
                size,
                maximum,
            } => {
                let Some(c) = self.key_of(conn).and_then(|k| self.conns.get_mut(k)) else {
                    return;
                };
                let client_id = match c.client.take() {
                    Some(ClientName::Connecting(b)) => b.0,
                    Some(ClientName::Known(id)) => id.into_string(),
                    None => String::new(),
                };
                let peer = c.peer;
                if let Verdict::Write { suppressed } = self.refusal_log.check(now, peer.ip()) {
                    warn!(
                        %peer,
                        client_id,
                        reason = format!("0x{:02X}", reason.as_u8()),
                        size,
                        maximum,
                        suppressed,
                        "connection closed without CONNACK: the CONNACK exceeds the client's \
                         Maximum Packet Size [MQTT-3.1.2-24]"
                    );
                }
            }
            Notice::SessionOwnedByOther {
                conn,
                client_id,
                identity,
                owner,
            } => {
                let Some(peer) = self
                    .key_of(conn)
                    .and_then(|k| self.conns.get(k))
                    .map(|c| c.peer)
                else {
                    return;
                };
                if let Verdict::Write { suppressed } = self.refusal_log.check(now, peer.ip()) {
                    warn!(
                        %peer,
                        client_id = %Clipped(&client_id),
                        identity = %Clipped(&identity.to_string()),
                        owner = %Clipped(&owner.to_string()),
                        suppressed,
                        "connection refused: the session of this client identifier belongs to another identity"
                    );
                }
            }
            Notice::ReauthenticatedAsOther {
                conn,
                identity,
                proved,
            } => {
                let peer = self
                    .key_of(conn)
                    .and_then(|k| self.conns.get(k))
                    .map(|c| c.peer);
                warn!(
                    peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                    identity = %Clipped(&identity.to_string()),
                    proved = %Clipped(&proved),
                    "re-authentication proved another identity; disconnecting"
                );
            }
            Notice::RetainedRefused { topic, bytes } => {
                let any = std::net::IpAddr::from([0, 0, 0, 0]);
                if let Verdict::Write { suppressed } = self.limit_log.check(now, any) {
                    warn!(
                        topic = %Clipped(&topic),
                        bytes,
                        suppressed,
                        "retained message not kept: the retained store is at its limits \
                         ([broker] max_retained_messages, max_retained_bytes)"
                    );
                }
            }
            Notice::QueueMemory { full: true, bytes } => warn!(
                bytes,
                "queued messages reached [broker] max_queued_bytes_total: new persistent work \
                 is refused and new queued deliveries are dropped until the queues drain"
            ),
            Notice::SessionLimit {
                conn,
                client_id,
                limit,
            } => {
                let Some(peer) = self
                    .key_of(conn)
                    .and_then(|k| self.conns.get(k))
                    .map(|c| c.peer)
                else {
                    return;
                };
                if let Verdict::Write { suppressed } = self.refusal_log.check(now, peer.ip()) {
                    warn!(
                        %peer,
                        client_id = %Clipped(&client_id),
                        limit,
                        suppressed,
                        "connection refused: the broker keeps as many persistent sessions as \
                         [broker] max_persistent_sessions allows"
                    );
                }
            }
            Notice::QueueMemory { full: false, bytes } => {
                info!(
                    bytes,
                    "queued messages below [broker] max_queued_bytes_total again"
                );
            }
            other => debug!(notice = ?other, "core notice"),
        }
    }

    /// Applies store completions: releases the actions that waited for them.
    fn take_completions(&mut self) {
        loop {
            match self.completions.try_recv() {
                Ok(completion) => {
                    match &completion {
                        Completion::Failed { batch, error } => {
                            error!(%batch, error = %error, "a store batch failed; the acknowledgements that depend on it are withheld");
                            if completion.is_storage_full() && !self.broker.storage_full() {
                                error!(
                                    "storage full: refusing new persistent work until the store accepts writes again"
                                );
                                self.broker.handle_storage_full(true);
                            }
                        }
                        Completion::Committed { .. } if self.broker.storage_full() => {
                            info!("the store accepts writes again: persistent work resumes");
                            self.broker.handle_storage_full(false);
                        }
                        _ => {}
                    }
                    let last = match self.backlog.settle(&completion) {
                        Some(Settled::Committed(ticket)) => ticket,
                        Some(Settled::Failed(ticket)) => {
                            self.failed.push(ticket);
                            ticket
                        }
                        None => continue,
                    };
                    self.committed = Some(self.committed.map_or(last, |c| c.max(last)));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The writer has stopped: nothing more will be committed, and nothing
                    // waits for it any longer.
                    self.committed = self.barrier;
                    self.backlog.abandon();
                    break;
                }
            }
        }
        while let Some((ticket, _)) = self.held.front() {
            if self.committed.is_none_or(|c| c < *ticket) {
                break;
            }
            if let Some((ticket, action)) = self.held.pop_front() {
                if let Action::Send { conn, .. } | Action::Close { conn } = &action
                    && let Some(n) = self.held_per_conn.get_mut(conn)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.held_per_conn.remove(conn);
                    }
                }
                if self.failed.contains(&ticket) && action.is_acknowledgement() {
                    // Its data is not durable: no acknowledgement. The client keeps the message
                    // and sends it again when it reconnects (QoS 2 is not routed twice).
                    warn!("acknowledgement withheld: its batch was not stored");
                    continue;
                }
                self.execute(action);
            }
        }
        // Failures older than everything still held are done with.
        let oldest = self.held.front().map(|(t, _)| *t);
        self.failed.retain(|t| oldest.is_some_and(|o| *t >= o));
    }

    /// The connection completed CONNECT: it no longer counts against its address's
    /// connections that have not.
    fn done_connecting(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && c.connecting
        {
            c.connecting = false;
            release_connecting(&mut self.connecting, c.peer);
        }
    }

    fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = (id.0 & 0xFFFF_FFFF) as usize;
        self.conns.get(key).filter(|c| c.id == id).map(|_| key)
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Send { conn, packet } => {
                let Some(key) = self.key_of(conn) else {
                    return;
                };
                let limit = self.write_buffer_limit;
                // A closing connection takes its DISCONNECT still, nothing else, and nothing
                // once its transport's close is queued.
                let refused = self.conns.get(key).is_none_or(|c| {
                    c.closing
                        && (c.linger.transport_closed
                            || !matches!(packet, mqtt5_codec::Packet::Disconnect(_)))
                });
                if refused {
                    return;
                }
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                let before = c.buffered();
                packet.encode(c.decoder.version(), &mut c.wbuf);
                let buffered = c.buffered();
                if buffered > limit / 2 && !c.congested {
                    // Past the high-water mark: the core keeps further messages in the
                    // client's session queue until the buffer drains (told after the drain).
                    c.congested = true;
                    debug!(conn = conn.0, buffered, "client congested");
                    self.congested.push(conn);
                }
                if before > limit {
                    // A client that does not read: its buffer was full already. Disconnect it
                    // rather than grow memory without bound. (One packet may take a buffer
                    // within the limit past it: a message can be larger than the limit when
                    // `max_packet_size` is, and a client that reads still gets it.)
                    warn!(
                        conn = conn.0,
                        buffered = c.wbuf.len(),
                        "slow consumer; disconnecting"
                    );
                    c.wbuf.clear();
                    c.close_reason = Some("slow consumer: write buffer full".into());
                    self.lost.push(conn);
                    self.remove(key);
                    return;
                }
                self.dirty.push(key);
            }
            Action::Close { conn } => {
                if let Some(key) = self.key_of(conn) {
                    self.begin_close(key);
                }
            }
            // Handled where the actions are drained; never held.
            Action::Persist(_)
            | Action::Protocol { .. }
            | Action::CheckPassword(_)
            | Action::Notice(_) => {}
        }
    }

    fn flush_dirty(&mut self) {
        // Flushing can un-congest a connection, which makes the core send its queue: a few
        // rounds, bounded.
        for _ in 0..4 {
            if self.dirty.is_empty() {
                return;
            }
            for key in core::mem::take(&mut self.dirty) {
                self.flush(key);
            }
        }
    }

    /// Writes what the connection's buffer holds; closes it if the core asked and all is sent.
    fn flush(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        match c.write_output() {
            Ok(sent) => self.broker.record_traffic(0, sent as u64),
            Err(e) => {
                c.close_reason = Some(format!("write failed: {e}").into());
                let id = c.id;
                let closing = c.closing;
                if !closing {
                    self.broker.handle_connection_lost(self.now, id);
                }
                self.remove(key);
                return;
            }
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.congested && c.buffered() < self.write_buffer_limit / 4 {
            // Below the low-water mark: the core may send again, starting with the queue.
            c.congested = false;
            let id = c.id;
            debug!(conn = id.0, "client drained");
            self.broker.handle_congestion(self.now, id, false);
            self.run_actions();
        }
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.closing && !c.has_output())
            && !self.close_output(key)
        {
            return;
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !c.has_output() {
            if c.want_write {
                c.want_write = false;
                let _ = self.poll.registry().reregister(
                    &mut c.stream,
                    Token(CONN_BASE + key),
                    Interest::READABLE,
                );
            }
        } else if !c.want_write {
            c.want_write = true;
            let _ = self.poll.registry().reregister(
                &mut c.stream,
                Token(CONN_BASE + key),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    /// Begins the lingering close of connection `key` ([`Linger`]): its undecoded input is
    /// dropped, what is left to send is flushed, and the rest of its input will be read and
    /// dropped until at most [`LINGER`] from now.
    fn begin_close(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        c.rbuf = BytesMut::new();
        self.lingering.push_back((self.now + LINGER, c.id));
        self.dirty.push(key);
        // Input may wait in the socket already, its readiness reported before.
        self.pending.push(key);
    }

    /// A closing connection's output is flushed: queues its transport's close (WebSocket Close
    /// frame, TLS close_notify), then, once that is sent, shuts down its write side. Closes it
    /// if its client has ended its input as well. False when the connection is gone.
    fn close_output(&mut self, key: usize) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if !c.linger.transport_closed {
            c.linger.transport_closed = true;
            if let Some(ws) = c.ws.as_mut() {
                ws.close();
                if let Some(out) = ws.take_output() {
                    ws.frames.extend_from_slice(&out);
                }
            }
            if let Some(tls) = c.tls.as_mut() {
                tls.send_close_notify();
            }
            match c.write_output() {
                Ok(sent) => self.broker.record_traffic(0, sent as u64),
                Err(_) => {
                    self.remove(key);
                    return false;
                }
            }
        }
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if c.has_output() {
            // The close frames wait for the socket: the next writable event.
            return true;
        }
        if !c.linger.shut {
            c.linger.shut = true;
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        if c.linger.input_ended {
            self.remove(key);
            return false;
        }
        true
    }

    /// Reads and drops the input of a closing connection ([`Linger`]); closes it when its
    /// client has closed its side and its output is done, when the input fails (a reset), or
    /// past [`LINGER_BYTES`].
    fn drop_input(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let scratch = &mut self.scratch;
        let mut done = false;
        let mut read = 0;
        while !c.linger.input_ended {
            if c.linger.dropped >= LINGER_BYTES {
                debug!(conn = c.id.0, "lingering close: byte limit reached");
                done = true;
                break;
            }
            match c.stream.read(scratch) {
                Ok(0) => c.linger.input_ended = true,
                Ok(n) => {
                    c.linger.dropped += n;
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => done = true,
            }
            if done {
                break;
            }
        }
        let shut = c.linger.shut;
        let ended = c.linger.input_ended;
        self.broker.record_traffic(read as u64, 0);
        if done || (ended && shut) {
            self.remove(key);
        }
    }

    /// Closes the connections whose lingering close has run out of time.
    fn expire_lingering(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now {
                return;
            }
            self.lingering.pop_front();
            if let Some(key) = self.key_of(id) {
                debug!(conn = id.0, "lingering close: deadline reached");
                self.remove(key);
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut c = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let reason = c
            .close_reason
            .take()
            .map_or_else(|| "closed by the broker".to_owned(), String::from);
        let client_id = match c.client.take() {
            Some(ClientName::Connecting(b)) => b.0,
            Some(ClientName::Known(id)) => id.into_string(),
            None => String::new(),
        };
        if c.connecting {
            release_connecting(&mut self.connecting, c.peer);
        }
        if c.connected {
            info!(peer = %c.peer, client_id, reason, "client disconnected");
        } else {
            debug!(peer = %c.peer, reason, "connection closed before CONNECT completed");
        }
        if let Some(l) = self.listeners.get_mut(c.listener) {
            l.open = l.open.saturating_sub(1);
        }
        self.open_connections = self.open_connections.saturating_sub(1);
    }

    /// Graceful shutdown: stop accepting, DISCONNECT 0x8B to every client, commit the store,
    /// then the lingering close of every connection, each bounded by its deadline.
    fn finish(mut self) -> Result<(), ServerError> {
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut l.socket);
        }
        let now = Instant::now();
        self.now = now;
        self.broker.handle_shutdown(now);
        self.run_actions();
        // Batches that waited for room in the writer's queue go now, in order.
        self.backlog.submit_waiting();
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.flush() {
                error!(error = %e, "the final store commit failed");
            }
            self.take_completions();
            self.flush_dirty();
            if let Err(e) = writer.shutdown() {
                error!(error = %e, "the store writer did not stop cleanly");
            }
        }
        // Every connection closes, the core's or not (one whose close waited behind a batch
        // that failed).
        self.now = Instant::now();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.begin_close(key);
        }
        self.flush_dirty();
        self.linger_out();
        info!("stopped");
        Ok(())
    }

    /// The event loop for closing connections only, until the last one is closed: the
    /// DISCONNECTs go out, and clients still sending can read them. Each connection lingers
    /// until its deadline at most, so this ends.
    fn linger_out(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.now = now;
            for key in core::mem::take(&mut self.pending) {
                self.read(now, key);
            }
            self.flush_dirty();
            self.expire_lingering(now);
            let Some(&(at, _)) = self.lingering.front() else {
                // No deadline left: whatever remains (nothing, normally) closes now.
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.remove(key);
                }
                return;
            };
            if self.conns.is_empty() {
                return;
            }
            let timeout = if self.pending.is_empty() {
                at.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error!(error = %e, "poll failed while closing connections");
                    return;
                }
            }
            for event in events.iter() {
                if let Token(t) = event.token()
                    && t >= CONN_BASE
                    && t != WAKER.0
                    && t != SIGNALS.0
                {
                    self.connection_event(now, t - CONN_BASE, event);
                }
            }
        }
    }
}

/// One connection of `peer`'s address no longer waits for CONNECT to complete.
fn release_connecting(
    connecting: &mut std::collections::HashMap<std::net::IpAddr, usize>,
    peer: SocketAddr,
) {
    let source = mqtt5_broker::address_key(peer.ip());
    if let Some(n) = connecting.get_mut(&source) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            connecting.remove(&source);
        }
    }
}
