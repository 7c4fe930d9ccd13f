//! [`LocalBackend`]: objects as files under a root directory.
//!
//! Durability and atomicity come from the classic sequence: write a temp file in
//! `<root>/tmp/`, `fsync` it, move it into place, then `fsync` the directory. Create-only
//! writes move with `link(2)`, which fails if the target exists, so exactly one writer wins
//! even across processes. Whole reads of large objects are memory-mapped: objects named by
//! their hash never change once written, so a mapping can't see torn bytes.
//!
//! **Only its own files.** The root is a store only if it is empty, holds the
//! [`MARKER`] file, or has the layout an older version left (`blobs/`, `trees/`,
//! `manifests/` or `pins/`); any other non-empty directory is refused, as is a root whose
//! folders are symbolic links. Temp files are named `segstore-tmp-<pid>-<random>.tmp`, and
//! the stale-temp cleanup at open deletes only regular files with that name (or the
//! `<pid>-<random>.tmp` of older versions), never following a link: those of a process
//! that no longer runs once untouched for `DEAD_TEMP_AGE`, any after `STALE_TEMP_AGE`.

use crate::backend::LayerHooks;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;

use super::{check_range, ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::error::{Error, Result};
use crate::keys::{self, ObjectKey};

/// Objects at least this large are memory-mapped instead of read.
const MMAP_MIN: u64 = 64 * 1024;
/// How many mappings of immutable objects are kept open for range reads.
const MAPPING_CACHE_ENTRIES: usize = 512;
/// Temp files older than this are left over from a crash and are removed at open.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// Temp files of a process that no longer runs (its pid is in the name), untouched for
/// this long, are removed at open. The age guards a writer on another host or in another
/// PID namespace sharing the directory: a live writer touches its file while it writes.
const DEAD_TEMP_AGE: Duration = Duration::from_secs(60);
/// Folder under the root for files being written.
const TEMP_DIR: &str = "tmp";
/// Prefix of every temp file's name (see [`is_own_temp_file`]).
const TEMP_PREFIX: &str = "segstore-tmp-";
/// File at the root that marks a directory as a segstore store. Not an object: listings
/// skip it.
pub const MARKER: &str = ".segstore";
/// The marker's content.
const MARKER_TEXT: &str = "segstore local store (see docs/FORMAT.md)\n";
/// Folders an older version's store has at its root; any of them marks a store.
const LAYOUT_DIRS: [&str; 4] = ["blobs", "trees", "manifests", "pins"];

/// A directory holding one object per file. Cheap to clone; clones share caches.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    temp_dir: PathBuf,
    /// Directories known to exist (and to be durable), to skip repeated `mkdir` calls.
    known_dirs: Mutex<HashSet<PathBuf>>,
    /// Mappings of immutable objects (blobs and tree nodes), for range reads.
    mappings: DashMap<String, Bytes>,
}

impl LocalBackend {
    /// Opens (creating if needed) a backend rooted at `root`, and removes temp files left
    /// by crashed writers long ago. Refuses ([`Error::InvalidConfig`]) a non-empty
    /// directory that is not a segstore store, and a store whose folders are symbolic links.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        blocking(move || {
            create_dir_durable(&root)?;
            let root = root
                .canonicalize()
                .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
            check_root(&root)?;
            let temp_dir = root.join(TEMP_DIR);
            create_dir_durable(&temp_dir)?;
            remove_stale_temp_files(&temp_dir);
            Ok(LocalBackend {
                inner: Arc::new(Inner {
                    root,
                    temp_dir,
                    known_dirs: Mutex::new(HashSet::new()),
                    mappings: DashMap::new(),
                }),
            })
        })
        .await
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether `root` holds a store (its marker, or an older version's layout), without
    /// creating or changing anything: read-only tools check this before [`open`](Self::open).
    pub fn is_store(root: impl AsRef<Path>) -> bool {
        let root = root.as_ref();
        let is_real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        is_real_dir(root)
            && (fs::symlink_metadata(root.join(MARKER)).is_ok_and(|m| m.is_file())
                || LAYOUT_DIRS.iter().any(|d| is_real_dir(&root.join(d))))
    }

    /// The file that holds `key`. Keys are validated, so this never leaves the root.
    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.inner.root.join(key.as_str())
    }
}

