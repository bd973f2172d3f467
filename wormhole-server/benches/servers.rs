//! Benchmark: our `wormhole-server` against the reference mailbox server 0.8.0 and transit
//! relay 0.5.0, in one run, on 127.0.0.1. Run it with `benches/run.sh servers` (which
//! builds the release binary, prepares the reference venv and enters a loopback-only
//! network namespace); it needs `WORMHOLE_SERVER_BIN` and `WORMHOLE_REF_VENV`.
//!
//! Prints one table:
//! - mailbox sessions per second (bind, allocate, claim, open, two adds, release, close on
//!   two fresh connections) at 1, 100 and 1000 concurrent pairs;
//! - the server's resident memory holding 10,000 idle WebSocket connections;
//! - relay throughput for 1 and 16 pairs, with the relay's CPU seconds per GiB, next to a
//!   direct loopback connection (no relay) as the ceiling;
//! - then a second table, the mailbox on each backend at 100 concurrent pairs: SQLite in
//!   memory, SQLite in a file, PostgreSQL with one, two and three server processes, and the
//!   reference server with its file database, with sessions per second and the CPU
//!   milliseconds per session of the server processes and of PostgreSQL. With several
//!   processes the two sides of every session connect to different ones (directly, no
//!   balancer in between), so every message crosses from one process to the other.
//!   PostgreSQL is Debian's, started on loopback by `tests/src/postgres.rs` (fsync and
//!   synchronous commits off, as the SQLite file runs without a sync per commit).
//!
//! `--quick` shortens every measurement (for a smoke test); `--only
//! sessions|memory|relay|backends` runs one group; `--pairs 1,100` chooses the session concurrencies, `--secs S` the
//! length of each session measurement, `--server ours|reference` one server only. Session
//! rows also give the CPU milliseconds per session, user/system, of the server and of this
//! benchmark client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

#[path = "../../tests/src/postgres.rs"]
mod postgres;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;
type Res<T> = Result<T, String>;

const APPID: &str = "wormhole-server/bench";

struct Settings {
    only: Option<String>,
    session_secs: f64,
    idle_conns: usize,
    relay_one: u64,
    relay_each_of_16: u64,
    /// Concurrent pairs for the session measurements.
    pairs: Vec<usize>,
    /// `ours` or `reference`: measure sessions on that server only.
    server: Option<String>,
}

/// One session-rate measurement.
struct Sessions {
    rate: f64,
    /// Sessions completed.
    count: u64,
    /// Server CPU ms per session, user + system.
    server_ms: f64,
    /// Server CPU ms per session, "user/sys".
    server: String,
    /// Benchmark client CPU ms per session, "user/sys".
    client: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let pairs: Vec<usize> = value("--pairs")
        .map(|v| v.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100, 1000]);
    let server = value("--server");
    let secs: Option<f64> = value("--secs").and_then(|v| v.parse().ok());
    let mut settings = if quick {
        Settings {
            only,
            session_secs: 1.0,
            idle_conns: 500,
            relay_one: 64 << 20,
            relay_each_of_16: 8 << 20,
            pairs,
            server,
        }
    } else {
        Settings {
            only,
            session_secs: 5.0,
            idle_conns: 10_000,
            relay_one: 1 << 30,
            relay_each_of_16: 128 << 20,
            pairs,
            server,
        }
    };
    if let Some(secs) = secs {
        settings.session_secs = secs;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(&settings)) {
        eprintln!("servers bench: ERROR: {e}");
        std::process::exit(1);
    }
}

fn env_path(var: &str) -> Res<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{var} is not set: run benches/run.sh servers"))
}

fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A server process, killed on drop.
struct Proc {
    child: Child,
    port: u16,
}

