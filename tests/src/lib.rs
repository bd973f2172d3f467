//! Helpers for the end-to-end tests.
//!
//! The interop tests run real peers: the reference mailbox server (`twist wormhole-mailbox`
//! from the magic-wormhole-mailbox-server 0.8.0 package), the reference `wormhole` CLI
//! (magic-wormhole 0.24.0) and this workspace's `wormhole` CLI. They are meant to run inside
//! a private, loopback-only network namespace; `scripts/test.sh` sets that up, together with
//! the environment this module reads:
//!
//! - `WORMHOLE_REF_VENV`: the venv holding the reference packages (`scripts/setup-peers.sh`
//!   creates `.venv-ref`), see [`ref_venv`];
//! - `WORMHOLE_BIN`: our `wormhole` binary, see [`wormhole_bin`].
//!
//! Rules every test follows:
//! - call [`assert_loopback_only`] before starting any peer;
//! - bound every wait ([`TIMEOUT`], [`within`], [`poll_until`], [`RunningCli::finish`]), so a
//!   hung peer fails the test instead of hanging CI;
//! - never synchronise with fixed sleeps: poll an observable condition instead;
//! - use its own [`MailboxServer`] (servers are cheap), so tests can run in parallel.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Debug;
use std::fs::File;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub mod dilation;
pub mod forward;
pub mod postgres;

/// The default bound for any single wait in a test (a peer's answer, a process's exit).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`MailboxServer::start`] waits for the server to accept connections.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Interfaces of the current network namespace, from `/proc/self/net/dev` (always accurate
/// for the calling process's namespace).
fn proc_interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_else(|e| panic!("cannot read /proc/self/net/dev: {e}"));
    let mut names: Vec<String> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

