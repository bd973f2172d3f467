//! `wormhole send`: text, a file or a directory.

use std::cell::Cell;
use std::io::Read;
use std::path::PathBuf;

use wormhole_core::transfer::TransferOptions;

use wormhole_core::text::{self, TransferMessage};
use wormhole_core::{Error, Wormhole, validate_code};

use crate::args::SendArgs;
use crate::common::{Server, run_and_close, with_notice};
use crate::display::natural_size;
use crate::failure::Failure;
use crate::input::{on_thread, prompt_line};
use crate::{files, qr};

/// What the sender sends when the user rejects the verifier.
const REJECTED: &str = "sender rejected verification check, abandoned transfer";
/// Printed (on stdout) once the code can no longer be used.
const CONSUMED: &str = "Note: code has been consumed and can no longer be used.";

/// What to send.
enum What {
    /// A text message (`--text`; empty: ask).
    Text(String),
    /// Files and directories.
    Paths(Vec<PathBuf>),
}

/// Whether to show the QR code: `--qr`/`--no-qr`, else `WORMHOLE_QR` (like the
/// reference: 1/true/yes/on or 0/false/no/off), else yes.
fn show_qr(args: &SendArgs) -> Result<bool, Failure> {
    if args.no_qr || args.qr {
        return Ok(args.qr);
    }
    match std::env::var("WORMHOLE_QR") {
        Err(_) => Ok(true),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
            "0" | "false" | "f" | "no" | "n" | "off" | "" => Ok(false),
            _ => Err(Failure::Other(format!(
                "WORMHOLE_QR={v:?} is not a boolean (use 1 or 0)"
            ))),
        },
    }
}

/// Run `wormhole send`.
pub async fn run(server: &Server, args: &SendArgs) -> Result<(), Failure> {
    let what = match (&args.text, args.what.is_empty()) {
        (Some(text), true) => What::Text(text.clone()),
        (None, false) => What::Paths(args.what.clone()),
        (Some(_), false) => {
            return Err(Failure::Other(
                "cannot send both text and a file/directory".into(),
            ));
        }
        (None, true) => What::Text(String::new()),
    };
    let qr = show_qr(args)?;
    let opts = files::options(server, args.no_listen, args.hide_progress)?;
    if let What::Paths(paths) = &what {
        files::check_paths(paths)?;
    }
    if let Some(code) = &args.code {
        validate_code(code)?;
    }
    let w = server.create_traced(args.debug_state.as_deref(), "send")?;
    // Like the reference: noted once the peer has joined (the nameplate is released
    // then), else when the exchange ends, unless the server was never reached.
    let noted = Cell::new(false);
    let note_consumed = || {
        if !noted.replace(true) {
            println!("{CONSUMED}");
        }
    };
    run_and_close(&w, async {
        let outcome = exchange(server, args, qr, &what, &opts, &w, &note_consumed).await;
        if !outcome.as_ref().is_err_and(Failure::never_connected) {
            note_consumed();
        }
        outcome
    })
    .await
}

/// Everything between connecting and closing.
async fn exchange(
    server: &Server,
    args: &SendArgs,
    qr: bool,
    what: &What,
    opts: &TransferOptions,
    w: &Wormhole,
    note_consumed: &impl Fn(),
) -> Result<(), Failure> {
    // The offer (a directory's zip is built once, before the code, like the reference).
    let (text, offer) = match what {
        What::Text(text) => {
            server.show_welcome(&w.get_welcome().await?);
            let text = read_text(text).await?;
            // Python counts characters, not bytes.
            eprintln!(
                "Sending text message ({})",
                natural_size(text.chars().count() as u64)
            );
            (Some(text), None)
        }
        What::Paths(paths) => {
            let offer = files::prepare(paths, args.ignore_unsendable_files, true).await?;
            server.show_welcome(&w.get_welcome().await?);
            (None, Some(offer))
        }
    };
    server.timing.add("welcome");

    let mut other = String::from(if args.verify {
        "wormhole receive --verify"
    } else {
        "wormhole receive"
    });
    match (&args.code, args.zeromode) {
        (_, true) => w.set_code("0-")?,
        (Some(code), false) => w.set_code(code)?,
        (None, false) => w.allocate_code(args.code_length)?,
    }
    let code = w.get_code().await?;
    server.timing.add("code established");
    if args.zeromode {
        other.push_str(" -0");
    } else {
        eprintln!("Wormhole code is: {code}");
        other.push(' ');
        other.push_str(&code);
        if qr {
            if let Some(qr) = qr::render(&code) {
                eprint!("{qr}");
            }
        }
    }
    eprintln!("On the other computer, please run:\n\n{other}\n");

    w.get_unverified_key().await?;
    server.timing.add("key established");
    note_consumed();
    let verifier = with_notice(
        w.get_verifier(),
        "Key established, waiting for confirmation...",
    )
    .await?;
    server.timing.add("verified");
    if args.verify {
        confirm_verifier(w, &verifier).await?;
    }
    match (text, offer) {
        (Some(text), _) => {
            text::send_text(w, &text).await?;
            eprintln!("text message sent");
        }
        (None, Some(offer)) => files::send(w, offer, opts).await?,
        (None, None) => {}
    }
    server.timing.add("transfer complete");
    Ok(())
}

/// The text to send: `--text -` reads stdin; an empty text is asked for (like the
/// reference, which then reads one line).
async fn read_text(text: &str) -> Result<String, Failure> {
    let text = if text == "-" {
        eprintln!("Reading text message from stdin..");
        on_thread(|| {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        })
        .await?
        .map_err(|e| Failure::Other(format!("cannot read from stdin: {e}")))?
    } else {
        text.to_owned()
    };
    if !text.is_empty() {
        return Ok(text);
    }
    Ok(prompt_line("Text to send: ")
        .await?
        .trim_end_matches(['\r', '\n'])
        .to_owned())
}

/// Show the verifier and ask the user to approve it. Anything but "yes" tells the peer
/// the transfer is abandoned and fails.
async fn confirm_verifier(w: &Wormhole, verifier: &[u8; 32]) -> Result<(), Failure> {
    let answer = prompt_line(&format!(
        "Verifier {}. ok? (yes/no): ",
        hex::encode(verifier)
    ))
    .await?;
    if answer.trim().eq_ignore_ascii_case("yes") {
        return Ok(());
    }
    w.send_message(TransferMessage::Error(REJECTED.into()).to_bytes())?;
    Err(Error::Transfer(REJECTED.into()).into())
}
