//! `verify`: check that every referenced object exists and matches its hash.
//!
//! It checks the authoritative tier: on the cached tier, L2 (L1 could hold copies of
//! objects L2 has lost). Checking through L1 is a separate, optional report
//! ([`VerifyTier::Cache`]). Transient backend errors are retried, not fatal.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::Marks;
use crate::backend::ObjectBackend;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys;
use crate::progress::{ProgressFn, Tracker};
use crate::store::Store;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check only this fraction (0.0 to 1.0) of the referenced blobs, chosen at random.
    /// `None` checks every one.
    pub sample: Option<f64>,
    /// How many blobs to read and hash at once.
    pub parallelism: usize,
    /// Which tier to check.
    pub tier: VerifyTier,
    /// Remove each corrupt blob (after reading it once more, to be sure), so that the next
    /// write of the same content, or an import or sync from a good copy, stores it again:
    /// while a damaged copy exists, a write of that content is a dedup hit that keeps it.
    /// Removed blobs are reported in [`VerifyReport::removed`] and stay in
    /// [`VerifyReport::corrupt`]: they are missing until a good copy comes back.
    pub repair: bool,
    /// Called after each blob is read and hashed (the CLI's progress bar): items are
    /// blobs, bytes their sizes.
    pub progress: Option<ProgressFn>,
}

/// Which tier `verify` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyTier {
    /// The authoritative objects: L2 behind a cache, the backend itself otherwise.
    #[default]
    Authoritative,
    /// Through the store's own backend, cache included (what readers of this process see).
    Cache,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            sample: None,
            parallelism: 2,
            tier: VerifyTier::Authoritative,
            repair: false,
            progress: None,
        }
    }
}

/// Attempts of each read `verify` makes when it meets a transient error.
const ATTEMPTS: u32 = 6;
/// First pause between them; doubled each time.
const BACKOFF: Duration = Duration::from_millis(50);

/// Runs `op` again while it fails with a transient error (network, 5xx, throttling).
async fn retried<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = BACKOFF;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if crate::identity::is_transient(&e) && attempt < ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "verify: transient error; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The tier that was checked, such as `the S3 server at ... (bucket ..., prefix ...)`.
    pub tier: String,
    /// Manifest versions whose trees were walked.
    pub versions: u64,
    /// Referenced blobs.
    pub blobs_referenced: u64,
    /// Blobs read and hashed.
    pub blobs_checked: u64,
    /// Bytes read and hashed.
    pub bytes_checked: u64,
    /// Referenced blobs that do not exist.
    pub missing: Vec<BlobId>,
    /// Referenced blobs whose content does not match their name or size.
    pub corrupt: Vec<BlobId>,
    /// Manifests or tree nodes that could not be read or decoded.
    pub damaged_manifests: Vec<String>,
    /// Blobs no version references (removed by GC once past the grace period).
    pub orphans: Vec<BlobId>,
    /// Corrupt blobs that [`VerifyOptions::repair`] removed.
    pub removed: Vec<BlobId>,
}

impl VerifyReport {
    /// True when nothing is missing, corrupt or damaged (orphans are harmless).
    pub fn is_healthy(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.damaged_manifests.is_empty()
    }
}

impl Store {
    /// Checks every version of every collection: each referenced blob exists and hashes
    /// to its name, and each tree node decodes. Reports orphan blobs too. Reads the tier
    /// `options.tier` names (by default the authoritative one: L2 on the cached tier).
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        if options.tier == VerifyTier::Authoritative {
            if let Some(l2) = self.backend().authoritative() {
                let direct = Store::new(l2, self.options().clone());
                return Box::pin(direct.verify_here(options, self.backend())).await;
            }
        }
        self.verify_here(options, self.backend()).await
    }

    /// Verifies this store's backend; a repair deletes through `outer` (the store the
    /// caller opened, so a cache in front drops its copies too).
    async fn verify_here(
        &self,
        options: &VerifyOptions,
        outer: &Arc<dyn ObjectBackend>,
    ) -> Result<VerifyReport> {
        let backend = self.backend();
        let mut report = VerifyReport {
            tier: match backend.authoritative() {
                Some(_) => format!("the L1 cache in front of {}", backend.describe()),
                None => backend.describe(),
            },
            ..VerifyReport::default()
        };
        let mut marks = Marks::default();
        for collection in retried(|| self.collections()).await? {
            for (v, _) in retried(|| self.versions(&collection)).await? {
                let root = match retried(|| self.root_if_present(&collection, v)).await {
                    Ok(Some(root)) => root,
                    Ok(None) => continue,
                    Err(e) => {
                        report
                            .damaged_manifests
                            .push(format!("{collection} v{v}: {e}"));
                        continue;
                    }
                };
                report.versions += 1;
                let mut added = marks.add_root(self, &root).await;
                let mut attempt = 1;
                while added.as_ref().is_err_and(crate::identity::is_transient) && attempt < ATTEMPTS
                {
                    tokio::time::sleep(BACKOFF * attempt).await;
                    added = marks.add_root(self, &root).await;
                    attempt += 1;
                }
                if let Err(e) = added {
                    report
                        .damaged_manifests
                        .push(format!("{collection} v{v}: {e}"));
                }
            }
        }
        report.blobs_referenced = marks.blobs.len() as u64;
        let mut chosen: Vec<(BlobId, u64)> = marks
            .blobs
            .iter()
            .map(|(id, size)| (*id, *size))
            .filter(|_| options.sample.is_none_or(|p| rand::random::<f64>() < p))
            .collect();
        chosen.sort();
        let tracker = Tracker::new(
            options.progress.as_ref(),
            chosen.len() as u64,
            chosen.iter().map(|(_, size)| size).sum(),
        );
        // Each blob's bytes are dropped as soon as they are hashed: only the reads in
        // flight hold any.
        let mut results = stream::iter(chosen)
            .map(|(id, size)| async move {
                let read = retried(|| self.blobs().get_verified(&id, size)).await;
                (id, size, read.map(drop))
            })
            .buffer_unordered(options.parallelism.max(1));
        while let Some((id, size, result)) = results.next().await {
            tracker.tick(size);
            match result {
                Ok(_) => {
                    report.blobs_checked += 1;
                    report.bytes_checked += size;
                }
                Err(Error::Corrupt { actual, .. }) if actual == "missing blob" => {
                    report.missing.push(id)
                }
                Err(Error::Corrupt { .. }) => {
                    report.blobs_checked += 1;
                    report.corrupt.push(id);
                }
                Err(e) => return Err(e),
            }
        }
        let referenced: HashSet<BlobId> = marks.blobs.keys().copied().collect();
        for meta in retried(|| self.backend().list(keys::BLOBS_PREFIX)).await? {
            if let Some(id) = keys::id_from_key(meta.key.as_str()) {
                if !referenced.contains(&id) {
                    report.orphans.push(id);
                }
            }
        }
        report.missing.sort();
        report.corrupt.sort();
        report.orphans.sort();
        if options.repair {
            for id in &report.corrupt {
                let size = marks.blobs.get(id).copied().unwrap_or_default();
                // A writer may have stored a good copy since: never delete that one.
                if let Err(Error::Corrupt { .. }) = self.blobs().get_verified(id, size).await {
                    let key = keys::blob(id);
                    retried(|| outer.delete(&key)).await?;
                    tracing::warn!(blob = %id, "verify --repair removed a corrupt blob");
                    report.removed.push(*id);
                }
            }
        }
        Ok(report)
    }
}
