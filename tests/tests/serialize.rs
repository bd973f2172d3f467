//! Serialized wormholes (`Wormhole::serialize` / `from_serialized`) across a process's
//! death: our sender (`src/bin/serial_peer.rs`) saves its wormhole at a step, is killed
//! with SIGKILL there, and a new process restores it and finishes the exchange with the
//! reference CLI 0.24.0 as receiver, which notices nothing. Run with `scripts/test.sh`.

use std::path::Path;

use wormhole_tests::{
    MailboxServer, OurServer, RunningCli, TempDir, assert_loopback_only, ref_cli,
    reference_text_stdout,
};

fn peer(state: &Path, url: &str, text: &str, checkpoint: Option<&str>) -> RunningCli {
    journaled_peer(state, url, text, checkpoint, false)
}

fn journaled_peer(
    state: &Path,
    url: &str,
    text: &str,
    checkpoint: Option<&str>,
    journal: bool,
) -> RunningCli {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_serial_peer"));
    cmd.arg(state).arg(url).arg(text);
    if let Some(step) = checkpoint {
        cmd.args(["--checkpoint", step]);
    }
    if journal {
        cmd.arg("--journal");
    }
    RunningCli::spawn(&format!("serial_peer ({checkpoint:?})"), cmd)
}

async fn code_of(p: &mut RunningCli) -> String {
    let line = p
        .wait_for_stderr("its code", |l| l.starts_with("CODE "))
        .await;
    line["CODE ".len()..].trim().to_owned()
}

/// Saved at `step`, killed, restored: the reference receiver gets the text.
async fn killed_at(step: &str, url: &str) {
    let scratch = TempDir::new("serialize");
    let state = scratch.path().join("state.json");
    let text = format!("sent across a kill -9 at {step}");
    let mut first = peer(&state, url, &text, Some(step));
    let receive = |code: &str| {
        RunningCli::spawn(
            "reference receive",
            ref_cli(url, &["receive", "--hide-progress", code]),
        )
    };
    let receiver = match step {
        "allocated" => {
            first
                .wait_for_stderr("the checkpoint", |l| l.starts_with("CHECKPOINT"))
                .await;
            first.kill9().await;
            let mut second = peer(&state, url, &text, None);
            let code = code_of(&mut second).await;
            let receiver = receive(&code);
            let out = second.finish().await;
            out.assert_success();
            assert!(out.stderr.contains("restored at allocated"), "{out}");
            receiver
        }
        "code" => {
            let code = code_of(&mut first).await;
            first
                .wait_for_stderr("the checkpoint", |l| l.starts_with("CHECKPOINT"))
                .await;
            first.kill9().await;
            // The peer arrives while we are dead.
            let receiver = receive(&code);
            let out = peer(&state, url, &text, None).finish().await;
            out.assert_success();
            assert!(out.stderr.contains("restored at code"), "{out}");
            receiver
        }
        _ => {
            let code = code_of(&mut first).await;
            let receiver = receive(&code);
            first
                .wait_for_stderr("the checkpoint", |l| l.starts_with("CHECKPOINT"))
                .await;
            first.kill9().await;
            let out = peer(&state, url, &text, None).finish().await;
            out.assert_success();
            assert!(out.stderr.contains(&format!("restored at {step}")), "{out}");
            receiver
        }
    };
    let r = receiver.finish().await;
    r.assert_success();
    assert_eq!(r.stdout, reference_text_stdout(&text).await, "{r}");
}

#[tokio::test]
async fn killed_before_the_code_then_restored() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    killed_at("allocated", &server.url()).await;
}

#[tokio::test]
async fn killed_after_the_code_then_restored() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    killed_at("code", &server.url()).await;
}

#[tokio::test]
async fn killed_after_the_key_then_restored() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    killed_at("key", &server.url()).await;
}

#[tokio::test]
async fn killed_mid_exchange_then_restored() {
    assert_loopback_only();
    let server = OurServer::start().await;
    killed_at("offered", &server.url()).await;
}

