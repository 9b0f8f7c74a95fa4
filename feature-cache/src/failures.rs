//! The failures table: images the extractor could not embed, with the reason.
//!
//! Columns `id`, `path`, `kind` (a short machine-readable category such as `corrupt`,
//! `missing`, `too-large`) and `reason` (the full message). Files are named `failures-*.parquet`
//! and live beside the embedding parts of a cache.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::atomic::{is_hidden, AtomicFile};
use crate::embeddings::FAILURES_PREFIX;
use crate::error::{CacheError, Result};

/// One image that could not be embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The image id.
    pub id: String,
    /// Its path, lossily printed.
    pub path: String,
    /// Category, e.g. `corrupt`.
    pub kind: String,
    /// The full reason.
    pub reason: String,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        ["id", "path", "kind", "reason"].map(|n| Field::new(n, DataType::Utf8, false)).to_vec(),
    ))
}

/// Writes a failures table atomically.
pub struct FailureWriter;

impl FailureWriter {
    /// Writes `failures` to `path` (temp + rename).
    pub fn write(path: impl AsRef<Path>, failures: &[Failure]) -> Result<PathBuf> {
        let path = path.as_ref();
        let file = AtomicFile::create(path)?;
        let col = |f: fn(&Failure) -> &str| Arc::new(StringArray::from_iter_values(failures.iter().map(f)));
        let batch = RecordBatch::try_new(
            schema(),
            vec![col(|f| &f.id), col(|f| &f.path), col(|f| &f.kind), col(|f| &f.reason)],
        )
        .map_err(|e| CacheError::parquet(path, e))?;
        let mut w = ArrowWriter::try_new(file.try_clone()?, schema(), None)
            .map_err(|e| CacheError::parquet(path, e))?;
        w.write(&batch).map_err(|e| CacheError::parquet(path, e))?;
        w.close().map_err(|e| CacheError::parquet(path, e))?;
        file.commit()
    }
}

/// Reads one failures table.
pub fn read_failures(path: &Path) -> Result<Vec<Failure>> {
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| CacheError::parquet(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| CacheError::parquet(path, e))?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(|| CacheError::column(path, name, "missing or not Utf8"))
        };
        let (id, p, kind, reason) = (col("id")?, col("path")?, col("kind")?, col("reason")?);
        for i in 0..batch.num_rows() {
            out.push(Failure {
                id: id.value(i).to_string(),
                path: p.value(i).to_string(),
                kind: kind.value(i).to_string(),
                reason: reason.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// Every failure recorded in a cache directory (all `failures-*.parquet`), sorted by id.
pub fn read_cache_failures(dir: &Path) -> Result<Vec<Failure>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))? {
        let entry = entry.map_err(|e| CacheError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(FAILURES_PREFIX) && name.ends_with(".parquet") && !is_hidden(&name) {
            out.extend(read_failures(&entry.path())?);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Failure counts by kind.
pub fn count_by_kind(failures: &[Failure]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for f in failures {
        *counts.entry(f.kind.clone()).or_insert(0) += 1;
    }
    counts
}
