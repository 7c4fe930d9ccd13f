//! Export archives streamed, never staged: a tar (plain, `.tar.zst` or `.tar.gz`, chosen by
//! the name's extension) written to a file or to stdout (`-`) while the objects are read,
//! and read back the same way for import.
//!
//! The writer runs on a blocking thread; the async side reads each object from the store
//! in bounded chunks, verifies it against its hash and hands the chunks over a channel of
//! a few slots, so memory stays bounded whatever the archive's size and nothing touches
//! `$TMPDIR`.

use std::io::{Read, Write};
use std::path::Path;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::archive;
use super::compression::Compression;
use crate::error::{Error, Result};
use crate::hash::{update_hasher, BlobId};
use crate::keys::{self, ObjectKey};
use crate::progress::{ProgressFn, Tracker};

/// Chunks of blob content handed to the writer at a time.
const CHUNK: u64 = 4 * 1024 * 1024;
/// Chunks in flight between the reader and the writer.
const SLOTS: usize = 4;

/// One message to the writer thread.
enum Piece {
    /// A new entry of `size` bytes, whose chunks follow.
    Entry(String, u64),
    Chunk(Bytes),
}

/// The receiving end, read as the content of one entry.
struct EntryReader<'a> {
    rx: &'a mut mpsc::Receiver<Piece>,
    left: u64,
    buf: Bytes,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Piece::Chunk(c)) => self.buf = c,
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the export stopped in the middle of an object",
                    ))
                }
            }
        }
        let n = out.len().min(self.buf.len()).min(self.left as usize);
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        self.left -= n as u64;
        Ok(n)
    }
}

/// The writer thread's body: a tar of every entry received, into `out`.
fn write_tar(out: Box<dyn Write + Send>, mut rx: mpsc::Receiver<Piece>) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    while let Some(piece) = rx.blocking_recv() {
        let Piece::Entry(name, size) = piece else {
            return Err(std::io::Error::other("a chunk outside an entry"));
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let reader = EntryReader {
            rx: &mut rx,
            left: size,
            buf: Bytes::new(),
        };
        tar.append_data(&mut header, &name, reader)?;
    }
    let mut out = tar.into_inner()?;
    out.flush()
}

/// A compressing writer whose flush finishes the stream (and flushes what is under it).
struct Finishing<W: Write> {
    inner: Option<W>,
    finish: fn(W) -> std::io::Result<()>,
}

impl<W: Write> Write for Finishing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.as_mut() {
            Some(w) => w.write(buf),
            None => Err(std::io::Error::other("archive already finished")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.inner.take() {
            Some(w) => (self.finish)(w),
            None => Ok(()),
        }
    }
}

/// Opens `path` (`-`: stdout) for writing an archive, compressed as its name says.
fn open_writer(path: &Path) -> Result<Box<dyn Write + Send>> {
    let shown = path.display();
    let io = |e| Error::io(format!("creating {shown}"), e);
    let stdout = path == Path::new("-");
    let raw: Box<dyn Write + Send> = if stdout {
        Box::new(std::io::stdout())
    } else {
        Box::new(Synced(std::fs::File::create(path).map_err(io)?))
    };
    Ok(match Compression::of(path).unwrap_or(Compression::None) {
        Compression::None => raw,
        Compression::Zstd => Box::new(Finishing {
            inner: Some(zstd::Encoder::new(raw, 3).map_err(io)?),
            finish: |w| w.finish()?.flush(),
        }),
        Compression::Gzip => Box::new(Finishing {
            inner: Some(flate2::write::GzEncoder::new(
                raw,
                flate2::Compression::default(),
            )),
            finish: |w| w.finish()?.flush(),
        }),
    })
}

/// A file whose flush also makes it durable.
struct Synced(std::fs::File);

impl Write for Synced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.0.sync_all()
    }
}

/// What goes into an archive: `(key, size, expected id)`; blobs and tree nodes are
/// verified against the id on the way.
pub(crate) type Listed = Vec<(ObjectKey, Option<(BlobId, u64)>)>;

