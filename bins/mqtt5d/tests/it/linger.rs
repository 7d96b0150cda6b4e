//! How the broker closes a connection it ends with DISCONNECT, against clients that do not
//! read while they send: the DISCONNECT still reaches them (over TCP and TLS, and at
//! SIGTERM), and what the broker reads and drops meanwhile is bounded in bytes and in time.
//!
//! Each client waits for the broker's FIN before it reads anything (`poll` for `POLLRDHUP`,
//! which the FIN raises whatever unread data comes before it), so that everything it sends
//! afterwards reaches a broker that has already decided to close: the case where a broker
//! that closes at once resets the connection, and the client's next write fails.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt5_codec::{
    Connect, Decoder, Delivery, DisconnectReason, MqttString, Packet, PacketId, PingReq,
    ProtocolVersion, PubRel, Publish, TopicName,
};

use crate::harness::*;

/// The longest any one wait may take: a liveness bound.
const STEP: Duration = Duration::from_secs(10);

/// A transport a client reads and writes: a TCP socket, or a TLS session over one.
trait Transport: Read + Write + Send {}

impl<T: Read + Write + Send> Transport for T {}

/// A bare MQTT 5 client that decides when it reads.
struct Client {
    io: Box<dyn Transport>,
    /// The TCP socket under `io`, to wait for the broker's FIN on.
    socket: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Client {
    /// A TCP connection to `addr`, nothing sent yet.
    fn tcp(addr: SocketAddr) -> Self {
        let socket = TcpStream::connect(addr).expect("TCP connect");
        socket.set_read_timeout(Some(STEP)).expect("read timeout");
        socket.set_nodelay(true).expect("nodelay");
        let io = Box::new(socket.try_clone().expect("a second handle"));
        Self::over(io, socket)
    }

    /// A TLS connection to `addr`, trusting the CA certificate in `ca` (PEM).
    fn tls(addr: SocketAddr, ca: &std::path::Path) -> Self {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).expect("the CA file") {
            roots.add(cert.expect("a CA certificate")).expect("a root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let session =
            rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client session");
        let socket = TcpStream::connect(addr).expect("TCP connect");
        socket.set_read_timeout(Some(STEP)).expect("read timeout");
        socket.set_nodelay(true).expect("nodelay");
        let stream = rustls::StreamOwned::new(session, socket.try_clone().expect("a handle"));
        Self::over(Box::new(stream), socket)
    }

    fn over(io: Box<dyn Transport>, socket: TcpStream) -> Self {
        Self {
            io,
            socket,
            buf: BytesMut::new(),
            decoder: Decoder::new(ProtocolVersion::V5),
        }
    }

    /// Connects as `client_id` (Clean Start) and reads the successful CONNACK.
    fn connect(mut self, client_id: &str) -> Self {
        let connect = Connect {
            clean_start: true,
            client_id: MqttString::try_from(client_id).expect("a client id"),
            keep_alive: 60,
            ..Connect::default()
        };
        self.send(&Packet::from(connect))
            .expect("the CONNECT is sent");
        match self.recv() {
            Some(Packet::ConnAck(a)) => assert_eq!(a.reason.as_u8(), 0, "CONNACK {a:?}"),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
        self
    }

    /// A PINGREQ answered by a PINGRESP.
    fn ping(&mut self) {
        self.send(&Packet::PingReq(PingReq)).expect("PINGREQ sent");
        match self.recv() {
            Some(Packet::PingResp(_)) => {}
            other => panic!("expected a PINGRESP, got {other:?}"),
        }
    }

    /// Writes `bytes`; the error of a write the broker no longer takes.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes)?;
        self.io.flush()
    }

    /// Sends one packet.
    fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut out);
        self.write(&out)
    }

