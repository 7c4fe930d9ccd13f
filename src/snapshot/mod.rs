//! Snapshots (named pins of a version), time travel, restore and diff.
//!
//! A snapshot is an immutable object `pins/<collection>/<name>` naming one version.
//! Retention never deletes a pinned version and GC never deletes what it references, until
//! the snapshot is deleted or expires. Restore commits a *new* version equal to the pinned
//! one, so history is kept, not rewritten; because tree nodes are content-addressed, it
//! copies only the root's shard references.

mod diff;
mod view;

use std::time::Duration;

use crate::backend::PutOutcome;
use crate::error::{Error, Result};
use crate::keys;
use crate::manifest::{decode_snapshot, encode_snapshot, head, CommitNote, Snapshot};
use crate::path::validate_name;
use crate::store::{CommitInfo, Plan, Store};

pub use diff::{Diff, DiffEntry};
pub use view::VersionView;

/// Which state of a collection to look at or restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A manifest version number.
    Version(u64),
    /// A snapshot by name.
    Snapshot(String),
}

impl Store {
    /// Pins `version` (default: the latest) of `collection` under `name`. Fails with
    /// [`Error::Conflict`] if the name is taken, [`Error::NotFound`] if the version is not
    /// retained.
    pub async fn create_snapshot(
        &self,
        collection: &str,
        name: &str,
        version: Option<u64>,
        ttl: Option<Duration>,
    ) -> Result<Snapshot> {
        validate_name(collection)?;
        validate_name(name)?;
        let version = match version {
            Some(v) => v,
            None => self.refresh(collection).await?.version,
        };
        if version == 0 {
            return Err(Error::not_found(format!(
                "{collection} has no committed version"
            )));
        }
        self.root_at(collection, version).await?;
        let created_ms = self.now_ms();
        let snapshot = Snapshot {
            collection: collection.to_owned(),
            name: name.to_owned(),
            version,
            created_ms,
            expires_ms: ttl.map(|t| {
                // Saturating: a TTL past u64::MAX ms (584 million years) means never.
                created_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            }),
        };
        let key = keys::pin(collection, name);
        let bytes = encode_snapshot(&snapshot)?;
        if self.backend().put_if_absent(&key, bytes.clone()).await? == PutOutcome::AlreadyExists {
            // A void pin (below) holds the name of a snapshot that never was: replace it.
            let void = match self.snapshot_raw(collection, name).await {
                Ok(old) => self.is_void(&old).await?,
                Err(Error::NotFound { .. }) => false,
                Err(e) => return Err(e),
            };
            if !void || self.backend().put(&key, bytes).await.is_err() {
                return Err(Error::Conflict {
                    collection: collection.to_owned(),
                    path: name.to_owned(),
                    reason: "a snapshot with this name already exists".into(),
                });
            }
        }
        // Retention may be deleting the version right now: it raises the boundary, then
        // lists the pins again before deleting. A pin it may have missed is one made
        // after the boundary rose above its version, so such a pin is undone.
        let boundary = head::read_boundary(self.backend().as_ref(), collection).await;
        let refused = match boundary {
            Ok(b) if version < b => Some(Error::not_found(format!(
                "version {version} of {collection} is below the retention boundary {b}; \
                 snapshot a retained version"
            ))),
            Ok(_) => self.root_at(collection, version).await.err(),
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            // If this undo fails too (or the process dies first), the pin stays void: it
            // names a version below the boundary that retention deleted, and every
            // reader ignores it.
            for _ in 0..3 {
                if self.backend().delete(&key).await.is_ok() {
                    break;
                }
            }
            return Err(e);
        }
        Ok(snapshot)
    }

    /// True if `snap` is a void pin: one left by a snapshot that failed (its undo failed,
    /// or its process died) after retention passed its version. Such a pin names a version
    /// below the boundary that no longer exists; an acknowledged pin's version is never
    /// deleted while the pin is there.
    async fn is_void(&self, snap: &Snapshot) -> Result<bool> {
        let backend = self.backend().as_ref();
        if snap.version >= head::read_boundary(backend, &snap.collection).await? {
            return Ok(false);
        }
        Ok(backend
            .head(&keys::manifest(&snap.collection, snap.version))
            .await?
            .is_none())
    }

