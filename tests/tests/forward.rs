//! `wormhole forward` against fowl 26.8.0 (`fowld`) both ways, and between two of ours:
//! many concurrent connections through a loopback echo server, a 64 MiB stream checked
//! with SHA-256, refusals by policy on either side, and the graceful `closing` end.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates (fowl
//! always dials the public transit relay; there that fails at once).

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;
use tokio::process::Command;
use wormhole_tests::forward::{
    EchoServer, Fowld, echo_at_once, echo_on, echo_through, ended_by_the_peer, interrupt,
    listener_port,
};
use wormhole_tests::{
    OurServer, RunningCli, TIMEOUT, assert_loopback_only, free_port, our_cli, within,
};

/// Concurrent forwarded connections per test.
const CONNECTIONS: usize = 32;
/// Bytes each of them echoes.
const EACH: usize = 48 << 10;
/// The large stream.
const LARGE: usize = 64 << 20;
/// Bound for the large stream's round trip (a slow, shared 2-core machine).
const LARGE_LIMIT: Duration = Duration::from_secs(300);

/// `wormhole --relay-url URL --transit-helper RELAY forward ARGS…`.
fn forward(server: &OurServer, args: &[&str]) -> Command {
    let hint = server.relay_hint();
    let mut all: Vec<&str> = vec!["--transit-helper", &hint, "forward"];
    all.extend_from_slice(args);
    our_cli(&server.url(), &all)
}

/// [`CONNECTIONS`] echo round trips at once through 127.0.0.1:`port`.
async fn many_at_once(port: u16) {
    echo_at_once(port, (0..CONNECTIONS).map(|i| EACH + i * 997)).await
}

/// Our CLI asks fowl to listen (`--remote`; fowl `--local` on a fixed port): many
/// connections through fowl's listener reach our echo server; Ctrl-C on our side ends
/// fowl's session too.
#[tokio::test]
async fn we_ask_fowl_to_listen() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let echo = EchoServer::start().await;
    let mut fowld = Fowld::start(&server.url());
    let code = fowld.allocate_code().await;
    let listen = free_port();
    fowld
        .command(json!({"kind": "local", "name": "echo", "local_listen_port": listen}))
        .await;
    let remote = format!("echo:{}", echo.port());
    let mut ours = RunningCli::spawn("ours", forward(&server, &["--remote", &remote, &code]));
    let listening = fowld.wait_for("listening", |_| true).await;
    assert_eq!(listening["name"], "echo");
    assert_eq!(listening["listening_port"], listen);
    // At once: fowl forwards connections as soon as it has answered, and ours waits for
    // its own reading of that answer before it takes them. fowl drops a connection whose
    // bytes arrive before its subchannel is open (its `LocalServerFarSide.dataReceived`
    // has no subchannel yet), so each client writes only once fowl reports it.
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        let s = within(
            TIMEOUT,
            "a connection",
            TcpStream::connect(("127.0.0.1", listen)),
        )
        .await
        .expect("connect to fowl's listener");
        streams.push(s);
    }
    for _ in 0..CONNECTIONS {
        fowld.wait_for("outgoing-connection", |_| true).await;
    }
    let mut all = tokio::task::JoinSet::new();
    for (i, s) in streams.into_iter().enumerate() {
        all.spawn(echo_on(s, i as u64 + 1, EACH + i * 997, TIMEOUT));
    }
    while let Some(r) = all.join_next().await {
        r.expect("an echo round trip");
    }
    ours.wait_for_stderr("the service announced", |l| {
        l.contains("Service \"echo\": the peer listens for it")
            && l.contains(&format!("127.0.0.1:{}", echo.port()))
    })
    .await;
    assert_eq!(echo.accepted(), CONNECTIONS);
    interrupt(ours).await;
    fowld.wait_for("closed", |v| v["result"] == "happy").await;
    let (ok, stderr) = fowld.wait_exit(TIMEOUT).await;
    assert!(ok, "fowld failed:\n{stderr}");
}

