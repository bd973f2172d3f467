//! Fuzz target `ssh_key`: see [`wormhole_fuzz::ssh_key`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::ssh_key(data));
