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
    CliOutput, OurServer, RunningCli, TempDir, assert_loopback_only, our_cli, ref_cli, run_cli,
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
/// address).
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
    if let Some(n) = n {
        a.extend(["--tor".into(), "--tor-control-port".into(), net.control(n)]);
    }
    a.extend(args[1..].iter().map(|s| s.to_string()));
    match who {
        Cli::Ours => our_cli(&url, &a),
        Cli::Reference => ref_cli(&url, &a),
    }
}

async fn transfer(
    net: &TorNet,
    server: &OurServer,
    (sender, s_tor): (Cli, Option<u16>),
    (receiver, r_tor): (Cli, Option<u16>),
    code: &str,
) -> (CliOutput, CliOutput) {
    let src = TempDir::new("tor-src");
    let dst = TempDir::new("tor-dst");
    let data: Vec<u8> = (0..(1 << 20) + 17).map(|i| (i * 13 % 251) as u8).collect();
    let file = src.path().join("through-tor.bin");
    std::fs::write(&file, &data).unwrap();
    let f = file.to_string_lossy().into_owned();
    let send = ["send", "--no-qr", "--hide-progress", "--code", code, &f];
    let mut s = RunningCli::spawn(
        &format!("{sender:?} send (tor {s_tor:?})"),
        cli(sender, net, server, s_tor, &send),
    );
    s.wait_for_code().await;
    let recv = ["receive", "--accept-file", "--hide-progress", code];
    let mut r = cli(receiver, net, server, r_tor, &recv);
    r.current_dir(dst.path());
    let r = run_cli(&format!("{receiver:?} receive (tor {r_tor:?})"), r).await;
    let s = s.finish().await;
    s.assert_success();
    r.assert_success();
    assert_eq!(
        std::fs::read(dst.path().join("through-tor.bin")).unwrap(),
        data,
        "{s}\n{r}"
    );
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

/// Ours with ours, ours with the reference both ways, and a Tor side with a side without
/// Tor: every transfer completes, through the relay, and our Tor side says how it found
/// tor and that it goes through Tor.
#[tokio::test]
async fn transfers_through_a_private_tor_network() {
    let net = TorNet::start().await;
    let server = OurServer::start().await;
    let cases = [
        ((Cli::Ours, Some(0)), (Cli::Ours, Some(1))),
        ((Cli::Reference, Some(0)), (Cli::Ours, Some(1))),
        ((Cli::Ours, Some(0)), (Cli::Reference, Some(1))),
        ((Cli::Ours, Some(0)), (Cli::Reference, None)),
        ((Cli::Reference, None), (Cli::Ours, Some(1))),
    ];
    for (i, (s, r)) in cases.into_iter().enumerate() {
        let code = format!("{}-tor-words", 20 + i);
        let (so, ro) = transfer(&net, &server, s, r, &code).await;
        for (o, (who, tor)) in [(&so, s), (&ro, r)] {
            if let (Cli::Ours, Some(n)) = (who, tor) {
                let found = format!(" using Tor via control port at {}", net.control(n));
                assert!(o.stderr.contains(&found), "{o}");
                assert!(o.stderr.contains("tor->relay:tcp:relay.tor.test:"), "{o}");
            }
        }
    }
}
