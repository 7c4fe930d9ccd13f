//! Several real processes commit to one collection on one root at once. Each child logs
//! every write it got an acknowledgement for; afterwards every logged write must be there,
//! and the history must be one linear run of versions.

mod support;

use segstore::{LocalStorage, SegmentStorage, StorageBackend, StoragePath};
use support::child;

const CHILD_ENV: &str = "SEGSTORE_TEST_CHILD_ROOT";
const WRITERS: usize = 4;
const WRITES_PER_CHILD: usize = 25;

fn path(writer: usize, i: usize) -> StoragePath {
    StoragePath::new(
        "shared",
        StorageBackend::Tantivy,
        format!("w{writer}"),
        format!("f{i}"),
    )
}

/// Not a test on its own: the body of each child process.
#[test]
fn child_writer() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let writer: usize = child::env("SEGSTORE_TEST_CHILD_ID");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = LocalStorage::open(&root).await.unwrap();
        for i in 0..WRITES_PER_CHILD {
            let data = format!("writer {writer} file {i}");
            store
                .write(&path(writer, i), data.as_bytes())
                .await
                .unwrap();
            // Also move one file around, so that renames race with writes.
            if i % 5 == 4 {
                store
                    .rename(&path(writer, i), &path(writer, i + 1000))
                    .await
                    .unwrap();
                store
                    .rename(&path(writer, i + 1000), &path(writer, i))
                    .await
                    .unwrap();
            }
            child::ack(format_args!("{writer} {i}"));
        }
    });
}

#[tokio::test]
async fn processes_committing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    let outputs = child::run_children("child_writer", WRITERS, |w| {
        vec![
            (CHILD_ENV, root.clone()),
            ("SEGSTORE_TEST_CHILD_ID", w.to_string()),
        ]
    })
    .await;
    let acked = child::writer_file_acks(&outputs);
    assert_eq!(acked.len(), WRITERS * WRITES_PER_CHILD);

    let store = LocalStorage::open(dir.path()).await.unwrap();
    for (w, i) in &acked {
        let got = store.read(&path(*w, *i)).await.unwrap();
        assert_eq!(got, format!("writer {w} file {i}").into_bytes());
    }
    let listed = store
        .list(&StoragePath::unsharded(
            "shared",
            StorageBackend::Tantivy,
            "",
        ))
        .await
        .unwrap();
    assert_eq!(listed.len(), WRITERS * WRITES_PER_CHILD);

    // Linear history: versions 1..=latest all exist, each names itself, and each one holds
    // exactly one more or the same number of files as the one before (one change each).
    let head = store.head("shared").await.unwrap();
    let renames = WRITERS * (WRITES_PER_CHILD / 5) * 2;
    assert_eq!(head.version as usize, WRITERS * WRITES_PER_CHILD + renames);
    let mut files = 0u64;
    for v in 1..=head.version {
        let root = store.root_at("shared", v).await.unwrap();
        assert_eq!(root.version, v);
        let count = root.file_count();
        assert!(
            count == files || count == files + 1,
            "version {v}: {files} -> {count}"
        );
        files = count;
    }
}
