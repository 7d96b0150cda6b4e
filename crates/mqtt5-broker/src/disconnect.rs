//! How connections and sessions end: DISCONNECT from the client, a lost connection, a
//! protocol violation, a timeout, a takeover, a slow consumer; then the will and the
//! session's expiry.
//!
//! ```text
//!  connection ends --+-- Normal (DISCONNECT 0x00) ---------- will discarded
//!                    +-- Abnormal (anything else) ---------- will due after its delay
//!                    +-- Shutdown (the broker stops) ------- session and will kept as they are
//!  then, unless Shutdown: shared deliveries handed over, expiry starts (0: the session ends)
//! ```

use std::time::{Duration, Instant};

use mqtt5_codec::{Disconnect, DisconnectReason, MqttString, Packet};
use mqtt5_store::StoreOp;

use crate::deliver::hand_over_shared;
use crate::durable::{forget_delivery, save_session};
use crate::outbox::fit_packet;
use crate::publish::publish_will;
use crate::session::SessionId;
use crate::state::Core;
use crate::timers::Timer;
use crate::types::{ConnId, Notice};
use crate::violation::Violation;

/// How a connection ends, as far as its session and will are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// DISCONNECT 0x00 (or 3.1.1 DISCONNECT): the will is discarded (`[MQTT-3.1.2-10]`).
    Normal,
    /// Any other end: the will is published (`[MQTT-3.1.2-8]`), after its delay.
    Abnormal,
    /// The broker is stopping: the session and its will stay as they are, to be restored
    /// (the will falls due at the next start, as for a client that lost its connection).
    Shutdown,
}

/// DISCONNECT from the client.
///
/// # Errors
/// [`Violation::SessionExpiryAfterZero`] for a Session Expiry Interval set after 0.
pub(crate) fn on_disconnect(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    d: &Disconnect,
) -> Result<(), Violation> {
    let Some(sid) = core.conns.session_of(conn) else {
        return Ok(());
    };
    if let Some(requested) = d.properties.session_expiry_interval {
        let cap = core.config.max_session_expiry;
        let Some(s) = core.sessions.get(sid) else {
            return Ok(());
        };
        if s.expiry_interval == 0 && requested != 0 {
            // [MQTT-3.14.2-2]: 0 at CONNECT cannot become non-zero at DISCONNECT.
            return Err(Violation::SessionExpiryAfterZero);
        }
        // Lowered to 0, the session ends with this connection (and leaves the store).
        core.sessions.set_expiry(sid, requested.min(cap));
    }
    let (ending, why) = match d.reason {
        DisconnectReason::NormalDisconnection => (Ending::Normal, "client disconnected".to_owned()),
        DisconnectReason::DisconnectWithWillMessage => (
            Ending::Abnormal,
            "client disconnected with will (0x04)".to_owned(),
        ),
        other => (
            Ending::Normal,
            format!("client disconnected with 0x{:02X}", other.as_u8()),
        ),
    };
    end_connection(core, now, conn, ending, None, &why);
    Ok(())
}

/// A violation by a client: a connected one gets DISCONNECT with the violation's reason
/// (MQTT 5 only, `[MQTT-4.13.2-1]`) and its will is published; one that is not connected yet
/// is closed (`[MQTT-4.13.1-1]`).
pub(crate) fn violation(core: &mut Core, now: Instant, conn: ConnId, v: &Violation) {
    let connected = core.conns.get(conn).is_some_and(|c| c.state.is_connected());
    if !connected {
        close_unconnected(core, conn, &v.to_string());
        return;
    }
    core.stats.protocol_errors += 1;
    end_connection(
        core,
        now,
        conn,
        Ending::Abnormal,
        Some(v.reason()),
        &v.to_string(),
    );
}

/// Closes a connection that never completed CONNECT: no CONNACK is owed.
pub(crate) fn close_unconnected(core: &mut Core, conn: ConnId, why: &str) {
    if core.conns.remove(conn).is_some() {
        core.out.close(conn);
        core.notice(Notice::Ended {
            conn,
            reason: why.to_owned(),
        });
    }
}

/// Connection `conn`'s tick fell due: the connect timeout, or the keep-alive check.
pub(crate) fn check_connection(core: &mut Core, now: Instant, conn: ConnId, tick: u64) {
    let Some(c) = core.conns.get_mut(conn) else {
        return;
    };
    if c.tick != tick {
        // A stale entry: the connection was armed again since.
        return;
    }
    c.tick = 0;
    if c.input_paused() {
        // The driver holds its next packet until the store catches up: the client is not
        // silent, and its clocks start again when its input is read
        // (`Broker::handle_input_paused`). Looked at again a period later.
        let period = if c.session.is_none() {
            core.config.connect_timeout
        } else {
            Duration::from_millis(u64::from(c.keep_alive_ms))
        };
        if !period.is_zero() {
            c.tick = core.timers.arm(conn, now + period);
        }
        return;
    }
    if c.session.is_none() {
        // The connect timeout: CONNECT (and its AUTH exchange) did not complete.
        close_unconnected(core, conn, "connect timeout");
        return;
    }
    if c.keep_alive_ms == 0 {
        return;
    }
    let due = c.last_seen + Duration::from_millis(u64::from(c.keep_alive_ms));
    if due > now {
        c.tick = core.timers.arm(conn, due);
        return;
    }
    // [MQTT-3.1.2-22]: no packet within 1.5 × Keep Alive.
    violation(core, now, conn, &Violation::KeepAliveTimeout);
}

