//! The hotcache: with each `meta.json` commit, the bytes a reader touches when it opens
//! that index version (footers, small metadata files, term-info and fast-field headers),
//! in one small file, so that a cold reader on S3 opens from one object (as Quickwit's
//! hotcache does). Layout in `docs/FORMAT.md`, "Tantivy hotcache".
//!
//! It is only an optimisation, and never trusted blindly:
//! - its bytes are bound to blob ids: a range is served only to a handle whose manifest
//!   entry names the same blob id and size (content addressing makes that the same bytes);
//! - it is itself a stored file, verified against its own blob id when fetched, and its
//!   body ends with a BLAKE3 of everything before;
//! - it names the `meta.json` blob it was made for: a hotcache of another version is
//!   ignored.
//!
//! Anything that does not check out is dropped, and reads go to the files themselves.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::manifest::ManifestRoot;
use crate::path::StoragePath;
use crate::store::Store;

/// The file name, in the shard next to tantivy's files. tantivy never lists a directory,
/// only opens names it wrote (none starts with `.segstore`), and its garbage collection
/// deletes only files listed in `.managed.json`, so it never sees this one.
pub(crate) const HOTCACHE_FILE: &str = ".segstore-hotcache";
/// First bytes of a hotcache.
const MAGIC: &[u8; 4] = b"SGHC";
/// The format version this code writes and reads.
const VERSION: u8 = 1;
/// A single range (or outboard) larger than this is left out (read from the store instead).
pub(crate) const RANGE_CAP: u64 = 1024 * 1024;
/// Ranges and outboards are added until their bytes reach this total; the rest are left
/// out.
pub(crate) const TOTAL_CAP: u64 = 4 * 1024 * 1024;
/// Size of the fixed header: magic, version, meta.json id, file count.
const HEADER: usize = 4 + 1 + 32 + 4;

/// Cached ranges of one file (one blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HotFile {
    pub(crate) size: u64,
    /// The blob's outboard (`docs/FORMAT.md`, section 7), for big files: checked against the
    /// blob id by whoever uses it, like one fetched from the store.
    pub(crate) outboard: Option<Bytes>,
    /// Sorted, disjoint, non-empty, within `size`.
    ranges: Vec<(u64, Bytes)>,
}

impl HotFile {
    /// `range` (non-empty) if one cached range holds all of it.
    pub(crate) fn get(&self, range: &Range<u64>) -> Option<Bytes> {
        let i = self
            .ranges
            .partition_point(|(start, _)| *start <= range.start);
        let (start, bytes) = self.ranges.get(i.checked_sub(1)?)?;
        let end = start + bytes.len() as u64;
        (range.end <= end)
            .then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
    }

    /// The whole file, if cached.
    pub(crate) fn whole(&self) -> Option<Bytes> {
        self.get(&(0..self.size))
            .or_else(|| (self.size == 0).then(Bytes::new))
    }
}

/// A decoded hotcache: the `meta.json` it was made for and cached ranges by blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hotcache {
    pub(crate) meta: BlobId,
    files: HashMap<BlobId, Arc<HotFile>>,
}

impl Hotcache {
    /// The cached ranges of blob `id` of `size` bytes, if any.
    pub(crate) fn file(&self, id: &BlobId, size: u64) -> Option<Arc<HotFile>> {
        self.files.get(id).filter(|f| f.size == size).cloned()
    }

    /// Number of files covered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }
}

/// Builds a hotcache from recorded reads: (blob id, file size, offset, bytes read), and
/// the encoded outboards of the big files read. Overlapping and adjacent reads of a file
/// are merged (their bytes agree: they come from one immutable blob); ranges over
/// [`RANGE_CAP`] and past [`TOTAL_CAP`] are left out.
pub(crate) fn build(
    meta: BlobId,
    reads: &[(BlobId, u64, u64, Bytes)],
    outboards: &HashMap<BlobId, Bytes>,
) -> Hotcache {
    let mut by_file: HashMap<BlobId, (u64, Vec<(u64, Bytes)>)> = HashMap::new();
    for (id, size, start, bytes) in reads {
        let end = start + bytes.len() as u64;
        if bytes.is_empty() || end > *size || bytes.len() as u64 > RANGE_CAP {
            continue;
        }
        by_file
            .entry(*id)
            .or_insert_with(|| (*size, Vec::new()))
            .1
            .push((*start, bytes.clone()));
    }
    let mut ids: Vec<BlobId> = by_file.keys().copied().collect();
    ids.sort_by_key(|id| *id.as_bytes());
    let mut total = 0u64;
    let mut files = HashMap::new();
    for id in ids {
        let (size, mut reads) = by_file.remove(&id).unwrap_or_default();
        reads.sort_by_key(|(start, bytes)| (*start, std::cmp::Reverse(bytes.len())));
        let mut merged: Vec<(u64, BytesMut)> = Vec::new();
        for (start, bytes) in reads {
            let end = start + bytes.len() as u64;
            match merged.last_mut() {
                // Overlapping (or adjacent) reads: extend with the new tail, if any.
                Some((s, buf)) if start <= *s + buf.len() as u64 => {
                    let cur_end = *s + buf.len() as u64;
                    if end > cur_end {
                        buf.extend_from_slice(&bytes[(cur_end - start) as usize..]);
                    }
                }
                _ => merged.push((start, BytesMut::from(&bytes[..]))),
            }
        }
        let mut ranges = Vec::new();
        for (start, buf) in merged {
            let len = buf.len() as u64;
            if len > RANGE_CAP || total + len > TOTAL_CAP {
                continue;
            }
            total += len;
            ranges.push((start, buf.freeze()));
        }
        // Outboards count against the same caps (0.2% of a blob: a huge file's is left out).
        let outboard = outboards
            .get(&id)
            .filter(|ob| ob.len() as u64 <= RANGE_CAP && total + ob.len() as u64 <= TOTAL_CAP)
            .cloned();
        total += outboard.as_ref().map_or(0, |ob| ob.len() as u64);
        if !ranges.is_empty() || outboard.is_some() {
            files.insert(
                id,
                Arc::new(HotFile {
                    size,
                    outboard,
                    ranges,
                }),
            );
        }
    }
    Hotcache { meta, files }
}

