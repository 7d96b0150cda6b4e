//! Retained messages (MQTT 5 §3.3.1.3): one per topic name, stored level by level in a trie
//! so that a new subscription's filter walks only the part of the tree it matches (§4.7).
//!
//! ```text
//! topics  a  a/b  a/c/d  $SYS/x
//!
//! root ─┬─ "$SYS" ── "x"     $SYS/x
//!       └─ "a" ─┬─ "b"       a, a/b
//!               └─ "c" ── "d" a/c/d
//! ```
//!
//! A literal filter level follows one child, `+` every child of one node, and `#` a whole
//! subtree, so replaying `site/7/#` over a million topics visits only site 7's.
//!
//! - Nodes live in one arena and name each other by index; freed slots are reused. Every
//!   walk is a loop, never a recursion, so a topic of tens of thousands of levels overflows
//!   no stack when it is matched, removed, swept by [`RetainedTree::retain`], or dropped.
//! - Children are kept in a `BTreeMap`: a replay visits topics depth first with the levels
//!   of each node in byte order, the same order on every run, and crafted topic levels cannot
//!   degrade lookups through hash collisions.
//!
//! The nodes live in a [`crate::trie::Arena`], keyed by [`Level`] as the subscription tree's.

use std::collections::BTreeMap;
use std::fmt;

use crate::trie::{Arena, Level, ROOT, split_level};

/// The retained messages of a server, by topic name.
pub(crate) struct RetainedTree<V> {
    /// The nodes; the root ([`ROOT`]) never holds a message.
    nodes: Arena<Node<V>>,
    /// Messages stored.
    len: usize,
}

/// One level of the trie.
struct Node<V> {
    /// Children by level (possibly empty: `a//b` has an empty middle level).
    children: BTreeMap<Level, usize>,
    /// The parent node (the root is its own).
    parent: usize,
    /// The retained message of the topic that ends here.
    value: Option<V>,
}

