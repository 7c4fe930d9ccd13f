//! Crash-point testing: random workloads, each re-run with a crash injected at every
//! backend operation (or a sample of them), with the crashed operation either dropped or
//! applied. After "restarting" on what storage holds:
//!
//! - every acknowledged commit reads back its exact bytes;
//! - no partial commit is visible: the state is the acknowledged one, or that plus the one
//!   commit in flight at the crash, never a mix;
//! - verify finds nothing missing or corrupt, only orphans, and GC removes those.
//!
//! Scale with `SEGSTORE_CRASH_CASES` (workloads) and `SEGSTORE_CRASH_POINTS` (crash points
//! sampled per workload; 0 means all).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use segstore::backend::fault::{Fault, FaultBackend};
use segstore::backend::memory::MemoryBackend;
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::{Error, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions};

#[derive(Debug, Clone)]
enum Step {
    Write(u8, u8),
    Delete(u8),
    Rename(u8, u8),
    Batch(Vec<(u8, u8)>),
}

fn path(i: u8) -> StoragePath {
    StoragePath::new(
        "c",
        StorageBackend::Tantivy,
        ["s0", "s1"][i as usize % 2],
        format!("f{}", i % 5),
    )
}

fn data(seed: u8) -> Bytes {
    // Sizes on both sides of the inline threshold, and repeated contents (dedup).
    let len = [10usize, 5000, 70_000][seed as usize % 3];
    Bytes::from(
        (0..len)
            .map(|i| (i as u8) ^ (seed % 4))
            .collect::<Vec<u8>>(),
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..10u8, any::<u8>()).prop_map(|(p, d)| Step::Write(p, d)),
        1 => (0..10u8).prop_map(Step::Delete),
        2 => (0..10u8, 0..10u8).prop_map(|(a, b)| Step::Rename(a, b)),
        1 => prop::collection::vec((0..10u8, any::<u8>()), 1..4).prop_map(Step::Batch),
    ]
}

type Model = BTreeMap<StoragePath, Bytes>;

fn apply(model: &mut Model, step: &Step) {
    match step {
        Step::Write(p, d) => {
            model.insert(path(*p), data(*d));
        }
        Step::Delete(p) => {
            model.remove(&path(*p));
        }
        Step::Rename(a, b) => {
            if let Some(v) = model.remove(&path(*a)) {
                model.insert(path(*b), v);
            }
        }
        Step::Batch(puts) => {
            for (p, d) in puts {
                model.insert(path(*p), data(*d));
            }
        }
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_writer_stall: Duration::from_millis(20),
        freshen_after: Duration::ZERO,
        version_min_age: Duration::ZERO,
        gc_delete_delay: Duration::from_millis(10),
        clock_margin: Duration::from_millis(2),
        ..StoreOptions::default()
    }
}

/// Runs the workload; returns how many steps were acknowledged before the first error.
async fn run(store: &Store, steps: &[Step], model: &Model) -> usize {
    let mut shadow = model.clone();
    for (i, s) in steps.iter().enumerate() {
        let result = match s {
            Step::Write(p, d) => store.write(&path(*p), &data(*d)).await,
            Step::Delete(p) => SegmentStorage::delete(store, &path(*p)).await,
            Step::Rename(a, b) => {
                if !shadow.contains_key(&path(*a)) {
                    apply(&mut shadow, s);
                    continue; // would be NotFound, not a crash: skip it
                }
                SegmentStorage::rename(store, &path(*a), &path(*b)).await
            }
            Step::Batch(puts) => {
                let tx = async {
                    let mut tx = store.transaction("c").await?;
                    for (p, d) in puts {
                        tx.put(&path(*p), data(*d)).await?;
                    }
                    tx.commit().await.map(|_| ())
                };
                tx.await
            }
        };
        if result.is_err() {
            return i;
        }
        apply(&mut shadow, s);
    }
    steps.len()
}

async fn state(store: &Store) -> Model {
    let mut out = Model::new();
    for backend in [StorageBackend::Tantivy] {
        let prefix = StoragePath::unsharded("c", backend, "");
        for p in store.list(&prefix).await.expect("list after recovery") {
            let bytes = store.read_bytes(&p).await.expect("read after recovery");
            out.insert(p, bytes);
        }
    }
    out
}

