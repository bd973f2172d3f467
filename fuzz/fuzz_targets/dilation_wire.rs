//! Fuzz target `dilation_wire`: see [`wormhole_fuzz::dilation_wire`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::dilation_wire(data));