    /// Waits for the broker's FIN without reading anything.
    fn await_fin(&self) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec::try_from(STEP).expect("a timeout");
        let mut fds = [PollFd::new(&self.socket, PollFlags::RDHUP)];
        let ready = poll(&mut fds, Some(&timeout)).expect("poll");
        assert_eq!(ready, 1, "no FIN from the broker within {STEP:?}");
    }

    /// The next packet, or `None` once the broker has closed the connection (TCP FIN, or
    /// TLS close_notify).
    fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .expect("the broker sends well-formed packets")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.io.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "the broker closed mid-packet");
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("nothing from the broker within {STEP:?}")
                }
                Err(e) => panic!("read from the broker: {e}"),
            }
        }
    }

    /// The next packet must be DISCONNECT `reason`, and then the connection must end.
    fn expect_disconnect(&mut self, reason: DisconnectReason) {
        match self.recv() {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
            other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
        }
        let next = self.recv();
        assert!(
            next.is_none(),
            "expected the end of the connection, got {next:?}"
        );
    }

    /// Writes `chunk` again and again (at most `times`, each after `pause`) until a write
    /// fails; true if one did.
    fn write_until_refused(&mut self, chunk: &[u8], times: usize, pause: Duration) -> bool {
        for _ in 0..times {
            if self.write(chunk).is_err() {
                return true;
            }
            std::thread::sleep(pause);
        }
        false
    }
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// `n` QoS 2 PUBLISH packets (ids 1..=n), encoded back to back.
fn qos2_burst(n: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 1..=n {
        let mut p = Publish::new(TopicName::try_from("linger/q2").expect("a topic"), "x");
        p.delivery = Delivery::ExactlyOnce(id(i));
        Packet::from(p).encode(ProtocolVersion::V5, &mut out);
    }
    out.to_vec()
}

/// The client sends Receive Maximum (16) + 1 QoS 2 PUBLISH packets without reading, waits
/// until the broker has closed its side, then reads: a PUBREL for each PUBREC, each of which
/// must be written, and at last DISCONNECT 0x93 and the end of the connection. `other`, a
/// connected client, makes a PINGREQ round trip after the FIN: the broker's event loop has
/// then moved past the round in which it shut the connection down.
fn past_receive_maximum_then_pubrels(mut client: Client, mut other: Client) {
    client
        .write(&qos2_burst(17))
        .expect("the PUBLISH packets are sent");
    client.await_fin();
    other.ping();
    let mut pubrecs = Vec::new();
    loop {
        match client.recv() {
            Some(Packet::PubRec(rec)) => {
                let n = rec.packet_id.get();
                pubrecs.push(n);
                if let Err(e) = client.send(&Packet::from(PubRel::new(rec.packet_id))) {
                    panic!("PUBREL {n} could not be sent after the broker's FIN: {e}");
                }
            }
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, DisconnectReason::ReceiveMaximumExceeded);
                break;
            }
            other => panic!("expected PUBREC or DISCONNECT, got {other:?}"),
        }
        assert!(pubrecs.len() <= 16, "more PUBRECs than Receive Maximum");
    }
    assert_eq!(pubrecs, (1..=16).collect::<Vec<u16>>());
    let next = client.recv();
    assert!(
        next.is_none(),
        "expected the end of the connection, got {next:?}"
    );
}

