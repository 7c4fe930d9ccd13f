//! The commit loop: build version N+1 on the latest head, create it put-if-absent, and on
//! losing, rebase and retry. See `docs/ARCHITECTURE.md`, "Commit".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::references::Reference;
use super::transaction::{self, Op};
use super::{Collection, CommitInfo, Store};
use crate::backend::PutOutcome;
use crate::clock::{tighten, Stamp};
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys;
use crate::manifest::tree::{Changes, EncodedNode};
use crate::manifest::{encode_root, head, CommitId, CommitNote, ManifestRoot, ShardKey, ShardRef};
use crate::observe;

/// What a commit should do to the latest version.
pub(crate) enum Plan {
    /// Apply operations; with a base, fail on conflicts with changes made since it.
    Ops {
        ops: Vec<Op>,
        base: Option<Arc<ManifestRoot>>,
    },
    /// Make the whole collection equal to an earlier version's state (restore).
    Replace {
        shards: BTreeMap<ShardKey, ShardRef>,
        /// The version the shards come from: a foreign reference, confirmed to be still
        /// retained before the commit point.
        source: u64,
    },
    /// Make the collection equal to `shards` whose objects came from elsewhere (sync,
    /// fork): `references` are confirmed before the commit point; `own` are objects the
    /// caller published itself at the given time, classified on every attempt like own
    /// uploads (within the stall window: a deadline; older: confirmed). With
    /// `expect_head`, the head the caller compared against must still be the latest.
    Adopt {
        shards: BTreeMap<ShardKey, ShardRef>,
        references: Vec<Reference>,
        own: Vec<(Reference, Stamp)>,
        expect_head: Option<u64>,
    },
    /// The requests of several callers, on disjoint paths, as one version (see
    /// `group`): each member's outcome is recorded in it.
    Group(Vec<Member>),
}

/// One caller's request in a [`Plan::Group`], and its outcome in the last attempt.
pub(crate) struct Member {
    pub(crate) ops: Vec<Op>,
    pub(crate) base: Option<Arc<ManifestRoot>>,
    /// Why this member is left out of the version (its own conflict or reference error).
    pub(crate) failed: Option<Error>,
    /// The head version, when this member's ops change nothing on it.
    pub(crate) unchanged_at: Option<u64>,
}

impl Member {
    pub(crate) fn new(ops: Vec<Op>, base: Option<Arc<ManifestRoot>>) -> Self {
        Member {
            ops,
            base,
            failed: None,
            unchanged_at: None,
        }
    }
}

pub(crate) enum Attempt {
    Won,
    Lost(ManifestRoot),
    /// The commit point could not be sent before the deadline of its references (foreign
    /// ones, or its own uploads' stall windows): confirm or store them again.
    Late,
}

impl Store {
    /// The changes of every member of a group on `head`, each member's own failure or
    /// "changes nothing" recorded in it, and the deadline they set the commit point.
    pub(super) async fn group_changes(
        &self,
        collection: &str,
        head: &ManifestRoot,
        members: &mut [Member],
        began: Stamp,
    ) -> (Changes, Option<Stamp>) {
        let mut all = Changes::new();
        let mut deadline: Option<Stamp> = None;
        for m in members.iter_mut() {
            m.unchanged_at = None;
            m.failed = None;
            match self.member_changes(collection, head, m, began).await {
                Ok((changes, due)) => {
                    if changes.is_empty() {
                        m.unchanged_at = Some(head.version);
                    }
                    for (shard, entries) in changes {
                        all.entry(shard).or_default().extend(entries);
                    }
                    if let Some(due) = due {
                        tighten(&mut deadline, due);
                    }
                }
                Err(e) => m.failed = Some(e),
            }
        }
        (all, deadline)
    }

