//! The PostgreSQL / HAProxy harness (`wormhole_tests::postgres`) itself: a throwaway cluster
//! survives restarts and a SIGKILL, the shared cluster hands out separate databases, the
//! postmaster dies with the thread that spawned it, and HAProxy routes around a backend
//! whose health check fails.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wormhole_tests::postgres::{Backend, Haproxy, Postgres, shared_cluster};
use wormhole_tests::{assert_loopback_only, within};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn postgres_survives_restart_and_kill9() {
    assert_loopback_only();
    let t0 = Instant::now();
    let mut pg = within(LIMIT, "postgres start", Postgres::start()).await;
    eprintln!(
        "postgres started in {:?} on port {}",
        t0.elapsed(),
        pg.port()
    );
    let url = pg.create_database("harness").await;
    assert_eq!(
        url,
        format!("postgres://wormhole@127.0.0.1:{}/harness", pg.port())
    );
    assert_eq!(pg.psql("harness", "select 41+1").await, "42");
    pg.psql(
        "harness",
        "create table t (v int); insert into t values (1), (2)",
    )
    .await;

    let port = pg.port();
    let t0 = Instant::now();
    within(LIMIT, "postgres restart", pg.restart()).await;
    eprintln!("postgres restarted in {:?}", t0.elapsed());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("harness", "select 41+1").await, "42");
    assert_eq!(pg.psql("harness", "select sum(v) from t").await, "3");

    let pid = pg.pid().expect("running");
    let t0 = Instant::now();
    within(LIMIT, "postgres kill -9", pg.kill9()).await;
    assert!(pg.pid().is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    within(LIMIT, "postgres start after kill -9", pg.start_again()).await;
    eprintln!("postgres killed and recovered in {:?}", t0.elapsed());
    assert_eq!(pg.psql("harness", "select 41+1").await, "42");
    assert_eq!(pg.psql("harness", "select sum(v) from t").await, "3");

    within(LIMIT, "postgres stop", pg.stop()).await;
    within(LIMIT, "postgres start again", pg.start_again()).await;
    assert_eq!(pg.psql("harness", "select count(*) from t").await, "2");
    assert!(
        pg.log_tail(50)
            .contains("database system is ready to accept connections")
    );
}

#[tokio::test]
async fn shared_cluster_hands_out_separate_databases() {
    assert_loopback_only();
    let (a, b) = tokio::task::spawn_blocking(|| {
        let pg = shared_cluster();
        (pg.fresh_database(), pg.fresh_database())
    })
    .await
    .unwrap();
    assert_ne!(a, b);
    let pg = shared_cluster();
    for url in [&a, &b] {
        let db = url.rsplit('/').next().unwrap();
        assert!(url.starts_with(&format!("postgres://wormhole@127.0.0.1:{}/t_", pg.port())));
        assert_eq!(pg.psql(db, "select current_database()"), db);
    }
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z") && !stat.contains(") X")
}

#[test]
fn postmaster_dies_with_its_spawning_thread() {
    assert_loopback_only();
    // Start a cluster on a thread with its own runtime and leak it: only the parent-death
    // signal can stop the postmaster once that thread is gone.
    let (pid, dir) = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pg = rt.block_on(Postgres::start());
        let leaked = (pg.pid().unwrap(), pg.dir().to_owned());
        std::mem::forget(pg);
        leaked
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "postmaster {pid} outlived its spawning thread"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A backend for HAProxy: writes `name\n` to every connection; its health port answers 200,
/// or 503 once `healthy` is cleared.
async fn backend(name: &'static str, healthy: Arc<AtomicBool>) -> Backend {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = Backend {
        port: main.local_addr().unwrap().port(),
        health_port: health.local_addr().unwrap().port(),
    };
    tokio::spawn(async move {
        loop {
            let (mut s, _) = main.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
            });
        }
    });
    tokio::spawn(async move {
        loop {
            let (mut s, _) = health.accept().await.unwrap();
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer: &[u8] = if healthy.load(Ordering::SeqCst) {
                    b"HTTP/1.0 200 OK\r\n\r\nok"
                } else {
                    b"HTTP/1.0 503 Service Unavailable\r\n\r\nno"
                };
                let _ = s.write_all(answer).await;
            });
        }
    });
    b
}

/// Connect through the proxy and read the backend's name.
async fn who_answers(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut out = String::new();
    within(LIMIT, "a backend's name", s.read_to_string(&mut out))
        .await
        .unwrap();
    out.trim().to_owned()
}

#[tokio::test]
async fn haproxy_routes_around_an_unhealthy_backend() {
    assert_loopback_only();
    let a_ok = Arc::new(AtomicBool::new(true));
    let b_ok = Arc::new(AtomicBool::new(true));
    let a = backend("a", a_ok).await;
    let b = backend("b", b_ok.clone()).await;
    let hap = within(LIMIT, "haproxy start", Haproxy::start(&[a, b])).await;
    assert_eq!(hap.url(), format!("ws://127.0.0.1:{}/v1", hap.port()));
    hap.wait_up(2, Duration::from_secs(10)).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(who_answers(hap.port()).await);
    }
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"], "round robin over both backends");

    b_ok.store(false, Ordering::SeqCst);
    hap.wait_up(1, Duration::from_secs(10)).await;
    let servers = hap.servers_up().await;
    assert_eq!(servers, [("s0".to_owned(), true), ("s1".to_owned(), false)]);
    for _ in 0..6 {
        assert_eq!(who_answers(hap.port()).await, "a");
    }

    b_ok.store(true, Ordering::SeqCst);
    hap.wait_up(2, Duration::from_secs(10)).await;
    assert!(
        hap.log_tail(20).contains("is DOWN"),
        "log: {}",
        hap.log_tail(20)
    );
}
