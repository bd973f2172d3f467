//! Fuzz target `client_frames`: see [`wormhole_fuzz::client_frames`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::client_frames(data));
