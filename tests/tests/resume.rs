//! Resuming an interrupted file or directory transfer between two of our CLIs (issue 20):
//! either side killed with SIGKILL or stopped with Ctrl-C at several points of a transfer,
//! then the same file sent again with a new code; a different file of the same name; a
//! tampered partial file; `--no-resume`; and a reference sender, with which nothing is
//! kept (resume is negotiated through `app_versions`, which the reference does not offer).
//!
//! The data crosses our relay through a throttling proxy (both sides `--no-listen`), so a
//! transfer lasts long enough to be cut at a chosen point on any machine.
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wormhole_tests::{
    CliOutput, OurServer, RunningCli, TempDir, assert_loopback_only, our_cli, ref_cli, within,
};

/// Bytes per second the proxy lets through in each direction.
const RATE: u64 = 6 << 20;

/// A proxy in front of the relay that forwards at most [`RATE`] bytes per second each way.
/// Returns its `tcp:HOST:PORT` hint.
async fn throttled_relay(relay_hint: &str) -> String {
    let upstream = relay_hint.trim_start_matches("tcp:").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hint = format!("tcp:{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pump(cr, sw), pump(sr, cw));
            });
        }
    });
    hint
}

async fn pump(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_micros(n as u64 * 1_000_000 / RATE)).await;
    }
    let _ = to.shutdown().await;
}

/// `n` bytes that differ for each `seed` (xorshift).
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// The hidden files in `dir` whose names contain `wormhole-`: (name, length).
fn partials(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .filter(|(n, _)| n.starts_with('.') && n.contains("wormhole-"))
        .collect();
    v.sort();
    v
}

/// How an attempt is cut: once the largest hidden file in the receiver's directory holds
/// this many bytes more than when the attempt started (what is in flight when a process
/// dies still arrives, so absolute thresholds could be passed before an attempt begins).
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// `kill -KILL` the receiver.
    KillReceiver(u64),
    /// `kill -KILL` the sender likewise.
    KillSender(u64),
    /// Ctrl-C (SIGINT) the receiver likewise.
    InterruptReceiver(u64),
}

struct Setup {
    _server: OurServer,
    url: String,
    relay: String,
    send_dir: TempDir,
    recv_dir: TempDir,
}

async fn setup(name: &str) -> Setup {
    assert_loopback_only();
    let server = OurServer::start().await;
    let relay = throttled_relay(&server.relay_hint()).await;
    Setup {
        url: server.url(),
        relay,
        _server: server,
        send_dir: TempDir::new(&format!("{name}-send")),
        recv_dir: TempDir::new(&format!("{name}-recv")),
    }
}

