//! The conformance suite every [`ObjectBackend`] must pass (feature `testing`).
//!
//! segstore's commit protocol rests on the guarantees stated on [`ObjectBackend`]: atomic
//! visibility, read-after-write, exactly one winner of a create-only write, sorted
//! listings that never show an upload in progress. These cases check them; the memory,
//! local and S3 backends run them in segstore's own tests, and an implementer of a new
//! backend runs them on theirs:
//!
//! ```
//! use std::sync::Arc;
//! use segstore::backend::memory::MemoryBackend;
//! use segstore::backend::ObjectBackend;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // Each case gets a fresh, empty backend from the closure.
//! segstore::testing::conformance::run_all(|| async {
//!     Arc::new(MemoryBackend::new()) as Arc<dyn ObjectBackend>
//! })
//! .await;
//! # }
//! ```
//!
//! Each case is also a public function of one backend, for one test per case. Cases panic
//! (with the case's name, through [`run_all`]) when the backend breaks a guarantee. They
//! need a multi-threaded tokio runtime, an empty backend each, and about 40 MiB of memory
//! (the large upload).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;

use crate::backend::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::keys::ObjectKey;
use crate::Error;

const MIB: usize = 1024 * 1024;
/// Bigger than S3's smallest part size (5 MiB): several parts.
const LARGE: usize = 20 * MIB;

/// The name of every case, in the order [`run_all`] runs them.
pub const CASES: [&str; 12] = [
    "get_put_overwrite",
    "missing_is_not_found",
    "get_range",
    "head_sizes",
    "put_if_absent_one_winner",
    "delete",
    "list_sorted_with_prefix",
    "touch_refreshes_last_modified",
    "upload_small",
    "upload_large",
    "publish_onto_existing",
    "abort_leaves_nothing",
];

/// Runs every case, each on a fresh backend from `make`, and panics naming the first
/// case that fails.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ObjectBackend>>,
{
    for name in CASES {
        let backend = make().await;
        let described = backend.describe();
        if let Err(panic) = AssertUnwindSafe(run_case(name, backend))
            .catch_unwind()
            .await
        {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("conformance case {name} failed on {described}: {message}");
        }
    }
}

/// Runs the case named `name` (one of [`CASES`]) on `backend`.
///
/// # Panics
///
/// When the backend fails the case, or `name` is no case.
pub async fn run_case(name: &str, backend: Arc<dyn ObjectBackend>) {
    match name {
        "get_put_overwrite" => get_put_overwrite(backend).await,
        "missing_is_not_found" => missing_is_not_found(backend).await,
        "get_range" => get_range(backend).await,
        "head_sizes" => head_sizes(backend).await,
        "put_if_absent_one_winner" => put_if_absent_one_winner(backend).await,
        "delete" => delete(backend).await,
        "list_sorted_with_prefix" => list_sorted_with_prefix(backend).await,
        "touch_refreshes_last_modified" => touch_refreshes_last_modified(backend).await,
        "upload_small" => upload_small(backend).await,
        "upload_large" => upload_large(backend).await,
        "publish_onto_existing" => publish_onto_existing(backend).await,
        "abort_leaves_nothing" => abort_leaves_nothing(backend).await,
        other => panic!("no conformance case {other:?}"),
    }
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).expect("valid test key")
}

/// Deterministic, position-dependent bytes, so a misplaced part or range shows: for a
/// backend's own cases beside the suite's.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn keys_of(metas: &[ObjectMeta]) -> Vec<&str> {
    metas.iter().map(|m| m.key.as_str()).collect()
}

/// Writes `data` to `upload` in uneven chunks (about 0.8 to 3 MiB), so that a backend's
/// part boundaries never line up with write boundaries.
///
/// # Panics
///
/// When a write fails.
pub async fn write_in_chunks(upload: &mut dyn Upload, data: &Bytes) {
    let mut offset = 0;
    let mut step = 777_777;
    while offset < data.len() {
        let end = (offset + step).min(data.len());
        upload
            .write(data.slice(offset..end))
            .await
            .expect("upload write");
        offset = end;
        step = step * 3 / 2 % (3 * MIB) + 1;
    }
}

/// `put` creates and replaces; `get` returns the last bytes put, empty objects included.
pub async fn get_put_overwrite(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/aa/first");
    b.put(&k, Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), "one");
    b.put(&k, Bytes::from_static(b"second version"))
        .await
        .unwrap();
    assert_eq!(b.get(&k).await.unwrap(), "second version");
    let empty = key("blobs/aa/empty");
    b.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(b.get(&empty).await.unwrap().len(), 0);
}

