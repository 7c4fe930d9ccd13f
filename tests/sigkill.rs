//! Real crashes: child processes commit to a local store and are killed with SIGKILL at
//! random moments. Each child prints a line for every acknowledged commit; afterwards the
//! store must hold every acknowledged write, reopen cleanly, and verify as healthy.
//!
//! `SEGSTORE_SIGKILL_ROUNDS` sets the number of kills (default 4).

mod support;

use std::process::Stdio;
use std::time::Duration;

use segstore::gc::VerifyOptions;
use segstore::{LocalStorage, SegmentStorage, StorageBackend, StoragePath};
use support::child;

const CHILD_ENV: &str = "SEGSTORE_SIGKILL_CHILD_ROOT";

fn path(round: usize, i: usize) -> StoragePath {
    StoragePath::new(
        "crash",
        StorageBackend::Tantivy,
        format!("r{round}"),
        format!("f{i}"),
    )
}

fn content(round: usize, i: usize) -> Vec<u8> {
    // Alternate inline-sized and blob-sized files.
    let len = if i.is_multiple_of(2) { 100 } else { 150_000 };
    (0..len)
        .map(|k| (k as u8) ^ (i as u8) ^ (round as u8))
        .collect()
}

/// Not a test on its own: the body of each child process. Commits until killed.
#[test]
fn sigkill_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: usize = child::env("SEGSTORE_SIGKILL_ROUND");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = LocalStorage::open(&root).await.unwrap();
        child::ready();
        for i in 0.. {
            store
                .write(&path(round, i), &content(round, i))
                .await
                .unwrap();
            if i % 3 == 2 {
                // A rename mid-stream: the old name must be gone if acknowledged.
                store
                    .rename(&path(round, i), &path(round, i + 100_000))
                    .await
                    .unwrap();
                child::ack(format_args!("{i} renamed"));
            } else {
                child::ack(i);
            }
        }
    });
}

#[test]
fn killed_writers_lose_no_acknowledged_commit() {
    let rounds = child::env_or("SEGSTORE_SIGKILL_ROUNDS", 4);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut total_acked = 0;
    for round in 0..rounds {
        let mut running = child::Running::spawn(
            child::command(
                "sigkill_child",
                &[
                    (CHILD_ENV, dir.path().to_string_lossy().into_owned()),
                    ("SEGSTORE_SIGKILL_ROUND", round.to_string()),
                ],
            ),
            Stdio::null(),
        );
        running.wait_ready(Duration::from_secs(60));
        if round == 0 {
            // The first round must see commits, however slow the machine.
            running.wait_first_ack(Duration::from_secs(60));
        }
        // A pseudo-random moment between 150 and 650 ms after the child opened the store.
        let wait = 150 + (round as u64 * 7919 + 13) % 500;
        std::thread::sleep(Duration::from_millis(wait));
        let acked = running.kill();

        rt.block_on(async {
            let store = LocalStorage::open(dir.path()).await.unwrap();
            for line in &acked {
                let mut parts = line.split(' ');
                let i: usize = parts.next().unwrap().parse().unwrap();
                let renamed = parts.next() == Some("renamed");
                let (live, gone) = if renamed {
                    (path(round, i + 100_000), Some(path(round, i)))
                } else {
                    (path(round, i), None)
                };
                assert_eq!(
                    store
                        .read(&live)
                        .await
                        .unwrap_or_else(|e| panic!("round {round}: acked {live} lost: {e}")),
                    content(round, i)
                );
                if let Some(gone) = gone {
                    assert!(
                        !store.exists(&gone).await.unwrap(),
                        "round {round}: {gone} still there"
                    );
                }
            }
            // Verifying reads every blob so far; in long runs, every 20th round and the last.
            if rounds <= 10 || round % 20 == 19 || round + 1 == rounds {
                let report = store.verify(&VerifyOptions::default()).await.unwrap();
                assert!(report.is_healthy(), "round {round}: {report:?}");
            }
            // The store stays writable after the crash.
            store.write(&path(round, 999_999), b"after").await.unwrap();
        });
        assert!(
            !acked.is_empty() || round > 0,
            "the child should commit something before being killed"
        );
        total_acked += acked.len();
    }
    println!("SIGKILL rounds: {rounds}, acknowledged commits checked: {total_acked}");
}
