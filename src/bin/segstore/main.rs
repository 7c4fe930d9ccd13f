//! The `segstore` command line: a thin layer over the library.
//!
//! Exit codes: see [`failure`] and the README.

mod commands;
mod demo;
mod doctor;
mod examples;
mod failure;
mod fetch;
mod interrupt;
mod lifecycle;
mod metrics;
mod open;
mod output;
mod read;
mod replicate;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Content-addressed, crash-safe storage for search-engine segment files.
#[derive(Debug, Parser)]
#[command(name = "segstore", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// A TOML config file (see README); without one, the store is local in `--data-dir`.
    #[arg(long, global = true, env = "SEGSTORE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Directory of the local store, when no config file is given (default
    /// `./segstore-data`, or `SEGSTORE_DATA_DIR`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of text (errors too, on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for a cache directory another segstore command holds.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,

    /// Print the causes of an error too, and log at `info` (unless `--log-level`).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Log messages at this level and above to stderr: error, warn (default), info, debug
    /// or trace.
    #[arg(long, global = true, value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// Examples shown by `segstore --help`.
const EXAMPLES: &str = "Examples:
  segstore put products/tantivy/seg1.idx seg1.idx   one file, as a new version
  segstore put -r index/ products/tantivy           a directory as one commit
  segstore ls -l products                           files with sizes
  segstore get products/tantivy/meta.json --snapshot nightly
  segstore diff products 41 42                      changes between versions
  segstore gc --dry-run                             what GC would delete, why
  segstore --json log products                      machine-readable history
  segstore completions bash > /etc/bash_completion.d/segstore
