//! Peak memory of a streaming write: `Store::write_stream(path, reader)` of a 2 GiB file,
//! generated on the fly by a cheap `AsyncRead`. Run with
//! `cargo bench --bench stream_memory`.
//!
//! Each measurement runs in a fresh child process (this binary re-executed with
//! `SEGSTORE_BENCH_CHILD` set), which reads its peak resident set (`VmHWM` in
//! `/proc/self/status`) after opening the store and again after the write. The target is a
//! growth of at most 64 MiB. For context, a second child streams the same bytes with a raw
//! 1 MiB-buffer `write` loop plus `fsync`. The data is removed afterwards.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::Instant;

use common::{print_header, print_table, FastRng, Row, Target};
use segstore::{LocalStorage, StorageBackend, StoragePath};
use tokio::io::{AsyncRead, ReadBuf};

const CHILD_ENV: &str = "SEGSTORE_BENCH_CHILD";
const DIR_ENV: &str = "SEGSTORE_BENCH_CHILD_DIR";
const LIMIT_MIB: f64 = 64.0;

/// Pseudo-random bytes, `left` of them, without holding them anywhere.
struct Generated {
    rng: FastRng,
    left: u64,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let dst = buf.initialize_unfilled_to(n);
        self.rng.fill(dst);
        buf.advance(n);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// (VmHWM, VmRSS) of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a VmHWM/VmRSS line")
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn child(mode: &str, size: u64) {
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("child dir"));
    let reader = Generated {
        rng: FastRng::new(0x57e4),
        left: size,
    };
    let (hwm_before, rss_before, secs);
    if mode == "segstore" {
        let rt = common::runtime();
        let store = rt.block_on(LocalStorage::open(&dir)).expect("open");
        let path = StoragePath::new("stream", StorageBackend::Tantivy, "s0", "big.idx");
        (hwm_before, rss_before) = memory_kib();
        let start = Instant::now();
        rt.block_on(store.write_stream(&path, reader))
            .expect("write_stream");
        secs = start.elapsed().as_secs_f64();
        let meta = rt.block_on(store.metadata(&path)).expect("metadata");
        assert_eq!(meta.size, size);
    } else {
        let mut rng = reader.rng;
        let mut buf = vec![0u8; 1024 * 1024];
        (hwm_before, rss_before) = memory_kib();
        let start = Instant::now();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join("big.idx"))
            .expect("create");
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            file.write_all(&buf[..n]).expect("write");
            left -= n as u64;
        }
        file.sync_all().expect("fsync");
        secs = start.elapsed().as_secs_f64();
    }
    let (hwm_after, rss_after) = memory_kib();
    println!(
        "RESULT hwm_before={hwm_before} rss_before={rss_before} hwm_after={hwm_after} rss_after={rss_after} secs={secs}"
    );
}

struct Measured {
    hwm_before: f64,
    hwm_after: f64,
    secs: f64,
}

fn run_child(mode: &str, size: u64) -> Measured {
    let dir = common::bench_dir(&format!("stream-{mode}"));
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, mode)
        .env(DIR_ENV, dir.path())
        .env("SEGSTORE_BENCH_STREAM_BYTES", size.to_string())
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {mode} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("child result line");
    let get = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .expect("child field")
    };
    println!("{mode}: {line}");
    drop(dir); // removes the 2 GiB of data
    Measured {
        hwm_before: get("hwm_before") / 1024.0,
        hwm_after: get("hwm_after") / 1024.0,
        secs: get("secs"),
    }
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let size = std::env::var("SEGSTORE_BENCH_STREAM_BYTES")
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("stream size");
        child(&mode, size);
        return;
    }
    let size = (2048.0 * 1024.0 * 1024.0 * common::scale()) as u64;
    print_header(
        "stream_memory",
        &format!(
            "{:.0} MiB streamed write in a fresh child process",
            size as f64 / 1048576.0
        ),
    );
    let seg = run_child("segstore", size);
    let raw = run_child("raw", size);
    let mb_s = |m: &Measured| size as f64 / m.secs / 1e6;
    let growth = seg.hwm_after - seg.hwm_before;
    let raw_growth = raw.hwm_after - raw.hwm_before;
    print_table(
        &format!(
            "Peak memory of a {:.0} MiB streaming write",
            size as f64 / 1048576.0
        ),
        "VmHWM before the write",
        &[
            Row::new(
                "Store::write_stream: peak RSS growth in MiB (ratio column = growth / 64 MiB)",
                format!("{:.1} MiB", seg.hwm_before),
                format!("{:.1} MiB (+{growth:.1} MiB)", seg.hwm_after),
                growth / LIMIT_MIB,
                Target::AtMost(1.0),
            ),
            Row::new(
                "context: raw write loop (1 MiB buffer) + fsync, peak RSS growth",
                format!("{:.1} MiB", raw.hwm_before),
                format!("{:.1} MiB (+{raw_growth:.1} MiB)", raw.hwm_after),
                raw_growth / LIMIT_MIB,
                Target::Info,
            ),
            Row::new(
                "context: throughput, write_stream vs raw write loop + fsync",
                format!("{:.0} MB/s", mb_s(&raw)),
                format!("{:.0} MB/s", mb_s(&seg)),
                mb_s(&seg) / mb_s(&raw),
                Target::Info,
            ),
        ],
    );
}
