//! Multi-path atomic commits, and how operations are resolved against a manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{CommitInfo, Plan, Store};
use crate::error::{Error, Result};
use crate::manifest::tree::{Changes, Trees};
use crate::manifest::{CommitNote, FileEntry, ManifestRoot, ShardKey};
use crate::path::StoragePath;

/// One change inside a commit.
#[derive(Debug, Clone)]
pub enum Op {
    /// Set `path` to already-stored content.
    Put {
        /// Target path.
        path: StoragePath,
        /// The content's manifest entry.
        entry: FileEntry,
    },
    /// Remove `path` (no effect if missing).
    Delete {
        /// Path to remove.
        path: StoragePath,
    },
    /// Move `from` to `to`, replacing `to`.
    Rename {
        /// Source path; must exist when the op is applied.
        from: StoragePath,
        /// Target path.
        to: StoragePath,
    },
}

impl Op {
    /// Every path the op reads or writes.
    pub fn paths(&self) -> Vec<&StoragePath> {
        match self {
            Op::Put { path, .. } | Op::Delete { path } => vec![path],
            Op::Rename { from, to } => vec![from, to],
        }
    }
}

fn shard_key(path: &StoragePath) -> ShardKey {
    ShardKey {
        backend: path.backend,
        shard: path.shard.clone(),
    }
}

/// Applies `ops` in order on top of `head` and returns the net changes, dropping those
/// that would not change anything.
pub(crate) async fn resolve(trees: &Trees, head: &ManifestRoot, ops: &[Op]) -> Result<Changes> {
    // The state as the ops see it: `head` overlaid with the effects of earlier ops.
    let mut overlay: BTreeMap<(ShardKey, String), Option<FileEntry>> = BTreeMap::new();
    let mut current: BTreeMap<(ShardKey, String), Option<FileEntry>> = BTreeMap::new();
    for op in ops {
        for path in op.paths() {
            let key = (shard_key(path), path.segment.clone());
            if let std::collections::btree_map::Entry::Vacant(slot) = current.entry(key) {
                slot.insert(trees.lookup(head, path).await?);
            }
        }
    }
    let state_of = |overlay: &BTreeMap<_, Option<FileEntry>>, key: &(ShardKey, String)| {
        overlay
            .get(key)
            .cloned()
            .unwrap_or_else(|| current.get(key).cloned().flatten())
    };
    for op in ops {
        match op {
            Op::Put { path, entry } => {
                overlay.insert((shard_key(path), path.segment.clone()), Some(entry.clone()));
            }
            Op::Delete { path } => {
                overlay.insert((shard_key(path), path.segment.clone()), None);
            }
            Op::Rename { from, to } => {
                let from_key = (shard_key(from), from.segment.clone());
                let Some(entry) = state_of(&overlay, &from_key) else {
                    return Err(Error::not_found(from));
                };
                overlay.insert(from_key, None);
                overlay.insert((shard_key(to), to.segment.clone()), Some(entry));
            }
        }
    }
    let mut changes = Changes::new();
    for (key, new) in overlay {
        let old = current.get(&key).cloned().flatten();
        if old != new {
            changes.entry(key.0).or_default().insert(key.1, new);
        }
    }
    Ok(changes)
}

