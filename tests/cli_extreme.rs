//! Every subcommand of the `segstore` binary with extreme arguments: huge, zero and negative
//! numbers and durations, non-UTF-8 paths, 10,000-character names. Errors are fine (a usage
//! error, a typed failure); a panic (exit code 101) or a signal is not.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn segstore(args: &[OsString], cwd: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_segstore"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SEGSTORE_CONFIG")
        .env_remove("SEGSTORE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.output().expect("run segstore")
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

/// Runs `args` and checks that segstore did not panic; returns the exit code.
fn no_panic(args: &[OsString], cwd: &Path) -> i32 {
    let out = segstore(args, cwd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.len() > 60 {
                let head: String = s.chars().take(60).collect();
                format!("{head}... ({} bytes)", a.len())
            } else {
                s.into_owned()
            }
        })
        .collect();
    assert!(
        code.is_some() && code != Some(101) && !stderr.contains("panicked"),
        "segstore {shown:?} exited with {:?}:\n{stderr}",
        out.status
    );
    code.unwrap()
}

#[test]
fn a_snapshot_with_a_far_expiry_lists() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"x").unwrap();
    let run = |args: &[&str]| no_panic(&args.iter().map(|a| os(a)).collect::<Vec<_>>(), cwd);
    assert_eq!(run(&["put", "c/tantivy/s/f", "f"]), 0);
    for (i, ttl) in ["10000years", "100000years", "0s", "1ns"]
        .iter()
        .enumerate()
    {
        let name = format!("s{i}");
        assert_eq!(
            run(&["snapshot", "create", "c", &name, "--ttl", ttl]),
            0,
            "{ttl}"
        );
    }
    assert_eq!(run(&["snapshot", "list", "c"]), 0);
    assert_eq!(run(&["--json", "snapshot", "list", "c"]), 0);
    // Longer than the limit, or more than a duration holds: a usage error.
    for ttl in [
        "100001years",
        "99999999999999999999years",
        "-1s",
        "",
        "forever",
    ] {
        assert_eq!(
            run(&["snapshot", "create", "c", "x", "--ttl", ttl]),
            2,
            "{ttl}"
        );
    }
}