impl Inner {
    fn ensure_parent(&self, file: &Path) -> Result<()> {
        let Some(dir) = file.parent() else {
            return Ok(());
        };
        let known = |dirs: &Mutex<HashSet<PathBuf>>| {
            dirs.lock().unwrap_or_else(|p| p.into_inner()).contains(dir)
        };
        if known(&self.known_dirs) {
            return Ok(());
        }
        create_dir_durable(dir)?;
        self.known_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.to_path_buf());
        Ok(())
    }

    fn new_temp_path(&self) -> PathBuf {
        let name = format!(
            "{TEMP_PREFIX}{}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        );
        self.temp_dir.join(name)
    }

    /// Writes `data` to a fresh temp file and syncs it.
    fn write_temp(&self, data: &[u8]) -> Result<PathBuf> {
        let temp = self.new_temp_path();
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(data)?;
            file.sync_all()
        })();
        match result {
            Ok(()) => Ok(temp),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(Error::io("writing a temp file", e))
            }
        }
    }

    fn is_immutable(key: &ObjectKey) -> bool {
        let k = key.as_str();
        k.starts_with(keys::BLOBS_PREFIX) || k.starts_with(keys::TREES_PREFIX)
    }

    fn mapping(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        if let Some(m) = self.mappings.get(key.as_str()) {
            return Ok(Some(m.clone()));
        }
        let path = self.root.join(key.as_str());
        let file = open_existing(&path, key)?;
        let size = file_size(&file, key)?;
        if size < MMAP_MIN {
            return Ok(None);
        }
        let bytes = map_file(&file, key)?;
        if self.mappings.len() >= MAPPING_CACHE_ENTRIES {
            // Dropping an arbitrary entry is enough: the cache only saves an `mmap` call.
            let victim = self.mappings.iter().next().map(|e| e.key().clone());
            if let Some(victim) = victim {
                self.mappings.remove(&victim);
            }
        }
        self.mappings.insert(key.as_str().to_owned(), bytes.clone());
        Ok(Some(bytes))
    }
}

