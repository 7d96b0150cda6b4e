//! The conformance suite: a table of wire-level cases against the real `mqtt5d`, each tagged
//! with the normative statements of MQTT 5.0 (`[MQTT-x.x.x-y]`) it checks.
//!
//! In the style of Mosquitto's broker tests, a [`Case`] is data: a name, the statement ids it
//! covers, the broker's configuration, and a [`Script`] of steps. A step opens a bare TCP (or
//! WebSocket) connection, sends packets (built with `mqtt5-codec`, or raw hex for what the
//! codec refuses to build), or says exactly what the broker must answer: a packet, bytes, a
//! reason code, a close, or silence. Every case gets a fresh broker on a loopback port the OS
//! picks, and must leave it able to stop cleanly on SIGTERM.
//!
//! The section files hold the cases and, for the statements no case can test, the reason
//! ([`NotApplicable`]): a statement that binds only clients, for example. `docs/conformance.md`
//! is generated from these tables; [`table_is_current`] fails when it is stale. Regenerate
//! it with
//!
//! ```text
//! MQTT5_BLESS=1 cargo test -p mqtt5d --test it conformance::table_is_current
//! ```
//!
//! Run one case (or all whose name contains a string) with
//! `MQTT5_CASE=name cargo test -p mqtt5d --test it conformance::suite -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::{
    ConnAckReason, Connect, Decoder, Delivery, DisconnectReason, MqttString, Packet, PacketId,
    PacketType, ProtocolVersion, Publish, QoS, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter, TopicName,
};

use crate::harness::*;

mod s1_connect;
mod s3_2_connack_auth;
mod s3_3_publish;
mod s3_8_subscribe;
mod s4_13_errors;
mod s4_operational;
mod s5_security;
mod v311;

/// The longest any one wait for the broker may take: a liveness bound, never a check of how
/// fast the broker is.
const STEP: Duration = Duration::from_secs(10);

/// Broker configuration that enables the metrics endpoint on a loopback port the OS picks,
/// for [`Script::expect_metric`].
pub(crate) const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// The normative statement ids of MQTT 5.0, one per line.
const NORMATIVE_IDS: &str = include_str!("normative-ids.txt");

/// Tags of MQTT 3.1.1 statements start with this (`"3.1.1/MQTT-3.2.2-4"`): they are listed in
/// their own table, since the 5.0 list does not hold them.
const V311_TAG: &str = "3.1.1/";

/// Tags of rules that a section of MQTT 5.0 states without a normative statement of its own
/// (a SHOULD NOT, a MAY the broker takes up) start with this (`"§1.5.4"`): they are listed by
/// section, in a table of their own.
const SECTION_TAG: &str = "§";

/// One conformance case: a row of the table.
pub(crate) struct Case {
    /// Unique across the suite; names the case in the generated table.
    pub(crate) name: &'static str,
    /// The statement ids it checks: `"MQTT-3.1.0-1"`, or `"3.1.1/MQTT-3.2.2-4"`, or the section
    /// of a rule without a normative statement: `"§1.5.4"`.
    pub(crate) ids: &'static [&'static str],
    /// Extra TOML for the broker's config file. Without a `[[listener]]` table the broker
    /// listens on `127.0.0.1:0` (plain MQTT); with one, the first listener is used.
    pub(crate) config: &'static str,
    /// Users to create (`mqtt5d user add`) before the broker starts: (name, password).
    pub(crate) users: &'static [(&'static str, &'static str)],
    /// Builds the steps. It runs before any I/O: a script is data.
    pub(crate) script: fn(Script) -> Script,
}

impl Case {
    /// A case on a broker with the default configuration.
    pub(crate) const fn new(
        name: &'static str,
        ids: &'static [&'static str],
        script: fn(Script) -> Script,
    ) -> Self {
        Self {
            name,
            ids,
            config: "",
            users: &[],
            script,
        }
    }

    /// The same case with extra broker configuration (TOML).
    pub(crate) const fn config(mut self, config: &'static str) -> Self {
        self.config = config;
        self
    }

    /// The same case with these users in the broker's database.
    pub(crate) const fn users(mut self, users: &'static [(&'static str, &'static str)]) -> Self {
        self.users = users;
        self
    }
}

/// A statement that no black-box case can test, and why.
pub(crate) struct NotApplicable {
    /// The statement id.
    pub(crate) id: &'static str,
    /// Why: "binds the client only", "covered by ... since ...".
    pub(crate) reason: &'static str,
}

/// Shorthand for a [`NotApplicable`] row.
pub(crate) const fn na(id: &'static str, reason: &'static str) -> NotApplicable {
    NotApplicable { id, reason }
}