async fn check_crash_point(steps: &[Step], k: u64, applied: bool) -> Result<(), String> {
    let memory = MemoryBackend::new();
    let fault = FaultBackend::new(Arc::new(memory.clone()));
    fault.set_fault(Fault::CrashAt { op: k, applied });
    let store = Store::new(Arc::new(fault), options());
    let acked = run(&store, steps, &Model::new()).await;
    drop(store);

    let mut before = Model::new();
    let mut stripped = Vec::new();
    for s in &steps[..acked] {
        apply(&mut before, s);
        stripped.push(s.clone());
    }
    let mut after = before.clone();
    if let Some(inflight) = steps.get(acked) {
        apply(&mut after, inflight);
    }
    let recovered = Store::new(Arc::new(memory.clone()), options());
    let got = state(&recovered).await;
    if got != before && got != after {
        return Err(format!(
            "crash at op {k} (applied: {applied}) after {acked} acknowledged steps: state matches neither the acknowledged state nor it plus the step in flight"
        ));
    }
    let report = recovered
        .verify(&VerifyOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    if !report.is_healthy() {
        return Err(format!("crash at op {k}: verify found damage: {report:?}"));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let gc = GcOptions {
        retention: RetentionPolicy::keep_all(),
        grace: Duration::from_millis(25),
        dry_run: false,
        progress: None,
        collection_retention: Default::default(),
    };
    recovered.gc(&gc).await.map_err(|e| e.to_string())?;
    let report = recovered
        .verify(&VerifyOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    if !report.is_healthy() || !report.orphans.is_empty() {
        return Err(format!("crash at op {k}: after GC: {report:?}"));
    }
    if state(&recovered).await != got {
        return Err(format!("crash at op {k}: GC changed the visible state"));
    }
    Ok(())
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_crash_point_recovers_to_an_acknowledged_state() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let points = env_u32("SEGSTORE_CRASH_POINTS", 24);
    let mut runner = TestRunner::new(Config {
        cases: env_u32("SEGSTORE_CRASH_CASES", 12),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/crash_points.txt",
        ))),
        ..Config::default()
    });
    let total = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(
            &(prop::collection::vec(step(), 1..12), any::<u64>()),
            |(steps, seed)| {
                rt.block_on(async {
                    // Count the operations of a clean run.
                    let memory = MemoryBackend::new();
                    let counter = FaultBackend::new(Arc::new(memory));
                    let store = Store::new(Arc::new(counter.clone()), options());
                    run(&store, &steps, &Model::new()).await;
                    let n = counter.ops();
                    let chosen: Vec<u64> = if points == 0 || n <= points as u64 {
                        (0..n).collect()
                    } else {
                        (0..points as u64)
                            .map(|i| (seed.wrapping_add(i * 7919)) % n)
                            .collect()
                    };
                    for k in chosen {
                        for applied in [false, true] {
                            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            check_crash_point(&steps, k, applied)
                                .await
                                .map_err(TestCaseError::fail)?;
                        }
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
    println!("crash points checked: {}", total.into_inner());
}

#[test]
fn a_failed_operation_leaves_no_trace_and_the_store_keeps_working() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let memory = MemoryBackend::new();
        let fault = FaultBackend::new(Arc::new(memory.clone()));
        let store = Store::new(Arc::new(fault.clone()), StoreOptions::default());
        store.write(&path(0), &data(1)).await.unwrap();
        let mut failures = 0;
        for k in 0..12 {
            let before = store.read(&path(1)).await.ok();
            fault.set_fault(Fault::FailAt(k));
            let result = store.write(&path(1), &data(k as u8)).await;
            fault.set_fault(Fault::None);
            let now = store.read(&path(1)).await.ok();
            match result {
                Ok(()) => assert_eq!(now, Some(data(k as u8).to_vec())),
                Err(_) => {
                    failures += 1;
                    // All or nothing: the old content, or (a commit whose answer was
                    // lost, settled by reading back) the new one.
                    assert!(now == before || now == Some(data(k as u8).to_vec()));
                }
            }
            // The store is still consistent and usable after every injected failure.
            assert_eq!(store.read(&path(0)).await.unwrap(), data(1).to_vec());
            store.write(&path(2), &data(k as u8)).await.unwrap();
        }
        assert!(
            failures > 0,
            "some injected failures must hit the write path"
        );
        fault.set_latency(Some(Duration::from_millis(1)));
        store.write(&path(3), b"slow").await.unwrap();
        assert_eq!(store.read(&path(3)).await.unwrap(), b"slow");
    });
}

/// A commit's error is a promise: `CommitOutcomeUnknown` says "read version N and compare
/// commit ids", and every other error says "this commit did not happen". Checked with a
/// failure (and a crash after storage applied the operation) at every operation of a
/// commit, including the retention-boundary read made after winning, which once reported
/// a plain error for a commit that had landed.
#[test]
fn commit_errors_say_truthfully_whether_the_commit_happened() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut unknown, mut not_committed) = (0, 0);
        for applied in [false, true] {
            for k in 0.. {
                let memory = MemoryBackend::new();
                let fault = FaultBackend::new(Arc::new(memory.clone()));
                // Every commit reads the retention boundary; no stall limit to trip on a
                // busy machine.
                let options = StoreOptions {
                    version_min_age: Duration::ZERO,
                    ..StoreOptions::default()
                };
                let store = Store::new(Arc::new(fault.clone()), options.clone());
                store.write(&path(0), &data(1)).await.unwrap();
                fault.set_fault(if applied {
                    Fault::CrashAt { op: k, applied }
                } else {
                    Fault::FailAt(k)
                });
                let result = store.write_bytes(&path(1), data(2)).await;
                let reached = fault.ops() > k;
                fault.set_fault(Fault::None);
                let recovered = Store::new(Arc::new(memory.clone()), options);
                let landed = recovered.read(&path(1)).await.ok() == Some(data(2).to_vec());
                match result {
                    Ok(info) => {
                        assert!(landed, "k {k}: acknowledged but absent");
                        assert_eq!(info.version, 2);
                    }
                    Err(Error::CommitOutcomeUnknown {
                        version, commit_id, ..
                    }) => {
                        let won = recovered
                            .root_at("c", version)
                            .await
                            .is_ok_and(|r| r.commit_id == commit_id);
                        assert_eq!(won, landed, "k {k} applied {applied}: resolved by id");
                        unknown += 1;
                    }
                    Err(e) => {
                        assert!(
                            !landed,
                            "k {k} applied {applied}: error {e} but the commit happened"
                        );
                        not_committed += 1;
                    }
                }
                if !reached {
                    break;
                }
            }
        }
        assert!(
            unknown > 0 && not_committed > 0,
            "{unknown} {not_committed}"
        );
    });
}

