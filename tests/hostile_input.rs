//! Hostile input as property tests: arbitrary bytes and strings into every decoder and
//! parser. None may panic; whatever is accepted must be safe. Scale with
//! `SEGSTORE_PROPTEST_CASES` (the long run uses 1,000,000).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use segstore::keys::{self, ObjectKey};
use segstore::manifest::{
    decode_root, decode_snapshot, encode_root, ManifestRoot, ShardKey, ShardRef,
};
use segstore::{fuzzing, BlobId, StorageBackend, StorageConfig, StoragePath};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("SEGSTORE_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/hostile_input.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Every file under `fuzz/seeds/<target>/`: the fuzzers' seed corpus and the inputs of
/// past findings, run here so the fuzz target bodies cannot rot while CI never builds them.
fn fuzz_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds.sort();
    seeds
}

#[test]
fn fuzz_targets_hold_on_their_seeds() {
    // Each seed must also get past the parser: one that stopped early would leave the fuzzer
    // blind to everything behind it.
    type Body = fn(&[u8]) -> bool;
    let targets: [(&str, Body); 3] = [
        ("manifest_decode", fuzzing::manifest_decode),
        ("path_parse", fuzzing::path_parse),
        ("config_parse", fuzzing::config_parse),
    ];
    for (target, body) in targets {
        for seed in fuzz_seeds(target) {
            assert!(body(&seed), "{target} rejected its seed {seed:?}");
        }
    }
}

/// Inputs that broke a property of a fuzz target body, and now must not.
#[test]
fn fuzz_findings_stay_fixed() {
    // path_parse: a listed folder name that `encode_component` never writes decoded to a
    // collection whose folder is another one (`a b` -> "a b", whose folder is `a%20b`).
    for folder in ["\0", "a b", "%2f", "%+1", "manifests/products/", ".x"] {
        assert_eq!(keys::decode_component(folder), None, "{folder:?}");
        fuzzing::path_parse(folder.as_bytes());
    }

    // manifest_decode: a root whose shard counts sum past u64::MAX made file_count and
    // total_bytes panic in debug builds (and wrap in release ones).
    let seed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds/manifest_decode/root_count_overflow"),
    )
    .unwrap();
    assert!(fuzzing::manifest_decode(&seed));
    let mut root = ManifestRoot::empty("c");
    for (shard, node) in [("a", b"a"), ("b", b"b")] {
        root.shards.insert(
            ShardKey {
                backend: StorageBackend::Tantivy,
                shard: Some(shard.into()),
            },
            ShardRef {
                node: BlobId::of(node),
                files: u64::MAX,
                bytes: u64::MAX - 1,
            },
        );
    }
    let root = decode_root("k", &encode_root(&root).unwrap()).unwrap();
    assert_eq!(
        (root.file_count(), root.total_bytes()),
        (u64::MAX, u64::MAX)
    );

    // config_parse: an infinite L1 budget (TOML `inf`, or the string "inf" in the
    // environment) was accepted as a valid config.
    let cached = "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = \"d\"\n\
                  [storage.cached]\nl1_path = \"c\"\nl2_backend = \"local\"\n";
    for budget in ["inf", "+inf", "-inf", "nan", "0", "-1"] {
        let text = format!("{cached}l1_max_size_gb = {budget}\n");
        assert!(
            StorageConfig::from_toml_str_with_env(&text, |_| None).is_err(),
            "{budget}"
        );
    }
    let text = format!("{cached}l1_max_size_gb = 2.5\n");
    assert!(StorageConfig::from_toml_str_with_env(&text, |_| None).is_ok());
    for budget in ["inf", "infinity", "NaN"] {
        let env = |k: &str| (k == "SEGSTORE_L1_MAX_SIZE_GB").then(|| budget.to_owned());
        assert!(
            StorageConfig::from_toml_str_with_env(&text, env).is_err(),
            "{budget}"
        );
    }
}

fn valid_root_bytes() -> Vec<u8> {
    encode_root(&ManifestRoot::empty("c")).unwrap().to_vec()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_root("k", &bytes);
        let _ = decode_snapshot("k", &bytes);
    }

    #[test]
    fn damaged_manifests_are_rejected(flips in prop::collection::vec((any::<usize>(), 1..=255u8), 1..4), cut in any::<usize>()) {
        let mut bytes = valid_root_bytes();
        // One flip per byte: two equal flips of one byte would cancel out.
        let mut flipped = std::collections::HashSet::new();
        for (at, x) in flips {
            let i = at % bytes.len();
            if flipped.insert(i) {
                bytes[i] ^= x;
            }
        }
        prop_assert!(decode_root("k", &bytes).is_err());
        let good = valid_root_bytes();
        let cut = cut % good.len();
        prop_assert!(decode_root("k", &good[..cut]).is_err());
    }

    #[test]
    fn path_parsing_never_panics_and_accepted_paths_are_safe(s in ".{0,80}") {
        if let Ok(p) = s.parse::<StoragePath>() {
            prop_assert_eq!(p.to_string(), s.clone());
            for part in s.split('/') {
                prop_assert!(!part.is_empty() && part != "." && part != "..");
                prop_assert!(!part.contains('\\') && !part.chars().any(char::is_control));
            }
        }
    }

    #[test]
    fn path_parsing_of_separator_heavy_input(parts in prop::collection::vec(prop_oneof![Just(".."), Just("."), Just(""), Just("tantivy"), Just("a\\b"), Just("x"), Just("\u{0}")], 0..6)) {
        let s = parts.join("/");
        if let Ok(p) = s.parse::<StoragePath>() {
            prop_assert!(p.validate().is_ok());
        }
    }

    #[test]
    fn collection_names_always_become_one_safe_key_component(name in ".{1,60}") {
        let encoded = keys::encode_component(&name);
        prop_assert!(!encoded.contains('/') && !encoded.starts_with('.'));
        let key = format!("manifests/{}/x", encoded);
        prop_assert!(ObjectKey::new(key).is_ok());
        prop_assert_eq!(keys::decode_component(&encoded), Some(name));
    }

    #[test]
    fn object_keys_never_hold_relative_steps(s in "[a-z./\\\\]{0,20}") {
        if let Ok(k) = ObjectKey::new(s.clone()) {
            prop_assert!(k.as_str().split('/').all(|p| !p.is_empty() && p != "." && p != ".."));
        }
    }

    #[test]
    fn fuzz_target_bodies_hold_on_random_input(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::manifest_decode(&bytes);
        fuzzing::path_parse(&bytes);
        fuzzing::config_parse(&bytes);
    }

    #[test]
    fn config_parsing_never_panics(text in "(\\[storage(\\.(local|s3|cached))?\\]\n|backend = \"(local|s3|cached|x)\"\n|data_dir = \"d\"\n|bucket = \"b\"\n|l1_max_size_gb = (-1|0|1e400|nan)\n|l2_backend = \"(s3|local|cached)\"\n|grace = \"[0-9a-z ]{0,5}\"\n|\\[gc\\]\n|[a-z_]{1,8} = [0-9]{1,3}\n){0,8}") {
        let _ = StorageConfig::from_toml_str(&text);
    }
}
