//! Reading subcommands: `ls`, `du` and `log`, at the latest version or at `--version N` /
//! `--snapshot NAME` (`get` is in `fetch`).

use std::collections::BTreeSet;
use std::io::Write;

use segstore::manifest::{FileEntry, ManifestRoot};
use segstore::{StorageBackend, StoragePath, Store, Target};
use serde_json::json;

use crate::failure::Failure;
use crate::open::require_collection;

/// Which version to read: the latest unless one of these is given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct At {
    /// Read at this version of the collection instead of the latest.
    #[arg(long, conflicts_with = "snapshot")]
    pub version: Option<u64>,
    /// Read at this snapshot of the collection instead of the latest version.
    #[arg(long)]
    pub snapshot: Option<String>,
}

impl At {
    /// The version or snapshot named, if any.
    pub fn target(&self) -> Option<Target> {
        match (&self.version, &self.snapshot) {
            (Some(v), _) => Some(Target::Version(*v)),
            (None, Some(s)) => Some(Target::Snapshot(s.clone())),
            (None, None) => None,
        }
    }

    fn is_latest(&self) -> bool {
        self.target().is_none()
    }
}

/// The root of `collection` at `at` (the collection must exist).
pub async fn root(store: &Store, collection: &str, at: &At) -> Result<ManifestRoot, Failure> {
    require_collection(store, collection).await?;
    Ok(match at.target() {
        None => (*store.head(collection).await?).clone(),
        Some(t) => store.view(collection, &t).await?.root().clone(),
    })
}

/// What `ls`, `du` and `rm -r` select: a collection, or a prefix in it.
#[derive(Debug, Clone)]
pub struct Prefix {
    /// The collection.
    pub collection: String,
    /// The prefix within it; `None` is the whole collection.
    pub path: Option<StoragePath>,
}

impl Prefix {
    /// `collection`, `collection/backend`, `collection/backend/shard` or a full path whose
    /// last component is a segment prefix.
    pub fn parse(s: &str) -> segstore::Result<Self> {
        let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
        let backend = |b: &str| b.parse::<StorageBackend>();
        let path = match parts.as_slice() {
            [c] => {
                StoragePath::unsharded(*c, StorageBackend::Tantivy, "x").validate()?;
                return Ok(Prefix {
                    collection: (*c).to_owned(),
                    path: None,
                });
            }
            [c, b] => StoragePath::unsharded(*c, backend(b)?, ""),
            [c, b, shard] => StoragePath::new(*c, backend(b)?, *shard, ""),
            [c, b, shard, seg] => StoragePath::new(*c, backend(b)?, *shard, *seg),
            _ => {
                return Err(segstore::Error::invalid_path(
                    s,
                    "expected collection[/backend[/shard[/segment-prefix]]]",
                ))
            }
        };
        path.validate_prefix()?;
        Ok(Prefix {
            collection: path.collection.clone(),
            path: Some(path),
        })
    }
}

/// Every file of `root` under `prefix` (all of them for `None`), sorted by path.
pub async fn entries(
    store: &Store,
    root: &ManifestRoot,
    prefix: Option<&StoragePath>,
) -> segstore::Result<Vec<(StoragePath, FileEntry)>> {
    let mut out = Vec::new();
    for (key, shard_ref) in &root.shards {
        if let Some(p) = prefix {
            if key.backend != p.backend || (p.shard.is_some() && p.shard != key.shard) {
                continue;
            }
        }
        for (segment, entry) in store.trees().shard_entries(shard_ref).await? {
            if prefix.is_some_and(|p| !segment.starts_with(&p.segment)) {
                continue;
            }
            let path = StoragePath {
                collection: root.collection.clone(),
                backend: key.backend,
                shard: key.shard.clone(),
                segment,
            };
            out.push((path, entry));
        }
    }
    out.sort_by_key(|(p, _)| p.to_string());
    Ok(out)
}

/// `ls [PREFIX] [-l] [-R]`.
pub async fn ls(
    store: &Store,
    prefix: Option<&str>,
    long: bool,
    recursive: bool,
    at: &At,
    json: bool,
) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let Some(prefix) = prefix else {
        if !at.is_latest() {
            return Err(Failure::Usage(
                "--version and --snapshot need a collection: `segstore ls COLLECTION --version N`"
                    .into(),
            ));
        }
        let names = store.collections().await?;
        if recursive {
            let mut rows = Vec::new();
            for name in &names {
                let root = store.head(name).await?;
                rows.extend(entries(store, &root, None).await?);
            }
            return print_entries(&mut out, &rows, long, json);
        }
        if !long {
            if json {
                let _ = writeln!(out, "{}", json!(names));
            } else {
                for n in names {
                    let _ = writeln!(out, "{n}");
                }
            }
            return Ok(());
        }
        let mut rows = Vec::new();
        for name in &names {
            let root = store.head(name).await?;
            rows.push(json!({"collection": name, "version": root.version, "files": root.file_count(), "bytes": root.total_bytes(), "timestamp_ms": root.timestamp_ms}));
            if !json {
                let _ = writeln!(
                    out,
                    "{:>8} files {:>14} bytes  version {:>6}  {}  {name}",
                    root.file_count(),
                    root.total_bytes(),
                    root.version,
                    crate::timestamp(root.timestamp_ms, false)
                );
            }
        }
        if json {
            let _ = writeln!(out, "{}", json!(rows));
        }
        return Ok(());
    };
    let prefix = Prefix::parse(prefix)?;
    let root = root(store, &prefix.collection, at).await?;
    let rows = entries(store, &root, prefix.path.as_ref()).await?;
    print_entries(&mut out, &rows, long, json)
}

