//! The `segstore` command line: a thin layer over the library.
//!
//! Exit codes (see README): 0 success, 1 other error, 2 usage error, 3 not found,
//! 4 invalid path or input, 5 conflict, 6 corrupt data, 7 storage or backend failure.

mod commands;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Content-addressed, crash-safe storage for search-engine segment files.
#[derive(Debug, Parser)]
#[command(name = "segstore", version, about)]
pub struct Cli {
    /// Directory of the local store.
    #[arg(
        long,
        global = true,
        default_value = "./segstore-data",
        env = "SEGSTORE_DATA_DIR"
    )]
    pub data_dir: PathBuf,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show segstore working end to end on the local store: write, rename, read, list.
    Demo,
    /// Store a file at a path (`collection/backend/[shard/]segment`), from a file or stdin.
    Put {
        /// Target path.
        path: String,
        /// Source file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
    },
    /// Print a file to stdout, or write it to `--output`.
    Get {
        /// Path to read.
        path: String,
        /// Output file.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List paths under a prefix (`collection/backend[/shard[/segment-prefix]]`).
    Ls {
        /// The prefix.
        prefix: String,
    },
    /// Rename a file atomically, replacing the target.
    Mv {
        /// Source path.
        from: String,
        /// Target path.
        to: String,
    },
    /// Delete a file (deleting a missing file succeeds).
    Rm {
        /// Path to delete.
        path: String,
    },
    /// Show a collection's version history, newest first.
    Log {
        /// The collection.
        collection: String,
        /// How many versions to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("segstore: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(commands::exit_code(&e))
        }
    }
}
