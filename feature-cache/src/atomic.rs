//! Atomic file creation: write to a temporary sibling, fsync, rename over the target.
//!
//! A crash leaves either the old file or the new one, never half of one; leftover temporaries
//! are named `.<name>.tmp-<pid>` and ignored by every reader of a cache.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, Result};

/// A file being written under a temporary name; [`AtomicFile::commit`] publishes it.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts writing `target` (its directory must exist).
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| CacheError::io(&tmp, e))?;
        Ok(Self { target, tmp, file: Some(file) })
    }

    /// The file to write into.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("AtomicFile used after commit")
    }

    /// A clone of the handle, for writers that take ownership of a `File`.
    pub fn try_clone(&self) -> Result<File> {
        let f = self.file.as_ref().expect("AtomicFile used after commit");
        f.try_clone().map_err(|e| CacheError::io(&self.tmp, e))
    }

    /// Flushes, syncs and renames the temporary over the target.
    pub fn commit(mut self) -> Result<PathBuf> {
        let mut file = self.file.take().expect("AtomicFile committed twice");
        file.flush().and_then(|_| file.sync_all()).map_err(|e| CacheError::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| CacheError::io(&self.target, e))?;
        if let Some(dir) = self.target.parent() {
            // Persist the rename itself; not every filesystem supports syncing a directory.
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
                let _ = d.sync_all();
            }
        }
        Ok(self.target.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
    let mut f = AtomicFile::create(target)?;
    let tmp = f.tmp.clone();
    f.file().write_all(bytes).map_err(|e| CacheError::io(tmp, e))?;
    f.commit()
}

/// Whether a directory entry is a leftover temporary of [`AtomicFile`] (or any hidden file).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}
