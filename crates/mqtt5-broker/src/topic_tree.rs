//! The subscription tree: topic filters stored level by level in a trie and matched against
//! topic names (MQTT 5 §4.7), with shared subscription groups (§4.8.2).
//!
//! ```text
//! filters  a/b  a/+  a/#  #  $share/g/a/+
//!
//! root ─┬─ "a" ─┬─ "b"   a/b
//!       │       ├─ +     a/+, and group "g" of $share/g/a/+
//!       │       └─ #     a/#
//!       └─ #             #
//! ```
//!
//! A topic is matched by walking its levels down the trie: at each node the literal child
//! named by the next level and the `+` child are followed, and the `#` child matches
//! whatever is left, the parent level included (`sport/#` matches `sport`).
//!
//! - Nodes live in one arena and name each other by index; freed slots are reused, so
//!   subscribe/unsubscribe churn does not grow memory. Every walk is a loop, never a
//!   recursion, so a filter of tens of thousands of levels (a 64 KiB string of slashes) can
//!   neither overflow the stack when it is matched or removed nor when the tree is dropped.
//! - A lookup does not allocate unless more than [`INLINE_FRAMES`] branches are pending at
//!   once. Its matches come in an order fixed by the tree's contents, never by hash seeds.
//! - Literal levels are [`Level`] keys, short ones stored inline, in maps with std's randomly
//!   seeded hasher: levels come from clients, and a keyed hash keeps crafted collisions from
//!   turning lookups into scans. No map is ever iterated, so the seed changes no output.
//!
//! The nodes live in a [`crate::trie::Arena`], keyed by [`Level`] as the retained tree's.

use std::collections::HashMap;
use std::fmt;
use std::mem;

use crate::id_hash::IdHash;
use crate::session::SessionId;
use crate::trie::{Arena, Level, ROOT, split_level};

/// The prefix of a shared subscription's filter, `$share/{ShareName}/{filter}` (`[MQTT-4.8.2-1]`).
const SHARE_PREFIX: &str = "$share/";
/// Branches a lookup keeps pending in a fixed array before it spills to the heap.
const INLINE_FRAMES: usize = 16;
/// Subscribers on one filter above which their positions are kept in a hash map.
const INDEX_ABOVE: usize = 16;
/// Subscribers on one filter below which that hash map is dropped again.
const UNINDEX_BELOW: usize = 8;

/// One subscription that matches a topic, as [`TopicTree::for_each_match`] reports it.
#[derive(Debug)]
pub(crate) enum Match<'a, V> {
    /// An ordinary subscription.
    Direct {
        /// The subscribing session.
        key: SessionId,
        /// Its subscription.
        value: &'a V,
    },
    /// A shared subscription group that matches: the caller picks one member.
    /// `filter` is the whole "$share/..." filter string, `members` in insertion order (stable,
    /// so round-robin by index works).
    Shared {
        /// The whole filter, `$share/{ShareName}/{filter}`.
        filter: &'a str,
        /// The sessions of the group with their subscriptions, in the order they joined.
        members: &'a [(SessionId, V)],
    },
}

/// The subscriptions of all sessions, indexed by topic filter level (MQTT 5 §4.7, §4.8.2).
pub(crate) struct TopicTree<V> {
    /// The nodes; the root is [`ROOT`].
    nodes: Arena<Node<V>>,
    /// Subscriptions stored, shared members included.
    len: usize,
}

/// One level of the trie.
struct Node<V> {
    /// Children named by a literal level (possibly empty: `a//b` has an empty middle level).
    children: HashMap<Level, usize>,
    /// The `+` child.
    plus: Option<usize>,
    /// The `#` child. Only its `subs` are used: `#` is always a filter's last level.
    hash: Option<usize>,
    /// The subscriptions whose filter ends at this node.
    subs: Slot<V>,
}

/// The subscriptions on one matching filter.
struct Slot<V> {
    /// Ordinary subscriptions.
    direct: Subscribers<V>,
    /// Shared subscription groups, one per share name, in the order they were created.
    shared: Vec<SharedGroup<V>>,
}

/// The members of one shared subscription `$share/{name}/{filter}` (§4.8.2).
struct SharedGroup<V> {
    /// The share name.
    name: Box<str>,
    /// The whole filter string, `$share/` prefix included.
    filter: Box<str>,
    /// The member sessions in the order they joined.
    members: Vec<(SessionId, V)>,
}

/// The ordinary subscriptions on one filter: a list, indexed by session once it grows long.
struct Subscribers<V> {
    /// The subscriptions. Removal swaps the last one into the gap.
    list: Vec<(SessionId, V)>,
    /// Each session's position in `list`, kept while `list` is long.
    index: Option<Box<PositionIndex>>,
}

/// Positions of sessions in a [`Subscribers`] list.
struct PositionIndex(HashMap<SessionId, usize, IdHash>);

/// One edge out of a node, named by a filter level.
#[derive(Debug, Clone, Copy)]
enum Edge<'f> {
    /// A literal level.
    Literal(&'f str),
    /// The single-level wildcard `+`.
    Plus,
    /// The multi-level wildcard `#`.
    Hash,
}

impl<'f> Edge<'f> {
    /// The edge a filter level names.
    fn of(level: &'f str) -> Self {
        match level {
            "+" => Self::Plus,
            "#" => Self::Hash,
            literal => Self::Literal(literal),
        }
    }
}

