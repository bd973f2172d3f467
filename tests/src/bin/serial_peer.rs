//! A text sender that saves its wormhole at a chosen step and can be killed there, for
//! `tests/tests/serialize.rs`. It speaks the reference CLI's text protocol (app id
//! `lothar.com/wormhole/text-or-file-xfer`, an `offer` with the text, an `answer` with
//! `message_ack: ok`), so the reference `wormhole receive` is its peer.
//!
//! ```text
//! serial_peer STATE RELAY_URL TEXT [--checkpoint allocated|code|key|offered|held|saved-held]
//!             [--journal]
//! ```
//!
//! With `--journal` the offer is sent the journaled way: the wormhole is saved at `key`,
//! then, inside an outbound hold, the offer is sent, the wormhole saved at `offered`, and
//! only then the hold released. `--checkpoint held` waits to be killed right after sending
//! (before that save), `--checkpoint saved-held` right after the save (before the
//! release).
//!
//! Without `STATE` on disk it creates a wormhole and allocates a code; with it, it restores
//! the wormhole saved there and goes on from the saved step. At the `--checkpoint` step it
//! saves `{"step", "wormhole"}` to `STATE` (written to a temporary file, then renamed),
//! writes `CHECKPOINT <step>` to stderr and waits to be killed. It writes `CODE <code>`
//! when it learns the code, and `DONE` once the peer acknowledged the text and the wormhole
//! closed happily (exit 0). Any failure: a message and exit 1.

use std::path::Path;

use serde_json::{Value, json};
use wormhole_core::{Event, Events, Options, Wormhole};

const APPID: &str = "lothar.com/wormhole/text-or-file-xfer";

fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("serial_peer: ERROR: {what}");
    std::process::exit(1)
}

/// Saves the wormhole and the step.
async fn save(w: &Wormhole, state: &Path, step: &str) {
    let blob = w.serialize().await.unwrap_or_else(|e| fail(e));
    let saved = json!({"step": step, "wormhole": blob}).to_string();
    let tmp = state.with_extension("tmp");
    std::fs::write(&tmp, saved).unwrap_or_else(|e| fail(e));
    std::fs::rename(&tmp, state).unwrap_or_else(|e| fail(e));
}

/// Writes `CHECKPOINT <step>` and waits for SIGKILL.
async fn wait_for_kill(step: &str) -> ! {
    eprintln!("CHECKPOINT {step}");
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

/// Saves the wormhole and the step, then waits for SIGKILL.
async fn checkpoint(w: &Wormhole, state: &Path, step: &str) -> ! {
    save(w, state, step).await;
    wait_for_kill(step).await
}

/// Sends the offer; journaled: saved at `key` first, then held, sent, saved at `offered`,
/// released (stopping at the `held` or `saved-held` checkpoint if asked).
async fn send_offer(w: &Wormhole, state: &Path, offer: &str, journal: bool, stop_at: Option<&str>) {
    if !journal {
        w.send_message(offer).unwrap_or_else(|e| fail(e));
        return;
    }
    save(w, state, "key").await;
    let hold = w.hold_outbound();
    w.send_message(offer).unwrap_or_else(|e| fail(e));
    if stop_at == Some("held") {
        wait_for_kill("held").await;
    }
    save(w, state, "offered").await;
    if stop_at == Some("saved-held") {
        wait_for_kill("saved-held").await;
    }
    hold.release();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        fail("usage: serial_peer STATE RELAY_URL TEXT [--checkpoint STEP]");
    }
    let (state, relay, text) = (Path::new(&args[1]), &args[2], &args[3]);
    let stop_at = args
        .iter()
        .position(|a| a == "--checkpoint")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let journal = args.iter().any(|a| a == "--journal");
    let (w, mut events, mut step): (Wormhole, Events, String) = match std::fs::read_to_string(state)
    {
        Ok(saved) => {
            let saved: Value = serde_json::from_str(&saved).unwrap_or_else(|e| fail(e));
            let blob = saved["wormhole"]
                .as_str()
                .unwrap_or_else(|| fail("no wormhole"));
            let (w, ev) =
                Wormhole::from_serialized(blob, Options::default()).unwrap_or_else(|e| fail(e));
            let step = saved["step"].as_str().unwrap_or_default().to_owned();
            eprintln!("restored at {step}");
            (w, ev, step)
        }
        Err(_) => {
            let (w, ev) = Wormhole::create_delegated(APPID, relay, Options::default())
                .unwrap_or_else(|e| fail(e));
            w.allocate_code(2).unwrap_or_else(|e| fail(e));
            (w, ev, "allocated".to_owned())
        }
    };
    let offer = json!({"offer": {"message": text}}).to_string();
    let at = |step: &str| stop_at == Some(step);
    if at(&step) {
        checkpoint(&w, state, &step).await;
    }
    // Restored after the key: the offer is the next thing to do.
    if step == "key" {
        send_offer(&w, state, &offer, journal, stop_at).await;
        step = "offered".into();
    }
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Code(code) => {
                eprintln!("CODE {code}");
                step = "code".into();
                if at("code") {
                    checkpoint(&w, state, "code").await;
                }
            }
            Event::Verifier(_) => {
                if at("key") {
                    checkpoint(&w, state, "key").await;
                }
                send_offer(&w, state, &offer, journal, stop_at).await;
                step = "offered".into();
                if at("offered") {
                    checkpoint(&w, state, "offered").await;
                }
            }
            Event::Message(m) => {
                let answer: Value = serde_json::from_slice(&m).unwrap_or_else(|e| fail(e));
                if answer["answer"]["message_ack"] != "ok" {
                    fail(format!("unexpected answer {answer}"));
                }
                eprintln!("ANSWER ok (after step {step})");
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
    fail("the event stream ended without Closed");
}
