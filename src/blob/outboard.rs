//! Outboards: what lets a reader verify a *range* of a blob against the blob's name.
//!
//! A blob's name is the BLAKE3 hash of its bytes. BLAKE3 is a Merkle tree over 1 KiB
//! chunks, so the hash of a range can be checked without the rest of the blob, given the
//! chaining values of the subtrees around it. An outboard (`blobs/<aa>/<hex>.obao`, see
//! `docs/FORMAT.md`) stores the chaining value of every 16 KiB group of chunks: 32 bytes
//! per 16 KiB, 0.2% of the blob.
//!
//! - **The outboard is verified as a whole** by merging its leaves up the BLAKE3 tree:
//!   the root must equal the blob's id. A damaged or foreign outboard is rejected.
//! - **A range is verified** by widening it to group boundaries, hashing each group as a
//!   subtree at its offset, and comparing with the (verified) leaf.
//!
//! Only the parents are recomputed, never stored: that halves the size compared with a bao
//! outboard (which stores every parent pair), at the price of reading the whole outboard
//! once per blob (0.2% of it) before the first verified range read. The cache keeps it.

use std::ops::Range;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::hash::BlobId;

/// Bytes per group: each outboard leaf covers this much of the blob (16 chunks).
pub const GROUP: u64 = 16 * 1024;
/// Blobs at least this large get an outboard when the backend asks for them.
pub const OUTBOARD_MIN: u64 = 1024 * 1024;

const MAGIC: &[u8; 4] = b"SGOB";
const HEADER: usize = 4 + 8;
const CV: usize = 32;

/// A decoded outboard: the blob's size and the chaining value of each group.
#[derive(Debug, Clone)]
pub struct Outboard {
    size: u64,
    /// `groups(size)` chaining values of 32 bytes each.
    leaves: Bytes,
}

/// Number of groups a blob of `size` bytes has.
fn groups(size: u64) -> u64 {
    size.div_ceil(GROUP)
}

/// Chaining value of group `index` holding `data`, as a subtree at its offset.
fn leaf_cv(index: u64, data: &[u8]) -> ChainingValue {
    subtree_cv(index * GROUP, data)
}

/// Chaining value of `data` as the BLAKE3 subtree starting at byte `offset` of a larger
/// input. `offset` must be a multiple of a power-of-two number of 1 KiB chunks at least
/// as large as `data` (any whole piece of an equal-pieces split, see [`root_of_pieces`]).
pub(crate) fn subtree_cv(offset: u64, data: &[u8]) -> ChainingValue {
    let mut h = subtree_hasher(offset);
    h.update(data);
    h.finalize_non_root()
}

/// A hasher for the subtree starting at byte `offset` (see [`subtree_cv`]), for data that
/// arrives in parts; finish it with `finalize_non_root`.
pub(crate) fn subtree_hasher(offset: u64) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    h
}

/// The BLAKE3 hash of an input cut into pieces of one power-of-two number of chunks (the
/// last one possibly shorter), given each piece's [`subtree_cv`]: lets pieces be hashed
/// independently, in parallel, in any order. `None` for fewer than two pieces (hash
/// the input directly then).
pub(crate) fn root_of_pieces(cvs: &[ChainingValue]) -> Option<BlobId> {
    root_of(cvs)
}

/// Merges leaves into the chaining value of their subtree. Splitting at the largest power
/// of two below `n` groups reproduces BLAKE3's own tree shape (groups are powers of two
/// chunks, so its left-subtree rule lands on group boundaries).
fn merge(leaves: &[ChainingValue]) -> ChainingValue {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let split = split_point(leaves.len());
    let (l, r) = (merge(&leaves[..split]), merge(&leaves[split..]));
    hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
}

fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn root_of(leaves: &[ChainingValue]) -> Option<BlobId> {
    if leaves.len() < 2 {
        return None;
    }
    let split = split_point(leaves.len());
    let (l, r) = (merge(&leaves[..split]), merge(&leaves[split..]));
    Some(BlobId::from(hazmat::merge_subtrees_root(
        &l,
        &r,
        Mode::Hash,
    )))
}

impl Outboard {
    /// The outboard of `data`, or `None` when it fits in one group (its id then covers it).
    pub fn compute(data: &[u8]) -> Option<Self> {
        let mut b = OutboardBuilder::default();
        b.update(data);
        b.finish()
    }

