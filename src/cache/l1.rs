//! L1: the cache directory, its exact byte accounting, and LRU eviction.
//!
//! Layout under the L1 directory:
//!
//! ```text
//! LOCK             flock'ed by the one process using the directory; holds its pid
//! STORE            id of the store whose objects are cached (see `cache::bind`)
//! objects/<key>    one file per cached object, under its object key (blobs/aa/<hex>, ...)
//! tmp/             fills being written (`<16 hex>.fill`); those are removed at open
//! ```
//!
//! **Accounting.** `used` is the sum of the apparent sizes of the files under `objects/`
//! plus the space reserved by fills that are being moved into place and by the L1 copies of
//! uploads in flight. A fill reserves its size *before* it is written, an upload each chunk
//! before it is teed, evicting least-recently-used entries to make room, so `used` never
//! exceeds the budget.
//!
//! **Readers are never undercut.** An entry keeps its file's memory map once mapped (hot
//! reads then cost no system call); while any reader holds a `Bytes` of that map (a
//! `SegmentFile`, a slice), the entry is pinned and eviction skips it (see
//! `lru::Entry::pinned`). If only pinned entries are left, the new object
//! is served without being cached instead of breaking the budget. Deleting an
//! object (GC) unlinks even a mapped file: on Linux the mapping keeps its pages.
//!
//! **Restart.** [`L1::open`] walks `objects/`, counts every file, orders them by
//! modification time (fill time) as the starting LRU order, evicts down to the budget, and
//! marks all of them unverified: the first use in this process hashes the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;

use super::lru::{pinned_bytes, State};
use super::Kind;
use crate::error::{Error, Result};
use crate::keys::ObjectKey;

/// Files at least this large are memory mapped; smaller ones are read.
const MMAP_MIN: u64 = 64 * 1024;

/// What a lookup found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Size recorded when the entry was added.
    pub size: u64,
    /// Whether the content was checked against its key in this process.
    pub verified: bool,
    /// The entry's live mapping, when it has one: the hit then needs no system call.
    pub mapped: Option<Bytes>,
}

/// The L1 directory. All methods block (file system calls); call them off async threads.
#[derive(Debug)]
pub(crate) struct L1 {
    objects: PathBuf,
    tmp: PathBuf,
    max: u64,
    state: Mutex<State>,
    evictions: AtomicU64,
    /// Held (flock'ed) for the life of the cache: one process per directory.
    _lock: File,
}

