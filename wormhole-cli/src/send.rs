//! `wormhole send`: text, a file or a directory.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::path::PathBuf;

use wormhole_core::transfer::TransferOptions;
use wormhole_core::transfer::zip::{Skip, ZipStream};

use wormhole_core::text::{self, TransferMessage};
use wormhole_core::{Error, Wormhole, validate_code};

use crate::failure::Failure;
use crate::input::{on_thread, prompt_line};
use crate::{SendArgs, Server, run_and_close, with_notice};
use crate::{files, qr};

/// What the sender sends when the user rejects the verifier.
const REJECTED: &str = "sender rejected verification check, abandoned transfer";
/// Printed (on stdout) once the code can no longer be used.
const CONSUMED: &str = "Note: code has been consumed and can no longer be used.";

/// What to send.
enum What {
    /// A text message (`--text`; empty: ask).
    Text(String),
    /// A file or directory.
    Path(PathBuf),
}

/// Run `wormhole send`.
pub async fn run(server: &Server, args: &SendArgs) -> Result<(), Failure> {
    let what = match (&args.text, &args.what) {
        (Some(text), None) => What::Text(text.clone()),
        (None, Some(path)) => What::Path(PathBuf::from(path)),
        (Some(_), Some(_)) => {
            return Err(Failure::Other(
                "cannot send both text and a file/directory".into(),
            ));
        }
        (None, None) => What::Text(String::new()),
    };
    let opts = files::options(server, args.no_listen, args.hide_progress)?;
    if let What::Path(p) = &what {
        // Like the reference: check what we send before connecting.
        std::fs::metadata(p).map_err(|e| {
            Failure::Other(format!(
                "Cannot send: no file/directory named '{}': {e}",
                p.display()
            ))
        })?;
    }
    if let Some(code) = &args.code {
        validate_code(code)?;
    }
    let w = server.create()?;
    // Like the reference: noted once the peer has joined (the nameplate is released
    // then), else when the exchange ends, unless the server was never reached.
    let noted = Cell::new(false);
    let note_consumed = || {
        if !noted.replace(true) {
            println!("{CONSUMED}");
        }
    };
    run_and_close(&w, async {
        let outcome = exchange(server, args, &what, &opts, &w, &note_consumed).await;
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
    what: &What,
    opts: &TransferOptions,
    w: &Wormhole,
    note_consumed: &impl Fn(),
) -> Result<(), Failure> {
    // A directory's zip, built once (before the code, like the reference).
    let zip: RefCell<Option<ZipStream>> = RefCell::new(None);
    let text = match what {
        What::Text(text) => {
            server.show_welcome(&w.get_welcome().await?);
            let text = read_text(text).await?;
            // Python counts characters, not bytes.
            eprintln!(
                "Sending text message ({})",
                natural_size(text.chars().count() as u64)
            );
            Some(text)
        }
        What::Path(p) => {
            let md = std::fs::metadata(p)
                .map_err(|e| Failure::Other(format!("{}: {e}", p.display())))?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if md.is_dir() {
                eprintln!("Building zipfile..");
                let (dir, ignore) = (p.clone(), args.ignore_unsendable_files);
                let z = tokio::task::spawn_blocking(move || {
                    let mut note = |p: &std::path::Path, e: &std::io::Error| {
                        eprintln!("{}: {e} (ignoring error)", p.display());
                    };
                    ZipStream::new_skipping(&dir, ignore.then_some(&mut note as &mut Skip<'_>))
                })
                .await
                .map_err(|e| Failure::Other(e.to_string()))??;
                eprintln!(
                    "Sending directory ({} compressed) named '{name}'",
                    natural_size(z.zipsize)
                );
                *zip.borrow_mut() = Some(z);
            } else {
                eprintln!("Sending {} file named '{name}'", natural_size(md.len()));
            }
            server.show_welcome(&w.get_welcome().await?);
            None
        }
    };

    match &args.code {
        Some(code) => w.set_code(code)?,
        None => w.allocate_code(args.code_length)?,
    }
    let code = w.get_code().await?;
    eprintln!("Wormhole code is: {code}");
    if !args.no_qr {
        if let Some(qr) = qr::render(&code) {
            eprint!("{qr}");
        }
    }
    let receive = if args.verify {
        "wormhole receive --verify"
    } else {
        "wormhole receive"
    };
    eprintln!("On the other computer, please run:\n\n{receive} {code}\n");

    w.get_unverified_key().await?;
    note_consumed();
    let verifier = with_notice(
        w.get_verifier(),
        "Key established, waiting for confirmation...",
    )
    .await?;
    if args.verify {
        confirm_verifier(w, &verifier).await?;
    }
    match (text, what) {
        (Some(text), _) => {
            text::send_text(w, &text).await?;
            eprintln!("text message sent");
        }
        (None, What::Path(p)) => {
            let z = zip.borrow_mut().take();
            files::send(w, p, z, opts).await?
        }
        (None, What::Text(_)) => {}
    }
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

/// A byte count the way the reference prints it (Python `humanize.naturalsize`):
/// `1 Byte`, `11 Bytes`, `1.5 kB`, `2.0 MB`, …
pub fn natural_size(bytes: u64) -> String {
    const SUFFIXES: [&str; 10] = ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB", "RB", "QB"];
    match bytes {
        1 => return "1 Byte".into(),
        0..1000 => return format!("{bytes} Bytes"),
        _ => {}
    }
    let value = bytes as f64;
    let mut exp = 1;
    while exp < SUFFIXES.len() && value >= 1000f64.powi(exp as i32 + 1) {
        exp += 1;
    }
    // Rounding may reach 1000.0 (999999 bytes): step up to "1.0 MB" instead.
    if exp < SUFFIXES.len() && format!("{:.1}", value / 1000f64.powi(exp as i32)) == "1000.0" {
        exp += 1;
    }
    format!(
        "{:.1} {}",
        value / 1000f64.powi(exp as i32),
        SUFFIXES[exp - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::natural_size;

    #[test]
    fn sizes_match_humanize() {
        assert_eq!(natural_size(0), "0 Bytes");
        assert_eq!(natural_size(1), "1 Byte");
        assert_eq!(natural_size(11), "11 Bytes");
        assert_eq!(natural_size(999), "999 Bytes");
        assert_eq!(natural_size(1000), "1.0 kB");
        assert_eq!(natural_size(1500), "1.5 kB");
        assert_eq!(natural_size(999_999), "1.0 MB");
        assert_eq!(natural_size(3_000_000), "3.0 MB");
    }
}