/// Disconnects the slow consumers the deliveries of this input asked for, with 0x97.
pub(crate) fn kick_slow_consumers(core: &mut Core, now: Instant) {
    loop {
        let kicks = core.out.take_kicks();
        if kicks.is_empty() {
            return;
        }
        for conn in kicks {
            end_connection(
                core,
                now,
                conn,
                Ending::Abnormal,
                Some(DisconnectReason::QuotaExceeded),
                "slow consumer: session queue full",
            );
        }
    }
}

/// Ends a connection: optionally sends DISCONNECT, closes it, detaches its session, and
/// handles the will and the session's expiry.
pub(crate) fn end_connection(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    ending: Ending,
    disconnect: Option<DisconnectReason>,
    why: &str,
) {
    let Some(c) = core.conns.remove(conn) else {
        return;
    };
    if let Some(reason) = disconnect
        && c.protocol.is_v5()
        && c.session.is_some()
    {
        let mut d = Disconnect::new(reason);
        if c.problem_information {
            d.properties.reason_string = MqttString::try_from(why).ok();
        }
        let mut packet = Packet::Disconnect(Box::new(d));
        fit_packet(&mut packet, c.protocol, c.max_packet_size);
        core.out.send(conn, packet);
    }
    core.out.close(conn);
    core.notice(Notice::Ended {
        conn,
        reason: why.to_owned(),
    });
    let Some(sid) = c.session else {
        return;
    };
    detach(core, now, conn, sid, ending, why);
}

/// Detaches session `sid` from its ended connection `conn`: its client record, its will and
/// its expiry.
fn detach(core: &mut Core, now: Instant, conn: ConnId, sid: SessionId, ending: Ending, why: &str) {
    let wall = core.config.client_records.then(|| core.wall_ms(now));
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    if s.conn != Some(conn) {
        return;
    }
    s.conn = None;
    if let Some(wall) = wall {
        let client_id = s.client_id.to_string();
        core.persist(StoreOp::ClientDisconnected {
            client_id,
            at_ms: wall,
            reason: why.to_owned(),
        });
    }
    if will_is_due(core, now, sid, ending) {
        publish_will(core, now, sid);
    }
    if ending == Ending::Shutdown {
        // Kept as connected-at-stop: restore starts its expiry and its will.
        return;
    }
    hand_over_shared(core, now, sid);
    start_expiry(core, now, sid);
}

/// What the end of the connection does to the session's will: discarded on a normal
/// disconnect, otherwise due after its delay. True when it is due now.
fn will_is_due(core: &mut Core, now: Instant, sid: SessionId, ending: Ending) -> bool {
    let Some(s) = core.sessions.get_mut(sid) else {
        return false;
    };
    match ending {
        Ending::Shutdown => false,
        Ending::Normal => {
            s.will = None;
            false
        }
        Ending::Abnormal => {
            let Some(will) = &s.will else {
                return false;
            };
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 {
                return true;
            }
            let at = now + Duration::from_secs(u64::from(delay));
            s.will_at = Some(at);
            core.timers.insert(at, Timer::Will(sid));
            false
        }
    }
}

/// Starts the expiry of a session that has just lost its connection.
fn start_expiry(core: &mut Core, now: Instant, sid: SessionId) {
    let Some(s) = core.sessions.get_mut(sid) else {
        return;
    };
    match s.expiry_interval {
        0 => end_session(core, now, sid),
        u32::MAX => save_session(core, sid, None),
        secs => {
            let at = now + Duration::from_secs(u64::from(secs));
            s.expires_at = Some(at);
            core.timers.insert(at, Timer::SessionExpiry(sid));
            let wall = core.wall_ms(at);
            save_session(core, sid, Some(wall));
        }
    }
}

/// Ends a session: its will (if still pending) is sent first ("no later than when the
/// session ends", `[MQTT-3.1.3-9]`), then its subscriptions and messages are dropped.
pub(crate) fn end_session(core: &mut Core, now: Instant, sid: SessionId) {
    publish_will(core, now, sid);
    hand_over_shared(core, now, sid);
    let Some(mut s) = core.sessions.remove(sid) else {
        return;
    };
    if let Some(at) = s.expires_at {
        core.timers.remove(at, Timer::SessionExpiry(sid));
    }
    for filter in s.subscriptions.keys() {
        core.router.unsubscribe(filter, sid);
    }
    if s.stored {
        // The session's record goes first, taking its deliveries with it; then each message
        // that no other session refers to.
        core.persist(StoreOp::SessionDeleted {
            client_id: s.client_id.to_string(),
        });
    }
    for mut d in s.take_all(core.sessions.queued_bytes_mut()) {
        forget_delivery(core, sid, &mut d, true);
    }
}
