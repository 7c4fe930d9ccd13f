//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: segstore records, the
//! application chooses the exporter (Prometheus, StatsD, logs) by installing a recorder;
//! without one, recording costs an atomic load.
//!
//! Every metric segstore records is listed in [`METRICS`], with its kind, labels and
//! meaning; `docs/OPERATIONS.md` has the same table. Spans: every public operation of
//! [`SegmentStorage`](crate::SegmentStorage) and the lifecycle operations of
//! [`Store`](crate::Store) (commit, GC, sync, export, import) run in a `tracing` span named
//! after the operation, at level `debug`, with the path or collection as a field.

use std::time::Duration;

/// One metric: its name, kind, labels and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// The metric's name, as exporters show it.
    pub name: &'static str,
    /// `counter` or `histogram`.
    pub kind: &'static str,
    /// The labels it carries.
    pub labels: &'static [&'static str],
    /// What it counts.
    pub meaning: &'static str,
}

/// Every metric segstore records.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: S3_REQUESTS,
        kind: "counter",
        labels: &["kind"],
        meaning: "HTTP requests sent to S3, retries included; kind: get, get_range, head, \
                  list, put, put_if_absent, copy, create_multipart, upload_part, \
                  upload_part_copy, complete_multipart, abort_multipart, delete, other",
    },
    MetricInfo {
        name: S3_BYTES_SENT,
        kind: "counter",
        labels: &[],
        meaning: "request body bytes sent to S3 (Content-Length)",
    },
    MetricInfo {
        name: S3_BYTES_RECEIVED,
        kind: "counter",
        labels: &[],
        meaning: "response body bytes announced by S3 (Content-Length)",
    },
    MetricInfo {
        name: CACHE_HITS,
        kind: "counter",
        labels: &[],
        meaning: "cached-tier reads served from L1",
    },
    MetricInfo {
        name: CACHE_MISSES,
        kind: "counter",
        labels: &[],
        meaning: "cached-tier reads that went to L2",
    },
    MetricInfo {
        name: CACHE_BYTES_FROM_L2,
        kind: "counter",
        labels: &[],
        meaning: "bytes the cached tier fetched from L2",
    },
    MetricInfo {
        name: CACHE_VERIFICATION_FAILURES,
        kind: "counter",
        labels: &[],
        meaning: "cached or fetched bytes that failed their hash check",
    },
    MetricInfo {
        name: COMMITS,
        kind: "counter",
        labels: &["outcome"],
        meaning: "commits by outcome: created (a new version), unchanged (nothing to \
                  commit), conflict, failed; a group commit of several callers counts once",
    },
    MetricInfo {
        name: COMMIT_SECONDS,
        kind: "histogram",
        labels: &[],
        meaning: "time from a commit's start to its outcome, on the store's clock",
    },
    MetricInfo {
        name: COMMIT_RETRIES,
        kind: "counter",
        labels: &["reason"],
        meaning: "commit attempts made again; reason: lost_race (another writer created \
                  the version first), late (the commit point could not be sent in time)",
    },
    MetricInfo {
        name: GC_RUNS,
        kind: "counter",
        labels: &[],
        meaning: "GC runs that ended (not dry runs)",
    },
    MetricInfo {
        name: GC_OBJECTS_DELETED,
        kind: "counter",
        labels: &["object"],
        meaning: "objects GC deleted; object: blob, tree, version",
    },
    MetricInfo {
        name: GC_BYTES_FREED,
        kind: "counter",
        labels: &[],
        meaning: "bytes of the blobs and tree nodes GC deleted",
    },
    MetricInfo {
        name: GC_FAILURES,
        kind: "counter",
        labels: &[],
        meaning: "objects GC could not delete (the next run retries them)",
    },
];

pub(crate) const S3_REQUESTS: &str = "segstore_s3_requests_total";
pub(crate) const S3_BYTES_SENT: &str = "segstore_s3_bytes_sent_total";
pub(crate) const S3_BYTES_RECEIVED: &str = "segstore_s3_bytes_received_total";
pub(crate) const CACHE_HITS: &str = "segstore_cache_hits_total";
pub(crate) const CACHE_MISSES: &str = "segstore_cache_misses_total";
pub(crate) const CACHE_BYTES_FROM_L2: &str = "segstore_cache_bytes_from_l2_total";
pub(crate) const CACHE_VERIFICATION_FAILURES: &str = "segstore_cache_verification_failures_total";
pub(crate) const COMMITS: &str = "segstore_commits_total";
pub(crate) const COMMIT_SECONDS: &str = "segstore_commit_seconds";
pub(crate) const COMMIT_RETRIES: &str = "segstore_commit_retries_total";
pub(crate) const GC_RUNS: &str = "segstore_gc_runs_total";
pub(crate) const GC_OBJECTS_DELETED: &str = "segstore_gc_objects_deleted_total";
pub(crate) const GC_BYTES_FREED: &str = "segstore_gc_bytes_freed_total";
pub(crate) const GC_FAILURES: &str = "segstore_gc_failures_total";

/// Adds `n` to the counter `name`.
pub(crate) fn count(name: &'static str, n: u64) {
    ::metrics::counter!(name).increment(n);
}

/// Adds `n` to the counter `name` with one label.
pub(crate) fn count_as(name: &'static str, label: &'static str, value: &'static str, n: u64) {
    ::metrics::counter!(name, label => value).increment(n);
}

/// One commit's outcome and how long it took.
pub(crate) fn commit(outcome: &'static str, took: Duration) {
    count_as(COMMITS, "outcome", outcome, 1);
    ::metrics::histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}
