//! Real PostgreSQL 15 and HAProxy processes on loopback, for tests of the multi-process
//! mailbox server.
//!
//! This file is self-contained (std, tokio and libc only) because it is compiled twice: as
//! `wormhole_tests::postgres` and, through `#[path = "../../tests/src/postgres.rs"] mod
//! postgres;`, inside wormhole-server's own tests. It spawns its children with
//! `std::process` (not `tokio::process`), so it does not need tokio's `process` feature;
//! the waits are async polls (or blocking ones for [`SharedPostgres`]).
//!
//! - [`Postgres`]: a throwaway cluster owned by one test (`initdb` into a scratch
//!   directory, then `postgres` on a free 127.0.0.1 port), which the test can stop, restart
//!   or SIGKILL.
//! - [`shared_cluster`]: one cluster per test process; each test takes its own database
//!   with [`SharedPostgres::fresh_database`].
//! - [`Haproxy`]: HAProxy in TCP mode in front of some backends, with HTTP health checks and
//!   an admin stats socket.
//!
//! The binaries are Debian's `postgresql-15` (`/usr/lib/postgresql/15/bin`, or the
//! directory in `WORMHOLE_PG_BIN`) and `haproxy` (`/usr/sbin/haproxy` or `haproxy` on the
//! `PATH`); `scripts/setup-peers.sh` installs both, pinned.
//!
//! # Why a nested user namespace
//!
//! `initdb` and `postgres` refuse to run with an effective uid of 0, and the tests run as
//! root: either really, or as the mapped root of the loopback-only namespace
//! (`unshare -r -n …`). So when `geteuid() == 0` the server binaries run through
//! `unshare -U --map-user=1000 --map-group=1000 -- BIN …`: a nested user namespace in which
//! our uid appears as 1000. No privilege is dropped outside (the kernel still sees the
//! caller's uid, so the data directory ends up owned by the caller, which is exactly what
//! `postgres` checks: that the data directory belongs to its own euid), but `postgres`
//! sees a non-root euid and starts. `unshare` execs the server in place, so the child's pid
//! is the postmaster's. The clients (`psql`, `pg_isready`) run as root without trouble and
//! are started directly.
//!
//! # Lifetime of the processes
//!
//! Every server is spawned with a parent-death signal (`prctl(PR_SET_PDEATHSIG)`: SIGQUIT,
//! PostgreSQL's immediate shutdown, for the postmaster; SIGKILL for HAProxy), and is also
//! stopped when its owner is dropped, so nothing outlives the test process. The kernel
//! sends the parent-death signal when the *thread* that spawned the child exits, not the
//! process: a `#[tokio::test]` spawns from its runtime's thread(s), which live as long as
//! the test, which is good enough. Never start a [`Postgres`] or [`Haproxy`] inside
//! `spawn_blocking` (idle blocking threads exit after a few seconds, taking the server
//! down). [`shared_cluster`] spawns its postmaster from a dedicated thread that never
//! exits, so its signal only fires when the process exits.

// Included with `#[path]` into test crates that use only part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The role every cluster is created with (`initdb -U`); authentication is `trust`.
pub const PG_USER: &str = "wormhole";

/// How long a cluster may take to accept connections after the postmaster was spawned
/// (crash recovery after [`Postgres::kill9`] included).
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the postmaster is SIGKILLed.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Poll interval for every wait in this module.
const POLL: Duration = Duration::from_millis(50);

// --- small private helpers -------------------------------------------------------------------

/// Ports handed out by [`free_port`] in this process (never hand one out twice).
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A 127.0.0.1 TCP port nothing listens on right now.
fn free_port() -> u16 {
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

/// A fresh private (0700) directory under `std::env::temp_dir()`.
fn scratch_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "wormhole-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    path
}

/// The last `n` lines of the file at `path` (empty when it cannot be read).
fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A file to send a child's stdout and stderr to (appending, so restarts keep history).
fn log_file(path: &Path) -> (Stdio, Stdio) {
    let f = File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let f2 = f.try_clone().expect("dup log file");
    (Stdio::from(f), Stdio::from(f2))
}

