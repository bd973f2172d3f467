//! What a client asks of the mailbox server (PROTOCOL §3.2–3.6): a client frame, already
//! decoded as a JSON object, parsed into a typed [`Request`].
//!
//! Parsing takes two steps because the reference server checks the connection's state
//! before it reads a frame's fields, and the error a client gets depends on that order:
//!
//! 1. [`Kind::of`] reads only `type` (a frame without one is answered `missing 'type'`,
//!    and is not acked);
//! 2. the connection checks that the request is in turn (`must bind first`, `already
//!    bound`, `only one open per connection`, `must open mailbox before adding`);
//! 3. [`Request::parse`] reads the fields, with the reference's error texts.
//!
//! Some fields the reference uses without checking them first, so a bad value fails
//! (drops the connection) only when the request gets that far, after later state checks.
//! Those fields stay as sent, for the connection to judge at the same point: the `claim`'s
//! nameplate (after the one-claim check), and the names in `release` and `close` (compared
//! with the connection's own before their type matters).
//!
//! Nothing here knows the connection or the store.

use serde_json::{Map, Value};

/// The `type` of a client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ping,
    Bind,
    List,
    Allocate,
    Claim,
    Release,
    Open,
    Add,
    Close,
    /// Any other value, a string or not.
    Unknown,
}

/// Why a frame cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Answer `error` with this text (and the frame as `orig`); the connection stays.
    Error(&'static str),
    /// Drop the connection without a reply: the reference server raises on such a value
    /// (a field that is not a string, a nameplate that is not a number).
    Drop,
}

/// A `nameplate` or `mailbox` field of `release` or `close`, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Name {
    /// A string.
    Text(String),
    /// Any other JSON value: it matches no nameplate or mailbox.
    Other,
}

impl Name {
    fn of(v: &Value) -> Name {
        match v {
            Value::String(s) => Name::Text(s.clone()),
            _ => Name::Other,
        }
    }

    /// The name, when it is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Name::Text(s) => Some(s),
            Name::Other => None,
        }
    }
}

/// One client request with its fields. JSON values the server sends back verbatim are
/// kept as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Answered with `pong` carrying the same value.
    Ping { ping: String },
    /// Sets the connection's app id and side.
    Bind { appid: String, side: String },
    /// The app's nameplates.
    List,
    /// A fresh nameplate, claimed.
    Allocate,
    /// Claims a nameplate. `Err` when the value is not a nameplate (a string of 1 to 40
    /// digits): the connection is dropped once the claim is past the one-claim check.
    Claim {
        nameplate: Result<String, Malformed>,
    },
    /// Releases the nameplate named, or without one the nameplate claimed.
    Release { nameplate: Option<Name> },
    /// Opens a mailbox and subscribes to it.
    Open { mailbox: String },
    /// Adds a message; `id` is the frame's `id` (`null` when absent).
    Add {
        phase: String,
        body: String,
        id: String,
    },
    /// Closes the mailbox named, or without one the mailbox opened. A mood that is not a
    /// string is kept as its JSON text; `null` is no mood.
    Close {
        mailbox: Option<Name>,
        mood: Option<String>,
    },
}

impl Kind {
    /// The frame's kind, from its `type`.
    pub(crate) fn of(frame: &Map<String, Value>) -> Result<Kind, Malformed> {
        let ty = frame
            .get("type")
            .ok_or(Malformed::Error("missing 'type'"))?;
        Ok(match ty.as_str() {
            Some("ping") => Kind::Ping,
            Some("bind") => Kind::Bind,
            Some("list") => Kind::List,
            Some("allocate") => Kind::Allocate,
            Some("claim") => Kind::Claim,
            Some("release") => Kind::Release,
            Some("open") => Kind::Open,
            Some("add") => Kind::Add,
            Some("close") => Kind::Close,
            _ => Kind::Unknown,
        })
    }
}

