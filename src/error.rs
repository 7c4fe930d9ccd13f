//! The crate's one public error type.
//!
//! Every fallible public function returns [`Result`]. Variants are meant to be matched on:
//! a caller can tell a missing file from a conflicting commit from corrupt bytes without
//! parsing messages. Lower-level errors (I/O, S3 SDK) stay attached as `source`.

use std::fmt;

/// Shorthand for `std::result::Result<T, segstore::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed source error kept attached to [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in segstore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path (or object) does not exist in the committed state.
    #[error("not found: {path}")]
    NotFound {
        /// The logical path or object key that was looked up.
        path: String,
    },

    /// A path, collection name or key was rejected before any I/O happened.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending input, escaped for display.
        path: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A commit lost against a concurrent commit that changed the same paths.
    ///
    /// The caller should re-read and decide; retrying blindly would overwrite the other
    /// writer's update.
    #[error("commit conflict in collection {collection:?} on {path}: {reason}")]
    Conflict {
        /// The collection the commit targeted.
        collection: String,
        /// A path that changed since the writer's base version.
        path: String,
        /// Details, such as the base and current versions.
        reason: String,
    },

    /// Stored bytes do not match the hash they are named by.
    #[error("corrupt data in {object}: expected blake3 {expected}, found {actual}")]
    Corrupt {
        /// The object (blob key) whose content failed verification.
        object: String,
        /// The hash the content should have.
        expected: String,
        /// The hash (or size) the content actually has.
        actual: String,
    },

    /// A range read asked for bytes past the end of the file.
    #[error("range {start}..{end} is out of bounds for {path} of {size} bytes")]
    OutOfRange {
        /// The path or object key.
        path: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The object's size.
        size: u64,
    },

    /// A manifest or tree object could not be decoded: truncated, garbled, wrong magic,
    /// bad checksum or an unsupported format version.
    #[error("corrupt manifest {key}: {reason}")]
    CorruptManifest {
        /// The object key of the manifest or tree node.
        key: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The device or bucket is out of space (ENOSPC, EDQUOT). Nothing was committed.
    #[error("storage full while {context}")]
    StorageFull {
        /// What segstore was doing.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A local I/O error.
    #[error("I/O error while {context}")]
    Io {
        /// What segstore was doing, including the object key where there is one.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An error from a remote backend such as S3: network, authentication, throttling.
    #[error("backend error while {context}: {message}")]
    Backend {
        /// What segstore was doing.
        context: String,
        /// A human readable summary. Never contains credentials.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The backend refused the credentials or the operation (S3 403, EACCES).
    /// The message never contains secrets.
    #[error("permission denied while {context}: {message}")]
    PermissionDenied {
        /// What segstore was doing.
        context: String,
        /// The server's or system's explanation.
        message: String,
    },

    /// The configured bucket does not exist.
    #[error("bucket {bucket:?} does not exist")]
    BucketNotFound {
        /// The bucket name.
        bucket: String,
    },

    /// The backend could not be reached in time: connection refused, DNS failure, timeout.
    #[error("backend unreachable while {context}: {message}")]
    Unavailable {
        /// What segstore was doing.
        context: String,
        /// A human readable summary.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// A commit could not be confirmed or denied (for example a timeout after the request
    /// was sent) and reading the version back did not settle it either. The commit
    /// happened if and only if version `version` exists with this `commit_id` and is not
    /// below the collection's retention boundary: settle it with
    /// [`Store::commit_outcome`](crate::Store::commit_outcome) once the backend answers
    /// again (while version `version` does not exist yet, a delayed request may still
    /// create it). Every other error from a commit means it did not happen.
    #[error(
        "outcome of commit {commit_id} to collection {collection:?} version {version} is unknown"
    )]
    CommitOutcomeUnknown {
        /// The collection.
        collection: String,
        /// The version number the commit tried to create.
        version: u64,
        /// The id the commit wrote into that version.
        commit_id: crate::commit_id::CommitId,
    },

    /// An object that a commit was about to reference no longer exists, so nothing was
    /// committed: garbage collection removed it while it was unreferenced (a writer that
    /// held staged content past `max_writer_stall`, an entry copied from a version that
    /// retention has since removed). Write the content again.
    #[error(
        "nothing was committed to collection {collection:?}: {key} no longer exists ({reason})"
    )]
    ReferenceGone {
        /// The collection.
        collection: String,
        /// The object key, or the version, that is gone.
        key: String,
        /// Why the commit referenced it.
        reason: String,
    },

    /// A sync destination has moved on independently of the source: its latest version
    /// equals no version of the source up to the one being synced. Nothing was written to
    /// it; sync again with overwrite to replace its state anyway.
    #[error(
        "destination collection {collection:?} at version {version} has diverged from the \
         source (it equals none of the source's versions up to {source_version}); nothing \
         was synced (overwrite to replace it)"
    )]
    Diverged {
        /// The destination collection.
        collection: String,
        /// Its latest version.
        version: u64,
        /// The source version the sync was asked to reach.
        source_version: u64,
    },

    /// Another GC or retention run holds the store; only one runs at a time.
    #[error("another GC or retention run (epoch {epoch}) is in progress; try again after it ends")]
    GcInProgress {
        /// The epoch of the run in progress.
        epoch: u64,
    },

    /// A write was attempted through a read-only view (a snapshot or an old version).
    #[error("read-only: {0}")]
    ReadOnly(String),

    /// Configuration that cannot work, such as an unknown key or a bad value.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The backend lacks a capability segstore relies on (for example conditional writes).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A file opened from an old manifest version can no longer be read: retention removed
    /// that version, and garbage collection then deleted the file's content. Not damage:
    /// the reader outlived what the store retains. Move the reader to a retained version
    /// (a tantivy reader: reload). Files of a version stay readable while the version is
    /// retained (by the retention policy or a snapshot).
    #[error("{path} is no longer stored: version {version} of collection {collection:?}, which it was opened from, is past retention and its content was collected")]
    VersionExpired {
        /// The collection.
        collection: String,
        /// The file.
        path: String,
        /// The manifest version the file was opened from.
        version: u64,
    },

    /// This process's options contradict a setting the store was created with, which
    /// every process sharing the store must respect (see `segstore::identity`).
    #[error("store setting {setting} is {store} in the store's identity, but this process asked for {process}; use the store's value (or leave the option at its default)")]
    SettingsMismatch {
        /// The setting, as named in the identity object.
        setting: String,
        /// The store's value.
        store: String,
        /// This process's value.
        process: String,
    },

    /// The L1 cache directory is held by another process: two processes cannot share one
    /// L1 directory (stores opened in one process share it).
    #[error("cache directory {dir} is in use by {}; stop that process, or give this one its own L1 directory (l1_path)", holder.map_or_else(|| "another process".to_owned(), |pid| format!("process {pid}")))]
    CacheLocked {
        /// The L1 directory.
        dir: String,
        /// The process id written in its `LOCK` file, when readable.
        holder: Option<u32>,
    },
}

