//! Fuzz target `server_frame`: see [`wormhole_fuzz::server_frame`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::server_frame(data));
