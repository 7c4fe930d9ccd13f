//! `examples/prism_shard.rs` as CI runs it: on local disk (twice, reusing its own
//! directory, and refusing one it did not create), on the cached tier and on S3 (moto);
//! this process then reads the restored shard the example left.

mod support;

use segstore::{S3Storage, SegmentStorage, ShardView, StorageBackend};

const SHARD: &str = "shard_0";
const FILES: [(StorageBackend, &str); 3] = [
    (StorageBackend::Vector, "hnsw.bin"),
    (StorageBackend::Graph, "nodes.bin"),
    (StorageBackend::Graph, "edges.bin"),
];

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The example binary (built by `cargo test` with the other targets; built here if not).
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = target.join("examples").join("prism_shard");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "--example", "prism_shard"])
            .status()
            .unwrap();
        assert!(status.success(), "building the example");
    }
    binary
}

/// Runs the example in `dir` with `args`; returns its output, after checking it ran.
fn run_example(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(example_binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "example failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "commit: version",
        "break: version",
        "restore: version",
        "load: version",
    ] {
        assert!(stdout.contains(step), "no {step:?} in:\n{stdout}");
    }
    println!("{stdout}");
    stdout
}

/// The restored shard the example left, read by this process: every family is there and
/// the Tantivy index has one document per paragraph node.
fn check_example_store(storage: &dyn SegmentStorage) {
    let view = block(ShardView::latest(storage, "prism_docs", SHARD)).unwrap();
    let index = view.index().unwrap();
    let docs = index.reader().unwrap().searcher().num_docs();
    assert!(docs > 50, "{docs} documents");
    for (backend, name) in FILES {
        assert!(
            !block(view.read(backend, name)).unwrap().is_empty(),
            "{name}"
        );
    }
}

#[test]
fn the_example_runs_on_local_cached_and_moto() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example(dir.path(), &[]);
    assert!(out.contains("memory-mapped, zero-copy"), "{out}");
    // A second run reuses its own directory; a directory it did not create is refused.
    run_example(dir.path(), &[]);
    let data = dir.path().join("prism-shard-example").join("store");
    check_example_store(&block(segstore::LocalStorage::open(&data)).unwrap());
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(foreign.join("something")).unwrap();
    let refused = std::process::Command::new(example_binary())
        .args(["--data-dir", "foreign"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the example used a directory it did not create"
    );
    assert!(foreign.join("something").exists());

    // The cached tier (over a local L2 here) maps its L1 files: zero-copy too.
    let cached = "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = \"l2\"\n\
                  [storage.cached]\nl1_path = \"l1\"\nl1_max_size_gb = 1\nl2_backend = \"local\"\n";
    std::fs::write(dir.path().join("cached.toml"), cached).unwrap();
    let out = run_example(dir.path(), &["--config", "cached.toml"]);
    assert!(out.contains("memory-mapped, zero-copy"), "{out}");

    let Some(config) = block(support::moto::fresh_bucket()) else {
        eprintln!("moto unavailable: S3 run skipped");
        return;
    };
    let toml = format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"{}\"\nregion = \"{}\"\n\
         prefix = \"example\"\nendpoint = \"{}\"\nforce_path_style = true\n\
         [storage.s3.credentials]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        config.bucket,
        support::moto::REGION,
        config.endpoint.clone().unwrap(),
        support::moto::ACCESS_KEY,
        support::moto::SECRET_KEY,
    );
    std::fs::write(dir.path().join("s3.toml"), toml).unwrap();
    let out = run_example(dir.path(), &["--config", "s3.toml"]);
    assert!(out.contains("no local copy (S3)"), "{out}");
    let mut s3 = config.clone();
    s3.prefix = "example".into();
    check_example_store(&block(S3Storage::connect(s3)).unwrap());
}
