//! Transfers through a private Tor network of real `tor` processes
//! (`scripts/tor-testnet.sh`: 3 authorities, an exit, 2 middle relays, 2 clients), with our
//! CLI and the reference CLI 0.24.0 in Tor mode (`--tor --tor-control-port`).
//!
//! The mailbox and the relay are named `mailbox.tor.test` and `relay.tor.test`, names only
//! the Tor clients know (`MapAddress` to 127.0.0.1): a transfer that completes went through
//! Tor. In Tor mode nobody listens, so the data crosses the relay.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates (the exit
//! must never be a real one).

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use tokio::process::Command;
use wormhole_tests::{
    CliOutput, OurServer, RunningCli, TempDir, assert_loopback_only, inet_connects, our_cli,
    ref_cli, run_cli, under_strace,
};

/// The network, stopped on drop. One at a time: the lock is held while it runs.
struct TorNet {
    dir: TempDir,
    base: u16,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

static ONE_NETWORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl TorNet {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tor-testnet.sh")
    }

    async fn start() -> TorNet {
        assert_loopback_only();
        let lock = ONE_NETWORK.lock().await;
        let dir = TempDir::new("tor-net");
        // Below the ephemeral range, so no other test's port 0 can take one of ours.
        let base = 12000 + (std::process::id() % 400) as u16 * 40;
        let out = Command::new(Self::script())
            .arg("start")
            .arg(dir.path())
            .arg(base.to_string())
            .output()
            .await
            .expect("run scripts/tor-testnet.sh");
        let net = TorNet {
            dir,
            base,
            _one_at_a_time: lock,
        };
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ready"),
            "the Tor network did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }

    /// Client `n`'s control port as an endpoint.
    fn control(&self, n: u16) -> String {
        format!("tcp:127.0.0.1:{}", self.base + 21 + 2 * n)
    }
}

impl Drop for TorNet {
    fn drop(&mut self) {
        let _ = StdCommand::new(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cli {
    Ours,
    Reference,
}

/// The command for `cli` in Tor mode through client `n` (`n = None`: without Tor, by
/// address; `Some(SOCKS_ONLY)`: `--tor` alone, which finds no control port and uses the
/// SOCKS port 9050 of client 2).
fn cli(who: Cli, net: &TorNet, server: &OurServer, n: Option<u16>, args: &[&str]) -> Command {
    let port = |s: String| {
        s.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/v1")
            .to_owned()
    };
    let (url, relay) = match n {
        Some(_) => (
            format!("ws://mailbox.tor.test:{}/v1", port(server.url())),
            format!("tcp:relay.tor.test:{}", port(server.relay_hint())),
        ),
        None => (server.url(), server.relay_hint()),
    };
    let mut a: Vec<String> = vec!["--transit-helper".into(), relay];
    a.push(args[0].into());
    match n {
        Some(SOCKS_ONLY) => a.push("--tor".into()),
        Some(n) => a.extend(["--tor".into(), "--tor-control-port".into(), net.control(n)]),
        None => {}
    }
    a.extend(args[1..].iter().map(|s| s.to_string()));
    match who {
        Cli::Ours => our_cli(&url, &a),
        Cli::Reference => ref_cli(&url, &a),
    }
}

/// The client with no control port (its SOCKS port is the default 9050).
const SOCKS_ONLY: u16 = 2;

/// A side of a transfer: which CLI, through which Tor client (None: no Tor).
type Side = (Cli, Option<u16>);

/// Move a file (or, with `text`, a text) from `sender` to `receiver`. Our Tor side runs
/// under strace when `trace` is given (the log goes there).
async fn transfer(
    net: &TorNet,
    server: &OurServer,
    (sender, s_tor): Side,
    (receiver, r_tor): Side,
    code: &str,
    text: bool,
    trace: Option<&Path>,
) -> (CliOutput, CliOutput) {
    let src = TempDir::new("tor-src");
    let dst = TempDir::new("tor-dst");
    let data: Vec<u8> = (0..(1 << 20) + 17).map(|i| (i * 13 % 251) as u8).collect();
    let file = src.path().join("through-tor.bin");
    std::fs::write(&file, &data).unwrap();
    let f = file.to_string_lossy().into_owned();
    let what: &[&str] = if text {
        &["--text", "a text through Tor"]
    } else {
        &[&f]
    };
    let send = [
        &["send", "--no-qr", "--hide-progress", "--code", code][..],
        what,
    ]
    .concat();
    let traced = |c: Command, who: Cli, tor: Option<u16>| match (trace, who, tor) {
        (Some(log), Cli::Ours, Some(_)) => under_strace(&c, log),
        _ => c,
    };
    let mut s = RunningCli::spawn(
        &format!("{sender:?} send (tor {s_tor:?})"),
        traced(cli(sender, net, server, s_tor, &send), sender, s_tor),
    );
    s.wait_for_code().await;
    let recv = ["receive", "--accept-file", "--hide-progress", code];
    let mut r = traced(cli(receiver, net, server, r_tor, &recv), receiver, r_tor);
    r.current_dir(dst.path());
    let r = run_cli(&format!("{receiver:?} receive (tor {r_tor:?})"), r).await;
    let s = s.finish().await;
    s.assert_success();
    r.assert_success();
    if text {
        assert_eq!(r.stdout.trim_end(), "a text through Tor", "{s}\n{r}");
    } else {
        assert_eq!(
            std::fs::read(dst.path().join("through-tor.bin")).unwrap(),
            data,
            "{s}\n{r}"
        );
    }
    (s, r)
}

/// `--tor-onion`: each side publishes an onion service for the transfer and no relay is
/// configured at all, so the data can only cross an onion service: ours with ours, and ours
/// with the reference receiver (which dials our `tor-tcp-v1` hint through Tor).
#[tokio::test]
async fn onion_services_without_a_relay() {
    let net = TorNet::start().await;
    let server = OurServer::start().await;
    let port = server.url();
    let port = port.rsplit(':').next().unwrap().trim_end_matches("/v1");
    let url = format!("ws://mailbox.tor.test:{port}/v1");
    let src = TempDir::new("onion-src");
    let data: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i * 7 % 253) as u8).collect();
    let file = src.path().join("onion.bin");
    std::fs::write(&file, &data).unwrap();
    let f = file.to_string_lossy().into_owned();
    for (i, reference_receives) in [false, true].into_iter().enumerate() {
        let code = format!("{}-onion-words", 40 + i);
        let c0 = net.control(0);
        let send = [
            "--transit-helper=",
            "send",
            "--tor-onion",
            "--tor-control-port",
            &c0,
            "--no-qr",
            "--hide-progress",
            "--code",
            &code,
            &f,
        ];
        let mut s = RunningCli::spawn("our send --tor-onion", our_cli(&url, &send));
        s.wait_for_code().await;
        let dst = TempDir::new("onion-dst");
        let c1 = net.control(1);
        let mut r = if reference_receives {
            // Its default relay is unreachable here: only our onion service can work.
            ref_cli(
                &url,
                &[
                    "receive",
                    "--tor",
                    "--tor-control-port",
                    &c1,
                    "--accept-file",
                    "--hide-progress",
                    &code,
                ],
            )
        } else {
            our_cli(
                &url,
                &[
                    "--transit-helper=",
                    "receive",
                    "--tor-onion",
                    "--tor-control-port",
                    &c1,
                    "--accept-file",
                    "--hide-progress",
                    &code,
                ],
            )
        };
        r.current_dir(dst.path());
        let r = run_cli("receiver", r).await;
        let s = s.finish().await;
        s.assert_success();
        r.assert_success();
        assert_eq!(
            std::fs::read(dst.path().join("onion.bin")).unwrap(),
            data,
            "{s}\n{r}"
        );
        let onion =
            |o: &CliOutput| o.stderr.contains(".onion:") || o.stderr.contains("(<-127.0.0.1:");
        assert!(
            onion(&s) && onion(&r),
            "not through an onion service:\n{s}\n{r}"
        );
    }
}

/// Ours with ours; ours with the reference both ways, a text and a file; a Tor side with a
/// side without Tor both ways; both sides in SOCKS-only mode (no control port). Every
/// transfer completes, through the relay, and our Tor side says how it found tor and that
/// it goes through Tor. The leak test: in the mixed pair our side runs under strace, and
/// its only IPv4/IPv6 connections go to its tor client (SOCKS and control port).
#[tokio::test]
async fn transfers_through_a_private_tor_network() {
    let net = TorNet::start().await;
    let server = OurServer::start().await;
    let logs = TempDir::new("tor-strace");
    let cases: [(Side, Side, bool); 9] = [
        ((Cli::Ours, Some(0)), (Cli::Ours, Some(1)), false),
        ((Cli::Reference, Some(0)), (Cli::Ours, Some(1)), false),
        ((Cli::Ours, Some(0)), (Cli::Reference, Some(1)), false),
        ((Cli::Reference, Some(0)), (Cli::Ours, Some(1)), true),
        ((Cli::Ours, Some(0)), (Cli::Reference, Some(1)), true),
        ((Cli::Ours, Some(0)), (Cli::Reference, None), false),
        ((Cli::Reference, None), (Cli::Ours, Some(1)), false),
        (
            (Cli::Ours, Some(SOCKS_ONLY)),
            (Cli::Reference, Some(SOCKS_ONLY)),
            false,
        ),
        (
            (Cli::Reference, Some(SOCKS_ONLY)),
            (Cli::Ours, Some(SOCKS_ONLY)),
            true,
        ),
    ];
    for (i, (s, r, text)) in cases.into_iter().enumerate() {
        let code = format!("{}-tor-words", 20 + i);
        let mixed = s.1.is_none() || r.1.is_none();
        let log = logs.path().join(format!("strace-{i}.log"));
        let trace = mixed.then_some(log.as_path());
        let (so, ro) = transfer(&net, &server, s, r, &code, text, trace).await;
        for (o, (who, tor)) in [(&so, s), (&ro, r)] {
            let (Cli::Ours, Some(n)) = (who, tor) else {
                continue;
            };
            let found = if n == SOCKS_ONLY {
                " unable to find default Tor control port, using SOCKS".to_owned()
            } else {
                format!(" using Tor via control port at {}", net.control(n))
            };
            assert!(o.stderr.contains(&found), "{o}");
            if !text {
                assert!(o.stderr.contains("tor->relay:tcp:relay.tor.test:"), "{o}");
            }
            if mixed {
                let allowed = [net.base + 20 + 2 * n, net.base + 21 + 2 * n];
                let connects = inet_connects(&log);
                assert!(!connects.is_empty(), "strace saw no connection");
                assert!(
                    connects
                        .iter()
                        .all(|(a, p)| a == "127.0.0.1" && allowed.contains(p)),
                    "a connection did not go to tor: {connects:?}"
                );
            }
        }
    }
}

/// `--launch-tor`: our CLI starts its own tor (joining the private network through
/// `WORMHOLE_TOR_LAUNCH_CONFIG`), sends a file through it to a receiver on client 1, and
/// stops it: no tor of ours is left running afterwards.
#[tokio::test]
async fn launch_tor_joins_the_network() {
    let net = TorNet::start().await;
    let server = OurServer::start().await;
    let config = std::fs::read_to_string(net.dir.path().join("client.conf")).unwrap();
    let mut send = cli(
        Cli::Ours,
        &net,
        &server,
        Some(0),
        &[
            "send",
            "--no-qr",
            "--hide-progress",
            "--code",
            "60-launched-words",
            "--text",
            "hi",
        ],
    );
    // The same command, but with --launch-tor instead of the control port.
    let args: Vec<String> = send
        .as_std()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut launched = Command::new(send.as_std().get_program());
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
            continue;
        }
        match a.as_str() {
            "--tor-control-port" => skip = true,
            "--tor" => {
                launched.arg("--launch-tor");
            }
            _ => {
                launched.arg(a);
            }
        }
    }
    launched.env("WORMHOLE_TOR_LAUNCH_CONFIG", config);
    send = launched;
    let mut s = RunningCli::spawn("our send --launch-tor", send);
    s.wait_for_code().await;
    let recv = ["receive", "--hide-progress", "60-launched-words"];
    let r = run_cli(
        "our receive (client 1)",
        cli(Cli::Ours, &net, &server, Some(1), &recv),
    )
    .await;
    let s = s.finish().await;
    s.assert_success();
    r.assert_success();
    assert_eq!(r.stdout.trim_end(), "hi");
    assert!(
        s.stderr
            .contains(" launching a new Tor process, this may take a while.."),
        "{s}"
    );
    // Its tor exits with it (it took ownership through its control connection), within
    // moments, and its data directory is gone.
    let mut left = String::new();
    for _ in 0..100 {
        let ps = StdCommand::new("ps")
            .args(["-eo", "stat,args"])
            .output()
            .unwrap();
        left = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("wormhole-tor-") && !l.starts_with('Z'))
            .collect::<Vec<_>>()
            .join("\n");
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "a launched tor is still running: {left}");
    let dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wormhole-tor-"))
        .map(|e| e.path())
        .collect();
    assert!(dirs.is_empty(), "launched tor directories left: {dirs:?}");
}