impl<V> TopicTree<V> {
    /// An empty tree.
    pub(crate) fn new() -> Self {
        Self {
            nodes: Arena::new(),
            len: 0,
        }
    }

    /// Inserts or replaces `key`'s subscription on `filter`; returns the value replaced.
    ///
    /// `filter` is the whole filter string as the client sent it, already validated by the
    /// codec: `a/+/c`, `#`, or `$share/group/a/#` (a shared subscription, `[MQTT-4.8.2-1]`:
    /// share name `group`, matching filter `a/#`).
    ///
    /// A session subscribing again to a shared filter keeps its place among the members.
    pub(crate) fn insert(&mut self, filter: &str, key: SessionId, value: V) -> Option<V> {
        let (share, matching) = split_share(filter);
        let id = self.find_or_create(matching);
        let node = self.nodes.get_mut(id)?;
        let replaced = match share {
            None => node.subs.direct.insert(key, value),
            Some(name) => node.subs.insert_shared(name, filter, key, value),
        };
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes `key`'s subscription on `filter`; returns it.
    ///
    /// Nodes left empty are pruned and their slots reused, so churn does not grow memory.
    pub(crate) fn remove(&mut self, filter: &str, key: SessionId) -> Option<V> {
        let (share, matching) = split_share(filter);
        // The way down, to prune it bottom-up afterwards.
        let mut path = Vec::new();
        let mut id = ROOT;
        for level in matching.split('/') {
            let edge = Edge::of(level);
            let child = self.nodes.get(id)?.child(edge)?;
            path.push((id, edge));
            id = child;
        }
        let subs = &mut self.nodes.get_mut(id)?.subs;
        let removed = match share {
            None => subs.direct.remove(key),
            Some(name) => subs.remove_shared(name, key),
        }?;
        self.len = self.len.saturating_sub(1);
        while let Some((parent, edge)) = path.pop() {
            if !self.nodes.get(id).is_some_and(Node::is_empty) {
                break;
            }
            if let Some(parent) = self.nodes.get_mut(parent) {
                parent.set_child(edge, None);
            }
            self.nodes.release(id);
            id = parent;
        }
        Some(removed)
    }

    /// Looks up one subscription.
    #[cfg(test)]
    pub(crate) fn get(&self, filter: &str, key: SessionId) -> Option<&V> {
        let (share, matching) = split_share(filter);
        let mut id = ROOT;
        for level in matching.split('/') {
            id = self.nodes.get(id)?.child(Edge::of(level))?;
        }
        let subs = &self.nodes.get(id)?.subs;
        match share {
            None => subs.direct.get(key),
            Some(name) => subs
                .shared
                .iter()
                .find(|g| &*g.name == name)?
                .members
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v),
        }
    }

    /// Visits every subscription matching the topic name `topic`.
    ///
    /// `+` matches exactly one level, an empty one included, `[MQTT-4.7.1-2]`; `#` matches
    /// the parent level and any number of child levels, `[MQTT-4.7.1-1]`. Filters whose first
    /// level is a wildcard do not match topics that start with `$`, `[MQTT-4.7.2-1]`. Levels
    /// compare byte for byte, with no normalisation, `[MQTT-4.7.3-4]`.
    ///
    /// Each matching ordinary subscription is visited once, then each matching shared group
    /// once (`[MQTT-4.8.2-2]`: the `$share/{ShareName}/` part takes no part in matching).
    pub(crate) fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(Match<'a, V>)) {
        let Some(root) = self.nodes.get(ROOT) else {
            return;
        };
        let mut pending = PendingStack::new();
        let (level, rest) = split_level(topic);
        // [MQTT-4.7.2-1]: `#` and `+` at the root do not match `$` topics.
        if !topic.starts_with('$') {
            if let Some(hash) = root.hash {
                self.visit_subs(hash, &mut visit);
            }
            if let Some(plus) = root.plus {
                pending.push((plus, rest));
            }
        }
        if let Some(&child) = root.children.get(level.as_bytes()) {
            pending.push((child, rest));
        }
        while let Some((id, rest)) = pending.pop() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            // The parent level and everything below it [MQTT-4.7.1-1].
            if let Some(hash) = node.hash {
                self.visit_subs(hash, &mut visit);
            }
            match rest {
                None => node.subs.visit(&mut visit),
                Some(rest) => {
                    let (level, rest) = split_level(rest);
                    if let Some(plus) = node.plus {
                        pending.push((plus, rest));
                    }
                    if let Some(&child) = node.children.get(level.as_bytes()) {
                        pending.push((child, rest));
                    }
                }
            }
        }
    }

    /// Number of subscriptions (shared members included).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when no session subscribes to anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes in use, the root excepted: zero once every subscription is removed.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.in_use()
    }

    /// Visits the subscriptions stored at node `id`.
    fn visit_subs<'a>(&'a self, id: usize, visit: &mut impl FnMut(Match<'a, V>)) {
        if let Some(node) = self.nodes.get(id) {
            node.subs.visit(visit);
        }
    }

    /// The node for the matching filter `matching`, created with its ancestors if missing.
    fn find_or_create(&mut self, matching: &str) -> usize {
        let mut id = ROOT;
        for level in matching.split('/') {
            let edge = Edge::of(level);
            id = match self.nodes.get(id).and_then(|node| node.child(edge)) {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc(Node::default());
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.set_child(edge, Some(child));
                    }
                    child
                }
            };
        }
        id
    }
}

