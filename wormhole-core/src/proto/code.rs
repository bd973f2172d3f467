//! Wormhole codes: format, validation, generation and completion (PROTOCOL §5).
//!
//! A code is `NAMEPLATE-REST`. The nameplate (everything before the first `-`) must be
//! ASCII digits; the code must not contain a space. Nothing else is checked, so offline
//! codes such as `913-166532` are valid. The SPAKE2 password is the whole code.

use std::collections::BTreeSet;

use rand_core::CryptoRngCore;

use super::wordlist::{EVEN_WORDS, ODD_WORDS};
use crate::error::{Error, Result};

/// The longest nameplate the reference server accepts (`^\d+$`, at most 40 characters).
pub const MAX_NAMEPLATE_LEN: usize = 40;
/// The default number of words in a generated code.
pub const DEFAULT_CODE_LENGTH: usize = 2;
/// The most words `allocate_code` will generate (each adds 8 bits).
pub const MAX_CODE_LENGTH: usize = 32;

/// Check a nameplate: 1..=40 ASCII digits.
pub fn validate_nameplate(nameplate: &str) -> Result<()> {
    if nameplate.is_empty() || !nameplate.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidCode(
            "the nameplate must be numeric, with no spaces",
        ));
    }
    if nameplate.len() > MAX_NAMEPLATE_LEN {
        return Err(Error::InvalidCode("the nameplate is longer than 40 digits"));
    }
    Ok(())
}

/// Validate a complete code and return its nameplate.
pub fn validate_code(code: &str) -> Result<&str> {
    if code.contains(' ') {
        return Err(Error::InvalidCode("the code contains a space"));
    }
    let nameplate = code.split('-').next().unwrap_or_default();
    validate_nameplate(nameplate)?;
    Ok(nameplate)
}

/// Choose `length` random words: three-syllable words at even positions, two-syllable
/// words at odd positions, joined with `-`.
pub fn generate_words(length: usize, rng: &mut dyn CryptoRngCore) -> String {
    let mut words = Vec::with_capacity(length);
    for i in 0..length {
        let mut b = [0u8; 1];
        rng.fill_bytes(&mut b);
        let list = if i % 2 == 0 { &ODD_WORDS } else { &EVEN_WORDS };
        words.push(list[b[0] as usize]);
    }
    words.join("-")
}

/// Word completions for what the user typed after the nameplate (PROTOCOL §5.4).
///
/// `prefix` holds the words typed so far, hyphens included (`"opulent-pr"`). A completion
/// gets a trailing `-` while more words are expected (`num_words` in all).
pub fn word_completions(prefix: &str, num_words: usize) -> BTreeSet<String> {
    let count = prefix.matches('-').count();
    let list = if count % 2 == 0 {
        &ODD_WORDS
    } else {
        &EVEN_WORDS
    };
    let last = prefix.rsplit('-').next().unwrap_or_default();
    let stem = &prefix[..prefix.len() - last.len()];
    let more = count + 1 < num_words;
    list.iter()
        .filter(|w| w.starts_with(last))
        .map(|w| {
            let mut s = format!("{stem}{w}");
            if more {
                s.push('-');
            }
            s
        })
        .collect()
}

