//! `$SYS/broker/...` statistics, published as retained messages every
//! [`crate::Config::sys_interval`].

use std::time::Instant;

use mqtt5_codec::{Publish, TopicName};

use crate::deliver::ingest_sys;
use crate::state::Core;

/// Publishes the statistics now.
pub(crate) fn publish_sys(core: &mut Core, now: Instant) {
    let uptime = core.clock.uptime(now).as_secs();
    let s = &core.stats;
    let entries: [(&str, String); 20] = [
        ("$SYS/broker/version", core.config.version.clone()),
        ("$SYS/broker/uptime", format!("{uptime} seconds")),
        (
            "$SYS/broker/clients/connected",
            core.conns.connected().to_string(),
        ),
        ("$SYS/broker/clients/total", core.sessions.len().to_string()),
        ("$SYS/broker/clients/maximum", s.max_connected.to_string()),
        (
            "$SYS/broker/messages/received",
            s.messages_received.to_string(),
        ),
        ("$SYS/broker/messages/sent", s.messages_sent.to_string()),
        (
            "$SYS/broker/messages/dropped",
            s.messages_dropped.to_string(),
        ),
        ("$SYS/broker/bytes/received", s.bytes_received.to_string()),
        ("$SYS/broker/bytes/sent", s.bytes_sent.to_string()),
        (
            "$SYS/broker/subscriptions/count",
            core.router.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            core.router.retained_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/bytes",
            core.router.retained_bytes().to_string(),
        ),
        (
            "$SYS/broker/retained messages/refused",
            s.retained_refused.to_string(),
        ),
        (
            "$SYS/broker/messages/denied",
            s.denied_deliveries.to_string(),
        ),
        (
            "$SYS/broker/queued/bytes",
            core.sessions.queued_bytes().to_string(),
        ),
        (
            "$SYS/broker/queued/memory drops",
            s.queue_memory_drops.to_string(),
        ),
        (
            "$SYS/broker/clients/auth failures",
            s.auth_failures.to_string(),
        ),
        (
            "$SYS/broker/clients/ownership refusals",
            s.ownership_refusals.to_string(),
        ),
        // Connections whose input waits while the store is behind (`backpressure.rs`).
        (
            "$SYS/broker/clients/paused",
            core.conns.input_paused().to_string(),
        ),
    ];
    for (topic, value) in entries {
        let Ok(name) = TopicName::try_from(topic) else {
            continue;
        };
        let mut publish = Publish::new(name, value.into_bytes());
        publish.retain = true;
        ingest_sys(core, now, publish);
    }
}
