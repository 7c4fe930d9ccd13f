//! Real crashes: child processes commit to a local store and are killed with SIGKILL at
//! random moments. Each child prints a line for every acknowledged commit; afterwards the
//! store must hold every acknowledged write, reopen cleanly, and verify as healthy.
//!
//! `SEGSTORE_SIGKILL_ROUNDS` sets the number of kills (default 4).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use segstore::gc::VerifyOptions;
use segstore::{LocalStorage, SegmentStorage, StorageBackend, StoragePath};

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
    let round: usize = std::env::var("SEGSTORE_SIGKILL_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = LocalStorage::open(&root).await.unwrap();
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
                println!("ACK {i} renamed");
            } else {
                println!("ACK {i}");
            }
        }
    });
}

#[test]
fn killed_writers_lose_no_acknowledged_commit() {
    let rounds: usize = std::env::var("SEGSTORE_SIGKILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut total_acked = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("SEGSTORE_SIGKILL_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.split_once("ACK ").map(|(_, rest)| rest.to_owned()))
                .collect::<Vec<String>>()
        });
        // A pseudo-random moment between 150 and 650 ms in.
        let wait = 150 + (round as u64 * 7919 + 13) % 500;
        std::thread::sleep(Duration::from_millis(wait));
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        child.wait().unwrap();
        let acked = reader.join().unwrap();

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
