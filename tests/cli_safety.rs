//! The `segstore` binary is safe by default (issue 20): the demo touches only its own store,
//! ignored or conflicting settings are errors, read-only commands never create a store,
//! missing collections are "not found", corrupt blobs can be repaired, interrupted commands
//! leave nothing behind, and concurrent commands share a cache directory.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::cli::{command, ok, only_blob, run, run_env, stderr, tree};

#[test]
fn demo_touches_only_its_own_store_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"one").unwrap();
    for i in 0..6 {
        std::fs::write(cwd.join("f"), format!("content {i}")).unwrap();
        ok(&["put", "prod/tantivy/s/f", "f"], cwd);
    }
    let before = tree(&cwd.join("segstore-data"));
    let out = ok(&["demo"], cwd);
    assert!(out.contains("own store"), "{out}");
    assert!(out.contains("segstore-demo"), "{out}");
    assert_eq!(
        tree(&cwd.join("segstore-data")),
        before,
        "the demo touched ./segstore-data"
    );
    let log = ok(&["--json", "log", "prod"], cwd);
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 6, "{log}");
    // Pointing the demo at a store is refused, not ignored.
    for args in [
        &["--data-dir", "segstore-data", "demo"][..],
        &["--config", "prod.toml", "demo"][..],
    ] {
        let out = run(args, cwd);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("segstore-demo"), "{}", stderr(&out));
    }
}

