//! Sending the objects a sync needs: each is looked up at the destination first (so a
//! resumed sync sends nothing twice), streamed and verified against its hash if missing,
//! and classified for the commit: found present is a foreign reference, sent by this sync
//! is an own upload with the time it was published.

use futures::stream::{self, StreamExt, TryStreamExt};

use super::walk::Needed;
use super::SyncReport;
use crate::backend::ObjectBackend;
use crate::blob::copy::copy_blob;
use crate::blob::outboard::OUTBOARD_MIN;
use crate::clock::{Clock, Stamp};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys::{self, ObjectKey};
use crate::progress::{ProgressFn, Tracker};
use crate::store::Reference;

/// How many objects are looked up or sent at once. Each blob in flight holds at most one
/// chunk of 8 MiB, so memory stays bounded whatever the blobs' sizes.
const COPY_CONCURRENCY: usize = 8;

/// What the commit must know of the objects sent or found.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// Objects found at the destination: confirmed before the commit point.
    pub foreign: Vec<Reference>,
    /// Objects this sync published, and when.
    pub own: Vec<(Reference, Stamp)>,
}

enum Outcome {
    Present(Vec<Reference>),
    Published(Vec<Reference>, Stamp, u64),
}

/// Sends what `needed` names from `src` to `dest`: blobs first, then tree nodes.
pub(crate) async fn send(
    src: &dyn ObjectBackend,
    dest: &dyn ObjectBackend,
    needed: &Needed,
    clock: &dyn Clock,
    report: &mut SyncReport,
    progress: Option<&ProgressFn>,
) -> Result<Sent> {
    let counters = Tracker::new(
        progress,
        (needed.blobs.len() + needed.trees.len()) as u64,
        needed.blob_bytes(),
    );
    let outboards = dest.wants_outboards();
    let blobs: Vec<(Outcome, bool)> = stream::iter(needed.blobs.iter().copied())
        .map(|(id, size)| {
            let counters = &counters;
            async move {
                let at = Stamp::now(clock);
                let sent = copy_blob(src, dest, &id, size).await?;
                counters.tick(if sent { size } else { 0 });
                let mut refs = vec![Reference::Object {
                    key: keys::blob(&id),
                    why: "synced content",
                }];
                if outboards && size >= OUTBOARD_MIN {
                    refs.push(Reference::Optional(keys::outboard(&id)));
                }
                Ok::<_, Error>(if sent {
                    (Outcome::Published(refs, at, size), true)
                } else {
                    (Outcome::Present(refs), true)
                })
            }
        })
        .buffer_unordered(COPY_CONCURRENCY)
        .try_collect()
        .await?;
    let trees: Vec<(Outcome, bool)> = stream::iter(needed.trees.iter().copied())
        .map(|id| {
            let counters = &counters;
            async move {
                let outcome = copy_tree(src, dest, &id, clock).await?;
                counters.tick(0);
                Ok::<_, Error>((outcome, false))
            }
        })
        .buffer_unordered(COPY_CONCURRENCY)
        .try_collect()
        .await?;
    let mut sent = Sent::default();
    for (outcome, is_blob) in blobs.into_iter().chain(trees) {
        match outcome {
            Outcome::Present(refs) => {
                if is_blob {
                    report.blobs_present += 1;
                } else {
                    report.trees_present += 1;
                }
                sent.foreign.extend(refs);
            }
            Outcome::Published(refs, at, bytes) => {
                if is_blob {
                    report.blobs_copied += 1;
                } else {
                    report.trees_copied += 1;
                }
                report.bytes_copied = report.bytes_copied.saturating_add(bytes);
                sent.own.extend(refs.into_iter().map(|r| (r, at)));
            }
        }
    }
    Ok(sent)
}

/// Copies tree node `id` unless the destination has it, checking its hash on the way.
async fn copy_tree(
    src: &dyn ObjectBackend,
    dest: &dyn ObjectBackend,
    id: &BlobId,
    clock: &dyn Clock,
) -> Result<Outcome> {
    let key: ObjectKey = keys::tree(id);
    let refs = vec![Reference::Object {
        key: key.clone(),
        why: "synced tree node",
    }];
    if dest.head(&key).await?.is_some() {
        return Ok(Outcome::Present(refs));
    }
    let bytes = src.get(&key).await?;
    let actual = BlobId::of(&bytes);
    if actual != *id {
        return Err(Error::hash_mismatch(&key, id, actual));
    }
    let size = bytes.len() as u64;
    let at = Stamp::now(clock);
    dest.put(&key, bytes).await?;
    Ok(Outcome::Published(refs, at, size))
}
