//! A bounded soak test of the mailbox server; not part of `cargo test`. Run it with
//! `scripts/soak.sh [--minutes N]`, which builds it and runs it in a loopback-only network
//! namespace.
//!
//! For the given time it runs, against one server with a file database:
//! - honest sessions: pairs of raw WebSocket clients speaking the mailbox protocol (bind,
//!   allocate/claim, open, add, release, close) that exchange messages, drop their
//!   connection at random moments, reconnect and resume like the reference client (re-`open`,
//!   re-`add` every message whose echo they have not seen, peers de-duplicate by phase);
//! - abandoned connections (bind, allocate or claim, maybe open and add, then vanish, with a
//!   FIN or a RST, sometimes mid-request or mid-frame);
//! - half-open WebSocket handshakes (nothing, a partial upgrade request, or one byte every
//!   two seconds), held up to 50 s;
//! - oversized frames and messages (one large message, a header announcing 8 GiB,
//!   fragments adding up to too much);
//! - `kill -9` of the server every 20–30 s, restarted on the same port and database.
//!
//! Then, once the load has stopped and expiry + pruning have had time to run, it checks:
//! - no message that the server acknowledged (ack or echo) was lost: every one reached the
//!   peer, byte for byte;
//! - the server's file descriptors are back to the count measured after the warm-up, and
//!   its RSS grew by less than a generous factor;
//! - the database holds no nameplate, mailbox or message: nothing stays claimed beyond its
//!   expiry (also checked every 10 s during the run);
//! - every session completed, half-open handshakes were closed by the server after its 30 s
//!   handshake limit, oversized frames were refused with a closed connection, no panic
//!   appeared in the server's log.
//!
//! The server is `$WORMHOLE_SERVER_BIN` (default `target/debug/wormhole-server`), started
//! with a short `--channel-expiry` and `--prune-interval`.
//!
//! Exit status 0 when every property holds, 1 otherwise, 2 on a usage error.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wormhole_tests::{TempDir, assert_loopback_only};

/// App id of the honest sessions.
const HONEST_APP: &str = "soak.example/honest";
/// App id of the abandoned connections (their random claims must not collide with sessions).
const ABANDON_APP: &str = "soak.example/abandoned";
/// The server's `--max-message-bytes` during the soak (honest messages stay far below).
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// The server's handshake limit (`HANDSHAKE_TIMEOUT` in wormhole-server's `conn.rs`).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);
/// A half-open connection still open this long after the handshake limit is a violation.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(10);
/// The longest an honest session may take, reconnections and restarts included.
const SESSION_LIMIT: Duration = Duration::from_secs(90);
/// An honest connection that hears nothing (not even a `pong`) this long is a stall.
const STALL: Duration = Duration::from_secs(15);
/// No kill this close to the end of the load, so the last server runs under load a while.
const NO_KILL_BEFORE_END: Duration = Duration::from_secs(15);
/// How many violations are kept (and printed) in detail.
const MAX_DETAILS: usize = 40;

const USAGE: &str = "\
usage: soak [--minutes N | --secs N] [--warmup SECS] [--pairs N] [--kill-every MIN-MAX]
            [--expiry SECS] [--prune SECS] [--seed N] [--rss-factor F] [--fd-slack N]
Defaults: --minutes 2 --warmup 10 --pairs 6 --kill-every 20-30 --expiry 30 --prune 5
          --rss-factor 2.5 --fd-slack 2, a seed from the clock.
The server binary is $WORMHOLE_SERVER_BIN, else target/debug/wormhole-server.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(soak(opts))
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    load: Duration,
    warmup: Duration,
    pairs: usize,
    kill_every: (u64, u64),
    expiry: u64,
    prune: u64,
    seed: u64,
    rss_factor: f64,
    fd_slack: usize,
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: not a valid number: {v:?}"))
}

impl Opts {
    /// `Ok(None)` for `--help`.
    fn parse(args: &[String]) -> Result<Option<Opts>, String> {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut o = Opts {
            load: Duration::from_secs(120),
            warmup: Duration::from_secs(10),
            pairs: 6,
            kill_every: (20, 30),
            expiry: 30,
            prune: 5,
            seed: clock ^ u64::from(std::process::id()),
            rss_factor: 2.5,
            fd_slack: 2,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag {
                "--minutes" => {
                    let m: f64 = num(flag, &value()?)?;
                    if !(m > 0.0 && m < 10_000.0) {
                        return Err(format!("--minutes {m}: out of range"));
                    }
                    o.load = Duration::from_secs_f64(m * 60.0);
                }
                "--secs" => o.load = Duration::from_secs(num(flag, &value()?)?),
                "--warmup" => o.warmup = Duration::from_secs(num(flag, &value()?)?),
                "--pairs" => o.pairs = num(flag, &value()?)?,
                "--kill-every" => {
                    let v = value()?;
                    let (a, b) = v.split_once('-').unwrap_or((&v, &v));
                    o.kill_every = (num(flag, a)?, num(flag, b)?);
                    if o.kill_every.0 == 0 || o.kill_every.0 > o.kill_every.1 {
                        return Err(format!("--kill-every {v}: want MIN-MAX seconds, MIN > 0"));
                    }
                }
                "--expiry" => o.expiry = num(flag, &value()?)?,
                "--prune" => o.prune = num(flag, &value()?)?,
                "--seed" => o.seed = num(flag, &value()?)?,
                "--rss-factor" => o.rss_factor = num(flag, &value()?)?,
                "--fd-slack" => o.fd_slack = num(flag, &value()?)?,
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        if o.expiry == 0 || o.prune == 0 {
            return Err("--expiry and --prune must be at least 1 second".into());
        }
        Ok(Some(o))
    }
}

// ---------------------------------------------------------------------------------------
// Randomness (deterministic per seed: SplitMix64)

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.next() as u8))
            .collect()
    }

    /// An independent generator for a sub-task.
    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

// ---------------------------------------------------------------------------------------
// Shared state, figures and violations

#[derive(Default)]
struct Stats {
    sessions_started: AtomicU64,
    sessions_completed: AtomicU64,
    sessions_failed: AtomicU64,
    msgs_planned: AtomicU64,
    msgs_acked: AtomicU64,
    msgs_echoed: AtomicU64,
    msgs_delivered: AtomicU64,
    msgs_lost: AtomicU64,
    msgs_corrupt: AtomicU64,
    msgs_dup: AtomicU64,
    adds_sent: AtomicU64,
    honest_connects: AtomicU64,
    random_drops: AtomicU64,
    stalls: AtomicU64,
    connect_failures: AtomicU64,
    abandoned: AtomicU64,
    abandoned_adds: AtomicU64,
    half_open: AtomicU64,
    half_open_closed_by_server: AtomicU64,
    /// Closed by the server once its handshake limit had passed.
    half_open_timed_out: AtomicU64,
    half_open_dropped_by_us: AtomicU64,
    half_open_latest_close_ms: AtomicU64,
    half_open_overdue: AtomicU64,
    oversized: AtomicU64,
    oversized_refused: AtomicU64,
    oversized_closed_silently: AtomicU64,
    oversized_not_closed: AtomicU64,
    kills: AtomicU64,
    slowest_restart_ms: AtomicU64,
    db_checks: AtomicU64,
    db_stuck: AtomicU64,
    peak_fds: AtomicU64,
    peak_rss_kib: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

struct Ctx {
    opts: Opts,
    url: String,
    port: u16,
    db: PathBuf,
    stats: Stats,
    violations: Mutex<Vec<String>>,
    violation_count: AtomicU64,
    /// The running server's pid (0 while it is down).
    pid: AtomicU32,
    /// A restart failed: stop everything.
    fatal: AtomicBool,
    t0: Instant,
}

impl Ctx {
    fn violation(&self, what: String) {
        let n = self.violation_count.fetch_add(1, Relaxed);
        if (n as usize) < MAX_DETAILS {
            eprintln!("[{:>5}s] soak: VIOLATION: {what}", self.elapsed());
            if let Ok(mut v) = self.violations.lock() {
                v.push(what);
            }
        }
    }

