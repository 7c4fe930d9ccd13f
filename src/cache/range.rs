//! Verified range reads of blobs that are not in L1, and the small memory cache of the
//! 16 KiB groups they fetched.
//!
//! A range is widened to whole groups (a group must be whole to be checked against its
//! outboard leaf), fetched with one ranged GET and checked. The padding is the price of
//! verification, not waste of the fetch: the bench reports it apart, as proof bytes. So
//! that neighbouring small reads (a scan in 4 KiB steps) do not pay it again, the groups
//! of small fetches are kept, verified, in a byte-bounded memory cache; a later range
//! fetches only the span of groups it still lacks.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use quick_cache::Weighter;

use super::{blocking, bump, CachingBackend, Kind};
use crate::backend::check_range;
use crate::blob::outboard::{Outboard, OutboardBuilder, GROUP, OUTBOARD_MIN};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys::{self, ObjectKey};

/// Bytes of verified groups kept in memory.
const GROUPS_IN_MEMORY: u64 = 16 * 1024 * 1024;
/// Fetches of at most this many bytes keep their groups (larger ones are read once).
const KEEP_SPAN_MAX: u64 = 16 * GROUP;
/// Spans at least this large are checked on the blocking pool.
const OFF_THREAD_MIN: u64 = 256 * 1024;

/// Weighs a cached group by its length.
#[derive(Debug, Clone, Copy)]
pub(super) struct ByLength;

impl Weighter<(BlobId, u64), Bytes> for ByLength {
    fn weight(&self, _key: &(BlobId, u64), group: &Bytes) -> u64 {
        group.len() as u64
    }
}

/// Verified groups by (blob, group index).
pub(super) type Groups = quick_cache::sync::Cache<(BlobId, u64), Bytes, ByLength>;

/// An empty group cache.
pub(super) fn groups() -> Groups {
    Groups::with_weighter(
        (GROUPS_IN_MEMORY / GROUP) as usize,
        GROUPS_IN_MEMORY,
        ByLength,
    )
}

