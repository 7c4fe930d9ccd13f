//! The `segstore` binary has what operators expect (issue 20, "Complete"): reads at a
//! version or snapshot, `put -r` of a directory as one commit, `ls -l`/`-R`, `du`,
//! deleting a collection, a `log` of every retained version with its snapshots, shell
//! completions and `--help` examples.

mod support;

use std::path::Path;

use support::cli::{json, ok, run};

/// Writes `content` to `cwd/name`, creating directories.
fn write(cwd: &Path, name: &str, content: &[u8]) {
    let p = cwd.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn put(cwd: &Path, path: &str, content: &[u8]) {
    write(cwd, "input", content);
    ok(&["put", path, "input"], cwd);
}

#[test]
fn get_ls_cat_and_diff_read_at_a_version_or_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    put(cwd, "c/tantivy/a", b"first");
    ok(&["snapshot", "create", "c", "7"], cwd); // a numeric name
    put(cwd, "c/tantivy/a", b"second");
    put(cwd, "c/tantivy/b", b"added later");
    assert_eq!(ok(&["get", "c/tantivy/a"], cwd), "second");
    assert_eq!(ok(&["get", "c/tantivy/a", "--version", "1"], cwd), "first");
    assert_eq!(ok(&["cat", "c/tantivy/a", "--snapshot", "7"], cwd), "first");
    assert_eq!(ok(&["cat", "c/tantivy/a", "--version", "2"], cwd), "second");
    ok(&["get", "c/tantivy/a", "--snapshot", "7", "-o", "out"], cwd);
    assert_eq!(std::fs::read(cwd.join("out")).unwrap(), b"first");
    assert_eq!(
        json(&["ls", "c", "--version", "2"], cwd),
        serde_json::json!(["c/tantivy/a"])
    );
    assert_eq!(
        json(&["ls", "c/tantivy"], cwd),
        serde_json::json!(["c/tantivy/a", "c/tantivy/b"])
    );
    let at_snapshot = json(&["ls", "-l", "c", "--snapshot", "7"], cwd);
    assert_eq!(at_snapshot[0]["size"], 5, "{at_snapshot}");
    // A file that did not exist then, a version that never was, an unknown snapshot.
    for args in [
        &["get", "c/tantivy/b", "--version", "1"][..],
        &["get", "c/tantivy/a", "--version", "99"],
        &["ls", "c", "--snapshot", "nope"],
    ] {
        let out = run(args, cwd);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
    }
    let both = run(
        &["get", "c/tantivy/a", "--version", "1", "--snapshot", "7"],
        cwd,
    );
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    // diff names versions and snapshots; the numeric snapshot wins over version 7.
    let d = json(&["diff", "c", "snapshot:7", "version:3"], cwd);
    assert_eq!(d["added"], serde_json::json!(["c/tantivy/b"]), "{d}");
    assert_eq!(d["changed"], serde_json::json!(["c/tantivy/a"]), "{d}");
    assert_eq!(json(&["diff", "c", "7", "3"], cwd), d);
}

#[test]
fn put_r_uploads_a_directory_as_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(cwd, "idx/meta.json", b"{}");
    write(cwd, "idx/seg.store", &big);
    write(cwd, "idx/shard-2/seg.idx", b"in a shard");
    let out = json(&["put", "-r", "idx", "products/tantivy"], cwd);
    assert_eq!(out["version"], 1, "{out}");
    assert_eq!(out["files"], 3, "{out}");
    assert_eq!(out["bytes"], big.len() as u64 + 2 + 10, "{out}");
    assert_eq!(
        json(&["ls", "products"], cwd),
        serde_json::json!([
            "products/tantivy/meta.json",
            "products/tantivy/seg.store",
            "products/tantivy/shard-2/seg.idx"
        ])
    );
    ok(&["get", "products/tantivy/seg.store", "-o", "back"], cwd);
    assert!(std::fs::read(cwd.join("back")).unwrap() == big);
    assert_eq!(
        ok(&["get", "products/tantivy/shard-2/seg.idx"], cwd),
        "in a shard"
    );
    // Into a shard: files only.
    write(cwd, "flat/x", b"x");
    let into = json(&["put", "-r", "flat", "products/tantivy/s9"], cwd);
    assert_eq!(into["version"], 2, "{into}");
    assert_eq!(ok(&["get", "products/tantivy/s9/x"], cwd), "x");
    assert_eq!(
        json(&["log", "products", "--all"], cwd)
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn put_r_refuses_links_and_special_files_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write(cwd, "secret", b"not mine");
    write(cwd, "idx/a", b"a");
    std::os::unix::fs::symlink(cwd.join("secret"), cwd.join("idx/link")).unwrap();
    let out = run(&["put", "-r", "idx", "c/tantivy"], cwd);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{out:?}"
    );
    std::fs::remove_file(cwd.join("idx/link")).unwrap();
    let fifo = std::ffi::CString::new(cwd.join("idx/fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let out = run(&["put", "-r", "idx", "c/tantivy"], cwd);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("special file"),
        "{out:?}"
    );
    std::fs::remove_file(cwd.join("idx/fifo")).unwrap();
    write(cwd, "idx/deep/deeper/f", b"f");
    assert!(!run(&["put", "-r", "idx", "c/tantivy"], cwd)
        .status
        .success());
    // Nothing was committed: the collection does not exist.
    assert_eq!(run(&["ls", "c"], cwd).status.code(), Some(3));
}

