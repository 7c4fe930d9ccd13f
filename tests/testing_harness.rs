//! The crash harness users get with the `testing` feature (`segstore::testing`): a
//! proptest of random workloads, written as a Prism backend author would, and a proof
//! that the harness finds a workload that claims more than storage acknowledged.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use segstore::testing::{check_crash_points, CrashPoint};
use segstore::{Error, SegmentStorage, StorageBackend, StoragePath, Store, StoreOptions};

fn path(i: u8) -> StoragePath {
    StoragePath::new("c", StorageBackend::Graph, "s0", format!("edges_{}", i % 4))
}

fn data(seed: u8) -> Vec<u8> {
    // Inline and blob-sized contents.
    let len = [20usize, 9000][seed as usize % 2];
    vec![seed; len]
}

#[derive(Debug, Clone)]
enum Step {
    Write(u8, u8),
    Delete(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..4u8, any::<u8>()).prop_map(|(p, d)| Step::Write(p, d)),
        1 => (0..4u8).prop_map(Step::Delete),
    ]
}

/// What the workload saw acknowledged, and the step in flight when it stopped.
#[derive(Debug, Default)]
struct Seen {
    acknowledged: BTreeMap<u8, Option<Vec<u8>>>,
    in_flight: Option<(u8, Option<Vec<u8>>)>,
}

/// Runs `steps`, stopping at the first error. With `claim_early`, it records a write as
/// acknowledged before the store answers: the bug the harness must find.
async fn workload(store: Store, steps: Vec<Step>, claim_early: bool) -> Seen {
    let mut seen = Seen::default();
    for step in steps {
        let (p, value) = match &step {
            Step::Write(p, d) => (p % 4, Some(data(*d))),
            Step::Delete(p) => (p % 4, None),
        };
        if claim_early {
            seen.acknowledged.insert(p, value.clone());
        }
        let done = match &value {
            Some(bytes) => SegmentStorage::write(&store, &path(p), bytes).await,
            None => match SegmentStorage::delete(&store, &path(p)).await {
                Err(Error::NotFound { .. }) => Ok(()),
                other => other,
            },
        };
        if done.is_err() {
            seen.in_flight = Some((p, value));
            break;
        }
        seen.acknowledged.insert(p, value);
    }
    seen
}

/// After the restart each path holds its acknowledged value, or (the path of the step
/// in flight) the value it was being given.
async fn check(store: Store, seen: Seen, _point: CrashPoint) -> Result<(), String> {
    for (p, expected) in &seen.acknowledged {
        let found = match SegmentStorage::read(&store, &path(*p)).await {
            Ok(bytes) => Some(bytes),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(format!("reading {}: {e}", path(*p))),
        };
        let in_flight = seen
            .in_flight
            .as_ref()
            .filter(|(q, _)| q == p)
            .map(|(_, v)| v);
        if &found != expected && in_flight != Some(&found) {
            return Err(format!(
                "{} holds {:?} bytes, acknowledged {:?}",
                path(*p),
                found.as_ref().map(Vec::len),
                expected.as_ref().map(Vec::len)
            ));
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn random_workloads_survive_every_crash_point() {
    let checked = std::sync::atomic::AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 1..5), |steps| {
            let report = runtime()
                .block_on(check_crash_points(
                    StoreOptions::default(),
                    |store| workload(store, steps.clone(), false),
                    check,
                ))
                .map_err(|f| TestCaseError::fail(f.to_string()))?;
            prop_assert!(report.operations > 0);
            prop_assert_eq!(report.crash_points, 2 * report.operations);
            checked.fetch_add(report.crash_points, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    println!("{} crashed runs checked", checked.into_inner());
}

#[test]
fn a_workload_claiming_unacknowledged_writes_is_caught() {
    let steps = vec![Step::Write(0, 1), Step::Write(1, 2)];
    let found = runtime().block_on(check_crash_points(
        StoreOptions::default(),
        |store| workload(store, steps.clone(), true),
        check,
    ));
    let failure = found.expect_err("claiming a write before it returns must be caught");
    assert!(!failure.point.applied, "{failure}");
    assert!(failure.message.contains("acknowledged"), "{failure}");
}
