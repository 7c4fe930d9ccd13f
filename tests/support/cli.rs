//! Running the real `segstore` binary: one set of helpers for every CLI test. The
//! environment is cleared of segstore's variables so that the caller's shell cannot leak
//! settings into a test.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_segstore");

/// `segstore ARGS` in `cwd` with only `env` of segstore's variables set; stdin is empty,
/// stdout and stderr are captured.
pub fn command(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd);
    for var in segstore::config::ENV_VARS
        .iter()
        .chain(&["SEGSTORE_CONFIG"])
    {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs [`command`] to completion.
pub fn run_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    command(args, cwd, env).output().expect("run segstore")
}

/// Runs `segstore ARGS` in `cwd` with a clean environment.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    run_env(args, cwd, &[])
}

/// Runs `segstore ARGS`, asserts that it succeeded and returns its stdout.
pub fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    assert_ok(&out, &format!("segstore {args:?}"));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `segstore --json ARGS`, asserts success and parses its stdout as one JSON value.
pub fn json(args: &[&str], cwd: &Path) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(&all, cwd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the process succeeded, printing both streams if not.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `script` with bash (`-euo pipefail`) in `dir`, `segstore` first on the `PATH`,
/// segstore's variables cleared and `env` set.
pub fn script(script: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let bin = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path);
    for var in segstore::config::ENV_VARS
        .iter()
        .chain(&["SEGSTORE_CONFIG"])
    {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

/// Every file under `dir` with its size, sorted: a fingerprint of a store.
pub fn tree(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let len = e.metadata().unwrap().len();
                out.push((p.strip_prefix(root).unwrap().display().to_string(), len));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The only blob file of a local store with one blob.
pub fn only_blob(store: &Path) -> std::path::PathBuf {
    let blobs: Vec<_> = tree(&store.join("blobs"))
        .into_iter()
        .filter(|(p, _)| !p.ends_with(".obao"))
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    store.join("blobs").join(&blobs[0].0)
}
