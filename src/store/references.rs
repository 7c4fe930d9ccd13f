//! The one rule for commits that point at objects they did not just write.
//!
//! A commit may reference, without any check, what this process published within
//! `max_writer_stall` (GC's grace period protects it) and what the head it builds on
//! already references (GC marks the head, or a newer version, before deleting). Anything
//! else is a *foreign* reference: a dedup hit on an old blob, the shards of a restored
//! version, an entry copied from elsewhere, a Tantivy file staged long ago, an object an
//! import found already present. GC may be deleting exactly those objects right now.
//!
//! So before the commit point, [`Store::confirm_references`]:
//! 1. reads the latest GC epoch and waits while its run may be deleting;
//! 2. confirms that every foreign object exists (for a whole old version, that its root
//!    still exists: a version that survived a GC run had everything it reaches marked),
//!    or stores it again when the commit holds its bytes (a tree node);
//! 3. returns a deadline: no GC run can delete before it, so the commit point must be sent
//!    by then (the caller checks, and confirms again if it is late).
//!
//! See `docs/ARCHITECTURE.md`, "GC protocol", for why this is sufficient.

use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::epoch::{self, GcWindow};
use super::Store;
use crate::clock::{tighten, Stamp};
use crate::error::{Error, Result};
use crate::keys::{self, ObjectKey};

/// How many existence checks run at once.
const CONFIRM_CONCURRENCY: usize = 16;
/// How often a writer looks again while a GC run may be deleting.
const DELETING_POLL: Duration = Duration::from_secs(1);

/// Something a commit references that it did not write itself within the stall window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    /// An object that must exist.
    Object { key: ObjectKey, why: &'static str },
    /// An object that may be missing (an outboard: readers fall back without one), but
    /// that must not be deleted once the commit references its blob.
    Optional(ObjectKey),
    /// A whole earlier version of the collection (restore, pinning).
    Version(u64),
    /// An object the commit can store itself (a tree node whose content existed already):
    /// stored again instead of confirmed, which refreshes it or restores it if a GC run
    /// swept it.
    Rewrite { key: ObjectKey, bytes: bytes::Bytes },
}

impl Store {
    /// The foreign references of a blob entry: none if this process published it within
    /// the stall window (less the clock margin), otherwise the blob and its outboard. For
    /// an own upload, `own_deadline` is lowered to the end of its stall window: the commit
    /// point must be sent before it, or the upload is confirmed as a foreign reference.
    pub(crate) fn blob_references(
        &self,
        id: &crate::BlobId,
        size: u64,
        why: &'static str,
        out: &mut Vec<Reference>,
        own_deadline: &mut Option<Stamp>,
    ) {
        let limit = self.own_window();
        if let Some(end) = self
            .inner
            .blobs
            .published_within(id, limit)
            .and_then(|age| self.own_window_end(age))
        {
            tighten(own_deadline, end);
            if let Some((key, bytes)) = self.inner.blobs.outboard_to_store_again(id) {
                out.push(Reference::Rewrite { key, bytes });
            }
            return;
        }
        let (blob, outboard) = self.inner.blobs.reference_keys(id, size);
        out.push(Reference::Object { key: blob, why });
        if let Some(outboard) = outboard {
            out.push(Reference::Optional(outboard));
        }
    }

    /// How long after sending its upload this process may reference it without a check:
    /// the stall window less the clock margin.
    pub(crate) fn own_window(&self) -> Duration {
        let opts = &self.inner.options;
        opts.max_writer_stall.saturating_sub(opts.clock_margin)
    }

    /// When the own window of an upload sent `age` ago ends, if it has not yet.
    pub(crate) fn own_window_end(&self, age: Duration) -> Option<Stamp> {
        let limit = self.own_window();
        (age < limit).then(|| Stamp::now(self.clock()).later_by(limit - age))
    }

    /// The deadline for a commit point whose own uploads' windows end at `own_deadline`
    /// and that references `refs` (confirmed first, if there are any).
    pub(crate) async fn commit_point_deadline(
        &self,
        collection: &str,
        refs: &[Reference],
        mut own_deadline: Option<Stamp>,
        started: Stamp,
    ) -> Result<Option<Stamp>> {
        if !refs.is_empty() {
            let confirmed = self.confirm_references(collection, refs, started).await?;
            tighten(&mut own_deadline, confirmed);
        }
        Ok(own_deadline)
    }

    /// Steps 1-3 above for `refs` in `collection`; returns the deadline for the commit
    /// point. `started` is when the writer began waiting, to bound the wait.
    pub(crate) async fn confirm_references(
        &self,
        collection: &str,
        refs: &[Reference],
        started: Stamp,
    ) -> Result<Stamp> {
        let opts = &self.inner.options;
        let clock = self.clock();
        let backend = self.inner.backend.as_ref();
        loop {
            let checked_at = Stamp::now(clock);
            let store_now = backend.now().await?;
            let window =
                epoch::window(backend, &self.inner.epochs, store_now, opts.clock_margin).await?;
            // A run that starts after this reading cannot delete before its own start plus
            // the delete delay.
            let mut room = opts.gc_delete_delay.saturating_sub(opts.clock_margin);
            match window {
                GcWindow::Quiet => {}
                GcWindow::DeletesFrom(from) => {
                    let until = from.duration_since(store_now).unwrap_or_default();
                    room = room.min(until.saturating_sub(opts.clock_margin));
                }
                GcWindow::Deleting { epoch, .. } => {
                    if started.elapsed(clock) > opts.max_writer_stall {
                        return Err(Error::GcInProgress { epoch });
                    }
                    tokio::time::sleep(DELETING_POLL).await;
                    continue;
                }
            }
            if room.is_zero() {
                tokio::time::sleep(DELETING_POLL).await;
                continue;
            }
            let deadline = checked_at.later_by(room);
            self.confirm_exist(collection, refs).await?;
            if Stamp::now(clock) < deadline {
                return Ok(deadline);
            }
            // Confirming took longer than the window: start over.
        }
    }

    async fn confirm_exist(&self, collection: &str, refs: &[Reference]) -> Result<()> {
        let checks = refs.iter().cloned().map(|r| {
            let backend = self.inner.backend.clone();
            let collection = collection.to_owned();
            async move { confirm_one(backend.as_ref(), &collection, r).await }
        });
        stream::iter(checks)
            .buffer_unordered(CONFIRM_CONCURRENCY)
            .try_collect::<()>()
            .await
    }
}

async fn confirm_one(
    backend: &dyn crate::backend::ObjectBackend,
    collection: &str,
    r: Reference,
) -> Result<()> {
    let (key, why) = match &r {
        Reference::Rewrite { key, bytes } => return backend.put(key, bytes.clone()).await,
        Reference::Object { key, why } => (key.clone(), Some(*why)),
        Reference::Optional(key) => (key.clone(), None),
        Reference::Version(v) => (keys::manifest(collection, *v), Some("restored or pinned")),
    };
    match (backend.head(&key).await?, why) {
        (Some(_), _) | (None, None) => Ok(()),
        (None, Some(why)) => Err(match r {
            Reference::Version(v) => Error::not_found(format!(
                "version {v} of collection {collection:?} (no longer retained)"
            )),
            _ => Error::ReferenceGone {
                collection: collection.to_owned(),
                key: key.to_string(),
                reason: why.to_owned(),
            },
        }),
    }
}
