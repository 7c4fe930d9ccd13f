//! Concurrency stress: 8 writers, as tasks in one process and as separate processes, on
//! local disk and on S3 (moto), each make many commits to one collection. The result must
//! be one linear history in which every version holds exactly the commits acknowledged
//! with it (one, or several of one store instance merged by group commit), holding every
//! acknowledged commit at the version it was acknowledged with, with its bytes.
//!
//! Of the task writers, half share one store instance (serialised by its commit lock, their
//! waiting commits merged) and half have their own (racing through the backend, like
//! separate processes).
//!
//! `SEGSTORE_STRESS_COMMITS` sets the commits per writer on local disk (default 12); S3
//! writers make a fifth of that, at least 5 (moto handles one request at a time).

mod support;

use std::collections::BTreeMap;

use segstore::{LocalStorage, S3Storage, StorageBackend, StoragePath, Store};
use support::child::{self, env_or};
use support::history::linear_history;
use support::moto;

const WRITERS: usize = 8;
const COLLECTION: &str = "stress";
const TARGET_ENV: &str = "SEGSTORE_STRESS_CHILD_TARGET";
const ID_ENV: &str = "SEGSTORE_STRESS_CHILD_ID";
const COMMITS_ENV: &str = "SEGSTORE_STRESS_CHILD_COMMITS";

fn local_commits() -> usize {
    env_or("SEGSTORE_STRESS_COMMITS", 12)
}

fn s3_commits() -> usize {
    (env_or("SEGSTORE_STRESS_COMMITS", 12) / 5).max(5)
}

fn path(writer: usize, i: usize) -> StoragePath {
    StoragePath::new(
        COLLECTION,
        StorageBackend::Tantivy,
        format!("w{writer}"),
        format!("f{i}"),
    )
}

/// Every fourth file is blob-sized, the others inline.
fn content(writer: usize, i: usize) -> Vec<u8> {
    let tag = format!("writer {writer} commit {i};");
    let len = if i % 4 == 3 { 5000 } else { tag.len() };
    tag.bytes().cycle().take(len).collect()
}

/// Where the writers commit.
#[derive(Clone)]
enum Target {
    Local(String),
    S3 { endpoint: String, bucket: String },
}

impl Target {
    fn encode(&self) -> String {
        match self {
            Target::Local(root) => format!("local {root}"),
            Target::S3 { endpoint, bucket } => format!("s3 {endpoint} {bucket}"),
        }
    }

    fn decode(s: &str) -> Target {
        let parts: Vec<&str> = s.splitn(3, ' ').collect();
        match parts[..] {
            ["local", root] => Target::Local(root.to_owned()),
            ["s3", endpoint, bucket] => Target::S3 {
                endpoint: endpoint.to_owned(),
                bucket: bucket.to_owned(),
            },
            _ => panic!("bad target {s:?}"),
        }
    }

    async fn open(&self) -> Store {
        match self {
            Target::Local(root) => LocalStorage::open(root).await.unwrap().store().clone(),
            Target::S3 { endpoint, bucket } => {
                S3Storage::connect(moto::config_for(endpoint, bucket))
                    .await
                    .unwrap()
                    .store()
                    .clone()
            }
        }
    }
}

/// Makes `commits` commits as writer `writer`; returns (commit, version) per commit.
async fn write_all(store: &Store, writer: usize, commits: usize) -> Vec<(usize, u64)> {
    let mut acked = Vec::with_capacity(commits);
    for i in 0..commits {
        let info = store
            .write_bytes(&path(writer, i), content(writer, i).into())
            .await
            .unwrap_or_else(|e| panic!("writer {writer} commit {i}: {e}"));
        assert!(info.created);
        acked.push((i, info.version));
    }
    acked
}

