//! segstore on S3 against the raw aws-sdk-s3 client, on a local moto server started the
//! way the tests start it. Run with `cargo bench --bench s3`.
//!
//! 1. **Ingest**: `Store::write_bytes` of 4 MiB files (one `PutObject` per blob) and
//!    `Store::write_stream` of 16 MiB files (the multipart path) against a raw `PutObject`
//!    of the same bytes, one file at a time. Every round uses new random bytes (no dedup
//!    hits) and a freshly reset server.
//! 2. **Range reads**: random 4 KiB `Store::read_range` against a raw ranged `GetObject`
//!    of the same files; a diagnostic row reads the blob with the path resolved once.
//! 3. **Requests per commit**: a `CountingBackend` around the S3 backend gives the
//!    logical breakdown, and a logging proxy in front of moto the real HTTP requests
//!    (multipart parts, copies), for a small write, a large write, and a 10-file
//!    transaction.
//!
//! moto is a single-threaded Python server (the harness serialises its requests), so the
//! absolute figures say little about AWS; the ratios compare two clients of one server.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod common;
#[allow(dead_code)]
#[path = "../tests/support/moto.rs"]
mod moto;
#[allow(dead_code)]
#[path = "../tests/support/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use common::{mb_per_s, median, print_header, print_table, FastRng, Row, Target};
use segstore::backend::counting::CountingBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::{S3Storage, StorageBackend, StoragePath, Store, StoreOptions};

const MIB: usize = 1024 * 1024;
const SMALL_FILE: usize = 4 * MIB;
const LARGE_FILE: usize = 16 * MIB;
const RANGE: u64 = 4096;

fn main() {
    let small_files = common::scaled(32, 2);
    let large_files = common::scaled(4, 1);
    let rounds = common::rounds(3);
    let range_reads = common::scaled(400, 50);
    print_header(
        "s3",
        &format!(
            "moto; ingest {small_files} x 4 MiB + {large_files} x 16 MiB per contender per \
             round, {rounds} rounds; {range_reads} random 4 KiB range reads per contender per round"
        ),
    );
    let Some(server) = moto::server() else {
        println!("SKIP: moto_server is not available");
        return;
    };
    let rt = common::runtime();
    let raw = moto::admin_client(&server.endpoint);

    let mut ingest = IngestTimes::default();
    let mut range = RangeTimes::default();
    let mut rng = FastRng::new(0x53);
    for round in 0..rounds {
        reset_moto(server.port);
        let config = rt.block_on(moto::bench_bucket(&server.endpoint));
        let store = rt
            .block_on(S3Storage::connect(config.clone()))
            .expect("connecting to moto");
        let small: Vec<Bytes> = (0..small_files)
            .map(|_| Bytes::from(rng.bytes(SMALL_FILE)))
            .collect();
        let large: Vec<Bytes> = (0..large_files)
            .map(|_| Bytes::from(rng.bytes(LARGE_FILE)))
            .collect();
        // Alternate who goes first, so that drift in moto's speed hits both alike.
        let seg_first = round % 2 == 1;
        for turn in 0..2 {
            if (turn == 0) == seg_first {
                let (s, l) = rt.block_on(segstore_ingest(&store, &small, &large));
                ingest.seg_small.push(s);
                ingest.seg_large.push(l);
                let (s, l) = rt.block_on(segstore_batched(&store, &small, &large));
                ingest.seg_small_tx.push(s);
                ingest.seg_large_put.push(l);
            } else {
                let (s, l) = rt.block_on(raw_ingest(&raw, &config.bucket, &small, &large));
                ingest.raw_small.push(s);
                ingest.raw_large.push(l);
            }
        }
        println!(
            "round {round}: ingest 4 MiB files raw {:?} segstore {:?}; 16 MiB files raw {:?} segstore {:?}",
            ingest.raw_small[round], ingest.seg_small[round],
            ingest.raw_large[round], ingest.seg_large[round],
        );
        let r = rt.block_on(range_reads_round(
            &store,
            &raw,
            &config.bucket,
            small_files,
            range_reads,
            &mut rng,
        ));
        println!(
            "round {round}: range read raw {:.0} us/op, Store::read_range {:.0} us/op, BlobStore::get_range {:.0} us/op",
            r.0, r.1, r.2
        );
        range.raw.push(r.0);
        range.seg.push(r.1);
        range.blob.push(r.2);
    }
    ingest.print(small_files, large_files);
    range.print(range_reads);

    reset_moto(server.port);
    rt.block_on(requests_per_commit(server.port));
}