#[test]
fn ignored_or_conflicting_settings_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(
        cwd.join("local.toml"),
        "[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"configured\"\n",
    )
    .unwrap();
    // --data-dir next to --config would be ignored.
    let out = run(
        &[
            "--config",
            "local.toml",
            "--data-dir",
            "other",
            "ls",
            "c/tantivy",
        ],
        cwd,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--data-dir"), "{}", stderr(&out));
    // S3 settings in the environment are used, not silently replaced by ./segstore-data:
    // this endpoint refuses connections, so the write fails.
    std::fs::write(cwd.join("f"), b"x").unwrap();
    let out = run_env(
        &["put", "c/tantivy/s/f", "f"],
        cwd,
        &[
            ("SEGSTORE_BACKEND", "s3"),
            ("SEGSTORE_S3_BUCKET", "nobucket"),
            ("SEGSTORE_S3_REGION", "us-east-1"),
            ("SEGSTORE_S3_ENDPOINT", "http://127.0.0.1:9"),
            ("SEGSTORE_S3_FORCE_PATH_STYLE", "true"),
            ("AWS_ACCESS_KEY_ID", "x"),
            ("AWS_SECRET_ACCESS_KEY", "y"),
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(!cwd.join("segstore-data").exists(), "wrote locally instead");
    // A flag and an environment variable that disagree.
    let out = run_env(
        &["--data-dir", "a", "ls", "c/tantivy"],
        cwd,
        &[("SEGSTORE_DATA_DIR", "b")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir(cwd.join("empty")).unwrap();
    for store in ["typo", "empty"] {
        for args in [
            &["ls"][..],
            &["ls", "c/tantivy"],
            &["verify"],
            &["gc"],
            &["stats"],
            &["log", "c"],
            &["snapshot", "list", "c"],
            &["get", "c/tantivy/s/f"],
            &["export", "c", "out.tar"],
        ] {
            let mut full = vec!["--data-dir", store];
            full.extend_from_slice(args);
            let out = run(&full, cwd);
            assert_eq!(out.status.code(), Some(3), "{full:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("no segstore store"),
                "{}",
                stderr(&out)
            );
        }
    }
    assert!(!cwd.join("typo").exists(), "a read created the store");
    assert_eq!(std::fs::read_dir(cwd.join("empty")).unwrap().count(), 0);
    assert!(!cwd.join("out.tar").exists());
    // A write creates it, in a new or an empty directory.
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["--data-dir", "empty", "put", "c/tantivy/s/f", "f"], cwd);
    ok(&["--data-dir", "empty", "verify"], cwd);
}

#[test]
fn a_missing_collection_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["put", "c/tantivy/s/f", "f"], cwd);
    for args in [
        &["export", "nope", "out.tar"][..],
        &["export", "nope", "outdir"],
        &["ls", "nope/tantivy"],
        &["log", "nope"],
        &["snapshot", "list", "nope"],
        &["diff", "nope", "1"],
    ] {
        let out = run(args, cwd);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    }
    assert!(!cwd.join("out.tar").exists() && !cwd.join("outdir").exists());
    // An existing collection with nothing under the prefix is just empty.
    assert_eq!(ok(&["ls", "c/tantivy/other"], cwd), "");
}

#[test]
fn verify_repair_lets_a_write_or_an_import_restore_a_corrupt_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(cwd.join("seg"), &data).unwrap();
    ok(&["put", "c/tantivy/s/seg", "seg"], cwd);
    ok(&["export", "c", "backup.tar"], cwd);
    let blob = only_blob(&cwd.join("segstore-data"));
    let mut bad = data.clone();
    bad[500] ^= 1;
    std::fs::write(&blob, &bad).unwrap();
    assert_eq!(run(&["verify"], cwd).status.code(), Some(6));
    // Writing the same content again is a dedup hit: the corrupt blob stays.
    ok(&["put", "c/tantivy/s/again", "seg"], cwd);
    assert_eq!(run(&["verify"], cwd).status.code(), Some(6));
    // Repair removes it; the store reports it missing until a good copy comes back.
    let out = run(&["--json", "verify", "--repair"], cwd);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 1, "{report}");
    assert!(!blob.exists());
    ok(&["put", "c/tantivy/s/third", "seg"], cwd);
    assert!(ok(&["verify"], cwd).starts_with("healthy"));
    assert_eq!(std::fs::read(&blob).unwrap(), data);
    let got = ok(&["get", "c/tantivy/s/seg", "-o", "back"], cwd);
    assert_eq!(got, "");
    assert_eq!(std::fs::read(cwd.join("back")).unwrap(), data);

    // The other recipe: import the backup into a scratch store and put the file back
    // from there (the same content heals the blob).
    std::fs::write(&blob, &bad).unwrap();
    run(&["verify", "--repair"], cwd);
    ok(&["--data-dir", "scratch", "import", "c", "backup.tar"], cwd);
    ok(
        &[
            "--data-dir",
            "scratch",
            "get",
            "c/tantivy/s/seg",
            "-o",
            "good",
        ],
        cwd,
    );
    ok(&["put", "c/tantivy/s/seg", "good"], cwd);
    assert!(ok(&["verify"], cwd).starts_with("healthy"));
    assert_eq!(std::fs::read(&blob).unwrap(), data);
}

/// A process id that is not running: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn temp_files_of_dead_processes_are_removed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["put", "c/tantivy/s/f", "f"], cwd);
    let tmp = cwd.join("segstore-data/tmp");
    let dead = tmp.join(format!("segstore-tmp-{}-0123456789abcdef.tmp", dead_pid()));
    let live = tmp.join(format!(
        "segstore-tmp-{}-0123456789abcdef.tmp",
        std::process::id()
    ));
    let foreign = tmp.join("notes.txt");
    for f in [&dead, &live, &foreign] {
        std::fs::write(f, vec![0u8; 4096]).unwrap();
        // Older than a minute: a writer that is still alive would have touched it.
        let written = std::fs::metadata(f).unwrap().modified().unwrap();
        let file = std::fs::File::options().write(true).open(f).unwrap();
        file.set_modified(written - std::time::Duration::from_secs(120))
            .unwrap();
    }
    ok(&["ls", "c/tantivy"], cwd);
    assert!(!dead.exists(), "a dead writer's temp file was kept");
    assert!(live.exists(), "a live writer's temp file was removed");
    assert!(
        foreign.exists(),
        "a file segstore did not create was removed"
    );
}

