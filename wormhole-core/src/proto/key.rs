//! Key agreement and the key schedule (PROTOCOL §1.3, §1.4, §4.2–4.5).
//!
//! SPAKE2 (symmetric, Ed25519) turns the code into a 32-byte master key; HKDF-SHA256 (no
//! salt) derives per-phase keys, the verifier and application keys; SecretBox
//! (XSalsa20-Poly1305) seals bodies as `nonce(24) || tag(16) || ciphertext`.

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use curve25519_dalek::edwards::CompressedEdwardsY;
use hkdf::Hkdf;
use rand_chacha::rand_core::SeedableRng;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Length of a SecretBox nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Largest output of one HKDF-SHA256 expansion (255 × 32).
pub const MAX_DERIVED_KEY_LEN: usize = 255 * 32;

/// The 32-byte master key agreed by SPAKE2. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// NFC-normalise and UTF-8 encode a user-visible string (PROTOCOL §1.1).
pub fn to_bytes(s: &str) -> Vec<u8> {
    s.nfc().collect::<String>().into_bytes()
}

/// `HKDF(key, length, info=purpose)`. `length` must be 1..=8160.
pub fn derive_key(key: &[u8], purpose: &[u8], length: usize) -> Result<Vec<u8>> {
    if length == 0 || length > MAX_DERIVED_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "derived key length must be 1..={MAX_DERIVED_KEY_LEN}, got {length}"
        )));
    }
    let mut out = vec![0u8; length];
    Hkdf::<Sha256>::new(None, key)
        .expand(purpose, &mut out)
        .map_err(|_| Error::Internal("HKDF expand failed".into()))?;
    Ok(out)
}

fn derive_32(key: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, key).expand(purpose, &mut out);
    out
}

/// The per-phase message key: `HKDF(key, 32, "wormhole:phase:" || sha256(side) || sha256(phase))`.
pub fn derive_phase_key(key: &[u8], side: &str, phase: &str) -> [u8; 32] {
    let mut info = Vec::with_capacity(15 + 64);
    info.extend_from_slice(b"wormhole:phase:");
    info.extend_from_slice(&Sha256::digest(side.as_bytes()));
    info.extend_from_slice(&Sha256::digest(phase.as_bytes()));
    derive_32(key, &info)
}

/// The verifier both sides can compare: `HKDF(key, 32, "wormhole:verifier")`.
pub fn derive_verifier(key: &[u8]) -> [u8; 32] {
    derive_32(key, b"wormhole:verifier")
}

/// Seal `plaintext` with a given nonce: `nonce || tag || ciphertext`.
pub fn encrypt_with_nonce(key: &[u8; 32], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(key.into());
    // Encryption only fails for plaintexts beyond the cipher's 2^38-byte limit.
    let sealed = cipher
        .encrypt(Nonce::from_slice(nonce), plaintext)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Seal `plaintext` with a fresh random nonce.
pub fn encrypt(key: &[u8; 32], plaintext: &[u8], rng: &mut dyn CryptoRngCore) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    encrypt_with_nonce(key, &nonce, plaintext)
}

/// Open a `nonce || tag || ciphertext` body. `None` if it is too short or fails to verify.
pub fn decrypt(key: &[u8; 32], body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    XSalsa20Poly1305::new(key.into())
        .decrypt(Nonce::from_slice(nonce), sealed)
        .ok()
}

/// One side's SPAKE2 state, between sending our message and receiving the peer's.
///
/// It is made from a 64-byte seed, the random bytes SPAKE2 draws for its scalar, so that it
/// can be saved as the seed and the code and made again (see [`Pake::from_seed`]); the
/// seed is as secret as the scalar.
pub struct Pake {
    state: Spake2<Ed25519Group>,
    outbound: Vec<u8>,
    code: String,
    appid: String,
    seed: [u8; SEED_LEN],
}

/// The bytes SPAKE2 draws for its scalar (curve25519-dalek's `Scalar::random` reduces 64
/// random bytes).
const SEED_LEN: usize = 64;

/// Hands out a saved seed, so that SPAKE2 draws exactly those bytes; past them (never with
/// the SPAKE2 of this crate version), a ChaCha20 stream keyed by the seed, so that the
/// result still depends only on the seed.
struct SeedRng {
    seed: [u8; SEED_LEN],
    used: usize,
    more: rand_chacha::ChaCha20Rng,
}