impl Error {
    /// Builds [`Error::InvalidPath`].
    pub fn invalid_path(path: impl fmt::Debug, reason: impl Into<String>) -> Self {
        let shown = format!("{path:?}");
        let path = shown
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map(str::to_owned)
            .unwrap_or(shown);
        Error::InvalidPath {
            path,
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Corrupt`] for content whose hash is not the one it is named by.
    pub fn hash_mismatch(
        object: impl fmt::Display,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) -> Self {
        Error::Corrupt {
            object: object.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    /// Builds [`Error::NotFound`].
    pub fn not_found(path: impl fmt::Display) -> Self {
        Error::NotFound {
            path: path.to_string(),
        }
    }

    /// Wraps an I/O error, mapping out-of-space errors to [`Error::StorageFull`] and
    /// `ErrorKind::NotFound` to [`Error::NotFound`] is deliberately *not* done here: callers
    /// decide whether a missing file means a missing object.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if is_out_of_space(&source) {
            Error::StorageFull { context, source }
        } else {
            Error::Io { context, source }
        }
    }

    /// Builds [`Error::Backend`] without a source.
    pub fn backend(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Backend {
            context: context.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A copy of this error for another caller of a shared operation (a group commit):
    /// the same kind and fields; an underlying error is carried by its message.
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        let boxed = |s: &Option<BoxError>| -> Option<BoxError> {
            s.as_ref().map(|e| -> BoxError { e.to_string().into() })
        };
        match self {
            Error::NotFound { path } => Error::NotFound { path: path.clone() },
            Error::InvalidPath { path, reason } => Error::InvalidPath {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Conflict {
                collection,
                path,
                reason,
            } => Error::Conflict {
                collection: collection.clone(),
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Corrupt {
                object,
                expected,
                actual,
            } => Error::Corrupt {
                object: object.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Error::OutOfRange {
                path,
                start,
                end,
                size,
            } => Error::OutOfRange {
                path: path.clone(),
                start: *start,
                end: *end,
                size: *size,
            },
            Error::CorruptManifest { key, reason } => Error::CorruptManifest {
                key: key.clone(),
                reason: reason.clone(),
            },
            Error::StorageFull { context, source } => Error::StorageFull {
                context: context.clone(),
                source: io(source),
            },
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: io(source),
            },
            Error::Backend {
                context,
                message,
                source,
            } => Error::Backend {
                context: context.clone(),
                message: message.clone(),
                source: boxed(source),
            },
            Error::PermissionDenied { context, message } => Error::PermissionDenied {
                context: context.clone(),
                message: message.clone(),
            },
            Error::BucketNotFound { bucket } => Error::BucketNotFound {
                bucket: bucket.clone(),
            },
            Error::Unavailable {
                context,
                message,
                source,
            } => Error::Unavailable {
                context: context.clone(),
                message: message.clone(),
                source: boxed(source),
            },
            Error::CommitOutcomeUnknown {
                collection,
                version,
                commit_id,
            } => Error::CommitOutcomeUnknown {
                collection: collection.clone(),
                version: *version,
                commit_id: *commit_id,
            },
            Error::ReferenceGone {
                collection,
                key,
                reason,
            } => Error::ReferenceGone {
                collection: collection.clone(),
                key: key.clone(),
                reason: reason.clone(),
            },
            Error::Diverged {
                collection,
                version,
                source_version,
            } => Error::Diverged {
                collection: collection.clone(),
                version: *version,
                source_version: *source_version,
            },
            Error::GcInProgress { epoch } => Error::GcInProgress { epoch: *epoch },
            Error::ReadOnly(m) => Error::ReadOnly(m.clone()),
            Error::InvalidConfig(m) => Error::InvalidConfig(m.clone()),
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::VersionExpired {
                collection,
                path,
                version,
            } => Error::VersionExpired {
                collection: collection.clone(),
                path: path.clone(),
                version: *version,
            },
            Error::SettingsMismatch {
                setting,
                store,
                process,
            } => Error::SettingsMismatch {
                setting: setting.clone(),
                store: store.clone(),
                process: process.clone(),
            },
            Error::CacheLocked { dir, holder } => Error::CacheLocked {
                dir: dir.clone(),
                holder: *holder,
            },
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

fn is_out_of_space(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
        || err.kind() == std::io::ErrorKind::StorageFull
}
