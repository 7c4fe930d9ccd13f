//! Reading and rewriting the tree under a manifest root: lookups, listings, and building
//! the next version from a set of changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::encoding::{
    decode_any_page, decode_any_shard, encode_page, encode_shard, encode_shard_page, DecodedShard,
};
use super::{FileEntry, ManifestRoot, Page, PageRef, ShardKey, ShardNode, ShardRef};
use crate::backend::ObjectBackend;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys;
use crate::path::StoragePath;

/// A page is split once it holds more entries than this...
const PAGE_MAX_ENTRIES: usize = 1024;
/// ...or once its entries weigh more than this many bytes (names plus inline content).
/// Every commit rewrites the pages it touches, so this bounds a commit's write size.
const PAGE_MAX_WEIGHT: usize = 64 * 1024;
/// Splitting cuts pages at about this many entries or this weight.
const PAGE_TARGET_ENTRIES: usize = 512;
const PAGE_TARGET_WEIGHT: usize = 32 * 1024;

/// At most this many entries are reserved up front from a stored count.
const PREALLOC_MAX: usize = 64 * 1024;

/// Changes to apply to one shard: `Some(entry)` sets a segment, `None` removes it.
pub type ShardChanges = BTreeMap<String, Option<FileEntry>>;

/// Changes to apply to a root, grouped by shard.
pub type Changes = BTreeMap<ShardKey, ShardChanges>;

/// A tree node ready to be stored under `keys::tree(id)`.
#[derive(Debug, Clone)]
pub struct EncodedNode {
    /// The node's content address.
    pub id: BlobId,
    /// Its encoded bytes.
    pub bytes: Bytes,
}

impl EncodedNode {
    fn new(bytes: Bytes) -> Self {
        EncodedNode {
            id: BlobId::of(&bytes),
            bytes,
        }
    }
}

/// Loads tree nodes through a cache. Nodes are immutable, so cached copies never go stale.
#[derive(Debug)]
pub struct Trees {
    backend: Arc<dyn ObjectBackend>,
    shards: quick_cache::sync::Cache<BlobId, Arc<ShardNode>>,
    pages: quick_cache::sync::Cache<BlobId, Arc<Page>>,
    /// Write a shard that fits in one page as one single-page shard object.
    single_page_shards: bool,
}

impl Trees {
    /// A reader over `backend` caching up to `cached_nodes` nodes of each kind.
    pub fn new(backend: Arc<dyn ObjectBackend>, cached_nodes: usize) -> Self {
        Trees {
            backend,
            shards: quick_cache::sync::Cache::new(cached_nodes.max(16)),
            pages: quick_cache::sync::Cache::new(cached_nodes.max(16)),
            single_page_shards: false,
        }
    }

    /// Whether [`apply`](Self::apply) writes a shard that fits in one page as one
    /// single-page shard object instead of a shard node and a page. Both kinds are always
    /// read.
    pub fn with_single_page_shards(mut self, on: bool) -> Self {
        self.single_page_shards = on;
        self
    }

