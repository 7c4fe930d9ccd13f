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
    // total_bytes panic in debug builds (and wrap in release ones). Such a root is now
    // refused at decode; one huge count alone (the seed `root_huge_count`) decodes, and its
    // totals do not overflow.
    let seed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds/manifest_decode/root_huge_count"),
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
    let bytes = encode_root(&root).unwrap();
    let decoded = decode_root("k", &bytes);
    assert!(
        matches!(decoded, Err(segstore::Error::CorruptManifest { .. })),
        "{decoded:?}"
    );
    assert!(!fuzzing::manifest_decode(&bytes));
    root.shards.pop_last();
    let root = decode_root("k", &encode_root(&root).unwrap()).unwrap();
    assert_eq!(
        (root.file_count(), root.total_bytes()),
        (u64::MAX, u64::MAX - 1)
    );

    // config_parse: an infinite L1 budget (TOML `inf`, or the string "inf" in the
    // environment) was accepted as a valid config.
    let cached = "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = \"d\"\n\
                  [storage.cached]\nl1_path = \"c\"\nl2_backend = \"local\"\n";
    // And a huge one (1e300 GB) saturated to u64::MAX bytes: unbounded too.
    for budget in [
        "inf",
        "+inf",
        "-inf",
        "nan",
        "0",
        "-1",
        "1e300",
        "17179869184",
    ] {
        let text = format!("{cached}l1_max_size_gb = {budget}\n");
        assert!(
            StorageConfig::from_toml_str_with_env(&text, |_| None).is_err(),
            "{budget}"
        );
    }
    let text = format!("{cached}l1_max_size_gb = 2.5\n");
    assert!(StorageConfig::from_toml_str_with_env(&text, |_| None).is_ok());
    for budget in ["inf", "infinity", "NaN", "1e300"] {
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

// ---------------------------------------------------------------------------------------
// Files outside the store, long names (issue 16). Each of these failed on the old code.

mod filesystem {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use segstore::backend::local::LocalBackend;
    use segstore::backend::memory::MemoryBackend;
    use segstore::transfer::ExportScope;
    use segstore::{Error, LocalStorage, SegmentStorage, StorageBackend, StoragePath, Store};

    const THREE_DAYS: Duration = Duration::from_secs(3 * 24 * 3600);

    /// A file of `dir` last modified three days ago.
    fn old_file(dir: &Path, name: &str) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, b"not segstore's").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(segstore::clock::Clock::now(&segstore::clock::SystemClock) - THREE_DAYS)
            .unwrap();
        path
    }

    fn tar_with(build: impl FnOnce(&mut tar::Builder<std::fs::File>), at: &Path) {
        let mut b = tar::Builder::new(std::fs::File::create(at).unwrap());
        build(&mut b);
        b.into_inner().unwrap().sync_all().unwrap();
    }

    fn symlink_header(target: &Path) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        h
    }

    async fn export_tar_of_books(dir: &Path) -> std::path::PathBuf {
        let src = LocalStorage::open(dir.join("src")).await.unwrap();
        let p = StoragePath::new("books", StorageBackend::Tantivy, "s", "seg");
        src.write(&p, &vec![7u8; 100_000]).await.unwrap();
        let archive = dir.join("books.tar");
        src.export_tar("books", &ExportScope::AllVersions, &archive)
            .await
            .unwrap();
        archive
    }

    #[tokio::test]
    async fn a_tar_symlink_cannot_make_import_delete_files_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let victim = old_file(&dir.path().join("victim"), "precious.txt");
        let archive = dir.path().join("evil.tar");
        tar_with(
            |b| {
                let mut h = symlink_header(victim.parent().unwrap());
                b.append_data(&mut h, "tmp", std::io::empty()).unwrap();
            },
            &archive,
        );
        let dst = LocalStorage::open(dir.path().join("dst")).await.unwrap();
        let result = dst.import_tar("books", &archive).await;
        assert!(victim.exists(), "import deleted {}", victim.display());
        assert!(
            matches!(result, Err(Error::InvalidPath { .. })),
            "a symlink entry must be refused: {result:?}"
        );
    }

    #[tokio::test]
    async fn tar_entries_other_than_regular_files_with_store_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = export_tar_of_books(dir.path()).await;
        let bad: Vec<(&str, tar::Header, &[u8])> = vec![
            (
                "blobs/aa/link",
                symlink_header(Path::new("/etc/passwd")),
                b"",
            ),
            ("notes.txt", regular(5), b"hello"),
            ("manifests/books/../../x", regular(1), b"x"),
            ("blobs/zz/not-a-hash", regular(1), b"x"),
            ("pins/books/%zz", regular(1), b"x"),
        ];
        for (i, (name, mut header, data)) in bad.into_iter().enumerate() {
            let archive = dir.path().join(format!("bad{i}.tar"));
            let good = good.clone();
            tar_with(
                |b| {
                    let mut from = tar::Archive::new(std::fs::File::open(&good).unwrap());
                    for e in from.entries().unwrap() {
                        let e = e.unwrap();
                        let mut h = e.header().clone();
                        let path = e.path().unwrap().into_owned();
                        b.append_data(&mut h, path, e).unwrap();
                    }
                    append_raw(b, &mut header, name, data);
                },
                &archive,
            );
            let dst = LocalStorage::open(dir.path().join(format!("dst{i}")))
                .await
                .unwrap();
            let result = dst.import_tar("books", &archive).await;
            assert!(
                matches!(result, Err(Error::InvalidPath { .. })),
                "{name}: {result:?}"
            );
            assert_eq!(dst.head("books").await.unwrap().version, 0, "{name}");
        }
        // The untouched archive still imports.
        let dst = LocalStorage::open(dir.path().join("dst-good"))
            .await
            .unwrap();
        dst.import_tar("books", &good).await.unwrap();
        assert_eq!(dst.head("books").await.unwrap().version, 1);
    }

    fn regular(size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// Appends an entry with `name` written into the header as is (no `..` checks).
    fn append_raw(
        b: &mut tar::Builder<std::fs::File>,
        header: &mut tar::Header,
        name: &str,
        data: &[u8],
    ) {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        b.append(header, data).unwrap();
    }

    #[tokio::test]
    async fn export_into_a_foreign_directory_is_refused_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = LocalStorage::open(dir.path().join("src")).await.unwrap();
        let p = StoragePath::new("books", StorageBackend::Tantivy, "s", "seg");
        src.write(&p, b"x").await.unwrap();
        let target = dir.path().join("home");
        let kept = old_file(&target.join("tmp"), "draft.txt");
        let mine = old_file(&target, "notes.txt");
        let result = src
            .export_dir("books", &ExportScope::AllVersions, &target)
            .await;
        assert!(kept.exists(), "export deleted {}", kept.display());
        assert!(mine.exists());
        assert!(
            matches!(result, Err(Error::InvalidConfig(_))),
            "a non-empty directory that is no store must be refused: {result:?}"
        );
    }

    #[tokio::test]
    async fn open_deletes_only_its_own_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        // A store layout (as an older version left it) whose tmp/ also holds a file
        // someone else put there, and a stale temp file of segstore's own.
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        let foreign = old_file(&root.join("tmp"), "backup.tar");
        let stale = old_file(&root.join("tmp"), "segstore-tmp-1-0123456789abcdef.tmp");
        LocalBackend::open(&root).await.unwrap();
        assert!(foreign.exists(), "open deleted {}", foreign.display());
        assert!(!stale.exists(), "a stale temp file of segstore's was kept");
    }

    #[tokio::test]
    async fn a_symlinked_folder_inside_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = old_file(&dir.path().join("victim"), "precious.txt");
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        std::os::unix::fs::symlink(victim.parent().unwrap(), root.join("tmp")).unwrap();
        let result = LocalBackend::open(&root).await;
        assert!(victim.exists(), "open deleted {}", victim.display());
        assert!(
            matches!(result, Err(Error::InvalidConfig(_))),
            "a symlink in the root must be refused: {result:?}"
        );
    }

    #[tokio::test]
    async fn a_cache_directory_keeps_files_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let l1 = dir.path().join("cache");
        let foreign = old_file(&l1.join("tmp"), "keep-me");
        let l2 = Arc::new(MemoryBackend::new());
        segstore::CachedStorage::open(&l1, 1 << 20, l2, Default::default())
            .await
            .unwrap();
        assert!(foreign.exists(), "L1 open deleted {}", foreign.display());
    }

    #[tokio::test]
    async fn long_non_ascii_names_are_refused_alike_on_every_backend() {
        let dir = tempfile::tempdir().unwrap();
        let long = "é".repeat(127); // 254 bytes: within the 255-byte component rule
        let p = StoragePath::new(long.as_str(), StorageBackend::Tantivy, "s", "seg");
        let local = LocalStorage::open(dir.path().join("store")).await.unwrap();
        let memory = Store::new(Arc::new(MemoryBackend::new()), Default::default());
        let on_local = local.write(&p, b"x").await;
        let on_memory = memory.write_bytes(&p, "x".into()).await.map(|_| ());
        for (backend, result) in [("local", on_local), ("memory", on_memory)] {
            assert!(
                matches!(result, Err(Error::InvalidPath { .. })),
                "{backend}: {result:?}"
            );
        }
        // Names whose encoding fits stay valid everywhere, and work on local disk.
        let fits = "é".repeat(42); // 84 bytes, 252 encoded
        let p = StoragePath::new(fits.as_str(), StorageBackend::Tantivy, "s", "seg");
        local.write(&p, b"x").await.unwrap();
        assert_eq!(local.read(&p).await.unwrap(), b"x");
        local
            .create_snapshot(&fits, &fits, None, None)
            .await
            .unwrap();
        assert!(matches!(
            local.create_snapshot(&fits, &long, None, None).await,
            Err(Error::InvalidPath { .. })
        ));
        let ascii = "a".repeat(255);
        let p = StoragePath::new(ascii.as_str(), StorageBackend::Tantivy, "s", "seg");
        local.write(&p, b"x").await.unwrap();
    }
}
