//! segstore on S3 with a realistic per-request latency, against raw aws-sdk-s3 doing the
//! minimum requests for the same job. Run with `cargo bench --bench s3_latency`.
//!
//! Every request goes through the test proxy in front of moto, which holds it
//! `SEGSTORE_PROXY_LATENCY_MS` (20 ms by default: S3's first-byte latency in region) before
//! forwarding it. One process, one task, steady state (the store committed and read
//! before):
//!
//! 1. **Commit of one new 300 KB file**: `Store::write_bytes` (with `lean_commits`, and
//!    with the default options) against one raw `PutObject` of the same bytes.
//! 2. **Whole read of that file**: `Store::read_bytes` (bounded freshness, and strict)
//!    against one raw `GetObject`.
//! 3. **Tantivy cold open** of an index of 1,200 documents (about 2.5 MB of stored
//!    payload) committed through the adapter: a new store and adapter, `Index::open` and a
//!    reader, as a cold process does; and the **first query** after it (a single-term top
//!    10 with its 10 stored documents). Both against one raw `GetObject` of a 300 KB
//!    object: the ideal of an open or a query served by one request.
//!
//! The ratio is segstore's median latency over the raw client's: with the latency
//! dominating, it is close to the number of sequential round trips each sends.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;
#[allow(dead_code)]
#[path = "../tests/support/moto.rs"]
mod moto;
#[allow(dead_code)]
#[path = "../tests/support/proxy.rs"]
mod proxy;
#[path = "../tests/tantivy_support/mod.rs"]
mod tantivy_support;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use common::{median, print_header, print_table, FastRng, Row, Target};
use segstore::{
    Freshness, S3Config, S3Storage, SegmentStorage, StorageBackend, StoragePath, StoreOptions,
    TantivyStorageAdapter,
};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, TantivyDocument};
use tantivy_support::{add_long_docs, schema, Fields, COLLECTION, SHARD};

const FILE: usize = 300_000;

fn path(i: usize) -> StoragePath {
    StoragePath::new("bench", StorageBackend::Tantivy, "s0", format!("f{i}"))
}