/// Streams `objects` from `src` into a tar at `path`. On error the archive is incomplete
/// (and an import of it fails); nothing else is written.
pub(crate) async fn write_archive(
    src: &dyn crate::backend::ObjectBackend,
    objects: Listed,
    path: &Path,
    progress: Option<&ProgressFn>,
) -> Result<u64> {
    let out = open_writer(path)?;
    let (tx, rx) = mpsc::channel(SLOTS);
    let writer = tokio::task::spawn_blocking(move || write_tar(out, rx));
    let blob_bytes = objects
        .iter()
        .filter_map(|(_, b)| b.map(|(_, size)| size))
        .sum();
    let tracker = Tracker::new(progress, objects.len() as u64, blob_bytes);
    let sent = send_all(src, objects, &tx, &tracker).await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::backend("writing an archive", e.to_string()))?;
    let bytes = sent?;
    written.map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(bytes)
}

async fn send_all(
    src: &dyn crate::backend::ObjectBackend,
    objects: Listed,
    tx: &mpsc::Sender<Piece>,
    tracker: &Tracker<'_>,
) -> Result<u64> {
    let closed = || Error::backend("writing an archive", "the archive writer stopped");
    let mut total = 0u64;
    for (key, blob) in objects {
        match blob {
            Some((id, size)) if key.as_str().starts_with(keys::BLOBS_PREFIX) => {
                tx.send(Piece::Entry(key.to_string(), size))
                    .await
                    .map_err(|_| closed())?;
                let mut hasher = blake3::Hasher::new();
                let mut offset = 0;
                while offset < size {
                    let end = (offset + CHUNK).min(size);
                    let chunk = src.get_range(&key, offset..end).await?;
                    update_hasher(&mut hasher, &chunk);
                    offset = end;
                    tx.send(Piece::Chunk(chunk)).await.map_err(|_| closed())?;
                }
                let actual = BlobId::from(hasher.finalize());
                if actual != id {
                    return Err(Error::hash_mismatch(&key, id, actual));
                }
                total = total.saturating_add(size);
                tracker.tick(size);
            }
            expected => {
                let bytes = src.get(&key).await?;
                if let Some((id, _)) = expected {
                    let actual = BlobId::of(&bytes);
                    if actual != id {
                        return Err(Error::hash_mismatch(&key, id, actual));
                    }
                }
                tx.send(Piece::Entry(key.to_string(), bytes.len() as u64))
                    .await
                    .map_err(|_| closed())?;
                if !bytes.is_empty() {
                    tx.send(Piece::Chunk(bytes)).await.map_err(|_| closed())?;
                }
                // Tree nodes count as items only: the bytes are those of the blobs.
                tracker.tick(0);
            }
        }
    }
    Ok(total)
}

impl crate::store::Store {
    /// Imports `collection` from an export (a directory, or an archive as named in
    /// [`Compression::of`], `-` for stdin) as collection `name` of this store, through
    /// [`sync_to`](crate::store::Store::sync_to) with mirrored history: versions are
    /// renumbered from this store's head of `name`, snapshots keep their names, every
    /// object is verified, and a `name` that exists and has diverged is refused.
    #[tracing::instrument(level = "debug", name = "import", skip_all, fields(collection, source = %source.display(), name))]
    pub async fn import_as(
        &self,
        collection: &str,
        source: &Path,
        name: &str,
        transfer: &crate::transfer::TransferOptions,
    ) -> Result<crate::sync::SyncReport> {
        let mut options = crate::sync::SyncOptions {
            rename: Some(name.to_owned()),
            history: crate::sync::History::Mirror,
            ..crate::sync::SyncOptions::default()
        };
        let backend: Arc<dyn crate::backend::ObjectBackend> = if Compression::of(source).is_some() {
            let meta = crate::backend::memory::MemoryBackend::new();
            archive::read_tar(
                source,
                self.backend().clone(),
                meta.clone(),
                transfer.progress.as_ref(),
            )
            .await?;
            Arc::new(archive::ArchiveSource {
                meta,
                blobs: self.backend().clone(),
            })
        } else {
            if !source.is_dir() {
                return Err(Error::not_found(source.display()));
            }
            // From a directory the sync's copy is the work; from an archive, reading it.
            options.progress = transfer.progress.clone();
            Arc::new(crate::backend::local::LocalBackend::open(source).await?)
        };
        let reader = crate::store::Store::new(backend, self.options().clone());
        reader.sync_to(collection, self, &options).await
    }
}
