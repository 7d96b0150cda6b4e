//! Integration tests of mqtt5-store: one test binary (`CONTRIBUTING.md`, "Layout").
//!
//! - `conformance`: one suite, generic over [`mqtt5_store::Store`], run against every backend;
//! - `model`: a property test of `SqliteStore` against `MemoryStore`, with close-and-reopen;
//! - `files`: what `SqliteStore::open` does with bad, foreign, newer and full databases;
//! - `auth`: the users and access rules as other processes see them, `meta` and `secrets`,
//!   the step that clears old SCRAM credentials, and file modes.

#[cfg(feature = "sqlite")]
mod auth;
mod conformance;
#[cfg(feature = "sqlite")]
mod files;
mod fixture;
#[cfg(feature = "sqlite")]
mod model;
#[cfg(feature = "writer")]
mod writer;
