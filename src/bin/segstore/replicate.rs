//! `segstore sync` and `segstore fork`.

use std::path::{Path, PathBuf};

use clap::Args;
use segstore::sync::{History, SyncOptions};
use segstore::{Error, LocalStorage, Result, StorageConfig, Store, Target};
use serde_json::json;

use crate::output::report;

/// Arguments of `segstore sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The source store: a TOML config file, or the directory of a local store.
    #[arg(long)]
    pub from: PathBuf,
    /// The destination store: a TOML config file, or the directory of a local store
    /// (created if missing).
    #[arg(long)]
    pub to: PathBuf,
    /// Collections to sync (default: every collection of the source).
    pub collections: Vec<String>,
    /// Sync this source version instead of the latest (one collection only).
    #[arg(long, conflicts_with = "snapshot")]
    pub version: Option<u64>,
    /// Sync this source snapshot's version instead of the latest (one collection only).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// The destination collection's name (one collection only).
    #[arg(long = "as", value_name = "NAME")]
    pub rename: Option<String>,
    /// Replace a destination collection that has diverged from the source.
    #[arg(long)]
    pub overwrite: bool,
    /// Mirror every retained version and snapshot instead of one new version.
    #[arg(long)]
    pub mirror: bool,
}

/// Arguments of `segstore fork`.
#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The collection to fork.
    pub source: String,
    /// The new collection.
    pub new: String,
    /// Fork this version (default: the latest).
    #[arg(long, conflicts_with = "snapshot")]
    pub version: Option<u64>,
    /// Fork this snapshot's version.
    #[arg(long)]
    pub snapshot: Option<String>,
}

fn target(version: Option<u64>, snapshot: Option<String>) -> Option<Target> {
    version
        .map(Target::Version)
        .or(snapshot.map(Target::Snapshot))
}

/// A store named on the command line: a config file, or a local store's directory.
async fn open(path: &Path) -> Result<Store> {
    if path.is_file() {
        StorageConfig::load(path)?.open_store().await
    } else {
        Ok(LocalStorage::open(path).await?.store().clone())
    }
}

/// Runs `segstore sync`.
pub async fn sync(args: SyncArgs, json: bool) -> Result<()> {
    let from = open(&args.from).await?;
    let to = open(&args.to).await?;
    let collections = if args.collections.is_empty() {
        from.collections().await?
    } else {
        args.collections.clone()
    };
    let single = args.version.is_some() || args.snapshot.is_some() || args.rename.is_some();
    if single && collections.len() != 1 {
        return Err(Error::InvalidConfig(
            "--version, --snapshot and --as need exactly one collection".into(),
        ));
    }
    let mut results = Vec::new();
    for collection in &collections {
        let (bar, progress) =
            crate::output::operation_progress(json, &format!("syncing {collection}"));
        let options = SyncOptions {
            target: target(args.version, args.snapshot.clone()),
            rename: args.rename.clone(),
            overwrite: args.overwrite,
            history: if args.mirror {
                History::Mirror
            } else {
                History::Collapse
            },
            progress: Some(progress),
        };
        let r = from.sync_to(collection, &to, &options).await;
        bar.finish_and_clear();
        let r = r?;
        let name = args.rename.as_deref().unwrap_or(collection);
        if !json {
            println!(
                "synced {collection} version {} to {name} version {}: {} versions committed, \
                 {} blobs sent ({} already there), {} tree nodes sent ({} already there), \
                 {} bytes, {} snapshots",
                r.source_version,
                r.dest_version,
                r.versions_committed,
                r.blobs_copied,
                r.blobs_present,
                r.trees_copied,
                r.trees_present,
                r.bytes_copied,
                r.snapshots
            );
        }
        results.push(json!({
            "collection": collection, "as": name, "source_version": r.source_version,
            "dest_version": r.dest_version, "versions_committed": r.versions_committed,
            "blobs_copied": r.blobs_copied, "blobs_present": r.blobs_present,
            "trees_copied": r.trees_copied, "trees_present": r.trees_present,
            "bytes_copied": r.bytes_copied, "snapshots": r.snapshots,
        }));
    }
    if json {
        report(true, json!({ "synced": results }), "");
    }
    Ok(())
}

/// Runs `segstore fork`.
pub async fn fork(store: &Store, args: ForkArgs, json: bool) -> Result<()> {
    let target = target(args.version, args.snapshot);
    let info = store.fork(&args.source, target.as_ref(), &args.new).await?;
    report(
        json,
        json!({"source": args.source, "fork": args.new, "version": info.version}),
        &format!(
            "forked {} into {} (version {}, sharing every object)",
            args.source, args.new, info.version
        ),
    );
    Ok(())
}

/// Runs `segstore import --as NAME`.
pub async fn import_as(
    store: &Store,
    collection: &str,
    source: &Path,
    name: &str,
    json: bool,
) -> Result<()> {
    let (bar, progress) = crate::output::operation_progress(json, "importing");
    let options = segstore::transfer::TransferOptions {
        progress: Some(progress),
    };
    let r = store.import_as(collection, source, name, &options).await;
    bar.finish_and_clear();
    let r = r?;
    report(
        json,
        json!({"collection": collection, "as": name, "versions": r.versions_committed,
               "snapshots": r.snapshots, "blobs_copied": r.blobs_copied,
               "bytes_copied": r.bytes_copied}),
        &format!(
            "imported {collection} as {name}: {} versions, {} snapshots, {} blobs sent, \
             {} bytes, all verified",
            r.versions_committed, r.snapshots, r.blobs_copied, r.bytes_copied
        ),
    );
    Ok(())
}
