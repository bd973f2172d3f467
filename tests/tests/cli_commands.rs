//! The CLI's other commands and flags, each against the reference CLI 0.24.0 where the
//! reference has it: `receive --allocate` and `--code-length`, `-0`, `--debug-state`, `ssh invite` /
//! `ssh accept`, `--dump-timing`, `WORMHOLE_QR`, and `completion SHELL` (from wormhole-rs).
//!
//! Every test runs inside the loopback-only namespace `scripts/test.sh` creates.

use std::path::Path;

use tokio::process::Command;
use wormhole_tests::{
    CliOutput, MailboxServer, RunningCli, TempDir, assert_loopback_only, our_cli, ref_cli, run_cli,
    wrapped,
};

/// `receive --allocate`: the receiver makes the code and the sender types it, both ways.
#[tokio::test]
async fn receiver_allocates_the_code_both_ways() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    for ours_receives in [true, false] {
        let text = format!("allocated by the receiver (ours receives: {ours_receives})");
        let args = ["receive", "--allocate", "--code-length", "3", "--only-text"];
        let mut r = if ours_receives {
            RunningCli::spawn("our receive -a", our_cli(&url, &args))
        } else {
            RunningCli::spawn("reference receive -a", ref_cli(&url, &args))
        };
        let line = r
            .wait_for_stderr("the allocated code", |l| l.starts_with("Allocated code: "))
            .await;
        let code = line
            .trim_start_matches("Allocated code: ")
            .trim()
            .to_owned();
        assert_eq!(code.split('-').count(), 4, "three words: {code:?}");
        let send = ["send", "--no-qr", "--text", &text, "--code", &code];
        let s = if ours_receives {
            run_cli("reference send", ref_cli(&url, &send)).await
        } else {
            run_cli("our send", our_cli(&url, &send)).await
        };
        let r = r.finish().await;
        s.assert_success();
        r.assert_success();
        assert_eq!(r.stdout.trim_end(), text, "{r}");
        if ours_receives {
            assert!(
                r.stderr
                    .contains(&format!("wormhole send --code {code} <filename>")),
                "{r}"
            );
        }
    }
}

/// Usage errors like the reference's: `--code-length` needs `--allocate`, and a code
/// cannot be given with `--allocate`. Exit status 2, nothing contacted.
#[tokio::test]
async fn receive_allocate_usage_errors() {
    for args in [
        vec!["receive", "--code-length", "3"],
        vec!["receive", "--allocate", "4-purple-sausages"],
    ] {
        let o = run_cli("our receive", our_cli("ws://127.0.0.1:9/v1", &args)).await;
        o.assert_code(2);
    }
}

/// `-0`: the code is `0-`, on both sides, mixed with the reference.
#[tokio::test]
async fn zero_mode_with_the_reference() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    for ours_sends in [true, false] {
        let text = format!("zero mode (ours sends: {ours_sends})");
        let send = ["send", "-0", "--no-qr", "--text", &text];
        let mut s = if ours_sends {
            RunningCli::spawn("our send -0", our_cli(&url, &send))
        } else {
            RunningCli::spawn("reference send -0", ref_cli(&url, &send))
        };
        s.wait_for_stderr("the receive command", |l| l.contains("receive -0"))
            .await;
        let recv = ["receive", "-0", "--only-text"];
        let r = if ours_sends {
            run_cli("reference receive -0", ref_cli(&url, &recv)).await
        } else {
            run_cli("our receive -0", our_cli(&url, &recv)).await
        };
        let s = s.finish().await;
        s.assert_success();
        r.assert_success();
        assert_eq!(r.stdout.trim_end(), text, "{r}");
    }
}

/// A home directory with one public key in `.ssh`; returns (home, the key line).
fn home_with_key(name: &str, comment: &str) -> (TempDir, String) {
    let home = TempDir::new(name);
    let ssh = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = format!(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0mbVqA3tVDZ4ypUYJcn5kH1z5Zr3bXqzNm8r1Bq6x {comment}"
    );
    std::fs::write(ssh.join("id_ed25519.pub"), format!("{key}\n")).unwrap();
    (home, key)
}

fn with_home(mut c: Command, home: &Path) -> Command {
    c.env("HOME", home);
    c
}

fn authorized_keys(home: &Path) -> String {
    std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap_or_default()
}

