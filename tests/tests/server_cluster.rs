//! Several `wormhole-server` processes as one mailbox service: a real PostgreSQL (Debian's
//! package) holds the channels, a real HAProxy (Debian's package) spreads clients over
//! the processes, and each process answers HAProxy's health checks (`--health-listen`).
//! See `tests/src/postgres.rs` for how both are started on loopback.
//!
//! - a pair whose sides are on different processes completes, with our CLI and with the
//!   reference CLI 0.24.0;
//! - 1000 pairs at once through the balancer complete;
//! - `kill -9` of one process mid-exchange: its clients reconnect through the balancer to
//!   another process and finish, every message delivered once and in order;
//! - PostgreSQL stopped mid-run: the servers report the outage (log, health check),
//!   requests wait, and once it is back everything completes, without a server restart.
//!
//! Run them with `scripts/test.sh` (inside a loopback-only network namespace).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Barrier, watch};
use wormhole_core::{Options, Wormhole};
use wormhole_tests::postgres::{Backend, Haproxy, Postgres};
use wormhole_tests::{
    OurServer, RunningCli, TIMEOUT, assert_loopback_only, free_port, our_cli, ref_cli,
    reference_text_stdout, run_cli, test_appid, within,
};

/// PostgreSQL, `n` server processes on it, and HAProxy in front of them.
struct Cluster {
    pg: Postgres,
    servers: Vec<OurServer>,
    proxy: Haproxy,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        assert_loopback_only();
        let pg = Postgres::start().await;
        let db = pg.create_database("mailbox").await;
        let mut servers = Vec::new();
        let mut backends = Vec::new();
        for _ in 0..n {
            let health = free_port();
            let health_addr = format!("127.0.0.1:{health}");
            let server =
                OurServer::start_with_db_and(Path::new(&db), &["--health-listen", &health_addr])
                    .await;
            backends.push(Backend {
                port: server.mailbox_port(),
                health_port: health,
            });
            servers.push(server);
        }
        let proxy = Haproxy::start(&backends).await;
        proxy.wait_up(n, TIMEOUT).await;
        Cluster { pg, servers, proxy }
    }

    /// Rows of a table of the shared database.
    async fn count(&self, table: &str) -> i64 {
        let n = self
            .pg
            .psql("mailbox", &format!("SELECT COUNT(*) FROM {table}"))
            .await;
        n.parse()
            .unwrap_or_else(|_| panic!("count of {table}: {n}"))
    }
}

/// A text sent through one process is received through another, with our CLI and with
/// the reference CLI, each way round; and once more through the balancer.
#[tokio::test]
async fn a_pair_split_over_two_processes_completes() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.servers[0].url(), cluster.servers[1].url());
    let proxied = cluster.proxy.url();
    let cases = [
        ("ours", &one, "ours", &two, "7-adroitness-vagabond"),
        ("reference", &two, "reference", &one, "8-aftermath-barbecue"),
        ("ours", &one, "reference", &two, "9-aimless-belowground"),
        ("reference", &proxied, "ours", &proxied, "10-allow-bifocals"),
    ];
    for (sender, send_url, receiver, receive_url, code) in cases {
        let text = format!("from {sender} to {receiver} across processes ({code})");
        let send_args = ["send", "--code", code, "--text", &text];
        let send = match sender {
            "ours" => our_cli(send_url, &send_args),
            _ => ref_cli(send_url, &send_args),
        };
        let receive = match receiver {
            "ours" => our_cli(receive_url, &["receive", code]),
            _ => ref_cli(receive_url, &["receive", code]),
        };
        let s = RunningCli::spawn("send", send);
        let r = run_cli("receive", receive).await;
        let s = s.finish().await;
        s.assert_success();
        r.assert_success();
        let expected = match receiver {
            "ours" => format!("{text}\n"),
            _ => reference_text_stdout(&text).await,
        };
        assert_eq!(r.stdout, expected, "{code}\n{s}\n{r}");
    }
    // Both sides closed: nothing is left in the shared database.
    assert_eq!(cluster.count("mailboxes").await, 0);
    assert_eq!(cluster.count("nameplates").await, 0);
}

