//! `--socks5`: every connection of our CLI (the mailbox WebSocket and Transit) goes through
//! a real SOCKS5 proxy, microsocks from Debian's package, which also resolves the names.
//!
//! The mailbox and the relay are given by names that only the proxy can resolve: microsocks
//! runs in a mount namespace of its own whose `/etc/hosts` maps them to 127.0.0.1, and our
//! CLI's cannot. A transfer that completes therefore proves that both connections went
//! through the proxy, with no DNS lookup of ours. microsocks logs each destination, which
//! shows the peer's direct hints being dialled through it too.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};
use wormhole_tests::{
    CliOutput, OurServer, RunningCli, TempDir, assert_loopback_only, free_port, inet_connects,
    our_cli, ref_cli, run_cli, under_strace, wait_for_port, with_etc_hosts,
};

const MAILBOX_NAME: &str = "mailbox.proxied.test";
const RELAY_NAME: &str = "relay.proxied.test";

/// A microsocks process on 127.0.0.1, with its own `/etc/hosts`. Killed on drop.
struct Socks {
    port: u16,
    _child: Child,
    _hosts: TempDir,
}

impl Socks {
    async fn start(auth: Option<(&str, &str)>) -> Socks {
        let microsocks = ["/usr/bin/microsocks", "/usr/local/bin/microsocks"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("microsocks is not installed: run scripts/setup-peers.sh");
        let hosts = TempDir::new("socks-hosts");
        let file = hosts.path().join("hosts");
        std::fs::write(
            &file,
            format!("127.0.0.1 localhost\n127.0.0.1 {MAILBOX_NAME} {RELAY_NAME}\n"),
        )
        .unwrap();
        let port = free_port();
        let mut c = with_etc_hosts(&file);
        // Its log (on stderr) line-buffered, so it is complete while it runs.
        c.args(["stdbuf", "-eL"]).arg(microsocks).args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        if let Some((user, pass)) = auth {
            c.args(["-u", user, "-P", pass]);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(hosts.path().join("log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start microsocks");
        assert!(
            wait_for_port(port, &mut child).await,
            "microsocks did not start on port {port}"
        );
        Socks {
            port,
            _child: child,
            _hosts: hosts,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log so far: one `client[N] IP: connected to HOST:PORT` per connection it made.
    async fn log(self) -> String {
        std::fs::read_to_string(self._hosts.path().join("log")).unwrap_or_default()
    }
}

/// Our server, with the mailbox and relay named as only the proxy can resolve them.
struct Net {
    _server: OurServer,
    /// `ws://mailbox.proxied.test:PORT/v1`.
    named_url: String,
    /// `tcp:relay.proxied.test:PORT`.
    named_relay: String,
    /// The same by address, for peers without the proxy.
    url: String,
    relay: String,
}

async fn net() -> Net {
    assert_loopback_only();
    let server = OurServer::start().await;
    let port = |s: &str| {
        s.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/v1")
            .to_owned()
    };
    Net {
        named_url: format!("ws://{MAILBOX_NAME}:{}/v1", port(&server.url())),
        named_relay: format!("tcp:{RELAY_NAME}:{}", port(&server.relay_hint())),
        url: server.url(),
        relay: server.relay_hint(),
        _server: server,
    }
}

/// Our CLI through `proxy` to the named server.
fn ours_via(net: &Net, proxy: &str, args: &[&str]) -> Command {
    let mut a = vec![
        "--socks5",
        proxy,
        "--transit-helper",
        net.named_relay.as_str(),
    ];
    a.extend_from_slice(args);
    our_cli(&net.named_url, &a)
}

fn file(dir: &Path, n: usize) -> (PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let p = dir.join("proxied.bin");
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

fn assert_relayed(o: &CliOutput, relay: &str) {
    assert!(
        o.stderr.contains(&format!("->relay:{relay}")),
        "not through the relay {relay}:\n{o}"
    );
}

/// Both sides ours through the proxy: a text and a file, by the relay (neither side
/// listens), with every name resolved by the proxy.
#[tokio::test]
async fn both_sides_through_the_proxy() {
    let net = net().await;
    let socks = Socks::start(None).await;
    let proxy = socks.addr();
    let code = "6-proxied-words";
    let mut s = RunningCli::spawn(
        "our send --socks5 (text)",
        ours_via(
            &net,
            &proxy,
            &["send", "--no-qr", "--code", code, "--text", "via socks"],
        ),
    );
    s.wait_for_code().await;
    let r = run_cli(
        "our receive --socks5",
        ours_via(&net, &proxy, &["receive", code]),
    )
    .await;
    s.finish().await.assert_success();
    r.assert_success();
    assert_eq!(r.stdout.trim_end(), "via socks");

    let src = TempDir::new("socks-src");
    let dst = TempDir::new("socks-dst");
    let (path, data) = file(src.path(), 2 << 20);
    let code = "7-proxied-words";
    let p = path.to_string_lossy().into_owned();
    let mut s = RunningCli::spawn(
        "our send --socks5 (file)",
        ours_via(
            &net,
            &proxy,
            &["send", "--no-qr", "--hide-progress", "--code", code, &p],
        ),
    );
    s.wait_for_code().await;
    let mut recv = ours_via(
        &net,
        &proxy,
        &["receive", "--accept-file", "--hide-progress", code],
    );
    recv.current_dir(dst.path());
    let r = run_cli("our receive --socks5 (file)", recv).await;
    let s = s.finish().await;
    s.assert_success();
    r.assert_success();
    assert_relayed(&s, &net.named_relay);
    assert_relayed(&r, &net.named_relay);
    assert_eq!(std::fs::read(dst.path().join("proxied.bin")).unwrap(), data);
    let log = socks.log().await;
    assert!(
        log.contains(&format!("connected to {MAILBOX_NAME}:")),
        "{log}"
    );
    assert!(
        log.contains(&format!("connected to {RELAY_NAME}:")),
        "{log}"
    );
}

/// Our side through the proxy, the reference CLI 0.24.0 without it, both directions: the
/// reference's direct hints are dialled through the proxy (its log shows them), and a
/// transfer completes one way or the other. The leak test: our side runs under
/// `strace -e trace=connect`, and its only IPv4/IPv6 connections go to the proxy (no
/// direct dial, no DNS lookup).
#[tokio::test]
async fn mixed_with_the_reference() {
    let net = net().await;
    for ours_sends in [true, false] {
        let socks = Socks::start(None).await;
        let proxy = socks.addr();
        let src = TempDir::new("socks-mixed-src");
        let dst = TempDir::new("socks-mixed-dst");
        let (path, data) = file(src.path(), 1 << 20);
        let p = path.to_string_lossy().into_owned();
        let code = if ours_sends {
            "8-proxied-words"
        } else {
            "9-proxied-words"
        };
        let send_args = ["send", "--no-qr", "--hide-progress", "--code", code, &p];
        let recv_args = ["receive", "--accept-file", "--hide-progress", code];
        let reference = |args: &[&str]| {
            let mut a = vec!["--transit-helper", net.relay.as_str()];
            a.extend_from_slice(args);
            ref_cli(&net.url, &a)
        };
        let trace = src.path().join("strace.log");
        let mut s = if ours_sends {
            let cmd = under_strace(&ours_via(&net, &proxy, &send_args), &trace);
            RunningCli::spawn("our send --socks5", cmd)
        } else {
            RunningCli::spawn("reference send", reference(&send_args))
        };
        s.wait_for_code().await;
        let mut recv = if ours_sends {
            reference(&recv_args)
        } else {
            under_strace(&ours_via(&net, &proxy, &recv_args), &trace)
        };
        recv.current_dir(dst.path());
        let r = run_cli("receiver", recv).await;
        let s = s.finish().await;
        s.assert_success();
        r.assert_success();
        assert_eq!(std::fs::read(dst.path().join("proxied.bin")).unwrap(), data);
        let log = socks.log().await;
        assert!(
            log.contains(&format!("connected to {MAILBOX_NAME}:")),
            "{log}"
        );
        // The reference listens: its direct hints were dialled, through the proxy.
        assert!(log.contains("connected to 127.0.0.1:"), "{log}\n{s}\n{r}");
        let connects = inet_connects(&trace);
        let proxy_port = proxy.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        assert!(!connects.is_empty(), "strace saw no connection");
        assert!(
            connects
                .iter()
                .all(|(a, p)| a == "127.0.0.1" && *p == proxy_port),
            "a connection did not go to the proxy: {connects:?}"
        );
    }
}

/// A proxy that wants a user name and password: the right ones work (also from
/// `WORMHOLE_SOCKS5`); a wrong password, or a proxy that is not there, fails at once with
/// one clear line that does not show the password; a malformed proxy is a usage error.
#[tokio::test]
async fn password_authentication_and_errors() {
    let net = net().await;
    let socks = Socks::start(Some(("alice", "opensesame"))).await;
    let good = format!("alice:opensesame@{}", socks.addr());
    let code = "10-proxied-words";
    let mut send = our_cli(
        &net.named_url,
        &["send", "--no-qr", "--code", code, "--text", "authenticated"],
    );
    send.env("WORMHOLE_SOCKS5", &good);
    let mut s = RunningCli::spawn("our send (WORMHOLE_SOCKS5)", send);
    s.wait_for_code().await;
    let r = run_cli(
        "our receive --socks5 USER:PASS@",
        ours_via(&net, &good, &["receive", code]),
    )
    .await;
    s.finish().await.assert_success();
    r.assert_success();
    assert_eq!(r.stdout.trim_end(), "authenticated");

    let bad = format!("alice:wrong-password@{}", socks.addr());
    let o = run_cli(
        "our send, wrong proxy password",
        ours_via(&net, &bad, &["send", "--no-qr", "--text", "x"]),
    )
    .await;
    o.assert_code(1);
    assert!(o.stderr.contains("SOCKS5 proxy"), "{o}");
    assert!(!o.stderr.contains("wrong-password"), "{o}");

    // A proxy that is not there: one clear line naming it.
    let o = run_cli(
        "our send, dead proxy",
        ours_via(&net, "127.0.0.1:1", &["send", "--no-qr", "--text", "x"]),
    )
    .await;
    o.assert_code(1);
    assert!(o.stderr.contains("SOCKS5 proxy 127.0.0.1:1"), "{o}");

    for malformed in ["nohost", "http://127.0.0.1:8080", "127.0.0.1:0"] {
        let o = run_cli(
            "our send, malformed --socks5",
            ours_via(&net, malformed, &["send", "--text", "x"]),
        )
        .await;
        o.assert_code(2);
        assert!(o.stderr.contains("bad SOCKS5 proxy"), "{o}");
    }
}

/// `wormhole forward` on both sides through the proxy: Dilation never listens behind a
/// proxy, so the two sides meet at the relay, which only the proxy can resolve. Connections
/// made to B's listener reach the echo server behind A and come back whole (SHA-256). B
/// runs under strace (A cannot: it is ended by SIGINT, which strace does not pass on): its
/// only IPv4/IPv6 connections go to the proxy.
#[tokio::test]
async fn forward_through_the_proxy() {
    use wormhole_tests::forward::{
        EchoServer, echo_at_once, ended_by_the_peer, interrupt, listener_port,
    };
    let net = net().await;
    let socks = Socks::start(None).await;
    let proxy = socks.addr();
    let echo = EchoServer::start().await;
    let traces = TempDir::new("socks-forward");
    let trace = traces.path().join("strace.log");
    let remote = format!("echo:{}", echo.port());
    let mut a = RunningCli::spawn(
        "our forward --socks5 (A, --remote)",
        ours_via(&net, &proxy, &["forward", "--remote", &remote]),
    );
    let code = a.wait_for_code().await;
    let mut b = RunningCli::spawn(
        "our forward --socks5 (B, --local)",
        under_strace(
            &ours_via(&net, &proxy, &["forward", "--local", "echo", &code]),
            &trace,
        ),
    );
    let port = listener_port(&mut b, "echo").await;
    let small = (0..8).map(|i| (64 << 10) + i * 997);
    echo_at_once(port, small.chain([4 << 20])).await;
    assert_eq!(echo.accepted(), 9);
    interrupt(a).await;
    ended_by_the_peer(b).await;
    let log = socks.log().await;
    for name in [MAILBOX_NAME, RELAY_NAME] {
        let seen = log.matches(&format!("connected to {name}:")).count();
        assert!(
            seen >= 2,
            "{seen} connections to {name} through the proxy:\n{log}"
        );
    }
    let proxy_port = proxy.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let connects = inet_connects(&trace);
    assert!(!connects.is_empty(), "strace saw no connection");
    assert!(
        connects
            .iter()
            .all(|(addr, p)| addr == "127.0.0.1" && *p == proxy_port),
        "a connection did not go to the proxy: {connects:?}"
    );
}
