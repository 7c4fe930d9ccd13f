//! The byte envelope around every manifest object. Layout (see `docs/FORMAT.md`):
//!
//! ```text
//! magic     4 bytes  "SGSM"
//! version   u16 LE   format version, currently 1
//! kind      u8       1 = root, 2 = shard node, 3 = page, 4 = snapshot, 5 = GC epoch,
//!                    6 = single-page shard (a page that is its own shard node)
//! payload   postcard encoding of the object
//! checksum  32 bytes BLAKE3 of every byte before it
//! ```
//!
//! Decoding checks every field before postcard sees the payload, and postcard itself
//! returns errors rather than panicking on arbitrary bytes, so garbage in is a typed
//! [`Error::CorruptManifest`] out. A decoded object is then checked for internal
//! consistency ([`Consistent`]: valid names, sorted unique keys, inline lengths equal to
//! sizes, sums that fit in a `u64`), once, so that nothing past decoding can panic on what
//! another program wrote into a bucket or an archive.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ManifestRoot, Page, ShardNode, Snapshot};
use crate::error::{Error, Result};
use crate::path::check_component;

/// What a decoded object must satisfy beyond its types; the reason when it does not.
pub(crate) trait Consistent {
    fn check(&self) -> std::result::Result<(), String>;
}

/// Sums `values`, or says which sum overflows.
fn sum(what: &str, mut values: impl Iterator<Item = u64>) -> std::result::Result<u64, String> {
    values
        .try_fold(0u64, |acc, v| acc.checked_add(v))
        .ok_or_else(|| format!("{what} add up to more than 2^64"))
}

fn name(what: &str, value: &str) -> std::result::Result<(), String> {
    check_component(value).map_err(|reason| format!("{what} {value:?}: {reason}"))
}

impl Consistent for ManifestRoot {
    fn check(&self) -> std::result::Result<(), String> {
        name("collection", &self.collection)?;
        for key in self.shards.keys() {
            if let Some(shard) = &key.shard {
                name("shard", shard)?;
            }
        }
        sum("shard file counts", self.shards.values().map(|s| s.files))?;
        sum("shard sizes", self.shards.values().map(|s| s.bytes))?;
        Ok(())
    }
}

impl Consistent for ShardNode {
    fn check(&self) -> std::result::Result<(), String> {
        for page in &self.pages {
            name("page start", &page.first)?;
        }
        if let Some(w) = self.pages.windows(2).find(|w| w[0].first >= w[1].first) {
            return Err(format!(
                "pages out of order: {:?} before {:?}",
                w[0].first, w[1].first
            ));
        }
        sum("page file counts", self.pages.iter().map(|p| p.files))?;
        sum("page sizes", self.pages.iter().map(|p| p.bytes))?;
        Ok(())
    }
}

impl Consistent for Page {
    fn check(&self) -> std::result::Result<(), String> {
        for (segment, entry) in &self.entries {
            name("segment", segment)?;
            if let Some(data) = &entry.inline {
                if data.len() as u64 != entry.size {
                    return Err(format!(
                        "segment {segment:?} has {} inline bytes but size {}",
                        data.len(),
                        entry.size
                    ));
                }
            }
        }
        if let Some(w) = self.entries.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "entries not sorted and unique: {:?} before {:?}",
                w[0].0, w[1].0
            ));
        }
        sum("file sizes", self.entries.iter().map(|(_, e)| e.size))?;
        Ok(())
    }
}

impl Consistent for Snapshot {
    fn check(&self) -> std::result::Result<(), String> {
        name("collection", &self.collection)?;
        name("snapshot name", &self.name)
    }
}

/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"SGSM";
const HEADER_LEN: usize = 4 + 2 + 1;
const CHECKSUM_LEN: usize = 32;

/// Which object an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Root = 1,
    ShardNode = 2,
    Page = 3,
    Snapshot = 4,
    GcEpoch = 5,
    /// A shard whose one page is stored as the shard node itself (payload: a [`Page`]):
    /// a small shard costs one object per commit instead of a node and a page.
    ShardPage = 6,
    /// A published head with the shard objects a cold reader needs next (payload: a
    /// [`HeadBundle`]).
    HeadBundle = 7,
}

