//! LocalStorage behaviour: hostile paths, corruption, deduplication, transactions.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use segstore::{Error, LocalStorage, SegmentStorage, StorageBackend, StoragePath, Store};

fn path(shard: &str, segment: &str) -> StoragePath {
    StoragePath::new("products", StorageBackend::Tantivy, shard, segment)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn blob_files(root: &Path) -> Vec<PathBuf> {
    let blobs = root.join("blobs");
    if !blobs.exists() {
        return Vec::new();
    }
    files_under(&blobs)
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn open_creates_missing_root_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let store = LocalStorage::open(&root).await.unwrap();
    assert!(root.is_dir());
    let p = path("shard_0", "segment_00001.si");
    store.write(&p, b"hello").await.unwrap();
    assert_eq!(store.read(&p).await.unwrap(), b"hello");
    assert!(store.exists(&p).await.unwrap());
    let q = path("shard_0", "segment_00002.si");
    store.rename(&p, &q).await.unwrap();
    assert!(!store.exists(&p).await.unwrap());
    assert_eq!(store.read(&q).await.unwrap(), b"hello");
    assert!(matches!(store.read(&p).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        store.rename(&p, &q).await,
        Err(Error::NotFound { .. })
    ));
    store.delete(&p).await.unwrap(); // missing: Ok
    store.delete(&q).await.unwrap();
    assert!(store.list(&path("shard_0", "")).await.unwrap().is_empty());
}

#[tokio::test]
async fn rename_replaces_target_and_list_is_sorted_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    for (shard, seg) in [("s1", "b"), ("s0", "b"), ("s0", "a"), ("s0", "ab")] {
        store
            .write(&path(shard, seg), seg.as_bytes())
            .await
            .unwrap();
    }
    let unsharded = StoragePath::unsharded("products", StorageBackend::Tantivy, "z");
    store.write(&unsharded, b"z").await.unwrap();
    let other_backend = StoragePath::new("products", StorageBackend::Vector, "s0", "a");
    store.write(&other_backend, b"v").await.unwrap();

    let all = store
        .list(&StoragePath::unsharded(
            "products",
            StorageBackend::Tantivy,
            "",
        ))
        .await
        .unwrap();
    let shown: Vec<String> = all.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "products/tantivy/z",
            "products/tantivy/s0/a",
            "products/tantivy/s0/ab",
            "products/tantivy/s0/b",
            "products/tantivy/s1/b",
        ]
    );
    let a_prefix = store.list(&path("s0", "a")).await.unwrap();
    assert_eq!(a_prefix, vec![path("s0", "a"), path("s0", "ab")]);

    store.write(&path("s0", "target"), b"old").await.unwrap();
    store
        .rename(&path("s0", "a"), &path("s0", "target"))
        .await
        .unwrap();
    assert_eq!(store.read(&path("s0", "target")).await.unwrap(), b"a");
    assert!(!store.exists(&path("s0", "a")).await.unwrap());
}