#[async_trait]
impl ObjectBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        let path = self.path_of(key);
        let key = key.clone();
        blocking(move || {
            let file = open_existing(&path, &key)?;
            let size = file_size(&file, &key)?;
            if size >= MMAP_MIN {
                return map_file(&file, &key);
            }
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, 0)
                .map_err(|e| Error::io(format!("reading {key}"), e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        if Inner::is_immutable(key) {
            if let Some(mapped) = self.inner.mapping(key)? {
                check_range(key, &range, mapped.len() as u64)?;
                return Ok(mapped.slice(range.start as usize..range.end as usize));
            }
        }
        let path = self.path_of(key);
        let key = key.clone();
        blocking(move || {
            let file = open_existing(&path, &key)?;
            check_range(&key, &range, file_size(&file, &key)?)?;
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            file.read_exact_at(&mut buf, range.start)
                .map_err(|e| Error::io(format!("reading {key}"), e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        // A `stat` takes about a microsecond: far less than a hop to the blocking pool,
        // and every read's version probe is one.
        match fs::metadata(self.path_of(key)) {
            Ok(meta) => Ok(Some(ObjectMeta {
                size: meta.len(),
                // Unknown age counts as new: it must never make an object look old enough
                // to collect (S3 does the same).
                last_modified: meta.modified().unwrap_or_else(|_| fs_now()),
                key: key.clone(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading metadata of {key}"), e)),
        }
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        let inner = self.inner.clone();
        let target = self.path_of(key);
        let key = key.clone();
        blocking(move || {
            inner.ensure_parent(&target)?;
            let temp = inner.write_temp(&data)?;
            if let Err(e) = fs::rename(&temp, &target) {
                let _ = fs::remove_file(&temp);
                return Err(Error::io(format!("moving {key} into place"), e));
            }
            sync_parent(&target)
        })
        .await
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        let inner = self.inner.clone();
        let target = self.path_of(key);
        let key = key.clone();
        blocking(move || {
            inner.ensure_parent(&target)?;
            let temp = inner.write_temp(&data)?;
            let linked = fs::hard_link(&temp, &target);
            let _ = fs::remove_file(&temp);
            match linked {
                Ok(()) => {
                    sync_parent(&target)?;
                    Ok(PutOutcome::Created)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
                Err(e) => Err(Error::io(format!("creating {key}"), e)),
            }
        })
        .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.mappings.remove(key.as_str());
        let path = self.path_of(key);
        let key = key.clone();
        blocking(move || {
            // The root's own folders are checked at open; a link one level down (say
            // `blobs/ab -> /elsewhere`) must not make a delete reach outside the root.
            let folder = path.parent().map(fs::symlink_metadata);
            if let Some(Ok(meta)) = folder {
                if meta.file_type().is_symlink() {
                    return Err(Error::invalid_path(
                        key.as_str(),
                        "a folder of this key is a symbolic link; segstore never follows one",
                    ));
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => sync_parent(&path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("deleting {key}"), e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        keys::validate_prefix(prefix)?;
        let root = self.inner.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            let start = root.join(&prefix);
            walk(&root, &start, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path_of(key);
        let key = key.clone();
        blocking(move || {
            let file = open_existing(&path, &key)?;
            file.set_modified(fs_now())
                .map_err(|e| Error::io(format!("touching {key}"), e))
        })
        .await
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        let temp = self.inner.new_temp_path();
        let path = temp.clone();
        let file = blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io("creating an upload temp file", e))
        })
        .await?;
        Ok(Box::new(LocalUpload {
            inner: self.inner.clone(),
            file: Some(file),
            synced: false,
            finished: false,
            temp,
        }))
    }

    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        Some(self)
    }
}

#[async_trait]
impl LayerHooks for LocalBackend {
    fn cheap_staging(&self) -> bool {
        true
    }

    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        if Inner::is_immutable(key) {
            if let Some(mapped) = self.inner.mapping(key)? {
                return Ok(Some(mapped));
            }
        }
        self.get(key).await.map(Some)
    }
}

struct LocalUpload {
    inner: Arc<Inner>,
    /// `None` once published or aborted, and while a blocking task uses it.
    file: Option<File>,
    synced: bool,
    /// Set when publish or abort starts: from then on they own the temp file.
    finished: bool,
    temp: PathBuf,
}

impl LocalUpload {
    /// Runs `op` on the temp file in the blocking pool, handing the file back afterwards.
    async fn with_file(
        &mut self,
        what: &'static str,
        op: impl FnOnce(&mut File) -> io::Result<()> + Send + 'static,
    ) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::backend(what, "upload already finished"))?;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut file);
            (file, result)
        })
        .await
        .map_err(|e| Error::backend(what, e.to_string()))?;
        self.file = Some(file);
        result.map_err(|e| Error::io(what, e))
    }
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.synced = false;
        self.with_file("writing an upload temp file", move |f| f.write_all(&chunk))
            .await
    }

    async fn prepare(&mut self) -> Result<()> {
        if !self.synced {
            self.with_file("syncing an upload temp file", |f| f.sync_all())
                .await?;
            self.synced = true;
        }
        Ok(())
    }

    async fn publish(mut self: Box<Self>, key: &ObjectKey) -> Result<()> {
        if let Err(e) = self.prepare().await {
            self.finished = true;
            self.file.take();
            let _ = fs::remove_file(&self.temp);
            return Err(e);
        }
        self.finished = true;
        self.file.take();
        let inner = self.inner.clone();
        let temp = self.temp.clone();
        let target = inner.root.join(key.as_str());
        let key = key.clone();
        blocking(move || {
            inner.ensure_parent(&target)?;
            if let Err(e) = fs::rename(&temp, &target) {
                let _ = fs::remove_file(&temp);
                return Err(Error::io(format!("moving upload {key} into place"), e));
            }
            sync_parent(&target)
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.finished = true;
        self.file.take();
        match fs::remove_file(&self.temp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing an aborted upload", e)),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // An upload dropped without publish or abort (a cancelled task, an interrupted
        // command) leaves no file, even while a blocking write to it is in flight.
        if !self.finished {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend("running a filesystem task", e.to_string()))?
}

fn open_existing(path: &Path, key: &ObjectKey) -> Result<File> {
    File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::not_found(key)
        } else {
            Error::io(format!("opening {key}"), e)
        }
    })
}

fn file_size(file: &File, key: &ObjectKey) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::io(format!("reading metadata of {key}"), e))
}

fn map_file(file: &File, key: &ObjectKey) -> Result<Bytes> {
    // SAFETY: segstore never modifies or truncates a file after it was moved into place
    // (objects are replaced by rename, which leaves existing mappings on the old inode).
    // Another program truncating files under the root is outside the contract, exactly as
    // with tantivy's MmapDirectory.
    let map =
        unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(format!("mapping {key}"), e))?;
    Ok(Bytes::from_owner(map))
}

/// Syncs the directory holding `path`, making a create, rename or unlink in it durable.
fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Creates `dir` and any missing parents, syncing each parent after adding a child, so the
/// new directories survive a power loss.
fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        // A relative path ends in "" (the current directory), which always exists.
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating directory {}", d.display()), e)),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// The local store's clock: the one the file system stamps modification times with.
fn fs_now() -> SystemTime {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// Checks that `root` is a store (or empty), that none of its folders is a symbolic link,
/// and marks it as a store.
fn check_root(root: &Path) -> Result<()> {
    let entries =
        fs::read_dir(root).map_err(|e| Error::io(format!("listing {}", root.display()), e))?;
    let mut foreign = None;
    let mut is_store = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", root.display()), e))?;
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        let file_type = entry
            .file_type()
            .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e))?;
        let own_dir = name == TEMP_DIR || LAYOUT_DIRS.contains(&name);
        if own_dir && file_type.is_symlink() {
            return Err(Error::InvalidConfig(format!(
                "{} is a symbolic link: segstore never follows links inside its root",
                entry.path().display()
            )));
        }
        if own_dir && file_type.is_dir() {
            is_store |= name != TEMP_DIR;
        } else if name == MARKER && file_type.is_file() {
            is_store = true;
        } else {
            foreign.get_or_insert_with(|| entry.path());
        }
    }
    if let (Some(foreign), false) = (&foreign, is_store) {
        return Err(Error::InvalidConfig(format!(
            "{} is not empty and is not a segstore store (it holds {}); use an empty or new \
             directory",
            root.display(),
            foreign.display()
        )));
    }
    let marker = root.join(MARKER);
    if fs::symlink_metadata(&marker).is_err() {
        // Best effort: a read-only export still opens, and the layout marks it anyway.
        let _ = fs::write(&marker, MARKER_TEXT).and_then(|()| File::open(root)?.sync_all());
    }
    Ok(())
}

/// Whether `name` is a temp file name this backend writes: `segstore-tmp-<pid>-<16 hex>.tmp`,
/// or `<pid>-<16 hex>.tmp` as older versions named them.
fn is_own_temp_file(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(".tmp") else {
        return false;
    };
    let rest = rest.strip_prefix(TEMP_PREFIX).unwrap_or(rest);
    let Some((pid, random)) = rest.split_once('-') else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 16
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The process id in a temp file name [`is_own_temp_file`] accepts.
fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX).unwrap_or(name);
    rest.split_once('-')?.0.parse().ok()
}

