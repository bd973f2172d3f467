//! End-to-end tests of our `wormhole` CLI against the reference CLI (magic-wormhole 0.24.0),
//! through the reference mailbox server 0.8.0.
//!
//! Each test starts its own server after checking it runs in a loopback-only network
//! namespace. Run them with `scripts/test.sh`.

use tokio::net::TcpListener;
use wormhole_tests::{
    CliOutput, MailboxServer, RunningCli, TIMEOUT, assert_loopback_only, free_port, our_cli,
    ref_cli, reference_text_stdout, run_cli, within,
};

/// Reference `send` arguments: quiet, no QR code.
fn ref_send_args<'a>(text: &'a str, code: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["send", "--hide-progress", "--no-qr", "--text", text];
    if let Some(c) = code {
        args.extend(["--code", c]);
    }
    args
}

fn our_send_args<'a>(text: &'a str, code: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["send", "--text", text];
    if let Some(c) = code {
        args.extend(["--code", c]);
    }
    args
}

/// The receiver printed the text exactly as the reference receiver does: Python's
/// `print(repr(text)[1:-1])`, i.e. plain text plus a newline, with control characters,
/// backslashes and some quotes escaped (so a sender cannot inject terminal escapes).
async fn assert_received(out: &CliOutput, text: &str) {
    out.assert_success();
    let expected = reference_text_stdout(text).await;
    assert_eq!(
        out.stdout, expected,
        "{} printed the text differently from the reference receiver:\n{out}",
        out.name
    );
}

/// The reference sender reports success.
#[track_caller]
fn assert_reference_sent(out: &CliOutput) {
    out.assert_success();
    assert!(
        out.stderr.contains("text message sent") || out.stdout.contains("text message sent"),
        "{out}"
    );
}

/// A one-line `ERROR: …` on stderr that contains `needle`.
#[track_caller]
fn assert_error_line(out: &CliOutput, needle: &str) {
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("ERROR") && l.contains(needle)),
        "{} should print an ERROR line containing {needle:?}:\n{out}",
        out.name
    );
}

#[track_caller]
fn assert_not_leaked(outs: &[&CliOutput], secret: &str) {
    for out in outs {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{} leaked the secret text:\n{out}",
            out.name
        );
    }
}

/// (d) Our sender with a fixed code → reference receiver.
#[tokio::test]
async fn our_send_fixed_code_to_reference_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "hello from wormhole-rs: ünïcödé ✓";
    let code = "7-guitarist-revenge";
    let sender = RunningCli::spawn(
        "our send",
        our_cli(&server.url(), &our_send_args(text, Some(code))),
    );
    let receiver = RunningCli::spawn(
        "reference receive",
        ref_cli(
            &server.url(),
            &["receive", "--hide-progress", "--only-text", code],
        ),
    );
    let r = receiver.finish().await;
    let s = sender.finish().await;
    assert_received(&r, text).await;
    s.assert_success();
}

/// (d) Our sender with an allocated code, read from its stderr → reference receiver.
#[tokio::test]
async fn our_send_allocated_code_to_reference_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "first line\nsecond line, with \"quotes\" and a tab\t.";
    let mut sender = RunningCli::spawn(
        "our send",
        our_cli(&server.url(), &our_send_args(text, None)),
    );
    let code = sender.wait_for_code().await;
    assert!(
        code.split('-').count() == 3 && code.split('-').next().unwrap().parse::<u32>().is_ok(),
        "unexpected code {code:?}"
    );
    let r = run_cli(
        "reference receive",
        ref_cli(
            &server.url(),
            &["receive", "--hide-progress", "--only-text", &code],
        ),
    )
    .await;
    let s = sender.finish().await;
    assert_received(&r, text).await;
    s.assert_success();
}

/// (d) Reference sender with a fixed code → our receiver.
#[tokio::test]
async fn reference_send_fixed_code_to_our_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "hello from the reference client ✓";
    let code = "12-pandora-quota";
    let sender = RunningCli::spawn(
        "reference send",
        ref_cli(&server.url(), &ref_send_args(text, Some(code))),
    );
    let receiver = RunningCli::spawn("our receive", our_cli(&server.url(), &["receive", code]));
    let r = receiver.finish().await;
    let s = sender.finish().await;
    assert_received(&r, text).await;
    assert_reference_sent(&s);
}

