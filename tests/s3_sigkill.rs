//! Real crashes on S3: child processes commit to moto through the real SDK and are killed
//! with SIGKILL at random moments, two at a time. Each child prints a line for every
//! acknowledged commit, after the commit returned. Afterwards a fresh connection must see
//! every acknowledged write with its bytes (and renamed-away names gone), the history must
//! be linear, the store must stay writable and verify healthy, and GC must remove the
//! orphans the crashes left.
//!
//! Children write inline files, blobs and (every sixth) a file above the multipart
//! threshold, so kills also land in the middle of multipart uploads.
//!
//! `SEGSTORE_S3_SIGKILL_ROUNDS` sets the number of rounds (default 3); each kills two
//! children.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use segstore::gc::{GcOptions, RetentionPolicy, VerifyOptions};
use segstore::{S3Config, S3Storage, SegmentStorage, StorageBackend, StoragePath};
use support::child::{self, env_or};
use support::history::linear_history;
use support::moto;

const ENDPOINT_ENV: &str = "SEGSTORE_S3_SIGKILL_ENDPOINT";
const BUCKET_ENV: &str = "SEGSTORE_S3_SIGKILL_BUCKET";
const CHILD_ENV: &str = "SEGSTORE_S3_SIGKILL_CHILD";
const CHILDREN_PER_ROUND: usize = 2;
const COLLECTION: &str = "crash";

fn path(child: usize, i: usize) -> StoragePath {
    StoragePath::new(
        COLLECTION,
        StorageBackend::Tantivy,
        format!("c{child}"),
        format!("f{i}"),
    )
}

fn content(child: usize, i: usize) -> Vec<u8> {
    let len = match i % 6 {
        5 => 1_200_000, // above the children's multipart threshold
        1 | 3 => 20_000,
        _ => 100,
    };
    (0..len)
        .map(|k| (k as u8) ^ (i as u8).wrapping_mul(31) ^ (child as u8))
        .collect()
}

/// The children's config: multipart from 1 MiB (one part: S3's 5 MiB minimum part size
/// does not apply to the last part).
fn child_config(endpoint: &str, bucket: &str) -> S3Config {
    let mut config = moto::config_for(endpoint, bucket);
    config.multipart_threshold = 1024 * 1024;
    config
}

