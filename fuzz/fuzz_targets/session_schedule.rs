//! Fuzz target `session_schedule`: see [`wormhole_fuzz::session_schedule`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::session_schedule(data));
