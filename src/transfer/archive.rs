//! Reading an export archive (`.tar`) for import, without ever unpacking it to disk as is.
//!
//! Each entry is checked before any of its bytes is used: only regular files (directory
//! entries are skipped) whose name is one an export writes (see [`Entry::classify`]) are
//! accepted; links, devices, FIFOs, absolute or relative-step names and unknown names are
//! refused with [`Error::InvalidPath`]. Blobs are streamed straight into the destination
//! store, verified against their hash on the way in; the small objects (tree nodes,
//! manifest roots, hints, snapshots) are held in memory, at most [`META_MAX`] bytes each
//! and [`META_TOTAL_MAX`] in all. [`ArchiveSource`] then serves both to the ordinary import,
//! which verifies every root and tree node as for any other source.

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::memory::MemoryBackend;
use crate::backend::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::error::{Error, Result};
use crate::hash::{update_hasher, BlobId};
use crate::keys::{self, ObjectKey};
use crate::progress::{ProgressFn, Tracker};

/// The largest tree node, root, hint or snapshot accepted from an archive.
pub const META_MAX: u64 = 64 * 1024 * 1024;
/// The most bytes of such objects one archive may hold.
pub const META_TOTAL_MAX: u64 = 1024 * 1024 * 1024;
/// Blob bytes are read and written in pieces of this size.
const CHUNK: usize = 1024 * 1024;

/// What reading an archive put where.
#[derive(Debug, Default)]
pub(crate) struct Streamed {
    /// Blobs written to the destination store (it did not have them).
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What an archive entry's name says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A content blob.
    Blob(ObjectKey, BlobId),
    /// A blob's outboard: rebuilt by the destination if it wants one, so skipped.
    Outboard,
    /// A tree node, manifest root, hint, published head or snapshot (the import reads
    /// only the roots, trees and snapshots among them).
    Meta(ObjectKey),
}

impl Entry {
    /// Classifies the name of a regular-file entry; [`Error::InvalidPath`] for any name an
    /// export does not write.
    pub fn classify(name: &str) -> Result<Entry> {
        let unexpected = || Error::invalid_path(name, "not a name a segstore export holds");
        // `tar -C dir -cf x.tar .` writes `./blobs/...`.
        let mut rel = name;
        while let Some(rest) = rel.strip_prefix("./") {
            rel = rest;
        }
        let key = ObjectKey::new(rel).map_err(|_| unexpected())?;
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            [top, _, _] if *top == keys::BLOBS_PREFIX.trim_end_matches('/') => {
                if let Some(id) = keys::id_from_key(rel) {
                    if keys::blob(&id) == key {
                        return Ok(Entry::Blob(key, id));
                    }
                }
                match keys::outboard_id_from_key(rel) {
                    Some(id) if keys::outboard(&id) == key => Ok(Entry::Outboard),
                    _ => Err(unexpected()),
                }
            }
            [top, _, _] if *top == keys::TREES_PREFIX.trim_end_matches('/') => {
                match keys::id_from_key(rel) {
                    Some(id) if keys::tree(&id) == key => Ok(Entry::Meta(key)),
                    _ => Err(unexpected()),
                }
            }
            [top, folder, file] if *top == keys::MANIFESTS_PREFIX.trim_end_matches('/') => {
                let named = keys::decode_component(folder).is_some()
                    && (keys::parse_manifest_version(file).is_some()
                        || *file == keys::LATEST_HINT
                        || *file == keys::PUBLISHED_HEAD
                        || *file == keys::BOUNDARY);
                named.then_some(Entry::Meta(key)).ok_or_else(unexpected)
            }
            [top, folder, file] if *top == keys::PINS_PREFIX.trim_end_matches('/') => {
                let named = keys::decode_component(folder).is_some()
                    && keys::decode_component(file).is_some();
                named.then_some(Entry::Meta(key)).ok_or_else(unexpected)
            }
            _ => Err(unexpected()),
        }
    }
}