#[test]
fn ls_long_recursive_du_and_deleting_a_collection() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    put(cwd, "a/tantivy/one", &[1u8; 5000]);
    put(cwd, "a/tantivy/two", &[1u8; 5000]); // the same content: stored once
    put(cwd, "b/vector/s/x", b"small");
    assert_eq!(json(&["ls"], cwd), serde_json::json!(["a", "b"]));
    let long = json(&["ls", "-l"], cwd);
    assert_eq!(long[0]["collection"], "a", "{long}");
    assert_eq!(long[0]["files"], 2, "{long}");
    assert_eq!(long[0]["bytes"], 10_000, "{long}");
    assert_eq!(long[1]["bytes"], 5, "{long}");
    let all = json(&["ls", "-R", "-l"], cwd);
    let paths: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            serde_json::json!("a/tantivy/one"),
            serde_json::json!("a/tantivy/two"),
            serde_json::json!("b/vector/s/x")
        ]
    );
    assert_eq!(all[2]["size"], 5);
    let text = ok(&["ls", "-l", "a"], cwd);
    assert!(text.lines().all(|l| l.len() <= 80), "{text}");
    assert!(text.contains("5000"), "{text}");
    let du = json(&["du"], cwd);
    assert_eq!(du["rows"][0]["logical_bytes"], 10_000, "{du}");
    assert_eq!(du["rows"][0]["dedup_bytes"], 5000, "{du}");
    assert_eq!(du["total"]["logical_bytes"], 10_005, "{du}");
    assert_eq!(du["total"]["dedup_bytes"], 5005, "{du}");
    // collection/backend/shard/segment-prefix.
    let one = json(&["du", "b/vector/s/x"], cwd);
    assert_eq!(one["rows"][0]["logical_bytes"], 5, "{one}");
    assert_eq!(json(&["du", "b/vector/s/y"], cwd)["rows"][0]["files"], 0);
    // Deleting needs --yes; without it nothing changes (exit 2).
    let refused = run(&["rm", "-r", "a"], cwd);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(json(&["ls", "a"], cwd).as_array().unwrap().len(), 2);
    let gone = json(&["rm", "-r", "a", "--yes"], cwd);
    assert_eq!(gone["deleted"], 2, "{gone}");
    assert_eq!(json(&["ls", "a"], cwd), serde_json::json!([]));
    // The earlier version stays, readable and restorable.
    assert_eq!(
        json(&["ls", "a", "--version", "2"], cwd)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(&["snapshot", "restore", "a", "version:2"], cwd);
    assert_eq!(json(&["ls", "a"], cwd).as_array().unwrap().len(), 2);
    assert_eq!(json(&["ls", "b"], cwd), serde_json::json!(["b/vector/s/x"]));
}