/// Interfaces listed in `/sys/class/net`. Note that sysfs shows the network namespace of
/// whoever mounted it, so inside `unshare -n` it is only accurate after mounting a fresh
/// sysfs (`scripts/test.sh` does: `unshare -rnm … mount -t sysfs sysfs /sys`).
fn sys_interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap_or_else(|e| panic!("cannot list /sys/class/net: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Panic with a clear message unless this process sits in a loopback-only network
/// namespace: `/sys/class/net` (and `/proc/self/net/dev`) must list only `lo`, and `lo`
/// must be up.
///
/// Every test that starts peers calls this first, so nobody accidentally runs peers (which
/// advertise and contact every local address) on a real network. Run the tests with
/// `scripts/test.sh`, which creates the namespace.
pub fn assert_loopback_only() {
    const HOW: &str = "run the tests with scripts/test.sh, which runs them inside a private \
                       loopback-only network namespace \
                       (unshare -rnm sh -c 'ip link set lo up && mount -t sysfs sysfs /sys && cargo test ...')";
    let sys = sys_interfaces();
    let proc = proc_interfaces();
    if sys != ["lo"] || proc != ["lo"] {
        panic!(
            "refusing to start peers: this is not a loopback-only network namespace \
             (/sys/class/net: {sys:?}, /proc/self/net/dev: {proc:?}); {HOW}"
        );
    }
    // IFF_UP is bit 0 of the interface flags.
    let flags = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap_or_default();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    if flags & 1 == 0 {
        panic!("the loopback interface is down (`ip link set lo up`); {HOW}");
    }
}

/// The venv holding the reference peers, from `WORMHOLE_REF_VENV`.
///
/// Panics (never skips) when it is unset or does not hold `bin/twist` and `bin/wormhole`:
/// run `scripts/test.sh`, which creates it with `scripts/setup-peers.sh` and sets the variable.
pub fn ref_venv() -> PathBuf {
    let Some(dir) = std::env::var_os("WORMHOLE_REF_VENV") else {
        panic!(
            "WORMHOLE_REF_VENV is not set: run scripts/test.sh (it creates the reference venv \
             with scripts/setup-peers.sh and runs the tests in a loopback-only namespace)"
        );
    };
    let dir = PathBuf::from(dir);
    for tool in ["twist", "wormhole", "python"] {
        let p = dir.join("bin").join(tool);
        if !p.is_file() {
            panic!(
                "WORMHOLE_REF_VENV={} has no bin/{tool}: run scripts/test.sh \
                 (scripts/setup-peers.sh creates the venv)",
                dir.display()
            );
        }
    }
    dir
}

/// Our `wormhole` binary: `WORMHOLE_BIN`, or `target/debug/wormhole` of this workspace.
/// Panics with a clear message when it does not exist.
pub fn wormhole_bin() -> PathBuf {
    let bin = match std::env::var_os("WORMHOLE_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wormhole"),
    };
    if !bin.is_file() {
        panic!(
            "our wormhole CLI is not at {}: build it (cargo build -p wormhole-cli) or run \
             scripts/test.sh",
            bin.display()
        );
    }
    bin
}

/// Await `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Call `probe` every `interval` until it returns `Some`, panicking with `what` after
/// `limit`.
pub async fn poll_until<T, F, Fut>(
    limit: Duration,
    interval: Duration,
    what: &str,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Assert that `r` is an error of `kind`, and return the error.
#[track_caller]
pub fn expect_kind<T: Debug>(
    r: wormhole_core::Result<T>,
    kind: wormhole_core::ErrorKind,
) -> wormhole_core::Error {
    match r {
        Err(e) if e.kind() == kind => e,
        other => panic!("expected an error of kind {kind:?}, got {other:?}"),
    }
}

/// Ports handed out by [`free_port`] in this process: never hand one out twice, even after
/// its server stopped.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A 127.0.0.1 TCP port nothing listens on: bind port 0, read the port, drop the socket.
/// Never returns the same port twice within one test process.
pub fn free_port() -> u16 {
    loop {
        let l = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        drop(l);
        let mut used = USED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A scratch directory under `std::env::temp_dir()`, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create a fresh, empty directory named after `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "wormhole-tests-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The reference mailbox server (magic-wormhole-mailbox-server 0.8.0), run as
/// `<venv>/bin/twist wormhole-mailbox --port=tcp:PORT:interface=127.0.0.1 --channel-db=DB`.
///
/// The process is killed when this value is dropped. Its log goes to a file in a scratch
/// directory; the tail is printed when a test panics while the server is alive.
pub struct MailboxServer {
    port: u16,
    db: String,
    extra_args: Vec<String>,
    child: Option<Child>,
    scratch: TempDir,
    starts: u32,
}

impl MailboxServer {
    /// Start a server with an in-memory channel db and `extra_args` (e.g.
    /// `["--motd=hello"]`, `["--signal-error=go away"]`) on a free port, and wait until it
    /// accepts connections.
    pub async fn start(extra_args: &[&str]) -> MailboxServer {
        Self::start_inner(":memory:".to_owned(), extra_args).await
    }

    /// Like [`MailboxServer::start`] with the channel db in the file `db`, so the server's
    /// mailboxes survive [`MailboxServer::stop`] + [`MailboxServer::restart`].
    pub async fn start_with_db(db: &Path, extra_args: &[&str]) -> MailboxServer {
        Self::start_inner(db.to_string_lossy().into_owned(), extra_args).await
    }

    async fn start_inner(db: String, extra_args: &[&str]) -> MailboxServer {
        let mut server = MailboxServer {
            port: 0,
            db,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            scratch: TempDir::new("mailbox"),
            starts: 0,
        };
        // A port picked with bind(0) can be taken by someone else before twist binds it:
        // twist then keeps running without listening, so retry with another port.
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(e) => eprintln!("mailbox server on port {}: {e}; retrying", server.port),
            }
        }
        panic!(
            "could not start the reference mailbox server\n{}",
            server.log_tail(40)
        );
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mailbox URL: `ws://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.port)
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.scratch.path().join(format!("twist-{n}.log"))
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log_path = self.log_path(self.starts);
        let log = File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("clone log: {e}"))?;
        let twist = ref_venv().join("bin/twist");
        let mut cmd = Command::new(&twist);
        cmd.arg("wormhole-mailbox")
            .arg(format!("--port=tcp:{}:interface=127.0.0.1", self.port))
            .arg(format!("--channel-db={}", self.db))
            .args(&self.extra_args)
            .current_dir(self.scratch.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", twist.display()));
        self.child = Some(child);

        // Ready = twist logged that *it* listens on the port, and the port accepts TCP.
        let listening = format!("starting on {}", self.port);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("twist exited early ({status})"));
            }
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("Address already in use") {
                self.kill().await;
                return Err("port already in use".into());
            }
            if text.contains(&listening)
                && tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill().await;
                return Err(format!(
                    "not accepting connections after {SERVER_START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // tokio's kill() is SIGKILL, then waits for the process to be reaped.
            let _ = within(TIMEOUT, "the mailbox server to die", c.kill()).await;
        }
    }

    /// Kill the server with SIGKILL (no clean shutdown) and wait until it is gone.
    pub async fn stop(&mut self) {
        assert!(self.child.is_some(), "the mailbox server is not running");
        self.kill().await;
    }

    /// Start the server again on the same port with the same channel db and arguments, and
    /// wait until it accepts connections. Panics if that fails.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop the mailbox server before restarting it"
        );
        if let Err(e) = self.spawn_and_wait().await {
            panic!(
                "could not restart the mailbox server on port {}: {e}\n{}",
                self.port,
                self.log_tail(40)
            );
        }
    }

    /// The last `n` lines of the current server log, reduced to their text.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            // Twisted's JSON log starts each record with an ASCII record separator.
            .map(|l| l.trim_start_matches('\u{1e}'))
            .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) => v
                    .get("log_text")
                    .or_else(|| v.get("log_format"))
                    .and_then(|t| t.as_str())
                    .unwrap_or(l)
                    .to_owned(),
                Err(_) => l.to_owned(),
            })
            .collect();
        let start = lines.len().saturating_sub(n);
        format!(
            "--- mailbox server log (port {}, last {} lines) ---\n{}",
            self.port,
            lines.len() - start,
            lines[start..].join("\n")
        )
    }
}

