//! Streamed fills: a large blob comes from L2 as one stream (one GET) and goes to an L1
//! temp file in pieces, each piece hashed as a BLAKE3 subtree and written on the blocking
//! pool while the stream goes on, so a fill holds at most [`PIECES_IN_FLIGHT`] pieces
//! (plus one being assembled) in memory whatever the blob's size, and hashes every byte
//! once. The pieces' chaining values merge into the blob's hash; only if it matches is
//! the file moved into L1 and its mapping served. The blob layer then skips its own hash
//! ([`BlobRead::verified`](crate::backend::BlobRead)).
//!
//! A piece is the list of chunks the stream delivered, never copied into one buffer.
//! Measured on a 32 MiB blob from moto, a fill that gathered 4 MiB buffers took about
//! 130 ms, against about 80 ms hashing and writing the received chunks as they are (the
//! copy, and writing from a buffer no longer in the CPU cache, cost more than the
//! transfer itself; `cargo bench --bench cache`, cold whole rows).
//!
//! A blob that does not fit in L1 (larger than the budget, or only pinned entries left)
//! is served from its temp file, unlinked at once: the kernel frees it when the last
//! reader drops the mapping.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use blake3::hazmat::{ChainingValue, HasherExt};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{blocking, bump, l1, CachingBackend, Kind};
use crate::blob::outboard::{root_of_pieces, subtree_hasher};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys::ObjectKey;

/// Blobs larger than this are filled in pieces of this size: a power of two of 1 KiB
/// chunks, so that each piece hashes as one BLAKE3 subtree.
pub(super) const PIECE: u64 = 4 * 1024 * 1024;
/// Pieces being hashed and written at once (keeps both cores busy, bounds memory).
const PIECES_IN_FLIGHT: usize = 4;

/// Why a streamed fill stopped.
enum Stop {
    /// L2 failed or sent bad bytes: the read fails.
    L2(Error),
    /// The L1 file could not be written: the read is still served, from memory.
    Local(Error),
}

impl CachingBackend {
    /// Fetches blob `id` of `size` bytes from L2 into L1 and returns a mapping of it.
    /// Called with the key's single-flight lock held, after an L1 miss.
    pub(super) async fn stream_fill(
        &self,
        key: &ObjectKey,
        id: BlobId,
        size: u64,
    ) -> Result<Bytes> {
        let s = &self.inner;
        let (me, k) = (self.clone(), key.clone());
        let reserved = blocking(move || Ok(me.inner.l1.reserve(&k, size))).await?;
        let give_back = || {
            if reserved {
                s.l1.unreserve(size);
            }
        };
        let temp = s.l1.temp_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp);
        let file = match file {
            Ok(f) => Arc::new(f),
            Err(e) => {
                give_back();
                tracing::warn!(key = %key, error = %e, "no L1 file for a fill; reading into memory");
                return self.whole_fill(key, Kind::Blob(id)).await;
            }
        };
        bump(&s.counters.misses, 1);
        tracing::debug!(key = %key, bytes = size, "L1 miss, streaming from L2");
        let written = self.stream_pieces(key, &id, size, &file).await;
        let discard = || {
            let _ = fs::remove_file(&temp);
            give_back();
        };
        let cvs = match written {
            Ok(cvs) => cvs,
            Err(Stop::L2(e)) => {
                discard();
                if matches!(e, Error::Corrupt { .. }) {
                    bump(&s.counters.verification_failures, 1);
                }
                return Err(e);
            }
            Err(Stop::Local(e)) => {
                discard();
                tracing::warn!(key = %key, error = %e, "could not write to L1; reading into memory");
                return self.whole_fill(key, Kind::Blob(id)).await;
            }
        };
        let actual = root_of_pieces(&cvs);
        if actual != Some(id) {
            discard();
            bump(&s.counters.verification_failures, 1);
            tracing::warn!(key = %key, "content from L2 failed verification");
            return Err(Error::hash_mismatch(
                key,
                id,
                actual.map_or_else(|| "no hash".to_owned(), |a| a.to_hex()),
            ));
        }
        let map = match l1::map_file(&file, key) {
            Ok(map) => map,
            Err(e) => {
                discard();
                return Err(e);
            }
        };
        drop(file);
        if reserved {
            let (me, k, t, m) = (self.clone(), key.clone(), temp.clone(), map.clone());
            if let Err(e) = blocking(move || me.inner.l1.commit_mapped(&k, &t, size, m)).await {
                bump(&s.counters.not_cached, 1);
                tracing::warn!(key = %key, error = %e, "could not place a fill in L1");
            }
        } else {
            let _ = fs::remove_file(&temp);
            bump(&s.counters.not_cached, 1);
        }
        Ok(super::lru::pinned_bytes(map))
    }
}