fn print_entries(
    out: &mut impl Write,
    rows: &[(StoragePath, FileEntry)],
    long: bool,
    json: bool,
) -> Result<(), Failure> {
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(p, e)| {
                if long {
                    json!({"path": p.to_string(), "size": e.size, "blake3": e.id.to_hex()})
                } else {
                    json!(p.to_string())
                }
            })
            .collect();
        let _ = writeln!(out, "{}", json!(items));
    } else {
        for (p, e) in rows {
            let _ = if long {
                writeln!(out, "{:>14}  {}  {p}", e.size, &e.id.to_hex()[..16])
            } else {
                writeln!(out, "{p}")
            };
        }
    }
    Ok(())
}

/// Logical and deduplicated bytes of a set of files.
#[derive(Debug, Default)]
struct Usage {
    files: u64,
    logical: u64,
    dedup: u64,
    seen: BTreeSet<segstore::BlobId>,
}

impl Usage {
    fn add(&mut self, entries: &[(StoragePath, FileEntry)]) {
        for (_, e) in entries {
            self.files += 1;
            self.logical += e.size;
            if self.seen.insert(e.id) {
                self.dedup += e.size;
            }
        }
    }
}

/// `du [PREFIX]`: per collection (or for one prefix), the files' logical bytes and the
/// bytes of their distinct contents (what deduplication stores), at the latest version or
/// at `at`; then the total over every row, deduplicated across rows.
pub async fn du(store: &Store, prefix: Option<&str>, at: &At, json: bool) -> Result<(), Failure> {
    let mut rows = Vec::new();
    let mut total = Usage::default();
    let selected: Vec<(String, Prefix)> =
        match prefix {
            Some(p) => vec![(p.trim_end_matches('/').to_owned(), Prefix::parse(p)?)],
            None if at.is_latest() => store
                .collections()
                .await?
                .into_iter()
                .map(|c| {
                    let p = Prefix {
                        collection: c.clone(),
                        path: None,
                    };
                    (c, p)
                })
                .collect(),
            None => return Err(Failure::Usage(
                "--version and --snapshot need a collection: `segstore du COLLECTION --version N`"
                    .into(),
            )),
        };
    for (name, prefix) in selected {
        let root = root(store, &prefix.collection, at).await?;
        let files = entries(store, &root, prefix.path.as_ref()).await?;
        let mut usage = Usage::default();
        usage.add(&files);
        total.add(&files);
        rows.push((name, root.version, usage));
    }
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|(name, v, u)| json!({"prefix": name, "version": v, "files": u.files, "logical_bytes": u.logical, "dedup_bytes": u.dedup}))
            .collect();
        println!(
            "{}",
            json!({"rows": items, "total": {"files": total.files, "logical_bytes": total.logical, "dedup_bytes": total.dedup}})
        );
    } else {
        for (name, v, u) in &rows {
            println!(
                "{:>14} logical {:>14} dedup {:>8} files  {name} (version {v})",
                u.logical, u.dedup, u.files
            );
        }
        println!(
            "{:>14} logical {:>14} dedup {:>8} files  total",
            total.logical, total.dedup, total.files
        );
    }
    Ok(())
}

/// `log COLLECTION [-n N | --all]`: the retained versions, newest first (at most `limit`),
/// each with the snapshots that pin it. Versions removed by retention are skipped, so a
/// version kept by a snapshot shows even when the versions after it are gone.
pub async fn log(
    store: &Store,
    collection: &str,
    limit: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    require_collection(store, collection).await?;
    let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut pins: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for s in store.snapshots(collection).await? {
        pins.entry(s.version).or_default().push(s.name);
    }
    let mut rows = Vec::new();
    for (v, _) in store.versions(collection).await?.into_iter().rev() {
        if rows.len() >= limit {
            break;
        }
        match store.root_at(collection, v).await {
            Ok(root) => rows.push(root),
            Err(segstore::Error::NotFound { .. }) => continue, // removed meanwhile
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    let none = Vec::new();
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| json!({"version": r.version, "timestamp_ms": r.timestamp_ms, "files": r.file_count(), "bytes": r.total_bytes(), "commit_id": r.commit_id.to_string(), "snapshots": pins.get(&r.version).unwrap_or(&none), "message": r.note.as_ref().map(|n| &n.message), "meta": r.note.as_ref().map(|n| &n.meta)}))
            .collect();
        let _ = writeln!(out, "{}", json!(items));
    } else {
        for r in rows {
            let snaps = pins
                .get(&r.version)
                .map(|n| format!("  snapshots: {}", n.join(", ")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "version {:>6}  {}  {:>8} files  {:>12} bytes  commit {}{snaps}",
                r.version,
                crate::timestamp(r.timestamp_ms, true),
                r.file_count(),
                r.total_bytes(),
                r.commit_id
            );
            if let Some(note) = &r.note {
                for line in note.message.lines() {
                    let _ = writeln!(out, "    {line}");
                }
                for (k, v) in &note.meta {
                    let _ = writeln!(out, "    {k}={v}");
                }
            }
        }
    }
    Ok(())
}
