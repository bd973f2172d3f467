//! Helpers of the Dilation tests: pairs of our wormholes, the reference peer script, the
//! first `Connected` event, streams hashed on both ends, and a TCP proxy that resets its
//! connections on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wormhole_core::dilation::handle::{Dilated, DilationOptions, Subchannel};
use wormhole_core::dilation::manager::Event as DEvent;
use wormhole_core::{Options, Wormhole};

use crate::{OurServer, TIMEOUT, assert_loopback_only, test_appid, within};

/// Options of a wormhole that may dilate.
pub fn opts() -> Options {
    Options {
        dilation: true,
        ..Default::default()
    }
}

/// Two wormholes joined by one code, both dilated with `a_opts` / `b_opts`.
pub async fn pair(
    server: &OurServer,
    name: &str,
    a_opts: DilationOptions,
    b_opts: DilationOptions,
) -> (Wormhole, Wormhole, Dilated, Dilated) {
    assert_loopback_only();
    let appid = test_appid(name);
    let a = Wormhole::create(&appid, &server.url(), opts()).unwrap();
    a.allocate_code(2).unwrap();
    let code = within(TIMEOUT, "A's code", a.get_code()).await.unwrap();
    let b = Wormhole::create(&appid, &server.url(), opts()).unwrap();
    b.set_code(&code).unwrap();
    let da = a.dilate(a_opts).unwrap();
    let db = b.dilate(b_opts).unwrap();
    (a, b, da, db)
}

/// Wait for the first `Connected` event; returns whether it went through a relay.
pub async fn connected(d: &Dilated, who: &str) -> bool {
    within(TIMEOUT, &format!("{who} connected"), async {
        loop {
            match d.next_event().await {
                Some(DEvent::Connected { path, .. }) => return path.relay,
                Some(DEvent::Failed(e)) => panic!("{who}: dilation failed: {e}"),
                Some(_) => {}
                None => panic!("{who}: dilation ended"),
            }
        }
    })
    .await
}

/// The larger side leads (PROTOCOL §9.4): these make our role certain.
pub const LEADER_SIDE: &str = "ffffffffffffffff";
pub const FOLLOWER_SIDE: &str = "0000000000000000";

/// `tests/scripts/ref_dilate.py` on the reference library: JSON lines on stdout, runs
/// until its stdin closes.
pub struct RefPeer {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: Vec<serde_json::Value>,
}

impl RefPeer {
    pub fn spawn(url: &str, appid: &str, args: &[&str]) -> RefPeer {
        let mut cmd = tokio::process::Command::new(crate::ref_venv().join("bin/python"));
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/ref_dilate.py"
        ))
        .arg(url)
        .arg(appid)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().expect("python");
        let stdout = child.stdout.take().unwrap();
        RefPeer {
            child,
            lines: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)),
            seen: Vec::new(),
        }
    }

    /// The first line (from now on) with key `key`; panics on an `error` line.
    pub async fn expect(&mut self, key: &str) -> serde_json::Value {
        within(TIMEOUT, &format!("the reference's {key:?}"), async {
            loop {
                let line =
                    self.lines.next_line().await.unwrap().unwrap_or_else(|| {
                        panic!("the reference peer ended; it said {:?}", self.seen)
                    });
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("not JSON from the reference peer: {line}"));
                self.seen.push(v.clone());
                if let Some(e) = v.get("error") {
                    panic!("the reference peer failed: {e}; it said {:?}", self.seen);
                }
                if v.get(key).is_some() {
                    return v;
                }
            }
        })
        .await
    }

    /// The code it printed first.
    pub async fn code(&mut self) -> String {
        self.expect("code").await["code"]
            .as_str()
            .expect("a code")
            .to_owned()
    }

    /// Its `sink` report: `bytes` arrived with SHA-256 `digest` (what we wrote).
    pub async fn expect_sink(&mut self, bytes: usize, digest: &str) {
        let report = self.expect("sink").await;
        assert_eq!(report["bytes"].as_u64(), Some(bytes as u64), "{report}");
        assert_eq!(report["sha256"].as_str(), Some(digest), "{report}");
    }

    /// Its `sent` report, against what we read: `(bytes, SHA-256)`, of which `want` bytes
    /// were expected.
    pub async fn expect_sent(&mut self, got: (usize, String), want: usize) {
        let report = self.expect("sent").await;
        assert_eq!(got.0, want, "bytes received");
        assert_eq!(report["sha256"].as_str(), Some(got.1.as_str()), "{report}");
    }

    /// Close its stdin (it closes its wormhole) and wait for it to exit.
    pub async fn finish(mut self) {
        drop(self.child.stdin.take());
        let st = within(TIMEOUT, "the reference peer's exit", self.child.wait())
            .await
            .unwrap();
        assert!(st.success(), "the reference peer exited with {st}");
    }
}

pub fn side(leader: bool) -> Option<String> {
    Some(if leader { LEADER_SIDE } else { FOLLOWER_SIDE }.to_string())
}

/// Our wormhole joins the reference's code and dilates.
pub async fn ours_with(
    url: &str,
    appid: &str,
    code: &str,
    o: DilationOptions,
) -> (Wormhole, Dilated) {
    let w = Wormhole::create(appid, url, opts()).unwrap();
    w.set_code(code).unwrap();
    let d = w.dilate(o).unwrap();
    (w, d)
}

