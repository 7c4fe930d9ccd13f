//! [`RemoteFile`]: a stored file with no local copy to map (plain S3), read lazily by
//! verified range through a small bounded block cache.
//!
//! - **Nothing is read at open.** The length comes from the manifest.
//! - **Every byte served is verified.** Blobs of at least [`OUTBOARD_MIN`] have an outboard
//!   on S3: a read fetches the outboard once (checked against the blob id), then only the
//!   [`BLOCK`]s around the range, each checked against it. Smaller blobs (and old blobs
//!   written without an outboard) cannot be checked piecewise, since their id is a hash of
//!   the whole: they are fetched whole (at most 1 MiB for small blobs) and checked
//!   against the id on first read.
//! - **Repeated small reads cost no request.** tantivy reads the same term dictionary
//!   blocks, skip data and doc store blocks again and again; verified blocks and small
//!   whole blobs stay in a [`BlockCache`] bounded in bytes and shared by all the handles of
//!   one adapter (keyed by blob id, so reopening a segment after a reload hits it too).
//!   Reads wider than [`MAX_CACHED_BLOCKS`] blocks are fetched in one request and kept
//!   under their exact range (tantivy repeats them exactly: positions of a common term),
//!   unless they exceed an eighth of the cache (whole term dictionaries, which tantivy
//!   keeps itself), so that one huge read cannot flush everything else.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use quick_cache::Weighter;

use super::hotcache::HotFile;
use crate::blob::outboard::{Outboard, GROUP, OUTBOARD_MIN};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys;
use crate::path::StoragePath;
use crate::store::Store;

/// Where an open file came from, to tell a reader that outlived retention from damage.
#[derive(Clone)]
pub(crate) struct Origin {
    pub(crate) store: Store,
    pub(crate) path: StoragePath,
    /// The manifest version the file was resolved from; `None` for a pending file.
    pub(crate) version: Option<u64>,
}

impl Origin {
    /// `err` unchanged, unless it says the file's content is missing and the version the
    /// file was opened from is no longer stored: then [`Error::VersionExpired`]. A blob
    /// missing under a retained version stays [`Error::Corrupt`]: that is damage.
    pub(crate) async fn explain(&self, err: Error) -> Error {
        let missing = matches!(&err, Error::Corrupt { actual, .. } if actual == "missing blob");
        let Some(version) = self.version.filter(|_| missing) else {
            return err;
        };
        match self.store.root_at(&self.path.collection, version).await {
            Err(Error::NotFound { .. }) => Error::VersionExpired {
                collection: self.path.collection.clone(),
                path: self.path.to_string(),
                version,
            },
            _ => err,
        }
    }
}

/// Unit of fetching and caching: four outboard groups, so blocks verify on their own.
pub(crate) const BLOCK: u64 = 4 * GROUP;
/// Reads spanning more blocks than this are fetched in one request and not cached.
pub(crate) const MAX_CACHED_BLOCKS: u64 = 4;
/// Wide reads larger than this share of the cache are not cached at all.
const WIDE_SHARE: u64 = 8;
/// How many outboards (or "has none" answers) an adapter keeps.
const OUTBOARDS_KEPT: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Block(BlobId, u64),
    Whole(BlobId),
    /// A wide read, kept whole under its exact range.
    Range(BlobId, u64, u64),
}

#[derive(Debug, Clone)]
struct ByLength;

impl Weighter<Key, Bytes> for ByLength {
    fn weight(&self, _: &Key, value: &Bytes) -> u64 {
        value.len() as u64
    }
}

/// How a blob's ranges are verified.
#[derive(Debug, Clone)]
enum Layout {
    /// No outboard: fetched and checked whole.
    Whole,
    /// Ranges checked against this outboard.
    Outboard(Arc<Outboard>),
}

/// Verified blocks, small whole blobs and outboards, bounded in bytes; shared by an
/// adapter's handles.
pub(crate) struct BlockCache {
    blocks: quick_cache::sync::Cache<Key, Bytes, ByLength>,
    layouts: quick_cache::sync::Cache<BlobId, Layout>,
    /// Wide reads up to this size are cached under their exact range.
    wide_max: u64,
    /// Bytes of the aligned window a missed block read fetches (see
    /// [`TantivyAdapterOptions::remote_read_ahead`](super::TantivyAdapterOptions)).
    read_ahead: u64,
}

impl BlockCache {
    /// A cache of at most `max_bytes` of content (outboards, 0.2% of their blobs, are
    /// counted apart and kept for at most [`OUTBOARDS_KEPT`] blobs).
    pub(crate) fn new(max_bytes: u64, read_ahead: u64) -> Self {
        BlockCache {
            blocks: quick_cache::sync::Cache::with_weighter(
                (max_bytes / BLOCK).max(16) as usize,
                max_bytes.max(1),
                ByLength,
            ),
            layouts: quick_cache::sync::Cache::new(OUTBOARDS_KEPT),
            wide_max: max_bytes / WIDE_SHARE,
            // A window larger than the cache's share for one read would evict itself.
            read_ahead: read_ahead.min(max_bytes / WIDE_SHARE),
        }
    }

