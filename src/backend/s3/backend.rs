//! [`S3Backend`] itself: the client, its checks, and each request.

mod checks;
mod client;
mod copy;
mod errors;
mod meter;
mod server_time;
mod sweep;
mod upload;

use crate::backend::LayerHooks;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::Client;
use bytes::Bytes;

use crate::backend::{check_range, ByteChunks, ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::error::{Error, Result};
use crate::keys::{self, ObjectKey};
use errors::{classify, Failure, Kind};

use super::config::S3Config;

/// Folder under the prefix for multipart uploads whose final key is not known yet, and for
/// the conditional-write probe. Never listed.
const STAGING_DIR: &str = "staging/";
/// Attempts of a conditional create that meets concurrent conditional writes (409) or
/// throttling (503 SlowDown), both of which mean "not applied, try again".
const CONDITIONAL_PUT_ATTEMPTS: u32 = 6;
/// First back-off after such an answer; doubled after each one, with jitter.
const CONDITIONAL_PUT_BACKOFF: Duration = Duration::from_millis(50);

/// An S3 bucket (or a prefix of one) as an [`ObjectBackend`]. Cheap to clone; clones share
/// one connection pool.
#[derive(Clone)]
pub struct S3Backend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: S3Config,
    /// The server's time, from the `Date` of its responses: the clock GC ages are on.
    server_clock: Arc<server_time::ServerClock>,
    /// False until a request has shown that the endpoint, credentials and bucket work:
    /// from [`S3Backend::connect_lazy`], the first `GetObject` stands in for `HeadBucket`.
    checked: AtomicBool,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.inner.config.bucket)
            .field("prefix", &self.inner.config.prefix)
            .field("endpoint", &self.inner.config.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// Builds the client and checks, within a short timeout and a few attempts (transient
    /// failures are retried), that the endpoint answers ([`Error::Unavailable`]), the
    /// credentials are accepted ([`Error::PermissionDenied`]) and the bucket exists
    /// ([`Error::BucketNotFound`]): one `HeadBucket`, no write. Whether the server enforces
    /// `If-None-Match: *` is checked once, when the store's identity is created
    /// ([`crate::identity`]), not on every connect.
    pub async fn connect(config: S3Config) -> Result<Self> {
        let backend = Self::build(config).await?;
        checks::bucket_is_usable(&backend).await?;
        backend.inner.checked.store(true, Ordering::Relaxed);
        tracing::debug!(bucket = %backend.bucket(), prefix = %backend.prefix(), "connected to S3");
        Ok(backend)
    }

    /// Builds the client without a request: the first `GetObject` (a store's open reads
    /// its identity first) is sent with the checks' short deadline, and if it fails for
    /// any reason but a missing object, the `HeadBucket` check of [`S3Backend::connect`]
    /// runs then to name the cause ([`Error::Unavailable`], [`Error::PermissionDenied`],
    /// [`Error::BucketNotFound`], a wrong region). Opening a store so costs one request
    /// less, with the same errors.
    pub async fn connect_lazy(config: S3Config) -> Result<Self> {
        Self::build(config).await
    }

    async fn build(config: S3Config) -> Result<Self> {
        let config = config.validate()?;
        let server_clock = server_time::ServerClock::new(crate::clock::system());
        let observer = server_time::DateObserver(server_clock.clone());
        let client = client::build(&config, observer).await?;
        Ok(S3Backend {
            inner: Arc::new(Inner {
                client,
                config,
                server_clock,
                checked: AtomicBool::new(false),
            }),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.config.bucket
    }

    /// The normalised key prefix: empty, or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// The validated configuration.
    pub fn config(&self) -> &S3Config {
        &self.inner.config
    }

    fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The S3 key of an object key: the prefix joined with it.
    fn full_key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix(), key.as_str())
    }

    /// A fresh staging key for an upload whose final key is not known yet.
    fn new_staging_key(&self, label: &str) -> String {
        format!(
            "{}{STAGING_DIR}{label}{:032x}",
            self.prefix(),
            rand::random::<u128>()
        )
    }

    /// Describes an operation on `key` for error contexts, such as
    /// `reading blobs/ab/… in s3://bucket/prefix/`.
    fn context(&self, what: &str, key: &str) -> String {
        format!("{what} {key} in s3://{}/{}", self.bucket(), self.prefix())
    }

    /// Converts an SDK error of an operation on `key` (relative to the prefix).
    /// Every object under the full (bucket-relative) prefix, through all pages.
    async fn list_all(
        &self,
        full_prefix: &str,
        what: &str,
        shown: &str,
    ) -> Result<Vec<aws_sdk_s3::types::Object>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client()
                .list_objects_v2()
                .bucket(self.bucket())
                .prefix(full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error(what, shown, e))?;
            out.extend(page.contents().iter().cloned());
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    fn error<E>(&self, what: &str, key: &str, err: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(err).into_error(&self.context(what, key), self.bucket(), key)
    }

    /// Reads a response body to the end. Stalls are cut off by the SDK's stalled-stream
    /// protection, so this cannot hang on a dead connection.
    async fn collect(&self, what: &str, key: &str, body: ByteStream) -> Result<Bytes> {
        match body.collect().await {
            Ok(data) => Ok(data.into_bytes()),
            Err(e) => {
                let message = format!("response body interrupted: {e}");
                Err(Failure::unreachable(message, Box::new(e)).into_error(
                    &self.context(what, key),
                    self.bucket(),
                    key,
                ))
            }
        }
    }

    /// `HEAD` of a full S3 key.
    async fn head_full(
        &self,
        full_key: &str,
    ) -> std::result::Result<Option<(u64, SystemTime)>, Failure> {
        let out = match self
            .client()
            .head_object()
            .bucket(self.bucket())
            .key(full_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let failure = classify(e);
                return match failure.kind {
                    Kind::NotFound => Ok(None),
                    _ => Err(failure),
                };
            }
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        let modified = to_system_time(out.last_modified());
        Ok(Some((size, modified)))
    }

    /// One conditional `PutObject` attempt, with the SDK's retries turned off: an SDK retry
    /// after an attempt that may have landed could turn our own success into a 412.
    async fn put_if_none_match(
        &self,
        full_key: &str,
        data: Bytes,
    ) -> std::result::Result<(), Failure> {
        self.client()
            .put_object()
            .bucket(self.bucket())
            .key(full_key)
            .if_none_match("*")
            .body(ByteStream::from(data))
            .customize()
            .config_override(client::single_attempt())
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn delete_full(&self, full_key: &str) -> std::result::Result<(), Failure> {
        match self
            .client()
            .delete_object()
            .bucket(self.bucket())
            .key(full_key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e) {
                f if f.kind == Kind::NotFound => Ok(()),
                f => Err(f),
            },
        }
    }
}

