//! Differences between two versions of a collection.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::manifest::{FileEntry, ManifestRoot, ShardKey};
use crate::path::StoragePath;
use crate::snapshot::Target;
use crate::store::Store;

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// The path.
    pub path: StoragePath,
    /// Its entry in the older version, if any.
    pub before: Option<FileEntry>,
    /// Its entry in the newer version, if any.
    pub after: Option<FileEntry>,
}

/// What changed between two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Paths only in the second version.
    pub added: Vec<DiffEntry>,
    /// Paths only in the first version.
    pub removed: Vec<DiffEntry>,
    /// Paths in both, with different content.
    pub changed: Vec<DiffEntry>,
}

impl Diff {
    /// True when the versions hold the same files.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Store {
    /// The paths added, removed and changed from `from` to `to` in `collection`.
    pub async fn diff(&self, collection: &str, from: &Target, to: &Target) -> Result<Diff> {
        let a = self.resolve_target(collection, from).await?;
        let b = self.resolve_target(collection, to).await?;
        let (a, b) = (
            self.root_at(collection, a).await?,
            self.root_at(collection, b).await?,
        );
        self.diff_roots(&a, &b).await
    }

    /// The differences between two roots of one collection.
    pub async fn diff_roots(&self, a: &ManifestRoot, b: &ManifestRoot) -> Result<Diff> {
        let mut diff = Diff::default();
        let keys: std::collections::BTreeSet<&ShardKey> =
            a.shards.keys().chain(b.shards.keys()).collect();
        for key in keys {
            let (ra, rb) = (a.shards.get(key), b.shards.get(key));
            if ra.map(|r| r.node) == rb.map(|r| r.node) {
                continue; // identical shard tree
            }
            let ea: BTreeMap<String, FileEntry> = match ra {
                Some(r) => self.trees().shard_entries(r).await?.into_iter().collect(),
                None => BTreeMap::new(),
            };
            let mut eb: BTreeMap<String, FileEntry> = match rb {
                Some(r) => self.trees().shard_entries(r).await?.into_iter().collect(),
                None => BTreeMap::new(),
            };
            let path = |segment: &str| StoragePath {
                collection: b.collection.clone(),
                backend: key.backend,
                shard: key.shard.clone(),
                segment: segment.to_owned(),
            };
            for (segment, before) in ea {
                match eb.remove(&segment) {
                    None => diff.removed.push(DiffEntry {
                        path: path(&segment),
                        before: Some(before),
                        after: None,
                    }),
                    Some(after) if !after.same_content(&before) => diff.changed.push(DiffEntry {
                        path: path(&segment),
                        before: Some(before),
                        after: Some(after),
                    }),
                    Some(_) => {}
                }
            }
            for (segment, after) in eb {
                diff.added.push(DiffEntry {
                    path: path(&segment),
                    before: None,
                    after: Some(after),
                });
            }
        }
        for list in [&mut diff.added, &mut diff.removed, &mut diff.changed] {
            list.sort_by(|x, y| x.path.cmp(&y.path));
        }
        Ok(diff)
    }
}