    /// The encoded outboard of blob `id`, if one was fetched and is still kept.
    pub(crate) fn outboard(&self, id: &BlobId) -> Option<Bytes> {
        match self.layouts.get(id)? {
            Layout::Outboard(ob) => Some(ob.encode()),
            Layout::Whole => None,
        }
    }

    fn insert(&self, key: Key, value: Bytes) {
        // Empty values would weigh nothing and never be evicted.
        if !value.is_empty() {
            self.blocks.insert(key, value);
        }
    }
}

/// One file read lazily from a store that has no local mapping of it.
pub(crate) struct RemoteFile {
    store: Store,
    id: BlobId,
    size: u64,
    cache: Arc<BlockCache>,
    layout: OnceLock<Layout>,
    origin: Option<Origin>,
    /// Ranges of this blob from a hotcache, served before anything else.
    hot: Option<Arc<HotFile>>,
}

/// The blocks `range` (non-empty) touches, first and last.
fn blocks_of(range: &Range<u64>) -> (u64, u64) {
    (range.start / BLOCK, (range.end - 1) / BLOCK)
}

/// `range` out of consecutive blocks starting with block `first`: a zero-copy slice when
/// one block holds it all, a copy otherwise.
fn assemble(first: u64, blocks: &[Bytes], range: &Range<u64>) -> Bytes {
    let base = first * BLOCK;
    if let [only] = blocks {
        return only.slice((range.start - base) as usize..(range.end - base) as usize);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for (i, block) in blocks.iter().enumerate() {
        let block_start = base + i as u64 * BLOCK;
        let from = range.start.max(block_start) - block_start;
        let to = range.end.min(block_start + block.len() as u64) - block_start;
        if from < to {
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
    }
    out.freeze()
}

impl RemoteFile {
    /// Blob `id` of `size` bytes in `store`; no I/O.
    pub(crate) fn new(store: Store, id: BlobId, size: u64, cache: Arc<BlockCache>) -> Self {
        RemoteFile {
            store,
            id,
            size,
            cache,
            layout: OnceLock::new(),
            origin: None,
            hot: None,
        }
    }

    /// Reports a missing blob under an expired version as [`Error::VersionExpired`].
    pub(crate) fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Serves ranges from `hot`, this blob's part of a hotcache (see the `hotcache` module).
    pub(crate) fn with_hot(mut self, hot: Option<Arc<HotFile>>) -> Self {
        self.hot = hot.filter(|h| h.size == self.size);
        self
    }

    /// `range` (in bounds, non-empty) if the hotcache or the block cache holds all of it:
    /// no I/O, no waiting.
    pub(crate) fn cached(&self, range: &Range<u64>) -> Option<Bytes> {
        if let Some(bytes) = self.hot.as_ref().and_then(|hot| hot.get(range)) {
            return Some(bytes);
        }
        let layout = match self.layout.get() {
            Some(layout) => layout,
            // Another handle on the same blob may have learnt it already.
            None if self.size < OUTBOARD_MIN => self.layout.get_or_init(|| Layout::Whole),
            None => {
                let known = self.cache.layouts.get(&self.id)?;
                self.layout.get_or_init(|| known)
            }
        };
        match layout {
            Layout::Whole => {
                let whole = self.cache.blocks.get(&Key::Whole(self.id))?;
                Some(whole.slice(range.start as usize..range.end as usize))
            }
            Layout::Outboard(_) => {
                let (first, last) = blocks_of(range);
                if last - first >= MAX_CACHED_BLOCKS {
                    let key = Key::Range(self.id, range.start, range.end);
                    return self.cache.blocks.get(&key);
                }
                let blocks = (first..=last)
                    .map(|b| self.cache.blocks.get(&Key::Block(self.id, b)))
                    .collect::<Option<Vec<Bytes>>>()?;
                Some(assemble(first, &blocks, range))
            }
        }
    }

    async fn layout(&self) -> Result<Layout> {
        if let Some(layout) = self.layout.get() {
            return Ok(layout.clone());
        }
        let layout = if self.size < OUTBOARD_MIN {
            Layout::Whole
        } else if let Some(layout) = self.cache.layouts.get(&self.id) {
            layout
        } else if let Some(ob) = self.hot_outboard() {
            let layout = Layout::Outboard(Arc::new(ob));
            self.cache.layouts.insert(self.id, layout.clone());
            layout
        } else {
            let layout = match self.store.blobs().outboard(&self.id).await? {
                Some(ob) if ob.size() == self.size => Layout::Outboard(Arc::new(ob)),
                Some(ob) => {
                    return Err(Error::Corrupt {
                        object: keys::outboard(&self.id).to_string(),
                        expected: format!("outboard of {} bytes", self.size),
                        actual: format!("outboard of {} bytes", ob.size()),
                    })
                }
                None => Layout::Whole,
            };
            self.cache.layouts.insert(self.id, layout.clone());
            layout
        };
        Ok(self.layout.get_or_init(|| layout).clone())
    }

    /// The outboard the hotcache holds for this blob, if it checks out against the blob id
    /// and size (otherwise it is ignored and the store's is fetched).
    fn hot_outboard(&self) -> Option<Outboard> {
        let bytes = self.hot.as_ref()?.outboard.clone()?;
        Outboard::decode(&self.id, bytes)
            .ok()
            .filter(|ob| ob.size() == self.size)
    }

    /// Widens a fetch of blocks `lo..=hi` to the aligned read-ahead window around them,
    /// without the window's edge blocks already cached: one request then serves the
    /// nearby reads that follow (stored documents of one query sit close together in
    /// the doc store far more often than not), for bytes that cost no request.
    fn read_ahead(&self, lo: u64, hi: u64) -> (u64, u64) {
        let window = (self.cache.read_ahead / BLOCK).max(1);
        let last_block = (self.size.max(1) - 1) / BLOCK;
        let cached = |b: u64| self.cache.blocks.get(&Key::Block(self.id, b)).is_some();
        let mut start = lo / window * window;
        let mut end = ((hi / window + 1) * window - 1).min(last_block);
        while start < lo && cached(start) {
            start += 1;
        }
        while end > hi && cached(end) {
            end -= 1;
        }
        (start, end.max(hi))
    }

    /// Reads `range` (in bounds), verified; from the cache when it can.
    pub(crate) async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        match self.read_verified(range).await {
            Ok(bytes) => Ok(bytes),
            Err(e) => match &self.origin {
                Some(origin) => Err(origin.explain(e).await),
                None => Err(e),
            },
        }
    }

    async fn read_verified(&self, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        if let Some(bytes) = self.cached(&range) {
            return Ok(bytes);
        }
        let blobs = self.store.blobs();
        let ob = match self.layout().await? {
            Layout::Whole => {
                let key = Key::Whole(self.id);
                let whole = match self.cache.blocks.get(&key) {
                    Some(whole) => whole,
                    None => {
                        let whole = blobs.get_verified(&self.id, self.size).await?;
                        self.cache.insert(key, whole.clone());
                        whole
                    }
                };
                return Ok(whole.slice(range.start as usize..range.end as usize));
            }
            Layout::Outboard(ob) => ob,
        };
        let (first, last) = blocks_of(&range);
        if last - first >= MAX_CACHED_BLOCKS {
            let key = Key::Range(self.id, range.start, range.end);
            let data = blobs.get_range_verified(&self.id, &ob, range).await?;
            if data.len() as u64 <= self.cache.wide_max {
                self.cache.insert(key, data.clone());
            }
            return Ok(data);
        }
        let mut slots: Vec<Option<Bytes>> = (first..=last)
            .map(|b| self.cache.blocks.get(&Key::Block(self.id, b)))
            .collect();
        // One request from the first missing block to the last (at most a few blocks).
        let missing = |i: &usize| slots[*i].is_none();
        let (Some(lo), Some(hi)) = (
            (0..slots.len()).find(missing),
            (0..slots.len()).rev().find(missing),
        ) else {
            let blocks: Vec<Bytes> = slots.into_iter().flatten().collect();
            return Ok(assemble(first, &blocks, &range));
        };
        let (lo, hi) = self.read_ahead(first + lo as u64, first + hi as u64);
        let span = lo * BLOCK..((hi + 1) * BLOCK).min(self.size);
        let data = blobs.get_range_verified(&self.id, &ob, span).await?;
        for b in lo..=hi {
            let from = ((b - lo) * BLOCK) as usize;
            let to = (from + BLOCK as usize).min(data.len());
            let block = data.slice(from..to);
            self.cache.insert(Key::Block(self.id, b), block.clone());
            if (first..=last).contains(&b) {
                slots[(b - first) as usize] = Some(block);
            }
        }
        let blocks: Vec<Bytes> = slots.into_iter().flatten().collect();
        Ok(assemble(first, &blocks, &range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_slices_one_block_and_copies_across_blocks() {
        let data: Vec<u8> = (0..3 * BLOCK as usize).map(|i| (i % 251) as u8).collect();
        let blocks: Vec<Bytes> = data
            .chunks(BLOCK as usize)
            .map(Bytes::copy_from_slice)
            .collect();
        let r = 10..200;
        assert_eq!(&assemble(0, &blocks[..1], &r)[..], &data[10..200]);
        let r = BLOCK - 5..2 * BLOCK + 7;
        assert_eq!(
            &assemble(0, &blocks, &r)[..],
            &data[r.start as usize..r.end as usize]
        );
        let r = BLOCK + 1..2 * BLOCK + 3;
        assert_eq!(
            &assemble(1, &blocks[1..], &r)[..],
            &data[r.start as usize..r.end as usize]
        );
    }
}
