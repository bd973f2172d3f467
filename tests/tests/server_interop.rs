//! End-to-end tests of our `wormhole-server` (mailbox + relay) with real clients: the
//! reference CLI (magic-wormhole 0.24.0), our CLI and our core library.
//!
//! Each test starts its own server process after checking it runs in a loopback-only
//! network namespace. Run them with `scripts/test.sh`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wormhole_core::{Options, Wormhole};
use wormhole_tests::{
    CliOutput, OurServer, RunningCli, TIMEOUT, TempDir, assert_loopback_only, our_cli, ref_cli,
    reference_text_stdout, run_cli, test_appid, within, wormhole_rs_bin,
};

/// Reference CLI arguments: our server as mailbox and our relay as the only transit path
/// (`--no-listen` on both sides, so no direct connection is possible).
fn ref_args<'a>(server: &'a OurServer, rest: &[&'a str]) -> Vec<String> {
    let mut args = vec!["--transit-helper".to_owned(), server.relay_hint()];
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

fn ref_send(server: &OurServer, code: &str, what: &[&str]) -> tokio::process::Command {
    let mut rest = vec![
        "send",
        "--hide-progress",
        "--no-qr",
        "--no-listen",
        "--code",
        code,
    ];
    rest.extend(what);
    ref_cli(&server.url(), &ref_args(server, &rest))
}

fn ref_receive(server: &OurServer, code: &str, output: &Path) -> tokio::process::Command {
    let out = output.to_string_lossy().into_owned();
    ref_cli(
        &server.url(),
        &ref_args(
            server,
            &[
                "receive",
                "--hide-progress",
                "--no-listen",
                "--accept-file",
                "-o",
                &out,
                code,
            ],
        ),
    )
}

/// Run a reference sender and receiver to completion; both must succeed.
async fn ref_pair(
    send: tokio::process::Command,
    receive: tokio::process::Command,
) -> (CliOutput, CliOutput) {
    let sender = RunningCli::spawn("reference send", send);
    let r = run_cli("reference receive", receive).await;
    let s = sender.finish().await;
    s.assert_success();
    r.assert_success();
    (s, r)
}

/// Deterministic test data of `len` bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn reference_text_through_our_server() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let text = "hello through wormhole-server ✓";
    let scratch = TempDir::new("ref-text");
    let (_, r) = ref_pair(
        ref_send(&server, "3-adroitness-vagabond", &["--text", text]),
        ref_receive(
            &server,
            "3-adroitness-vagabond",
            &scratch.path().join("unused"),
        ),
    )
    .await;
    assert_eq!(r.stdout, reference_text_stdout(text).await, "{r}");
}

#[tokio::test]
async fn reference_file_through_our_server_and_relay() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let scratch = TempDir::new("ref-file");
    let src = scratch.path().join("payload.bin");
    let body = data(3 * 1024 * 1024 + 17, 7);
    std::fs::write(&src, &body).expect("write payload");
    let dest = scratch.path().join("received.bin");
    let (s, r) = ref_pair(
        ref_send(&server, "4-adroitness-vagabond", &[&src.to_string_lossy()]),
        ref_receive(&server, "4-adroitness-vagabond", &dest),
    )
    .await;
    let got = std::fs::read(&dest).unwrap_or_else(|e| panic!("no file received ({e}):\n{s}\n{r}"));
    assert!(got == body, "the received file differs\n{s}\n{r}");
    // --no-listen on both sides: the data can only have crossed our relay.
    assert!(
        format!("{}{}", s.stderr, r.stderr).contains("relay"),
        "expected a relay connection:\n{s}\n{r}"
    );
}

#[tokio::test]
async fn reference_directory_through_our_server_and_relay() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let scratch = TempDir::new("ref-dir");
    let dir = scratch.path().join("tree");
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    let files = [
        ("a.txt", data(1000, 1)),
        ("sub/b.bin", data(200_000, 2)),
        ("sub/deeper/c.bin", data(5, 3)),
        ("empty", Vec::new()),
    ];
    for (name, body) in &files {
        std::fs::write(dir.join(name), body).expect("write");
    }
    let dest = scratch.path().join("out");
    let (s, r) = ref_pair(
        ref_send(&server, "5-adroitness-vagabond", &[&dir.to_string_lossy()]),
        ref_receive(&server, "5-adroitness-vagabond", &dest),
    )
    .await;
    for (name, body) in &files {
        let got = std::fs::read(dest.join(name))
            .unwrap_or_else(|e| panic!("{name} missing ({e}):\n{s}\n{r}"));
        assert!(&got == body, "{name} differs");
    }
}