impl Request {
    /// Reads the fields of a frame of kind `kind` (from [`Kind::of`]). Fields a request
    /// does not use are ignored.
    pub(crate) fn parse(kind: Kind, frame: &Map<String, Value>) -> Result<Request, Malformed> {
        let required =
            |name: &str, missing: &'static str| frame.get(name).ok_or(Malformed::Error(missing));
        Ok(match kind {
            Kind::Ping => Request::Ping {
                ping: json_text(required("ping", "ping requires 'ping'")?),
            },
            Kind::Bind => {
                let appid = required("appid", "bind requires 'appid'")?;
                let side = required("side", "bind requires 'side'")?;
                Request::Bind {
                    appid: string(appid)?,
                    side: string(side)?,
                }
            }
            Kind::List => Request::List,
            Kind::Allocate => Request::Allocate,
            Kind::Claim => {
                let nameplate = required("nameplate", "claim requires 'nameplate'")?;
                Request::Claim {
                    nameplate: nameplate
                        .as_str()
                        .filter(|n| valid_nameplate(n))
                        .map(str::to_owned)
                        .ok_or(Malformed::Drop),
                }
            }
            Kind::Release => Request::Release {
                nameplate: frame.get("nameplate").map(Name::of),
            },
            Kind::Open => Request::Open {
                mailbox: string(required("mailbox", "open requires 'mailbox'")?)?,
            },
            Kind::Add => {
                let phase = required("phase", "missing 'phase'")?;
                let body = required("body", "missing 'body'")?;
                Request::Add {
                    phase: json_text(phase),
                    body: json_text(body),
                    id: frame_id(frame),
                }
            }
            Kind::Close => Request::Close {
                mailbox: frame.get("mailbox").map(Name::of),
                mood: frame.get("mood").and_then(|m| match m {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(json_text(other)),
                }),
            },
            Kind::Unknown => return Err(Malformed::Error("unknown type")),
        })
    }
}

/// The frame's `id` as JSON text (`null` when absent), as its `ack` carries it.
pub(crate) fn frame_id(frame: &Map<String, Value>) -> String {
    frame.get("id").map_or_else(|| "null".to_owned(), json_text)
}

/// A JSON value as compact JSON text.
pub(crate) fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// A field that must be a string.
fn string(v: &Value) -> Result<String, Malformed> {
    v.as_str().map(str::to_owned).ok_or(Malformed::Drop)
}

