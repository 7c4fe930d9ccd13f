//! Commit latency against collection size: one small write (one commit) into a collection
//! of 100,000 paths, against the same into a collection of 100 paths. Run with
//! `cargo bench --bench commit_latency`.
//!
//! Two layouts: every path in one shard, and the paths spread over 100 shards (the small
//! collection then has one path per shard). Collections are built with transactions of
//! 10,000 inline puts. Each measured commit overwrites a random existing path with 200
//! fresh bytes (inline in the manifest), through `Store::write_bytes`; commits to the big
//! and the small collection alternate, so the two see the same disk. Each collection has
//! its own store root (same filesystem), so the manifest bytes each commit writes (tree
//! nodes and roots) can be reported too.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
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
                tx.put(&path_of(collection, shards, j), rng.bytes(PAYLOAD))
                    .await?;
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

/// Total size of the files under `dir` (tree nodes, roots and hints of one store).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn manifest_bytes(store: &LocalStorage) -> u64 {
    dir_bytes(&store.root().join("trees")) + dir_bytes(&store.root().join("manifests"))
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
    let mut rng = FastRng::new(0xc0ff1);

    let mut rows = Vec::new();
    for (label, shards) in [("1 shard", 1usize), ("100 shards", 100)] {
        let big_c = format!("big-{shards}");
        let small_c = format!("small-{shards}");
        let (big_dir, small_dir) = (
            common::bench_dir("commit-big"),
            common::bench_dir("commit-small"),
        );
        let store_big = rt
            .block_on(LocalStorage::open(big_dir.path()))
            .expect("open");
        let store_small = rt
            .block_on(LocalStorage::open(small_dir.path()))
            .expect("open");
        build(&rt, &store_big, &mut rng, &big_c, shards, big);
        build(
            &rt,
            &store_small,
            &mut rng,
            &small_c,
            shards.min(small),
            small,
        );
        let mut written = [0u64; 2];
        let (mut lat_big, mut lat_small) = (Vec::new(), Vec::new());
        // A few unmeasured commits first, so both collections start with warm caches.
        for k in 0..(commits + 5) {
            for side in 0..2 {
                let is_big = (k + side) % 2 == 0;
                let (store, c, n, s) = if is_big {
                    (&store_big, &big_c, big, shards)
                } else {
                    (&store_small, &small_c, small, shards.min(small))
                };
                if k == 5 {
                    written[is_big as usize] = manifest_bytes(store);
                }
                let path = path_of(c, s, rng.below(n as u64) as usize);
                let data = Bytes::from(rng.bytes(PAYLOAD));
                let start = Instant::now();
                rt.block_on(store.write_bytes(&path, data)).expect("commit");
                let ms = start.elapsed().as_secs_f64() * 1e3;
                if k >= 5 {
                    if is_big {
                        lat_big.push(ms)
                    } else {
                        lat_small.push(ms)
                    }
                }
            }
        }
        let per_commit = |store: &LocalStorage, before: u64| {
            (manifest_bytes(store) - before) as f64 / commits as f64 / 1024.0
        };
        let (kb_big, kb_small) = (
            per_commit(&store_big, written[1]),
            per_commit(&store_small, written[0]),
        );
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
        rows.push(Row::new(
            format!("{label}: manifest bytes written per commit (tree nodes + root)"),
            format!("{kb_small:.1} KiB"),
            format!("{kb_big:.1} KiB"),
            kb_big / kb_small,
            Target::Info,
        ));
    }
    print_table(
        &format!("Commit latency, one {PAYLOAD}-byte write per commit ({commits} commits each)"),
        "collection of 100 paths",
        &rows,
    );
}
