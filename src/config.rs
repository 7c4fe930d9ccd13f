//! TOML configuration in Prism's layout, with environment overrides.
//!
//! ```toml
//! [storage]
//! backend = "local"            # "local" | "s3" | "cached"
//! single_writer = false        # true: accept a server without create-only writes
//! read_freshness = "1s"        # a bound (the default, 1s), or "strict" (see Freshness)
//! lean_commits = true          # omit for StoreOptions' default
//! publish_head = false         # true: each commit also publishes the head for cold readers
//!
//! [storage.local]
//! data_dir = "./segstore-data"
//!
//! [storage.s3]
//! bucket = "search-prod"
//! region = "eu-west-1"
//! prefix = "segments"
//! endpoint = "http://127.0.0.1:9000"   # MinIO, R2, moto; omit for AWS
//! force_path_style = true
//!
//! [storage.cached]
//! l1_path = "/var/cache/segstore"
//! l1_max_size_gb = 50
//! l2_backend = "s3"
//!
//! [retention]
//! keep_last = 20
//! keep_within = "24h"
//! # keep_daily = 7     # the newest version of each of the last 7 days (also hourly,
//! #                    # weekly, monthly, yearly)
//!
//! # [retention.collections.logs]   # a collection's own rules, replacing those above
//! # keep_last = 3
//!
//! [gc]
//! grace = "1h"
//! ```
//!
//! Environment variables override the file: `SEGSTORE_BACKEND`, `SEGSTORE_DATA_DIR`,
//! `SEGSTORE_S3_BUCKET`, `SEGSTORE_S3_REGION`, `SEGSTORE_S3_PREFIX`, `SEGSTORE_S3_ENDPOINT`,
//! `SEGSTORE_S3_FORCE_PATH_STYLE`, `SEGSTORE_L1_PATH`, `SEGSTORE_L1_MAX_SIZE_GB`,
//! `SEGSTORE_READ_FRESHNESS`, `SEGSTORE_LEAN_COMMITS`, `SEGSTORE_PUBLISH_HEAD`. AWS
//! credentials follow the standard chain (`AWS_ACCESS_KEY_ID`, profiles, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::backend::local::LocalBackend;
#[cfg(feature = "s3")]
use crate::backend::s3::S3Backend;
use crate::backend::s3::S3Config;
use crate::backend::ObjectBackend;
use crate::error::{Error, Result};
use crate::gc::{GcOptions, RetentionPolicy, DEFAULT_GRACE};
use crate::storage::SegmentStorage;
#[cfg(feature = "s3")]
use crate::store::S3Storage;
use crate::store::{CachedStorage, Freshness, LocalStorage, Store, StoreOptions};

/// `l1_max_size_gb` must be below this: 2^34 GB is 2^64 bytes, more than a `u64` counts.
pub const L1_MAX_SIZE_GB_LIMIT: f64 = 17_179_869_184.0;

/// Every environment variable that [`StorageConfig::apply_env`] reads.
pub const ENV_VARS: [&str; 12] = [
    "SEGSTORE_BACKEND",
    "SEGSTORE_DATA_DIR",
    "SEGSTORE_S3_BUCKET",
    "SEGSTORE_S3_REGION",
    "SEGSTORE_S3_PREFIX",
    "SEGSTORE_S3_ENDPOINT",
    "SEGSTORE_S3_FORCE_PATH_STYLE",
    "SEGSTORE_L1_PATH",
    "SEGSTORE_L1_MAX_SIZE_GB",
    "SEGSTORE_READ_FRESHNESS",
    "SEGSTORE_LEAN_COMMITS",
    "SEGSTORE_PUBLISH_HEAD",
];

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The `[storage]` section.
    pub storage: StorageSection,
    /// The `[retention]` section.
    #[serde(default)]
    pub retention: RetentionSection,
    /// The `[gc]` section.
    #[serde(default)]
    pub gc: GcSection,
}