#[tokio::test]
async fn hostile_paths_are_rejected_and_nothing_escapes_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStorage::open(&root).await.unwrap();
    let long = "x".repeat(256);
    let good = path("s", "f");
    let bad = [
        StoragePath::new("..", StorageBackend::Tantivy, "s", "f"),
        StoragePath::new(".", StorageBackend::Tantivy, "s", "f"),
        StoragePath::new("", StorageBackend::Tantivy, "s", "f"),
        StoragePath::new("../etc", StorageBackend::Tantivy, "s", "f"),
        StoragePath::new("/etc", StorageBackend::Tantivy, "s", "f"),
        StoragePath::new("c", StorageBackend::Tantivy, "..", "f"),
        StoragePath::new("c", StorageBackend::Tantivy, "", "f"),
        StoragePath::new("c", StorageBackend::Tantivy, "s/../..", "f"),
        StoragePath::new("c", StorageBackend::Tantivy, "s", ".."),
        StoragePath::new("c", StorageBackend::Tantivy, "s", ""),
        StoragePath::new("c", StorageBackend::Tantivy, "s", "../../outside"),
        StoragePath::new("c", StorageBackend::Tantivy, "s", "a\\..\\b"),
        StoragePath::new("c", StorageBackend::Tantivy, "s", "nul\0byte"),
        StoragePath::new("c", StorageBackend::Tantivy, "s", "tab\tchar"),
        StoragePath::new("c", StorageBackend::Tantivy, "s", "del\u{7f}"),
        StoragePath::new("c", StorageBackend::Tantivy, "s", long.as_str()),
        StoragePath::new(long.as_str(), StorageBackend::Tantivy, "s", "f"),
    ];
    for p in &bad {
        let invalid = |r: &segstore::Result<()>| matches!(r, Err(Error::InvalidPath { .. }));
        assert!(invalid(&store.write(p, b"x").await), "write {p:?}");
        assert!(
            matches!(
                SegmentStorage::read(&store, p).await,
                Err(Error::InvalidPath { .. })
            ),
            "read {p:?}"
        );
        assert!(
            matches!(
                SegmentStorage::exists(&store, p).await,
                Err(Error::InvalidPath { .. })
            ),
            "exists {p:?}"
        );
        assert!(
            invalid(&SegmentStorage::delete(&store, p).await),
            "delete {p:?}"
        );
        assert!(
            invalid(&SegmentStorage::rename(&store, p, &good).await),
            "rename from {p:?}"
        );
        assert!(
            invalid(&SegmentStorage::rename(&store, &good, p).await),
            "rename to {p:?}"
        );
    }
    // A list prefix may have an empty segment, but no other bad component.
    for p in &bad {
        let got = SegmentStorage::list(&store, p).await;
        if p.segment.is_empty() && p.collection == "c" && p.shard.as_deref() == Some("s") {
            assert!(got.unwrap().is_empty());
        } else {
            assert!(matches!(got, Err(Error::InvalidPath { .. })), "list {p:?}");
        }
    }
    for s in [
        "../x/y",
        "a/tantivy/../b",
        "a/b/c",
        "a/tantivy",
        "a/tantivy/s/seg/extra",
        "a//tantivy/x",
    ] {
        assert!(
            matches!(s.parse::<StoragePath>(), Err(Error::InvalidPath { .. })),
            "{s}"
        );
    }
    // Unusual but valid names are stored safely inside the root.
    let odd = StoragePath::new("%2e%2e", StorageBackend::Tantivy, "..hidden", "...");
    store.write(&odd, b"odd").await.unwrap();
    assert_eq!(store.read(&odd).await.unwrap(), b"odd");
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("store")]);
    for f in files_under(&root) {
        assert!(f.starts_with(&root));
    }
}

#[tokio::test]
async fn damaged_blob_reads_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let p = path("s", "big.bin");
    let data = pseudo_random(100_000, 1);
    store.write(&p, &data).await.unwrap();
    let blobs = blob_files(dir.path());
    assert_eq!(blobs.len(), 1);
    let blob = &blobs[0];

    // One flipped byte.
    let mut damaged = std::fs::read(blob).unwrap();
    damaged[5_000] ^= 0x01;
    std::fs::write(blob, &damaged).unwrap();
    let fresh = LocalStorage::open(dir.path()).await.unwrap();
    match SegmentStorage::read(&fresh, &p).await {
        Err(Error::Corrupt {
            expected, actual, ..
        }) => assert_ne!(expected, actual),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Truncated.
    std::fs::write(blob, &data[..50_000]).unwrap();
    let fresh = LocalStorage::open(dir.path()).await.unwrap();
    assert!(matches!(
        SegmentStorage::read(&fresh, &p).await,
        Err(Error::Corrupt { .. })
    ));
    // Gone.
    std::fs::remove_file(blob).unwrap();
    let fresh = LocalStorage::open(dir.path()).await.unwrap();
    assert!(matches!(
        SegmentStorage::read(&fresh, &p).await,
        Err(Error::Corrupt { .. })
    ));
    // Writing the same content again heals it.
    fresh.write(&path("s", "again"), &data).await.unwrap();
    assert_eq!(SegmentStorage::read(&fresh, &p).await.unwrap(), data);
}

fn manifest_files(root: &Path) -> Vec<PathBuf> {
    files_under(&root.join("manifests"))
        .into_iter()
        .filter(|f| !f.ends_with("_latest"))
        .collect()
}

