//! `CachedStorage`: write-through, verified reads, corruption in L1 and L2, restart, single
//! flight, bounded ranges, pinned maps, a budget proptest; on a local L2 and S3 (moto).

#[path = "support/counting.rs"]
mod counting;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use counting::Counting;
use segstore::backend::local::LocalBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::{
    keys, BlobId, CachedStorage, CachingBackend, Error, SegmentStorage, StorageBackend,
    StoragePath, StoreOptions,
};
use support::moto;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn path(name: &str) -> StoragePath {
    StoragePath::new("c", StorageBackend::Tantivy, "s0", name)
}

/// Deterministic, position-dependent bytes.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

async fn open(l1: &Path, budget: u64, l2: Arc<dyn ObjectBackend>) -> CachedStorage {
    CachedStorage::open(l1, budget, l2, StoreOptions::default())
        .await
        .expect("opening the cache")
}

fn l1_file(l1: &Path, id: &BlobId) -> PathBuf {
    l1.join("objects").join(keys::blob(id).as_str())
}

/// Sum of the sizes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// An L2 and whatever keeps it alive.
struct L2 {
    raw: Arc<dyn ObjectBackend>,
    _dir: Option<tempfile::TempDir>,
}

async fn local_l2() -> Option<L2> {
    let dir = tempfile::tempdir().unwrap();
    let raw = LocalBackend::open(dir.path().join("l2")).await.unwrap();
    Some(L2 {
        raw: Arc::new(raw),
        _dir: Some(dir),
    })
}

async fn s3_l2() -> Option<L2> {
    let config = moto::fresh_bucket().await?;
    let raw = S3Backend::connect(config)
        .await
        .expect("connecting to moto");
    Some(L2 {
        raw: Arc::new(raw),
        _dir: None,
    })
}

/// Instantiates each scenario over a local L2 and over S3 on moto.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod local_l2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let l2 = super::local_l2().await.unwrap();
                    super::$name(l2.raw.clone()).await;
                }
            )*
        }
        mod s3_l2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(l2) = super::s3_l2().await else { return };
                    super::$name(l2.raw.clone()).await;
                }
            )*
        }
    };
}

on_both!(
    write_through_and_restart,
    corrupt_l2_is_an_error_and_not_cached,
    damaged_l1_is_evicted_and_refetched,
    concurrent_misses_fetch_once,
    range_reads_fetch_only_what_they_need,
    cold_whole_reads_stream_once_and_verify,
    cold_whole_read_of_damaged_l2_caches_nothing,
);

async fn write_through_and_restart(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = tmp.path().join("l1");
    let l2 = Counting::new(raw.clone());
    let data = pattern(200 * KIB, 1);
    let p = path("seg.idx");
    let id = BlobId::of(&data);
    {
        let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
        cache.write(&p, &data).await.unwrap();
        assert_eq!(raw.get(&keys::blob(&id)).await.unwrap(), data);
        assert_eq!(cache.read(&p).await.unwrap(), data);
        let file = cache.open_file(&p).await.unwrap();
        assert_eq!(file.resident().map(|b| b.len()), Some(data.len()));
        assert_eq!(l2.of(&keys::blob(&id)).gets, 0, "write-through filled L1");
        let stats = cache.cache_stats();
        assert!(stats.hits >= 2 && stats.misses == 0, "{stats:?}");
    }
    {
        // Restart: the L1 files are counted, verified on first use, and served.
        let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
        assert!(cache.cache_stats().l1_entries > 0);
        assert_eq!(cache.read(&p).await.unwrap(), data);
        assert_eq!(l2.of(&keys::blob(&id)).gets, 0);
        assert_eq!(cache.cache_stats().verification_failures, 0);
    }
    let cache = open(&tmp.path().join("fresh"), 64 * MIB as u64, l2.clone()).await;
    assert_eq!(cache.read(&p).await.unwrap(), data);
    assert_eq!(cache.read(&p).await.unwrap(), data);
    let r = l2.of(&keys::blob(&id));
    assert_eq!((r.gets, r.bytes), (1, data.len() as u64));
    assert!(cache.cache_stats().bytes_from_l2 >= data.len() as u64);
}

