//! Serde helpers for the machines' snapshots: byte strings as lowercase hex.

use serde::{Deserialize, Deserializer, Serializer};

/// Serde for a byte string as lowercase hex.
pub(crate) mod hex_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
    }
}

/// Serde for a sequence of `(phase, bytes)` pairs, the bytes as hex.
pub(crate) mod hex_pairs {
    use super::*;

    pub(crate) fn serialize<'a, S, I>(pairs: I, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        I: IntoIterator<Item = &'a (String, Vec<u8>)>,
    {
        s.collect_seq(
            pairs
                .into_iter()
                .map(|(phase, body)| (phase, hex::encode(body))),
        )
    }

    pub(crate) fn deserialize<'de, D, C>(d: D) -> Result<C, D::Error>
    where
        D: Deserializer<'de>,
        C: FromIterator<(String, Vec<u8>)>,
    {
        let pairs = Vec::<(String, String)>::deserialize(d)?;
        pairs
            .into_iter()
            .map(|(phase, body)| {
                hex::decode(body)
                    .map(|b| (phase, b))
                    .map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
            })
            .collect()
    }
}

/// Serde for a map from phase numbers to bytes, the bytes as hex.
pub(crate) mod hex_map {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        map: &BTreeMap<u64, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(n, b)| (n, hex::encode(b))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Vec<u8>>, D::Error> {
        Vec::<(u64, String)>::deserialize(d)?
            .into_iter()
            .map(|(n, b)| {
                hex::decode(b)
                    .map(|b| (n, b))
                    .map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
            })
            .collect()
    }
}
