//! The one place that builds object keys. See `docs/FORMAT.md` for the layout.
//!
//! ```text
//! blobs/<aa>/<64-hex>                  immutable file content, named by its BLAKE3 hash
//! blobs/<aa>/<64-hex>.obao             outboard of a large blob, for verified range reads
//! trees/<aa>/<64-hex>                  immutable manifest tree node (shard index or page)
//! manifests/<collection>/<20-digit N>  manifest root of version N, created put-if-absent
//! manifests/<collection>/_latest       hint: a recent version number, never authoritative
//! manifests/<collection>/_boundary     retention boundary: versions below it may be gone
//! pins/<collection>/<name>             snapshot: a named pin of one version
//! gc/epochs/<20-digit E>[.done]        a GC or retention run's claim, and its end
//! _store/identity                      the store's identity: id, format, shared settings
//! _store/probe-<32-hex>                conditional-write probe, only while a store is created
//! ```
//!
//! Collection names are user input, so they are percent-encoded into one key component:
//! nothing a caller passes can add a separator or a relative step to a key.

use std::fmt::{self, Write as _};

use crate::error::{Error, Result};
use crate::hash::BlobId;

/// Prefix of every content blob.
pub const BLOBS_PREFIX: &str = "blobs/";
/// Prefix of every tree node.
pub const TREES_PREFIX: &str = "trees/";
/// Prefix of every manifest root.
pub const MANIFESTS_PREFIX: &str = "manifests/";
/// File name of the latest-version hint inside a collection's manifest folder.
pub const LATEST_HINT: &str = "_latest";
/// File name of the retention boundary inside a collection's manifest folder.
pub const BOUNDARY: &str = "_boundary";
/// File name of the published head inside a collection's manifest folder: a copy of a
/// recent version's root (see `manifest::head`).
pub const PUBLISHED_HEAD: &str = "_head";
/// Prefix of every snapshot (pin).
pub const PINS_PREFIX: &str = "pins/";
/// Folder of the store-wide objects (identity, creation probes).
pub const STORE_PREFIX: &str = "_store/";

/// Key of the store identity (see `crate::identity`).
pub fn identity() -> ObjectKey {
    ObjectKey(format!("{STORE_PREFIX}identity"))
}

/// Key of a conditional-write probe made while a store is created.
pub fn probe(token: u128) -> ObjectKey {
    ObjectKey(format!("{STORE_PREFIX}probe-{token:032x}"))
}

/// A validated, relative object key such as `blobs/ab/ab12...`.
///
/// Components are separated by `/`, none is empty, `.` or `..`, and no character is a
/// control character or a backslash. Backends may therefore join it under their root or
/// prefix without further checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        validate_key(&key)?;
        Ok(ObjectKey(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_path(key, "empty object key"));
    }
    for part in key.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(Error::invalid_path(
                key,
                "object key has an empty or relative component",
            ));
        }
        if part.chars().any(|c| c.is_control() || c == '\\') {
            return Err(Error::invalid_path(
                key,
                "object key has a control character or backslash",
            ));
        }
    }
    Ok(())
}

/// Validates a list prefix: either empty, or a key prefix ending in `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some(inner) => validate_key(inner),
        None => Err(Error::invalid_path(prefix, "list prefix must end with '/'")),
    }
}

/// Key of a content blob.
pub fn blob(id: &BlobId) -> ObjectKey {
    ObjectKey(id_key(BLOBS_PREFIX, id, ""))
}

/// Key of a tree node.
pub fn tree(id: &BlobId) -> ObjectKey {
    ObjectKey(id_key(TREES_PREFIX, id, ""))
}

/// `<prefix><aa>/<hex><suffix>`, built with one allocation (every read builds one).
fn id_key(prefix: &str, id: &BlobId, suffix: &str) -> String {
    let digits = id.hex_digits();
    let mut key = String::with_capacity(prefix.len() + 3 + digits.len() + suffix.len());
    key.push_str(prefix);
    push_ascii(&mut key, &digits[..2]);
    key.push('/');
    push_ascii(&mut key, &digits);
    key.push_str(suffix);
    key
}

/// Appends ASCII bytes (digits) to `out`.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    out.extend(ascii.iter().map(|&b| char::from(b)));
}

