//! Fuzz target `transit_hints`: see [`wormhole_fuzz::transit_hints`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::transit_hints(data));
