//! End-to-end tests of the wormhole-core API against the reference mailbox server 0.8.0.
//!
//! Each test starts its own server (so they run in parallel safely) after checking it runs
//! in a loopback-only network namespace. Run them with `scripts/test.sh`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wormhole_core::{ErrorKind, Event, Events, Options, Wormhole};
use wormhole_tests::{
    MailboxServer, TIMEOUT, TempDir, assert_loopback_only, expect_kind, free_port, poll_until,
    sqlite_query, test_appid, within,
};

fn opts(app_versions: Value) -> Options {
    Options {
        app_versions,
        ..Default::default()
    }
}

async fn message(w: &Wormhole, who: &str) -> Vec<u8> {
    within(TIMEOUT, &format!("a message at {who}"), w.get_message())
        .await
        .unwrap_or_else(|e| panic!("{who}: get_message failed: {e}"))
}

async fn verifier(w: &Wormhole, who: &str) -> [u8; 32] {
    within(TIMEOUT, &format!("{who}'s verifier"), w.get_verifier())
        .await
        .unwrap_or_else(|e| panic!("{who}: get_verifier failed: {e}"))
}

async fn close_ok(w: &Wormhole, who: &str) {
    let r = within(TIMEOUT, &format!("{who}'s close()"), w.close()).await;
    assert_eq!(r, Ok(()), "{who}: close() should be happy");
}

async fn next_event(ev: &mut Events) -> Event {
    within(TIMEOUT, "the next delegated event", ev.recv())
        .await
        .expect("the event stream ended before Closed")
}

/// `NAMEPLATE-WORD-WORD` with a numeric nameplate and lowercase words.
#[track_caller]
fn assert_code_shape(code: &str, words: usize) {
    let parts: Vec<&str> = code.split('-').collect();
    assert_eq!(
        parts.len(),
        words + 1,
        "code {code:?} should have {words} words"
    );
    assert!(
        !parts[0].is_empty() && parts[0].bytes().all(|b| b.is_ascii_digit()),
        "nameplate of {code:?} should be numeric"
    );
    for w in &parts[1..] {
        assert!(
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()),
            "word {w:?} of {code:?} should be lowercase letters"
        );
    }
}

/// (a) Two Rust peers: allocate + set_code, messages both ways (one sent before the peer
/// exists), equal verifiers, versions, derive_key, happy close.
#[tokio::test]
async fn two_rust_peers_allocate_and_exchange() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("two-peers");

    let a = Wormhole::create(&appid, &server.url(), opts(json!({"x": 1}))).unwrap();
    expect_kind(a.derive_key("purpose", 32), ErrorKind::NoKey);
    a.allocate_code(2).unwrap();
    let code = within(TIMEOUT, "A's code", a.get_code()).await.unwrap();
    assert_code_shape(&code, 2);
    a.send_message(b"A1: sent before B exists").unwrap();

    let b = Wormhole::create(&appid, &server.url(), opts(json!({"x": 2}))).unwrap();
    expect_kind(b.derive_key("purpose", 32), ErrorKind::NoKey);
    b.set_code(&code).unwrap();
    assert_eq!(
        within(TIMEOUT, "B's code", b.get_code()).await.unwrap(),
        code
    );
    b.send_message(b"B1").unwrap();

    assert_eq!(message(&b, "B").await, b"A1: sent before B exists");
    assert_eq!(message(&a, "A").await, b"B1");
    a.send_message(b"A2").unwrap();
    a.send_message("A3 \u{1F600}").unwrap();
    b.send_message(Vec::new()).unwrap();
    b.send_message(vec![0u8, 255, 1, 2]).unwrap();
    assert_eq!(message(&b, "B").await, b"A2");
    assert_eq!(message(&b, "B").await, "A3 \u{1F600}".as_bytes());
    assert_eq!(message(&a, "A").await, b"");
    assert_eq!(message(&a, "A").await, [0u8, 255, 1, 2]);

    let (va, vb) = (verifier(&a, "A").await, verifier(&b, "B").await);
    assert_eq!(va, vb, "verifiers differ");
    assert_ne!(va, [0u8; 32]);

    let ka = within(TIMEOUT, "A's key", a.get_unverified_key())
        .await
        .unwrap();
    let kb = within(TIMEOUT, "B's key", b.get_unverified_key())
        .await
        .unwrap();
    assert_eq!(ka.0, kb.0, "keys differ");

    // Each side sees the *other's* app_versions.
    assert_eq!(
        within(TIMEOUT, "A's versions", a.get_versions())
            .await
            .unwrap(),
        json!({"x": 2})
    );
    assert_eq!(
        within(TIMEOUT, "B's versions", b.get_versions())
            .await
            .unwrap(),
        json!({"x": 1})
    );

    let da = a.derive_key("purpose", 32).unwrap();
    let db = b.derive_key("purpose", 32).unwrap();
    assert_eq!(da.len(), 32);
    assert_eq!(da, db, "derived keys differ");
    assert_ne!(a.derive_key("other purpose", 32).unwrap(), da);
    assert_eq!(a.derive_key("purpose", 16).unwrap().len(), 16);

    close_ok(&a, "A").await;
    close_ok(&b, "B").await;
    // After a happy close, getters report the closed wormhole.
    expect_kind(
        within(TIMEOUT, "get_message after close", a.get_message()).await,
        ErrorKind::Closed,
    );
    assert_eq!(a.closed_result(), Some(Ok(())));
}