impl SeedRng {
    fn new(seed: [u8; SEED_LEN]) -> SeedRng {
        let mut key = [0u8; 32];
        key.copy_from_slice(&Sha256::digest(seed));
        SeedRng {
            seed,
            used: 0,
            more: rand_chacha::ChaCha20Rng::from_seed(key),
        }
    }
}

impl rand_core::RngCore for SeedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(SEED_LEN - self.used);
        dest[..n].copy_from_slice(&self.seed[self.used..self.used + n]);
        self.used += n;
        self.more.fill_bytes(&mut dest[n..]);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for SeedRng {}

/// What a [`Pake`] is saved as: the code, the app id and the seed (all secret).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedPake {
    code: String,
    appid: String,
    seed: String,
}

impl Serialize for Pake {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SavedPake {
            code: self.code.clone(),
            appid: self.appid.clone(),
            seed: hex::encode(self.seed),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pake {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Pake, D::Error> {
        let saved = SavedPake::deserialize(d)?;
        let seed = hex::decode(&saved.seed)
            .ok()
            .and_then(|b| <[u8; SEED_LEN]>::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom("the SPAKE2 seed is not 64 bytes of hex"))?;
        Ok(Pake::from_seed(&saved.code, &saved.appid, seed))
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Key)
            .ok_or_else(|| serde::de::Error::custom("a key is not 32 bytes of hex"))
    }
}

impl std::fmt::Debug for Pake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pake(..)")
    }
}

/// Why a peer's `pake` body could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PakeError {
    /// The body is not JSON with a `pake_v1` key: the reference treats this as a wrong code.
    NoPakeV1,
    /// The SPAKE2 message is malformed (hex, length, side byte, or point).
    Malformed,
    /// The peer sent our own message back.
    Reflection,
}

impl Pake {
    /// Start symmetric SPAKE2 with `password = UTF-8(NFC(code))`, `id = UTF-8(NFC(appid))`.
    pub fn start(code: &str, appid: &str, rng: &mut dyn CryptoRngCore) -> Pake {
        let mut seed = [0u8; SEED_LEN];
        rng.fill_bytes(&mut seed);
        Pake::from_seed(code, appid, seed)
    }