/// `cmd` with its stdout sent to stderr, so [`RunningCli::wait_for_stderr`] sees what it
/// prints on stdout while it runs (`ssh invite` prints the code there).
fn stdout_to_stderr(cmd: Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(r#"exec "$0" "$@" 1>&2"#);
    wrapped(sh, &cmd)
}

/// `ssh invite` (ours and the reference's) takes the key `ssh accept` (the other's) sends
/// and appends it to `~/.ssh/authorized_keys`, creating it (mode 0600 in a 0700 `.ssh`).
#[tokio::test]
async fn ssh_invite_and_accept_both_ways() {
    use std::os::unix::fs::PermissionsExt;
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    for ours_invites in [true, false] {
        let inviter_home = TempDir::new("ssh-inviter");
        if !ours_invites {
            // The reference's invite gives up ("Can't read …") without ~/.ssh; ours
            // creates it.
            std::fs::create_dir_all(inviter_home.path().join(".ssh")).unwrap();
        }
        let (accepter_home, key) = home_with_key("ssh-accepter", "me@laptop");
        let inv_cmd = if ours_invites {
            our_cli(&url, &["ssh", "invite"])
        } else {
            ref_cli(&url, &["ssh", "invite"])
        };
        let mut inv = RunningCli::spawn(
            "ssh invite",
            stdout_to_stderr(with_home(inv_cmd, inviter_home.path())),
        );
        let line = inv
            .wait_for_stderr("the accept command", |l| {
                l.starts_with("wormhole ssh accept ")
            })
            .await;
        let code = line
            .trim_start_matches("wormhole ssh accept ")
            .trim()
            .to_owned();
        let acc_args = ["ssh", "accept", "--yes", code.as_str()];
        let acc_cmd = if ours_invites {
            ref_cli(&url, &acc_args)
        } else {
            our_cli(&url, &acc_args)
        };
        let a = run_cli("ssh accept", with_home(acc_cmd, accepter_home.path())).await;
        let i = inv.finish().await;
        a.assert_success();
        i.assert_success();
        assert!(a.stdout.contains("Key sent."), "{a}");
        assert!(
            i.stderr
                .contains("Appended key type='ssh-ed25519' id='me@laptop'"),
            "{i}"
        );
        assert_eq!(authorized_keys(inviter_home.path()), format!("{key}\n"));
        if ours_invites {
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let ssh = inviter_home.path().join(".ssh");
            assert_eq!(mode(&ssh), 0o700);
            assert_eq!(mode(&ssh.join("authorized_keys")), 0o600);
        }
    }
}

/// Our `ssh invite` refuses what is not exactly one public key (here two keys, sent by
/// the reference CLI as a text message on the ssh app id), and writes nothing.
#[tokio::test]
async fn ssh_invite_refuses_anything_but_one_key() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    let home = TempDir::new("ssh-hostile");
    let mut inv = RunningCli::spawn(
        "our ssh invite",
        stdout_to_stderr(with_home(our_cli(&url, &["ssh", "invite"]), home.path())),
    );
    let line = inv
        .wait_for_stderr("the accept command", |l| {
            l.starts_with("wormhole ssh accept ")
        })
        .await;
    let code = line
        .trim_start_matches("wormhole ssh accept ")
        .trim()
        .to_owned();
    let two = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0mbVqA3tVDZ4yp a\n\
               command=\"sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0mbVqA3tVDZ4yp b";
    let s = run_cli(
        "reference send",
        ref_cli(
            &url,
            &[
                "--appid",
                "lothar.com/wormhole/ssh-add",
                "send",
                "--no-qr",
                "--code",
                &code,
                "--text",
                two,
            ],
        ),
    )
    .await;
    let i = inv.finish().await;
    s.assert_success();
    i.assert_code(1);
    assert!(i.stderr.contains("not an SSH public key"), "{i}");
    assert!(!home.path().join(".ssh/authorized_keys").exists());
}

/// `ssh accept -F FILE` sends that key; a missing key file is a clear error.
#[tokio::test]
async fn ssh_accept_key_file_and_missing_keys() {
    let home = TempDir::new("ssh-nokeys");
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    let o = run_cli(
        "our ssh accept",
        with_home(
            our_cli("ws://127.0.0.1:9/v1", &["ssh", "accept", "--yes", "5-a-b"]),
            home.path(),
        ),
    )
    .await;
    o.assert_code(1);
    assert!(o.stderr.contains("No public keys in"), "{o}");
    let o = run_cli(
        "our ssh accept",
        with_home(
            our_cli(
                "ws://127.0.0.1:9/v1",
                &[
                    "ssh",
                    "accept",
                    "-F",
                    "/nonexistent/k.pub",
                    "--yes",
                    "5-a-b",
                ],
            ),
            home.path(),
        ),
    )
    .await;
    o.assert_code(1);
    assert!(o.stderr.contains("Can't find"), "{o}");
}

