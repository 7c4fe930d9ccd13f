//! The checks [`S3Backend::connect`](super::S3Backend::connect) makes before handing out a
//! backend, so that misconfiguration fails at open with a typed error instead of at the
//! first commit.

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::client;
use super::errors::{classify, Failure, Kind};
use super::S3Backend;
use crate::error::{Error, Result};

/// `HeadBucket`: reachability, credentials and the bucket's existence in one request.
pub(super) async fn bucket_is_usable(backend: &S3Backend) -> Result<()> {
    let bucket = backend.bucket();
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

/// Creates one scratch object twice with `If-None-Match: *`. A server that enforces the
/// condition refuses the second create (412, or 409 while the first is still settling);
/// one that ignores the header, as some S3-compatible servers and proxies do, accepts it,
/// and would let two writers both win the same manifest version.
pub(super) async fn conditional_writes_are_enforced(backend: &S3Backend) -> Result<()> {
    let probe = backend.new_staging_key("probe-");
    let result = probe_twice(backend, &probe).await;
    // Best effort: a leftover probe is a few bytes under staging/, which is never listed.
    if let Err(failure) = backend.delete_full(&probe).await {
        tracing::warn!(
            key = %probe,
            error = %failure.into_error("deleting the probe", backend.bucket(), &probe),
            "could not delete the conditional-write probe"
        );
    }
    result
}

async fn probe_twice(backend: &S3Backend, probe: &str) -> Result<()> {
    let context = format!(
        "checking conditional writes in s3://{}/{}",
        backend.bucket(),
        backend.prefix()
    );
    let unsupported = |detail: &str| {
        Error::Unsupported(format!(
            "the S3 server at {} does not enforce If-None-Match: * on PutObject ({detail}); \
             segstore commits with create-only writes and cannot run safely without them \
             (AWS S3, MinIO, Cloudflare R2 and moto support them)",
            backend
                .config()
                .endpoint
                .as_deref()
                .unwrap_or("the AWS endpoint")
        ))
    };
    match put_probe(backend, probe).await {
        Ok(()) => {}
        Err(f) if f.kind == Kind::NotImplemented => return Err(unsupported(&f.to_string())),
        Err(f) => return Err(f.into_error(&context, backend.bucket(), probe)),
    }
    match put_probe(backend, probe).await {
        Ok(()) => Err(unsupported("a second create of the same key succeeded")),
        Err(f) if matches!(f.kind, Kind::PreconditionFailed | Kind::Conflict) => Ok(()),
        Err(f) if f.kind == Kind::NotImplemented => Err(unsupported(&f.to_string())),
        Err(f) => Err(f.into_error(&context, backend.bucket(), probe)),
    }
}

async fn put_probe(backend: &S3Backend, probe: &str) -> std::result::Result<(), Failure> {
    backend
        .client()
        .put_object()
        .bucket(backend.bucket())
        .key(probe)
        .if_none_match("*")
        .body(ByteStream::from_static(b"segstore conditional write probe"))
        .customize()
        .config_override(
            client::open_check(backend.config())
                .retry_config(RetryConfig::standard().with_max_attempts(1)),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(classify)
}
