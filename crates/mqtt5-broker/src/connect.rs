//! CONNECT, AUTH and session takeover: who the client is, and which session it gets.
//!
//! ```text
//!  CONNECT --+-- Authentication Method --> AUTH exchange ---------------------+
//!            +-- User Name, Passwords::Deferred --> CheckPassword action      |
//!            |        ... handle_password_verdict ---------------------------+|
//!            +-- User Name, Passwords::Inline --> verdict now ---------------+|
//!            +-- no User Name: anonymous (or its client certificate) -------+|
//!                                                                             v
//!                                 failed: refuse after the login delay   identity
//!                                                                             |
//!                  session of another identity? --> CONNACK 0x87, nothing taken over
//!                                                                             |
//!                      take over / create the session, CONNACK, resume <------+
//! ```
//!
//! A session belongs to the identity that created it (MQTT 5 §5.4.2: the server should check
//! that the client is authorised to use the Client Identifier). A client of another identity
//! never takes it over and never discards it, whatever its Clean Start, unless
//! [`Config::allow_cross_user_takeover`](crate::Config::allow_cross_user_takeover) says so.

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt5_codec::properties::ConnAckProperties;
use mqtt5_codec::{
    Auth, AuthReason, ConnAck, ConnAckReason, Connect, DisconnectReason, MqttString, Packet,
    ProtocolVersion, QoS,
};
use mqtt5_store::{ClientRecord, StoreOp};

use crate::auth::{AuthExchange, AuthStep, AuthVerdict, ClientInfo, Passwords};
use crate::connections::ConnState;
use crate::deliver::resume;
use crate::disconnect::{Ending, close_unconnected, end_connection, end_session};
use crate::durable::save_session;
use crate::outbox::fit_packet;
use crate::session::SessionId;
use crate::state::Core;
use crate::timers::Timer;
use crate::types::{Action, ConnId, Identity, Notice, PasswordCheck, PeerInfo};
use crate::violation::Violation;

/// A CONNECT on `conn`.
///
/// # Errors
/// [`Violation::SecondConnect`] on a connection past its first CONNECT.
pub(crate) fn on_connect(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    connect: Box<Connect>,
) -> Result<(), Violation> {
    let Some(c) = core.conns.get_mut(conn) else {
        return Ok(());
    };
    if !matches!(c.state, ConnState::AwaitConnect) {
        // [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
        return Err(Violation::SecondConnect);
    }
    c.protocol = connect.protocol;
    c.problem_information = connect
        .properties
        .request_problem_information
        .unwrap_or(true);
    // The client's Maximum Packet Size binds every packet sent from now on, a refusing
    // CONNACK and the AUTH of an exchange included ([MQTT-3.2.2-19], [MQTT-3.2.2-20]).
    c.max_packet_size = connect
        .properties
        .maximum_packet_size
        .map_or(mqtt5_codec::MAX_PACKET_SIZE, NonZeroU32::get);
    core.out.push(Action::Protocol {
        conn,
        version: connect.protocol,
    });
    core.notice(Notice::Connecting {
        conn,
        client_id: connect.client_id.to_string(),
        username: connect.username.as_ref().map(|u| u.as_str().to_owned()),
    });
    if let Some((reason, why)) = connect_refusal(core, &connect) {
        refuse(core, conn, reason, Some(why));
        return Ok(());
    }
    if let Some(method) = connect.properties.authentication_method.clone() {
        begin_enhanced(core, now, conn, connect, method);
        return Ok(());
    }
    check_credentials(core, now, conn, connect);
    Ok(())
}

