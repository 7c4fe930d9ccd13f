//! [`SegmentStorage`]: the six-method API Prism's index backends are written against.

use async_trait::async_trait;

use crate::error::Result;
use crate::path::StoragePath;

/// Storage of segment files, as Prism's backends use it.
///
/// Every method validates its paths first ([`Error::InvalidPath`](crate::Error::InvalidPath)).
/// Every successful mutation is one atomic, durable commit: when it returns, the change is
/// visible to every reader of the store (in any process), and survives a crash.
///
/// The trait is `Any` so that adapters needing more than these six methods (zero-copy range
/// reads, staged writes, multi-file commits) can reach the [`Store`](crate::Store) core of the stores
/// segstore ships; see [`core_store`](crate::core_store).
#[async_trait]
pub trait SegmentStorage: Send + Sync + std::any::Any {
    /// Stores `data` at `path`, replacing any previous content atomically.
    async fn write(&self, path: &StoragePath, data: &[u8]) -> Result<()>;

    /// Reads the whole file, verified against its hash. A missing path is
    /// [`Error::NotFound`](crate::Error::NotFound); damaged content is
    /// [`Error::Corrupt`](crate::Error::Corrupt).
    async fn read(&self, path: &StoragePath) -> Result<Vec<u8>>;

    /// True when `path` exists in the latest committed state.
    async fn exists(&self, path: &StoragePath) -> Result<bool>;

    /// Every committed path with the prefix's collection and backend, the prefix's shard
    /// when it is `Some` (any shard when `None`), and a segment starting with the prefix's
    /// segment (`""` matches all). Sorted by [`StoragePath`]'s order.
    async fn list(&self, prefix: &StoragePath) -> Result<Vec<StoragePath>>;

    /// Removes `path`. Removing a missing path is `Ok`.
    async fn delete(&self, path: &StoragePath) -> Result<()>;

    /// Moves `from` to `to` in one atomic commit, replacing `to` if it exists (as POSIX
    /// `rename` does). A missing `from` is [`Error::NotFound`](crate::Error::NotFound).
    /// Both paths must be in the same collection.
    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<()>;
}
