//! A deterministic simulation: a virtual clock, N clients, and every packet through the real
//! codec in both directions (quinn's `Pair`; `docs/architecture.md`). No sockets, no sleeps.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt5_broker::{
    Action, AllowAll, Broker, Config, ConnId, Notice, PasswordCheck, Passwords, PeerInfo,
    RandomSource, Services,
};
use mqtt5_codec::{
    Connect, Decoder, Delivery, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt5_store::{MemoryStore, Store};

/// A deterministic random source (xorshift64*).
pub(crate) struct TestRandom(pub u64);

impl RandomSource for TestRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
    }
}

/// Services with no authenticator, allow-all ACL, deterministic randomness.
pub(crate) fn open_services() -> Services {
    Services {
        passwords: Passwords::NoUsers,
        authorizer: Box::new(AllowAll),
        enhanced: Vec::new(),
        random: Box::new(TestRandom(0x9E37_79B9_7F4A_7C15)),
    }
}

/// One simulated client connection.
pub(crate) struct Client {
    /// The version it speaks (encodes with, and decodes the broker's packets with).
    pub(crate) version: ProtocolVersion,
    /// The server side's decoder for this connection, as the driver keeps it.
    server_decoder: Decoder,
    /// Packets the broker sent, decoded by the client side.
    pub(crate) inbox: VecDeque<Packet>,
    /// Whether the broker closed the connection.
    pub(crate) closed: bool,
    /// The Maximum Packet Size its CONNECT announced ([MQTT-3.1.2-24]).
    pub(crate) max_packet_size: usize,
}

/// The simulation.
pub(crate) struct Sim {
    pub(crate) broker: Broker,
    pub(crate) now: Instant,
    pub(crate) store: MemoryStore,
    pub(crate) clients: HashMap<ConnId, Client>,
    next_conn: u64,
    /// Every Persist batch, in order, for inspection.
    pub(crate) persisted: Vec<mqtt5_store::StoreOp>,
    /// A log of actions in order: ("send", conn) / ("persist", n) / ("close", conn).
    pub(crate) trace: Vec<String>,
    /// The configuration, for restarts.
    config: Config,
    /// The instant the current broker was created at.
    started: Instant,
    /// Password checks the broker asked for ([`Passwords::Deferred`]), not yet answered.
    pub(crate) password_checks: VecDeque<PasswordCheck>,
    /// Every notice, in order.
    pub(crate) notices: Vec<Notice>,
}

impl Sim {
    pub(crate) fn new(config: Config) -> Self {
        Self::with_services(config, open_services())
    }