/// What refuses a CONNECT before any authentication: client identifier rules of 3.1 and
/// 3.1.1, and a will the server cannot honour.
fn connect_refusal(core: &Core, connect: &Connect) -> Option<(ConnAckReason, &'static str)> {
    let id_len = connect.client_id.len();
    let bad_id = match connect.protocol {
        // MQTT 3.1 §3.1: 1 to 23 characters.
        ProtocolVersion::V3_1 => id_len == 0 || id_len > 23,
        // [MQTT-3.1.3-8]: an empty id needs Clean Session.
        ProtocolVersion::V3_1_1 => id_len == 0 && !connect.clean_start,
        ProtocolVersion::V5 => false,
    };
    if bad_id {
        return Some((
            ConnAckReason::ClientIdentifierNotValid,
            "client identifier not valid",
        ));
    }
    let will = connect.will.as_ref().filter(|_| connect.protocol.is_v5())?;
    if will.qos > core.config.maximum_qos {
        return Some((
            ConnAckReason::QoSNotSupported,
            "[MQTT-3.2.2-12] Will QoS above Maximum QoS",
        ));
    }
    if will.retain && !core.config.retain_available {
        return Some((
            ConnAckReason::RetainNotSupported,
            "[MQTT-3.2.2-13] Will Retain without retained messages",
        ));
    }
    None
}

/// Starts the enhanced authentication of a CONNECT (MQTT 5 §4.12).
fn begin_enhanced(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    connect: Box<Connect>,
    method: MqttString,
) {
    let data = connect
        .properties
        .authentication_data
        .clone()
        .unwrap_or_default();
    let Some(auth) = core.access.method(method.as_str()) else {
        refuse(
            core,
            conn,
            ConnAckReason::BadAuthenticationMethod,
            Some("unsupported authentication method"),
        );
        return;
    };
    let (exchange, step) = auth.begin(&connect.client_id, &data, &mut *core.random);
    connect_step(core, now, conn, connect, exchange, method, step);
}

/// The next step of a CONNECT's enhanced authentication.
fn connect_step(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    connect: Box<Connect>,
    exchange: Box<dyn AuthExchange>,
    method: MqttString,
    step: AuthStep,
) {
    match step {
        AuthStep::Continue(data) => {
            set_state(
                core,
                conn,
                ConnState::Authenticating {
                    connect,
                    exchange,
                    method: Box::new(method.clone()),
                },
            );
            send_auth(core, conn, AuthReason::ContinueAuthentication, method, data);
        }
        AuthStep::Success { data, username } => {
            authenticated(
                core,
                now,
                conn,
                &connect,
                Identity::User(username.into()),
                data,
            );
        }
        AuthStep::Failure => {
            let user = connect.username.as_ref().map(|u| u.as_str().to_owned());
            login_failed(
                core,
                now,
                conn,
                user.as_deref(),
                ConnAckReason::BadUserNameOrPassword,
                "authentication failed",
            );
        }
    }
}

/// User Name and Password (MQTT 5 §3.1.3.5, §3.1.3.6), or anonymous access.
fn check_credentials(core: &mut Core, now: Instant, conn: ConnId, connect: Box<Connect>) {
    let Some(peer) = core.conns.get(conn).and_then(|c| c.peer.as_deref()) else {
        return;
    };
    let anonymous_ok = peer.allow_anonymous.unwrap_or(core.config.allow_anonymous);
    let ignore = peer
        .ignore_credentials
        .unwrap_or(core.config.ignore_credentials);
    let certificate = peer.certificate.clone();
    let username = connect.username.as_ref().map(|u| u.as_str().to_owned());
    let Some(name) = username.filter(|_| !ignore) else {
        if !anonymous_ok {
            core.stats.auth_failures += 1;
            refuse(
                core,
                conn,
                ConnAckReason::NotAuthorized,
                Some("anonymous access is disabled"),
            );
            return;
        }
        let identity = certificate.map_or(Identity::Anonymous, |subject| {
            Identity::Certificate(subject.into())
        });
        authenticated(core, now, conn, &connect, identity, None);
        return;
    };
    match &core.access.passwords {
        Passwords::NoUsers => {
            // Fail closed: a user name with no users to check it against is refused.
            login_failed(
                core,
                now,
                conn,
                Some(&name),
                ConnAckReason::BadUserNameOrPassword,
                "no users are configured",
            );
        }
        Passwords::Inline(authenticator) => {
            let verdict = authenticator.authenticate(
                &ClientInfo {
                    client_id: &connect.client_id,
                    username: Some(&name),
                },
                connect.password.as_deref(),
            );
            password_verdict(core, now, conn, &connect, name, verdict);
        }
        Passwords::Deferred => {
            let check = PasswordCheck {
                conn,
                client_id: connect.client_id.to_string(),
                username: name,
                password: connect.password.clone(),
            };
            set_state(core, conn, ConnState::AwaitingVerdict { connect });
            core.out.push(Action::CheckPassword(check));
        }
    }
}

