//! [`SegmentFile`]: a file resolved once, then read many times without manifest lookups.

use std::ops::Range;

use bytes::Bytes;

use super::Store;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys;
use crate::manifest::FileEntry;
use crate::path::StoragePath;

/// An open file: the manifest entry it had when opened, plus the fastest way to its bytes.
///
/// The handle keeps reading the content it was opened on, even if the path is later
/// renamed, replaced or deleted (blobs are immutable). On local disk the content is a
/// memory map, and [`read_range`](SegmentFile::read_range) returns slices of it without
/// copying or system calls.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    path: StoragePath,
    entry: FileEntry,
    content: Content,
}

#[derive(Debug, Clone)]
enum Content {
    /// Inline in the manifest, or mapped from a local blob.
    Resident(Bytes),
    /// Read by range from the backend.
    Remote(Store),
}

impl Store {
    /// Resolves `path` once and returns a handle for repeated reads. Range reads through
    /// the handle are not verified; [`SegmentFile::read_verified`] is.
    pub async fn open_file(&self, path: &StoragePath) -> Result<SegmentFile> {
        let entry = self
            .entry(path)
            .await?
            .ok_or_else(|| Error::not_found(path))?;
        self.open_entry(path, entry).await
    }

    /// A handle on the content `entry` names, reported under `path`.
    pub async fn open_entry(&self, path: &StoragePath, entry: FileEntry) -> Result<SegmentFile> {
        let content = match &entry.inline {
            Some(data) => Content::Resident(data.clone()),
            None => match self.backend().map(&keys::blob(&entry.id)).await {
                Ok(Some(mapped)) => {
                    if mapped.len() as u64 != entry.size {
                        return Err(Error::Corrupt {
                            object: keys::blob(&entry.id).to_string(),
                            expected: format!("{} ({} bytes)", entry.id, entry.size),
                            actual: format!("{} bytes", mapped.len()),
                        });
                    }
                    Content::Resident(mapped)
                }
                Ok(None) => Content::Remote(self.clone()),
                Err(Error::NotFound { path: key }) => {
                    return Err(Error::Corrupt {
                        object: key,
                        expected: entry.id.to_hex(),
                        actual: "missing blob".into(),
                    })
                }
                Err(e) => return Err(e),
            },
        };
        Ok(SegmentFile {
            path: path.clone(),
            entry,
            content,
        })
    }
}

impl SegmentFile {
    /// The path the file was opened under.
    pub fn path(&self) -> &StoragePath {
        &self.path
    }

    /// Size in bytes; no I/O.
    pub fn len(&self) -> u64 {
        self.entry.size
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.entry.size == 0
    }

    /// BLAKE3 of the content.
    pub fn id(&self) -> BlobId {
        self.entry.id
    }

    /// The manifest entry.
    pub fn entry(&self) -> &FileEntry {
        &self.entry
    }

    /// The whole content without copying, when it is in memory or mapped (local disk).
    pub fn resident(&self) -> Option<&Bytes> {
        match &self.content {
            Content::Resident(b) => Some(b),
            Content::Remote(_) => None,
        }
    }

    /// Reads `range`, unverified. Local and inline content: a zero-copy slice.
    pub async fn read_range(&self, range: Range<u64>) -> Result<Bytes> {
        if range.start > range.end || range.end > self.entry.size {
            return Err(Error::OutOfRange {
                path: self.path.to_string(),
                start: range.start,
                end: range.end,
                size: self.entry.size,
            });
        }
        match &self.content {
            Content::Resident(b) => Ok(b.slice(range.start as usize..range.end as usize)),
            Content::Remote(store) => store.blobs().get_range(&self.entry.id, range).await,
        }
    }

    /// Reads the whole content, verified against the hash.
    pub async fn read_verified(&self) -> Result<Bytes> {
        match &self.content {
            Content::Resident(b) if self.entry.inline.is_some() => Ok(b.clone()),
            Content::Resident(b) => {
                let data = b.clone();
                let actual = tokio::task::spawn_blocking(move || BlobId::of(&data))
                    .await
                    .map_err(|e| Error::backend("hashing a blob", e.to_string()))?;
                if actual != self.entry.id {
                    return Err(Error::Corrupt {
                        object: keys::blob(&self.entry.id).to_string(),
                        expected: self.entry.id.to_hex(),
                        actual: actual.to_hex(),
                    });
                }
                Ok(b.clone())
            }
            Content::Remote(store) => store.read_entry(&self.entry).await,
        }
    }
}