#[test]
fn ctrl_c_says_what_was_committed_and_leaves_no_temp_files() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["put", "c/tantivy/s/f", "f"], cwd);
    let mut cmd = command(&["put", "c/tantivy/s/big", "-"], cwd, &[]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(&vec![7u8; 4 << 20]).unwrap();
    let tmp = cwd.join("segstore-data/tmp");
    // Wait until the upload has started (its temp file exists).
    let mut waited = 0;
    while std::fs::read_dir(&tmp).unwrap().count() == 0 && waited < 200 {
        std::thread::sleep(std::time::Duration::from_millis(25));
        waited += 1;
    }
    assert!(waited < 200, "the upload never started");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    drop(input);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert!(err.contains("version 1"), "{err}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files left"
    );
    assert_eq!(ok(&["ls", "c/tantivy"], cwd), "c/tantivy/s/f\n");
}

fn cached_config(cwd: &Path) {
    std::fs::write(
        cwd.join("cached.toml"),
        "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = \"l2\"\n\
         [storage.cached]\nl1_path = \"l1\"\nl1_max_size_gb = 0.01\nl2_backend = \"local\"\n",
    )
    .unwrap();
}

#[test]
fn parallel_commands_share_the_cache_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    cached_config(cwd);
    std::fs::write(cwd.join("f"), vec![3u8; 300_000]).unwrap();
    ok(
        &["--config", "cached.toml", "put", "c/tantivy/s/first", "f"],
        cwd,
    );
    let children: Vec<_> = (0..4)
        .map(|i| {
            let path = format!("c/tantivy/s/f{i}");
            command(&["--config", "cached.toml", "put", &path, "f"], cwd, &[])
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let listed = ok(&["--config", "cached.toml", "ls", "c/tantivy"], cwd);
    assert_eq!(listed.lines().count(), 5, "{listed}");
}

#[test]
fn a_busy_cache_is_busy_not_invalid_config() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    cached_config(cwd);
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(
        &["--config", "cached.toml", "put", "c/tantivy/s/f", "f"],
        cwd,
    );
    // Hold the L1 lock as another process would.
    let lock = std::fs::File::options()
        .write(true)
        .open(cwd.join("l1/LOCK"))
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let out = run(
        &[
            "--config",
            "cached.toml",
            "--lock-timeout",
            "1s",
            "ls",
            "c/tantivy",
        ],
        cwd,
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    drop(lock);
    ok(&["--config", "cached.toml", "ls", "c/tantivy"], cwd);
}

/// `get -o` onto a FIFO writes into it, and onto a symlink writes the link's target: neither
/// is replaced. (Staging and renaming over the output replaced `/dev/null` with a regular
/// file on a machine whose tests ran as root, and every later rustc probe there read it.)
#[test]
fn get_writes_into_devices_and_through_symlinks_never_replacing_them() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(cwd.join("seg"), &data).unwrap();
    ok(&["put", "c/tantivy/s/seg", "seg"], cwd);

    let status = Command::new("mkfifo")
        .arg(cwd.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let pipe = cwd.join("pipe");
    // The reader blocks until a writer opens the FIFO; replaced, it would never open.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(std::fs::read(pipe)).unwrap());
    ok(&["get", "c/tantivy/s/seg", "-o", "pipe"], cwd);
    let file_type = std::fs::symlink_metadata(cwd.join("pipe"))
        .unwrap()
        .file_type();
    assert!(file_type.is_fifo(), "the FIFO was replaced: {file_type:?}");
    let read = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the FIFO's reader got no writer")
        .unwrap();
    assert_eq!(read, data);

    std::fs::create_dir(cwd.join("real")).unwrap();
    std::os::unix::fs::symlink("real/back", cwd.join("link")).unwrap();
    std::fs::write(cwd.join("real/back"), b"old").unwrap();
    ok(&["get", "c/tantivy/s/seg", "-o", "link"], cwd);
    assert!(std::fs::symlink_metadata(cwd.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(cwd.join("real/back")).unwrap(), data);
    let leftovers: Vec<_> = std::fs::read_dir(cwd.join("real"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["back"], "no staging file is left behind");
}
