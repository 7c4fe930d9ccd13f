//! End-to-end tests of the `segstore` binary, run as a real process, on local disk and on
//! S3 (moto, through a config file).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::moto;

fn segstore(args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_segstore"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SEGSTORE_CONFIG")
        .env_remove("SEGSTORE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run segstore");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            input.write_all(data).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = segstore(args, cwd, None);
    assert!(
        out.status.success(),
        "segstore {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn code(args: &[&str], cwd: &Path) -> i32 {
    segstore(args, cwd, None).status.code().unwrap()
}

/// Every command, against whatever store `base` (global options) selects.
fn tour(base: &[&str], cwd: &Path) {
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |extra: &[&str]| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&refs, cwd)
    };
    let status = |extra: &[&str]| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        code(&refs, cwd)
    };

    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(cwd.join("seg.bin"), &data).unwrap();
    run(&["put", "books/tantivy/s0/seg.bin", "seg.bin"]);
    let args = with(&["put", "books/tantivy/s0/meta.json", "-"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = segstore(&refs, cwd, Some(b"{\"v\":1}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(run(&["get", "books/tantivy/s0/meta.json"]), "{\"v\":1}");
    run(&["get", "books/tantivy/s0/seg.bin", "-o", "back.bin"]);
    assert_eq!(std::fs::read(cwd.join("back.bin")).unwrap(), data);

    let listed = run(&["ls", "books/tantivy"]);
    assert_eq!(
        listed,
        "books/tantivy/s0/meta.json\nbooks/tantivy/s0/seg.bin\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["--json", "ls", "books/tantivy/s0"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    run(&["snapshot", "create", "books", "v2"]);
    assert!(run(&["snapshot", "list", "books"]).contains("v2"));
    run(&["mv", "books/tantivy/s0/seg.bin", "books/tantivy/s0/seg.old"]);
    run(&["rm", "books/tantivy/s0/meta.json"]);
    let diff = run(&["diff", "books", "v2"]);
    assert!(diff.contains("+ books/tantivy/s0/seg.old"), "{diff}");
    assert!(diff.contains("- books/tantivy/s0/meta.json"), "{diff}");
    assert!(diff.contains("- books/tantivy/s0/seg.bin"), "{diff}");
    let log: serde_json::Value = serde_json::from_str(&run(&["--json", "log", "books"])).unwrap();
    assert_eq!(log.as_array().unwrap()[0]["version"], 4);
    run(&["snapshot", "restore", "books", "v2"]);
    assert_eq!(run(&["get", "books/tantivy/s0/meta.json"]), "{\"v\":1}");

    let gc: serde_json::Value =
        serde_json::from_str(&run(&["--json", "gc", "--dry-run", "--keep-last", "1"])).unwrap();
    assert_eq!(gc["dry_run"], true);
    run(&["gc"]);
    let verify: serde_json::Value = serde_json::from_str(&run(&["--json", "verify"])).unwrap();
    assert_eq!(verify["healthy"], true);
    let stats: serde_json::Value = serde_json::from_str(&run(&["--json", "stats"])).unwrap();
    assert_eq!(stats["collections"][0]["name"], "books");

    run(&["export", "books", "export.tar"]);
    run(&["export", "books", "export-dir", "--snapshot", "v2"]);
    run(&["snapshot", "delete", "books", "v2"]);

    // Documented exit codes.
    assert_eq!(status(&["get", "books/tantivy/s0/nope"]), 3);
    assert_eq!(status(&["get", "../etc/passwd"]), 4);
    assert_eq!(status(&["snapshot", "delete", "books", "v2"]), 3);
    assert_eq!(status(&["import", "books", "export.tar"]), 5);
    assert_eq!(status(&["frobnicate"]), 2);
}

#[test]
fn every_command_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    tour(&[], dir.path());
    assert!(
        dir.path().join("segstore-data/blobs").is_dir(),
        "default data dir"
    );
    // The exports import into another store, verified.
    let other = dir.path().join("other");
    let out = ok(
        &[
            "--data-dir",
            other.to_str().unwrap(),
            "import",
            "books",
            "export.tar",
        ],
        dir.path(),
    );
    assert!(out.contains("all verified"), "{out}");
    let out = ok(
        &["--data-dir", other.to_str().unwrap(), "verify"],
        dir.path(),
    );
    assert!(out.starts_with("healthy"), "{out}");
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&["--json", "demo"], dir.path());
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["healthy"], true);
    assert!(summary["hits"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["documents"].as_u64().unwrap() >= 20);
    // Twice in a row works too (the snapshot of the previous run is replaced).
    let again = ok(&["demo"], dir.path());
    assert!(again.contains("summary"), "{again}");
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[storage]\nbackend = \"local\"\ndat_dir = 1\n",
    )
    .unwrap();
    let out = segstore(&["--config", "bad.toml", "stats"], dir.path(), None);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dat_dir"));
}

#[tokio::test]
async fn every_command_on_s3() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
        [storage]
        backend = "s3"
        [storage.s3]
        bucket = "{}"
        region = "{}"
        prefix = "cli"
        endpoint = "{}"
        force_path_style = true
        [storage.s3.credentials]
        access_key_id = "{}"
        secret_access_key = "{}"
        "#,
        config.bucket,
        moto::REGION,
        config.endpoint.as_deref().unwrap(),
        moto::ACCESS_KEY,
        moto::SECRET_KEY
    );
    std::fs::write(dir.path().join("s3.toml"), toml).unwrap();
    let cwd = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || tour(&["--config", "s3.toml"], &cwd))
        .await
        .unwrap();
    assert!(
        !dir.path().join("segstore-data").exists(),
        "nothing written locally"
    );
}

#[test]
fn every_command_on_the_cached_tier() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cached.toml"),
        "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = \"l2\"\n\
         [storage.cached]\nl1_path = \"l1\"\nl1_max_size_gb = 0.01\nl2_backend = \"local\"\n",
    )
    .unwrap();
    tour(&["--config", "cached.toml"], dir.path());
    assert!(dir.path().join("l2/blobs").is_dir(), "L2 holds the data");
    assert!(dir.path().join("l1").is_dir(), "L1 was used");
}
