//! Progress of long operations (verify, sync, export, import, GC), for bars such as the
//! CLI's: each operation calls its [`ProgressFn`] after every object it has handled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How far an operation has come: the objects and bytes it has handled of those it found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects handled so far (blobs read, copied or swept; tree nodes; manifests).
    pub items_done: u64,
    /// Objects the operation has found to handle so far.
    pub items_total: u64,
    /// Bytes of the objects handled so far.
    pub bytes_done: u64,
    /// Bytes of the objects found so far (0 when unknown, as for an archive on stdin).
    pub bytes_total: u64,
}

/// A progress callback, called after each object an operation handles; it must return
/// quickly (it runs on the operation's task). Its `Debug` says only that one is set.
#[derive(Clone)]
pub struct ProgressFn(Arc<dyn Fn(&Progress) + Send + Sync>);

impl ProgressFn {
    /// Wraps a callback.
    pub fn new(callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        ProgressFn(Arc::new(callback))
    }

    fn call(&self, progress: &Progress) {
        (self.0)(progress)
    }
}

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// The counters of one operation, shared by its concurrent parts.
pub(crate) struct Tracker<'a> {
    callback: Option<&'a ProgressFn>,
    items_done: AtomicU64,
    items_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
}

impl<'a> Tracker<'a> {
    /// Counters with the totals known so far.
    pub(crate) fn new(
        callback: Option<&'a ProgressFn>,
        items_total: u64,
        bytes_total: u64,
    ) -> Self {
        Tracker {
            callback,
            items_done: AtomicU64::new(0),
            items_total: AtomicU64::new(items_total),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(bytes_total),
        }
    }

    /// More work found (a later listing): raises the totals.
    pub(crate) fn found(&self, items: u64, bytes: u64) {
        self.items_total.fetch_add(items, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One object of `bytes` bytes handled: counts it and reports.
    pub(crate) fn tick(&self, bytes: u64) {
        self.advance(1, bytes);
    }

    /// `items` objects and `bytes` bytes handled: counts them and reports.
    pub(crate) fn advance(&self, items: u64, bytes: u64) {
        let items_done = self.items_done.fetch_add(items, Ordering::Relaxed) + items;
        let bytes_done = self.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(callback) = self.callback {
            callback.call(&Progress {
                items_done,
                items_total: self.items_total.load(Ordering::Relaxed),
                bytes_done,
                bytes_total: self.bytes_total.load(Ordering::Relaxed),
            });
        }
    }

    /// The counts so far.
    #[cfg(test)]
    fn now(&self) -> Progress {
        Progress {
            items_done: self.items_done.load(Ordering::Relaxed),
            items_total: self.items_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn every_tick_reports_the_running_counts() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let callback = ProgressFn::new(move |p| log.lock().unwrap().push(*p));
        let tracker = Tracker::new(Some(&callback), 2, 30);
        tracker.tick(10);
        tracker.found(1, 5);
        tracker.advance(2, 25);
        let expect = |items_done, items_total, bytes_done, bytes_total| Progress {
            items_done,
            items_total,
            bytes_done,
            bytes_total,
        };
        assert_eq!(
            *seen.lock().unwrap(),
            [expect(1, 2, 10, 30), expect(3, 3, 35, 35)]
        );
        assert_eq!(tracker.now(), expect(3, 3, 35, 35));
        assert_eq!(format!("{callback:?}"), "ProgressFn");
    }
}