/// Checks the collection's history against the acknowledgements: (writer, commit,
/// version).
async fn check(store: &Store, acked: &[(usize, usize, u64)]) {
    let history = linear_history(store, COLLECTION).await;
    // Commits of one store instance that waited together share a version (group commit):
    // a version is the new files of exactly the commits acknowledged with it.
    let mut by_version = BTreeMap::new();
    for version in &history {
        let v = version.root.version;
        let diff = &version.diff;
        assert!(
            !diff.added.is_empty() && diff.changed.is_empty() && diff.removed.is_empty(),
            "version {v} is not only new files: {diff:?}"
        );
        let added: BTreeMap<StoragePath, _> = diff
            .added
            .iter()
            .map(|e| (e.path.clone(), e.after.clone().unwrap()))
            .collect();
        by_version.insert(v, added);
    }
    let mut acked_at: BTreeMap<u64, Vec<StoragePath>> = BTreeMap::new();
    for &(w, i, v) in acked {
        acked_at.entry(v).or_default().push(path(w, i));
    }
    for (v, added) in &by_version {
        let mut paths: Vec<StoragePath> = added.keys().cloned().collect();
        let mut expected = acked_at.get(v).cloned().unwrap_or_default();
        paths.sort();
        expected.sort();
        assert_eq!(
            paths, expected,
            "version {v} holds exactly its acknowledged commits"
        );
    }
    for &(w, i, v) in acked {
        let entry = by_version
            .get(&v)
            .and_then(|added| added.get(&path(w, i)))
            .unwrap_or_else(|| panic!("writer {w} commit {i}: version {v} missing"));
        assert_eq!(store.read_entry(entry).await.unwrap(), content(w, i));
        assert_eq!(store.read_bytes(&path(w, i)).await.unwrap(), content(w, i));
    }
    println!(
        "{} writers, {} commits, one linear history of {} versions",
        WRITERS,
        acked.len(),
        history.len()
    );
}

async fn tasks(target: Target, commits: usize) {
    let shared = target.open().await;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let store = if w < WRITERS / 2 {
            shared.clone()
        } else {
            target.open().await
        };
        handles.push(tokio::spawn(async move {
            write_all(&store, w, commits)
                .await
                .into_iter()
                .map(|(i, v)| (w, i, v))
                .collect::<Vec<_>>()
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    check(&target.open().await, &acked).await;
}

async fn processes(target: Target, commits: usize) {
    let outputs = child::run_children("stress_child", WRITERS, |w| {
        vec![
            (TARGET_ENV, target.encode()),
            (ID_ENV, w.to_string()),
            (COMMITS_ENV, commits.to_string()),
        ]
    })
    .await;
    let acked: Vec<(usize, usize, u64)> = outputs
        .iter()
        .flatten()
        .map(|line| {
            let mut parts = line.split(' ').map(|p| p.parse::<u64>().unwrap());
            let (w, i, v) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            (w as usize, i as usize, v)
        })
        .collect();
    assert_eq!(acked.len(), WRITERS * commits);
    check(&target.open().await, &acked).await;
}

/// Not a test on its own: the body of each child process.
#[test]
fn stress_child() {
    let Ok(target) = std::env::var(TARGET_ENV) else {
        return;
    };
    let writer: usize = child::env(ID_ENV);
    let commits: usize = child::env(COMMITS_ENV);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Target::decode(&target).open().await;
        for i in 0..commits {
            let info = store
                .write_bytes(&path(writer, i), content(writer, i).into())
                .await
                .unwrap();
            assert!(info.created);
            child::ack(format_args!("{writer} {i} {}", info.version));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().to_string_lossy().into_owned());
    tasks(target, local_commits()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().to_string_lossy().into_owned());
    processes(target, local_commits()).await;
}

async fn s3_target() -> Option<Target> {
    let config = moto::fresh_bucket().await?;
    Some(Target::S3 {
        endpoint: config.endpoint.unwrap(),
        bucket: config.bucket,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_on_s3() {
    let Some(target) = s3_target().await else {
        return;
    };
    tasks(target, s3_commits()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_s3() {
    let Some(target) = s3_target().await else {
        return;
    };
    processes(target, s3_commits()).await;
}
