//! Test tools for code built on segstore (feature `testing`): the crash harness below, and
//! [`conformance`], the suite every `ObjectBackend` must
//! pass.
//!
//! # Crash-safety testing
//!
//! A Prism backend, or any code that keeps its own files in a [`Store`], can check that its
//! invariants survive a crash at every point of a workload:
//!
//! 1. the workload runs once on a store over [`MemoryBackend`], to count the backend
//!    operations it sends (`n`);
//! 2. for every `k < n`, and both ways (the crashed write dropped, or applied but never
//!    acknowledged), it runs again on a fresh store whose backend "dies" at operation `k`
//!    ([`Fault::CrashAt`]): that operation and every later one fail, as if the process
//!    were gone;
//! 3. a new [`Store`] opens on what storage holds (the restart), and the caller's check
//!    gets it together with what the workload returned (typically, what was acknowledged
//!    before the crash).
//!
//! The workload must tolerate errors (stop at the first, or carry on) and return what it
//! saw acknowledged; the check returns `Err(message)` for a broken invariant.
//!
//! ```
//! use std::collections::BTreeMap;
//! use segstore::testing::{check_crash_points, CrashPoint};
//! use segstore::{SegmentStorage, StorageBackend, StoragePath, StoreOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let path = |i: u32| StoragePath::new("c", StorageBackend::Vector, "s0", format!("f{i}"));
//! let report = check_crash_points(
//!     StoreOptions::default(),
//!     // The workload: three writes; it returns the ones acknowledged.
//!     |store| async move {
//!         let mut acked = BTreeMap::new();
//!         for i in 0..3u32 {
//!             let data = vec![i as u8; 100];
//!             match store.write(&path(i), &data).await {
//!                 Ok(()) => acked.insert(i, data),
//!                 Err(_) => break,
//!             };
//!         }
//!         acked
//!     },
//!     // After the restart, every acknowledged write reads back.
//!     |store, acked, _point: CrashPoint| async move {
//!         for (i, data) in acked {
//!             let found = store.read(&path(i)).await.map_err(|e| e.to_string())?;
//!             if found != data {
//!                 return Err(format!("f{i} lost its acknowledged bytes"));
//!             }
//!         }
//!         Ok(())
//!     },
//! )
//! .await
//! .unwrap();
//! assert!(report.crash_points > 0);
//! # }
//! ```
//!
//! `tests/testing_harness.rs` drives the harness from a proptest over random workloads.

pub mod conformance;

use std::future::Future;
use std::sync::Arc;

use crate::backend::fault::{Fault, FaultBackend};
use crate::backend::memory::MemoryBackend;
use crate::backend::ObjectBackend;
use crate::store::{Store, StoreOptions};

/// Where a run crashed: backend operation `op` (counted from the workload's start), its
/// write dropped or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPoint {
    /// The operation that did not return.
    pub op: u64,
    /// Whether storage took that operation's write before the process died.
    pub applied: bool,
}

/// What [`check_crash_points`] ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashReport {
    /// Backend operations the workload sent without a crash.
    pub operations: u64,
    /// Crashed runs checked (two per operation).
    pub crash_points: u64,
}

/// A broken invariant: where the run crashed and what the check said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashFailure {
    /// The crash (`op == u64::MAX`: the run without one).
    pub point: CrashPoint,
    /// The check's message.
    pub message: String,
}

impl std::fmt::Display for CrashFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.point {
            CrashPoint { op: u64::MAX, .. } => write!(f, "without a crash: {}", self.message),
            CrashPoint { op, applied } => write!(
                f,
                "after a crash at operation {op} ({}): {}",
                if applied { "applied" } else { "dropped" },
                self.message
            ),
        }
    }
}

impl std::error::Error for CrashFailure {}

/// Runs `workload` with a crash at every backend operation, both ways, and `check` on the
/// restarted store after each (see the module docs). Also checks the run without a
/// crash. Returns the first failure; an error opening a store is returned as a failure
/// too, since a store that cannot reopen after a crash is one.
pub async fn check_crash_points<T, W, WF, C, CF>(
    options: StoreOptions,
    workload: W,
    check: C,
) -> Result<CrashReport, CrashFailure>
where
    W: Fn(Store) -> WF,
    WF: Future<Output = T>,
    C: Fn(Store, T, CrashPoint) -> CF,
    CF: Future<Output = Result<(), String>>,
{
    // The run without a crash counts the operations, and must pass the check too.
    let uncrashed = CrashPoint {
        op: u64::MAX,
        applied: true,
    };
    let operations = run_and_check(&options, &workload, &check, uncrashed, Fault::None).await?;
    let mut crash_points = 0;
    for op in 0..operations {
        for applied in [false, true] {
            let point = CrashPoint { op, applied };
            let fault = Fault::CrashAt { op, applied };
            run_and_check(&options, &workload, &check, point, fault).await?;
            crash_points += 1;
        }
    }
    Ok(CrashReport {
        operations,
        crash_points,
    })
}

/// One run of the workload on a fresh store whose backend follows `fault` from the
/// workload's first operation (the store's own open is not counted), then the restart on
/// what storage holds and `check` on it. Returns the operations the workload sent.
async fn run_and_check<T, W, WF, C, CF>(
    options: &StoreOptions,
    workload: &W,
    check: &C,
    point: CrashPoint,
    fault: Fault,
) -> Result<u64, CrashFailure>
where
    W: Fn(Store) -> WF,
    WF: Future<Output = T>,
    C: Fn(Store, T, CrashPoint) -> CF,
    CF: Future<Output = Result<(), String>>,
{
    let opened = |e: crate::Error| CrashFailure {
        point,
        message: format!("the store failed to open: {e}"),
    };
    let storage: Arc<dyn ObjectBackend> = Arc::new(MemoryBackend::new());
    let faulty = FaultBackend::new(storage.clone());
    let store = Store::open(Arc::new(faulty.clone()), options.clone())
        .await
        .map_err(opened)?;
    faulty.set_fault(fault);
    let outcome = workload(store).await;
    let operations = faulty.ops();
    // The restart: a new process's store on what storage holds.
    let reopened = Store::open(storage, options.clone())
        .await
        .map_err(opened)?;
    check(reopened, outcome, point)
        .await
        .map_err(|message| CrashFailure { point, message })?;
    Ok(operations)
}
