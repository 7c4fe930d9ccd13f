//! Walking manifests to find every object they reference (GC's mark phase, verify).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::manifest::ManifestRoot;
use crate::store::Store;

/// Everything a set of roots references.
#[derive(Debug, Default)]
pub struct Marks {
    /// Content blobs, with their expected size.
    pub blobs: HashMap<BlobId, u64>,
    /// Tree nodes (shard nodes and pages).
    pub trees: HashSet<BlobId>,
    /// Logical bytes of the files visited (each root's files counted).
    pub logical_bytes: u64,
}

impl Marks {
    /// Adds everything `root` references. Nodes already visited (shared with an earlier
    /// root, which is the common case between versions) are not walked again.
    pub async fn add_root(&mut self, store: &Store, root: &ManifestRoot) -> Result<()> {
        self.logical_bytes += root.total_bytes();
        for shard_ref in root.shards.values() {
            if !self.trees.insert(shard_ref.node) {
                continue;
            }
            let node = store.trees().shard(&shard_ref.node).await?;
            for page_ref in &node.pages {
                // A single-page shard's page reference names the node itself, which was
                // just inserted: its entries must still be walked.
                if !self.trees.insert(page_ref.page) && page_ref.page != shard_ref.node {
                    continue;
                }
                let page = store.trees().page(&page_ref.page).await?;
                for (_, entry) in &page.entries {
                    if entry.inline.is_none() {
                        self.blobs.insert(entry.id, entry.size);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Store {
    /// Every collection with at least one manifest version, by name.
    pub async fn collections(&self) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for meta in self.backend().list(crate::keys::MANIFESTS_PREFIX).await? {
            let mut parts = meta.key.as_str().split('/');
            let (Some(_), Some(encoded)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let Some(name) = crate::keys::decode_component(encoded) {
                names.insert(name);
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The version numbers of `collection` that exist now, ascending.
    pub async fn versions(&self, collection: &str) -> Result<Vec<(u64, std::time::SystemTime)>> {
        crate::path::validate_name(collection)?;
        let mut out: Vec<_> = self
            .backend()
            .list(&crate::keys::manifest_prefix(collection))
            .await?
            .into_iter()
            .filter_map(|m| {
                crate::keys::parse_manifest_version(m.key.file_name()).map(|v| (v, m.last_modified))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Loads a root that a listing showed, tolerating its deletion in the meantime.
    pub(crate) async fn root_if_present(
        &self,
        collection: &str,
        version: u64,
    ) -> Result<Option<ManifestRoot>> {
        match self.root_at(collection, version).await {
            Ok(root) => Ok(Some(root)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
