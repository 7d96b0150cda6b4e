//! Fuzz target `broker`: op sequences against the broker core, checked by
//! [`mqtt5_codec_fuzz::broker`].
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|ops: Vec<mqtt5_codec_fuzz::broker::Op>| {
    // One fixed base instant: the core only ever sees times derived from it.
    let start = *START.get_or_init(Instant::now);
    mqtt5_codec_fuzz::broker::run(ops, start);
});
