//! Fuzz target `record_opener`: see [`wormhole_fuzz::record_opener`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::record_opener(data));
