//! Finding what a sync must send: a walk of the source tree that prunes every subtree the
//! destination's current state already holds (same content address), so its cost is
//! proportional to the change, not to the collection.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::hash::BlobId;
use crate::manifest::tree::Trees;
use crate::manifest::ManifestRoot;

/// The objects of a source version that its base does not reference.
#[derive(Debug, Default)]
pub(crate) struct Needed {
    /// Content blobs and their sizes, in the order found.
    pub blobs: Vec<(BlobId, u64)>,
    /// Tree nodes, children before their parents.
    pub trees: Vec<BlobId>,
    seen_blobs: HashSet<BlobId>,
    seen_trees: HashSet<BlobId>,
}

impl Needed {
    /// Total bytes of the blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().fold(0, |n, (_, s)| n.saturating_add(*s))
    }

    /// Adds what `target` references and `base` does not. `src` reads the target's nodes,
    /// `base_trees` the base's (the destination's store, or the source's for a base that
    /// is an earlier source version: nodes are content-addressed, so either gives the
    /// same bytes).
    pub async fn add_diff(
        &mut self,
        src: &Trees,
        base_trees: &Trees,
        target: &ManifestRoot,
        base: &ManifestRoot,
    ) -> Result<()> {
        for (key, shard_ref) in &target.shards {
            let base_ref = base.shards.get(key);
            if base_ref.is_some_and(|b| b.node == shard_ref.node)
                || self.seen_trees.contains(&shard_ref.node)
            {
                continue;
            }
            let node = src.shard(&shard_ref.node).await?;
            // What the base's version of this shard holds: its pages, and the blobs of
            // the pages that differ from the target's (where a changed page's unchanged
            // entries live).
            let mut base_pages = HashSet::new();
            let mut base_blobs = HashMap::new();
            if let Some(b) = base_ref {
                let base_node = base_trees.shard(&b.node).await?;
                let target_pages: HashSet<BlobId> = node.pages.iter().map(|p| p.page).collect();
                for page_ref in &base_node.pages {
                    base_pages.insert(page_ref.page);
                    if !target_pages.contains(&page_ref.page) {
                        let page = base_trees.page(&page_ref.page).await?;
                        for (_, entry) in &page.entries {
                            base_blobs.insert(entry.id, entry.size);
                        }
                    }
                }
            }
            for page_ref in &node.pages {
                if base_pages.contains(&page_ref.page) || self.seen_trees.contains(&page_ref.page) {
                    continue;
                }
                let page = src.page(&page_ref.page).await?;
                for (_, entry) in &page.entries {
                    if entry.inline.is_some() || base_blobs.get(&entry.id) == Some(&entry.size) {
                        continue;
                    }
                    if self.seen_blobs.insert(entry.id) {
                        self.blobs.push((entry.id, entry.size));
                    }
                }
                self.seen_trees.insert(page_ref.page);
                self.trees.push(page_ref.page);
            }
            self.seen_trees.insert(shard_ref.node);
            self.trees.push(shard_ref.node);
        }
        Ok(())
    }
}
