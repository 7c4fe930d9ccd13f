//! Export and import: move a collection between stores (local disk, S3) as a portable
//! directory or tar archive, verifying every object on the way in.
//!
//! An export is itself a small segstore tree (`blobs/`, `trees/`, `manifests/`, `pins/`
//! as in `FORMAT.md`) holding exactly the objects the exported versions reference, so it
//! can be checked with `b3sum` and even opened as a read-only store.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

mod archive;
mod compression;
mod tarball;

pub use archive::{META_MAX, META_TOTAL_MAX};
pub use compression::Compression;

use crate::backend::local::LocalBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::{ObjectBackend, PutOutcome};
use crate::clock::{tighten, Stamp};
use crate::error::{Error, Result};
use crate::gc::Marks;
use crate::hash::BlobId;
use crate::keys::{self, ObjectKey};
use crate::manifest::{decode_snapshot, head, ManifestRoot};
use crate::path::validate_name;
use crate::progress::{ProgressFn, Tracker};
use crate::store::{Reference, Store};

use crate::blob::copy::copy_blob;
use archive::ArchiveSource;

/// Which versions to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportScope {
    /// Every stored version, and every snapshot.
    AllVersions,
    /// One snapshot's version, and the snapshot itself.
    Snapshot(String),
}

/// How to export or import.
#[derive(Debug, Clone, Default)]
pub struct TransferOptions {
    /// Called after each object is copied: items are blobs, tree nodes, manifest roots and
    /// snapshots, bytes those of the blobs. A tar import reports the archive instead: its
    /// entries, and the bytes read of the file (of its size; 0 for stdin).
    pub progress: Option<ProgressFn>,
}

/// What an export or import moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Manifest versions.
    pub versions: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Blobs copied.
    pub blobs: u64,
    /// Blobs already present at the destination (deduplicated).
    pub blobs_skipped: u64,
    /// Bytes of blob content copied.
    pub bytes: u64,
    /// Tree nodes copied.
    pub trees: u64,
}

impl Store {
    /// Copies `collection` (all versions, or one snapshot) into `dest`.
    #[tracing::instrument(level = "debug", name = "export", skip_all, fields(collection))]
    pub async fn export_to(
        &self,
        collection: &str,
        scope: &ExportScope,
        dest: &dyn ObjectBackend,
    ) -> Result<TransferReport> {
        self.export_into(collection, scope, dest, &TransferOptions::default())
            .await
    }

    /// Exports `collection` to `path`: a tar archive if the name says so (`.tar`,
    /// `.tar.zst`, `.tar.gz`, or `-` for stdout, as [`Store::export_tar`]), a directory
    /// otherwise (as [`Store::export_dir`]).
    #[tracing::instrument(level = "debug", name = "export", skip_all, fields(collection, path = %path.display()))]
    pub async fn export(
        &self,
        collection: &str,
        scope: &ExportScope,
        path: &Path,
        options: &TransferOptions,
    ) -> Result<TransferReport> {
        if Compression::of(path).is_some() {
            self.export_tar_with(collection, scope, path, options).await
        } else {
            let dest = LocalBackend::open(path).await?;
            self.export_into(collection, scope, &dest, options).await
        }
    }

    async fn export_into(
        &self,
        collection: &str,
        scope: &ExportScope,
        dest: &dyn ObjectBackend,
        options: &TransferOptions,
    ) -> Result<TransferReport> {
        let (roots, pins, marks) = self.export_plan(collection, scope).await?;
        let tracker = Tracker::new(
            options.progress.as_ref(),
            (marks.blobs.len() + marks.trees.len() + roots.len() + pins.len()) as u64,
            marks.blobs.values().sum(),
        );
        let mut report = TransferReport::default();
        let src = self.backend().as_ref();
        copy_content(src, dest, marks, &mut report, self.clock(), &tracker).await?;
        for root in &roots {
            let key = keys::manifest(collection, root.version);
            dest.put(&key, src.get(&key).await?).await?;
            report.versions += 1;
            tracker.tick(0);
        }
        for name in pins {
            let key = keys::pin(collection, &name);
            dest.put(&key, src.get(&key).await?).await?;
            report.snapshots += 1;
            tracker.tick(0);
        }
        Ok(report)
    }

