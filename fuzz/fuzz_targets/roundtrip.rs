//! Fuzz target `roundtrip`: the checks are in [`mqtt5_codec_fuzz::oracles::roundtrip`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqtt5_codec_fuzz::oracles::roundtrip(data));
