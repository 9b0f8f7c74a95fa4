//! Prediction tables: `id`, one `p:<label>` probability column (Float32) per label and, for a
//! run's test split, one `y:<label>` target column (Boolean) per label. Written in row groups as
//! they come (a prediction over 11.5M images never sits in memory whole) and published whole
//! (temp + rename). The file metadata says which head wrote them: `wit.head` (the head's
//! `head.json`: run name, labels, thresholds per policy, configuration, embedding model),
//! `wit.labels` (JSON list) and `wit.embedding_model`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use feature_cache::atomic::AtomicFile;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Result, TrainError};
use crate::head_io::HeadInfo;

fn data_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Data(format!("{}: {e}", path.display()))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| TrainError::Data(e.to_string()))
}

/// The metadata a prediction table carries about its head.
pub fn head_metadata(info: &HeadInfo) -> Result<HashMap<String, String>> {
    Ok(HashMap::from([
        ("wit.head".to_string(), to_json(info)?),
        ("wit.labels".to_string(), to_json(&info.labels)?),
        ("wit.embedding_model".to_string(), info.embedding.model_identity()),
    ]))
}

/// Writes a prediction table batch by batch.
pub struct PredictionWriter {
    file: AtomicFile,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    labels: usize,
    with_targets: bool,
    path: PathBuf,
    rows: usize,
}

impl PredictionWriter {
    /// Starts `path` for the labels of `info` (with `y:` columns when `with_targets`).
    pub fn create(path: &Path, info: &HeadInfo, with_targets: bool) -> Result<Self> {
        let mut fields = vec![Field::new("id", DataType::Utf8, false)];
        fields.extend(info.labels.iter().map(|l| Field::new(format!("p:{l}"), DataType::Float32, false)));
        if with_targets {
            fields.extend(info.labels.iter().map(|l| Field::new(format!("y:{l}"), DataType::Boolean, false)));
        }
        let metadata = head_metadata(info)?;
        let kv: Vec<KeyValue> = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
        let file = AtomicFile::create(path)?;
        let props = WriterProperties::builder().set_key_value_metadata(Some(kv)).build();
        let writer = ArrowWriter::try_new(file.try_clone()?, schema.clone(), Some(props))
            .map_err(|e| data_err(path, e))?;
        Ok(Self {
            file,
            writer,
            schema,
            labels: info.labels.len(),
            with_targets,
            path: path.to_path_buf(),
            rows: 0,
        })
    }

    /// Appends rows: `probs` (and `targets`) row-major `ids.len() x labels`.
    pub fn write(&mut self, ids: &[String], probs: &[f32], targets: Option<&[bool]>) -> Result<()> {
        let m = self.labels;
        if probs.len() != ids.len() * m || targets.is_some() != self.with_targets {
            return Err(data_err(&self.path, "predictions do not match the table's labels"));
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(ids))];
        for j in 0..m {
            cols.push(Arc::new(Float32Array::from_iter_values(
                probs.iter().skip(j).step_by(m.max(1)).copied(),
            )));
        }
        if let Some(y) = targets {
            for j in 0..m {
                cols.push(Arc::new(BooleanArray::from(
                    y.iter().skip(j).step_by(m.max(1)).copied().collect::<Vec<bool>>(),
                )));
            }
        }
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| data_err(&self.path, e))?;
        self.rows += ids.len();
        self.writer.write(&batch).map_err(|e| data_err(&self.path, e))
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Publishes the table; returns its path.
    pub fn finish(self) -> Result<PathBuf> {
        self.writer.close().map_err(|e| data_err(&self.path, e))?;
        Ok(self.file.commit()?)
    }
}

/// A prediction table read back.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    /// Ids, in file order.
    pub ids: Vec<String>,
    /// Label names.
    pub labels: Vec<String>,
    /// Probabilities, row-major `ids.len() x labels.len()`.
    pub probs: Vec<f32>,
    /// Targets, when the table has them.
    pub targets: Option<Vec<bool>>,
}

/// Reads a prediction table written by [`PredictionWriter`].
pub fn read_predictions(path: &Path) -> Result<Predictions> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| data_err(path, e))?;
    let schema = builder.schema().clone();
    let labels: Vec<String> =
        schema.fields().iter().filter_map(|f| f.name().strip_prefix("p:").map(str::to_string)).collect();
    let with_targets =
        labels.iter().all(|l| schema.index_of(&format!("y:{l}")).is_ok()) && !labels.is_empty();
    let mut out = Predictions { labels, targets: with_targets.then(Vec::new), ..Default::default() };
    let m = out.labels.len();
    for batch in builder.build().map_err(|e| data_err(path, e))? {
        let batch = batch.map_err(|e| data_err(path, e))?;
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| data_err(path, format!("column `{name}` missing")))
        };
        let ids = col("id")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| data_err(path, "`id` is not Utf8"))?;
        let probs: Vec<Float32Array> = out
            .labels
            .iter()
            .map(|l| {
                col(&format!("p:{l}"))?
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .cloned()
                    .ok_or_else(|| data_err(path, format!("`p:{l}` is not Float32")))
            })
            .collect::<Result<_>>()?;
        let targets: Option<Vec<BooleanArray>> = match out.targets {
            Some(_) => Some(
                out.labels
                    .iter()
                    .map(|l| {
                        col(&format!("y:{l}"))?
                            .as_any()
                            .downcast_ref::<BooleanArray>()
                            .cloned()
                            .ok_or_else(|| data_err(path, format!("`y:{l}` is not Boolean")))
                    })
                    .collect::<Result<_>>()?,
            ),
            None => None,
        };
        for i in 0..batch.num_rows() {
            out.ids.push(ids.value(i).to_string());
            out.probs.extend(probs.iter().map(|p| p.value(i)));
            if let (Some(all), Some(t)) = (out.targets.as_mut(), targets.as_ref()) {
                all.extend(t.iter().map(|y| y.value(i)));
            }
        }
        debug_assert_eq!(out.probs.len(), out.ids.len() * m);
    }
    Ok(out)
}
