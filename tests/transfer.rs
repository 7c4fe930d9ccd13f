//! Export and import round trips: local disk, tar archives, and S3 (moto).

mod support;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use segstore::backend::local::LocalBackend;
use segstore::backend::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use segstore::keys::{self, ObjectKey};
use segstore::transfer::{ExportScope, TransferOptions};
use segstore::{
    Error, LocalStorage, S3Storage, SegmentStorage, StorageBackend, StoragePath, Store, Target,
};
use support::moto;

fn p(seg: &str) -> StoragePath {
    StoragePath::new("books", StorageBackend::Tantivy, "s0", seg)
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

/// Three versions and a snapshot: a small file, a large one, a rename, a delete.
async fn populate(store: &Store) {
    store.write(&p("meta.json"), b"{}").await.unwrap();
    store
        .write(&p("seg.idx"), &content(1, 3 * 1024 * 1024))
        .await
        .unwrap();
    store
        .create_snapshot("books", "first", None, None)
        .await
        .unwrap();
    store.rename(&p("seg.idx"), &p("seg.merged")).await.unwrap();
    store
        .write(&p("extra.bin"), &content(2, 100_000))
        .await
        .unwrap();
    store.delete(&p("meta.json")).await.unwrap();
}

async fn assert_same_history(a: &Store, b: &Store) {
    let (ha, hb) = (
        a.head("books").await.unwrap(),
        b.head("books").await.unwrap(),
    );
    assert_eq!(ha.version, hb.version);
    for v in 1..=ha.version {
        let (ra, rb) = (
            a.root_at("books", v).await.unwrap(),
            b.root_at("books", v).await.unwrap(),
        );
        assert_eq!(ra, rb, "version {v}");
    }
    for path in a.list(&p("")).await.unwrap() {
        assert_eq!(a.read(&path).await.unwrap(), b.read(&path).await.unwrap());
    }
    let snap = b
        .view("books", &Target::Snapshot("first".into()))
        .await
        .unwrap();
    assert_eq!(
        snap.read(&p("seg.idx")).await.unwrap(),
        content(1, 3 * 1024 * 1024)
    );
}

#[tokio::test]
async fn directory_and_tar_round_trips_keep_history_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let src = LocalStorage::open(dir.path().join("src")).await.unwrap();
    populate(&src).await;

    let export = dir.path().join("export");
    let report = src
        .export_dir("books", &ExportScope::AllVersions, &export)
        .await
        .unwrap();
    assert_eq!(report.versions, 5);
    assert_eq!(report.snapshots, 1);
    assert_eq!(report.blobs, 2);
    let dst = LocalStorage::open(dir.path().join("dst")).await.unwrap();
    let imported = dst.import_dir("books", &export).await.unwrap();
    assert_eq!(imported.versions, 5);
    assert_same_history(&src, &dst).await;
    // The imported collection keeps working.
    dst.write(&p("after"), b"more").await.unwrap();
    assert_eq!(dst.head("books").await.unwrap().version, 6);
    // Importing twice is refused.
    assert!(matches!(
        dst.import_dir("books", &export).await,
        Err(Error::Conflict { .. })
    ));

    let archive = dir.path().join("books.tar");
    src.export_tar("books", &ExportScope::AllVersions, &archive)
        .await
        .unwrap();
    let dst2 = LocalStorage::open(dir.path().join("dst2")).await.unwrap();
    dst2.import_tar("books", &archive).await.unwrap();
    assert_same_history(&src, &dst2).await;
}

/// Export and import, to and from a directory and archives, report each object as they go
/// and end at their totals: the blobs' bytes, or for a tar import the archive's size.
#[tokio::test]
async fn exports_and_imports_report_their_progress_to_the_end() {
    use support::progress::{finished, recording};
    let dir = tempfile::tempdir().unwrap();
    let src = LocalStorage::open(dir.path().join("src")).await.unwrap();
    populate(&src).await;
    let blob_bytes = 3 * 1024 * 1024 + 100_000;
    for name in ["export", "books.tar", "books.tar.zst"] {
        let path = dir.path().join(name);
        let (progress, seen) = recording();
        let options = TransferOptions {
            progress: Some(progress),
        };
        let r = src
            .export("books", &ExportScope::AllVersions, &path, &options)
            .await
            .unwrap();
        let last = finished(&seen);
        assert_eq!(last.bytes_total, blob_bytes, "{name}");
        assert_eq!(
            last.items_total,
            r.blobs + r.trees + r.versions + r.snapshots,
            "{name}"
        );
        let dst = LocalStorage::open(dir.path().join(format!("to-{name}")))
            .await
            .unwrap();
        let (progress, seen) = recording();
        let options = TransferOptions {
            progress: Some(progress),
        };
        let r = dst.import("books", &path, &options).await.unwrap();
        let last = finished(&seen);
        if name == "export" {
            assert_eq!(last.bytes_total, blob_bytes);
            assert_eq!(last.items_total, r.blobs + r.blobs_skipped + r.trees);
        } else {
            // The archive's own bytes, read to its end (compressed or not).
            assert_eq!(last.bytes_total, std::fs::metadata(&path).unwrap().len());
            assert!(
                last.items_total >= r.blobs + r.trees + r.versions,
                "{last:?}"
            );
        }
        assert_same_history(&src, &dst).await;
    }
}

