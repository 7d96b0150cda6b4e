//! Integration tests of mqtt5-codec: one test binary (`CONTRIBUTING.md`, "Layout").

mod malformed;
mod roundtrip;
mod vectors;
