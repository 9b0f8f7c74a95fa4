//! Reading a cache: one part or a directory of parts of the same model, as one table.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{
    Array, FixedSizeListArray, Float16Array, Float32Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Schema};
use half::f16;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::metadata::CacheMetadata;
use super::writer::ROWS_PER_GROUP;
use crate::atomic::is_hidden;
use crate::error::{CacheError, MixedCache, Result};
use crate::failures::LEGACY_FAILURES_PREFIX;
use crate::origin::Origin;

/// Embedding values of a batch as the cache stores them, row-major `rows x dim`.
#[derive(Debug, Clone, Copy)]
pub enum EmbeddingValues<'a> {
    /// Half precision.
    F16(&'a [f16]),
    /// Single precision.
    F32(&'a [f32]),
}

impl EmbeddingValues<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::F16(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened to float32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Self::F16(v) => {
                let mut out = vec![0f32; v.len()];
                widen_f16(v, &mut out);
                out
            }
            Self::F32(v) => v.to_vec(),
        }
    }
}

/// Writes `src` widened to f32 into `dst` (same length; panics otherwise). With F16C, 8 values
/// per instruction in one loop: the `half` crate's slice conversion calls a function per 8
/// values, which made gathering a training batch cost a sixth of a training step. Exact, like
/// every f16 → f32 conversion.
pub fn widen_f16(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has F16C and AVX (checked just above).
        return unsafe { widen_f16c(src, dst) };
    }
    src.convert_to_f32_slice(dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn widen_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let whole = src.len() / 8 * 8;
    for (s, d) in src[..whole].chunks_exact(8).zip(dst[..whole].chunks_exact_mut(8)) {
        // SAFETY: `s` holds 8 f16 (16 bytes) and `d` 8 f32 (32 bytes); both unaligned loads
        // and stores are allowed.
        unsafe {
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast::<__m128i>())))
        };
    }
    src[whole..].convert_to_f32_slice(&mut dst[whole..]);
}

/// Rounds `values` to the cache's storage precision, as a reader of the cache will see them
/// (f16: round to nearest even, then widened back; f32: unchanged).
pub fn round_to_storage(values: &mut [f32], dtype: super::EmbeddingDtype) {
    if dtype == super::EmbeddingDtype::F16 {
        let mut halves = vec![f16::ZERO; values.len()];
        halves.convert_from_f32_slice(values);
        widen_f16(&halves, values);
    }
}

/// A block of embeddings in memory, row-major `rows x dim` float32.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingMatrix {
    /// Image ids, one per row.
    pub ids: Vec<String>,
    /// `ids.len() * dim` values, row after row.
    pub values: Vec<f32>,
    /// Values per row.
    pub dim: usize,
    /// Original image widths.
    pub widths: Vec<u32>,
    /// Original image heights.
    pub heights: Vec<u32>,
}

impl EmbeddingMatrix {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The embedding of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    fn append(&mut self, other: EmbeddingMatrix) {
        self.ids.extend(other.ids);
        self.values.extend(other.values);
        self.widths.extend(other.widths);
        self.heights.extend(other.heights);
    }
}

/// One Parquet part of a cache.
#[derive(Debug, Clone)]
pub struct EmbeddingPart {
    /// Its path.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: CacheMetadata,
    /// The contract version it was written with.
    pub format_version: u32,
    /// Its row count.
    pub rows: usize,
    /// Rows of each of its row groups, in order.
    pub row_groups: Vec<usize>,
}