#[test]
fn every_subcommand_survives_extreme_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"content").unwrap();
    let setup = |args: &[&str]| no_panic(&args.iter().map(|a| os(a)).collect::<Vec<_>>(), cwd);
    assert_eq!(setup(&["put", "c/tantivy/s/f", "f"]), 0);
    assert_eq!(setup(&["put", "c/tantivy/s/g", "f"]), 0);
    assert_eq!(setup(&["snapshot", "create", "c", "snap"]), 0);

    let long = "x".repeat(10_000);
    let long_utf8 = "é".repeat(5_000);
    let too_long_encoded = "é".repeat(127);
    let non_utf8 = OsStr::from_bytes(b"bad-\xff\xfe-name").to_os_string();
    let names: Vec<OsString> = vec![
        os(&long),
        os(&long_utf8),
        os(&too_long_encoded),
        non_utf8.clone(),
        os(""),
        os("."),
        os(".."),
        os("-1"),
        os("c"),
    ];
    let numbers = [
        "0",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "1e300",
        "NaN",
    ];
    let durations = [
        "0s",
        "1ns",
        "-1s",
        "10000years",
        "100000years",
        "99999999999999999999years",
        "",
    ];
    let fractions = ["0", "1", "-0.5", "1.5", "NaN", "inf", "1e-300"];
    let paths: Vec<OsString> = vec![
        non_utf8.clone(),
        os(&format!("{long}.tar")),
        os(&"d/".repeat(3000)),
        os("missing.tar"),
        os("f"),
        os("/dev/null"),
    ];

    let mut cases: Vec<Vec<OsString>> = Vec::new();
    let mut add = |parts: &[&OsStr]| cases.push(parts.iter().map(|p| p.to_os_string()).collect());
    let o = |s: &str| os(s);
    for name in &names {
        let mut path = o("c/tantivy/s/");
        path.push(name);
        let mut coll_path = name.clone();
        coll_path.push("/tantivy/s/f");
        for p in [&path, &coll_path, name] {
            add(&[&o("put"), p, &o("f")]);
            add(&[&o("get"), p]);
            add(&[&o("ls"), p]);
            add(&[&o("mv"), p, &o("c/tantivy/s/h")]);
            add(&[&o("mv"), &o("c/tantivy/s/g"), p]);
            add(&[&o("rm"), p]);
            add(&[&o("rm"), &o("-r"), p]);
            add(&[&o("ls"), &o("-l"), p]);
            add(&[&o("du"), p]);
            add(&[&o("put"), &o("-r"), &o("."), p]);
        }
        add(&[&o("put"), &o("-r"), name, &o("c/tantivy")]);
        add(&[&o("get"), &o("c/tantivy/s/f"), &o("--snapshot"), name]);
        add(&[&o("ls"), &o("c"), &o("--snapshot"), name]);
        add(&[&o("put"), &o("c/tantivy/s/m"), &o("f"), &o("-m"), name]);
        let mut meta = name.clone();
        meta.push("=v");
        add(&[&o("put"), &o("c/tantivy/s/m"), &o("f"), &o("--meta"), &meta]);
        add(&[&o("snapshot"), &o("create"), &o("c"), name]);
        add(&[&o("snapshot"), &o("create"), name, &o("s")]);
        add(&[&o("snapshot"), &o("list"), name]);
        add(&[&o("snapshot"), &o("delete"), &o("c"), name]);
        add(&[&o("snapshot"), &o("restore"), &o("c"), name]);
        add(&[&o("snapshot"), &o("restore"), name, &o("1")]);
        add(&[&o("diff"), name, &o("1")]);
        add(&[&o("diff"), &o("c"), name]);
        add(&[&o("diff"), &o("c"), &o("1"), name]);
        add(&[&o("log"), name]);
        add(&[&o("export"), name, &o("out-dir")]);
        add(&[
            &o("export"),
            &o("c"),
            &o("out-snap"),
            &o("--snapshot"),
            name,
        ]);
        add(&[&o("import"), name, &o("f")]);
    }
    for n in numbers {
        add(&[&o("log"), &o("c"), &o("-n"), &o(n)]);
        add(&[
            &o("snapshot"),
            &o("create"),
            &o("c"),
            &o("v"),
            &o("--version"),
            &o(n),
        ]);
        add(&[&o("snapshot"), &o("restore"), &o("c"), &o(n)]);
        add(&[&o("diff"), &o("c"), &o(n), &o(n)]);
        add(&[&o("gc"), &o("--dry-run"), &o("--keep-last"), &o(n)]);
        add(&[&o("get"), &o("c/tantivy/s/f"), &o("--version"), &o(n)]);
        add(&[&o("du"), &o("c"), &o("--version"), &o(n)]);
        for rule in ["--keep-daily", "--keep-weekly", "--keep-monthly"] {
            add(&[&o("gc"), &o("--dry-run"), &o(rule), &o(n)]);
        }
    }
    for d in durations {
        add(&[&o("gc"), &o("--dry-run"), &o("--grace"), &o(d)]);
        add(&[&o("gc"), &o("--dry-run"), &o("--keep-within"), &o(d)]);
        add(&[
            &o("snapshot"),
            &o("create"),
            &o("c"),
            &o("t"),
            &o("--ttl"),
            &o(d),
        ]);
    }
    for f in fractions {
        add(&[&o("verify"), &o("--sample"), &o(f)]);
    }
    for p in &paths {
        add(&[&o("put"), &o("c/tantivy/s/p"), p]);
        add(&[&o("get"), &o("c/tantivy/s/f"), &o("-o"), p]);
        add(&[&o("export"), &o("c"), p]);
        add(&[&o("import"), &o("d"), p]);
        add(&[&o("--data-dir"), p, &o("stats")]);
        add(&[&o("--config"), p, &o("stats")]);
    }
    add(&[&o("stats")]);
    add(&[&o("--json"), &o("stats")]);
    add(&[&o("verify")]);
    add(&[&o("log"), &o("c")]);
    add(&[&o("--json"), &o("log"), &o("c")]);
    add(&[&o("snapshot"), &o("list"), &o("c")]);
    add(&[&o("gc")]);
    add(&[&o("doctor")]);
    add(&[&o("--json"), &o("doctor")]);
    add(&[&o("completions"), &o("bash")]);
    add(&[&o("completions"), &o("powershell")]);
    add(&[&o("ls"), &o("-l"), &o("-R")]);
    add(&[&o("--json"), &o("du")]);

    for args in &cases {
        no_panic(args, cwd);
    }
    // The store still works after all of that.
    assert_eq!(setup(&["put", "c/tantivy/s/last", "f"]), 0);
    assert_eq!(setup(&["get", "c/tantivy/s/last"]), 0);
    assert_eq!(setup(&["verify"]), 0);
}
