//! Sync between stores and zero-copy forks.
//!
//! [`Store::sync_to`] makes a destination collection (in another store, or under another
//! name) equal to a source version, copying only the objects the destination lacks. What
//! is missing is found by walking the source's Merkle tree and pruning every subtree whose
//! content address the destination's latest version already holds, so a sync after a
//! small change costs requests in proportion to the change (see `docs/BENCHMARKS.md`).
//! Every object is checked at the destination before it is sent (a resumed sync sends
//! nothing twice) and verified against its hash on the way, blobs streamed in bounded
//! chunks. The destination changes only by commits made under the GC protocol: objects
//! found already present are foreign references, confirmed before the commit point, and
//! objects sent long ago are confirmed too, so neither a GC on the destination nor one on
//! the source can leave a dangling reference committed (a source GC can only fail the
//! sync, with a typed error). An interrupted sync leaves the destination at its previous
//! version (collapse) or at an earlier source version (mirror, which commits one version
//! per source version).
//!
//! [`Store::fork`] creates a collection whose first version shares every object of a
//! source version: one root, whatever the size.

mod copy;
mod fork;
mod walk;

use crate::progress::ProgressFn;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::manifest::{head, ManifestRoot};
use crate::path::validate_name;
use crate::snapshot::Target;
use crate::store::{Plan, Store};

use walk::Needed;

/// Which history a sync gives the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// One new destination version equal to the source version (the default).
    #[default]
    Collapse,
    /// One destination version per retained source version since the last synced one, and
    /// the source's snapshots of those versions (same names, destination version numbers).
    Mirror,
}

/// How to sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// The source version (`None`: the latest).
    pub target: Option<Target>,
    /// The destination collection's name (`None`: the source's).
    pub rename: Option<String>,
    /// Replace a destination that has diverged instead of refusing with
    /// [`Error::Diverged`].
    pub overwrite: bool,
    /// Collapse to one version, or mirror versions and snapshots.
    pub history: History,
    /// Called after each object is looked up or sent: items are the objects the walk
    /// found the destination's state lacks (of the current version, when mirroring),
    /// bytes those of their blobs (an upper bound: some may be present).
    pub progress: Option<ProgressFn>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The source version synced.
    pub source_version: u64,
    /// The destination's latest version afterwards.
    pub dest_version: u64,
    /// Destination versions created (0: it already equalled the source version).
    pub versions_committed: u64,
    /// Destination snapshots created (mirror).
    pub snapshots: u64,
    /// Blobs sent.
    pub blobs_copied: u64,
    /// Blobs the walk found missing from the destination's state but already stored
    /// there (sent by an interrupted sync, or shared with another collection).
    pub blobs_present: u64,
    /// Tree nodes sent.
    pub trees_copied: u64,
    /// Tree nodes already stored.
    pub trees_present: u64,
    /// Bytes sent (blobs and tree nodes).
    pub bytes_copied: u64,
}