async fn corrupt_l2_is_an_error_and_not_cached(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(100 * KIB, 2);
    let p = path("a");
    let id = BlobId::of(&data);
    let writer = open(&tmp.path().join("w"), 64 * MIB as u64, raw.clone()).await;
    writer.write(&p, &data).await.unwrap();
    let mut bad = data.to_vec();
    bad[777] ^= 0x40;
    raw.put(&keys::blob(&id), bad.into()).await.unwrap();

    let l1 = tmp.path().join("r");
    let reader = open(&l1, 64 * MIB as u64, raw.clone()).await;
    let err = reader.read(&p).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(!l1_file(&l1, &id).exists(), "corrupt content was cached");
    assert!(reader.cache_stats().verification_failures >= 1);
    assert!(matches!(
        reader.open_file(&p).await.unwrap_err(),
        Error::Corrupt { .. }
    ));
    // Repaired at the source: the next read succeeds and caches.
    raw.put(&keys::blob(&id), data.clone()).await.unwrap();
    assert_eq!(reader.read(&p).await.unwrap(), data);
    assert!(l1_file(&l1, &id).exists());
}

async fn damaged_l1_is_evicted_and_refetched(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = tmp.path().join("l1");
    let l2 = Counting::new(raw.clone());
    let data = pattern(300 * KIB, 3);
    let p = path("b");
    let id = BlobId::of(&data);
    let file = l1_file(&l1, &id);
    {
        let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
        cache.write(&p, &data).await.unwrap();
    }
    let damage: [Damage; 3] = [
        ("bit flip", |f| flip(f, 12_345)),
        ("truncation", |f| {
            let len = std::fs::metadata(f).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("deletion", |f| std::fs::remove_file(f).unwrap()),
    ];
    for (i, (what, hurt)) in damage.iter().enumerate() {
        hurt(&file);
        let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
        assert_eq!(cache.read(&p).await.unwrap(), data, "{what}");
        assert_eq!(
            l2.of(&keys::blob(&id)).gets,
            i as u64 + 1,
            "{what}: refetched"
        );
        if *what != "deletion" {
            assert_eq!(cache.cache_stats().verification_failures, 1, "{what}");
        }
        assert_eq!(std::fs::read(&file).unwrap(), data, "{what}: L1 repaired");
    }
    // Damage while running, after the file was verified once in this process: the blob
    // layer's own check catches it, the cache drops its copy, one retry reads L2.
    let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
    assert_eq!(cache.read(&p).await.unwrap(), data);
    flip(&file, 99);
    assert_eq!(cache.read(&p).await.unwrap(), data);
    assert_eq!(l2.of(&keys::blob(&id)).gets, 4);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(cache.read(&p).await.unwrap(), data);
    assert_eq!(l2.of(&keys::blob(&id)).gets, 5);
}

/// A named way to damage an L1 file.
type Damage = (&'static str, fn(&Path));

fn flip(file: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
}

/// `n` concurrent whole reads of `p`, each of which must return `expected`.
async fn concurrent_reads(cache: &CachedStorage, p: &StoragePath, n: usize, expected: &[u8]) {
    let reads: Vec<_> = (0..n)
        .map(|_| {
            let (cache, p) = (cache.clone(), p.clone());
            tokio::spawn(async move { cache.read_bytes(&p).await })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), expected);
    }
}

async fn concurrent_misses_fetch_once(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(500 * KIB, 4);
    let p = path("c");
    let id = BlobId::of(&data);
    let writer = open(&tmp.path().join("w"), 64 * MIB as u64, raw.clone()).await;
    writer.write(&p, &data).await.unwrap();

    let l2 = Counting::with_delay(raw.clone(), Duration::from_millis(100));
    let cache = open(&tmp.path().join("r"), 64 * MIB as u64, l2.clone()).await;
    cache.head("c").await.unwrap(); // resolve the manifest first
    concurrent_reads(&cache, &p, 16, &data).await;
    assert_eq!(
        l2.of(&keys::blob(&id)).gets,
        1,
        "one L2 fetch for 16 misses"
    );
    assert_eq!(
        cache.cache_stats().misses,
        cache.cache_stats().misses.min(4)
    );
}

async fn range_reads_fetch_only_what_they_need(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(8 * MIB + 1234, 5);
    let p = path("big");
    let id = BlobId::of(&data);
    let writer = open(&tmp.path().join("w"), 64 * MIB as u64, raw.clone()).await;
    writer
        .write_stream(&p, std::io::Cursor::new(data.to_vec()))
        .await
        .unwrap();
    assert!(raw.head(&keys::outboard(&id)).await.unwrap().is_some());

    let l2 = Counting::new(raw.clone());
    let cache = open(&tmp.path().join("r"), 64 * MIB as u64, l2.clone()).await;
    let (blob, ob) = (keys::blob(&id), keys::outboard(&id));
    let r = 3_000_000u64..3_004_096;
    let got = cache.read_range(&p, r.clone()).await.unwrap();
    assert_eq!(got, data.slice(r.start as usize..r.end as usize));
    let (b, o) = (l2.of(&blob), l2.of(&ob));
    assert_eq!(b.gets, 0, "no whole-blob fetch");
    assert!(
        b.bytes <= 32 * KIB as u64,
        "4 KiB read moved {} bytes",
        b.bytes
    );
    let ob_size = (data.len() as u64).div_ceil(16 * KIB as u64) * 32 + 12;
    assert_eq!(o.bytes, ob_size);
    // The next 4 KiB lie in the same verified group: kept in memory, not fetched again.
    // A range reaching one group further fetches only that group.
    let next = r.end..r.end + 4096;
    let got = cache.read_range(&p, next.clone()).await.unwrap();
    assert_eq!(got, data.slice(next.start as usize..next.end as usize));
    assert_eq!(l2.of(&blob).bytes, b.bytes, "refetched a verified group");
    let across = 3_010_000u64..3_020_000;
    let got = cache.read_range(&p, across.clone()).await.unwrap();
    assert_eq!(got, data.slice(across.start as usize..across.end as usize));
    assert_eq!(l2.of(&blob).bytes, b.bytes + 16 * KIB as u64);
    let b = l2.of(&blob);
    // More ranges: the outboard is not fetched again; a 1 MiB range costs ~1 MiB.
    let r = 5 * MIB as u64 + 7..6 * MIB as u64 + 7;
    let got = cache.read_range(&p, r.clone()).await.unwrap();
    assert_eq!(got, data.slice(r.start as usize..r.end as usize));
    assert_eq!(l2.of(&ob).bytes, ob_size);
    assert!(l2.of(&blob).bytes - b.bytes <= (MIB + 32 * KIB) as u64);
    let tail = data.len() as u64 - 10..data.len() as u64;
    assert_eq!(
        cache.read_range(&p, tail.clone()).await.unwrap(),
        data.slice(tail.start as usize..)
    );
    assert!(cache.read_range(&p, 5..5).await.unwrap().is_empty());
    assert!(matches!(
        cache.read_range(&p, 0..data.len() as u64 + 1).await,
        Err(Error::OutOfRange { .. })
    ));

    // Damage in L2 inside a range is caught; ranges elsewhere still verify.
    let mut bad = data.to_vec();
    bad[7 * MIB + 5] ^= 0x10;
    // (Deleted first: LocalBackend keeps mappings of blobs, which never change.)
    raw.delete(&blob).await.unwrap();
    raw.put(&blob, bad.into()).await.unwrap();
    let cache = open(&tmp.path().join("r2"), 64 * MIB as u64, l2.clone()).await;
    let err = cache
        .read_range(&p, 7 * MIB as u64..7 * MIB as u64 + 100)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert_eq!(
        cache.read_range(&p, 0..100).await.unwrap(),
        data.slice(..100)
    );
}

/// Writes a blob large enough to be streamed by a fill (several 4 MiB pieces), with its
/// outboard, through a separate cache; returns its path, bytes and id.
async fn big_blob(
    raw: &Arc<dyn ObjectBackend>,
    dir: &Path,
    seed: u8,
) -> (StoragePath, Bytes, BlobId) {
    let data = pattern(9 * MIB + 4321, seed);
    let p = path(&format!("big{seed}"));
    let writer = open(dir, 64 * MIB as u64, raw.clone()).await;
    writer
        .write_stream(&p, std::io::Cursor::new(data.to_vec()))
        .await
        .unwrap();
    let id = BlobId::of(&data);
    (p, data, id)
}

async fn cold_whole_reads_stream_once_and_verify(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let (p, data, id) = big_blob(&raw, &tmp.path().join("w"), 21).await;
    let key = keys::blob(&id);
    let size = data.len() as u64;
    let l2 = Counting::new(raw.clone());

    // Concurrent cold reads: one streamed fill, every byte fetched once, in ranges.
    let l1 = tmp.path().join("r");
    let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
    cache.head("c").await.unwrap();
    concurrent_reads(&cache, &p, 6, &data).await;
    let r = l2.of(&key);
    assert_eq!(
        (r.gets, r.bytes),
        (1, size),
        "one fetch for 6 misses: {r:?}"
    );
    assert_eq!(std::fs::read(l1_file(&l1, &id)).unwrap(), data);
    assert_eq!(disk_bytes(&l1.join("tmp")), 0);
    assert_eq!(cache.cache_stats().verification_failures, 0);

    // The cache hashed what it filled and says so, so the blob layer does not hash it
    // again; an L1 hit is not vouched for (disk can rot), so the caller hashes it.
    let backend = cache.cache().clone();
    let fresh = CachingBackend::open(tmp.path().join("r2"), 64 * MIB as u64, l2.clone())
        .await
        .unwrap();
    let filled = (&fresh as &dyn ObjectBackend)
        .get_blob(&key, &id, size)
        .await
        .unwrap();
    assert!(filled.verified);
    assert_eq!(filled.bytes, data);
    let hit = (&fresh as &dyn ObjectBackend)
        .get_blob(&key, &id, size)
        .await
        .unwrap();
    assert!(!hit.verified);
    assert_eq!(hit.bytes, data);
    assert_eq!(
        l2.of(&key).bytes,
        2 * size,
        "one more fill, for the second cache"
    );
    drop(backend);

    // A cold open (mapping) streams too; the mapping is the L1 file.
    let l1 = tmp.path().join("r3");
    let cache = open(&l1, 64 * MIB as u64, l2.clone()).await;
    let file = cache.open_file(&p).await.unwrap();
    assert_eq!(file.resident().unwrap(), &data);
    assert_eq!((l2.of(&key).gets, l2.of(&key).bytes), (3, 3 * size));
    assert!(l1_file(&l1, &id).exists());

    // Bigger than the whole budget: served from an unlinked temp file, nothing kept.
    let l1 = tmp.path().join("small");
    let cache = open(&l1, 2 * MIB as u64, l2.clone()).await;
    assert_eq!(cache.read_bytes(&p).await.unwrap(), data);
    assert_eq!(disk_bytes(&l1.join("objects").join("blobs")), 0);
    assert_eq!(disk_bytes(&l1.join("tmp")), 0);
    assert!(cache.cache_stats().not_cached >= 1);
}

async fn cold_whole_read_of_damaged_l2_caches_nothing(raw: Arc<dyn ObjectBackend>) {
    let tmp = tempfile::tempdir().unwrap();
    let (p, data, id) = big_blob(&raw, &tmp.path().join("w"), 22).await;
    let key = keys::blob(&id);
    let damage: [(&str, Bytes); 3] = [
        ("bit flip in the last piece", {
            let mut bad = data.to_vec();
            bad[data.len() - 3] ^= 0x08;
            bad.into()
        }),
        ("truncated", data.slice(..data.len() - 1)),
        ("extended", {
            let mut bad = data.to_vec();
            bad[5] ^= 0x01;
            bad.extend_from_slice(b"tail");
            bad.into()
        }),
    ];
    for (i, (what, bad)) in damage.into_iter().enumerate() {
        // (Deleted first: LocalBackend keeps mappings of blobs, which never change.)
        raw.delete(&key).await.unwrap();
        raw.put(&key, bad).await.unwrap();
        let l1 = tmp.path().join(format!("r{i}"));
        let cache = open(&l1, 64 * MIB as u64, raw.clone()).await;
        let err = cache.read_bytes(&p).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err:?}");
        let err = cache.open_file(&p).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err:?}");
        let stats = cache.cache_stats();
        assert!(stats.verification_failures >= 1, "{what}: {stats:?}");
        // (Manifest and tree nodes are cached: they verified.)
        assert!(stats.l1_bytes < 4096, "{what}: {stats:?}");
        assert!(
            !l1_file(&l1, &id).exists(),
            "{what}: corrupt content cached"
        );
        assert_eq!(disk_bytes(&l1.join("objects").join("blobs")), 0, "{what}");
        assert_eq!(disk_bytes(&l1.join("tmp")), 0, "{what}: temp file left");
    }
    raw.delete(&key).await.unwrap();
    raw.put(&key, data.clone()).await.unwrap();
    let l1 = tmp.path().join("repaired");
    let cache = open(&l1, 64 * MIB as u64, raw.clone()).await;
    assert_eq!(cache.read_bytes(&p).await.unwrap(), data);
    assert!(l1_file(&l1, &id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_blobs_are_not_evicted_and_the_budget_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let l2 = local_l2().await.unwrap();
    let l1 = tmp.path().join("l1");
    let budget = 400 * KIB as u64;
    let cache = open(&l1, budget, l2.raw.clone()).await;
    let first = pattern(150 * KIB, 9);
    cache.write(&path("pinned"), &first).await.unwrap();
    let handle = cache.open_file(&path("pinned")).await.unwrap();
    for i in 0..10u8 {
        cache
            .write(&path(&format!("f{i}")), &pattern(100 * KIB, i))
            .await
            .unwrap();
        assert!(cache.cache_stats().l1_bytes <= budget);
        assert!(disk_bytes(&l1.join("objects")) <= budget);
    }
    assert!(
        l1_file(&l1, &BlobId::of(&first)).exists(),
        "mapped blob evicted"
    );
    assert_eq!(
        handle.read_range(0..first.len() as u64).await.unwrap(),
        first
    );
    let stats = cache.cache_stats();
    assert!(stats.evictions > 0, "{stats:?}");
    drop(handle);
    for i in 0..4u8 {
        let p = path(&format!("g{i}"));
        cache.write(&p, &pattern(100 * KIB, 50 + i)).await.unwrap();
    }
    assert!(
        !l1_file(&l1, &BlobId::of(&first)).exists(),
        "unpinned, then evicted"
    );
    // A blob bigger than the whole budget is served but never cached.
    let huge = pattern(600 * KIB, 77);
    cache.write(&path("huge"), &huge).await.unwrap();
    assert_eq!(cache.read(&path("huge")).await.unwrap(), huge);
    assert!(disk_bytes(&l1.join("objects")) <= budget);

    // Restart with a smaller budget: old files are counted and evicted down to it.
    drop(cache);
    let cache = open(&l1, 150 * KIB as u64, l2.raw.clone()).await;
    assert!(cache.cache_stats().l1_bytes <= 150 * KIB as u64);
    assert!(disk_bytes(&l1.join("objects")) <= 150 * KIB as u64);
    // A second open of the same directory in this process shares the cache (its budget
    // stays the first opener's).
    let again = CachedStorage::open(&l1, budget, l2.raw.clone(), StoreOptions::default())
        .await
        .expect("a second open in one process shares the cache");
    assert_eq!(again.cache_stats().l1_capacity, 150 * KIB as u64);
}

/// Eviction takes the least recently *used* entry, not the oldest fill: reads count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_follows_use_not_fill_order() {
    let tmp = tempfile::tempdir().unwrap();
    let l2 = local_l2().await.unwrap();
    let l1 = tmp.path().join("l1");
    let cache = open(&l1, 350 * KIB as u64, l2.raw.clone()).await;
    let blob = |i: u8| pattern(100 * KIB, 100 + i);
    let cached = |i: u8| l1_file(&l1, &BlobId::of(&blob(i))).exists();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        cache.write(&path(name), &blob(i as u8)).await.unwrap();
    }
    // Use a, then add d: b is now the least recently used.
    assert_eq!(cache.read(&path("a")).await.unwrap(), blob(0));
    cache.write(&path("d"), &blob(3)).await.unwrap();
    assert!(cached(0) && !cached(1) && cached(2) && cached(3));
    // Use c, then add e: a (used before c and d) goes.
    assert_eq!(cache.read(&path("c")).await.unwrap(), blob(2));
    cache.write(&path("e"), &blob(4)).await.unwrap();
    assert!(!cached(0) && cached(2) && cached(3) && cached(4));
    assert!(cache.cache_stats().evictions >= 2);
}