impl Setup {
    /// Send `what` (in the send directory) from our CLI to our CLI with a fresh code,
    /// cutting the transfer as `cut` says; the receiver gets `extra` flags. Returns both
    /// outputs.
    async fn attempt(
        &self,
        what: &str,
        attempt: usize,
        cut: Option<Cut>,
        extra: &[&str],
    ) -> (CliOutput, CliOutput) {
        let code = format!("{}-purple-sausages", 10 + attempt);
        let helper = ["--transit-helper", self.relay.as_str()];
        let send_args = [
            &helper[..],
            &["send", "--no-qr", "--no-listen", "--code", &code, what],
        ]
        .concat();
        let mut send = our_cli(&self.url, &send_args);
        send.current_dir(self.send_dir.path());
        let mut s = RunningCli::spawn("our send", send);
        s.wait_for_code().await;
        let recv_args = [
            &helper[..],
            &["receive", "--accept-file", "--no-listen"],
            extra,
            &[code.as_str()],
        ]
        .concat();
        let mut recv = our_cli(&self.url, &recv_args);
        recv.current_dir(self.recv_dir.path());
        let r = RunningCli::spawn("our receive", recv);
        if let Some(cut) = cut {
            let (at, victim, signal) = match cut {
                Cut::KillReceiver(at) => (at, &r, "KILL"),
                Cut::KillSender(at) => (at, &s, "KILL"),
                Cut::InterruptReceiver(at) => (at, &r, "INT"),
            };
            let dir = self.recv_dir.path();
            let at = held(dir) + at;
            within(
                Duration::from_secs(120),
                "the partial file to grow",
                async {
                    while partials(dir).iter().map(|(_, l)| *l).max().unwrap_or(0) < at {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                },
            )
            .await;
            victim.signal(signal).await;
        }
        let (s, r) = tokio::join!(s.finish(), r.finish());
        (s, r)
    }
}

const SIZE: usize = 24 << 20;

/// The largest partial file in `dir`.
fn held(dir: &Path) -> u64 {
    partials(dir).iter().map(|(_, l)| *l).max().unwrap_or(0)
}

fn resumed(o: &CliOutput) -> bool {
    o.stderr.contains("Resuming after ")
}

/// A file cut three times (receiver killed, sender killed, receiver interrupted), each time
/// further on, then completed: every attempt continues from the data the receiver holds,
/// and the result is the sender's file, with no hidden file left.
#[tokio::test]
async fn file_resumes_after_either_side_is_cut() {
    let t = setup("resume-file").await;
    let content = data(SIZE, 1);
    std::fs::write(t.send_dir.path().join("big.bin"), &content).unwrap();
    let mut before = 0;
    for (i, cut) in [
        Cut::KillReceiver(2 << 20),
        Cut::KillSender(2 << 20),
        Cut::InterruptReceiver(2 << 20),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, r) = t.attempt("big.bin", i, Some(cut), &[]).await;
        assert!(
            s.code() != Some(0) || r.code() != Some(0),
            "{cut:?}: {s}\n{r}"
        );
        let now = held(t.recv_dir.path());
        assert!(
            now > before && now < SIZE as u64,
            "{cut:?}: partial {now} bytes, {before} before\n{s}\n{r}"
        );
        if i > 0 {
            assert!(resumed(&r) && resumed(&s), "{cut:?}: not resumed\n{s}\n{r}");
        }
        assert!(!t.recv_dir.path().join("big.bin").exists());
        before = now;
    }
    let (s, r) = t.attempt("big.bin", 3, None, &[]).await;
    s.assert_success();
    r.assert_success();
    assert!(resumed(&r), "{r}");
    assert!(
        r.stderr.contains(&format!("Resuming after {before} bytes")),
        "{r}"
    );
    assert_eq!(
        std::fs::read(t.recv_dir.path().join("big.bin")).unwrap(),
        content
    );
    assert_eq!(partials(t.recv_dir.path()), vec![]);
}

/// A cut directory transfer resumes too (its zip stream is the same when made again), and
/// unpacks to the same tree.
#[tokio::test]
async fn directory_resumes() {
    let t = setup("resume-dir").await;
    let tree = t.send_dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/empty")).unwrap();
    let files = [
        ("a.bin", 3 << 20, 2),
        ("sub/b.bin", 4 << 20, 3),
        ("c.txt", 10, 4),
    ];
    for (name, n, seed) in files {
        std::fs::write(tree.join(name), data(n, seed)).unwrap();
    }
    let (_s, r) = t
        .attempt("tree", 0, Some(Cut::KillReceiver(4 << 20)), &[])
        .await;
    assert_ne!(r.code(), Some(0), "{r}");
    assert!(held(t.recv_dir.path()) >= 4 << 20);
    let (s, r) = t.attempt("tree", 1, None, &[]).await;
    s.assert_success();
    r.assert_success();
    assert!(resumed(&r) && resumed(&s), "{s}\n{r}");
    let got = t.recv_dir.path().join("tree");
    for (name, n, seed) in files {
        assert_eq!(
            std::fs::read(got.join(name)).unwrap(),
            data(n, seed),
            "{name}"
        );
    }
    assert!(got.join("sub/empty").is_dir());
    assert_eq!(partials(t.recv_dir.path()), vec![]);
}

