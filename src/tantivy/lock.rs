//! In-process directory locks.
//!
//! A lock file on object storage outlives the process that crashed holding it, so locks are
//! never written to storage. They live in a process-wide table keyed by the store, the
//! shard and the lock's file name; every adapter instance over the same store and shard in
//! this process sees the same table. Writers in other processes are kept apart at the
//! manifest level instead: a commit whose `meta.json` base changed fails with a conflict.

use std::collections::HashSet;
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::Duration;

use crate::clock::{self, Stamp};

use tantivy::directory::error::LockError;
use tantivy::directory::DirectoryLock;

/// How long a blocking acquisition waits before giving up with `LockBusy`: the same budget
/// as tantivy's own retry policy (100 retries, 100 ms apart).
const BLOCKING_WAIT: Duration = Duration::from_secs(10);

/// The locks held in this process: `(scope, lock file name)`.
struct Table {
    held: Mutex<HashSet<(String, String)>>,
    released: Condvar,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| Table {
    held: Mutex::new(HashSet::new()),
    released: Condvar::new(),
});

/// Releases its lock when dropped.
struct Guard {
    key: (String, String),
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut held = TABLE.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
        drop(held);
        TABLE.released.notify_all();
    }
}

/// Takes lock `name` in `scope`. Non-blocking: `LockBusy` at once if it is held. Blocking:
/// waits for its release, up to [`BLOCKING_WAIT`].
pub(crate) fn acquire(scope: &str, name: &str, blocking: bool) -> Result<DirectoryLock, LockError> {
    let key = (scope.to_owned(), name.to_owned());
    let clock = clock::system();
    let started = Stamp::now(clock.as_ref());
    let mut held = TABLE.held.lock().unwrap_or_else(|p| p.into_inner());
    while held.contains(&key) {
        let waited = started.elapsed(clock.as_ref());
        if !blocking || waited >= BLOCKING_WAIT {
            return Err(LockError::LockBusy);
        }
        held = TABLE
            .released
            .wait_timeout(held, BLOCKING_WAIT - waited)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    held.insert(key.clone());
    Ok(DirectoryLock::from(Box::new(Guard { key })))
}
