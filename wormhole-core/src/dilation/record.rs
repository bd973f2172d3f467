//! L3 records (PROTOCOL §9.7): the plaintext inside each Noise transport frame.
//!
//! ```text
//! KCM   00
//! PING  01 ping_id(4)
//! PONG  02 ping_id(4)
//! OPEN  03 scid(be4) seqnum(be4) subprotocol(UTF-8, rest)
//! DATA  04 scid(be4) seqnum(be4) data(rest)
//! CLOSE 05 scid(be4) seqnum(be4)
//! ACK   06 resp_seqnum(be4)
//! ```
//!
//! The subchannel id comes first, then the sequence number. Decoding is strict: a short
//! record, trailing bytes after a fixed-size record, an unknown type byte or a record
//! above the caller's limit is an error.

use super::{DilationError, Result};

/// One L3 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Key confirmation: the first record each side sends on a connection.
    Kcm,
    /// Keepalive request (the Leader sends these), with an opaque id.
    Ping([u8; 4]),
    /// Keepalive answer, echoing the PING's id.
    Pong([u8; 4]),
    /// Open subchannel `scid` for subprotocol `name`.
    Open {
        /// Subchannel id.
        scid: u32,
        /// Sequence number (L4).
        seqnum: u32,
        /// The subprotocol (service) name.
        name: String,
    },
    /// Application bytes on subchannel `scid` (one record per application write).
    Data {
        /// Subchannel id.
        scid: u32,
        /// Sequence number (L4).
        seqnum: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close (our direction of) subchannel `scid`.
    Close {
        /// Subchannel id.
        scid: u32,
        /// Sequence number (L4).
        seqnum: u32,
    },
    /// Every record with a sequence number up to `resp_seqnum` arrived.
    Ack {
        /// The acknowledged sequence number.
        resp_seqnum: u32,
    },
}

/// Type byte of [`Record::Kcm`].
pub const T_KCM: u8 = 0x00;
/// Type byte of [`Record::Ping`].
pub const T_PING: u8 = 0x01;
/// Type byte of [`Record::Pong`].
pub const T_PONG: u8 = 0x02;
/// Type byte of [`Record::Open`].
pub const T_OPEN: u8 = 0x03;
/// Type byte of [`Record::Data`].
pub const T_DATA: u8 = 0x04;
/// Type byte of [`Record::Close`].
pub const T_CLOSE: u8 = 0x05;
/// Type byte of [`Record::Ack`].
pub const T_ACK: u8 = 0x06;

/// Bytes of a DATA record before its payload (type, scid, seqnum).
pub const DATA_HEADER_LEN: usize = 9;