/// 1000 pairs at once through the balancer in front of three processes: every exchange
/// completes (the sides of a pair land on different processes most of the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pairs_through_the_balancer() {
    const PAIRS: usize = 1000;
    let cluster = Cluster::start(3).await;
    let url = cluster.proxy.url();
    let appid = test_appid("cluster-thousand");
    let start = Instant::now();
    let connecting = Arc::new(tokio::sync::Semaphore::new(100));
    let all_connected = Arc::new(Barrier::new(PAIRS));
    let mut tasks: tokio::task::JoinSet<wormhole_core::Result<()>> = tokio::task::JoinSet::new();
    for i in 0..PAIRS {
        let (url, appid) = (url.clone(), appid.clone());
        let (connecting, all_connected) = (connecting.clone(), all_connected.clone());
        tasks.spawn(async move {
            let permit = connecting.acquire_owned().await.expect("semaphore");
            let a = Wormhole::create(&appid, &url, options())?;
            a.allocate_code(2)?;
            let code = a.get_code().await?;
            let b = Wormhole::create(&appid, &url, options())?;
            b.set_code(&code)?;
            b.get_welcome().await?;
            drop(permit);
            all_connected.wait().await;
            a.send_message(format!("a{i}").into_bytes())?;
            b.send_message(format!("b{i}").into_bytes())?;
            let (ma, mb) = tokio::try_join!(a.get_message(), b.get_message())?;
            assert_eq!(
                (ma, mb),
                (format!("b{i}").into_bytes(), format!("a{i}").into_bytes())
            );
            tokio::try_join!(a.close(), b.close())?;
            Ok(())
        });
    }
    let mut done = 0;
    while let Some(r) = within(Duration::from_secs(600), "1000 pairs", tasks.join_next()).await {
        r.expect("task").expect("exchange");
        done += 1;
    }
    assert_eq!(done, PAIRS);
    eprintln!("{PAIRS} pairs through 3 processes in {:?}", start.elapsed());
    assert_eq!(cluster.count("mailboxes").await, 0);
}

fn options() -> Options {
    Options {
        connect_timeout: Duration::from_secs(120),
        ..Options::default()
    }
}

/// `pairs` pairs through `url`, each exchanging `rounds` messages each way in turn: the
/// first `before` rounds, then a wait at `gate` (the caller cuts something), then the
/// rest. Every message must arrive once and in order. `ready` counts pairs at the gate.
async fn exchanges(
    url: String,
    appid: String,
    pairs: usize,
    (before, rounds): (usize, usize),
    ready: Arc<Barrier>,
    gate: watch::Receiver<bool>,
) -> tokio::task::JoinSet<wormhole_core::Result<()>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pairs {
        let (url, appid, ready, mut gate) =
            (url.clone(), appid.clone(), ready.clone(), gate.clone());
        tasks.spawn(async move {
            let a = Wormhole::create(&appid, &url, options())?;
            a.allocate_code(2)?;
            let code = a.get_code().await?;
            let b = Wormhole::create(&appid, &url, options())?;
            b.set_code(&code)?;
            for round in 0..rounds {
                if round == before {
                    ready.wait().await;
                    let _ = gate.wait_for(|open| *open).await;
                }
                let to_b = format!("pair {i} round {round} a->b").into_bytes();
                a.send_message(to_b.clone())?;
                assert_eq!(b.get_message().await?, to_b);
                let to_a = format!("pair {i} round {round} b->a").into_bytes();
                b.send_message(to_a.clone())?;
                assert_eq!(a.get_message().await?, to_a);
            }
            tokio::try_join!(a.close(), b.close())?;
            Ok(())
        });
    }
    tasks
}