    fn elapsed(&self) -> u64 {
        self.t0.elapsed().as_secs()
    }

    /// Seconds after which an untouched mailbox must be gone: expiry, one prune interval,
    /// and room for a restart (the new process prunes one interval after it starts).
    fn stuck_after(&self) -> f64 {
        (self.opts.expiry + self.opts.prune + 10) as f64
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// The server process

struct Server {
    bin: PathBuf,
    listen: String,
    db: PathBuf,
    logs: PathBuf,
    expiry: u64,
    prune: u64,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["mailbox", "--listen", &self.listen])
            .arg("--db")
            .arg(&self.db)
            .args(["--max-message-bytes", &MAX_MESSAGE_BYTES.to_string()])
            .args(["--channel-expiry", &self.expiry.to_string()])
            .args(["--prune-interval", &self.prune.to_string()]);
        cmd
    }

    /// Start it (on the same port after the first start) and wait for its ready line.
    /// Returns the port and the pid.
    async fn start(&mut self) -> Result<(u16, u32), String> {
        let mut last = String::new();
        for _ in 0..40 {
            self.starts += 1;
            let log_path = self.logs.join(format!("server-{:03}.log", self.starts));
            let mut child = self
                .command()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run the server: {e}"))?;
            let pid = child.id().unwrap_or(0);
            let err = child.stderr.take().ok_or("no stderr pipe")?;
            let (tx, rx) = oneshot::channel::<String>();
            let log_for_task = log_path.clone();
            tokio::spawn(async move {
                let mut file = std::fs::File::create(&log_for_task).ok();
                let mut tx = Some(tx);
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(f) = file.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    if line.contains("mailbox ready: ws://") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(line);
                        }
                    }
                }
            });
            match timeout(Duration::from_secs(30), rx).await {
                Ok(Ok(line)) => {
                    let port = line
                        .split("ws://")
                        .nth(1)
                        .and_then(|r| r.split("/v1").next())
                        .and_then(|hp| hp.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or_else(|| format!("no port in the ready line {line:?}"))?;
                    self.listen = format!("127.0.0.1:{port}");
                    self.child = Some(child);
                    return Ok((port, pid));
                }
                Ok(Err(_)) => {
                    // stderr closed before the ready line: it exited.
                    let status = timeout(Duration::from_secs(10), child.wait()).await;
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last = format!("the server exited ({status:?}) before it was ready:\n{log}");
                    if log.contains("in use") {
                        // The old socket is not quite gone yet: try again.
                        sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    return Err(last);
                }
                Err(_) => {
                    let _ = child.kill().await;
                    return Err("the server was not ready within 30 s".into());
                }
            }
        }
        Err(last)
    }

    /// SIGKILL, and wait until it is gone.
    async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = timeout(Duration::from_secs(30), c.kill()).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// /proc measurements

#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    rss_kib: u64,
}