    /// The roots, snapshots and objects an export of `collection` holds.
    async fn export_plan(
        &self,
        collection: &str,
        scope: &ExportScope,
    ) -> Result<(Vec<ManifestRoot>, Vec<String>, Marks)> {
        validate_name(collection)?;
        let (versions, pins): (Vec<u64>, Vec<String>) = match scope {
            ExportScope::AllVersions => (
                self.versions(collection)
                    .await?
                    .into_iter()
                    .map(|(v, _)| v)
                    .collect(),
                self.snapshots(collection)
                    .await?
                    .into_iter()
                    .map(|s| s.name)
                    .collect(),
            ),
            ExportScope::Snapshot(name) => {
                let snap = self.snapshot(collection, name).await?;
                (vec![snap.version], vec![name.clone()])
            }
        };
        let mut roots = Vec::new();
        let mut marks = Marks::default();
        for v in versions {
            if let Some(root) = self.root_if_present(collection, v).await? {
                marks.add_root(self, &root).await?;
                roots.push(root);
            }
        }
        Ok((roots, pins, marks))
    }

    /// Copies `collection` from `source` (an export, or any store) into this store,
    /// verifying every blob and tree node against its hash and every root's checksum.
    /// The collection must not exist here yet ([`Error::Conflict`] otherwise).
    #[tracing::instrument(level = "debug", name = "import", skip_all, fields(collection))]
    pub async fn import_from(
        &self,
        source: Arc<dyn ObjectBackend>,
        collection: &str,
    ) -> Result<TransferReport> {
        self.import_with(source, collection, None).await
    }

    /// Imports `collection` from `path`: a tar archive if the name says so (as
    /// [`Store::import_tar`]), a directory written by an export otherwise (as
    /// [`Store::import_dir`]).
    #[tracing::instrument(level = "debug", name = "import", skip_all, fields(collection, path = %path.display()))]
    pub async fn import(
        &self,
        collection: &str,
        path: &Path,
        options: &TransferOptions,
    ) -> Result<TransferReport> {
        if Compression::of(path).is_some() {
            self.import_tar_with(collection, path, options).await
        } else {
            let source = open_export_dir(path).await?;
            self.import_with(source, collection, options.progress.as_ref())
                .await
        }
    }