/// A replay's pending work.
#[derive(Debug, Clone, Copy)]
enum Step<'f> {
    /// Match the filter levels `rest` (`None`: none left) against the node below.
    Match(usize, Option<&'f str>),
    /// Visit the node and everything below it (what `#` matches).
    Subtree(usize),
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub(crate) fn new() -> Self {
        Self {
            nodes: Arena::new(),
            len: 0,
        }
    }

    /// Sets the retained message of `topic` (a topic name, no wildcards); returns the one replaced.
    pub(crate) fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut id = ROOT;
        for level in topic.split('/') {
            id = match self
                .nodes
                .get(id)
                .and_then(|n| n.children.get(level.as_bytes()))
            {
                Some(&child) => child,
                None => {
                    let child = self.nodes.alloc(Node {
                        parent: id,
                        ..Node::default()
                    });
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.children.insert(Level::new(level), child);
                    }
                    child
                }
            };
        }
        let node = self.nodes.get_mut(id)?;
        let replaced = node.value.replace(value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Clears the retained message of `topic` (an empty retained payload clears it,
    /// `[MQTT-3.3.1-6]`) and returns it; nodes left empty are pruned.
    pub(crate) fn remove(&mut self, topic: &str) -> Option<V> {
        let mut id = ROOT;
        for level in topic.split('/') {
            id = *self.nodes.get(id)?.children.get(level.as_bytes())?;
        }
        let removed = self.nodes.get_mut(id)?.value.take()?;
        self.len = self.len.saturating_sub(1);
        // Prune bottom-up, the topic's levels naming each node in its parent.
        let mut levels = topic.rsplit('/');
        while id != ROOT {
            let Some(node) = self.nodes.get(id).filter(|n| n.is_empty()) else {
                break;
            };
            let parent = node.parent;
            if let (Some(node), Some(level)) = (self.nodes.get_mut(parent), levels.next()) {
                node.children.remove(level.as_bytes());
            }
            self.nodes.release(id);
            id = parent;
        }
        Some(removed)
    }

    /// The retained message of `topic`.
    pub(crate) fn get(&self, topic: &str) -> Option<&V> {
        let mut id = ROOT;
        for level in topic.split('/') {
            id = *self.nodes.get(id)?.children.get(level.as_bytes())?;
        }
        self.nodes.get(id)?.value.as_ref()
    }

    /// Visits every retained message whose topic matches the (non-shared) filter, with the
    /// same rules as the subscription tree: `+` matches one level (`[MQTT-4.7.1-2]`), `#` the
    /// parent level and all below (`[MQTT-4.7.1-1]`), and a filter starting with a wildcard
    /// matches no topic starting with `$` (`[MQTT-4.7.2-1]`).
    ///
    /// Topics come depth first, the levels under each node in byte order. Only the matching
    /// part of the tree is walked: a `+` level reads the children of one node, `#` a subtree.
    pub(crate) fn for_each_match<'a>(&'a self, filter: &str, mut visit: impl FnMut(&'a V)) {
        let mut pending = vec![Step::Match(ROOT, Some(filter))];
        while let Some(step) = pending.pop() {
            let (id, rest) = match step {
                Step::Match(id, rest) => (id, rest),
                Step::Subtree(id) => {
                    let Some(node) = self.nodes.get(id) else {
                        continue;
                    };
                    if let Some(value) = &node.value {
                        visit(value);
                    }
                    pending.extend(node.children.values().rev().map(|&c| Step::Subtree(c)));
                    continue;
                }
            };
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let Some(rest) = rest else {
                if let Some(value) = &node.value {
                    visit(value);
                }
                continue;
            };
            let (level, rest) = split_level(rest);
            // [MQTT-4.7.2-1]: wildcards at the root skip `$` topics.
            let visible = |level: &Level| id != ROOT || level.as_bytes().first() != Some(&b'$');
            match level {
                "#" => {
                    // The parent level too [MQTT-4.7.1-1].
                    if let Some(value) = &node.value {
                        visit(value);
                    }
                    let children = node.children.iter().rev();
                    pending.extend(
                        children
                            .filter(|(l, _)| visible(l))
                            .map(|(_, &c)| Step::Subtree(c)),
                    );
                }
                "+" => {
                    let children = node.children.iter().rev();
                    pending.extend(
                        children
                            .filter(|(l, _)| visible(l))
                            .map(|(_, &c)| Step::Match(c, rest)),
                    );
                }
                literal => {
                    if let Some(&child) = node.children.get(literal.as_bytes()) {
                        pending.push(Step::Match(child, rest));
                    }
                }
            }
        }
    }

    /// Removes every entry for which `keep` returns false (used to drop expired messages);
    /// returns how many were removed. Nodes left empty are pruned.
    ///
    /// One pass over the arena calls `keep`; then only the ancestors of nodes left empty are
    /// revisited, so a sweep that expires little costs little more than the pass.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let mut removed = 0;
        // Nodes now empty: they go, and their ancestors may follow.
        let mut gone = Vec::new();
        for (id, node) in self.nodes.iter_mut() {
            if node.value.as_ref().is_some_and(|v| !keep(v)) {
                node.value = None;
                removed += 1;
                if node.children.is_empty() {
                    gone.push(id);
                }
            }
        }
        self.len = self.len.saturating_sub(removed);
        if gone.is_empty() {
            return removed;
        }
        // Mark the nodes that may lose a child: the ancestors of the nodes gone.
        let mut dirty = vec![false; self.nodes.slots()];
        for &id in &gone {
            let mut id = id;
            while let Some(flag) = dirty.get_mut(id).filter(|flag| !**flag) {
                *flag = true;
                match self.nodes.get(id) {
                    Some(node) if id != ROOT => id = node.parent,
                    _ => break,
                }
            }
        }
        let mut is_gone = vec![false; self.nodes.slots()];
        for &id in &gone {
            if let Some(flag) = is_gone.get_mut(id) {
                *flag = true;
            }
        }
        // Bottom-up over the marked nodes: a node is finished (`true`) once its children are.
        let flagged = |flags: &[bool], id: usize| flags.get(id).copied().unwrap_or(false);
        let mut pending = vec![(ROOT, false)];
        while let Some((id, children_done)) = pending.pop() {
            let Some(node) = self.nodes.get_mut(id) else {
                continue;
            };
            if !children_done {
                pending.push((id, true));
                let marked = node
                    .children
                    .values()
                    .copied()
                    .filter(|&c| flagged(&dirty, c) && !flagged(&is_gone, c));
                pending.extend(marked.map(|c| (c, false)));
                continue;
            }
            node.children.retain(|_, &mut c| !flagged(&is_gone, c));
            if id != ROOT && node.is_empty() {
                if let Some(flag) = is_gone.get_mut(id) {
                    *flag = true;
                }
                gone.push(id);
            }
        }
        for id in gone {
            self.nodes.release(id);
        }
        removed
    }

    /// Number of retained messages.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when no message is retained.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes in use, the root excepted: zero once every message is removed.
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.in_use()
    }
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RetainedTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedTree")
            .field("len", &self.len)
            .field("nodes", &self.nodes.in_use())
            .finish_non_exhaustive()
    }
}