/// fowl asks us to listen (fowl `--remote`, ours `--local` on a free port): many
/// connections and a 64 MiB stream through our listener reach the echo server behind
/// fowl; fowl's `session-close` ends our CLI with status 0.
#[tokio::test]
async fn fowl_asks_us_to_listen() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let echo = EchoServer::start().await;
    let mut ours = RunningCli::spawn("ours", forward(&server, &["--local", "echo"]));
    let code = ours.wait_for_code().await;
    let mut fowld = Fowld::start(&server.url());
    fowld
        .command(json!({"kind": "set-code", "code": code}))
        .await;
    fowld
        .command(json!({"kind": "remote", "name": "echo", "local_connect_port": echo.port()}))
        .await;
    let port = listener_port(&mut ours, "echo").await;
    let awaiting = fowld.wait_for("awaiting-connect", |_| true).await;
    assert_eq!(awaiting["local_port"], echo.port());
    many_at_once(port).await;
    let t = std::time::Instant::now();
    echo_through(port, 0xb16, LARGE, LARGE_LIMIT).await;
    eprintln!("64 MiB echoed through fowl in {:?}", t.elapsed());
    assert_eq!(echo.accepted(), CONNECTIONS + 1);
    fowld.command(json!({"kind": "session-close"})).await;
    ended_by_the_peer(ours).await;
    let (ok, stderr) = fowld.wait_exit(TIMEOUT).await;
    assert!(ok, "fowld failed:\n{stderr}");
}

/// fowl refuses to listen on a port it did not choose, and we refuse a service we did not
/// allow: each refusal goes back with its reason, is printed by the asking side, and
/// neither side stops.
#[tokio::test]
async fn refusals_by_policy_with_fowl() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let echo = EchoServer::start().await;
    let mut fowld = Fowld::start(&server.url());
    let code = fowld.allocate_code().await;
    let fowl_port = free_port();
    let wanted = free_port();
    fowld
        .command(json!({"kind": "local", "name": "echo", "local_listen_port": fowl_port}))
        .await;
    let remote = format!("echo:{}:listen={wanted}", echo.port());
    let mut ours = RunningCli::spawn(
        "ours",
        forward(&server, &["--remote", &remote, "--local", "web", &code]),
    );
    let line = ours
        .wait_for_stderr("fowl's refusal", |l| l.contains("refused to listen"))
        .await;
    assert_eq!(
        line,
        format!(
            "Service \"echo\": the peer refused to listen: Desired port {wanted} does not \
             match {fowl_port}"
        )
    );
    // fowl asks for a service we did not allow.
    fowld
        .command(json!({"kind": "remote", "name": "secret", "local_connect_port": echo.port()}))
        .await;
    let err = fowld
        .wait_for("error", |v| {
            v["message"].as_str().is_some_and(|m| m.contains("secret"))
        })
        .await;
    assert_eq!(
        err["message"],
        "Service \"secret\" failed: No service permitted for name: secret"
    );
    ours.wait_for_stderr("our refusal", |l| {
        l == "Service \"secret\": refused the peer's request to listen: No service permitted \
              for name: secret"
    })
    .await;
    // Nothing listens where fowl was refused, and both still run: an allowed service works.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", wanted))
            .await
            .is_err()
    );
    fowld
        .command(json!({"kind": "remote", "name": "web", "local_connect_port": echo.port()}))
        .await;
    let web_port = listener_port(&mut ours, "web").await;
    // fowl takes connections for a service once it has read our answer (a connection
    // made before is refused: fowl's protocol has no acknowledgement of the answer).
    fowld
        .wait_for("awaiting-connect", |v| v["name"] == "web")
        .await;
    echo_through(web_port, 7, 100_000, TIMEOUT).await;
    interrupt(ours).await;
    let (ok, stderr) = fowld.wait_exit(TIMEOUT).await;
    assert!(ok, "fowld failed:\n{stderr}");
}

/// Two of ours: many connections and a 64 MiB stream; a service whose server is down is
/// refused per connection with the reason; Ctrl-C on one ends the other.
#[tokio::test]
async fn ours_to_ours() {
    assert_loopback_only();
    let server = OurServer::start().await;
    let echo = EchoServer::start().await;
    let dead = free_port();
    let remote = format!("echo:{}", echo.port());
    let down = format!("down:{dead}");
    let mut a = RunningCli::spawn(
        "A",
        forward(&server, &["--remote", &remote, "--remote", &down]),
    );
    let code = a.wait_for_code().await;
    let mut b = RunningCli::spawn(
        "B",
        forward(&server, &["-L", "echo", "--client", "down", &code]),
    );
    let port = listener_port(&mut b, "echo").await;
    let down_port = listener_port(&mut b, "down").await;
    many_at_once(port).await;
    let t = std::time::Instant::now();
    echo_through(port, 0x5eed, LARGE, LARGE_LIMIT).await;
    eprintln!("64 MiB echoed between two of ours in {:?}", t.elapsed());
    // A connection to the service that is down: A refuses it, B prints why and closes.
    within(TIMEOUT, "the refused connection to end", async {
        use tokio::io::AsyncReadExt;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", down_port))
            .await
            .expect("connect to B's listener");
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0);
    })
    .await;
    b.wait_for_stderr("B's report of the refusal", |l| {
        l.starts_with("Service \"down\": the peer refused a connection: Connection to 127.0.0.1:")
            && l.contains(&dead.to_string())
    })
    .await;
    interrupt(a).await;
    ended_by_the_peer(b).await;
}

