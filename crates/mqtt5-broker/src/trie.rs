//! What the two tries of the core share: the arena their nodes live in, the key of a topic
//! level, and the level splitter. The subscription tree ([`crate::topic_tree`]) and the
//! retained message tree ([`crate::retained`]) keep different nodes (wildcard edges and
//! shared groups in one, a parent link and a message in the other) in the same [`Arena`].
//!
//! Nodes live in one vector and name each other by index; freed slots are reused, so churn
//! does not grow memory, and no walk needs a pointer or a recursion.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Index of the root node in an arena; it is never freed.
pub(crate) const ROOT: usize = 0;

/// The nodes of one trie: `nodes[ROOT]` is the root; free slots hold empty (default) nodes.
pub(crate) struct Arena<N> {
    nodes: Vec<N>,
    free: Vec<usize>,
}

impl<N: Default> Arena<N> {
    /// An arena holding only an empty root.
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![N::default()],
            free: Vec::new(),
        }
    }

    /// Node `id`.
    pub(crate) fn get(&self, id: usize) -> Option<&N> {
        self.nodes.get(id)
    }

    /// Node `id`, to change.
    pub(crate) fn get_mut(&mut self, id: usize) -> Option<&mut N> {
        self.nodes.get_mut(id)
    }

    /// Stores `node` in a free slot (or a new one) and returns its index.
    pub(crate) fn alloc(&mut self, node: N) -> usize {
        if let Some(id) = self.free.pop()
            && let Some(slot) = self.nodes.get_mut(id)
        {
            *slot = node;
            return id;
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Returns node `id`, already unlinked from its parent, to the free slots. Its contents
    /// are dropped, capacity included.
    pub(crate) fn release(&mut self, id: usize) {
        if id != ROOT
            && let Some(node) = self.nodes.get_mut(id)
        {
            *node = N::default();
            self.free.push(id);
        }
    }

    /// Every slot, free ones (empty nodes) included, with its index.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut N)> {
        self.nodes.iter_mut().enumerate()
    }

    /// Every slot, free ones (empty nodes) included.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &N> {
        self.nodes.iter()
    }

    /// How many slots there are, free ones included.
    pub(crate) fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes in use, the root excepted.
    pub(crate) fn in_use(&self) -> usize {
        self.nodes.len().saturating_sub(self.free.len() + 1)
    }
}

impl<N: Default> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes of a level that a [`Level`] stores inline.
const INLINE_LEVEL: usize = 22;

/// A topic level as a map key, shared with the retained message tree.
///
/// Levels of up to [`INLINE_LEVEL`] bytes, nearly all real ones, are stored in the key
/// itself, so comparing keys during a lookup reads no memory beyond the map's own.
#[derive(Clone)]
pub(crate) enum Level {
    /// A short level: its length, and its bytes followed by zeros.
    Inline(u8, [u8; INLINE_LEVEL]),
    /// A longer level.
    Heap(Box<[u8]>),
}

impl Level {
    /// The key for `level`.
    pub(crate) fn new(level: &str) -> Self {
        let bytes = level.as_bytes();
        let mut inline = [0; INLINE_LEVEL];
        match (u8::try_from(bytes.len()), inline.get_mut(..bytes.len())) {
            (Ok(len), Some(prefix)) => {
                prefix.copy_from_slice(bytes);
                Self::Inline(len, inline)
            }
            _ => Self::Heap(bytes.into()),
        }
    }

    /// The level's bytes: UTF-8, as the key was built from a `&str`.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(len, bytes) => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for Level {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Level {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Level {}

impl Ord for Level {
    /// Byte order, as `str` and `[u8]` compare: what `Borrow` requires.
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for Level {
    /// Hashes as the `[u8]` it borrows as, which `Borrow` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

/// The first level of `levels`, and the levels after it (`None` when it was the last).
pub(crate) fn split_level(levels: &str) -> (&str, Option<&str>) {
    match levels.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (levels, None),
    }
}
