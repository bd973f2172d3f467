//! Fuzz target `forward_wire`: see [`wormhole_fuzz::forward_wire`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::forward_wire(data));
