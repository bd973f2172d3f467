//! One side of an exchange whose two sides are never online at the same time, for
//! `tests/tests/serialize.rs`: each run restores the wormhole saved by the previous one (if
//! any), goes as far as it can, saves it again and exits without closing, as a mobile app
//! that the system stops would.
//!
//! ```text
//! never_together STATE RELAY_URL a            # A: allocates, sends "hello from a"
//! never_together STATE RELAY_URL b CODE       # B: uses CODE, sends "reply from b"
//! ```
//!
//! A run ends in one of two ways: it got the peer's message, closed happily and writes
//! `GOT <message>` then `DONE`; or nothing happened for 2 s, and it writes `SAVED` (the
//! wormhole saved to STATE) and exits 0 without closing. A writes `CODE <code>` when it
//! learns it.

use std::path::Path;
use std::time::Duration;

use wormhole_core::{Event, Options, Wormhole};

const APPID: &str = "wormhole-rs.example/tests/never-together";
const IDLE: Duration = Duration::from_secs(2);

fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("never_together: ERROR: {what}");
    std::process::exit(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        fail("usage: never_together STATE RELAY_URL a|b [CODE]");
    }
    let (state, relay, role) = (Path::new(&args[1]), &args[2], args[3].as_str());
    let (ours, theirs) = match role {
        "a" => ("hello from a", "reply from b"),
        "b" => ("reply from b", "hello from a"),
        _ => fail("the role is a or b"),
    };
    let (w, mut events) = match std::fs::read_to_string(state) {
        Ok(saved) => {
            let r = Wormhole::from_serialized(&saved, Options::default());
            r.unwrap_or_else(|e| fail(e))
        }
        Err(_) => {
            let (w, ev) = Wormhole::create_delegated(APPID, relay, Options::default())
                .unwrap_or_else(|e| fail(e));
            match args.get(4) {
                Some(code) => w.set_code(code).unwrap_or_else(|e| fail(e)),
                None => w.allocate_code(2).unwrap_or_else(|e| fail(e)),
            }
            w.send_message(ours).unwrap_or_else(|e| fail(e));
            (w, ev)
        }
    };
    loop {
        let ev = match tokio::time::timeout(IDLE, events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => fail("the event stream ended without Closed"),
            Err(_) => {
                let saved = w.serialize().await.unwrap_or_else(|e| fail(e));
                let tmp = state.with_extension("tmp");
                std::fs::write(&tmp, saved).unwrap_or_else(|e| fail(e));
                std::fs::rename(&tmp, state).unwrap_or_else(|e| fail(e));
                eprintln!("SAVED");
                // Gone without a word to the server, like a process the system stopped.
                std::process::exit(0);
            }
        };
        match ev {
            Event::Code(code) => eprintln!("CODE {code}"),
            Event::Message(m) => {
                let m = String::from_utf8_lossy(&m).into_owned();
                if m != theirs {
                    fail(format!("unexpected message {m:?}"));
                }
                eprintln!("GOT {m}");
                w.begin_close();
            }
            Event::Closed(Ok(())) => {
                eprintln!("DONE");
                return;
            }
            Event::Closed(Err(e)) => fail(e),
            _ => {}
        }
    }
}
