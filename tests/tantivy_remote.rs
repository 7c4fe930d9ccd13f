//! The adapter on plain S3 (moto), where stored files have no local mapping: file handles
//! read lazily, only the verified blocks around a range (or its read-ahead window), and
//! never serve damaged bytes.

mod support;
mod tantivy_support;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use segstore::backend::counting::{CountingBackend, RequestKind};
use segstore::backend::ObjectBackend;
use segstore::{
    keys, S3Storage, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions,
    TantivyAdapterOptions, TantivyStorageAdapter, DEFAULT_REMOTE_READ_AHEAD,
};
use tantivy::directory::FileHandle;
use tantivy::Directory;
use tantivy_support::{COLLECTION, SHARD};

/// Bytes per outboard group and per cached block (see `src/tantivy/remote.rs`).
const GROUP: usize = 16 * 1024;
const BLOCK: usize = 64 * 1024;

struct Case {
    rt: tokio::runtime::Runtime,
    /// Writes (with outboards, as S3Storage does).
    writer: S3Storage,
    /// Counts the reads of `reader`, which sees the same bucket.
    counting: CountingBackend,
    reader: TantivyStorageAdapter,
}

/// A fresh bucket, or `None` when moto is missing (outside CI); the reader fetches only
/// the blocks a read touches (no read-ahead).
fn case() -> Option<Case> {
    case_with(0)
}

fn case_with(read_ahead: u64) -> Option<Case> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = rt.block_on(support::moto::fresh_bucket())?;
    let writer = rt.block_on(S3Storage::connect(config)).unwrap();
    let s3: Arc<dyn ObjectBackend> = Arc::new(writer.s3().clone());
    let counting = CountingBackend::with_log(s3);
    let reader = reader_with(&rt, &counting, read_ahead);
    Some(Case {
        rt,
        writer,
        counting,
        reader,
    })
}

/// A new adapter (with an empty block cache) reading through `counting`.
fn reader_over(rt: &tokio::runtime::Runtime, counting: &CountingBackend) -> TantivyStorageAdapter {
    reader_with(rt, counting, 0)
}

