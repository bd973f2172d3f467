//! What of the `wormhole` command is used from outside it: the fowl wire messages of
//! `wormhole forward`, which the fuzz target `forward_wire` drives with arbitrary peer bytes.

#[path = "forward/wire.rs"]
pub mod forward_wire;
