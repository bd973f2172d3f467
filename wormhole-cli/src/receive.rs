//! `wormhole receive`: text, files and directories.

use std::fmt::Write;

use unicode_general_category::{GeneralCategory, get_general_category};
use wormhole_core::{Wormhole, text, validate_code};

use crate::failure::Failure;
use crate::files;
use crate::input::input_code;
use crate::{ReceiveArgs, Server, run_and_close, with_notice};

/// Run `wormhole receive`.
pub async fn run(server: &Server, args: &ReceiveArgs) -> Result<(), Failure> {
    if let Some(code) = &args.code {
        validate_code(code)?;
    }
    let w = server.create()?;
    run_and_close(&w, exchange(server, args, &w)).await
}

/// Everything between connecting and closing.
async fn exchange(server: &Server, args: &ReceiveArgs, w: &Wormhole) -> Result<(), Failure> {
    server.show_welcome(&w.get_welcome().await?);
    match &args.code {
        Some(code) => w.set_code(code)?,
        None => input_code(w).await?,
    }
    with_notice(w.get_unverified_key(), "Waiting for sender...").await?;
    let verifier = with_notice(
        w.get_verifier(),
        "Key established, waiting for confirmation...",
    )
    .await?;
    if args.verify {
        eprintln!("Verifier {}.", hex::encode(verifier));
    }
    if args.only_text {
        let message = text::receive_text(w).await?;
        println!("{}", escape_like_python_repr(&message));
        return Ok(());
    }
    let mut opts = files::options(server, args.no_listen, args.hide_progress)?;
    files::receive(w, &mut opts, args.accept_file, args.output_file.as_deref()).await
}

/// The text as the reference receiver prints it, `repr(text)[1:-1]` in Python: a sender
/// cannot move the cursor, colour or clear the terminal, and scripts that parse the
/// reference's output parse ours.
///
/// Backslashes and the quote Python would pick are escaped; `\t`, `\n` and `\r` spelt out;
/// other control characters and non-printable characters (Python's `str.isprintable`:
/// categories C*, Z* except the space) as `\xNN`, `\uNNNN` or `\UNNNNNNNN`. Printable
/// non-ASCII text is kept.
pub fn escape_like_python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => push_printable(&mut out, c),
        }
    }
    out
}

/// `text` with everything that could drive a terminal (control characters, including
/// line breaks, and the other characters Python does not consider printable) spelt out
/// as in [`escape_like_python_repr`]; quotes and backslashes are kept. For texts from
/// someone else that we print inside our own lines: a received file's path, a server's
/// message of the day.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_printable(&mut out, c);
    }
    out
}

/// Push `c`, or its Python escape if it is not printable.
fn push_printable(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        ' '..='~' => out.push(c),
        c if c.is_ascii() || !is_printable(c) => {
            let n = u32::from(c);
            let _ = match n {
                0..=0xff => write!(out, "\\x{n:02x}"),
                0x100..=0xffff => write!(out, "\\u{n:04x}"),
                _ => write!(out, "\\U{n:08x}"),
            };
        }
        c => out.push(c),
    }
}

/// Python's `str.isprintable` for one non-ASCII character.
fn is_printable(c: char) -> bool {
    use GeneralCategory::*;
    !matches!(
        get_general_category(c),
        Control
            | Format
            | Surrogate
            | PrivateUse
            | Unassigned
            | LineSeparator
            | ParagraphSeparator
            | SpaceSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::escape_like_python_repr as repr;

    #[test]
    fn escapes_like_python() {
        assert_eq!(repr("plain text"), "plain text");
        assert_eq!(repr("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(repr("back\\slash"), "back\\\\slash");
        assert_eq!(repr("\u{1b}[31m\u{7f}\u{0}"), "\\x1b[31m\\x7f\\x00");
        // Quotes: Python picks ' unless the text has ' and no ".
        assert_eq!(repr("it's"), "it's");
        assert_eq!(repr("it's \"x\""), "it\\'s \"x\"");
        assert_eq!(repr("say \"x\""), "say \"x\"");
        // Non-ASCII: printable kept, invisible escaped.
        assert_eq!(repr("é ✓ 😀"), "é ✓ 😀");
        assert_eq!(
            repr("\u{a0}\u{200b}\u{2028}\u{e000}"),
            "\\xa0\\u200b\\u2028\\ue000"
        );
        assert_eq!(repr("\u{e0001}"), "\\U000e0001");
    }

    #[test]
    fn terminal_safe_spells_out_what_drives_a_terminal() {
        use super::terminal_safe as safe;
        assert_eq!(
            safe("/tmp/it's a \"file\" \\ é.txt"),
            "/tmp/it's a \"file\" \\ é.txt"
        );
        assert_eq!(
            safe("x\u{1b}]0;title\u{7}\rERROR: forged\nERROR: again\u{202e}"),
            "x\\x1b]0;title\\x07\\rERROR: forged\\nERROR: again\\u202e"
        );
    }
}