/// A peer (our core, driven by hand) that sends malformed messages: each one is reported
/// and ends only its subchannel (a refusal where an answer is due); the CLI goes on and
/// serves a well-formed request afterwards.
#[tokio::test]
async fn malformed_messages_from_the_peer() {
    use wormhole_core::dilation::handle::DilationOptions;
    use wormhole_core::{Options, Wormhole};
    assert_loopback_only();
    let server = OurServer::start().await;
    let mut ours = RunningCli::spawn("ours", forward(&server, &["--local", "echo"]));
    let code = ours.wait_for_code().await;
    let options = Options {
        dilation: true,
        ..Options::default()
    };
    let w = Wormhole::create("meejah.ca/wormhole/forward", &server.url(), options).unwrap();
    w.set_code(&code).unwrap();
    let d = w.dilate(DilationOptions::default()).unwrap();
    // A frame whose body is not msgpack: reported, the subchannel closed.
    let mut cmd = within(TIMEOUT, "a subchannel", d.connect("fowl-commands"))
        .await
        .unwrap();
    cmd.send(b"\x00\x02\xc1\xc1".to_vec()).await.unwrap();
    assert_eq!(
        within(TIMEOUT, "its close", cmd.recv()).await.unwrap(),
        None
    );
    ours.wait_for_stderr("the report", |l| {
        l.starts_with("A request from the peer: malformed message from the peer")
    })
    .await;
    // An opening message with bytes after it: refused, closed.
    let mut conn = within(TIMEOUT, "a subchannel", d.connect("fowl"))
        .await
        .unwrap();
    conn.send(b"\x00\x01\x80extra".to_vec()).await.unwrap();
    let answer = within(TIMEOUT, "the refusal", conn.recv())
        .await
        .unwrap()
        .expect("an answer");
    // {"connected": false, "reason": …}
    assert_eq!(&answer[2..14], b"\x82\xa9connected\xc2");
    assert_eq!(
        within(TIMEOUT, "its close", conn.recv()).await.unwrap(),
        None
    );
    // A length beyond the record, then the close: reported.
    let mut conn = within(TIMEOUT, "a subchannel", d.connect("fowl"))
        .await
        .unwrap();
    conn.send(b"\xff\xff\x81".to_vec()).await.unwrap();
    conn.close().unwrap();
    ours.wait_for_stderr("the report", |l| {
        l.contains("closed the subchannel in the middle of a message")
    })
    .await;
    // Still serving: a well-formed request is answered `listening: true`.
    let mut cmd = within(TIMEOUT, "a subchannel", d.connect("fowl-commands"))
        .await
        .unwrap();
    let mut req = b"\x83\xa4kind\xb0request-listener\xab".to_vec();
    req.extend_from_slice(b"unique-name\xa4echo\xablisten-port\xc0");
    let mut framed = (req.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&req);
    cmd.send(framed).await.unwrap();
    let answer = within(TIMEOUT, "the answer", cmd.recv())
        .await
        .unwrap()
        .expect("an answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.contains("listener-response"), "{answer:?}");
    assert!(
        answer.windows(10).any(|w| w == b"listening\xc3"),
        "{answer:?}"
    );
    listener_port(&mut ours, "echo").await;
    w.send_message(br#"{"closing": 0}"#.to_vec()).unwrap();
    ended_by_the_peer(ours).await;
    let _ = within(TIMEOUT, "our close", w.close()).await;
}

/// Tor for `forward` dials out only (the sides meet at the relay): `--tor-onion` is
/// refused with one clear line, before any tor is looked for or a server contacted.
#[tokio::test]
async fn tor_onion_is_refused() {
    let out = wormhole_tests::run_cli(
        "our forward --tor-onion",
        our_cli(
            "ws://127.0.0.1:9/v1",
            &["forward", "--tor-onion", "-L", "echo"],
        ),
    )
    .await;
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("ERROR: --tor-onion is for transfers: forward through Tor uses the relay"),
        "{out}"
    );
}
