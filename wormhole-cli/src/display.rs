//! How the reference CLI shows things, for output that must match it: texts from someone
//! else made safe for the terminal (Python's `repr`), and byte counts (Python's
//! `humanize.naturalsize`).

use std::fmt::Write;

use unicode_general_category::{GeneralCategory, get_general_category};

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
    use super::escape_like_python_repr as repr;
    use super::natural_size;

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
