//! The failures table: images the extractor could not embed, with the reason.
//!
//! Columns `id`, `kind` (a short machine-readable category such as `corrupt`, `missing`,
//! `too-large`), `reason` (the full message) and where the image is (`source`, `source_row`,
//! `source_member`, as in the embedding parts). Tables live in the cache's `_failures/` folder,
//! which dataset readers skip (pyarrow, pandas and Spark ignore `_`-prefixed entries; a
//! `cache/*.parquet` glob does not descend into it). Format 1 put them beside the parts as
//! `failures-*.parquet` with a `path` column; those are still read.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::atomic::{is_hidden, AtomicFile};
use crate::embeddings::opt_str;
use crate::error::{CacheError, Result};
use crate::origin::Origin;

/// Folder of a cache that holds its failure tables.
pub const FAILURES_DIR: &str = "_failures";
/// File-name prefix of failure tables (beside the parts in format 1, in `_failures/` since).
pub const LEGACY_FAILURES_PREFIX: &str = "failures";

/// One image that could not be embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The image id.
    pub id: String,
    /// Category, e.g. `corrupt`.
    pub kind: String,
    /// The full reason.
    pub reason: String,
    /// Where the image is, when known.
    pub origin: Option<Origin>,
}

impl Failure {
    /// Where the image is, printed (empty when unknown).
    pub fn source(&self) -> String {
        self.origin.as_ref().map(Origin::to_string).unwrap_or_default()
    }
}

/// The failure-table folder of the cache `dir`.
pub fn failures_dir(dir: &Path) -> PathBuf {
    dir.join(FAILURES_DIR)
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("source_row", DataType::UInt64, true),
        Field::new("source_member", DataType::Utf8, true),
    ]))
}

/// Writes a failures table atomically.
pub struct FailureWriter;

impl FailureWriter {
    /// Writes `failures` to `path` (temp + rename).
    pub fn write(path: impl AsRef<Path>, failures: &[Failure]) -> Result<PathBuf> {
        let path = path.as_ref();
        let file = AtomicFile::create(path)?;
        let col = |f: fn(&Failure) -> &str| Arc::new(StringArray::from_iter_values(failures.iter().map(f)));
        let origins: Vec<_> = failures.iter().map(|f| f.origin.as_ref().map(Origin::to_columns)).collect();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                col(|f| &f.id),
                col(|f| &f.kind),
                col(|f| &f.reason),
                Arc::new(StringArray::from_iter(origins.iter().map(|o| o.as_ref().map(|c| c.0.as_str())))),
                Arc::new(UInt64Array::from_iter(origins.iter().map(|o| o.as_ref().and_then(|c| c.1)))),
                Arc::new(StringArray::from_iter(
                    origins.iter().map(|o| o.as_ref().and_then(|c| c.2.as_deref())),
                )),
            ],
        )
        .map_err(|e| CacheError::parquet(path, e))?;
        let mut w = ArrowWriter::try_new(file.try_clone()?, schema(), None)
            .map_err(|e| CacheError::parquet(path, e))?;
        w.write(&batch).map_err(|e| CacheError::parquet(path, e))?;
        w.close().map_err(|e| CacheError::parquet(path, e))?;
        file.commit()
    }
}

/// Reads one failures table (either layout).
pub fn read_failures(path: &Path) -> Result<Vec<Failure>> {
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| CacheError::parquet(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| CacheError::parquet(path, e))?;
        let text = |name: &str| -> Result<Option<StringArray>> {
            match batch.column_by_name(name) {
                None => Ok(None),
                Some(c) => c.as_any().downcast_ref::<StringArray>().cloned().map(Some).ok_or_else(|| {
                    CacheError::column(path, name, format!("type {} is not Utf8", c.data_type()))
                }),
            }
        };
        let required = |name: &str| {
            text(name)?.ok_or_else(|| CacheError::column(path, name, "missing: not a failures table"))
        };
        let (id, kind, reason) = (required("id")?, required("kind")?, required("reason")?);
        let (source, member, legacy_path) = (text("source")?, text("source_member")?, text("path")?);
        let rows = batch.column_by_name("source_row").and_then(|c| c.as_primitive_opt::<UInt64Type>());
        for i in 0..batch.num_rows() {
            fn get(a: &Option<StringArray>, i: usize) -> Option<&str> {
                a.as_ref().and_then(|a| opt_str(a, i))
            }
            let origin = match (get(&source, i), get(&legacy_path, i)) {
                (Some(_), _) => Origin::from_columns(
                    get(&source, i),
                    rows.filter(|r| !r.is_null(i)).map(|r| r.value(i)),
                    get(&member, i),
                ),
                (None, Some(p)) if !p.is_empty() => Some(Origin::File(p.into())),
                _ => None,
            };
            out.push(Failure {
                id: id.value(i).to_string(),
                kind: kind.value(i).to_string(),
                reason: reason.value(i).to_string(),
                origin,
            });
        }
    }
    Ok(out)
}

/// Failure tables of a cache directory: `_failures/*.parquet`, then format 1's top-level
/// `failures-*.parquet`; hidden files (temporaries) skipped.
pub fn failure_table_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut scan = |folder: &Path, legacy: bool| -> Result<()> {
        let entries = match std::fs::read_dir(folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CacheError::io(folder, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CacheError::io(folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = name.ends_with(".parquet")
                && !is_hidden(&name)
                && (!legacy || name.starts_with(LEGACY_FAILURES_PREFIX));
            if wanted {
                found.push(entry.path());
            }
        }
        found.sort();
        paths.extend(found);
        Ok(())
    };
    scan(&failures_dir(dir), false)?;
    if dir.is_dir() {
        scan(dir, true)?;
    }
    Ok(paths)
}

/// Every failure recorded in a cache directory, sorted by id.
pub fn read_cache_failures(dir: &Path) -> Result<Vec<Failure>> {
    let mut out = Vec::new();
    for path in failure_table_paths(dir)? {
        out.extend(read_failures(&path)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_with_origins_and_legacy_tables_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(failures_dir(dir.path())).unwrap();
        let failures = vec![
            Failure {
                id: "b".into(),
                kind: "corrupt".into(),
                reason: "eof".into(),
                origin: Some(Origin::ParquetRow { shard: "s.parquet".into(), row: 3 }),
            },
            Failure { id: "a".into(), kind: "bad-name".into(), reason: "x".into(), origin: None },
        ];
        FailureWriter::write(failures_dir(dir.path()).join("failures-s0000of0001-000000.parquet"), &failures)
            .unwrap();
        // a format-1 table beside the parts, written as the old extractor did
        let legacy = Arc::new(Schema::new(
            ["id", "path", "kind", "reason"].map(|n| Field::new(n, DataType::Utf8, false)).to_vec(),
        ));
        let batch = RecordBatch::try_new(
            legacy.clone(),
            ["c", "/img/c.jpg", "empty", "zero-byte file"]
                .map(|v| Arc::new(StringArray::from(vec![v])) as _)
                .to_vec(),
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(dir.path().join("failures-0.parquet")).unwrap(), legacy, None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let all = read_cache_failures(dir.path()).unwrap();
        assert_eq!(all.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(all[1], failures[0]);
        assert_eq!(all[2].origin, Some(Origin::File("/img/c.jpg".into())));
        assert_eq!(all[2].source(), "/img/c.jpg");
        assert_eq!(count_by_kind(&all).get("corrupt"), Some(&1));
    }
}
