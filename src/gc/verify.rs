//! `verify`: check that every referenced object exists and matches its hash.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};

use super::Marks;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys;
use crate::store::Store;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check only this fraction (0.0 to 1.0) of the referenced blobs, chosen at random.
    /// `None` checks every one.
    pub sample: Option<f64>,
    /// How many blobs to read and hash at once.
    pub parallelism: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            sample: None,
            parallelism: 2,
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
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
}

impl VerifyReport {
    /// True when nothing is missing, corrupt or damaged (orphans are harmless).
    pub fn is_healthy(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.damaged_manifests.is_empty()
    }
}

impl Store {
    /// Checks every version of every collection: each referenced blob exists and hashes
    /// to its name, and each tree node decodes. Reports orphan blobs too.
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut marks = Marks::default();
        for collection in self.collections().await? {
            for (v, _) in self.versions(&collection).await? {
                let root = match self.root_if_present(&collection, v).await {
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
                if let Err(e) = marks.add_root(self, &root).await {
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
        let results: Vec<_> = stream::iter(chosen)
            .map(|(id, size)| async move { (id, size, self.blobs().get_verified(&id, size).await) })
            .buffer_unordered(options.parallelism.max(1))
            .collect()
            .await;
        for (id, size, result) in results {
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
        for meta in self.backend().list(keys::BLOBS_PREFIX).await? {
            if let Some(id) = keys::id_from_key(meta.key.as_str()) {
                if !referenced.contains(&id) {
                    report.orphans.push(id);
                }
            }
        }
        report.missing.sort();
        report.corrupt.sort();
        report.orphans.sort();
        Ok(report)
    }
}