/// Every case of every section.
fn all_cases() -> Vec<&'static Case> {
    [
        s1_connect::CASES,
        s3_2_connack_auth::CASES,
        s3_3_publish::CASES,
        s3_8_subscribe::CASES,
        s4_operational::CASES,
        s4_13_errors::CASES,
        s5_security::CASES,
        v311::CASES,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Every not-applicable statement of every section.
fn all_not_applicable() -> Vec<&'static NotApplicable> {
    [
        s1_connect::NOT_APPLICABLE,
        s3_2_connack_auth::NOT_APPLICABLE,
        s3_3_publish::NOT_APPLICABLE,
        s3_8_subscribe::NOT_APPLICABLE,
        s4_operational::NOT_APPLICABLE,
        s4_13_errors::NOT_APPLICABLE,
        s5_security::NOT_APPLICABLE,
        v311::NOT_APPLICABLE,
    ]
    .into_iter()
    .flatten()
    .collect()
}

// ---- Scripts ----------------------------------------------------------------------------------

/// The steps of a case, built before it runs. Connections are numbered by the caller (0, 1,
/// ...); each speaks the protocol version it was opened with.
#[derive(Default)]
pub(crate) struct Script {
    steps: Vec<Step>,
    versions: BTreeMap<usize, ProtocolVersion>,
}

/// How a connection reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain TCP.
    Tcp,
    /// A WebSocket (the listener must be a websocket one), offering these subprotocols.
    WebSocket(&'static str),
}

/// A check of a received packet: `Err` says what is wrong with it.
pub(crate) type Check = Box<dyn Fn(&Packet) -> Result<(), String> + Send>;

/// What the broker must answer.
pub(crate) enum Want {
    /// This packet, field for field.
    Packet(Packet),
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// A packet that passes the check, described for the failure message.
    That(String, Check),
}

impl std::fmt::Debug for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Packet(p) => write!(f, "{p:?}"),
            Self::Bytes(b) => write!(f, "bytes {}", hex(b)),
            Self::That(what, _) => write!(f, "{what}"),
        }
    }
}

/// Bytes to send, computed when the step runs.
pub(crate) struct Later(Box<dyn Fn() -> Result<Vec<u8>, String> + Send>);

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(computed when sent)")
    }
}

