//! The Prometheus text endpoint (`GET /metrics` on the optional `[metrics]` listener).
//!
//! The event loop renders the text (at most twice a second) into a shared string; the
//! endpoint only copies it out, so nothing here ever waits on the broker or makes it wait.
//!
//! HTTP is hyper's (HTTP/1.1), on a tokio current-thread runtime that lives on one dedicated
//! thread, `mqtt5-http`: tokio goes no further than that thread, and the event loop stays on
//! mio. Every connection is a task of its own, so a slow or idle client holds up nobody else:
//!
//! - the request head must arrive whole within [`HEADER_READ_TIMEOUT`], however it trickles in;
//! - a connection carries one request and lives at most [`CONNECTION_DEADLINE`], answer
//!   included;
//! - at most [`MAX_CONNECTIONS`] are served at once: one accepted past that is closed at once,
//!   and those closes are logged at most once per [`REFUSAL_LOG_INTERVAL`].
//!
//! Nothing queues beyond the kernel's listen backlog: a connection either gets a slot when it
//! is accepted or is closed. Routes: `GET` and `HEAD` `/metrics` answer 200 with the text,
//! another method there 405, any other path 404.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// The latest rendering, shared with the serving thread.
pub(crate) type Shared = Arc<Mutex<String>>;

/// How long a client has to send its whole request head (request line and headers), counted
/// from the moment the connection is served. A scraper sends it in one write.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a connection may live, request and answer included. Past it the socket is
/// closed, whatever state the exchange is in.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(20);

/// How many connections are served at once.
const MAX_CONNECTIONS: usize = 64;

/// The shortest time between two log lines about connections closed at the limit, and about
/// failed accepts.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The most a connection buffers (hyper's minimum is 8 KiB): a request head larger than this
/// gets 431.
const MAX_BUFFER: usize = 16 * 1024;

/// Starts the endpoint on `addr`; returns the address it bound.
///
/// The socket and the runtime are set up here, so that a failure stops the broker at start-up;
/// the thread then serves until the process ends.
///
/// # Errors
/// When the address cannot be bound, or the runtime or its thread cannot be started.
pub(crate) fn spawn(addr: SocketAddr, text: Shared) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let listener = {
        let _context = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    std::thread::Builder::new()
        .name("mqtt5-http".into())
        .spawn(move || runtime.block_on(serve(listener, text)))?;
    info!(addr = %bound, "metrics endpoint listening (GET /metrics)");
    Ok(bound)
}

/// Accepts connections for ever, each served by a task of its own while a slot is free.
async fn serve(listener: tokio::net::TcpListener, text: Shared) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_BUFFER);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refusals = Throttle::default();
    let mut accept_failures = Throttle::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(count) = accept_failures.note(Instant::now()) {
                    warn!(error = %e, count, "metrics accept failed");
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            if let Some(count) = refusals.note(Instant::now()) {
                warn!(
                    limit = MAX_CONNECTIONS,
                    closed = count,
                    "metrics endpoint at its connection limit: closing new connections"
                );
            }
            continue;
        };
        let text = Arc::clone(&text);
        let service = service_fn(move |request| {
            std::future::ready(Ok::<_, Infallible>(respond(&request, &text)))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection ended"),
                Err(_) => debug!(%peer, "metrics connection closed at its deadline"),
            }
            drop(slot);
        });
    }
}

/// The answer to one request.
fn respond(request: &Request<Incoming>, text: &Shared) -> Response<String> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics\n".to_owned(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: GET or HEAD\n".to_owned(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // The event loop only ever swaps in a whole rendering: a poisoned lock still holds one.
    let body = text.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// A plain-text answer with `status`.
fn plain(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Counts events and lets them be logged at most once per [`REFUSAL_LOG_INTERVAL`].
#[derive(Default)]
struct Throttle {
    /// When the last log line was allowed.
    last: Option<Instant>,
    /// Events since then, this one included.
    count: u64,
}

impl Throttle {
    /// Counts one event at `now`; returns how many to report when a log line is due now.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
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
        "mqtt5_persistent_sessions",
        "gauge",
        "Persistent sessions, connected or not (limit: [broker] max_persistent_sessions).",
        m.persistent_sessions.to_string(),
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
        "mqtt5_session_limit_refusals_total",
        "counter",
        "CONNECTs refused because a new persistent session would pass [broker] max_persistent_sessions.",
        s.session_limit_refusals.to_string(),
    );
    metric(
        "mqtt5_connection_pauses_total",
        "counter",
        "Times a connection was no longer read because its next packet would add to the work of a store that is behind.",
        s.input_pauses.to_string(),
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
    metric(
        "mqtt5_store_behind",
        "gauge",
        "1 while the store is behind: from [storage] backlog_high_ops uncommitted ops until backlog_low_ops.",
        u8::from(m.store_behind).to_string(),
    );
    metric(
        "mqtt5_store_backlog_full",
        "gauge",
        "1 while new connections wait to be accepted: four times [storage] backlog_high_ops uncommitted ops.",
        u8::from(m.backlog_full).to_string(),
    );
    metric(
        "mqtt5_store_backlog_ops",
        "gauge",
        "Store ops submitted and not yet committed.",
        m.backlog_ops.to_string(),
    );
    metric(
        "mqtt5_store_backlog_batches",
        "gauge",
        "Store batches submitted and not yet committed.",
        m.backlog_batches.to_string(),
    );
    metric(
        "mqtt5_paused_connections",
        "gauge",
        "Connections not read until the store catches up: their next packet would add to its work.",
        m.paused.to_string(),
    );
    out
}

/// What the event loop knows, for one rendering.
pub(crate) struct Snapshot {
    pub(crate) connections: usize,
    pub(crate) clients: usize,
    pub(crate) sessions: usize,
    pub(crate) persistent_sessions: usize,
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
    pub(crate) store_behind: bool,
    pub(crate) backlog_full: bool,
    pub(crate) backlog_ops: usize,
    pub(crate) backlog_batches: usize,
    pub(crate) paused: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reports_the_first_event_then_at_most_once_per_interval() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.note(t0), Some(1));
        assert_eq!(throttle.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.note(t0 + Duration::from_secs(2)), None);
        // The next line counts every event since the last one.
        assert_eq!(throttle.note(t0 + REFUSAL_LOG_INTERVAL), Some(3));
        assert_eq!(throttle.note(t0 + REFUSAL_LOG_INTERVAL), None);
    }
}