    /// [`Pake::start`] with `seed` as the random bytes SPAKE2 draws: the same arguments
    /// make the same state and message, and `start` with a generator that yields `seed`
    /// makes this one.
    pub fn from_seed(code: &str, appid: &str, seed: [u8; SEED_LEN]) -> Pake {
        let mut rng = SeedRng::new(seed);
        let (state, outbound) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
            &Password::new(to_bytes(code)),
            &Identity::new(&to_bytes(appid)),
            &mut rng,
        );
        Pake {
            state,
            outbound,
            code: code.to_owned(),
            appid: appid.to_owned(),
            seed,
        }
    }

    /// Our 33-byte SPAKE2 message.
    pub fn message(&self) -> &[u8] {
        &self.outbound
    }

    /// The body of our `pake` mailbox message: `{"pake_v1": "<hex>"}`.
    pub fn body(&self) -> Vec<u8> {
        format!("{{\"pake_v1\": \"{}\"}}", hex::encode(&self.outbound)).into_bytes()
    }

    /// Finish with the peer's `pake` body; returns the master key.
    pub fn finish(self, peer_body: &[u8]) -> std::result::Result<Key, PakeError> {
        let value: serde_json::Value =
            serde_json::from_slice(peer_body).map_err(|_| PakeError::NoPakeV1)?;
        let hex_msg = match value.get("pake_v1") {
            None => return Err(PakeError::NoPakeV1),
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(PakeError::Malformed),
        };
        let msg = hex::decode(hex_msg).map_err(|_| PakeError::Malformed)?;
        if msg.len() != 33 {
            return Err(PakeError::Malformed);
        }
        if msg == self.outbound {
            return Err(PakeError::Reflection);
        }
        // §4.2: the element must be a point of the prime-order subgroup other than the
        // identity. The `spake2` crate only decompresses it, so check here: a low-order
        // element would give a key an attacker can predict.
        let mut element = [0u8; 32];
        element.copy_from_slice(&msg[1..]);
        let point = CompressedEdwardsY(element)
            .decompress()
            .ok_or(PakeError::Malformed)?;
        if point.is_small_order() || !point.is_torsion_free() {
            return Err(PakeError::Malformed);
        }
        let key = self.state.finish(&msg).map_err(|_| PakeError::Malformed)?;
        let key: [u8; 32] = key.try_into().map_err(|_| PakeError::Malformed)?;
        Ok(Key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn vector_key() -> Vec<u8> {
        (0u8..32).collect()
    }

    /// An RNG that yields one constant byte (PROTOCOL §10.6).
    struct ConstRng(u8);
    impl rand_core::RngCore for ConstRng {
        fn next_u32(&mut self) -> u32 {
            u32::from_ne_bytes([self.0; 4])
        }
        fn next_u64(&mut self) -> u64 {
            u64::from_ne_bytes([self.0; 8])
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.0)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(self.0);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for ConstRng {}

    #[test]
    fn phase_keys_vector_10_1() {
        let key = vector_key();
        let side = "abcdef0123";
        for (phase, expected) in [
            (
                "pake",
                "0f0dd6ec28a0b53b05f70539e3db553b47c007826bff0d1f441d10b3c4f97735",
            ),
            (
                "version",
                "fb0634a65fc823a06c93860cac98f8281255f0d897e9024984e68715b7cdf94b",
            ),
            (
                "0",
                "1f8ddc17c9c811c962d0d910f8024045ba4831ab9e51ae71376172b42ee9f1cd",
            ),
            (
                "1",
                "e30fce2b6076d424b01aba747c7cd9b3120780c14bfe67b371e7e6c79cd76173",
            ),
            (
                "dilate-0",
                "1a161a71ec36a972771437014d82dda06d2a31006f35cebf9e62a59b0ad2cb14",
            ),
        ] {
            assert_eq!(derive_phase_key(&key, side, phase).to_vec(), h(expected));
        }
    }

    #[test]
    fn derive_key_and_verifier_vector_10_1() {
        let key = vector_key();
        assert_eq!(
            derive_key(&key, b"foo", 32).unwrap(),
            h("97cdbf962f9403dc3350dfb86f6fc8a29815ea768928c9f33e6502406d678032")
        );
        assert_eq!(
            derive_key(&key, b"foo", 16).unwrap(),
            h("97cdbf962f9403dc3350dfb86f6fc8a2")
        );
        assert_eq!(
            derive_key(&key, b"foo", 64).unwrap(),
            h(
                "97cdbf962f9403dc3350dfb86f6fc8a29815ea768928c9f33e6502406d678032
               6c9dd1314df80ac55ffd0ac5fd79ac53c7f1b257116a6147608453811ccd19ca"
            )
        );
        assert_eq!(
            derive_verifier(&key).to_vec(),
            h("116c6e41d0faf2886a5b488079748585db2c4d6d151cca6c580055e1bd176459")
        );
        assert_eq!(
            derive_key(
                &key,
                b"lothar.com/wormhole/text-or-file-xfer/transit-key",
                32
            )
            .unwrap(),
            h("9329a646acaba7172c557c7971191ec6a1e287f84abe58c60dce2659c44c2925")
        );
        assert!(derive_key(&key, b"foo", 0).is_err());
        assert!(derive_key(&key, b"foo", MAX_DERIVED_KEY_LEN + 1).is_err());
        assert_eq!(
            derive_key(&key, b"foo", MAX_DERIVED_KEY_LEN).unwrap().len(),
            MAX_DERIVED_KEY_LEN
        );
    }

    #[test]
    fn version_body_vector_10_2() {
        let key = derive_phase_key(&vector_key(), "abcdef0123", "version");
        let nonce: [u8; 24] = h("000102030405060708090a0b0c0d0e0f1011121314151617")
            .try_into()
            .unwrap();
        let body = encrypt_with_nonce(&key, &nonce, br#"{"app_versions": {}}"#);
        assert_eq!(
            body,
            h("000102030405060708090a0b0c0d0e0f1011121314151617
               491c93618dfc3421e365d1dd9b30c93a
               9a208aa6188a15befb49bf769961ad5f0f349507")
        );
        assert_eq!(decrypt(&key, &body).unwrap(), br#"{"app_versions": {}}"#);
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(decrypt(&key, &tampered), None);
        assert_eq!(decrypt(&key, &body[..39]), None);
        assert_eq!(decrypt(&key, &[]), None);
        // An empty plaintext is 40 bytes and decrypts.
        let empty = encrypt_with_nonce(&key, &nonce, b"");
        assert_eq!(empty.len(), 40);
        assert_eq!(decrypt(&key, &empty).unwrap(), b"");
    }

    #[test]
    fn spake2_vector_10_6() {
        let code = "7-guitarist-revenge";
        let appid = "lothar.com/wormhole/text-or-file-xfer";
        let a = Pake::start(code, appid, &mut ConstRng(0x11));
        let b = Pake::start(code, appid, &mut ConstRng(0x22));
        assert_eq!(
            a.message(),
            &h("53d9d9db8fbeea822e2ee39d348f539a8eef7ca2ed997ce4ce7f0b0aad416e0d55")[..]
        );
        assert_eq!(
            b.message(),
            &h("538c1a063f63d7350deddff87e725879c7fc77f7dce828a563449afd6b17170e61")[..]
        );
        assert_eq!(
            a.body(),
            br#"{"pake_v1": "53d9d9db8fbeea822e2ee39d348f539a8eef7ca2ed997ce4ce7f0b0aad416e0d55"}"#
        );
        let (ab, bb) = (a.body(), b.body());
        let ka = a.finish(&bb).unwrap();
        let kb = b.finish(&ab).unwrap();
        let expected = h("15d65e15451cf3465928ddb27517623466c08d3dd91413fa347c36726e4b1297");
        assert_eq!(ka.0.to_vec(), expected);
        assert_eq!(kb, ka);
        assert_eq!(
            derive_verifier(&ka.0).to_vec(),
            h("6869bfd8487d2f8393951f823f3f7986c95f6c99c265ffd6942532c1f8f6a70c")
        );
    }

    #[test]
    fn pake_rejects_bad_bodies() {
        let mk = || Pake::start("1-a-b", "app", &mut ConstRng(0x11));
        assert_eq!(mk().finish(b"not json").unwrap_err(), PakeError::NoPakeV1);
        assert_eq!(mk().finish(b"{}").unwrap_err(), PakeError::NoPakeV1);
        assert_eq!(
            mk().finish(br#"{"pake_v1": 5}"#).unwrap_err(),
            PakeError::Malformed
        );
        assert_eq!(
            mk().finish(br#"{"pake_v1": "zz"}"#).unwrap_err(),
            PakeError::Malformed
        );
        assert_eq!(
            mk().finish(br#"{"pake_v1": "5300"}"#).unwrap_err(),
            PakeError::Malformed
        );
        // Wrong side byte ('A').
        let bad = format!("{{\"pake_v1\": \"41{}\"}}", "00".repeat(32));
        assert_eq!(
            mk().finish(bad.as_bytes()).unwrap_err(),
            PakeError::Malformed
        );
        // Low-order points: the identity (0, 1), (0, -1) of order 2, (sqrt(-1), 0) of
        // order 4; and a point off the curve.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order2 = [0xffu8; 32];
        order2[0] = 0xec;
        order2[31] = 0x7f;
        // A valid prime-order element plus a point of order 2: not torsion-free.
        let p = mk();
        let valid: [u8; 32] = p.message()[1..].try_into().unwrap();
        let mixed = (CompressedEdwardsY(valid).decompress().unwrap()
            + CompressedEdwardsY(order2).decompress().unwrap())
        .compress()
        .0;
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        for point in [identity, order2, [0u8; 32], mixed, off_curve] {
            let body = format!("{{\"pake_v1\": \"53{}\"}}", hex::encode(point));
            assert_eq!(
                mk().finish(body.as_bytes()).unwrap_err(),
                PakeError::Malformed,
                "{point:02x?}"
            );
        }
        let own = p.body();
        assert_eq!(p.finish(&own).unwrap_err(), PakeError::Reflection);
    }

    #[test]
    fn nfc_normalisation() {
        // "é" as e + combining acute normalises to U+00E9.
        assert_eq!(to_bytes("e\u{301}"), "\u{e9}".as_bytes());
    }
}