/// (d) Reference sender with an allocated code, read from its stderr → our receiver
/// (with --only-text).
#[tokio::test]
async fn reference_send_allocated_code_to_our_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    // Escaped by the reference receiver's `repr()`: quotes, a backslash, control
    // characters (tab, ESC, DEL), invisible and separator characters; kept: printable
    // non-ASCII text and emoji.
    let text = "multi\nline 'it's' \\ \t\u{1b}[31m\u{7f} \u{200b}\u{2028}\u{a0} é 😀\ntext from the reference";
    let mut sender = RunningCli::spawn(
        "reference send",
        ref_cli(&server.url(), &ref_send_args(text, None)),
    );
    let code = sender.wait_for_code().await;
    let r = run_cli(
        "our receive",
        our_cli(&server.url(), &["receive", "--only-text", &code]),
    )
    .await;
    let s = sender.finish().await;
    assert_received(&r, text).await;
    assert_reference_sent(&s);
}

/// (e) Our sender and the reference receiver use codes with the same nameplate but
/// different words: both fail, and the text appears nowhere.
#[tokio::test]
async fn wrong_code_our_send_reference_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let secret = "the secret text: 5f1d3c";
    let sender = RunningCli::spawn(
        "our send",
        our_cli(
            &server.url(),
            &our_send_args(secret, Some("8-purple-sausages")),
        ),
    );
    let receiver = RunningCli::spawn(
        "reference receive",
        ref_cli(
            &server.url(),
            &[
                "receive",
                "--hide-progress",
                "--only-text",
                "8-purple-pancake",
            ],
        ),
    );
    let r = receiver.finish().await;
    let s = sender.finish().await;
    assert!(
        !r.status.success(),
        "the reference receiver should fail:\n{r}"
    );
    s.assert_code(1);
    assert_error_line(&s, "");
    assert!(
        r.stderr.contains("Key confirmation failed"),
        "the reference receiver should report a wrong code:\n{r}"
    );
    assert_not_leaked(&[&s, &r], secret);
}

/// (e) The reference sender and our receiver use different codes on one nameplate.
#[tokio::test]
async fn wrong_code_reference_send_our_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let secret = "another secret: 9a8b7c";
    let sender = RunningCli::spawn(
        "reference send",
        ref_cli(
            &server.url(),
            &ref_send_args(secret, Some("9-adroitness-zulu")),
        ),
    );
    let receiver = RunningCli::spawn(
        "our receive",
        our_cli(&server.url(), &["receive", "9-adroitness-yucatan"]),
    );
    let r = receiver.finish().await;
    let s = sender.finish().await;
    assert!(
        !s.status.success(),
        "the reference sender should fail:\n{s}"
    );
    assert!(
        s.stderr.contains("Key confirmation failed"),
        "the reference sender should report a wrong code:\n{s}"
    );
    r.assert_code(1);
    assert_error_line(&r, "");
    assert_not_leaked(&[&s, &r], secret);
}

/// (h) Our CLI prints the server's message of the day like the reference; also our
/// sender → our receiver.
#[tokio::test]
async fn our_cli_prints_motd() {
    assert_loopback_only();
    let server = MailboxServer::start(&["--motd=hello from test"]).await;
    let text = "ours to ours";
    let mut sender = RunningCli::spawn(
        "our send",
        our_cli(&server.url(), &our_send_args(text, None)),
    );
    let code = sender.wait_for_code().await;
    let r = run_cli("our receive", our_cli(&server.url(), &["receive", &code])).await;
    let s = sender.finish().await;
    assert_received(&r, text).await;
    s.assert_success();
    let motd = format!("Server (at {}) says:\n hello from test\n", server.url());
    for out in [&s, &r] {
        assert!(
            out.stderr.contains(&motd),
            "{} should print {motd:?}:\n{out}",
            out.name
        );
    }
}

