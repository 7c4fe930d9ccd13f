//! Server-side copies: one `CopyObject` up to S3's 5 GiB limit, a multipart
//! `UploadPartCopy` above it. Used to move a finished upload from its staging key to its
//! final key, and by `touch` to rewrite an object onto itself.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use tokio::task::JoinSet;

use super::client;
use super::errors::{classify, is_misnamed_complete_result, Failure};
use super::S3Backend;
use crate::backend::s3::config::MAX_PART_SIZE;

/// S3's limit on parts per multipart upload.
pub(super) const MAX_PARTS: u64 = 10_000;

/// Copies `src` to `dst` (full S3 keys; they may be equal) inside the bucket. Metadata is
/// replaced rather than copied: S3 refuses a copy onto itself that changes nothing, and
/// segstore stores no metadata worth keeping.
pub(super) async fn copy_object(
    backend: &S3Backend,
    src: &str,
    dst: &str,
    size: u64,
) -> Result<(), Failure> {
    if size > backend.config().multipart_copy_threshold {
        return multipart_copy(backend, src, dst, size).await;
    }
    backend
        .client()
        .copy_object()
        .bucket(backend.bucket())
        .key(dst)
        .copy_source(copy_source(backend.bucket(), src))
        .metadata_directive(MetadataDirective::Replace)
        .customize()
        .config_override(client::copy_of(backend.config(), size))
        .send()
        .await
        .map(|_| ())
        .map_err(classify)
}

async fn multipart_copy(
    backend: &S3Backend,
    src: &str,
    dst: &str,
    size: u64,
) -> Result<(), Failure> {
    let created = backend
        .client()
        .create_multipart_upload()
        .bucket(backend.bucket())
        .key(dst)
        .send()
        .await
        .map_err(classify)?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| Failure::other("CreateMultipartUpload returned no upload id"))?
        .to_owned();
    let result = copy_parts(backend, src, dst, size, &upload_id).await;
    if result.is_err() {
        // Parts already copied would otherwise be stored (and billed) until a lifecycle
        // rule removes them.
        let _ = backend
            .client()
            .abort_multipart_upload()
            .bucket(backend.bucket())
            .key(dst)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

async fn copy_parts(
    backend: &S3Backend,
    src: &str,
    dst: &str,
    size: u64,
    upload_id: &str,
) -> Result<(), Failure> {
    let config = backend.config();
    // At least part_size, but few enough parts for S3's limit, and no part over 5 GiB.
    let part_size = config
        .part_size
        .max(size.div_ceil(MAX_PARTS))
        .min(MAX_PART_SIZE);
    let source = copy_source(backend.bucket(), src);
    let mut in_flight = JoinSet::new();
    let mut parts = Vec::new();
    let mut offset = 0u64;
    let mut number = 1i32;
    while offset < size {
        let end = (offset + part_size).min(size);
        if in_flight.len() >= config.max_parts_in_flight {
            parts.push(joined(in_flight.join_next().await)?);
        }
        let request = backend
            .client()
            .upload_part_copy()
            .bucket(backend.bucket())
            .key(dst)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(&source)
            .copy_source_range(format!("bytes={offset}-{}", end - 1))
            .customize()
            .config_override(client::copy_of(config, end - offset));
        in_flight.spawn(async move {
            let out = request.send().await.map_err(classify)?;
            let etag = out
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .ok_or_else(|| Failure::other("UploadPartCopy returned no ETag"))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .build())
        });
        offset = end;
        number += 1;
    }
    while let Some(done) = in_flight.join_next().await {
        parts.push(joined(Some(done))?);
    }
    parts.sort_by_key(|p| p.part_number());
    match backend
        .client()
        .complete_multipart_upload()
        .bucket(backend.bucket())
        .key(dst)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_misnamed_complete_result(&e) => Ok(()),
        Err(e) => Err(classify(e)),
    }
}

/// Unwraps a finished part task; a panicked task becomes a failure.
pub(super) fn joined(
    done: Option<Result<Result<CompletedPart, Failure>, tokio::task::JoinError>>,
) -> Result<CompletedPart, Failure> {
    match done {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(Failure::other(format!("part task failed: {e}"))),
        None => Err(Failure::other("no part task was running")),
    }
}

/// The `x-amz-copy-source` value: `bucket/key`, with the key percent-encoded except for
/// `/` and RFC 3986 unreserved characters. Keys may hold `%` (collection names are
/// percent-encoded), which must not be decoded twice.
pub(super) fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + 1 + key.len());
    out.push_str(bucket);
    out.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encodes_the_key() {
        assert_eq!(copy_source("b", "p/blobs/ab/x"), "b/p/blobs/ab/x");
        assert_eq!(
            copy_source("b", "manifests/a%20b/00"),
            "b/manifests/a%2520b/00"
        );
        assert_eq!(copy_source("b", "ü"), "b/%C3%BC");
    }
}