/// A and B are never online together: A allocates, sends and leaves; B arrives, sends and
/// leaves; A comes back, and so on, each restoring what it saved. Both get the other's
/// message and close happily.
async fn never_online_together(url: &str) {
    let scratch = TempDir::new("never-together");
    let (a_state, b_state) = (scratch.path().join("a.json"), scratch.path().join("b.json"));
    let run = |state: &Path, role: &str, code: Option<&str>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_never_together"));
        cmd.arg(state).arg(url).arg(role);
        if let Some(code) = code {
            cmd.arg(code);
        }
        RunningCli::spawn(&format!("never_together {role}"), cmd).finish()
    };
    let a1 = run(&a_state, "a", None).await;
    a1.assert_success();
    assert!(a1.stderr.contains("SAVED"), "{a1}");
    let code = a1
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("CODE "))
        .unwrap_or_else(|| panic!("no code: {a1}"))
        .to_owned();
    // B: gets A's pake, posts its own and its version; its reply waits for A's version.
    let b1 = run(&b_state, "b", Some(&code)).await;
    b1.assert_success();
    assert!(b1.stderr.contains("SAVED"), "{b1}");
    // A: the key, B's version (verified), its hello posted; no reply yet.
    let a2 = run(&a_state, "a", None).await;
    a2.assert_success();
    assert!(a2.stderr.contains("SAVED"), "{a2}");
    // B: A's version and hello; its reply posted; closes.
    let b2 = run(&b_state, "b", None).await;
    b2.assert_success();
    assert!(
        b2.stderr.contains("GOT hello from a") && b2.stderr.contains("DONE"),
        "{b2}"
    );
    // A: the reply.
    let a3 = run(&a_state, "a", None).await;
    a3.assert_success();
    assert!(
        a3.stderr.contains("GOT reply from b") && a3.stderr.contains("DONE"),
        "{a3}"
    );
}

#[tokio::test]
async fn never_online_together_through_our_server() {
    assert_loopback_only();
    let server = OurServer::start().await;
    never_online_together(&server.url()).await;
}

#[tokio::test]
async fn never_online_together_through_the_reference_server() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    never_online_together(&server.url()).await;
}

/// One saved wormhole restored twice at once: harmless to the peer. The reference
/// receiver gets the text once, without noticing anything, and a copy finishes happily.
/// The other copy finishes too, or (when the first one's close and the receiver's had
/// already emptied and deleted the mailbox before it read it) waits for an answer it can
/// never get, like a lonely wormhole, without an error.
#[tokio::test]
async fn restored_twice_is_harmless() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    let scratch = TempDir::new("serialize-twice");
    let state = scratch.path().join("state.json");
    let text = "restored twice";
    let mut first = peer(&state, &url, text, Some("key"));
    let code = code_of(&mut first).await;
    let receiver = RunningCli::spawn(
        "reference receive",
        ref_cli(&url, &["receive", "--hide-progress", &code]),
    );
    first
        .wait_for_stderr("the checkpoint", |l| l.starts_with("CHECKPOINT"))
        .await;
    first.kill9().await;
    let (one, two) = (
        peer(&state, &url, text, None),
        peer(&state, &url, text, None),
    );
    let r = receiver.finish().await;
    r.assert_success();
    assert_eq!(r.stdout, reference_text_stdout(text).await, "{r}");
    let limit = std::time::Duration::from_secs(30);
    let (one, two) = tokio::join!(one.finish_within(limit), two.finish_within(limit));
    let done = [&one, &two]
        .iter()
        .filter(|o| {
            o.as_ref()
                .is_ok_and(|o| o.status.success() && o.stderr.contains("DONE"))
        })
        .count();
    assert!(done >= 1, "no copy finished: {one:?} {two:?}");
    for o in [&one, &two] {
        let o = match o {
            Ok(o) | Err(o) => o,
        };
        assert!(!o.stderr.contains("ERROR"), "{o}");
    }
}

