//! One function per subcommand.

use std::io::Write;

use segstore::{
    Error, LocalStorage, Result, SegmentStorage, StorageBackend, StorageConfig, StoragePath, Store,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::{Cli, Command};

/// Maps an error to the documented exit code.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotFound { .. } => 3,
        Error::InvalidPath { .. } | Error::OutOfRange { .. } | Error::InvalidConfig(_) => 4,
        Error::Conflict { .. } | Error::GcInProgress { .. } | Error::Diverged { .. } => 5,
        Error::Corrupt { .. } | Error::CorruptManifest { .. } => 6,
        Error::Io { .. }
        | Error::StorageFull { .. }
        | Error::Backend { .. }
        | Error::PermissionDenied { .. }
        | Error::BucketNotFound { .. }
        | Error::Unavailable { .. }
        | Error::CommitOutcomeUnknown { .. }
        | Error::ReferenceGone { .. }
        | Error::Unsupported(_) => 7,
        _ => 1,
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    if matches!(cli.command, Command::Demo) {
        return demo(&cli).await;
    }
    // Opens its own two stores.
    if let Command::Sync(args) = cli.command {
        return crate::replicate::sync(args, cli.json).await;
    }
    // The config file's [retention] and [gc] sections are the defaults of `gc`.
    let mut gc_defaults = segstore::gc::GcOptions::default();
    let store: Store = match &cli.config {
        Some(path) => {
            let config = StorageConfig::load(path)?;
            gc_defaults = config.gc_options();
            config.open_store().await?
        }
        None => LocalStorage::open(&cli.data_dir).await?.store().clone(),
    };
    match cli.command {
        // Runs in its own store, before any store is opened (see `demo`).
        Command::Demo | Command::Sync(_) => Ok(()),
        Command::Fork(args) => crate::replicate::fork(&store, args, cli.json).await,
        Command::Snapshot { action } => crate::lifecycle::snapshot(&store, action, cli.json).await,
        Command::Diff {
            collection,
            from,
            to,
        } => crate::lifecycle::diff(&store, &collection, &from, to.as_deref(), cli.json).await,
        Command::Gc {
            dry_run,
            grace,
            keep_last,
            keep_within,
        } => {
            let mut options = gc_defaults;
            options.dry_run = dry_run;
            if let Some(grace) = grace {
                options.grace = grace;
            }
            if let Some(n) = keep_last {
                options.retention.keep_last = Some(n);
            }
            if let Some(t) = keep_within {
                options.retention.keep_within = Some(t);
            }
            crate::lifecycle::gc(&store, &options, cli.json).await
        }
        Command::Verify { sample } => crate::lifecycle::verify(&store, sample, cli.json).await,
        Command::Stats => crate::lifecycle::stats(&store, cli.json).await,
        Command::Export {
            collection,
            dest,
            snapshot,
        } => crate::lifecycle::export(&store, &collection, &dest, snapshot, cli.json).await,
        Command::Import {
            collection,
            source,
            rename: Some(name),
        } => crate::replicate::import_as(&store, &collection, &source, &name, cli.json).await,
        Command::Import {
            collection, source, ..
        } => crate::lifecycle::import(&store, &collection, &source, cli.json).await,
        Command::Put { path, file } => {
            let path: StoragePath = path.parse()?;
            let info = match file.filter(|f| f.as_os_str() != "-") {
                Some(f) => {
                    let file = tokio::fs::File::open(&f)
                        .await
                        .map_err(|e| Error::io(format!("opening {}", f.display()), e))?;
                    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                    let bar = crate::lifecycle::bytes_bar(cli.json, len, "storing");
                    let info = store.write_stream(&path, bar.wrap_async_read(file)).await;
                    bar.finish_and_clear();
                    info?
                }
                None => {
                    let spinner = crate::lifecycle::progress(cli.json, "storing stdin");
                    let info = store.write_stream(&path, tokio::io::stdin()).await;
                    spinner.finish_and_clear();
                    info?
                }
            };
            let meta = store.metadata(&path).await?;
            report(
                cli.json,
                json!({"path": path.to_string(), "version": info.version, "size": meta.size, "blake3": meta.id.to_hex()}),
                &format!(
                    "stored {path} ({} bytes, blake3 {}) at version {}",
                    meta.size, meta.id, info.version
                ),
            );
            Ok(())
        }
        Command::Get { path, output } => {
            let path: StoragePath = path.parse()?;
            let spinner = crate::lifecycle::progress(cli.json, "reading and verifying");
            let data = store.read_bytes(&path).await;
            spinner.finish_and_clear();
            let data = data?;
            match output {
                Some(out) => tokio::fs::write(&out, &data)
                    .await
                    .map_err(|e| Error::io(format!("writing {}", out.display()), e)),
                None => {
                    let mut stdout = tokio::io::stdout();
                    stdout
                        .write_all(&data)
                        .await
                        .and(stdout.flush().await)
                        .map_err(|e| Error::io("writing to stdout", e))
                }
            }
        }
        Command::Ls { prefix } => {
            let prefix = parse_prefix(&prefix)?;
            let paths = SegmentStorage::list(&store, &prefix).await?;
            let mut out = std::io::stdout().lock();
            if cli.json {
                let items: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                let _ = writeln!(out, "{}", json!(items));
            } else {
                for p in paths {
                    let _ = writeln!(out, "{p}");
                }
            }
            Ok(())
        }
        Command::Mv { from, to } => {
            let (from, to): (StoragePath, StoragePath) = (from.parse()?, to.parse()?);
            let info = Store::rename(&store, &from, &to).await?;
            report(
                cli.json,
                json!({"version": info.version}),
                &format!("renamed {from} -> {to} at version {}", info.version),
            );
            Ok(())
        }
        Command::Rm { path } => {
            let path: StoragePath = path.parse()?;
            let info = Store::delete(&store, &path).await?;
            report(
                cli.json,
                json!({"version": info.version, "changed": info.created}),
                &if info.created {
                    format!("deleted {path} at version {}", info.version)
                } else {
                    format!("{path} did not exist; nothing changed")
                },
            );
            Ok(())
        }
        Command::Log { collection, limit } => {
            let head = store.head(&collection).await?;
            let mut out = std::io::stdout().lock();
            let mut rows = Vec::new();
            let oldest = head.version.saturating_sub(limit.saturating_sub(1)).max(1);
            for v in (oldest..=head.version).rev() {
                match store.root_at(&collection, v).await {
                    Ok(root) => rows.push(root),
                    Err(Error::NotFound { .. }) => break, // removed by retention
                    Err(e) => return Err(e),
                }
            }
            if cli.json {
                let items: Vec<_> = rows
                    .iter()
                    .map(|r| json!({"version": r.version, "timestamp_ms": r.timestamp_ms, "files": r.file_count(), "bytes": r.total_bytes(), "commit_id": r.commit_id.to_string()}))
                    .collect();
                let _ = writeln!(out, "{}", json!(items));
            } else {
                for r in rows {
                    let _ = writeln!(
                        out,
                        "version {:>6}  {}  {:>8} files  {:>12} bytes  commit {}",
                        r.version,
                        crate::timestamp(r.timestamp_ms, true),
                        r.file_count(),
                        r.total_bytes(),
                        r.commit_id
                    );
                }
            }
            Ok(())
        }
    }
}