/// Which backend, and its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `local`, `s3` or `cached`.
    pub backend: BackendKind,
    /// `[storage.local]`.
    pub local: Option<LocalSection>,
    /// `[storage.s3]`.
    pub s3: Option<S3Config>,
    /// `[storage.cached]`.
    pub cached: Option<CachedSection>,
    /// Accept a backend that does not enforce create-only writes, for one writing
    /// process only (see [`StoreOptions::single_writer`]). Off by default.
    #[serde(default)]
    pub single_writer: bool,
    /// How fresh path reads must be: `"strict"` or a bound such as `"1s"` (see
    /// [`StoreOptions::read_freshness`]). `None`: the default, a 1 s bound.
    #[serde(default, deserialize_with = "optional_freshness")]
    pub read_freshness: Option<Freshness>,
    /// Commits with fewer requests (see [`StoreOptions::lean_commits`]). `None`: the
    /// default.
    pub lean_commits: Option<bool>,
    /// Each commit also publishes the head for cold readers (see
    /// [`StoreOptions::publish_head`]). `None`: the default (off).
    pub publish_head: Option<bool>,
}

/// The storage backend kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A local directory.
    Local,
    /// An S3 bucket.
    S3,
    /// A local L1 cache in front of a remote L2.
    Cached,
}

/// `[storage.local]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// The store's root directory.
    pub data_dir: PathBuf,
}

/// `[storage.cached]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedSection {
    /// The L1 cache directory.
    pub l1_path: PathBuf,
    /// The L1 byte budget, in GiB (fractions allowed).
    pub l1_max_size_gb: f64,
    /// The L2 backend: `s3` (uses `[storage.s3]`) or `local` (uses `[storage.local]`).
    pub l2_backend: BackendKind,
}

/// `[retention]`: the rules of every collection, and `[retention.collections.NAME]`: a
/// collection's own rules, replacing them for it. A section names every rule it wants:
/// a rule it leaves out is not applied (only a missing `[retention]` means the defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Keep the newest N versions.
    pub keep_last: Option<u64>,
    /// Keep versions younger than this (`"24h"`).
    #[serde(default, deserialize_with = "optional_duration")]
    pub keep_within: Option<Duration>,
    /// Keep the newest version of each of the last N hours.
    #[serde(default)]
    pub keep_hourly: Option<u64>,
    /// Keep the newest version of each of the last N days.
    #[serde(default)]
    pub keep_daily: Option<u64>,
    /// Keep the newest version of each of the last N weeks.
    #[serde(default)]
    pub keep_weekly: Option<u64>,
    /// Keep the newest version of each of the last N months.
    #[serde(default)]
    pub keep_monthly: Option<u64>,
    /// Keep the newest version of each of the last N years.
    #[serde(default)]
    pub keep_yearly: Option<u64>,
    /// Collections with rules of their own (`[retention.collections.NAME]`); they cannot
    /// nest further.
    #[serde(default)]
    pub collections: BTreeMap<String, RetentionSection>,
}

impl Default for RetentionSection {
    fn default() -> Self {
        let d = RetentionPolicy::default();
        RetentionSection {
            keep_last: d.keep_last,
            keep_within: d.keep_within,
            keep_hourly: d.keep_hourly,
            keep_daily: d.keep_daily,
            keep_weekly: d.keep_weekly,
            keep_monthly: d.keep_monthly,
            keep_yearly: d.keep_yearly,
            collections: BTreeMap::new(),
        }
    }
}

impl RetentionSection {
    /// The rules of this section (not of its collections).
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_within: self.keep_within,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, own) in &self.collections {
            crate::path::validate_name(name).map_err(|e| {
                Error::InvalidConfig(format!("[retention.collections.{name}]: {e}"))
            })?;
            if !own.collections.is_empty() {
                return Err(Error::InvalidConfig(format!(
                    "[retention.collections.{name}] cannot hold collections of its own"
                )));
            }
        }
        Ok(())
    }
}

/// `[gc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSection {
    /// Unreferenced objects younger than this are kept (`"1h"`).
    #[serde(deserialize_with = "duration")]
    pub grace: Duration,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            grace: DEFAULT_GRACE,
        }
    }
}

fn parse_duration<E: serde::de::Error>(s: &str) -> std::result::Result<Duration, E> {
    humantime::parse_duration(s).map_err(|e| E::custom(format!("bad duration {s:?}: {e}")))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?)
}

/// `"strict"`, or a duration (`"1s"`, `"500ms"`) for [`Freshness::Bounded`].
fn parse_freshness(s: &str) -> std::result::Result<Freshness, String> {
    if s == "strict" {
        return Ok(Freshness::Strict);
    }
    humantime::parse_duration(s)
        .map(Freshness::Bounded)
        .map_err(|e| format!("expected \"strict\" or a duration such as \"1s\", not {s:?} ({e})"))
}