/// One step of a script.
#[derive(Debug)]
pub(crate) enum Step {
    /// Opens connection `conn`.
    Open {
        conn: usize,
        version: ProtocolVersion,
        transport: Transport,
    },
    /// Sends bytes on `conn` (`what` describes them).
    Send {
        conn: usize,
        bytes: Vec<u8>,
        what: String,
    },
    /// The next packet on `conn` must be this.
    Recv { conn: usize, want: Want },
    /// The broker must close `conn` with nothing (more) sent.
    Closed { conn: usize },
    /// Nothing may arrive on `conn` for this long (and it stays open).
    Quiet { conn: usize, time: Duration },
    /// The client closes `conn` without a DISCONNECT: a PINGREQ round trip (the broker has
    /// read everything sent before), a FIN, then it reads until the broker closes its side
    /// too. When the step ends, the broker has handled the lost connection.
    Hangup { conn: usize },
    /// Lets this much time pass, for a timer of the case (an expiry, a will delay) to run
    /// out. It is a lower bound: what follows must hold however much later it runs. It never
    /// waits for the broker to catch up; that is what [`Step::Metric`], [`Step::Log`], a packet
    /// or a close are for.
    Elapse(Duration),
    /// Stops the broker with SIGTERM (it must exit 0), lets `down` pass while it is stopped,
    /// and starts it again on the same data directory. Every open connection is gone; the
    /// address may change.
    Restart { down: Duration },
    /// The broker's metrics endpoint must show `name` at `value` (within [`STEP`]); the
    /// case's configuration enables it with [`METRICS`].
    Metric { name: &'static str, value: u64 },
    /// The broker must log a line containing this (within [`STEP`]).
    Log(&'static str),
    /// Sends a WebSocket text frame on `conn` (a WebSocket connection).
    SendText { conn: usize, text: String },
    /// Sends bytes computed when the step runs, from what earlier checks saw (the answer of
    /// a challenge-response exchange such as SCRAM): `what` describes them.
    SendLater {
        conn: usize,
        what: String,
        make: Later,
    },
    /// The WebSocket subprotocol the broker selected for `conn` must be this.
    Subprotocol {
        conn: usize,
        want: Option<&'static str>,
    },
    /// The broker's FIN must arrive on `conn` (it shut down its side), while the client
    /// reads nothing: what the broker sent before stays unread in the client's socket.
    Fin { conn: usize },
    /// Sends bytes on `conn` (TCP) and the client's FIN in the same TCP segment: the client
    /// half-closes, it sends nothing more but still reads.
    SendWithFin {
        conn: usize,
        bytes: Vec<u8>,
        what: String,
    },
}

impl Script {
    fn push(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    fn version(&self, conn: usize) -> ProtocolVersion {
        *self
            .versions
            .get(&conn)
            .unwrap_or_else(|| panic!("connection {conn} is used before it is opened"))
    }

    /// Opens connection `conn` (TCP, MQTT 5).
    pub(crate) fn open(self, conn: usize) -> Self {
        self.open_with(conn, ProtocolVersion::V5, Transport::Tcp)
    }

    /// Opens connection `conn` for `version` over `transport`.
    pub(crate) fn open_with(
        mut self,
        conn: usize,
        version: ProtocolVersion,
        transport: Transport,
    ) -> Self {
        self.versions.insert(conn, version);
        self.push(Step::Open {
            conn,
            version,
            transport,
        })
    }

    /// Sends `packet` on `conn`, encoded for the connection's version.
    pub(crate) fn send(self, conn: usize, packet: impl Into<Packet>) -> Self {
        let packet = packet.into();
        let mut buf = BytesMut::new();
        packet.encode(self.version(conn), &mut buf);
        let what = format!("{packet:?}");
        self.push(Step::Send {
            conn,
            bytes: buf.to_vec(),
            what,
        })
    }

    /// Sends raw bytes, written as hex (whitespace ignored): `"10 0c 00 04 4d 51 54 54"`.
    pub(crate) fn send_hex(self, conn: usize, hex: &str) -> Self {
        let bytes = unhex(hex);
        self.push(Step::Send {
            conn,
            what: format!("hex {hex}"),
            bytes,
        })
    }

    /// Sends raw bytes.
    pub(crate) fn send_bytes(self, conn: usize, bytes: Vec<u8>, what: &str) -> Self {
        self.push(Step::Send {
            conn,
            bytes,
            what: what.to_owned(),
        })
    }

    /// The next packet on `conn` must equal `packet`.
    pub(crate) fn expect(self, conn: usize, packet: impl Into<Packet>) -> Self {
        self.push(Step::Recv {
            conn,
            want: Want::Packet(packet.into()),
        })
    }

    /// The next bytes on `conn` must be exactly these (hex).
    pub(crate) fn expect_hex(self, conn: usize, hex: &str) -> Self {
        self.push(Step::Recv {
            conn,
            want: Want::Bytes(unhex(hex)),
        })
    }

    /// The next packet on `conn` must pass `check`.
    pub(crate) fn expect_that(
        self,
        conn: usize,
        what: &str,
        check: impl Fn(&Packet) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.push(Step::Recv {
            conn,
            want: Want::That(what.to_owned(), Box::new(check)),
        })
    }

    /// The next packet on `conn` must be of this type, with this reason code (or, for
    /// MQTT 3.1.1, CONNACK return code / SUBACK return code), whatever its properties.
    pub(crate) fn expect_reason(self, conn: usize, kind: PacketType, code: u8) -> Self {
        self.expect_that(
            conn,
            &format!("{kind:?} with reason 0x{code:02X}"),
            move |p| {
                if p.packet_type() != kind {
                    return Err(format!("a {:?}", p.packet_type()));
                }
                let got = reason_of(p);
                if got == Some(code) {
                    Ok(())
                } else {
                    Err(format!("reason {got:02X?}"))
                }
            },
        )
    }

    /// The next packet on `conn` must be a CONNACK with `reason`, whatever its properties.
    pub(crate) fn expect_connack(self, conn: usize, reason: ConnAckReason) -> Self {
        self.expect_reason(conn, PacketType::ConnAck, reason.as_u8())
    }

    /// The next packet on `conn` must be a DISCONNECT with `reason`, and then the broker must
    /// close the connection.
    pub(crate) fn expect_disconnect(self, conn: usize, reason: DisconnectReason) -> Self {
        self.expect_reason(conn, PacketType::Disconnect, reason.as_u8())
            .expect_closed(conn)
    }

    /// The broker must close `conn` with nothing (more) sent.
    pub(crate) fn expect_closed(self, conn: usize) -> Self {
        self.push(Step::Closed { conn })
    }

    /// Nothing may arrive on `conn` for `ms` milliseconds.
    pub(crate) fn expect_quiet(self, conn: usize, ms: u64) -> Self {
        self.push(Step::Quiet {
            conn,
            time: Duration::from_millis(ms),
        })
    }

    /// The client drops `conn` without a DISCONNECT, and waits for the broker to close it.
    pub(crate) fn hangup(self, conn: usize) -> Self {
        self.push(Step::Hangup { conn })
    }

    /// Sends a WebSocket text frame holding `text` on `conn`.
    pub(crate) fn send_text(self, conn: usize, text: &str) -> Self {
        self.push(Step::SendText {
            conn,
            text: text.to_owned(),
        })
    }

    /// Sends on `conn` the bytes `make` returns when the step runs (an `Err` fails the case).
    pub(crate) fn send_later(
        self,
        conn: usize,
        what: &str,
        make: impl Fn() -> Result<Vec<u8>, String> + Send + 'static,
    ) -> Self {
        self.push(Step::SendLater {
            conn,
            what: what.to_owned(),
            make: Later(Box::new(make)),
        })
    }

    /// Waits for the broker's FIN on `conn` without reading anything (see [`Step::Fin`]): the
    /// steps after it act as a client still busy sending, which has not read the broker's
    /// last packets yet.
    pub(crate) fn await_fin(self, conn: usize) -> Self {
        self.push(Step::Fin { conn })
    }

    /// Sends `packet` on `conn` (TCP) with the client's FIN in the same segment, so that the
    /// broker sees the data and the end of its input in one readiness event.
    pub(crate) fn send_with_fin(self, conn: usize, packet: impl Into<Packet>) -> Self {
        let packet = packet.into();
        let mut buf = BytesMut::new();
        packet.encode(self.version(conn), &mut buf);
        let what = format!("{packet:?}, then FIN");
        self.push(Step::SendWithFin {
            conn,
            bytes: buf.to_vec(),
            what,
        })
    }

    /// The WebSocket subprotocol the broker selected for `conn` must be `want`.
    pub(crate) fn expect_subprotocol(self, conn: usize, want: Option<&'static str>) -> Self {
        self.push(Step::Subprotocol { conn, want })
    }

    /// Lets `ms` milliseconds pass for a timer of the case (see [`Step::Elapse`]).
    pub(crate) fn elapse(self, ms: u64) -> Self {
        self.push(Step::Elapse(Duration::from_millis(ms)))
    }

    /// Restarts the broker (SIGTERM, then start on the same data directory).
    pub(crate) fn restart(self) -> Self {
        self.restart_after(0)
    }

    /// Stops the broker, lets `ms` milliseconds pass while it is down, and starts it again.
    pub(crate) fn restart_after(self, ms: u64) -> Self {
        self.push(Step::Restart {
            down: Duration::from_millis(ms),
        })
    }

    /// The broker's metrics endpoint must show `name` at `value` (the case's configuration
    /// includes [`METRICS`]).
    pub(crate) fn expect_metric(self, name: &'static str, value: u64) -> Self {
        self.push(Step::Metric { name, value })
    }

    /// A PINGREQ on `conn` and its PINGRESP: the broker has handled everything `conn` sent
    /// before.
    pub(crate) fn ping(self, conn: usize) -> Self {
        self.send_hex(conn, "c0 00").expect_hex(conn, "d0 00")
    }

    /// The broker must log a line containing `needle`.
    pub(crate) fn expect_log(self, needle: &'static str) -> Self {
        self.push(Step::Log(needle))
    }

    /// Opens `conn` (MQTT 5), sends `connect`, and expects a successful CONNACK (any session
    /// present flag and properties).
    pub(crate) fn connect_with(self, conn: usize, connect: Connect) -> Self {
        let version = connect.protocol;
        self.open_with(conn, version, Transport::Tcp)
            .send(conn, connect)
            .expect_reason(conn, PacketType::ConnAck, 0)
    }

    /// Opens `conn` and connects as `client_id` with Clean Start, MQTT 5.
    pub(crate) fn connect(self, conn: usize, client_id: &str) -> Self {
        self.connect_with(conn, connect(client_id))
    }

    /// Subscribes `conn` to `filter` at `qos` with packet id `pid`, and expects the SUBACK
    /// granting `qos`.
    pub(crate) fn subscribe(self, conn: usize, pid: u16, filter: &str, qos: QoS) -> Self {
        self.send(conn, subscribe(pid, filter, qos)).expect_that(
            conn,
            &format!("SUBACK {pid} granting {qos:?}"),
            move |p| match p {
                Packet::SubAck(ack)
                    if ack.packet_id.get() == pid
                        && ack.reasons.len() == 1
                        && ack.reasons[0].as_u8() == qos.as_u8() =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        )
    }
}

/// The reason code (or 3.1.1 return code) a packet carries, if its type has one.
pub(crate) fn reason_of(p: &Packet) -> Option<u8> {
    Some(match p {
        Packet::ConnAck(a) => a.reason.as_u8(),
        Packet::PubAck(a) => a.reason.as_u8(),
        Packet::PubRec(a) => a.reason.as_u8(),
        Packet::PubRel(a) => a.reason.as_u8(),
        Packet::PubComp(a) => a.reason.as_u8(),
        Packet::SubAck(a) => a.reasons.first()?.as_u8(),
        Packet::UnsubAck(a) => a.reasons.first()?.as_u8(),
        Packet::Disconnect(d) => d.reason.as_u8(),
        Packet::Auth(a) => a.reason.as_u8(),
        _ => return None,
    })
}

// ---- Packet builders ------------------------------------------------------------------------------

/// A packet identifier.
pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("a non-zero packet identifier")
}

/// A topic name.
pub(crate) fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).expect("a valid topic name")
}

/// An MQTT 5 CONNECT with Clean Start, keep-alive 60 and no properties.
pub(crate) fn connect(client_id: &str) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: MqttString::try_from(client_id).expect("a client identifier"),
        keep_alive: 60,
        ..Connect::default()
    }
}

