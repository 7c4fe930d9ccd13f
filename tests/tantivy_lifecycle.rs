//! Tantivy commits interleaved with the store's lifecycle: a real `IndexWriter` (with
//! background merges) indexes and commits through the adapter while, in the middle of its
//! commits, time jumps by minutes to hours and another process runs GC with retention or
//! creates and deletes snapshots.
//!
//! The lifecycle steps fire from inside the backend, at seeded writes of blobs: tantivy has
//! terminated some segment files of a commit and not yet written `meta.json`, which is the
//! schedule where a GC can sweep files a commit is about to reference (scenario 2 of the
//! lifecycle issue). Time is real time plus the schedule's jumps, one clock shared by every
//! store and the backend, so ages are what the schedule says, give or take seconds.
//!
//! The oracle, after every tantivy commit: a fresh process opens the index and sees exactly
//! the documents of the acknowledged commits, reads every stored document, and `verify`
//! finds every retained version whole. A commit may fail (`ReferenceGone`, a conflict with
//! a merge): then the writer is reopened and its uncommitted documents are not counted.
//!
//! `SEGSTORE_TANTIVY_LIFECYCLE_SEEDS=<n>` runs seeds `0..n` (default 12);
//! `SEGSTORE_TANTIVY_LIFECYCLE_SEED=<k>` runs one seed and prints its trace.

#[path = "support/hooked.rs"]
mod hooked;
mod tantivy_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hooked::{Hooked, Hooks};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segstore::backend::memory::MemoryBackend;
use segstore::clock::Clock;
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::{SegmentStorage, Store, StoreOptions, TantivyStorageAdapter};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::AllQuery;
use tantivy::{Index, IndexSettings, IndexWriter, TantivyDocument};
use tantivy_support::{add_long_docs, block, schema, Fields, COLLECTION, SHARD};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Real time plus jumps the test makes: the protocol's short real waits (the GC delete
/// delay) pass as they would, and hours pass when the schedule says so.
#[derive(Debug)]
struct ManualClock {
    start: SystemTime,
    real_origin: Duration,
    elapsed_ms: AtomicU64,
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.start + self.monotonic()
    }

    fn monotonic(&self) -> Duration {
        let real = segstore::clock::system().monotonic() - self.real_origin;
        real + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }
}

/// The production settings on the hand-moved clock, except the GC delete delay and the
/// clock margin: a GC run and a confirming writer wait for those in real time, and the
/// clock does not move while they wait.
fn options(clock: &Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        clock: clock.clone(),
        gc_delete_delay: Duration::from_millis(50),
        clock_margin: Duration::from_millis(5),
        ..StoreOptions::default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Time passes, nothing else.
    Wait,
    /// GC with retention keeping the last `n` versions.
    Gc(u64),
    /// A snapshot of the latest version.
    Pin,
    /// The oldest snapshot is deleted.
    Unpin,
}

/// What the schedule of one seed shares between the writer and the lifecycle process.
#[derive(Debug)]
struct World {
    clock: Arc<ManualClock>,
    rng: Mutex<StdRng>,
    trace: Mutex<Vec<String>>,
    snapshots: Mutex<(u32, Vec<String>)>,
    /// The chance that a blob write of the writer lets a lifecycle step happen first.
    chance: f64,
}

impl World {
    fn log(&self, line: String) {
        self.trace.lock().unwrap().push(line);
    }
}

/// The writer's backend's hooks: at seeded blob writes, time moves and a lifecycle step of
/// another process (on `plain`, the writer's memory backend) runs before the write goes on.
#[derive(Debug, Clone)]
struct Interleaved {
    plain: MemoryBackend,
    world: Arc<World>,
}

#[async_trait]
impl Hooks for Interleaved {
    fn name(&self) -> &'static str {
        "interleaved"
    }
    async fn before_put(&self, key: &str) {
        self.before_write(key);
    }
    async fn before_create(&self, key: &str) {
        self.before_write(key);
    }
    async fn before_upload(&self) {
        // Streamed files become blobs when they finish: the step happens before they start.
        self.before_write("blobs/ (a streamed upload)");
    }
}

