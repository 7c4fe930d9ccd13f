//! Retention and garbage collection.
//!
//! **Retention** decides which manifest versions to keep: the newest `keep_last`, those
//! younger than `keep_within`, every pinned one, the newest of each of the last
//! `keep_hourly` hours (`keep_daily` days, `keep_weekly` weeks, `keep_monthly` months,
//! `keep_yearly` years), and always the latest; a collection may have rules of its own
//! (`GcOptions::collection_retention`). It first raises the
//! collection's boundary (so a stalled writer cannot resurrect a deleted version number),
//! then deletes the rest.
//!
//! **GC** marks every blob and tree node that a kept version references, then sweeps the
//! unmarked ones that were older than the grace period when the run started (on the store's
//! clock). Each run claims a GC epoch first, which fixes its deletion window; writers that
//! re-reference old objects check that window before their commit point. The protocol and
//! why it is safe are in `docs/ARCHITECTURE.md`, "GC protocol".

mod calendar;
mod mark;
mod policy;
mod stats;
mod verify;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::clock::millis_since_epoch;
use crate::error::{Error, Result};
use crate::keys;
use crate::manifest::head;
use crate::observe;
use crate::progress::{ProgressFn, Tracker};
use crate::store::epoch::{self, Run};
use crate::store::Store;

pub use mark::Marks;
pub use policy::{KeepReason, RetentionPolicy};
pub use stats::{CollectionStats, StoreStats};
pub use verify::{VerifyOptions, VerifyReport, VerifyTier};

/// Settings of a GC run.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Which versions to keep.
    pub retention: RetentionPolicy,
    /// Collections with rules of their own, which replace `retention` for them.
    pub collection_retention: BTreeMap<String, RetentionPolicy>,
    /// Unreferenced objects younger than this when the run starts are kept: they may
    /// belong to a commit in flight. Must exceed the store's `max_writer_stall +
    /// freshen_after + clock_margin`.
    pub grace: Duration,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Called after each object the sweep looks at: items are the blobs, outboards and
    /// tree nodes listed, bytes their sizes (the totals grow as each prefix is listed).
    pub progress: Option<ProgressFn>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            retention: RetentionPolicy::default(),
            collection_retention: BTreeMap::new(),
            grace: DEFAULT_GRACE,
            dry_run: false,
            progress: None,
        }
    }
}

pub use crate::store::DEFAULT_GRACE;

/// What retention did (or would do) to one collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Versions kept, ascending.
    pub kept: Vec<u64>,
    /// Versions deleted (or, in a dry run, that would be), ascending.
    pub deleted: Vec<u64>,
    /// Expired snapshots removed.
    pub expired_snapshots: Vec<String>,
    /// Why each kept version is kept (every rule that keeps it).
    pub reasons: BTreeMap<u64, Vec<KeepReason>>,
}

/// What a GC run did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// True if nothing was deleted because this was a dry run.
    pub dry_run: bool,
    /// Collections visited.
    pub collections: u64,
    /// Manifest versions kept, over all collections.
    pub versions_kept: u64,
    /// Manifest versions deleted by retention.
    pub versions_deleted: u64,
    /// Expired snapshots removed.
    pub snapshots_expired: u64,
    /// Blobs referenced by kept versions.
    pub blobs_referenced: u64,
    /// Unreferenced blobs deleted.
    pub blobs_deleted: u64,
    /// Bytes of those blobs.
    pub bytes_freed: u64,
    /// Unreferenced tree nodes deleted.
    pub trees_deleted: u64,
    /// Bytes of those tree nodes.
    pub tree_bytes_freed: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub young_unreferenced: u64,
    /// Objects that could not be deleted; the next run retries them.
    pub failures: Vec<String>,
    /// What retention did (or would do) to each collection.
    pub retention: BTreeMap<String, RetentionReport>,
}

impl Store {
    /// Applies `policy` to `collection`. A real run claims a GC epoch, so it never runs at
    /// the same time as a GC or another retention run ([`Error::GcInProgress`]).
    pub async fn apply_retention(
        &self,
        collection: &str,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        if dry_run {
            let now = self.backend().now().await?;
            return self.retention_at(collection, policy, now, true, None).await;
        }
        let run = self.claim_gc_epoch().await?;
        let result = self
            .retention_at(collection, policy, run.started(), false, Some(&run))
            .await;
        epoch::finish(self.backend().as_ref(), self.epochs(), &run).await;
        result
    }