#[tokio::test]
async fn a_snapshot_alone_can_be_exported() {
    let dir = tempfile::tempdir().unwrap();
    let src = LocalStorage::open(dir.path().join("src")).await.unwrap();
    populate(&src).await;
    let export = dir.path().join("export");
    let report = src
        .export_dir("books", &ExportScope::Snapshot("first".into()), &export)
        .await
        .unwrap();
    assert_eq!((report.versions, report.snapshots, report.blobs), (1, 1, 1));
    let dst = LocalStorage::open(dir.path().join("dst")).await.unwrap();
    dst.import_dir("books", &export).await.unwrap();
    assert_eq!(dst.head("books").await.unwrap().version, 2);
    assert_eq!(
        dst.read(&p("seg.idx")).await.unwrap(),
        content(1, 3 * 1024 * 1024)
    );
    dst.write(&p("next"), b"n").await.unwrap();
    assert_eq!(dst.head("books").await.unwrap().version, 3);
}

/// A populated store under `dir/src` and its export (all versions) in `dir/export`.
async fn populated_export(dir: &Path) -> (LocalStorage, PathBuf) {
    let src = LocalStorage::open(dir.join("src")).await.unwrap();
    populate(&src).await;
    let export = dir.join("export");
    src.export_dir("books", &ExportScope::AllVersions, &export)
        .await
        .unwrap();
    (src, export)
}

#[tokio::test]
async fn a_damaged_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, export) = populated_export(dir.path()).await;
    let id = src.metadata(&p("extra.bin")).await.unwrap().id;
    let blob = export.join(segstore::keys::blob(&id).as_str());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[77] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();
    let dst = LocalStorage::open(dir.path().join("dst")).await.unwrap();
    assert!(matches!(
        dst.import_dir("books", &export).await,
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(
        dst.head("books").await.unwrap().version,
        0,
        "nothing committed"
    );
}

/// A source whose tree nodes read differently the second time (the import's traversal
/// reads each once to verify it, then the copy reads it again).
#[derive(Debug)]
struct TreesChangeOnSecondRead {
    inner: Arc<dyn ObjectBackend>,
    reads: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

#[async_trait::async_trait]
impl ObjectBackend for TreesChangeOnSecondRead {
    fn name(&self) -> &'static str {
        "trees-change"
    }
    async fn get(&self, key: &ObjectKey) -> segstore::Result<Bytes> {
        let data = self.inner.get(key).await?;
        if !key.as_str().starts_with(keys::TREES_PREFIX) {
            return Ok(data);
        }
        let mut reads = self.reads.lock().unwrap();
        let n = reads.entry(key.as_str().to_owned()).or_default();
        *n += 1;
        if *n < 2 {
            return Ok(data);
        }
        let mut damaged = data.to_vec();
        damaged[data.len() / 2] ^= 0x01;
        Ok(Bytes::from(damaged))
    }
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> segstore::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &ObjectKey) -> segstore::Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &ObjectKey, data: Bytes) -> segstore::Result<()> {
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> segstore::Result<PutOutcome> {
        self.inner.put_if_absent(key, data).await
    }
    async fn delete(&self, key: &ObjectKey) -> segstore::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> segstore::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn touch(&self, key: &ObjectKey) -> segstore::Result<()> {
        self.inner.touch(key).await
    }
    async fn begin_upload(&self) -> segstore::Result<Box<dyn Upload>> {
        self.inner.begin_upload().await
    }
}

#[tokio::test]
async fn a_tree_node_that_changes_between_reads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, export) = populated_export(dir.path()).await;
    let source = Arc::new(TreesChangeOnSecondRead {
        inner: Arc::new(LocalBackend::open(&export).await.unwrap()),
        reads: Default::default(),
    });
    let dst = LocalStorage::open(dir.path().join("dst")).await.unwrap();
    let result = dst.store().import_from(source.clone(), "books").await;
    assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");
    assert!(
        source.reads.lock().unwrap().values().any(|n| *n >= 2),
        "the copy read a tree node a second time"
    );
    assert_eq!(
        dst.head("books").await.unwrap().version,
        0,
        "nothing committed"
    );
}

#[tokio::test]
async fn local_to_s3_and_back() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStorage::open(dir.path().join("src")).await.unwrap();
    populate(&local).await;
    let s3 = S3Storage::connect(config).await.unwrap();
    let report = local
        .export_to("books", &ExportScope::AllVersions, s3.backend().as_ref())
        .await
        .unwrap();
    assert_eq!(report.versions, 5);
    assert_same_history(&local, &s3).await;
    s3.write(&p("from-s3"), &Bytes::from_static(b"s3"))
        .await
        .unwrap();
    let back = LocalStorage::open(dir.path().join("back")).await.unwrap();
    back.import_from(Arc::clone(s3.backend()), "books")
        .await
        .unwrap();
    assert_eq!(back.read(&p("from-s3")).await.unwrap(), b"s3");
    assert_eq!(back.head("books").await.unwrap().version, 6);
}
