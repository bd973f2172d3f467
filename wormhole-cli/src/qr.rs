//! The terminal QR code of `wormhole-transfer:CODE`, drawn exactly like the reference CLI
//! (Python `qrcode`: byte mode, error correction M, smallest version, border 1,
//! `print_ascii(tty=False)`): two module rows per text line with `▀`, `▄`, `█` and no-break
//! spaces.
//!
//! The mask is chosen the way Python `qrcode` chooses it, so the drawing is identical,
//! not just equivalent: its penalty score (`util.lost_point`, ported below with its
//! skipping shortcuts) is computed on the masked symbol with the format and version
//! information left light, the first lowest score wins.

use qrcode::bits::Bits;
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::{Color, EcLevel, Version};

const MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// The modules (row-major, `true` = dark) of the QR code of `data`, like Python `qrcode`.
fn modules(data: &[u8]) -> Option<(usize, Vec<bool>)> {
    let (version, bits) = (1..=40).find_map(|v| {
        let mut bits = Bits::new(Version::Normal(v));
        bits.push_byte_data(data).ok()?;
        bits.push_terminator(EcLevel::M).ok()?;
        Some((Version::Normal(v), bits))
    })?;
    let (data_cw, ec_cw) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), version, EcLevel::M).ok()?;
    let mut canvas = Canvas::new(version, EcLevel::M);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data_cw, &ec_cw);
    let n = version.width() as usize;
    let v = match version {
        Version::Normal(v) => v as usize,
        Version::Micro(_) => return None,
    };
    let masked = |m: MaskPattern| -> Vec<bool> {
        let mut c = canvas.clone();
        c.apply_mask(m);
        c.into_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect()
    };
    let mut best: Option<(u64, MaskPattern)> = None;
    for m in MASKS {
        let mut grid = masked(m);
        blank_type_info(&mut grid, n, v);
        let score = lost_point(&grid, n);
        if best.is_none_or(|(b, _)| score < b) {
            best = Some((score, m));
        }
    }
    Some((n, masked(best?.1)))
}

/// Python draws the format (and version) information light while scoring masks.
fn blank_type_info(grid: &mut [bool], n: usize, version: usize) {
    let mut set = |r: usize, c: usize| grid[r * n + c] = false;
    for i in 0..15 {
        let r = match i {
            0..6 => i,
            6..8 => i + 1,
            _ => n - 15 + i,
        };
        set(r, 8);
        let c = match i {
            0..8 => n - i - 1,
            8 => 15 - i,
            _ => 15 - i - 1,
        };
        set(8, c);
    }
    set(n - 8, 8);
    if version >= 7 {
        for i in 0..18 {
            set(i / 3, i % 3 + n - 11);
            set(i % 3 + n - 11, i / 3);
        }
    }
}

/// Python `qrcode.util.lost_point`.
fn lost_point(g: &[bool], n: usize) -> u64 {
    let at = |r: usize, c: usize| g[r * n + c];
    // Level 1: runs of 5 or more in rows and columns.
    let mut container = vec![0u64; n + 1];
    for by_row in [true, false] {
        for a in 0..n {
            let get = |b: usize| if by_row { at(a, b) } else { at(b, a) };
            let mut prev = get(0);
            let mut len = 0;
            for b in 0..n {
                if get(b) == prev {
                    len += 1;
                } else {
                    if len >= 5 {
                        container[len] += 1;
                    }
                    len = 1;
                    prev = get(b);
                }
            }
            if len >= 5 {
                container[len] += 1;
            }
        }
    }
    let mut lost: u64 = (5..=n).map(|l| container[l] * (l as u64 - 2)).sum();
    // Level 2: 2×2 blocks, with Python's skip.
    for r in 0..n - 1 {
        let mut c = 0;
        while c < n - 1 {
            let top_right = at(r, c + 1);
            if top_right != at(r + 1, c + 1) {
                c += 1; // next(iter)
            } else if top_right == at(r, c) && top_right == at(r + 1, c) {
                lost += 3;
            }
            c += 1;
        }
    }
    // Level 3: 1:1:3:1:1 finder-like patterns, with Python's skip.
    for by_row in [true, false] {
        for a in 0..n {
            let get = |b: usize| if by_row { at(a, b) } else { at(b, a) };
            let mut b = 0;
            while b + 10 < n {
                if !get(b + 1)
                    && get(b + 4)
                    && !get(b + 5)
                    && get(b + 6)
                    && !get(b + 9)
                    && ((get(b)
                        && get(b + 2)
                        && get(b + 3)
                        && !get(b + 7)
                        && !get(b + 8)
                        && !get(b + 10))
                        || (!get(b)
                            && !get(b + 2)
                            && !get(b + 3)
                            && get(b + 7)
                            && get(b + 8)
                            && get(b + 10)))
                {
                    lost += 40;
                }
                if get(b + 10) {
                    b += 1;
                }
                b += 1;
            }
        }
    }
    // Level 4: dark proportion.
    let dark = g.iter().filter(|&&d| d).count() as f64;
    let percent = dark / (n * n) as f64;
    lost += ((percent * 100.0 - 50.0).abs() / 5.0) as u64 * 10;
    lost
}

/// The QR code of `wormhole-transfer:<code>` as text lines (each ending in `\n`), or
/// `None` if the code is too long for a QR code.
pub fn render(code: &str) -> Option<String> {
    let (n, grid) = modules(format!("wormhole-transfer:{code}").as_bytes())?;
    let n = n as isize;
    let border = 1isize;
    let dark = |r: isize, c: isize| -> usize {
        if r < 0 || c < 0 || r >= n || c >= n {
            return 0;
        }
        usize::from(grid[(r * n + c) as usize])
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
    /// Drawn by Python `qrcode` as the reference CLI 0.24.0 calls it (first line: the code).
    const FIXTURES: [&str; 2] = [
        include_str!("../tests/qr/short.txt"),
        include_str!("../tests/qr/long.txt"),
    ];

    #[test]
    fn identical_to_the_reference() {
        for f in FIXTURES {
            let (code, drawing) = f.split_once('\n').unwrap();
            assert_eq!(super::render(code).unwrap(), drawing, "{code}");
        }
    }
}
