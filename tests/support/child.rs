//! Child processes for the multi-process tests: the test binary re-executes itself with
//! `--exact NAME`, so a `#[test]` that returns at once unless its environment says
//! otherwise becomes the child's body. A child reports each acknowledged commit by
//! printing an `ACK ...` line on stdout *after* the commit returned; stdout is line
//! buffered, so a line seen by the parent was printed whole, and a SIGKILL can only lose
//! the line of a commit that was then never claimed.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The prefix of an acknowledgement line.
const ACK: &str = "ACK ";
/// The line a child prints once it is connected and about to commit.
const READY: &str = "READY";

/// A command that runs only the test `test_name` of this binary, with `env` set.
pub fn command(test_name: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command.args(["--exact", test_name, "--nocapture", "--test-threads=1"]);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// An environment variable of a child; panics if it is missing or malformed, since the
/// parent always sets it.
pub fn env<T: std::str::FromStr>(name: &str) -> T {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} malformed"))
}

/// In a child: reports one acknowledged commit.
pub fn ack(what: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{ACK}{what}").expect("writing an ACK");
    out.flush().expect("flushing an ACK");
}

/// In a child: says it is set up, so that the parent's kill lands among commits rather
/// than during start-up.
pub fn ready() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY}").expect("writing READY");
    out.flush().expect("flushing READY");
}

/// The payloads of the `ACK` lines in `stdout`, in order. With `--nocapture`, libtest's
/// `test NAME ... ` may precede the first line a test prints, hence no anchoring.
pub fn acks(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once(ACK).map(|(_, rest)| rest.to_owned()))
        .collect()
}

/// Runs every command to completion at once, asserts each succeeded, and returns each
/// one's acknowledgements.
pub fn run_all(commands: Vec<Command>) -> Vec<Vec<String>> {
    let handles: Vec<JoinHandle<Output>> = commands
        .into_iter()
        .map(|mut command| std::thread::spawn(move || command.output().expect("spawning a child")))
        .collect();
    handles
        .into_iter()
        .map(|h| {
            let out = h.join().expect("child waiter");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            acks(&stdout)
        })
        .collect()
}

/// Runs `n` children of `test_name` at once, child `i` with the environment `env(i)`, off
/// the async runtime; asserts each succeeded and returns each one's acknowledgements.
pub async fn run_children(
    test_name: &str,
    n: usize,
    env: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Vec<Vec<String>> {
    let commands = (0..n).map(|i| command(test_name, &env(i))).collect();
    tokio::task::spawn_blocking(move || run_all(commands))
        .await
        .expect("the children's waiter")
}

/// The `(writer, file)` pairs of acknowledgements written as `"{writer} {file}"`.
pub fn writer_file_acks(outputs: &[Vec<String>]) -> Vec<(usize, usize)> {
    outputs
        .iter()
        .flatten()
        .map(|line| {
            let (w, i) = line.split_once(' ').expect("an ack of \"writer file\"");
            (w.parse().unwrap(), i.parse().unwrap())
        })
        .collect()
}

/// A child whose stdout is read line by line as it runs, to be killed at some moment.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    seen: Vec<String>,
}

impl Running {
    /// Spawns `command` with stdout piped (stderr goes to `stderr`).
    pub fn spawn(mut command: Command, stderr: Stdio) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning a child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits for the child's `READY` line. Panics if the child exits or stays silent for
    /// `limit`.
    pub fn wait_ready(&mut self, limit: Duration) {
        self.wait_for("READY", limit, |line| line.ends_with(READY));
    }

    /// Waits until the child acknowledged its first commit, so that a kill after it
    /// cannot find a child still starting on a loaded machine.
    pub fn wait_first_ack(&mut self, limit: Duration) {
        if !acks(&self.seen.join("\n")).is_empty() {
            return;
        }
        self.wait_for("a first ACK", limit, |line| line.contains(ACK));
    }

    fn wait_for(&mut self, what: &str, limit: Duration, found: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if found(&line) => {
                    if line.contains(ACK) {
                        self.seen.push(line);
                    }
                    return;
                }
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("child printed no {what} within {limit:?}");
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("waiting for the child");
                    panic!("child exited before its {what}: {status}");
                }
            }
        }
    }

    /// Kills the child with SIGKILL, reaps it, and returns every acknowledgement it
    /// printed. Panics if the child had already exited (it should commit until killed).
    pub fn kill(mut self) -> Vec<String> {
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet (so the
        // pid cannot have been reused).
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed");
        let status = self.child.wait().expect("waiting for the child");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stdout reader");
        }
        self.seen.extend(self.lines.try_iter());
        assert!(
            std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL),
            "child ended on its own before the kill ({status}); its output: {:?}",
            self.seen
        );
        acks(&self.seen.join("\n"))
    }
}

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