/// `--dump-timing FILE.json` writes the reference's format: a list of named events with
/// start times (seconds since the epoch) in order, ending with `exit`.
#[tokio::test]
async fn dump_timing_writes_the_reference_format() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    let dir = TempDir::new("timing");
    let file = dir.path().join("t.json");
    let mut s = RunningCli::spawn(
        "our send",
        our_cli(
            &url,
            &[
                "--dump-timing",
                file.to_str().unwrap(),
                "send",
                "--no-qr",
                "--text",
                "timed",
            ],
        ),
    );
    let code = s.wait_for_code().await;
    let r = run_cli("reference receive", ref_cli(&url, &["receive", &code])).await;
    let s = s.finish().await;
    r.assert_success();
    s.assert_success();
    assert!(s.stderr.contains("Timing data written to"), "{s}");
    let events: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let events = events.as_array().expect("a JSON list");
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    for want in ["command dispatch", "code established", "verified", "exit"] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert_eq!(names.last(), Some(&"exit"));
    let starts: Vec<f64> = events
        .iter()
        .map(|e| e["start"].as_f64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    assert!(starts[0] > 1.7e9, "seconds since the epoch: {starts:?}");
    assert!(events.iter().all(|e| e["details"].is_object()));
}

/// `WORMHOLE_QR=0` hides the QR code, `WORMHOLE_QR=1` (and the default) shows it, and a
/// flag beats the variable; a value that is not a boolean is an error.
#[tokio::test]
async fn wormhole_qr_variable() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    let has_qr = |o: &CliOutput| o.stderr.contains('█') || o.stderr.contains('▀');
    for (var, flag, want) in [
        (Some("0"), None, false),
        (Some("1"), None, true),
        (None, None, true),
        (Some("0"), Some("--qr"), true),
        (Some("yes"), Some("--no-qr"), false),
    ] {
        let mut args = vec!["send", "--text", "qr?"];
        args.extend(flag);
        let mut c = our_cli(&url, &args);
        if let Some(v) = var {
            c.env("WORMHOLE_QR", v);
        }
        let mut s = RunningCli::spawn("our send", c);
        let code = s.wait_for_code().await;
        let r = run_cli("our receive", our_cli(&url, &["receive", &code])).await;
        let s = s.finish().await;
        r.assert_success();
        s.assert_success();
        assert_eq!(has_qr(&s), want, "WORMHOLE_QR={var:?} {flag:?}\n{s}");
    }
    let mut c = our_cli(&url, &["send", "--text", "x"]);
    c.env("WORMHOLE_QR", "maybe");
    let o = run_cli("our send", c).await;
    o.assert_code(1);
    assert!(o.stderr.contains("WORMHOLE_QR"), "{o}");
}

/// `completion SHELL` prints a script that knows the subcommands; the bash one parses.
#[tokio::test]
async fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run_cli(
            "our completion",
            our_cli("ws://127.0.0.1:9/v1", &["completion", shell]),
        )
        .await;
        o.assert_success();
        for word in ["send-many", "receive", "code-length"] {
            assert!(o.stdout.contains(word), "{shell}: no {word}\n{o}");
        }
        if shell == "bash" {
            let dir = TempDir::new("completion");
            let f = dir.path().join("wormhole.bash");
            std::fs::write(&f, &o.stdout).unwrap();
            let check = Command::new("bash")
                .arg("-n")
                .arg(&f)
                .output()
                .await
                .unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
}

