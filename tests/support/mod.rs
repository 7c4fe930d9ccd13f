//! Helpers shared by the integration tests. Each test binary includes this with
//! `mod support;` and uses what it needs, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod child;
pub mod cli;
pub mod history;
pub mod moto;
pub mod progress;
pub mod proxy;

/// Store settings scaled down so that GC can run at the end of an S3 test: every process
/// opening the store must use the same (they are the store's shared settings). The margin
/// covers S3's whole-second timestamps.
#[allow(dead_code)] // not every test binary that includes `support` uses it
pub fn fast_options() -> segstore::StoreOptions {
    use std::time::Duration;
    segstore::StoreOptions {
        max_writer_stall: Duration::from_secs(1),
        freshen_after: Duration::from_millis(200),
        gc_delete_delay: Duration::from_secs(3),
        clock_margin: Duration::from_millis(1200),
        ..segstore::StoreOptions::default()
    }
}
