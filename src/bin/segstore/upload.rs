//! `put -r DIR PREFIX` (a whole directory as one commit) and `rm -r PREFIX --yes` (every
//! file under a prefix, or a whole collection, as one commit).

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use segstore::manifest::CommitNote;
use segstore::{StoragePath, Store};
use serde_json::json;

use crate::failure::Failure;
use crate::open::require_collection;
use crate::output::report;
use crate::read::{entries, Prefix};

/// Commits `op` as one version with `note`; without one, as the library's `rename` and
/// `delete` do (a commit that may be grouped with others of this process).
pub async fn commit_one(
    store: &Store,
    op: segstore::Op,
    note: Option<CommitNote>,
) -> segstore::Result<segstore::CommitInfo> {
    use segstore::Op;
    let collection = match &op {
        Op::Put { path, .. } | Op::Delete { path } | Op::Rename { from: path, .. } => {
            path.collection.clone()
        }
    };
    let mut txn = match (note, &op) {
        (None, Op::Rename { from, to }) => return store.rename(from, to).await,
        (None, Op::Delete { path }) => return store.delete(path).await,
        (None, Op::Put { .. }) => store.transaction(&collection).await?,
        (Some(note), _) => {
            let mut txn = store.transaction(&collection).await?;
            txn.set_note(note)?;
            txn
        }
    };
    match op {
        Op::Put { path, entry } => txn.put_entry(&path, entry)?,
        Op::Delete { path } => txn.delete(&path)?,
        Op::Rename { from, to } => {
            if from.collection != to.collection {
                // The library's rename says why; the transaction would only see two paths.
                return store.rename(&from, &to).await;
            }
            txn.rename(&from, &to)?
        }
    }
    txn.commit().await
}

/// Stores `reader` at `path` as one commit, with `note` if given.
pub async fn write<R: tokio::io::AsyncRead + Unpin + Send>(
    store: &Store,
    path: &StoragePath,
    reader: R,
    note: Option<CommitNote>,
) -> segstore::Result<segstore::CommitInfo> {
    let Some(note) = note else {
        return store.write_stream(path, reader).await;
    };
    path.validate()?;
    let mut txn = store.transaction(&path.collection).await?;
    txn.set_note(note)?;
    let entry = store.stage_stream(reader).await?;
    txn.put_entry(path, entry)?;
    txn.commit().await
}

/// A regular file found in the directory, and what identifies it.
struct Found {
    file: PathBuf,
    path: StoragePath,
    len: u64,
    dev: u64,
    ino: u64,
}

fn refuse(file: &Path, why: &str) -> Failure {
    Failure::local(
        format!("reading {}", file.display()),
        std::io::Error::other(format!(
            "{why}; segstore uploads only regular files and directories and follows no links"
        )),
    )
}

fn component(file: &Path) -> Result<String, Failure> {
    file.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| refuse(file, "the name is not UTF-8"))
}

/// The regular files of `dir` (and, when `shardless`, of its subdirectories, one level
/// deep, as shards), sorted; anything else is refused before anything is uploaded.
fn walk(dir: &Path, prefix: &StoragePath, depth: u8, out: &mut Vec<Found>) -> Result<(), Failure> {
    let listing = |e| Failure::local(format!("listing {}", dir.display()), e);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(listing)?
        .collect::<Result<_, _>>()
        .map_err(listing)?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let file = e.path();
        let meta = std::fs::symlink_metadata(&file)
            .map_err(|err| Failure::local(format!("reading {}", file.display()), err))?;
        let kind = meta.file_type();
        if kind.is_file() {
            let mut path = prefix.clone();
            path.segment = component(&file)?;
            path.validate()?;
            out.push(Found {
                file,
                path,
                len: meta.len(),
                dev: meta.dev(),
                ino: meta.ino(),
            });
        } else if kind.is_dir() && depth == 0 && prefix.shard.is_none() {
            let mut shard = prefix.clone();
            shard.shard = Some(component(&file)?);
            shard.validate_prefix()?;
            walk(&file, &shard, 1, out)?;
        } else if kind.is_dir() {
            return Err(refuse(
                &file,
                "a directory nested too deep (DIR/shard/segment at most, and no shard \
                 directories under a PREFIX that names a shard)",
            ));
        } else if kind.is_symlink() {
            return Err(refuse(&file, "a symbolic link"));
        } else {
            return Err(refuse(&file, "a special file (device, FIFO or socket)"));
        }
    }
    Ok(())
}