impl S3Backend {
    /// One whole-object GET, its body not read yet.
    async fn get_object(
        &self,
        key: &ObjectKey,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let request = self
            .client()
            .get_object()
            .bucket(self.bucket())
            .key(self.full_key(key));
        if self.inner.checked.load(Ordering::Relaxed) {
            return request
                .send()
                .await
                .map_err(|e| self.error("reading", key.as_str(), e));
        }
        let sent = request
            .customize()
            .config_override(client::open_check(self.config()))
            .send()
            .await
            .map_err(|e| self.error("reading", key.as_str(), e));
        match sent {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(_) => checks::bucket_is_usable(self).await?,
        }
        self.inner.checked.store(true, Ordering::Relaxed);
        sent
    }
}

#[async_trait]
impl ObjectBackend for S3Backend {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        format!(
            "the S3 server at {} (bucket {:?}, prefix {:?})",
            self.inner
                .config
                .endpoint
                .as_deref()
                .unwrap_or("the AWS endpoint"),
            self.bucket(),
            self.prefix()
        )
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        let out = self.get_object(key).await?;
        self.collect("reading", key.as_str(), out.body).await
    }

    async fn get_stream(&self, key: &ObjectKey) -> Result<ByteChunks> {
        let out = self.get_object(key).await?;
        let (context, bucket) = (
            self.context("reading", key.as_str()),
            self.bucket().to_owned(),
        );
        let key = key.as_str().to_owned();
        // Chunks as the SDK receives them; stalls are cut off as in `collect`.
        let chunks = futures::stream::try_unfold(out.body, move |mut body| {
            let (context, bucket, key) = (context.clone(), bucket.clone(), key.clone());
            async move {
                match body.try_next().await {
                    Ok(Some(chunk)) => Ok(Some((chunk, body))),
                    Ok(None) => Ok(None),
                    Err(e) => {
                        let message = format!("response body interrupted: {e}");
                        Err(Failure::unreachable(message, Box::new(e))
                            .into_error(&context, &bucket, &key))
                    }
                }
            }
        });
        Ok(Box::pin(chunks))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            // HTTP cannot ask for zero bytes; whether the empty range is valid depends on
            // the size alone.
            let meta = self.head(key).await?.ok_or_else(|| Error::not_found(key))?;
            check_range(key, &range, meta.size)?;
            return Ok(Bytes::new());
        }
        let sent = self
            .client()
            .get_object()
            .bucket(self.bucket())
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                let failure = classify(e);
                if failure.kind != Kind::InvalidRange {
                    return Err(failure.into_error(
                        &self.context("reading a range of", key.as_str()),
                        self.bucket(),
                        key.as_str(),
                    ));
                }
                // 416: the range starts at or past the end. Report the real size.
                let meta = self.head(key).await?.ok_or_else(|| Error::not_found(key))?;
                check_range(key, &range, meta.size)?;
                return Err(Error::backend(
                    self.context("reading a range of", key.as_str()),
                    format!(
                        "server refused range {range:?} of a {}-byte object",
                        meta.size
                    ),
                ));
            }
        };
        // S3 answers a range that runs past the end with the bytes that exist; the total
        // size in Content-Range tells whether the whole range was there. A server that
        // ignores Range answers 200 with the whole object and no Content-Range.
        let total = out.content_range().map(parse_content_range_total);
        let body = self
            .collect("reading a range of", key.as_str(), out.body)
            .await?;
        let (size, data) = match total {
            Some(Some(size)) => (size, body),
            Some(None) => {
                return Err(Error::backend(
                    self.context("reading a range of", key.as_str()),
                    "malformed Content-Range in response",
                ))
            }
            None => {
                let size = body.len() as u64;
                check_range(key, &range, size)?;
                return Ok(body.slice(range.start as usize..range.end as usize));
            }
        };
        check_range(key, &range, size)?;
        if data.len() as u64 != range.end - range.start {
            return Err(Error::backend(
                self.context("reading a range of", key.as_str()),
                format!(
                    "asked for {} bytes, got {}",
                    range.end - range.start,
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    async fn now(&self) -> Result<SystemTime> {
        if let Some(t) = self.inner.server_clock.now() {
            return Ok(t);
        }
        // Nothing heard from the server lately: any answer carries its Date, even a
        // refusal, so one HeadBucket settles it.
        let _ = self
            .client()
            .head_bucket()
            .bucket(self.bucket())
            .send()
            .await;
        self.inner
            .server_clock
            .now()
            .ok_or_else(|| Error::Unavailable {
                context: format!("reading the server time of s3://{}", self.bucket()),
                message: "the server's responses carry no Date header".into(),
                source: None,
            })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let found = self.head_full(&self.full_key(key)).await.map_err(|f| {
            f.into_error(
                &self.context("inspecting", key.as_str()),
                self.bucket(),
                key.as_str(),
            )
        })?;
        Ok(found.map(|(size, last_modified)| ObjectMeta {
            key: key.clone(),
            size,
            last_modified,
        }))
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.client()
            .put_object()
            .bucket(self.bucket())
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("writing", key.as_str(), e))
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        let full_key = self.full_key(key);
        let context = || self.context("creating", key.as_str());
        let mut backoff = CONDITIONAL_PUT_BACKOFF;
        for _ in 0..CONDITIONAL_PUT_ATTEMPTS {
            let failure = match self.put_if_none_match(&full_key, data.clone()).await {
                Ok(()) => return Ok(PutOutcome::Created),
                Err(failure) => failure,
            };
            match failure.kind {
                // Sound only because every earlier attempt was definitely rejected (the
                // loop retries nothing else): the object is another writer's.
                Kind::PreconditionFailed => return Ok(PutOutcome::AlreadyExists),
                // Rejected without effect: another conditional write to the key was in
                // flight, or we were throttled. Back off and ask again.
                Kind::Conflict | Kind::Throttled => {
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff *= 2;
                }
                // Anything else may or may not have landed (a timeout after sending, a
                // 500). Only reading the key back can tell, which the commit layer does by
                // comparing the commit id it wrote.
                _ => return Err(failure.into_error(&context(), self.bucket(), key.as_str())),
            }
        }
        // Every attempt was rejected unapplied, so whatever exists now was written by
        // someone else.
        match self.head(key).await? {
            Some(_) => Ok(PutOutcome::AlreadyExists),
            None => Err(Error::backend(
                context(),
                format!(
                    "{CONDITIONAL_PUT_ATTEMPTS} conditional writes were rejected as conflicting \
                     or throttled, and the key still does not exist"
                ),
            )),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.delete_full(&self.full_key(key)).await.map_err(|f| {
            f.into_error(
                &self.context("deleting", key.as_str()),
                self.bucket(),
                key.as_str(),
            )
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        keys::validate_prefix(prefix)?;
        let full_prefix = format!("{}{prefix}", self.prefix());
        let mut out = Vec::new();
        for object in self.list_all(&full_prefix, "listing", prefix).await? {
            let Some(relative) = object.key().and_then(|k| k.strip_prefix(self.prefix())) else {
                continue;
            };
            if relative.starts_with(STAGING_DIR) {
                continue; // uploads in progress are never listed
            }
            let Ok(key) = ObjectKey::new(relative) else {
                continue; // not a name segstore writes; ignore it
            };
            out.push(ObjectMeta {
                key,
                size: object.size().unwrap_or(0).max(0) as u64,
                last_modified: to_system_time(object.last_modified()),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        // S3 has no "set mtime"; copying an object onto itself with replaced metadata
        // rewrites it server-side (no bytes travel through us) and resets Last-Modified.
        let meta = self.head(key).await?.ok_or_else(|| Error::not_found(key))?;
        let full_key = self.full_key(key);
        copy::copy_object(self, &full_key, &full_key, meta.size)
            .await
            .map_err(|f| {
                f.into_error(
                    &self.context("touching", key.as_str()),
                    self.bucket(),
                    key.as_str(),
                )
            })
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        Ok(Box::new(upload::S3Upload::new(self.clone())))
    }

    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        Some(self)
    }
}

#[async_trait]
impl LayerHooks for S3Backend {
    fn wants_outboards(&self) -> bool {
        true
    }
}

/// Parses the total size out of `Content-Range: bytes 0-99/1234`. `None` if malformed or
/// unknown (`*`).
fn parse_content_range_total(header: &str) -> Option<u64> {
    header.rsplit_once('/')?.1.trim().parse().ok()
}

/// Converts S3's Last-Modified. A missing or unrepresentable time counts as *now*: GC
/// measures its grace period from this, and an object that looks young is merely kept a
/// little longer, while one that looks ancient could be deleted while still in use.
fn to_system_time(time: Option<&DateTime>) -> SystemTime {
    time.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or_else(|| crate::clock::Clock::now(&crate::clock::SystemClock))
}

/// `base` scaled by a random factor in [0.5, 1.5), so that writers who collided do not
/// retry in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_total() {
        assert_eq!(parse_content_range_total("bytes 0-99/1234"), Some(1234));
        assert_eq!(parse_content_range_total("bytes 0-99/*"), None);
        assert_eq!(parse_content_range_total("garbage"), None);
    }
}
