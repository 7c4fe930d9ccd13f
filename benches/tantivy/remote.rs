//! The remote part of the tantivy benchmark: the adapter on plain S3 (moto, where files
//! are read lazily by verified range) and on the cached tier (an L1 directory in front of
//! S3, or in front of a local L2 when moto is missing), against `MmapDirectory`.
//!
//! - cold time from `TantivyStorageAdapter::open` to the first query's top 10, with a
//!   fresh S3 client and adapter each round, next to `Index::open` on a fresh
//!   `MmapDirectory` whose files were dropped from the page cache;
//! - GET requests per query on S3, cold (a fresh adapter, segments already open) and warm
//!   (the same query again);
//! - warm top-10 QPS on the cached tier against `MmapDirectory` (target >= 0.9), and on
//!   plain S3 for reference.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

use std::os::fd::AsRawFd;

use segstore::backend::counting::{CountingBackend, RequestCounts};
use segstore::backend::local::LocalBackend;
use segstore::backend::s3::{S3Backend, S3Config};
use segstore::backend::ObjectBackend;
use segstore::store::CachedStorage;
use segstore::{Store, StoreOptions};

use super::*;

const COLLECTION: &str = "bench";
const SHARD: &str = "shard_0";

/// Drops every file under `dir` from the page cache, so that the next open reads the disk.
fn drop_page_cache(dir: &Path) {
    let mut files = Vec::new();
    collect_all(dir, &mut files);
    for f in files {
        if let Ok(file) = std::fs::File::open(&f) {
            // SAFETY: a plain advisory call on a valid open descriptor.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn collect_all(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_all(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn adapter_over(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn SegmentStorage>,
) -> TantivyStorageAdapter {
    rt.block_on(TantivyStorageAdapter::open(store, COLLECTION, SHARD))
        .expect("adapter")
}

/// A fresh S3 client (new connections) counted, a fresh store and adapter over it.
fn counted_adapter(
    rt: &tokio::runtime::Runtime,
    config: &S3Config,
) -> (CountingBackend, TantivyStorageAdapter) {
    let s3 = rt
        .block_on(S3Backend::connect(config.clone()))
        .expect("connecting to moto");
    let s3: Arc<dyn ObjectBackend> = Arc::new(s3);
    let counting: CountingBackend = CountingBackend::new(s3);
    let store = Store::new(Arc::new(counting.clone()), StoreOptions::default());
    let adapter = adapter_over(rt, Arc::new(store));
    (counting, adapter)
}

fn gets(c: &RequestCounts) -> u64 {
    c.get + c.get_range
}

fn open_searcher(dir: Box<dyn Directory>) -> (Index, Searcher) {
    let index = Index::open(dir).expect("open index");
    let searcher = index.reader().expect("reader").searcher();
    (index, searcher)
}

fn first_query(index: &Index, searcher: &Searcher, body: Field, q: &str) -> usize {
    let query = QueryParser::for_index(index, vec![body])
        .parse_query(q)
        .expect("query");
    let top = searcher
        .search(&query, &TopDocs::with_limit(10).order_by_score())
        .expect("search");
    top.len()
}

/// Runs the remote benchmarks. `mmap_dir` holds the one-segment query index
/// (`mmap_index`); `classes` are the query classes of the local benchmark.
pub(super) fn run(
    rt: &tokio::runtime::Runtime,
    corpus: &Corpus,
    classes: &[QueryClass],
    (mmap_dir, mmap_index): (&Path, &Index),
    secs: f64,
) {
    let (_, _, body) = schema();
    let mmap_searcher = mmap_index.reader().expect("reader").searcher();
    let Some(server) = moto::server() else {
        println!("\nS3: SKIP (moto_server is not available); cached tier over a local L2:");
        let l2_dir = tempfile::tempdir().expect("tempdir");
        let l2 = rt
            .block_on(LocalBackend::open(l2_dir.path()))
            .expect("local L2");
        let l2: Arc<dyn ObjectBackend> = Arc::new(l2);
        let l1_dir = tempfile::tempdir().expect("tempdir");
        let cached = rt
            .block_on(CachedStorage::open(
                l1_dir.path(),
                8 << 30,
                l2,
                StoreOptions::default(),
            ))
            .expect("cache");
        let (index, _) = build_query_index(Box::new(adapter_over(rt, Arc::new(cached))), corpus);
        let searcher = index.reader().expect("reader").searcher();
        compare_tier(
            "cached (L2 local)",
            classes,
            (mmap_index, &mmap_searcher),
            (&index, &searcher),
            secs,
            0.9,
        );
        return;
    };
    let config = rt.block_on(moto::bench_bucket(&server.endpoint));
    let store = rt
        .block_on(segstore::S3Storage::connect(config.clone()))
        .expect("connecting to moto");
    let (s3_index, t_build) =
        build_query_index(Box::new(adapter_over(rt, Arc::new(store))), corpus);
    drop(s3_index);
    println!(
        "\nS3 (moto): the same one-segment query index built into a bucket in {:.2}s",
        t_build.as_secs_f64()
    );

    cold_open(rt, &config, classes, (mmap_dir, body));
    gets_per_query(rt, &config, classes, body);

    // Warm QPS on plain S3 (lazy handles, block cache) for reference.
    let (_, s3_adapter) = counted_adapter(rt, &config);
    let (s3_index, s3_searcher) = open_searcher(Box::new(s3_adapter));
    compare_tier(
        "S3, no cache",
        classes,
        (mmap_index, &mmap_searcher),
        (&s3_index, &s3_searcher),
        secs,
        0.0,
    );
    drop((s3_index, s3_searcher));

    // The cached tier over the same bucket: files are fetched into L1 and mapped at open.
    let l1_dir = tempfile::tempdir().expect("tempdir");
    let l2 = rt
        .block_on(S3Backend::connect(config.clone()))
        .expect("connecting to moto");
    let cached = rt
        .block_on(CachedStorage::open(
            l1_dir.path(),
            8 << 30,
            Arc::new(l2),
            StoreOptions::default(),
        ))
        .expect("cache");
    let (index, searcher) = open_searcher(Box::new(adapter_over(rt, Arc::new(cached))));
    compare_tier(
        "cached (L2 S3)",
        classes,
        (mmap_index, &mmap_searcher),
        (&index, &searcher),
        secs,
        0.9,
    );
}

/// Cold open to the first top 10, S3 against a page-cache-dropped `MmapDirectory`.
fn cold_open(
    rt: &tokio::runtime::Runtime,
    config: &S3Config,
    classes: &[QueryClass],
    (mmap_dir, body): (&Path, Field),
) {
    let rounds = env_usize("SEGSTORE_BENCH_COLD_ROUNDS", 5).max(1);
    let q = classes[0]
        .queries
        .first()
        .cloned()
        .unwrap_or_else(|| "fn".into());
    let (mut t_s3, mut t_mmap, mut requests) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s3 = rt
            .block_on(S3Backend::connect(config.clone()))
            .expect("connecting to moto");
        let s3: Arc<dyn ObjectBackend> = Arc::new(s3);
        let counting: CountingBackend = CountingBackend::new(s3);
        let store: Arc<dyn SegmentStorage> = Arc::new(Store::new(
            Arc::new(counting.clone()),
            StoreOptions::default(),
        ));
        let start = Instant::now();
        let adapter = adapter_over(rt, store);
        let (index, searcher) = open_searcher(Box::new(adapter));
        let hits = first_query(&index, &searcher, body, &q);
        t_s3.push(start.elapsed().as_secs_f64());
        requests.push(counting.snapshot());
        drop((index, searcher));

        drop_page_cache(mmap_dir);
        let start = Instant::now();
        let dir = MmapDirectory::open(mmap_dir).expect("mmap dir");
        let (index, searcher) = open_searcher(Box::new(dir));
        let mmap_hits = first_query(&index, &searcher, body, &q);
        t_mmap.push(start.elapsed().as_secs_f64());
        assert_eq!(hits, mmap_hits);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s3, mmap) = (med(&mut t_s3), med(&mut t_mmap));
    let last = requests.last().copied().unwrap_or_default();
    println!(
        "cold open -> first top-10 (rare term {q:?}), median of {rounds} rounds, fresh client \
         and adapter / fresh MmapDirectory with its files dropped from the page cache:\n  \
         S3 {:.1} ms, mmap {:.1} ms, ratio S3/mmap {:.1}; S3 requests: {} GETs ({} whole, {} \
         ranges), {} HEAD, {:.2} MB read",
        s3 * 1e3,
        mmap * 1e3,
        s3 / mmap,
        gets(&last),
        last.get,
        last.get_range,
        last.head,
        last.bytes_read as f64 / 1e6,
    );
}

/// GET requests per query on S3, per class: opening (index, reader, segments) once per
/// query with a fresh adapter, then the query cold, then the same query warm.
fn gets_per_query(
    rt: &tokio::runtime::Runtime,
    config: &S3Config,
    classes: &[QueryClass],
    body: Field,
) {
    let per_class = env_usize("SEGSTORE_BENCH_COLD_QUERIES", 10).max(1);
    println!(
        "\nGET requests per top-10 query on S3 (first {per_class} queries of each class, each \
         on a fresh adapter; open = Index::open + reader):"
    );
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>12} {:>10}",
        "class", "queries", "open GETs", "cold GETs", "cold KB", "warm GETs"
    );
    let collector = TopDocs::with_limit(10).order_by_score();
    for class in classes {
        let queries = &class.queries[..class.queries.len().min(per_class)];
        let (mut open, mut cold, mut cold_bytes, mut warm) = (0u64, 0u64, 0u64, 0u64);
        for q in queries {
            let (counting, adapter) = counted_adapter(rt, config);
            let (index, searcher) = open_searcher(Box::new(adapter));
            let query = QueryParser::for_index(&index, vec![body])
                .parse_query(q)
                .expect("query");
            open += gets(&counting.snapshot());
            counting.reset();
            std::hint::black_box(searcher.search(query.as_ref(), &collector).expect("search"));
            let c = counting.snapshot();
            cold += gets(&c);
            cold_bytes += c.bytes_read;
            counting.reset();
            std::hint::black_box(searcher.search(query.as_ref(), &collector).expect("search"));
            warm += gets(&counting.snapshot());
        }
        let n = queries.len().max(1) as f64;
        println!(
            "{:<14} {:>8} {:>10.1} {:>10.1} {:>12.1} {:>10.1}",
            class.name,
            queries.len(),
            open as f64 / n,
            cold as f64 / n,
            cold_bytes as f64 / n / 1e3,
            warm as f64 / n
        );
    }
}

/// Warm QPS of `candidate` against `MmapDirectory`, per class, as in the local benchmark.
fn compare_tier(
    label: &str,
    classes: &[QueryClass],
    (mmap_index, mmap): (&Index, &Searcher),
    (index, searcher): (&Index, &Searcher),
    secs: f64,
    target: f64,
) {
    let (_, _, body) = schema();
    println!("\nwarm top-10 QPS, {label} vs MmapDirectory (same slices and ratios as above):");
    println!(
        "{:<14} {:>8} {:>12} {:>12} {:>13}",
        "class", "queries", "mmap", label, "ratio (median)"
    );
    let (mix, worst) = class_rows(classes, (mmap_index, mmap), (index, searcher), secs, body);
    if target > 0.0 {
        println!(
            "query QPS ratio {label}/mmap, mix (best slices): {mix:.3}, worst class (median of \
             pairs): {worst:.3} (target >= {target}) {}",
            verdict(mix >= target && worst >= target)
        );
    } else {
        println!(
            "query QPS ratio {label}/mmap, mix (best slices): {mix:.3}, worst class (median of \
             pairs): {worst:.3} (no target)"
        );
    }
}