/// Encodes `cache` (see `docs/FORMAT.md`): files in blob id order, all integers little
/// endian, a BLAKE3 of the body at the end.
pub(crate) fn encode(cache: &Hotcache) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_slice(cache.meta.as_bytes());
    let mut ids: Vec<&BlobId> = cache.files.keys().collect();
    ids.sort_by_key(|id| *id.as_bytes());
    out.put_u32_le(ids.len() as u32);
    for id in ids {
        let file = &cache.files[id];
        out.put_slice(id.as_bytes());
        out.put_u64_le(file.size);
        let outboard = file.outboard.clone().unwrap_or_default();
        out.put_u32_le(outboard.len() as u32);
        out.put_slice(&outboard);
        out.put_u32_le(file.ranges.len() as u32);
        for (start, bytes) in &file.ranges {
            out.put_u64_le(*start);
            out.put_u32_le(bytes.len() as u32);
            out.put_slice(bytes);
        }
    }
    let sum = BlobId::of(&out);
    out.put_slice(sum.as_bytes());
    out.freeze()
}

/// A reader over the encoded bytes that fails with a typed error, never panics.
struct Cursor<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<Range<usize>> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn id(&mut self) -> Result<BlobId> {
        let r = self.take(32)?;
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&self.data[r]);
        Ok(BlobId::from_bytes(bytes))
    }

    fn u32(&mut self) -> Result<u32> {
        let r = self.take(4)?;
        Ok(u32::from_le_bytes(
            self.data[r].try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        let r = self.take(8)?;
        Ok(u64::from_le_bytes(
            self.data[r].try_into().expect("8 bytes"),
        ))
    }
}

fn corrupt(why: &str) -> Error {
    Error::Corrupt {
        object: HOTCACHE_FILE.into(),
        expected: format!("a tantivy hotcache, format {VERSION}"),
        actual: why.into(),
    }
}

/// Decodes and checks a hotcache: magic, version, checksum, and every range sorted,
/// disjoint and within its file.
pub(crate) fn decode(data: &Bytes) -> Result<Hotcache> {
    if data.len() < HEADER + 32 || &data[..4] != MAGIC {
        return Err(corrupt("not a hotcache"));
    }
    if data[4] != VERSION {
        return Err(corrupt(&format!("format version {}", data[4])));
    }
    let body = data.len() - 32;
    if BlobId::of(&data[..body]).as_bytes()[..] != data[body..] {
        return Err(corrupt("checksum mismatch"));
    }
    let body_bytes = data.slice(..body);
    let mut c = Cursor {
        data: &body_bytes,
        at: 5,
    };
    let meta = c.id()?;
    let count = c.u32()?;
    let mut files = HashMap::new();
    for _ in 0..count {
        let id = c.id()?;
        let size = c.u64()?;
        let outboard_len = c.u32()? as usize;
        let outboard_range = c.take(outboard_len)?;
        let outboard = (outboard_len > 0).then(|| body_bytes.slice(outboard_range));
        let n = c.u32()?;
        let mut ranges: Vec<(u64, Bytes)> = Vec::new();
        let mut end = 0u64;
        for _ in 0..n {
            let start = c.u64()?;
            let len = u64::from(c.u32()?);
            let stop = start.checked_add(len).ok_or_else(|| corrupt("overflow"))?;
            if len == 0 || start < end || stop > size {
                return Err(corrupt("ranges out of order or out of bounds"));
            }
            let r = c.take(len as usize)?;
            ranges.push((start, body_bytes.slice(r)));
            end = stop;
        }
        let file = HotFile {
            size,
            outboard,
            ranges,
        };
        if files.insert(id, Arc::new(file)).is_some() {
            return Err(corrupt("a file listed twice"));
        }
    }
    if c.at != body {
        return Err(corrupt("trailing bytes"));
    }
    Ok(Hotcache { meta, files })
}

/// The hotcache that version `root` of a shard names (its file `hot_path`), if it was made
/// for the `meta.json` at `meta_path` of that version: one GET, none when `written` (the
/// one this process wrote last) has the same id. `None` when the version has no hotcache,
/// or one made for another `meta.json`.
pub(super) async fn load(
    store: Store,
    root: Arc<ManifestRoot>,
    hot_path: StoragePath,
    meta_path: StoragePath,
    written: Option<(BlobId, Arc<Hotcache>)>,
) -> Result<Option<Arc<Hotcache>>> {
    let Some(hot) = store.trees().lookup(&root, &hot_path).await? else {
        return Ok(None);
    };
    let Some(meta) = store.trees().lookup(&root, &meta_path).await? else {
        return Ok(None);
    };
    // The one this adapter wrote needs no GET (the ids are of the same bytes).
    let cache = match written.filter(|(id, _)| *id == hot.id) {
        Some((_, cache)) => cache,
        None if hot.size > TOTAL_CAP * 2 => return Ok(None),
        None => Arc::new(decode(&store.read_entry(&hot).await?)?),
    };
    Ok((cache.meta == meta.id).then_some(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        BlobId::from_bytes([n; 32])
    }

    fn sample() -> Hotcache {
        let reads = vec![
            (id(2), 100, 90, Bytes::from_static(b"0123456789")),
            (id(2), 100, 0, Bytes::from_static(b"head")),
            (id(2), 100, 2, Bytes::from_static(b"adXY")),
            (id(1), 3, 0, Bytes::from_static(b"abc")),
        ];
        let outboards = HashMap::from([(id(2), Bytes::from_static(b"OB"))]);
        build(id(9), &reads, &outboards)
    }

    #[test]
    fn build_merges_overlaps_and_serves_ranges() {
        let cache = sample();
        assert_eq!(cache.len(), 2);
        let f = cache.file(&id(2), 100).unwrap();
        assert_eq!(&f.get(&(0..6)).unwrap()[..], b"headXY");
        assert_eq!(&f.get(&(95..100)).unwrap()[..], b"56789");
        assert_eq!(f.get(&(5..7)), None, "a gap is not cached");
        assert_eq!(f.whole(), None);
        assert_eq!(&cache.file(&id(1), 3).unwrap().whole().unwrap()[..], b"abc");
        assert_eq!(f.outboard.as_deref(), Some(&b"OB"[..]));
        assert_eq!(cache.file(&id(1), 3).unwrap().outboard, None);
        assert!(
            cache.file(&id(1), 4).is_none(),
            "the size is part of the binding"
        );
    }

    #[test]
    fn encoding_round_trips_and_matches_golden_bytes() {
        let cache = sample();
        let bytes = encode(&cache);
        assert_eq!(decode(&bytes).unwrap(), cache);
        // Golden bytes of format 1 (see docs/FORMAT.md): a reader must keep decoding these.
        let mut golden = Vec::new();
        golden.extend_from_slice(b"SGHC\x01");
        golden.extend_from_slice(&[9; 32]);
        golden.extend_from_slice(&2u32.to_le_bytes());
        golden.extend_from_slice(&[1; 32]);
        golden.extend_from_slice(&3u64.to_le_bytes());
        golden.extend_from_slice(&0u32.to_le_bytes());
        golden.extend_from_slice(&1u32.to_le_bytes());
        golden.extend_from_slice(&0u64.to_le_bytes());
        golden.extend_from_slice(&3u32.to_le_bytes());
        golden.extend_from_slice(b"abc");
        golden.extend_from_slice(&[2; 32]);
        golden.extend_from_slice(&100u64.to_le_bytes());
        golden.extend_from_slice(&2u32.to_le_bytes());
        golden.extend_from_slice(b"OB");
        golden.extend_from_slice(&2u32.to_le_bytes());
        golden.extend_from_slice(&0u64.to_le_bytes());
        golden.extend_from_slice(&6u32.to_le_bytes());
        golden.extend_from_slice(b"headXY");
        golden.extend_from_slice(&90u64.to_le_bytes());
        golden.extend_from_slice(&10u32.to_le_bytes());
        golden.extend_from_slice(b"0123456789");
        let sum = BlobId::of(&golden);
        golden.extend_from_slice(sum.as_bytes());
        assert_eq!(&bytes[..], &golden[..]);
    }

    #[test]
    fn damaged_bytes_are_typed_errors() {
        let bytes = encode(&sample());
        for cut in [0, 4, 10, bytes.len() - 1] {
            assert!(decode(&bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.to_vec();
        flipped[50] ^= 1;
        assert!(matches!(
            decode(&Bytes::from(flipped)),
            Err(Error::Corrupt { .. })
        ));
        let mut version = bytes.to_vec();
        version[4] = 2;
        assert!(decode(&Bytes::from(version)).is_err());
        assert!(decode(&Bytes::from_static(b"{}")).is_err());
    }
}