/// The receiver never resumes into a different file: another file of the same name and
/// size starts over (the sender's prefix hash differs), as does a partial file changed on
/// disk; a different size is a different partial file. Each result is the new file.
#[tokio::test]
async fn different_or_tampered_data_starts_over() {
    let t = setup("resume-other").await;
    let path = t.send_dir.path().join("f.bin");
    let recv = t.recv_dir.path().to_owned();
    let done = recv.join("f.bin");
    let check = |s: &CliOutput, r: &CliOutput, want: &[u8]| {
        s.assert_success();
        r.assert_success();
        assert!(!resumed(r) && !resumed(s), "{s}\n{r}");
        assert_eq!(std::fs::read(&done).unwrap(), want);
        std::fs::remove_file(&done).unwrap();
    };

    // Same name and size, other content.
    std::fs::write(&path, data(SIZE, 10)).unwrap();
    t.attempt("f.bin", 0, Some(Cut::KillReceiver(3 << 20)), &[])
        .await;
    assert!(held(&recv) >= 3 << 20);
    let other = data(SIZE, 11);
    std::fs::write(&path, &other).unwrap();
    let (s, r) = t.attempt("f.bin", 1, None, &[]).await;
    check(&s, &r, &other);
    assert_eq!(partials(&recv), vec![]);

    // The partial file altered on disk (one byte inside the prefix).
    t.attempt("f.bin", 2, Some(Cut::KillReceiver(3 << 20)), &[])
        .await;
    let (name, _) = partials(&recv).pop().expect("a partial file");
    let mut bytes = std::fs::read(recv.join(&name)).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(recv.join(&name), bytes).unwrap();
    let (s, r) = t.attempt("f.bin", 3, None, &[]).await;
    check(&s, &r, &other);
    assert_eq!(partials(&recv), vec![]);

    // Same name, another size: the old partial is not used.
    t.attempt("f.bin", 4, Some(Cut::KillReceiver(3 << 20)), &[])
        .await;
    let shorter = data(SIZE - 1, 12);
    std::fs::write(&path, &shorter).unwrap();
    let (s, r) = t.attempt("f.bin", 5, None, &[]).await;
    check(&s, &r, &shorter);
}

/// `--no-resume` keeps nothing of a cut transfer and does not use an earlier partial file.
#[tokio::test]
async fn no_resume_keeps_nothing() {
    let t = setup("resume-off").await;
    let content = data(SIZE, 20);
    std::fs::write(t.send_dir.path().join("g.bin"), &content).unwrap();
    t.attempt("g.bin", 0, Some(Cut::KillReceiver(2 << 20)), &[])
        .await;
    let kept = partials(t.recv_dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    // Interrupted with --no-resume: its own temporary file is removed.
    let (_s, r) = t
        .attempt(
            "g.bin",
            1,
            Some(Cut::InterruptReceiver(2 << 20)),
            &["--no-resume"],
        )
        .await;
    assert_ne!(r.code(), Some(0), "{r}");
    assert_eq!(partials(t.recv_dir.path()), kept, "{r}");
    let (s, r) = t.attempt("g.bin", 2, None, &["--no-resume"]).await;
    s.assert_success();
    r.assert_success();
    assert!(!resumed(&r), "{r}");
    assert_eq!(
        std::fs::read(t.recv_dir.path().join("g.bin")).unwrap(),
        content
    );
}

/// With the reference CLI 0.24.0 as the sender nothing changes: our receiver asks for no
/// resume, and a cut transfer leaves no partial file behind.
#[tokio::test]
async fn reference_sender_is_not_resumed() {
    let t = setup("resume-ref").await;
    let content = data(SIZE, 30);
    std::fs::write(t.send_dir.path().join("h.bin"), &content).unwrap();
    let code = "40-purple-sausages";
    let run = |cut: bool| {
        let t = &t;
        async move {
            let helper = ["--transit-helper", t.relay.as_str()];
            let mut send = ref_cli(
                &t.url,
                &[
                    &helper[..],
                    &[
                        "send",
                        "--hide-progress",
                        "--no-listen",
                        "--code",
                        code,
                        "h.bin",
                    ],
                ]
                .concat(),
            );
            send.current_dir(t.send_dir.path());
            let mut s = RunningCli::spawn("reference send", send);
            s.wait_for_code().await;
            let args = [
                &helper[..],
                &["receive", "--accept-file", "--no-listen", code],
            ]
            .concat();
            let mut recv = our_cli(&t.url, &args);
            recv.current_dir(t.recv_dir.path());
            let r = RunningCli::spawn("our receive", recv);
            if cut {
                let dir = t.recv_dir.path().to_owned();
                within(Duration::from_secs(120), "data to arrive", async {
                    while !std::fs::read_dir(&dir)
                        .unwrap()
                        .flatten()
                        .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
                r.signal("INT").await;
            }
            tokio::join!(s.finish(), r.finish())
        }
    };
    let (_s, r) = run(true).await;
    assert_ne!(r.code(), Some(0), "{r}");
    let left: Vec<PathBuf> = std::fs::read_dir(t.recv_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "{r}");
    let (s, r) = run(false).await;
    s.assert_success();
    r.assert_success();
    assert!(!resumed(&r), "{r}");
    assert_eq!(
        std::fs::read(t.recv_dir.path().join("h.bin")).unwrap(),
        content
    );
}
