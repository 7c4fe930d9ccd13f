//! Soak test of S3 under HTTP faults: several writers, each its own connection (as
//! separate machines would be), commit random changes to one collection through a
//! loopback proxy in front of moto that injects 500s, 503 SlowDowns, connection resets,
//! stalls past the client's timeout and lost answers, at a random rate, some after the
//! server applied the request and some stalls applied only after the client gave up. Afterwards, with the faults off:
//!
//! - the history is linear and no commit id appears twice;
//! - every version is exactly one writer's operation, each operation appears at most
//!   once, in the order its writer made them;
//! - every acknowledged commit is there, at the version it was acknowledged with, and
//!   reads back its exact bytes;
//! - a commit that failed with `CommitOutcomeUnknown` is resolved by reading its version
//!   and comparing commit ids, and the history agrees; any other error means the commit
//!   did not happen, and it is indeed absent;
//! - reads made during the faults returned the right bytes or an error;
//! - verify finds nothing missing or corrupt, and GC removes every orphan.
//!
//! `SEGSTORE_S3_FAULTS` is the number of faults to inject (default 200; the long run uses
//! 10,000), `SEGSTORE_S3_FAULT_RATE` the share of requests faulted (default 0.2), and
//! `SEGSTORE_S3_FAULT_WRITERS` the number of writers (default 4).

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::manifest::CommitId;
use segstore::{BlobId, Error, S3Config, S3Storage, SegmentStorage, StorageBackend, StoragePath};
use support::child::env_or;
use support::history::linear_history;
use support::moto;
use support::proxy::{Fault, FaultKind, Proxy};

const COLLECTION: &str = "soak";

fn path(writer: usize, name: &str) -> StoragePath {
    StoragePath::new(
        COLLECTION,
        StorageBackend::Tantivy,
        format!("w{writer}"),
        name.to_owned(),
    )
}

/// Unique bytes for operation `i` of `writer`; every fourth one is blob-sized (above the
/// inline limit), so blob uploads meet the faults too.
fn content(writer: usize, i: usize, rng: &mut StdRng) -> Vec<u8> {
    let tag = format!("writer {writer} op {i};");
    let len = if rng.random_ratio(1, 4) {
        5000 + rng.random_range(0..3000)
    } else {
        tag.len() + rng.random_range(0..40)
    };
    tag.bytes().cycle().take(len).collect()
}

#[derive(Debug, Clone)]
enum Op {
    Write { path: StoragePath, data: Vec<u8> },
    Rename { from: StoragePath, to: StoragePath },
    Delete { path: StoragePath },
}

#[derive(Debug)]
enum Outcome {
    Acked(u64),
    Unknown { version: u64, commit_id: CommitId },
    Failed(String),
}

#[derive(Debug)]
struct Logged {
    writer: usize,
    index: usize,
    op: Op,
    outcome: Outcome,
}

/// What one writer did.
#[derive(Default)]
struct WriterLog {
    ops: Vec<Logged>,
    reads_ok: u64,
    reads_failed: u64,
}

async fn run_writer(
    writer: usize,
    store: S3Storage,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> WriterLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = WriterLog::default();
    // Paths whose content this writer knows for sure: the last commit touching them was
    // acknowledged. A path touched by a failed commit is never touched again, so that every
    // operation changes something and can be told apart in the history.
    let mut known: BTreeMap<StoragePath, Vec<u8>> = BTreeMap::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let pick = rng.random_range(0..100);
        let target = (!known.is_empty())
            .then(|| known.keys().nth(rng.random_range(0..known.len())).cloned())
            .flatten();
        let op = match (pick, target) {
            (50..70, Some(p)) => Op::Write {
                path: p,
                data: content(writer, i, &mut rng),
            },
            (70..85, Some(p)) => Op::Rename {
                from: p,
                to: path(writer, &format!("r{i}")),
            },
            (85..100, Some(p)) => Op::Delete { path: p },
            _ => Op::Write {
                path: path(writer, &format!("f{i}")),
                data: content(writer, i, &mut rng),
            },
        };
        let result = match &op {
            Op::Write { path, data } => store.store().write_bytes(path, data.clone().into()).await,
            Op::Rename { from, to } => store.store().rename(from, to).await,
            Op::Delete { path } => store.store().delete(path).await,
        };
        let outcome = match result {
            Ok(info) => {
                assert!(
                    info.created,
                    "writer {writer} op {i} changed nothing: {op:?}"
                );
                match &op {
                    Op::Write { path, data } => {
                        known.insert(path.clone(), data.clone());
                    }
                    Op::Rename { from, to } => {
                        let data = known.remove(from).expect("renamed a known path");
                        known.insert(to.clone(), data);
                    }
                    Op::Delete { path } => {
                        known.remove(path);
                    }
                }
                Outcome::Acked(info.version)
            }
            Err(e) => {
                let (Op::Write { path, .. } | Op::Rename { from: path, .. } | Op::Delete { path }) =
                    &op;
                known.remove(path);
                match e {
                    Error::CommitOutcomeUnknown {
                        version, commit_id, ..
                    } => Outcome::Unknown { version, commit_id },
                    other => Outcome::Failed(other.to_string()),
                }
            }
        };
        log.ops.push(Logged {
            writer,
            index: i,
            op,
            outcome,
        });
        // Reads under faults: the right bytes or an error, never other bytes.
        if let Some((p, want)) = known.iter().nth(rng.random_range(0..known.len().max(1))) {
            match store.read(p).await {
                Ok(got) => {
                    assert_eq!(&got, want, "writer {writer} read wrong bytes of {p}");
                    log.reads_ok += 1;
                }
                Err(_) => log.reads_failed += 1,
            }
        }
        i += 1;
    }
    log
}

