//! The bridge from tantivy's synchronous `Directory` calls to segstore's async [`Store`].
//!
//! tantivy calls its directory from its own threads and from the user's, which may be
//! tokio worker threads of either flavour. `Handle::block_on` panics on a runtime thread, so
//! every call is spawned onto a small multi-thread runtime that segstore owns, and the
//! calling thread waits for the result with `futures::executor::block_on` on the task's
//! join handle. That wait never involves the caller's runtime, so it works from plain
//! threads, from inside `#[tokio::main]`, and from a current-thread runtime alike.
//!
//! [`Store`]: crate::Store

use std::future::Future;
use std::sync::OnceLock;

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

/// Runs `fut` on the bridge runtime and waits for it on the calling thread.
///
/// Must not be called from a task running on the bridge runtime itself (segstore never
/// does: only tantivy's and the user's threads call in).
pub(crate) fn run<F, T>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let task = runtime()?.spawn(fut);
    futures::executor::block_on(task)
        .map_err(|e| Error::backend("running a tantivy directory call", e.to_string()))?
}

/// Starts `fut` on the bridge runtime without waiting for it.
pub(crate) fn spawn<F>(fut: F) -> Result<tokio::task::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(fut))
}
