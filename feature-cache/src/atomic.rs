//! Atomic creation of files and directories: written under a temporary name beside the target,
//! synced, then renamed over it. A crash leaves either nothing or the complete result, never half
//! of one.
//!
//! Temporary names are `.<target name>.<random>.tmp` (tempfile's `O_EXCL` creation with random
//! bytes, so two processes — on one node or many sharing a filesystem — never pick the same
//! one). They are hidden (every reader of a cache skips names starting with `.`) and never end in
//! `.parquet`, so no glob such as `cache/*.parquet` can match a file being written. A crashed
//! writer's leftovers are removed by [`remove_stale_temps`] when its work is taken up again.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

use crate::error::{CacheError, Result};

/// Suffix of every temporary file or directory this module creates.
pub const TEMP_SUFFIX: &str = ".tmp";

fn parent_of(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn name_of(target: &Path) -> String {
    target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn temp_builder(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix).suffix(TEMP_SUFFIX).rand_bytes(RANDOM_CHARS);
    b
}

/// Persists a rename: syncs the directory holding `path` (not every filesystem supports it).
fn sync_parent(path: &Path) {
    if let Ok(d) = File::open(parent_of(path)) {
        let _ = d.sync_all();
    }
}

/// A file being written under a temporary name; [`AtomicFile::commit`] publishes it. Dropped
/// without a commit (an error, a panic), the temporary is removed.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    tmp: NamedTempFile,
}

impl AtomicFile {
    /// Starts writing `target` (its directory must exist).
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let dir = parent_of(&target);
        let tmp = temp_builder(&format!(".{}.", name_of(&target)))
            .tempfile_in(dir)
            .map_err(|e| CacheError::io(dir, e))?;
        Ok(Self { target, tmp })
    }

    /// The file to write into.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Where the bytes go until the commit.
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// A clone of the handle, for writers that take ownership of a `File`.
    pub fn try_clone(&self) -> Result<File> {
        self.tmp.as_file().try_clone().map_err(|e| CacheError::io(self.tmp.path(), e))
    }

    /// Flushes, syncs and renames the temporary over the target; returns the target.
    pub fn commit(mut self) -> Result<PathBuf> {
        let tmp_path = self.tmp.path().to_path_buf();
        let file = self.tmp.as_file_mut();
        file.flush().and_then(|_| file.sync_all()).map_err(|e| CacheError::io(&tmp_path, e))?;
        self.tmp.persist(&self.target).map_err(|e| CacheError::io(&self.target, e.error))?;
        sync_parent(&self.target);
        Ok(self.target)
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
    let mut f = AtomicFile::create(target)?;
    let tmp = f.temp_path().to_path_buf();
    f.file().write_all(bytes).map_err(|e| CacheError::io(tmp, e))?;
    f.commit()
}

/// A directory being filled under a temporary name; [`AtomicDir::commit`] renames it to its
/// target, which then appears complete or not at all. Dropped without a commit, it is removed.
#[derive(Debug)]
pub struct AtomicDir {
    target: PathBuf,
    tmp: TempDir,
}

/// What [`AtomicDir::commit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirCommit {
    /// The directory is now at its target.
    Published(PathBuf),
    /// The target already existed (another process finished it first); ours was discarded.
    AlreadyThere(PathBuf),
}

impl AtomicDir {
    /// Starts a directory that will become `target` (whose parent must exist).
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let dir = parent_of(&target);
        let tmp = temp_builder(&format!(".{}.", name_of(&target)))
            .tempdir_in(dir)
            .map_err(|e| CacheError::io(dir, e))?;
        Ok(Self { target, tmp })
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The directory it will become.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temporary directory to the target. A target that already exists is left as
    /// it is (a rename never replaces a finished directory) and this one is removed.
    pub fn commit(self) -> Result<DirCommit> {
        if let Ok(d) = File::open(self.tmp.path()) {
            let _ = d.sync_all();
        }
        if self.target.exists() {
            return Ok(DirCommit::AlreadyThere(self.target));
        }
        match std::fs::rename(self.tmp.path(), &self.target) {
            Ok(()) => {
                // renamed away: nothing left for TempDir to remove
                let _ = self.tmp.keep();
                sync_parent(&self.target);
                Ok(DirCommit::Published(self.target))
            }
            Err(_) if self.target.exists() => Ok(DirCommit::AlreadyThere(self.target)),
            Err(e) => Err(CacheError::io(&self.target, e)),
        }
    }
}

