//! Sync against a real S3 server (moto): local to S3 and back, and S3 to S3 between two
//! prefixes of one bucket; incremental after a change, verified on arrival.

mod support;

use bytes::Bytes;
use segstore::gc::VerifyOptions;
use segstore::sync::{History, SyncOptions};
use segstore::{LocalStorage, S3Storage, SegmentStorage, StorageBackend, StoragePath, Store};
use support::moto;

fn p(collection: &str, name: &str) -> StoragePath {
    StoragePath::new(collection, StorageBackend::Tantivy, "s0", name)
}

fn content(seed: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i % 251) as u8 ^ (seed as u8).wrapping_mul(31))
            .collect::<Vec<_>>(),
    )
}

async fn assert_same(a: &Store, collection: &str, b: &Store, b_name: &str) {
    let (ra, rb) = (
        a.head(collection).await.unwrap(),
        b.head(b_name).await.unwrap(),
    );
    assert_eq!(ra.shards, rb.shards, "different content");
    for shard in rb.shards.values() {
        for (name, entry) in b.trees().shard_entries(shard).await.unwrap() {
            let bytes = b.read_entry(&entry).await.unwrap();
            assert_eq!(segstore::BlobId::of(&bytes), entry.id, "{name}");
        }
    }
    let report = b.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.is_healthy(), "{report:?}");
}

async fn fill(store: &Store, collection: &str) {
    let mut tx = store.transaction(collection).await.unwrap();
    for i in 0..40 {
        // Inline, small blobs, and one blob past the outboard threshold.
        let len = match i {
            0 => 1_300_000,
            i if i % 2 == 0 => 300,
            i => 6_000 + i,
        };
        tx.put(&p(collection, &format!("f{i:03}")), content(i, len))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn local_to_s3_and_back() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStorage::open(dir.path()).await.unwrap();
    fill(local.store(), "c").await;
    let s3 = S3Storage::connect_with(config, support::fast_options())
        .await
        .unwrap();
    let up = local
        .store()
        .sync_to("c", s3.store(), &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(up.blobs_copied, 21, "{up:?}");
    assert_same(local.store(), "c", s3.store(), "c").await;
    // S3 wants outboards: the large blob got one on the way.
    let big = s3.store().entry(&p("c", "f000")).await.unwrap().unwrap();
    let outboard = segstore::keys::outboard(&big.id);
    assert!(s3
        .store()
        .backend()
        .head(&outboard)
        .await
        .unwrap()
        .is_some());

    local
        .store()
        .write(&p("c", "f001"), &content(77, 9_999))
        .await
        .unwrap();
    let again = local
        .store()
        .sync_to("c", s3.store(), &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (again.blobs_copied, again.trees_copied),
        (1, 2),
        "{again:?}"
    );

    // Restore: S3 back to a fresh local store, under another name, with history.
    let back_dir = tempfile::tempdir().unwrap();
    let back = LocalStorage::open(back_dir.path()).await.unwrap();
    let down = s3
        .store()
        .sync_to(
            "c",
            back.store(),
            &SyncOptions {
                rename: Some("restored".into()),
                history: History::Mirror,
                ..SyncOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(down.versions_committed, 2);
    assert_same(local.store(), "c", back.store(), "restored").await;
}

#[tokio::test]
async fn s3_to_s3_on_two_prefixes() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let mut other = config.clone();
    other.prefix = "segstore-replica".into();
    let a = S3Storage::connect_with(config, support::fast_options())
        .await
        .unwrap();
    let b = S3Storage::connect_with(other, support::fast_options())
        .await
        .unwrap();
    fill(a.store(), "c").await;
    let report = a
        .store()
        .sync_to("c", b.store(), &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(report.blobs_copied, 21);
    assert_same(a.store(), "c", b.store(), "c").await;
    // The two prefixes hold separate copies: deleting at the source leaves the replica.
    a.store().delete(&p("c", "f001")).await.unwrap();
    let report = a
        .store()
        .sync_to("c", b.store(), &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((report.blobs_copied, report.versions_committed), (0, 1));
    assert!(!b.store().exists(&p("c", "f001")).await.unwrap());
    assert_same(a.store(), "c", b.store(), "c").await;
}