/// Reads the tar archive at `archive`: blobs into `dest` (verified), everything else into
/// `meta`. Nothing is written anywhere else.
///
/// `progress` counts the archive's entries and its bytes as read from the file (before
/// decompression), of the file's size (0 for stdin: unknown).
pub(crate) async fn read_tar(
    archive: &Path,
    dest: Arc<dyn ObjectBackend>,
    meta: MemoryBackend,
    progress: Option<&ProgressFn>,
) -> Result<Streamed> {
    let read = Arc::new(AtomicU64::new(0));
    let size = match archive == Path::new("-") {
        true => 0,
        false => std::fs::metadata(archive).map_or(0, |m| m.len()),
    };
    // `-` is stdin; `.tar.zst` and `.tar.gz` are decompressed on the way.
    let file = super::compression::open_reader(archive, read.clone())?;
    let runtime = tokio::runtime::Handle::current();
    let shown = archive.display().to_string();
    let progress = progress.cloned();
    tokio::task::spawn_blocking(move || {
        let tracker = Tracker::new(progress.as_ref(), 0, size);
        read_entries(file, &shown, &runtime, &*dest, &meta, &tracker, &read)
    })
    .await
    .map_err(|e| Error::backend("reading a tar archive", e.to_string()))?
}

/// The body of [`read_tar`], on a blocking thread: `runtime` runs the backend calls. Also
/// the body of the `archive_import` fuzz target, over an in-memory archive.
pub(crate) fn read_entries(
    input: impl Read,
    shown: &str,
    runtime: &tokio::runtime::Handle,
    dest: &dyn ObjectBackend,
    meta: &MemoryBackend,
    tracker: &Tracker<'_>,
    read: &AtomicU64,
) -> Result<Streamed> {
    let io = |e: std::io::Error| Error::io(format!("reading archive {shown}"), e);
    let mut tar = tar::Archive::new(input);
    let mut streamed = Streamed::default();
    let mut seen = HashSet::new();
    let mut meta_total = 0u64;
    let mut reported = 0u64;
    for entry in tar.entries().map_err(io)? {
        // Each entry found counts the archive bytes read since the last one.
        let now = read.load(Ordering::Relaxed);
        tracker.found(1, 0);
        tracker.tick(now.saturating_sub(reported));
        reported = now;
        let mut entry = entry.map_err(io)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => {
                return Err(Error::invalid_path(
                    &name,
                    format!("archive entry is a {other:?}; only regular files are imported"),
                ))
            }
        }
        if std::str::from_utf8(&raw).is_err() {
            return Err(Error::invalid_path(
                &name,
                "archive entry name is not UTF-8",
            ));
        }
        let size = entry.header().size().map_err(io)?;
        let what = Entry::classify(&name)?;
        if !seen.insert(name.clone()) {
            return Err(Error::invalid_path(&name, "archive holds this name twice"));
        }
        match what {
            Entry::Outboard => {}
            Entry::Meta(key) => {
                meta_total = meta_total.saturating_add(size);
                if size > META_MAX || meta_total > META_TOTAL_MAX {
                    return Err(Error::CorruptManifest {
                        key: key.to_string(),
                        reason: format!(
                            "archive entry of {size} bytes; manifest objects are at most \
                             {META_MAX} bytes, {META_TOTAL_MAX} in all"
                        ),
                    });
                }
                let mut data = Vec::with_capacity(size as usize);
                (&mut entry).take(size).read_to_end(&mut data).map_err(io)?;
                runtime.block_on(meta.put(&key, Bytes::from(data)))?;
            }
            Entry::Blob(key, id) => {
                if runtime.block_on(dest.head(&key))?.is_some() {
                    continue; // already stored (and verified when it was)
                }
                let upload = runtime.block_on(dest.begin_upload())?;
                let written = stream_blob(&mut entry, upload, &key, &id, runtime, shown);
                streamed.bytes = streamed.bytes.saturating_add(written?);
                streamed.blobs += 1;
            }
        }
    }
    // Read to the end (the zero blocks and record padding after the last entry), so that
    // the bytes reported reach the file's size and a producer on stdin is not cut off.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(io)?;
    tracker.advance(0, read.load(Ordering::Relaxed).saturating_sub(reported));
    Ok(streamed)
}