fn reset_moto(port: u16) {
    let reply = moto::http_request(port, "POST", "/moto-api/reset", "").expect("resetting moto");
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
        "{reply}"
    );
}

fn small_path(i: usize) -> StoragePath {
    StoragePath::new(
        "bench",
        StorageBackend::Tantivy,
        "s0",
        format!("seg_{i:04}.idx"),
    )
}

fn large_path(i: usize) -> StoragePath {
    StoragePath::new(
        "bench",
        StorageBackend::Vector,
        "s0",
        format!("hnsw_{i:04}.bin"),
    )
}

async fn segstore_ingest(
    store: &S3Storage,
    small: &[Bytes],
    large: &[Bytes],
) -> (Duration, Duration) {
    let started = Instant::now();
    for (i, data) in small.iter().enumerate() {
        store
            .write_bytes(&small_path(i), data.clone())
            .await
            .expect("write_bytes");
    }
    let small_time = started.elapsed();
    let started = Instant::now();
    for (i, data) in large.iter().enumerate() {
        store
            .write_stream(&large_path(i), &data[..])
            .await
            .expect("write_stream");
    }
    (small_time, started.elapsed())
}

/// Context rows: the 4 MiB files as one transaction (one commit for all, as a Tantivy
/// commit would be), and the 16 MiB files through `write_bytes` (one `PutObject`, no
/// multipart). Different paths and bytes than `segstore_ingest`'s (a fresh variant of each
/// file), so nothing is deduplicated.
async fn segstore_batched(
    store: &S3Storage,
    small: &[Bytes],
    large: &[Bytes],
) -> (Duration, Duration) {
    let variant = |data: &Bytes| {
        let mut v = data.to_vec();
        v[0] ^= 0xff;
        Bytes::from(v)
    };
    let small: Vec<Bytes> = small.iter().map(variant).collect();
    let large: Vec<Bytes> = large.iter().map(variant).collect();
    let started = Instant::now();
    let mut tx = store.transaction("bench").await.expect("transaction");
    for (i, data) in small.into_iter().enumerate() {
        let p = StoragePath::new(
            "bench",
            StorageBackend::Tantivy,
            "s1",
            format!("seg_{i:04}.idx"),
        );
        tx.put(&p, data).await.expect("tx put");
    }
    tx.commit().await.expect("commit");
    let small_time = started.elapsed();
    let started = Instant::now();
    for (i, data) in large.into_iter().enumerate() {
        let p = StoragePath::new(
            "bench",
            StorageBackend::Vector,
            "s1",
            format!("hnsw_{i:04}.bin"),
        );
        store.write_bytes(&p, data).await.expect("write_bytes");
    }
    (small_time, started.elapsed())
}

async fn raw_ingest(
    raw: &aws_sdk_s3::Client,
    bucket: &str,
    small: &[Bytes],
    large: &[Bytes],
) -> (Duration, Duration) {
    let put = |key: String, data: Bytes| async move {
        raw.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .expect("raw PutObject");
    };
    let started = Instant::now();
    for (i, data) in small.iter().enumerate() {
        put(format!("raw/small/{i:04}"), data.clone()).await;
    }
    let small_time = started.elapsed();
    let started = Instant::now();
    for (i, data) in large.iter().enumerate() {
        put(format!("raw/large/{i:04}"), data.clone()).await;
    }
    (small_time, started.elapsed())
}

