//! `CachedStorage` against its baselines. Run with `cargo bench --bench cache`.
//!
//! 1. **Warm reads** (everything in L1, written through): whole verified reads
//!    (`read_bytes`) and random 4 KiB `read_range`s, against `LocalStorage` on the same
//!    disk. Target >= 0.9x.
//! 2. **Cold range reads** from a fresh cache, group-aligned and unaligned: bytes fetched
//!    from L2 for the blob, the part of them that is rounding to whole 16 KiB groups
//!    (verification needs whole groups), and the outboard (fetched once per blob). Target:
//!    (fetched - padding) / asked <= 1.1; padding and outboard are the proof bytes.
//! 3. **Cold whole reads** from a fresh cache, against reading the same file straight from
//!    L2 with a plain store (both verified), and the bytes the fill read from L2 (exactly
//!    the blob once). Target >= 0.9x against S3 on moto. A second table repeats the cold
//!    reads with a `LocalBackend` as L2; its cold whole row is for information only (the
//!    baseline maps and hashes the file and writes nothing, while a fill writes a copy,
//!    so it measures this machine's page-cache writes more than the cache).

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "../tests/support/counting.rs"]
mod counting;
#[path = "../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::{median, print_header, print_table, FastRng, Row, Target};
use counting::Counting;
use segstore::backend::local::LocalBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::{
    keys, BlobId, CachedStorage, LocalStorage, StorageBackend, StoragePath, Store, StoreOptions,
};

const MIB: usize = 1024 * 1024;
const KIB: u64 = 1024;
/// Verification granularity of outboards (`segstore::blob::outboard::GROUP`).
const GROUP: u64 = 16 * KIB;

fn path(i: usize) -> StoragePath {
    StoragePath::new(
        "bench",
        StorageBackend::Tantivy,
        "s0",
        format!("seg_{i:04}"),
    )
}

fn main() {
    let rt = common::runtime();
    let rounds = common::rounds(5);
    let files = common::scaled(8, 2);
    let ops = common::scaled(20_000, 1000);
    print_header(
        "cache",
        &format!(
            "{files} files x 4 MiB warm, {ops} 4 KiB ranges, 32 MiB cold blob, {rounds} rounds"
        ),
    );
    warm(&rt, files, ops, rounds);
    let s3 = rt.block_on(async {
        let config = moto::fresh_bucket().await?;
        Some(Arc::new(S3Backend::connect(config).await.expect("moto")) as Arc<dyn ObjectBackend>)
    });
    let dir = common::bench_dir("cache-l2");
    let local: Arc<dyn ObjectBackend> =
        Arc::new(rt.block_on(LocalBackend::open(dir.path())).expect("l2"));
    if let Some(s3) = s3 {
        cold(&rt, "S3 on moto", s3, rounds, Target::AtLeast(0.9));
    } else {
        println!("(moto unavailable: cold figures over LocalBackend only)");
    }
    // Diagnostic: a local L2 needs no cache, and its baseline (map and hash) writes
    // nothing, while a fill writes a copy into L1.
    cold(&rt, "LocalBackend", local, rounds, Target::Info);
}

fn warm(rt: &tokio::runtime::Runtime, files: usize, ops: usize, rounds: usize) {
    let local_dir = common::bench_dir("cache-local");
    let cache_dir = common::bench_dir("cache-cached");
    let local = rt
        .block_on(LocalStorage::open(local_dir.path()))
        .expect("open");
    let l2: Arc<dyn ObjectBackend> = Arc::new(
        rt.block_on(LocalBackend::open(cache_dir.path().join("l2")))
            .expect("l2"),
    );
    let cached = rt
        .block_on(CachedStorage::open(
            cache_dir.path().join("l1"),
            1 << 30,
            l2,
            StoreOptions::default(),
        ))
        .expect("cache");
    let mut rng = FastRng::new(7);
    for i in 0..files {
        let data = Bytes::from(rng.bytes(4 * MIB));
        rt.block_on(local.write_bytes(&path(i), data.clone()))
            .expect("write");
        rt.block_on(cached.write_bytes(&path(i), data))
            .expect("write");
    }
    let ranges: Vec<(usize, u64)> = (0..ops)
        .map(|_| (rng.below(files as u64) as usize, rng.below(1023) * 4096))
        .collect();
    let whole = |store: &Store| {
        rt.block_on(async {
            let t = Instant::now();
            for i in 0..files {
                black_box(store.read_bytes(&path(i)).await.expect("read"));
            }
            t.elapsed().as_secs_f64()
        })
    };
    let ranged = |store: &Store| {
        rt.block_on(async {
            let t = Instant::now();
            for &(i, off) in &ranges {
                let b = store
                    .read_range(&path(i), off..off + 4096)
                    .await
                    .expect("range");
                black_box((b[0], b[4095]));
            }
            t.elapsed().as_secs_f64()
        })
    };
    whole(&local);
    whole(&cached); // page cache and mappings warm for both
    let (mut lw, mut cw, mut lr, mut cr) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        lw.push(whole(&local));
        cw.push(whole(&cached));
        lr.push(ranged(&local));
        cr.push(ranged(&cached));
    }
    let bytes = (files * 4 * MIB) as f64;
    let (lw, cw) = (bytes / median(&lw) / 1e6, bytes / median(&cw) / 1e6);
    let (lr, cr) = (ops as f64 / median(&lr), ops as f64 / median(&cr));
    let stats = cached.cache_stats();
    print_table(
        "Warm reads: CachedStorage (all in L1) vs LocalStorage",
        "LocalStorage",
        &[
            Row::new(
                "whole read_bytes, 4 MiB files",
                format!("{lw:.0} MB/s"),
                format!("{cw:.0} MB/s"),
                cw / lw,
                Target::AtLeast(0.9),
            ),
            Row::new(
                "random 4 KiB read_range",
                format!("{lr:.0} ops/s"),
                format!("{cr:.0} ops/s"),
                cr / lr,
                Target::AtLeast(0.9),
            ),
        ],
    );
    println!(
        "cache: {} hits, {} misses, {} bytes from L2",
        stats.hits, stats.misses, stats.bytes_from_l2
    );
}