/// wormhole-rs 0.8.1 sends a file to wormhole-rs through our server and our relay
/// (`--force-relay` on both sides).
#[tokio::test]
async fn wormhole_rs_file_through_our_server_and_relay() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let scratch = TempDir::new("wrs-file");
    let src = scratch.path().join("payload.bin");
    let body = data(2 * 1024 * 1024 + 3, 9);
    std::fs::write(&src, &body).expect("write payload");
    let out = scratch.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let relay = format!("tcp://{}", server.relay_hint().trim_start_matches("tcp:"));
    let code = "6-adroitness-vagabond";
    let wrs = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(wormhole_rs_bin());
        cmd.args(args)
            .args(["--rendezvous-server", &server.url()])
            .args(["--relay-server", &relay, "--force-relay"])
            .env_remove("WORMHOLE_RELAY_URL")
            .env_remove("WORMHOLE_MAILBOX_URL");
        cmd
    };
    let sender = RunningCli::spawn(
        "wormhole-rs send",
        wrs(&["send", "--no-qr", "--code", code, &src.to_string_lossy()]),
    );
    let r = run_cli(
        "wormhole-rs receive",
        wrs(&[
            "receive",
            "--noconfirm",
            "--out-dir",
            &out.to_string_lossy(),
            code,
        ]),
    )
    .await;
    let s = sender.finish().await;
    s.assert_success();
    r.assert_success();
    let got = std::fs::read(out.join("payload.bin"))
        .unwrap_or_else(|e| panic!("no file received ({e}):\n{s}\n{r}"));
    assert!(got == body, "the received file differs\n{s}\n{r}");
}

#[tokio::test]
async fn our_cli_through_our_server() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let text = "ours through ours";
    let mut sender = RunningCli::spawn(
        "our send",
        our_cli(&server.url(), &["send", "--text", text]),
    );
    let code = sender.wait_for_code().await;
    let r = run_cli("our receive", our_cli(&server.url(), &["receive", &code])).await;
    let s = sender.finish().await;
    s.assert_success();
    r.assert_success();
    assert_eq!(r.stdout, format!("{text}\n"), "{r}");
}

/// A raw mailbox client: JSON frames over a WebSocket.
struct Raw {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Raw {
    async fn connect(url: &str) -> Raw {
        let (ws, _) = within(TIMEOUT, "connect", tokio_tungstenite::connect_async(url))
            .await
            .expect("connect");
        let mut raw = Raw { ws };
        let welcome = raw.next_of("welcome").await;
        assert!(welcome["welcome"].is_object(), "{welcome}");
        raw
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// The next frame of type `ty` (others, e.g. acks, are skipped).
    async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let Some(msg) = within(TIMEOUT, ty, self.ws.next()).await else {
                panic!("connection ended before {ty}");
            };
            let msg = msg.expect("frame");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("json");
                assert_ne!(v["type"], "error", "server error: {v}");
                if v["type"] == ty {
                    return v;
                }
            }
        }
    }
}