impl EmbeddingPart {
    /// Reads the footer of `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let builder = reader_builder(&path)?;
        let file_meta = builder.metadata().file_metadata();
        let (meta, format_version) = CacheMetadata::from_key_values(&path, file_meta.key_value_metadata())?;
        let rows = file_meta.num_rows() as usize;
        let row_groups = builder.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect();
        check_schema(&path, builder.schema(), &meta)?;
        Ok(Self { path, meta, format_version, rows, row_groups })
    }

    /// A reader of the named top-level columns (those the part has) of row groups `groups`
    /// (all when `None`).
    fn read(
        &self,
        columns: &[&str],
        groups: Option<Vec<usize>>,
    ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
        let mut builder = reader_builder(&self.path)?.with_batch_size(ROWS_PER_GROUP);
        if let Some(groups) = groups {
            if let Some(&g) = groups.iter().find(|&&g| g >= self.row_groups.len()) {
                return Err(CacheError::Invalid(format!("{}: no row group {g}", self.path.display())));
            }
            builder = builder.with_row_groups(groups);
        }
        let schema = builder.schema().clone();
        let roots: Vec<usize> = columns.iter().filter_map(|c| schema.index_of(c).ok()).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder.with_projection(mask).build().map_err(|e| CacheError::parquet(&self.path, e))
    }

    /// Calls `f` with each row group of the part, converted to float32.
    pub fn for_each_batch(&self, mut f: impl FnMut(EmbeddingMatrix) -> Result<()>) -> Result<()> {
        for batch in self.read(&["id", "embedding", "width", "height"], None)? {
            let batch = batch.map_err(|e| CacheError::parquet(&self.path, e))?;
            f(self.decode(&batch)?)?;
        }
        Ok(())
    }

    /// Calls `f(ids, values)` for each batch of the row groups `groups` (all when `None`), with
    /// the values as stored (no conversion, no copy); `ids` is empty unless `with_ids`, so a
    /// values-only read skips decoding the id column.
    pub fn for_each_raw(
        &self,
        groups: Option<Vec<usize>>,
        with_ids: bool,
        mut f: impl FnMut(Vec<String>, EmbeddingValues<'_>) -> Result<()>,
    ) -> Result<()> {
        let columns: &[&str] = if with_ids { &["id", "embedding"] } else { &["embedding"] };
        for batch in self.read(columns, groups)? {
            let batch = batch.map_err(|e| CacheError::parquet(&self.path, e))?;
            let ids = if with_ids {
                let col = string_column(&self.path, &batch, "id")?;
                col.iter().map(|v| v.unwrap_or_default().to_string()).collect()
            } else {
                Vec::new()
            };
            f(ids, self.values(&batch)?)?;
        }
        Ok(())
    }

    /// The embedding values of a batch, as stored.
    fn values<'a>(&self, batch: &'a RecordBatch) -> Result<EmbeddingValues<'a>> {
        let path = &self.path;
        let emb = batch
            .column_by_name("embedding")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or_else(|| CacheError::column(path, "embedding", "not a FixedSizeList"))?;
        let values = emb.values();
        let range = emb.offset() * self.meta.dim..(emb.offset() + emb.len()) * self.meta.dim;
        if let Some(v) = values.as_any().downcast_ref::<Float32Array>() {
            Ok(EmbeddingValues::F32(&v.values()[range]))
        } else if let Some(v) = values.as_any().downcast_ref::<Float16Array>() {
            Ok(EmbeddingValues::F16(&v.values()[range]))
        } else {
            Err(CacheError::column(path, "embedding", "values are neither Float16 nor Float32"))
        }
    }

    /// Reads only the `id` column.
    pub fn read_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(self.rows);
        for batch in self.read(&["id"], None)? {
            let batch = batch.map_err(|e| CacheError::parquet(&self.path, e))?;
            let col = string_column(&self.path, &batch, "id")?;
            ids.extend(col.iter().map(|v| v.unwrap_or_default().to_string()));
        }
        Ok(ids)
    }

    /// The recorded origin of each of `wanted` ids found in this part (none before format 2).
    pub fn read_origins(&self, wanted: &HashSet<&str>, out: &mut HashMap<String, Origin>) -> Result<()> {
        if self.format_version < 2 {
            return Ok(());
        }
        for batch in self.read(&["id", "source", "source_row", "source_member"], None)? {
            let batch = batch.map_err(|e| CacheError::parquet(&self.path, e))?;
            let ids = string_column(&self.path, &batch, "id")?;
            let sources = string_column(&self.path, &batch, "source")?;
            let members = string_column(&self.path, &batch, "source_member")?;
            let rows = batch
                .column_by_name("source_row")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| CacheError::column(&self.path, "source_row", "missing or not UInt64"))?;
            for i in 0..batch.num_rows() {
                let id = ids.value(i);
                if !wanted.contains(id) {
                    continue;
                }
                let row = (!rows.is_null(i)).then(|| rows.value(i));
                if let Some(o) = Origin::from_columns(opt_str(sources, i), row, opt_str(members, i)) {
                    out.insert(id.to_string(), o);
                }
            }
        }
        Ok(())
    }

    fn decode(&self, batch: &RecordBatch) -> Result<EmbeddingMatrix> {
        let path = &self.path;
        let ids = string_column(path, batch, "id")?;
        let values = self.values(batch)?.to_f32();
        let u32_col = |name: &str| -> Result<Vec<u32>> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
                .map(|a| a.values().to_vec())
                .ok_or_else(|| CacheError::column(path, name, "missing or not UInt32"))
        };
        Ok(EmbeddingMatrix {
            ids: ids.iter().map(|v| v.unwrap_or_default().to_string()).collect(),
            values,
            dim: self.meta.dim,
            widths: u32_col("width")?,
            heights: u32_col("height")?,
        })
    }
}