    async fn claim_gc_epoch(&self) -> Result<Run> {
        let opts = self.options();
        if opts.gc_lease <= opts.gc_delete_delay + opts.clock_margin {
            return Err(Error::InvalidConfig(format!(
                "gc_lease {:?} must exceed gc_delete_delay + clock_margin = {:?}",
                opts.gc_lease,
                opts.gc_delete_delay + opts.clock_margin
            )));
        }
        epoch::claim(
            self.backend().as_ref(),
            self.epochs(),
            self.clock(),
            opts.gc_delete_delay,
            opts.gc_lease,
            opts.clock_margin,
        )
        .await
    }

    /// Retention of `collection` with ages measured against store time `now`.
    async fn retention_at(
        &self,
        collection: &str,
        policy: &RetentionPolicy,
        now: SystemTime,
        dry_run: bool,
        run: Option<&Run>,
    ) -> Result<RetentionReport> {
        // Every write is fenced by the lease, checked right before the request: a run whose
        // answers came late may have been overtaken by the next run, and a boundary it
        // computed from an old reading would lower the new one.
        let fence = || match run {
            Some(run) if !run.holds_lease(self.clock()) => Err(Error::Unavailable {
                context: format!("retention of collection {collection:?}"),
                message: "the run's lease (gc_lease) ran out; the next run goes on".into(),
                source: None,
            }),
            _ => Ok(()),
        };
        let mut report = RetentionReport::default();
        let latest = self.refresh(collection).await?.version;
        let now_ms = millis_since_epoch(now);
        let mut pinned: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for snap in self.snapshots(collection).await? {
            if snap.is_expired(now_ms) {
                if !dry_run {
                    fence()?;
                    self.backend()
                        .delete(&keys::pin(collection, &snap.name))
                        .await?;
                }
                report.expired_snapshots.push(snap.name);
            } else {
                pinned.entry(snap.version).or_default().push(snap.name);
            }
        }
        let versions = self.versions(collection).await?;
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        // The boundary is the oldest version the suffix rules keep; everything from it to
        // the latest is kept. Versions younger than the probe trust window are always
        // kept, since idle readers may still probe forward through them.
        let mut boundary = latest.max(1);
        let mut reasons: BTreeMap<u64, Vec<KeepReason>> = BTreeMap::new();
        for &(v, modified) in versions.iter().rev() {
            let by_count = policy
                .keep_last
                .is_none_or(|n| v.saturating_add(n.max(1)) > latest);
            let by_age = policy.keep_within.is_some_and(|t| age(modified) < t);
            let too_young = age(modified) < self.options().version_min_age;
            let keep_all = policy.keeps_all();
            let rules = [
                (keep_all, KeepReason::KeepAll),
                (policy.keep_last.is_some() && by_count, KeepReason::Last),
                (by_age, KeepReason::Within),
                (too_young, KeepReason::MinAge),
            ];
            let why: Vec<KeepReason> = rules
                .into_iter()
                .filter_map(|(kept, r)| kept.then_some(r))
                .collect();
            if why.is_empty() {
                break;
            }
            boundary = boundary.min(v);
            reasons.insert(v, why);
        }
        // Calendar rules keep single versions below the boundary, as snapshots do.
        let mut calendar = calendar::keeps(&versions, policy);
        for &(v, _) in &versions {
            let mut why = Vec::new();
            if v >= latest {
                why.push(KeepReason::Latest);
            }
            if v >= boundary {
                why.extend(reasons.remove(&v).unwrap_or_default());
            }
            for name in pinned.get(&v).into_iter().flatten() {
                why.push(KeepReason::Snapshot(name.clone()));
            }
            why.extend(calendar.remove(&v).unwrap_or_default());
            if v >= boundary || !why.is_empty() {
                report.kept.push(v);
                report.reasons.insert(v, why);
            } else {
                report.deleted.push(v);
            }
        }
        if dry_run || report.deleted.is_empty() {
            return Ok(report);
        }
        // Raise the boundary durably before deleting anything below it.
        let backend = self.backend().as_ref();
        head::raise_boundary(backend, collection, boundary, &fence).await?;
        // A snapshot created before the boundary rose keeps its version: list them again.
        // (One created after it sees the raised boundary and undoes itself.)
        for snap in self.snapshots(collection).await? {
            if !snap.is_expired(now_ms) && report.deleted.contains(&snap.version) {
                report.deleted.retain(|&v| v != snap.version);
                report.kept.push(snap.version);
                report
                    .reasons
                    .entry(snap.version)
                    .or_default()
                    .push(KeepReason::Snapshot(snap.name));
            }
        }
        report.kept.sort_unstable();
        for &v in &report.deleted {
            fence()?;
            self.backend()
                .delete(&keys::manifest(collection, v))
                .await?;
        }
        Ok(report)
    }