    async fn import_with(
        &self,
        source: Arc<dyn ObjectBackend>,
        collection: &str,
        progress: Option<&ProgressFn>,
    ) -> Result<TransferReport> {
        self.ensure_new_collection(collection).await?;
        let reader = Store::new(source.clone(), self.options().clone());
        let source = source.as_ref();
        let mut report = TransferReport::default();
        let mut roots: Vec<ManifestRoot> = Vec::new();
        for meta in source.list(&keys::manifest_prefix(collection)).await? {
            if let Some(v) = keys::parse_manifest_version(meta.key.file_name()) {
                roots.push(head::load_root(source, collection, v).await?);
            }
        }
        if roots.is_empty() {
            return Err(Error::not_found(format!(
                "collection {collection} in the import source"
            )));
        }
        let mut marks = Marks::default();
        for root in &roots {
            // Loads (and so verifies) every tree node through the reader's checks.
            marks.add_root(&reader, root).await?;
        }
        let dest = self.backend().as_ref();
        let clock = self.clock();
        let began = Stamp::now(clock);
        let tracker = Tracker::new(
            progress,
            (marks.blobs.len() + marks.trees.len()) as u64,
            marks.blobs.values().sum(),
        );
        let copied = copy_content(source, dest, marks, &mut report, clock, &tracker).await?;
        // The boundary makes older gaps (versions the source's retention removed) safe:
        // new versions are only ever probed for above the newest contiguous run.
        let versions: BTreeSet<u64> = roots.iter().map(|r| r.version).collect();
        let newest = *versions.iter().next_back().unwrap_or(&0);
        let mut run_start = newest;
        while run_start > 1 && versions.contains(&(run_start - 1)) {
            run_start -= 1;
        }
        let mut encoded = Vec::with_capacity(roots.len());
        for root in &roots {
            let key = keys::manifest(collection, root.version);
            let bytes = source.get(&key).await?;
            // The bytes written must be the root that was verified and traversed.
            if crate::manifest::decode_root(key.as_str(), &bytes)? != *root {
                return Err(Error::CorruptManifest {
                    key: key.to_string(),
                    reason: "the import source changed this version during the import".into(),
                });
            }
            encoded.push((key, bytes));
        }
        // A new collection: no retention run raises its boundary meanwhile.
        head::raise_boundary(dest, collection, run_start, || Ok(())).await?;
        let written = self
            .write_imported_roots(collection, encoded, &copied, began)
            .await;
        match written {
            Ok(n) => report.versions = n,
            Err(e) => {
                // Nothing of the import may stay visible: without roots, its blobs and
                // nodes are garbage for the next GC.
                let _ = dest.delete(&keys::boundary(collection)).await;
                return Err(e);
            }
        }
        let kept = versions;
        for meta in source.list(&keys::pins_prefix(collection)).await? {
            let bytes = source.get(&meta.key).await?;
            let snap = decode_snapshot(meta.key.as_str(), &bytes)?;
            if kept.contains(&snap.version) {
                dest.put(&keys::pin(collection, &snap.name), bytes).await?;
                report.snapshots += 1;
            }
        }
        // The versions were written beside the commit path: make this store's head
        // (confirmed empty by the check above) take them in at once.
        self.refresh(collection).await?;
        Ok(report)
    }

    /// An import needs a collection that does not exist here yet.
    async fn ensure_new_collection(&self, collection: &str) -> Result<()> {
        validate_name(collection)?;
        if self.refresh(collection).await?.version != 0 {
            return Err(Error::Conflict {
                collection: collection.to_owned(),
                path: String::new(),
                reason: "import needs a collection that does not exist in the target store".into(),
            });
        }
        Ok(())
    }