/// A PUBLISH of `payload` to `topic_name` at `qos` (packet id `id` unless QoS 0).
pub(crate) fn publish(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(topic(topic_name), Bytes::from_static(payload));
    p.delivery = match qos {
        QoS::AtMostOnce => Delivery::AtMostOnce,
        _ => Delivery::new(qos, pid(id)),
    };
    p
}

/// An MQTT 5 CONNECT with Clean Start `clean` and a Session Expiry Interval of `expiry`
/// seconds.
pub(crate) fn connect_session(client_id: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = connect(client_id);
    c.clean_start = clean;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

/// A CONNECT for a persistent session (expiry 300 s), Clean Start `clean`.
pub(crate) fn persistent(client_id: &str, clean: bool) -> Connect {
    connect_session(client_id, clean, 300)
}

/// A DISCONNECT with reason 0x00 (Normal disconnection).
pub(crate) fn normal_disconnect() -> mqtt5_codec::Disconnect {
    mqtt5_codec::Disconnect::new(DisconnectReason::NormalDisconnection)
}

/// A packet from its first byte and body, for what the codec will not build: the Remaining
/// Length is computed.
pub(crate) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = u8::try_from(len % 128).expect("a 7-bit digit");
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A SUBSCRIBE to one filter at `qos`, other options default.
pub(crate) fn subscribe(id: u16, filter: &str, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::try_from(filter).expect("a valid topic filter"),
            options: SubscriptionOptions::new(qos),
        }],
    }
}