/// Streams one blob entry into `upload`, publishing it only if its content hashes to `id`.
fn stream_blob(
    entry: &mut impl Read,
    mut upload: Box<dyn Upload>,
    key: &ObjectKey,
    id: &BlobId,
    runtime: &tokio::runtime::Handle,
    shown: &str,
) -> Result<u64> {
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    let result = (|| -> Result<()> {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match entry.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io(format!("reading archive {shown}"), e)),
                }
            }
            if filled == 0 {
                return Ok(());
            }
            buf.truncate(filled);
            total += filled as u64;
            let chunk = Bytes::from(buf);
            update_hasher(&mut hasher, &chunk);
            runtime.block_on(upload.write(chunk))?;
        }
    })();
    let actual = BlobId::from(hasher.finalize());
    match result {
        Ok(()) if actual == *id => {
            runtime.block_on(upload.publish(key))?;
            Ok(total)
        }
        Ok(()) => {
            let _ = runtime.block_on(upload.abort());
            Err(Error::hash_mismatch(key, id, actual))
        }
        Err(e) => {
            let _ = runtime.block_on(upload.abort());
            Err(e)
        }
    }
}

/// An archive as an import source: blobs from the store they were streamed into, the rest
/// from memory. Read-only.
#[derive(Debug)]
pub(crate) struct ArchiveSource {
    pub meta: MemoryBackend,
    pub blobs: Arc<dyn ObjectBackend>,
}

impl ArchiveSource {
    fn route(&self, key: &str) -> &dyn ObjectBackend {
        if key.starts_with(keys::BLOBS_PREFIX) {
            self.blobs.as_ref()
        } else {
            &self.meta
        }
    }
}

fn read_only() -> Error {
    Error::ReadOnly("an archive being imported".into())
}

#[async_trait]
impl ObjectBackend for ArchiveSource {
    fn name(&self) -> &'static str {
        "archive"
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        self.route(key.as_str()).get(key).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        self.route(key.as_str()).get_range(key, range).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.route(key.as_str()).head(key).await
    }

    async fn put(&self, _: &ObjectKey, _: Bytes) -> Result<()> {
        Err(read_only())
    }

    async fn put_if_absent(&self, _: &ObjectKey, _: Bytes) -> Result<PutOutcome> {
        Err(read_only())
    }

    async fn delete(&self, _: &ObjectKey) -> Result<()> {
        Err(read_only())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.route(prefix).list(prefix).await
    }

    async fn touch(&self, _: &ObjectKey) -> Result<()> {
        Err(read_only())
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_an_export_writes_are_accepted() {
        let id = BlobId::of(b"x");
        let hex = id.to_hex();
        let aa = &hex[..2];
        for ok in [
            format!("blobs/{aa}/{hex}"),
            format!("./blobs/{aa}/{hex}"),
            format!("blobs/{aa}/{hex}.obao"),
            format!("trees/{aa}/{hex}"),
            "manifests/books/00000000000000000001".into(),
            "manifests/a%20b/_latest".into(),
            "manifests/books/_boundary".into(),
            "pins/books/first".into(),
        ] {
            assert!(Entry::classify(&ok).is_ok(), "{ok}");
        }
        for bad in [
            "tmp".to_string(),
            "notes.txt".into(),
            format!("blobs/zz/{hex}"),
            format!("blobs/{aa}/{hex}/x"),
            format!("/blobs/{aa}/{hex}"),
            format!("blobs/{aa}/../{hex}"),
            "trees/aa/bb".into(),
            "manifests/books/1".into(),
            "manifests/a b/_latest".into(),
            "manifests/books/../../x".into(),
            "pins/books/%zz".into(),
            "pins/books".into(),
            ".segstore".into(),
            "".into(),
        ] {
            assert!(
                matches!(Entry::classify(&bad), Err(Error::InvalidPath { .. })),
                "{bad}"
            );
        }
    }
}
