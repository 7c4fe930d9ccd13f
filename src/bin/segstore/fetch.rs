//! `get PATH [-o FILE]` (alias `cat`): streamed in chunks, with a byte progress bar, and
//! verified against the file's BLAKE3 while it streams. A file output is written next to
//! its target and renamed into place only once verified, so a damaged blob never leaves a
//! plausible-looking output file. An output that exists and is no regular file (`/dev/null`,
//! a FIFO, a terminal) is written in place: renaming over it would replace the device. A
//! symlink is followed: the link stays and its target gets the file.

use std::path::{Path, PathBuf};

use segstore::{BlobId, Error, StoragePath, Store};
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::failure::Failure;
use crate::open::require_collection;
use crate::read::At;

/// Bytes read per request.
const CHUNK: u64 = 8 << 20;

/// Copies `file` to `out`, hashing as it goes; the hash is checked at the end.
async fn copy(
    file: &segstore::SegmentFile,
    out: &mut (impl AsyncWrite + Unpin),
    bar: &indicatif::ProgressBar,
    writing: &str,
) -> Result<(), Failure> {
    let mut hasher = blake3::Hasher::new();
    let mut at = 0;
    while at < file.len() {
        let end = file.len().min(at + CHUNK);
        let data = file.read_range(at..end).await?;
        hasher.update(&data);
        out.write_all(&data)
            .await
            .map_err(|e| Failure::local(writing, e))?;
        bar.inc(end - at);
        at = end;
    }
    out.flush().await.map_err(|e| Failure::local(writing, e))?;
    let actual = BlobId::from(hasher.finalize());
    if actual != file.id() {
        return Err(Error::Corrupt {
            object: file.path().to_string(),
            expected: file.id().to_hex(),
            actual: actual.to_hex(),
        }
        .into());
    }
    Ok(())
}

/// The temporary file next to `out` that a verified download is renamed from.
fn staging(out: &Path) -> PathBuf {
    let name = out.file_name().map_or_else(
        || "segstore-get".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    out.with_file_name(format!(".{name}.segstore-partial-{}", std::process::id()))
}

/// Writes `file` to `out`: staged next to it and renamed over it once verified, or in place
/// where `out` is a device or FIFO.
async fn write_file(
    file: &segstore::SegmentFile,
    out: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<(), Failure> {
    let writing = format!("writing {}", out.display());
    let local = |e| Failure::local(writing.clone(), e);
    // A new name, or a dangling symlink (replaced, never followed), gets a new file.
    let target = match tokio::fs::canonicalize(out).await {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.to_path_buf(),
        Err(e) => return Err(local(e)),
    };
    let in_place = match tokio::fs::metadata(&target).await {
        Ok(meta) => !meta.is_file(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(local(e)),
    };
    if in_place {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .await
            .map_err(local)?;
        return copy(file, &mut f, bar, &writing).await;
    }
    let tmp = staging(&target);
    let written = async {
        let mut f = tokio::fs::File::create(&tmp).await.map_err(local)?;
        copy(file, &mut f, bar, &writing).await?;
        f.sync_all().await.map_err(local)?;
        tokio::fs::rename(&tmp, &target).await.map_err(local)
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

/// `get PATH [-o FILE]` at the latest version or at `at`.
pub async fn get(
    store: &Store,
    path: &str,
    output: Option<PathBuf>,
    at: &At,
    json: bool,
) -> Result<(), Failure> {
    let path: StoragePath = path.parse()?;
    path.validate()?;
    let entry = match at.target() {
        None => store.entry(&path).await?,
        Some(t) => {
            require_collection(store, &path.collection).await?;
            store.view(&path.collection, &t).await?.entry(&path).await?
        }
    };
    let entry = entry.ok_or_else(|| Error::not_found(&path))?;
    let file = store.open_entry(&path, entry).await?;
    let bar = crate::output::bytes_bar(json, file.len(), "reading");
    let result = match output.filter(|o| o.as_os_str() != "-") {
        Some(out) => write_file(&file, &out, &bar).await.map(|()| Some(out)),
        None => {
            let mut stdout = tokio::io::stdout();
            copy(&file, &mut stdout, &bar, "writing to stdout")
                .await
                .map(|()| None)
        }
    };
    bar.finish_and_clear();
    if let (Some(out), true) = (result?, json) {
        println!(
            "{}",
            json!({"path": path.to_string(), "size": file.len(), "output": out.display().to_string()})
        );
    }
    Ok(())
}