/// Starts the broker with `config`, with the metrics endpoint.
fn start(dir: &std::path::Path, config: &str) -> Mqtt5d {
    let path = dir.join("linger.toml");
    let text = format!("{config}\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&path, text).expect("write the config");
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    if config.contains("[[listener]]") {
        Mqtt5d::start_raw(dir, &["--config", &path])
    } else {
        Mqtt5d::start(dir, &["--config", &path])
    }
}

/// Every connection is closed (the lingering ones too), and the broker stops cleanly.
fn all_closed_then_stop(mut broker: Mqtt5d) {
    let metrics = broker.metrics_addr().expect("the metrics endpoint");
    wait_for_metric(metrics, "mqtt5_connections", 0, STEP).expect("no connection left");
    let status = broker.stop();
    assert!(status.success(), "mqtt5d exited with {status}");
}

#[test]
fn qos2_publisher_that_does_not_read_gets_0x93_while_it_keeps_sending() {
    let dir = temp_dir();
    let broker = start(dir.path(), "[broker]\nreceive_maximum = 16\n");
    let other = Client::tcp(broker.addr).connect("linger-tcp-other");
    past_receive_maximum_then_pubrels(Client::tcp(broker.addr).connect("linger-tcp"), other);
    all_closed_then_stop(broker);
}

#[test]
fn qos2_publisher_over_tls_that_does_not_read_gets_0x93_while_it_keeps_sending() {
    let dir = temp_dir();
    crate::tls::make_certificates(dir.path());
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n\
         allow_anonymous = true\n[broker]\nreceive_maximum = 16\n",
        dir.path().join("server.crt"),
        dir.path().join("server.key")
    );
    let broker = start(dir.path(), &config);
    let ca = dir.path().join("ca.crt");
    let other = Client::tls(broker.addr, &ca).connect("linger-tls-other");
    let client = Client::tls(broker.addr, &ca).connect("linger-tls");
    past_receive_maximum_then_pubrels(client, other);
    all_closed_then_stop(broker);
}

#[test]
fn lingering_stops_at_its_byte_limit_for_a_client_that_floods() {
    let dir = temp_dir();
    let broker = start(dir.path(), "");
    let mut client = Client::tcp(broker.addr).connect("linger-flood");
    // A second CONNECT: a protocol error.
    let again = Connect {
        client_id: MqttString::try_from("linger-flood").expect("an id"),
        ..Connect::default()
    };
    client.send(&Packet::from(again)).expect("sent");
    client.await_fin();
    client.expect_disconnect(DisconnectReason::ProtocolError);
    // The broker drops what comes after, but not without end: 64 MiB is far past its limit
    // and the socket buffers, so some write fails before they are all sent.
    let chunk = vec![0u8; 64 * 1024];
    assert!(
        client.write_until_refused(&chunk, 1024, Duration::ZERO),
        "the broker took 64 MiB after its DISCONNECT"
    );
    all_closed_then_stop(broker);
}

#[test]
fn lingering_stops_at_its_deadline_for_a_client_that_trickles() {
    let dir = temp_dir();
    let broker = start(dir.path(), "");
    let mut client = Client::tcp(broker.addr).connect("linger-trickle");
    let again = Connect {
        client_id: MqttString::try_from("linger-trickle").expect("an id"),
        ..Connect::default()
    };
    client.send(&Packet::from(again)).expect("sent");
    client.await_fin();
    client.expect_disconnect(DisconnectReason::ProtocolError);
    // A byte every 20 ms (a pace, not a wait for the broker): far below the byte limit, so
    // only the deadline ends it, and a write then fails.
    let started = Instant::now();
    assert!(
        client.write_until_refused(&[0], 500, Duration::from_millis(20)),
        "the broker still took bytes {:?} after its DISCONNECT",
        started.elapsed()
    );
    all_closed_then_stop(broker);
}

#[test]
fn sigterm_reaches_clients_still_sending_with_0x8b_and_exits_0() {
    let dir = temp_dir();
    let mut broker = start(dir.path(), "");
    let mut clients = [
        Client::tcp(broker.addr).connect("linger-sigterm-a"),
        Client::tcp(broker.addr).connect("linger-sigterm-b"),
    ];
    let stopper = std::thread::spawn(move || broker.stop());
    // Once both FINs are in, the broker has finished with the connection it shut down first:
    // one that closes its sockets at once has closed it, and a write to it then fails.
    for c in &clients {
        c.await_fin();
    }
    for c in &mut clients {
        for _ in 0..3 {
            c.send(&Packet::PingReq(PingReq))
                .expect("a PINGREQ after the broker's FIN is sent");
        }
    }
    for mut c in clients {
        c.expect_disconnect(DisconnectReason::ServerShuttingDown);
    }
    let status = stopper.join().expect("the stopping thread");
    assert!(status.success(), "mqtt5d exited with {status}");
}
