//! Rendezvous (mailbox) server wire types (PROTOCOL §3).
//!
//! Frames are WebSocket *text* frames holding one JSON object each. Client frames carry a
//! diagnostic `id`; server frames carry `server_tx`. Unknown server message types parse as
//! [`ServerMessage::Unknown`] and are ignored by clients; unknown keys are ignored
//! everywhere. These types are shared with the server crate, so both directions serialize
//! and deserialize.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::Error;

/// Bytes that travel as a lowercase hex string (mailbox message bodies).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl std::fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Bodies are ciphertext or a PAKE message; print only the length.
        write!(f, "HexBytes({} bytes)", self.0.len())
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s)
            .map(HexBytes)
            .map_err(|e| serde::de::Error::custom(format!("body is not hex: {e}")))
    }
}

/// The mood a side reports when it closes its mailbox (PROTOCOL §3.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mood {
    /// At least one peer message decrypted correctly.
    Happy,
    /// Closed before the peer was verified.
    Lonely,
    /// A peer message failed to decrypt (wrong code or attack).
    Scary,
    /// The server sent an `error`.
    Errory,
    /// The welcome carried an `error`.
    Unwelcome,
    /// Any other mood string (the server records `pruney`, `crowded`, `quiet` itself).
    Other(String),
}

impl Mood {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Mood::Happy => "happy",
            Mood::Lonely => "lonely",
            Mood::Scary => "scary",
            Mood::Errory => "errory",
            Mood::Unwelcome => "unwelcome",
            Mood::Other(s) => s,
        }
    }
}

impl From<&str> for Mood {
    fn from(s: &str) -> Self {
        match s {
            "happy" => Mood::Happy,
            "lonely" => Mood::Lonely,
            "scary" => Mood::Scary,
            "errory" => Mood::Errory,
            "unwelcome" => Mood::Unwelcome,
            other => Mood::Other(other.to_owned()),
        }
    }
}

impl Serialize for Mood {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Mood {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Mood::from(String::deserialize(d)?.as_str()))
    }
}

/// A message from a client to the mailbox server (PROTOCOL §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    /// Bind this connection to an app id and side. Sent first on every connection.
    Bind {
        /// Application id.
        appid: String,
        /// This client's side (10 hex chars).
        side: String,
        /// `[implementation, version]`; only logged by the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_version: Option<(String, String)>,
    },
    /// Ask for the list of nameplates in use.
    List,
    /// Ask the server to allocate a nameplate.
    Allocate,
    /// Claim a nameplate; the server answers with the mailbox id.
    Claim {
        /// ASCII digits.
        nameplate: String,
    },
    /// Release a claimed nameplate.
    Release {
        /// The nameplate (the Python client always sends it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nameplate: Option<String>,
    },
    /// Subscribe to a mailbox; the server replays stored messages.
    Open {
        /// Mailbox id.
        mailbox: String,
    },
    /// Post a message to the open mailbox.
    Add {
        /// Phase name (`pake`, `version`, `0`, `1`, …).
        phase: String,
        /// The body, hex on the wire.
        body: HexBytes,
    },
    /// Close the mailbox with a mood.
    Close {
        /// Mailbox id (the Python client always sends it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mailbox: Option<String>,
        /// How this side feels about the exchange.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mood: Option<Mood>,
    },
    /// Liveness check; the server answers `pong`.
    Ping {
        /// Echoed back.
        ping: u64,
    },
}

/// A client frame: a [`ClientMessage`] plus the diagnostic `id` (4 hex chars).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// The message.
    #[serde(flatten)]
    pub message: ClientMessage,
    /// Fresh random id per frame; the server copies it into its `ack`.
    #[serde(default)]
    pub id: Option<String>,
}

/// One entry of a `nameplates` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameplateEntry {
    /// The nameplate.
    pub id: String,
}

/// A message stored in (or broadcast by) a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxMessage {
    /// The side that posted it.
    pub side: String,
    /// Its phase.
    pub phase: String,
    /// Its body.
    pub body: HexBytes,
    /// When the server received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rx: Option<f64>,
    /// The `id` of the originating `add`.
    #[serde(default)]
    pub id: Option<String>,
}

