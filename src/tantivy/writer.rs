//! [`SegmentWriter`]: tantivy's `open_write`, streamed into a blob as it is written.
//!
//! Bytes are gathered into chunks of [`CHUNK`] and handed to an upload task on the bridge
//! runtime through a small bounded channel, so memory stays bounded whatever the file's
//! size. The upload hashes as it goes (BLAKE3); `terminate` waits for the blob to be
//! durable and registers the file as written-but-uncommitted. A file that never fills a
//! chunk is staged in one go (inline in the manifest when it is small).

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use tantivy::directory::{AntiCallToken, TerminatingWrite};
use tokio::sync::mpsc;

use super::{runtime, to_io, Shared};
use crate::error::{Error, Result};
use crate::manifest::FileEntry;

/// Size of the chunks sent to the upload.
const CHUNK: usize = 1024 * 1024;
/// Chunks in flight between the writer and the upload.
const IN_FLIGHT: usize = 2;

enum Msg {
    Chunk(Bytes),
    Finish,
}

struct Upload {
    tx: mpsc::Sender<Msg>,
    task: runtime::Waiter<FileEntry>,
}

/// A file being written through the adapter. Dropping it without `terminate` discards
/// what was written and frees the name.
pub(crate) struct SegmentWriter {
    shared: Arc<Shared>,
    name: String,
    buf: Vec<u8>,
    upload: Option<Upload>,
    finished: bool,
}

impl SegmentWriter {
    pub(crate) fn new(shared: Arc<Shared>, name: String) -> Self {
        SegmentWriter {
            shared,
            name,
            buf: Vec::new(),
            upload: None,
            finished: false,
        }
    }

    fn start_upload(&self) -> Result<Upload> {
        let (tx, mut rx) = mpsc::channel::<Msg>(IN_FLIGHT);
        let store = self.shared.store.clone();
        let task = runtime::start(async move {
            let mut writer = store.blobs().writer().await?;
            loop {
                match rx.recv().await {
                    Some(Msg::Chunk(chunk)) => {
                        if let Err(e) = writer.write(chunk).await {
                            let _ = writer.abort().await;
                            return Err(e);
                        }
                    }
                    Some(Msg::Finish) => {
                        let (id, size) = writer.finish().await?;
                        return Ok(FileEntry::blob(id, size));
                    }
                    // The writer was dropped without terminate.
                    None => {
                        writer.abort().await?;
                        return Err(Error::backend("writing a tantivy file", "abandoned"));
                    }
                }
            }
        })?;
        Ok(Upload { tx, task })
    }

    /// Sends one message to the upload; if the upload already failed, returns its error.
    fn send(&mut self, msg: Msg) -> io::Result<()> {
        let upload = match self.upload.as_mut() {
            Some(u) => u,
            None => {
                let started = self.start_upload().map_err(to_io)?;
                self.upload.insert(started)
            }
        };
        // Sent from the bridge runtime, waited for on this thread (see `runtime`).
        let tx = upload.tx.clone();
        if runtime::run(async move { Ok(tx.send(msg).await.is_ok()) }).map_err(to_io)? {
            return Ok(());
        }
        // The task ended early: it failed, and its result says why.
        match self.upload.take() {
            Some(u) => match u.task.wait() {
                Err(e) => Err(to_io(e)),
                Ok(_) => Err(io::Error::other("upload finished unexpectedly")),
            },
            None => Err(io::Error::other("upload missing")),
        }
    }

    fn finish(&mut self) -> io::Result<FileEntry> {
        let data = Bytes::from(std::mem::take(&mut self.buf));
        if self.upload.is_none() {
            let store = self.shared.store.clone();
            return runtime::run(async move { store.stage_bytes(data).await }).map_err(to_io);
        }
        if !data.is_empty() {
            self.send(Msg::Chunk(data))?;
        }
        self.send(Msg::Finish)?;
        let upload = self
            .upload
            .take()
            .ok_or_else(|| io::Error::other("upload missing"))?;
        upload.task.wait().map_err(to_io)
    }
}

impl Write for SegmentWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("write after terminate"));
        }
        let written = data.len();
        let mut data = data;
        if self.buf.capacity() == 0 {
            // Most files are small: start small, grow up to one chunk.
            self.buf.reserve(CHUNK.min(data.len().max(64 * 1024)));
        }
        // Every byte is copied once, into a chunk that is then handed over whole.
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
                self.send(Msg::Chunk(Bytes::from(chunk)))?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Nothing becomes visible before `terminate`, so there is nothing to push early.
        Ok(())
    }
}

impl TerminatingWrite for SegmentWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        if self.finished {
            return Err(io::Error::other("terminate called twice"));
        }
        let entry = self.finish()?;
        self.finished = true;
        self.shared.finish_write(&self.name, entry);
        Ok(())
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Dropping the upload's sender makes its task abort the partial blob.
            self.upload = None;
            self.shared.abandon_write(&self.name);
        }
    }
}