impl Store {
    /// Makes `options.rename` (default: `collection`) in `dest` equal to `collection` at
    /// `options.target` in this store. See the module documentation.
    ///
    /// A destination whose latest version equals no version of the source up to the
    /// target has moved on independently: [`Error::Diverged`] unless `overwrite`. A
    /// destination that changes while the sync runs fails it with [`Error::Conflict`].
    #[tracing::instrument(level = "debug", name = "sync", skip_all, fields(collection))]
    pub async fn sync_to(
        &self,
        collection: &str,
        dest: &Store,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        validate_name(collection)?;
        let dest_name = options.rename.as_deref().unwrap_or(collection);
        validate_name(dest_name)?;
        let version = match &options.target {
            Some(t) => self.resolve_target(collection, t).await?,
            None => self.refresh(collection).await?.version,
        };
        if version == 0 {
            return Err(Error::not_found(format!(
                "collection {collection} has no committed version"
            )));
        }
        let target = self.root_at(collection, version).await?;
        let dest_head = dest.refresh(dest_name).await?;
        let mut report = SyncReport {
            source_version: version,
            dest_version: dest_head.version,
            ..SyncReport::default()
        };
        let mirror = options.history == History::Mirror;
        let (base, history) = self
            .find_base(collection, &target, &dest_head, mirror)
            .await?;
        if base.is_none() && dest_head.version != 0 && !options.overwrite {
            return Err(Error::Diverged {
                collection: dest_name.to_owned(),
                version: dest_head.version,
                source_version: version,
            });
        }
        // Source version -> destination version, for mirrored snapshots.
        let mut mapped = BTreeMap::new();
        if let Some(b) = base {
            mapped.insert(b, dest_head.version);
        }
        let plan: Vec<ManifestRoot> = if mirror { history } else { vec![target] };
        let mut current = (*dest_head).clone();
        let mut base_in_dest = true;
        for root in plan {
            let mut needed = Needed::default();
            let base_trees = if base_in_dest {
                dest.trees()
            } else {
                self.trees()
            };
            needed
                .add_diff(self.trees(), base_trees, &root, &current)
                .await?;
            let sent = copy::send(
                self.backend().as_ref(),
                dest.backend().as_ref(),
                &needed,
                dest.clock(),
                &mut report,
                options.progress.as_ref(),
            )
            .await?;
            let info = dest
                .commit_plan_noted(
                    dest_name,
                    Plan::Adopt {
                        shards: root.shards.clone(),
                        references: sent.foreign,
                        own: sent.own,
                        expect_head: Some(current.version),
                    },
                    root.note.clone(),
                )
                .await?;
            if info.created {
                report.versions_committed += 1;
            }
            report.dest_version = info.version;
            mapped.insert(root.version, info.version);
            current = ManifestRoot {
                version: info.version,
                ..root
            };
            base_in_dest = false;
        }
        if mirror {
            report.snapshots = self
                .mirror_snapshots(collection, dest, dest_name, &mapped)
                .await?;
        }
        Ok(report)
    }

    /// The newest source version up to `target` whose content the destination's head
    /// equals (`None`: none, or an empty destination), and, when mirroring, the source
    /// versions after it up to `target`, oldest first.
    async fn find_base(
        &self,
        collection: &str,
        target: &ManifestRoot,
        dest_head: &ManifestRoot,
        mirror: bool,
    ) -> Result<(Option<u64>, Vec<ManifestRoot>)> {
        let boundary = head::read_boundary(self.backend().as_ref(), collection)
            .await?
            .max(1);
        let mut later = Vec::new();
        let mut v = target.version;
        let mut base = None;
        while v >= boundary {
            let root = if v == target.version {
                Some(target.clone())
            } else {
                self.root_if_present(collection, v).await?
            };
            let Some(root) = root else { break };
            if dest_head.version != 0 && root.shards == dest_head.shards {
                base = Some(v);
                break;
            }
            if !mirror && dest_head.version == 0 {
                break;
            }
            if mirror {
                later.push(root);
            }
            v -= 1;
        }
        later.reverse();
        Ok((base, later))
    }

    /// Creates in `dest` the snapshots of this store whose versions `mapped` names, unless
    /// `dest` has one of that name already.
    async fn mirror_snapshots(
        &self,
        collection: &str,
        dest: &Store,
        dest_name: &str,
        mapped: &BTreeMap<u64, u64>,
    ) -> Result<u64> {
        let now_ms = self.now_ms();
        let mut created = 0;
        for snap in self.snapshots(collection).await? {
            let Some(&version) = mapped.get(&snap.version) else {
                continue;
            };
            if snap.is_expired(now_ms) || version == 0 {
                continue;
            }
            let ttl = snap
                .expires_ms
                .map(|e| std::time::Duration::from_millis(e.saturating_sub(now_ms)));
            match dest
                .create_snapshot(dest_name, &snap.name, Some(version), ttl)
                .await
            {
                Ok(_) => created += 1,
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(created)
    }
}