#[tokio::test]
async fn damaged_manifest_is_a_typed_error() {
    for damage in ["truncate", "flip", "garbage", "empty"] {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::open(dir.path()).await.unwrap();
        let p = path("s", "f");
        store.write(&p, b"one").await.unwrap();
        store.write(&p, b"two").await.unwrap();
        let latest = manifest_files(dir.path()).pop().unwrap();
        let bytes = std::fs::read(&latest).unwrap();
        let new = match damage {
            "truncate" => bytes[..bytes.len() / 2].to_vec(),
            "flip" => {
                let mut b = bytes.clone();
                b[10] ^= 0x40;
                b
            }
            "garbage" => pseudo_random(bytes.len(), 9),
            _ => Vec::new(),
        };
        std::fs::write(&latest, new).unwrap();
        let fresh = LocalStorage::open(dir.path()).await.unwrap();
        let got = SegmentStorage::read(&fresh, &p).await;
        assert!(
            matches!(got, Err(Error::CorruptManifest { .. })),
            "{damage}: {got:?}"
        );
        let got = fresh.write(&p, b"three").await;
        assert!(
            matches!(got, Err(Error::CorruptManifest { .. })),
            "{damage}: {got:?}"
        );
    }
}

#[tokio::test]
async fn damaged_tree_node_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let p = path("s", "f");
    store.write(&p, b"one").await.unwrap();
    for node in files_under(&dir.path().join("trees")) {
        let mut b = std::fs::read(&node).unwrap();
        b[8] ^= 0xff;
        std::fs::write(&node, b).unwrap();
    }
    let fresh = LocalStorage::open(dir.path()).await.unwrap();
    let got = SegmentStorage::read(&fresh, &p).await;
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
}

#[tokio::test]
async fn identical_content_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let data = pseudo_random(8 * 1024 * 1024, 42);
    for shard in ["shard_0", "shard_1", "shard_2"] {
        store.write(&path(shard, "seg.idx"), &data).await.unwrap();
    }
    // Another collection too.
    let other = StoragePath::new("logs", StorageBackend::Vector, "x", "v.bin");
    store.write(&other, &data).await.unwrap();
    let blobs = blob_files(dir.path());
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert_eq!(
        std::fs::metadata(&blobs[0]).unwrap().len(),
        data.len() as u64
    );
    let name = blobs[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(name, blake3::hash(&data).to_hex().as_str());
    for shard in ["shard_0", "shard_1", "shard_2"] {
        assert_eq!(store.read(&path(shard, "seg.idx")).await.unwrap(), data);
    }
}