/// Whether process `pid` is running on this host (in this PID namespace).
fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return true; // not a process id: never treated as dead
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes this backend's temp files left behind: those of a process that no longer runs
/// once older than [`DEAD_TEMP_AGE`], any older than [`STALE_TEMP_AGE`]. Regular files with
/// its naming scheme only, never through a link, never anything else.
fn remove_stale_temp_files(temp_dir: &Path) {
    let Ok(entries) = fs::read_dir(temp_dir) else {
        return;
    };
    let now = fs_now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_own_temp_file(n)) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // `DirEntry::metadata` does not follow links; an unreadable age is not stale.
        let Ok(age) = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|m| now.duration_since(m).unwrap_or_default())
        else {
            continue;
        };
        let dead = || {
            temp_file_pid(name)
                .is_some_and(|pid| pid != std::process::id() && !process_is_alive(pid))
        };
        if age > STALE_TEMP_AGE || (age > DEAD_TEMP_AGE && dead()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Collects every file under `dir` (recursively) as an object of `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
        if file_type.is_dir() {
            if dir == root && entry.file_name() == TEMP_DIR {
                continue;
            }
            walk(root, &path, out)?;
        } else if file_type.is_file() {
            if dir == root && entry.file_name() == MARKER {
                continue;
            }
            let Some(key) = path
                .strip_prefix(root)
                .ok()
                .and_then(|rel| rel.to_str())
                .and_then(|rel| ObjectKey::new(rel).ok())
            else {
                continue; // not a name segstore writes; ignore it
            };
            let meta = entry
                .metadata()
                .map_err(|e| Error::io(format!("reading metadata of {key}"), e))?;
            out.push(ObjectMeta {
                key,
                size: meta.len(),
                last_modified: meta.modified().unwrap_or_else(|_| fs_now()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_temp_names_count_as_its_temp_files() {
        for own in [
            "segstore-tmp-12-0123456789abcdef.tmp",
            "12-0123456789abcdef.tmp",
        ] {
            assert!(is_own_temp_file(own), "{own}");
        }
        for other in [
            "backup.tar",
            "segstore-tmp-12-0123456789abcdef",
            "segstore-tmp--0123456789abcdef.tmp",
            "x-0123456789abcdef.tmp",
            "12-0123456789abcde.tmp",
            "12-0123456789abcdefg.tmp",
            "segstore-tmp-12-0123456789abcdef.tmp.keep",
        ] {
            assert!(!is_own_temp_file(other), "{other}");
        }
    }
}
