//! `segstore doctor`: checks that the configured store can be used, each line ok, warn or
//! fail. It writes nothing: the conditional-write result is the one the store recorded
//! when it was created, and credentials are used, never printed.

use std::sync::Arc;

use segstore::backend::local::LocalBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::config::BackendKind;
use segstore::identity::ConditionalWrites;
use segstore::{Error, StorageConfig};
use serde_json::json;

use crate::failure::Failure;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

#[derive(Default)]
struct Report {
    lines: Vec<(&'static str, Level, String)>,
}

impl Report {
    fn add(&mut self, check: &'static str, level: Level, detail: impl Into<String>) {
        self.lines.push((check, level, detail.into()));
    }
}

/// The L2 backend the config names, without creating a store.
async fn backend(config: &StorageConfig, r: &mut Report) -> Option<Arc<dyn ObjectBackend>> {
    let s = &config.storage;
    let l2 = match s.backend {
        BackendKind::Cached => s.cached.as_ref().map_or(BackendKind::S3, |c| c.l2_backend),
        other => other,
    };
    match (l2, &s.local, &s.s3) {
        (BackendKind::Local, Some(local), _) => {
            let dir = local.data_dir.display();
            if !LocalBackend::is_store(&local.data_dir) {
                r.add("store", Level::Fail, format!("no segstore store at {dir}"));
                return None;
            }
            r.add("credentials", Level::Ok, "none needed (local disk)");
            match LocalBackend::open(&local.data_dir).await {
                Ok(b) => {
                    r.add("connectivity", Level::Ok, format!("store directory {dir}"));
                    Some(Arc::new(b))
                }
                Err(e) => {
                    r.add("connectivity", Level::Fail, format!("{dir}: {e}"));
                    None
                }
            }
        }
        (BackendKind::S3, _, Some(s3)) => {
            let place = format!("bucket {} prefix {:?}", s3.bucket, s3.prefix);
            let backend = match S3Backend::connect(s3.clone()).await {
                Ok(b) => b,
                Err(e @ Error::PermissionDenied { .. }) => {
                    r.add("connectivity", Level::Ok, place);
                    r.add("credentials", Level::Fail, format!("refused: {e}"));
                    return None;
                }
                Err(e) => {
                    r.add("connectivity", Level::Fail, format!("{place}: {e}"));
                    r.add("credentials", Level::Warn, "not checked (no connection)");
                    return None;
                }
            };
            // One read proves the endpoint answers and accepts the credentials.
            match segstore::identity::read(&backend).await {
                Ok(_) => {
                    r.add("connectivity", Level::Ok, place);
                    r.add(
                        "credentials",
                        Level::Ok,
                        "accepted by the server (not shown)",
                    );
                    Some(Arc::new(backend))
                }
                Err(e @ Error::PermissionDenied { .. }) => {
                    r.add("connectivity", Level::Ok, place);
                    r.add("credentials", Level::Fail, format!("refused: {e}"));
                    None
                }
                Err(e) => {
                    r.add("connectivity", Level::Fail, format!("{place}: {e}"));
                    r.add("credentials", Level::Warn, "not checked (no connection)");
                    None
                }
            }
        }
        _ => {
            r.add("config", Level::Fail, "the backend's section is missing");
            None
        }
    }
}

/// The L1 directory of a cached store: a real directory this user may write, checked
/// without writing.
fn l1(config: &StorageConfig, r: &mut Report) {
    let Some(cached) = config
        .storage
        .cached
        .as_ref()
        .filter(|_| config.storage.backend == BackendKind::Cached)
    else {
        return;
    };
    let dir = &cached.l1_path;
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.add(
            "l1 directory",
            Level::Warn,
            format!("{shown} does not exist yet (the first command creates it)"),
        ),
        Err(e) => r.add("l1 directory", Level::Fail, format!("{shown}: {e}")),
        Ok(m) if !m.is_dir() => r.add(
            "l1 directory",
            Level::Fail,
            format!("{shown} is not a directory (a link or a file)"),
        ),
        Ok(_) => {
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok();
            // SAFETY: a valid NUL-terminated path; access(2) only reads.
            let writable = c.is_some_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0);
            if writable {
                r.add(
                    "l1 directory",
                    Level::Ok,
                    format!("{shown}, budget {} GiB", cached.l1_max_size_gb),
                );
            } else {
                r.add(
                    "l1 directory",
                    Level::Fail,
                    format!("{shown} is not writable"),
                );
            }
        }
    }
}

/// Runs every check and prints one line each; exits 1 if any failed.
pub async fn run(config: &StorageConfig, json: bool) -> Result<(), Failure> {
    let mut r = Report::default();
    r.add(
        "config",
        Level::Ok,
        format!("{:?} backend", config.storage.backend).to_lowercase(),
    );
    l1(config, &mut r);
    if let Some(backend) = backend(config, &mut r).await {
        let identity = segstore::identity::read(backend.as_ref()).await;
        let margin = match &identity {
            Ok(Some(id)) => {
                match id.conditional_writes {
                    ConditionalWrites::Enforced => r.add(
                        "conditional writes",
                        Level::Ok,
                        "enforced (probed when the store was created)",
                    ),
                    ConditionalWrites::SingleWriterOnly => r.add(
                        "conditional writes",
                        Level::Warn,
                        "not enforced: single-writer mode, one writing process at a time",
                    ),
                }
                id.settings.clock_margin
            }
            Ok(None) => {
                r.add(
                    "conditional writes",
                    Level::Warn,
                    "unknown: the store has no identity (made by an older version)",
                );
                segstore::StoreOptions::default().clock_margin
            }
            Err(e) => {
                r.add("conditional writes", Level::Fail, format!("identity: {e}"));
                segstore::StoreOptions::default().clock_margin
            }
        };
        let here = segstore::clock::system().now();
        match backend.now().await {
            Ok(there) => {
                let (skew, sign) = match there.duration_since(here) {
                    Ok(d) => (d, "ahead of"),
                    Err(e) => (e.duration(), "behind"),
                };
                let text = format!(
                    "store clock {} {sign} this host (margin {})",
                    humantime::format_duration(std::time::Duration::from_millis(
                        u64::try_from(skew.as_millis()).unwrap_or(u64::MAX)
                    )),
                    humantime::format_duration(margin)
                );
                let level = if skew <= margin / 2 {
                    Level::Ok
                } else if skew <= margin {
                    Level::Warn
                } else {
                    Level::Fail
                };
                r.add("clock skew", level, text);
            }
            Err(e) => r.add("clock skew", Level::Fail, format!("no server time: {e}")),
        }
    }
    let failed = r.lines.iter().filter(|l| l.1 == Level::Fail).count();
    if json {
        let checks: Vec<_> = r
            .lines
            .iter()
            .map(|(c, l, d)| json!({"check": c, "status": l.name(), "detail": d}))
            .collect();
        println!("{}", json!({"checks": checks, "failed": failed}));
    } else {
        for (c, l, d) in &r.lines {
            println!("{:<4}  {c:<18}  {d}", l.name());
        }
    }
    if failed > 0 {
        return Err(Failure::Checks(format!("{failed} doctor checks failed")));
    }
    Ok(())
}
