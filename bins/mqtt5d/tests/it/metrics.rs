//! The metrics endpoint under slow and idle HTTP clients: a client that dribbles its request or
//! sits idle holds up no scrape, a request head that never ends is closed, connections past the
//! endpoint's limit are closed at once, and the routes answer with the right status.
//!
//! The HTTP clients are bare `std` sockets, so that a test sends exactly the bytes it means
//! to, as slowly as it means to. Every blocking read has a generous liveness bound
//! ([`LIVENESS`]); no test asserts how fast anything happens.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::harness::*;

/// The longest any one blocking read may take before the test gives up.
const LIVENESS: Duration = Duration::from_secs(30);

/// The pause between two bytes of a dribbling client.
const DRIBBLE_PAUSE: Duration = Duration::from_millis(300);

/// How many connections the endpoint serves at once (`MAX_CONNECTIONS` in the binary).
const ENDPOINT_CONNECTION_LIMIT: usize = 64;

/// Starts a broker with the metrics endpoint on a loopback port the OS picks; returns it and
/// the endpoint's address (from its "listening" log line).
fn start_with_metrics(dir: &tempfile::TempDir) -> (Mqtt5d, SocketAddr) {
    let config = dir.path().join("metrics.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"127.0.0.1:0\"\n").expect("write");
    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config.display().to_string()]);
    let line = broker
        .wait_for_log("metrics endpoint listening", Duration::from_secs(10))
        .expect("the metrics endpoint started");
    let addr = json_field(&line, "addr")
        .expect("addr")
        .parse()
        .expect("addr");
    (broker, addr)
}

/// Sends `request` on a new connection and reads the whole response (the endpoint closes the
/// connection after it).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LIVENESS)).expect("timeout");
    stream.write_all(request).expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("a whole response within the liveness bound");
    response
}

/// Scrapes until the event loop has rendered the text once (it renders at most twice a
/// second, and the endpoint may answer before the first rendering); returns the response.
fn first_rendering(addr: SocketAddr) -> String {
    let mut response = String::new();
    for _ in 0..100 {
        response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        if response.contains("# TYPE mqtt5_connections gauge") {
            return response;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("the metrics text was never rendered:\n{response}");
}

/// Whether the peer still holds `stream` open with nothing sent to it: no bytes and no EOF
/// are waiting to be read, and the connection was not reset.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let open = matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("blocking");
    open
}

/// Reads `stream` until the peer ends it (EOF or reset), within the liveness bound; panics
/// when the bound passes with the connection still open.
fn wait_closed(mut stream: &TcpStream, what: &str) {
    stream.set_read_timeout(Some(LIVENESS)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return;
            }
            Err(e) => panic!("{what}: still open after {LIVENESS:?} ({e})"),
        }
    }
}

/// Writes `bytes` to `stream` one at a time, [`DRIBBLE_PAUSE`] apart, in a thread of its own,
/// until they are all sent, a write fails (the server closed the connection) or `stop` is
/// set. The channel gets a message once the first byte is out. Returns how many bytes went.
fn dribble(
    mut stream: TcpStream,
    bytes: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> (thread::JoinHandle<usize>, mpsc::Receiver<()>) {
    let (started, first_byte) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut sent = 0;
        for byte in bytes {
            if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).is_err() {
                break;
            }
            sent += 1;
            if sent == 1 {
                let _ = started.send(());
            }
            thread::sleep(DRIBBLE_PAUSE);
        }
        sent
    });
    (handle, first_byte)
}

#[test]
fn scrape_succeeds_while_one_client_dribbles_its_request_and_others_sit_idle() {
    let dir = temp_dir();
    let (mut broker, addr) = start_with_metrics(&dir);
    first_rendering(addr);

    // One client sends a well-formed request a byte at a time: its head would take over ten
    // seconds to arrive.
    let dribbler = TcpStream::connect(addr).expect("connect");
    let probe = dribbler.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let request = b"GET /metrics HTTP/1.1\r\nHost: dribbler.invalid\r\n\r\n".to_vec();
    let (dribbling, first_byte) = dribble(dribbler, request, Arc::clone(&stop));
    first_byte
        .recv_timeout(LIVENESS)
        .expect("the dribbler sent its first byte");
    // Several more connect and send nothing at all.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("# TYPE mqtt5_connections gauge"),
        "{response}"
    );
    // The scrape ran alongside them: none of them had been answered or closed.
    assert!(
        still_open(&probe),
        "the dribbling client was still connected when the scrape completed"
    );
    for (i, stream) in idle.iter().enumerate() {
        assert!(
            still_open(stream),
            "idle client {i} was still connected when the scrape completed"
        );
    }

    stop.store(true, Ordering::Relaxed);
    dribbling.join().expect("dribbler thread");
    drop(idle);
    assert!(broker.stop().success());
}

#[test]
fn request_head_that_never_ends_is_closed_by_the_server() {
    let dir = temp_dir();
    let (mut broker, addr) = start_with_metrics(&dir);

    // A head cut short, then silence.
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("partial head");
    // A head that keeps growing a byte at a time and never ends: each read brings something,
    // so only a deadline on the whole head ends it.
    let trickler = TcpStream::connect(addr).expect("connect");
    let probe = trickler.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 200));
    let (trickling, first_byte) = dribble(trickler, head, Arc::clone(&stop));
    first_byte
        .recv_timeout(LIVENESS)
        .expect("the trickler sent its first byte");

    wait_closed(&silent, "the connection with a partial head");
    wait_closed(&probe, "the connection with an endless head");

    stop.store(true, Ordering::Relaxed);
    let sent = trickling.join().expect("trickler thread");
    assert!(sent > 0);
    // The endpoint still serves.
    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(broker.stop().success());
}

#[test]
fn connections_past_the_limit_are_closed_at_once_and_logged_once() {
    let dir = temp_dir();
    let (mut broker, addr) = start_with_metrics(&dir);

    // Fill every slot with a connection that sends nothing.
    let held: Vec<TcpStream> = (0..ENDPOINT_CONNECTION_LIMIT)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // Each one past the limit is closed without an answer, while the others are still held.
    let extra = 8;
    for i in 0..extra {
        let stream = TcpStream::connect(addr).expect("connect");
        wait_closed(&stream, &format!("connection {i} past the limit"));
    }
    for (i, stream) in held.iter().enumerate() {
        assert!(still_open(stream), "held connection {i} was closed");
    }
    drop(held);

    assert!(broker.stop().success());
    let reports = broker
        .lines
        .iter()
        .filter(|l| l.contains("metrics endpoint at its connection limit"))
        .count();
    assert!(
        (1..extra).contains(&reports),
        "{reports} reports for {extra} refused connections:\n{}",
        broker.lines.join("\n")
    );
}

#[test]
fn routes_answer_head_404_and_405() {
    let dir = temp_dir();
    let (mut broker, addr) = start_with_metrics(&dir);
    first_rendering(addr);

    let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD response has no body: {head}"
    );

    let missing = exchange(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 Not Found"), "{missing}");

    let post = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed"),
        "{post}"
    );
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
    assert!(broker.stop().success());
}