/// Opens `found` without following a link, and checks it is still the file that was
/// listed.
async fn open(found: &Found) -> Result<tokio::fs::File, Failure> {
    let opening = |e| Failure::local(format!("opening {}", found.file.display()), e);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&found.file)
        .map_err(opening)?;
    let meta = file.metadata().map_err(opening)?;
    if !meta.is_file() || meta.dev() != found.dev || meta.ino() != found.ino {
        return Err(refuse(
            &found.file,
            "replaced while segstore was reading the directory",
        ));
    }
    Ok(tokio::fs::File::from_std(file))
}

/// `put -r DIR PREFIX`: every regular file of `dir` under `prefix`
/// (`collection/backend[/shard]`), streamed, committed as one version.
pub async fn put_dir(
    store: &Store,
    dir: &Path,
    prefix: &str,
    note: Option<CommitNote>,
    json: bool,
) -> Result<(), Failure> {
    let Prefix {
        collection,
        path: Some(base),
    } = Prefix::parse(prefix)?
    else {
        return Err(Failure::Usage(format!(
            "put -r needs a prefix collection/backend[/shard], not {prefix:?}"
        )));
    };
    if !base.segment.is_empty() {
        return Err(Failure::Usage(format!(
            "put -r needs a prefix collection/backend[/shard], not a file path {prefix:?}"
        )));
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Failure::local(format!("opening {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(refuse(dir, "not a directory"));
    }
    let mut found = Vec::new();
    walk(dir, &base, 0, &mut found)?;
    if found.is_empty() {
        return Err(Failure::Usage(format!(
            "{} has no files to upload",
            dir.display()
        )));
    }
    crate::interrupt::watch(store, &collection).await?;
    let total: u64 = found.iter().map(|f| f.len).sum();
    let bar = crate::output::bytes_bar(json, total, "uploading");
    let mut txn = store.transaction(&collection).await?;
    if let Some(note) = note {
        txn.set_note(note)?;
    }
    for f in &found {
        let file = open(f).await?;
        let entry = store.stage_stream(bar.wrap_async_read(file)).await;
        let entry = entry?;
        if entry.size != f.len {
            bar.finish_and_clear();
            return Err(Failure::local(
                format!("reading {}", f.file.display()),
                std::io::Error::other(format!(
                    "it changed while it was read ({} bytes listed, {} read); nothing was committed",
                    f.len, entry.size
                )),
            ));
        }
        txn.put_entry(&f.path, entry)?;
    }
    let info = txn.commit().await;
    bar.finish_and_clear();
    let info = info?;
    report(
        json,
        json!({"prefix": prefix, "version": info.version, "files": found.len(), "bytes": total, "changed": info.created}),
        &format!(
            "stored {} files ({total} bytes) of {} under {prefix} at version {} (one commit)",
            found.len(),
            dir.display(),
            info.version
        ),
    );
    Ok(())
}

/// `rm -r PREFIX --yes`: deletes every file under the prefix (a whole collection for a
/// bare name) as one commit. Earlier versions and snapshots stay until retention and GC
/// remove them, so `snapshot restore` can bring the files back.
pub async fn rm_prefix(
    store: &Store,
    prefix: &str,
    yes: bool,
    note: Option<CommitNote>,
    json: bool,
) -> Result<(), Failure> {
    let parsed = Prefix::parse(prefix)?;
    require_collection(store, &parsed.collection).await?;
    crate::interrupt::watch(store, &parsed.collection).await?;
    let mut txn = store.transaction(&parsed.collection).await?;
    let root = store
        .root_at(&parsed.collection, txn.base_version())
        .await?;
    let files = entries(store, &root, parsed.path.as_ref()).await?;
    if !yes {
        return Err(Failure::Usage(format!(
            "rm -r {prefix} would delete {} files at version {}; add --yes to do it (earlier \
             versions stay until retention and GC remove them)",
            files.len(),
            root.version
        )));
    }
    for (path, _) in &files {
        txn.delete(path)?;
    }
    if let Some(note) = note {
        txn.set_note(note)?;
    }
    let deleted = files.len();
    let info = if deleted == 0 {
        None
    } else {
        Some(txn.commit().await?)
    };
    let version = info.as_ref().map_or(root.version, |i| i.version);
    report(
        json,
        json!({"prefix": prefix, "deleted": deleted, "version": version, "changed": info.is_some()}),
        &match info {
            Some(i) => format!(
                "deleted {deleted} files under {prefix} at version {}; version {} and older \
                 stay until retention and GC remove them (`segstore snapshot restore {} {}` \
                 undoes this)",
                i.version, root.version, parsed.collection, root.version
            ),
            None => format!("nothing under {prefix}; nothing changed"),
        },
    );
    Ok(())
}