/// The driver's verdict on a [`PasswordCheck`]; ignored unless `conn` is waiting for one.
pub(crate) fn on_password_verdict(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    verdict: AuthVerdict,
) {
    let Some(c) = core.conns.get_mut(conn) else {
        return;
    };
    if !matches!(c.state, ConnState::AwaitingVerdict { .. }) {
        return;
    }
    let ConnState::AwaitingVerdict { connect } =
        core::mem::replace(&mut c.state, ConnState::AwaitConnect)
    else {
        return;
    };
    let name = connect
        .username
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    password_verdict(core, now, conn, &connect, name, verdict);
}

fn password_verdict(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    connect: &Connect,
    name: String,
    verdict: AuthVerdict,
) {
    match verdict {
        AuthVerdict::Allow => {
            authenticated(core, now, conn, connect, Identity::User(name.into()), None);
        }
        AuthVerdict::BadCredentials => login_failed(
            core,
            now,
            conn,
            Some(&name),
            ConnAckReason::BadUserNameOrPassword,
            "bad user name or password",
        ),
        AuthVerdict::NotAuthorized => login_failed(
            core,
            now,
            conn,
            Some(&name),
            ConnAckReason::NotAuthorized,
            "not authorized",
        ),
        AuthVerdict::Busy => refuse(
            core,
            conn,
            ConnAckReason::ServerBusy,
            Some("too many logins in progress"),
        ),
    }
}

/// A failed login: counted, and refused after the delay the failures so far call for
/// ([`crate::Config::failed_login_delay_max`]).
fn login_failed(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    user: Option<&str>,
    reason: ConnAckReason,
    why: &'static str,
) {
    core.stats.auth_failures += 1;
    let addr = core
        .conns
        .get(conn)
        .and_then(|c| c.peer.as_ref())
        .map(|p| p.addr.ip());
    let max = core.config.failed_login_delay_max;
    let delay = core.access.throttle.failed(now, addr, user, max);
    if delay.is_zero() {
        refuse(core, conn, reason, Some(why));
        return;
    }
    set_state(core, conn, ConnState::Refusing { reason, why });
    core.timers.insert(now + delay, Timer::Refusal(conn));
}

/// A delayed refusal falls due.
pub(crate) fn refusal_due(core: &mut Core, conn: ConnId) {
    let Some(c) = core.conns.get(conn) else {
        return;
    };
    if let ConnState::Refusing { reason, why } = c.state {
        refuse(core, conn, reason, Some(why));
    }
}

/// The client identifier a connection ends up with.
enum ClientId {
    /// The CONNECT's own.
    Own(Arc<str>),
    /// Assigned by the server for an empty one.
    Assigned(Arc<str>),
    /// The user name, under `use_username_as_client_id`.
    Replaced(Arc<str>),
}