impl L1 {
    /// Opens `dir` with a budget of `max` bytes, rebuilding the index from disk.
    pub fn open(dir: &Path, max: u64) -> Result<Self> {
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        for d in [dir, &objects, &tmp] {
            fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating cache dir {}", d.display()), e))?;
        }
        let lock = lock_dir(dir)?;
        // Leftovers of fills that a previous process did not finish: only regular files
        // named as `temp_path` names them (the lock says no other cache is writing), never
        // another program's file or a link's target.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let own = entry.file_name().to_str().is_some_and(is_fill_name)
                    && entry.file_type().is_ok_and(|t| t.is_file());
                if own {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        let mut found = Vec::new();
        walk(&objects, &objects, &mut found)?;
        found.sort();
        let l1 = L1 {
            objects,
            tmp,
            max,
            state: Mutex::new(State::default()),
            evictions: AtomicU64::new(0),
            _lock: lock,
        };
        {
            let mut st = l1.lock();
            for (_, key, size) in found {
                st.used += size;
                st.insert(key, size, false, None);
            }
            let before = st.entries.len();
            l1.evict_until(&mut st, 0);
            tracing::info!(
                dir = %dir.display(),
                entries = st.entries.len(),
                evicted = before - st.entries.len(),
                bytes = st.used,
                budget = max,
                "L1 cache opened"
            );
        }
        Ok(l1)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.objects.join(key)
    }

    /// Finds `key`, marks it most recently used and hands out its mapping if it has one,
    /// under one acquisition of the index lock (the whole cost of a warm hit).
    pub fn lookup(&self, key: &ObjectKey) -> Option<Found> {
        let mut st = self.lock();
        let e = st.touch(key.as_str())?;
        Some(Found {
            size: e.size,
            verified: e.verified,
            mapped: e.handle(),
        })
    }

    /// The live mapping of `key`, if it has one: no system call.
    fn mapped(&self, key: &ObjectKey) -> Option<Bytes> {
        self.lock().entries.get_mut(key.as_str())?.handle()
    }

    /// Reads an entry's file: a (shared, pinning) memory map for large files. `None` when
    /// the file vanished underneath (the entry is then forgotten).
    pub fn read(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        if let Some(b) = self.mapped(key) {
            return Ok(Some(b));
        }
        let path = self.path_of(key.as_str());
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.lock().forget(key.as_str());
                return Ok(None);
            }
            Err(e) => return Err(Error::io(format!("opening cached {key}"), e)),
        };
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of cached {key}"), e))?
            .len();
        if size < MMAP_MIN {
            let data =
                fs::read(&path).map_err(|e| Error::io(format!("reading cached {key}"), e))?;
            return Ok(Some(Bytes::from(data)));
        }
        let map = map_file(&file, key)?;
        let mut st = self.lock();
        if let Some(e) = st.entries.get_mut(key.as_str()) {
            if e.mapping.is_none() {
                e.mapping = Some(map.clone());
            }
            return Ok(e.handle());
        }
        Ok(Some(pinned_bytes(map)))
    }

    /// Records that `key`'s content was checked in this process.
    pub fn mark_verified(&self, key: &ObjectKey) {
        if let Some(e) = self.lock().entries.get_mut(key.as_str()) {
            e.verified = true;
        }
    }

    /// A fresh path in `tmp/` for a fill.
    pub fn temp_path(&self) -> PathBuf {
        self.tmp
            .join(format!("{:016x}.fill", rand::random::<u64>()))
    }

    /// Caches `data` under `key` (content already verified or written by us). Returns
    /// false when it is not cached: already present, or no room without evicting pinned
    /// entries.
    pub fn insert(&self, key: &ObjectKey, data: &[u8]) -> Result<bool> {
        if !self.reserve(key, data.len() as u64) {
            return Ok(false);
        }
        let temp = self.temp_path();
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(data)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            self.unreserve(data.len() as u64);
            return Err(Error::io(format!("writing cached {key}"), e));
        }
        self.commit(key, &temp, data.len() as u64)
    }

    /// Moves the complete temp file of a streamed fill into place as `key`, with `map`
    /// (a mapping of that file) as the entry's mapping. `size` must have been
    /// [reserved](Self::reserve). The temp file is consumed either way.
    pub fn commit_mapped(
        &self,
        key: &ObjectKey,
        temp: &Path,
        size: u64,
        map: Arc<memmap2::Mmap>,
    ) -> Result<bool> {
        self.commit_with(key, temp, size, Some(map))
    }

    fn commit(&self, key: &ObjectKey, temp: &Path, size: u64) -> Result<bool> {
        self.commit_with(key, temp, size, None)
    }

    fn commit_with(
        &self,
        key: &ObjectKey,
        temp: &Path,
        size: u64,
        mapping: Option<Arc<memmap2::Mmap>>,
    ) -> Result<bool> {
        let target = self.path_of(key.as_str());
        let placed = target
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::rename(temp, &target));
        let mut st = self.lock();
        if let Err(e) = placed {
            drop(st);
            let _ = fs::remove_file(temp);
            self.unreserve(size);
            return Err(Error::io(format!("placing cached {key}"), e));
        }
        // `used` already holds the reservation.
        if let Some(old) = st.insert(key.as_str().to_owned(), size, true, mapping) {
            // A concurrent fill of the same key won the race; both files held the same
            // verified bytes and ours replaced it. Drop its accounting.
            st.used -= old.size;
        }
        Ok(true)
    }

    /// Reserves `size` bytes for `key`, evicting unpinned LRU entries as needed. False
    /// when `key` is present or there is no unpinned room: the fill is then not cached.
    pub fn reserve(&self, key: &ObjectKey, size: u64) -> bool {
        if size > self.max {
            return false;
        }
        let mut st = self.lock();
        if st.entries.contains_key(key.as_str()) {
            return false;
        }
        if !self.evict_until(&mut st, size) {
            return false;
        }
        st.used += size;
        true
    }

    /// Reserves `size` more bytes for the L1 copy of an upload in flight (its key is known
    /// only at publish), evicting unpinned LRU entries as needed: uploads being teed count
    /// against the budget like everything else. False when there is no unpinned room.
    pub fn reserve_temp(&self, size: u64) -> bool {
        let mut st = self.lock();
        if st.used + size > self.max && !self.evict_until(&mut st, size) {
            return false;
        }
        st.used += size;
        true
    }

    /// Moves an upload's complete temp file into place as `key`; its `size` bytes were
    /// reserved with [`reserve_temp`](Self::reserve_temp). Consumes the file either way.
    pub fn adopt_reserved(&self, key: &ObjectKey, temp: &Path, size: u64) -> Result<bool> {
        if self.lock().entries.contains_key(key.as_str()) {
            let _ = fs::remove_file(temp);
            self.unreserve(size);
            return Ok(false);
        }
        self.commit(key, temp, size)
    }

    /// Gives back a reservation whose fill was abandoned.
    pub fn unreserve(&self, size: u64) {
        self.lock().used -= size;
    }

    /// Evicts least recently used, unpinned entries until `incoming` more bytes fit.
    /// Evicts nothing (and returns false) when even that would not make room.
    fn evict_until(&self, st: &mut State, incoming: u64) -> bool {
        let Some(need) = (st.used + incoming)
            .checked_sub(self.max)
            .filter(|n| *n > 0)
        else {
            return true;
        };
        let mut victims = Vec::new();
        let mut freed = 0;
        let mut from = 0;
        while freed < need {
            let Some((&queued, key)) = st.order.range(from..).next() else {
                break;
            };
            from = queued + 1;
            let Some(e) = st.entries.get_mut(key) else {
                continue;
            };
            if e.tick != queued {
                // Used since it was queued: re-queue it at its last use, further on, so
                // the walk meets entries in true LRU order.
                let tick = e.tick;
                e.queued = tick;
                if let Some(key) = st.order.remove(&queued) {
                    st.order.insert(tick, key);
                }
                continue;
            }
            if !e.pinned() {
                victims.push(key.clone());
                freed += e.size;
            } // else pinned by a live mapping
        }
        if freed < need {
            return false;
        }
        for key in victims {
            if let Some(e) = st.forget(&key) {
                let _ = fs::remove_file(self.path_of(&key));
                self.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key = %key, size = e.size, "L1 eviction");
            }
        }
        true
    }

    /// Drops every entry and unlinks its file (the directory cached another store).
    /// Returns how many entries there were.
    pub fn clear(&self) -> usize {
        let mut st = self.lock();
        let keys: Vec<String> = st.entries.keys().cloned().collect();
        for key in &keys {
            st.forget(key);
            let _ = fs::remove_file(self.path_of(key));
        }
        keys.len()
    }

    /// Drops `key` from the cache and unlinks its file. True if it was cached.
    pub fn remove(&self, key: &ObjectKey) -> bool {
        let mut st = self.lock();
        let removed = st.forget(key.as_str()).is_some();
        let _ = fs::remove_file(self.path_of(key.as_str()));
        removed
    }

    /// Bytes in use (entries plus reservations).
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Number of cached objects.
    pub fn entries(&self) -> u64 {
        self.lock().entries.len() as u64
    }

    /// The budget.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Entries evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// Maps an L1 file (or the temp file of a fill) for reading.
