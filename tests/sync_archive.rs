//! Export archives are streamed: compressed by extension (`.tar.zst`, `.tar.gz`), to and
//! from stdin/stdout (`-`), and never staged in `$TMPDIR`.

mod support;

use std::path::Path;
use std::process::Output;

use support::cli::assert_ok;

fn run(script: &str, dir: &Path, tmp: &Path) -> Output {
    support::cli::script(script, dir, &[("TMPDIR", tmp.to_str().unwrap())])
}

#[test]
fn compressed_and_piped_archives_round_trip_without_staging() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let setup = "head -c 300000 /dev/urandom > big.bin
        segstore --data-dir a put c/tantivy/big big.bin
        echo small | segstore --data-dir a put c/tantivy/small
        segstore --data-dir a snapshot create c first
        echo changed | segstore --data-dir a put c/tantivy/small";
    assert_ok(&run(setup, dir.path(), tmp.path()), "setup");
    for (archive, target) in [
        ("backup.tar.zst", "z"),
        ("backup.tar.gz", "g"),
        ("backup.tar", "t"),
    ] {
        let script = format!(
            "segstore --data-dir a export c {archive}
             segstore --data-dir {target} import c {archive}
             cmp big.bin <(segstore --data-dir {target} get c/tantivy/big)
             test \"$(segstore --data-dir {target} get c/tantivy/small)\" = changed
             segstore --data-dir {target} snapshot list c | grep -q first"
        );
        assert_ok(&run(&script, dir.path(), tmp.path()), archive);
    }
    let zst = std::fs::read(dir.path().join("backup.tar.zst")).unwrap();
    assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not a zstd frame");
    let gz = std::fs::read(dir.path().join("backup.tar.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "not gzip");
    let piped = "segstore --data-dir a export c - | segstore --data-dir p import c -
        cmp big.bin <(segstore --data-dir p get c/tantivy/big)
        segstore --data-dir p verify";
    assert_ok(&run(piped, dir.path(), tmp.path()), "piped");
    // Under another name, next to the original, from an archive and from a directory.
    let renamed = "segstore --data-dir a import c backup.tar.zst --as c-restored
        test \"$(segstore --data-dir a get c-restored/tantivy/small)\" = changed
        segstore --data-dir a snapshot list c-restored | grep -q first
        segstore --data-dir a export c exported-dir
        segstore --data-dir a import c exported-dir --as c-dir
        cmp big.bin <(segstore --data-dir a get c-dir/tantivy/big)
        segstore --data-dir a verify";
    assert_ok(&run(renamed, dir.path(), tmp.path()), "import --as");
    let staged: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(staged.is_empty(), "staged in TMPDIR: {staged:?}");
}

/// Regression: export to a tar staged the whole archive in `$TMPDIR` first (1.3 GB of
/// `/tmp` for a 1.3 GB tar, leaked on Ctrl-C). With no usable `$TMPDIR` it must still work.
#[test]
fn export_needs_no_temporary_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-tmp");
    let script = "head -c 100000 /dev/urandom > big.bin
        segstore --data-dir a put c/tantivy/big big.bin
        segstore --data-dir a export c backup.tar
        segstore --data-dir b import c backup.tar
        cmp big.bin <(segstore --data-dir b get c/tantivy/big)";
    assert_ok(&run(script, dir.path(), &missing), "export without TMPDIR");
}
