//! [`S3Upload`]: a streaming upload whose final key is chosen when it ends.
//!
//! Small uploads are buffered and published with one `PutObject`. Once more than
//! `multipart_threshold` bytes arrived, the upload turns into a multipart upload to a
//! staging key, with at most `max_parts_in_flight` parts uploading while the writer goes
//! on, so memory stays bounded whatever the file's size. Publishing completes it, copies it
//! server-side to the final key (unless that already exists: keys are content addresses),
//! and deletes the staging object. Multipart uploads and staging objects are invisible to
//! `list`, so nothing shows before `publish` returns.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::copy::{self, joined, MAX_PARTS};
use super::errors::{classify, is_misnamed_complete_result, Failure, Kind};
use super::S3Backend;
use crate::backend::s3::config::MAX_PART_SIZE;
use crate::backend::{ObjectBackend, Upload};
use crate::error::{Error, Result};
use crate::keys::ObjectKey;

/// Parts are `part_size` bytes for the first thousand, then double every thousand, so the
/// 10,000-part limit allows objects of roughly 1000 * part_size * 2^10.
const PARTS_PER_SIZE_STEP: i32 = 1000;

pub(super) struct S3Upload {
    backend: S3Backend,
    buffer: BytesMut,
    written: u64,
    multipart: Option<Multipart>,
    /// What a drop must undo; cleared once the upload is published or aborted.
    cleanup: Option<Cleanup>,
}

struct Multipart {
    staging_key: String,
    upload_id: String,
    next_part: i32,
    in_flight: JoinSet<std::result::Result<CompletedPart, Failure>>,
    done: Vec<CompletedPart>,
}

/// Server-side state an unfinished upload leaves behind.
enum Cleanup {
    AbortMultipart { key: String, upload_id: String },
    DeleteStaging { key: String },
}

impl S3Upload {
    pub(super) fn new(backend: S3Backend) -> Self {
        S3Upload {
            backend,
            buffer: BytesMut::new(),
            written: 0,
            multipart: None,
            cleanup: None,
        }
    }

    fn error(&self, what: &str, failure: Failure) -> Error {
        let staging = self
            .multipart
            .as_ref()
            .map(|m| m.staging_key.as_str())
            .unwrap_or("");
        failure.into_error(
            &format!("{what} (staging key {staging})"),
            self.backend.bucket(),
            staging,
        )
    }

