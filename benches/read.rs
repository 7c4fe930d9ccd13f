//! Whole-file reads: `SegmentStorage::read` (a `Vec`, verified against the BLAKE3 hash)
//! and `Store::read_bytes` (zero-copy `Bytes`, also verified), against `std::fs::read` of
//! the same files. Run with `cargo bench --bench read`.
//!
//! Two cases:
//! - warm: every file is in the page cache (the usual state of a hot index);
//! - cold: before each read, the file's pages are dropped from the page cache with
//!   `posix_fadvise(DONTNEED)` (no root needed), so the read goes to the disk.
//!
//! Reads are interleaved per file with a rotating order; the table shows the median round.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File};
use std::hint::black_box;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{mb_per_s, median, print_header, print_table, FastRng, Row, Target};
use segstore::{keys, BlobId, LocalStorage, SegmentStorage, StorageBackend, StoragePath};

const FILE_SIZE: usize = 16 * 1024 * 1024;

/// Drops a file's (clean) pages from the page cache.
fn evict(path: &Path) {
    let file = File::open(path).expect("opening a file to evict");
    // SAFETY: a plain syscall on a valid fd.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise failed");
}

struct Fixture {
    raw_files: Vec<PathBuf>,
    paths: Vec<StoragePath>,
    blob_files: Vec<PathBuf>,
}

fn setup(rt: &tokio::runtime::Runtime, store: &LocalStorage, raw_dir: &Path, n: usize) -> Fixture {
    let mut rng = FastRng::new(0x4ead);
    let mut fx = Fixture {
        raw_files: Vec::new(),
        paths: Vec::new(),
        blob_files: Vec::new(),
    };
    for i in 0..n {
        let data = Bytes::from(rng.bytes(FILE_SIZE));
        let raw = raw_dir.join(format!("seg_{i:04}.idx"));
        fs::write(&raw, &data).expect("writing a baseline file");
        File::open(&raw).and_then(|f| f.sync_all()).expect("sync");
        let path = StoragePath::new(
            "read",
            StorageBackend::Tantivy,
            "s0",
            format!("seg_{i:04}.idx"),
        );
        rt.block_on(store.write_bytes(&path, data)).expect("write");
        let id = rt.block_on(store.metadata(&path)).expect("metadata").id;
        fx.blob_files
            .push(store.root().join(keys::blob(&id).as_str()));
        fx.raw_files.push(raw);
        fx.paths.push(path);
    }
    fx
}

#[derive(Default)]
struct Times {
    hash: Duration,
    raw: Duration,
    read: Duration,
    read_bytes: Duration,
}

fn run_round(
    rt: &tokio::runtime::Runtime,
    store: &LocalStorage,
    fx: &Fixture,
    n: usize,
    cold: bool,
) -> Times {
    let mut t = Times::default();
    for i in 0..n {
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    if cold {
                        evict(&fx.raw_files[i]);
                    }
                    let start = Instant::now();
                    let v = fs::read(&fx.raw_files[i]).expect("fs::read");
                    black_box(&v);
                    t.raw += start.elapsed();
                    assert_eq!(v.len(), FILE_SIZE);
                    // Diagnostic, outside every contender's clock: hashing alone.
                    let start = Instant::now();
                    black_box(BlobId::of(&v));
                    t.hash += start.elapsed();
                }
                1 => {
                    if cold {
                        evict(&fx.blob_files[i]);
                    }
                    let start = Instant::now();
                    let v = rt
                        .block_on(SegmentStorage::read(&**store, &fx.paths[i]))
                        .expect("read");
                    black_box(&v);
                    t.read += start.elapsed();
                    assert_eq!(v.len(), FILE_SIZE);
                }
                _ => {
                    if cold {
                        evict(&fx.blob_files[i]);
                    }
                    let start = Instant::now();
                    let b = rt
                        .block_on(store.read_bytes(&fx.paths[i]))
                        .expect("read_bytes");
                    black_box(&b);
                    t.read_bytes += start.elapsed();
                    assert_eq!(b.len(), FILE_SIZE);
                }
            }
        }
    }
    t
}

fn report(title: &str, n: usize, rounds: &[Times]) {
    let bytes = (n * FILE_SIZE) as u64;
    let raw: Vec<f64> = rounds.iter().map(|t| mb_per_s(bytes, t.raw)).collect();
    let read: Vec<f64> = rounds.iter().map(|t| mb_per_s(bytes, t.read)).collect();
    let rb: Vec<f64> = rounds
        .iter()
        .map(|t| mb_per_s(bytes, t.read_bytes))
        .collect();
    let hash: Vec<f64> = rounds.iter().map(|t| mb_per_s(bytes, t.hash)).collect();
    let ratio = |s: &[f64]| median(&s.iter().zip(&raw).map(|(s, b)| s / b).collect::<Vec<_>>());
    print_table(
        title,
        "std::fs::read",
        &[
            Row::new(
                "SegmentStorage::read -> Vec (verified)",
                format!("{:.0} MB/s", median(&raw)),
                format!("{:.0} MB/s", median(&read)),
                ratio(&read),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "Store::read_bytes -> Bytes (verified, mmap)",
                format!("{:.0} MB/s", median(&raw)),
                format!("{:.0} MB/s", median(&rb)),
                ratio(&rb),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "diagnostic: BlobId::of (BLAKE3) alone on the bytes just read",
                format!("{:.0} MB/s", median(&raw)),
                format!("{:.0} MB/s", median(&hash)),
                ratio(&hash),
                Target::Info,
            ),
        ],
    );
}

fn main() {
    let files = common::scaled(64, 2);
    let cold_files = common::scaled(16, 2).min(files);
    let rounds = common::rounds(5);
    let cold_rounds = common::rounds(3);
    print_header(
        "read",
        &format!(
            "{files} files x 16 MiB warm, {rounds} rounds; {cold_files} files cold, {cold_rounds} rounds"
        ),
    );
    let rt = common::runtime();
    let raw_dir = common::bench_dir("read-raw");
    let store_dir = common::bench_dir("read-store");
    let store = rt
        .block_on(LocalStorage::open(store_dir.path()))
        .expect("open");
    let fx = setup(&rt, &store, raw_dir.path(), files);

    // Warm-up: bring every file into the page cache.
    run_round(&rt, &store, &fx, files, false);
    let mut warm = Vec::new();
    for round in 0..rounds {
        let t = run_round(&rt, &store, &fx, files, false);
        println!(
            "warm round {round}: fs::read {:?}, read {:?}, read_bytes {:?}",
            t.raw, t.read, t.read_bytes
        );
        warm.push(t);
    }
    let mut cold = Vec::new();
    for round in 0..cold_rounds {
        let t = run_round(&rt, &store, &fx, cold_files, true);
        println!(
            "cold round {round}: fs::read {:?}, read {:?}, read_bytes {:?}",
            t.raw, t.read, t.read_bytes
        );
        cold.push(t);
    }
    report(
        &format!("Whole read, warm page cache, {files} x 16 MiB (median of {rounds} rounds)"),
        files,
        &warm,
    );
    report(
        &format!(
            "Whole read, cold (fadvise DONTNEED before each read), {cold_files} x 16 MiB (median of {cold_rounds} rounds)"
        ),
        cold_files,
        &cold,
    );
}
