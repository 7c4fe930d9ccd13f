//! Group commit: operations committed to one collection by several tasks of one process at
//! the same time become one version, built and created once, instead of commits that
//! queue behind each other (or race, across stores) each paying a full round of requests.
//!
//! Each caller's commit request waits in its collection's queue. Whoever holds the
//! collection's commit lock takes the longest run of waiting requests, in arrival order,
//! whose paths are disjoint, and commits it as one version ([`Plan::Group`]): each request
//! keeps its own conflict check, its own references under the GC protocol and its own
//! result; a failure of one (a conflict, a reference GC removed) fails only that one. A
//! request touching a path an earlier waiting request touches ends the run and is
//! committed in a later version, so requests on the same path land in arrival order
//! exactly as if committed one by one. An error of the shared commit (the backend, an
//! unknown outcome) is every member's error.
//!
//! The leader's work runs in its own task, so that a caller that stops waiting cancels
//! neither its own commit nor the others' it carries.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::commit::{Member, Plan};
use super::transaction::Op;
use super::{Collection, CommitInfo, Store};
use crate::error::{Error, Result};
use crate::manifest::ManifestRoot;

/// A commit request waiting for the commit lock.
struct Waiting {
    id: u64,
    ops: Vec<Op>,
    base: Option<Arc<ManifestRoot>>,
    reply: oneshot::Sender<Result<CommitInfo>>,
}

/// The commit requests of one collection waiting for its commit lock, in arrival order.
#[derive(Default)]
pub(crate) struct Queue {
    next_id: AtomicU64,
    waiting: Mutex<VecDeque<Waiting>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting = self.waiting.lock().map_or(0, |w| w.len());
        f.debug_struct("Queue").field("waiting", &waiting).finish()
    }
}

