//! The store identity: one object, `_store/identity`, written once when a store is
//! created (with a create-only write) and read by every later open.
//!
//! It holds a random store id, the format version, whether the backend's create-only
//! writes were found enforced, and the [`SharedSettings`] every process sharing the store
//! must respect. Everything a process caches (the L1 directory, the in-memory root and
//! node caches) is bound to the store id, so a cache can never serve one store's objects
//! as another's (a reused L1 directory over a wiped or different L2).
//!
//! **Creation** is the only time the backend's conditional writes are checked: several
//! concurrent create-only writes race for one probe key; more than one winner means the
//! server checks and writes in two steps (or ignores the condition), and the store is
//! refused unless the operator asked for single-writer mode. **Later opens** only read
//! the identity: no write at all.
//!
//! Stores written before the identity existed have none: the first open that can write
//! creates it (with the settings of that open); a read-only open works without it, with
//! default settings.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{ObjectBackend, PutOutcome};
use crate::error::{Error, Result};
use crate::keys;

/// The storage format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Concurrent creates of one probe key per round of the conditional-write check.
const PROBE_RACERS: usize = 8;
/// Size of each probe's body. A server that checks and then writes is caught when the
/// creates overlap; a body that takes a while to write keeps each one's window open
/// (against s3s-fs through a proxy, tiny bodies slipped through one at a time).
const PROBE_BYTES: usize = 64 * 1024;
/// Conclusive rounds needed before the backend is trusted. One round catches a
/// check-then-write server only when two creates overlap inside its window, which is
/// a matter of chance (against s3s-fs through a proxy, about one round in three): the
/// rounds make a miss unlikely.
const PROBE_ROUNDS: u32 = 6;
/// Rounds tried at most (rounds spoiled by transient errors are tried again).
const PROBE_MAX_ROUNDS: u32 = 30;
/// Attempts of each open-time read or write that meets a transient error.
pub(crate) const OPEN_ATTEMPTS: u32 = 8;
/// First back-off between such attempts; doubled each time, with jitter.
const OPEN_BACKOFF: Duration = Duration::from_millis(50);

/// Settings every process sharing a store must agree on, fixed when the store is
/// created and stored in its identity. Durations are stored in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSettings {
    /// GC keeps unreferenced objects younger than this.
    #[serde(rename = "gc_grace_ms", with = "millis")]
    pub gc_grace: Duration,
    /// A commit made longer than this after its writer began staging is refused.
    #[serde(rename = "max_writer_stall_ms", with = "millis")]
    pub max_writer_stall: Duration,
    /// A dedup hit refreshes a blob older than this.
    #[serde(rename = "freshen_after_ms", with = "millis")]
    pub freshen_after: Duration,
    /// Retention never deletes versions younger than this; readers trust a confirmed head
    /// this long.
    #[serde(rename = "version_min_age_ms", with = "millis")]
    pub version_min_age: Duration,
    /// GC waits this long between deciding to delete an object and deleting it.
    #[serde(rename = "gc_delete_delay_ms", with = "millis")]
    pub gc_delete_delay: Duration,
    /// How long a GC run's lease holds off other GC runs.
    #[serde(rename = "gc_lease_ms", with = "millis")]
    pub gc_lease: Duration,
    /// The clock skew tolerated between processes.
    #[serde(rename = "clock_margin_ms", with = "millis")]
    pub clock_margin: Duration,
}

impl SharedSettings {
    /// Checks that the settings are safe together: `gc_grace` must exceed
    /// `max_writer_stall + freshen_after + clock_margin` (a staged blob outlives any
    /// commit that may still reference it), `gc_delete_delay` must exceed `clock_margin`,
    /// and `gc_lease` must exceed `gc_delete_delay + clock_margin`.
    pub fn validate(&self) -> Result<()> {
        let needed = self.max_writer_stall + self.freshen_after + self.clock_margin;
        if self.gc_grace <= needed {
            return Err(Error::InvalidConfig(format!(
                "gc_grace ({:?}) must exceed max_writer_stall + freshen_after + clock_margin \
                 ({:?} + {:?} + {:?})",
                self.gc_grace, self.max_writer_stall, self.freshen_after, self.clock_margin
            )));
        }
        check_windows(self.gc_delete_delay, self.gc_lease, self.clock_margin)
    }
}

/// Whether the backend's create-only writes were found enforced when the store was
/// created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionalWrites {
    /// Exactly one of several concurrent creates of one key won: any number of writers
    /// may share the store.
    Enforced,
    /// More than one won, and the operator accepted single-writer mode: only one writing
    /// process may use the store at a time (nothing enforces that).
    SingleWriterOnly,
}