/// Ask the kernel to send `sig` to the child when the thread that spawned it exits.
fn set_parent_death_signal(cmd: &mut Command, sig: libc::c_int) {
    // SAFETY: the closure only makes async-signal-safe system calls (getpid-style calls and
    // prctl) between fork and exec.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}

/// Send `sig` to `pid` (errors, e.g. an already reaped process, are ignored).
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// The pids whose parent is `pid` (scan of `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(i) = stat.rfind(')') else { continue };
        // Fields after the name: state, ppid, ...
        let ppid = stat[i + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Wait (blocking) up to `limit` for `child` to exit; `None` if it is still running.
fn wait_blocking(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait (async) up to `limit` for `child` to exit; `None` if it is still running.
async fn wait_async(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Run a blocking closure on tokio's blocking pool and return its result.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

// --- PostgreSQL --------------------------------------------------------------------------------

/// The directory holding the PostgreSQL 15 binaries: `WORMHOLE_PG_BIN` or Debian's
/// `/usr/lib/postgresql/15/bin`.
fn pg_bin_dir() -> PathBuf {
    let dir = std::env::var_os("WORMHOLE_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    if !dir.join("postgres").is_file() {
        panic!(
            "PostgreSQL 15 is not installed ({} has no postgres): run scripts/setup-peers.sh \
             (it installs Debian's postgresql-15), or set WORMHOLE_PG_BIN",
            dir.display()
        );
    }
    dir
}

/// A command running the server binary `name` (`initdb`, `postgres`): through a nested user
/// namespace when we are root, see the module documentation.
fn pg_server_command(name: &str) -> Command {
    let bin = pg_bin_dir().join(name);
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut cmd = Command::new("unshare");
        cmd.args(["-U", "--map-user=1000", "--map-group=1000", "--"])
            .arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

/// A command running the client binary `name` (`psql`, `pg_isready`) against 127.0.0.1:port.
fn pg_client_command(name: &str, port: u16) -> Command {
    let mut cmd = Command::new(pg_bin_dir().join(name));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .env_remove("PGSERVICE")
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10")
        // Bound every statement, so a wedged query fails the test instead of hanging it.
        .env("PGOPTIONS", "-c statement_timeout=60000")
        .stdin(Stdio::null());
    cmd
}

/// Run `initdb` into `dir/data` (blocking); panics with its output on failure.
fn initdb(dir: &Path) {
    let log = dir.join("initdb.log");
    let (out, err) = log_file(&log);
    let status = pg_server_command("initdb")
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
    if !status.success() {
        panic!("initdb failed ({status}):\n{}", tail_of(&log, 40));
    }
}

/// Spawn the postmaster for the cluster in `dir/data` on `port` (does not wait).
fn spawn_postmaster(dir: &Path, port: u16) -> Child {
    let (out, err) = log_file(&dir.join("postgres.log"));
    let mut cmd = pg_server_command("postgres");
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
        .args(["-c", "listen_addresses=127.0.0.1"])
        // Dynamic shared memory in the data directory instead of /dev/shm, so a killed
        // cluster leaves nothing behind once its directory is removed.
        .args(["-c", "dynamic_shared_memory_type=mmap"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    set_parent_death_signal(&mut cmd, libc::SIGQUIT);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot spawn postgres: {e}"))
}

/// Whether the cluster on `port` accepts connections (`pg_isready`; blocking).
fn pg_ready(port: u16) -> bool {
    pg_client_command("pg_isready", port)
        .args(["-U", PG_USER, "-d", "postgres", "-t", "2", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `psql -At -c SQL` against `db` (blocking): trimmed stdout, or an error message.
fn psql_blocking(port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out: Output = pg_client_command("psql", port)
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            PG_USER,
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "psql -d {db} -c {sql:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `CREATE DATABASE name` statement, after checking that `name` needs no URL escaping.
fn create_database_sql(name: &str) -> String {
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database names must be [A-Za-z0-9_]+ (they go into URLs unescaped): {name:?}"
    );
    format!("CREATE DATABASE \"{name}\"")
}

/// `postgres://wormhole@127.0.0.1:PORT/DB`.
fn pg_url(port: u16, db: &str) -> String {
    format!("postgres://{PG_USER}@127.0.0.1:{port}/{db}")
}

/// Remove the System V interlock segment a killed postmaster left behind (its id is on
/// line 7 of `postmaster.pid`). Only call this when no postmaster runs on `data`.
fn remove_stale_shmem(data: &Path) {
    let Ok(pidfile) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let shmid = pidfile
        .lines()
        .nth(6)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<libc::c_int>().ok());
    if let Some(shmid) = shmid {
        // SAFETY: IPC_RMID takes no buffer; a wrong or stale id just fails.
        unsafe {
            libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// Stop a postmaster for good (blocking): SIGQUIT (immediate shutdown, which still cleans
/// up shared memory), then SIGKILL if it lingers.
fn shut_down_blocking(child: &mut Child, data: &Path) {
    if let Ok(None) = child.try_wait() {
        signal(child.id(), libc::SIGQUIT);
        if wait_blocking(child, Duration::from_secs(5)).is_none() {
            let _ = child.kill();
            let _ = wait_blocking(child, Duration::from_secs(5));
        }
    }
    remove_stale_shmem(data);
}

/// A throwaway PostgreSQL 15 cluster owned by one test, listening on a free 127.0.0.1 port
/// (TCP, plus a unix socket in its scratch directory).
///
/// Role [`PG_USER`] with `trust` authentication; durability is off (`fsync`,
/// `synchronous_commit`, `full_page_writes`), so commits of the last ~200 ms may be lost on
/// [`Postgres::kill9`]. Dropping the value shuts the cluster down (SIGQUIT, then SIGKILL) and
/// removes its directory, unless the thread is panicking: then the directory (with
/// `postgres.log`) is kept and its path printed.
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Postgres {
    /// `initdb` a new cluster in a scratch directory, start it on a free port and wait (up
    /// to 30 s) until it accepts connections. Takes about a second.
    pub async fn start() -> Postgres {
        let dir = scratch_dir("pg");
        let d = dir.clone();
        blocking(move || initdb(&d)).await;
        let mut pg = Postgres {
            dir,
            port: 0,
            child: None,
        };
        // The free port may be taken by someone else before the postmaster binds it.
        for attempt in 1..=3 {
            pg.port = free_port();
            pg.child = Some(spawn_postmaster(&pg.dir, pg.port));
            match pg.wait_ready().await {
                Ok(()) => return pg,
                Err(e) if attempt < 3 && pg.log_tail(10).contains("could not bind") => {
                    eprintln!("postgres: {e}; retrying on another port");
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// Wait until the running postmaster accepts connections.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_LIMIT;
        let port = self.port;
        loop {
            let child = self.child.as_mut().expect("postmaster not running");
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "postgres on port {port} exited ({st}) before accepting connections; \
                     log tail:\n{}",
                    self.log_tail(30)
                ));
            }
            if blocking(move || pg_ready(port)).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "postgres on port {port} did not accept connections within \
                     {READY_LIMIT:?}; log tail:\n{}",
                    self.log_tail(30)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The TCP port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory: `data/` (the cluster), `postgres.log`, `initdb.log` and the
    /// unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `postgres://wormhole@127.0.0.1:PORT/DBNAME`.
    pub fn url(&self, dbname: &str) -> String {
        pg_url(self.port, dbname)
    }

    /// `CREATE DATABASE name` (`name`: `[A-Za-z0-9_]+`), returning its [`Postgres::url`].
    pub async fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &create_database_sql(name)).await;
        self.url(name)
    }

    /// Run `sql` with `psql -At` in database `dbname` and return its trimmed output (one
    /// row per line, columns separated by `|`). Panics with psql's stderr if it fails.
    pub async fn psql(&self, dbname: &str, sql: &str) -> String {
        let (port, db, sql) = (self.port, dbname.to_owned(), sql.to_owned());
        match blocking(move || psql_blocking(port, &db, &sql)).await {
            Ok(out) => out,
            Err(e) => panic!("{e}; postgres log tail:\n{}", self.log_tail(20)),
        }
    }

    /// Fast shutdown (SIGINT: abort transactions, disconnect clients, checkpoint) and wait
    /// until the postmaster exited, SIGKILLing it after 30 s. Panics if it is not running.
    pub async fn stop(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("Postgres::stop: postgres is not running");
        signal(child.id(), libc::SIGINT);
        if wait_async(&mut child, STOP_LIMIT).await.is_none() {
            let _ = child.kill();
            let _ = wait_async(&mut child, Duration::from_secs(5)).await;
            panic!(
                "postgres did not shut down within {STOP_LIMIT:?}; log tail:\n{}",
                self.log_tail(30)
            );
        }
    }

    /// Start the stopped (or killed) cluster again on the same port and wait until it
    /// accepts connections (after crash recovery, if it was killed).
    pub async fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "Postgres::start_again: postgres is still running"
        );
        self.child = Some(spawn_postmaster(&self.dir, self.port));
        if let Err(e) = self.wait_ready().await {
            panic!("{e}");
        }
    }

    /// [`Postgres::stop`], then [`Postgres::start_again`].
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// SIGKILL the postmaster, like a crash. Its children (backends, checkpointer, ...)
    /// notice the postmaster's death and exit on their own; this waits (up to 10 s, then
    /// SIGKILLs them) until they are gone, so that [`Postgres::start_again`] can reuse the
    /// port and data directory (PostgreSQL replaces the stale `postmaster.pid` and runs crash
    /// recovery). Panics if it is not running.
    pub async fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("Postgres::kill9: postgres is not running");
        let pid = child.id();
        let children = children_of(pid);
        signal(pid, libc::SIGKILL);
        if wait_async(&mut child, Duration::from_secs(10))
            .await
            .is_none()
        {
            panic!("postgres (pid {pid}) survived SIGKILL");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while children.iter().any(|&c| alive(c)) {
            if Instant::now() >= deadline {
                eprintln!("postgres: children of the killed postmaster linger; SIGKILLing them");
                for &c in &children {
                    signal(c, libc::SIGKILL);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last `n` lines of the server log (`postgres.log`, all runs of this cluster).
    pub fn log_tail(&self, n: usize) -> String {
        tail_of(&self.dir.join("postgres.log"), n)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        match self.child.as_mut() {
            Some(child) => shut_down_blocking(child, &data),
            None => remove_stale_shmem(&data),
        }
        if std::thread::panicking() {
            eprintln!(
                "postgres (port {}): keeping {} for inspection; log tail:\n{}",
                self.port,
                self.dir.display(),
                self.log_tail(20)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One PostgreSQL cluster shared by all tests of a test binary; see [`shared_cluster`].
pub struct SharedPostgres {
    dir: PathBuf,
    port: u16,
    pid: u32,
    next_db: AtomicU32,
}

/// What [`shared_cluster`] needs to shut the cluster down at exit.
static SHARED: OnceLock<SharedPostgres> = OnceLock::new();

/// The process-wide cluster, started on first use (blocking, about a second).
///
/// Each `#[tokio::test]` has its own runtime, so the postmaster is not tied to any of them:
/// it is spawned with `std::process` from a dedicated thread that then parks forever, so
/// its parent-death signal (SIGQUIT) only fires when the test process exits. An `atexit`
/// handler shuts it down and removes its directory when the test binary exits normally.
/// Tests get their own database with [`SharedPostgres::fresh_database`].
pub fn shared_cluster() -> &'static SharedPostgres {
    SHARED.get_or_init(|| {
        let dir = scratch_dir("pg-shared");
        let port = free_port();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::Builder::new()
            .name("shared-postgres".into())
            .spawn(move || {
                initdb(&d);
                let mut child = spawn_postmaster(&d, port);
                let deadline = Instant::now() + READY_LIMIT;
                let result = loop {
                    if let Ok(Some(st)) = child.try_wait() {
                        break Err(format!("exited ({st})"));
                    }
                    if pg_ready(port) {
                        break Ok(child.id());
                    }
                    if Instant::now() >= deadline {
                        break Err(format!("not ready within {READY_LIMIT:?}"));
                    }
                    std::thread::sleep(POLL);
                };
                let ok = result.is_ok();
                let _ = tx.send(result);
                if ok {
                    // Keep this thread (the postmaster's parent-death anchor) alive.
                    loop {
                        std::thread::park();
                    }
                }
            })
            .expect("spawn the shared-postgres thread");
        match rx.recv() {
            Ok(Ok(pid)) => {
                // SAFETY: registering a plain extern "C" fn that never unwinds.
                unsafe {
                    libc::atexit(shut_down_shared_cluster);
                }
                SharedPostgres {
                    dir,
                    port,
                    pid,
                    next_db: AtomicU32::new(0),
                }
            }
            Ok(Err(e)) => panic!(
                "the shared postgres on port {port} failed to start: {e}; log tail:\n{}",
                tail_of(&dir.join("postgres.log"), 30)
            ),
            Err(_) => panic!(
                "the shared postgres thread died (initdb failed?); see {}",
                dir.display()
            ),
        }
    })
}

/// `atexit` handler: immediate shutdown of the shared cluster, then remove its directory.
extern "C" fn shut_down_shared_cluster() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(pg) = SHARED.get() {
            signal(pg.pid, libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            // The postmaster is our child: reap it (its Child handle is parked with the
            // thread that spawned it and will never be waited on).
            loop {
                let mut status = 0;
                // SAFETY: waitpid on our own child, with a valid status pointer.
                let r = unsafe { libc::waitpid(pg.pid as libc::pid_t, &mut status, libc::WNOHANG) };
                if r != 0 || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            remove_stale_shmem(&pg.dir.join("data"));
            let _ = std::fs::remove_dir_all(&pg.dir);
        }
    });
}

impl SharedPostgres {
    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://wormhole@127.0.0.1:PORT/DBNAME`.
    pub fn url(&self, dbname: &str) -> String {
        pg_url(self.port, dbname)
    }

    /// Create a new, uniquely named database (`t_<pid>_<n>`) and return its URL (blocking).
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &create_database_sql(&name));
        self.url(&name)
    }

    /// Run `sql` with `psql -At` in `dbname` (blocking) and return its trimmed output.
    /// Panics with psql's stderr if it fails.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        psql_blocking(self.port, dbname, sql)
            .unwrap_or_else(|e| panic!("{e}; postgres log tail:\n{}", self.log_tail(20)))
    }

    /// The last `n` lines of the shared cluster's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail_of(&self.dir.join("postgres.log"), n)
    }
}

// --- HAProxy -----------------------------------------------------------------------------------

/// One server behind [`Haproxy`]: traffic goes to `127.0.0.1:port`, health checks
/// (`GET /health`, expecting status 200) to `127.0.0.1:health_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// The port the proxied TCP connections go to.
    pub port: u16,
    /// The port answering the HTTP health check.
    pub health_port: u16,
}

/// HAProxy (TCP mode, round robin) on a free 127.0.0.1 port in front of some [`Backend`]s.
///
/// `maxconn` is 20000, or half the hard descriptor limit when that is lower (e.g. 9950
/// under a hard `ulimit -n` of 20000). Backend `i` is server `s<i>` of backend `servers`. Health checks run every 300 ms; a
/// server is marked down after 2 failures, up after 1 success; connections already proxied to a server marked down are left alone (they end when
/// the server closes them). A connection that cannot reach its server is redispatched to
/// another (`option redispatch`, 3 retries). Note that HAProxy considers servers up at
/// startup, before their first check.
/// The process is SIGKILLed when this value is dropped (or when the spawning thread exits).
pub struct Haproxy {
    dir: PathBuf,
    port: u16,
    child: Child,
}

/// The HAProxy binary: `/usr/sbin/haproxy`, else `haproxy` from the `PATH`.
fn haproxy_bin() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/haproxy");
    if sbin.is_file() {
        return sbin;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("haproxy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "haproxy is not installed: run scripts/setup-peers.sh (it installs Debian's haproxy)"
        )
    })
}

/// Whether something listens on 127.0.0.1:port (from `/proc/net/tcp`, without connecting:
/// a connection to HAProxy's front port would be proxied to a backend).
fn tcp_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// HAProxy's `maxconn`: 20000, or less when the hard `RLIMIT_NOFILE` cannot hold two
/// descriptors per connection (HAProxy 2.6 refuses to start when it cannot raise its
/// descriptor limit to about `2 * maxconn`).
fn haproxy_maxconn() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        1024
    };
    (hard.saturating_sub(100) / 2).clamp(100, 20_000)
}

impl Haproxy {
    /// Write a configuration for `backends`, start `haproxy -db -f CFG` and wait (up to
    /// 10 s) until its admin socket answers and its front port listens.
    pub async fn start(backends: &[Backend]) -> Haproxy {
        assert!(
            !backends.is_empty(),
            "Haproxy::start needs at least one backend"
        );
        let dir = scratch_dir("haproxy");
        let port = free_port();
        let mut cfg = format!(
            "global\n\
             \x20   maxconn {maxconn}\n\
             \x20   stats socket {sock} mode 600 level admin\n\
             \n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 1h\n\
             \x20   timeout server 1h\n\
             \x20   timeout check 1s\n\
             \x20   option redispatch\n\
             \x20   retries 3\n\
             \n\
             frontend front\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend servers\n\
             \n\
             backend servers\n\
             \x20   balance roundrobin\n\
             \x20   option httpchk GET /health\n\
             \x20   http-check expect status 200\n\
             \x20   default-server inter 300ms fall 2 rise 1\n",
            sock = dir.join("haproxy.sock").display(),
            maxconn = haproxy_maxconn(),
        );
        for (i, b) in backends.iter().enumerate() {
            cfg.push_str(&format!(
                "    server s{i} 127.0.0.1:{} check port {}\n",
                b.port, b.health_port
            ));
        }
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
        let (out, err) = log_file(&dir.join("haproxy.log"));
        let mut cmd = Command::new(haproxy_bin());
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        set_parent_death_signal(&mut cmd, libc::SIGKILL);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn haproxy: {e}"));
        let mut hap = Haproxy { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = hap.child.try_wait() {
                panic!(
                    "haproxy exited ({st}) at startup; log:\n{}",
                    hap.log_tail(30)
                );
            }
            if hap.try_admin("show info").await.is_ok() && tcp_listening(port) {
                return hap;
            }
            if Instant::now() >= deadline {
                panic!(
                    "haproxy did not come up within 10 s; log:\n{}",
                    hap.log_tail(30)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The front port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:FRONT/v1`, the mailbox URL through the proxy.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.port)
    }

    /// The admin (stats) socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("haproxy.sock")
    }

    /// Send one command to the admin socket and return the whole answer.
    async fn try_admin(&self, command: &str) -> io::Result<String> {
        let mut s = tokio::net::UnixStream::connect(self.admin_socket()).await?;
        s.write_all(format!("{command}\n").as_bytes()).await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "admin socket timed out"))??;
        Ok(out)
    }

    /// Send one command (e.g. `disable server servers/s0`) to the admin socket and return
    /// its answer. Panics if the socket cannot be used.
    pub async fn admin(&self, command: &str) -> String {
        self.try_admin(command).await.unwrap_or_else(|e| {
            panic!(
                "haproxy admin command {command:?} failed: {e}; log:\n{}",
                self.log_tail(20)
            )
        })
    }

    /// The servers of the backend and whether each is up (`show stat`; a server going
    /// down but not yet marked down, `UP 1/2`, counts as up).
    pub async fn servers_up(&self) -> Vec<(String, bool)> {
        let csv = self.admin("show stat").await;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches('#')
            .trim()
            .split(',')
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("haproxy `show stat` has no {name} column: {csv}"))
        };
        let (px, sv, st) = (col("pxname"), col("svname"), col("status"));
        lines
            .map(|l| l.split(',').collect::<Vec<&str>>())
            .filter(|f| f.len() > st && f[px] == "servers")
            .filter(|f| f[sv] != "FRONTEND" && f[sv] != "BACKEND")
            .map(|f| (f[sv].to_owned(), f[st].starts_with("UP")))
            .collect()
    }

    /// Poll [`Haproxy::servers_up`] until exactly `n` servers are up; panics after `limit`.
    pub async fn wait_up(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let servers = self.servers_up().await;
            if servers.iter().filter(|(_, up)| *up).count() == n {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "haproxy: expected {n} servers up within {limit:?}, have {servers:?}; \
                     log:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last `n` lines of HAProxy's output (warnings, server state changes).
    pub fn log_tail(&self, n: usize) -> String {
        tail_of(&self.dir.join("haproxy.log"), n)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_blocking(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!(
                "haproxy (port {}): log tail:\n{}",
                self.port,
                self.log_tail(20)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
