//! Logical paths: `collection/backend/shard/segment`, as Prism names its files.
//!
//! A [`StoragePath`] never reaches a filesystem or an object key directly: it is a key in a
//! manifest. Validation still rejects anything that could be mistaken for a path separator
//! or a relative step, so that tools which print or export paths stay safe too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys;

/// The longest allowed path component, in bytes (the common filesystem name limit).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Which kind of index a file belongs to. Written in lowercase in paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StorageBackend {
    /// Tantivy full-text segments.
    Tantivy,
    /// Vector index files (HNSW and the like).
    Vector,
    /// Graph edge files.
    Graph,
}

impl StorageBackend {
    /// Every backend, in their sort order.
    pub const ALL: [StorageBackend; 3] = [
        StorageBackend::Tantivy,
        StorageBackend::Vector,
        StorageBackend::Graph,
    ];

    /// The lowercase name used in paths.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Tantivy => "tantivy",
            StorageBackend::Vector => "vector",
            StorageBackend::Graph => "graph",
        }
    }
}

impl fmt::Display for StorageBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageBackend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tantivy" => Ok(StorageBackend::Tantivy),
            "vector" => Ok(StorageBackend::Vector),
            "graph" => Ok(StorageBackend::Graph),
            other => Err(Error::invalid_path(
                other,
                "backend must be one of tantivy, vector, graph",
            )),
        }
    }
}

/// The logical name of one stored file.
///
/// Displayed as `collection/backend/shard/segment`, or `collection/backend/segment` when
/// there is no shard. Ordering is by (collection, backend, shard, segment), with shardless
/// paths before sharded ones; [`SegmentStorage::list`](crate::SegmentStorage::list) returns
/// paths in this order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoragePath {
    /// The collection (one manifest history per collection).
    pub collection: String,
    /// The index kind.
    pub backend: StorageBackend,
    /// The shard, if the index is sharded.
    pub shard: Option<String>,
    /// The file name within the shard. For a `list` prefix, `""` matches every segment.
    pub segment: String,
}

impl StoragePath {
    /// A path with a shard.
    pub fn new(
        collection: impl Into<String>,
        backend: StorageBackend,
        shard: impl Into<String>,
        segment: impl Into<String>,
    ) -> Self {
        StoragePath {
            collection: collection.into(),
            backend,
            shard: Some(shard.into()),
            segment: segment.into(),
        }
    }

    /// A path without a shard.
    pub fn unsharded(
        collection: impl Into<String>,
        backend: StorageBackend,
        segment: impl Into<String>,
    ) -> Self {
        StoragePath {
            collection: collection.into(),
            backend,
            shard: None,
            segment: segment.into(),
        }
    }

    /// Checks every component. Operations call this before touching storage.
    pub fn validate(&self) -> Result<()> {
        self.validate_with(false)
    }

    /// Checks a path used as a `list` prefix, where an empty segment means "everything".
    pub fn validate_prefix(&self) -> Result<()> {
        self.validate_with(true)
    }

    fn validate_with(&self, empty_segment_ok: bool) -> Result<()> {
        validate_component(&self.collection)
            .and_then(|()| check_encoded_len(&self.collection))
            .map_err(|r| self.invalid(r))?;
        if let Some(shard) = &self.shard {
            validate_component(shard).map_err(|r| self.invalid(r))?;
        }
        if !(empty_segment_ok && self.segment.is_empty()) {
            validate_component(&self.segment).map_err(|r| self.invalid(r))?;
        } else if let Some(reason) = forbidden_char(&self.segment) {
            return Err(self.invalid(reason));
        }
        Ok(())
    }

    fn invalid(&self, reason: String) -> Error {
        Error::invalid_path(self.to_string(), reason)
    }

    /// True when `self`, used as a prefix, selects `path` (see `SegmentStorage::list`).
    pub fn prefix_matches(&self, path: &StoragePath) -> bool {
        self.collection == path.collection
            && self.backend == path.backend
            && (self.shard.is_none() || self.shard == path.shard)
            && path.segment.starts_with(&self.segment)
    }
}

/// Validates a collection or snapshot name: a valid component whose key encoding (see
/// [`keys::encode_component`]) fits in one file name, so it is valid on every backend.
pub fn validate_name(name: &str) -> Result<()> {
    validate_component(name)
        .and_then(|()| check_encoded_len(name))
        .map_err(|reason| Error::invalid_path(name, reason))
}