impl<V> Default for TopicTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for TopicTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicTree")
            .field("len", &self.len)
            .field("nodes", &self.nodes.in_use())
            .finish_non_exhaustive()
    }
}

impl<V> Node<V> {
    /// The child along `edge`, if any.
    fn child(&self, edge: Edge<'_>) -> Option<usize> {
        match edge {
            Edge::Literal(level) => self.children.get(level.as_bytes()).copied(),
            Edge::Plus => self.plus,
            Edge::Hash => self.hash,
        }
    }

    /// Links (`Some`) or unlinks (`None`) the child along `edge`.
    fn set_child(&mut self, edge: Edge<'_>, child: Option<usize>) {
        match (edge, child) {
            (Edge::Literal(level), Some(child)) => {
                self.children.insert(Level::new(level), child);
            }
            (Edge::Literal(level), None) => {
                self.children.remove(level.as_bytes());
                if self.children.is_empty() {
                    self.children = HashMap::new();
                } else if self.children.len() * 4 < self.children.capacity() {
                    self.children.shrink_to(self.children.len() * 2);
                }
            }
            (Edge::Plus, child) => self.plus = child,
            (Edge::Hash, child) => self.hash = child,
        }
    }

    /// True when the node holds no subscription and has no child.
    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            hash: None,
            subs: Slot {
                direct: Subscribers {
                    list: Vec::new(),
                    index: None,
                },
                shared: Vec::new(),
            },
        }
    }
}

impl<V> Slot<V> {
    /// True when no subscription ends here.
    fn is_empty(&self) -> bool {
        self.direct.list.is_empty() && self.shared.is_empty()
    }

    /// Visits the ordinary subscriptions, then the shared groups.
    fn visit<'a>(&'a self, visit: &mut impl FnMut(Match<'a, V>)) {
        for (key, value) in &self.direct.list {
            visit(Match::Direct { key: *key, value });
        }
        for group in &self.shared {
            visit(Match::Shared {
                filter: &group.filter,
                members: &group.members,
            });
        }
    }

    /// Adds `key` to the group `name` (created if missing), or replaces its entry in place.
    fn insert_shared(&mut self, name: &str, filter: &str, key: SessionId, value: V) -> Option<V> {
        let Some(group) = self.shared.iter_mut().find(|g| &*g.name == name) else {
            self.shared.push(SharedGroup {
                name: name.into(),
                filter: filter.into(),
                members: vec![(key, value)],
            });
            return None;
        };
        if let Some((_, old)) = group.members.iter_mut().find(|(k, _)| *k == key) {
            return Some(mem::replace(old, value));
        }
        group.members.push((key, value));
        None
    }

    /// Removes `key` from the group `name`, keeping the others' order; an empty group goes.
    fn remove_shared(&mut self, name: &str, key: SessionId) -> Option<V> {
        let g = self.shared.iter().position(|g| &*g.name == name)?;
        let group = self.shared.get_mut(g)?;
        let m = group.members.iter().position(|(k, _)| *k == key)?;
        let (_, value) = group.members.remove(m);
        if group.members.is_empty() {
            self.shared.remove(g);
            shrink(&mut self.shared);
        } else {
            shrink(&mut group.members);
        }
        Some(value)
    }
}

impl<V> Subscribers<V> {
    /// Where `key` is in `list`.
    fn position(&self, key: SessionId) -> Option<usize> {
        match &self.index {
            Some(index) => index.0.get(&key).copied(),
            None => self.list.iter().position(|(k, _)| *k == key),
        }
    }

    /// `key`'s subscription.
    #[cfg(test)]
    fn get(&self, key: SessionId) -> Option<&V> {
        self.list.get(self.position(key)?).map(|(_, v)| v)
    }

    /// Inserts or replaces `key`'s subscription; returns the one replaced.
    fn insert(&mut self, key: SessionId, value: V) -> Option<V> {
        if let Some((_, old)) = self.position(key).and_then(|i| self.list.get_mut(i)) {
            return Some(mem::replace(old, value));
        }
        self.list.push((key, value));
        match &mut self.index {
            Some(index) => {
                index.0.insert(key, self.list.len() - 1);
            }
            None if self.list.len() > INDEX_ABOVE => {
                let positions = self.list.iter().enumerate().map(|(i, (k, _))| (*k, i));
                self.index = Some(Box::new(PositionIndex(positions.collect())));
            }
            None => {}
        }
        None
    }

    /// Removes `key`'s subscription in O(1): the last one moves into its place.
    fn remove(&mut self, key: SessionId) -> Option<V> {
        let i = self.position(key).filter(|&i| i < self.list.len())?;
        let (_, value) = self.list.swap_remove(i);
        if let Some(index) = &mut self.index {
            index.0.remove(&key);
            if let Some((moved, _)) = self.list.get(i) {
                index.0.insert(*moved, i);
            }
            if self.list.len() < UNINDEX_BELOW {
                self.index = None;
            }
        }
        shrink(&mut self.list);
        Some(value)
    }
}

/// Gives back most of a list's spare capacity once it is mostly unused.
fn shrink<T>(list: &mut Vec<T>) {
    if list.capacity() > 8 && list.len() * 4 < list.capacity() {
        list.shrink_to(list.len() * 2);
    }
}

