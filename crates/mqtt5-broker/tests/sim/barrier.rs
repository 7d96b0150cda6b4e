//! The persist barrier's contract (`Action::barrier`), checked where it is hardest: an
//! acknowledgement on a new connection that vouches for what an earlier input of another
//! connection stored. A model of a sync driver runs the core's actions as the contract says,
//! with no batch committed (the broker could crash at any moment): no acknowledgement may
//! leave until the batches of what it confirms are committed.
//!
//! The case: a client's QoS 2 PUBLISH (or PUBREL) is stored in a batch that is not committed
//! yet, so its PUBREC (or PUBCOMP) is held; its connection goes (or is taken over); the client
//! connects again to its session and sends the packet again; the broker finds the packet's
//! state in memory and acknowledges it without storing anything. That acknowledgement, and
//! the CONNACK with Session Present 1 before it, must wait for the first batch: otherwise a
//! crash loses a message the client was told is stored ([MQTT-4.3.3-9], [MQTT-4.3.3-13]).

use mqtt5_broker::{Action, Barrier, Config, ConnId};
use mqtt5_codec::{
    Auth, AuthReason, Connect, Delivery, MqttString, Packet, PacketId, ProtocolVersion, PubRel,
    Publish, QoS, TopicName,
};
use mqtt5_store::Store;

use crate::backpressure::TwoStep;
use crate::harness::*;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A driver in sync durability, as `Action::barrier` asks for: batches are numbered in
/// order; an action waits for the last batch emitted before it where its barrier says so,
/// and behind a waiting action of its connection.
#[derive(Default)]
struct SyncDriver {
    /// Batches emitted.
    batches: usize,
    /// Batches committed (every batch up to this one).
    committed: usize,
    /// Sends that left, in order.
    left: Vec<(ConnId, Packet)>,
    /// Sends and closes held, each with the batch it waits for.
    held: Vec<(usize, ConnId, Option<Packet>)>,
}

impl SyncDriver {
    /// Runs the actions of one input.
    fn drain(&mut self, sim: &mut Sim) {
        let mut persisted = false;
        while let Some(action) = sim.broker.poll_action() {
            let barrier = action.barrier();
            let (conn, packet) = match action {
                Action::Persist(ops) => {
                    self.batches += 1;
                    persisted = true;
                    sim.store.apply(&ops).expect("store op inconsistent");
                    continue;
                }
                Action::Send { conn, packet } => (conn, Some(packet)),
                Action::Close { conn } => (conn, None),
                Action::CheckPassword(check) => {
                    sim.password_checks.push_back(check);
                    continue;
                }
                _ => continue,
            };
            let waits = match barrier {
                Barrier::Order => false,
                Barrier::OwnInput => persisted,
                Barrier::Earlier => true,
            } && self.batches > self.committed;
            let behind_its_connection = self.held.iter().any(|(_, c, _)| *c == conn);
            if waits || behind_its_connection {
                self.held.push((self.batches, conn, packet));
            } else if let Some(packet) = packet {
                self.left.push((conn, packet));
            }
        }
    }

    /// Hands `packet` from `conn` to the core and runs its actions.
    fn input(&mut self, sim: &mut Sim, conn: ConnId, packet: Packet) {
        sim.broker.handle_packet(sim.now, conn, packet);
        self.drain(sim);
    }

    /// Commits every batch emitted: everything held leaves, in order.
    fn commit_all(&mut self) {
        self.committed = self.batches;
        for (_, conn, packet) in self.held.drain(..) {
            if let Some(packet) = packet {
                self.left.push((conn, packet));
            }
        }
    }

    /// The acknowledgements that left for `conn`, by kind.
    fn acks_left(&self, conn: ConnId) -> Vec<&'static str> {
        self.left
            .iter()
            .filter(|(c, _)| *c == conn)
            .filter_map(|(_, p)| match p {
                Packet::ConnAck(_) => Some("CONNACK"),
                Packet::PubRec(_) => Some("PUBREC"),
                Packet::PubComp(_) => Some("PUBCOMP"),
                _ => None,
            })
            .collect()
    }
}

/// How the client comes back to its session.
#[derive(Debug, Clone, Copy)]
enum Return {
    /// After its connection was lost, Clean Start 0 and this Session Expiry Interval.
    Resume(u32),
    /// While its connection is still open (a takeover), Clean Start 0 and this expiry.
    Takeover(u32),
    /// MQTT 3.1.1, Clean Session 0, after its connection was lost.
    Resume311,
    /// Through an enhanced authentication exchange (CONNECT, then AUTH), after a loss.
    Authenticated(u32),
}

/// Which unacknowledged packet the client sends again.
#[derive(Debug, Clone, Copy)]
enum Resent {
    Publish,
    PubRel,
}

fn qos2_publish(id: u16, dup: bool) -> Packet {
    let mut p = Publish::new(TopicName::try_from("fan/out").unwrap(), &b"kept"[..]);
    p.delivery = Delivery::new(QoS::ExactlyOnce, PacketId::new(id).unwrap());
    p.dup = dup;
    Packet::Publish(p)
}

fn pubrel(id: u16) -> Packet {
    Packet::PubRel(PubRel::new(PacketId::new(id).unwrap()))
}