/// Value `i` of a string column, `None` when null.
pub(crate) fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn reader_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| CacheError::parquet(path, e))
}

fn string_column<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| CacheError::column(path, name, "missing or not Utf8"))
}

fn check_schema(path: &Path, schema: &Schema, meta: &CacheMetadata) -> Result<()> {
    let field =
        schema.field_with_name("embedding").map_err(|_| CacheError::column(path, "embedding", "missing"))?;
    match field.data_type() {
        DataType::FixedSizeList(_, n) if *n as usize == meta.dim => Ok(()),
        DataType::FixedSizeList(_, n) => Err(CacheError::column(
            path,
            "embedding",
            format!("list size {n} disagrees with metadata dim {}", meta.dim),
        )),
        other => Err(CacheError::column(path, "embedding", format!("type {other} is not a FixedSizeList"))),
    }
}

/// Refuses `ids` (of the cache at `path`) that repeat one, naming both rows (1-based).
pub fn check_unique_ids(path: &Path, ids: &[String]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(id, i) {
            return Err(CacheError::DuplicateId {
                path: path.to_path_buf(),
                id: id.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
    }
    Ok(())
}

/// Where one row group of a cache lies: its part, its index in the part, and its rows' place in
/// the cache's row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupRef {
    /// Index of the part in [`EmbeddingCache::parts`].
    pub part: usize,
    /// Row group index inside the part.
    pub index: usize,
    /// Cache row of its first row.
    pub first_row: usize,
    /// Its row count.
    pub rows: usize,
}

/// A cache: one Parquet part, or a directory of parts of the same model.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    /// The directory (or file) it was opened from.
    pub root: PathBuf,
    /// The metadata all parts share (the first part's).
    pub meta: CacheMetadata,
    /// The parts, sorted by file name.
    pub parts: Vec<EmbeddingPart>,
}