impl CachingBackend {
    /// Rebuilds the missing outboard of a large blob `id` (imported, written by an older
    /// build, or swept): streams the blob from L2 once through an outboard builder, checks
    /// that it merges to `id`, and stores it in L2 (and L1) for every later range read, in
    /// this process and others. `None` for a blob too small to have an outboard (or
    /// missing: the caller's read reports that).
    pub(super) async fn rebuild_outboard(
        &self,
        key: &ObjectKey,
        id: BlobId,
    ) -> Result<Option<Arc<Outboard>>> {
        let s = &self.inner;
        if s.small.get(&id).is_some() {
            return Ok(None);
        }
        let Some(meta) = s.l2.head(key).await? else {
            return Ok(None);
        };
        if meta.size < OUTBOARD_MIN {
            s.small.insert(id, ());
            return Ok(None);
        }
        let ob_key = keys::outboard(&id);
        let flight = s
            .flights
            .entry(ob_key.as_str().to_owned())
            .or_default()
            .clone();
        let guard = flight.lock().await;
        let result = async {
            // Another caller may have rebuilt it while we waited.
            if let Some(ob) = s.outboards.get(&id) {
                return Ok(Some(ob));
            }
            let mut chunks = s.l2.get_stream(key).await?;
            let mut builder = OutboardBuilder::default();
            let mut read = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                read += chunk.len() as u64;
                builder = if chunk.len() as u64 >= OFF_THREAD_MIN {
                    blocking(move || {
                        builder.update(&chunk);
                        Ok(builder)
                    })
                    .await?
                } else {
                    builder.update(&chunk);
                    builder
                };
            }
            bump(&s.counters.misses, 1);
            bump(&s.counters.bytes_from_l2, read);
            let ob = builder.finish().filter(|ob| ob.root() == id);
            let Some(ob) = ob else {
                bump(&s.counters.verification_failures, 1);
                return Err(Error::Corrupt {
                    object: key.to_string(),
                    expected: id.to_hex(),
                    actual: format!("{read} bytes that do not hash to it"),
                });
            };
            let encoded = ob.encode();
            s.l2.put(&ob_key, encoded.clone()).await?;
            s.no_outboard.remove(&id);
            self.store_l1(&ob_key, encoded).await;
            let ob = Arc::new(ob);
            s.outboards.insert(id, ob.clone());
            tracing::info!(key = %key, bytes = read, "rebuilt a missing outboard");
            Ok(Some(ob))
        }
        .await;
        drop(guard);
        s.flights
            .remove_if(ob_key.as_str(), |_, f| Arc::strong_count(f) <= 2);
        debug_assert!(Kind::of(&ob_key).is_some());
        result
    }

    /// Reads `range` of blob `id` from L2 (or the group cache), fetching only the groups
    /// around it that are not in memory, and checks them against the outboard.
    pub(super) async fn verified_range(
        &self,
        key: &ObjectKey,
        id: BlobId,
        ob: Arc<Outboard>,
        range: Range<u64>,
    ) -> Result<Bytes> {
        check_range(key, &range, ob.size())?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let s = &self.inner;
        let aligned = ob.aligned(&range);
        if aligned.end - aligned.start > KEEP_SPAN_MAX {
            let data = self.fetch_verified(key, &ob, aligned.clone()).await?;
            let at = (range.start - aligned.start) as usize;
            return Ok(data.slice(at..at + (range.end - range.start) as usize));
        }
        let first = aligned.start / GROUP;
        let mut groups: Vec<Option<Bytes>> = (first..aligned.end.div_ceil(GROUP))
            .map(|g| s.groups.get(&(id, g)))
            .collect();
        let missing = groups
            .iter()
            .position(Option::is_none)
            .zip(groups.iter().rposition(Option::is_none));
        if let Some((a, b)) = missing {
            let start = (first + a as u64) * GROUP;
            let end = ((first + b as u64 + 1) * GROUP).min(ob.size());
            let data = self.fetch_verified(key, &ob, start..end).await?;
            for (i, slot) in groups[a..=b].iter_mut().enumerate() {
                let at = i * GROUP as usize;
                let group = data.slice(at..(at + GROUP as usize).min(data.len()));
                // Copied: a slice would keep the whole fetch alive behind its weight.
                s.groups
                    .insert((id, first + (a + i) as u64), Bytes::copy_from_slice(&group));
                *slot = Some(group);
            }
        }
        Ok(assemble(&groups, first * GROUP, &range))
    }

    /// Fetches `span` (whole groups) from L2 and checks it against the outboard.
    async fn fetch_verified(
        &self,
        key: &ObjectKey,
        ob: &Arc<Outboard>,
        span: Range<u64>,
    ) -> Result<Bytes> {
        let s = &self.inner;
        let data = s.l2.get_range(key, span.clone()).await?;
        bump(&s.counters.range_fetches, 1);
        bump(&s.counters.bytes_from_l2, data.len() as u64);
        let start = span.start;
        let ok = data.len() as u64 == span.end - span.start
            && if span.end - span.start < OFF_THREAD_MIN {
                ob.verify(start, &data)
            } else {
                let (ob, d) = (ob.clone(), data.clone());
                blocking(move || Ok(ob.verify(start, &d))).await?
            };
        if !ok {
            bump(&s.counters.verification_failures, 1);
            tracing::warn!(key = %key, ?span, "range from L2 failed verification");
            return Err(Error::Corrupt {
                object: key.to_string(),
                expected: format!("bytes {}..{} matching the outboard", span.start, span.end),
                actual: "different bytes".into(),
            });
        }
        Ok(data)
    }
}

/// `range` out of consecutive whole `groups` starting at byte `base`; zero-copy when it
/// lies in one group.
fn assemble(groups: &[Option<Bytes>], base: u64, range: &Range<u64>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, group) in groups.iter().enumerate() {
        let Some(group) = group else { continue };
        let g_start = base + i as u64 * GROUP;
        let from = range.start.max(g_start) - g_start;
        let to = range
            .end
            .min(g_start + group.len() as u64)
            .saturating_sub(g_start);
        if from >= to {
            continue;
        }
        let part = group.slice(from as usize..to as usize);
        if part.len() as u64 == range.end - range.start {
            return part;
        }
        out.extend_from_slice(&part);
    }
    out.freeze()
}
