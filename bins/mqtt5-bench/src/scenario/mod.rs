//! The scenarios: each sets up its clients against one broker, applies a load, measures, and
//! checks what the broker did.
//!
//! A scenario is a module with an options type, a `run(addr, &options, …)` that returns its
//! result, and the result's [`crate::report::ResultLine`] and table rows.

pub(crate) mod auth_storm;
pub(crate) mod conns;
pub(crate) mod flows;
pub(crate) mod persist;
pub(crate) mod storm;