/// A message from the mailbox server (PROTOCOL §3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    /// Sent when the connection opens.
    Welcome {
        /// `motd`, `error`, `current_cli_version`, `your-address`, … (all optional).
        welcome: Map<String, Value>,
    },
    /// Receipt of a client frame.
    Ack {
        /// The client frame's `id`. Clients ignore acks, so an id that is not a string
        /// reads as `None` rather than failing the frame.
        #[serde(default, deserialize_with = "lenient_string")]
        id: Option<String>,
    },
    /// Reply to `list`.
    Nameplates {
        /// Nameplates in use for this app id.
        nameplates: Vec<NameplateEntry>,
    },
    /// Reply to `allocate`.
    Allocated {
        /// The allocated nameplate.
        nameplate: String,
    },
    /// Reply to `claim`.
    Claimed {
        /// The mailbox the nameplate points to.
        mailbox: String,
    },
    /// Reply to `release`.
    Released,
    /// A mailbox message (ours echoed back, or the peer's).
    Message(MailboxMessage),
    /// Reply to `close`.
    Closed,
    /// Reply to `ping`.
    Pong {
        /// Copied from the ping.
        pong: u64,
    },
    /// A protocol error; the client fails with `ServerError`.
    Error {
        /// The error string (PROTOCOL §3.6).
        error: String,
        /// The offending client frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        orig: Option<Value>,
    },
    /// Any type this library does not know; ignored.
    #[serde(other)]
    Unknown,
}

impl ServerMessage {
    /// The message's `type` (`unknown` for the ones this library ignores).
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::Ack { .. } => "ack",
            ServerMessage::Nameplates { .. } => "nameplates",
            ServerMessage::Allocated { .. } => "allocated",
            ServerMessage::Claimed { .. } => "claimed",
            ServerMessage::Released => "released",
            ServerMessage::Message(_) => "message",
            ServerMessage::Closed => "closed",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Unknown => "unknown",
        }
    }
}

/// A server frame: a [`ServerMessage`] plus `server_tx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
    /// Server send time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tx: Option<f64>,
}

/// Largest server frame a client accepts. The reference server accepts messages of any
/// size, but a mailbox exchange is a handful of small records; this bounds memory.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

impl ServerMessage {
    /// Parse one server text frame. Malformed JSON, a missing field or bad hex is a
    /// [`Error::Protocol`]; an unknown `type` is [`ServerMessage::Unknown`].
    pub fn parse(text: &str) -> Result<ServerMessage, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::Protocol(format!("server frame is not JSON: {e}")))?;
        let Value::Object(obj) = &value else {
            return Err(Error::Protocol("server frame is not a JSON object".into()));
        };
        match obj.get("type") {
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(Error::Protocol(
                    "server frame 'type' is not a string".into(),
                ));
            }
            None => return Err(Error::Protocol("server frame has no 'type'".into())),
        }
        serde_json::from_value::<ServerFrame>(value)
            .map(|f| f.message)
            .map_err(|e| Error::Protocol(format!("malformed server frame: {e}")))
    }
}

impl ClientMessage {
    /// Serialize as a text frame with the given diagnostic id.
    pub fn to_frame_text(&self, id: &str) -> String {
        let frame = ClientFrame {
            message: self.clone(),
            id: Some(id.to_owned()),
        };
        // Serializing these plain data types cannot fail.
        serde_json::to_string(&frame).unwrap_or_default()
    }
}