/// Regression: `log -n 0` printed the latest version (the count was taken as "up to and
/// including the head"); it prints none, as `git log -n 0` does.
#[test]
fn log_shows_retained_versions_with_their_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for i in 0..4 {
        put(cwd, "c/tantivy/f", format!("content {i}").as_bytes());
    }
    ok(&["snapshot", "create", "c", "first", "--version", "1"], cwd);
    ok(
        &["snapshot", "create", "c", "also-first", "--version", "1"],
        cwd,
    );
    ok(&["snapshot", "create", "c", "latest"], cwd);
    assert_eq!(json(&["log", "c", "-n", "0"], cwd), serde_json::json!([]));
    assert_eq!(ok(&["log", "c", "-n", "0"], cwd), "");
    let two = json(&["log", "c", "-n", "2"], cwd);
    let versions: Vec<_> = two
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].clone())
        .collect();
    assert_eq!(versions, [serde_json::json!(4), serde_json::json!(3)]);
    assert_eq!(two[0]["snapshots"], serde_json::json!(["latest"]));
    let all = json(&["log", "c", "--all"], cwd);
    assert_eq!(all.as_array().unwrap().len(), 4);
    let mut first = all[3]["snapshots"].as_array().unwrap().clone();
    first.sort_by_key(|v| v.to_string());
    assert_eq!(
        first,
        [serde_json::json!("also-first"), serde_json::json!("first")]
    );
    let text = ok(&["log", "c"], cwd);
    assert!(text.contains("snapshots: latest"), "{text}");
}

#[test]
fn completions_and_help_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef segstore"),
        ("fish", "complete -c segstore"),
    ] {
        let script = ok(&["completions", shell], cwd);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("snapshot") && script.contains("put"),
            "{shell}"
        );
    }
    let help = ok(&["--help"], cwd);
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("segstore put -r"), "{help}");
    let examples = help.lines().filter(|l| l.starts_with("  segstore"));
    assert!(examples.clone().count() >= 5, "{help}");
    assert!(examples.clone().all(|l| l.chars().count() <= 80), "{help}");
    // Completions touch no store.
    assert!(!cwd.join("segstore-data").exists());
}

#[test]
fn gc_dry_run_says_what_would_go_and_why_the_rest_stays() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for i in 0..3 {
        put(cwd, "c/tantivy/f", format!("content {i}").as_bytes());
    }
    ok(&["snapshot", "create", "c", "pin", "--version", "1"], cwd);
    let args = [
        "gc",
        "--dry-run",
        "--keep-last",
        "1",
        "--keep-within",
        "1h",
        "--keep-daily",
        "1",
    ];
    let r = json(&args, cwd);
    assert_eq!(r["dry_run"], true, "{r}");
    let c = &r["retention"]["c"];
    assert_eq!(c["deleted"], serde_json::json!([]), "{r}");
    let reasons = |v: usize| -> Vec<String> {
        c["kept"][v - 1]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    // Young versions are kept by keep_within (and the store's minimum age), version 1 by
    // its snapshot too, the newest by every rule.
    assert!(reasons(1).contains(&"snapshot:pin".to_owned()), "{r}");
    assert!(reasons(2).contains(&"keep_within".to_owned()), "{r}");
    assert!(!reasons(2).contains(&"keep_last".to_owned()), "{r}");
    for rule in ["latest", "keep_last", "keep_daily"] {
        assert!(reasons(3).contains(&rule.to_owned()), "{rule}: {r}");
    }
    let text = ok(&args, cwd);
    assert!(text.contains("c: no version would be deleted"), "{text}");
    assert!(
        text.contains("keeps version 1:") && text.contains("snapshot:pin"),
        "{text}"
    );
    let explained = text.lines().filter(|l| l.starts_with("  keeps"));
    assert!(explained.clone().count() == 3, "{text}");
    assert!(explained.clone().all(|l| l.len() <= 80), "{text}");
    // `[retention] keep_daily` in the config file.
    write(
        cwd,
        "segstore.toml",
        b"[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"segstore-data\"\n\
          [retention]\nkeep_last = 1\nkeep_daily = 1\n",
    );
    let r = json(&["--config", "segstore.toml", "gc", "--dry-run"], cwd);
    let kept = &r["retention"]["c"]["kept"];
    assert!(kept[2]["reasons"].to_string().contains("keep_daily"), "{r}");
}

