//! Bodies of the cargo-fuzz targets in `fuzz/` (see `docs/RELIABILITY.md`, "Fuzzing").
//!
//! They live in the library, not in the fuzz crate, so that the normal test suite runs them
//! over the committed seeds and random input too (`tests/hostile_input.rs`): a change to a
//! decoder or parser that breaks a target breaks `cargo test`, even though CI never builds
//! the fuzz crate. Each function panics when a property fails; that is how libFuzzer learns
//! of a finding. Not a stable API.

use std::fmt::Debug;

use bytes::Bytes;

use crate::config::{BackendKind, StorageConfig, ENV_VARS};
use crate::error::{Error, Result};
use crate::keys::{self, ObjectKey};
use crate::manifest::encoding::{self, Kind};
use crate::path::{StoragePath, MAX_COMPONENT_LEN};

const KEY: &str = "fuzz";

/// Manifest decoding. The whole input goes to every decoder as raw bytes (envelope checks);
/// then everything after the first byte goes, inside a valid envelope of the kind that the
/// first byte picks, to that kind's decoder (postcard payloads). Whatever decodes must
/// re-encode to bytes that decode to the same value. Returns whether any decoder accepted
/// the input, so the seeds' test can check that they reach past the checks.
pub fn manifest_decode(data: &[u8]) -> bool {
    let mut accepted = false;
    for kind in [
        Kind::Root,
        Kind::ShardNode,
        Kind::Page,
        Kind::Snapshot,
        Kind::ShardPage,
        Kind::HeadBundle,
    ] {
        accepted |= check_kind(kind, data);
    }
    if let Some((&pick, payload)) = data.split_first() {
        let kind = match pick % 4 {
            0 => Kind::Root,
            1 => Kind::ShardNode,
            2 => Kind::Page,
            _ => Kind::Snapshot,
        };
        accepted |= check_kind(kind, &encoding::envelope(kind, payload));
    }
    accepted
}

fn check_kind(kind: Kind, bytes: &[u8]) -> bool {
    match kind {
        Kind::Root => round_trip(bytes, encoding::encode_root, encoding::decode_root)
            // Sums over hostile counts must not overflow (a panic in debug builds).
            .map(|root| (root.file_count(), root.total_bytes()))
            .is_some(),
        Kind::ShardNode => {
            round_trip(bytes, encoding::encode_shard, encoding::decode_shard).is_some()
        }
        Kind::Page => round_trip(bytes, encoding::encode_page, encoding::decode_page).is_some(),
        Kind::ShardPage => round_trip(
            bytes,
            encoding::encode_shard_page,
            encoding::decode_any_page,
        )
        .is_some(),
        Kind::Snapshot => round_trip(bytes, encoding::encode_snapshot, encoding::decode_snapshot)
            .map(|snapshot| snapshot.is_expired(u64::MAX))
            .is_some(),
        Kind::HeadBundle => encoding::decode_published("fuzz", bytes)
            .map(|(root, _)| (root.file_count(), root.total_bytes()))
            .is_ok(),
        Kind::GcEpoch => {
            encoding::decode::<crate::store::epoch::EpochRecord>("fuzz", Kind::GcEpoch, bytes)
                .is_ok()
        }
    }
}

fn round_trip<T: PartialEq + Debug>(
    bytes: &[u8],
    encode: fn(&T) -> Result<Bytes>,
    decode: fn(&str, &[u8]) -> Result<T>,
) -> Option<T> {
    let value = match decode(KEY, bytes) {
        Ok(value) => value,
        Err(Error::CorruptManifest { .. }) => return None,
        Err(other) => panic!("manifest decoding gave a non-corruption error: {other}"),
    };
    let encoded = encode(&value).expect("a decoded manifest re-encodes");
    let again = decode(KEY, &encoded).expect("a re-encoded manifest decodes");
    assert_eq!(again, value, "decode(encode(x)) != x");
    let twice = encode(&again).expect("a decoded manifest re-encodes");
    assert_eq!(twice, encoded, "encoding is not deterministic");
    Some(value)
}

