//! The public conformance suite (`segstore::testing::conformance`) run on every backend of
//! the crate: the memory reference, the local directory, S3 (a real moto server) and the
//! cache in front of each; one test per case (`conformance!`). Then a backend that breaks a
//! guarantee, which the suite must refuse, and the S3 backend's own cases.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segstore::backend::local::LocalBackend;
use segstore::backend::memory::MemoryBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::{ObjectBackend, PutOutcome};
use segstore::keys::ObjectKey;
use segstore::testing::conformance::{self, pattern, write_in_chunks};
use support::moto;

const MIB: usize = 1024 * 1024;
/// Bigger than the S3 test config's threshold and part size (5 MiB): several parts.
const LARGE: usize = 20 * MIB;

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).expect("valid test key")
}

fn keys_of(metas: &[segstore::backend::ObjectMeta]) -> Vec<&str> {
    metas.iter().map(|m| m.key.as_str()).collect()
}

/// One test per case of `segstore::testing::conformance` for one backend.
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
                conformance::$case(backend).await;
            }
        )*

        #[test]
        fn every_case_of_the_suite_is_instantiated() {
            assert_eq!([$(stringify!($case)),*], conformance::CASES);
        }
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
conformance!(cache_over_memory, cached());

async fn cached() -> Option<(Arc<dyn ObjectBackend>, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let l2: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let cache = segstore::CachingBackend::open(dir.path().join("l1"), 64 * MIB as u64, l2)
        .await
        .unwrap();
    Some((Arc::new(cache), Some(dir)))
}

/// A backend whose create-only write checks and then writes in two steps, as some S3
/// look-alikes do: two racing creators can both win.
#[derive(Debug)]
struct CheckThenWrite(MemoryBackend);

#[async_trait::async_trait]
impl ObjectBackend for CheckThenWrite {
    fn name(&self) -> &'static str {
        "check-then-write"
    }
    async fn get(&self, key: &ObjectKey) -> segstore::Result<Bytes> {
        self.0.get(key).await
    }
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: std::ops::Range<u64>,
    ) -> segstore::Result<Bytes> {
        self.0.get_range(key, range).await
    }
    async fn head(
        &self,
        key: &ObjectKey,
    ) -> segstore::Result<Option<segstore::backend::ObjectMeta>> {
        self.0.head(key).await
    }
    async fn put(&self, key: &ObjectKey, data: Bytes) -> segstore::Result<()> {
        self.0.put(key, data).await
    }
    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> segstore::Result<PutOutcome> {
        if self.0.head(key).await?.is_some() {
            return Ok(PutOutcome::AlreadyExists);
        }
        // The window between the check and the write, where another creator slips in.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.0.put(key, data).await?;
        Ok(PutOutcome::Created)
    }
    async fn delete(&self, key: &ObjectKey) -> segstore::Result<()> {
        self.0.delete(key).await
    }
    async fn list(&self, prefix: &str) -> segstore::Result<Vec<segstore::backend::ObjectMeta>> {
        self.0.list(prefix).await
    }
    async fn touch(&self, key: &ObjectKey) -> segstore::Result<()> {
        self.0.touch(key).await
    }
    async fn begin_upload(&self) -> segstore::Result<Box<dyn segstore::backend::Upload>> {
        self.0.begin_upload().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_refuses_a_create_only_write_with_two_winners() {
    let run = tokio::spawn(conformance::run_all(|| async {
        Arc::new(CheckThenWrite(MemoryBackend::new())) as Arc<dyn ObjectBackend>
    }));
    let panic = run.await.expect_err("the suite must fail").into_panic();
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(
        message.contains("put_if_absent_one_winner") && message.contains("exactly one creator"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes_on_the_memory_reference() {
    conformance::run_all(|| async { Arc::new(MemoryBackend::new()) as Arc<dyn ObjectBackend> })
        .await;
}

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
