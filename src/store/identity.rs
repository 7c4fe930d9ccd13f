//! A process joining a store: reading (or creating) the store's identity and reconciling
//! the process's [`StoreOptions`] with the settings recorded in it.
//!
//! The identity object itself, and the conditional-write check, live in
//! [`crate::identity`], below the caches that bind to the store id; what needs
//! `StoreOptions` lives here.

use std::sync::Arc;

use crate::backend::{ObjectBackend, PutOutcome};
use crate::error::{Error, Result};
use crate::identity::{
    backoff, check_windows, conditional_writes_are_enforced, is_read_only, is_transient,
    not_enforced, read, ConditionalWrites, SharedSettings, StoreIdentity, FORMAT_VERSION,
    OPEN_ATTEMPTS,
};
use crate::keys;
use crate::store::{
    StoreOptions, DEFAULT_CLOCK_MARGIN, DEFAULT_GC_DELETE_DELAY, DEFAULT_GC_LEASE, DEFAULT_GRACE,
    DEFAULT_MAX_WRITER_STALL,
};

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            gc_grace: DEFAULT_GRACE,
            max_writer_stall: DEFAULT_MAX_WRITER_STALL,
            freshen_after: crate::blob::DEFAULT_FRESHEN_AFTER,
            version_min_age: crate::manifest::head::PROBE_TRUST_WINDOW,
            gc_delete_delay: DEFAULT_GC_DELETE_DELAY,
            gc_lease: DEFAULT_GC_LEASE,
            clock_margin: DEFAULT_CLOCK_MARGIN,
        }
    }
}

impl SharedSettings {
    /// The settings a store created with `options` gets: `options.shared` if set, else the
    /// defaults with the options' writer settings.
    pub fn for_new_store(options: &StoreOptions) -> Self {
        options.shared.unwrap_or_else(|| SharedSettings {
            max_writer_stall: options.max_writer_stall,
            freshen_after: options.freshen_after,
            version_min_age: options.version_min_age,
            gc_delete_delay: options.gc_delete_delay,
            gc_lease: options.gc_lease,
            clock_margin: options.clock_margin,
            ..SharedSettings::default()
        })
    }

    /// Reconciles a process's `options` with these (the store's) settings: refuses options
    /// that contradict them, and returns the options the process runs with.
    ///
    /// `options.shared`, when set, must equal the store's settings. Each writer setting of
    /// `StoreOptions` left at its default takes the store's value; one set explicitly may be
    /// stricter (smaller) than the store's, never looser.
    pub fn reconcile(&self, options: &StoreOptions) -> Result<StoreOptions> {
        if let Some(wanted) = &options.shared {
            if wanted != self {
                return Err(Error::SettingsMismatch {
                    setting: "shared".into(),
                    store: format!("{self:?}"),
                    process: format!("{wanted:?}"),
                });
            }
        }
        let defaults = StoreOptions::default();
        let mut out = options.clone();
        let fields = [
            (
                "max_writer_stall",
                &mut out.max_writer_stall,
                defaults.max_writer_stall,
                self.max_writer_stall,
            ),
            (
                "freshen_after",
                &mut out.freshen_after,
                defaults.freshen_after,
                self.freshen_after,
            ),
            (
                "version_min_age",
                &mut out.version_min_age,
                defaults.version_min_age,
                self.version_min_age,
            ),
        ];
        // The GC protocol's windows: writers and GC runs must agree on them exactly.
        let exact = [
            (
                "gc_delete_delay",
                &mut out.gc_delete_delay,
                defaults.gc_delete_delay,
                self.gc_delete_delay,
            ),
            (
                "gc_lease",
                &mut out.gc_lease,
                defaults.gc_lease,
                self.gc_lease,
            ),
        ];
        for (setting, value, default, store) in exact {
            if *value == default {
                *value = store;
            } else if *value != store {
                return Err(Error::SettingsMismatch {
                    setting: setting.into(),
                    store: format!("{store:?}"),
                    process: format!("{value:?}"),
                });
            }
        }
        // A larger margin only makes this process more careful, up to the delete delay.
        out.clock_margin = out.clock_margin.max(self.clock_margin);
        check_windows(out.gc_delete_delay, out.gc_lease, out.clock_margin)?;
        for (setting, value, default, store) in fields {
            if *value == default {
                *value = store;
            } else if *value > store {
                return Err(Error::SettingsMismatch {
                    setting: setting.into(),
                    store: format!("{store:?}"),
                    process: format!("{value:?}"),
                });
            }
        }
        Ok(out)
    }
}

