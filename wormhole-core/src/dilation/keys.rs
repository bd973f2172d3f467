//! Keys, sides, roles and phase names (PROTOCOL §9.2–§9.4).
//!
//! One Dilation key serves every connection and every generation. Each side picks a
//! random 16-hex-digit *dilation side* when Dilation starts (independent of its mailbox
//! side); the larger side (compared as strings) is the Leader.

use rand_core::CryptoRngCore;

use super::{DilationError, Result};
use crate::proto::key;
use crate::transit::proto as transit;

/// The HKDF purpose of the Dilation key.
pub const DILATION_PURPOSE: &[u8] = b"dilation-v1";

/// The Dilation versions we speak, best first (the `can-dilate` list of our `version`
/// message). 0.24 knows only `"ged"`.
pub const DILATION_VERSIONS: &[&str] = &["ged"];

/// The phase-name prefix of Dilation mailbox messages (`dilate-0`, `dilate-1`, …).
pub const PHASE_PREFIX: &str = "dilate-";

/// The Dilation key: `derive_key(master_key, b"dilation-v1", 32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct DilationKey(pub [u8; 32]);

impl std::fmt::Debug for DilationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DilationKey(..)")
    }
}

impl DilationKey {
    /// Derive it from the wormhole's (SPAKE2) master key.
    pub fn derive(master_key: &[u8]) -> DilationKey {
        let mut out = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 length, so this cannot fail.
        if let Ok(v) = key::derive_key(master_key, DILATION_PURPOSE, 32) {
            out.copy_from_slice(&v);
        }
        DilationKey(out)
    }

    /// The relay token: `HKDF(dilation_key, 32, b"transit_relay_token")`.
    pub fn relay_token(&self) -> [u8; 32] {
        transit::relay_token(&self.0)
    }

    /// The line that opens a connection to a transit relay:
    /// `please relay <hex(token)> for side <side>\n` (104 bytes).
    pub fn relay_handshake(&self, side: &DilationSide) -> Vec<u8> {
        transit::relay_handshake(&self.relay_token(), side.as_str())
    }
}

/// A dilation side: 16 lowercase hex digits (8 random bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DilationSide(String);

impl DilationSide {
    /// A fresh random side.
    pub fn random(rng: &mut dyn CryptoRngCore) -> DilationSide {
        let mut b = [0u8; 8];
        rng.fill_bytes(&mut b);
        DilationSide(hex::encode(b))
    }

    /// Check and wrap a side received from the peer (or configured).
    pub fn parse(s: &str) -> Result<DilationSide> {
        if s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(DilationSide(s.to_owned()))
        } else {
            Err(DilationError::BadSide)
        }
    }

    /// The side as sent in `please`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who we are on every connection of this Dilation session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The larger side: Noise initiator, chooses the connection, sends PINGs, allocates
    /// odd subchannel ids, asks for reconnection.
    Leader,
    /// The smaller side: Noise responder, sends the first KCM, allocates even ids.
    Follower,
}

impl Role {
    /// Compare the sides as strings (§9.4): the larger is the Leader; equal sides mean we
    /// received our own `please` (reflection).
    ///
    /// Peer sides are compared as received (the reference does not validate them).
    pub fn from_sides(ours: &DilationSide, theirs: &str) -> Result<Role> {
        match ours.as_str().cmp(theirs) {
            std::cmp::Ordering::Greater => Ok(Role::Leader),
            std::cmp::Ordering::Less => Ok(Role::Follower),
            std::cmp::Ordering::Equal => Err(DilationError::Reflection),
        }
    }
}

/// The version to put in our `please`: the first of `ours` that the peer's `can-dilate`
/// list also has (`None`: no common version; 0.24 then sends `please` without
/// `use-version` and reports an error locally).
pub fn choose_version(ours: &[&str], theirs: &[String]) -> Option<String> {
    ours.iter()
        .find(|v| theirs.iter().any(|t| t == *v))
        .map(|v| (*v).to_owned())
}

/// The phase name of the `n`-th Dilation message a side sends.
pub fn phase_name(n: u64) -> String {
    format!("{PHASE_PREFIX}{n}")
}

/// The `N` of a `dilate-N` phase (decimal, no sign, no leading `+`), or an error.
pub fn parse_phase(phase: &str) -> Result<u64> {
    let bad = || DilationError::BadPhase(phase.to_owned());
    let n = phase.strip_prefix(PHASE_PREFIX).ok_or_else(bad)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    n.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn master() -> Vec<u8> {
        (0u8..32).collect()
    }

    /// PROTOCOL §10.4.
    #[test]
    fn dilation_key_and_relay_handshake_match_the_vectors() {
        let k = DilationKey::derive(&master());
        assert_eq!(
            hex::encode(k.0),
            "982be0f500b3f356de6d205123e12da73b04de97d7bf326f2752e4f7cff6d070"
        );
        let side = DilationSide::parse("fedcba9876543210").unwrap();
        let hs = k.relay_handshake(&side);
        assert_eq!(
            hs,
            b"please relay d9d0970dfbf2c4a7b4a4bbdc3f4c771da09bf0b65fbe26f345b082fc80b19316 for side fedcba9876543210\n"
        );
        assert_eq!(hs.len(), 104);
        assert_eq!(format!("{k:?}"), "DilationKey(..)", "no key in Debug");
    }

    /// PROTOCOL §10.1: the `dilate-0` phase key is an ordinary phase key.
    #[test]
    fn dilate_phase_key_matches_the_vector() {
        assert_eq!(
            hex::encode(key::derive_phase_key(
                &master(),
                "abcdef0123",
                &phase_name(0)
            )),
            "1a161a71ec36a972771437014d82dda06d2a31006f35cebf9e62a59b0ad2cb14"
        );
    }

    #[test]
    fn sides_and_roles() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let s = DilationSide::random(&mut rng);
        assert_eq!(s.as_str().len(), 16);
        assert_eq!(DilationSide::parse(s.as_str()).unwrap(), s);
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdefa",
            "g123456789abcdef",
        ] {
            assert_eq!(
                DilationSide::parse(bad),
                Err(DilationError::BadSide),
                "{bad}"
            );
        }
        // The §12.4 transcript: A ("b4c6…") is the Leader.
        let a = DilationSide::parse("b4c6208a656c1399").unwrap();
        let b = DilationSide::parse("57ac9e7efe0ab261").unwrap();
        assert_eq!(Role::from_sides(&a, b.as_str()), Ok(Role::Leader));
        assert_eq!(Role::from_sides(&b, a.as_str()), Ok(Role::Follower));
        assert_eq!(
            Role::from_sides(&a, a.as_str()),
            Err(DilationError::Reflection)
        );
    }

    #[test]
    fn versions_and_phases() {
        assert_eq!(
            choose_version(DILATION_VERSIONS, &["x".into(), "ged".into()]),
            Some("ged".into())
        );
        assert_eq!(choose_version(DILATION_VERSIONS, &["x".into()]), None);
        assert_eq!(phase_name(0), "dilate-0");
        assert_eq!(phase_name(12), "dilate-12");
        assert_eq!(parse_phase("dilate-0"), Ok(0));
        assert_eq!(parse_phase("dilate-17"), Ok(17));
        for bad in [
            "dilate-",
            "DILATE-1",
            "dilate--1",
            "dilate-+1",
            "dilate-1x",
            "0",
            "version",
        ] {
            assert!(parse_phase(bad).is_err(), "{bad}");
        }
    }
}
