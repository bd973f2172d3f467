//! Helpers of the `wormhole forward` tests: fowl's daemon `fowld` driven through its JSON
//! lines, a loopback TCP echo server, and echo round trips checked with SHA-256.
//!
//! fowl 26.8.0 lives in its own venv: `WORMHOLE_FOWL_VENV`, or `.venv-fowl` at the
//! workspace root, where `scripts/setup-peers.sh` creates it. fowl always dials the public
//! transit relay: run these only inside the loopback-only namespace, where that fails at
//! once ([`Fowld::start`] checks).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{CliOutput, RunningCli, TIMEOUT, assert_loopback_only, within};

/// The venv holding fowl 26.8.0: `WORMHOLE_FOWL_VENV`, else `.venv-fowl` at the workspace
/// root. Panics (never skips) when it has no `bin/fowld`.
pub fn fowl_venv() -> PathBuf {
    let dir = match std::env::var_os("WORMHOLE_FOWL_VENV") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-fowl"),
    };
    if !dir.join("bin/fowld").is_file() {
        panic!(
            "fowl is not installed at {} (no bin/fowld): run scripts/setup-peers.sh, or set \
             WORMHOLE_FOWL_VENV",
            dir.display()
        );
    }
    dir
}

/// A running `fowld --mailbox URL`: commands go to its stdin as JSON lines, its JSON
/// output lines are read as they come (the per-chunk `bytes-in`/`bytes-out` ones are
/// counted and dropped). Killed on drop.
pub struct Fowld {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    stderr: JoinHandle<String>,
}

impl Fowld {
    /// Start `fowld` against the mailbox at `url`.
    pub fn start(url: &str) -> Fowld {
        assert_loopback_only();
        let bin = fowl_venv().join("bin/fowld");
        let mut child = Command::new(&bin)
            .arg("--mailbox")
            .arg(url)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| Value::String(line.clone()));
                let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
                if kind == "bytes-in" || kind == "bytes-out" {
                    continue;
                }
                let _ = tx.send(v);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        Fowld {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Send one command (a JSON object with `kind`).
    pub async fn command(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().expect("fowld's stdin is open");
        let line = format!("{cmd}\n");
        within(
            TIMEOUT,
            "writing a command to fowld",
            stdin.write_all(line.as_bytes()),
        )
        .await
        .expect("write to fowld");
    }

    /// Wait (at most [`TIMEOUT`]) for an output message of `kind` matching `pred`.
    pub async fn wait_for(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v.get("kind").and_then(Value::as_str) == Some(kind) && pred(&v) {
                        return v;
                    }
                }
                Ok(None) => panic!(
                    "fowld ended before writing {kind:?}; it wrote:\n{}",
                    self.transcript()
                ),
                Err(_) => panic!(
                    "fowld did not write {kind:?} within {TIMEOUT:?}; it wrote:\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// Allocate a code and return it.
    pub async fn allocate_code(&mut self) -> String {
        self.command(serde_json::json!({"kind": "allocate-code"}))
            .await;
        let v = self.wait_for("code-allocated", |_| true).await;
        v["code"].as_str().expect("a code").to_owned()
    }

    /// What fowld wrote so far (the messages already read), one per line.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait (at most `limit`) for fowld to exit; returns whether it exited 0 and its stderr.
    pub async fn wait_exit(mut self, limit: Duration) -> (bool, String) {
        let status = within(limit, "fowld to exit", self.child.wait())
            .await
            .expect("wait for fowld");
        let stderr = within(TIMEOUT, "fowld's stderr", &mut self.stderr)
            .await
            .unwrap_or_default();
        (status.success(), stderr)
    }
}

/// A TCP echo server on 127.0.0.1 (each connection: bytes back as they come; its end of
/// stream is answered with ours). Counts the connections it accepted. Stops on drop.
pub struct EchoServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Start on a free port.
    pub async fn start() -> EchoServer {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let port = l.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        EchoServer {
            port,
            accepted,
            task,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes derived from `seed` (cheap, not constant, different per connection).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Echo round trips at once through 127.0.0.1:`port`, one per length in `lens` (the
/// connection's pattern seed is its index + 1), each bounded by [`TIMEOUT`].
pub async fn echo_at_once(port: u16, lens: impl IntoIterator<Item = usize>) {
    let mut all = tokio::task::JoinSet::new();
    for (i, len) in lens.into_iter().enumerate() {
        all.spawn(echo_through(port, i as u64 + 1, len, TIMEOUT));
    }
    while let Some(r) = all.join_next().await {
        r.expect("an echo round trip");
    }
}

/// Connect to 127.0.0.1:`port` (a forwarding listener in front of an echo server) and
/// run [`echo_on`] there.
pub async fn echo_through(port: u16, seed: u64, len: usize, limit: Duration) {
    let s = within(
        limit,
        "a connection",
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    echo_on(s, seed, len, limit).await
}

/// Send `len` bytes of [`pattern`]`(seed)` on `s` while reading the echo, and check the
/// echo's length and SHA-256 (reading stops at `len` bytes; nothing is half-closed before,
/// as a forwarded end of stream ends the connection on the far side too). Bounded by
/// `limit`.
pub async fn echo_on(s: TcpStream, seed: u64, len: usize, limit: Duration) {
    within(limit, &format!("an echo of {len} bytes"), async {
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            let mut sent = sha2::Sha256::new();
            let mut off = 0u64;
            let mut left = len;
            // 1 MiB pieces so a 64 MiB stream is never in memory at once.
            while left > 0 {
                let n = left.min(1 << 20);
                let piece = pattern(seed ^ off, n);
                sent.update(&piece);
                w.write_all(&piece).await.expect("write to the forwarder");
                off += n as u64;
                left -= n;
            }
            (w, sent.finalize())
        });
        let mut got = sha2::Sha256::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 << 10];
        while total < len {
            let n = r.read(&mut buf).await.expect("read the echo");
            assert!(n > 0, "the echo ended after {total} of {len} bytes");
            got.update(&buf[..n]);
            total += n;
        }
        assert_eq!(total, len, "more echoed than sent");
        let (w, sent) = writer.await.expect("the writer");
        assert_eq!(got.finalize(), sent, "the echo differs from what was sent");
        drop(w);
    })
    .await
}

/// Wait for our `wormhole forward` to listen for `service`; its port.
pub async fn listener_port(cli: &mut RunningCli, service: &str) -> u16 {
    let announced = format!("Service \"{service}\": listening on 127.0.0.1:");
    let line = cli
        .wait_for_stderr(&format!("the listener for {service:?}"), |l| {
            l.contains(&announced)
        })
        .await;
    port_in(&line)
}

/// Ctrl-C ends our `wormhole forward` gracefully: `closing` goes to the peer, it exits 0.
pub async fn interrupt(cli: RunningCli) -> CliOutput {
    cli.signal("INT").await;
    let out = cli.finish().await;
    out.assert_success();
    assert!(out.stderr.contains("Closing the session."), "{out}");
    out
}

/// Our `wormhole forward` ends, status 0, because the peer closed the session.
pub async fn ended_by_the_peer(cli: RunningCli) -> CliOutput {
    let out = cli.finish().await;
    out.assert_success();
    assert!(out.stderr.contains("The peer closed the session."), "{out}");
    out
}

/// Read the port from a line of ours like `… listening on 127.0.0.1:PORT; …`.
pub fn port_in(line: &str) -> u16 {
    let after = line
        .split("127.0.0.1:")
        .nth(1)
        .unwrap_or_else(|| panic!("no 127.0.0.1:PORT in {line:?}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no port in {line:?}"))
}