impl Proc {
    fn start(mut cmd: Command, port: u16) -> Res<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let mut p = Proc { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || p.child.try_wait().ok().flatten().is_some() {
                return Err(format!("{cmd:?} did not start"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let it settle (twist finishes its start-up after listening).
        std::thread::sleep(Duration::from_millis(300));
        Ok(p)
    }

    /// Resident memory in KiB (VmRSS).
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// CPU seconds used so far (user, system).
    fn cpu(&self) -> Cpu {
        Cpu::of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// CPU seconds (user + system) used so far.
    fn cpu_secs(&self) -> f64 {
        self.cpu().total()
    }
}

/// CPU seconds of a process, user and system (kernel) time apart.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    user: f64,
    sys: f64,
}

impl Cpu {
    /// Reads utime and stime from a `/proc/<pid>/stat` file.
    fn of(stat_path: &str) -> Cpu {
        let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
        // Fields after the ")" closing the command name: utime is the 12th, stime the 13th.
        let rest = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Cpu {
            user: field(11) / hz,
            sys: field(12) / hz,
        }
    }

    /// This (the benchmark client's) process.
    fn own() -> Cpu {
        Cpu::of("/proc/self/stat")
    }

    fn total(self) -> f64 {
        self.user + self.sys
    }

    /// `self - earlier`, in milliseconds per `n` units, as "user/sys".
    fn per(self, earlier: Cpu, n: u64) -> String {
        let n = n.max(1) as f64;
        format!(
            "{:.2}/{:.2}",
            (self.user - earlier.user) * 1000.0 / n,
            (self.sys - earlier.sys) * 1000.0 / n
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn our_mailbox(bin: &Path) -> Res<Proc> {
    our_mailbox_on(bin, ":memory:")
}

/// Our mailbox server on the database `db` (`:memory:`, a file, a `postgres://` URL).
fn our_mailbox_on(bin: &Path, db: &str) -> Res<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["mailbox", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--db", db])
        .args(["--max-connections", "100000"])
        .args(["--max-connections-per-ip", "100000"])
        .args(["--max-mailboxes-per-app", "100000"]);
    Proc::start(cmd, port)
}

fn ref_mailbox(venv: &Path) -> Res<Proc> {
    ref_mailbox_on(venv, ":memory:")
}

/// The reference mailbox server on the channel database `db` (`:memory:` or a file).
fn ref_mailbox_on(venv: &Path, db: &str) -> Res<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(venv.join("bin/twist"));
    cmd.arg("wormhole-mailbox")
        .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
        .arg(format!("--channel-db={db}"));
    Proc::start(cmd, port)
}

/// CPU seconds of a process and its live children (PostgreSQL's postmaster and its
/// backends).
fn tree_cpu(pid: u32) -> f64 {
    let mut total = Cpu::of(&format!("/proc/{pid}/stat")).total();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(child) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let rest = stat.rsplit(')').next().unwrap_or("");
            // The parent pid is the second field after the command name.
            if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
                total += Cpu::of(&format!("/proc/{child}/stat")).total();
            }
        }
    }
    total
}

/// The backend comparison: sessions per second at `pairs` pairs on each backend.
async fn backends(s: &Settings, bin: &Path, venv: &Path, pairs: usize) -> Res<Vec<[String; 4]>> {
    let scratch = std::env::temp_dir().join(format!("wormhole-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let pg = postgres::Postgres::start().await;
    let pg_pid = pg.pid().ok_or("PostgreSQL is not running")?;
    let configs: [(&str, usize); 6] = [
        ("ours, SQLite in memory", 1),
        ("ours, SQLite file", 1),
        ("ours, PostgreSQL, 1 process", 1),
        ("ours, PostgreSQL, 2 processes", 2),
        ("ours, PostgreSQL, 3 processes", 3),
        ("reference 0.8.0, SQLite file", 1),
    ];
    for (i, (name, processes)) in configs.into_iter().enumerate() {
        let file = scratch.join(format!("bench-{i}.sqlite"));
        let file = file.to_string_lossy().into_owned();
        let url = match i {
            2..=4 => Some(pg.create_database(&format!("bench{i}")).await),
            _ => None,
        };
        let mut procs = Vec::new();
        for _ in 0..processes {
            procs.push(match i {
                0 => our_mailbox(bin)?,
                1 => our_mailbox_on(bin, &file)?,
                5 => ref_mailbox_on(venv, &file)?,
                _ => our_mailbox_on(bin, url.as_deref().unwrap_or_default())?,
            });
        }
        let ports: Vec<u16> = procs.iter().map(|p| p.port).collect();
        let cpu = |procs: &[Proc]| procs.iter().map(Proc::cpu_secs).sum::<f64>();
        let (server0, pg0) = (cpu(&procs), tree_cpu(pg_pid));
        let (rate, count) = sessions_per_sec(&ports, pairs, s.session_secs)
            .await
            .map_err(|e| format!("{name}, {pairs} pairs: {e}"))?;
        let (server1, pg1) = (cpu(&procs), tree_cpu(pg_pid));
        let per = |a: f64, b: f64| format!("{:.2}", (b - a) * 1000.0 / count.max(1) as f64);
        eprintln!("{name}: {rate:.0} sessions/s ({count} sessions)");
        rows.push([
            name.to_owned(),
            format!("{rate:.0}"),
            per(server0, server1),
            if url.is_some() {
                per(pg0, pg1)
            } else {
                "-".to_owned()
            },
        ]);
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(rows)
}

fn our_relay(bin: &Path) -> Res<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["relay", "--listen", &format!("127.0.0.1:{port}")]);
    Proc::start(cmd, port)
}

fn ref_relay(venv: &Path) -> Res<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(venv.join("bin/twist"));
    cmd.arg("transitrelay")
        .arg(format!("--port=tcp:{port}:interface=127.0.0.1"));
    Proc::start(cmd, port)
}

// ------------------------------------------------------------------------------------
// Mailbox sessions
// ------------------------------------------------------------------------------------

/// At most this many connection attempts at once: the reference server (listen backlog 50)
/// resets connections when 2000 arrive together. Sessions still overlap fully.
static CONNECTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

async fn connect(port: u16) -> Res<Ws> {
    let _permit = CONNECTING.acquire().await.map_err(|e| e.to_string())?;
    // Nagle off, as real clients do (wormhole-core does too): else back-to-back frames wait
    // for delayed ACKs and the benchmark measures TCP timers, not servers.
    let url = format!("ws://127.0.0.1:{port}/v1");
    // A small read buffer: tungstenite's default zero-fills 128 KiB per connection, which
    // made this client, not the servers, the bottleneck. Frames are queued by `send` and
    // written together when the client waits (`expect`), so frames a client sends back to
    // back (`bind` + `allocate`, `open` + `add`) leave in one write, as they would from a
    // client with Nagle on.
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.read_buffer_size = 4096;
    config.write_buffer_size = 64 << 10;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    expect(&mut ws, "welcome").await?;
    Ok(ws)
}

/// Queues a frame; `expect` writes it.
async fn send(ws: &mut Ws, frame: String) -> Res<()> {
    ws.feed(Message::text(frame))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// A JSON string.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The fields of a server frame this client looks at (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    ty: &'a str,
    #[serde(default, borrow)]
    nameplate: Option<&'a str>,
    #[serde(default, borrow)]
    mailbox: Option<&'a str>,
}

/// Writes the queued frames, then waits for the next frame of type `ty` (skipping acks
/// and other types) and returns its `nameplate` or `mailbox` field, if any.
async fn expect(ws: &mut Ws, ty: &str) -> Res<Option<String>> {
    ws.flush().await.map_err(|e| format!("send: {e}"))?;
    loop {
        let msg = ws
            .next()
            .await
            .ok_or_else(|| format!("closed before {ty}"))?
            .map_err(|e| format!("{e}"))?;
        if let Message::Text(t) = msg {
            let v: Incoming = serde_json::from_str(&t).map_err(|e| format!("{e}: {t}"))?;
            if v.ty == ty {
                return Ok(v.nameplate.or(v.mailbox).map(str::to_owned));
            }
            if v.ty == "error" {
                return Err(format!("server error: {t}"));
            }
        }
    }
}

async fn join_and_add(ws: &mut Ws, side: &str, nameplate: &str) -> Res<String> {
    send(
        ws,
        format!(r#"{{"type": "claim", "nameplate": {}}}"#, quoted(nameplate)),
    )
    .await?;
    let mailbox = expect(ws, "claimed").await?.ok_or("no mailbox")?;
    send(
        ws,
        format!(r#"{{"type": "open", "mailbox": {}}}"#, quoted(&mailbox)),
    )
    .await?;
    send(
        ws,
        format!(
            r#"{{"type": "add", "phase": "pake", "body": "{}"}}"#,
            hex_of(side)
        ),
    )
    .await?;
    Ok(mailbox)
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn finish(ws: &mut Ws, nameplate: &str, mailbox: &str) -> Res<()> {
    // Both messages (ours echoed and the peer's) before leaving.
    expect(ws, "message").await?;
    expect(ws, "message").await?;
    send(
        ws,
        format!(
            r#"{{"type": "release", "nameplate": {}}}"#,
            quoted(nameplate)
        ),
    )
    .await?;
    expect(ws, "released").await?;
    send(
        ws,
        format!(
            r#"{{"type": "close", "mailbox": {}, "mood": "happy"}}"#,
            quoted(mailbox)
        ),
    )
    .await?;
    expect(ws, "closed").await?;
    let _ = ws.close(None).await;
    Ok(())
}

/// One session: two fresh connections (side A to `port`, side B to `port_b`) through
/// allocate/claim/open/add/add/release/close.
async fn session(port: u16, port_b: u16, n: u64) -> Res<()> {
    let (side_a, side_b) = (format!("a{n:x}"), format!("b{n:x}"));
    let bind = |side: &str| {
        format!(
            r#"{{"type": "bind", "appid": {}, "side": {}}}"#,
            quoted(APPID),
            quoted(side)
        )
    };
    let mut a = connect(port).await?;
    send(&mut a, bind(&side_a)).await?;
    send(&mut a, r#"{"type": "allocate"}"#.to_owned()).await?;
    let nameplate = expect(&mut a, "allocated").await?.ok_or("no nameplate")?;
    let mailbox = join_and_add(&mut a, &side_a, &nameplate).await?;
    let mut b = connect(port_b).await?;
    send(&mut b, bind(&side_b)).await?;
    join_and_add(&mut b, &side_b, &nameplate).await?;
    let (ra, rb) = tokio::join!(
        finish(&mut a, &nameplate, &mailbox),
        finish(&mut b, &nameplate, &mailbox)
    );
    ra.and(rb)
}

/// Sessions per second with `pairs` pairs looping for `secs`, and the sessions counted.
/// With several `ports` (server processes on one database), session `n` has its sides on
/// `ports[n % len]` and the next one.
async fn sessions_per_sec(ports: &[u16], pairs: usize, secs: f64) -> Res<(f64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..pairs {
        let (stop, done, counter) = (stop.clone(), done.clone(), counter.clone());
        let ports = ports.to_vec();
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let i = n as usize % ports.len();
                let (port, port_b) = (ports[i], ports[(i + 1) % ports.len()]);
                // One timer per session rather than one per awaited frame.
                tokio::time::timeout(Duration::from_secs(60), session(port, port_b, n))
                    .await
                    .map_err(|_| format!("session {n} timed out"))??;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Res::Ok(())
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok((counted as f64 / elapsed, counted))
}

/// A WebSocket connection from the loopback address `from`, past its welcome.
async fn idle_connection(port: u16, from: std::net::Ipv4Addr) -> Res<Ws> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind((from, 0).into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    let stream = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let url = format!("ws://127.0.0.1:{port}/v1");
    let (mut ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    expect(&mut ws, "welcome").await?;
    Ok(ws)
}

/// The server's RSS (KiB) before and while holding `n` idle WebSocket connections.
async fn idle_memory(server: &Proc, n: usize) -> Res<(u64, u64)> {
    let before = server.rss_kib();
    let port = server.port;
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
            // From four loopback addresses: the server allows at most half of its
            // descriptors to one address, and with a hard limit of 20,000 that is fewer
            // than 10,000.
            let from = std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % 4) as u8);
            idle_connection(port, from).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        conns.push(r.map_err(|e| e.to_string())??);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = server.rss_kib();
    drop(conns);
    Ok((before, during))
}

// ------------------------------------------------------------------------------------
// Relay throughput
// ------------------------------------------------------------------------------------

async fn relay_pair(port: u16, i: usize) -> Res<(TcpStream, TcpStream)> {
    let token: String = (0..32)
        .map(|k| format!("{:02x}", (i * 31 + k) as u8))
        .collect();
    let mut a = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut b = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    for (s, side) in [(&mut a, "0123456789abcdef"), (&mut b, "fedcba9876543210")] {
        s.write_all(format!("please relay {token} for side {side}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    for s in [&mut a, &mut b] {
        let mut ok = [0u8; 3];
        s.read_exact(&mut ok).await.map_err(|e| e.to_string())?;
        if &ok != b"ok\n" {
            return Err(format!("relay answered {ok:?}"));
        }
    }
    Ok((a, b))
}

async fn pump(mut tx: TcpStream, mut rx: TcpStream, bytes: u64) -> Res<()> {
    let writer = tokio::spawn(async move {
        let buf = vec![0x5au8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            tx.write_all(&buf[..n]).await.map_err(|e| e.to_string())?;
            left -= n as u64;
        }
        Res::Ok(tx)
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < bytes {
        let n = rx.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection ended after {got} of {bytes} bytes"));
        }
        got += n as u64;
    }
    writer.await.map_err(|e| e.to_string())??;
    Ok(())
}

/// (MB/s, relay CPU s per GiB) for `pairs` pairs each moving `bytes` one way. Without a
/// relay, pairs are direct loopback connections (the ceiling).
async fn throughput(relay: Option<&Proc>, pairs: usize, bytes: u64) -> Res<(f64, Option<f64>)> {
    let mut conns = Vec::new();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    for i in 0..pairs {
        conns.push(match relay {
            Some(r) => relay_pair(r.port, i).await?,
            None => {
                let a = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let (b, _) = listener.accept().await.map_err(|e| e.to_string())?;
                (a, b)
            }
        });
    }
    let cpu0 = relay.map(Proc::cpu_secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (a, b) in conns {
        tasks.spawn(pump(a, b, bytes));
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = bytes as f64 * pairs as f64;
    let cpu = relay
        .zip(cpu0)
        .map(|(r, c0)| (r.cpu_secs() - c0) / (total / (1u64 << 30) as f64));
    Ok((total / secs / 1e6, cpu))
}

// ------------------------------------------------------------------------------------

async fn run(s: &Settings) -> Res<()> {
    let bin = env_path("WORMHOLE_SERVER_BIN")?;
    let venv = env_path("WORMHOLE_REF_VENV")?;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let wanted = |group: &str| s.only.as_deref().is_none_or(|o| o == group);

    for &pairs in &s.pairs {
        if !wanted("sessions") {
            break;
        }
        // Sessions per second, and the CPU time per session of the server and of this
        // client, user/system apart.
        let measure = |p: Proc, name: &'static str| async move {
            let (server0, client0) = (p.cpu(), Cpu::own());
            let (rate, count) = sessions_per_sec(&[p.port], pairs, s.session_secs)
                .await
                .map_err(|e| format!("{name} server, {pairs} pairs: {e}"))?;
            let (server1, client1) = (p.cpu(), Cpu::own());
            Res::Ok(Sessions {
                rate,
                count,
                server_ms: (server1.total() - server0.total()) * 1000.0 / count.max(1) as f64,
                server: server1.per(server0, count),
                client: client1.per(client0, count),
            })
        };
        let ours = if s.server.as_deref() != Some("reference") {
            Some(measure(our_mailbox(&bin)?, "our").await?)
        } else {
            None
        };
        let theirs = if s.server.as_deref() != Some("ours") {
            Some(measure(ref_mailbox(&venv)?, "reference").await?)
        } else {
            None
        };
        let show = |r: &Option<Sessions>| match r {
            Some(r) if r.rate > 0.0 => format!(
                "{:.0} ({:.2} ms; server {} ms, client {} ms user/sys; {} sessions)",
                r.rate, r.server_ms, r.server, r.client, r.count
            ),
            Some(_) => "none completed".to_owned(),
            None => "-".to_owned(),
        };
        eprintln!(
            "sessions/s at {pairs} pairs: ours {}, reference {}",
            show(&ours),
            show(&theirs)
        );
        let ratio = match (&ours, &theirs) {
            (Some(o), Some(t)) if t.rate > 0.0 => format!(" (ours ×{:.1})", o.rate / t.rate),
            _ => String::new(),
        };
        rows.push((
            format!("mailbox sessions/s, {pairs} concurrent pairs (server CPU per session)"),
            show(&ours),
            format!("{}{ratio}", show(&theirs)),
        ));
    }

    let n = s.idle_conns;
    if wanted("memory") {
        let (ob, od) = idle_memory(&our_mailbox(&bin)?, n).await?;
        let (rb, rd) = idle_memory(&ref_mailbox(&venv)?, n).await?;
        eprintln!("RSS with {n} idle connections: ours {od} KiB, reference {rd} KiB");
        rows.push((
            format!("mailbox RSS with {n} idle WebSockets (idle server)"),
            format!(
                "{:.1} MB ({:.1} MB)",
                od as f64 / 1024.0,
                ob as f64 / 1024.0
            ),
            format!(
                "{:.1} MB ({:.1} MB)",
                rd as f64 / 1024.0,
                rb as f64 / 1024.0
            ),
        ));
    }

    if wanted("relay") {
        let (direct1, _) = throughput(None, 1, s.relay_one).await?;
        let (direct16, _) = throughput(None, 16, s.relay_each_of_16).await?;
        for (pairs, bytes, direct) in [
            (1, s.relay_one, direct1),
            (16, s.relay_each_of_16, direct16),
        ] {
            let (o, ocpu) = throughput(Some(&our_relay(&bin)?), pairs, bytes).await?;
            let (r, rcpu) = throughput(Some(&ref_relay(&venv)?), pairs, bytes).await?;
            eprintln!("relay {pairs} pairs: ours {o:.0} MB/s, reference {r:.0} MB/s");
            rows.push((
                format!(
                    "relay, {pairs} pair(s) × {} MiB [direct loopback: {direct:.0} MB/s]",
                    bytes >> 20
                ),
                format!("{o:.0} MB/s, {:.2} CPU s/GiB", ocpu.unwrap_or(0.0)),
                format!("{r:.0} MB/s, {:.2} CPU s/GiB", rcpu.unwrap_or(0.0)),
            ));
        }
    }

    let backend_rows = if wanted("backends") {
        backends(s, &bin, &venv, 100).await?
    } else {
        Vec::new()
    };

    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(9);
    println!(
        "\nwormhole-server vs reference (mailbox 0.8.0, transit relay 0.5.0), 127.0.0.1, one run\n"
    );
    println!(
        "| {:w0$} | {:w1$} | {:w2$} |",
        "measure", "ours", "reference"
    );
    println!(
        "|{}|{}|{}|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2)
    );
    for (a, b, c) in rows {
        println!("| {a:w0$} | {b:w1$} | {c:w2$} |");
    }
    if !backend_rows.is_empty() {
        println!(
            "\nmailbox backends, 100 concurrent pairs, {} s each, one run\n",
            s.session_secs
        );
        println!(
            "| server and database | sessions/s | server CPU ms/session | PostgreSQL CPU ms/session |"
        );
        println!("|---|---|---|---|");
        for [a, b, c, d] in backend_rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
    Ok(())
}