impl Interleaved {
    fn before_write(&self, key: &str) {
        // The step runs on a thread of its own, and the write waits for it; only a
        // multi-thread runtime (the adapter's) may block a worker so.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread || !key.starts_with("blobs/") {
            return;
        }
        let (advance, step) = {
            let mut rng = self.world.rng.lock().unwrap();
            if !rng.random_bool(self.world.chance) {
                return;
            }
            let advance = [
                Duration::ZERO,
                5 * MIN,
                25 * MIN,
                45 * MIN,
                2 * HOUR,
                7 * HOUR,
            ][rng.random_range(0..6)];
            let step = match rng.random_range(0..8) {
                0 => Step::Wait,
                1..=4 => Step::Gc(rng.random_range(1..=3)),
                5 | 6 => Step::Pin,
                _ => Step::Unpin,
            };
            (advance, step)
        };
        self.world.clock.advance(advance);
        let plain = self.plain.clone();
        let world = self.world.clone();
        let outcome = tokio::task::block_in_place(|| {
            std::thread::spawn(move || block(lifecycle_step(plain, world, step)))
                .join()
                .expect("the lifecycle step panicked")
        });
        if matches!(step, Step::Gc(_)) {
            // Past the run's lease: writers need not wait for it.
            self.world
                .clock
                .advance(options(&self.world.clock).gc_lease + MIN);
        }
        self.world
            .log(format!("before {key}: +{advance:?}, {step:?} -> {outcome}"));
    }
}

/// One lifecycle step, as another process does it: its own store on the plain backend.
async fn lifecycle_step(inner: MemoryBackend, world: Arc<World>, step: Step) -> String {
    let store = Store::new(Arc::new(inner), options(&world.clock));
    match step {
        Step::Wait => "waited".to_owned(),
        Step::Gc(keep) => {
            let gc = GcOptions {
                retention: RetentionPolicy {
                    keep_last: Some(keep),
                    keep_within: None,
                    ..RetentionPolicy::keep_all()
                },
                ..GcOptions::default()
            };
            match store.gc(&gc).await {
                Ok(r) => format!(
                    "gc: {} versions, {} blobs, {} tree nodes deleted",
                    r.versions_deleted, r.blobs_deleted, r.trees_deleted
                ),
                Err(e) => format!("gc failed: {e}"),
            }
        }
        Step::Pin => {
            let name = {
                let mut s = world.snapshots.lock().unwrap();
                s.0 += 1;
                format!("s{}", s.0)
            };
            match store.create_snapshot(COLLECTION, &name, None, None).await {
                Ok(s) => {
                    world.snapshots.lock().unwrap().1.push(name.clone());
                    format!("snapshot {name} of v{}", s.version)
                }
                Err(e) => format!("snapshot {name} failed: {e}"),
            }
        }
        Step::Unpin => {
            let name = {
                let mut s = world.snapshots.lock().unwrap();
                if s.1.is_empty() {
                    return "no snapshot to delete".to_owned();
                }
                s.1.remove(0)
            };
            match store.delete_snapshot(COLLECTION, &name).await {
                Ok(()) => format!("snapshot {name} deleted"),
                Err(e) => format!("deleting snapshot {name} failed: {e}"),
            }
        }
    }
}

fn open_index(store: &Store) -> tantivy::Result<Index> {
    let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
    let adapter = block(TantivyStorageAdapter::open(shared, COLLECTION, SHARD))
        .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
    Index::open(adapter)
}

fn new_writer(index: &Index) -> IndexWriter {
    let writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    let mut policy = tantivy::merge_policy::LogMergePolicy::default();
    policy.set_min_num_segments(2);
    writer.set_merge_policy(Box::new(policy));
    writer
}

/// What a fresh process sees: the acknowledged documents, all readable, and every retained
/// version whole.
fn check(
    inner: &MemoryBackend,
    clock: &Arc<ManualClock>,
    committed: u64,
) -> std::result::Result<(), String> {
    let store = Store::new(Arc::new(inner.clone()), options(clock));
    let index = open_index(&store).map_err(|e| format!("a fresh process cannot open: {e}"))?;
    let reader = index.reader().map_err(|e| format!("no reader: {e}"))?;
    let searcher = reader.searcher();
    let count = searcher
        .search(&AllQuery, &Count)
        .map_err(|e| format!("search failed: {e}"))?;
    if count as u64 != committed {
        return Err(format!("{count} documents found, {committed} acknowledged"));
    }
    let top = searcher
        .search(
            &AllQuery,
            &TopDocs::with_limit(committed as usize + 1).order_by_score(),
        )
        .map_err(|e| format!("search failed: {e}"))?;
    for (_, address) in top {
        searcher
            .doc::<TantivyDocument>(address)
            .map_err(|e| format!("a stored document is unreadable: {e}"))?;
    }
    let report = block(store.verify(&VerifyOptions::default()))
        .map_err(|e| format!("verify failed: {e}"))?;
    if !report.is_healthy() {
        return Err(format!("verify: {report:?}"));
    }
    Ok(())
}