// ---- Running a case -------------------------------------------------------------------------------

/// A client connection while a case runs.
struct Conn {
    io: Io,
    /// The WebSocket subprotocol the broker selected, if any.
    subprotocol: Option<String>,
    buf: BytesMut,
    decoder: Decoder,
}

enum Io {
    Tcp(TcpStream),
    Ws(Box<tungstenite::WebSocket<TcpStream>>),
}

impl Conn {
    fn open(
        addr: SocketAddr,
        version: ProtocolVersion,
        transport: Transport,
    ) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("TCP connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        let mut subprotocol = None;
        let io = match transport {
            Transport::Tcp => Io::Tcp(stream),
            Transport::WebSocket(protocols) => {
                use tungstenite::client::IntoClientRequest;
                let mut request = format!("ws://{addr}/mqtt")
                    .into_client_request()
                    .map_err(|e| e.to_string())?;
                if !protocols.is_empty() {
                    request.headers_mut().insert(
                        "Sec-WebSocket-Protocol",
                        protocols.parse().map_err(|_| "a header value".to_owned())?,
                    );
                }
                let (ws, response) = tungstenite::client(request, stream)
                    .map_err(|e| format!("WebSocket handshake: {e}"))?;
                subprotocol = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Io::Ws(Box::new(ws))
            }
        };
        Ok(Self {
            io,
            subprotocol,
            buf: BytesMut::new(),
            decoder: Decoder::new(version),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.io {
            Io::Tcp(s) => s.write_all(bytes).map_err(|e| format!("write: {e}")),
            Io::Ws(ws) => ws
                .send(tungstenite::Message::binary(bytes.to_vec()))
                .map_err(|e| format!("WebSocket send: {e}")),
        }
    }

    fn set_timeout(&mut self, t: Duration) {
        let s = match &mut self.io {
            Io::Tcp(s) => s,
            Io::Ws(ws) => ws.get_mut(),
        };
        let _ = s.set_read_timeout(Some(t));
    }

    /// Reads more bytes into the buffer: `Ok(true)` if some came, `Ok(false)` at the end of
    /// the stream, `Err("timeout")` when none came in time.
    fn read_more(&mut self) -> Result<bool, String> {
        match &mut self.io {
            Io::Tcp(s) => {
                let mut chunk = [0u8; 16 * 1024];
                match s.read(&mut chunk) {
                    Ok(0) => Ok(false),
                    Ok(n) => {
                        self.buf.extend_from_slice(&chunk[..n]);
                        Ok(true)
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        Err("timeout".to_owned())
                    }
                    // A reset after the broker closed: the end of the stream.
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(false),
                    Err(e) => Err(format!("read: {e}")),
                }
            }
            Io::Ws(ws) => loop {
                match ws.read() {
                    Ok(tungstenite::Message::Binary(b)) => {
                        self.buf.extend_from_slice(&b);
                        return Ok(true);
                    }
                    Ok(tungstenite::Message::Close(_)) => return Ok(false),
                    Ok(tungstenite::Message::Text(_)) => {
                        return Err("a text frame from the broker".to_owned());
                    }
                    Ok(_) => continue,
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        return Err("timeout".to_owned());
                    }
                    Err(
                        tungstenite::Error::ConnectionClosed
                        | tungstenite::Error::AlreadyClosed
                        | tungstenite::Error::Protocol(_),
                    ) => return Ok(false),
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {
                        return Ok(false);
                    }
                    Err(e) => return Err(format!("WebSocket read: {e}")),
                }
            },
        }
    }

    /// Closes the connection without a DISCONNECT, and returns once the broker has handled
    /// the lost connection: a PINGREQ round trip first, so that the broker has read what came
    /// before and the FIN reaches it on its own; then the FIN; then reads (dropping what
    /// comes) until the broker closes its side.
    fn hang_up(mut self) -> Result<(), String> {
        self.write(&[0xC0, 0x00])?;
        loop {
            match self.recv()? {
                Some(Packet::PingResp(_)) => break,
                Some(_) => {}
                None => return Ok(()),
            }
        }
        if self.socket().shutdown(std::net::Shutdown::Write).is_err() {
            // Not connected any more: the broker closed it first.
            return Ok(());
        }
        loop {
            match self.read_more() {
                Ok(true) => self.buf.clear(),
                Ok(false) => return Ok(()),
                Err(e) if e == "timeout" => {
                    return Err(format!(
                        "the broker did not close the connection within {STEP:?} of the \
                         client's FIN"
                    ));
                }
                // A reset, or a WebSocket reply that cannot be written: closed as well.
                Err(_) => return Ok(()),
            }
        }
    }

    /// The TCP socket under the connection.
    fn socket(&self) -> &TcpStream {
        match &self.io {
            Io::Tcp(s) => s,
            Io::Ws(ws) => ws.get_ref(),
        }
    }

    /// Waits (bounded by [`STEP`]) for the broker's FIN, reading nothing: `poll` for
    /// `POLLRDHUP` alone, which the FIN raises whatever data is still unread before it.
    fn await_fin(&self) -> Result<(), String> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec::try_from(STEP).map_err(|e| e.to_string())?;
        let socket = self.socket();
        let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => Err(format!("no FIN from the broker within {STEP:?}")),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("poll: {e}")),
        }
    }

    /// Sends `bytes` and the client's FIN in one TCP segment: `MSG_MORE` holds the bytes in
    /// the socket, and the shutdown then sends them with the FIN flag set.
    fn send_with_fin(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Io::Tcp(stream) = &self.io else {
            return Err("send_with_fin on a WebSocket connection".to_owned());
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = rustix::net::send(stream, rest, rustix::net::SendFlags::MORE)
                .map_err(|e| format!("send: {e}"))?;
            rest = &rest[n..];
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))
    }

    /// The next packet: `Ok(None)` when the broker closed the connection.
    fn recv(&mut self) -> Result<Option<Packet>, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => return Err(format!("the broker sent a malformed packet: {e}")),
            }
            if !self.read_more()? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(format!("the broker closed mid-packet: {}", hex(&self.buf)));
            }
        }
    }

    /// The next `n` bytes, raw.
    fn recv_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.read_more()? {
                return Err(format!("closed after {}", hex(&self.buf)));
            }
        }
        Ok(self.buf.split_to(n).to_vec())
    }
}