/// Where the flags are shared, `--help` uses the reference's wording (compared with the
/// reference's own `--help`, whitespace aside).
#[tokio::test]
async fn help_texts_use_the_reference_wording() {
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--help"],
            &[
                "rendezvous relay to use",
                "transit relay to use",
                "appid to use",
                "(debug) write timing data to file",
            ],
        ),
        (
            &["send", "--help"],
            &[
                "human-generated code phrase",
                "text message to send, instead of a file. Use '-' to read from stdin.",
                "length of code (in bytes/words)",
                "display verification string (and wait for approval)",
                "suppress progress-bar display",
                "(debug) don't open a listening socket for Transit",
                "Don't raise an error if a file can't be read.",
                "enable no-code anything-goes mode",
                "Generate and show ASCII-based QR code",
            ],
        ),
        (
            &["receive", "--help"],
            &[
                "refuse file transfers, only accept text transfers",
                "accept file transfer without asking for confirmation",
                "The file or directory to create, overriding the name suggested by the sender. If the directory exists already, the incoming transfer will be put inside the specified directory.",
                "Allocate a fresh code (do not prompt for one)",
                "display verification string (and wait for approval)",
            ],
        ),
        (
            &["ssh", "invite", "--help"],
            &[
                "Add a public-key to a ~/.ssh/authorized_keys file",
                "Add to USER's ~/.ssh/authorized_keys",
                "length of code (in bytes/words)",
            ],
        ),
        (
            &["ssh", "accept", "--help"],
            &["Skip confirmation prompt to send key"],
        ),
    ];
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (args, phrases) in cases {
        let ours = run_cli("our --help", our_cli("ws://127.0.0.1:9/v1", args)).await;
        let reference = run_cli("reference --help", ref_cli("ws://127.0.0.1:9/v1", args)).await;
        ours.assert_success();
        reference.assert_success();
        let (o, r) = (flat(&ours.stdout), flat(&reference.stdout));
        for phrase in phrases {
            assert!(
                r.contains(phrase),
                "the reference's {args:?} lacks {phrase:?}:\n{r}"
            );
            // clap drops a help text's final period.
            let ours_phrase = phrase.trim_end_matches('.');
            assert!(
                o.contains(ours_phrase),
                "our {args:?} lacks {ours_phrase:?}:\n{o}"
            );
        }
    }
}

/// `--debug-state`: state-machine transitions on stdout in the reference's format, only
/// the machines asked for, never the code or the text; an unknown machine is a usage error
/// worded like the reference's. (Both sides are ours: the trace is local.)
#[tokio::test]
async fn debug_state_traces_the_machines() {
    assert_loopback_only();
    let server = MailboxServer::start(&[]).await;
    let url = server.url();
    let code = "5-traced-words";
    let text = "very secret text";
    let send = [
        "send",
        "--no-qr",
        "--debug-state",
        "--code",
        code,
        "--text",
        text,
    ];
    let mut s = RunningCli::spawn("our send --debug-state", our_cli(&url, &send));
    s.wait_for_code().await;
    let recv = ["receive", "--debug-state", "K,RC", code];
    let r = run_cli("our receive --debug-state K,RC", our_cli(&url, &recv)).await;
    let s = s.finish().await;
    s.assert_success();
    r.assert_success();
    let sent: Vec<&str> = s.stdout.lines().collect();
    for want in [
        "send.RC.R.tx(BIND )",
        "send.RC.R.rx(welcome )",
        "send.C[S0_idle].set_code -> [S4_known]",
        "send.N[S2].rx(claimed) -> [S3]",
        "send.RC.R.tx(ADD pake)",
        "send.K[S10].rx(message) -> [S11]",
        "send.B[S1_lonely].rx(message) -> [S2_happy]",
        "send.T[Snmo].close -> [Sclosing]",
    ] {
        assert!(sent.contains(&want), "no {want:?} in\n{}", s.stdout);
    }
    assert!(
        !s.stdout.contains(text) && !s.stdout.contains("traced-words"),
        "{s}"
    );
    let traced: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("recv."))
        .collect();
    assert!(traced.contains(&"recv.K[S10].rx(message) -> [S11]"), "{r}");
    assert!(traced.contains(&"recv.RC.R.rx(message pake)"), "{r}");
    assert!(
        traced
            .iter()
            .all(|l| l.starts_with("recv.K[") || l.starts_with("recv.RC")),
        "only K and RC asked for:\n{r}"
    );
    assert!(r.stdout.contains(text), "{r}");
    let bad = run_cli(
        "our receive --debug-state X",
        our_cli(&url, &["receive", "--debug-state", "N,X,Y", code]),
    )
    .await;
    bad.assert_code(2);
    assert!(
        bad.stderr.contains("Cannot debug unknown machines: X Y"),
        "{bad}"
    );
}