/// The client proved `identity`: settle its client identifier, then accept it.
fn authenticated(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    connect: &Connect,
    identity: Identity,
    auth_data: Option<Vec<u8>>,
) {
    if let Some(name) = identity.username() {
        core.access.throttle.succeeded(name);
    }
    let by_username = core
        .conns
        .get(conn)
        .and_then(|c| c.peer.as_ref())
        .and_then(|p| p.use_username_as_client_id)
        .unwrap_or(core.config.use_username_as_client_id);
    let client_id = if by_username {
        let Some(name) = identity.username() else {
            core.stats.auth_failures += 1;
            refuse(
                core,
                conn,
                ConnAckReason::NotAuthorized,
                Some("a user name is required on this listener"),
            );
            return;
        };
        ClientId::Replaced(Arc::from(name))
    } else if connect.client_id.is_empty() {
        ClientId::Assigned(assign_client_id(core).into())
    } else {
        ClientId::Own(Arc::from(connect.client_id.as_str()))
    };
    accept(core, now, conn, connect, identity, &client_id, auth_data);
}

/// The owner of the session of `client_id` if it is another identity than `identity` and may
/// not be taken over.
fn foreign_owner(core: &Core, client_id: &str, identity: &Identity) -> Option<Identity> {
    if core.config.allow_cross_user_takeover {
        return None;
    }
    let sid = core.sessions.find(client_id)?;
    core.sessions
        .get(sid)
        .and_then(|s| s.owner.clone())
        .filter(|owner| owner != identity)
}

/// Completes a CONNECT: takes over or creates the session, sends CONNACK, resumes delivery.
fn accept(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    connect: &Connect,
    identity: Identity,
    client_id: &ClientId,
    auth_data: Option<Vec<u8>>,
) {
    let (id, assigned) = match client_id {
        ClientId::Own(id) => (id.clone(), false),
        ClientId::Assigned(id) | ClientId::Replaced(id) => (id.clone(), true),
    };
    if let Some(owner) = foreign_owner(core, &id, &identity) {
        core.stats.ownership_refusals += 1;
        core.notice(Notice::SessionOwnedByOther {
            conn,
            client_id: id.to_string(),
            identity,
            owner,
        });
        refuse(
            core,
            conn,
            ConnAckReason::NotAuthorized,
            Some("the client identifier belongs to another identity"),
        );
        return;
    }
    let expiry = granted_expiry(core, connect);
    if expiry.granted > 0 && refused_persistent(core, conn, &id, connect) {
        return;
    }
    // Built before any session is touched: a client that cannot take it gets none.
    let mut ack = connack(core, connect, expiry, assigned.then_some(&*id), auth_data);
    if !answerable(core, conn, &mut ack) {
        return;
    }
    let (sid, present) = take_session(core, now, &id, connect);
    core.sessions.set_expiry(sid, expiry.granted);
    if let Some(s) = core.sessions.get_mut(sid) {
        s.conn = Some(conn);
        s.protocol = connect.protocol;
        if s.owner.as_ref() != Some(&identity) {
            // A new session, a legacy one being claimed, or a cross-user takeover.
            s.owner = Some(identity.clone());
        }
        s.username = identity.username().map(Box::from);
        s.will = connect.will.as_ref().map(|w| Box::new(w.detach()));
    }
    let peer = attach(core, now, conn, sid, connect);
    core.notice(Notice::Accepted {
        conn,
        client_id: id.to_string(),
        identity: identity.clone(),
        session_present: present,
    });
    save_session(core, sid, None);
    core.stats.connects += 1;
    ack.session_present = present;
    core.send(conn, Packet::ConnAck(Box::new(ack)));
    // After the CONNACK: the client record is a history for the database's readers, which
    // the CONNACK does not vouch for, so it does not hold the CONNACK back in sync durability.
    client_record(core, now, &id, &identity, connect.protocol, peer.as_deref());
    let connected = core.conns.connected() as u64;
    core.stats.max_connected = core.stats.max_connected.max(connected);
    if present {
        resume(core, now, sid);
    }
}

