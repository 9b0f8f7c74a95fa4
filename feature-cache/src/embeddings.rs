//! The embedding cache: Parquet parts of `(id, embedding, width, height)` rows.
//!
//! Schema of every part:
//!
//! | column      | Arrow type                                  | meaning                          |
//! |-------------|---------------------------------------------|----------------------------------|
//! | `id`        | Utf8, not null, unique in the cache         | the image's id from the manifest |
//! | `embedding` | FixedSizeList<Float16 \| Float32, dim>      | the penultimate-layer embedding  |
//! | `width`     | UInt32                                      | original image width in pixels   |
//! | `height`    | UInt32                                      | original image height in pixels  |
//!
//! The file's key-value metadata holds the model's identity under `wit.*` keys
//! ([`CacheMetadata`]). A cache is a directory of such parts (the extractor writes one per
//! flushed batch and shard); [`EmbeddingCache`] reads them as one table and refuses parts of
//! different models, dims, pooling or preprocessing.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use half::f16;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::atomic::{is_hidden, AtomicFile};
use crate::error::{CacheError, MixedCache, Result};

/// Version of this on-disk contract, stored as `wit.format_version`.
pub const FORMAT_VERSION: u32 = 1;
/// Prefix of every metadata key this crate writes.
pub const METADATA_PREFIX: &str = "wit.";
/// File-name prefix of failure tables, which live beside the embedding parts.
pub const FAILURES_PREFIX: &str = "failures";

/// Storage type of the embedding values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingDtype {
    /// IEEE half precision: half the disk and memory, ample for ReLU6-bounded features.
    F16,
    /// IEEE single precision.
    F32,
}

/// How the last feature map becomes one vector per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Global average pooling over height and width (C values).
    Avg,
    /// The feature map flattened in height, width, channel order (h·w·C values), as Keras'
    /// `Flatten` on the seed's 2x2xC map of 64 px inputs.
    Flatten,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text),+ })
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($text => Ok(Self::$variant),)+
                    _ => Err(format!("`{s}` is not one of: {}", [$($text),+].join(", "))) }
            }
        }
    };
}
text_enum!(EmbeddingDtype { F16 => "f16", F32 => "f32" });
text_enum!(Pooling { Avg => "avg", Flatten => "flatten" });

/// The identity of the embeddings in a cache, stored in each part's Parquet metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMetadata {
    /// Model name, e.g. `efficientnet-lite0`.
    pub model: String,
    /// SHA-256 of the ONNX file that produced the embeddings.
    pub model_sha256: String,
    /// Values per embedding.
    pub dim: usize,
    /// How the feature map was pooled.
    pub pooling: Pooling,
    /// Side of the square network input in pixels.
    pub input_size: u32,
    /// Preprocessing, e.g. `center_crop(0.875)+bilinear;mean=127,127,127;std=128,128,128`.
    pub preprocessing: String,
    /// Storage type of the values.
    pub dtype: EmbeddingDtype,
    /// `extractor <version>` that wrote the part.
    pub tool_version: String,
}

impl CacheMetadata {
    const KEYS: [&'static str; 9] = [
        "format_version",
        "model",
        "model_sha256",
        "dim",
        "pooling",
        "input_size",
        "preprocessing",
        "dtype",
        "tool_version",
    ];

    /// `model@sha256-prefix`: what a head records to refuse embeddings of another model.
    pub fn model_identity(&self) -> String {
        let short = self.model_sha256.get(..12).unwrap_or(&self.model_sha256);
        format!("{}@{short}", self.model)
    }

    /// The Parquet key-value pairs of this metadata.
    pub fn to_key_values(&self) -> Vec<KeyValue> {
        let values = [
            FORMAT_VERSION.to_string(),
            self.model.clone(),
            self.model_sha256.clone(),
            self.dim.to_string(),
            self.pooling.to_string(),
            self.input_size.to_string(),
            self.preprocessing.clone(),
            self.dtype.to_string(),
            self.tool_version.clone(),
        ];
        Self::KEYS
            .iter()
            .zip(values)
            .map(|(k, v)| KeyValue::new(format!("{METADATA_PREFIX}{k}"), v))
            .collect()
    }

