//! L1: the bodies of the `dilate-N` mailbox messages (PROTOCOL §9.3), as serde types.
//!
//! Each body is a JSON object whose `type` is `please`, `connection-hints`, `reconnect`
//! or `reconnecting`. Encoding emits `type` first, then the fields in the reference's
//! order. Decoding refuses a non-object, a missing or unknown `type` and a known type
//! with missing or mistyped fields, each with its own [`DilationError`]; unknown extra
//! fields are ignored. Hints inside `connection-hints` are Transit hints (§7.2): unknown
//! or malformed hints are skipped, as the reference does.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DilationError, Result};
use crate::transit::Hints;

/// One Dilation mailbox message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum DilationMessage {
    /// The first message of each side: its dilation side and the chosen version.
    Please {
        /// The sender's dilation side (16 hex digits; not validated, like the reference).
        side: String,
        /// The first common version (`"ged"`); absent when there is none (a 0.24 quirk).
        #[serde(
            rename = "use-version",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        use_version: Option<String>,
    },
    /// Where the sender can be reached in the current generation.
    ConnectionHints {
        /// The hints (direct, Tor and relay).
        #[serde(with = "hint_list")]
        hints: Hints,
    },
    /// Leader → Follower: the connection was lost, start a new generation.
    Reconnect,
    /// Follower → Leader: the Follower dropped its connection and starts a new generation.
    Reconnecting,
}

/// The `type` strings we know.
pub const MESSAGE_TYPES: &[&str] = &["please", "connection-hints", "reconnect", "reconnecting"];

mod hint_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    use crate::transit::Hints;

    pub fn serialize<S: Serializer>(h: &Hints, s: S) -> Result<S::Ok, S::Error> {
        h.to_json_list().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hints, D::Error> {
        let list = Vec::<Value>::deserialize(d)?;
        Ok(Hints::from_json_list(&list))
    }
}

impl DilationMessage {
    /// Parse a decrypted `dilate-N` body.
    pub fn parse(body: &[u8]) -> Result<DilationMessage> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| DilationError::BadMessage(format!("not JSON: {e}")))?;
        let t = v
            .as_object()
            .ok_or_else(|| DilationError::BadMessage("not a JSON object".into()))?
            .get("type")
            .ok_or_else(|| DilationError::BadMessage("no \"type\"".into()))?
            .as_str()
            .ok_or_else(|| DilationError::BadMessage("\"type\" is not a string".into()))?;
        if !MESSAGE_TYPES.contains(&t) {
            return Err(DilationError::UnknownMessageType(t.to_owned()));
        }
        serde_json::from_value(v).map_err(|e| DilationError::BadMessage(e.to_string()))
    }

    /// The JSON body to encrypt as a `dilate-N` phase.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these types to JSON cannot fail (string keys, finite floats from
        // parsed or configured hints); an empty body would be refused by the peer.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::transit::DirectHint;

    fn roundtrip(m: DilationMessage, expected: Value) {
        let bytes = m.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, expected);
        assert_eq!(DilationMessage::parse(&bytes).unwrap(), m);
        // The reference's spelling (with spaces) parses too.
        assert_eq!(
            DilationMessage::parse(expected.to_string().as_bytes()).unwrap(),
            m
        );
    }

    /// The messages of the §12.4 transcript.
    #[test]
    fn transcript_messages() {
        let please = DilationMessage::Please {
            side: "b4c6208a656c1399".into(),
            use_version: Some("ged".into()),
        };
        assert_eq!(
            please.to_bytes(),
            br#"{"type":"please","side":"b4c6208a656c1399","use-version":"ged"}"#,
            "type first, fields in the reference's order"
        );
        roundtrip(
            please,
            json!({"type": "please", "side": "b4c6208a656c1399", "use-version": "ged"}),
        );
        roundtrip(
            DilationMessage::ConnectionHints {
                hints: Hints {
                    direct: vec![DirectHint::new("192.0.2.2", 37803)],
                    ..Default::default()
                },
            },
            json!({"type": "connection-hints", "hints": [{"type": "direct-tcp-v1",
                   "priority": 0.0, "hostname": "192.0.2.2", "port": 37803}]}),
        );
        roundtrip(
            DilationMessage::ConnectionHints {
                hints: Hints {
                    relays: vec![vec![DirectHint::new("127.0.0.1", 14001)]],
                    ..Default::default()
                },
            },
            json!({"type": "connection-hints", "hints": [{"type": "relay-v1", "hints":
                   [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1",
                     "port": 14001}]}]}),
        );
        roundtrip(DilationMessage::Reconnect, json!({"type": "reconnect"}));
        roundtrip(
            DilationMessage::Reconnecting,
            json!({"type": "reconnecting"}),
        );
    }

    #[test]
    fn please_without_version_and_extra_fields() {
        // 0.24 sends please without use-version when no version is common.
        roundtrip(
            DilationMessage::Please {
                side: "57ac9e7efe0ab261".into(),
                use_version: None,
            },
            json!({"type": "please", "side": "57ac9e7efe0ab261"}),
        );
        assert_eq!(
            DilationMessage::parse(br#"{"type": "reconnect", "future": [1, 2]}"#).unwrap(),
            DilationMessage::Reconnect
        );
    }

    #[test]
    fn unknown_hints_are_skipped() {
        let m = DilationMessage::parse(
            br#"{"type": "connection-hints", "hints": [{"type": "quic-v9", "x": 1},
                 {"type": "direct-tcp-v1", "hostname": "h", "port": "bad"},
                 {"type": "direct-tcp-v1", "priority": 0.5, "hostname": "h", "port": 1}]}"#,
        )
        .unwrap();
        let DilationMessage::ConnectionHints { hints } = m else {
            panic!("{m:?}");
        };
        assert_eq!(
            hints.direct,
            vec![DirectHint {
                hostname: "h".into(),
                port: 1,
                priority: 0.5
            }]
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let bad = |b: &[u8]| DilationMessage::parse(b).unwrap_err();
        assert!(matches!(bad(b""), DilationError::BadMessage(_)));
        assert!(matches!(bad(b"\xff\xfe"), DilationError::BadMessage(_)));
        assert!(matches!(bad(b"[1, 2]"), DilationError::BadMessage(_)));
        assert!(matches!(bad(b"{}"), DilationError::BadMessage(_)));
        assert!(matches!(
            bad(br#"{"type": 3}"#),
            DilationError::BadMessage(_)
        ));
        assert_eq!(
            bad(br#"{"type": "please-v2", "side": "x"}"#),
            DilationError::UnknownMessageType("please-v2".into())
        );
        assert_eq!(
            bad(br#"{"type": "PLEASE"}"#),
            DilationError::UnknownMessageType("PLEASE".into())
        );
        assert!(matches!(
            bad(br#"{"type": "please"}"#),
            DilationError::BadMessage(_)
        ));
        assert!(matches!(
            bad(br#"{"type": "please", "side": 5}"#),
            DilationError::BadMessage(_)
        ));
        assert!(matches!(
            bad(br#"{"type": "connection-hints"}"#),
            DilationError::BadMessage(_)
        ));
        assert!(matches!(
            bad(br#"{"type": "connection-hints", "hints": {}}"#),
            DilationError::BadMessage(_)
        ));
        assert!(matches!(
            bad(br#"{"type": "reconnect""#),
            DilationError::BadMessage(_)
        ));
    }
}