fn cold(
    rt: &tokio::runtime::Runtime,
    label: &str,
    raw: Arc<dyn ObjectBackend>,
    rounds: usize,
    whole_target: Target,
) {
    let dir = common::bench_dir("cache-cold");
    let size = 32 * MIB + 12_345;
    let data = Bytes::from(FastRng::new(11).bytes(size));
    let id = BlobId::of(&data);
    let p = path(9999);
    let writer = rt
        .block_on(CachedStorage::open(
            dir.path().join("w"),
            1 << 30,
            raw.clone(),
            StoreOptions::default(),
        ))
        .expect("cache");
    rt.block_on(writer.write_bytes(&p, data.clone()))
        .expect("write");
    let counting = Counting::new(raw.clone());
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        rt.block_on(CachedStorage::open(
            dir.path().join(format!("r{n}")),
            1 << 30,
            counting.clone(),
            StoreOptions::default(),
        ))
        .expect("cache")
    };
    let (blob, ob) = (keys::blob(&id), keys::outboard(&id));
    let mut rows = Vec::new();
    let mut detail = Vec::new();
    for len in [4 * KIB, 64 * KIB, MIB as u64] {
        for aligned in [true, false] {
            let cache = fresh();
            rt.block_on(cache.head("bench")).expect("head"); // manifest apart
            counting.reset();
            let mut rng = FastRng::new(len + aligned as u64);
            let reads = 16u64;
            let mut padding = 0;
            for _ in 0..reads {
                let mut start = rng.below(size as u64 - len);
                if aligned {
                    start = start / GROUP * GROUP;
                }
                let end = start + len;
                // What verification in whole groups adds around the range.
                let span = (end.div_ceil(GROUP) * GROUP).min(size as u64) - start / GROUP * GROUP;
                padding += span - len;
                let got = rt
                    .block_on(cache.read_range(&p, start..end))
                    .expect("range");
                assert_eq!(got, data.slice(start as usize..end as usize));
            }
            let asked = reads * len;
            let fetched = counting.of(&blob).bytes;
            let proof = counting.of(&ob).bytes;
            let name = format!(
                "{} KiB ranges x{reads}, {}",
                len / KIB,
                if aligned {
                    "group-aligned"
                } else {
                    "unaligned"
                }
            );
            detail.push(format!(
                "| {name} | {asked} | {fetched} | {padding} | {proof} | {:.3} | {:.3} |",
                fetched as f64 / asked as f64,
                (fetched - padding.min(fetched)) as f64 / asked as f64,
            ));
            rows.push(Row::new(
                format!("{name}: (fetched - group padding) / asked"),
                format!("{asked} B asked"),
                format!("{fetched} B fetched, {padding} B padding, {proof} B outboard"),
                (fetched - padding.min(fetched)) as f64 / asked as f64,
                Target::AtMost(1.1),
            ));
        }
    }
    // Cold whole reads: a fresh cache per round vs a fresh plain store straight on L2.
    // Both resolve the head before the clock starts and then load the same tree nodes
    // and the blob, so the difference is what the cache adds to fetching and verifying.
    let (mut direct, mut cached) = (vec![], vec![]);
    let mut fill_bytes = 0;
    for _ in 0..rounds {
        let plain = Store::new(raw.clone(), StoreOptions::default());
        rt.block_on(plain.head("bench")).expect("head");
        let t = Instant::now();
        black_box(rt.block_on(plain.read_bytes(&p)).expect("direct"));
        direct.push(t.elapsed().as_secs_f64());
        let cache = fresh();
        rt.block_on(cache.head("bench")).expect("head"); // manifest resolution apart
        counting.reset();
        let t = Instant::now();
        black_box(rt.block_on(cache.read_bytes(&p)).expect("cold"));
        cached.push(t.elapsed().as_secs_f64());
        fill_bytes = counting.of(&blob).bytes;
    }
    let mbs = |t: &[f64]| size as f64 / median(t) / 1e6;
    rows.push(Row::new(
        "cold whole read_bytes, 32 MiB (fetch, verify, fill L1)",
        format!("{:.0} MB/s", mbs(&direct)),
        format!("{:.0} MB/s", mbs(&cached)),
        mbs(&cached) / mbs(&direct),
        whole_target,
    ));
    rows.push(Row::new(
        "cold whole read: bytes from L2 / blob size",
        format!("{size} B"),
        format!("{fill_bytes} B"),
        fill_bytes as f64 / size as f64,
        Target::AtMost(1.0),
    ));
    print_table(
        &format!("Cold reads from L2 = {label}"),
        &format!("direct from {label}"),
        &rows,
    );
    println!("Cold range bytes at L2 ({label}; padding = group rounding, proof bytes):\n");
    println!("| case | asked B | data fetched B | group padding B | outboard B (once per blob) | fetched / asked | (fetched - padding) / asked |");
    println!("|---|---|---|---|---|---|---|");
    for line in detail {
        println!("{line}");
    }
    println!();
}
