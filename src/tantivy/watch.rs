//! Watching `meta.json`: callbacks fire when a new commit changes it.
//!
//! The adapter announces its own commits at once. Commits by other adapter instances or
//! other processes are found by a background thread that polls the manifest head (one
//! existence probe per interval on a quiet store). The thread holds only a weak reference
//! to the adapter and stops once the adapter is dropped. Callbacks run on tantivy's
//! broadcast thread, never while segstore holds one of its own locks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tantivy::directory::{WatchCallback, WatchCallbackList, WatchHandle};

use crate::hash::BlobId;

/// Watch state of one adapter.
#[derive(Default)]
pub(crate) struct Watcher {
    callbacks: WatchCallbackList,
    /// The newest manifest version looked at, and the `meta.json` content it holds.
    seen: Mutex<Option<(u64, Option<BlobId>)>>,
    polling: AtomicBool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("seen", &self.seen)
            .field("polling", &self.polling.load(Ordering::Relaxed))
            .finish()
    }
}

impl Watcher {
    /// Registers `callback`; the returned handle keeps it alive.
    pub(crate) fn subscribe(&self, callback: WatchCallback) -> WatchHandle {
        self.callbacks.subscribe(callback)
    }

    /// Records that version `version` holds `meta` as `meta.json`. Fires the callbacks if
    /// that is newer than anything seen and `meta.json` changed. The first observation only
    /// sets the baseline.
    pub(crate) fn observe(&self, version: u64, meta: Option<BlobId>) {
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match *seen {
                Some((v, _)) if v >= version => false,
                Some((_, old)) => {
                    *seen = Some((version, meta));
                    old != meta
                }
                None => {
                    *seen = Some((version, meta));
                    false
                }
            }
        };
        if changed {
            // Runs the callbacks on a thread of tantivy's; the result says only whether one
            // of them panicked, which is not ours to handle.
            drop(self.callbacks.broadcast());
        }
    }

    /// True the first time it is called: the caller then starts the polling thread.
    pub(crate) fn start_polling(&self) -> bool {
        !self.polling.swap(true, Ordering::AcqRel)
    }
}

/// Something whose `meta.json` can be polled.
pub(crate) trait Pollable: Send + Sync + 'static {
    /// Reads the head and reports it to the watcher.
    fn poll(&self);
}

/// Spawns the polling thread. It ends when `target` can no longer be upgraded.
pub(crate) fn spawn_poller<T: Pollable>(
    target: Weak<T>,
    interval: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("segstore-tantivy-watch".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            match target.upgrade() {
                Some(t) => t.poll(),
                None => return,
            }
        })
        .map(|_| ())
}