/// A message stored before a `kill -9` is replayed by the restarted server, and a core
/// exchange that spans the restart completes.
#[tokio::test]
async fn restart_after_kill9_loses_nothing() {
    assert_loopback_only();
    let scratch = TempDir::new("restart");
    let mut server = OurServer::start_with_db(&scratch.path().join("mailbox.sqlite")).await;
    let appid = test_appid("restart");

    // Phase 1: side X claims nameplate 5, opens its mailbox and adds a message; the echo
    // means the server stored it.
    let mut x = Raw::connect(&server.url()).await;
    x.send(json!({"type": "bind", "appid": appid, "side": "aaaa"}))
        .await;
    x.send(json!({"type": "claim", "nameplate": "5"})).await;
    let mailbox = x.next_of("claimed").await["mailbox"]
        .as_str()
        .expect("mailbox id")
        .to_owned();
    x.send(json!({"type": "open", "mailbox": mailbox})).await;
    x.send(json!({"type": "add", "phase": "pake", "body": "c0ffee"}))
        .await;
    let echo = x.next_of("message").await;
    assert_eq!(echo["body"], "c0ffee");

    // Meanwhile a core wormhole waits for its peer.
    let a = Wormhole::create(&appid, &server.url(), Options::default()).expect("create");
    a.allocate_code(2).expect("allocate");
    let code = within(TIMEOUT, "code", a.get_code()).await.expect("code");
    a.send_message(b"sent before the crash".to_vec())
        .expect("send");

    server.kill9().await;
    drop(x);
    server.restart().await;

    // Phase 2: side Y claims the same nameplate and gets the same mailbox, with X's message.
    let mut y = Raw::connect(&server.url()).await;
    y.send(json!({"type": "bind", "appid": appid, "side": "bbbb"}))
        .await;
    y.send(json!({"type": "claim", "nameplate": "5"})).await;
    let claimed = y.next_of("claimed").await;
    assert_eq!(claimed["mailbox"], mailbox.as_str(), "{claimed}");
    y.send(json!({"type": "open", "mailbox": mailbox})).await;
    let replay = y.next_of("message").await;
    assert_eq!(
        (&replay["side"], &replay["phase"], &replay["body"]),
        (&json!("aaaa"), &json!("pake"), &json!("c0ffee")),
        "{replay}"
    );

    // The core peer reconnects by itself; its partner arrives after the restart.
    let b = Wormhole::create(&appid, &server.url(), Options::default()).expect("create");
    b.set_code(&code).expect("set_code");
    let got = within(TIMEOUT, "B's message", b.get_message())
        .await
        .expect("message");
    assert_eq!(got, b"sent before the crash");
    b.send_message(b"after".to_vec()).expect("send");
    let got = within(TIMEOUT, "A's message", a.get_message())
        .await
        .expect("message");
    assert_eq!(got, b"after");
    within(TIMEOUT, "close A", a.close())
        .await
        .expect("A closes happy");
    within(TIMEOUT, "close B", b.close())
        .await
        .expect("B closes happy");
}

/// SIGTERM stops the server cleanly (exit 0).
#[tokio::test]
async fn sigterm_exits_cleanly() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}: {stderr}");
}

/// 1000 pairs at once through one server: all 2000 connections are open together (a
/// barrier holds every pair until the last one has connected), then every exchange
/// completes. Connecting is throttled to 100 pairs at a time so that a loaded 2-core
/// machine does not time out WebSocket handshakes; the simultaneity comes from the barrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_simultaneous_pairs() {
    assert_loopback_only();
    const PAIRS: usize = 1000;
    let server = OurServer::start().await;
    let url = server.url();
    let appid = test_appid("thousand");
    let start = std::time::Instant::now();
    let connecting = Arc::new(tokio::sync::Semaphore::new(100));
    let all_connected = Arc::new(tokio::sync::Barrier::new(PAIRS));
    let mut tasks: tokio::task::JoinSet<wormhole_core::Result<()>> = tokio::task::JoinSet::new();
    for i in 0..PAIRS {
        let (url, appid) = (url.clone(), appid.clone());
        let (connecting, all_connected) = (connecting.clone(), all_connected.clone());
        tasks.spawn(async move {
            let opts = || Options {
                connect_timeout: Duration::from_secs(120),
                ..Options::default()
            };
            let permit = connecting.acquire_owned().await.expect("semaphore");
            let a = Wormhole::create(&appid, &url, opts())?;
            a.allocate_code(2)?;
            let code = a.get_code().await?;
            let b = Wormhole::create(&appid, &url, opts())?;
            b.set_code(&code)?;
            b.get_welcome().await?;
            drop(permit);
            all_connected.wait().await;
            a.send_message(format!("a{i}").into_bytes())?;
            b.send_message(format!("b{i}").into_bytes())?;
            let (ma, mb) = tokio::try_join!(a.get_message(), b.get_message())?;
            assert_eq!(
                (ma, mb),
                (format!("b{i}").into_bytes(), format!("a{i}").into_bytes())
            );
            tokio::try_join!(a.close(), b.close())?;
            Ok(())
        });
    }
    let mut done = 0;
    let limit = Duration::from_secs(300);
    while let Some(r) = within(limit, "1000 pairs", tasks.join_next()).await {
        r.expect("task").expect("exchange");
        done += 1;
    }
    assert_eq!(done, PAIRS);
    eprintln!("{PAIRS} pairs in {:?}", start.elapsed());
}
