//! segstore: content-addressed, crash-safe storage for search-engine segment files.
#![warn(missing_docs)]

pub mod backend;
pub mod error;
pub mod hash;
pub mod keys;
pub mod path;

pub use error::{Error, Result};
pub use hash::BlobId;
pub use path::{StorageBackend, StoragePath};