/// Which operation a version is, if it is exactly one of `ops`.
struct Index<'a> {
    by_content: HashMap<(StoragePath, BlobId), &'a Logged>,
    by_rename_target: HashMap<StoragePath, &'a Logged>,
    by_deleted: HashMap<StoragePath, &'a Logged>,
}

impl<'a> Index<'a> {
    fn new(logs: &'a [WriterLog]) -> Self {
        let mut index = Index {
            by_content: HashMap::new(),
            by_rename_target: HashMap::new(),
            by_deleted: HashMap::new(),
        };
        for logged in logs.iter().flat_map(|l| &l.ops) {
            let fresh = match &logged.op {
                Op::Write { path, data } => index
                    .by_content
                    .insert((path.clone(), BlobId::of(data)), logged)
                    .is_none(),
                Op::Rename { to, .. } => {
                    index.by_rename_target.insert(to.clone(), logged).is_none()
                }
                Op::Delete { path } => index.by_deleted.insert(path.clone(), logged).is_none(),
            };
            assert!(fresh, "two operations look alike: {logged:?}");
        }
        index
    }

    fn identify(&self, diff: &segstore::Diff) -> Option<&'a Logged> {
        let after = |e: &segstore::DiffEntry| e.after.as_ref().map(|a| a.id);
        let before = |e: &segstore::DiffEntry| e.before.as_ref().map(|b| b.id);
        let found = match (&diff.added[..], &diff.changed[..], &diff.removed[..]) {
            ([e], [], []) | ([], [e], []) => {
                self.by_content.get(&(e.path.clone(), after(e)?)).copied()?
            }
            ([added], [], [removed]) => {
                let logged = self.by_rename_target.get(&added.path).copied()?;
                match &logged.op {
                    Op::Rename { from, .. }
                        if *from == removed.path && after(added) == before(removed) =>
                    {
                        logged
                    }
                    _ => return None,
                }
            }
            ([], [], [removed]) => self.by_deleted.get(&removed.path).copied()?,
            _ => return None,
        };
        Some(found)
    }
}

