//! The sans-IO protocol core: wire types, key schedule, codes and the session state
//! machine. Nothing here touches a socket, a clock or a global RNG, so every behaviour can
//! be tested deterministically.

pub mod code;
pub mod connector;
pub mod key;
pub mod session;
pub mod wire;
mod wordlist;
