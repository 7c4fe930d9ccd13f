//! One conformance suite for every [`ObjectBackend`]: the memory reference, the local
//! directory and S3 (a real moto server). Each case is a function over
//! `Arc<dyn ObjectBackend>`; `conformance!` instantiates every case for one backend.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segstore::backend::local::LocalBackend;
use segstore::backend::memory::MemoryBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::{ObjectBackend, PutOutcome};
use segstore::keys::ObjectKey;
use segstore::Error;
use support::moto;

const MIB: usize = 1024 * 1024;
/// Bigger than the S3 test config's threshold and part size (5 MiB): several parts.
const LARGE: usize = 20 * MIB;

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).expect("valid test key")
}

/// Deterministic, position-dependent bytes, so a misplaced part or range shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn keys_of(metas: &[segstore::backend::ObjectMeta]) -> Vec<&str> {
    metas.iter().map(|m| m.key.as_str()).collect()
}

async fn write_in_chunks(upload: &mut dyn segstore::backend::Upload, data: &Bytes) {
    // Uneven chunk sizes, so part boundaries never line up with write boundaries.
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

async fn get_put_overwrite(b: Arc<dyn ObjectBackend>) {
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

async fn missing_is_not_found(b: Arc<dyn ObjectBackend>) {
    let k = key("manifests/c/00000000000000000001");
    assert!(b.get(&k).await.unwrap_err().is_not_found());
    assert!(b.get_range(&k, 0..1).await.unwrap_err().is_not_found());
    assert!(b.get_range(&k, 0..0).await.unwrap_err().is_not_found());
    assert!(b.head(&k).await.unwrap().is_none());
    assert!(b.touch(&k).await.unwrap_err().is_not_found());
}

async fn get_range(b: Arc<dyn ObjectBackend>) {
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

async fn head_sizes(b: Arc<dyn ObjectBackend>) {
    for (name, len) in [("zero", 0), ("one", 1), ("some", 4321)] {
        let k = key(&format!("trees/cd/{name}"));
        b.put(&k, pattern(len, 2)).await.unwrap();
        let meta = b.head(&k).await.unwrap().expect("exists");
        assert_eq!(meta.key, k);
        assert_eq!(meta.size, len as u64, "{name}");
    }
}

async fn put_if_absent_one_winner(b: Arc<dyn ObjectBackend>) {
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

async fn delete(b: Arc<dyn ObjectBackend>) {
    let k = key("blobs/ee/gone");
    b.delete(&k).await.expect("deleting a missing object is ok");
    b.put(&k, Bytes::from_static(b"x")).await.unwrap();
    b.delete(&k).await.unwrap();
    assert!(b.get(&k).await.unwrap_err().is_not_found());
    assert!(b.head(&k).await.unwrap().is_none());
    b.delete(&k).await.unwrap();
}

async fn list_sorted_with_prefix(b: Arc<dyn ObjectBackend>) {
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

async fn touch_refreshes_last_modified(b: Arc<dyn ObjectBackend>) {
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

async fn upload_small(b: Arc<dyn ObjectBackend>) {
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

async fn upload_large(b: Arc<dyn ObjectBackend>) {
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

async fn publish_onto_existing(b: Arc<dyn ObjectBackend>) {
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

async fn abort_leaves_nothing(b: Arc<dyn ObjectBackend>) {
    for len in [10, 12 * MIB] {
        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &pattern(len, 7)).await;
        upload.abort().await.unwrap();
    }
    assert!(b.list("").await.unwrap().is_empty());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            conformance!(@cases $make;
                get_put_overwrite, missing_is_not_found, get_range, head_sizes,
                put_if_absent_one_winner, delete, list_sorted_with_prefix,
                touch_refreshes_last_modified, upload_small, upload_large,
                publish_onto_existing, abort_leaves_nothing);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                // `None`: the backend is not available here (moto missing outside CI).
                let Some((backend, _guard)) = $make.await else { return };
                super::$case(backend).await;
            }
        )*
    };
}

/// Keeps whatever a backend needs alive (a temp dir) for the length of a test.
type Guard = Option<tempfile::TempDir>;

async fn memory() -> Option<(Arc<dyn ObjectBackend>, Guard)> {
    Some((Arc::new(MemoryBackend::new()), None))
}

async fn local() -> Option<(Arc<dyn ObjectBackend>, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).await.unwrap();
    Some((Arc::new(backend), Some(dir)))
}

async fn s3() -> Option<(Arc<dyn ObjectBackend>, Guard)> {
    let config = moto::fresh_bucket().await?;
    let backend = S3Backend::connect(config)
        .await
        .expect("connecting to moto");
    Some((Arc::new(backend), None))
}

conformance!(memory_backend, memory());
conformance!(local_backend, local());
conformance!(s3_backend, s3());

/// Behaviour only S3 has: server-side state that `list` cannot see.
mod s3_only {
    use super::*;

    async fn setup() -> Option<(S3Backend, aws_sdk_s3::Client)> {
        let config = moto::fresh_bucket().await?;
        let admin = moto::admin_client(config.endpoint.as_deref().unwrap());
        Some((S3Backend::connect(config).await.unwrap(), admin))
    }

    /// Every key in the bucket, prefix and staging area included.
    async fn raw_keys(admin: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
        let out = admin.list_objects_v2().bucket(bucket).send().await.unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    async fn multipart_uploads(admin: &aws_sdk_s3::Client, bucket: &str) -> usize {
        let out = admin
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        out.uploads().len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_live_under_the_prefix_and_staging_is_cleaned() {
        let Some((b, admin)) = setup().await else {
            return;
        };
        b.put(&key("blobs/aa/x"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &pattern(LARGE, 8)).await;
        assert_eq!(multipart_uploads(&admin, b.bucket()).await, 1);
        upload.publish(&key("blobs/bb/y")).await.unwrap();
        assert_eq!(multipart_uploads(&admin, b.bucket()).await, 0);
        assert_eq!(
            raw_keys(&admin, b.bucket()).await,
            ["segstore-test/blobs/aa/x", "segstore-test/blobs/bb/y"],
            "no probe or staging object may be left"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_and_drop_abort_the_multipart_upload() {
        let Some((b, admin)) = setup().await else {
            return;
        };
        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &pattern(12 * MIB, 9)).await;
        assert_eq!(multipart_uploads(&admin, b.bucket()).await, 1);
        upload.abort().await.unwrap();
        assert_eq!(multipart_uploads(&admin, b.bucket()).await, 0);

        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &pattern(12 * MIB, 9)).await;
        drop(upload);
        // The drop cleans up in a spawned task; give it a bounded time.
        let mut left = 1;
        for _ in 0..50 {
            left = multipart_uploads(&admin, b.bucket()).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            left, 0,
            "a dropped upload must not leak its multipart upload"
        );
        assert!(raw_keys(&admin, b.bucket()).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_staging_is_swept() {
        let Some((b, admin)) = setup().await else {
            return;
        };
        // What a crashed writer leaves: a multipart upload and a completed staging object.
        let staging = format!("{}staging/crashed", b.prefix());
        admin
            .create_multipart_upload()
            .bucket(b.bucket())
            .key(&staging)
            .send()
            .await
            .unwrap();
        admin
            .put_object()
            .bucket(b.bucket())
            .key(format!("{staging}-done"))
            .body(Bytes::from_static(b"s").into())
            .send()
            .await
            .unwrap();
        b.put(&key("blobs/aa/kept"), Bytes::from_static(b"k"))
            .await
            .unwrap();
        let hour = Duration::from_secs(3600);
        let first = b.remove_stale_staging(hour).await.unwrap();
        // (moto reports every multipart upload as initiated in 2010, so this sweep may
        // already take the upload; the fresh object must survive it.)
        assert!(
            raw_keys(&admin, b.bucket())
                .await
                .contains(&format!("{staging}-done")),
            "a recent staging object may belong to a live upload"
        );
        let second = b.remove_stale_staging(Duration::ZERO).await.unwrap();
        assert_eq!(first + second, 2);
        assert_eq!(multipart_uploads(&admin, b.bucket()).await, 0);
        assert_eq!(
            raw_keys(&admin, b.bucket()).await,
            ["segstore-test/blobs/aa/kept"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_copy_for_objects_over_the_copy_threshold() {
        let Some(mut config) = moto::fresh_bucket().await else {
            return;
        };
        // Stand-in for S3's 5 GiB CopyObject limit: publish and touch use UploadPartCopy.
        config.multipart_copy_threshold = 6 * MIB as u64;
        let b = S3Backend::connect(config).await.unwrap();
        let k = key("blobs/cc/copied");
        let data = pattern(LARGE + 12345, 10);
        let mut upload = b.begin_upload().await.unwrap();
        write_in_chunks(upload.as_mut(), &data).await;
        upload.publish(&k).await.unwrap();
        assert!(b.get(&k).await.unwrap() == data);
        let before = b.head(&k).await.unwrap().unwrap().last_modified;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        b.touch(&k).await.unwrap();
        assert!(b.head(&k).await.unwrap().unwrap().last_modified > before);
        assert!(
            b.get(&k).await.unwrap() == data,
            "touch must keep the bytes"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_needing_percent_encoding_survive_copies() {
        let Some((b, _admin)) = setup().await else {
            return;
        };
        let k = key(&format!(
            "manifests/{}/00000000000000000001",
            segstore::keys::encode_component("a b/ü+%")
        ));
        b.put(&k, Bytes::from_static(b"m")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        b.touch(&k).await.unwrap();
        assert_eq!(b.get(&k).await.unwrap(), "m");
        assert_eq!(keys_of(&b.list("manifests/").await.unwrap()), [k.as_str()]);
    }
}