/// (b) Delegated mode: every event arrives, in order, on the stream, which ends after
/// `Closed(Ok)`.
#[tokio::test]
async fn delegated_mode_event_order() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("delegated");

    let (a, mut events) =
        Wormhole::create_delegated(&appid, &server.url(), opts(json!({"side": "A"}))).unwrap();
    expect_kind(
        within(TIMEOUT, "get_code in delegated mode", a.get_code()).await,
        ErrorKind::InvalidArgument,
    );
    a.allocate_code(2).unwrap();

    // The welcome arrives as soon as the connection opens, before `allocated`.
    match next_event(&mut events).await {
        Event::Welcome(w) => assert!(w.get("error").is_none(), "welcome: {w:?}"),
        other => panic!("expected Welcome first, got {other:?}"),
    }
    let code = match next_event(&mut events).await {
        Event::Code(c) => c,
        other => panic!("expected Code, got {other:?}"),
    };
    assert_code_shape(&code, 2);

    let b = Wormhole::create(&appid, &server.url(), opts(json!({"side": "B"}))).unwrap();
    b.set_code(&code).unwrap();
    b.send_message(b"from B 1").unwrap();
    b.send_message(b"from B 2").unwrap();

    match next_event(&mut events).await {
        Event::UnverifiedKey(k) => {
            let kb = within(TIMEOUT, "B's key", b.get_unverified_key())
                .await
                .unwrap();
            assert_eq!(k.0, kb.0, "keys differ");
        }
        other => panic!("expected UnverifiedKey, got {other:?}"),
    }
    match next_event(&mut events).await {
        Event::Verifier(v) => assert_eq!(v, verifier(&b, "B").await, "verifiers differ"),
        other => panic!("expected Verifier, got {other:?}"),
    }
    assert_eq!(
        next_event(&mut events).await,
        Event::Versions(json!({"side": "B"}))
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Message(b"from B 1".to_vec())
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Message(b"from B 2".to_vec())
    );

    a.send_message(b"from A").unwrap();
    assert_eq!(message(&b, "B").await, b"from A");
    assert_eq!(a.derive_key("p", 8).unwrap(), b.derive_key("p", 8).unwrap());

    close_ok(&a, "A").await;
    assert_eq!(next_event(&mut events).await, Event::Closed(Ok(())));
    drop(a);
    assert_eq!(
        within(TIMEOUT, "the event stream to end", events.recv()).await,
        None,
        "nothing may follow Closed"
    );
    close_ok(&b, "B").await;
}

