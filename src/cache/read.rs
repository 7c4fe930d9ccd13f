//! The read paths of [`CachingBackend`]: warm hits, first use of an L1 file, and fills
//! from L2 (whole, with one flight per key; large blobs are streamed, see [`super::fill`]).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::{blocking, bump, verify, CachingBackend, Kind, Served};
use crate::backend::{check_range, BlobRead, ObjectBackend};
use crate::blob::outboard::Outboard;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys::{self, ObjectKey};

impl CachingBackend {
    /// Serves `key` from L1, or fetches, verifies and caches it.
    pub(super) async fn cached(
        &self,
        key: &ObjectKey,
        kind: Kind,
        size: Option<u64>,
    ) -> Result<Bytes> {
        match self.l1_copy(key).await? {
            Some(c) => Ok(c.bytes),
            None => self.fill(key, kind, size).await.map(|c| c.bytes),
        }
    }

    /// A warm hit: `key`'s live mapping, already verified in this process. No system call,
    /// no await. `None` sends the caller down the general path ([`Self::l1_copy`] or a
    /// fill), which is kept in a separate boxed future: those paths hold far larger state
    /// than a hit, and an `async fn` future is as large as its largest state.
    pub(super) fn l1_hot(&self, key: &ObjectKey) -> Option<Bytes> {
        let found = self.inner.l1.lookup(key)?;
        let bytes = found
            .mapped
            .filter(|b| found.verified && b.len() as u64 == found.size)?;
        bump(&self.inner.counters.hits, 1);
        tracing::trace!(key = %key, "L1 hit");
        Some(bytes)
    }