fn header(kind: Kind) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out
}

fn seal(mut out: Vec<u8>) -> Bytes {
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    Bytes::from(out)
}

pub(crate) fn encode<T: Serialize>(kind: Kind, value: &T) -> Result<Bytes> {
    let out = postcard::to_extend(value, header(kind))
        .map_err(|e| Error::backend("encoding a manifest", e.to_string()))?;
    Ok(seal(out))
}

/// A well-formed envelope around arbitrary payload bytes, so that the fuzzer reaches
/// postcard instead of stopping at the checksum.
pub(crate) fn envelope(kind: Kind, payload: &[u8]) -> Bytes {
    let mut out = header(kind);
    out.extend_from_slice(payload);
    seal(out)
}

pub(crate) fn decode<T: DeserializeOwned + Consistent>(
    key: &str,
    kind: Kind,
    bytes: &[u8],
) -> Result<T> {
    let (value, rest) = decode_prefix::<T>(key, kind, bytes)?;
    if !rest.is_empty() {
        return Err(corrupt_at(
            key,
            format!("{} trailing bytes after payload", rest.len()),
        ));
    }
    Ok(value)
}

fn corrupt_at(key: &str, reason: String) -> Error {
    Error::CorruptManifest {
        key: key.to_owned(),
        reason,
    }
}

/// Checks the envelope and decodes `T` from the start of its payload; returns the rest.
fn decode_prefix<'a, T: DeserializeOwned + Consistent>(
    key: &str,
    kind: Kind,
    bytes: &'a [u8],
) -> Result<(T, &'a [u8])> {
    let corrupt = |reason: String| Error::CorruptManifest {
        key: key.to_owned(),
        reason,
    };
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(corrupt(format!("truncated: only {} bytes", bytes.len())));
    }
    if &bytes[..4] != MAGIC {
        return Err(corrupt("not a segstore manifest (bad magic)".into()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version}, but this build reads only version {FORMAT_VERSION}"
        )));
    }
    if bytes[6] != kind as u8 {
        return Err(corrupt(format!(
            "holds object kind {}, expected {}",
            bytes[6], kind as u8
        )));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(corrupt("checksum mismatch (truncated or damaged)".into()));
    }
    let (value, rest) = postcard::take_from_bytes::<T>(&body[HEADER_LEN..])
        .map_err(|e| corrupt(format!("undecodable payload: {e}")))?;
    value
        .check()
        .map_err(|reason| corrupt(format!("inconsistent: {reason}")))?;
    Ok((value, rest))
}

/// Encodes a manifest root.
/// A root's [`CommitNote`](super::CommitNote), if any, follows its payload.
pub fn encode_root(root: &ManifestRoot) -> Result<Bytes> {
    let encoding = |e: postcard::Error| Error::backend("encoding a manifest", e.to_string());
    let out = postcard::to_extend(root, header(Kind::Root)).map_err(encoding)?;
    let out = match &root.note {
        None => out,
        Some(note) => {
            note.check().map_err(Error::InvalidConfig)?;
            postcard::to_extend(note, out).map_err(encoding)?
        }
    };
    Ok(seal(out))
}

/// Decodes a manifest root read from `key`.
pub fn decode_root(key: &str, bytes: &[u8]) -> Result<ManifestRoot> {
    let (mut root, rest) = decode_prefix::<ManifestRoot>(key, Kind::Root, bytes)?;
    if !rest.is_empty() {
        let (note, after) = postcard::take_from_bytes::<super::CommitNote>(rest)
            .map_err(|e| corrupt_at(key, format!("undecodable commit note: {e}")))?;
        if !after.is_empty() {
            return Err(corrupt_at(
                key,
                format!("{} trailing bytes after the commit note", after.len()),
            ));
        }
        note.check()
            .map_err(|r| corrupt_at(key, format!("inconsistent commit note: {r}")))?;
        root.note = Some(note);
    }
    Ok(root)
}