/// Median microseconds per read: raw ranged GET, `Store::read_range`, blob-level read.
async fn range_reads_round(
    store: &S3Storage,
    raw: &aws_sdk_s3::Client,
    bucket: &str,
    files: usize,
    reads: usize,
    rng: &mut FastRng,
) -> (f64, f64, f64) {
    let blocks = SMALL_FILE as u64 / RANGE;
    let reqs: Vec<(usize, u64)> = (0..reads)
        .map(|_| (rng.below(files as u64) as usize, rng.below(blocks) * RANGE))
        .collect();
    let mut ids = Vec::new();
    for i in 0..files {
        ids.push(store.metadata(&small_path(i)).await.expect("metadata").id);
    }
    // Interleave the contenders in blocks of 50 so that all see the same server state.
    let (mut t_raw, mut t_seg, mut t_blob) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for chunk in reqs.chunks(50) {
        let started = Instant::now();
        for (f, off) in chunk {
            let out = raw
                .get_object()
                .bucket(bucket)
                .key(format!("raw/small/{f:04}"))
                .range(format!("bytes={}-{}", off, off + RANGE - 1))
                .send()
                .await
                .expect("raw ranged GET");
            let body = out.body.collect().await.expect("body").into_bytes();
            assert_eq!(body.len() as u64, RANGE);
        }
        t_raw += started.elapsed();
        let started = Instant::now();
        for (f, off) in chunk {
            let got = store
                .read_range(&small_path(*f), *off..off + RANGE)
                .await
                .expect("read_range");
            assert_eq!(got.len() as u64, RANGE);
        }
        t_seg += started.elapsed();
        let started = Instant::now();
        for (f, off) in chunk {
            let got = store
                .blobs()
                .get_range(&ids[*f], *off..off + RANGE)
                .await
                .expect("get_range");
            assert_eq!(got.len() as u64, RANGE);
        }
        t_blob += started.elapsed();
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / reads as f64;
    (per(t_raw), per(t_seg), per(t_blob))
}

#[derive(Default)]
struct IngestTimes {
    raw_small: Vec<Duration>,
    seg_small: Vec<Duration>,
    raw_large: Vec<Duration>,
    seg_large: Vec<Duration>,
    seg_small_tx: Vec<Duration>,
    seg_large_put: Vec<Duration>,
}

impl IngestTimes {
    fn print(&self, small_files: usize, large_files: usize) {
        let secs =
            |v: &[Duration]| median(&v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>());
        let small_bytes = (small_files * SMALL_FILE) as u64;
        let large_bytes = (large_files * LARGE_FILE) as u64;
        let rate = |bytes: u64, s: f64| mb_per_s(bytes, Duration::from_secs_f64(s));
        let (rs, ss) = (secs(&self.raw_small), secs(&self.seg_small));
        let (rl, sl) = (secs(&self.raw_large), secs(&self.seg_large));
        let (st, lp) = (secs(&self.seg_small_tx), secs(&self.seg_large_put));
        let rows = vec![
            Row::new(
                format!("{small_files} x 4 MiB, Store::write_bytes (PutObject per blob)"),
                format!("{:.1} MB/s", rate(small_bytes, rs)),
                format!("{:.1} MB/s", rate(small_bytes, ss)),
                rs / ss,
                Target::AtLeast(0.9),
            ),
            Row::new(
                format!("{large_files} x 16 MiB, Store::write_stream (multipart + copy)"),
                format!("{:.1} MB/s", rate(large_bytes, rl)),
                format!("{:.1} MB/s", rate(large_bytes, sl)),
                rl / sl,
                Target::AtLeast(0.9),
            ),
            Row::new(
                "all files",
                format!("{:.1} MB/s", rate(small_bytes + large_bytes, rs + rl)),
                format!("{:.1} MB/s", rate(small_bytes + large_bytes, ss + sl)),
                (rs + rl) / (ss + sl),
                Target::AtLeast(0.9),
            ),
            Row::new(
                format!("context: {small_files} x 4 MiB as one Transaction (one commit)"),
                format!("{:.1} MB/s", rate(small_bytes, rs)),
                format!("{:.1} MB/s", rate(small_bytes, st)),
                rs / st,
                Target::Info,
            ),
            Row::new(
                format!("context: {large_files} x 16 MiB, Store::write_bytes (one PutObject)"),
                format!("{:.1} MB/s", rate(large_bytes, rl)),
                format!("{:.1} MB/s", rate(large_bytes, lp)),
                rl / lp,
                Target::Info,
            ),
        ];
        print_table(
            "Ingest on S3 (moto), one file at a time (median of rounds)",
            "raw PutObject",
            &rows,
        );
    }
}

#[derive(Default)]
struct RangeTimes {
    raw: Vec<f64>,
    seg: Vec<f64>,
    blob: Vec<f64>,
}

impl RangeTimes {
    fn print(&self, reads: usize) {
        let (raw, seg, blob) = (median(&self.raw), median(&self.seg), median(&self.blob));
        let rows = vec![
            Row::new(
                "Store::read_range (latency ratio raw/segstore)",
                format!("{raw:.0} us/op"),
                format!("{seg:.0} us/op"),
                raw / seg,
                Target::AtLeast(0.9),
            ),
            Row::new(
                "diagnostic: BlobStore::get_range, path resolved once",
                format!("{raw:.0} us/op"),
                format!("{blob:.0} us/op"),
                raw / blob,
                Target::Info,
            ),
        ];
        print_table(
            &format!("Random 4 KiB range reads on S3 (moto), {reads} per contender per round"),
            "raw ranged GetObject",
            &rows,
        );
    }
}

/// One measured operation: logical requests through `CountingBackend`, and HTTP requests
/// through the proxy.
async fn measure<F, Fut>(label: &str, counting: &CountingBackend, proxy: &proxy::Proxy, op: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    counting.reset();
    proxy.take_requests();
    op().await;
    let counts = counting.snapshot();
    let log = counting.log();
    let http = proxy.take_requests();
    let new_blobs = log
        .iter()
        .filter(|r| r.key.starts_with("blobs/") && matches!(r.kind.name(), "put" | "publish"))
        .count();
    let trees = log
        .iter()
        .filter(|r| r.key.starts_with("trees/") && r.kind.name() == "put")
        .count();
    let roots = log
        .iter()
        .filter(|r| r.key.starts_with("manifests/") && r.kind.name() == "put_if_absent")
        .count();
    let minimum = new_blobs + trees + roots;
    let writes = counts.put + counts.put_if_absent + counts.uploads;
    println!();
    println!("#### {label}");
    println!();
    println!("- logical requests: {counts}");
    println!(
        "- writes: {writes} = {new_blobs} new blob(s) + {trees} tree node(s) + {roots} \
         conditional PUT(s) of the root -> {}",
        if writes as usize == minimum {
            "PASS"
        } else {
            "MISS"
        }
    );
    println!(
        "- reads and probes beyond that: {} ({} HEAD, {} GET, {} LIST)",
        counts.reads() + counts.list,
        counts.head,
        counts.get + counts.get_range,
        counts.list
    );
    println!("- HTTP requests seen by the proxy: {}", http.len());
    println!();
    println!("```text");
    for r in &log {
        println!("{:<14} {}", r.kind.name(), shorten(&r.key));
    }
    println!("-- HTTP --");
    for line in &http {
        // Drop the bucket, the protocol and the SDK's x-id noise, keep method and key.
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("");
        let target = target.splitn(3, '/').nth(2).unwrap_or(target);
        let target = target
            .replace("&x-id=", " x-id=")
            .replace("?x-id=", " x-id=");
        println!("{method:<6} {}", shorten(&target));
    }
    println!("```");
}

/// Shortens 64-hex hashes and staging ids so that the log stays readable.
fn shorten(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in s.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        flush_hex(&mut out, &mut run);
        out.push(c);
    }
    flush_hex(&mut out, &mut run);
    out
}