fn be4(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Record {
    /// The record's name, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Kcm => "KCM",
            Record::Ping(_) => "PING",
            Record::Pong(_) => "PONG",
            Record::Open { .. } => "OPEN",
            Record::Data { .. } => "DATA",
            Record::Close { .. } => "CLOSE",
            Record::Ack { .. } => "ACK",
        }
    }

    /// The sequence number of an OPEN, DATA or CLOSE (the records L4 queues and acks).
    pub fn seqnum(&self) -> Option<u32> {
        match self {
            Record::Open { seqnum, .. }
            | Record::Data { seqnum, .. }
            | Record::Close { seqnum, .. } => Some(*seqnum),
            _ => None,
        }
    }

    /// The encoded length of this record.
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::Kcm => 1,
            Record::Ping(_) | Record::Pong(_) | Record::Ack { .. } => 5,
            Record::Open { name, .. } => 9 + name.len(),
            Record::Data { data, .. } => DATA_HEADER_LEN + data.len(),
            Record::Close { .. } => 9,
        }
    }

    /// Append the encoding of this record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let body = self.encode_head_into(out);
        out.extend_from_slice(body);
    }

    /// Append the encoding of this record to `out` except a DATA record's payload, and
    /// return that payload (empty for every other record), for callers that place it
    /// themselves: the encoding is what was appended followed by what is returned.
    pub fn encode_head_into(&self, out: &mut Vec<u8>) -> &[u8] {
        match self {
            Record::Kcm => out.push(T_KCM),
            Record::Ping(id) => {
                out.push(T_PING);
                out.extend_from_slice(id);
            }
            Record::Pong(id) => {
                out.push(T_PONG);
                out.extend_from_slice(id);
            }
            Record::Open { scid, seqnum, name } => {
                out.push(T_OPEN);
                out.extend_from_slice(&scid.to_be_bytes());
                out.extend_from_slice(&seqnum.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            Record::Data { scid, seqnum, data } => {
                out.push(T_DATA);
                out.extend_from_slice(&scid.to_be_bytes());
                out.extend_from_slice(&seqnum.to_be_bytes());
                return data;
            }
            Record::Close { scid, seqnum } => {
                out.push(T_CLOSE);
                out.extend_from_slice(&scid.to_be_bytes());
                out.extend_from_slice(&seqnum.to_be_bytes());
            }
            Record::Ack { resp_seqnum } => {
                out.push(T_ACK);
                out.extend_from_slice(&resp_seqnum.to_be_bytes());
            }
        }
        &[]
    }

    /// The encoding of this record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }

    /// Decode one whole record, refusing anything longer than `max_len` bytes.
    pub fn decode(b: &[u8], max_len: usize) -> Result<Record> {
        if b.len() > max_len {
            return Err(DilationError::Oversized {
                len: b.len(),
                max: max_len,
            });
        }
        let (&t, rest) = b
            .split_first()
            .ok_or(DilationError::TruncatedRecord("empty"))?;
        let fixed = |name: &'static str, n: usize| -> Result<&[u8]> {
            match rest.len().cmp(&n) {
                std::cmp::Ordering::Less => Err(DilationError::TruncatedRecord(name)),
                std::cmp::Ordering::Greater => Err(DilationError::TrailingBytes(name)),
                std::cmp::Ordering::Equal => Ok(rest),
            }
        };
        let at_least = |name: &'static str, n: usize| -> Result<(u32, u32, &[u8])> {
            if rest.len() < n {
                return Err(DilationError::TruncatedRecord(name));
            }
            Ok((be4(&rest[..4]), be4(&rest[4..8]), &rest[8..]))
        };
        Ok(match t {
            T_KCM => {
                fixed("KCM", 0)?;
                Record::Kcm
            }
            T_PING => Record::Ping(fixed("PING", 4)?.try_into().unwrap_or_default()),
            T_PONG => Record::Pong(fixed("PONG", 4)?.try_into().unwrap_or_default()),
            T_OPEN => {
                let (scid, seqnum, name) = at_least("OPEN", 8)?;
                let name = std::str::from_utf8(name)
                    .map_err(|_| DilationError::BadUtf8)?
                    .to_owned();
                Record::Open { scid, seqnum, name }
            }
            T_DATA => {
                let (scid, seqnum, data) = at_least("DATA", 8)?;
                Record::Data {
                    scid,
                    seqnum,
                    data: data.to_vec(),
                }
            }
            T_CLOSE => {
                let r = fixed("CLOSE", 8)?;
                Record::Close {
                    scid: be4(&r[..4]),
                    seqnum: be4(&r[4..]),
                }
            }
            T_ACK => Record::Ack {
                resp_seqnum: be4(fixed("ACK", 4)?),
            },
            other => return Err(DilationError::UnknownRecordType(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// PROTOCOL §10.4, every record type.
    fn vectors() -> Vec<(Record, &'static str)> {
        vec![
            (Record::Kcm, "00"),
            (Record::Ping([1, 2, 3, 4]), "0101020304"),
            (Record::Pong([1, 2, 3, 4]), "0201020304"),
            (
                Record::Open {
                    scid: 1,
                    seqnum: 0,
                    name: "proto".into(),
                },
                "03000000010000000070726f746f",
            ),
            (
                Record::Data {
                    scid: 1,
                    seqnum: 1,
                    data: b"hi".to_vec(),
                },
                "0400000001000000016869",
            ),
            (Record::Close { scid: 1, seqnum: 2 }, "050000000100000002"),
            (Record::Ack { resp_seqnum: 2 }, "0600000002"),
        ]
    }

    #[test]
    fn encodings_match_the_vectors() {
        for (r, hex_enc) in vectors() {
            let enc = r.encode();
            assert_eq!(hex::encode(&enc), hex_enc, "{r:?}");
            assert_eq!(enc.len(), r.encoded_len());
            assert_eq!(Record::decode(&enc, MAX).unwrap(), r);
        }
    }

    #[test]
    fn seqnums() {
        let seqs: Vec<_> = vectors().iter().map(|(r, _)| r.seqnum()).collect();
        assert_eq!(seqs, [None, None, None, Some(0), Some(1), Some(2), None]);
    }

    #[test]
    fn every_truncation_of_a_fixed_record_is_an_error() {
        for (r, _) in vectors() {
            let enc = r.encode();
            let min = match r {
                Record::Open { .. } | Record::Data { .. } => 9,
                _ => enc.len(),
            };
            for n in 0..min {
                assert!(
                    matches!(
                        Record::decode(&enc[..n], MAX),
                        Err(DilationError::TruncatedRecord(_))
                    ),
                    "{r:?} cut to {n}"
                );
            }
        }
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(
            Record::decode(&[0x07], MAX),
            Err(DilationError::UnknownRecordType(7))
        );
        assert_eq!(
            Record::decode(&[0xff, 0, 0], MAX),
            Err(DilationError::UnknownRecordType(0xff))
        );
        assert_eq!(
            Record::decode(&[0x00, 0x00], MAX),
            Err(DilationError::TrailingBytes("KCM"))
        );
        assert_eq!(
            Record::decode(&hex::decode("060000000200").unwrap(), MAX),
            Err(DilationError::TrailingBytes("ACK"))
        );
        assert_eq!(
            Record::decode(&hex::decode("05000000010000000200").unwrap(), MAX),
            Err(DilationError::TrailingBytes("CLOSE"))
        );
        assert_eq!(
            Record::decode(&hex::decode("030000000100000000ff").unwrap(), MAX),
            Err(DilationError::BadUtf8)
        );
        let big = Record::Data {
            scid: 1,
            seqnum: 1,
            data: vec![0; 100],
        }
        .encode();
        assert_eq!(
            Record::decode(&big, 100),
            Err(DilationError::Oversized { len: 109, max: 100 })
        );
        assert!(Record::decode(&big, 109).is_ok());
    }

    #[test]
    fn empty_payloads_are_fine() {
        for r in [
            Record::Data {
                scid: 7,
                seqnum: u32::MAX,
                data: vec![],
            },
            Record::Open {
                scid: u32::MAX,
                seqnum: 0,
                name: String::new(),
            },
        ] {
            assert_eq!(Record::decode(&r.encode(), MAX).unwrap(), r);
        }
    }
}
