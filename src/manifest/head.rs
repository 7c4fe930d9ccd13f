//! Finding a collection's latest version without a mutable "current" pointer.
//!
//! Versions are created in order (N+1 only once N exists) and retention deletes only old
//! ones, so the existing versions form one contiguous run. From any version known to exist,
//! the latest is found by probing N+1, N+2, N+4, ... and then bisecting: one probe when
//! nothing changed, a few when others committed. A process that knows nothing yet starts
//! from the `_latest` hint, and lists the folder only when the hint is missing or stale.
//!
//! A writer may also **publish** its head: overwrite `_head` with a copy of the root it
//! just committed. The copy proves something without being authoritative: a root's
//! timestamp is taken before its create-only write is sent, so no version above it can
//! be older than that timestamp. A cold reader that finds a young published root may use
//! it as a head confirmed at that timestamp (one GET instead of hint, probes, boundary
//! and root); an old, garbled or foreign one is ignored. Publishers may race and an older
//! copy may land last: that only makes the claim older, never false.

use bytes::Bytes;

use super::encoding::{decode_published, decode_root, encode_published};
use super::ManifestRoot;
use crate::backend::ObjectBackend;
use crate::error::{Error, Result};
use crate::keys;

/// Default of `StoreOptions::version_min_age`: retention never deletes a version younger
/// than this, so a head confirmed as latest within this window still has every successor
/// in place and can be probed forward from.
pub const PROBE_TRUST_WINDOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The hint is rewritten on every version that is a multiple of this (and on version 1),
/// so it is never more than this many versions behind: probing covers the gap in a few
/// requests, and commits rarely pay for a hint write.
pub const HINT_EVERY: u64 = 32;

/// At most this many bytes of tree objects ride along with a published head: enough for
/// the single-page shard of a Tantivy index or of a small collection, so that a cold reader
/// finds what it looks up next in the same GET.
pub(crate) const PUBLISHED_NODES_MAX: usize = 64 * 1024;

async fn version_exists(
    backend: &dyn ObjectBackend,
    collection: &str,
    version: u64,
) -> Result<bool> {
    Ok(backend
        .head(&keys::manifest(collection, version))
        .await?
        .is_some())
}