impl Drop for MailboxServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(30));
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// Run `sql` (a single-value query such as `select count(*) from messages`) on the sqlite
/// file `db` with the reference venv's Python. `None` if the query failed (e.g. the
/// database is locked or not created yet).
pub async fn sqlite_query(db: &Path, sql: &str) -> Option<String> {
    let py = ref_venv().join("bin/python");
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True, timeout=5)\n\
                  print(c.execute(sys.argv[2]).fetchone()[0])\n";
    let out = within(
        TIMEOUT,
        "python sqlite query",
        Command::new(py)
            .arg("-c")
            .arg(script)
            .arg(db)
            .arg(sql)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What the reference `wormhole receive` 0.24 prints on stdout for a received text:
/// `print(repr(text)[1:-1])`, i.e. Python's escaping of control characters, backslashes
/// and (some) quotes, computed with the reference venv's Python.
pub async fn reference_text_stdout(text: &str) -> String {
    let py = ref_venv().join("bin/python");
    let out = within(
        TIMEOUT,
        "python repr()",
        Command::new(py)
            .arg("-c")
            .arg("import sys; print(repr(sys.argv[1])[1:-1])")
            .arg(text)
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run python");
    assert!(out.status.success(), "python repr() failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 from python")
}

/// A command for the reference CLI: `<venv>/bin/wormhole --relay-url URL ARGS…`.
pub fn ref_cli<S: AsRef<OsStr>>(relay_url: &str, args: &[S]) -> Command {
    cli_command(&ref_venv().join("bin/wormhole"), relay_url, args)
}

/// A command for our CLI: `$WORMHOLE_BIN --relay-url URL ARGS…`.
pub fn our_cli<S: AsRef<OsStr>>(relay_url: &str, args: &[S]) -> Command {
    cli_command(&wormhole_bin(), relay_url, args)
}

fn cli_command<S: AsRef<OsStr>>(bin: &Path, relay_url: &str, args: &[S]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--relay-url").arg(relay_url).args(args);
    // These mean different things to different CLIs; the tests pass explicit flags.
    for var in [
        "WORMHOLE_RELAY_URL",
        "WORMHOLE_TRANSIT_HELPER",
        "WORMHOLE_APPID",
        "WORMHOLE_QR",
        "WORMHOLE_ACCEPT_FILE",
        "WORMHOLE_SOCKS5",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PYTHONUNBUFFERED", "1");
    cmd
}

/// The result of a finished CLI run.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// What the test called it (for messages).
    pub name: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panic with the full output unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "{} failed:\n{self}", self.name);
        self
    }

    /// Panic with the full output unless it exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{} should exit {code}:\n{self}",
            self.name
        );
        self
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- {} ({}) stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name, self.status, self.stdout, self.name, self.stderr
        )
    }
}

