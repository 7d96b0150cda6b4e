//! The subscription tree and the retained message tree, for the benchmarks only (feature
//! `bench`): thin wrappers that keep the trees themselves private to the crate.

use crate::retained::RetainedTree;
use crate::session::SessionId;
use crate::topic_tree::{Match, TopicTree};

/// Subscriptions, as the broker's subscription tree holds them: a value per session and filter.
#[derive(Debug, Default)]
pub struct Subscriptions(TopicTree<u32>);

impl Subscriptions {
    /// An empty tree.
    pub fn new() -> Self {
        Self(TopicTree::new())
    }

    /// Adds or replaces `session`'s subscription on `filter`; returns the value replaced.
    pub fn insert(&mut self, filter: &str, session: u32, value: u32) -> Option<u32> {
        self.0.insert(filter, SessionId(session), value)
    }

    /// Removes `session`'s subscription on `filter`; returns it.
    pub fn remove(&mut self, filter: &str, session: u32) -> Option<u32> {
        self.0.remove(filter, SessionId(session))
    }

    /// Visits every subscription matching `topic`: `(session, value)` for each ordinary one,
    /// and for each shared group its members' count as `(u32::MAX, members)`.
    pub fn for_each_match(&self, topic: &str, mut visit: impl FnMut(u32, u32)) {
        self.0.for_each_match(topic, |m| match m {
            Match::Direct { key, value } => visit(key.0, *value),
            Match::Shared { members, .. } => {
                visit(u32::MAX, u32::try_from(members.len()).unwrap_or(u32::MAX));
            }
        });
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nodes in use.
    pub fn node_count(&self) -> usize {
        self.0.node_count()
    }
}

/// Retained messages by topic, as the broker's retained tree holds them.
#[derive(Debug, Default)]
pub struct RetainedMessages(RetainedTree<u64>);

impl RetainedMessages {
    /// An empty tree.
    pub fn new() -> Self {
        Self(RetainedTree::new())
    }

    /// Sets the message of `topic`; returns the one replaced.
    pub fn insert(&mut self, topic: &str, value: u64) -> Option<u64> {
        self.0.insert(topic, value)
    }

    /// The message of `topic`.
    pub fn get(&self, topic: &str) -> Option<u64> {
        self.0.get(topic).copied()
    }

    /// Removes every message for which `keep` returns false; returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&u64) -> bool) -> usize {
        self.0.retain(|v| keep(v))
    }

    /// Visits every message whose topic matches `filter`.
    pub fn for_each_match(&self, filter: &str, mut visit: impl FnMut(u64)) {
        self.0.for_each_match(filter, |v| visit(*v));
    }

    /// How many messages there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