/// Reads the identity of an existing store and checks that `options` may open it, creating
/// nothing: what read-only openers use, so that one read both proves the store exists and
/// opens it. `None` when the store has no identity (no store, or one made by an older
/// version).
pub async fn open_existing(
    backend: &dyn ObjectBackend,
    options: &StoreOptions,
) -> Result<Option<StoreIdentity>> {
    match read(backend).await? {
        Some(found) => check_mode(backend, found, options).map(Some),
        None => Ok(None),
    }
}

/// Reads the store's identity, creating it (after checking conditional writes) if the
/// store has none. `None` only for a store without identity that this process cannot
/// write (a read-only open of a store made by an older version).
pub async fn open(
    shared: &Arc<dyn ObjectBackend>,
    options: &StoreOptions,
) -> Result<Option<StoreIdentity>> {
    let backend = shared.as_ref();
    if let Some(found) = read(backend).await? {
        return check_mode(backend, found, options).map(Some);
    }
    let settings = SharedSettings::for_new_store(options);
    settings.validate()?;
    let conditional_writes = match conditional_writes_are_enforced(shared).await {
        Ok(true) => ConditionalWrites::Enforced,
        Ok(false) if options.single_writer => {
            tracing::warn!(
                server = %backend.describe(),
                "create-only writes are not enforced; creating the store in single-writer mode"
            );
            ConditionalWrites::SingleWriterOnly
        }
        Ok(false) => return Err(not_enforced(backend)),
        Err(e) if is_read_only(&e) => {
            tracing::warn!(error = %e, "store has no identity and this process cannot write one; using default settings");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mine = StoreIdentity {
        store_id: format!("{:032x}", rand::random::<u128>()),
        format_version: FORMAT_VERSION,
        created_ms: options.clock.now_ms(),
        conditional_writes,
        settings,
    };
    let key = keys::identity();
    let mut attempt = 0;
    loop {
        match backend.put_if_absent(&key, mine.encode()).await {
            Ok(PutOutcome::Created) => {
                tracing::info!(store_id = %mine.store_id, server = %backend.describe(), "created the store identity");
                return Ok(Some(mine));
            }
            Ok(PutOutcome::AlreadyExists) => {}
            Err(e) if is_read_only(&e) => {
                tracing::warn!(error = %e, "cannot write the store identity; using default settings");
                return Ok(None);
            }
            Err(e) if is_transient(&e) && attempt + 1 < OPEN_ATTEMPTS => {
                // The create may have landed: whatever is there now is the identity.
                backoff(attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
        // Another process created it first (or our own create landed unseen): theirs wins.
        if let Some(found) = read(backend).await? {
            return check_mode(backend, found, options).map(Some);
        }
    }
}

fn check_mode(
    backend: &dyn ObjectBackend,
    identity: StoreIdentity,
    options: &StoreOptions,
) -> Result<StoreIdentity> {
    if identity.conditional_writes == ConditionalWrites::SingleWriterOnly && !options.single_writer
    {
        return Err(Error::Unsupported(format!(
            "store {} was created in single-writer mode because {} does not enforce \
             create-only writes; open it with single_writer = true (and only one writing \
             process), or move it to a server that enforces them",
            identity.store_id,
            backend.describe()
        )));
    }
    Ok(identity)
}
