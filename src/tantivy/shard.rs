//! How an adapter takes part in a [`ShardWriter`](crate::shard::ShardWriter): its commits
//! are held until the shard's transaction commits them together with the shard's other
//! files, or it is pinned to one version and read-only.

use std::io;
use std::sync::Arc;

use super::shared::Unsettled;
use super::{runtime, TantivyStorageAdapter};
use crate::error::{Error, Result};
use crate::manifest::ManifestRoot;
use crate::store::{CommitInfo, Op};

/// How an adapter commits.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Each `meta.json` write is a manifest version (the plain adapter).
    Direct,
    /// Nothing commits on its own: terminated files, deletes and `meta.json` stay pending
    /// until [`TantivyStorageAdapter::commit_with`].
    Held,
    /// Reads one fixed version; every write fails.
    Pinned(Arc<ManifestRoot>),
}

impl Mode {
    pub(crate) fn holds(&self) -> bool {
        matches!(self, Mode::Held)
    }

    pub(crate) fn pinned(&self) -> Option<Arc<ManifestRoot>> {
        match self {
            Mode::Pinned(root) => Some(root.clone()),
            _ => None,
        }
    }
}

impl super::Shared {
    /// Fails for a pinned (read-only) adapter.
    pub(super) fn writable(&self) -> io::Result<()> {
        match &self.mode {
            Mode::Pinned(root) => Err(super::to_io(Error::ReadOnly(format!(
                "tantivy shard {}/{} is pinned to version {}",
                self.collection, self.shard, root.version
            )))),
            _ => Ok(()),
        }
    }
}

impl TantivyStorageAdapter {
    /// Commits everything pending (terminated files, deletes, `meta.json`) together with
    /// `extra` as one manifest version. `extra` is checked for conflicts against `base` (as
    /// a [`Transaction`](crate::Transaction) is); the Tantivy changes against the adapter's
    /// own base (what its index writer loaded, or its last commit), so a Tantivy writer
    /// never overwrites another writer's commit. Blocks: call it from a plain thread (or
    /// `spawn_blocking`), never from a runtime worker.
    ///
    /// Same outcome handling as the adapter's own commits: once the version landed nothing
    /// turns it into an error; an unknown outcome is settled before the next commit.
    pub(crate) fn commit_with(
        &self,
        extra: Vec<Op>,
        base: Arc<ManifestRoot>,
    ) -> Result<CommitInfo> {
        let shared = &self.shared;
        let serialised = shared.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        shared.settle()?;
        let (items, own_base) = {
            let state = shared.lock_state();
            let items: Vec<_> = state
                .pending
                .iter()
                .map(|(n, e)| (n.clone(), e.clone()))
                .collect();
            (items, state.base.clone())
        };
        let mut ops: Vec<Op> = items
            .iter()
            .map(|(name, entry)| match entry {
                Some(entry) => Op::Put {
                    path: shared.path(name),
                    entry: entry.clone(),
                },
                None => Op::Delete {
                    path: shared.path(name),
                },
            })
            .collect();
        if let Some(own) = own_base.filter(|own| own.version < base.version) {
            // The commit checks every path from `base` on; the Tantivy paths must also be
            // unchanged from the writer's older base up to `base`.
            let store = shared.store.clone();
            let (paths, to) = (ops.clone(), base.clone());
            runtime::run(async move { unchanged(&store, &own, &to, &paths).await })?;
        }
        ops.extend(extra);
        let base = Some(base);
        let store = shared.store.clone();
        let collection = shared.collection.clone();
        let outcome = runtime::run(async move { store.commit_ops(&collection, ops, base).await });
        let info = match outcome {
            Ok(info) => info,
            Err(e) => {
                if let Error::CommitOutcomeUnknown {
                    version, commit_id, ..
                } = &e
                {
                    shared.lock_state().unsettled = Some(Unsettled {
                        version: *version,
                        commit_id: *commit_id,
                        items,
                    });
                }
                return Err(e);
            }
        };
        let meta = shared.landed(info.version, items, None);
        drop(serialised);
        if let Some(meta) = meta {
            shared.watcher.observe(info.version, meta.map(|m| m.id));
        }
        Ok(info)
    }
}

/// [`Error::Conflict`] if a path of `ops` differs between versions `from` and `to`.
async fn unchanged(
    store: &crate::store::Store,
    from: &ManifestRoot,
    to: &ManifestRoot,
    ops: &[Op],
) -> Result<()> {
    for op in ops {
        for path in op.paths() {
            let before = store.trees().lookup(from, path).await?;
            if before != store.trees().lookup(to, path).await? {
                return Err(Error::Conflict {
                    collection: to.collection.clone(),
                    path: path.to_string(),
                    reason: format!(
                        "changed between version {} (the tantivy writer's base) and version {}",
                        from.version, to.version
                    ),
                });
            }
        }
    }
    Ok(())
}
