//! The bridge from tantivy's synchronous `Directory` calls to segstore's async [`Store`].
//!
//! tantivy calls its directory from its own threads and from the user's, which may be
//! tokio worker threads of either flavour. `Handle::block_on` panics on a runtime thread, so
//! every call is spawned onto a small multi-thread runtime that segstore owns; the task
//! sends its result through a `std::sync::mpsc` channel and the calling thread blocks on
//! that channel. The wait involves nothing of tokio's, so it works from plain threads,
//! from inside `#[tokio::main]`, and from a current-thread runtime alike.
//!
//! (Waiting with `futures::executor::block_on` on the task's `JoinHandle` instead hangs
//! inside a tokio task: every poll of a `JoinHandle` spends the *calling* task's
//! cooperative budget, which only refills when that task yields to its runtime. A
//! synchronous caller never yields, so after about a hundred calls every poll returns
//! `Pending` and wakes itself at once, and the thread spins forever.)
//!
//! [`Store`]: crate::Store

use std::future::Future;
use std::sync::{mpsc, Mutex, OnceLock};

use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, Result};

/// Worker threads of the bridge runtime. The work it runs is I/O bound (blocking file work
/// goes to tokio's blocking pool), so two are plenty.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("segstore-tantivy")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::backend("starting the tantivy bridge runtime", e.clone()))
}

/// The result of a task started with [`start`], to be waited for on a plain thread.
pub(crate) struct Waiter<T> {
    /// In a mutex only to be `Sync`, as tantivy's writers must be; never contended.
    rx: Mutex<mpsc::Receiver<Result<T>>>,
}

impl<T> Waiter<T> {
    /// Blocks the calling thread (never a runtime) until the task is done.
    pub(crate) fn wait(self) -> Result<T> {
        let rx = self.rx.into_inner().unwrap_or_else(|p| p.into_inner());
        rx.recv().map_err(|_| {
            Error::backend(
                "running a tantivy directory call",
                "the task ended without a result (it panicked or the runtime shut down)",
            )
        })?
    }
}

/// Starts `fut` on the bridge runtime; its result is sent to the returned [`Waiter`].
pub(crate) fn start<F, T>(fut: F) -> Result<Waiter<T>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        // The waiter may be gone (a writer dropped mid-upload): nobody to tell.
        let _ = tx.send(fut.await);
    });
    Ok(Waiter { rx: Mutex::new(rx) })
}

/// Runs `fut` on the bridge runtime and waits for it on the calling thread.
///
/// Must not be called from a task running on the bridge runtime itself (segstore never
/// does: only tantivy's and the user's threads call in).
pub(crate) fn run<F, T>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    start(fut)?.wait()
}

/// Starts `fut` on the bridge runtime without waiting for it.
pub(crate) fn spawn<F>(fut: F) -> Result<tokio::task::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(fut))
}