/// Fails with [`Error::Conflict`] if any path the ops touch differs between `base` (what
/// the writer saw) and `head` (what is committed now).
pub(crate) async fn check_conflicts(
    trees: &Trees,
    base: &ManifestRoot,
    head: &ManifestRoot,
    ops: &[Op],
) -> Result<()> {
    if base.version == head.version {
        return Ok(());
    }
    for op in ops {
        for path in op.paths() {
            let key = shard_key(path);
            if base.shards.get(&key) == head.shards.get(&key) {
                continue; // the whole shard is unchanged
            }
            let before = trees.lookup(base, path).await?;
            let after = trees.lookup(head, path).await?;
            if before != after {
                return Err(Error::Conflict {
                    collection: head.collection.clone(),
                    path: path.to_string(),
                    reason: format!(
                        "changed between version {} (the transaction's base) and version {}",
                        base.version, head.version
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A set of puts, deletes and renames in one collection, committed as one manifest version
/// or not at all.
///
/// The transaction remembers the version it started from. At commit, if another writer has
/// since changed any path the transaction touches, the commit fails with
/// [`Error::Conflict`]; changes to other paths are merged in automatically.
pub struct Transaction {
    store: Store,
    collection: String,
    base: Arc<ManifestRoot>,
    ops: Vec<Op>,
    note: Option<CommitNote>,
}

impl Transaction {
    pub(crate) fn new(store: Store, collection: String, base: Arc<ManifestRoot>) -> Self {
        Transaction {
            store,
            collection,
            base,
            ops: Vec::new(),
            note: None,
        }
    }

    /// The version this transaction started from.
    pub fn base_version(&self) -> u64 {
        self.base.version
    }

    /// The operations recorded so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Refuses a path this transaction cannot record (invalid, or of another collection).
    pub(crate) fn check(&self, path: &StoragePath) -> Result<()> {
        path.validate()?;
        if path.collection != self.collection {
            return Err(Error::invalid_path(
                path.to_string(),
                format!(
                    "transaction is on collection {:?}; one commit cannot span collections",
                    self.collection
                ),
            ));
        }
        Ok(())
    }

    /// Stores `data` now (as a blob, or inline if small) and records a put of `path`.
    pub async fn put(&mut self, path: &StoragePath, data: impl Into<Bytes>) -> Result<()> {
        self.check(path)?;
        let entry = self.store.stage_bytes(data.into()).await?;
        self.ops.push(Op::Put {
            path: path.clone(),
            entry,
        });
        Ok(())
    }

    /// Records a put of content that is already stored (from [`Store::stage_stream`], or
    /// another path's [`Store::entry`]). Content this process did not stage within
    /// `max_writer_stall` is confirmed to still exist before the commit point
    /// ([`Error::ReferenceGone`] otherwise).
    pub fn put_entry(&mut self, path: &StoragePath, entry: FileEntry) -> Result<()> {
        self.check(path)?;
        self.ops.push(Op::Put {
            path: path.clone(),
            entry,
        });
        Ok(())
    }

    /// Records a delete of `path`.
    pub fn delete(&mut self, path: &StoragePath) -> Result<()> {
        self.check(path)?;
        self.ops.push(Op::Delete { path: path.clone() });
        Ok(())
    }

    /// Records a rename of `from` to `to`.
    pub fn rename(&mut self, from: &StoragePath, to: &StoragePath) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.ops.push(Op::Rename {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(())
    }

    /// The recorded operations and the version they started from, for a caller that
    /// commits them together with other changes (a shard's Tantivy files; a shard
    /// transaction sets no note).
    #[cfg_attr(not(feature = "tantivy"), allow(dead_code))]
    pub(crate) fn into_parts(self) -> (Vec<Op>, Arc<ManifestRoot>) {
        (self.ops, self.base)
    }

    /// Records `note` (a message and metadata) with the version this transaction
    /// commits. Fails with [`Error::InvalidConfig`] beyond the note's limits.
    pub fn set_note(&mut self, note: CommitNote) -> Result<()> {
        note.check().map_err(Error::InvalidConfig)?;
        self.note = Some(note);
        Ok(())
    }

    /// Commits every recorded operation as one new version.
    pub async fn commit(self) -> Result<CommitInfo> {
        if self.note.is_some() {
            // A version with a note is this transaction's alone: not grouped with others.
            let plan = Plan::Ops {
                ops: self.ops,
                base: Some(self.base),
            };
            return self
                .store
                .commit_plan_noted(&self.collection, plan, self.note)
                .await;
        }
        self.store
            .commit_grouped(&self.collection, self.ops, Some(self.base))
            .await
    }
}