/// Nameplate completions: every known nameplate starting with `prefix`, plus `-`.
pub fn nameplate_completions<'a>(
    nameplates: impl IntoIterator<Item = &'a String>,
    prefix: &str,
) -> BTreeSet<String> {
    nameplates
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| format!("{n}-"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validation() {
        for ok in [
            "7-guitarist-revenge",
            "913-166532",
            "123-HTTHHHTTHTTHHTHH",
            "0-",
            "42",
            "1-pandora-quota-enterprise",
        ] {
            assert!(validate_code(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_code("913-166532").unwrap(), "913");
        for bad in [
            "",
            "-a-b",
            "x-abc",
            " 7-a-b",
            "7-a b",
            "7 -a",
            "٣-a-b", // Arabic-Indic digit: not ASCII
            "a7-b",
            &format!("{}-a", "1".repeat(41)),
        ] {
            let e = validate_code(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidCode, "{bad:?}");
        }
        assert!(validate_code(&format!("{}-a", "1".repeat(40))).is_ok());
    }

    #[test]
    fn errors_do_not_quote_the_code() {
        let e = validate_code("x-secretword").unwrap_err();
        assert!(!e.to_string().contains("secretword"));
    }

    #[test]
    fn wordlist_matches_json_data() {
        let data: Vec<(String, String, String)> =
            serde_json::from_str(include_str!("pgp_wordlist.json")).unwrap();
        assert_eq!(data.len(), 256);
        for (i, (hexbyte, even, odd)) in data.iter().enumerate() {
            assert_eq!(u8::from_str_radix(hexbyte, 16).unwrap() as usize, i);
            assert_eq!(EVEN_WORDS[i], even.to_lowercase());
            assert_eq!(ODD_WORDS[i], odd.to_lowercase());
        }
        // The shared spec copy, when present beside the repository, is the same data.
        let shared = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/pgp_wordlist.json"
        );
        if let Ok(text) = std::fs::read_to_string(shared) {
            let shared: serde_json::Value = serde_json::from_str(&text).unwrap();
            let ours: serde_json::Value =
                serde_json::from_str(include_str!("pgp_wordlist.json")).unwrap();
            assert_eq!(shared, ours);
        }
        let even: BTreeSet<_> = EVEN_WORDS.iter().collect();
        let odd: BTreeSet<_> = ODD_WORDS.iter().collect();
        assert_eq!(even.len(), 256);
        assert_eq!(odd.len(), 256);
        assert!(even.is_disjoint(&odd));
    }

    struct Bytes(Vec<u8>);
    impl rand_core::RngCore for Bytes {
        fn next_u32(&mut self) -> u32 {
            unimplemented!()
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for d in dest {
                *d = self.0.remove(0);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for Bytes {}

    #[test]
    fn generation() {
        assert_eq!(
            generate_words(2, &mut Bytes(vec![0x00, 0xff])),
            "adroitness-zulu"
        );
        assert_eq!(
            generate_words(3, &mut Bytes(vec![0xff, 0x00, 0x00])),
            "yucatan-aardvark-adroitness"
        );
        assert_eq!(generate_words(0, &mut Bytes(vec![])), "");
        let w = generate_words(4, &mut rand::rngs::OsRng);
        assert_eq!(w.split('-').count(), 4);
        assert_eq!(w, w.to_lowercase());
    }

    #[test]
    fn completions_from_the_spec() {
        assert_eq!(
            word_completions("pr", 2),
            set(&["processor-", "provincial-", "proximate-"])
        );
        assert_eq!(
            word_completions("su", 2),
            set(&["supportive-", "surrender-", "suspicious-"])
        );
        assert_eq!(
            word_completions("pa", 2),
            set(&[
                "pacific-",
                "pandemic-",
                "pandora-",
                "paperweight-",
                "paragon-",
                "paragraph-",
                "paramount-",
                "passenger-"
            ])
        );
        assert_eq!(
            word_completions("opulent-pr", 2),
            set(&[
                "opulent-preclude",
                "opulent-prefer",
                "opulent-preshrunk",
                "opulent-printer",
                "opulent-prowler"
            ])
        );
        assert_eq!(
            word_completions("pandora-qu", 2),
            set(&["pandora-quadrant", "pandora-quiver", "pandora-quota"])
        );
        let all = word_completions("", 2);
        assert_eq!(all.len(), 256);
        assert!(all.iter().all(|c| c.ends_with('-')));
        assert!(word_completions("zzz", 2).is_empty());
        // A third word with num_words 3 alternates back to the odd list, no hyphen.
        assert!(word_completions("pandora-quota-ent", 3).contains("pandora-quota-enterprise"));
    }

    #[test]
    fn nameplate_completion() {
        let known: Vec<String> = ["1", "12", "13", "24", "170"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            nameplate_completions(&known, "1"),
            set(&["1-", "12-", "13-", "170-"])
        );
        assert_eq!(nameplate_completions(&known, "").len(), 5);
        assert!(nameplate_completions(&known, "9").is_empty());
    }
}
