//! What an interrupted command (Ctrl-C) did and did not commit.
//!
//! A command that commits to a collection records the collection's version first; on
//! Ctrl-C the command's work is dropped (uploads in flight remove their temp files) and
//! the version is read again, so the message says whether anything was committed.

use std::sync::Mutex;

use segstore::Store;

/// The collection a writing command commits to, and its version before the command.
struct Watch {
    store: Store,
    collection: String,
    before: u64,
}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);

/// Records `collection`'s current version, for the message of an interruption.
pub async fn watch(store: &Store, collection: &str) -> segstore::Result<()> {
    let before = store.head(collection).await?.version;
    *WATCH.lock().unwrap_or_else(|p| p.into_inner()) = Some(Watch {
        store: store.clone(),
        collection: collection.to_owned(),
        before,
    });
    Ok(())
}

/// The message for an interruption of the running command.
pub async fn report() -> String {
    let watch = WATCH.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(w) = watch else {
        return "interrupted: nothing was committed (this command had not started a commit)".into();
    };
    let at = |v: u64| {
        if v == 0 {
            "does not exist yet".to_owned()
        } else {
            format!("is at version {v}")
        }
    };
    match w.store.head(&w.collection).await {
        Ok(now) if now.version == w.before => format!(
            "interrupted: nothing was committed; collection {:?} still {}",
            w.collection,
            at(w.before)
        ),
        Ok(now) => format!(
            "interrupted after a commit: collection {:?} {} (it was at version {}); \
             see `segstore log {}`",
            w.collection,
            at(now.version),
            w.before,
            w.collection
        ),
        Err(e) => format!(
            "interrupted; whether collection {:?} (at version {} before) changed is unknown: {e}",
            w.collection, w.before
        ),
    }
}
