//! Fuzz target `transfer_message`: see [`wormhole_fuzz::transfer_message`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::transfer_message(data));
