//! Fuzz target `transfer_machine`: see [`wormhole_fuzz::transfer_machine`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::transfer_machine(data));