impl<V> Node<V> {
    /// True when the node holds no message and has no child.
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: BTreeMap::new(),
            parent: ROOT,
            value: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reference matcher for one filter and one topic, written from §4.7.
    fn naive_matches(filter: &str, topic: &str) -> bool {
        // [MQTT-4.7.2-1]
        if topic.starts_with('$') && matches!(filter.chars().next(), Some('+' | '#')) {
            return false;
        }
        let mut filter = filter.split('/');
        let mut topic = topic.split('/');
        loop {
            match (filter.next(), topic.next()) {
                // [MQTT-4.7.1-1]: the parent level and any number of child levels.
                (Some("#"), _) => return true,
                (None, None) => return true,
                (Some(f), Some(t)) if f == "+" || f == t => {}
                _ => return false,
            }
        }
    }

    /// The values retained on topics that match `filter`, in visiting order.
    fn replay<V: Clone>(tree: &RetainedTree<V>, filter: &str) -> Vec<V> {
        let mut out = Vec::new();
        tree.for_each_match(filter, |v| out.push(v.clone()));
        out
    }

    /// (filter, topic, matches, the rule) from §4.7 and its examples.
    #[rustfmt::skip]
    const RULES: &[(&str, &str, bool, &str)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1",                 true,  "[MQTT-4.7.1-1] the parent level"),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true,  "[MQTT-4.7.1-1]"),
        ("sport/#",                "sport",                                true,  "[MQTT-4.7.1-1] # includes the parent"),
        ("sport/#",                "sports",                               false, "[MQTT-4.7.1-1] whole levels only"),
        ("#",                      "/",                                    true,  "[MQTT-4.7.1-1] # alone"),
        ("sport/tennis/+",         "sport/tennis/player1",                 true,  "[MQTT-4.7.1-2]"),
        ("sport/tennis/+",         "sport/tennis/player1/ranking",         false, "[MQTT-4.7.1-2] one level"),
        ("sport/+",                "sport",                                false, "[MQTT-4.7.1-2] + needs a level"),
        ("sport/+",                "sport/",                               true,  "[MQTT-4.7.1-2] an empty level"),
        ("+/+",                    "/finance",                             true,  "[MQTT-4.7.1-2]"),
        ("/+",                     "/finance",                             true,  "[MQTT-4.7.1-2]"),
        ("+",                      "/finance",                             false, "[MQTT-4.7.1-2]"),
        ("+/#",                    "a",                                    true,  "+ then # matching the parent"),
        ("#",                      "$SYS/monitor/Clients",                 false, "[MQTT-4.7.2-1]"),
        ("+/monitor/Clients",      "$SYS/monitor/Clients",                 false, "[MQTT-4.7.2-1]"),
        ("+/#",                    "$SYS",                                 false, "[MQTT-4.7.2-1]"),
        ("$SYS/#",                 "$SYS/monitor/Clients",                 true,  "[MQTT-4.7.2-1] a literal $ level"),
        ("$SYS/#",                 "$SYS",                                 true,  "[MQTT-4.7.2-1] the parent"),
        ("$SYS/monitor/+",         "$SYS/monitor/Clients",                 true,  "[MQTT-4.7.2-1]"),
        ("a/+",                    "a/$x",                                 true,  "$ matters in the first level only"),
        ("a/#",                    "a/$x/y",                               true,  "$ matters in the first level only"),
        ("ACCOUNTS",               "Accounts",                             false, "[MQTT-4.7.3-4] case sensitive"),
        ("/finance",               "finance",                              false, "[MQTT-4.7.3-4] a leading /"),
        ("finance/",               "finance",                              false, "[MQTT-4.7.3-4] a trailing /"),
        ("a//b",                   "a//b",                                 true,  "an empty level"),
        ("a/+/b",                  "a//b",                                 true,  "+ matches an empty level"),
        ("a/b",                    "a//b",                                 false, "empty levels are levels"),
    ];