async fn all_complete(mut tasks: tokio::task::JoinSet<wormhole_core::Result<()>>, what: &str) {
    while let Some(r) = within(Duration::from_secs(300), what, tasks.join_next()).await {
        r.expect("task").unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// `kill -9` of one of three processes while 30 pairs are mid-exchange: the clients it
/// served reconnect through the balancer to the others and every exchange completes, no
/// message lost, repeated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_one_process_mid_exchange() {
    const PAIRS: usize = 30;
    let mut cluster = Cluster::start(3).await;
    let ready = Arc::new(Barrier::new(PAIRS + 1));
    let (open, gate) = watch::channel(false);
    let tasks = exchanges(
        cluster.proxy.url(),
        test_appid("cluster-kill9"),
        PAIRS,
        (3, 8),
        ready.clone(),
        gate,
    )
    .await;
    within(TIMEOUT, "pairs at the gate", ready.wait()).await;
    // Messages of the first rounds are stored; the victim holds about a third of the
    // connections.
    assert!(cluster.count("messages").await > 0);
    cluster.servers[1].kill9().await;
    open.send_replace(true);
    let started = Instant::now();
    all_complete(tasks, "exchanges after kill -9").await;
    eprintln!("completed {:?} after the kill", started.elapsed());
    cluster.proxy.wait_up(2, TIMEOUT).await;
    assert!(cluster.servers[0].is_running() && cluster.servers[2].is_running());
    assert_eq!(cluster.count("mailboxes").await, 0);
}

/// PostgreSQL stopped while 20 pairs are mid-exchange through two processes: the servers
/// log the outage and fail their health checks, the pairs' messages wait, and once
/// PostgreSQL is back the servers (never restarted) log the recovery and every exchange
/// completes with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_run() {
    const PAIRS: usize = 20;
    let mut cluster = Cluster::start(2).await;
    let pids: Vec<Option<u32>> = cluster.servers.iter().map(OurServer::pid).collect();
    let ready = Arc::new(Barrier::new(PAIRS + 1));
    let (open, gate) = watch::channel(false);
    let tasks = exchanges(
        cluster.proxy.url(),
        test_appid("cluster-pg-restart"),
        PAIRS,
        (2, 6),
        ready.clone(),
        gate,
    )
    .await;
    within(TIMEOUT, "pairs at the gate", ready.wait()).await;
    cluster.pg.stop().await;
    for server in &mut cluster.servers {
        server
            .wait_for_log("the outage reported", |l| {
                l.contains("mailbox database unreachable")
            })
            .await;
    }
    // Both fail their health checks: the balancer marks them down.
    cluster.proxy.wait_up(0, TIMEOUT).await;
    // The pairs go on: their messages wait for the database.
    open.send_replace(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.pg.start_again().await;
    for server in &mut cluster.servers {
        server
            .wait_for_log("the recovery reported", |l| {
                l.contains("mailbox database: reachable again")
            })
            .await;
    }
    all_complete(tasks, "exchanges after the PostgreSQL restart").await;
    cluster.proxy.wait_up(2, TIMEOUT).await;
    let after: Vec<Option<u32>> = cluster.servers.iter().map(OurServer::pid).collect();
    assert_eq!(pids, after, "a server was restarted");
    for server in &mut cluster.servers {
        assert!(server.is_running());
    }
    assert_eq!(cluster.count("mailboxes").await, 0);
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
async fn signal(pid: u32, signal: &str) {
    let status = tokio::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A process stopped (SIGSTOP) in the middle of a transaction does not block the others:
/// PostgreSQL ends its idle transaction after 5 s, which releases its locks. Here process
/// A is made to wait inside an `add` (the test holds a row lock the add needs), then
/// stopped while its transaction holds the app id's lock. Process B still serves a claim
/// on that app id while A is stopped (PostgreSQL ends A's idle transaction, or A's
/// backend finishes the batch A had pipelined whole); once A resumes it runs its `add` again and the pair
/// completes.
#[tokio::test]
async fn a_stopped_process_does_not_block_the_others() {
    let cluster = Cluster::start(2).await;
    let appid = test_appid("cluster-sigstop");
    let psql = |sql: &str| {
        let (pg, sql) = (&cluster.pg, sql.to_owned());
        async move { pg.psql("mailbox", &sql).await }
    };
    // A session of the test's own holds the row every `add` updates.
    let mut holder = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.pg.port().to_string(),
        ])
        .args(["-U", "wormhole", "-d", "mailbox"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run psql");
    let mut input = holder.stdin.take().expect("psql's stdin");
    use tokio::io::AsyncWriteExt;
    input
        .write_all(b"BEGIN;\nUPDATE stored_bytes SET bytes = bytes WHERE id = 1;\n")
        .await
        .expect("write to psql");
    input.flush().await.expect("flush");
    wormhole_tests::poll_until(
        TIMEOUT,
        Duration::from_millis(100),
        "the row lock taken",
        || async {
            let n = psql(
                "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE state = 'idle in transaction' AND query LIKE 'UPDATE stored_bytes%'",
            )
            .await;
            (n == "1").then_some(())
        },
    )
    .await;

    // A allocates (no add yet needs the row), then its PAKE add waits for the row lock.
    let a = Wormhole::create(&appid, &cluster.servers[0].url(), options()).expect("create");
    a.allocate_code(2).expect("allocate");
    let code = within(TIMEOUT, "A's code", a.get_code())
        .await
        .expect("code");
    wormhole_tests::poll_until(
        TIMEOUT,
        Duration::from_millis(100),
        "A's add waiting for the lock",
        || async {
            let n = psql(
                "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = 'mailbox'",
            )
            .await;
            (n == "1").then_some(())
        },
    )
    .await;
    let a_pid = cluster.servers[0].pid().expect("A runs");
    signal(a_pid, "STOP").await;
    input.write_all(b"COMMIT;\n").await.expect("write to psql");
    drop(input);
    within(TIMEOUT, "psql to finish", holder.wait())
        .await
        .expect("psql");

    // A is stopped inside its transaction, holding the app id's lock. B claims on the
    // same app id all the same, once PostgreSQL has ended A's idle transaction.
    let stopped = Instant::now();
    let b = Wormhole::create(&appid, &cluster.servers[1].url(), options()).expect("create");
    b.set_code(&code).expect("set_code");
    wormhole_tests::poll_until(
        TIMEOUT,
        Duration::from_millis(100),
        "B's claim while A is stopped",
        || async {
            let n = psql("SELECT COUNT(*) FROM nameplate_sides WHERE claimed").await;
            (n == "2").then_some(())
        },
    )
    .await;
    let waited = stopped.elapsed();
    eprintln!("B served {waited:?} after A stopped");
    // Either PostgreSQL ended A's idle transaction (after its 5 s timeout), or A's batch
    // had gone out whole, COMMIT included (the store pipelines it), and A's backend
    // finished it without A. Both leave B unblocked; nothing else may have.
    let log = cluster.pg.log_tail(200);
    assert!(
        log.contains("idle-in-transaction timeout") || waited < Duration::from_secs(5),
        "B waited {waited:?} and PostgreSQL did not end A's transaction:\n{log}"
    );
    signal(a_pid, "CONT").await;

    // A runs its add again on a new connection; the exchange completes.
    a.send_message(b"after the stop".to_vec()).expect("send");
    let got = within(TIMEOUT, "A's message at B", b.get_message())
        .await
        .expect("message");
    assert_eq!(got, b"after the stop");
    b.send_message(b"reply".to_vec()).expect("send");
    let got = within(TIMEOUT, "B's reply at A", a.get_message())
        .await
        .expect("message");
    assert_eq!(got, b"reply");
    within(TIMEOUT, "close", async {
        tokio::try_join!(a.close(), b.close())
    })
    .await
    .expect("both close happy");
}

/// The example configuration in `wormhole-server/deploy/haproxy.cfg` is valid HAProxy
/// (`haproxy -c`).
#[tokio::test]
async fn the_example_haproxy_configuration_is_valid() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wormhole-server/deploy/haproxy.cfg");
    let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("haproxy");
    let out = tokio::process::Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .await
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c {}: {}{}",
        cfg.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