/// A running CLI process with captured output. Its stderr is read line by line while it
/// runs ([`RunningCli::wait_for_stderr`], [`RunningCli::wait_for_code`]). Killed on drop.
pub struct RunningCli {
    name: String,
    child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
    stderr_lines: mpsc::UnboundedReceiver<String>,
    seen_stderr: Vec<String>,
}

fn read_all<R: AsyncRead + Unpin + Send + 'static>(mut r: R) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl RunningCli {
    /// Spawn `cmd` (stdin closed, stdout/stderr captured); `name` labels it in messages.
    pub fn spawn(name: &str, cmd: Command) -> RunningCli {
        Self::spawn_with_stdin(name, cmd, None)
    }

    /// Like [`RunningCli::spawn`], but with `input` written to its stdin, which is then
    /// closed (`None`: stdin is closed at once).
    pub fn spawn_with_stdin(name: &str, mut cmd: Command, input: Option<&str>) -> RunningCli {
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            let input = input.to_owned();
            tokio::spawn(async move {
                let _ = stdin.write_all(input.as_bytes()).await;
            });
        }
        let stdout = read_all(child.stdout.take().expect("piped stdout"));
        let (tx, rx) = mpsc::unbounded_channel();
        let err = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut all = String::new();
            let mut lines = BufReader::new(err).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                let line = String::from_utf8_lossy(&line).into_owned();
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        RunningCli {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            stderr_lines: rx,
            seen_stderr: Vec::new(),
        }
    }

    /// Wait (at most [`TIMEOUT`]) for a stderr line matching `pred` and return it. Panics
    /// with the output so far if the process ends or the time runs out first.
    pub async fn wait_for_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.stderr_lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen_stderr.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Ok(None) => {
                    let status = within(TIMEOUT, "the CLI to exit", self.child.wait()).await;
                    panic!(
                        "{} ended ({status:?}) before writing {what} to stderr; stderr:\n{}",
                        self.name,
                        self.seen_stderr.join("\n")
                    );
                }
                Err(_) => panic!(
                    "{} did not write {what} to stderr within {TIMEOUT:?}; stderr so far:\n{}",
                    self.name,
                    self.seen_stderr.join("\n")
                ),
            }
        }
    }

    /// Wait for the `Wormhole code is: CODE` line on stderr and return `CODE`.
    pub async fn wait_for_code(&mut self) -> String {
        let line = self
            .wait_for_stderr("\"Wormhole code is: …\"", |l| {
                l.contains("Wormhole code is: ")
            })
            .await;
        let code = line
            .split("Wormhole code is: ")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned();
        assert!(!code.is_empty(), "{}: empty code in {line:?}", self.name);
        code
    }

    /// Kill the process with SIGKILL (no chance to clean up) and wait until it is gone.
    pub async fn kill9(mut self) {
        within(TIMEOUT, "the process to die", self.child.kill())
            .await
            .unwrap_or_else(|e| panic!("kill {}: {e}", self.name));
    }

    /// Wait (at most [`TIMEOUT`]) for the process to exit and return its output. A process
    /// still running then is killed and the test fails with what it wrote so far.
    pub async fn finish(self) -> CliOutput {
        let name = self.name.clone();
        match self.finish_within(TIMEOUT).await {
            Ok(out) => out,
            Err(out) => panic!(
                "{name} hung for {TIMEOUT:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                out.stdout, out.stderr
            ),
        }
    }

    /// Wait at most `limit` for the process to exit: `Ok` with its output, or `Err` with
    /// what it wrote before it was killed (SIGKILL) at the limit.
    pub async fn finish_within(mut self, limit: Duration) -> Result<CliOutput, CliOutput> {
        let (status, exited) = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(s) => (
                s.unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name)),
                true,
            ),
            Err(_) => {
                let _ = self.child.kill().await;
                let s = within(
                    Duration::from_secs(5),
                    "the killed process",
                    self.child.wait(),
                )
                .await
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
                (s, false)
            }
        };
        let stdout = within(TIMEOUT, "the CLI's stdout to close", &mut self.stdout)
            .await
            .unwrap_or_default();
        let stderr = within(TIMEOUT, "the CLI's stderr to close", &mut self.stderr)
            .await
            .unwrap_or_default();
        let out = CliOutput {
            name: self.name.clone(),
            status,
            stdout,
            stderr,
        };
        if exited { Ok(out) } else { Err(out) }
    }
}

