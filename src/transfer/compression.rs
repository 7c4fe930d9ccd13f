//! Which compression an archive's name asks for, and its decompressing reader.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// How an archive is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.tar` (and `-`, stdin or stdout).
    None,
    /// `.tar.zst` or `.tzst`.
    Zstd,
    /// `.tar.gz` or `.tgz`.
    Gzip,
}

impl Compression {
    /// The compression an archive name asks for; `None` (the `Option`) if the name is no
    /// archive name (a directory).
    pub fn of(path: &Path) -> Option<Compression> {
        let name = path.to_string_lossy();
        if name == "-" || name.ends_with(".tar") {
            Some(Compression::None)
        } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            Some(Compression::Zstd)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Compression::Gzip)
        } else {
            None
        }
    }
}

/// Opens `path` (`-`: stdin) for reading, decompressed as its name says; `read` counts
/// the bytes read from the file itself (before decompression), for progress.
pub(crate) fn open_reader(path: &Path, read: Arc<AtomicU64>) -> Result<Box<dyn Read + Send>> {
    let shown = path.display();
    let file: Box<dyn Read + Send> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| Error::io(format!("opening {shown}"), e))?)
    };
    let raw = Counted { inner: file, read };
    Ok(match Compression::of(path).unwrap_or(Compression::None) {
        Compression::None => Box::new(raw),
        Compression::Zstd => {
            Box::new(zstd::Decoder::new(raw).map_err(|e| Error::io(format!("reading {shown}"), e))?)
        }
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(raw)),
    })
}

/// A reader that counts what it reads.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