/// One running case: its broker and connections.
struct Run<'a> {
    case: &'a Case,
    dir: tempfile::TempDir,
    broker: Option<Mqtt5d>,
    conns: BTreeMap<usize, Conn>,
}

impl Run<'_> {
    fn start_broker(&self) -> Mqtt5d {
        let config = self.dir.path().join("case.toml");
        if self.case.config.contains("[[listener]]") {
            std::fs::write(&config, self.case.config).expect("write the config");
            Mqtt5d::start_raw(
                self.dir.path(),
                &["--config", &config.display().to_string()],
            )
        } else {
            std::fs::write(&config, self.case.config).expect("write the config");
            Mqtt5d::start(
                self.dir.path(),
                &["--config", &config.display().to_string()],
            )
        }
    }

    fn broker(&mut self) -> &mut Mqtt5d {
        self.broker.as_mut().expect("the broker runs")
    }

    fn conn(&mut self, conn: usize) -> Result<&mut Conn, String> {
        self.conns
            .get_mut(&conn)
            .ok_or_else(|| format!("connection {conn} is not open"))
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Open {
                conn,
                version,
                transport,
            } => {
                let addr = self.broker().addr;
                let c = Conn::open(addr, *version, *transport)?;
                self.conns.insert(*conn, c);
            }
            Step::Send { conn, bytes, what } => self
                .conn(*conn)?
                .write(bytes)
                .map_err(|e| format!("{e} (sending {what})"))?,
            Step::Recv { conn, want } => {
                let c = self.conn(*conn)?;
                match want {
                    Want::Bytes(b) => {
                        let got = c.recv_bytes(b.len())?;
                        if &got != b {
                            return Err(format!("got bytes {}", hex(&got)));
                        }
                    }
                    Want::Packet(p) => match c.recv()? {
                        Some(got) if &got == p => {}
                        Some(got) => return Err(format!("got {got:?}")),
                        None => return Err("the broker closed the connection".to_owned()),
                    },
                    Want::That(_, check) => match c.recv()? {
                        Some(got) => check(&got).map_err(|e| format!("got {got:?}: {e}"))?,
                        None => return Err("the broker closed the connection".to_owned()),
                    },
                }
            }
            Step::Closed { conn } => match self.conn(*conn)?.recv()? {
                None => {
                    self.conns.remove(conn);
                }
                Some(p) => return Err(format!("got {p:?}")),
            },
            Step::Quiet { conn, time } => {
                let time = *time;
                let c = self.conn(*conn)?;
                c.set_timeout(time);
                let result = c.recv();
                c.set_timeout(STEP);
                match result {
                    Err(e) if e == "timeout" => {}
                    Err(e) => return Err(e),
                    Ok(Some(p)) => return Err(format!("got {p:?}")),
                    Ok(None) => return Err("the broker closed the connection".to_owned()),
                }
            }
            Step::Hangup { conn } => {
                if let Some(c) = self.conns.remove(conn) {
                    c.hang_up()?;
                }
            }
            Step::Elapse(t) => std::thread::sleep(*t),
            Step::Restart { down } => {
                self.conns.clear();
                let mut broker = self.broker.take().expect("the broker runs");
                let status = broker.stop();
                if !status.success() {
                    return Err(format!("the broker exited with {status} on SIGTERM"));
                }
                std::thread::sleep(*down);
                self.broker = Some(self.start_broker());
            }
            Step::Metric { name, value } => {
                let addr = self.broker().metrics_addr()?;
                wait_for_metric(addr, name, *value, STEP)?;
            }
            Step::SendText { conn, text } => match &mut self.conn(*conn)?.io {
                Io::Ws(ws) => ws
                    .send(tungstenite::Message::text(text.clone()))
                    .map_err(|e| format!("WebSocket send: {e}"))?,
                Io::Tcp(_) => return Err("a text frame on a TCP connection".to_owned()),
            },
            Step::SendLater { conn, what, make } => {
                let bytes = (make.0)().map_err(|e| format!("{what}: {e}"))?;
                self.conn(*conn)?.write(&bytes)?;
            }
            Step::Subprotocol { conn, want } => {
                let got = self.conn(*conn)?.subprotocol.clone();
                if got.as_deref() != *want {
                    return Err(format!("subprotocol {got:?}"));
                }
            }
            Step::Fin { conn } => self.conn(*conn)?.await_fin()?,
            Step::SendWithFin { conn, bytes, what } => self
                .conn(*conn)?
                .send_with_fin(bytes)
                .map_err(|e| format!("{e} (sending {what})"))?,
            Step::Log(needle) => {
                if self.broker().wait_for_log(needle, STEP).is_none() {
                    return Err(format!("no log line containing {needle:?}"));
                }
            }
        }
        Ok(())
    }
}

