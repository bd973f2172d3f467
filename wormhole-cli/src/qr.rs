//! The terminal QR code of `wormhole-transfer:CODE`, drawn like the reference CLI (Python
//! `qrcode`, border 1, error correction M, `print_ascii(tty=False)`): two module rows per
//! text line with `▀`, `▄`, `█` and no-break spaces. The mask pattern may differ from
//! Python's choice (its penalty scoring differs), so the drawing can differ while
//! encoding the same text.

use qrcode::{Color, EcLevel, QrCode};

/// The QR code of `wormhole-transfer:<code>` as text lines (each ending in `\n`), or
/// `None` if the code is too long for a QR code.
pub fn render(code: &str) -> Option<String> {
    let qr = QrCode::with_error_correction_level(format!("wormhole-transfer:{code}"), EcLevel::M)
        .ok()?;
    let n = qr.width() as isize;
    let border = 1isize;
    let dark = |r: isize, c: isize| -> usize {
        if r < 0 || c < 0 || r >= n || c >= n {
            return 0;
        }
        usize::from(qr[(c as usize, r as usize)] == Color::Dark)
    };
    const CODES: [char; 4] = ['\u{a0}', '▀', '▄', '█'];
    let mut out = String::new();
    let mut r = -border;
    while r < n + border {
        for c in -border..n + border {
            out.push(CODES[dark(r, c) + (dark(r + 1, c) << 1)]);
        }
        out.push('\n');
        r += 2;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_half_blocks() {
        let s = super::render("7-guitarist-revenge").unwrap();
        let lines: Vec<&str> = s.lines().collect();
        // Version 3 (29 modules) + 2 border modules, 31 rows in 16 lines.
        assert_eq!(lines.len(), 16);
        assert!(lines.iter().all(|l| l.chars().count() == 31));
        assert!(lines[0].starts_with("\u{a0}▄▄▄▄▄▄▄\u{a0}"));
    }
}
