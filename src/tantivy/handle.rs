//! [`SegmentFileHandle`]: a tantivy `FileHandle` over one stored file: zero-copy slices of
//! a local buffer, or lazy verified range reads of a remote blob.

use std::ops::{Deref, Range};
use std::sync::Arc;
use std::{fmt, io};

use async_trait::async_trait;
use bytes::Bytes;
use tantivy::directory::{FileHandle, OwnedBytes};
use tantivy::HasLen;

use super::remote::RemoteFile;
use super::{runtime, to_io};
use crate::error::Error;

/// [`Bytes`] as a `StableDeref` owner, so that tantivy's `OwnedBytes` can hold it.
struct StableBytes(Bytes);

impl Deref for StableBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

// SAFETY: `Bytes` is a reference-counted handle to an immutable buffer that lives on the
// heap or in a memory mapping (segstore's local backend maps blobs, which are never
// modified after they are published). Moving the `Bytes` value moves only its
// pointer/length/vtable, never the bytes it points to, and nothing can mutate or
// reallocate the buffer through a shared `Bytes`. So the slice returned by `deref` stays
// at the same address for as long as the value lives, which is what `StableDeref` demands.
unsafe impl stable_deref_trait::StableDeref for StableBytes {}

/// Wraps `bytes` into tantivy's `OwnedBytes` without copying.
fn owned_bytes(bytes: Bytes) -> OwnedBytes {
    OwnedBytes::new(StableBytes(bytes))
}

/// One open file. The length comes from the manifest, so [`HasLen::len`] does no I/O.
///
/// - **Resident** content (local blobs, L1 files of the cache, inline files) is one
///   zero-copy buffer, a memory mapping for blobs: every `read_bytes` is a slice of it.
/// - **Remote** content (plain S3) is read lazily, by verified range, through the
///   adapter's block cache (see the `remote` module).
///
/// Deleting the file from the directory afterwards only removes its name: the handle
/// keeps reading the same immutable blob. Resident content (mapped, in memory) stays
/// readable for the handle's life. Remote content stays readable while the manifest
/// version the file was opened from is retained (by the retention policy or a snapshot);
/// once retention removed that version and GC deleted the blob, reads fail with
/// [`Error::VersionExpired`](crate::Error::VersionExpired), not as corruption.
pub struct SegmentFileHandle {
    name: String,
    len: usize,
    content: Content,
}

enum Content {
    Resident(OwnedBytes),
    Remote(Arc<RemoteFile>),
}

impl SegmentFileHandle {
    /// A handle over `data`, the whole content of file `name`.
    pub(crate) fn resident(name: String, data: Bytes) -> Self {
        SegmentFileHandle {
            name,
            len: data.len(),
            content: Content::Resident(owned_bytes(data)),
        }
    }

    /// A handle that reads `file` (of `len` bytes) lazily.
    pub(crate) fn remote(name: String, len: usize, file: RemoteFile) -> Self {
        SegmentFileHandle {
            name,
            len,
            content: Content::Remote(Arc::new(file)),
        }
    }

    /// True when reads are slices of a local buffer (no request can happen).
    pub fn is_resident(&self) -> bool {
        matches!(self.content, Content::Resident(_))
    }

    fn check(&self, range: &Range<usize>) -> io::Result<()> {
        if range.start > range.end || range.end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {}..{} is out of bounds for {} of {} bytes",
                    range.start, range.end, self.name, self.len
                ),
            ));
        }
        Ok(())
    }

    fn context(&self, err: Error) -> io::Error {
        tracing::warn!(file = %self.name, error = %err, "reading a tantivy file");
        to_io(err)
    }
}

fn as_u64(range: &Range<usize>) -> Range<u64> {
    range.start as u64..range.end as u64
}

impl fmt::Debug for SegmentFileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentFileHandle")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("resident", &self.is_resident())
            .finish()
    }
}

impl HasLen for SegmentFileHandle {
    fn len(&self) -> usize {
        self.len
    }
}

/// What a read needs: nothing more (a resident slice or a block-cache hit), or a fetch.
enum Lookup {
    Ready(OwnedBytes),
    Fetch(Arc<RemoteFile>, Range<u64>),
}

impl SegmentFileHandle {
    fn lookup(&self, range: Range<usize>) -> io::Result<Lookup> {
        self.check(&range)?;
        Ok(match &self.content {
            Content::Resident(data) => Lookup::Ready(data.slice(range)),
            Content::Remote(file) => {
                let range = as_u64(&range);
                match file.cached(&range) {
                    Some(bytes) => Lookup::Ready(owned_bytes(bytes)),
                    None => Lookup::Fetch(file.clone(), range),
                }
            }
        })
    }
}

#[async_trait]
impl FileHandle for SegmentFileHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        match self.lookup(range)? {
            Lookup::Ready(bytes) => Ok(bytes),
            Lookup::Fetch(file, range) => runtime::run(async move { file.read(range).await })
                .map(owned_bytes)
                .map_err(|e| self.context(e)),
        }
    }

    async fn read_bytes_async(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        match self.lookup(range)? {
            Lookup::Ready(bytes) => Ok(bytes),
            Lookup::Fetch(file, range) => {
                // On the bridge runtime, so that the store's I/O never depends on which
                // runtime (if any) the caller polls this future from.
                let task = runtime::spawn(async move { file.read(range).await })
                    .map_err(|e| self.context(e))?;
                let result = task.await.map_err(|e| {
                    self.context(Error::backend("reading a tantivy file", e.to_string()))
                })?;
                result.map(owned_bytes).map_err(|e| self.context(e))
            }
        }
    }
}