/// Collection and snapshot names become one key component (a folder or file name), after
/// percent-encoding: refuse them up front, on every backend alike, when that is too long.
fn check_encoded_len(name: &str) -> std::result::Result<(), String> {
    let len = keys::encoded_len(name);
    if len > keys::MAX_ENCODED_LEN {
        return Err(format!(
            "name encodes to {len} bytes, more than {} (bytes other than ASCII letters, \
             digits, '-', '_' and '.' count three times)",
            keys::MAX_ENCODED_LEN
        ));
    }
    Ok(())
}

/// Checks one component (the rules of [`StoragePath::validate`]), giving the reason.
pub(crate) fn check_component(c: &str) -> std::result::Result<(), String> {
    validate_component(c)
}

fn validate_component(c: &str) -> std::result::Result<(), String> {
    if c.is_empty() {
        return Err("empty component".into());
    }
    if c == "." || c == ".." {
        return Err(format!("component {c:?} is a relative step"));
    }
    if c.len() > MAX_COMPONENT_LEN {
        return Err(format!(
            "component is {} bytes, more than {MAX_COMPONENT_LEN}",
            c.len()
        ));
    }
    match forbidden_char(c) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

fn forbidden_char(c: &str) -> Option<String> {
    c.chars().find_map(|ch| match ch {
        '/' | '\\' => Some(format!("component contains separator {ch:?}")),
        ch if ch.is_control() => Some(format!("component contains control character {ch:?}")),
        _ => None,
    })
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shard {
            Some(shard) => write!(
                f,
                "{}/{}/{}/{}",
                self.collection, self.backend, shard, self.segment
            ),
            None => write!(f, "{}/{}/{}", self.collection, self.backend, self.segment),
        }
    }
}

impl FromStr for StoragePath {
    type Err = Error;

    /// Parses `collection/backend/shard/segment` or `collection/backend/segment`, and
    /// validates the result.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let path = match parts.as_slice() {
            [collection, backend, segment] => StoragePath {
                collection: (*collection).to_owned(),
                backend: backend.parse().map_err(|_| {
                    Error::invalid_path(s, "second component must be tantivy, vector or graph")
                })?,
                shard: None,
                segment: (*segment).to_owned(),
            },
            [collection, backend, shard, segment] => StoragePath {
                collection: (*collection).to_owned(),
                backend: backend.parse().map_err(|_| {
                    Error::invalid_path(s, "second component must be tantivy, vector or graph")
                })?,
                shard: Some((*shard).to_owned()),
                segment: (*segment).to_owned(),
            },
            _ => {
                return Err(Error::invalid_path(
                    s,
                    "expected collection/backend/segment or collection/backend/shard/segment",
                ))
            }
        };
        path.validate()?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for s in [
            "products/tantivy/shard_0/segment_00001.si",
            "products/vector/hnsw.bin",
            "c/graph/s/e",
        ] {
            let p: StoragePath = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        let p: StoragePath = "products/vector/hnsw.bin".parse().unwrap();
        assert_eq!(p.shard, None);
        assert_eq!(p.backend, StorageBackend::Vector);
    }

    #[test]
    fn rejects_bad_components() {
        let long = "x".repeat(256);
        let bad = [
            StoragePath::new("", StorageBackend::Tantivy, "s", "f"),
            StoragePath::new("c", StorageBackend::Tantivy, "..", "f"),
            StoragePath::new("c", StorageBackend::Tantivy, "s", "."),
            StoragePath::new("c", StorageBackend::Tantivy, "s", "a/b"),
            StoragePath::new("c", StorageBackend::Tantivy, "s", "a\\b"),
            StoragePath::new("c", StorageBackend::Tantivy, "s", "a\0b"),
            StoragePath::new("c", StorageBackend::Tantivy, "s", "a\nb"),
            StoragePath::new("c", StorageBackend::Tantivy, "s", long.as_str()),
            StoragePath::new("c", StorageBackend::Tantivy, "", "f"),
        ];
        for p in bad {
            assert!(
                matches!(p.validate(), Err(Error::InvalidPath { .. })),
                "{p:?} should be rejected"
            );
        }
        assert!(
            StoragePath::new("c", StorageBackend::Tantivy, "s", "x".repeat(255))
                .validate()
                .is_ok()
        );
    }
}