#[tokio::test]
async fn streaming_write_range_read_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let data = pseudo_random(5 * 1024 * 1024 + 123, 7);
    let p = path("s", "stream.bin");
    let info = store.write_stream(&p, &data[..]).await.unwrap();
    assert!(info.created);
    let meta = store.metadata(&p).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.id.to_hex(), blake3::hash(&data).to_hex().as_str());
    assert_eq!(
        store.read_bytes(&p).await.unwrap(),
        Bytes::from(data.clone())
    );
    let r = store.read_range(&p, 4096..8192).await.unwrap();
    assert_eq!(&r[..], &data[4096..8192]);
    let end = data.len() as u64;
    assert!(store.read_range(&p, end - 1..end).await.is_ok());
    assert!(matches!(
        store.read_range(&p, 0..end + 1).await,
        Err(Error::OutOfRange { .. })
    ));
    // Nothing left behind in the temp folder.
    assert!(files_under(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn transactions_are_atomic_and_detect_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let a = LocalStorage::open(dir.path()).await.unwrap();
    let b = LocalStorage::open(dir.path()).await.unwrap(); // a second handle, like another process
    a.write(&path("s", "x"), b"x0").await.unwrap();
    a.write(&path("s", "y"), b"y0").await.unwrap();

    // Multi-path commit: all or nothing.
    let mut tx = a.transaction("products").await.unwrap();
    tx.put(&path("s", "new"), Bytes::from_static(b"n"))
        .await
        .unwrap();
    tx.rename(&path("s", "y"), &path("s", "y2")).unwrap();
    tx.delete(&path("s", "x")).unwrap();
    tx.rename(&path("s", "missing"), &path("s", "z")).unwrap();
    assert!(matches!(tx.commit().await, Err(Error::NotFound { .. })));
    assert!(b.exists(&path("s", "x")).await.unwrap());
    assert!(!b.exists(&path("s", "new")).await.unwrap());

    // Disjoint concurrent change: rebased automatically.
    let mut tx = a.transaction("products").await.unwrap();
    tx.put(&path("s", "mine"), Bytes::from_static(b"m"))
        .await
        .unwrap();
    b.write(&path("s", "theirs"), b"t").await.unwrap();
    let info = tx.commit().await.unwrap();
    assert!(info.created);
    assert_eq!(a.read(&path("s", "theirs")).await.unwrap(), b"t");
    assert_eq!(b.read(&path("s", "mine")).await.unwrap(), b"m");

    // Same path changed since the base: Conflict, and nothing applied.
    let mut tx = a.transaction("products").await.unwrap();
    tx.put(&path("s", "x"), Bytes::from_static(b"from a"))
        .await
        .unwrap();
    tx.put(&path("s", "other"), Bytes::from_static(b"o"))
        .await
        .unwrap();
    b.write(&path("s", "x"), b"from b").await.unwrap();
    assert!(matches!(tx.commit().await, Err(Error::Conflict { .. })));
    assert_eq!(a.read(&path("s", "x")).await.unwrap(), b"from b");
    assert!(!a.exists(&path("s", "other")).await.unwrap());

    // A transaction cannot span collections.
    let mut tx = a.transaction("products").await.unwrap();
    let elsewhere = StoragePath::new("logs", StorageBackend::Tantivy, "s", "f");
    assert!(matches!(
        tx.put(&elsewhere, Bytes::new()).await,
        Err(Error::InvalidPath { .. })
    ));
    assert!(matches!(
        a.rename(&path("s", "x"), &elsewhere).await,
        Err(Error::InvalidPath { .. })
    ));
}

#[tokio::test]
async fn no_op_commits_create_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let p = path("s", "f");
    let v1 = store
        .write_bytes(&p, Bytes::from_static(b"a"))
        .await
        .unwrap();
    let again = store
        .write_bytes(&p, Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.version, v1.version);
    let gone = Store::delete(&store, &path("s", "missing")).await.unwrap();
    assert!(!gone.created);
    assert_eq!(store.head("products").await.unwrap().version, v1.version);
}

#[tokio::test]
async fn concurrent_tasks_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..4).map(|_| dir.path().to_path_buf()).collect();
    let mut tasks = Vec::new();
    for (w, root) in handles.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // Separate handles, so the in-process commit lock does not serialise them.
            let store = LocalStorage::open(&root).await.unwrap();
            for i in 0..15 {
                store
                    .write(
                        &path(&format!("w{w}"), &format!("f{i}")),
                        format!("{w}:{i}").as_bytes(),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let all = store
        .list(&StoragePath::unsharded(
            "products",
            StorageBackend::Tantivy,
            "",
        ))
        .await
        .unwrap();
    assert_eq!(all.len(), 60);
    assert_eq!(store.head("products").await.unwrap().version, 60);
}

#[tokio::test]
async fn open_file_handles_read_ranges_and_outlive_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::open(dir.path()).await.unwrap();
    let data = pseudo_random(300_000, 5);
    let p = path("s", "seg");
    store.write(&p, &data).await.unwrap();
    let file = store.open_file(&p).await.unwrap();
    assert_eq!(file.len(), data.len() as u64);
    assert!(file.resident().is_some(), "local blobs are mapped");
    assert_eq!(
        &file.read_range(1000..5096).await.unwrap()[..],
        &data[1000..5096]
    );
    assert!(matches!(
        file.read_range(0..data.len() as u64 + 1).await,
        Err(Error::OutOfRange { .. })
    ));
    // Replacing and deleting the path leaves the open handle's content intact.
    store.write(&p, b"replaced").await.unwrap();
    store.delete(&p).await.unwrap();
    assert_eq!(
        file.read_verified().await.unwrap(),
        Bytes::from(data.clone())
    );
    let small = path("s", "small");
    store.write(&small, b"tiny").await.unwrap();
    let f = store.open_file(&small).await.unwrap();
    assert_eq!(&f.read_range(1..3).await.unwrap()[..], b"in");
    assert!(matches!(
        store.open_file(&p).await,
        Err(Error::NotFound { .. })
    ));
}