/// The latest version at or after `known`, which must exist (or be 0 for "nothing known
/// to exist", which is only correct for a collection whose version 1 was never deleted).
/// Every version returned other than `known` was seen to exist, with its successor absent.
pub async fn probe_from(backend: &dyn ObjectBackend, collection: &str, known: u64) -> Result<u64> {
    let mut low = known;
    let mut step = 1u64;
    let high = loop {
        let candidate = low.saturating_add(step);
        if version_exists(backend, collection, candidate).await? {
            low = candidate;
            step = step.saturating_mul(2);
        } else {
            break candidate;
        }
    };
    // Invariant: `low` exists, `high` does not; the run is contiguous.
    let (mut low, mut high) = (low, high);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if version_exists(backend, collection, mid).await? {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// Finds the latest version from scratch: hint, then probes, then a listing as fallback.
pub async fn discover(backend: &dyn ObjectBackend, collection: &str) -> Result<u64> {
    if let Some(hint) = read_hint(backend, collection).await? {
        if hint > 0 {
            // Probing tests every version it moves to, so a result past the hint exists and
            // its successor does not: the hint itself needs a check only when it is the
            // result.
            let latest = probe_from(backend, collection, hint).await?;
            // A hint naming a pinned version below the retention boundary exists while its
            // successors may be gone; only a result at or above the boundary is sound.
            if (latest > hint || version_exists(backend, collection, hint).await?)
                && latest >= read_boundary(backend, collection).await?
            {
                return Ok(latest);
            }
        }
    }
    let listed = backend
        .list(&keys::manifest_prefix(collection))
        .await?
        .iter()
        .filter_map(|m| keys::parse_manifest_version(m.key.file_name()))
        .max()
        .unwrap_or(0);
    // The listing may lag behind the newest commits (probing catches up), and behind
    // retention's deletes: a listed version below the boundary may be gone along with its
    // successors, and probing forward from it would make a writer re-create a deleted
    // version number. The boundary version itself is always kept.
    let boundary = read_boundary(backend, collection).await?;
    let start = listed.max(boundary);
    if start > 0 && start == boundary && !version_exists(backend, collection, start).await? {
        return Err(Error::CorruptManifest {
            key: keys::manifest(collection, start).to_string(),
            reason: format!("the retention boundary {boundary} names a version that is missing"),
        });
    }
    probe_from(backend, collection, start).await
}

/// The root published in `_head` for `collection`, if there is a valid one: missing,
/// garbled or mismatched copies are `None` (the record is never needed for correctness).
pub async fn read_published(
    backend: &dyn ObjectBackend,
    collection: &str,
) -> Result<Option<ManifestRoot>> {
    Ok(read_published_with_nodes(backend, collection)
        .await?
        .map(|(root, _)| root))
}

/// Like [`read_published`], with the encoded tree objects the publisher attached (see
/// [`publish_with_nodes`]); they are unchecked here: the tree layer adopts only those
/// whose content address the root references.
pub(crate) async fn read_published_with_nodes(
    backend: &dyn ObjectBackend,
    collection: &str,
) -> Result<Option<(ManifestRoot, Vec<Bytes>)>> {
    let key = keys::published_head(collection);
    let bytes = match backend.get(&key).await {
        Ok(bytes) => bytes,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match decode_published(key.as_str(), &bytes) {
        Ok((root, nodes)) if root.collection == collection && root.version > 0 => {
            Ok(Some((root, nodes)))
        }
        Ok((root, _)) => {
            tracing::debug!(collection, found = %root.collection, version = root.version,
                "ignoring a published head of another collection");
            Ok(None)
        }
        Err(e) => {
            tracing::debug!(collection, error = %e, "ignoring a garbled published head");
            Ok(None)
        }
    }
}

/// Publishes `root` (a version this process just committed or confirmed) as the head of
/// its collection. Failures are logged and ignored, as for the hint.
pub async fn publish(backend: &dyn ObjectBackend, root: &ManifestRoot) {
    publish_with_nodes(backend, root, Vec::new()).await
}

/// [`publish`], attaching encoded tree objects of `root` (its shard objects), so that a
/// cold reader finds them in the same GET. With none, `_head` is the root alone, which
/// every build reads; with some, builds that predate attachments ignore the copy and
/// probe for the head instead.
pub(crate) async fn publish_with_nodes(
    backend: &dyn ObjectBackend,
    root: &ManifestRoot,
    nodes: Vec<Bytes>,
) {
    let bytes = match encode_published(root, nodes) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(collection = %root.collection, error = %e, "could not encode the head to publish");
            return;
        }
    };
    if let Err(e) = backend
        .put(&keys::published_head(&root.collection), bytes)
        .await
    {
        tracing::warn!(collection = %root.collection, version = root.version, error = %e,
            "could not publish the head");
    }
}

async fn read_hint(backend: &dyn ObjectBackend, collection: &str) -> Result<Option<u64>> {
    match backend.get(&keys::latest_hint(collection)).await {
        // A garbled hint is only a hint: ignore it and fall back to listing.
        Ok(bytes) => Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records `version` as a recent version of `collection`, if the schedule says so.
/// Failures are logged and ignored: the hint is never needed for correctness.
pub async fn maybe_write_hint(backend: &dyn ObjectBackend, collection: &str, version: u64) {
    if version != 1 && !version.is_multiple_of(HINT_EVERY) {
        return;
    }
    let key = keys::latest_hint(collection);
    if let Err(e) = backend.put(&key, Bytes::from(version.to_string())).await {
        tracing::warn!(collection, version, error = %e, "could not update the latest-version hint");
    }
}

/// The retention boundary of `collection`: the oldest version retention keeps. Versions
/// below it may have been deleted. 0 when retention never ran.
pub async fn read_boundary(backend: &dyn ObjectBackend, collection: &str) -> Result<u64> {
    match backend.get(&keys::boundary(collection)).await {
        Ok(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::CorruptManifest {
                key: keys::boundary(collection).to_string(),
                reason: "retention boundary is not a decimal version number".into(),
            }),
        Err(Error::NotFound { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Raises the retention boundary to `version` (never lowers it). Durable on return, and
/// must be called before any version below `version` is deleted.
///
/// The write is a plain overwrite after a read, so only one writer at a time may raise a
/// collection's boundary: a GC run holding its lease (`fence` fails once the lease is
/// gone, checked right before the write), or an import into a collection nobody else
/// writes yet.
pub async fn raise_boundary(
    backend: &dyn ObjectBackend,
    collection: &str,
    version: u64,
    fence: impl Fn() -> Result<()>,
) -> Result<()> {
    if read_boundary(backend, collection).await? >= version {
        return Ok(());
    }
    fence()?;
    backend
        .put(
            &keys::boundary(collection),
            Bytes::from(version.to_string()),
        )
        .await
}

/// Reads and checks version `version` of `collection`; version 0 is the empty state.
pub async fn load_root(
    backend: &dyn ObjectBackend,
    collection: &str,
    version: u64,
) -> Result<ManifestRoot> {
    if version == 0 {
        return Ok(ManifestRoot::empty(collection));
    }
    let key = keys::manifest(collection, version);
    let bytes = backend.get(&key).await?;
    let root = decode_root(key.as_str(), &bytes)?;
    if root.collection != collection || root.version != version {
        return Err(Error::CorruptManifest {
            key: key.to_string(),
            reason: format!(
                "holds collection {:?} version {}, expected {collection:?} version {version}",
                root.collection, root.version
            ),
        });
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use std::sync::Arc;

    async fn make_versions(backend: &MemoryBackend, range: std::ops::RangeInclusive<u64>) {
        for v in range {
            backend
                .put(&keys::manifest("c", v), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn probing_finds_the_end_of_the_run() {
        let backend = MemoryBackend::new();
        assert_eq!(discover(&backend, "c").await.unwrap(), 0);
        make_versions(&backend, 1..=1).await;
        assert_eq!(probe_from(&backend, "c", 0).await.unwrap(), 1);
        make_versions(&backend, 2..=1000).await;
        for known in [0, 1, 5, 999, 1000] {
            assert_eq!(probe_from(&backend, "c", known).await.unwrap(), 1000);
        }
        // Old versions deleted by retention: discovery still works, via the listing.
        for v in 1..=990 {
            backend.delete(&keys::manifest("c", v)).await.unwrap();
        }
        assert_eq!(discover(&backend, "c").await.unwrap(), 1000);
        maybe_write_hint(&backend, "c", 992).await;
        assert_eq!(discover(&backend, "c").await.unwrap(), 1000);
    }

    #[tokio::test]
    async fn discovery_from_a_stale_hint_skips_checking_the_hint() {
        use crate::backend::counting::CountingBackend;
        let memory: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
        let counting: CountingBackend = CountingBackend::new(memory);
        for v in 1..=2 {
            counting
                .put(&keys::manifest("c", v), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        maybe_write_hint(&counting, "c", 1).await;
        counting.reset();
        assert_eq!(discover(&counting, "c").await.unwrap(), 2);
        // The hint, probes of 2, 4 and 3, the boundary: a successor of the hint proves
        // the run reaches past it, so the hint itself needs no HEAD.
        assert_eq!(counting.snapshot().total(), 5, "{:?}", counting.snapshot());
        // A hint that is the latest version still needs its own check.
        counting.reset();
        maybe_write_hint(&counting, "c", 1).await;
        counting.delete(&keys::manifest("c", 2)).await.unwrap();
        counting.reset();
        assert_eq!(discover(&counting, "c").await.unwrap(), 1);
        // A hint naming a version that is gone falls back to the listing.
        counting.delete(&keys::manifest("c", 1)).await.unwrap();
        assert_eq!(discover(&counting, "c").await.unwrap(), 0);
    }

    /// A head with attachments is not a root to builds that predate them (they ignore the
    /// copy and probe), and a head with none is the root's bytes exactly, as before.
    #[test]
    fn a_head_with_attachments_is_not_a_root_to_older_readers() {
        let mut root = ManifestRoot::empty("c");
        root.version = 3;
        let bundle = encode_published(&root, vec![Bytes::from_static(b"node")]).unwrap();
        assert!(decode_root("k", &bundle).is_err());
        let (back, nodes) = decode_published("k", &bundle).unwrap();
        assert_eq!(back, root);
        assert_eq!(nodes, vec![Bytes::from_static(b"node")]);
        let alone = encode_published(&root, Vec::new()).unwrap();
        assert_eq!(alone, super::super::encode_root(&root).unwrap());
        assert_eq!(decode_published("k", &alone).unwrap(), (root, Vec::new()));
    }
}
