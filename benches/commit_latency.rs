//! Commit latency against collection size: one small write (one commit) into a collection
//! of 100,000 paths, against the same into a collection of 100 paths. Run with
//! `cargo bench --bench commit_latency`.
//!
//! Two layouts: every path in one shard, and the paths spread over 100 shards (the small
//! collection then has one path per shard). Collections are built with transactions of
//! 10,000 inline puts. Each measured commit overwrites a random existing path with 200
//! fresh bytes (inline in the manifest), through `Store::write_bytes`; commits to the big
//! and the small collection alternate, so the two see the same disk.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{median, percentile, print_header, print_table, FastRng, Row, Target};
use segstore::{LocalStorage, StorageBackend, StoragePath};

const PAYLOAD: usize = 200;
const BATCH: usize = 10_000;

fn path_of(collection: &str, shards: usize, i: usize) -> StoragePath {
    StoragePath::new(
        collection,
        StorageBackend::Tantivy,
        format!("shard_{:03}", i % shards),
        format!("seg_{i:06}.meta"),
    )
}

fn build(
    rt: &tokio::runtime::Runtime,
    store: &LocalStorage,
    rng: &mut FastRng,
    collection: &str,
    shards: usize,
    n: usize,
) {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        rt.block_on(async {
            let mut tx = store.transaction(collection).await?;
            for j in i..end {
                tx.put(&path_of(collection, shards, j), rng.bytes(PAYLOAD)).await?;
            }
            tx.commit().await
        })
        .expect("building a collection");
        i = end;
    }
    println!(
        "built {collection}: {n} paths over {shards} shard(s) in {:.2?}",
        start.elapsed()
    );
}

fn main() {
    let big = common::scaled(100_000, 1000);
    let small = 100;
    let commits = common::scaled(200, 20);
    print_header(
        "commit_latency",
        &format!("{big} vs {small} paths, {commits} commits per collection and layout"),
    );
    let rt = common::runtime();
    let dir = common::bench_dir("commit");
    let store = rt.block_on(LocalStorage::open(dir.path())).expect("open");
    let mut rng = FastRng::new(0xc0ff1);

    let mut rows = Vec::new();
    for (label, shards) in [("1 shard", 1usize), ("100 shards", 100)] {
        let big_c = format!("big-{shards}");
        let small_c = format!("small-{shards}");
        build(&rt, &store, &mut rng, &big_c, shards, big);
        build(&rt, &store, &mut rng, &small_c, shards.min(small), small);
        let (mut lat_big, mut lat_small) = (Vec::new(), Vec::new());
        // A few unmeasured commits first, so both collections start with warm caches.
        for k in 0..(commits + 5) {
            for side in 0..2 {
                let is_big = (k + side) % 2 == 0;
                let (c, n, s) = if is_big {
                    (&big_c, big, shards)
                } else {
                    (&small_c, small, shards.min(small))
                };
                let path = path_of(c, s, rng.below(n as u64) as usize);
                let data = Bytes::from(rng.bytes(PAYLOAD));
                let start = Instant::now();
                rt.block_on(store.write_bytes(&path, data)).expect("commit");
                let ms = start.elapsed().as_secs_f64() * 1e3;
                if k >= 5 {
                    if is_big { lat_big.push(ms) } else { lat_small.push(ms) }
                }
            }
        }
        let (mb, ms) = (median(&lat_big), median(&lat_small));
        let (pb, ps) = (percentile(&lat_big, 90.0), percentile(&lat_small, 90.0));
        println!(
            "{label}: {big} paths median {mb:.2} ms p90 {pb:.2} ms; {small} paths median {ms:.2} ms p90 {ps:.2} ms"
        );
        rows.push(Row::new(
            format!("{label}: median commit latency, {big} paths vs {small}"),
            format!("{ms:.2} ms"),
            format!("{mb:.2} ms"),
            mb / ms,
            Target::AtMost(1.5),
        ));
        rows.push(Row::new(
            format!("{label}: p90 commit latency, {big} paths vs {small}"),
            format!("{ps:.2} ms"),
            format!("{pb:.2} ms"),
            pb / ps,
            Target::Info,
        ));
    }
    print_table(
        &format!("Commit latency, one {PAYLOAD}-byte write per commit ({commits} commits each)"),
        "collection of 100 paths",
        &rows,
    );
}
