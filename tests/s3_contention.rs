//! Contention without livelock (issue 17): 100 writers, 10 processes of 10 tasks each,
//! commit disjoint paths to one collection on moto through a proxy that holds every
//! request `SEGSTORE_PROXY_LATENCY_MS` (20 ms by default). Every commit must land and read
//! back; the requests per commit are bounded. Commit latencies (p50, p99) and requests per
//! commit are printed, not asserted: the tasks of one process share versions by group
//! commit, the processes race with create-only roots.
//!
//! `cargo test --test s3_contention -- --nocapture`; `SEGSTORE_CONTENTION_PROCESSES` and
//! `SEGSTORE_CONTENTION_TASKS` change the 10 x 10.

// Latency is measured (and printed) in real time, and children start at a wall-clock time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use segstore::{S3Storage, SegmentStorage, StorageBackend, StoragePath};
use support::proxy::{latency_from_env, Fault, Proxy};
use support::{child, moto};

const ENDPOINT_ENV: &str = "SEGSTORE_TEST_CHILD_S3_ENDPOINT";
const BUCKET_ENV: &str = "SEGSTORE_TEST_CHILD_S3_BUCKET";
const ID_ENV: &str = "SEGSTORE_TEST_CHILD_ID";
const TASKS_ENV: &str = "SEGSTORE_TEST_CHILD_TASKS";
const START_ENV: &str = "SEGSTORE_TEST_CHILD_START_MS";
const COLLECTION: &str = "contended";

fn path(process: usize, task: usize) -> StoragePath {
    StoragePath::new(
        COLLECTION,
        StorageBackend::Tantivy,
        "s0",
        format!("p{process}-t{task}"),
    )
}

fn content(process: usize, task: usize) -> Vec<u8> {
    format!("process {process} task {task};")
        .bytes()
        .cycle()
        .take(2000)
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Not a test on its own: the body of each child process. Connects, waits for the common
/// start time, commits one file from each task at once and acknowledges each commit with
/// `task version latency_us`.
#[test]
fn contention_child() {
    let (Ok(endpoint), Ok(bucket)) = (std::env::var(ENDPOINT_ENV), std::env::var(BUCKET_ENV))
    else {
        return;
    };
    let process: usize = child::env(ID_ENV);
    let tasks: usize = child::env(TASKS_ENV);
    let start: u64 = child::env(START_ENV);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = S3Storage::connect(moto::config_for(&endpoint, &bucket))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(start.saturating_sub(unix_ms()))).await;
        let commits = (0..tasks).map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let info = store
                    .store()
                    .write_bytes(&path(process, task), content(process, task).into())
                    .await
                    .unwrap();
                assert!(info.created);
                child::ack(format_args!(
                    "{task} {} {}",
                    info.version,
                    began.elapsed().as_micros()
                ));
            })
        });
        for commit in futures::future::join_all(commits).await {
            commit.unwrap();
        }
    });
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_writers_on_one_collection_all_land() {
    let processes = child::env_or("SEGSTORE_CONTENTION_PROCESSES", 10);
    let tasks = child::env_or("SEGSTORE_CONTENTION_TASKS", 10);
    let Some(server) = moto::server() else { return };
    let Some(direct) = moto::fresh_bucket().await else {
        return;
    };
    S3Storage::connect(direct.clone()).await.unwrap();
    let latency = latency_from_env();
    let proxy = Proxy::start(server.port, Fault::Latency(latency));
    let endpoint = proxy.endpoint();
    // Children start in about a second; the commits begin together after that.
    let start = unix_ms() + 4000;
    let outputs = child::run_children("contention_child", processes, |p| {
        vec![
            (ENDPOINT_ENV, endpoint.clone()),
            (BUCKET_ENV, direct.bucket.clone()),
            (ID_ENV, p.to_string()),
            (TASKS_ENV, tasks.to_string()),
            (START_ENV, start.to_string()),
        ]
    })
    .await;
    let requests = proxy.take_requests();

    let mut latencies = Vec::new();
    let mut acked = Vec::new();
    for (process, lines) in outputs.iter().enumerate() {
        for line in lines {
            let fields: Vec<u64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
            let [task, version, micros] = fields[..] else {
                panic!("bad ACK {line:?}")
            };
            acked.push((process, task as usize, version));
            latencies.push(micros / 1000);
        }
    }
    assert_eq!(
        acked.len(),
        processes * tasks,
        "every commit is acknowledged"
    );

    // A fresh connection reads every acknowledged commit back, at or after its version.
    let store = S3Storage::connect(direct).await.unwrap();
    let head = store.store().head(COLLECTION).await.unwrap();
    for &(process, task, version) in &acked {
        assert!(version <= head.version);
        let got = store.read(&path(process, task)).await.unwrap();
        assert_eq!(got, content(process, task), "process {process} task {task}");
    }

    latencies.sort_unstable();
    let commits = acked.len() as f64;
    // Each child's open (one identity GET: the connect is lazy) is not part of its commits.
    let opens = requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("_store/identity"))
        .count();
    assert_eq!(opens, processes, "one identity GET per child's open");
    let per_commit = (requests.len() - opens) as f64 / commits;
    let kind = |r: &str| -> String {
        match r.split_whitespace().next() {
            Some("GET") if r.contains("list-type=") => "LIST".into(),
            Some(method) => method.into(),
            None => "?".into(),
        }
    };
    let mut by_kind = std::collections::BTreeMap::new();
    for r in &requests {
        *by_kind.entry(kind(r)).or_insert(0u64) += 1;
    }
    println!(
        "{processes} processes x {tasks} tasks, {} ms per request: {} versions for {} commits; \
         commit latency p50 {} ms, p99 {} ms, max {} ms; {:.2} requests per commit \
         ({} requests, {} of them the {opens} opens; by kind {by_kind:?})",
        latency.as_millis(),
        head.version,
        acked.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        per_commit,
        requests.len(),
        opens,
    );
    // Bounded: each version costs a few requests and each lost race a few more; a commit
    // that livelocked would retry until `max_commit_attempts` and cost hundreds.
    assert!(per_commit <= MAX_REQUESTS_PER_COMMIT, "{per_commit}");
}

/// The bound on requests per commit in the contention test.
const MAX_REQUESTS_PER_COMMIT: f64 = 30.0;
