//! Durable ingest: 64 files of 16 MiB of distinct random content, each one commit, through
//! `LocalStorage`, against the raw durable sequence (`write`, `fsync`, `rename`, directory
//! `fsync`) of the same bytes. Run with `cargo bench --bench ingest`.
//!
//! Files are interleaved: for each file the three writers run back to back, in an order
//! that rotates per file, so drift in the shared machine's disk speed hits all of them.
//! Each round uses fresh directories and fresh content (no dedup); the table shows the
//! median round.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{mb_per_s, median, print_header, print_table, FastRng, Row, Target};
use segstore::{BlobId, LocalStorage, SegmentStorage, StorageBackend, StoragePath};

const FILE_SIZE: usize = 16 * 1024 * 1024;

/// The raw baseline: temp file, write, fsync, rename into place, fsync the directory.
fn raw_durable_write(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    Raw,
    WriteBytes,
    TraitWrite,
}

fn main() {
    let files = common::scaled(64, 2);
    let rounds = common::rounds(3);
    print_header(
        "ingest",
        &format!("{files} files x 16 MiB per round, {rounds} rounds"),
    );
    let rt = common::runtime();
    let mut rng = FastRng::new(0x1a6e57);
    let total = (files * FILE_SIZE) as u64;
    let (mut raw_tp, mut wb_tp, mut tw_tp) = (Vec::new(), Vec::new(), Vec::new());
    let mut hash_time = Duration::ZERO;
    for round in 0..rounds {
        let raw_dir = common::bench_dir("ingest-raw");
        let store_dir = common::bench_dir("ingest-store");
        let store = rt
            .block_on(LocalStorage::open(store_dir.path()))
            .expect("opening the store");
        let (mut raw_t, mut wb_t, mut tw_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let order = [Writer::Raw, Writer::WriteBytes, Writer::TraitWrite];
        for i in 0..files {
            for k in 0..3 {
                let writer = order[(i + k) % 3];
                // Fresh content for every write: segstore must not dedup anything.
                let data = rng.bytes(FILE_SIZE);
                let name = format!("seg_{i:04}.idx");
                if writer == Writer::Raw {
                    // Diagnostic, outside every contender's clock: what hashing alone costs.
                    let start = Instant::now();
                    std::hint::black_box(BlobId::of(&data));
                    hash_time += start.elapsed();
                }
                match writer {
                    Writer::Raw => {
                        let start = Instant::now();
                        raw_durable_write(raw_dir.path(), &name, &data).expect("raw write");
                        raw_t += start.elapsed();
                    }
                    Writer::WriteBytes => {
                        let path = StoragePath::new("ingest", StorageBackend::Tantivy, "s0", name);
                        let data = Bytes::from(data);
                        let start = Instant::now();
                        rt.block_on(store.write_bytes(&path, data))
                            .expect("write_bytes");
                        wb_t += start.elapsed();
                    }
                    Writer::TraitWrite => {
                        let path = StoragePath::new("ingest", StorageBackend::Tantivy, "s1", name);
                        let start = Instant::now();
                        rt.block_on(SegmentStorage::write(&*store, &path, &data))
                            .expect("SegmentStorage::write");
                        tw_t += start.elapsed();
                    }
                }
            }
        }
        let (r, w, t) = (
            mb_per_s(total, raw_t),
            mb_per_s(total, wb_t),
            mb_per_s(total, tw_t),
        );
        println!(
            "round {round}: raw {r:.1} MB/s, write_bytes {w:.1} MB/s ({:.3}x), \
             SegmentStorage::write {t:.1} MB/s ({:.3}x)",
            w / r,
            t / r
        );
        raw_tp.push(r);
        wb_tp.push(w);
        tw_tp.push(t);
    }
    let raw = median(&raw_tp);
    let ratios_wb: Vec<f64> = wb_tp.iter().zip(&raw_tp).map(|(s, b)| s / b).collect();
    let ratios_tw: Vec<f64> = tw_tp.iter().zip(&raw_tp).map(|(s, b)| s / b).collect();
    print_table(
        &format!("Durable ingest, {files} x 16 MiB (median of {rounds} rounds; ratio = median of per-round ratios)"),
        "write+fsync+rename+dir fsync",
        &[
            Row::new(
                "Store::write_bytes (Bytes, one commit per file)",
                format!("{raw:.1} MB/s"),
                format!("{:.1} MB/s", median(&wb_tp)),
                median(&ratios_wb),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "SegmentStorage::write (&[u8], one commit per file)",
                format!("{raw:.1} MB/s"),
                format!("{:.1} MB/s", median(&tw_tp)),
                median(&ratios_tw),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "diagnostic: BlobId::of (BLAKE3) alone on the same bytes, in memory",
                format!("{raw:.1} MB/s"),
                format!("{:.0} MB/s", mb_per_s(total * rounds as u64, hash_time)),
                mb_per_s(total * rounds as u64, hash_time) / raw,
                Target::Info,
            ),
        ],
    );
}