/// Suffix of an outboard's key: `blobs/<aa>/<hex>.obao`.
pub const OUTBOARD_SUFFIX: &str = ".obao";

/// Key of the outboard of blob `id` (see [`crate::blob::outboard`]).
pub fn outboard(id: &BlobId) -> ObjectKey {
    ObjectKey(id_key(BLOBS_PREFIX, id, OUTBOARD_SUFFIX))
}

/// Parses the id out of a blob or tree key (`blobs/ab/<hex>`), if it is one. Outboard keys
/// (`<hex>.obao`) are not blob keys and give `None`; see [`outboard_id_from_key`].
pub fn id_from_key(key: &str) -> Option<BlobId> {
    let name = key.rsplit('/').next()?;
    name.parse().ok()
}

/// Parses the id of the blob an outboard key (`blobs/ab/<hex>.obao`) belongs to.
pub fn outboard_id_from_key(key: &str) -> Option<BlobId> {
    key.strip_prefix(BLOBS_PREFIX)?
        .strip_suffix(OUTBOARD_SUFFIX)
        .and_then(id_from_key)
}

/// Folder of a collection's manifest versions, ending in `/`.
pub fn manifest_prefix(collection: &str) -> String {
    // Room for a version number too: `manifest` appends one to this.
    let mut prefix = String::with_capacity(MANIFESTS_PREFIX.len() + collection.len() + 21);
    prefix.push_str(MANIFESTS_PREFIX);
    push_encoded(&mut prefix, collection);
    prefix.push('/');
    prefix
}

/// Key of manifest version `version` of `collection`.
pub fn manifest(collection: &str, version: u64) -> ObjectKey {
    let mut key = manifest_prefix(collection);
    // Twenty digits, zero-padded (`{:020}` pads one `write_char` at a time).
    let mut digits = [b'0'; 20];
    let mut rest = version;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    push_ascii(&mut key, &digits);
    ObjectKey(key)
}

/// Key of the latest-version hint of `collection`.
pub fn latest_hint(collection: &str) -> ObjectKey {
    ObjectKey(format!("{}{LATEST_HINT}", manifest_prefix(collection)))
}

/// Key of the published head of `collection`.
pub fn published_head(collection: &str) -> ObjectKey {
    ObjectKey(format!("{}{PUBLISHED_HEAD}", manifest_prefix(collection)))
}

/// Key of the retention boundary of `collection`: every version below it may be deleted.
pub fn boundary(collection: &str) -> ObjectKey {
    ObjectKey(format!("{}{BOUNDARY}", manifest_prefix(collection)))
}

/// Folder of a collection's snapshots, ending in `/`.
pub fn pins_prefix(collection: &str) -> String {
    format!("{PINS_PREFIX}{}/", encode_component(collection))
}

/// Key of snapshot `name` of `collection`.
pub fn pin(collection: &str, name: &str) -> ObjectKey {
    ObjectKey(format!(
        "{}{}",
        pins_prefix(collection),
        encode_component(name)
    ))
}

/// Folder of the GC epoch records (`gc/epochs/<20-digit epoch>`, and `<epoch>.done`).
pub const GC_EPOCHS_PREFIX: &str = "gc/epochs/";

/// Key of the record of GC run `epoch`, created put-if-absent when the run starts.
pub fn gc_epoch(epoch: u64) -> ObjectKey {
    ObjectKey(format!("{GC_EPOCHS_PREFIX}{epoch:020}"))
}

/// Key of the marker that GC run `epoch` finished deleting.
pub fn gc_epoch_done(epoch: u64) -> ObjectKey {
    ObjectKey(format!("{GC_EPOCHS_PREFIX}{epoch:020}.done"))
}

/// Parses a manifest version from the last component of a manifest key.
pub fn parse_manifest_version(file_name: &str) -> Option<u64> {
    if file_name.len() == 20 && file_name.bytes().all(|b| b.is_ascii_digit()) {
        file_name.parse().ok()
    } else {
        None
    }
}

/// Percent-encodes a collection name into one safe key component.
///
/// ASCII letters, digits, `-` and `_` pass through, as does `.` except in first place;
/// every other byte becomes `%XX`. The mapping is injective, so two collections never share
/// a folder. Collection-name validation refuses names whose encoding is longer than
/// [`MAX_ENCODED_LEN`], so the result is always one valid file name.
pub fn encode_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_encoded(&mut out, name);
    out
}

