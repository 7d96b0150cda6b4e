//! Fuzz target `decode`: the checks are in [`mqtt5_codec_fuzz::oracles::decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqtt5_codec_fuzz::oracles::decode(data));