/// (c) Offline codes: both sides set the same code; no allocation.
#[tokio::test]
async fn offline_code_both_sides_set() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("offline");
    let code = "913-166532";

    let a = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    let b = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    a.set_code(code).unwrap();
    b.set_code(code).unwrap();
    assert_eq!(
        within(TIMEOUT, "A's code", a.get_code()).await.unwrap(),
        code
    );
    a.send_message(b"ping").unwrap();
    assert_eq!(message(&b, "B").await, b"ping");
    b.send_message(b"pong").unwrap();
    assert_eq!(message(&a, "A").await, b"pong");
    assert_eq!(verifier(&a, "A").await, verifier(&b, "B").await);
    assert_eq!(
        within(TIMEOUT, "versions", a.get_versions()).await.unwrap(),
        json!({})
    );
    close_ok(&a, "A").await;
    close_ok(&b, "B").await;
}

/// Concurrent `get_message` calls are served in the order they were made, whatever order
/// their futures are polled in; a call dropped unserved gives its turn to the next.
#[tokio::test]
async fn concurrent_get_message_calls_are_served_in_call_order() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("turns");
    let code = "914-166532";
    let a = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    let b = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    a.set_code(code).unwrap();
    b.set_code(code).unwrap();
    let first = b.get_message();
    let dropped = b.get_message();
    let (second, third) = (b.get_message(), b.get_message());
    drop(dropped);
    for m in [&b"one"[..], b"two", b"three"] {
        a.send_message(m).unwrap();
    }
    // Polled last to first.
    let (t, s, f) = within(TIMEOUT, "three messages", async {
        tokio::join!(
            tokio::spawn(third),
            tokio::spawn(second),
            tokio::spawn(first)
        )
    })
    .await;
    assert_eq!(f.unwrap().unwrap(), b"one");
    assert_eq!(s.unwrap().unwrap(), b"two");
    assert_eq!(t.unwrap().unwrap(), b"three");
    close_ok(&a, "A").await;
    close_ok(&b, "B").await;
}

/// A transfer started after the peer's offer already arrived still gets it (deferred mode
/// keeps undelivered messages for the transfer that starts next).
#[tokio::test]
async fn a_transfer_started_late_gets_the_offer_that_came_first() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("late-receive");
    let code = "915-166532";
    let a = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    let b = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    a.set_code(code).unwrap();
    b.set_code(code).unwrap();
    let sending = tokio::spawn({
        let a = a.clone();
        async move { wormhole_core::text::send_text(&a, "early text").await }
    });
    verifier(&b, "B").await;
    // The offer follows the version message: give it time to be queued at B.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = within(
        TIMEOUT,
        "receive_text",
        wormhole_core::text::receive_text(&b),
    )
    .await;
    assert_eq!(got.unwrap(), "early text");
    within(TIMEOUT, "send_text", sending)
        .await
        .unwrap()
        .unwrap();
    close_ok(&a, "A").await;
    close_ok(&b, "B").await;
}

/// (e, API) Codes that share the nameplate but differ in words: both sides fail with
/// WrongPassword, and so does close().
#[tokio::test]
async fn wrong_code_is_wrong_password_on_both_sides() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("wrong-code");

    let a = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    let b = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    a.set_code("4-purple-sausages").unwrap();
    b.set_code("4-purple-sausage").unwrap();
    a.send_message(b"secret from A").unwrap();
    b.send_message(b"secret from B").unwrap();

    expect_kind(
        within(TIMEOUT, "A's verifier", a.get_verifier()).await,
        ErrorKind::WrongPassword,
    );
    expect_kind(
        within(TIMEOUT, "B's verifier", b.get_verifier()).await,
        ErrorKind::WrongPassword,
    );
    expect_kind(
        within(TIMEOUT, "A's message", a.get_message()).await,
        ErrorKind::WrongPassword,
    );
    expect_kind(
        within(TIMEOUT, "A's close", a.close()).await,
        ErrorKind::WrongPassword,
    );
    expect_kind(
        within(TIMEOUT, "B's close", b.close()).await,
        ErrorKind::WrongPassword,
    );
    expect_kind(a.send_message(b"more"), ErrorKind::WrongPassword);
}

