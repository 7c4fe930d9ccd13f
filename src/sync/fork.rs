//! Zero-copy forks: a new collection whose first version is a source version's root.

use crate::error::{Error, Result};
use crate::keys;
use crate::manifest::head;
use crate::path::validate_name;
use crate::snapshot::Target;
use crate::store::{CommitInfo, Plan, Reference, Store};

impl Store {
    /// Creates collection `new` whose first version equals `source` at `target` (`None`:
    /// the latest). It shares every blob and tree node with the source: the fork writes
    /// one root, whatever the size. GC marks per version, so shared objects stay while
    /// any collection references them, and stats count them once.
    ///
    /// `new` must not exist yet ([`Error::Conflict`]); a source version no longer retained
    /// is [`Error::NotFound`]. The source version is a foreign reference of the commit,
    /// confirmed under the GC protocol like a restore's.
    pub async fn fork(
        &self,
        source: &str,
        target: Option<&Target>,
        new: &str,
    ) -> Result<CommitInfo> {
        validate_name(source)?;
        validate_name(new)?;
        if self.refresh(new).await?.version != 0 {
            return Err(Error::Conflict {
                collection: new.to_owned(),
                path: String::new(),
                reason: "a fork needs a collection that does not exist yet".into(),
            });
        }
        let version = match target {
            Some(t) => self.resolve_target(source, t).await?,
            None => self.refresh(source).await?.version,
        };
        let not_retained = || {
            Error::not_found(format!(
                "version {version} of collection {source:?} (no longer retained)"
            ))
        };
        if version == 0 {
            return Err(not_retained());
        }
        let root = self.root_at(source, version).await?;
        if version < head::read_boundary(self.backend().as_ref(), source).await? {
            return Err(not_retained());
        }
        let references = vec![Reference::Object {
            key: keys::manifest(source, version),
            why: "the forked version",
        }];
        self.commit_plan(
            new,
            Plan::Adopt {
                shards: root.shards,
                references,
                own: Vec::new(),
                expect_head: Some(0),
            },
        )
        .await
        .map_err(|e| match e {
            Error::ReferenceGone { .. } => not_retained(),
            other => other,
        })
    }
}