/// The identity object of a store (`_store/identity`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreIdentity {
    /// Random id (32 hex digits), new for every store.
    pub store_id: String,
    /// The format version the store was created with.
    pub format_version: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// What the conditional-write check found at creation.
    pub conditional_writes: ConditionalWrites,
    /// The settings every process must share.
    pub settings: SharedSettings,
}

impl StoreIdentity {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let identity: StoreIdentity =
            serde_json::from_slice(bytes).map_err(|e| Error::CorruptManifest {
                key: keys::identity().to_string(),
                reason: format!("undecodable store identity: {e}"),
            })?;
        if identity.format_version > FORMAT_VERSION {
            return Err(Error::Unsupported(format!(
                "the store has format version {}, this build reads up to {FORMAT_VERSION}; \
                 upgrade segstore",
                identity.format_version
            )));
        }
        if identity.store_id.len() != 32
            || !identity.store_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Error::CorruptManifest {
                key: keys::identity().to_string(),
                reason: format!("bad store id {:?}", identity.store_id),
            });
        }
        identity
            .settings
            .validate()
            .map_err(|e| Error::CorruptManifest {
                key: keys::identity().to_string(),
                reason: format!("unsafe settings: {e}"),
            })?;
        Ok(identity)
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        Bytes::from(text)
    }
}

/// True for errors worth asking again: the network, a 5xx, throttling.
pub(crate) fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Unavailable { .. } | Error::Backend { .. })
}

/// True for errors that mean "this process may not write here".
pub(crate) fn is_read_only(e: &Error) -> bool {
    match e {
        Error::PermissionDenied { .. } | Error::ReadOnly(_) => true,
        Error::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(libc::EROFS)
        }
        _ => false,
    }
}

pub(crate) async fn backoff(attempt: u32) {
    let base = OPEN_BACKOFF * 2u32.saturating_pow(attempt.min(6));
    tokio::time::sleep(base.mul_f64(0.5 + rand::random::<f64>())).await;
}