/// Parses a list prefix: `collection/backend`, `collection/backend/shard` or a full path
/// whose last component is a segment prefix.
fn parse_prefix(s: &str) -> Result<StoragePath> {
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
    let backend = |b: &str| b.parse::<StorageBackend>();
    let prefix = match parts.as_slice() {
        [c, b] => StoragePath::unsharded(*c, backend(b)?, ""),
        [c, b, shard] => StoragePath::new(*c, backend(b)?, *shard, ""),
        [c, b, shard, seg] => StoragePath::new(*c, backend(b)?, *shard, *seg),
        _ => {
            return Err(Error::invalid_path(
                s,
                "expected collection/backend[/shard[/segment-prefix]]",
            ))
        }
    };
    prefix.validate_prefix()?;
    Ok(prefix)
}

pub fn report(json: bool, value: serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// Where the demo keeps its own store, relative to the working directory.
const DEMO_DIR: &str = "segstore-demo";

/// The demo runs in a store of its own, so that its GC and retention touch nothing else;
/// nobody else uses that store, so its GC may start deleting after a second.
async fn demo(cli: &Cli) -> Result<()> {
    if cli.config.is_some() {
        return Err(Error::InvalidConfig(format!(
            "the demo runs in its own store ./{DEMO_DIR} and takes no --config"
        )));
    }
    let options = segstore::StoreOptions {
        gc_delete_delay: std::time::Duration::from_secs(1),
        clock_margin: std::time::Duration::from_millis(200),
        ..segstore::StoreOptions::default()
    };
    let local = LocalStorage::open_with(DEMO_DIR, options).await?;
    let location = format!("its own store {}", local.root().display());
    crate::demo::run(local.store(), &location, cli.json).await
}
