//! Tor mode against a real `tor` (Debian's package) with its network disabled: finding its
//! SOCKS port through the control port with cookie and password authentication, the CLI's
//! `--tor-control-port`, the refusal of a numeric mailbox host, and `--launch-tor`'s
//! start-up, timeout and clean-up.
//!
//! What needs a Tor network (streams through it, onion services) is not covered here.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use wormhole_core::tor::{Found, Tor, TorOptions};
use wormhole_tests::{TempDir, assert_loopback_only, free_port, our_cli, run_cli, wait_for_port};

fn tor_bin() -> PathBuf {
    ["/usr/bin/tor", "/usr/sbin/tor", "/usr/local/bin/tor"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("tor is not installed: run scripts/setup-peers.sh")
}

/// A tor with `DisableNetwork 1` on free SOCKS and control ports. Killed on drop.
struct OfflineTor {
    socks: u16,
    control: u16,
    _dir: TempDir,
    _child: Child,
}

impl OfflineTor {
    async fn start(extra: &[String]) -> OfflineTor {
        assert_loopback_only();
        let dir = TempDir::new("tor");
        let (socks, control) = (free_port(), free_port());
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut rc = vec![
            format!("DataDirectory {}", data.display()),
            "DisableNetwork 1".into(),
            format!("SocksPort 127.0.0.1:{socks}"),
            format!("ControlPort 127.0.0.1:{control}"),
            "Log notice stderr".into(),
        ];
        rc.extend_from_slice(extra);
        let torrc = dir.path().join("torrc");
        std::fs::write(&torrc, rc.join("\n") + "\n").unwrap();
        let mut child = Command::new(tor_bin())
            .arg("-f")
            .arg(&torrc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start tor");
        assert!(
            wait_for_port(control, &mut child).await,
            "tor did not open its control port"
        );
        OfflineTor {
            socks,
            control,
            _dir: dir,
            _child: child,
        }
    }

    fn control(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.control)
    }
}

async fn connect(opts: TorOptions) -> wormhole_core::Result<Tor> {
    tokio::task::spawn_blocking(move || Tor::connect(&opts))
        .await
        .unwrap()
}

/// Cookie authentication (the usual set-up): the SOCKS port is the one tor listens on.
#[tokio::test]
async fn finds_the_socks_port_with_the_cookie() {
    let tor = OfflineTor::start(&["CookieAuthentication 1".into()]).await;
    let t = connect(TorOptions {
        control: Some(tor.control()),
        ..TorOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(t.socks().server, format!("127.0.0.1:{}", tor.socks));
    assert_eq!(t.found(), &Found::ControlPort(tor.control()));
    assert!(t.controlled());
}

/// Password authentication (`HashedControlPassword`): the right password works, a wrong
/// one or none fails with tor's own reason.
#[tokio::test]
async fn password_authentication() {
    let out = std::process::Command::new(tor_bin())
        .args(["--quiet", "--hash-password", "open sesame"])
        .output()
        .expect("tor --hash-password");
    let hash = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_owned();
    assert!(hash.starts_with("16:"), "{hash:?}");
    let tor = OfflineTor::start(&[format!("HashedControlPassword {hash}")]).await;
    let opts = |password: Option<&str>| TorOptions {
        control: Some(tor.control()),
        password: password.map(str::to_owned),
        ..TorOptions::default()
    };
    let t = connect(opts(Some("open sesame"))).await.unwrap();
    assert_eq!(t.socks().server, format!("127.0.0.1:{}", tor.socks));
    let e = connect(opts(Some("wrong"))).await.unwrap_err();
    assert!(e.to_string().contains("515"), "{e}");
    let e = connect(opts(None)).await.unwrap_err();
    assert!(e.to_string().contains("wants a password"), "{e}");
}

/// The CLI: `--tor-control-port` says where it found tor, then connects to the mailbox
/// through tor's SOCKS port (which fails: tor's network is off, and the failure names that
/// port); a numeric mailbox host is refused before anything is sent, like the reference.
#[tokio::test]
async fn cli_tor_control_port() {
    let tor = OfflineTor::start(&["CookieAuthentication 1".into()]).await;
    let control = tor.control();
    let o = run_cli(
        "our send --tor-control-port",
        our_cli(
            "ws://mailbox.example.org:4000/v1",
            &[
                "send",
                "--no-qr",
                "--tor-control-port",
                &control,
                "--text",
                "x",
            ],
        ),
    )
    .await;
    o.assert_code(1);
    assert!(
        o.stderr
            .contains(&format!(" using Tor via control port at {control}")),
        "{o}"
    );
    assert!(
        o.stderr
            .contains(&format!("SOCKS5 proxy 127.0.0.1:{}", tor.socks)),
        "{o}"
    );
    let o = run_cli(
        "our receive --tor --tor-control-port, numeric mailbox",
        our_cli(
            "ws://127.0.0.1:4000/v1",
            &[
                "receive",
                "--tor",
                "--tor-control-port",
                &control,
                "7-purple-sausages",
            ],
        ),
    )
    .await;
    o.assert_code(1);
    assert!(
        o.stderr
            .contains("'127.0.0.1' isn't going to work over Tor"),
        "{o}"
    );
    // Usage: --launch-tor and --tor-control-port exclude each other.
    let o = run_cli(
        "our send --launch-tor --tor-control-port",
        our_cli(
            "ws://127.0.0.1:9/v1",
            &[
                "send",
                "--launch-tor",
                "--tor-control-port",
                &control,
                "--text",
                "x",
            ],
        ),
    )
    .await;
    o.assert_code(2);
}

/// The launched tors' data directories in the temporary directory.
fn launch_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("wormhole-tor-{}-", std::process::id())))
        })
        .collect()
}

/// `--launch-tor` (library): a tor that cannot bootstrap (network disabled) gives up at the
/// deadline with a clear error, and leaves neither its process nor its directory behind.
#[tokio::test]
async fn launch_gives_up_and_cleans_up() {
    assert_loopback_only();
    let _ = tor_bin();
    let e = connect(TorOptions {
        launch: true,
        launch_config: vec!["DisableNetwork 1".into()],
        launch_timeout: Duration::from_secs(3),
        ..TorOptions::default()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("bootstrap"), "{e}");
    assert_eq!(launch_dirs(), Vec::<PathBuf>::new());
    // Its tor process is gone (no tor of ours left with a wormhole-tor- torrc).
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let mine = format!("wormhole-tor-{}-", std::process::id());
    assert!(!ps.lines().any(|l| l.contains(&mine)), "{ps}");
}
