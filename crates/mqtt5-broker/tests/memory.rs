//! What an idle connection costs the core: the heap bytes it holds per connected client
//! (MQTT 5, Clean Start, keep-alive 60, no subscriptions), counted by this test binary's own
//! global allocator. The count is the bytes the core asked for, whatever the allocator and
//! the machine; the test binary holds this one test, so nothing else allocates meanwhile.
//!
//! The broker must hold 100k+ connections, and the binary's target is at most 1,000 bytes of
//! resident memory per idle connection, everything included (the driver's socket state, the
//! core, the store, the allocator's own overhead). This test bounds the core's share, so that
//! a field added to `Conn` or `Session` cannot grow it unnoticed. It is a count of bytes, not
//! a measurement of time.

use std::net::SocketAddr;
use std::time::Instant;

use cap::Cap;
use mqtt5_broker::{AllowAll, Broker, Config, ConnId, Passwords, PeerInfo, RandomSource, Services};
use mqtt5_codec::{Connect, MqttString, Packet, ProtocolVersion};

/// The system allocator, counting the bytes allocated through it (no limit).
#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// The heap bytes this process holds now.
fn live_bytes() -> i64 {
    i64::try_from(ALLOCATOR.allocated()).expect("less than 2^63 bytes")
}

struct Xorshift(u64);

impl RandomSource for Xorshift {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// Connects `n` clients to a fresh core; returns the live heap bytes per client.
fn bytes_per_idle_client(n: u64) -> f64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "one instant for the whole test: no time passes in the core"
    )]
    let now = Instant::now();
    let services = Services {
        passwords: Passwords::NoUsers,
        authorizer: Box::new(AllowAll),
        enhanced: Vec::new(),
        random: Box::new(Xorshift(0x9E37_79B9_7F4A_7C15)),
    };
    let mut broker = Broker::new(Config::default(), services, now, 1_700_000_000_000)
        .expect("a broker with the default configuration");
    let addr: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
    // Warm up: the first connections allocate tables and buffers that are not per client.
    let connect = |broker: &mut Broker, i: u64| {
        let id = ConnId(i);
        broker
            .handle_connection(now, id, PeerInfo::new(addr))
            .expect("a new connection id");
        let packet = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: MqttString::try_from(format!("idle-{i:06}")).expect("a client id"),
            ..Connect::default()
        };
        broker.handle_packet(now, id, Packet::from(packet));
        while broker.poll_action().is_some() {}
    };
    for i in 0..n {
        connect(&mut broker, i);
    }
    let before = live_bytes();
    for i in n..2 * n {
        connect(&mut broker, i);
    }
    let after = live_bytes();
    assert_eq!(broker.connected_clients(), (2 * n) as usize);
    (after - before) as f64 / n as f64
}

#[test]
fn an_idle_connection_costs_the_core_at_most_560_bytes() {
    // 468 bytes at the time of writing: a boxed `Conn`, a `Session` slot (224), the
    // client-id and connection tables, the shared client id and a `ConnId` in a keep-alive
    // bucket. The count is exact for a given build: the same bytes on every machine.
    // 2^15 clients, then 2^15 more: tables double at powers of two, so the second half sees
    // one doubling of each, as a real broker would on its way up.
    let per_client = bytes_per_idle_client(1 << 15);
    eprintln!("core heap per idle client: {per_client:.0} bytes");
    assert!(
        per_client <= 560.0,
        "an idle connection costs the core {per_client:.0} bytes"
    );
}