impl Queue {
    fn push(
        &self,
        ops: Vec<Op>,
        base: Option<Arc<ManifestRoot>>,
    ) -> (u64, oneshot::Receiver<Result<CommitInfo>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(Waiting {
            id,
            ops,
            base,
            reply,
        });
        (id, answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// While request `id` waits: the longest run from the front of the queue whose
    /// requests touch disjoint paths (at least one request).
    fn take_group(&self, id: u64) -> Option<Vec<Waiting>> {
        let mut waiting = self.lock();
        if !waiting.iter().any(|w| w.id == id) {
            return None;
        }
        let mut touched = HashSet::new();
        let mut group = Vec::new();
        while let Some(next) = waiting.front() {
            let paths: Vec<_> = next.ops.iter().flat_map(|op| op.paths()).collect();
            if !group.is_empty() && paths.iter().any(|p| touched.contains(*p)) {
                break;
            }
            touched.extend(paths.into_iter().cloned());
            group.extend(waiting.pop_front());
        }
        Some(group)
    }
}

impl Store {
    /// Commits `ops` as one version. With a `base`, fails with [`Error::Conflict`] if a
    /// path the ops touch changed since `base`; without one, the ops apply to whatever is
    /// latest (last writer wins per path, as in a filesystem).
    pub async fn commit_ops(
        &self,
        collection: &str,
        ops: Vec<Op>,
        base: Option<Arc<ManifestRoot>>,
    ) -> Result<CommitInfo> {
        for op in &ops {
            for path in op.paths() {
                path.validate()?;
                if path.collection != collection {
                    return Err(Error::invalid_path(
                        path.to_string(),
                        format!("not in collection {collection:?}"),
                    ));
                }
            }
        }
        self.commit_grouped(collection, ops, base).await
    }

    /// The foreign references of `plan` (see [`references`](super::references)), and the
    /// deadline of its own uploads' stall windows (if it has any).
    /// Commits `ops` (validated) to `collection`, together with the other requests waiting
    /// for the collection's commit lock (see the [module](self) documentation).
    pub(crate) async fn commit_grouped(
        &self,
        collection: &str,
        ops: Vec<Op>,
        base: Option<Arc<ManifestRoot>>,
    ) -> Result<CommitInfo> {
        let c = self.collection(collection)?;
        let (id, answer) = c.queue.push(ops, base);
        let store = self.clone();
        tokio::spawn(async move {
            let _serialised = c.commit_lock.clone().lock_owned().await;
            while let Some(group) = c.queue.take_group(id) {
                store.commit_group(&c, group).await;
            }
        });
        answer.await.unwrap_or_else(|_| {
            Err(Error::backend(
                format!("committing to collection {collection:?}"),
                "the task carrying the commit ended without an answer",
            ))
        })
    }

    /// Commits one group (the commit lock held) and answers each of its requests.
    async fn commit_group(&self, c: &Collection, group: Vec<Waiting>) {
        let mut replies = Vec::with_capacity(group.len());
        let mut members = Vec::with_capacity(group.len());
        for w in group {
            replies.push(w.reply);
            members.push(Member::new(w.ops, w.base));
        }
        if members.len() == 1 {
            let Member { ops, base, .. } = members.pop().expect("one member");
            let result = self.commit_locked(c, Plan::Ops { ops, base }, None).await.0;
            let _ = replies.pop().expect("one reply").send(result);
            return;
        }
        let (result, plan) = self.commit_locked(c, Plan::Group(members), None).await;
        let Plan::Group(members) = plan else {
            unreachable!("commit_locked returns the plan it was given")
        };
        for (member, reply) in members.into_iter().zip(replies) {
            let answer = match (member.failed, member.unchanged_at, &result) {
                (Some(own), _, _) => Err(own),
                // Its ops change nothing on that version, whatever became of the others.
                (None, Some(version), _) => Ok(CommitInfo {
                    version,
                    created: false,
                }),
                (None, None, Err(shared)) => Err(shared.duplicate()),
                (None, None, Ok(info)) => Ok(*info),
            };
            // A caller that stopped waiting does not need its answer.
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::{StorageBackend, StoragePath, StoreOptions};
    use bytes::Bytes;

    fn p(name: &str) -> StoragePath {
        StoragePath::new("c", StorageBackend::Tantivy, "s0", name)
    }

    fn store() -> Store {
        Store::new(Arc::new(MemoryBackend::new()), StoreOptions::default())
    }

    /// Waits (without time) until `n` requests wait in `c`'s queue.
    async fn queued(c: &Collection, n: usize) {
        while c.queue.lock().len() < n {
            tokio::task::yield_now().await;
        }
    }

    /// Starts `write_bytes(path, data)` and waits until it is queued behind the lock.
    async fn write_queued(
        store: &Store,
        c: &Collection,
        name: &str,
        data: &'static [u8],
    ) -> tokio::task::JoinHandle<Result<CommitInfo>> {
        let n = c.queue.lock().len();
        let s = store.clone();
        let path = p(name);
        let task = tokio::spawn(async move { s.write_bytes(&path, Bytes::from(data)).await });
        queued(c, n + 1).await;
        task
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_wait_together_become_one_version() {
        let store = store();
        let c = store.collection("c").unwrap();
        let lock = c.commit_lock.clone().lock_owned().await;
        let mut tasks = Vec::new();
        for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            tasks.push(write_queued(&store, &c, name, b"content").await);
        }
        drop(lock);
        for task in tasks {
            let info = task.await.unwrap().unwrap();
            assert_eq!(
                info,
                CommitInfo {
                    version: 1,
                    created: true
                }
            );
        }
        assert_eq!(store.head("c").await.unwrap().version, 1);
        for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            assert_eq!(&store.read_bytes(&p(name)).await.unwrap()[..], b"content");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_on_one_path_land_in_arrival_order() {
        let store = store();
        let c = store.collection("c").unwrap();
        let lock = c.commit_lock.clone().lock_owned().await;
        let first = write_queued(&store, &c, "a", b"first").await;
        let other = write_queued(&store, &c, "b", b"other").await;
        let second = write_queued(&store, &c, "a", b"second").await;
        let after = write_queued(&store, &c, "c", b"after").await;
        drop(lock);
        let (first, other) = (first.await.unwrap().unwrap(), other.await.unwrap().unwrap());
        let (second, after) = (
            second.await.unwrap().unwrap(),
            after.await.unwrap().unwrap(),
        );
        // The second write of `a` ends the first group: it and what follows it are the
        // next version, so `a` ends as the later caller left it.
        assert_eq!((first.version, other.version), (1, 1));
        assert_eq!((second.version, after.version), (2, 2));
        assert_eq!(&store.read_bytes(&p("a")).await.unwrap()[..], b"second");
        assert_eq!(&store.read_bytes(&p("c")).await.unwrap()[..], b"after");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_that_fails_fails_alone() {
        let store = store();
        let stale = store.transaction("c").await.unwrap();
        store.write_bytes(&p("x"), Bytes::from("v1")).await.unwrap();
        let c = store.collection("c").unwrap();
        let lock = c.commit_lock.clone().lock_owned().await;
        // A transaction based on version 0 that writes `x`, changed since: a conflict.
        let mut conflicting = stale;
        conflicting.put(&p("x"), "stale").await.unwrap();
        let conflict = tokio::spawn(conflicting.commit());
        queued(&c, 1).await;
        // A rename of a missing path: not found.
        let s = store.clone();
        let rename = tokio::spawn(async move { s.rename(&p("missing"), &p("y")).await });
        queued(&c, 2).await;
        // A delete of a missing path: changes nothing.
        let s = store.clone();
        let noop = tokio::spawn(async move { s.delete(&p("gone")).await });
        queued(&c, 3).await;
        let good = write_queued(&store, &c, "z", b"lands").await;
        drop(lock);
        assert!(matches!(
            conflict.await.unwrap(),
            Err(Error::Conflict { .. })
        ));
        assert!(matches!(rename.await.unwrap(), Err(Error::NotFound { .. })));
        assert_eq!(
            noop.await.unwrap().unwrap(),
            CommitInfo {
                version: 1,
                created: false
            }
        );
        assert_eq!(
            good.await.unwrap().unwrap(),
            CommitInfo {
                version: 2,
                created: true
            }
        );
        assert_eq!(&store.read_bytes(&p("x")).await.unwrap()[..], b"v1");
        assert_eq!(store.head("c").await.unwrap().version, 2);
    }
}
