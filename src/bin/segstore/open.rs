//! Which store a command uses, and opening it: settings that conflict or would be ignored
//! are usage errors, only writing commands create a store, and a cache directory another
//! command holds is waited for (up to `--lock-timeout`).

use std::path::Path;

use segstore::backend::local::LocalBackend;
use segstore::backend::s3::S3Backend;
use segstore::backend::ObjectBackend;
use segstore::clock::{self, Stamp};
use segstore::config::{BackendKind, LocalSection};
use segstore::gc::GcOptions;
use segstore::{Error, S3Config, StorageConfig, Store};

use crate::failure::Failure;
use crate::Cli;

/// Whether a command may create the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A write (`put`, `import`): creates the store in a new or empty directory.
    Create,
    /// Everything else: the store must exist.
    Existing,
}

/// An open store and the config's defaults for `gc`.
pub struct Opened {
    pub store: Store,
    pub gc_defaults: GcOptions,
}

/// The configuration the command line and the environment select.
pub fn resolve(cli: &Cli) -> Result<StorageConfig, Failure> {
    let env = |k: &str| std::env::var(k).ok();
    if let Some(path) = &cli.config {
        if let Some(dir) = &cli.data_dir {
            return Err(Failure::Usage(format!(
                "--data-dir {} would be ignored: --config {} names the store (set \
                 [storage.local] data_dir there, or SEGSTORE_DATA_DIR)",
                dir.display(),
                path.display()
            )));
        }
        return Ok(StorageConfig::load(path)?);
    }
    let mut config = StorageConfig::local_default();
    config.apply_env(env)?;
    if let Some(dir) = &cli.data_dir {
        if let Some(from_env) = env("SEGSTORE_DATA_DIR").filter(|e| Path::new(e) != dir) {
            return Err(Failure::Usage(format!(
                "--data-dir {} and SEGSTORE_DATA_DIR={from_env} disagree; give one",
                dir.display()
            )));
        }
        if config.storage.backend == BackendKind::S3 {
            return Err(Failure::Usage(format!(
                "--data-dir {} would be ignored: SEGSTORE_BACKEND=s3 selects an S3 store",
                dir.display()
            )));
        }
        config.storage.local = Some(LocalSection {
            data_dir: dir.clone(),
        });
    }
    config.validate().map_err(|e| match e {
        Error::InvalidConfig(m) => Failure::Usage(format!(
            "{m} (without --config, give the settings as SEGSTORE_* environment variables, \
             or use a config file)"
        )),
        other => other.into(),
    })?;
    Ok(config)
}

/// Opens the store `config` names; with [`Access::Existing`], a missing store is
/// [`Failure::Missing`] and nothing is created.
pub async fn open(
    config: &StorageConfig,
    access: Access,
    lock_timeout: std::time::Duration,
) -> Result<Opened, Failure> {
    if access == Access::Existing {
        if let Some(missing) = missing_store(config).await? {
            return Err(Failure::Missing(missing));
        }
    }
    let clock = clock::system();
    let started = Stamp::now(clock.as_ref());
    let store = loop {
        match config.open_store().await {
            Err(Error::CacheLocked { .. }) if started.elapsed(clock.as_ref()) < lock_timeout => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e @ Error::CacheLocked { .. }) => {
                return Err(Failure::Busy(format!(
                    "{e} (waited {}; see --lock-timeout)",
                    humantime::format_duration(lock_timeout)
                )))
            }
            other => break other?,
        }
    };
    Ok(Opened {
        store,
        gc_defaults: config.gc_options(),
    })
}

/// `Some(message)` when the store `config` names does not exist.
async fn missing_store(config: &StorageConfig) -> Result<Option<String>, Failure> {
    let s = &config.storage;
    let l2 = match s.backend {
        BackendKind::Cached => s.cached.as_ref().map_or(BackendKind::S3, |c| c.l2_backend),
        other => other,
    };
    let hint = "a writing command (put, import) creates one";
    match (l2, &s.local, &s.s3) {
        (BackendKind::Local, Some(local), _) => Ok((!LocalBackend::is_store(&local.data_dir))
            .then(|| {
                format!(
                    "no segstore store at {} (check --data-dir or the config; {hint})",
                    local.data_dir.display()
                )
            })),
        (BackendKind::S3, _, Some(s3)) => Ok((!s3_has_store(s3).await?).then(|| {
            format!(
                "no segstore store in bucket {} under prefix {:?} (check the config; {hint})",
                s3.bucket, s3.prefix
            )
        })),
        _ => Ok(None), // validate() reports the missing section when the store opens
    }
}

/// Whether the bucket and prefix hold a store: its identity, or (made by an older
/// version) manifests.
async fn s3_has_store(config: &S3Config) -> Result<bool, Failure> {
    let backend = S3Backend::connect(config.clone()).await?;
    if segstore::identity::read(&backend).await?.is_some() {
        return Ok(true);
    }
    Ok(!backend
        .list(segstore::keys::MANIFESTS_PREFIX)
        .await?
        .is_empty())
}