fn optional_freshness<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Freshness>, D::Error> {
    parse_freshness(&String::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) => parse_duration(&s).map(Some),
        None => Ok(None),
    }
}

impl StorageConfig {
    /// The embedded default: a local store in `./segstore-data`.
    pub fn local_default() -> Self {
        StorageConfig {
            storage: StorageSection {
                backend: BackendKind::Local,
                local: Some(LocalSection {
                    data_dir: PathBuf::from("./segstore-data"),
                }),
                s3: None,
                cached: None,
                single_writer: false,
                read_freshness: None,
                lean_commits: None,
                publish_head: None,
            },
            retention: RetentionSection::default(),
            gc: GcSection::default(),
        }
    }

    /// Parses TOML, then applies environment overrides. Errors name the offending key.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::from_toml_str_with_env(text, |k| std::env::var(k).ok())
    }

    /// [`from_toml_str`](Self::from_toml_str) with the environment read through `var`,
    /// so tests and the fuzzer can supply overrides without touching the process.
    pub fn from_toml_str_with_env(
        text: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut config: StorageConfig =
            toml::from_str(text).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        config.apply_env(var)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::InvalidConfig(format!("config file {} does not exist", path.display()))
            }
            _ => Error::io(format!("reading {}", path.display()), e),
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            Error::InvalidConfig(m) => Error::InvalidConfig(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Applies `SEGSTORE_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        let bad = |key: &str, value: &str, why: &str| {
            Error::InvalidConfig(format!("environment variable {key}={value:?}: {why}"))
        };
        if let Some(v) = var("SEGSTORE_BACKEND") {
            self.storage.backend = match v.as_str() {
                "local" => BackendKind::Local,
                "s3" => BackendKind::S3,
                "cached" => BackendKind::Cached,
                _ => return Err(bad("SEGSTORE_BACKEND", &v, "expected local, s3 or cached")),
            };
        }
        if let Some(v) = var("SEGSTORE_DATA_DIR") {
            self.storage.local = Some(LocalSection { data_dir: v.into() });
        }
        let s3_keys = [
            "SEGSTORE_S3_BUCKET",
            "SEGSTORE_S3_REGION",
            "SEGSTORE_S3_PREFIX",
            "SEGSTORE_S3_ENDPOINT",
            "SEGSTORE_S3_FORCE_PATH_STYLE",
        ];
        if s3_keys.iter().any(|k| var(k).is_some()) {
            let s3 = self.storage.s3.get_or_insert_with(S3Config::default);
            if let Some(v) = var("SEGSTORE_S3_BUCKET") {
                s3.bucket = v;
            }
            if let Some(v) = var("SEGSTORE_S3_REGION") {
                s3.region = Some(v);
            }
            if let Some(v) = var("SEGSTORE_S3_PREFIX") {
                s3.prefix = v;
            }
            if let Some(v) = var("SEGSTORE_S3_ENDPOINT") {
                s3.endpoint = Some(v);
            }
            if let Some(v) = var("SEGSTORE_S3_FORCE_PATH_STYLE") {
                s3.force_path_style = v.parse().map_err(|_| {
                    bad("SEGSTORE_S3_FORCE_PATH_STYLE", &v, "expected true or false")
                })?;
            }
        }
        if let Some(v) = var("SEGSTORE_READ_FRESHNESS") {
            self.storage.read_freshness =
                Some(parse_freshness(&v).map_err(|why| bad("SEGSTORE_READ_FRESHNESS", &v, &why))?);
        }
        if let Some(v) = var("SEGSTORE_LEAN_COMMITS") {
            self.storage.lean_commits = Some(
                v.parse()
                    .map_err(|_| bad("SEGSTORE_LEAN_COMMITS", &v, "expected true or false"))?,
            );
        }
        if let Some(v) = var("SEGSTORE_PUBLISH_HEAD") {
            self.storage.publish_head = Some(
                v.parse()
                    .map_err(|_| bad("SEGSTORE_PUBLISH_HEAD", &v, "expected true or false"))?,
            );
        }
        if let Some(v) = var("SEGSTORE_L1_PATH") {
            self.cached_mut().l1_path = v.into();
        }
        if let Some(v) = var("SEGSTORE_L1_MAX_SIZE_GB") {
            self.cached_mut().l1_max_size_gb = v
                .parse()
                .map_err(|_| bad("SEGSTORE_L1_MAX_SIZE_GB", &v, "expected a number"))?;
        }
        Ok(())
    }

    fn cached_mut(&mut self) -> &mut CachedSection {
        self.storage.cached.get_or_insert_with(|| CachedSection {
            l1_path: PathBuf::from("./segstore-cache"),
            l1_max_size_gb: 10.0,
            l2_backend: BackendKind::S3,
        })
    }

    /// Checks that the section the backend needs is present and sane.
    pub fn validate(&self) -> Result<()> {
        self.retention.validate()?;
        let missing = |section: &str| {
            Error::InvalidConfig(format!(
                "storage.backend = {:?} needs a [{section}] section",
                self.storage.backend
            ))
        };
        match self.storage.backend {
            BackendKind::Local => {
                self.storage
                    .local
                    .as_ref()
                    .ok_or_else(|| missing("storage.local"))?;
            }
            BackendKind::S3 => {
                let s3 = self
                    .storage
                    .s3
                    .as_ref()
                    .ok_or_else(|| missing("storage.s3"))?;
                if s3.bucket.is_empty() {
                    return Err(Error::InvalidConfig(
                        "storage.s3.bucket must not be empty".into(),
                    ));
                }
            }
            BackendKind::Cached => {
                let c = self
                    .storage
                    .cached
                    .as_ref()
                    .ok_or_else(|| missing("storage.cached"))?;
                // `inf` is a valid TOML float and a valid f64 string: it must not become an
                // unbounded cache.
                // Nor may a huge one saturate to the same (1e300 GB is u64::MAX bytes).
                if !c.l1_max_size_gb.is_finite()
                    || c.l1_max_size_gb <= 0.0
                    || c.l1_max_size_gb >= L1_MAX_SIZE_GB_LIMIT
                {
                    return Err(Error::InvalidConfig(format!(
                        "storage.cached.l1_max_size_gb must be a finite number greater than 0 \
                         and below {L1_MAX_SIZE_GB_LIMIT} (16 EiB), not {}",
                        c.l1_max_size_gb
                    )));
                }
                match c.l2_backend {
                    BackendKind::S3 if self.storage.s3.is_none() => {
                        return Err(missing("storage.s3"));
                    }
                    BackendKind::Local if self.storage.local.is_none() => {
                        return Err(missing("storage.local"));
                    }
                    BackendKind::Cached => {
                        return Err(Error::InvalidConfig(
                            "storage.cached.l2_backend must be s3 or local".into(),
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The GC settings of this config.
    pub fn gc_options(&self) -> GcOptions {
        GcOptions {
            retention: self.retention.policy(),
            collection_retention: self
                .retention
                .collections
                .iter()
                .map(|(name, own)| (name.clone(), own.policy()))
                .collect(),
            grace: self.gc.grace,
            dry_run: false,
            progress: None,
        }
    }

    /// Opens the configured store as Prism's trait object.
    pub async fn open(&self) -> Result<Arc<dyn SegmentStorage>> {
        Ok(match self.storage.backend {
            BackendKind::Local => Arc::new(self.open_local().await?),
            BackendKind::S3 => self.open_s3().await?,
            BackendKind::Cached => Arc::new(self.open_cached().await?),
        })
    }

    /// Opens the configured store's core, for the API beyond `SegmentStorage`.
    pub async fn open_store(&self) -> Result<Store> {
        match self.storage.backend {
            BackendKind::Local => Ok(self.open_local().await?.store().clone()),
            BackendKind::S3 => crate::store::core_store(&*self.open_s3().await?)
                .ok_or_else(|| Error::Unsupported("an S3 store without a core".into())),
            BackendKind::Cached => Ok(self.open_cached().await?.store().clone()),
        }
    }

    async fn open_local(&self) -> Result<LocalStorage> {
        self.validate()?;
        let local = self
            .storage
            .local
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig("missing [storage.local] section".into()))?;
        LocalStorage::open_with(&local.data_dir, self.store_options()).await
    }

    /// The store options this config asks for.
    pub fn store_options(&self) -> StoreOptions {
        let defaults = StoreOptions::default();
        StoreOptions {
            single_writer: self.storage.single_writer,
            read_freshness: self
                .storage
                .read_freshness
                .unwrap_or(defaults.read_freshness),
            lean_commits: self.storage.lean_commits.unwrap_or(defaults.lean_commits),
            publish_head: self.storage.publish_head.unwrap_or(defaults.publish_head),
            ..defaults
        }
    }

    async fn open_cached(&self) -> Result<CachedStorage> {
        self.validate()?;
        let cached = self
            .storage
            .cached
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig("missing [storage.cached] section".into()))?;
        let l2: Arc<dyn ObjectBackend> = match cached.l2_backend {
            BackendKind::S3 => {
                let s3 = self.storage.s3.clone().ok_or_else(|| {
                    Error::InvalidConfig("l2_backend = \"s3\" needs [storage.s3]".into())
                })?;
                connect_s3(s3).await?
            }
            BackendKind::Local => {
                let local = self.storage.local.as_ref().ok_or_else(|| {
                    Error::InvalidConfig("l2_backend = \"local\" needs [storage.local]".into())
                })?;
                Arc::new(LocalBackend::open(&local.data_dir).await?)
            }
            BackendKind::Cached => {
                return Err(Error::InvalidConfig(
                    "storage.cached.l2_backend must be s3 or local".into(),
                ))
            }
        };
        let bytes = (cached.l1_max_size_gb * (1u64 << 30) as f64) as u64;
        CachedStorage::open(&cached.l1_path, bytes, l2, self.store_options()).await
    }

    async fn open_s3(&self) -> Result<Arc<dyn SegmentStorage>> {
        self.validate()?;
        let s3 = self
            .storage
            .s3
            .clone()
            .ok_or_else(|| Error::InvalidConfig("missing [storage.s3] section".into()))?;
        #[cfg(feature = "s3")]
        return Ok(Arc::new(
            S3Storage::connect_with(s3, self.store_options()).await?,
        ));
        #[cfg(not(feature = "s3"))]
        {
            let _ = s3;
            Err(without_s3())
        }
    }
}

#[cfg(feature = "s3")]
async fn connect_s3(s3: S3Config) -> Result<Arc<dyn ObjectBackend>> {
    Ok(Arc::new(S3Backend::connect_lazy(s3).await?))
}

#[cfg(not(feature = "s3"))]
async fn connect_s3(_: S3Config) -> Result<Arc<dyn ObjectBackend>> {
    Err(without_s3())
}

#[cfg(not(feature = "s3"))]
fn without_s3() -> Error {
    Error::Unsupported(
        "this build of segstore has no S3 support: build it with the `s3` feature".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StorageConfig> {
        StorageConfig::from_toml_str_with_env(text, |_| None)
    }

    #[test]
    fn prism_layout_parses() {
        let c = parse(
            r#"
            [storage]
            backend = "s3"
            [storage.s3]
            bucket = "b"
            region = "eu-west-1"
            prefix = "p"
            endpoint = "http://127.0.0.1:9000"
            force_path_style = true
            [retention]
            keep_last = 5
            keep_within = "2h"
            [gc]
            grace = "3h"
            "#,
        )
        .unwrap();
        assert_eq!(c.storage.backend, BackendKind::S3);
        let s3 = c.storage.s3.as_ref().unwrap();
        assert_eq!((s3.bucket.as_str(), s3.force_path_style), ("b", true));
        let gc = c.gc_options();
        assert_eq!(gc.retention.keep_last, Some(5));
        assert_eq!(gc.retention.keep_within, Some(Duration::from_secs(7200)));
        assert_eq!(gc.grace, Duration::from_secs(3 * 3600));
        assert!(gc.collection_retention.is_empty());
    }

    #[test]
    fn collections_can_have_retention_rules_of_their_own() {
        let local = "[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"d\"\n";
        let c = parse(&format!(
            r#"{local}
            [retention]
            keep_last = 5
            keep_hourly = 24
            [retention.collections.logs]
            keep_yearly = 3
            "#
        ))
        .unwrap();
        let gc = c.gc_options();
        assert_eq!(
            (gc.retention.keep_last, gc.retention.keep_hourly),
            (Some(5), Some(24))
        );
        let logs = &gc.collection_retention["logs"];
        assert_eq!(logs.keep_yearly, Some(3));
        // Its own rules replace the others: nothing is inherited.
        assert_eq!((logs.keep_last, logs.keep_hourly), (None, None));
        let nested = "[retention.collections.a.collections.b]\nkeep_last = 1\n";
        let err = parse(&format!("{local}{nested}")).unwrap_err().to_string();
        assert!(err.contains("cannot hold collections"), "{err}");
        let bad_name = parse(&format!(
            "{local}[retention.collections.\"a/b\"]\nkeep_last = 1\n"
        ))
        .unwrap_err();
        assert!(
            bad_name.to_string().contains("retention.collections"),
            "{bad_name}"
        );
        let unknown = parse(&format!(
            "{local}[retention.collections.a]\nkeep_lots = 1\n"
        ))
        .unwrap_err();
        assert!(unknown.to_string().contains("keep_lots"), "{unknown}");
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = parse("[storage]\nbackend = \"local\"\nbogus = 1\n").unwrap_err();
        assert!(unknown.to_string().contains("bogus"), "{unknown}");
        let bad_value = parse("[storage]\nbackend = \"floppy\"\n").unwrap_err();
        assert!(bad_value.to_string().contains("floppy"), "{bad_value}");
        let missing = parse("[storage]\nbackend = \"local\"\n").unwrap_err();
        assert!(missing.to_string().contains("storage.local"), "{missing}");
        let duration = parse("[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"d\"\n[gc]\ngrace = \"soon\"\n").unwrap_err();
        assert!(duration.to_string().contains("grace"), "{duration}");
        let nested =
            parse("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregoin = \"x\"\n")
                .unwrap_err();
        assert!(nested.to_string().contains("regoin"), "{nested}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c: StorageConfig =
            toml::from_str("[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"a\"\n")
                .unwrap();
        let env = |k: &str| match k {
            "SEGSTORE_BACKEND" => Some("s3".to_owned()),
            "SEGSTORE_S3_BUCKET" => Some("from-env".to_owned()),
            "SEGSTORE_DATA_DIR" => Some("b".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        c.validate().unwrap();
        assert_eq!(c.storage.backend, BackendKind::S3);
        assert_eq!(c.storage.s3.unwrap().bucket, "from-env");
        assert_eq!(c.storage.local.unwrap().data_dir, PathBuf::from("b"));
        let mut c = StorageConfig::local_default();
        assert!(c
            .apply_env(|k| (k == "SEGSTORE_BACKEND").then(|| "tape".to_owned()))
            .is_err());
    }

    #[test]
    fn read_freshness_and_lean_commits() {
        let local = "[storage]\nbackend = \"local\"\n[storage.local]\ndata_dir = \"d\"\n";
        let defaults = StoreOptions::default();
        let plain = parse(local).unwrap().store_options();
        assert_eq!(plain.read_freshness, defaults.read_freshness);
        assert_eq!(plain.lean_commits, defaults.lean_commits);

        let set = |keys: &str| {
            let text = local.replace("[storage.local]", &format!("{keys}\n[storage.local]"));
            parse(&text)
        };
        let c = set("read_freshness = \"1s\"\nlean_commits = true").unwrap();
        let options = c.store_options();
        assert_eq!(
            options.read_freshness,
            Freshness::Bounded(Duration::from_secs(1))
        );
        assert!(options.lean_commits);
        let c = set("read_freshness = \"strict\"\nlean_commits = false").unwrap();
        assert_eq!(c.store_options().read_freshness, Freshness::Strict);
        assert!(!c.store_options().lean_commits);
        assert!(!c.store_options().publish_head);
        assert!(
            set("publish_head = true")
                .unwrap()
                .store_options()
                .publish_head
        );

        let bad = set("read_freshness = \"sometimes\"").unwrap_err();
        assert!(bad.to_string().contains("read_freshness"), "{bad}");
        assert!(bad.to_string().contains("strict"), "{bad}");
        assert!(set("lean_commits = \"yes\"").is_err());

        // The environment overrides the file, and bad values name the variable.
        let env = |k: &str| match k {
            "SEGSTORE_READ_FRESHNESS" => Some("250ms".to_owned()),
            "SEGSTORE_LEAN_COMMITS" => Some("false".to_owned()),
            _ => None,
        };
        let text = local.replace(
            "[storage.local]",
            "read_freshness = \"strict\"\nlean_commits = true\n[storage.local]",
        );
        let options = StorageConfig::from_toml_str_with_env(&text, env)
            .unwrap()
            .store_options();
        assert_eq!(
            options.read_freshness,
            Freshness::Bounded(Duration::from_millis(250))
        );
        assert!(!options.lean_commits);
        for (key, value) in [
            ("SEGSTORE_READ_FRESHNESS", "soon"),
            ("SEGSTORE_LEAN_COMMITS", "1"),
        ] {
            let e = StorageConfig::from_toml_str_with_env(local, |k| {
                (k == key).then(|| value.to_owned())
            })
            .unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
