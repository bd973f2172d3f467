//! The file-transfer protocol's application messages (PROTOCOL §8) as pure data:
//! [`TransferMessage`] decodes and encodes what `wormhole send` and `wormhole receive`
//! exchange. Also reachable as `wormhole_core::text::TransferMessage`.

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// What a sender offers.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// A text message.
    Message(String),
    /// A file (see [`crate::transfer`]; parsed here so a text receiver can refuse it).
    File {
        /// Base name.
        filename: String,
        /// Size in bytes.
        filesize: u64,
    },
    /// A directory, as a zip stream.
    Directory {
        /// Base name.
        dirname: String,
        /// Byte length of the zip stream.
        zipsize: u64,
    },
    /// An offer type this library does not know.
    Unknown(Value),
}

/// One decoded file-transfer application message.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferMessage {
    /// `{"offer": …}`.
    Offer(Offer),
    /// `{"answer": {"message_ack": …}}`.
    MessageAck(String),
    /// `{"answer": {"file_ack": …}}`.
    FileAck(String),
    /// `{"transit": …}`: connection hints (used by file transfer).
    Transit(Value),
    /// `{"error": TEXT}`.
    Error(String),
    /// Any other JSON object: ignored by both sides.
    Other(Value),
}

impl TransferMessage {
    /// Decode a message. Anything that is not a JSON object is [`Error::Transfer`].
    pub fn parse(bytes: &[u8]) -> Result<TransferMessage> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|_| Error::Transfer("the peer sent a message that is not JSON".into()))?;
        let Value::Object(obj) = &v else {
            return Err(Error::Transfer(
                "the peer sent a message that is not a JSON object".into(),
            ));
        };
        if let Some(e) = obj.get("error") {
            let text = e
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string());
            return Ok(TransferMessage::Error(text));
        }
        if let Some(offer) = obj.get("offer") {
            return Ok(TransferMessage::Offer(parse_offer(offer)));
        }
        if let Some(answer) = obj.get("answer") {
            if let Some(a) = answer.get("message_ack") {
                return Ok(TransferMessage::MessageAck(as_text(a)));
            }
            if let Some(a) = answer.get("file_ack") {
                return Ok(TransferMessage::FileAck(as_text(a)));
            }
            return Ok(TransferMessage::Other(v));
        }
        if let Some(t) = obj.get("transit") {
            return Ok(TransferMessage::Transit(t.clone()));
        }
        Ok(TransferMessage::Other(v))
    }

    /// Encode as the JSON bytes the reference sends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = match self {
            TransferMessage::Offer(Offer::Message(m)) => json!({"offer": {"message": m}}),
            TransferMessage::Offer(Offer::File { filename, filesize }) => {
                json!({"offer": {"file": {"filename": filename, "filesize": filesize}}})
            }
            TransferMessage::Offer(Offer::Directory { dirname, zipsize }) => {
                json!({"offer": {"directory": {"mode": "zipfile/deflated", "dirname": dirname, "zipsize": zipsize}}})
            }
            TransferMessage::Offer(Offer::Unknown(v)) => json!({ "offer": v }),
            TransferMessage::MessageAck(a) => json!({"answer": {"message_ack": a}}),
            TransferMessage::FileAck(a) => json!({"answer": {"file_ack": a}}),
            TransferMessage::Transit(t) => json!({ "transit": t }),
            TransferMessage::Error(e) => json!({ "error": e }),
            TransferMessage::Other(v) => v.clone(),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

fn as_text(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

fn parse_offer(offer: &Value) -> Offer {
    if let Some(Value::String(m)) = offer.get("message") {
        return Offer::Message(m.clone());
    }
    if let Some(f) = offer.get("file") {
        if let (Some(name), Some(size)) = (
            f.get("filename").and_then(Value::as_str),
            f.get("filesize").and_then(Value::as_u64),
        ) {
            return Offer::File {
                filename: name.to_owned(),
                filesize: size,
            };
        }
    }
    if let Some(d) = offer.get("directory") {
        if let (Some(name), Some(size)) = (
            d.get("dirname").and_then(Value::as_str),
            d.get("zipsize").and_then(Value::as_u64),
        ) {
            return Offer::Directory {
                dirname: name.to_owned(),
                zipsize: size,
            };
        }
    }
    Offer::Unknown(offer.clone())
}

/// The offer a text sender posts: `{"offer": {"message": TEXT}}`.
pub fn text_offer(text: &str) -> Vec<u8> {
    TransferMessage::Offer(Offer::Message(text.to_owned())).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_messages_parse() {
        assert_eq!(
            TransferMessage::parse(br#"{"offer": {"message": "hello world"}}"#).unwrap(),
            TransferMessage::Offer(Offer::Message("hello world".into()))
        );
        assert_eq!(
            TransferMessage::parse(br#"{"answer": {"message_ack": "ok"}}"#).unwrap(),
            TransferMessage::MessageAck("ok".into())
        );
        assert_eq!(
            TransferMessage::parse(
                br#"{"offer": {"file": {"filename": "hello.txt", "filesize": 20}}}"#
            )
            .unwrap(),
            TransferMessage::Offer(Offer::File {
                filename: "hello.txt".into(),
                filesize: 20
            })
        );
        assert_eq!(
            TransferMessage::parse(br#"{"offer": {"directory": {"mode": "zipfile/deflated", "dirname": "d1", "zipsize": 331, "numbytes": 9, "numfiles": 2}}}"#).unwrap(),
            TransferMessage::Offer(Offer::Directory { dirname: "d1".into(), zipsize: 331 })
        );
        assert_eq!(
            TransferMessage::parse(br#"{"error": "transfer rejected"}"#).unwrap(),
            TransferMessage::Error("transfer rejected".into())
        );
        assert!(matches!(
            TransferMessage::parse(br#"{"transit": {"hints-v1": []}}"#).unwrap(),
            TransferMessage::Transit(_)
        ));
        assert!(matches!(
            TransferMessage::parse(br#"{"something": 1}"#).unwrap(),
            TransferMessage::Other(_)
        ));
        assert!(matches!(
            TransferMessage::parse(br#"{"offer": {"message": 5}}"#).unwrap(),
            TransferMessage::Offer(Offer::Unknown(_))
        ));
        for bad in [&b"nope"[..], b"[1]", b"\"x\"", b""] {
            assert_eq!(
                TransferMessage::parse(bad).unwrap_err().kind(),
                crate::ErrorKind::Transfer
            );
        }
    }

    #[test]
    fn encodings_roundtrip() {
        for m in [
            TransferMessage::Offer(Offer::Message("héllo \u{1F600}".into())),
            TransferMessage::MessageAck("ok".into()),
            TransferMessage::Error("transfer rejected".into()),
            TransferMessage::Offer(Offer::File {
                filename: "a".into(),
                filesize: 0,
            }),
        ] {
            assert_eq!(TransferMessage::parse(&m.to_bytes()).unwrap(), m);
        }
        let v: Value =
            serde_json::from_slice(&TransferMessage::Offer(Offer::Message("hi".into())).to_bytes())
                .unwrap();
        assert_eq!(v, json!({"offer": {"message": "hi"}}));
    }
}