/// A missing object is `NotFound` for `get`, `get_range` (even an empty range) and `touch`, and `None` for `head`.
pub async fn missing_is_not_found(b: Arc<dyn ObjectBackend>) {
    let k = key("manifests/c/00000000000000000001");
    assert!(b.get(&k).await.unwrap_err().is_not_found());
    assert!(b.get_range(&k, 0..1).await.unwrap_err().is_not_found());
    assert!(b.get_range(&k, 0..0).await.unwrap_err().is_not_found());
    assert!(b.head(&k).await.unwrap().is_none());
    assert!(b.touch(&k).await.unwrap_err().is_not_found());
}

/// `get_range` returns exactly the bytes asked for; an empty range is allowed; a range past the end is `OutOfRange` with the object's size.
pub async fn get_range(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/ab/ranged");
    let data = pattern(10_000, 1);
    b.put(&k, data.clone()).await.unwrap();
    assert_eq!(b.get_range(&k, 0..10_000).await.unwrap(), data);
    assert_eq!(
        b.get_range(&k, 123..4567).await.unwrap(),
        data.slice(123..4567)
    );
    assert_eq!(
        b.get_range(&k, 9_999..10_000).await.unwrap(),
        data.slice(9_999..)
    );
    assert!(b.get_range(&k, 0..0).await.unwrap().is_empty());
    assert!(b.get_range(&k, 10_000..10_000).await.unwrap().is_empty());
    for bad in [
        9_000..10_001,
        10_000..10_001,
        20_000..20_010,
        10_001..10_001,
    ] {
        match b.get_range(&k, bad.clone()).await {
            Err(Error::OutOfRange {
                start, end, size, ..
            }) => {
                assert_eq!((start, end, size), (bad.start, bad.end, 10_000));
            }
            other => panic!("{bad:?}: expected OutOfRange, got {other:?}"),
        }
    }
}

/// `head` reports the key and the exact size (0, 1 and more bytes).
pub async fn head_sizes(b: Arc<dyn ObjectBackend>) {
    for (name, len) in [("zero", 0), ("one", 1), ("some", 4321)] {
        let k = key(&format!("trees/cd/{name}"));
        b.put(&k, pattern(len, 2)).await.unwrap();
        let meta = b.head(&k).await.unwrap().expect("exists");
        assert_eq!(meta.key, k);
        assert_eq!(meta.size, len as u64, "{name}");
    }
}