fn flush_hex(out: &mut String, run: &mut String) {
    if run.len() >= 24 {
        out.push_str(&run[..8]);
        out.push('…');
    } else {
        out.push_str(run);
    }
    run.clear();
}

async fn requests_per_commit(moto_port: u16) {
    println!();
    println!("### Requests per commit on S3 (CountingBackend around S3Backend, HTTP via a logging proxy)");
    let proxy = proxy::Proxy::start(moto_port, proxy::Fault::None);
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let mut config = moto::bench_bucket(&endpoint).await;
    config.endpoint = Some(proxy.endpoint());
    let s3 = S3Backend::connect(config)
        .await
        .expect("connecting through the proxy");
    let shared: Arc<dyn ObjectBackend> = Arc::new(s3);
    let counting: CountingBackend = CountingBackend::with_log(shared);
    let store = Store::new(Arc::new(counting.clone()), StoreOptions::default());
    let mut rng = FastRng::new(0xc0417);

    // Warm up: a few versions exist and this handle knows the head (a long-running
    // writer), and the next versions are not multiples of the hint interval (32).
    for i in 0..3 {
        let p = StoragePath::new("c", StorageBackend::Tantivy, "s0", format!("warm{i}"));
        store
            .write_bytes(&p, Bytes::from(rng.bytes(10_000)))
            .await
            .unwrap();
    }

    let small = StoragePath::new("c", StorageBackend::Tantivy, "s0", "meta.json");
    measure(
        "single small write (200 B, inline in the page)",
        &counting,
        &proxy,
        || async {
            store
                .write_bytes(&small, Bytes::from(rng.bytes(200)))
                .await
                .unwrap();
        },
    )
    .await;

    let large = StoragePath::new("c", StorageBackend::Tantivy, "s0", "seg.store");
    let data = Bytes::from(rng.bytes(LARGE_FILE));
    measure(
        "single large write (16 MiB, Store::write_bytes: one PutObject)",
        &counting,
        &proxy,
        || async {
            store.write_bytes(&large, data).await.unwrap();
        },
    )
    .await;

    let large2 = StoragePath::new("c", StorageBackend::Vector, "s0", "hnsw.bin");
    let data = Bytes::from(rng.bytes(LARGE_FILE));
    measure(
        "single large write (16 MiB, Store::write_stream: multipart upload)",
        &counting,
        &proxy,
        || async {
            store.write_stream(&large2, &data[..]).await.unwrap();
        },
    )
    .await;

    let files: Vec<Bytes> = (0..10).map(|_| Bytes::from(rng.bytes(64 * 1024))).collect();
    measure(
        "10-file transaction (10 x 64 KiB, one shard)",
        &counting,
        &proxy,
        || async {
            let mut tx = store.transaction("c").await.unwrap();
            for (i, data) in files.into_iter().enumerate() {
                let p = StoragePath::new("c", StorageBackend::Tantivy, "s1", format!("seg_7.f{i}"));
                tx.put(&p, data).await.unwrap();
            }
            tx.commit().await.unwrap();
        },
    )
    .await;

    let fresh_store = Store::new(Arc::new(counting.clone()), StoreOptions::default());
    measure(
        "same small write from a fresh handle (head unknown: hint + probes)",
        &counting,
        &proxy,
        || async {
            fresh_store
                .write_bytes(&small, Bytes::from(rng.bytes(200)))
                .await
                .unwrap();
        },
    )
    .await;
}