/// Strings that are not serialized wormholes of this version are refused, with a reason
/// and without quoting them.
#[test]
fn bad_serialized_data_is_refused() {
    use wormhole_core::{ErrorKind, Options, Wormhole};
    for (data, why) in [
        ("", "not JSON"),
        ("{}", "not a serialized wormhole"),
        (
            r#"{"format": "magic-wormhole serialized wormhole", "version": 99}"#,
            "version 99",
        ),
        (
            r#"{"format": "magic-wormhole serialized wormhole", "version": 1, "relay_url": "ws://x/v1", "session": {}, "events": [], "secret-field": "hunter2"}"#,
            "damaged",
        ),
    ] {
        let e = Wormhole::from_serialized(data, Options::default()).expect_err(data);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(why), "{data}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

/// Journaled mode, killed inside the hold before the save: nothing of that attempt reached
/// the peer (it gets the text of the run that restored the previous save); killed after
/// the save but before the release: the restored wormhole sends what the save holds (the
/// first run's text). Either way the peer gets exactly what the saved state says was sent.
#[tokio::test]
async fn journaled_sends_are_released_only_after_the_save() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    for (stop, expected_run) in [("held", 2), ("saved-held", 1)] {
        let scratch = TempDir::new("journal");
        let state = scratch.path().join("state.json");
        let text = |run: u32| format!("journaled, {stop}, run {run}");
        let mut first = journaled_peer(&state, &url, &text(1), Some(stop), true);
        let code = code_of(&mut first).await;
        let receiver = RunningCli::spawn(
            "reference receive",
            ref_cli(&url, &["receive", "--hide-progress", &code]),
        );
        first
            .wait_for_stderr("the checkpoint", |l| l.starts_with("CHECKPOINT"))
            .await;
        // Give a leaked frame time to reach the server before the kill.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.kill9().await;
        let second = journaled_peer(&state, &url, &text(2), None, true)
            .finish()
            .await;
        second.assert_success();
        let r = receiver.finish().await;
        r.assert_success();
        assert_eq!(
            r.stdout,
            reference_text_stdout(&text(expected_run)).await,
            "{stop}: {r}\n{second}"
        );
    }
}

/// `suspend()` in one process: the suspended wormhole stops without releasing anything
/// (its stream ends without `Closed`, its calls fail), the peer (the reference library
/// through the reference server) waits, and the restored copy finishes the exchange,
/// sending the message the suspended one had not sent yet.
#[tokio::test]
async fn suspended_then_restored_in_the_same_process() {
    use std::time::Duration;
    use wormhole_core::{ErrorKind, Event, Options, Wormhole};
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    let (w, mut events) = Wormhole::create_delegated(
        "lothar.com/wormhole/text-or-file-xfer",
        &url,
        Options::default(),
    )
    .expect("create");
    w.allocate_code(2).expect("allocate");
    let code = loop {
        match events.recv().await.expect("events") {
            Event::Code(c) => break c,
            _ => continue,
        }
    };
    let receiver = RunningCli::spawn(
        "reference receive",
        ref_cli(&url, &["receive", "--hide-progress", &code]),
    );
    // Suspended before the offer is sent: the restored copy must send it.
    let saved = w.suspend().await.expect("suspend");
    let offer = serde_json::json!({"offer": {"message": "sent after a suspend"}}).to_string();
    assert_eq!(
        w.send_message(offer.clone()).unwrap_err().kind(),
        ErrorKind::Closed
    );
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("the stream of a suspended wormhole ends")
    {
        assert!(
            !matches!(ev, Event::Closed(_)),
            "a suspended wormhole is not closed: {ev:?}"
        );
    }
    // The receiver waits meanwhile (it has only seen our PAKE message or nothing).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (w2, mut events2) = Wormhole::from_serialized(&saved, Options::default()).expect("restore");
    w2.send_message(offer).expect("send");
    let mut answer = None;
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(60), events2.recv())
            .await
            .expect("events of the restored wormhole")
        {
            Some(Event::Message(m)) => {
                answer = Some(String::from_utf8(m).expect("utf-8"));
                w2.begin_close();
            }
            Some(Event::Closed(r)) => break r,
            Some(_) => {}
            None => panic!("the stream ended without Closed"),
        }
    };
    assert!(
        answer.as_deref().unwrap_or("").contains("message_ack"),
        "{answer:?}"
    );
    outcome.expect("closed happily");
    let r = receiver.finish().await;
    r.assert_success();
    assert_eq!(
        r.stdout,
        reference_text_stdout("sent after a suspend").await,
        "{r}"
    );
}