/// One schedule; `Err` holds the violation and the trace.
fn run_seed(seed: u64) -> std::result::Result<Vec<String>, (String, Vec<String>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = Arc::new(ManualClock {
        start: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        real_origin: segstore::clock::system().monotonic(),
        elapsed_ms: AtomicU64::new(0),
    });
    let world = Arc::new(World {
        clock: clock.clone(),
        rng: Mutex::new(StdRng::seed_from_u64(rng.random())),
        trace: Mutex::default(),
        snapshots: Mutex::default(),
        chance: [0.05, 0.15, 0.3][rng.random_range(0..3)],
    });
    let inner = MemoryBackend::with_clock(clock.clone());
    let backend = Hooked {
        inner: inner.clone(),
        hooks: Interleaved {
            plain: inner.clone(),
            world: world.clone(),
        },
    };
    let store = Store::new(Arc::new(backend), options(&clock));
    let (schema, fields) = schema();
    let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
    let adapter = block(TantivyStorageAdapter::open(shared, COLLECTION, SHARD)).unwrap();
    let mut index = Index::create(adapter, schema, IndexSettings::default()).unwrap();
    let mut writer = new_writer(&index);
    let fail = |why: String, world: &World| Err((why, world.trace.lock().unwrap().clone()));
    let mut committed = 0u64;
    let mut next_id = 0u64;
    let mut added = 0u64;
    for round in 0..ROUNDS {
        let n = rng.random_range(5..40);
        add(
            &writer,
            &fields,
            next_id..next_id + n,
            rng.random_range(0..3_000),
        );
        next_id += n;
        added += n;
        match writer.commit() {
            Ok(_) => {
                committed += added;
                added = 0;
                world.log(format!(
                    "round {round}: commit of {n} documents ok, {committed} in all"
                ));
            }
            Err(e) => {
                world.log(format!("round {round}: commit failed: {e}"));
                // Uncommitted documents are gone with the writer; a new one starts from
                // what the store holds.
                drop(writer);
                added = 0;
                index = match open_index(&store) {
                    Ok(index) => index,
                    Err(e) => return fail(format!("reopening after a failed commit: {e}"), &world),
                };
                writer = new_writer(&index);
            }
        }
        if let Err(why) = check(&inner, &clock, committed) {
            return fail(format!("after round {round}: {why}"), &world);
        }
    }
    if let Err(e) = writer.wait_merging_threads() {
        world.log(format!("merges ended with: {e}"));
    }
    if let Err(why) = check(&inner, &clock, committed) {
        return fail(format!("after the merges: {why}"), &world);
    }
    let trace = world.trace.lock().unwrap().clone();
    Ok(trace)
}

fn add(writer: &IndexWriter, fields: &Fields, ids: std::ops::Range<u64>, payload: usize) {
    add_long_docs(writer, fields, ids, payload);
}

const ROUNDS: usize = 12;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn tantivy_commits_survive_gc_retention_and_snapshots_between_their_files() {
    if let Some(seed) = env("SEGSTORE_TANTIVY_LIFECYCLE_SEED") {
        match run_seed(seed) {
            Ok(trace) => println!("{}", trace.join("\n")),
            Err((why, trace)) => panic!("seed {seed}: {why}\n{}", trace.join("\n")),
        }
        return;
    }
    let seeds = env("SEGSTORE_TANTIVY_LIFECYCLE_SEEDS").unwrap_or(12);
    let mut steps = 0;
    let mut failed_commits = 0;
    for seed in 0..seeds {
        match run_seed(seed) {
            Ok(trace) => {
                steps += trace.iter().filter(|l| l.starts_with("before")).count();
                failed_commits += trace.iter().filter(|l| l.contains("commit failed")).count();
            }
            Err((why, trace)) => {
                let tail: Vec<_> = trace.iter().rev().take(30).rev().cloned().collect();
                panic!(
                    "seed {seed}: {why}\nlast steps:\n{}\nreplay: \
                     SEGSTORE_TANTIVY_LIFECYCLE_SEED={seed} cargo test --test tantivy_lifecycle",
                    tail.join("\n")
                );
            }
        }
    }
    eprintln!(
        "{seeds} schedules of {ROUNDS} tantivy commits: {steps} lifecycle steps between \
         their files, {failed_commits} commits refused, no acknowledged document lost"
    );
    assert!(steps > 0, "no lifecycle step ran between tantivy's files");
}