impl EmbeddingCache {
    /// Parquet files of a cache directory that hold embeddings: every `*.parquet` at its top
    /// level that is not hidden (temporaries) and not a failure table of the format-1 layout.
    pub fn part_paths(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CacheError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".parquet") && !is_hidden(&name) && !name.starts_with(LEGACY_FAILURES_PREFIX) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// Opens a cache directory (or a single part), checking that every part agrees.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        Self::open_if_any(root)?.ok_or_else(|| {
            CacheError::Invalid(format!(
                "{}: no embedding parts (*.parquet) in this directory",
                root.display()
            ))
        })
    }

    /// Like [`EmbeddingCache::open`], but `None` for a directory without parts (e.g. one where
    /// every image failed).
    pub fn open_if_any(root: impl AsRef<Path>) -> Result<Option<Self>> {
        let root = root.as_ref().to_path_buf();
        let paths = if root.is_dir() { Self::part_paths(&root)? } else { vec![root.clone()] };
        if paths.is_empty() {
            return Ok(None);
        }
        let parts = paths.iter().map(EmbeddingPart::open).collect::<Result<Vec<_>>>()?;
        let first = &parts[0];
        for part in &parts[1..] {
            if let Some((field, a, b)) = first.meta.mismatch(&part.meta) {
                return Err(CacheError::MixedCache(Box::new(MixedCache {
                    dir: root,
                    field: field.to_string(),
                    first: first.path.clone(),
                    first_value: a,
                    second: part.path.clone(),
                    second_value: b,
                })));
            }
        }
        Ok(Some(Self { meta: first.meta.clone(), root, parts }))
    }

    /// Every row group of the cache, in row order: the unit of streamed reading.
    pub fn row_groups(&self) -> Vec<RowGroupRef> {
        let mut out = Vec::new();
        let mut first_row = 0;
        for (part, p) in self.parts.iter().enumerate() {
            for (index, &rows) in p.row_groups.iter().enumerate() {
                out.push(RowGroupRef { part, index, first_row, rows });
                first_row += rows;
            }
        }
        out
    }

    /// Calls `f(values)` for the row group `group` (as listed by [`EmbeddingCache::row_groups`]),
    /// in batches, with the values as stored.
    pub fn for_each_raw_in_group(
        &self,
        group: &RowGroupRef,
        mut f: impl FnMut(EmbeddingValues<'_>) -> Result<()>,
    ) -> Result<()> {
        let part = self
            .parts
            .get(group.part)
            .ok_or_else(|| CacheError::Invalid(format!("{}: no part {}", self.root.display(), group.part)))?;
        part.for_each_raw(Some(vec![group.index]), false, |_, values| f(values))
    }

    /// Calls `f(ids, values)` for every batch of every part, in order, values as stored.
    pub fn for_each_raw(
        &self,
        mut f: impl FnMut(Vec<String>, EmbeddingValues<'_>) -> Result<()>,
    ) -> Result<()> {
        for part in &self.parts {
            part.for_each_raw(None, true, &mut f)?;
        }
        Ok(())
    }

    /// Total rows over all parts.
    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// All ids, in part order.
    pub fn read_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(self.rows());
        for part in &self.parts {
            ids.extend(part.read_ids()?);
        }
        Ok(ids)
    }

    /// The recorded origin of each of `wanted` ids (ids without one are absent: not in the
    /// cache, or written before format 2).
    pub fn read_origins(&self, wanted: &HashSet<&str>) -> Result<HashMap<String, Origin>> {
        let mut out = HashMap::with_capacity(wanted.len());
        for part in &self.parts {
            part.read_origins(wanted, &mut out)?;
        }
        Ok(out)
    }

    /// Calls `f` with every row group of every part, in order.
    pub fn for_each_batch(&self, mut f: impl FnMut(EmbeddingMatrix) -> Result<()>) -> Result<()> {
        for part in &self.parts {
            part.for_each_batch(&mut f)?;
        }
        Ok(())
    }

    /// Reads the whole cache into memory, refusing duplicate ids.
    pub fn read_all(&self) -> Result<EmbeddingMatrix> {
        let mut all = EmbeddingMatrix { dim: self.meta.dim, ..Default::default() };
        all.ids.reserve(self.rows());
        all.values.reserve(self.rows() * self.meta.dim);
        self.for_each_batch(|batch| {
            all.append(batch);
            Ok(())
        })?;
        check_unique_ids(&self.root, &all.ids)?;
        Ok(all)
    }
}
