//! [`CommitNote`]: an optional message and metadata recorded with a version (`segstore
//! put -m MSG --meta k=v`). Stored after the root's payload in the same envelope, only
//! when present, so roots without a note are byte-for-byte the format before notes
//! existed (see `docs/FORMAT.md`, "Commit note").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most bytes of message, keys and values one note may hold.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

/// A commit message and `key = value` metadata, recorded with one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitNote {
    /// Free text (may be empty).
    pub message: String,
    /// Metadata, sorted by key.
    pub meta: BTreeMap<String, String>,
}

impl CommitNote {
    /// Checks the limits: at most [`MAX_NOTE_BYTES`] in all; keys non-empty, without
    /// control characters or `=`.
    pub fn check(&self) -> Result<(), String> {
        let total = self.meta.iter().fold(self.message.len(), |n, (k, v)| {
            n.saturating_add(k.len()).saturating_add(v.len())
        });
        if total > MAX_NOTE_BYTES {
            return Err(format!(
                "commit note of {total} bytes exceeds the limit of {MAX_NOTE_BYTES}"
            ));
        }
        for k in self.meta.keys() {
            if k.is_empty() || k.contains('=') || k.chars().any(char::is_control) {
                return Err(format!(
                    "metadata key {k:?} must be non-empty, without '=' or control characters"
                ));
            }
        }
        Ok(())
    }
}