/// An optional string field that reads anything else as `None`.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip_client(msg: ClientMessage, expected: Value) {
        let text = msg.to_frame_text("abcd");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, expected);
        let back: ClientFrame = serde_json::from_value(v).unwrap();
        assert_eq!(back.message, msg);
    }

    #[test]
    fn client_messages_match_python_frames() {
        roundtrip_client(
            ClientMessage::Bind {
                appid: "lothar.com/wormhole/text-or-file-xfer".into(),
                side: "4a026c08fb".into(),
                client_version: Some(("python".into(), "0.24.0".into())),
            },
            json!({"appid": "lothar.com/wormhole/text-or-file-xfer", "side": "4a026c08fb",
                   "client_version": ["python", "0.24.0"], "id": "abcd", "type": "bind"}),
        );
        roundtrip_client(ClientMessage::List, json!({"id": "abcd", "type": "list"}));
        roundtrip_client(
            ClientMessage::Allocate,
            json!({"id": "abcd", "type": "allocate"}),
        );
        roundtrip_client(
            ClientMessage::Claim {
                nameplate: "7".into(),
            },
            json!({"nameplate": "7", "id": "abcd", "type": "claim"}),
        );
        roundtrip_client(
            ClientMessage::Release {
                nameplate: Some("7".into()),
            },
            json!({"nameplate": "7", "id": "abcd", "type": "release"}),
        );
        roundtrip_client(
            ClientMessage::Open {
                mailbox: "2lbdfy7pfg32a".into(),
            },
            json!({"mailbox": "2lbdfy7pfg32a", "id": "abcd", "type": "open"}),
        );
        roundtrip_client(
            ClientMessage::Add {
                phase: "pake".into(),
                body: HexBytes(vec![0x7b, 0x22]),
            },
            json!({"phase": "pake", "body": "7b22", "id": "abcd", "type": "add"}),
        );
        roundtrip_client(
            ClientMessage::Close {
                mailbox: Some("2lbdfy7pfg32a".into()),
                mood: Some(Mood::Happy),
            },
            json!({"mailbox": "2lbdfy7pfg32a", "mood": "happy", "id": "abcd", "type": "close"}),
        );
        roundtrip_client(
            ClientMessage::Ping { ping: 5 },
            json!({"ping": 5, "id": "abcd", "type": "ping"}),
        );
    }

    #[test]
    fn server_messages_from_transcript() {
        let m = ServerMessage::parse(r#"{"welcome": {"motd": "hello from test", "your-address": {"port": 52352, "ipv4": "127.0.0.1"}}, "type": "welcome", "server_tx": 1795354269.490503}"#).unwrap();
        match m {
            ServerMessage::Welcome { welcome } => {
                assert_eq!(welcome["motd"], "hello from test")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ServerMessage::parse(r#"{"id": "8ec1", "type": "ack", "server_tx": 1.5}"#).unwrap(),
            ServerMessage::Ack {
                id: Some("8ec1".into())
            }
        );
        assert_eq!(
            ServerMessage::parse(r#"{"id": null, "type": "ack", "server_tx": 1.5}"#).unwrap(),
            ServerMessage::Ack { id: None }
        );
        assert_eq!(
            ServerMessage::parse(r#"{"type": "ack", "id": 12345}"#).unwrap(),
            ServerMessage::Ack { id: None }
        );
        assert_eq!(
            ServerMessage::parse(r#"{"type": "released", "server_tx": 1.5}"#).unwrap(),
            ServerMessage::Released
        );
        assert_eq!(
            ServerMessage::parse(r#"{"type": "closed", "server_tx": 1.5}"#).unwrap(),
            ServerMessage::Closed
        );
        assert_eq!(
            ServerMessage::parse(
                r#"{"mailbox": "2lbdfy7pfg32a", "type": "claimed", "server_tx": 1795354269.555229}"#
            )
            .unwrap(),
            ServerMessage::Claimed {
                mailbox: "2lbdfy7pfg32a".into()
            }
        );
        assert_eq!(
            ServerMessage::parse(r#"{"nameplates": [{"id": "1"}, {"id": "12"}], "type": "nameplates", "server_tx": 1}"#)
                .unwrap(),
            ServerMessage::Nameplates {
                nameplates: vec![
                    NameplateEntry { id: "1".into() },
                    NameplateEntry { id: "12".into() }
                ]
            }
        );
        let m = ServerMessage::parse(r#"{"side": "19f76d64db", "phase": "pake", "body": "7b22", "server_rx": 1.25, "id": "3fea", "type": "message", "server_tx": 2.5}"#).unwrap();
        assert_eq!(
            m,
            ServerMessage::Message(MailboxMessage {
                side: "19f76d64db".into(),
                phase: "pake".into(),
                body: HexBytes(vec![0x7b, 0x22]),
                server_rx: Some(1.25),
                id: Some("3fea".into()),
            })
        );
        assert_eq!(
            ServerMessage::parse(r#"{"error": "crowded", "orig": {"type": "claim"}, "type": "error", "server_tx": 1}"#).unwrap(),
            ServerMessage::Error {
                error: "crowded".into(),
                orig: Some(json!({"type": "claim"}))
            }
        );
        assert_eq!(
            ServerMessage::parse(r#"{"pong": 7, "type": "pong"}"#).unwrap(),
            ServerMessage::Pong { pong: 7 }
        );
    }

    #[test]
    fn unknown_types_are_not_fatal() {
        assert_eq!(
            ServerMessage::parse(r#"{"type": "future-thing", "x": 1}"#).unwrap(),
            ServerMessage::Unknown
        );
    }

    #[test]
    fn malformed_frames_are_protocol_errors() {
        for bad in [
            "",
            "not json",
            "[]",
            "42",
            r#"{"no": "type"}"#,
            r#"{"type": 5}"#,
            r#"{"type": "claimed"}"#,
            r#"{"type": "claimed", "mailbox": 5}"#,
            r#"{"type": "message", "side": "a", "phase": "0", "body": "zz"}"#,
            r#"{"type": "message", "side": "a", "phase": "0", "body": "abc"}"#,
            r#"{"type": "welcome", "welcome": "hi"}"#,
            r#"{"type": "nameplates", "nameplates": [1, 2]}"#,
            r#"{"type": "pong", "pong": -1}"#,
        ] {
            let err = ServerMessage::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Protocol, "{bad}");
        }
    }
}