/// (f) A wormhole whose peer never comes: close() is Lonely.
#[tokio::test]
async fn lonely_close() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let w = Wormhole::create(&test_appid("lonely"), &server.url(), Options::default()).unwrap();
    w.set_code("5-lonely-wormhole").unwrap();
    assert_eq!(
        within(TIMEOUT, "the code", w.get_code()).await.unwrap(),
        "5-lonely-wormhole"
    );
    // Make sure the server has seen us (the welcome arrives once connected).
    within(TIMEOUT, "the welcome", w.get_welcome())
        .await
        .unwrap();
    expect_kind(within(TIMEOUT, "close", w.close()).await, ErrorKind::Lonely);
    // close() again reports the same outcome.
    expect_kind(within(TIMEOUT, "close", w.close()).await, ErrorKind::Lonely);
    expect_kind(
        within(TIMEOUT, "get_verifier after close", w.get_verifier()).await,
        ErrorKind::Lonely,
    );
}

/// (g) Interactive input with completion from the server's nameplate list, and the
/// input helper's error rules.
#[tokio::test]
async fn input_code_with_completion() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let appid = test_appid("input");

    let a = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    a.allocate_code(2).unwrap();
    let code = within(TIMEOUT, "A's code", a.get_code()).await.unwrap();
    assert_code_shape(&code, 2);
    expect_kind(a.allocate_code(2), ErrorKind::OnlyOneCode);
    expect_kind(a.set_code("1-abc-def"), ErrorKind::OnlyOneCode);
    let (nameplate, words) = code.split_once('-').unwrap();
    let first_word = words.split('-').next().unwrap();

    let b = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    let input = b.input_code().unwrap();
    expect_kind(b.set_code(&code), ErrorKind::OnlyOneCode);
    expect_kind(b.allocate_code(2), ErrorKind::OnlyOneCode);
    expect_kind(b.input_code(), ErrorKind::OnlyOneCode);
    expect_kind(
        input.choose_words(words),
        ErrorKind::MustChooseNameplateFirst,
    );
    expect_kind(
        input.get_word_completions("a"),
        ErrorKind::MustChooseNameplateFirst,
    );

    // The nameplate list comes from the server: poll (refreshing now and then) until A's
    // nameplate shows up.
    let wanted = format!("{nameplate}-");
    let mut polls = 0u32;
    let completions = poll_until(
        TIMEOUT,
        Duration::from_millis(50),
        "A's nameplate in the list",
        || {
            if polls % 10 == 0 {
                input.refresh_nameplates().unwrap();
            }
            polls += 1;
            let c = input.get_nameplate_completions("").unwrap();
            let found = c.contains(&wanted);
            async move { found.then_some(c) }
        },
    )
    .await;
    assert!(
        completions.iter().all(|c| c.ends_with('-')),
        "{completions:?}"
    );
    let by_prefix = input.get_nameplate_completions(&nameplate[..1]).unwrap();
    assert!(by_prefix.contains(&wanted), "{by_prefix:?}");
    assert!(
        input.get_nameplate_completions("x").unwrap().is_empty(),
        "no nameplate starts with x"
    );

    expect_kind(input.choose_nameplate("x1"), ErrorKind::InvalidCode);
    input.choose_nameplate(nameplate).unwrap();
    expect_kind(input.refresh_nameplates(), ErrorKind::AlreadyChoseNameplate);
    expect_kind(
        input.get_nameplate_completions(""),
        ErrorKind::AlreadyChoseNameplate,
    );
    expect_kind(
        input.choose_nameplate(nameplate),
        ErrorKind::AlreadyChoseNameplate,
    );

    within(TIMEOUT, "the wordlist", input.when_wordlist_is_available())
        .await
        .unwrap();
    let prefix = &first_word[..2];
    let word_completions = input.get_word_completions(prefix).unwrap();
    assert!(
        word_completions.contains(&format!("{first_word}-")),
        "completions of {prefix:?} lack {first_word}-: {word_completions:?}"
    );
    assert!(word_completions.iter().all(|w| w.starts_with(prefix)));
    let second = input
        .get_word_completions(&format!("{first_word}-"))
        .unwrap();
    assert!(
        second.contains(words),
        "completions of {first_word}- lack {words}: {second:?}"
    );

    input.choose_words(words).unwrap();
    expect_kind(input.choose_words(words), ErrorKind::AlreadyChoseWords);
    expect_kind(
        input.get_word_completions(prefix),
        ErrorKind::AlreadyChoseWords,
    );
    assert_eq!(
        within(TIMEOUT, "B's code", b.get_code()).await.unwrap(),
        code
    );

    a.send_message(b"hello B").unwrap();
    b.send_message(b"hello A").unwrap();
    assert_eq!(message(&b, "B").await, b"hello B");
    assert_eq!(message(&a, "A").await, b"hello A");
    assert_eq!(verifier(&a, "A").await, verifier(&b, "B").await);
    drop(input);
    close_ok(&a, "A").await;
    close_ok(&b, "B").await;
}