    /// Runs retention on every collection, then deletes unreferenced blobs and tree nodes
    /// that were older than the grace period when the run started.
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let opts = self.options();
        // The safety rule uses the store's writer settings: a process with shorter ones
        // was given the store's at open.
        let minimum = opts.max_writer_stall + opts.freshen_after + opts.clock_margin;
        if options.grace <= minimum {
            return Err(Error::InvalidConfig(format!(
                "gc grace {:?} must exceed max_writer_stall + freshen_after + clock_margin = \
                 {minimum:?}",
                options.grace
            )));
        }
        if options.dry_run {
            let started = self.backend().now().await?;
            return self.gc_run(options, None, started).await;
        }
        let run = self.claim_gc_epoch().await?;
        let result = self.gc_run(options, Some(&run), run.started()).await;
        epoch::finish(self.backend().as_ref(), self.epochs(), &run).await;
        if let Ok(report) = &result {
            record_gc(report);
        }
        result
    }

    #[tracing::instrument(level = "debug", name = "gc", skip_all, fields(dry_run = options.dry_run))]
    async fn gc_run(
        &self,
        options: &GcOptions,
        run: Option<&Run>,
        started: SystemTime,
    ) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        // Mark what retention keeps.
        let mut marks = Marks::default();
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for collection in self.collections().await? {
            report.collections += 1;
            let policy = options
                .collection_retention
                .get(&collection)
                .unwrap_or(&options.retention);
            let retention = self
                .retention_at(&collection, policy, started, options.dry_run, run)
                .await?;
            report.versions_deleted += retention.deleted.len() as u64;
            report.snapshots_expired += retention.expired_snapshots.len() as u64;
            let newest = retention.kept.last().copied().unwrap_or(0);
            for &v in &retention.kept {
                if let Some(root) = self.root_if_present(&collection, v).await? {
                    report.versions_kept += 1;
                    marks.add_root(self, &root).await?;
                }
            }
            seen.insert(collection.clone(), newest);
            report.retention.insert(collection, retention);
        }
        // No deletes before the run's window opens: a commit that confirmed its foreign
        // references before this run claimed its epoch has landed by then.
        if let Some(run) = run {
            tokio::time::sleep(run.until_deletes(self.clock())).await;
        }
        // Mark every version committed since retention listed them (not only the latest:
        // all are retained until the next run's retention), and every snapshot.
        for collection in self.collections().await? {
            let from = seen.get(&collection).copied().unwrap_or(0);
            let latest = self.refresh(&collection).await?;
            for v in from + 1..latest.version {
                if let Some(root) = self.root_if_present(&collection, v).await? {
                    marks.add_root(self, &root).await?;
                }
            }
            marks.add_root(self, &latest).await?;
            for snap in self.snapshots(&collection).await? {
                if let Some(root) = self.root_if_present(&collection, snap.version).await? {
                    marks.add_root(self, &root).await?;
                }
            }
        }
        report.blobs_referenced = marks.blobs.len() as u64;
        let cutoff = started.checked_sub(options.grace);
        let tracker = Tracker::new(options.progress.as_ref(), 0, 0);
        let (deleted, bytes) = self
            .sweep(
                keys::BLOBS_PREFIX,
                |id| marks.blobs.contains_key(id),
                cutoff,
                run,
                &tracker,
                &mut report,
            )
            .await?;
        report.blobs_deleted = deleted;
        report.bytes_freed = bytes;
        let (deleted, bytes) = self
            .sweep(
                keys::TREES_PREFIX,
                |id| marks.trees.contains(id),
                cutoff,
                run,
                &tracker,
                &mut report,
            )
            .await?;
        report.trees_deleted = deleted;
        report.tree_bytes_freed = bytes;
        tracing::info!(?report, "gc finished");
        Ok(report)
    }

    /// Deletes the unreferenced objects under `prefix` last modified before `cutoff`
    /// (store time), while `run`'s deletion window is open.
    async fn sweep(
        &self,
        prefix: &str,
        referenced: impl Fn(&crate::BlobId) -> bool,
        cutoff: Option<SystemTime>,
        run: Option<&Run>,
        tracker: &Tracker<'_>,
        report: &mut GcReport,
    ) -> Result<(u64, u64)> {
        let (mut deleted, mut bytes) = (0, 0);
        let old_enough = |t: SystemTime| cutoff.is_some_and(|c| t < c);
        let mut listed = self.backend().list(prefix).await?;
        tracker.found(listed.len() as u64, listed.iter().map(|m| m.size).sum());
        // Blobs before outboards, so that an outboard is only deleted once its blob is:
        // a blob that stays (young, refreshed, or its delete failed) keeps its outboard,
        // since a later dedup hit may reference it again.
        listed.sort_by_key(|m| keys::outboard_id_from_key(m.key.as_str()).is_some());
        let mut blobs_left: HashSet<crate::BlobId> = HashSet::new();
        for meta in listed {
            tracker.tick(meta.size);
            // An outboard (`<hex>.obao`) lives and dies with its blob: kept while the blob
            // is referenced or still there, swept with the same grace rule once it is not.
            let k = meta.key.as_str();
            let outboard = keys::outboard_id_from_key(k);
            let Some(id) = keys::id_from_key(k).or(outboard) else {
                continue; // not ours
            };
            if referenced(&id) || (outboard.is_some() && blobs_left.contains(&id)) {
                continue;
            }
            // Until its delete succeeds below, this blob is still there.
            if outboard.is_none() {
                blobs_left.insert(id);
            }
            if !old_enough(meta.last_modified) {
                report.young_unreferenced += 1;
                continue;
            }
            let Some(run) = run else {
                blobs_left.remove(&id);
                deleted += 1;
                bytes += meta.size;
                continue;
            };
            // A dedup hit may have refreshed it since the listing: look again right
            // before deleting.
            match self.backend().head(&meta.key).await {
                Ok(Some(now)) if old_enough(now.last_modified) => {}
                Ok(_) => continue,
                Err(e) => {
                    report.failures.push(format!("{}: {e}", meta.key));
                    continue;
                }
            }
            // The lease is checked last, right before the delete is sent: the look above
            // may have taken long (a slow answer), and only the delete's own flight time
            // is covered by the margin.
            if !run.may_delete(self.clock()) {
                report.failures.push(format!(
                    "stopped at {}: the run's lease (gc_lease) ran out; the next run goes on",
                    meta.key
                ));
                break;
            }
            match self.backend().delete(&meta.key).await {
                Ok(()) => {
                    blobs_left.remove(&id);
                    deleted += 1;
                    bytes += meta.size;
                }
                Err(e) => report.failures.push(format!("{}: {e}", meta.key)),
            }
        }
        Ok((deleted, bytes))
    }
}
/// The metrics of one GC run that ended.
fn record_gc(report: &GcReport) {
    observe::count(observe::GC_RUNS, 1);
    for (object, n) in [
        ("blob", report.blobs_deleted),
        ("tree", report.trees_deleted),
        ("version", report.versions_deleted),
    ] {
        observe::count_as(observe::GC_OBJECTS_DELETED, "object", object, n);
    }
    observe::count(
        observe::GC_BYTES_FREED,
        report.bytes_freed + report.tree_bytes_freed,
    );
    observe::count(observe::GC_FAILURES, report.failures.len() as u64);
}
