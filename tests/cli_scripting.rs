//! The `segstore` binary can be scripted (issue 20): `--json` on every command, errors as
//! JSON on stderr, exit codes that mean what the README says, messages without internal
//! keys or SDK dumps, `-v` and `--log-level` for details.

mod support;

use support::cli::{ok, run, run_env, stderr};

#[test]
fn every_command_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"hello").unwrap();
    let commands: [&[&str]; 16] = [
        &["put", "c/tantivy/s/f", "f"],
        &["get", "c/tantivy/s/f", "-o", "back"],
        &["ls"],
        &["ls", "c/tantivy"],
        &["mv", "c/tantivy/s/f", "c/tantivy/s/g"],
        &["snapshot", "create", "c", "before"],
        &["snapshot", "list", "c"],
        &["rm", "c/tantivy/s/g"],
        &["diff", "c", "before"],
        &["log", "c"],
        &["snapshot", "restore", "c", "before"],
        &["gc", "--dry-run"],
        &["verify"],
        &["stats"],
        &["export", "c", "c.tar"],
        &["snapshot", "delete", "c", "before"],
    ];
    for args in commands {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = ok(&full, cwd);
        let value: Result<serde_json::Value, _> = serde_json::from_str(out.trim());
        assert!(value.is_ok(), "{args:?} printed {out:?}");
    }
    let out = ok(
        &["--json", "--data-dir", "other", "import", "c", "c.tar"],
        cwd,
    );
    serde_json::from_str::<serde_json::Value>(&out).unwrap();
    // `get -o -` is stdout.
    assert_eq!(ok(&["get", "c/tantivy/s/g", "-o", "-"], cwd), "hello");
    assert!(!cwd.join("-").exists());
}

#[test]
fn errors_are_json_on_stderr_with_the_documented_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["put", "c/tantivy/s/f", "f"], cwd);
    let out = run(&["--json", "get", "c/tantivy/s/nope"], cwd);
    assert_eq!(out.status.code(), Some(3));
    let err: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(err["error"]["code"], 3, "{err}");
    assert_eq!(err["error"]["kind"], "not_found", "{err}");
    assert!(out.stdout.is_empty());

    let cases: [(&[&str], i32); 5] = [
        (&["verify", "--sample", "2"], 2),
        (&["put", "c/tantivy/s/g", "missing-file"], 3),
        (&["put", "c/tantivy/s/g", "."], 4),
        (&["get", "c/tantivy/s/f", "-o", "."], 4),
        (&["diff", "c", "99"], 3),
    ];
    for (args, code) in cases {
        let out = run(args, cwd);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("manifests/"), "{}", stderr(&out));
    }
    let out = run(&["diff", "c", "99"], cwd);
    assert!(
        stderr(&out).contains("version 99 of collection \"c\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_numeric_snapshot_name_is_not_shadowed_by_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for content in ["one", "two", "three"] {
        std::fs::write(cwd.join("f"), content).unwrap();
        ok(&["put", "c/tantivy/s/f", "f"], cwd);
    }
    // Snapshot "1" pins version 2.
    ok(&["snapshot", "create", "c", "1", "--version", "2"], cwd);
    ok(&["snapshot", "restore", "c", "1"], cwd);
    assert_eq!(ok(&["get", "c/tantivy/s/f"], cwd), "two");
    ok(&["snapshot", "restore", "c", "version:1"], cwd);
    assert_eq!(ok(&["get", "c/tantivy/s/f"], cwd), "one");
}

#[test]
fn messages_hold_no_sdk_dumps_and_verbose_adds_causes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env = [
        ("SEGSTORE_BACKEND", "s3"),
        ("SEGSTORE_S3_BUCKET", "nobucket"),
        ("SEGSTORE_S3_REGION", "us-east-1"),
        ("SEGSTORE_S3_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "y"),
    ];
    let out = run_env(&["ls"], cwd, &env);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("DispatchFailure"), "{err}");
    assert!(!err.contains("caused by"), "{err}");
    let out = run_env(&["-v", "ls"], cwd, &env);
    assert!(stderr(&out).contains("caused by"), "{}", stderr(&out));
    // Logs at the level asked for.
    std::fs::write(cwd.join("f"), b"x").unwrap();
    let out = run(&["--log-level", "info", "put", "c/tantivy/s/f", "f"], cwd);
    assert!(out.status.success());
    assert!(stderr(&out).contains("INFO"), "{}", stderr(&out));
    let out = run(&["put", "c/tantivy/s/g", "f"], cwd);
    assert!(!stderr(&out).contains("INFO"), "{}", stderr(&out));
}

#[test]
fn verbose_prints_the_metrics_of_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), vec![7u8; 10_000]).unwrap();
    let out = run(&["-v", "put", "c/tantivy/s/f", "f"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("segstore: metric segstore_commits_total{outcome=created} = 1"),
        "{err}"
    );
    assert!(
        err.contains("segstore: metric segstore_commit_seconds = 1 samples"),
        "{err}"
    );
    // Without -v, and with --json (stderr is for the JSON error), no metrics.
    let out = run(&["put", "c/tantivy/s/g", "f"], cwd);
    assert!(!stderr(&out).contains("metric"), "{}", stderr(&out));
    let out = run(&["-v", "--json", "put", "c/tantivy/s/h", "f"], cwd);
    assert!(
        !stderr(&out).contains("segstore: metric"),
        "{}",
        stderr(&out)
    );
}
