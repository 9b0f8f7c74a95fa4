//! `extractor migrate`: brings a cache written in format 1 to the current layout, in place.
//!
//! Each format-1 part is rewritten as a format-2 part of the same name (same ids, values,
//! sizes and metadata; no `source*` values, which format 1 did not record; f16 values PLAIN
//! instead of byte-stream-split, which DuckDB cannot read); failure tables beside the parts are
//! rewritten into `_failures/`. Every file is replaced atomically, so an interrupted migration
//! leaves each part either old or new, and running it again finishes the job.

use std::path::{Path, PathBuf};

use feature_cache::failures::{failure_table_paths, failures_dir, read_failures};
use feature_cache::{EmbeddingCache, EmbeddingWriter, FailureWriter, Progress};

use crate::error::{ExtractError, Result};

/// What a migration did.
#[derive(Debug, Clone, Default)]
pub struct Migration {
    /// Parts rewritten.
    pub parts: Vec<PathBuf>,
    /// Failure tables moved into `_failures/`.
    pub failure_tables: Vec<PathBuf>,
}

/// Migrates the cache `dir` in place. Not while an extractor writes into it.
pub fn migrate(dir: &Path, progress: &dyn Progress) -> Result<Migration> {
    let mut done = Migration::default();
    let legacy_failures: Vec<PathBuf> =
        failure_table_paths(dir)?.into_iter().filter(|p| p.parent() == Some(dir)).collect();
    if !legacy_failures.is_empty() {
        let target = failures_dir(dir);
        std::fs::create_dir_all(&target).map_err(|e| ExtractError::Io { path: target.clone(), cause: e })?;
        for path in legacy_failures {
            let failures = read_failures(&path)?;
            let name = path.file_name().expect("a table has a name");
            FailureWriter::write(target.join(name), &failures)?;
            std::fs::remove_file(&path).map_err(|e| ExtractError::Io { path: path.clone(), cause: e })?;
            done.failure_tables.push(path);
        }
    }
    let Some(cache) = EmbeddingCache::open_if_any(dir)? else { return Ok(done) };
    let old: Vec<_> = cache.parts.iter().filter(|p| p.format_version < 2).collect();
    progress.start("migrating parts", old.len() as u64, "parts");
    for part in old {
        let mut writer = EmbeddingWriter::create(&part.path, part.meta.clone())?;
        part.for_each_batch(|m| {
            for i in 0..m.len() {
                writer.push(&m.ids[i], m.row(i), m.widths[i], m.heights[i], None)?;
            }
            Ok(())
        })?;
        // replaces the old part in one rename
        done.parts.push(writer.finish()?);
        progress.advance(1);
    }
    Ok(done)
}