";

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show segstore working end to end, in a store of its own (`./segstore-demo`).
    #[command(after_help = examples::DEMO)]
    Demo,
    /// Store a file, or with `-r` a whole directory as one commit.
    ///
    /// `put PATH [FILE]` stores FILE (or stdin) at PATH (`collection/backend/[shard/]segment`);
    /// `put -r DIR PREFIX` stores every file of DIR under PREFIX as one atomic commit.
    #[command(after_help = examples::PUT)]
    Put {
        /// Target path; with `-r`, the directory to upload.
        path: String,
        /// Source file; `-` or nothing reads stdin. With `-r`, the prefix
        /// `collection/backend[/shard]` (subdirectories of DIR become shards).
        file: Option<PathBuf>,
        /// Upload the directory PATH under the prefix FILE, as one atomic commit; symbolic
        /// links and special files are refused.
        #[arg(short = 'r', long)]
        recursive: bool,
        #[command(flatten)]
        note: NoteArgs,
    },
    /// Print a file to stdout, or write it to `--output` (alias `cat`).
    #[command(visible_alias = "cat", after_help = examples::GET)]
    Get {
        /// Path to read.
        path: String,
        /// Output file; `-` is stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        at: read::At,
    },
    /// List the collections, or the files under a prefix.
    ///
    /// The prefix is `collection[/backend[/shard[/segment-prefix]]]`.
    #[command(after_help = examples::LS)]
    Ls {
        /// The prefix; without one, the collections.
        prefix: Option<String>,
        /// Long listing: sizes and hashes of files; files, bytes and version of collections.
        #[arg(short, long)]
        long: bool,
        /// Without a prefix: every file of every collection.
        #[arg(short = 'R', long)]
        recursive: bool,
        #[command(flatten)]
        at: read::At,
    },
    /// Logical and deduplicated bytes per collection, or of one prefix.
    #[command(after_help = examples::DU)]
    Du {
        /// The prefix (`collection[/backend[/shard[/segment-prefix]]]`); without one, every
        /// collection.
        prefix: Option<String>,
        #[command(flatten)]
        at: read::At,
    },
    /// Rename a file atomically, replacing the target.
    #[command(after_help = examples::MV)]
    Mv {
        /// Source path.
        from: String,
        /// Target path.
        to: String,
        #[command(flatten)]
        note: NoteArgs,
    },
    /// Delete a file, or with `-r --yes` every file under a prefix or of a collection.
    ///
    /// Deleting a missing file succeeds. `rm -r` deletes as one commit; earlier versions stay
    /// until retention and GC remove them (`snapshot restore` brings them back).
    #[command(after_help = examples::RM)]
    Rm {
        /// Path to delete; with `-r`, a prefix or a collection name.
        path: String,
        /// Delete every file under the prefix.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Confirm `-r` (without it, `rm -r` says what it would delete and exits 2).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        note: NoteArgs,
    },
    /// Manage snapshots (named pins of a version).
    #[command(after_help = examples::SNAPSHOT)]
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Show the paths added, removed and changed between two versions or snapshots.
    #[command(after_help = examples::DIFF)]
    Diff {
        /// The collection.
        collection: String,
        /// The older state: a version number or a snapshot name.
        from: String,
        /// The newer state (default: the latest version).
        to: Option<String>,
    },
    /// Apply retention and delete unreferenced blobs older than the grace period.
    #[command(after_help = examples::GC)]
    Gc {
        /// Report what would be deleted and why each kept version is kept; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced objects younger than this (e.g. `1h`, `90m`). Default: the
        /// config file's `[gc] grace`, else 1h.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<std::time::Duration>,
        /// Keep the newest N versions of each collection. Default: the config file's
        /// `[retention] keep_last`, else 20. These flags replace the config file's
        /// `[retention]` rules; a collection with a `[retention.collections.NAME]` section
        /// keeps its own.
        #[arg(long)]
        keep_last: Option<u64>,
        /// Also keep versions younger than this (e.g. `24h`). Default: the config file's
        /// `[retention] keep_within`, else 24h.
        #[arg(long, value_parser = parse_duration)]
        keep_within: Option<std::time::Duration>,
        /// Also keep the newest version of each of the last N hours (UTC).
        #[arg(long)]
        keep_hourly: Option<u64>,
        /// Also keep the newest version of each of the last N days (UTC), as restic does.
        /// Default: the config file's `[retention] keep_daily`, else none.
        #[arg(long)]
        keep_daily: Option<u64>,
        /// Also keep the newest version of each of the last N weeks (Monday to Sunday).
        #[arg(long)]
        keep_weekly: Option<u64>,
        /// Also keep the newest version of each of the last N months.
        #[arg(long)]
        keep_monthly: Option<u64>,
        /// Also keep the newest version of each of the last N years.
        #[arg(long)]
        keep_yearly: Option<u64>,
    },
    /// Check that every referenced blob exists and matches its hash.
    #[command(after_help = examples::VERIFY)]
    Verify {
        /// Check only this fraction of blobs (0.0 to 1.0).
        #[arg(long, value_parser = parse_fraction)]
        sample: Option<f64>,
        /// Remove corrupt blobs, so that writing the same content again (or importing a
        /// backup under another collection name) stores a good copy.
        #[arg(long)]
        repair: bool,
    },
    /// Logical against physical bytes, blob and version counts.
    #[command(after_help = examples::STATS)]
    Stats,
    /// Export a collection (every version, or one snapshot) to a directory or a `.tar`.
    #[command(after_help = examples::EXPORT)]
    Export {
        /// The collection.
        collection: String,
        /// Target directory, or an archive: `.tar`, `.tar.zst`, `.tar.gz`, `-` (stdout).
        dest: PathBuf,
        /// Export only this snapshot.
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Import a collection from an export directory or `.tar`, verifying every object.
    #[command(after_help = examples::IMPORT)]
    Import {
        /// The collection.
        collection: String,
        /// The export directory, or an archive: `.tar`, `.tar.zst`, `.tar.gz`, `-` (stdin).
        source: PathBuf,
        /// Import under this name (versions renumbered, snapshots kept).
        #[arg(long = "as", value_name = "NAME")]
        rename: Option<String>,
    },
    /// Make collections of another store equal to this one's: copies only what the
    /// destination lacks, verified; see docs/OPERATIONS.md.
    #[command(after_help = examples::SYNC)]
    Sync(replicate::SyncArgs),
    /// Create a collection sharing every object of a version of another (zero copy).
    #[command(after_help = examples::FORK)]
    Fork(replicate::ForkArgs),
    /// Show a collection's retained versions, newest first, with their snapshots.
    #[command(after_help = examples::LOG)]
    Log {
        /// The collection.
        collection: String,
        /// How many versions to show, newest first (`0` shows none, as in git).
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u64,
        /// Show every retained version.
        #[arg(long, conflicts_with = "limit")]
        all: bool,
    },
    /// Check the store: connectivity, credentials, conditional writes, L1, clock skew.
    ///
    /// Each line is ok, warn or fail; exits 1 if any check fails. Writes nothing.
    #[command(after_help = examples::DOCTOR)]
    Doctor,
    /// Print a shell completion script to stdout.
    ///
    /// For example `segstore completions bash > /etc/bash_completion.d/segstore`.
    #[command(after_help = examples::COMPLETIONS)]
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// Shells that `segstore completions` writes a script for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// Snapshot subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Pin a version (default: the latest) under a name.
    Create {
        /// The collection.
        collection: String,
        /// The snapshot's name.
        name: String,
        /// The version to pin.
        #[arg(long)]
        version: Option<u64>,
        /// Expire the snapshot after this long (e.g. `7d`).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// List a collection's snapshots.
    List {
        /// The collection.
        collection: String,
    },
    /// Delete a snapshot (the data it pinned becomes collectable).
    Delete {
        /// The collection.
        collection: String,
        /// The snapshot's name.
        name: String,
    },
    /// Commit a new version equal to a snapshot or version (history is kept).
    Restore {
        /// The collection.
        collection: String,
        /// A snapshot name or a version number.
        target: String,
        #[command(flatten)]
        note: NoteArgs,
    },
}

/// `-m MESSAGE` and `--meta KEY=VALUE` of the commands that commit a version.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoteArgs {
    /// A message recorded with the new version (shown by `log`).
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Metadata recorded with the new version; repeat for more keys.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
}