/// Runs one case on a fresh broker; `Err` says which step failed and how.
fn run_case(case: &Case) -> Result<(), String> {
    let dir = temp_dir();
    // The case's configuration applies to `user add` too: it derives SCRAM credentials only
    // with `[auth] scram_sha_256 = true`.
    let config = dir.path().join("case.toml");
    std::fs::write(&config, case.config).expect("write the config");
    for (name, password) in case.users {
        crate::harness::add_user_with(dir.path(), Some(&config), name, password);
    }
    let mut run = Run {
        case,
        dir,
        broker: None,
        conns: BTreeMap::new(),
    };
    run.broker = Some(run.start_broker());
    let script = (case.script)(Script::default());
    for (i, step) in script.steps.iter().enumerate() {
        if let Err(e) = run.step(step) {
            let log = run.broker.as_mut().map(|b| {
                while b.wait_for_log("\u{0}", Duration::from_millis(50)).is_some() {}
                b.lines.join("\n")
            });
            return Err(format!(
                "step {i}: {step:?}\n    {e}\n    broker log:\n{}",
                log.unwrap_or_default()
            ));
        }
    }
    run.conns.clear();
    let mut broker = run.broker.take().expect("the broker runs");
    let status = broker.stop();
    if !status.success() {
        return Err(format!("the broker exited with {status} on SIGTERM"));
    }
    if let Some(line) = broker.lines.iter().find(|l| l.contains("panicked")) {
        return Err(format!("the broker panicked: {line}"));
    }
    Ok(())
}

/// How many cases run at once (each has its own broker).
const PARALLEL: usize = 4;