    /// Parses the `wit.*` pairs of the file at `path`.
    pub fn from_key_values(path: &Path, kv: Option<&Vec<KeyValue>>) -> Result<Self> {
        let map: HashMap<&str, &str> = kv
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.key.strip_prefix(METADATA_PREFIX)?, e.value.as_deref()?)))
            .collect();
        let meta_err = |key: &str, message: String| CacheError::Metadata {
            path: path.to_path_buf(),
            key: format!("{METADATA_PREFIX}{key}"),
            message,
        };
        let get = |key: &str| {
            map.get(key).map(|v| v.to_string()).ok_or_else(|| {
                meta_err(key, "missing: not an embedding cache written by the extractor".into())
            })
        };
        let parse = |key: &str| -> Result<u64> {
            get(key)?.parse().map_err(|e| meta_err(key, format!("not a number: {e}")))
        };
        let version = parse("format_version")?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(meta_err(
                "format_version",
                format!("version {version}; this build reads version {FORMAT_VERSION}"),
            ));
        }
        Ok(Self {
            model: get("model")?,
            model_sha256: get("model_sha256")?,
            dim: parse("dim")? as usize,
            pooling: get("pooling")?.parse().map_err(|e| meta_err("pooling", e))?,
            input_size: parse("input_size")? as u32,
            preprocessing: get("preprocessing")?,
            dtype: get("dtype")?.parse().map_err(|e| meta_err("dtype", e))?,
            tool_version: get("tool_version")?,
        })
    }

    /// The first field in which two parts' embeddings are not interchangeable, with both values.
    pub fn mismatch(&self, other: &Self) -> Option<(&'static str, String, String)> {
        let fields = [
            ("model", self.model.clone(), other.model.clone()),
            ("model_sha256", self.model_sha256.clone(), other.model_sha256.clone()),
            ("dim", self.dim.to_string(), other.dim.to_string()),
            ("pooling", self.pooling.to_string(), other.pooling.to_string()),
            ("input_size", self.input_size.to_string(), other.input_size.to_string()),
            ("preprocessing", self.preprocessing.clone(), other.preprocessing.clone()),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }

    /// The Arrow schema of a part with this metadata (which it carries as schema metadata).
    pub fn schema(&self) -> SchemaRef {
        let value_type = match self.dtype {
            EmbeddingDtype::F16 => DataType::Float16,
            EmbeddingDtype::F32 => DataType::Float32,
        };
        let item = Arc::new(Field::new("item", value_type, false));
        let fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("embedding", DataType::FixedSizeList(item, self.dim as i32), false),
            Field::new("width", DataType::UInt32, false),
            Field::new("height", DataType::UInt32, false),
        ];
        // In the Arrow schema too, where pyarrow and polars look for it (`schema.metadata`).
        let metadata: HashMap<String, String> =
            self.to_key_values().into_iter().filter_map(|kv| Some((kv.key, kv.value?))).collect();
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }
}

/// Rows per Parquet row group: large enough for throughput, small enough to stream.
pub const ROWS_PER_GROUP: usize = 8192;

/// Writes one embedding part atomically: nothing is visible under its name before
/// [`EmbeddingWriter::finish`].
pub struct EmbeddingWriter {
    file: AtomicFile,
    writer: ArrowWriter<File>,
    meta: CacheMetadata,
    schema: SchemaRef,
    ids: Vec<String>,
    values: Vec<f32>,
    widths: Vec<u32>,
    heights: Vec<u32>,
    rows: usize,
    path: PathBuf,
}