mod budget_proptest {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Write(u8, usize, u8),
        Read(u8),
        Range(u8, u32),
        Open(u8),
        Restart(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let size = prop_oneof![
            Just(3 * KIB),
            Just(20 * KIB),
            Just(70 * KIB),
            Just(200 * KIB),
            Just(700 * KIB),
            Just(1300 * KIB),
            // Streamed by fills (over 4 MiB): cached or not, depending on the budget.
            Just(4 * MIB + 3 * KIB),
        ];
        prop_oneof![
            3 => (0..6u8, size, any::<u8>()).prop_map(|(f, s, seed)| Op::Write(f, s, seed)),
            3 => (0..6u8).prop_map(Op::Read),
            2 => (0..6u8, any::<u32>()).prop_map(|(f, o)| Op::Range(f, o)),
            1 => (0..6u8).prop_map(Op::Open),
            1 => prop_oneof![Just(256u64), Just(512), Just(1024), Just(6144)].prop_map(Op::Restart),
        ]
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("SEGSTORE_PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(12),
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "proptest-regressions/cache.txt",
            ))),
            ..ProptestConfig::default()
        }
    }

    async fn run(ops: Vec<Op>) {
        let tmp = tempfile::tempdir().unwrap();
        let l2 = local_l2().await.unwrap();
        let l1 = tmp.path().join("l1");
        let mut budget = 512 * KIB as u64;
        let mut cache = Some(open(&l1, budget, l2.raw.clone()).await);
        let mut model: HashMap<u8, Bytes> = HashMap::new();
        for op in ops {
            let c = cache.as_ref().unwrap();
            match op {
                Op::Write(f, size, seed) => {
                    let data = pattern(size, seed);
                    c.write(&path(&format!("f{f}")), &data).await.unwrap();
                    model.insert(f, data);
                }
                Op::Read(f) => match model.get(&f) {
                    Some(d) => assert_eq!(&c.read_bytes(&path(&format!("f{f}"))).await.unwrap(), d),
                    None => assert!(c.read(&path(&format!("f{f}"))).await.is_err()),
                },
                Op::Range(f, o) => {
                    if let Some(d) = model.get(&f) {
                        let start = o as u64 % d.len() as u64;
                        let end = (start + 4096).min(d.len() as u64);
                        let got = c
                            .read_range(&path(&format!("f{f}")), start..end)
                            .await
                            .unwrap();
                        assert_eq!(got, d.slice(start as usize..end as usize));
                    }
                }
                Op::Open(f) => {
                    if let Some(d) = model.get(&f) {
                        let h = c.open_file(&path(&format!("f{f}"))).await.unwrap();
                        assert_eq!(&h.read_verified().await.unwrap(), d);
                    }
                }
                Op::Restart(kib) => {
                    drop(cache.take());
                    budget = kib * KIB as u64;
                    cache = Some(open(&l1, budget, l2.raw.clone()).await);
                }
            }
            let stats = cache.as_ref().unwrap().cache_stats();
            assert!(stats.l1_bytes <= budget, "{stats:?}");
            assert!(disk_bytes(&l1.join("objects")) <= budget, "{stats:?}");
        }
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn budget_holds_and_reads_match(ops in proptest::collection::vec(op(), 1..24)) {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(ops));
        }
    }
}