/// A full disk at any operation of a commit reaches the caller as `StorageFull` (a typed,
/// definite error), never as an unknown outcome, and the commit is absent.
#[test]
fn a_full_disk_during_a_commit_is_reported_as_storage_full() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut full = 0;
        for k in 0.. {
            let memory = MemoryBackend::new();
            let fault = FaultBackend::new(Arc::new(memory.clone()));
            let store = Store::new(Arc::new(fault.clone()), StoreOptions::default());
            store.write(&path(0), &data(1)).await.unwrap();
            fault.set_fault(Fault::FullFrom(k));
            let result = store.write_bytes(&path(1), data(2)).await;
            let reached = fault.ops() > k;
            fault.set_fault(Fault::None);
            // The space comes back: the store must work again with nothing half-done.
            let after = store.write_bytes(&path(2), data(3)).await;
            let recovered = Store::new(Arc::new(memory.clone()), StoreOptions::default());
            let landed = recovered.read(&path(1)).await.ok() == Some(data(2).to_vec());
            match result {
                Ok(_) => assert!(landed, "k {k}: acknowledged but absent"),
                Err(Error::StorageFull { .. }) => {
                    assert!(!landed, "k {k}: StorageFull but the commit happened");
                    full += 1;
                }
                Err(e) => panic!("k {k}: a full disk surfaced as {e:?}"),
            }
            after.unwrap_or_else(|e| panic!("k {k}: no recovery once space is back: {e}"));
            if !reached {
                break;
            }
        }
        assert!(full > 0, "no operation of the commit saw the full disk");
    });
}
