//! Fuzz target `relay_handshake`: see [`wormhole_fuzz::relay_handshake`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::relay_handshake(data));