#[test]
fn put_records_a_message_and_metadata_that_log_shows() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    put(cwd, "c/tantivy/f", b"plain");
    write(cwd, "input", b"noted");
    let args = [
        "put",
        "c/tantivy/f",
        "input",
        "-m",
        "nightly reindex",
        "--meta",
        "ticket=OPS-7",
        "--meta",
        "host=a",
    ];
    ok(&args, cwd);
    write(cwd, "idx/a", b"a");
    ok(&["put", "-r", "idx", "c/tantivy", "-m", "bulk"], cwd);
    let log = json(&["log", "c", "--all"], cwd);
    assert_eq!(log[0]["message"], "bulk", "{log}");
    assert_eq!(log[1]["message"], "nightly reindex", "{log}");
    assert_eq!(log[1]["meta"]["ticket"], "OPS-7", "{log}");
    assert_eq!(log[1]["meta"]["host"], "a", "{log}");
    assert!(log[2]["message"].is_null(), "{log}");
    let text = ok(&["log", "c"], cwd);
    assert!(
        text.contains("    nightly reindex\n    host=a\n    ticket=OPS-7"),
        "{text}"
    );
    // The note survives a sync to another store.
    ok(&["sync", "--from", "segstore-data", "--to", "copy"], cwd);
    let copied = json(&["--data-dir", "copy", "log", "c", "--all"], cwd);
    assert_eq!(copied[0]["message"], "bulk", "{copied}");
    let bad = run(&["put", "c/tantivy/f", "input", "--meta", "novalue"], cwd);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

/// Every command that commits a version takes a note: `mv`, `rm`, `rm -r` and `snapshot
/// restore` as `put` does.
#[test]
fn mv_rm_and_restore_record_their_notes_too() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    put(cwd, "c/tantivy/a", b"a");
    put(cwd, "c/tantivy/b", b"b");
    ok(
        &[
            "mv",
            "c/tantivy/a",
            "c/tantivy/a2",
            "-m",
            "rename a",
            "--meta",
            "by=ops",
        ],
        cwd,
    );
    ok(&["rm", "c/tantivy/b", "-m", "drop b"], cwd);
    ok(&["snapshot", "restore", "c", "2", "-m", "undo both"], cwd);
    ok(&["rm", "-r", "c/tantivy", "--yes", "-m", "clear"], cwd);
    // Without a note, as before.
    put(cwd, "c/tantivy/z", b"z");
    ok(&["mv", "c/tantivy/z", "c/tantivy/z2"], cwd);
    let log = json(&["log", "c", "--all"], cwd);
    let messages: Vec<&serde_json::Value> = (0..8).map(|i| &log[i]["message"]).collect();
    assert_eq!(
        messages,
        [
            &serde_json::Value::Null,
            &serde_json::Value::Null,
            &"clear".into(),
            &"undo both".into(),
            &"drop b".into(),
            &"rename a".into(),
            &serde_json::Value::Null,
            &serde_json::Value::Null,
        ],
        "{log}"
    );
    assert_eq!(log[5]["meta"]["by"], "ops", "{log}");
    let files = ok(&["ls", "c"], cwd);
    assert_eq!(files.trim(), "c/tantivy/z2", "{files}");
    // A rename across collections is refused with the library's reason, note or not.
    let across = run(&["mv", "c/tantivy/z2", "d/tantivy/z", "-m", "x"], cwd);
    assert_eq!(across.status.code(), Some(4), "{across:?}");
    assert!(
        String::from_utf8_lossy(&across.stderr).contains("another collection"),
        "{across:?}"
    );
}