fn reader_with(
    rt: &tokio::runtime::Runtime,
    counting: &CountingBackend,
    read_ahead: u64,
) -> TantivyStorageAdapter {
    let store = Store::new(Arc::new(counting.clone()), StoreOptions::default());
    let store: Arc<dyn SegmentStorage> = Arc::new(store);
    let options = TantivyAdapterOptions {
        remote_read_ahead: read_ahead,
        ..TantivyAdapterOptions::default()
    };
    rt.block_on(TantivyStorageAdapter::open_with(
        store, COLLECTION, SHARD, options,
    ))
    .unwrap()
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Case {
    fn put(&self, name: &str, data: &[u8]) -> segstore::BlobId {
        let path = StoragePath::new(COLLECTION, StorageBackend::Tantivy, SHARD, name);
        let store = self.writer.store();
        self.rt
            .block_on(store.write_bytes(&path, Bytes::copy_from_slice(data)))
            .unwrap();
        self.rt.block_on(store.entry(&path)).unwrap().unwrap().id
    }

    /// Requests on blob and outboard keys since the last reset.
    fn blob_requests(&self) -> Vec<(RequestKind, String)> {
        self.counting
            .log()
            .into_iter()
            .filter(|r| r.key.starts_with("blobs/"))
            .map(|r| (r.kind, r.key))
            .collect()
    }

    fn handle(&self, name: &str) -> Arc<dyn FileHandle> {
        self.reader.get_file_handle(Path::new(name)).unwrap()
    }
}

#[test]
fn a_small_range_of_a_large_file_fetches_only_the_blocks_around_it() {
    let Some(case) = case() else { return };
    let data = pseudo_random(8 * 1024 * 1024 + 123, 7);
    let id = case.put("big.bin", &data);

    case.counting.reset();
    let handle = case.handle("big.bin");
    assert_eq!(handle.len(), data.len());
    assert!(
        case.blob_requests().is_empty(),
        "opening a handle must not read the file: {:?}",
        case.blob_requests()
    );

    // Inside one block: the outboard once, then one 64 KiB range.
    let range = 5_000_000..5_000_100;
    let got = handle.read_bytes(range.clone()).unwrap();
    assert_eq!(got.as_slice(), &data[range]);
    let requests = case.blob_requests();
    let outboard_len = 12 + data.len().div_ceil(GROUP) * 32;
    assert_eq!(
        requests,
        vec![
            (RequestKind::Get, keys::outboard(&id).to_string()),
            (RequestKind::GetRange, keys::blob(&id).to_string()),
        ]
    );
    let read = case.counting.snapshot().bytes_read;
    assert!(
        read <= (outboard_len + BLOCK) as u64 + 64 * 1024,
        "{read} bytes read for 100 (file: {})",
        data.len()
    );

    // The same block again, and another handle on the same file: served from the cache.
    case.counting.reset();
    let range = 5_000_200..5_000_900;
    assert_eq!(
        handle.read_bytes(range.clone()).unwrap().as_slice(),
        &data[range]
    );
    let again = case.handle("big.bin");
    let range = 4_990_000..5_000_000;
    assert_eq!(
        again.read_bytes(range.clone()).unwrap().as_slice(),
        &data[range]
    );
    assert!(
        case.blob_requests().is_empty(),
        "{:?}",
        case.blob_requests()
    );

    // Across blocks, the tail, a wide read, and the async path.
    for range in [
        BLOCK - 10..3 * BLOCK + 10,
        data.len() - 5..data.len(),
        1_000_000..3_500_000,
        0..data.len(),
    ] {
        let got = handle.read_bytes(range.clone()).unwrap();
        assert_eq!(got.as_slice(), &data[range.clone()], "{range:?}");
    }
    // A wide read repeated exactly (as tantivy does) is served from the cache; one past an
    // eighth of the cache is not kept.
    case.counting.reset();
    let wide = 1_000_000..3_500_000;
    assert_eq!(
        handle.read_bytes(wide.clone()).unwrap().as_slice(),
        &data[wide]
    );
    assert!(
        case.blob_requests().is_empty(),
        "{:?}",
        case.blob_requests()
    );
    assert_eq!(
        handle.read_bytes(0..data.len()).unwrap().as_slice(),
        &data[..]
    );
    assert_eq!(case.blob_requests().len(), 1);

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let range = 7_000_000..7_000_033;
    let got = current
        .block_on(handle.read_bytes_async(range.clone()))
        .unwrap();
    assert_eq!(got.as_slice(), &data[range]);
    assert!(handle.read_bytes(0..data.len() + 1).is_err());
}

#[test]
fn reads_close_together_share_one_read_ahead_window() {
    let Some(case) = case_with(DEFAULT_REMOTE_READ_AHEAD) else {
        return;
    };
    let data = pseudo_random(8 * 1024 * 1024 + 123, 9);
    let id = case.put("big.bin", &data);
    let window = DEFAULT_REMOTE_READ_AHEAD as usize;
    let handle = case.handle("big.bin");
    case.counting.reset();

    // The first read fetches the aligned window around it: the outboard, one range.
    let start = 9 * window + 1000;
    let got = handle.read_bytes(start..start + 100).unwrap();
    assert_eq!(got.as_slice(), &data[start..start + 100]);
    assert_eq!(
        case.blob_requests(),
        vec![
            (RequestKind::Get, keys::outboard(&id).to_string()),
            (RequestKind::GetRange, keys::blob(&id).to_string()),
        ]
    );
    let outboard_len = 12 + data.len().div_ceil(GROUP) * 32;
    assert_eq!(
        case.counting.snapshot().bytes_read,
        (outboard_len + window) as u64
    );

    // Anywhere else in that window: no request.
    case.counting.reset();
    for at in [9 * window, 9 * window + window / 2, 10 * window - 50] {
        let got = handle.read_bytes(at..at + 50).unwrap();
        assert_eq!(got.as_slice(), &data[at..at + 50]);
    }
    assert!(
        case.blob_requests().is_empty(),
        "{:?}",
        case.blob_requests()
    );

    // A read straddling into the next window: one request for that window only (the
    // straddled block of the first is cached already).
    let across = 10 * window - 10..10 * window + 10;
    assert_eq!(
        handle.read_bytes(across.clone()).unwrap().as_slice(),
        &data[across]
    );
    assert_eq!(case.blob_requests().len(), 1);
    assert_eq!(
        case.counting.snapshot().bytes_read,
        window as u64,
        "only the new window is fetched"
    );
}

#[test]
fn damaged_ranges_on_s3_are_errors_never_bytes() {
    let Some(case) = case() else { return };
    let data = pseudo_random(3 * 1024 * 1024, 11);
    let id = case.put("big.bin", &data);
    let small = pseudo_random(200 * 1024, 13);
    let small_id = case.put("small.bin", &small);

    // Same lengths, one byte flipped in each: only the hash can tell.
    let damage = |id: &segstore::BlobId, bytes: &[u8], at: usize| {
        let mut bad = bytes.to_vec();
        bad[at] ^= 0x40;
        case.rt
            .block_on(case.writer.s3().put(&keys::blob(id), Bytes::from(bad)))
            .unwrap();
    };
    damage(&id, &data, 2_000_000);
    damage(&small_id, &small, 100);

    let handle = case.handle("big.bin");
    let err = handle.read_bytes(2_000_000..2_000_010).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    // Groups away from the damage still verify.
    assert_eq!(
        handle.read_bytes(10..200).unwrap().as_slice(),
        &data[10..200]
    );
    // A wide read over the damage, and the async path, fail too.
    assert!(handle.read_bytes(1_000_000..2_500_000).is_err());
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(current
        .block_on(handle.read_bytes_async(1_999_990..2_000_001))
        .is_err());

    // A blob too small for an outboard is checked whole, whatever range is asked for.
    let small_handle = case.handle("small.bin");
    assert!(small_handle.read_bytes(150_000..150_010).is_err());

    // Nothing damaged was cached: repaired objects read fine through the same adapter.
    case.rt
        .block_on(
            case.writer
                .s3()
                .put(&keys::blob(&id), Bytes::from(data.clone())),
        )
        .unwrap();
    let range = 2_000_000..2_000_010;
    assert_eq!(
        handle.read_bytes(range.clone()).unwrap().as_slice(),
        &data[range]
    );

    // A damaged outboard is refused too (a fresh adapter, which has not seen it yet).
    case.rt
        .block_on(case.writer.s3().put(
            &keys::outboard(&id),
            Bytes::from(pseudo_random(12 + 192 * 32, 17)),
        ))
        .unwrap();
    let fresh = reader_over(&case.rt, &case.counting);
    let handle = fresh.get_file_handle(Path::new("big.bin")).unwrap();
    assert!(handle.read_bytes(10..20).is_err());
}