fn soak_config(endpoint: &str, bucket: &str) -> S3Config {
    let mut config = moto::config_for(endpoint, bucket);
    // Stalls cost this much each; moto answers in milliseconds.
    config.operation_timeout = Duration::from_millis(800);
    config.connect_timeout = Duration::from_secs(1);
    config.max_attempts = 3;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_random_http_faults() {
    let target = env_or("SEGSTORE_S3_FAULTS", 200) as u64;
    let writers = env_or("SEGSTORE_S3_FAULT_WRITERS", 4);
    let rate: f64 = std::env::var("SEGSTORE_S3_FAULT_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.2);
    let Some(server) = moto::server() else { return };
    let Some(direct) = moto::fresh_bucket().await else {
        return;
    };
    let started = Instant::now();
    let proxy = Proxy::start(server.port, Fault::None);
    let mut stores = Vec::new();
    for _ in 0..writers {
        let config = soak_config(&proxy.endpoint(), &direct.bucket);
        stores.push(
            S3Storage::connect_with(config, support::fast_options())
                .await
                .unwrap(),
        );
    }
    proxy.set_fault(Fault::Random {
        rate,
        conditional_rate: (rate * 2.0).min(0.6),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let handles: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            tokio::spawn(run_writer(
                w,
                store,
                stop.clone(),
                seed.wrapping_add(w as u64),
            ))
        })
        .collect();
    let mut last_report = Instant::now();
    while proxy.counts().total() < target {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_report.elapsed() > Duration::from_secs(30) {
            println!("progress: {}", proxy.counts());
            last_report = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for h in handles {
        logs.push(h.await.unwrap());
    }
    proxy.set_fault(Fault::None);
    proxy.wait_for_late_requests();
    let counts = proxy.counts();
    println!("injected: {counts}");
    for kind in FaultKind::ALL {
        if target >= 100 {
            assert!(
                counts.by_kind[kind as usize] > 0,
                "no {kind:?} was injected: {counts}"
            );
        }
    }

    // Check through a clean connection straight to moto.
    let checker = S3Storage::connect_with(direct, support::fast_options())
        .await
        .unwrap();
    let store = checker.store();
    let history = linear_history(store, COLLECTION).await;
    let index = Index::new(&logs);
    let mut landed: HashMap<(usize, usize), u64> = HashMap::new();
    let mut last_of_writer: HashMap<usize, usize> = HashMap::new();
    for version in &history {
        let v = version.root.version;
        let logged = index
            .identify(&version.diff)
            .unwrap_or_else(|| panic!("version {v} is no single operation: {:?}", version.diff));
        assert!(
            landed.insert((logged.writer, logged.index), v).is_none(),
            "operation {} of writer {} landed twice (again at version {v})",
            logged.index,
            logged.writer
        );
        if let Some(previous) = last_of_writer.insert(logged.writer, logged.index) {
            assert!(
                previous < logged.index,
                "writer {}'s operations landed out of order at version {v}",
                logged.writer
            );
        }
        // Every commit's content reads back exactly, at its own version.
        if let Op::Write { data, .. } = &logged.op {
            let entry = version
                .diff
                .added
                .iter()
                .chain(&version.diff.changed)
                .next();
            let entry = entry.and_then(|e| e.after.clone()).expect("written entry");
            let got = store.read_entry(&entry).await.unwrap();
            assert_eq!(got, data[..], "version {v}: content");
        }
    }

    let (mut acked, mut unknown_won, mut unknown_lost, mut failed) = (0, 0, 0, 0);
    for logged in logs.iter().flat_map(|l| &l.ops) {
        let at = landed.get(&(logged.writer, logged.index)).copied();
        let what = format!("writer {} op {}", logged.writer, logged.index);
        match &logged.outcome {
            Outcome::Acked(v) => {
                assert_eq!(at, Some(*v), "{what}: acknowledged at version {v}");
                acked += 1;
            }
            Outcome::Unknown { version, commit_id } => {
                let won = match store.root_at(COLLECTION, *version).await {
                    Ok(root) => root.commit_id == *commit_id,
                    Err(Error::NotFound { .. }) => false,
                    Err(e) => panic!("{what}: resolving: {e}"),
                };
                if won {
                    assert_eq!(at, Some(*version), "{what}: resolved as committed");
                    unknown_won += 1;
                } else {
                    assert_eq!(at, None, "{what}: resolved as not committed");
                    unknown_lost += 1;
                }
            }
            Outcome::Failed(error) => {
                assert_eq!(
                    at, None,
                    "{what} failed ({error}) but landed: an error other than \
                     CommitOutcomeUnknown must mean the commit did not happen"
                );
                failed += 1;
            }
        }
    }
    let latest = checker.head(COLLECTION).await.unwrap().version;
    let (reads_ok, reads_failed) = logs
        .iter()
        .fold((0, 0), |(o, f), l| (o + l.reads_ok, f + l.reads_failed));
    println!(
        "{} versions; commits acknowledged {acked}, unknown then resolved committed \
         {unknown_won} / not committed {unknown_lost}, failed {failed}; reads during faults \
         ok {reads_ok}, failed {reads_failed}",
        latest
    );
    assert!(acked > 0, "nothing was acknowledged");

    // The final state is every file with its bytes; verify and GC clean up.
    let report = store.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.is_healthy(), "verify: {report:?}");
    let orphans = report.orphans.len();
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let gc = GcOptions {
        retention: RetentionPolicy::keep_all(),
        grace: Duration::from_secs(3),
        dry_run: false,
        progress: None,
        collection_retention: Default::default(),
    };
    let gc_report = store.gc(&gc).await.unwrap();
    assert!(gc_report.failures.is_empty(), "gc: {gc_report:?}");
    let report = store.verify(&VerifyOptions::default()).await.unwrap();
    assert!(
        report.is_healthy() && report.orphans.is_empty(),
        "after GC: {report:?}"
    );
    println!(
        "verify: healthy, {orphans} orphans before GC, none after; wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