/// Path and key parsing: [`StoragePath`] parsing and display, [`ObjectKey`] and list-prefix
/// validation, and the collection-name and version codecs of [`keys`]. Input is read as
/// UTF-8, invalid sequences replaced. Returns whether the input was a valid path, key or
/// list prefix.
pub fn path_parse(data: &[u8]) -> bool {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    let mut accepted = false;

    match s.parse::<StoragePath>() {
        Ok(path) => {
            assert_eq!(path.to_string(), s, "parse -> Display changed the path");
            assert_eq!(s.parse::<StoragePath>().ok(), Some(path.clone()));
            path.validate().expect("a parsed path validates");
            path.validate_prefix()
                .expect("a parsed path is a valid prefix");
            let mut parts = vec![path.collection.as_str()];
            parts.extend(path.shard.as_deref());
            parts.push(path.segment.as_str());
            for part in parts {
                assert!(
                    component_is_safe(part),
                    "unsafe component {part:?} in {s:?}"
                );
            }
            assert!(path.prefix_matches(&path));
            accepted = true;
        }
        Err(Error::InvalidPath { .. }) => {}
        Err(other) => panic!("path parsing gave a non-InvalidPath error: {other}"),
    }

    if let Ok(key) = ObjectKey::new(s) {
        assert_eq!(key.as_str(), s);
        for part in s.split('/') {
            assert!(
                !part.is_empty() && part != "." && part != "..",
                "relative step in key {s:?}"
            );
            assert!(
                !part.chars().any(|c| c.is_control() || c == '\\'),
                "control or backslash in key {s:?}"
            );
        }
        assert!(s.ends_with(key.file_name()));
        accepted = true;
    }
    if keys::validate_prefix(s).is_ok() && !s.is_empty() {
        let inner = s
            .strip_suffix('/')
            .expect("a valid non-empty prefix ends in '/'");
        assert!(
            ObjectKey::new(inner).is_ok(),
            "prefix {s:?} is not a key plus '/'"
        );
        accepted = true;
    }

    // Collection names: any string maps to one safe component and back.
    let encoded = keys::encode_component(s);
    assert_eq!(keys::decode_component(&encoded).as_deref(), Some(s));
    assert!(!encoded.contains('/') && !encoded.starts_with('.'));
    if !s.is_empty() {
        assert!(ObjectKey::new(format!("manifests/{encoded}/x")).is_ok());
    }
    // And a listed folder name decodes only to the name whose folder it is.
    if let Some(name) = keys::decode_component(s) {
        assert_eq!(
            keys::encode_component(&name),
            s,
            "folder {s:?} decodes to {name:?}, whose folder is another"
        );
    }

    if let Some(version) = keys::parse_manifest_version(s) {
        assert_eq!(format!("{version:020}"), s);
    }
    if let Some(id) = keys::id_from_key(s) {
        assert_eq!(s.rsplit('/').next(), Some(id.to_hex().as_str()));
    }
    if let Some(id) = keys::outboard_id_from_key(s) {
        assert!(s.ends_with(&format!("{}{}", id.to_hex(), keys::OUTBOARD_SUFFIX)));
    }
    accepted
}

fn component_is_safe(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c.len() <= MAX_COMPONENT_LEN
        && !c
            .chars()
            .any(|ch| ch == '/' || ch == '\\' || ch.is_control())
}

/// Config parsing: TOML, then environment overrides. Input up to the first NUL byte is the
/// TOML text; each line after it is one override, its first byte picking the variable from
/// [`ENV_VARS`] and the rest being the value. A config that parses must be valid and usable.
/// Returns whether it parsed.
pub fn config_parse(data: &[u8]) -> bool {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let overrides: Vec<(&str, String)> = env
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let (&pick, value) = line.split_first()?;
            let name = ENV_VARS[usize::from(pick) % ENV_VARS.len()];
            Some((name, String::from_utf8_lossy(value).into_owned()))
        })
        .collect();
    // The last override of a variable wins, as a later `export` would.
    let var = |k: &str| {
        overrides
            .iter()
            .rev()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    };
    let config = match StorageConfig::from_toml_str_with_env(&text, var) {
        Ok(config) => config,
        Err(Error::InvalidConfig(_)) => return false,
        Err(other) => panic!("config parsing gave a non-InvalidConfig error: {other}"),
    };
    config.validate().expect("a parsed config validates");
    let _ = config.gc_options();
    if config.storage.backend == BackendKind::Cached {
        let cached = config.storage.cached.as_ref().expect("validated");
        assert!(
            cached.l1_max_size_gb.is_finite()
                && cached.l1_max_size_gb > 0.0
                && cached.l1_max_size_gb < crate::config::L1_MAX_SIZE_GB_LIMIT,
            "L1 budget {} GB accepted",
            cached.l1_max_size_gb
        );
        assert_ne!(cached.l2_backend, BackendKind::Cached);
    }
    if config.storage.backend == BackendKind::S3 {
        assert!(!config
            .storage
            .s3
            .as_ref()
            .expect("validated")
            .bucket
            .is_empty());
    }
    true
}