/// Median latency of `n` runs of `f(i)`, in milliseconds.
fn time_each<F, Fut>(rt: &tokio::runtime::Runtime, n: usize, mut f: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let times: Vec<f64> = (0..n)
        .map(|i| {
            let began = Instant::now();
            rt.block_on(f(i));
            began.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&times)
}

fn row(name: &str, raw_ms: f64, seg_ms: f64) -> Row {
    Row::new(
        name,
        format!("{raw_ms:.1} ms"),
        format!("{seg_ms:.1} ms"),
        seg_ms / raw_ms,
        Target::Info,
    )
}

/// Commits an index of 1,200 documents through the adapter on `writer`.
fn build_index(rt: &tokio::runtime::Runtime, writer: &S3Storage) -> Fields {
    let (schema, fields) = schema();
    let shared: Arc<dyn SegmentStorage> = Arc::new(writer.clone());
    let adapter = rt
        .block_on(TantivyStorageAdapter::open(shared, COLLECTION, SHARD))
        .expect("adapter");
    let index = Index::create(adapter, schema, IndexSettings::default()).expect("index");
    let mut w: IndexWriter = index.writer(15_000_000).expect("index writer");
    add_long_docs(&w, &fields, 0..1200, 2000);
    w.commit().expect("tantivy commit");
    w.wait_merging_threads().expect("merges");
    fields
}

/// What a cold process does to search: a new store and adapter, `Index::open`, a reader.
fn cold_open(rt: &tokio::runtime::Runtime, config: &S3Config) -> (Index, IndexReader) {
    let options = StoreOptions {
        read_freshness: Freshness::Bounded(Duration::from_secs(60)),
        ..StoreOptions::default()
    };
    let store = rt
        .block_on(S3Storage::connect_with(config.clone(), options))
        .expect("connecting to moto");
    let shared: Arc<dyn SegmentStorage> = Arc::new(store);
    let adapter = rt
        .block_on(TantivyStorageAdapter::open(shared, COLLECTION, SHARD))
        .expect("adapter");
    let index = Index::open(adapter).expect("Index::open");
    let reader = index.reader().expect("reader");
    (index, reader)
}

/// A single-term top-10 query and its 10 stored documents.
fn first_query(index: &Index, reader: &IndexReader, fields: &Fields) {
    let searcher = reader.searcher();
    let query = QueryParser::for_index(index, vec![fields.body])
        .parse_query("quokka")
        .expect("query");
    let top = searcher
        .search(&query, &TopDocs::with_limit(10).order_by_score())
        .expect("search");
    assert!(!top.is_empty());
    for (_, address) in &top {
        let _doc: TantivyDocument = searcher.doc(*address).expect("stored document");
    }
}

fn main() {
    let n = common::scaled(20, 3);
    let latency = proxy::latency_from_env();
    print_header(
        "s3_latency",
        &format!(
            "moto behind a proxy adding {} ms per request; {n} operations per case; \
             300 KB files",
            latency.as_millis()
        ),
    );
    let Some(server) = moto::server() else {
        println!("SKIP: moto_server is not available");
        return;
    };
    let rt = common::runtime();
    let proxy = proxy::Proxy::start(server.port, proxy::Fault::Latency(latency));
    let config = rt.block_on(moto::bench_bucket(&proxy.endpoint()));
    let raw = moto::admin_client(&proxy.endpoint());
    let store = |options: StoreOptions| {
        rt.block_on(S3Storage::connect_with(config.clone(), options))
            .expect("connecting to moto")
    };
    let lean = store(StoreOptions {
        lean_commits: true,
        read_freshness: Freshness::Bounded(Duration::from_secs(60)),
        ..StoreOptions::default()
    });
    // The default options but strict reads: its commits are the default protocol, its
    // reads the strict row.
    let default = store(StoreOptions {
        read_freshness: Freshness::Strict,
        ..StoreOptions::default()
    });
    let mut rng = FastRng::new(0x17);
    let files: Vec<Bytes> = (0..n).map(|_| Bytes::from(rng.bytes(FILE))).collect();
    let more: Vec<Bytes> = (0..n).map(|_| Bytes::from(rng.bytes(FILE))).collect();
    let bucket = config.bucket.clone();
    // Warm-up: each store commits and reads once, so it knows the head.
    for s in [&lean, &default] {
        rt.block_on(s.store().write_bytes(&path(usize::MAX), files[0].clone()))
            .unwrap();
        rt.block_on(s.store().read_bytes(&path(usize::MAX)))
            .unwrap();
    }

    let raw_put = time_each(&rt, n, |i| {
        let (raw, bucket, body) = (raw.clone(), bucket.clone(), files[i].clone());
        async move {
            raw.put_object()
                .bucket(bucket)
                .key(format!("raw/f{i}"))
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
        }
    });
    let lean_commit = time_each(&rt, n, |i| {
        let (s, data) = (lean.store().clone(), files[i].clone());
        async move {
            s.write_bytes(&path(i), data).await.unwrap();
        }
    });
    let default_commit = time_each(&rt, n, |i| {
        let (s, data) = (default.store().clone(), more[i].clone());
        async move {
            s.write_bytes(&path(i + n), data).await.unwrap();
        }
    });
    let raw_get = time_each(&rt, n, |i| {
        let (raw, bucket) = (raw.clone(), bucket.clone());
        async move {
            let out = raw
                .get_object()
                .bucket(bucket)
                .key(format!("raw/f{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(out.body.collect().await.unwrap().into_bytes().len(), FILE);
        }
    });
    // Each store reads its own files: the tree nodes on their paths are cached after the
    // commits, as in a steady-state process.
    let bounded_read = time_each(&rt, n, |i| {
        let s = lean.store().clone();
        async move {
            assert_eq!(s.read_bytes(&path(i)).await.unwrap().len(), FILE);
        }
    });
    let strict_read = time_each(&rt, n, |i| {
        let s = default.store().clone();
        async move {
            assert_eq!(s.read_bytes(&path(i + n)).await.unwrap().len(), FILE);
        }
    });
    // Tantivy: a writer commits the index (it publishes the head with its meta.json), then
    // each round is a cold process opening it and running its first query.
    let writer = store(StoreOptions {
        lean_commits: true,
        ..StoreOptions::default()
    });
    let fields = build_index(&rt, &writer);
    let rounds = common::scaled(10, 3);
    let (mut opens, mut queries) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let began = Instant::now();
        let (index, reader) = cold_open(&rt, &config);
        opens.push(began.elapsed().as_secs_f64() * 1e3);
        let began = Instant::now();
        first_query(&index, &reader, &fields);
        queries.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let (cold_open_ms, first_query_ms) = (median(&opens), median(&queries));
    print_table(
        &format!(
            "S3 with {} ms per request: median latency, segstore / raw",
            latency.as_millis()
        ),
        "raw aws-sdk-s3",
        &[
            row(
                "commit one new 300 KB file, lean_commits (vs PutObject)",
                raw_put,
                lean_commit,
            ),
            row(
                "commit one new 300 KB file, default options (vs PutObject)",
                raw_put,
                default_commit,
            ),
            row(
                "whole read, bounded freshness (vs GetObject)",
                raw_get,
                bounded_read,
            ),
            row(
                "whole read, strict freshness (vs GetObject)",
                raw_get,
                strict_read,
            ),
            row(
                "Tantivy cold open: store, adapter, Index::open, reader (vs GetObject)",
                raw_get,
                cold_open_ms,
            ),
            row(
                "Tantivy first query, top 10 with stored docs (vs GetObject)",
                raw_get,
                first_query_ms,
            ),
        ],
    );
}