    async fn start_multipart(&mut self) -> Result<()> {
        let staging_key = self.backend.new_staging_key("");
        let created = self
            .backend
            .client()
            .create_multipart_upload()
            .bucket(self.backend.bucket())
            .key(&staging_key)
            // A full-object CRC32 (rather than S3's default composite "checksum of part
            // checksums") is an ordinary checksum of the bytes: it stays valid when the
            // object is copied to its final key, and every reader can verify it.
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| self.error("starting a multipart upload", classify(e)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                self.error(
                    "starting a multipart upload",
                    Failure::other("CreateMultipartUpload returned no upload id"),
                )
            })?
            .to_owned();
        self.cleanup = Some(Cleanup::AbortMultipart {
            key: staging_key.clone(),
            upload_id: upload_id.clone(),
        });
        self.multipart = Some(Multipart {
            staging_key,
            upload_id,
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
        });
        Ok(())
    }

    /// Size of the part that would be sent next.
    fn next_part_size(&self) -> u64 {
        let number = self.multipart.as_ref().map_or(1, |m| m.next_part);
        let doublings = ((number - 1) / PARTS_PER_SIZE_STEP) as u32;
        self.backend
            .config()
            .part_size
            .saturating_mul(1u64 << doublings.min(20))
            .min(MAX_PART_SIZE)
    }

    /// Starts uploading `data` as the next part, first waiting for a free slot.
    async fn send_part(&mut self, data: Bytes) -> Result<()> {
        let max_in_flight = self.backend.config().max_parts_in_flight;
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(Error::backend(
                "uploading a part",
                "no multipart upload started",
            ));
        };
        if multipart.next_part as u64 > MAX_PARTS {
            return Err(Error::backend(
                "uploading a part",
                format!("upload exceeds S3's limit of {MAX_PARTS} parts"),
            ));
        }
        while multipart.in_flight.len() >= max_in_flight {
            let part = joined(multipart.in_flight.join_next().await);
            match part {
                Ok(part) => multipart.done.push(part),
                Err(failure) => return Err(self.error("uploading a part", failure)),
            }
        }
        let number = multipart.next_part;
        multipart.next_part += 1;
        let request = self
            .backend
            .client()
            .upload_part()
            .bucket(self.backend.bucket())
            .key(&multipart.staging_key)
            .upload_id(&multipart.upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data));
        multipart.in_flight.spawn(async move {
            let out = request.send().await.map_err(classify)?;
            let etag = out
                .e_tag()
                .ok_or_else(|| Failure::other("UploadPart returned no ETag"))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                .build())
        });
        Ok(())
    }

    /// Uploads the remaining bytes, waits for every part and completes the upload.
    async fn finish_multipart(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let last = self.buffer.split().freeze();
            self.send_part(last).await?;
        }
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(Error::backend(
                "completing an upload",
                "no multipart upload started",
            ));
        };
        while let Some(done) = multipart.in_flight.join_next().await {
            match joined(Some(done)) {
                Ok(part) => multipart.done.push(part),
                Err(failure) => return Err(self.error("uploading a part", failure)),
            }
        }
        let mut parts = std::mem::take(&mut multipart.done);
        parts.sort_by_key(|p| p.part_number());
        let completed = self
            .backend
            .client()
            .complete_multipart_upload()
            .bucket(self.backend.bucket())
            .key(&multipart.staging_key)
            .upload_id(&multipart.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        let staging_key = multipart.staging_key.clone();
        match completed {
            Ok(_) => {}
            Err(e) if is_misnamed_complete_result(&e) => {}
            Err(e) => return Err(self.error("completing a multipart upload", classify(e))),
        }
        self.cleanup = Some(Cleanup::DeleteStaging { key: staging_key });
        Ok(())
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.written += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        if self.multipart.is_none() {
            if self.buffer.len() as u64 <= self.backend.config().multipart_threshold {
                return Ok(());
            }
            self.start_multipart().await?;
        }
        loop {
            let part_size = self.next_part_size();
            if (self.buffer.len() as u64) < part_size {
                return Ok(());
            }
            let part = self.buffer.split_to(part_size as usize).freeze();
            self.send_part(part).await?;
        }
    }

    async fn publish(mut self: Box<Self>, key: &ObjectKey) -> Result<()> {
        if self.multipart.is_none() {
            let data = std::mem::take(&mut self.buffer).freeze();
            return self.backend.put(key, data).await;
        }
        self.finish_multipart().await?;
        let staging_key = self
            .multipart
            .as_ref()
            .map(|m| m.staging_key.clone())
            .unwrap_or_default();
        let backend = self.backend.clone();
        let context = || backend.context("publishing an upload to", key.as_str());
        let final_key = backend.full_key(key);
        let exists = backend
            .head_full(&final_key)
            .await
            .map_err(|f| f.into_error(&context(), backend.bucket(), key.as_str()))?
            .is_some();
        if !exists {
            copy::copy_object(&backend, &staging_key, &final_key, self.written)
                .await
                .map_err(|f| match f.kind {
                    // The staging object vanished between complete and copy.
                    Kind::NotFound => {
                        Error::backend(context(), format!("staging object lost: {f}"))
                    }
                    _ => f.into_error(&context(), backend.bucket(), key.as_str()),
                })?;
        }
        self.cleanup = None;
        if let Err(failure) = backend.delete_full(&staging_key).await {
            // The object is published; the leftover staging copy is only wasted space.
            tracing::warn!(key = %staging_key, error = %failure, "could not delete a staging object");
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(multipart) = self.multipart.as_mut() {
            // Parts still uploading could otherwise land after the abort and be kept.
            multipart.in_flight.shutdown().await;
        }
        match self.cleanup.take() {
            Some(cleanup) => run_cleanup(&self.backend, cleanup)
                .await
                .map_err(|f| self.error("aborting an upload", f)),
            None => Ok(()),
        }
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // A dropped upload (a cancelled task, an error in publish) must not leave a
        // multipart upload or a staging object behind. Drop cannot wait, so the cleanup
        // runs as a task; without a runtime there is nothing to run it on.
        let Some(cleanup) = self.cleanup.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backend = self.backend.clone();
        runtime.spawn(async move {
            if let Err(failure) = run_cleanup(&backend, cleanup).await {
                tracing::warn!(error = %failure, "could not clean up a dropped S3 upload");
            }
        });
    }
}

async fn run_cleanup(backend: &S3Backend, cleanup: Cleanup) -> std::result::Result<(), Failure> {
    match cleanup {
        Cleanup::AbortMultipart { key, upload_id } => {
            let sent = backend
                .client()
                .abort_multipart_upload()
                .bucket(backend.bucket())
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
            match sent.map_err(classify) {
                Ok(_) => Ok(()),
                // NoSuchUpload: already aborted or completed.
                Err(f) if f.kind == Kind::NotFound => Ok(()),
                Err(f) => Err(f),
            }
        }
        Cleanup::DeleteStaging { key } => backend.delete_full(&key).await,
    }
}
