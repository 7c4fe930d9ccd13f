//! [`S3Backend`]: objects in an S3 bucket (AWS, MinIO, R2, moto...), under a key prefix.
//!
//! The commit protocol rests on create-only writes, which S3 offers as `PutObject` with
//! `If-None-Match: *`. Servers that silently ignore that header, or check and write in two
//! steps, would let two writers both "win" a commit; the store identity's creation
//! ([`crate::identity`]) races concurrent creates to refuse them.
//!
//! Streaming uploads go to a staging key first, because a blob's final key is its hash,
//! known only after the last byte; see `upload.rs`.

#[cfg(feature = "s3")]
mod backend;
mod config;

#[cfg(feature = "s3")]
pub use backend::S3Backend;
pub use config::{S3Config, S3Credentials, MAX_PART_SIZE, MIN_PART_SIZE};