/// Issue 15: several stores from one config in one process, one store identity, no stale
/// roots, verify on L2, range reads of blobs without outboard.
mod store_bound {
    use super::*;
    use segstore::gc::{VerifyOptions, VerifyTier};
    use segstore::{LocalStorage, StorageConfig, Target};

    fn cached_config(l1: &Path, l2: &Path) -> StorageConfig {
        let text = format!(
            "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = {:?}\n\
             [storage.cached]\nl1_path = {:?}\nl1_max_size_gb = 0.01\nl2_backend = \"local\"\n",
            l2.display().to_string(),
            l1.display().to_string()
        );
        StorageConfig::from_toml_str_with_env(&text, |_| None).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_opened_from_one_config_share_one_l1() {
        let tmp = tempfile::tempdir().unwrap();
        let config = cached_config(&tmp.path().join("l1"), &tmp.path().join("l2"));
        // Prism's factory: one store per backend, from the same config.
        let text = config.open().await.expect("first open");
        let vector = config
            .open()
            .await
            .expect("second open of the same L1 directory");
        let graph = config.open_store().await.expect("third open");
        let big = pattern(300 * KIB, 1);
        text.write(&path("shared"), &big).await.unwrap();
        assert_eq!(vector.read(&path("shared")).await.unwrap(), big);
        assert_eq!(graph.read_bytes(&path("shared")).await.unwrap(), big);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_l1_opened_twice_shares_budget_and_index() {
        let l2 = local_l2().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let l1 = tmp.path().join("l1");
        let a = open(&l1, 4 * MIB as u64, l2.raw.clone()).await;
        let b = open(&l1, 4 * MIB as u64, l2.raw.clone()).await;
        let big = pattern(300 * KIB, 2);
        a.write(&path("x"), &big).await.unwrap();
        let before = b.cache_stats();
        assert_eq!(b.read_bytes(&path("x")).await.unwrap(), big);
        let after = b.cache_stats();
        assert_eq!(
            after.misses, before.misses,
            "the other store's copy is a hit"
        );
        assert_eq!(a.cache_stats().l1_entries, b.cache_stats().l1_entries);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_l1_held_by_another_process_names_it() {
        let l2 = local_l2().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let l1 = tmp.path().join("l1");
        std::fs::create_dir_all(&l1).unwrap();
        // Another process holds the lock and has written its pid, as a cache does.
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg("echo $$ > LOCK && exec flock -n LOCK sleep 30")
            .current_dir(&l1)
            .spawn()
            .expect("spawning a lock holder");
        let pid = holder.id();
        let mut err = None;
        for _ in 0..100 {
            match CachedStorage::open(&l1, MIB as u64, l2.raw.clone(), StoreOptions::default())
                .await
            {
                Ok(c) => drop(c), // the holder has not taken the lock yet
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = holder.kill();
        let _ = holder.wait();
        let err = err.expect("the held directory was refused");
        let message = err.to_string();
        println!("{message}");
        assert!(message.contains(&format!("process {pid}")), "{message}");
        assert!(message.contains("l1_path"), "{message}");
        assert!(
            matches!(err, Error::CacheLocked { holder: Some(p), .. } if p == pid),
            "{err:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_l1_over_a_wiped_l2_serves_nothing_of_the_old_store() {
        let tmp = tempfile::tempdir().unwrap();
        let (l1, l2_dir) = (tmp.path().join("l1"), tmp.path().join("l2"));
        {
            let l2: Arc<dyn ObjectBackend> = Arc::new(LocalBackend::open(&l2_dir).await.unwrap());
            let cache = open(&l1, 8 * MIB as u64, l2).await;
            cache.write(&path("a"), b"old namespace").await.unwrap();
            cache.read_bytes(&path("a")).await.unwrap();
        }
        // L2 is wiped and used by someone else: version 1 is theirs now.
        std::fs::remove_dir_all(&l2_dir).unwrap();
        let other = LocalStorage::open(&l2_dir).await.unwrap();
        other.write(&path("b"), b"new namespace").await.unwrap();
        let l2: Arc<dyn ObjectBackend> = Arc::new(LocalBackend::open(&l2_dir).await.unwrap());
        let cache = open(&l1, 8 * MIB as u64, l2).await;
        assert_eq!(
            cache.read(&path("b")).await.expect("the new store's file"),
            b"new namespace"
        );
        assert!(
            cache.read(&path("a")).await.is_err(),
            "old store's file served"
        );
        // A commit builds on the new store's root and keeps its file.
        cache.write(&path("c"), b"mine").await.unwrap();
        assert_eq!(other.read(&path("b")).await.unwrap(), b"new namespace");
        assert_eq!(other.read(&path("c")).await.unwrap(), b"mine");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_deleted_in_l2_is_not_served_from_l1() {
        let l2 = local_l2().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cache = open(&tmp.path().join("l1"), 8 * MIB as u64, l2.raw.clone()).await;
        cache.write(&path("a"), b"one").await.unwrap();
        cache.write(&path("a"), b"two").await.unwrap();
        cache.write(&path("a"), b"three").await.unwrap();
        cache.root_at("c", 1).await.expect("version 1 is retained");
        // Another process's GC deletes version 1 in L2.
        l2.raw.delete(&keys::manifest("c", 1)).await.unwrap();
        let err = cache.root_at("c", 1).await.expect_err("version 1 is gone");
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            cache.restore("c", &Target::Version(1)).await.is_err(),
            "restored a deleted version"
        );
        assert!(
            cache
                .create_snapshot("c", "pin", Some(1), None)
                .await
                .is_err(),
            "pinned a deleted version"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_on_the_cached_tier_checks_l2() {
        let l2 = local_l2().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cache = open(&tmp.path().join("l1"), 8 * MIB as u64, l2.raw.clone()).await;
        let data = pattern(200 * KIB, 3);
        cache.write(&path("v"), &data).await.unwrap();
        assert_eq!(cache.read_bytes(&path("v")).await.unwrap(), data);
        let id = BlobId::of(&data);
        // L2 loses the blob; L1 still has it.
        l2.raw.delete(&keys::blob(&id)).await.unwrap();
        let report = cache.verify(&VerifyOptions::default()).await.unwrap();
        println!("{report:?}");
        assert_eq!(report.missing, vec![id], "verify must check L2");
        assert!(!report.is_healthy());
        assert!(!report.tier.contains("L1"), "{}", report.tier);
        let through_l1 = cache
            .verify(&VerifyOptions {
                tier: VerifyTier::Cache,
                ..VerifyOptions::default()
            })
            .await
            .unwrap();
        assert!(through_l1.tier.contains("L1"), "{}", through_l1.tier);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_reads_of_a_large_blob_without_outboard_fetch_it_whole_once() {
        // The blob comes in without an outboard (a local store writes none, as an import
        // does), and exceeds the L1 budget.
        let l2 = local_l2().await.unwrap();
        let big = pattern(8 * MIB + 268, 4);
        let id = BlobId::of(&big);
        let plain = segstore::Store::new(l2.raw.clone(), StoreOptions::default());
        plain.write_bytes(&path("big"), big.clone()).await.unwrap();
        assert!(l2.raw.head(&keys::outboard(&id)).await.unwrap().is_none());
        let tmp = tempfile::tempdir().unwrap();
        let cache = open(&tmp.path().join("l1"), 2 * MIB as u64, l2.raw.clone()).await;
        let first = cache.read_range(&path("big"), 1000..1010).await.unwrap();
        assert_eq!(first, big.slice(1000..1010));
        let after_first = cache.cache_stats().bytes_from_l2;
        for at in [5 * MIB as u64, 7 * MIB as u64, 100] {
            let got = cache.read_range(&path("big"), at..at + 10).await.unwrap();
            assert_eq!(got, big.slice(at as usize..at as usize + 10));
        }
        let later = cache.cache_stats().bytes_from_l2 - after_first;
        println!("first read pulled {after_first} bytes, three more pulled {later}");
        assert!(later < 256 * KIB as u64, "later reads pulled {later} bytes");
        assert!(
            l2.raw.head(&keys::outboard(&id)).await.unwrap().is_some(),
            "the rebuilt outboard is stored in L2"
        );
        // Another process (a fresh cache) finds it and pulls no whole blob.
        drop(cache);
        let tmp2 = tempfile::tempdir().unwrap();
        let fresh = open(&tmp2.path().join("l1"), 2 * MIB as u64, l2.raw.clone()).await;
        fresh.read_range(&path("big"), 10..20).await.unwrap();
        assert!(fresh.cache_stats().bytes_from_l2 < 256 * KIB as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_never_tee_more_than_the_budget() {
        let l2 = local_l2().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let l1 = tmp.path().join("l1");
        let budget = MIB as u64;
        let cache = open(&l1, budget, l2.raw.clone()).await;
        // Four uploads in flight at once, each as large as the whole budget.
        let mut uploads = Vec::new();
        for _ in 0..4 {
            uploads.push(cache.cache().begin_upload().await.unwrap());
        }
        for round in 0..4u8 {
            for up in uploads.iter_mut() {
                up.write(pattern(256 * KIB, round)).await.unwrap();
            }
        }
        let in_flight = disk_bytes(&l1.join("tmp"));
        println!("tmp/ holds {in_flight} bytes for a {budget}-byte budget");
        assert!(in_flight <= budget, "{in_flight} bytes in flight");
        assert!(cache.cache_stats().l1_bytes <= budget);
        for up in uploads {
            up.abort().await.unwrap();
        }
        assert_eq!(cache.cache_stats().l1_bytes, 0, "reservations given back");
    }
}
