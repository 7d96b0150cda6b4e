//! Where messages go: the subscriptions of every session, the retained messages, and the
//! round robin of shared subscriptions.

use std::sync::Arc;

use crate::config::Config;
use crate::retained::RetainedTree;
use crate::session::{Message, SessionId, SubEntry};
use crate::topic_tree::{Match, TopicTree};

/// Whether a topic is in the broker's own `$SYS` namespace, which clients may read but not
/// write (MQTT 5 §4.7.2: the Server SHOULD prevent Clients from using `$` topics to exchange
/// messages with other Clients).
pub(crate) fn is_broker_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// The subscription tree and the retained message store.
#[derive(Debug, Default)]
pub(crate) struct Router {
    tree: TopicTree<SubEntry>,
    retained: RetainedTree<Arc<Message>>,
    /// Round-robin counter for shared subscriptions.
    share_counter: usize,
    /// The bytes of the retained messages (`$SYS` excluded), against
    /// [`Config::max_retained_bytes`].
    retained_bytes: usize,
    /// How many retained messages are `$SYS` ones (not counted against the limits).
    retained_sys: usize,
    /// Whether some retained message has a Message Expiry Interval.
    retained_expiring: bool,
}

impl Router {
    /// Adds or replaces a subscription; returns the one replaced.
    pub(crate) fn subscribe(
        &mut self,
        filter: &str,
        sid: SessionId,
        entry: SubEntry,
    ) -> Option<SubEntry> {
        self.tree.insert(filter, sid, entry)
    }

    /// Removes a subscription.
    pub(crate) fn unsubscribe(&mut self, filter: &str, sid: SessionId) {
        self.tree.remove(filter, sid);
    }

    /// Visits every subscription that matches `topic` ([`TopicTree::for_each_match`]).
    pub(crate) fn for_each_match<'a>(
        &'a self,
        topic: &str,
        visit: impl FnMut(Match<'a, SubEntry>),
    ) {
        self.tree.for_each_match(topic, visit);
    }

    /// How many subscriptions exist.
    pub(crate) fn subscription_count(&self) -> usize {
        self.tree.len()
    }

    /// The first member to try for the next message of a shared group of `len` members.
    pub(crate) const fn next_share_start(&mut self, len: usize) -> usize {
        self.share_counter = self.share_counter.wrapping_add(1);
        self.share_counter % len
    }

    /// Visits every retained message whose topic matches `filter`.
    pub(crate) fn for_each_retained<'a>(
        &'a self,
        filter: &str,
        visit: impl FnMut(&'a Arc<Message>),
    ) {
        self.retained.for_each_match(filter, visit);
    }

    /// Whether a retained message of `size` bytes on `topic` fits
    /// [`Config::max_retained_messages`] and [`Config::max_retained_bytes`], in place of what
    /// the topic holds.
    pub(crate) fn retained_fits(&self, config: &Config, topic: &str, size: usize) -> bool {
        let old = self.retained.get(topic).map(|m| m.size);
        let count = self.retained.len() - self.retained_sys + usize::from(old.is_none());
        let bytes = self.retained_bytes - old.unwrap_or(0) + size;
        count <= config.max_retained_messages && bytes <= config.max_retained_bytes
    }

    /// Keeps `message` as the retained message of `topic`, counting its bytes.
    pub(crate) fn retain(&mut self, topic: &str, message: Arc<Message>) {
        let sys = is_broker_topic(topic);
        let size = message.size;
        if message.expires_at.is_some() {
            self.retained_expiring = true;
        }
        match self.retained.insert(topic, message) {
            Some(old) if !sys => self.retained_bytes -= old.size,
            Some(_) => {}
            None if sys => self.retained_sys += 1,
            None => {}
        }
        if !sys {
            self.retained_bytes += size;
        }
    }

    /// Forgets the retained message of `topic`, counting its bytes; returns it.
    pub(crate) fn unretain(&mut self, topic: &str) -> Option<Arc<Message>> {
        let old = self.retained.remove(topic)?;
        if is_broker_topic(topic) {
            self.retained_sys -= 1;
        } else {
            self.retained_bytes -= old.size;
        }
        Some(old)
    }

    /// Whether some retained message may expire.
    pub(crate) const fn retained_expiring(&self) -> bool {
        self.retained_expiring
    }

    /// Drops the retained messages `expired` says yes to; returns their topics. Visits each
    /// retained message with an expiry through `expiring`.
    pub(crate) fn drop_expired_retained(
        &mut self,
        mut expired: impl FnMut(&Message) -> bool,
        mut expiring: impl FnMut(&Message),
    ) -> Vec<String> {
        let mut cleared = Vec::new();
        let mut freed = 0;
        let mut still_expiring = false;
        self.retained.retain(|m| {
            if expired(m) {
                cleared.push(m.publish.topic().to_owned());
                freed += m.size;
                return false;
            }
            if m.expires_at.is_some() {
                still_expiring = true;
                expiring(m);
            }
            true
        });
        // `$SYS` messages never expire: every one cleared here was counted.
        self.retained_bytes = self.retained_bytes.saturating_sub(freed);
        self.retained_expiring = still_expiring;
        cleared
    }

    /// How many retained messages exist.
    pub(crate) fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// The bytes of the retained messages, `$SYS` ones excluded.
    pub(crate) const fn retained_bytes(&self) -> usize {
        self.retained_bytes
    }

    /// Whether nothing is retained and nobody subscribes.
    pub(crate) fn is_empty(&self) -> bool {
        self.retained.is_empty() && self.tree.is_empty()
    }
}
