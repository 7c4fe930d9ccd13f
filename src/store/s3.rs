//! [`S3Storage`]: the store on an S3 bucket and prefix (AWS, MinIO, R2, moto, ...).

use std::sync::Arc;

use super::{Store, StoreOptions};
use crate::backend::s3::{S3Backend, S3Config};
use crate::error::Result;

/// A segment store in an S3 bucket under a key prefix. Any number of processes and
/// machines may share one bucket and prefix: the only coordination is S3's own
/// conditional `PUT` (`If-None-Match: *`), checked once, when the store's identity is
/// created (see [`crate::identity`]).
///
/// Derefs to [`Store`] for the API beyond [`SegmentStorage`](crate::SegmentStorage).
#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Store,
    backend: S3Backend,
}

impl S3Storage {
    /// Connects to the bucket (checking the endpoint, credentials and bucket) and reads the
    /// store's identity, creating the store (and checking conditional writes) if it has
    /// none. A later open sends one request (`GetObject`, which stands in for the `HeadBucket`
    /// check: see [`S3Backend::connect_lazy`]), no write.
    pub async fn connect(config: S3Config) -> Result<Self> {
        Self::connect_with(config, StoreOptions::default()).await
    }

    /// Connects with tuning options.
    pub async fn connect_with(config: S3Config, options: StoreOptions) -> Result<Self> {
        let backend = S3Backend::connect_lazy(config).await?;
        Ok(S3Storage {
            store: Store::open(Arc::new(backend.clone()), options).await?,
            backend,
        })
    }

    /// The S3 backend underneath.
    pub fn s3(&self) -> &S3Backend {
        &self.backend
    }

    /// The store core.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

super::delegate::delegate_segment_storage!(S3Storage);