    /// The pin `name` of `collection` as stored, void or not.
    async fn snapshot_raw(&self, collection: &str, name: &str) -> Result<Snapshot> {
        let key = keys::pin(collection, name);
        let bytes = self.backend().get(&key).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::not_found(format!("snapshot {collection}/{name}")),
            other => other,
        })?;
        decode_snapshot(key.as_str(), &bytes)
    }

    /// The snapshot `name` of `collection`.
    pub async fn snapshot(&self, collection: &str, name: &str) -> Result<Snapshot> {
        validate_name(collection)?;
        validate_name(name)?;
        let snap = self.snapshot_raw(collection, name).await?;
        if self.is_void(&snap).await? {
            return Err(Error::not_found(format!("snapshot {collection}/{name}")));
        }
        Ok(snap)
    }

    /// Every snapshot of `collection` (expired ones included), sorted by name.
    pub async fn snapshots(&self, collection: &str) -> Result<Vec<Snapshot>> {
        validate_name(collection)?;
        let mut out = Vec::new();
        for meta in self.backend().list(&keys::pins_prefix(collection)).await? {
            let bytes = match self.backend().get(&meta.key).await {
                Ok(b) => b,
                Err(Error::NotFound { .. }) => continue, // deleted since the listing
                Err(e) => return Err(e),
            };
            out.push(decode_snapshot(meta.key.as_str(), &bytes)?);
        }
        // Void pins (see `is_void`) are not snapshots. One boundary read settles most.
        if !out.is_empty() {
            let boundary = head::read_boundary(self.backend().as_ref(), collection).await?;
            let mut kept = Vec::with_capacity(out.len());
            for snap in out {
                if snap.version >= boundary || !self.is_void(&snap).await? {
                    kept.push(snap);
                }
            }
            out = kept;
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes snapshot `name`. Deleting a missing snapshot is [`Error::NotFound`].
    pub async fn delete_snapshot(&self, collection: &str, name: &str) -> Result<()> {
        self.snapshot(collection, name).await?;
        self.backend().delete(&keys::pin(collection, name)).await
    }

    /// The version a target names.
    pub async fn resolve_target(&self, collection: &str, target: &Target) -> Result<u64> {
        match target {
            Target::Version(v) => Ok(*v),
            Target::Snapshot(name) => Ok(self.snapshot(collection, name).await?.version),
        }
    }

    /// A read-only view of `collection` as it was at `target`.
    pub async fn view(&self, collection: &str, target: &Target) -> Result<VersionView> {
        let version = self.resolve_target(collection, target).await?;
        let root = self.root_at(collection, version).await?;
        Ok(VersionView::new(self.clone(), root))
    }

    /// Commits a new version of `collection` whose files equal those at `target`.
    pub async fn restore(&self, collection: &str, target: &Target) -> Result<CommitInfo> {
        self.restore_with_note(collection, target, None).await
    }

    /// [`restore`](Self::restore), recording `note` (a message and metadata, shown by the
    /// CLI's `log`) with the new version. Fails with [`Error::InvalidConfig`] beyond the
    /// note's limits.
    pub async fn restore_with_note(
        &self,
        collection: &str,
        target: &Target,
        note: Option<CommitNote>,
    ) -> Result<CommitInfo> {
        if let Some(note) = &note {
            note.check().map_err(Error::InvalidConfig)?;
        }
        let version = self.resolve_target(collection, target).await?;
        let root = self.root_at(collection, version).await?;
        // The restored version references the old tree nodes: the commit confirms, under
        // the GC protocol, that the old version is still retained (so that everything it
        // reaches exists) and lands before any GC run could delete them.
        self.commit_plan_noted(
            collection,
            Plan::Replace {
                shards: root.shards,
                source: version,
            },
            note,
        )
        .await
    }
}
