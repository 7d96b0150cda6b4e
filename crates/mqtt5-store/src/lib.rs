//! Persistence for the mqtt5 broker.
//!
//! This crate will hold the `Store` trait, its `StoreOp` batches, the in-memory `MemoryStore`
//! and, behind the default `sqlite` feature, `SqliteStore` (issue 4). Until then it only fixes
//! its place in the dependency chain: codec ← store ← broker ← bins.