/// What `_head` holds when a writer attaches tree objects to the root it publishes: the
/// root's exact encoded bytes, then encoded shard objects (single-page shards, shard nodes
/// and pages) that it references, each checked by its content address when read.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeadBundle {
    pub(crate) root: Bytes,
    pub(crate) nodes: Vec<Bytes>,
}

impl Consistent for HeadBundle {
    // The root and each node are decoded and checked on their own.
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Encodes what `_head` holds: the root alone (as every build writes and reads it) when
/// there is nothing to attach, else a [`HeadBundle`].
pub(crate) fn encode_published(root: &ManifestRoot, nodes: Vec<Bytes>) -> Result<Bytes> {
    let root = encode_root(root)?;
    if nodes.is_empty() {
        return Ok(root);
    }
    encode(Kind::HeadBundle, &HeadBundle { root, nodes })
}

/// Decodes `_head`: a root alone, or a [`HeadBundle`] (its root and attached objects).
pub(crate) fn decode_published(key: &str, bytes: &[u8]) -> Result<(ManifestRoot, Vec<Bytes>)> {
    if bytes.len() > 6 && bytes[6] == Kind::HeadBundle as u8 {
        let bundle: HeadBundle = decode(key, Kind::HeadBundle, bytes)?;
        return Ok((decode_root(key, &bundle.root)?, bundle.nodes));
    }
    Ok((decode_root(key, bytes)?, Vec::new()))
}

pub(crate) fn encode_shard(node: &ShardNode) -> Result<Bytes> {
    encode(Kind::ShardNode, node)
}

pub(crate) fn decode_shard(key: &str, bytes: &[u8]) -> Result<ShardNode> {
    decode(key, Kind::ShardNode, bytes)
}

/// Encodes a single-page shard: `page` stored as its own shard node.
pub(crate) fn encode_shard_page(page: &Page) -> Result<Bytes> {
    encode(Kind::ShardPage, page)
}

/// A shard node as stored: a node listing pages, or a single page standing for its node.
#[derive(Debug)]
pub(crate) enum DecodedShard {
    Node(ShardNode),
    Page(Page),
}

/// Decodes the object a root's shard reference names: either kind of shard node.
pub(crate) fn decode_any_shard(key: &str, bytes: &[u8]) -> Result<DecodedShard> {
    if bytes.len() > 6 && bytes[6] == Kind::ShardPage as u8 {
        decode(key, Kind::ShardPage, bytes).map(DecodedShard::Page)
    } else {
        decode(key, Kind::ShardNode, bytes).map(DecodedShard::Node)
    }
}

/// Decodes the object a page reference names: a page, or a single-page shard (whose page
/// reference names the shard node itself).
pub(crate) fn decode_any_page(key: &str, bytes: &[u8]) -> Result<Page> {
    if bytes.len() > 6 && bytes[6] == Kind::ShardPage as u8 {
        decode(key, Kind::ShardPage, bytes)
    } else {
        decode(key, Kind::Page, bytes)
    }
}

pub(crate) fn encode_page(page: &Page) -> Result<Bytes> {
    encode(Kind::Page, page)
}

pub(crate) fn decode_page(key: &str, bytes: &[u8]) -> Result<Page> {
    decode(key, Kind::Page, bytes)
}

/// Encodes a snapshot (pin).
pub fn encode_snapshot(snapshot: &Snapshot) -> Result<Bytes> {
    encode(Kind::Snapshot, snapshot)
}

/// Decodes a snapshot read from `key`.
pub fn decode_snapshot(key: &str, bytes: &[u8]) -> Result<Snapshot> {
    decode(key, Kind::Snapshot, bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::ObjectBackend;
    use crate::keys;
    use crate::manifest::{CommitId, FileEntry, PageRef, ShardKey, ShardRef};
    use crate::path::{StorageBackend, StoragePath};
    use crate::BlobId;

    fn sample_root() -> ManifestRoot {
        let mut root = ManifestRoot::empty("products");
        root.version = 3;
        root.commit_id = CommitId([7; 16]);
        root.timestamp_ms = 1_700_000_000_000;
        root.shards.insert(
            ShardKey {
                backend: StorageBackend::Tantivy,
                shard: Some("shard_0".into()),
            },
            ShardRef {
                node: BlobId::of(b"node"),
                files: 2,
                bytes: 10,
            },
        );
        root
    }

    #[test]
    fn round_trip() {
        let root = sample_root();
        let bytes = encode_root(&root).unwrap();
        assert_eq!(decode_root("k", &bytes).unwrap(), root);
        let page = Page {
            entries: vec![("a".into(), FileEntry::inline(Bytes::from_static(b"hi")))],
        };
        assert_eq!(
            decode_page("k", &encode_page(&page).unwrap()).unwrap(),
            page
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_a_typed_error() {
        let bytes = encode_root(&sample_root()).unwrap();
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_root("k", &bytes[..len]),
                Err(Error::CorruptManifest { .. })
            ));
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[i] ^= 0x10;
            assert!(matches!(
                decode_root("k", &damaged),
                Err(Error::CorruptManifest { .. })
            ));
        }
        // A page is not a root.
        let page = encode_page(&Page::default()).unwrap();
        assert!(decode_root("k", &page).is_err());
    }

    fn inconsistent(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::CorruptManifest { reason, .. }) => reason,
            other => panic!("expected CorruptManifest, got {other:?}"),
        }
    }

    #[test]
    fn fields_that_disagree_are_refused_at_decode() {
        let entry = |size: u64, inline: &'static [u8]| FileEntry {
            id: BlobId::of(inline),
            size,
            inline: Some(Bytes::from_static(inline)),
        };
        let page = |entries: Vec<(&str, FileEntry)>| Page {
            entries: entries.into_iter().map(|(s, e)| (s.into(), e)).collect(),
        };
        let bad_pages = [
            page(vec![("a", entry(10, b"hi"))]),
            page(vec![("b", entry(2, b"hi")), ("a", entry(2, b"hi"))]),
            page(vec![("a", entry(2, b"hi")), ("a", entry(2, b"hi"))]),
            page(vec![("..", entry(2, b"hi"))]),
            page(vec![
                ("a", FileEntry::blob(BlobId::of(b"a"), u64::MAX)),
                ("b", FileEntry::blob(BlobId::of(b"b"), 1)),
            ]),
        ];
        for p in bad_pages {
            let reason = inconsistent(decode_page("k", &encode_page(&p).unwrap()));
            assert!(reason.starts_with("inconsistent"), "{reason}");
        }
        let page_ref = |first: &str, files: u64| PageRef {
            first: first.into(),
            page: BlobId::of(first.as_bytes()),
            files,
            bytes: 1,
        };
        for node in [
            ShardNode {
                pages: vec![page_ref("b", 1), page_ref("a", 1)],
            },
            ShardNode {
                pages: vec![page_ref("a", 1), page_ref("a", 1)],
            },
            ShardNode {
                pages: vec![page_ref("a", u64::MAX), page_ref("b", 1)],
            },
            ShardNode {
                pages: vec![page_ref("a/b", 1)],
            },
        ] {
            inconsistent(decode_shard("k", &encode_shard(&node).unwrap()));
        }
        let mut root = sample_root();
        root.collection = "a/b".into();
        inconsistent(decode_root("k", &encode_root(&root).unwrap()));
        let mut root = sample_root();
        let shard = ShardRef {
            node: BlobId::of(b"n"),
            files: u64::MAX,
            bytes: 1,
        };
        for name in ["x", "y"] {
            root.shards.insert(
                ShardKey {
                    backend: StorageBackend::Vector,
                    shard: Some(name.into()),
                },
                shard.clone(),
            );
        }
        inconsistent(decode_root("k", &encode_root(&root).unwrap()));
        let mut root = sample_root();
        root.shards.insert(
            ShardKey {
                backend: StorageBackend::Graph,
                shard: Some("".into()),
            },
            shard,
        );
        inconsistent(decode_root("k", &encode_root(&root).unwrap()));
        let snapshot = Snapshot {
            collection: "c".into(),
            name: "..".into(),
            version: 1,
            created_ms: 0,
            expires_ms: None,
        };
        inconsistent(decode_snapshot("k", &encode_snapshot(&snapshot).unwrap()));
    }

    /// A store on memory with `c/tantivy/s/f` committed, and its backend.
    async fn store_with_file(data: &'static [u8]) -> (crate::Store, Arc<MemoryBackend>) {
        let backend = Arc::new(MemoryBackend::new());
        let store = crate::Store::new(backend.clone(), Default::default());
        store
            .write_bytes(&path("f"), Bytes::from_static(data))
            .await
            .unwrap();
        (store, backend)
    }

    fn path(segment: &str) -> StoragePath {
        StoragePath::new("c", StorageBackend::Tantivy, "s", segment)
    }

    /// Stores `root` (with its page rewritten by `edit`) as version `version` of `c`.
    async fn forge(
        backend: &MemoryBackend,
        store: &crate::Store,
        mut root: ManifestRoot,
        version: u64,
        edit: impl FnOnce(&mut Page),
    ) -> ManifestRoot {
        let key = root.shards.keys().next().unwrap().clone();
        let node = store.trees().shard(&root.shards[&key].node).await.unwrap();
        let mut node = (*node).clone();
        let mut page = (*store.trees().page(&node.pages[0].page).await.unwrap()).clone();
        edit(&mut page);
        let page_bytes = encode_page(&page).unwrap();
        node.pages[0].page = BlobId::of(&page_bytes);
        backend
            .put(&keys::tree(&node.pages[0].page), page_bytes)
            .await
            .unwrap();
        let node_bytes = encode_shard(&node).unwrap();
        let shard = root.shards.get_mut(&key).unwrap();
        shard.node = BlobId::of(&node_bytes);
        backend
            .put(&keys::tree(&shard.node), node_bytes)
            .await
            .unwrap();
        root.version = version;
        backend
            .put(&keys::manifest("c", version), encode_root(&root).unwrap())
            .await
            .unwrap();
        root
    }

    #[tokio::test]
    async fn an_inline_entry_longer_than_its_bytes_is_an_error_not_a_panic() {
        let (store, backend) = store_with_file(b"hi").await;
        let root = (*store.head("c").await.unwrap()).clone();
        forge(&backend, &store, root, 2, |page| {
            page.entries[0].1.size = 10;
        })
        .await;
        let fresh = crate::Store::new(backend.clone(), Default::default());
        let read = fresh.read_range(&path("f"), 0..10).await;
        assert!(
            matches!(read, Err(Error::CorruptManifest { .. })),
            "{read:?}"
        );
        let opened = fresh.open_file(&path("f")).await;
        assert!(
            matches!(opened, Err(Error::CorruptManifest { .. })),
            "{opened:?}"
        );
    }

    #[tokio::test]
    async fn a_huge_shard_file_count_cannot_make_diff_panic() {
        let (store, backend) = store_with_file(b"one").await;
        let root = (*store.head("c").await.unwrap()).clone();
        let mut root = forge(&backend, &store, root, 2, |page| {
            page.entries[0].1 = FileEntry::inline(Bytes::from_static(b"two"));
        })
        .await;
        for files in [u64::MAX, u64::MAX / 64] {
            root.shards.values_mut().next().unwrap().files = files;
            root.version += 1;
            backend
                .put(
                    &keys::manifest("c", root.version),
                    encode_root(&root).unwrap(),
                )
                .await
                .unwrap();
            let fresh = crate::Store::new(backend.clone(), Default::default());
            let diff = fresh
                .diff(
                    "c",
                    &crate::Target::Version(1),
                    &crate::Target::Version(root.version),
                )
                .await
                .unwrap();
            assert_eq!(diff.changed.len(), 1);
        }
    }
}