/// Splits a filter into its share name, for `$share/{ShareName}/{filter}`, and the filter
/// that topics are matched against (`[MQTT-4.8.2-2]`).
fn split_share(filter: &str) -> (Option<&str>, &str) {
    filter
        .strip_prefix(SHARE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map_or((None, filter), |(name, matching)| (Some(name), matching))
}

/// A lookup's pending branch: a node, and the topic levels still to match below it.
type Frame<'t> = (usize, Option<&'t str>);

/// The branches a lookup has still to explore: a fixed array first, then the heap.
struct PendingStack<'t> {
    /// The first [`INLINE_FRAMES`] frames.
    inline: [Frame<'t>; INLINE_FRAMES],
    /// Frames in use in `inline`.
    len: usize,
    /// Frames pushed while `inline` was full; they are popped first.
    spill: Vec<Frame<'t>>,
}

impl<'t> PendingStack<'t> {
    /// An empty stack; it allocates nothing.
    fn new() -> Self {
        Self {
            inline: [(ROOT, None); INLINE_FRAMES],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// Pushes a frame.
    fn push(&mut self, frame: Frame<'t>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = frame;
                self.len += 1;
            }
            None => self.spill.push(frame),
        }
    }

    /// Pops the frame pushed last.
    fn pop(&mut self) -> Option<Frame<'t>> {
        if let Some(frame) = self.spill.pop() {
            return Some(frame);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get(self.len).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reference matcher for one filter and one topic, written from §4.7 level by level.
    fn naive_matches(filter: &str, topic: &str) -> bool {
        // [MQTT-4.7.2-1]
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let filter: Vec<&str> = filter.split('/').collect();
        let topic: Vec<&str> = topic.split('/').collect();
        let mut i = 0;
        loop {
            match (filter.get(i), topic.get(i)) {
                // `#` matches the parent and any number of child levels [MQTT-4.7.1-1].
                (Some(&"#"), _) => return true,
                (None, None) => return true,
                (Some(&"+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                _ => return false,
            }
            i += 1;
        }
    }

    /// Sessions whose direct subscriptions match `topic`, sorted.
    fn direct_matches(tree: &TopicTree<u32>, topic: &str) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |m| {
            if let Match::Direct { key, value } = m {
                out.push((key.0, *value));
            }
        });
        out.sort_unstable();
        out
    }

    /// A matching shared group as the tests compare it: share name, whole filter, and
    /// (session, value) of the members in order.
    type GroupMatch = (String, String, Vec<(u32, u32)>);

    /// Shared groups that match `topic`, sorted.
    fn shared_matches(tree: &TopicTree<u32>, topic: &str) -> Vec<GroupMatch> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |m| {
            if let Match::Shared { filter, members } = m {
                let members = members.iter().map(|(k, v)| (k.0, *v)).collect();
                let group = filter.split('/').nth(1).unwrap_or_default();
                out.push((group.to_owned(), filter.to_owned(), members));
            }
        });
        out.sort();
        out
    }

    /// (filter, topic, matches, the rule) from §4.7 and its examples.
    #[rustfmt::skip]
    const RULES: &[(&str, &str, bool, &str)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1",                 true,  "[MQTT-4.7.1-1] the parent level"),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking",         true,  "[MQTT-4.7.1-1]"),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true,  "[MQTT-4.7.1-1]"),
        ("sport/tennis/player1/#", "sport/tennis/player2",                 false, "[MQTT-4.7.1-1]"),
        ("sport/#",                "sport",                                true,  "[MQTT-4.7.1-1] # includes the parent"),
        ("sport/#",                "sports",                               false, "[MQTT-4.7.1-1] whole levels only"),
        ("#",                      "sport/tennis",                         true,  "[MQTT-4.7.1-1] # alone"),
        ("#",                      "/",                                    true,  "[MQTT-4.7.1-1] # alone"),
        ("sport/tennis/+",         "sport/tennis/player1",                 true,  "[MQTT-4.7.1-2]"),
        ("sport/tennis/+",         "sport/tennis/player1/ranking",         false, "[MQTT-4.7.1-2] one level"),
        ("sport/+",                "sport",                                false, "[MQTT-4.7.1-2] + needs a level"),
        ("sport/+",                "sport/",                               true,  "[MQTT-4.7.1-2] + matches an empty level"),
        ("+/+",                    "/finance",                             true,  "[MQTT-4.7.1-2] a leading empty level"),
        ("/+",                     "/finance",                             true,  "[MQTT-4.7.1-2]"),
        ("+",                      "/finance",                             false, "[MQTT-4.7.1-2]"),
        ("+/tennis/#",             "sport/tennis",                         true,  "[MQTT-4.7.1-2] with #"),
        ("a/+/#",                  "a/b",                                  true,  "+ then # matching the parent"),
        ("a/+/#",                  "a",                                    false, "+ needs a level before #"),
        ("+/#",                    "a",                                    true,  "+ then # matching the parent"),
        ("#",                      "$SYS/monitor/Clients",                 false, "[MQTT-4.7.2-1]"),
        ("+/monitor/Clients",      "$SYS/monitor/Clients",                 false, "[MQTT-4.7.2-1]"),
        ("+/#",                    "$SYS",                                 false, "[MQTT-4.7.2-1]"),
        ("+",                      "$",                                    false, "[MQTT-4.7.2-1]"),
        ("$SYS/#",                 "$SYS/monitor/Clients",                 true,  "[MQTT-4.7.2-1] a literal $ level"),
        ("$SYS/#",                 "$SYS",                                 true,  "[MQTT-4.7.2-1] a literal $ level, parent"),
        ("$SYS/monitor/+",         "$SYS/monitor/Clients",                 true,  "[MQTT-4.7.2-1]"),
        ("a/+",                    "a/$x",                                 true,  "$ matters in the first level only"),
        ("a/#",                    "a/$x/y",                               true,  "$ matters in the first level only"),
        ("ACCOUNTS",               "Accounts",                             false, "[MQTT-4.7.3-4] case sensitive"),
        ("Accounts payable",       "Accounts payable",                     true,  "[MQTT-4.7.3-4] spaces"),
        ("/finance",               "finance",                              false, "[MQTT-4.7.3-4] a leading /"),
        ("finance",                "/finance",                             false, "[MQTT-4.7.3-4] a leading /"),
        ("finance/",               "finance",                              false, "[MQTT-4.7.3-4] a trailing /"),
        ("/",                      "/",                                    true,  "two empty levels"),
        ("a//b",                   "a//b",                                 true,  "an empty level"),
        ("a/+/b",                  "a//b",                                 true,  "+ matches an empty level"),
        ("a/b",                    "a//b",                                 false, "empty levels are levels"),
        ("+/+/+",                  "a//",                                  true,  "trailing empty levels"),
        ("a/#",                    "ab",                                   false, "whole levels only"),
    ];

    #[test]
    fn matching_follows_section_4_7_rules() {
        for &(filter, topic, expected, rule) in RULES {
            let mut tree = TopicTree::new();
            tree.insert(filter, SessionId(1), 0);
            let got = !direct_matches(&tree, topic).is_empty();
            assert_eq!(got, expected, "{filter:?} vs {topic:?}: {rule}");
            assert_eq!(naive_matches(filter, topic), expected, "reference: {rule}");
        }
    }

    #[test]
    fn shared_filters_match_like_their_filter_without_the_share_prefix() {
        // [MQTT-4.8.2-2]: the `$share/{ShareName}/` part is not used for matching.
        for &(filter, topic, expected, rule) in RULES {
            let shared = format!("$share/g/{filter}");
            let mut tree = TopicTree::new();
            tree.insert(&shared, SessionId(1), 0);
            let got = shared_matches(&tree, topic);
            assert_eq!(!got.is_empty(), expected, "{shared:?} vs {topic:?}: {rule}");
            if expected {
                assert_eq!(got, [("g".to_owned(), shared.clone(), vec![(1, 0)])]);
            }
        }
    }

    #[test]
    fn all_matching_filters_are_visited_once() {
        let mut tree = TopicTree::new();
        let filters = [
            "a/b/c", "a/+/c", "a/#", "#", "+/b/#", "a/b/+", "+/+/+", "a/b", "x/#",
        ];
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, SessionId(i as u32), i as u32);
        }
        let got: Vec<u32> = direct_matches(&tree, "a/b/c").iter().map(|m| m.0).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5, 6]);
        assert!(direct_matches(&tree, "$a/b/c").is_empty(), "[MQTT-4.7.2-1]");
    }

    #[test]
    fn insert_replaces_and_returns_the_previous_value() {
        let mut tree = TopicTree::new();
        assert_eq!(tree.insert("a/+", SessionId(1), 10), None);
        assert_eq!(tree.insert("a/+", SessionId(2), 20), None);
        assert_eq!(tree.insert("a/+", SessionId(1), 11), Some(10));
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.get("a/+", SessionId(1)), Some(&11));
        assert_eq!(tree.get("a/+", SessionId(3)), None);
        assert_eq!(tree.get("a", SessionId(1)), None);
        assert_eq!(tree.get("a/+/b", SessionId(1)), None);
        assert_eq!(direct_matches(&tree, "a/x"), [(1, 11), (2, 20)]);
    }

    #[test]
    fn removing_every_subscription_prunes_every_node() {
        let mut tree = TopicTree::new();
        let filters = [
            "a/b/c",
            "a/+/c",
            "a/#",
            "#",
            "+",
            "a//",
            "/",
            "$share/g/a/b/#",
            "$share/h/#",
        ];
        for (i, f) in filters.iter().enumerate() {
            for s in 0..3 {
                tree.insert(f, SessionId(s), i as u32);
            }
        }
        assert_eq!(tree.len(), filters.len() * 3);
        assert!(tree.node_count() > 0);
        for (i, f) in filters.iter().enumerate().rev() {
            for s in 0..3 {
                assert_eq!(tree.remove(f, SessionId(s)), Some(i as u32), "{f}");
                assert_eq!(tree.remove(f, SessionId(s)), None, "{f} twice");
            }
        }
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 0);
        let root = tree.nodes.get(ROOT).unwrap();
        assert!(root.is_empty() && root.children.capacity() == 0);
    }

    #[test]
    fn removing_a_filter_keeps_its_ancestors_and_descendants() {
        let mut tree = TopicTree::new();
        for (i, f) in ["a", "a/b", "a/+", "a/#", "a/b/c"].iter().enumerate() {
            tree.insert(f, SessionId(i as u32), i as u32);
        }
        let nodes = tree.node_count();
        assert_eq!(tree.remove("a", SessionId(0)), Some(0));
        assert_eq!(tree.node_count(), nodes, "a is still the parent of a/b");
        assert_eq!(direct_matches(&tree, "a"), [(3, 3)]);
        assert_eq!(direct_matches(&tree, "a/b"), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(tree.remove("a/b", SessionId(1)), Some(1));
        assert_eq!(direct_matches(&tree, "a/b/c"), [(3, 3), (4, 4)]);
        assert_eq!(tree.remove("a/b/c", SessionId(4)), Some(4));
        assert_eq!(tree.node_count(), 3, "a, + and #");
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut tree = TopicTree::new();
        tree.insert("a/b", SessionId(1), 1);
        tree.insert("$share/g/a/b", SessionId(1), 2);
        let nodes = tree.node_count();
        assert_eq!(tree.remove("a/b", SessionId(2)), None);
        assert_eq!(tree.remove("a", SessionId(1)), None);
        assert_eq!(tree.remove("a/b/c", SessionId(1)), None);
        assert_eq!(tree.remove("a/+", SessionId(1)), None);
        assert_eq!(tree.remove("$share/h/a/b", SessionId(1)), None);
        assert_eq!(tree.remove("$share/g/a/b", SessionId(2)), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.node_count(), nodes);
    }

    #[test]
    fn shared_subscriptions_form_one_group_per_share_name_and_filter() {
        // [MQTT-4.8.2-1], [MQTT-4.8.2-2]; §4.8.2's consumer1/consumer2 example.
        let mut tree = TopicTree::new();
        tree.insert("$share/consumer1/sport/tennis/+", SessionId(1), 1);
        tree.insert("$share/consumer1/sport/tennis/+", SessionId(2), 2);
        tree.insert("$share/consumer2/sport/tennis/+", SessionId(3), 3);
        tree.insert("$share/consumer1/sport/#", SessionId(4), 4);
        tree.insert("sport/tennis/+", SessionId(5), 5);
        tree.insert("$share/consumer1//finance", SessionId(6), 6);
        assert_eq!(tree.len(), 6);
        assert_eq!(direct_matches(&tree, "sport/tennis/player1"), [(5, 5)]);
        let groups = shared_matches(&tree, "sport/tennis/player1");
        let expected = [
            ("consumer1", "$share/consumer1/sport/#", vec![(4, 4)]),
            (
                "consumer1",
                "$share/consumer1/sport/tennis/+",
                vec![(1, 1), (2, 2)],
            ),
            ("consumer2", "$share/consumer2/sport/tennis/+", vec![(3, 3)]),
        ]
        .map(|(g, f, m)| (g.to_owned(), f.to_owned(), m));
        assert_eq!(groups, expected);
        assert_eq!(shared_matches(&tree, "/finance").len(), 1);
        assert!(shared_matches(&tree, "finance").is_empty());
        assert_eq!(
            tree.get("$share/consumer1/sport/tennis/+", SessionId(2)),
            Some(&2)
        );
        assert_eq!(
            tree.get("$share/consumer2/sport/tennis/+", SessionId(2)),
            None
        );
        assert_eq!(tree.get("sport/tennis/+", SessionId(1)), None);
    }

    #[test]
    fn shared_members_keep_their_order_through_resubscribe_and_removal() {
        let filter = "$share/g/a/+";
        let mut tree = TopicTree::new();
        for s in 1..=4 {
            tree.insert(filter, SessionId(s), s * 10);
        }
        assert_eq!(
            tree.insert(filter, SessionId(2), 21),
            Some(20),
            "replaced in place"
        );
        let members = |tree: &TopicTree<u32>| shared_matches(tree, "a/x")[0].2.clone();
        assert_eq!(members(&tree), [(1, 10), (2, 21), (3, 30), (4, 40)]);
        assert_eq!(tree.remove(filter, SessionId(2)), Some(21));
        assert_eq!(members(&tree), [(1, 10), (3, 30), (4, 40)]);
        tree.insert(filter, SessionId(2), 22);
        assert_eq!(members(&tree), [(1, 10), (3, 30), (4, 40), (2, 22)]);
        for s in 1..=4 {
            assert!(tree.remove(filter, SessionId(s)).is_some());
        }
        assert!(
            shared_matches(&tree, "a/x").is_empty(),
            "the last member ends the group"
        );
        assert_eq!(tree.node_count(), 0);
    }

    #[test]
    fn a_session_may_hold_direct_and_shared_subscriptions_on_one_filter() {
        let mut tree = TopicTree::new();
        assert_eq!(tree.insert("a", SessionId(1), 1), None);
        assert_eq!(tree.insert("$share/g/a", SessionId(1), 2), None);
        assert_eq!(tree.insert("$share/h/a", SessionId(1), 3), None);
        assert_eq!(tree.len(), 3);
        let mut seen = 0;
        tree.for_each_match("a", |_| seen += 1);
        assert_eq!(seen, 3);
        assert_eq!(tree.remove("$share/g/a", SessionId(1)), Some(2));
        assert_eq!(tree.get("a", SessionId(1)), Some(&1));
        assert_eq!(tree.get("$share/h/a", SessionId(1)), Some(&3));
    }

    #[test]
    fn many_subscribers_on_one_filter_stay_consistent_through_removals() {
        let mut tree = TopicTree::new();
        for s in 0..200 {
            assert_eq!(tree.insert("hot/+", SessionId(s), s), None);
        }
        assert!(tree.nodes.iter().any(|n| n.subs.direct.index.is_some()));
        for s in (0..200).step_by(2) {
            assert_eq!(tree.remove("hot/+", SessionId(s)), Some(s));
        }
        for s in 0..200 {
            let expected = (s % 2 == 1).then_some(s);
            assert_eq!(tree.get("hot/+", SessionId(s)).copied(), expected);
        }
        let odd: Vec<(u32, u32)> = (0..200).filter(|s| s % 2 == 1).map(|s| (s, s)).collect();
        assert_eq!(direct_matches(&tree, "hot/x"), odd);
        for s in (1..200).step_by(2) {
            assert_eq!(tree.insert("hot/+", SessionId(s), s + 1), Some(s));
        }
        for s in (1..195).step_by(2) {
            assert_eq!(tree.remove("hot/+", SessionId(s)), Some(s + 1));
        }
        assert!(tree.nodes.iter().all(|n| n.subs.direct.index.is_none()));
        assert_eq!(
            direct_matches(&tree, "hot/x"),
            [(195, 196), (197, 198), (199, 200)]
        );
        assert_eq!(tree.len(), 3);
    }

    #[test]
    fn churn_reuses_freed_nodes() {
        let mut tree = TopicTree::new();
        for round in 0..50u32 {
            for s in 0..20u32 {
                tree.insert(&format!("r/{round}/s/{s}/#"), SessionId(s), s);
            }
            for s in 0..20u32 {
                assert!(
                    tree.remove(&format!("r/{round}/s/{s}/#"), SessionId(s))
                        .is_some()
                );
            }
        }
        assert_eq!(tree.node_count(), 0);
        // The root, then r, {round}, s and 20 times {s} and #: 44 slots, reused every round.
        assert_eq!(tree.nodes.slots(), 44);
    }

    #[test]
    fn deep_filters_neither_overflow_the_stack_nor_leak_nodes() {
        // 32,767 levels: a 64 KiB filter, the most a UTF-8 string field can carry.
        let levels = 32_767;
        let deep = vec!["a"; levels].join("/");
        let plus = vec!["+"; levels].join("/");
        let mut tree = TopicTree::new();
        tree.insert(&deep, SessionId(1), 1);
        tree.insert(&plus, SessionId(2), 2);
        tree.insert(&format!("{plus}/#"), SessionId(3), 3);
        assert_eq!(direct_matches(&tree, &deep), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(tree.remove(&deep, SessionId(1)), Some(1));
        assert_eq!(tree.remove(&plus, SessionId(2)), Some(2));
        assert_eq!(tree.node_count(), levels + 1);
        drop(tree);
    }

    #[test]
    fn lookups_with_many_pending_branches_spill_to_the_heap() {
        // Each node along x/x/.../x also has a `+` child, so a lookup keeps one branch
        // pending per level: more than INLINE_FRAMES of them.
        let depth = 40;
        let mut tree = TopicTree::new();
        for k in 0..depth {
            let filter = vec!["x"; k]
                .into_iter()
                .chain(["+"])
                .collect::<Vec<_>>()
                .join("/");
            tree.insert(&filter, SessionId(k as u32), k as u32);
        }
        tree.insert(&vec!["x"; depth].join("/"), SessionId(1000), 1000);
        let topic = vec!["x"; depth].join("/");
        let last = depth as u32 - 1;
        assert_eq!(direct_matches(&tree, &topic), [(last, last), (1000, 1000)]);
        assert_eq!(direct_matches(&tree, "x/x/y"), [(2, 2)]);
    }

    #[test]
    fn level_keys_compare_and_hash_as_their_bytes() {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        assert_eq!(mem::size_of::<Level>(), 24);
        let long = "a level longer than twenty-two bytes";
        let levels = [
            "",
            "a",
            "$SYS",
            "ab",
            "b",
            "exactly-22-bytes-long!",
            long,
            "é",
        ];
        let hasher = RandomState::new();
        for a in levels {
            let key = Level::new(a);
            assert_eq!(key.as_bytes(), a.as_bytes());
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(a.as_bytes()));
            for b in levels {
                assert_eq!(key.cmp(&Level::new(b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
        assert!(matches!(
            Level::new("exactly-22-bytes-long!"),
            Level::Inline(22, _)
        ));
        assert!(matches!(Level::new(long), Level::Heap(_)));
    }

    #[test]
    fn pending_stack_is_last_in_first_out_across_the_spill() {
        let mut stack = PendingStack::new();
        for i in 0..3 * INLINE_FRAMES {
            stack.push((i, None));
            if i % 5 == 0 {
                assert_eq!(stack.pop(), Some((i, None)));
            }
        }
        let mut left: Vec<usize> = (0..3 * INLINE_FRAMES).filter(|i| i % 5 != 0).collect();
        while let Some((i, _)) = stack.pop() {
            assert_eq!(Some(i), left.pop());
        }
        assert!(left.is_empty());
    }

    /// A filter of the property test: an optional share name, and the matching filter.
    type TestFilter = (Option<&'static str>, String);

    /// One step of the property test: subscribe or unsubscribe `(filter, session)`.
    #[derive(Debug, Clone)]
    enum Op {
        /// Subscribe session `.1` to a filter.
        Subscribe(TestFilter, u32),
        /// Unsubscribe session `.1` from a filter.
        Unsubscribe(TestFilter, u32),
    }

    /// The whole filter string of a test filter.
    fn whole(filter: &TestFilter) -> String {
        match filter {
            (Some(share), f) => format!("$share/{share}/{f}"),
            (None, f) => f.clone(),
        }
    }

    /// Filters over a small alphabet of levels, half of them shared.
    fn filter_strategy() -> impl Strategy<Value = TestFilter> {
        let level = prop::sample::select(vec!["a", "b", "$x", "", "+"]);
        let share = prop::option::weighted(0.5, prop::sample::select(vec!["g", "g", "h"]));
        let any_filter = (prop::collection::vec(level, 0..=3), any::<bool>())
            .prop_map(|(mut levels, hash)| {
                if hash || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
            .prop_filter("filters are not empty [MQTT-4.7.3-1]", |f| !f.is_empty());
        // A few popular filters, so that groups and subscriber lists grow long.
        let popular = prop::sample::select(vec!["a/+", "#", "$x/a"]).prop_map(String::from);
        (share, prop_oneof![any_filter, popular])
    }

    /// Subscribes and unsubscribes of a few sessions.
    fn op_strategy() -> impl Strategy<Value = Op> {
        (filter_strategy(), 0..6u32, any::<bool>()).prop_map(|(f, s, sub)| {
            if sub {
                Op::Subscribe(f, s)
            } else {
                Op::Unsubscribe(f, s)
            }
        })
    }

    /// Every topic of one to four levels over the alphabet the filters use.
    fn all_topics() -> Vec<String> {
        let mut topics = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..4 {
            topics = topics
                .iter()
                .flat_map(|t| {
                    ["a", "b", "$x", ""].map(|l| {
                        if t.is_empty() {
                            l.to_owned()
                        } else {
                            format!("{t}/{l}")
                        }
                    })
                })
                .collect();
            all.extend(topics.iter().filter(|t| !t.is_empty()).cloned());
        }
        all
    }

    proptest! {
        #[test]
        fn matches_agree_with_a_naive_matcher(
            ops in prop::collection::vec(op_strategy(), 1..60),
        ) {
            let mut tree = TopicTree::new();
            // The model: ordinary subscriptions by (filter, session), and shared members
            // in order by (share name, matching filter).
            // (Not imported: the benchmark's test build compiles this file without `#[test]`s.)
            let mut direct = std::collections::BTreeMap::<(String, u32), u32>::new();
            let mut shared = std::collections::BTreeMap::<(String, String), Vec<(u32, u32)>>::new();
            for (value, op) in ops.iter().enumerate() {
                let value = value as u32;
                match op {
                    Op::Subscribe(filter, s) => {
                        let expected = match filter {
                            (None, f) => direct.insert((f.clone(), *s), value),
                            (Some(g), f) => {
                                let key = ((*g).to_owned(), f.clone());
                                let members = shared.entry(key).or_default();
                                match members.iter_mut().find(|(k, _)| k == s) {
                                    Some((_, v)) => Some(mem::replace(v, value)),
                                    None => {
                                        members.push((*s, value));
                                        None
                                    }
                                }
                            }
                        };
                        let got = tree.insert(&whole(filter), SessionId(*s), value);
                        prop_assert_eq!(got, expected);
                    }
                    Op::Unsubscribe(filter, s) => {
                        let expected = match filter {
                            (None, f) => direct.remove(&(f.clone(), *s)),
                            (Some(g), f) => {
                                let key = ((*g).to_owned(), f.clone());
                                let members = shared.entry(key.clone()).or_default();
                                let removed = members
                                    .iter()
                                    .position(|(k, _)| k == s)
                                    .map(|i| members.remove(i).1);
                                if members.is_empty() {
                                    shared.remove(&key);
                                }
                                removed
                            }
                        };
                        prop_assert_eq!(tree.remove(&whole(filter), SessionId(*s)), expected);
                    }
                }
            }
            let members: usize = shared.values().map(Vec::len).sum();
            prop_assert_eq!(tree.len(), direct.len() + members);
            for ((f, s), v) in &direct {
                prop_assert_eq!(tree.get(f, SessionId(*s)), Some(v));
            }
            for topic in all_topics() {
                let mut expected: Vec<(u32, u32)> = direct
                    .iter()
                    .filter(|((f, _), _)| naive_matches(f, &topic))
                    .map(|((_, s), v)| (*s, *v))
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(direct_matches(&tree, &topic), expected, "topic {:?}", topic);
                let mut expected: Vec<_> = shared
                    .iter()
                    .filter(|((_, f), _)| naive_matches(f, &topic))
                    .map(|((g, f), m)| (g.clone(), format!("$share/{g}/{f}"), m.clone()))
                    .collect();
                expected.sort();
                prop_assert_eq!(shared_matches(&tree, &topic), expected, "topic {:?}", topic);
            }
            for (f, s) in direct.keys() {
                prop_assert!(tree.remove(f, SessionId(*s)).is_some());
            }
            for ((g, f), m) in &shared {
                for (s, _) in m {
                    let filter = format!("$share/{g}/{f}");
                    prop_assert!(tree.remove(&filter, SessionId(*s)).is_some());
                }
            }
            prop_assert!(tree.is_empty());
            prop_assert_eq!(tree.node_count(), 0);
        }
    }
}