/// `wormhole forward` through Tor on both sides (clients 0 and 1): Dilation never listens
/// in Tor mode, so the sides meet at the relay, which only Tor can name. Connections made
/// to B's listener reach the echo server behind A and come back whole (SHA-256). B runs
/// under strace (A cannot: it is ended by SIGINT, which strace does not pass on): its only
/// IPv4/IPv6 connections go to its tor client.
#[tokio::test]
async fn forward_through_a_private_tor_network() {
    use wormhole_tests::forward::{
        EchoServer, echo_at_once, ended_by_the_peer, interrupt, listener_port,
    };
    let net = TorNet::start().await;
    let server = OurServer::start().await;
    let echo = EchoServer::start().await;
    let logs = TempDir::new("tor-forward");
    let trace = logs.path().join("strace.log");
    let remote = format!("echo:{}", echo.port());
    let mut a = RunningCli::spawn(
        "our forward --tor (A, --remote)",
        cli(
            Cli::Ours,
            &net,
            &server,
            Some(0),
            &["forward", "--remote", &remote],
        ),
    );
    let code = a.wait_for_code().await;
    let mut b = RunningCli::spawn(
        "our forward --tor (B, --local)",
        under_strace(
            &cli(
                Cli::Ours,
                &net,
                &server,
                Some(1),
                &["forward", "--local", "echo", &code],
            ),
            &trace,
        ),
    );
    let port = listener_port(&mut b, "echo").await;
    let small = (0..4).map(|i| (32 << 10) + i * 997);
    echo_at_once(port, small.chain([1 << 20])).await;
    assert_eq!(echo.accepted(), 5);
    let a = interrupt(a).await;
    let b = ended_by_the_peer(b).await;
    for (o, n) in [(&a, 0u16), (&b, 1)] {
        let found = format!(" using Tor via control port at {}", net.control(n));
        assert!(o.stderr.contains(&found), "{o}");
    }
    let allowed = [net.base + 22, net.base + 23];
    let connects = inet_connects(&trace);
    assert!(!connects.is_empty(), "strace saw no connection");
    assert!(
        connects
            .iter()
            .all(|(addr, p)| addr == "127.0.0.1" && allowed.contains(p)),
        "a connection did not go to tor: {connects:?}"
    );
}
