//! [`BlobId`]: the BLAKE3 hash that names every blob and tree node.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Inputs at least this large are hashed with BLAKE3's multi-threaded mode.
const PARALLEL_HASH_MIN: usize = 256 * 1024;

/// The BLAKE3 hash of a blob's bytes; the blob's name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// Hashes `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        update_hasher(&mut hasher, data);
        BlobId::from(hasher.finalize())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds an id from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobId(bytes)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.hex_digits().iter().map(|&b| char::from(b)).collect()
    }

    /// The 64 lowercase hex digits, as ASCII bytes. Every object key names a hash and
    /// every read builds a key: this fills one array from a table, where `hex::encode`
    /// goes through a `char` iterator that splits every byte.
    pub(crate) fn hex_digits(&self) -> [u8; 64] {
        let mut digits = [0u8; 64];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        digits
    }
}

/// Feeds `data` to `hasher`, using several threads for large inputs.
pub fn update_hasher(hasher: &mut blake3::Hasher, data: &[u8]) {
    if data.len() >= PARALLEL_HASH_MIN {
        hasher.update_rayon(data);
    } else {
        hasher.update(data);
    }
}

impl From<blake3::Hash> for BlobId {
    fn from(h: blake3::Hash) -> Self {
        BlobId(*h.as_bytes())
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..16])
    }
}

impl FromStr for BlobId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::invalid_path(
                s,
                "not a 64-digit lowercase hex BLAKE3 hash",
            ));
        }
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| Error::invalid_path(s, format!("bad hex: {e}")))?;
        Ok(BlobId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_value() {
        let id = BlobId::of(b"");
        assert_eq!(
            id.to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("AF13".parse::<BlobId>().is_err());
        let big = vec![7u8; PARALLEL_HASH_MIN * 3 + 5];
        assert_eq!(BlobId::of(&big), BlobId::from(blake3::hash(&big)));
    }
}
