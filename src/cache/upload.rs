//! Write-through streaming uploads: every chunk goes to the L2 upload and to an L1 temp
//! file at the same time; `publish` returns once L2 has published, then moves the L1 copy
//! into place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Kind, Shared};
use crate::backend::Upload;
use crate::error::{Error, Result};
use crate::keys::ObjectKey;

/// The L1 copy of an upload being written.
struct Tee {
    /// `None` only while a write runs on the blocking pool.
    file: Option<File>,
    path: PathBuf,
    size: u64,
}

/// An upload to L2 that leaves a copy in L1 when it is published.
pub(crate) struct CachingUpload {
    shared: Arc<Shared>,
    l2: Box<dyn Upload>,
    /// Dropped (and its file removed) if it can't be written or outgrows the budget.
    tee: Option<Tee>,
}

impl CachingUpload {
    pub(crate) fn new(shared: Arc<Shared>, l2: Box<dyn Upload>) -> Self {
        let path = shared.l1.temp_path();
        let file = OpenOptions::new().write(true).create_new(true).open(&path);
        let tee = match file {
            Ok(file) => Some(Tee {
                file: Some(file),
                path,
                size: 0,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no L1 copy for this upload");
                None
            }
        };
        CachingUpload { shared, l2, tee }
    }

    fn drop_tee(&mut self) {
        drop_tee(&mut self.tee);
    }
}

fn drop_tee(tee: &mut Option<Tee>) {
    if let Some(tee) = tee.take() {
        drop(tee.file);
        let _ = fs::remove_file(&tee.path);
    }
}

/// Appends `chunk` to the L1 copy on the blocking pool; gives the copy up on an error or
/// once it outgrows the whole budget (`max`).
async fn tee_write(slot: &mut Option<Tee>, max: u64, chunk: Bytes) {
    let Some(tee) = slot.as_mut() else { return };
    tee.size += chunk.len() as u64;
    let Some(mut file) = tee.file.take().filter(|_| tee.size <= max) else {
        drop_tee(slot);
        return;
    };
    let done = tokio::task::spawn_blocking(move || {
        let r = file.write_all(&chunk);
        (file, r)
    })
    .await;
    match done {
        Ok((file, Ok(()))) => tee.file = Some(file),
        Ok((_, Err(e))) => {
            tracing::warn!(error = %e, "writing the L1 copy of an upload failed");
            drop_tee(slot);
        }
        Err(_) => drop_tee(slot),
    }
}

#[async_trait]
impl Upload for CachingUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        // Both copies at once: the L2 write (network) usually hides the local one.
        let copy = chunk.clone();
        let max = self.shared.l1.max();
        let (written, ()) = tokio::join!(self.l2.write(chunk), tee_write(&mut self.tee, max, copy));
        written
    }

    async fn prepare(&mut self) -> Result<()> {
        self.l2.prepare().await
    }

    async fn publish(mut self: Box<Self>, key: &ObjectKey) -> Result<()> {
        let l2 = std::mem::replace(&mut self.l2, Box::new(Finished));
        if let Err(e) = l2.publish(key).await {
            self.drop_tee();
            return Err(e);
        }
        // Acknowledged by L2: from here on, failures only cost the L1 copy.
        let Some(mut tee) = self.tee.take().filter(|_| Kind::of(key).is_some()) else {
            self.drop_tee();
            return Ok(());
        };
        drop(tee.file.take());
        let (shared, k) = (self.shared.clone(), key.clone());
        let (path, size) = (tee.path.clone(), tee.size);
        let adopted = tokio::task::spawn_blocking(move || shared.l1.adopt(&k, &path, size)).await;
        match adopted {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                self.shared
                    .counters
                    .not_cached
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::warn!(key = %key, error = %e, "could not cache upload"),
            Err(e) => {
                let _ = fs::remove_file(&tee.path);
                tracing::warn!(key = %key, error = %e, "could not cache upload");
            }
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.drop_tee();
        let l2 = std::mem::replace(&mut self.l2, Box::new(Finished));
        l2.abort().await
    }
}

impl Drop for CachingUpload {
    fn drop(&mut self) {
        self.drop_tee();
    }
}

/// Stands in for the L2 upload once it was consumed by publish or abort.
struct Finished;

#[async_trait]
impl Upload for Finished {
    async fn write(&mut self, _chunk: Bytes) -> Result<()> {
        Err(Error::backend(
            "writing an upload",
            "upload already finished",
        ))
    }

    async fn publish(self: Box<Self>, _key: &ObjectKey) -> Result<()> {
        Err(Error::backend(
            "publishing an upload",
            "upload already finished",
        ))
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