/// (h, API) The server's message of the day arrives in the welcome.
#[tokio::test]
async fn motd_in_welcome() {
    assert_loopback_only();
    let server = MailboxServer::start(&["--motd=hello from test"]).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let w = Wormhole::create(
        &test_appid("motd"),
        &server.url(),
        Options {
            welcome_handler: Some(std::sync::Arc::new(move |w| {
                seen2.lock().unwrap().push(w.clone());
            })),
            ..Default::default()
        },
    )
    .unwrap();
    let welcome = within(TIMEOUT, "the welcome", w.get_welcome())
        .await
        .unwrap();
    assert_eq!(
        welcome.get("motd"),
        Some(&json!("hello from test")),
        "{welcome:?}"
    );
    let handled = poll_until(
        TIMEOUT,
        Duration::from_millis(20),
        "the welcome handler",
        || {
            let h = seen.lock().unwrap().clone();
            async move { (!h.is_empty()).then_some(h) }
        },
    )
    .await;
    assert_eq!(
        handled,
        vec![welcome],
        "the welcome handler runs once, with the welcome"
    );
    w.cancel();
}

/// (i, API) A server started with --signal-error refuses us in its welcome.
#[tokio::test]
async fn signal_error_is_welcome_error() {
    assert_loopback_only();
    let server = MailboxServer::start(&["--signal-error=go away"]).await;
    let w = Wormhole::create(&test_appid("unwelcome"), &server.url(), Options::default()).unwrap();
    // The welcome can close the wormhole before this call, which then reports it.
    let e = match w.allocate_code(2) {
        Err(e) => expect_kind(Err::<(), _>(e), ErrorKind::Welcome),
        Ok(()) => expect_kind(
            within(TIMEOUT, "get_code", w.get_code()).await,
            ErrorKind::Welcome,
        ),
    };
    assert!(e.to_string().contains("go away"), "{e}");
    let e = expect_kind(
        within(TIMEOUT, "close", w.close()).await,
        ErrorKind::Welcome,
    );
    assert!(e.to_string().contains("go away"), "{e}");

    // Same with a code set up front: the pending getters and close() fail alike.
    let w = Wormhole::create(&test_appid("unwelcome"), &server.url(), Options::default()).unwrap();
    w.set_code("3-go-away").unwrap();
    let e = expect_kind(
        within(TIMEOUT, "get_unverified_key", w.get_unverified_key()).await,
        ErrorKind::Welcome,
    );
    assert!(e.to_string().contains("go away"), "{e}");
    expect_kind(
        within(TIMEOUT, "close", w.close()).await,
        ErrorKind::Welcome,
    );
}

