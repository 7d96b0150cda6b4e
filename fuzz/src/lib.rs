//! Fuzz targets for `mqtt5-codec` and the broker core.
//!
//! The properties live in [`oracles`], a plain module with no dependency on libFuzzer, so that
//! `tests/corpus.rs` can replay the committed corpus and regressions through the same checks
//! on the stable toolchain.

pub mod broker;
pub mod oracles;