/// Not a test on its own: the body of each child process. Commits until killed.
#[test]
fn s3_sigkill_child() {
    let Ok(child) = std::env::var(CHILD_ENV) else {
        return;
    };
    let child: usize = child.parse().unwrap();
    let endpoint: String = child::env(ENDPOINT_ENV);
    let bucket: String = child::env(BUCKET_ENV);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store =
            S3Storage::connect_with(child_config(&endpoint, &bucket), support::fast_options())
                .await
                .unwrap();
        child::ready();
        for i in 0.. {
            store
                .write(&path(child, i), &content(child, i))
                .await
                .unwrap();
            if i % 3 == 2 {
                // A rename mid-stream: the old name must be gone if acknowledged.
                store
                    .rename(&path(child, i), &path(child, i + 100_000))
                    .await
                    .unwrap();
                child::ack(format_args!("{i} renamed"));
            } else {
                child::ack(i);
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_s3_writers_lose_no_acknowledged_commit() {
    let rounds = env_or("SEGSTORE_S3_SIGKILL_ROUNDS", 3);
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let started = Instant::now();
    let endpoint = config.endpoint.clone().unwrap();
    let bucket = config.bucket.clone();
    // Short enough for a quick GC at the end, long enough for a commit on a busy machine.
    let options = support::fast_options();
    let (mut kills, mut total_acked) = (0, 0);
    for round in 0..rounds {
        let ids: Vec<usize> = (0..CHILDREN_PER_ROUND)
            .map(|k| round * CHILDREN_PER_ROUND + k)
            .collect();
        let acked: Vec<(usize, Vec<String>)> = tokio::task::spawn_blocking({
            let (endpoint, bucket, ids) = (endpoint.clone(), bucket.clone(), ids.clone());
            move || {
                let mut running: Vec<_> = ids
                    .iter()
                    .map(|id| {
                        let command = child::command(
                            "s3_sigkill_child",
                            &[
                                (CHILD_ENV, id.to_string()),
                                (ENDPOINT_ENV, endpoint.clone()),
                                (BUCKET_ENV, bucket.clone()),
                            ],
                        );
                        child::Running::spawn(command, Stdio::null())
                    })
                    .collect();
                for r in &mut running {
                    r.wait_ready(Duration::from_secs(60));
                }
                // Each child dies at its own random moment, 100 to 1,500 ms in.
                let mut rng = rand::rng();
                let mut deadlines: Vec<(Duration, usize)> = ids
                    .iter()
                    .enumerate()
                    .map(|(k, _)| (Duration::from_millis(rng.random_range(100..1500)), k))
                    .collect();
                deadlines.sort();
                let start = Instant::now();
                let mut slots: Vec<Option<child::Running>> =
                    running.into_iter().map(Some).collect();
                let mut out = Vec::new();
                for (at, k) in deadlines {
                    std::thread::sleep(at.saturating_sub(start.elapsed()));
                    let r = slots[k].take().unwrap();
                    out.push((ids[k], r.kill()));
                }
                out
            }
        })
        .await
        .unwrap();
        kills += acked.len();

        let store = S3Storage::connect_with(config.clone(), options.clone())
            .await
            .unwrap();
        for (id, lines) in &acked {
            for line in lines {
                let mut parts = line.split(' ');
                let i: usize = parts.next().unwrap().parse().unwrap();
                let renamed = parts.next() == Some("renamed");
                let live = if renamed {
                    path(*id, i + 100_000)
                } else {
                    path(*id, i)
                };
                let got = store
                    .read(&live)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: acked {live} lost: {e}"));
                assert!(
                    got == content(*id, i),
                    "round {round}: {live} has other bytes"
                );
                if renamed {
                    let gone = path(*id, i);
                    assert!(
                        !store.exists(&gone).await.unwrap(),
                        "round {round}: {gone} still there"
                    );
                }
            }
            total_acked += lines.len();
        }
        // Verifying reads every blob so far; in long runs, every 10th round and the last.
        if rounds <= 5 || round % 10 == 9 || round + 1 == rounds {
            linear_history(store.store(), COLLECTION).await;
            let report = store.verify(&VerifyOptions::default()).await.unwrap();
            assert!(report.is_healthy(), "round {round}: {report:?}");
        }
        // The store stays writable after the crash.
        store
            .write(&path(usize::MAX / 2, round), b"after")
            .await
            .unwrap();
    }
    assert!(
        total_acked > 0,
        "the children should commit before being killed"
    );

    let store = S3Storage::connect_with(config, options).await.unwrap();
    let before = store.verify(&VerifyOptions::default()).await.unwrap();
    // S3's Last-Modified has whole seconds.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let gc = GcOptions {
        retention: RetentionPolicy::keep_all(),
        grace: Duration::from_secs(3),
        dry_run: false,
        progress: None,
        collection_retention: Default::default(),
    };
    let gc_report = store.gc(&gc).await.unwrap();
    assert!(gc_report.failures.is_empty(), "gc: {gc_report:?}");
    let after = store.verify(&VerifyOptions::default()).await.unwrap();
    assert!(
        after.is_healthy() && after.orphans.is_empty(),
        "after GC: {after:?}"
    );
    println!(
        "S3 SIGKILL: {kills} children killed in {rounds} rounds, {total_acked} acknowledged \
         commits checked, {} orphans before GC and none after, {} versions; wall time {:.1} s",
        before.orphans.len(),
        store.head(COLLECTION).await.unwrap().version,
        started.elapsed().as_secs_f64()
    );
}
