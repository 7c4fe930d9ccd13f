//! Reading a collection's whole history back, to check that concurrent or faulty commits
//! left one linear run of versions.

use std::collections::HashSet;

use segstore::manifest::ManifestRoot;
use segstore::Diff;
use segstore::Store;

/// One version and what it changed from the one before.
pub struct Version {
    /// The version's root.
    pub root: ManifestRoot,
    /// Its changes from the previous version (from the empty state for version 1).
    pub diff: Diff,
}

/// Every version of `collection` from 1 to the latest, asserting the history is linear:
/// each version exists and names itself, and no commit id appears twice (a commit that
/// landed twice would be a duplicate).
pub async fn linear_history(store: &Store, collection: &str) -> Vec<Version> {
    let head = store.head(collection).await.expect("reading the head");
    let mut previous = store.root_at(collection, 0).await.expect("empty root");
    let mut ids = HashSet::new();
    let mut out = Vec::with_capacity(head.version as usize);
    for v in 1..=head.version {
        let root = store
            .root_at(collection, v)
            .await
            .unwrap_or_else(|e| panic!("version {v} of {} is unreadable: {e}", head.version));
        assert_eq!(root.version, v, "version {v} names itself");
        assert!(
            ids.insert(root.commit_id),
            "commit id {} appears twice (again at version {v})",
            root.commit_id
        );
        let diff = store
            .diff_roots(&previous, &root)
            .await
            .expect("diffing versions");
        assert!(!diff.is_empty(), "version {v} changes nothing");
        previous = root.clone();
        out.push(Version { root, diff });
    }
    out
}