/// (i) A server started with --signal-error: our CLI exits 1 with an ERROR line carrying
/// the server's text, whether sending or receiving.
#[tokio::test]
async fn our_cli_reports_welcome_error() {
    assert_loopback_only();
    let server = MailboxServer::start(&["--signal-error=go away"]).await;
    let s = run_cli(
        "our send",
        our_cli(&server.url(), &our_send_args("unsent text", None)),
    )
    .await;
    s.assert_code(1);
    assert_error_line(&s, "go away");
    assert!(
        !s.stdout.contains("unsent text") && !s.stderr.contains("unsent text"),
        "{s}"
    );
    let r = run_cli(
        "our receive",
        our_cli(&server.url(), &["receive", "4-go-away"]),
    )
    .await;
    r.assert_code(1);
    assert_error_line(&r, "go away");
}

/// (k, CLI) Nothing listens on the mailbox port: our CLI fails quickly with exit 1.
#[tokio::test]
async fn our_cli_server_unreachable() {
    assert_loopback_only();
    let url = format!("ws://127.0.0.1:{}/v1", free_port());
    let started = std::time::Instant::now();
    let s = run_cli(
        "our send",
        our_cli(&url, &our_send_args("nobody listens", None)),
    )
    .await;
    s.assert_code(1);
    assert_error_line(&s, "");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "failing took {took:?}"
    );
}

/// (l) Invalid codes: our CLI exits 1 without contacting the server (a listener that
/// never answers stands in for it, and must see no connection).
#[tokio::test]
async fn our_cli_rejects_invalid_code_without_contacting_server() {
    assert_loopback_only();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let runs = [
        ("our receive x-abc", vec!["receive", "x-abc"]),
        ("our receive '7 -a'", vec!["receive", "7 -a"]),
        (
            "our send --code x-abc",
            our_send_args("never sent", Some("x-abc")),
        ),
        (
            "our send --code '7 -a'",
            our_send_args("never sent", Some("7 -a")),
        ),
    ];
    for (name, args) in runs {
        let out = run_cli(name, our_cli(&url, &args)).await;
        out.assert_code(1);
        assert_error_line(&out, "");
        assert!(!out.stderr.contains("never sent"), "{out}");
        // Connections complete in the kernel even without accept(): any attempt is queued.
        let contacted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(contacted.is_err(), "{name} contacted the server:\n{out}");
    }
    // Sanity check of the method: a real attempt is seen.
    let _probe = within(
        TIMEOUT,
        "the probe connect",
        tokio::net::TcpStream::connect(listener.local_addr().unwrap()),
    )
    .await
    .unwrap();
    within(TIMEOUT, "the probe connection", listener.accept())
        .await
        .unwrap();
}

/// The hex verifier from a `Verifier <hex>.` line (either CLI, stdout or stderr).
#[track_caller]
fn verifier_of(out: &CliOutput) -> String {
    let all = format!("{}\n{}", out.stdout, out.stderr);
    let hex = all
        .split("Verifier ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_else(|| panic!("{} printed no verifier:\n{out}", out.name));
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "bad verifier {hex:?}:\n{out}"
    );
    hex.to_owned()
}

/// (--verify) Our sender asks for approval of the verifier (answered "yes" on stdin)
/// and the reference receiver shows the same verifier.
#[tokio::test]
async fn verify_our_send_reference_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "verified text";
    let code = "21-adroitness-vagabond";
    let mut args = our_send_args(text, Some(code));
    args.push("--verify");
    let sender = RunningCli::spawn_with_stdin(
        "our send --verify",
        our_cli(&server.url(), &args),
        Some("yes\n"),
    );
    let r = run_cli(
        "reference receive --verify",
        ref_cli(
            &server.url(),
            &["receive", "--hide-progress", "--verify", code],
        ),
    )
    .await;
    let s = sender.finish().await;
    s.assert_success();
    assert!(s.stdout.contains("ok? (yes/no): "), "{s}");
    assert!(s.stderr.contains("wormhole receive --verify"), "{s}");
    assert_received(&r, text).await;
    assert_eq!(verifier_of(&s), verifier_of(&r), "\n{s}\n{r}");
}

/// (--verify) The reference sender asks for approval ("yes" on stdin); our receiver
/// shows the same verifier.
#[tokio::test]
async fn verify_reference_send_our_receive() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "verified by the reference";
    let code = "22-adroitness-vagabond";
    let mut args = ref_send_args(text, Some(code));
    args.push("--verify");
    let sender = RunningCli::spawn_with_stdin(
        "reference send --verify",
        ref_cli(&server.url(), &args),
        Some("yes\n"),
    );
    let r = run_cli(
        "our receive --verify",
        our_cli(&server.url(), &["receive", "--verify", code]),
    )
    .await;
    let s = sender.finish().await;
    assert_reference_sent(&s);
    assert_received(&r, text).await;
    assert_eq!(verifier_of(&s), verifier_of(&r), "\n{s}\n{r}");
}

