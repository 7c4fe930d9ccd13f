//! `stats`: logical against physical size, blob and version counts.

use crate::error::Result;
use crate::keys;
use crate::store::Store;

/// Figures for one collection at its latest version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionStats {
    /// The collection.
    pub name: String,
    /// Its latest version.
    pub latest_version: u64,
    /// Manifest versions currently stored.
    pub versions: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Files at the latest version.
    pub files: u64,
    /// Bytes of those files.
    pub logical_bytes: u64,
}

/// Figures for a whole store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Per collection.
    pub collections: Vec<CollectionStats>,
    /// Logical bytes over every collection's latest version.
    pub logical_bytes: u64,
    /// Content blobs stored.
    pub blobs: u64,
    /// Bytes of those blobs.
    pub physical_bytes: u64,
    /// Tree nodes stored.
    pub tree_nodes: u64,
    /// Bytes of those nodes.
    pub tree_bytes: u64,
}

impl StoreStats {
    /// Logical over physical bytes: how much deduplication (and inlining) saves.
    pub fn dedup_ratio(&self) -> f64 {
        if self.physical_bytes == 0 {
            return 1.0;
        }
        self.logical_bytes as f64 / self.physical_bytes as f64
    }
}

impl Store {
    /// Counts what the store holds.
    pub async fn stats(&self) -> Result<StoreStats> {
        let mut stats = StoreStats::default();
        for name in self.collections().await? {
            let head = self.refresh(&name).await?;
            let c = CollectionStats {
                latest_version: head.version,
                versions: self.versions(&name).await?.len() as u64,
                snapshots: self.snapshots(&name).await?.len() as u64,
                files: head.file_count(),
                logical_bytes: head.total_bytes(),
                name,
            };
            stats.logical_bytes += c.logical_bytes;
            stats.collections.push(c);
        }
        for meta in self.backend().list(keys::BLOBS_PREFIX).await? {
            stats.physical_bytes += meta.size;
            if keys::outboard_id_from_key(meta.key.as_str()).is_some() {
                continue; // an outboard, not a blob of its own
            }
            stats.blobs += 1;
        }
        for meta in self.backend().list(keys::TREES_PREFIX).await? {
            stats.tree_nodes += 1;
            stats.tree_bytes += meta.size;
        }
        Ok(stats)
    }
}
