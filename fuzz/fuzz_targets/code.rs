//! Fuzz target `code`: see [`wormhole_fuzz::code`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::code(data));
