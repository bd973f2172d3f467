//! API behaviour that needs no mailbox server: argument checks, connection failures
//! (against 127.0.0.1 only), and the rules that hold before a key exists.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::timeout;
use wormhole_core::{ErrorKind, Options, Wormhole};

const T: Duration = Duration::from_secs(20);

fn quick() -> Options {
    Options {
        connect_timeout: Duration::from_secs(3),
        close_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

/// A port on 127.0.0.1 with nothing listening.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A listener on 127.0.0.1 that accepts TCP but never speaks WebSocket, so the wormhole
/// stays "connecting" until its connect timeout.
async fn silent_server() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://127.0.0.1:{}/v1", l.local_addr().unwrap().port());
    (l, url)
}

#[tokio::test]
async fn bad_arguments_are_rejected_at_create() {
    for url in [
        "",
        "http://x/v1",
        "ws://",
        "ws:///v1",
        "wss://",
        "ws://bad host/v1",
    ] {
        let e = Wormhole::create("app", url, Options::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{url:?}");
    }
    let e = Wormhole::create("", "ws://127.0.0.1:1/v1", Options::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let opts = Options {
        app_versions: serde_json::json!([1]),
        ..Options::default()
    };
    let e = Wormhole::create("app", "ws://127.0.0.1:1/v1", opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn unreachable_server_is_a_connection_error() {
    let url = format!("ws://127.0.0.1:{}/v1", dead_port().await);
    let w = Wormhole::create("app", &url, quick()).unwrap();
    w.set_code("1-a-b").unwrap();
    let e = timeout(T, w.get_welcome()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerConnection);
    let e = timeout(T, w.close()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerConnection);
    assert!(!e.to_string().contains("1-a-b"));
}

#[tokio::test]
async fn wss_to_a_plain_tcp_port_fails_cleanly() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    // Accept and answer garbage, so the TLS handshake fails rather than hangs.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"HTTP/1.0 400 nope\r\n\r\n").await;
        }
    });
    let w = Wormhole::create("app", &format!("wss://127.0.0.1:{port}/v1"), quick()).unwrap();
    let e = timeout(T, w.get_welcome()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerConnection);
}

#[tokio::test]
async fn rules_before_the_key_exists() {
    let (_listener, url) = silent_server().await;
    let w = Wormhole::create("app", &url, Options::default()).unwrap();
    assert_eq!(w.derive_key("p", 32).unwrap_err().kind(), ErrorKind::NoKey);
    assert_eq!(
        w.set_code("x-abc").unwrap_err().kind(),
        ErrorKind::InvalidCode
    );
    assert_eq!(
        w.set_code("7 -a").unwrap_err().kind(),
        ErrorKind::InvalidCode
    );
    assert_eq!(
        w.allocate_code(1000).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    w.set_code("7-a").unwrap();
    assert_eq!(
        w.set_code("7-a").unwrap_err().kind(),
        ErrorKind::OnlyOneCode
    );
    assert_eq!(
        w.allocate_code(2).unwrap_err().kind(),
        ErrorKind::OnlyOneCode
    );
    assert_eq!(w.input_code().unwrap_err().kind(), ErrorKind::OnlyOneCode);
    w.cancel();
    let e = timeout(T, w.close()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    // After close, sending fails with the close outcome.
    assert!(w.send_message(b"x".to_vec()).is_err());
}

#[tokio::test]
async fn input_helper_rules_without_a_server() {
    let (_listener, url) = silent_server().await;
    let w = Wormhole::create("app", &url, Options::default()).unwrap();
    let h = w.input_code().unwrap();
    assert_eq!(
        h.get_word_completions("pu").unwrap_err().kind(),
        ErrorKind::MustChooseNameplateFirst
    );
    assert_eq!(
        h.choose_words("a-b").unwrap_err().kind(),
        ErrorKind::MustChooseNameplateFirst
    );
    assert!(h.get_nameplate_completions("").unwrap().is_empty());
    assert_eq!(
        h.choose_nameplate("x1").unwrap_err().kind(),
        ErrorKind::InvalidCode
    );
    h.choose_nameplate("12").unwrap();
    assert_eq!(
        h.choose_nameplate("12").unwrap_err().kind(),
        ErrorKind::AlreadyChoseNameplate
    );
    assert_eq!(
        h.refresh_nameplates().unwrap_err().kind(),
        ErrorKind::AlreadyChoseNameplate
    );
    assert_eq!(
        h.get_nameplate_completions("1").unwrap_err().kind(),
        ErrorKind::AlreadyChoseNameplate
    );
    // Not claimed yet (no server): no word completions, but no error either.
    assert!(h.get_word_completions("pu").unwrap().is_empty());
    h.choose_words("purple-sausages").unwrap();
    assert_eq!(
        h.choose_words("a-b").unwrap_err().kind(),
        ErrorKind::AlreadyChoseWords
    );
    assert_eq!(
        h.get_word_completions("pu").unwrap_err().kind(),
        ErrorKind::AlreadyChoseWords
    );
    assert_eq!(w.get_code().await.unwrap(), "12-purple-sausages");
    w.cancel();
    let e = timeout(T, w.close()).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
}

#[tokio::test]
async fn delegated_mode_has_no_getters_and_streams_closed() {
    let url = format!("ws://127.0.0.1:{}/v1", dead_port().await);
    let (w, mut events) = Wormhole::create_delegated("app", &url, quick()).unwrap();
    assert_eq!(
        w.get_code().await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // A refused connection on loopback can close the wormhole before this call, which
    // then reports it; otherwise the code is the first event.
    let set = w.set_code("3-a-b");
    let mut seen = Vec::new();
    while let Some(ev) = timeout(T, events.recv()).await.unwrap() {
        seen.push(ev);
    }
    match set {
        Ok(()) => {
            assert!(matches!(seen.first(), Some(wormhole_core::Event::Code(c)) if c == "3-a-b"))
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::ServerConnection),
    }
    match seen.last() {
        Some(wormhole_core::Event::Closed(Err(e))) => {
            assert_eq!(e.kind(), ErrorKind::ServerConnection)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dropping_the_last_handle_from_a_plain_thread_is_safe() {
    // No runtime on this thread: create and drop must neither panic nor hang.
    let w = Wormhole::create("app", "ws://127.0.0.1:9/v1", quick()).unwrap();
    w.set_code("5-a-b").unwrap();
    let w2 = w.clone();
    drop(w);
    std::thread::spawn(move || drop(w2)).join().unwrap();
}