    /// The L1 copy of `key`, verified if this is its first use in the process. A missing,
    /// unreadable or damaged file is forgotten and reported as a miss.
    ///
    /// L1 only ever holds keys of a [`Kind`], so a key's kind is parsed only when its copy
    /// must be checked: a warm hit is one index lookup and one reference count increment.
    pub(super) async fn l1_copy(&self, key: &ObjectKey) -> Result<Option<Served>> {
        let s = &self.inner;
        let Some(found) = s.l1.lookup(key) else {
            return Ok(None);
        };
        let bytes = match found.mapped {
            Some(b) => Some(b),
            None => {
                let (me, k) = (self.clone(), key.clone());
                match blocking(move || me.inner.l1.read(&k)).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "unreadable L1 file; refetching");
                        self.drop_damaged(key).await;
                        return Ok(None);
                    }
                }
            }
        };
        let Some(bytes) = bytes else {
            return Ok(None); // deleted underneath: a miss
        };
        let checked = !found.verified;
        let damaged = if bytes.len() as u64 != found.size {
            true
        } else if checked {
            // A key that is not of a kind cannot be checked: treat its file as damaged.
            let ok = match Kind::of(key) {
                Some(kind) => verify::check(kind, key, &bytes).await.is_ok(),
                None => false,
            };
            if ok {
                s.l1.mark_verified(key);
            }
            !ok
        } else {
            false
        };
        if damaged {
            tracing::warn!(key = %key, "damaged L1 file; evicting and refetching");
            drop(bytes);
            self.drop_damaged(key).await;
            return Ok(None);
        }
        bump(&s.counters.hits, 1);
        tracing::trace!(key = %key, "L1 hit");
        Ok(Some(Served { bytes, checked }))
    }

    /// [`ObjectBackend::get_range`] past a warm hit: first use of an L1 file, a verified
    /// range fetch, or a fill.
    pub(super) async fn get_range_general(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let whole = match self.l1_copy(key).await? {
            Some(c) => c.bytes,
            None => match Kind::of(key) {
                None => return self.inner.l2.get_range(key, range).await,
                Some(Kind::Blob(id)) => {
                    let ob = match self.outboard(&id).await? {
                        Some(ob) => Some(ob),
                        // A large blob without outboard gets one, once, instead of being
                        // fetched whole for every range.
                        None => self.rebuild_outboard(key, id).await?,
                    };
                    match ob {
                        Some(ob) => return self.verified_range(key, id, ob, range).await,
                        None => self.fill(key, Kind::Blob(id), None).await?.bytes,
                    }
                }
                Some(kind) => self.fill(key, kind, None).await?.bytes,
            },
        };
        check_range(key, &range, whole.len() as u64)?;
        Ok(whole.slice(range.start as usize..range.end as usize))
    }

    /// [`ObjectBackend::get_blob`] past a warm hit.
    pub(super) async fn get_blob_general(
        &self,
        key: &ObjectKey,
        id: &BlobId,
        size: u64,
    ) -> Result<BlobRead> {
        // Verified means hashed against `id` by this call: a fill, or an L1 file's first
        // use. Other hits are L1 disk, which could rot since; the caller hashes those.
        let kind = Kind::Blob(*id);
        let copy = match self.l1_copy(key).await? {
            Some(c) if !c.checked => c,
            found => {
                if Kind::of(key) != Some(kind) {
                    return Ok(BlobRead {
                        bytes: self.get(key).await?,
                        verified: false,
                    });
                }
                match found {
                    Some(c) => c,
                    None => self.fill(key, kind, Some(size)).await?,
                }
            }
        };
        Ok(BlobRead {
            bytes: copy.bytes,
            verified: copy.checked,
        })
    }

    /// [`ObjectBackend::map`] past a warm hit.
    pub(super) async fn map_general(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        if let Some(c) = self.l1_copy(key).await? {
            return Ok(Some(c.bytes));
        }
        let Some(kind) = Kind::of(key) else {
            return self.inner.l2.map(key).await;
        };
        // A blob's size lets the fill stream it instead of holding it in memory.
        let size = match kind {
            Kind::Blob(id) => match self.inner.outboards.get(&id) {
                Some(ob) => Some(ob.size()),
                None => match self.inner.l2.head(key).await? {
                    Some(meta) => Some(meta.size),
                    None => return Err(Error::not_found(key)),
                },
            },
            _ => None,
        };
        self.fill(key, kind, size).await.map(|c| Some(c.bytes))
    }

    pub(super) async fn drop_damaged(&self, key: &ObjectKey) {
        bump(&self.inner.counters.verification_failures, 1);
        let (me, k) = (self.clone(), key.clone());
        let _ = blocking(move || Ok(me.inner.l1.remove(&k))).await;
    }

    /// Fetches `key` from L2 once however many callers miss at the same time, verifies it,
    /// and caches it. A blob whose `size` is known and large is streamed into L1 (see
    /// [`fill`]); anything else is read whole.
    pub(super) async fn fill(
        &self,
        key: &ObjectKey,
        kind: Kind,
        size: Option<u64>,
    ) -> Result<Served> {
        let s = &self.inner;
        let flight = s
            .flights
            .entry(key.as_str().to_owned())
            .or_default()
            .clone();
        let guard = flight.lock().await;
        let result = async {
            // Another caller may have filled it while we waited.
            if let Some(c) = self.l1_copy(key).await? {
                return Ok(c);
            }
            let bytes = match (kind, size) {
                (Kind::Blob(id), Some(size)) if size > super::fill::PIECE => {
                    self.stream_fill(key, id, size).await?
                }
                _ => self.whole_fill(key, kind).await?,
            };
            Ok(Served {
                bytes,
                checked: true,
            })
        }
        .await;
        drop(guard);
        // The map's reference and ours: nobody else is waiting on this flight.
        s.flights
            .remove_if(key.as_str(), |_, f| Arc::strong_count(f) <= 2);
        result
    }

    /// Reads `key` whole from L2, verifies it and caches it.
    pub(super) async fn whole_fill(&self, key: &ObjectKey, kind: Kind) -> Result<Bytes> {
        let s = &self.inner;
        let data = s.l2.get(key).await?;
        bump(&s.counters.misses, 1);
        bump(&s.counters.bytes_from_l2, data.len() as u64);
        tracing::debug!(key = %key, bytes = data.len(), "L1 miss, fetched from L2");
        if let Err(e) = verify::check(kind, key, &data).await {
            bump(&s.counters.verification_failures, 1);
            tracing::warn!(key = %key, error = %e, "content from L2 failed verification");
            return Err(e);
        }
        self.store_l1(key, data.clone()).await;
        Ok(data)
    }

    /// Writes verified (or self-written) content to L1; failure only costs a later miss.
    pub(super) async fn store_l1(&self, key: &ObjectKey, data: Bytes) {
        let (me, k) = (self.clone(), key.clone());
        match blocking(move || me.inner.l1.insert(&k, &data)).await {
            Ok(true) => {}
            Ok(false) => bump(&self.inner.counters.not_cached, 1),
            Err(e) => {
                bump(&self.inner.counters.not_cached, 1);
                tracing::warn!(key = %key, error = %e, "could not write to L1");
            }
        }
    }

    /// The verified outboard of blob `id`, if L2 has one.
    pub(super) async fn outboard(&self, id: &BlobId) -> Result<Option<Arc<Outboard>>> {
        let s = &self.inner;
        if let Some(ob) = s.outboards.get(id) {
            return Ok(Some(ob));
        }
        if s.no_outboard.get(id).is_some() {
            return Ok(None);
        }
        match self
            .cached(&keys::outboard(id), Kind::Outboard(*id), None)
            .await
        {
            Ok(bytes) => {
                let ob = Arc::new(Outboard::decode(id, bytes)?);
                s.outboards.insert(*id, ob.clone());
                Ok(Some(ob))
            }
            Err(Error::NotFound { .. }) => {
                s.no_outboard.insert(*id, ());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
