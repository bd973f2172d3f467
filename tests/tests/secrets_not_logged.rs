//! Secrets never reach a log. A full exchange runs with every component at its most
//! verbose level (`trace`): the library and the mailbox server in this process under one
//! capturing subscriber, then our CLI and our server binary with `RUST_LOG=trace`. Neither
//! the code's words, the agreed key nor the plaintext may appear anywhere in what they
//! log; the code may appear only where the CLI shows it to its user on purpose, and the
//! text only on the receiver's standard output.
//!
//! (Serialized wormhole blobs join the list when serialization lands.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wormhole_core::{Options, Wormhole};
use wormhole_tests::{OurServer, RunningCli, assert_loopback_only, our_cli, within};

const WORDS: &str = "crumpet-marmalade";
const TEXT: &str = "plaintext-7f3a9c-must-not-be-logged";

/// Everything the process logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The forms a 32-byte key could take in a log line: hex, and Rust's `Debug` of a byte
/// array (prefix).
fn key_forms(key: &[u8]) -> Vec<String> {
    let list: Vec<String> = key[..8].iter().map(u8::to_string).collect();
    vec![
        hex::encode(key),
        hex::encode(&key[..12]),
        format!("[{}", list.join(", ")),
    ]
}

#[track_caller]
fn assert_secret_free(what: &str, log: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !log.contains(s.as_str()),
            "{what} contains the secret {s:?}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_at_trace_level() {
    assert_loopback_only();

    // ---- the library and the server, in process, under one subscriber ------------------
    let buf = Captured::default();
    let sink = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    let server = wormhole_server::MailboxServer::bind("127.0.0.1:0", Default::default())
        .await
        .expect("bind")
        .spawn();
    let url = server.url();
    let code = format!("4242-{WORDS}");
    let appid = "example.com/secrets-not-logged";
    let a = Wormhole::create(appid, &url, Options::default()).expect("create a");
    let b = Wormhole::create(appid, &url, Options::default()).expect("create b");
    a.set_code(&code).expect("code a");
    b.set_code(&code).expect("code b");
    let step = Duration::from_secs(30);
    let key = within(step, "the key", a.get_unverified_key())
        .await
        .expect("key");
    a.send_message(TEXT.as_bytes().to_vec()).expect("send");
    let got = within(step, "the message", b.get_message())
        .await
        .expect("message");
    assert_eq!(got, TEXT.as_bytes());
    b.send_message(b"ack".to_vec()).expect("reply");
    within(step, "the reply", a.get_message())
        .await
        .expect("reply");
    let transit = a.derive_key("some/purpose", 32).expect("derive");
    within(step, "close a", a.close()).await.expect("close a");
    within(step, "close b", b.close()).await.expect("close b");
    server.shutdown().await;

    let log = String::from_utf8_lossy(&buf.0.lock().expect("log")).into_owned();
    // The capture works and saw both the library and the server.
    assert!(
        log.contains("DEBUG"),
        "nothing logged at debug level:\n{log}"
    );
    assert!(log.contains("wormhole_core"), "no library lines:\n{log}");
    assert!(log.contains("wormhole_server"), "no server lines:\n{log}");
    let mut secrets = vec![
        WORDS.to_owned(),
        "crumpet".to_owned(),
        code.clone(),
        TEXT.to_owned(),
        hex::encode(TEXT),
    ];
    secrets.extend(key_forms(&key.0));
    secrets.extend(key_forms(&transit));
    assert_secret_free("the in-process log", &log, &secrets);

    // ---- the CLI and the server binary, RUST_LOG=trace ---------------------------------
    let server = OurServer::start_logging("trace").await;
    let url = server.url();
    let mut send = our_cli(
        &url,
        &[
            "send",
            "--hide-progress",
            "--no-qr",
            "--code",
            &code,
            "--text",
            TEXT,
        ],
    );
    send.env("RUST_LOG", "trace");
    let mut s = RunningCli::spawn("sender", send);
    s.wait_for_code().await;
    let mut recv = our_cli(&url, &["receive", "--hide-progress", &code]);
    recv.env("RUST_LOG", "trace");
    let r = RunningCli::spawn("receiver", recv);
    let (so, ro) = tokio::join!(s.finish(), r.finish());
    so.assert_success();
    ro.assert_success();
    let (_, server_log) = server.terminate().await;

    assert!(ro.stdout.contains(TEXT), "the text was not received: {ro}");
    assert!(
        ro.stderr.contains("DEBUG") && so.stderr.contains("DEBUG"),
        "RUST_LOG=trace logged nothing:\n{so}\n{ro}"
    );
    assert!(server_log.contains("INFO"), "the server logged nothing");
    let text_and_words = [WORDS.to_owned(), TEXT.to_owned(), hex::encode(TEXT)];
    assert_secret_free("the server's log", &server_log, &text_and_words);
    assert_secret_free("the receiver's stderr", &ro.stderr, &text_and_words);
    assert_secret_free("the sender's stdout", &so.stdout, &text_and_words);
    // The sender shows its code on purpose, on the lines meant for its user; no log line
    // (tracing's lines carry a level) repeats it.
    for line in so.stderr.lines() {
        if line.contains(WORDS) {
            assert!(
                !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .iter()
                    .any(|l| line.contains(l)),
                "a log line carries the code: {line}"
            );
        }
    }
    assert_secret_free(
        "the sender's stderr",
        &so.stderr,
        &[TEXT.to_owned(), hex::encode(TEXT)],
    );
}