/// The longest [`encode_component`] output that is valid: one file name on every local
/// filesystem (`NAME_MAX`), and so one folder on every backend alike.
pub const MAX_ENCODED_LEN: usize = 255;

/// The length of [`encode_component`]`(name)`, without building it.
pub fn encoded_len(name: &str) -> usize {
    name.bytes()
        .enumerate()
        .map(|(i, b)| if kept(i, b) { 1 } else { 3 })
        .sum()
}

/// Whether byte `b` at position `i` of a name passes through the encoding unchanged.
fn kept(i: usize, b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0)
}

/// Appends [`encode_component`]`(name)` to `out`.
fn push_encoded(out: &mut String, name: &str) {
    for (i, b) in name.bytes().enumerate() {
        if kept(i, b) {
            out.push(b as char);
        } else {
            // Writing to a `String` cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Reverses [`encode_component`]: `None` for any string it does not produce.
///
/// Listings feed this every folder name under `manifests/`. A spelling `encode_component`
/// never writes (`a b`, `%2f`, `%+1`, `x/y`) would otherwise decode to a collection whose
/// folder is a different one, so only the canonical spelling is accepted.
pub fn decode_component(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode_component(&name) == encoded).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let id = BlobId::of(b"x");
        let hex = id.to_hex();
        assert_eq!(blob(&id).as_str(), format!("blobs/{}/{hex}", &hex[..2]));
        assert_eq!(
            manifest("products", 7).as_str(),
            "manifests/products/00000000000000000007"
        );
        assert_eq!(parse_manifest_version("00000000000000000007"), Some(7));
        assert_eq!(parse_manifest_version("_latest"), None);
        assert_eq!(id_from_key(blob(&id).as_str()), Some(id));
        assert_eq!(
            outboard(&id).as_str(),
            format!("blobs/{}/{hex}.obao", &hex[..2])
        );
        assert_eq!(id_from_key(outboard(&id).as_str()), None);
        assert_eq!(outboard_id_from_key(outboard(&id).as_str()), Some(id));
        assert_eq!(outboard_id_from_key(blob(&id).as_str()), None);
        let empty = BlobId::of(b"");
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(blob(&empty).as_str(), format!("blobs/af/{hex}"));
        assert_eq!(tree(&empty).as_str(), format!("trees/af/{hex}"));
        assert_eq!(outboard(&empty).as_str(), format!("blobs/af/{hex}.obao"));
        assert_eq!(
            manifest("a b", 12).as_str(),
            "manifests/a%20b/00000000000000000012"
        );
        assert_eq!(latest_hint("a b").as_str(), "manifests/a%20b/_latest");
    }

    #[test]
    fn collection_encoding_is_safe_and_reversible() {
        for name in ["products", ".hidden", "a b", "ü/..", "%41", "..", "x.y"] {
            let enc = encode_component(name);
            assert!(
                ObjectKey::new(format!("manifests/{enc}/x")).is_ok(),
                "{enc}"
            );
            assert!(!enc.contains('/'));
            assert!(!enc.starts_with('.'));
            assert_eq!(decode_component(&enc).as_deref(), Some(name));
        }
        assert_ne!(encode_component("%41"), encode_component("A"));
        for name in [
            "products",
            ".hidden",
            "a b",
            "ü/..",
            "é".repeat(127).as_str(),
        ] {
            assert_eq!(encoded_len(name), encode_component(name).len(), "{name}");
        }
    }

    #[test]
    fn only_canonical_folder_names_decode() {
        // Found by the path_parse fuzz target: each of these decoded to a name whose
        // folder is another one.
        for folder in ["a b", "%2f", "%+1", "x/y", ".x", "\0", "A%41", "%C3"] {
            assert_eq!(decode_component(folder), None, "{folder:?}");
        }
        assert_eq!(decode_component("%2Ex%20y").as_deref(), Some(".x y"));
    }

    #[test]
    fn rejects_bad_keys() {
        for k in ["", "/a", "a//b", "a/../b", "a/./b", "a\\b", "a\0", "a/"] {
            assert!(ObjectKey::new(k).is_err(), "{k:?}");
        }
    }
}
