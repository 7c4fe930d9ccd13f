//! Snapshot, diff, GC, verify and stats subcommands.

use segstore::gc::{GcOptions, VerifyOptions};
use segstore::transfer::TransferOptions;
use segstore::{Error, Result, Store, Target};
use serde_json::json;

use crate::output::{operation_progress, report};
use crate::SnapshotAction;

/// A snapshot name or a version number: `snapshot:NAME` and `version:N` say which; a
/// bare name is a snapshot if `collection` has one of that name (so a numeric snapshot
/// name is never shadowed by a version number), else a version number if it is one.
pub async fn target(store: &Store, collection: &str, s: &str) -> Result<Target> {
    if let Some(name) = s.strip_prefix("snapshot:") {
        return Ok(Target::Snapshot(name.to_owned()));
    }
    if let Some(v) = s.strip_prefix("version:") {
        return v
            .parse()
            .map(Target::Version)
            .map_err(|_| Error::invalid_path(s, "version: must be followed by a version number"));
    }
    let Ok(v) = s.parse::<u64>() else {
        return Ok(Target::Snapshot(s.to_owned()));
    };
    let snapshots = store.snapshots(collection).await?;
    Ok(if snapshots.iter().any(|snap| snap.name == s) {
        Target::Snapshot(s.to_owned())
    } else {
        Target::Version(v)
    })
}

fn when(ms: u64) -> String {
    crate::timestamp(ms, false)
}

pub async fn snapshot(store: &Store, action: SnapshotAction, json: bool) -> Result<()> {
    match action {
        SnapshotAction::Create {
            collection,
            name,
            version,
            ttl,
        } => {
            let s = store
                .create_snapshot(&collection, &name, version, ttl)
                .await?;
            report(
                json,
                json!({"collection": s.collection, "name": s.name, "version": s.version, "expires_ms": s.expires_ms}),
                &format!(
                    "snapshot {} pins {} version {}",
                    s.name, s.collection, s.version
                ),
            );
        }
        SnapshotAction::List { collection } => {
            let list = store.snapshots(&collection).await?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|s| json!({"name": s.name, "version": s.version, "created_ms": s.created_ms, "expires_ms": s.expires_ms}))
                    .collect();
                println!("{}", json!(items));
            } else {
                for s in list {
                    let expiry = s
                        .expires_ms
                        .map(|e| format!(", expires {}", when(e)))
                        .unwrap_or_default();
                    println!(
                        "{:<24} version {:>6}  created {}{expiry}",
                        s.name,
                        s.version,
                        when(s.created_ms)
                    );
                }
            }
        }
        SnapshotAction::Delete { collection, name } => {
            store.delete_snapshot(&collection, &name).await?;
            report(
                json,
                json!({"deleted": name}),
                &format!("deleted snapshot {name}"),
            );
        }
        SnapshotAction::Restore {
            collection,
            target: t,
            note,
        } => {
            let info = store
                .restore_with_note(
                    &collection,
                    &target(store, &collection, &t).await?,
                    note.into_note(),
                )
                .await?;
            report(
                json,
                json!({"version": info.version, "changed": info.created}),
                &if info.created {
                    format!("restored {collection} to {t} as version {}", info.version)
                } else {
                    format!("{collection} already equals {t}; nothing changed")
                },
            );
        }
    }
    Ok(())
}

pub async fn diff(
    store: &Store,
    collection: &str,
    from: &str,
    to: Option<&str>,
    json: bool,
) -> Result<()> {
    let to = match to {
        Some(t) => target(store, collection, t).await?,
        None => Target::Version(store.head(collection).await?.version),
    };
    let from = target(store, collection, from).await?;
    let d = store.diff(collection, &from, &to).await?;
    if json {
        let names =
            |l: &[segstore::DiffEntry]| l.iter().map(|e| e.path.to_string()).collect::<Vec<_>>();
        println!(
            "{}",
            json!({"added": names(&d.added), "removed": names(&d.removed), "changed": names(&d.changed)})
        );
    } else {
        for e in &d.added {
            println!("+ {}", e.path);
        }
        for e in &d.removed {
            println!("- {}", e.path);
        }
        for e in &d.changed {
            println!("~ {}", e.path);
        }
    }
    Ok(())
}

