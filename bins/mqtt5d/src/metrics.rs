//! The Prometheus text endpoint (`GET /metrics` on the optional `[metrics]` listener).
//!
//! One thread serves it, with blocking I/O, one short request at a time: it is for a scraper,
//! not for clients. The event loop renders the text (at most twice a second) into a shared
//! string; the thread only copies it out, so a slow scraper never touches the broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

/// The latest rendering, shared with the serving thread.
pub(crate) type Shared = Arc<Mutex<String>>;

/// Starts the endpoint on `addr`; returns the address it bound.
///
/// # Errors
/// When the address cannot be bound.
pub(crate) fn spawn(addr: SocketAddr, text: Shared) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    info!(addr = %bound, "metrics endpoint listening (GET /metrics)");
    std::thread::Builder::new()
        .name("mqtt5-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => serve(stream, &text),
                    Err(e) => warn!(error = %e, "metrics accept failed"),
                }
            }
        })?;
    Ok(bound)
}

fn serve(mut stream: std::net::TcpStream, text: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    // The request line is all that matters; read until the end of the headers (bounded).
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while request.len() < 8192 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = if line.starts_with(b"GET /metrics ") {
        let body = text.lock().map(|t| t.clone()).unwrap_or_default();
        ("200 OK", "text/plain; version=0.0.4", body)
    } else {
        (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// Renders the metrics in the Prometheus text format.
pub(crate) fn render(m: &Snapshot) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "mqtt5_connections",
        "gauge",
        "Open network connections.",
        m.connections.to_string(),
    );
    metric(
        "mqtt5_clients_connected",
        "gauge",
        "Connections that completed CONNECT.",
        m.clients.to_string(),
    );
    metric(
        "mqtt5_sessions",
        "gauge",
        "Sessions, connected or not.",
        m.sessions.to_string(),
    );
    metric(
        "mqtt5_subscriptions",
        "gauge",
        "Subscriptions.",
        m.subscriptions.to_string(),
    );
    metric(
        "mqtt5_retained_messages",
        "gauge",
        "Retained messages.",
        m.retained.to_string(),
    );
    metric(
        "mqtt5_queued_messages",
        "gauge",
        "Messages waiting in session queues.",
        m.queued.to_string(),
    );
    metric(
        "mqtt5_inflight_messages",
        "gauge",
        "QoS 1 and 2 messages in flight to clients.",
        m.inflight.to_string(),
    );
    metric(
        "mqtt5_queued_bytes",
        "gauge",
        "Bytes of queued and in-flight messages, each message once (limit: [broker] max_queued_bytes_total).",
        m.queued_bytes.to_string(),
    );
    metric(
        "mqtt5_queue_memory_full",
        "gauge",
        "1 while queued messages hold [broker] max_queued_bytes_total: new persistent work is refused.",
        u8::from(m.queue_memory_full).to_string(),
    );
    metric(
        "mqtt5_retained_bytes",
        "gauge",
        "Bytes of retained messages (limit: [broker] max_retained_bytes).",
        m.retained_bytes.to_string(),
    );
    let s = &m.stats;
    metric(
        "mqtt5_connects_total",
        "counter",
        "Completed CONNECTs.",
        s.connects.to_string(),
    );
    metric(
        "mqtt5_messages_received_total",
        "counter",
        "PUBLISH packets received (wills included).",
        s.messages_received.to_string(),
    );
    metric(
        "mqtt5_messages_sent_total",
        "counter",
        "PUBLISH packets sent.",
        s.messages_sent.to_string(),
    );
    metric(
        "mqtt5_messages_dropped_total",
        "counter",
        "Messages dropped: queue full, too large for the client.",
        s.messages_dropped.to_string(),
    );
    metric(
        "mqtt5_messages_expired_total",
        "counter",
        "Messages that expired before delivery.",
        s.messages_expired.to_string(),
    );
    metric(
        "mqtt5_bytes_received_total",
        "counter",
        "Bytes read from clients.",
        s.bytes_received.to_string(),
    );
    metric(
        "mqtt5_bytes_sent_total",
        "counter",
        "Bytes written to clients.",
        s.bytes_sent.to_string(),
    );
    metric(
        "mqtt5_auth_failures_total",
        "counter",
        "Refused authentications.",
        s.auth_failures.to_string(),
    );
    metric(
        "mqtt5_ownership_refusals_total",
        "counter",
        "CONNECTs refused because the session of their client identifier belongs to another identity.",
        s.ownership_refusals.to_string(),
    );
    metric(
        "mqtt5_messages_denied_total",
        "counter",
        "Deliveries the access rules refused at delivery time (retained, resumed, queued, shared).",
        s.denied_deliveries.to_string(),
    );
    metric(
        "mqtt5_queue_memory_drops_total",
        "counter",
        "Messages dropped because the queues held [broker] max_queued_bytes_total.",
        s.queue_memory_drops.to_string(),
    );
    metric(
        "mqtt5_retained_refused_total",
        "counter",
        "Retained messages not kept: the retained store was at its limits.",
        s.retained_refused.to_string(),
    );
    metric(
        "mqtt5_protocol_errors_total",
        "counter",
        "Connections ended for a protocol violation.",
        s.protocol_errors.to_string(),
    );
    metric(
        "mqtt5_store_commits_total",
        "counter",
        "Store transactions committed.",
        m.store_commits.to_string(),
    );
    metric(
        "mqtt5_store_failures_total",
        "counter",
        "Store batches that failed.",
        m.store_failures.to_string(),
    );
    metric(
        "mqtt5_store_commit_seconds_mean",
        "gauge",
        "Mean store commit time.",
        format!("{:.6}", m.commit_mean.as_secs_f64()),
    );
    metric(
        "mqtt5_store_commit_seconds_max",
        "gauge",
        "Longest store commit time.",
        format!("{:.6}", m.commit_max.as_secs_f64()),
    );
    metric(
        "mqtt5_store_full",
        "gauge",
        "1 while the store refuses writes (disk full).",
        u8::from(m.storage_full).to_string(),
    );
    out
}

/// What the event loop knows, for one rendering.
pub(crate) struct Snapshot {
    pub(crate) connections: usize,
    pub(crate) clients: usize,
    pub(crate) sessions: usize,
    pub(crate) subscriptions: usize,
    pub(crate) retained: usize,
    pub(crate) queued: usize,
    pub(crate) inflight: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) queue_memory_full: bool,
    pub(crate) retained_bytes: usize,
    pub(crate) stats: mqtt5_broker::Stats,
    pub(crate) store_commits: u64,
    pub(crate) store_failures: u64,
    pub(crate) commit_mean: Duration,
    pub(crate) commit_max: Duration,
    pub(crate) storage_full: bool,
}