    #[test]
    fn matching_follows_section_4_7_rules() {
        for &(filter, topic, expected, rule) in RULES {
            let mut tree = RetainedTree::new();
            tree.insert(topic, 1);
            assert_eq!(
                !replay(&tree, filter).is_empty(),
                expected,
                "{filter:?} vs {topic:?}: {rule}"
            );
            assert_eq!(naive_matches(filter, topic), expected, "reference: {rule}");
        }
    }

    #[test]
    fn replay_is_depth_first_in_level_order() {
        let mut tree = RetainedTree::new();
        for topic in ["b", "a/c", "a", "a-", "a/b/c", "a/b", "$SYS/x", "/x"] {
            tree.insert(topic, topic);
        }
        assert_eq!(
            replay(&tree, "#"),
            ["/x", "a", "a/b", "a/b/c", "a/c", "a-", "b"]
        );
        assert_eq!(replay(&tree, "a/#"), ["a", "a/b", "a/b/c", "a/c"]);
        assert_eq!(replay(&tree, "+"), ["a", "a-", "b"]);
        assert_eq!(replay(&tree, "+/+"), ["/x", "a/b", "a/c"]);
        assert_eq!(replay(&tree, "$SYS/#"), ["$SYS/x"]);
        assert_eq!(replay(&tree, "a/b/c"), ["a/b/c"]);
        assert!(replay(&tree, "c/#").is_empty());
    }

    #[test]
    fn insert_replaces_and_get_reads() {
        let mut tree = RetainedTree::new();
        assert_eq!(tree.insert("a/b", 1), None);
        assert_eq!(tree.insert("a/b", 2), Some(1));
        assert_eq!(tree.insert("a", 3), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.get("a/b"), Some(&2));
        assert_eq!(tree.get("a"), Some(&3));
        assert_eq!(tree.get("a/b/c"), None);
        assert_eq!(tree.get("b"), None);
    }

