//! Manifest roots written by earlier builds still decode: golden bytes of a root in the
//! format before commit notes (message and metadata) existed, and of one with a note.

use segstore::manifest::{decode_root, encode_root, CommitId, ManifestRoot, ShardKey, ShardRef};
use segstore::{BlobId, StorageBackend};

/// A root as builds before commit notes wrote it (hex of `encode_root`).
const OLD_ROOT: &str = "5347534d0100010870726f6475637473030707070707070707070707070707070780d095ffbc310100010773686172645f30235f6d24c29d114f2078f96bc86acdc95ef9038fc0d9761aadd8d2f89e0d040b020a648e308c98e5b2910c4b0aceb8c7543a6d768a64575e5c305917203b8dce2010";

fn sample_root() -> ManifestRoot {
    let mut root = ManifestRoot::empty("products");
    root.version = 3;
    root.commit_id = CommitId([7; 16]);
    root.timestamp_ms = 1_700_000_000_000;
    root.shards.insert(
        ShardKey {
            backend: StorageBackend::Tantivy,
            shard: Some("shard_0".into()),
        },
        ShardRef {
            node: BlobId::of(b"node"),
            files: 2,
            bytes: 10,
        },
    );
    root
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_root_of_the_old_format_decodes_and_encodes_to_the_same_bytes() {
    let root = sample_root();
    assert_eq!(hex(&encode_root(&root).unwrap()), OLD_ROOT);
    assert_eq!(decode_root("k", &unhex(OLD_ROOT)).unwrap(), root);
}

#[test]
fn a_root_with_a_note_round_trips_and_without_one_is_unchanged() {
    let mut root = sample_root();
    let old = encode_root(&root).unwrap();
    root.note = Some(segstore::manifest::CommitNote {
        message: "nightly reindex".into(),
        meta: [("ticket".to_owned(), "OPS-7".to_owned())].into(),
    });
    let noted = encode_root(&root).unwrap();
    assert_eq!(decode_root("k", &noted).unwrap(), root);
    // The note follows the old payload: the same bytes up to the old checksum.
    assert_eq!(noted[..old.len() - 32], old[..old.len() - 32]);
    assert!(noted.len() > old.len());
    // A damaged note is a typed error, never a panic; so is a note over the limit.
    let mut bad = root.clone();
    bad.note.as_mut().unwrap().message = "x".repeat(segstore::manifest::MAX_NOTE_BYTES + 1);
    assert!(matches!(
        encode_root(&bad),
        Err(segstore::Error::InvalidConfig(_))
    ));
    for cut in 1..noted.len() {
        assert!(decode_root("k", &noted[..cut]).is_err());
    }
}
