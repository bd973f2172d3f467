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
    write_stream_at(s, total, None).await
}

/// [`write_stream`] at no more than `rate` bytes per second (a stream that is still under
/// way when a test's faults come).
pub async fn write_stream_at(s: &mut Subchannel, total: usize, rate: Option<f64>) -> String {
    let mut block = stream_block();
    let mut hash = sha2::Sha256::new();
    let mut left = total;
    let mut index = 0u64;
    let start = std::time::Instant::now();
    while left > 0 {
        block[..8].copy_from_slice(&index.to_le_bytes());
        index += 1;
        let n = left.min(block.len());
        hash.update(&block[..n]);
        s.write_all(&block[..n]).await.unwrap();
        left -= n;
        pace(start, total - left, rate).await;
    }
    s.shutdown().await.unwrap();
    hex::encode(hash.finalize())
}

/// Sleep until `done` bytes are due at `rate` bytes per second since `start`.
async fn pace(start: std::time::Instant, done: usize, rate: Option<f64>) {
    if let Some(rate) = rate {
        let due = start + std::time::Duration::from_secs_f64(done as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Read `s` to its end; returns the byte count and SHA-256.
pub async fn read_stream(s: &mut Subchannel) -> (usize, String) {
    read_stream_at(s, None).await
}

/// [`read_stream`] at no more than `rate` bytes per second (flow control then holds the
/// sender back, so the stream is still under way when a test's faults come).
pub async fn read_stream_at(s: &mut Subchannel, rate: Option<f64>) -> (usize, String) {
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
        pace(start, total, rate).await;
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
