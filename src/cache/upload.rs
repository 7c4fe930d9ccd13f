//! Write-through streaming uploads: every chunk goes to the L2 upload and to an L1 temp
//! file at the same time; `publish` returns once L2 has published, then moves the L1 copy
//! into place. The copy's bytes are reserved in L1's budget before they are written, so
//! any number of concurrent uploads never hold more than the budget in `tmp/`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Kind, Shared};
use crate::backend::Upload;
use crate::error::{Error, Result};
use crate::keys::ObjectKey;

/// The L1 copy of an upload being written. Its bytes are reserved in L1's budget as they
/// are written ([`super::l1::L1::reserve_temp`]).
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
        drop_tee(&self.shared, &mut self.tee);
    }
}

/// Gives the L1 copy up: removes its file and returns its reservation.
fn drop_tee(shared: &Shared, tee: &mut Option<Tee>) {
    if let Some(tee) = tee.take() {
        drop(tee.file);
        let _ = fs::remove_file(&tee.path);
        shared.l1.unreserve(tee.size);
    }
}

/// Reserves room for `chunk` in L1's budget and appends it to the L1 copy, on the blocking
/// pool; gives the copy up on an error or when L1 has no unpinned room left for it.
async fn tee_write(shared: &Arc<Shared>, slot: &mut Option<Tee>, chunk: Bytes) {
    let Some(tee) = slot.as_mut() else { return };
    let Some(mut file) = tee.file.take() else {
        drop_tee(shared, slot);
        return;
    };
    let len = chunk.len() as u64;
    let s = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        if !s.l1.reserve_temp(len) {
            return (file, Ok(false));
        }
        let written = file.write_all(&chunk);
        if written.is_err() {
            s.l1.unreserve(len);
        }
        (file, written.map(|()| true))
    })
    .await;
    match done {
        Ok((file, Ok(true))) => {
            tee.file = Some(file);
            tee.size += len;
        }
        Ok((_, Ok(false))) => {
            tracing::debug!("no room left in L1 for the copy of an upload; not caching it");
            drop_tee(shared, slot);
        }
        Ok((_, Err(e))) => {
            tracing::warn!(error = %e, "writing the L1 copy of an upload failed");
            drop_tee(shared, slot);
        }
        Err(_) => drop_tee(shared, slot),
    }
}

#[async_trait]
impl Upload for CachingUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        // Both copies at once: the L2 write (network) usually hides the local one.
        let copy = chunk.clone();
        let shared = self.shared.clone();
        let (written, ()) = tokio::join!(
            self.l2.write(chunk),
            tee_write(&shared, &mut self.tee, copy)
        );
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
        if Kind::of(key).is_none() {
            self.drop_tee();
            return Ok(());
        }
        let Some(mut tee) = self.tee.take() else {
            return Ok(());
        };
        drop(tee.file.take());
        let (shared, k) = (self.shared.clone(), key.clone());
        let (path, size) = (tee.path.clone(), tee.size);
        let adopted =
            tokio::task::spawn_blocking(move || shared.l1.adopt_reserved(&k, &path, size)).await;
        match adopted {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                super::bump(&self.shared.counters.not_cached, 1);
            }
            Ok(Err(e)) => tracing::warn!(key = %key, error = %e, "could not cache upload"),
            Err(e) => {
                let _ = fs::remove_file(&tee.path);
                self.shared.l1.unreserve(size);
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
