//! The id of one commit attempt. A leaf module: errors name it (an ambiguous commit's
//! outcome) and manifests store it, so it depends on neither.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A random id that each commit attempt writes into its root, so that an ambiguous outcome
/// (a timeout after the request was sent) can be settled by reading the version back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommitId(pub [u8; 16]);

impl CommitId {
    /// A fresh random id.
    pub fn random() -> Self {
        CommitId(rand::random())
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitId({})", hex::encode(self.0))
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