    async fn fetch(&self, id: &BlobId) -> Result<Bytes> {
        let key = keys::tree(id);
        let bytes = self.backend.get(&key).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::CorruptManifest {
                key: key.to_string(),
                reason: "tree node referenced by a manifest is missing".into(),
            },
            other => other,
        })?;
        let actual = BlobId::of(&bytes);
        if actual != *id {
            return Err(Error::hash_mismatch(&key, id, actual));
        }
        Ok(bytes)
    }

    /// Loads a shard node.
    pub async fn shard(&self, id: &BlobId) -> Result<Arc<ShardNode>> {
        if let Some(node) = self.shards.get(id) {
            return Ok(node);
        }
        let bytes = self.fetch(id).await?;
        let node = match decode_any_shard(keys::tree(id).as_str(), &bytes)? {
            DecodedShard::Node(node) => Arc::new(node),
            DecodedShard::Page(page) => {
                let node = Arc::new(single_page_node(id, &page));
                self.pages.insert(*id, Arc::new(page));
                node
            }
        };
        self.shards.insert(*id, node.clone());
        Ok(node)
    }

    /// Encoded copies of `root`'s shard objects that are cached (a single-page shard, or a
    /// shard node and its pages), at most `budget` bytes in all, to attach to a published
    /// head. No I/O: what is not cached is left out, and so is a copy that does not encode
    /// back to its content address (a node written by another encoder).
    pub(crate) fn cached_encodings(&self, root: &ManifestRoot, budget: usize) -> Vec<Bytes> {
        let mut candidates = Vec::new();
        for shard_ref in root.shards.values() {
            let id = shard_ref.node;
            if let Some(page) = self.pages.get(&id) {
                candidates.push((id, encode_shard_page(&page)));
            } else if let Some(node) = self.shards.get(&id) {
                candidates.push((id, encode_shard(&node)));
                for page_ref in &node.pages {
                    if let Some(page) = self.pages.get(&page_ref.page) {
                        candidates.push((page_ref.page, encode_page(&page)));
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut used = 0usize;
        for (id, encoded) in candidates {
            let Ok(bytes) = encoded else { continue };
            if BlobId::of(&bytes) != id || used + bytes.len() > budget {
                continue;
            }
            used += bytes.len();
            out.push(bytes);
        }
        out
    }

    /// Caches encoded tree objects that came with a published head of `root`: a shard
    /// object whose content address `root` references, and the pages an adopted shard node
    /// references. Anything else, or anything that does not decode, is ignored: the objects
    /// are only a shortcut for the GETs that would fetch them.
    pub(crate) fn adopt(&self, root: &ManifestRoot, objects: &[Bytes]) {
        let mut by_id: std::collections::HashMap<BlobId, &Bytes> =
            objects.iter().map(|b| (BlobId::of(b), b)).collect();
        for shard_ref in root.shards.values() {
            let id = shard_ref.node;
            let Some(bytes) = by_id.remove(&id) else {
                continue;
            };
            match decode_any_shard(keys::tree(&id).as_str(), bytes) {
                Ok(DecodedShard::Node(node)) => {
                    for page_ref in &node.pages {
                        let Some(page_bytes) = by_id.remove(&page_ref.page) else {
                            continue;
                        };
                        let key = keys::tree(&page_ref.page);
                        match decode_any_page(key.as_str(), page_bytes) {
                            Ok(page) => self.pages.insert(page_ref.page, Arc::new(page)),
                            Err(e) => tracing::debug!(error = %e, "ignoring an attached page"),
                        }
                    }
                    self.shards.insert(id, Arc::new(node));
                }
                Ok(DecodedShard::Page(page)) => {
                    self.shards
                        .insert(id, Arc::new(single_page_node(&id, &page)));
                    self.pages.insert(id, Arc::new(page));
                }
                Err(e) => tracing::debug!(error = %e, "ignoring an attached shard object"),
            }
        }
    }

    /// Loads a page.
    pub async fn page(&self, id: &BlobId) -> Result<Arc<Page>> {
        if let Some(page) = self.pages.get(id) {
            return Ok(page);
        }
        let bytes = self.fetch(id).await?;
        let page = Arc::new(decode_any_page(keys::tree(id).as_str(), &bytes)?);
        self.pages.insert(*id, page.clone());
        Ok(page)
    }

    /// The entry of `path` at `root`, if any.
    pub async fn lookup(
        &self,
        root: &ManifestRoot,
        path: &StoragePath,
    ) -> Result<Option<FileEntry>> {
        let key = ShardKey {
            backend: path.backend,
            shard: path.shard.clone(),
        };
        self.lookup_in(root, &key, &path.segment).await
    }

    /// The entry of `segment` in shard `key` at `root`, if any.
    pub async fn lookup_in(
        &self,
        root: &ManifestRoot,
        key: &ShardKey,
        segment: &str,
    ) -> Result<Option<FileEntry>> {
        let Some(shard_ref) = root.shards.get(key) else {
            return Ok(None);
        };
        let node = self.shard(&shard_ref.node).await?;
        let Some(idx) = page_index(&node.pages, segment) else {
            return Ok(None);
        };
        let page = self.page(&node.pages[idx].page).await?;
        Ok(page
            .entries
            .binary_search_by(|(s, _)| s.as_str().cmp(segment))
            .ok()
            .map(|i| page.entries[i].1.clone()))
    }

    /// Every path at `root` selected by `prefix` (see `SegmentStorage::list`), sorted.
    pub async fn list(
        &self,
        root: &ManifestRoot,
        prefix: &StoragePath,
    ) -> Result<Vec<StoragePath>> {
        let mut out = Vec::new();
        for (key, shard_ref) in &root.shards {
            if key.backend != prefix.backend
                || (prefix.shard.is_some() && prefix.shard != key.shard)
            {
                continue;
            }
            let node = self.shard(&shard_ref.node).await?;
            let start = page_index(&node.pages, &prefix.segment).unwrap_or(0);
            for page_ref in &node.pages[start..] {
                if !page_ref.first.starts_with(&prefix.segment)
                    && page_ref.first.as_str() > prefix.segment.as_str()
                {
                    break;
                }
                let page = self.page(&page_ref.page).await?;
                out.extend(
                    page.entries
                        .iter()
                        .filter(|(seg, _)| seg.starts_with(&prefix.segment))
                        .map(|(seg, _)| StoragePath {
                            collection: root.collection.clone(),
                            backend: key.backend,
                            shard: key.shard.clone(),
                            segment: seg.clone(),
                        }),
                );
            }
        }
        Ok(out)
    }

    /// Every entry of one shard, in order.
    pub async fn shard_entries(&self, shard_ref: &ShardRef) -> Result<Vec<(String, FileEntry)>> {
        let node = self.shard(&shard_ref.node).await?;
        // The count comes from a root another program may have written: a hint, capped.
        let hint = usize::try_from(shard_ref.files).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(hint.min(PREALLOC_MAX));
        for page_ref in &node.pages {
            out.extend(self.page(&page_ref.page).await?.entries.iter().cloned());
        }
        Ok(out)
    }

    /// Every tree node id reachable from `root` (for GC marking and verification).
    pub async fn node_ids(&self, root: &ManifestRoot) -> Result<Vec<BlobId>> {
        let mut out = Vec::new();
        for shard_ref in root.shards.values() {
            out.push(shard_ref.node);
            let node = self.shard(&shard_ref.node).await?;
            // A single-page shard's page reference names the node itself.
            out.extend(
                node.pages
                    .iter()
                    .map(|p| p.page)
                    .filter(|p| *p != shard_ref.node),
            );
        }
        Ok(out)
    }

    /// Applies `changes` to `base`, returning the new root (with `version = base.version + 1`
    /// and the caller's commit metadata filled in by the caller) and the nodes it needs.
    pub async fn apply(
        &self,
        base: &ManifestRoot,
        changes: &Changes,
    ) -> Result<(BTreeMap<ShardKey, ShardRef>, Vec<EncodedNode>)> {
        let mut shards = base.shards.clone();
        let mut nodes = Vec::new();
        for (key, shard_changes) in changes {
            if shard_changes.is_empty() {
                continue;
            }
            let node = match base.shards.get(key) {
                Some(r) => (*self.shard(&r.node).await?).clone(),
                None => ShardNode::default(),
            };
            let first_new = nodes.len();
            let pages = self.apply_to_shard(node, shard_changes, &mut nodes).await?;
            if pages.is_empty() {
                shards.remove(key);
                continue;
            }
            if let ([only], true) = (pages.as_slice(), self.single_page_shards) {
                // One page, just written: store it as the shard node itself.
                if let Some(pos) = nodes[first_new..].iter().position(|n| n.id == only.page) {
                    nodes.remove(first_new + pos);
                    let page = self.pages.get(&only.page).ok_or_else(|| {
                        Error::backend("building a shard", "a new page left the cache")
                    })?;
                    let encoded = EncodedNode::new(encode_shard_page(&page)?);
                    self.pages.insert(encoded.id, page.clone());
                    self.shards
                        .insert(encoded.id, Arc::new(single_page_node(&encoded.id, &page)));
                    shards.insert(
                        key.clone(),
                        ShardRef {
                            node: encoded.id,
                            files: only.files,
                            bytes: only.bytes,
                        },
                    );
                    nodes.push(encoded);
                    continue;
                }
            }
            let shard_ref = ShardRef {
                node: BlobId::from_bytes([0; 32]),
                files: pages.iter().map(|p| p.files).sum(),
                bytes: pages.iter().map(|p| p.bytes).sum(),
            };
            let node = ShardNode { pages };
            let encoded = EncodedNode::new(encode_shard(&node)?);
            // The next commit starts from these nodes: keep them instead of reading back.
            self.shards.insert(encoded.id, Arc::new(node));
            shards.insert(
                key.clone(),
                ShardRef {
                    node: encoded.id,
                    ..shard_ref
                },
            );
            nodes.push(encoded);
        }
        Ok((shards, nodes))
    }

    async fn apply_to_shard(
        &self,
        node: ShardNode,
        changes: &ShardChanges,
        nodes: &mut Vec<EncodedNode>,
    ) -> Result<Vec<PageRef>> {
        // Which page each change lands in; a shard with no pages gets one empty page.
        let mut by_page: BTreeMap<usize, Vec<(&String, &Option<FileEntry>)>> = BTreeMap::new();
        let old_pages = node.pages;
        for (segment, change) in changes {
            let idx = page_index(&old_pages, segment).unwrap_or(0);
            by_page.entry(idx).or_default().push((segment, change));
        }
        let mut pages = Vec::with_capacity(old_pages.len() + 1);
        let page_count = old_pages.len().max(1);
        for idx in 0..page_count {
            let Some(page_changes) = by_page.get(&idx) else {
                pages.push(old_pages[idx].clone());
                continue;
            };
            let mut entries: BTreeMap<String, FileEntry> = match old_pages.get(idx) {
                Some(r) => self.page(&r.page).await?.entries.iter().cloned().collect(),
                None => BTreeMap::new(),
            };
            for (segment, change) in page_changes {
                match change {
                    Some(entry) => entries.insert((*segment).clone(), entry.clone()),
                    None => entries.remove(*segment),
                };
            }
            for chunk in split_entries(entries.into_iter().collect()) {
                let page_ref = PageRef {
                    first: chunk[0].0.clone(),
                    page: BlobId::from_bytes([0; 32]),
                    files: chunk.len() as u64,
                    bytes: chunk.iter().map(|(_, e)| e.size).sum(),
                };
                let page = Page { entries: chunk };
                let encoded = EncodedNode::new(encode_page(&page)?);
                self.pages.insert(encoded.id, Arc::new(page));
                pages.push(PageRef {
                    page: encoded.id,
                    ..page_ref
                });
                nodes.push(encoded);
            }
        }
        Ok(pages)
    }
}

/// The in-memory node of a single-page shard stored as node `id`: one page reference
/// naming the node itself, so lookups read the page through the page cache as usual.
fn single_page_node(id: &BlobId, page: &Page) -> ShardNode {
    let first = page
        .entries
        .first()
        .map(|(s, _)| s.clone())
        .unwrap_or_default();
    ShardNode {
        pages: vec![PageRef {
            first,
            page: *id,
            files: page.entries.len() as u64,
            bytes: page
                .entries
                .iter()
                .fold(0u64, |n, (_, e)| n.saturating_add(e.size)),
        }],
    }
}

/// The page that holds (or would hold) `segment`: the last page whose `first` is not
/// greater than it, or the first page for names before every `first`.
fn page_index(pages: &[PageRef], segment: &str) -> Option<usize> {
    if pages.is_empty() {
        return None;
    }
    let after = pages.partition_point(|p| p.first.as_str() <= segment);
    Some(after.saturating_sub(1))
}

fn entry_weight(segment: &str, entry: &FileEntry) -> usize {
    segment.len() + 48 + entry.inline.as_ref().map_or(0, |b| b.len())
}

/// Cuts sorted entries into pages; small enough input stays one page, empty input none.
fn split_entries(entries: Vec<(String, FileEntry)>) -> Vec<Vec<(String, FileEntry)>> {
    let total_weight: usize = entries.iter().map(|(s, e)| entry_weight(s, e)).sum();
    if entries.is_empty() {
        return Vec::new();
    }
    if entries.len() <= PAGE_MAX_ENTRIES && total_weight <= PAGE_MAX_WEIGHT {
        return vec![entries];
    }
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut weight = 0;
    for (segment, entry) in entries {
        weight += entry_weight(&segment, &entry);
        current.push((segment, entry));
        if current.len() >= PAGE_TARGET_ENTRIES || weight >= PAGE_TARGET_WEIGHT {
            out.push(std::mem::take(&mut current));
            weight = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::path::StorageBackend;

    fn key() -> ShardKey {
        ShardKey {
            backend: StorageBackend::Tantivy,
            shard: Some("s".into()),
        }
    }

    /// Stores `nodes` and returns the root they complete.
    async fn commit(
        trees: &Trees,
        backend: &MemoryBackend,
        root: &ManifestRoot,
        changes: Changes,
    ) -> ManifestRoot {
        let (shards, nodes) = trees.apply(root, &changes).await.unwrap();
        for n in nodes {
            backend.put(&keys::tree(&n.id), n.bytes).await.unwrap();
        }
        ManifestRoot {
            shards,
            version: root.version + 1,
            ..root.clone()
        }
    }

    #[tokio::test]
    async fn a_shard_written_as_node_and_page_is_read_and_rewritten_as_one_object() {
        // The bytes of a one-page shard as builds before single-page shards wrote them:
        // a shard node (kind 2) and its page (kind 3).
        let backend = Arc::new(MemoryBackend::new());
        let entry = FileEntry::blob(BlobId::of(b"old"), 3);
        let page = Page {
            entries: vec![("old.bin".to_owned(), entry.clone())],
        };
        let page_bytes = encode_page(&page).unwrap();
        let page_id = BlobId::of(&page_bytes);
        let node = ShardNode {
            pages: vec![PageRef {
                first: "old.bin".into(),
                page: page_id,
                files: 1,
                bytes: 3,
            }],
        };
        let node_bytes = encode_shard(&node).unwrap();
        let node_id = BlobId::of(&node_bytes);
        assert_eq!(node_bytes[6], 2, "an old-format shard node");
        backend
            .put(&keys::tree(&page_id), page_bytes)
            .await
            .unwrap();
        backend
            .put(&keys::tree(&node_id), node_bytes)
            .await
            .unwrap();
        let mut root = ManifestRoot::empty("c");
        root.version = 1;
        root.shards.insert(
            key(),
            ShardRef {
                node: node_id,
                files: 1,
                bytes: 3,
            },
        );

        let trees = Trees::new(backend.clone(), 1024).with_single_page_shards(true);
        assert_eq!(
            trees.lookup_in(&root, &key(), "old.bin").await.unwrap(),
            Some(entry.clone())
        );
        assert_eq!(trees.node_ids(&root).await.unwrap(), vec![node_id, page_id]);

        // A commit onto it writes one single-page shard object holding both entries.
        let new = FileEntry::inline(Bytes::from_static(b"new"));
        let changes = Changes::from([(
            key(),
            ShardChanges::from([("new.txt".into(), Some(new.clone()))]),
        )]);
        let (shards, nodes) = trees.apply(&root, &changes).await.unwrap();
        assert_eq!(nodes.len(), 1, "one tree object per small shard");
        assert_eq!(nodes[0].bytes[6], 6, "a single-page shard");
        assert_eq!(shards[&key()].node, nodes[0].id);
        for n in nodes {
            backend.put(&keys::tree(&n.id), n.bytes).await.unwrap();
        }
        let next = ManifestRoot {
            shards,
            version: 2,
            ..root.clone()
        };
        // Read back by a reader with nothing cached, through both page and shard paths.
        let cold = Trees::new(backend.clone(), 16).with_single_page_shards(true);
        assert_eq!(
            cold.lookup_in(&next, &key(), "old.bin").await.unwrap(),
            Some(entry)
        );
        assert_eq!(
            cold.lookup_in(&next, &key(), "new.txt").await.unwrap(),
            Some(new)
        );
        assert_eq!(
            cold.node_ids(&next).await.unwrap(),
            vec![next.shards[&key()].node]
        );
        let listed = cold
            .list(
                &next,
                &StoragePath::new("c", StorageBackend::Tantivy, "s", ""),
            )
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);

        // Grown past one page, it becomes a shard node with pages again.
        let mut big = ShardChanges::new();
        for i in 0..1500u64 {
            big.insert(
                format!("f{i:05}"),
                Some(FileEntry::blob(BlobId::of(&i.to_le_bytes()), i)),
            );
        }
        let grown = commit(&cold, &backend, &next, Changes::from([(key(), big)])).await;
        let fresh = Trees::new(backend.clone(), 16);
        let node = fresh.shard(&grown.shards[&key()].node).await.unwrap();
        assert!(node.pages.len() > 1);
        assert_eq!(grown.file_count(), 1502);
        assert!(fresh
            .lookup_in(&grown, &key(), "new.txt")
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn many_entries_split_into_pages_and_stay_findable() {
        let backend = Arc::new(MemoryBackend::new());
        let trees = Trees::new(backend.clone(), 1024);
        let mut root = ManifestRoot::empty("c");
        let mut model = BTreeMap::new();
        for round in 0..5u64 {
            let mut shard = ShardChanges::new();
            for i in 0..1500u64 {
                let seg = format!("f{:05}", (i * 7919 + round * 13) % 5000);
                let change = if (i + round) % 5 == 0 {
                    None
                } else {
                    Some(FileEntry::blob(BlobId::of(seg.as_bytes()), i))
                };
                model.insert(seg.clone(), change.clone());
                shard.insert(seg, change);
            }
            let changes = Changes::from([(key(), shard)]);
            let (shards, nodes) = trees.apply(&root, &changes).await.unwrap();
            for n in nodes {
                backend.put(&keys::tree(&n.id), n.bytes).await.unwrap();
            }
            root.shards = shards;
            root.version += 1;
        }
        let node = trees.shard(&root.shards[&key()].node).await.unwrap();
        assert!(
            node.pages.len() > 1,
            "expected a split, got {} pages",
            node.pages.len()
        );
        let live: Vec<_> = model.iter().filter(|(_, v)| v.is_some()).collect();
        assert_eq!(root.file_count(), live.len() as u64);
        for (seg, change) in &model {
            let found = trees.lookup_in(&root, &key(), seg).await.unwrap();
            assert_eq!(&found, change, "{seg}");
        }
        let prefix = StoragePath::new("c", StorageBackend::Tantivy, "s", "f01");
        let listed = trees.list(&root, &prefix).await.unwrap();
        let expected: Vec<_> = live
            .iter()
            .filter(|(s, _)| s.starts_with("f01"))
            .map(|(s, _)| s.to_string())
            .collect();
        let got: Vec<_> = listed.into_iter().map(|p| p.segment).collect();
        assert_eq!(got, expected);
    }

    /// What a writer attaches to its published head, a cold reader adopts: lookups then
    /// need no tree GET. Objects the root does not reference, and damaged copies (their
    /// address changes with their bytes), are ignored.
    #[tokio::test]
    async fn attached_shard_objects_are_adopted_only_when_the_root_references_them() {
        let backend = MemoryBackend::new();
        for single_page in [true, false] {
            let writer =
                Trees::new(Arc::new(backend.clone()), 1024).with_single_page_shards(single_page);
            let entry = FileEntry::inline(Bytes::from_static(b"data"));
            let changes = Changes::from([(
                key(),
                ShardChanges::from([("a.bin".to_owned(), Some(entry.clone()))]),
            )]);
            let root = commit(&writer, &backend, &ManifestRoot::empty("c"), changes).await;
            let attached = writer.cached_encodings(&root, 64 * 1024);
            assert_eq!(attached.len(), if single_page { 1 } else { 2 });

            // A reader over an empty backend can only answer from what it adopted.
            let empty: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
            let cold = Trees::new(empty.clone(), 1024);
            let mut damaged = attached[0].to_vec();
            let last = damaged.len() - 1;
            damaged[last] ^= 1;
            cold.adopt(&root, &[Bytes::from(damaged), Bytes::from_static(b"junk")]);
            assert!(cold.lookup_in(&root, &key(), "a.bin").await.is_err());

            let cold = Trees::new(empty, 1024);
            cold.adopt(&root, &attached);
            assert_eq!(
                cold.lookup_in(&root, &key(), "a.bin").await.unwrap(),
                Some(entry)
            );
            // Nothing fits a budget smaller than the objects: none is attached.
            assert!(writer.cached_encodings(&root, 8).is_empty());
        }
    }
}