/// Run `cmd` to completion (bounded by [`TIMEOUT`]) and return its output.
pub async fn run_cli(name: &str, cmd: Command) -> CliOutput {
    RunningCli::spawn(name, cmd).finish().await
}

/// A distinct app id per test, so tests that share nothing still cannot collide.
pub fn test_appid(test: &str) -> String {
    format!("wormhole-rs.example/tests/{test}")
}

/// Our `wormhole-server` binary: `WORMHOLE_SERVER_BIN`, or `target/debug/wormhole-server`
/// of this workspace.
pub fn server_bin() -> PathBuf {
    let bin = match std::env::var_os("WORMHOLE_SERVER_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wormhole-server"),
    };
    if !bin.is_file() {
        panic!(
            "our wormhole-server is not at {}: build it (cargo build -p wormhole-server) or \
             run scripts/test.sh",
            bin.display()
        );
    }
    bin
}

/// Our server binary run as `wormhole-server all` (mailbox + relay) on 127.0.0.1, with a
/// file or in-memory channel database. Killed (SIGKILL) on drop.
pub struct OurServer {
    mailbox_addr: String,
    relay_addr: String,
    db: String,
    child: Option<Child>,
    stderr: Option<JoinHandle<String>>,
    /// `RUST_LOG` for the server, if any.
    log: Option<String>,
    /// More command-line options.
    extra: Vec<String>,
    /// Lines of stderr not yet read by [`OurServer::wait_for_log`].
    lines: Option<mpsc::UnboundedReceiver<String>>,
}

impl OurServer {
    /// Start with an in-memory database on free ports.
    pub async fn start() -> OurServer {
        Self::start_on(":memory:", "127.0.0.1:0", "127.0.0.1:0").await
    }

    /// Start with an in-memory database on free ports, logging with `RUST_LOG=filter`
    /// (read it with [`OurServer::terminate`]).
    pub async fn start_logging(filter: &str) -> OurServer {
        let mut s = Self::unstarted(":memory:", "127.0.0.1:0", "127.0.0.1:0");
        s.log = Some(filter.to_owned());
        s.spawn().await;
        s
    }

    /// Start with an in-memory database, the mailbox on a free port and the relay on
    /// `relay` (`HOST:PORT`).
    pub async fn start_with_relay_on(relay: &str) -> OurServer {
        Self::start_on(":memory:", "127.0.0.1:0", relay).await
    }

    /// Start with the database file `db` on free ports.
    pub async fn start_with_db(db: &Path) -> OurServer {
        Self::start_on(&db.to_string_lossy(), "127.0.0.1:0", "127.0.0.1:0").await
    }

    /// Start with the database `db` (a file, or a `postgres://` URL) on free ports and
    /// extra mailbox options (kept across restarts).
    pub async fn start_with_db_and(db: &Path, extra: &[&str]) -> OurServer {
        let mut s = Self::unstarted(&db.to_string_lossy(), "127.0.0.1:0", "127.0.0.1:0");
        s.extra = extra.iter().map(|a| a.to_string()).collect();
        s.spawn().await;
        s
    }

    async fn start_on(db: &str, mailbox: &str, relay: &str) -> OurServer {
        let mut s = Self::unstarted(db, mailbox, relay);
        s.spawn().await;
        s
    }

    /// The server's settings, not started yet.
    fn unstarted(db: &str, mailbox: &str, relay: &str) -> OurServer {
        OurServer {
            mailbox_addr: mailbox.to_owned(),
            relay_addr: relay.to_owned(),
            db: db.to_owned(),
            child: None,
            stderr: None,
            log: None,
            extra: Vec::new(),
            lines: None,
        }
    }

