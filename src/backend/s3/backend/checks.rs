//! The check [`S3Backend::connect`](super::S3Backend::connect) makes before handing out a
//! backend, so that misconfiguration fails at open with a typed error instead of at the
//! first commit. (Conditional writes are checked once, when the store identity is
//! created: see [`crate::identity`].)

use std::time::Duration;

use super::client;
use super::errors::{classify, Kind};
use super::S3Backend;
use crate::error::{Error, Result};

/// Rounds of `HeadBucket` (each with the SDK's own attempts) when the answer is a
/// transient failure: a reset connection, a 5xx, throttling.
const HEAD_BUCKET_ROUNDS: u32 = 5;
/// First pause between rounds; doubled each round, with jitter.
const HEAD_BUCKET_BACKOFF: Duration = Duration::from_millis(100);

/// `HeadBucket`: reachability, credentials and the bucket's existence in one request,
/// asked again after transient failures. A refused connection (nothing listens there)
/// fails at once.
pub(super) async fn bucket_is_usable(backend: &S3Backend) -> Result<()> {
    let bucket = backend.bucket();
    let mut pause = HEAD_BUCKET_BACKOFF;
    let mut round = 1;
    let failure = loop {
        let sent = backend
            .client()
            .head_bucket()
            .bucket(bucket)
            .customize()
            .config_override(client::open_check(backend.config()))
            .send()
            .await;
        let failure = match sent {
            Ok(_) => return Ok(()),
            Err(e) => classify(e),
        };
        let transient = match failure.kind {
            Kind::Unreachable => !failure.to_string().contains("Connection refused"),
            Kind::Throttled | Kind::Conflict => true,
            Kind::Other => failure.status.is_none_or(|s| s >= 500),
            _ => false,
        };
        if !transient || round == HEAD_BUCKET_ROUNDS {
            break failure;
        }
        tracing::debug!(error = %failure, round, "HeadBucket failed transiently; retrying");
        tokio::time::sleep(super::jittered(pause)).await;
        pause *= 2;
        round += 1;
    };
    let context = format!("checking access to bucket {bucket:?}");
    Err(match failure.kind {
        // HEAD responses have no body, so a missing bucket is a bare 404.
        Kind::NotFound | Kind::NoSuchBucket => Error::BucketNotFound {
            bucket: bucket.to_owned(),
        },
        _ if failure.status == Some(301) => Error::InvalidConfig(format!(
            "s3: bucket {bucket:?} is not in region {:?}; set `region` to the bucket's region",
            backend.config().region.as_deref().unwrap_or("(default)")
        )),
        _ => failure.into_error(&context, bucket, ""),
    })
}