    /// One group member's changes on `head`, after its own conflict check and with its
    /// references confirmed under the GC protocol, and the deadline they set the commit
    /// point.
    async fn member_changes(
        &self,
        collection: &str,
        head: &ManifestRoot,
        member: &Member,
        began: Stamp,
    ) -> Result<(Changes, Option<Stamp>)> {
        let trees = &self.inner.trees;
        if let Some(base) = &member.base {
            transaction::check_conflicts(trees, base, head, &member.ops).await?;
        }
        let (references, own_deadline) = self.ops_references(&member.ops);
        let deadline = self
            .commit_point_deadline(collection, &references, own_deadline, began)
            .await?;
        Ok((
            transaction::resolve(trees, head, &member.ops).await?,
            deadline,
        ))
    }

    fn plan_references(&self, plan: &Plan) -> (Vec<Reference>, Option<Stamp>) {
        let mut refs = Vec::new();
        let mut own_deadline = None;
        match plan {
            Plan::Ops { ops, .. } => (refs, own_deadline) = self.ops_references(ops),
            // Confirmed member by member (`member_changes`).
            Plan::Group(_) => {}
            Plan::Replace { source, .. } => refs.push(Reference::Version(*source)),
            Plan::Adopt {
                references, own, ..
            } => {
                refs.extend(references.iter().cloned());
                for (r, at) in own {
                    match self.own_window_end(at.elapsed(self.clock())) {
                        Some(end) => tighten(&mut own_deadline, end),
                        None => refs.push(r.clone()),
                    }
                }
            }
        }
        refs.sort_by_key(|r| format!("{r:?}"));
        refs.dedup();
        (refs, own_deadline)
    }

    /// The foreign references of staged files that `ops` put, and the deadline of their
    /// own uploads' stall windows.
    pub(super) fn ops_references(&self, ops: &[Op]) -> (Vec<Reference>, Option<Stamp>) {
        let mut refs = Vec::new();
        let mut own_deadline = None;
        for op in ops {
            if let Op::Put { entry, .. } = op {
                if entry.inline.is_none() {
                    self.blob_references(
                        &entry.id,
                        entry.size,
                        "a staged file",
                        &mut refs,
                        &mut own_deadline,
                    );
                }
            }
        }
        refs.sort_by_key(|r| format!("{r:?}"));
        refs.dedup();
        (refs, own_deadline)
    }

    pub(crate) async fn commit_plan(&self, collection: &str, plan: Plan) -> Result<CommitInfo> {
        self.commit_plan_noted(collection, plan, None).await
    }

    /// [`commit_plan`](Self::commit_plan), recording `note` with the new version.
    pub(crate) async fn commit_plan_noted(
        &self,
        collection: &str,
        plan: Plan,
        note: Option<CommitNote>,
    ) -> Result<CommitInfo> {
        let c = self.collection(collection)?;
        let _serialised = c.commit_lock.lock().await;
        self.commit_locked(&c, plan, note).await.0
    }

    /// Commits `plan` to `c` (its commit lock held), and gives the plan back with the
    /// members' outcomes of a [`Plan::Group`].
    #[tracing::instrument(level = "debug", name = "commit", skip_all, fields(collection = %c.name))]
    pub(super) async fn commit_locked(
        &self,
        c: &Collection,
        mut plan: Plan,
        note: Option<CommitNote>,
    ) -> (Result<CommitInfo>, Plan) {
        let began = Stamp::now(self.clock());
        let result = self.commit_attempts(c, &mut plan, note).await;
        let outcome = match &result {
            Ok(info) if info.created => "created",
            Ok(_) => "unchanged",
            Err(Error::Conflict { .. }) => "conflict",
            Err(_) => "failed",
        };
        observe::commit(outcome, began.elapsed(self.clock()));
        (result, plan)
    }

