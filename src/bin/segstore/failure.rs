//! Why a command failed, its documented exit code, and how it is printed.
//!
//! Exit codes (README, "Exit codes"): 0 success, 1 other error, 2 usage error (including
//! settings that conflict or would be ignored), 3 not found (a path, a collection, a
//! snapshot, the store itself, a local input file), 4 invalid path or input (also a local
//! file that cannot be read or written), 5 conflict or busy, 6 corrupt data, 7 storage or
//! backend failure, 130 interrupted (Ctrl-C).

use std::fmt;

use segstore::Error;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments, or settings that conflict or would be ignored (exit 2).
    Usage(String),
    /// The store, a collection or a snapshot does not exist (exit 3).
    Missing(String),
    /// A local file named on the command line (input or output, not the store).
    LocalFile {
        what: String,
        source: std::io::Error,
    },
    /// Another process holds what this command needs, past the wait (exit 5).
    Busy(String),
    /// The store reported an error.
    Store(Error),
    /// Some `doctor` checks failed (exit 1); each is printed on its own line.
    Checks(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Missing(m) | Failure::Busy(m) | Failure::Checks(m) => {
                f.write_str(m)
            }
            Failure::LocalFile { what, source } => write!(f, "{what}: {source}"),
            Failure::Store(Error::NotFound { path }) => match manifest_version(path) {
                Some((collection, version)) => write!(
                    f,
                    "version {version} of collection {collection:?} does not exist (it was \
                     never written, or retention removed it; see `segstore log {collection}`)"
                ),
                None => write!(f, "not found: {path}"),
            },
            Failure::Store(e) => write!(f, "{e}"),
        }
    }
}

/// The collection and version a manifest key names: `manifests/<collection>/<version>`.
fn manifest_version(key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix(segstore::keys::MANIFESTS_PREFIX)?;
    let (collection, file) = rest.split_once('/')?;
    Some((
        segstore::keys::decode_component(collection)?,
        segstore::keys::parse_manifest_version(file)?,
    ))
}

impl Failure {
    /// A local file error while doing `what`.
    pub fn local(what: impl Into<String>, source: std::io::Error) -> Self {
        Failure::LocalFile {
            what: what.into(),
            source,
        }
    }

    /// Whether this is a closed stdout (`segstore get f | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Failure::LocalFile { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Missing(_) => 3,
            Failure::LocalFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 3,
            Failure::LocalFile { .. } => 4,
            Failure::Busy(_) => 5,
            Failure::Checks(_) => 1,
            Failure::Store(e) => store_exit_code(e),
        }
    }

    /// A stable name of the kind of failure, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            2 => "usage",
            3 => "not_found",
            4 => "invalid_input",
            5 => "conflict",
            6 => "corrupt",
            7 => "storage",
            _ => "other",
        }
    }

    /// The chain of causes, for `-v`.
    pub fn causes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = match self {
            Failure::Store(e) => std::error::Error::source(e),
            _ => None,
        };
        while let Some(s) = source {
            out.push(s.to_string());
            source = s.source();
        }
        out
    }
}

/// Maps a store error to the documented exit code.
pub fn store_exit_code(e: &Error) -> u8 {
    match e {
        Error::NotFound { .. } | Error::VersionExpired { .. } => 3,
        Error::InvalidPath { .. }
        | Error::OutOfRange { .. }
        | Error::InvalidConfig(_)
        | Error::SettingsMismatch { .. } => 4,
        Error::Conflict { .. }
        | Error::GcInProgress { .. }
        | Error::CacheLocked { .. }
        | Error::Diverged { .. } => 5,
        Error::Corrupt { .. } | Error::CorruptManifest { .. } => 6,
        Error::Io { .. }
        | Error::StorageFull { .. }
        | Error::Backend { .. }
        | Error::PermissionDenied { .. }
        | Error::BucketNotFound { .. }
        | Error::Unavailable { .. }
        | Error::CommitOutcomeUnknown { .. }
        | Error::ReferenceGone { .. }
        | Error::ReadOnly(_)
        | Error::Unsupported(_) => 7,
        _ => 1,
    }
}

/// Prints a failure to stderr: one line (`--json`: one JSON object), causes with `-v`.
pub fn print(failure: &Failure, json: bool, verbose: bool) {
    let causes = if verbose {
        failure.causes()
    } else {
        Vec::new()
    };
    if json {
        let value = serde_json::json!({"error": {
            "code": failure.exit_code(),
            "kind": failure.kind(),
            "message": failure.to_string(),
            "causes": causes,
        }});
        eprintln!("{value}");
    } else {
        eprintln!("segstore: {failure}");
        for c in causes {
            eprintln!("  caused by: {c}");
        }
    }
}
