//! Checking cached content against what its key promises.
//!
//! Every object the cache keeps is self-certifying:
//!
//! | kind              | check                                                           |
//! |-------------------|-----------------------------------------------------------------|
//! | blob, tree node   | BLAKE3 of the bytes equals the hash in the key                  |
//! | outboard          | its leaves merge to the blob id in the key ([`Outboard::decode`]) |
//!
//! Manifest versions are not cached: their keys hold no hash, and a copy in L1 would say
//! nothing about whether the version still exists in L2 (another process's GC may have
//! deleted it).
//!
//! Content from L2 is checked before it is served or cached; content found in L1 at open
//! is checked on its first use in the process.

use bytes::Bytes;

use super::Kind;
use crate::blob::outboard::Outboard;
use crate::error::{Error, Result};
use crate::hash::BlobId;
use crate::keys::ObjectKey;

/// Inputs at least this large are hashed on the blocking pool.
const OFF_THREAD_MIN: usize = 64 * 1024;

/// Checks `data` against `key`: `Err(Corrupt | CorruptManifest)` (an outboard that does not decode) on a mismatch.
pub(crate) async fn check(kind: Kind, key: &ObjectKey, data: &Bytes) -> Result<()> {
    if data.len() < OFF_THREAD_MIN {
        return check_now(kind, key, data);
    }
    let (key, data) = (key.clone(), data.clone());
    tokio::task::spawn_blocking(move || check_now(kind, &key, &data))
        .await
        .map_err(|e| Error::backend("verifying cached content", e.to_string()))?
}

fn check_now(kind: Kind, key: &ObjectKey, data: &Bytes) -> Result<()> {
    match kind {
        Kind::Blob(id) | Kind::Tree(id) => {
            let actual = BlobId::of(data);
            if actual != id {
                return Err(Error::Corrupt {
                    object: key.to_string(),
                    expected: id.to_hex(),
                    actual: actual.to_hex(),
                });
            }
            Ok(())
        }
        Kind::Outboard(id) => Outboard::decode(&id, data.clone()).map(|_| ()),
    }
}
