//! The byte envelope around every manifest object. Layout (see `docs/FORMAT.md`):
//!
//! ```text
//! magic     4 bytes  "SGSM"
//! version   u16 LE   format version, currently 1
//! kind      u8       1 = root, 2 = shard node, 3 = page, 4 = snapshot
//! payload   postcard encoding of the object
//! checksum  32 bytes BLAKE3 of every byte before it
//! ```
//!
//! Decoding checks every field before postcard sees the payload, and postcard itself
//! returns errors rather than panicking on arbitrary bytes, so garbage in is a typed
//! [`Error::CorruptManifest`] out.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ManifestRoot, Page, ShardNode, Snapshot};
use crate::error::{Error, Result};

/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"SGSM";
const HEADER_LEN: usize = 4 + 2 + 1;
const CHECKSUM_LEN: usize = 32;

/// Which object an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Root = 1,
    ShardNode = 2,
    Page = 3,
    Snapshot = 4,
    GcEpoch = 5,
}

fn header(kind: Kind) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out
}

fn seal(mut out: Vec<u8>) -> Bytes {
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    Bytes::from(out)
}

pub(crate) fn encode<T: Serialize>(kind: Kind, value: &T) -> Result<Bytes> {
    let out = postcard::to_extend(value, header(kind))
        .map_err(|e| Error::backend("encoding a manifest", e.to_string()))?;
    Ok(seal(out))
}

/// A well-formed envelope around arbitrary payload bytes, so that the fuzzer reaches
/// postcard instead of stopping at the checksum.
pub(crate) fn envelope(kind: Kind, payload: &[u8]) -> Bytes {
    let mut out = header(kind);
    out.extend_from_slice(payload);
    seal(out)
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, kind: Kind, bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| Error::CorruptManifest {
        key: key.to_owned(),
        reason,
    };
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(corrupt(format!("truncated: only {} bytes", bytes.len())));
    }
    if &bytes[..4] != MAGIC {
        return Err(corrupt("not a segstore manifest (bad magic)".into()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version}, but this build reads only version {FORMAT_VERSION}"
        )));
    }
    if bytes[6] != kind as u8 {
        return Err(corrupt(format!(
            "holds object kind {}, expected {}",
            bytes[6], kind as u8
        )));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(corrupt("checksum mismatch (truncated or damaged)".into()));
    }
    let (value, rest) = postcard::take_from_bytes::<T>(&body[HEADER_LEN..])
        .map_err(|e| corrupt(format!("undecodable payload: {e}")))?;
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after payload",
            rest.len()
        )));
    }
    Ok(value)
}

/// Encodes a manifest root.
pub fn encode_root(root: &ManifestRoot) -> Result<Bytes> {
    encode(Kind::Root, root)
}

/// Decodes a manifest root read from `key`.
pub fn decode_root(key: &str, bytes: &[u8]) -> Result<ManifestRoot> {
    decode(key, Kind::Root, bytes)
}

pub(crate) fn encode_shard(node: &ShardNode) -> Result<Bytes> {
    encode(Kind::ShardNode, node)
}

pub(crate) fn decode_shard(key: &str, bytes: &[u8]) -> Result<ShardNode> {
    decode(key, Kind::ShardNode, bytes)
}

pub(crate) fn encode_page(page: &Page) -> Result<Bytes> {
    encode(Kind::Page, page)
}

pub(crate) fn decode_page(key: &str, bytes: &[u8]) -> Result<Page> {
    decode(key, Kind::Page, bytes)
}

/// Encodes a snapshot (pin).
pub fn encode_snapshot(snapshot: &Snapshot) -> Result<Bytes> {
    encode(Kind::Snapshot, snapshot)
}

/// Decodes a snapshot read from `key`.
pub fn decode_snapshot(key: &str, bytes: &[u8]) -> Result<Snapshot> {
    decode(key, Kind::Snapshot, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CommitId, FileEntry, ShardKey, ShardRef};
    use crate::path::StorageBackend;
    use crate::BlobId;

    fn sample_root() -> ManifestRoot {
        let mut root = ManifestRoot::empty("products");
        root.version = 3;
        root.commit_id = CommitId([7; 16]);
        root.timestamp_ms = 1_700_000_000_000;
        root.shards.insert(
            ShardKey {
                backend: StorageBackend::Tantivy,
                shard: Some("shard_0".into()),
            },
            ShardRef {
                node: BlobId::of(b"node"),
                files: 2,
                bytes: 10,
            },
        );
        root
    }

    #[test]
    fn round_trip() {
        let root = sample_root();
        let bytes = encode_root(&root).unwrap();
        assert_eq!(decode_root("k", &bytes).unwrap(), root);
        let page = Page {
            entries: vec![("a".into(), FileEntry::inline(Bytes::from_static(b"hi")))],
        };
        assert_eq!(
            decode_page("k", &encode_page(&page).unwrap()).unwrap(),
            page
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_a_typed_error() {
        let bytes = encode_root(&sample_root()).unwrap();
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_root("k", &bytes[..len]),
                Err(Error::CorruptManifest { .. })
            ));
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[i] ^= 0x10;
            assert!(matches!(
                decode_root("k", &damaged),
                Err(Error::CorruptManifest { .. })
            ));
        }
        // A page is not a root.
        let page = encode_page(&Page::default()).unwrap();
        assert!(decode_root("k", &page).is_err());
    }
}