/// The CONNECT that returns to the session.
fn connect_for(back: Return) -> Connect {
    let mut c = match back {
        Return::Resume311 => connect_packet(V311, "pub", false),
        Return::Resume(secs) | Return::Takeover(secs) | Return::Authenticated(secs) => {
            persistent_connect("pub", false, secs)
        }
    };
    if matches!(back, Return::Authenticated(_)) {
        c.properties.authentication_method = Some(MqttString::try_from("TWO-STEP").unwrap());
    }
    c
}

/// Plays the case: returns the driver after the resent packet, and the new connection.
fn play(back: Return, resent: Resent) -> (SyncDriver, ConnId) {
    let mut services = open_services();
    services.enhanced = vec![Box::new(TwoStep)];
    let config = Config {
        client_records: false,
        ..quiet_config()
    };
    let mut sim = Sim::with_services(config, services);
    // A persistent subscriber, offline: the message is stored for it.
    let mut sub = persistent_connect("sub", true, 3600);
    sub.keep_alive = 0;
    let s = sim.connect_with(sub);
    sim.expect(s);
    sim.subscribe(s, "fan/#", QoS::ExactlyOnce);
    sim.lose(s);
    // The publisher's first connection, a persistent session, with everything so far
    // committed.
    let mut first = connect_for(back);
    if first.protocol.is_v5() {
        first.clean_start = true;
        first.properties.session_expiry_interval = Some(3600);
    }
    let p = sim.open(first.protocol);
    sim.send(p, Packet::Connect(Box::new(first)));
    if matches!(back, Return::Authenticated(_)) {
        complete_auth(&mut sim, p);
    }
    assert!(matches!(sim.expect(p), Packet::ConnAck(_)));
    let mut driver = SyncDriver::default();
    if matches!(resent, Resent::PubRel) {
        // The PUBLISH is stored and committed; the PUBREL's batch is the one that is not.
        sim.send(p, qos2_publish(7, false));
        assert!(matches!(sim.expect(p), Packet::PubRec(_)));
        driver.input(&mut sim, p, pubrel(7));
    } else {
        driver.input(&mut sim, p, qos2_publish(7, false));
    }
    assert_eq!(driver.batches, 1, "the packet's state is stored");
    assert!(driver.acks_left(p).is_empty(), "its acknowledgement waits");
    if !matches!(back, Return::Takeover(_)) {
        sim.broker.handle_connection_lost(sim.now, p);
        driver.drain(&mut sim);
    }
    let again = connect_for(back);
    let q = sim.open(again.protocol);
    driver.input(&mut sim, q, Packet::Connect(Box::new(again)));
    if matches!(back, Return::Authenticated(_)) {
        driver.input(&mut sim, q, auth_packet());
    }
    let packet = match resent {
        Resent::Publish => qos2_publish(7, true),
        Resent::PubRel => pubrel(7),
    };
    driver.input(&mut sim, q, packet);
    (driver, q)
}

fn auth_packet() -> Packet {
    let mut auth = Auth {
        reason: AuthReason::ContinueAuthentication,
        properties: Default::default(),
    };
    auth.properties.authentication_method = Some(MqttString::try_from("TWO-STEP").unwrap());
    Packet::Auth(Box::new(auth))
}

fn complete_auth(sim: &mut Sim, conn: ConnId) {
    assert!(matches!(sim.expect(conn), Packet::Auth(_)));
    sim.send(conn, auth_packet());
}

#[test]
fn connack_with_session_present_waits_for_every_earlier_batch() {
    let present = Packet::ConnAck(Box::new(mqtt5_codec::ConnAck {
        session_present: true,
        ..Default::default()
    }));
    let send = |packet| Action::Send {
        conn: ConnId(1),
        packet,
    };
    assert_eq!(send(present).barrier(), Barrier::Earlier);
    let fresh = Packet::ConnAck(Box::default());
    assert_eq!(send(fresh).barrier(), Barrier::OwnInput);
    assert_eq!(send(pubrel(1)).barrier(), Barrier::OwnInput);
    assert_eq!(send(qos2_publish(1, false)).barrier(), Barrier::Order);
    assert_eq!(Action::Close { conn: ConnId(1) }.barrier(), Barrier::Order);
    assert!(!send(pubrel(1)).is_acknowledgement());
}

#[test]
fn an_acknowledgement_on_a_new_connection_never_runs_ahead_of_an_earlier_batch() {
    for back in [
        Return::Resume(3600),
        Return::Resume(0),
        Return::Takeover(3600),
        Return::Takeover(0),
        Return::Resume311,
        Return::Authenticated(3600),
        Return::Authenticated(0),
    ] {
        for resent in [Resent::Publish, Resent::PubRel] {
            let (mut driver, q) = play(back, resent);
            assert!(
                driver.acks_left(q).is_empty(),
                "{back:?} {resent:?}: {:?} left before the first batch was committed",
                driver.acks_left(q)
            );
            driver.commit_all();
            let want = match resent {
                Resent::Publish => vec!["CONNACK", "PUBREC"],
                Resent::PubRel => vec!["CONNACK", "PUBCOMP"],
            };
            assert_eq!(driver.acks_left(q), want, "{back:?} {resent:?}");
            let present = driver
                .left
                .iter()
                .any(|(c, p)| *c == q && matches!(p, Packet::ConnAck(a) if a.session_present));
            assert!(present, "{back:?}: the session was resumed");
        }
    }
}