/// (--verify) Our sender's user rejects the verifier: both sides fail, the receiver
/// learns why, and the text goes nowhere.
#[tokio::test]
async fn verify_rejected_by_our_sender() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "must not arrive";
    let code = "23-adroitness-vagabond";
    let mut args = our_send_args(text, Some(code));
    args.push("--verify");
    let sender = RunningCli::spawn_with_stdin(
        "our send --verify",
        our_cli(&server.url(), &args),
        Some("no\n"),
    );
    let r = run_cli(
        "reference receive",
        ref_cli(&server.url(), &["receive", "--hide-progress", code]),
    )
    .await;
    let s = sender.finish().await;
    s.assert_code(1);
    r.assert_code(1);
    assert_error_line(&s, "sender rejected verification check");
    assert!(
        r.stderr.contains("sender rejected verification check"),
        "the reference receiver should report the rejection:\n{r}"
    );
    assert_not_leaked(&[&s, &r], text);
}

/// Our receiver without CODE, stdin not a terminal: it prompts like the reference, reads
/// one line, and notes that Tab completion exists.
#[tokio::test]
async fn our_receive_reads_code_from_stdin() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "code typed on stdin";
    let mut sender = RunningCli::spawn(
        "reference send",
        ref_cli(&server.url(), &ref_send_args(text, None)),
    );
    let code = sender.wait_for_code().await;
    let r = RunningCli::spawn_with_stdin(
        "our receive (code on stdin)",
        our_cli(&server.url(), &["receive"]),
        Some(&format!("{code}\n")),
    )
    .finish()
    .await;
    let s = sender.finish().await;
    assert_reference_sent(&s);
    r.assert_success();
    let prompt = "Enter receive wormhole code: ";
    assert!(r.stdout.starts_with(prompt), "{r}");
    assert!(
        r.stderr
            .contains("(note: you can use <Tab> to complete words)"),
        "{r}"
    );
    let expected = reference_text_stdout(text).await;
    assert_eq!(&r.stdout[prompt.len()..], expected, "{r}");
}

/// Our receiver without CODE on a terminal (a pty driven by tests/scripts/pty_drive.py):
/// Tab completes the nameplate from the server's list and the first word from the
/// wordlist, so a code typed only in part is received.
#[tokio::test]
async fn our_receive_completes_code_with_tab_on_a_terminal() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let text = "typed with completion";
    let mut sender = RunningCli::spawn(
        "reference send",
        ref_cli(&server.url(), &ref_send_args(text, None)),
    );
    let code = sender.wait_for_code().await;
    let mut parts = code.splitn(3, '-');
    let (nameplate, first, second) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    // The shortest prefix of the first word that completes to it alone.
    let prefix = (1..=first.len())
        .map(|n| &first[..n])
        .find(|p| {
            wormhole_core::proto::code::word_completions(p, 2)
                .into_iter()
                .eq([format!("{first}-")])
        })
        .unwrap_or_else(|| panic!("no unique prefix of {first:?}"));
    let steps = serde_json::json!([
        ["expect", "Enter receive wormhole code: "],
        ["send", nameplate],
        ["complete", format!("{nameplate}-")],
        ["send", prefix],
        ["complete", format!("{first}-")],
        ["send", format!("{second}\r")],
    ]);
    let mut cmd = tokio::process::Command::new(wormhole_tests::ref_venv().join("bin/python"));
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pty_drive.py"))
        .arg(steps.to_string())
        .arg(wormhole_tests::wormhole_bin())
        .args(["--relay-url", &server.url(), "receive"]);
    let r = run_cli("our receive (on a pty)", cmd).await;
    let s = sender.finish().await;
    assert_reference_sent(&s);
    r.assert_success();
    assert!(r.stdout.contains(text), "{r}");
    assert!(
        !r.stdout.contains("(note: you can use <Tab>"),
        "completion was used, so no note:\n{r}"
    );
}
