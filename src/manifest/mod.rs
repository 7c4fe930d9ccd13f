//! Manifests: which blob each path of a collection names, at each version.
//!
//! A version is a small **root** object (`manifests/<collection>/<N>`) created put-if-absent;
//! that create is the commit point. The root maps each (backend, shard) to a content
//! addressed **shard node**, which lists **pages** of sorted `segment -> FileEntry` entries.
//! A commit rewrites only the pages it touches, their shard nodes, and one root, so its
//! cost does not grow with the collection (see `docs/ARCHITECTURE.md`).

pub(crate) mod encoding;
pub mod head;
mod note;
pub mod tree;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::hash::BlobId;
use crate::path::StorageBackend;

pub use crate::commit_id::CommitId;
pub use encoding::{decode_root, decode_snapshot, encode_root, encode_snapshot, FORMAT_VERSION};
pub use note::{CommitNote, MAX_NOTE_BYTES};

/// Files up to this size are stored inside the manifest page instead of as blobs: it saves
/// a request per small file (`meta.json`, `.del` files) on object stores.
pub const INLINE_MAX: usize = 4096;

/// What a manifest records for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// BLAKE3 of the file's bytes.
    pub id: BlobId,
    /// Size in bytes.
    pub size: u64,
    /// The bytes themselves for files of at most [`INLINE_MAX`] bytes; `None` means the
    /// content is the blob named `id`.
    pub inline: Option<Bytes>,
}

impl FileEntry {
    /// An entry pointing at a blob.
    pub fn blob(id: BlobId, size: u64) -> Self {
        FileEntry {
            id,
            size,
            inline: None,
        }
    }

    /// An entry holding small content inline.
    pub fn inline(data: Bytes) -> Self {
        FileEntry {
            id: BlobId::of(&data),
            size: data.len() as u64,
            inline: Some(data),
        }
    }

    /// True when two entries name the same content (inline or not).
    pub fn same_content(&self, other: &FileEntry) -> bool {
        self.id == other.id && self.size == other.size
    }
}

/// Identifies one shard tree inside a root: the backend plus the optional shard name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardKey {
    /// The index kind.
    pub backend: StorageBackend,
    /// The shard, or `None` for unsharded files.
    pub shard: Option<String>,
}

/// A root's reference to one shard node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    /// The content address of the [`ShardNode`].
    pub node: BlobId,
    /// Number of files in the shard.
    pub files: u64,
    /// Sum of the files' sizes.
    pub bytes: u64,
}

/// Manifest version `version` of one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRoot {
    /// The collection's name.
    pub collection: String,
    /// This version's number; 1 for the first commit.
    pub version: u64,
    /// The commit attempt that created this version.
    pub commit_id: CommitId,
    /// Wall-clock time of the commit, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// One entry per non-empty (backend, shard).
    pub shards: BTreeMap<ShardKey, ShardRef>,
    /// The commit's message and metadata, if it was given any. Encoded after the other
    /// fields, only when present (see `encode_root`).
    #[serde(skip)]
    pub note: Option<CommitNote>,
}

impl ManifestRoot {
    /// The state before the first commit: version 0, no files. Never stored.
    pub fn empty(collection: &str) -> Self {
        ManifestRoot {
            collection: collection.to_owned(),
            version: 0,
            commit_id: CommitId([0; 16]),
            timestamp_ms: 0,
            shards: BTreeMap::new(),
            note: None,
        }
    }

    /// Number of files at this version.
    pub fn file_count(&self) -> u64 {
        // Saturating: a damaged or hostile root that passed its checksum must not make
        // this panic (debug builds) or wrap around.
        self.shards
            .values()
            .fold(0, |n, s| n.saturating_add(s.files))
    }

    /// Total logical bytes at this version.
    pub fn total_bytes(&self) -> u64 {
        self.shards
            .values()
            .fold(0, |n, s| n.saturating_add(s.bytes))
    }
}

/// The list of pages of one shard, sorted by first segment name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ShardNode {
    /// Pages in key order. Page `i` holds the segments in `[pages[i].first, pages[i+1].first)`;
    /// the first page also holds everything before its `first`.
    pub pages: Vec<PageRef>,
}

/// A shard node's reference to one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    /// The smallest segment name in the page.
    pub first: String,
    /// The content address of the [`Page`].
    pub page: BlobId,
    /// Number of entries in the page.
    pub files: u64,
    /// Sum of the entries' sizes.
    pub bytes: u64,
}

/// Sorted entries of one shard, a bounded slice of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Page {
    /// `(segment, entry)` pairs sorted by segment, without duplicates.
    pub entries: Vec<(String, FileEntry)>,
}

/// A named pin of one manifest version: kept by retention and GC until deleted or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The collection.
    pub collection: String,
    /// The snapshot's name, unique within the collection.
    pub name: String,
    /// The pinned version.
    pub version: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Expiry time, milliseconds since the Unix epoch; `None` pins until deleted.
    pub expires_ms: Option<u64>,
}

impl Snapshot {
    /// True when the snapshot has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }
}