/// Reads the identity; `None` if the store has none. Transient errors are retried.
pub async fn read(backend: &dyn ObjectBackend) -> Result<Option<StoreIdentity>> {
    let key = keys::identity();
    let mut attempt = 0;
    loop {
        match backend.get(&key).await {
            Ok(bytes) => return StoreIdentity::decode(&bytes).map(Some),
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) if is_transient(&e) && attempt + 1 < OPEN_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "reading the store identity; retrying");
                backoff(attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn not_enforced(backend: &dyn ObjectBackend) -> Error {
    Error::Unsupported(format!(
        "{} does not enforce If-None-Match: * (create-only writes): several concurrent \
         creates of one key all succeeded. segstore commits with create-only writes and \
         cannot let several writers share this server; set single_writer = true to run \
         one writing process only, or use a server that enforces them (AWS S3, MinIO, \
         Cloudflare R2 and moto do)",
        backend.describe()
    ))
}

/// Races 8 concurrent creates of one probe key, until 6 rounds were conclusive.
/// Only definite answers count (a create whose answer was lost is neither a win nor a
/// refusal): a round with more than one winner proves the condition is not enforced; a
/// round is conclusive once it has at least two definite answers, one of them a refusal.
pub async fn conditional_writes_are_enforced(shared: &Arc<dyn ObjectBackend>) -> Result<bool> {
    let backend = shared.as_ref();
    let data = Bytes::from(vec![b'p'; PROBE_BYTES]);
    let mut conclusive = 0;
    let mut last_error = None;
    for _ in 0..PROBE_MAX_ROUNDS {
        let key = keys::probe(rand::random());
        // Each create on a task of its own, released together, so that preparing one
        // request (signing hashes its body) does not stagger the others.
        let start = Arc::new(tokio::sync::Barrier::new(PROBE_RACERS));
        let racers: Vec<_> = (0..PROBE_RACERS)
            .map(|_| {
                let (backend, key, data, start) =
                    (shared.clone(), key.clone(), data.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    backend.put_if_absent(&key, data).await
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(PROBE_RACERS);
        for racer in racers {
            answers.push(racer.await.unwrap_or_else(|e| {
                Err(Error::backend("racing conditional creates", e.to_string()))
            }));
        }
        let (mut won, mut refused) = (0, 0);
        for answer in answers {
            match answer {
                Ok(PutOutcome::Created) => won += 1,
                Ok(PutOutcome::AlreadyExists) => refused += 1,
                Err(e) if is_transient(&e) => last_error = Some(e),
                Err(e) => {
                    remove_probe(backend, &key).await;
                    return Err(e);
                }
            }
        }
        remove_probe(backend, &key).await;
        tracing::debug!(won, refused, "conditional-write probe round");
        if won > 1 {
            return Ok(false);
        }
        if won + refused >= 2 && refused >= 1 {
            conclusive += 1;
            if conclusive == PROBE_ROUNDS {
                return Ok(true);
            }
        }
    }
    Err(Error::Unavailable {
        context: format!("checking create-only writes on {}", backend.describe()),
        message: format!(
            "too few definite answers in {PROBE_MAX_ROUNDS} rounds of concurrent creates; \
             last error: {}",
            last_error.map_or_else(|| "none".to_owned(), |e| e.to_string())
        ),
        source: None,
    })
}

async fn remove_probe(backend: &dyn ObjectBackend, key: &keys::ObjectKey) {
    for attempt in 0..3 {
        match backend.delete(key).await {
            Ok(()) => return,
            Err(e) if attempt == 2 => {
                tracing::warn!(key = %key, error = %e, "could not delete a conditional-write probe");
            }
            Err(_) => backoff(attempt).await,
        }
    }
}

/// Durations as integer milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The GC run's deletion window `[T0 + delay, T0 + lease - margin)` must be open, and a
/// commit that references objects it did not write confirms them within `delay - margin`
/// (`docs/ARCHITECTURE.md`, "GC protocol"): with no room left it could never commit, and
/// would wait for ever.
pub(crate) fn check_windows(delay: Duration, lease: Duration, margin: Duration) -> Result<()> {
    if delay <= margin {
        return Err(Error::InvalidConfig(format!(
            "gc_delete_delay ({delay:?}) must exceed clock_margin ({margin:?}): commits that \
             reference earlier objects confirm them within the difference"
        )));
    }
    if lease <= delay + margin {
        return Err(Error::InvalidConfig(format!(
            "gc_lease ({lease:?}) must exceed gc_delete_delay + clock_margin \
             ({delay:?} + {margin:?})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let s = SharedSettings::default();
        s.validate().unwrap();
        let id = StoreIdentity {
            store_id: format!("{:032x}", 7u128),
            format_version: FORMAT_VERSION,
            created_ms: 1,
            conditional_writes: ConditionalWrites::Enforced,
            settings: s,
        };
        assert_eq!(StoreIdentity::decode(&id.encode()).unwrap(), id);
    }

    #[test]
    fn unsafe_settings_are_refused() {
        let s = SharedSettings {
            gc_grace: Duration::from_secs(60),
            ..SharedSettings::default()
        };
        assert!(s.validate().is_err());
        let s = SharedSettings {
            gc_lease: Duration::from_secs(1),
            ..SharedSettings::default()
        };
        assert!(s.validate().is_err());
    }

    /// With a delete delay no longer than the clock margin, a commit confirming a dedup
    /// hit, a restore or a staged file found no room to commit in and waited for ever.
    #[test]
    fn a_delete_delay_within_the_clock_margin_is_refused() {
        let s = SharedSettings {
            gc_delete_delay: Duration::from_secs(10),
            clock_margin: Duration::from_secs(10),
            ..SharedSettings::default()
        };
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains("gc_delete_delay"), "{err}");
        // A process whose larger margin would leave no room is refused at open.
        let store = SharedSettings::default();
        let options = StoreOptions {
            clock_margin: store.gc_delete_delay,
            ..StoreOptions::default()
        };
        assert!(matches!(
            store.reconcile(&options),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn reconcile_takes_defaults_and_refuses_looser_options() {
        let store = SharedSettings {
            max_writer_stall: Duration::from_secs(10),
            ..SharedSettings::default()
        };
        let adopted = store.reconcile(&StoreOptions::default()).unwrap();
        assert_eq!(adopted.max_writer_stall, Duration::from_secs(10));
        let stricter = StoreOptions {
            max_writer_stall: Duration::from_secs(1),
            ..StoreOptions::default()
        };
        assert_eq!(
            store.reconcile(&stricter).unwrap().max_writer_stall,
            Duration::from_secs(1)
        );
        let looser = StoreOptions {
            max_writer_stall: Duration::from_secs(20),
            ..StoreOptions::default()
        };
        match store.reconcile(&looser) {
            Err(Error::SettingsMismatch { setting, .. }) => assert_eq!(setting, "max_writer_stall"),
            other => panic!("expected SettingsMismatch, got {other:?}"),
        }
    }
}