/// Refuses a CONNECT for a persistent session of `client_id` (CONNACK 0x97, 3.1.1: return
/// code 3) when it would need storage while the store is full, or would make one more
/// persistent session than the broker keeps; returns whether it did.
fn refused_persistent(core: &mut Core, conn: ConnId, client_id: &str, connect: &Connect) -> bool {
    let resumes_stored = !connect.clean_start
        && core
            .sessions
            .find(client_id)
            .and_then(|sid| core.sessions.get(sid))
            .is_some_and(|s| s.stored);
    if core.refusing_persistent() && !resumes_stored {
        refuse(
            core,
            conn,
            ConnAckReason::QuotaExceeded,
            Some("storage full"),
        );
        return true;
    }
    if session_limit_reached(core, client_id) {
        core.stats.session_limit_refusals += 1;
        core.notice(Notice::SessionLimit {
            conn,
            client_id: client_id.to_owned(),
            limit: core.config.max_persistent_sessions,
        });
        refuse(
            core,
            conn,
            ConnAckReason::QuotaExceeded,
            Some("the broker keeps as many persistent sessions as it may"),
        );
        return true;
    }
    false
}

/// Whether a CONNECT for a persistent session of `client_id` would make one more persistent
/// session than [`crate::Config::max_persistent_sessions`] allows. Resuming, taking over or
/// replacing (Clean Start) a persistent session of that client identifier leaves the count
/// as it is; a non-persistent one made persistent counts as new.
fn session_limit_reached(core: &Core, client_id: &str) -> bool {
    let existing = core
        .sessions
        .find(client_id)
        .and_then(|sid| core.sessions.get(sid))
        .is_some_and(crate::session::Session::is_persistent);
    !existing && core.sessions.persistent() >= core.config.max_persistent_sessions
}

/// Records the connection in the client records, where they are kept.
fn client_record(
    core: &mut Core,
    now: Instant,
    client_id: &str,
    identity: &Identity,
    protocol: ProtocolVersion,
    peer: Option<&PeerInfo>,
) {
    if !core.config.client_records {
        return;
    }
    let at_ms = core.wall_ms(now);
    core.persist(StoreOp::ClientConnected(ClientRecord {
        client_id: client_id.to_owned(),
        username: identity.username().map(str::to_owned),
        protocol,
        peer: peer.map(|p| p.addr.to_string()).unwrap_or_default(),
        at_ms,
    }));
}

/// The Session Expiry Interval asked for and granted.
#[derive(Clone, Copy)]
pub(crate) struct Expiry {
    pub(crate) requested: u32,
    pub(crate) granted: u32,
}

/// The Session Expiry Interval a CONNECT asks for, and the one it gets.
pub(crate) fn granted_expiry(core: &Core, connect: &Connect) -> Expiry {
    // 5.0 says it; 3.1.1 Clean Session 0 means "forever".
    let requested = if connect.protocol.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };
    Expiry {
        requested,
        granted: requested.min(core.config.max_session_expiry),
    }
}

/// Ends the connection that holds the session of `client_id`, discards the session on Clean
/// Start, and returns the session the new connection gets, and whether it existed.
fn take_session(
    core: &mut Core,
    now: Instant,
    client_id: &Arc<str>,
    connect: &Connect,
) -> (SessionId, bool) {
    // Take over: the old connection gets DISCONNECT 0x8E ([MQTT-3.1.4-3]).
    if let Some(sid) = core.sessions.find(client_id)
        && let Some(old) = core.sessions.get(sid).and_then(|s| s.conn)
    {
        end_connection(
            core,
            now,
            old,
            Ending::Abnormal,
            Some(DisconnectReason::SessionTakenOver),
            "session taken over",
        );
        core.stats.takeovers += 1;
    }
    // Clean Start discards any existing session ([MQTT-3.1.2-4]).
    if connect.clean_start
        && let Some(sid) = core.sessions.find(client_id)
    {
        end_session(core, now, sid);
    }
    let (sid, present) = core.sessions.get_or_create(client_id, connect.protocol);
    // Resuming cancels a pending will ([MQTT-3.1.3-9]) and the expiry.
    let (old_will_at, old_expires_at) = core
        .sessions
        .get_mut(sid)
        .map(|s| (s.will_at.take(), s.expires_at.take()))
        .unwrap_or_default();
    if let Some(at) = old_will_at {
        core.timers.remove(at, Timer::Will(sid));
    }
    if let Some(at) = old_expires_at {
        core.timers.remove(at, Timer::SessionExpiry(sid));
    }
    (sid, present)
}