#[test]
fn suite() {
    let filter = std::env::var("MQTT5_CASE").ok();
    let cases: Vec<&Case> = all_cases()
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    assert!(!cases.is_empty(), "no case matches MQTT5_CASE={filter:?}");
    let next = Mutex::new(cases.iter());
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let Some(case) = next.lock().expect("lock").next() else {
                        break;
                    };
                    let t = Instant::now();
                    let result = run_case(case);
                    let ms = t.elapsed().as_millis();
                    match result {
                        Ok(()) => eprintln!("ok   {} ({ms} ms)", case.name),
                        Err(e) => {
                            eprintln!("FAIL {} ({ms} ms)", case.name);
                            failures
                                .lock()
                                .expect("lock")
                                .push(format!("{} {:?}\n  {e}", case.name, case.ids));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    eprintln!(
        "{} cases, {} failed, in {:.1} s",
        cases.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n\n")
    );
}

// ---- The generated table ----------------------------------------------------------------------------

/// Where the generated table lives.
fn table_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/conformance.md")
}

/// Checks the tables' consistency and renders `docs/conformance.md`.
fn render_table() -> String {
    let ids: Vec<&str> = NORMATIVE_IDS.lines().filter(|l| !l.is_empty()).collect();
    let known: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(known.len(), ids.len(), "duplicate ids in normative-ids.txt");

    let mut names = BTreeSet::new();
    let mut tested: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for case in all_cases() {
        assert!(names.insert(case.name), "two cases are named {}", case.name);
        assert!(
            !case.ids.is_empty(),
            "case {} names no statement",
            case.name
        );
        for id in case.ids {
            if let Some(v311) = id.strip_prefix(V311_TAG) {
                assert!(
                    v311.starts_with("MQTT-"),
                    "case {}: bad 3.1.1 tag {id}",
                    case.name
                );
            } else if let Some(section) = id.strip_prefix(SECTION_TAG) {
                assert!(
                    section
                        .split('.')
                        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
                    "case {}: bad section tag {id}",
                    case.name
                );
            } else {
                assert!(known.contains(id), "case {}: unknown id {id}", case.name);
            }
            tested.entry(id).or_default().push(case.name);
        }
    }
    let mut not_applicable: BTreeMap<&str, &str> = BTreeMap::new();
    for na in all_not_applicable() {
        assert!(known.contains(na.id), "n/a row: unknown id {}", na.id);
        assert!(
            !tested.contains_key(na.id),
            "{} is both tested and n/a",
            na.id
        );
        assert!(
            not_applicable.insert(na.id, na.reason).is_none(),
            "{} is n/a twice",
            na.id
        );
    }

    let n_tested = ids.iter().filter(|id| tested.contains_key(*id)).count();
    let n_na = not_applicable.len();
    let n_not_yet = ids.len() - n_tested - n_na;
    let mut out = String::new();
    let _ = writeln!(out, "# MQTT 5.0 conformance\n");
    let _ = writeln!(
        out,
        "Generated from the conformance suite (`bins/mqtt5d/tests/it/conformance/`); do not \
         edit by hand. Regenerate with\n\n```text\nMQTT5_BLESS=1 cargo test -p mqtt5d --test it \
         conformance::table_is_current\n```\n"
    );
    let _ = writeln!(
        out,
        "Every case runs against the real `mqtt5d` binary on a loopback port: it sends raw \
         packets and checks the exact answer (packet, bytes, reason code, close or silence).\n"
    );
    let _ = writeln!(
        out,
        "Of the {} normative statements of MQTT 5.0: **{n_tested} tested**, **{n_na} n/a**, \
         **{n_not_yet} not yet**.\n",
        ids.len()
    );
    let _ = writeln!(out, "| statement | status | cases, or why not applicable |");
    let _ = writeln!(out, "|---|---|---|");
    for id in &ids {
        if let Some(cases) = tested.get(id) {
            let list: Vec<String> = cases.iter().map(|c| format!("`{c}`")).collect();
            let _ = writeln!(out, "| {id} | tested | {} |", list.join(", "));
        } else if let Some(reason) = not_applicable.get(id) {
            let _ = writeln!(out, "| {id} | n/a | {reason} |");
        } else {
            let _ = writeln!(out, "| {id} | not yet | |");
        }
    }
    let _ = writeln!(out, "\n## Rules without a normative statement\n");
    let _ = writeln!(
        out,
        "What a section of MQTT 5.0 says without a normative statement of its own (a SHOULD \
         NOT, or a MAY the broker takes up), by section.\n"
    );
    let _ = writeln!(out, "| section | cases |");
    let _ = writeln!(out, "|---|---|");
    for (id, cases) in tested.iter().filter(|(id, _)| id.starts_with(SECTION_TAG)) {
        let list: Vec<String> = cases.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(out, "| {id} | {} |", list.join(", "));
    }
    let v311: Vec<(&&str, &Vec<&str>)> = tested
        .iter()
        .filter(|(id, _)| id.starts_with(V311_TAG))
        .collect();
    let _ = writeln!(out, "\n## MQTT 3.1.1: the behaviours that differ\n");
    let _ = writeln!(
        out,
        "Statements of MQTT 3.1.1 (OASIS Standard, 29 October 2014) where a 3.1.1 client must \
         see something other than a 5.0 client: CONNACK return codes, Clean Session, and \
         fields that only exist in 5.0.\n"
    );
    let _ = writeln!(out, "| 3.1.1 statement | cases |");
    let _ = writeln!(out, "|---|---|");
    for (id, cases) in v311 {
        let list: Vec<String> = cases.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            out,
            "| {} | {} |",
            id.trim_start_matches(V311_TAG),
            list.join(", ")
        );
    }
    out
}

#[test]
fn table_is_current() {
    let rendered = render_table();
    let path = table_path();
    if std::env::var_os("MQTT5_BLESS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/conformance.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/conformance.md is stale: regenerate it with\n  MQTT5_BLESS=1 cargo test -p mqtt5d \
         --test it conformance::table_is_current"
    );
}

// ---- Hex ------------------------------------------------------------------------------------

/// Bytes from hex digits, whitespace ignored.
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ASCII");
            u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text:?} in {s:?}"))
        })
        .collect()
}

/// Hex digits of `bytes`, space separated.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}