impl NoteArgs {
    /// The note to record, if a message or metadata was given.
    pub fn into_note(self) -> Option<segstore::manifest::CommitNote> {
        if self.message.is_none() && self.meta.is_empty() {
            return None;
        }
        Some(segstore::manifest::CommitNote {
            message: self.message.unwrap_or_default(),
            meta: self.meta.into_iter().collect(),
        })
    }
}

/// The longest duration accepted on the command line: 100,000 years. Anything longer
/// means "forever" in practice, and beyond it times stop fitting in milliseconds since
/// the epoch and in the platform's time type.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(100_000 * 31_557_600);

/// A humantime duration (`90m`, `7d`, `10years`), at most [`MAX_DURATION`].
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is longer than the limit of 100000 years"));
    }
    Ok(d)
}

/// `KEY=VALUE` of `put --meta`.
fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// A fraction from 0.0 to 1.0.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a number from 0.0 to 1.0")),
    }
}

/// A time in milliseconds since the epoch, as RFC 3339 (`millis` keeps the milliseconds),
/// or as a plain count when it is beyond what RFC 3339 can spell (after the year 9999, from
/// a far expiry or a manifest another program wrote).
pub fn timestamp(ms: u64, millis: bool) -> String {
    let when = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms));
    // 9999-12-31T23:59:59.999Z.
    match when.filter(|_| ms <= 253_402_300_799_999) {
        Some(t) if millis => humantime::format_rfc3339_millis(t).to_string(),
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => format!("{ms} ms after 1970-01-01"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, verbose) = (cli.json, cli.verbose);
    let level = match cli.log_level.as_deref() {
        Some(l) => l.parse().unwrap_or(tracing::Level::WARN),
        None if verbose => tracing::Level::INFO,
        None => tracing::Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    // `-v` shows the metrics of the run; `--json` keeps stderr for the JSON error alone.
    let recorded = (verbose && !json).then(metrics::record).flatten();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("segstore: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = commands::run(cli) => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    let code = match outcome {
        Some(Ok(())) => 0,
        Some(Err(f)) if f.is_broken_pipe() => 0,
        Some(Err(f)) => {
            failure::print(&f, json, verbose);
            f.exit_code()
        }
        None => {
            // The command's work was dropped above: uploads removed their temp files.
            let message = runtime.block_on(interrupt::report());
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({"error": {"code": 130, "kind": "interrupted", "message": message, "causes": []}})
                );
            } else {
                eprintln!("segstore: {message}");
            }
            130
        }
    };
    if let Some(snapshotter) = &recorded {
        for line in metrics::lines(snapshotter) {
            eprintln!("segstore: metric {line}");
        }
    }
    // Blocking tasks still running (a read of stdin) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}