/// Attaches the connection to its session: its state, window, aliases and keep-alive.
/// Returns the peer, which only the client record needs from here on.
fn attach(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    sid: SessionId,
    connect: &Connect,
) -> Option<Box<PeerInfo>> {
    let keep_alive = keep_alive(core, connect).0;
    core.conns.attach(conn, sid);
    let c = core.conns.get_mut(conn)?;
    c.auth_method = connect
        .properties
        .authentication_method
        .clone()
        .map(Box::new);
    let props = &connect.properties;
    c.window = props
        .receive_maximum
        .map_or(u16::MAX, NonZeroU16::get)
        .min(core.config.max_inflight);
    c.alias_max = props.topic_alias_maximum.unwrap_or(0);
    c.keep_alive_ms = u32::from(keep_alive) * 1500;
    // The connect timeout no longer applies; the keep-alive (if any) is armed here.
    c.tick = 0;
    if c.keep_alive_ms > 0 {
        let due = now + Duration::from_millis(u64::from(c.keep_alive_ms));
        c.tick = core.timers.arm(conn, due);
    }
    c.peer.take()
}

/// The keep-alive in force, and the Server Keep Alive to send when it differs from the
/// client's: MQTT 5 clients get the server's cap when they ask for 0 or more.
fn keep_alive(core: &Core, connect: &Connect) -> (u16, Option<u16>) {
    let asked = connect.keep_alive;
    if connect.protocol.is_v5()
        && let Some(max) = core.config.max_keep_alive
        && (asked == 0 || asked > max)
    {
        return (max, Some(max));
    }
    (asked, None)
}

/// The CONNACK of an accepted CONNECT (Session Present still to be set).
fn connack(
    core: &Core,
    connect: &Connect,
    expiry: Expiry,
    assigned: Option<&str>,
    auth_data: Option<Vec<u8>>,
) -> ConnAck {
    let mut ack = ConnAck {
        session_present: false,
        reason: ConnAckReason::Success,
        properties: ConnAckProperties::default(),
    };
    if !connect.protocol.is_v5() {
        return ack;
    }
    let p = &mut ack.properties;
    let cfg = &core.config;
    if expiry.granted != expiry.requested {
        p.session_expiry_interval = Some(expiry.granted);
    }
    p.receive_maximum = NonZeroU16::new(cfg.receive_maximum);
    if cfg.maximum_qos != QoS::ExactlyOnce {
        p.maximum_qos = Some(cfg.maximum_qos);
    }
    if !cfg.retain_available {
        p.retain_available = Some(false);
    }
    p.maximum_packet_size = NonZeroU32::new(cfg.max_packet_size);
    // An empty client identifier was assigned one ([MQTT-3.2.2-16]); one replaced by the user
    // name is announced the same way, so that the client knows its session.
    if let Some(id) = assigned.filter(|id| *id != connect.client_id.as_str()) {
        p.assigned_client_identifier = MqttString::try_from(id).ok();
    }
    p.topic_alias_maximum = Some(cfg.topic_alias_maximum);
    p.wildcard_subscription_available = Some(cfg.wildcard_subscriptions);
    p.subscription_identifiers_available = Some(cfg.subscription_identifiers);
    p.shared_subscription_available = Some(cfg.shared_subscriptions);
    p.server_keep_alive = keep_alive(core, connect).1;
    if let Some(method) = &connect.properties.authentication_method {
        p.authentication_method = Some(method.clone());
        p.authentication_data = auth_data.map(Into::into);
    }
    ack
}