    async fn commit_attempts(
        &self,
        c: &Collection,
        plan: &mut Plan,
        note: Option<CommitNote>,
    ) -> Result<CommitInfo> {
        let collection = c.name.as_str();
        let commit_id = CommitId::random();
        let trees = &self.inner.trees;
        let clock = self.clock();
        let began = Stamp::now(clock);
        // Tree nodes this commit created, and when: a later attempt storing the same node
        // finds it there and it is still this commit's own upload.
        let mut own_nodes = HashMap::new();
        let mut attempt = 0u32;
        let mut late = 0u32;
        loop {
            attempt += 1;
            // A head this process confirmed lately (by a probe, or by its own last
            // commit) is built on without probing: if someone committed meanwhile, the
            // create-only write of the root fails and the next attempt probes.
            // `probed_at` is when the head was last known to be the latest version.
            let (probed_at, head) = match self.fresh_head(c, attempt) {
                Some((at, head)) => (at, head),
                None => (Stamp::now(clock), self.check_head(c, false).await?.0),
            };
            // The deadline the members of a group set the commit point.
            let mut group_deadline: Option<Stamp> = None;
            let (shards, nodes) = match plan {
                Plan::Group(members) => {
                    let (all, due) = self.group_changes(collection, &head, members, began).await;
                    group_deadline = due;
                    if all.is_empty() {
                        return Ok(CommitInfo {
                            version: head.version,
                            created: false,
                        });
                    }
                    trees.apply(&head, &all).await?
                }
                Plan::Ops { ops, base } => {
                    if let Some(base) = base {
                        transaction::check_conflicts(trees, base, &head, ops).await?;
                    }
                    let changes = transaction::resolve(trees, &head, ops).await?;
                    if changes.is_empty() {
                        return Ok(CommitInfo {
                            version: head.version,
                            created: false,
                        });
                    }
                    trees.apply(&head, &changes).await?
                }
                Plan::Adopt {
                    expect_head: Some(expected),
                    ..
                } if head.version != *expected => {
                    return Err(Error::Conflict {
                        collection: collection.to_owned(),
                        path: String::new(),
                        reason: format!(
                            "the destination moved from version {expected} to {} meanwhile",
                            head.version
                        ),
                    });
                }
                Plan::Replace { shards, .. } | Plan::Adopt { shards, .. } => {
                    if *shards == head.shards {
                        return Ok(CommitInfo {
                            version: head.version,
                            created: false,
                        });
                    }
                    (shards.clone(), Vec::new())
                }
            };
            let root = ManifestRoot {
                collection: collection.to_owned(),
                version: head.version + 1,
                commit_id,
                timestamp_ms: self.now_ms(),
                shards,
                note: note.clone(),
            };
            // References to objects this commit did not just write: confirmed under the GC
            // protocol, with a deadline for the commit point.
            // Classified again on every attempt: an own upload whose stall window ended
            // while this commit was slow (a stalled request, a lost race) is foreign now.
            let (references, mut own_deadline) = self.plan_references(plan);
            if let Some(due) = group_deadline {
                tighten(&mut own_deadline, due);
            }
            let deadline = self
                .commit_point_deadline(collection, &references, own_deadline, began)
                .await?;
            let sending = Stamp::now(clock);
            let mut create_sent = sending;
            let attempt_result = self
                .try_commit(
                    &root,
                    nodes,
                    deadline,
                    began,
                    &mut own_nodes,
                    &mut create_sent,
                )
                .await?;
            // Retention never deletes versions younger than `version_min_age`, so if this
            // attempt took less than that from probing (version N+1 absent) to creating it,
            // N+1 cannot be a deleted version re-created: the boundary read is skipped.
            let attempt_result = match attempt_result {
                // Our version exists, so an error here must not read as "not committed".
                Attempt::Won if probed_at.elapsed(clock) >= self.inner.options.version_min_age => {
                    self.check_boundary(&root, create_sent)
                        .await
                        .map_err(|_| unknown(&root))?
                }
                other => other,
            };
            match attempt_result {
                Attempt::Won => {
                    let version = root.version;
                    let root = c.advance(Arc::new(root));
                    // Nothing after our version existed when we sent it: its successors
                    // are all younger than `sending`.
                    c.confirm(sending);
                    head::maybe_write_hint(self.inner.backend.as_ref(), collection, version).await;
                    if self.inner.options.publish_head && root.version == version {
                        self.publish_root(&root).await;
                    }
                    return Ok(CommitInfo {
                        version,
                        created: true,
                    });
                }
                Attempt::Late => {
                    observe::count_as(observe::COMMIT_RETRIES, "reason", "late", 1);
                    late += 1;
                    if late >= MAX_LATE_ATTEMPTS {
                        return Err(Error::Unavailable {
                            context: format!("committing to collection {collection:?}"),
                            message: format!(
                                "the backend answered too slowly to send the commit point \
                                 within the stall window {late} times; nothing was committed"
                            ),
                            source: None,
                        });
                    }
                }
                Attempt::Lost(winner) => {
                    observe::count_as(observe::COMMIT_RETRIES, "reason", "lost_race", 1);
                    c.advance(Arc::new(winner));
                    if attempt >= self.inner.options.max_commit_attempts {
                        return Err(Error::Conflict {
                            collection: collection.to_owned(),
                            path: String::new(),
                            reason: format!(
                                "still losing to other writers after {attempt} attempts"
                            ),
                        });
                    }
                    backoff(attempt).await;
                }
            }
        }
    }