    async fn spawn(&mut self) {
        let bin = server_bin();
        let mut cmd = Command::new(&bin);
        if let Some(filter) = &self.log {
            cmd.env("RUST_LOG", filter);
        }
        let mut child = cmd
            .args(["all", "--mailbox-listen", &self.mailbox_addr])
            .args(["--relay-listen", &self.relay_addr])
            .args(["--db", &self.db])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let err = child.stderr.take().expect("piped stderr");
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.stderr = Some(tokio::spawn(async move {
            let mut all = String::new();
            let mut lines = BufReader::new(err).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                let line = String::from_utf8_lossy(&line).into_owned();
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        }));
        self.child = Some(child);
        let (mut mailbox, mut relay) = (None, None);
        let deadline = tokio::time::Instant::now() + SERVER_START_TIMEOUT;
        while mailbox.is_none() || relay.is_none() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.split("mailbox ready: ws://").nth(1) {
                        mailbox = rest.split("/v1").next().map(str::to_owned);
                    }
                    if let Some(rest) = line.split("relay ready: tcp:").nth(1) {
                        relay = rest.split_whitespace().next().map(str::to_owned);
                    }
                }
                Ok(None) => panic!(
                    "wormhole-server exited before it was ready:\n{}",
                    self.stderr_so_far().await
                ),
                Err(_) => panic!("wormhole-server not ready within {SERVER_START_TIMEOUT:?}"),
            }
        }
        self.mailbox_addr = mailbox.unwrap_or_default();
        self.relay_addr = relay.unwrap_or_default();
        self.lines = Some(rx);
    }

    /// Waits (at most [`TIMEOUT`]) for a line of the server's stderr, written since it
    /// started or since the last line this returned, that satisfies `pred`; returns it.
    pub async fn wait_for_log(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let rx = self.lines.as_mut().expect("the server is running");
        within(TIMEOUT, what, async {
            loop {
                match rx.recv().await {
                    Some(line) if pred(&line) => return line,
                    Some(_) => {}
                    None => panic!("the server exited while waiting for {what}"),
                }
            }
        })
        .await
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process still runs (has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The mailbox's port.
    pub fn mailbox_port(&self) -> u16 {
        self.mailbox_addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the mailbox address has a port")
    }

    async fn stderr_so_far(&mut self) -> String {
        match self.stderr.take() {
            Some(h) => within(TIMEOUT, "the server's stderr", h)
                .await
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// The mailbox URL, `ws://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.mailbox_addr)
    }

    /// The relay as a transit hint for the reference CLI: `tcp:127.0.0.1:PORT`.
    pub fn relay_hint(&self) -> String {
        format!("tcp:{}", self.relay_addr)
    }

    /// Kill the server with SIGKILL (no clean shutdown) and wait until it is gone.
    pub async fn kill9(&mut self) {
        let mut c = self.child.take().expect("the server is running");
        within(TIMEOUT, "wormhole-server to die", c.kill())
            .await
            .expect("kill wormhole-server");
    }

    /// Start the server again on the same ports and database.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the server before restarting it");
        self.spawn().await;
    }

    /// Stop it with SIGTERM and return its exit status and stderr.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let mut c = self.child.take().expect("the server is running");
        let pid = c.id().expect("pid") as i32;
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(kill.success());
        let status = within(TIMEOUT, "wormhole-server to exit on SIGTERM", c.wait())
            .await
            .expect("wait");
        (status, self.stderr_so_far().await)
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// The Rust CLI `wormhole-rs` 0.8.1 (crates.io `magic-wormhole-cli`): `WORMHOLE_RS_BIN`, or
/// `.tools/wormhole-rs/bin/wormhole-rs` where `scripts/setup-peers.sh` installs it.
pub fn wormhole_rs_bin() -> PathBuf {
    let bin = match std::env::var_os("WORMHOLE_RS_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/wormhole-rs/bin/wormhole-rs"),
    };
    if !bin.is_file() {
        panic!(
            "wormhole-rs is not at {}: run scripts/setup-peers.sh (or scripts/test.sh)",
            bin.display()
        );
    }
    bin
}

/// The reference transit relay (magic-wormhole-transit-relay 0.5.0), run as
/// `<venv>/bin/twist transitrelay --port=tcp:PORT:interface=127.0.0.1`. Killed on drop.
pub struct RefRelay {
    port: u16,
    _child: Child,
}

impl RefRelay {
    /// Start it on 127.0.0.1:`port` (a free port when `None`) and wait until it accepts
    /// connections.
    pub async fn start_on(port: Option<u16>) -> RefRelay {
        for _ in 0..5 {
            let port = port.unwrap_or_else(free_port);
            let mut child = Command::new(ref_venv().join("bin/twist"))
                .arg("transitrelay")
                .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("run twist transitrelay");
            if wait_for_port(port, &mut child).await {
                return RefRelay {
                    port,
                    _child: child,
                };
            }
            let _ = child.kill().await;
        }
        panic!("could not start the reference transit relay");
    }

    /// The relay as a transit hint: `tcp:127.0.0.1:PORT`.
    pub fn hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// Send `signal` (e.g. `"STOP"`, `"CONT"`) to the relay process.
    pub async fn signal(&self, signal: &str) {
        kill(self._child.id().expect("the relay is running"), signal).await;
    }
}

impl RunningCli {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Send `signal` (e.g. `"INT"`, `"KILL"`) to the process.
    pub async fn signal(&self, signal: &str) {
        kill(self.pid().expect("the CLI is running"), signal).await;
    }
}

/// `kill -SIGNAL PID`, which must succeed.
async fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The Go CLI `wormhole-william` v1.0.8, if installed: `WORMHOLE_WILLIAM_BIN`, or
/// `.tools/wormhole-william/bin/wormhole-william` where `scripts/setup-peers.sh` puts it.
pub fn wormhole_william_bin() -> Option<PathBuf> {
    let bin = match std::env::var_os("WORMHOLE_WILLIAM_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.tools/wormhole-william/bin/wormhole-william"),
    };
    bin.is_file().then_some(bin)
}