/// Of 16 concurrent `put_if_absent`s of one key exactly one is `Created`, its bytes stay, and later ones are `AlreadyExists` without overwriting.
pub async fn put_if_absent_one_winner(b: Arc<dyn ObjectBackend>) {
    let k = key("manifests/race/00000000000000000007");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        let b = b.clone();
        let k = k.clone();
        tasks.spawn(async move {
            let body = Bytes::from(format!("writer {i}"));
            (
                b.put_if_absent(&k, body.clone())
                    .await
                    .expect("put_if_absent"),
                body,
            )
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (outcome, body) = done.unwrap();
        if outcome == PutOutcome::Created {
            winners.push(body);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one creator must win");
    assert_eq!(b.get(&k).await.unwrap(), winners[0]);
    assert_eq!(
        b.put_if_absent(&k, Bytes::from_static(b"late"))
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        b.get(&k).await.unwrap(),
        winners[0],
        "a loser must not overwrite"
    );
}

/// `delete` removes an object; deleting a missing one is `Ok`.
pub async fn delete(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/ee/gone");
    b.delete(&k).await.expect("deleting a missing object is ok");
    b.put(&k, Bytes::from_static(b"x")).await.unwrap();
    b.delete(&k).await.unwrap();
    assert!(b.get(&k).await.unwrap_err().is_not_found());
    assert!(b.head(&k).await.unwrap().is_none());
    b.delete(&k).await.unwrap();
}

/// `list` returns every object under a prefix, sorted by key, with sizes; a prefix not ending in `/` or holding `..` is `InvalidPath`.
pub async fn list_sorted_with_prefix(b: Arc<dyn ObjectBackend>) {
    let names = [
        "manifests/c/00000000000000000002",
        "blobs/ab/2",
        "blobs/aa/1",
        "trees/00/t",
        "blobs/ab/10",
        "manifests/c/00000000000000000001",
    ];
    for (i, n) in names.iter().enumerate() {
        b.put(&key(n), pattern(i + 1, 3)).await.unwrap();
    }
    let mut sorted = names.to_vec();
    sorted.sort();
    let all = b.list("").await.unwrap();
    assert_eq!(keys_of(&all), sorted);
    let three = all.iter().find(|m| m.key.as_str() == "blobs/aa/1").unwrap();
    assert_eq!(three.size, 3);
    assert_eq!(
        keys_of(&b.list("blobs/").await.unwrap()),
        ["blobs/aa/1", "blobs/ab/10", "blobs/ab/2"]
    );
    assert_eq!(
        keys_of(&b.list("blobs/ab/").await.unwrap()),
        ["blobs/ab/10", "blobs/ab/2"]
    );
    assert!(b.list("nothing/").await.unwrap().is_empty());
    assert!(matches!(
        b.list("blobs").await,
        Err(Error::InvalidPath { .. })
    ));
    assert!(matches!(
        b.list("../").await,
        Err(Error::InvalidPath { .. })
    ));
}

/// `touch` moves `last_modified` forward (sleeps 1.1 s: S3's resolution is a second) and keeps the bytes.
pub async fn touch_refreshes_last_modified(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/ff/touched");
    let data = pattern(1000, 4);
    b.put(&k, data.clone()).await.unwrap();
    let before = b.head(&k).await.unwrap().unwrap().last_modified;
    // S3's Last-Modified has one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.touch(&k).await.unwrap();
    let after = b.head(&k).await.unwrap().unwrap();
    assert!(
        after.last_modified > before,
        "{:?} !> {before:?}",
        after.last_modified
    );
    assert_eq!(after.size, 1000);
    assert_eq!(
        b.get(&k).await.unwrap(),
        data,
        "touch must not change the bytes"
    );
}

/// A streaming upload is invisible until `publish`; empty writes and empty uploads work.
pub async fn upload_small(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/11/small");
    let mut upload = b.begin_upload().await.unwrap();
    for part in ["hello", ", ", "", "world"] {
        upload
            .write(Bytes::from_static(part.as_bytes()))
            .await
            .unwrap();
    }
    assert!(
        b.list("").await.unwrap().is_empty(),
        "nothing visible before publish"
    );
    upload.publish(&k).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), "hello, world");

    let empty = key("blobs/11/empty");
    b.begin_upload()
        .await
        .unwrap()
        .publish(&empty)
        .await
        .unwrap();
    assert_eq!(b.get(&empty).await.unwrap().len(), 0);
    assert_eq!(
        keys_of(&b.list("").await.unwrap()),
        ["blobs/11/empty", "blobs/11/small"]
    );
}

/// A 20 MiB upload written in uneven chunks (several S3 parts) arrives whole, in order, readable by range, and is not listed before `publish`.
pub async fn upload_large(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/22/large");
    let data = pattern(LARGE, 5);
    let mut upload = b.begin_upload().await.unwrap();
    write_in_chunks(upload.as_mut(), &data).await;
    assert!(
        b.list("").await.unwrap().is_empty(),
        "an upload in progress must not be listed"
    );
    upload.publish(&k).await.unwrap();
    let got = b.get(&k).await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "large upload content differs");
    assert_eq!(b.head(&k).await.unwrap().unwrap().size, LARGE as u64);
    assert_eq!(
        b.get_range(&k, 7 * MIB as u64..7 * MIB as u64 + 10)
            .await
            .unwrap(),
        data.slice(7 * MIB..7 * MIB + 10)
    );
    assert_eq!(keys_of(&b.list("").await.unwrap()), ["blobs/22/large"]);
}

/// Publishing onto an existing key (the same content: keys are content addresses) leaves one readable object.
pub async fn publish_onto_existing(b: Arc<dyn ObjectBackend>) {
    // Keys are content addresses: a second upload of the same bytes may keep either copy.
    for (name, len) in [("small", 1000), ("large", 12 * MIB)] {
        let k = key(&format!("blobs/33/{name}"));
        let data = pattern(len, 6);
        b.put(&k, data.clone()).await.unwrap();
        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &data).await;
        upload.publish(&k).await.unwrap();
        assert!(b.get(&k).await.unwrap() == data, "{name}");
    }
    assert_eq!(
        keys_of(&b.list("").await.unwrap()),
        ["blobs/33/large", "blobs/33/small"]
    );
}

/// `abort` of small and large uploads leaves nothing listed.
pub async fn abort_leaves_nothing(b: Arc<dyn ObjectBackend>) {
    for len in [10, 12 * MIB] {
        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &pattern(len, 7)).await;
        upload.abort().await.unwrap();
    }
    assert!(b.list("").await.unwrap().is_empty());
}
