//! Image manifests: which images to embed, each with a stable id.
//!
//! * A directory: every regular file below it (recursively, hidden entries skipped), id = path
//!   relative to the directory with `/` separators. Files that are not images are still listed:
//!   the extractor records them as failures rather than silently skipping them.
//! * A table (`.csv`, `.tsv`, `.jsonl`, `.parquet`) with columns `id` and `path`; relative paths
//!   are resolved against the table's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, Result};
use crate::table::Table;

/// One image to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Unique id (what label tables and the cache are keyed by).
    pub id: String,
    /// Where the image is.
    pub path: PathBuf,
}

/// An input that cannot be an image entry (e.g. a non-UTF-8 file name), kept so the extractor
/// can record it as a failure instead of dropping it silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEntry {
    /// Best-effort id (lossy UTF-8 of the relative path).
    pub id: String,
    /// The path, lossily printed.
    pub path: String,
    /// Why it was rejected.
    pub reason: String,
}

/// The images of one extraction job.
#[derive(Debug, Clone, Default)]
pub struct ImageManifest {
    /// Accepted entries, sorted by id.
    pub entries: Vec<ImageEntry>,
    /// Rejected inputs.
    pub rejected: Vec<RejectedEntry>,
}

impl ImageManifest {
    /// A directory tree or a manifest table, chosen by what `input` is.
    pub fn load(input: impl AsRef<Path>) -> Result<Self> {
        let input = input.as_ref();
        let meta = std::fs::metadata(input).map_err(|e| CacheError::io(input, e))?;
        if meta.is_dir() {
            Self::from_dir(input)
        } else {
            Self::from_table(input)
        }
    }

    /// Every regular file below `root`.
    pub fn from_dir(root: &Path) -> Result<Self> {
        let mut manifest = Self::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| CacheError::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| CacheError::io(&dir, e))?;
                let path = entry.path();
                if entry.file_name().as_encoded_bytes().first() == Some(&b'.') {
                    continue;
                }
                // Follow symlinks (datasets use them for second categories); skip broken ones later.
                let ft = std::fs::metadata(&path).map(|m| m.file_type());
                let rel = path.strip_prefix(root).unwrap_or(&path);
                match ft {
                    Ok(ft) if ft.is_dir() => stack.push(path),
                    Ok(ft) if !ft.is_file() => {}
                    _ => match rel_id(rel) {
                        Some(id) => manifest.entries.push(ImageEntry { id, path }),
                        None => manifest.rejected.push(RejectedEntry {
                            id: rel.to_string_lossy().replace('\\', "/"),
                            path: path.to_string_lossy().into_owned(),
                            reason: "non-UTF-8 file name".into(),
                        }),
                    },
                }
            }
        }
        manifest.entries.sort_by(|a, b| a.id.cmp(&b.id));
        manifest.rejected.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(manifest)
    }

    /// A table with `id` and `path` columns.
    pub fn from_table(path: &Path) -> Result<Self> {
        let table = Table::read(path)?;
        let id_col = table.require("id")?;
        let path_col = table.require("path")?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut entries = Vec::with_capacity(table.rows.len());
        for (row, cells) in &table.rows {
            let id = table.text(*row, "id", &cells[id_col])?.to_string();
            let p = PathBuf::from(table.text(*row, "path", &cells[path_col])?);
            if let Some(first) = seen.insert(id.clone(), *row) {
                return Err(CacheError::DuplicateId { path: path.to_path_buf(), id, first, second: *row });
            }
            let p = if p.is_absolute() { p } else { base.join(p) };
            entries.push(ImageEntry { id, path: p });
        }
        Ok(Self { entries, rejected: Vec::new() })
    }

    /// Number of accepted entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no accepted entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn rel_id(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}