    #[test]
    fn removing_every_message_prunes_every_node() {
        // [MQTT-3.3.1-6]: the broker clears with remove on an empty retained payload.
        let topics = ["a", "a/b", "a/b/c", "/", "a//", "$SYS/x", "b/c/d/e"];
        let mut tree = RetainedTree::new();
        for (i, t) in topics.iter().enumerate() {
            tree.insert(t, i);
        }
        assert_eq!(tree.remove("a/b/c/d"), None);
        assert_eq!(tree.remove("b/c"), None, "an inner node holds no message");
        assert_eq!(tree.len(), topics.len());
        for (i, t) in topics.iter().enumerate() {
            assert_eq!(tree.remove(t), Some(i), "{t}");
            assert_eq!(tree.remove(t), None, "{t} twice");
            assert_eq!(tree.get(t), None);
        }
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 0);
    }

    #[test]
    fn removing_a_topic_keeps_its_descendants() {
        let mut tree = RetainedTree::new();
        tree.insert("a", 1);
        tree.insert("a/b/c", 2);
        assert_eq!(tree.remove("a"), Some(1));
        assert_eq!(tree.node_count(), 3);
        assert_eq!(replay(&tree, "a/#"), [2]);
        assert_eq!(tree.remove("a/b/c"), Some(2));
        assert_eq!(tree.node_count(), 0);
    }

    #[test]
    fn retain_drops_rejected_messages_and_prunes() {
        let mut tree = RetainedTree::new();
        for i in 0..100u32 {
            tree.insert(&format!("t/{}/{i}", i % 7), i);
        }
        tree.insert("t", 1000);
        let nodes = tree.node_count();
        assert_eq!(tree.retain(|_| true), 0);
        assert_eq!(tree.node_count(), nodes);
        assert_eq!(tree.retain(|v| v % 2 == 0), 50);
        assert_eq!(tree.len(), 51);
        assert_eq!(tree.get("t/1/1"), None);
        assert_eq!(tree.get("t/2/2"), Some(&2));
        let mut left = replay(&tree, "#");
        left.sort_unstable();
        let even: Vec<u32> = (0..100).step_by(2).chain([1000]).collect();
        assert_eq!(left, even);
        assert_eq!(tree.node_count(), 1 + 7 + 50);
        assert_eq!(tree.retain(|v| *v == 1000), 50);
        assert_eq!(tree.node_count(), 1, "only t");
        assert_eq!(tree.retain(|_| false), 1);
        assert_eq!(tree.node_count(), 0);
        assert!(tree.is_empty());
    }

    #[test]
    fn churn_reuses_freed_nodes() {
        let mut tree = RetainedTree::new();
        for round in 0..50 {
            for i in 0..20 {
                tree.insert(&format!("r/{round}/{i}"), i);
            }
            for i in 0..20 {
                assert_eq!(tree.remove(&format!("r/{round}/{i}")), Some(i));
            }
        }
        // The root, then r, {round} and 20 times {i}: 23 slots, reused every round.
        assert_eq!(tree.nodes.slots(), 23);
        assert_eq!(tree.node_count(), 0);
    }

    #[test]
    fn deep_topics_neither_overflow_the_stack_nor_leak_nodes() {
        // 32,767 levels: a 64 KiB topic, the most a UTF-8 string field can carry.
        let levels = 32_767;
        let deep = vec!["a"; levels].join("/");
        let mut tree = RetainedTree::new();
        tree.insert(&deep, 1);
        tree.insert(&format!("{deep}/b"), 2);
        assert_eq!(replay(&tree, &deep), [1]);
        assert_eq!(replay(&tree, "#"), [1, 2]);
        assert_eq!(replay(&tree, &vec!["+"; levels].join("/")), [1]);
        assert_eq!(tree.retain(|v| *v == 1), 1);
        assert_eq!(tree.node_count(), levels);
        assert_eq!(tree.remove(&deep), Some(1));
        assert_eq!(tree.node_count(), 0);
        tree.insert(&deep, 3);
        drop(tree);
    }

    /// One step of the property test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Retain a message on a topic.
        Set(String),
        /// Clear a topic's message.
        Clear(String),
        /// Keep only values whose remainder modulo 3 differs from this.
        Retain(u32),
    }

    /// Topics of one to three levels over a small alphabet.
    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", ""]);
        prop::collection::vec(level, 1..=3)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("topics are not empty [MQTT-4.7.3-1]", |t| !t.is_empty())
    }

    /// Mostly sets, some clears, a few sweeps.
    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => topic_strategy().prop_map(Op::Set),
            2 => topic_strategy().prop_map(Op::Clear),
            1 => (0..3u32).prop_map(Op::Retain),
        ]
    }

    /// Every filter of up to three levels over the alphabet the topics use, with `+`, `#`.
    fn all_filters() -> Vec<String> {
        let mut prefixes = vec![String::new()];
        let mut all = vec!["#".to_owned()];
        for _ in 0..3 {
            prefixes = prefixes
                .iter()
                .flat_map(|p| {
                    ["a", "b", "$x", "", "+"].map(|l| {
                        if p.is_empty() {
                            l.to_owned()
                        } else {
                            format!("{p}/{l}")
                        }
                    })
                })
                .collect();
            for p in &prefixes {
                all.push(format!("{p}/#"));
                if !p.is_empty() {
                    all.push(p.clone());
                }
            }
        }
        all
    }

    proptest! {
        #[test]
        fn replay_agrees_with_a_naive_matcher(
            ops in prop::collection::vec(op_strategy(), 1..50),
        ) {
            let mut tree = RetainedTree::new();
            let mut model: BTreeMap<String, u32> = BTreeMap::new();
            for (value, op) in ops.iter().enumerate() {
                let value = value as u32;
                match op {
                    Op::Set(topic) => {
                        let got = tree.insert(topic, (topic.clone(), value));
                        prop_assert_eq!(got.map(|(_, v)| v), model.insert(topic.clone(), value));
                    }
                    Op::Clear(topic) => {
                        let got = tree.remove(topic);
                        prop_assert_eq!(got.map(|(_, v)| v), model.remove(topic));
                    }
                    Op::Retain(r) => {
                        let before = model.len();
                        model.retain(|_, v| *v % 3 != *r);
                        prop_assert_eq!(tree.retain(|(_, v)| v % 3 != *r), before - model.len());
                    }
                }
            }
            prop_assert_eq!(tree.len(), model.len());
            for (topic, value) in &model {
                prop_assert_eq!(tree.get(topic), Some(&(topic.clone(), *value)));
            }
            for filter in all_filters() {
                let mut got = replay(&tree, &filter);
                got.sort();
                let expected: Vec<(String, u32)> = model
                    .iter()
                    .filter(|(t, _)| naive_matches(&filter, t))
                    .map(|(t, v)| (t.clone(), *v))
                    .collect();
                prop_assert_eq!(got, expected, "filter {:?}", filter);
            }
            for topic in model.keys() {
                prop_assert!(tree.remove(topic).is_some());
            }
            prop_assert_eq!(tree.node_count(), 0);
        }
    }
}
