//! Helpers shared by the bench binaries: scale knobs, temp dirs, data, medians, tables.
#![allow(dead_code)] // each bench binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

/// `SEGSTORE_BENCH_SCALE` (default 1.0) multiplies the data sizes and counts.
pub fn scale() -> f64 {
    std::env::var("SEGSTORE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// `n` times the scale, at least `min`.
pub fn scaled(n: usize, min: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(min)
}

/// `SEGSTORE_BENCH_ROUNDS` overrides a bench's number of measurement rounds.
pub fn rounds(default: usize) -> usize {
    std::env::var("SEGSTORE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|r| *r > 0)
        .unwrap_or(default)
}

/// A fresh temp dir on the repository's filesystem (or under `SEGSTORE_BENCH_DIR`), so the
/// benches measure the same disk the store would live on. Removed on drop.
pub fn bench_dir(label: &str) -> tempfile::TempDir {
    let base = std::env::var_os("SEGSTORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    tempfile::Builder::new()
        .prefix(&format!(".segstore-bench-{label}-"))
        .tempdir_in(base)
        .expect("creating a bench temp dir")
}

/// A multi-threaded tokio runtime sized to the machine, as an application would run one.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// A fast xorshift64* generator: random-looking, incompressible bytes at several GB/s.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    pub fn new(seed: u64) -> Self {
        FastRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Nearest-rank percentile.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    assert!(!values.is_empty());
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

/// How a row is judged.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// segstore / baseline must be at least this (throughput-like figures).
    AtLeast(f64),
    /// segstore / baseline must be at most this (latency-like figures).
    AtMost(f64),
    /// Shown for context only.
    Info,
}

/// One line of a result table.
pub struct Row {
    pub name: String,
    pub baseline: String,
    pub segstore: String,
    pub ratio: f64,
    pub target: Target,
}

impl Row {
    pub fn new(
        name: impl Into<String>,
        baseline: impl Into<String>,
        segstore: impl Into<String>,
        ratio: f64,
        target: Target,
    ) -> Self {
        Row {
            name: name.into(),
            baseline: baseline.into(),
            segstore: segstore.into(),
            ratio,
            target,
        }
    }

    fn verdict(&self) -> (&'static str, String) {
        match self.target {
            Target::AtLeast(t) => (
                if self.ratio >= t { "PASS" } else { "MISS" },
                format!(">= {t:.2}x"),
            ),
            Target::AtMost(t) => (
                if self.ratio <= t { "PASS" } else { "MISS" },
                format!("<= {t:.2}"),
            ),
            Target::Info => ("info", "-".into()),
        }
    }
}

/// Prints a titled table as Markdown, so it can be pasted into docs/BENCHMARKS.md.
pub fn print_table(title: &str, baseline_label: &str, rows: &[Row]) {
    println!();
    println!("### {title}");
    println!();
    println!("| case | baseline ({baseline_label}) | segstore | ratio | target | result |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let (verdict, target) = row.verdict();
        println!(
            "| {} | {} | {} | {:.3} | {} | {} |",
            row.name, row.baseline, row.segstore, row.ratio, target, verdict
        );
    }
    println!();
}

/// Prints the bench's parameters before it starts.
pub fn print_header(name: &str, params: &str) {
    println!("== segstore bench `{name}` ({params}; scale {})", scale());
}