/// A fresh client identifier: the configured prefix and 16 random alphanumerics.
fn assign_client_id(core: &mut Core) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    loop {
        let mut raw = [0u8; 16];
        core.random.fill_bytes(&mut raw);
        let mut id = core.config.assigned_id_prefix.clone();
        id.extend(
            raw.iter()
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])),
        );
        if !core.sessions.contains(&id) {
            return id;
        }
    }
}

fn send_auth(core: &mut Core, conn: ConnId, reason: AuthReason, method: MqttString, data: Vec<u8>) {
    let mut auth = Auth {
        reason,
        properties: mqtt5_codec::AuthProperties::default(),
    };
    auth.properties.authentication_method = Some(method);
    auth.properties.authentication_data = Some(data.into());
    core.send(conn, Packet::Auth(Box::new(auth)));
}

/// An AUTH packet: the next step of a CONNECT's exchange, or a re-authentication.
///
/// # Errors
/// [`Violation::UnexpectedAuth`] or [`Violation::ReauthenticationMethod`] on a connected
/// connection.
pub(crate) fn on_auth(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    auth: &Auth,
) -> Result<(), Violation> {
    let Some(c) = core.conns.get_mut(conn) else {
        return Ok(());
    };
    let method = auth.properties.authentication_method.clone();
    let data = auth
        .properties
        .authentication_data
        .clone()
        .unwrap_or_default();
    let state = core::mem::replace(&mut c.state, ConnState::AwaitConnect);
    match (state, auth.reason) {
        (
            ConnState::Authenticating {
                connect,
                mut exchange,
                method: expected,
            },
            AuthReason::ContinueAuthentication,
        ) if method.as_ref() == Some(&expected) => {
            let step = exchange.step(&data);
            connect_step(core, now, conn, connect, exchange, *expected, step);
            Ok(())
        }
        (ConnState::Connected, AuthReason::ReAuthenticate) => {
            begin_reauth(core, now, conn, method, &data)
        }
        (
            ConnState::Reauthenticating {
                mut exchange,
                method: expected,
            },
            AuthReason::ContinueAuthentication,
        ) if method.as_ref() == Some(&expected) => {
            let step = exchange.step(&data);
            reauth_step(core, now, conn, exchange, *expected, step);
            Ok(())
        }
        (state, _) if state.is_connected() => {
            set_state(core, conn, ConnState::Connected);
            Err(Violation::UnexpectedAuth)
        }
        (_, _) => {
            // Before CONNACK there is no DISCONNECT to send: close.
            close_unconnected(core, conn, "unexpected AUTH before CONNACK");
            Ok(())
        }
    }
}

/// AUTH 0x19 on a connected connection (MQTT 5 §4.12.1).
fn begin_reauth(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    method: Option<MqttString>,
    data: &[u8],
) -> Result<(), Violation> {
    set_state(core, conn, ConnState::Connected);
    // The method must be the one of the CONNECT.
    let original = core.conns.get(conn).and_then(|c| c.auth_method.clone());
    let method = method
        .filter(|m| Some(m) == original.as_deref())
        .ok_or(Violation::ReauthenticationMethod)?;
    let client_id = core
        .conns
        .session_of(conn)
        .and_then(|sid| core.sessions.get(sid))
        .map(|s| s.client_id.to_string())
        .unwrap_or_default();
    let authn = core
        .access
        .method(method.as_str())
        .ok_or(Violation::ReauthenticationMethod)?;
    let (exchange, step) = authn.begin(&client_id, data, &mut *core.random);
    reauth_step(core, now, conn, exchange, method, step);
    Ok(())
}

