//! Several real processes commit to one collection in one S3 bucket (moto) at once. Each
//! child logs every write it got an acknowledgement for; afterwards every logged write must
//! be there with its bytes, and the history must be one linear run of versions, each of
//! which makes exactly one change.
//!
//! The children are this test binary re-executed with `--exact child_writer`; they reach
//! the parent's moto server through the endpoint and bucket passed in the environment.

mod support;

use std::collections::BTreeSet;

use segstore::{S3Storage, SegmentStorage, StorageBackend, StoragePath};
use support::{child, moto};

const ENDPOINT_ENV: &str = "SEGSTORE_TEST_CHILD_S3_ENDPOINT";
const BUCKET_ENV: &str = "SEGSTORE_TEST_CHILD_S3_BUCKET";
const ID_ENV: &str = "SEGSTORE_TEST_CHILD_ID";
const WRITERS: usize = 4;
const WRITES_PER_CHILD: usize = 10;
const COLLECTION: &str = "shared";

fn path(writer: usize, i: usize) -> StoragePath {
    StoragePath::new(
        COLLECTION,
        StorageBackend::Tantivy,
        format!("w{writer}"),
        format!("f{i}"),
    )
}

/// Every third file is a blob (larger than the 4 KiB inline limit), the others inline.
fn content(writer: usize, i: usize) -> Vec<u8> {
    let tag = format!("writer {writer} file {i};");
    let len = if i.is_multiple_of(3) { 6000 } else { tag.len() };
    tag.bytes().cycle().take(len).collect()
}

/// Not a test on its own: the body of each child process.
#[test]
fn child_writer() {
    let (Ok(endpoint), Ok(bucket)) = (std::env::var(ENDPOINT_ENV), std::env::var(BUCKET_ENV))
    else {
        return;
    };
    let writer: usize = child::env(ID_ENV);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = S3Storage::connect(moto::config_for(&endpoint, &bucket))
            .await
            .unwrap();
        for i in 0..WRITES_PER_CHILD {
            store
                .write(&path(writer, i), &content(writer, i))
                .await
                .unwrap();
            // Also move one file away and back, so that renames race with writes.
            if i % 5 == 4 {
                let aside = path(writer, i + 1000);
                store.rename(&path(writer, i), &aside).await.unwrap();
                store.rename(&aside, &path(writer, i)).await.unwrap();
            }
            child::ack(format_args!("{writer} {i}"));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_committing_to_one_bucket_lose_nothing() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let endpoint = config.endpoint.clone().unwrap();
    let bucket = config.bucket.clone();
    let outputs = child::run_children("child_writer", WRITERS, |w| {
        vec![
            (ENDPOINT_ENV, endpoint.clone()),
            (BUCKET_ENV, bucket.clone()),
            (ID_ENV, w.to_string()),
        ]
    })
    .await;
    let acked = child::writer_file_acks(&outputs);
    assert_eq!(acked.len(), WRITERS * WRITES_PER_CHILD);

    // A fresh connection sees every acknowledged write, with its bytes, and nothing else.
    let store = S3Storage::connect(config).await.unwrap();
    for (w, i) in &acked {
        let got = store.read(&path(*w, *i)).await.unwrap();
        assert_eq!(got, content(*w, *i), "writer {w} file {i}");
    }
    let listed = store
        .list(&StoragePath::unsharded(
            COLLECTION,
            StorageBackend::Tantivy,
            "",
        ))
        .await
        .unwrap();
    let want: BTreeSet<StoragePath> = acked.iter().map(|(w, i)| path(*w, *i)).collect();
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), want);

    // Linear history: versions 1..=latest all exist and each names itself; each one makes
    // exactly one change to the one before (a write adds a path, a rename moves one).
    let head = store.head(COLLECTION).await.unwrap();
    let renames = WRITERS * (WRITES_PER_CHILD / 5) * 2;
    assert_eq!(head.version as usize, WRITERS * WRITES_PER_CHILD + renames);
    let mut previous = store.root_at(COLLECTION, 0).await.unwrap();
    let mut added_by_writes = BTreeSet::new();
    let (mut writes, mut moves) = (0, 0);
    for v in 1..=head.version {
        let root = store.root_at(COLLECTION, v).await.unwrap();
        assert_eq!(root.version, v);
        let diff = store.diff_roots(&previous, &root).await.unwrap();
        assert!(
            diff.changed.is_empty(),
            "version {v} changed content: {diff:?}"
        );
        match (diff.added.as_slice(), diff.removed.as_slice()) {
            ([added], []) => {
                writes += 1;
                assert!(
                    added_by_writes.insert(added.path.clone()),
                    "version {v} re-added {}",
                    added.path
                );
            }
            ([added], [removed]) => {
                moves += 1;
                assert_eq!(added.before, None);
                assert_eq!(
                    removed.before.as_ref().map(|e| e.id),
                    added.after.as_ref().map(|e| e.id),
                    "version {v}: a rename keeps the content"
                );
            }
            _ => panic!("version {v} is not one change: {diff:?}"),
        }
        previous = root;
    }
    assert_eq!((writes, moves), (WRITERS * WRITES_PER_CHILD, renames));
    assert_eq!(added_by_writes, want);
}