/// Wait (at most [`SERVER_START_TIMEOUT`]) until something accepts connections on
/// 127.0.0.1:`port`; `false` if `child` exits first or the time runs out.
pub async fn wait_for_port(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `wrapper` (a command with its own arguments) running `cmd`: the same program,
/// arguments, environment and directory, appended to the wrapper's arguments.
pub fn wrapped(mut wrapper: Command, cmd: &Command) -> Command {
    let std = cmd.as_std();
    wrapper.arg(std.get_program()).args(std.get_args());
    for (k, v) in std.get_envs() {
        match v {
            Some(v) => wrapper.env(k, v),
            None => wrapper.env_remove(k),
        };
    }
    if let Some(d) = std.get_current_dir() {
        wrapper.current_dir(d);
    }
    wrapper
}

/// `unshare -m -- sh -c 'mount --bind HOSTS /etc/hosts && exec "$@"' HOSTS`: add the
/// program to run (and its arguments); it sees `hosts` as its `/etc/hosts`.
pub fn with_etc_hosts(hosts: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "--",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/hosts && exec "$@""#,
    ])
    .arg(hosts);
    c
}

/// `cmd` run under `strace -f -e trace=connect`, its log written to `log`. Read the log
/// with [`inet_connects`].
pub fn under_strace(cmd: &Command, log: &Path) -> Command {
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(log);
    wrapped(strace, cmd)
}

/// Every IPv4 or IPv6 `connect()` in a [`under_strace`] log, as `(address, port)`
/// (DNS lookups included: they connect UDP sockets to port 53).
pub fn inet_connects(log: &Path) -> Vec<(String, u16)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.contains("connect(")) {
        if !(line.contains("AF_INET") || line.contains("AF_INET6")) {
            continue;
        }
        let port = line
            .split("htons(")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let addr = ["inet_addr(\"", "inet_pton(AF_INET6, \""]
            .iter()
            .find_map(|k| line.split(k).nth(1))
            .and_then(|r| r.split('"').next())
            .unwrap_or("?")
            .to_owned();
        out.push((addr, port));
    }
    out
}
