//! [`SegmentFileHandle`]: a tantivy `FileHandle` over one stored file, read without copying.

use std::ops::{Deref, Range};
use std::{fmt, io};

use async_trait::async_trait;
use bytes::Bytes;
use tantivy::directory::{FileHandle, OwnedBytes};
use tantivy::HasLen;

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
pub(crate) fn owned_bytes(bytes: Bytes) -> OwnedBytes {
    OwnedBytes::new(StableBytes(bytes))
}

/// One open file: its whole content as a zero-copy slice of the store's buffer (for local
/// blobs, a cached memory mapping). The length comes from the manifest, so
/// [`HasLen::len`] does no I/O, and every `read_bytes` is a slice of the same buffer.
///
/// The handle keeps the content alive: deleting the file from the directory afterwards
/// only removes its name, and this handle stays readable.
pub struct SegmentFileHandle {
    name: String,
    data: OwnedBytes,
}

impl SegmentFileHandle {
    /// A handle over `data`, the whole content of file `name`.
    pub(crate) fn new(name: String, data: Bytes) -> Self {
        SegmentFileHandle {
            name,
            data: owned_bytes(data),
        }
    }

    fn slice(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.start > range.end || range.end > self.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {}..{} is out of bounds for {} of {} bytes",
                    range.start,
                    range.end,
                    self.name,
                    self.data.len()
                ),
            ));
        }
        Ok(self.data.slice(range))
    }
}

impl fmt::Debug for SegmentFileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentFileHandle")
            .field("name", &self.name)
            .field("len", &self.data.len())
            .finish()
    }
}

impl HasLen for SegmentFileHandle {
    fn len(&self) -> usize {
        self.data.len()
    }
}

#[async_trait]
impl FileHandle for SegmentFileHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.slice(range)
    }

    async fn read_bytes_async(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.slice(range)
    }
}