fn set_state(core: &mut Core, conn: ConnId, state: ConnState) {
    if let Some(c) = core.conns.get_mut(conn) {
        c.state = state;
    }
}

fn reauth_step(
    core: &mut Core,
    now: Instant,
    conn: ConnId,
    exchange: Box<dyn AuthExchange>,
    method: MqttString,
    step: AuthStep,
) {
    match step {
        AuthStep::Continue(out) => {
            set_state(
                core,
                conn,
                ConnState::Reauthenticating {
                    exchange,
                    method: Box::new(method.clone()),
                },
            );
            send_auth(core, conn, AuthReason::ContinueAuthentication, method, out);
        }
        AuthStep::Success { data, username } => {
            set_state(core, conn, ConnState::Connected);
            // A re-authentication proves the same identity again, or nothing.
            let identity = core
                .conns
                .session_of(conn)
                .and_then(|sid| core.sessions.get(sid))
                .and_then(|s| s.owner.clone())
                .unwrap_or(Identity::Anonymous);
            if identity.username() != Some(username.as_str()) {
                core.stats.auth_failures += 1;
                core.notice(Notice::ReauthenticatedAsOther {
                    conn,
                    identity,
                    proved: username,
                });
                end_connection(
                    core,
                    now,
                    conn,
                    Ending::Abnormal,
                    Some(DisconnectReason::NotAuthorized),
                    "re-authentication proved another identity",
                );
                return;
            }
            send_auth(
                core,
                conn,
                AuthReason::Success,
                method,
                data.unwrap_or_default(),
            );
        }
        AuthStep::Failure => {
            set_state(core, conn, ConnState::Connected);
            core.stats.auth_failures += 1;
            end_connection(
                core,
                now,
                conn,
                Ending::Abnormal,
                Some(DisconnectReason::NotAuthorized),
                "re-authentication failed",
            );
        }
    }
}

/// Whether the client of `conn` can take `ack`, made to fit its Maximum Packet Size first by
/// dropping what is optional. If it cannot (`[MQTT-3.1.2-24]`: a Maximum Packet Size of 2,
/// say), the connection is closed without a CONNACK, and a notice says why.
fn answerable(core: &mut Core, conn: ConnId, ack: &mut ConnAck) -> bool {
    let Some(c) = core.conns.get(conn) else {
        return false;
    };
    let (version, maximum) = (c.protocol, c.max_packet_size);
    let mut packet = Packet::ConnAck(Box::new(core::mem::take(ack)));
    fit_packet(&mut packet, version, maximum);
    let size = packet.encoded_len(version);
    if let Packet::ConnAck(fitted) = packet {
        *ack = *fitted;
    }
    if size <= maximum as usize {
        return true;
    }
    core.notice(Notice::ConnAckTooLarge {
        conn,
        reason: ack.reason,
        size,
        maximum,
    });
    close_unconnected(
        core,
        conn,
        "[MQTT-3.1.2-24] the CONNACK exceeds the client's Maximum Packet Size",
    );
    false
}

/// Refuses a CONNECT with CONNACK `reason` (the encoder maps it to a 3.1.1 return code), then
/// closes (`[MQTT-3.2.2-7]`: no Session Present on failure). A client whose Maximum Packet
/// Size cannot take the CONNACK is closed without one.
pub(crate) fn refuse(core: &mut Core, conn: ConnId, reason: ConnAckReason, why: Option<&str>) {
    let mut ack = ConnAck {
        session_present: false,
        reason,
        ..ConnAck::default()
    };
    if let (Some(why), Some(c)) = (why, core.conns.get(conn))
        && c.problem_information
    {
        ack.properties.reason_string = MqttString::try_from(why).ok();
    }
    if !answerable(core, conn, &mut ack) {
        return;
    }
    core.notice(Notice::Refused { conn, reason });
    core.send(conn, Packet::ConnAck(Box::new(ack)));
    close_unconnected(core, conn, why.unwrap_or("connection refused"));
}
