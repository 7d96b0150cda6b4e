//! Integration tests of mqtt5-codec: one test binary (STYLE.md §1).

mod malformed;
mod roundtrip;
mod vectors;