fn usage(pid: u32) -> Option<Usage> {
    if pid == 0 {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(Usage { fds, rss_kib })
}

/// What each open descriptor points to, for the report when the count grew.
fn fd_targets(pid: u32) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_else(|_| "?".into());
                    format!("{} -> {target}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Wait until the server's descriptor count has not changed for 3 s (at most 40 s), so
/// that connections being closed are gone; then measure.
async fn quiet_usage(ctx: &Ctx) -> Option<Usage> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last: Option<usize> = None;
    let mut stable_since = Instant::now();
    loop {
        let u = usage(ctx.pid.load(Relaxed));
        let fds = u.map(|u| u.fds);
        if fds != last {
            last = fds;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_secs(3) || Instant::now() > deadline {
            return u;
        }
        sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The database

async fn sqlite(db: &Path, sql: &str) -> Result<String, String> {
    let out = timeout(
        Duration::from_secs(30),
        Command::new("sqlite3")
            .args(["-batch", "-noheader", "-cmd", ".timeout 10000"])
            .arg(db)
            .arg(sql)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "sqlite3 hung for 30 s".to_owned())?
    .map_err(|e| format!("cannot run sqlite3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sqlite3 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[derive(Debug, Default, Clone, Copy)]
struct DbCounts {
    mailboxes: u64,
    /// Mailboxes untouched for longer than the caller's limit.
    stale: u64,
    nameplates: u64,
    /// Nameplates whose mailbox is gone (never pruned).
    orphan_nameplates: u64,
    nameplate_sides: u64,
    mailbox_sides: u64,
    messages: u64,
    /// Messages whose mailbox is gone (never pruned).
    orphan_messages: u64,
    oldest_age: f64,
}

impl DbCounts {
    fn empty(&self) -> bool {
        self.mailboxes == 0
            && self.nameplates == 0
            && self.nameplate_sides == 0
            && self.mailbox_sides == 0
            && self.messages == 0
    }
}

impl std::fmt::Display for DbCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} mailboxes (oldest untouched {:.0} s, stale {}), {} nameplates (orphaned {}), \
             {} nameplate sides, {} mailbox sides, {} messages (orphaned {})",
            self.mailboxes,
            self.oldest_age,
            self.stale,
            self.nameplates,
            self.orphan_nameplates,
            self.nameplate_sides,
            self.mailbox_sides,
            self.messages,
            self.orphan_messages
        )
    }
}

async fn db_counts(db: &Path, stale_after: f64) -> Result<DbCounts, String> {
    let now = unix_now();
    let cut = now - stale_after;
    let sql = format!(
        "SELECT (SELECT count(*) FROM mailboxes),
                (SELECT count(*) FROM mailboxes WHERE updated < {cut}),
                (SELECT count(*) FROM nameplates),
                (SELECT count(*) FROM nameplates n WHERE NOT EXISTS
                    (SELECT 1 FROM mailboxes m WHERE m.app_id = n.app_id AND m.id = n.mailbox_id)),
                (SELECT count(*) FROM nameplate_sides),
                (SELECT count(*) FROM mailbox_sides),
                (SELECT count(*) FROM messages),
                (SELECT count(*) FROM messages x WHERE NOT EXISTS
                    (SELECT 1 FROM mailboxes m WHERE m.app_id = x.app_id AND m.id = x.mailbox_id)),
                (SELECT coalesce({now} - min(updated), 0) FROM mailboxes);"
    );
    let out = sqlite(db, &sql).await?;
    let f: Vec<&str> = out.split('|').collect();
    if f.len() != 9 {
        return Err(format!("unexpected sqlite3 output {out:?}"));
    }
    let n = |i: usize| f[i].trim().parse::<u64>().unwrap_or(u64::MAX);
    Ok(DbCounts {
        mailboxes: n(0),
        stale: n(1),
        nameplates: n(2),
        orphan_nameplates: n(3),
        nameplate_sides: n(4),
        mailbox_sides: n(5),
        messages: n(6),
        orphan_messages: n(7),
        oldest_age: f[8].trim().parse().unwrap_or(f64::NAN),
    })
}

/// Up to 10 rows of what is left, for the report.
async fn db_leftovers(db: &Path) -> String {
    let now = unix_now();
    let sql = format!(
        "SELECT 'mailbox', app_id, id, printf('%.0f s untouched', {now} - updated), messages FROM mailboxes
         UNION ALL SELECT 'nameplate', app_id, name, mailbox_id, '' FROM nameplates
         UNION ALL SELECT 'mailbox side', app_id, mailbox_id, side, opened FROM mailbox_sides
         LIMIT 10;"
    );
    sqlite(db, &sql).await.unwrap_or_else(|e| e)
}

/// Periodic check during the run: nothing may outlive expiry + prune (+ a restart).
async fn db_check(ctx: &Ctx) -> Option<DbCounts> {
    match db_counts(&ctx.db, ctx.stuck_after()).await {
        Ok(c) => {
            inc(&ctx.stats.db_checks);
            if c.stale > 0 || c.orphan_nameplates > 0 || c.orphan_messages > 0 {
                inc(&ctx.stats.db_stuck);
                ctx.violation(format!(
                    "database holds channels beyond their expiry ({} s): {c}; e.g.\n{}",
                    ctx.stuck_after(),
                    db_leftovers(&ctx.db).await
                ));
            }
            Some(c)
        }
        Err(e) => {
            eprintln!("[{:>5}s] soak: database check failed: {e}", ctx.elapsed());
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket helpers

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(ctx: &Ctx) -> Option<Ws> {
    match timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(ctx.url.as_str()),
    )
    .await
    {
        Ok(Ok((ws, _))) => Some(ws),
        _ => {
            inc(&ctx.stats.connect_failures);
            None
        }
    }
}

async fn send(ws: &mut Ws, v: Value) -> bool {
    matches!(
        timeout(
            Duration::from_secs(5),
            ws.send(Message::text(v.to_string()))
        )
        .await,
        Ok(Ok(()))
    )
}

/// Make the coming drop of the connection a RST instead of a FIN.
fn reset_on_drop(ws: &Ws) {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_zero_linger();
    }
}

/// The next frame of type `ty` within `limit` (others skipped).
async fn wait_for(ws: &mut Ws, ty: &str, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                    if v["type"] == ty {
                        return Some(v);
                    }
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

/// A WebSocket handshake by hand, for frames tungstenite would not send.
async fn raw_ws(port: u16) -> Option<TcpStream> {
    let mut s = timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let req = format!(
        "GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 || head.len() > 16 << 10 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(s)
}

/// A client frame header (masked, with a zero key, so the payload goes as is).
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xffff {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// Read until the peer closes (`true`) or `limit` passes (`false`); returns what was read.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
            Ok(Ok(n)) => {
                if all.len() < 64 << 10 {
                    all.extend_from_slice(&buf[..n]);
                }
            }
            Err(_) => return (all, false),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Honest sessions

/// What both sides of one session will say.
struct Plan {
    label: String,
    sides: [String; 2],
    bodies: [Vec<String>; 2],
}

/// One side's progress, kept across its connections.
struct SideState {
    me: usize,
    nameplate: Option<String>,
    mailbox: Option<String>,
    claimed: bool,
    release_wanted: bool,
    released: bool,
    closed: bool,
    /// Per own message: some `add` of it was acked / its echo was seen.
    acked: Vec<bool>,
    echoed: Vec<bool>,
    /// Per peer message: delivered to us.
    received: Vec<bool>,
    adds_sent: u64,
    error: Option<String>,
}

impl SideState {
    /// Everything exchanged and the nameplate released: only `close` is left.
    fn exchanged(&self) -> bool {
        self.claimed
            && self.released
            && self.echoed.iter().all(|&e| e)
            && self.received.iter().all(|&r| r)
    }

    fn describe(&self) -> String {
        format!(
            "side {}: nameplate {:?}, mailbox {:?}, claimed {}, released {}, closed {}, \
             echoed {}/{}, received {}/{}",
            self.me,
            self.nameplate,
            self.mailbox,
            self.claimed,
            self.released,
            self.closed,
            self.echoed.iter().filter(|&&e| e).count(),
            self.echoed.len(),
            self.received.iter().filter(|&&r| r).count(),
            self.received.len()
        )
    }
}

enum End {
    /// `closed` received.
    Done,
    /// The connection ended (dropped by us, the server, a kill): reconnect.
    Lost,
    /// The server answered with an error or nonsense.
    Failed(String),
}

async fn pair_loop(ctx: Arc<Ctx>, pair: usize, mut rng: Rng, stop: watch::Receiver<bool>) {
    let mut n = 0u64;
    while !*stop.borrow() && !ctx.fatal.load(Relaxed) {
        run_session(&ctx, format!("pair{pair}/s{n}"), &mut rng).await;
        n += 1;
        sleep(rng.millis(0, 200)).await;
    }
}

async fn run_session(ctx: &Arc<Ctx>, label: String, rng: &mut Rng) {
    inc(&ctx.stats.sessions_started);
    let gen_bodies = |rng: &mut Rng| -> Vec<String> {
        let k = rng.range(1, 12) as usize;
        (0..k)
            .map(|_| {
                let len = rng.range(8, 2000) as usize;
                rng.hex(len)
            })
            .collect()
    };
    let bodies = [gen_bodies(rng), gen_bodies(rng)];
    let plan = Arc::new(Plan {
        label,
        sides: [rng.hex(5), rng.hex(5)],
        bodies,
    });
    let (np_tx, np_rx) = watch::channel(None::<String>);
    let a = tokio::spawn(side_task(
        ctx.clone(),
        plan.clone(),
        0,
        rng.fork(),
        Some(np_tx),
        None,
    ));
    let b = tokio::spawn(side_task(
        ctx.clone(),
        plan.clone(),
        1,
        rng.fork(),
        None,
        Some(np_rx),
    ));
    let (a, b) = (a.await, b.await);
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            ctx.violation(format!(
                "session {}: a side task panicked: {:?} {:?}",
                plan.label,
                a.err(),
                b.err()
            ));
            inc(&ctx.stats.sessions_failed);
            return;
        }
    };
    let s = &ctx.stats;
    let states = [&a, &b];
    for x in 0..2 {
        let (me, peer) = (states[x], states[1 - x]);
        for i in 0..plan.bodies[x].len() {
            inc(&s.msgs_planned);
            if me.acked[i] {
                inc(&s.msgs_acked);
            }
            if me.echoed[i] {
                inc(&s.msgs_echoed);
            }
            if peer.received[i] {
                inc(&s.msgs_delivered);
            } else if me.acked[i] || me.echoed[i] {
                inc(&s.msgs_lost);
                ctx.violation(format!(
                    "session {}: message p{i} of side {x} was {} by the server but never \
                     reached the peer",
                    plan.label,
                    if me.echoed[i] { "echoed" } else { "acked" }
                ));
            }
        }
    }
    if a.closed && b.closed && a.error.is_none() && b.error.is_none() {
        inc(&s.sessions_completed);
    } else {
        inc(&s.sessions_failed);
        ctx.violation(format!(
            "session {} did not complete: A {:?} ({}); B {:?} ({})",
            plan.label,
            a.error,
            a.describe(),
            b.error,
            b.describe()
        ));
    }
}

async fn side_task(
    ctx: Arc<Ctx>,
    plan: Arc<Plan>,
    me: usize,
    mut rng: Rng,
    np_tx: Option<watch::Sender<Option<String>>>,
    np_rx: Option<watch::Receiver<Option<String>>>,
) -> SideState {
    let deadline = Instant::now() + SESSION_LIMIT;
    let mut st = SideState {
        me,
        nameplate: None,
        mailbox: None,
        claimed: false,
        release_wanted: false,
        released: false,
        closed: false,
        acked: vec![false; plan.bodies[me].len()],
        echoed: vec![false; plan.bodies[me].len()],
        received: vec![false; plan.bodies[1 - me].len()],
        adds_sent: 0,
        error: None,
    };
    if let Some(mut rx) = np_rx {
        match tokio::time::timeout_at(deadline, rx.wait_for(|v| v.is_some())).await {
            Ok(Ok(v)) => st.nameplate = v.clone(),
            _ => {
                st.error = Some("never got the nameplate from side A".into());
                return st;
            }
        }
    }
    let mut backoff = Duration::from_millis(50);
    while !st.closed {
        if Instant::now() >= deadline {
            st.error = Some(format!("not finished after {SESSION_LIMIT:?}"));
            break;
        }
        let Some(ws) = connect(&ctx).await else {
            sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(50);
        inc(&ctx.stats.honest_connects);
        match side_connection(&ctx, &plan, &mut st, &mut rng, ws, np_tx.as_ref(), deadline).await {
            End::Done => break,
            End::Lost => continue,
            End::Failed(e) => {
                st.error = Some(e);
                break;
            }
        }
    }
    add(&ctx.stats.adds_sent, st.adds_sent);
    st
}

/// One connection of an honest side: (re)establish what the server should know, then
/// exchange until `closed`, a lost connection, or a random drop.
async fn side_connection(
    ctx: &Ctx,
    plan: &Plan,
    st: &mut SideState,
    rng: &mut Rng,
    mut ws: Ws,
    np_tx: Option<&watch::Sender<Option<String>>>,
    deadline: Instant,
) -> End {
    let me = st.me;
    let side = plan.sides[me].as_str();
    let peer = plan.sides[1 - me].as_str();
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    // About one connection in three is dropped at a random moment (a session takes a few
    // hundred milliseconds), half of them with a RST.
    let drop_at = rng.chance(0.3).then(|| Instant::now() + rng.millis(0, 250));
    if drop_at.is_some() && rng.chance(0.5) {
        reset_on_drop(&ws);
    }
    let unechoed = |st: &SideState| -> VecDeque<usize> {
        (0..st.echoed.len()).filter(|&i| !st.echoed[i]).collect()
    };
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut close_sent = false;

    let bind = json!({"type": "bind", "appid": HONEST_APP, "side": side,
                      "client_version": ["rust", "soak"], "id": "b"});
    if !send(&mut ws, bind).await {
        return End::Lost;
    }
    let first = if st.exchanged() {
        None // only `close` is outstanding: sent below
    } else if st.claimed {
        queue = unechoed(st);
        let mut frames = vec![json!({"type": "open", "mailbox": st.mailbox})];
        if st.release_wanted && !st.released {
            frames.push(json!({"type": "release", "nameplate": st.nameplate}));
        }
        Some(frames)
    } else if let Some(np) = &st.nameplate {
        Some(vec![json!({"type": "claim", "nameplate": np})])
    } else {
        Some(vec![json!({"type": "allocate"})])
    };
    for frame in first.into_iter().flatten() {
        if !send(&mut ws, frame).await {
            return End::Lost;
        }
    }
    let mut next_add = Instant::now() + rng.millis(0, 30);
    let mut next_ping = Instant::now() + Duration::from_secs(5);
    let mut pings = 0u64;
    let mut last_rx = Instant::now();
    loop {
        if !close_sent && st.exchanged() {
            let close = json!({"type": "close", "mailbox": st.mailbox, "mood": "happy"});
            if !send(&mut ws, close).await {
                return End::Lost;
            }
            close_sent = true;
        }
        let add_at = if queue.is_empty() { far } else { next_add };
        tokio::select! {
            m = ws.next() => {
                last_rx = Instant::now();
                let text = match m {
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Lost,
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    return End::Failed(format!("not JSON from the server: {text:.200}"));
                };
                match v["type"].as_str().unwrap_or("") {
                    "ack" => {
                        if let Some(&i) = v["id"].as_str().and_then(|id| ids.get(id)) {
                            st.acked[i] = true;
                        }
                    }
                    "allocated" => {
                        let Some(np) = v["nameplate"].as_str() else {
                            return End::Failed(format!("bad allocated: {text:.200}"));
                        };
                        st.nameplate = Some(np.to_owned());
                        if let Some(tx) = np_tx {
                            let _ = tx.send(Some(np.to_owned()));
                        }
                        if !send(&mut ws, json!({"type": "claim", "nameplate": np})).await {
                            return End::Lost;
                        }
                    }
                    "claimed" => {
                        let Some(mailbox) = v["mailbox"].as_str() else {
                            return End::Failed(format!("bad claimed: {text:.200}"));
                        };
                        if st.mailbox.as_deref().is_some_and(|m| m != mailbox) {
                            return End::Failed(format!(
                                "claimed a different mailbox on reconnection: {:?} then {mailbox}",
                                st.mailbox
                            ));
                        }
                        st.mailbox = Some(mailbox.to_owned());
                        st.claimed = true;
                        if !send(&mut ws, json!({"type": "open", "mailbox": mailbox})).await {
                            return End::Lost;
                        }
                        queue = unechoed(st);
                    }
                    "message" => {
                        let (Some(from), Some(phase), Some(body)) =
                            (v["side"].as_str(), v["phase"].as_str(), v["body"].as_str())
                        else {
                            return End::Failed(format!("bad message: {text:.200}"));
                        };
                        let idx = phase.strip_prefix('p').and_then(|n| n.parse::<usize>().ok());
                        if from == side {
                            let Some(i) = idx.filter(|&i| i < st.echoed.len()) else {
                                return End::Failed(format!("echo of a phase never sent: {phase}"));
                            };
                            st.echoed[i] = true;
                            queue.retain(|&q| q != i);
                        } else if from == peer {
                            let Some(i) = idx.filter(|&i| i < st.received.len()) else {
                                return End::Failed(format!("peer phase never sent: {phase}"));
                            };
                            if body != plan.bodies[1 - me][i] {
                                inc(&ctx.stats.msgs_corrupt);
                                ctx.violation(format!(
                                    "session {}: message {phase} arrived altered",
                                    plan.label
                                ));
                            }
                            if st.received[i] {
                                inc(&ctx.stats.msgs_dup);
                            }
                            st.received[i] = true;
                            if !st.release_wanted {
                                st.release_wanted = true;
                                let release = json!({"type": "release", "nameplate": st.nameplate});
                                if !send(&mut ws, release).await {
                                    return End::Lost;
                                }
                            }
                        } else {
                            ctx.violation(format!(
                                "session {}: a message from a foreign side {from:?}",
                                plan.label
                            ));
                        }
                    }
                    "released" => st.released = true,
                    "closed" => {
                        st.closed = true;
                        let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
                        return End::Done;
                    }
                    "error" => return End::Failed(format!("server error: {text:.300}")),
                    _ => {}
                }
            }
            () = sleep_until(add_at) => {
                if let Some(i) = queue.pop_front() {
                    let id = format!("{}/{me}/{}", plan.label, st.adds_sent);
                    st.adds_sent += 1;
                    ids.insert(id.clone(), i);
                    let add = json!({"type": "add", "phase": format!("p{i}"),
                                     "body": plan.bodies[me][i], "id": id});
                    if !send(&mut ws, add).await {
                        return End::Lost;
                    }
                    next_add = Instant::now() + rng.millis(0, 25);
                }
            }
            () = sleep_until(next_ping) => {
                pings += 1;
                if !send(&mut ws, json!({"type": "ping", "ping": pings})).await {
                    return End::Lost;
                }
                next_ping = Instant::now() + Duration::from_secs(5);
            }
            () = sleep_until(drop_at.unwrap_or(far)) => {
                inc(&ctx.stats.random_drops);
                return End::Lost;
            }
            () = sleep_until(last_rx + STALL) => {
                inc(&ctx.stats.stalls);
                eprintln!(
                    "[{:>5}s] soak: session {} side {me}: nothing from the server for {STALL:?}, reconnecting",
                    ctx.elapsed(),
                    plan.label
                );
                return End::Lost;
            }
            () = sleep_until(deadline) => return End::Lost,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Abandoned connections

async fn abandon_loop(ctx: Arc<Ctx>, mut rng: Rng, stop: watch::Receiver<bool>) {
    while !*stop.borrow() && !ctx.fatal.load(Relaxed) {
        abandon_one(&ctx, &mut rng).await;
        sleep(rng.millis(20, 150)).await;
    }
}

async fn abandon_one(ctx: &Ctx, rng: &mut Rng) {
    inc(&ctx.stats.abandoned);
    let variant = rng.below(6);
    let side = rng.hex(5);
    let nameplate = rng.range(1, 3000).to_string();
    let bind = json!({"type": "bind", "appid": ABANDON_APP, "side": side});
    if variant == 5 {
        // Bind, then half a frame, then gone.
        let Some(mut s) = raw_ws(ctx.port).await else {
            inc(&ctx.stats.connect_failures);
            return;
        };
        let text = bind.to_string();
        let mut bytes = frame_header(true, 1, text.len() as u64);
        bytes.extend_from_slice(text.as_bytes());
        let claim = json!({"type": "claim", "nameplate": nameplate}).to_string();
        bytes.extend_from_slice(&frame_header(true, 1, claim.len() as u64));
        bytes.extend_from_slice(&claim.as_bytes()[..claim.len() / 2]);
        let _ = s.write_all(&bytes).await;
        if rng.chance(0.5) {
            let _ = s.set_zero_linger();
        }
        return;
    }
    let Some(mut ws) = connect(ctx).await else {
        return;
    };
    if rng.chance(0.5) {
        reset_on_drop(&ws);
    }
    match variant {
        0 => {} // connect and vanish
        1 => {
            // Allocate, then vanish holding the nameplate.
            if send(&mut ws, bind).await && send(&mut ws, json!({"type": "allocate"})).await {
                wait_for(&mut ws, "allocated", Duration::from_secs(3)).await;
            }
        }
        2 => {
            // Claim, open, add a few, then vanish.
            if send(&mut ws, bind).await
                && send(&mut ws, json!({"type": "claim", "nameplate": nameplate})).await
            {
                if let Some(c) = wait_for(&mut ws, "claimed", Duration::from_secs(3)).await {
                    if send(&mut ws, json!({"type": "open", "mailbox": c["mailbox"]})).await {
                        for i in 0..rng.below(4) {
                            let len = rng.range(1, 500) as usize;
                            let body = rng.hex(len);
                            let add =
                                json!({"type": "add", "phase": format!("x{i}"), "body": body});
                            if !send(&mut ws, add).await {
                                break;
                            }
                            inc(&ctx.stats.abandoned_adds);
                        }
                        wait_for(&mut ws, "message", Duration::from_millis(300)).await;
                    }
                }
            }
        }
        3 => {
            // Claim and vanish without waiting for the answer.
            let _ = send(&mut ws, bind).await
                && send(&mut ws, json!({"type": "claim", "nameplate": nameplate})).await;
        }
        _ => {
            // Claim, read nothing for a while, then vanish.
            let _ = send(&mut ws, bind).await
                && send(&mut ws, json!({"type": "claim", "nameplate": nameplate})).await;
            sleep(rng.millis(50, 300)).await;
        }
    }
    drop(ws);
}

// ---------------------------------------------------------------------------------------
// Half-open handshakes

async fn half_open_loop(ctx: Arc<Ctx>, mut rng: Rng, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(24));
    let mut holders = JoinSet::new();
    while !*stop.borrow() && !ctx.fatal.load(Relaxed) {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        // Mostly short holds; about a third outlast the server's handshake limit.
        let hold = if rng.chance(0.35) {
            rng.millis(36_000, 50_000)
        } else {
            rng.millis(500, 10_000)
        };
        let variant = rng.below(3);
        let (ctx2, stop2) = (ctx.clone(), stop.clone());
        holders.spawn(async move {
            let _ = half_open_one(&ctx2, variant, hold, stop2).await;
            drop(permit);
        });
        while holders.try_join_next().is_some() {}
        sleep(rng.millis(50, 400)).await;
    }
    while holders.join_next().await.is_some() {}
}

/// Hold one half-open handshake for `hold` (or until `stop`); returns after how long the
/// server closed it, if it did.
async fn half_open_one(
    ctx: &Ctx,
    variant: u64,
    hold: Duration,
    mut stop: watch::Receiver<bool>,
) -> Option<Duration> {
    let Ok(Ok(mut s)) = timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", ctx.port)),
    )
    .await
    else {
        inc(&ctx.stats.connect_failures);
        return None;
    };
    inc(&ctx.stats.half_open);
    let t0 = Instant::now();
    // The start of an upgrade request that never ends.
    let partial = format!(
        "GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        ctx.port
    );
    let mut slow = b"X-Slow: ".iter().copied().chain(std::iter::repeat(b'a'));
    let mut first_line = true;
    if variant == 1 && s.write_all(partial.as_bytes()).await.is_err() {
        return None;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut buf = [0u8; 1024];
    let overdue = t0 + HANDSHAKE_LIMIT + HANDSHAKE_GRACE;
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    inc(&ctx.stats.half_open_closed_by_server);
                    if t0.elapsed() >= HANDSHAKE_LIMIT - Duration::from_secs(1) {
                        inc(&ctx.stats.half_open_timed_out);
                    }
                    ctx.stats
                        .half_open_latest_close_ms
                        .fetch_max(t0.elapsed().as_millis() as u64, Relaxed);
                    return Some(t0.elapsed());
                }
                Ok(_) => {} // e.g. an HTTP error: wait for the close
            },
            _ = tick.tick(), if variant == 2 => {
                // Slowloris: a first line, then one endless header, a byte every 2 s.
                let bytes: Vec<u8> = if first_line {
                    first_line = false;
                    b"GET /v1 HTTP/1.1\r\n".to_vec()
                } else {
                    vec![slow.next().unwrap_or(b'a')]
                };
                if s.write_all(&bytes).await.is_err() {
                    inc(&ctx.stats.half_open_closed_by_server);
                    return Some(t0.elapsed());
                }
            }
            () = sleep_until(t0 + hold) => break,
            () = sleep_until(overdue) => {
                inc(&ctx.stats.half_open_overdue);
                ctx.violation(format!(
                    "a half-open handshake (variant {variant}) is still open after {:?}: the \
                     server's {HANDSHAKE_LIMIT:?} handshake limit did not close it",
                    t0.elapsed()
                ));
                break;
            }
            _ = stop.changed() => break,
        }
    }
    inc(&ctx.stats.half_open_dropped_by_us);
    if variant == 0 {
        let _ = s.set_zero_linger();
    }
    None
}

/// After the load (no more kills): one half-open handshake of each kind, held until the
/// server's handshake limit must have closed it. Returns when all three are closed.
async fn handshake_probe(ctx: Arc<Ctx>) -> Vec<String> {
    let (_keep, stop) = watch::channel(false);
    let hold = HANDSHAKE_LIMIT + HANDSHAKE_GRACE + Duration::from_secs(2);
    let probes: Vec<_> = (0..3)
        .map(|variant| {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            tokio::spawn(async move { half_open_one(&ctx, variant, hold, stop).await })
        })
        .collect();
    let mut out = Vec::new();
    for (variant, p) in probes.into_iter().enumerate() {
        let what = ["silent", "partial request", "slowloris"][variant];
        out.push(match p.await {
            Ok(Some(t)) => format!(
                "{what}: closed by the server after {:.1} s",
                t.as_secs_f64()
            ),
            Ok(None) => format!("{what}: NOT closed by the server"),
            Err(e) => format!("{what}: probe failed: {e}"),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Oversized frames

async fn oversized_loop(ctx: Arc<Ctx>, mut rng: Rng, stop: watch::Receiver<bool>) {
    while !*stop.borrow() && !ctx.fatal.load(Relaxed) {
        oversized_one(&ctx, &mut rng).await;
        sleep(rng.millis(200, 1200)).await;
    }
}

async fn oversized_one(ctx: &Ctx, rng: &mut Rng) {
    let variant = rng.below(4);
    let max = MAX_MESSAGE_BYTES as u64;
    let limit = Duration::from_secs(15);
    let (refused, closed) = if variant == 0 {
        // One large text message through a normal client.
        let Some(mut ws) = connect(ctx).await else {
            return;
        };
        inc(&ctx.stats.oversized);
        let size = rng.range(max + 1, max * 2) as usize;
        let body = "a".repeat(size);
        let text = json!({"type": "add", "phase": "big", "body": body}).to_string();
        let _ = timeout(Duration::from_secs(5), ws.send(Message::text(text))).await;
        let deadline = Instant::now() + limit;
        let mut refused = false;
        let closed = loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    refused |= t.as_str().contains("message too large");
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break true,
                Ok(Some(Ok(_))) => {}
                Err(_) => break false,
            }
        };
        (refused, closed)
    } else {
        let Some(mut s) = raw_ws(ctx.port).await else {
            inc(&ctx.stats.connect_failures);
            return;
        };
        inc(&ctx.stats.oversized);
        let mut bytes = Vec::new();
        match variant {
            1 => {
                // A header announcing 8 GiB, and a little of it.
                bytes.extend(frame_header(true, 1, 1 << 33));
                bytes.extend(std::iter::repeat_n(b'a', 1000));
            }
            2 => {
                // Three fragments, each within the frame limit, together over it.
                let part = max / 2 + 1;
                for (fin, op) in [(false, 1), (false, 0), (true, 0)] {
                    bytes.extend(frame_header(fin, op, part));
                    bytes.extend(std::iter::repeat_n(b'a', part as usize));
                }
            }
            _ => {
                // One binary frame just over the limit.
                bytes.extend(frame_header(true, 2, max + 1));
                bytes.extend(std::iter::repeat_n(b'a', max as usize + 1));
            }
        }
        // The server may close before all of it is written: that is fine.
        let _ = timeout(Duration::from_secs(5), s.write_all(&bytes)).await;
        let (read, closed) = read_to_close(&mut s, limit).await;
        (contains(&read, b"message too large"), closed)
    };
    if !closed {
        inc(&ctx.stats.oversized_not_closed);
        ctx.violation(format!(
            "an oversized frame (variant {variant}) left the connection open for {limit:?}"
        ));
    } else if refused {
        inc(&ctx.stats.oversized_refused);
    } else {
        inc(&ctx.stats.oversized_closed_silently);
    }
}

// ---------------------------------------------------------------------------------------
// kill -9 and restart

async fn killer(
    ctx: Arc<Ctx>,
    server: Arc<tokio::sync::Mutex<Server>>,
    end: Instant,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
) {
    let (lo, hi) = ctx.opts.kill_every;
    loop {
        let wait = rng.millis(lo * 1000, hi * 1000);
        if Instant::now() + wait + NO_KILL_BEFORE_END > end {
            return;
        }
        tokio::select! {
            () = sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let mut s = server.lock().await;
        let t = Instant::now();
        s.kill9().await;
        ctx.pid.store(0, Relaxed);
        match s.start().await {
            Ok((port, pid)) if port == ctx.port => {
                ctx.pid.store(pid, Relaxed);
                let ms = t.elapsed().as_millis() as u64;
                inc(&ctx.stats.kills);
                ctx.stats.slowest_restart_ms.fetch_max(ms, Relaxed);
                println!(
                    "[{:>5}s] soak: kill -9 #{}; restarted as pid {pid} in {ms} ms",
                    ctx.elapsed(),
                    get(&ctx.stats.kills)
                );
            }
            Ok((port, _)) => {
                ctx.violation(format!(
                    "the server restarted on port {port}, not {}",
                    ctx.port
                ));
                ctx.fatal.store(true, Relaxed);
                return;
            }
            Err(e) => {
                ctx.violation(format!("the server did not restart after kill -9: {e}"));
                ctx.fatal.store(true, Relaxed);
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Monitoring

async fn monitor(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        n += 1;
        let u = usage(ctx.pid.load(Relaxed));
        if let Some(u) = u {
            ctx.stats.peak_fds.fetch_max(u.fds as u64, Relaxed);
            ctx.stats.peak_rss_kib.fetch_max(u.rss_kib, Relaxed);
        }
        if n % 10 == 0 {
            let db = db_check(&ctx).await;
            progress(&ctx, u, db);
        }
    }
}

fn progress(ctx: &Ctx, u: Option<Usage>, db: Option<DbCounts>) {
    let s = &ctx.stats;
    let server = match u {
        Some(u) => format!("fds {} rss {}", u.fds, mib(u.rss_kib)),
        None => "down".into(),
    };
    let db = match db {
        Some(c) => format!(
            "{} mailboxes ({} stale), {} nameplates, {} messages",
            c.mailboxes, c.stale, c.nameplates, c.messages
        ),
        None => "?".into(),
    };
    println!(
        "[{:>5}s] sessions {} done / {} failed; messages acked {} lost {}; abandoned {}; \
         half-open {}; oversized {}; kills {}; server {server}; db {db}; violations {}",
        ctx.elapsed(),
        get(&s.sessions_completed),
        get(&s.sessions_failed),
        get(&s.msgs_acked),
        get(&s.msgs_lost),
        get(&s.abandoned),
        get(&s.half_open),
        get(&s.oversized),
        get(&s.kills),
        get(&ctx.violation_count)
    );
}

// ---------------------------------------------------------------------------------------
// The run

/// Runs every workload for `len` (with kills when `kills`), then stops them and waits
/// until the sessions in flight have finished.
async fn run_load(
    ctx: &Arc<Ctx>,
    server: &Arc<tokio::sync::Mutex<Server>>,
    len: Duration,
    kills: bool,
    rng: &mut Rng,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for pair in 0..ctx.opts.pairs {
        tasks.spawn(pair_loop(ctx.clone(), pair, rng.fork(), stop_rx.clone()));
    }
    for _ in 0..3 {
        tasks.spawn(abandon_loop(ctx.clone(), rng.fork(), stop_rx.clone()));
    }
    tasks.spawn(half_open_loop(ctx.clone(), rng.fork(), stop_rx.clone()));
    tasks.spawn(oversized_loop(ctx.clone(), rng.fork(), stop_rx.clone()));
    let end = Instant::now() + len;
    let killer = kills.then(|| {
        tokio::spawn(killer(
            ctx.clone(),
            server.clone(),
            end,
            rng.fork(),
            stop_rx.clone(),
        ))
    });
    while Instant::now() < end && !ctx.fatal.load(Relaxed) {
        sleep(Duration::from_millis(250).min(end - Instant::now())).await;
    }
    let _ = stop_tx.send(true);
    if let Some(k) = killer {
        let _ = k.await;
    }
    let drained = timeout(SESSION_LIMIT + Duration::from_secs(30), async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                ctx.violation(format!("a workload task failed: {e}"));
            }
        }
    })
    .await;
    if drained.is_err() {
        ctx.violation("the workloads did not stop in time".into());
        tasks.abort_all();
    }
}

struct Measured {
    probe: Vec<String>,
    baseline: Option<Usage>,
    after_load: Option<Usage>,
    final_: Option<Usage>,
    final_db: Option<DbCounts>,
}

async fn soak(opts: Opts) -> ExitCode {
    assert_loopback_only();
    if std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!(
            "soak: the sqlite3 command is missing (apt-get install sqlite3; scripts/soak.sh does)"
        );
        return ExitCode::FAILURE;
    }
    let scratch = TempDir::new("soak");
    let db = scratch.path().join("mailbox.sqlite");
    let bin = match std::env::var_os("WORMHOLE_SERVER_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wormhole-server"),
    };
    let mut server = Server {
        bin: bin.clone(),
        listen: "127.0.0.1:0".into(),
        db: db.clone(),
        logs: scratch.path().to_owned(),
        expiry: opts.expiry,
        prune: opts.prune,
        child: None,
        starts: 0,
    };
    let (port, pid) = match server.start().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("soak: cannot start the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "soak: server {} on 127.0.0.1:{port} (pid {pid}), database {}; expiry {} s, \
         prune every {} s, max message {MAX_MESSAGE_BYTES} B; warm-up {:?}, load {:?}, \
         {} pairs, kill -9 every {}-{} s, seed {}",
        bin.display(),
        db.display(),
        opts.expiry,
        opts.prune,
        opts.warmup,
        opts.load,
        opts.pairs,
        opts.kill_every.0,
        opts.kill_every.1,
        opts.seed
    );
    let ctx = Arc::new(Ctx {
        url: format!("ws://127.0.0.1:{port}/v1"),
        port,
        db: db.clone(),
        stats: Stats::default(),
        violations: Mutex::new(Vec::new()),
        violation_count: AtomicU64::new(0),
        pid: AtomicU32::new(pid),
        fatal: AtomicBool::new(false),
        t0: Instant::now(),
        opts: opts.clone(),
    });
    let server = Arc::new(tokio::sync::Mutex::new(server));
    let mut rng = Rng::new(opts.seed);
    let (mon_stop, mon_rx) = watch::channel(false);
    let mon = tokio::spawn(monitor(ctx.clone(), mon_rx));

    // Warm-up (no kills), then the baseline once every connection is gone.
    run_load(&ctx, &server, opts.warmup, false, &mut rng).await;
    let baseline = quiet_usage(&ctx).await;
    match baseline {
        Some(u) => println!(
            "[{:>5}s] soak: baseline after warm-up: {} fds, RSS {}",
            ctx.elapsed(),
            u.fds,
            mib(u.rss_kib)
        ),
        None => ctx.violation("cannot measure the server after the warm-up".into()),
    }
    let baseline_fds = baseline.map(|_| fd_targets(ctx.pid.load(Relaxed)));

    // The soak proper.
    run_load(&ctx, &server, opts.load, true, &mut rng).await;
    let load_end = Instant::now();
    let after_load = quiet_usage(&ctx).await;
    if let Some(u) = after_load {
        println!(
            "[{:>5}s] soak: load stopped: {} fds, RSS {}",
            ctx.elapsed(),
            u.fds,
            mib(u.rss_kib)
        );
    }

    // Let every channel expire and be pruned; meanwhile, with no kill to interrupt them,
    // half-open handshakes must meet the server's handshake limit.
    let settle = Duration::from_secs(opts.expiry + 2 * opts.prune + 5);
    println!(
        "[{:>5}s] soak: waiting {settle:?} for expiry ({} s) and pruning (every {} s); \
         probing the handshake limit with 3 half-open connections",
        ctx.elapsed(),
        opts.expiry,
        opts.prune
    );
    let probe = handshake_probe(ctx.clone()).await;
    println!(
        "[{:>5}s] soak: handshake probe: {}",
        ctx.elapsed(),
        probe.join("; ")
    );
    sleep_until(load_end + settle).await;
    // The probes' sockets must be gone too before the final measurement.
    let _ = quiet_usage(&ctx).await;
    let _ = mon_stop.send(true);
    let _ = mon.await;
    let final_ = usage(ctx.pid.load(Relaxed));
    let final_db = match db_counts(&db, ctx.stuck_after()).await {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.violation(format!("cannot read the database at the end: {e}"));
            None
        }
    };
    let m = Measured {
        probe,
        baseline,
        after_load,
        final_,
        final_db,
    };
    verdict(&ctx, &m, baseline_fds, &db).await;

    // Server log: no panic.
    let mut panics = 0;
    let mut warnings = Vec::new();
    if let Ok(dir) = std::fs::read_dir(scratch.path()) {
        for e in dir.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with("server-") {
                let log = std::fs::read_to_string(e.path()).unwrap_or_default();
                for line in log.lines() {
                    if line.contains("panicked") {
                        panics += 1;
                        if panics <= 3 {
                            ctx.violation(format!("server log: {line}"));
                        }
                    } else if line.contains("WARN") || line.contains("ERROR") {
                        warnings.push(strip_ansi(line));
                    }
                }
            }
        }
    }
    {
        let mut s = server.lock().await;
        s.kill9().await;
    }
    summary(&ctx, &m, &bin, panics, &warnings);
    let failed = get(&ctx.violation_count) > 0;
    if failed {
        // Keep the database and the server logs for a look.
        let kept = scratch.path().to_owned();
        std::mem::forget(scratch);
        println!(
            "soak: kept the database and the server logs in {}",
            kept.display()
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The end-of-run checks on resources and the database.
async fn verdict(ctx: &Ctx, m: &Measured, baseline_fds: Option<Vec<String>>, db: &Path) {
    let o = &ctx.opts;
    match (m.baseline, m.final_) {
        (Some(b), Some(f)) => {
            if f.fds > b.fds + o.fd_slack {
                let now = fd_targets(ctx.pid.load(Relaxed));
                ctx.violation(format!(
                    "the server holds {} descriptors after the load, {} at the baseline \
                     (slack {}):\nbaseline:\n  {}\nnow:\n  {}",
                    f.fds,
                    b.fds,
                    o.fd_slack,
                    baseline_fds.unwrap_or_default().join("\n  "),
                    now.join("\n  ")
                ));
            }
            let limit = (b.rss_kib as f64 * o.rss_factor) as u64;
            if f.rss_kib > limit {
                ctx.violation(format!(
                    "the server's RSS is {} after the load, {} at the baseline (limit {}, \
                     factor {})",
                    mib(f.rss_kib),
                    mib(b.rss_kib),
                    mib(limit),
                    o.rss_factor
                ));
            }
        }
        _ => ctx.violation("the server's resources could not be measured".into()),
    }
    if let Some(c) = m.final_db {
        if !c.empty() {
            ctx.violation(format!(
                "the database is not empty {} s after the load stopped (expiry {} s, prune every \
                 {} s): {c}; left:\n{}",
                o.expiry + 2 * o.prune + 5,
                o.expiry,
                o.prune,
                db_leftovers(db).await
            ));
        }
    }
}

/// `line` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn summary(ctx: &Ctx, m: &Measured, bin: &Path, panics: usize, warnings: &[String]) {
    let s = &ctx.stats;
    let o = &ctx.opts;
    let server = format!("{} (mailbox)", bin.display());
    let u = |u: Option<Usage>, f: fn(Usage) -> String| u.map(f).unwrap_or_else(|| "?".into());
    println!("\n==================== soak summary ====================");
    println!(
        "server               {server}, expiry {} s, prune every {} s, seed {}",
        o.expiry, o.prune, o.seed
    );
    println!(
        "load                 warm-up {:?} + {:?} with kill -9 every {}-{} s, {} pairs",
        o.warmup, o.load, o.kill_every.0, o.kill_every.1, o.pairs
    );
    println!(
        "honest sessions      {} started, {} completed, {} failed",
        get(&s.sessions_started),
        get(&s.sessions_completed),
        get(&s.sessions_failed)
    );
    println!(
        "messages             {} planned, {} acked, {} echoed, {} delivered, {} LOST (acked or \
         echoed, never delivered), {} altered, {} duplicate deliveries, {} adds sent",
        get(&s.msgs_planned),
        get(&s.msgs_acked),
        get(&s.msgs_echoed),
        get(&s.msgs_delivered),
        get(&s.msgs_lost),
        get(&s.msgs_corrupt),
        get(&s.msgs_dup),
        get(&s.adds_sent)
    );
    println!(
        "honest connections   {} connects, {} random drops mid-session, {} stalls, {} failed \
         connects (all workloads, mostly while the server was down)",
        get(&s.honest_connects),
        get(&s.random_drops),
        get(&s.stalls),
        get(&s.connect_failures)
    );
    println!(
        "abandoned            {} connections ({} adds left behind)",
        get(&s.abandoned),
        get(&s.abandoned_adds)
    );
    println!(
        "half-open handshakes {} (closed by the server {}, {} of them by its {:?} handshake \
         limit, the latest after {:.1} s; dropped by us {}; overdue {})",
        get(&s.half_open),
        get(&s.half_open_closed_by_server),
        get(&s.half_open_timed_out),
        HANDSHAKE_LIMIT,
        get(&s.half_open_latest_close_ms) as f64 / 1000.0,
        get(&s.half_open_dropped_by_us),
        get(&s.half_open_overdue)
    );
    println!("handshake probe      {}", m.probe.join("; "));
    println!(
        "oversized frames     {} (refused with \"message too large\" {}, closed without it {}, \
         left open {})",
        get(&s.oversized),
        get(&s.oversized_refused),
        get(&s.oversized_closed_silently),
        get(&s.oversized_not_closed)
    );
    println!(
        "kill -9 + restart    {} (slowest restart {} ms)",
        get(&s.kills),
        get(&s.slowest_restart_ms)
    );
    println!(
        "server RSS           baseline {}, peak {}, load stopped {}, final {} (limit x{})",
        u(m.baseline, |u| mib(u.rss_kib)),
        mib(get(&s.peak_rss_kib)),
        u(m.after_load, |u| mib(u.rss_kib)),
        u(m.final_, |u| mib(u.rss_kib)),
        o.rss_factor
    );
    println!(
        "server fds           baseline {}, peak {}, load stopped {}, final {} (slack {})",
        u(m.baseline, |u| u.fds.to_string()),
        get(&s.peak_fds),
        u(m.after_load, |u| u.fds.to_string()),
        u(m.final_, |u| u.fds.to_string()),
        o.fd_slack
    );
    println!(
        "database             {} checks during the run ({} with stale channels); at the end: {}",
        get(&s.db_checks),
        get(&s.db_stuck),
        m.final_db
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into())
    );
    println!(
        "server logs          {panics} panics, {} warnings/errors",
        warnings.len()
    );
    for w in warnings.iter().take(5) {
        println!("  {w}");
    }
    let n = get(&ctx.violation_count);
    if n == 0 {
        println!("violations           none\nRESULT               PASS");
    } else {
        println!("violations           {n}:");
        if let Ok(v) = ctx.violations.lock() {
            for line in v.iter() {
                println!("  - {line}");
            }
        }
        println!("RESULT               FAIL");
    }
}