impl EmbeddingWriter {
    /// Starts the part `path` for embeddings described by `meta`.
    pub fn create(path: impl AsRef<Path>, meta: CacheMetadata) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if meta.dim == 0 {
            return Err(CacheError::Invalid("embedding dim must be positive".into()));
        }
        let file = AtomicFile::create(&path)?;
        let schema = meta.schema();
        // embedding values: byte-stream-split, no dictionary (a dictionary of f16 values makes
        // reading 2-5x slower; byte-stream-split compresses better under zstd)
        let values = ColumnPath::new(vec!["embedding".into(), "list".into(), "item".into()]);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")))
            .set_column_dictionary_enabled(values.clone(), false)
            .set_column_encoding(values, Encoding::BYTE_STREAM_SPLIT)
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .set_key_value_metadata(Some(meta.to_key_values()))
            .build();
        let writer = ArrowWriter::try_new(file.try_clone()?, schema.clone(), Some(props))
            .map_err(|e| CacheError::parquet(&path, e))?;
        Ok(Self {
            file,
            writer,
            meta,
            schema,
            ids: Vec::new(),
            values: Vec::new(),
            widths: Vec::new(),
            heights: Vec::new(),
            rows: 0,
            path,
        })
    }

    /// Appends one image's embedding.
    pub fn push(&mut self, id: &str, embedding: &[f32], width: u32, height: u32) -> Result<()> {
        if embedding.len() != self.meta.dim {
            return Err(CacheError::Invalid(format!(
                "{}: embedding of `{id}` has {} values, the cache's dim is {}",
                self.path.display(),
                embedding.len(),
                self.meta.dim
            )));
        }
        self.ids.push(id.to_string());
        self.values.extend_from_slice(embedding);
        self.widths.push(width);
        self.heights.push(height);
        if self.ids.len() >= ROWS_PER_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows + self.ids.len()
    }

    fn flush(&mut self) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let dim = self.meta.dim as i32;
        let embedding: ArrayRef = match self.meta.dtype {
            EmbeddingDtype::F32 => {
                let values = Float32Array::from(std::mem::take(&mut self.values));
                Arc::new(list_array(&self.schema, Arc::new(values), dim))
            }
            EmbeddingDtype::F16 => {
                let mut halves = vec![f16::ZERO; self.values.len()];
                halves.convert_from_f32_slice(&self.values);
                self.values.clear();
                Arc::new(list_array(&self.schema, Arc::new(Float16Array::from(halves)), dim))
            }
        };
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from(std::mem::take(&mut self.ids))),
                embedding,
                Arc::new(UInt32Array::from(std::mem::take(&mut self.widths))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.heights))),
            ],
        )
        .map_err(|e| CacheError::parquet(&self.path, e))?;
        self.rows += batch.num_rows();
        self.writer.write(&batch).map_err(|e| CacheError::parquet(&self.path, e))
    }

    /// Writes the footer and publishes the part under its name; returns the path.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        self.writer.close().map_err(|e| CacheError::parquet(&self.path, e))?;
        self.file.commit()
    }
}

fn list_array(schema: &SchemaRef, values: ArrayRef, dim: i32) -> FixedSizeListArray {
    let DataType::FixedSizeList(item, _) = schema.field(1).data_type() else {
        unreachable!("schema() builds a FixedSizeList embedding column")
    };
    FixedSizeListArray::new(item.clone(), dim, values, None)
}

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
        let meta = CacheMetadata::from_key_values(&path, file_meta.key_value_metadata())?;
        let rows = file_meta.num_rows() as usize;
        let row_groups = builder.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect();
        check_schema(&path, builder.schema(), &meta)?;
        Ok(Self { path, meta, rows, row_groups })
    }

    /// Calls `f` with each row group of the part, converted to float32.
    pub fn for_each_batch(&self, mut f: impl FnMut(EmbeddingMatrix) -> Result<()>) -> Result<()> {
        let reader = reader_builder(&self.path)?
            .with_batch_size(ROWS_PER_GROUP)
            .build()
            .map_err(|e| CacheError::parquet(&self.path, e))?;
        for batch in reader {
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
        let mut builder = reader_builder(&self.path)?.with_batch_size(ROWS_PER_GROUP);
        if let Some(groups) = groups {
            if let Some(&g) = groups.iter().find(|&&g| g >= self.row_groups.len()) {
                return Err(CacheError::Invalid(format!("{}: no row group {g}", self.path.display())));
            }
            builder = builder.with_row_groups(groups);
        }
        let columns: &[usize] = if with_ids { &[0, 1] } else { &[1] };
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        let reader = builder.with_projection(mask).build().map_err(|e| CacheError::parquet(&self.path, e))?;
        for batch in reader {
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
        let builder = reader_builder(&self.path)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [0]);
        let reader = builder.with_projection(mask).build().map_err(|e| CacheError::parquet(&self.path, e))?;
        let mut ids = Vec::with_capacity(self.rows);
        for batch in reader {
            let batch = batch.map_err(|e| CacheError::parquet(&self.path, e))?;
            let col = string_column(&self.path, &batch, "id")?;
            ids.extend(col.iter().map(|v| v.unwrap_or_default().to_string()));
        }
        Ok(ids)
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
    /// Parquet files of a cache directory that hold embeddings (not failures, not temporaries).
    pub fn part_paths(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CacheError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".parquet") && !is_hidden(&name) && !name.starts_with(FAILURES_PREFIX) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// Opens a cache directory (or a single part), checking that every part agrees.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let paths = if root.is_dir() { Self::part_paths(&root)? } else { vec![root.clone()] };
        if paths.is_empty() {
            return Err(CacheError::Invalid(format!(
                "{}: no embedding parts (*.parquet) in this directory",
                root.display()
            )));
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
        Ok(Self { meta: first.meta.clone(), root, parts })
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
