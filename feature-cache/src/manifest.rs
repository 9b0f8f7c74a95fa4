//! Manifest tables: which images to embed, as a table (`.csv`, `.tsv`, `.jsonl`, `.parquet`)
//! with columns `id` and `path`; relative paths are resolved against the table's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, Result};
use crate::table::Table;

/// One image listed by a manifest table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Unique id (what label tables and the cache are keyed by).
    pub id: String,
    /// Where the image is.
    pub path: PathBuf,
}

/// Reads a manifest table, refusing duplicate ids (naming both rows) and empty cells.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>> {
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
        entries.push(ManifestEntry { id, path: p });
    }
    Ok(entries)
}

/// Whether a Parquet file looks like a manifest table (string columns `id` and `path`) rather
/// than a shard of image bytes.
pub fn is_manifest_table(columns: &[String]) -> bool {
    ["id", "path"].iter().all(|c| columns.iter().any(|x| x == c))
}
