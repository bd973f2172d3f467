//! A Dilation peer on our library with the command line and JSON output of
//! `tests/scripts/ref_dilate.py` (scenarios `serve` and `send N`), so the Dilation
//! benchmark (`benches/dilation.py`) can run ours and the reference's the same way.
//!
//!     dilation_peer MAILBOX_URL APPID (--code CODE | --allocate) [--relay tcp:H:P]
//!                   [--no-listen] [--crc32] [--side HEX] (serve | send N)
//!
//! `serve` listens for `sink` and prints `{"sink": SCID, "bytes": N, "sha256": HEX,
//! "first": T, "last": T}` (Unix seconds of the first and last byte) when the peer closes
//! it; `send N` writes N bytes of a counter pattern into the peer's `sink` and prints
//! `{"sent": N, "sha256": HEX}`. Both print `{"code": ...}` and `{"dilated": true}`, and
//! exit once stdin closes. `--crc32` reports `"crc32"` (CRC-32, much cheaper) instead of
//! `"sha256"`. Status events are printed as `{"status": "connected" | "reconnecting",
//! "generation": G, "t": T}`; `--side` picks our Dilation side (the larger leads). The
//! stream's 256 KiB blocks each begin with their index (little-endian u64), so blocks
//! that were swapped, lost or repeated change the digest.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wormhole_core::dilation::handle::DilationOptions;
use wormhole_core::dilation::manager::Event;
use wormhole_core::{Options, Wormhole};

fn out(v: serde_json::Value) {
    println!("{v}");
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Returns once stdin is closed (the harness's signal to stop).
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
}

/// The stream's digest: SHA-256, or CRC-32 for benchmarks.
enum Check {
    Sha256(sha2::Sha256),
    Crc32(crc32fast::Hasher),
}

impl Check {
    fn new(crc: bool) -> Check {
        if crc {
            Check::Crc32(crc32fast::Hasher::new())
        } else {
            Check::Sha256(sha2::Sha256::new())
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Check::Sha256(h) => h.update(b),
            Check::Crc32(h) => h.update(b),
        }
    }

    /// The JSON key and the digest.
    fn finish(self) -> (&'static str, String) {
        match self {
            Check::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            Check::Crc32(h) => ("crc32", format!("{:08x}", h.finalize())),
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: dilation_peer MAILBOX APPID (--code CODE | --allocate) [--relay R] [--no-listen] (serve | send N)"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let url = args.remove(0);
    let appid = args.remove(0);
    let mut code = None;
    let mut crc = false;
    let mut o = DilationOptions::default();
    while args.first().is_some_and(|a| a.starts_with("--")) {
        match args.remove(0).as_str() {
            "--code" if !args.is_empty() => code = Some(args.remove(0)),
            "--allocate" => code = None,
            "--relay" if !args.is_empty() => o.relay = Some(args.remove(0)),
            "--no-listen" => o.no_listen = true,
            "--crc32" => crc = true,
            "--side" if !args.is_empty() => o.side = Some(args.remove(0)),
            _ => usage(),
        }
    }
    let scenario = if args.is_empty() {
        usage()
    } else {
        args.remove(0)
    };
    let w = Wormhole::create(
        &appid,
        &url,
        Options {
            dilation: true,
            ..Default::default()
        },
    )
    .expect("create");
    match &code {
        Some(c) => w.set_code(c).expect("set_code"),
        None => w.allocate_code(2).expect("allocate_code"),
    }
    out(serde_json::json!({"code": w.get_code().await.expect("code")}));
    let d = std::sync::Arc::new(w.dilate(o).expect("dilate"));
    // Every status event is printed with its time; the first Connected is "dilated".
    let (up, mut first) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let d = d.clone();
        async move {
            loop {
                match d.next_event().await {
                    Some(Event::Connected {
                        generation, path, ..
                    }) => {
                        out(
                            serde_json::json!({"status": "connected", "generation": generation,
                            "relay": path.relay, "t": now()}),
                        );
                        let _ = up.send(true);
                    }
                    Some(Event::Reconnecting { generation }) => {
                        out(serde_json::json!({"status": "reconnecting",
                            "generation": generation, "t": now()}));
                    }
                    Some(Event::Failed(e)) => {
                        out(serde_json::json!({"error": e.to_string()}));
                        std::process::exit(1)
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }
    });
    let dilated = async move {
        if first.wait_for(|up| *up).await.is_err() {
            std::process::exit(1)
        }
    };
    match scenario.as_str() {
        "serve" => {
            let mut sinks = d.listen("sink").expect("listen");
            dilated.await;
            out(serde_json::json!({"dilated": true}));
            tokio::spawn(async move {
                while let Some(mut s) = sinks.accept().await {
                    tokio::spawn(async move {
                        let mut hash = Check::new(crc);
                        let mut buf = vec![0u8; 1 << 20];
                        let (mut n, mut first, mut last) = (0usize, 0.0, 0.0);
                        loop {
                            match s.read(&mut buf).await {
                                Ok(0) => break,
                                Ok(k) => {
                                    if n == 0 {
                                        first = now();
                                    }
                                    n += k;
                                    last = now();
                                    hash.update(&buf[..k]);
                                }
                                Err(e) => {
                                    out(serde_json::json!({"error": e.to_string()}));
                                    return;
                                }
                            }
                        }
                        let (key, digest) = hash.finish();
                        let mut v = serde_json::json!({"sink": s.id(), "bytes": n,
                        "first": first, "last": last});
                        v[key] = digest.into();
                        out(v);
                    });
                }
            });
            stdin_closed().await;
        }
        "send" => {
            let total: usize = args
                .first()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| usage());
            dilated.await;
            out(serde_json::json!({"dilated": true}));
            let mut s = d.connect("sink").await.expect("connect");
            let mut block: Vec<u8> = (0..(256usize << 10)).map(|j| (j % 253) as u8).collect();
            let mut hash = Check::new(crc);
            let mut left = total;
            let mut index = 0u64;
            while left > 0 {
                block[..8].copy_from_slice(&index.to_le_bytes());
                index += 1;
                let k = left.min(block.len());
                hash.update(&block[..k]);
                s.write_all(&block[..k]).await.expect("write");
                left -= k;
            }
            s.shutdown().await.expect("close");
            let (key, digest) = hash.finish();
            let mut v = serde_json::json!({"sent": total});
            v[key] = digest.into();
            out(v);
            stdin_closed().await;
        }
        _ => usage(),
    }
    let _ = w.close().await;
}