pub async fn gc(store: &Store, options: &GcOptions, json: bool) -> Result<()> {
    let (spinner, progress) = operation_progress(json, "collecting garbage");
    let options = GcOptions {
        progress: Some(progress),
        ..options.clone()
    };
    let r = store.gc(&options).await;
    spinner.finish_and_clear();
    let r = r?;
    // A mistyped name in the config file would otherwise leave a collection on the
    // general rules without a word.
    for name in options.collection_retention.keys() {
        if !r.retention.contains_key(name) {
            eprintln!(
                "segstore: warning: [retention.collections.{name}] names no collection of \
                 this store; its rules were not used"
            );
        }
    }
    report(
        json,
        json!({
            "dry_run": r.dry_run, "collections": r.collections, "versions_kept": r.versions_kept,
            "versions_deleted": r.versions_deleted, "snapshots_expired": r.snapshots_expired,
            "blobs_referenced": r.blobs_referenced, "blobs_deleted": r.blobs_deleted,
            "bytes_freed": r.bytes_freed, "trees_deleted": r.trees_deleted,
            "young_unreferenced": r.young_unreferenced, "failures": r.failures,
            "retention": retention_json(&r.retention),
        }),
        &format!(
            "{}{} blobs ({} bytes) and {} tree nodes {}; {} versions deleted, {} kept; {} young unreferenced objects kept{}",
            if r.dry_run { "dry run: " } else { "" },
            r.blobs_deleted,
            r.bytes_freed,
            r.trees_deleted,
            if r.dry_run { "would be deleted" } else { "deleted" },
            r.versions_deleted,
            r.versions_kept,
            r.young_unreferenced,
            if r.failures.is_empty() { String::new() } else { format!("; {} failures (retried next run)", r.failures.len()) },
        ),
    );
    if r.dry_run && !json {
        for (collection, ret) in &r.retention {
            print!("{}", explain(collection, ret));
        }
    }
    Ok(())
}

/// Per collection: the versions deleted, and each kept version with its reasons.
fn retention_json(
    all: &std::collections::BTreeMap<String, segstore::gc::RetentionReport>,
) -> serde_json::Value {
    let per: serde_json::Map<String, serde_json::Value> = all
        .iter()
        .map(|(c, r)| {
            let kept: Vec<_> = r
                .kept
                .iter()
                .map(|v| json!({"version": v, "reasons": reasons(r, *v)}))
                .collect();
            (
                c.clone(),
                json!({"deleted": r.deleted, "kept": kept, "expired_snapshots": r.expired_snapshots}),
            )
        })
        .collect();
    serde_json::Value::Object(per)
}

/// Why retention keeps `version`, one phrase per rule.
fn reasons(r: &segstore::gc::RetentionReport, version: u64) -> Vec<String> {
    r.reasons
        .get(&version)
        .into_iter()
        .flatten()
        .map(|w| w.to_string())
        .collect()
}

