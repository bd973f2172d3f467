//! fowl's messages on the wire: a 2-byte big-endian length, then a msgpack map, sent as
//! one Dilation record.
//!
//! - `fowl-commands` subchannels (one per requested service, kept open while it is in
//!   use): `{"kind": "request-listener", "unique-name": N, "listen-port": P or nil}`,
//!   answered by `{"kind": "listener-response", "unique-name": N, "listening": bool}`
//!   plus `"desired-port"` (positive answers, when the listening side names the port to
//!   connect to) or `"reason"` (negative answers).
//! - `fowl` subchannels (one per forwarded TCP connection): the opener sends
//!   `{"unique-name": N}` and nothing else until the answer `{"connected": true}` or
//!   `{"connected": false, "reason": R}`; then raw bytes both ways.
//!
//! Whatever the peer sends is checked: a bad length, a message split or followed by extra
//! bytes where none may follow, or msgpack of the wrong shape is a [`WireError`], never a
//! panic.

use serde::{Deserialize, Serialize};
use wormhole_core::dilation::handle::Subchannel;

/// A message from the peer that cannot be used, or a subchannel that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `fowl-commands`: ask the peer to listen for a service.
#[derive(Debug, Serialize)]
pub struct RequestListener<'a> {
    /// Always `request-listener`.
    pub kind: &'static str,
    /// The service.
    #[serde(rename = "unique-name")]
    pub unique_name: &'a str,
    /// The port the peer must listen on, or nil for any (sent as nil, like fowl).
    #[serde(rename = "listen-port")]
    pub listen_port: Option<u16>,
}

/// `fowl-commands`: the answer to a [`RequestListener`].
#[derive(Debug, Serialize)]
pub struct ListenerResponse<'a> {
    /// Always `listener-response`.
    pub kind: &'static str,
    /// The service.
    #[serde(rename = "unique-name")]
    pub unique_name: &'a str,
    /// Whether the peer listens now.
    pub listening: bool,
    /// The port the requesting side must connect to (positive answers only).
    #[serde(rename = "desired-port", skip_serializing_if = "Option::is_none")]
    pub desired_port: Option<u16>,
    /// Why not (negative answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Any `fowl-commands` message, as received (fields a kind does not use are `None`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Command {
    /// `request-listener` or `listener-response`.
    pub kind: String,
    /// The service.
    #[serde(rename = "unique-name")]
    pub unique_name: Option<String>,
    /// `request-listener`: the port asked for.
    #[serde(rename = "listen-port")]
    pub listen_port: Option<u16>,
    /// `listener-response`: the answer.
    pub listening: Option<bool>,
    /// `listener-response`: the port to connect to.
    #[serde(rename = "desired-port")]
    pub desired_port: Option<u16>,
    /// `listener-response`: why not.
    pub reason: Option<String>,
}

/// `fowl`: the opening message of a forwarded connection.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Open {
    /// The service.
    #[serde(rename = "unique-name")]
    pub unique_name: String,
    /// The port the connection must go to (fowl checks it when present; never sent by
    /// fowl or us).
    #[serde(
        rename = "listen-port",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub listen_port: Option<u16>,
}

/// `fowl`: the answer to an [`Open`].
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connected {
    /// Whether the connection was made.
    pub connected: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `msg` as one frame: length prefix and msgpack (maps with field names, like fowl's).
pub fn frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let body = rmp_serde::to_vec_named(msg)
        .map_err(|e| WireError(format!("cannot encode a message: {e}")))?;
    let len = u16::try_from(body.len())
        .map_err(|_| WireError(format!("message too long ({} bytes)", body.len())))?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode the msgpack body of a frame.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(body)
        .map_err(|e| WireError(format!("malformed message from the peer: {e}")))
}

/// Reads frames from a subchannel's records. A frame may span records (fowl's reader
/// allows that); where the protocol lets nothing follow a frame, [`FrameReader::leftover`]
/// tells whether something did.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Add one record the peer sent.
    pub fn push(&mut self, record: &[u8]) {
        self.buf.extend_from_slice(record);
    }

    /// A complete frame's body at the front of the buffer, taken out.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        if self.buf.len() < 2 + len {
            return None;
        }
        let body = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(body)
    }

    /// The next frame's body; `None` when the peer closed the subchannel between frames.
    pub async fn next(&mut self, sub: &mut Subchannel) -> Result<Option<Vec<u8>>, WireError> {
        loop {
            if let Some(body) = self.take() {
                return Ok(Some(body));
            }
            match sub.recv().await {
                Ok(Some(record)) => self.push(&record),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(WireError(
                        "the peer closed the subchannel in the middle of a message".into(),
                    ));
                }
                Err(e) => return Err(WireError(format!("the subchannel failed: {e}"))),
            }
        }
    }

    /// Bytes received after the frames taken so far.
    pub fn leftover(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_fowls_bytes() {
        // msgpack.packb({"unique-name": "web"}) with the 2-byte length in front.
        let f = frame(&Open {
            unique_name: "web".into(),
            listen_port: None,
        })
        .unwrap();
        let mut want = vec![0u8, 17, 0x81, 0xab];
        want.extend_from_slice(b"unique-name");
        want.extend_from_slice(&[0xa3, b'w', b'e', b'b']);
        assert_eq!(f, want);
        // msgpack.packb({"connected": True})
        let f = frame(&Connected {
            connected: true,
            reason: None,
        })
        .unwrap();
        assert_eq!(&f[..], b"\x00\x0c\x81\xa9connected\xc3");
        // {"kind": "request-listener", "unique-name": "a", "listen-port": None}: nil kept.
        let f = frame(&RequestListener {
            kind: "request-listener",
            unique_name: "a",
            listen_port: None,
        })
        .unwrap();
        assert!(f.ends_with(b"\xablisten-port\xc0"));
        assert_eq!(f[2], 0x83);
    }

    #[test]
    fn decodes_what_fowl_sends() {
        // msgpack.packb({"kind": "listener-response", "unique-name": "a",
        //                "listening": False, "reason": "no"})
        let mut m = vec![0x84, 0xa4];
        m.extend_from_slice(b"kind");
        m.push(0xb1);
        m.extend_from_slice(b"listener-response");
        m.push(0xab);
        m.extend_from_slice(b"unique-name");
        m.extend_from_slice(&[0xa1, b'a', 0xa9]);
        m.extend_from_slice(b"listening");
        m.extend_from_slice(&[0xc2, 0xa6]);
        m.extend_from_slice(b"reason");
        m.extend_from_slice(&[0xa2, b'n', b'o']);
        let c: Command = decode(&m).unwrap();
        assert_eq!(c.kind, "listener-response");
        assert_eq!(c.unique_name.as_deref(), Some("a"));
        assert_eq!(c.listening, Some(false));
        assert_eq!(c.reason.as_deref(), Some("no"));
        assert_eq!(c.listen_port, None);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(decode::<Command>(b"").is_err());
        assert!(decode::<Command>(b"\xc1").is_err());
        assert!(decode::<Open>(b"\x81\xabunique-name\x05").is_err());
        assert!(decode::<Connected>(b"\x90").is_err());
        // A port out of range.
        assert!(
            decode::<Open>(b"\x82\xabunique-name\xa1a\xablisten-port\xce\x00\x01\x00\x00").is_err()
        );
        let mut r = FrameReader { buf: vec![0, 5, 1] };
        assert_eq!(r.take(), None);
        r.buf = vec![0, 1, 7, 9];
        assert_eq!(r.take(), Some(vec![7]));
        assert_eq!(r.leftover(), 1);
    }
}
