//! The `wh_*` C API (STYLE §5).
//!
//! - [`result`]: `wh_result`, the stable result codes, and `wh_result_str`.
//! - [`panic`]: the panic boundary every `extern "C"` body goes through.
//! - [`cast`]: the one place where C pointers become Rust references and back.
//! - [`event`]: `wh_event`, the event queue, and the pull API.
//! - [`wormhole`]: `wh_create` and everything else on a `wh_wormhole`.
//! - [`strings`]: string arrays handed to C and their free function.
//! - [`tor`]: `wh_tor_find`, the `wh_tor` handle `wh_options.tor` takes.
//! - [`transfer`]: files and directories over Transit (`wh_send_file`, `wh_receive_file`…).
//! - [`dilation`]: `wh_dilate` and the `wh_subchannel` handle.
//!
//! Spellings follow C (`wh_result`, `wh_event`), so one grep finds both sides.

#![allow(non_camel_case_types)]

#[macro_use]
pub(crate) mod panic;
pub(crate) mod cast;
pub mod dilation;
pub mod event;
pub mod result;
pub mod strings;
pub mod tor;
pub mod transfer;
pub mod wormhole;

pub use dilation::*;
pub use event::*;
pub use result::*;
pub use strings::*;
pub use tor::*;
pub use transfer::*;
pub use wormhole::*;

#[cfg(test)]
mod tests;