/// Regression: `log` stopped at the first version retention had removed, hiding older
/// versions a snapshot (or a calendar rule) keeps: after retention removed versions 2-4
/// (3 days old), `log` showed only version 5, not the pinned version 1.
#[test]
fn log_shows_versions_kept_below_a_gap_and_gc_applies_keep_daily() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for i in 1..=5 {
        put(cwd, "c/tantivy/f", format!("content {i}").as_bytes());
    }
    ok(&["snapshot", "create", "c", "pin", "--version", "1"], cwd);
    // Versions 1-4 were stored 3 days ago (the local store's clock is the file mtime).
    for v in 1..=4 {
        let manifest = cwd.join(format!("segstore-data/manifests/c/{v:020}"));
        let touched = std::process::Command::new("touch")
            .args(["-d", "3 days ago"])
            .arg(&manifest)
            .status()
            .unwrap();
        assert!(touched.success(), "{}", manifest.display());
    }
    let args = [
        "gc",
        "--keep-last",
        "1",
        "--keep-within",
        "1h",
        "--keep-daily",
        "2",
    ];
    let dry = json(&[&args[..], &["--dry-run"]].concat(), cwd);
    assert_eq!(
        dry["retention"]["c"]["deleted"],
        serde_json::json!([2, 3]),
        "{dry}"
    );
    let r = json(&args, cwd);
    assert_eq!(r["versions_deleted"], 2, "{r}");
    let kept = &r["retention"]["c"]["kept"];
    assert_eq!(
        kept[0]["reasons"],
        serde_json::json!(["snapshot:pin"]),
        "{r}"
    );
    assert_eq!(kept[1]["reasons"], serde_json::json!(["keep_daily"]), "{r}");
    let log = json(&["log", "c", "--all"], cwd);
    let versions: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].clone())
        .collect();
    assert_eq!(
        versions,
        [
            serde_json::json!(5),
            serde_json::json!(4),
            serde_json::json!(1)
        ]
    );
    assert_eq!(log[2]["snapshots"], serde_json::json!(["pin"]), "{log}");
    assert_eq!(
        ok(&["get", "c/tantivy/f", "--version", "4"], cwd),
        "content 4"
    );
}

/// `[retention.collections.NAME]` gives a collection rules of its own, replacing the
/// general ones; `--keep-hourly` and `--keep-yearly` keep one version per hour and year;
/// a section naming no collection is warned about.
#[test]
fn collections_keep_their_own_retention_and_hourly_and_yearly_rules_apply() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for collection in ["a", "b"] {
        for i in 1..=4 {
            let path = format!("{collection}/tantivy/f");
            put(cwd, &path, format!("content {i}").as_bytes());
        }
        // Versions 1-3 were stored 3 days ago, one hour apart; version 4 is new.
        for v in 1..=3 {
            let manifest = cwd.join(format!("segstore-data/manifests/{collection}/{v:020}"));
            let when = format!("3 days ago {} hours ago", 4 - v);
            let touched = std::process::Command::new("touch")
                .args(["-d", &when])
                .arg(&manifest)
                .status()
                .unwrap();
            assert!(touched.success(), "{}", manifest.display());
        }
    }
    write(
        cwd,
        "segstore.toml",
        b"[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"segstore-data\"\n\
          [retention]\nkeep_last = 1\n\
          [retention.collections.b]\nkeep_last = 3\n\
          [retention.collections.typo]\nkeep_last = 1\n",
    );
    let out = run(
        &["--json", "--config", "segstore.toml", "gc", "--dry-run"],
        cwd,
    );
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deleted = |c: &str| r["retention"][c]["deleted"].clone();
    assert_eq!(deleted("a"), serde_json::json!([1, 2, 3]), "{r}");
    assert_eq!(deleted("b"), serde_json::json!([1]), "{r}");
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains("[retention.collections.typo] names no collection"),
        "{warned}"
    );
    // The flags replace the general rules; b keeps its own.
    let args = [
        "--config",
        "segstore.toml",
        "gc",
        "--dry-run",
        "--keep-hourly",
        "3",
    ];
    let r = json(&args, cwd);
    assert_eq!(
        r["retention"]["a"]["deleted"],
        serde_json::json!([1]),
        "{r}"
    );
    assert_eq!(
        r["retention"]["b"]["deleted"],
        serde_json::json!([1]),
        "{r}"
    );
    let reasons = &r["retention"]["a"]["kept"][0]["reasons"];
    assert!(reasons.to_string().contains("keep_hourly"), "{r}");
    // One version per year: all of a's are in this year or the last, so two stay.
    let r = json(
        &[
            "gc",
            "--dry-run",
            "--keep-last",
            "1",
            "--keep-within",
            "1s",
            "--keep-yearly",
            "5",
        ],
        cwd,
    );
    let kept = r["retention"]["a"]["kept"].as_array().unwrap().len();
    assert!((1..=2).contains(&kept), "{r}");
    let reasons = r["retention"]["a"]["kept"].to_string();
    assert!(reasons.contains("keep_yearly"), "{r}");
}
