//! GC mark and sweep at 100k and 1M blobs (time and peak memory), and verify throughput
//! against plain BLAKE3 hashing of the same files.
//!
//! GC runs over the in-memory backend so that the figures measure segstore's mark and
//! sweep, not the creation of a million files: half of the blobs are referenced from
//! manifest entries spread over 1,000 shards, half are aged orphans that GC deletes.
//! Peak memory is the growth of `VmHWM` during the GC call (reset before it through
//! `/proc/self/clear_refs`).

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::{mb_per_s, print_header, print_table, FastRng, Row, Target};
use segstore::backend::memory::MemoryBackend;
use segstore::backend::ObjectBackend;
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::manifest::FileEntry;
use segstore::{keys, BlobId, LocalStorage, StorageBackend, StoragePath, Store, StoreOptions};

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn gc_at(blobs: usize) -> (Duration, u64, u64, u64) {
    let rt = common::runtime();
    let backend = MemoryBackend::new();
    let options = StoreOptions {
        version_min_age: Duration::ZERO,
        gc_delete_delay: Duration::ZERO,
        clock_margin: Duration::ZERO,
        ..StoreOptions::default()
    };
    let store = Store::new(Arc::new(backend.clone()), options);
    let old = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    rt.block_on(async {
        let referenced = blobs / 2;
        let batch = 50_000;
        let mut next = 0usize;
        while next < referenced {
            let mut tx = store.transaction("c").await.unwrap();
            for i in next..(next + batch).min(referenced) {
                let id = BlobId::of(&(i as u64).to_le_bytes());
                let path = StoragePath::new(
                    "c",
                    StorageBackend::Tantivy,
                    format!("shard_{:04}", i % 1000),
                    format!("seg_{i:08}.idx"),
                );
                tx.put_entry(&path, FileEntry::blob(id, 8)).unwrap();
                let key = keys::blob(&id);
                backend
                    .put(&key, Bytes::from_static(b"8 bytes."))
                    .await
                    .unwrap();
                backend.set_modified(&key, old).unwrap();
            }
            tx.commit().await.unwrap();
            next += batch;
        }
        for i in referenced..blobs {
            let id = BlobId::of(&(i as u64).to_le_bytes());
            let key = keys::blob(&id);
            backend
                .put(&key, Bytes::from_static(b"orphan.."))
                .await
                .unwrap();
            backend.set_modified(&key, old).unwrap();
        }
    });
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = kib("VmHWM:");
    let start = Instant::now();
    let report = rt
        .block_on(store.gc(&GcOptions {
            retention: RetentionPolicy::keep_all(),
            ..GcOptions::default()
        }))
        .unwrap();
    let elapsed = start.elapsed();
    let peak = kib("VmHWM:").saturating_sub(before);
    (elapsed, peak, report.blobs_referenced, report.blobs_deleted)
}

fn verify_throughput(files: usize) -> (f64, f64) {
    let dir = common::bench_dir("gc-verify");
    let rt = common::runtime();
    let store = rt.block_on(LocalStorage::open(dir.path())).unwrap();
    let mut rng = FastRng::new(0x7e41f);
    let size = 16 * 1024 * 1024;
    for i in 0..files {
        let path = StoragePath::new("v", StorageBackend::Vector, "s", format!("f{i}"));
        rt.block_on(store.write_bytes(&path, Bytes::from(rng.bytes(size))))
            .unwrap();
    }
    let blob_files: Vec<_> = walk(&dir.path().join("blobs"));
    let total = (files * size) as u64;
    // Warm the page cache for both.
    for f in &blob_files {
        std::hint::black_box(std::fs::read(f).unwrap());
    }
    let (mut plain, mut ours) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for which in [round % 2, (round + 1) % 2] {
            let start = Instant::now();
            if which == 0 {
                for f in &blob_files {
                    let data = std::fs::read(f).unwrap();
                    std::hint::black_box(blake3::hash(&data));
                }
                plain.push(mb_per_s(total, start.elapsed()));
            } else {
                let report = rt
                    .block_on(store.verify(&VerifyOptions::default()))
                    .unwrap();
                assert!(report.is_healthy());
                ours.push(mb_per_s(total, start.elapsed()));
            }
        }
    }
    (common::median(&plain), common::median(&ours))
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn main() {
    print_header(
        "gc",
        "GC at 100k and 1M blobs (memory backend); verify vs BLAKE3",
    );
    let mut rows = Vec::new();
    for blobs in [100_000usize, common::scaled(1_000_000, 100_000)] {
        let (time, peak_kib, referenced, deleted) = gc_at(blobs);
        println!(
            "gc at {blobs} blobs: {:.2} s, peak memory +{:.1} MiB, {referenced} referenced, {deleted} deleted",
            time.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
        rows.push(Row::new(
            format!("GC mark + sweep, {blobs} blobs ({referenced} referenced, {deleted} swept)"),
            "-".to_string(),
            format!(
                "{:.2} s, peak +{:.1} MiB",
                time.as_secs_f64(),
                peak_kib as f64 / 1024.0
            ),
            f64::NAN,
            Target::Info,
        ));
    }
    let files = common::scaled(32, 4);
    let (plain, ours) = verify_throughput(files);
    rows.push(Row::new(
        format!("verify, {files} x 16 MiB blobs (warm)"),
        format!("{plain:.0} MB/s"),
        format!("{ours:.0} MB/s"),
        ours / plain,
        Target::AtLeast(0.8),
    ));
    print_table(
        "GC and verify",
        "plain BLAKE3 of the same files (std::fs::read + blake3::hash)",
        &rows,
    );
}