pub(crate) fn map_file(file: &File, key: &ObjectKey) -> Result<Arc<memmap2::Mmap>> {
    // SAFETY: L1 files are written once under a temp name and renamed into place; this
    // process never modifies them afterwards (a streamed fill maps its temp file only once
    // every byte is written), and eviction only unlinks (the mapping keeps the inode).
    // Another program truncating files in the cache directory is outside the contract, as
    // with tantivy's MmapDirectory.
    let map = unsafe { memmap2::Mmap::map(file) }
        .map_err(|e| Error::io(format!("mapping cached {key}"), e))?;
    Ok(Arc::new(map))
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        // The holder wrote its process id into the file.
        let holder = fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        return Err(Error::CacheLocked {
            dir: dir.display().to_string(),
            holder,
        });
    }
    let mut file = file;
    let _ = file
        .set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()));
    Ok(file)
}

/// Whether `name` is a fill's temp file name: `<16 hex>.fill` (see [`L1::temp_path`]).
fn is_fill_name(name: &str) -> bool {
    name.strip_suffix(".fill")
        .is_some_and(|r| r.len() == 16 && r.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Collects (mtime, key, size) of every cacheable file under `dir`; removes the rest.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(SystemTime, String, u64)>) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let key = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .and_then(|k| ObjectKey::new(k).ok())
            .filter(|k| Kind::of(k).is_some());
        match key {
            Some(key) if meta.is_file() => out.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                key.as_str().to_owned(),
                meta.len(),
            )),
            _ => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}