/// `^\d+$`, at most 40 characters (PROTOCOL §3.5).
fn valid_nameplate(n: &str) -> bool {
    !n.is_empty() && n.len() <= 40 && n.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object: {v}"),
        }
    }

    /// Both steps, as the connection runs them (minus its state checks).
    fn parse(v: Value) -> Result<Request, Malformed> {
        let frame = object(v);
        Request::parse(Kind::of(&frame)?, &frame)
    }

    fn error(text: &'static str) -> Result<Request, Malformed> {
        Err(Malformed::Error(text))
    }

    #[test]
    fn kind_comes_from_type_alone() {
        let kind = |v| Kind::of(&object(v));
        assert_eq!(kind(json!({})), Err(Malformed::Error("missing 'type'")));
        assert_eq!(
            kind(json!({"id": "0001", "ping": 1})),
            Err(Malformed::Error("missing 'type'"))
        );
        assert_eq!(kind(json!({"type": "claim"})), Ok(Kind::Claim));
        assert_eq!(kind(json!({"type": "bind", "x": 1})), Ok(Kind::Bind));
        for odd in [json!("frobnicate"), json!("Ping"), json!(17), json!(null)] {
            assert_eq!(kind(json!({ "type": odd })), Ok(Kind::Unknown), "{odd}");
        }
        assert_eq!(
            parse(json!({"type": 17, "id": [1, 2]})),
            error("unknown type")
        );
    }

    #[test]
    fn ping() {
        assert_eq!(
            parse(json!({"type": "ping"})),
            error("ping requires 'ping'")
        );
        assert_eq!(
            parse(json!({"type": "ping", "ping": 3})),
            Ok(Request::Ping { ping: "3".into() })
        );
        assert_eq!(
            parse(json!({"type": "ping", "ping": {"a": [1, "b"]}})),
            Ok(Request::Ping {
                ping: r#"{"a":[1,"b"]}"#.into()
            })
        );
    }

    #[test]
    fn bind() {
        assert_eq!(
            parse(json!({"type": "bind", "side": "s"})),
            error("bind requires 'appid'")
        );
        assert_eq!(
            parse(json!({"type": "bind"})),
            error("bind requires 'appid'")
        );
        assert_eq!(
            parse(json!({"type": "bind", "appid": "a"})),
            error("bind requires 'side'")
        );
        // Presence first, then types.
        assert_eq!(
            parse(json!({"type": "bind", "appid": 5})),
            error("bind requires 'side'")
        );
        assert_eq!(
            parse(json!({"type": "bind", "appid": "a", "side": 5})),
            Err(Malformed::Drop)
        );
        assert_eq!(
            parse(json!({"type": "bind", "appid": null, "side": "s"})),
            Err(Malformed::Drop)
        );
        assert_eq!(
            parse(json!({"type": "bind", "appid": "a", "side": "s", "client_version": ["x", "1"]})),
            Ok(Request::Bind {
                appid: "a".into(),
                side: "s".into()
            })
        );
    }

    #[test]
    fn list_and_allocate_take_no_fields() {
        assert_eq!(parse(json!({"type": "list", "x": 1})), Ok(Request::List));
        assert_eq!(parse(json!({"type": "allocate"})), Ok(Request::Allocate));
    }

    #[test]
    fn claim() {
        assert_eq!(
            parse(json!({"type": "claim"})),
            error("claim requires 'nameplate'")
        );
        for good in ["4", "0042", &"1".repeat(40)] {
            assert_eq!(
                parse(json!({"type": "claim", "nameplate": good})),
                Ok(Request::Claim {
                    nameplate: Ok(good.to_owned())
                })
            );
        }
        // Not a nameplate: the claim is served as far as the one-claim check, then dropped.
        let repeated = "1".repeat(41);
        for bad in [
            json!("abc"),
            json!(""),
            json!("-1"),
            json!(" 4"),
            json!(12),
            json!(null),
            json!(repeated),
        ] {
            assert_eq!(
                parse(json!({"type": "claim", "nameplate": bad})),
                Ok(Request::Claim {
                    nameplate: Err(Malformed::Drop)
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn release() {
        assert_eq!(
            parse(json!({"type": "release"})),
            Ok(Request::Release { nameplate: None })
        );
        assert_eq!(
            parse(json!({"type": "release", "nameplate": "4"})),
            Ok(Request::Release {
                nameplate: Some(Name::Text("4".into()))
            })
        );
        assert_eq!(
            parse(json!({"type": "release", "nameplate": 4})),
            Ok(Request::Release {
                nameplate: Some(Name::Other)
            })
        );
    }

    #[test]
    fn open() {
        assert_eq!(
            parse(json!({"type": "open"})),
            error("open requires 'mailbox'")
        );
        assert_eq!(
            parse(json!({"type": "open", "mailbox": 7})),
            Err(Malformed::Drop)
        );
        assert_eq!(
            parse(json!({"type": "open", "mailbox": "mb"})),
            Ok(Request::Open {
                mailbox: "mb".into()
            })
        );
    }

    #[test]
    fn add() {
        assert_eq!(parse(json!({"type": "add"})), error("missing 'phase'"));
        assert_eq!(
            parse(json!({"type": "add", "body": "00"})),
            error("missing 'phase'")
        );
        assert_eq!(
            parse(json!({"type": "add", "phase": "pake"})),
            error("missing 'body'")
        );
        assert_eq!(
            parse(json!({"type": "add", "phase": "pake", "body": "00"})),
            Ok(Request::Add {
                phase: r#""pake""#.into(),
                body: r#""00""#.into(),
                id: "null".into()
            })
        );
        // Any JSON is stored and echoed as sent.
        assert_eq!(
            parse(json!({"type": "add", "phase": 1, "body": {"k": [null]}, "id": [1, 2]})),
            Ok(Request::Add {
                phase: "1".into(),
                body: r#"{"k":[null]}"#.into(),
                id: "[1,2]".into()
            })
        );
    }

    #[test]
    fn close() {
        assert_eq!(
            parse(json!({"type": "close"})),
            Ok(Request::Close {
                mailbox: None,
                mood: None
            })
        );
        assert_eq!(
            parse(json!({"type": "close", "mailbox": "mb", "mood": "happy"})),
            Ok(Request::Close {
                mailbox: Some(Name::Text("mb".into())),
                mood: Some("happy".into())
            })
        );
        assert_eq!(
            parse(json!({"type": "close", "mailbox": 7, "mood": null})),
            Ok(Request::Close {
                mailbox: Some(Name::Other),
                mood: None
            })
        );
        assert_eq!(
            parse(json!({"type": "close", "mood": ["lonely", 1]})),
            Ok(Request::Close {
                mailbox: None,
                mood: Some(r#"["lonely",1]"#.into())
            })
        );
    }

    #[test]
    fn frame_id_is_json_text() {
        assert_eq!(frame_id(&object(json!({}))), "null");
        assert_eq!(frame_id(&object(json!({"id": "0001"}))), r#""0001""#);
        assert_eq!(frame_id(&object(json!({"id": null}))), "null");
        assert_eq!(frame_id(&object(json!({"id": 7.5}))), "7.5");
    }
}
