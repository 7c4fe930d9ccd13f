//! Copying one blob between backends, verified on the way: what sync and import send.

use crate::backend::ObjectBackend;
use crate::blob::outboard::{OutboardBuilder, OUTBOARD_MIN};
use crate::error::{Error, Result};
use crate::hash::{update_hasher, BlobId};
use crate::keys::{self, ObjectKey};

/// Blobs are copied in pieces of this size, so memory stays bounded.
const COPY_CHUNK: u64 = 8 * 1024 * 1024;

/// Copies blob `id` in bounded chunks, verifying its hash and size; false if `dest`
/// already had it.
pub(crate) async fn copy_blob(
    src: &dyn ObjectBackend,
    dest: &dyn ObjectBackend,
    id: &BlobId,
    size: u64,
) -> Result<bool> {
    let key: ObjectKey = keys::blob(id);
    if dest.head(&key).await?.is_some() {
        return Ok(false);
    }
    let mut upload = dest.begin_upload().await?;
    let mut hasher = blake3::Hasher::new();
    // Imported blobs get their outboard on the way in, where the destination keeps them,
    // so that range reads of them never fall back to fetching the whole blob.
    let mut outboard =
        (dest.wants_outboards() && size >= OUTBOARD_MIN).then(OutboardBuilder::default);
    let mut offset = 0;
    while offset < size {
        let end = (offset + COPY_CHUNK).min(size);
        let chunk = match src.get_range(&key, offset..end).await {
            Ok(c) => c,
            Err(e) => {
                let _ = upload.abort().await;
                return Err(match e {
                    Error::NotFound { .. } | Error::OutOfRange { .. } => Error::Corrupt {
                        object: key.to_string(),
                        expected: format!("{id} ({size} bytes)"),
                        actual: "missing or short blob in the source".into(),
                    },
                    other => other,
                });
            }
        };
        update_hasher(&mut hasher, &chunk);
        if let Some(ob) = outboard.as_mut() {
            ob.update(&chunk);
        }
        offset = end;
        upload.write(chunk).await?;
    }
    let actual = BlobId::from(hasher.finalize());
    if actual != *id {
        let _ = upload.abort().await;
        return Err(Error::hash_mismatch(&key, id, actual));
    }
    // Stored before the blob, as the blob layer does: a blob never lacks its outboard.
    if let Some(ob) = outboard.and_then(|b| b.finish()) {
        if let Err(e) = dest.put(&keys::outboard(id), ob.encode()).await {
            let _ = upload.abort().await;
            return Err(e);
        }
    }
    upload.publish(&key).await?;
    Ok(true)
}