/// `1-3, 5, 7-9`.
fn ranges(versions: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < versions.len() {
        let mut j = i;
        while j + 1 < versions.len() && versions[j + 1] == versions[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            versions[i].to_string()
        } else {
            format!("{}-{}", versions[i], versions[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// The dry run's explanation of one collection's retention, one line per kept version.
fn explain(collection: &str, r: &segstore::gc::RetentionReport) -> String {
    let mut out = if r.deleted.is_empty() {
        format!("{collection}: no version would be deleted\n")
    } else {
        format!(
            "{collection}: would delete versions {} (no rule keeps them)\n",
            ranges(&r.deleted)
        )
    };
    for name in &r.expired_snapshots {
        out.push_str(&format!("  would remove expired snapshot {name}\n"));
    }
    for v in &r.kept {
        let why = reasons(r, *v).join(", ");
        out.push_str(&format!("  keeps version {v}: {why}\n"));
    }
    out
}

pub async fn verify(store: &Store, sample: Option<f64>, repair: bool, json: bool) -> Result<()> {
    let (bar, progress) = operation_progress(json, "verifying");
    let r = store
        .verify(&VerifyOptions {
            sample,
            repair,
            progress: Some(progress),
            ..VerifyOptions::default()
        })
        .await;
    bar.finish_and_clear();
    let r = r?;
    let hex = |l: &[segstore::BlobId]| l.iter().map(|i| i.to_hex()).collect::<Vec<_>>();
    report(
        json,
        json!({
            "healthy": r.is_healthy(), "tier": r.tier, "versions": r.versions, "blobs_referenced": r.blobs_referenced,
            "blobs_checked": r.blobs_checked, "bytes_checked": r.bytes_checked,
            "missing": hex(&r.missing), "corrupt": hex(&r.corrupt), "orphans": hex(&r.orphans),
            "damaged_manifests": r.damaged_manifests, "removed": hex(&r.removed),
        }),
        &format!(
            "{}: {} versions, {} of {} blobs checked ({} bytes); {} missing, {} corrupt, {} damaged manifests, {} orphans; checked {}",
            if r.is_healthy() { "healthy" } else { "DAMAGED" },
            r.versions, r.blobs_checked, r.blobs_referenced, r.bytes_checked,
            r.missing.len(), r.corrupt.len(), r.damaged_manifests.len(), r.orphans.len(),
            r.tier,
        ),
    );
    if !json {
        for id in &r.missing {
            println!("missing {id}");
        }
        for id in &r.corrupt {
            println!("corrupt {id}");
        }
        if !r.removed.is_empty() {
            println!(
                "removed {} corrupt blobs: they are missing until a good copy comes back. Write \
                 the same content again (segstore put; from a backup: import it into a \
                 scratch store and get the files from there), then run verify again",
                r.removed.len()
            );
        }
    }
    if r.is_healthy() {
        Ok(())
    } else {
        Err(Error::Corrupt {
            object: "store".into(),
            expected: "every referenced blob present and intact".into(),
            actual: format!(
                "{} missing, {} corrupt, {} damaged manifests",
                r.missing.len(),
                r.corrupt.len(),
                r.damaged_manifests.len()
            ),
        })
    }
}

pub async fn stats(store: &Store, json: bool) -> Result<()> {
    let s = store.stats().await?;
    if json {
        let cols: Vec<_> = s
            .collections
            .iter()
            .map(|c| json!({"name": c.name, "latest_version": c.latest_version, "versions": c.versions, "snapshots": c.snapshots, "files": c.files, "logical_bytes": c.logical_bytes}))
            .collect();
        println!(
            "{}",
            json!({"collections": cols, "logical_bytes": s.logical_bytes, "blobs": s.blobs, "physical_bytes": s.physical_bytes, "tree_nodes": s.tree_nodes, "tree_bytes": s.tree_bytes, "dedup_ratio": s.dedup_ratio()})
        );
    } else {
        for c in &s.collections {
            println!(
                "{:<24} version {:>6} ({} stored, {} snapshots)  {:>8} files  {:>14} bytes",
                c.name, c.latest_version, c.versions, c.snapshots, c.files, c.logical_bytes
            );
        }
        println!(
            "total: {} logical bytes in {} blobs of {} bytes (dedup ratio {:.2}); {} tree nodes of {} bytes",
            s.logical_bytes, s.blobs, s.physical_bytes, s.dedup_ratio(), s.tree_nodes, s.tree_bytes
        );
    }
    Ok(())
}

fn transfer_json(r: &segstore::transfer::TransferReport) -> serde_json::Value {
    json!({"versions": r.versions, "snapshots": r.snapshots, "blobs": r.blobs, "blobs_skipped": r.blobs_skipped, "bytes": r.bytes, "trees": r.trees})
}

pub async fn export(
    store: &Store,
    collection: &str,
    dest: &std::path::Path,
    snapshot: Option<String>,
    json: bool,
) -> Result<()> {
    use segstore::transfer::ExportScope;
    let scope = snapshot.map_or(ExportScope::AllVersions, ExportScope::Snapshot);
    let (spinner, progress) = operation_progress(json, "exporting");
    let options = TransferOptions {
        progress: Some(progress),
    };
    let r = store.export(collection, &scope, dest, &options).await;
    spinner.finish_and_clear();
    let r = r?;
    // The archive itself is on stdout: the report goes to stderr.
    let report = |json: bool, value: serde_json::Value, text: &str| {
        if dest == std::path::Path::new("-") {
            eprintln!(
                "{}",
                if json {
                    value.to_string()
                } else {
                    text.to_owned()
                }
            );
        } else {
            report(json, value, text);
        }
    };
    report(
        json,
        transfer_json(&r),
        &format!(
            "exported {collection}: {} versions, {} snapshots, {} blobs ({} bytes), {} tree nodes to {}",
            r.versions, r.snapshots, r.blobs, r.bytes, r.trees, dest.display()
        ),
    );
    Ok(())
}

pub async fn import(
    store: &Store,
    collection: &str,
    source: &std::path::Path,
    json: bool,
) -> Result<()> {
    let (spinner, progress) = operation_progress(json, "importing");
    let options = TransferOptions {
        progress: Some(progress),
    };
    let r = store.import(collection, source, &options).await;
    spinner.finish_and_clear();
    let r = r?;
    report(
        json,
        transfer_json(&r),
        &format!(
            "imported {collection}: {} versions, {} snapshots, {} blobs ({} bytes, {} already present), {} tree nodes, all verified",
            r.versions, r.snapshots, r.blobs, r.bytes, r.blobs_skipped, r.trees
        ),
    );
    Ok(())
}
