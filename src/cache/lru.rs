//! The L1 index: one [`Entry`] per cached object and the least-recently-used order.
//!
//! A hit only moves its entry's tick; the order (a map from the tick an entry was queued
//! at to its key) is brought up to date lazily by eviction, which re-queues entries used
//! since they were queued. Eviction therefore meets entries in exact LRU order, while a
//! hit costs one hash lookup and no reordering.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

/// One cached object.
#[derive(Debug)]
pub(super) struct Entry {
    /// Size of its file, as accounted in [`State::used`].
    pub(super) size: u64,
    /// When the entry was last used.
    pub(super) tick: u64,
    /// Its key in [`State::order`]: the tick it was last queued at, at most `tick`. A hit
    /// only moves `tick`; eviction re-queues stale entries, so the order it sees is exact
    /// LRU while a hit costs no map update.
    pub(super) queued: u64,
    /// Whether its content was checked against its key in this process.
    pub(super) verified: bool,
    /// The file's mapping once it was mapped, so that hot reads cost no system call.
    /// Pinned while anyone else holds it.
    pub(super) mapping: Option<Arc<memmap2::Mmap>>,
    /// One `Bytes` over `mapping`, cloned for every hit: a clone is one atomic increment,
    /// where wrapping the mapping anew would allocate. All clones share one reference to
    /// the mapping, which they give back when the last of them is dropped.
    handle: Option<Bytes>,
}

impl Entry {
    /// A `Bytes` over the whole mapping, if the entry has one.
    pub(super) fn handle(&mut self) -> Option<Bytes> {
        let map = self.mapping.as_ref()?;
        Some(
            self.handle
                .get_or_insert_with(|| pinned_bytes(map.clone()))
                .clone(),
        )
    }

    /// True while a reader holds the mapping. The entry first lets go of its own handle:
    /// if readers still hold clones of it, the mapping's count stays above one. (The
    /// index lock is held, so no hit can clone the handle meanwhile; the next hit makes
    /// a new one.)
    pub(super) fn pinned(&mut self) -> bool {
        self.handle = None;
        self.mapping
            .as_ref()
            .is_some_and(|m| Arc::strong_count(m) > 1)
    }
}

/// The index behind the L1 lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) entries: HashMap<String, Entry, foldhash::fast::RandomState>,
    /// LRU order: queued tick -> key (see [`Entry::queued`]).
    pub(super) order: BTreeMap<u64, String>,
    /// The last tick handed out: one per use or insertion.
    pub(super) tick: u64,
    /// Bytes of the entries plus reservations.
    pub(super) used: u64,
}

impl State {
    /// Marks `key` most recently used; returns its entry. Only the entry's tick moves
    /// (the LRU order is brought up to date lazily, by eviction).
    pub(super) fn touch(&mut self, key: &str) -> Option<&mut Entry> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(key)?;
        e.tick = tick;
        Some(e)
    }

    /// Adds a new entry of `size` bytes as the most recently used. Returns the entry it
    /// replaced, if any, already taken out of the order.
    pub(super) fn insert(
        &mut self,
        key: String,
        size: u64,
        verified: bool,
        mapping: Option<Arc<memmap2::Mmap>>,
    ) -> Option<Entry> {
        self.tick += 1;
        let tick = self.tick;
        let old = self.entries.insert(
            key.clone(),
            Entry {
                size,
                tick,
                queued: tick,
                verified,
                mapping,
                handle: None,
            },
        );
        if let Some(old) = &old {
            self.order.remove(&old.queued);
        }
        self.order.insert(tick, key);
        old
    }

    pub(super) fn forget(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.queued);
        self.used -= e.size;
        Some(e)
    }
}

/// A memory map shared by every `Bytes` handed out for one entry.
struct Pin(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Pin {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Wraps a shared mapping as `Bytes`; the entry stays pinned while they live.
pub(crate) fn pinned_bytes(map: Arc<memmap2::Mmap>) -> Bytes {
    Bytes::from_owner(Pin(map))
}