impl CachingBackend {
    /// Reads `key` from L2 as one stream, cuts it into pieces, and has each piece hashed
    /// (as a subtree at its offset) and written to `file` on the blocking pool while the
    /// stream goes on. Returns the pieces' chaining values, in order.
    async fn stream_pieces(
        &self,
        key: &ObjectKey,
        id: &BlobId,
        size: u64,
        file: &Arc<File>,
    ) -> std::result::Result<Vec<ChainingValue>, Stop> {
        let s = &self.inner;
        let mut chunks = s.l2.get_stream(key).await.map_err(Stop::L2)?;
        let mut work = Pieces {
            file: file.clone(),
            key: key.clone(),
            next: 0,
            running: VecDeque::new(),
            cvs: Vec::new(),
        };
        let mut pending = Piece::default();
        let mut received = 0u64;
        let wrong_size = |actual: String| {
            Stop::L2(Error::Corrupt {
                object: key.to_string(),
                expected: format!("{id} ({size} bytes)"),
                actual,
            })
        };
        let result = async {
            while let Some(chunk) = chunks.next().await {
                let mut chunk = chunk.map_err(Stop::L2)?;
                bump(&s.counters.bytes_from_l2, chunk.len() as u64);
                received += chunk.len() as u64;
                if received > size {
                    return Err(wrong_size("more bytes".into()));
                }
                while !chunk.is_empty() {
                    let take = (PIECE - pending.len).min(chunk.len() as u64);
                    pending.push(chunk.split_to(take as usize));
                    if pending.len == PIECE {
                        work.push(std::mem::take(&mut pending)).await?;
                    }
                }
            }
            if received != size {
                return Err(wrong_size(format!("{received} bytes")));
            }
            if pending.len > 0 {
                work.push(pending).await?;
            }
            work.finish().await
        }
        .await;
        if result.is_err() {
            // Let running writes end before the caller removes the file.
            while let Some(task) = work.running.pop_front() {
                let _ = task.await;
            }
        }
        result
    }
}

/// Consecutive chunks of the stream making up one piece (at most [`PIECE`] bytes).
#[derive(Default)]
struct Piece {
    chunks: Vec<Bytes>,
    len: u64,
}

impl Piece {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len() as u64;
        self.chunks.push(chunk);
    }

    /// Hashes the piece as the subtree at `at` and writes it to `file` there, chunk by
    /// chunk.
    fn hash_and_write(&self, file: &File, at: u64) -> io::Result<ChainingValue> {
        let mut hasher = subtree_hasher(at);
        let mut offset = at;
        for chunk in &self.chunks {
            hasher.update(chunk);
            file.write_all_at(chunk, offset)?;
            offset += chunk.len() as u64;
        }
        Ok(hasher.finalize_non_root())
    }
}

/// Pieces being hashed and written, in order.
struct Pieces {
    file: Arc<File>,
    key: ObjectKey,
    /// Offset of the next piece.
    next: u64,
    running: VecDeque<JoinHandle<io::Result<ChainingValue>>>,
    cvs: Vec<ChainingValue>,
}

impl Pieces {
    /// Starts hashing and writing `piece`, after waiting for the oldest one if
    /// [`PIECES_IN_FLIGHT`] are running (what bounds memory).
    async fn push(&mut self, piece: Piece) -> std::result::Result<(), Stop> {
        if self.running.len() >= PIECES_IN_FLIGHT {
            self.wait_oldest().await?;
        }
        let (file, at) = (self.file.clone(), self.next);
        self.next += piece.len;
        self.running.push_back(tokio::task::spawn_blocking(move || {
            piece.hash_and_write(&file, at)
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> std::result::Result<(), Stop> {
        let Some(task) = self.running.pop_front() else {
            return Ok(());
        };
        let cv = task
            .await
            .map_err(|e| Stop::Local(Error::backend("filling L1", e.to_string())))?
            .map_err(|e| Stop::Local(Error::io(format!("writing cached {}", self.key), e)))?;
        self.cvs.push(cv);
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<Vec<ChainingValue>, Stop> {
        while !self.running.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(std::mem::take(&mut self.cvs))
    }
}
