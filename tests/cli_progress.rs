//! Progress on long commands (issue 20): bytes, rate and ETA on a terminal, within 80
//! columns; never in pipes or with `--json`. `get` streams and verifies as it goes: a
//! damaged blob leaves no output file behind.

mod support;

use std::path::Path;
use std::process::Command;

use support::cli::{ok, only_blob, run, BIN};

/// Runs `segstore ARGS` on a pseudo-terminal of 80 columns (util-linux `script`) and
/// returns what the terminal showed; `None` where `script` is not installed.
fn on_terminal(args: &str, cwd: &Path) -> Option<String> {
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("stty cols 80 rows 24; {BIN} {args}"),
            "/dev/null",
        ])
        .current_dir(cwd)
        .env_remove("SEGSTORE_CONFIG")
        .env_remove("SEGSTORE_DATA_DIR")
        .output()
        .ok()?;
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The frames a terminal showed: the text between carriage returns and line clears.
fn frames(screen: &str) -> Vec<String> {
    screen
        .split(['\r', '\n'])
        .map(|f| f.replace("\x1b[2K", "").replace("\x1b[1A", ""))
        .filter(|f| !f.trim().is_empty())
        .collect()
}

/// The frames of `screen`, asserting that one is a byte bar (bytes and ETA) for `what`.
fn bar_frames(screen: &str, what: &str) -> Vec<String> {
    let shown = frames(screen);
    assert!(
        shown
            .iter()
            .any(|f| f.contains(what) && f.contains("MiB") && f.contains("eta")),
        "{screen:?}"
    );
    shown
}

fn big(cwd: &Path) -> Vec<u8> {
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(cwd.join("big"), &data).unwrap();
    ok(&["put", "c/tantivy/big", "big"], cwd);
    data
}

#[test]
fn get_shows_bytes_rate_and_eta_on_a_terminal_within_80_columns() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = big(cwd);
    let Some(screen) = on_terminal("get c/tantivy/big -o out", cwd) else {
        return;
    };
    assert!(std::fs::read(cwd.join("out")).unwrap() == data);
    let shown = bar_frames(&screen, "reading");
    for f in &shown {
        assert!(
            f.chars().count() <= 80,
            "{} columns: {f:?}",
            f.chars().count()
        );
    }
    // --json on a terminal: no progress.
    let quiet = on_terminal("--json get c/tantivy/big -o out2", cwd).unwrap();
    assert!(!quiet.contains("eta"), "{quiet:?}");
    // put -r shows it too.
    std::fs::create_dir(cwd.join("dir")).unwrap();
    std::fs::write(cwd.join("dir/big"), &data).unwrap();
    let upload = on_terminal("put -r dir d/tantivy", cwd).unwrap();
    assert!(upload.contains("uploading"), "{upload:?}");
    // So does verify, by the bytes it reads and hashes.
    let verify = on_terminal("verify", cwd).unwrap();
    let shown = bar_frames(&verify, "verifying");
    let bars = shown.iter().filter(|f| f.contains("verifying"));
    assert!(bars.clone().all(|f| f.chars().count() <= 80), "{shown:?}");
}

#[test]
fn export_import_and_gc_show_bytes_rate_and_eta() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    big(cwd);
    let within_80 = |shown: &[String], what: &str| {
        let bars = shown.iter().filter(|f| f.contains(what));
        assert!(bars.clone().all(|f| f.chars().count() <= 80), "{shown:?}");
    };
    for (args, what) in [
        ("export c out.tar", "exporting"),
        ("export c outdir", "exporting"),
        ("--data-dir other import c out.tar", "importing"),
        ("--data-dir other2 import c outdir", "importing"),
        ("import c out.tar --as d", "importing"),
        ("import c outdir --as e", "importing"),
        ("gc --dry-run", "collecting garbage"),
    ] {
        let Some(screen) = on_terminal(args, cwd) else {
            return;
        };
        within_80(&bar_frames(&screen, what), what);
    }
    let listed = ok(&["ls"], cwd);
    for collection in ["c", "d", "e"] {
        assert!(listed.lines().any(|l| l.trim() == collection), "{listed}");
    }
    for other in ["other", "other2"] {
        let listed = ok(&["--data-dir", other, "ls"], cwd);
        assert_eq!(listed.trim(), "c");
    }
}

#[test]
fn no_progress_in_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = big(cwd);
    let out = run(&["get", "c/tantivy/big"], cwd);
    assert!(out.status.success());
    assert!(out.stdout == data);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_damaged_blob_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = big(cwd);
    let blob = only_blob(&cwd.join("segstore-data"));
    let mut bad = data.clone();
    bad[19_000_000] ^= 1;
    std::fs::write(&blob, &bad).unwrap();
    let out = run(&["get", "c/tantivy/big", "-o", "out"], cwd);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