/// (j) The server is killed (SIGKILL) after A's PAKE is stored and restarted with the
/// same database; A reconnects, B arrives, and the exchange completes.
#[tokio::test]
async fn server_restart_mid_exchange() {
    assert_loopback_only();
    let dir = TempDir::new("restart");
    let db = dir.path().join("channel.sqlite");
    let mut server = MailboxServer::start_with_db(&db, &[]).await;
    let appid = test_appid("restart");
    let code = "17-restart-resilience";

    let a = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    a.set_code(code).unwrap();
    a.send_message(b"early").unwrap();

    // A's pake is in the mailbox once the server stored it ("early" cannot be: it is
    // encrypted with the key, which needs B's pake).
    poll_until(
        TIMEOUT,
        Duration::from_millis(100),
        "A's pake in the server's db",
        || {
            let db = db.clone();
            async move {
                let n =
                    sqlite_query(&db, "select count(*) from messages where phase='pake'").await?;
                (n == "1").then_some(())
            }
        },
    )
    .await;

    server.stop().await;
    server.restart().await;
    let stored = sqlite_query(&db, "select count(*) from messages where phase='pake'").await;
    assert!(
        stored.as_deref().and_then(|n| n.parse::<u32>().ok()) >= Some(1),
        "the restarted server should still hold A's pake (count: {stored:?})"
    );

    let started = Instant::now();
    let b = Wormhole::create(&appid, &server.url(), Options::default()).unwrap();
    b.set_code(code).unwrap();
    b.send_message(b"late").unwrap();
    assert_eq!(message(&b, "B").await, b"early");
    assert_eq!(message(&a, "A").await, b"late");
    assert_eq!(verifier(&a, "A").await, verifier(&b, "B").await);
    eprintln!("exchange after the restart took {:?}", started.elapsed());
    close_ok(&a, "A").await;
    close_ok(&b, "B").await;
}

/// (k) Nothing listens on the port: the first connection fails quickly with
/// ServerConnection.
#[tokio::test]
async fn server_unreachable() {
    assert_loopback_only();
    let url = format!("ws://127.0.0.1:{}/v1", free_port());
    let started = Instant::now();
    let w = Wormhole::create(&test_appid("unreachable"), &url, Options::default()).unwrap();
    // A refused connection on loopback can fail the wormhole before this call: then the
    // call itself reports it.
    let e = match w.allocate_code(2) {
        Err(e) => expect_kind(Err::<(), _>(e), ErrorKind::ServerConnection),
        Ok(()) => expect_kind(
            within(TIMEOUT, "get_code", w.get_code()).await,
            ErrorKind::ServerConnection,
        ),
    };
    assert!(
        e.to_string().contains(&url),
        "the error should name the URL: {e}"
    );
    expect_kind(
        within(TIMEOUT, "close", w.close()).await,
        ErrorKind::ServerConnection,
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "failing took {took:?}");

    let w = Wormhole::create(&test_appid("unreachable"), &url, Options::default()).unwrap();
    // The same race as above: set_code may already see the failed connection.
    match w.set_code("7-nobody-home") {
        Err(e) => {
            expect_kind(Err::<(), _>(e), ErrorKind::ServerConnection);
        }
        Ok(()) => {
            expect_kind(
                within(TIMEOUT, "get_unverified_key", w.get_unverified_key()).await,
                ErrorKind::ServerConnection,
            );
        }
    }
    expect_kind(
        within(TIMEOUT, "close", w.close()).await,
        ErrorKind::ServerConnection,
    );
}

/// (l, API) Malformed codes are refused at once, and do not use up the one code a
/// wormhole may have.
#[tokio::test]
async fn invalid_codes_are_refused_immediately() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let w = Wormhole::create(&test_appid("invalid"), &server.url(), Options::default()).unwrap();
    for bad in [
        "x-abc", "7 -a", "7-a b", " 7-abc", "-abc", "abc", "", "7x-abc",
    ] {
        expect_kind(w.set_code(bad), ErrorKind::InvalidCode);
    }
    assert_eq!(
        wormhole_core::validate_code("x-abc").map_err(|e| e.kind()),
        Err(ErrorKind::InvalidCode)
    );
    // The wormhole is still usable: a valid code is accepted afterwards.
    w.set_code("7-valid-code").unwrap();
    assert_eq!(
        within(TIMEOUT, "code", w.get_code()).await.unwrap(),
        "7-valid-code"
    );
    expect_kind(within(TIMEOUT, "close", w.close()).await, ErrorKind::Lonely);
}