    /// Parses an encoded outboard and checks that it belongs to blob `id`.
    pub fn decode(id: &BlobId, bytes: Bytes) -> Result<Self> {
        let bad = |why: &str| Error::Corrupt {
            object: crate::keys::outboard(id).to_string(),
            expected: format!("outboard of {id}"),
            actual: why.to_owned(),
        };
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(bad("not an outboard (bad header)"));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[4..HEADER]);
        let size = u64::from_le_bytes(size);
        let n = groups(size);
        if n < 2 || (bytes.len() - HEADER) as u64 != n * CV as u64 {
            return Err(bad("wrong length for its size"));
        }
        let ob = Outboard {
            size,
            leaves: bytes.slice(HEADER..),
        };
        let leaves: Vec<ChainingValue> = (0..n as usize).map(|i| ob.leaf(i)).collect();
        if root_of(&leaves).as_ref() != Some(id) {
            return Err(bad("leaves do not hash to the blob id"));
        }
        Ok(ob)
    }

    /// The encoded form, as stored in `<hex>.obao`.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER + self.leaves.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.leaves);
        out.freeze()
    }

    /// Size of the blob it describes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blob id its leaves hash to.
    pub fn root(&self) -> BlobId {
        let leaves: Vec<ChainingValue> = (0..groups(self.size) as usize)
            .map(|i| self.leaf(i))
            .collect();
        // `compute`/`decode` guarantee at least two groups.
        root_of(&leaves).unwrap_or_else(|| BlobId::of(b""))
    }

    fn leaf(&self, i: usize) -> ChainingValue {
        let mut cv = [0u8; CV];
        cv.copy_from_slice(&self.leaves[i * CV..(i + 1) * CV]);
        cv
    }

    /// `range` widened to group boundaries (and clamped to the blob): the bytes to fetch.
    pub fn aligned(&self, range: &Range<u64>) -> Range<u64> {
        let start = range.start / GROUP * GROUP;
        let end = (range.end.div_ceil(GROUP) * GROUP).min(self.size);
        start..end.max(start)
    }

    /// Checks `data`, the bytes of the blob starting at the group boundary `start`
    /// (as returned for [`aligned`](Self::aligned)), against the leaves.
    pub fn verify(&self, start: u64, data: &[u8]) -> bool {
        if !start.is_multiple_of(GROUP) || start + data.len() as u64 > self.size {
            return false;
        }
        let end = start + data.len() as u64;
        if end != self.size && !(data.len() as u64).is_multiple_of(GROUP) {
            return false;
        }
        let first = (start / GROUP) as usize;
        data.chunks(GROUP as usize)
            .enumerate()
            .all(|(i, group)| leaf_cv((first + i) as u64, group) == self.leaf(first + i))
    }
}

/// Builds an outboard from bytes fed in any pieces, holding at most one group.
#[derive(Debug, Default)]
pub struct OutboardBuilder {
    pending: Vec<u8>,
    size: u64,
    leaves: BytesMut,
}

impl OutboardBuilder {
    /// Feeds the next bytes of the blob.
    pub fn update(&mut self, mut data: &[u8]) {
        let group = GROUP as usize;
        while !data.is_empty() {
            // Hash full groups straight from the input, without copying them.
            if self.pending.is_empty() && data.len() > group {
                self.push_leaf(&data[..group]);
                data = &data[group..];
                continue;
            }
            // Keep the last (possibly full) group pending: only `finish` knows whether it
            // is the final one. A full pending group is flushed when more bytes arrive.
            if self.pending.len() == group {
                let full = std::mem::take(&mut self.pending);
                self.push_leaf(&full);
            }
            let take = (group - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    fn push_leaf(&mut self, group: &[u8]) {
        let index = self.size / GROUP;
        self.leaves.extend_from_slice(&leaf_cv(index, group));
        self.size += group.len() as u64;
    }

    /// The outboard, or `None` for a blob of at most one group.
    pub fn finish(mut self) -> Option<Outboard> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.push_leaf(&last);
        }
        (groups(self.size) >= 2).then(|| Outboard {
            size: self.size,
            leaves: self.leaves.freeze(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn root_matches_blake3_for_many_sizes() {
        let g = GROUP as usize;
        for len in [
            g + 1,
            2 * g,
            2 * g + 1,
            3 * g - 5,
            5 * g,
            16 * g + 1000,
            33 * g,
        ] {
            let d = data(len);
            let ob = Outboard::compute(&d).expect("two groups at least");
            assert_eq!(ob.root(), BlobId::of(&d), "len {len}");
            let again = Outboard::decode(&BlobId::of(&d), ob.encode()).expect("decodes");
            assert_eq!(again.size(), len as u64);
            // Fed in odd pieces, the builder gives the same leaves.
            let mut b = OutboardBuilder::default();
            for piece in d.chunks(7777) {
                b.update(piece);
            }
            assert_eq!(b.finish().expect("outboard").encode(), ob.encode());
        }
        assert!(Outboard::compute(&data(g)).is_none());
    }

    #[test]
    fn pieces_hash_like_the_whole() {
        let piece = 4 * GROUP as usize;
        for len in [piece + 1, 2 * piece, 3 * piece - 7, 5 * piece + 1024] {
            let d = data(len);
            let cvs: Vec<ChainingValue> = d
                .chunks(piece)
                .enumerate()
                .map(|(i, p)| subtree_cv((i * piece) as u64, p))
                .collect();
            assert_eq!(root_of_pieces(&cvs), Some(BlobId::of(&d)), "len {len}");
        }
    }

    #[test]
    fn ranges_verify_and_damage_is_caught() {
        let d = data(5 * GROUP as usize + 100);
        let ob = Outboard::compute(&d).expect("outboard");
        let r = ob.aligned(&(20_000..40_000));
        assert_eq!(r, GROUP..3 * GROUP);
        assert!(ob.verify(r.start, &d[r.start as usize..r.end as usize]));
        let tail = ob.aligned(&(5 * GROUP..5 * GROUP + 50));
        assert!(ob.verify(tail.start, &d[tail.start as usize..]));
        let mut bad = d[r.start as usize..r.end as usize].to_vec();
        bad[5] ^= 1;
        assert!(!ob.verify(r.start, &bad));
        let mut enc = ob.encode().to_vec();
        enc[HEADER + 3] ^= 1;
        assert!(Outboard::decode(&BlobId::of(&d), enc.into()).is_err());
        assert!(Outboard::decode(&BlobId::of(&d), Bytes::from_static(b"xx")).is_err());
    }
}
