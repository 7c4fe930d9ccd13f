//! `segstore sync` and `segstore fork` through the real binary: the recipes of
//! `docs/OPERATIONS.md` run as written, and the diverged-destination exit code.

mod support;

use std::path::Path;
use std::process::Output;

use support::cli::assert_ok;

/// The shell block after `<!-- recipe: NAME` in `docs/OPERATIONS.md`.
fn recipe(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
        .unwrap();
    let marker = format!("<!-- recipe: {name} ");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no recipe {name}"));
    let rest = &doc[start..];
    let open = rest.find("```sh\n").unwrap() + "```sh\n".len();
    let close = rest[open..].find("```").unwrap();
    rest[open..open + close].to_owned()
}

fn run(script: &str, dir: &Path) -> Output {
    support::cli::script(script, dir, &[])
}

#[test]
fn the_backup_and_restore_recipe_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&recipe("backup-restore"), dir.path());
    assert_ok(&out, "backup-restore recipe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Both files are inline (in the pages): the syncs send tree nodes, no blobs.
    assert!(stdout.contains("0 blobs sent"), "{stdout}");
}

#[test]
fn the_blue_green_recipe_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&recipe("blue-green"), dir.path());
    assert_ok(&out, "blue-green recipe");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("forked products into products-next"),
        "{out:?}"
    );
}

#[test]
fn a_diverged_destination_exits_with_conflict_until_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let setup = "echo a | segstore --data-dir a put c/tantivy/x
        segstore sync --from a --to b
        echo b | segstore --data-dir b put c/tantivy/x
        echo c | segstore --data-dir a put c/tantivy/x";
    assert_ok(&run(setup, dir.path()), "setup");
    let refused = run("segstore sync --from a --to b c", dir.path());
    assert_eq!(refused.status.code(), Some(5), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("diverged"),
        "{refused:?}"
    );
    let forced = run(
        "segstore --json sync --from a --to b c --overwrite --mirror
         test \"$(segstore --data-dir b get c/tantivy/x)\" = c",
        dir.path(),
    );
    assert_ok(&forced, "overwrite");
    let json: serde_json::Value =
        serde_json::from_slice(forced.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(json["synced"][0]["collection"], "c", "{json}");
}
