//! Sweeping the staging area: what writers that crashed mid-upload left behind.

use std::time::{Duration, SystemTime};

use super::errors::{classify, Kind};
use super::{to_system_time, S3Backend, STAGING_DIR};
use crate::error::Result;

impl S3Backend {
    /// Removes what crashed writers left in the staging area: multipart uploads and
    /// staging objects older than `older_than`. Returns how many were removed.
    ///
    /// A process that dies mid-upload cannot abort it, and S3 keeps (and bills) its parts
    /// forever unless a lifecycle rule or this sweep removes them. `older_than` must exceed
    /// the longest upload, or a live one is cut off; an hour is plenty for segment files.
    pub async fn remove_stale_staging(&self, older_than: Duration) -> Result<usize> {
        let cutoff = crate::clock::Clock::now(&crate::clock::SystemClock)
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let staging = format!("{}{STAGING_DIR}", self.prefix());
        let context = "removing stale staging uploads";
        let mut removed = 0;

        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client()
                .list_multipart_uploads()
                .bucket(self.bucket())
                .prefix(&staging)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| self.error(context, STAGING_DIR, e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                if to_system_time(upload.initiated()) > cutoff {
                    continue;
                }
                let aborted = self
                    .client()
                    .abort_multipart_upload()
                    .bucket(self.bucket())
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
                match aborted.map_err(classify) {
                    Ok(_) => removed += 1,
                    Err(f) if f.kind == Kind::NotFound => {}
                    Err(f) => return Err(f.into_error(context, self.bucket(), key)),
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }

        for object in self.list_all(&staging, context, STAGING_DIR).await? {
            let Some(key) = object.key() else { continue };
            if to_system_time(object.last_modified()) > cutoff {
                continue;
            }
            self.delete_full(key)
                .await
                .map_err(|f| f.into_error(context, self.bucket(), key))?;
            removed += 1;
        }
        Ok(removed)
    }
}
