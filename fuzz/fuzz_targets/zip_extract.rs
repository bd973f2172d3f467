//! Fuzz target `zip_extract`: see [`wormhole_fuzz::zip_extract`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::zip_extract(data));
