//! Which store a command uses, and opening it: settings that conflict or would be ignored
//! are usage errors, only writing commands create a store, and a cache directory another
//! command holds is waited for (up to `--lock-timeout`).

use std::path::Path;
use std::sync::Arc;

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
    let gc_defaults = config.gc_options();
    if access == Access::Existing {
        match open_existing(config).await? {
            Existing::Opened(store) => return Ok(Opened { store, gc_defaults }),
            Existing::Missing(missing) => return Err(Failure::Missing(missing)),
            Existing::Present => {}
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
    Ok(Opened { store, gc_defaults })
}

/// What looking for an existing store found.
enum Existing {
    /// The store, opened by the same requests that found it (an S3 store with identity).
    Opened(Store),
    /// No store: the message says where none was found.
    Missing(String),
    /// A store, still to be opened the usual way.
    Present,
}

/// Finds the store `config` names without creating anything. An S3 store is opened at
/// once from the identity read that proves it exists: one `GetObject` in all, where
/// checking first and then opening would send it twice.
async fn open_existing(config: &StorageConfig) -> Result<Existing, Failure> {
    let s = &config.storage;
    if let (BackendKind::S3, Some(s3)) = (s.backend, &s.s3) {
        let backend = S3Backend::connect_lazy(s3.clone()).await?;
        let options = config.store_options();
        if let Some(identity) = segstore::store::identity::open_existing(&backend, &options).await?
        {
            let store = Store::with_identity(Arc::new(backend), options, Some(identity))?;
            return Ok(Existing::Opened(store));
        }
        return Ok(if s3_has_manifests(&backend).await? {
            Existing::Present
        } else {
            Existing::Missing(missing_s3(s3))
        });
    }
    Ok(match missing_store(config).await? {
        Some(missing) => Existing::Missing(missing),
        None => Existing::Present,
    })
}

fn missing_s3(s3: &S3Config) -> String {
    format!(
        "no segstore store in bucket {} under prefix {:?} (check the config; {HINT})",
        s3.bucket, s3.prefix
    )
}

const HINT: &str = "a writing command (put, import) creates one";

/// `Some(message)` when the store `config` names does not exist.
async fn missing_store(config: &StorageConfig) -> Result<Option<String>, Failure> {
    let s = &config.storage;
    let l2 = match s.backend {
        BackendKind::Cached => s.cached.as_ref().map_or(BackendKind::S3, |c| c.l2_backend),
        other => other,
    };
    match (l2, &s.local, &s.s3) {
        (BackendKind::Local, Some(local), _) => Ok((!LocalBackend::is_store(&local.data_dir))
            .then(|| {
                format!(
                    "no segstore store at {} (check --data-dir or the config; {HINT})",
                    local.data_dir.display()
                )
            })),
        (BackendKind::S3, _, Some(s3)) => Ok((!s3_has_store(s3).await?).then(|| missing_s3(s3))),
        _ => Ok(None), // validate() reports the missing section when the store opens
    }
}

/// Whether the bucket and prefix hold a store: its identity, or (made by an older
/// version) manifests.
async fn s3_has_store(config: &S3Config) -> Result<bool, Failure> {
    let backend = S3Backend::connect_lazy(config.clone()).await?;
    if segstore::identity::read(&backend).await?.is_some() {
        return Ok(true);
    }
    s3_has_manifests(&backend).await
}

/// Whether the prefix holds manifests (a store made before identities existed).
async fn s3_has_manifests(backend: &S3Backend) -> Result<bool, Failure> {
    Ok(!backend
        .list(segstore::keys::MANIFESTS_PREFIX)
        .await?
        .is_empty())
}

/// A collection that must exist for the command to mean anything.
pub async fn require_collection(store: &Store, collection: &str) -> Result<(), Failure> {
    if store.head(collection).await?.version == 0 {
        return Err(Failure::Missing(format!(
            "collection {collection:?} does not exist (`segstore ls` lists the collections)"
        )));
    }
    Ok(())
}
