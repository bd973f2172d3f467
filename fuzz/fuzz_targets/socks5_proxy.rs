//! Fuzz target `socks5_proxy`: see [`wormhole_fuzz::socks5_proxy`] for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wormhole_fuzz::socks5_proxy(data));
