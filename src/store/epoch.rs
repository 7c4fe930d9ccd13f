//! GC epochs: which GC run may be deleting objects, and when.
//!
//! Each GC (or retention) run claims the next epoch by creating `gc/epochs/<E>` put-if-absent,
//! so runs are mutually exclusive. The record fixes the run's deletion window on the store's
//! clock: nothing is deleted before `deletes_from` (start + `gc_delete_delay`) nor after
//! `deletes_until` (start + `gc_lease`). A `.done` marker ends the window early.
//!
//! Writers that re-reference old objects read the latest record: while no run can be
//! deleting for the next little while, an object confirmed to exist stays until the commit
//! lands (see `docs/ARCHITECTURE.md`, "GC protocol").

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{ObjectBackend, PutOutcome};
use crate::clock::{millis_since_epoch, Clock, Stamp};
use crate::error::{Error, Result};
use crate::keys;
use crate::manifest::encoding::{decode, encode, Consistent, Kind};

/// Epochs probed one by one past the known one before listing them instead. Records are
/// never deleted (a few dozen bytes a run), so the epochs form one contiguous run from 1
/// and a stale process can always catch up.
const PROBES_BEFORE_LISTING: u32 = 4;

/// What a GC run announced when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EpochRecord {
    pub(crate) epoch: u64,
    /// Random id of the run, to tell its own record from another's.
    pub(crate) run_id: u128,
    /// Store time the run started, in ms since the Unix epoch.
    pub(crate) started_ms: u64,
    /// No object is deleted before this store time.
    pub(crate) deletes_from_ms: u64,
    /// No object is deleted at or after this store time.
    pub(crate) deletes_until_ms: u64,
}

impl Consistent for EpochRecord {
    fn check(&self) -> std::result::Result<(), String> {
        if self.epoch == 0 {
            return Err("GC epochs start at 1".into());
        }
        if !(self.started_ms <= self.deletes_from_ms
            && self.deletes_from_ms <= self.deletes_until_ms)
        {
            return Err("the deletion window does not follow the run's start".into());
        }
        Ok(())
    }
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// What the latest GC run means for a writer right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GcWindow {
    /// No run can be deleting until a new one starts (none ever ran, or the latest one is
    /// done or past its lease).
    Quiet,
    /// The latest run may start deleting at this store time.
    DeletesFrom(SystemTime),
    /// The latest run may be deleting now, until this store time at the latest.
    Deleting { epoch: u64, until: SystemTime },
}

/// The latest epoch this process knows of, to avoid listing the records again.
#[derive(Debug, Default)]
pub(crate) struct EpochTracker {
    known: Mutex<Option<Known>>,
}

#[derive(Debug, Clone)]
struct Known {
    record: Option<EpochRecord>,
    epoch: u64,
    done: bool,
}

impl EpochTracker {
    fn get(&self) -> Option<Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, known: Known) {
        let mut slot = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|k| k.epoch <= known.epoch) {
            *slot = Some(known);
        }
    }
}

impl Known {
    fn max_with(self, other: Known) -> Known {
        if other.epoch >= self.epoch {
            other
        } else {
            self
        }
    }
}

async fn list_latest(backend: &dyn ObjectBackend) -> Result<Known> {
    let epoch = backend
        .list(keys::GC_EPOCHS_PREFIX)
        .await?
        .iter()
        .filter_map(|m| keys::parse_manifest_version(m.key.file_name()))
        .max()
        .unwrap_or(0);
    Ok(Known {
        record: None,
        epoch,
        done: false,
    })
}

