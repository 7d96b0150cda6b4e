//! Fuzz target `decode_split`: the checks are in [`mqtt5_codec_fuzz::oracles::decode_split`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqtt5_codec_fuzz::oracles::decode_split(data));