    /// The head to build attempt `attempt` on without probing, with when it was last
    /// confirmed: only with `lean_commits`, only on a first attempt, only a head that exists (a collection seen
    /// empty may be filled by an import whose versions do not start at 1), and only while
    /// retention cannot have deleted its successors (`version_min_age`).
    fn fresh_head(&self, c: &Collection, attempt: u32) -> Option<(Stamp, Arc<ManifestRoot>)> {
        if attempt > 1 || !self.inner.options.lean_commits {
            return None;
        }
        let head = c.current();
        let at = c.confirmed_at()?;
        (head.version > 0 && at.elapsed(self.clock()) < self.inner.options.version_min_age)
            .then_some((at, head))
    }

    /// Settles a commit that ended in [`Error::CommitOutcomeUnknown`]: true if version
    /// `version` of `collection` holds `commit_id` and is visible, false if the commit did
    /// not happen (or created a version that retention had already passed, which no reader
    /// can see). Errors mean "still unknown; ask again later".
    pub async fn commit_outcome(
        &self,
        collection: &str,
        version: u64,
        commit_id: CommitId,
    ) -> Result<bool> {
        let backend = self.inner.backend.as_ref();
        let root = match head::load_root(backend, collection, version).await {
            Ok(root) => root,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if root.commit_id != commit_id {
            return Ok(false);
        }
        Ok(version >= head::read_boundary(backend, collection).await?)
    }

    /// Stores the tree nodes, then tries to create the root: the commit point, sent only
    /// before `deadline` if there is one.
    async fn try_commit(
        &self,
        root: &ManifestRoot,
        nodes: Vec<EncodedNode>,
        deadline: Option<Stamp>,
        began: Stamp,
        own_nodes: &mut HashMap<BlobId, Stamp>,
        create_sent: &mut Stamp,
    ) -> Result<Attempt> {
        let backend = &self.inner.backend;
        // The new nodes are own uploads like any blob: GC's grace protects them only for
        // the stall window from when they were sent, however late their answers arrive.
        let window = self.own_window();
        let sent = Stamp::now(self.clock());
        let outcomes = futures::future::try_join_all(nodes.iter().map(|n| async move {
            backend
                .put_if_absent(&keys::tree(&n.id), n.bytes.clone())
                .await
        }))
        .await?;
        let mut deadline = deadline;
        let mut lower = |due: Stamp| tighten(&mut deadline, due);
        // A node that exists already and that this commit did not store itself (a shard
        // set back to earlier content) may be garbage a GC run is sweeping right now: like
        // an old dedup hit, it is a foreign reference, stored again once no run may be
        // deleting.
        let mut existing = Vec::new();
        let now = Stamp::now(self.clock());
        for (node, outcome) in nodes.into_iter().zip(outcomes) {
            let own_until = own_nodes
                .get(&node.id)
                .map(|at| at.later_by(window))
                .filter(|&until| now < until);
            match (outcome, own_until) {
                (PutOutcome::Created, _) => {
                    own_nodes.insert(node.id, sent);
                    lower(sent.later_by(window));
                }
                (PutOutcome::AlreadyExists, Some(until)) => lower(until),
                // Someone else's node, or ours from an attempt whose window has passed.
                (PutOutcome::AlreadyExists, None) => existing.push(Reference::Rewrite {
                    key: keys::tree(&node.id),
                    bytes: node.bytes,
                }),
            }
        }
        let deadline = self
            .commit_point_deadline(&root.collection, &existing, deadline, began)
            .await?;
        if deadline.is_some_and(|d| Stamp::now(self.clock()) >= d) {
            return Ok(Attempt::Late);
        }
        let key = keys::manifest(&root.collection, root.version);
        let encoded = encode_root(root)?;
        *create_sent = Stamp::now(self.clock());
        match backend.put_if_absent(&key, encoded.clone()).await {
            Ok(PutOutcome::Created) => Ok(Attempt::Won),
            // A retried request may find its own first try already applied, so an
            // "exists" answer is settled by the commit id, like any unknown outcome.
            Ok(PutOutcome::AlreadyExists) => match self.settle(root).await {
                Ok(Some(attempt)) => Ok(attempt),
                Ok(None) | Err(_) => Err(unknown(root)),
            },
            Err(err) => match self.settle(root).await {
                Ok(Some(attempt)) => Ok(attempt),
                // Refused before reaching storage: the commit did not happen.
                Ok(None) if is_definite_refusal(&err) => Err(err),
                // Nothing there yet, but the request may still be on its way (S3 can apply
                // a PUT after the client timed out). Creating the same root again decides
                // it: whichever copy lands first is ours, and a late one is refused.
                Ok(None) => self.recreate(root, encoded, deadline).await,
                Err(_) => Err(unknown(root)),
            },
        }
    }

    /// Retries creating `root` after an ambiguous failure that left nothing behind yet.
    async fn recreate(
        &self,
        root: &ManifestRoot,
        encoded: bytes::Bytes,
        deadline: Option<Stamp>,
    ) -> Result<Attempt> {
        let key = keys::manifest(&root.collection, root.version);
        for _ in 0..RECREATE_ATTEMPTS {
            // Past the deadline a new create could land after GC swept what the root
            // names; the first one may still land, so the outcome stays unknown.
            if deadline.is_some_and(|d| Stamp::now(self.clock()) >= d) {
                break;
            }
            match self
                .inner
                .backend
                .put_if_absent(&key, encoded.clone())
                .await
            {
                Ok(PutOutcome::Created) => return Ok(Attempt::Won),
                Ok(PutOutcome::AlreadyExists) | Err(_) => match self.settle(root).await {
                    Ok(Some(attempt)) => return Ok(attempt),
                    Ok(None) => continue,
                    Err(_) => break,
                },
            }
        }
        Err(unknown(root))
    }

    /// Reads back the version a commit tried to create: ours, someone else's, or absent.
    async fn settle(&self, root: &ManifestRoot) -> Result<Option<Attempt>> {
        let backend = self.inner.backend.as_ref();
        match head::load_root(backend, &root.collection, root.version).await {
            Ok(found) if found.commit_id == root.commit_id => Ok(Some(Attempt::Won)),
            Ok(found) => Ok(Some(Attempt::Lost(found))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// After creating version N: if retention has already deleted versions up to or past
    /// N, this writer stalled and re-created a deleted version number. Nobody can see it
    /// (readers only probe forward from newer versions), so it is removed and the commit
    /// is rebased onto the real latest version.
    ///
    /// The boundary alone decides only if it was read within `version_min_age` (less the
    /// margin) of sending the create: until then retention cannot have passed a version it
    /// judged after its creation. Later (the create's answer came late), a version that was
    /// visible, built upon, pinned and then passed by retention looks the same, so the
    /// oldest newer version decides: created before N, N is a re-creation; after N, N was
    /// visible and the commit stands. Equal times cannot be told apart: unknown outcome.
    async fn check_boundary(&self, root: &ManifestRoot, create_sent: Stamp) -> Result<Attempt> {
        let backend = self.inner.backend.as_ref();
        let opts = &self.inner.options;
        let read_after = create_sent.elapsed(self.clock());
        let boundary = head::read_boundary(backend, &root.collection).await?;
        if root.version >= boundary {
            return Ok(Attempt::Won);
        }
        if read_after + opts.clock_margin >= opts.version_min_age
            && !self.created_after_successors(root).await?
        {
            return Ok(Attempt::Won);
        }
        tracing::warn!(
            collection = %root.collection,
            version = root.version,
            boundary,
            "a stalled commit re-created a deleted version; removing it and rebasing"
        );
        backend
            .delete(&keys::manifest(&root.collection, root.version))
            .await?;
        let latest = head::discover(backend, &root.collection).await?;
        let winner = head::load_root(backend, &root.collection, latest).await?;
        Ok(Attempt::Lost(winner))
    }

    /// Whether `root`'s version was created after the oldest existing newer version (so
    /// it re-created a deleted number). An error when the two times are equal.
    async fn created_after_successors(&self, root: &ManifestRoot) -> Result<bool> {
        let backend = self.inner.backend.as_ref();
        let listed = backend
            .list(&keys::manifest_prefix(&root.collection))
            .await?;
        let mine = listed
            .iter()
            .find(|m| keys::parse_manifest_version(m.key.file_name()) == Some(root.version));
        let successor = listed
            .iter()
            .filter_map(|m| Some((keys::parse_manifest_version(m.key.file_name())?, m)))
            .filter(|(v, _)| *v > root.version)
            .min_by_key(|(v, _)| *v)
            .map(|(_, m)| m);
        match (mine, successor) {
            (Some(mine), Some(next)) if next.last_modified < mine.last_modified => Ok(true),
            (Some(mine), Some(next)) if next.last_modified > mine.last_modified => Ok(false),
            // Below the boundary with no newer version listed, or equal times: a listing
            // that lags, or a tie; neither proves anything.
            _ => Err(unknown(root)),
        }
    }
}

/// Attempts that miss their commit point's deadline (a backend answering slower than the
/// stall window) before the commit gives up, having committed nothing.
const MAX_LATE_ATTEMPTS: u32 = 8;

/// Extra creates of the same root after an ambiguous failure, before giving up with
/// [`Error::CommitOutcomeUnknown`].
const RECREATE_ATTEMPTS: u32 = 3;

/// The error for a commit whose outcome could not be settled.
fn unknown(root: &ManifestRoot) -> Error {
    Error::CommitOutcomeUnknown {
        collection: root.collection.clone(),
        version: root.version,
        commit_id: root.commit_id,
    }
}

/// Errors that mean the request was refused without effect, so nothing can land later.
/// Local I/O errors are too (a local write cannot land after it returned), and a full
/// disk must reach the caller as such, not as an unknown outcome.
fn is_definite_refusal(err: &Error) -> bool {
    matches!(
        err,
        Error::PermissionDenied { .. }
            | Error::StorageFull { .. }
            | Error::Io { .. }
            | Error::ReadOnly(_)
            | Error::BucketNotFound { .. }
            | Error::InvalidConfig(_)
            | Error::Unsupported(_)
    )
}

/// Waits a little after losing a commit race, so that many writers spread out.
async fn backoff(attempt: u32) {
    let cap_ms = 1u64 << attempt.min(6);
    let wait = rand::random_range(0..=cap_ms);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}