    /// Creates the imported roots, oldest first, each one before the deadline of what it
    /// references. On failure, removes those it created: an import is all or
    /// nothing (a crash part way can leave older versions of the source, never a mix).
    async fn write_imported_roots(
        &self,
        collection: &str,
        roots: Vec<(ObjectKey, bytes::Bytes)>,
        copied: &[Copied],
        began: Stamp,
    ) -> Result<u64> {
        let dest = self.backend().as_ref();
        let clock = self.clock();
        // Every root must be sent before any GC run may delete what it references: within
        // the stall window of the objects this import wrote, and of the window in which the
        // others (already here, or written longer ago) were confirmed. A root that would
        // come later waits for a new confirmation.
        let mut checked = false;
        let mut deadline: Option<Stamp> = None;
        let mut created: Vec<ObjectKey> = Vec::new();
        let result: Result<()> = async {
            for (key, bytes) in roots {
                if !checked || deadline.is_some_and(|d| Stamp::now(clock) >= d) {
                    deadline = self.import_deadline(collection, copied, began).await?;
                    checked = true;
                }
                match dest.put_if_absent(&key, bytes).await? {
                    PutOutcome::Created => created.push(key),
                    PutOutcome::AlreadyExists => {
                        return Err(Error::Conflict {
                            collection: collection.to_owned(),
                            path: key.to_string(),
                            reason: "a concurrent writer created this version during the import"
                                .into(),
                        })
                    }
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(created.len() as u64),
            Err(e) => {
                for key in created.iter().rev() {
                    let _ = dest.delete(key).await;
                }
                Err(e)
            }
        }
    }

    /// The time by which the roots of an import must be sent (`None`: no bound, nothing
    /// copied), after confirming, under the GC protocol, every object that is not this
    /// import's fresh upload.
    async fn import_deadline(
        &self,
        collection: &str,
        copied: &[Copied],
        began: Stamp,
    ) -> Result<Option<Stamp>> {
        let clock = self.clock();
        let window = self.own_window();
        let mut deadline: Option<Stamp> = None;
        let mut lower = |d: Stamp| tighten(&mut deadline, d);
        let mut references = Vec::new();
        for c in copied {
            match c.published.filter(|t| t.elapsed(clock) < window) {
                Some(at) => lower(at.later_by(window)),
                None => references.push(match &c.rewrite {
                    Some(bytes) => Reference::Rewrite {
                        key: c.key.clone(),
                        bytes: bytes.clone(),
                    },
                    None => Reference::Object {
                        key: c.key.clone(),
                        why: "imported content",
                    },
                }),
            }
        }
        if !references.is_empty() {
            loop {
                let confirmed = self
                    .confirm_references(collection, &references, began)
                    .await?;
                if Stamp::now(clock) < confirmed {
                    lower(confirmed);
                    break;
                }
            }
        }
        Ok(deadline)
    }

    /// Exports to a directory (created if missing).
    pub async fn export_dir(
        &self,
        collection: &str,
        scope: &ExportScope,
        dir: &Path,
    ) -> Result<TransferReport> {
        let dest = LocalBackend::open(dir).await?;
        self.export_to(collection, scope, &dest).await
    }

    /// Imports from a directory written by [`Store::export_dir`].
    pub async fn import_dir(&self, collection: &str, dir: &Path) -> Result<TransferReport> {
        self.import_from(open_export_dir(dir).await?, collection)
            .await
    }

    /// Exports to a tar archive at `archive`, streamed as the objects are read (nothing
    /// is staged on disk): `.tar`, `.tar.zst` or `.tar.gz` by the name's extension, `-`
    /// for stdout (plain tar).
    pub async fn export_tar(
        &self,
        collection: &str,
        scope: &ExportScope,
        archive: &Path,
    ) -> Result<TransferReport> {
        self.export_tar_with(collection, scope, archive, &TransferOptions::default())
            .await
    }

    async fn export_tar_with(
        &self,
        collection: &str,
        scope: &ExportScope,
        archive: &Path,
        options: &TransferOptions,
    ) -> Result<TransferReport> {
        let (roots, pins, marks) = self.export_plan(collection, scope).await?;
        let mut blobs: Vec<_> = marks.blobs.into_iter().collect();
        blobs.sort();
        let mut trees: Vec<_> = marks.trees.into_iter().collect();
        trees.sort();
        let report = TransferReport {
            versions: roots.len() as u64,
            snapshots: pins.len() as u64,
            blobs: blobs.len() as u64,
            trees: trees.len() as u64,
            ..TransferReport::default()
        };
        let listed: tarball::Listed = blobs
            .into_iter()
            .map(|(id, size)| (keys::blob(&id), Some((id, size))))
            .chain(trees.into_iter().map(|id| (keys::tree(&id), Some((id, 0)))))
            .chain(
                roots
                    .iter()
                    .map(|r| (keys::manifest(collection, r.version), None)),
            )
            .chain(pins.iter().map(|n| (keys::pin(collection, n), None)))
            .collect();
        let progress = options.progress.as_ref();
        let bytes =
            tarball::write_archive(self.backend().as_ref(), listed, archive, progress).await?;
        Ok(TransferReport { bytes, ..report })
    }

    /// Imports from a tar archive written by [`Store::export_tar`]. The archive is never
    /// unpacked as is: only regular files with the names an export writes are read (links,
    /// devices and any other name are [`Error::InvalidPath`]), blobs streamed straight into
    /// this store and verified against their hash, the rest verified by the import as for
    /// any source (see `crate::archive`).
    pub async fn import_tar(&self, collection: &str, archive: &Path) -> Result<TransferReport> {
        self.import_tar_with(collection, archive, &TransferOptions::default())
            .await
    }

    async fn import_tar_with(
        &self,
        collection: &str,
        archive: &Path,
        options: &TransferOptions,
    ) -> Result<TransferReport> {
        // Checked by `import_from` too; here before any blob is streamed in.
        self.ensure_new_collection(collection).await?;
        let meta = MemoryBackend::new();
        let progress = options.progress.as_ref();
        let streamed =
            archive::read_tar(archive, self.backend().clone(), meta.clone(), progress).await?;
        let source = ArchiveSource {
            meta,
            blobs: self.backend().clone(),
        };
        let mut report = self.import_from(Arc::new(source), collection).await?;
        // The blobs the archive streamed in were already here when the import looked, and
        // were counted as skipped: count them as copied (an export holds only blobs its
        // versions reference).
        report.blobs_skipped = report.blobs_skipped.saturating_sub(streamed.blobs);
        report.blobs = report.blobs.saturating_add(streamed.blobs);
        report.bytes = report.bytes.saturating_add(streamed.bytes);
        Ok(report)
    }
}

/// A directory written by an export, as an import source.
async fn open_export_dir(dir: &Path) -> Result<Arc<dyn ObjectBackend>> {
    if !dir.is_dir() {
        return Err(Error::not_found(dir.display()));
    }
    Ok(Arc::new(LocalBackend::open(dir).await?))
}

/// An object an import needs in the destination.
struct Copied {
    key: ObjectKey,
    /// When this import published it; `None` if the destination already had it.
    published: Option<Stamp>,
    /// The bytes of a tree node the destination already had, to store it again.
    rewrite: Option<bytes::Bytes>,
}

/// Copies every blob (verified) and tree node that `marks` names, before any root, and
/// says what it wrote when.
async fn copy_content(
    src: &dyn ObjectBackend,
    dest: &dyn ObjectBackend,
    marks: Marks,
    report: &mut TransferReport,
    clock: &dyn crate::clock::Clock,
    tracker: &Tracker<'_>,
) -> Result<Vec<Copied>> {
    let mut copied = Vec::new();
    let mut blobs: Vec<_> = marks.blobs.into_iter().collect();
    blobs.sort();
    for (id, size) in blobs {
        let at = Stamp::now(clock);
        let published = if copy_blob(src, dest, &id, size).await? {
            report.blobs += 1;
            report.bytes = report.bytes.saturating_add(size);
            Some(at)
        } else {
            report.blobs_skipped += 1;
            None
        };
        tracker.tick(size);
        copied.push(Copied {
            key: keys::blob(&id),
            published,
            rewrite: None,
        });
    }
    for id in &marks.trees {
        // Fetched again after the verified traversal: checked again, so a source that
        // changes underneath (or fails between reads) cannot slip in other bytes.
        let key = keys::tree(id);
        let bytes = src.get(&key).await?;
        let actual = BlobId::of(&bytes);
        if actual != *id {
            return Err(Error::hash_mismatch(&key, id, actual));
        }
        let at = Stamp::now(clock);
        // Created only if absent: a node already here may be garbage a GC run is sweeping
        // right now, so it is stored again once no run may be deleting (a foreign
        // reference that the import can rewrite itself).
        let outcome = dest.put_if_absent(&key, bytes.clone()).await?;
        report.trees += 1;
        tracker.tick(0);
        copied.push(match outcome {
            PutOutcome::Created => Copied {
                key,
                published: Some(at),
                rewrite: None,
            },
            PutOutcome::AlreadyExists => Copied {
                key,
                published: None,
                rewrite: Some(bytes),
            },
        });
    }
    Ok(copied)
}