async fn read_record(backend: &dyn ObjectBackend, epoch: u64) -> Result<Option<EpochRecord>> {
    let key = keys::gc_epoch(epoch);
    match backend.get(&key).await {
        Ok(bytes) => Ok(Some(decode(key.as_str(), Kind::GcEpoch, &bytes)?)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The latest GC epoch and whether its run is done: a listing the first time, then one
/// probe of the next epoch (and of the `.done` marker while the run is not known done).
async fn latest(
    backend: &dyn ObjectBackend,
    tracker: &EpochTracker,
) -> Result<Option<(EpochRecord, bool)>> {
    let mut known = match tracker.get() {
        Some(k) => k,
        None => list_latest(backend).await?,
    };
    let mut probes = 0;
    while let Some(record) = read_record(backend, known.epoch + 1).await? {
        known = Known {
            epoch: record.epoch,
            record: Some(record),
            done: false,
        };
        probes += 1;
        if probes == PROBES_BEFORE_LISTING {
            known = list_latest(backend).await?.max_with(known);
            probes = 0;
        }
    }
    if known.epoch == 0 {
        tracker.set(known);
        return Ok(None);
    }
    if known.record.is_none() {
        known.record = read_record(backend, known.epoch).await?;
    }
    let Some(record) = known.record.clone() else {
        // Listed, then removed by a later run's clean-up: a later epoch exists.
        return Err(Error::backend(
            "reading the GC epoch",
            format!("epoch {} vanished while being read", known.epoch),
        ));
    };
    if !known.done {
        known.done = backend
            .head(&keys::gc_epoch_done(known.epoch))
            .await?
            .is_some();
    }
    let done = known.done;
    tracker.set(known);
    Ok(Some((record, done)))
}

/// The deletion window of the latest GC run, as seen at store time `now`.
pub(crate) async fn window(
    backend: &dyn ObjectBackend,
    tracker: &EpochTracker,
    now: SystemTime,
    margin: Duration,
) -> Result<GcWindow> {
    let Some((record, done)) = latest(backend, tracker).await? else {
        return Ok(GcWindow::Quiet);
    };
    let from = at_ms(record.deletes_from_ms);
    let until = at_ms(record.deletes_until_ms);
    if done || now >= until {
        return Ok(GcWindow::Quiet);
    }
    if now + margin < from {
        return Ok(GcWindow::DeletesFrom(from));
    }
    Ok(GcWindow::Deleting {
        epoch: record.epoch,
        until,
    })
}

/// A GC run that holds its epoch.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) record: EpochRecord,
    /// The local monotonic time when the record was created, to extrapolate store time.
    claimed: Stamp,
    margin: Duration,
}

impl Run {
    /// The store time the run started: GC ages are measured against it.
    pub(crate) fn started(&self) -> SystemTime {
        at_ms(self.record.started_ms)
    }

    /// The store time now, extrapolated from the start on the local monotonic clock.
    pub(crate) fn store_now(&self, clock: &dyn Clock) -> SystemTime {
        self.started() + self.claimed.elapsed(clock)
    }

    /// How long until the run may delete (zero when it may already).
    pub(crate) fn until_deletes(&self, clock: &dyn Clock) -> Duration {
        at_ms(self.record.deletes_from_ms)
            .duration_since(self.store_now(clock))
            .unwrap_or_default()
    }

    /// True while the run still holds its lease, with the margin for request flight time
    /// left: retention writes the boundary and deletes versions and pins only then.
    pub(crate) fn holds_lease(&self, clock: &dyn Clock) -> bool {
        self.store_now(clock) + self.margin < at_ms(self.record.deletes_until_ms)
    }

    /// True while the run may still delete: inside its window, with the margin for
    /// request flight time left at the end.
    pub(crate) fn may_delete(&self, clock: &dyn Clock) -> bool {
        let now = self.store_now(clock);
        now >= at_ms(self.record.deletes_from_ms)
            && now + self.margin < at_ms(self.record.deletes_until_ms)
    }
}

/// Claims the next epoch for a GC or retention run. Fails with [`Error::GcInProgress`] if
/// another run holds the latest epoch and is neither done nor past its lease.
pub(crate) async fn claim(
    backend: &dyn ObjectBackend,
    tracker: &EpochTracker,
    clock: &dyn Clock,
    delete_delay: Duration,
    lease: Duration,
    margin: Duration,
) -> Result<Run> {
    for _ in 0..8 {
        let latest = latest(backend, tracker).await?;
        // The run's clock starts before the store time is read, and the record is sent
        // right after: a late answer in between (the epoch read above, answered hours late)
        // would give the record a start long past, so that writers saw its lease over while
        // the run, timing its lease from the late answer, went on deleting.
        let claimed = Stamp::now(clock);
        let now = backend.now().await?;
        if let Some((record, done)) = &latest {
            if !done && now < at_ms(record.deletes_until_ms) {
                return Err(Error::GcInProgress {
                    epoch: record.epoch,
                });
            }
        }
        let epoch = latest.as_ref().map_or(0, |(r, _)| r.epoch) + 1;
        let started_ms = millis_since_epoch(now);
        let record = EpochRecord {
            epoch,
            run_id: rand::random(),
            started_ms,
            deletes_from_ms: started_ms.saturating_add(millis(delete_delay)),
            deletes_until_ms: started_ms.saturating_add(millis(lease)),
        };
        if claimed.elapsed(clock) > margin / 2 {
            // The store's clock answered slowly: a start that old could let the run delete
            // before writers that read no record yet expect (`started + delete_delay`).
            continue;
        }
        let bytes = encode(Kind::GcEpoch, &record)?;
        let outcome = backend.put_if_absent(&keys::gc_epoch(epoch), bytes).await;
        match outcome {
            Ok(PutOutcome::Created) => {}
            Ok(PutOutcome::AlreadyExists) => continue,
            // Unknown outcome: read it back; only our own record counts as claimed.
            Err(e) => match read_record(backend, epoch).await {
                Ok(Some(found)) if found.run_id == record.run_id => {}
                Ok(Some(_)) => continue,
                _ => return Err(e),
            },
        }
        tracker.set(Known {
            epoch,
            record: Some(record.clone()),
            done: false,
        });
        return Ok(Run {
            record,
            claimed,
            margin,
        });
    }
    Err(Error::backend(
        "claiming a GC epoch",
        "lost the race for the next epoch, or read the store's time too slowly, too many times",
    ))
}

/// Marks `run` done, ending its deletion window.
pub(crate) async fn finish(backend: &dyn ObjectBackend, tracker: &EpochTracker, run: &Run) {
    let epoch = run.record.epoch;
    if let Err(e) = backend
        .put(&keys::gc_epoch_done(epoch), Bytes::from_static(b"done"))
        .await
    {
        // Writers then wait for the lease to run out instead: slower, still safe.
        tracing::warn!(epoch, error = %e, "could not mark the GC run done");
        return;
    }
    tracker.set(Known {
        epoch,
        record: Some(run.record.clone()),
        done: true,
    });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