    pub(crate) fn with_services(config: Config, services: Services) -> Self {
        // Only the start: from here on the clock is virtual.
        #[allow(
            clippy::disallowed_methods,
            reason = "the simulation picks its start instant"
        )]
        let now = Instant::now();
        let broker = Broker::new(config.clone(), services, now, 1_700_000_000_000).unwrap();
        Self {
            broker,
            now,
            store: MemoryStore::new(),
            clients: HashMap::new(),
            next_conn: 1,
            persisted: Vec::new(),
            trace: Vec::new(),
            config,
            started: now,
            password_checks: VecDeque::new(),
            notices: Vec::new(),
        }
    }

    /// Stops the broker (every connection drops with it) and starts a new one from what the
    /// store holds, as a process restart would.
    pub(crate) fn restart(&mut self) {
        self.restart_with(open_services());
    }

    /// [`Sim::restart`] with these services.
    pub(crate) fn restart_with(&mut self, services: Services) {
        for client in self.clients.values_mut() {
            client.closed = true;
        }
        let wall =
            1_700_000_000_000 + u64::try_from((self.now - self.started).as_millis()).unwrap();
        let mut broker = Broker::new(self.config.clone(), services, self.now, wall).unwrap();
        let recovered = self.store.recover().unwrap();
        broker.restore(self.now, recovered).unwrap();
        self.broker = broker;
        self.run();
    }

    /// Opens a connection; nothing is sent yet.
    pub(crate) fn open(&mut self, version: ProtocolVersion) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let addr: SocketAddr = format!("127.0.0.1:{}", 40000 + conn.0).parse().unwrap();
        self.broker
            .handle_connection(self.now, conn, PeerInfo::new(addr))
            .unwrap();
        // Before CONNECT the server decodes in 5.0 framing; CONNECT sets the version.
        self.clients.insert(
            conn,
            Client {
                version,
                server_decoder: Decoder::new(ProtocolVersion::V5),
                inbox: VecDeque::new(),
                closed: false,
                max_packet_size: usize::MAX,
            },
        );
        self.run();
        conn
    }

    /// Opens a connection and sends `connect`; returns the connection.
    pub(crate) fn connect_with(&mut self, connect: Connect) -> ConnId {
        let conn = self.open(connect.protocol);
        self.send(conn, Packet::Connect(Box::new(connect)));
        conn
    }

    /// Connects a client with `id`, keep-alive 0, and the given version and Clean Start.
    pub(crate) fn connect(&mut self, version: ProtocolVersion, id: &str, clean: bool) -> ConnId {
        let conn = self.connect_with(connect_packet(version, id, clean));
        let ack = self.expect(conn);
        assert!(
            matches!(ack, Packet::ConnAck(ref a) if a.reason.as_u8() == 0),
            "{ack:?}"
        );
        conn
    }

    /// Encodes `packet` as the client, decodes it as the server, feeds the broker.
    pub(crate) fn send(&mut self, conn: ConnId, packet: Packet) {
        let client = self.clients.get_mut(&conn).unwrap();
        let mut wire = BytesMut::new();
        packet.encode(client.version, &mut wire);
        self.send_bytes(conn, &wire);
    }

    /// Feeds raw bytes to the server side of `conn`.
    pub(crate) fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        loop {
            let client = self.clients.get_mut(&conn).unwrap();
            let decoded = client.server_decoder.decode(&mut buf);
            match decoded {
                Ok(Some(packet)) => {
                    if let Packet::Connect(c) = &packet {
                        client.server_decoder.set_version(c.protocol);
                        if let Some(max) = c.properties.maximum_packet_size {
                            client.max_packet_size = max.get() as usize;
                        }
                    }
                    self.broker.handle_packet(self.now, conn, packet);
                    self.run();
                }
                Ok(None) => break,
                Err(e) => {
                    self.broker.handle_decode_error(self.now, conn, &e);
                    self.run();
                    break;
                }
            }
        }
    }

    /// Runs every pending action.
    pub(crate) fn run(&mut self) {
        while let Some(action) = self.broker.poll_action() {
            match action {
                Action::Send { conn, packet } => {
                    self.trace.push(format!("send {}", conn.0));
                    let Some(client) = self.clients.get_mut(&conn) else {
                        continue;
                    };
                    assert!(!client.closed, "send after close on {conn:?}: {packet:?}");
                    // Through the codec: the broker's packet as the client would decode it.
                    let mut wire = BytesMut::new();
                    packet.encode(client.version, &mut wire);
                    assert_eq!(wire.len(), packet.encoded_len(client.version));
                    assert!(
                        wire.len() <= client.max_packet_size,
                        "[MQTT-3.1.2-24] {} bytes to a client that accepts {}: {packet:?}",
                        wire.len(),
                        client.max_packet_size
                    );
                    let decoded = Decoder::new(client.version)
                        .decode(&mut wire)
                        .expect("broker sent a packet its own codec rejects")
                        .expect("a whole packet");
                    assert!(wire.is_empty());
                    client.inbox.push_back(decoded);
                }
                Action::Persist(ops) => {
                    self.trace.push(format!("persist {}", ops.len()));
                    self.store.apply(&ops).expect("store op inconsistent");
                    self.persisted.extend(ops);
                }
                Action::Close { conn } => {
                    self.trace.push(format!("close {}", conn.0));
                    if let Some(client) = self.clients.get_mut(&conn) {
                        client.closed = true;
                    }
                }
                Action::CheckPassword(check) => {
                    self.trace.push(format!("check {}", check.conn.0));
                    self.password_checks.push_back(check);
                }
                Action::Notice(notice) => self.notices.push(notice),
                Action::Protocol { conn, version } => {
                    // The server side decodes in the version the core settled on.
                    if let Some(client) = self.clients.get_mut(&conn) {
                        client.server_decoder.set_version(version);
                    }
                }
            }
        }
    }

    /// Moves the clock forward by `d`, running timers as they fall due.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.broker.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.broker.handle_timeout(self.now);
            self.run();
        }
        self.now = end;
    }

    /// The network connection of `conn` drops.
    pub(crate) fn lose(&mut self, conn: ConnId) {
        self.broker.handle_connection_lost(self.now, conn);
        self.run();
        if let Some(c) = self.clients.get_mut(&conn) {
            c.closed = true;
        }
    }

    /// The next packet the broker sent to `conn`.
    pub(crate) fn recv(&mut self, conn: ConnId) -> Option<Packet> {
        self.clients.get_mut(&conn).unwrap().inbox.pop_front()
    }

    /// How many packets the broker sent to `conn` that the test has not read yet.
    pub(crate) fn recv_pending(&self, conn: ConnId) -> usize {
        self.clients.get(&conn).map_or(0, |c| c.inbox.len())
    }

    /// The next packet, which must exist.
    pub(crate) fn expect(&mut self, conn: ConnId) -> Packet {
        self.recv(conn)
            .unwrap_or_else(|| panic!("no packet for {conn:?}"))
    }

    /// The next packet, which must be a PUBLISH.
    pub(crate) fn expect_publish(&mut self, conn: ConnId) -> Publish {
        match self.expect(conn) {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Drains every packet of `conn`.
    pub(crate) fn drain(&mut self, conn: ConnId) -> Vec<Packet> {
        self.clients
            .get_mut(&conn)
            .unwrap()
            .inbox
            .drain(..)
            .collect()
    }

    /// Whether the broker closed `conn`.
    pub(crate) fn is_closed(&self, conn: ConnId) -> bool {
        self.clients[&conn].closed
    }

    /// Subscribes `conn` to `filter` at `qos` and checks the SUBACK grants it.
    pub(crate) fn subscribe(&mut self, conn: ConnId, filter: &str, qos: QoS) {
        self.subscribe_with(conn, filter, SubscriptionOptions::new(qos), None);
        match self.expect(conn) {
            Packet::SubAck(a) => assert_eq!(a.reasons[0].as_u8(), qos.as_u8(), "{a:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends a SUBSCRIBE with options and an optional identifier; the SUBACK is left queued.
    pub(crate) fn subscribe_with(
        &mut self,
        conn: ConnId,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) {
        let mut sub = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::try_from(filter).unwrap(),
                options,
            }],
        };
        sub.properties.subscription_identifier = id.and_then(core::num::NonZeroU32::new);
        self.send(conn, Packet::Subscribe(sub));
    }

    /// Publishes from `conn`.
    pub(crate) fn publish(&mut self, conn: ConnId, topic: &str, payload: &[u8], qos: QoS, id: u16) {
        let mut p = Publish::new(TopicName::try_from(topic).unwrap(), payload.to_vec());
        if qos != QoS::AtMostOnce {
            p.delivery = Delivery::new(qos, PacketId::new(id).unwrap());
        }
        self.send(conn, Packet::Publish(p));
    }
}

/// A CONNECT with keep-alive 0.
pub(crate) fn connect_packet(version: ProtocolVersion, id: &str, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 0,
        client_id: MqttString::try_from(id).unwrap(),
        ..Connect::default()
    }
}

/// A 5.0 CONNECT of a persistent session (expiry `secs`).
pub(crate) fn persistent_connect(id: &str, clean: bool, secs: u32) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, id, clean);
    c.properties.session_expiry_interval = Some(secs);
    c
}

/// A minimal config: no `$SYS` timer, so that timeouts in tests are only the ones they set.
pub(crate) fn quiet_config() -> Config {
    Config {
        sys_interval: None,
        ..Config::default()
    }
}
