//! Recording the progress an operation reports.
#![allow(dead_code)] // each test binary uses part of it

use std::sync::{Arc, Mutex};

use segstore::{Progress, ProgressFn};

/// A callback that records every report, and the record.
pub fn recording() -> (ProgressFn, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    (ProgressFn::new(move |p| log.lock().unwrap().push(*p)), seen)
}

/// The last report, after checking that the reports never went back and that the last
/// one reached its totals.
pub fn finished(seen: &Mutex<Vec<Progress>>) -> Progress {
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "no progress reported");
    for pair in seen.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.items_done >= a.items_done && b.bytes_done >= a.bytes_done,
            "progress went back: {a:?} then {b:?}"
        );
    }
    let last = *seen.last().unwrap();
    assert_eq!(last.items_done, last.items_total, "{last:?}");
    assert_eq!(last.bytes_done, last.bytes_total, "{last:?}");
    last
}
