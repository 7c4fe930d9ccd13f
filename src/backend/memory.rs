//! An in-memory [`ObjectBackend`]: the reference the other backends are compared with in
//! tests, and a fast store for unit tests. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{check_range, ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::clock::{self, Clock};
use crate::error::{Error, Result};
use crate::keys::{self, ObjectKey};

#[derive(Debug, Clone)]
struct Stored {
    data: Bytes,
    modified: SystemTime,
}

/// Objects in a shared map. Clones share the same objects, like two handles on one bucket.
/// Modification times come from the backend's clock: the store's clock, in GC's terms.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    objects: Arc<Mutex<BTreeMap<String, Stored>>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::with_clock(clock::system())
    }
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backend whose modification times and [`now`](ObjectBackend::now) come from
    /// `clock` (virtual time in simulations).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            objects: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Stored>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // mutation is a single insert or remove), so a poisoned lock is safe to reuse.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets an object's modification time; lets GC tests age objects without sleeping.
    pub fn set_modified(&self, key: &ObjectKey, when: SystemTime) -> Result<()> {
        match self.lock().get_mut(key.as_str()) {
            Some(stored) => {
                stored.modified = when;
                Ok(())
            }
            None => Err(Error::not_found(key)),
        }
    }
}

#[async_trait]
impl ObjectBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn now(&self) -> Result<SystemTime> {
        Ok(self.clock.now())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        self.lock()
            .get(key.as_str())
            .map(|s| s.data.clone())
            .ok_or_else(|| Error::not_found(key))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        let data = self.get(key).await?;
        check_range(key, &range, data.len() as u64)?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        Ok(self.lock().get(key.as_str()).map(|s| ObjectMeta {
            key: key.clone(),
            size: s.data.len() as u64,
            last_modified: s.modified,
        }))
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.lock().insert(
            key.as_str().to_owned(),
            Stored {
                data,
                modified: self.clock.now(),
            },
        );
        Ok(())
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        let mut objects = self.lock();
        if objects.contains_key(key.as_str()) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(
            key.as_str().to_owned(),
            Stored {
                data,
                modified: self.clock.now(),
            },
        );
        Ok(PutOutcome::Created)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.lock().remove(key.as_str());
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        keys::validate_prefix(prefix)?;
        let objects = self.lock();
        objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, s)| {
                Ok(ObjectMeta {
                    key: ObjectKey::new(k.clone())?,
                    size: s.data.len() as u64,
                    last_modified: s.modified,
                })
            })
            .collect()
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.set_modified(key, self.clock.now())
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        Ok(Box::new(MemoryUpload {
            backend: self.clone(),
            buffer: BytesMut::new(),
        }))
    }
}

struct MemoryUpload {
    backend: MemoryBackend,
    buffer: BytesMut,
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.buffer.extend_from_slice(&chunk);
        Ok(())
    }

    async fn publish(self: Box<Self>, key: &ObjectKey) -> Result<()> {
        let data = self.buffer.freeze();
        self.backend.put_if_absent(key, data).await.map(|_| ())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
