//! Random 4 KiB range reads: `Store::read_range(path, range)` against raw `pread` on an
//! open fd and against slicing a raw `mmap` of the same files. Run with
//! `cargo bench --bench range_read`.
//!
//! `Store::read_range` runs twice: with strict read freshness (one `stat` of version N+1
//! per read) and with `Freshness::Bounded(1 s)` (the default: the head re-checked at most
//! once a second), on two stores over the same directory.
//!
//! All files are in the page cache (warmed first), as for a hot index. Every contender
//! walks the same list of random 4 KiB-aligned (file, offset) pairs and touches the first
//! and last byte of what it got. The segstore loop runs inside one `block_on`, so the
//! per-call cost is that of the async API, not of entering the runtime. A diagnostic row
//! shows the blob-level read (`BlobStore::get_range` with the path resolved once), to
//! separate path resolution from the byte access.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{median, print_header, print_table, FastRng, Row, Target};
use segstore::{Freshness, LocalStorage, SegmentFile, StorageBackend, StoragePath, StoreOptions};

const FILE_SIZE: usize = 16 * 1024 * 1024;
const READ: u64 = 4096;

fn main() {
    let files = common::scaled(16, 2);
    let ops = common::scaled(50_000, 1000);
    let rounds = common::rounds(5);
    print_header(
        "range_read",
        &format!("{files} files x 16 MiB, {ops} random 4 KiB reads per contender per round, {rounds} rounds"),
    );
    let rt = common::runtime();
    let raw_dir = common::bench_dir("range-raw");
    let store_dir = common::bench_dir("range-store");
    let store = rt
        .block_on(LocalStorage::open_with(
            store_dir.path(),
            StoreOptions {
                read_freshness: Freshness::Strict,
                ..StoreOptions::default()
            },
        ))
        .expect("open");

    let mut rng = FastRng::new(0x4a96e);
    let mut fds = Vec::new();
    let mut maps = Vec::new();
    let mut paths = Vec::new();
    for i in 0..files {
        let data = Bytes::from(rng.bytes(FILE_SIZE));
        let raw = raw_dir.path().join(format!("seg_{i:04}.idx"));
        fs::write(&raw, &data).expect("write baseline");
        let fd = File::open(&raw).expect("open baseline");
        // SAFETY: the file is private to this bench and never modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&fd) }.expect("mmap baseline");
        let path = StoragePath::new(
            "range",
            StorageBackend::Tantivy,
            "s0",
            format!("seg_{i:04}.idx"),
        );
        rt.block_on(store.write_bytes(&path, data)).expect("write");
        fds.push(fd);
        maps.push(map);
        paths.push(path);
    }
    // Warm the page cache (the baseline files were never read back, the blobs neither).
    for (i, path) in paths.iter().enumerate() {
        black_box(fs::read(raw_dir.path().join(format!("seg_{i:04}.idx"))).unwrap());
        black_box(rt.block_on(store.read_bytes(path)).unwrap());
    }

    let bounded = rt
        .block_on(LocalStorage::open_with(
            store_dir.path(),
            StoreOptions {
                read_freshness: Freshness::Bounded(Duration::from_secs(1)),
                ..StoreOptions::default()
            },
        ))
        .expect("open bounded");
    for path in &paths {
        black_box(rt.block_on(bounded.read_bytes(path)).unwrap());
    }

    // Handles resolved once, as a search engine holds its open segment files.
    let handles: Vec<SegmentFile> = paths
        .iter()
        .map(|p| rt.block_on(store.open_file(p)).expect("open_file"))
        .collect();

    let blocks = FILE_SIZE as u64 / READ;
    let mut reqs: Vec<(usize, u64)> = Vec::with_capacity(ops);
    let (mut t_pread, mut t_mmap, mut t_seg, mut t_blob) = (vec![], vec![], vec![], vec![]);
    let mut t_bounded = vec![];
    for round in 0..rounds {
        reqs.clear();
        for _ in 0..ops {
            reqs.push((rng.below(files as u64) as usize, rng.below(blocks) * READ));
        }
        let mut times = [Duration::ZERO; 5];
        for k in 0..5 {
            let which = (round + k) % 5;
            let start = Instant::now();
            let mut acc = 0u64;
            match which {
                0 => {
                    let mut buf = vec![0u8; READ as usize];
                    for &(f, off) in &reqs {
                        fds[f].read_exact_at(&mut buf, off).expect("pread");
                        acc += (buf[0] ^ buf[READ as usize - 1]) as u64;
                    }
                }
                1 => {
                    for &(f, off) in &reqs {
                        let s = &maps[f][off as usize..(off + READ) as usize];
                        acc += (s[0] ^ s[READ as usize - 1]) as u64;
                    }
                }
                2 => {
                    acc += rt.block_on(async {
                        let mut acc = 0u64;
                        for &(f, off) in &reqs {
                            let b = store
                                .read_range(&paths[f], off..off + READ)
                                .await
                                .expect("read_range");
                            acc += (b[0] ^ b[READ as usize - 1]) as u64;
                        }
                        acc
                    });
                }
                4 => {
                    acc += rt.block_on(async {
                        let mut acc = 0u64;
                        for &(f, off) in &reqs {
                            let b = bounded
                                .read_range(&paths[f], off..off + READ)
                                .await
                                .expect("read_range, bounded");
                            acc += (b[0] ^ b[READ as usize - 1]) as u64;
                        }
                        acc
                    });
                }
                _ => {
                    acc += rt.block_on(async {
                        let mut acc = 0u64;
                        for &(f, off) in &reqs {
                            let b = handles[f]
                                .read_range(off..off + READ)
                                .await
                                .expect("SegmentFile::read_range");
                            acc += (b[0] ^ b[READ as usize - 1]) as u64;
                        }
                        acc
                    });
                }
            }
            times[which] = start.elapsed();
            black_box(acc);
        }
        let per_op = |d: Duration| d.as_secs_f64() * 1e9 / ops as f64;
        println!(
            "round {round}: pread {:.0} ns/op, mmap {:.0} ns/op, Store::read_range {:.0} ns/op, bounded {:.0} ns/op, SegmentFile::read_range {:.0} ns/op",
            per_op(times[0]), per_op(times[1]), per_op(times[2]), per_op(times[4]), per_op(times[3])
        );
        t_pread.push(per_op(times[0]));
        t_mmap.push(per_op(times[1]));
        t_seg.push(per_op(times[2]));
        t_blob.push(per_op(times[3]));
        t_bounded.push(per_op(times[4]));
    }
    // Throughput ratio = baseline time per op / segstore time per op, per round.
    let ratio = |seg: &[f64], base: &[f64]| {
        median(&seg.iter().zip(base).map(|(s, b)| b / s).collect::<Vec<_>>())
    };
    let ops_s = |ns: f64| format!("{:.0} ns/op ({:.2} M ops/s)", ns, 1e3 / ns);
    print_table(
        &format!("Random 4 KiB range reads, warm, {files} x 16 MiB, {ops} reads (median of {rounds} rounds)"),
        "raw pread / raw mmap",
        &[
            Row::new(
                "Store::read_range vs pread",
                ops_s(median(&t_pread)),
                ops_s(median(&t_seg)),
                ratio(&t_seg, &t_pread),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "Store::read_range vs mmap slice",
                ops_s(median(&t_mmap)),
                ops_s(median(&t_seg)),
                ratio(&t_seg, &t_mmap),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "Store::read_range, bounded freshness, vs pread",
                ops_s(median(&t_pread)),
                ops_s(median(&t_bounded)),
                ratio(&t_bounded, &t_pread),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "Store::read_range, bounded freshness, vs mmap slice",
                ops_s(median(&t_mmap)),
                ops_s(median(&t_bounded)),
                ratio(&t_bounded, &t_mmap),
                Target::Info,
            ),
            Row::new(
                "SegmentFile::read_range (open handle) vs pread",
                ops_s(median(&t_pread)),
                ops_s(median(&t_blob)),
                ratio(&t_blob, &t_pread),
                Target::AtLeast(0.9),
            ),
            Row::new(
                "SegmentFile::read_range (open handle) vs mmap slice",
                ops_s(median(&t_mmap)),
                ops_s(median(&t_blob)),
                ratio(&t_blob, &t_mmap),
                Target::AtLeast(0.9),
            ),
        ],
    );
}