/// Bytes of the test streams: a counter pattern.
pub fn stream_block() -> Vec<u8> {
    (0..(256usize << 10)).map(|j| (j % 253) as u8).collect()
}

/// Write `total` bytes of [`stream_block`]s, each starting with its index (little-endian
/// u64, so swapped, lost or repeated blocks change the digest), through `AsyncWrite`, then
/// close; returns the SHA-256 of what was written.
pub async fn write_stream(s: &mut Subchannel, total: usize) -> String {
    write_paced(s, Some(total), None).await.1
}

/// A stream slowed down until a test's faults are over: `rate` bytes per second until
/// `until` is set, full speed after.
#[derive(Clone)]
pub struct Pace {
    /// Bytes per second while `until` is unset.
    pub rate: f64,
    /// Set by the test once its faults are over.
    pub until: Arc<std::sync::atomic::AtomicBool>,
}

impl Pace {
    /// `rate` bytes per second until [`Pace::release`].
    pub fn new(rate: f64) -> Pace {
        Pace {
            rate,
            until: Arc::default(),
        }
    }

    /// The faults are over: full speed from now on.
    pub fn release(&self) {
        self.until.store(true, Ordering::SeqCst);
    }

    fn released(&self) -> bool {
        self.until.load(Ordering::SeqCst)
    }

    /// Sleep until `done` bytes are due since `start` (nothing once released).
    async fn wait(&self, start: std::time::Instant, done: usize) {
        if !self.released() {
            let due = start + std::time::Duration::from_secs_f64(done as f64 / self.rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Write [`stream_block`]s (indexed as in [`write_stream`]): `total` bytes, or with no
/// total until `pace` is released plus 4 MiB; then close. Returns the byte count and
/// SHA-256 of what was written.
pub async fn write_paced(
    s: &mut Subchannel,
    total: Option<usize>,
    pace: Option<&Pace>,
) -> (usize, String) {
    let mut block = stream_block();
    let mut hash = sha2::Sha256::new();
    let mut written = 0usize;
    let mut index = 0u64;
    let mut end = total;
    let start = std::time::Instant::now();
    loop {
        if end.is_none() && pace.is_none_or(Pace::released) {
            end = Some(written + (4 << 20));
        }
        let n = match end {
            Some(e) if written >= e => break,
            Some(e) => (e - written).min(block.len()),
            None => block.len(),
        };
        block[..8].copy_from_slice(&index.to_le_bytes());
        index += 1;
        hash.update(&block[..n]);
        s.write_all(&block[..n]).await.unwrap();
        written += n;
        if let Some(p) = pace {
            p.wait(start, written).await;
        }
    }
    s.shutdown().await.unwrap();
    (written, hex::encode(hash.finalize()))
}

/// Read `s` to its end; returns the byte count and SHA-256.
pub async fn read_stream(s: &mut Subchannel) -> (usize, String) {
    read_paced(s, None).await
}

/// [`read_stream`], slowed down by `pace` (flow control then holds the sender back, so
/// the stream is still under way when a test's faults come).
pub async fn read_paced(s: &mut Subchannel, pace: Option<&Pace>) -> (usize, String) {
    let mut hash = sha2::Sha256::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 256 << 10];
    let start = std::time::Instant::now();
    loop {
        let k = within(TIMEOUT, "stream bytes", s.read(&mut buf))
            .await
            .unwrap();
        if k == 0 {
            break;
        }
        total += k;
        hash.update(&buf[..k]);
        if let Some(p) = pace {
            p.wait(start, total).await;
        }
    }
    (total, hex::encode(hash.finalize()))
}

/// A TCP proxy on 127.0.0.1 in front of `target` that resets every connection it carries
/// when told to ([`CutProxy::cut`]): both ends see a reset, as with `ss -K`.
pub struct CutProxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    carried: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Start it in front of `target` (`host:port`).
    pub async fn start(target: &str) -> CutProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (cut, _) = watch::channel(0u64);
        let carried = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (cut, carried, target) = (cut.clone(), carried.clone(), target.to_owned());
            async move {
                while let Ok((mut a, _)) = l.accept().await {
                    let mut rx = cut.subscribe();
                    let (target, carried) = (target.clone(), carried.clone());
                    tokio::spawn(async move {
                        let Ok(mut b) = TcpStream::connect(&target).await else {
                            return;
                        };
                        carried.fetch_add(1, Ordering::SeqCst);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                            _ = rx.changed() => {
                                for s in [&a, &b] {
                                    let _ = socket2_linger_zero(s);
                                }
                            }
                        }
                    });
                }
            }
        });
        CutProxy {
            addr,
            cut,
            carried,
            task,
        }
    }

    /// `tcp:127.0.0.1:PORT`, a relay hint that goes through the proxy.
    pub fn hint(&self) -> String {
        format!("tcp:{}", self.addr)
    }

    /// Reset every connection open now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// How many connections it has carried.
    pub fn carried(&self) -> usize {
        self.carried.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Linger 0: closing the socket then resets the connection.
fn socket2_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO))
}

/// The peer's first `sink` subchannel on `d` (listening for it first).
pub async fn accept_sink(d: &Dilated) -> Subchannel {
    let mut sinks = d.listen("sink").unwrap();
    within(TIMEOUT, "the sink subchannel", sinks.accept())
        .await
        .unwrap()
}