/// Whether a directory entry is hidden: a temporary of this module, a lock, or anything else
/// every reader of a cache skips.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Random characters in a temporary name.
const RANDOM_CHARS: usize = 10;

/// The target a temporary name belongs to: `.<target>.<random>.tmp` -> `<target>`.
pub fn temp_target(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (target, random) = inner.rsplit_once('.')?;
    (random.len() == RANDOM_CHARS && !target.is_empty()).then_some(target)
}

/// Removes the temporaries in `dir` (files and directories alike) whose target name satisfies
/// `belongs`; returns how many were removed. Call it only for targets no live process writes
/// (e.g. under the lock of the shard they belong to, or for a run about to be retrained).
pub fn remove_stale_temps(dir: &Path, belongs: &dyn Fn(&str) -> bool) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CacheError::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !temp_target(&name).is_some_and(belongs) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io(&path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_appears_only_when_committed_and_temporaries_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("emb-s0000of0001-000000.parquet");
        let mut f = AtomicFile::create(&target).unwrap();
        f.file().write_all(b"abc").unwrap();
        let tmp = names(dir.path());
        assert_eq!(tmp.len(), 1);
        assert!(
            tmp[0].starts_with(".emb-s0000of0001-000000.parquet.") && tmp[0].ends_with(".tmp"),
            "{tmp:?}"
        );
        assert!(!target.exists());
        f.commit().unwrap();
        assert_eq!(names(dir.path()), ["emb-s0000of0001-000000.parquet"]);
        assert_eq!(std::fs::read(&target).unwrap(), b"abc");
        // dropped without commit: nothing is left
        drop(AtomicFile::create(dir.path().join("x")).unwrap());
        assert_eq!(names(dir.path()).len(), 1);
    }

    #[test]
    fn two_writers_of_one_target_get_distinct_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let a = AtomicFile::create(dir.path().join("t")).unwrap();
        let b = AtomicFile::create(dir.path().join("t")).unwrap();
        assert_ne!(a.temp_path(), b.temp_path());
    }

    #[test]
    fn a_directory_is_published_whole_and_never_replaces_a_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("run");
        let d = AtomicDir::create(&target).unwrap();
        std::fs::write(d.path().join("metrics.json"), "{}").unwrap();
        assert!(!target.exists());
        assert_eq!(d.commit().unwrap(), DirCommit::Published(target.clone()));
        assert!(target.join("metrics.json").exists());
        let again = AtomicDir::create(&target).unwrap();
        std::fs::write(again.path().join("metrics.json"), "other").unwrap();
        assert_eq!(again.commit().unwrap(), DirCommit::AlreadyThere(target.clone()));
        assert_eq!(std::fs::read_to_string(target.join("metrics.json")).unwrap(), "{}");
        assert_eq!(names(dir.path()), ["run"], "the loser's temporary is gone");
    }

    #[test]
    fn stale_temporaries_are_removed_by_target_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".emb-s0001of0004-000003.parquet.AbCdEfGhIj.tmp",
            ".emb-s0002of0004-000000.parquet.AbCdEfGhIj.tmp",
            "emb-s0001of0004-000002.parquet",
            ".lock-s0001of0004",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(".fine-top10.XyZXyZXyZX.tmp")).unwrap();
        std::fs::create_dir(dir.path().join(".fine-top10-linear.XyZXyZXyZX.tmp")).unwrap();
        assert_eq!(remove_stale_temps(dir.path(), &|t| t.starts_with("emb-s0001of0004-")).unwrap(), 1);
        assert_eq!(remove_stale_temps(dir.path(), &|t| t == "fine-top10").unwrap(), 1);
        assert_eq!(
            names(dir.path()),
            [
                ".emb-s0002of0004-000000.parquet.AbCdEfGhIj.tmp",
                ".fine-top10-linear.XyZXyZXyZX.tmp",
                ".lock-s0001of0004",
                "emb-s0001of0004-000002.parquet"
            ]
        );
        assert_eq!(remove_stale_temps(&dir.path().join("missing"), &|_| true).unwrap(), 0);
        assert_eq!(temp_target(".a.b.parquet.0123456789.tmp"), Some("a.b.parquet"));
        assert_eq!(temp_target(".lock-s0001of0004"), None);
    }
}
