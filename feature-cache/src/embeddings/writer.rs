//! Writing one embedding part atomically.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float16Array, Float32Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, SchemaRef};
use half::f16;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::metadata::{CacheMetadata, EmbeddingDtype};
use crate::atomic::AtomicFile;
use crate::error::{CacheError, Result};
use crate::origin::Origin;

/// Rows per Parquet row group: large enough for throughput, small enough to stream.
pub const ROWS_PER_GROUP: usize = 8192;

/// Parquet properties of an embedding part. Values of an f32 cache are byte-stream-split, which
/// compresses best under zstd and reads fastest; f16 values are stored PLAIN, because DuckDB
/// reads byte-stream-split only for FLOAT/DOUBLE/INT and f16 is a FIXED_LEN_BYTE_ARRAY(2). Neither
/// has a dictionary (a dictionary of embedding values makes reading 2-5x slower).
pub fn part_properties(meta: &CacheMetadata) -> WriterProperties {
    let values = ColumnPath::new(vec!["embedding".into(), "list".into(), "item".into()]);
    let encoding = match meta.dtype {
        EmbeddingDtype::F16 => Encoding::PLAIN,
        EmbeddingDtype::F32 => Encoding::BYTE_STREAM_SPLIT,
    };
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")))
        .set_column_dictionary_enabled(values.clone(), false)
        .set_column_encoding(values, encoding)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_key_value_metadata(Some(meta.to_key_values()))
        .build()
}

/// Writes one embedding part atomically: nothing is visible under its name before
/// [`EmbeddingWriter::finish`].
pub struct EmbeddingWriter {
    file: AtomicFile,
    writer: ArrowWriter<File>,
    meta: CacheMetadata,
    schema: SchemaRef,
    rows: Rows,
    written: usize,
    path: PathBuf,
}

/// Rows buffered for the next row group.
#[derive(Default)]
struct Rows {
    ids: Vec<String>,
    values: Vec<f32>,
    widths: Vec<u32>,
    heights: Vec<u32>,
    sources: Vec<Option<String>>,
    source_rows: Vec<Option<u64>>,
    source_members: Vec<Option<String>>,
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
        let writer = ArrowWriter::try_new(file.try_clone()?, schema.clone(), Some(part_properties(&meta)))
            .map_err(|e| CacheError::parquet(&path, e))?;
        Ok(Self { file, writer, meta, schema, rows: Rows::default(), written: 0, path })
    }

    /// Appends one image's embedding, with where the image came from when known.
    pub fn push(
        &mut self,
        id: &str,
        embedding: &[f32],
        width: u32,
        height: u32,
        origin: Option<&Origin>,
    ) -> Result<()> {
        if embedding.len() != self.meta.dim {
            return Err(CacheError::Invalid(format!(
                "{}: embedding of `{id}` has {} values, the cache's dim is {}",
                self.path.display(),
                embedding.len(),
                self.meta.dim
            )));
        }
        let r = &mut self.rows;
        r.ids.push(id.to_string());
        r.values.extend_from_slice(embedding);
        r.widths.push(width);
        r.heights.push(height);
        let (source, row, member) = match origin.map(Origin::to_columns) {
            Some((s, row, member)) => (Some(s), row, member),
            None => (None, None, None),
        };
        r.sources.push(source);
        r.source_rows.push(row);
        r.source_members.push(member);
        if r.ids.len() >= ROWS_PER_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.written + self.rows.ids.len()
    }

    /// The part's final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.ids.is_empty() {
            return Ok(());
        }
        let r = std::mem::take(&mut self.rows);
        let dim = self.meta.dim as i32;
        let values: ArrayRef = match self.meta.dtype {
            EmbeddingDtype::F32 => Arc::new(Float32Array::from(r.values)),
            EmbeddingDtype::F16 => {
                let mut halves = vec![f16::ZERO; r.values.len()];
                halves.convert_from_f32_slice(&r.values);
                Arc::new(Float16Array::from(halves))
            }
        };
        let DataType::FixedSizeList(item, _) = self.schema.field(1).data_type() else {
            unreachable!("CacheMetadata::schema builds a FixedSizeList embedding column")
        };
        let embedding = FixedSizeListArray::new(item.clone(), dim, values, None);
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from(r.ids)),
                Arc::new(embedding),
                Arc::new(UInt32Array::from(r.widths)),
                Arc::new(UInt32Array::from(r.heights)),
                Arc::new(StringArray::from(r.sources)),
                Arc::new(UInt64Array::from(r.source_rows)),
                Arc::new(StringArray::from(r.source_members)),
            ],
        )
        .map_err(|e| CacheError::parquet(&self.path, e))?;
        self.written += batch.num_rows();
        self.writer.write(&batch).map_err(|e| CacheError::parquet(&self.path, e))
    }

    /// Writes the footer and publishes the part under its name; returns the path.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        self.writer.close().map_err(|e| CacheError::parquet(&self.path, e))?;
        self.file.commit()
    }
}
