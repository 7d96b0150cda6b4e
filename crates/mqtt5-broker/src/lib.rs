//! The sans-IO core of the mqtt5 broker.
//!
//! This crate will hold the `Broker` state machine (issue 3): fed decoded packets, connection
//! events and `now`, it returns actions to send, persist and close. Until then it only fixes
//! its place in the dependency chain: codec ← store ← broker ← bins.
